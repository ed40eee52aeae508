/* sync/reconcile.c -- what a source holds against what was stored from it.
 *
 * DESIGN: for each events table, every live row's key is read from the source (through
 * the mapping's own query, in (cursor, key) order) and every live event the source
 * stored is listed from the store (ids "source:table:key"); both sides are grouped by
 * the day of occurred_at (UTC) with a count and an XOR of the keys' hashes, and the keys
 * of a day whose figures differ are compared one by one: missing (in the source, not
 * stored: a row whose updated_at never moved past the checkpoint) and extra (stored, no
 * longer in the source: a hard delete). The report is kept (sync_reconciliations).
 * --repair deletes the extra events and reads the table again (a backfill), which
 * stores the missing ones. Contacts tables are upserts shared with every other source:
 * not reconciled. */
#include <stdlib.h>
#include <string.h>

#include "../ingest/ingest.h"
#include "sync.h"

#define SHOW_KEYS 20 /* keys listed per day and kind in a report */

struct day {
    int64_t day; /* days since 1970-01-01 */
    int64_t src, dst;
    uint64_t src_xor, dst_xor;
};

/* One side's keys (key -> day); the days, both sides' figures, are kept with the
 * source's side. */
struct side {
    struct strmap keys;
    struct day *days;
    int ndays, cap;
};

static struct day *day_of(struct side *a, int64_t d)
{
    int i;

    for (i = 0; i < a->ndays; i++)
        if (a->days[i].day == d)
            return &a->days[i];
    if (a->ndays == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->days = xrealloc(a->days, (size_t)a->cap * sizeof *a->days);
    }
    memset(&a->days[a->ndays], 0, sizeof *a->days);
    a->days[a->ndays].day = d;
    return &a->days[a->ndays++];
}

static int64_t day_of_iso(const struct jt *v)
{
    int64_t ms;

    if (v == NULL || v->type != JT_STR || time_parse_iso(v->u.s, v->n, &ms))
        return -1000000; /* no instant: a day of its own */
    return ms >= 0 ? ms / DAY_MS : (ms - (DAY_MS - 1)) / DAY_MS;
}

struct stored_ctx {
    struct side *days, *dst;
    const char *prefix;
    size_t plen;
    const char *source;
};

static int on_stored(void *ctx, const struct store_event *ev)
{
    struct stored_ctx *s = ctx;
    const char *key;
    int64_t d;
    struct day *dy;

    if (ev->deleted || !ev->source || strcmp(ev->source, s->source) ||
        strncmp(ev->event_id, s->prefix, s->plen))
        return 0;
    key = ev->event_id + s->plen;
    d = ev->occurred_at >= 0 ? ev->occurred_at / DAY_MS : (ev->occurred_at - (DAY_MS - 1)) / DAY_MS;
    strmap_put(&s->dst->keys, key, strlen(key), d);
    dy = day_of(s->days, d);
    dy->dst++;
    dy->dst_xor ^= hash64(key, strlen(key));
    return 0;
}

/* A pending dead letter of this source and table (origin "table:key"): its key. */
struct refused_ctx {
    struct strmap *keys;
    const char *table;
    size_t tlen;
};

static int on_refused(void *ctx, const struct store_rejected *r)
{
    struct refused_ctx *rc = ctx;

    if (r->origin && strncmp(r->origin, rc->table, rc->tlen) == 0 && r->origin[rc->tlen] == ':')
        strmap_put(rc->keys, r->origin + rc->tlen + 1, strlen(r->origin + rc->tlen + 1), 1);
    return 0;
}

static void add_key(json_t *list, const char *key, size_t n)
{
    if (json_array_size(list) < SHOW_KEYS)
        json_array_append_new(list, json_stringn(key, n));
}

