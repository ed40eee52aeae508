// bench/http-load.mjs URL WRITE_KEY [SECONDS] [CLIENTS] [BATCH]
//
// Drives the tracking API the way the issue measures it: CLIENTS (2) concurrent clients,
// each posting /v1/batch with BATCH (500) track events and waiting for the answer before
// the next (every 200 means the batch was committed), for SECONDS (20). Beside them one
// more client sends single /v1/track calls, one at a time, and records their latency.
// Prints events/s accepted and the /v1/track latency percentiles. Every messageId is
// new, so nothing is deduplicated away.
const [url, key, seconds = '20', clients = '2', batchSize = '500'] = process.argv.slice(2);
if (!url || !key) {
  console.error('usage: node bench/http-load.mjs URL WRITE_KEY [SECONDS] [CLIENTS] [BATCH]');
  process.exit(2);
}
const auth = 'Basic ' + Buffer.from(key + ':').toString('base64');
const until = Date.now() + Number(seconds) * 1000;
const run = `${process.pid}-${Date.now()}`;
const names = ['order_created', 'call_logged', 'whatsapp_sent', 'email_opened'];

// A batch body like an SDK's: ~300 bytes a message. Each client builds its 64 bodies
// once, with "@@" where the request number goes, and only joins them per request (so
// every messageId is new while the generator spends its CPU on sending, not building).
function template(client, k) {
  const now = new Date().toISOString();
  const items = [];
  for (let i = 0; i < batchSize; i++) {
    // The contacts bench/http.sh imported (c0000001 … c1000000): events for known users.
    const u = 1 + ((k * 7919 + i * 104729 + client * 31) % 1000000);
    items.push(`{"type":"track","userId":"c${String(u).padStart(7, '0')}","event":"app_${names[i % 4]}","messageId":"${run}-${client}-@@-${i}",` +
      `"timestamp":"${now}","properties":{"screen":"home","step":${i},"value":${(i * 3.7).toFixed(1)}},` +
      `"context":{"library":{"name":"bench","version":"1"}}}`);
  }
  return `{"batch":[${items.join(',')}],"sentAt":"${now}"}`.split('@@');
}
const templates = Array.from({ length: Number(clients) }, (_, c) => Array.from({ length: 64 }, (_, k) => template(c, k)));
const batchBody = (client, n) => templates[client][n % 64].join(String(n));

let accepted = 0, rejected = 0, failures = 0;
async function batcher(client) {
  for (let n = 0; Date.now() < until; n++) {
    const res = await fetch(url + '/v1/batch', {
      method: 'POST', headers: { authorization: auth, 'content-type': 'application/json' }, body: batchBody(client, n),
    });
    const j = await res.json().catch(() => null);
    if (res.status === 200 && j) { accepted += j.accepted; rejected += j.rejected.length; } else failures++;
  }
}

const lat = [];
async function tracker() {
  for (let n = 0; Date.now() < until; n++) {
    const body = `{"userId":"c${String(1 + (n % 1000)).padStart(7, '0')}","event":"app_opened","messageId":"${run}-t-${n}","properties":{"n":${n}}}`;
    const t0 = process.hrtime.bigint();
    const res = await fetch(url + '/v1/track', { method: 'POST', headers: { authorization: auth, 'content-type': 'application/json' }, body });
    await res.arrayBuffer();
    lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (res.status !== 200) failures++;
    await new Promise((r) => setTimeout(r, 5));
  }
}

const t0 = Date.now();
await Promise.all([...Array.from({ length: Number(clients) }, (_, c) => batcher(c)), tracker()]);
const secs = (Date.now() - t0) / 1000;
lat.sort((a, b) => a - b);
const pct = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(2);
console.log(`batches: ${clients} clients x ${batchSize} events, ${secs.toFixed(1)} s: ` +
  `${Math.round(accepted / secs).toLocaleString('en')} events/s accepted (${accepted} events, ${rejected} rejected, ${failures} failed requests)`);
console.log(`/v1/track under that load: ${lat.length} calls, p50 ${pct(0.5)} ms, p95 ${pct(0.95)} ms, p99 ${pct(0.99)} ms, max ${lat[lat.length - 1].toFixed(2)} ms`);
