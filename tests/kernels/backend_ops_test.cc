// Backend-vs-backend test in the style of llama.cpp's test-backend-ops: every op that has both a
// CPU kernel (kernels/cpu, fp32 AVX2) and a CUDA kernel (kernels/cuda, bf16 / fp16 / fp32) runs on
// both backends with the SAME inputs, and the outputs are compared by normalised mean squared error
// NMSE = sum((cpu - cuda)^2) / sum(cpu^2) (llama.cpp's metric, with the CPU as the reference).
//
// Inputs are generated once per case in the CUDA kernels' layouts, rounded to the CUDA dtype first
// (so both backends see bit-identical values), and converted here to what the CPU kernels take:
//   - GEMM: W [n, k] row-major is packed into panels (PackedWeight::Pack); cuda launch_gemm
//   (cuBLAS).
//   - SwiGLU MLP: CPU PackSwiGlu + PackedGemmSwiGlu (fused epilogue) against cuda launch_gemm over
//     W = [gate; up] ([2I, k]) followed by launch_silu_and_mul on the bf16/fp16 [m, 2I] product.
//   - Paged attention: CPU PagedAttention (decode and prefill in one call, query_start_loc over
//     flattened tokens, block_size = kKvBlockSize) against launch_paged_decode_attention and
//     launch_paged_prefill_attention; shuffled physical blocks, NaN in every unused cache slot,
//     GQA, a sliding window, the CPU's split-K decode path, and q / out as strided views.
//   - RMSNorm: CPU RmsNorm against launch_rms_norm. The fused residual add exists only on the CUDA
//     side; the CPU side does what the CPU forward does (an fp32 add, then RmsNorm), and both the
//     normalised output and the updated residual are compared.
//   - RoPE: one cos/sin table from kernels/rope_freqs; cuda launch_rope indexes it by position, the
//     CPU ApplyRope takes one table row per token, so the test gathers the rows. q and k are views
//     into one fused qkv row (strided on both sides); the v part must come back untouched.
// Left out: the KV write (cuda launch_reshape_and_cache) has no CPU kernel function to compare with
// (the CPU forward copies rows inline in models/llama/llama_cpu_model.cc); partial rotary (rot_dim
// < head_dim) and the GEMM bias / residual epilogues exist on one backend only; silu_and_mul alone
// has no standalone CPU kernel (it is covered through the fused SwiGLU GEMM); sampling and row
// gather are host code / plain loops on the CPU.
//
// The backend comparison needs a device (MUSE_REQUIRE_DEVICE: skipped with the real CUDA runtime on
// CPU-only machines, run under the CUDA emulator). CpuReferenceSanity runs every case's CPU side,
// layout conversions included, against a plain double loop of the CUDA op's contract, so the CPU
// half and the conversions are checked on every machine.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/packed_gemm.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cuda/activation.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/kv_layout.h"
#include "kernels/rope_freqs.h"
#include "tests/kernels/cuda/test_util.h"