/* One events table: its report entry; extra keys into *extra (for a repair). */
static int reconcile_table(struct store *st, struct sync_conn *c, const char *name,
                           const struct sync_table *t, json_t **out, json_t *extra_ids,
                           int64_t *mismatches, struct err *e)
{
    struct side src = {0}, dst = {0};
    struct strmap refused;
    char prefix[300], label[160];
    struct stored_ctx sc;
    char *cursor = NULL, *key = NULL;
    json_t *days = json_array();
    int64_t nsrc = 0, ndst = 0, missing = 0, nextra = 0, nrefused = 0;
    size_t i;
    int rc = 0, k;

    strmap_init(&src.keys);
    strmap_init(&dst.keys);
    strmap_init(&refused);
    /* The source: every live row's key and day. */
    for (;;) {
        struct sync_batch b = {0};
        rc = sync_read(c, t, cursor, key, 5000, &b, e);
        if (rc)
            break;
        for (k = 0; k < b.n; k++) {
            const struct sync_row *r = &b.rows[k];
            const char *kt;
            if (sync_is_deleted(sync_value(r, b.at.deleted)))
                continue; /* soft-deleted: its event is gone too */
            if ((kt = sync_key_text(sync_value(r, b.at.key))) != NULL) {
                struct day *dy = day_of(&src, day_of_iso(sync_value(r, b.at.occurred_at)));
                strmap_put(&src.keys, kt, strlen(kt), dy->day);
                dy->src++;
                dy->src_xor ^= hash64(kt, strlen(kt));
                nsrc++;
            }
        }
        free(cursor);
        free(key);
        cursor = b.n ? xstrdup(b.rows[b.n - 1].cursor) : NULL;
        key = b.n ? xstrdup(b.rows[b.n - 1].key) : NULL;
        k = b.n;
        sync_batch_release(&b);
        if (k < 5000)
            break;
    }
    free(cursor);
    free(key);
    /* The store: every live event of this source and table. */
    snprintf(prefix, sizeof prefix, "%s:%s:", name, t->table);
    snprintf(label, sizeof label, "sync:%s", name);
    sc = (struct stored_ctx){&src, &dst, prefix, strlen(prefix), label};
    if (rc == 0)
        rc = store_events_live(st, 0, on_stored, &sc, e);
    if (rc == 0) { /* rows its contracts refused: kept as dead letters, not missing */
        struct store_rejected_filter f = {.status = "pending", .source = label};
        struct refused_ctx rf = {&refused, t->table, strlen(t->table)};
        rc = store_rejected_list(st, &f, on_refused, &rf, e);
    }
    for (i = 0; rc == 0 && (int)i < src.ndays; i++) {
        struct day *dy = &src.days[i];
        json_t *miss, *ext;
        size_t s;
        int64_t before = missing + nextra;
        char iso[32];
        ndst += dy->dst;
        if (dy->src == dy->dst && dy->src_xor == dy->dst_xor)
            continue;
        miss = json_array();
        ext = json_array();
        /* The keys of that day, both ways. */
        for (s = 0; s < src.keys.cap; s++) {
            const struct strmap_slot *sl = &src.keys.slots[s];
            int64_t d;
            if (sl->key && sl->value == dy->day &&
                !(strmap_get(&dst.keys, sl->key, sl->len, &d) && d == dy->day)) {
                if (strmap_get(&refused, sl->key, sl->len, &d)) {
                    nrefused++; /* a pending dead letter: see `engage rejected list` */
                    continue;
                }
                add_key(miss, sl->key, sl->len);
                missing++;
            }
        }
        for (s = 0; s < dst.keys.cap; s++) {
            const struct strmap_slot *sl = &dst.keys.slots[s];
            int64_t d;
            if (sl->key && sl->value == dy->day &&
                !(strmap_get(&src.keys, sl->key, sl->len, &d) && d == dy->day)) {
                char id[600];
                add_key(ext, sl->key, sl->len);
                snprintf(id, sizeof id, "%s%.*s", prefix, (int)sl->len, sl->key);
                json_array_append_new(extra_ids, json_string(id));
                nextra++;
            }
        }
        if (missing + nextra == before) { /* only refused rows differ that day */
            json_decref(miss);
            json_decref(ext);
            continue;
        }
        time_format_iso(dy->day * DAY_MS, iso);
        iso[10] = '\0';
        json_array_append_new(days, json_pack("{s:s,s:I,s:I,s:o,s:o}", "day",
                                              dy->day == -1000000 ? "none" : iso, "source_rows",
                                              (json_int_t)dy->src, "stored", (json_int_t)dy->dst,
                                              "missing", miss, "extra", ext));
    }
    if (rc == 0) {
        *out =
            json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:o}", "table", t->table, "source_rows",
                      (json_int_t)nsrc, "stored", (json_int_t)ndst, "refused", (json_int_t)nrefused,
                      "missing", (json_int_t)missing, "extra", (json_int_t)nextra, "days", days);
        *mismatches += missing + nextra;
    } else {
        json_decref(days);
    }
    strmap_release(&src.keys);
    strmap_release(&dst.keys);
    strmap_release(&refused);
    free(src.days);
    return rc;
}

