/* ingest/csv.c -- streaming CSV import of contacts and events (libcsv).
 *
 * DESIGN: the file is read in 1 MiB chunks and parsed by libcsv; each complete
 * row becomes a record for ingest_contact()/ingest_event(). Rows are grouped in
 * batches of import_batch_rows, each committed (with the import's progress row)
 * before the next is read, so a kill loses at most the batch in flight and a
 * re-run stores nothing twice (events dedupe on event_id, contacts upsert).
 * Memory is constant: one row, one batch's caches, capped cell and row sizes.
 * Line numbers are physical lines (a quoted newline counts), so reports point
 * at what an editor shows.
 *
 * Size caps: a cell over [ingest] max_value_bytes, or a row whose cells pass
 * [ingest] max_row_bytes, is never held whole. libcsv gathers a cell in its own
 * buffer and hands it over only when it ends, so it is fed in slices no longer than
 * the current cell may still grow; past its limit the cell is cut after the slice:
 * its first 4 KiB kept (for the dead letter), the rest dropped and counted. Such a
 * row becomes a truncated dead letter naming the line, the column and the cap, and
 * the import goes on. */
#include <csv.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ingest.h"
#include "ingest_int.h"

#define CSV_MAX_COLUMNS 1024
/* Of a cell past a cap, what its dead letter shows (the other cells of the row fit
 * beside it). */
#define CSV_CELL_HEAD 4096
/* libcsv holds this much of a cell being dropped. */
#define CSV_DROP_WINDOW (64 * 1024)
/* Left in libcsv's buffer by a cut: it may take back a closing quote (never spaces:
 * no_space()). */
#define CSV_CUT_TAIL 1
#define REPORT_LINES_PER_REASON 10

struct row {
    struct buf data; /* fields, NUL-separated */
    size_t *off;     /* start of each field in data */
    size_t nfields, cap;
};

struct import_state {
    struct ingest *in;
    const struct import_opts *o;
    struct import_report *rep;
    struct err *e;
    const char *fname; /* for messages */
    struct row row;
    char **cols; /* header */
    size_t ncols;
    int col_xid, col_event, col_time, col_eid, col_email, col_consent, col_anon;
    int64_t line, row_line;
    int in_row, header_done;
    _Atomic int rc; /* first store/fatal error; stops the import */
    int64_t in_batch;
    int64_t batch_id;
    _Atomic int64_t rows_parsed; /* for the progress line (the writer owns in->stats) */
    /* Events: the reader thread validates, the writer thread stores (see pipe_*). */
    struct contract_set *cs; /* the reader's contracts, loaded when the import starts */
    struct ev_plan *plans;   /* one per event name seen */
    size_t nplans;
    int *prop_order; /* property columns, by name (byte order) */
    size_t nprops;
    struct buf props;            /* scratch for one row: typed values ... */
    struct buf json;             /* scratch: the row's properties as stored */
    size_t *slot_off, *slot_len; /* ... and where each column's value is in it */
    struct ev_batch *filling;
    pthread_t writer;
    int writer_started;
    pthread_mutex_t mu; /* mu protects handoff, spare, closed */
    pthread_cond_t cv;
    struct ev_batch *handoff; /* a full batch waiting for the writer */
    struct ev_batch *spare;   /* empty batches coming back (a list) */
    struct err werr;          /* the writer thread's error (the reader owns *e) */
    struct err rerr;          /* the reader's (s->e points here during the import) */
    _Atomic int writer_won;   /* the first error came from the writer */
    int nul_col;              /* a cell of the current row held a NUL byte: its column */
    int closed;
    size_t max_value, max_row; /* [ingest] max_value_bytes, max_row_bytes */
    /* The row being read, and whether it passed a cap (then it is a dead letter): */
    int64_t row_bytes;             /* bytes of its cells so far, kept or not */
    int64_t cell_dropped;          /* bytes of the current cell dropped (0: none) ... */
    struct buf cell_head;          /* ... and its first CSV_CELL_HEAD bytes, kept */
    int too_big;                   /* 0, or the first cap the row passed: BIG_VALUE, BIG_ROW */
    int big_col;                   /* BIG_VALUE: the cell's column ... */
    int64_t big_bytes;             /* ... and its size */
    int row_full;                  /* past max_row_bytes: its later cells are not kept */
    struct ingest_stats committed; /* the counts of what is committed (the report after a
                                    * failure: a rolled-back batch stored nothing) */
};

enum { BIG_VALUE = 1, BIG_ROW };

/* How this file's columns map onto one event's contract (the CSV fast path). */
struct ev_plan {
    char *name;
    const struct contract *c; /* NULL: no contract */
    int *spec;                /* per column: the contract property it is, or -1 */
    int *col_of;              /* per contract property: its column, or -1 */
    int first_missing;        /* a required property with no column, or -1 */
    int occ_spec;             /* the property that gives occurred_at, or -1 */
};

struct ev_batch {
    struct prepared_event *items;
    size_t n, cap;
    struct arena arena;    /* the items' strings (reset when the batch is reused) */
    struct ev_batch *next; /* in the spare list */
};

/* Records the import's first error; later ones (and 0) never overwrite it. Either
 * thread may call it. */
static int set_rc(struct import_state *s, int rc)
{
    int zero = 0;

    if (rc)
        atomic_compare_exchange_strong(&s->rc, &zero, rc);
    return rc;
}

/* The writer's version: also notes that its error is the one to report. */
static void set_rc_writer(struct import_state *s, int rc)
{
    int zero = 0;

    if (rc && atomic_compare_exchange_strong(&s->rc, &zero, rc))
        atomic_store(&s->writer_won, 1);
}

/* No byte is a space to libcsv: by default it drops the spaces and tabs around an
 * unquoted cell (and around a quoted one's quotes), so "Pune " was stored as "Pune" and
 * a cell of spaces was absent. In RFC 4180 they belong to the field. */
static int no_space(unsigned char c)
{
    (void)c;
    return 0;
}

static void row_add(struct row *r, const char *p, size_t n)
{
    if (r->nfields == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->off = xrealloc(r->off, r->cap * sizeof *r->off);
    }
    r->off[r->nfields++] = r->data.len;
    buf_add(&r->data, p, n);
    buf_addc(&r->data, '\0');
}

static const char *row_field(const struct row *r, size_t i)
{
    return r->data.p + r->off[i];
}

