#include "kernels/cuda/gemm.h"

namespace muse::kernels {

cublasStatus_t launch_gemm(const GemmParams& p, cublasHandle_t handle, cudaStream_t stream) {
  if (p.m == 0) return CUBLAS_STATUS_SUCCESS;
  if (p.dtype != DType::kBFloat16 && p.dtype != DType::kFloat16) return CUBLAS_STATUS_NOT_SUPPORTED;
  const cublasStatus_t s = cublasSetStream(handle, stream);
  if (s != CUBLAS_STATUS_SUCCESS) return s;
  const cudaDataType_t in = p.dtype == DType::kFloat16 ? CUDA_R_16F : CUDA_R_16BF;
  const float alpha = 1.0f, beta = 0.0f;
  return cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(p.n),
                      static_cast<int>(p.m), static_cast<int>(p.k), &alpha, p.w, in,
                      static_cast<int>(p.k), p.x, in, static_cast<int>(p.k), &beta, p.y,
                      p.y_fp32 ? CUDA_R_32F : in, static_cast<int>(p.n), CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT);
}

}  // namespace muse::kernels
