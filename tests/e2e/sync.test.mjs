// tests/e2e/sync.test.mjs -- CRM sync from a real PostgreSQL (a throwaway cluster) and from
// SQLite: initial sync, updates, soft deletes, restart from the checkpoint, the late-commit
// case, a source down and back, kill -9 in the middle, sticky opt-outs, secrets never shown,
// backfill, reconciliation (by the CLI, and nightly by the server).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { engage, engageAsync, tmpData, waitExit, exportEvents, startServer, api, apikey } from './lib.mjs';
import { startPostgres, postgresAvailable } from './pg.mjs';

let pg;
// TLS on: a source that sends a password asks for it (sslmode=require), as every one must.
before(async () => { if (postgresAvailable()) pg = await startPostgres({ ssl: true }); });
after(async () => { if (pg) await pg.stop(); });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const dsnOf = (name) => pg.conninfo.replace('dbname=postgres', `dbname=${name}`);
// A fresh database in the cluster, and a psql on it.
function database(name) {
  pg.psql(`CREATE DATABASE ${name};`);
  return (sql) => {
    const r = spawnSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', dsnOf(name)], { input: sql, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
}

const MAPPING = {
  tables: [
    { table: 'contacts', into: 'contacts', key: 'id', cursor: 'updated_at', external_id: 'id',
      email: 'email', email_consent: 'email_opt_in',
      attributes: { name: 'full_name', city: 'city' }, deleted: 'deleted_at' },
    { table: 'orders', into: 'events', key: 'id', cursor: 'updated_at', external_id: 'contact_id',
      event: 'order_created', occurred_at: 'created_at',
      properties: { order_id: 'id', amount: 'amount', currency: 'currency', created_at: 'created_at' },
      deleted: 'deleted_at' },
  ],
};

const PG_SCHEMA = `
CREATE TABLE contacts (id text PRIMARY KEY, email text, full_name text, city text,
  email_opt_in boolean, updated_at timestamptz NOT NULL DEFAULT now(), deleted_at timestamptz);
CREATE TABLE orders (id bigint PRIMARY KEY, contact_id text, amount numeric, currency text,
  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), deleted_at timestamptz);
CREATE INDEX ON contacts (updated_at, id); CREATE INDEX ON orders (updated_at, id);`;

function setup(name, kind, dsn, extra = [], env = {}) {
  const data = tmpData();
  const map = join(data, 'mapping.json');
  engage(['migrate'], { data });
  writeFileSync(map, JSON.stringify(MAPPING));
  const r = engage(['sync', 'source', 'add', '--name', name, '--kind', kind, '--dsn', dsn, '--mapping', map, ...extra], { data, env });
  assert.equal(r.code, 0, r.stderr);
  return data;
}

function run(data, args = [], env = {}) {
  const r = engage(['sync', 'run', '--json', ...args], { data, env });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  return JSON.parse(r.stdout);
}

const orders = (data) => exportEvents(data).filter((e) => e.source.startsWith('sync:'));

test('PostgreSQL: initial sync, updates, soft deletes, sticky opt-outs, restart from the checkpoint', { skip: !postgresAvailable() }, async () => {
  const db = database('crm1');
  db(PG_SCHEMA);
  db(`INSERT INTO contacts (id, email, full_name, city, email_opt_in) VALUES
        ('c1', 'asha@example.com', 'Asha', 'Pune', true), ('c2', 'bala@example.com', 'Bala', 'Goa', false);
      INSERT INTO orders (id, contact_id, amount, currency, created_at) VALUES
        (1, 'c1', 1299.5, 'INR', '2026-10-05T10:00:00Z'), (2, 'c1', 50, 'INR', '2026-10-06T10:00:00Z'),
        (3, 'c2', -5, 'INR', '2026-10-07T10:00:00Z');`);
  const data = setup('crm', 'postgres', `${dsnOf('crm1')}`);
  assert.equal(engage(['sync', 'source', 'test', 'crm'], { data }).code, 0);
  let r = run(data);
  assert.deepEqual([r.read, r.contacts, r.events, r.rejected], [5, 2, 2, 1], JSON.stringify(r));
  let ev = orders(data);
  assert.deepEqual(ev.map((e) => e.event_id).sort(), ['crm:orders:1', 'crm:orders:2']);
  assert.equal(ev.find((e) => e.event_id === 'crm:orders:1').properties.amount, 1299.5);
  assert.equal(ev[0].occurred_at.endsWith('Z'), true);
  const dl = JSON.parse(engage(['rejected', 'list', '--json'], { data }).stdout).items;
  assert.ok(dl.some((d) => d.origin === 'orders:3' && d.reason === 'constraint'), JSON.stringify(dl));
  // Nothing new: nothing read.
  r = run(data);
  assert.equal(r.read, 0);
  // An update, a soft delete, an opt-in from the CRM for an opted-out contact.
  // (This CRM has no triggers: its application sets updated_at, as many do.)
  db(`UPDATE orders SET amount = 60, updated_at = now() WHERE id = 2;
      UPDATE orders SET deleted_at = now(), updated_at = now() WHERE id = 1;
      UPDATE contacts SET email_opt_in = true, city = 'Mumbai', updated_at = now() WHERE id = 'c2';`);
  r = run(data);
  assert.deepEqual([r.read, r.events, r.deleted, r.contacts], [3, 1, 1, 1], JSON.stringify(r));
  ev = orders(data);
  assert.deepEqual(ev.map((e) => [e.event_id, e.properties.amount]), [['crm:orders:2', 60]]);
  const c2 = JSON.parse(engage(['contact', 'show', 'c2'], { data }).stdout);
  assert.equal(c2.attributes.city, 'Mumbai');
  assert.equal(c2.email_consent, 'unsubscribed', 'an opt-out is sticky: a CRM flag cannot undo it');
  // A soft-deleted contact is deleted here too.
  db(`UPDATE contacts SET deleted_at = now(), updated_at = now() WHERE id = 'c1';`);
  r = run(data);
  assert.equal(r.deleted, 1);
  assert.notEqual(engage(['contact', 'show', 'c1'], { data }).code, 0);
  // New rows after a restart: only they are read (the checkpoint survived the process).
  db(`INSERT INTO orders (id, contact_id, amount, currency, created_at) VALUES (4, 'c2', 10, 'INR', '2026-10-08T10:00:00Z');`);
  r = run(data);
  assert.deepEqual([r.read, r.events], [1, 1]);
});

test('PostgreSQL: a transaction that began first but commits last is still synced', { skip: !postgresAvailable() }, async () => {
  const db = database('crm2');
  db(PG_SCHEMA);
  db(`INSERT INTO contacts (id, email) VALUES ('c1', 'a@example.com');
      INSERT INTO orders (id, contact_id, amount, currency, created_at) VALUES (1, 'c1', 1, 'INR', '2026-10-01T00:00:00Z');`);
  const data = setup('crm', 'postgres', dsnOf('crm2'));
  assert.equal(run(data).events, 1);
  // T1 begins and writes (updated_at = its start), then T2 writes and commits, then a pass.
  const t1 = spawn('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', `${dsnOf('crm2')}`], { stdio: ['pipe', 'pipe', 'pipe'] });
  t1.stdin.write(`BEGIN; INSERT INTO orders (id, contact_id, amount, currency, created_at) VALUES (10, 'c1', 10, 'INR', '2026-10-02T00:00:00Z'); SELECT pg_sleep(0.3);\n`);
  await sleep(600);
  db(`INSERT INTO orders (id, contact_id, amount, currency, created_at) VALUES (11, 'c1', 11, 'INR', '2026-10-03T00:00:00Z');`);
  let r = run(data);
  assert.equal(r.events, 1, 'T2 is stored at once: ' + JSON.stringify(r));
  t1.stdin.end('COMMIT;\n');
  assert.equal((await waitExit(t1)).code, 0);
  r = run(data);
  assert.deepEqual(orders(data).map((e) => e.event_id).sort(), ['crm:orders:1', 'crm:orders:10', 'crm:orders:11'],
    'T1 committed after the pass that stored T2, and is not skipped');
});