static int find_col(const struct import_state *s, const char *name)
{
    size_t i;

    for (i = 0; i < s->ncols; i++)
        if (strcmp(s->cols[i], name) == 0)
            return (int)i;
    return -1;
}

/* A header without a required column: name every missing one, with a hint at the
 * usual causes (case, another delimiter). */
static int missing_columns(struct import_state *s)
{
    const char *kind = s->o->kind == IMPORT_CONTACTS ? "a contacts file" : "an events file";
    const char *need[2];
    char list[128] = "", hint[300] = "";
    size_t i, j, n = 0;

    if (s->col_xid < 0 && (s->o->kind == IMPORT_CONTACTS || s->col_anon < 0))
        need[n++] = "external_id";
    if (s->o->kind == IMPORT_EVENTS && s->col_event < 0)
        need[n++] = "event";
    for (i = 0; i < n; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s\"%s\"", i ? " and " : "", need[i]);
        for (j = 0; j < s->ncols && !hint[0]; j++)
            if (strcasecmp(s->cols[j], need[i]) == 0)
                snprintf(hint, sizeof hint, " (found \"%s\": names are case-sensitive)",
                         s->cols[j]);
    }
    if (!hint[0] && s->ncols == 1 && strpbrk(s->cols[0], ";\t|"))
        snprintf(hint, sizeof hint,
                 " (the header is one column: is the file separated by ';', "
                 "'|' or tabs? Only commas separate columns)");
    return ERRF(s->e, E_INVAL, need[0], "%s:%lld: column%s %s %s required in %s%s", s->fname,
                (long long)s->row_line, n > 1 ? "s" : "", list, n > 1 ? "are" : "is", kind, hint);
}

static int take_header(struct import_state *s)
{
    size_t i, j;

    if (s->row.nfields > CSV_MAX_COLUMNS)
        return ERR(s->e, E_INVAL, "%s:%lld: the header has %zu columns, more than %d", s->fname,
                   (long long)s->row_line, s->row.nfields, CSV_MAX_COLUMNS);
    s->ncols = s->row.nfields;
    s->cols = xcalloc(s->ncols, sizeof *s->cols);
    for (i = 0; i < s->ncols; i++) {
        const char *f = row_field(&s->row, i);
        if (i == 0 && strncmp(f, "\xEF\xBB\xBF", 3) == 0)
            f += 3; /* UTF-8 byte order mark */
        if (!utf8_valid(f, strlen(f)) || (int)i == s->nul_col)
            return ERRF(s->e, E_INVAL, "header",
                        "%s:%lld: the name of column %zu is not valid "
                        "UTF-8 (save the file as UTF-8)",
                        s->fname, (long long)s->row_line, i + 1);
        s->cols[i] = xstrdup(f);
        if (*s->cols[i] == '\0')
            return ERRF(s->e, E_INVAL, "header", "%s:%lld: column %zu has an empty name", s->fname,
                        (long long)s->row_line, i + 1);
        if (strchr(" \t", f[0]) || strchr(" \t", f[strlen(f) - 1]))
            return ERRF(s->e, E_INVAL, s->cols[i],
                        "%s:%lld: the name of column %zu, \"%s\", has "
                        "spaces around it (names are matched exactly: remove them)",
                        s->fname, (long long)s->row_line, i + 1, s->cols[i]);
        for (j = 0; j < i; j++)
            if (strcmp(s->cols[j], s->cols[i]) == 0)
                return ERRF(s->e, E_INVAL, s->cols[i], "%s:%lld: column \"%s\" appears twice",
                            s->fname, (long long)s->row_line, s->cols[i]);
    }
    s->col_xid = find_col(s, "external_id");
    s->col_email = find_col(s, "email");
    s->col_consent = find_col(s, "email_consent");
    s->col_event = find_col(s, "event");
    s->col_time = find_col(s, "occurred_at");
    s->col_eid = find_col(s, "event_id");
    s->col_anon = find_col(s, "anonymous_id");
    if ((s->o->kind == IMPORT_CONTACTS && s->col_xid < 0) ||
        (s->o->kind == IMPORT_EVENTS && ((s->col_xid < 0 && s->col_anon < 0) || s->col_event < 0)))
        return missing_columns(s);
    s->header_done = 1;
    return 0;
}

static json_t *row_record(struct import_state *s)
{
    json_t *rec = json_object(), *bag = json_object();
    size_t i;
    int is_contacts = s->o->kind == IMPORT_CONTACTS;

    for (i = 0; i < s->ncols; i++) {
        const char *f = i < s->row.nfields ? row_field(&s->row, i) : "";
        int c = (int)i;
        if (c == s->col_xid || c == s->col_anon ||
            (is_contacts && (c == s->col_email || c == s->col_consent)) ||
            (!is_contacts && (c == s->col_event || c == s->col_time || c == s->col_eid))) {
            if (*f)
                json_object_set_new(rec, s->cols[i], json_string(f));
        } else if (*f) {
            json_object_set_new(bag, s->cols[i], json_string(f));
        }
    }
    json_object_set_new(rec, is_contacts ? "attributes" : "properties", bag);
    return rec;
}

static void note_rejection(struct import_state *s, int64_t line)
{
    struct ingest *in = s->in;
    json_t *r = json_object_get(s->rep->rejected_by_reason, in->last_reason);
    json_t *lines;

    if (r == NULL) {
        r = json_pack("{s:I,s:[],s:[]}", "count", (json_int_t)0, "lines", "examples");
        json_object_set_new(s->rep->rejected_by_reason, in->last_reason, r);
    }
    json_object_set_new(r, "count",
                        json_integer(json_integer_value(json_object_get(r, "count")) + 1));
    lines = json_object_get(r, "lines");
    if (json_array_size(lines) < REPORT_LINES_PER_REASON) {
        json_array_append_new(lines, json_integer(line));
        json_array_append_new(json_object_get(r, "examples"),
                              json_pack("{s:I,s:s,s:s}", "line", (json_int_t)line, "field",
                                        in->last_field, "message", in->last_msg));
    }
}

static int batch_flush_e(struct import_state *s, int final, struct err *e);
static int batch_flush(struct import_state *s, int final)
{
    return batch_flush_e(s, final, s->e);
}

