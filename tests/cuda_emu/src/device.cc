// The emulator's device side: CUDA threads as fibers, the block scheduler, __syncthreads, warp
// collectives, mma.sync and the launch checks. See muse_cuda_emu/device.h for the model.
//
// One Block runner per OS thread runs one block at a time. A fiber runs until it reaches a
// synchronisation point it cannot pass yet (a barrier or a collective whose lanes have not all
// arrived) or exits, then switches back to the scheduler, which resumes the next ready thread in
// schedule order. The last thread to arrive completes the barrier or collective and continues.
//
// Under TSan every fiber is a TSan fiber switched with no implied synchronisation; happens-before
// comes only from what CUDA guarantees (launch -> threads, barrier, collective, threads ->
// completion), so races between threads of a block are reported with both stacks. This file is
// built without -fsanitize=thread so the scheduler's own bookkeeping is not reported.
#include "muse_cuda_emu/device.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "muse_cuda_emu/half.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

// Sanitizer fiber hooks, resolved only when the sanitizer runtime is linked (their names are
// the runtimes', hence reserved identifiers).
// NOLINTBEGIN(bugprone-reserved-identifier)
extern "C" {
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size)
    __attribute__((weak));
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old,
                                     size_t* size_old) __attribute__((weak));
void __asan_unpoison_memory_region(void const volatile* addr, size_t size) __attribute__((weak));
void* __tsan_get_current_fiber() __attribute__((weak));
void* __tsan_create_fiber(unsigned flags) __attribute__((weak));
void __tsan_switch_to_fiber(void* fiber, unsigned flags) __attribute__((weak));
void __tsan_set_fiber_name(void* fiber, const char* name) __attribute__((weak));
void __tsan_acquire(void* addr) __attribute__((weak));
void __tsan_release(void* addr) __attribute__((weak));
}
// NOLINTEND(bugprone-reserved-identifier)

#if defined(__x86_64__)
// Saves the callee-saved registers, MXCSR and the x87 control word on the current stack, stores
// the stack pointer in *save and continues on `load` (SysV x86-64). Written by hand: swapcontext
// also saves and restores the signal mask with a system call per switch.
extern "C" void muse_emu_switch(void** save, void* load);
asm(R"(
  .pushsection .text
  .globl muse_emu_switch
  .type muse_emu_switch, @function
muse_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size muse_emu_switch, .-muse_emu_switch
  .popsection
)");
#endif

