// tests/e2e/api.test.mjs -- the management API: contacts, API keys, the audit log, and
// the whole role x route table of docs/api.md walked against the router.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { engage, tmpData, startServer, api, apikey, writeCsv } from './lib.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
let data, srv, keys;

before(async () => {
  data = tmpData();
  engage(['migrate'], { data });
  keys = {};
  for (const role of ['ingest', 'analyst', 'marketer', 'admin']) keys[role] = apikey(data, role);
  const dir = tmpData('engage-csv-');
  engage(['import', 'contacts', writeCsv(dir, 'c.csv', 'external_id,email,city\nc1,a@x.io,Pune\nc2,b@x.io,Goa\nc3,a@x.io,Delhi\n')], { data });
  engage(['import', 'events', writeCsv(dir, 'e.csv', 'external_id,event,occurred_at,event_id\nc1,visit,2026-11-01T10:00:00Z,v1\nc1,visit,2026-11-02T10:00:00Z,v2\n')], { data });
  srv = await startServer(data);
});

after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0, 'clean exit on SIGTERM (and no leaks under ASan): ' + srv.stderr());
});

const auditCount = async () => (await api(srv.url, '/api/v1/audit?limit=1000', { key: keys.admin })).json.items.length;

test('contacts: read with consent history and recent events, list with cursor and email', async () => {
  let r = await api(srv.url, '/api/v1/contacts/c1', { key: keys.analyst });
  assert.equal(r.status, 200);
  assert.equal(r.json.email, 'a@x.io');
  assert.equal(r.json.attributes.city, 'Pune');
  assert.equal(r.json.email_consent, 'subscribed');
  assert.equal(r.json.consent_history[0].reason, 'default');
  assert.deepEqual(r.json.recent_events.map((e) => e.event_id), ['v2', 'v1'], 'newest first');
  r = await api(srv.url, '/api/v1/contacts/nobody', { key: keys.analyst });
  assert.equal(r.status, 404);
  assert.equal(r.json.error.code, 'not_found');
  r = await api(srv.url, '/api/v1/contacts?limit=2', { key: keys.analyst });
  assert.deepEqual(r.json.items.map((c) => c.external_id), ['c1', 'c2']);
  assert.ok(r.json.next_cursor);
  r = await api(srv.url, `/api/v1/contacts?limit=2&cursor=${r.json.next_cursor}`, { key: keys.analyst });
  assert.deepEqual(r.json.items.map((c) => c.external_id), ['c3']);
  assert.equal(r.json.next_cursor, null);
  r = await api(srv.url, '/api/v1/contacts?email=a@x.io', { key: keys.analyst });
  assert.deepEqual(r.json.items.map((c) => c.external_id), ['c1', 'c3']);
  r = await api(srv.url, '/api/v1/contacts?colour=red', { key: keys.analyst });
  assert.equal(r.status, 400, 'an unknown parameter is named, not ignored');
});

test('consent: only an explicit, audited call re-subscribes; bad input is 422 with pointers', async () => {
  const before = await auditCount();
  let r = await api(srv.url, '/api/v1/contacts/c2/consent', { method: 'POST', key: keys.marketer, body: { state: 'unsubscribed', reason: 'asked by mail' } });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { external_id: 'c2', from: 'subscribed', to: 'unsubscribed' });
  // A bulk source cannot bring the contact back...
  r = await api(srv.url, '/api/v1/contacts', { method: 'POST', key: keys.ingest, body: { external_id: 'c2', email_consent: 'subscribed' } });
  assert.equal(r.status, 200);
  assert.equal((await api(srv.url, '/api/v1/contacts/c2', { key: keys.analyst })).json.email_consent, 'unsubscribed');
  // ...an explicit change with a reason can.
  r = await api(srv.url, '/api/v1/contacts/c2/consent', { method: 'POST', key: keys.admin, body: { state: 'subscribed', reason: 'opted in again on the phone' } });
  assert.equal(r.status, 200);
  const c = (await api(srv.url, '/api/v1/contacts/c2', { key: keys.analyst })).json;
  assert.equal(c.email_consent, 'subscribed');
  assert.equal(c.consent_history.at(-1).reason, 'opted in again on the phone');
  assert.equal(c.consent_history.at(-1).source, 'api');
  r = await api(srv.url, '/api/v1/contacts/c2/consent', { method: 'POST', key: keys.marketer, body: { state: 'maybe' } });
  assert.equal(r.status, 422);
  assert.deepEqual(r.json.error.details.map((d) => d.path), ['/state', '/reason']);
  const audit = (await api(srv.url, '/api/v1/audit?action=contact.consent', { key: keys.admin })).json.items;
  assert.equal(audit.length, 2, 'each consent change is audited');
  assert.equal(audit[0].after.email_consent, 'subscribed');
  assert.match(audit[0].actor, /^apikey:\d+:admin$/);
  assert.equal(await auditCount(), before + 2, 'and nothing else was: the bulk upsert is data, not audited');
});