test('PostgreSQL: a source down is an error kept in its status, its checkpoint unmoved; back up, it resumes', { skip: !postgresAvailable() }, async () => {
  const db = database('crm3');
  db(PG_SCHEMA);
  db(`INSERT INTO orders (id, contact_id, amount, currency, created_at) VALUES (1, 'c1', 1, 'INR', '2026-10-01T00:00:00Z');`);
  const data = setup('crm', 'postgres', dsnOf('crm3'));
  assert.equal(run(data).events, 1);
  pg.psql(`ALTER DATABASE crm3 ALLOW_CONNECTIONS false;`);
  const down = engage(['sync', 'run'], { data });
  assert.equal(down.code, 1);
  assert.match(down.stderr, /sync crm: source crm: cannot connect/);
  let s = JSON.parse(engage(['sync', 'source', 'list', '--json'], { data }).stdout).items[0];
  assert.equal(s.failures, 1);
  assert.match(s.last_error, /cannot connect/);
  pg.psql(`ALTER DATABASE crm3 ALLOW_CONNECTIONS true;`);
  db(`INSERT INTO orders (id, contact_id, amount, currency, created_at) VALUES (2, 'c1', 2, 'INR', '2026-10-02T00:00:00Z');`);
  const r = run(data);
  assert.deepEqual([r.read, r.events], [1, 1], 'only the new row: the checkpoint held');
  s = JSON.parse(engage(['sync', 'source', 'list', '--json'], { data }).stdout).items[0];
  assert.equal(s.failures, 0);
});

