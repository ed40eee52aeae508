// tests/e2e/sync_secrets.test.mjs -- what a CRM sync source may name, and where its password
// may go (docs/sync.md, Passwords and what a source may name): over the API, password
// references only inside [sync] secret_dir / secret_env_prefix and DSN options that name
// nothing of this server; a password sent only over TLS, checked at every connection, for
// sources of the API and of the CLI alike, old ones too; [sync] allow_insecure_tls as the
// operator's way out; the audit keeping the reference. A fake PostgreSQL asks for the
// password in clear text and records what arrives; a real one (TLS, password auth) shows
// the allowed references at work.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { api, apikey, engage, engageAsync, sql, startServer, tmpData, waitExit } from './lib.mjs';
import { postgresAvailable, startFakePostgres, startPostgres } from './pg.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const MAPPING = {
  tables: [{ table: 'orders', into: 'events', key: 'id', cursor: 'updated_at', external_id: 'contact_id',
    event: 'order_created', occurred_at: 'created_at', properties: { amount: 'amount' } }],
};

let fake;
before(async () => { fake = await startFakePostgres(); });
after(async () => { await fake.close(); });

// A data dir with engage.conf (conf: its [sync] lines), a secrets dir holding crm.pw, the
// mapping file, and an admin key.
function setup(conf = '') {
  const data = tmpData();
  const secrets = join(data, 'sync-secrets');
  engage(['migrate'], { data });
  mkdirSync(secrets);
  writeFileSync(join(secrets, 'crm.pw'), 'Crm-Secret-pw!\n');
  writeFileSync(join(data, 'outside.pw'), 'Outside-pw!\n');
  writeFileSync(join(data, 'mapping.json'), JSON.stringify(MAPPING));
  writeFileSync(join(data, 'engage.conf'), `[sync]\ninterval_seconds = 1\n${conf.replaceAll('SECRETS', secrets)}`);
  return { data, secrets, admin: apikey(data, 'admin'), map: join(data, 'mapping.json') };
}

const fakeDsn = (extra = 'sslmode=require') => `host=127.0.0.1 port=${fake.port} dbname=crm user=reader ${extra}`;
const add = (srv, admin, body) => api(srv.url, '/api/v1/sync/sources', { method: 'POST', key: admin,
  body: { name: 'crm', kind: 'postgres', dsn: fakeDsn(), mapping: MAPPING, ...body } });
// The 422's problems as "pointer: message" lines.
const problems = (r) => {
  assert.equal(r.status, 422, r.text);
  assert.equal(r.json.error.code, 'invalid_source');
  return r.json.error.details.map((d) => `${d.path}: ${d.message}`).join('\n');
};
// engage, asynchronously: the fake server answers in this process.
const run = async (args, opts) => waitExit(engageAsync(args, opts));
const snapshot = () => JSON.parse(JSON.stringify(fake.seen));

