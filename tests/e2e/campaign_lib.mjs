// tests/e2e/campaign_lib.mjs -- helpers shared by the campaign suites: the configuration
// that points providers at the SMTP harness, a small API client, waiting for a run and
// reading its whole ledger.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { api } from './lib.mjs';

export const LEDGER_STATES = ['queued', 'sending', 'sent', 'retry', 'failed', 'dead', 'skipped'];
export const RUN_ENDED = ['completed', 'cancelled', 'failed'];
export const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

// Writes DATA/engage.conf (the file serve and the CLI read by default). providers:
// [{name, type = 'smtp', url, esp, ...more keys}]; retry: {max_attempts, base_delay_s,
// max_delay_s}; publicUrl: [server] public_url (omitted when null).
export function writeConfig(data, { publicUrl = 'http://127.0.0.1:1', providers = [], retry = null } = {}) {
  let s = '';
  if (publicUrl) s += `[server]\npublic_url = ${publicUrl}\n\n`;
  if (retry) {
    s += '[retry]\n';
    for (const [k, v] of Object.entries(retry)) s += `${k} = ${v}\n`;
    s += '\n';
  }
  for (const { name, ...keys } of providers) {
    s += `[provider:${name}]\n`;
    for (const [k, v] of Object.entries({ type: 'smtp', ...keys })) s += `${k} = ${v}\n`;
    s += '\n';
  }
  const file = join(data, 'engage.conf');
  writeFileSync(file, s);
  return file;
}

// A client bound to a server URL getter (servers restart on new ports) and a key.
export function client(urlOf, key) {
  const u = typeof urlOf === 'function' ? urlOf : () => urlOf;
  return {
    get: (path, k = key) => api(u(), path, { key: k }),
    post: (path, body, k = key) => api(u(), path, { method: 'POST', key: k, body }),
    put: (path, body, k = key) => api(u(), path, { method: 'PUT', key: k, body }),
    del: (path, k = key) => api(u(), path, { method: 'DELETE', key: k }),
  };
}

// Asserts what holds of a run at every read: the documented fields, and counts that
// add up to the audience once it is frozen.
export function checkRun(run) {
  for (const k of ['id', 'campaign_id', 'state', 'evaluation_id', 'audience', 'counts', 'possible_duplicates',
    'started_at', 'finished_at', 'rate_per_second', 'eta_seconds']) {
    assert.ok(k in run, `a run has ${k}: ${JSON.stringify(run)}`);
  }
  assert.deepEqual(Object.keys(run.counts).sort(), [...LEDGER_STATES].sort(), JSON.stringify(run.counts));
  if (run.state !== 'scheduled' && run.evaluation_id !== null) {
    const sum = LEDGER_STATES.reduce((a, s) => a + run.counts[s], 0);
    assert.equal(sum, run.audience, `counts add up to the audience: ${JSON.stringify(run)}`);
  }
  assert.ok(run.possible_duplicates >= 0);
  return run;
}

// Polls GET /api/v1/campaign-runs/{id} until until(run) holds (default: the run ended and
// nothing is left in flight); returns the run. Every read is checked with checkRun.
export async function waitRun(c, runId, { until, timeoutMs = 120000, what = 'the run to end' } = {}) {
  const done = until || ((r) => RUN_ENDED.includes(r.state) && r.counts.sending === 0 && r.counts.retry === 0 &&
    r.counts.queued === 0);
  const t0 = Date.now();
  let last = null;
  while (Date.now() - t0 < timeoutMs) {
    const r = await c.get(`/api/v1/campaign-runs/${runId}`).catch(() => null);
    if (r && r.status === 200) {
      last = checkRun(r.json);
      if (done(last)) return last;
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; run ${runId} last read: ${JSON.stringify(last)}`);
}

// Through client c: a segment of the contacts whose attribute grp is value, a template
// (body: the POST's, name defaulting to name), a campaign (extra: more of its keys), then
// the send. Returns { segment_id, template_id, campaign, run } (run as the 202 gave it).
export async function sendCampaign(c, { name, grp, template, extra = {} }) {
  let r = await c.post('/api/v1/segments', { name, rules: { type: 'attribute', field: 'grp', op: 'eq', value: grp } });
  assert.equal(r.status, 201, r.text);
  const segment_id = r.json.id;
  r = await c.post('/api/v1/templates', { name, ...template });
  assert.equal(r.status, 201, r.text);
  const template_id = r.json.id;
  r = await c.post('/api/v1/campaigns', { name, segment_id, template_id, ...extra });
  assert.equal(r.status, 201, r.text);
  const campaign = r.json;
  r = await c.post(`/api/v1/campaigns/${campaign.id}/send`);
  assert.equal(r.status, 202, r.text);
  return { segment_id, template_id, campaign, run: checkRun(r.json) };
}

// Every ledger row of a run (state: one ledger state, or all), paging limit rows at a time.
export async function ledger(c, runId, state = null, limit = 1000) {
  const rows = [];
  let cursor = null;
  for (let i = 0; i < 10000; i++) {
    const q = [`limit=${limit}`];
    if (state) q.push(`state=${state}`);
    if (cursor) q.push(`cursor=${encodeURIComponent(cursor)}`);
    const r = await c.get(`/api/v1/campaign-runs/${runId}/messages?${q.join('&')}`);
    assert.equal(r.status, 200, r.text);
    rows.push(...r.json.items);
    cursor = r.json.next_cursor;
    if (!cursor) return rows;
  }
  throw new Error('ledger: too many pages');
}

// The messages a harness accepted for one run (our message id is "RUN.CONTACT").
export function runMessages(smtp, runId) {
  return smtp.messages.filter((m) => m.messageId && m.messageId.split('.')[0] === String(runId));
}

// A deterministic generator (mulberry32) for the tests that draw: same seed, same draws.
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