namespace muse::cuda_emu {

thread_local const ThreadState* t_thread = nullptr;

namespace {

constexpr size_t kStackBytes = size_t{256} * 1024;  // virtual; only touched pages are committed

enum class State : uint8_t { kReady, kBarrier, kCollective, kExited };

struct Pending {
  Collective op;
  unsigned mask;
  int width;
  int arg;
  const char* file;
  unsigned line;
  uint64_t value, result;
  uint32_t frag[6];  // mma: a0..a3, b0, b1
  float acc[4];      // mma: c in, d out
};

struct Fiber {
  int index = 0;  // linear thread index in the block
  void* sp = nullptr;
  char* stack = nullptr;  // usable stack [stack, stack + kStackBytes), guard page below
  void* tsan = nullptr;
  ThreadState ts{};
  State state = State::kExited;
  Pending pending{};
  const char* barrier_file = nullptr;
  unsigned barrier_line = 0;
};

// A collective some lanes of a warp have reached and others not yet.
struct OpenCollective {
  Pending key;       // op, mask, width and source line every lane must match
  unsigned arrived;  // lanes waiting in it
};

struct Warp {
  unsigned exists = 0, exited = 0, at_barrier = 0;  // lane bitmasks
  std::vector<OpenCollective> open;                 // disjoint masks
};

struct Block {
  std::vector<std::unique_ptr<Fiber>> fibers;  // grows to the largest block seen
  std::vector<Warp> warps;
  int n = 0, alive = 0, barrier_arrived = 0;
  Fiber* current = nullptr;
  const std::function<void()>* body = nullptr;
  const char* kernel = nullptr;
  std::unique_ptr<unsigned char[]> dynamic_smem;
  bool reverse = false;
  bool running = false;
  bool from_scheduler = false;  // the last switch left the scheduler's stack
  void* sched_sp = nullptr;
  void* sched_tsan = nullptr;
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;
#if !defined(__x86_64__)
  ucontext_t sched_ctx;
  std::vector<ucontext_t> ctx;
#endif
  // Addresses used only as TSan synchronisation tokens.
  char launch_token = 0, done_token = 0, barrier_token = 0;
  char warp_tokens[32] = {};
};

thread_local Block* t_block = nullptr;

Block& block() {
  static thread_local Block b;
  return b;
}

bool reverse_schedule() {
  static const bool reverse = [] {
    const char* s = std::getenv("MUSE_CUDA_EMU_SCHEDULE");
    return s && std::string(s) == "reverse";
  }();
  return reverse;
}

void tsan_acquire(void* a) {
  if (__tsan_acquire) __tsan_acquire(a);
}
void tsan_release(void* a) {
  if (__tsan_release) __tsan_release(a);
}

const char* op_name(Collective op) {
  switch (op) {
    case Collective::kShflIdx:
      return "__shfl_sync";
    case Collective::kShflUp:
      return "__shfl_up_sync";
    case Collective::kShflDown:
      return "__shfl_down_sync";
    case Collective::kShflXor:
      return "__shfl_xor_sync";
    case Collective::kSyncWarp:
      return "__syncwarp";
    case Collective::kBallot:
      return "__ballot_sync";
    case Collective::kAny:
      return "__any_sync";
    case Collective::kAll:
      return "__all_sync";
    case Collective::kMmaBf16:
      return "mma.sync.m16n8k16.bf16";
    case Collective::kMmaF16:
      return "mma.sync.m16n8k16.f16";
  }
  return "?";
}

std::string where_str(const char* file, unsigned line) {
  return std::string(file ? file : "?") + ":" + std::to_string(line);
}

std::string pending_str(const Pending& p) {
  char mask[16];
  std::snprintf(mask, sizeof mask, "0x%08x", p.mask);
  return std::string(op_name(p.op)) + "(mask " + mask + ") at " + where_str(p.file, p.line);
}

std::string context_str() {
  Block* b = t_block;
  if (!b || !b->running) return "host code";
  std::string s = std::string("kernel ") + (b->kernel ? b->kernel : "?");
  if (b->current) {
    const ThreadState& t = b->current->ts;
    s += " block (" + std::to_string(t.block_idx.x) + "," + std::to_string(t.block_idx.y) + "," +
         std::to_string(t.block_idx.z) + ") thread (" + std::to_string(t.thread_idx.x) + "," +
         std::to_string(t.thread_idx.y) + "," + std::to_string(t.thread_idx.z) + ")";
  }
  return s;
}

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "muse-cuda-emu: %s: %s\n", context_str().c_str(), what.c_str());
  std::fflush(stderr);
  std::abort();
}

// ---- fibers ----

char* allocate_stack() {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) fail("cannot map a fiber stack");
  mprotect(p, page, PROT_NONE);  // overflow faults instead of corrupting a neighbour
  return static_cast<char*>(p) + page;
}

[[noreturn]] void fiber_main();

// Switches from `from` to `to` (nullptr: the scheduler's own stack). A blocked thread hands over
// directly to the next ready thread in schedule order, so a barrier or collective costs one switch
// per thread, not two.
void transfer(Block& b, Fiber* from, Fiber* to, bool from_exits) {
  void* fake = nullptr;
  if (__sanitizer_start_switch_fiber) {
    __sanitizer_start_switch_fiber(from_exits ? nullptr : &fake,
                                   to ? static_cast<const void*>(to->stack) : b.sched_stack_bottom,
                                   to ? kStackBytes : b.sched_stack_size);
  }
  if (__tsan_switch_to_fiber) __tsan_switch_to_fiber(to ? to->tsan : b.sched_tsan, 1 /*no sync*/);
  b.current = to;
  t_thread = to ? &to->ts : nullptr;
  b.from_scheduler = from == nullptr;
#if defined(__x86_64__)
  muse_emu_switch(from ? &from->sp : &b.sched_sp, to ? to->sp : b.sched_sp);
#else
  swapcontext(from ? &b.ctx[from->index] : &b.sched_ctx, to ? &b.ctx[to->index] : &b.sched_ctx);
#endif
  if (__sanitizer_finish_switch_fiber) __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
}

