// Audio in, end to end (issue 19): the real server in-process on the tri-modal muse-tiny that
// muse-make-model writes (Llama 3 tokenizer + <image>, <|audio_bos|>, <|AUDIO|>, <|audio_eos|>),
// real gRPC stubs, real speech made at test time by espeak-ng, the real audio tower. Chat messages
// and raw prompts carry audio; the same clip twice hits the encoder cache and the prefix cache;
// garbage, truncated, too-short and too-long clips are INVALID_ARGUMENT naming the part, and the
// server keeps serving.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <regex>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/time/clock.h"
#include "src/server/server.h"
#include "tests/server/test_util.h"

namespace muse::server {
namespace {

using namespace muse::server::testing;

// muse-tiny as scripts/setup.sh makes models/muse-tiny, in a temp dir of this process.
std::string MuseTinyDir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    const fs::path d =
        fs::temp_directory_path() / ("muse_server_audio_" + std::to_string(::getpid()));
    const std::string cmd = std::string(MUSE_BIN_DIR) +
                            "/muse-make-model --preset muse-tiny --seed 0 --out " + d.string() +
                            " --tokenizer " + kTokenizerDir + " > /dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(
          fs::temp_directory_path() / ("muse_server_audio_" + std::to_string(::getpid())), ec);
    });
    return d.string();
  }();
  return dir;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// espeak-ng's 22,050 Hz mono 16-bit WAV of `text`.
std::string Speech(const std::string& text) {
  const std::string path = ::testing::TempDir() + "/audio_server_speech_" +
                           std::to_string(::getpid()) + "_" + std::to_string(text.size()) + ".wav";
  const std::string cmd = "espeak-ng -w " + path + " '" + text + "'";
  if (std::system(cmd.c_str()) != 0) return "";
  std::string bytes = ReadAll(path);
  std::remove(path.c_str());
  return bytes;
}

// A 16-bit mono PCM WAV of a 440 Hz tone (RIFF header written here).
std::string ToneWav(double seconds, int rate = 16000) {
  const auto n = static_cast<uint32_t>(seconds * rate);
  std::string w;
  auto u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) w.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  };
  auto u16 = [&](uint16_t v) {
    w.push_back(static_cast<char>(v & 0xFF));
    w.push_back(static_cast<char>(v >> 8));
  };
  w += "RIFF";
  u32(36 + 2 * n);
  w += "WAVEfmt ";
  u32(16);
  u16(1);  // PCM
  u16(1);  // mono
  u32(rate);
  u32(rate * 2);
  u16(2);
  u16(16);
  w += "data";
  u32(2 * n);
  for (uint32_t i = 0; i < n; ++i) {
    u16(static_cast<uint16_t>(static_cast<int16_t>(8000 * std::sin(2 * M_PI * 440.0 * i / rate))));
  }
  return w;
}

class AudioServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    speech_ = new std::string(Speech("Muse serve hears a voice note about the weather in Lisbon."));
    ASSERT_FALSE(speech_->empty()) << "espeak-ng could not make the test speech";
    ServerOptions o;
    o.model_dir = MuseTinyDir();
    o.host = "127.0.0.1";
    o.port = 0;
    o.http_port = kEphemeralPort;
    o.threads = 1;
    o.num_kv_blocks = 512;
    o.max_num_seqs = 8;
    o.no_auth = true;
    o.metrics_port = 0;
    o.seed = 1;
    o.max_audio_seconds = 20;
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete speech_;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    stub_ = Stub(server_->port());
  }
  void TearDown() override {
    EXPECT_TRUE(WaitForIdleEngine(*server_))
        << "kv_blocks_used=" << server_->EngineStats().kv_blocks_used;
  }

  static int64_t Metric(const std::string& name) {
    const std::string text = HttpGet(server_->metrics_port(), "/metrics");
    std::smatch m;
    if (!std::regex_search(text, m, std::regex("\n" + name + " ([0-9]+)"))) return -1;
    return std::stoll(m[1]);
  }

  // A user message: the clip, then the text.
  static v1::GenerateRequest Chat(const std::string& text, const std::string& clip,
                                  int max_tokens = 8) {
    v1::GenerateRequest r = GreedyPrompt("", max_tokens);
    auto* m = r.add_messages();
    m->set_role("user");
    m->add_content()->set_audio(clip);
    m->add_content()->set_text(text);
    return r;
  }

  // A request that must succeed after a refused one: the server keeps serving.
  void ExpectServing() {
    StreamResult r = RunStream(*stub_, Chat("Still there?", ToneWav(1.0), 4));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids.size(), 4u);
  }

  void ExpectInvalid(const v1::GenerateRequest& req, const std::string& want) {
    StreamResult r = RunStream(*stub_, req);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << r.status.error_message();
    EXPECT_NE(r.status.error_message().find(want), std::string::npos)
        << r.status.error_message() << " (want " << want << ")";
  }

  // POST /v1/chat/completions on the HTTP face; the whole reply, headers included.
  static std::string PostChat(const std::string& body) {
    return HttpExchange(server_->http_port(),
                        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        "Content-Type: application/json\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body,
                        /*half_close=*/false);
  }

  static std::string AudioChatBody(const std::string& part, bool stream) {
    return R"({"model": "", "max_tokens": 6, "temperature": 0, "ignore_eos": true, "stream": )" +
           std::string(stream ? "true" : "false") +
           R"(, "messages": [{"role": "user", "content": [)" + part +
           R"(, {"type": "text", "text": "What was said?"}]}]})";
  }

  static Server* server_;
  static std::string* speech_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};