test('over the API, password references and DSN options name only what the operator set aside', async () => {
  // Nothing set: no reference of either kind.
  let { data, secrets, admin } = setup();
  let srv = await startServer(data);
  const seen = snapshot();
  try {
    let p = problems(await add(srv, admin, { password_ref: `file:${secrets}/crm.pw` }));
    assert.equal(p, '/password_ref: file: references are not allowed over the API: [sync] secret_dir is not set');
    p = problems(await add(srv, admin, { password_ref: 'env:ENGAGE_SYNC_PW_CRM' }));
    assert.equal(p, '/password_ref: env: references are not allowed over the API: [sync] secret_env_prefix is not set');
    // A password given to be sealed stays allowed.
    const r = await add(srv, admin, { password: 'Sealed-pw!' });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual([r.json.password, r.json.origin], ['sealed', 'api']);
  } finally {
    assert.equal((await srv.stop()).code, 0, srv.stderr());
  }

  ({ data, secrets, admin } = setup('secret_dir = SECRETS\nsecret_env_prefix = ENGAGE_SYNC_PW_\n'));
  mkdirSync(join(secrets, 'sub'));
  writeFileSync(join(data, 'secret.key'), '5e'.repeat(32) + '\n', { mode: 0o600 }); // the secrets key
  symlinkSync(join(data, 'secret.key'), join(secrets, 'key.pw'));
  symlinkSync(join(data, 'outside.pw'), join(secrets, 'outside.pw'));
  srv = await startServer(data, { env: { ENGAGE_SYNC_PW_CRM: 'Env-pw!' } });
  try {
    const refused = [
      [`file:${data}/secret.key`, /^\/password_ref: file:.*\/secret\.key is outside \[sync\] secret_dir \(.*sync-secrets\)$/],
      ['file:/etc/passwd', /is outside \[sync\] secret_dir/],
      [`file:${secrets}/../${basename(data)}/outside.pw`, /outside\.pw: must not go up \(\.\.\): name the file inside \[sync\] secret_dir/],
      [`file:${secrets}/outside.pw`, /sync-secrets\/outside\.pw resolves to .*\/outside\.pw, outside \[sync\] secret_dir/],
      [`file:${secrets}/key.pw`, /key\.pw resolves to .*\/secret\.key, outside/],
      [`file:${secrets}/sub`, /sub: not a regular file/],
      [`file:${secrets}/missing.pw`, /missing\.pw: No such file or directory/],
      ['file:sync-secrets/crm.pw', /must be an absolute path inside \[sync\] secret_dir/],
      ['file:-', /file:- would read the standard input/],
      ['env:HOME', /^\/password_ref: env:HOME does not start with \[sync\] secret_env_prefix \(ENGAGE_SYNC_PW_\)$/],
      ['env:ENGAGE_SYNC_PW_', /does not start with/],
      ['ftp:x', /must be env:VAR or file:PATH/],
    ];
    for (const [ref, why] of refused)
      assert.match(problems(await add(srv, admin, { password_ref: ref })), why, ref);
    const dsns = [
      [fakeDsn('sslmode=require passfile=/root/.pgpass'), /^\/dsn: passfile: names a file on this server: not allowed over the API$/],
      [fakeDsn('sslmode=require sslcert=/etc/ssl/a.crt sslkey=/etc/ssl/a.key sslrootcert=/etc/ssl/r.crt'),
        /^\/dsn: sslcert: names a file.*\n\/dsn: sslkey: names a file.*\n\/dsn: sslrootcert: names a file/],
      [fakeDsn('sslmode=require service=crm'), /\/dsn: service: reads this server's pg_service\.conf/],
      [fakeDsn('sslmode=disable'), /^\/dsn: sslmode: is disable: a source added over the API must use TLS: set sslmode=require \(or verify-ca, verify-full\), or \[sync\] allow_insecure_tls = true$/],
      [fakeDsn(''), /\/dsn: sslmode: is prefer \(the default\)/],
      ['host=/var/run/postgresql dbname=crm sslmode=require', /\/dsn: host: \/var\/run\/postgresql is a unix socket of this server/],
      ['dbname=crm sslmode=require', /\/dsn: host: is required over the API/],
      [`postgresql://reader@127.0.0.1:${fake.port}/crm?sslmode=allow&passfile=%2Fetc%2Fpasswd`,
        /\/dsn: passfile: names a file.*\n\/dsn: sslmode: is allow/],
      [`postgresql://reader:Url-pw@127.0.0.1:${fake.port}/crm?sslmode=require`, /\/dsn: must not hold the password/],
      ['postgresql://%2Ftmp/crm?sslmode=require', /\/dsn: host: \/tmp is a unix socket/],
      [fakeDsn('sslmode=require colour=blue'), /\/dsn: not a libpq connection string: invalid connection option "colour"/],
    ];
    for (const [dsn, why] of dsns)
      assert.match(problems(await add(srv, admin, { dsn, password_ref: `file:${secrets}/crm.pw` })), why, dsn);
    // Without a password too: the source must use TLS.
    assert.match(problems(await add(srv, admin, { dsn: fakeDsn('') })), /^\/dsn: sslmode: is prefer \(the default\): a source added over the API must use TLS/);
    // Several problems at once, each with its pointer; a member of the wrong type too.
    const p = problems(await add(srv, admin, { dsn: fakeDsn('sslmode=prefer sslkey=/k'), password_ref: 'env:HOME', password: 5 }));
    for (const x of [/\/password: must be a string/, /\/dsn: sslkey: /, /\/dsn: sslmode: is prefer/, /\/password_ref: env:HOME/])
      assert.match(p, x);
    // Nothing was stored, audited, read or connected to.
    assert.deepEqual((await api(srv.url, '/api/v1/sync/sources', { key: admin })).json.items, []);
    const audit = (await api(srv.url, '/api/v1/audit?action=sync_source.add', { key: admin })).json.items;
    assert.deepEqual(audit, []);
    assert.deepEqual(fake.seen, seen, 'no connection was made');
    // What the operator allowed works: a file inside the dir, a variable with the prefix.
    let r = await add(srv, admin, { name: 'byfile', password_ref: `file:${secrets}/crm.pw` });
    assert.equal(r.status, 201, r.text);
    r = await add(srv, admin, { name: 'byenv', password_ref: 'env:ENGAGE_SYNC_PW_CRM',
      dsn: `postgresql://reader@127.0.0.1:${fake.port}/crm?sslmode=verify-full` });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.password, 'env:ENGAGE_SYNC_PW_CRM');
  } finally {
    assert.equal((await srv.stop()).code, 0, srv.stderr());
  }
});