test('delete: the contact is kept but gone everywhere, and the deletion is audited', async () => {
  let r = await api(srv.url, '/api/v1/contacts/c3', { method: 'DELETE', key: keys.analyst });
  assert.equal(r.status, 403);
  r = await api(srv.url, '/api/v1/contacts/c3', { method: 'DELETE', key: keys.marketer });
  assert.equal(r.status, 200);
  r = await api(srv.url, '/api/v1/contacts/c3', { key: keys.analyst });
  assert.equal(r.status, 404);
  assert.match(r.json.error.message, /was deleted/);
  r = await api(srv.url, '/api/v1/contacts?email=a@x.io', { key: keys.analyst });
  assert.deepEqual(r.json.items.map((x) => x.external_id), ['c1']);
  r = await api(srv.url, '/api/v1/events', { method: 'POST', key: keys.ingest, body: { external_id: 'c3', event: 'visit' } });
  assert.equal(r.json.rejected[0].reason, 'contact_deleted', 'data for a deleted contact is refused');
  const a = (await api(srv.url, '/api/v1/audit?action=contact.delete&entity_id=c3', { key: keys.admin })).json.items;
  assert.equal(a.length, 1);
  assert.equal(a[0].before.email, 'a@x.io', 'the audit keeps what was deleted');
});

test('restore: a deleted contact comes back, audited, and replay brings its refused events', async () => {
  let r = await api(srv.url, '/api/v1/events', { method: 'POST', key: keys.ingest, body: { external_id: 'c3', event: 'visit', event_id: 'late-1' } });
  assert.equal(r.json.rejected[0].reason, 'contact_deleted');
  assert.match(r.json.rejected[0].message, /restore it \(POST \/api\/v1\/contacts\/\{external_id\}\/restore or engage contact restore\), then replay/);
  r = await api(srv.url, '/api/v1/contacts/c3/restore', { method: 'POST', key: keys.analyst });
  assert.equal(r.status, 403);
  r = await api(srv.url, '/api/v1/contacts/c3/restore', { method: 'POST', key: keys.marketer, body: { reason: 'deleted by mistake', x: 1 } });
  assert.equal(r.status, 422, 'only a reason may come with it');
  r = await api(srv.url, '/api/v1/contacts/c3/restore', { method: 'POST', key: keys.marketer, body: { reason: 'deleted by mistake' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.external_id, 'c3');
  assert.equal(r.json.email, 'a@x.io');
  r = await api(srv.url, '/api/v1/contacts/c3/restore', { method: 'POST', key: keys.marketer });
  assert.equal(r.status, 409, 'restored once');
  r = await api(srv.url, '/api/v1/contacts/nobody/restore', { method: 'POST', key: keys.marketer });
  assert.equal(r.status, 404);
  r = await api(srv.url, '/api/v1/contacts?email=a@x.io', { key: keys.analyst });
  assert.deepEqual(r.json.items.map((x) => x.external_id), ['c1', 'c3'], 'listed again');
  const a = (await api(srv.url, '/api/v1/audit?action=contact.restore&entity_id=c3', { key: keys.admin })).json.items;
  assert.equal(a.length, 1);
  assert.equal(a[0].after.reason, 'deleted by mistake');
  // Its events refused while it was deleted come back with a replay.
  const rp = engage(['rejected', 'replay', '--reason', 'contact_deleted', '--json'], { data });
  assert.equal(rp.code, 0, rp.stderr);
  assert.ok(JSON.parse(rp.stdout).ingested >= 2, rp.stdout);
  r = await api(srv.url, '/api/v1/contacts/c3', { key: keys.analyst });
  assert.equal(r.status, 200);
  assert.ok(r.json.recent_events.some((ev) => ev.event_id === 'late-1'), JSON.stringify(r.json.recent_events));
  // The CLI restores too.
  r = await api(srv.url, '/api/v1/contacts/c2', { method: 'DELETE', key: keys.marketer });
  assert.equal(r.status, 200);
  const c = engage(['contact', 'restore', 'c2', '--reason', 'asked by phone'], { data });
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, /contact c2 restored/);
  r = await api(srv.url, '/api/v1/contacts/c2', { key: keys.analyst });
  assert.equal(r.status, 200);
});

test('API keys: created (shown once), listed without secrets, revoked at once; all audited', async () => {
  let r = await api(srv.url, '/api/v1/apikeys', { method: 'POST', key: keys.admin, body: { name: 'website', role: 'ingest' } });
  assert.equal(r.status, 201);
  assert.match(r.json.key, /^ek_/);
  const { id, key } = r.json;
  r = await api(srv.url, '/api/v1/apikeys', { key: keys.admin });
  assert.equal(r.status, 200);
  const listed = r.json.items.find((k) => k.id === id);
  assert.equal(listed.role, 'ingest');
  assert.ok(!JSON.stringify(r.json).includes(key), 'the secret is never listed');
  r = await fetch(srv.url + '/v1/track', { method: 'POST', headers: { authorization: 'Basic ' + Buffer.from(key + ':').toString('base64') }, body: '{"userId":"c1","event":"visit"}' });
  assert.equal(r.status, 200, 'the new key works');
  r = await api(srv.url, `/api/v1/apikeys/${id}`, { method: 'DELETE', key: keys.admin });
  assert.equal(r.status, 200);
  r = await fetch(srv.url + '/v1/track', { method: 'POST', headers: { authorization: 'Basic ' + Buffer.from(key + ':').toString('base64') }, body: '{"userId":"c1","event":"visit"}' });
  assert.equal(r.status, 401, 'a revoked key is refused at once, cache or not');
  r = await api(srv.url, '/api/v1/apikeys', { method: 'POST', key: keys.admin, body: { name: '', role: 'wizard' } });
  assert.equal(r.status, 422);
  assert.deepEqual(r.json.error.details.map((d) => d.path), ['/name', '/role']);
  const audit = (await api(srv.url, '/api/v1/audit?entity=apikey', { key: keys.admin })).json.items;
  assert.deepEqual(audit.slice(0, 2).map((a) => a.action), ['apikey.revoke', 'apikey.create']);
  assert.ok(!JSON.stringify(audit).includes(key), 'nor is it in the audit log');
});

test('audit: filters, time window and cursor pagination', async () => {
  let r = await api(srv.url, '/api/v1/audit?limit=2', { key: keys.admin });
  assert.equal(r.json.items.length, 2);
  const first = r.json.items;
  r = await api(srv.url, `/api/v1/audit?limit=2&cursor=${r.json.next_cursor}`, { key: keys.admin });
  assert.ok(r.json.items.every((a) => a.id < first[1].id), 'the next page is older');
  r = await api(srv.url, '/api/v1/audit?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z', { key: keys.admin });
  assert.deepEqual(r.json.items, []);
  r = await api(srv.url, '/api/v1/audit?since=yesterday', { key: keys.admin });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.path, 'since');
});

