// muse-tokenize --tokenizer DIR [--decode] [--no-special] TEXT|IDS
//   encode: prints comma-separated ids of TEXT (BOS etc. unless --no-special)
//   decode: IDS are comma-separated; prints the text (special tokens skipped with --no-special)
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "src/tokenizer/tokenizer.h"

namespace {

int Usage() {
  std::fprintf(stderr, "usage: muse-tokenize --tokenizer DIR [--decode] [--no-special] TEXT|IDS\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir, input;
  bool decode = false, special = true, have_input = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tokenizer" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--decode") {
      decode = true;
    } else if (a == "--no-special") {
      special = false;
    } else if (!have_input) {
      input = a;
      have_input = true;
    } else {
      return Usage();
    }
  }
  if (dir.empty() || !have_input) return Usage();
  auto tok = muse::tokenizer::Tokenizer::FromDirectory(dir);
  if (!tok.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(tok.status().message()).c_str());
    return 1;
  }
  if (decode) {
    std::vector<int32_t> ids;
    for (absl::string_view part : absl::StrSplit(input, ',', absl::SkipWhitespace())) {
      int32_t id;
      if (!absl::SimpleAtoi(part, &id)) {
        std::fprintf(stderr, "error: '%s' is not a token id\n", std::string(part).c_str());
        return 1;
      }
      ids.push_back(id);
    }
    auto text = (*tok)->Decode(ids, /*skip_special_tokens=*/!special);
    if (!text.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(text.status().message()).c_str());
      return 1;
    }
    std::fwrite(text->data(), 1, text->size(), stdout);
    std::fputc('\n', stdout);
    return 0;
  }
  auto ids = (*tok)->Encode(input, special);
  if (!ids.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(ids.status().message()).c_str());
    return 1;
  }
  std::printf("%s\n", absl::StrJoin(*ids, ",").c_str());
  return 0;
}
