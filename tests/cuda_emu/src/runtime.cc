// The emulator's host runtime: one device whose memory is the host heap, streams and events that
// execute in order at enqueue time, and CUDA graphs recorded by stream capture and replayed later.
//
// The point is to make CPU-only CI fail where a GPU would misbehave: allocations are exact-size
// (so AddressSanitizer sees every overrun) and start as garbage, copies are bound-checked against
// the allocation they touch, calls that are illegal during capture invalidate it as on hardware,
// and replaying a graph whose recorded pointers were freed aborts with a precise message.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "muse_cuda_emu/launch_queue.h"
#include "muse_cuda_emu/runtime_api.h"
#include "muse_cuda_emu/types.h"

namespace muse::cuda_emu {
namespace {

constexpr size_t kTotalDeviceMemory = size_t{80} << 30;
constexpr size_t kAllocAlignment = 256;  // what cudaMalloc guarantees
constexpr unsigned char kPoisonByte = 0xcd;

using Clock = std::chrono::steady_clock;

struct Capture;

// A pointer found in a recorded operation, and the allocation it pointed into at record time.
struct PtrRef {
  size_t offset;  // byte offset in the kernel's arguments; 0 = dst, 8 = src for copies
  uintptr_t value;
  AllocationInfo alloc;
};

// One recorded operation of a graph.
struct Node {
  enum class Kind { kKernel, kMemcpy, kMemset };
  Kind kind = Kind::kKernel;
  KernelLaunch launch;  // kKernel
  void* dst = nullptr;  // kMemcpy, kMemset
  const void* src = nullptr;
  size_t bytes = 0;
  cudaMemcpyKind copy_kind = cudaMemcpyDefault;
  int value = 0;
  std::vector<PtrRef> refs;
};

using NodeList = std::vector<Node>;

}  // namespace
}  // namespace muse::cuda_emu

// The opaque handle types of types.h, defined here.
struct CUstream_st {
  unsigned flags = 0;
  std::shared_ptr<muse::cuda_emu::Capture> capture;  // set while the stream captures
  uint64_t captured_ops = 0;  // operations this stream recorded in its capture
  uint64_t joined_ops = 0;    // of those, how many the capture's origin stream has waited for
};

struct CUevent_st {
  unsigned flags = 0;
  bool recorded = false;  // recorded outside a capture: `time` is valid
  std::chrono::steady_clock::time_point time;
  // Set when last recorded in a capture: the capture, the stream and its op count at that point.
  std::shared_ptr<muse::cuda_emu::Capture> capture;
  CUstream_st* capture_stream = nullptr;
  uint64_t capture_ops = 0;
};

struct CUgraph_st {
  uint64_t id = 0;
  uint64_t capture_id = 0;
  muse::cuda_emu::NodeList nodes;
};

struct CUgraphExec_st {
  uint64_t id = 0;
  uint64_t graph_id = 0;
  // Shared so that a replay running outside the lock keeps its nodes if the exec is destroyed.
  std::shared_ptr<const muse::cuda_emu::NodeList> nodes;
};

