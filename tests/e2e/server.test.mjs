// tests/e2e/server.test.mjs -- engage serve: health, metrics, contracts and dead letters over HTTP.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { engage, tmpData, startServer, api, apikey, sql, writeCsv } from './lib.mjs';

let data, srv, admin, analyst, marketer, ingestKey;

before(async () => {
  data = tmpData();
  engage(['migrate'], { data });
  admin = apikey(data, 'admin');
  analyst = apikey(data, 'analyst');
  marketer = apikey(data, 'marketer');
  ingestKey = apikey(data, 'ingest');
  srv = await startServer(data);
});

after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0, 'clean exit on SIGTERM (and no leaks under ASan): ' + srv.stderr());
});

test('health, readiness and JSON-line logs', async () => {
  let r = await api(srv.url, '/healthz');
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { status: 'ok' });
  // Ready once the audience index is loaded (at once here; an orchestrator polls).
  for (let i = 0; i < 100; i++) {
    r = await api(srv.url, '/readyz');
    if (r.status !== 503) break;
    assert.equal(r.json.error.code, 'starting');
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal(r.status, 200);
  assert.match(r.headers.get('x-request-id'), /^r/);
  const lines = srv.stderr().trim().split('\n').filter(Boolean);
  assert.ok(lines.length > 0);
  for (const l of lines) {
    const j = JSON.parse(l);
    assert.ok(j.ts && j.level && j.component && 'msg' in j, l);
  }
});

test('errors have one shape: 401, 403, 404, 405, 413', async () => {
  let r = await api(srv.url, '/api/v1/contracts');
  assert.equal(r.status, 401);
  assert.equal(r.json.error.code, 'unauthorized');
  assert.ok(r.json.error.message);
  r = await api(srv.url, '/api/v1/contracts', { key: 'ek_wrong' });
  assert.equal(r.status, 401);
  r = await api(srv.url, '/api/v1/contracts', { key: ingestKey });
  assert.equal(r.status, 403);
  assert.equal(r.json.error.code, 'forbidden');
  r = await api(srv.url, '/api/v1/nothing-here', { key: admin });
  assert.equal(r.status, 404);
  r = await api(srv.url, '/api/v1/contracts', { method: 'DELETE', key: admin });
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'GET');
  r = await api(srv.url, '/api/v1/contracts');
  assert.match(r.headers.get('www-authenticate'), /^Bearer/);
  r = await api(srv.url, '/api/v1/contracts/x', { method: 'PUT', key: admin, body: 'x'.repeat(5 << 20) });
  assert.equal(r.status, 413);
  assert.equal(r.json.error.code, 'too_large');
  r = await api(srv.url, '/api/v1/contracts/x', { method: 'PUT', key: admin, body: '{"name": ' });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, 'invalid_json');
});

test('contracts: list, versions, validation with JSON pointers, audit', async () => {
  let r = await api(srv.url, '/api/v1/contracts', { key: analyst });
  assert.equal(r.status, 200);
  const names = r.json.items.map((c) => c.name).sort();
  const paged = await api(srv.url, '/api/v1/contracts?limit=1', { key: analyst });
  assert.equal(paged.status, 400, 'the contracts list takes no parameters: say so rather than ignore');
  assert.equal(paged.json.error.path, 'limit');
  assert.deepEqual(names, ['call_logged', 'contact', 'email_bounced', 'email_clicked', 'email_complained',
    'email_delivered', 'email_opened', 'email_unsubscribed', 'order_created', 'whatsapp_sent']);
  // email_opened ships in two versions: the store has both, the latest listed
  assert.equal(r.json.items.find((c) => c.name === 'email_opened').version, 2);
  const order = r.json.items.find((c) => c.name === 'order_created');
  assert.equal(order.version, 1);
  assert.equal(order.contract.properties.currency.pattern, '^[A-Z]{3}$');

  r = await api(srv.url, '/api/v1/contracts/order_created', { method: 'PUT', key: analyst, body: {} });
  assert.equal(r.status, 403, 'analysts read, admins write');

  r = await api(srv.url, '/api/v1/contracts/order_created', {
    method: 'PUT', key: admin,
    body: { name: 'order_created', properties: { amount: { type: 'money' }, x: { type: 'string', minimum: 1 } } },
  });
  assert.equal(r.status, 422);
  assert.equal(r.json.error.code, 'invalid_contract');
  const paths = r.json.error.details.map((d) => d.path).sort();
  assert.deepEqual(paths, ['/properties/amount/type', '/properties/x/minimum']);

  const before = Number(sql(data, "SELECT count(*) FROM audit WHERE action = 'contract.put'"));
  r = await api(srv.url, '/api/v1/contracts/signup_completed', {
    method: 'PUT', key: admin,
    body: { name: 'signup_completed', properties: { plan: { type: 'string', required: true } } },
  });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.version, 1);
  r = await api(srv.url, '/api/v1/contracts/signup_completed', {
    method: 'PUT', key: admin,
    body: { name: 'signup_completed', properties: { plan: { type: 'string', required: true, enum: ['free', 'pro'] } } },
  });
  assert.equal(r.json.version, 2);
  r = await api(srv.url, '/api/v1/contracts/signup_completed', {
    method: 'PUT', key: admin,
    body: { name: 'signup_completed', properties: { plan: { type: 'string', required: true, enum: ['free', 'pro'] } } },
  });
  assert.equal(r.status, 200, 'the same document again makes no new version');
  assert.equal(r.json.unchanged, true);
  assert.equal(r.json.version, 2);
  r = await api(srv.url, '/api/v1/contracts/Order%20Completed', {
    method: 'PUT', key: admin, body: { name: 'Order Completed', properties: { total: { type: 'number' } } } });
  assert.equal(r.status, 201, 'Segment-style event names with spaces: ' + r.text);
  r = await api(srv.url, '/api/v1/contracts/%FF', { key: analyst });
  assert.equal(r.status, 400, 'a path that is not UTF-8');
  r = await api(srv.url, '/api/v1/contracts/signup_completed', { key: analyst });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.versions.map((v) => v.version), [2, 1], 'old versions are kept');
  assert.equal(r.json.latest.version, 2);
  assert.match(r.json.latest.created_by, /^apikey:\d+:admin$/);
  assert.equal(Number(sql(data, "SELECT count(*) FROM audit WHERE action = 'contract.put'")), before + 3,
    'two versions of signup_completed and one of "Order Completed"; the unchanged put is not audited');
  r = await api(srv.url, '/api/v1/contracts/no_such', { key: analyst });
  assert.equal(r.status, 404);
});

