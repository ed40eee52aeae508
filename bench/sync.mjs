// bench/sync.mjs [ROWS] [CONTACTS] -- CRM sync backfill from a local PostgreSQL.
//
// Starts a throwaway PostgreSQL 15 cluster (tests/e2e/pg.mjs), fills an `orders` table
// with ROWS (1,000,000) rows over CONTACTS (100,000) contacts with generate_series, then
// times `engage sync run` into a fresh store: every row read, mapped, validated against
// the order_created contract and stored, with the checkpoint moved per batch. Prints
// rows/s. Results go in docs/benchmarks.md by hand.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostgres } from '../tests/e2e/pg.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = process.env.ENGAGE_BIN || join(root, 'build', 'engage');
const ROWS = Number(process.argv[2] || 1000000), CONTACTS = Number(process.argv[3] || 100000);
const pg = await startPostgres();
const data = mkdtempSync('/tmp/engage-bench-sync-');
try {
  pg.psql(`CREATE TABLE orders (id bigint PRIMARY KEY, contact_id text NOT NULL, amount numeric NOT NULL,
             currency text NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL,
             updated_at timestamptz NOT NULL, deleted_at timestamptz);
           INSERT INTO orders SELECT g, 'c' || lpad((g % ${CONTACTS})::text, 7, '0'), (g % 5000) + 0.5, 'INR',
             (ARRAY['created','paid','refunded'])[1 + g % 3], timestamptz '2026-01-01' + g * interval '1 second',
             timestamptz '2026-01-01' + g * interval '1 second', NULL FROM generate_series(1, ${ROWS}) g;
           CREATE INDEX ON orders (updated_at, id); VACUUM ANALYZE orders;`);
  const mapping = join(data, 'mapping.json');
  writeFileSync(mapping, JSON.stringify({ tables: [{ table: 'orders', into: 'events', key: 'id', cursor: 'updated_at',
    external_id: 'contact_id', event: 'order_created', occurred_at: 'created_at',
    properties: { order_id: 'id', amount: 'amount', currency: 'currency', status: 'status', created_at: 'created_at' },
    deleted: 'deleted_at' }] }));
  const engage = (...args) => {
    const r = spawnSync(BIN, ['--data', data, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`engage ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  engage('migrate');
  engage('sync', 'source', 'add', '--name', 'crm', '--kind', 'postgres', '--dsn', pg.conninfo, '--mapping', mapping);
  spawnSync('sync');
  const t0 = process.hrtime.bigint();
  const out = JSON.parse(engage('sync', 'run', '--json'));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`backfill: ${out.read} rows (${out.events} events stored, ${out.rejected} rejected) in ${secs.toFixed(2)} s: ${Math.round(out.read / secs).toLocaleString('en')} rows/s`);
} finally {
  await pg.stop();
  rmSync(data, { recursive: true, force: true });
}
