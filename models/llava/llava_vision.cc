#include "models/llava/llava_vision.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>

#include "models/aten_dtype.h"
#include "models/checkpoint.h"
#include "models/cpu_threads.h"

namespace muse::models::llava {
namespace {

// x: [..., in] -> [..., out] through a 2-D GEMM.
at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const auto sizes = x.sizes().vec();
  at::Tensor y = b.defined() ? at::addmm(b, x.reshape({-1, sizes.back()}), w.t())
                             : at::mm(x.reshape({-1, sizes.back()}), w.t());
  std::vector<int64_t> out(sizes);
  out.back() = w.size(0);
  return y.view(out);
}

at::Tensor Activation(const at::Tensor& x, const std::string& act) {
  if (act == "quick_gelu") return x * at::sigmoid(x * 1.702);
  if (act == "gelu_pytorch_tanh") return at::gelu(x, "tanh");
  return at::gelu(x);  // "gelu": exact erf form
}

at::ScalarType ToScalarType(DType d) {
  switch (d) {
    case DType::kFloat32:
      return at::kFloat;
    case DType::kFloat16:
      return at::kHalf;
    case DType::kBFloat16:
      return at::kBFloat16;
    case DType::kInt64:
      return at::kLong;
    case DType::kInt32:
      return at::kInt;
    case DType::kUInt8:
      return at::kByte;
  }
  return at::kFloat;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LlavaVision>> LlavaVision::Load(const LlavaConfig& c,
                                                               const TensorGetter& get,
                                                               at::ScalarType dtype,
                                                               at::Device device,
                                                               const VisionOptions& options) {
  auto m = std::unique_ptr<LlavaVision>(new LlavaVision());
  m->config_ = c;
  m->options_ = options;
  m->dtype_ = dtype;
  m->device_ = device;
  const VisionConfig& v = c.vision;
  const int64_t H = v.hidden_size, I = v.intermediate_size, p = v.patch_size;
  const std::string vp = kVisionPrefix;
  const std::string e = vp + "embeddings.";
  ASSIGN_OR_RETURN(at::Tensor pw, get(e + "patch_embedding.weight", {H, v.num_channels, p, p}));
  m->patch_w_ = pw.reshape({H, v.num_channels * p * p}).contiguous();
  if (v.has_class_token()) {
    ASSIGN_OR_RETURN(m->class_emb_, get(e + "class_embedding", {H}));
    ASSIGN_OR_RETURN(m->pre_ln_w_, get(vp + "pre_layrnorm.weight", {H}));
    ASSIGN_OR_RETURN(m->pre_ln_b_, get(vp + "pre_layrnorm.bias", {H}));
  } else {
    ASSIGN_OR_RETURN(m->patch_b_, get(e + "patch_embedding.bias", {H}));
  }
  ASSIGN_OR_RETURN(m->pos_emb_, get(e + "position_embedding.weight", {v.num_positions(), H}));
  const int64_t used = c.feature_layer_index();
  for (int64_t i = 0; i < used; ++i) {
    const std::string l = absl::StrCat(vp, "encoder.layers.", i, ".");
    VisionLayerWeights w;
    ASSIGN_OR_RETURN(w.ln1_w, get(l + "layer_norm1.weight", {H}));
    ASSIGN_OR_RETURN(w.ln1_b, get(l + "layer_norm1.bias", {H}));
    ASSIGN_OR_RETURN(w.ln2_w, get(l + "layer_norm2.weight", {H}));
    ASSIGN_OR_RETURN(w.ln2_b, get(l + "layer_norm2.bias", {H}));
    std::vector<at::Tensor> ws, bs;
    for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
      ASSIGN_OR_RETURN(at::Tensor pw2, get(absl::StrCat(l, "self_attn.", proj, ".weight"), {H, H}));
      ASSIGN_OR_RETURN(at::Tensor pb, get(absl::StrCat(l, "self_attn.", proj, ".bias"), {H}));
      ws.push_back(pw2);
      bs.push_back(pb);
    }
    w.qkv_w = at::cat(ws, 0).contiguous();
    w.qkv_b = at::cat(bs, 0).contiguous();
    ASSIGN_OR_RETURN(w.out_w, get(l + "self_attn.out_proj.weight", {H, H}));
    ASSIGN_OR_RETURN(w.out_b, get(l + "self_attn.out_proj.bias", {H}));
    ASSIGN_OR_RETURN(w.fc1_w, get(l + "mlp.fc1.weight", {I, H}));
    ASSIGN_OR_RETURN(w.fc1_b, get(l + "mlp.fc1.bias", {I}));
    ASSIGN_OR_RETURN(w.fc2_w, get(l + "mlp.fc2.weight", {H, I}));
    ASSIGN_OR_RETURN(w.fc2_b, get(l + "mlp.fc2.bias", {H}));
    m->layers_.push_back(std::move(w));
  }
  if (options.post_layernorm_on_last_layer && used == v.num_hidden_layers) {
    ASSIGN_OR_RETURN(m->post_ln_w_, get(vp + "post_layernorm.weight", {H}));
    ASSIGN_OR_RETURN(m->post_ln_b_, get(vp + "post_layernorm.bias", {H}));
  }
  const int64_t T = c.text.hidden_size;
  const std::string pp = kProjectorPrefix;
  ASSIGN_OR_RETURN(m->proj1_w_, get(pp + "linear_1.weight", {T, H}));
  ASSIGN_OR_RETURN(m->proj2_w_, get(pp + "linear_2.weight", {T, T}));
  if (c.multimodal_projector_bias) {
    ASSIGN_OR_RETURN(m->proj1_b_, get(pp + "linear_1.bias", {T}));
    ASSIGN_OR_RETURN(m->proj2_b_, get(pp + "linear_2.bias", {T}));
  }
  return m;
}

at::Tensor LlavaVision::Embeddings(const at::Tensor& pixel_values) const {
  const VisionConfig& v = config_.vision;
  const int64_t N = pixel_values.size(0), g = v.grid(), p = v.patch_size, C = v.num_channels;
  // The stride-p convolution as a GEMM over unfolded patches; it ignores a remainder < p.
  at::Tensor x = pixel_values.to(dtype_).narrow(2, 0, g * p).narrow(3, 0, g * p);
  at::Tensor patches =
      x.reshape({N, C, g, p, g, p}).permute({0, 2, 4, 1, 3, 5}).reshape({N * g * g, C * p * p});
  at::Tensor h = (patch_b_.defined() ? at::addmm(patch_b_, patches, patch_w_.t())
                                     : at::mm(patches, patch_w_.t()))
                     .view({N, g * g, v.hidden_size});
  if (class_emb_.defined())
    h = at::cat({class_emb_.view({1, 1, -1}).expand({N, 1, v.hidden_size}), h}, 1);
  h = h + pos_emb_.unsqueeze(0);
  if (pre_ln_w_.defined())
    h = at::layer_norm(h, {v.hidden_size}, pre_ln_w_, pre_ln_b_, v.layer_norm_eps);
  return h;
}

at::Tensor LlavaVision::Layer(const VisionLayerWeights& w, const at::Tensor& h) const {
  const VisionConfig& v = config_.vision;
  const int64_t N = h.size(0), P = h.size(1), H = v.hidden_size, nh = v.num_attention_heads;
  const int64_t d = v.head_dim();
  at::Tensor x = at::layer_norm(h, {H}, w.ln1_w, w.ln1_b, v.layer_norm_eps);
  at::Tensor qkv = Linear(x, w.qkv_w, w.qkv_b).view({N, P, 3, nh, d}).permute({2, 0, 3, 1, 4});
  at::Tensor q = qkv[0], k = qkv[1], val = qkv[2];  // [N, nh, P, d]
  at::Tensor s = at::matmul(q, k.transpose(-1, -2)).mul_(1.0 / std::sqrt(static_cast<double>(d)));
  at::Tensor o = at::matmul(at::softmax(s, -1), val).permute({0, 2, 1, 3}).reshape({N, P, H});
  at::Tensor out = h + Linear(o, w.out_w, w.out_b);
  x = at::layer_norm(out, {H}, w.ln2_w, w.ln2_b, v.layer_norm_eps);
  return out + Linear(Activation(Linear(x, w.fc1_w, w.fc1_b), v.hidden_act), w.fc2_w, w.fc2_b);
}

at::Tensor LlavaVision::VisionFeatures(const at::Tensor& pixel_values) const {
  at::Tensor h = Embeddings(pixel_values.to(device_));
  for (const auto& w : layers_) h = Layer(w, h);  // h = hidden_states[feature_layer_index]
  if (post_ln_w_.defined()) {
    h = at::layer_norm(h, {config_.vision.hidden_size}, post_ln_w_, post_ln_b_,
                       config_.vision.layer_norm_eps);
  }
  if (config_.vision_feature_select_strategy == "default") h = h.narrow(1, 1, h.size(1) - 1);
  return h;
}

at::Tensor LlavaVision::Project(const at::Tensor& features) const {
  return Linear(at::gelu(Linear(features, proj1_w_, proj1_b_)), proj2_w_, proj2_b_);
}

at::Tensor LlavaVision::Encode(const at::Tensor& pixel_values) const {
  at::NoGradGuard no_grad;
  return Project(VisionFeatures(pixel_values)).to(at::kFloat);
}

absl::StatusOr<std::vector<std::vector<float>>> AtenImageEncoder::EncodeBatch(
    const std::vector<const vision::PixelValues*>& images) {
  const int64_t S = config().vision.image_size;
  std::vector<std::vector<float>> out;
  if (images.empty()) return out;
  at::Tensor batch = at::empty({static_cast<int64_t>(images.size()), 3, S, S}, at::kFloat);
  for (size_t i = 0; i < images.size(); ++i) {
    const vision::PixelValues* im = images[i];
    if (im == nullptr || im->height != S || im->width != S ||
        im->data.size() != static_cast<size_t>(3 * S * S)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "images[", i, "]: pixel values are ", im ? im->height : 0, "x", im ? im->width : 0,
          ", the vision tower needs 3x", S, "x", S, " (check preprocessor_config.json)"));
    }
    std::memcpy(batch[i].data_ptr<float>(), im->data.data(), im->data.size() * sizeof(float));
  }
  at::Tensor emb = vision_->Encode(batch).contiguous().to(at::kCPU);  // [N, tokens, Ht]
  const size_t per = static_cast<size_t>(emb.size(1) * emb.size(2));
  const float* src = emb.data_ptr<float>();
  for (size_t i = 0; i < images.size(); ++i) out.emplace_back(src + i * per, src + (i + 1) * per);
  return out;
}