// The next ready thread after `from` in schedule order (wrapping), or nullptr.
Fiber* next_ready(Block& b, int from) {
  for (int k = 1; k <= b.n; ++k) {
    const int i = b.reverse ? (from - k + b.n) % b.n : (from + k) % b.n;
    if (b.fibers[i]->state == State::kReady) return b.fibers[i].get();
  }
  return nullptr;
}

void start_fiber(Block& b, Fiber& f) {
  f.state = State::kReady;
  // A thread that exited left the frames of its exit path (fiber_main and the switch, within the
  // top few KiB) poisoned for ASan; deeper frames had returned and unpoisoned themselves.
  constexpr size_t kExitFrames = size_t{16} * 1024;
  if (__asan_unpoison_memory_region)
    __asan_unpoison_memory_region(f.stack + kStackBytes - kExitFrames, kExitFrames);
#if defined(__x86_64__)
  // The frame muse_emu_switch pops: control words, r15..rbp, then `ret` into fiber_main with
  // the stack aligned as after a call.
  uintptr_t top = reinterpret_cast<uintptr_t>(f.stack + kStackBytes) & ~uintptr_t{15};
  uint64_t* sp = reinterpret_cast<uint64_t*>(top);  // NOLINT(performance-no-int-to-ptr)
  *--sp = 0;  // fiber_main's return address slot; it never returns
  *--sp = reinterpret_cast<uint64_t>(&fiber_main);
  for (int i = 0; i < 6; ++i) *--sp = 0;
  uint32_t mxcsr;
  uint16_t fcw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fcw));
  *--sp = static_cast<uint64_t>(mxcsr) | (static_cast<uint64_t>(fcw) << 32);
  f.sp = sp;
#else
  ucontext_t& c = b.ctx[f.index];
  getcontext(&c);
  c.uc_stack.ss_sp = f.stack;
  c.uc_stack.ss_size = kStackBytes;
  c.uc_link = nullptr;
  makecontext(&c, reinterpret_cast<void (*)()>(&fiber_main), 0);
#endif
}

Fiber& lane_fiber(Block& b, int warp, int lane) { return *b.fibers[warp * 32 + lane]; }

int lanes_in_warp(const Block& b, int warp) { return std::min(32, b.n - warp * 32); }

void release_barrier(Block& b) {
  for (Warp& w : b.warps) w.at_barrier = 0;
  for (int i = 0; i < b.n; ++i)
    if (b.fibers[i]->state == State::kBarrier) b.fibers[i]->state = State::kReady;
  b.barrier_arrived = 0;
}

int lowest_lane(unsigned m) { return __builtin_ctz(m); }

// Fails if lanes of f's warp wait in a collective whose mask names f, which instead exits or
// reaches __syncthreads at file:line.
void fail_if_awaited(Block& b, Fiber& f, const char* what_f_does, const char* file = nullptr,
                     unsigned line = 0) {
  const int warp = f.index / 32, lane = f.index % 32;
  for (const OpenCollective& o : b.warps[warp].open) {
    if (!(o.key.mask >> lane & 1u)) continue;
    fail("lane " + std::to_string(lane) + " of warp " + std::to_string(warp) + " " + what_f_does +
         (file ? " at " + where_str(file, line) : std::string()) + " while lane " +
         std::to_string(lowest_lane(o.arrived)) + " waits for it in " + pending_str(o.key));
  }
}

void exit_thread(Block& b, Fiber& f) {
  fail_if_awaited(b, f, "exited");
  f.state = State::kExited;
  b.warps[f.index / 32].exited |= 1u << (f.index % 32);
  --b.alive;
  if (b.alive > 0 && b.barrier_arrived > 0 && b.barrier_arrived == b.alive) release_barrier(b);
  tsan_release(&b.done_token);
}

