// tests/e2e/smtp_harness.test.mjs -- proves the SMTP harness (tests/e2e/smtp.mjs) with
// the curl command line as the client, before the product relies on it: every injected
// failure answers the reply it promises, accepted messages are recorded and parsed,
// sessions and attempts are counted, and AUTH works when asked for.
//
// curl runs asynchronously (execFile): the harness lives in this process, and a
// synchronous child would block the event loop that has to answer it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpData } from './lib.mjs';
import { startSmtp, presetAction } from './smtp.mjs';

let smtp, dir, eml;

// One message sent by curl: { code: curl's exit status, replies: ["250 …", …] the
// server's reply lines as curl printed them, stderr }.
function curl(url, rcpt, { file = eml, user, from = 'sender@example.com', next } = {}) {
  const args = ['-sSv', '--max-time', '20', url, '--mail-from', from, '--mail-rcpt', rcpt, '-T', file];
  if (user) args.push('--user', user);
  if (next) args.push('--next', url, '--mail-from', from, '--mail-rcpt', next, '-T', file);
  return new Promise((res) => execFile('curl', args, (err, stdout, stderr) => {
    const replies = stderr.split('\n').filter((l) => /^< \d{3}[ -]/.test(l)).map((l) => l.slice(2).trimEnd());
    res({ code: err ? err.code : 0, replies, stderr });
  }));
}

const MESSAGE = [
  'From: "Sender Name" <sender@example.com>',
  'To: someone@example.com',
  'Subject: =?UTF-8?B?SGVsbG8g4pyTIHdvcmxk?=',
  'Message-ID: <1.2.abcd@example.com>',
  'X-Engage-Message-Id: 1.2',
  'List-Unsubscribe: <http://127.0.0.1:1/u/TOKEN>',
  'List-Unsubscribe-Post: List-Unsubscribe=One-Click',
  'MIME-Version: 1.0',
  'Content-Type: multipart/alternative; boundary="b1"',
  '',
  '--b1',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'Hi there',
  '--b1',
  'Content-Type: text/html; charset=utf-8',
  '',
  '<p>Hi &lt;b&gt;</p>',
  '--b1--',
  '',
].join('\r\n');

before(async () => {
  dir = tmpData('engage-smtp-');
  eml = join(dir, 'm.eml');
  writeFileSync(eml, MESSAGE);
  smtp = await startSmtp();
});

after(async () => { await smtp.close(); });

test('an ordinary recipient is accepted with a queue id, recorded and parsed', async () => {
  const before = smtp.sessions;
  const r = await curl(smtp.url, 'alice@example.com');
  assert.equal(r.code, 0, r.stderr);
  const last = r.replies.at(-1);
  assert.match(last, /^250 2\.0\.0 Ok: queued as Q[0-9A-F]{8}$/);
  assert.equal(smtp.sessions, before + 1, 'one connection');
  const got = smtp.to('alice@example.com');
  assert.equal(got.length, 1);
  const m = got[0];
  assert.equal(last, `250 2.0.0 Ok: queued as ${m.queueId}`, 'the reply carries the recorded queue id');
  assert.deepEqual(m.envelope, { mailFrom: 'sender@example.com', rcptTo: ['alice@example.com'] });
  assert.equal(m.messageId, '1.2', 'X-Engage-Message-Id read from the raw header');
  assert.equal(m.raw.toString('utf8'), MESSAGE, 'the raw bytes as sent (dot-unstuffed, CRLF kept)');
  assert.equal(m.parsed.subject, 'Hello ✓ world', 'RFC 2047 decoded');
  assert.deepEqual(m.parsed.from, { address: 'sender@example.com', name: 'Sender Name' });
  assert.deepEqual(m.parsed.to, ['someone@example.com']);
  assert.equal(m.parsed.text.trim(), 'Hi there');
  assert.equal(m.parsed.html.trim(), '<p>Hi &lt;b&gt;</p>');
  assert.equal(m.parsed.header('List-Unsubscribe'), '<http://127.0.0.1:1/u/TOKEN>');
  assert.equal(m.parsed.header('list-unsubscribe-post'), 'List-Unsubscribe=One-Click');
  assert.equal(m.parsed.header('X-Engage-Message-Id'), '1.2');
  assert.equal(m.parsed.header('X-Nothing'), undefined);
  assert.equal(m.parsed.messageId, '<1.2.abcd@example.com>');
  assert.equal(smtp.attemptsFor('ALICE@example.com'), 1, 'attempts by address, case-insensitive');
});