namespace muse::cuda_emu {
namespace {

struct Capture {
  uint64_t id = 0;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;
  CUstream_st* origin = nullptr;
  std::vector<CUstream_st*> streams;  // origin first, then streams forked into the capture
  bool invalidated = false;
  bool ended = false;
  NodeList nodes;
};

struct State {
  std::mutex mu;
  std::map<uintptr_t, AllocationInfo> allocs;  // live allocations by base address
  uint64_t next_alloc_id = 1;
  size_t live_device_bytes = 0;
  std::set<CUstream_st*> streams;
  std::set<CUevent_st*> events;
  std::set<CUgraph_st*> graphs;
  std::set<CUgraphExec_st*> execs;
  std::vector<std::shared_ptr<Capture>> captures;  // active (begun, not ended)
  uint64_t next_capture_id = 1, next_graph_id = 1, next_exec_id = 1;
  // Process-wide rather than per thread: the device side may report a launch error from the
  // thread that ran the grid, which need not be the one that launched it.
  cudaError_t last_error = cudaSuccess;
  int device = 0;
};

// Never destroyed: other threads (and atexit handlers freeing buffers) may still call in.
State& S() {
  static State* s = new State;
  return *s;
}

thread_local cudaStreamCaptureMode tl_capture_mode = cudaStreamCaptureModeGlobal;

// Records a failing call in the last-error state, as every runtime call does. Needs the lock.
cudaError_t Fail(State& s, cudaError_t e) {
  if (e != cudaSuccess && e != cudaErrorNotReady) s.last_error = e;
  return e;
}

// The live allocation containing `p`. Needs the lock.
const AllocationInfo* Lookup(State& s, uintptr_t p) {
  auto it = s.allocs.upper_bound(p);
  if (it == s.allocs.begin()) return nullptr;
  --it;
  const AllocationInfo& a = it->second;
  return p - a.base < a.size ? &a : nullptr;
}

const char* KindName(AllocKind k) { return k == AllocKind::kDevice ? "device" : "pinned host"; }

const char* CopyKindName(cudaMemcpyKind k) {
  switch (k) {
    case cudaMemcpyHostToHost:
      return "HostToHost";
    case cudaMemcpyHostToDevice:
      return "HostToDevice";
    case cudaMemcpyDeviceToHost:
      return "DeviceToHost";
    case cudaMemcpyDeviceToDevice:
      return "DeviceToDevice";
    case cudaMemcpyDefault:
      return "Default";
  }
  return "?";
}

bool IsLegacy(cudaStream_t st) { return st == nullptr; }

bool ValidStream(State& s, cudaStream_t st) { return IsLegacy(st) || s.streams.count(st) != 0; }

void Invalidate(Capture* c) { c->invalidated = true; }

// The captures that forbid a "potentially unsafe" call (allocation, synchronous copy...) from
// this thread, per cudaThreadExchangeStreamCaptureMode's rules. Needs the lock.
std::vector<Capture*> ForbiddingCaptures(State& s) {
  std::vector<Capture*> out;
  if (tl_capture_mode == cudaStreamCaptureModeRelaxed) return out;
  const auto self = std::this_thread::get_id();
  for (const auto& c : s.captures) {
    const bool mine = c->thread == self && c->mode != cudaStreamCaptureModeRelaxed;
    const bool global = c->thread != self && c->mode == cudaStreamCaptureModeGlobal &&
                        tl_capture_mode == cudaStreamCaptureModeGlobal;
    if (mine || global) out.push_back(c.get());
  }
  return out;
}

// An unsafe call during a capture fails and invalidates the captures it conflicts with.
cudaError_t CheckUnsafeCall(State& s) {
  std::vector<Capture*> bad = ForbiddingCaptures(s);
  if (bad.empty()) return cudaSuccess;
  for (Capture* c : bad) Invalidate(c);
  return cudaErrorStreamCaptureUnsupported;
}

// Work on the legacy stream implicitly synchronises with every blocking stream; if one of those
// is capturing, CUDA fails the call and invalidates that capture.
cudaError_t CheckLegacyImplicit(State& s) {
  cudaError_t e = cudaSuccess;
  for (const auto& c : s.captures) {
    for (CUstream_st* st : c->streams) {
      if ((st->flags & cudaStreamNonBlocking) == 0) {
        Invalidate(c.get());
        e = cudaErrorStreamCaptureImplicit;
        break;
      }
    }
  }
  return e;
}

// Where an enqueued operation goes. kRun: execute now; kRecord: append to the stream's capture.
enum class Route { kRun, kRecord };

// Validates `st` for an enqueue and says where the operation goes. Needs the lock.
cudaError_t RouteFor(State& s, cudaStream_t st, Route* route) {
  if (!ValidStream(s, st)) return cudaErrorInvalidResourceHandle;
  if (IsLegacy(st)) {
    *route = Route::kRun;
    return CheckLegacyImplicit(s);
  }
  if (st->capture) {
    if (st->capture->invalidated) return cudaErrorStreamCaptureInvalidated;
    *route = Route::kRecord;
    return cudaSuccess;
  }
  *route = Route::kRun;
  return cudaSuccess;
}

void AddRef(State& s, std::vector<PtrRef>* refs, size_t offset, uintptr_t v) {
  if (const AllocationInfo* a = Lookup(s, v)) refs->push_back({offset, v, *a});
}

void Record(State& s, cudaStream_t st, Node node) {
  st->captured_ops++;
  st->capture->nodes.push_back(std::move(node));
  (void)s;
}

std::string NodeLabel(const Node& n) {
  char buf[160];
  switch (n.kind) {
    case Node::Kind::kKernel:
      return "kernel '" + n.launch.name + "'";
    case Node::Kind::kMemcpy:
      std::snprintf(buf, sizeof(buf), "cudaMemcpyAsync %s of %zu bytes", CopyKindName(n.copy_kind),
                    n.bytes);
      return buf;
    case Node::Kind::kMemset:
      std::snprintf(buf, sizeof(buf), "cudaMemsetAsync of %zu bytes", n.bytes);
      return buf;
  }
  return "?";
}

std::string RefLabel(const Node& n, const PtrRef& r) {
  if (n.kind == Node::Kind::kKernel) {
    return "the kernel argument at byte offset " + std::to_string(r.offset) + " holds pointer";
  }
  return r.offset == 0 ? "the destination pointer" : "the source pointer";
}

// Replay safety: every pointer recorded in `n` must still point into the very allocation it
// pointed into at capture time. A freed (or freed and reallocated) buffer would make the GPU
// read or write memory the program no longer owns, silently; here it is fatal. Needs the lock.
void CheckReplayRefs(State& s, const char* what, uint64_t id, uint64_t graph_id, size_t index,
                     size_t count, const Node& n) {
  for (const PtrRef& r : n.refs) {
    auto it = s.allocs.find(r.alloc.base);
    if (it != s.allocs.end() && it->second.id == r.alloc.id) continue;
    std::fprintf(stderr,
                 "muse cuda_emu: FATAL: %s #%" PRIu64 " (graph #%" PRIu64
                 ") node %zu of %zu (%s): %s 0x%" PRIxPTR
                 ", which pointed into %s allocation #%" PRIu64 " (%zu bytes at 0x%" PRIxPTR
                 ") when the graph was captured; that allocation has since been freed%s. "
                 "Replaying would access freed memory.\n",
                 what, id, graph_id, index, count, NodeLabel(n).c_str(), RefLabel(n, r).c_str(),
                 r.value, KindName(r.alloc.kind), r.alloc.id, r.alloc.size, r.alloc.base,
                 it != s.allocs.end() ? " (its address now belongs to a newer allocation)" : "");
    std::fflush(stderr);
    std::abort();
  }
}

void RunNode(const Node& n) {
  switch (n.kind) {
    case Node::Kind::kKernel:
      n.launch.run();
      break;
    case Node::Kind::kMemcpy:
      std::memmove(n.dst, n.src, n.bytes);
      break;
    case Node::Kind::kMemset:
      std::memset(n.dst, n.value, n.bytes);
      break;
  }
}

// Checks that [p, p + bytes) lies inside one live allocation; with `device_side`, that there is
// one (device or pinned host memory, both addressable by the GPU). A host-side pointer may be
// pageable memory the emulator knows nothing about, but not device memory. Needs the lock.
bool RangeOk(State& s, const void* p, size_t bytes, bool device_side) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  const AllocationInfo* a = Lookup(s, v);
  if (a == nullptr) return !device_side;
  if (!device_side && a->kind == AllocKind::kDevice) return false;
  return bytes <= a->size - (v - a->base);
}

cudaError_t CheckCopy(State& s, void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) {
    return cudaErrorInvalidMemcpyDirection;
  }
  if (count == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return cudaErrorInvalidValue;
  bool dst_dev = false, src_dev = false;
  switch (kind) {
    case cudaMemcpyHostToHost:
      break;
    case cudaMemcpyHostToDevice:
      dst_dev = true;
      break;
    case cudaMemcpyDeviceToHost:
      src_dev = true;
      break;
    case cudaMemcpyDeviceToDevice:
      dst_dev = src_dev = true;
      break;
    case cudaMemcpyDefault: {
      // Inferred from the addresses (unified addressing): known allocations are bound-checked.
      const AllocationInfo* d = Lookup(s, reinterpret_cast<uintptr_t>(dst));
      const AllocationInfo* r = Lookup(s, reinterpret_cast<uintptr_t>(src));
      dst_dev = d != nullptr;
      src_dev = r != nullptr;
      break;
    }
  }
  if (!RangeOk(s, dst, count, dst_dev) || !RangeOk(s, src, count, src_dev)) {
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

cudaError_t CheckMemset(State& s, void* p, size_t count) {
  if (count == 0) return cudaSuccess;
  return p != nullptr && RangeOk(s, p, count, /*device_side=*/true) ? cudaSuccess
                                                                    : cudaErrorInvalidValue;
}

cudaError_t Allocate(void** out, size_t size, AllocKind kind) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (out == nullptr) return Fail(s, cudaErrorInvalidValue);
  if (cudaError_t e = CheckUnsafeCall(s); e != cudaSuccess) return Fail(s, e);
  if (size == 0) {  // as cudaMalloc: success, and a null pointer
    *out = nullptr;
    return cudaSuccess;
  }
  if (kind == AllocKind::kDevice && size > kTotalDeviceMemory - s.live_device_bytes) {
    return Fail(s, cudaErrorMemoryAllocation);
  }
  // Exactly `size` bytes: with AddressSanitizer the redzone starts right at the end.
  void* p = nullptr;
  if (posix_memalign(&p, kAllocAlignment, size) != 0 || p == nullptr) {
    return Fail(s, cudaErrorMemoryAllocation);
  }
  std::memset(p, kPoisonByte, size);  // fresh GPU memory holds garbage, not zeros
  const uintptr_t base = reinterpret_cast<uintptr_t>(p);
  s.allocs[base] = AllocationInfo{base, size, s.next_alloc_id++, kind};
  if (kind == AllocKind::kDevice) s.live_device_bytes += size;
  *out = p;
  return cudaSuccess;
}

cudaError_t Release(void* p, AllocKind kind) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (cudaError_t e = CheckUnsafeCall(s); e != cudaSuccess) return Fail(s, e);
  if (p == nullptr) return cudaSuccess;
  auto it = s.allocs.find(reinterpret_cast<uintptr_t>(p));
  if (it == s.allocs.end() || it->second.kind != kind) return Fail(s, cudaErrorInvalidValue);
  if (kind == AllocKind::kDevice) s.live_device_bytes -= it->second.size;
  s.allocs.erase(it);
  std::free(p);
  return cudaSuccess;
}

cudaError_t CopyOrSet(bool is_copy, void* dst, const void* src, int value, size_t count,
                      cudaMemcpyKind kind, cudaStream_t stream, bool async) {
  State& s = S();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    Route route = Route::kRun;
    if (async) {
      if (cudaError_t e = RouteFor(s, stream, &route); e != cudaSuccess) return Fail(s, e);
    } else {
      // Synchronous copies run on the legacy stream and wait for the device.
      if (cudaError_t e = CheckUnsafeCall(s); e != cudaSuccess) return Fail(s, e);
      if (cudaError_t e = CheckLegacyImplicit(s); e != cudaSuccess) return Fail(s, e);
    }
    cudaError_t e = is_copy ? CheckCopy(s, dst, src, count, kind) : CheckMemset(s, dst, count);
    if (e != cudaSuccess) return Fail(s, e);
    if (count == 0) return cudaSuccess;
    if (route == Route::kRecord) {
      // Pointers and size are recorded; the data moves when the graph is replayed.
      Node n;
      n.kind = is_copy ? Node::Kind::kMemcpy : Node::Kind::kMemset;
      n.dst = dst;
      n.src = src;
      n.bytes = count;
      n.copy_kind = kind;
      n.value = value & 0xff;
      AddRef(s, &n.refs, 0, reinterpret_cast<uintptr_t>(dst));
      if (is_copy) AddRef(s, &n.refs, 8, reinterpret_cast<uintptr_t>(src));
      Record(s, stream, std::move(n));
      return cudaSuccess;
    }
  }
  if (is_copy) {
    std::memmove(dst, src, count);
  } else {
    std::memset(dst, value & 0xff, count);
  }
  return cudaSuccess;
}