[[noreturn]] void fiber_main() {
  Block& b = *t_block;
  if (__sanitizer_finish_switch_fiber) {
    const void* bottom = nullptr;
    size_t size = 0;
    __sanitizer_finish_switch_fiber(nullptr, &bottom, &size);
    if (b.from_scheduler) {  // the stack we came from is the one to return to at the end
      b.sched_stack_bottom = bottom;
      b.sched_stack_size = size;
    }
  }
  tsan_acquire(&b.launch_token);
  (*b.body)();
  Fiber& f = *b.current;
  exit_thread(b, f);
  transfer(b, &f, next_ready(b, f.index), /*from_exits=*/true);
  fail("an exited thread was resumed");
}

[[noreturn]] void deadlock(Block& b) {
  std::string s = "deadlock: no thread can proceed.";
  int shown = 0;
  for (int i = 0; i < b.n && shown < 8; ++i) {
    const Fiber& f = *b.fibers[i];
    if (f.state == State::kExited) continue;
    ++shown;
    s += "\n  thread " + std::to_string(i) + " (warp " + std::to_string(i / 32) + " lane " +
         std::to_string(i % 32) + ") waits in ";
    s += f.state == State::kBarrier
             ? "__syncthreads at " + where_str(f.barrier_file, f.barrier_line)
             : pending_str(f.pending);
  }
  s += "\n  (" + std::to_string(b.alive) + " threads have not exited, " +
       std::to_string(b.barrier_arrived) + " wait at the barrier)";
  b.current = nullptr;
  fail(s);
}

void run_block(Block& b) {
  for (int i = 0; i < b.n; ++i) start_fiber(b, *b.fibers[i]);
  b.warps.resize((b.n + 31) / 32);
  for (size_t w = 0; w < b.warps.size(); ++w) {
    const int lanes = lanes_in_warp(b, static_cast<int>(w));
    b.warps[w].exists = lanes == 32 ? ~0u : (1u << lanes) - 1u;
    b.warps[w].exited = b.warps[w].at_barrier = 0;
    b.warps[w].open.clear();
  }
  b.alive = b.n;
  b.barrier_arrived = 0;
  tsan_release(&b.launch_token);
  while (b.alive > 0) {
    // Threads hand over to each other; control comes back here when none is ready.
    Fiber* first = next_ready(b, b.reverse ? 0 : b.n - 1);
    if (!first) deadlock(b);
    transfer(b, nullptr, first, /*from_exits=*/false);
  }
  tsan_acquire(&b.done_token);
}

Block& running_block(const char* what) {
  Block* b = t_block;
  if (!b || !b->running || !b->current) fatal_not_in_kernel(what);
  return *b;
}

void yield(Block& b, Fiber& f) { transfer(b, &f, next_ready(b, f.index), /*from_exits=*/false); }

// ---- collectives ----

bool same_collective(const Pending& a, const Pending& b) {
  // The file names are string literals: the same collective has the same pointer.
  return a.op == b.op && a.mask == b.mask && a.width == b.width && a.line == b.line &&
         (a.file == b.file || std::strcmp(a.file, b.file) == 0);
}

float mma_in(Collective op, uint32_t bits, int half) {
  const uint16_t h = static_cast<uint16_t>(half ? bits >> 16 : bits & 0xffffu);
  return op == Collective::kMmaBf16 ? bf16_bits_to_float(h) : f16_bits_to_float(h);
}

