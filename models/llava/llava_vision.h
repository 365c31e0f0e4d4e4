// LLaVA image path in ATen: CLIP / SigLIP vision transformer + multi_modal_projector.
// Internal header (includes ATen); the server uses image_encoder.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/llava/image_encoder.h"
#include "models/llava/llava_config.h"

namespace muse::models::llava {

struct VisionLayerWeights {
  at::Tensor ln1_w, ln1_b;  // [H]
  at::Tensor qkv_w;         // [3H, H]   q, k, v rows fused
  at::Tensor qkv_b;         // [3H]
  at::Tensor out_w, out_b;  // [H, H], [H]
  at::Tensor ln2_w, ln2_b;  // [H]
  at::Tensor fc1_w, fc1_b;  // [I, H], [I]
  at::Tensor fc2_w, fc2_b;  // [H, I], [H]
};

// Returns the named tensor (checked against `shape`) as a tensor of the model's dtype/device.
using TensorGetter = std::function<absl::StatusOr<at::Tensor>(const std::string& name,
                                                              const std::vector<int64_t>& shape)>;

struct VisionOptions {
  // HF takes LLaVA features from hidden_states, which never include post_layernorm. Set to apply
  // post_layernorm when the feature layer is the last one (vLLM's "require_post_norm").
  bool post_layernorm_on_last_layer = false;
};

class LlavaVision {
 public:
  static absl::StatusOr<std::unique_ptr<LlavaVision>> Load(const LlavaConfig& config,
                                                           const TensorGetter& get,
                                                           at::ScalarType dtype, at::Device device,
                                                           const VisionOptions& options = {});

  const LlavaConfig& config() const { return config_; }
  at::ScalarType dtype() const { return dtype_; }

  // pixel_values: [N, 3, S, S] (any float dtype) -> selected hidden states [N, tokens, Hv]
  // in the model dtype (feature layer + select strategy applied).
  at::Tensor VisionFeatures(const at::Tensor& pixel_values) const;
  // features: [N, tokens, Hv] -> [N, tokens, Ht] (linear_1, exact GELU, linear_2), model dtype.
  at::Tensor Project(const at::Tensor& features) const;
  // Both, returned as fp32 [N, tokens, Ht].
  at::Tensor Encode(const at::Tensor& pixel_values) const;

 private:
  at::Tensor Embeddings(const at::Tensor& pixel_values) const;  // [N, positions, Hv]
  at::Tensor Layer(const VisionLayerWeights& w, const at::Tensor& h) const;

  LlavaConfig config_;
  VisionOptions options_;
  at::ScalarType dtype_;
  at::Device device_ = at::kCPU;
  at::Tensor patch_w_;                // [Hv, 3 * p * p]
  at::Tensor patch_b_;                // [Hv] (SigLIP) or undefined
  at::Tensor class_emb_;              // [Hv] (CLIP) or undefined
  at::Tensor pos_emb_;                // [positions, Hv]
  at::Tensor pre_ln_w_, pre_ln_b_;    // CLIP only
  at::Tensor post_ln_w_, post_ln_b_;  // only with post_layernorm_on_last_layer at the last layer
  std::vector<VisionLayerWeights> layers_;  // only the layers the feature layer needs
  at::Tensor proj1_w_, proj1_b_, proj2_w_, proj2_b_;
};

// ImageEncoder over LlavaVision (what CreateImageEncoder returns).
class AtenImageEncoder : public ImageEncoder {
 public:
  explicit AtenImageEncoder(std::unique_ptr<LlavaVision> vision) : vision_(std::move(vision)) {}
  const LlavaConfig& config() const override { return vision_->config(); }
  absl::StatusOr<std::vector<std::vector<float>>> EncodeBatch(
      const std::vector<const vision::PixelValues*>& images) override;
  const LlavaVision& vision() const { return *vision_; }

 private:
  std::unique_ptr<LlavaVision> vision_;
};

}  // namespace muse::models::llava
