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

static const json_t *value(const struct sync_batch *b, const struct sync_row *r, const char *col)
{
    int i;

    if (col[0] == '\0')
        return NULL;
    for (i = 0; i < b->ncolumns; i++)
        if (strcmp(b->columns[i], col) == 0)
            return json_array_get(r->values, (size_t)i);
    return NULL;
}

/* An id as text: a string as it is, an integer in decimal; NULL for anything else. */
static const char *id_text(const json_t *v, char *buf, size_t n)
{
    if (json_is_string(v) && json_string_length(v) > 0)
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, n, "%lld", (long long)json_integer_value(v));
        return buf;
    }
    return NULL;
}

/* A soft-delete column says deleted when it holds anything but null or false. */
static int is_deleted(const json_t *v)
{
    return v && !json_is_null(v) && !json_is_false(v) &&
           !(json_is_integer(v) && json_integer_value(v) == 0);
}

/* An opt-in column: booleans (and 0/1) mean subscribed/unsubscribed; text is passed on
 * for the contract to check. */
static json_t *consent_of(const json_t *v)
{
    if (json_is_boolean(v))
        return json_string(json_is_true(v) ? "subscribed" : "unsubscribed");
    if (json_is_integer(v))
        return json_string(json_integer_value(v) ? "subscribed" : "unsubscribed");
    return json_is_string(v) ? json_incref((json_t *)v) : NULL;
}

static json_t *mapped(const struct sync_table *t, const struct sync_batch *b,
                      const struct sync_row *r)
{
    json_t *o = json_object();
    int i;

    for (i = 0; i < t->ncols; i++) {
        const json_t *v = value(b, r, t->cols[i].column);
        if (v && !json_is_null(v))
            json_object_set(o, t->cols[i].name, (json_t *)v);
    }
    return o;
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
static void event_id_of(const char *source, const struct sync_table *t,
                        const struct sync_batch *b, const struct sync_row *r, char out[600])
{
    char kbuf[32];
    const char *keytext = id_text(value(b, r, t->key), kbuf, sizeof kbuf);

    snprintf(out, 600, "%s:%s:%s", source, t->table, keytext ? keytext : "");
}

/* An events table's row as an event record (NULL for a soft-deleted row). */
static json_t *event_record(const char *source, const struct sync_table *t,
                            const struct sync_batch *b, const struct sync_row *r)
{
    char xbuf[32], event_id[600];
    const char *xid = id_text(value(b, r, t->external_id), xbuf, sizeof xbuf);
    const json_t *v;
    json_t *rec;

    if (is_deleted(value(b, r, t->deleted)))
        return NULL;
    event_id_of(source, t, b, r, event_id);
    rec = json_object();
    json_object_set_new(rec, "event_id", json_string(event_id));
    if (t->event[0])
        json_object_set_new(rec, "event", json_string(t->event));
    else if ((v = value(b, r, t->event_column)) && !json_is_null(v))
        json_object_set(rec, "event", (json_t *)v);
    if (xid)
        json_object_set_new(rec, "external_id", json_string(xid));
    if ((v = value(b, r, t->occurred_at)) && !json_is_null(v))
        json_object_set(rec, "occurred_at", (json_t *)v);
    json_object_set_new(rec, "properties", mapped(t, b, r));
    return rec;
}

/* Stores one row. prep: the row's event, prepared on the reading thread (events
 * tables, rows not deleted), else NULL. */
static int store_row(struct pass *p, const struct sync_table *t, const struct sync_batch *b,
                     const struct sync_row *r, struct prepared_event *prep, struct err *e)
{
    char kbuf[32], xbuf[32], event_id[600];
    const char *keytext = id_text(value(b, r, t->key), kbuf, sizeof kbuf);
    const char *xid = id_text(value(b, r, t->external_id), xbuf, sizeof xbuf);
    const json_t *v;
    enum ingest_outcome o = INGEST_UNCHANGED;
    json_t *rec;
    int rc, deleted = 0;

    snprintf(p->origin, sizeof p->origin, "%s:%s", t->table, keytext ? keytext : "?");
    p->cx.origin = p->origin;
    if (t->into == SYNC_CONTACTS) {
        if (is_deleted(value(b, r, t->deleted))) {
            rc = xid ? ingest_contact_delete(&p->in, &p->cx, xid, &deleted, e) : 0;
            p->rep->deleted += deleted;
            return rc;
        }
        rec = json_object();
        if (xid)
            json_object_set_new(rec, "external_id", json_string(xid));
        if ((v = value(b, r, t->email)) && !json_is_null(v))
            json_object_set(rec, "email", (json_t *)v);
        if ((v = value(b, r, t->consent)) && !json_is_null(v)) {
            json_t *c = consent_of(v);
            json_object_set_new(rec, "email_consent", c ? c : json_incref((json_t *)v));
        }
        json_object_set_new(rec, "attributes", mapped(t, b, r));
        rc = ingest_contact(&p->in, &p->cx, rec, &o, e);
        json_decref(rec);
        if (rc == 0)
            count(p, o, 0);
        return rc;
    }
    if (prep == NULL) { /* soft-deleted */
        event_id_of(p->source, t, b, r, event_id);
        rc = ingest_event_delete(&p->in, &p->cx, event_id, &deleted, e);
        p->rep->deleted += deleted;
        return rc;
    }
    rc = ingest_event_store(&p->in, &p->cx, prep, &o, e);
    if (rc == 0)
        count(p, o, 1);
    return rc;
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
    int i;

    if (a->garbage) {
        ahead_release(a->garbage);
        free(a->garbage);
        a->garbage = NULL;
    }
    a->rc = sync_read(a->c, a->t, a->cursor, a->key, a->limit, &a->b, &a->e);
    if (a->rc || a->t->into != SYNC_EVENTS)
        return NULL;
    a->preps = xcalloc((size_t)(a->b.n ? a->b.n : 1), sizeof *a->preps);
    a->has_prep = xcalloc((size_t)(a->b.n ? a->b.n : 1), 1);
    for (i = 0; i < a->b.n; i++) {
        json_t *rec = event_record(a->source, a->t, &a->b, &a->b.rows[i]);
        if (rec == NULL)
            continue;
        ingest_event_prepare(a->cs, &a->cx, rec, &a->preps[i]);
        a->has_prep[i] = 1;
        json_decref(rec); /* the prepared event keeps its own reference */
    }
    return NULL;
}

static void ahead_start(struct ahead *a, const char *cursor, const char *key,
                        struct ahead *garbage)
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
    free(a->preps);
    free(a->has_prep);
    a->preps = NULL;
    a->has_prep = NULL;
    if (a->rc == 0)
        sync_batch_release(&a->b);
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
    int rc = store_sync_checkpoint_get(st, source_id, t->table, &cp, e);

    if (rc == 0 && t->into == SYNC_EVENTS)
        rc = contract_set_load(st, &cs, e);
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
        if (rc == 0 && settled && !(o && o->backfill))
            rc = store_sync_checkpoint_set(st, source_id, t->table, b->rows[settled - 1].cursor,
                                           b->rows[settled - 1].key, settled, e);
        if (rc == 0)
            rc = ingest_commit(&p->in, e);
        else
            ingest_rollback(&p->in);
        if (rc == 0 && o && o->on_batch)
            o->on_batch(o->ctx, t, b, clock_now_ms());
        if (rc == 0)
            p->rep->read += b->n;
        if (rc == 0 && o && o->progress)
            fprintf(stderr, "\r  %s: %lld rows", t->table, (long long)p->rep->read);
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
