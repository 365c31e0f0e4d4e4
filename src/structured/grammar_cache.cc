#include "src/structured/grammar_cache.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "src/structured/token_mask_cache.h"

namespace muse::structured {
namespace {

using Result = absl::StatusOr<std::shared_ptr<const CompiledGrammar>>;

// Schemas nest far less; a deeper document keeps its raw text as key (serialising it would
// recurse once per level) and the front end reports it.
constexpr int kMaxCanonicalDepth = 128;

// The compact serialisation of a JSON text with its key order kept; nullopt when it does not
// parse (the raw text is then the key and the front end names the syntax error).
std::optional<std::string> CanonicalJson(const std::string& text) {
  bool too_deep = false;
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(
      text,
      [&too_deep](int depth, nlohmann::ordered_json::parse_event_t, nlohmann::ordered_json&) {
        if (depth <= kMaxCanonicalDepth) return true;
        too_deep = true;
        return false;
      },
      /*allow_exceptions=*/false);
  if (too_deep || j.is_discarded()) return std::nullopt;
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// `c` with its text in the form the key is made of; what is compiled, so equal keys always
// compile the same input.
Constraint Canonical(const Constraint& c) {
  Constraint out = c;
  if (c.kind == ConstraintKind::kJsonSchema) {
    if (auto j = CanonicalJson(c.text)) out.text = std::move(*j);
  }
  if (c.kind != ConstraintKind::kJsonSchema && c.kind != ConstraintKind::kJsonObject) {
    out.json = JsonSchemaOptions{};  // options of other kinds do not split entries
  }
  if (c.kind == ConstraintKind::kJsonObject) out.text.clear();
  if (c.kind != ConstraintKind::kChoice) out.choices.clear();
  return out;
}

}  // namespace

struct GrammarCache::Slot {
  std::promise<Result> promise;
  std::shared_future<Result> result = promise.get_future().share();
};

const char* ConstraintKindName(ConstraintKind kind) {
  switch (kind) {
    case ConstraintKind::kJsonObject:
      return "json_object";
    case ConstraintKind::kJsonSchema:
      return "json_schema";
    case ConstraintKind::kRegex:
      return "regex";
    case ConstraintKind::kEbnf:
      return "grammar";
    case ConstraintKind::kChoice:
      return "choice";
  }
  return "unknown";
}

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> CompileConstraint(
    const Constraint& c, std::shared_ptr<const TokenVocabulary> vocab) {
  absl::StatusOr<Grammar> g;
  switch (c.kind) {
    case ConstraintKind::kJsonObject:
      g = JsonObjectGrammar(c.json);
      break;
    case ConstraintKind::kJsonSchema:
      g = CompileJsonSchema(c.text, c.json);
      break;
    case ConstraintKind::kRegex:
      g = CompileRegex(c.text);
      break;
    case ConstraintKind::kEbnf:
      g = CompileEbnf(c.text);
      break;
    case ConstraintKind::kChoice:
      g = ChoiceGrammar(c.choices);
      break;
  }
  if (!g.ok()) return g.status();
  auto compiled = CompiledGrammar::Create(*std::move(g), std::move(vocab));
  // The per-position token classes are computed here, on the compiling (request) thread, not by
  // the first mask that needs one on the engine's decode path (up to ~100 ms there for a
  // position the vocabulary has not seen; shared per vocabulary, so most compiles reuse them).
  if (compiled.ok()) (*compiled)->PrecomputeMasks();
  return compiled;
}

GrammarCache::GrammarCache(std::shared_ptr<const TokenVocabulary> vocab, size_t capacity,
                           CompileObserver on_compile)
    : vocab_(std::move(vocab)),
      capacity_(std::max<size_t>(1, capacity)),
      on_compile_(std::move(on_compile)) {}

std::string GrammarCache::Key(const Constraint& c) {
  const Constraint k = Canonical(c);
  std::string key = absl::StrCat(static_cast<int>(k.kind), "|", k.json.compact ? 1 : 0, "|",
                                 k.json.max_whitespace, "|", k.json.strict ? 1 : 0, "|");
  if (k.kind == ConstraintKind::kChoice) {
    absl::StrAppend(&key, nlohmann::json(k.choices).dump(-1, ' ', false,
                                                         nlohmann::json::error_handler_t::replace));
  } else {
    absl::StrAppend(&key, k.text);
  }
  return key;
}

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> GrammarCache::Get(const Constraint& c) {
  std::string key = Key(c);
  std::shared_ptr<Slot> slot;
  bool compile_here = false;
  {
    std::lock_guard lock(mu_);
    if (auto it = index_.find(key); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++stats_.hits;
      slot = it->second->slot;
    } else {
      ++stats_.misses;
      slot = std::make_shared<Slot>();
      compile_here = true;
      lru_.push_front(Entry{std::move(key), slot});
      index_.emplace(lru_.front().key, lru_.begin());
      while (lru_.size() > capacity_) {  // an evicted compile in progress still reaches its waiters
        index_.erase(lru_.back().key);
        lru_.pop_back();
        ++stats_.evictions;
      }
      stats_.entries = static_cast<int64_t>(lru_.size());
    }
  }
  if (!compile_here) return slot->result.get();  // waits while another request compiles it
  return Compile(c, slot);
}

std::optional<absl::StatusOr<std::shared_ptr<const CompiledGrammar>>> GrammarCache::Find(
    const Constraint& c) {
  const std::string key = Key(c);
  std::lock_guard lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return std::nullopt;
  const std::shared_future<Result>& result = it->second->slot->result;
  if (result.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second);
  ++stats_.hits;
  return result.get();
}

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> GrammarCache::Compile(
    const Constraint& c, const std::shared_ptr<Slot>& slot) {
  const auto t0 = std::chrono::steady_clock::now();
  Result r;
  try {
    r = CompileConstraint(Canonical(c), vocab_);
  } catch (const std::exception& e) {
    r = absl::InternalError(absl::StrCat("compiling the constraint failed: ", e.what()));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  slot->promise.set_value(r);
  {
    std::lock_guard lock(mu_);
    stats_.compile_seconds += seconds;
    if (!r.ok()) ++stats_.compile_errors;
    if (!r.ok() && r.status().code() != absl::StatusCode::kInvalidArgument) {
      // Not a property of the constraint: the next request compiles it again.
      for (auto it = lru_.begin(); it != lru_.end(); ++it) {
        if (it->slot == slot) {
          index_.erase(it->key);
          lru_.erase(it);
          break;
        }
      }
      stats_.entries = static_cast<int64_t>(lru_.size());
    }
  }
  if (on_compile_) on_compile_(c.kind, seconds, r.ok());
  return r;
}

GrammarCacheStats GrammarCache::stats() const {
  GrammarCacheStats s;
  {
    std::lock_guard lock(mu_);
    s = stats_;
  }
  internal::SharedTokenClasses& shared = vocab_->shared_token_classes();
  std::lock_guard lock(shared.mu);
  s.shared_token_classes = static_cast<int64_t>(shared.entries.size());
  return s;
}

}  // namespace muse::structured
