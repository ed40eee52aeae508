/* store/store.h -- the only door to durable state. No SQL outside src/store/.
 *
 * DESIGN: a struct store is one connection to a backend: SQLite today
 * (src/store/sqlite/), PostgreSQL later behind the same functions. It is not
 * thread-safe: each thread uses its own, or takes one from a store_pool. Writes happen
 * between store_begin() and store_commit(); store_begin() takes the write lock at once
 * and waits up to busy_timeout_ms for another writer to finish, so a CLI import can run
 * beside `engage serve`. Domain rules (consent stickiness, attribute merging, contract
 * checks) live in the callers; the store only persists and reads rows.
 *
 * A store is opened from a location string: "sqlite:DIR" (DIR/engage.db), or a bare
 * path, which means the same ("--data DIR" always did). "postgresql://..." and
 * "postgres://..." are recognised and refused with E_INVAL until that backend exists;
 * any other "scheme:" is an E_INVAL naming the location.
 *
 * PROMISES every backend keeps (tests/unit/store.c and events.c check them through this
 * header alone, against the location in ENGAGE_TEST_STORE):
 *
 * 1. Changes are readable in commit order up to a watermark. Every contact or event
 *    change takes the next change sequence number (seq) of its table; a reader that
 *    has seen every change numbered up to W (store_contacts_since / store_events_since
 *    with after_seq = W) never later finds a new change numbered <= W: numbers become
 *    visible in order, with no gap filled in afterwards. SQLite keeps it with one
 *    writer at a time: store_begin() takes the database's write lock and hands out
 *    max(seq) + 1, + 2, ... to its changes, so numbers are assigned in commit order.
 *    PostgreSQL, with concurrent writers, must not hand out numbers from a sequence
 *    alone (a transaction holding 41 can commit after one holding 42): it needs the
 *    numbers assigned under a lock taken by every writer of the table (or at commit),
 *    or a watermark that readers stop at, below the oldest number still in flight.
 * 2. First write wins on an event id. store_event_insert() with an event_id that is
 *    already stored (by this connection, another one, another process, before a
 *    restart) stores nothing and says so (*inserted = 0); the first write's content
 *    is kept. Only a source that owns its rows (store_event_upsert_owned) rewrites
 *    its own events. SQLite keeps it under the write lock, with a key map that catches
 *    up with every block committed by anyone before it decides; PostgreSQL will need a
 *    unique index on the event id and INSERT ... ON CONFLICT DO NOTHING.
 * 3. Work is claimed with leases. A row of work that several workers or servers may
 *    take (a send in the ledger, a webhook body, a job) is claimed by writing an owner
 *    and an expiry on it in one statement that only succeeds if it is unclaimed or its
 *    lease has expired; the owner renews the lease while it works and clears it when
 *    done; after the expiry anyone may reclaim the row (its owner is presumed dead),
 *    so the work is done at least once and the owner must check its lease before it
 *    records the result. The send ledger is the first user (store_messages_claim,
 *    _renew, store_message_complete, _recover; tests/unit/ledger.c); the next adds
 *    its claim, renew and release functions here, with their conformance tests.
 *    (store_segments_claim_due is a lease of one period on a schedule.)
 *
 * What is not promised is optional: the speed hints in struct store_caps. */
#ifndef ENGAGE_STORE_H
#define ENGAGE_STORE_H

#include <jansson.h>

#include "../core/config.h"
#include "../core/core.h"

#define STORE_SCHEMA_VERSION 12
#define STORE_MAX_EXTERNAL_ID 255
#define STORE_MAX_EVENT_ID 255
#define STORE_MAX_NAME 128

struct store;

struct store_opts {
    int busy_timeout_ms;
    int migrate;     /* 1: apply pending migrations; 0: refuse an out-of-date schema */
    int any_version; /* open whatever the schema version (engage migrate reports, then
                      * calls store_migrate) */
    int readonly;
    int cache_mb; /* page cache of this connection; 0 = 32 MiB (bulk imports want more) */
    int bulk;     /* bulk writes (imports): WAL checkpoints run on a thread of their own
                   * beside this connection's commits, not inside them */
};

/* Opens the store at location (see the top: "sqlite:DIR" or DIR opens DIR/engage.db,
 * creating it, WAL mode). E_INVAL for a location no backend of this build serves.
 * Caller owns *out. */
int store_open(struct store **out, const char *location, const struct store_opts *opts,
               struct err *e);
enum store_kind { STORE_SQLITE, STORE_PG };
/* *exists = 1 if location holds a store already (SQLite: DIR/engage.db is there), so a
 * command can say "no store here" rather than create one. E_INVAL as store_open. */
int store_exists(const char *location, int *exists, struct err *e);
/* Which backend a location names and what it says of where (for SQLite: the directory,
 * pointing into location). E_INVAL for an empty or unknown location. */
int store_location_parse(const char *location, enum store_kind *kind, const char **where,
                         struct err *e);
void store_close(struct store *st); /* NULL-safe */
/* Applies migrations; *from and *to receive the versions. Refuses a newer schema. */
int store_migrate(struct store *st, int *from, int *to, struct err *e);
int store_schema_version(struct store *st, int *out, struct err *e);
/* Online backup to a new file (SQLite: a database file, pages copied in steps, the
 * writers held up only briefly). E_CONFLICT if dest_path exists. */
int store_backup(struct store *st, const char *dest_path, struct err *e);
/* A trivial read, for /readyz. */
int store_ping(struct store *st, struct err *e);

int store_begin(struct store *st, struct err *e);
int store_commit(struct store *st, struct err *e);
void store_rollback(struct store *st); /* no-op outside a transaction */
/* A read transaction: one consistent snapshot for several reads, without the write
 * lock. End it with store_commit() or store_rollback(). */
int store_read_begin(struct store *st, struct err *e);
int store_in_tx(const struct store *st);
/* Ends a transaction by its outcome: commits if rc is 0, else rolls back; returns the
 * final code. */
int store_finish(struct store *st, int rc, struct err *e);
/* Inside a transaction: the highest contact change sequence committed so far plus
 * this transaction's own changes. A reader caching contact ids compares it between
 * its transactions to learn whether someone else changed contacts meanwhile. */
