#include "models/qwen2_audio/qwen2_audio_tower.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "models/aten_dtype.h"
#include "models/checkpoint.h"
#include "models/cpu_threads.h"

namespace muse::models::qwen2_audio {
namespace {

// x: [..., in] -> [..., out] through a 2-D GEMM.
at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const auto sizes = x.sizes().vec();
  at::Tensor y = at::addmm(b, x.reshape({-1, sizes.back()}), w.t());
  std::vector<int64_t> out(sizes);
  out.back() = w.size(0);
  return y.view(out);
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

absl::StatusOr<std::unique_ptr<Qwen2AudioTower>> Qwen2AudioTower::Load(const Qwen2AudioConfig& c,
                                                                       const TensorGetter& get,
                                                                       at::ScalarType dtype,
                                                                       at::Device device) {
  auto m = std::unique_ptr<Qwen2AudioTower>(new Qwen2AudioTower());
  m->config_ = c;
  m->dtype_ = dtype;
  m->device_ = device;
  // Every tensor comes through the weight spec, so names and shapes are written once.
  std::map<std::string, at::Tensor> t;
  for (const auto& list : {ExpectedAudioTensors(c), ExpectedAudioProjectorTensors(c)}) {
    for (const auto& [name, shape] : list) {
      ASSIGN_OR_RETURN(t[name], get(name, shape));
    }
  }
  const std::string p = c.weight_prefix + kAudioPrefix;
  m->conv1_w_ = t[p + "conv1.weight"];
  m->conv1_b_ = t[p + "conv1.bias"];
  m->conv2_w_ = t[p + "conv2.weight"];
  m->conv2_b_ = t[p + "conv2.bias"];
  m->pos_ = t[p + "embed_positions.weight"];
  for (int64_t i = 0; i < c.audio.encoder_layers; ++i) {
    const std::string l = absl::StrCat(p, "layers.", i, ".");
    const std::string a = l + "self_attn.";
    AudioLayerWeights w;
    w.ln1_w = t[l + "self_attn_layer_norm.weight"];
    w.ln1_b = t[l + "self_attn_layer_norm.bias"];
    w.ln2_w = t[l + "final_layer_norm.weight"];
    w.ln2_b = t[l + "final_layer_norm.bias"];
    at::Tensor q_b = t[a + "q_proj.bias"];
    w.qkv_w = at::cat({t[a + "q_proj.weight"], t[a + "k_proj.weight"], t[a + "v_proj.weight"]}, 0)
                  .contiguous();
    w.qkv_b = at::cat({q_b, at::zeros_like(q_b), t[a + "v_proj.bias"]}, 0).contiguous();
    w.out_w = t[a + "out_proj.weight"];
    w.out_b = t[a + "out_proj.bias"];
    w.fc1_w = t[l + "fc1.weight"];
    w.fc1_b = t[l + "fc1.bias"];
    w.fc2_w = t[l + "fc2.weight"];
    w.fc2_b = t[l + "fc2.bias"];
    m->layers_.push_back(std::move(w));
  }
  m->ln_w_ = t[p + "layer_norm.weight"];
  m->ln_b_ = t[p + "layer_norm.bias"];
  m->proj_w_ = t[c.weight_prefix + kProjectorPrefix + "linear.weight"];
  m->proj_b_ = t[c.weight_prefix + kProjectorPrefix + "linear.bias"];
  return m;
}

at::Tensor Qwen2AudioTower::Layer(const AudioLayerWeights& w, const at::Tensor& h) const {
  const AudioEncoderConfig& a = config_.audio;
  const int64_t L = h.size(0), D = a.d_model, nh = a.encoder_attention_heads, d = a.head_dim();
  at::Tensor x = at::layer_norm(h, {D}, w.ln1_w, w.ln1_b, a.layer_norm_eps);
  at::Tensor qkv = Linear(x, w.qkv_w, w.qkv_b).view({L, 3, nh, d}).permute({1, 2, 0, 3});
  at::Tensor q = qkv[0], k = qkv[1], v = qkv[2];  // [nh, L, d]
  at::Tensor s = at::matmul(q, k.transpose(-1, -2)).mul_(1.0 / std::sqrt(static_cast<double>(d)));
  at::Tensor o = at::matmul(at::softmax(s, -1), v).permute({1, 0, 2}).reshape({L, D});
  at::Tensor out = h + Linear(o, w.out_w, w.out_b);
  x = at::layer_norm(out, {D}, w.ln2_w, w.ln2_b, a.layer_norm_eps);
  return out + Linear(at::gelu(Linear(x, w.fc1_w, w.fc1_b)), w.fc2_w, w.fc2_b);
}

at::Tensor Qwen2AudioTower::Encode(const at::Tensor& features, int64_t valid_frames) const {
  at::NoGradGuard no_grad;
  const int64_t T = config_.text.hidden_size, D = config_.audio.d_model;
  const int64_t n = Qwen2AudioConfig::NumAudioTokens(valid_frames);
  if (n <= 0) return at::empty({0, T}, at::kFloat);
  const int64_t L = Qwen2AudioConfig::EncoderLength(valid_frames);
  // conv2 row L-1 reads conv1 rows up to 2L-1, which read frames up to 2L: frames past that
  // never reach a kept row (at 3000 frames the conv's own zero padding is HF's).
  const int64_t frames = std::min<int64_t>(features.size(1), 2 * L + 1);
  at::Tensor x = features.to(device_, dtype_).narrow(1, 0, frames).unsqueeze(0);
  x = at::gelu(at::conv1d(x, conv1_w_, conv1_b_, /*stride=*/1, /*padding=*/1));
  x = at::gelu(at::conv1d(x, conv2_w_, conv2_b_, /*stride=*/2, /*padding=*/1));
  // HF masks keys at rows >= L with -inf; dropping those rows gives the same softmax.
  at::Tensor h = x[0].narrow(1, 0, L).t() + pos_.narrow(0, 0, L);  // [L, D]
  for (const auto& w : layers_) h = Layer(w, h);
  // AvgPool1d(2, 2) over time; the n kept tokens pool rows 0 .. 2n-1 < L.
  h = h.narrow(0, 0, 2 * n).view({n, 2, D}).mean(1);
  h = at::layer_norm(h, {D}, ln_w_, ln_b_, config_.audio.layer_norm_eps);
  return Linear(h, proj_w_, proj_b_).to(at::kFloat);
}

absl::StatusOr<std::vector<float>> AtenAudioEncoder::Encode(const audio::LogMel& mel) {
  const AudioEncoderConfig& a = config().audio;
  if (mel.n_mels != a.num_mel_bins) {
    return absl::InvalidArgumentError(
        absl::StrCat("n_mels: the features have ", mel.n_mels, " mel bins, the audio tower needs ",
                     a.num_mel_bins, " (check preprocessor_config.json's feature_size)"));
  }
  if (mel.n_frames != a.input_frames()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "n_frames: the features have ", mel.n_frames, " frames, the audio tower needs ",
        a.input_frames(), " (check preprocessor_config.json's chunk_length)"));
  }
  if (mel.valid_frames < 1 || mel.valid_frames > mel.n_frames) {
    return absl::InvalidArgumentError(
        absl::StrCat("valid_frames: ", mel.valid_frames, " is not in [1, ", mel.n_frames, "]"));
  }
  if (mel.data.size() != static_cast<size_t>(mel.n_mels) * mel.n_frames) {
    return absl::InvalidArgumentError(absl::StrCat("data: ", mel.data.size(), " values for a ",
                                                   mel.n_mels, "x", mel.n_frames, " spectrogram"));
  }
  at::Tensor f = at::from_blob(const_cast<float*>(mel.data.data()), {mel.n_mels, mel.n_frames},
                               at::TensorOptions().dtype(at::kFloat));
  at::Tensor emb = tower_->Encode(f, mel.valid_frames).contiguous().to(at::kCPU);
  const float* src = emb.data_ptr<float>();
  return std::vector<float>(src, src + emb.numel());
}