Server* AudioServerTest::server_ = nullptr;
std::string* AudioServerTest::speech_ = nullptr;

TEST_F(AudioServerTest, SpeechStreamsAndTheSameClipHitsBothCaches) {
  const auto req = Chat("What does the voice note say?", *speech_, 12);
  const int64_t hits0 = Metric("muse_encoder_cache_hits_total");
  const int64_t encoded0 = Metric("muse_audio_clips_encoded_total");
  ASSERT_GE(encoded0, 0);  // exported (the warm-up is not counted)
  const absl::Time t0 = absl::Now();
  StreamResult a = RunStream(*stub_, req);
  const double first_ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  EXPECT_EQ(a.ids.size(), 12u);
  EXPECT_TRUE(a.last.finished());
  EXPECT_GT(a.messages, 1);  // streamed
  // espeak's ~3.5 s sentence: ~350 mel frames -> ~88 audio rows, plus the template's tokens.
  const int64_t prompt = a.last.usage().prompt_tokens();
  EXPECT_GT(prompt, 60);
  EXPECT_LT(prompt, 200);
  EXPECT_EQ(Metric("muse_audio_clips_encoded_total"), encoded0 + 1);

  const absl::Time t1 = absl::Now();
  StreamResult b = RunStream(*stub_, req);
  const double second_ms = absl::ToDoubleMilliseconds(absl::Now() - t1);
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  EXPECT_EQ(b.ids, a.ids);
  EXPECT_GT(b.last.usage().cached_tokens(), 60);  // prefix cache keyed by the audio digest
  EXPECT_EQ(Metric("muse_encoder_cache_hits_total"), hits0 + 1);
  EXPECT_EQ(Metric("muse_audio_clips_encoded_total"), encoded0 + 1);  // not encoded again
  std::fprintf(stderr,
               "speech clip: %lld prompt tokens, first %.0f ms, repeat %.0f ms (%lld cached)\n",
               static_cast<long long>(prompt), first_ms, second_ms,
               static_cast<long long>(b.last.usage().cached_tokens()));
}

TEST_F(AudioServerTest, DifferentClipsGiveDifferentOutputsAndNoFalseCacheHit) {
  const auto a =
      RunStream(*stub_, Chat("Transcribe.", Speech("Good morning from the glasses."), 16));
  const auto b =
      RunStream(*stub_, Chat("Transcribe.", Speech("Turn left at the next corner."), 16));
  ASSERT_TRUE(a.status.ok() && b.status.ok())
      << a.status.error_message() << b.status.error_message();
  EXPECT_NE(a.ids, b.ids);
}

