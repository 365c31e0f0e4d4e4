#include "src/engine/engine_core.h"

#include <algorithm>
#include <exception>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "kernels/cpu/thread_pool.h"
#include "src/common/logging.h"
#include "src/engine/batch_builder.h"

namespace muse::engine {

namespace {

// A sample's progress through its think block (SamplingParams::thinking, request.h).
struct ThinkState {
  enum class Phase {
    kOff,      // no thinking budget, or the block is over (or never opened): free generation
    kOpening,  // matching the output's first tokens against start_token_ids
    kInside,   // in the block, counting reasoning tokens
    kForcing,  // the budget is spent: forcing end_token_ids + forced_suffix_token_ids
  };
  Phase phase = Phase::kOff;
  int matched = 0;      // kOpening: start ids matched; kForcing: forced ids emitted
  int in_block = 0;     // kInside: tokens generated inside the block
  int reasoning = 0;    // reasoning tokens so far
  int32_t forced = -1;  // kForcing: the token this step's mask allows

  static ThinkState Begin(const ThinkingBudget& t) {
    ThinkState st;
    st.phase = Phase::kOpening;
    if (t.starts_inside) st.EnterBlock(t);
    return st;
  }
  void EnterBlock(const ThinkingBudget& t) {
    phase = Phase::kInside;
    in_block = 0;
    if (t.budget == 0) StartForcing(t);
  }
  void StartForcing(const ThinkingBudget& t) {
    phase = Phase::kForcing;
    matched = 0;
    forced = ForcedAt(t, 0);
  }
  static int32_t ForcedAt(const ThinkingBudget& t, int i) {
    const int end = static_cast<int>(t.end_token_ids.size());
    if (i < end) return t.end_token_ids[i];
    const int j = i - end;
    return j < static_cast<int>(t.forced_suffix_token_ids.size()) ? t.forced_suffix_token_ids[j]
                                                                  : -1;
  }
  // Longest proper prefix of the end tag that the block's last tokens spell, or the whole tag
  // (the model closed the block) -- at most in_block tokens.
  static int EndTagMatch(const ThinkingBudget& t, const std::vector<int32_t>& tokens,
                         int in_block) {
    const std::vector<int32_t>& end = t.end_token_ids;
    const int n = static_cast<int>(tokens.size());
    for (int k = std::min<int>(static_cast<int>(end.size()), in_block); k > 0; --k) {
      if (std::equal(end.begin(), end.begin() + k, tokens.begin() + (n - k))) return k;
    }
    return 0;
  }
  // Advances by the token just appended to `tokens`.
  void Advance(const ThinkingBudget& t, const std::vector<int32_t>& tokens) {
    const int32_t tok = tokens.back();
    switch (phase) {
      case Phase::kOff:
        return;
      case Phase::kOpening:
        if (tok != t.start_token_ids[matched]) {
          phase = Phase::kOff;  // not a think block: all content
        } else if (++matched == static_cast<int>(t.start_token_ids.size())) {
          EnterBlock(t);
        }
        return;
      case Phase::kInside: {
        ++in_block;
        const int tag = EndTagMatch(t, tokens, in_block);
        if (tag == static_cast<int>(t.end_token_ids.size())) {
          reasoning = in_block - tag;  // the model closed the block itself
          phase = Phase::kOff;
        } else if (in_block >= t.budget) {
          reasoning = in_block;  // a partial end tag left here is reasoning text
          StartForcing(t);
        } else {
          reasoning = in_block - tag;  // a partial end tag is not counted (yet)
        }
        return;
      }
      case Phase::kForcing:
        forced = ForcedAt(t, ++matched);
        if (forced < 0) phase = Phase::kOff;
        return;
    }
  }
};

}  // namespace

struct EngineCore::RequestState {
  struct Sample {
    std::unique_ptr<Sequence> seq;  // null for samples 1..n-1 until the leader forks
    std::unique_ptr<TextDecoder> decoder;
    std::unique_ptr<StopStringMatcher> stop;
    // Structured output: this sample's parse state (the leader's is copied at the fork; kept
    // across preemption, since it depends on the tokens only).
    std::optional<structured::GrammarMatcher> matcher;
    // Thinking budget (SamplingParams::thinking): where the sample is in its think block. Depends
    // on the tokens only, so it is kept across preemption; every sample starts the same (the
    // samples of an unforked request share its first row).
    ThinkState think;
    bool finished = false;
    SampleDelta delta;
    bool dirty = false;

    // Releases what the decoder and then the stop-string matcher hold back (in that order: the
    // matcher must see the decoder's tail before it flushes).
    void FlushText() {
      if (!decoder) return;
      delta.text += stop->Append(decoder->Flush()).text;
      delta.text += stop->Flush();
    }
  };
  Request req;
  std::shared_ptr<OutputStream> stream;
  uint64_t seed = 0;
  bool forked = false;  // samples 1..n-1 exist (true from the start when n == 1)
  std::vector<Sample> samples;
  int num_finished = 0;
  bool admitted = false;
  bool dirty = false;
  absl::Time first_scheduled, first_token, last_token;
  bool has_token = false;
  Usage usage;
  absl::Status error;  // sent on the final message
};

absl::StatusOr<std::unique_ptr<EngineCore>> EngineCore::Create(runtime::ModelRunner* runner,
                                                               const EngineOptions& options) {
  if (runner == nullptr) return absl::InvalidArgumentError("runner must not be null");
  RETURN_IF_ERROR(ValidateSchedulerConfig(options.scheduler));
  const int64_t blocks = runner->num_kv_blocks();
  if (blocks < 1 || blocks > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("runner has ", blocks, " KV blocks"));
  }
  if (runner->config().vocab_size < 1) {
    return absl::InvalidArgumentError("model config has no vocab_size");
  }
  return std::unique_ptr<EngineCore>(new EngineCore(runner, options, static_cast<int>(blocks)));
}

