// tests/e2e/smtp_tls.test.mjs -- the smtp provider over TLS (issue 14): libcurl opens the
// connection (STARTTLS or implicit TLS, certificate checks, AUTH) and the dispatcher's
// pipelined mail goes through that TLS session. Real servers: the npm smtp-server
// harness (tests/e2e/smtp.mjs) with its own self-signed certificate.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { engage, tmpData, startServer, apikey } from './lib.mjs';
import { startSmtp } from './smtp.mjs';
import { writeConfig, client, sendCampaign, waitRun, ledger, runMessages } from './campaign_lib.mjs';

const PASSWORD = 'tls pw 7%x';
let data, srv, M, starttls, implicit, strict;

const range = (n, f) => Array.from({ length: n }, (_, i) => f(i + 1));
const CONTACTS = [
  ...range(40, (i) => ({ external_id: `st${i}`, email: `st${i}@example.com`, attributes: { grp: 'starttls' } })),
  ...range(10, (i) => ({ external_id: `im${i}`, email: `im${i}@example.com`, attributes: { grp: 'implicit' } })),
  ...range(2, (i) => ({ external_id: `vf${i}`, email: `vf${i}@example.com`, attributes: { grp: 'verify' } })),
];
const TEMPLATE = {
  subject: 'Hello {{ external_id }}',
  html: '<p>Hi {{ external_id }}</p>\n<p>.a line that starts with a dot</p><a href="{{ unsubscribe_url }}">u</a>',
  from_email: 'news@example.com',
};

before(async () => {
  process.env.ENGAGE_TEST_TLS_PW = PASSWORD; // the server and the CLI read the config
  data = tmpData();
  engage(['migrate'], { data });
  starttls = await startSmtp({ tls: 'starttls', auth: { username: 'engage', password: PASSWORD } });
  implicit = await startSmtp({ tls: 'implicit' });
  strict = await startSmtp({ tls: 'starttls' });
  const base = { rate_per_second: 1000, max_connections: 2, timeout_s: 10 };
  writeConfig(data, {
    retry: { max_attempts: 2, base_delay_s: 1, max_delay_s: 1 },
    providers: [
      { name: 'starttls', url: starttls.url, starttls: 'required', tls_verify: 'false', username: 'engage',
        password_env: 'ENGAGE_TEST_TLS_PW', ...base },
      { name: 'implicit', url: implicit.url, tls_verify: 'false', ...base },
      // certificate checks stay on: the harness's self-signed certificate is refused
      { name: 'strict', url: strict.url, starttls: 'required', ...base },
    ],
  });
  srv = await startServer(data);
  M = client(() => srv.url, apikey(data, 'marketer'));
  const r = await M.post('/api/v1/contacts', { items: CONTACTS });
  assert.equal(r.status, 200, r.text);
});

after(async () => {
  const r = await srv.stop();
  await Promise.all([starttls.close(), implicit.close(), strict.close()]);
  assert.equal(r.code, 0, 'clean exit on SIGTERM (and no leaks under ASan): ' + srv.stderr());
  assert.ok(!srv.stderr().includes(PASSWORD), 'the password is never logged');
});

// Proves: STARTTLS insisted on, AUTH with the password by reference, and every message
// of a run pipelined over the encrypted, authenticated connections: each arrives once,
// whole (a line starting with a dot comes back as written), on at most max_connections
// sessions.
test('STARTTLS with AUTH: every message arrives once, encrypted and authenticated, over reused connections', async () => {
  const { run } = await sendCampaign(M, { name: 'starttls', grp: 'starttls', template: TEMPLATE, extra: { provider: 'starttls' } });
  const done = await waitRun(M, run.id);
  assert.equal(done.counts.sent, 40, JSON.stringify(done));
  const msgs = runMessages(starttls, run.id);
  assert.equal(msgs.length, 40);
  assert.equal(new Set(msgs.map((m) => m.envelope.rcptTo[0])).size, 40, 'each recipient once');
  for (const m of msgs) {
    assert.equal(m.secure, true, 'over TLS');
    assert.equal(m.user, 'engage', 'authenticated');
    const who = m.envelope.rcptTo[0].split('@')[0];
    assert.equal(m.parsed.subject, `Hello ${who}`);
    assert.match(m.parsed.text, /^\.a line that starts with a dot$/m, 'dot-stuffing undone by the server');
  }
  assert.ok(starttls.sessions <= 2, `at most max_connections sessions: ${starttls.sessions}`);
  assert.equal(starttls.authFailures, 0);
  const rows = await ledger(M, run.id, 'sent');
  assert.ok(rows.every((r) => /^Q[0-9A-F]{8}$/.test(r.provider_message_id)), 'the queue id of each reply kept');
});

test('smtps:// (TLS from the first byte): the run arrives encrypted', async () => {
  const { run } = await sendCampaign(M, { name: 'implicit', grp: 'implicit', template: TEMPLATE, extra: { provider: 'implicit' } });
  const done = await waitRun(M, run.id);
  assert.equal(done.counts.sent, 10, JSON.stringify(done));
  const msgs = runMessages(implicit, run.id);
  assert.equal(msgs.length, 10);
  assert.ok(msgs.every((m) => m.secure));
});

// Proves "certificate verification on unless tls_verify = false": a self-signed
// certificate is refused, nothing is sent, and the rows say why (retry, then dead).
test('tls_verify on by default: a self-signed certificate is refused and nothing goes out', async () => {
  const { run } = await sendCampaign(M, { name: 'verify', grp: 'verify', template: TEMPLATE, extra: { provider: 'strict' } });
  const done = await waitRun(M, run.id, { timeoutMs: 60000 });
  assert.equal(done.counts.sent, 0);
  assert.equal(done.counts.dead, 2, JSON.stringify(done));
  assert.equal(runMessages(strict, run.id).length, 0);
  const rows = await ledger(M, run.id);
  for (const r of rows) assert.match(r.last_error, /^curl: .*(certificate|SSL)/i, r.last_error);
});
