// muse-server's command line: AddServerFlags parsed by CLI11 (defaults, both value forms, `--`,
// ranges, missing values, unknown flags, auth and TLS rules), then the binary's exit codes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "src/common/file_util.h"
#include "src/server/server.h"

namespace muse::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct Parsed {
  ServerCommandLine flags;
  bool ok = false;
  std::string error;  // CLI11's message when !ok
};

// Parses `args` (without the program name) exactly as muse-server's main does.
Parsed Parse(const std::vector<std::string>& args) {
  Parsed p;
  CLI::App app("muse-server", "muse-server");
  AddServerFlags(app, &p.flags);
  std::vector<std::string> storage = {"muse-server"};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
    p.ok = true;
  } catch (const CLI::ParseError& e) {
    p.error = e.what();
  }
  return p;
}

std::string ApiKeysExample() {
  return std::string(MUSE_SOURCE_DIR) + "/configs/api_keys.example.json";
}

TEST(ServerFlagsTest, DefaultsAreServerOptionsDefaults) {
  const Parsed p = Parse({"--model", "m", "--no-auth"});
  ASSERT_TRUE(p.ok) << p.error;
  const ServerOptions def;
  const ServerOptions& o = p.flags.options;
  EXPECT_EQ(o.model_dir, "m");
  EXPECT_TRUE(o.no_auth);
  EXPECT_EQ(o.api_keys_file, "");
  EXPECT_EQ(o.host, def.host);
  EXPECT_EQ(o.port, 50051);
  EXPECT_EQ(o.device, "cpu");
  EXPECT_EQ(o.dtype, "float32");
  EXPECT_EQ(o.threads, def.threads);
  EXPECT_TRUE(o.device_sampling);
  EXPECT_EQ(o.max_num_seqs, def.max_num_seqs);
  EXPECT_EQ(o.max_num_batched_tokens, def.max_num_batched_tokens);
  EXPECT_EQ(o.max_waiting, def.max_waiting);
  EXPECT_EQ(o.kv_cache_bytes, def.kv_cache_bytes);
  EXPECT_EQ(o.num_kv_blocks, 0);
  EXPECT_EQ(o.max_model_len, 0);
  EXPECT_EQ(o.seed, 0u);
  EXPECT_EQ(o.metrics_port, -1);
  EXPECT_EQ(o.max_receive_message_bytes, def.max_receive_message_bytes);
  EXPECT_EQ(o.encoder_cache_bytes, def.encoder_cache_bytes);
  EXPECT_EQ(o.max_image_bytes, def.max_image_bytes);
  EXPECT_EQ(o.max_image_pixels, def.max_image_pixels);
  EXPECT_EQ(o.structured_compile_threads, 2);
  // The one deliberate difference: the binary warms structured output up, in-process servers opt
  // in.
  EXPECT_TRUE(o.structured_warmup);
  EXPECT_FALSE(def.structured_warmup);
  EXPECT_FALSE(o.structured_warmup_wait);
  EXPECT_EQ(o.tool_call_parser, "auto");
  EXPECT_EQ(o.reasoning_parser, "auto");
  EXPECT_EQ(p.flags.log_level, "info");
  EXPECT_EQ(p.flags.drain_grace_seconds, 30);
}