namespace {

// Keeps the checkpoint's mapping alive only while loading: every tensor is copied.
absl::StatusOr<std::unique_ptr<ImageEncoder>> LoadEncoder(const std::string& dir,
                                                          at::ScalarType dtype) {
  ASSIGN_OR_RETURN(LlavaConfig config, LoadLlavaConfig(dir));
  ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(dir, config.text));
  const auto opts = at::TensorOptions().dtype(dtype);
  TensorGetter get = [&](const std::string& name,
                         const std::vector<int64_t>& shape) -> absl::StatusOr<at::Tensor> {
    ASSIGN_OR_RETURN(const TensorView* v, ckpt->Get(name, shape));
    at::Tensor t = at::from_blob(const_cast<void*>(v->data), v->shape,
                                 at::TensorOptions().dtype(ToScalarType(v->dtype)));
    return t.to(opts, /*non_blocking=*/false, /*copy=*/true);
  };
  ASSIGN_OR_RETURN(auto vision, LlavaVision::Load(config, get, dtype, at::kCPU));
  return std::unique_ptr<ImageEncoder>(new AtenImageEncoder(std::move(vision)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ImageEncoder>> CreateImageEncoder(const std::string& model_dir,
                                                                 const ImageEncoderOptions& o) {
  ASSIGN_OR_RETURN(const at::ScalarType dtype, ParseAtenDtype(o.dtype));
  if (o.num_threads > 0) ConfigureCpuThreads(o.num_threads);
  return LoadEncoder(model_dir, dtype);
}

}  // namespace muse::models::llava
