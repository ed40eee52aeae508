// bench/engagement.mjs [CONTACTS] -- what happens after the send, at the issue's sizes.
//
//   node bench/engagement.mjs 1000000
//
// 1. The contacts of bench/send.mjs (cached in bench/out/data-send-CONTACTS, made there
//    or here), copied into a fresh data directory; smtp-sink on loopback as the provider.
// 2. `engage serve` with a SendGrid webhook ([webhook:sg], a P-256 key made here), sends
//    campaign A to every contact and waits for it to end.
// 3. Webhooks: SendGrid-format bodies of 1,000 events (delivered, open, click for run A's
//    messages), signed, from 2 concurrent clients; events/s from the first POST until the
//    inbox is drained (verified, stored, applied: durable).
// 4. Tracking: sends campaign B to every contact and, while it sends, drives the open
//    pixel and the click redirect of run A's messages with build/hit-load (32 clients,
//    20 s): hits/s and latency percentiles; campaign B's own rate meanwhile.
// 5. Reads: the funnel and the hourly time series of run A (1,000,000 messages), 200
//    times each: median and p99.
// Results go in docs/benchmarks.md by hand.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync, readFileSync, rmSync, cpSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import { generateKeyPairSync, createSign } from 'node:crypto';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = process.env.ENGAGE_BIN || join(root, 'build', 'engage');
const HITLOAD = join(root, 'build', 'hit-load');
const N = Number(process.argv[2] || 1000000);
const gen = join(root, 'bench', 'out', `gen-${N}-0`);
const cached = join(root, 'bench', 'out', `data-send-${N}`);
const data = join(root, 'bench', 'out', 'data-engagement-run');
const WEBHOOK_EVENTS = Number(process.env.WEBHOOK_EVENTS || 400000);

