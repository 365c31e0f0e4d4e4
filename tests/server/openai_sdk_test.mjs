// The official `openai` npm SDK (tests/node, pinned 6.30.1) against a real muse-server over
// loopback: a LLaVA-layout tiny model written by muse-make-model, --http-port, an API-key file.
// Run by ctest (tests/server/CMakeLists.txt):
//   node openai_sdk_test.mjs --server BIN --make-model BIN --tokenizer DIR --node-modules DIR
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import zlib from 'node:zlib';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const require = createRequire(path.join(path.resolve(args['node-modules']), 'x.js'));
const { default: OpenAI } = await import(require.resolve('openai'));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muse_openai_sdk_'));
const modelDir = path.join(dir, 'muse-tiny');
let server;
let httpPort;
let metricsPort;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// An 8-bit RGB PNG of w x h pixels as a data: URI; `stored` = deflate level 0 (as large as the pixels).
function pngDataUri(w, h, seed, stored = false) {
  const crcChunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const raw = Buffer.alloc(h * (1 + 3 * w));
  for (let y = 0; y < h; ++y) {
    for (let x = 0; x < 3 * w; ++x) raw[y * (1 + 3 * w) + 1 + x] = (x * 7 + y * 13 + seed * 101) & 0xff;
  }
  const png = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    crcChunk('IHDR', ihdr),
    crcChunk('IDAT', zlib.deflateSync(raw, { level: stored ? 0 : 6 })),
    crcChunk('IEND', Buffer.alloc(0)),
  ]);
  return `data:image/png;base64,${png.toString('base64')}`;
}

