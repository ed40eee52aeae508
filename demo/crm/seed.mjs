#!/usr/bin/env node
// demo/crm/seed.mjs -- creates the demo CRM (schema.*.sql beside this file) and fills
// it with deterministic pseudo-random data shaped like an Indian SMB's CRM.
//
//   node demo/crm/seed.mjs --sqlite FILE        [--contacts N] [--seed S]
//   node demo/crm/seed.mjs --pg CONNINFO_OR_URL [--contacts N] [--seed S]
//
// Uses the sqlite3 and psql command-line clients (no npm packages). The four tables
// are DROPPED first if they exist, then created from the schema file and filled in
// one transaction with multi-row INSERTs. The same --contacts/--seed give the same
// rows in both databases (money is NUMERIC(14,2) in PostgreSQL and REAL in SQLite;
// booleans true/false vs 1/0). Prints one summary line with the row counts read back
// from the database.
//
// Data: N contacts (default 2000) with on average 3 orders, 2 call logs and 4
// WhatsApp messages each; every instant lies in the 90 days before
// 2026-11-01T00:00:00.000Z, in whole seconds except where noted; ~3% of contacts
// have email_opt_in false; ~1% of rows are soft-deleted (deleted_at = updated_at);
// ~10% of paid orders were marked paid by a nightly reconciliation job, so they
// share an updated_at to the millisecond (ties for the (updated_at, id) cursor).
// Ids of orders/calls/messages increase with their creation time. A few names and
// message bodies are in Devanagari/Tamil or hold an apostrophe or a newline.
//
// Also importable: generate({contacts, seed}) returns the rows; seedSqlite(file,
// opts) and seedPg(conninfo, opts) do what the command line does and return counts.

import { execFileSync } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const END_MS = Date.parse('2026-11-01T00:00:00.000Z');
export const SPAN_MS = 90 * 86400000;
export const START_MS = END_MS - SPAN_MS;
export const TABLES = ['contacts', 'orders', 'call_logs', 'whatsapp_messages'];

// ---- deterministic random numbers (32-bit integer arithmetic only) -------------

function splitmix32(a) {
    a = (a + 0x9e3779b9) | 0;
    let z = a;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return [a, (z ^ (z >>> 16)) >>> 0];
}

function makeRng(seed) {
    // sfc32, seeded through splitmix32 from the 53-bit seed
    let st = (seed % 4294967296) | 0, hi = Math.floor(seed / 4294967296) | 0, a, b, c, d;
    [st, a] = splitmix32(st ^ hi);
    [st, b] = splitmix32(st);
    [st, c] = splitmix32(st);
    [st, d] = splitmix32(st);
    const u32 = () => {
        const t = (((a + b) | 0) + d) | 0;
        d = (d + 1) | 0;
        a = b ^ (b >>> 9);
        b = (c + (c << 3)) | 0;
        c = (c << 21) | (c >>> 11);
        c = (c + t) | 0;
        return t >>> 0;
    };
    for (let i = 0; i < 12; i++) u32();
    const unit = () => ((u32() >>> 5) * 67108864 + (u32() >>> 6)) / 9007199254740992; // [0,1), 53 bits
    const below = (n) => Math.floor(unit() * n);
    const pick = (arr) => arr[below(arr.length)];
    // weighted: [[value, weight], ...]
    const weighted = (pairs) => {
        let total = 0;
        for (const [, w] of pairs) total += w;
        let r = below(total);
        for (const [v, w] of pairs) {
            if (r < w) return v;
            r -= w;
        }
        return pairs[pairs.length - 1][0];
    };
    return { unit, below, pick, weighted, chance: (p) => unit() < p };
}

// ---- vocabulary -----------------------------------------------------------------

const CITIES = ['Pune', 'Mumbai', 'Bengaluru', 'Delhi', 'Chennai', 'Hyderabad', 'Kolkata', 'Jaipur'];
const CITY_WEIGHTS = [14, 20, 20, 16, 10, 10, 5, 5];
const FIRST = ['Aarav', 'Priya', 'Rohan', 'Ananya', 'Vikram', 'Isha', 'Kabir', 'Meera', 'Arjun',
    'Sneha', 'Sanjay', 'Divya', 'Rahul', 'Neha', 'Aditya', 'Kavya', 'Farhan', 'Lakshmi', 'Harpreet',
    'Suresh', 'Pooja', 'Imran', 'Deepa', 'Karthik'];
