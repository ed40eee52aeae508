// tests/e2e/campaigns.test.mjs -- email campaigns end to end (issue 14): templates
// rendered per contact and sent through a real SMTP server (tests/e2e/smtp.mjs), received
// messages parsed with mailparser; the id headers of each ESP; every failure class and
// the ledger states it leads to; resend-failed and the dead-letter queue; pause, resume,
// cancel and an unsubscribe mid-run; the default outbox; the public_url rule; an empty
// audience; roles; the CLI.
//
// Written against the API before the implementation landed; assertions marked
// "DETAIL:" accept any sensible answer where the issue leaves the detail open.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { simpleParser } from 'mailparser';
import { engage, tmpData, startServer, apikey, sql } from './lib.mjs';
import { startSmtp } from './smtp.mjs';
import { writeConfig, client, sendCampaign, waitRun, ledger, runMessages, checkRun, sleep, LEDGER_STATES } from './campaign_lib.mjs';

const PUBLIC = 'http://127.0.0.1:1';
let data, srv, smtp, admin, analyst, marketer, ingestKey, M, A;

// Contacts, each in one test's group (attribute grp) so each campaign has its own audience.
const F = 'f'; // suffix of the failure-class addresses
const CONTACTS = [
  // personalisation
  { external_id: 'p1', email: 'p1@example.com', attributes: { grp: 'pers', first_name: 'ann', city: 'pune' } },
  { external_id: 'p2', email: 'p2@example.com', attributes: { grp: 'pers', city: 'delhi' } },
  { external_id: 'p3', email: 'p3@example.com', attributes: { grp: 'pers', first_name: '' } },
  { external_id: 'p4', email: 'p4@example.com', attributes: { grp: 'pers', first_name: '<script>alert(1)</script> & "x"' } },
  { external_id: 'p5', email: 'p5@example.com', attributes: { grp: 'pers', first_name: 'Eve', nick: 'A\r\nBcc: evil@example.net' } },
  // one recipient for the ESP runs
  { external_id: 'esp1', email: 'esp1@example.com', attributes: { grp: 'esp', first_name: 'Esp' } },
  // every failure class
  ...['ok', 'tempfail-451', 'throttle-454', 'busy-421', 'full-452', 'perm-550', 'policy-554', 'drop', 'flaky-1']
    .map((l) => ({ external_id: `f-${l}`, email: `${l}+${F}@example.com`, attributes: { grp: 'fail' } })),
  // a contact whose address is missing: skipped with its reason
  { external_id: 'f-noemail', attributes: { grp: 'fail' } },
];
const range = (n, f) => Array.from({ length: n }, (_, i) => f(i + 1));
const pad = (i) => String(i).padStart(2, '0');
for (const g of ['pause', 'cancel', 'cli', 'sched']) {
  CONTACTS.push(...range(g === 'sched' ? 3 : 40, (i) => ({ external_id: `${g}${pad(i)}`, email: `${g}${pad(i)}@example.com`, attributes: { grp: g } })));
}

const TEMPLATE = {
  name: 'welcome',
  subject: 'Hi {{ first_name | default: "there" }}, {{ nick | default: "friend" }}!',
  html: '<html><body><p>Hello {{ first_name | default: "there" }}</p><p>{{ city | capitalize | default: "Nowhere" }}</p>' +
    '<p>{{ first_name | upcase }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>',
  from_email: 'news@example.com',
  from_name: 'Example News',
  reply_to: 'help@example.com',
};

async function segment(name, grp) {
  const r = await M.post('/api/v1/segments', { name, rules: { type: 'attribute', field: 'grp', op: 'eq', value: grp } });
  assert.equal(r.status, 201, r.text);
  return r.json.id;
}
async function template(over = {}) {
  const r = await M.post('/api/v1/templates', { ...TEMPLATE, ...over });
  assert.equal(r.status, 201, r.text);
  return r.json.id;
}
async function campaign(name, segment_id, template_id, over = {}) {
  const r = await M.post('/api/v1/campaigns', { name, segment_id, template_id, ...over });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.state, 'draft');
  return r.json;
}
async function send(id) {
  const r = await M.post(`/api/v1/campaigns/${id}/send`);
  assert.equal(r.status, 202, r.text);
  checkRun(r.json);
  assert.equal(r.json.campaign_id, id);
  return r.json;
}
async function contact(ext) {
  const r = await A.get(`/api/v1/contacts/${ext}`);
  assert.equal(r.status, 200, r.text);
  return r.json;
}
const byExt = (rows) => Object.fromEntries(rows.map((r) => [r.external_id, r]));

before(async () => {
  data = tmpData();
  engage(['migrate'], { data });
  smtp = await startSmtp();
  const prov = (name, esp) => ({ name, url: smtp.url, esp, rate_per_second: 1000, max_connections: 2, timeout_s: 10 });
  // The first section is the default provider.
  writeConfig(data, {
    publicUrl: PUBLIC,
    retry: { max_attempts: 2, base_delay_s: 1, max_delay_s: 1 },
    providers: [prov('test', 'plain'), prov('sg', 'sendgrid'), prov('mg', 'mailgun'), prov('pm', 'postmark'), prov('ses', 'ses')],
  });
  admin = apikey(data, 'admin');
  analyst = apikey(data, 'analyst');
  marketer = apikey(data, 'marketer');
  ingestKey = apikey(data, 'ingest');
  srv = await startServer(data);
  M = client(() => srv.url, marketer);
  A = client(() => srv.url, analyst);
  const r = await M.post('/api/v1/contacts', { items: CONTACTS });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.accepted, CONTACTS.length, r.text);
});

after(async () => {
  const r = await srv.stop();
  await smtp.close();
  assert.equal(r.code, 0, 'clean exit on SIGTERM (and no leaks under ASan): ' + srv.stderr());
});