const run = (args, opts = {}) => {
  const r = spawnSync(BIN, ['--data', opts.data || data, ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`engage ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
const freePort = () => new Promise((res) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(s.length * p))]; };

// ---- data --------------------------------------------------------------------------------
if (!existsSync(join(gen, 'contacts.csv'))) {
  spawnSync(BIN, ['bench', 'gen', '--contacts', String(N), '--events', '0', '--seed', '42', '--out', gen,
    '--now', '2026-11-01T00:00:00Z'], { stdio: 'inherit' });
}
if (!existsSync(join(cached, 'engage.db'))) {
  run(['migrate'], { data: cached });
  run(['import', 'contacts', join(gen, 'contacts.csv'), '--no-progress'], { data: cached });
}
rmSync(data, { recursive: true, force: true });
cpSync(cached, data, { recursive: true });
run(['migrate']);

// ---- the sink, the key, the server -------------------------------------------------------------
const sinkPort = await freePort();
const sink = spawn('/usr/sbin/smtp-sink', ['-u', 'nobody', '-c', `127.0.0.1:${sinkPort}`, '1000'], { stdio: ['ignore', 'ignore', 'inherit'] });
await sleep(300);
const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
writeFileSync(join(data, 'sg.pub'), publicKey.export({ type: 'spki', format: 'der' }).toString('base64') + '\n');
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
writeFileSync(join(data, 'engage.conf'), `[server]\npublic_url = ${url}\n` +
  `[provider:sink]\ntype = smtp\nurl = smtp://127.0.0.1:${sinkPort}\nrate_per_second = 100000\nmax_connections = 8\n` +
  `[webhook:sg]\ntype = sendgrid\npublic_key_file = ${join(data, 'sg.pub')}\n`);
const key = JSON.parse(run(['apikey', 'create', '--role', 'admin', '--name', 'bench', '--json'])).key;
const srv = spawn(BIN, ['--data', data, 'serve', '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'inherit'] });
const api = async (method, path, body) => {
  const r = await fetch(url + path, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const j = await r.json().catch(() => null);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(j)}`);
  return j;
};
for (;;) {
  const r = await fetch(url + '/readyz').catch(() => null);
  if (r && r.status === 200) break;
  await sleep(200);
}
const seg = await api('POST', '/api/v1/segments', { name: 'everyone', rules: { type: 'attribute', field: 'ltv', op: 'gte', value: 0 } });
const tpl = await api('POST', '/api/v1/templates', {
  name: 'bench', subject: 'Hello {{ first_name | default: "there" }}',
  html: '<html><body><h1>Hi {{ first_name }}</h1>' + '<p>Lorem ipsum dolor sit amet. '.repeat(20) +
    '<a href="https://shop.example.com/sale?utm_source=engage">Sale</a></p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>',
  from_email: 'news@example.com',
});
const sendAll = async (name) => {
  const c = await api('POST', '/api/v1/campaigns', { name, segment_id: seg.id, template_id: tpl.id, provider: 'sink' });
  return api('POST', `/api/v1/campaigns/${c.id}/send`);
};
const waitEnd = async (id) => {
  for (;;) {
    const r = await api('GET', `/api/v1/campaign-runs/${id}`);
    if (!['scheduled', 'running'].includes(r.state)) return r;
    await sleep(500);
  }
};
let t = performance.now();
const runA = await sendAll('A');
const a = await waitEnd(runA.id);
console.log(`run A (${a.id}): ${a.counts.sent} sent in ${((performance.now() - t) / 1000).toFixed(1)} s`);

// ---- webhooks ---------------------------------------------------------------------------------
const kinds = ['delivered', 'open', 'click'];
const bodies = [];
for (let b = 0; b < WEBHOOK_EVENTS / 1000; b++) {
  const evs = [];
  for (let i = 0; i < 1000; i++) {
    const k = b * 1000 + i, contact = 1 + (k % N), kind = kinds[Math.floor(k / N) % 3];
    const ev = { email: `c${contact}@example.com`, timestamp: Math.floor(Date.now() / 1000), event: kind,
      sg_event_id: `bench-${k}`, sg_message_id: `q${k}.filter0001`, engage_message_id: `${a.id}.${contact}` };
    if (kind === 'click') ev.url = 'https://shop.example.com/sale';
    evs.push(ev);
  }
  bodies.push(JSON.stringify(evs));
}
const post = async (raw) => {
  const ts = String(Math.floor(Date.now() / 1000));
  const sig = createSign('SHA256').update(ts + raw).sign(privateKey).toString('base64');
  const r = await fetch(url + '/webhooks/sg', { method: 'POST', body: raw, headers: { 'content-type': 'application/json',
    'x-twilio-email-event-webhook-timestamp': ts, 'x-twilio-email-event-webhook-signature': sig } });
  if (r.status !== 200) throw new Error(`webhook: ${r.status} ${await r.text()}`);
};
t = performance.now();
let next = 0;
await Promise.all([0, 1].map(async () => { while (next < bodies.length) await post(bodies[next++]); }));
const posted = (performance.now() - t) / 1000;
for (;;) {
  const q = await api('GET', '/api/v1/ops/queues');
  if (q.webhook_inbox.pending === 0) break;
  await sleep(50);
}
const drained = (performance.now() - t) / 1000;
console.log(`webhooks: ${WEBHOOK_EVENTS} SendGrid events in ${bodies.length} signed POSTs of 1,000 from 2 clients: ` +
  `stored in ${posted.toFixed(1)} s (${Math.round(WEBHOOK_EVENTS / posted)} events/s), applied by ${drained.toFixed(1)} s ` +
  `= ${Math.round(WEBHOOK_EVENTS / drained)} events/s processed and durable`);

// ---- tracking while a campaign sends ------------------------------------------------------------
const paths = join(data, 'paths.txt');
const opens = run(['bench', 'tokens', '--run', String(a.id), '--kind', 'open', '--contacts', `1-${Math.min(N, 200000)}`]);
const clicks = run(['bench', 'tokens', '--run', String(a.id), '--kind', 'click', '--contacts', `1-${Math.min(N, 100000)}`]);
writeFileSync(paths, opens + clicks);
const HL = [url, paths, process.env.SECONDS || '20', process.env.CLIENTS || '32', process.env.RATE || '20000'];
// How far the writer is behind: hits kept in the journal, not yet applied.
const lag = () => {
  const size = spawnSync('stat', ['-c', '%s', join(data, 'tracking.journal')], { encoding: 'utf8' }).stdout.trim();
  const r = spawnSync('sqlite3', [join(data, 'engage.db'), "SELECT applied FROM journals WHERE name = 'tracking'"], { encoding: 'utf8' });
  return Number(size) - Number(r.stdout.trim() || 0);
};
const idle = spawnSync(HITLOAD, HL, { encoding: 'utf8' });
process.stdout.write(`tracking, nothing else running (${HL[4]} hits/s offered): ${idle.stdout}`);
console.log(`journal bytes not yet applied at the end: ${lag()}`);
const runB = await sendAll('B');
for (;;) { // sending
  const r = await api('GET', `/api/v1/campaign-runs/${runB.id}`);
  if (r.counts.sent > 1000) break;
  await sleep(100);
}
const b0 = (await api('GET', `/api/v1/campaign-runs/${runB.id}`)).counts.sent;
t = performance.now();
const hl = spawnSync(HITLOAD, HL, { encoding: 'utf8' });
const b1 = (await api('GET', `/api/v1/campaign-runs/${runB.id}`)).counts.sent;
process.stdout.write(`tracking while run B sends (${HL[4]} hits/s offered): ${hl.stdout}`);
console.log(`journal bytes not yet applied at the end: ${lag()}`);
console.log(`run B meanwhile: ${Math.round((b1 - b0) / ((performance.now() - t) / 1000))} messages/s`);
await waitEnd(runB.id);

// ---- reads --------------------------------------------------------------------------------------
const timed = async (path, n = 200) => {
  const l = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await api('GET', path);
    l.push(performance.now() - t0);
  }
  return `p50 ${pct(l, 0.5).toFixed(2)} ms, p99 ${pct(l, 0.99).toFixed(2)} ms`;
};
const f = await api('GET', `/api/v1/campaign-runs/${a.id}/funnel`);
console.log(`run A's funnel: ${JSON.stringify(f.counts)}`);
console.log(`funnel of run A (${a.counts.sent} messages): ${await timed(`/api/v1/campaign-runs/${a.id}/funnel`)}`);
console.log(`hourly time series of run A, last 2 days, Asia/Kolkata: ${await timed(`/api/v1/campaign-runs/${a.id}/timeseries?bucket=hour&tz=Asia/Kolkata&from=${new Date(Date.now() - 2 * 86400000).toISOString()}`)}`);
console.log(`campaign funnel: ${await timed(`/api/v1/campaigns/${a.campaign_id}/funnel`)}`);
console.log(`overview (30 days): ${await timed('/api/v1/analytics/overview', 50)}`);
srv.kill('SIGTERM');
sink.kill('SIGTERM');
