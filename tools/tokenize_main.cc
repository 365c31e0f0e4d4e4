// muse-tokenize --tokenizer DIR [--decode] [--no-special] [--] TEXT|IDS
//   encode: prints comma-separated ids of TEXT (BOS etc. unless --no-special)
//   decode: IDS are comma-separated; prints the text (special tokens skipped with --no-special)
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "src/common/cli.h"
#include "src/common/logging.h"
#include "src/tokenizer/tokenizer.h"

namespace {

using muse::cli::kExitFailure;
using muse::cli::kExitUsage;

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "muse-tokenize: %s\n", std::string(st.message()).c_str());
  return kExitFailure;
}

}  // namespace

int main(int argc, char** argv) try {
  muse::InitLogging("warn");
  std::string dir, input;
  bool decode = false, no_special = false;
  CLI::App app("Encodes text to token ids or decodes ids to text with a tokenizer.json.",
               "muse-tokenize");
  muse::cli::ConfigureApp(app);
  app.add_option("--tokenizer", dir, "directory holding tokenizer.json")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_flag("--decode", decode, "INPUT is comma-separated ids; print their text");
  app.add_flag("--no-special", no_special,
               "encode: no BOS or other special tokens; decode: skip special tokens");
  app.add_option("input", input,
                 "TEXT to encode, or IDS to decode (after -- when it starts with -)")
      ->required();
  if (auto rc = muse::cli::ParseCommandLine(app, argc, argv)) return *rc;

  auto tok = muse::tokenizer::Tokenizer::FromDirectory(dir);
  if (!tok.ok()) return Fail(tok.status());
  if (decode) {
    std::vector<int32_t> ids;
    for (absl::string_view part : absl::StrSplit(input, ',', absl::SkipWhitespace())) {
      int32_t id;
      if (!absl::SimpleAtoi(part, &id)) {
        std::fprintf(stderr, "muse-tokenize: '%s' is not a token id\n", std::string(part).c_str());
        return kExitUsage;
      }
      ids.push_back(id);
    }
    auto text = (*tok)->Decode(ids, /*skip_special_tokens=*/no_special);
    if (!text.ok()) return Fail(text.status());
    std::fwrite(text->data(), 1, text->size(), stdout);
    std::fputc('\n', stdout);
    return 0;
  }
  auto ids = (*tok)->Encode(input, /*add_special_tokens=*/!no_special);
  if (!ids.ok()) return Fail(ids.status());
  std::printf("%s\n", absl::StrJoin(*ids, ",").c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "muse-tokenize: %s\n", e.what());
  return 1;
}
