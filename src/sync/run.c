/* sync/run.c -- a sync pass: every mapped table of a source, from its checkpoint on.
 *
 * DESIGN: a batch of rows is read, turned into contact or event records, and stored
 * through the ingest module in one transaction, which also moves the table's
 * checkpoint to the batch's last settled row (sync.h): a kill at any moment leaves the
 * checkpoint with exactly the rows stored, and a re-read row is stored once (contacts
 * are upserts by external id, events keep the id "<source>:<table>:<key>"). The source
 * owns what it wrote: a changed row updates its event, a soft-deleted row deletes its
 * event or contact. A row its contract refuses goes to the dead-letter store with
 * origin "<table>:<key>" and the checkpoint moves past it (a replay takes it later). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ingest/ingest.h"
#include "sync.h"

/* An opt-in column: booleans (and 0/1) mean subscribed/unsubscribed; text is passed on
 * for the contract to check. */
static json_t *consent_of(const struct jt *v)
{
    if (v->type == JT_TRUE || v->type == JT_FALSE)
        return json_string(v->type == JT_TRUE ? "subscribed" : "unsubscribed");
    if (v->type == JT_INT)
        return json_string(v->u.i ? "subscribed" : "unsubscribed");
    return jt_json(v);
}

static json_t *mapped(const struct sync_table *t, const struct sync_columns *at,
                      const struct sync_row *r)
{
    json_t *o = json_object();
    int i;

    for (i = 0; i < t->ncols; i++) {
        const struct jt *v = sync_value(r, at->mapped[i]);
        if (v && v->type != JT_NULL)
            json_object_set_new(o, t->cols[i].name, jt_json(v));
    }
    return o;
}

/* Sets a record's member to a column's value, unless it is null. */
static void set_column(json_t *rec, const char *member, const struct jt *v)
{
    if (v && v->type != JT_NULL)
        json_object_set_new(rec, member, jt_json(v));
}

struct pass {
    struct ingest in;
    struct ingest_ctx cx;
    struct sync_report *rep;
    char label[160], origin[400];
    const char *source;
};

static void count(struct pass *p, enum ingest_outcome o, int events)
{
    if (o == INGEST_REJECTED)
        p->rep->rejected++;
    else if (o == INGEST_UNCHANGED)
        p->rep->unchanged++;
    else if (events)
        p->rep->events++;
    else
        p->rep->contacts++;
}

/* A row's event id: "source:table:key". */
static size_t event_id_of(const char *source, const struct sync_table *t,
                          const struct sync_columns *at, const struct sync_row *r, char out[600])
{
    const char *keytext = sync_key_text(sync_value(r, at->key));
    int n = snprintf(out, 600, "%s:%s:%s", source, t->table, keytext ? keytext : "");

    return n < 600 ? (size_t)n : 599;
}

/* An events table's row as an event record (NULL for a soft-deleted row). */
static json_t *event_record(const char *source, const struct sync_table *t,
                            const struct sync_columns *at, const struct sync_row *r)
{
    char xbuf[32], event_id[600];
    const char *xid = sync_id_text(sync_value(r, at->external_id), xbuf, sizeof xbuf);
    json_t *rec;

    if (sync_is_deleted(sync_value(r, at->deleted)))
        return NULL;
    event_id_of(source, t, at, r, event_id);
    rec = json_object();
    json_object_set_new(rec, "event_id", json_string(event_id));
    if (t->event[0])
        json_object_set_new(rec, "event", json_string(t->event));
    else
        set_column(rec, "event", sync_value(r, at->event));
    if (xid)
        json_object_set_new(rec, "external_id", json_string(xid));
    set_column(rec, "occurred_at", sync_value(r, at->occurred_at));
    json_object_set_new(rec, "properties", mapped(t, at, r));
    return rec;
}

/* Stores one row. prep: the row's event, prepared on the reading thread (events
 * tables, rows not deleted), else NULL. */
