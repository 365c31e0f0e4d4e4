// Sequence: the engine's state for one sample of a request (tokens, KV progress, block table).
// Owned by the engine core's RequestState; the scheduler holds raw pointers. Engine thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "src/engine/request.h"

namespace muse::engine {

enum class SeqStatus { kWaiting, kRunning, kFinished };

struct Sequence {
  int64_t id = 0;         // engine-unique, breaks key ties (earlier id first)
  int sample_index = 0;   // in [0, n)
  void* owner = nullptr;  // the engine's RequestState; opaque to the scheduler

  std::vector<int32_t> tokens;  // prompt + generated
  int num_prompt_tokens = 0;
  const std::vector<ContentSpan>* content = nullptr;  // prompt content spans (prefix-cache keys)

  int num_computed_tokens = 0;         // tokens whose KV is in block_table
  std::vector<int32_t> block_table;    // only non-empty while kRunning
  std::vector<uint64_t> block_hashes;  // chained hashes of the leading full blocks of tokens
  int num_cached_blocks = 0;           // leading table blocks already offered to the prefix cache

  // Scheduling order: smaller first. arrival (ns) + priority rank * aging window (ns).
  int64_t priority_key = 0;
  // Sequences this one occupies once admitted: n for a leader that has not forked yet, else 1.
  int seats = 1;

  SeqStatus status = SeqStatus::kWaiting;
  int num_preemptions = 0;

  int num_generated() const { return static_cast<int>(tokens.size()) - num_prompt_tokens; }
  int num_remaining() const { return static_cast<int>(tokens.size()) - num_computed_tokens; }
};

// Strict weak order used by the waiting queue, the running set and victim selection.
struct SeqOrder {
  bool operator()(const Sequence* a, const Sequence* b) const {
    if (a->priority_key != b->priority_key) return a->priority_key < b->priority_key;
    return a->id < b->id;
  }
};

}  // namespace muse::engine