const char* ErrorName(cudaError_t e) {
  switch (e) {
#define MUSE_EMU_NAME(x) \
  case x:                \
    return #x;
    MUSE_EMU_NAME(cudaSuccess)
    MUSE_EMU_NAME(cudaErrorInvalidValue)
    MUSE_EMU_NAME(cudaErrorMemoryAllocation)
    MUSE_EMU_NAME(cudaErrorInitializationError)
    MUSE_EMU_NAME(cudaErrorInvalidConfiguration)
    MUSE_EMU_NAME(cudaErrorInvalidPitchValue)
    MUSE_EMU_NAME(cudaErrorInvalidMemcpyDirection)
    MUSE_EMU_NAME(cudaErrorInvalidDeviceFunction)
    MUSE_EMU_NAME(cudaErrorNoDevice)
    MUSE_EMU_NAME(cudaErrorInvalidDevice)
    MUSE_EMU_NAME(cudaErrorInvalidResourceHandle)
    MUSE_EMU_NAME(cudaErrorIllegalState)
    MUSE_EMU_NAME(cudaErrorNotReady)
    MUSE_EMU_NAME(cudaErrorIllegalAddress)
    MUSE_EMU_NAME(cudaErrorLaunchOutOfResources)
    MUSE_EMU_NAME(cudaErrorMisalignedAddress)
    MUSE_EMU_NAME(cudaErrorLaunchFailure)
    MUSE_EMU_NAME(cudaErrorNotSupported)
    MUSE_EMU_NAME(cudaErrorStreamCaptureUnsupported)
    MUSE_EMU_NAME(cudaErrorStreamCaptureInvalidated)
    MUSE_EMU_NAME(cudaErrorStreamCaptureMerge)
    MUSE_EMU_NAME(cudaErrorStreamCaptureUnmatched)
    MUSE_EMU_NAME(cudaErrorStreamCaptureUnjoined)
    MUSE_EMU_NAME(cudaErrorStreamCaptureIsolation)
    MUSE_EMU_NAME(cudaErrorStreamCaptureImplicit)
    MUSE_EMU_NAME(cudaErrorCapturedEvent)
    MUSE_EMU_NAME(cudaErrorStreamCaptureWrongThread)
    MUSE_EMU_NAME(cudaErrorUnknown)
#undef MUSE_EMU_NAME
  }
  return nullptr;
}