namespace {

std::unique_ptr<kernels::cpu::ThreadPool> MakeSamplingPool(int threads) {
  if (threads <= 0) threads = kernels::cpu::AvailableCpus();
  if (threads <= 1) return nullptr;
  return std::make_unique<kernels::cpu::ThreadPool>(threads);
}

// Steps with fewer logits than this sample on the engine thread: waking the pool (whose workers
// then spin briefly, next to the runner's threads) costs more than it saves.
constexpr int64_t kMinParallelSampleLogits = int64_t{1} << 20;

}  // namespace

EngineCore::EngineCore(runtime::ModelRunner* runner, const EngineOptions& options, int num_blocks)
    : runner_(runner),
      options_(options),
      vocab_size_(runner->config().vocab_size),
      max_model_len_(options.max_model_len > 0 ? options.max_model_len
                                               : runner->config().max_position_embeddings),
      eos_token_ids_(runner->config().eos_token_ids),
      blocks_(num_blocks, options.scheduler.enable_prefix_caching),
      scheduler_(options.scheduler, &blocks_),
      sampler_(static_cast<int>(runner->config().vocab_size)),
      sampling_pool_(MakeSamplingPool(options.sampling_threads)),
      seed_base_(options.seed != 0
                     ? options.seed
                     : (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}()),
      bitmask_words_(static_cast<int>((runner->config().vocab_size + 31) / 32)) {
  counters_.kv_blocks_total = num_blocks;
}

EngineCore::~EngineCore() { AbortAll(FinishReason::kAbort); }

absl::Status EngineCore::ValidateRequest(const Request& r) const {
  if (r.id.empty()) return absl::InvalidArgumentError("request id must be non-empty");
  if (r.prompt_token_ids.empty()) return absl::InvalidArgumentError("prompt must be non-empty");
  for (size_t i = 0; i < r.prompt_token_ids.size(); ++i) {
    const int32_t t = r.prompt_token_ids[i];
    if (t < 0 || t >= vocab_size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token ", i, " must be in [0, ", vocab_size_, "), got ", t));
    }
  }
  RETURN_IF_ERROR(
      ValidateSamplingParams(r.sampling, vocab_size_, options_.text_decoder != nullptr));
  if (r.sampling.n > options_.scheduler.max_num_seqs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "n must be <= max_num_seqs (", options_.scheduler.max_num_seqs, "), got ", r.sampling.n));
  }
  const int64_t prompt = static_cast<int64_t>(r.prompt_token_ids.size());
  const int64_t total = prompt + r.sampling.max_tokens;
  if (max_model_len_ > 0 && total > max_model_len_) {
    return absl::InvalidArgumentError(absl::StrCat("prompt (", prompt, " tokens) + max_tokens (",
                                                   r.sampling.max_tokens, ") = ", total,
                                                   " exceeds max_model_len ", max_model_len_));
  }
  const int64_t need = (total + kernels::kKvBlockSize - 1) / kernels::kKvBlockSize;
  if (need > blocks_.num_blocks()) {
    return absl::InvalidArgumentError(
        absl::StrCat("request needs ", need, " KV blocks (prompt ", prompt, " + max_tokens ",
                     r.sampling.max_tokens, " tokens, ", kernels::kKvBlockSize,
                     " tokens per block) but the KV pool has ", blocks_.num_blocks(),
                     " blocks even when empty"));
  }
  int32_t prev_end = 0;
  for (const ContentSpan& c : r.content) {
    if (c.num_tokens < 1 || c.offset < prev_end || c.offset + c.num_tokens > prompt) {
      return absl::InvalidArgumentError(absl::StrCat(
          "content span [", c.offset, ", ", c.offset + c.num_tokens,
          ") must be non-empty, sorted, non-overlapping and inside the prompt (", prompt, ")"));
    }
    if (c.embeddings && c.embeddings->size() % c.num_tokens != 0) {
      return absl::InvalidArgumentError("content embeddings size must be num_tokens * hidden_size");
    }
    prev_end = c.offset + c.num_tokens;
  }
  // A deadline already past -- even before arrival_time, e.g. a client deadline that ran out while
  // the server was building the request -- is not an invalid request: it is expired at the next
  // step (finish reason `deadline`) like any other.
  return absl::OkStatus();
}

