/* ingest/ingest.h -- contacts and events in: contracts, validation, upserts, CSV.
 *
 * DESIGN: every path that brings data in (CSV, HTTP, CRM sync, replay) builds a
 * record (a JSON object of raw values) and hands it to ingest_contact() or
 * ingest_event() inside a batch (ingest_begin .. ingest_commit). The record is
 * checked against the current contract, typed, and written through the store;
 * a record that fails is written to the dead-letter store in the same
 * transaction with its reason, field and raw payload, so nothing is lost and
 * nothing is stored twice. An ingest session is one thread's: not thread-safe. */
#ifndef ENGAGE_INGEST_H
#define ENGAGE_INGEST_H

#include <jansson.h>

#include "../core/config.h"
#include "../core/map.h"
#include "../store/store.h"

/* ---- contracts ---------------------------------------------------------------- */

enum vtype { VT_STRING, VT_NUMBER, VT_INTEGER, VT_BOOLEAN, VT_TIMESTAMP };
const char *vtype_name(enum vtype t);
int vtype_parse(const char *s, enum vtype *out);

struct contract;     /* one compiled version */
struct contract_set; /* the latest version of every contract; immutable once built */

/* Parses and checks a contract document. Problems go to errs with JSON pointers
 * (E_INVAL if any). name_expected, if not NULL, must equal the document's name.
 * Caller owns *out. */
int contract_compile(const char *text, size_t len, const char *name_expected, int version,
                     struct contract **out, struct errlist *errs, struct err *e);
void contract_free(struct contract *c);
const char *contract_name(const struct contract *c);
const char *contract_kind(const struct contract *c);

/* Stores text as the next version of contract name (audited, one transaction), unless it
 * equals the latest version (*unchanged = 1, *version = that version). A document that
 * does not compile: E_INVAL with every problem in errs. */
int contract_put(struct store *st, const char *name, const char *text, size_t len,
                 const char *actor, const char *req_id, int *version, int *unchanged,
                 struct errlist *errs, struct err *e);
/* Loads the latest version of every stored contract, with cfg's limits ([ingest]
 * pattern_max_value_bytes; NULL: the defaults, for readers that only look at types).
 * A stored pattern that no longer compiles is logged, and its property refuses every
 * value (reason pattern_invalid) until a new version is stored. Caller owns *out. */
int contract_set_load(struct store *st, const struct config *cfg, struct contract_set **out,
                      struct err *e);
/* Sets are shared by reference: free drops one; the last frees. */
struct contract_set *contract_set_ref(struct contract_set *cs);
void contract_set_free(struct contract_set *cs);
/* NULL if there is none. */
const struct contract *contract_set_event(const struct contract_set *cs, const char *name);
const struct contract *contract_set_contact(const struct contract_set *cs);
int contract_set_nevents(const struct contract_set *cs);
const struct contract *contract_set_event_at(const struct contract_set *cs, int i);
int contract_version(const struct contract *c);
/* Declared properties (attributes for the contact contract), by index. */
int contract_nprops(const struct contract *c);
const char *contract_prop_name(const struct contract *c, int i);
int contract_prop_required(const struct contract *c, int i);
/* Declared type of a property, or -1. */
int contract_prop_type(const struct contract *c, const char *name);
/* 1 if undeclared properties are refused. */
int contract_strict(const struct contract *c);
/* Types a value of a JSON record (read by core/jtree.c) for the property at index i
 * and checks it, exactly as the JSON path does: NULL with the typed value in out (its
 * strings in the arena), or the reason code with a sentence in msg. */
struct jt;
struct arena;
const char *contract_type_jt(const struct contract *c, int i, const struct jt *v,
                             struct arena *a, struct jt *out, char *msg, size_t msgcap);

/* The contracts shipped in contracts/ (embedded at build time). */
struct shipped_contract {
    const char *file, *text;
};
extern const struct shipped_contract shipped_contracts[];
extern const int shipped_contracts_count;
/* Stores version 1 of each shipped contract that the store does not have yet. */
int contracts_seed(struct store *st, int *added, struct err *e);

/* ---- typed values -------------------------------------------------------------- */

/* Converts a raw value to type t. Text mode (CSV): v is a string. Returns a new
 * reference, or NULL with a sentence in msg. Timestamps become canonical
 * ISO-8601 strings (ms, UTC, Z). */
