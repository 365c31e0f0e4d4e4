// Turns the scheduler's decision into the runner's step Batch (see models/batch.h).
#pragma once

#include <vector>

#include "models/batch.h"
#include "src/engine/scheduler.h"

namespace muse::engine {

// Fills `batch` for `scheduled` (tables must already cover the new tokens). `logits_seq` gets, per
// logits row, the index into `scheduled` of the sequence whose chunk reaches its last token.
void BuildBatch(const std::vector<ScheduledSeq>& scheduled, models::Batch* batch,
                std::vector<int>* logits_seq);

// Embedding rows for the new tokens [context_begin, context_begin + num_new) of one sequence
// placed at flattened batch index `batch_offset`: the parts of `content` (image features) those
// tokens cover. The pointers alias `content`, which must outlive the batch.
std::vector<models::EmbeddingOverride> EmbeddingOverridesFor(
    const std::vector<ContentSpan>& content, int32_t context_begin, int32_t num_new,
    int32_t batch_offset);

}  // namespace muse::engine
