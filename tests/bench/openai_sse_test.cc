// SSE framing, OpenAI chunk parsing and the chunk -> RequestRecord mapping of the openai-chat /
// openai-completions backends (openai_sse.h), without a server.
#include "benchmarks/bench/openai_sse.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace muse::bench {
namespace {

std::vector<std::string> FeedAll(const std::string& bytes, size_t piece) {
  SseParser p;
  std::vector<std::string> events;
  for (size_t at = 0; at < bytes.size(); at += piece) {
    p.Feed(std::string_view(bytes).substr(at, piece), &events);
  }
  return events;
}

TEST(SseParser, EventsSurviveEverySplitAndLineEnd) {
  const std::string lf =
      ": ping\n\ndata: {\"a\":1}\n\nevent: x\ndata: first\ndata:second\n\ndata: [DONE]\n\n";
  std::string crlf;
  for (char c : lf) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  const std::vector<std::string> want = {"{\"a\":1}", "first\nsecond", "[DONE]"};
  for (const std::string* in : std::vector<const std::string*>{&lf, &crlf}) {
    for (size_t piece : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, in->size()}) {
      EXPECT_EQ(FeedAll(*in, piece), want) << "piece " << piece;
    }
  }
}

TEST(SseParser, IncompleteEventIsHeldUntilItsBlankLine) {
  SseParser p;
  std::vector<std::string> events;
  p.Feed("data: {\"x\":", &events);
  EXPECT_TRUE(events.empty());
  p.Feed("2}\n", &events);
  EXPECT_TRUE(events.empty());
  p.Feed("\n", &events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], "{\"x\":2}");
}

TEST(OpenAiEvent, ChatCompletionsUsageErrorDone) {
  const OpenAiEvent role = ParseOpenAiEvent(
      R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null})");
  EXPECT_TRUE(role.valid);
  EXPECT_EQ(role.text_bytes, 0);
  EXPECT_FALSE(role.has_usage);
  const OpenAiEvent chat = ParseOpenAiEvent(
      R"({"choices":[{"index":0,"delta":{"content":"héllo"},"finish_reason":"length"}]})");
  EXPECT_EQ(chat.text_bytes, 6);
  EXPECT_EQ(chat.finish_reasons, 1);
  const OpenAiEvent text = ParseOpenAiEvent(
      R"({"choices":[{"index":0,"text":"ab","finish_reason":null},{"index":1,"text":"c","finish_reason":"stop"}]})");
  EXPECT_EQ(text.text_bytes, 3);
  EXPECT_EQ(text.finish_reasons, 1);
  const OpenAiEvent usage = ParseOpenAiEvent(
      R"({"choices":[],"usage":{"prompt_tokens":17,"completion_tokens":9,"total_tokens":26,"prompt_tokens_details":{"cached_tokens":16}}})");
  EXPECT_TRUE(usage.has_usage);
  EXPECT_EQ(usage.prompt_tokens, 17);
  EXPECT_EQ(usage.completion_tokens, 9);
  EXPECT_EQ(usage.cached_tokens, 16);
  const OpenAiEvent err = ParseOpenAiEvent(
      R"({"error":{"message":"queue full","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}})");
  EXPECT_TRUE(err.error);
  EXPECT_EQ(err.error_code, 8);  // RESOURCE_EXHAUSTED
  EXPECT_EQ(err.error_message, "queue full");
  const OpenAiEvent odd = ParseOpenAiEvent(R"({"error":{"type":5,"message":null,"code":[]}})");
  EXPECT_TRUE(odd.error);  // wrong JSON types do not throw
  EXPECT_EQ(odd.error_code, 13);
  EXPECT_TRUE(ParseOpenAiEvent("[DONE]").done);
  EXPECT_FALSE(ParseOpenAiEvent("{not json").valid);
}