TEST_F(AudioServerTest, AudioUrlAndRawPromptMatchTheChatMessage) {
  const std::string clip = ToneWav(2.0, 22050);
  StreamResult chat = RunStream(*stub_, Chat("Which pitch?", clip, 6));
  ASSERT_TRUE(chat.status.ok()) << chat.status.error_message();

  v1::GenerateRequest url = GreedyPrompt("", 6);
  auto* m = url.add_messages();
  m->set_role("user");
  m->add_content()->set_audio_url("data:audio/wav;base64," + absl::Base64Escape(clip));
  m->add_content()->set_text("Which pitch?");
  StreamResult u = RunStream(*stub_, url);
  ASSERT_TRUE(u.status.ok()) << u.status.error_message();
  EXPECT_EQ(u.ids, chat.ids);

  // A raw prompt with the placeholder, the clip in `images`: the clip's rows are in the prompt
  // (tokenized text boundaries differ from the template's rendering by a token, so only the rows
  // are compared: 2 s -> 200 frames -> 50 rows).
  v1::GenerateRequest raw = GreedyPrompt(
      "<|start_header_id|>user<|end_header_id|>\n\n<|audio_bos|><|AUDIO|><|audio_eos|>Which "
      "pitch?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
      6);
  raw.add_images()->set_audio(clip);
  StreamResult r = RunStream(*stub_, raw);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_NEAR(r.last.usage().prompt_tokens(), chat.last.usage().prompt_tokens(), 2);
  EXPECT_GT(r.last.usage().prompt_tokens(), 50);
  EXPECT_EQ(r.ids.size(), 6u);
}

TEST_F(AudioServerTest, ImageAndAudioInOneMessage) {
  v1::GenerateRequest req = GreedyPrompt("", 8);
  auto* m = req.add_messages();
  m->set_role("user");
  m->add_content()->set_image(PatternPng(40, 30, 1));
  m->add_content()->set_audio(ToneWav(1.5));
  m->add_content()->set_text("Describe both.");
  StreamResult r = RunStream(*stub_, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.ids.size(), 8u);
  // 16 image rows + 1.5 s of audio (150 frames -> 38 rows) + the template.
  EXPECT_GT(r.last.usage().prompt_tokens(), 16 + 38);
}

TEST_F(AudioServerTest, BadAudioIsInvalidArgumentNamingThePart) {
  const std::string wav = ToneWav(1.0);
  ExpectInvalid(Chat("x", "this is not audio at all, just text bytes"),
                "messages[0].content[0].audio: audio:");
  ExpectServing();
  ExpectInvalid(Chat("x", wav.substr(0, 30)), "messages[0].content[0].audio");  // cut header
  ExpectServing();
  ExpectInvalid(Chat("x", ToneWav(0.01)), "messages[0].content[0].audio: clip too short");
  ExpectInvalid(Chat("x", ToneWav(25)), "messages[0].content[0].audio");  // > --max-audio-seconds
  ExpectInvalid(Chat("x", ""), "messages[0].content[0].audio: empty audio");
  v1::GenerateRequest url = Chat("x", wav);
  url.mutable_messages(0)->mutable_content(0)->set_audio_url("https://example.com/a.wav");
  ExpectInvalid(url, "messages[0].content[0].audio_url: only data: URIs");
  url.mutable_messages(0)->mutable_content(0)->set_audio_url("data:image/png;base64,AAAA");
  ExpectInvalid(url, "messages[0].content[0].audio_url: data: URI must have an audio/* type");
  // Raw prompt: a placeholder without a clip, a clip without a placeholder.
  v1::GenerateRequest raw = GreedyPrompt("<|AUDIO|> hello", 4);
  ExpectInvalid(raw, "prompt: 1 audio placeholder(s) <|AUDIO|> (token 128258) but 0 audio clip(s)");
  raw = GreedyPrompt("hello", 4);
  raw.add_images()->set_audio(wav);
  ExpectInvalid(raw, "prompt: 0 audio placeholder(s)");
  raw.mutable_images(0)->set_audio("garbage");
  ExpectInvalid(raw, "images[0].audio: audio:");
  ExpectServing();
}

