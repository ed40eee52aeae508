/* segment/segment.h -- the segment engine: rule DSL, audience index, evaluation.
 *
 * DESIGN: a rules document (JSON, docs/dsl.md) is validated against what the
 * store knows (contracts, the attribute registry, event names) and compiled to a
 * plan: fields resolved to typed columns, events to ids, constants typed, groups
 * flattened and reordered cheap-and-selective first. The audience index holds
 * every contact as a dense id with typed attribute columns, and per event name
 * the contacts' event times in CSR layout (per contact, sorted), plus the event
 * property columns that plans ask for, loaded on first use. It loads from the
 * store on the first catch-up and later applies only the changes after the
 * change sequences it has seen, so writes by any process are visible to the next
 * evaluation. Evaluation walks contact ranges on several threads into a dense
 * bitset and gives up at a deadline (E_BUSY) without a partial result.
 *
 * Members are identified contacts: not deleted, not merged into another, with an
 * external id. Thread-safety: an index is used by one evaluation or catch-up at a
 * time (callers hold a lock); plans are immutable once compiled. */
#ifndef ENGAGE_SEGMENT_H
#define ENGAGE_SEGMENT_H

#include <jansson.h>

#include "../core/config.h"
#include "../core/map.h"
#include "../contract/contract.h"
#include "../store/store.h"

struct segment_limits {
    int max_depth; /* nesting of groups, the root group is depth 1 */
    int max_rules; /* attribute + behaviour rules, all levels */
    int max_in_values;
    int max_window_days;
    int timeout_ms; /* evaluation deadline */
    int threads;    /* 0 = one per online core */
};
void segment_limits_from_config(const struct config *cfg, struct segment_limits *out);

/* ---- the audience index ------------------------------------------------------- */

struct audience_index;
void audience_index_new(struct audience_index **out);
void audience_index_free(struct audience_index *ix); /* NULL-safe */
/* Loads (first call) or catches up with the store's contact and event changes.
 * On a store error the index is emptied and the next call loads it again. */
int audience_index_catch_up(struct audience_index *ix, struct store *st, struct err *e);
/* The `limit` latest live events of a contact (their rows = event seqs, and instants),
 * newest first; from the arrays and the pending entries alike. */
size_t audience_index_recent(const struct audience_index *ix, int64_t contact, size_t limit,
                             int64_t *rows, int64_t *times);

/* Catch-ups keep new events of a name pending (counted beside the main arrays) until
 * there are n of them, or a sixteenth of the name's events, then merge. Default 8192;
 * tests set 0 (merge every time) or a large value (never). */
void audience_index_set_merge_min(struct audience_index *ix, size_t n);

/* The store's latest contracts as the last catch-up read them (NULL before the first):
 * what segment_compile() wants for cs. Owned by the index, valid until the next
 * catch-up. */
const struct contract_set *audience_index_contracts(const struct audience_index *ix);

struct audience_stats {
    int64_t contacts; /* dense ids allocated (max contact id) */
    int64_t members;  /* identified, live contacts */
    int64_t events;   /* live events held */
    int64_t pending;  /* of which not merged yet */
    int64_t event_names, attributes, property_columns;
    int64_t bytes; /* heap held by the index */
    int64_t contact_seq, event_seq;
    double load_ms; /* the first catch-up */
};
/* Exact figures: with rows rewritten since the last merge, a pass over the events. */
void audience_index_stats(const struct audience_index *ix, struct audience_stats *out);
/* The same without that pass (events may count rewritten rows twice until a merge). */
void audience_index_stats_quick(const struct audience_index *ix, struct audience_stats *out);

/* ---- rules and plans ------------------------------------------------------------ */

struct segment_plan;
/* Validates rules (a group or a single rule) and compiles it against the index's
 * catalogue and the contracts cs (may be NULL). Every problem goes to errs with a
 * JSON pointer and a sentence; then E_INVAL. The event property columns the plan
 * filters on are loaded into the index from st (once; catch-ups keep them
 * current). Caller owns *out. */
int segment_compile(struct audience_index *ix, struct store *st, const struct contract_set *cs,
                    const json_t *rules, const struct segment_limits *lim,
                    struct segment_plan **out, struct errlist *errs, struct err *e);
void segment_plan_free(struct segment_plan *p); /* NULL-safe */
/* The plan as JSON (for `segment explain` and /plan). Caller owns the result. */
json_t *segment_plan_explain(const struct segment_plan *p);

/* ---- evaluation ----------------------------------------------------------------- */

struct segment_result {
    uint64_t *bits; /* bit i = contact id i is a member; owned */
    size_t nwords;
    int64_t count;
    double took_ms;
};
/* Evaluates the plan at instant now_ms. The index must be the one the plan was
 * compiled against. E_BUSY when the deadline passes (no result); E_INTERNAL when the
 * index was reloaded since the plan was compiled (compile again). */
int segment_eval(struct audience_index *ix, const struct segment_plan *p, int64_t now_ms,
                 const struct segment_limits *lim, struct segment_result *out, struct err *e);
void segment_result_release(struct segment_result *r);

typedef int (*segment_member_fn)(void *ctx, int64_t contact_id, const char *external_id);
/* Calls fn for the members with id > after_id in id order, at most limit (0 = all);
 * a non-zero return from fn stops the walk and is returned. External ids come from the
 * index's column when a rule loaded it; else a page of up to 1,000 reads them from the
 * store, and a longer walk loads the column first. */
