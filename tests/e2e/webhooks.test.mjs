// tests/e2e/webhooks.test.mjs -- each provider's webhook through the route (issue 15):
// SendGrid signed with a P-256 key made here, Mailgun's HMAC with its replay and window
// answers (406), Postmark's Basic credentials, Amazon SES through SNS signed with an RSA
// certificate made here (openssl) and served by a local server the configuration's
// cert_url_pattern allows, with the SubscriptionConfirmation's SubscribeURL fetched. The
// formats' every shape is tested in tests/unit/webhook.c and ses.c; here, that the
// headers, keys and answers are wired as docs/webhooks.md says.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, createSign, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { spawnSync } from 'node:child_process';
import { appendFileSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpData, startServer, apikey, engage } from './lib.mjs';
import { startSmtp } from './smtp.mjs';
import { writeConfig, client, sendCampaign, waitRun, runMessages, sleep } from './campaign_lib.mjs';

const MG_KEY = 'mailgun-signing-key-for-tests';
const PM_PASS = 'postmark pass: with colon';
const TOPIC = 'arn:aws:sns:us-east-1:123456789012:ses-events';
let data, srv, smtp, M, A, certSrv, certUrl, subscribeHits = 0, ids = [], xids = [];
const sg = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

before(async () => {
  data = tmpData();
  engage(['migrate'], { data });
  smtp = await startSmtp();
  // an RSA key and a self-signed certificate, as SNS signs with
  const key = join(data, 'sns.key'), crt = join(data, 'sns.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt,
    '-days', '2', '-subj', '/CN=sns.test'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  certSrv = createServer((req, res) => {
    if (req.url === '/cert.pem') { res.end(readFileSync(crt)); return; }
    if (req.url.startsWith('/confirm')) { subscribeHits++; res.end('<ConfirmSubscriptionResponse/>'); return; }
    res.statusCode = 404;
    res.end();
  });
  await new Promise((res) => certSrv.listen(0, '127.0.0.1', res));
  certUrl = `http://127.0.0.1:${certSrv.address().port}`;
  writeConfig(data, { providers: [{ name: 'test', url: smtp.url, rate_per_second: 1000, max_connections: 2, timeout_s: 10 }] });
  writeFileSync(join(data, 'sg.pub'), sg.publicKey.export({ type: 'spki', format: 'der' }).toString('base64') + '\n');
  writeFileSync(join(data, 'mg.key'), MG_KEY, { mode: 0o600 });
  writeFileSync(join(data, 'pm.pass'), PM_PASS, { mode: 0o600 });
  appendFileSync(join(data, 'engage.conf'),
    `[webhook:sg]\ntype = sendgrid\npublic_key_file = ${join(data, 'sg.pub')}\n\n` +
    `[webhook:mg]\ntype = mailgun\nsigning_key_file = ${join(data, 'mg.key')}\n\n` +
    `[webhook:pm]\ntype = postmark\nusername = hook\npassword_file = ${join(data, 'pm.pass')}\n\n` +
    `[webhook:ses]\ntype = ses\ntopic_arn = ${TOPIC}\ncert_url_pattern = ^http://127\\.0\\.0\\.1:[0-9]+/cert\\.pem$\n\n`);
  srv = await startServer(data);
  M = client(() => srv.url, apikey(data, 'marketer'));
  A = client(() => srv.url, apikey(data, 'analyst'));
  const items = Array.from({ length: 8 }, (_, i) => ({ external_id: `w${i}`, email: `w${i}@example.com`, attributes: { grp: 'w' } }));
  const c = await M.post('/api/v1/contacts', { items });
  assert.equal(c.status, 200, c.text);
  const { run } = await sendCampaign(M, { name: 'hooks', grp: 'w', template: {
    subject: 'Hi', html: '<html><body><p>Hi</p></body></html>', from_email: 'news@example.com' } });
  await waitRun(A, run.id);
  const msgs = runMessages(smtp, run.id).sort((a, b) => (a.messageId < b.messageId ? -1 : 1));
  ids = msgs.map((m) => m.messageId);
  xids = msgs.map((m) => m.envelope.rcptTo[0].split('@')[0]);
  globalThis.runId = run.id;
});

after(async () => {
  const r = await srv.stop();
  await smtp.close();
  certSrv.close();
  assert.equal(r.code, 0, 'clean exit: ' + srv.stderr());
});

const post = async (name, body, headers = {}) => {
  const res = await fetch(`${srv.url}/webhooks/${name}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
  const text = await res.text();
  return { status: res.status, text, json: text.startsWith('{') ? JSON.parse(text) : null };
};
const settled = async () => {
  for (let i = 0; i < 200; i++) {
    const q = (await A.get('/api/v1/ops/queues')).json;
    if (q.webhook_inbox.pending === 0) return q;
    await sleep(50);
  }
  throw new Error('the inbox did not drain');
};
const funnel = async () => { await settled(); return (await A.get(`/api/v1/campaign-runs/${globalThis.runId}/funnel`)).json.counts; };
const consent = async (xid) => (await A.get(`/api/v1/contacts/${xid}`)).json;

test('sendgrid: signed with the P-256 key, applied once; a bad signature is 401', async () => {
  const now = Math.floor(Date.now() / 1000);
  const body = JSON.stringify([
    { email: `${xids[0]}@example.com`, timestamp: now, event: 'delivered', sg_event_id: 'sg-1', sg_message_id: 'q1.filter1', engage_message_id: ids[0] },
    { email: `${xids[1]}@example.com`, timestamp: now, event: 'bounce', type: 'bounce', status: '5.1.1', reason: '550 5.1.1 user unknown',
      sg_event_id: 'sg-2', engage_message_id: ids[1] },
    { email: `${xids[0]}@example.com`, timestamp: now, event: 'processed', sg_event_id: 'sg-3' },
  ]);
  const ts = String(now);
  const sign = (b, t = ts) => createSign('SHA256').update(t + b).sign(sg.privateKey).toString('base64');
  const h = { 'x-twilio-email-event-webhook-timestamp': ts, 'x-twilio-email-event-webhook-signature': sign(body) };
  let r = await post('sg', body, h);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.events, 2, 'processed is skipped');
  r = await post('sg', body, h); // SendGrid's retry
  assert.equal(r.status, 200);
  let f = await funnel();
  assert.equal(f.delivered, 1);
  assert.equal(f.bounced_hard, 1);
  const c = await consent(xids[1]);
  assert.equal(c.email_consent, 'bounced');
  assert.equal(c.consent_history.find((x) => x.to === 'bounced').source, 'webhook:sg');
  // tampered body, another timestamp, no signature: 401, nothing kept
  r = await post('sg', body.replace('delivered', 'deferred'), h);
  assert.equal(r.status, 401);
  r = await post('sg', body, { ...h, 'x-twilio-email-event-webhook-timestamp': String(now + 1) });
  assert.equal(r.status, 401);
  r = await post('sg', body);
  assert.equal(r.status, 401);
  assert.equal(r.json.error.code, 'unauthorized');
  // verified but not SendGrid's format: 400, kept as a failed body
  const bad = '{"not":"an array"}';
  r = await post('sg', bad, { ...h, 'x-twilio-email-event-webhook-signature': sign(bad) });
  assert.equal(r.status, 400, r.text);
});

test('mailgun: HMAC of timestamp and token; a replayed token and a stale timestamp are 406', async () => {
  const body = (token, ts, sig) => JSON.stringify({
    signature: { timestamp: String(ts), token, signature: sig ?? createHmac('sha256', MG_KEY).update(`${ts}${token}`).digest('hex') },
    'event-data': { event: 'opened', id: 'e1', timestamp: ts, recipient: `${xids[2]}@example.com`,
      'user-variables': { engage_message_id: ids[2] } },
  });
  const now = Math.floor(Date.now() / 1000);
  const token = randomBytes(25).toString('hex');
  let r = await post('mg', body(token, now));
  assert.equal(r.status, 200, r.text);
  r = await post('mg', body(token, now)); // the same delivery again
  assert.equal(r.status, 406);
  r = await post('mg', body(randomBytes(25).toString('hex'), now - 3600));
  assert.equal(r.status, 406);
  r = await post('mg', body(randomBytes(25).toString('hex'), now, '00'.repeat(32)));
  assert.equal(r.status, 401);
  const f = await funnel();
  assert.equal(f.opened_unique, 1);
});

test('postmark: HTTP Basic credentials; wrong ones are 401', async () => {
  const rec = JSON.stringify({ RecordType: 'SpamComplaint', ID: 9, Type: 'SpamComplaint', TypeCode: 512, MessageID: 'pm-1',
    Email: `${xids[3]}@example.com`, BouncedAt: new Date().toISOString(), Metadata: { engage_message_id: ids[3] } });
  const basic = (u, p) => 'Basic ' + Buffer.from(`${u}:${p}`).toString('base64');
  let r = await post('pm', rec, { authorization: basic('hook', PM_PASS) });
  assert.equal(r.status, 200, r.text);
  r = await post('pm', rec, { authorization: basic('hook', 'wrong') });
  assert.equal(r.status, 401);
  r = await post('pm', rec);
  assert.equal(r.status, 401);
  await funnel();
  assert.equal((await consent(xids[3])).email_consent, 'complained');
});

// The SNS string to sign (docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html).
function snsSign(m) {
  const keys = m.Type === 'Notification' ? ['Message', 'MessageId', 'Subject', 'Timestamp', 'TopicArn', 'Type']
    : ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'];
  const s = keys.filter((k) => m[k] !== undefined).map((k) => `${k}\n${m[k]}\n`).join('');
  const key = readFileSync(join(data, 'sns.key'));
  return { ...m, SignatureVersion: '2', Signature: createSign('RSA-SHA256').update(s).sign(key).toString('base64'),
    SigningCertURL: `${certUrl}/cert.pem` };
}

test('ses: SNS signatures against the fetched certificate; the subscription is confirmed; other topics are 403', async () => {
  const ts = new Date().toISOString();
  let r = await post('ses', JSON.stringify(snsSign({ Type: 'SubscriptionConfirmation', MessageId: 'sub-1', Token: 'tok',
    TopicArn: TOPIC, Message: 'You have chosen to subscribe', SubscribeURL: `${certUrl}/confirm?t=1`, Timestamp: ts })),
    { 'content-type': 'text/plain; charset=UTF-8', 'x-amz-sns-message-type': 'SubscriptionConfirmation' });
  assert.equal(r.status, 200, r.text);
  await settled();
  assert.equal(subscribeHits, 1, 'the SubscribeURL was fetched');
  const message = JSON.stringify({ eventType: 'Delivery', mail: { timestamp: ts, messageId: 'ses-q-1', destination: [`${xids[4]}@example.com`],
    tags: { engage_message_id: [ids[4].replace('.', '_')] } }, delivery: { timestamp: ts, recipients: [`${xids[4]}@example.com`] } });
  const note = snsSign({ Type: 'Notification', MessageId: 'n-1', TopicArn: TOPIC, Message: message, Timestamp: ts });
  r = await post('ses', JSON.stringify(note), { 'content-type': 'text/plain; charset=UTF-8' });
  assert.equal(r.status, 200, r.text);
  const f = await funnel();
  assert.equal(f.delivered, 2, 'one from SendGrid, one from SES');
  // tampered, another topic: refused
  r = await post('ses', JSON.stringify({ ...note, Message: message.replace('Delivery', 'Bounce') }));
  assert.equal(r.status, 401);
  r = await post('ses', JSON.stringify(snsSign({ Type: 'Notification', MessageId: 'n-2', TopicArn: TOPIC + '-other', Message: message, Timestamp: ts })));
  assert.equal(r.status, 403);
  // the unknown name: 404
  r = await post('nope', '{}');
  assert.equal(r.status, 404);
});