// Proves: "Tokens in subject and bodies" (attributes, default on missing and empty,
// filters), "Values are HTML-escaped in the HTML part and raw in the text part", "in the
// subject any CR or LF becomes a space", "A text part is derived from the HTML when
// absent", the MIME rules (multipart/alternative, CRLF, lines <= 998, Message-ID carrying
// our id, Date), List-Unsubscribe / List-Unsubscribe-Post, X-Engage-Message-Id, the queue
// id stored, the frozen audience (members?evaluation=E), counts.
test('a run renders each contact, escapes, cleans the subject, and carries the headers the issue names', async () => {
  const seg = await segment('pers', 'pers');
  const tpl = await template();
  const camp = await campaign('pers', seg, tpl);
  assert.equal(camp.provider, null, 'no provider named: the default'); // DETAIL: or 'test'
  const started = await send(camp.id);
  const run = await waitRun(A, started.id);
  assert.equal(run.state, 'completed');
  assert.equal(run.audience, 5);
  assert.deepEqual(run.counts, { queued: 0, sending: 0, sent: 5, retry: 0, failed: 0, dead: 0, skipped: 0 });
  assert.equal(run.possible_duplicates, 0);
  assert.ok(run.started_at && run.finished_at, 'started and finished');

  // The audience is the evaluation's immutable snapshot.
  let r = await A.get(`/api/v1/segments/${seg}/members?evaluation=${run.evaluation_id}&limit=100`);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.items.map((m) => m.external_id).sort(), ['p1', 'p2', 'p3', 'p4', 'p5']);
  r = await A.get(`/api/v1/segments/${seg}/evaluations`);
  assert.equal(r.json.items.find((e) => e.id === run.evaluation_id).trigger, 'campaign');

  const rows = byExt(await ledger(A, run.id));
  const got = {};
  for (const m of runMessages(smtp, run.id)) {
    assert.equal(m.envelope.rcptTo.length, 1, 'one recipient per message');
    got[m.envelope.rcptTo[0].split('@')[0]] = m;
  }
  assert.deepEqual(Object.keys(got).sort(), ['p1', 'p2', 'p3', 'p4', 'p5'], 'each contact exactly one message');
  assert.equal(runMessages(smtp, run.id).length, 5);
  // max_connections = 2, "kept open and reused across messages": five messages on at most
  // two connections.
  const conns = new Set(runMessages(smtp, run.id).map((m) => m.sessionId));
  assert.ok(conns.size <= 2, `${conns.size} connections for 5 messages`);

  for (const ext of ['p1', 'p2', 'p3', 'p4', 'p5']) {
    const m = got[ext], p = m.parsed, row = rows[ext];
    // The ledger row: sent once, our id, the provider's queue id.
    assert.equal(row.state, 'sent', JSON.stringify(row));
    assert.equal(row.attempts, 1);
    assert.equal(row.email, `${ext}@example.com`);
    assert.equal(row.message_id, `${run.id}.${row.contact_id}`, 'our message id is RUN.CONTACT');
    assert.equal(m.messageId, row.message_id, 'X-Engage-Message-Id is the ledger message_id');
    assert.equal(p.header('X-Engage-Message-Id'), row.message_id);
    // DETAIL: the whole reply text or just the id after "queued as"; either holds the id.
    assert.ok(row.provider_message_id && row.provider_message_id.includes(m.queueId),
      `provider_message_id ${row.provider_message_id} holds the harness queue id ${m.queueId}`);
    assert.ok(p.messageId.startsWith(`<${row.message_id}.`) || p.messageId.includes(row.message_id),
      `Message-ID ${p.messageId} carries ${row.message_id}`); // DETAIL: the form <RUN.CONTACT.XXXX@domain>
    assert.match(p.messageId, /@example\.com>$/, 'the right side of Message-ID is the From domain');
    assert.ok(p.date instanceof Date && !Number.isNaN(p.date.getTime()), 'a Date header');
    // Envelope and addresses.
    assert.equal(m.envelope.mailFrom, 'news@example.com');
    assert.deepEqual(p.from, { address: 'news@example.com', name: 'Example News' });
    assert.deepEqual(p.to, [`${ext}@example.com`]);
    assert.match(p.header('Reply-To'), /^<?help@example\.com>?$/);
    // One-click unsubscribe, exactly (RFC 8058), the same link in the body.
    const lu = p.header('List-Unsubscribe');
    const mm = lu.match(/^<(http:\/\/127\.0\.0\.1:1\/u\/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+))>$/);
    assert.ok(mm, `List-Unsubscribe: ${lu}`);
    assert.ok(mm[2].length <= 96, 'a token of at most TOKEN_MAX bytes');
    assert.equal(p.header('List-Unsubscribe-Post'), 'List-Unsubscribe=One-Click');
    assert.ok(p.html.includes(`href="${mm[1]}"`), 'the body shows the same link');
    assert.equal(p.html.split(mm[1]).length - 1, 1, 'the template shows it: no footer added');
    // MIME: multipart/alternative, CRLF only, no line over 998 bytes.
    assert.match(p.header('Content-Type'), /^multipart\/alternative;/);
    const raw = m.raw.toString('latin1');
    assert.ok(!/[^\r]\n/.test(raw), 'every line ends with CRLF');
    assert.ok(raw.split('\r\n').every((l) => l.length <= 998), 'no line over 998 bytes');
    assert.equal(p.header('MIME-Version'), '1.0');
    // No ESP header on a plain provider.
    for (const h of ['X-SMTPAPI', 'X-Mailgun-Variables', 'X-PM-Metadata-engage_message_id', 'X-SES-MESSAGE-TAGS']) {
      assert.equal(p.header(h), undefined, `${h} only for its ESP`);
    }
  }
  // Personalisation and fallbacks: default on missing (p2) and on empty (p3).
  assert.equal(got.p1.parsed.subject, 'Hi ann, friend!');
  assert.equal(got.p2.parsed.subject, 'Hi there, friend!');
  assert.equal(got.p3.parsed.subject, 'Hi there, friend!');
  assert.ok(got.p1.parsed.html.includes('<p>Hello ann</p><p>Pune</p><p>ANN</p>'), got.p1.parsed.html);
  assert.ok(got.p2.parsed.html.includes('<p>Hello there</p><p>Delhi</p><p></p>'), 'missing, no default: empty');
  assert.ok(got.p3.parsed.html.includes('<p>Hello there</p><p>Nowhere</p>'), got.p3.parsed.html);
  // Escaping: HTML part escaped, text part (derived from the HTML) raw.
  const p4 = got.p4.parsed;
  assert.ok(p4.html.includes('<p>Hello &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;</p>'), p4.html);
  assert.ok(!p4.html.includes('<script>'), 'no markup from an attribute');
  assert.ok(p4.text.includes('Hello <script>alert(1)</script> & "x"'), p4.text);
  assert.equal(p4.subject, 'Hi <script>alert(1)</script> & "x", friend!', 'the subject is raw text');
  assert.ok(got.p1.parsed.text.includes('Hello ann'), 'a text part derived from the HTML');
  // CR/LF in the subject: each became a space (templates.md: a CRLF is two spaces); no
  // header was injected.
  const p5 = got.p5.parsed;
  assert.equal(p5.subject, 'Hi Eve, A  Bcc: evil@example.net!');
  assert.equal(p5.header('Bcc'), undefined, 'no Bcc header');
  assert.deepEqual(got.p5.envelope.rcptTo, ['p5@example.com']);
  assert.ok(!/^Bcc:/im.test(got.p5.raw.toString('latin1').split('\r\n\r\n')[0]), 'no Bcc line in the raw header');

  // The campaign finished with its run; the runs list has it.
  r = await A.get(`/api/v1/campaigns/${camp.id}`);
  assert.equal(r.json.state, 'completed');
  assert.equal(r.json.last_run_id, run.id);
  r = await A.get(`/api/v1/campaigns/${camp.id}/runs`);
  assert.deepEqual(r.json.items.map((x) => x.id), [run.id]);
  // Audited in the transaction of each change (campaign.create, campaign.send).
  const actions = sql(data, `SELECT action FROM audit WHERE entity = 'campaign' AND entity_id = '${camp.id}' ORDER BY id`).split('\n');
  assert.deepEqual(actions.slice(0, 2), ['campaign.create', 'campaign.send']); // DETAIL: action names
});

