// tests/e2e/cli.test.mjs -- the command line as a user meets it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { engage, tmpData, writeCsv, sql, exportEvents, eventCount } from './lib.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

test('help lists every command and each command has its own help', () => {
  const r = engage(['--help']);
  assert.equal(r.code, 0);
  for (const cmd of ['serve', 'demo', 'migrate', 'import contacts', 'import events', 'rejected list',
                     'rejected replay', 'contracts', 'apikey', 'backup', 'bench gen', 'events export',
                     'sync source add', 'sync run'])
    assert.match(r.stdout, new RegExp(cmd), cmd);
  for (const cmd of ['serve', 'import', 'rejected', 'contracts', 'apikey', 'demo', 'bench', 'events', 'sync']) {
    const h = engage([cmd, '--help']);
    assert.equal(h.code, 0, cmd);
    assert.match(h.stdout, new RegExp(`usage: engage ${cmd}`), cmd);
  }
});

test('usage errors say what is wrong and exit 2', () => {
  const data = tmpData();
  let r = engage(['frobnicate'], { data });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command "frobnicate"/);
  r = engage(['import', 'contacts', 'x.csv', '--colour', 'red'], { data });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown option --colour \(see 'engage import --help'\)/);
  r = engage(['rejected', 'list', '--frob'], { data });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown option --frob/, 'not "needs a value"');
  r = engage(['import', 'status', '--batch', '5'], { data });
  assert.equal(r.code, 2, 'an option of another subcommand is refused');
  assert.match(r.stderr, /import status: unknown option --batch/, 'the message names the subcommand');
  r = engage(['frob'], { data });
  assert.match(r.stderr, /\(see 'engage --help'\)/, 'no help for a command that does not exist');
  r = engage(['rejected', 'list', '--status', 'bogus'], { data });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--status: expected pending, replayed, dismissed or all/);
  r = engage(['rejected', 'replay', '--status', 'pending'], { data });
  assert.equal(r.code, 2, 'replay takes no --status');
  r = engage(['import', 'people', 'x.csv'], { data });
  assert.equal(r.code, 2);
  r = engage(['import', 'contacts', join(data, 'missing.csv')], { data });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /missing\.csv: cannot open: No such file/);
});

test('configuration errors name the file, line and key', () => {
  const data = tmpData();
  writeFileSync(join(data, 'engage.conf'), '[server]\nlisten = 127.0.0.1:9999\nfoo = bar\n');
  let r = engage(['config'], { data });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /engage\.conf:3: \[server\] foo: unknown key/);
  writeFileSync(join(data, 'engage.conf'), '[server]\npublic_url = http://mail.example.com\n');
  r = engage(['config'], { data });
  assert.match(r.stderr, /public_url: https is required unless the host is loopback/);
  r = engage(['config'], { data, env: { ENGAGE_CONFIG: join(data, 'nope.conf') } });
  assert.equal(r.code, 1, 'a named configuration file must exist');
  assert.match(r.stderr, /nope\.conf: cannot open/);
});

test('--data takes a directory or sqlite:DIR; the files beside the store follow either form', () => {
  const data = join(tmpData(), 'backup:2024'); // a colon in a directory name is no scheme
  let r = engage(['--data', data, 'migrate']);
  assert.equal(r.code, 0, r.stderr);
  writeFileSync(join(data, 'engage.conf'), '[server]\nlisten = 127.0.0.1:9911\n');
  for (const form of [data, `sqlite:${data}`]) {
    r = engage(['--data', form, 'config']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`; file: ${data.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/engage\\.conf`), form);
    assert.match(r.stdout, /listen = 127\.0\.0\.1:9911/, form);
    r = engage(['--data', form, 'apikey', 'list']);
    assert.equal(r.code, 0, `${form}: ${r.stderr}`);
  }
  r = engage(['--data', 'postgresql://db.example/engage', 'apikey', 'list']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /PostgreSQL backend is not built yet/);
  r = engage(['--data', 'mysql://db.example/engage', 'apikey', 'list']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /unknown location 'mysql:\/\/db\.example\/engage'/);
});

