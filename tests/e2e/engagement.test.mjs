// tests/e2e/engagement.test.mjs -- what happened after the send (issue 15): our own open
// and click tracking, the one-click unsubscribe as a message event, provider webhooks
// (the generic type here, end to end; each provider's format in tests/unit/webhook.c and
// ses.c), one message-event model folded into counters, the funnel, time series in a
// viewer's zone, the overview and the queues. A storm of shuffled, duplicated events
// across runs must leave every counter equal to a recount of the stored events.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { tmpData, startServer, apikey, engage, BIN } from './lib.mjs';
import { startSmtp } from './smtp.mjs';
import { writeConfig, client, sendCampaign, waitRun, runMessages, rng, sleep } from './campaign_lib.mjs';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const PUBLIC = 'http://127.0.0.1:1';
const SECRET = 'generic-webhook-secret-for-tests';
let data, srv, smtp, M, A, I;

const TEMPLATE = {
  subject: 'News for {{ first_name | default: "you" }}',
  html: '<html><body><p>Hi {{ first_name }}</p>' +
    '<a href="https://shop.example.com/sale?a=1&amp;b=2">Sale</a> ' +
    '<a class="x" href=\'{{ site }}/p/{{ external_id }}\'>Yours</a> ' +
    '<a href="mailto:help@example.com">Mail us</a> ' +
    '<a href="https://example.com/skip" data-engage-notrack>Not tracked</a> ' +
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>',
  from_email: 'news@example.com',
};

before(async () => {
  data = tmpData();
  engage(['migrate'], { data });
  smtp = await startSmtp();
  writeConfig(data, {
    publicUrl: PUBLIC,
    providers: [{ name: 'test', url: smtp.url, rate_per_second: 1000, max_connections: 2, timeout_s: 10 }],
  });
  writeFileSync(join(data, 'hook.secret'), SECRET + '\n', { mode: 0o600 });
  appendFileSync(join(data, 'engage.conf'), `[webhook:gen]\ntype = generic\nsecret_file = ${join(data, 'hook.secret')}\n\n`);
  const marketer = apikey(data, 'marketer');
  const analyst = apikey(data, 'analyst');
  const ingest = apikey(data, 'ingest');
  srv = await startServer(data);
  M = client(() => srv.url, marketer);
  A = client(() => srv.url, analyst);
  I = client(() => srv.url, ingest);
});

after(async () => {
  const r = await srv.stop();
  await smtp.close();
  assert.equal(r.code, 0, 'clean exit on SIGTERM (and no leaks under ASan): ' + srv.stderr());
});