test('PostgreSQL: kill -9 in the middle of a sync loses nothing and stores nothing twice', { skip: !postgresAvailable() }, async () => {
  const db = database('crm4');
  db(PG_SCHEMA);
  const N = 60000;
  db(`INSERT INTO orders (id, contact_id, amount, currency, created_at)
      SELECT g, 'c' || (g % 500), g % 1000, 'INR', timestamptz '2026-01-01' + g * interval '1 minute' FROM generate_series(1, ${N}) g;`);
  const data = setup('crm', 'postgres', dsnOf('crm4'));
  const child = engageAsync(['sync', 'run', '--batch', '500'], { data });
  const db3 = join(data, 'engage.db');
  for (let i = 0; i < 200; i++) { // until some batches are in
    await sleep(50);
    const n = spawnSync('sqlite3', [db3, 'SELECT coalesce(sum(rows), 0) FROM sync_checkpoints'], { encoding: 'utf8' }).stdout.trim();
    if (Number(n) >= 2000) break;
  }
  child.kill('SIGKILL');
  const k = await waitExit(child);
  assert.equal(k.signal, 'SIGKILL', 'killed before it finished (make N larger if this fails)');
  const r = run(data);
  assert.ok(r.read > 0 && r.read < N, JSON.stringify(r));
  const ev = orders(data);
  assert.equal(ev.length, N, 'every row once');
  assert.equal(new Set(ev.map((e) => e.event_id)).size, N);
});

test('SQLite: the source file missing then back; passwords are never shown or stored in clear', async () => {
  const dir = tmpData('engage-crm-');
  const file = join(dir, 'crm.db');
  const sq = (sql) => { const r = spawnSync('sqlite3', [file], { input: sql, encoding: 'utf8' }); assert.equal(r.status, 0, r.stderr); };
  sq(`CREATE TABLE contacts (id TEXT PRIMARY KEY, email TEXT, full_name TEXT, city TEXT, email_opt_in INTEGER, updated_at TEXT, deleted_at TEXT);
      CREATE TABLE orders (id INTEGER PRIMARY KEY, contact_id TEXT, amount REAL, currency TEXT, created_at TEXT, updated_at TEXT, deleted_at TEXT);
      INSERT INTO contacts VALUES ('s1', 's1@example.com', 'Sam', 'Jaipur', 0, '2026-10-01T00:00:00.000Z', NULL);
      INSERT INTO orders VALUES (1, 's1', 5, 'INR', '2026-10-02T00:00:00.000Z', '2026-10-02T00:00:00.000Z', NULL);`);
  const data = setup('books', 'sqlite', file);
  let r = run(data);
  assert.deepEqual([r.contacts, r.events], [1, 1]);
  renameSync(file, file + '.away');
  const bad = engage(['sync', 'run'], { data });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /cannot open/);
  renameSync(file + '.away', file);
  sq(`INSERT INTO orders VALUES (2, 's1', 7, 'INR', '2026-10-03T00:00:00.000Z', '2026-10-03T00:00:00.000Z', NULL);`);
  r = run(data);
  assert.deepEqual([r.read, r.events], [1, 1]);

  // Secrets: a sealed password and an env reference, and a DSN carrying one is refused.
  const secret = 'Sup3r-Secret-pw!';
  const map = join(data, 'mapping.json');
  let a = engage(['sync', 'source', 'add', '--name', 'sealed', '--kind', 'postgres', '--dsn', 'host=127.0.0.1 dbname=x sslmode=require', '--mapping', map, '--password-stdin'], { data, input: secret + '\n' });
  assert.equal(a.code, 0, a.stderr);
  a = engage(['sync', 'source', 'add', '--name', 'inurl', '--kind', 'postgres', '--dsn', `host=127.0.0.1 password=${secret}`, '--mapping', map], { data });
  assert.equal(a.code, 1);
  assert.match(a.stderr, /--dsn: must not hold the password/);
  assert.ok(!a.stderr.includes(secret));
  const shown = engage(['sync', 'source', 'list', '--json'], { data }).stdout + engage(['audit', 'list', '--json'], { data }).stdout;
  assert.ok(!shown.includes(secret), 'never printed');
  assert.match(shown, /"password": "sealed"/);
  const raw = readFileSync(join(data, 'engage.db')).toString('latin1');
  assert.ok(!raw.includes(secret), 'never stored in clear');
  // A bad mapping is refused with every problem, each with its pointer.
  writeFileSync(map, JSON.stringify({ tables: [{ table: 'x; drop', into: 'events', key: 'id', lookback_seconds: -1 }] }));
  a = engage(['sync', 'source', 'add', '--name', 'bad', '--kind', 'sqlite', '--dsn', file, '--mapping', map], { data });
  assert.equal(a.code, 1);
  assert.match(a.stderr, /\/tables\/0\/table: /);
  assert.match(a.stderr, /\/tables\/0\/cursor: is required/);
  assert.match(a.stderr, /\/tables\/0\/event: is required/);
  assert.match(a.stderr, /\/tables\/0\/lookback_seconds: must be an integer from 0 to 86400/);
});