int64_t store_tx_contact_seq(const struct store *st);

/* ---- contacts -------------------------------------------------------------- */

struct store_contact {
    int64_t id;
    char *external_id; /* NULL for an anonymous-only contact */
    char *email;       /* NULL if unknown */
    json_t *attrs;     /* object of typed values; owned */
    enum consent_state consent;
    int64_t created_at, updated_at, seq;
    int deleted;
    int64_t merged_into; /* 0, or the contact this anonymous one was merged into */
};
void store_contact_init(struct store_contact *c);
void store_contact_release(struct store_contact *c);

/* Fill *out (released first). E_NOTFOUND when absent. */
int store_contact_get(struct store *st, int64_t id, struct store_contact *out, struct err *e);
int store_contact_get_by_xid(struct store *st, const char *xid, struct store_contact *out,
                             struct err *e);
int store_contact_get_by_anon(struct store *st, const char *anon_id, struct store_contact *out,
                              struct err *e);
/* Just the id and deleted flag by external id: the hot path of event ingestion. */
int store_contact_lookup(struct store *st, const char *xid, int64_t *id, int *deleted,
                         struct err *e);
/* Every contact with an external id: (external_id, id, deleted), in one scan. */
typedef int (*store_contact_id_fn)(void *ctx, const char *xid, int64_t id, int deleted);
int store_contact_ids(struct store *st, store_contact_id_fn fn, void *ctx, struct err *e);
/* Inserts c (id, seq assigned into c). In a transaction. */
int store_contact_insert(struct store *st, struct store_contact *c, struct err *e);
/* Rewrites every column of row c->id with a new seq (assigned into c). In a transaction. */
int store_contact_update(struct store *st, struct store_contact *c, struct err *e);
int store_consent_log(struct store *st, int64_t contact_id, int from, int to, const char *source,
                      const char *reason, int64_t at, struct err *e);
struct store_consent_change {
    int64_t at;
    int from, to; /* from is -1 for the initial state */
    const char *source, *reason;
};
typedef int (*store_consent_fn)(void *ctx, const struct store_consent_change *c);
int store_consent_history(struct store *st, int64_t contact_id, store_consent_fn fn, void *ctx,
                          struct err *e);
int store_anon_link(struct store *st, const char *anon_id, int64_t contact_id, int64_t at,
                    struct err *e);
/* Moves every event of an anonymous contact (stored with .anonymous set) to another
 * (new seqs). Served by a partial index of anonymous contacts' events. In a transaction. */
int store_events_move(struct store *st, int64_t from_contact, int64_t to_contact, int64_t *moved,
                      struct err *e);
/* The anonymous contact got an external id: its events leave the partial index (no
 * visible change, so no new seqs). In a transaction. */
int store_events_identified(struct store *st, int64_t contact_id, struct err *e);
typedef int (*store_contact_fn)(void *ctx, const struct store_contact *c);
/* Contacts with seq > after_seq, in seq order, at most limit (0 = all). */
int store_contacts_since(struct store *st, int64_t after_seq, int64_t limit, store_contact_fn fn,
                         void *ctx, struct err *e);
/* The same rows unparsed and unowned (valid during the call): for a bulk reader such
 * as the audience index, which reads the attributes it keeps from the JSON text. */
struct store_contact_row {
    int64_t id, created_at, updated_at, seq, merged_into;
    const char *external_id, *email, *attrs_json;
    enum consent_state consent;
    int deleted;
};
typedef int (*store_contact_row_fn)(void *ctx, const struct store_contact_row *c);
int store_contact_rows_since(struct store *st, int64_t after_seq, int64_t limit,
                             store_contact_row_fn fn, void *ctx, struct err *e);
/* Live contacts by id, after after_id, at most limit; email: only that address. */
int store_contacts_list(struct store *st, int64_t after_id, int limit, const char *email,
                        store_contact_fn fn, void *ctx, struct err *e);

/* ---- attribute and event-name registries ----------------------------------- */

typedef int (*store_attr_fn)(void *ctx, const char *name, const char *type, const char *origin);
int store_attr_types(struct store *st, store_attr_fn fn, void *ctx, struct err *e);
/* The recorded type of an attribute (type_out at least 16 bytes); E_NOTFOUND if none. */
int store_attr_type_get(struct store *st, const char *name, char *type_out, struct err *e);
/* Records name's type if it has none yet (first writer wins, in any process) and
 * writes the type that holds into type_out (at least 16 bytes). In a transaction. */
int store_attr_type_put(struct store *st, const char *name, const char *type, const char *origin,
                        char *type_out, struct err *e);
/* Finds (and with create, registers) an event name. *id = 0 if absent and !create. */
int store_event_name_id(struct store *st, const char *name, int create, int64_t *id, struct err *e);
/* Removes a name registered in this transaction that no event took. In a transaction. */
int store_event_name_drop(struct store *st, int64_t id, struct err *e);
typedef int (*store_name_fn)(void *ctx, int64_t id, const char *name);
int store_event_names(struct store *st, store_name_fn fn, void *ctx, struct err *e);

/* ---- events ---------------------------------------------------------------- */

struct store_event {
    int64_t id, seq; /* both the seq of the event's current version */
    int64_t prev;    /* readers: the version this one replaced (0 = a first write) */
    int64_t contact_id, name_id;
    int64_t occurred_at, received_at;
    const char *event_id;
    const char *source;
    int contract_version; /* 0 = unvalidated (no contract) */
    int anonymous;        /* writers: the contact has no external_id (merges move these) */
    uint64_t key_hash;    /* writers, optional: store_event_key_hash(event_id) made ahead, or
                           * 0 (read only by a backend whose caps say event_key_hash) */
    const char *props;    /* JSON object text */
    const char *name;     /* filled by readers only */
    int deleted;          /* filled by readers only */
};
/* First write wins (promise 2): *inserted = 0 when event_id is already stored. In a
 * transaction. */