// Every row of the role table in docs/api.md, every role, no key: 401 without one, 403
// for a role not ticked, and neither for a role ticked (2xx, or 4xx about the input).
test('the role x route table of docs/api.md is what the router enforces', async () => {
  const md = readFileSync(join(root, 'docs', 'api.md'), 'utf8');
  const rows = md.split('\n').filter((l) => /^\| `(GET|POST|PUT|DELETE) /.test(l));
  assert.ok(rows.length >= 30, `${rows.length} routes in the table`);
  const cols = ['public', 'ingest', 'analyst', 'marketer', 'admin'];
  const fill = { '{name}': 'order_created', '{id}': '999999', '{external_id}': 'c1' };
  let checked = 0;
  for (const row of rows) {
    const cells = row.split('|').slice(1, -1).map((c) => c.trim());
    let [method, path] = cells[0].replace(/`/g, '').split(' ');
    path = path.replace(/\{identify,[^}]*\}/, 'track').replace(/\{[a-z_]+\}/g, (m) => fill[m] ?? 'x');
    const allowed = Object.fromEntries(cols.map((c, i) => [c, cells[i + 1] === '✓']));
    const body = method === 'GET' || method === 'DELETE' ? undefined : '{}';
    const call = (key) => fetch(srv.url + path, { method, body, headers: key ? { authorization: `Bearer ${key}`, 'content-type': 'application/json' } : {} });
    if (allowed.public) {
      // public: no credentials asked (a made-up token on /u/ is 404, a non-one-click POST 400)
      const st = (await call(null)).status;
      assert.ok(st !== 401 && st !== 403 && st < 500, `${method} ${path} is public: ${st}`);
      checked++;
      continue;
    }
    assert.equal((await call(null)).status, 401, `${method} ${path} without a key`);
    for (const role of cols.slice(1)) {
      // Destructive routes are called with ids that do not exist: 404 is "allowed".
      const st = (await call(keys[role])).status;
      if (allowed[role]) assert.ok(st !== 401 && st !== 403, `${method} ${path} as ${role}: ${st}`);
      else assert.equal(st, 403, `${method} ${path} as ${role}`);
      checked++;
    }
  }
  assert.ok(checked > 100, `${checked} route x role checks`);
});

