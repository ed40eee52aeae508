// tests/e2e/abuse.test.mjs -- the server under abuse: slow clients, keyless floods,
// bodies that would amplify into memory, odd query strings. Every limit is in
// docs/runbook.md ("Limits and abuse"). Memory is measured on the release binary
// (RELEASE_BIN) from /proc and bounded; no timing is asserted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { engage, tmpData, startServer, api, apikey, procStatus, RELEASE_BIN } from './lib.mjs';

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

function serverWith(conf, opts = {}) {
  const data = tmpData();
  assert.equal(engage(['migrate'], { data }).code, 0);
  writeFileSync(join(data, 'engage.conf'), conf);
  return { data, start: () => startServer(data, opts) };
}

function portOf(srv) {
  return Number(new URL(srv.url).port);
}

// A raw connection from localAddress; records what the server sent and when it closed.
function rawConn(port, localAddress = '127.0.0.1') {
  const s = net.connect({ host: '127.0.0.1', port, localAddress });
  const st = { sock: s, data: '', closed: false, connected: false };
  s.on('connect', () => { st.connected = true; });
  s.on('data', (d) => { st.data += d.toString('latin1'); });
  s.on('error', () => {});
  s.on('close', () => { st.closed = true; });
  return st;
}

function metric(text, name) {
  const m = text.match(new RegExp('^' + name.replace(/[{}"]/g, (c) => '\\' + c) + ' (\\d+)', 'm'));
  return m ? Number(m[1]) : NaN;
}

test('slow clients: a per-address connection cap and a header deadline; /healthz answers throughout', async (t) => {
  const { start } = serverWith('[server]\nper_ip_connections = 20\nheader_timeout_s = 2\n', { bin: RELEASE_BIN });
  const srv = await start();
  try {
    const port = portOf(srv);
    const before = procStatus(srv.child.pid);
    // 300 clients from 127.0.0.2, each sending its headers a byte at a time.
    const line = 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(200);
    const conns = [];
    for (let i = 0; i < 300; i++) conns.push(rawConn(port, '127.0.0.2'));
    let pos = 0;
    const drip = setInterval(() => {
      for (const c of conns) if (!c.closed && c.connected) c.sock.write(line[pos % line.length]);
      pos++;
    }, 200);
    try {
      // Every client either connected and stayed, or was closed at once.
      for (let i = 0; i < 100 && conns.some((c) => !c.connected && !c.closed); i++) await sleep(50);
      await sleep(500);
      const open = conns.filter((c) => c.connected && !c.closed).length;
      assert.ok(open <= 20, `at most 20 connections from one address stay open (${open})`);
      // Another address is served at once, though 300 slow clients are at it.
      const h = await api(srv.url, '/healthz');
      assert.equal(h.status, 200);
      const during = procStatus(srv.child.pid);
      assert.ok(during.threads <= before.threads + 25, `threads ${before.threads} -> ${during.threads}`);
      // Past the 2 s header deadline every one of them is closed, with a 408.
      for (let i = 0; i < 60 && conns.some((c) => !c.closed); i++) await sleep(100);
      assert.equal(conns.filter((c) => !c.closed).length, 0, 'every slow client is closed');
      const timedOut = conns.filter((c) => c.data.startsWith('HTTP/1.1 408')).length;
      t.diagnostic(`${open} of 300 admitted, ${timedOut} closed with 408; threads ${before.threads} -> ${during.threads}`);
      assert.ok(timedOut >= 1 && timedOut <= 20, `the admitted ones got 408 (${timedOut})`);
    } finally {
      clearInterval(drip);
      for (const c of conns) c.sock.destroy();
    }
    await sleep(300);
    const after = procStatus(srv.child.pid);
    assert.ok(after.threads <= before.threads + 2, `threads back: ${before.threads} -> ${after.threads}`);
    const m = (await api(srv.url, '/metrics')).text;
    assert.ok(metric(m, 'engage_http_timeouts_total{phase="headers"}') >= 1, m);
    assert.ok(metric(m, 'engage_http_refused_total{limit="per_ip_connections"}') >= 250, m);
  } finally {
    await srv.stop();
  }
});

// A connection that has had one answer (a 200 for /healthz) and is kept alive.
async function keptAlive(srv) {
  const c = rawConn(portOf(srv));
  await new Promise((res) => c.sock.on('connect', res));
  c.sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  for (let i = 0; i < 50 && !c.data.includes('"ok"'); i++) await sleep(20);
  assert.match(c.data, /^HTTP\/1\.1 200/);
  return c;
}

test('a kept-alive connection that trickles its next request line is closed too', async () => {
  const { start } = serverWith('[server]\nheader_timeout_s = 1\nidle_timeout_s = 2\n');
  const srv = await start();
  try {
    const c = await keptAlive(srv);
    // A byte every 300 ms never lets the idle timeout fire; the deadline does.
    const drip = setInterval(() => { if (!c.closed) c.sock.write('G'); }, 300);
    for (let i = 0; i < 60 && !c.closed; i++) await sleep(100);
    clearInterval(drip);
    assert.ok(c.closed, 'closed within idle_timeout_s + header_timeout_s');
  } finally {
    await srv.stop();
  }
});

test('a kept-alive connection whose next request trickles its headers gets a 408', async () => {
  const { start } = serverWith('[server]\nheader_timeout_s = 1\nidle_timeout_s = 30\n');
  const srv = await start();
  try {
    const c = await keptAlive(srv);
    await sleep(1500); // a pause longer than the header deadline: allowed, it is idle time
    c.data = '';
    c.sock.write('GET /healthz HTTP/1.1\r\n'); // the request line, then a header byte at a time
    const drip = setInterval(() => { if (!c.closed) c.sock.write('X'); }, 200);
    for (let i = 0; i < 100 && !c.closed; i++) await sleep(100);
    clearInterval(drip);
    assert.ok(c.closed);
    assert.match(c.data, /^HTTP\/1\.1 408/, 'the header deadline runs from the request line');
  } finally {
    await srv.stop();
  }
});

test('pipelining: a connection is closed after 1,000 requests', async () => {
  const { start } = serverWith('');
  const srv = await start();
  try {
    const c = rawConn(portOf(srv));
    await new Promise((res) => c.sock.on('connect', res));
    // Exactly 1,000: more would sit unread when the server closes, and the reset that
    // then goes out may discard answers not yet read on this side.
    c.sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(1000));
    for (let i = 0; i < 300 && !c.closed; i++) await sleep(100);
    assert.ok(c.closed, 'closed by the server');
    const answers = c.data.split('HTTP/1.1 200').length - 1;
    assert.equal(answers, 1000);
    assert.equal(c.data.match(/^Connection: close/gmi)?.length, 1, 'the last answer says so');
    assert.ok(/Connection: close[^]*$/i.test(c.data.slice(c.data.lastIndexOf('HTTP/1.1 200'))), 'the last one');
  } finally {
    await srv.stop();
  }
});

test('a client that does not take its answers is closed at the write deadline', async () => {
  const { data, start } = serverWith('[server]\nbody_timeout_s = 2\n');
  const admin = apikey(data, 'admin');
  // 300 dead letters of 5 KB each: a page of them is about 1 MB.
  let csv = 'external_id,event,occurred_at,note\n';
  for (let i = 0; i < 300; i++) csv += `c${i},,2026-01-01T00:00:00Z,${'n'.repeat(5000)}\n`;
  writeFileSync(join(data, 'bad.csv'), csv);
  assert.equal(engage(['import', 'events', join(data, 'bad.csv')], { data }).code, 3);
  const srv = await start();
  try {
    const c = rawConn(portOf(srv));
    await new Promise((res) => c.sock.on('connect', res));
    c.sock.pause(); // reads nothing
    c.sock.write(`GET /api/v1/rejected?limit=1000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${admin}\r\n\r\n`.repeat(40));
    for (let i = 0; i < 300 && !c.closed; i++) {
      await sleep(100);
      if (!c.closed) c.sock.resume(), c.sock.pause(); // let 'close' through, keep the data unread
    }
    const m = (await api(srv.url, '/metrics')).text;
    assert.ok(metric(m, 'engage_http_timeouts_total{phase="write"}') >= 1, m);
  } finally {
    await srv.stop();
  }
});

test('tracking without a key: small body caps, and a per-address limit on requests in flight', async () => {
  const { data, start } = serverWith('[server]\nkeyless_per_ip = 4\n');
  const key = apikey(data, 'ingest');
  const srv = await start();
  const port = portOf(srv);
  const held = [];
  try {
    // One message is at most 32 KB, a batch 500 KB, whoever sends it.
    let r = await api(srv.url, '/v1/track', { method: 'POST', body: { writeKey: key, event: 'x', userId: 'u', properties: { p: 'a'.repeat(40000) } } });
    assert.equal(r.status, 413);
    assert.match(r.json.error.message, /32768 bytes \(this route's limit\)/);
    // Four keyless batches under way from 127.0.0.3: the fifth is refused at its headers.
    for (let i = 0; i < 4; i++) {
      const c = rawConn(port, '127.0.0.3');
      held.push(c);
      await new Promise((res) => c.sock.on('connect', res));
      c.sock.write('POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
                   'Content-Length: 400000\r\n\r\n{"batch":[');
    }
    await sleep(300);
    const fifth = rawConn(port, '127.0.0.3');
    await new Promise((res) => fifth.sock.on('connect', res));
    const body = JSON.stringify({ writeKey: key, batch: [{ type: 'track', event: 'x', userId: 'u' }] });
    fifth.sock.write(`POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    for (let i = 0; i < 50 && !fifth.data.includes('\r\n\r\n{'); i++) await sleep(20);
    assert.match(fifth.data, /^HTTP\/1\.1 429/);
    assert.match(fifth.data, /Retry-After: 1/i);
    assert.match(fifth.data, /send the write key in the Authorization header/);
    fifth.sock.destroy();
    // Another address, and any caller with the key in a header, are not held up.
    r = await api(srv.url, '/v1/track', { method: 'POST', body: { writeKey: key, event: 'x', userId: 'u1' } });
    assert.equal(r.status, 200, r.text);
    r = await api(srv.url, '/v1/track', { method: 'POST', body: { event: 'x', userId: 'u2' },
      headers: { authorization: 'Basic ' + Buffer.from(key + ':').toString('base64') } });
    assert.equal(r.status, 200, r.text);
    for (const c of held) c.sock.destroy();
    await sleep(300);
    const again = rawConn(port, '127.0.0.3');
    await new Promise((res) => again.sock.on('connect', res));
    again.sock.write(`POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    for (let i = 0; i < 100 && !again.closed; i++) await sleep(20);
    assert.match(again.data, /^HTTP\/1\.1 200/, 'the slots are given back when those requests end');
    const m = (await api(srv.url, '/metrics')).text;
    assert.ok(metric(m, 'engage_http_refused_total{limit="keyless"}') >= 1, m);
  } finally {
    for (const c of held) c.sock.destroy();
    await srv.stop();
  }
});

test('keyless bodies of 4 MB from 100 connections never reach memory', async (t) => {
  const { start } = serverWith('[server]\nper_ip_connections = 0\nheader_timeout_s = 120\n', { bin: RELEASE_BIN });
  const srv = await start();
  const port = portOf(srv);
  const conns = [];
  try {
    const before = procStatus(srv.child.pid);
    const chunk = Buffer.alloc(64 << 10, 0x20);
    const size = 4000000;
    // Each sends all but the last byte of a 4 MB batch and holds it there.
    await Promise.all(Array.from({ length: 100 }, (_, i) => new Promise((res) => {
      const c = rawConn(port, `127.0.1.${1 + (i % 50)}`);
      conns.push(c);
      c.sock.on('connect', async () => {
        c.sock.write(`POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`);
        let sent = 0;
        while (sent < size - 1 && !c.closed) {
          const n = Math.min(chunk.length, size - 1 - sent);
          if (!c.sock.write(chunk.subarray(0, n))) await new Promise((r) => c.sock.once('drain', r));
          sent += n;
        }
        res();
      });
      c.sock.on('close', res);
    })));
    await sleep(500);
    const during = procStatus(srv.child.pid);
    assert.ok(during.rss - before.rss < 60, `RSS ${before.rss.toFixed(0)} -> ${during.rss.toFixed(0)} MiB while 400 MB were held`);
    for (const c of conns) c.sock.end('x');
    for (let i = 0; i < 100 && conns.some((c) => !c.data.includes('\r\n\r\n')); i++) await sleep(50);
    const codes = new Set(conns.map((c) => c.data.slice(9, 12)));
    assert.deepEqual([...codes].sort(), ['413'].concat(codes.has('429') ? ['429'] : []).sort(),
      'refused: too large (or too many without a key)');
    const after = procStatus(srv.child.pid);
    t.diagnostic(`RSS ${before.rss.toFixed(1)} MiB, ${during.rss.toFixed(1)} while held, peak ${after.hwm.toFixed(1)}, after ${after.rss.toFixed(1)}`);
    assert.ok(after.hwm - before.rss < 80, `peak ${after.hwm.toFixed(0)} MiB from ${before.rss.toFixed(0)}`);
  } finally {
    for (const c of conns) c.sock.destroy();
    await srv.stop();
  }
});

test('a body of 1.3M empty objects stops at the item cap, 16 at once; memory back after', async (t) => {
  const { data, start } = serverWith('', { bin: RELEASE_BIN });
  const admin = apikey(data, 'admin');
  const srv = await start();
  try {
    const body = '{"items":[' + Array(1300000).fill('{}').join(',') + ']}';
    assert.ok(body.length > 3800000 && body.length < 4194304);
    const before = procStatus(srv.child.pid);
    const rs = await Promise.all(Array.from({ length: 16 }, () =>
      api(srv.url, '/api/v1/events', { method: 'POST', key: admin, body, headers: { 'content-type': 'application/json' } })));
    for (const r of rs) {
      assert.equal(r.status, 413, r.text);
      assert.equal(r.json.error.path, '/items');
      assert.match(r.json.error.message, /more than 2500 items/);
    }
    // The cap is the list's: a record's own long array is not a list of records.
    const one = await api(srv.url, '/api/v1/contacts', { method: 'POST', key: admin,
      body: { external_id: 'x1', attributes: { tags: Array(3000).fill(1) } } });
    assert.equal(one.status, 200, one.text);
    // Any route reading JSON counts values as it reads: a million numbers in one member.
    const wide = '{"a":[' + Array(1000000).fill('1').join(',') + ']}';
    const r = await api(srv.url, '/api/v1/contracts/x', { method: 'PUT', key: admin, body: wide });
    assert.equal(r.status, 413);
    assert.match(r.json.error.message, /more than 100000 values/);
    await sleep(200);
    const after = procStatus(srv.child.pid);
    t.diagnostic(`RSS ${before.rss.toFixed(1)} MiB, peak ${after.hwm.toFixed(1)}, after ${after.rss.toFixed(1)}`);
    assert.ok(after.hwm - before.rss < 100, `peak ${after.hwm.toFixed(0)} MiB from ${before.rss.toFixed(0)} (it was 4.2 GB)`);
    assert.ok(after.rss - before.rss < 20, `RSS after ${after.rss.toFixed(0)} MiB from ${before.rss.toFixed(0)}`);
  } finally {
    await srv.stop();
  }
});

test('query strings: unknown names on a route that takes none, %FF, a long multibyte name', async () => {
  const { data, start } = serverWith('');
  const admin = apikey(data, 'admin');
  const srv = await start();
  try {
    let r = await api(srv.url, '/api/v1/sync/sources?x=1', { key: admin });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.message, 'unknown query parameter "x" (this route takes none)');
    r = await api(srv.url, '/api/v1/contacts?limit=1&bogus=1', { key: admin });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.message, 'unknown query parameter "bogus" (this route takes limit, cursor, email)');
    r = await api(srv.url, '/api/v1/contacts?%FF=1', { key: admin });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.code, 'invalid_parameter');
    r = await api(srv.url, '/api/v1/contacts?email=%C3', { key: admin });
    assert.equal(r.status, 400, 'a value that is not UTF-8 either');
    r = await api(srv.url, '/api/v1/contacts?' + encodeURIComponent('é'.repeat(40)) + '=1', { key: admin });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error.message, /^unknown query parameter "(é){30}\.\.\."/);
  } finally {
    const x = await srv.stop();
    assert.equal(x.code, 0, 'clean exit (no ASan report): ' + srv.stderr());
  }
});

test('serve with the port taken says so at once, naming the address, before touching the store', async () => {
  const { start } = serverWith('');
  const srv = await start();
  try {
    const d = tmpData();
    const r = engage(['serve', '--listen', `127.0.0.1:${portOf(srv)}`], { data: join(d, 'fresh') });
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${portOf(srv)}: Address already in use`));
    assert.doesNotMatch(r.stderr, /Failed to bind/);
    assert.equal(engage(['audit', 'list'], { data: join(d, 'fresh') }).code, 1, 'no store was made');
  } finally {
    await srv.stop();
  }
});