// Each preset: the reply code and enhanced status curl reports, nothing recorded.
const REFUSED = [
  ['tempfail-451@example.com', 451, '4.3.0'],
  ['throttle-454@example.com', 454, '4.7.0'],
  ['full-452@example.com', 452, '4.2.2'],
  ['perm-550@example.com', 550, '5.1.1'],
  ['policy-554@example.com', 554, '5.7.1'],
  ['busy-421@example.com', 421, '4.4.5'],
  ['perm-550+c7@example.com', 550, '5.1.1'], // a suffix after '+' keeps the behaviour
  ['Policy-554.x@example.com', 554, '5.7.1'], // after '.', and in any case
];
for (const [rcpt, code, status] of REFUSED) {
  test(`${rcpt} is refused at RCPT with ${code} ${status}`, async () => {
    const n = smtp.messages.length, refused = smtp.refusals.length;
    const r = await curl(smtp.url, rcpt);
    assert.equal(r.code, 55, 'curl: RCPT failed');
    assert.match(r.stderr, new RegExp(`RCPT failed: ${code}`));
    const reply = r.replies.find((l) => l.startsWith(String(code)));
    assert.ok(reply, r.replies.join('\n'));
    assert.match(reply, new RegExp(`^${code} ${status.replace(/\./g, '\\.')} \\S`));
    if (code === 421) assert.ok(!r.replies.some((l) => l.startsWith('221')), 'a 421 closes without QUIT');
    else assert.equal(r.replies.at(-1).slice(0, 3), '221', 'the client could QUIT');
    assert.equal(smtp.messages.length, n, 'nothing recorded');
    assert.deepEqual(smtp.refusals.slice(refused), [{ rcpt, code, status, phase: 'rcpt' }]);
  });
}

test('drop@ loses the connection in the middle of DATA, with no reply', async () => {
  const n = smtp.messages.length;
  const r = await curl(smtp.url, 'drop@example.com');
  assert.equal(r.code, 56, 'curl: failure receiving data (the peer went away)');
  assert.equal(r.replies.at(-1).slice(0, 3), '354', 'DATA began; no final reply came');
  assert.equal(smtp.messages.length, n);
  assert.deepEqual(smtp.refusals.at(-1), { rcpt: 'drop@example.com', code: 0, status: '', phase: 'drop' });
});

test('flaky-2@ answers 451 twice, then accepts; attempts are counted', async () => {
  for (let i = 1; i <= 2; i++) {
    const r = await curl(smtp.url, 'flaky-2@example.com');
    assert.equal(r.code, 55);
    assert.ok(r.replies.some((l) => l.startsWith('451 4.3.0 ')), r.replies.join('\n'));
    assert.equal(smtp.attemptsFor('flaky-2@example.com'), i);
  }
  const r = await curl(smtp.url, 'flaky-2@example.com');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.replies.at(-1), /^250 2\.0\.0 Ok: queued as Q/);
  assert.equal(smtp.attemptsFor('flaky-2@example.com'), 3);
  assert.equal(smtp.to('flaky-2@example.com').length, 1);
});

test('sessions count connections: two messages on one reused connection are one session', async () => {
  const s0 = smtp.sessions;
  const r = await curl(smtp.url, 'reuse1@example.com', { next: 'reuse2@example.com' });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(smtp.sessions, s0 + 1, 'curl reused its connection for --next');
  const [a, b] = [smtp.to('reuse1@example.com')[0], smtp.to('reuse2@example.com')[0]];
  assert.equal(a.sessionId, b.sessionId);
  assert.equal(smtp.messagesPerSession.get(a.sessionId), 2);
  assert.notEqual(a.queueId, b.queueId, 'each message its own queue id');
  await curl(smtp.url, 'reuse3@example.com');
  assert.equal(smtp.sessions, s0 + 2);
  assert.deepEqual(smtp.countByRecipient().get('reuse1@example.com'), 1);
});