// The strings libcudart returns.
const char* ErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInitializationError:
      return "initialization error";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidPitchValue:
      return "invalid pitch argument";
    case cudaErrorInvalidMemcpyDirection:
      return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction:
      return "invalid device function";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorIllegalState:
      return "the operation cannot be performed in the present state";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorIllegalAddress:
      return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources:
      return "too many resources requested for launch";
    case cudaErrorMisalignedAddress:
      return "misaligned address";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorNotSupported:
      return "operation not supported";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureMerge:
      return "operation would result in a merge of separate capture sequences";
    case cudaErrorStreamCaptureUnmatched:
      return "capture was not ended in the same stream as it began";
    case cudaErrorStreamCaptureUnjoined:
      return "capturing stream has unjoined work";
    case cudaErrorStreamCaptureIsolation:
      return "dependency created on uncaptured work in another stream";
    case cudaErrorStreamCaptureImplicit:
      return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorCapturedEvent:
      return "operation not permitted on an event last recorded in a capturing stream";
    case cudaErrorStreamCaptureWrongThread:
      return "attempt to terminate a thread-local capture sequence from another thread";
    case cudaErrorUnknown:
      return "unknown error";
  }
  return nullptr;
}

// An event last recorded in a capture that is still open.
Capture* CapturedIn(const CUevent_st* e) {
  return e->capture && !e->capture->ended ? e->capture.get() : nullptr;
}

}  // namespace

bool find_allocation(const void* p, AllocationInfo* out) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  const AllocationInfo* a = Lookup(s, reinterpret_cast<uintptr_t>(p));
  if (a == nullptr) return false;
  if (out != nullptr) *out = *a;
  return true;
}

size_t live_allocation_count() {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.allocs.size();
}

void set_last_error(cudaError_t e) {
  if (e == cudaSuccess) return;  // a successful launch does not clear an earlier error
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  s.last_error = e;
}

