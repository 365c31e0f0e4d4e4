#include "src/engine/batch_builder.h"

#include <algorithm>

namespace muse::engine {

std::vector<models::EmbeddingOverride> EmbeddingOverridesFor(
    const std::vector<ContentSpan>& content, int32_t context_begin, int32_t num_new,
    int32_t batch_offset) {
  std::vector<models::EmbeddingOverride> out;
  const int32_t end = context_begin + num_new;
  for (const auto& span : content) {
    if (!span.embeddings || span.num_tokens <= 0) continue;
    const int32_t s = std::max(context_begin, span.offset);
    const int32_t e = std::min(end, span.offset + span.num_tokens);
    if (s >= e) continue;
    const size_t hidden = span.embeddings->size() / span.num_tokens;
    out.push_back({batch_offset + (s - context_begin), e - s,
                   span.embeddings->data() + static_cast<size_t>(s - span.offset) * hidden});
  }
  return out;
}

void BuildBatch(const std::vector<ScheduledSeq>& scheduled, models::Batch* batch,
                std::vector<int>* logits_seq) {
  models::Batch& b = *batch;
  b = models::Batch{};
  logits_seq->clear();
  int max_blocks = 1;
  int num_tokens = 0;
  for (const auto& s : scheduled) {
    max_blocks = std::max(max_blocks, static_cast<int>(s.seq->block_table.size()));
    num_tokens += s.num_new_tokens;
  }
  const int n = static_cast<int>(scheduled.size());
  b.max_blocks_per_seq = max_blocks;
  b.input_ids.reserve(num_tokens);
  b.positions.reserve(num_tokens);
  b.slot_mapping.reserve(num_tokens);
  b.query_start_loc.reserve(n + 1);
  b.seq_lens.reserve(n);
  b.block_tables.assign(static_cast<size_t>(n) * max_blocks, -1);
  b.query_start_loc.push_back(0);
  for (int i = 0; i < n; ++i) {
    const Sequence& seq = *scheduled[i].seq;
    const int start = seq.num_computed_tokens;
    const int end = start + scheduled[i].num_new_tokens;
    const int first_token = b.num_tokens();
    for (int pos = start; pos < end; ++pos) {
      b.input_ids.push_back(seq.tokens[pos]);
      b.positions.push_back(pos);
      b.slot_mapping.push_back(static_cast<int64_t>(seq.block_table[pos / kernels::kKvBlockSize]) *
                                   kernels::kKvBlockSize +
                               pos % kernels::kKvBlockSize);
    }
    if (seq.content) {
      for (const auto& o : EmbeddingOverridesFor(*seq.content, start, end - start, first_token)) {
        b.embedding_overrides.push_back(o);
      }
    }
    b.query_start_loc.push_back(b.num_tokens());
    b.seq_lens.push_back(end);
    std::copy(seq.block_table.begin(), seq.block_table.end(),
              b.block_tables.begin() + static_cast<size_t>(i) * max_blocks);
    if (end == static_cast<int>(seq.tokens.size())) {
      b.logits_indices.push_back(b.num_tokens() - 1);
      logits_seq->push_back(i);
    }
  }
}

}  // namespace muse::engine