// Proves: "Our message id goes where each provider echoes it back in webhooks, always
// under the name engage_message_id" for sendgrid, mailgun, postmark and ses, and
// X-Engage-Message-Id whatever the provider.
test('each esp carries our message id in its own header', async () => {
  const seg = await segment('esp', 'esp');
  const tpl = await template({ name: 'esp' });
  const runs = {};
  for (const p of ['sg', 'mg', 'pm', 'ses']) {
    const camp = await campaign(`esp-${p}`, seg, tpl, { provider: p });
    assert.equal(camp.provider, p);
    runs[p] = await waitRun(A, (await send(camp.id)).id);
    assert.equal(runs[p].counts.sent, 1, JSON.stringify(runs[p]));
  }
  const one = async (p) => {
    const [row] = await ledger(A, runs[p].id);
    const msgs = runMessages(smtp, runs[p].id);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0].messageId, row.message_id);
    return { mid: row.message_id, h: (n) => msgs[0].parsed.header(n) };
  };
  let { mid, h } = await one('sg');
  assert.equal(JSON.parse(h('X-SMTPAPI')).unique_args.engage_message_id, mid);
  ({ mid, h } = await one('mg'));
  assert.deepEqual(JSON.parse(h('X-Mailgun-Variables')), { engage_message_id: mid }); // DETAIL: other variables allowed?
  ({ mid, h } = await one('pm'));
  assert.equal(h('X-PM-Metadata-engage_message_id'), mid);
  ({ mid, h } = await one('ses'));
  const tag = h('X-SES-MESSAGE-TAGS').match(/(?:^|,\s*)engage_message_id=([^,\s]+)/);
  assert.ok(tag, h('X-SES-MESSAGE-TAGS'));
  // SES refuses a tag value with anything but ASCII letters, digits, '_' and '-' (its API
  // reference, MessageTag), so the dotted RUN.CONTACT cannot go there as it is.
  // DETAIL: written RUN-CONTACT or RUN_CONTACT; either maps back to our id.
  assert.match(tag[1], /^[A-Za-z0-9_-]{1,256}$/, `an SES tag value: ${tag[1]}`);
  assert.equal(tag[1].replace(/[-_]/, '.'), mid, `${tag[1]} names ${mid}`);
  for (const p of ['sg', 'mg', 'pm', 'ses']) assert.equal((await one(p)).h('X-Engage-Message-Id'), (await one(p)).mid);
});

// Proves "POST /api/v1/templates/{id}/test-send ... sends one real message" through an
// smtp provider, with the provider's answer.
test('a test-send goes through the SMTP provider and answers with its reply', async () => {
  const tpl = await template({ name: 'ts' });
  let r = await M.post(`/api/v1/templates/${tpl}/test-send`, { to: 'ts@example.com', external_id: 'p1', provider: 'test' });
  assert.equal(r.status, 200, r.text);
  const got = smtp.to('ts@example.com');
  assert.equal(got.length, 1);
  assert.equal(got[0].parsed.subject, 'Hi ann, friend!', 'rendered for p1');
  assert.equal(r.json.outcome, 'sent');
  assert.equal(r.json.code, 250);
  assert.ok(r.json.queue_id.includes(got[0].queueId), r.text);
  assert.equal(got[0].messageId, r.json.message_id);
  r = await M.post(`/api/v1/templates/${tpl}/test-send`, { to: 'perm-550+ts@example.com', provider: 'test' });
  assert.equal(r.status, 200, r.text); // DETAIL: the refusal is the answer's outcome, not an HTTP error
  assert.equal(r.json.outcome, 'failed');
  assert.equal(r.json.code, 550);
  assert.equal(r.json.status, '5.1.1');
  assert.equal((await A.post(`/api/v1/templates/${tpl}/test-send`, { to: 'x@example.com' })).status, 403);
});