static int batch_flush_e(struct import_state *s, int final, struct err *e)
{
    struct store_import im = {
        .id = s->batch_id,
        .status = final ? "done" : "running",
        .finished_at = final ? clock_now_ms() : 0,
        .read = s->in->stats.read,
        .inserted = s->in->stats.inserted,
        .updated = s->in->stats.updated,
        .duplicates = s->in->stats.duplicates,
        .rejected = s->in->stats.rejected,
    };
    int rc;

    if (!store_in_tx(s->in->st))
        return 0;
    rc = store_import_progress(s->in->st, &im, e);
    if (rc == 0)
        rc = ingest_commit(s->in, e);
    if (rc == 0)
        s->committed = s->in->stats; /* (the writer's, during an events import) */
    return rc;
}

/* ---- events: validate here, store on the writer thread ------------------------- */

/* Stores one full batch in one transaction, with the import's progress row. */
static int store_batch(struct import_state *s, struct ev_batch *b)
{
    struct ingest_ctx cx = {.kind = SRC_CSV, .source = "csv", .origin = s->fname, .text_mode = 1};
    enum ingest_outcome o;
    size_t i;
    int rc;

    rc = ingest_begin(s->in, &s->werr);
    cx.received_at = clock_now_ms();
    for (i = 0; i < b->n && rc == 0; i++) {
        /* The lookups of rows ahead are started now: they miss the cache otherwise. */
        if (i + 8 < b->n)
            ingest_event_prefetch(s->in, &b->items[i + 8], 0);
        if (i + 4 < b->n)
            ingest_event_prefetch(s->in, &b->items[i + 4], 1);
        cx.line = b->items[i].line;
        rc = ingest_event_store(s->in, &cx, &b->items[i], &o, &s->werr);
        if (rc == 0 && o == INGEST_REJECTED)
            note_rejection(s, b->items[i].line);
    }
    /* The reader frees the items when it reuses the batch: memory goes back to the
     * thread (and malloc arena) that took it. */
    if (rc == 0)
        rc = batch_flush_e(s, 0, &s->werr);
    else if (store_in_tx(s->in->st))
        ingest_rollback(s->in);
    return rc;
}

static void *writer_main(void *arg)
{
    struct import_state *s = arg;
    struct ev_batch *b;
    int rc;

    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->handoff == NULL && !s->closed)
            pthread_cond_wait(&s->cv, &s->mu);
        b = s->handoff;
        s->handoff = NULL;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        if (b == NULL)
            return NULL; /* closed and drained */
        rc = atomic_load(&s->rc) ? 0 : store_batch(s, b);
        set_rc_writer(s, rc);
        pthread_mutex_lock(&s->mu);
        b->next = s->spare;
        s->spare = b;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
}

/* Hands the filling batch to the writer (waiting while it is busy with the last one). */
static void pipe_push(struct import_state *s)
{
    struct ev_batch *next;

    pthread_mutex_lock(&s->mu);
    while (s->handoff != NULL)
        pthread_cond_wait(&s->cv, &s->mu);
    s->handoff = s->filling;
    pthread_cond_broadcast(&s->cv);
    next = s->spare;
    if (next)
        s->spare = next->next;
    pthread_mutex_unlock(&s->mu);
    if (next == NULL) {
        next = xcalloc(1, sizeof *next);
    } else {
        size_t i;
        for (i = 0; i < next->n; i++)
            prepared_event_release(&next->items[i]);
        next->n = 0;
        arena_reset(&next->arena);
    }
    s->filling = next;
    s->in_batch = 0;
}

static struct prepared_event *batch_slot(struct ev_batch *b)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 1024;
        b->items = xrealloc(b->items, b->cap * sizeof *b->items);
    }
    return &b->items[b->n++];
}

static void batch_free(struct ev_batch *b)
{
    size_t i;

    if (b == NULL)
        return;
    for (i = 0; i < b->n; i++)
        prepared_event_release(&b->items[i]);
    free(b->items);
    arena_release(&b->arena);
    free(b);
}

static json_t *bad_row_record(struct import_state *s, char *msg, size_t msgcap)
{
    json_t *fields = json_array();
    size_t i;

    for (i = 0; i < s->row.nfields && i < CSV_MAX_COLUMNS; i++) {
        const char *f = row_field(&s->row, i);
        if (utf8_valid(f, strlen(f))) {
            json_array_append_new(fields, json_string(f));
        } else {
            char *copy = xstrdup(f);
            utf8_sanitize(copy);
            json_array_append_new(fields, json_string(copy));
            free(copy);
        }
    }
    snprintf(msg, msgcap, "has %zu fields, the header has %zu", s->row.nfields, s->ncols);
    return json_pack("{s:o}", "fields", fields);
}

