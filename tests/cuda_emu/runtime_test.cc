// Tests of the emulator's host runtime and reference cuBLAS, without any kernel: allocations,
// bound-checked copies, events, graph capture and replay, and cublasGemmEx against a double
// precision loop.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "muse_cuda_emu/cublas.h"
#include "muse_cuda_emu/launch_queue.h"
#include "muse_cuda_emu/runtime_api.h"
#include "muse_cuda_emu/types.h"

namespace muse::cuda_emu {
namespace {

class RuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Death tests fork ("fast" style) so that the child sees the same allocation ids.
    GTEST_FLAG_SET(death_test_style, "fast");
    cudaGetLastError();
    live_before_ = live_allocation_count();
  }
  void TearDown() override {
    EXPECT_EQ(live_allocation_count(), live_before_) << "the test leaked allocations";
    EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "an unexpected error was left behind";
  }
  size_t live_before_ = 0;
};

// A launch whose arguments are `ptrs` (8 bytes each) and whose body counts its runs.
KernelLaunch CountingLaunch(const std::string& name, std::vector<const void*> ptrs, int* runs) {
  KernelLaunch l;
  l.name = name;
  l.arg_bytes.resize(ptrs.size() * sizeof(void*));
  if (!ptrs.empty()) std::memcpy(l.arg_bytes.data(), ptrs.data(), l.arg_bytes.size());
  l.run = [runs] { ++*runs; };
  return l;
}

TEST_F(RuntimeTest, DeviceQueries) {
  int count = 0, dev = -1;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  EXPECT_EQ(count, 1);
  EXPECT_EQ(cudaSetDevice(0), cudaSuccess);
  EXPECT_EQ(cudaGetDevice(&dev), cudaSuccess);
  EXPECT_EQ(dev, 0);
  EXPECT_EQ(cudaSetDevice(1), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  cudaDeviceProp prop{};
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  EXPECT_STREQ(prop.name, "muse CUDA emulator (sm_90 limits)");
  EXPECT_EQ(prop.major, 9);
  EXPECT_EQ(prop.minor, 0);
  EXPECT_EQ(prop.warpSize, 32);
  EXPECT_EQ(prop.maxThreadsPerBlock, 1024);
  EXPECT_EQ(prop.sharedMemPerBlockOptin, size_t{227 * 1024});
  int sms = 0;
  EXPECT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);
  EXPECT_EQ(sms, prop.multiProcessorCount);
  EXPECT_STREQ(cudaGetErrorName(cudaErrorStreamCaptureInvalidated),
               "cudaErrorStreamCaptureInvalidated");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorInvalidValue), "invalid argument");
  EXPECT_STREQ(cudaGetErrorString(static_cast<cudaError_t>(12345)), "unrecognized error code");
}

TEST_F(RuntimeTest, AllocationRegistry) {
  size_t free0 = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free0, &total), cudaSuccess);
  EXPECT_EQ(total, size_t{80} << 30);
  void* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, 1000), cudaSuccess);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 256, 0u);
  AllocationInfo info;
  ASSERT_TRUE(find_allocation(static_cast<char*>(p) + 999, &info));
  EXPECT_EQ(info.base, reinterpret_cast<uintptr_t>(p));
  EXPECT_EQ(info.size, 1000u);
  EXPECT_EQ(info.kind, AllocKind::kDevice);
  EXPECT_FALSE(find_allocation(static_cast<char*>(p) + 1000, nullptr));               // exact size
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(static_cast<unsigned char*>(p)[i], 0xcd);  // garbage
  size_t free1 = 0;
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  EXPECT_EQ(free0 - free1, 1000u);

  void* h = nullptr;
  ASSERT_EQ(cudaMallocHost(&h, 64), cudaSuccess);
  ASSERT_TRUE(find_allocation(h, &info));
  EXPECT_EQ(info.kind, AllocKind::kPinnedHost);
  EXPECT_EQ(cudaFree(h), cudaErrorInvalidValue);      // pinned memory is not cudaFree's
  EXPECT_EQ(cudaFreeHost(p), cudaErrorInvalidValue);  // nor device memory cudaFreeHost's
  EXPECT_EQ(cudaFree(static_cast<char*>(p) + 8), cudaErrorInvalidValue);  // not a base
  EXPECT_EQ(cudaFreeHost(h), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaErrorInvalidValue);  // double free
  EXPECT_EQ(cudaFree(nullptr), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);

  void* z = &free0;
  EXPECT_EQ(cudaMalloc(&z, 0), cudaSuccess);
  EXPECT_EQ(z, nullptr);
  EXPECT_EQ(cudaMalloc(&z, size_t{81} << 30), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation);
}

