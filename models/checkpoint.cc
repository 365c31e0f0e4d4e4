#include "models/checkpoint.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/common/file_util.h"

namespace muse::models {
namespace {

using json = nlohmann::json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Reads the index's weight_map: tensor name -> shard file name.
absl::StatusOr<std::map<std::string, std::string>> ReadWeightMap(const std::string& path) {
  ASSIGN_OR_RETURN(json index, muse::ParseJsonFile(path));
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": missing object 'weight_map'"));
  }
  std::map<std::string, std::string> weight_map;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it.value().is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": weight_map entry for '", it.key(), "' must be a file name"));
    }
    const std::string shard = it.value().get<std::string>();
    // Shards live beside the index; a path would let an index read files elsewhere.
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
      return absl::InvalidArgumentError(absl::StrCat(path, ": weight_map entry for '", it.key(),
                                                     "' has invalid shard name '", shard, "'"));
    }
    weight_map[it.key()] = shard;
  }
  if (weight_map.empty())
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty weight_map"));
  return weight_map;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& model_dir) {
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  return Open(model_dir, config);
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& model_dir,
                                                             const ModelConfig& config) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = model_dir;
  ckpt->config_ = config;

  const std::string single = model_dir + "/" + kSingleFile;
  const std::string index_path = model_dir + "/" + kIndexFile;
  std::map<std::string, std::string> weight_map;  // empty for a single-file checkpoint
  std::vector<std::string> shard_names;
  if (FileExists(single)) {
    shard_names.push_back(kSingleFile);
  } else if (FileExists(index_path)) {
    ASSIGN_OR_RETURN(weight_map, ReadWeightMap(index_path));
    std::set<std::string> unique;
    for (const auto& [name, shard] : weight_map) {
      if (unique.insert(shard).second && !FileExists(absl::StrCat(model_dir, "/", shard))) {
        return absl::NotFoundError(absl::StrCat(index_path, " maps tensor '", name, "' to shard ",
                                                model_dir, "/", shard, ", which does not exist"));
      }
    }
    shard_names.assign(unique.begin(), unique.end());
  } else {
    return absl::NotFoundError(absl::StrCat("no weights in ", model_dir, ": neither ", single,
                                            " nor ", index_path, " exists"));
  }

  std::map<std::string, std::string> owner;  // tensor -> shard it was found in
  for (const std::string& shard : shard_names) {
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(absl::StrCat(model_dir, "/", shard)));
    for (const auto& [name, view] : file->tensors()) {
      auto [it, inserted] = owner.emplace(name, shard);
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is in both ", model_dir,
                                                       "/", it->second, " and ", model_dir, "/",
                                                       shard));
      }
      ckpt->index_[name] = &view;
    }
    ckpt->shards_.push_back(std::move(file));
  }
  for (const auto& [name, shard] : weight_map) {
    auto it = owner.find(name);
    if (it == owner.end() || it->second != shard) {
      return absl::NotFoundError(absl::StrCat(index_path, " maps tensor '", name, "' to ",
                                              model_dir, "/", shard,
                                              ", which does not contain it"));
    }
  }
  return ckpt;
}

const TensorView* Checkpoint::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

absl::StatusOr<const TensorView*> Checkpoint::Get(
    const std::string& name, const std::vector<int64_t>& expected_shape) const {
  const TensorView* view = Find(name);
  if (view == nullptr) {
    return absl::NotFoundError(absl::StrCat("tensor '", name, "' not found in checkpoint ", dir_));
  }
  if (view->shape != expected_shape) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "' has shape ", ShapeString(view->shape),
                     " but the config expects ", ShapeString(expected_shape)));
  }
  return view;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [name, view] : index_) out.push_back(name);
  return out;
}

}  // namespace muse::models