test('precedence: flag > environment > file > default', () => {
  const data = tmpData();
  writeFileSync(join(data, 'engage.conf'), '[server]\nlisten = 127.0.0.1:1111\n[segment]\nmax_rules = 9\n');
  let r = engage(['config'], { data });
  assert.match(r.stdout, /listen = 127\.0\.0\.1:1111/);
  assert.match(r.stdout, /max_rules = 9/);
  assert.match(r.stdout, /max_depth = 5/, 'default');
  r = engage(['config'], { data, env: { ENGAGE_LISTEN: '127.0.0.1:2222' } });
  assert.match(r.stdout, /listen = 127\.0\.0\.1:2222/);
  r = engage(['config', '--listen', '127.0.0.1:3333'], { data, env: { ENGAGE_LISTEN: '127.0.0.1:2222' } });
  assert.match(r.stdout, /listen = 127\.0\.0\.1:3333/);
});

test('--now and ENGAGE_NOW set the clock; a bad value is refused', () => {
  const data = tmpData();
  const csv = writeCsv(data, 'c.csv', 'external_id\nc1\n');
  let r = engage(['import', 'contacts', csv, '--now', '2030-01-02T03:04:05Z'], { data });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(Math.abs(Number(sql(data, 'SELECT created_at FROM contacts')) - Date.UTC(2030, 0, 2, 3, 4, 5)) < 5000);
  r = engage(['config'], { data, env: { ENGAGE_NOW: 'next week' } });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /ENGAGE_NOW: expected an ISO-8601 instant/);
});

test('import reports counts as JSON, exit 3 with rejections, and re-import changes nothing', () => {
  const data = tmpData();
  const contacts = writeCsv(data, 'contacts.csv',
    'external_id,email,city,ltv,email_consent\nc1,c1@x.io,Pune,10,\nc2,not-an-email,Goa,5,\nc3,c3@x.io,Delhi,,unsubscribed\n');
  let r = engage(['import', 'contacts', contacts, '--json'], { data });
  assert.equal(r.code, 3, 'some rows were rejected');
  let rep = JSON.parse(r.stdout);
  assert.equal(rep.inserted, 2);
  assert.equal(rep.rejected, 1);
  assert.deepEqual(rep.rejected_by_reason.invalid_email.lines, [3]);
  assert.equal(rep.rejected_by_reason.invalid_email.examples[0].field, 'email');
  r = engage(['import', 'contacts', contacts, '--json'], { data });
  rep = JSON.parse(r.stdout);
  assert.equal(rep.inserted, 0);
  assert.equal(rep.updated, 0);
  assert.equal(rep.duplicates, 2);
  // stdin, and the human report
  r = engage(['import', 'contacts', '-'], { data, input: 'external_id,city\nc4,Kochi\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /inserted\s+1/);
  assert.equal(sql(data, "SELECT count(*) FROM contacts"), '3');
});

test('dead letters that can never pass are dismissed, not replayed forever', () => {
  const data = tmpData();
  engage(['import', 'events', '-'], { data, input: 'external_id,event,occurred_at\nc1,visit,2026-01-01,extra\n' });
  let r = engage(['rejected', 'replay', '--json'], { data });
  assert.equal(JSON.parse(r.stdout).tried, 0, 'a bad_row is not retried by a plain replay');
  r = engage(['rejected', 'dismiss'], { data });
  assert.equal(r.code, 2, 'dismiss needs a filter');
  assert.match(r.stderr, /name what to dismiss: id, reason, source or kind/, 'the words of the API');
  r = engage(['rejected', 'dismiss', '--reason', 'bad_row', '--json'], { data });
  assert.deepEqual(JSON.parse(r.stdout), { dismissed: 1 });
  r = engage(['rejected', 'list', '--json'], { data });
  assert.equal(JSON.parse(r.stdout).items.length, 0);
  r = engage(['rejected', 'list'], { data });
  assert.equal(r.stdout, '0 pending records (--status all shows replayed and dismissed ones too)\n');
  r = engage(['rejected', 'list', '--status', 'all'], { data });
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0], /^ID +RECEIVED +SOURCE +KIND +REASON +FIELD: MESSAGE/, 'a header');
  assert.match(lines[1], /bad_row/);
  assert.equal(lines.at(-1), '1 record', 'and a count');
  r = engage(['rejected', 'list', '--status', 'dismissed', '--json'], { data });
  assert.equal(JSON.parse(r.stdout).items.length, 1, 'kept');
  assert.match(JSON.parse(r.stdout).items[0].resolved_at, /^\d{4}-\d\d-\d\dT[\d:.]+Z$/,
               'when it was dismissed, as the API shows it');
  assert.equal(sql(data, "SELECT count(*) FROM audit WHERE action = 'rejected.dismiss'"), '1');
});