test('a password never goes out without TLS: the fake server asks for it in clear text and gets nothing', async () => {
  const { data, secrets, admin, map } = setup('secret_dir = SECRETS\n');
  const pw = { CRM_PW: 'Cli-Secret-pw!' };
  // From the CLI: refused when added without TLS ...
  let r = await run(['sync', 'source', 'add', '--name', 'cli', '--kind', 'postgres', '--dsn', fakeDsn(''),
    '--mapping', map, '--password-env', 'CRM_PW'], { data, env: pw });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /engage: sync source add: --dsn: sslmode: is prefer \(the default\): the password would be sent without TLS: set sslmode=require/);
  // ... and at every connection: one added while the operator allowed it (as one stored
  // before this check, or with PGSSLMODE=disable in the CLI's environment, would be).
  r = await run(['sync', 'source', 'add', '--name', 'cli', '--kind', 'postgres', '--dsn', fakeDsn(''),
    '--mapping', map, '--password-env', 'CRM_PW'], { data, env: { ...pw, ENGAGE_SYNC_ALLOW_INSECURE_TLS: 'true' } });
  assert.equal(r.code, 0, r.stderr);
  let seen = snapshot();
  for (const args of [['sync', 'source', 'test', 'cli'], ['sync', 'run', '--source', 'cli']]) {
    r = await run(args, { data, env: pw });
    assert.equal(r.code, 1, args.join(' '));
    assert.match(r.stderr, /source cli: dsn: sslmode: is prefer \(the default\): the password would be sent without TLS/);
  }
  assert.deepEqual(fake.seen, seen, 'not even a connection');
  // A password libpq finds itself (PGPASSWORD): the connection is dropped before the
  // server's request is read.
  r = await run(['sync', 'source', 'add', '--name', 'nopw', '--kind', 'postgres', '--dsn', fakeDsn(''), '--mapping', map], { data });
  assert.equal(r.code, 0, r.stderr);
  r = await run(['sync', 'source', 'test', 'nopw'], { data, env: { PGPASSWORD: 'Libpq-Env-pw!' } });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /source nopw: 127\.0\.0\.1 did not use TLS: refusing to send the password without it/);
  assert.equal(fake.seen.startups.length, seen.startups.length + 1, 'it got as far as the startup message');
  assert.deepEqual(fake.seen.passwords, seen.passwords, 'and no further');
  assert.equal(engage(['sync', 'source', 'remove', 'nopw'], { data }).code, 0);
  // Over the API (sslmode=require): the server refuses TLS, libpq stops there; the
  // source's health says why.
  seen = snapshot();
  const srv = await startServer(data, { env: pw });
  try {
    for (const body of [{ name: 'api-file', password_ref: `file:${secrets}/crm.pw` }, { name: 'api-sealed', password: 'Api-Sealed-pw!' }]) {
      const a = await add(srv, admin, body);
      assert.equal(a.status, 201, a.text);
    }
    let items = [];
    for (let i = 0; i < 100; i++) {
      items = (await api(srv.url, '/api/v1/sync/health', { key: admin })).json.items;
      if (['api-file', 'api-sealed', 'cli'].every((n) => items.find((s) => s.name === n)?.failures >= 1)) break;
      await sleep(100);
    }
    const err = (n) => items.find((s) => s.name === n).last_error;
    assert.match(err('api-file'), /source api-file: cannot connect: .*server does not support SSL, but SSL was required/);
    assert.match(err('api-sealed'), /server does not support SSL, but SSL was required/);
    assert.match(err('cli'), /source cli: dsn: sslmode: is prefer \(the default\): the password would be sent without TLS/);
  } finally {
    assert.equal((await srv.stop()).code, 0, srv.stderr());
  }
  assert.ok(fake.seen.sslRequests > seen.sslRequests, 'TLS was asked for');
  assert.deepEqual(fake.seen.passwords, seen.passwords, 'no password, ever');
  assert.equal(fake.seen.startups.length, seen.startups.length, 'not even a startup message without TLS');
});

