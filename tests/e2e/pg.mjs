// tests/e2e/pg.mjs -- a throwaway PostgreSQL 15 cluster for e2e tests.
//
//   import { startPostgres, postgresAvailable } from './pg.mjs';
//   test('sync', { skip: !postgresAvailable() && 'no PostgreSQL 15' }, async (t) => {
//       const pg = await startPostgres();
//       t.after(() => pg.stop());
//       pg.psql('create table t (x int)');       // synchronous, returns stdout (-At)
//       ... pg.url / pg.conninfo for the engine ...
//   });
//
// The cluster lives in a fresh temp dir (data/, server.log, the unix socket) owned
// by the `postgres` user: initdb and postgres refuse to run as root, so when we are
// root every server binary runs through `runuser -u postgres --`. It listens on
// 127.0.0.1 at a port picked by binding port 0 first (retried on a lost race) and on
// a unix socket in the temp dir, with fsync, full_page_writes and synchronous_commit
// off and TimeZone UTC. Trust authentication, user postgres, database postgres.
//
// startPostgres({ ssl: true }) also serves TLS (ssl=on, a self-signed certificate made by
// `openssl req` in the temp dir); { hba: ['hostssl all reader 127.0.0.1/32 password'] }
// puts those lines first in pg_hba.conf (trust stays for the rest).
//
// startFakePostgres() is no PostgreSQL: a server that speaks just enough of the v3
// protocol to ask for a password in clear text and record what arrives (see there).
//
// Nothing outlives the test process: stop() always removes the temp dir; an 'exit'
// handler and SIGINT/SIGTERM/SIGHUP handlers stop whatever is still running; and a
// detached watchdog shell stops the cluster and removes the dir if this process dies
// without running them (SIGKILL).

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const PGBIN = '/usr/lib/postgresql/15/bin';
const PSQL = existsSync(path.join(PGBIN, 'psql')) ? path.join(PGBIN, 'psql') : 'psql';
const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;

export function postgresAvailable() {
    return existsSync(path.join(PGBIN, 'initdb'));
}

function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

// Runs a server binary as the postgres user (when we are root); throws with output.
function asPostgres(bin, args, cwd) {
    const cmd = IS_ROOT ? 'runuser' : path.join(PGBIN, bin);
    const argv = IS_ROOT ? ['-u', 'postgres', '--', path.join(PGBIN, bin), ...args] : args;
    const r = spawnSync(cmd, argv, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 120000, env: { ...process.env, LC_ALL: 'C.UTF-8' } });
    if (r.error || r.status !== 0) {
        const e = new Error(`${bin} ${args[0] ?? ''} failed (${r.error?.message ?? 'exit ' + r.status}): ` +
            `${(r.stderr || '').trim()} ${(r.stdout || '').trim()}`.trim());
        e.stderr = r.stderr;
        throw e;
    }
    return r.stdout;
}

const live = new Set(); // clusters not yet stopped