TEST_F(RuntimeTest, CopiesAreBoundChecked) {
  constexpr size_t kBytes = 100;
  char* d = nullptr;
  char* d2 = nullptr;
  char* pinned = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), kBytes), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d2), kBytes), cudaSuccess);
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), kBytes), cudaSuccess);
  std::vector<char> host(2 * kBytes, 7), back(2 * kBytes, 0);

  EXPECT_EQ(cudaMemcpy(d, host.data(), kBytes, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(back.data(), d, kBytes, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back[kBytes - 1], 7);
  // One byte too many, at the end and past an offset.
  EXPECT_EQ(cudaMemcpy(d, host.data(), kBytes + 1, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(back.data(), d + 1, kBytes, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpyAsync(d2 + 50, d, 51, cudaMemcpyDeviceToDevice, nullptr),
            cudaErrorInvalidValue);
  // Wrong direction: a host pointer where a device one is due, and the reverse.
  EXPECT_EQ(cudaMemcpy(back.data(), host.data(), 4, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d, d2, 4, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d, host.data(), 4, static_cast<cudaMemcpyKind>(9)),
            cudaErrorInvalidMemcpyDirection);
  // Pinned memory is device-addressable; Default infers and still checks bounds.
  EXPECT_EQ(cudaMemcpy(pinned, d, kBytes, cudaMemcpyDeviceToDevice), cudaSuccess);
  EXPECT_EQ(pinned[5], 7);
  EXPECT_EQ(cudaMemcpy(d2, d, kBytes, cudaMemcpyDefault), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d2, host.data(), kBytes + 1, cudaMemcpyDefault), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(back.data(), host.data(), 8, cudaMemcpyDefault), cudaSuccess);
  // Memsets.
  EXPECT_EQ(cudaMemset(d, 0x1234, kBytes), cudaSuccess);
  EXPECT_EQ(static_cast<unsigned char>(d[kBytes - 1]), 0x34);
  EXPECT_EQ(cudaMemsetAsync(d + 1, 0, kBytes, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemset(host.data(), 0, 4), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d, host.data(), 0, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);

  EXPECT_EQ(cudaFree(d), cudaSuccess);
  EXPECT_EQ(cudaFree(d2), cudaSuccess);
  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
}

TEST_F(RuntimeTest, Events) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  cudaEvent_t a = nullptr, b = nullptr, nt = nullptr;
  ASSERT_EQ(cudaEventCreate(&a), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&b), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&nt, cudaEventDisableTiming), cudaSuccess);
  float ms = -1;
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, b), cudaErrorInvalidResourceHandle);  // not recorded
  ASSERT_EQ(cudaEventRecord(a, s), cudaSuccess);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  ASSERT_EQ(cudaEventRecord(b, s), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(nt, nullptr), cudaSuccess);
  EXPECT_EQ(cudaEventSynchronize(b), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(b), cudaSuccess);
  EXPECT_EQ(cudaStreamWaitEvent(s, b, 0), cudaSuccess);
  ASSERT_EQ(cudaEventElapsedTime(&ms, a, b), cudaSuccess);
  EXPECT_GE(ms, 25.0f);
  EXPECT_LT(ms, 5000.0f);
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, nt), cudaErrorInvalidResourceHandle);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidResourceHandle);
  EXPECT_EQ(cudaEventDestroy(a), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(b), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(nt), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(nt), cudaErrorInvalidResourceHandle);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidResourceHandle);
}