// D = A B + C for m16n8k16 from the 32 lanes' fragments (PTX ISA, "Matrix Fragments for
// mma.m16n8k16 with floating point type": g = lane / 4, t = lane % 4).
void complete_mma(Block& b, int warp, Collective op) {
  float A[16][16], B[16][8], C[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const Pending& p = lane_fiber(b, warp, lane).pending;
    const int g = lane / 4, t = lane % 4;
    for (int h = 0; h < 2; ++h) {
      A[g][2 * t + h] = mma_in(op, p.frag[0], h);
      A[g + 8][2 * t + h] = mma_in(op, p.frag[1], h);
      A[g][2 * t + 8 + h] = mma_in(op, p.frag[2], h);
      A[g + 8][2 * t + 8 + h] = mma_in(op, p.frag[3], h);
      B[2 * t + h][g] = mma_in(op, p.frag[4], h);
      B[2 * t + 8 + h][g] = mma_in(op, p.frag[5], h);
      C[g][2 * t + h] = p.acc[h];
      C[g + 8][2 * t + h] = p.acc[2 + h];
    }
  }
  float D[16][8];
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 8; ++j) {
      float d = C[i][j];
      // Products of bf16/f16 values are exact in fp32, so this rounds exactly like an fma.
      for (int k = 0; k < 16; ++k) d += A[i][k] * B[k][j];
      D[i][j] = d;
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    Pending& p = lane_fiber(b, warp, lane).pending;
    const size_t g = lane / 4, t = lane % 4;
    p.acc[0] = D[g][2 * t];
    p.acc[1] = D[g][2 * t + 1];
    p.acc[2] = D[g + 8][2 * t];
    p.acc[3] = D[g + 8][2 * t + 1];
  }
}

void complete(Block& b, int warp, const Pending& self) {
  const unsigned mask = self.mask;
  const Collective op = self.op;
  if (op == Collective::kMmaBf16 || op == Collective::kMmaF16) {
    complete_mma(b, warp, op);
  } else if (op == Collective::kBallot || op == Collective::kAny || op == Collective::kAll) {
    uint64_t ballot = 0;
    for (int l = 0; l < 32; ++l)
      if (mask >> l & 1u && lane_fiber(b, warp, l).pending.value) ballot |= uint64_t{1} << l;
    const uint64_t r = op == Collective::kBallot ? ballot
                       : op == Collective::kAny  ? uint64_t{ballot != 0}
                                                 : uint64_t{ballot == mask};
    for (int l = 0; l < 32; ++l)
      if (mask >> l & 1u) lane_fiber(b, warp, l).pending.result = r;
  } else if (op != Collective::kSyncWarp) {
    const int w = self.width;
    for (int l = 0; l < 32; ++l) {
      if (!(mask >> l & 1u)) continue;
      Pending& p = lane_fiber(b, warp, l).pending;
      const int seg = l / w * w, arg = p.arg;
      int src = l;
      switch (op) {
        case Collective::kShflIdx:
          src = seg + ((arg % w) + w) % w;
          break;
        case Collective::kShflUp:
          src = (l - seg) >= arg ? l - arg : l;
          break;
        case Collective::kShflDown:
          src = (l - seg) + arg < w ? l + arg : l;
          break;
        case Collective::kShflXor:
          src = l ^ arg;
          if (src < 0 || src >= seg + w) src = l;  // later segments return the own value
          break;
        default:
          break;
      }
      if (!(mask >> src & 1u)) {
        fail("lane " + std::to_string(l) + " of warp " + std::to_string(warp) + " reads lane " +
             std::to_string(src) + " which is not in the mask of " + pending_str(p));
      }
      p.result = lane_fiber(b, warp, src).pending.value;
    }
  }
  for (int l = 0; l < 32; ++l)
    if (mask >> l & 1u) lane_fiber(b, warp, l).state = State::kReady;
}