cudaError_t enqueue_launch(cudaStream_t stream, KernelLaunch launch) {
  State& s = S();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    Route route = Route::kRun;
    if (cudaError_t e = RouteFor(s, stream, &route); e != cudaSuccess) return Fail(s, e);
    if (route == Route::kRecord) {
      Node n;
      n.kind = Node::Kind::kKernel;
      // Every 8-byte-aligned word of the arguments that points into a live allocation is
      // remembered, so a replay after that allocation is freed can be caught.
      const std::vector<unsigned char>& a = launch.arg_bytes;
      for (size_t off = 0; off + sizeof(uint64_t) <= a.size(); off += sizeof(uint64_t)) {
        uint64_t v;
        std::memcpy(&v, a.data() + off, sizeof(v));
        AddRef(s, &n.refs, off, static_cast<uintptr_t>(v));
      }
      n.launch = std::move(launch);
      Record(s, stream, std::move(n));
      return cudaSuccess;
    }
  }
  launch.run();  // without the lock: kernels may take long and other threads carry on
  return cudaSuccess;
}

void submit_launch(cudaStream_t stream, KernelLaunch launch) {
  (void)enqueue_launch(stream, std::move(launch));  // errors are in the last-error state
}

}  // namespace muse::cuda_emu

using muse::cuda_emu::AllocKind;
using muse::cuda_emu::Capture;
using muse::cuda_emu::Fail;
using muse::cuda_emu::S;
using muse::cuda_emu::State;

const char* cudaGetErrorString(cudaError_t error) {
  const char* s = muse::cuda_emu::ErrorString(error);
  return s != nullptr ? s : "unrecognized error code";
}

const char* cudaGetErrorName(cudaError_t error) {
  const char* s = muse::cuda_emu::ErrorName(error);
  return s != nullptr ? s : "unrecognized error code";
}

cudaError_t cudaGetLastError() {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  return std::exchange(s.last_error, cudaSuccess);
}

cudaError_t cudaPeekAtLastError() {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.last_error;
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) {
    State& s = S();
    std::lock_guard<std::mutex> lock(s.mu);
    return Fail(s, cudaErrorInvalidValue);
  }
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  return device == 0 ? cudaSuccess : Fail(s, cudaErrorInvalidDevice);
}

cudaError_t cudaGetDevice(int* device) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (device == nullptr) return Fail(s, cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  namespace e = muse::cuda_emu;
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (prop == nullptr) return Fail(s, cudaErrorInvalidValue);
  if (device != 0) return Fail(s, cudaErrorInvalidDevice);
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof(prop->name), "%s", "muse CUDA emulator (sm_90 limits)");
  // An H100 SXM's numbers, so code that sizes work from them behaves as on the real part.
  prop->totalGlobalMem = e::kTotalDeviceMemory;
  prop->sharedMemPerBlock = e::kDefaultDynamicSmem;
  prop->regsPerBlock = 65536;
  prop->warpSize = e::kWarpSize;
  prop->memPitch = 2147483647;
  prop->maxThreadsPerBlock = static_cast<int>(e::kMaxThreadsPerBlock);
  prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = static_cast<int>(e::kMaxThreadsPerBlock);
  prop->maxThreadsDim[2] = static_cast<int>(e::kMaxBlockDimZ);
  prop->maxGridSize[0] = static_cast<int>(e::kMaxGridDimX);
  prop->maxGridSize[1] = prop->maxGridSize[2] = static_cast<int>(e::kMaxGridDimYZ);
  prop->totalConstMem = 65536;
  prop->major = 9;
  prop->minor = 0;
  prop->textureAlignment = 512;
  prop->multiProcessorCount = e::kMultiProcessorCount;
  prop->integrated = 0;
  prop->canMapHostMemory = 1;
  prop->concurrentKernels = 1;
  prop->ECCEnabled = 1;
  prop->asyncEngineCount = 3;
  prop->unifiedAddressing = 1;
  prop->memoryBusWidth = 5120;
  prop->l2CacheSize = 50 * 1024 * 1024;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->sharedMemPerMultiprocessor = 228 * 1024;
  prop->regsPerMultiprocessor = 65536;
  prop->managedMemory = 0;  // the emulator has no cudaMallocManaged
  prop->sharedMemPerBlockOptin = e::kMaxDynamicSmemOptin;
  prop->maxBlocksPerMultiProcessor = 32;
  prop->reservedSharedMemPerBlock = 1024;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  namespace e = muse::cuda_emu;
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (value == nullptr) return Fail(s, cudaErrorInvalidValue);
  if (device != 0) return Fail(s, cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
    case cudaDevAttrMaxBlockDimX:
    case cudaDevAttrMaxBlockDimY:
      *value = static_cast<int>(e::kMaxThreadsPerBlock);
      return cudaSuccess;
    case cudaDevAttrMaxBlockDimZ:
      *value = static_cast<int>(e::kMaxBlockDimZ);
      return cudaSuccess;
    case cudaDevAttrMaxGridDimX:
      *value = static_cast<int>(e::kMaxGridDimX);
      return cudaSuccess;
    case cudaDevAttrMaxGridDimY:
    case cudaDevAttrMaxGridDimZ:
      *value = static_cast<int>(e::kMaxGridDimYZ);
      return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = static_cast<int>(e::kDefaultDynamicSmem);
      return cudaSuccess;
    case cudaDevAttrWarpSize:
      *value = e::kWarpSize;
      return cudaSuccess;
    case cudaDevAttrClockRate:  // kHz, H100 SXM boost clock
      *value = 1980000;
      return cudaSuccess;
    case cudaDevAttrMultiProcessorCount:
      *value = e::kMultiProcessorCount;
      return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor:
      *value = 9;
      return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor:
      *value = 0;
      return cudaSuccess;
    case cudaDevAttrMemoryClockRate:  // kHz, H100 SXM HBM3
      *value = 2619000;
      return cudaSuccess;
    case cudaDevAttrGlobalMemoryBusWidth:
      *value = 5120;
      return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(e::kMaxDynamicSmemOptin);
      return cudaSuccess;
  }
  return Fail(s, cudaErrorInvalidValue);
}