int store_event_insert(struct store *st, struct store_event *ev, int *inserted, struct err *e);
/* For a source that owns its rows (CRM sync): inserts, or rewrites the stored event of
 * the same event_id *and source* with a new seq when anything differs (a deleted one
 * comes back). *outcome: 0 unchanged, 1 inserted, 2 updated; E_CONFLICT when the
 * event_id belongs to another source. In a transaction. */
int store_event_upsert_owned(struct store *st, struct store_event *ev, int *outcome, struct err *e);
/* Flags the source's own event deleted (new seq, so readers catching up see it).
 * *deleted = 0 if there was nothing of that source to delete. In a transaction. */
int store_event_delete_owned(struct store *st, const char *event_id, const char *source,
                             int *deleted, struct err *e);
typedef int (*store_event_fn)(void *ctx, const struct store_event *ev);
/* A contact's latest events, newest first: a scan of every event's record (56 bytes
 * each; about 1 s per 20M events), for a CLI or a debugging view. The server answers
 * from the audience index. */
int store_events_of_contact(struct store *st, int64_t contact_id, int limit, store_event_fn fn,
                            void *ctx, struct err *e);
/* One event version by its seq (as an audience index holds it), with its name. */
int store_event_by_seq(struct store *st, int64_t seq, store_event_fn fn, void *ctx, struct err *e);
/* The current version of one event (deleted set if it was deleted); nothing if none.
 * Builds the process's key map on first use. */
int store_event_get(struct store *st, const char *event_id, store_event_fn fn, void *ctx,
                    struct err *e);
/* Every event version after after_seq (a first write, a rewrite, a move, a deletion),
 * in seq order, at most limit (0 = all). Rows carry id (== seq), prev (the version it
 * replaces, 0 for none), contact_id, name_id, occurred_at, deleted, and props only if
 * with_props (else NULL). A version replaced later is still listed, then named as the
 * prev of its successor. */
int store_events_since(struct store *st, int64_t after_seq, int64_t limit, int with_props,
                       store_event_fn fn, void *ctx, struct err *e);
/* Every live event (the current, undeleted version of each) after after_seq, in seq
 * order, with its texts; name is not filled (map name_id). For exports. */
int store_events_live(struct store *st, int64_t after_seq, store_event_fn fn, void *ctx,
                      struct err *e);
/* Properties props[0..n) (1 to STORE_MAX_PROPS) of the live events of one name, typed
 * as stored, in one scan: fn gets each event's id, contact, instant and its n values. */
#define STORE_MAX_PROPS 16
enum store_prop_kind {
    STORE_PROP_OTHER, /* absent, null, an object or an array */
    STORE_PROP_TRUE,
    STORE_PROP_FALSE,
    STORE_PROP_NUMBER,
    STORE_PROP_TEXT
};
struct store_prop_value {
    enum store_prop_kind kind;
    double num;
    const char *text; /* not NUL-safe: use len */
    size_t len;
};
typedef int (*store_props_fn)(void *ctx, int64_t id, int64_t contact_id, int64_t occurred_at,
                              const struct store_prop_value *v, int n);
int store_event_prop_values(struct store *st, int64_t name_id, const char *const *props, int n,
                            store_props_fn fn, void *ctx, struct err *e);
/* Reads members names[0..n) (1 to STORE_MAX_PROPS) of a stored JSON object's text into
 * out (absent, null, objects and arrays are STORE_PROP_OTHER), in one pass; decoded
 * strings live in scratch until its next use. Returns how many were present. */
int store_props_find(const char *json, const char *const *names, int n,
                     struct store_prop_value *out, struct buf *scratch);

struct store_counts {
    int64_t contacts, contacts_deleted, events, events_unvalidated, rejected_pending;
    int64_t contact_seq, event_seq;
};
int store_counts(struct store *st, struct store_counts *out, struct err *e);
/* The latest change sequences (two index probes): tells whether counts can have moved. */
int store_change_seqs(struct store *st, int64_t *contact_seq, int64_t *event_seq, struct err *e);

/* ---- optional capabilities --------------------------------------------------------
 * Speed hints for bulk writers that a backend may offer. Every promise above holds
 * without them: a caller asks store_caps() and uses a hint only when it is there (a
 * function pointer set, a flag non-zero). */

struct store_caps {
    /* store_event.key_hash is read: filling it ahead with store_event_key_hash(), on
     * the threads that prepare events, saves the writer hashing each event id. */
    int event_key_hash;
    /* Announces about this many event writes (a bulk import, estimated from its size):
     * SQLite sizes its key map for them at the next write instead of growing it (and
     * rebuilding it from the stored blocks) on the way. */
    void (*events_reserve)(struct store *st, int64_t versions);
    /* An event with this key hash is about to be written (a few rows ahead): SQLite
     * fetches its slot of the key map into the cache. */
    void (*event_prefetch)(struct store *st, uint64_t key_hash);
};
/* What st's backend offers (never NULL; lives as long as the program). */
const struct store_caps *store_caps(const struct store *st);
/* A 64-bit digest of an event id (SipHash with a fixed key): a pure function, callable
 * on any thread before any store is open, for store_event.key_hash. */
uint64_t store_event_key_hash(const char *event_id);

/* ---- contracts ------------------------------------------------------------- */

/* Adds version max+1 of name (1 if new); *version receives it. In a transaction. */
int store_contract_put(struct store *st, const char *name, const char *kind, const char *body,
                       const char *created_by, int *version, struct err *e);
struct store_contract {
    const char *name, *kind, *body, *created_by;
    int version;
    int64_t created_at;
};
typedef int (*store_contract_fn)(void *ctx, const struct store_contract *c);
/* Latest version of every contract, by name. */
int store_contracts_latest(struct store *st, store_contract_fn fn, void *ctx, struct err *e);
/* Every version of one contract (all = 1) or only the latest; E_NOTFOUND if none. */
int store_contract_versions(struct store *st, const char *name, store_contract_fn fn, void *ctx,
                            struct err *e);
/* Cheap change detector: count of contract versions (versions are never deleted). */
int store_contracts_stamp(struct store *st, int64_t *out, struct err *e);

/* ---- the ingestion dead-letter store ---------------------------------------- */