static int store_row(struct pass *p, const struct sync_table *t, const struct sync_batch *b,
                     const struct sync_row *r, struct prepared_event *prep, struct err *e)
{
    char xbuf[32], event_id[600];
    const char *keytext = sync_key_text(sync_value(r, b->at.key));
    const char *xid = sync_id_text(sync_value(r, b->at.external_id), xbuf, sizeof xbuf);
    const struct jt *v;
    enum ingest_outcome o = INGEST_UNCHANGED;
    size_t tn = strlen(t->table), kn = keytext ? strlen(keytext) : 1;
    json_t *rec;
    int rc, deleted = 0;

    /* origin "table:key" (a dead letter's), made for every row: no snprintf here */
    if (tn + kn + 2 > sizeof p->origin)
        kn = sizeof p->origin - tn - 2;
    memcpy(p->origin, t->table, tn);
    p->origin[tn] = ':';
    memcpy(p->origin + tn + 1, keytext ? keytext : "?", kn);
    p->origin[tn + 1 + kn] = '\0';
    p->cx.origin = p->origin;
    if (t->into == SYNC_CONTACTS) {
        if (sync_is_deleted(sync_value(r, b->at.deleted))) {
            rc = xid ? ingest_contact_delete(&p->in, &p->cx, xid, &deleted, e) : 0;
            p->rep->deleted += deleted;
            return rc;
        }
        rec = json_object();
        if (xid)
            json_object_set_new(rec, "external_id", json_string(xid));
        set_column(rec, "email", sync_value(r, b->at.email));
        if ((v = sync_value(r, b->at.consent)) && v->type != JT_NULL)
            json_object_set_new(rec, "email_consent", consent_of(v));
        json_object_set_new(rec, "attributes", mapped(t, &b->at, r));
        rc = ingest_contact(&p->in, &p->cx, rec, &o, e);
        json_decref(rec);
        if (rc == 0)
            count(p, o, 0);
        return rc;
    }
    if (prep == NULL) { /* soft-deleted */
        event_id_of(p->source, t, &b->at, r, event_id);
        rc = ingest_event_delete(&p->in, &p->cx, event_id, &deleted, e);
        p->rep->deleted += deleted;
        return rc;
    }
    rc = ingest_event_store(&p->in, &p->cx, prep, &o, e);
    if (rc == 0)
        count(p, o, 1);
    return rc;
}

/* What a row prepared on the fast path needs to make its record, should it become a
 * dead letter (the unknown-event policy can refuse it when it is stored). */
struct row_origin {
    const char *source;
    const struct sync_table *t;
    struct sync_columns at; /* a copy: the batch struct itself is reused by the reader */
    const struct sync_row *r;
};

static char *row_raw(const void *ctx, const struct prepared_event *p)
{
    const struct row_origin *o = ctx;
    json_t *rec = event_record(o->source, o->t, &o->at, o->r);
    char *text = json_dumps(rec, JSON_COMPACT);

    (void)p;
    json_decref(rec);
    return text;
}

/* A row of an events table prepared without a JSON record in between, its properties
 * typed by the event's contract (if any) straight from the values read: 0 when the
 * general path must take it (a row its contract refuses, say, which is then refused
 * there with the same reason). */
static int prepare_fast(const char *source, const struct sync_table *t, const struct sync_batch *b,
                        const struct sync_row *r, const struct contract_set *cs,
                        size_t max_value_bytes, struct arena *a, struct buf *scratch,
                        struct prepared_event *p)
{
    struct ingest_parts parts = {0};
    const struct jt *ev = sync_value(r, b->at.event), *occ = sync_value(r, b->at.occurred_at);
    const struct contract *c;
    struct jt props = {.type = JT_OBJ};
    struct jt_member *m;
    struct row_origin *o;
    char xbuf[32], event_id[600], msg[256];
    const char *xid = sync_id_text(sync_value(r, b->at.external_id), xbuf, sizeof xbuf);
    size_t n;
    int i, k;