test('apikey list --json shows keys as the API does', () => {
  const data = tmpData();
  assert.equal(engage(['migrate'], { data }).code, 0);
  let r = engage(['apikey', 'create', '--role', 'analyst', '--name', 'reports', '--json'], { data });
  assert.equal(r.code, 0, r.stderr);
  const made = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(made), ['id', 'name', 'role', 'key']);
  assert.equal(engage(['apikey', 'revoke', String(made.id)], { data }).code, 0);
  r = engage(['apikey', 'list', '--json'], { data });
  const [k] = JSON.parse(r.stdout).items;
  assert.deepEqual(Object.keys(k), ['id', 'name', 'role', 'prefix', 'created_at', 'last_used_at', 'revoked_at']);
  assert.equal(k.last_used_at, null);
  assert.match(k.revoked_at, /^\d{4}-\d\d-\d\dT/);
  assert.match(engage(['apikey', 'list'], { data }).stdout, /reports .* analyst .*revoked\n$/);
});

test('only an explicit, audited change with a reason re-subscribes', () => {
  const data = tmpData();
  engage(['import', 'contacts', '-'], { data, input: 'external_id,email_consent\nc1,complained\n' });
  let r = engage(['contact', 'consent', 'c1', '--state', 'subscribed'], { data });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--reason is required/);
  r = engage(['contact', 'consent', 'c1', '--state', 'subscribed', '--reason', 'asked by phone', '--json'], { data });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { external_id: 'c1', from: 'complained', to: 'subscribed' });
  const c = JSON.parse(engage(['contact', 'show', 'c1'], { data }).stdout);
  assert.equal(c.email_consent, 'subscribed');
  assert.deepEqual(c.consent_history.at(-1), { at: c.consent_history.at(-1).at, from: 'complained',
    to: 'subscribed', source: 'cli', reason: 'asked by phone' });
  assert.equal(c.consent_history[0].from, null, 'the initial state has no "from"');
  const audit = JSON.parse(engage(['audit', 'list', '--json'], { data }).stdout).items;
  assert.equal(audit[0].action, 'contact.consent');
  assert.deepEqual(audit[0].before, { email_consent: 'complained' });
});

test('the sticky opt-out rule holds for CSV imports', () => {
  const data = tmpData();
  engage(['import', 'contacts', '-'], { data, input: 'external_id,email_consent\nc1,unsubscribed\n' });
  const r = engage(['import', 'contacts', '-', '--json'], { data, input: 'external_id,email_consent,city\nc1,subscribed,Pune\n' });
  const rep = JSON.parse(r.stdout);
  assert.equal(rep.consent_kept, 1);
  assert.equal(rep.updated, 1, 'the city still changes');
  const c = JSON.parse(engage(['contact', 'show', 'c1'], { data }).stdout);
  assert.equal(c.email_consent, 'unsubscribed');
  assert.equal(c.attributes.city, 'Pune');
  assert.deepEqual(c.consent_history.map((h) => h.to), ['unsubscribed']);
});

