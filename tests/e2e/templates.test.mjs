// tests/e2e/templates.test.mjs -- templates over HTTP: create, read, page, update making
// versions, delete; validation as 422 with a pointer per problem (template syntax
// errors with line and column); unknown keys and parameters; roles; audit rows; preview
// for a contact (escaping per part, the subject's CR/LF rule, the unsubscribe footer) and
// for a segment's members (the missing count); a test-send to the default outbox, and
// through an smtp provider to Postfix's smtp-sink (refused while [server] public_url is
// empty); delete refused while a campaign that has not ended uses the template.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { join } from 'node:path';
import { engage, tmpData, startServer, api, apikey, sql } from './lib.mjs';

let data, srv, admin, analyst, marketer;

const base = {
  name: 'welcome',
  subject: 'Hi {{ first_name | default: "there" }}',
  html: '<html><body><p>Hello {{ first_name }} from {{ city }}</p></body></html>',
  from_email: 'news@example.com',
  from_name: 'Example News',
};

const post = (path, body, key = marketer) => api(srv.url, path, { method: 'POST', key, body });
const put = (path, body, key = marketer) => api(srv.url, path, { method: 'PUT', key, body });
const del = (path, key = marketer) => api(srv.url, path, { method: 'DELETE', key });
const get = (path, key = analyst) => api(srv.url, path, { key });
const audit = async (action) =>
  (await api(srv.url, `/api/v1/audit?action=${action}&limit=1000`, { key: admin })).json.items;

async function create(over = {}) {
  const r = await post('/api/v1/templates', { ...base, ...over });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

before(async () => {
  data = tmpData();
  engage(['migrate'], { data });
  admin = apikey(data, 'admin');
  analyst = apikey(data, 'analyst');
  marketer = apikey(data, 'marketer');
  srv = await startServer(data);
  // Contacts: one with markup and a CR/LF in its values, members of a segment on city.
  const items = [
    { external_id: 'evil', email: 'evil@example.com',
      attributes: { first_name: '<b>Eve</b> & "co"', city: 'Oslo', note: 'Hi\r\nBcc: x@y.z' } },
    { external_id: 'm1', email: 'm1@example.com', attributes: { first_name: 'Ann', city: 'Pune' } },
    { external_id: 'm2', email: 'm2@example.com', attributes: { city: 'Pune' } },
    { external_id: 'm3', email: 'm3@example.com', attributes: { first_name: '', city: 'Pune' } },
    { external_id: 'm4', email: 'm4@example.com', attributes: { first_name: 'Dan', city: 'Pune' } },
    { external_id: 'gone', email: 'gone@example.com', attributes: { city: 'Lima' } },
  ];
  const r = await post('/api/v1/contacts', { items });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.accepted, items.length, r.text);
  assert.equal((await del('/api/v1/contacts/gone')).status, 200);
});

after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0, 'clean exit on SIGTERM (and no leaks under ASan): ' + srv.stderr());
});