json_t *value_coerce(const json_t *v, enum vtype t, char *msg, size_t msgcap);
/* Infers the type of an undeclared value (see docs/contracts.md "Inference"). */
enum vtype value_infer(const json_t *v);

/* ---- sessions -------------------------------------------------------------------- */

enum ingest_outcome { INGEST_INSERTED, INGEST_UPDATED, INGEST_UNCHANGED, INGEST_REJECTED };

struct ingest_stats {
    int64_t read, inserted, updated, duplicates, rejected, consent_kept, unvalidated;
    int64_t contacts_created;
};

struct ingest {
    struct store *st;
    const struct config *cfg;
    struct contract_set *contracts;
    int64_t contracts_stamp;
    /* Caches valid across committed transactions; cleared on rollback. */
    struct strmap contact_ids;  /* external_id -> id (negative: deleted) */
    struct strmap event_names;  /* name -> id */
    struct strmap attr_types;   /* attribute name -> enum vtype */
    int attr_types_loaded;
    int64_t seen_contact_seq;   /* contact seq after our last commit */
    int preload_contacts;       /* fill contact_ids in one scan at the next begin */
    struct ingest_stats stats;
    int64_t batch_id;           /* imports.id, or 0 */
    int64_t replay_id;          /* while replaying: the dead letter being retried */
    /* The last rejection, for reports: reason code, field and sentence. */
    char last_reason[32], last_field[160], last_msg[256];
};

/* Asks the next ingest_begin() to read every contact's id in one scan rather than one
 * lookup per contact on first sight: for an import expected to touch a large share of
 * the contacts. Once; if another writer later invalidates the cache, lookups resume. */
void ingest_preload_contacts(struct ingest *in);

/* The kind of source: bulk sources can never lift an opt-out (sticky consent). */
enum source_kind { SRC_CSV, SRC_SDK, SRC_SYNC, SRC_API, SRC_REPLAY };
int source_is_bulk(enum source_kind k);

struct ingest_ctx {
    enum source_kind kind;
    const char *source;  /* stored label: "csv", "sdk", "sync:crm", "api" */
    const char *origin;  /* where it came from, for the dead-letter store: "file.csv" */
    int64_t line;        /* and its line, if > 0 ("file.csv:12"): set per record, formatted
                          * only when one is rejected */
    int text_mode;       /* values are CSV text cells */
    int owns_rows;       /* the source owns its events (CRM sync): it may update and delete
                          * what it wrote; others are first-write-wins */
    int reject_once;     /* records read again (a sync's lookback): a refused one already
                          * kept as a dead letter, in any status, is not kept again */
    int64_t received_at;
    size_t max_value_bytes; /* [ingest] max_value_bytes, for ingest_event_prepare() (0: the
                             * default); the calls given a session read its configuration */
    int received_is_time; /* an event without occurred_at takes received_at (a replay of
                           * API or SDK records; those sources always do) */
};

void ingest_init(struct ingest *in, struct store *st, const struct config *cfg);
void ingest_release(struct ingest *in);
/* Starts a batch: write lock, reloads contracts if they changed. */
int ingest_begin(struct ingest *in, struct err *e);
int ingest_commit(struct ingest *in, struct err *e);
void ingest_rollback(struct ingest *in);

/* A contact record: {"external_id","email"?,"email_consent"?,"attributes":{…}}.
 * Rejected records are stored as dead letters and give INGEST_REJECTED (rc 0);
 * rc != 0 only for store failures, after which the batch must be rolled back. */
int ingest_contact(struct ingest *in, const struct ingest_ctx *cx, const json_t *rec,
                   enum ingest_outcome *out, struct err *e);
/* An event record: {"external_id"|"anonymous_id","event","occurred_at"?,"event_id"?,
 * "properties":{…}}. INGEST_UNCHANGED means a duplicate event_id. */
int ingest_event(struct ingest *in, const struct ingest_ctx *cx, const json_t *rec,
                 enum ingest_outcome *out, struct err *e);
/* Stores a rejected record in the dead-letter store (rc != 0 only for store errors). The
 * letter keeps the record's first STORE_REJECTED_MAX_RAW bytes (marked truncated past). */
int ingest_reject(struct ingest *in, const struct ingest_ctx *cx, const char *kind,
                  const json_t *rec, const char *reason, const char *field, const char *msg,
                  enum ingest_outcome *out, struct err *e);
/* The same for a record the source kept only in part (a CSV row past a size cap): raw is
 * its first bytes as JSON-ish text, raw_bytes (> 0) its whole size. Kept truncated: such
 * a letter is never replayed. */