// A 300 KB line used to make a 300 KB dead letter, listed whole by ?limit=1.
test('dead letters are bounded: 64 KiB kept, 4 KiB a letter in lists, about 1 MiB a page; a truncated one is never replayed', async () => {
  const dir = tmpData('engage-csv-');
  const imp = engage(['import', 'contacts', writeCsv(dir, 'big.csv', `external_id,email,bio\nbig1,not-an-email,${'x'.repeat(300 * 1024)}\n`), '--json'], { data });
  assert.equal(imp.code, 3, imp.stderr);
  let r = await api(srv.url, '/api/v1/rejected?reason=invalid_email&limit=1', { key: keys.analyst });
  assert.equal(r.status, 200);
  assert.ok(r.text.length < 8192, `a listing shows a preview: ${r.text.length} bytes`);
  const item = r.json.items[0];
  assert.match(item.origin, /big\.csv:2$/);
  assert.equal(item.truncated, true, 'the letter kept only the first 64 KiB');
  assert.equal(item.raw_preview, true);
  assert.ok(item.raw_bytes > 300 * 1024, `raw_bytes ${item.raw_bytes}: the size received`);
  assert.ok(Buffer.byteLength(item.raw) <= 4096);
  r = await api(srv.url, `/api/v1/rejected/${item.id}`, { key: keys.analyst });
  assert.equal(r.status, 200);
  assert.equal(typeof r.json.raw, 'string', 'a cut record is not JSON: shown as text');
  const kept = Buffer.byteLength(r.json.raw);
  assert.ok(kept <= 65536 && kept > 65000, `the single view shows all that was kept: ${kept}`);
  assert.ok(r.json.raw.startsWith('{"attributes":{"bio":"xxx'));
  assert.equal(r.json.raw_preview, undefined);
  assert.equal((await api(srv.url, '/api/v1/rejected/999999', { key: keys.analyst })).status, 404);
  r = await api(srv.url, '/api/v1/rejected/replay', { method: 'POST', key: keys.marketer, body: { id: item.id } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { tried: 0, ingested: 0, still_rejected: 0, not_replayable: 1 },
    'replaying the first 64 KiB would store a corrupted record');
  r = await api(srv.url, `/api/v1/rejected/${item.id}`, { key: keys.analyst });
  assert.equal(r.json.status, 'pending');

  // 300 letters of 5 KB each: a page ends past about 1 MiB whatever the limit.
  let rows = 'external_id,email,bio\n';
  for (let i = 0; i < 300; i++) rows += `p${i},bad${i},${'y'.repeat(5000)}\n`;
  assert.equal(engage(['import', 'contacts', writeCsv(dir, 'many.csv', rows)], { data }).code, 3);
  let seen = 0, pages = 0, cursor = null;
  do {
    r = await api(srv.url, `/api/v1/rejected?reason=invalid_email&limit=1000${cursor ? '&cursor=' + cursor : ''}`, { key: keys.analyst });
    assert.equal(r.status, 200);
    assert.ok(r.text.length < 1.1 * (1 << 20), `page ${pages}: ${r.text.length} bytes`);
    seen += r.json.items.length;
    pages++;
    cursor = r.json.next_cursor;
  } while (cursor);
  assert.equal(seen, 301, 'the cursor walks them all');
  assert.ok(pages >= 2, `${pages} pages`);
});

// The API stored a 3 MB attribute that the CSV import refused.
test('a 3 MB attribute or property is refused by the API as by a CSV import ([ingest] max_value_bytes)', async () => {
  const big = 'x'.repeat(3 * 1024 * 1024);
  const refused = (field) => [{ index: 0, reason: 'value_too_large', field,
                                message: 'value of 3145728 bytes exceeds [ingest] max_value_bytes (1048576)' }];
  let r = await api(srv.url, '/api/v1/contacts', { method: 'POST', key: keys.ingest, body: { external_id: 'big-api', attributes: { bio: big } } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.rejected, refused('bio'));
  assert.equal((await api(srv.url, '/api/v1/contacts/big-api', { key: keys.analyst })).status, 404, 'not stored');
  r = await api(srv.url, '/api/v1/events', { method: 'POST', key: keys.ingest, body: { external_id: 'c1', event: 'visit', properties: { note: big } } });
  assert.deepEqual(r.json.rejected, refused('note'));
  const dir = tmpData('engage-csv-');
  const imp = engage(['import', 'contacts', writeCsv(dir, 'b.csv', `external_id,bio\nbig-csv,${big}\n`), '--json'], { data });
  assert.equal(imp.code, 3);
  assert.deepEqual(JSON.parse(imp.stdout).rejected_by_reason.value_too_large.examples.map((x) => [x.field, x.message]),
                   [['bio', refused('bio')[0].message]], 'the same sentence');
  r = await api(srv.url, '/api/v1/rejected?reason=value_too_large', { key: keys.analyst });
  assert.deepEqual(r.json.items.map((l) => [l.source, l.field, l.truncated]),
                   [['api', 'bio', true], ['api', 'note', true], ['csv', 'bio', true]]);
});