// Synchronous, best effort: for exit and signal handlers too.
function teardown(c) {
    if (c.done) return;
    c.done = true;
    live.delete(c);
    if (c.watchdog) {
        try { process.kill(-c.watchdog, 'SIGKILL'); } catch { /* already gone */ }
    }
    if (c.started) {
        for (const mode of ['fast', 'immediate']) {
            try {
                asPostgres('pg_ctl', ['stop', '-D', c.data, '-m', mode, '-w', '-t', '30'], c.dir);
                c.started = false;
                break;
            } catch { /* try harder */ }
        }
        if (c.started) {
            // last resort: the postmaster's pid is the first line of postmaster.pid
            try {
                const pid = Number(readFileSync(path.join(c.data, 'postmaster.pid'), 'utf8').split('\n')[0]);
                if (pid > 0) process.kill(pid, 'SIGKILL');
            } catch { /* nothing to kill */ }
        }
    }
    try { rmSync(c.dir, { recursive: true, force: true }); } catch { /* keep going */ }
    if (live.size === 0) unhook();
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let hooked = false;
function onExit() {
    for (const c of [...live]) teardown(c);
}
function onSignal(sig) {
    onExit();
    unhook();
    // behave as if we had not been listening, unless someone else is
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}
function hook() {
    if (hooked) return;
    hooked = true;
    process.on('exit', onExit);
    for (const s of SIGNALS) process.on(s, onSignal);
}
function unhook() {
    if (!hooked) return;
    hooked = false;
    process.removeListener('exit', onExit);
    for (const s of SIGNALS) process.removeListener(s, onSignal);
}

function shq(s) {
    return `'${String(s).replaceAll("'", "'\\''")}'`;
}

// A detached shell that outlives us only to clean up after a SIGKILL of this process.
function startWatchdog(c) {
    const stop = IS_ROOT
        ? `runuser -u postgres -- ${shq(path.join(PGBIN, 'pg_ctl'))}`
        : shq(path.join(PGBIN, 'pg_ctl'));
    const script =
        `while kill -0 ${process.pid} 2>/dev/null && [ -d ${shq(c.dir)} ]; do sleep 1; done; ` +
        `if [ -d ${shq(c.dir)} ]; then cd /; ${stop} stop -D ${shq(c.data)} -m immediate -w -t 30 >/dev/null 2>&1; ` +
        `rm -rf ${shq(c.dir)}; fi`;
    const child = spawn('/bin/sh', ['-c', script], { detached: true, stdio: 'ignore' });
    child.unref();
    return child.pid;
}

function makePsql(conninfo) {
    const args = ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', conninfo];
    const env = { ...process.env, PGCLIENTENCODING: 'UTF8', PGTZ: 'UTC' };
    const fail = (stderr, status) => {
        const e = new Error(`psql failed (${status}): ${String(stderr).trim()}`);
        e.stderr = stderr;
        return e;
    };
    const psql = (sql) => {
        const r = spawnSync(PSQL, args, { input: sql, env, encoding: 'utf8', maxBuffer: 1 << 28 });
        if (r.error) throw r.error;
        if (r.status !== 0) throw fail(r.stderr, r.status);
        return r.stdout;
    };
    const psqlAsync = (sql) => new Promise((resolve, reject) => {
        const child = spawn(PSQL, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '', err = '';
        child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
        child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
        child.on('error', reject);
        child.on('close', (code) => (code === 0 ? resolve(out) : reject(fail(err, code))));
        child.stdin.end(sql);
    });
    return { psql, psqlAsync };
}

export async function startPostgres({ ssl = false, hba = [] } = {}) {
    if (!postgresAvailable()) throw new Error(`PostgreSQL 15 is not installed (${PGBIN}/initdb)`);
    const base = existsSync('/tmp') ? '/tmp' : os.tmpdir(); // short: the socket path is limited to 107 bytes
    const dir = mkdtempSync(path.join(base, 'engage-pg-'));
    const c = { dir, data: path.join(dir, 'data'), log: path.join(dir, 'server.log'),
        started: false, done: false, watchdog: 0 };
    live.add(c);
    hook();
    try {
        if (IS_ROOT) execFileSync('chown', ['postgres:postgres', dir]);
        c.watchdog = startWatchdog(c);
        asPostgres('initdb', ['-D', c.data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8',
            '--locale=C.UTF-8', '--no-sync'], dir);
        let tls = '';
        if (ssl) {
            const crt = path.join(dir, 'server.crt'), key = path.join(dir, 'server.key');
            execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
                '-subj', '/CN=127.0.0.1', '-keyout', key, '-out', crt], { stdio: 'ignore' });
            if (IS_ROOT) execFileSync('chown', ['postgres:postgres', crt, key]);
            execFileSync('chmod', ['600', key]);
            tls = ` -c ssl=on -c ssl_cert_file=${crt} -c ssl_key_file=${key}`;
        }
        if (hba.length) {
            const f = path.join(c.data, 'pg_hba.conf');
            writeFileSync(f, hba.join('\n') + '\n' + readFileSync(f, 'utf8'));
        }
        let port, lastErr;
        for (let attempt = 0; attempt < 5 && !c.started; attempt++) {
            port = await freePort();
            const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off ` +
                `-c full_page_writes=off -c synchronous_commit=off -c TimeZone=UTC${tls}`;
            try {
                asPostgres('pg_ctl', ['start', '-D', c.data, '-l', c.log, '-w', '-t', '60', '-o', opts], dir);
                c.started = true;
            } catch (err) {
                // most likely the port was taken between our probe and the bind: try another
                let log = '';
                try { log = readFileSync(c.log, 'utf8').slice(-2000); } catch { /* no log */ }
                lastErr = new Error(`${err.message}\n${log}`);
                try { asPostgres('pg_ctl', ['stop', '-D', c.data, '-m', 'immediate', '-w'], dir); } catch { /* not running */ }
            }
        }
        if (!c.started) throw lastErr;
        const host = '127.0.0.1';
        const conninfo = `host=${host} port=${port} user=postgres dbname=postgres`;
        const { psql, psqlAsync } = makePsql(conninfo);
        return {
            host, port, dir,
            socketDir: dir,
            url: `postgresql://postgres@${host}:${port}/postgres`,
            conninfo,
            psql,
            psqlAsync,
            async stop() { teardown(c); },
        };
    } catch (err) {
        teardown(c);
        throw err;
    }
}