test('engage serve syncs on its own; sources over the API; health and metrics show the lag', async () => {
  const dir = tmpData('engage-crm-');
  const file = join(dir, 'crm.db');
  const sq = (sql) => { const r = spawnSync('sqlite3', [file], { input: sql, encoding: 'utf8' }); assert.equal(r.status, 0, r.stderr); };
  const now = () => new Date().toISOString();
  sq(`CREATE TABLE contacts (id TEXT PRIMARY KEY, email TEXT, full_name TEXT, city TEXT, email_opt_in INTEGER, updated_at TEXT, deleted_at TEXT);
      CREATE TABLE orders (id INTEGER PRIMARY KEY, contact_id TEXT, amount REAL, currency TEXT, created_at TEXT, updated_at TEXT, deleted_at TEXT);
      INSERT INTO orders VALUES (1, 'w1', 5, 'INR', '${now()}', '${now()}', NULL);`);
  const data = tmpData();
  engage(['migrate'], { data });
  writeFileSync(join(data, 'engage.conf'), `[sync]\ninterval_seconds = 1\nsqlite_dir = ${dir}\n`);
  const admin = apikey(data, 'admin'), analyst = apikey(data, 'analyst'), ingest = apikey(data, 'ingest');
  const srv = await startServer(data);
  try {
    let r = await api(srv.url, '/api/v1/sync/sources', { method: 'POST', key: admin,
      body: { name: 'books', kind: 'sqlite', dsn: file, mapping: MAPPING } });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.password, 'none');
    r = await api(srv.url, '/api/v1/sync/sources', { method: 'POST', key: admin,
      body: { name: 'books', kind: 'sqlite', dsn: file, mapping: MAPPING } });
    assert.equal(r.status, 409);
    r = await api(srv.url, '/api/v1/sync/sources', { method: 'POST', key: admin,
      body: { name: 'Bad Name', kind: 'oracle', dsn: '', mapping: { tables: [{ table: 'x', into: 'events' }] } } });
    assert.equal(r.status, 422);
    const paths = r.json.error.details.map((d) => d.path);
    for (const p of ['/name', '/kind', '/dsn', '/mapping/tables/0/key', '/mapping/tables/0/event'])
      assert.ok(paths.includes(p), `${p} in ${paths}`);
    // A source whose file goes away after it was added.
    writeFileSync(join(dir, 'missing.db'), '');
    r = await api(srv.url, '/api/v1/sync/sources', { method: 'POST', key: admin,
      body: { name: 'gone', kind: 'sqlite', dsn: join(dir, 'missing.db'), mapping: MAPPING } });
    assert.equal(r.status, 201, r.text);
    rmSync(join(dir, 'missing.db'));
    // The worker syncs within a couple of intervals, and again after new rows.
    const health = async () => (await api(srv.url, '/api/v1/sync/health', { key: analyst })).json.items;
    let books;
    for (let i = 0; i < 100; i++) {
      books = (await health()).find((s) => s.name === 'books');
      if (books?.tables?.find((t) => t.table === 'orders')?.rows >= 1) break;
      await sleep(100);
    }
    sq(`INSERT INTO orders VALUES (2, 'w1', 6, 'INR', '${now()}', '${now()}', NULL);`);
    for (let i = 0; i < 100; i++) {
      books = (await health()).find((s) => s.name === 'books');
      if (books.tables.find((t) => t.table === 'orders').rows >= 2) break;
      await sleep(100);
    }
    const orders = books.tables.find((t) => t.table === 'orders');
    assert.equal(books.status, 'ok');
    assert.equal(orders.rows, 2, JSON.stringify(books));
    assert.ok(orders.lag_p95_ms > 0 && orders.lag_p95_ms < 60000, JSON.stringify(orders));
    assert.ok(orders.lag_seconds >= 0 && orders.newest_row_at, JSON.stringify(orders));
    // Figures for people: the rate to 2 decimals beside the hour's count, times in whole ms.
    assert.equal(orders.rows_last_hour, 2, JSON.stringify(orders));
    assert.equal(orders.rows_per_second, 0, 'two rows an hour round to 0.00 a second');
    assert.ok(Number.isInteger(orders.lag_p95_ms) && /^\d+(\.\d{1,3})?$/.test(String(orders.lag_seconds)), JSON.stringify(orders));
    const gone = (await health()).find((s) => s.name === 'gone');
    assert.equal(gone.status, 'failing');
    assert.ok(gone.failures >= 1);
    assert.match(gone.last_error, /missing\.db: No such file or directory/);
    const m = await (await fetch(srv.url + '/metrics')).text();
    assert.match(m, /engage_sync_rows_total\{source="books",table="orders"\} 2/);
    assert.match(m, /engage_sync_failures\{source="gone"\} [1-9]/);
    assert.equal((await api(srv.url, '/api/v1/sync/health', { key: ingest })).status, 403);
    assert.equal((await api(srv.url, '/api/v1/sync/sources', { key: analyst })).status, 403);
    r = await api(srv.url, '/api/v1/sync/sources/gone', { method: 'DELETE', key: admin });
    assert.equal(r.status, 200);
    const audit = (await api(srv.url, '/api/v1/audit', { key: admin })).json.items.map((a) => a.action);
    assert.ok(audit.includes('sync_source.add') && audit.includes('sync_source.remove'), audit.join());
  } finally {
    const r = await srv.stop();
    assert.equal(r.code, 0, 'clean exit (no leaks under ASan): ' + srv.stderr());
  }
});