test('contract versions: rejected, fix the contract, replay', () => {
  const data = tmpData();
  const events = writeCsv(data, 'orders.csv',
    'external_id,event,occurred_at,order_id,amount,currency,created_at\n' +
    'c1,order_created,,o1,10,INR,2026-01-01T00:00:00Z\n' +
    'c1,order_created,,o2,10,rupees,2026-01-02T00:00:00Z\n');
  let r = engage(['import', 'events', events, '--json'], { data });
  assert.equal(JSON.parse(r.stdout).rejected, 1);
  r = engage(['rejected', 'list', '--json'], { data });
  const row = JSON.parse(r.stdout).items[0];
  assert.equal(row.reason, 'constraint');
  assert.equal(row.field, 'currency');
  assert.match(row.origin, /orders\.csv:3$/);
  assert.equal(row.raw.properties.currency, 'rupees', 'the raw payload is kept');

  const bad = join(data, 'bad.json');
  writeFileSync(bad, JSON.stringify({ name: 'order_created', properties: { amount: { type: 'money' } } }));
  r = engage(['contracts', 'put', 'order_created', bad], { data });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /bad\.json: \/properties\/amount\/type: must be one of/);
  writeFileSync(bad, JSON.stringify({ name: 'order_created', properties: { currency: { type: 'string', pattern: '^([A-Z]{3}$' } } }));
  r = engage(['contracts', 'put', 'order_created', bad], { data });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /bad\.json: \/properties\/currency\/pattern: is not a valid regular expression: missing closing parenthesis at offset 11/,
    'a pattern that does not compile is refused with PCRE2\'s reason and where');

  const fixed = join(data, 'fixed.json');
  writeFileSync(fixed, JSON.stringify({
    name: 'order_created', occurred_at: 'created_at', properties: {
      order_id: { type: 'string', required: true }, amount: { type: 'number', required: true, minimum: 0 },
      currency: { type: 'string', required: true, enum: ['INR', 'USD', 'rupees'] },
      created_at: { type: 'timestamp', required: true } } }));
  r = engage(['contracts', 'put', 'order_created', fixed], { data });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /version 2/);
  r = engage(['contracts', 'put', 'order_created', fixed], { data });
  assert.match(r.stdout, /unchanged: version 2 already holds this document/, 'same document, no new version');
  r = engage(['contracts', 'show', 'order_created'], { data });
  assert.deepEqual(JSON.parse(r.stdout).properties.currency.enum, ['INR', 'USD', 'rupees'],
    'show prints the latest document alone, ready to edit and put back');
  r = engage(['rejected', 'replay', '--json'], { data });
  assert.deepEqual(JSON.parse(r.stdout), { tried: 1, ingested: 1, still_rejected: 0, not_replayable: 0 });
  assert.deepEqual(exportEvents(data).sort((a, b) => a.occurred_at.localeCompare(b.occurred_at))
    .map((e) => e.contract_version), [1, 2]);
  assert.equal(sql(data, "SELECT count(*) FROM audit WHERE action IN ('contract.put','rejected.replay')"), '2');
  const audit = JSON.parse(engage(['audit', 'list', '--json'], { data }).stdout).items;
  assert.deepEqual(audit.slice(0, 2).map((a) => a.action), ['rejected.replay', 'contract.put']);
  assert.equal(audit[1].after.properties.currency.enum.length, 3, 'after holds the new document');
  r = engage(['contracts', 'show', 'order_created', '--json'], { data });
  assert.equal(r.code, 0);
});

test('migrate reports the versions it moved between, then nothing to do', () => {
  const data = tmpData();
  let r = engage(['migrate', '--json'], { data });
  assert.equal(r.code, 0, r.stderr);
  const first = JSON.parse(r.stdout);
  assert.equal(first.from, 0);
  assert.ok(first.to >= 3, `schema ${first.to}`);
  r = engage(['migrate'], { data });
  assert.equal(r.stdout.trim(), `schema is at version ${first.to}: nothing to do`);
});

