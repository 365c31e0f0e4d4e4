// Turns the scheduler's decision into the runner's step Batch (see src/runtime/batch.h).
#pragma once

#include <vector>

#include "src/engine/scheduler.h"
#include "src/runtime/batch.h"

namespace muse::engine {

// Fills `batch` for `scheduled` (tables must already cover the new tokens). `logits_seq` gets, per
// logits row, the index into `scheduled` of the sequence whose chunk reaches its last token.
void BuildBatch(const std::vector<ScheduledSeq>& scheduled, runtime::Batch* batch,
                std::vector<int>* logits_seq);

}  // namespace muse::engine