test('PostgreSQL: backfill reads history again beside the live sync, never moving its checkpoint', { skip: !postgresAvailable() }, async () => {
  const db = database('crm5');
  db(PG_SCHEMA);
  const N = 3000;
  db(`INSERT INTO orders (id, contact_id, amount, currency, created_at, updated_at)
      SELECT g, 'c' || (g % 50), g, 'INR', timestamptz '2026-10-01' + g * interval '1 minute',
             timestamptz '2026-10-01' + g * interval '1 minute' FROM generate_series(1, ${N}) g;`);
  const data = setup('crm', 'postgres', dsnOf('crm5'));
  assert.equal(run(data, ['--batch', '500']).events, N);
  const checkpoint = () => spawnSync('sqlite3', [join(data, 'engage.db'), 'SELECT cursor, key, rows FROM sync_checkpoints'], { encoding: 'utf8' }).stdout;
  const before = checkpoint();
  // An update that did not bump updated_at: invisible to the live sync, found by a backfill.
  db(`UPDATE orders SET amount = 99999 WHERE id IN (5, 2990);`);
  assert.equal(run(data).read, 0);
  let bad = engage(['sync', 'backfill', '--source', 'crm', '--since', 'last tuesday'], { data });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--since: expected an ISO-8601 instant/);
  // From 2026-10-03 on: row 5 (2026-10-01 00:05) is before it, row 2990 after.
  const child = engageAsync(['sync', 'backfill', '--source', 'crm', '--since', '2026-10-03T00:00:00Z', '--batch', '200', '--json'], { data });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  // The live sync goes on beside it.
  db(`INSERT INTO orders (id, contact_id, amount, currency, created_at) VALUES (${N + 1}, 'c1', 1, 'INR', '2026-11-01T00:00:00Z');`);
  const live = run(data);
  assert.equal(live.read, 1);
  assert.equal(live.events + live.unchanged, 1, 'stored by whichever came first, once');
  const done = await waitExit(child);
  assert.equal(done.code, 0, done.stderr);
  const rep = JSON.parse(out);
  const inWindow = N - 2 * 24 * 60 + 1; // rows from 2026-10-03T00:00 on (minute 2880 included)
  assert.ok(rep.read === inWindow || rep.read === inWindow + 1, JSON.stringify(rep));
  assert.ok(rep.events >= 1 && rep.events <= 2, 'only the changed row (and perhaps the new one) stored anew: ' + JSON.stringify(rep));
  assert.equal(rep.unchanged, rep.read - rep.events);
  const ev = orders(data);
  assert.equal(ev.length, N + 1);
  assert.equal(new Set(ev.map((e) => e.event_id)).size, N + 1, 'nothing stored twice');
  assert.equal(ev.find((e) => e.event_id === 'crm:orders:2990').properties.amount, 99999);
  assert.equal(ev.find((e) => e.event_id === 'crm:orders:5').properties.amount, 5, 'before --since: left alone');
  // The live checkpoint moved only with the live sync (the new row), never back.
  assert.notEqual(checkpoint(), before);
  assert.match(checkpoint(), /"3001"\|3001$/m);
});