test('with [sync] allow_insecure_tls the operator opts in to passwords without TLS', async () => {
  const { data, secrets, admin, map } = setup('secret_dir = SECRETS\nallow_insecure_tls = true\n');
  const srv = await startServer(data);
  try {
    const r = await add(srv, admin, { password_ref: `file:${secrets}/crm.pw`, dsn: fakeDsn('sslmode=disable') });
    assert.equal(r.status, 201, r.text);
    for (let i = 0; i < 100 && !fake.seen.passwords.includes('Crm-Secret-pw!'); i++) await sleep(100);
    assert.ok(fake.seen.passwords.includes('Crm-Secret-pw!'), 'sent in clear text, as the operator allowed');
  } finally {
    assert.equal((await srv.stop()).code, 0, srv.stderr());
  }
  let r = await run(['sync', 'source', 'add', '--name', 'cli', '--kind', 'postgres', '--dsn', fakeDsn(''),
    '--mapping', map, '--password-file', join(data, 'outside.pw')], { data });
  assert.equal(r.code, 0, r.stderr);
  r = await run(['sync', 'source', 'test', 'cli'], { data });
  assert.match(r.stderr, /password authentication failed/);
  assert.ok(fake.seen.passwords.includes('Outside-pw!'), 'the CLI names any file (the operator runs it)');
});

