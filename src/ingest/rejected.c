/* ingest/rejected.c -- dead letters as operators see them.
 *
 * DESIGN: one shape for a letter, built here and printed by both the API
 * (GET /api/v1/rejected) and the CLI (engage rejected list|show), so the two cannot
 * drift. A letter keeps at most STORE_REJECTED_MAX_RAW bytes of its record; a listing
 * shows at most REJECTED_RAW_PREVIEW of those per letter, so that no answer grows
 * with what a client once sent (a 300 MB CSV line made a 300 MB answer). */
#include <stdio.h>
#include <string.h>

#include "ingest.h"

json_t *rejected_json(const struct store_rejected *r, size_t raw_max)
{
    size_t n = strlen(r->raw), shown = n;
    json_t *raw = NULL, *item;
    char ts[32];
    int preview = 0;

    if (raw_max && n > raw_max) {
        shown = utf8_prefix(r->raw, n, raw_max);
        preview = 1;
    }
    if (!preview && !r->truncated)
        raw = json_loads(r->raw, 0, NULL);
    if (raw == NULL) { /* the first bytes of a record are not JSON: shown as text */
        char *copy = xmalloc(shown + 1);
        memcpy(copy, r->raw, shown);
        copy[shown] = '\0';
        utf8_sanitize(copy);
        raw = json_string(copy);
        free(copy);
    }
    time_format_iso(r->created_at, ts);
    item =
        json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:I,s:b,s:s,s:i}", "id", (json_int_t)r->id,
                  "created_at", ts, "source", r->source, "kind", r->kind, "reason", r->reason,
                  "field", r->field, "message", r->message, "origin", r->origin, "raw", raw,
                  "raw_bytes", (json_int_t)(r->raw_bytes > 0 ? r->raw_bytes : (int64_t)n),
                  "truncated", r->truncated, "status", r->status, "attempts", r->attempts);
    ASSERT(item);
    if (preview)
        json_object_set_new(item, "raw_preview", json_true());
    if (r->resolved_at) {
        time_format_iso(r->resolved_at, ts);
        json_object_set_new(item, "resolved_at", json_string(ts));
    }
    return item;
}

/* 1 if v is exactly one of the words of set (" a b c "). */
static int one_of(const char *v, const char *set)
{
    char pat[80];

    if (*v == '\0' || strchr(v, ' ') || strlen(v) > 70)
        return 0;
    snprintf(pat, sizeof pat, " %s ", v);
    return strstr(set, pat) != NULL;
}

static int filter_problem(struct rejected_problem *p, const char *filter, const char *allowed,
                          struct err *e)
{
    p->filter = filter;
    p->allowed = allowed;
    return allowed ? ERR(e, E_INVAL, "%s must be %s", filter, allowed)
                   : ERR(e, E_INVAL, "since must be before until");
}

int rejected_filter_check(struct store_rejected_filter *f, struct rejected_problem *p,
                          struct err *e)
{
    p->filter = p->allowed = NULL;
    if (f->status && !one_of(f->status, " pending replayed dismissed all "))
        return filter_problem(p, "status", "pending, replayed, dismissed or all", e);
    if (f->status && strcmp(f->status, "all") == 0)
        f->status = NULL; /* every status */
    if (f->kind && !one_of(f->kind, " contact event "))
        return filter_problem(p, "kind", "contact or event", e);
    if (f->since && f->until && f->since >= f->until)
        return filter_problem(p, "until", NULL, e);
    return 0;
}

int rejected_dismiss_check(const struct store_rejected_filter *f, struct err *e)
{
    if (!f->reason && !f->source && !f->kind && !f->id)
        return ERR(e, E_INVAL, "name what to dismiss: id, reason, source or kind");
    return 0;
}

int rejected_each(struct store *st, const struct store_rejected_filter *f, store_rejected_fn fn,
                  void *ctx, struct err *e)
{
    return store_rejected_list(st, f, fn, ctx, e);
}

static int take_rejected(void *ctx, const struct store_rejected *x)
{
    *(json_t **)ctx = rejected_json(x, 0);
    return 0;
}

int rejected_get_json(struct store *st, int64_t id, json_t **out, struct err *e)
{
    struct store_rejected_filter f = {.id = id, .limit = 1};
    int rc;

    *out = NULL;
    rc = store_rejected_list(st, &f, take_rejected, out, e);
    if (rc == 0 && *out == NULL)
        rc = ERR(e, E_NOTFOUND, "no dead letter %lld", (long long)id);
    return rc;
}

/* A page of letters: it ends once past REJECTED_PAGE_BYTES, whatever the limit. */
struct rej_page {
    json_t *items;
    int64_t last_id;
    size_t bytes;
    int full;
};

static int add_rejected(void *ctx, const struct store_rejected *x)
{
    struct rej_page *p = ctx;

    json_array_append_new(p->items, rejected_json(x, REJECTED_RAW_PREVIEW));
    p->last_id = x->id;
    /* raw is what can be long (x->raw is its preview): JSON escapes at most double it; the
     * rest is capped (message 256 bytes, field 160, origin 512): 1 KB covers it */
    p->bytes += 2 * strlen(x->raw) + 1024;
    if (p->bytes >= REJECTED_PAGE_BYTES) {
        p->full = 1;
        return 1; /* stop: positive, not an error */
    }
    return 0;
}

int rejected_page_json(struct store *st, const struct store_rejected_filter *f, json_t **items,
                       int64_t *last_id, int *full, struct err *e)
{
    struct store_rejected_filter pf = *f;
    struct rej_page p = {json_array(), 0, 0, 0};
    int rc;

    pf.raw_max = REJECTED_RAW_PREVIEW;
    rc = store_rejected_list(st, &pf, add_rejected, &p, e);
    if (rc < 0) {
        json_decref(p.items);
        p.items = NULL;
    }
    *items = p.items;
    *last_id = p.last_id;
    *full = p.full;
    return rc < 0 ? rc : 0;
}