test('PostgreSQL: reconcile finds rows removed behind our back and rows the cursor missed; --repair fixes both', { skip: !postgresAvailable() }, async () => {
  const db = database('crm6');
  db(PG_SCHEMA);
  db(`INSERT INTO orders (id, contact_id, amount, currency, created_at)
      SELECT g, 'c' || (g % 20), g, 'INR', timestamptz '2026-10-01' + g * interval '1 hour' FROM generate_series(1, 200) g;`);
  const data = setup('crm', 'postgres', dsnOf('crm6'));
  assert.equal(run(data).events, 200);
  let r = engage(['sync', 'reconcile', '--json'], { data });
  assert.equal(r.code, 0, r.stderr);
  let rep = JSON.parse(r.stdout);
  assert.equal(rep.mismatches, 0, r.stdout);
  assert.equal(rep.tables.find((t) => t.table === 'contacts').skipped.length > 0, true);
  // A row its contract refuses is a dead letter, not a mismatch.
  db(`INSERT INTO orders (id, contact_id, amount, currency, created_at) VALUES (900, 'c1', -5, 'INR', '2026-10-02T04:00:00Z');`);
  assert.equal(run(data).rejected, 1);
  rep = JSON.parse(engage(['sync', 'reconcile', '--json'], { data }).stdout);
  assert.equal(rep.mismatches, 0, JSON.stringify(rep));
  assert.equal(rep.tables.find((t) => t.table === 'orders').refused, 1);
  assert.deepEqual(rep.tables.find((t) => t.table === 'orders').days, []);
  db(`DELETE FROM orders WHERE id = 900;`);
  assert.equal(engage(['rejected', 'dismiss', '--source', 'sync:crm'], { data }).code, 0);
  // Hard deletes (invisible to a cursor), and rows written with an old updated_at.
  db(`DELETE FROM orders WHERE id IN (7, 150);
      INSERT INTO orders (id, contact_id, amount, currency, created_at, updated_at) VALUES
        (1001, 'c1', 1, 'INR', '2026-10-02T05:00:00Z', '2026-01-01T00:00:00Z'),
        (1002, 'c1', 2, 'INR', '2026-10-02T06:00:00Z', '2026-01-01T00:00:00Z');`);
  assert.equal(run(data).read, 0, 'the live sync sees none of it');
  r = engage(['sync', 'reconcile', '--source', 'crm'], { data });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /crm orders: 200 source rows, 200 stored, 0 refused \(dead letters\), 2 missing, 2 extra/);
  assert.match(r.stdout, /2026-10-01: .*extra \["7"\]/);
  assert.match(r.stdout, /2026-10-02: .*missing \["1001","1002"\]|missing \["1002","1001"\]/);
  assert.match(r.stdout, /--repair/);
  r = engage(['sync', 'reconcile', '--source', 'crm', '--repair', '--json'], { data });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).mismatches, 4);
  const ids = orders(data).map((e) => e.event_id);
  assert.equal(ids.length, 200);
  assert.ok(ids.includes('crm:orders:1001') && !ids.includes('crm:orders:7'));
  r = engage(['sync', 'reconcile', '--json'], { data });
  assert.equal(JSON.parse(r.stdout).mismatches, 0, 'repaired');
  // Every report is kept, newest first (the server's own nightly run off: only these).
  writeFileSync(join(data, 'engage.conf'), '[sync]\nreconcile_hour = -1\n');
  const srv = await startServer(data);
  try {
    const analyst = apikey(data, 'analyst');
    const list = await api(srv.url, '/api/v1/sync/reconciliations?limit=2', { key: analyst });
    assert.equal(list.status, 200);
    assert.deepEqual(list.json.items.map((x) => [x.mismatches, x.repaired]), [[0, false], [4, true]]);
    assert.ok(list.json.next_cursor);
    const more = await api(srv.url, `/api/v1/sync/reconciliations?limit=5&cursor=${list.json.next_cursor}`, { key: analyst });
    assert.equal(more.json.items.length, 3);
    assert.equal(more.json.items[0].tables.find((t) => t.table === 'orders').extra, 2);
  } finally {
    await srv.stop();
  }
});

