#include "benchmarks/bench/soak_plan.h"

#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmarks/bench/soak.h"
#include "benchmarks/bench/workload.h"
#include "src/common/image_encode.h"

namespace muse::bench {
namespace {

// grpc::StatusCode values, without including gRPC here.
constexpr int kOk = 0, kCancelled = 1, kInvalidArgument = 3, kDeadlineExceeded = 4,
              kResourceExhausted = 8;

constexpr const char* kWords[] = {
    "the",   "river",   "carried",  "old",  "maps",   "across",  "a",     "quiet", "valley",
    "where", "seven",   "lanterns", "hung", "from",   "cedar",   "beams", "and",   "every",
    "night", "someone", "counted",  "them", "again",  "before",  "sleep", "while", "owls",
    "asked", "about",   "weather",  "tea",  "copper", "engines", "snow",  "kites", "numbers"};
constexpr const char* kStops[] = {"e", "a", "the", "\n", "ing", ".", "er", "s"};

std::mt19937_64 Rng(uint64_t seed, int64_t index) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                    static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), 0x50a6u};
  return std::mt19937_64(seq);
}

std::string Sentence(std::mt19937_64& rng, int min_words, int max_words) {
  const int n = std::uniform_int_distribution<int>(min_words, max_words)(rng);
  std::string s;
  for (int i = 0; i < n; ++i) {
    if (i > 0) s += ' ';
    s += kWords[rng() % std::size(kWords)];
  }
  return s;
}

// Image `key` of the pool: a size in [8, 64]^2, PNG for even keys (synthetic picture), JPEG of
// noise for odd keys. Equal keys give equal bytes (encoder-cache hits).
std::string PoolImage(uint64_t seed, int64_t key) {
  auto rng = Rng(seed ^ 0x1a6e, key);
  const int w = 8 + static_cast<int>(rng() % 57), h = 8 + static_cast<int>(rng() % 57);
  if (key % 2 == 0) return SyntheticPng(w, h, rng());
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
  for (auto& p : rgb) p = static_cast<uint8_t>(rng());
  return EncodeJpeg(rgb, w, h, 3, 80);
}

double Uniform(std::mt19937_64& rng, double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(rng);
}

}  // namespace

const char* FateName(Fate f) {
  switch (f) {
    case Fate::kComplete:
      return "complete";
    case Fate::kCancelAtStart:
      return "cancel_at_start";
    case Fate::kCancelAfterDelay:
      return "cancel_after_delay";
    case Fate::kCancelAfterFirstToken:
      return "cancel_after_first_token";
    case Fate::kCancelMidDecode:
      return "cancel_mid_decode";
    case Fate::kDeadline:
      return "deadline";
    case Fate::kSlowThenCancel:
      return "slow_reader_cancel";
    case Fate::kSlowThenRead:
      return "slow_reader_read";
    case Fate::kInvalid:
      return "invalid";
    case Fate::kBurst:
      return "burst";
  }
  return "?";
}

const char* InputName(SoakInput i) {
  switch (i) {
    case SoakInput::kPrompt:
      return "prompt";
    case SoakInput::kChat:
      return "chat";
    case SoakInput::kImage:
      return "image";
  }
  return "?";
}

const std::set<int>& AllowedCodes(Fate f) {
  // Any request may meet a full queue while a burst is in flight.
  static const std::set<int> kCompleted = {kOk, kResourceExhausted};
  static const std::set<int> kCancel = {kOk, kCancelled, kResourceExhausted};
  static const std::set<int> kDeadline = {kOk, kDeadlineExceeded, kResourceExhausted};
  static const std::set<int> kInvalid = {kInvalidArgument};
  switch (f) {
    case Fate::kComplete:
    case Fate::kBurst:
      return kCompleted;
    case Fate::kDeadline:
      return kDeadline;
    case Fate::kInvalid:
      return kInvalid;
    default:
      return kCancel;
  }
}