// Arrive at a collective; returns once all lanes of the mask have arrived. Bookkeeping is per
// warp (lane bitmasks and the open collectives), so an arrival costs O(open collectives).
void collective(Block& b, Fiber& f) {
  const int warp = f.index / 32, lane = f.index % 32;
  const unsigned bit = 1u << lane;
  const Pending& me = f.pending;
  if (!(me.mask & bit)) {
    fail("lane " + std::to_string(lane) + " calls " + pending_str(me) +
         " whose mask does not include it");
  }
  const bool is_mma = me.op == Collective::kMmaBf16 || me.op == Collective::kMmaF16;
  if (is_mma && me.mask != 0xffffffffu) fail(pending_str(me) + " needs all 32 lanes");
  if (me.width < 1 || me.width > 32 || (me.width & (me.width - 1))) {
    fail(pending_str(me) + " with width " + std::to_string(me.width) +
         " (must be a power of two <= 32)");
  }
  Warp& w = b.warps[warp];
  if (const unsigned missing = me.mask & ~w.exists) {
    fail(pending_str(me) + " names lane " + std::to_string(lowest_lane(missing)) + " of warp " +
         std::to_string(warp) + ", which does not exist (the block has " + std::to_string(b.n) +
         " threads)");
  }
  if (const unsigned gone = me.mask & w.exited) {
    fail(pending_str(me) + " names lane " + std::to_string(lowest_lane(gone)) +
         ", which has exited");
  }
  if (const unsigned waiting = me.mask & w.at_barrier) {
    const Fiber& o = lane_fiber(b, warp, lowest_lane(waiting));
    fail("lane " + std::to_string(lane) + " waits in " + pending_str(me) + " for lane " +
         std::to_string(lowest_lane(waiting)) + ", which waits at __syncthreads at " +
         where_str(o.barrier_file, o.barrier_line) + " (deadlock)");
  }
  size_t g = w.open.size();
  for (size_t i = 0; i < w.open.size(); ++i) {
    const OpenCollective& o = w.open[i];
    if (!(o.key.mask & (me.mask | bit))) continue;
    if (!same_collective(o.key, me)) {
      fail("lanes of warp " + std::to_string(warp) + " reach different collectives: lane " +
           std::to_string(lane) + " in " + pending_str(me) + ", lane " +
           std::to_string(lowest_lane(o.arrived)) + " in " + pending_str(o.key));
    }
    g = i;
    break;
  }
  if (g == w.open.size()) w.open.push_back({me, 0u});
  w.open[g].arrived |= bit;
  tsan_release(&b.warp_tokens[warp % 32]);
  f.state = State::kCollective;
  if (w.open[g].arrived == me.mask) {
    w.open[g] = w.open.back();
    w.open.pop_back();
    complete(b, warp, me);
  } else {
    yield(b, f);
  }
  tsan_acquire(&b.warp_tokens[warp % 32]);
}

std::mutex g_attr_mutex;
std::unordered_map<const void*, size_t>& smem_limits() {
  static std::unordered_map<const void*, size_t> m;
  return m;
}

}  // namespace

void fatal(const char* what) { fail(what); }

void fatal_not_in_kernel(const char* what) {
  std::fprintf(stderr, "muse-cuda-emu: %s used outside a kernel (host code)\n", what);
  std::fflush(stderr);
  std::abort();
}

uint64_t warp_collective(Collective op, unsigned mask, uint64_t value, int arg, int width,
                         const char* file, unsigned line) {
  Block& b = running_block(op_name(op));
  Fiber& f = *b.current;
  f.pending = Pending{};
  f.pending.op = op;
  f.pending.mask = mask;
  f.pending.width = width;
  f.pending.arg = arg;
  f.pending.file = file;
  f.pending.line = line;
  f.pending.value = value;
  collective(b, f);
  return f.pending.result;
}

void mma_m16n8k16(Collective op, float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                  const char* file, unsigned line) {
  Block& b = running_block(op_name(op));
  Fiber& f = *b.current;
  f.pending = Pending{};
  f.pending.op = op;
  f.pending.mask = 0xffffffffu;
  f.pending.width = 32;
  f.pending.file = file;
  f.pending.line = line;
  for (int i = 0; i < 4; ++i) f.pending.frag[i] = a[i];
  f.pending.frag[4] = b0;
  f.pending.frag[5] = b1;
  for (int i = 0; i < 4; ++i) f.pending.acc[i] = c[i];
  collective(b, f);
  for (int i = 0; i < 4; ++i) c[i] = f.pending.acc[i];
}

void syncthreads(const char* file, unsigned line) {
  Block& b = running_block("__syncthreads");
  Fiber& f = *b.current;
  fail_if_awaited(b, f, "reached __syncthreads", file, line);
  tsan_release(&b.barrier_token);
  f.state = State::kBarrier;
  b.warps[f.index / 32].at_barrier |= 1u << (f.index % 32);
  f.barrier_file = file;
  f.barrier_line = line;
  if (++b.barrier_arrived == b.alive) {
    release_barrier(b);
  } else {
    yield(b, f);
  }
  tsan_acquire(&b.barrier_token);
}

