// The CUDA device language as the emulator runs it on a CPU.
//
// Every CUDA thread is a fiber with its own stack; the blocks of a grid run one after another on
// the calling OS thread, the threads of a block interleave only at synchronisation points
// (__syncthreads, warp collectives, mma.sync), in forward or reverse thread order
// (MUSE_CUDA_EMU_SCHEDULE=reverse). __syncthreads is a barrier counted over threads that have not
// exited; a warp collective meets over exactly the lanes of its mask, and the emulator aborts with
// a message naming kernel, block, lanes and source lines when lanes reach different collectives,
// name a lane that has exited, or no thread can make progress. Static __shared__ arrays are
// per-OS-thread statics; dynamic shared memory is an exact-size allocation poisoned with 0xcd
// before every block, limited to 48 KiB unless raised with cudaFuncSetAttribute.
//
// What is not modelled: code generation, performance, bank conflicts, the tensor cores' exact
// accumulation order, memory-model effects between blocks (inter-block races), and the
// contents of static __shared__ memory left by a previous block.
#pragma once

#include <math.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include "muse_cuda_emu/launch_queue.h"
#include "muse_cuda_emu/types.h"

#define __global__
#define __device__
#define __host__
#define __constant__ static
#define __managed__
#define __noinline__ __attribute__((noinline))
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// One copy per OS thread: the blocks an OS thread runs use it one after another.
#define __shared__ static thread_local

namespace muse::cuda_emu {

// The CUDA thread a fiber runs.
struct ThreadState {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};

// Set while a fiber runs on this OS thread, null in host code.
extern thread_local const ThreadState* t_thread;
// Prints `what` with the kernel, block and thread running (if any) and aborts.
[[noreturn]] void fatal(const char* what);
[[noreturn]] void fatal_not_in_kernel(const char* what);

inline const ThreadState& this_thread(const char* what) {
  if (!t_thread) fatal_not_in_kernel(what);
  return *t_thread;
}

enum class Collective : uint8_t {
  kShflIdx,
  kShflUp,
  kShflDown,
  kShflXor,
  kSyncWarp,
  kBallot,
  kAny,
  kAll,
  kMmaBf16,
  kMmaF16,
};

// A warp collective: every lane of `mask` deposits `value` and gets its result once all of them
// have arrived at the same collective (same op, mask, width and source line).
// `file`/`line` are the call site (__builtin_FILE/LINE as default arguments: std::source_location
// is not usable by clang 14, which lints this code).
uint64_t warp_collective(Collective op, unsigned mask, uint64_t value, int arg, int width,
                         const char* file, unsigned line);
void syncthreads(const char* file, unsigned line);
void* dynamic_shared_memory();
unsigned active_mask();
// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}: the warp's 32 fragments are gathered into
// A (16x16), B (16x8) and C (16x8), D = A B + C is computed in fp32, each lane gets its part.
void mma_m16n8k16(Collective op, float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                  const char* file, unsigned line);

inline void mma_m16n8k16_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                              const char* file = __builtin_FILE(),
                              unsigned line = __builtin_LINE()) {
  mma_m16n8k16(Collective::kMmaBf16, c, a, b0, b1, file, line);
}
inline void mma_m16n8k16_f16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                             const char* file = __builtin_FILE(),
                             unsigned line = __builtin_LINE()) {
  mma_m16n8k16(Collective::kMmaF16, c, a, b0, b1, file, line);
}

template <typename T>
uint64_t to_bits(const T& v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of a >8-byte type");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <typename T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

// ---- kernel launch ----

struct LaunchConfig {
  dim3 grid, block;
  size_t dynamic_smem = 0;
};

// Checks the configuration against the device limits and the kernel's dynamic shared memory
// limit; cudaSuccess or the error a real launch reports.
cudaError_t check_launch(const void* kernel, const LaunchConfig& config);
// Runs every block of the grid; body() is one CUDA thread.
void run_grid(const char* name, const LaunchConfig& config, const std::function<void()>& body);
cudaError_t set_max_dynamic_smem(const void* kernel, int bytes);

template <typename... P>
class Launcher {
 public:
  using Kernel = void (*)(P...);
  Launcher(const char* name, Kernel kernel, LaunchConfig config, cudaStream_t stream)
      : name_(name), kernel_(kernel), config_(config), stream_(stream) {}

  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong argument count");
    const cudaError_t err = check_launch(reinterpret_cast<const void*>(kernel_), config_);
    if (err != cudaSuccess) {
      set_last_error(err);
      return;
    }
    // Arguments are copied at launch, as CUDA copies them into the parameter buffer.
    using Args = std::tuple<std::decay_t<P>...>;
    auto saved = std::make_shared<Args>(std::forward<A>(args)...);
    KernelLaunch launch;
    launch.name = name_;
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(saved.get());
    launch.arg_bytes.assign(bytes, bytes + sizeof(Args));
    launch.run = [name = name_, kernel = kernel_, config = config_, saved] {
      run_grid(name, config, [&] { std::apply(kernel, *saved); });
    };
    submit_launch(stream_, std::move(launch));
  }

 private:
  const char* name_;
  Kernel kernel_;
  LaunchConfig config_;
  cudaStream_t stream_;
};

template <typename... P>
Launcher<P...> Launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block,
                      size_t dynamic_smem = 0, cudaStream_t stream = nullptr) {
  return Launcher<P...>(name, kernel, LaunchConfig{grid, block, dynamic_smem}, stream);
}

}  // namespace muse::cuda_emu

