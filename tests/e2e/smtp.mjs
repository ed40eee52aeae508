// tests/e2e/smtp.mjs -- a real SMTP server for the send tests (npm smtp-server), with
// failures injected per recipient, recording every accepted message parsed by npm
// mailparser.
//
// DESIGN: one startSmtp() per test file (or per test): it listens on a free loopback
// port, plain SMTP (no STARTTLS: the product's smtp:// URL then talks in clear, as on a
// loopback relay), AUTH off unless opts.auth asks for it. What the server answers for a
// recipient is decided at RCPT TO (and, for a drop, during DATA) from the recipient's
// local part, so one audience can hold every failure class at once:
//
//   tempfail-451@…  451 4.3.0 at RCPT          throttle-454@…  454 4.7.0 at RCPT
//   full-452@…      452 4.2.2 at RCPT          busy-421@…      421 4.4.5 at RCPT, closes
//   perm-550@…      550 5.1.1 (no such user)   policy-554@…    554 5.7.1 at RCPT
//   drop@…          the socket is destroyed in the middle of DATA (no reply)
//   flaky-N@…       451 4.3.0 for the first N attempts, then accepted
//   anything else   accepted: 250 2.0.0 Ok: queued as Q<hex>
//
// A local part may carry a suffix after '+' or '.' (perm-550+c7@x, drop.3@x) so many
// recipients share a behaviour. opts.behaviour(address, attempt, session) (or
// setBehaviour() later) overrides it: return an action -- {code, status, text} refuses
// (at RCPT, or after the message with at: 'data'), {drop: true}, {accept: true,
// delayMs?} -- or undefined for the default. attempt counts this recipient's RCPT TO
// commands, 1 for the first. A refused or dropped message is not recorded; every
// refusal is kept in refusals.
//
// smtp-server writes "CODE TEXT" for an error (enhanced codes are off: we write them
// into the text ourselves, "451 4.3.0 …") and "250 MESSAGE" for the string the onData
// callback passes, which is how the queue id gets into the final reply.
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';

const PRESETS = [
  [/^tempfail-451$/, () => ({ code: 451, status: '4.3.0', text: 'Temporary local problem, try again' })],
  [/^throttle-454$/, () => ({ code: 454, status: '4.7.0', text: 'Too many messages, slow down' })],
  [/^busy-421$/, () => ({ code: 421, status: '4.4.5', text: 'Server busy, closing connection' })],
  [/^full-452$/, () => ({ code: 452, status: '4.2.2', text: 'Mailbox full' })],
  [/^perm-550$/, () => ({ code: 550, status: '5.1.1', text: 'No such user here' })],
  [/^policy-554$/, () => ({ code: 554, status: '5.7.1', text: 'Rejected by policy' })],
  [/^drop$/, () => ({ drop: true })],
  [/^flaky-(\d+)$/, (m, attempt) =>
    attempt <= Number(m[1]) ? { code: 451, status: '4.3.0', text: `Flaky, attempt ${attempt} of ${m[1]}` } : { accept: true }],
];

// The action of the built-in conventions for address at this attempt.
export function presetAction(address, attempt) {
  const local = String(address).split('@')[0].toLowerCase().split(/[+.]/)[0];
  for (const [re, fn] of PRESETS) {
    const m = local.match(re);
    if (m) return fn(m, attempt);
  }
  return { accept: true };
}

function smtpError(a) {
  const err = new Error(`${a.status ? a.status + ' ' : ''}${a.text || 'Refused'}`);
  err.responseCode = a.code;
  return err;
}

// The raw header lines of a parsed message: lower-case name -> [value...] (unfolded, as
// written after "Name: "), so a test compares exactly what the product wrote.
function rawHeaders(headerLines) {
  const h = {};
  for (const { key, line } of headerLines) {
    const v = line.slice(line.indexOf(':') + 1).replace(/\r?\n[ \t]/g, ' ').trim();
    (h[key] ||= []).push(v);
  }
  return h;
}