absl::Status EngineCore::AddRequest(Request request, std::shared_ptr<OutputStream> stream) {
  RETURN_IF_ERROR(ValidateRequest(request));
  if (requests_.contains(request.id)) {
    return absl::AlreadyExistsError(absl::StrCat("request id '", request.id, "' is already live"));
  }
  if (num_queued_ >= options_.scheduler.max_waiting) {
    return absl::ResourceExhaustedError(absl::StrCat("waiting queue is full (", num_queued_,
                                                     " requests, max_waiting ",
                                                     options_.scheduler.max_waiting, ")"));
  }
  if (request.arrival_time == absl::InfinitePast()) request.arrival_time = absl::Now();
  auto rs = std::make_unique<RequestState>();
  rs->req = std::move(request);
  rs->stream = std::move(stream);
  const SamplingParams& p = rs->req.sampling;
  rs->seed = p.seed ? *p.seed : seed_base_ ^ (0x9E3779B97F4A7C15ull * (next_seq_id_ + 1));
  rs->forked = p.n == 1;
  rs->samples.resize(p.n);
  for (int i = 0; i < p.n; ++i) {
    auto& s = rs->samples[i];
    s.delta.index = i;
    if (options_.text_decoder) {
      s.decoder = options_.text_decoder->Create(rs->req.prompt_token_ids);
      s.stop = std::make_unique<StopStringMatcher>(p.stop);
    }
    if (p.thinking) s.think = ThinkState::Begin(*p.thinking);
  }
  if (p.grammar) rs->samples[0].matcher.emplace(p.grammar);
  auto seq = std::make_unique<Sequence>();
  seq->id = next_seq_id_++;
  seq->owner = rs.get();
  seq->tokens = rs->req.prompt_token_ids;
  seq->num_prompt_tokens = static_cast<int>(seq->tokens.size());
  seq->content = &rs->req.content;
  seq->priority_key = PriorityKey(rs->req.priority, rs->req.arrival_time, options_.scheduler.aging);
  seq->seats = p.n;
  rs->usage.prompt_tokens = seq->num_prompt_tokens;
  scheduler_.AddWaiting(seq.get());
  rs->samples[0].seq = std::move(seq);
  ++num_queued_;
  MUSE_LOG_REQ(debug, rs->req.id, "queued: {} prompt tokens, n={}, max_tokens={}",
               rs->usage.prompt_tokens, p.n, p.max_tokens);
  const std::string id = rs->req.id;
  requests_.emplace(id, std::move(rs));
  return absl::OkStatus();
}

void EngineCore::FinishSample(RequestState* rs, int sample, FinishReason reason,
                              std::string stop_reason) {
  auto& s = rs->samples[sample];
  if (s.finished) return;
  s.finished = true;
  ++rs->num_finished;
  if (s.seq) scheduler_.Remove(s.seq.get());
  // No stop string cut the text: release what the decoder and the matcher held back.
  if (reason != FinishReason::kStop) s.FlushText();
  s.delta.finish_reason = reason;
  s.delta.stop_reason = std::move(stop_reason);
  s.dirty = true;
  if (!rs->dirty) dirty_.push_back(rs);
  rs->dirty = true;
}

void EngineCore::FailSample(RequestState* rs, int sample, const absl::Status& error) {
  MUSE_LOG_REQ(warn, rs->req.id, "sample {} failed: {}", sample, error.ToString());
  if (rs->error.ok()) {
    rs->error = error;
    ++counters_.requests_failed;
  }
  FinishSample(rs, sample, FinishReason::kError, "");
}

void EngineCore::FinishRequest(RequestState* rs, FinishReason reason, const absl::Status& error) {
  if (!rs->admitted) {
    rs->admitted = true;  // leaves the queued count
    --num_queued_;
  }
  if (!error.ok()) {
    MUSE_LOG_REQ(warn, rs->req.id, "failed: {}", error.ToString());
    rs->error = error;
  }
  for (int i = 0; i < static_cast<int>(rs->samples.size()); ++i) FinishSample(rs, i, reason, "");
}

bool EngineCore::Abort(const std::string& id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return false;
  ++counters_.requests_aborted;
  FinishRequest(it->second.get(), FinishReason::kAbort, absl::OkStatus());
  FlushOutputs(absl::Now());
  return true;
}

void EngineCore::AbortAll(FinishReason reason, const absl::Status& error) {
  std::vector<RequestState*> all;
  for (auto& [id, rs] : requests_) all.push_back(rs.get());
  if (!error.ok()) counters_.requests_failed += static_cast<int64_t>(all.size());
  for (RequestState* rs : all) FinishRequest(rs, reason, error);
  FlushOutputs(absl::Now());
}

void EngineCore::ExpireDeadlines(absl::Time now) {
  std::vector<RequestState*> expired;
  for (auto& [id, rs] : requests_) {
    if (rs->req.deadline && now >= *rs->req.deadline) expired.push_back(rs.get());
  }
  for (RequestState* rs : expired) {
    ++counters_.requests_deadline;
    MUSE_LOG_REQ(info, rs->req.id, "deadline reached");
    FinishRequest(rs, FinishReason::kDeadline, absl::OkStatus());
  }
}

std::optional<absl::Time> EngineCore::NextDeadline() const {
  std::optional<absl::Time> next;
  for (const auto& [id, rs] : requests_) {
    if (rs->req.deadline && (!next || *rs->req.deadline < *next)) next = rs->req.deadline;
  }
  return next;
}

void EngineCore::PublishFullBlocks(Sequence* seq) {
  if (!blocks_.prefix_caching()) return;
  const int full = seq->num_computed_tokens / kernels::kKvBlockSize;
  if (full <= seq->num_cached_blocks) return;
  static const std::vector<ContentSpan> kNone;
  const auto& content = seq->content ? *seq->content : kNone;
  ExtendBlockHashes(seq->tokens, content, &seq->block_hashes);
  for (int b = seq->num_cached_blocks; b < full; ++b) {
    const uint64_t parent = b == 0 ? 0 : seq->block_hashes[b - 1];
    blocks_.Cache(seq->block_table[b], MakeBlockKey(seq->tokens, b, parent, content),
                  seq->block_hashes[b]);
  }
  seq->num_cached_blocks = full;
}