    parts.name = t->event[0] ? t->event : ev && ev->type == JT_STR ? ev->u.s : NULL;
    if (xid == NULL || parts.name == NULL || occ == NULL || occ->type != JT_STR ||
        time_parse_iso(occ->u.s, occ->n, &parts.occurred_at))
        return 0;
    c = cs ? contract_set_event(cs, parts.name) : NULL;
    m = arena_alloc(a, (size_t)(t->ncols + (c ? contract_nprops(c) : 0) + 1) * sizeof *m);
    if (c) { /* as contract_apply(): the declared properties typed, in the contract's order */
        for (k = 0; k < contract_nprops(c); k++) {
            const char *name = contract_prop_name(c, k);
            const struct jt *v = NULL;
            for (i = 0; i < t->ncols && v == NULL; i++)
                if (strcmp(t->cols[i].name, name) == 0)
                    v = sync_value(r, b->at.mapped[i]);
            if (v == NULL || v->type == JT_NULL) {
                if (contract_prop_required(c, k))
                    return 0;
                continue;
            }
            if (contract_type_jt(c, k, v, a, &m[props.n].v, msg, sizeof msg))
                return 0;
            m[props.n].key = name;
            m[props.n++].klen = (uint32_t)strlen(name);
        }
    }
    for (i = 0; i < t->ncols; i++) { /* the others as they are */
        const struct jt *v = sync_value(r, b->at.mapped[i]);
        if (v == NULL || v->type == JT_NULL || (c && contract_prop_type(c, t->cols[i].name) >= 0))
            continue;
        if (c && contract_strict(c))
            return 0;
        m[props.n].key = t->cols[i].name;
        m[props.n].klen = (uint32_t)strlen(t->cols[i].name);
        m[props.n++].v = *v;
    }
    props.u.members = m;
    parts.typed_by = c;
    parts.xid = xid == xbuf ? arena_strndup(a, xbuf, strlen(xbuf)) : xid;
    n = event_id_of(source, t, &b->at, r, event_id);
    parts.event_id = arena_strndup(a, event_id, n);
    buf_reset(scratch);
    jt_dump(scratch, &props, 0);
    parts.props = arena_strndup(a, scratch->p, scratch->len);
    o = arena_alloc(a, sizeof *o);
    *o = (struct row_origin){source, t, b->at, r};
    parts.raw_fn = row_raw;
    parts.raw_ctx = o;
    parts.max_value_bytes = max_value_bytes;
    return ingest_event_prepare_fast(cs, &parts, p);
}

int sync_prepare_event(const char *source, const struct sync_table *t, struct sync_batch *b,
                       const struct sync_row *r, const struct contract_set *cs,
                       const struct ingest_ctx *cx, struct buf *scratch, int general,
                       struct prepared_event *p)
{
    json_t *rec;

    if (sync_is_deleted(sync_value(r, b->at.deleted)))
        return 0;
    if (!general && prepare_fast(source, t, b, r, cs, cx->max_value_bytes, &b->arena, scratch, p))
        return 1;
    rec = event_record(source, t, &b->at, r);
    ingest_event_prepare(cs, cx, rec, p);
    json_decref(rec); /* the prepared event keeps its own reference */
    return 1;
}

/* A batch read ahead on a thread of its own while the previous one is stored: the
 * source's query, and for events tables the records made and validated (prepared),
 * so that the storing thread only stores. */
struct ahead {
    pthread_t tid;
    struct sync_conn *c;
    const struct sync_table *t;
    const char *source;
    const struct contract_set *cs;
    struct ingest_ctx cx;
    char *cursor, *key;
    const char *until_cursor, *until_key; /* a lookback's end (NULL: none) */
    int limit, rc;
    struct sync_batch b;
    struct prepared_event *preps; /* per row, events tables */
    char *has_prep;
    struct err e;
    struct ahead *garbage; /* a stored batch this thread made: freed here, before reading
                            * (freed where it was allocated: freeing the reader's memory
                            * on the storing thread made glibc lock its arenas, and the
                            * pipeline ran at half the speed of no pipeline) */
};