test('a source stored before this change takes its origin from its audit record, and an API one meets the API\'s rules when it connects', async () => {
  const { data } = setup();
  const before = snapshot();
  // A store at schema 8, as the previous release left it: sources without an origin (and
  // dead letters without the columns of schema 10, none of schema 11's and 12's tables).
  sql(data, 'ALTER TABLE sync_sources DROP COLUMN origin; ALTER TABLE rejected DROP COLUMN truncated;' +
    ' ALTER TABLE rejected DROP COLUMN raw_bytes; DROP TABLE templates; DROP TABLE template_versions;' +
    ' DROP TABLE campaigns; DROP TABLE campaign_runs; DROP TABLE messages; DROP TABLE run_counts;' +
    ' DROP TABLE message_events; DROP TABLE run_stats; DROP TABLE run_minutes;' +
    ' DROP TABLE webhook_inbox; DROP TABLE journals; DROP TABLE run_log;' +
    ' PRAGMA user_version = 8;');
  const row = (name, ref) => `INSERT INTO sync_sources(name, kind, dsn, password, mapping, created_at, updated_at)
    VALUES ('${name}', 'postgres', '${fakeDsn()}', '${ref}', '${JSON.stringify(MAPPING)}', 1, 1);`;
  const audit = (name, actor) => `INSERT INTO audit(at, actor, action, entity, entity_id)
    VALUES (1, '${actor}', 'sync_source.add', 'sync_source', '${name}');`;
  sql(data, row('old-api', `file:${data}/secret.key`) + audit('old-api', 'apikey:1:admin') +
    row('old-cli', `file:${data}/outside.pw`) + audit('old-cli', 'cli:root') +
    row('old-readded', 'file:/etc/passwd') + audit('old-readded', 'cli:root') + audit('old-readded', 'apikey:1:admin') +
    row('old-unaudited', 'file:/etc/passwd'));
  let r = engage(['migrate'], { data });
  assert.equal(r.code, 0, r.stderr);
  const list = JSON.parse(engage(['sync', 'source', 'list', '--json'], { data }).stdout).items;
  assert.deepEqual(list.map((s) => [s.name, s.origin]),
    [['old-api', 'api'], ['old-cli', 'cli'], ['old-readded', 'api'], ['old-unaudited', 'api']],
    'the latest sync_source.add record decides; without one, the stricter rules');
  r = await run(['sync', 'run', '--source', 'old-api'], { data });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /source old-api \(added over the API\): password_ref: file: references are not allowed over the API: \[sync\] secret_dir is not set/);
  assert.deepEqual(fake.seen, before, 'the secrets key was not read, nor sent');
  r = await run(['sync', 'run', '--source', 'old-cli'], { data });
  assert.match(r.stderr, /source old-cli: cannot connect: .*SSL was required/, 'the CLI source connects (over TLS only)');
  assert.deepEqual(fake.seen.passwords, before.passwords);
});

test('the audit keeps the reference, never the secret; a mapping\'s key column is not masked', async () => {
  const { data, secrets, admin, map } = setup('secret_dir = SECRETS\n');
  const srv = await startServer(data);
  try {
    assert.equal((await add(srv, admin, { name: 'byfile', password_ref: `file:${secrets}/crm.pw` })).status, 201);
    assert.equal((await add(srv, admin, { name: 'sealed', password: 'Audit-Sealed-pw!' })).status, 201);
    assert.equal((await api(srv.url, '/api/v1/sync/sources/byfile', { method: 'DELETE', key: admin })).status, 200);
    const items = (await api(srv.url, '/api/v1/audit?entity=sync_source', { key: admin })).json.items;
    const add1 = items.find((a) => a.action === 'sync_source.add' && a.entity_id === 'byfile');
    assert.equal(add1.after.password_ref, `file:${secrets}/crm.pw`);
    assert.equal(add1.after.origin, 'api');
    assert.equal(add1.after.mapping.tables[0].key, 'id', 'a key column is not a secret');
    assert.equal(items.find((a) => a.action === 'sync_source.remove').before.password_ref, `file:${secrets}/crm.pw`);
    assert.equal(items.find((a) => a.entity_id === 'sealed').after.password_ref, 'sealed');
  } finally {
    assert.equal((await srv.stop()).code, 0, srv.stderr());
  }
  const r = engage(['sync', 'source', 'add', '--name', 'cli', '--kind', 'postgres', '--dsn', fakeDsn(), '--mapping', map,
    '--password-env', 'CRM_PW'], { data });
  assert.equal(r.code, 0, r.stderr);
  const all = engage(['audit', 'list', '--json'], { data }).stdout;
  const cli = JSON.parse(all).items.find((a) => a.entity_id === 'cli');
  assert.deepEqual([cli.after.password_ref, cli.after.origin], ['env:CRM_PW', 'cli']);
  for (const secret of ['Crm-Secret-pw!', 'Audit-Sealed-pw!', 'sb1:']) assert.ok(!all.includes(secret), secret);
  assert.ok(!readFileSync(join(data, 'engage.db')).toString('latin1').includes('Audit-Sealed-pw!'));
});