test('PostgreSQL: engage serve reconciles each source nightly, once a day across restarts', { skip: !postgresAvailable() }, async () => {
  const db = database('crm7');
  db(PG_SCHEMA);
  db(`INSERT INTO orders (id, contact_id, amount, currency, created_at)
      SELECT g, 'c' || (g % 5), g, 'INR', timestamptz '2026-10-01' + g * interval '1 hour' FROM generate_series(1, 50) g;`);
  // A password (trust auth: never asked for) that must never reach a log line; given,
  // so over TLS only.
  const secret = 'Nightly-Secret-pw!', env = { CRM7_PASSWORD: secret };
  const data = setup('crm', 'postgres', `${dsnOf('crm7')} sslmode=require`, ['--password-env', 'CRM7_PASSWORD'], env);
  assert.equal(run(data, [], env).events, 50);
  // A failing source is not reconciled while it fails.
  const map = join(data, 'mapping.json');
  assert.equal(engage(['sync', 'source', 'add', '--name', 'gone', '--kind', 'sqlite', '--dsn', join(data, 'missing.db'), '--mapping', map], { data }).code, 0);
  // A hard delete behind our back: no cursor sees it.
  db(`DELETE FROM orders WHERE id = 7;`);
  const analyst = apikey(data, 'analyst');
  const conf = (extra = '') => writeFileSync(join(data, 'engage.conf'), `[sync]\ninterval_seconds = 1\nreconcile_hour = 3\n${extra}`);
  const reports = async (srv) => (await api(srv.url, '/api/v1/sync/reconciliations', { key: analyst })).json.items;
  const waitReports = async (srv, n) => {
    let items = [];
    for (let i = 0; i < 300 && items.length < n; i++) { items = await reports(srv); if (items.length < n) await sleep(100); }
    return items;
  };
  const metrics = async (srv) => (await fetch(srv.url + '/metrics')).text();
  const stop = async (srv) => {
    const r = await srv.stop();
    assert.equal(r.code, 0, 'clean exit (no leaks under ASan): ' + srv.stderr());
    assert.ok(!srv.stderr().includes(secret), 'no password in the log');
  };

  // Started before the hour: the run waits for 03:00 (UTC), then reports the delete.
  conf();
  let srv = await startServer(data, { env: { ...env, ENGAGE_NOW: '2026-10-10T02:59:57Z' } });
  try {
    const items = await waitReports(srv, 1);
    assert.equal(items.length, 1, srv.stderr());
    const [rep] = items;
    assert.equal(rep.source, 'crm', 'the failing source was not reconciled');
    assert.ok(rep.started_at >= '2026-10-10T03:00:00' && rep.started_at < '2026-10-10T03:01', rep.started_at);
    assert.deepEqual([rep.mismatches, rep.repaired], [1, false]);
    assert.deepEqual(rep.tables.find((t) => t.table === 'orders').days[0].extra, ['7']);
    const m = await metrics(srv);
    assert.match(m, /^engage_sync_reconcile_mismatches\{source="crm"\} 1$/m);
    assert.doesNotMatch(m, /engage_sync_reconcile_mismatches\{source="gone"\}/);
    assert.match(m, /^engage_sync_reconciliations_total 1$/m);
    assert.match(srv.stderr(), new RegExp(`source crm: nightly reconciliation ${rep.id}: 1 mismatches`));
    assert.doesNotMatch(srv.stderr(), /source gone: the nightly reconciliation/, 'not even tried');
  } finally {
    await stop(srv);
  }

  // Restarted later that day: no second run, though the worker keeps passing.
  srv = await startServer(data, { env: { ...env, ENGAGE_NOW: '2026-10-10T09:00:00Z' } });
  try {
    db(`INSERT INTO orders (id, contact_id, amount, currency, created_at) VALUES (51, 'c1', 1, 'INR', '2026-10-05T00:00:00Z');`);
    for (let i = 0; i < 100 && !/engage_sync_rows_total\{source="crm",table="orders"\} 1/.test(await metrics(srv)); i++) await sleep(100);
    await sleep(3000); // three more intervals
    assert.equal((await reports(srv)).length, 1, 'one report a day: ' + srv.stderr());
    const m = await metrics(srv);
    assert.match(m, /engage_sync_rows_total\{source="crm",table="orders"\} 1/, 'passes went on');
    assert.match(m, /^engage_sync_reconciliations_total 0$/m);
    assert.doesNotMatch(m, /engage_sync_reconcile_mismatches\{/);
  } finally {
    await stop(srv);
  }

  // The next day, with reconcile_repair: run at once, and repaired.
  conf('reconcile_repair = true\n');
  srv = await startServer(data, { env: { ...env, ENGAGE_NOW: '2026-10-11T04:00:00Z' } });
  try {
    const items = await waitReports(srv, 2);
    assert.equal(items.length, 2, srv.stderr());
    assert.ok(items[0].started_at >= '2026-10-11T04:00', items[0].started_at);
    assert.deepEqual([items[0].source, items[0].mismatches, items[0].repaired], ['crm', 1, true]);
    const ids = orders(data).map((e) => e.event_id);
    assert.ok(!ids.includes('crm:orders:7') && ids.includes('crm:orders:51'), ids.join());
    assert.match(srv.stderr(), /nightly reconciliation \d+: 1 mismatches, repaired/);
  } finally {
    await stop(srv);
  }
});

// The lookback window: a row written behind the checkpoint (an application's clock
// behind the others) is still stored by a source that looks back, and missed by one that
// does not; rows read again that did not change write nothing.
async function lookbackCase(kind, dsn, sql) {
  const data = tmpData();
  const orders = { table: 'orders', into: 'events', key: 'id', cursor: 'updated_at', external_id: 'contact_id',
    event: 'order_created', occurred_at: 'created_at',
    properties: { order_id: 'id', amount: 'amount', currency: 'currency', created_at: 'created_at' } };
  engage(['migrate'], { data });
  for (const [name, extra] of [['lb', { lookback_seconds: 60 }], ['nolb', {}]]) {
    const map = join(data, `${name}.json`);
    writeFileSync(map, JSON.stringify({ tables: [{ ...orders, ...extra }] }));
    const r = engage(['sync', 'source', 'add', '--name', name, '--kind', kind, '--dsn', dsn, '--mapping', map], { data });
    assert.equal(r.code, 0, r.stderr);
  }
  const order = (id, at) => sql(`INSERT INTO orders (id, contact_id, amount, currency, created_at, updated_at)
    VALUES (${id}, 'c${id}', ${id}, 'INR', '2026-10-01T10:00:00Z', '${at}');`);
  const runBoth = () => ['lb', 'nolb'].map((s) => run(data, ['--source', s]));
  const ids = (source) => exportEvents(data).filter((e) => e.source === `sync:${source}`).map((e) => e.event_id).sort();

  order(1, '2026-10-01T10:00:00Z');
  let [lb, nolb] = runBoth();
  assert.deepEqual([lb.events, nolb.events, lb.reread], [1, 1, 0]);
  order(2, '2026-10-01T10:00:10Z');
  [lb, nolb] = runBoth();
  assert.deepEqual([lb.events, nolb.events], [1, 1]);
  // Written now, dated behind the checkpoint (10:00:10).
  order(3, '2026-10-01T10:00:05Z');
  [lb, nolb] = runBoth();
  assert.deepEqual([lb.read, lb.reread, lb.late, lb.events], [0, 2, 1, 1], JSON.stringify(lb));
  assert.deepEqual([nolb.read, nolb.events, nolb.reread], [0, 0, 0]);
  assert.deepEqual(ids('lb'), ['lb:orders:1', 'lb:orders:2', 'lb:orders:3']);
  assert.deepEqual(ids('nolb'), ['nolb:orders:1', 'nolb:orders:2'], 'a cursor alone misses it');
  // Read again, nothing changed: nothing written.
  [lb] = runBoth();
  assert.deepEqual([lb.reread, lb.late, lb.events, lb.unchanged], [2, 0, 0, 0], JSON.stringify(lb));
  assert.deepEqual(ids('lb'), ['lb:orders:1', 'lb:orders:2', 'lb:orders:3']);
  // A change behind the checkpoint is late too, and updates its event.
  sql(`UPDATE orders SET amount = 99 WHERE id = 3;`);
  [lb] = runBoth();
  assert.deepEqual([lb.late, lb.events], [1, 1], JSON.stringify(lb));
  const three = exportEvents(data).find((e) => e.event_id === 'lb:orders:3');
  assert.equal(three.properties.amount, 99);
}

// The trail of checkpoint positions across a clock that jumps ahead a day and back, and
// a refused row in the window whose dead letter was dismissed (SQLite, clock pinned).
test('SQLite: the lookback window after a clock step, and a dismissed dead letter in it', async () => {
  const dir = tmpData('engage-crm-');
  const file = join(dir, 'crm.db');
  const sq = (sql) => { const r = spawnSync('sqlite3', [file], { input: sql, encoding: 'utf8' }); assert.equal(r.status, 0, r.stderr); };
  sq(`CREATE TABLE orders (id INTEGER PRIMARY KEY, contact_id TEXT, amount REAL, currency TEXT, created_at TEXT, updated_at TEXT);`);
  const data = tmpData();
  const map = join(data, 'lb.json');
  engage(['migrate'], { data });
  writeFileSync(map, JSON.stringify({ tables: [{ table: 'orders', into: 'events', key: 'id', cursor: 'updated_at',
    external_id: 'contact_id', event: 'order_created', occurred_at: 'created_at', lookback_seconds: 60,
    properties: { order_id: 'id', amount: 'amount', currency: 'currency', created_at: 'created_at' } }] }));
  assert.equal(engage(['sync', 'source', 'add', '--name', 'lb', '--kind', 'sqlite', '--dsn', file, '--mapping', map], { data }).code, 0);
  const T0 = Date.parse('2026-10-02T00:00:00Z');
  const at = (s) => new Date(T0 + s * 1000).toISOString();
  const order = (id, currency = 'INR') => sq(`INSERT INTO orders VALUES (${id}, 'c${id}', ${id}, '${currency}', '${at(id)}', '${at(id)}');`);
  const runAt = (s) => run(data, [], { ENGAGE_NOW: at(s) });
  order(1); runAt(0);
  order(2); runAt(100);
  order(3); runAt(86400); // the clock a day ahead
  order(4); let r = runAt(200); // and back
  assert.deepEqual([r.read, r.reread], [1, 1], JSON.stringify(r));
  order(5); r = runAt(400);
  assert.deepEqual([r.read, r.reread], [1, 0], 'the position noted "tomorrow" is dropped: ' + JSON.stringify(r));
  // A refused row (currency not three capitals) behind the checkpoint, read again.
  order(6, 'rupees'); r = runAt(500);
  assert.equal(r.rejected, 1);
  const pending = () => JSON.parse(engage(['rejected', 'list', '--json'], { data }).stdout).items.length;
  assert.equal(pending(), 1);
  assert.equal(engage(['rejected', 'dismiss', '--source', 'sync:lb'], { data }).code, 0);
  order(7); r = runAt(520);
  assert.equal(r.reread, 1, JSON.stringify(r)); // order 6, read again and refused again
  assert.deepEqual([r.rejected, pending()], [0, 0], 'not kept again once dismissed');
});

test('SQLite and PostgreSQL: the lookback window stores a row dated behind the checkpoint', async () => {
  const dir = tmpData('engage-crm-');
  const file = join(dir, 'crm.db');
  const sq = (sql) => { const r = spawnSync('sqlite3', [file], { input: sql, encoding: 'utf8' }); assert.equal(r.status, 0, r.stderr); };
  sq(`CREATE TABLE orders (id INTEGER PRIMARY KEY, contact_id TEXT, amount REAL, currency TEXT, created_at TEXT, updated_at TEXT);`);
  await lookbackCase('sqlite', file, sq);
  if (!pg) return;
  const psql = database('lookback');
  psql(`CREATE TABLE orders (id bigint PRIMARY KEY, contact_id text, amount numeric, currency text,
          created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);`);
  await lookbackCase('postgres', dsnOf('lookback'), psql);
});

test('PostgreSQL: a LATIN1 database\'s text arrives as UTF-8', { skip: !postgresAvailable() }, async () => {
  pg.psql(`CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;`);
  const r = spawnSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', dsnOf('latin')], { encoding: 'utf8',
    env: { ...process.env, PGCLIENTENCODING: 'UTF8' },
    input: `${PG_SCHEMA} INSERT INTO orders (id, contact_id, amount, currency, created_at) VALUES (1, 'José', 5, 'INR', '2026-10-01T00:00:00Z');` });
  assert.equal(r.status, 0, r.stderr);
  const data = setup('crm', 'postgres', dsnOf('latin'));
  assert.equal(run(data).events, 1);
  assert.equal(orders(data)[0].external_id, 'José', 'not José, nor Jos?');
});