SamplingRow EngineCore::MakeRow(const RequestState& rs, const Sequence& seq,
                                const float* logits) const {
  return SamplingRow{logits,  &rs.req.sampling, &seq.tokens,    seq.num_prompt_tokens,
                     rs.seed, seq.sample_index, &eos_token_ids_};
}

void EngineCore::Fork(RequestState* rs, const float* logits, const uint32_t* allowed_bitmask,
                      absl::Time now) {
  Sequence* leader = rs->samples[0].seq.get();
  const int n = static_cast<int>(rs->samples.size());
  std::vector<SampleResult> results(n);
  for (int i = 0; i < n; ++i) {
    SamplingRow row = MakeRow(*rs, *leader, logits);
    row.sample_index = i;
    row.allowed_bitmask = allowed_bitmask;
    results[i] = sampler_.Sample(row);
  }
  ForkWith(rs, results, now);
}

void EngineCore::ForkWith(RequestState* rs, const std::vector<SampleResult>& results,
                          absl::Time now) {
  Sequence* leader = rs->samples[0].seq.get();
  const int n = static_cast<int>(rs->samples.size());
  // Samples share the prompt's full blocks; each recomputes the partial tail into its own block
  // (the runner has no block copy, so copy-on-write is done by recompute: < kernels::kKvBlockSize
  // tokens).
  const int shared = leader->num_prompt_tokens / kernels::kKvBlockSize;
  for (int i = 1; i < n; ++i) {
    auto seq = std::make_unique<Sequence>();
    seq->id = next_seq_id_++;
    seq->sample_index = i;
    seq->owner = rs;
    seq->tokens = leader->tokens;
    seq->num_prompt_tokens = leader->num_prompt_tokens;
    seq->content = leader->content;
    seq->priority_key = leader->priority_key;
    for (int b = 0; b < shared; ++b) {
      blocks_.Acquire(leader->block_table[b]);
      seq->block_table.push_back(leader->block_table[b]);
    }
    seq->num_computed_tokens = shared * kernels::kKvBlockSize;
    seq->block_hashes.assign(
        leader->block_hashes.begin(),
        leader->block_hashes.begin() + std::min<size_t>(shared, leader->block_hashes.size()));
    seq->num_cached_blocks = std::min(shared, leader->num_cached_blocks);
    scheduler_.AddRunning(seq.get());
    rs->samples[i].seq = std::move(seq);
    if (rs->samples[0].matcher) rs->samples[i].matcher = rs->samples[0].matcher;
  }
  leader->seats = 1;
  rs->forked = true;
  for (int i = 0; i < n; ++i) AppendToken(rs, i, results[i], now);
}

void EngineCore::AddSamplingRow(const RequestState& rs, const Sequence& seq, int sample_index) {
  const SamplingParams& p = rs.req.sampling;
  models::SamplingInputs& in = sampling_inputs_;
  const int generated = seq.num_generated();
  models::SamplingRowParams d;
  d.temperature = p.temperature;
  d.top_k = p.top_k;
  d.top_p = p.top_p;
  d.min_p = p.min_p;
  d.repetition_penalty = p.repetition_penalty;
  d.presence_penalty = p.presence_penalty;
  d.frequency_penalty = p.frequency_penalty;
  d.logprobs = p.logprobs;
  d.seed = rs.seed;
  d.sample_index = sample_index;
  d.generated = generated;
  in.rows.push_back(d);
  // The host sampler's lists (sampler.cc), ids outside the vocabulary left out as it ignores them.
  const auto in_vocab = [&](int64_t t) { return t >= 0 && t < vocab_size_; };
  // With a grammar, min_tokens is folded into the row's bitmask instead (token_masks.h); a
  // thinking budget's forced token wins over it (as on the host, which skips min_tokens when the
  // row has a bitmask).
  const bool forcing =
      rs.samples[rs.forked ? seq.sample_index : 0].think.phase == ThinkState::Phase::kForcing;
  if (generated < p.min_tokens && !p.grammar && !forcing) {
    if (!p.ignore_eos) {
      for (int64_t e : eos_token_ids_)
        if (in_vocab(e)) in.masked_ids.push_back(static_cast<int32_t>(e));
    }
    for (int32_t t : p.stop_token_ids)
      if (in_vocab(t)) in.masked_ids.push_back(t);
  }
  in.masked_offsets.push_back(static_cast<int32_t>(in.masked_ids.size()));
  for (const auto& [t, bias] : p.logit_bias) {
    if (!in_vocab(t)) continue;
    in.bias_ids.push_back(t);
    in.bias_values.push_back(bias);
  }
  in.bias_offsets.push_back(static_cast<int32_t>(in.bias_ids.size()));
  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    // Distinct ids of prompt + generated in first-occurrence order, with generated counts.
    const size_t first = in.penalty_ids.size();
    for (size_t i = 0; i < seq.tokens.size(); ++i) {
      const int32_t t = seq.tokens[i];
      if (!in_vocab(t)) continue;
      int32_t& slot = penalty_slot_[t];
      if (slot < 0) {
        slot = static_cast<int32_t>(in.penalty_ids.size());
        in.penalty_ids.push_back(t);
        in.penalty_counts.push_back(0);
      }
      if (static_cast<int>(i) >= seq.num_prompt_tokens) ++in.penalty_counts[slot];
    }
    for (size_t k = first; k < in.penalty_ids.size(); ++k) penalty_slot_[in.penalty_ids[k]] = -1;
  }
  in.penalty_offsets.push_back(static_cast<int32_t>(in.penalty_ids.size()));
}

