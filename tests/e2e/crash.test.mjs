// tests/e2e/crash.test.mjs -- kill -9 during a large import; an import beside a busy server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { engage, engageAsync, waitExit, tmpData, startServer, api, apikey, sql, exportEvents, eventCount } from './lib.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const EVENTS = 200000;

function generate() {
  const dir = tmpData('engage-gen-');
  const r = engage(['bench', 'gen', '--contacts', '10000', '--events', String(EVENTS), '--seed', '5', '--out', dir]);
  assert.equal(r.code, 0, r.stderr);
  return join(dir, 'events.csv');
}

test('kill -9 mid-import loses no committed row; a re-run completes it without duplicates', async () => {
  const data = tmpData();
  const file = generate();
  engage(['migrate'], { data });
  const child = engageAsync(['import', 'events', file, '--batch', '5000', '--no-progress'], { data });
  const exited = waitExit(child);
  // Wait until a few batches are committed, then kill without warning.
  for (let i = 0; i < 400; i++) {
    await sleep(25);
    let n = 0;
    try { n = eventCount(data); } catch { /* the store is being created */ }
    if (n >= 15000) break;
  }
  child.kill('SIGKILL');
  const r = await exited;
  assert.equal(r.signal, 'SIGKILL', 'killed before it finished: ' + r.stdout);
  const committed = eventCount(data);
  assert.ok(committed > 0 && committed < EVENTS, `committed ${committed}`);
  assert.equal(committed % 5000, 0, 'batches are atomic');
  assert.equal(sql(data, "SELECT status || ':' || read FROM imports"), `running:${committed}`,
    'progress is committed with its batch');
  const st = JSON.parse(engage(['import', 'status', '--json'], { data }).stdout).items[0];
  assert.equal(st.status, 'running', 'the killed import shows as not finished');
  assert.equal(st.read, committed);

  const again = engage(['import', 'events', file, '--json'], { data });
  assert.equal(again.code, 0, again.stderr);
  const rep = JSON.parse(again.stdout);
  assert.equal(rep.inserted, EVENTS - committed);
  assert.equal(rep.duplicates, committed);
  const events = exportEvents(data);
  assert.equal(events.length, EVENTS);
  assert.equal(new Set(events.map((e) => e.event_id)).size, EVENTS, 'each event stored once');
  assert.equal(eventCount(data), EVENTS);
  assert.equal(JSON.parse(engage(['import', 'status', '--json'], { data }).stdout).items[0].status, 'done');
  assert.equal(sql(data, 'SELECT count(*) = count(DISTINCT external_id) FROM contacts'), '1');
  const contacts = new Set(sql(data, 'SELECT id FROM contacts').split('\n').map(Number));
  assert.equal(events.filter((e) => !contacts.has(e.contact_id) || e.external_id === null).length, 0,
    'every event belongs to a stored contact');
});

test('a CLI import runs beside a serving, writing server', async () => {
  const data = tmpData();
  const file = generate();
  engage(['migrate'], { data });
  const admin = apikey(data, 'admin');
  const srv = await startServer(data);
  try {
    const child = engageAsync(['import', 'events', file, '--batch', '5000', '--no-progress', '--json'], { data });
    const exited = waitExit(child);
    let done = false, reads = 0, writes = 0;
    exited.then(() => { done = true; });
    while (!done) {
      const r = await api(srv.url, '/api/v1/contracts', { key: admin });
      assert.equal(r.status, 200, r.text);
      reads++;
      if (reads % 10 === 0) {
        const w = await api(srv.url, '/api/v1/contracts/page_viewed', {
          method: 'PUT', key: admin,
          body: { name: 'page_viewed', description: `v${reads}`, properties: { url: { type: 'string' } } } });
        assert.equal(w.status, 201, 'a write waits for the import batch, then succeeds: ' + w.text);
        writes++;
      }
      await sleep(20);
    }
    const r = await exited;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).inserted, EVENTS);
    assert.ok(reads > 5 && writes >= 1, `${reads} reads, ${writes} writes during the import`);
    const m = await api(srv.url, '/metrics');
    assert.match(m.text, new RegExp(`engage_events ${EVENTS}\\n`));
  } finally {
    await srv.stop();
  }
});