TEST_F(RuntimeTest, CaptureRecordsAndReplaysLater) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  constexpr size_t kN = 64;
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), kN * 4), cudaSuccess);
  std::vector<float> in(kN, 1.0f), out(kN, -1.0f);
  int runs = 0;

  EXPECT_EQ(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal),
            cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot be captured
  EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureUnsupported);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  EXPECT_EQ(cudaStreamIsCapturing(s, &st), cudaSuccess);
  EXPECT_EQ(st, cudaStreamCaptureStatusActive);
  EXPECT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaErrorIllegalState);
  EXPECT_EQ(cudaGetLastError(), cudaErrorIllegalState);
  ASSERT_EQ(cudaMemcpyAsync(d, in.data(), kN * 4, cudaMemcpyHostToDevice, s), cudaSuccess);
  submit_launch(s, CountingLaunch("count", {d}, &runs));
  ASSERT_EQ(cudaMemcpyAsync(out.data(), d, kN * 4, cudaMemcpyDeviceToHost, s), cudaSuccess);
  // Copies that do not fit fail at capture time, as their node could not be created.
  EXPECT_EQ(cudaMemcpyAsync(out.data(), d, kN * 4 + 4, cudaMemcpyDeviceToHost, s),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(cudaStreamIsCapturing(s, &st), cudaSuccess);
  EXPECT_EQ(st, cudaStreamCaptureStatusNone);
  // Nothing ran while capturing.
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(out[0], -1.0f);
  EXPECT_EQ(reinterpret_cast<unsigned char*>(d)[0], 0xcd);

  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, g, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphDestroy(g), cudaSuccess);  // the exec keeps its own copy
  // The data moves at replay time: what the host buffer holds then is what arrives.
  for (int rep = 1; rep <= 2; ++rep) {
    for (size_t i = 0; i < kN; ++i) in[i] = static_cast<float>(rep * 100 + i);
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    EXPECT_EQ(runs, rep);
    EXPECT_EQ(out, in);
  }

  // A graph launched into another capture is recorded, not run.
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  cudaGraph_t g2 = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &g2), cudaSuccess);
  EXPECT_EQ(runs, 2);
  cudaGraphExec_t exec2 = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec2, g2, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec2, s), cudaSuccess);
  EXPECT_EQ(runs, 4);

  EXPECT_EQ(cudaGraphExecDestroy(exec2), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(g2), cudaSuccess);
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaFree(d), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

// Calls that are illegal while a stream captures: each fails, and so does the capture.
TEST_F(RuntimeTest, IllegalCallsInvalidateCapture) {
  void* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 256), cudaSuccess);
  std::vector<char> host(256);
  struct Case {
    const char* what;
    cudaError_t expected;
  };
  const Case cases[] = {
      {"cudaMemcpy", cudaErrorStreamCaptureUnsupported},
      {"cudaMemset", cudaErrorStreamCaptureUnsupported},
      {"cudaStreamSynchronize", cudaErrorStreamCaptureUnsupported},
      {"cudaStreamQuery", cudaErrorStreamCaptureUnsupported},
      {"cudaDeviceSynchronize", cudaErrorStreamCaptureUnsupported},
      {"cudaMalloc", cudaErrorStreamCaptureUnsupported},
      {"cudaFree", cudaErrorStreamCaptureUnsupported},
      {"cudaMallocHost", cudaErrorStreamCaptureUnsupported},
      {"cudaEventSynchronize", cudaErrorCapturedEvent},
      {"cudaEventQuery", cudaErrorCapturedEvent},
      {"legacy stream copy", cudaErrorStreamCaptureImplicit},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string what = c.what;
    cudaStream_t s = nullptr;
    // A blocking stream, so that legacy-stream work conflicts with it.
    ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
    cudaEvent_t ev = nullptr;
    ASSERT_EQ(cudaEventCreate(&ev), cudaSuccess);
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
    ASSERT_EQ(cudaMemsetAsync(d, 0, 256, s), cudaSuccess);
    ASSERT_EQ(cudaEventRecord(ev, s), cudaSuccess);
    void* p = nullptr;
    cudaError_t got = cudaSuccess;
    if (what == "cudaMemcpy") got = cudaMemcpy(d, host.data(), 16, cudaMemcpyHostToDevice);
    if (what == "cudaMemset") got = cudaMemset(d, 0, 16);
    if (what == "cudaStreamSynchronize") got = cudaStreamSynchronize(s);
    if (what == "cudaStreamQuery") got = cudaStreamQuery(s);
    if (what == "cudaDeviceSynchronize") got = cudaDeviceSynchronize();
    if (what == "cudaMalloc") got = cudaMalloc(&p, 16);
    if (what == "cudaFree") got = cudaFree(d);
    if (what == "cudaMallocHost") got = cudaMallocHost(&p, 16);
    if (what == "cudaEventSynchronize") got = cudaEventSynchronize(ev);
    if (what == "cudaEventQuery") got = cudaEventQuery(ev);
    if (what == "legacy stream copy") {
      got = cudaMemcpyAsync(d, host.data(), 16, cudaMemcpyHostToDevice, nullptr);
    }
    EXPECT_EQ(got, c.expected);
    EXPECT_EQ(p, nullptr);
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    EXPECT_EQ(cudaStreamIsCapturing(s, &st), cudaSuccess);
    EXPECT_EQ(st, cudaStreamCaptureStatusInvalidated);
    EXPECT_EQ(cudaMemsetAsync(d, 0, 256, s), cudaErrorStreamCaptureInvalidated);
    cudaGraph_t g = reinterpret_cast<cudaGraph_t>(&st);
    EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
    EXPECT_EQ(g, nullptr);
    // The stream works normally afterwards.
    EXPECT_EQ(cudaMemsetAsync(d, 0, 256, s), cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureInvalidated);
    EXPECT_EQ(cudaEventDestroy(ev), cudaSuccess);
    EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
  }
  ASSERT_EQ(cudaFree(d), cudaSuccess);
}