// Proves the Failures rule and the ledger table: SMTP 4xx (421, 451, 452, 454) and a
// dropped connection -> retry with backoff, then dead after [retry] max_attempts (2); a
// flaky recipient -> retry then sent; 550 5.1.1 -> failed, a hard bounce: consent bounced
// (source send, in the history); 554 5.7.1 -> failed, consent unchanged; no address ->
// skipped with its reason. Then the DLQ (list, filters, replay) and resend-failed (only
// failed and dead rows; a sent row is never sent again; consent re-checked at send time).
test('every failure class ends in its ledger state; the DLQ and resend-failed send only what failed', async () => {
  smtp.setBehaviour(null);
  const seg = await segment('fail', 'fail');
  const tpl = await template({ name: 'fail' });
  const camp = await campaign('fail', seg, tpl);
  const run = await waitRun(A, (await send(camp.id)).id);
  assert.equal(run.state, 'completed', 'a run with failures still completes: every row has its outcome');
  assert.deepEqual(run.counts, { queued: 0, sending: 0, sent: 2, retry: 0, failed: 2, dead: 5, skipped: 1 });
  const rows = byExt(await ledger(A, run.id));
  const addr = (l) => `${l}+${F}@example.com`;
  assert.equal(rows['f-ok'].state, 'sent');
  assert.equal(rows['f-ok'].attempts, 1);
  assert.equal(rows['f-flaky-1'].state, 'sent', 'a 451 is temporary: retried, then accepted');
  assert.equal(rows['f-flaky-1'].attempts, 2);
  assert.equal(smtp.attemptsFor(addr('flaky-1')), 2);
  for (const [l, code, status] of [['tempfail-451', 451, '4.3.0'], ['throttle-454', 454, '4.7.0'],
    ['busy-421', 421, '4.4.5'], ['full-452', 452, '4.2.2']]) {
    const row = rows[`f-${l}`];
    assert.equal(row.state, 'dead', `${l}: ${JSON.stringify(row)}`);
    assert.equal(row.attempts, 2, 'max_attempts = 2');
    assert.ok(row.last_error.includes(String(code)) && row.last_error.includes(status), `${l}: last_error ${row.last_error}`);
    assert.equal(smtp.attemptsFor(addr(l)), 2, `${l}: two RCPT TO at the server`);
  }
  assert.equal(rows['f-drop'].state, 'dead', 'a dropped connection is temporary');
  assert.equal(rows['f-drop'].attempts, 2);
  assert.ok(rows['f-drop'].last_error, 'the connection error is kept');
  assert.equal(rows['f-perm-550'].state, 'failed');
  assert.equal(rows['f-perm-550'].attempts, 1, 'a 5xx is never retried');
  assert.match(rows['f-perm-550'].last_error, /550.*5\.1\.1/);
  assert.equal(smtp.attemptsFor(addr('perm-550')), 1);
  assert.equal(rows['f-policy-554'].state, 'failed');
  assert.match(rows['f-policy-554'].last_error, /554.*5\.7\.1/);
  assert.equal(rows['f-noemail'].state, 'skipped');
  assert.match(rows['f-noemail'].last_error, /no email address/); // DETAIL: the reason text
  // The hard bounce changed consent, in the history with source send; the policy refusal did not.
  const bounced = await contact('f-perm-550');
  assert.equal(bounced.email_consent, 'bounced');
  const h = bounced.consent_history.at(-1);
  assert.equal(h.to, 'bounced');
  assert.equal(h.source, 'send');
  assert.equal((await contact('f-policy-554')).email_consent, 'subscribed');
  // The run's log: retries, failures and dead letters, each group with its error and count
  const log = (await A.get(`/api/v1/campaign-runs/${run.id}/log?limit=1000`)).json.items;
  const of = (kind) => log.filter((l) => l.kind === kind);
  assert.ok(of('retry').some((l) => /451 4\.3\.0/.test(l.detail)), JSON.stringify(log));
  assert.equal(of('failed').reduce((a, l) => a + l.count, 0), 2);
  assert.equal(of('dead').reduce((a, l) => a + l.count, 0), 5);
  assert.equal(of('state').at(-1).detail.split(':')[0], 'running -> completed');
  assert.equal(runMessages(smtp, run.id).length, 2, 'only the accepted messages arrived');

  // The failed rows, a page at a time.
  let r = await A.get(`/api/v1/campaign-runs/${run.id}/messages?state=failed&limit=1`);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.items.length, 1);
  assert.ok(r.json.next_cursor);
  const first = r.json.items[0];
  r = await A.get(`/api/v1/campaign-runs/${run.id}/messages?state=failed&limit=1&cursor=${encodeURIComponent(r.json.next_cursor)}`);
  assert.equal(r.json.items.length, 1);
  assert.deepEqual([first.external_id, r.json.items[0].external_id].sort(), ['f-perm-550', 'f-policy-554']);
  if (r.json.next_cursor) {
    r = await A.get(`/api/v1/campaign-runs/${run.id}/messages?state=failed&limit=1&cursor=${encodeURIComponent(r.json.next_cursor)}`);
    assert.deepEqual(r.json.items, []);
  }
  for (const k of ['contact_id', 'external_id', 'email', 'state', 'attempts', 'last_error', 'message_id', 'provider_message_id', 'updated_at']) {
    assert.ok(k in first, `a ledger row has ${k}`);
  }
  r = await A.get(`/api/v1/campaign-runs/${run.id}/messages?state=bogus`);
  assert.equal(r.status, 400, 'not a ledger state');
  r = await A.get(`/api/v1/campaign-runs/${run.id}/messages?colour=red`);
  assert.equal(r.status, 400, 'an unknown parameter is refused');
  assert.equal(r.json.error.path, 'colour');

  // The DLQ: dead rows across runs, filtered by run and reason.
  r = await A.get(`/api/v1/dlq?run=${run.id}&limit=100`);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.items.map((x) => x.external_id).sort(),
    ['f-busy-421', 'f-drop', 'f-full-452', 'f-tempfail-451', 'f-throttle-454']); // DETAIL: items carry external_id
  r = await A.get(`/api/v1/dlq?run=${run.id}&reason=454`);
  assert.deepEqual(r.json.items.map((x) => x.external_id), ['f-throttle-454']);

  // From now on the server accepts everyone.
  smtp.setBehaviour(() => ({ accept: true }));
  r = await A.post('/api/v1/dlq/replay', { run_id: run.id, reason: '454' });
  assert.equal(r.status, 403, 'analysts read only');
  r = await M.post('/api/v1/dlq/replay', { run_id: run.id, reason: '454' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.requeued, 1);
  let again = await waitRun(A, run.id, { what: 'the replayed row' });
  assert.equal(again.counts.sent, 3);
  assert.equal(again.counts.dead, 4);
  assert.equal(smtp.to(addr('throttle-454')).length, 1);

  // resend-failed: failed and dead rows only. The bounced contact is not subscribed any
  // more: skipped at its turn.
  r = await M.post(`/api/v1/campaign-runs/${run.id}/resend-failed`);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.requeued, 6, '2 failed + 4 dead');
  again = await waitRun(A, run.id, { what: 'the resent rows' });
  assert.equal(again.state, 'completed');
  assert.deepEqual(again.counts, { queued: 0, sending: 0, sent: 8, retry: 0, failed: 0, dead: 0, skipped: 2 });
  const after2 = byExt(await ledger(A, run.id));
  assert.equal(after2['f-perm-550'].state, 'skipped');
  assert.match(after2['f-perm-550'].last_error, /bounced/); // DETAIL: "not subscribed: bounced"
  assert.equal(smtp.to(addr('perm-550')).length, 0);
  assert.equal(smtp.to(addr('ok')).length, 1, 'a sent row is never sent again');
  assert.equal(smtp.to(addr('flaky-1')).length, 1);
  for (const l of ['tempfail-451', 'throttle-454', 'busy-421', 'full-452', 'drop', 'policy-554']) {
    assert.equal(smtp.to(addr(l)).length, 1, `${l}: exactly one message in the end`);
  }
  r = await M.post(`/api/v1/campaign-runs/${run.id}/resend-failed`);
  assert.equal(r.json.requeued, 0, 'nothing left to resend');
  smtp.setBehaviour(null);
});