void EngineCore::BuildSamplingInputs(const SchedulerOutput& plan) {
  if (penalty_slot_.empty()) penalty_slot_.assign(vocab_size_, -1);
  models::SamplingInputs& in = sampling_inputs_;
  in.Clear();
  in.masked_offsets.push_back(0);
  in.bias_offsets.push_back(0);
  in.penalty_offsets.push_back(0);
  row_indices_.swap(batch_.logits_indices);
  batch_.logits_indices.clear();
  for (size_t r = 0; r < logits_seq_.size(); ++r) {
    const Sequence* seq = plan.scheduled[logits_seq_[r]].seq;
    const auto* rs = static_cast<const RequestState*>(seq->owner);
    if (rs->forked) {
      batch_.logits_indices.push_back(row_indices_[r]);
      AddSamplingRow(*rs, *seq, seq->sample_index);
    } else {
      // The first tokens of all n samples are drawn from the prompt's logits row.
      for (int i = 0; i < static_cast<int>(rs->samples.size()); ++i) {
        batch_.logits_indices.push_back(row_indices_[r]);
        AddSamplingRow(*rs, *seq, i);
      }
    }
  }
}

SampleResult EngineCore::SampledResult(int row, int logprobs) const {
  SampleResult res;
  res.token_id = sampled_.ids[row];
  if (logprobs >= 0) {
    res.logprobs.logprob = sampled_.logprobs[row];
    const int k = static_cast<int>(std::min<int64_t>(logprobs, vocab_size_));
    const size_t base = static_cast<size_t>(row) * models::SampledTokens::kMaxTopLogprobs;
    for (int j = 0; j < k; ++j) {
      res.logprobs.top.push_back({sampled_.top_ids[base + j], sampled_.top_logprobs[base + j]});
    }
  }
  return res;
}

void EngineCore::AppendToken(RequestState* rs, int sample, const SampleResult& result,
                             absl::Time now) {
  auto& s = rs->samples[sample];
  Sequence* seq = s.seq.get();
  const SamplingParams& p = rs->req.sampling;
  const int32_t tok = result.token_id;
  // The mask allowed only tokens the matcher accepts; a refusal means the logits gave a
  // disallowed token the best place anyway (NaN / -inf rows), and it is not emitted.
  if (s.matcher && !s.matcher->AcceptToken(tok)) {
    FailSample(rs, sample,
               absl::InternalError(absl::StrCat("structured output: sampled token ", tok,
                                                " is outside the grammar's mask")));
    return;
  }
  // Likewise a thinking budget's forced token: the mask allowed only it.
  if (s.think.phase == ThinkState::Phase::kForcing && tok != s.think.forced) {
    FailSample(
        rs, sample,
        absl::InternalError(absl::StrCat("thinking budget: sampled token ", tok,
                                         " instead of the forced end token ", s.think.forced)));
    return;
  }
  seq->tokens.push_back(tok);
  // The token's text is part of the think block (tags included) and skips the stop strings.
  bool block_text = false;
  if (p.thinking) {
    const int before = s.think.reasoning;
    const ThinkState::Phase was = s.think.phase;
    s.think.Advance(*p.thinking, seq->tokens);
    rs->usage.reasoning_tokens += s.think.reasoning - before;
    // An output that turns out not to open a block is content from this token on.
    block_text = p.thinking->stops_after_block && was != ThinkState::Phase::kOff &&
                 !(was == ThinkState::Phase::kOpening && s.think.phase == ThinkState::Phase::kOff);
  }
  s.delta.token_ids.push_back(tok);
  if (p.logprobs >= 0) s.delta.logprobs.push_back(result.logprobs);
  s.dirty = true;
  if (!rs->dirty) dirty_.push_back(rs);
  rs->dirty = true;
  ++rs->usage.completion_tokens;
  ++counters_.num_generated_tokens;
  if (!rs->has_token) rs->first_token = now;
  rs->has_token = true;
  rs->last_token = now;

  const int generated = seq->num_generated();
  const bool may_stop = generated >= p.min_tokens;
  const bool is_eos =
      std::find(eos_token_ids_.begin(), eos_token_ids_.end(), tok) != eos_token_ids_.end();
  const bool is_stop_token =
      std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), tok) != p.stop_token_ids.end() ||
      (!p.ignore_eos && is_eos);
  // A complete grammar (EOS accepted, or nothing but EOS can follow) ends the sample now, whatever
  // min_tokens or ignore_eos say: the grammar wins where they conflict.
  const bool grammar_done = s.matcher && s.matcher->IsTerminated();
  if ((may_stop && is_stop_token) || (grammar_done && (is_stop_token || is_eos))) {
    s.FlushText();
    FinishSample(rs, sample, FinishReason::kStop, absl::StrCat("token:", tok));
    return;
  }
  if (s.decoder) {
    std::string piece = s.decoder->Decode(tok);
    if (may_stop && !block_text) {
      auto r = s.stop->Append(piece);
      s.delta.text += r.text;
      if (r.stopped) {
        FinishSample(rs, sample, FinishReason::kStop, r.matched);
        return;
      }
    } else {
      s.delta.text += piece;  // stop strings count from min_tokens on, after a think block
    }
  }
  if (grammar_done) {
    s.FlushText();
    FinishSample(rs, sample, FinishReason::kStop, "");
    return;
  }
  if (generated >= p.max_tokens) FinishSample(rs, sample, FinishReason::kLength, "");
}