test('create, get, list with paging; roles; audit', async () => {
  let r = await post('/api/v1/templates', { ...base, name: 'by-analyst' }, analyst);
  assert.equal(r.status, 403, 'analysts read only');
  const t = await create({ name: 'crud-1', reply_to: 'reply@example.com' });
  assert.equal(t.version, 1);
  assert.equal(t.name, 'crud-1');
  assert.equal(t.subject, base.subject);
  assert.equal(t.html, base.html);
  assert.equal(t.text, null, 'no text: derived from the HTML at render');
  assert.equal(t.from_email, 'news@example.com');
  assert.equal(t.from_name, 'Example News');
  assert.equal(t.reply_to, 'reply@example.com');
  assert.match(t.created_by, /^apikey:\d+:marketer$/);
  assert.match(t.created_at, /^\d{4}-\d\d-\d\dT/);
  r = await get(`/api/v1/templates/${t.id}`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, t);
  r = await post('/api/v1/templates', { ...base, name: 'crud-1' });
  assert.equal(r.status, 409);
  assert.equal(r.json.error.path, '/name');
  const t2 = await create({ name: 'crud-2', text: 'Plain {{ first_name }}' });
  const t3 = await create({ name: 'crud-3' });
  r = await get('/api/v1/templates?limit=2');
  assert.equal(r.status, 200);
  assert.equal(r.json.items.length, 2);
  assert.ok(r.json.next_cursor);
  const seen = r.json.items.map((x) => x.id);
  r = await get(`/api/v1/templates?limit=2&cursor=${r.json.next_cursor}`);
  seen.push(...r.json.items.map((x) => x.id));
  while (r.json.next_cursor) {
    r = await get(`/api/v1/templates?limit=2&cursor=${r.json.next_cursor}`);
    seen.push(...r.json.items.map((x) => x.id));
  }
  for (const id of [t.id, t2.id, t3.id]) assert.ok(seen.includes(id), `listed: ${id}`);
  assert.deepEqual(seen, [...seen].sort((a, b) => a - b), 'by id');
  const rows = await audit('template.create');
  const row = rows.find((a) => a.entity_id === String(t.id));
  assert.ok(row, 'template.create is audited');
  assert.equal(row.entity, 'template');
  assert.equal(row.after.name, 'crud-1');
});