// Proves "Pause stops claiming; resume never re-sends a sent row" and "re-checks consent
// at send time": a contact unsubscribed while the run is paused is skipped with its
// reason; PUT and DELETE are refused while the campaign runs or is paused.
test('pause holds, resume sends the rest once each, a contact unsubscribed meanwhile is skipped', async () => {
  const seg = await segment('pause', 'pause');
  const tpl = await template({ name: 'pause' });
  const camp = await campaign('pause', seg, tpl, { throttle_per_second: 10 });
  const run0 = await send(camp.id);
  await smtp.waitUntil(() => runMessages(smtp, run0.id).length >= 5, 60000, '5 messages of the pause run');
  let r = await M.post(`/api/v1/campaigns/${camp.id}/pause`);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.state, 'paused');
  let run = await waitRun(A, run0.id, { until: (x) => x.counts.sending === 0, what: 'in-flight sends to finish' });
  assert.equal(run.state, 'paused');
  const sentAtPause = run.counts.sent;
  assert.ok(sentAtPause >= 5 && sentAtPause < 40, `paused part way: ${sentAtPause} sent`);
  assert.equal(runMessages(smtp, run0.id).length, sentAtPause, 'the ledger says what the server got');
  // Nothing more goes out while paused.
  await sleep(1500);
  assert.equal(runMessages(smtp, run0.id).length, sentAtPause, 'no message while paused');
  assert.equal((await A.get(`/api/v1/campaign-runs/${run0.id}`)).json.counts.sent, sentAtPause);
  assert.equal((await A.get(`/api/v1/campaigns/${camp.id}`)).json.state, 'paused');
  // Not editable, not deletable, not sendable again while paused; pausing twice is a conflict.
  assert.equal((await M.put(`/api/v1/campaigns/${camp.id}`, { name: 'x' })).status, 409);
  assert.equal((await M.del(`/api/v1/campaigns/${camp.id}`)).status, 409);
  assert.equal((await M.post(`/api/v1/campaigns/${camp.id}/send`)).status, 409);
  assert.equal((await M.post(`/api/v1/campaigns/${camp.id}/pause`)).status, 409);
  // A run uses the template version current when it started: a new version now changes
  // nothing in this run.
  r = await M.put(`/api/v1/templates/${tpl}`, { subject: 'Changed {{ email }}' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.version, 2);
  // The last contact (not reached yet) unsubscribes.
  r = await M.post('/api/v1/contacts/pause40/consent', { state: 'unsubscribed', reason: 'asked by phone' });
  assert.equal(r.status, 200, r.text);
  r = await M.post(`/api/v1/campaigns/${camp.id}/resume`);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.state, 'running');
  run = await waitRun(A, run0.id);
  assert.equal(run.state, 'completed');
  assert.deepEqual(run.counts, { queued: 0, sending: 0, sent: 39, retry: 0, failed: 0, dead: 0, skipped: 1 });
  assert.equal(run.possible_duplicates, 0);
  const per = new Map();
  for (const m of runMessages(smtp, run0.id)) per.set(m.envelope.rcptTo[0], (per.get(m.envelope.rcptTo[0]) || 0) + 1);
  assert.equal(per.size, 39);
  assert.ok([...per.values()].every((n) => n === 1), 'no recipient got two messages');
  assert.equal(per.get('pause40@example.com'), undefined);
  for (const m of runMessages(smtp, run0.id)) assert.equal(m.parsed.subject, 'Hi there, friend!', 'version 1 throughout');
  assert.equal(run.template_version, 1); // DETAIL: the run's template_version field (docs/api.md)
  const row = (await ledger(A, run0.id, 'skipped'))[0];
  assert.equal(row.external_id, 'pause40');
  assert.match(row.last_error, /not subscribed.*unsubscribed/); // DETAIL: the reason text
  assert.equal((await A.get(`/api/v1/campaigns/${camp.id}`)).json.state, 'completed');
});

// Proves "cancel keeps sent rows and skips the rest".
test('cancel keeps what was sent and skips the rest', async () => {
  const seg = await segment('cancel', 'cancel');
  const tpl = await template({ name: 'cancel' });
  const camp = await campaign('cancel', seg, tpl, { throttle_per_second: 10 });
  const run0 = await send(camp.id);
  await smtp.waitUntil(() => runMessages(smtp, run0.id).length >= 3, 60000, '3 messages of the cancel run');
  let r = await A.post(`/api/v1/campaigns/${camp.id}/cancel`);
  assert.equal(r.status, 403, 'analysts cannot cancel');
  r = await M.post(`/api/v1/campaigns/${camp.id}/cancel`);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.state, 'cancelled');
  const run = await waitRun(A, run0.id);
  assert.equal(run.state, 'cancelled');
  assert.ok(run.finished_at);
  const { sent, skipped } = run.counts;
  assert.ok(sent >= 3 && sent < 40, `${sent} sent before the cancel`);
  assert.equal(sent + skipped, 40, JSON.stringify(run.counts));
  await sleep(1000);
  const msgs = runMessages(smtp, run0.id);
  assert.equal(msgs.length, sent, 'what the server got is what the ledger says was sent');
  const sentRows = await ledger(A, run0.id, 'sent');
  assert.deepEqual(sentRows.map((x) => x.email).sort(), msgs.map((m) => m.envelope.rcptTo[0]).sort());
  const skippedRows = await ledger(A, run0.id, 'skipped');
  assert.equal(skippedRows.length, skipped);
  assert.ok(skippedRows.every((x) => x.last_error === 'run cancelled'), skippedRows[0] && skippedRows[0].last_error);
  assert.equal((await A.get(`/api/v1/campaigns/${camp.id}`)).json.state, 'cancelled');
  assert.equal((await M.post(`/api/v1/campaigns/${camp.id}/resume`)).status, 409, 'a cancelled run does not resume');
  // Nor does resend-failed or a replay of dead letters bring it back to send the rest.
  assert.equal((await M.post(`/api/v1/campaign-runs/${run.id}/resend-failed`)).status, 409,
    'resend-failed refuses a cancelled run');
  r = await M.post('/api/v1/dlq/replay', { run_id: run.id });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.requeued, 0, 'a replay leaves a cancelled run alone');
  assert.equal((await A.get(`/api/v1/campaign-runs/${run.id}`)).json.state, 'cancelled');
});