int ingest_reject_partial(struct ingest *in, const struct ingest_ctx *cx, const char *kind,
                          const char *raw, int64_t raw_bytes, const char *reason,
                          const char *field, const char *msg, enum ingest_outcome *out,
                          struct err *e);
/* The two halves of ingest_event(), so that validation (pure: contracts only, any
 * thread) can run beside the store writes (one thread, in a batch). prepare never
 * fails: a record it refuses is marked rejected and stored as a dead letter by
 * ingest_event_store(). The prepared event holds a reference to rec. */
struct prepared_event {
    json_t *rec;           /* the raw record (JSON path) ... */
    char *raw;             /* ... or its JSON text (CSV fast path) ... */
    int64_t raw_bytes;     /* ... > 0: raw is only the first bytes of a record this big */
    char *cells;           /* ... or made on demand from these (NUL-separated cells) */
    char *(*raw_fn)(const void *ctx, const struct prepared_event *p);
    const void *raw_ctx;
    int rejected, unvalidated, contract_version;
    char reason[32], field[160], msg[256];
    char *name, *xid, *anon, *event_id, *props;
    int64_t occurred_at;
    int64_t line;          /* for reports (CSV) */
    uint64_t xid_hash;     /* hash64(xid) and store_event_key_hash(event_id), made by the
                            * preparing thread (0: not made) */
    uint64_t key_hash;
    int in_arena;          /* the strings live in the batch's arena, not the heap */
};
int ingest_event_prepare(const struct contract_set *cs, const struct ingest_ctx *cx, json_t *rec,
                         struct prepared_event *p);
/* An event already in parts (the fast paths: tracking calls, CRM rows), its strings
 * kept by the caller (an arena) for as long as the prepared event lives. props: the
 * properties as compact JSON with sorted keys and no null at the top (jt_dump with
 * JT_DROP_NULLS). raw_fn makes its raw record, should it become a dead letter. */
struct ingest_parts {
    const char *name, *xid, *anon, *event_id, *props;
    const struct contract *typed_by; /* the event's contract, when props were typed and
                                      * checked by it (contract_type_jt) */
    int64_t occurred_at;
    char *(*raw_fn)(const void *ctx, const struct prepared_event *p);
    const void *raw_ctx;
    size_t max_value_bytes; /* [ingest] max_value_bytes (0: the default) */
};
/* 1 with p prepared exactly as ingest_event_prepare() prepares the same record, when
 * its name and ids are valid, the event's contract in cs (if any) is the one that
 * typed its props, and no value can be over max_value_bytes (props no longer than
 * that); 0 otherwise, p untouched: the caller takes ingest_event_prepare(). */
int ingest_event_prepare_fast(const struct contract_set *cs, const struct ingest_parts *in,
                              struct prepared_event *p);
/* Marks p rejected (p keeps its raw record for the dead-letter store). */
void prepared_event_reject(struct prepared_event *p, const char *reason, const char *field,
                           const char *msg);
int ingest_event_store(struct ingest *in, const struct ingest_ctx *cx, struct prepared_event *p,
                       enum ingest_outcome *out, struct err *e);
/* A hint, a few events ahead of ingest_event_store(p): stage 0, then stage 1 later,
 * bring the cache lines its lookups will touch. Needs p's hashes; never required. */
void ingest_event_prefetch(struct ingest *in, const struct prepared_event *p, int stage);
void prepared_event_release(struct prepared_event *p);
/* Deletes an event that the context's source owns (flag + new seq). */
int ingest_event_delete(struct ingest *in, const struct ingest_ctx *cx, const char *event_id,
                        int *deleted, struct err *e);
/* Flags a contact deleted from a source that owns its rows (a CRM row soft-deleted),
 * in the caller's transaction; *deleted = 0 when there was none, or it was already.
 * Bulk data never revives it. */
int ingest_contact_delete(struct ingest *in, const struct ingest_ctx *cx, const char *xid,
                          int *deleted, struct err *e);
/* Links an anonymous id to a user: merges the anonymous contact's events into it. */
int ingest_link_anonymous(struct ingest *in, const struct ingest_ctx *cx, const char *anon_id,
                          const char *external_id, struct err *e);

/* ---- the Segment tracking spec (tracking.c) ----------------------------------------- */

enum tracking_type { TRACK_NONE, TRACK_IDENTIFY, TRACK_TRACK, TRACK_PAGE, TRACK_SCREEN,
                     TRACK_GROUP, TRACK_ALIAS };