test('a store newer than the binary is refused with a clear message', () => {
  const data = tmpData();
  assert.equal(engage(['migrate'], { data }).code, 0);
  sql(data, 'PRAGMA user_version = 99');
  const r = engage(['import', 'contacts', '-'], { data, input: 'external_id\nc1\n' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /schema version 99, newer than this binary's \d+: upgrade engage/);
});

test('demo loads once; running it again stores nothing twice', () => {
  const data = tmpData();
  let r = engage(['demo', '--no-serve', '--contacts', '150'], { data });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /admin key: ek_/);
  const events = eventCount(data);
  assert.ok(events > 1000, `${events} demo events`);
  assert.equal(sql(data, "SELECT count(DISTINCT name) FROM event_names"), '4');
  assert.ok(Number(sql(data, "SELECT count(*) FROM rejected")) >= 4, 'the demo shows the dead-letter store');
  r = engage(['demo', '--no-serve', '--contacts', '150'], { data });
  assert.equal(r.code, 0);
  assert.equal(eventCount(data), events);
  assert.equal(exportEvents(data).length, events, 'the export lists every live event');
  assert.equal(sql(data, "SELECT count(*) FROM apikeys WHERE name = 'demo-admin' AND revoked_at = 0"), '1',
    'one live demo key: the previous run\'s is revoked');
  // The README's "Using it" examples name the demo's own files: they exist, and import.
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const files = [...readme.matchAll(/build\/engage import (contacts|events) (engage-data\/\S+)/g)];
  assert.equal(files.length, 2, 'both imports in the README');
  for (const [, kind, file] of files) {
    const path = join(data, file.slice('engage-data/'.length));
    assert.ok(existsSync(path), `${file} is written by the demo`);
    const imp = engage(['import', kind, path, '--json'], { data });
    assert.ok(imp.code === 0 || imp.code === 3, imp.stderr);
  }
});

test('--help says what exists, not what is planned', () => {
  const r = engage(['--help']);
  assert.match(r.stdout, /email campaigns sent to them, and what became of each message/);
  assert.doesNotMatch(r.stdout, /not built yet/);
});

test('demo with the demo CRM: synced from SQLite, kept as source crm, nothing twice on a rerun', () => {
  const data = tmpData();
  const crm = join(data, 'crm.db');
  const seed = spawnSync('node', [join(root, 'demo/crm/seed.mjs'), '--sqlite', crm, '--contacts', '60'], { encoding: 'utf8' });
  assert.equal(seed.status, 0, seed.stderr);
  const args = ['demo', '--no-serve', '--contacts', '100', '--crm', crm, '--mapping', join(root, 'demo/crm/mapping.json')];
  let r = engage(args, { data });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /sync crm: \d+ rows: \d+ contacts and \d+ events stored/);
  const synced = exportEvents(data).filter((e) => e.source === 'sync:crm').length;
  assert.ok(synced > 300, `${synced} events from the CRM`);
  const src = JSON.parse(engage(['sync', 'source', 'list', '--json'], { data }).stdout).items;
  assert.deepEqual(src.map((s) => [s.name, s.kind, s.failures]), [['crm', 'sqlite', 0]]);
  r = engage(args, { data });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /sync crm: 0 rows/);
  assert.equal(exportEvents(data).filter((e) => e.source === 'sync:crm').length, synced);
  r = engage(['demo', '--no-serve', '--crm', crm], { data });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--crm FILE and --mapping FILE go together/);
});

test('backup makes a consistent copy', () => {
  const data = tmpData();
  engage(['import', 'contacts', '-'], { data, input: 'external_id,city\nc1,Pune\n' });
  const dest = join(data, 'copy.db');
  let r = engage(['backup', dest], { data });
  assert.equal(r.code, 0, r.stderr);
  r = engage(['backup', dest], { data });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /already exists/);
});

test('bench gen is deterministic for a seed', () => {
  const a = tmpData(), b = tmpData();
  engage(['bench', 'gen', '--contacts', '50', '--events', '300', '--seed', '7', '--out', a, '--now', '2026-01-01T00:00:00Z']);
  engage(['bench', 'gen', '--contacts', '50', '--events', '300', '--seed', '7', '--out', b, '--now', '2026-01-01T00:00:00Z']);
  const read = (d, f) => readFileSync(join(d, f), 'utf8');
  const digest = (t) => createHash('sha256').update(t).digest('hex');
  assert.equal(digest(read(a, 'events.csv')), digest(read(b, 'events.csv')), 'same bytes');
  assert.equal(read(a, 'events.csv').trim().split('\n').length, 301);
});