async function metrics() {
  const r = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  return r.text();
}
function metric(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{') && l.includes(name));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

const client = (key = 'sk-test') => new OpenAI({ apiKey: key, baseURL: `http://127.0.0.1:${httpPort}/v1`, maxRetries: 0 });

before(async () => {
  execFileSync(args['make-model'], ['--preset', 'llava-tiny', '--seed', '0', '--out', modelDir, '--tokenizer', args.tokenizer], { stdio: ['ignore', 'ignore', 'inherit'] });
  fs.writeFileSync(path.join(dir, 'keys.json'), JSON.stringify({
    'sk-test': { tenant: 'sdk' },
    'sk-limited': { tenant: 'limited', requests_per_minute: 1 },
  }));
  httpPort = await freePort();
  metricsPort = await freePort();
  server = spawn(args.server, ['--model', modelDir, '--served-model-name', 'muse-tiny', '--host', '127.0.0.1', '--port', '0', '--http-port', String(httpPort),
    '--metrics-port', String(metricsPort), '--max-image-bytes', '65536', '--api-keys', path.join(dir, 'keys.json'), '--threads', '1', '--num-kv-blocks', '512', '--log-level', 'warn'],
  { stdio: ['ignore', 'inherit', 'inherit'] });
  for (let i = 0; i < 600; ++i) {
    try {
      const r = await fetch(`http://127.0.0.1:${httpPort}/health`);
      if (r.status === 200) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('muse-server did not become healthy');
});

after(() => {
  server?.kill('SIGTERM');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('models.list', async () => {
  const page = await client().models.list();
  assert.deepEqual(page.data.map((m) => m.id), ['muse-tiny']);
  assert.equal(page.data[0].object, 'model');
  const m = await client().models.retrieve('muse-tiny');
  assert.equal(m.id, 'muse-tiny');
});

test('chat, not streamed', async () => {
  const r = await client().chat.completions.create({
    model: 'muse-tiny', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello!' }],
    max_completion_tokens: 8, temperature: 0, seed: 3,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('chat streamed, n=2, include_usage: matches the unary answer', async () => {
  const body = { model: 'muse-tiny', messages: [{ role: 'user', content: 'Count to five' }], max_tokens: 6, temperature: 0, ignore_eos: true };
  const unary = await client().chat.completions.create(body);
  const stream = await client().chat.completions.create({ ...body, n: 2, stream: true, stream_options: { include_usage: true } });
  const text = ['', ''];
  const finish = [null, null];
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    ++chunks;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.choices.length === 0) {
      usage = chunk.usage;
      continue;
    }
    assert.equal(chunk.usage, null);
    for (const c of chunk.choices) {
      assert.equal(finish[c.index], null, 'nothing after finish_reason');
      text[c.index] += c.delta.content ?? '';
      finish[c.index] = c.finish_reason;
    }
  }
  assert.ok(chunks >= 3);
  assert.deepEqual(finish, ['length', 'length']);
  assert.equal(text[0], unary.choices[0].message.content);
  assert.equal(text[1], text[0]);
  assert.equal(usage.completion_tokens, 12);
  assert.equal(typeof usage.prompt_tokens_details.cached_tokens, 'number');
});

test('completions: string, array of prompts, token ids, streamed', async () => {
  const one = await client().completions.create({ model: 'muse-tiny', prompt: 'Once upon a time', max_tokens: 5, temperature: 0, ignore_eos: true });
  assert.equal(one.object, 'text_completion');
  assert.equal(one.choices[0].finish_reason, 'length');
  const many = await client().completions.create({ model: 'muse-tiny', prompt: ['a', 'b', 'c'], max_tokens: 2 });
  assert.deepEqual(many.choices.map((c) => c.index), [0, 1, 2]);
  const ids = await client().completions.create({ model: 'muse-tiny', prompt: [128000, 9906, 1917], max_tokens: 3, logprobs: 2, temperature: 0, ignore_eos: true });
  assert.equal(ids.choices[0].logprobs.tokens.length, 3);
  assert.equal(ids.choices[0].logprobs.token_logprobs.length, 3);
  let streamed = '';
  for await (const c of await client().completions.create({ model: 'muse-tiny', prompt: 'Once upon a time', max_tokens: 5, temperature: 0, ignore_eos: true, stream: true })) {
    streamed += c.choices[0]?.text ?? '';
  }
  assert.equal(streamed, one.choices[0].text);
});

test('chat logprobs', async () => {
  const r = await client().chat.completions.create({ model: 'muse-tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, logprobs: true, top_logprobs: 3, ignore_eos: true });
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, 3);
  for (const t of lp) {
    assert.equal(typeof t.token, 'string');
    assert.ok(t.logprob <= 0);
    assert.ok(Array.isArray(t.bytes));
    assert.equal(t.top_logprobs.length, 3);
  }
});

test('structured output: response_format json_schema through chat.completions.parse, validated by ajv', async () => {
  const { default: Ajv } = await import(require.resolve('ajv'));
  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 8 },
      age: { type: 'integer', minimum: 0, maximum: 99 },
      tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, maxItems: 3 },
      address: { $ref: '#/definitions/address' },
    },
    required: ['name', 'age', 'address'],
    additionalProperties: false,
    definitions: {
      address: { type: 'object', properties: { zip: { type: 'string', pattern: '^[0-9]{5}$' } }, required: ['zip'], additionalProperties: false },
    },
  };
  const validate = new Ajv({ strict: false }).compile(schema);
  // parse() JSON-parses message.content into message.parsed (and throws on finish_reason length).
  const r = await client().chat.completions.parse({
    model: 'muse-tiny', messages: [{ role: 'user', content: 'Describe a person.' }],
    max_completion_tokens: 200, temperature: 1, n: 3,
    response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema } },
  });
  assert.equal(r.choices.length, 3);
  for (const c of r.choices) {
    assert.equal(c.finish_reason, 'stop');
    assert.ok(validate(c.message.parsed), `${c.message.content}: ${JSON.stringify(validate.errors)}`);
  }
  // An unsupported keyword: the SDK's BadRequestError, param naming the field.
  await assert.rejects(
    client().chat.completions.create({
      model: 'muse-tiny', messages: [{ role: 'user', content: 'x' }], max_completion_tokens: 4,
      response_format: { type: 'json_schema', json_schema: { name: 'bad', schema: { type: 'object', patternProperties: { x: {} } } } },
    }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'response_format.json_schema.schema' && /patternProperties/.test(e.message));
  const m = await metrics();
  assert.ok(metric(m, 'muse_grammar_cache_misses_total') >= 2);
});

test('tool calls: tool_choice required streamed through the SDK stream helper, a named function not streamed', async () => {
  const { default: Ajv } = await import(require.resolve('ajv'));
  const ajv = new Ajv({ strict: false });
  const params = {
    get_weather: { type: 'object', properties: { city: { type: 'string', maxLength: 8 }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'], additionalProperties: false },
    add: { type: 'object', properties: { a: { type: 'integer', minimum: 0, maximum: 99 }, b: { type: 'integer', minimum: 0, maximum: 99 } }, required: ['a', 'b'], additionalProperties: false },
  };
  const tools = Object.entries(params).map(([name, parameters]) => ({ type: 'function', function: { name, description: `the ${name} tool`, parameters } }));
  const checkCalls = (choice) => {
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.ok(choice.message.tool_calls.length >= 1);
    for (const call of choice.message.tool_calls) {
      assert.equal(call.type, 'function');
      assert.match(call.id, /^call_[A-Za-z0-9]{24}$/);
      const validate = ajv.compile(params[call.function.name]);
      assert.ok(validate(JSON.parse(call.function.arguments)), `${call.function.name}(${call.function.arguments}): ${JSON.stringify(validate.errors)}`);
    }
  };
  // The SDK's stream helper accumulates tool_calls deltas (it throws on a malformed one).
  const stream = client().chat.completions.stream({
    model: 'muse-tiny', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, tool_choice: 'required',
    max_completion_tokens: 300, temperature: 1, seed: 5, n: 2,
  });
  const argDeltas = [];
  stream.on('tool_calls.function.arguments.delta', (e) => argDeltas.push(e.arguments_delta));
  const streamed = await stream.finalChatCompletion();
  assert.equal(streamed.choices.length, 2);
  for (const c of streamed.choices) checkCalls(c);
  assert.ok(argDeltas.length > 0, 'argument deltas were streamed');
  // A named function, not streamed: one call to it.
  const r = await client().chat.completions.create({
    model: 'muse-tiny', messages: [{ role: 'user', content: 'Add two numbers.' }], tools,
    tool_choice: { type: 'function', function: { name: 'add' } }, max_completion_tokens: 100, temperature: 1, seed: 6,
  });
  checkCalls(r.choices[0]);
  assert.equal(r.choices[0].message.tool_calls.length, 1);
  assert.equal(r.choices[0].message.tool_calls[0].function.name, 'add');
  assert.equal(r.choices[0].message.content, null);
  // The next turn: the SDK's assistant message (content null, tool_calls) and the tool's result go
  // back as the history.
  const call = r.choices[0].message.tool_calls[0];
  const next = await client().chat.completions.create({
    model: 'muse-tiny', tools, max_completion_tokens: 4, temperature: 0,
    messages: [{ role: 'user', content: 'Add two numbers.' }, r.choices[0].message,
      { role: 'tool', tool_call_id: call.id, content: '42' }],
  });
  assert.ok(next.usage.prompt_tokens > r.usage.prompt_tokens);
  await assert.rejects(
    client().chat.completions.create({
      model: 'muse-tiny', tools, messages: [{ role: 'user', content: 'x' },
        { role: 'assistant', content: null, tool_calls: [{ ...call, function: { name: 'add', arguments: '{"a": ' } }] }],
    }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'messages[1].tool_calls[0].function.arguments');
  await assert.rejects(
    client().chat.completions.create({ model: 'muse-tiny', messages: [{ role: 'user', content: 'x' }], tools, tool_choice: { type: 'function', function: { name: 'nope' } } }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'tool_choice.function.name');
});

test('images as data: URIs', async () => {
  const image = pngDataUri(40, 30, 1);
  const msg = { role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: image } }] };
  const r = await client().chat.completions.create({ model: 'muse-tiny', messages: [msg], max_tokens: 4, temperature: 0, ignore_eos: true });
  assert.equal(r.choices[0].finish_reason, 'length');
  const again = await client().chat.completions.create({ model: 'muse-tiny', messages: [msg], max_tokens: 4, temperature: 0, ignore_eos: true });
  assert.equal(again.choices[0].message.content, r.choices[0].message.content);
  assert.ok(again.usage.prompt_tokens_details.cached_tokens > 0, 'the same image hits the prefix cache');
  await assert.rejects(client().chat.completions.create({
    model: 'muse-tiny', max_tokens: 2,
    messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] }],
  }), (e) => e instanceof OpenAI.BadRequestError && e.param === 'messages[0].content[0].image_url');
  // Over --max-image-bytes (64 KiB here): 413 naming the part.
  await assert.rejects(client().chat.completions.create({
    model: 'muse-tiny', max_tokens: 2,
    messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: pngDataUri(200, 150, 2, true) } }] }],
  }), (e) => e instanceof OpenAI.APIError && e.status === 413 && e.param === 'messages[0].content[0].image_url');
});