// A fake PostgreSQL on 127.0.0.1: it answers 'N' to an SSLRequest (or a GSSENCRequest),
// asks for the password in clear text (AuthenticationCleartextPassword) after the
// StartupMessage, and records every PasswordMessage, then refuses it. seen: connections,
// sslRequests, startups (their parameters), passwords. The client under test must run
// as another process, asynchronously (a spawnSync would stop this server's loop).
export async function startFakePostgres() {
    const seen = { connections: 0, sslRequests: 0, startups: [], passwords: [] };
    const askPassword = () => {
        const b = Buffer.alloc(9);
        b.write('R', 0);
        b.writeInt32BE(8, 1);
        b.writeInt32BE(3, 5); // cleartext
        return b;
    };
    const refuse = () => {
        const fields = Buffer.from('SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed\0\0');
        const b = Buffer.alloc(5);
        b.write('E', 0);
        b.writeInt32BE(4 + fields.length, 1);
        return Buffer.concat([b, fields]);
    };
    const sockets = new Set();
    const server = net.createServer((sock) => {
        seen.connections++;
        sockets.add(sock);
        sock.on('close', () => sockets.delete(sock));
        sock.on('error', () => {});
        let buf = Buffer.alloc(0), started = false;
        sock.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            for (;;) {
                if (!started) {
                    if (buf.length < 8 || buf.length < buf.readInt32BE(0)) return;
                    const len = buf.readInt32BE(0), code = buf.readInt32BE(4);
                    const body = buf.subarray(8, len);
                    buf = buf.subarray(len);
                    if (code === 80877103 || code === 80877104) { // SSLRequest, GSSENCRequest
                        if (code === 80877103) seen.sslRequests++;
                        sock.write('N');
                    } else if (code === 196608) { // protocol 3.0
                        const parts = body.toString('utf8').split('\0');
                        const params = {};
                        for (let i = 0; i + 1 < parts.length && parts[i]; i += 2) params[parts[i]] = parts[i + 1];
                        seen.startups.push(params);
                        started = true;
                        sock.write(askPassword());
                    } else {
                        sock.destroy();
                        return;
                    }
                } else {
                    if (buf.length < 5 || buf.length < 1 + buf.readInt32BE(1)) return;
                    const type = String.fromCharCode(buf[0]), len = buf.readInt32BE(1);
                    const body = buf.subarray(5, 1 + len);
                    buf = buf.subarray(1 + len);
                    if (type === 'p') {
                        seen.passwords.push(body.toString('utf8').replace(/\0$/, ''));
                        sock.end(refuse());
                    } else {
                        sock.end();
                    }
                    return;
                }
            }
        });
    });
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
    });
    return {
        host: '127.0.0.1',
        port: server.address().port,
        seen,
        close: () => new Promise((resolve) => {
            for (const s of sockets) s.destroy();
            server.close(() => resolve());
        }),
    };
}