test('update: a body change makes a version, a rename does not; versions listed; delete', async () => {
  const t = await create({ name: 'ver-1' });
  let r = await put(`/api/v1/templates/${t.id}`, { name: 'ver-1-renamed' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.version, 1, 'a rename alone keeps the version');
  assert.equal(r.json.name, 'ver-1-renamed');
  r = await put(`/api/v1/templates/${t.id}`, { subject: 'New subject', text: 'Plain' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.version, 2);
  assert.equal(r.json.subject, 'New subject');
  assert.equal(r.json.text, 'Plain');
  assert.equal(r.json.html, base.html, 'absent keys keep their values');
  r = await put(`/api/v1/templates/${t.id}`, { text: null });
  assert.equal(r.json.version, 3);
  assert.equal(r.json.text, null);
  await create({ name: 'ver-other' });
  r = await put(`/api/v1/templates/${t.id}`, { name: 'ver-other' });
  assert.equal(r.status, 409, 'a rename onto a live name');
  assert.equal(r.json.error.path, '/name');
  r = await put(`/api/v1/templates/${t.id}`, { subject: 'New subject' }, analyst);
  assert.equal(r.status, 403);
  r = await get(`/api/v1/templates/${t.id}/versions`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.items.map((v) => v.version), [3, 2, 1]);
  assert.equal(r.json.items[1].text, 'Plain');
  assert.equal(r.json.items[2].subject, base.subject);
  assert.match(r.json.items[0].created_by, /marketer/);
  const updates = (await audit('template.update')).filter((a) => a.entity_id === String(t.id));
  assert.equal(updates.length, 3, 'each update is audited');
  assert.equal(updates[2].before.name, 'ver-1');
  assert.equal(updates[2].after.name, 'ver-1-renamed');
  r = await del(`/api/v1/templates/${t.id}`, analyst);
  assert.equal(r.status, 403);
  r = await del(`/api/v1/templates/${t.id}`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { id: t.id, deleted: true });
  assert.equal((await get(`/api/v1/templates/${t.id}`)).status, 404);
  assert.equal((await get(`/api/v1/templates/${t.id}/versions`)).status, 404);
  assert.equal((await put(`/api/v1/templates/${t.id}`, { name: 'x' })).status, 404);
  assert.equal((await del(`/api/v1/templates/${t.id}`)).status, 404);
  assert.equal((await get('/api/v1/templates/abc')).status, 404);
  const dels = (await audit('template.delete')).filter((a) => a.entity_id === String(t.id));
  assert.equal(dels.length, 1);
  // Its name is free again.
  await create({ name: 'ver-1-renamed' });
});

test('422: every bad field with its pointer; unknown keys; syntax errors with line and column', async () => {
  let r = await post('/api/v1/templates', {
    name: '', subject: '', html: 7, text: '', from_email: 'News <news@example.com>',
    from_name: 'a\r\nBcc: x', reply_to: 'two@@example.com', colour: 'red',
  });
  assert.equal(r.status, 422, r.text);
  assert.equal(r.json.error.code, 'invalid_template');
  const paths = r.json.error.details.map((d) => d.path).sort();
  assert.deepEqual(paths, ['/colour', '/from_email', '/from_name', '/html', '/name', '/reply_to',
    '/subject', '/text']);
  r = await post('/api/v1/templates', {});
  assert.equal(r.status, 422);
  assert.deepEqual(r.json.error.details.map((d) => d.path).sort(),
    ['/from_email', '/html', '/name', '/subject']);
  for (const bad of ['a b@example.com', 'nobody', '@example.com', 'x@', 'x@a\r\nb', 'x@y>']) {
    r = await post('/api/v1/templates', { ...base, name: 'addr', from_email: bad });
    assert.equal(r.status, 422, bad);
    assert.deepEqual(r.json.error.details.map((d) => d.path), ['/from_email'], bad);
  }
  r = await post('/api/v1/templates', { ...base, name: 'x'.repeat(129) });
  assert.deepEqual(r.json.error.details.map((d) => d.path), ['/name']);
  r = await post('/api/v1/templates', { ...base, name: 'é'.repeat(128) });
  assert.equal(r.status, 201, '128 characters (256 bytes) is fine: ' + r.text);
  r = await post('/api/v1/templates', { ...base, name: 'long-subject', subject: 's'.repeat(999) });
  assert.deepEqual(r.json.error.details.map((d) => d.path), ['/subject']);
  // Syntax errors: every part at once, line and column in the message.
  r = await post('/api/v1/templates', { ...base, name: 'syntax',
    subject: 'Hi {{ name', html: '<p>\n    {{ first_name | upper }}</p>', text: '{{ x | default }}' });
  assert.equal(r.status, 422);
  const byPath = Object.fromEntries(r.json.error.details.map((d) => [d.path, d.message]));
  assert.equal(byPath['/subject'], "line 1, column 4: '{{' is not closed by '}}'");
  assert.equal(byPath['/html'],
    "line 2, column 21: unknown filter 'upper' (filters: default, upcase, downcase, capitalize)");
  assert.match(byPath['/text'], /^line 1, column 16: filter 'default' needs an argument/);
  // And on update, with the stored parts compiled alongside.
  const t = await create({ name: 'syntax-update' });
  r = await put(`/api/v1/templates/${t.id}`, { html: '<p>\n    {{ }}</p>', bogus: 1 });
  assert.equal(r.status, 422);
  assert.deepEqual(r.json.error.details.map((d) => d.path).sort(), ['/bogus', '/html']);
  assert.match(r.json.error.details.find((d) => d.path === '/html').message, /^line 2, column 5: empty token/);
  assert.equal((await get(`/api/v1/templates/${t.id}`)).json.version, 1, 'nothing saved');
  // Bodies and parameters.
  r = await post('/api/v1/templates', [1]);
  assert.equal(r.status, 422);
  r = await post('/api/v1/templates', '{"name": ');
  assert.equal(r.status, 400);
  r = await get('/api/v1/templates?colour=red');
  assert.equal(r.status, 400);
  assert.equal(r.json.error.path, 'colour');
  r = await get(`/api/v1/templates/${t.id}?x=1`);
  assert.equal(r.status, 400);
});

test('preview for a contact: escaping per part, subject CR/LF, footer, 404s', async () => {
  const t = await create({ name: 'pv-contact', subject: 'Note: {{ note }} for {{ first_name }}',
    html: '<html><body><p>Hi {{ first_name }}</p></body></html>' });
  let r = await post(`/api/v1/templates/${t.id}/preview`, { external_id: 'evil' }, analyst);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.subject, 'Note: Hi  Bcc: x@y.z for <b>Eve</b> & "co"');
  assert.match(r.json.html, /<p>Hi &lt;b&gt;Eve&lt;\/b&gt; &amp; &quot;co&quot;<\/p>/);
  assert.equal(r.json.footer_added, true);
  const link = r.json.html.match(/<a href="([^"]+)">Unsubscribe<\/a>/);
  assert.ok(link, 'a footer with the link: ' + r.json.html);
  assert.match(link[1], /^http:\/\/127\.0\.0\.1:\d+\/u\/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  assert.ok(r.json.html.indexOf(link[0]) < r.json.html.indexOf('</body>'), 'before </body>');
  assert.match(r.json.text, /^Hi <b>Eve<\/b> & "co"\n/, 'raw in the text part');
  assert.ok(r.json.text.includes('Unsubscribe: ' + link[1]), 'and in the text part');
  // A template that shows the link itself gets no footer.
  const t2 = await create({ name: 'pv-link', html: '<p>{{ first_name }}</p><a href="{{ unsubscribe_url }}">bye</a>' });
  r = await post(`/api/v1/templates/${t2.id}/preview`, { external_id: 'm1' }, analyst);
  assert.equal(r.status, 200);
  assert.equal(r.json.footer_added, false);
  assert.match(r.json.html, /^<p>Ann<\/p><a href="http:\/\/127\.0\.0\.1:\d+\/u\/[^"]+">bye<\/a>$/);
  assert.equal(r.json.subject, 'Hi Ann');
  // Unknown and deleted contacts, bad bodies.
  r = await post(`/api/v1/templates/${t.id}/preview`, { external_id: 'nobody' });
  assert.equal(r.status, 404);
  r = await post(`/api/v1/templates/${t.id}/preview`, { external_id: 'gone' });
  assert.equal(r.status, 404, 'a deleted contact');
  r = await post(`/api/v1/templates/${t.id}/preview`, { external_id: 'm1', segment_id: 1, x: 1 });
  assert.equal(r.status, 422);
  assert.deepEqual(r.json.error.details.map((d) => d.path).sort(), ['', '/x']);
  r = await post(`/api/v1/templates/${t.id}/preview`, {});
  assert.equal(r.status, 422);
  r = await post('/api/v1/templates/999999/preview', { external_id: 'm1' });
  assert.equal(r.status, 404);
});

test('preview for a segment: a rendered sample and the missing count', async () => {
  let r = await post('/api/v1/segments', { name: 'pune',
    rules: { op: 'AND', rules: [{ type: 'attribute', field: 'city', op: 'eq', value: 'Pune' }] } });
  assert.equal(r.status, 201, r.text);
  const sid = r.json.id;
  const t = await create({ name: 'pv-segment', subject: 'Hi {{ first_name | default: "there" }}',
    html: '<p>{{ first_name }} in {{ city }}</p>' });
  r = await post(`/api/v1/templates/${t.id}/preview`, { segment_id: sid });
  assert.equal(r.status, 409, 'never evaluated: said so');
  assert.match(r.json.error.message, /evaluate it first/);
  r = await post(`/api/v1/segments/${sid}/evaluate`, undefined);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.member_count, 4);
  r = await post(`/api/v1/templates/${t.id}/preview`, { segment_id: sid }, analyst);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.members, 4);
  assert.equal(r.json.missing, 2, 'm2 has no first_name, m3 an empty one (the subject has a default)');
  assert.deepEqual(r.json.sample.map((s) => s.external_id), ['m1', 'm2', 'm3', 'm4']);
  assert.deepEqual(r.json.sample.map((s) => s.subject), ['Hi Ann', 'Hi there', 'Hi there', 'Hi Dan']);
  assert.match(r.json.sample[0].html, /^<p>Ann in Pune<\/p>/);
  assert.equal(r.json.footer_added, true);
  r = await post(`/api/v1/templates/${t.id}/preview`, { segment_id: 999999 });
  assert.equal(r.status, 404);
  r = await post(`/api/v1/templates/${t.id}/preview`, { segment_id: 'pune' });
  assert.equal(r.status, 422);
  assert.deepEqual(r.json.error.details.map((d) => d.path), ['/segment_id']);
});