/* A dead letter keeps at most this much of its record (UTF-8, cut between characters):
 * a 300 MB CSV line made a 300 MB letter, and every listing of it as much. */
#define STORE_REJECTED_MAX_RAW (64 * 1024)

struct store_rejected {
    int64_t id, created_at, resolved_at;
    const char *source, *kind, *reason, *field, *message, *origin, *raw, *status;
    const char *fingerprint; /* hash of kind + source + raw: a pending duplicate is not added */
    int once;                /* nor one kept before in any status */
    int attempts;
    /* Adding: raw is the record's text, cut here to STORE_REJECTED_MAX_RAW; or, with
     * truncated set, only its first bytes already. Listed: raw is what was kept (or its
     * first raw_max + 1 characters, see the filter). */
    int truncated;     /* raw is not the whole record: it can never be replayed */
    int64_t raw_bytes; /* the whole record's size (adding: 0 = strlen(raw)) */
};
/* *id = 0 when the same record is already pending. */
int store_rejected_add(struct store *st, const struct store_rejected *r, int64_t *id,
                       struct err *e);
struct store_rejected_filter {
    const char *status, *reason, *source, *kind; /* NULL = any */
    int64_t since, until;                        /* created_at range, 0 = open */
    int64_t after_id;                            /* cursor */
    int64_t id;                                  /* one row, 0 = any */
    int limit;                                   /* 0 = no limit */
    int replayable_only; /* skip rows that can never pass (bad_row, invalid_encoding) */
    size_t raw_max;      /* > 0: read only the first raw_max + 1 characters of raw (a
                          * listing's preview: more than raw_max bytes means it was cut) */
};
typedef int (*store_rejected_fn)(void *ctx, const struct store_rejected *r);
int store_rejected_list(struct store *st, const struct store_rejected_filter *f,
                        store_rejected_fn fn, void *ctx, struct err *e);
/* Sets the status of every record matching f (one statement); *changed = how many. */
int store_rejected_set_status(struct store *st, const struct store_rejected_filter *f,
                              const char *status, int64_t at, int64_t *changed, struct err *e);
/* After a replay attempt: status 'replayed' (with resolved_at) or still 'pending' with the
 * new reason. NULL reason/field/message keep the old ones. */
int store_rejected_update(struct store *st, int64_t id, const char *status, const char *reason,
                          const char *field, const char *message, int64_t at, struct err *e);
typedef int (*store_count_fn)(void *ctx, const char *key, int64_t count);
int store_rejected_counts(struct store *st, store_count_fn fn, void *ctx, struct err *e);

/* ---- API keys and audit ------------------------------------------------------ */

struct store_apikey {
    int64_t id, created_at, revoked_at, last_used_at;
    const char *name, *role, *prefix;
};
int store_apikey_add(struct store *st, const char *name, const char *role, const char *prefix,
                     const unsigned char *hash, size_t hash_len, int64_t at, int64_t *id,
                     struct err *e);
/* Active (not revoked) key by hash. E_NOTFOUND otherwise. */
int store_apikey_by_hash(struct store *st, const unsigned char *hash, size_t hash_len,
                         struct store_apikey *out, char *name, size_t namecap, char *role,
                         size_t rolecap, struct err *e);
typedef int (*store_apikey_fn)(void *ctx, const struct store_apikey *k);
int store_apikeys(struct store *st, store_apikey_fn fn, void *ctx, struct err *e);
int store_apikey_revoke(struct store *st, int64_t id, int64_t at, struct err *e);

struct store_audit {
    int64_t id, at;
    const char *actor, *action, *entity, *entity_id, *before, *after, *request_id;
};
/* In the same transaction as the change it records. */
int store_audit_add(struct store *st, const struct store_audit *a, struct err *e);
typedef int (*store_audit_fn)(void *ctx, const struct store_audit *a);
/* Newest first, ids below before_id (0: from the newest); filters NULL or 0 = any. */
struct store_audit_filter {
    const char *actor, *action, *entity, *entity_id;
    int64_t since, until; /* at >= since, at < until */
};
int store_audit_list(struct store *st, int64_t before_id, int limit,
                     const struct store_audit_filter *f, store_audit_fn fn, void *ctx,
                     struct err *e);

/* ---- import accounting ------------------------------------------------------- */

struct store_import {
    int64_t id;
    const char *kind, *file, *status;
    int64_t started_at, finished_at;
    int64_t read, inserted, updated, duplicates, rejected;
};
int store_import_begin(struct store *st, const char *kind, const char *file, int64_t at,
                       int64_t *id, struct err *e);
int store_import_progress(struct store *st, const struct store_import *im, struct err *e);
typedef int (*store_import_fn)(void *ctx, const struct store_import *im);
/* The latest imports, newest first. */
int store_imports(struct store *st, int limit, store_import_fn fn, void *ctx, struct err *e);

/* ---- saved segments, evaluations, snapshots ------------------------------------------ */

struct store_segment {
    int64_t id;
    const char *name, *description, *created_by;
    const char *rules, *plan; /* JSON text of the current version */
    int version;
    int schedule_minutes; /* 0 = on demand only */
    int64_t next_run_at, created_at, updated_at;
    int deleted;
};
/* Inserts the segment and its version 1 (s->id assigned). E_CONFLICT if a live segment
 * has the name. In a transaction. */
int store_segment_insert(struct store *st, struct store_segment *s, struct err *e);
/* Rewrites name, description, schedule, next_run_at, version, updated_at and deleted of
 * row s->id; with add_version, also stores version s->version (rules, plan). In a
 * transaction. E_CONFLICT on a name clash. */
int store_segment_update(struct store *st, const struct store_segment *s, int add_version,
                         struct err *e);
typedef int (*store_segment_fn)(void *ctx, const struct store_segment *s);
/* One segment (with its current rules and plan); E_NOTFOUND if absent or deleted. */
int store_segment_get(struct store *st, int64_t id, store_segment_fn fn, void *ctx, struct err *e);
/* Live segments with id > after_id, by id, at most limit. */
int store_segments_list(struct store *st, int64_t after_id, int limit, store_segment_fn fn,
                        void *ctx, struct err *e);