// Starts the server. opts: tls ('starttls': STARTTLS offered; 'implicit': TLS from the
// first byte, smtps://; either with smtp-server's own self-signed certificate for
// "localhost"), auth {username, password} (AUTH PLAIN/LOGIN required then),
// behaviour (above), parse (default true: mailparser on every message; false keeps
// only the envelope and the X-Engage-Message-Id header, for big runs), keepRaw
// (default true). Resolves to the harness (see the return below).
export async function startSmtp(opts = {}) {
  const parse = opts.parse !== false;
  const keepRaw = opts.keepRaw !== false;
  let behaviour = opts.behaviour || null;
  const messages = [];
  const refusals = [];
  const attempts = new Map(); // lower-case address -> RCPT TO count
  const perSession = new Map(); // session id -> accepted messages
  const waiters = new Set();
  let sessions = 0, logins = 0, authFailures = 0, queueSeq = 0, pendingParses = 0;

  const notify = () => {
    for (const w of waiters) if (w.check()) { waiters.delete(w); w.resolve(); }
  };
  const decide = (address, session) => {
    const key = address.toLowerCase();
    const attempt = attempts.get(key) || 0;
    return (behaviour && behaviour(address, attempt, session)) || presetAction(address, attempt);
  };

  const server = new SMTPServer({
    logger: false,
    banner: 'engage test harness',
    secure: opts.tls === 'implicit',
    disabledCommands: [...(opts.tls === 'starttls' ? [] : ['STARTTLS']), ...(opts.auth ? [] : ['AUTH'])],
    authOptional: !opts.auth,
    allowInsecureAuth: true,
    hideENHANCEDSTATUSCODES: true,
    closeTimeout: 200,
    onConnect(session, cb) { sessions++; cb(); },
    onAuth(auth, session, cb) {
      if (opts.auth && auth.username === opts.auth.username && auth.password === opts.auth.password) {
        logins++;
        return cb(null, { user: auth.username });
      }
      authFailures++;
      const err = new Error('5.7.8 Authentication credentials invalid');
      err.responseCode = 535;
      return cb(err);
    },
    onRcptTo(address, session, cb) {
      const key = address.address.toLowerCase();
      attempts.set(key, (attempts.get(key) || 0) + 1);
      const a = decide(address.address, session);
      if (a.code && a.at !== 'data') {
        refusals.push({ rcpt: address.address, code: a.code, status: a.status || '', phase: 'rcpt' });
        notify();
        return cb(smtpError(a));
      }
      cb();
    },
    onData(stream, session, cb) {
      const rcpts = session.envelope.rcptTo.map((r) => r.address);
      const actions = rcpts.map((r) => decide(r, session));
      const chunks = [];
      let dropped = false;
      stream.on('data', (c) => {
        chunks.push(c);
        if (!dropped && actions.some((a) => a.drop)) {
          // Mid-DATA: the client has sent part of the message and waits for none of it.
          dropped = true;
          for (const r of rcpts) refusals.push({ rcpt: r, code: 0, status: '', phase: 'drop' });
          notify();
          const conn = [...server.connections].find((c2) => c2.id === session.id);
          if (conn && conn._socket) conn._socket.destroy();
        }
      });
      stream.on('end', async () => {
        if (dropped) return;
        const refuse = actions.find((a) => a.code);
        if (refuse) {
          for (const r of rcpts) refusals.push({ rcpt: r, code: refuse.code, status: refuse.status || '', phase: 'data' });
          notify();
          return cb(smtpError(refuse));
        }
        const raw = Buffer.concat(chunks);
        const queueId = 'Q' + (++queueSeq).toString(16).toUpperCase().padStart(8, '0');
        const delay = Math.max(0, ...actions.map((a) => a.delayMs || 0), opts.delayMs || 0);
        if (delay) await new Promise((res) => setTimeout(res, delay));
        const msg = {
          envelope: { mailFrom: session.envelope.mailFrom.address, rcptTo: rcpts },
          queueId,
          sessionId: session.id,
          user: session.user || null,
          secure: Boolean(session.secure), // the message came over TLS
          raw: keepRaw ? raw : null,
          size: raw.length,
          messageId: null, // X-Engage-Message-Id
          parsed: null,
        };
        const head = raw.subarray(0, Math.max(0, raw.indexOf('\r\n\r\n'))).toString('utf8');
        const m = head.match(/^X-Engage-Message-Id:[ \t]*(.*(?:\r\n[ \t].*)*)/im);
        if (m) msg.messageId = m[1].replace(/\r\n[ \t]/g, ' ').trim();
        if (parse) {
          pendingParses++;
          try {
            const p = await simpleParser(raw, { skipImageLinks: true });
            msg.parsed = {
              subject: p.subject,
              from: p.from ? p.from.value[0] : null,
              to: p.to ? p.to.value.map((v) => v.address) : [],
              html: p.html || null,
              text: p.text || null,
              messageId: p.messageId || null,
              date: p.date || null,
              headers: p.headers, // mailparser's Map (some values structured)
              raw: rawHeaders(p.headerLines), // name -> [value...] as written
              header(name) { const v = this.raw[name.toLowerCase()]; return v ? v[0] : undefined; },
            };
          } finally {
            pendingParses--;
          }
        }
        messages.push(msg);
        perSession.set(session.id, (perSession.get(session.id) || 0) + 1);
        notify();
        cb(null, `2.0.0 Ok: queued as ${queueId}`);
      });
    },
  });
  server.on('error', () => { /* a client that vanished (drop, a killed engage): not ours to fail */ });

  await new Promise((res, rej) => {
    server.listen(0, '127.0.0.1', res);
    server.server.once('error', rej);
  });
  const port = server.server.address().port;

  const harness = {
    port,
    url: `${opts.tls === 'implicit' ? 'smtps' : 'smtp'}://127.0.0.1:${port}`,
    messages,
    refusals,
    attempts, // Map: lower-case address -> RCPT TO commands seen
    get sessions() { return sessions; },
    get logins() { return logins; },
    get authFailures() { return authFailures; },
    messagesPerSession: perSession,
    setBehaviour(fn) { behaviour = fn; },
    attemptsFor(address) { return attempts.get(String(address).toLowerCase()) || 0; },
    // Accepted messages whose envelope names address.
    to(address) {
      const a = String(address).toLowerCase();
      return messages.filter((m) => m.envelope.rcptTo.some((r) => r.toLowerCase() === a));
    },
    // Accepted messages per recipient address (lower case): how many times each got one.
    countByRecipient() {
      const c = new Map();
      for (const m of messages) for (const r of m.envelope.rcptTo) c.set(r.toLowerCase(), (c.get(r.toLowerCase()) || 0) + 1);
      return c;
    },
    // Resolves once pred() holds (checked at each message or refusal, and every 50 ms);
    // rejects after timeoutMs with what the harness had seen.
    waitUntil(pred, timeoutMs = 30000, what = 'condition') {
      if (pred()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const w = { check: pred, resolve: () => { clearTimeout(w.timer); clearInterval(w.poll); resolve(); } };
        w.timer = setTimeout(() => {
          waiters.delete(w);
          clearInterval(w.poll);
          reject(new Error(`smtp harness: timed out after ${timeoutMs} ms waiting for ${what}: ` +
            `${messages.length} accepted, ${refusals.length} refused, ${sessions} sessions`));
        }, timeoutMs);
        w.poll = setInterval(() => { if (pred()) { waiters.delete(w); w.resolve(); } }, 50);
        waiters.add(w);
      });
    },
    // Resolves with the messages once at least n were accepted.
    async waitForMessages(n, timeoutMs = 30000) {
      await harness.waitUntil(() => messages.length >= n, timeoutMs, `${n} messages`);
      return messages;
    },
    // Forgets what was recorded (attempt counts included); the server stays up.
    reset() {
      messages.length = 0;
      refusals.length = 0;
      attempts.clear();
      perSession.clear();
    },
    close() {
      return new Promise((res) => {
        for (const c of server.connections) if (c._socket) c._socket.destroy();
        server.close(() => res());
      });
    },
    get pendingParses() { return pendingParses; },
  };
  return harness;
}
