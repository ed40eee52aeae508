/* sync/mapping.c -- a source's mapping (docs/sync.md): parsed and checked at once, every
 * problem reported with its JSON pointer, before anything is read from the source. */
#include <stdlib.h>
#include <string.h>

#include "sync.h"

/* A column or table name: letters, digits, '_' and '$', not starting with a digit
 * (tables may be "schema.table"). Quoted when queried, but kept plain here so a mapping
 * cannot smuggle in SQL. */
static int ident_ok(const char *s, int dotted)
{
    int dots = 0;
    size_t i, n = strlen(s);

    if (n == 0 || n >= 128)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.' && dotted && i > 0 && i + 1 < n && s[i - 1] != '.' && dots++ == 0)
            continue;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$' ||
              (c >= '0' && c <= '9' && i > 0 && s[i - 1] != '.')))
            return 0;
    }
    return 1;
}

/* A column member: copied into out when present and a valid name. */
static void column(const json_t *t, const char *k, int required, char out[128], const char *base,
                   struct errlist *errs)
{
    const json_t *v = json_object_get(t, k);
    char path[160];

    snprintf(path, sizeof path, "%s/%s", base, k);
    out[0] = '\0';
    if (v == NULL || json_is_null(v)) {
        if (required)
            errlist_add(errs, path, "is required: the name of a column");
        return;
    }
    if (!json_is_string(v) || !ident_ok(json_string_value(v), 0)) {
        errlist_add(errs, path, "must be a column name (letters, digits, _ and $)");
        return;
    }
    snprintf(out, 128, "%s", json_string_value(v));
}

static void columns(const json_t *t, const char *k, struct sync_table *out, const char *base,
                    struct errlist *errs)
{
    const json_t *m = json_object_get(t, k);
    const char *name;
    json_t *v;
    char path[200];

    snprintf(path, sizeof path, "%s/%s", base, k);
    if (m == NULL)
        return;
    if (!json_is_object(m)) {
        errlist_add(errs, path, "must be an object: {\"name\": \"column\", ...}");
        return;
    }
    out->cols = xcalloc(json_object_size(m) + 1, sizeof *out->cols);
    json_object_foreach((json_t *)m, name, v) {
        char p[360];
        snprintf(p, sizeof p, "%s/%s", path, name);
        if (strlen(name) == 0 || strlen(name) >= 128) {
            errlist_add(errs, p, "a name of 1 to 127 bytes");
            continue;
        }
        if (!json_is_string(v) || !ident_ok(json_string_value(v), 0)) {
            errlist_add(errs, p, "must be a column name (letters, digits, _ and $)");
            continue;
        }
        snprintf(out->cols[out->ncols].name, 128, "%s", name);
        snprintf(out->cols[out->ncols].column, 128, "%s", json_string_value(v));
        out->ncols++;
    }
}

static const char *const known_keys[] = {
    "table",           "into",       "key",   "cursor",      "external_id", "email",
    "email_consent",   "attributes", "event", "occurred_at", "properties",  "deleted",
    "lookback_seconds"};