TEST(ServerFlagsTest, EveryFlagSetsItsFieldInBothValueForms) {
  const std::string keys = ApiKeysExample();
  // The same values as `--flag value` and as `--flag=value`.
  const std::vector<std::pair<std::string, std::string>> flags = {
      {"--model", "/models/x"},
      {"--served-model-name", "x-1"},
      {"--host", "127.0.0.1"},
      {"--port", "0"},
      {"--device", "cuda:1"},
      {"--dtype", "bfloat16"},
      {"--threads", "3"},
      {"--device-sampling", "false"},
      {"--max-num-seqs", "5"},
      {"--max-num-batched-tokens", "77"},
      {"--max-waiting", "9"},
      {"--kv-cache-bytes", "8589934592"},  // > 2^32: 64-bit all the way
      {"--num-kv-blocks", "12"},
      {"--max-model-len", "300"},
      {"--seed", "18446744073709551615"},
      {"--api-keys", keys},
      {"--tls-cert", keys},
      {"--tls-key", keys},
      {"--tls-client-ca", keys},
      {"--metrics-port", "9100"},
      {"--max-receive-message-bytes", "1024"},
      {"--encoder-cache-bytes", "0"},
      {"--max-image-bytes", "11"},
      {"--max-image-pixels", "12"},
      {"--structured-compile-threads", "3"},
      {"--structured-warmup", "false"},
      {"--structured-warmup-wait", "true"},
      {"--tool-call-parser", "hermes"},
      {"--reasoning-parser", "think"},
      {"--log-level", "debug"},
      {"--drain-grace-seconds", "2.5"},
  };
  for (const bool equals : {false, true}) {
    std::vector<std::string> args;
    for (const auto& [flag, value] : flags) {
      if (equals) {
        args.push_back(flag + "=" + value);
      } else {
        args.push_back(flag);
        args.push_back(value);
      }
    }
    const Parsed p = Parse(args);
    ASSERT_TRUE(p.ok) << p.error;
    const ServerOptions& o = p.flags.options;
    EXPECT_EQ(o.model_dir, "/models/x");
    EXPECT_EQ(o.served_model_name, "x-1");
    EXPECT_EQ(o.host, "127.0.0.1");
    EXPECT_EQ(o.port, 0);
    EXPECT_EQ(o.device, "cuda:1");
    EXPECT_EQ(o.dtype, "bfloat16");
    EXPECT_EQ(o.threads, 3);
    EXPECT_FALSE(o.device_sampling);
    EXPECT_EQ(o.max_num_seqs, 5);
    EXPECT_EQ(o.max_num_batched_tokens, 77);
    EXPECT_EQ(o.max_waiting, 9);
    EXPECT_EQ(o.kv_cache_bytes, int64_t{8} << 30);
    EXPECT_EQ(o.num_kv_blocks, 12);
    EXPECT_EQ(o.max_model_len, 300);
    EXPECT_EQ(o.seed, UINT64_MAX);
    EXPECT_EQ(o.api_keys_file, keys);
    EXPECT_FALSE(o.no_auth);
    EXPECT_EQ(o.tls_cert, keys);
    EXPECT_EQ(o.tls_key, keys);
    EXPECT_EQ(o.tls_client_ca, keys);
    EXPECT_EQ(o.metrics_port, 9100);
    EXPECT_EQ(o.max_receive_message_bytes, 1024);
    EXPECT_EQ(o.encoder_cache_bytes, 0);
    EXPECT_EQ(o.max_image_bytes, 11);
    EXPECT_EQ(o.max_image_pixels, 12);
    EXPECT_EQ(o.structured_compile_threads, 3);
    EXPECT_FALSE(o.structured_warmup);
    EXPECT_TRUE(o.structured_warmup_wait);
    EXPECT_EQ(o.tool_call_parser, "hermes");
    EXPECT_EQ(o.reasoning_parser, "think");
    EXPECT_EQ(p.flags.log_level, "debug");
    EXPECT_EQ(p.flags.drain_grace_seconds, 2.5);
  }
}

TEST(ServerFlagsTest, DoubleDashEndsOptions) {
  const Parsed ok = Parse({"--model", "m", "--no-auth", "--"});
  EXPECT_TRUE(ok.ok) << ok.error;
  // After `--`, "--port 1" is not the flag (muse-server takes no positional arguments).
  const Parsed p = Parse({"--model", "m", "--no-auth", "--", "--port", "1"});
  EXPECT_FALSE(p.ok);
  EXPECT_THAT(p.error, HasSubstr("--port"));
  EXPECT_EQ(p.flags.options.port, 50051);
  // A value that looks like a flag is taken with `=`.
  const Parsed name = Parse({"--model", "m", "--no-auth", "--served-model-name=--x"});
  ASSERT_TRUE(name.ok) << name.error;
  EXPECT_EQ(name.flags.options.served_model_name, "--x");
}