// Rows of a query on the store, read by the sqlite3 shell (the storm's recount).
function rows(query) {
  const r = spawnSync('sqlite3', ['-json', join(data, 'engage.db'), query], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error('sqlite3: ' + r.stderr);
  return r.stdout.trim() ? JSON.parse(r.stdout) : [];
}

async function contacts(grp, n, extra = {}) {
  const items = Array.from({ length: n }, (_, i) => ({
    external_id: `${grp}${i + 1}`, email: `${grp}${i + 1}@example.com`,
    attributes: { grp, first_name: `N${i + 1}`, site: 'https://site.example.org', ...extra },
  }));
  const r = await M.post('/api/v1/contacts', { items });
  assert.equal(r.status, 200, r.text);
}

// The paths of a received message's links (hrefs, in order) and its pixel.
function linksOf(msg) {
  const html = msg.parsed.html;
  const hrefs = [...html.matchAll(/<a\b[^>]*?href=["']([^"']*)["']/g)].map((m) => m[1]);
  const pixel = (html.match(/<img src="([^"]*\/t\/o\/[^"]*)"/) || [])[1] || null;
  return { hrefs, pixel, html };
}
const local = (u) => srv.url + new URL(u).pathname;
// The funnel once every hit and webhook body answered so far is applied (the tracking
// journal and the inbox are worked off behind the answers).
const funnel = async (run) => {
  await until(async () => {
    const q = (await A.get('/api/v1/ops/queues')).json;
    return { ok: q.tracking_journal.pending_bytes === 0 && q.webhook_inbox.pending === 0, v: q };
  }, 'the tracking journal and the inbox to be applied');
  const r = await A.get(`/api/v1/campaign-runs/${run}/funnel`);
  assert.equal(r.status, 200, r.text);
  return r.json;
};
async function until(f, what, ms = 20000) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < ms) {
    last = await f();
    if (last.ok) return last.v;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last && last.v)}`);
}

// Proves "Links in the HTML part are rewritten to {public_url}/t/c/{token}, an open pixel
// {public_url}/t/o/{token} is added"; the unsubscribe link, mailto: and a link marked
// data-engage-notrack stay; a click redirects (302) to the link at that index of the
// rendered message (entities decoded; a {{ }} link rendered for the contact), never to a
// URL from the request; forged and altered tokens 404; unique and total opens and
// clicks; a click counts as an open; Apple's proxy is a machine open, counted apart; the
// contact events with their contracts.
test('opens and clicks: links rewritten, pixel added, 302 to the message\'s own link, counted once per message', async () => {
  await contacts('trk', 3);
  const { run } = await sendCampaign(M, { name: 'trk', grp: 'trk', template: TEMPLATE });
  const done = await waitRun(A, run.id);
  assert.equal(done.counts.sent, 3);
  // the run's log: its state changes in order
  const log = (await A.get(`/api/v1/campaign-runs/${run.id}/log`)).json.items;
  assert.deepEqual(log.filter((l) => l.kind === 'state').map((l) => l.detail.split(':')[0]),
    ['-> scheduled', 'scheduled -> running', 'running -> completed'], JSON.stringify(log));
  const msgs = runMessages(smtp, run.id);
  assert.equal(msgs.length, 3);
  const byTo = Object.fromEntries(msgs.map((m) => [m.envelope.rcptTo[0], m]));
  const m1 = linksOf(byTo['trk1@example.com']);
  assert.equal(m1.hrefs.length, 5, m1.html);
  assert.match(m1.hrefs[0], new RegExp(`^${PUBLIC}/t/c/`));
  assert.match(m1.hrefs[1], new RegExp(`^${PUBLIC}/t/c/`));
  assert.equal(m1.hrefs[2], 'mailto:help@example.com');
  assert.equal(m1.hrefs[3], 'https://example.com/skip');
  assert.match(m1.hrefs[4], new RegExp(`^${PUBLIC}/u/`), 'the unsubscribe link is not tracked');
  assert.ok(m1.pixel && m1.pixel.startsWith(`${PUBLIC}/t/o/`), m1.html);
  assert.ok(m1.html.indexOf(m1.pixel) < m1.html.indexOf('</body>'));

  // nothing yet
  let f = await funnel(run.id);
  assert.equal(f.counts.sent, 3);
  assert.equal(f.counts.opened_unique, 0);
  assert.equal(f.rate_base, 'sent', 'no delivery reported: rates against sent');

  // the pixel: a GIF, counted; twice is one unique open and two in total
  let res = await fetch(local(m1.pixel), { headers: { 'user-agent': 'Thunderbird/115' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'image/gif');
  assert.equal(res.headers.get('cache-control'), 'no-store');
  assert.equal(Buffer.from(await res.arrayBuffer()).subarray(0, 6).toString(), 'GIF89a');
  res = await fetch(local(m1.pixel));
  assert.equal(res.status, 200);
  f = await funnel(run.id);
  assert.equal(f.counts.opened_unique, 1);
  assert.equal(f.counts.opened_total, 2);
  // Apple Mail Privacy Protection's proxy: a machine open, not an open
  const m2 = linksOf(byTo['trk2@example.com']);
  res = await fetch(local(m2.pixel), { headers: { 'user-agent': 'Mozilla/5.0' } });
  assert.equal(res.status, 200);
  f = await funnel(run.id);
  assert.equal(f.counts.opened_unique, 1);
  assert.equal(f.counts.opened_machine, 1);

  // clicks: 302 to the message's own link, entities decoded, never a redirect
  res = await fetch(local(m1.hrefs[0]) + '?url=https://evil.example.net', { redirect: 'manual' });
  assert.equal(res.status, 302);
  assert.equal(res.headers.get('location'), 'https://shop.example.com/sale?a=1&b=2');
  res = await fetch(local(m1.hrefs[1]), { redirect: 'manual' });
  assert.equal(res.status, 302);
  assert.equal(res.headers.get('location'), 'https://site.example.org/p/trk1', 'a {{ }} link, rendered for the contact');
  res = await fetch(local(m1.hrefs[0]), { redirect: 'manual' });
  assert.equal(res.status, 302);
  // a click on a message never opened (its images blocked) is an open too
  const m3 = linksOf(byTo['trk3@example.com']);
  res = await fetch(local(m3.hrefs[0]), { redirect: 'manual' });
  assert.equal(res.status, 302);
  f = await funnel(run.id);
  assert.equal(f.counts.clicked_unique, 2);
  assert.equal(f.counts.clicked_total, 4);
  assert.equal(f.counts.opened_unique, 2, 'trk1 opened; trk3 clicked without an open');
  assert.equal(f.counts.opened_total, 2, 'totals count pixel hits only');
  assert.equal(f.rates.click_to_open, 1);
  assert.ok(Math.abs(f.rates.open - 2 / 3) < 1e-9, JSON.stringify(f.rates));

  // forged, altered, swapped: 404, nothing counted
  const tok = new URL(m1.hrefs[0]).pathname.slice(5);
  const flip = (t, i) => t.slice(0, i) + (t[i] === 'A' ? 'B' : 'A') + t.slice(i + 1);
  for (const p of [`/t/c/${flip(tok, 3)}`, `/t/c/${flip(tok, tok.length - 3)}`, `/t/c/${tok}x`, '/t/c/abc',
    `/t/o/${tok}`, `/t/c/${new URL(m1.pixel).pathname.slice(5)}`, `/t/c/${new URL(m1.hrefs[4]).pathname.slice(3)}`]) {
    res = await fetch(srv.url + p, { redirect: 'manual' });
    assert.equal(res.status, 404, p);
    assert.equal(res.headers.get('location'), null);
  }
  f = await funnel(run.id);
  assert.equal(f.counts.clicked_total, 4);
  assert.equal(f.counts.opened_total, 2);

  // the contact events, with the campaign, run and message ids (the index takes them in
  // behind the store)
  const c = await until(async () => {
    const v = (await A.get('/api/v1/contacts/trk1')).json;
    return { ok: v.recent_events.some((e) => e.event === 'email_clicked'), v };
  }, 'the contact events');
  const names = c.recent_events.map((e) => e.event);
  assert.ok(names.includes('email_opened') && names.includes('email_clicked'), JSON.stringify(names));
  const clicked = c.recent_events.find((e) => e.event === 'email_clicked');
  assert.equal(clicked.properties.run_id, String(run.id));
  assert.equal(clicked.properties.message_id, `${run.id}.${clicked.properties.message_id.split('.')[1]}`);
  assert.ok(clicked.properties.url.startsWith('https://'));
  assert.ok(clicked.contract_version >= 1, 'checked by its shipped contract');
  const opened = c.recent_events.find((e) => e.event === 'email_opened');
  assert.equal(opened.contract_version, 2, 'the extended email_opened contract, version 2');
});

// Proves track_opens / track_clicks false: the message as written.
test('a campaign with tracking off sends its links and no pixel', async () => {
  await contacts('notrk', 1);
  const { run, campaign } = await sendCampaign(M, { name: 'notrk', grp: 'notrk', template: TEMPLATE,
    extra: { track_opens: false, track_clicks: false } });
  assert.equal(campaign.track_opens, false);
  await waitRun(A, run.id);
  const m = linksOf(runMessages(smtp, run.id)[0]);
  assert.equal(m.pixel, null);
  assert.equal(m.hrefs[0], 'https://shop.example.com/sale?a=1&amp;b=2', 'the HTML as written');
  let r = await M.post('/api/v1/campaigns', { name: 'bad flags', segment_id: 1, template_id: 1, track_opens: 'yes' });
  assert.equal(r.status, 422);
  assert.ok(r.json.error.details.some((d) => d.path === '/track_opens'), r.text);
});

// Proves the one-click unsubscribe is a message event: counted in the funnel, an
// email_unsubscribed contact event, the consent change with source "recipient"; a second
// POST changes nothing.
test('the one-click unsubscribe lands in the funnel and as a contact event', async () => {
  await contacts('uns', 2);
  const { run } = await sendCampaign(M, { name: 'uns', grp: 'uns', template: TEMPLATE });
  await waitRun(A, run.id);
  const msg = runMessages(smtp, run.id).find((m) => m.envelope.rcptTo[0] === 'uns1@example.com');
  const link = msg.parsed.header('List-Unsubscribe').replace(/^<|>$/g, '');
  for (let i = 0; i < 2; i++) {
    const res = await fetch(local(link), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'List-Unsubscribe=One-Click', redirect: 'manual' });
    assert.equal(res.status, 200);
  }
  const f = await funnel(run.id);
  assert.equal(f.counts.unsubscribed, 1);
  const c = (await A.get('/api/v1/contacts/uns1')).json;
  assert.equal(c.email_consent, 'unsubscribed');
  assert.equal(c.consent_history.filter((h) => h.to === 'unsubscribed').length, 1);
  assert.equal(c.consent_history.find((h) => h.to === 'unsubscribed').source, 'recipient');
  assert.ok(c.recent_events.some((e) => e.event === 'email_unsubscribed'), JSON.stringify(c.recent_events));
});

// ---- provider webhooks: the generic type ---------------------------------------------

function signed(body, { ts = Math.floor(Date.now() / 1000), secret = SECRET } = {}) {
  const raw = typeof body === 'string' ? body : JSON.stringify(body);
  const sig = createHmac('sha256', secret).update(`${ts}.${raw}`).digest('hex');
  return { body: raw, headers: { 'content-type': 'application/json', 'x-engage-timestamp': String(ts), 'x-engage-signature': `v1=${sig}` } };
}
async function hook(body, opts = {}, name = 'gen') {
  const s = signed(body, opts);
  const res = await fetch(`${srv.url}/webhooks/${name}`, { method: 'POST', headers: { ...s.headers, ...(opts.headers || {}) }, body: s.body });
  const text = await res.text();
  return { status: res.status, text, json: text ? JSON.parse(text) : null };
}
const queues = async () => (await A.get('/api/v1/ops/queues')).json;
const drained = () => until(async () => { const q = await queues(); return { ok: q.webhook_inbox.pending === 0, v: q }; }, 'the inbox to drain');

// Proves the generic webhook: verification (signature, window, unknown name), storage
// before the answer, the worker applying events (delivered, bounced_hard with its
// consent change by the provider, complained), unknown messages kept and counted with a
// 200, duplicates changing nothing, a malformed body kept and answered 400.
test('generic webhook: verified, stored, applied once; unknown messages counted; bad ones refused', async () => {
  await contacts('wh', 3);
  const { run } = await sendCampaign(M, { name: 'wh', grp: 'wh', template: TEMPLATE });
  await waitRun(A, run.id);
  const sentMsgs = runMessages(smtp, run.id).sort((a, b) => (a.messageId < b.messageId ? -1 : 1));
  const ids = sentMsgs.map((m) => m.messageId);
  const xidOf = (i) => sentMsgs[i].envelope.rcptTo[0].split('@')[0];
  const now = Math.floor(Date.now() / 1000);
  const body = { events: [
    { id: 'e1', type: 'delivered', message_id: ids[0], timestamp: now },
    { id: 'e2', type: 'delivered', message_id: ids[1], timestamp: now },
    { id: 'e3', type: 'bounced_hard', message_id: ids[2], timestamp: now, reason: '550 5.1.1 no such user' },
    { id: 'e4', type: 'complained', message_id: ids[1], timestamp: now },
    { id: 'e5', type: 'opened', message_id: '999999.1', timestamp: now },
  ] };
  let r = await hook(body);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.events, 5);
  await drained();
  let f = await funnel(run.id);
  assert.equal(f.counts.delivered, 2);
  assert.equal(f.counts.bounced_hard, 1);
  assert.equal(f.counts.complained, 1);
  assert.equal(f.rate_base, 'delivered');
  assert.equal(f.rates.complaint, 0.5);
  const bounced = (await A.get(`/api/v1/contacts/${xidOf(2)}`)).json;
  assert.equal(bounced.email_consent, 'bounced');
  assert.equal(bounced.consent_history.find((h) => h.to === 'bounced').source, 'webhook:gen');
  assert.ok(bounced.recent_events.some((e) => e.event === 'email_bounced' && e.properties.bounce === 'hard'));
  assert.equal((await A.get(`/api/v1/contacts/${xidOf(1)}`)).json.email_consent, 'complained');
  // the drill-down: a run's rows by event, each with the kinds it has had; a contact's
  // messages with theirs
  let d = await A.get(`/api/v1/campaign-runs/${run.id}/messages?event=bounced_hard`);
  assert.equal(d.status, 200, d.text);
  assert.deepEqual(d.json.items.map((m) => m.message_id), [ids[2]]);
  assert.deepEqual(d.json.items[0].events, ['bounced_hard']);
  d = await A.get(`/api/v1/campaign-runs/${run.id}/messages?event=delivered&state=sent`);
  assert.equal(d.json.items.length, 2);
  d = await A.get(`/api/v1/campaign-runs/${run.id}/messages?event=exploded`);
  assert.equal(d.status, 400);
  assert.equal(d.json.error.path, 'event');
  d = await A.get(`/api/v1/campaign-runs/${run.id}/reasons`);
  assert.equal(d.status, 200, d.text);
  assert.deepEqual(d.json.reasons, [], 'every message went out');
  const hist = (await A.get(`/api/v1/contacts/${xidOf(1)}`)).json.messages;
  assert.equal(hist[0].message_id, ids[1]);
  assert.deepEqual(hist[0].events.sort(), ['complained', 'delivered']);
  let q = await queues();
  assert.equal(q.unknown_message_events, 1);

  // the same body again (a provider's retry): nothing changes
  r = await hook(body);
  assert.equal(r.status, 200);
  await drained();
  f = await funnel(run.id);
  assert.equal(f.counts.delivered, 2);
  assert.equal(f.counts.complained, 1);
  assert.equal((await queues()).unknown_message_events, 1);

  // out of order: an open before its delivery, then the delivery: both, once
  r = await hook({ events: [{ id: 'late-open', type: 'opened', message_id: ids[2], timestamp: now }] });
  assert.equal(r.status, 200);
  r = await hook({ events: [{ id: 'late-deliv', type: 'delivered', message_id: ids[2], timestamp: now - 5 }] });
  assert.equal(r.status, 200);
  await drained();
  f = await funnel(run.id);
  assert.equal(f.counts.delivered, 3);
  assert.equal(f.counts.opened_unique, 1);

  // refused: bad signature, another secret, an old timestamp, no signature, unknown name
  const bad = signed(body);
  let res = await fetch(`${srv.url}/webhooks/gen`, { method: 'POST', headers: { ...bad.headers, 'x-engage-signature': 'v1=00' }, body: bad.body });
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error.code, 'unauthorized');
  r = await hook(body, { secret: 'another' });
  assert.equal(r.status, 401);
  r = await hook(body, { ts: now - 3600 });
  assert.equal(r.status, 401);
  assert.match(r.json.error.message, /timestamp|old|window/i);
  res = await fetch(`${srv.url}/webhooks/gen`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(res.status, 401);
  r = await hook(body, {}, 'nope');
  assert.equal(r.status, 404);
  // verified but malformed: 400 with the reason, and kept (failed) for an operator
  r = await hook({ events: [{ id: 'x', type: 'exploded', message_id: ids[0], timestamp: now }] });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error.message, /type/);
  q = await until(async () => { const v = await queues(); return { ok: v.webhook_inbox.failed >= 1, v }; }, 'the failed body');
  assert.equal(q.webhook_inbox.failed, 1);
});

// Proves the storm: thousands of random events with duplicates and shuffled order over
// several runs, through the generic webhook in many bodies; after which every counter of
// every run equals a recount from the stored message events.
test('storm: shuffled, duplicated events across runs; every counter equals a recount of the stored events', async () => {
  const runs = [];
  for (let k = 0; k < 3; k++) {
    await contacts(`st${k}`, 40);
    const { run } = await sendCampaign(M, { name: `storm${k}`, grp: `st${k}`, template: TEMPLATE });
    await waitRun(A, run.id);
    runs.push({ id: run.id, ids: runMessages(smtp, run.id).map((m) => m.messageId) });
  }
  const rand = rng(15);
  const kinds = ['delivered', 'deferred', 'dropped', 'bounced_hard', 'bounced_soft', 'complained', 'unsubscribed', 'opened', 'clicked'];
  const events = [];
  const now = Math.floor(Date.now() / 1000);
  for (let i = 0; i < 3000; i++) {
    const r = runs[Math.floor(rand() * runs.length)];
    const ev = { id: `storm-${i}`, type: kinds[Math.floor(rand() * kinds.length)], message_id: r.ids[Math.floor(rand() * r.ids.length)],
      timestamp: now - Math.floor(rand() * 7200) };
    if (ev.type === 'clicked') ev.url = 'https://example.com/x';
    events.push(ev);
    if (rand() < 0.2) events.push({ ...ev }); // a duplicate
  }
  for (let i = events.length - 1; i > 0; i--) { // shuffle
    const j = Math.floor(rand() * (i + 1));
    [events[i], events[j]] = [events[j], events[i]];
  }
  for (let i = 0; i < events.length; i += 250) {
    const r = await hook({ events: events.slice(i, i + 250) });
    assert.equal(r.status, 200, r.text);
  }
  await drained();
  for (const r of runs) {
    const f = (await funnel(r.id)).counts;
    // the recount, from the stored events alone
    const evs = rows(`SELECT kind, message_row, machine FROM message_events WHERE run_id = ${r.id}`);
    const uniq = (k) => new Set(evs.filter((x) => x.kind === k).map((x) => x.message_row)).size;
    const opened = new Set(evs.filter((x) => (x.kind === 8 && !x.machine) || x.kind === 9).map((x) => x.message_row)).size;
    assert.equal(f.delivered, uniq(1), `run ${r.id} delivered`);
    assert.equal(f.deferred, uniq(2));
    assert.equal(f.dropped, uniq(3));
    assert.equal(f.bounced_hard, uniq(4));
    assert.equal(f.bounced_soft, uniq(5));
    assert.equal(f.complained, uniq(6));
    assert.equal(f.unsubscribed, uniq(7));
    assert.equal(f.opened_unique, opened);
    assert.equal(f.clicked_unique, uniq(9));
    assert.equal(f.opened_total, evs.filter((x) => x.kind === 8 && !x.machine).length);
    assert.equal(f.clicked_total, evs.filter((x) => x.kind === 9).length);
    // and the stored events are the distinct ones sent
    const sent = new Set(events.filter((e) => r.ids.includes(e.message_id)).map((e) => e.id));
    const stored = rows(`SELECT count(*) AS n FROM message_events WHERE run_id = ${r.id} AND source = 'webhook:gen' AND source_id LIKE 'storm-%'`)[0].n;
    assert.equal(stored, sent.size);
    // the minute counters add up to the same figures
    const ts = (await A.get(`/api/v1/campaign-runs/${r.id}/timeseries?bucket=hour&from=${new Date((now - 8 * 3600) * 1000).toISOString()}`)).json;
    const sum = (k) => ts.series.reduce((a, b) => a + b[k], 0);
    assert.equal(sum('delivered'), f.delivered);
    assert.equal(sum('opened_unique'), f.opened_unique);
    assert.equal(sum('clicked_total'), f.clicked_total);
    assert.equal(sum('sent'), f.sent);
  }
});

// Proves the time series and the overview: buckets in the viewer's zone (day buckets
// start at local midnight, labelled with the offset), zero-filled; bad parameters 400
// naming the parameter; roles.
test('time series in a viewer\'s zone, the overview, the queues, and who may read them', async () => {
  const runId = (await A.get('/api/v1/campaigns?limit=1')).json.items[0].last_run_id;
  let r = await A.get(`/api/v1/campaign-runs/${runId}/timeseries?bucket=day&tz=Asia/Kolkata&from=2026-01-01T00:00:00Z&to=2026-01-04T00:00:00Z`);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.tz, 'Asia/Kolkata');
  // from 05:30 on 1 January to 05:30 on 4 January in Kolkata: four local days
  assert.deepEqual(r.json.series.map((b) => b.t), ['2026-01-01T00:00:00+05:30', '2026-01-02T00:00:00+05:30',
    '2026-01-03T00:00:00+05:30', '2026-01-04T00:00:00+05:30']);
  assert.ok(r.json.series.every((b) => b.sent === 0));
  r = await A.get(`/api/v1/campaign-runs/${runId}/timeseries?tz=Mars/Olympus`);
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.error.path, 'tz');
  r = await A.get(`/api/v1/campaign-runs/${runId}/timeseries?bucket=week`);
  assert.equal(r.status, 400);
  assert.equal(r.json.error.path, 'bucket');
  r = await A.get(`/api/v1/campaign-runs/${runId}/timeseries?bucket=minute&from=2020-01-01T00:00:00Z`);
  assert.equal(r.status, 400, 'too many buckets');
  r = await A.get(`/api/v1/campaign-runs/${runId}/timeseries?colour=red`);
  assert.equal(r.status, 400);
  r = await A.get('/api/v1/campaign-runs/999999/funnel');
  assert.equal(r.status, 404);

  r = await A.get('/api/v1/analytics/overview?tz=Asia/Kolkata');
  assert.equal(r.status, 200, r.text);
  assert.ok(r.json.totals.sent >= 3, r.text);
  assert.ok(r.json.top_campaigns.length >= 1);
  assert.ok(r.json.daily.length >= 30);
  assert.match(r.json.daily[0].t, /T00:00:00\+05:30$/);

  r = await A.get('/api/v1/ops/queues');
  assert.equal(r.status, 200);
  for (const k of ['ledger', 'oldest_queued_seconds', 'retry_backlog', 'dead_letters', 'webhook_inbox', 'unknown_message_events',
    'tracking_journal']) {
    assert.ok(k in r.json, k);
  }
  // the same as gauges
  const metrics = await (await fetch(srv.url + '/metrics')).text();
  assert.match(metrics, /^engage_queue_ledger_rows\{state="sent"\} [1-9]/m);
  assert.match(metrics, /^engage_webhook_inbox_bodies\{state="failed"\} 1$/m);
  assert.match(metrics, /^engage_tracking_journal_pending_bytes \d+$/m);
  assert.match(metrics, /^engage_queue_oldest_queued_seconds /m);
  // the ingest role reads none of it
  for (const p of [`/api/v1/campaign-runs/${runId}/funnel`, '/api/v1/analytics/overview', '/api/v1/ops/queues']) {
    r = await I.get(p);
    assert.equal(r.status, 403, p);
  }
});

// Proves the conversion goal: an order within the window after the message, attributed to
// the contact's latest message of the campaign (last touch), counted once per event id,
// its amount as revenue; a contact the campaign never reached does not convert; the goal
// is validated.
test('conversions: an event within N days after the message converts it, with its value as revenue', async () => {
  await contacts('conv', 3);
  const { run, campaign } = await sendCampaign(M, { name: 'conv', grp: 'conv', template: TEMPLATE,
    extra: { conversion: { event: 'order_created', within_days: 7, value_property: 'amount' } } });
  assert.deepEqual(campaign.conversion, { event: 'order_created', within_days: 7, value_property: 'amount', after: 'delivered' });
  await waitRun(A, run.id);
  const order = (xid, id, amount) => ({ external_id: xid, event: 'order_created', event_id: id,
    properties: { order_id: id, amount, currency: 'INR', created_at: new Date().toISOString() } });
  let r = await I.post('/api/v1/events', { items: [order('conv1', 'o-1', 250), order('conv1', 'o-2', 100),
    order('conv2', 'o-3', 40.5), order('trk1', 'o-4', 999)] });
  assert.equal(r.status, 200, r.text);
  r = await I.post('/api/v1/events', { items: [order('conv1', 'o-1', 250)] }); // a replay
  assert.equal(r.status, 200, r.text);
  const f = await until(async () => {
    const v = (await A.get(`/api/v1/campaign-runs/${run.id}/funnel`)).json;
    return { ok: v.counts.conversions >= 2, v };
  }, 'the conversions');
  assert.equal(f.counts.conversions, 2, 'conv1 and conv2 converted');
  assert.equal(f.counts.revenue, 390.5, 'every attributed order counts as revenue, once');
  assert.ok(Math.abs(f.rates.conversion - 2 / 3) < 1e-9);
  // trk1 got no message of this campaign: its order converts nothing here
  const cf = (await A.get(`/api/v1/campaigns/${campaign.id}/funnel`)).json;
  assert.equal(cf.counts.conversions, 2);
  // the goal is checked
  r = await M.post('/api/v1/campaigns', { name: 'bad goal', segment_id: campaign.segment_id, template_id: campaign.template_id,
    conversion: { event: '', within_days: 0, after: 'opened', extra: 1 } });
  assert.equal(r.status, 422, r.text);
  const paths = r.json.error.details.map((d) => d.path).sort();
  assert.deepEqual(paths, ['/conversion/after', '/conversion/event', '/conversion/extra', '/conversion/within_days']);
});

// Proves "make demo shows a sent demo campaign with engagement": the demo sends its
// campaign through the real dispatcher once it serves, then deliveries and bounces as a
// provider reports them, opens and clicks through the tracking links, orders that convert.
test('the demo sends its campaign and shows its engagement', async () => {
  const dir = tmpData();
  const child = spawn(BIN, ['--data', dir, 'demo', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  try {
    const url = await until(async () => ({ ok: /listening on (http:\S+)/.test(out), v: (out.match(/listening on (http:\S+)/) || [])[1] }),
      'the demo to serve', 60000);
    const key = await until(async () => ({ ok: /Admin key:\s+(ek_\S+)/.test(out), v: (out.match(/Admin key:\s+(ek_\S+)/) || [])[1] }), 'its key');
    const D = client(url, key);
    const f = await until(async () => {
      const r = await D.get('/api/v1/campaign-runs/1/funnel');
      return { ok: r.status === 200 && r.json.counts.delivered > 0 && r.json.counts.clicked_unique > 0, v: r.json };
    }, 'the demo campaign\'s engagement', 60000);
    assert.ok(f.counts.sent > 0 && f.counts.opened_unique > 0, JSON.stringify(f));
    assert.equal(f.counts.delivered + f.counts.bounced_hard, f.counts.sent);
  } finally {
    child.kill('SIGTERM');
    await new Promise((res) => child.once('exit', res));
  }
});
