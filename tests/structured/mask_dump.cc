// Replays token paths through our JSON-schema matcher and prints the mask before every token, for
// xgrammar_masks.mjs to compare with xgrammar's. Job (JSON): {"tokenizer": path to tokenizer.json,
// "vocab_size": V, "eos": [ids], "cases": [{"name", "schema" (text), "paths": [[ids]]}]}.
// Output, one line per mask: "<case> <walk> <step> <base64 of the little-endian uint32 words>",
// or "<case> <walk> <step> error <message>" (schema rejected, or a path token we reject).
#include <cstdint>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "nlohmann/json.hpp"
#include "src/common/cli.h"
#include "src/structured/compile.h"
#include "src/structured/matcher.h"
#include "src/tokenizer/tokenizer.h"

namespace {

using muse::structured::CompiledGrammar;
using muse::structured::GrammarMatcher;

int Run(const nlohmann::json& job) {
  auto tok = muse::tokenizer::Tokenizer::FromFile(job.at("tokenizer").get<std::string>());
  if (!tok.ok()) {
    std::cerr << "mask_dump: tokenizer: " << tok.status() << "\n";
    return 1;
  }
  auto vocab = muse::structured::TokenVocabulary::FromTokenizer(
      **tok, job.at("vocab_size").get<int>(), job.at("eos").get<std::vector<int32_t>>());
  if (!vocab.ok()) {
    std::cerr << "mask_dump: vocabulary: " << vocab.status() << "\n";
    return 1;
  }
  std::vector<uint32_t> words((*vocab)->bitmask_words());
  const auto& cases = job.at("cases");
  for (size_t c = 0; c < cases.size(); ++c) {
    const auto& item = cases[c];
    auto grammar = muse::structured::CompileJsonSchema(item.at("schema").get<std::string>());
    absl::StatusOr<std::shared_ptr<const CompiledGrammar>> compiled =
        grammar.ok() ? CompiledGrammar::Create(*std::move(grammar), *vocab)
                     : absl::StatusOr<std::shared_ptr<const CompiledGrammar>>(grammar.status());
    const auto& paths = item.at("paths");
    for (size_t w = 0; w < paths.size(); ++w) {
      if (!compiled.ok()) {
        std::cout << c << " " << w << " 0 error " << compiled.status().message() << "\n";
        continue;
      }
      GrammarMatcher matcher(*compiled);
      const auto ids = paths[w].get<std::vector<int32_t>>();
      for (size_t s = 0; s <= ids.size(); ++s) {
        if (matcher.IsTerminated() && s == ids.size()) break;
        matcher.FillNextTokenBitmask(words);
        std::string bytes(reinterpret_cast<const char*>(words.data()), words.size() * 4);
        std::cout << c << " " << w << " " << s << " " << absl::Base64Escape(bytes) << "\n";
        if (s == ids.size()) break;
        if (!matcher.AcceptToken(ids[s])) {
          std::cout << c << " " << w << " " << s << " error token " << ids[s] << " rejected\n";
          break;
        }
      }
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Prints our token masks along given token paths (see xgrammar_masks.mjs).",
               "mask_dump");
  muse::cli::ConfigureApp(app);
  std::string job_path;
  app.add_option("--job", job_path, "job file (JSON)")->required()->check(CLI::ExistingFile);
  if (auto rc = muse::cli::ParseCommandLine(app, argc, argv)) return *rc;
  std::ifstream in(job_path);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json job = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (job.is_discarded()) {
    std::cerr << "mask_dump: --job: " << job_path << " is not JSON\n";
    return 1;
  }
  try {
    return Run(job);
  } catch (const nlohmann::json::exception& e) {
    std::cerr << "mask_dump: --job: " << e.what() << "\n";
    return 1;
  }
}