// Proves "send (at once, or at scheduled_at)" and the scheduled state.
test('a scheduled campaign waits for scheduled_at, then runs', async () => {
  const seg = await segment('sched', 'sched');
  const tpl = await template({ name: 'sched' });
  const at = new Date(Date.now() + 3000).toISOString();
  const camp = await campaign('sched', seg, tpl, { scheduled_at: at });
  assert.equal(Date.parse(camp.scheduled_at), Date.parse(at));
  const run0 = await send(camp.id);
  assert.equal(run0.state, 'scheduled');
  assert.equal((await A.get(`/api/v1/campaigns/${camp.id}`)).json.state, 'scheduled');
  const run = await waitRun(A, run0.id);
  assert.equal(run.state, 'completed');
  assert.equal(run.counts.sent, 3);
  assert.ok(Date.parse(run.started_at) >= Date.parse(at), `started ${run.started_at}, not before ${at}`);
  for (const m of runMessages(smtp, run.id)) assert.ok(m.parsed.date.getTime() >= Date.parse(at) - 1000);
});

// Proves "A failed evaluation or an empty audience ends the run at once with that
// reason, never silently".
test('an empty segment ends the run at once, with its reason', async () => {
  const seg = await segment('nobody', 'nobody-has-this');
  const tpl = await template({ name: 'nobody' });
  const camp = await campaign('nobody', seg, tpl);
  const n = smtp.messages.length;
  const run = await waitRun(A, (await send(camp.id)).id, { until: (x) => ['completed', 'failed', 'cancelled'].includes(x.state) });
  assert.ok(['completed', 'failed'].includes(run.state), run.state); // DETAIL: completed (docs/campaigns.md) or failed
  assert.match(run.reason, /no members|empty/i); // DETAIL: "the segment had no members (evaluation N)"
  assert.equal(run.audience, 0);
  assert.deepEqual(run.counts, { queued: 0, sending: 0, sent: 0, retry: 0, failed: 0, dead: 0, skipped: 0 });
  assert.ok(run.finished_at);
  assert.equal(smtp.messages.length, n);
});