test('dead letters: list with filters, metrics by reason, replay by a marketer', async () => {
  const csv = writeCsv(data, 'calls.csv',
    'external_id,event,occurred_at,call_id,agent_id,duration_sec,created_at\n' +
    'c1,call_logged,,k1,a1,60,2026-01-01T00:00:00Z\n' +
    'c1,call_logged,,k2,a1,1.5,2026-01-01T00:00:00Z\n' +
    'c1,call_logged,,k3,,60,2026-01-01T00:00:00Z\n');
  // A CLI import beside the running server.
  const imp = engage(['import', 'events', csv, '--json'], { data });
  assert.equal(imp.code, 3, imp.stderr);
  let r = await api(srv.url, '/api/v1/rejected?reason=invalid_type', { key: analyst });
  assert.equal(r.status, 200);
  assert.equal(r.json.items.length, 1);
  assert.equal(r.json.items[0].field, 'duration_sec');
  assert.match(r.json.items[0].origin, /calls\.csv:3$/);
  assert.equal(r.json.next_cursor, null);
  r = await api(srv.url, '/api/v1/rejected?limit=1', { key: analyst });
  assert.equal(r.json.items.length, 1);
  assert.ok(r.json.next_cursor);
  const page2 = await api(srv.url, '/api/v1/rejected?limit=1&cursor=' + r.json.next_cursor, { key: analyst });
  assert.notEqual(page2.json.items[0].id, r.json.items[0].id);
  // status=all is every status, as the CLI's --status all.
  const all = await api(srv.url, '/api/v1/rejected?status=all', { key: analyst });
  assert.equal(all.status, 200, all.text);
  assert.equal(all.json.items.length, (await api(srv.url, '/api/v1/rejected', { key: analyst })).json.items.length);
  r = await api(srv.url, '/api/v1/rejected?since=yesterday', { key: analyst });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.path, 'since');
  for (const q of ['status=bogus', 'kind=people', 'foo=bar', 'since=2026-02-01&until=2026-01-01']) {
    const b = await api(srv.url, '/api/v1/rejected?' + q, { key: analyst });
    assert.equal(b.status, 400, q);
    assert.equal(b.json.error.code, 'invalid_parameter', q);
  }

  r = await api(srv.url, '/metrics');
  assert.equal(r.status, 200);
  assert.match(r.text, /engage_ingest_rejected\{reason="invalid_type"\} 1/);
  assert.match(r.text, /engage_ingest_rejected\{reason="missing_field"\} 1/);
  assert.match(r.text, /engage_events 1\n/);
  assert.match(r.text, /engage_http_requests_total\{route="rejected.list",code="200"\} \d+/);
  assert.match(r.text, /engage_http_requests_total\{route="rejected.list",code="400"\} 5/);

  r = await api(srv.url, '/api/v1/rejected/replay', { method: 'POST', key: analyst, body: {} });
  assert.equal(r.status, 403);
  r = await api(srv.url, '/api/v1/rejected/replay', { method: 'POST', key: marketer, body: { colour: 1 } });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.path, '/colour');
  r = await api(srv.url, '/api/v1/rejected/replay', { method: 'POST', key: marketer, body: { reason: 5 } });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.message, 'must be a string');
  // Loosen the contract: duration may be a number now.
  r = await api(srv.url, '/api/v1/contracts/call_logged', {
    method: 'PUT', key: admin,
    body: { name: 'call_logged', occurred_at: 'created_at', properties: {
      call_id: { type: 'string', required: true }, agent_id: { type: 'string', required: true },
      duration_sec: { type: 'number', required: true, minimum: 0 }, created_at: { type: 'timestamp', required: true } } },
  });
  assert.equal(r.status, 201);
  r = await api(srv.url, '/api/v1/rejected/replay', { method: 'POST', key: marketer, body: { reason: 'invalid_type' } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { tried: 1, ingested: 1, still_rejected: 0, not_replayable: 0 });
  r = await api(srv.url, '/metrics');
  assert.doesNotMatch(r.text, /reason="invalid_type"/);
  assert.match(r.text, /engage_events 2\n/);
  assert.equal(sql(data, "SELECT count(*) FROM audit WHERE action = 'rejected.replay'"), '1');
});