static const char *colname_s;
static int cmp_cols(const void *a, const void *b)
{
    (void)colname_s;
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Property columns in byte order of their names: the order of stored JSON keys and
 * of the canonical event key. */
static void order_props(struct import_state *s)
{
    char **names = xcalloc(s->ncols + 1, sizeof *names);
    size_t i, j, n = 0;

    for (i = 0; i < s->ncols; i++) {
        int c = (int)i;
        if (c == s->col_xid || c == s->col_anon || c == s->col_event || c == s->col_time ||
            c == s->col_eid)
            continue;
        names[n++] = s->cols[i];
    }
    qsort(names, n, sizeof *names, cmp_cols);
    s->prop_order = xcalloc(n + 1, sizeof *s->prop_order);
    s->slot_off = xcalloc(s->ncols + 1, sizeof *s->slot_off);
    s->slot_len = xcalloc(s->ncols + 1, sizeof *s->slot_len);
    for (j = 0; j < n; j++)
        for (i = 0; i < s->ncols; i++)
            if (s->cols[i] == names[j])
                s->prop_order[j] = (int)i;
    s->nprops = n;
    free(names);
}

static struct ev_plan *plan_for(struct import_state *s, const char *name)
{
    struct ev_plan *pl;
    size_t i;
    int k;

    for (i = 0; i < s->nplans; i++)
        if (strcmp(s->plans[i].name, name) == 0)
            return &s->plans[i];
    if (s->nplans >= 4096)
        return NULL; /* absurdly many names in one file: the JSON path handles them */
    s->plans = xrealloc(s->plans, (s->nplans + 1) * sizeof *s->plans);
    pl = &s->plans[s->nplans++];
    pl->name = xstrdup(name);
    pl->c = s->cs ? contract_set_event(s->cs, name) : NULL;
    pl->spec = xcalloc(s->ncols, sizeof *pl->spec);
    pl->col_of = xcalloc(pl->c ? (size_t)contract_nprops(pl->c) + 1 : 1, sizeof *pl->col_of);
    pl->first_missing = -1;
    pl->occ_spec = -1;
    for (i = 0; i < s->ncols; i++)
        pl->spec[i] = -1;
    if (pl->c) {
        for (k = 0; k < contract_nprops(pl->c); k++) {
            int found = 0;
            pl->col_of[k] = -1;
            for (i = 0; i < s->nprops; i++) {
                int col = s->prop_order[i];
                if (strcmp(s->cols[col], contract_prop_name(pl->c, k)) == 0) {
                    pl->spec[col] = k;
                    pl->col_of[k] = col;
                    found = 1;
                }
            }
            if (!found && contract_prop_required(pl->c, k) && pl->first_missing < 0)
                pl->first_missing = k;
            if (contract_occurred_at(pl->c) &&
                strcmp(contract_occurred_at(pl->c), contract_prop_name(pl->c, k)) == 0)
                pl->occ_spec = k;
        }
    }
    return pl;
}

static void plans_free(struct import_state *s)
{
    size_t i;

    for (i = 0; i < s->nplans; i++) {
        free(s->plans[i].name);
        free(s->plans[i].spec);
        free(s->plans[i].col_of);
    }
    free(s->plans);
    free(s->prop_order);
    free(s->slot_off);
    free(s->slot_len);
    buf_release(&s->props);
    buf_release(&s->json);
}

/* A row's raw record as compact JSON with sorted keys (what the JSON path stores);
 * fields[i] is the cell of column i. Reads only the header: safe on either thread. */
static void raw_from_fields(const struct import_state *s, const char *const *fields, struct buf *b)
{
    static const char *const top[] = {"anonymous_id", "event", "event_id", "external_id",
                                      "occurred_at"};
    const int cols[] = {s->col_anon, s->col_event, s->col_eid, s->col_xid, s->col_time};
    size_t i;
    int first = 1;

    buf_reset(b);
    buf_addc(b, '{');
    for (i = 0; i < 5; i++) {
        const char *f;
        if (cols[i] < 0 || *(f = fields[cols[i]]) == '\0')
            continue;
        if (!first)
            buf_addc(b, ',');
        buf_addc(b, '"');
        buf_adds(b, top[i]);
        buf_add(b, "\":", 2);
        buf_add_json_str(b, f, strlen(f));
        first = 0;
    }
    buf_adds(b, first ? "\"properties\":{" : ",\"properties\":{");
    first = 1;
    for (i = 0; i < s->nprops; i++) {
        int col = s->prop_order[i];
        const char *f = fields[col];
        if (*f == '\0')
            continue;
        if (!first)
            buf_addc(b, ',');
        buf_add_json_str(b, s->cols[col], strlen(s->cols[col]));
        buf_addc(b, ':');
        buf_add_json_str(b, f, strlen(f));
        first = 0;
    }
    buf_add(b, "}}", 2);
}

/* raw_fn of a prepared event: the record from its saved cells, on the writer thread. */
static char *raw_of_cells(const void *ctx, const struct prepared_event *p)
{
    const struct import_state *s = ctx;
    const char **fields = xcalloc(s->ncols, sizeof *fields);
    const char *c = p->cells;
    struct buf b;
    size_t i;

    for (i = 0; i < s->ncols; i++) {
        fields[i] = c;
        c += strlen(c) + 1;
    }
    buf_init(&b);
    raw_from_fields(s, fields, &b);
    free(fields);
    return buf_take(&b);
}

static const char *cell(const struct import_state *s, int col)
{
    const char *f;

    if (col < 0)
        return NULL;
    f = row_field(&s->row, (size_t)col);
    return *f ? f : NULL;
}

/* The first column whose cell is not valid UTF-8, or -1. */
static int invalid_utf8_column(const struct import_state *s)
{
    size_t i;

    for (i = 0; i < s->row.nfields; i++) {
        const char *f = row_field(&s->row, i);
        if (!utf8_valid(f, strlen(f)))
            return (int)i;
    }
    return -1;
}

/* The CSV fast path of ingest_event_prepare(): types cells straight from text, with the
 * same contracts, checks in the same order (declared properties in contract order, then
 * undeclared ones), inference, key derivation and reasons as the JSON path (tested
 * against it), but without building JSON objects. */
static void prepare_event_row(struct import_state *s, const struct ingest_ctx *cx,
                              struct prepared_event *p, struct arena *ar)
{
    const char *name = cell(s, s->col_event), *xid = cell(s, s->col_xid);
    const char *anon = cell(s, s->col_anon), *ts = cell(s, s->col_time);
    const char *eid = cell(s, s->col_eid);
    char msg[256];
    struct ev_plan *pl;
    int64_t occ = 0;
    int have_occ = 0, first = 1, k, bad;
    size_t i;

    memset(p, 0, sizeof *p);
    /* Keep the cells: the raw record is made only if the event is rejected. */
    p->in_arena = 1;
    p->cells = arena_alloc(ar, s->row.data.len);
    memcpy(p->cells, s->row.data.p, s->row.data.len);
    p->raw_fn = raw_of_cells;
    p->raw_ctx = s;
    bad = s->nul_col >= 0 ? s->nul_col : invalid_utf8_column(s);
    if (bad >= 0) {
        prepared_event_reject(p, "invalid_encoding", s->cols[bad],
                              "is not valid UTF-8 text (save the file as UTF-8)");
        return;
    }
    if (name == NULL || !ingest_name_ok(name)) {
        prepared_event_reject(p, name ? "invalid_name" : "missing_field", "event",
                              name ? "must be a name of 1 to 128 bytes" : "is required");
        return;
    }
    if ((xid && !ingest_id_ok(xid, STORE_MAX_EXTERNAL_ID)) ||
        (anon && !ingest_id_ok(anon, STORE_MAX_EXTERNAL_ID))) {
        prepared_event_reject(p, "invalid_id", xid ? "external_id" : "anonymous_id",
                              "must be a string of 1 to 255 bytes without control characters");
        return;
    }
    if (xid == NULL && anon == NULL) {
        prepared_event_reject(p, "missing_field", "external_id", "is required (or anonymous_id)");
        return;
    }
    pl = plan_for(s, name);
    if (pl == NULL) {
        /* More distinct names in one file than plans kept: the JSON path takes the row. */
        json_t *rec = row_record(s);
        memset(p, 0, sizeof *p); /* the cells were in the arena */
        ingest_event_prepare(s->cs, cx, rec, p);
        json_decref(rec);
        return;
    }
    /* Declared properties first, in contract order: type each into its slot. */
    buf_reset(&s->props);
    for (i = 0; i < s->ncols; i++)
        s->slot_len[i] = 0;
    for (k = 0; pl->c && k < contract_nprops(pl->c); k++) {
        int col = pl->col_of[k];
        const char *f = col >= 0 ? row_field(&s->row, (size_t)col) : "";
        size_t n = strlen(f), start = s->props.len;
        int64_t ms = 0;
        const char *why;
        if (n == 0) {
            if (contract_prop_required(pl->c, k)) {
                snprintf(msg, sizeof msg, "is required by contract %s v%d", name,
                         contract_version(pl->c));
                prepared_event_reject(p, "missing_field", contract_prop_name(pl->c, k), msg);
                return;
            }
            continue;
        }
        why = contract_type_text(pl->c, k, f, n, &s->props, &ms, msg, sizeof msg);
        if (why) {
            prepared_event_reject(p, why, s->cols[col], msg);
            return;
        }
        s->slot_off[col] = start;
        s->slot_len[col] = s->props.len - start;
        if (k == pl->occ_spec) {
            occ = ms;
            have_occ = 1;
        }
    }
    /* Then undeclared ones, in column-name order. */
    for (i = 0; i < s->nprops; i++) {
        int col = s->prop_order[i];
        const char *f = row_field(&s->row, (size_t)col);
        size_t n = strlen(f), start = s->props.len;
        if (pl->spec[col] >= 0 || n == 0)
            continue;
        if (pl->c && contract_strict(pl->c)) {
            snprintf(msg, sizeof msg, "is not declared by contract %s v%d, which allows no others",
                     name, contract_version(pl->c));
            prepared_event_reject(p, "undeclared_field", s->cols[col], msg);
            return;
        }
        value_infer_text_json(f, n, &s->props);
        s->slot_off[col] = start;
        s->slot_len[col] = s->props.len - start;
    }
    if (ts) {
        if (value_parse_time(ts, strlen(ts), &occ)) {
            snprintf(msg, sizeof msg, "expected an ISO-8601 timestamp, got \"%.40s\"", ts);
            prepared_event_reject(p, "invalid_timestamp", "occurred_at", msg);
            return;
        }
    } else if (!have_occ) {
        prepared_event_reject(p, "missing_field", "occurred_at",
                              pl->c && contract_occurred_at(pl->c)
                                  ? "is required (or the contract's occurred_at property)"
                                  : "is required");
        return;
    }
    if (eid) {
        if (!ingest_id_ok(eid, STORE_MAX_EVENT_ID)) {
            prepared_event_reject(p, "invalid_id", "event_id",
                                  "must be a string of 1 to 255 bytes without control characters");
            return;
        }
        p->event_id = arena_strndup(ar, eid, strlen(eid));
    } else {
        struct event_key *key = event_key_new(xid ? xid : anon, name, occ);
        for (i = 0; i < s->nprops; i++) {
            int col = s->prop_order[i];
            const char *f = row_field(&s->row, (size_t)col);
            if (*f)
                event_key_prop(key, s->cols[col], strlen(s->cols[col]), 1, f, strlen(f));
        }
        char *derived = event_key_finish(key);
        p->event_id = arena_strndup(ar, derived, strlen(derived));
        free(derived);
    }
    /* The stored JSON: keys in byte order, values from their slots. */
    {
        struct buf *out = &s->json; /* reused: its bytes are copied into the arena */
        buf_reset(out);
        buf_addc(out, '{');
        for (i = 0; i < s->nprops; i++) {
            int col = s->prop_order[i];
            if (s->slot_len[col] == 0)
                continue;
            if (!first)
                buf_addc(out, ',');
            first = 0;
            buf_add_json_str(out, s->cols[col], strlen(s->cols[col]));
            buf_addc(out, ':');
            buf_add(out, s->props.p + s->slot_off[col], s->slot_len[col]);
        }
        buf_addc(out, '}');
        p->props = arena_strndup(ar, out->p, out->len);
    }
    p->name = arena_strndup(ar, name, strlen(name));
    p->xid = xid ? arena_strndup(ar, xid, strlen(xid)) : NULL;
    p->anon = anon ? arena_strndup(ar, anon, strlen(anon)) : NULL;
    p->xid_hash = xid ? hash64(xid, strlen(xid)) : 0;
    p->key_hash = store_event_key_hash(p->event_id);
    p->occurred_at = occ;
    p->contract_version = pl->c ? contract_version(pl->c) : 0;
    p->unvalidated = pl->c == NULL;
}

/* A row past a size cap, as its dead letter, into p (a rejected event; a contacts import
 * takes its parts): the reason naming the cap, the column and the size, and raw, the
 * record made of what was kept of the row (the cell past a cap cut to its first
 * CSV_CELL_HEAD bytes, the cells after the row's cap left out), at most
 * STORE_REJECTED_MAX_RAW bytes of it. Nothing else is checked: the row is not all there. */
static void big_row_letter(struct import_state *s, struct prepared_event *p)
{
    char field[160] = "", msg[256];
    const char *reason;
    struct buf raw;
    size_t i;

    for (i = 0; i < s->row.nfields; i++) /* a cut may split a character; the file may be bad */
        utf8_sanitize(s->row.data.p + s->row.off[i]);
    buf_init(&raw);
    if (s->o->kind == IMPORT_EVENTS) {
        const char **fields = xcalloc(s->ncols + 1, sizeof *fields);
        for (i = 0; i < s->ncols; i++)
            fields[i] = i < s->row.nfields ? row_field(&s->row, i) : "";
        raw_from_fields(s, fields, &raw);
        free(fields);
    } else {
        /* In column order, the bag of attributes last: the ids come first, whatever is cut */
        json_t *rec = row_record(s);
        char *text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
        buf_adds(&raw, text);
        free(text);
        json_decref(rec);
    }
    if (raw.len > STORE_REJECTED_MAX_RAW) { /* what the letter keeps: no more in the batch */
        raw.len = utf8_prefix(raw.p, raw.len, STORE_REJECTED_MAX_RAW);
        raw.p[raw.len] = '\0';
    }
    if (s->too_big == BIG_VALUE) {
        snprintf(field, sizeof field, "%s", s->big_col < (int)s->ncols ? s->cols[s->big_col] : "");
        reason = ingest_value_check((size_t)s->big_bytes, s->max_value, msg, sizeof msg);
        ASSERT(reason);
    } else {
        snprintf(msg, sizeof msg, "row of %lld bytes exceeds [ingest] max_row_bytes (%zu)",
                 (long long)s->row_bytes, s->max_row);
        reason = "row_too_large";
    }
    memset(p, 0, sizeof *p);
    p->raw = buf_take(&raw);
    p->raw_bytes = s->row_bytes;
    prepared_event_reject(p, reason, field, msg);
}

static void process_event_row(struct import_state *s)
{
    struct ingest_ctx cx = {.kind = SRC_CSV,
                            .source = "csv",
                            .text_mode = 1,
                            .received_at = clock_now_ms(),
                            .max_value_bytes = s->max_value};
    struct prepared_event *p = batch_slot(s->filling);

    if (s->prop_order == NULL)
        order_props(s);
    if (s->too_big) {
        big_row_letter(s, p);
    } else if (s->row.nfields != s->ncols) {
        char msg[128];
        json_t *rec = bad_row_record(s, msg, sizeof msg);
        memset(p, 0, sizeof *p);
        p->rec = rec;
        prepared_event_reject(p, "bad_row", "", msg);
    } else {
        prepare_event_row(s, &cx, p, &s->filling->arena);
    }
    p->line = s->row_line;
    if (++s->in_batch >= s->o->batch_rows)
        pipe_push(s);
}

/* ---- contacts: inline, one thread -------------------------------------------------- */

static void process_contact_row(struct import_state *s)
{
    struct ingest_ctx cx = {
        .kind = SRC_CSV, .source = "csv", .origin = s->fname, .text_mode = 1, .line = s->row_line};
    enum ingest_outcome o;
    json_t *rec;
    int rc, bad_col;

    if (!store_in_tx(s->in->st)) {
        rc = ingest_begin(s->in, s->e);
        if (rc) {
            set_rc(s, rc);
            return;
        }
    }
    cx.received_at = clock_now_ms();
    if (s->too_big) {
        struct prepared_event p;
        big_row_letter(s, &p);
        s->in->stats.read++;
        rc = ingest_reject_partial(s->in, &cx, "contact", p.raw, p.raw_bytes, p.reason, p.field,
                                   p.msg, &o, s->e);
        prepared_event_release(&p);
        rec = NULL;
    } else if (s->row.nfields != s->ncols) {
        char msg[128];
        rec = bad_row_record(s, msg, sizeof msg);
        s->in->stats.read++;
        rc = ingest_reject(s->in, &cx, "contact", rec, "bad_row", "", msg, &o, s->e);
    } else if ((bad_col = s->nul_col >= 0 ? s->nul_col : invalid_utf8_column(s)) >= 0) {
        char msg[128];
        rec = bad_row_record(s, msg, sizeof msg);
        s->in->stats.read++;
        rc = ingest_reject(s->in, &cx, "contact", rec, "invalid_encoding", s->cols[bad_col],
                           "is not valid UTF-8 (save the file as UTF-8)", &o, s->e);
    } else {
        rec = row_record(s);
        rc = ingest_contact(s->in, &cx, rec, &o, s->e);
    }
    json_decref(rec);
    if (rc == 0 && o == INGEST_REJECTED)
        note_rejection(s, s->row_line);
    if (rc) {
        set_rc(s, rc);
        return;
    }
    if (++s->in_batch >= s->o->batch_rows) {
        set_rc(s, batch_flush(s, 0));
        s->in_batch = 0;
    }
}

static void process_row(struct import_state *s)
{
    if (atomic_load(&s->rc))
        return;
    if (!s->header_done) {
        if (s->too_big == BIG_VALUE)
            set_rc(s, ERRF(s->e, E_TOOBIG, "header",
                           "%s:%lld: the name of column %d is longer "
                           "than [ingest] max_value_bytes (%zu)",
                           s->fname, (long long)s->row_line, s->big_col + 1, s->max_value));
        else if (s->too_big)
            set_rc(s, ERRF(s->e, E_TOOBIG, "header",
                           "%s:%lld: the header row is longer than "
                           "[ingest] max_row_bytes (%zu)",
                           s->fname, (long long)s->row_line, s->max_row));
        else
            set_rc(s, take_header(s));
        return;
    }
    atomic_fetch_add(&s->rows_parsed, 1);
    if (s->o->kind == IMPORT_CONTACTS)
        process_contact_row(s);
    else
        process_event_row(s);
}

static void row_start(struct import_state *s)
{
    s->in_row = 1;
    s->row_line = s->line;
    s->row.nfields = 0;
    buf_reset(&s->row.data);
    s->row_bytes = 0;
    s->too_big = 0;
    s->big_col = -1;
    s->big_bytes = 0;
    s->row_full = 0;
}

static void count_lines(struct import_state *s, const char *p, size_t n)
{
    const char *end = p + n;

    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        s->line++;
        p++;
    }
}