test('PostgreSQL over TLS: the allowed references reach a role with a password', async (t) => {
  const pg = await startPostgres({ ssl: true, hba: ['hostssl all reader 127.0.0.1/32 password', 'host all reader 127.0.0.1/32 reject'] });
  t.after(() => pg.stop());
  pg.psql(`CREATE ROLE reader LOGIN PASSWORD 'Reader-pw-1'; CREATE DATABASE crm OWNER postgres;`);
  const crm = pg.conninfo.replace('dbname=postgres', 'dbname=crm');
  const r0 = spawnSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', crm], { encoding: 'utf8', input: `CREATE TABLE orders (id bigint PRIMARY KEY, contact_id text, amount numeric, created_at timestamptz, updated_at timestamptz);
        INSERT INTO orders VALUES (1, 'c1', 5, '2026-10-01T00:00:00Z', '2026-10-01T00:00:00Z');
        GRANT SELECT ON orders TO reader;` });
  assert.equal(r0.status, 0, r0.stderr);
  const { data, secrets, admin, map } = setup('secret_dir = SECRETS\nsecret_env_prefix = ENGAGE_SYNC_PW_\n');
  writeFileSync(join(secrets, 'reader.pw'), 'Reader-pw-1\n');
  const dsn = `host=127.0.0.1 port=${pg.port} dbname=crm user=reader`;
  // PGPASSWORD in the server's environment: libpq would give it to any source without a
  // password of its own; one added over the API must not use it.
  const env = { ENGAGE_SYNC_PW_READER: 'Reader-pw-1', PGPASSWORD: 'Reader-pw-1' };
  const srv = await startServer(data, { env });
  try {
    let r = await add(srv, admin, { name: 'byfile', dsn: `${dsn} sslmode=require`, password_ref: `file:${secrets}/reader.pw` });
    assert.equal(r.status, 201, r.text);
    r = await add(srv, admin, { name: 'byenv', dsn: `postgresql://reader@127.0.0.1:${pg.port}/crm?sslmode=require`, password_ref: 'env:ENGAGE_SYNC_PW_READER' });
    assert.equal(r.status, 201, r.text);
    r = await add(srv, admin, { name: 'ambient', dsn: `${dsn} sslmode=require` });
    assert.equal(r.status, 201, r.text);
    let items = [];
    for (let i = 0; i < 100; i++) {
      items = (await api(srv.url, '/api/v1/sync/health', { key: admin })).json.items;
      if (items.length === 3 && items[0].failures >= 1 && items.slice(1).every((s) => s.status === 'ok' && s.tables[0]?.rows === 1)) break;
      await sleep(100);
    }
    assert.deepEqual(items.map((s) => [s.name, s.status, s.tables[0].rows ?? 0]),
      [['ambient', 'failing', 0], ['byenv', 'ok', 1], ['byfile', 'ok', 1]], JSON.stringify(items));
    assert.match(items[0].last_error, /source ambient: libpq found a password of its own for 127\.0\.0\.1 \(PGPASSWORD, a password file or a service file\): a source added over the API uses only the password it names/);
  } finally {
    assert.equal((await srv.stop()).code, 0, srv.stderr());
  }
  // The CLI: any file, still over TLS only; the server itself refuses this role without it.
  writeFileSync(join(data, 'reader.pw'), 'Reader-pw-1\n');
  let r = engage(['sync', 'source', 'add', '--name', 'cli', '--kind', 'postgres', '--dsn', `${dsn} sslmode=require`, '--mapping', map,
    '--password-file', join(data, 'reader.pw')], { data });
  assert.equal(r.code, 0, r.stderr);
  r = engage(['sync', 'run', '--source', 'cli', '--json'], { data });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).read, 1);
});