enum tracking_type tracking_type_parse(const char *s);
/* One message of a request, as the ingest queue stores it: exactly one of rejected
 * (kept as a dead letter with raw), an event record, a contact record, or only a link
 * (alias). A link may come with a record: the anonymous id is then merged into the
 * user once the record is in. Tracking messages map onto it (tracking_map: track, page
 * as page_viewed, screen as screen_viewed, group as group_joined, identify as a
 * contact), and so do the native API's records. */
struct ingest_item {
    enum tracking_type type;
    size_t index;              /* in its request */
    json_t *raw;               /* the message as received */
    json_t *event, *contact;   /* native records (ingest_event / ingest_contact) */
    char *link_anon, *link_user;
    int is_contact;            /* a dead letter of it is a contact record (else an event) */
    int prepared;              /* event validated on the request's thread, into prep */
    struct prepared_event prep;
    int rejected;
    int store_rejected;        /* rejected by the writer (not before): undone by a rollback */
    char reason[32], field[160], msg[256];
    enum ingest_outcome outcome; /* set by the queue */
};
/* type TRACK_NONE: the message's own "type" says (a /v1/batch item). batch_sent_at: the
 * batch's sentAt, for messages without their own. Never fails: a message it refuses is
 * marked rejected. */
int tracking_map(const json_t *msg, enum tracking_type type, int64_t received_at,
                 const char *batch_sent_at, struct ingest_item *m);
void ingest_item_release(struct ingest_item *m);
/* The same for a message read by core/jtree.c, when it is a track, page or screen call
 * with a messageId, for an event without a contract in cs: 1 with m prepared (its
 * strings in the arena, which must outlive m). 0 otherwise, m untouched: the caller
 * takes tracking_map(). scratch is any buffer, for the properties' text. */
struct jt;
int tracking_map_fast(const struct jt *msg, enum tracking_type type, int64_t received_at,
                      const char *batch_sent_at, const struct contract_set *cs,
                      size_t max_value_bytes, struct arena *a, struct buf *scratch,
                      struct ingest_item *m);

/* ---- the server's writer (queue.c) ------------------------------------------------- */

struct ingest_queue;
struct ingest_job {
    enum source_kind kind;
    const char *source, *origin; /* "sdk" / "api"; the request id */
    int64_t received_at;
    size_t max_value_bytes;      /* [ingest] max_value_bytes, for ingest_job_prepare() */
    struct ingest_item *items;
    size_t n;
    /* the queue's */
    size_t done; /* items committed (a big job can be committed in parts) */
    int rc, finished;
    struct err err;
    struct ingest_job *next;
};
/* The writer: a worker of ws (core/worker.h) with its own connection (checkpointed
 * beside its commits). */
struct worker_set;
struct metrics;
int ingest_queue_start(struct ingest_queue **out, struct worker_set *ws, const struct config *cfg,
                       struct err *e);
/* Stores what is queued, then stops. NULL-safe. */
void ingest_queue_stop(struct ingest_queue *q);
/* The current contracts, for validating on the request's thread (a reference: free it
 * with contract_set_free). Re-read when a contract version was added: at once when it
 * was added in this process (after ingest_queue_contracts_changed), within 50 ms when
 * by another. */
int ingest_queue_contracts(struct ingest_queue *q, struct store *st, struct contract_set **out,
                           struct err *e);
void ingest_queue_contracts_changed(struct ingest_queue *q);
/* The same when the cached set is fresh enough to need no look at the store: 1 and a
 * reference in *out, else 0 (then call ingest_queue_contracts with a store). */
int ingest_queue_contracts_cached(struct ingest_queue *q, struct contract_set **out);
/* Validates the job's event records now, on the calling thread, so that the writer
 * only stores them. */
void ingest_job_prepare(struct ingest_job *job, const struct contract_set *cs);
/* Queues the job and waits until its transaction committed (0: each item has its
 * outcome, rejections stored as dead letters) or failed. E_BUSY at once when the queue
 * is full. */
int ingest_queue_run(struct ingest_queue *q, struct ingest_job *job, struct err *e);
struct ingest_queue_stats {
    size_t pending;    /* messages queued or being stored */
    uint64_t commits;  /* transactions committed */
    uint64_t yields;   /* of which a big group's part, committed to let small requests by */
};
void ingest_queue_stats(struct ingest_queue *q, struct ingest_queue_stats *out);
/* Registers the queue's figures (engage_ingest_queue_pending, _commits_total,
 * _yields_total) in m; q must outlive m's use. */
