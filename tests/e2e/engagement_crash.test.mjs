// tests/e2e/engagement_crash.test.mjs -- kill -9 between keeping and applying (issue 15):
// webhook bodies stored in the inbox but not yet processed, and opens answered from the
// tracking journal but not yet applied, are applied after the restart, each exactly
// once. The server that is killed keeps and applies nothing (ENGAGE_TEST_HOLD_APPLY), so the
// window between the two is certain.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { appendFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tmpData, startServer, apikey, engage } from './lib.mjs';
import { startSmtp } from './smtp.mjs';
import { writeConfig, client, sendCampaign, waitRun, runMessages, sleep } from './campaign_lib.mjs';

const SECRET = 'crash-test-secret';
let data, srv, smtp, M, A;

const rows = (q) => {
  const r = spawnSync('sqlite3', ['-json', join(data, 'engage.db'), q], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error('sqlite3: ' + r.stderr);
  return r.stdout.trim() ? JSON.parse(r.stdout) : [];
};

before(async () => {
  data = tmpData();
  engage(['migrate'], { data });
  smtp = await startSmtp();
  writeConfig(data, { providers: [{ name: 'test', url: smtp.url, rate_per_second: 1000, max_connections: 2, timeout_s: 10 }] });
  writeFileSync(join(data, 'hook.secret'), SECRET, { mode: 0o600 });
  appendFileSync(join(data, 'engage.conf'), `[webhook:gen]\ntype = generic\nsecret_file = ${join(data, 'hook.secret')}\n`);
  const marketer = apikey(data, 'marketer');
  const analyst = apikey(data, 'analyst');
  srv = await startServer(data);
  M = client(() => srv.url, marketer);
  A = client(() => srv.url, analyst);
});

after(async () => {
  if (srv) await srv.stop();
  await smtp.close();
});

test('kill -9 with webhook bodies and tracking hits kept but not applied: all applied once after the restart', async () => {
  const items = Array.from({ length: 40 }, (_, i) => ({ external_id: `k${i}`, email: `k${i}@example.com`, attributes: { grp: 'k' } }));
  let r = await M.post('/api/v1/contacts', { items });
  assert.equal(r.status, 200, r.text);
  const { run } = await sendCampaign(M, { name: 'crash', grp: 'k', template: {
    subject: 'Hi', html: '<html><body><p>Hi</p></body></html>', from_email: 'news@example.com' } });
  await waitRun(A, run.id);
  const msgs = runMessages(smtp, run.id);
  assert.equal(msgs.length, 40);
  const ids = msgs.map((m) => m.messageId);
  const pixels = msgs.map((m) => new URL(m.parsed.html.match(/<img src="([^"]*\/t\/o\/[^"]*)"/)[1]).pathname);

  // a server that keeps and does not apply (ENGAGE_TEST_HOLD_APPLY): 30 bodies of 500 events
  // each (every id unique) from 6 clients, then 1,600 opens from 16, then kill -9
  await srv.stop();
  srv = await startServer(data, { env: { ENGAGE_TEST_HOLD_APPLY: '1' } });
  const ts = Math.floor(Date.now() / 1000);
  const kinds = ['delivered', 'opened', 'clicked', 'deferred'];
  const post = async (b) => {
    const events = Array.from({ length: 500 }, (_, i) => ({ id: `c-${b}-${i}`, type: kinds[(b + i) % 4],
      message_id: ids[(b * 500 + i) % ids.length], timestamp: ts }));
    const raw = JSON.stringify({ events });
    const sig = createHmac('sha256', SECRET).update(`${ts}.${raw}`).digest('hex');
    const res = await fetch(`${srv.url}/webhooks/gen`, { method: 'POST', body: raw,
      headers: { 'content-type': 'application/json', 'x-engage-timestamp': String(ts), 'x-engage-signature': `v1=${sig}` } });
    assert.equal(res.status, 200, await res.text());
  };
  let next = 0, opens = 0;
  await Promise.all(Array.from({ length: 6 }, async () => { while (next < 30) await post(next++); }));
  await Promise.all(Array.from({ length: 16 }, async (_, w) => {
    for (let i = 0; i < 100; i++) {
      const res = await fetch(srv.url + pixels[(w * 100 + i) % pixels.length]);
      await res.arrayBuffer();
      if (res.status === 200) opens++;
    }
  }));
  const stored = 30;
  assert.equal(opens, 1600);
  srv.child.kill('SIGKILL');
  await new Promise((res) => srv.child.once('exit', res));

  // the window was open: bodies kept and not processed, hits kept and not applied
  const pending = rows('SELECT count(*) AS n FROM webhook_inbox WHERE state = 0')[0].n;
  const journal = statSync(join(data, 'tracking.journal')).size;
  const applied = (rows("SELECT applied FROM journals WHERE name = 'tracking'")[0] || { applied: 0 }).applied;
  assert.ok(pending > 0, `bodies still pending at the kill: ${pending}`);
  assert.ok(journal > applied, `hits still in the journal at the kill: ${journal} > ${applied}`);

  // and a record cut short at the journal's end, as a kill in the middle of an append leaves
  appendFileSync(join(data, 'tracking.journal'), Buffer.from([0x60, 0, 0, 0, 1, 2, 3, 4, 8, 0, 0, 0, 9]));

  srv = await startServer(data);
  for (let i = 0; i < 600; i++) {
    const q = (await A.get('/api/v1/ops/queues')).json;
    if (q.webhook_inbox.pending === 0 && q.tracking_journal.pending_bytes === 0) break;
    await sleep(100);
  }
  const f = (await A.get(`/api/v1/campaign-runs/${run.id}/funnel`)).json.counts;
  // every event once: 15,000 rows from the webhook, 1,600 opens from the pixel
  assert.equal(rows("SELECT count(*) AS n FROM message_events WHERE source = 'webhook:gen'")[0].n, 15000);
  assert.equal(rows("SELECT count(*) AS n FROM message_events WHERE source = 'tracking'")[0].n, 1600);
  assert.equal(rows('SELECT count(*) AS n FROM webhook_inbox WHERE state = 1')[0].n, stored);
  assert.equal(f.delivered, 40);
  assert.equal(f.clicked_total, 3750);
  assert.equal(f.opened_total, 3750 + 1600, 'opens from the webhook and from the pixel, each once');
  assert.equal(f.opened_unique, 40);
  assert.match(srv.stderr(), /cut short/, 'the torn record is dropped, and said');
});