test('dead letters kept whole by an older version are cut by the migration; list shows previews, show the rest, replay refuses them', () => {
  const data = tmpData();
  assert.equal(engage(['migrate'], { data }).code, 0);
  // The store as schema 9 left it: a letter of 160,000 bytes ('é' is two), no truncated column,
  // none of schema 11's and 12's tables.
  sql(data, "ALTER TABLE rejected DROP COLUMN truncated; ALTER TABLE rejected DROP COLUMN raw_bytes;" +
    " DROP TABLE templates; DROP TABLE template_versions; DROP TABLE campaigns;" +
    " DROP TABLE campaign_runs; DROP TABLE messages; DROP TABLE run_counts;" +
    " DROP TABLE message_events; DROP TABLE run_stats; DROP TABLE run_minutes;" +
    " DROP TABLE webhook_inbox; DROP TABLE journals; DROP TABLE run_log;" +
    " PRAGMA user_version = 9; INSERT INTO rejected(created_at, source, kind, reason, field, message," +
    " origin, raw, fingerprint) VALUES (0, 'csv', 'contact', 'invalid_email', 'email', 'is not an email'," +
    " 'old.csv:2', '{\"attributes\":{\"bio\":\"' || replace(hex(zeroblob(40000)), '0', 'é') || '\"}}', 'f')");
  let r = engage(['migrate'], { data });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(sql(data, 'SELECT truncated, raw_bytes, length(CAST(raw AS BLOB)) <= 65536 FROM rejected'),
               '1|160025|1');
  r = engage(['rejected', 'show', '1'], { data });
  assert.equal(r.code, 0, r.stderr);
  let item = JSON.parse(r.stdout);
  assert.equal(item.truncated, true);
  assert.ok(Buffer.byteLength(item.raw) > 65000 && Buffer.byteLength(item.raw) <= 65536,
            'cut between characters, at most 64 KiB');
  assert.ok(!item.raw.includes('\ufffd') && !item.raw.includes('?'), 'no character cut in two');
  r = engage(['rejected', 'list', '--json'], { data });
  item = JSON.parse(r.stdout).items[0];
  assert.equal(item.raw_preview, true);
  assert.ok(Buffer.byteLength(item.raw) <= 4096);
  r = engage(['rejected', 'list'], { data });
  assert.match(r.stdout, /\[pending\], truncated|pending, truncated/);
  r = engage(['rejected', 'replay', '--id', '1'], { data });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /1 cannot be replayed: only the first 64 KiB of their records were kept/);
  r = engage(['rejected', 'replay', '--json'], { data });
  assert.deepEqual(JSON.parse(r.stdout), { tried: 0, ingested: 0, still_rejected: 0, not_replayable: 1 });
  assert.equal(engage(['rejected', 'show', '2'], { data }).code, 1);
  assert.equal(engage(['rejected', 'show', 'x'], { data }).code, 2);
});

// An oversized cell used to stop the import (rc 1): the rows before it in the batch were
// rolled back, the rest never read, the row not kept, and import status counted a row
// inserted that was not stored.
test('an oversized cell is a truncated dead letter and the import goes on; [ingest] caps are configured', () => {
  const data = tmpData();
  const bio = 'x'.repeat(3 * 1024 * 1024);
  const file = writeCsv(data, 'people.csv',
    `external_id,city,bio\nc1,Pune,a\nc2,Goa,b\nc3,Delhi,${bio}\nc4,Kochi,d\nc5,Agra,e\n`);
  let r = engage(['import', 'contacts', file, '--batch', '2', '--json'], { data });
  assert.equal(r.code, 3, 'finished with rejections: ' + r.stderr);
  const rep = JSON.parse(r.stdout);
  assert.deepEqual([rep.read, rep.inserted, rep.rejected], [5, 4, 1]);
  assert.deepEqual(rep.rejected_by_reason.value_too_large.lines, [4]);
  assert.equal(rep.rejected_by_reason.value_too_large.examples[0].field, 'bio');
  const st = JSON.parse(engage(['import', 'status', '--json'], { data }).stdout).items[0];
  assert.deepEqual([st.status, st.read, st.inserted, st.rejected], ['done', 5, 4, 1]);
  assert.equal(sql(data, 'SELECT group_concat(external_id) FROM contacts ORDER BY id'), 'c1,c2,c4,c5');
  r = engage(['rejected', 'list'], { data });
  assert.match(r.stdout, /value_too_large\s+bio: value of 3145728 bytes exceeds \[ingest\] max_value_bytes \(1048576\)\s+\[\S*people\.csv:4\] pending, truncated/);
  const item = JSON.parse(engage(['rejected', 'list', '--json'], { data }).stdout).items[0];
  assert.equal(item.truncated, true);
  assert.ok(item.raw.startsWith('{"external_id":"c3","attributes":{"city":"Delhi","bio":"xxx'),
            'the ids first, then the first 4 KiB of the cell: ' + item.raw.slice(0, 80));
  assert.ok(item.raw_bytes >= 3 * 1024 * 1024);

  // Configured caps: a small max_value_bytes refuses a smaller cell; a bad value names the key.
  writeFileSync(join(data, 'engage.conf'), '[ingest]\nmax_value_bytes = 1000\nmax_row_bytes = 4000\n');
  r = engage(['config'], { data });
  assert.match(r.stdout, /max_value_bytes = 1000\nmax_row_bytes = 4000/);
  r = engage(['import', 'contacts', '-', '--json'], { data, input: `external_id,bio\nc6,${'y'.repeat(1001)}\nc7,${'y'.repeat(1000)}\n` });
  assert.equal(r.code, 3);
  assert.equal(JSON.parse(r.stdout).rejected_by_reason.value_too_large.examples[0].message,
               'value of 1001 bytes exceeds [ingest] max_value_bytes (1000)');
  r = engage(['import', 'contacts', '-', '--json'], { data, input: `external_id,a,b,c,d,e\nc8,${'z,'.repeat(4)}z\nc9,${('z'.repeat(900) + ',').repeat(4)}${'z'.repeat(900)}\n` });
  assert.equal(r.code, 3);
  assert.equal(JSON.parse(r.stdout).rejected_by_reason.row_too_large.examples[0].message,
               'row of 4502 bytes exceeds [ingest] max_row_bytes (4000)');
  writeFileSync(join(data, 'engage.conf'), '[ingest]\nmax_value_bytes = 10\n');
  r = engage(['config'], { data });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /engage\.conf:2: \[ingest\] max_value_bytes: expected an integer from 256 to 1073741824, got "10"/);
});