namespace muse::kernels::test {
namespace {

// ---------------- metric and thresholds ----------------

// llama.cpp's NMSE with `ref` (the CPU output) as the reference. Any NaN / inf (e.g. a poisoned
// output slot the kernel never wrote) or a size mismatch gives +inf.
double Nmse(const std::vector<float>& ref, const std::vector<float>& out) {
  if (ref.size() != out.size() || ref.empty()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(ref[i]) - out[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  if (!std::isfinite(num) || !std::isfinite(den)) return INFINITY;
  return den > 0 ? num / den : (num > 0 ? INFINITY : 0.0);
}

// Largest NMSE accepted for an output stored in `t`. Inputs are identical on both sides, so the
// difference is the CUDA side's rounding: one round-to-nearest to a format with unit roundoff u
// leaves a relative error of at most u, NMSE <= u^2 / 3 (measured on these outputs: ~u^2 / 6):
//   bf16 (u = 2^-8):  <= 5.1e-6 per rounding (measured 2.2e-6 .. 3.0e-6)
//   fp16 (u = 2^-11): <= 8.1e-8 per rounding (measured 3.9e-8 .. 5.4e-8)
// The longest chains here round 3-4 times (SwiGLU: the gate / up GEMM output, silu, the product;
// attention: P before P.V and the output; fused RMSNorm: the residual and the output), <= ~2e-5 /
// ~3e-7, so 1e-4 / 1e-6 keep a margin of >= 3x over the worst case and ~10x over the typical one
// (CpuReferenceSanity checks that one rounding of the CPU output stays under a quarter of the
// bound), while a layout bug (a wrong stride, head, block or table row) moves whole elements and
// gives NMSE of order 1 (~2 for the outputs shifted by one element). fp32 outputs differ only by
// accumulation order, __expf vs the CPU's Cephes exp and FMA contraction (relative ~1e-6 at worst
// over k = 769 sums, NMSE ~1e-12; the CPU kernels against double loops: <= 3.4e-13), hence 1e-10.
double MaxNmse(DType t) {
  switch (t) {
    case DType::kBFloat16:
      return 1e-4;
    case DType::kFloat16:
      return 1e-6;
    default:
      return 1e-10;
  }
}

// Named output tensors of one op on one backend, compact (strides removed), in the CUDA layout.
using Tensors = std::vector<std::pair<std::string, std::vector<float>>>;

// One case bound to its generated inputs: each closure runs the op one way on the same inputs.
struct Bound {
  std::function<Tensors()> cpu;   // the CPU kernel, inputs converted to its layout
  std::function<Tensors()> cuda;  // the CUDA kernel through its launcher (needs a device)
  std::function<Tensors()> ref;   // a plain double loop of the CUDA op's contract
};

cpu::ThreadPool& Pool() {
  // At least 2 threads so the parallel row split and split-K decode paths run on any machine.
  static cpu::ThreadPool pool(std::clamp(cpu::AvailableCpus(), 2, 4));
  return pool;
}

bool CudaOk(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  ADD_FAILURE() << what << ": " << cudaGetErrorString(e);
  return false;
}

// Rows [rows, width] out of a [rows, stride] buffer.
std::vector<float> Compact(const std::vector<float>& v, int64_t rows, int64_t stride, int64_t width,
                           int64_t offset = 0) {
  std::vector<float> out(rows * width);
  for (int64_t r = 0; r < rows; ++r)
    std::copy_n(v.begin() + r * stride + offset, width, out.begin() + r * width);
  return out;
}

// ---------------- dense GEMM: y = x W^T ----------------

struct GemmShape {
  int64_t m, n, k;
  bool y_fp32 = false;  // CUDA writes fp32 (the logits path)
};

struct GemmProblem {
  GemmShape s;
  DType dt;
  std::vector<float> x, w;  // x [m, k], w [n, k]
};

Bound BindGemm(const GemmShape& s, DType dt, uint32_t seed) {
  auto p = std::make_shared<GemmProblem>();
  std::mt19937 rng(seed);
  p->s = s;
  p->dt = dt;
  p->x = random_values(s.m * s.k, dt, rng);
  p->w = random_values(s.n * s.k, dt, rng);
  Bound b;
  b.cpu = [p] {
    const auto& s = p->s;
    const cpu::PackedWeight pw = cpu::PackedWeight::Pack(p->w.data(), s.n, s.k);
    std::vector<float> y(s.m * s.n, NAN);
    cpu::GemmArgs a;
    a.x = p->x.data();
    a.m = s.m;
    a.ldx = s.k;
    a.y = y.data();
    a.ldy = s.n;
    cpu::PackedGemm(a, pw, Pool());
    return Tensors{{"y", y}};
  };
  b.cuda = [p]() -> Tensors {
    const auto& s = p->s;
    const DType ydt = s.y_fp32 ? DType::kFloat32 : p->dt;
    auto dx = DeviceBuffer::from(encode(p->x, p->dt)), dw = DeviceBuffer::from(encode(p->w, p->dt));
    DeviceBuffer dy(s.m * s.n * dtype_size(ydt));
    dy.poison();
    cublasHandle_t h = nullptr;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
      ADD_FAILURE() << "cublasCreate";
      return {};
    }
    GemmParams gp{dy.get(), dx.get(), dw.get()};
    gp.m = s.m;
    gp.n = s.n;
    gp.k = s.k;
    gp.y_fp32 = s.y_fp32;
    gp.dtype = p->dt;
    const cublasStatus_t st = launch_gemm(gp, h, nullptr);
    const bool ok = CudaOk(cudaDeviceSynchronize(), "gemm sync");
    cublasDestroy(h);
    if (st != CUBLAS_STATUS_SUCCESS) ADD_FAILURE() << "launch_gemm: status " << st;
    if (st != CUBLAS_STATUS_SUCCESS || !ok) return {};
    return Tensors{{"y", decode(dy.to_host<uint8_t>(), ydt)}};
  };
  b.ref = [p] {
    const auto& s = p->s;
    std::vector<float> y(s.m * s.n);
    for (int64_t i = 0; i < s.m; ++i) {
      for (int64_t j = 0; j < s.n; ++j) {
        double acc = 0;
        for (int64_t q = 0; q < s.k; ++q) acc += double{p->x[i * s.k + q]} * p->w[j * s.k + q];
        y[i * s.n + j] = static_cast<float>(acc);
      }
    }
    return Tensors{{"y", y}};
  };
  return b;
}

// ---------------- SwiGLU MLP input: act = silu(x gate^T) * (x up^T) ----------------

struct SwiGluShape {
  int64_t m, inter, k;
};

struct SwiGluProblem {
  SwiGluShape s;
  DType dt;
  std::vector<float> x, gate, up;  // x [m, k], gate / up [inter, k]
};

Bound BindSwiGlu(const SwiGluShape& s, DType dt, uint32_t seed) {
  auto p = std::make_shared<SwiGluProblem>();
  std::mt19937 rng(seed);
  p->s = s;
  p->dt = dt;
  p->x = random_values(s.m * s.k, dt, rng);
  p->gate = random_values(s.inter * s.k, dt, rng);
  p->up = random_values(s.inter * s.k, dt, rng);
  Bound b;
  b.cpu = [p] {
    const auto& s = p->s;
    const cpu::PackedWeight pw = cpu::PackSwiGlu(p->gate.data(), p->up.data(), s.inter, s.k);
    std::vector<float> act(s.m * s.inter, NAN);
    cpu::GemmArgs a;
    a.x = p->x.data();
    a.m = s.m;
    a.ldx = s.k;
    a.y = act.data();
    a.ldy = s.inter;
    cpu::PackedGemmSwiGlu(a, pw, Pool());
    return Tensors{{"act", act}};
  };
  b.cuda = [p]() -> Tensors {
    const auto& s = p->s;
    // The CUDA MLP: one GEMM over W = [gate; up] ([2I, k]) into h = [gate | up] ([m, 2I], dtype),
    // then silu_and_mul.
    std::vector<float> w(p->gate);
    w.insert(w.end(), p->up.begin(), p->up.end());
    const size_t es = dtype_size(p->dt);
    auto dx = DeviceBuffer::from(encode(p->x, p->dt)), dw = DeviceBuffer::from(encode(w, p->dt));
    DeviceBuffer dh(s.m * 2 * s.inter * es), dact(s.m * s.inter * es);
    dh.poison();
    dact.poison();
    cublasHandle_t h = nullptr;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
      ADD_FAILURE() << "cublasCreate";
      return {};
    }
    GemmParams gp{dh.get(), dx.get(), dw.get()};
    gp.m = s.m;
    gp.n = 2 * s.inter;
    gp.k = s.k;
    gp.dtype = p->dt;
    const cublasStatus_t st = launch_gemm(gp, h, nullptr);
    SiluAndMulParams sp{dact.get(), dh.get()};
    sp.num_tokens = static_cast<int>(s.m);
    sp.inter = static_cast<int>(s.inter);
    sp.dtype = p->dt;
    const bool ok = st == CUBLAS_STATUS_SUCCESS &&
                    CudaOk(launch_silu_and_mul(sp, nullptr), "launch_silu_and_mul") &&
                    CudaOk(cudaDeviceSynchronize(), "swiglu sync");
    cublasDestroy(h);
    if (st != CUBLAS_STATUS_SUCCESS) ADD_FAILURE() << "launch_gemm: status " << st;
    if (!ok) return {};
    return Tensors{{"act", decode(dact.to_host<uint8_t>(), p->dt)}};
  };
  b.ref = [p] {
    const auto& s = p->s;
    std::vector<float> act(s.m * s.inter);
    for (int64_t i = 0; i < s.m; ++i) {
      for (int64_t j = 0; j < s.inter; ++j) {
        double g = 0, u = 0;
        for (int64_t q = 0; q < s.k; ++q) {
          g += double{p->x[i * s.k + q]} * p->gate[j * s.k + q];
          u += double{p->x[i * s.k + q]} * p->up[j * s.k + q];
        }
        act[i * s.inter + j] = static_cast<float>(g / (1 + std::exp(-g)) * u);
      }
    }
    return Tensors{{"act", act}};
  };
  return b;
}

// ---------------- paged attention (decode and prefill) ----------------

struct AttnShape {
  int heads, kv_heads, head_dim;
  int window;              // sliding window, <= 0: full causal
  std::vector<int> ctx;    // context length of each sequence after the step
  std::vector<int> qlen;   // new tokens per sequence; empty: decode (one each, decode kernel)
  bool strided_q = false;  // q and out as views into a fused [T, (H + 2 KV) D] qkv buffer
};

struct AttnProblem {
  AttnShape s;
  DType dt;
  bool decode = false;
  int num_seqs = 0, num_tokens = 0, max_blocks = 0, num_blocks = 0, max_qlen = 0;
  int64_t row = 0, q_stride = 0;  // q / out rows: row = heads * head_dim values at stride q_stride
  float scale = 0;
  std::vector<int32_t> seq_lens, qlen, qsl, block_tables;
  std::vector<float> q;     // [num_tokens, q_stride]; NaN past row
  std::vector<float> k, v;  // [num_blocks, kKvBlockSize, kv_heads, head_dim]; NaN where unused
};

int64_t Slot(const AttnProblem& p, int s, int c) {
  return int64_t{p.block_tables[s * p.max_blocks + c / kKvBlockSize]} * kKvBlockSize +
         c % kKvBlockSize;
}

std::shared_ptr<AttnProblem> MakeAttn(const AttnShape& s, DType dt, uint32_t seed) {
  auto p = std::make_shared<AttnProblem>();
  std::mt19937 rng(seed);
  p->s = s;
  p->dt = dt;
  p->decode = s.qlen.empty();
  p->num_seqs = static_cast<int>(s.ctx.size());
  p->seq_lens.assign(s.ctx.begin(), s.ctx.end());
  p->qlen = p->decode ? std::vector<int32_t>(p->num_seqs, 1)
                      : std::vector<int32_t>(s.qlen.begin(), s.qlen.end());
  p->qsl.assign(p->num_seqs + 1, 0);
  for (int i = 0; i < p->num_seqs; ++i) p->qsl[i + 1] = p->qsl[i] + p->qlen[i];
  p->num_tokens = p->qsl.back();
  p->max_qlen = *std::max_element(p->qlen.begin(), p->qlen.end());
  // Physical blocks: every sequence's blocks drawn from a shuffled pool with spare blocks, and one
  // trailing -1 entry per table row.
  int need = 0;
  for (int n : s.ctx) {
    need += (n + kKvBlockSize - 1) / kKvBlockSize;
    p->max_blocks = std::max(p->max_blocks, (n + kKvBlockSize - 1) / kKvBlockSize);
  }
  p->max_blocks += 1;
  p->num_blocks = need + 3;
  std::vector<int32_t> ids(p->num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  p->block_tables.assign(static_cast<size_t>(p->num_seqs) * p->max_blocks, -1);
  for (int i = 0, next = 0; i < p->num_seqs; ++i) {
    for (int b = 0; b < (s.ctx[i] + kKvBlockSize - 1) / kKvBlockSize; ++b)
      p->block_tables[i * p->max_blocks + b] = ids[next++];
  }
  const int64_t kv_row = int64_t{s.kv_heads} * s.head_dim;
  p->k.assign(int64_t{p->num_blocks} * kKvBlockSize * kv_row, NAN);
  p->v = p->k;
  for (int i = 0; i < p->num_seqs; ++i) {
    for (int c = 0; c < s.ctx[i]; ++c) {
      const auto kr = random_values(kv_row, dt, rng), vr = random_values(kv_row, dt, rng);
      std::copy(kr.begin(), kr.end(), p->k.begin() + Slot(*p, i, c) * kv_row);
      std::copy(vr.begin(), vr.end(), p->v.begin() + Slot(*p, i, c) * kv_row);
    }
  }
  p->row = int64_t{s.heads} * s.head_dim;
  p->q_stride = s.strided_q ? p->row + 2 * kv_row : p->row;
  p->q.assign(p->num_tokens * p->q_stride, NAN);
  for (int t = 0; t < p->num_tokens; ++t) {
    // q in [-2, 2]: softmax rows are peaked enough that a wrong mask or K row is visible.
    const auto qr = random_values(p->row, dt, rng, -2.f, 2.f);
    std::copy(qr.begin(), qr.end(), p->q.begin() + t * p->q_stride);
  }
  p->scale = 1.f / std::sqrt(static_cast<float>(s.head_dim));
  return p;
}

Bound BindAttn(const AttnShape& s, DType dt, uint32_t seed) {
  auto p = MakeAttn(s, dt, seed);
  Bound b;
  b.cpu = [p] {
    const auto& s = p->s;
    std::vector<float> out(p->num_tokens * p->q_stride, NAN);  // out as strided as q
    cpu::PagedAttentionArgs a;
    a.q = p->q.data();
    a.q_stride = p->q_stride;
    a.k_cache = p->k.data();
    a.v_cache = p->v.data();
    a.out = out.data();
    a.out_stride = p->q_stride;
    a.num_heads = s.heads;
    a.num_kv_heads = s.kv_heads;
    a.head_dim = s.head_dim;
    a.block_size = kKvBlockSize;
    a.scale = p->scale;
    a.sliding_window = s.window;
    a.num_seqs = p->num_seqs;
    a.query_start_loc = p->qsl.data();
    a.seq_lens = p->seq_lens.data();
    a.block_tables = p->block_tables.data();
    a.max_blocks_per_seq = p->max_blocks;
    cpu::PagedAttention(a, Pool());
    return Tensors{{"out", Compact(out, p->num_tokens, p->q_stride, p->row)}};
  };
  b.cuda = [p]() -> Tensors {
    const auto& s = p->s;
    const size_t es = dtype_size(p->dt);
    auto dq = DeviceBuffer::from(encode(p->q, p->dt));
    auto dk = DeviceBuffer::from(encode(p->k, p->dt)), dv = DeviceBuffer::from(encode(p->v, p->dt));
    auto dbt = DeviceBuffer::from(p->block_tables), dlens = DeviceBuffer::from(p->seq_lens);
    auto dqsl = DeviceBuffer::from(p->qsl);
    DeviceBuffer dout(p->num_tokens * p->q_stride * es);
    dout.poison();
    if (p->decode) {
      PagedDecodeParams dp{dout.get(), dq.get(),           dk.get(),
                           dv.get(),   dbt.get<int32_t>(), dlens.get<int32_t>()};
      dp.num_seqs = p->num_seqs;
      dp.num_heads = s.heads;
      dp.num_kv_heads = s.kv_heads;
      dp.head_dim = s.head_dim;
      dp.max_blocks_per_seq = p->max_blocks;
      dp.max_seq_len = *std::max_element(s.ctx.begin(), s.ctx.end());
      dp.scale = p->scale;
      dp.sliding_window = s.window;
      dp.dtype = p->dt;
      DeviceBuffer ws(paged_decode_workspace_size(dp));
      ws.poison();
      dp.workspace = ws.get();
      dp.workspace_bytes = ws.bytes();
      if (!CudaOk(launch_paged_decode_attention(dp, nullptr), "launch_paged_decode_attention") ||
          !CudaOk(cudaDeviceSynchronize(), "decode sync"))
        return {};
    } else {
      PagedPrefillParams pp{
          dout.get(),           dq.get(),          dk.get(), dv.get(), dqsl.get<int32_t>(),
          dlens.get<int32_t>(), dbt.get<int32_t>()};
      pp.num_seqs = p->num_seqs;
      pp.num_heads = s.heads;
      pp.num_kv_heads = s.kv_heads;
      pp.head_dim = s.head_dim;
      pp.max_blocks_per_seq = p->max_blocks;
      pp.max_query_len = p->max_qlen;
      pp.q_stride = p->q_stride;
      pp.out_stride = p->q_stride;
      pp.scale = p->scale;
      pp.sliding_window = s.window;
      pp.dtype = p->dt;
      if (!CudaOk(launch_paged_prefill_attention(pp, nullptr), "launch_paged_prefill_attention") ||
          !CudaOk(cudaDeviceSynchronize(), "prefill sync"))
        return {};
    }
    return Tensors{{"out", Compact(decode(dout.to_host<uint8_t>(), p->dt), p->num_tokens,
                                   p->q_stride, p->row)}};
  };
  b.ref = [p] {
    const auto& s = p->s;
    const int64_t D = s.head_dim, G = s.heads / s.kv_heads;
    const int64_t kv_row = s.kv_heads * D;
    std::vector<float> out(p->num_tokens * p->row);
    for (int i = 0; i < p->num_seqs; ++i) {
      for (int j = 0; j < p->qlen[i]; ++j) {
        const int t = p->qsl[i] + j, cq = s.ctx[i] - p->qlen[i] + j;
        const int lo = s.window > 0 ? std::max(0, cq - s.window + 1) : 0;
        for (int h = 0; h < s.heads; ++h) {
          const float* q = &p->q[t * p->q_stride + h * D];
          std::vector<double> sc(cq + 1, -INFINITY), acc(D, 0.0);
          double m = -INFINITY, l = 0;
          for (int c = lo; c <= cq; ++c) {
            const float* k = &p->k[Slot(*p, i, c) * kv_row + (h / G) * D];
            double d = 0;
            for (int e = 0; e < D; ++e) d += double{q[e]} * k[e];
            sc[c] = d * p->scale;
            m = std::max(m, sc[c]);
          }
          for (int c = lo; c <= cq; ++c) {
            const float* v = &p->v[Slot(*p, i, c) * kv_row + (h / G) * D];
            const double w = std::exp(sc[c] - m);
            l += w;
            for (int e = 0; e < D; ++e) acc[e] += w * v[e];
          }
          for (int e = 0; e < D; ++e) out[t * p->row + h * D + e] = static_cast<float>(acc[e] / l);
        }
      }
    }
    return Tensors{{"out", out}};
  };
  return b;
}

// ---------------- RMSNorm (plain and with the fused residual add) ----------------

struct RmsNormShape {
  int rows, hidden;
  bool fused_residual = false;
};

struct RmsNormProblem {
  RmsNormShape s;
  DType dt;
  float eps = 1e-5f;
  std::vector<float> x, residual, w;  // x, residual [rows, hidden]; w [hidden]
};

Bound BindRmsNorm(const RmsNormShape& s, DType dt, uint32_t seed) {
  auto p = std::make_shared<RmsNormProblem>();
  std::mt19937 rng(seed);
  const int64_t n = int64_t{s.rows} * s.hidden;
  p->s = s;
  p->dt = dt;
  p->x = random_values(n, dt, rng, -2.f, 2.f);
  p->residual = random_values(n, dt, rng, -2.f, 2.f);
  p->w = random_values(s.hidden, dt, rng, 0.5f, 1.5f);  // norm weights: offset around 1
  Bound b;
  b.cpu = [p] {
    const auto& s = p->s;
    // The CPU forward keeps the residual stream in fp32: sum = x + residual, then RmsNorm.
    std::vector<float> in(p->x);
    if (s.fused_residual)
      for (size_t i = 0; i < in.size(); ++i) in[i] += p->residual[i];
    std::vector<float> y(in.size(), NAN);
    cpu::RmsNorm(in.data(), s.hidden, p->w.data(), s.rows, s.hidden, p->eps, y.data(), s.hidden,
                 Pool());
    Tensors t{{"out", y}};
    if (s.fused_residual) t.emplace_back("residual", in);
    return t;
  };
  b.cuda = [p]() -> Tensors {
    const auto& s = p->s;
    auto dx = DeviceBuffer::from(encode(p->x, p->dt));
    auto dres = DeviceBuffer::from(encode(p->residual, p->dt));
    auto dw = DeviceBuffer::from(encode(p->w, p->dt));
    DeviceBuffer dout(p->x.size() * dtype_size(p->dt));
    dout.poison();
    RmsNormParams rp{dout.get(), dx.get(), s.fused_residual ? dres.get() : nullptr, dw.get()};
    rp.num_tokens = s.rows;
    rp.hidden = s.hidden;
    rp.eps = p->eps;
    rp.dtype = p->dt;
    if (!CudaOk(launch_rms_norm(rp, nullptr), "launch_rms_norm") ||
        !CudaOk(cudaDeviceSynchronize(), "rms_norm sync"))
      return {};
    Tensors t{{"out", decode(dout.to_host<uint8_t>(), p->dt)}};
    if (s.fused_residual) t.emplace_back("residual", decode(dres.to_host<uint8_t>(), p->dt));
    return t;
  };
  b.ref = [p] {
    const auto& s = p->s;
    std::vector<float> y(p->x.size()), sum(p->x.size());
    for (int r = 0; r < s.rows; ++r) {
      double ss = 0;
      for (int i = 0; i < s.hidden; ++i) {
        const size_t k = static_cast<size_t>(r) * s.hidden + i;
        const double v = double{p->x[k]} + (s.fused_residual ? p->residual[k] : 0.f);
        sum[k] = static_cast<float>(v);
        ss += v * v;
      }
      const double inv = 1 / std::sqrt(ss / s.hidden + p->eps);
      for (int i = 0; i < s.hidden; ++i) {
        const size_t k = static_cast<size_t>(r) * s.hidden + i;
        y[k] = static_cast<float>(double{sum[k]} * inv * p->w[i]);
      }
    }
    Tensors t{{"out", y}};
    if (s.fused_residual) t.emplace_back("residual", sum);
    return t;
  };
  return b;
}

// ---------------- RoPE (rotate-half) on q and k views of a fused qkv buffer ----------------

struct RopeShape {
  int tokens, heads, kv_heads, head_dim;
  double theta;
  RopeScalingParams scaling;
  int max_position;
};

struct RopeProblem {
  RopeShape s;
  DType dt;
  int64_t stride = 0;      // qkv row: q [heads, D] | k [kv_heads, D] | v [kv_heads, D]
  std::vector<float> qkv;  // [tokens, stride]
  std::vector<int32_t> pos;
  std::vector<float> cos, sin;  // [max_position, D / 2], kernels/rope_freqs
};

Bound BindRope(const RopeShape& s, DType dt, uint32_t seed) {
  auto p = std::make_shared<RopeProblem>();
  std::mt19937 rng(seed);
  p->s = s;
  p->dt = dt;
  p->stride = int64_t{s.heads + 2 * s.kv_heads} * s.head_dim;
  p->qkv = random_values(s.tokens * p->stride, dt, rng);
  p->pos.resize(s.tokens);
  for (auto& x : p->pos) x = static_cast<int32_t>(rng() % s.max_position);
  p->pos.back() = s.max_position - 1;  // the last table row
  rope_cos_sin_cache(rope_inv_freq(s.head_dim, s.theta, s.scaling), s.max_position, &p->cos,
                     &p->sin);
  const int64_t qw = int64_t{s.heads} * s.head_dim, kw = int64_t{s.kv_heads} * s.head_dim;
  auto split = [p, qw, kw](const std::vector<float>& qkv) {
    const int64_t t = p->s.tokens;
    return Tensors{{"q", Compact(qkv, t, p->stride, qw)},
                   {"k", Compact(qkv, t, p->stride, kw, qw)},
                   {"v_untouched", Compact(qkv, t, p->stride, kw, qw + kw)}};
  };
  Bound b;
  b.cpu = [p, qw, split] {
    const auto& s = p->s;
    const int64_t half = s.head_dim / 2;
    // ApplyRope takes one cos / sin row per token: gather the table rows of the positions.
    std::vector<float> c(s.tokens * half), sn(s.tokens * half);
    for (int t = 0; t < s.tokens; ++t) {
      std::copy_n(p->cos.begin() + p->pos[t] * half, half, c.begin() + t * half);
      std::copy_n(p->sin.begin() + p->pos[t] * half, half, sn.begin() + t * half);
    }
    std::vector<float> x(p->qkv);
    cpu::ApplyRope(x.data(), p->stride, s.tokens, s.heads, s.head_dim, c.data(), sn.data(), Pool());
    cpu::ApplyRope(x.data() + qw, p->stride, s.tokens, s.kv_heads, s.head_dim, c.data(), sn.data(),
                   Pool());
    return split(x);
  };
  b.cuda = [p, qw, split]() -> Tensors {
    const auto& s = p->s;
    const size_t es = dtype_size(p->dt);
    auto dx = DeviceBuffer::from(encode(p->qkv, p->dt));
    auto dpos = DeviceBuffer::from(p->pos);
    auto dc = DeviceBuffer::from(p->cos), ds = DeviceBuffer::from(p->sin);
    RopeParams rp{dx.get(), dx.get<uint8_t>() + qw * es, dpos.get<int32_t>(), dc.get<float>(),
                  ds.get<float>()};
    rp.num_tokens = s.tokens;
    rp.num_heads = s.heads;
    rp.num_kv_heads = s.kv_heads;
    rp.head_dim = s.head_dim;
    rp.q_stride = p->stride;
    rp.k_stride = p->stride;
    rp.dtype = p->dt;
    if (!CudaOk(launch_rope(rp, nullptr), "launch_rope") ||
        !CudaOk(cudaDeviceSynchronize(), "rope sync"))
      return {};
    return split(decode(dx.to_host<uint8_t>(), p->dt));
  };
  b.ref = [p, qw, split] {
    const auto& s = p->s;
    const int half = s.head_dim / 2;
    std::vector<float> x(p->qkv);
    for (int t = 0; t < s.tokens; ++t) {
      for (int h = 0; h < s.heads + s.kv_heads; ++h) {
        float* e = &x[t * p->stride + int64_t{h} * s.head_dim];
        for (int r = 0; r < half; ++r) {
          const double c = p->cos[p->pos[t] * half + r], sn = p->sin[p->pos[t] * half + r];
          const double a = e[r], bb = e[r + half];
          e[r] = static_cast<float>(a * c - bb * sn);
          e[r + half] = static_cast<float>(bb * c + a * sn);
        }
      }
    }
    return split(x);
  };
  return b;
}

// ---------------- the case table ----------------

struct OpCase {
  const char* name;
  bool cuda_fp32;  // the CUDA op also takes fp32 (else bf16 / fp16 only)
  bool fp32_out;   // the CUDA op writes fp32 whatever the input dtype (threshold of fp32)
  std::function<Bound(DType, uint32_t)> bind;
};

const std::vector<OpCase>& Cases() {
  using RS = RopeScalingParams;
  static const std::vector<OpCase> cases = {
      {"Gemm", false, false,
       [](DType d, uint32_t s) {
         return BindGemm({7, 83, 769}, d, s);
       }},
      {"GemmM1", false, false,
       [](DType d, uint32_t s) {
         return BindGemm({1, 131, 515}, d, s);
       }},
      {"GemmF32Out", false, true,
       [](DType d, uint32_t s) {
         return BindGemm({5, 67, 259, true}, d, s);
       }},
      {"GemmSwiGlu", false, false,
       [](DType d, uint32_t s) {
         return BindSwiGlu({5, 173, 259}, d, s);
       }},
      {"GemmSwiGluVec", false, false,  // inter % 8 == 0: silu_and_mul's vectorised path
       [](DType d, uint32_t s) {
         return BindSwiGlu({3, 160, 128}, d, s);
       }},
      {"DecodeGqa4", true, false,
       [](DType d, uint32_t s) {
         return BindAttn({8, 2, 128, 0, {1, 17, 83, 300, 769}, {}}, d, s);
       }},
      {"DecodeMhaD80", true, false,
       [](DType d, uint32_t s) {
         return BindAttn({4, 4, 80, 0, {33, 129, 2}, {}}, d, s);
       }},
      {"DecodeGqa8WindowD64", true, false,
       [](DType d, uint32_t s) {
         return BindAttn({8, 1, 64, 37, {5, 100, 511}, {}}, d, s);
       }},
      {"DecodeSplitKD96", true, false,  // one long sequence: split-K on both backends
       [](DType d, uint32_t s) {
         return BindAttn({8, 2, 96, 0, {1999}, {}}, d, s);
       }},
      {"DecodeGqa2WindowD32", true, false,
       [](DType d, uint32_t s) {
         return BindAttn({8, 4, 32, 45, {3, 64, 257}, {}}, d, s);
       }},
      {"DecodeMuseTinyD16", true, false,  // muse-tiny's heads: 4 q, 2 kv, head_dim 16
       [](DType d, uint32_t s) {
         return BindAttn({4, 2, 16, 0, {1, 16, 41, 530}, {}}, d, s);
       }},
      {"PrefillChunkedGqa2", false, false,  // pure prefill, chunks over a cache, decode-like
       [](DType d, uint32_t s) {
         return BindAttn({4, 2, 128, 0, {1, 7, 83, 300}, {1, 7, 83, 45}}, d, s);
       }},
      {"PrefillGqa8WindowD64", false, false,
       [](DType d, uint32_t s) {
         return BindAttn({8, 1, 64, 50, {200, 129, 40}, {100, 129, 1}}, d, s);
       }},
      {"PrefillStridedQkvD80", false, false,  // q / out as views into a fused qkv buffer
       [](DType d, uint32_t s) {
         return BindAttn({6, 2, 80, 0, {97, 20}, {97, 3}, true}, d, s);
       }},
      {"PrefillChunkedD16", false, false,  // muse-tiny's heads, chunks over a cache
       [](DType d, uint32_t s) {
         return BindAttn({4, 2, 16, 0, {1, 20, 150, 70}, {1, 20, 67, 70}}, d, s);
       }},
      {"PrefillStridedQkvWindowD32", false, false,
       [](DType d, uint32_t s) {
         return BindAttn({4, 1, 32, 40, {97, 20}, {97, 3}, true}, d, s);
       }},
      {"RmsNorm", true, false,
       [](DType d, uint32_t s) {
         return BindRmsNorm({7, 769}, d, s);
       }},
      {"RmsNormManyRowsVec", true, false,  // >= 64 rows: split over the pool; hidden % 8 == 0
       [](DType d, uint32_t s) {
         return BindRmsNorm({83, 256}, d, s);
       }},
      {"RmsNormFusedResidual", true, false,
       [](DType d, uint32_t s) {
         return BindRmsNorm({7, 769, true}, d, s);
       }},
      {"RmsNormFusedResidualVec", true, false,
       [](DType d, uint32_t s) {
         return BindRmsNorm({67, 512, true}, d, s);
       }},
      {"RopeLlama3D128", true, false,
       [](DType d, uint32_t s) {
         return BindRope({7, 5, 2, 128, 500000.0, {RS::Type::kLlama3, 8.0, 1.0, 4.0, 8192}, 4099},
                         d, s);
       }},
      {"RopeLlama3D16", true, false,  // muse-tiny's rope
       [](DType d, uint32_t s) {
         return BindRope({7, 4, 2, 16, 500000.0, {RS::Type::kLlama3, 8.0, 1.0, 4.0, 8192}, 4099}, d,
                         s);
       }},
      {"RopeLinearD80ManyTokens", true, false,
       [](DType d, uint32_t s) {
         return BindRope({83, 3, 1, 80, 10000.0, {RS::Type::kLinear, 2.0}, 2048}, d, s);
       }},
  };
  return cases;
}

// ---------------- the backend comparison ----------------

using Param = std::pair<size_t, DType>;  // (index into Cases(), CUDA dtype)

std::vector<Param> BackendParams() {
  std::vector<Param> out;
  for (size_t i = 0; i < Cases().size(); ++i) {
    out.emplace_back(i, DType::kBFloat16);
    out.emplace_back(i, DType::kFloat16);
    if (Cases()[i].cuda_fp32) out.emplace_back(i, DType::kFloat32);
  }
  return out;
}

uint32_t Seed(const Param& p) { return 1000 * static_cast<uint32_t>(p.first) + 17; }

class BackendOps : public ::testing::TestWithParam<Param> {};

TEST_P(BackendOps, CpuAndCudaAgreeByNmse) {
  MUSE_REQUIRE_DEVICE();
  if (!cpu::PackedGemmSupported()) GTEST_SKIP() << "CPU has no AVX2 + FMA";
  const auto& [index, dt] = GetParam();
  const OpCase& c = Cases()[index];
  // Same seed for every dtype: the inputs differ only by their rounding to dt.
  const Bound b = c.bind(dt, Seed(GetParam()));
  const Tensors cpu_out = b.cpu(), cuda_out = b.cuda();
  ASSERT_EQ(cpu_out.size(), cuda_out.size()) << "the CUDA run failed (see above)";
  const double max_nmse = MaxNmse(c.fp32_out ? DType::kFloat32 : dt);
  for (size_t i = 0; i < cpu_out.size(); ++i) {
    const double e = Nmse(cpu_out[i].second, cuda_out[i].second);
    EXPECT_LE(e, max_nmse) << c.name << " " << dtype_name(dt) << " output " << cpu_out[i].first
                           << ": NMSE " << e << " (cpu elements " << cpu_out[i].second.size()
                           << ", cuda " << cuda_out[i].second.size() << ")";
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, BackendOps, ::testing::ValuesIn(BackendParams()),
                         [](const ::testing::TestParamInfo<Param>& i) {
                           return std::string(Cases()[i.param.first].name) + "_" +
                                  dtype_name(i.param.second);
                         });

// ---------------- the CPU half, on every machine ----------------

// Every case's CPU kernel, through the same layout conversions, against the double loop of the
// CUDA op's contract (fp32 inputs). Also checks the thresholds above: one rounding of the CPU
// output to bf16 / fp16 stays well under them, and one misplaced element per position (the output
// shifted by one) is far over them.
class CpuReferenceSanity : public ::testing::TestWithParam<size_t> {};

TEST_P(CpuReferenceSanity, CpuKernelMatchesDoubleLoop) {
  if (!cpu::PackedGemmSupported()) GTEST_SKIP() << "CPU has no AVX2 + FMA";
  const OpCase& c = Cases()[GetParam()];
  const Bound b = c.bind(DType::kFloat32, Seed({GetParam(), DType::kFloat32}));
  const Tensors got = b.cpu(), ref = b.ref();
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const auto& [name, out] = got[i];
    ASSERT_EQ(name, ref[i].first);
    EXPECT_LE(Nmse(ref[i].second, out), MaxNmse(DType::kFloat32)) << c.name << " " << name;
    if (name == "v_untouched") {
      EXPECT_EQ(out, ref[i].second) << c.name;
      continue;
    }
    for (DType t : {DType::kBFloat16, DType::kFloat16}) {
      std::vector<float> rounded(out);
      for (float& x : rounded) x = round_to(x, t);
      EXPECT_LE(Nmse(out, rounded), MaxNmse(t) / 4)
          << c.name << " " << name << " " << dtype_name(t);
    }
    std::vector<float> shifted(out);
    std::rotate(shifted.begin(), shifted.begin() + 1, shifted.end());
    EXPECT_GT(Nmse(out, shifted), 1e-2) << c.name << " " << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, CpuReferenceSanity, ::testing::Range<size_t>(0, Cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& i) {
                           return std::string(Cases()[i.param].name);
                         });

TEST(NmseMetric, IsLlamaCppsAndCatchesNaN) {
  EXPECT_DOUBLE_EQ(Nmse({1, 2}, {1, 2}), 0.0);
  EXPECT_DOUBLE_EQ(Nmse({3, 4}, {3, 0}), 16.0 / 25.0);
  EXPECT_EQ(Nmse({1, 2}, {1, NAN}), INFINITY);
  EXPECT_EQ(Nmse({1, 2}, {1}), INFINITY);
}

}  // namespace
}  // namespace muse::kernels::test
