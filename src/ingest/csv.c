/* ingest/csv.c -- streaming CSV import of contacts and events (libcsv).
 *
 * DESIGN: the file is read in 1 MiB chunks and parsed by libcsv; each complete
 * row becomes a record for ingest_contact()/ingest_event(). Rows are grouped in
 * batches of import_batch_rows, each committed (with the import's progress row)
 * before the next is read, so a kill loses at most the batch in flight and a
 * re-run stores nothing twice (events dedupe on event_id, contacts upsert).
 * Memory is constant: one row, one batch's caches, capped field sizes.
 * Line numbers are physical lines (a quoted newline counts), so reports point
 * at what an editor shows. */
#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ingest.h"

#define CSV_MAX_FIELD (1 << 20)
#define CSV_MAX_COLUMNS 1024
#define REPORT_LINES_PER_REASON 10

struct row {
    struct buf data;   /* fields, NUL-separated */
    size_t *off;       /* start of each field in data */
    size_t nfields, cap;
};

struct import_state {
    struct ingest *in;
    const struct import_opts *o;
    struct import_report *rep;
    struct err *e;
    const char *fname;          /* for messages */
    struct row row;
    char **cols;                /* header */
    size_t ncols;
    int col_xid, col_event, col_time, col_eid, col_email, col_consent, col_anon;
    int64_t line, row_line;
    int in_row, header_done;
    int rc;                     /* first store/fatal error; stops the import */
    int64_t in_batch;
    int64_t batch_id;
};

static void *capped_realloc(void *p, size_t n)
{
    if (n > CSV_MAX_FIELD + 64)
        return NULL;
    return realloc(p, n);
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
        s->cols[i] = xstrdup(f);
        if (*s->cols[i] == '\0')
            return ERRF(s->e, E_INVAL, "header", "%s:%lld: column %zu has an empty name",
                        s->fname, (long long)s->row_line, i + 1);
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
    if (s->o->kind == IMPORT_CONTACTS) {
        if (s->col_xid < 0)
            return ERRF(s->e, E_INVAL, "external_id",
                        "%s:%lld: column \"external_id\" is required in a contacts file",
                        s->fname, (long long)s->row_line);
    } else {
        static const char *req[] = {"event", "occurred_at"};
        if (s->col_xid < 0 && s->col_anon < 0)
            return ERRF(s->e, E_INVAL, "external_id",
                        "%s:%lld: column \"external_id\" is required in an events file", s->fname,
                        (long long)s->row_line);
        for (i = 0; i < 2; i++)
            if (find_col(s, req[i]) < 0)
                return ERRF(s->e, E_INVAL, req[i],
                            "%s:%lld: column \"%s\" is required in an events file", s->fname,
                            (long long)s->row_line, req[i]);
    }
    s->header_done = 1;
    return 0;
}

static json_t *row_record(struct import_state *s)
{
    json_t *rec = json_object(), *bag = json_object();
    size_t i;
    int is_contacts = s->o->kind == IMPORT_CONTACTS;

    for (i = 0; i < s->ncols; i++) {
        const char *f = row_field(&s->row, i);
        int c = (int)i;
        if (c == s->col_xid || c == s->col_anon || (is_contacts && (c == s->col_email ||
            c == s->col_consent)) || (!is_contacts && (c == s->col_event || c == s->col_time ||
            c == s->col_eid))) {
            if (*f)
                json_object_set_new(rec, s->cols[i], json_string(f));
        } else if (*f) {
            json_object_set_new(bag, s->cols[i], json_string(f));
        }
    }
    json_object_set_new(rec, is_contacts ? "attributes" : "properties", bag);
    return rec;
}