cudaError_t cudaDeviceSynchronize() {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  // Waiting for the whole device would wait on capturing streams: illegal in any capture mode.
  if (!s.captures.empty()) {
    for (const auto& c : s.captures) muse::cuda_emu::Invalidate(c.get());
    return Fail(s, cudaErrorStreamCaptureUnsupported);
  }
  return cudaSuccess;  // every operation already ran at enqueue time
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (free == nullptr || total == nullptr) return Fail(s, cudaErrorInvalidValue);
  *total = muse::cuda_emu::kTotalDeviceMemory;
  *free = muse::cuda_emu::kTotalDeviceMemory - s.live_device_bytes;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** devPtr, size_t size) {
  return muse::cuda_emu::Allocate(devPtr, size, AllocKind::kDevice);
}

cudaError_t cudaFree(void* devPtr) { return muse::cuda_emu::Release(devPtr, AllocKind::kDevice); }

cudaError_t cudaMallocHost(void** ptr, size_t size) {
  return muse::cuda_emu::Allocate(ptr, size, AllocKind::kPinnedHost);
}

cudaError_t cudaHostAlloc(void** pHost, size_t size, unsigned int flags) {
  if ((flags & ~(cudaHostAllocPortable | cudaHostAllocMapped | cudaHostAllocWriteCombined)) != 0) {
    State& s = S();
    std::lock_guard<std::mutex> lock(s.mu);
    return Fail(s, cudaErrorInvalidValue);
  }
  return muse::cuda_emu::Allocate(pHost, size, AllocKind::kPinnedHost);
}

cudaError_t cudaFreeHost(void* ptr) { return muse::cuda_emu::Release(ptr, AllocKind::kPinnedHost); }

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  return muse::cuda_emu::CopyOrSet(true, dst, src, 0, count, kind, nullptr, /*async=*/false);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  return muse::cuda_emu::CopyOrSet(true, dst, src, 0, count, kind, stream, /*async=*/true);
}

// A pitched copy is `height` row copies (each bound-checked, and recorded as its own node while
// capturing), after CUDA's pitch rule.
static cudaError_t Copy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                          size_t height, cudaMemcpyKind kind, cudaStream_t stream, bool async) {
  if (width > dpitch || width > spitch) {
    muse::cuda_emu::set_last_error(cudaErrorInvalidPitchValue);
    return cudaErrorInvalidPitchValue;
  }
  for (size_t r = 0; r < height; ++r) {
    const cudaError_t e = muse::cuda_emu::CopyOrSet(true, static_cast<char*>(dst) + r * dpitch,
                                                    static_cast<const char*>(src) + r * spitch, 0,
                                                    width, kind, stream, async);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                         size_t height, cudaMemcpyKind kind) {
  return Copy2D(dst, dpitch, src, spitch, width, height, kind, nullptr, /*async=*/false);
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t stream) {
  return Copy2D(dst, dpitch, src, spitch, width, height, kind, stream, /*async=*/true);
}

cudaError_t cudaMemset(void* devPtr, int value, size_t count) {
  return muse::cuda_emu::CopyOrSet(false, devPtr, nullptr, value, count, cudaMemcpyDefault, nullptr,
                                   /*async=*/false);
}

cudaError_t cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t stream) {
  return muse::cuda_emu::CopyOrSet(false, devPtr, nullptr, value, count, cudaMemcpyDefault, stream,
                                   /*async=*/true);
}

cudaError_t cudaStreamCreate(cudaStream_t* pStream) {
  return cudaStreamCreateWithFlags(pStream, cudaStreamDefault);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* pStream, unsigned int flags) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (pStream == nullptr || (flags & ~cudaStreamNonBlocking) != 0) {
    return Fail(s, cudaErrorInvalidValue);
  }
  auto* st = new CUstream_st;
  st->flags = flags;
  s.streams.insert(st);
  *pStream = st;
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (stream == nullptr || s.streams.count(stream) == 0) {
    return Fail(s, cudaErrorInvalidResourceHandle);
  }
  if (stream->capture) {  // the capture would be left with a dangling stream
    muse::cuda_emu::Invalidate(stream->capture.get());
    return Fail(s, cudaErrorStreamCaptureUnsupported);
  }
  s.streams.erase(stream);
  // Events still name it as the stream they were recorded on; they only compare the pointer.
  delete stream;
  return cudaSuccess;
}

// Synchronising or querying a capturing stream is illegal; the capture is invalidated.
static cudaError_t SyncOrQuery(cudaStream_t stream) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!muse::cuda_emu::ValidStream(s, stream)) return Fail(s, cudaErrorInvalidResourceHandle);
  if (stream == nullptr) return Fail(s, muse::cuda_emu::CheckLegacyImplicit(s));
  if (stream->capture) {
    muse::cuda_emu::Invalidate(stream->capture.get());
    return Fail(s, cudaErrorStreamCaptureUnsupported);
  }
  return cudaSuccess;  // in-order execution: the stream is always idle
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) { return SyncOrQuery(stream); }