TEST(ServerFlagsTest, RepeatedFlagTakesTheLastValue) {
  const Parsed p = Parse({"--model", "a", "--no-auth", "--port", "1", "--model=b", "--port", "2"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.flags.options.model_dir, "b");
  EXPECT_EQ(p.flags.options.port, 2);
}

TEST(ServerFlagsTest, OutOfRangeValuesNameTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--port", "65536"}, "--port"},
      {{"--port", "-1"}, "--port"},
      {{"--port", "abc"}, "--port"},
      {{"--metrics-port", "-2"}, "--metrics-port"},
      {{"--threads", "-1"}, "--threads"},
      {{"--max-num-seqs", "0"}, "--max-num-seqs: must be >= 1, got 0"},
      {{"--max-num-batched-tokens=0"}, "--max-num-batched-tokens: must be >= 1"},
      {{"--max-waiting", "0"}, "--max-waiting"},
      {{"--kv-cache-bytes", "0"}, "--kv-cache-bytes"},
      {{"--num-kv-blocks", "-1"}, "--num-kv-blocks"},
      {{"--max-model-len", "-5"}, "--max-model-len"},
      {{"--max-receive-message-bytes", "1023"}, "--max-receive-message-bytes: must be >= 1024"},
      {{"--encoder-cache-bytes", "-1"}, "--encoder-cache-bytes"},
      {{"--max-image-bytes", "0"}, "--max-image-bytes"},
      {{"--max-image-pixels", "0"}, "--max-image-pixels"},
      {{"--structured-compile-threads", "0"}, "--structured-compile-threads: must be >= 1"},
      {{"--structured-warmup", "maybe"}, "--structured-warmup"},
      {{"--drain-grace-seconds", "-0.5"}, "--drain-grace-seconds: must be >= 0"},
      {{"--drain-grace-seconds", "soon"}, "--drain-grace-seconds"},
      {{"--seed", "-1"}, "--seed"},
      {{"--max-num-seqs", "2.5"}, "--max-num-seqs"},
      {{"--log-level", "verbose"}, "--log-level"},
      {{"--dtype", "int8"}, "--dtype"},
      {{"--device-sampling", "maybe"}, "--device-sampling"},
      {{"--tool-call-parser", "qwen9"}, "--tool-call-parser"},
      {{"--reasoning-parser", "deepthought"}, "--reasoning-parser"},
  };
  for (const auto& [bad, name] : cases) {
    std::vector<std::string> args = {"--model", "m", "--no-auth"};
    args.insert(args.end(), bad.begin(), bad.end());
    const Parsed p = Parse(args);
    EXPECT_FALSE(p.ok) << bad[0];
    EXPECT_THAT(p.error, HasSubstr(name)) << bad[0];
  }
}

TEST(ServerFlagsTest, MissingValueIsAnError) {
  for (const std::string flag :
       {"--port", "--model", "--max-num-seqs", "--log-level", "--api-keys"}) {
    const Parsed p = Parse({"--model", "m", "--no-auth", flag});
    EXPECT_FALSE(p.ok) << flag;
    EXPECT_THAT(p.error, HasSubstr(flag));
  }
  // The next flag is not taken as the value.
  const Parsed p = Parse({"--model", "--no-auth"});
  EXPECT_FALSE(p.ok);
}

TEST(ServerFlagsTest, UnknownFlagsAndArgumentsAreErrors) {
  for (const std::string bad : {"--bogus", "--max-num-seq", "-p", "stray"}) {
    const Parsed p = Parse({"--model", "m", "--no-auth", bad});
    EXPECT_FALSE(p.ok) << bad;
    EXPECT_THAT(p.error, HasSubstr(bad));
  }
}

TEST(ServerFlagsTest, ModelIsRequired) {
  const Parsed p = Parse({"--no-auth"});
  EXPECT_FALSE(p.ok);
  EXPECT_THAT(p.error, HasSubstr("--model"));
}

TEST(ServerFlagsTest, ExactlyOneOfApiKeysAndNoAuth) {
  const Parsed neither = Parse({"--model", "m"});
  EXPECT_FALSE(neither.ok);
  EXPECT_THAT(neither.error, HasSubstr("--api-keys"));
  EXPECT_THAT(neither.error, HasSubstr("--no-auth"));

  const Parsed both = Parse({"--model", "m", "--no-auth", "--api-keys", ApiKeysExample()});
  EXPECT_FALSE(both.ok);
  EXPECT_THAT(both.error, HasSubstr("--no-auth"));

  const Parsed keys = Parse({"--model", "m", "--api-keys", ApiKeysExample()});
  ASSERT_TRUE(keys.ok) << keys.error;
  EXPECT_EQ(keys.flags.options.api_keys_file, ApiKeysExample());
  EXPECT_FALSE(keys.flags.options.no_auth);

  const Parsed missing = Parse({"--model", "m", "--api-keys", "/nonexistent/keys.json"});
  EXPECT_FALSE(missing.ok);
  EXPECT_THAT(missing.error, HasSubstr("--api-keys"));
  EXPECT_THAT(missing.error, HasSubstr("/nonexistent/keys.json"));
}

