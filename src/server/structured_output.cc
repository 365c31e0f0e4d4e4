#include "src/server/structured_output.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "src/server/served_model.h"
#include "src/structured/token_vocabulary.h"

namespace muse::server {
namespace {

using structured::Constraint;
using structured::ConstraintKind;

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// The field a constraint of `kind` came in (what compile errors are prefixed with).
std::string FieldOf(ConstraintKind kind) {
  switch (kind) {
    case ConstraintKind::kJsonObject:
      return "response_format.json_object";
    case ConstraintKind::kJsonSchema:
      return "response_format.json_schema";
    case ConstraintKind::kRegex:
      return "response_format.regex";
    case ConstraintKind::kEbnf:
      return "response_format.grammar";
    case ConstraintKind::kChoice:
      return "response_format.choice.choices";
  }
  return "response_format";
}

absl::Status CheckAvailable(const ServedModel& served) {
  if (served.structured.cache != nullptr) return absl::OkStatus();
  return absl::UnimplementedError(
      absl::StrCat("response_format: structured output is unavailable for model ", served.id, ": ",
                   served.structured.unavailable));
}

// A cache answer with its error prefixed by the field the constraint came in (front-end messages
// name the place inside the constraint).
absl::StatusOr<std::shared_ptr<const structured::CompiledGrammar>> Named(
    ConstraintKind kind, absl::StatusOr<std::shared_ptr<const structured::CompiledGrammar>> r) {
  if (r.ok()) return r;
  const absl::Status& st = r.status();
  return absl::Status(st.code(), absl::StrCat(FieldOf(kind), ": ", st.message()));
}

}  // namespace

StructuredOutput LoadStructuredOutput(const tokenizer::Tokenizer& tok, int64_t vocab_size,
                                      const std::vector<int64_t>& eos_token_ids,
                                      size_t cache_capacity,
                                      structured::GrammarCache::CompileObserver on_compile) {
  StructuredOutput out;
  std::vector<int32_t> eos;
  for (int64_t e : eos_token_ids) {
    if (e >= 0 && e < vocab_size) eos.push_back(static_cast<int32_t>(e));
  }
  if (eos.empty()) {
    out.unavailable =
        "the model has no EOS token id (config.json eos_token_id), so a constrained "
        "output could never end";
    return out;
  }
  auto vocab = structured::TokenVocabulary::FromTokenizer(tok, static_cast<int>(vocab_size), eos);
  if (!vocab.ok()) {
    out.unavailable =
        absl::StrCat("the vocabulary could not be read as bytes (", vocab.status().message(), ")");
    return out;
  }
  out.cache = std::make_unique<structured::GrammarCache>(std::move(*vocab), cache_capacity,
                                                         std::move(on_compile));
  return out;
}

absl::StatusOr<std::optional<Constraint>> ConstraintOf(const v1::ResponseFormat& rf) {
  Constraint c;
  switch (rf.format_case()) {
    case v1::ResponseFormat::FORMAT_NOT_SET:
      if (rf.has_strict())
        return Bad("response_format.strict", "needs response_format.json_schema");
      if (rf.whitespace() != v1::JSON_WHITESPACE_UNSPECIFIED) {
        return Bad("response_format.whitespace", "needs json_object or json_schema");
      }
      return std::nullopt;
    case v1::ResponseFormat::kJsonObject:
      if (!rf.json_object()) {
        return Bad("response_format.json_object", "must be true (leave the format unset for text)");
      }
      c.kind = ConstraintKind::kJsonObject;
      break;
    case v1::ResponseFormat::kJsonSchema:
      c.kind = ConstraintKind::kJsonSchema;
      c.text = rf.json_schema();
      if (c.text.empty()) return Bad("response_format.json_schema", "must not be empty");
      break;
    case v1::ResponseFormat::kRegex:
      c.kind = ConstraintKind::kRegex;
      c.text = rf.regex();
      break;
    case v1::ResponseFormat::kGrammar:
      c.kind = ConstraintKind::kEbnf;
      c.text = rf.grammar();
      if (c.text.empty()) return Bad("response_format.grammar", "must not be empty");
      break;
    case v1::ResponseFormat::kChoice:
      c.kind = ConstraintKind::kChoice;
      if (rf.choice().choices().empty()) {
        return Bad("response_format.choice.choices", "must not be empty");
      }
      c.choices.assign(rf.choice().choices().begin(), rf.choice().choices().end());
      break;
  }
  const bool json = c.kind == ConstraintKind::kJsonObject || c.kind == ConstraintKind::kJsonSchema;
  if (rf.has_strict() && c.kind != ConstraintKind::kJsonSchema) {
    return Bad("response_format.strict", "applies to json_schema only");
  }
  if (rf.whitespace() != v1::JSON_WHITESPACE_UNSPECIFIED && !json) {
    return Bad("response_format.whitespace", "applies to json_object and json_schema only");
  }
  switch (rf.whitespace()) {
    case v1::JSON_WHITESPACE_UNSPECIFIED:
    case v1::JSON_WHITESPACE_COMPACT:
      c.json.compact = true;
      break;
    case v1::JSON_WHITESPACE_FLEXIBLE:
      c.json.compact = false;
      break;
    default:
      return Bad("response_format.whitespace", absl::StrCat("unknown value ", rf.whitespace()));
  }
  c.json.strict = !rf.has_strict() || rf.strict();
  return c;
}

absl::StatusOr<std::shared_ptr<const structured::CompiledGrammar>> CompileResponseFormat(
    const v1::ResponseFormat& rf, const ServedModel& served) {
  ASSIGN_OR_RETURN(std::optional<Constraint> c, ConstraintOf(rf));
  if (!c) return nullptr;
  return CompileResponseFormat(*c, served);
}

absl::StatusOr<ResponseFormatLookup> LookupResponseFormat(const v1::ResponseFormat& rf,
                                                          const ServedModel& served) {
  ResponseFormatLookup out;
  ASSIGN_OR_RETURN(std::optional<Constraint> c, ConstraintOf(rf));
  if (!c) return out;
  RETURN_IF_ERROR(CheckAvailable(served));
  auto found = served.structured.cache->Find(*c);
  if (!found) {
    out.to_compile = std::move(*c);
    return out;
  }
  ASSIGN_OR_RETURN(out.grammar, Named(c->kind, *std::move(found)));
  return out;
}

absl::StatusOr<std::shared_ptr<const structured::CompiledGrammar>> CompileResponseFormat(
    const Constraint& c, const ServedModel& served) {
  RETURN_IF_ERROR(CheckAvailable(served));
  return Named(c.kind, served.structured.cache->Get(c));
}

}  // namespace muse::server
