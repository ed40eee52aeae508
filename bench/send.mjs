// bench/send.mjs [CONTACTS] -- the send pipeline end to end, against Postfix's smtp-sink.
//
//   node bench/send.mjs 1000000
//
// 1. Generates CONTACTS contacts (`engage bench gen`, cached in bench/out/) and imports
//    them into a fresh data directory (cached too: bench/out/data-send-CONTACTS).
// 2. Starts smtp-sink on loopback (Debian's postfix, run as a helper, never as the
//    machine's mail server) and measures its ceiling with smtp-source (8 sessions,
//    connections reused, 100,000 messages of 2 KB) in this same run.
// 3. Starts `engage serve` with one smtp provider pointed at the sink, no throttle
//    (rate_per_second 100000, 8 connections), creates a template, a segment holding
//    every contact (ltv >= 0) and a campaign, and sends it while a client keeps calling
//    the tracking API and the segment preview (their p99 during the run).
// 4. Sends a second campaign, throttled at THROTTLE (2000) messages/s, to the contacts in
//    Pune, and prints the rate it kept.
// Prints: launch latency (send request -> first message accepted by the sink, from the
// sink's own counter), throughput (messages/s over the run, against the sink's
// ceiling), the server's resident memory before, at its peak and after, and the p99s.
// Results go in docs/benchmarks.md by hand.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync, readFileSync, rmSync, cpSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = process.env.ENGAGE_BIN || join(root, 'build', 'engage');
const N = Number(process.argv[2] || 1000000);
const gen = join(root, 'bench', 'out', `gen-${N}-0`);
const cached = join(root, 'bench', 'out', `data-send-${N}`);
const data = join(root, 'bench', 'out', 'data-send-run');