TEST_F(AudioServerTest, HttpInputAudioAndAudioUrlStream) {
  const std::string b64 = absl::Base64Escape(*speech_);
  const int64_t hits0 = Metric("muse_encoder_cache_hits_total");
  // OpenAI's input_audio, streamed: SSE chunks, then [DONE].
  const std::string a = PostChat(AudioChatBody(
      R"({"type": "input_audio", "input_audio": {"data": ")" + b64 + R"(", "format": "wav"}})",
      true));
  EXPECT_NE(a.find("HTTP/1.1 200"), std::string::npos) << a.substr(0, 400);
  EXPECT_NE(a.find("text/event-stream"), std::string::npos);
  EXPECT_GE(std::count(a.begin(), a.end(), '\n'), 6);
  EXPECT_NE(a.find("data: [DONE]"), std::string::npos) << a.substr(0, 400);
  // vLLM's audio_url with the same clip: an encoder-cache hit, and a cached prefix.
  const std::string b = PostChat(AudioChatBody(
      R"({"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64,)" + b64 + R"("}})",
      false));
  EXPECT_NE(b.find("HTTP/1.1 200"), std::string::npos) << b.substr(0, 400);
  EXPECT_NE(b.find("\"cached_tokens\""), std::string::npos) << b;
  EXPECT_GE(Metric("muse_encoder_cache_hits_total"), hits0 + 1);
}

TEST_F(AudioServerTest, HttpBadAudioIs400NamingThePart) {
  const std::string garbage = absl::Base64Escape("definitely not a wav file");
  std::string r = PostChat(AudioChatBody(
      R"({"type": "input_audio", "input_audio": {"data": ")" + garbage + R"(", "format": "wav"}})",
      false));
  EXPECT_NE(r.find("HTTP/1.1 400"), std::string::npos) << r.substr(0, 400);
  EXPECT_NE(r.find("messages[0].content[0].audio"), std::string::npos) << r;
  const std::string cut = absl::Base64Escape(ToneWav(1.0).substr(0, 40));
  r = PostChat(AudioChatBody(
      R"({"type": "input_audio", "input_audio": {"data": ")" + cut + R"(", "format": "wav"}})",
      false));
  EXPECT_NE(r.find("HTTP/1.1 400"), std::string::npos) << r.substr(0, 400);
  EXPECT_NE(r.find("messages[0].content[0].audio"), std::string::npos) << r;
  r = PostChat(AudioChatBody(
      R"({"type": "input_audio", "input_audio": {"data": "@@@", "format": "wav"}})", false));
  EXPECT_NE(r.find("messages[0].content[0].input_audio.data"), std::string::npos) << r;
  r = PostChat(AudioChatBody(
      R"({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "aiff"}})", false));
  EXPECT_NE(r.find("messages[0].content[0].input_audio.format"), std::string::npos) << r;
  r = PostChat(AudioChatBody(R"({"type": "input_audio"})", false));
  EXPECT_NE(r.find("messages[0].content[0].input_audio"), std::string::npos) << r;
  r = PostChat(
      AudioChatBody(R"({"type": "audio_url", "audio_url": {"url": "https://x/a.wav"}})", false));
  EXPECT_NE(r.find("HTTP/1.1 400"), std::string::npos) << r.substr(0, 400);
  EXPECT_NE(r.find("messages[0].content[0].audio_url"), std::string::npos) << r;
  // Still serving.
  r = PostChat(AudioChatBody(R"({"type": "input_audio", "input_audio": {"data": ")" +
                                 absl::Base64Escape(ToneWav(1.0)) + R"(", "format": "wav"}})",
                             false));
  EXPECT_NE(r.find("HTTP/1.1 200"), std::string::npos) << r.substr(0, 400);
}

// The README's quick start: `muse chat --audio note.wav` against this server.
TEST_F(AudioServerTest, MuseChatWithAudio) {
  const std::string note =
      ::testing::TempDir() + "/audio_server_note_" + std::to_string(::getpid()) + ".wav";
  std::ofstream(note, std::ios::binary) << *speech_;
  const std::string muse =
      std::string(MUSE_BIN_DIR) + "/muse --addr 127.0.0.1:" + std::to_string(server_->port());
  auto run = [](const std::string& cmd) {
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[512];
    while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
    const int status = ::pclose(p);
    return std::pair{WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
  };
  auto [rc, out] = run("echo 'What did I say?' | " + muse + " chat --audio " + note +
                       " --max-tokens 6 --temperature 0 2>&1");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("completion tokens"), std::string::npos) << out;
  // A file that is not audio: the server's INVALID_ARGUMENT, exit 1.
  std::tie(rc, out) = run("echo x | " + muse + " chat --audio " + std::string(MUSE_BIN_DIR) +
                          "/muse --max-tokens 2 2>&1");
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("INVALID_ARGUMENT: messages[0].content[0].audio"), std::string::npos) << out;
  std::remove(note.c_str());
}

}  // namespace
}  // namespace muse::server
