// tests/e2e/limits.test.mjs -- [ingest] max_value_bytes is one rule for every source: a
// string value past it refuses its record with the same reason and sentence from CSV, the
// native API, the tracking API (the fast path and the general one), and CRM sync.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { engage, tmpData, startServer, api, apikey, writeCsv, exportEvents } from './lib.mjs';

const CAP = 1000;
const big = 'x'.repeat(CAP + 1000);
const sentence = `value of ${big.length} bytes exceeds [ingest] max_value_bytes (${CAP})`;
const refused = (index, field) => ({ index, reason: 'value_too_large', field, message: sentence });

test('a value over [ingest] max_value_bytes is refused the same way by every source', async () => {
  const data = tmpData();
  writeFileSync(join(data, 'engage.conf'), `[ingest]\nmax_value_bytes = ${CAP}\n`);
  assert.equal(engage(['migrate'], { data }).code, 0);
  const writeKey = apikey(data, 'ingest');
  const srv = await startServer(data);
  try {
    const track = async (path, body) => {
      const r = await fetch(srv.url + path, { method: 'POST', body: JSON.stringify(body),
        headers: { 'content-type': 'application/json', authorization: 'Basic ' + Buffer.from(writeKey + ':').toString('base64') } });
      assert.equal(r.status, 200);
      return r.json();
    };
    // Tracking: identify (a contact), track with a messageId and no contract (the fast
    // path), track without one (the general path), and the same in a batch.
    assert.deepEqual((await track('/v1/identify', { userId: 'u1', traits: { bio: big } })).rejected, [refused(0, 'bio')]);
    assert.deepEqual((await track('/v1/track', { userId: 'u1', event: 'visit', messageId: 'm1', properties: { note: big } })).rejected,
                     [refused(0, 'note')]);
    assert.deepEqual((await track('/v1/track', { userId: 'u1', event: 'visit', properties: { note: big } })).rejected,
                     [refused(0, 'note')]);
    let r = await track('/v1/batch', { batch: [
      { type: 'track', userId: 'u1', event: 'visit', messageId: 'm2', properties: { note: big } },
      { type: 'page', userId: 'u1', name: big, messageId: 'm3' },
      { type: 'track', userId: 'u1', event: 'visit', messageId: 'm4', properties: { note: big.slice(0, CAP) } },
    ] });
    assert.deepEqual(r.rejected, [refused(0, 'note'), refused(1, 'name')]);
    assert.equal(r.accepted, 1, 'a value of exactly the cap is taken');
    // The native API.
    r = await api(srv.url, '/api/v1/contacts', { method: 'POST', key: writeKey, body: { external_id: 'u2', attributes: { bio: big } } });
    assert.deepEqual(r.json.rejected, [refused(0, 'bio')]);
    r = await api(srv.url, '/api/v1/events', { method: 'POST', key: writeKey, body: { external_id: 'u2', event: 'visit', properties: { note: big } } });
    assert.deepEqual(r.json.rejected, [refused(0, 'note')]);
  } finally {
    const stop = await srv.stop();
    assert.equal(stop.code, 0, srv.stderr());
  }
  // CSV.
  let r = engage(['import', 'contacts', writeCsv(data, 'c.csv', `external_id,bio\nu3,${big}\n`), '--json'], { data });
  assert.equal(r.code, 3);
  assert.equal(JSON.parse(r.stdout).rejected_by_reason.value_too_large.examples[0].message, sentence);
  // CRM sync from SQLite: a contacts table, and an events table (prepared straight from
  // the row's values when nothing else is wrong).
  const file = join(data, 'crm.db');
  const sq = spawnSync('sqlite3', [file], { encoding: 'utf8', input:
    `CREATE TABLE people (id TEXT PRIMARY KEY, bio TEXT, updated_at TEXT);
     CREATE TABLE notes (id INTEGER PRIMARY KEY, who TEXT, note TEXT, at TEXT);
     INSERT INTO people VALUES ('s1', '${big}', '2026-10-01T00:00:00.000Z'), ('s2', 'short', '2026-10-01T00:00:01.000Z');
     INSERT INTO notes VALUES (1, 's2', '${big}', '2026-10-02T00:00:00.000Z'), (2, 's2', 'short', '2026-10-02T00:00:01.000Z');` });
  assert.equal(sq.status, 0, sq.stderr);
  writeFileSync(join(data, 'map.json'), JSON.stringify({ tables: [
    { table: 'people', into: 'contacts', key: 'id', cursor: 'updated_at', external_id: 'id', attributes: { bio: 'bio' } },
    { table: 'notes', into: 'events', key: 'id', cursor: 'at', external_id: 'who', event: 'crm_note', occurred_at: 'at', properties: { note: 'note' } },
  ] }));
  assert.equal(engage(['sync', 'source', 'add', '--name', 'crm', '--kind', 'sqlite', '--dsn', file, '--mapping', join(data, 'map.json')], { data }).code, 0);
  r = engage(['sync', 'run', '--json'], { data });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).rejected, 2, r.stdout);
  const letters = JSON.parse(engage(['rejected', 'list', '--source', 'sync:crm', '--json'], { data }).stdout).items;
  assert.deepEqual(letters.map((l) => [l.reason, l.field, l.message]),
                   [['value_too_large', 'bio', sentence], ['value_too_large', 'note', sentence]]);
  // Nothing refused was stored; what fit was.
  assert.ok(exportEvents(data).every((e) => !JSON.stringify(e.properties).includes(big)));
  assert.equal(engage(['contact', 'show', 's1'], { data }).code, 1);
  assert.equal(JSON.parse(engage(['contact', 'show', 's2'], { data }).stdout).attributes.bio, 'short');
});