static void ahead_release(struct ahead *a);

static void *read_ahead(void *arg)
{
    struct ahead *a = arg;
    struct sync_range rg = {a->cursor, a->key, a->until_cursor, a->until_key};
    struct buf scratch;
    int i;

    if (a->garbage) { /* released, its arena's chunks then serve this batch */
        struct arena reuse = a->garbage->b.arena;
        memset(&a->garbage->b.arena, 0, sizeof a->garbage->b.arena);
        ahead_release(a->garbage); /* (its prepared events live in reuse: read before reset) */
        free(a->garbage);
        a->garbage = NULL;
        arena_reset(&reuse);
        a->b.arena = reuse;
    }
    a->rc = sync_read_range(a->c, a->t, &rg, a->limit, &a->b, &a->e);
    if (a->rc || a->t->into != SYNC_EVENTS)
        return NULL;
    /* in the batch's arena, whose chunks are reused batch after batch (fresh pages for
     * 3 MB of prepared events a batch cost more than preparing them) */
    a->preps = arena_alloc(&a->b.arena, (size_t)(a->b.n ? a->b.n : 1) * sizeof *a->preps);
    a->has_prep = arena_alloc(&a->b.arena, (size_t)(a->b.n ? a->b.n : 1));
    buf_init(&scratch);
    for (i = 0; i < a->b.n; i++)
        a->has_prep[i] = sync_prepare_event(a->source, a->t, &a->b, &a->b.rows[i], a->cs, &a->cx,
                                            &scratch, 0, &a->preps[i]);
    buf_release(&scratch);
    return NULL;
}

static void ahead_start(struct ahead *a, const char *cursor, const char *key, struct ahead *garbage)
{
    a->garbage = garbage;
    a->cursor = cursor ? xstrdup(cursor) : NULL;
    a->key = key ? xstrdup(key) : NULL;
    a->rc = 0;
    a->preps = NULL;
    a->has_prep = NULL;
    memset(&a->b, 0, sizeof a->b);
    memset(&a->e, 0, sizeof a->e);
    if (pthread_create(&a->tid, NULL, read_ahead, a) != 0)
        read_ahead(a), a->tid = 0;
}

static void ahead_wait(struct ahead *a)
{
    if (a->tid)
        pthread_join(a->tid, NULL);
    a->tid = 0;
    free(a->cursor);
    free(a->key);
    a->cursor = a->key = NULL;
}

static void ahead_release(struct ahead *a)
{
    int i;

    for (i = 0; a->preps && i < a->b.n; i++)
        if (a->has_prep[i])
            prepared_event_release(&a->preps[i]);
    a->preps = NULL;
    a->has_prep = NULL;
    if (a->rc == 0)
        sync_batch_release(&a->b);
}

/* ---- the lookback window ---------------------------------------------------------- */

/* Where a table's checkpoint stood lately, kept with it: [[at_ms, cursor, key], …]
 * (cursor and key as the checkpoint's JSON texts), noted as it moves, oldest first, an
 * entry at most every lookback/16 (so a window is at most 1/16 longer than asked),
 * none before the newest one that is at least lookback old: the window's start (or,
 * while none is that old, the oldest: where the trail begins, at the first checkpoint). */
static json_t *trail_load(const char *text, const char *table)
{
    json_t *t = text ? json_loads(text, 0, NULL) : NULL;
    size_t i;

    for (i = 0; json_is_array(t) && i < json_array_size(t); i++) {
        const json_t *e = json_array_get(t, i);
        if (!json_is_integer(json_array_get(e, 0)) || !json_is_string(json_array_get(e, 1)) ||
            !json_is_string(json_array_get(e, 2)))
            break;
    }
    if (text && (!json_is_array(t) || i < json_array_size(t))) {
        log_warn("sync", "table %s: the lookback trail is damaged: starting it again", table);
        json_decref(t);
        t = NULL;
    }
    return t ? t : json_array();
}