cudaError_t cudaStreamQuery(cudaStream_t stream) { return SyncOrQuery(stream); }

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!muse::cuda_emu::ValidStream(s, stream) || event == nullptr || s.events.count(event) == 0) {
    return Fail(s, cudaErrorInvalidResourceHandle);
  }
  if (flags != 0) return Fail(s, cudaErrorInvalidValue);
  Capture* ec = muse::cuda_emu::CapturedIn(event);
  Capture* sc = stream != nullptr ? stream->capture.get() : nullptr;
  if (ec == nullptr) {
    if (sc != nullptr) {
      // A capture may only depend on work inside it.
      muse::cuda_emu::Invalidate(sc);
      return Fail(s, cudaErrorStreamCaptureIsolation);
    }
    if (stream == nullptr) return Fail(s, muse::cuda_emu::CheckLegacyImplicit(s));
    return cudaSuccess;  // the recorded work has already completed
  }
  if (stream == nullptr) {  // the legacy stream cannot join a capture
    muse::cuda_emu::Invalidate(ec);
    return Fail(s, cudaErrorStreamCaptureImplicit);
  }
  if (sc == nullptr) {
    // Fork: the stream joins the event's capture and records into the same graph from here on.
    // Recording is in issue order, which respects every dependency on this one in-order device.
    stream->capture = event->capture;
    stream->captured_ops = stream->joined_ops = 0;
    ec->streams.push_back(stream);
    return cudaSuccess;
  }
  if (sc != ec) {
    muse::cuda_emu::Invalidate(sc);
    muse::cuda_emu::Invalidate(ec);
    return Fail(s, cudaErrorStreamCaptureMerge);
  }
  if (sc->invalidated) return Fail(s, cudaErrorStreamCaptureInvalidated);
  // Join: `stream` now depends on the recording stream's work up to the event.
  CUstream_st* from = event->capture_stream;
  if (from != stream && from->capture.get() == sc) {
    from->joined_ops = std::max(from->joined_ops, event->capture_ops);
  }
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (stream == nullptr) return Fail(s, cudaErrorStreamCaptureUnsupported);  // as CUDA
  if (s.streams.count(stream) == 0) return Fail(s, cudaErrorInvalidResourceHandle);
  if (mode < cudaStreamCaptureModeGlobal || mode > cudaStreamCaptureModeRelaxed) {
    return Fail(s, cudaErrorInvalidValue);
  }
  if (stream->capture) return Fail(s, cudaErrorIllegalState);
  auto c = std::make_shared<Capture>();
  c->id = s.next_capture_id++;
  c->mode = mode;
  c->thread = std::this_thread::get_id();
  c->origin = stream;
  c->streams.push_back(stream);
  stream->capture = c;
  stream->captured_ops = stream->joined_ops = 0;
  s.captures.push_back(std::move(c));
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* pGraph) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (pGraph == nullptr) return Fail(s, cudaErrorInvalidValue);
  if (stream == nullptr || s.streams.count(stream) == 0) {
    return Fail(s, cudaErrorInvalidResourceHandle);
  }
  std::shared_ptr<Capture> c = stream->capture;
  if (!c) return Fail(s, cudaErrorIllegalState);
  if (c->origin != stream) {
    c->invalidated = true;
    return Fail(s, cudaErrorStreamCaptureUnmatched);
  }
  if (c->mode != cudaStreamCaptureModeRelaxed && c->thread != std::this_thread::get_id()) {
    return Fail(s, cudaErrorStreamCaptureWrongThread);
  }
  cudaError_t result = c->invalidated ? cudaErrorStreamCaptureInvalidated : cudaSuccess;
  for (CUstream_st* st : c->streams) {
    if (st != stream && st->joined_ops < st->captured_ops && result == cudaSuccess) {
      result = cudaErrorStreamCaptureUnjoined;
    }
    st->capture.reset();
    st->captured_ops = st->joined_ops = 0;
  }
  c->ended = true;
  for (auto it = s.captures.begin(); it != s.captures.end(); ++it) {
    if (it->get() == c.get()) {
      s.captures.erase(it);
      break;
    }
  }
  *pGraph = nullptr;
  if (result != cudaSuccess) return Fail(s, result);
  auto* g = new CUgraph_st;
  g->id = s.next_graph_id++;
  g->capture_id = c->id;
  g->nodes = std::move(c->nodes);
  s.graphs.insert(g);
  *pGraph = g;
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* pCaptureStatus) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (pCaptureStatus == nullptr) return Fail(s, cudaErrorInvalidValue);
  if (!muse::cuda_emu::ValidStream(s, stream)) return Fail(s, cudaErrorInvalidResourceHandle);
  if (stream == nullptr) {
    *pCaptureStatus = cudaStreamCaptureStatusNone;
    return Fail(s, muse::cuda_emu::CheckLegacyImplicit(s));
  }
  if (!stream->capture) {
    *pCaptureStatus = cudaStreamCaptureStatusNone;
  } else {
    *pCaptureStatus = stream->capture->invalidated ? cudaStreamCaptureStatusInvalidated
                                                   : cudaStreamCaptureStatusActive;
  }
  return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode* mode) {
  if (mode == nullptr || *mode < cudaStreamCaptureModeGlobal ||
      *mode > cudaStreamCaptureModeRelaxed) {
    State& s = S();
    std::lock_guard<std::mutex> lock(s.mu);
    return Fail(s, cudaErrorInvalidValue);
  }
  std::swap(*mode, muse::cuda_emu::tl_capture_mode);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  constexpr unsigned kKnown =
      cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess;
  if (event == nullptr || (flags & ~kKnown) != 0) return Fail(s, cudaErrorInvalidValue);
  auto* e = new CUevent_st;
  e->flags = flags;
  s.events.insert(e);
  *event = e;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (event == nullptr || s.events.count(event) == 0 || !muse::cuda_emu::ValidStream(s, stream)) {
    return Fail(s, cudaErrorInvalidResourceHandle);
  }
  muse::cuda_emu::Route route = muse::cuda_emu::Route::kRun;
  if (cudaError_t e = muse::cuda_emu::RouteFor(s, stream, &route); e != cudaSuccess) {
    return Fail(s, e);
  }
  if (route == muse::cuda_emu::Route::kRecord) {
    // A dependency marker inside the graph, not a timestamp: other streams may wait on it.
    event->capture = stream->capture;
    event->capture_stream = stream;
    event->capture_ops = stream->captured_ops;
    event->recorded = false;
    return cudaSuccess;
  }
  event->capture.reset();
  event->capture_stream = nullptr;
  event->recorded = true;
  event->time = muse::cuda_emu::Clock::now();  // all earlier work on the stream has finished
  return cudaSuccess;
}