const run = (args, opts = {}) => {
  const r = spawnSync(BIN, ['--data', opts.data || data, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`engage ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
const freePort = () => new Promise((res) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rssMiB = (pid) => {
  const t = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+)/m.exec(t)[1]) / 1024;
};
const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(s.length * p))]; };

// ---- data -------------------------------------------------------------------------------
if (!existsSync(join(gen, 'contacts.csv'))) {
  console.error(`generating ${N} contacts into ${gen}`);
  spawnSync(BIN, ['bench', 'gen', '--contacts', String(N), '--events', '0', '--seed', '42', '--out', gen,
    '--now', '2026-11-01T00:00:00Z'], { stdio: 'inherit' });
}
if (!existsSync(join(cached, 'engage.db'))) {
  console.error(`importing into ${cached}`);
  run(['migrate'], { data: cached });
  run(['import', 'contacts', join(gen, 'contacts.csv'), '--no-progress'], { data: cached });
}
rmSync(data, { recursive: true, force: true });
cpSync(cached, data, { recursive: true });

// ---- the sink and its ceiling -------------------------------------------------------------
const SINK = '/usr/sbin/smtp-sink', SOURCE = '/usr/sbin/smtp-source';
if (!existsSync(SINK)) throw new Error('needs postfix (scripts/install-deps.sh --test installs it)');
const sinkPort = await freePort();
const sink = spawn(SINK, ['-u', 'nobody', '-c', `127.0.0.1:${sinkPort}`, '1000'], { stdio: ['ignore', 'pipe', 'inherit'] });
let mesg = 0;
sink.stdout.on('data', (d) => {
  const all = [...String(d).matchAll(/mesg=(\d+)/g)];
  if (all.length) mesg = Math.max(mesg, Number(all[all.length - 1][1]));
});
await sleep(300);
let t = performance.now();
// Asynchronously: the sink's counters keep coming on its stdout, which this process must
// keep reading (a full pipe would stop the sink, and smtp-source with it).
await new Promise((res) => spawn(SOURCE, ['-d', '-s', '8', '-m', '100000', '-l', '2000', `127.0.0.1:${sinkPort}`],
  { stdio: 'ignore' }).on('exit', res));
const ceiling = 100000 / ((performance.now() - t) / 1000);
console.log(`smtp-source -d -s 8 -m 100000 -l 2000: ${Math.round(ceiling)} messages/s (the sink's ceiling here)`);
await sleep(200);
const base = mesg;

// ---- the server ------------------------------------------------------------------------------
writeFileSync(join(data, 'engage.conf'), `[server]\npublic_url = http://127.0.0.1:1\n` +
  `[provider:sink]\ntype = smtp\nurl = smtp://127.0.0.1:${sinkPort}\nrate_per_second = 100000\nmax_connections = ${process.env.CONNS || 8}\n`);
const key = JSON.parse(run(['apikey', 'create', '--role', 'admin', '--name', 'bench', '--json'])).key;
const wkey = JSON.parse(run(['apikey', 'create', '--role', 'ingest', '--name', 'bench-ingest', '--json'])).key;
const srv = spawn(BIN, ['--data', data, 'serve', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise((res) => {
  let out = '';
  srv.stdout.on('data', (d) => { out += d; const m = /listening on (http:\S+)/.exec(out); if (m) res(m[1]); });
});
const api = async (method, path, body, k = key) => {
  const r = await fetch(url + path, { method, headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const j = await r.json().catch(() => null);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(j)}`);
  return j;
};
for (;;) { // the audience index loads first
  const r = await fetch(url + '/readyz');
  if (r.status === 200) break;
  await sleep(200);
}
const rules = { op: 'AND', rules: [{ type: 'attribute', field: 'ltv', op: 'gte', value: 0 }] };
const seg = await api('POST', '/api/v1/segments', { name: 'everyone', rules });
const tpl = await api('POST', '/api/v1/templates', {
  name: 'bench', subject: 'Hello {{ first_name | default: "there" }}, news from {{ city }}',
  html: '<html><body><h1>Hi {{ first_name }}</h1>' + '<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(20) +
    '</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>',
  from_email: 'news@example.com', from_name: 'Bench News',
});
const camp = await api('POST', '/api/v1/campaigns', { name: 'bench', segment_id: seg.id, template_id: tpl.id, provider: 'sink' });

// ---- the run, with a client on the other routes ------------------------------------------
const rss0 = rssMiB(srv.pid);
let rssPeak = rss0, stop = false;
const lat = { track: [], preview: [] };
const cpuOf = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; };
const cpu0 = cpuOf(srv.pid);
const startClient = async () => {
  let i = 0;
  while (!stop && !process.env.NOCLIENT) {
    let t0 = performance.now();
    await fetch(url + '/v1/track', { method: 'POST', headers: { authorization: 'Basic ' + Buffer.from(wkey + ':').toString('base64'),
      'content-type': 'application/json' }, body: JSON.stringify({ userId: `c${String(1 + (i % N)).padStart(7, '0')}`, event: 'page_viewed',
      messageId: `bench-${Date.now()}-${i}`, properties: { path: '/x' } }) });
    lat.track.push(performance.now() - t0);
    if (i % 10 === 0) {
      t0 = performance.now();
      await fetch(url + '/api/v1/segments/preview', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ rules: { op: 'AND', rules: [{ type: 'attribute', field: 'city', op: 'eq', value: 'Pune' }] } }) });
      lat.preview.push(performance.now() - t0);
    }
    i++;
    await sleep(5);
  }
};
let client = null;
const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, rssMiB(srv.pid)); }, 100);
t = performance.now();
const tWall = Date.now();
const sent = await api('POST', `/api/v1/campaigns/${camp.id}/send`);
// The first message the sink accepted: the first ledger row recorded sent (its stamp is
// taken after the sink's 250 reply, so this is an upper bound). smtp-sink's own counter
// cannot say: it writes through a buffer when its output is a pipe.
let firstSent = null;
while (!firstSent) {
  const m = await api('GET', `/api/v1/campaign-runs/${sent.id}/messages?state=sent&limit=1`);
  if (m.items.length) firstSent = Date.parse(m.items[0].updated_at);
  else await sleep(20);
}
// The client on the other routes starts once the run sends: the launch is measured on an
// idle server (the first evaluation waits for the index to take in the client's events).
client = startClient();
if (process.env.LAUNCH_ONLY) {
  console.log(`launch latency: ${firstSent - tWall} ms (sent at ${new Date(tWall).toISOString()}, first accepted ${new Date(firstSent).toISOString()})`);
  srv.kill('SIGTERM');
  sink.kill('SIGTERM');
  process.exit(0);
}
let runj;
for (;;) {
  await sleep(500);
  runj = await api('GET', `/api/v1/campaign-runs/${sent.id}`);
  if (!['scheduled', 'running'].includes(runj.state)) break;
}
const tEnd = performance.now();
stop = true;
await client;
clearInterval(sampler);
const rssAfter = rssMiB(srv.pid);
const cpu = cpuOf(srv.pid) - cpu0;
const msgs = mesg - base;
const launch = firstSent - tWall;
const secs = (tEnd - t) / 1000;
const steady = (Date.parse(runj.finished_at) - Date.parse(runj.started_at)) / 1000;
const answered = runj.counts.sent + runj.counts.failed;
console.log(`run ${runj.id}: ${runj.state}, audience ${runj.audience}, counts ${JSON.stringify(runj.counts)}, possible_duplicates ${runj.possible_duplicates}`);
console.log(`launch latency (send request -> first message accepted, by the ledger): ${launch.toFixed(0)} ms`);
console.log(`throughput: ${answered} messages accepted in ${steady.toFixed(1)} s from the run's start to its end = ` +
  `${Math.round(answered / steady)} msg/s = ${(100 * answered / steady / ceiling).toFixed(0)}% of the sink's ceiling ` +
  `(${secs.toFixed(1)} s from the send request to the poll that saw it end; the sink counted at least ${msgs})`);
console.log(`server CPU: ${cpu.toFixed(1)} s over the run (${(cpu / secs).toFixed(2)} cores; ${(1e6 * cpu / answered).toFixed(0)} us a message)`);
console.log(`server RSS: ${rss0.toFixed(0)} MiB before, peak ${rssPeak.toFixed(0)} MiB (+${(rssPeak - rss0).toFixed(0)} MiB), ${rssAfter.toFixed(0)} MiB after`);
if (lat.track.length) console.log(`during the run: /v1/track p50 ${pct(lat.track, 0.5).toFixed(2)} ms p99 ${pct(lat.track, 0.99).toFixed(2)} ms (${lat.track.length} calls); ` +
  `segment preview p50 ${pct(lat.preview, 0.5).toFixed(2)} ms p99 ${pct(lat.preview, 0.99).toFixed(2)} ms (${lat.preview.length} calls)`);
// ---- the throttle's accuracy under load: a campaign at THROTTLE messages/s -----------------
const THROTTLE = Number(process.env.THROTTLE || 2000);
const seg2 = await api('POST', '/api/v1/segments', { name: 'pune', rules: { op: 'AND',
  rules: [{ type: 'attribute', field: 'city', op: 'eq', value: 'Pune' }] } });
const camp2 = await api('POST', '/api/v1/campaigns', { name: 'throttled', segment_id: seg2.id, template_id: tpl.id,
  provider: 'sink', throttle_per_second: THROTTLE });
const run2 = await api('POST', `/api/v1/campaigns/${camp2.id}/send`);
let r2;
for (;;) {
  await sleep(500);
  r2 = await api('GET', `/api/v1/campaign-runs/${run2.id}`);
  if (!['scheduled', 'running'].includes(r2.state)) break;
}
const s2 = (Date.parse(r2.finished_at) - Date.parse(r2.started_at)) / 1000;
console.log(`throttle ${THROTTLE}/s: ${r2.counts.sent} sent in ${s2.toFixed(2)} s = ${(r2.counts.sent / s2).toFixed(0)} msg/s ` +
  `(${(100 * r2.counts.sent / s2 / THROTTLE - 100).toFixed(1)}% off the throttle)`);
srv.kill('SIGTERM');
sink.kill('SIGTERM');
await sleep(500);