test('test-send: one real message into the default outbox; validation; audit', async () => {
  const t = await create({ name: 'ts', subject: 'Hello {{ first_name | default: "you" }} ✓' });
  let r = await post(`/api/v1/templates/${t.id}/test-send`, { to: 'me@example.com' }, analyst);
  assert.equal(r.status, 403);
  r = await post(`/api/v1/templates/${t.id}/test-send`, { to: 'not an address', provider: 'nope', x: 1 });
  assert.equal(r.status, 422, r.text);
  assert.deepEqual(r.json.error.details.map((d) => d.path).sort(), ['/provider', '/to', '/x']);
  assert.match(r.json.error.details.find((d) => d.path === '/provider').message, /providers: outbox/);
  r = await post(`/api/v1/templates/${t.id}/test-send`, { to: 'me@example.com', external_id: 'nobody' });
  assert.equal(r.status, 404);
  r = await post(`/api/v1/templates/${t.id}/test-send`, { to: 'me@example.com', external_id: 'm1' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.outcome, 'sent');
  assert.equal(r.json.provider, 'outbox');
  const dir = join(data, 'outbox');
  assert.ok(existsSync(dir), 'DATA/outbox/ exists');
  const files = readdirSync(dir).filter((f) => f.endsWith('.eml'));
  assert.equal(files.length, 1, files.join(','));
  const eml = readFileSync(join(dir, files[0]), 'utf8');
  assert.match(eml, /^Subject: .*\r?$/m);
  assert.ok(eml.includes('=?') || eml.includes('Hello Ann'), 'the subject, encoded or not');
  assert.match(eml, /^To: .*me@example\.com/m);
  assert.match(eml, /^List-Unsubscribe: <http:\/\/127\.0\.0\.1:\d+\/u\/[^>]+>/m);
  assert.match(eml, /^X-Engage-Message-Id: /m);
  // The subject decoded is the rendered one.
  const subj = eml.match(/^Subject: (.*(?:\r?\n[ \t].*)*)/m)[1];
  const decoded = subj.replace(/\r?\n[ \t]/g, ' ').replace(/=\?UTF-8\?([BQ])\?([^?]*)\?=\s*/gi, (_, enc, s) =>
    enc.toUpperCase() === 'B' ? Buffer.from(s, 'base64').toString('utf8')
      : Buffer.from(s.replace(/_/g, ' ').replace(/=([0-9A-F]{2})/gi, (m, h) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8'));
  assert.equal(decoded.trim(), 'Hello Ann ✓');
  // Without a contact: no attributes, the defaults apply.
  r = await post(`/api/v1/templates/${t.id}/test-send`, { to: 'me@example.com' });
  assert.equal(r.status, 200, r.text);
  assert.equal(readdirSync(dir).filter((f) => f.endsWith('.eml')).length, 2, 'a second file');
  const sends = (await audit('template.test_send')).filter((a) => a.entity_id === String(t.id));
  assert.equal(sends.length, 2);
  assert.equal(sends[0].after.to, 'me@example.com');
  assert.equal(sends[1].after.result.outcome, 'sent');
});

test('delete: 409 while a campaign that has not ended uses the template', async () => {
  const t = await create({ name: 'in-use' });
  // The campaign row as the campaign routes write it (store.h's campaigns table).
  sql(data, `INSERT INTO campaigns(name, segment_id, template_id, state, created_at, updated_at,
    created_by) VALUES('uses-${t.id}', 1, ${t.id}, 'draft', 0, 0, 'test')`);
  const cid = sql(data, `SELECT id FROM campaigns WHERE name = 'uses-${t.id}'`);
  for (const state of ['draft', 'scheduled', 'running', 'paused']) {
    sql(data, `UPDATE campaigns SET state = '${state}' WHERE id = ${cid}`);
    const r = await del(`/api/v1/templates/${t.id}`);
    assert.equal(r.status, 409, state);
    assert.match(r.json.error.message, new RegExp(`campaign ${cid} \\('uses-${t.id}', ${state}\\) uses this template`));
  }
  assert.equal((await get(`/api/v1/templates/${t.id}`)).status, 200, 'still there');
  sql(data, `UPDATE campaigns SET state = 'completed' WHERE id = ${cid}`);
  const r = await del(`/api/v1/templates/${t.id}`);
  assert.equal(r.status, 200, r.text);
});

// Postfix's smtp-sink on a free port, dumping each message into dir.
async function smtpSink(dir) {
  const port = await new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
  });
  chmodSync(dir, 0o777); // the dumps are written as nobody
  const args = [...(process.getuid() === 0 ? ['-u', 'nobody'] : []), '-d', join(dir, 'm.'), `127.0.0.1:${port}`, '10'];
  const child = spawn('/usr/sbin/smtp-sink', args, { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    const up = await new Promise((res) => {
      const c = new Socket();
      c.once('error', () => res(false));
      c.connect(port, '127.0.0.1', () => { c.destroy(); res(true); });
    });
    if (up) break;
    await new Promise((res) => setTimeout(res, 25));
  }
  return { port, stop: () => child.kill('SIGTERM') };
}

test('test-send through smtp: 409 until public_url is set, then the message reaches the sink', async () => {
  const d = tmpData();
  const sinkDir = tmpData('engage-sink-');
  const sink = await smtpSink(sinkDir);
  engage(['migrate'], { data: d });
  writeFileSync(join(d, 'engage.conf'), `[provider:relay]\ntype = smtp\nurl = smtp://127.0.0.1:${sink.port}\nesp = sendgrid\n` +
    '\n[provider:files]\ntype = outbox\n');
  const key = apikey(d, 'marketer');
  const body = { ...base, name: 'smtp', subject: 'Hi {{ first_name | default: "you" }}' };
  let s2 = await startServer(d);
  try {
    let r = await api(s2.url, '/api/v1/templates', { method: 'POST', key, body });
    assert.equal(r.status, 201, r.text);
    const id = r.json.id;
    r = await api(s2.url, `/api/v1/templates/${id}/test-send`, { method: 'POST', key, body: { to: 'me@example.com' } });
    assert.equal(r.status, 409, 'the default provider is the first section: relay, smtp');
    assert.equal(r.json.error.path, '/provider');
    assert.match(r.json.error.message, /public_url/);
    r = await api(s2.url, `/api/v1/templates/${id}/test-send`, { method: 'POST', key, body: { to: 'me@example.com', provider: 'files' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.provider, 'files');
    assert.equal(r.json.outcome, 'sent');
    await s2.stop();
    s2 = await startServer(d, { env: { ENGAGE_PUBLIC_URL: 'http://127.0.0.1:9' } });
    r = await api(s2.url, `/api/v1/templates/${id}/test-send`, { method: 'POST', key, body: { to: 'me@example.com', provider: 'relay' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.outcome, 'sent', r.text);
    assert.equal(r.json.code, 250);
    let dumps = [];
    for (let i = 0; i < 100 && dumps.length === 0; i++) {
      dumps = readdirSync(sinkDir).filter((f) => f.startsWith('m.'));
      if (!dumps.length) await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(dumps.length, 1);
    const msg = readFileSync(join(sinkDir, dumps[0]), 'utf8');
    assert.match(msg, /^Subject: Hi you\r?$/m);
    assert.match(msg, /^List-Unsubscribe: <http:\/\/127\.0\.0\.1:9\/u\/[^>]+>/m, 'links use public_url');
    assert.match(msg, new RegExp(`^X-SMTPAPI: .*"engage_message_id": ?"${r.json.message_id.replace(/\./g, '\\.')}"`, 'm'));
    assert.match(msg, new RegExp(`^X-Engage-Message-Id: ${r.json.message_id.replace(/\./g, '\\.')}`, 'm'));
  } finally {
    await s2.stop();
    sink.stop();
  }
});