static void table(const json_t *t, int i, struct sync_table *out, struct errlist *errs)
{
    char base[64], path[128];
    const json_t *into = json_object_get(t, "into"), *ev;
    const char *k;
    json_t *v;
    size_t j;

    snprintf(base, sizeof base, "/tables/%d", i);
    if (!json_is_object(t)) {
        errlist_add(errs, base, "must be an object");
        return;
    }
    json_object_foreach((json_t *)t, k, v) {
        for (j = 0; j < sizeof known_keys / sizeof *known_keys && strcmp(k, known_keys[j]); j++)
            ;
        if (j == sizeof known_keys / sizeof *known_keys) {
            snprintf(path, sizeof path, "%s/%.60s", base, k);
            errlist_add(errs, path, "unknown member (see docs/sync.md)");
        }
    }
    snprintf(path, sizeof path, "%s/table", base);
    v = json_object_get(t, "table");
    if (!json_is_string(v) || !ident_ok(json_string_value(v), 1))
        errlist_add(errs, path, "is required: the table's name (\"table\" or \"schema.table\")");
    else
        snprintf(out->table, sizeof out->table, "%s", json_string_value(v));
    snprintf(path, sizeof path, "%s/into", base);
    if (json_is_string(into) && strcmp(json_string_value(into), "contacts") == 0) {
        out->into = SYNC_CONTACTS;
    } else if (json_is_string(into) && strcmp(json_string_value(into), "events") == 0) {
        out->into = SYNC_EVENTS;
    } else {
        errlist_add(errs, path, "must be \"contacts\" or \"events\"");
        return;
    }
    column(t, "key", 1, out->key, base, errs);
    column(t, "cursor", 1, out->cursor, base, errs);
    column(t, "external_id", 1, out->external_id, base, errs);
    column(t, "deleted", 0, out->deleted, base, errs);
    v = json_object_get(t, "lookback_seconds");
    snprintf(path, sizeof path, "%s/lookback_seconds", base);
    if (v && (!json_is_integer(v) || json_integer_value(v) < 0 ||
              json_integer_value(v) > SYNC_MAX_LOOKBACK_S))
        errlist_add(errs, path, "must be an integer from 0 to %d (seconds)", SYNC_MAX_LOOKBACK_S);
    else if (v && out->into == SYNC_CONTACTS && json_integer_value(v))
        errlist_add(errs, path,
                    "events tables only: a contacts row read again would undo what "
                    "other sources changed since");
    else if (v)
        out->lookback_s = (int)json_integer_value(v);
    if (out->into == SYNC_CONTACTS) {
        column(t, "email", 0, out->email, base, errs);
        column(t, "email_consent", 0, out->consent, base, errs);
        columns(t, "attributes", out, base, errs);
        if (json_object_get(t, "properties") || json_object_get(t, "event") ||
            json_object_get(t, "occurred_at")) {
            snprintf(path, sizeof path, "%s", base);
            errlist_add(errs, path,
                        "a contacts table takes attributes, not event, occurred_at "
                        "or properties");
        }
        return;
    }
    column(t, "occurred_at", 1, out->occurred_at, base, errs);
    columns(t, "properties", out, base, errs);
    ev = json_object_get(t, "event");
    snprintf(path, sizeof path, "%s/event", base);
    if (json_is_string(ev) && json_string_length(ev) > 0 && json_string_length(ev) <= 128) {
        snprintf(out->event, sizeof out->event, "%s", json_string_value(ev));
    } else if (json_is_object(ev) && json_is_string(json_object_get(ev, "column")) &&
               ident_ok(json_string_value(json_object_get(ev, "column")), 0)) {
        snprintf(out->event_column, sizeof out->event_column, "%s",
                 json_string_value(json_object_get(ev, "column")));
    } else {
        errlist_add(errs, path,
                    "is required: an event name, or {\"column\": \"...\"} to take "
                    "it from a column");
    }
    if (json_object_get(t, "attributes") || json_object_get(t, "email")) {
        snprintf(path, sizeof path, "%s", base);
        errlist_add(errs, path, "an events table takes properties, not attributes or email");
    }
}

int sync_mapping_parse(const char *text, struct sync_mapping *out, struct errlist *errs,
                       struct err *e)
{
    json_error_t je;
    json_t *doc = json_loads(text, 0, &je), *tables;
    size_t i, j;

    memset(out, 0, sizeof *out);
    if (doc == NULL) {
        json_error_tidy(&je);
        errlist_add(errs, "", "not valid JSON: %s (line %d, column %d)", je.text, je.line,
                    je.column);
        return ERR(e, E_INVAL, "the mapping is not valid JSON");
    }
    tables = json_object_get(doc, "tables");
    if (!json_is_array(tables) || json_array_size(tables) == 0 || json_array_size(tables) > 64) {
        errlist_add(errs, "/tables", "is required: an array of 1 to 64 tables");
    } else {
        out->tables = xcalloc(json_array_size(tables), sizeof *out->tables);
        out->ntables = (int)json_array_size(tables);
        for (i = 0; i < json_array_size(tables); i++)
            table(json_array_get(tables, i), (int)i, &out->tables[i], errs);
        for (i = 0; i < json_array_size(tables); i++)
            for (j = 0; j < i; j++)
                if (out->tables[i].table[0] &&
                    strcmp(out->tables[i].table, out->tables[j].table) == 0) {
                    char path[64];
                    snprintf(path, sizeof path, "/tables/%zu/table", i);
                    errlist_add(errs, path, "is mapped twice (tables %zu and %zu)", j, i);
                }
    }
    json_decref(doc);
    if (errs->n) {
        sync_mapping_release(out);
        return ERR(e, E_INVAL, "the mapping has %d problem%s", errs->n, errs->n == 1 ? "" : "s");
    }
    return 0;
}

void sync_mapping_release(struct sync_mapping *m)
{
    int i;

    for (i = 0; i < m->ntables; i++)
        free(m->tables[i].cols);
    free(m->tables);
    memset(m, 0, sizeof *m);
}