int segment_members(struct audience_index *ix, struct store *st, const struct segment_result *r,
                    int64_t after_id, int64_t limit, segment_member_fn fn, void *ctx,
                    struct err *e);
/* The ids of the first n members with id > after_id, into out; how many there were. */
size_t segment_member_ids(const struct segment_result *r, int64_t after_id, int64_t *out, size_t n);

/* ---- saved segments: the service behind /api/v1/segments --------------------------------
 * JSON in and out in the API's shapes (docs/api.md). Validation problems go to errs
 * with pointers into the request body ("/rules/rules/1/within_days", "/name") and
 * give E_INVAL; E_NOTFOUND for an unknown or deleted segment; E_CONFLICT for a name
 * in use. Thread-safe: the index inside is behind a lock. */

struct segment_service;
void segment_service_new(struct segment_service **out, const struct config *cfg);
void segment_service_free(struct segment_service *sv); /* NULL-safe */
/* 1 once the scheduler's first load of the index has finished (always 1 without a
 * scheduler): /readyz waits for it, and preview, save and evaluate answer E_BUSY before. */
int segment_service_ready(struct segment_service *sv);
/* The index's figures, without waiting: when the index is busy (loading, evaluating),
 * the figures of the last call that found it free; returns 1 if they are current. */
int segment_service_stats(struct segment_service *sv, struct audience_stats *out);
/* Registers the index's figures and the evaluations by status (engage_segment_*) in m;
 * the latter read the scrape's store connection. sv must outlive m's use. */
struct metrics;
void segment_service_metrics(struct segment_service *sv, struct metrics *m);
/* {count, sample: [first 20 members], took_ms, as_of}; nothing is saved. */
/* The seqs of a contact's `limit` (at most 64) latest events, newest first, from the
 * index (caught up first): what the contacts API shows without scanning the store. */
int segment_recent_events(struct segment_service *sv, struct store *st, int64_t contact_id,
                          int limit, int64_t *seqs, int *n, struct err *e);
/* contact_view() of a contact with its 20 latest events, taken from the index when it
 * is loaded (milliseconds), else from a scan of the store. *out (caller owns). */
int segment_contact_view(struct segment_service *sv, struct store *st, const char *xid,
                         json_t **out, struct err *e);
int segment_preview(struct segment_service *sv, struct store *st, const json_t *rules, int64_t now,
                    json_t **out, struct errlist *errs, struct err *e);
/* body {name, description?, rules, schedule?: {every_minutes} | null}; audited. */
int segment_create(struct segment_service *sv, struct store *st, const json_t *body,
                   const char *actor, const char *req_id, int64_t *id, struct errlist *errs,
                   struct err *e);
/* Any of the create keys; rules that differ make a new version. Audited. */
int segment_update(struct segment_service *sv, struct store *st, int64_t id, const json_t *body,
                   const char *actor, const char *req_id, struct errlist *errs, struct err *e);
/* Soft delete (evaluations and snapshots are kept). Audited. */
int segment_delete(struct store *st, int64_t id, const char *actor, const char *req_id,
                   struct err *e);
/* The segment with its rules, plan and last successful evaluation. */
int segment_get(struct store *st, int64_t id, json_t **out, struct err *e);
int segment_list(struct store *st, int64_t after_id, int limit, json_t **items,
                 int64_t *next_cursor, struct err *e);
int segment_versions(struct store *st, int64_t id, json_t **items, struct err *e);
/* Evaluates the current version now: a running row first (committed), then the
 * outcome and snapshot in one transaction. *out is the evaluation (status succeeded,
 * failed or timed_out: rc is 0 for all three). actor NULL: not audited (scheduler). */
int segment_evaluate(struct segment_service *sv, struct store *st, int64_t id, const char *trigger,
                     const char *actor, const char *req_id, json_t **out, struct err *e);
/* Newest first, ids below before_id (0 = from the newest). */
int segment_evaluations(struct store *st, int64_t id, int64_t before_id, int limit, json_t **items,
                        int64_t *next_cursor, struct err *e);
/* A page of a snapshot's members (contact ids above after_contact): {evaluation, items}.
 * evaluation_id 0 = the latest successful one. *next_cursor 0 at the end. */
int segment_snapshot_members(struct store *st, int64_t segment_id, int64_t evaluation_id,
                             int64_t after_contact, int limit, json_t **out, int64_t *next_cursor,
                             struct err *e);
/* Runs the scheduled segments that are due (*ran of them). */
int segment_scheduler_tick(struct segment_service *sv, struct store *st, int64_t now, int *ran,
                           struct err *e);
/* At start: evaluations left running by a dead process become failed ("interrupted"). */
int segment_recover(struct store *st, int64_t *interrupted, struct err *e);

/* The worker inside `engage serve` (a worker of ws, core/worker.h, on pooled
 * connections): at start marks interrupted evaluations failed and loads the index, then
 * once a second evaluates the scheduled segments that are due. */
struct segment_scheduler;
struct worker_set;
int segment_scheduler_start(struct segment_scheduler **out, struct worker_set *ws,
                            struct segment_service *sv, struct store_pool *pool, struct err *e);
void segment_scheduler_stop(struct segment_scheduler *sc); /* NULL-safe; waits for it */

/* ---- Unicode simple case folding (docs/dsl.md, "contains") ------------------------ */

/* The simple case fold of one code point (CaseFolding.txt, statuses C and S). */
uint32_t casefold_cp(uint32_t cp);
/* Appends the simple case fold of UTF-8 text s[0..n) to out (invalid bytes kept). */
void casefold_utf8(const char *s, size_t n, struct buf *out);

#endif