TEST_F(RuntimeTest, CaptureModes) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  void* p = nullptr;
  // Relaxed: allocation is allowed during the capture.
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&p, 16), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(g), cudaSuccess);
  // ThreadLocal: other threads are not affected; Global: they are (in their default mode).
  for (cudaStreamCaptureMode mode :
       {cudaStreamCaptureModeThreadLocal, cudaStreamCaptureModeGlobal}) {
    ASSERT_EQ(cudaStreamBeginCapture(s, mode), cudaSuccess);
    cudaError_t other = cudaSuccess;
    std::thread t([&] {
      void* q = nullptr;
      other = cudaMalloc(&q, 16);
      if (q != nullptr) cudaFree(q);
    });
    t.join();
    EXPECT_EQ(other, mode == cudaStreamCaptureModeGlobal ? cudaErrorStreamCaptureUnsupported
                                                         : cudaSuccess);
    EXPECT_EQ(cudaStreamEndCapture(s, &g), mode == cudaStreamCaptureModeGlobal
                                               ? cudaErrorStreamCaptureInvalidated
                                               : cudaSuccess);
    if (g != nullptr) {
      EXPECT_EQ(cudaGraphDestroy(g), cudaSuccess);
    }
  }
  cudaGetLastError();
  // cudaThreadExchangeStreamCaptureMode(Relaxed) lets this thread allocate during a capture.
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  ASSERT_EQ(cudaThreadExchangeStreamCaptureMode(&mode), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&p, 16), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  ASSERT_EQ(cudaThreadExchangeStreamCaptureMode(&mode), cudaSuccess);
  EXPECT_EQ(mode, cudaStreamCaptureModeRelaxed);
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(g), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