static void note_rejection(struct import_state *s)
{
    struct ingest *in = s->in;
    json_t *r = json_object_get(s->rep->rejected_by_reason, in->last_reason);
    json_t *lines;

    if (r == NULL) {
        r = json_pack("{s:I,s:[],s:[]}", "count", (json_int_t)0, "lines", "examples");
        json_object_set_new(s->rep->rejected_by_reason, in->last_reason, r);
    }
    json_object_set_new(r, "count", json_integer(json_integer_value(json_object_get(r, "count")) + 1));
    lines = json_object_get(r, "lines");
    if (json_array_size(lines) < REPORT_LINES_PER_REASON) {
        json_array_append_new(lines, json_integer(s->row_line));
        json_array_append_new(json_object_get(r, "examples"),
                              json_pack("{s:I,s:s,s:s}", "line", (json_int_t)s->row_line, "field",
                                        in->last_field, "message", in->last_msg));
    }
}

static int batch_flush(struct import_state *s, int final)
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
    rc = store_import_progress(s->in->st, &im, s->e);
    if (rc == 0)
        rc = ingest_commit(s->in, s->e);
    s->in_batch = 0;
    return rc;
}

static void process_row(struct import_state *s)
{
    char origin[1100];
    struct ingest_ctx cx = {.kind = SRC_CSV, .source = "csv", .origin = origin, .text_mode = 1};
    enum ingest_outcome o;
    json_t *rec;
    int rc;

    if (s->rc)
        return;
    if (!s->header_done) {
        s->rc = take_header(s);
        return;
    }
    if (!store_in_tx(s->in->st)) {
        s->rc = ingest_begin(s->in, s->e);
        if (s->rc)
            return;
    }
    snprintf(origin, sizeof origin, "%s:%lld", s->fname, (long long)s->row_line);
    cx.received_at = clock_now_ms();
    if (s->row.nfields != s->ncols) {
        /* Keep what there is, so an operator can see and fix the row. */
        char msg[128];
        json_t *fields = json_array();
        size_t i;
        for (i = 0; i < s->row.nfields && i < CSV_MAX_COLUMNS; i++)
            json_array_append_new(fields, json_string(row_field(&s->row, i)));
        rec = json_pack("{s:o}", "fields", fields);
        snprintf(msg, sizeof msg, "has %zu fields, the header has %zu", s->row.nfields, s->ncols);
        snprintf(s->in->last_reason, sizeof s->in->last_reason, "bad_row");
        snprintf(s->in->last_field, sizeof s->in->last_field, "%s", "");
        snprintf(s->in->last_msg, sizeof s->in->last_msg, "%s", msg);
        {
            struct store_rejected r = {
                .created_at = cx.received_at,
                .source = "csv",
                .kind = s->o->kind == IMPORT_CONTACTS ? "contact" : "event",
                .reason = "bad_row",
                .field = "",
                .message = msg,
                .origin = origin,
            };
            char *raw = json_dumps(rec, JSON_COMPACT);
            char *fp = xasprintf("bad_row:%016llx", (unsigned long long)hash64(raw, strlen(raw)));
            r.raw = raw;
            r.fingerprint = fp;
            s->in->stats.read++;
            s->in->stats.rejected++;
            rc = store_rejected_add(s->in->st, &r, NULL, s->e);
            free(raw);
            free(fp);
        }
        json_decref(rec);
        note_rejection(s);
    } else {
        rec = row_record(s);
        if (s->o->kind == IMPORT_CONTACTS)
            rc = ingest_contact(s->in, &cx, rec, &o, s->e);
        else
            rc = ingest_event(s->in, &cx, rec, &o, s->e);
        json_decref(rec);
        if (rc == 0 && o == INGEST_REJECTED)
            note_rejection(s);
    }
    if (rc) {
        s->rc = rc;
        return;
    }
    if (++s->in_batch >= s->o->batch_rows)
        s->rc = batch_flush(s, 0);
}

static void on_field(void *p, size_t n, void *data)
{
    struct import_state *s = data;
    const char *f = p ? p : "";
    size_t i;

    if (!s->in_row) {
        s->in_row = 1;
        s->row_line = s->line;
        s->row.nfields = 0;
        buf_reset(&s->row.data);
    }
    for (i = 0; i < n; i++)
        if (f[i] == '\n')
            s->line++;
    if (s->row.nfields < CSV_MAX_COLUMNS + 1)
        row_add(&s->row, f, n);
}