test('over the API, a SQLite source names only a file inside [sync] sqlite_dir, checked again at each pass', async () => {
  const crm = tmpData('engage-crm-');
  const outside = tmpData('engage-victim-');
  const make = (file) => {
    const r = spawnSync('sqlite3', [file], { encoding: 'utf8', input:
      "CREATE TABLE orders (id INTEGER PRIMARY KEY, contact_id TEXT, amount REAL, created_at TEXT, updated_at TEXT);" +
      "INSERT INTO orders VALUES (1, 'victim', 123456789, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');" });
    assert.equal(r.status, 0, r.stderr);
  };
  make(join(crm, 'crm.db'));
  make(join(outside, 'victim.db'));
  symlinkSync(join(outside, 'victim.db'), join(crm, 'link.db'));
  const { data, admin } = setup(`sqlite_dir = ${crm}\n`);
  const mapping = { tables: [{ ...MAPPING.tables[0], event: 'crm_order' }] }; // no contract: stored as it is
  const addSqlite = (srv, name, dsn, key = admin) => api(srv.url, '/api/v1/sync/sources', { method: 'POST', key,
    body: { name, kind: 'sqlite', dsn, mapping } });
  let srv = await startServer(data);
  try {
    assert.match(problems(await addSqlite(srv, 'v', join(outside, 'victim.db'))), /^\/dsn: .*victim\.db is outside \[sync\] sqlite_dir/);
    assert.match(problems(await addSqlite(srv, 'v', join(crm, 'link.db'))), /^\/dsn: .*link\.db resolves to .*victim\.db, outside \[sync\] sqlite_dir/);
    assert.match(problems(await addSqlite(srv, 'v', `${crm}/../${basename(outside)}/victim.db`)), /must not go up/);
    assert.match(problems(await addSqlite(srv, 'v', `file:${join(outside, 'victim.db')}?mode=ro`)), /a SQLite URI \(file:…\) is not allowed/);
    assert.match(problems(await addSqlite(srv, 'v', join(data, 'engage.db'))), /outside \[sync\] sqlite_dir|data directory/);
    const ok = await addSqlite(srv, 'crm', join(crm, 'crm.db'));
    assert.equal(ok.status, 201, ok.text);
    for (let i = 0; i < 100 && engage(['events', 'export'], { data }).stdout === ''; i++) await sleep(100);
    assert.match(engage(['events', 'export'], { data }).stdout, /"amount":123456789/, 'the allowed file is synced');
  } finally {
    await srv.stop();
  }
  // A source added before sqlite_dir was narrowed (or before this check) opens nothing outside.
  sql(data, `UPDATE sync_sources SET dsn = '${join(outside, 'victim.db')}' WHERE name = 'crm'`);
  sql(data, "DELETE FROM sync_checkpoints");
  const before = engage(['events', 'export'], { data }).stdout;
  const r = engage(['sync', 'run'], { data });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /victim\.db is outside \[sync\] sqlite_dir/);
  assert.equal(engage(['events', 'export'], { data }).stdout, before, 'nothing read from it');
  // Unset, no SQLite file at all over the API; the CLI keeps its freedom.
  const other = setup();
  srv = await startServer(other.data);
  try {
    assert.match(problems(await addSqlite(srv, 'v', join(crm, 'crm.db'), other.admin)), /SQLite files are not allowed over the API: \[sync\] sqlite_dir is not set/);
  } finally {
    await srv.stop();
  }
  const cli = engage(['sync', 'source', 'add', '--name', 'mine', '--kind', 'sqlite', '--dsn', join(outside, 'victim.db'), '--mapping', other.map], { data: other.data });
  assert.equal(cli.code, 0, cli.stderr);
});