void ingest_queue_metrics(struct ingest_queue *q, struct metrics *m);

/* An explicit consent change (the only way back to subscribed): audited by the caller. */
int ingest_set_consent(struct ingest *in, const char *external_id, enum consent_state to,
                       const char *source, const char *reason, enum consent_state *before,
                       struct err *e);

/* ---- contacts as operators see them (contacts.c) ------------------------------------ */

json_t *event_json(const struct store_event *ev);
/* {id, external_id, email, attributes, email_consent, created_at, updated_at}. */
json_t *contact_summary_json(const struct store_contact *c);
/* The summary plus consent_history and recent_events: the events of seqs[0..nseqs) (an
 * audience index's answer) or, with seqs NULL, the `recent` latest found by a scan of
 * every event's record. E_NOTFOUND for an unknown or deleted contact. */
int contact_view(struct store *st, const char *xid, int recent, const int64_t *seqs, int nseqs,
                 json_t **out, struct err *e);
/* An explicit consent change with its reason, audited, in one transaction. */
int contact_consent_change(struct store *st, const struct config *cfg, const char *xid,
                           enum consent_state to, const char *source, const char *reason,
                           const char *actor, const char *req_id, enum consent_state *before,
                           struct err *e);
/* Flags the contact deleted (kept, excluded everywhere, its id never reused), audited. */
int contact_delete(struct store *st, const char *xid, const char *actor, const char *req_id,
                   struct err *e);
/* Undoes a deletion (audited, with reason if given): the contact takes data again and is
 * back in segments; its events refused meanwhile wait in the dead-letter store for
 * 'rejected replay'. *out: the contact (caller owns). E_NOTFOUND unknown, E_CONFLICT
 * not deleted. */
int contact_restore(struct store *st, const char *xid, const char *reason, const char *actor,
                    const char *req_id, json_t **out, struct err *e);

/* ---- the dead-letter store ---------------------------------------------------------- */

struct replay_stats {
    int64_t tried, ingested, still_rejected;
    int64_t not_replayable; /* truncated letters matched: left pending, never re-validated */
};
/* Re-validates pending rejected records matching f against the current contracts
 * and ingests those that pass, in chunks; each chunk is one transaction with its
 * audit record (actor, req_id). A replay counts as a bulk source (sticky consent).
 * A truncated letter is not tried: only the first bytes of its record are known. */
int rejected_replay(struct ingest *in, const struct store_rejected_filter *f, const char *actor,
                    const char *req_id, struct replay_stats *out, struct err *e);

/* A dead letter as the API and the CLI show it: {id, created_at, source, kind, reason,
 * field, message, origin, raw, raw_bytes, truncated, status, attempts, resolved_at?}.
 * raw is the record (JSON) when kept whole, else a string of what was kept. raw_max > 0
 * (a listing): raw longer than that is shown to its first raw_max bytes, with
 * "raw_preview": true. Caller owns the result. */
#define REJECTED_RAW_PREVIEW 4096     /* bytes of raw a listing shows per letter */
#define REJECTED_PAGE_BYTES (1 << 20) /* an API page of letters ends once past this */
json_t *rejected_json(const struct store_rejected *r, size_t raw_max);

/* Marks pending dead letters matching f 'dismissed' (kept, never replayed), audited. */
int rejected_dismiss(struct ingest *in, const struct store_rejected_filter *f, const char *actor,
                     const char *req_id, int64_t *dismissed, struct err *e);

/* ---- CSV import ---------------------------------------------------------------------- */

enum import_kind { IMPORT_CONTACTS, IMPORT_EVENTS };
struct import_opts {
    enum import_kind kind;
    const char *path;      /* "-" = stdin */
    int progress;          /* draw a progress bar on stderr */
    int batch_rows;
};
struct import_report {
    struct ingest_stats stats;
    double seconds;
    /* Rejections by reason, and the first few line numbers of each. */
    json_t *rejected_by_reason; /* {"reason":{"count":N,"lines":[…]}}; owned */
};
/* Streams the file in batches; each batch commits before the next is read. File
 * level problems (no header, missing required column) are errors naming the file,
 * line and field. */
int import_csv(struct ingest *in, const struct import_opts *o, struct import_report *rep,
               struct err *e);
void import_report_release(struct import_report *r);

#endif
