// tests/e2e/segments.test.mjs -- segments from the CLI and over HTTP: eval, explain,
// preview, saved segments with versions, evaluations, snapshots, the scheduler,
// catch-up after another process writes, and recovery of interrupted evaluations.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { engage, tmpData, startServer, api, apikey, sql, writeCsv } from './lib.mjs';

const NOW = '2026-06-01T00:00:00Z';
let data, srv, admin, analyst, marketer, ingestKey;

// 40 contacts: c01..c40; city Pune for odd numbers; plan pro for multiples of 3.
// c_k has k orders, one a day before NOW (so within_days 7 sees min(k, 7)).
function seed(dir) {
  let contacts = 'external_id,email,city,plan,ltv\n';
  let events = 'external_id,event,occurred_at,order_id,amount,currency,created_at\n';
  for (let k = 1; k <= 40; k++) {
    const id = 'c' + String(k).padStart(2, '0');
    contacts += `${id},${id}@example.com,${k % 2 ? 'Pune' : 'Delhi'},${k % 3 ? 'free' : 'pro'},${k * 10}\n`;
    for (let j = 1; j <= Math.min(k, 10); j++) {
      const at = new Date(Date.parse(NOW) - j * 86400000 + 1000).toISOString();
      events += `${id},order_created,${at},o-${k}-${j},${j},EUR,${at}\n`;
    }
  }
  assert.equal(engage(['import', 'contacts', writeCsv(dir, 'c.csv', contacts)], { data: dir }).code, 0);
  const r = engage(['import', 'events', writeCsv(dir, 'e.csv', events)], { data: dir });
  assert.equal(r.code, 0, r.stderr);
}

const rulesPuneBuyers = {
  op: 'AND',
  rules: [
    { type: 'attribute', field: 'city', op: 'eq', value: 'Pune' },
    { type: 'behavior', event: 'order_created', op: 'did_event', within_days: 7, count_gte: 5 },
  ],
};
// Odd k with min(k,7) >= 5: 5,7,9,...,39
const puneBuyers = [];
for (let k = 5; k <= 40; k += 2) puneBuyers.push('c' + String(k).padStart(2, '0'));

before(async () => {
  data = tmpData();
  engage(['migrate'], { data });
  seed(data);
  admin = apikey(data, 'admin');
  analyst = apikey(data, 'analyst');
  marketer = apikey(data, 'marketer');
  ingestKey = apikey(data, 'ingest');
  srv = await startServer(data, { env: { ENGAGE_NOW: NOW } });
});

after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0, 'clean exit on SIGTERM (and no leaks under ASan): ' + srv.stderr());
});

test('CLI: segment eval counts and lists members; explain shows the plan', () => {
  const f = join(data, 'rules.json');
  writeFileSync(f, JSON.stringify(rulesPuneBuyers));
  let r = engage(['--now', NOW, 'segment', 'eval', '--rules', f, '--members'], { data });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n'), puneBuyers);
  r = engage(['--now', NOW, '--json', 'segment', 'eval', '--rules', f], { data });
  assert.equal(JSON.parse(r.stdout).count, puneBuyers.length);
  // A later instant moves the window: 30 days on, nobody has ordered in the last 7 days.
  r = engage(['--now', '2026-07-01T00:00:00Z', '--json', 'segment', 'eval', '--rules', f], { data });
  assert.equal(JSON.parse(r.stdout).count, 0);
  r = engage(['segment', 'explain', '--rules', f], { data });
  const plan = JSON.parse(r.stdout);
  assert.equal(plan.plan.rules[0].type, 'attribute', 'cheap attribute rule first');
  assert.equal(plan.plan.rules[1].events_indexed, 40 * 10 - 45); // sum of min(k,10)
});

