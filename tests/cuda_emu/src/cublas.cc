// The emulator's cuBLAS: a reference cublasGemmEx in fp32 that is enqueued on the handle's
// stream as a kernel named "cublasGemmEx", so it runs in stream order, is recorded by stream
// capture and replayed (with the freed-pointer check) like any kernel.
#include "muse_cuda_emu/cublas.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <utility>
#include <vector>

#include "kernels/float16.h"
#include "muse_cuda_emu/launch_queue.h"
#include "muse_cuda_emu/runtime_api.h"
#include "muse_cuda_emu/types.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;  // kept for cublasSetWorkspace's contract; the reference needs none
  size_t workspace_bytes = 0;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace muse::cuda_emu {
namespace {

std::mutex& HandlesMu() {
  static auto* mu = new std::mutex;
  return *mu;
}

std::set<cublasContext*>& Handles() {
  static auto* h = new std::set<cublasContext*>;
  return *h;
}

bool ValidHandle(cublasHandle_t h) {
  std::lock_guard<std::mutex> lock(HandlesMu());
  return h != nullptr && Handles().count(h) != 0;
}

// bf16 / fp16 <-> fp32 (round to nearest even): the project's one copy, kernels/float16.h.
using kernels::Bf16ToFloat;
using kernels::F16ToFloat;
using kernels::FloatToBf16;
using kernels::FloatToF16;

size_t ElemSize(cudaDataType t) {
  switch (t) {
    case CUDA_R_16F:
    case CUDA_R_16BF:
      return 2;
    case CUDA_R_32F:
      return 4;
    default:
      return 0;
  }
}

float Load(const void* base, cudaDataType t, int64_t i) {
  switch (t) {
    case CUDA_R_16BF:
      return Bf16ToFloat(static_cast<const uint16_t*>(base)[i]);
    case CUDA_R_16F:
      return F16ToFloat(static_cast<const uint16_t*>(base)[i]);
    default:
      return static_cast<const float*>(base)[i];
  }
}

void Store(void* base, cudaDataType t, int64_t i, float v) {
  switch (t) {
    case CUDA_R_16BF:
      static_cast<uint16_t*>(base)[i] = FloatToBf16(v);
      break;
    case CUDA_R_16F:
      static_cast<uint16_t*>(base)[i] = FloatToF16(v);
      break;
    default:
      static_cast<float*>(base)[i] = v;
      break;
  }
}

// Converts a column-major `rows` x `cols` matrix (leading dimension ld) to fp32, element (r, c)
// going to out[dst(r, c)]. The source is read contiguously.
template <typename Convert, typename Dst>
void PackTyped(const void* src, int64_t rows, int64_t cols, int64_t ld, float* out, Convert convert,
               Dst dst) {
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = 0; r < rows; ++r) out[dst(r, c)] = convert(src, c * ld + r);
  }
}

template <typename Dst>
void Pack(const void* src, cudaDataType t, int64_t rows, int64_t cols, int64_t ld, float* out,
          Dst dst) {
  switch (t) {
    case CUDA_R_16BF:
      PackTyped(
          src, rows, cols, ld, out,
          [](const void* p, int64_t i) { return Bf16ToFloat(static_cast<const uint16_t*>(p)[i]); },
          dst);
      break;
    case CUDA_R_16F:
      PackTyped(
          src, rows, cols, ld, out,
          [](const void* p, int64_t i) { return F16ToFloat(static_cast<const uint16_t*>(p)[i]); },
          dst);
      break;
    default:
      PackTyped(
          src, rows, cols, ld, out,
          [](const void* p, int64_t i) { return static_cast<const float*>(p)[i]; }, dst);
      break;
  }
}

// What the launch carries. The three matrix pointers come first, at 8-byte-aligned offsets, so
// graph capture finds them in arg_bytes and replay can check they were not freed.
struct GemmArgs {
  const void* a;
  const void* b;
  void* c;
  int64_t m, n, k, lda, ldb, ldc;
  int32_t transa, transb, atype, btype, ctype, pad;
  float alpha, beta;
};

// A GPU reading outside its buffers faults (cudaErrorIllegalAddress, and the context is lost);
// the reference fails loudly instead of reading a neighbour's memory.
void CheckOperand(const char* what, const void* p, int64_t rows, int64_t cols, int64_t ld,
                  cudaDataType t) {
  const size_t bytes = static_cast<size_t>((cols - 1) * ld + rows) * ElemSize(t);
  AllocationInfo a;
  if (p != nullptr && find_allocation(p, &a) &&
      bytes <= a.size - (reinterpret_cast<uintptr_t>(p) - a.base)) {
    return;
  }
  std::fprintf(stderr,
               "muse cuda_emu: FATAL: cublasGemmEx: %s = %p (%" PRId64 " x %" PRId64 ", ld %" PRId64
               ", %zu bytes) is not inside a live device allocation",
               what, p, rows, cols, ld, bytes);
  if (p != nullptr && find_allocation(p, &a)) {
    std::fprintf(stderr, " (allocation #%" PRIu64 " has %zu bytes at 0x%" PRIxPTR ")", a.id, a.size,
                 a.base);
  }
  std::fprintf(stderr, ". A GPU would fault with an illegal address.\n");
  std::fflush(stderr);
  std::abort();
}