const LAST = ['Sharma', 'Patel', 'Iyer', 'Reddy', 'Gupta', 'Nair', 'Singh', 'Das', 'Mehta',
    'Kulkarni', 'Fernandes', "D'Souza", 'Joshi', 'Banerjee', 'Khan', 'Menon', 'Agarwal', 'Rao',
    'Chatterjee', 'Deshpande'];
const NATIVE_NAMES = ['प्रिया शर्मा', 'राहुल वर्मा', 'अनन्या कुलकर्णी', 'கார்த்திக் சுப்ரமணியன்', 'লক্ষ্মী দাস'];
const DOMAINS = ['gmail.com', 'gmail.com', 'gmail.com', 'yahoo.co.in', 'rediffmail.com',
    'outlook.com', 'hotmail.com'];
const AGENTS = Array.from({ length: 12 }, (_, i) => `agent${String(i + 1).padStart(2, '0')}`);
const OUTCOMES = [['connected', 55], ['no_answer', 20], ['busy', 8], ['voicemail', 9],
    ['callback_requested', 8]];
const TEMPLATES = {
    order_confirmation: 'Namaste {name}, your order is confirmed. Thank you for shopping with us!',
    payment_reminder: 'Hi {name}, a gentle reminder: your payment is pending. Pay via UPI to complete the order.',
    delivery_update: 'Hi {name}, your order is out for delivery in {city} today.',
    festive_offer_diwali: 'Happy Diwali, {name}! 🪔 Flat 20% off this week only.',
    feedback_request: "Hi {name}, how was your experience? Reply 1-5, we'd love to hear from you.",
};
const FREEFORM_OUT = ['Sure, we will call you back by 5 pm.', "Your refund has been initiated, it'll reflect in 5-7 working days.",
    'Please share your order number.', 'धन्यवाद! आपका ऑर्डर कल तक पहुँच जाएगा।', 'Here is the invoice you asked for.'];
const INBOUND = ['Hi, where is my order?', 'Thanks!', 'Can I change the delivery address?',
    'नमस्ते, मुझे बिल चाहिए', '👍', "What's the price for the pro plan?", 'Please call me\nafter 6 pm',
    'STOP', 'Is COD available in my area?'];

// ---- generation -------------------------------------------------------------------

const SEC = 1000, MIN = 60 * SEC, HOUR = 60 * MIN, DAY = 24 * HOUR;
const iso = (ms) => new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ

export function generate({ contacts = 2000, seed = 42 } = {}) {
    const r = makeRng(seed);
    // an instant in [from, END_MS), whole seconds
    const between = (from) => {
        const lo = Math.ceil(from / SEC) * SEC;
        return lo >= END_MS - SEC ? END_MS - SEC : lo + r.below((END_MS - lo) / SEC) * SEC;
    };
    // an instant in [from, from + maxDelta), whole seconds, kept before END_MS
    const later = (from, maxDelta) => {
        const room = Math.min(maxDelta, END_MS - SEC - from + SEC);
        return room <= SEC ? Math.min(from, END_MS - SEC) : from + r.below(room / SEC) * SEC;
    };
    const softDelete = (row) => {
        if (r.chance(0.01)) {
            row.deleted_at = later(row.updated_at + SEC, 10 * DAY);
            row.updated_at = row.deleted_at;
        }
    };
    const cs = [], os = [], cl = [], wa = [];
    for (let i = 1; i <= contacts; i++) {
        const id = 'c' + String(i).padStart(7, '0');
        const first = r.pick(FIRST), last = r.pick(LAST);
        const native = r.chance(0.02) ? r.pick(NATIVE_NAMES) : null;
        const email = `${first}.${last}`.toLowerCase().replace(/[^a-z.]/g, '') + i + '@' + r.pick(DOMAINS);
        const created = START_MS + r.below(SPAN_MS / SEC) * SEC;
        const c = {
            id, email, full_name: native ?? `${first} ${last}`,
            city: r.weighted(CITIES.map((x, k) => [x, CITY_WEIGHTS[k]])),
            plan: r.weighted([['free', 60], ['pro', 30], ['enterprise', 10]]),
            ltv_paise: 0, email_opt_in: !r.chance(0.03),
            created_at: created, updated_at: created, deleted_at: null,
        };
        if (!c.email_opt_in || r.chance(0.25)) c.updated_at = between(created + SEC); // edited since
        cs.push(c);

        const nOrders = r.below(7), nCalls = r.below(5), nMsgs = r.below(9);
        for (let k = 0; k < nOrders; k++) {
            const at = between(created);
            const currency = r.weighted([['INR', 94], ['USD', 4], ['AED', 2]]);
            const minor = currency === 'INR'
                ? (199 + r.below(24800)) * 100 + (r.chance(0.2) ? r.below(100) : 0)
                : (5 + r.below(495)) * 100 + r.below(100);
            const status = r.weighted([['paid', 78], ['created', 15], ['refunded', 7]]);
            let upd = at;
            if (status === 'paid') {
                if (r.chance(0.1)) {
                    // nightly reconciliation at 02:00 IST (20:30 UTC) after the order
                    const night = Math.floor((at - 20.5 * HOUR) / DAY) * DAY + DAY + 20.5 * HOUR;
                    upd = night < END_MS ? night : later(at, 2 * HOUR);
                } else upd = later(at, 2 * HOUR);
            } else if (status === 'refunded') upd = later(at + HOUR, 7 * DAY);
            const o = { contact_id: id, amount_minor: minor, currency, status,
                created_at: at, updated_at: upd, deleted_at: null };
            softDelete(o);
            if (status === 'paid' && currency === 'INR' && o.deleted_at === null) c.ltv_paise += minor;
            os.push(o);
        }
        for (let k = 0; k < nCalls; k++) {
            const at = between(created);
            const outcome = r.weighted(OUTCOMES);
            const dur = outcome === 'connected' ? 30 + r.below(1470)
                : outcome === 'voicemail' ? 15 + r.below(45)
                : outcome === 'callback_requested' ? 20 + r.below(100) : 0;
            const o = { contact_id: id, agent_id: r.pick(AGENTS), duration_sec: dur, outcome,
                called_at: at, updated_at: later(at + dur * SEC, 5 * MIN), deleted_at: null };
            softDelete(o);
            cl.push(o);
        }
        for (let k = 0; k < nMsgs; k++) {
            const at = between(created);
            const name = c.full_name.split(' ')[0];
            let m;
            if (r.chance(0.7)) {
                let template = null, body;
                if (r.chance(0.6)) {
                    template = r.pick(Object.keys(TEMPLATES));
                    body = TEMPLATES[template].replace('{name}', name).replace('{city}', c.city);
                } else body = r.pick(FREEFORM_OUT);
                const status = r.weighted([['read', 55], ['delivered', 30], ['sent', 10], ['failed', 5]]);
                m = { contact_id: id, direction: 'out', template, body, status, sent_at: at,
                    updated_at: status === 'sent' ? at : later(at + SEC, 6 * HOUR), deleted_at: null };
            } else {
                m = { contact_id: id, direction: 'in', template: null, body: r.pick(INBOUND),
                    status: 'received', sent_at: at, updated_at: at, deleted_at: null };
            }
            softDelete(m);
            wa.push(m);
        }
    }
    for (const c of cs) softDelete(c);
    // ids follow creation time, as a CRM's sequences would
    const number = (rows, key) => {
        rows.forEach((x, k) => (x._k = k));
        rows.sort((a, b) => a[key] - b[key] || a._k - b._k);
        rows.forEach((x, k) => { x.id = k + 1; delete x._k; });
    };
    number(os, 'created_at');
    number(cl, 'called_at');
    number(wa, 'sent_at');
    return { contacts: cs, orders: os, call_logs: cl, whatsapp_messages: wa };
}

// ---- SQL ----------------------------------------------------------------------------

const money = (minor) => (minor / 100).toFixed(2);

const COLUMNS = {
    contacts: ['id', 'email', 'full_name', 'city', 'plan', 'lifetime_value', 'email_opt_in',
        'created_at', 'updated_at', 'deleted_at'],
    orders: ['id', 'contact_id', 'amount', 'currency', 'status', 'created_at', 'updated_at', 'deleted_at'],
    call_logs: ['id', 'contact_id', 'agent_id', 'duration_sec', 'outcome', 'called_at', 'updated_at',
        'deleted_at'],
    whatsapp_messages: ['id', 'contact_id', 'direction', 'template', 'body', 'status', 'sent_at',
        'updated_at', 'deleted_at'],
};
const TS = new Set(['created_at', 'updated_at', 'deleted_at', 'called_at', 'sent_at']);

function literal(dialect, col, row) {
    let v;
    if (col === 'lifetime_value') return money(row.ltv_paise);
    if (col === 'amount') return money(row.amount_minor);
    v = row[col];
    if (v === null || v === undefined) return 'NULL';
    if (TS.has(col)) return `'${iso(v)}'`;
    if (typeof v === 'boolean') return dialect === 'pg' ? String(v) : v ? '1' : '0';
    if (typeof v === 'number') return String(v);
    return `'${String(v).replaceAll("'", "''")}'`;
}