SoakPlan MakeSoakPlan(const SoakConfig& c, bool supports_images, int64_t index, bool burst) {
  auto rng = Rng(c.seed, index);
  SoakPlan p;
  p.index = index;
  double u = Uniform(rng, 0, 1);
  if (burst) {
    p.fate = Fate::kBurst;
  } else if ((u -= c.invalid_fraction) < 0) {
    p.fate = Fate::kInvalid;
  } else if ((u -= c.cancel_fraction) < 0) {
    p.fate = static_cast<Fate>(static_cast<int>(Fate::kCancelAtStart) + rng() % 4);
  } else if ((u -= c.deadline_fraction) < 0) {
    p.fate = Fate::kDeadline;
  } else if ((u -= c.slow_reader_fraction) < 0) {
    p.fate = rng() % 2 ? Fate::kSlowThenCancel : Fate::kSlowThenRead;
  }
  const bool slow = p.fate == Fate::kSlowThenCancel || p.fate == Fate::kSlowThenRead;
  const bool long_gen = slow || p.fate == Fate::kDeadline;
  p.unary = !slow && !burst && Uniform(rng, 0, 1) < c.unary_fraction;

  v1::GenerateRequest& r = p.request;
  r.set_request_id(absl::StrCat("soak-", index));
  if (!c.model.empty()) r.set_model(c.model);
  const double in = Uniform(rng, 0, 1);
  if (!burst && supports_images && in < c.image_fraction) {
    p.input = SoakInput::kImage;
    v1::ChatMessage* m = r.add_messages();
    m->set_role("user");
    const int64_t key = static_cast<int64_t>(rng() % static_cast<uint64_t>(c.image_pool));
    m->add_content()->set_image(PoolImage(c.seed, key));
    m->add_content()->set_text(Sentence(rng, 2, 12));
  } else if (in < c.image_fraction + 0.3) {
    p.input = SoakInput::kChat;
    if (rng() % 3 == 0) {
      v1::ChatMessage* s = r.add_messages();
      s->set_role("system");
      s->add_content()->set_text(Sentence(rng, 3, 10));
    }
    v1::ChatMessage* m = r.add_messages();
    m->set_role("user");
    m->add_content()->set_text(Sentence(rng, 3, 40));
  } else {
    p.input = SoakInput::kPrompt;
    r.set_prompt(Sentence(rng, 4, 60));
  }

  v1::SamplingParams* s = r.mutable_sampling();
  if (!burst && Uniform(rng, 0, 1) < c.multi_sample_fraction) p.n = 2 + static_cast<int>(rng() % 3);
  if (p.n > 1 || rng() % 2) {
    s->set_temperature(0.8f);
    s->set_seed(rng());
  } else {
    s->set_temperature(0.0f);
  }
  if (p.n > 1) s->set_n(p.n);
  if (slow) {
    s->set_logprobs(true);  // larger messages: the stream's HTTP/2 window fills sooner
    s->set_top_logprobs(5);
  } else if (rng() % 10 == 0) {
    s->set_logprobs(true);
  }
  if (p.fate == Fate::kInvalid) s->set_top_p(0.0f);

  v1::StoppingCriteria* st = r.mutable_stopping();
  if (long_gen) {
    st->set_max_tokens(static_cast<int32_t>(c.long_tokens));
    st->set_ignore_eos(true);
  } else if (p.fate == Fate::kCancelMidDecode) {
    st->set_max_tokens(static_cast<int32_t>(std::max<int64_t>(3, c.max_tokens)));
    st->set_ignore_eos(true);
    p.cancel_after_tokens = 2 + static_cast<int64_t>(rng() % (st->max_tokens() - 2));
  } else {
    st->set_max_tokens(static_cast<int32_t>(1 + rng() % static_cast<uint64_t>(c.max_tokens)));
  }
  if (!long_gen && Uniform(rng, 0, 1) < c.stop_fraction) {
    const int k = 1 + static_cast<int>(rng() % 3);
    for (int i = 0; i < k; ++i) st->add_stop(kStops[rng() % std::size(kStops)]);
  }

  switch (p.fate) {
    case Fate::kCancelAfterDelay:
      // Images spend a few ms in decode + the encoder queue: cancels land there too.
      p.delay_s = Uniform(rng, 0, p.input == SoakInput::kImage ? 0.03 : 0.01);
      break;
    case Fate::kCancelAfterFirstToken:
    case Fate::kCancelMidDecode:
      if (p.unary) p.delay_s = Uniform(rng, 0.002, 0.05);
      break;
    case Fate::kDeadline:
      p.delay_s = Uniform(rng, 0.005, 0.06);
      break;
    case Fate::kSlowThenCancel:
    case Fate::kSlowThenRead:
      p.delay_s = Uniform(rng, 0.2, std::max(0.2, c.slow_reader_hold_s));
      break;
    default:
      break;
  }
  // Burst requests stay on gRPC: RESOURCE_EXHAUSTED there is what the bursts check.
  if (c.http_port > 0 && !burst && Uniform(rng, 0, 1) < c.http_fraction) p.http = true;
  return p;
}

}  // namespace muse::bench
