// tests/e2e/lib.mjs -- helpers for driving the real engage binary.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = process.env.ENGAGE_BIN || join(root, 'build-asan', 'engage');
// The release build, for tests that measure a server's memory (AddressSanitizer keeps
// freed memory in quarantine and pads every block: its figures say little): what
// ENGAGE_RELEASE_BIN names (tests/run.sh sets it, make test having built both); else,
// when ENGAGE_BIN is not set either, build/engage; else ENGAGE_BIN itself, so a run
// against one chosen binary never measures a stale other one.
export const RELEASE_BIN = process.env.ENGAGE_RELEASE_BIN ||
  (!process.env.ENGAGE_BIN && existsSync(join(root, 'build', 'engage')) ? join(root, 'build', 'engage') : BIN);

// A process's figures from /proc/PID/status: rss and hwm (peak) in MiB, threads.
export function procStatus(pid) {
  const t = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number((t.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) || [])[1] || 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024, threads: kb('Threads') };
}

// Temporary directories are removed when the test process exits (ENGAGE_KEEP_TMP=1 keeps
// them for a post-mortem).
const made = [];
process.on('exit', () => {
  if (process.env.ENGAGE_KEEP_TMP) return;
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

export function tmpData(prefix = 'engage-e2e-') {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}

// Runs engage synchronously; returns { code, stdout, stderr }.
export function engage(args, { data, env = {}, input } = {}) {
  const r = spawnSync(BIN, args, {
    env: { ...process.env, ...(data ? { ENGAGE_DATA: data } : {}), ...env },
    input,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

// Runs engage asynchronously (for long imports); returns the child.
export function engageAsync(args, { data, env = {}, bin = BIN } = {}) {
  return spawn(bin, args, {
    env: { ...process.env, ...(data ? { ENGAGE_DATA: data } : {}), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export function waitExit(child) {
  return new Promise((res) => {
    let out = '', err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code, signal) => res({ code, signal, stdout: out, stderr: err }));
  });
}

// Starts `engage serve` on a free port; resolves when it prints its URL.
export async function startServer(data, { env = {}, args = [], bin = BIN } = {}) {
  const child = engageAsync(['serve', '--listen', '127.0.0.1:0', ...args], { data, env, bin });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const url = await new Promise((res, rej) => {
    let out = '';
    const timer = setTimeout(() => rej(new Error('server did not start: ' + stderr)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) { clearTimeout(timer); res(m[1]); }
    });
    child.on('exit', (code) => { clearTimeout(timer); rej(new Error(`server exited ${code}: ${stderr}`)); });
  });
  // Ready means the audience index has loaded: segment routes answer 503 before that.
  for (let i = 0; i < 400; i++) {
    const r = await fetch(url + '/readyz').catch(() => null);
    if (r && r.status === 200) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  return {
    url,
    child,
    stderr: () => stderr,
    async stop() {
      const done = new Promise((res) => child.on('exit', (code, signal) => res({ code, signal })));
      child.kill('SIGTERM');
      return done;
    },
  };
}

export async function api(url, path, { method = 'GET', key, body, headers = {} } = {}) {
  const h = { ...headers };
  if (key) h.authorization = `Bearer ${key}`;
  if (body !== undefined && typeof body !== 'string') { h['content-type'] = 'application/json'; body = JSON.stringify(body); }
  const res = await fetch(url + path, { method, headers: h, body });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text, headers: res.headers };
}

export function sql(data, query) {
  const r = spawnSync('sqlite3', [join(data, 'engage.db'), query], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error('sqlite3: ' + r.stderr);
  return r.stdout.trim();
}

// Every live event, through the product's own export (the store keeps events in blocks).
export function exportEvents(data) {
  const r = engage(['events', 'export'], { data });
  if (r.code !== 0) throw new Error('events export: ' + r.stderr);
  return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

// The count of live events, as the store keeps it.
export function eventCount(data) {
  return Number(sql(data, 'SELECT live FROM event_totals') || 0);
}

export function apikey(data, role, name = role) {
  const r = engage(['apikey', 'create', '--role', role, '--name', name, '--json'], { data });
  if (r.code !== 0) throw new Error('apikey: ' + r.stderr);
  return JSON.parse(r.stdout).key;
}

export function writeCsv(dir, name, text) {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}