void EngineCore::StartTokenMasks(const SchedulerOutput& plan, bool on_device) {
  mask_jobs_.clear();
  row_mask_job_.assign(logits_seq_.size(), -1);
  const int W = bitmask_words_;
  // Device rows: a forked row is one, an unforked request's row is n (one per sample).
  std::vector<int> device_row(logits_seq_.size());
  int rows = 0;
  for (size_t r = 0; r < logits_seq_.size(); ++r) {
    const Sequence* seq = plan.scheduled[logits_seq_[r]].seq;
    const auto* rs = static_cast<const RequestState*>(seq->owner);
    device_row[r] = rows;
    rows += rs->forked ? 1 : static_cast<int>(rs->samples.size());
    const auto& sample = rs->samples[rs->forked ? seq->sample_index : 0];
    const bool forcing = sample.think.phase == ThinkState::Phase::kForcing;
    if (!sample.matcher && !forcing) continue;
    row_mask_job_[r] = static_cast<int>(mask_jobs_.size());
    TokenMaskJob job;
    if (forcing) {
      job.forced_token = sample.think.forced;
    } else {
      job.matcher = &*sample.matcher;
    }
    job.num_words = W;
    job.copies = on_device && !rs->forked ? static_cast<int>(rs->samples.size()) : 1;
    job.params = &rs->req.sampling;
    job.eos_token_ids = &eos_token_ids_;
    job.generated = seq->num_generated();
    mask_jobs_.push_back(job);
  }
  if (mask_jobs_.empty()) return;
  // The buffers are sized before any job starts, so the word pointers stay valid.
  if (on_device) {
    std::vector<uint32_t>& words = sampling_inputs_.allowed_bitmask;
    words.resize(static_cast<size_t>(rows) * W);
    for (size_t r = 0; r < logits_seq_.size(); ++r) {
      const Sequence* seq = plan.scheduled[logits_seq_[r]].seq;
      const auto* rs = static_cast<const RequestState*>(seq->owner);
      uint32_t* at = words.data() + static_cast<size_t>(device_row[r]) * W;
      if (row_mask_job_[r] >= 0) {
        mask_jobs_[row_mask_job_[r]].words = at;
      } else {  // unconstrained: every token allowed
        const int n = rs->forked ? 1 : static_cast<int>(rs->samples.size());
        std::fill(at, at + static_cast<size_t>(n) * W, ~uint32_t{0});
      }
    }
  } else {
    host_masks_.resize(mask_jobs_.size() * W);
    for (size_t j = 0; j < mask_jobs_.size(); ++j) mask_jobs_[j].words = host_masks_.data() + j * W;
  }
  if (!mask_worker_) mask_worker_ = std::make_unique<TokenMaskWorker>(sampling_pool_.get());
  mask_worker_->Start(mask_jobs_);
  masks_pending_ = true;
  if (on_device) sampling_inputs_.await_bitmask = [this] { WaitTokenMasks(); };
}

void EngineCore::WaitTokenMasks() {
  if (!masks_pending_) return;
  const absl::Time start = absl::Now();
  mask_worker_->Wait();
  masks_pending_ = false;
  counters_.sum_token_mask_wait += absl::Now() - start;
  counters_.sum_token_mask_compute += mask_worker_->last_batch_time();
  counters_.num_token_masks += static_cast<int64_t>(mask_jobs_.size());
}

const uint32_t* EngineCore::HostMask(int r) const {
  const int j = row_mask_job_[r];
  return j < 0 ? nullptr : mask_jobs_[j].words;
}

bool EngineCore::DeadEnd(int r) const {
  const int j = row_mask_job_[r];
  return j >= 0 && (mask_jobs_[j].empty || !mask_jobs_[j].error.empty());
}

bool EngineCore::FailDeadEnd(int r, RequestState* rs, Sequence* seq) {
  if (!DeadEnd(r)) return false;
  const TokenMaskJob& job = mask_jobs_[row_mask_job_[r]];
  absl::Status st;
  if (job.forced_token >= 0) {  // validated ids are in the vocabulary: cannot happen
    st = absl::InternalError(
        absl::StrCat("thinking budget: forced token ", job.forced_token, " has no mask bit"));
  } else if (!job.error.empty()) {
    st = absl::InternalError(
        absl::StrCat("structured output: computing the token mask failed: ", job.error));
  } else {
    // The output so far as the grammar saw it (its last bytes), to say where it got stuck.
    const structured::TokenVocabulary& vocab = rs->req.sampling.grammar->vocab();
    std::string text;
    for (size_t i = seq->num_prompt_tokens; i < seq->tokens.size(); ++i) {
      text += vocab.bytes(seq->tokens[i]);
    }
    constexpr size_t kShown = 64;
    const bool cut = text.size() > kShown;
    if (cut) text = text.substr(text.size() - kShown);
    st = absl::InvalidArgumentError(absl::StrCat(
        "structured output: no token of the vocabulary can continue the grammar after ",
        seq->num_generated(), " generated tokens (output so far", cut ? ", last bytes" : "", ": \"",
        absl::CHexEscape(text), "\")"));
  }
  if (!rs->forked) {
    ++counters_.requests_failed;
    FinishRequest(rs, FinishReason::kError, st);
  } else {
    FailSample(rs, seq->sample_index, st);
  }
  return true;
}