test('CLI: --now pins the instant exactly: both window edges in, a millisecond past either out', () => {
  const d = tmpData();
  const now = Date.parse('2026-06-01T12:00:00.000Z');
  const at = (ms) => new Date(ms).toISOString();
  // within_days 1: now - 86,400,000 ms <= occurred_at <= now, both ends included.
  const cases = { early_edge: now - 86400000, too_early: now - 86400000 - 1, late_edge: now, future: now + 1 };
  let contacts = 'external_id\n', events = 'external_id,event,occurred_at,event_id\n';
  for (const [id, ms] of Object.entries(cases)) {
    contacts += `${id}\n`;
    events += `${id},app_opened,${at(ms)},${id}\n`;
  }
  assert.equal(engage(['import', 'contacts', writeCsv(d, 'c.csv', contacts)], { data: d }).code, 0);
  assert.equal(engage(['import', 'events', writeCsv(d, 'e.csv', events)], { data: d }).code, 0);
  const f = join(d, 'edge.json');
  writeFileSync(f, JSON.stringify({ op: 'AND', rules: [
    { type: 'behavior', event: 'app_opened', op: 'did_event', within_days: 1 }] }));
  // Several runs: a clock that ran on from --now would drop early_edge and take future.
  for (let i = 0; i < 3; i++) {
    const r = engage(['--now', at(now), 'segment', 'eval', '--rules', f, '--members'], { data: d });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['early_edge', 'late_edge']);
  }
  const r = engage(['--json', 'segment', 'eval', '--rules', f], { data: d, env: { ENGAGE_NOW: at(now) } });
  assert.equal(JSON.parse(r.stdout).count, 2, 'ENGAGE_NOW pins it too');
});

test('CLI: invalid rules name the file and every pointer', () => {
  const f = join(data, 'bad.json');
  writeFileSync(f, JSON.stringify({ op: 'AND', rules: [
    { type: 'attribute', field: 'cty', op: 'eq', value: 'Pune' },
    { type: 'behavior', event: 'order_created', op: 'did_event', within_days: 9999 },
  ] }));
  const r = engage(['segment', 'eval', '--rules', f], { data });
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`${f}: /rules/0/field: unknown field 'cty'; did you mean 'city'\\?`));
  assert.match(r.stderr, /\/rules\/1\/within_days: must be an integer from 1 to 730/);
  writeFileSync(f, '{"op": "AND",');
  const r2 = engage(['segment', 'eval', '--rules', f], { data });
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, new RegExp(`${f}:1:\\d+: `));
});