namespace {

// Keeps the checkpoint's mapping alive only while loading: every tensor is copied.
absl::StatusOr<std::unique_ptr<AudioEncoder>> LoadEncoder(const std::string& dir,
                                                          at::ScalarType dtype) {
  ASSIGN_OR_RETURN(Qwen2AudioConfig config, LoadQwen2AudioConfig(dir));
  ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(dir, config.text));
  const auto opts = at::TensorOptions().dtype(dtype);
  TensorGetter get = [&](const std::string& name,
                         const std::vector<int64_t>& shape) -> absl::StatusOr<at::Tensor> {
    auto v = ckpt->Get(name, shape);
    if (!v.ok()) {
      // A tower tensor the config implies but the checkpoint lacks is a bad model directory.
      return absl::InvalidArgumentError(absl::StrCat(dir, ": ", v.status().message()));
    }
    at::Tensor t = at::from_blob(const_cast<void*>((*v)->data), (*v)->shape,
                                 at::TensorOptions().dtype(ToScalarType((*v)->dtype)));
    return t.to(opts, /*non_blocking=*/false, /*copy=*/true);
  };
  ASSIGN_OR_RETURN(auto tower, Qwen2AudioTower::Load(config, get, dtype, at::kCPU));
  return std::unique_ptr<AudioEncoder>(new AtenAudioEncoder(std::move(tower)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<AudioEncoder>> CreateAudioEncoder(const std::string& model_dir,
                                                                 const AudioEncoderOptions& o) {
  ASSIGN_OR_RETURN(const at::ScalarType dtype, ParseAtenDtype(o.dtype));
  if (o.num_threads > 0) ConfigureCpuThreads(o.num_threads);
  return LoadEncoder(model_dir, dtype);
}

}  // namespace muse::models::qwen2_audio