TEST_F(RuntimeTest, ForkJoinCapture) {
  cudaStream_t s = nullptr, side = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking), cudaSuccess);
  cudaEvent_t fork = nullptr, join = nullptr;
  ASSERT_EQ(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&join, cudaEventDisableTiming), cudaSuccess);
  int runs = 0;
  for (bool joined : {true, false}) {
    runs = 0;
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
    ASSERT_EQ(cudaEventRecord(fork, s), cudaSuccess);
    ASSERT_EQ(cudaStreamWaitEvent(side, fork, 0), cudaSuccess);
    submit_launch(side, CountingLaunch("side", {}, &runs));
    ASSERT_EQ(cudaEventRecord(join, side), cudaSuccess);
    if (joined) {
      ASSERT_EQ(cudaStreamWaitEvent(s, join, 0), cudaSuccess);
    }
    submit_launch(s, CountingLaunch("main", {}, &runs));
    cudaGraph_t g = nullptr;
    EXPECT_EQ(cudaStreamEndCapture(s, &g), joined ? cudaSuccess : cudaErrorStreamCaptureUnjoined);
    EXPECT_EQ(runs, 0);
    if (joined) {
      cudaGraphExec_t x = nullptr;
      ASSERT_EQ(cudaGraphInstantiate(&x, g, 0), cudaSuccess);
      ASSERT_EQ(cudaGraphLaunch(x, s), cudaSuccess);
      EXPECT_EQ(runs, 2);
      EXPECT_EQ(cudaGraphExecDestroy(x), cudaSuccess);
      EXPECT_EQ(cudaGraphDestroy(g), cudaSuccess);
    }
    cudaStreamCaptureStatus st;
    ASSERT_EQ(cudaStreamIsCapturing(side, &st), cudaSuccess);
    EXPECT_EQ(st, cudaStreamCaptureStatusNone);
  }
  EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureUnjoined);
  EXPECT_EQ(cudaEventDestroy(fork), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(join), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(side), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

// Captures `ptrs` as the arguments of one kernel ("use_after_free") and returns the exec.
cudaGraphExec_t CaptureOneKernel(cudaStream_t s, std::vector<const void*> ptrs, int* runs) {
  cudaGraph_t g = nullptr;
  cudaGraphExec_t x = nullptr;
  EXPECT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  submit_launch(s, CountingLaunch("use_after_free", std::move(ptrs), runs));
  EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  EXPECT_EQ(cudaGraphInstantiate(&x, g, 0), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(g), cudaSuccess);
  return x;
}

TEST_F(RuntimeTest, ReplayAfterFreeAborts) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  void* keep = nullptr;
  void* gone = nullptr;
  ASSERT_EQ(cudaMalloc(&keep, 32), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&gone, 64), cudaSuccess);
  AllocationInfo info;
  ASSERT_TRUE(find_allocation(gone, &info));
  int runs = 0;
  // The freed pointer sits at byte offset 8, and points 16 bytes into its allocation.
  cudaGraphExec_t x = CaptureOneKernel(s, {keep, static_cast<char*>(gone) + 16}, &runs);
  ASSERT_EQ(cudaGraphLaunch(x, s), cudaSuccess);
  EXPECT_EQ(runs, 1);
  ASSERT_EQ(cudaFree(gone), cudaSuccess);
  const std::string msg =
      "node 0 of 1 \\(kernel 'use_after_free'\\): the kernel argument at byte "
      "offset 8 holds pointer 0x[0-9a-f]+, which pointed into device "
      "allocation #" +
      std::to_string(info.id) + " \\(64 bytes at";
  EXPECT_DEATH(cudaGraphLaunch(x, s), msg);
  EXPECT_EQ(runs, 1);

  // The same for a copy node, whose source was freed.
  void* src = nullptr;
  ASSERT_EQ(cudaMalloc(&src, 8), cudaSuccess);
  ASSERT_TRUE(find_allocation(src, &info));
  cudaGraph_t g = nullptr;
  cudaGraphExec_t cx = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(keep, src, 8, cudaMemcpyDeviceToDevice, s), cudaSuccess);
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&cx, g, 0), cudaSuccess);
  ASSERT_EQ(cudaFree(src), cudaSuccess);
  EXPECT_DEATH(cudaGraphLaunch(cx, s),
               "node 0 of 1 \\(cudaMemcpyAsync DeviceToDevice of 8 "
               "bytes\\): the source pointer 0x[0-9a-f]+, which pointed into device allocation #" +
                   std::to_string(info.id) + " \\(8 bytes");

  EXPECT_EQ(cudaGraphDestroy(g), cudaSuccess);
  EXPECT_EQ(cudaGraphExecDestroy(cx), cudaSuccess);
  EXPECT_EQ(cudaGraphExecDestroy(x), cudaSuccess);
  EXPECT_EQ(cudaFree(keep), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

// ---- cuBLAS ----

uint16_t Bf16Bits(float f) {  // exact for the values the tests use
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>(u >> 16);
}
float Bf16Value(uint16_t h) {
  const uint32_t u = uint32_t{h} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t F16Bits(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
float F16Value(uint16_t b) {
  _Float16 h;
  std::memcpy(&h, &b, 2);
  return static_cast<float>(h);
}

size_t Size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

// A column-major matrix of `t` in host memory, with its values as floats.
struct HostMatrix {
  HostMatrix(cudaDataType type, int64_t r, int64_t c, int64_t leading)
      : t(type),
        rows(r),
        cols(c),
        ld(leading),
        bytes(static_cast<size_t>(ld * c) * Size(type)),
        data(bytes) {}
  void Set(int64_t i, int64_t j, float v) {
    const size_t at = static_cast<size_t>(i + j * ld);
    if (t == CUDA_R_32F) {
      std::memcpy(&data[at * 4], &v, 4);
    } else {
      const uint16_t b = t == CUDA_R_16BF ? Bf16Bits(v) : F16Bits(v);
      std::memcpy(&data[at * 2], &b, 2);
    }
  }
  float Get(int64_t i, int64_t j) const {
    const size_t at = static_cast<size_t>(i + j * ld);
    if (t == CUDA_R_32F) {
      float v;
      std::memcpy(&v, &data[at * 4], 4);
      return v;
    }
    uint16_t b;
    std::memcpy(&b, &data[at * 2], 2);
    return t == CUDA_R_16BF ? Bf16Value(b) : F16Value(b);
  }
  cudaDataType t;
  int64_t rows, cols, ld;
  size_t bytes;
  std::vector<unsigned char> data;
};

// Device copies of host matrices, freed at scope exit.
struct DeviceBuffers {
  ~DeviceBuffers() {
    for (void* p : ptrs) EXPECT_EQ(cudaFree(p), cudaSuccess);
  }
  void* Upload(const HostMatrix& h) {
    void* d = nullptr;
    EXPECT_EQ(cudaMalloc(&d, h.bytes), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(d, h.data.data(), h.bytes, cudaMemcpyHostToDevice), cudaSuccess);
    ptrs.push_back(d);
    return d;
  }
  std::vector<void*> ptrs;
};

// Values exactly representable in bf16 and fp16: multiples of 1/32 in [-2, 2].
float SmallValue(std::mt19937* rng) {
  return static_cast<float>(static_cast<int>((*rng)() % 129) - 64) / 32.0f;
}

class GemmTest : public RuntimeTest {};

TEST_F(GemmTest, MatchesDoubleReferenceOnOddShapes) {
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  std::mt19937 rng(42);
  const int m = 7, n = 13, k = 33;
  const float alpha = 1.25f, beta = -0.75f;
  struct Types {
    cudaDataType ab, c;
    double rel;  // a relative tolerance: half an ulp of the output type, plus fp32 accumulation
  };
  for (Types ty : {Types{CUDA_R_16BF, CUDA_R_16BF, 1.0 / 256}, Types{CUDA_R_16BF, CUDA_R_32F, 0},
                   Types{CUDA_R_16F, CUDA_R_16F, 1.0 / 2048}, Types{CUDA_R_16F, CUDA_R_32F, 0},
                   Types{CUDA_R_32F, CUDA_R_32F, 0}}) {
    for (cublasOperation_t ta : {CUBLAS_OP_N, CUBLAS_OP_T}) {
      for (cublasOperation_t tb : {CUBLAS_OP_N, CUBLAS_OP_T}) {
        SCOPED_TRACE(::testing::Message()
                     << "types " << ty.ab << "->" << ty.c << " transa " << ta << " transb " << tb);
        const int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
        const int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
        // Leading dimensions larger than the rows, so the padding must be skipped (and kept).
        HostMatrix a(ty.ab, ar, ac, ar + 3), b(ty.ab, br, bc, br + 1), c(ty.c, m, n, m + 2);
        for (int j = 0; j < ac; ++j)
          for (int i = 0; i < ar; ++i) a.Set(i, j, SmallValue(&rng));
        for (int j = 0; j < bc; ++j)
          for (int i = 0; i < br; ++i) b.Set(i, j, SmallValue(&rng));
        for (int j = 0; j < n; ++j)
          for (int i = 0; i < m + 2; ++i) c.Set(i, j, i < m ? SmallValue(&rng) : 99.0f);
        DeviceBuffers dev;
        void* da = dev.Upload(a);
        void* db = dev.Upload(b);
        void* dc = dev.Upload(c);
        ASSERT_EQ(cublasGemmEx(h, ta, tb, m, n, k, &alpha, da, ty.ab, static_cast<int>(a.ld), db,
                               ty.ab, static_cast<int>(b.ld), &beta, dc, ty.c,
                               static_cast<int>(c.ld), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                  CUBLAS_STATUS_SUCCESS);
        HostMatrix out = c;
        ASSERT_EQ(cudaMemcpy(out.data.data(), dc, out.bytes, cudaMemcpyDeviceToHost), cudaSuccess);
        for (int j = 0; j < n; ++j) {
          for (int i = 0; i < m; ++i) {
            double ref = 0, mag = 0;
            for (int p = 0; p < k; ++p) {
              const double x = ta == CUBLAS_OP_N ? a.Get(i, p) : a.Get(p, i);
              const double y = tb == CUBLAS_OP_N ? b.Get(p, j) : b.Get(j, p);
              ref += x * y;
              mag += std::fabs(x * y);
            }
            ref = alpha * ref + beta * c.Get(i, j);
            mag = std::fabs(alpha) * mag + std::fabs(beta * c.Get(i, j));
            const double tol = ty.rel * std::fabs(ref) + 1e-6 * mag + 1e-7;
            EXPECT_NEAR(out.Get(i, j), ref, tol) << "C(" << i << ", " << j << ")";
          }
          for (int i = m; i < m + 2; ++i) EXPECT_EQ(out.Get(i, j), 99.0f) << "padding written";
        }
      }
    }
  }
  EXPECT_EQ(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
}

// Output rounding is round-to-nearest-even, checked against the compiler's _Float16 conversion
// (fp16, including subnormals and overflow) and an independent frexp-based rounding (bf16).
TEST_F(GemmTest, OutputRoundsToNearestEven) {
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  std::mt19937 rng(7);
  const int m = 4096, n = 8;
  for (cudaDataType t : {CUDA_R_16F, CUDA_R_16BF}) {
    SCOPED_TRACE(t);
    HostMatrix a(t, m, 1, m), b(t, 1, n, 1), c(t, m, n, m);
    std::vector<uint16_t> abits(m), bbits(n);
    for (int i = 0; i < m; ++i) {
      // Random bit patterns over a wide range of exponents, finite only.
      uint16_t bits;
      do {
        bits = static_cast<uint16_t>(rng());
      } while (t == CUDA_R_16F ? (bits & 0x7c00) == 0x7c00
                               : ((bits >> 7) & 0xff) > 0xb0 || ((bits >> 7) & 0xff) < 0x50);
      abits[i] = bits;
      std::memcpy(&a.data[i * 2], &bits, 2);
    }
    for (int j = 0; j < n; ++j) {
      const float v =
          t == CUDA_R_16F
              ? std::ldexp(1.0f + (rng() % 1024) / 1024.0f, static_cast<int>(rng() % 12) - 6)
              : std::ldexp(1.0f + (rng() % 128) / 128.0f, static_cast<int>(rng() % 12) - 6);
      b.Set(0, j, v);
    }
    DeviceBuffers dev;
    void* da = dev.Upload(a);
    void* db = dev.Upload(b);
    void* dc = dev.Upload(c);
    const float one = 1.0f, zero = 0.0f;
    ASSERT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, 1, &one, da, t, m, db, t, 1, &zero,
                           dc, t, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cudaMemcpy(c.data.data(), dc, c.bytes, cudaMemcpyDeviceToHost), cudaSuccess);
    int mismatches = 0;
    for (int j = 0; j < n; ++j) {
      for (int i = 0; i < m; ++i) {
        const float exact = a.Get(i, 0) * b.Get(0, j);  // exact in fp32 (11+11 or 8+8 bits)
        float want;
        if (t == CUDA_R_16F) {
          want = static_cast<float>(static_cast<_Float16>(exact));
        } else {
          int e = 0;
          std::frexp(exact, &e);
          want = exact == 0
                     ? exact
                     : static_cast<float>(std::ldexp(
                           std::nearbyint(std::ldexp(static_cast<double>(exact), 8 - e)), e - 8));
        }
        const float got = c.Get(i, j);
        if (std::memcmp(&got, &want, 4) != 0 && !(got == 0 && want == 0)) {
          if (++mismatches < 5) ADD_FAILURE() << exact << " -> " << got << ", want " << want;
        }
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
  EXPECT_EQ(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
}

TEST_F(GemmTest, ValidatesArguments) {
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), 64 * 4), cudaSuccess);
  const float one = 1.0f, zero = 0.0f, half = 0.5f;
  auto gemm = [&](cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb,
                  int ldc, cudaDataType ab, cudaDataType c,
                  cublasComputeType_t ct = CUBLAS_COMPUTE_32F, const float* beta = nullptr) {
    return cublasGemmEx(h, ta, tb, m, n, k, &one, d, ab, lda, d, ab, ldb, beta ? beta : &zero, d, c,
                        ldc, ct, CUBLAS_GEMM_DEFAULT);
  };
  const auto N = CUBLAS_OP_N, T = CUBLAS_OP_T;
  EXPECT_EQ(gemm(N, N, 4, 4, 4, 3, 4, 4, CUDA_R_32F, CUDA_R_32F), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(gemm(T, N, 4, 4, 2, 1, 4, 4, CUDA_R_32F, CUDA_R_32F), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(gemm(N, T, 4, 4, 2, 4, 3, 4, CUDA_R_32F, CUDA_R_32F), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(gemm(N, N, 4, 4, 4, 4, 4, 3, CUDA_R_32F, CUDA_R_32F), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(gemm(N, N, -1, 4, 4, 4, 4, 4, CUDA_R_32F, CUDA_R_32F), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(gemm(static_cast<cublasOperation_t>(5), N, 4, 4, 4, 4, 4, 4, CUDA_R_32F, CUDA_R_32F),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(gemm(N, N, 4, 4, 4, 4, 4, 4, CUDA_R_16BF, CUDA_R_16F), CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(gemm(N, N, 4, 4, 4, 4, 4, 4, CUDA_R_32F, CUDA_R_16BF), CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(gemm(N, N, 4, 4, 4, 4, 4, 4, CUDA_R_16F, CUDA_R_16F, CUBLAS_COMPUTE_16F),
            CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(gemm(N, N, 4, 4, 4, 4, 4, 4, CUDA_R_8I, CUDA_R_32I), CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(cublasGemmEx(nullptr, N, N, 1, 1, 1, &one, d, CUDA_R_32F, 1, d, CUDA_R_32F, 1, &zero, d,
                         CUDA_R_32F, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_INITIALIZED);
  // Empty products: m or n == 0 does nothing; k == 0 scales C by beta (and beta == 0 means C
  // is not read, so its garbage, here NaN, does not survive).
  EXPECT_EQ(gemm(N, N, 0, 4, 4, 1, 4, 1, CUDA_R_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
  for (int i = 0; i < 16; ++i) d[i] = 2.0f;
  EXPECT_EQ(gemm(N, N, 4, 4, 0, 4, 1, 4, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, &half),
            CUBLAS_STATUS_SUCCESS);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(d[i], 1.0f);
  for (int i = 0; i < 16; ++i) d[i] = std::nanf("");
  d[16] = 0.0f;  // k == 0 still needs no A or B; C is d[0..16)
  EXPECT_EQ(gemm(N, N, 4, 4, 0, 4, 1, 4, CUDA_R_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(d[i], 0.0f);
  // An operand that does not fit its allocation is an illegal address on a GPU: fatal.
  EXPECT_DEATH(gemm(N, N, 9, 9, 9, 9, 9, 9, CUDA_R_32F, CUDA_R_32F),
               "cublasGemmEx: A = 0x[0-9a-f]+ \\(9 x 9, ld 9, 324 bytes\\) is not inside a live "
               "device allocation \\(allocation #[0-9]+ has 256 bytes");
  EXPECT_EQ(cudaFree(d), cudaSuccess);
  EXPECT_EQ(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasDestroy(h), CUBLAS_STATUS_NOT_INITIALIZED);
}

TEST_F(GemmTest, CapturedGemmReplaysWithCurrentData) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasSetStream(h, s), CUBLAS_STATUS_SUCCESS);
  cudaStream_t got = nullptr;
  ASSERT_EQ(cublasGetStream(h, &got), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(got, s);
  // y^T = W x^T as the runner does it: (T, N) with bf16 weights and an fp32 output.
  const int n_out = 5, m_rows = 3, k = 9;
  std::mt19937 rng(3);
  HostMatrix w(CUDA_R_16BF, k, n_out, k), x(CUDA_R_16BF, k, m_rows, k);
  for (int j = 0; j < n_out; ++j)
    for (int i = 0; i < k; ++i) w.Set(i, j, SmallValue(&rng));
  DeviceBuffers dev;
  void* dw = dev.Upload(w);
  void* dx = dev.Upload(x);
  float* dy = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dy), n_out * m_rows * 4), cudaSuccess);
  dev.ptrs.push_back(dy);
  float alpha = 1.0f, beta = 0.0f;
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ASSERT_EQ(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n_out, m_rows, k, &alpha, dw, CUDA_R_16BF, k,
                         dx, CUDA_R_16BF, k, &beta, dy, CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  alpha = 100.0f;  // host pointer mode: the value at the call is the one captured
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  EXPECT_EQ(reinterpret_cast<unsigned char*>(dy)[0], 0xcd);  // not run during capture
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, g, 0), cudaSuccess);
  for (int rep = 0; rep < 2; ++rep) {
    for (int j = 0; j < m_rows; ++j)
      for (int i = 0; i < k; ++i) x.Set(i, j, SmallValue(&rng));
    ASSERT_EQ(cudaMemcpy(dx, x.data.data(), x.bytes, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    for (int j = 0; j < m_rows; ++j) {
      for (int i = 0; i < n_out; ++i) {
        double ref = 0;
        for (int p = 0; p < k; ++p) ref += double{w.Get(p, i)} * x.Get(p, j);
        EXPECT_NEAR(dy[i + j * n_out], ref, 1e-5) << "rep " << rep;
      }
    }
  }
  // Replaying after the weights were freed is caught and names the GEMM.
  ASSERT_EQ(cudaFree(dw), cudaSuccess);
  dev.ptrs.erase(dev.ptrs.begin());
  EXPECT_DEATH(cudaGraphLaunch(exec, s),
               "node 0 of 1 \\(kernel 'cublasGemmEx'\\): the kernel argument at byte offset 0 ");
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(g), cudaSuccess);
  EXPECT_EQ(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

}  // namespace
}  // namespace muse::cuda_emu
