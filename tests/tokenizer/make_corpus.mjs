// Deterministic conformance corpus for the tokenizer: `node make_corpus.mjs OUT.json` writes a JSON
// array of strings. Also importable (generateCorpus) by the reference and benchmark scripts.
import fs from 'fs';
import { fileURLToPath } from 'url';

// mulberry32: tiny seeded PRNG so the corpus is identical on every machine and run.
function makeRng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function generateCorpus() {
  const rnd = makeRng(20261122);
  const int = (n) => Math.floor(rnd() * n);
  const pick = (arr) => arr[int(arr.length)];
  const cp = (c) => String.fromCodePoint(c);
  const range = (lo, hi) => cp(lo + int(hi - lo + 1));
  const out = [];

  const words = ('the quick brown fox jumps over lazy dog tokenizer inference server latency throughput ' +
    'model attention cache batch stream decode encode vocabulary merge rank byte level piece sentence ' +
    'I you we they it is was were have has had do does did can could would should will shall may might ' +
    'Hello World OpenAI Llama Qwen Gemma Mistral GPU CPU NVIDIA H100 HTTP JSON API URL README CamelCase ' +
    'snake_case kebab-case don\'t won\'t it\'s we\'re they\'ve I\'m you\'ll he\'d IT\'S WE\'RE THEY\'LL ' +
    'naïve café résumé coöperate façade jalapeño Zürich São Paulo München Ærøskøbing').split(' ');
  const punct = ['.', ',', '!', '?', ';', ':', '...', ' -', ' --', '—', '–', '"', "'", '(', ')', '[', ']', '{', '}'];

  // 1. English prose.
  for (let i = 0; i < 320; i++) {
    const n = 1 + int(40);
    let s = '';
    for (let j = 0; j < n; j++) {
      let w = pick(words);
      if (rnd() < 0.1) w = w.toUpperCase();
      if (rnd() < 0.1) w = w[0].toUpperCase() + w.slice(1);
      s += (j ? ' ' : '') + w;
      if (rnd() < 0.15) s += pick(punct);
    }
    if (rnd() < 0.3) s = ' ' + s;
    if (rnd() < 0.3) s += pick(['.', '\n', ' ', '\n\n', '  ']);
    out.push(s);
  }

  // 2. Source code.
  const code = [
    'int main(int argc, char** argv) {\n  return 0;\n}\n',
    'def f(x):\n    """Docstring."""\n    return [i ** 2 for i in range(x) if i % 2 == 0]\n',
    'for (size_t i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}',
    'const add = (a, b) => a + b;\nexport default { add };\n',
    '#include <vector>\n#include "absl/status/status.h"\n\nnamespace muse {\n}  // namespace muse\n',
    'SELECT id, name FROM users WHERE age >= 18 AND name LIKE \'%son\' ORDER BY id DESC;',
    '<html><body><div class="x">Hi &amp; bye</div></body></html>',
    'fn main() { let v: Vec<u32> = (0..10).collect(); println!("{:?}", v); }',
    'if [[ -f "$FILE" ]]; then\n  echo "ok" >&2\nfi\n',
    '{"key": [1, 2.5, -3e10, true, null], "nested": {"a": "b\\n"}}',
    '    x = y  # comment\r\n    return x\r\n',
    'template <typename T> auto f(T&& t) -> decltype(auto) { return std::forward<T>(t); }',
    '$ git commit -m "fix: off-by-one in rank merge" && git push origin HEAD:refs/for/main',
    'a<<=b>>=c!==d===e**=f//=g??=h||=i&&=j->k=>l::m',
  ];
  for (let i = 0; i < 260; i++) {
    let s = pick(code);
    if (rnd() < 0.5) s = s.replace(/  /g, pick(['\t', '    ', '  ', ' ']));
    if (rnd() < 0.4) s = pick(code) + pick(['\n', '\n\n', '\r\n', '']) + s;
    if (rnd() < 0.3) s = s.repeat(1 + int(3));
    out.push(s);
  }

  // 3. Numbers and digit runs.
  for (let i = 0; i < 220; i++) {
    const kind = int(7);
    let s;
    if (kind === 0) s = String(int(1e9));
    else if (kind === 1) { s = ''; const n = 1 + int(60); for (let j = 0; j < n; j++) s += String(int(10)); }
    else if (kind === 2) s = (rnd() * 1e6).toFixed(int(8)) + ' ' + (-rnd() * 1e3).toExponential(3);
    else if (kind === 3) s = `${int(10000)},${String(int(1000)).padStart(3, '0')},${String(int(1000)).padStart(3, '0')}`;
    else if (kind === 4) s = `2026-${1 + int(12)}-${1 + int(28)}T${int(24)}:${int(60)}:${int(60)}.${int(1000)}Z`;
    else if (kind === 5) s = `v${int(10)}.${int(100)}.${int(1000)} 0x${int(0xffffffff).toString(16)} ${int(1e6)}%`;
    else s = '١٢٣ ४५६ ７８９ ⅻ ² ½ ' + String(int(1e12));
    out.push(s);
  }

  // 4. Whitespace runs, tabs, newlines.
  const ws = [' ', '  ', '\t', '\n', '\r\n', '\r', '\u00a0', '\u3000', '\u2009', '\v', '\f', '\u0085', '\u2028'];
  for (let i = 0; i < 220; i++) {
    let s = '';
    const n = 1 + int(12);
    for (let j = 0; j < n; j++) {
      const k = int(4);
      if (k === 0) s += pick(words);
      else { const r = 1 + int(k === 3 ? 40 : 4); for (let t = 0; t < r; t++) s += pick(ws.slice(0, k === 1 ? 5 : ws.length)); }
    }
    out.push(s);
  }

  // 5. CJK.
  const cjk = ['日本語のテキストです。', '我们正在测试分词器的一致性。', '한국어 문장을 토큰화합니다.', '東京都渋谷区',
    '「こんにちは」と言った。', '中华人民共和国成立于1949年', 'ｶﾀｶﾅ ﾊﾝｶｸ', '漢字かなカナ混じり文'];
  for (let i = 0; i < 220; i++) {
    let s = rnd() < 0.5 ? pick(cjk) : '';
    const n = 1 + int(30);
    for (let j = 0; j < n; j++) {
      const k = int(5);
      if (k === 0) s += range(0x4e00, 0x9fff);
      else if (k === 1) s += range(0x3041, 0x3096);
      else if (k === 2) s += range(0x30a1, 0x30fa);
      else if (k === 3) s += range(0xac00, 0xd7a3);
      else s += pick(['。', '、', ' ', '，', '！', '？', '\n', 'a', '1']);
    }
    out.push(s);
  }

  // 6. Arabic, Hindi and other scripts.
  const scripts = ['مرحبا بالعالم، هذا اختبار.', 'नमस्ते दुनिया, यह एक परीक्षण है।', 'שלום עולם', 'สวัสดีชาวโลก',
    'Привет, мир! Ёлка', 'Γειά σου Κόσμε', 'Բարեւ աշխարհ', 'გამარჯობა', 'হ্যালো বিশ্ব', 'ਸਤਿ ਸ੍ਰੀ ਅਕਾਲ', 'வணக்கம்'];
  const blocks = [[0x0600, 0x06ff], [0x0900, 0x097f], [0x0590, 0x05ff], [0x0e00, 0x0e7f], [0x0400, 0x04ff],
    [0x0370, 0x03ff], [0x0980, 0x09ff], [0x0b80, 0x0bff]];
  for (let i = 0; i < 220; i++) {
    let s = pick(scripts);
    if (rnd() < 0.6) {
      const [lo, hi] = pick(blocks);
      const n = 1 + int(25);
      for (let j = 0; j < n; j++) s += rnd() < 0.15 ? ' ' : range(lo, hi);
    }
    if (rnd() < 0.3) s = pick(words) + ' ' + s + ' ' + String(int(1000));
    out.push(s);
  }

  // 7. Emoji: ZWJ sequences, skin tones, flags, keycaps, variation selectors.
  const emoji = ['👨‍👩‍👧‍👦', '🤷🏽‍♀️', '👍🏻', '👍🏿', '🏳️‍🌈', '🇯🇵', '🇺🇸🇫🇷', '1️⃣', '❤️', '❤', '🧑🏾‍💻', '😀', '🙈🙉🙊', '👩🏼‍🤝‍👩🏻', '☺︎', '🫠'];
  for (let i = 0; i < 160; i++) {
    let s = '';
    const n = 1 + int(8);
    for (let j = 0; j < n; j++) {
      if (rnd() < 0.6) s += pick(emoji);
      else if (rnd() < 0.5) s += range(0x1f300, 0x1f64f) + (rnd() < 0.5 ? range(0x1f3fb, 0x1f3ff) : '');
      else s += ' ' + pick(words) + ' ';
    }
    out.push(s);
  }

  // 8. Combining marks (NFC matters for normalizing tokenizers).
  for (let i = 0; i < 160; i++) {
    let s = '';
    const n = 1 + int(10);
    for (let j = 0; j < n; j++) {
      const k = int(5);
      if (k === 0) s += pick(['e', 'a', 'o', 'u', 'n', 'c', 'A', 'E']) + range(0x0300, 0x036f);
      else if (k === 1) s += 'e\u0301\u0323\u0302';  // stacked marks in non-canonical order
      else if (k === 2) s += range(0x1100, 0x1112) + range(0x1161, 0x1175) + (rnd() < 0.5 ? range(0x11a8, 0x11c2) : '');
      else if (k === 3) s += pick(['é', 'ñ', 'Å', 'Ω', 'ﬁ', 'ǅ', '\u212b', '\u2126', 'q\u0307\u0323', 'ậ']);
      else s += ' ' + pick(words);
    }
    out.push(s);
  }

  // 9. Control and invisible characters.
  for (let i = 0; i < 120; i++) {
    let s = '';
    const n = 1 + int(10);
    for (let j = 0; j < n; j++) {
      const k = int(4);
      if (k === 0) s += cp(int(0x20));
      else if (k === 1) s += pick(['\x7f', '\u0085', '\u200b', '\u200c', '\u200d', '\ufeff', '\u2028', '\u2029', '\u00ad', '\u061c', '\u180e', '\ufffd', '\u0000']);
      else s += pick(words);
    }
    out.push(s);
  }

  // 10. Text that looks like special tokens (and real ones, which must match as added tokens).
  const specials = ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|start_header_id|>', '<|end_header_id|>',
    '<|reserved_special_token_5|>', '<s>', '</s>', '<unk>', '[INST]', '[/INST]', '<<SYS>>', '<|im_start|>', '<|im_end|>',
    '<|endoftext|>', '<think>', '</think>', '<tool_call>', '<bos>', '<eos>', '<start_of_turn>', '<end_of_turn>',
    '<unused12>', '<pad>', '<0x41>', '<0xZZ>', '<|begin_of', 'text|>', '<|', '|>', '<s', '</', '<mask>', '<br>', '</th>'];
  for (let i = 0; i < 260; i++) {
    let s = '';
    const n = 1 + int(8);
    for (let j = 0; j < n; j++) {
      const k = int(4);
      if (k < 2) s += pick(specials);
      else if (k === 2) s += pick([' ', '\n', '  ', '', 'user', 'assistant', '\n\n']);
      else s += pick(words) + pick(['', ' ', '.']);
    }
    out.push(s);
  }

  // 11. Very long words and runs.
  for (let i = 0; i < 110; i++) {
    const k = int(8);
    let s;
    if (k === 0) s = pick(['a', 'z', 'Q', '0', '.', '-', '=', 'é', '日']).repeat(50 + int(2000));
    else if (k === 1) { s = ''; const n = 200 + int(3000); for (let j = 0; j < n; j++) s += cp(0x61 + int(26)); }
    else if (k === 2) s = 'https://example.com/' + 'path/segment_'.repeat(20 + int(60)) + '?q=' + 'x'.repeat(int(300));
    else if (k === 3) s = 'Supercalifragilisticexpialidocious'.repeat(5 + int(40));
    else if (k === 4) s = pick([' ', '\n', '\t', '\u2581', '\r\n']).repeat(30 + int(500));
    else if (k === 5) s = 'Pneumonoultramicroscopicsilicovolcanoconiosis' + 'ab'.repeat(int(800));
    else if (k === 6) { s = ''; const n = 100 + int(1500); for (let j = 0; j < n; j++) s += range(0x4e00, 0x9fff); }
    else s = pick(words).repeat(20 + int(200));
    out.push(s);
  }

  // 12. Random valid UTF-8 (code points from every plane, no surrogates).
  for (let i = 0; i < 320; i++) {
    let s = '';
    const n = 1 + int(40);
    for (let j = 0; j < n; j++) {
      const k = int(6);
      let c;
      if (k === 0) c = int(0x80);
      else if (k === 1) c = 0x80 + int(0x780);
      else if (k === 2) c = 0x800 + int(0xf800);
      else if (k === 3) c = 0x10000 + int(0x20000);
      else if (k === 4) c = int(0x110000);
      else c = 0x20 + int(0x5f);
      if (c >= 0xd800 && c <= 0xdfff) c = 0xe000 + (c - 0xd800);
      s += cp(c);
    }
    out.push(s);
  }

  // 13. Mixtures of everything above, plus edge cases.
  const base = out.slice();
  for (let i = 0; i < 220; i++) {
    const n = 2 + int(4);
    let s = '';
    for (let j = 0; j < n; j++) s += pick(base).slice(0, 200) + pick(['', ' ', '\n', '<|eot_id|>', '<s>', '\u2581']);
    out.push(s);
  }
  out.push('', ' ', '  ', '\n', '\t', 'a', '\u2581', '\u2581\u2581 x', ' \u2581', '\u0000', 'é', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '\u{10ffff}', '\u{e000}');
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const corpus = generateCorpus();
  fs.writeFileSync(process.argv[2] || 'corpus.json', JSON.stringify(corpus));
  console.log(`wrote ${corpus.length} strings`);
}