/* Every version of a segment (rules, plan, created_*), newest first. */
int store_segment_versions(struct store *st, int64_t id, store_segment_fn fn, void *ctx,
                           struct err *e);
/* Claims the scheduled segments due at now: moves each one's next_run_at a period on
 * (in the caller's transaction, so two nodes never both claim one) and calls fn with
 * the id, schedule_minutes and new next_run_at. */
int store_segments_claim_due(struct store *st, int64_t now, store_segment_fn fn, void *ctx,
                             struct err *e);

struct store_evaluation {
    int64_t id, segment_id;
    int version;
    const char *trigger, *status, *error;
    int64_t as_of, started_at, finished_at, member_count;
    double took_ms;
};
/* A new evaluation row, status running. In a transaction. */
int store_evaluation_begin(struct store *st, struct store_evaluation *ev, struct err *e);
/* Sets the outcome; members (a snapshot blob) is stored with it when not NULL. In a
 * transaction. */
int store_evaluation_finish(struct store *st, const struct store_evaluation *ev,
                            const void *members, size_t members_len, struct err *e);
typedef int (*store_evaluation_fn)(void *ctx, const struct store_evaluation *ev);
/* A segment's evaluations, newest first, with id < before_id (0 = from the newest). */
int store_evaluations_list(struct store *st, int64_t segment_id, int64_t before_id, int limit,
                           store_evaluation_fn fn, void *ctx, struct err *e);
/* One evaluation (E_NOTFOUND), or with id 0 the segment's latest succeeded one. */
int store_evaluation_get(struct store *st, int64_t segment_id, int64_t id, store_evaluation_fn fn,
                         void *ctx, struct err *e);
/* The snapshot of an evaluation. Caller owns *out. E_NOTFOUND if none. */
int store_snapshot_get(struct store *st, int64_t evaluation_id, void **out, size_t *len,
                       struct err *e);
/* Evaluations by status (every segment, ever). */
int store_evaluation_counts(struct store *st, store_count_fn fn, void *ctx, struct err *e);
/* Marks evaluations left running by a process that died as failed ("interrupted").
 * In a transaction. */
int store_evaluations_interrupt(struct store *st, int64_t at, int64_t *count, struct err *e);

/* ---- templates ------------------------------------------------------------------ */

/* A template with the body of one version. Strings are valid during a callback only
 * (or owned by the caller when it passes one in). text NULL: derived from html. */
struct store_template {
    int64_t id;
    const char *name, *subject, *html, *text, *from_email, *from_name, *reply_to;
    const char *created_by; /* of the template (of the version in store_template_versions) */
    int version;
    int64_t created_at, updated_at;
    int deleted;
};
typedef int (*store_template_fn)(void *ctx, const struct store_template *t);
/* Inserts the template and its version 1 (t->id assigned). E_CONFLICT if a live template
 * has the name. In a transaction. */
int store_template_insert(struct store *st, struct store_template *t, struct err *e);
/* Rewrites name, version, updated_at and deleted of row t->id; with add_version also
 * stores version t->version's body (subject .. reply_to, created_at = updated_at,
 * created_by). E_CONFLICT on a name clash. In a transaction. */
int store_template_update(struct store *st, const struct store_template *t, int add_version,
                          struct err *e);
/* One live template with its current version; E_NOTFOUND if absent or deleted. */
int store_template_get(struct store *st, int64_t id, store_template_fn fn, void *ctx,
                       struct err *e);
/* One version of a template, deleted or not (a run renders the version it started
 * with); E_NOTFOUND. */
int store_template_version_get(struct store *st, int64_t id, int version, store_template_fn fn,
                               void *ctx, struct err *e);
/* Live templates with id > after_id, by id, at most limit. */
int store_templates_list(struct store *st, int64_t after_id, int limit, store_template_fn fn,
                         void *ctx, struct err *e);
/* Every version of a template, newest first. */
int store_template_versions(struct store *st, int64_t id, store_template_fn fn, void *ctx,
                            struct err *e);

/* ---- campaigns and their runs ---------------------------------------------------- */

struct store_campaign {
    int64_t id;
    const char *name, *provider, *state, *created_by; /* provider NULL: the default */
    int64_t segment_id, template_id;
    int throttle_per_second; /* 0: no campaign throttle */
    int64_t scheduled_at;    /* 0: none */
    int64_t created_at, updated_at, last_run_id;
    int deleted;
    int track_opens, track_clicks; /* 1: rewrite links, add the open pixel */
    const char *conversion;        /* the conversion goal as JSON, or NULL */
};
typedef int (*store_campaign_fn)(void *ctx, const struct store_campaign *c);
/* c->id assigned. E_CONFLICT if a live campaign has the name. In a transaction. */
int store_campaign_insert(struct store *st, struct store_campaign *c, struct err *e);
/* Rewrites every column of row c->id. E_CONFLICT on a name clash. In a transaction. */
int store_campaign_update(struct store *st, const struct store_campaign *c, struct err *e);
/* One live campaign; E_NOTFOUND if absent or deleted. */
int store_campaign_get(struct store *st, int64_t id, store_campaign_fn fn, void *ctx,
                       struct err *e);
/* Live campaigns with id > after_id, by id, at most limit. */
int store_campaigns_list(struct store *st, int64_t after_id, int limit, store_campaign_fn fn,
                         void *ctx, struct err *e);

/* A run: one send of a campaign to the frozen audience of one evaluation. States
 * (docs/campaigns.md): scheduled, running, paused, completed, cancelled, failed. */