// ---- built-in variables ----
#define threadIdx (::muse::cuda_emu::this_thread("threadIdx").thread_idx)
#define blockIdx (::muse::cuda_emu::this_thread("blockIdx").block_idx)
#define blockDim (::muse::cuda_emu::this_thread("blockDim").block_dim)
#define gridDim (::muse::cuda_emu::this_thread("gridDim").grid_dim)
constexpr int warpSize = 32;

template <typename T>
cudaError_t cudaFuncSetAttribute(T* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;  // hints
  return ::muse::cuda_emu::set_max_dynamic_smem(reinterpret_cast<const void*>(kernel), value);
}

// ---- synchronisation and warp collectives ----
inline void __syncthreads(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) {
  ::muse::cuda_emu::syncthreads(file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       unsigned line = __builtin_LINE()) {
  ::muse::cuda_emu::warp_collective(::muse::cuda_emu::Collective::kSyncWarp, mask, 0, 0, 32, file,
                                    line);
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline unsigned __activemask() { return ::muse::cuda_emu::active_mask(); }

#define MUSE_EMU_SHUFFLE(fn, op)                                                                  \
  template <typename T>                                                                           \
  T fn(unsigned mask, T var, int arg, int width = 32, const char* file = __builtin_FILE(),        \
       unsigned line = __builtin_LINE()) {                                                        \
    return ::muse::cuda_emu::from_bits<T>(::muse::cuda_emu::warp_collective(                      \
        ::muse::cuda_emu::Collective::op, mask, ::muse::cuda_emu::to_bits(var), arg, width, file, \
        line));                                                                                   \
  }
MUSE_EMU_SHUFFLE(__shfl_sync, kShflIdx)
MUSE_EMU_SHUFFLE(__shfl_up_sync, kShflUp)
MUSE_EMU_SHUFFLE(__shfl_down_sync, kShflDown)
MUSE_EMU_SHUFFLE(__shfl_xor_sync, kShflXor)
#undef MUSE_EMU_SHUFFLE

inline unsigned __ballot_sync(unsigned mask, int pred, const char* file = __builtin_FILE(),
                              unsigned line = __builtin_LINE()) {
  return static_cast<unsigned>(::muse::cuda_emu::warp_collective(
      ::muse::cuda_emu::Collective::kBallot, mask, pred != 0, 0, 32, file, line));
}
inline int __any_sync(unsigned mask, int pred, const char* file = __builtin_FILE(),
                      unsigned line = __builtin_LINE()) {
  return static_cast<int>(::muse::cuda_emu::warp_collective(::muse::cuda_emu::Collective::kAny,
                                                            mask, pred != 0, 0, 32, file, line));
}
inline int __all_sync(unsigned mask, int pred, const char* file = __builtin_FILE(),
                      unsigned line = __builtin_LINE()) {
  return static_cast<int>(::muse::cuda_emu::warp_collective(::muse::cuda_emu::Collective::kAll,
                                                            mask, pred != 0, 0, 32, file, line));
}

// ---- atomics (blocks and threads of a block never run concurrently, but other launches on
// other host threads may) ----
template <typename T>
T atomicAdd(T* p, T v) {
  if constexpr (std::is_floating_point_v<T>) {
    T old, desired;
    __atomic_load(p, &old, __ATOMIC_SEQ_CST);
    do {
      desired = old + v;
    } while (
        !__atomic_compare_exchange(p, &old, &desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    return old;
  } else {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
  }
}
template <typename T>
T atomicSub(T* p, T v) {
  return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST);
}
template <typename T>
T atomicMax(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (old < v &&
         !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
template <typename T>
T atomicMin(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (v < old &&
         !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
template <typename T>
T atomicCAS(T* p, T compare, T v) {
  __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;
}
template <typename T>
T atomicExch(T* p, T v) {
  return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}

// ---- device math and bit intrinsics ----
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return exp10f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __exp2f(float x) { return exp2f(x); }

inline unsigned __float_as_uint(float f) {
  return ::muse::cuda_emu::from_bits<unsigned>(::muse::cuda_emu::to_bits(f));
}
inline float __uint_as_float(unsigned u) { return ::muse::cuda_emu::from_bits<float>(u); }
inline int __float_as_int(float f) {
  return ::muse::cuda_emu::from_bits<int>(::muse::cuda_emu::to_bits(f));
}
inline float __int_as_float(int i) {
  return ::muse::cuda_emu::from_bits<float>(static_cast<uint32_t>(i));
}
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
}
inline int __mulhi(int a, int b) { return static_cast<int>((static_cast<int64_t>(a) * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) {
  return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x));
}
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  return __builtin_bswap32(x);
}
template <typename T>
T __ldg(const T* p) {
  return *p;
}
[[noreturn]] inline void __trap() { ::muse::cuda_emu::fatal("__trap() reached"); }

// CUDA's integer and floating min/max overloads (host and device share them in nvcc's headers).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline unsigned min(int a, unsigned b) { return min(static_cast<unsigned>(a), b); }
inline unsigned max(int a, unsigned b) { return max(static_cast<unsigned>(a), b); }
inline unsigned min(unsigned a, int b) { return min(a, static_cast<unsigned>(b)); }
inline unsigned max(unsigned a, int b) { return max(a, static_cast<unsigned>(b)); }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