test('errors are the SDK typed exceptions', async () => {
  await assert.rejects(
    client().chat.completions.create({ model: 'muse-tiny', messages: [{ role: 'user', content: 'x' }], top_p: 0 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'top_p' && /top_p/.test(e.message));
  await assert.rejects(
    client().chat.completions.create({ model: 'muse-tiny', messages: [{ role: 'user', content: 'x' }], response_format: { type: 'yaml' } }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'response_format.type');
  await assert.rejects(client('sk-wrong').models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  await assert.rejects(
    client().chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.param === 'model');
  await client('sk-limited').chat.completions.create({ model: 'muse-tiny', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 });
  await assert.rejects(
    client('sk-limited').chat.completions.create({ model: 'muse-tiny', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }),
    (e) => e instanceof OpenAI.RateLimitError && e.status === 429 && e.headers.get('retry-after') !== null);
});

test('client abort mid-stream frees the request', async () => {
  const controller = new AbortController();
  const stream = await client().chat.completions.create(
    { model: 'muse-tiny', messages: [{ role: 'user', content: 'Write a long story' }], max_tokens: 1000, ignore_eos: true, stream: true },
    { signal: controller.signal });
  let n = 0;
  // The SDK ends the iteration quietly when its own signal aborts it.
  for await (const chunk of stream) {
    assert.equal(chunk.choices[0].finish_reason, null);
    if (++n === 2) controller.abort();
  }
  assert.ok(n < 100, `${n} chunks after the abort`);
  let m = '';
  for (let i = 0; i < 100; ++i) {
    m = await metrics();
    if (metric(m, 'muse_num_requests_running') === 0 && /code="CANCELLED"/.test(m)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(metric(m, 'muse_num_requests_running'), 0, m);
  assert.match(m, /muse_requests_total\{method="POST \/v1\/chat\/completions",code="CANCELLED"\} 1/);
  assert.match(m, /muse_generations_total\{finish_reason="abort"\} 1/);
});