void* dynamic_shared_memory() {
  Block& b = running_block("dynamic shared memory");
  return b.dynamic_smem.get();
}

unsigned active_mask() {
  Block& b = running_block("__activemask");
  const int warp = b.current->index / 32;
  unsigned m = 0;
  for (int l = 0; l < lanes_in_warp(b, warp); ++l)
    if (lane_fiber(b, warp, l).state != State::kExited) m |= 1u << l;
  return m;
}

cudaError_t set_max_dynamic_smem(const void* kernel, int bytes) {
  if (!kernel || bytes < 0 || static_cast<size_t>(bytes) > kMaxDynamicSmemOptin)
    return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(g_attr_mutex);
  smem_limits()[kernel] = static_cast<size_t>(bytes);
  return cudaSuccess;
}

cudaError_t check_launch(const void* kernel, const LaunchConfig& c) {
  const dim3 g = c.grid, k = c.block;
  if (!g.x || !g.y || !g.z || !k.x || !k.y || !k.z) return cudaErrorInvalidConfiguration;
  if (k.x > kMaxThreadsPerBlock || k.y > kMaxThreadsPerBlock || k.z > kMaxBlockDimZ ||
      static_cast<uint64_t>(k.x) * k.y * k.z > kMaxThreadsPerBlock)
    return cudaErrorInvalidConfiguration;
  if (g.x > kMaxGridDimX || g.y > kMaxGridDimYZ || g.z > kMaxGridDimYZ)
    return cudaErrorInvalidConfiguration;
  size_t limit = kDefaultDynamicSmem;
  {
    std::lock_guard<std::mutex> lock(g_attr_mutex);
    auto it = smem_limits().find(kernel);
    if (it != smem_limits().end()) limit = it->second;
  }
  if (c.dynamic_smem > limit) return cudaErrorInvalidValue;
  return cudaSuccess;
}

void run_grid(const char* name, const LaunchConfig& c, const std::function<void()>& body) {
  Block& b = block();
  if (b.running) fail("kernel " + std::string(name) + " launched from inside a kernel");
  const int n = static_cast<int>(c.block.x * c.block.y * c.block.z);
  while (static_cast<int>(b.fibers.size()) < n) {
    auto f = std::make_unique<Fiber>();
    f->index = static_cast<int>(b.fibers.size());
    f->stack = allocate_stack();
    if (__tsan_create_fiber) f->tsan = __tsan_create_fiber(0);
    b.fibers.push_back(std::move(f));
  }
#if !defined(__x86_64__)
  b.ctx.resize(b.fibers.size());
#endif
  if (__tsan_get_current_fiber) b.sched_tsan = __tsan_get_current_fiber();
  b.n = n;
  b.body = &body;
  b.kernel = name;
  b.reverse = reverse_schedule();
  b.running = true;
  t_block = &b;
  for (int i = 0; i < n; ++i) {
    ThreadState& t = b.fibers[i]->ts;
    t.thread_idx = {static_cast<unsigned>(i) % c.block.x,
                    static_cast<unsigned>(i) / c.block.x % c.block.y,
                    static_cast<unsigned>(i) / (c.block.x * c.block.y)};
    t.block_dim = c.block;
    t.grid_dim = c.grid;
  }
  for (unsigned z = 0; z < c.grid.z; ++z) {
    for (unsigned y = 0; y < c.grid.y; ++y) {
      for (unsigned x = 0; x < c.grid.x; ++x) {
        for (int i = 0; i < n; ++i) b.fibers[i]->ts.block_idx = {x, y, z};
        // Exact size, so ASan reports a read past the requested dynamic shared memory.
        b.dynamic_smem.reset(new unsigned char[c.dynamic_smem]);
        std::memset(b.dynamic_smem.get(), 0xcd, c.dynamic_smem);
        run_block(b);
      }
    }
  }
  b.dynamic_smem.reset();
  b.running = false;
  b.body = nullptr;
  t_block = nullptr;
}

}  // namespace muse::cuda_emu