// Waiting for an event recorded inside an open capture is illegal; the capture is invalidated.
static cudaError_t EventSyncOrQuery(cudaEvent_t event) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (event == nullptr || s.events.count(event) == 0) {
    return Fail(s, cudaErrorInvalidResourceHandle);
  }
  if (Capture* c = muse::cuda_emu::CapturedIn(event)) {
    c->invalidated = true;
    return Fail(s, cudaErrorCapturedEvent);
  }
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) { return EventSyncOrQuery(event); }

cudaError_t cudaEventQuery(cudaEvent_t event) { return EventSyncOrQuery(event); }

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (ms == nullptr) return Fail(s, cudaErrorInvalidValue);
  if (start == nullptr || end == nullptr || s.events.count(start) == 0 ||
      s.events.count(end) == 0) {
    return Fail(s, cudaErrorInvalidResourceHandle);
  }
  if (muse::cuda_emu::CapturedIn(start) || muse::cuda_emu::CapturedIn(end)) {
    return Fail(s, cudaErrorCapturedEvent);
  }
  if ((start->flags | end->flags) & cudaEventDisableTiming) {
    return Fail(s, cudaErrorInvalidResourceHandle);
  }
  if (!start->recorded || !end->recorded) return Fail(s, cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->time - start->time).count();
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (event == nullptr || s.events.erase(event) == 0) {
    return Fail(s, cudaErrorInvalidResourceHandle);
  }
  delete event;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* pGraphExec, cudaGraph_t graph,
                                 unsigned long long flags) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (pGraphExec == nullptr || graph == nullptr || s.graphs.count(graph) == 0) {
    return Fail(s, cudaErrorInvalidValue);
  }
  // cudaGraphInstantiateFlagAutoFreeOnLaunch (1), Upload (2), DeviceLaunch (4),
  // UseNodePriority (8): none changes what an in-order replay does.
  if ((flags & ~0xfULL) != 0) return Fail(s, cudaErrorInvalidValue);
  auto* x = new CUgraphExec_st;
  x->id = s.next_exec_id++;
  x->graph_id = graph->id;
  x->nodes = std::make_shared<const muse::cuda_emu::NodeList>(graph->nodes);
  s.execs.insert(x);
  *pGraphExec = x;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream) {
  namespace e = muse::cuda_emu;
  State& s = S();
  std::shared_ptr<const e::NodeList> nodes;
  uint64_t exec_id, graph_id;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (graphExec == nullptr || s.execs.count(graphExec) == 0) {
      return Fail(s, cudaErrorInvalidResourceHandle);
    }
    e::Route route = e::Route::kRun;
    if (cudaError_t err = e::RouteFor(s, stream, &route); err != cudaSuccess) {
      return Fail(s, err);
    }
    nodes = graphExec->nodes;
    exec_id = graphExec->id;
    graph_id = graphExec->graph_id;
    if (route == e::Route::kRecord) {
      // Launching a graph into a capture records its nodes as a child graph would.
      for (size_t i = 0; i < nodes->size(); ++i) {
        e::CheckReplayRefs(s, "graph exec", exec_id, graph_id, i, nodes->size(), (*nodes)[i]);
        e::Record(s, stream, (*nodes)[i]);
      }
      return cudaSuccess;
    }
  }
  for (size_t i = 0; i < nodes->size(); ++i) {
    {
      std::lock_guard<std::mutex> lock(s.mu);
      e::CheckReplayRefs(s, "graph exec", exec_id, graph_id, i, nodes->size(), (*nodes)[i]);
    }
    e::RunNode((*nodes)[i]);
  }
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (graph == nullptr || s.graphs.erase(graph) == 0) return Fail(s, cudaErrorInvalidValue);
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (graphExec == nullptr || s.execs.erase(graphExec) == 0) {
    return Fail(s, cudaErrorInvalidValue);
  }
  delete graphExec;
  return cudaSuccess;
}