// The stream as the server writes it (include_usage): role chunk, 3 content chunks, a final
// chunk with an empty delta and the finish reason, the usage chunk, [DONE]. Chunks 2 and 3
// arrive in one read (same t).
TEST(OpenAiStream, ChunksMapToTtftItlAndUsage) {
  RequestRecord r;
  r.start_s = 1.0;
  OpenAiStreamState s;
  auto apply = [&](const std::string& data, double t) {
    return s.Apply(ParseOpenAiEvent(data), t, &r);
  };
  EXPECT_EQ(apply(R"({"choices":[{"delta":{"role":"assistant"},"finish_reason":null}]})", 1.1), 0);
  EXPECT_EQ(apply(R"({"choices":[{"delta":{"content":"a"},"finish_reason":null}]})", 1.25), 1);
  EXPECT_EQ(apply(R"({"choices":[{"delta":{"content":"bc"},"finish_reason":null}]})", 1.5), 1);
  EXPECT_EQ(apply(R"({"choices":[{"delta":{"content":"d"},"finish_reason":null}]})", 1.5), 1);
  EXPECT_EQ(apply(R"({"choices":[{"delta":{},"finish_reason":"length"}]})", 1.6), 0);
  apply(R"({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4}})", 1.6);
  apply("[DONE]", 1.6);
  FinishOpenAiStream(s, 200, "", &r);
  EXPECT_TRUE(r.success()) << r.error;
  EXPECT_DOUBLE_EQ(r.ttft_s, 0.25);
  ASSERT_EQ(r.itl_s.size(), 2u);
  EXPECT_DOUBLE_EQ(r.itl_s[0], 0.25);
  EXPECT_DOUBLE_EQ(r.itl_s[1], 0.0);
  EXPECT_DOUBLE_EQ(r.e2e_s, 0.5);
  EXPECT_EQ(r.prompt_tokens, 5);
  EXPECT_EQ(r.output_tokens, 4);  // usage, not the 3 chunks
  // The token the chunks do not show (4 tokens, 3 chunks) goes on the last chunk.
  EXPECT_EQ(r.chunk_tokens, (std::vector<int32_t>{1, 1, 2}));
  EXPECT_EQ(s.finish_reasons, 1);
}

TEST(OpenAiStream, FailuresNameTheirCode) {
  {
    RequestRecord r;
    FinishOpenAiStream(OpenAiStreamState{}, 429, R"({"error":{}})", &r);
    EXPECT_EQ(StatusCodeName(r.status_code), std::string("RESOURCE_EXHAUSTED"));
    EXPECT_NE(r.error.find("HTTP 429"), std::string::npos);
  }
  {
    RequestRecord r;
    OpenAiStreamState s;
    s.Apply(ParseOpenAiEvent(R"({"choices":[{"delta":{"content":"a"}}]})"), 0.1, &r);
    FinishOpenAiStream(s, 200, "", &r);  // no [DONE]
    EXPECT_EQ(StatusCodeName(r.status_code), std::string("DATA_LOSS"));
    EXPECT_EQ(r.output_tokens, 1);  // no usage: the chunks
  }
  {
    RequestRecord r;
    OpenAiStreamState s;
    s.Apply(
        ParseOpenAiEvent(
            R"({"error":{"message":"shutting down","type":"server_error","code":"service_unavailable"}})"),
        0.1, &r);
    s.Apply(ParseOpenAiEvent("[DONE]"), 0.1, &r);
    FinishOpenAiStream(s, 200, "", &r);
    EXPECT_EQ(StatusCodeName(r.status_code), std::string("UNAVAILABLE"));
    EXPECT_EQ(r.error, "shutting down");
  }
  EXPECT_EQ(CodeOfHttpStatus(400), 3);
  EXPECT_EQ(CodeOfHttpStatus(503), 14);
  EXPECT_EQ(CodeOfHttpStatus(500), 13);
}

TEST(OpenAiRequestBody, CompletionsTokenIdsAndChatText) {
  BenchRequest b;
  b.prompt_ids = {5, 6, 7};
  b.max_tokens = 8;
  b.ignore_eos = true;
  b.priority = "batch";
  const auto c = nlohmann::json::parse(OpenAiRequestBody(b, false, "m", 0.0f));
  EXPECT_EQ(c["prompt"], nlohmann::json({5, 6, 7}));
  EXPECT_EQ(c["model"], "m");
  EXPECT_EQ(c["max_tokens"], 8);
  EXPECT_EQ(c["ignore_eos"], true);
  EXPECT_EQ(c["priority"], "batch");
  EXPECT_EQ(c["stream"], true);
  EXPECT_EQ(c["stream_options"]["include_usage"], true);
  EXPECT_FALSE(c.contains("messages"));
  b.prompt_ids.clear();
  b.prompt_text = "hi";
  b.image_png = std::string("\x89PNG\r\n", 6);
  const auto m = nlohmann::json::parse(OpenAiRequestBody(b, true, "", 0.5f));
  EXPECT_FALSE(m.contains("model"));
  ASSERT_EQ(m["messages"].size(), 1u);
  EXPECT_EQ(m["messages"][0]["role"], "user");
  const auto& parts = m["messages"][0]["content"];
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0]["image_url"]["url"].get<std::string>().rfind("data:image/png;base64,", 0), 0u);
  EXPECT_EQ(parts[1]["text"], "hi");
}

}  // namespace
}  // namespace muse::bench