struct store_run {
    int64_t id, campaign_id;
    const char *state, *reason, *provider; /* reason: why it ended (or NULL) */
    int64_t segment_id, template_id;
    int template_version; /* 0 until started */
    int throttle_per_second;
    int64_t evaluation_id; /* 0 until started */
    int64_t audience;      /* members of the evaluation */
    int64_t cursor;        /* ledger rows exist for every member with contact id <= cursor */
    int ledgered;          /* 1: every member has its ledger row */
    int64_t possible_duplicates;
    int64_t start_at; /* when it is due to start (the campaign's scheduled_at, or now) */
    int64_t created_at, started_at, finished_at, updated_at;
    const char *created_by;
    int track_opens, track_clicks; /* the campaign's, when the run was created */
};
typedef int (*store_run_fn)(void *ctx, const struct store_run *r);
/* r->id assigned. In a transaction. */
int store_run_insert(struct store *st, struct store_run *r, struct err *e);
/* Rewrites the mutable columns of row r->id (state, reason, provider, segment_id,
 * template_id, throttle_per_second, start_at, template_version, evaluation_id, audience,
 * cursor, ledgered, started_at, finished_at, updated_at).
 * possible_duplicates is the store's own (store_messages_recover). In a transaction. */
int store_run_update(struct store *st, const struct store_run *r, struct err *e);
int store_run_get(struct store *st, int64_t id, store_run_fn fn, void *ctx, struct err *e);
/* A campaign's runs, newest first, ids below before_id (0: from the newest). */
int store_runs_list(struct store *st, int64_t campaign_id, int64_t before_id, int limit,
                    store_run_fn fn, void *ctx, struct err *e);
/* Runs a dispatcher has to look at: running ones, and scheduled ones with start_at <=
 * now, by id. */
int store_runs_active(struct store *st, int64_t now, store_run_fn fn, void *ctx, struct err *e);

/* ---- the send ledger --------------------------------------------------------------- */

/* One row per recipient per run, unique on (run, contact). docs/campaigns.md has the
 * states and the crash rule. Our message id is "RUN.CONTACT" (store_message_id). */
enum store_msg_state {
    MSG_QUEUED,  /* created, not yet claimed */
    MSG_SENDING, /* claimed under a lease; the provider has not answered yet */
    MSG_SENT,    /* accepted by the provider */
    MSG_RETRY,   /* a temporary failure; next_at set */
    MSG_FAILED,  /* a permanent failure */
    MSG_DEAD,    /* retries exhausted */
    MSG_SKIPPED, /* not sent: reason in last_error */
};
#define MSG_STATES 7
/* "queued" ... "skipped"; "unknown" otherwise. */
const char *store_msg_state_name(int s);
/* The state named s, or -1. */
int store_msg_state_parse(const char *s);
/* Writes our message id of (run, contact) into buf (at least 48 bytes): "RUN.CONTACT". */
void store_message_id(int64_t run_id, int64_t contact_id, char *buf, size_t cap);
/* Parses one back: 0, or E_INVAL. */
int store_message_id_parse(const char *s, int64_t *run_id, int64_t *contact_id);

struct store_msg {
    int64_t id, run_id, contact_id;
    int state, attempts;
    int64_t next_at, updated_at;
    int redelivery;         /* claimed again after a lease that ran out: maybe sent twice */
    const char *last_error; /* or the skip reason */
    const char *provider_message_id;
    unsigned events; /* a bit per kind of message event seen (enum mev_kind) */
    /* the contact as it is now (claims only; NULL/0 elsewhere except external_id, email) */
    const char *external_id, *email, *attrs_json;
    enum consent_state consent;
    int contact_deleted;
};
typedef int (*store_msg_fn)(void *ctx, const struct store_msg *m);

/* Creates queued rows for contact_ids[0..n) of run (ascending ids; a row that exists
 * already is left as it is: *created counts the new ones) and moves the run's cursor to
 * cursor, with ledgered as given, in one statement group. In a transaction. */
int store_messages_create(struct store *st, int64_t run_id, const int64_t *contact_ids, size_t n,
                          int64_t cursor, int ledgered, int64_t now, int64_t *created,
                          struct err *e);
/* PROMISE 3 (leases). Claims at most limit rows of run that are due: queued, retry with
 * next_at <= now, or sending with a lease that ran out (lease_until <= now; these are
 * counted in the run's possible_duplicates and come with redelivery = 1). Each claimed
 * row becomes sending, owned by owner until now + lease_ms, attempts + 1; fn sees it
 * with its contact, in id order. In a transaction. */
int store_messages_claim(struct store *st, int64_t run_id, const char *owner, int64_t now,
                         int64_t lease_ms, int limit, store_msg_fn fn, void *ctx, struct err *e);
/* Renews owner's leases on every row of run it holds to now + lease_ms. In a transaction. */
int store_messages_renew(struct store *st, int64_t run_id, const char *owner, int64_t now,
                         int64_t lease_ms, struct err *e);
/* The outcome of one claimed row (m->id, m->state, m->next_at for retry, m->last_error,
 * m->provider_message_id): written only if owner still holds its lease (*held = 1),
 * and the lease is cleared. A row released back to queued gets its claim's attempt
 * back (it was not sent). In a transaction. */
int store_message_complete(struct store *st, const char *owner, const struct store_msg *m,
                           int64_t now, int *held, struct err *e);
/* At start: rows of any run left sending by owners whose name starts with
 * owner_prefix (this node's earlier processes, known dead) have their leases expired
 * now, so the next claim takes them (and counts them). *count of them. In a transaction. */
int store_messages_recover(struct store *st, const char *owner_prefix, int64_t now, int64_t *count,
                           struct err *e);
/* Moves every row of run in one of the states in mask (1 << MSG_*) to state to, with
 * reason as last_error (NULL keeps it), attempts reset to 0 and next_at 0 when to is
 * queued; a sending row moves only once its lease ran out (lease_until <= now: its
 * owner is presumed dead). *count of them. In a transaction. */
int store_messages_move(struct store *st, int64_t run_id, unsigned mask, int to, const char *reason,
                        int64_t now, int64_t *count, struct err *e);
/* The rows of run in each state: counts[MSG_STATES]. */
int store_messages_count(struct store *st, int64_t run_id, int64_t counts[MSG_STATES],
                         struct err *e);
/* The earliest next_at of a retry row of run (0 if none): when it has work again. */
int store_messages_next_due(struct store *st, int64_t run_id, int64_t *at, struct err *e);
/* A page of run's rows (state -1: any) with id > after_id, by id, at most limit; fn sees
 * external_id and email too. */