void RunGemm(const GemmArgs& g) {
  const auto at = static_cast<cudaDataType>(g.atype), bt = static_cast<cudaDataType>(g.btype),
             ct = static_cast<cudaDataType>(g.ctype);
  const bool ta = g.transa != CUBLAS_OP_N, tb = g.transb != CUBLAS_OP_N;
  const int64_t m = g.m, n = g.n, k = g.k;
  const bool use_ab = k > 0 && g.alpha != 0.0f;  // as BLAS: A and B are not read otherwise
  if (use_ab) {
    CheckOperand("A", g.a, ta ? k : m, ta ? m : k, g.lda, at);
    CheckOperand("B", g.b, tb ? n : k, tb ? k : n, g.ldb, bt);
  }
  CheckOperand("C", g.c, m, n, g.ldc, ct);

  // fp32 panels in the order the inner loop reads them. op(A) goes in strips of kStrip rows,
  // each strip contiguous over p: ap[((i / kStrip) * k + p) * kStrip + i % kStrip]. op(B) goes
  // column by column: bp[j * k + p]. Rows and columns are padded with zeros to whole strips and
  // column groups; the padding is computed and never written out.
  constexpr int64_t kStrip = 8, kCols = 4;
  const int64_t mp = (m + kStrip - 1) / kStrip * kStrip;
  const int64_t np = (n + kCols - 1) / kCols * kCols;
  std::vector<float> ap, bp;
  if (use_ab) {
    ap.assign(static_cast<size_t>(mp * k), 0.0f);
    bp.assign(static_cast<size_t>(np * k), 0.0f);
    auto a_at = [k](int64_t i, int64_t p) { return ((i / kStrip) * k + p) * kStrip + i % kStrip; };
    if (ta) {
      Pack(g.a, at, k, m, g.lda, ap.data(), [&](int64_t p, int64_t i) { return a_at(i, p); });
    } else {
      Pack(g.a, at, m, k, g.lda, ap.data(), a_at);
    }
    if (tb) {
      Pack(g.b, bt, n, k, g.ldb, bp.data(), [k](int64_t j, int64_t p) { return j * k + p; });
    } else {
      Pack(g.b, bt, k, n, g.ldb, bp.data(), [k](int64_t p, int64_t j) { return j * k + p; });
    }
  }

  // A register tile of kStrip x kCols accumulators (two 4-float vectors per column) runs over p
  // in order, so every C element sums its k products sequentially in fp32, like one GPU thread.
  // Row blocks keep their strips of op(A) in L2 while all column groups pass over them.
  using V4 = float __attribute__((vector_size(16)));
  const int64_t mb = std::max<int64_t>(
      kStrip, (int64_t{256} * 1024 / 4) / std::max<int64_t>(k, 1) / kStrip * kStrip);
  float tile[kCols][kStrip];
  for (int64_t i0 = 0; i0 < mp; i0 += mb) {
    const int64_t i1 = std::min(mp, i0 + mb);
    for (int64_t j0 = 0; j0 < np; j0 += kCols) {
      for (int64_t s = i0; s < i1; s += kStrip) {
        V4 acc[kCols][2] = {};
        if (use_ab) {
          const float* a = ap.data() + s * k;
          const float* b0 = bp.data() + j0 * k;
          for (int64_t p = 0; p < k; ++p) {
            V4 lo, hi;
            std::memcpy(&lo, a + p * kStrip, sizeof(lo));
            std::memcpy(&hi, a + p * kStrip + 4, sizeof(hi));
            for (int64_t jj = 0; jj < kCols; ++jj) {
              const float b = b0[jj * k + p];
              acc[jj][0] += lo * b;
              acc[jj][1] += hi * b;
            }
          }
        }
        std::memcpy(tile, acc, sizeof(tile));
        for (int64_t jj = 0; jj < kCols && j0 + jj < n; ++jj) {
          const int64_t j = j0 + jj;
          for (int64_t r = 0; r < kStrip && s + r < m; ++r) {
            const int64_t idx = (s + r) + j * g.ldc;
            float v = g.alpha * tile[jj][r];
            // beta == 0 means C is write-only: garbage (even NaN) in it must not leak through.
            if (g.beta != 0.0f) v += g.beta * Load(g.c, ct, idx);
            Store(g.c, ct, idx, v);
          }
        }
      }
    }
  }
}