static void on_row(int c, void *data)
{
    struct import_state *s = data;

    if (s->in_row) {
        process_row(s);
        s->in_row = 0;
    }
    if (c == '\n')
        s->line++;
}

static void progress(struct import_state *s, int64_t done_bytes, int64_t total, double elapsed,
                     int final)
{
    double rate = elapsed > 0 ? (double)s->in->stats.read / elapsed : 0;

    if (total > 0 && !final) {
        double frac = (double)done_bytes / (double)total;
        double eta = frac > 0 ? elapsed * (1 - frac) / frac : 0;
        fprintf(stderr, "\r  %s  %5.1f%%  %lld rows  %.0f rows/s  ETA %dm%02ds   ", s->fname,
                frac * 100, (long long)s->in->stats.read, rate, (int)eta / 60, (int)eta % 60);
    } else {
        fprintf(stderr, "\r  %s  %lld rows  %.0f rows/s%s", s->fname,
                (long long)s->in->stats.read, rate, final ? "                        \n" : "   ");
    }
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
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
    double t0 = now_s(), last_draw = 0;
    int fd, rc;
    ssize_t n;
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
    buf_init(&s.row.data);
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
    csv_set_realloc_func(&p, capped_realloc);

    /* The import's own row: data-plane writes are accounted per batch, not audited. */
    rc = store_begin(in->st, e);
    if (rc == 0)
        rc = store_import_begin(in->st, o->kind == IMPORT_CONTACTS ? "contacts" : "events", s.fname,
                                clock_now_ms(), &s.batch_id, e);
    if (rc == 0)
        rc = store_commit(in->st, e);
    else
        store_rollback(in->st);
    if (rc)
        goto out;
    in->batch_id = s.batch_id;

    chunk = xmalloc(CHUNK);
    while (s.rc == 0 && (n = read(fd, chunk, CHUNK)) > 0) {
        if (csv_parse(&p, chunk, (size_t)n, on_field, on_row, &s) != (size_t)n && s.rc == 0) {
            int ce = csv_error(&p);
            s.rc = ce == CSV_ENOMEM
                       ? ERR(e, E_TOOBIG, "%s:%lld: a field is longer than %d bytes", s.fname,
                             (long long)(s.in_row ? s.row_line : s.line), CSV_MAX_FIELD)
                       : ERR(e, E_INVAL, "%s:%lld: %s", s.fname,
                             (long long)(s.in_row ? s.row_line : s.line), csv_strerror(ce));
        }
        done_bytes += n;
        if (o->progress && now_s() - last_draw > 0.2) {
            last_draw = now_s();
            progress(&s, done_bytes, total, last_draw - t0, 0);
        }
    }
    if (n < 0 && s.rc == 0)
        s.rc = ERR(e, E_IO, "%s: read failed: %s", s.fname, strerror(errno));
    if (s.rc == 0 && csv_fini(&p, on_field, on_row, &s) != 0 && s.rc == 0)
        s.rc = ERR(e, E_INVAL, "%s:%lld: %s (a quoted field is not closed)", s.fname,
                   (long long)s.row_line, csv_strerror(csv_error(&p)));
    if (s.rc == 0 && !s.header_done)
        s.rc = ERRF(e, E_INVAL, "header", "%s:1: the file is empty: a header row is required",
                    s.fname);
    rc = s.rc;
    if (rc == 0 && !store_in_tx(in->st))
        rc = ingest_begin(in, e); /* the last batch was full: a transaction for the final mark */
    if (rc == 0)
        rc = batch_flush(&s, 1);
    if (rc)
        ingest_rollback(in);
    if (o->progress)
        progress(&s, done_bytes, total, now_s() - t0, 1);
out:
    rep->stats = in->stats;
    rep->seconds = now_s() - t0;
    csv_free(&p);
    free(chunk);
    if (fd != STDIN_FILENO)
        close(fd);
    for (i = 0; i < s.ncols; i++)
        free(s.cols[i]);
    free(s.cols);
    buf_release(&s.row.data);
    free(s.row.off);
    return rc;
}

void import_report_release(struct import_report *r)
{
    json_decref(r->rejected_by_reason);
    r->rejected_by_reason = NULL;
}