int store_messages_list(struct store *st, int64_t run_id, int state, int64_t after_id, int limit,
                        store_msg_fn fn, void *ctx, struct err *e);
/* The same, filtered: state (-1: any), rows whose events hold every bit of events (0: any),
 * a substring of last_error (NULL: any). */
int store_messages_filter(struct store *st, int64_t run_id, int state, unsigned events,
                          const char *reason, int64_t after_id, int limit, store_msg_fn fn,
                          void *ctx, struct err *e);
/* The run's rows that did not go out (retry, failed, dead, skipped) grouped by state and
 * last error, the largest groups first, at most limit. */
int store_messages_reasons(struct store *st, int64_t run_id, int limit,
                           int (*fn)(void *ctx, int state, const char *reason, int64_t n),
                           void *ctx, struct err *e);
/* Re-queues dead rows (run_id 0: of every run; reason: a substring of last_error, or
 * NULL) of runs that were not cancelled: queued, attempts 0. fn sees each run touched and how many
 * of its rows. In a transaction. */
int store_messages_replay_dead(struct store *st, int64_t run_id, const char *reason, int64_t now,
                               int (*fn)(void *ctx, int64_t run_id, int64_t count), void *ctx,
                               struct err *e);
/* Dead rows across runs (run_id 0: any; reason: a substring of last_error, or NULL),
 * with id > after_id, by id, at most limit. */
int store_messages_dead(struct store *st, int64_t run_id, const char *reason, int64_t after_id,
                        int limit, store_msg_fn fn, void *ctx, struct err *e);

/* ---- engagement: message events, counters, the webhook inbox (schema 12) ------------ */

/* What happened to a message after the provider took it: one row per event, unique on
 * (source, source_id) when source_id is set. run_id 0: the message is not known (kept and
 * counted, never an error to its sender). */
struct store_mevent {
    int64_t id;
    const char *source, *source_id;
    int kind; /* enum mev_kind (delivery.h) */
    int64_t run_id, contact_id, message_row;
    const char *queue_id, *email, *reason, *url, *user_agent;
    int64_t at, received_at;
    int machine;
    double value; /* a conversion's revenue (kind conversion) */
};
typedef int (*store_mevent_fn)(void *ctx, const struct store_mevent *ev);
/* Stores ev (ev->id assigned) unless its (source, source_id) is stored already: then
 * *inserted = 0 and nothing changes. In a transaction. */
int store_mevent_insert(struct store *st, struct store_mevent *ev, int *inserted, struct err *e);
/* A run's events (run_id 0: the unknown ones) with id > after_id, by id, at most limit;
 * kind 0 for any. */
int store_mevents_list(struct store *st, int64_t run_id, int kind, int64_t after_id, int limit,
                       store_mevent_fn fn, void *ctx, struct err *e);

/* A ledger row as engagement sees it: its id, run, contact, state and the kinds of
 * event it has seen (a bit per enum mev_kind), with the contact's external id and email
 * ("" when it has none). */
struct store_msg_engagement {
    int64_t id, run_id, contact_id, campaign_id;
    int state;
    unsigned events;
    int64_t updated_at;
    char external_id[STORE_MAX_EXTERNAL_ID + 1];
    char email[321];
};
/* The row of (run, contact); E_NOTFOUND. */
int store_message_engagement(struct store *st, int64_t run_id, int64_t contact_id,
                             struct store_msg_engagement *out, struct err *e);
/* The row the provider knows by queue_id (the newest if several); E_NOTFOUND. */
int store_message_by_queue_id(struct store *st, const char *queue_id,
                              struct store_msg_engagement *out, struct err *e);
/* The contact's newest row (of any run) updated at or after since, whose events include
 * every bit of need; E_NOTFOUND. */
int store_message_latest_of_contact(struct store *st, int64_t contact_id, int64_t since,
                                    unsigned need, struct store_msg_engagement *out, struct err *e);
/* A page of a contact's rows, newest first (ids below before_id, 0: from the newest). */
int store_messages_of_contact(struct store *st, int64_t contact_id, int64_t before_id, int limit,
                              int (*fn)(void *ctx, const struct store_msg_engagement *m), void *ctx,
                              struct err *e);
/* Sets the row's event bits. In a transaction. */
int store_message_set_events(struct store *st, int64_t id, unsigned events, struct err *e);

/* Counters (enum run_stat, campaign.h): adds n (and x) to run's metric; the _minute_ one to
 * run's metric in that minute (a Unix minute). In a transaction. */
int store_stat_add(struct store *st, int64_t run_id, int metric, int64_t n, double x,
                   struct err *e);
int store_stat_minute_add(struct store *st, int64_t run_id, int metric, int64_t minute, int64_t n,
                          double x, struct err *e);
/* A run's counters: fn per metric stored. */
int store_stats_of_run(struct store *st, int64_t run_id,
                       int (*fn)(void *ctx, int metric, int64_t n, double x), void *ctx,
                       struct err *e);
/* Minute counters of the runs in run_ids[0..nruns) (nruns 0: every run) with minute in
 * [from, to), by minute. */
int store_stats_minutes(struct store *st, const int64_t *run_ids, size_t nruns, int64_t from,
                        int64_t to,
                        int (*fn)(void *ctx, int64_t run_id, int64_t minute, int metric, int64_t n,
                                  double x),
                        void *ctx, struct err *e);

/* A run's log: state changes ("state", detail "from -> to: reason") and outcomes grouped
 * by error ("retry", "failed", "dead"; count of messages). _add in a transaction; _list
 * by id after after_id. */
struct store_run_log {
    int64_t id, run_id, at;
    const char *kind, *detail;
    int64_t count;
};
int store_run_log_add(struct store *st, int64_t run_id, int64_t at, const char *kind,
                      const char *detail, int64_t count, struct err *e);
int store_run_log_list(struct store *st, int64_t run_id, int64_t after_id, int limit,
                       int (*fn)(void *ctx, const struct store_run_log *l), void *ctx,
                       struct err *e);

/* How far the journal `name` has been applied (E_NOTFOUND, *out 0, when never): the
 * tracking journal's and the conversions' checkpoints, written in the transaction that
 * applied what they cover. The _set one in a transaction. */
