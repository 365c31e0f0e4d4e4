// fp32 GEMM for linear layers on x86-64 CPUs with AVX2 + FMA: y = x W^T over weights repacked
// once at load time.
//
// Why our own: decode multiplies a few to a few hundred rows by every weight matrix of the model.
// At M = 1 that is a pure weight stream; at M = 8..64 it is compute-bound, and OpenBLAS's generic
// sgemm (packing the weights on every call, tuned for large square problems) reaches ~55 % of the
// FMA peak there. Packing once into column panels lets one micro-kernel stream the weights
// exactly once per call with a 6x16 register tile.
//
// Packed layout (PackedWeight): W [N, K] row-major becomes ceil(N / 16) panels of 16 output
// columns; panel p is K x 16 floats, k-major:
//   data[(p * K + k) * 16 + j] = W[16 p + j, k]   (zero for 16 p + j >= N)
#pragma once

#include <cstdint>
#include <memory>

namespace muse::kernels::cpu {

class ThreadPool;

inline constexpr int64_t kPanel = 16;  // output columns per packed panel

// True when the running CPU has AVX2 and FMA (checked once).
bool PackedGemmSupported();

class PackedWeight {
 public:
  PackedWeight() = default;
  // w: [n, k] row-major fp32.
  static PackedWeight Pack(const float* w, int64_t n, int64_t k);

  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  int64_t num_panels() const { return (n_ + kPanel - 1) / kPanel; }
  const float* panel(int64_t p) const { return data_.get() + p * k_ * kPanel; }
  bool empty() const { return data_ == nullptr; }
  // For PackSwiGlu weights: the intermediate size I (n() is 2 * I rounded up to panels).
  int64_t swiglu_intermediate() const { return swiglu_intermediate_; }
  // Row `r` of the original W (e.g. an embedding lookup through a tied lm_head): out [k].
  void CopyRow(int64_t r, float* out) const;

 private:
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float[], Free> data_;
  int64_t n_ = 0, k_ = 0;
  int64_t swiglu_intermediate_ = 0;
  friend PackedWeight PackSwiGlu(const float*, const float*, int64_t, int64_t);
};

struct GemmArgs {
  const float* x = nullptr;  // [m, k], row stride ldx
  int64_t m = 0;
  int64_t ldx = 0;
  float* y = nullptr;  // [m, n], row stride ldy
  int64_t ldy = 0;
  const float* bias = nullptr;  // [n] or null
  bool accumulate = false;      // y += x W^T (fuses a residual add) instead of y = x W^T
};

// y = x W^T (+ bias) or y += x W^T, split over the pool's threads by panels.
// Requires PackedGemmSupported().
void PackedGemm(const GemmArgs& a, const PackedWeight& w, ThreadPool& pool);

// SwiGLU MLP input: w packs gate and up interleaved by panel (PackSwiGlu), and this writes
// act[m, i] = silu(x gate_i) * (x up_i) for i in [0, I) without materialising [m, 2I].
// act: [m, I], row stride ldy.
void PackedGemmSwiGlu(const GemmArgs& a, const PackedWeight& w, ThreadPool& pool);

// Packs gate [I, k] and up [I, k] so that panel 2q holds gate columns [16q, 16q+16) and panel
// 2q + 1 the same up columns (the last pair zero-padded when I is not a multiple of 16).
PackedWeight PackSwiGlu(const float* gate, const float* up, int64_t intermediate, int64_t k);

}  // namespace muse::kernels::cpu
