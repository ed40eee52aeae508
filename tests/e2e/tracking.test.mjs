// tests/e2e/tracking.test.mjs -- the Segment-compatible tracking API, driven by the real
// npm SDKs (@segment/analytics-node, @rudderstack/rudder-sdk-node with its default gzip),
// and every bad input with its documented answer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { Analytics as SegmentAnalytics } from '@segment/analytics-node';
import RudderAnalytics from '@rudderstack/rudder-sdk-node';
import { engage, tmpData, startServer, api, apikey, exportEvents } from './lib.mjs';

let data, srv, writeKey, analyst, admin;

before(async () => {
  data = tmpData();
  engage(['migrate'], { data });
  writeKey = apikey(data, 'ingest', 'website');
  analyst = apikey(data, 'analyst');
  admin = apikey(data, 'admin');
  srv = await startServer(data);
});

after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0, 'clean exit on SIGTERM (and no leaks under ASan): ' + srv.stderr());
});

const basic = (key) => 'Basic ' + Buffer.from(key + ':').toString('base64');

async function post(path, body, { key = writeKey, headers = {}, raw } = {}) {
  const h = { 'content-type': 'application/json', ...headers };
  if (key) h.authorization = basic(key);
  const res = await fetch(srv.url + path, { method: 'POST', headers: h, body: raw ?? JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, headers: res.headers };
}

function contact(xid) {
  const r = engage(['contact', 'show', xid], { data });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

const eventsOf = (xid) => exportEvents(data).filter((e) => e.external_id === xid);

test('@segment/analytics-node: identify, track, page, screen, group and alias are stored', async () => {
  const a = new SegmentAnalytics({ writeKey, host: srv.url, flushAt: 20, flushInterval: 200 });
  const errors = [];
  a.on('error', (e) => errors.push(e));
  a.identify({ userId: 'seg-u1', anonymousId: 'seg-anon-1', traits: { email: 'Asha@Example.com', city: 'Pune', plan: 'pro', ltv: 4200 } });
  a.track({ userId: 'seg-u1', event: 'order_created', properties: { order_id: 'o-77', amount: 1299.5, currency: 'INR', created_at: '2026-11-20T10:00:00Z' } });
  a.track({ anonymousId: 'seg-anon-2', event: 'app_opened', properties: { screen: 'home' } });
  a.page({ userId: 'seg-u1', category: 'Docs', name: 'Pricing', properties: { url: 'https://example.com/pricing' } });
  a.screen({ userId: 'seg-u1', name: 'Cart' });
  a.group({ userId: 'seg-u1', groupId: 'acme', traits: { name: 'Acme' } });
  a.alias({ userId: 'seg-u1', previousId: 'seg-anon-2' });
  await a.closeAndFlush({ timeout: 10000 });
  assert.deepEqual(errors, []);

  const c = contact('seg-u1');
  assert.equal(c.email, 'Asha@Example.com', 'the email trait becomes the contact email');
  assert.equal(c.attributes.city, 'Pune');
  assert.equal(c.attributes.ltv, 4200, 'typed by the contact contract');
  const ev = eventsOf('seg-u1');
  const byName = Object.fromEntries(ev.map((e) => [e.event, e]));
  assert.equal(byName.order_created.properties.amount, 1299.5);
  assert.equal(byName.order_created.contract_version, 1, 'validated by the shipped contract');
  assert.match(byName.order_created.event_id, /^node-next-/, 'the messageId is the event id');
  assert.equal(byName.page_viewed.properties.name, 'Pricing');
  assert.equal(byName.page_viewed.properties.category, 'Docs');
  assert.equal(byName.screen_viewed.properties.name, 'Cart');
  assert.equal(byName.group_joined.properties.group_id, 'acme');
  assert.ok(byName.app_opened, 'the aliased anonymous history joined the user');
  assert.equal(byName.order_created.source, 'sdk');
});

test('@rudderstack/rudder-sdk-node with gzip on (labelled as a form) is stored', async () => {
  const r = new RudderAnalytics(writeKey, { dataPlaneUrl: srv.url, flushAt: 5, flushInterval: 200, logLevel: 'error' });
  r.identify({ userId: 'rud-u1', traits: { email: 'ravi@example.com', city: 'Goa' } });
  r.track({ userId: 'rud-u1', event: 'call_logged', properties: { call_id: 'c-9', agent_id: 'a-1', duration_sec: 31, created_at: '2026-11-21T09:30:00Z' } });
  r.track({ userId: 'rud-u1', event: 'whatsapp_sent', properties: { message_id: 'w-1', status: 'delivered', created_at: '2026-11-21T09:31:00Z' } });
  await new Promise((res, rej) => r.flush((err) => (err ? rej(err) : res())));
  // The first event goes out alone and at once; wait for the rest to land.
  let ev = [];
  for (let i = 0; i < 100 && ev.length < 2; i++) {
    ev = eventsOf('rud-u1');
    if (ev.length < 2) await new Promise((res) => setTimeout(res, 100));
  }
  assert.deepEqual(ev.map((e) => e.event).sort(), ['call_logged', 'whatsapp_sent']);
  assert.equal(ev.find((e) => e.event === 'call_logged').properties.duration_sec, 31);
  assert.equal(contact('rud-u1').attributes.city, 'Goa');
});

test('a retried message is stored once; clock skew is corrected as Segment does', async () => {
  const msg = {
    type: 'track', userId: 'skew-u1', event: 'visit', messageId: 'm-retry-1',
    originalTimestamp: '2026-11-27T10:00:00.000Z', sentAt: '2026-11-27T10:00:05.000Z',
  };
  let r = await post('/v1/batch', { batch: [msg] });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { accepted: 1, rejected: [], success: true });
  r = await post('/v1/batch', { batch: [msg] });
  assert.equal(r.status, 200);
  const ev = eventsOf('skew-u1');
  assert.equal(ev.length, 1, 'the same messageId twice: stored once');
  // The client's clock ran 5 s ahead of ours at sentAt: timestamp = receivedAt - 5 s.
  const skew = Date.parse(ev[0].received_at) - Date.parse(ev[0].occurred_at);
  assert.ok(skew >= 5000 && skew < 7000, `receivedAt - occurred_at = ${skew} ms`);
  r = await post('/v1/track', { userId: 'skew-u1', event: 'visit', timestamp: '2025-01-02T03:04:05Z', messageId: 'm-hist' });
  assert.equal(r.status, 200);
  assert.equal(eventsOf('skew-u1').find((e) => e.event_id === 'm-hist').occurred_at, '2025-01-02T03:04:05.000Z',
    'a timestamp given by the caller is kept (historical imports)');
});

test('a batch with invalid messages stores the valid ones and lists the others', async () => {
  const r = await post('/v1/batch', {
    batch: [
      { type: 'track', userId: 'mix-u1', event: 'visit', messageId: 'mix-1' },
      { type: 'track', event: 'visit' },                                    // no user
      { type: 'launch', userId: 'mix-u1' },                                 // unknown type
      { type: 'track', userId: 'mix-u1', event: 'order_created', properties: { order_id: 'o1', amount: -5, currency: 'INR', created_at: '2026-11-01T00:00:00Z' } },
      { type: 'identify', anonymousId: 'only-anon', traits: { city: 'Pune' } },
      { type: 'track', userId: 'mix-u1', event: 'visit', properties: { blob: 'x'.repeat(33 * 1024) } },
    ],
  });
  assert.equal(r.status, 200);
  assert.equal(r.json.accepted, 1);
  assert.deepEqual(r.json.rejected.map((x) => [x.index, x.reason, x.field]), [
    [1, 'missing_field', 'userId'],
    [2, 'invalid_type', 'type'],
    [3, 'constraint', 'amount'],
    [4, 'missing_field', 'userId'],
    [5, 'too_large', ''],
  ]);
  const dl = JSON.parse(engage(['rejected', 'list', '--source', 'sdk', '--json'], { data }).stdout).items;
  assert.ok(dl.length >= 5, 'each rejected message is kept as a dead letter');
  assert.ok(dl.some((d) => d.reason === 'constraint' && /^r.*:4$/.test(d.origin)), 'origin: request id and position');
});

test('write key forms, and every bad request with its status', async () => {
  let r = await post('/v1/track', { userId: 'k1', event: 'visit', writeKey }, { key: null });
  assert.equal(r.status, 200, 'writeKey in the body');
  r = await fetch(srv.url + '/v1/track', { method: 'POST', headers: { authorization: `Bearer ${writeKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ userId: 'k1', event: 'visit' }) });
  assert.equal(r.status, 200, 'Bearer works too');
  r = await post('/v1/track', { userId: 'k1', event: 'visit' }, { key: null });
  assert.equal(r.status, 401);
  assert.equal(r.json.error.code, 'unauthorized');
  r = await post('/v1/track', { userId: 'k1', event: 'visit' }, { key: 'ek_not-a-key' });
  assert.equal(r.status, 401);
  r = await post('/v1/track', { userId: 'k1', event: 'visit' }, { key: analyst });
  assert.equal(r.status, 403, 'an analyst key cannot ingest');
  r = await post('/v1/track', { userId: 'k1', event: 'visit', writeKey: analyst }, { key: null });
  assert.equal(r.status, 403);
  r = await post('/v1/track', null, { raw: '{"userId": "k1", "event": ' });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, 'invalid_json');
  r = await post('/v1/batch', { batch: 'nope' });
  assert.equal(r.status, 400);
  r = await post('/v1/track', { userId: 'k1', event: 'visit', properties: { blob: 'x'.repeat(33 * 1024) } });
  assert.equal(r.status, 413, 'one message over 32 KB');
  r = await post('/v1/batch', { batch: Array.from({ length: 40 }, (_, i) => ({ type: 'track', userId: 'k1', event: 'visit', properties: { blob: 'y'.repeat(14000), i } })) });
  assert.equal(r.status, 413, 'a batch over 500 KB');
  r = await post('/v1/batch', null, { raw: gzipSync(JSON.stringify({ batch: Array.from({ length: 40 }, () => ({ type: 'track', userId: 'k1', event: 'visit', properties: { blob: 'z'.repeat(14000) } })) })), headers: { 'content-encoding': 'gzip' } });
  assert.equal(r.status, 413, 'the limit applies to the inflated body');
  r = await post('/v1/batch', null, { raw: 'not gzip at all', headers: { 'content-encoding': 'gzip' } });
  assert.equal(r.status, 400);
  r = await post('/v1/batch', null, { raw: gzipSync(JSON.stringify({ batch: [{ type: 'track', userId: 'k2', event: 'visit' }] })), headers: { 'content-encoding': 'gzip', 'content-type': 'application/x-www-form-urlencoded' } });
  assert.equal(r.status, 200, 'gzip honoured whatever the Content-Type says');
  r = await post('/v1/launch', { userId: 'k1' });
  assert.equal(r.status, 404);
});

test('the native API: POST /api/v1/events and /api/v1/contacts', async () => {
  let r = await api(srv.url, '/api/v1/contacts', { method: 'POST', key: writeKey, body: { external_id: 'n-1', email: 'n1@example.com', attributes: { city: 'Delhi' } } });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { accepted: 1, rejected: [] });
  r = await api(srv.url, '/api/v1/events', { method: 'POST', key: writeKey, body: { items: [
    { external_id: 'n-1', event: 'visit', event_id: 'n-e1', occurred_at: '2026-11-26T08:00:00Z', properties: { page: '/' } },
    { external_id: 'n-1', event: 'order_created', properties: { order_id: 'x' } },
    'not an object',
  ] } });
  assert.equal(r.status, 200);
  assert.equal(r.json.accepted, 1);
  assert.deepEqual(r.json.rejected.map((x) => x.index), [1, 2]);
  assert.equal(eventsOf('n-1').length, 1);
  r = await api(srv.url, '/api/v1/events', { method: 'POST', key: analyst, body: { external_id: 'n-1', event: 'visit' } });
  assert.equal(r.status, 403);
});

// The writer is held up by another process's write lock; the queue fills; 429.
test('a full writer queue answers 429 with Retry-After, then recovers', async () => {
  const d2 = tmpData();
  engage(['migrate'], { data: d2 });
  const key = apikey(d2, 'ingest');
  writeFileSync(join(d2, 'engage.conf'), '[ingest]\nqueue_max = 100\n');
  const s2 = await startServer(d2);
  const lock = spawn('sqlite3', [join(d2, 'engage.db')], { stdio: ['pipe', 'pipe', 'pipe'] });
  try {
    lock.stdin.write('BEGIN IMMEDIATE;\nSELECT 1;\n');
    await new Promise((res) => lock.stdout.once('data', res)); // the lock is held
    const first = fetch(s2.url + '/v1/batch', { method: 'POST', headers: { authorization: basic(key), 'content-type': 'application/json' },
      body: JSON.stringify({ batch: Array.from({ length: 90 }, (_, i) => ({ type: 'track', userId: 'q', event: 'visit', messageId: `q-${i}` })) }) });
    await new Promise((res) => setTimeout(res, 300)); // queued behind the lock
    const second = await fetch(s2.url + '/v1/batch', { method: 'POST', headers: { authorization: basic(key), 'content-type': 'application/json' },
      body: JSON.stringify({ batch: Array.from({ length: 20 }, (_, i) => ({ type: 'track', userId: 'q', event: 'visit', messageId: `q2-${i}` })) }) });
    assert.equal(second.status, 429);
    assert.equal(second.headers.get('retry-after'), '1');
    lock.stdin.write('COMMIT;\n');
    const r1 = await first;
    assert.equal(r1.status, 200, 'the queued request is stored once the lock is gone');
    assert.equal((await r1.json()).accepted, 90);
  } finally {
    lock.stdin.end();
    await s2.stop();
  }
});

test('a contract put over the API applies to the next tracking call; a CLI one within moments', async () => {
  const event = (props, id) => ({ type: 'track', userId: 'ct-u1', event: 'trial_started', messageId: id, properties: props });
  // No contract yet: accepted unvalidated (the fast path maps it).
  let r = await post('/v1/batch', { batch: [event({ seats: 'lots' }, 'ct-1')] });
  assert.deepEqual([r.status, r.json.accepted], [200, 1]);
  let w = await api(srv.url, '/api/v1/contracts/trial_started', {
    method: 'PUT', key: admin, body: { name: 'trial_started', properties: { plan: { type: 'string', required: true }, seats: { type: 'integer' } } } });
  assert.equal(w.status, 201, w.text);
  r = await post('/v1/batch', { batch: [event({ plan: 'pro', seats: 'lots' }, 'ct-2'), event({}, 'ct-3'), event({ plan: 'pro' }, 'ct-4')] });
  assert.equal(r.status, 200);
  assert.equal(r.json.accepted, 1, 'validated by the new contract at once: ' + JSON.stringify(r.json));
  assert.deepEqual(r.json.rejected.map((x) => [x.index, x.field]), [[0, 'seats'], [1, 'plan']]);
  // Changed by another process: the server sees it within 50 ms.
  const path = join(data, 'trial_started.json');
  writeFileSync(path, JSON.stringify({ name: 'trial_started', properties: { plan: { type: 'string' }, seats: { type: 'integer', required: true } } }));
  const c = engage(['contracts', 'put', 'trial_started', path], { data });
  assert.equal(c.code, 0, c.stderr);
  await new Promise((res) => setTimeout(res, 100));
  r = await post('/v1/batch', { batch: [event({ plan: 'pro' }, 'ct-5'), event({ plan: 'pro', seats: 3 }, 'ct-6')] });
  assert.equal(r.json.accepted, 1, JSON.stringify(r.json));
  assert.deepEqual(r.json.rejected.map((x) => [x.index, x.field]), [[0, 'seats']]);
});

// (a+)+$ backtracks exponentially on a run of 'a' ending in 'b': with glibc's regexec a
// 30,000-character value took 4.7 s and held up every other call for the same event.
test('a pattern that backtracks: refused at save if it does not compile; past its limits a value is a dead letter, and other calls go on', async () => {
  let w = await api(srv.url, '/api/v1/contracts/code_checked', {
    method: 'PUT', key: admin, body: { name: 'code_checked', properties: { code: { type: 'string', required: true, pattern: '(a+' } } } });
  assert.equal(w.status, 422);
  assert.deepEqual(w.json.error.details, [{ path: '/properties/code/pattern',
    message: 'is not a valid regular expression: missing closing parenthesis at offset 3' }]);
  w = await api(srv.url, '/api/v1/contracts/code_checked', {
    method: 'PUT', key: admin, body: { name: 'code_checked', properties: { code: { type: 'string', required: true, pattern: '(a+)+$' } } } });
  assert.equal(w.status, 201, w.text);

  const call = (id, code) => post('/v1/track', { userId: 're-u1', event: 'code_checked', messageId: id, properties: { code } });
  const [long, steps, good] = await Promise.all([
    call('re-long', 'a'.repeat(30000) + 'b'),
    call('re-steps', 'a'.repeat(4000) + 'b'),
    call('re-good', 'aaaa'),
  ]);
  assert.deepEqual([good.status, good.json.accepted, good.json.rejected], [200, 1, []]);
  assert.deepEqual([long.status, long.json.accepted], [200, 0]);
  assert.deepEqual(long.json.rejected, [{ index: 0, reason: 'pattern_limit', field: 'code',
    message: 'value of 30001 bytes is longer than the 4096 bytes matched against a pattern ([ingest] pattern_max_value_bytes)' }]);
  assert.deepEqual([steps.status, steps.json.accepted], [200, 0]);
  assert.deepEqual(steps.json.rejected, [{ index: 0, reason: 'pattern_limit', field: 'code',
    message: 'pattern "(a+)+$" gave up after 100000 steps: simplify the pattern' }]);

  assert.deepEqual(eventsOf('re-u1').map((e) => [e.event_id, e.properties.code]), [['re-good', 'aaaa']]);
  // A listing shows the first 4 KiB of each letter; the letter alone, all that was kept.
  const dl = JSON.parse(engage(['rejected', 'list', '--reason', 'pattern_limit', '--json'], { data }).stdout).items
    .map((d) => JSON.parse(engage(['rejected', 'show', String(d.id)], { data }).stdout));
  assert.deepEqual(dl.map((d) => [d.raw.event_id, d.field, d.raw.properties.code.length]).sort(), [['re-long', 'code', 30001], ['re-steps', 'code', 4001]],
    'both kept, raw payload and all, for a replay once the pattern is simpler');
});

test('a track before 1970 is stored, and /metrics times the tracking routes and the writer', async () => {
  const r = await post('/v1/track', { userId: 'old-u1', event: 'moon_landing', messageId: 'apollo-11', timestamp: '1969-07-20T20:17:40Z' });
  assert.deepEqual([r.status, r.json.accepted], [200, 1]);
  const ev = eventsOf('old-u1');
  assert.equal(ev.length, 1, 'once answered "accepted" and stored nothing');
  assert.equal(ev[0].occurred_at, '1969-07-20T20:17:40.000Z');
  const m = await (await fetch(srv.url + '/metrics')).text();
  const count = Number(/engage_http_request_duration_seconds_count\{route="tracking"\} (\d+)/.exec(m)?.[1]);
  const inf = Number(/engage_http_request_duration_seconds_bucket\{route="tracking",le="\+Inf"\} (\d+)/.exec(m)?.[1]);
  assert.ok(count > 10 && inf === count, m);
  assert.ok(Number(/engage_ingest_commits_total (\d+)/.exec(m)?.[1]) > 0, m);
  assert.match(m, /engage_ingest_queue_pending 0\n/);
});