int store_journal_applied(struct store *st, const char *name, int64_t *out, struct err *e);
int store_journal_set(struct store *st, const char *name, int64_t applied, struct err *e);

/* What the operations view shows of the queues: ledger rows by state across runs, the
 * oldest queued row's creation (0: none) among the runs that may send, retry rows and the
 * earliest due, the inbox. */
struct store_queues {
    int64_t ledger[MSG_STATES];
    int64_t oldest_queued_at;
    int64_t retry, next_retry_at;
    int64_t inbox_pending, inbox_oldest_at, inbox_failed;
};
int store_queues(struct store *st, struct store_queues *out, struct err *e);

/* The webhook inbox: a verified body stored before it is answered, processed later
 * under a lease (promise 3). States: pending, done, failed. */
enum store_inbox_state { INBOX_PENDING, INBOX_DONE, INBOX_FAILED };
struct store_inbox {
    int64_t id;
    const char *hook, *dedupe;
    const char *body;
    size_t len;
    int64_t received_at;
    int state, attempts;
    int64_t events;
    const char *error;
};
typedef int (*store_inbox_fn)(void *ctx, const struct store_inbox *b);
/* Stores a body for hook (dedupe: a replay key unique per hook, or NULL). E_CONFLICT when
 * dedupe is stored already. *id assigned. In a transaction. */
int store_inbox_insert(struct store *st, const char *hook, const char *dedupe, const char *body,
                       size_t len, int64_t now, int64_t *id, struct err *e);
/* PROMISE 3. Claims at most limit pending bodies (unleased, or lease run out), oldest
 * first: owned by owner until now + lease_ms, attempts + 1. In a transaction. */
int store_inbox_claim(struct store *st, const char *owner, int64_t now, int64_t lease_ms, int limit,
                      store_inbox_fn fn, void *ctx, struct err *e);
/* The outcome of a claimed body: done (with the events it held) or failed (with error);
 * written only while owner holds it (*held). In a transaction. */
int store_inbox_finish(struct store *st, int64_t id, const char *owner, int state, int64_t events,
                       const char *error, int64_t now, int *held, struct err *e);
/* Pending bodies, the oldest one's received_at (0 if none), failed bodies. */
int store_inbox_stats(struct store *st, int64_t *pending, int64_t *oldest_at, int64_t *failed,
                      struct err *e);
/* Failed bodies back to pending (id 0: every one); *count. In a transaction. */
int store_inbox_retry(struct store *st, int64_t id, int64_t *count, struct err *e);
/* Deletes done bodies finished before before; *count. In a transaction. */
int store_inbox_prune(struct store *st, int64_t before, int64_t *count, struct err *e);

/* ---- a pool of connections for threads ---------------------------------------- */

struct store_pool;
/* size connections to location (store_open). */
int store_pool_new(struct store_pool **out, const char *location, int size,
                   const struct store_opts *opts, struct err *e);
void store_pool_free(struct store_pool *p);
/* Blocks until a connection is free. */
struct store *store_pool_get(struct store_pool *p);
void store_pool_put(struct store_pool *p, struct store *st);

/* ---- CRM sync -------------------------------------------------------------- */

struct store_sync_source {
    int64_t id;
    char name[128], kind[16];
    char origin[8];                 /* "cli" or "api": who added it (sync/policy.c) */
    char *dsn, *password, *mapping; /* password: a reference or a sealed value */
    int64_t created_at, updated_at, last_ok_at, last_error_at, failures;
    char last_error[512];
};
void store_sync_source_release(struct store_sync_source *s);
/* E_CONFLICT when the name is taken; *id set. */
int store_sync_source_add(struct store *st, const struct store_sync_source *s, int64_t *id,
                          struct err *e);
/* E_NOTFOUND when there is none of that name. Release *out. */
int store_sync_source_get(struct store *st, const char *name, struct store_sync_source *out,
                          struct err *e);
/* Every source, by name; cb's non-zero return stops (and is returned). */
int store_sync_sources(struct store *st, int (*cb)(void *ctx, const struct store_sync_source *s),
                       void *ctx, struct err *e);
/* Removes a source and its checkpoints. E_NOTFOUND. */
int store_sync_source_remove(struct store *st, const char *name, struct err *e);
/* A pass's outcome: error NULL for a success (failures back to 0), else recorded with
 * failures + 1. */
int store_sync_source_status(struct store *st, int64_t id, const char *error, struct err *e);

struct store_sync_checkpoint {
    char *cursor, *key; /* JSON values; NULL before the first row */
    char *trail;        /* where it stood lately (JSON, sync/run.c); or NULL */
    int64_t rows, updated_at;
};
void store_sync_checkpoint_release(struct store_sync_checkpoint *c);
/* A table's checkpoint (all zero and NULL when none yet). */
int store_sync_checkpoint_get(struct store *st, int64_t source_id, const char *tbl,
                              struct store_sync_checkpoint *out, struct err *e);
/* Moves it (in the caller's transaction, beside the rows it covers); trail NULL keeps
 * the one it has. */
int store_sync_checkpoint_set(struct store *st, int64_t source_id, const char *tbl,
                              const char *cursor, const char *key, const char *trail,
                              int64_t rows_added, struct err *e);

/* A reconciliation's report (JSON text), kept; *id set. */
int store_sync_reconciliation_add(struct store *st, const char *source, int64_t started_at,
                                  int64_t mismatches, int repaired, const char *report, int64_t *id,
                                  struct err *e);
/* When the newest reconciliation kept for source started (*started_at 0: none). */
int store_sync_reconciliation_last(struct store *st, const char *source, int64_t *started_at,
                                   struct err *e);
/* The latest first, at most limit, ids below before (0: from the newest). */
typedef int (*store_reconciliation_fn)(void *ctx, int64_t id, const char *source,
                                       int64_t started_at, int64_t finished_at, int64_t mismatches,
                                       int repaired, const char *report);
int store_sync_reconciliations(struct store *st, int64_t before, int limit,
                               store_reconciliation_fn fn, void *ctx, struct err *e);

#endif