bool SupportedTypes(cudaDataType a, cudaDataType b, cudaDataType c) {
  if (a != b) return false;
  switch (a) {
    case CUDA_R_16BF:
      return c == CUDA_R_16BF || c == CUDA_R_32F;
    case CUDA_R_16F:
      return c == CUDA_R_16F || c == CUDA_R_32F;
    case CUDA_R_32F:
      return c == CUDA_R_32F;
    default:
      return false;
  }
}

bool Fp32Compute(cublasComputeType_t t) {
  switch (t) {
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
    // The fast modes allow reduced-precision inputs; exact fp32 is within what they permit.
    case CUBLAS_COMPUTE_32F_FAST_16F:
    case CUBLAS_COMPUTE_32F_FAST_16BF:
    case CUBLAS_COMPUTE_32F_FAST_TF32:
      return true;
    default:
      return false;
  }
}

}  // namespace
}  // namespace muse::cuda_emu

using muse::cuda_emu::ValidHandle;

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  auto* h = new cublasContext;
  std::lock_guard<std::mutex> lock(muse::cuda_emu::HandlesMu());
  muse::cuda_emu::Handles().insert(h);
  *handle = h;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  std::lock_guard<std::mutex> lock(muse::cuda_emu::HandlesMu());
  if (handle == nullptr || muse::cuda_emu::Handles().erase(handle) == 0) {
    return CUBLAS_STATUS_NOT_INITIALIZED;
  }
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t streamId) {
  if (!ValidHandle(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = streamId;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* streamId) {
  if (!ValidHandle(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (streamId == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *streamId = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace,
                                  size_t workspaceSizeInBytes) {
  if (!ValidHandle(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  // cuBLAS requires 256-byte alignment of a user workspace.
  if (workspace == nullptr ? workspaceSizeInBytes != 0
                           : reinterpret_cast<uintptr_t>(workspace) % 256 != 0) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  handle->workspace = workspace;
  handle->workspace_bytes = workspaceSizeInBytes;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!ValidHandle(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  const unsigned base = static_cast<unsigned>(mode) & 0xfu;
  if (base > CUBLAS_TF32_TENSOR_OP_MATH ||
      (static_cast<unsigned>(mode) & ~0xfu &
       ~unsigned{CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION}) != 0) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  if (!ValidHandle(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->math;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "error detected trying to check the license";
  }
  return "unknown error";
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo) {
  namespace e = muse::cuda_emu;
  if (!ValidHandle(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  auto valid_op = [](cublasOperation_t op) {
    return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;  // C == T for reals
  };
  if (!valid_op(transa) || !valid_op(transb) || m < 0 || n < 0 || k < 0) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  // Leading dimensions are at least the row count of the matrix as stored (and at least 1).
  const int a_rows = transa == CUBLAS_OP_N ? m : k;
  const int b_rows = transb == CUBLAS_OP_N ? k : n;
  if (lda < std::max(1, a_rows) || ldb < std::max(1, b_rows) || ldc < std::max(1, m)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (!(algo == CUBLAS_GEMM_DEFAULT || (algo >= CUBLAS_GEMM_ALGO0 && algo <= CUBLAS_GEMM_ALGO23) ||
        (algo >= CUBLAS_GEMM_DEFAULT_TENSOR_OP && algo <= CUBLAS_GEMM_ALGO15_TENSOR_OP))) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (!e::Fp32Compute(computeType) || !e::SupportedTypes(Atype, Btype, Ctype)) {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (alpha == nullptr || beta == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;  // nothing to compute, nothing launched

  e::GemmArgs g{};
  g.a = A;
  g.b = B;
  g.c = C;
  g.m = m;
  g.n = n;
  g.k = k;
  g.lda = lda;
  g.ldb = ldb;
  g.ldc = ldc;
  g.transa = transa;
  g.transb = transb;
  g.atype = Atype;
  g.btype = Btype;
  g.ctype = Ctype;
  // Host pointer mode: the scalars are read now, so a captured GEMM replays with these values.
  std::memcpy(&g.alpha, alpha, sizeof(float));
  std::memcpy(&g.beta, beta, sizeof(float));

  e::KernelLaunch launch;
  launch.name = "cublasGemmEx";
  launch.arg_bytes.resize(sizeof(g));
  std::memcpy(launch.arg_bytes.data(), &g, sizeof(g));
  launch.run = [g] { e::RunGemm(g); };
  return e::enqueue_launch(handle->stream, std::move(launch)) == cudaSuccess
             ? CUBLAS_STATUS_SUCCESS
             : CUBLAS_STATUS_EXECUTION_FAILED;
}