static int64_t entry_at(const json_t *t, size_t i)
{
    return json_integer_value(json_array_get(json_array_get(t, i), 0));
}

static const char *entry_text(const json_t *t, size_t i, size_t k)
{
    return json_string_value(json_array_get(json_array_get(t, i), k));
}

/* The index of the window's start at now; -1 for an empty trail. */
static long trail_start(const json_t *t, int64_t now, int lookback_s)
{
    long i;

    for (i = (long)json_array_size(t) - 1; i > 0; i--)
        if (entry_at(t, (size_t)i) <= now - (int64_t)lookback_s * 1000)
            return i;
    return json_array_size(t) ? 0 : -1;
}

/* The checkpoint moved to (cursor, key) at now: the trail's new text (caller frees), or
 * NULL when it stays as it is. */
static char *trail_note(json_t *t, int64_t now, int lookback_s, const char *cursor, const char *key)
{
    size_t n;
    long start;

    /* The clock went back: positions noted "later" than now are dropped, or the trail
     * would stop moving until the clock caught up with them. */
    while ((n = json_array_size(t)) > 0 && entry_at(t, n - 1) > now)
        json_array_remove(t, n - 1);
    if (n && now - entry_at(t, n - 1) < (int64_t)lookback_s * 1000 / 16)
        return NULL;
    json_array_append_new(t, json_pack("[I,s,s]", (json_int_t)now, cursor, key));
    start = trail_start(t, now, lookback_s);
    while (start-- > 0)
        json_array_remove(t, 0);
    return json_dumps(t, JSON_COMPACT);
}

/* The rows behind the checkpoint, after where it stood lookback seconds ago (the
 * trail's start) up to it, stored again: unchanged ones write nothing, and a row that
 * committed after the checkpoint had passed its cursor (an application's clock behind,
 * a long transaction on a source without the xmin rule) is stored now. The checkpoint
 * does not move. */
static int lookback(struct pass *p, const struct ahead *proto, const char *from_cursor,
                    const char *from_key, const char *to_cursor, const char *to_key, struct err *e)
{
    struct sync_report *rep = p->rep;
    int64_t changed = rep->events + rep->contacts + rep->deleted, rejected = rep->rejected,
            unchanged = rep->unchanged;
    char *cursor = xstrdup(from_cursor), *key = xstrdup(from_key);
    int rc = 0, i, n;

    p->cx.reject_once = 1; /* a refused row's letter, dismissed or not, is not kept again */
    do {
        struct ahead a = *proto;
        a.cursor = cursor;
        a.key = key;
        a.until_cursor = to_cursor;
        a.until_key = to_key;
        memset(&a.b, 0, sizeof a.b);
        read_ahead(&a);
        if (a.rc) {
            *e = a.e;
            rc = a.rc;
            break;
        }
        n = a.b.n;
        rc = ingest_begin(&p->in, e);
        for (i = 0; rc == 0 && i < n; i++)
            rc = store_row(p, a.t, &a.b, &a.b.rows[i],
                           a.has_prep && a.has_prep[i] ? &a.preps[i] : NULL, e);
        rc = rc == 0 ? ingest_commit(&p->in, e) : (ingest_rollback(&p->in), rc);
        rep->reread += n;
        free(cursor);
        free(key);
        cursor = n ? xstrdup(a.b.rows[n - 1].cursor) : NULL;
        key = n ? xstrdup(a.b.rows[n - 1].key) : NULL;
        ahead_release(&a);
    } while (rc == 0 && n == proto->limit);
    free(cursor);
    free(key);
    p->cx.reject_once = 0;
    /* Rows read again count in reread; those that changed something are late. */
    rep->late += rep->events + rep->contacts + rep->deleted - changed;
    rep->rejected = rejected;
    rep->unchanged = unchanged;
    return rc;
}