// Proves the roles rule ("marketer and admin write, analyst reads") and docs/api.md's
// conventions on the new routes: 422 with every problem, unknown keys refused, 401/403.
test('roles and validation on the campaign routes', async () => {
  const seg = await segment('roles', 'pers');
  const tpl = await template({ name: 'roles' });
  let r = await A.post('/api/v1/campaigns', { name: 'r', segment_id: seg, template_id: tpl });
  assert.equal(r.status, 403, 'analysts cannot create');
  r = await client(() => srv.url, ingestKey).get('/api/v1/campaigns');
  assert.equal(r.status, 403, 'the ingest role reads no campaigns');
  r = await client(() => srv.url, null).get('/api/v1/campaigns');
  assert.equal(r.status, 401);
  r = await M.post('/api/v1/campaigns', { name: '', segment_id: 999999, template_id: 'x', colour: 'red' });
  assert.equal(r.status, 422, r.text);
  const paths = r.json.error.details.map((d) => d.path).sort();
  assert.deepEqual(paths, ['/colour', '/name', '/segment_id', '/template_id']);
  r = await M.post('/api/v1/campaigns', { name: 'r', segment_id: seg, template_id: tpl, provider: 'nope' });
  assert.equal(r.status, 422);
  assert.equal(r.json.error.details[0].path, '/provider');
  const camp = await campaign('roles', seg, tpl);
  r = await M.post('/api/v1/campaigns', { name: 'roles', segment_id: seg, template_id: tpl });
  assert.equal(r.status, 409, 'the name is taken');
  assert.equal(r.json.error.path, '/name');
  // Analysts read every campaign route, write none.
  for (const p of ['/api/v1/campaigns', `/api/v1/campaigns/${camp.id}`, `/api/v1/campaigns/${camp.id}/runs`, '/api/v1/dlq']) {
    r = await A.get(p);
    assert.equal(r.status, 200, `${p}: ${r.text}`);
  }
  for (const a of ['send', 'pause', 'resume', 'cancel']) {
    r = await A.post(`/api/v1/campaigns/${camp.id}/${a}`);
    assert.equal(r.status, 403, a);
  }
  assert.equal((await A.put(`/api/v1/campaigns/${camp.id}`, { name: 'y' })).status, 403);
  assert.equal((await A.del(`/api/v1/campaigns/${camp.id}`)).status, 403);
  assert.equal((await A.post('/api/v1/dlq/replay', {})).status, 403);
  // A draft is editable and deletable by a marketer; pause on a draft is a conflict.
  r = await M.put(`/api/v1/campaigns/${camp.id}`, { throttle_per_second: 5 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.throttle_per_second, 5);
  assert.equal((await M.post(`/api/v1/campaigns/${camp.id}/pause`)).status, 409);
  r = await M.del(`/api/v1/campaigns/${camp.id}`);
  assert.equal(r.status, 200, r.text);
  assert.equal((await A.get(`/api/v1/campaigns/${camp.id}`)).status, 404);
  r = await A.get('/api/v1/campaign-runs/999999');
  assert.equal(r.status, 404);
  r = await A.get('/api/v1/campaigns?limit=1&colour=1');
  assert.equal(r.status, 400);
  r = await A.get('/api/v1/campaigns?limit=2');
  assert.equal(r.json.items.length, 2);
  assert.ok(r.json.next_cursor);
});

// Proves "engage campaign list|show|send|pause|resume|cancel for operators on the command
// line", acting on the same records the running server sends from.
test('the CLI lists, shows, sends, pauses, resumes and cancels', async () => {
  const seg = await segment('cli', 'cli');
  const tpl = await template({ name: 'cli' });
  const camp = await campaign('cli', seg, tpl, { throttle_per_second: 10 });
  let r = engage(['campaign', 'list'], { data });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^${camp.id}\\s+cli\\s+draft\\b`, 'm'));
  r = engage(['campaign', 'send', String(camp.id)], { data });
  assert.equal(r.code, 0, r.stderr);
  const runId = Number(r.stdout.match(/run (\d+)/)[1]);
  await smtp.waitUntil(() => runMessages(smtp, runId).length >= 3, 60000, 'the server to send the CLI run');
  r = engage(['campaign', 'pause', String(camp.id)], { data });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /paused/);
  await waitRun(A, runId, { until: (x) => x.state === 'paused' && x.counts.sending === 0, what: 'the CLI pause' });
  r = engage(['--json', 'campaign', 'show', String(camp.id)], { data });
  assert.equal(r.code, 0, r.stderr);
  const shown = JSON.parse(r.stdout);
  assert.equal(shown.state, 'paused');
  assert.equal(shown.last_run.id, runId); // DETAIL: the latest run under last_run
  assert.equal(shown.last_run.state, 'paused');
  const sentAtPause = shown.last_run.counts.sent;
  r = engage(['campaign', 'resume', String(camp.id)], { data });
  assert.equal(r.code, 0, r.stderr);
  const run = await waitRun(A, runId);
  assert.equal(run.state, 'completed');
  assert.equal(run.counts.sent, 40);
  assert.ok(sentAtPause < 40);
  assert.equal(runMessages(smtp, runId).length, 40, 'each once across the pause');
  r = engage(['campaign', 'show', String(camp.id)], { data });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /completed/);
  assert.match(r.stdout, /sent 40\b/);
  r = engage(['campaign', 'cancel', String(camp.id)], { data });
  assert.equal(r.code, 1, 'a completed run cannot be cancelled');
  assert.match(r.stderr, new RegExp(`campaign ${camp.id}: `));
  r = engage(['campaign', 'show', '999999'], { data });
  assert.equal(r.code, 1);
  r = engage(['campaign', 'send', 'abc'], { data });
  assert.notEqual(r.code, 0, 'not an id');
  const actors = sql(data, `SELECT DISTINCT actor FROM audit WHERE entity = 'campaign' AND entity_id = '${camp.id}' AND action IN ('campaign.send', 'campaign.pause', 'campaign.resume')`).split('\n');
  assert.ok(actors.length && actors.every((a) => a.startsWith('cli')), actors.join(',')); // DETAIL: cli:USER
});

// Proves "With no provider configured, one named outbox of this type exists": each
// message written whole as an .eml file into DATA/outbox/ (no temporary file left); with
// public_url empty links use the server's own address; an HTML part without
// {{ unsubscribe_url }} gets a footer with it.
test('with no provider configured, messages go to DATA/outbox/ as .eml files', async () => {
  const d = tmpData();
  engage(['migrate'], { data: d });
  const key = apikey(d, 'marketer');
  const s = await startServer(d);
  try {
    const c = client(() => s.url, key);
    let r = await c.post('/api/v1/contacts', { items: range(3, (i) => ({ external_id: `o${i}`, email: `o${i}@example.com`, attributes: { grp: 'o', first_name: `N${i}` } })) });
    assert.equal(r.json.accepted, 3, r.text);
    const sent = await sendCampaign(c, { name: 'o', grp: 'o',
      template: { subject: 'For {{ first_name }}', html: '<p>Hi {{ first_name }}</p>', from_email: 'news@example.com' } });
    const run = await waitRun(c, sent.run.id);
    assert.equal(run.counts.sent, 3);
    assert.equal(run.provider, 'outbox');
    const rows = byExt(await ledger(c, run.id));
    const dir = join(d, 'outbox');
    const files = readdirSync(dir).sort();
    // Written to .ID.eml.XXXXXX, then renamed: no temporary (dot) file is left behind.
    assert.deepEqual(files, Object.values(rows).map((x) => `${x.message_id}.eml`).sort(), 'one whole file per message, no temporary left');
    for (const ext of ['o1', 'o2', 'o3']) {
      const row = rows[ext];
      const p = await simpleParser(readFileSync(join(dir, `${row.message_id}.eml`)));
      assert.equal(p.subject, `For N${ext.slice(1)}`);
      assert.equal(p.to.value[0].address, `${ext}@example.com`);
      assert.equal(p.headers.get('x-engage-message-id'), row.message_id);
      const lu = p.headerLines.find((l) => l.key === 'list-unsubscribe').line;
      const m = lu.match(/^List-Unsubscribe: <(http:\/\/127\.0\.0\.1:\d+\/u\/[A-Za-z0-9_.-]+)>$/i);
      assert.ok(m, lu);
      assert.ok(m[1].startsWith(s.url + '/u/'), 'no public_url: the server\'s own address');
      assert.ok(p.html.includes(m[1]), 'the footer shows the link the template lacked');
      assert.ok(p.text.includes(m[1]), 'in the text part too');
    }
  } finally {
    await s.stop();
  }
});

// Proves "[server] public_url empty: ... a run through an smtp provider is refused with a
// clear error until it is set" (and the outbox of the same server is not).
test('an smtp provider without public_url is refused with a clear error', async () => {
  const d = tmpData();
  engage(['migrate'], { data: d });
  writeConfig(d, { publicUrl: null, providers: [{ name: 'relay', url: smtp.url }, { name: 'files', type: 'outbox' }] });
  const key = apikey(d, 'marketer');
  const s = await startServer(d);
  try {
    const c = client(() => s.url, key);
    let r = await c.post('/api/v1/contacts', { external_id: 'z1', email: 'z1@example.com', attributes: { grp: 'z' } });
    assert.equal(r.json.accepted, 1, r.text);
    r = await c.post('/api/v1/segments', { name: 'z', rules: { type: 'attribute', field: 'grp', op: 'eq', value: 'z' } });
    const seg = r.json.id;
    r = await c.post('/api/v1/templates', { name: 'z', subject: 's', html: '<p>x</p>', from_email: 'news@example.com' });
    const tpl = r.json.id;
    const n = smtp.messages.length;
    r = await c.post('/api/v1/campaigns', { name: 'z', segment_id: seg, template_id: tpl, provider: 'relay' });
    if (r.status === 201) {
      const id = r.json.id;
      r = await c.post(`/api/v1/campaigns/${id}/send`);
      // DETAIL: refused at send (422, path /provider), per docs/api.md.
      assert.equal(r.status, 422, r.text);
      assert.equal((await c.get(`/api/v1/campaigns/${id}`)).json.state, 'draft', 'nothing started');
    } else {
      assert.equal(r.status, 422, r.text); // DETAIL: or refused when the campaign names it
    }
    assert.equal(r.json.error.path, '/provider');
    assert.match(r.json.error.message, /public_url/);
    // The outbox provider of the same server needs no public_url.
    r = await c.post('/api/v1/campaigns', { name: 'z2', segment_id: seg, template_id: tpl, provider: 'files' });
    assert.equal(r.status, 201, r.text);
    r = await c.post(`/api/v1/campaigns/${r.json.id}/send`);
    assert.equal(r.status, 202, r.text);
    assert.equal((await waitRun(c, r.json.id)).counts.sent, 1);
    assert.equal(smtp.messages.length, n, 'nothing reached the SMTP server');
  } finally {
    await s.stop();
  }
});

test('every ledger state name is accepted as a filter', async () => {
  const r = await A.get('/api/v1/campaigns?limit=100');
  const run = r.json.items.find((c) => c.last_run_id).last_run_id;
  for (const s of LEDGER_STATES) {
    const x = await A.get(`/api/v1/campaign-runs/${run}/messages?state=${s}&limit=5`);
    assert.equal(x.status, 200, `${s}: ${x.text}`);
    assert.ok(x.json.items.every((m) => m.state === s));
  }
});

// Proves the recipient's side of "List-Unsubscribe: <{public_url}/u/{signed token}>": the
// link's page (GET, changes nothing), the RFC 8058 one-click POST exactly as Gmail sends
// it (no cookie, no credentials, form body), 200 and never a redirect, the consent
// history with source "recipient", forged and altered tokens 404, a body that is not
// one-click 400, and a later campaign skipping the contact.
test('the unsubscribe link: a page on GET, RFC 8058 one-click POST, forged tokens 404', async () => {
  let r = await M.post('/api/v1/contacts', { items: [
    { external_id: 'un1', email: 'un1@example.com', attributes: { grp: 'unsub' } },
    { external_id: 'un2', email: 'un2@example.com', attributes: { grp: 'unsub' } }] });
  assert.equal(r.status, 200, r.text);
  const { run, segment_id, template_id } = await sendCampaign(M, { name: 'unsub', grp: 'unsub', template: { ...TEMPLATE, name: 'unsub' } });
  assert.equal((await waitRun(A, run.id)).counts.sent, 2);
  const msg = runMessages(smtp, run.id).find((m) => m.envelope.rcptTo[0] === 'un1@example.com');
  const link = msg.parsed.header('List-Unsubscribe').replace(/^<|>$/g, '');
  assert.ok(link.startsWith(`${PUBLIC}/u/`), link);
  const path = new URL(link).pathname;
  const token = path.slice(3);
  const consentOf = async () => (await A.get('/api/v1/contacts/un1')).json;

  // GET: the page with its button; nothing changes
  let res = await fetch(srv.url + path);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/html/);
  assert.equal(res.headers.get('cache-control'), 'no-store');
  let html = await res.text();
  assert.match(html, /<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">/);
  assert.match(html, /u\*\*\*@example\.com/);
  assert.ok(!html.includes('un1@example.com'), 'the address is masked');
  assert.equal((await consentOf()).email_consent, 'subscribed');

  // forged, altered, other-kind and malformed tokens: 404, nothing changes
  const flip = (t, i) => t.slice(0, i) + (t[i] === 'A' ? 'B' : 'A') + t.slice(i + 1);
  for (const bad of [flip(token, 5), flip(token, token.length - 2), 'x', token + 'A', '..%2F..%2Fetc']) {
    res = await fetch(`${srv.url}/u/${bad}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'List-Unsubscribe=One-Click' });
    assert.equal(res.status, 404, bad);
    if (!bad.includes('%')) assert.match(await res.text(), /not valid/); // else the router's own 404
  }
  // a POST that is not one-click: 400, nothing changes
  res = await fetch(srv.url + path, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'x=1' });
  assert.equal(res.status, 400);
  assert.equal((await consentOf()).email_consent, 'subscribed');

  // RFC 8058 as Gmail sends it: form-urlencoded, no cookie, no credentials, no redirect
  res = await fetch(srv.url + path, { method: 'POST', redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
  assert.equal(res.status, 200);
  html = await res.text();
  assert.match(html, /Unsubscribed/);
  let c = await consentOf();
  assert.equal(c.email_consent, 'unsubscribed');
  const changes = c.consent_history.filter((h) => h.to === 'unsubscribed');
  assert.equal(changes.length, 1, JSON.stringify(c.consent_history));
  assert.equal(changes[0].source, 'recipient');
  assert.match(changes[0].reason, new RegExp(`run ${run.id}\\b`));
  // again (a multipart body, as some clients send it): 200, still one change
  const fd = new FormData();
  fd.append('List-Unsubscribe', 'One-Click');
  res = await fetch(srv.url + path, { method: 'POST', body: fd });
  assert.equal(res.status, 200);
  c = await consentOf();
  assert.equal(c.consent_history.filter((h) => h.to === 'unsubscribed').length, 1);
  // a complained contact's link leaves it complained (the stronger signal stays)
  r = await M.post('/api/v1/contacts/un2/consent', { state: 'complained', reason: 'test: a spam report' });
  assert.equal(r.status, 200, r.text);
  const msg2 = runMessages(smtp, run.id).find((m) => m.envelope.rcptTo[0] === 'un2@example.com');
  const path2 = new URL(msg2.parsed.header('List-Unsubscribe').replace(/^<|>$/g, '')).pathname;
  res = await fetch(srv.url + path2, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'List-Unsubscribe=One-Click' });
  assert.equal(res.status, 200);
  assert.equal((await A.get('/api/v1/contacts/un2')).json.email_consent, 'complained');
  r = await M.post('/api/v1/contacts/un2/consent', { state: 'subscribed', reason: 'test: back for the next run' });
  assert.equal(r.status, 200, r.text);
  // the contact's own page now says so, and the next campaign skips it
  res = await fetch(srv.url + path);
  assert.match(await res.text(), /Unsubscribed/);
  r = await M.post('/api/v1/campaigns', { name: 'unsub again', segment_id, template_id });
  assert.equal(r.status, 201, r.text);
  r = await M.post(`/api/v1/campaigns/${r.json.id}/send`);
  assert.equal(r.status, 202, r.text);
  const again = await waitRun(A, r.json.id);
  assert.equal(again.counts.sent, 1, JSON.stringify(again));
  assert.equal(again.counts.skipped, 1);
});