test('preview: count, sample, validation as 422 with details; roles', async () => {
  let r = await api(srv.url, '/api/v1/segments/preview', { method: 'POST', key: analyst, body: { rules: rulesPuneBuyers } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.count, puneBuyers.length);
  assert.equal(r.json.as_of, '2026-06-01T00:00:00.000Z'.slice(0, 10) + r.json.as_of.slice(10));
  assert.deepEqual(r.json.sample.map((s) => s.external_id), puneBuyers.slice(0, 18));
  assert.equal(typeof r.json.took_ms, 'number');
  r = await api(srv.url, '/api/v1/segments/preview', { method: 'POST', key: marketer, body: {
    rules: { op: 'OR', rules: [{ type: 'behavior', event: 'order_created', op: 'did_not_event', within_days: 7, count_gte: 2 }] } } });
  assert.equal(r.status, 422);
  assert.equal(r.json.error.code, 'invalid_segment');
  assert.deepEqual(r.json.error.details, [{ path: '/rules/rules/0/count_gte', message: 'did_not_event takes no count_gte (it means zero events)' }]);
  r = await api(srv.url, '/api/v1/segments/preview', { method: 'POST', key: marketer, body: '{"rules": ' });
  assert.equal(r.status, 400);
  r = await api(srv.url, '/api/v1/segments/preview', { method: 'POST', key: ingestKey, body: { rules: rulesPuneBuyers } });
  assert.equal(r.status, 403);
  r = await api(srv.url, '/api/v1/segments/preview', { method: 'POST', body: { rules: rulesPuneBuyers } });
  assert.equal(r.status, 401);
});

test('saved segments: create, version on rule change, evaluate, page the snapshot, audit', async () => {
  let r = await api(srv.url, '/api/v1/segments', { method: 'POST', key: analyst, body: { name: 'x', rules: rulesPuneBuyers } });
  assert.equal(r.status, 403, 'analysts read only');
  r = await api(srv.url, '/api/v1/segments', { method: 'POST', key: marketer, body: { name: '', rules: { type: 'attribute' }, colour: 1 } });
  assert.equal(r.status, 422);
  const paths = r.json.error.details.map((d) => d.path).sort();
  assert.deepEqual(paths, ['/colour', '/name', '/rules/field']);
  r = await api(srv.url, '/api/v1/segments', { method: 'POST', key: marketer, body: { name: 'Pune buyers', description: 'five orders a week', rules: rulesPuneBuyers } });
  assert.equal(r.status, 201, r.text);
  const seg = r.json;
  assert.equal(seg.version, 1);
  assert.equal(seg.schedule, null);
  assert.equal(seg.last_evaluation, null);
  r = await api(srv.url, '/api/v1/segments', { method: 'POST', key: marketer, body: { name: 'Pune buyers', rules: rulesPuneBuyers } });
  assert.equal(r.status, 409);
  assert.equal(r.json.error.path, '/name');

  r = await api(srv.url, `/api/v1/segments/${seg.id}/evaluate`, { method: 'POST', key: marketer });
  assert.equal(r.status, 200, r.text);
  const ev1 = r.json;
  assert.equal(ev1.status, 'succeeded');
  assert.equal(ev1.member_count, puneBuyers.length);
  assert.equal(ev1.trigger, 'api');

  // Page through the snapshot two by two: exactly the evaluated set, in id order.
  const seen = [];
  let cursor = null;
  for (let i = 0; i < 50; i++) {
    r = await api(srv.url, `/api/v1/segments/${seg.id}/members?limit=2${cursor ? '&cursor=' + cursor : ''}`, { key: analyst });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.evaluation.id, ev1.id);
    seen.push(...r.json.items.map((m) => m.external_id));
    cursor = r.json.next_cursor;
    if (!cursor) break;
  }
  assert.deepEqual(seen, puneBuyers);

  // New rules make version 2; the old snapshot is immutable.
  r = await api(srv.url, `/api/v1/segments/${seg.id}`, { method: 'PUT', key: marketer, body: { rules: { type: 'attribute', field: 'plan', op: 'eq', value: 'pro' } } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.version, 2);
  r = await api(srv.url, `/api/v1/segments/${seg.id}`, { method: 'PUT', key: marketer, body: { description: 'pro plan' } });
  assert.equal(r.json.version, 2, 'a description change is no new version');
  r = await api(srv.url, `/api/v1/segments/${seg.id}/versions`, { key: analyst });
  assert.deepEqual(r.json.items.map((v) => v.version), [2, 1]);
  assert.deepEqual(r.json.items[1].rules, rulesPuneBuyers);
  r = await api(srv.url, `/api/v1/segments/${seg.id}/evaluate`, { method: 'POST', key: admin });
  const ev2 = r.json;
  assert.equal(ev2.version, 2);
  assert.equal(ev2.member_count, 13); // multiples of 3 up to 40
  r = await api(srv.url, `/api/v1/segments/${seg.id}/members?evaluation=${ev1.id}&limit=1000`, { key: analyst });
  assert.deepEqual(r.json.items.map((m) => m.external_id), puneBuyers);
  r = await api(srv.url, `/api/v1/segments/${seg.id}/evaluations`, { key: analyst });
  assert.deepEqual(r.json.items.map((e) => e.id), [ev2.id, ev1.id]);
  r = await api(srv.url, `/api/v1/segments/${seg.id}/plan`, { key: analyst });
  assert.equal(r.json.version, 2);
  assert.equal(r.json.plan.plan.field, 'plan');
  r = await api(srv.url, `/api/v1/segments/${seg.id}`, { key: analyst });
  assert.equal(r.json.last_evaluation.id, ev2.id);
  r = await api(srv.url, '/api/v1/segments?limit=1000', { key: analyst });
  assert.equal(r.json.items.find((x) => x.id === seg.id).last_evaluation.id, ev2.id);
  assert.equal(r.json.next_cursor, null);

  // Every control-plane change left an audit row in its transaction.
  const actions = sql(data, `SELECT action FROM audit WHERE entity = 'segment' AND entity_id = '${seg.id}' ORDER BY id`).split('\n');
  assert.deepEqual(actions, ['segment.create', 'segment.evaluate', 'segment.update', 'segment.update', 'segment.evaluate']);

  r = await api(srv.url, `/api/v1/segments/${seg.id}`, { method: 'DELETE', key: marketer });
  assert.equal(r.status, 200);
  r = await api(srv.url, `/api/v1/segments/${seg.id}`, { key: analyst });
  assert.equal(r.status, 404);
  r = await api(srv.url, '/api/v1/segments/abc', { key: analyst });
  assert.equal(r.status, 404);
  r = await api(srv.url, '/api/v1/segments', { method: 'POST', key: marketer, body: { name: 'Pune buyers', rules: rulesPuneBuyers } });
  assert.equal(r.status, 201, 'the name of a deleted segment is free again');
});

test('writes by another process are seen by the next evaluation', async () => {
  const body = { rules: { type: 'attribute', field: 'city', op: 'eq', value: 'Nagpur' } };
  let r = await api(srv.url, '/api/v1/segments/preview', { method: 'POST', key: analyst, body });
  assert.equal(r.json.count, 0);
  const csv = writeCsv(data, 'more.csv', 'external_id,city\nn1,Nagpur\nn2,Nagpur\nc01,Nagpur\n');
  assert.equal(engage(['import', 'contacts', csv], { data }).code, 0);
  r = await api(srv.url, '/api/v1/segments/preview', { method: 'POST', key: analyst, body });
  assert.equal(r.json.count, 3);
  assert.deepEqual(r.json.sample.map((s) => s.external_id), ['c01', 'n1', 'n2']);
});

test('scheduled segments are evaluated by the server on their own', async () => {
  let r = await api(srv.url, '/api/v1/segments', { method: 'POST', key: marketer, body: {
    name: 'hourly pro', rules: { type: 'attribute', field: 'plan', op: 'eq', value: 'pro' }, schedule: { every_minutes: 60 } } });
  assert.equal(r.status, 201, r.text);
  const id = r.json.id;
  let items = [];
  for (let i = 0; i < 200 && items.length === 0; i++) {
    await new Promise((res) => setTimeout(res, 100));
    r = await api(srv.url, `/api/v1/segments/${id}/evaluations`, { key: analyst });
    items = r.json.items;
  }
  assert.equal(items.length, 1, 'one scheduled run, the next one an hour later');
  assert.equal(items[0].trigger, 'schedule');
  assert.equal(items[0].status, 'succeeded');
  r = await api(srv.url, '/api/v1/segments', { method: 'POST', key: marketer, body: { name: 'bad schedule', rules: rulesPuneBuyers, schedule: { every_minutes: 0 } } });
  assert.equal(r.status, 422);
  assert.equal(r.json.error.details[0].path, '/schedule');
  // Operators see the index and the evaluations in /metrics.
  r = await api(srv.url, '/metrics');
  assert.match(r.text, /^engage_segment_index_contacts 4[0-9]$/m);
  assert.match(r.text, /^engage_segment_index_events \d+$/m);
  assert.match(r.text, /^engage_segment_index_bytes [1-9]\d*$/m);
  assert.match(r.text, /^engage_segment_evaluations\{status="succeeded"\} [1-9]\d*$/m);
});

test('an evaluation left running by a killed server is marked failed at the next start', async () => {
  const d = tmpData();
  engage(['migrate'], { data: d });
  const key = apikey(d, 'marketer');
  let s = await startServer(d);
  let r = await api(s.url, '/api/v1/segments', { method: 'POST', key, body: { name: 'n', rules: { type: 'attribute', field: 'email_consent', op: 'eq', value: 'subscribed' } } });
  const id = r.json.id;
  s.child.kill('SIGKILL');
  await new Promise((res) => s.child.on('exit', res));
  // What a kill between the committed "running" row and its outcome leaves behind.
  sql(d, `INSERT INTO segment_evaluations(segment_id, version, trigger, status, as_of, started_at) VALUES(${id}, 1, 'api', 'running', 1, 1)`);
  s = await startServer(d);
  for (let i = 0; i < 200; i++) {
    r = await api(s.url, `/api/v1/segments/${id}/evaluations`, { key });
    if (r.json.items[0].status !== 'running') break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.equal(r.json.items[0].status, 'failed');
  assert.match(r.json.items[0].error, /^interrupted/);
  r = await api(s.url, `/api/v1/segments/${id}/members`, { key });
  assert.equal(r.status, 404, 'no snapshot from the interrupted run');
  await s.stop();
});