/* One table from its checkpoint to its end (or to a row not settled yet). Batch k + 1
 * is read (and its events prepared) while batch k is stored. */
static int sync_table(struct pass *p, struct store *st, struct sync_conn *c, int64_t source_id,
                      const struct sync_table *t, int batch, const struct sync_opts *o,
                      struct err *e)
{
    struct store_sync_checkpoint cp;
    struct contract_set *cs = NULL;
    struct ahead a, *done = NULL;
    json_t *trail = NULL;
    int64_t total = 0, read0 = p->rep->read;
    double t0 = clock_mono_ms();
    int live = !(o && o->backfill);
    int rc = store_sync_checkpoint_get(st, source_id, t->table, &cp, e);

    if (rc == 0 && t->into == SYNC_EVENTS)
        rc = contract_set_load(st, p->in.cfg, &cs, e);
    if (rc) {
        store_sync_checkpoint_release(&cp);
        return rc;
    }
    memset(&a, 0, sizeof a);
    a.c = c;
    a.t = t;
    a.source = p->source;
    a.cs = cs;
    a.cx = p->cx;
    a.limit = batch;
    if (live && t->lookback_s > 0) {
        long s;
        trail = trail_load(cp.trail, t->table);
        s = trail_start(trail, clock_now_ms(), t->lookback_s);
        if (s >= 0 && cp.cursor && cp.key &&
            (strcmp(entry_text(trail, (size_t)s, 1), cp.cursor) ||
             strcmp(entry_text(trail, (size_t)s, 2), cp.key)))
            rc = lookback(p, &a, entry_text(trail, (size_t)s, 1), entry_text(trail, (size_t)s, 2),
                          cp.cursor, cp.key, e);
        if (rc) {
            json_decref(trail);
            store_sync_checkpoint_release(&cp);
            contract_set_free(cs);
            return rc;
        }
    }
    if (o && o->progress) {
        struct err ce = {0};
        if (sync_count(c, t, o->backfill ? o->since : NULL, &total, &ce))
            total = 0; /* the bar without its end: rows and rows/s only */
    }
    if (o && o->backfill)
        ahead_start(&a, o->since, NULL, NULL); /* from --since (or the start), not the checkpoint */
    else
        ahead_start(&a, cp.cursor, cp.key, NULL);
    store_sync_checkpoint_release(&cp);
    for (;;) {
        struct ahead cur;
        struct sync_batch *b;
        int i, settled = 0, more;
        ahead_wait(&a);
        cur = a; /* this batch; the next is read into a */
        b = &cur.b;
        if (cur.rc) {
            *e = cur.e;
            rc = cur.rc;
            break;
        }
        if (b->n == 0) {
            ahead_release(&cur);
            break;
        }
        while (settled < b->n && b->rows[settled].settled)
            settled++;
        /* Read on only past a full batch of settled rows: anything else ends the pass
         * (a backfill reads to the end: the live sync takes care of late commits). */
        more = b->n == batch && (settled == b->n || (o && o->backfill));
        if (more)
            ahead_start(&a, b->rows[b->n - 1].cursor, b->rows[b->n - 1].key, done);
        else if (done)
            ahead_release(done), free(done);
        done = NULL;
        rc = ingest_begin(&p->in, e);
        for (i = 0; rc == 0 && i < b->n; i++)
            rc = store_row(p, t, b, &b->rows[i],
                           cur.has_prep && cur.has_prep[i] ? &cur.preps[i] : NULL, e);
        if (rc == 0 && settled && live) {
            const char *cur_c = b->rows[settled - 1].cursor, *cur_k = b->rows[settled - 1].key;
            char *tr =
                trail ? trail_note(trail, clock_now_ms(), t->lookback_s, cur_c, cur_k) : NULL;
            rc = store_sync_checkpoint_set(st, source_id, t->table, cur_c, cur_k, tr, settled, e);
            free(tr);
        }
        if (rc == 0)
            rc = ingest_commit(&p->in, e);
        else
            ingest_rollback(&p->in);
        if (rc == 0 && o && o->on_batch)
            o->on_batch(o->ctx, t, b, clock_now_ms());
        if (rc == 0)
            p->rep->read += b->n;
        if (rc == 0 && o && o->progress)
            progress_line(t->table, p->rep->read - read0, total, p->rep->read - read0,
                          (clock_mono_ms() - t0) / 1000, 0);
        /* Freed by the reading thread with its next batch (or here, when none). */
        done = xmalloc(sizeof *done);
        *done = cur;
        if (rc || !more) {
            ahead_release(done);
            free(done);
            done = NULL;
            if (more) { /* the batch read ahead is dropped: the checkpoint did not move */
                ahead_wait(&a);
                ahead_release(&a);
            }
            break;
        }
    }
    if (done) { /* the pass ended on the batch after it (empty, or an error) */
        ahead_release(done);
        free(done);
    }
    if (o && o->progress)
        progress_line(t->table, 0, 0, p->rep->read - read0, (clock_mono_ms() - t0) / 1000, 1);
    json_decref(trail);
    contract_set_free(cs);
    return rc;
}

