// Splits of an output into deltas, and the streaming runs the invariant tests compare.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "src/chat/reasoning_parser.h"
#include "src/chat/tool_call_parser.h"

namespace muse::chat::testing {

using Chunks = std::vector<std::string>;

// One UTF-8 character at a time (continuation bytes stay with their lead byte).
inline Chunks ByCharacter(std::string_view text) {
  Chunks out;
  for (char c : text) {
    if (!out.empty() && (static_cast<unsigned char>(c) & 0xC0) == 0x80) {
      out.back() += c;
    } else {
      out.emplace_back(1, c);
    }
  }
  return out;
}

inline Chunks ByByte(std::string_view text) {
  Chunks out;
  for (char c : text) out.emplace_back(1, c);
  return out;
}

// Random chunk sizes 0..max_chunk (empty deltas included: a detokenizer may produce them).
inline Chunks Random(std::string_view text, uint64_t seed, int max_chunk) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> size(0, max_chunk);
  Chunks out;
  for (size_t i = 0; i < text.size();) {
    const size_t n = std::min<size_t>(size(rng), text.size() - i);
    out.emplace_back(text.substr(i, n));
    i += n;
  }
  return out;
}

// Every split the invariant is checked on: whole, by character, by byte, every single cut, and
// `seeds` random chunkings (sizes up to 3 and up to 17).
inline std::vector<Chunks> AllSplits(std::string_view text, int seeds) {
  std::vector<Chunks> out = {{std::string(text)}, ByCharacter(text), ByByte(text)};
  for (size_t cut = 1; cut < text.size(); ++cut) {
    out.push_back({std::string(text.substr(0, cut)), std::string(text.substr(cut))});
  }
  for (int seed = 0; seed < seeds; ++seed) {
    out.push_back(Random(text, seed, seed % 2 == 0 ? 3 : 17));
  }
  return out;
}

// Streams `chunks` through a fresh parser, checking the delta contract on the way: no empty
// delta; a call's first fragment has index = calls so far, an id, a name and no arguments; later
// fragments carry only arguments for an index already opened.
inline ParsedOutput StreamTools(ToolCallParser& parser, const Chunks& chunks) {
  ParsedOutput out;
  auto check_and_add = [&](const std::vector<ChatDelta>& deltas) {
    for (const ChatDelta& d : deltas) {
      if (!d.tool_call.has_value()) {
        EXPECT_FALSE(d.content.empty()) << "empty content delta";
      } else {
        EXPECT_TRUE(d.content.empty());
        const ToolCallDelta& t = *d.tool_call;
        if (!t.name.empty()) {
          EXPECT_EQ(t.index, static_cast<int>(out.calls.size())) << "calls open in order";
          EXPECT_FALSE(t.id.empty());
          EXPECT_TRUE(t.arguments.empty()) << "the first fragment carries no arguments";
        } else {
          EXPECT_TRUE(t.id.empty());
          EXPECT_FALSE(t.arguments.empty()) << "empty argument fragment";
          EXPECT_LT(t.index, static_cast<int>(out.calls.size())) << "fragment before its header";
        }
      }
      Accumulate({d}, &out);
    }
  };
  for (const std::string& chunk : chunks) check_and_add(parser.Feed(chunk));
  check_and_add(parser.Finish());
  return out;
}

inline ParsedOutput StreamTools(const std::string& parser_name, uint64_t seed,
                                const Chunks& chunks) {
  auto parser = MakeToolCallParser(parser_name, seed);
  EXPECT_TRUE(parser.ok()) << parser.status();
  return StreamTools(**parser, chunks);
}

inline ParsedOutput ParseTools(const std::string& parser_name, uint64_t seed,
                               std::string_view text) {
  auto parser = MakeToolCallParser(parser_name, seed);
  EXPECT_TRUE(parser.ok()) << parser.status();
  return (*parser)->Parse(text);
}

inline void ExpectSameParse(const ParsedOutput& streamed, const ParsedOutput& whole) {
  EXPECT_EQ(streamed.content, whole.content);
  ASSERT_EQ(streamed.calls.size(), whole.calls.size());
  for (size_t i = 0; i < whole.calls.size(); ++i) {
    EXPECT_EQ(streamed.calls[i].id, whole.calls[i].id) << "call " << i;
    EXPECT_EQ(streamed.calls[i].name, whole.calls[i].name) << "call " << i;
    EXPECT_EQ(streamed.calls[i].arguments, whole.calls[i].arguments) << "call " << i;
  }
}

inline ReasoningDelta StreamReasoning(const ReasoningOptions& options, const Chunks& chunks) {
  ReasoningParser parser = ReasoningParser::Create(options).value();
  ReasoningDelta out;
  for (const std::string& chunk : chunks) {
    ReasoningDelta d = parser.Feed(chunk);
    out.reasoning += d.reasoning;
    out.content += d.content;
  }
  ReasoningDelta d = parser.Finish();
  out.reasoning += d.reasoning;
  out.content += d.content;
  return out;
}

}  // namespace muse::chat::testing
