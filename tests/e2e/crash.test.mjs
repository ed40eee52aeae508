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

// Every 200 of the tracking API means stored: kill -9 the server while clients send,
// start it again, and every acknowledged message is there, once; the rest can be sent
// again without duplicates.
test('kill -9 during tracking ingestion loses no acknowledged message', async () => {
  const data = tmpData();
  engage(['migrate'], { data });
  const key = apikey(data, 'ingest');
  const auth = 'Basic ' + Buffer.from(key + ':').toString('base64');
  let srv = await startServer(data);
  const acked = new Set(), sent = [];
  let stop = false;
  const client = async (c) => {
    for (let n = 0; !stop; n++) {
      const batch = Array.from({ length: 50 }, (_, i) => ({ type: 'track', userId: `k${(n * 50 + i) % 300}`, event: 'visit', messageId: `crash-${c}-${n}-${i}` }));
      sent.push(...batch.map((m) => m.messageId));
      const r = await fetch(srv.url + '/v1/batch', { method: 'POST', headers: { authorization: auth, 'content-type': 'application/json' }, body: JSON.stringify({ batch: batch }) }).catch(() => null);
      if (!r) break; // the server is gone
      if (r.status === 200) {
        const j = await r.json();
        assert.equal(j.accepted, 50);
        for (const m of batch) acked.add(m.messageId);
      }
    }
  };
  const clients = [client(0), client(1)];
  while (acked.size < 2000) await sleep(10);
  srv.child.kill('SIGKILL');
  stop = true;
  await Promise.all(clients);
  const stored = new Set(exportEvents(data).map((e) => e.event_id));
  for (const id of acked) assert.ok(stored.has(id), `acknowledged ${id} was lost`);
  assert.ok(acked.size >= 2000 && stored.size >= acked.size, `${acked.size} acknowledged, ${stored.size} stored`);
  // The clients retry what was not acknowledged: stored once, whatever had landed.
  srv = await startServer(data);
  try {
    const all = [...new Set(sent)];
    for (let i = 0; i < all.length; i += 500) {
      const r = await fetch(srv.url + '/v1/batch', { method: 'POST', headers: { authorization: auth, 'content-type': 'application/json' },
        body: JSON.stringify({ batch: all.slice(i, i + 500).map((id) => ({ type: 'track', userId: 'k1', event: 'visit', messageId: id })) }) });
      assert.equal(r.status, 200);
    }
    const ids = exportEvents(data).map((e) => e.event_id);
    assert.equal(ids.length, all.length, 'every message stored exactly once');
    assert.equal(new Set(ids).size, ids.length);
  } finally {
    await srv.stop();
  }
});