test('a behaviour function overrides the presets, including a refusal after DATA', async () => {
  const s = await startSmtp({
    behaviour: (addr, attempt) => {
      if (addr.startsWith('late')) return { at: 'data', code: 452, status: '4.3.1', text: 'Queue full' };
      if (addr.startsWith('perm-550')) return { accept: true }; // the override wins
      return undefined; // the presets for the rest
    },
  });
  try {
    let r = await curl(s.url, 'late@example.com');
    assert.notEqual(r.code, 0, 'curl failed (7.88 says 8, a weird server reply, for a refused DATA)');
    assert.ok(r.replies.includes('452 4.3.1 Queue full'), 'the final reply to DATA: ' + r.replies.join('\n'));
    assert.deepEqual(s.refusals, [{ rcpt: 'late@example.com', code: 452, status: '4.3.1', phase: 'data' }]);
    r = await curl(s.url, 'perm-550@example.com');
    assert.equal(r.code, 0, r.stderr);
    r = await curl(s.url, 'tempfail-451@example.com');
    assert.equal(r.code, 55, 'no override: the preset');
    s.setBehaviour(() => ({ code: 451, status: '4.3.0', text: 'everyone waits' }));
    r = await curl(s.url, 'anyone@example.com');
    assert.ok(r.replies.includes('451 4.3.0 everyone waits'), r.replies.join('\n'));
    assert.equal(s.messages.length, 1);
    assert.equal(s.sessions, 4);
  } finally {
    await s.close();
  }
  assert.deepEqual(presetAction('flaky-3@x', 3).code, 451);
  assert.deepEqual(presetAction('flaky-3@x', 4), { accept: true });
  assert.deepEqual(presetAction('someone@x', 1), { accept: true });
});

test('AUTH when asked: the right password is taken, a wrong one refused with 535', async () => {
  const s = await startSmtp({ auth: { username: 'engage', password: 's3cret pw' } });
  try {
    let r = await curl(s.url, 'a@example.com', { user: 'engage:s3cret pw' });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.replies.some((l) => l.startsWith('235')), r.replies.join('\n'));
    assert.equal(s.logins, 1);
    assert.equal(s.messages[0].user, 'engage');
    r = await curl(s.url, 'b@example.com', { user: 'engage:wrong' });
    assert.equal(r.code, 67, 'curl: login denied');
    assert.ok(r.replies.some((l) => l.startsWith('535 5.7.8')), r.replies.join('\n'));
    r = await curl(s.url, 'c@example.com');
    assert.equal(r.code, 55, 'no AUTH: refused at MAIL FROM');
    assert.ok(r.replies.some((l) => l.startsWith('530')), r.replies.join('\n'));
    assert.equal(s.authFailures, 1);
    assert.equal(s.messages.length, 1);
  } finally {
    await s.close();
  }
  // Without opts.auth the server offers no AUTH at all.
  const r = await curl(smtp.url, 'noauth@example.com');
  assert.ok(!r.replies.some((l) => /^250[ -]AUTH/.test(l)), r.replies.join('\n'));
  assert.ok(!r.replies.some((l) => /^250[ -]STARTTLS/.test(l)), 'no STARTTLS offered');
});

test('waitForMessages resolves once enough arrived, and times out naming what it saw', async () => {
  const n = smtp.messages.length;
  const waiting = smtp.waitForMessages(n + 2, 20000);
  await curl(smtp.url, 'w1@example.com');
  await curl(smtp.url, 'w2@example.com');
  const got = await waiting;
  assert.equal(got.length, n + 2);
  await assert.rejects(smtp.waitForMessages(n + 100, 300), /timed out after 300 ms waiting for \d+ messages: \d+ accepted/);
});