TEST(ServerFlagsTest, TlsCertAndKeyGoTogether) {
  const std::string pem = ApiKeysExample();  // any existing file: contents are read at Start
  const Parsed cert_only = Parse({"--model", "m", "--no-auth", "--tls-cert", pem});
  EXPECT_FALSE(cert_only.ok);
  EXPECT_THAT(cert_only.error, HasSubstr("--tls-key"));
  const Parsed key_only = Parse({"--model", "m", "--no-auth", "--tls-key", pem});
  EXPECT_FALSE(key_only.ok);
  EXPECT_THAT(key_only.error, HasSubstr("--tls-cert"));
  const Parsed ca_only = Parse({"--model", "m", "--no-auth", "--tls-client-ca", pem});
  EXPECT_FALSE(ca_only.ok);
  EXPECT_THAT(ca_only.error, HasSubstr("--tls-cert"));
  const Parsed both = Parse({"--model", "m", "--no-auth", "--tls-cert", pem, "--tls-key", pem});
  EXPECT_TRUE(both.ok) << both.error;
}

TEST(ServerFlagsTest, HelpListsEveryFlag) {
  CLI::App app("muse-server", "muse-server");
  ServerCommandLine flags;
  AddServerFlags(app, &flags);
  const std::string help = app.help();
  for (const char* flag : {"--model",
                           "--served-model-name",
                           "--host",
                           "--port",
                           "--device",
                           "--dtype",
                           "--threads",
                           "--max-num-seqs",
                           "--max-num-batched-tokens",
                           "--max-waiting",
                           "--kv-cache-bytes",
                           "--num-kv-blocks",
                           "--max-model-len",
                           "--seed",
                           "--api-keys",
                           "--no-auth",
                           "--tls-cert",
                           "--tls-key",
                           "--tls-client-ca",
                           "--metrics-port",
                           "--max-receive-message-bytes",
                           "--encoder-cache-bytes",
                           "--max-image-bytes",
                           "--max-image-pixels",
                           "--structured-compile-threads",
                           "--structured-warmup",
                           "--structured-warmup-wait",
                           "--tool-call-parser",
                           "--reasoning-parser",
                           "--log-level",
                           "--drain-grace-seconds"}) {
    EXPECT_THAT(help, HasSubstr(flag));
  }
}

// The binary: --help on stdout with exit 0, usage errors on stderr with exit 2, failures exit 1.
struct RunResult {
  int exit_code = -1;
  std::string out, err;
};

RunResult RunServer(const std::string& args) {
  // Per process and call: ctest runs these tests as parallel processes sharing TempDir().
  static int calls = 0;
  const std::string base = ::testing::TempDir() + "/server_flags_" + std::to_string(::getpid()) +
                           "_" + std::to_string(calls++);
  const std::string out = base + "_out.txt", err = base + "_err.txt";
  const std::string cmd =
      std::string(MUSE_BIN_DIR) + "/muse-server " + args + " >" + out + " 2>" + err;
  const int rc = std::system(cmd.c_str());
  auto slurp = [](const std::string& path) {
    auto text = ReadFile(path);
    std::remove(path.c_str());
    return text.ok() ? *text : std::string();
  };
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, slurp(out), slurp(err)};
}

TEST(ServerBinaryFlagsTest, HelpGoesToStdoutAndExitsZero) {
  const RunResult r = RunServer("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("--max-num-batched-tokens"));
  EXPECT_THAT(r.out, HasSubstr("(default: 64)"));
  EXPECT_EQ(r.err, "");
}

TEST(ServerBinaryFlagsTest, UsageErrorsExitTwoWithTheFlagOnStderr) {
  RunResult r = RunServer("--model /nonexistent --no-auth --port=70000");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("muse-server: --port"));
  EXPECT_EQ(r.out, "");

  r = RunServer("--model /nonexistent --no-auth --max-num-seqs");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--max-num-seqs"));

  r = RunServer("--model /nonexistent --no-auth --bogus 1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--bogus 1"));
}

TEST(ServerBinaryFlagsTest, StartFailureExitsOneAndLogsToStderr) {
  const RunResult r = RunServer("--model /nonexistent/model --no-auth --host 127.0.0.1 --port 0");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/model"));
  EXPECT_EQ(r.out, "") << "logs belong on stderr";
}

}  // namespace
}  // namespace muse::server