/* The most bytes of the current cell libcsv may hold: the room the caps leave it, or,
 * once the cell or its row is past a cap, a window before the next cut. */
static size_t cell_limit(const struct import_state *s)
{
    size_t room;

    if (s->cell_dropped || s->row_full)
        return CSV_DROP_WINDOW;
    room = (size_t)s->row_bytes < s->max_row ? s->max_row - (size_t)s->row_bytes : 0;
    return room < s->max_value ? room : s->max_value;
}

/* Adds the next n bytes of a cell being cut to its head, while it is short: libcsv's
 * buffer always starts where the dropped bytes end, so the head is the cell's prefix. */
static void head_add(struct import_state *s, const void *p, size_t n)
{
    if (s->cell_head.len < CSV_CELL_HEAD) {
        size_t k = CSV_CELL_HEAD - s->cell_head.len;
        buf_add(&s->cell_head, p, n < k ? n : k);
    }
}

/* The cell in libcsv's buffer passed its limit: its first bytes are kept, the rest
 * dropped and counted, the last byte left to libcsv. The cell so far is entry_buf[0 ..
 * entry_pos) of the parser's struct (public in csv.h); between two csv_parse() calls
 * libcsv reads nothing else of it but the last byte, a closing quote it may take back. */
_Static_assert(CSV_MAJOR == 3, "cell_cut() knows libcsv 3's parser struct");
static void cell_cut(struct import_state *s, struct csv_parser *p)
{
    size_t n = p->entry_pos - CSV_CUT_TAIL;

    if (!s->in_row)
        row_start(s);
    head_add(s, p->entry_buf, n);
    count_lines(s, (const char *)p->entry_buf, n);
    s->cell_dropped += (int64_t)n;
    memmove(p->entry_buf, p->entry_buf + n, CSV_CUT_TAIL);
    p->entry_pos = CSV_CUT_TAIL;
}