static int record_status(struct store *st, int64_t id, const char *error)
{
    struct err e = {0};
    int rc = store_begin(st, &e);

    if (rc == 0)
        rc = store_sync_source_status(st, id, error, &e);
    return store_finish(st, rc, &e);
}

int sync_pass(struct store *st, const struct config *cfg, const char *source,
              const struct sync_opts *o, struct sync_report *rep, struct err *e)
{
    struct store_sync_source src;
    struct sync_mapping m;
    struct errlist errs = {0};
    struct sync_conn *c = NULL;
    struct pass p;
    int rc, i, batch = o && o->batch > 0 ? o->batch : 5000;

    memset(rep, 0, sizeof *rep);
    rc = store_sync_source_get(st, source, &src, e);
    if (rc)
        return rc;
    rc = sync_mapping_parse(src.mapping, &m, &errs, e);
    if (rc) {
        rc = ERR(e, E_INVAL, "source %s: its mapping has problems: %s: %s", source,
                 errs.n ? errs.items[0].path : "", errs.n ? errs.items[0].msg : e->msg);
        store_sync_source_release(&src);
        return rc;
    }
    for (i = 0; o && o->table && i < m.ntables && strcmp(m.tables[i].table, o->table); i++)
        ;
    if (o && o->table && i == m.ntables) {
        rc = ERR(e, E_NOTFOUND, "source %s maps no table \"%s\"", source, o->table);
        goto out;
    }
    rc = sync_connect(&src, cfg, &c, e);
    if (rc)
        goto out;
    memset(&p, 0, sizeof p);
    p.rep = rep;
    p.source = src.name;
    snprintf(p.label, sizeof p.label, "sync:%s", src.name);
    p.cx.kind = SRC_SYNC;
    p.cx.source = p.label;
    p.cx.owns_rows = 1;
    p.cx.received_at = clock_now_ms();
    p.cx.max_value_bytes = (size_t)cfg->max_value_bytes;
    ingest_init(&p.in, st, cfg);
    for (i = 0; rc == 0 && i < m.ntables; i++) {
        if (o && o->table && strcmp(m.tables[i].table, o->table))
            continue;
        rc = sync_table(&p, st, c, src.id, &m.tables[i], batch, o, e);
        rep->tables++;
    }
    ingest_release(&p.in);
out:
    sync_disconnect(c);
    if (!(o && o->backfill)) /* a backfill's trouble is its caller's, not the source's status */
        record_status(st, src.id, rc ? e->msg : NULL);
    sync_mapping_release(&m);
    store_sync_source_release(&src);
    return rc;
}