test('a folder without a store is named, not silently filled with an empty one', () => {
  const d = join(tmpData(), 'typo');
  const rules = join(tmpData(), 'r.json');
  writeFileSync(rules, JSON.stringify({ op: 'AND', rules: [{ type: 'attribute', field: 'city', op: 'eq', value: 'Pune' }] }));
  const want = `engage: no store in ${d} (pass --data, set ENGAGE_DATA, or run from the folder that holds engage-data)\n`;
  for (const args of [['segment', 'eval', '--rules', rules], ['rejected', 'list'], ['contact', 'show', 'x'],
                      ['audit', 'list'], ['apikey', 'list'], ['events', 'export'], ['import', 'status'],
                      ['sync', 'run'], ['sync', 'source', 'list'], ['backup', join(d, '..', 'b.db')],
                      ['contracts', 'list']]) {
    const r = engage(args, { data: d });
    assert.equal(r.code, 1, args.join(' '));
    assert.equal(r.stderr, want, args.join(' '));
    assert.equal(existsSync(d), false, `${args.join(' ')} made nothing`);
  }
  // Those that bring data in make one.
  const r = engage(['import', 'contacts', writeCsv(dirname(d), 'c.csv', 'external_id\nc1\n')], { data: d });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /creating a new store in/);
  assert.equal(engage(['audit', 'list'], { data: d }).code, 0);
});

test('the data directory is 0700 and the store files 0600; looser ones are tightened', () => {
  const d = join(tmpData(), 'data');
  assert.equal(engage(['migrate'], { data: d }).code, 0);
  const mode = (p) => statSync(p).mode & 0o777;
  assert.equal(mode(d), 0o700);
  assert.equal(mode(join(d, 'engage.db')), 0o600);
  const b = join(dirname(d), 'backup.db');
  assert.equal(engage(['backup', b], { data: d }).code, 0);
  assert.equal(mode(b), 0o600, 'a backup holds the same data');
  // A store made by an older version (0755 / 0644) is tightened, with a warning.
  chmodSync(d, 0o755);
  chmodSync(join(d, 'engage.db'), 0o644);
  const r = engage(['audit', 'list'], { data: d });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /was mode 0644: made 0600/);
  assert.equal(mode(d), 0o700);
  assert.equal(mode(join(d, 'engage.db')), 0o600);
});

test('JSON errors read as the user wrote it: no library flag names', () => {
  const d = tmpData();
  assert.equal(engage(['migrate'], { data: d }).code, 0);
  const f = join(d, 'nul.json');
  writeFileSync(f, '{"op":"AND","rules":[{"type":"attribute","field":"c\\u0000ity","op":"eq","value":"Pune"}]}');
  const r = engage(['segment', 'eval', '--rules', f], { data: d });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /nul\.json:1:\d+: \\u0000 is not allowed/);
  assert.doesNotMatch(r.stderr, /JSON_ALLOW_NUL/);
  const k = join(d, 'contract.json');
  writeFileSync(k, '{"kind":"event","properties":{"a":{"type":"string","pattern":"x\\u0000"}}}');
  const p = engage(['contracts', 'put', 'x', k], { data: d });
  assert.equal(p.code, 1);
  assert.match(p.stderr, /\\u0000 is not allowed/);
  assert.doesNotMatch(p.stderr, /JSON_ALLOW_NUL/);
});