static void on_field(void *p, size_t n, void *data)
{
    struct import_state *s = data;
    const char *f = p ? p : "";
    int64_t total;
    int was_full;

    if (!s->in_row)
        row_start(s);
    count_lines(s, f, n);
    total = s->cell_dropped + (int64_t)n;
    if (s->cell_dropped) { /* cut short: what was kept of it */
        head_add(s, f, n);
        f = s->cell_head.p;
        n = s->cell_head.len;
    }
    if (s->nul_col < 0 && memchr(f, '\0', n))
        s->nul_col = (int)s->row.nfields; /* the row is rejected, not silently cut */
    if (total > (int64_t)s->max_value && !s->too_big) {
        s->too_big = BIG_VALUE;
        s->big_col = (int)s->row.nfields;
        s->big_bytes = total;
    }
    was_full = s->row_full;
    s->row_bytes += total;
    if (s->row_bytes > (int64_t)s->max_row) {
        s->row_full = 1;
        if (!s->too_big)
            s->too_big = BIG_ROW;
    }
    if (was_full)
        n = 0; /* nothing more of a row past its cap is kept */
    else if (total > (int64_t)s->max_value || s->row_full)
        n = utf8_prefix(f, n, CSV_CELL_HEAD); /* the cell that passed a cap: its head */
    if (s->row.nfields < CSV_MAX_COLUMNS + 1)
        row_add(&s->row, f, n);
    s->cell_dropped = 0;
    buf_reset(&s->cell_head);
}

