// libFuzzer target: src/chat's streaming parsers (reasoning, llama3_json, hermes, mistral, forced
// "required" calls). Input: byte 0 picks the parser, byte 1 seeds the chunking, the rest is the
// model output.
//
// Invariants: the output streamed in the chunks (sizes 0..16 from the seed) accumulates to the
// parse of the whole output; a parse with no call keeps every byte as content; a call's name is
// non-empty and its id well-formed; the reasoning split keeps every byte but the tags.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>

#include "src/chat/forced_tool_call.h"
#include "src/chat/reasoning_parser.h"
#include "src/chat/tool_call_parser.h"

namespace {

using namespace muse::chat;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

std::unique_ptr<ToolCallParser> MakeParser(int which) {
  switch (which) {
    case 0:
      return MakeToolCallParser("llama3_json", 1).value();
    case 1:
      return MakeToolCallParser("hermes", 1).value();
    case 2:
      return MakeToolCallParser("mistral", 1).value();
    default:
      return MakeRequiredToolCallParser(1, CallIdStyle::kOpenAi);
  }
}

std::vector<std::string_view> Chunk(std::string_view text, uint8_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::string_view> out;
  for (size_t i = 0; i < text.size();) {
    const size_t n = std::min<size_t>(rng() % 17, text.size() - i);
    out.push_back(text.substr(i, n));
    i += n;
  }
  return out;
}

void FuzzReasoning(ReasoningStart start, std::string_view output, uint8_t seed) {
  ReasoningOptions options;
  options.start = start;
  ReasoningParser parser = ReasoningParser::Create(options).value();
  const ReasoningDelta whole = parser.Parse(output);
  ReasoningDelta streamed;
  for (std::string_view c : Chunk(output, seed)) {
    const ReasoningDelta d = parser.Feed(c);
    streamed.reasoning += d.reasoning;
    streamed.content += d.content;
  }
  const ReasoningDelta d = parser.Finish();
  streamed.reasoning += d.reasoning;
  streamed.content += d.content;
  Check(streamed.reasoning == whole.reasoning, "streamed reasoning == parsed reasoning");
  Check(streamed.content == whole.content, "streamed content == parsed content");
  Check(whole.reasoning.size() + whole.content.size() <= output.size(), "no bytes invented");
}

void FuzzTools(int which, std::string_view output, uint8_t seed) {
  const ParsedOutput whole = MakeParser(which)->Parse(output);
  auto parser = MakeParser(which);
  ParsedOutput streamed;
  for (std::string_view c : Chunk(output, seed)) Accumulate(parser->Feed(c), &streamed);
  Accumulate(parser->Finish(), &streamed);
  Check(streamed.content == whole.content, "streamed content == parsed content");
  Check(streamed.calls.size() == whole.calls.size(), "same number of calls");
  for (size_t i = 0; i < whole.calls.size(); ++i) {
    Check(streamed.calls[i].id == whole.calls[i].id, "same id");
    Check(streamed.calls[i].name == whole.calls[i].name, "same name");
    Check(streamed.calls[i].arguments == whole.calls[i].arguments, "same arguments");
    Check(!whole.calls[i].name.empty(), "calls have names");
    Check(whole.calls[i].id.size() == (which == 2 ? 9u : 29u), "id length");
  }
  if (whole.calls.empty()) Check(whole.content == output, "no call: every byte is content");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int which = data[0] % 7;
  const uint8_t seed = data[1];
  const std::string_view output(reinterpret_cast<const char*>(data) + 2, size - 2);
  if (which < 4) {
    FuzzTools(which, output, seed);
  } else {
    FuzzReasoning(static_cast<ReasoningStart>(which - 4), output, seed);
  }
  return 0;
}