void EngineCore::FlushOutputs(absl::Time now) {
  for (RequestState* rs : dirty_) {
    rs->dirty = false;
    RequestOutput out;
    out.request_id = rs->req.id;
    for (auto& s : rs->samples) {
      if (!s.dirty) continue;
      s.dirty = false;
      s.delta.reasoning_tokens = s.think.reasoning;
      out.samples.push_back(std::move(s.delta));
      s.delta = SampleDelta{};
      s.delta.index = out.samples.back().index;
    }
    out.usage = rs->usage;
    out.finished = rs->num_finished == static_cast<int>(rs->samples.size());
    if (out.finished) {
      const absl::Time arrival = rs->req.arrival_time;
      Timings& t = out.timings;
      t.e2e = now - arrival;
      if (rs->admitted && rs->first_scheduled != absl::Time())
        t.queue = rs->first_scheduled - arrival;
      if (rs->has_token) {
        t.ttft = rs->first_token - arrival;
        const int64_t per_sample =
            rs->usage.completion_tokens / static_cast<int64_t>(rs->samples.size());
        if (per_sample > 1) t.tpot = (rs->last_token - rs->first_token) / (per_sample - 1);
        counters_.sum_queue += t.queue;
        counters_.sum_ttft += t.ttft;
        counters_.sum_tpot += t.tpot;
        ++counters_.num_timed;
      }
      ++counters_.requests_finished;
      MUSE_LOG_REQ(debug, rs->req.id, "finished: {} completion tokens, ttft {}",
                   rs->usage.completion_tokens, absl::FormatDuration(t.ttft));
    }
    const bool finished = out.finished;
    if (finished) out.error = rs->error;
    rs->stream->Push(std::move(out));
    if (finished) {
      finished_ids_.push_back(rs->req.id);
      requests_.erase(rs->req.id);  // destroys rs and its sequences (all already removed)
    }
  }
  dirty_.clear();
}

absl::Status EngineCore::Step() {
  const absl::Time start = absl::Now();
  ExpireDeadlines(start);
  SchedulerOutput plan = scheduler_.Schedule();
  for (Sequence* seq : plan.admitted) {
    auto* rs = static_cast<RequestState*>(seq->owner);
    if (rs->admitted) continue;
    rs->admitted = true;
    --num_queued_;
    rs->first_scheduled = start;
    rs->usage.cached_tokens = seq->num_computed_tokens;
  }
  for (Sequence* seq : plan.preempted) {
    MUSE_LOG_REQ(debug, static_cast<RequestState*>(seq->owner)->req.id,
                 "sample {} preempted (recompute {} tokens)", seq->sample_index,
                 seq->tokens.size());
  }
  if (!plan.scheduled.empty()) {
    BuildBatch(plan.scheduled, &batch_, &logits_seq_);
    // Device sampling: the runner samples its logits where they are and returns only the tokens
    // (and requested logprobs); otherwise the logits come here for the host sampler.
    const bool on_device = runner_->SamplesOnDevice();
    absl::Status st;
    if (on_device) BuildSamplingInputs(plan);
    // Structured output: the masks are computed while the forward pass runs (a device runner
    // waits for them through sampling_inputs_.await_bitmask before it samples).
    StartTokenMasks(plan, on_device);
    // The runner is the one foreign component in the step (ATen, CUDA): whatever it throws stays
    // inside this step, as an error of this step's requests.
    try {
      st = on_device ? runner_->ForwardAndSample(batch_, sampling_inputs_, &sampled_)
                     : runner_->Forward(batch_, &logits_);
    } catch (const std::exception& e) {
      st = absl::InternalError(absl::StrCat("runner threw: ", e.what()));
    } catch (...) {
      st = absl::InternalError("runner threw a non-standard exception");
    }
    WaitTokenMasks();
    if (st.ok() && on_device) {
      const size_t rows = sampling_inputs_.rows.size();
      const size_t tops = rows * models::SampledTokens::kMaxTopLogprobs;
      if (sampled_.num_rows != static_cast<int>(rows) || sampled_.ids.size() != rows ||
          sampled_.logprobs.size() != rows || sampled_.top_ids.size() != tops ||
          sampled_.top_logprobs.size() != tops) {
        st = absl::InternalError(
            absl::StrCat("runner returned ", sampled_.num_rows, " sampled rows, expected ", rows));
      }
    } else if (st.ok() && logits_.num_rows != static_cast<int>(logits_seq_.size())) {
      st = absl::InternalError(absl::StrCat("runner returned ", logits_.num_rows,
                                            " logits rows, expected ", logits_seq_.size()));
    }
    if (!st.ok()) {
      // The batch's KV is suspect: fail its requests, keep serving the others. Whatever the
      // runner's code, it is the server's fault, not the client's: INTERNAL, naming the step --
      // or UNAVAILABLE when the runner is lost for good (Health(); the engine then fails the rest).
      const absl::Status health = runner_->Health();
      st =
          absl::Status(health.ok() ? absl::StatusCode::kInternal : absl::StatusCode::kUnavailable,
                       absl::StrCat("model step ", counters_.num_steps, " failed (",
                                    plan.scheduled.size(), " sequences, ", plan.num_batched_tokens,
                                    " tokens): ", health.ok() ? st.ToString() : health.ToString()));
      spdlog::error("{}", std::string(st.message()));
      std::vector<RequestState*> failed;
      for (const auto& s : plan.scheduled) {
        auto* rs = static_cast<RequestState*>(s.seq->owner);
        if (std::find(failed.begin(), failed.end(), rs) == failed.end()) failed.push_back(rs);
      }
      for (RequestState* rs : failed) {
        ++counters_.requests_failed;
        FinishRequest(rs, FinishReason::kError, st);
      }
    } else if (on_device) {
      for (const auto& s : plan.scheduled) {
        s.seq->num_computed_tokens += s.num_new_tokens;
        PublishFullBlocks(s.seq);
      }
      // The tokens in row order, as below; an unforked request's n rows fork it.
      const absl::Time now = absl::Now();
      int row = 0;
      for (size_t r = 0; r < logits_seq_.size(); ++r) {
        Sequence* seq = plan.scheduled[logits_seq_[r]].seq;
        auto* rs = static_cast<RequestState*>(seq->owner);
        const int logprobs = rs->req.sampling.logprobs;
        if (FailDeadEnd(static_cast<int>(r), rs, seq)) {
          row += rs->forked ? 1 : static_cast<int>(rs->samples.size());
          continue;
        }
        if (!rs->forked) {
          std::vector<SampleResult> results;
          for (size_t i = 0; i < rs->samples.size(); ++i) {
            results.push_back(SampledResult(row++, logprobs));
          }
          ForkWith(rs, results, now);
        } else {
          AppendToken(rs, seq->sample_index, SampledResult(row++, logprobs), now);
        }
      }
    } else {
      for (const auto& s : plan.scheduled) {
        s.seq->num_computed_tokens += s.num_new_tokens;
        PublishFullBlocks(s.seq);
      }
      // Sample every row of a forked request at once (over the sampling pool when the step is
      // large), then apply the tokens in row order; a request's first token forks it instead.
      sample_rows_.clear();
      for (size_t r = 0; r < logits_seq_.size(); ++r) {
        Sequence* seq = plan.scheduled[logits_seq_[r]].seq;
        const auto* rs = static_cast<const RequestState*>(seq->owner);
        if (rs->forked && !DeadEnd(static_cast<int>(r))) {
          sample_rows_.push_back(MakeRow(*rs, *seq, logits_.row(static_cast<int>(r))));
          sample_rows_.back().allowed_bitmask = HostMask(static_cast<int>(r));
        }
      }
      sample_results_.resize(sample_rows_.size());
      const bool parallel =
          sample_rows_.size() > 1 &&
          static_cast<int64_t>(sample_rows_.size()) * vocab_size_ >= kMinParallelSampleLogits;
      sampler_.SampleBatch(sample_rows_, sample_results_,
                           parallel ? sampling_pool_.get() : nullptr);
      const absl::Time now = absl::Now();
      size_t next_result = 0;
      for (size_t r = 0; r < logits_seq_.size(); ++r) {
        Sequence* seq = plan.scheduled[logits_seq_[r]].seq;
        auto* rs = static_cast<RequestState*>(seq->owner);
        if (FailDeadEnd(static_cast<int>(r), rs, seq)) continue;  // its row was not sampled
        if (!rs->forked) {
          Fork(rs, logits_.row(static_cast<int>(r)), HostMask(static_cast<int>(r)), now);
        } else {
          AppendToken(rs, seq->sample_index, sample_results_[next_result++], now);
        }
      }
    }
    ++counters_.num_steps;
    counters_.num_batched_tokens += plan.num_batched_tokens;
  }
  FlushOutputs(absl::Now());
  counters_.last_step = absl::Now() - start;
  if (!plan.scheduled.empty()) {
    counters_.sum_step += counters_.last_step;
    const double seconds = absl::ToDoubleSeconds(counters_.last_step);
    size_t b = 0;
    while (b < kStepSecondsBounds.size() && seconds > kStepSecondsBounds[b]) ++b;
    ++counters_.step_buckets[b];
  }
  return absl::OkStatus();
}

