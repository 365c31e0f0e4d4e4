// A HF model directory: config.json + model.safetensors, or shards listed by
// model.safetensors.index.json ("weight_map": tensor name -> shard file).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/model_config.h"
#include "models/safetensors.h"

namespace muse::models {

class Checkpoint {
 public:
  // Opens and validates every shard; a tensor present in two shards, or an index entry that
  // points to a missing shard or a tensor absent from its shard, is an error.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& model_dir);
  // Same, with the decoder config supplied by the caller instead of parsed from config.json
  // (multimodal checkpoints, whose config.json nests the decoder's under "text_config").
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& model_dir,
                                                          const ModelConfig& config);

  const ModelConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  // nullptr when absent.
  const TensorView* Find(const std::string& name) const;
  // NotFound naming the tensor when absent; InvalidArgument naming tensor, expected and actual
  // shapes when the shape differs.
  absl::StatusOr<const TensorView*> Get(const std::string& name,
                                        const std::vector<int64_t>& expected_shape) const;
  std::vector<std::string> names() const;

 private:
  std::string dir_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, const TensorView*> index_;
};

}  // namespace muse::models