export function buildSql(dialect, data) {
    const out = [];
    if (dialect === 'pg') {
        out.push('SET client_min_messages = warning;', 'BEGIN;',
            'DROP TABLE IF EXISTS contacts, orders, call_logs, whatsapp_messages CASCADE;',
            'DROP FUNCTION IF EXISTS crm_touch_updated_at() CASCADE;',
            readFileSync(join(HERE, 'schema.pg.sql'), 'utf8'));
    } else {
        out.push('BEGIN;', ...TABLES.map((t) => `DROP TABLE IF EXISTS ${t};`),
            readFileSync(join(HERE, 'schema.sqlite.sql'), 'utf8'));
    }
    for (const t of TABLES) {
        const cols = COLUMNS[t], rows = data[t];
        for (let i = 0; i < rows.length; i += 500) {
            const vals = rows.slice(i, i + 500)
                .map((row) => '(' + cols.map((c) => literal(dialect, c, row)).join(',') + ')');
            out.push(`INSERT INTO ${t} (${cols.join(',')}) VALUES\n${vals.join(',\n')};`);
        }
    }
    if (dialect === 'pg') {
        for (const t of TABLES.slice(1))
            out.push(`SELECT setval(pg_get_serial_sequence('${t}', 'id'), coalesce(max(id), 0) + 1, false) FROM ${t};`);
    }
    out.push('COMMIT;', '');
    return out.join('\n');
}

const COUNT_SQL = 'SELECT ' + TABLES.map((t) => `(SELECT count(*) FROM ${t})`).join(', ') + ';';
const ENV = { ...process.env, PGCLIENTENCODING: 'UTF8' };

function run(cmd, args, input) {
    try {
        return execFileSync(cmd, args, { input, env: ENV, encoding: 'utf8', maxBuffer: 1 << 28,
            stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (err) {
        const why = err.code === 'ENOENT' ? `${cmd} not found` : (err.stderr || err.message).trim();
        throw new Error(`${cmd} failed: ${why}`);
    }
}

function counts(text) {
    const n = text.trim().split('|').map(Number);
    return Object.fromEntries(TABLES.map((t, i) => [t, n[i]]));
}

export function seedSqlite(file, opts = {}) {
    run('sqlite3', ['-bail', file], buildSql('sqlite', generate(opts)));
    return counts(run('sqlite3', [file, COUNT_SQL]));
}

export function seedPg(conninfo, opts = {}) {
    const base = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', conninfo];
    run('psql', base, buildSql('pg', generate(opts)));
    return counts(run('psql', [...base, '-At', '-c', COUNT_SQL]));
}

// ---- command line ----------------------------------------------------------------

function usage(msg) {
    if (msg) process.stderr.write(`seed.mjs: ${msg}\n`);
    process.stderr.write('usage: node demo/crm/seed.mjs (--sqlite FILE | --pg CONNINFO_OR_URL) [--contacts N] [--seed S]\n');
    process.exit(2);
}

function main(argv) {
    let sqlite = null, pg = null, contacts = 2000, seed = 42;
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const val = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
        const int = (s) => (/^\d+$/.test(s) && Number.isSafeInteger(+s) ? +s : usage(`${a}: not a number: ${s}`));
        if (a === '--sqlite') sqlite = val();
        else if (a === '--pg') pg = val();
        else if (a === '--contacts') contacts = int(val());
        else if (a === '--seed') seed = int(val());
        else if (a === '-h' || a === '--help') usage();
        else usage(`unknown argument: ${a}`);
    }
    if ((sqlite === null) === (pg === null)) usage('give exactly one of --sqlite and --pg');
    const t0 = process.hrtime.bigint();
    let n;
    try {
        n = sqlite !== null ? seedSqlite(sqlite, { contacts, seed }) : seedPg(pg, { contacts, seed });
    } catch (err) {
        process.stderr.write(`seed.mjs: ${err.message}\n`);
        process.exit(1);
    }
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const target = sqlite !== null ? `sqlite ${sqlite}` : 'pg';
    console.log(`seeded ${target} (seed ${seed}): ` +
        TABLES.map((t) => `${t}=${n[t]}`).join(' ') + ` in ${secs.toFixed(2)} s`);
}

// Run as a command (also through a symlink), not when imported by a test.
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) main(process.argv.slice(2));
