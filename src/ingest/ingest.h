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

#include "../auth/auth.h"
#include "../contract/contract.h"
#include "../core/config.h"
#include "../core/jtree.h"
#include "../core/map.h"
#include "../store/store.h"

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
    struct strmap contact_ids; /* external_id -> id (negative: deleted) */
    struct strmap event_names; /* name -> id */
    struct strmap attr_types;  /* attribute name -> enum vtype */
    int attr_types_loaded;
    int64_t seen_contact_seq; /* contact seq after our last commit */
    int preload_contacts;     /* fill contact_ids in one scan at the next begin */
    struct ingest_stats stats;
    int64_t batch_id;  /* imports.id, or 0 */
    int64_t replay_id; /* while replaying: the dead letter being retried */
    /* The last rejection, for reports: reason code, field and sentence. */
    char last_reason[32], last_field[160], last_msg[256];
};

/* Asks the next ingest_begin() to read every contact's id in one scan rather than one
 * lookup per contact on first sight: for an import expected to touch a large share of
 * the contacts. Once; if another writer later invalidates the cache, lookups resume. */
void ingest_preload_contacts(struct ingest *in);

/* The kind of source: bulk sources can never lift an opt-out (sticky consent: the rule is
 * consent_decide() in consent/consent.h). */
enum source_kind { SRC_CSV, SRC_SDK, SRC_SYNC, SRC_API, SRC_REPLAY };
int source_is_bulk(enum source_kind k);

