/* ingest/export.c -- every live event as NDJSON (engage events export).
 *
 * DESIGN: events are stored with a name id and a contact id; an export line names
 * both. The names and the external ids are read first into two arrays indexed by id
 * (a join by array lookup, no query per event), then the events are streamed, all in
 * one read snapshot so that the three reads agree. Each line is built in one buffer
 * and handed to the caller, who writes it. */
#include <stdlib.h>
#include <string.h>

#include "ingest.h"

struct exporter {
    char **names, **xids; /* by event name id, by contact id */
    size_t nnames, nxids;
    int64_t limit, count;
    struct buf line;
    int (*emit)(void *ctx, const char *line, size_t len);
    void *ctx;
    int emit_rc; /* what emit returned when it stopped the export */
};

static int export_name(void *ctx, int64_t id, const char *name)
{
    struct exporter *x = ctx;

    if (id < 0 || id > 10000000)
        return 0;
    if ((size_t)id >= x->nnames) {
        x->names = xrealloc(x->names, (size_t)(id + 1) * sizeof *x->names);
        memset(x->names + x->nnames, 0, ((size_t)id + 1 - x->nnames) * sizeof *x->names);
        x->nnames = (size_t)id + 1;
    }
    x->names[id] = xstrdup(name);
    return 0;
}

static int export_xid(void *ctx, const char *xid, int64_t id, int deleted)
{
    struct exporter *x = ctx;

    (void)deleted;
    if (id <= 0)
        return 0;
    if ((size_t)id >= x->nxids) {
        size_t cap = (size_t)id + 1 > x->nxids * 2 ? (size_t)id + 1 : x->nxids * 2;
        x->xids = xrealloc(x->xids, cap * sizeof *x->xids);
        memset(x->xids + x->nxids, 0, (cap - x->nxids) * sizeof *x->xids);
        x->nxids = cap;
    }
    x->xids[id] = xstrdup(xid);
    return 0;
}

static int export_event(void *ctx, const struct store_event *ev)
{
    struct exporter *x = ctx;
    const char *name =
        ev->name_id >= 0 && (size_t)ev->name_id < x->nnames ? x->names[ev->name_id] : NULL;
    const char *xid =
        ev->contact_id > 0 && (size_t)ev->contact_id < x->nxids ? x->xids[ev->contact_id] : NULL;
    char occ[32], rec[32];
    struct buf *b = &x->line;
    int rc;

    time_format_iso(ev->occurred_at, occ);
    time_format_iso(ev->received_at, rec);
    buf_reset(b);
    buf_printf(b, "{\"seq\":%lld,\"event_id\":", (long long)ev->seq);
    buf_add_json_str(b, ev->event_id, strlen(ev->event_id));
    buf_adds(b, ",\"event\":");
    buf_add_json_str(b, name ? name : "", name ? strlen(name) : 0);
    buf_adds(b, ",\"external_id\":");
    if (xid)
        buf_add_json_str(b, xid, strlen(xid));
    else
        buf_adds(b, "null");
    buf_printf(b, ",\"contact_id\":%lld,\"occurred_at\":\"%s\",\"received_at\":\"%s\",\"source\":",
               (long long)ev->contact_id, occ, rec);
    buf_add_json_str(b, ev->source, strlen(ev->source));
    buf_printf(b, ",\"contract_version\":%d,\"properties\":%s}\n", ev->contract_version, ev->props);
    rc = x->emit(x->ctx, b->p, b->len);
    if (rc) {
        x->emit_rc = rc;
        return rc < 0 ? rc : 1;
    }
    return x->limit > 0 && ++x->count >= x->limit ? 1 : 0;
}

int ingest_events_export(struct store *st, int64_t since, int64_t limit,
                         int (*emit)(void *ctx, const char *line, size_t len), void *ctx,
                         struct err *e)
{
    struct exporter x = {.limit = limit, .emit = emit, .ctx = ctx};
    size_t i;
    int rc;

    buf_init(&x.line);
    rc = store_read_begin(st, e); /* one snapshot: names, contacts and events agree */
    if (rc == 0)
        rc = store_event_names(st, export_name, &x, e);
    if (rc == 0)
        rc = store_contact_ids(st, export_xid, &x, e);
    if (rc == 0)
        rc = store_events_live(st, since, export_event, &x, e);
    if (rc > 0)
        rc = x.emit_rc < 0 ? x.emit_rc : 0; /* the limit, or emit stopped it */
    store_rollback(st);
    for (i = 0; i < x.nnames; i++)
        free(x.names[i]);
    for (i = 0; i < x.nxids; i++)
        free(x.xids[i]);
    free(x.names);
    free(x.xids);
    buf_release(&x.line);
    return rc;
}
