/* ingest/rejected.c -- dead letters as operators see them.
 *
 * DESIGN: one shape for a letter, built here and printed by both the API
 * (GET /api/v1/rejected) and the CLI (engage rejected list|show), so the two cannot
 * drift. A letter keeps at most STORE_REJECTED_MAX_RAW bytes of its record; a listing
 * shows at most REJECTED_RAW_PREVIEW of those per letter, so that no answer grows
 * with what a client once sent (a 300 MB CSV line made a 300 MB answer). */
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
    item = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:I,s:b,s:s,s:i}", "id",
                     (json_int_t)r->id, "created_at", ts, "source", r->source, "kind", r->kind,
                     "reason", r->reason, "field", r->field, "message", r->message, "origin",
                     r->origin, "raw", raw, "raw_bytes",
                     (json_int_t)(r->raw_bytes > 0 ? r->raw_bytes : (int64_t)n), "truncated",
                     r->truncated, "status", r->status, "attempts", r->attempts);
    ASSERT(item);
    if (preview)
        json_object_set_new(item, "raw_preview", json_true());
    if (r->resolved_at) {
        time_format_iso(r->resolved_at, ts);
        json_object_set_new(item, "resolved_at", json_string(ts));
    }
    return item;
}
