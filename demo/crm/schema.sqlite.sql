-- demo/crm/schema.sqlite.sql -- the demo CRM (an Indian SMB's), SQLite dialect.
--
-- Same tables and columns as schema.pg.sql. Differences forced by SQLite:
--   * timestamps are TEXT in ISO-8601 UTC with milliseconds and a trailing Z
--     ('2026-11-01T10:00:00.000Z'), always written in that one shape so that text
--     order is time order (the sync cursor compares them as text);
--   * email_opt_in is INTEGER 0/1, money is REAL.
--
-- Deliberately loose, like a real CRM: no CHECK constraints and no foreign keys,
-- so tests can insert the bad rows (negative amounts, unknown contacts, lower-case
-- currencies ...) that the engine's contracts must reject. Soft deletes set
-- deleted_at; the row stays.
--
-- updated_at: set on INSERT by its default, and on UPDATE by an AFTER UPDATE
-- trigger per table, but only when the UPDATE did not itself change updated_at (an
-- UPDATE that sets updated_at explicitly keeps its value, so tests can write exact
-- instants). The trigger's own UPDATE does not fire the trigger again because
-- PRAGMA recursive_triggers is OFF by default; even with it ON the WHEN clause stops
-- the recursion unless the new stamp equals the old one to the millisecond. Do not
-- turn recursive_triggers on against this schema.
--
-- Every table has an index on (updated_at, id): the sync reads
--   WHERE (updated_at, id) > (?, ?) ORDER BY updated_at, id LIMIT n.

CREATE TABLE contacts (
    id              TEXT PRIMARY KEY,            -- 'c0000001'
    email           TEXT,
    full_name       TEXT,
    city            TEXT,
    plan            TEXT,                        -- free | pro | enterprise
    lifetime_value  REAL NOT NULL DEFAULT 0,     -- INR
    email_opt_in    INTEGER NOT NULL DEFAULT 1,  -- 0 | 1
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at      TEXT
);
CREATE INDEX contacts_updated_at_id ON contacts (updated_at, id);

CREATE TABLE orders (
    id              INTEGER PRIMARY KEY,         -- rowid alias: assigned when omitted
    contact_id      TEXT,
    amount          REAL,
    currency        TEXT,                        -- ISO 4217, mostly 'INR'
    status          TEXT,                        -- created | paid | refunded
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at      TEXT
);
CREATE INDEX orders_updated_at_id ON orders (updated_at, id);

CREATE TABLE call_logs (
    id              INTEGER PRIMARY KEY,
    contact_id      TEXT,
    agent_id        TEXT,                        -- 'agent07'
    duration_sec    INTEGER,
    outcome         TEXT,                        -- connected | no_answer | busy | voicemail | callback_requested
    called_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at      TEXT
);
CREATE INDEX call_logs_updated_at_id ON call_logs (updated_at, id);

CREATE TABLE whatsapp_messages (
    id              INTEGER PRIMARY KEY,
    contact_id      TEXT,
    direction       TEXT,                        -- in | out
    template        TEXT,                        -- NULL for free-form and inbound messages
    body            TEXT,
    status          TEXT,                        -- out: sent | delivered | read | failed; in: received
                                                 -- (added: the whatsapp_sent contract requires it)
    sent_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at      TEXT
);
CREATE INDEX whatsapp_messages_updated_at_id ON whatsapp_messages (updated_at, id);

CREATE TRIGGER contacts_touch_updated_at AFTER UPDATE ON contacts
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE contacts SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;

CREATE TRIGGER orders_touch_updated_at AFTER UPDATE ON orders
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE orders SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;

CREATE TRIGGER call_logs_touch_updated_at AFTER UPDATE ON call_logs
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE call_logs SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;

CREATE TRIGGER whatsapp_messages_touch_updated_at AFTER UPDATE ON whatsapp_messages
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE whatsapp_messages SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;
