// libFuzzer target: model.safetensors.index.json through Checkpoint::Open. A scratch model
// directory holds two valid shards (a.safetensors: "x", "y"; b.safetensors: "z") written once;
// each input becomes the index file.
//
// Invariants on success: every tensor the weight_map names is found, with its shard's shape, and
// the checkpoint holds exactly the tensors of the shards the map names.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "models/checkpoint.h"

namespace {

namespace fs = std::filesystem;
using muse::models::DType;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

const std::map<std::string, std::vector<std::string>> kShards = {{"a.safetensors", {"x", "y"}},
                                                                 {"b.safetensors", {"z"}}};

std::string* g_dir = nullptr;

const std::string& ModelDir() {
  if (g_dir == nullptr) {
    std::string tmpl = (fs::temp_directory_path() / "muse-ckpt-fuzz-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    for (const auto& [shard, names] : kShards) {
      std::vector<muse::models::TensorToWrite> tensors;
      for (const std::string& n : names) {
        tensors.push_back({n, DType::kFloat32, {2, 3}, std::vector<uint8_t>(24, 1)});
      }
      if (!muse::models::WriteSafetensors(tmpl + "/" + shard, tensors).ok()) std::abort();
    }
    g_dir = new std::string(tmpl);
    std::atexit([] { fs::remove_all(*g_dir); });
  }
  return *g_dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = ModelDir();
  {
    std::ofstream out(dir + "/model.safetensors.index.json", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto ckpt = muse::models::Checkpoint::Open(dir, muse::models::ModelConfig{});
  if (!ckpt.ok()) {
    const auto code = ckpt.status().code();
    Check(code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kNotFound,
          "error is InvalidArgument or NotFound");
    return 0;
  }
  // Open succeeded: the index is JSON with an object weight_map of shard names.
  const auto index = nlohmann::json::parse(data, data + size);
  std::set<std::string> shards, expected;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    const auto* view = (*ckpt)->Find(name);
    Check(view != nullptr, "every mapped tensor is found");
    Check(view->shape == std::vector<int64_t>({2, 3}) && view->nbytes == 24, "shard's shape");
    shards.insert(shard.get<std::string>());
  }
  for (const std::string& shard : shards) {
    auto it = kShards.find(shard);
    Check(it != kShards.end(), "only the scratch shards open");
    expected.insert(it->second.begin(), it->second.end());
  }
  const auto names = (*ckpt)->names();
  Check(std::set<std::string>(names.begin(), names.end()) == expected,
        "checkpoint holds exactly the named shards' tensors");
  return 0;
}