struct ingest_ctx {
    enum source_kind kind;
    const char *source; /* stored label: "csv", "sdk", "sync:crm", "api" */
    const char *origin; /* where it came from, for the dead-letter store: "file.csv" */
    int64_t line;       /* and its line, if > 0 ("file.csv:12"): set per record, formatted
                         * only when one is rejected */
    int text_mode;      /* values are CSV text cells */
    int owns_rows;      /* the source owns its events (CRM sync): it may update and delete
                         * what it wrote; others are first-write-wins */
    int reject_once;    /* records read again (a sync's lookback): a refused one already
                         * kept as a dead letter, in any status, is not kept again */
    int64_t received_at;
    size_t max_value_bytes; /* [ingest] max_value_bytes, for ingest_event_prepare() (0: the
                             * default); the calls given a session read its configuration */
    int received_is_time;   /* an event without occurred_at takes received_at (a replay of
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
                          const char *raw, int64_t raw_bytes, const char *reason, const char *field,
                          const char *msg, enum ingest_outcome *out, struct err *e);
/* The two halves of ingest_event(), so that validation (pure: contracts only, any
 * thread) can run beside the store writes (one thread, in a batch). prepare never
 * fails: a record it refuses is marked rejected and stored as a dead letter by
 * ingest_event_store(). The prepared event holds a reference to rec. */
struct prepared_event {
    json_t *rec;       /* the raw record (JSON path) ... */
    char *raw;         /* ... or its JSON text (CSV fast path) ... */
    int64_t raw_bytes; /* ... > 0: raw is only the first bytes of a record this big */
    char *cells;       /* ... or made on demand from these (NUL-separated cells) */
    char *(*raw_fn)(const void *ctx, const struct prepared_event *p);
    const void *raw_ctx;
    int rejected, unvalidated, contract_version;
    char reason[32], field[160], msg[256];
    char *name, *xid, *anon, *event_id, *props;
    int64_t occurred_at;
    int64_t line;      /* for reports (CSV) */
    uint64_t xid_hash; /* hash64(xid) and store_event_key_hash(event_id), made by the
                        * preparing thread (0: not made) */
    uint64_t key_hash;
    int in_arena; /* the strings live in the batch's arena, not the heap */
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

enum tracking_type {
    TRACK_NONE,
    TRACK_IDENTIFY,
    TRACK_TRACK,
    TRACK_PAGE,
    TRACK_SCREEN,
    TRACK_GROUP,
    TRACK_ALIAS
};
enum tracking_type tracking_type_parse(const char *s);
/* One message of a request, as the ingest queue stores it: exactly one of rejected
 * (kept as a dead letter with raw), an event record, a contact record, or only a link
 * (alias). A link may come with a record: the anonymous id is then merged into the
 * user once the record is in. Tracking messages map onto it (tracking_map: track, page
 * as page_viewed, screen as screen_viewed, group as group_joined, identify as a
 * contact), and so do the native API's records. */
struct ingest_item {
    enum tracking_type type;
    size_t index;            /* in its request */
    json_t *raw;             /* the message as received */
    json_t *event, *contact; /* native records (ingest_event / ingest_contact) */
    char *link_anon, *link_user;
    int is_contact; /* a dead letter of it is a contact record (else an event) */
    int prepared;   /* event validated on the request's thread, into prep */
    struct prepared_event prep;
    int rejected;
    int store_rejected; /* rejected by the writer (not before): undone by a rollback */
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
    size_t max_value_bytes; /* [ingest] max_value_bytes, for ingest_job_prepare() */
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
    size_t pending;   /* messages queued or being stored */
    uint64_t commits; /* transactions committed */
    uint64_t yields;  /* of which a big group's part, committed to let small requests by */
};
void ingest_queue_stats(struct ingest_queue *q, struct ingest_queue_stats *out);
/* Registers the queue's figures (engage_ingest_queue_pending, _commits_total,
 * _yields_total) in m; q must outlive m's use. */
void ingest_queue_metrics(struct ingest_queue *q, struct metrics *m);

/* ---- a request to ingest, whole (track.c) ------------------------------------------ */

/* The tracking API and the native record API take the same pipeline: authenticate the
 * write key (when it comes in the body), read the body, map its messages, validate them
 * against the current contracts on the calling thread, store them through the server's
 * writer and say what became of each. A front end (HTTP, a provider's webhook) only
 * reads its transport (headers, compression, size caps) and turns the reply into its
 * answer. Any thread; blocks until the writer committed. */
#define INGEST_MAX_ITEMS 2500 /* messages in one request (a /v1/batch, {"items":[…]}) */

/* What the pipeline reaches: the server's. */
struct ingest_front {
    struct ingest_queue *queue;
    struct store_pool *pool;  /* a connection is taken only when needed (a key or the
                               * contracts not in their caches), and given back before
                               * waiting for the writer */
    const struct config *cfg; /* [server] max_json_values, [ingest] max_value_bytes */
};

enum ingest_reply {
    INGEST_REPLY_DONE,         /* body: {"accepted","rejected":[{index,reason,field,message}]}
                                * (and "success": true for tracking calls) */
    INGEST_REPLY_UNREADABLE,   /* the body is not JSON, or past a limit: parse_rc, je */
    INGEST_REPLY_MALFORMED,    /* JSON of the wrong shape: err.msg, err.field (a pointer) */
    INGEST_REPLY_UNAUTHORIZED, /* no write key, or not a valid one: err.msg */
    INGEST_REPLY_FORBIDDEN,    /* the key's role (who.role) may not write */
    INGEST_REPLY_FULL,         /* the writer has too much queued: err.msg; retry in 1 s */
    INGEST_REPLY_FAILED        /* err (a store failure, say) */
};

struct ingest_result {
    enum ingest_reply reply;
    json_t *body; /* INGEST_REPLY_DONE; caller owns */
    int parse_rc; /* INGEST_REPLY_UNREADABLE: E_INVAL or E_TOOBIG, and why in je */
    struct jt_error je;
    int who_known; /* the body's write key was checked: whose it is */
    struct principal who;
    struct err err;
};

/* A tracking call: POST /v1/{type}, type TRACK_NONE for a /v1/batch
 * ({"batch":[…],"sentAt"?,"writeKey"?}). text[0..len): the body, inflated. who: the
 * caller, when the front end authenticated a key already; NULL: "writeKey" in the body
 * must be a key with one of roles. received_at: when the request came in. max_message:
 * the most bytes of JSON one message of a batch may take (a longer one is refused alone,
 * kept as a dead letter). The parsed body and mapped messages live in arena, which the
 * caller resets afterwards. */
struct ingest_track_call {
    enum tracking_type type;
    const char *text;
    size_t len;
    const char *req_id;
    int64_t received_at;
    const struct principal *who;
    unsigned roles;
    size_t max_message;
    struct arena *arena;
};
/* Fills *out (release it with ingest_result_release) and returns out->reply. */
enum ingest_reply ingest_track_request(const struct ingest_front *f,
                                       const struct ingest_track_call *call,
                                       struct ingest_result *out);
/* The native API: one record, or {"items":[…]} (at most INGEST_MAX_ITEMS), of contacts
 * (contacts = 1) or events. The same replies but UNREADABLE and the key's. */
enum ingest_reply ingest_records_request(const struct ingest_front *f, const json_t *body,
                                         int contacts, const char *req_id, int64_t received_at,
                                         struct ingest_result *out);
void ingest_result_release(struct ingest_result *r); /* NULL-safe */

/* An explicit consent change (the only way back to subscribed, consent_decide() with
 * CONSENT_VIA_EXPLICIT): E_INVAL without a reason; audited by the caller. */
int ingest_set_consent(struct ingest *in, const char *external_id, enum consent_state to,
                       const char *source, const char *reason, enum consent_state *before,
                       struct err *e);

/* ---- contacts as operators see them (contacts.c) ------------------------------------ */

json_t *event_json(const struct store_event *ev);
/* {id, external_id, email, attributes, email_consent, created_at, updated_at}. */
json_t *contact_summary_json(const struct store_contact *c);
/* A page of live contacts by id after after_id (email: only that address), at most
 * limit, each as contact_summary_json shows it: *items (caller owns), *last_id the last
 * contact's id. */
int contacts_page_json(struct store *st, int64_t after_id, int limit, const char *email,
                       json_t **items, int64_t *last_id, struct err *e);
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

/* ---- events export (export.c) ------------------------------------------------------- */

/* Every live event after seq since, at most limit (0: all), in seq order, one JSON line
 * each, from one read snapshot: {seq, event_id, event, external_id (null when
 * anonymous), contact_id, occurred_at, received_at, source, contract_version,
 * properties}. emit gets each line (len bytes, '\n' included) and returns 0 to go on,
 * > 0 to stop, < 0 to stop with that error (returned as is; e left to the caller). */
int ingest_events_export(struct store *st, int64_t since, int64_t limit,
                         int (*emit)(void *ctx, const char *line, size_t len), void *ctx,
                         struct err *e);

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
/* One letter as rejected_json(r, 0) shows it: *out (caller owns); E_NOTFOUND for none. */
int rejected_get_json(struct store *st, int64_t id, json_t **out, struct err *e);
/* A page of the letters matching f, each as a listing shows it (raw to its first
 * REJECTED_RAW_PREVIEW bytes): *items (caller owns), *last_id the last letter's id, and
 * *full set when the page ended past REJECTED_PAGE_BYTES before f->limit. */
int rejected_page_json(struct store *st, const struct store_rejected_filter *f, json_t **items,
                       int64_t *last_id, int *full, struct err *e);
/* The rules of a dead-letter filter, for both front ends (list, replay, dismiss): status
 * is pending, replayed, dismissed or all ("all" becomes NULL: every status), kind is
 * contact or event, since is before until. 0, or E_INVAL with e's message the rule
 * broken ("kind must be contact or event"), p->filter the filter that broke it
 * ("status", "kind" or "until") and p->allowed its values ("contact or event"; NULL for
 * until), for a front end that words it its own way. */
struct rejected_problem {
    const char *filter, *allowed;
};
int rejected_filter_check(struct store_rejected_filter *f, struct rejected_problem *p,
                          struct err *e);
/* The letters matching f (raw to f->raw_max bytes, 0: all that was kept), in id order:
 * fn gets each, as for store_rejected_list (a positive return stops the list). For a
 * front end that prints them as they are read. */
int rejected_each(struct store *st, const struct store_rejected_filter *f, store_rejected_fn fn,
                  void *ctx, struct err *e);
/* E_INVAL unless f names what to dismiss (an id, reason, source or kind): the rule of
 * both front ends, and of rejected_dismiss. */
int rejected_dismiss_check(const struct store_rejected_filter *f, struct err *e);

/* Marks pending dead letters matching f 'dismissed' (kept, never replayed), audited. */
int rejected_dismiss(struct ingest *in, const struct store_rejected_filter *f, const char *actor,
                     const char *req_id, int64_t *dismissed, struct err *e);

/* ---- CSV import ---------------------------------------------------------------------- */

enum import_kind { IMPORT_CONTACTS, IMPORT_EVENTS };
struct import_opts {
    enum import_kind kind;
    const char *path; /* "-" = stdin */
    int progress;     /* draw a progress bar on stderr */
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
/* The latest limit imports, newest first ("running": going on now, or killed): fn gets
 * each as the store keeps it. */
int import_list(struct store *st, int limit, store_import_fn fn, void *ctx, struct err *e);
/* An import as the CLI shows it: {id, kind, file, status, started_at, finished_at?,
 * read, inserted, updated, duplicates, rejected}. Caller owns it. */
json_t *import_json(const struct store_import *im);
/* The latest limit imports as import_json shows them: *items (caller owns; NULL on
 * error). */
int import_list_json(struct store *st, int limit, json_t **items, struct err *e);

#endif
