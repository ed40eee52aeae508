// bench/sync-lag.mjs [SECONDS] [ROWS_PER_SECOND] -- CRM sync lag in steady state.
//
// A throwaway PostgreSQL 15 cluster (tests/e2e/pg.mjs) with an `orders` table of 100,000
// rows, synced once; then `engage serve` with `[sync] interval_seconds = 1` while a
// client changes ROWS_PER_SECOND (1,000) rows a second (UPDATE ... SET updated_at =
// now(), in batches of a tenth of that every 100 ms) for SECONDS (60). Prints the
// server's own figures from GET /api/v1/sync/health: p50/p95 over the run of stored-at
// minus updated_at, and rows stored. Results go in docs/benchmarks.md by hand.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostgres } from '../tests/e2e/pg.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = process.env.ENGAGE_BIN || join(root, 'build', 'engage');
const SECS = Number(process.argv[2] || 60), RATE = Number(process.argv[3] || 1000);
const pg = await startPostgres();
const data = mkdtempSync('/tmp/engage-bench-lag-');
const engage = (...args) => {
  const r = spawnSync(BIN, ['--data', data, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`engage ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
let srv;
try {
  pg.psql(`CREATE TABLE orders (id bigint PRIMARY KEY, contact_id text NOT NULL, amount numeric NOT NULL,
             currency text NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL,
             updated_at timestamptz NOT NULL DEFAULT now(), deleted_at timestamptz);
           INSERT INTO orders SELECT g, 'c' || (g % 10000), g % 5000, 'INR', 'paid',
             timestamptz '2026-01-01' + g * interval '1 second', timestamptz '2026-01-01' + g * interval '1 second'
           FROM generate_series(1, 100000) g;
           CREATE INDEX ON orders (updated_at, id);`);
  const mapping = join(data, 'mapping.json');
  writeFileSync(mapping, JSON.stringify({ tables: [{ table: 'orders', into: 'events', key: 'id', cursor: 'updated_at',
    external_id: 'contact_id', event: 'order_created', occurred_at: 'created_at',
    properties: { order_id: 'id', amount: 'amount', currency: 'currency', status: 'status', created_at: 'created_at' } }] }));
  engage('migrate');
  engage('sync', 'source', 'add', '--name', 'crm', '--kind', 'postgres', '--dsn', pg.conninfo, '--mapping', mapping);
  engage('sync', 'run');
  // No nightly reconciliation: its read of all 100,000 rows would stall the passes measured.
  writeFileSync(join(data, 'engage.conf'), '[sync]\ninterval_seconds = 1\nreconcile_hour = -1\n');
  const key = JSON.parse(engage('apikey', 'create', '--role', 'analyst', '--name', 'bench', '--json')).key;
  srv = spawn(BIN, ['--data', data, 'serve', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const url = await new Promise((res) => {
    let out = '';
    srv.stdout.on('data', (d) => { out += d; const m = /listening on (http:\S+)/.exec(out); if (m) res(m[1]); });
  });
  // One psql session fed an UPDATE of RATE/10 rows every 100 ms.
  const writer = spawn('psql', ['-X', '-q', '-d', pg.conninfo], { stdio: ['pipe', 'ignore', 'inherit'] });
  const per = Math.max(1, Math.round(RATE / 10));
  let changed = 0, k = 0;
  const t0 = Date.now();
  while (Date.now() - t0 < SECS * 1000) {
    const from = 1 + ((k * per) % (100000 - per));
    writer.stdin.write(`UPDATE orders SET status = 'paid-${k}', updated_at = now() WHERE id BETWEEN ${from} AND ${from + per - 1};\n`);
    changed += per;
    k++;
    const next = t0 + k * 100;
    await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
  }
  writer.stdin.end();
  await new Promise((r) => writer.on('close', r));
  await new Promise((r) => setTimeout(r, 3000)); // the last passes
  const h = await (await fetch(url + '/api/v1/sync/health', { headers: { authorization: `Bearer ${key}` } })).json();
  const t = h.items[0].tables[0];
  console.log(`steady state: ${changed} rows changed in ${SECS} s (${Math.round(changed / SECS)}/s), ` +
    `${t.rows_since_start} stored by the worker; stored-at minus updated_at: p50 ${(t.lag_p50_ms / 1000).toFixed(2)} s, ` +
    `p95 ${(t.lag_p95_ms / 1000).toFixed(2)} s (the server's histogram, within 19%)`);
} finally {
  if (srv) srv.kill('SIGTERM');
  await pg.stop();
  rmSync(data, { recursive: true, force: true });
}