static void on_row(int c, void *data)
{
    struct import_state *s = data;

    if (s->in_row) {
        process_row(s);
        s->in_row = 0;
        s->nul_col = -1;
    }
    if (c == '\n')
        s->line++;
}

/* Feeds a chunk to libcsv in slices no longer than the current cell may still grow, and
 * cuts the cell after a slice that took it past its limit: libcsv never holds more than
 * a cell's limit and a slice, whatever the file. */
static void parse_chunk(struct import_state *s, struct csv_parser *p, const char *chunk, size_t n)
{
    size_t off = 0;

    while (off < n && atomic_load(&s->rc) == 0) {
        size_t limit = cell_limit(s);
        size_t room = p->entry_pos < limit ? limit - p->entry_pos + 1 : 1;
        size_t len = n - off < room ? n - off : room;
        int ce;
        if (csv_parse(p, chunk + off, len, on_field, on_row, s) == len) {
            off += len;
            if (p->entry_pos > cell_limit(s))
                cell_cut(s, p);
            continue;
        }
        if (atomic_load(&s->rc))
            return;
        ce = csv_error(p);
        set_rc(s, ce == CSV_ENOMEM || ce == CSV_ETOOBIG
                      ? ERR(s->e, E_NOMEM, "%s:%lld: out of memory reading a cell", s->fname,
                            (long long)(s->in_row ? s->row_line : s->line))
                      : ERR(s->e, E_INVAL,
                            "%s:%lld: malformed quoting (a quote inside an "
                            "unquoted field, or text after a closing quote): %s",
                            s->fname, (long long)(s->in_row ? s->row_line : s->line),
                            csv_strerror(ce)));
        return;
    }
}

static void progress(struct import_state *s, int64_t done_bytes, int64_t total, double elapsed,
                     int final)
{
    progress_line(s->fname, done_bytes, total, atomic_load(&s->rows_parsed), elapsed, final);
}

/* Starts the writer thread of an events import, with the reader's own contracts. */
static int pipe_start(struct import_state *s)
{
    int rc;

    /* An import validates against the contracts current when it starts. */
    rc = contract_set_load(s->in->st, s->in->cfg, &s->cs, s->e);
    if (rc)
        return rc;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->writer, NULL, writer_main, s) == 0) {
        pthread_setname_np(s->writer, "import-writer");
    } else {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        return ERR(s->e, E_INTERNAL, "cannot start the import writer thread");
    }
    s->filling = xcalloc(1, sizeof *s->filling);
    s->writer_started = 1;
    return 0;
}

/* Hands over the last partial batch (unless the import failed) and waits for the writer. */
static void pipe_finish(struct import_state *s)
{
    if (!s->writer_started)
        return;
    if (s->filling && s->filling->n && atomic_load(&s->rc) == 0)
        pipe_push(s);
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->writer, NULL);
    s->writer_started = 0;
    batch_free(s->filling);
    batch_free(s->handoff);
    while (s->spare) {
        struct ev_batch *nx = s->spare->next;
        batch_free(s->spare);
        s->spare = nx;
    }
    s->filling = s->handoff = s->spare = NULL;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}

int import_csv(struct ingest *in, const struct import_opts *o, struct import_report *rep,
               struct err *e)
{
    struct import_state s;
    struct csv_parser p;
    enum { CHUNK = 1 << 20 };
    char *chunk = NULL;
    struct stat sb;
    int64_t total = -1, done_bytes = 0;
    double t0 = clock_mono_ms() / 1e3, last_draw = 0;
    int fd, rc;
    ssize_t n = 0;
    size_t i;

    memset(rep, 0, sizeof *rep);
    rep->rejected_by_reason = json_object();
    memset(&s, 0, sizeof s);
    s.in = in;
    s.o = o;
    s.rep = rep;
    s.e = e;
    s.fname = strcmp(o->path, "-") == 0 ? "<stdin>" : o->path;
    s.line = 1;
    s.nul_col = -1;
    s.big_col = -1;
    s.max_value = (size_t)in->cfg->max_value_bytes;
    s.max_row = (size_t)in->cfg->max_row_bytes;
    buf_init(&s.row.data);
    buf_init(&s.cell_head);
    memset(&in->stats, 0, sizeof in->stats);