EngineStats EngineCore::Stats() const {
  EngineStats s = counters_;
  s.num_requests = static_cast<int64_t>(requests_.size());
  s.num_queued_requests = num_queued_;
  s.num_running_seqs = scheduler_.num_running();
  s.num_waiting_seqs = scheduler_.num_waiting();
  s.kv_blocks_total = blocks_.num_blocks();
  s.kv_blocks_used = blocks_.num_used_blocks();
  s.kv_blocks_cached = blocks_.num_cached_blocks();
  s.kv_usage = blocks_.usage();
  s.prefix_cache_query_tokens = scheduler_.counters().prefix_query_tokens;
  s.prefix_cache_hit_tokens = scheduler_.counters().prefix_hit_tokens;
  s.num_preemptions = scheduler_.counters().num_preemptions;
  return s;
}

absl::Status EngineCore::CheckInvariants() const {
  std::vector<const std::vector<int32_t>*> tables;
  for (const auto& [id, rs] : requests_) {
    for (const auto& s : rs->samples) {
      if (!s.seq) continue;
      if (s.seq->status != SeqStatus::kRunning && !s.seq->block_table.empty()) {
        return absl::InternalError(absl::StrCat("request ", id, " sample ", s.seq->sample_index,
                                                " holds blocks while not running"));
      }
      if (s.seq->status == SeqStatus::kRunning &&
          static_cast<int>(s.seq->block_table.size()) <
              BlockManager::BlocksFor(s.seq->num_computed_tokens)) {
        return absl::InternalError(absl::StrCat("request ", id, " table shorter than its KV"));
      }
      tables.push_back(&s.seq->block_table);
    }
  }
  return blocks_.CheckInvariants(tables);
}

std::vector<std::string> EngineCore::TakeFinished() {
  std::vector<std::string> out;
  out.swap(finished_ids_);
  return out;
}

}  // namespace muse::engine