int sync_reconcile(struct store *st, const struct config *cfg, const char *source, int repair,
                   json_t **report, int64_t *mismatches, struct err *e)
{
    struct store_sync_source src;
    struct sync_mapping m;
    struct errlist errs = {0};
    struct sync_conn *c = NULL;
    json_t *tables = json_array(), *extra = json_array();
    int64_t started = clock_now_ms();
    int rc, i;

    *report = NULL;
    *mismatches = 0;
    rc = store_sync_source_get(st, source, &src, e);
    if (rc) {
        json_decref(tables);
        json_decref(extra);
        return rc;
    }
    rc = sync_mapping_parse(src.mapping, &m, &errs, e);
    if (rc == 0)
        rc = sync_connect(&src, cfg, &c, e);
    for (i = 0; rc == 0 && i < m.ntables; i++) {
        json_t *entry = NULL;
        if (m.tables[i].into == SYNC_CONTACTS) {
            json_array_append_new(tables,
                                  json_pack("{s:s,s:s}", "table", m.tables[i].table, "skipped",
                                            "contacts tables are upserts "
                                            "shared with every source: not reconciled"));
            continue;
        }
        rc = reconcile_table(st, c, src.name, &m.tables[i], &entry, extra, mismatches, e);
        if (rc == 0)
            json_array_append_new(tables, entry);
        if (rc == 0 && repair && json_array_size(extra)) {
            /* Extra: deleted here (the source owns them). */
            struct ingest in;
            struct ingest_ctx cx = {
                .kind = SRC_SYNC, .owns_rows = 1, .received_at = clock_now_ms()};
            char label[160];
            size_t x;
            int deleted;
            snprintf(label, sizeof label, "sync:%s", src.name);
            cx.source = label;
            ingest_init(&in, st, cfg);
            rc = ingest_begin(&in, e);
            for (x = 0; rc == 0 && x < json_array_size(extra); x++)
                rc = ingest_event_delete(&in, &cx, json_string_value(json_array_get(extra, x)),
                                         &deleted, e);
            rc = rc == 0 ? ingest_commit(&in, e) : (ingest_rollback(&in), rc);
            ingest_release(&in);
        }
        json_array_clear(extra);
    }
    sync_disconnect(c);
    sync_mapping_release(&m);
    /* Missing: a backfill of every events table stores them (and nothing twice). */
    if (rc == 0 && repair && *mismatches) {
        struct sync_opts o = {.backfill = 1};
        struct sync_report rep;
        rc = sync_pass(st, cfg, source, &o, &rep, e);
    }
    if (rc == 0) {
        char *text;
        *report = json_pack("{s:s,s:b,s:I,s:o}", "source", src.name, "repaired", repair,
                            "mismatches", (json_int_t)*mismatches, "tables", tables);
        tables = NULL;
        text = json_dumps(*report, JSON_COMPACT);
        rc = store_begin(st, e);
        if (rc == 0) {
            int64_t id = 0;
            rc = store_sync_reconciliation_add(st, src.name, started, *mismatches, repair, text,
                                               &id, e);
            if (rc == 0)
                json_object_set_new(*report, "id", json_integer(id));
        }
        rc = store_finish(st, rc, e);
        free(text);
    }
    json_decref(tables);
    json_decref(extra);
    store_sync_source_release(&src);
    return rc;
}

/* ---- the kept reports as the API shows them ---- */

struct recs {
    json_t *items;
    int64_t last;
};

static int add_rec(void *ctx, int64_t id, const char *source, int64_t started_at,
                   int64_t finished_at, int64_t mismatches, int repaired, const char *report)
{
    struct recs *rs = ctx;
    json_t *rep = json_loads(report, 0, NULL);

    json_array_append_new(rs->items,
                          json_pack("{s:I,s:s,s:o,s:o,s:I,s:b,s:o}", "id", (json_int_t)id, "source",
                                    source, "started_at", json_iso_or_null(started_at),
                                    "finished_at", json_iso_or_null(finished_at), "mismatches",
                                    (json_int_t)mismatches, "repaired", repaired, "tables",
                                    json_object_get(rep, "tables")
                                        ? json_incref(json_object_get(rep, "tables"))
                                        : json_array()));
    json_decref(rep);
    rs->last = id;
    return 0;
}

int sync_reconciliations_json(struct store *st, int64_t before, int limit, json_t **items,
                              int64_t *last_id, struct err *e)
{
    struct recs rs = {json_array(), 0};
    int rc = store_sync_reconciliations(st, before, limit, add_rec, &rs, e);

    if (rc) {
        json_decref(rs.items);
        rs.items = NULL;
    }
    *items = rs.items;
    *last_id = rs.last;
    return rc;
}