    fd = strcmp(o->path, "-") == 0 ? STDIN_FILENO : open(o->path, O_RDONLY);
    if (fd < 0)
        return ERR(e, E_IO, "%s: cannot open: %s", o->path, strerror(errno));
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode))
        total = sb.st_size;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL | CSV_REPALL_NL) != 0) {
        if (fd != STDIN_FILENO)
            close(fd);
        return ERR(e, E_NOMEM, "cannot start the CSV parser");
    }
    csv_set_space_func(&p, no_space);
    csv_set_blk_size(&p, CSV_DROP_WINDOW); /* libcsv grows its cell buffer by this (by 128
                                            * bytes, a 1 MiB cell took 8,192 reallocs) */

    /* The import's own row: data-plane writes are accounted per batch, not audited. */
    rc = store_begin(in->st, e);
    if (rc == 0)
        rc = store_import_begin(in->st, o->kind == IMPORT_CONTACTS ? "contacts" : "events", s.fname,
                                clock_now_ms(), &s.batch_id, e);
    if (rc == 0)
        rc = store_commit(in->st, e);
    else
        store_rollback(in->st);
    if (rc == 0 && o->kind == IMPORT_EVENTS && total > 0) {
        /* A file with (at ~100 bytes a row) rows for a quarter of the contacts or more
         * reads their ids in one scan, not one lookup each on first sight. */
        struct store_counts cnt;
        rc = store_counts(in->st, &cnt, e);
        if (rc == 0 && total / 100 >= cnt.contacts / 4)
            ingest_preload_contacts(in);
        if (store_caps(in->st)->events_reserve) /* event rows are ~100 bytes */
            store_caps(in->st)->events_reserve(in->st, (int64_t)(total / 96));
    }
    if (rc == 0 && o->kind == IMPORT_EVENTS)
        rc = pipe_start(&s);
    if (rc)
        goto out;
    in->batch_id = s.batch_id;

    s.e = &s.rerr; /* the reader's own, while the writer thread runs */
    chunk = xmalloc(CHUNK);
    while (atomic_load(&s.rc) == 0 && (n = read(fd, chunk, CHUNK)) > 0) {
        parse_chunk(&s, &p, chunk, (size_t)n);
        done_bytes += n;
        if (o->progress && clock_mono_ms() / 1e3 - last_draw > 0.2) {
            last_draw = clock_mono_ms() / 1e3;
            progress(&s, done_bytes, total, last_draw - t0, 0);
        }
    }
    if (n < 0 && atomic_load(&s.rc) == 0)
        set_rc(&s, ERR(s.e, E_IO, "%s: read failed: %s", s.fname, strerror(errno)));
    if (atomic_load(&s.rc) == 0 && csv_fini(&p, on_field, on_row, &s) != 0 &&
        atomic_load(&s.rc) == 0)
        set_rc(&s, ERR(s.e, E_INVAL,
                       "%s:%lld: a quoted field is not closed by the end of "
                       "the file",
                       s.fname, (long long)s.row_line));
    if (atomic_load(&s.rc) == 0 && !s.header_done)
        set_rc(&s, ERRF(s.e, E_INVAL, "header", "%s:1: the file is empty: a header row is required",
                        s.fname));
    pipe_finish(&s);
    s.e = e;
    rc = atomic_load(&s.rc);
    if (rc)
        *e = atomic_load(&s.writer_won) ? s.werr : s.rerr; /* the first error, as it was */
    if (rc == 0 && !store_in_tx(in->st))
        rc = ingest_begin(in, e); /* a transaction for the final mark */
    if (rc == 0)
        rc = batch_flush(&s, 1);
    if (rc) {
        /* What the committed batches stored: the batch in flight was rolled back. */
        struct ingest_stats *c = &s.committed;
        struct err ignored = {0};
        struct store_import im = {
            .id = s.batch_id,
            .status = "failed",
            .finished_at = clock_now_ms(),
            .read = c->read,
            .inserted = c->inserted,
            .updated = c->updated,
            .duplicates = c->duplicates,
            .rejected = c->rejected,
        };
        ingest_rollback(in);
        in->stats = s.committed;
        /* Committed batches stay; the import's row says it stopped. Best effort. */
        if (store_begin(in->st, &ignored) == 0) {
            if (store_import_progress(in->st, &im, &ignored) == 0)
                store_commit(in->st, &ignored);
            else
                store_rollback(in->st);
        }
    }
    if (o->progress)
        progress(&s, done_bytes, total, clock_mono_ms() / 1e3 - t0, 1);
out:
    pipe_finish(&s);
    rep->stats = in->stats;
    rep->seconds = clock_mono_ms() / 1e3 - t0;
    csv_free(&p);
    free(chunk);
    if (fd != STDIN_FILENO)
        close(fd);
    for (i = 0; i < s.ncols; i++)
        free(s.cols[i]);
    free(s.cols);
    contract_set_free(s.cs);
    plans_free(&s);
    buf_release(&s.row.data);
    buf_release(&s.cell_head);
    free(s.row.off);
    return rc;
}

void import_report_release(struct import_report *r)
{
    json_decref(r->rejected_by_reason);
    r->rejected_by_reason = NULL;
}

/* ---- imports as the CLI shows them ---- */

int import_list(struct store *st, int limit, store_import_fn fn, void *ctx, struct err *e)
{
    return store_imports(st, limit, fn, ctx, e);
}

json_t *import_json(const struct store_import *im)
{
    char st[32], fin[32];

    time_format_iso(im->started_at, st);
    time_format_iso(im->finished_at, fin);
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s?,s:I,s:I,s:I,s:I,s:I}", "id", (json_int_t)im->id,
                     "kind", im->kind, "file", im->file, "status", im->status, "started_at", st,
                     "finished_at", im->finished_at ? fin : NULL, "read", (json_int_t)im->read,
                     "inserted", (json_int_t)im->inserted, "updated", (json_int_t)im->updated,
                     "duplicates", (json_int_t)im->duplicates, "rejected",
                     (json_int_t)im->rejected);
}

static int add_import(void *ctx, const struct store_import *im)
{
    json_array_append_new(ctx, import_json(im));
    return 0;
}

int import_list_json(struct store *st, int limit, json_t **items, struct err *e)
{
    int rc;

    *items = json_array();
    rc = import_list(st, limit, add_import, *items, e);
    if (rc) {
        json_decref(*items);
        *items = NULL;
    }
    return rc;
}
