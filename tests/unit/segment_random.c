/* tests/unit/segment_random.c -- the segment engine against the reference evaluator.
 *
 * DESIGN: each case builds a store through the real ingest API (contacts with
 * declared and undeclared attributes of every type, events of declared and
 * undeclared names, CSV-typed records, CRM-owned events, anonymous events) and
 * mirrors what the store should then hold into segment_ref.h's in-memory copy,
 * typed the way ingestion types values (docs/contracts.md "Typing values",
 * "Inference"); the mirror predicts every rejection and is checked against the store
 * before each round, so a wrong mirror is reported as such and not as an engine bug.
 * Random rule trees (every operator of every type, groups nested up to 5 deep,
 * behaviour rules with windows, counts and `where`) then run through the engine
 * (audience index, compile, eval, members) and through the reference; the member sets
 * must be identical, and so must the index's counts and a paged walk of the members.
 * The data then change in several batches (new contacts and events, attribute and
 * consent changes, deletions and a restore, owned events rewritten, deleted and
 * revived, anonymous ids linked) and the SAME index catches up, sometimes between
 * batches with a few trees, before the next round. A few percent of the trees are
 * broken on purpose (docs/dsl.md "Validation") and must be refused; a few sit exactly
 * at the guardrails. Case 4 grows the index past its first capacity (1024 contact
 * ids), case 9 past one evaluation block (16384 contacts, 4 threads).
 *
 * Seed: ENGAGE_TEST_SEED (or SEGMENT_SEED), else the clock: tests/unit/seed.h, printed
 * first as seed=N; case k uses a seed mixed from it and k. Every failure prints the seed,
 * the rules, the first differing contacts with their data and the command that
 * reproduces it. SEGMENT_KEEP_GOING=1 counts mismatches instead of stopping at the
 * first; SEGMENT_TREES sets the trees per round (90); SEGMENT_BIG the bulk contacts of
 * case 9 (16500; above 65536 string decisions run on several threads). */
#include <math.h>
#include <time.h>
#include <unistd.h>

#include "ingest_fixture.h"
#include "segment/segment.h"
#include "segment_ref.h"
#include "seed.h"

#define T0 1767225600000LL /* 2026-01-01T00:00:00Z: the "now" of most evaluations */
#define DAY REF_DAY_MS
#define NCASES 10

static const int edge_days[] = {1, 7, 30, 90, 365, 730};

/* ---- random numbers (struct rng, rng_u64 and rng_int are seed.h's)
 * ------------------------------- */

static int pct(struct rng *r, int p)
{
    return rng_int(r, 100) < p;
}

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define PICK(r, a) ((a)[rng_int((r), NELEM(a))])

static uint64_t case_seed(int case_no)
{
    struct rng r = {test_seed() ^ (0xC0FFEEULL * (uint64_t)(case_no + 1))};

    return rng_u64(&r);
}

static int env_int(const char *name, int dflt)
{
    const char *s = getenv(name);

    return s && *s ? (int)strtol(s, NULL, 10) : dflt;
}

/* ---- pools of values -------------------------------------------------------------------- */

/* Strings for attributes and properties: case-folding traps (dsl.md "contains"). */
/* clang-format off */
static const char *const str_pool[] = {
    "Pune", "pune", "PUNE", "Pune ", " Pune", "Pune West", "PUNE west", "", "a", "A", "ab",
    "abc", "b", "B", "z",
    "\u0130stanbul", "istanbul", "ISTANBUL", "i\u0307stanbul", "Istanbul", /* İ: no simple fold */
    "\u03a3\u0391\u03a3", "\u03c3\u03b1\u03c2", "\u03c3\u03b1\u03c3", "\u03c2", "\u03a3",
    "\u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3", "\u03c3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2",
    "STRASSE", "stra\u00dfe", "Stra\u00dfe", "STRA\u1e9eE", "strasse", "ss", "\u00df",
    "\u01c5", "\u01c4", "\u01c6", "\u01c5emal",            /* ǅ Ǆ ǆ */
    "\u212a", "k", "K", "\u212aelvin", "kelvin",           /* KELVIN SIGN */
    "\uff21\uff22", "\uff41\uff42", "\uff21\uff22\uff23", "AB", /* fullwidth */
    "\u041c\u043e\u0441\u043a\u0432\u0430", "\u041c\u041e\u0421\u041a\u0412\u0410",
    "\u043c\u043e\u0441\u043a\u0432\u0430", "\u0401\u043b\u043a\u0430", "\u0451\u043b\u043a\u0430",
    "\U0001F600", "a\U0001F600b", "\U0001F600\U0001F600", "\u6771\u4eac", "caf\u00e9",
    "CAF\u00c9", "cafe", "cafe\u0301", "\ufb01le", "FILE", "\u2126", "\u03c9", "\u03a9",
};
/* clang-format on */

/* Extra needles for contains. */
/* clang-format off */
static const char *const needle_pool[] = {
    "", "\u03c3", "\u03c2", "\u03a3", "SS", "ss", "\u00df", "\u1e9e", "\u01c6", "\u01c5", "\u01c4",
    "k", "\u212a", "K", "\uff41", "\uff21", "\u0130", "i\u0307", "i", "I", "stan", "STAN",
    "\u03a3\u0391\u03a3", "\u03c3\u03b1\u03c3", "\u043c\u043e\u0441\u043a", "\u041c\u041e\u0421\u041a",
    "\U0001F600", "\u00e9", "e", "\u00c9", "\ufb01", "fi", "une", "UNE", " ", "a", "\u03c9",
    "\u2126", "\u0451", "\u0401",
};
/* clang-format on */

static const double num_pool[] = {0,   1, -1,  2.5,  10, 10.5, -0.25, 99, 100, 1000, 123,
                                  0.5, 3, 1e6, 1e-3, 45, 30,   60,    61, 59,  3600, 12.5};

static const char *const consent_pool[] = {"subscribed", "unsubscribed", "bounced", "complained"};

/* ---- time strings ------------------------------------------------------------------------ */

/* ms as ISO-8601 text in one of the accepted spellings (every one is exactly ms). */
static void fmt_ts(struct rng *r, int64_t ms, char out[48])
{
    char b[32];
    int style = rng_int(r, 9);

    switch (style) {
    case 1: /* +05:30 */
        time_format_iso(ms + 330 * 60000LL, b);
        b[23] = '\0';
        snprintf(out, 48, "%s+05:30", b);
        return;
    case 2: /* -0800 */
        time_format_iso(ms - 480 * 60000LL, b);
        b[23] = '\0';
        snprintf(out, 48, "%s-0800", b);
        return;
    case 3: /* space, no zone (UTC) */
        time_format_iso(ms, b);
        b[10] = ' ';
        b[23] = '\0';
        snprintf(out, 48, "%s", b);
        return;
    case 4: /* a date alone when it is midnight UTC */
        time_format_iso(ms, b);
        if (ms % DAY == 0)
            b[10] = '\0';
        snprintf(out, 48, "%s", b);
        return;
    case 5: /* no fraction when whole seconds; lowercase z */
        time_format_iso(ms, b);
        if (ms % 1000 == 0)
            snprintf(out, 48, "%.19sz", b);
        else
            snprintf(out, 48, "%.23sz", b);
        return;
    case 6: /* +01 (hours only) */
        time_format_iso(ms + HOUR_MS, b);
        b[23] = '\0';
        snprintf(out, 48, "%s+01", b);
        return;
    case 7: /* HH:MM when there are no seconds */
        time_format_iso(ms, b);
        if (ms % MIN_MS == 0)
            b[16] = '\0';
        snprintf(out, 48, "%s", b);
        return;
    default:
        time_format_iso(ms, out);
        return;
    }
}

/* An instant near the window edges of the usual "now" (T0), now itself, the future,
 * or anywhere in the last two years. */
static int64_t gen_time(struct rng *r)
{
    static const int64_t near[] = {0, 1, -1, 1000, DAY, -DAY, 5 * DAY};

    switch (rng_int(r, 10)) {
    case 0:
    case 1:
    case 2:
        return T0 - (int64_t)PICK(r, edge_days) * DAY + (rng_int(r, 3) - 1) * (pct(r, 50) ? 1 : 0);
    case 3:
        return T0 + PICK(r, near);
    case 4:
        return T0 - rng_int(r, 3) * DAY - rng_int(r, (int)DAY_MS);
    default:
        return T0 + 5 * DAY - (int64_t)(rng_u64(r) % (uint64_t)(800 * DAY));
    }
}

/* ---- what ingestion stores (docs/contracts.md), modelled independently ----------------- */

/* JSON number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int num_text(const char *s, size_t n, double *d)
{
    size_t i = 0;
    char tmp[64];

    if (n == 0 || n >= sizeof tmp)
        return 0;
    if (s[i] == '-')
        i++;
    if (i < n && s[i] == '0')
        i++;
    else if (i < n && s[i] >= '1' && s[i] <= '9')
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    else
        return 0;
    if (i < n && s[i] == '.') {
        if (++i >= n || s[i] < '0' || s[i] > '9')
            return 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || s[i] < '0' || s[i] > '9')
            return 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i != n)
        return 0;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    *d = strtod(tmp, NULL);
    return 1;
}

static int ci_eq(const char *s, size_t n, const char *lit)
{
    size_t i;

    if (strlen(lit) != n)
        return 0;
    for (i = 0; i < n; i++)
        if ((s[i] | 0x20) != lit[i])
            return 0;
    return 1;
}

/* Inference (docs/contracts.md): true/false, number grammar, date or date-time, string. */
static int model_infer_text(const char *s, size_t n)
{
    double d;
    int64_t ms;

    if (ci_eq(s, n, "true") || ci_eq(s, n, "false"))
        return REF_BOOLEAN;
    if (num_text(s, n, &d))
        return REF_NUMBER;
    if (time_parse_iso(s, n, &ms) == 0)
        return REF_TIMESTAMP;
    return REF_STRING;
}

static int model_infer(const json_t *v)
{
    if (json_is_boolean(v))
        return REF_BOOLEAN;
    if (json_is_number(v))
        return REF_NUMBER;
    if (json_is_string(v))
        return model_infer_text(json_string_value(v), json_string_length(v));
    return REF_STRING;
}

/* A value converted to type t ("Typing values"); integer: the declared type is integer.
 * 0, or -1 when ingestion refuses it. */
static int model_coerce(const json_t *v, int t, int integer, struct ref_value *out)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    int64_t ms;
    double d;
    char tmp[64];

    *out = (struct ref_value){.type = REF_NONE};
    switch (t) {
    case REF_STRING:
        if (json_is_string(v))
            *out = ref_str(s, n);
        else if (json_is_integer(v))
            snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
            snprintf(tmp, sizeof tmp, "%.17g", json_real_value(v));
        else
            return -1;
        if (!json_is_string(v))
            *out = ref_str(tmp, strlen(tmp));
        return 0;
    case REF_NUMBER:
        if (integer) {
            if (json_is_integer(v))
                d = (double)json_integer_value(v);
            else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
                     fabs(json_real_value(v)) < 9e18)
                d = json_real_value(v);
            else if (json_is_string(v) && num_text(s, n, &d) && !memchr(s, '.', n) &&
                     !memchr(s, 'e', n) && !memchr(s, 'E', n))
                ;
            else
                return -1;
        } else if (json_is_number(v)) {
            d = json_number_value(v);
        } else if (!json_is_string(v) || !num_text(s, n, &d)) {
            return -1;
        }
        *out = ref_num(d);
        return 0;
    case REF_BOOLEAN:
        if (json_is_boolean(v))
            *out = ref_bool(json_is_true(v));
        else if (json_is_string(v) && (ci_eq(s, n, "true") || ci_eq(s, n, "false")))
            *out = ref_bool(n == 4);
        else
            return -1;
        return 0;
    case REF_TIMESTAMP:
        if (!json_is_string(v) || time_parse_iso(s, n, &ms) != 0)
            return -1;
        *out = ref_ts(ms);
        return 0;
    }
    return -1;
}

/* An undeclared event property as the JSON path stores it (as it came), typed as
 * docs/dsl.md reads undeclared data; objects and arrays have no usable type. */
static struct ref_value model_stored_json(const json_t *v)
{
    int64_t ms;

    if (json_is_boolean(v))
        return ref_bool(json_is_true(v));
    if (json_is_number(v))
        return ref_num(json_number_value(v));
    if (json_is_string(v)) {
        if (time_parse_iso(json_string_value(v), json_string_length(v), &ms) == 0)
            return ref_ts(ms);
        return ref_str(json_string_value(v), json_string_length(v));
    }
    return (struct ref_value){.type = REF_NONE};
}

/* A stored typed JSON value read as type t (REF_NONE: as undeclared data). */
static struct ref_value read_stored(const json_t *v, int t)
{
    int64_t ms;

    switch (t) {
    case REF_STRING:
        return json_is_string(v) ? ref_str(json_string_value(v), json_string_length(v))
                                 : (struct ref_value){.type = REF_NONE};
    case REF_NUMBER:
        return json_is_number(v) ? ref_num(json_number_value(v))
                                 : (struct ref_value){.type = REF_NONE};
    case REF_BOOLEAN:
        return json_is_boolean(v) ? ref_bool(json_is_true(v))
                                  : (struct ref_value){.type = REF_NONE};
    case REF_TIMESTAMP:
        if (json_is_string(v) &&
            time_parse_iso(json_string_value(v), json_string_length(v), &ms) == 0)
            return ref_ts(ms);
        return (struct ref_value){.type = REF_NONE};
    }
    return model_stored_json(v);
}

/* contracts.md: format email = one @, text before it, a domain with a dot, no spaces or
 * brackets. The generator's bad addresses are plainly bad. */
static int model_email_ok(const char *s)
{
    const char *at = strchr(s, '@'), *dot;

    if (at == NULL || at == s || strchr(at + 1, '@') || strpbrk(s, " \t<>()[]"))
        return 0;
    dot = strchr(at + 1, '.');
    return dot && dot != at + 1 && s[strlen(s) - 1] != '.';
}

static int consent_index(const char *s)
{
    int i;

    for (i = 0; i < 4; i++)
        if (strcmp(s, consent_pool[i]) == 0)
            return i;
    return -1;
}

/* ---- the world: a store, an index and the reference copy -------------------------------- */

/* The event names the generator uses: declared ones, then undeclared ones with the
 * properties their records carry. */
struct evspec {
    const char *name;
    const char *props[12];
};
static const struct evspec evspecs[] = {
    {"order_created",
     {"order_id", "amount", "currency", "created_at", "coupon", "gift", "n_items", "note", "v",
      NULL}},
    {"call_logged", {"call_id", "agent_id", "duration_sec", "created_at", "outcome", NULL}},
    {"whatsapp_sent", {"message_id", "status", "created_at", NULL}},
    {"email_opened", {"campaign_id", "message_id", "opened_at", NULL}}, /* never stored */
    {"app_open", {"screen", "n", "ok", "at", "code", "v", "note", "meta", "tags", NULL}},
    {"page_viewed", {"url", "dur", "v", NULL}},
    {"Order Completed", {"total", "currency", "at", NULL}},
    {"caf\u00e9_visit\u00e9", {"note", "n", NULL}},
    {"deal_stage", {"stage", "value", "won", NULL}},
    {"late_event", {"v", "screen", NULL}},
    {"strict_ping", {"kind", "n", NULL}}, /* a strict contract some cases store */
    /* property names a JSON path must escape (the index reads properties through SQLite's
     * json_extract, with a fallback for these); every event has them all */
    {"odd_keys", {"a\\b", "a.b", "x y", "\u00fcn\u00ef", "$", "[0]", "tab\there", "q'uote", NULL}},
};
enum {
    EV_ORDER,
    EV_CALL,
    EV_WA,
    EV_OPENED,
    EV_APP,
    EV_PAGE,
    EV_OC,
    EV_CAFE,
    EV_DEAL,
    EV_LATE,
    EV_STRICT,
    EV_ODD,
    EV__N
};

#define STRICT_CONTRACT                                                                            \
    "{\"name\":\"strict_ping\",\"kind\":\"event\",\"additional_properties\":false,"                \
    "\"properties\":{\"kind\":{\"type\":\"string\",\"required\":true},"                            \
    "\"n\":{\"type\":\"integer\"}}}"

static const char *const declared_attrs[] = {"first_name", "last_name", "city",
                                             "plan",       "ltv",       "signup_at"};
static const char *const builtin_fields[] = {"email", "external_id", "created_at", "email_consent"};

struct world {
    struct fx f;
    struct audience_index *ix;
    struct contract_set *cs;
    struct segment_limits lim;
    struct ref_db db;
    struct rng r;
    uint64_t seed;
    int case_no, round;
    struct strmap xids, anons, evids; /* -> mirror contact / contact / event index */
    char **anon_ids;
    int nanon, anoncap;
    int known[EV__N]; /* an event of that name was stored: the engine knows the name */
    int next_contact, next_event, next_anon, next_owned;
    char late_attr[32];
    int keep_going, trees_per_round, strict;
    long trees, invalid, mismatches, nonempty, records, rejected, pages;
    double ingest_ms, eval_ms, check_ms;
};

static double mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void w_open(struct world *w, int case_no)
{
    memset(w, 0, sizeof *w);
    clock_start_at(T0);
    log_level_current = LOG_WARN;
    fx_open(&w->f);
    audience_index_new(&w->ix);
    segment_limits_from_config(&w->f.cfg, &w->lim);
    w->lim.threads = 1 + case_no % 3;
    ref_db_init(&w->db);
    strmap_init(&w->xids);
    strmap_init(&w->anons);
    strmap_init(&w->evids);
    w->case_no = case_no;
    w->seed = case_seed(case_no);
    w->r.s = w->seed;
    w->keep_going = env_int("SEGMENT_KEEP_GOING", 0);
    w->trees_per_round = env_int("SEGMENT_TREES", 90);
    ref_decl_reset();
    w->strict = case_no % 2 == 1;
    if (w->strict) { /* an event contract with additional_properties false */
        int v;
        cr_assert_eq(store_begin(w->f.st, &w->f.e), 0);
        cr_assert_eq(store_contract_put(w->f.st, "strict_ping", "event", STRICT_CONTRACT, "test",
                                        &v, &w->f.e),
                     0, "%s", w->f.e.msg);
        cr_assert_eq(store_commit(w->f.st, &w->f.e), 0);
        ref_decl_add("strict_ping", "kind", REF_STRING, 0, 0);
        ref_decl_add("strict_ping", "n", REF_NUMBER, 1, 1);
        ref_strict_event = "strict_ping";
    }
    cr_assert_eq(contract_set_load(w->f.st, NULL, &w->cs, &w->f.e), 0, "%s", w->f.e.msg);
}

static void w_close(struct world *w)
{
    int i;

    for (i = 0; i < w->nanon; i++)
        free(w->anon_ids[i]);
    free(w->anon_ids);
    strmap_release(&w->xids);
    strmap_release(&w->anons);
    strmap_release(&w->evids);
    ref_db_release(&w->db);
    contract_set_free(w->cs);
    audience_index_free(w->ix);
    fx_close(&w->f);
}

#define W_ASSERT(w, cond, fmt, ...)                                                                \
    cr_assert((cond), fmt " [seed=%llu case %d round %d]", ##__VA_ARGS__,                          \
              (unsigned long long)test_seed(), (w)->case_no, (w)->round)

static void w_begin(struct world *w)
{
    W_ASSERT(w, ingest_begin(&w->f.in, &w->f.e) == 0, "%s", w->f.e.msg);
}

static void w_commit(struct world *w)
{
    W_ASSERT(w, ingest_commit(&w->f.in, &w->f.e) == 0, "%s", w->f.e.msg);
}

static struct ingest_ctx w_ctx(enum source_kind k, int64_t received_at)
{
    struct ingest_ctx cx = {.kind = k, .origin = "segment_random", .received_at = received_at};

    switch (k) {
    case SRC_CSV:
        cx.source = "csv";
        cx.text_mode = 1;
        break;
    case SRC_SDK:
        cx.source = "sdk";
        break;
    case SRC_SYNC:
        cx.source = "sync:crm";
        cx.owns_rows = 1;
        break;
    default:
        cx.source = "api";
        break;
    }
    return cx;
}

static int w_xid(struct world *w, const char *xid)
{
    int64_t v;

    return strmap_get(&w->xids, xid, strlen(xid), &v) ? (int)v : -1;
}

static int w_anon(struct world *w, const char *anon)
{
    int64_t v;

    return strmap_get(&w->anons, anon, strlen(anon), &v) ? (int)v : -1;
}

static int w_evid(struct world *w, const char *id)
{
    int64_t v;

    return strmap_get(&w->evids, id, strlen(id), &v) ? (int)v : -1;
}

static int reg_type(struct world *w, const char *name)
{
    const struct ref_value *r = ref_kv_get(w->db.reg, w->db.nreg, name);

    return r ? r->type : REF_NONE;
}

static void set_store_id(struct world *w, int ci, const char *xid, const char *anon)
{
    struct store_contact c;
    int rc;

    store_contact_init(&c);
    rc = xid ? store_contact_get_by_xid(w->f.st, xid, &c, &w->f.e)
             : store_contact_get_by_anon(w->f.st, anon, &c, &w->f.e);
    W_ASSERT(w, rc == 0, "contact %s not in the store: %s", xid ? xid : anon, w->f.e.msg);
    w->db.c[ci].store_id = c.id;
    store_contact_release(&c);
}

/* A random live identified contact (index), or -1. */
static int live_contact(struct world *w)
{
    int i, ci;

    for (i = 0; i < 40 && w->db.nc; i++) {
        ci = rng_int(&w->r, w->db.nc);
        if (ref_is_member(&w->db.c[ci]))
            return ci;
    }
    return -1;
}

/* A random identified contact, deleted or not. */
static int some_contact(struct world *w)
{
    int i, ci;

    for (i = 0; i < 40 && w->db.nc; i++) {
        ci = rng_int(&w->r, w->db.nc);
        if (w->db.c[ci].xid && w->db.c[ci].merged_into < 0)
            return ci;
    }
    return -1;
}

static void record_fail(struct world *w, const char *what, const json_t *rec, int expect_reject,
                        enum ingest_outcome o)
{
    char *t = json_dumps(rec, JSON_COMPACT | JSON_ENCODE_ANY);

    W_ASSERT(w, 0,
             "the mirror of ingestion is wrong (test model or ingest bug): %s record %s: mirror "
             "expected %s, ingest said outcome %d (%s %s %s)",
             what, t, expect_reject ? "a rejection" : "acceptance", (int)o, w->f.in.last_reason,
             w->f.in.last_field, w->f.in.last_msg);
    free(t);
}

/* ---- contacts ------------------------------------------------------------------------------- */

struct typed_kv {
    const char *key;
    struct ref_value v;
    int new_type; /* REF_NONE, or the type to record in the registry */
};

/* Runs a contact record through ingest_contact (inside a batch) and mirrors it. */
static void w_contact(struct world *w, const struct ingest_ctx *cx, json_t *rec)
{
    const char *xid = json_string_value(json_object_get(rec, "external_id"));
    const json_t *jemail = json_object_get(rec, "email"),
                 *jcons = json_object_get(rec, "email_consent");
    json_t *attrs = json_object_get(rec, "attributes"), *v;
    struct typed_kv kv[48];
    int nkv = 0, ci = w_xid(w, xid), reject = 0, consent = -1, i;
    const char *email = NULL, *k;
    enum ingest_outcome o;

    if (json_is_string(jemail) && json_string_length(jemail) > 0) {
        email = json_string_value(jemail);
        reject |= !model_email_ok(email);
    }
    if (json_is_string(jcons) && json_string_length(jcons) > 0) {
        consent = consent_index(json_string_value(jcons));
        reject |= consent < 0;
    }
    json_object_foreach(attrs, k, v) {
        int t, decl, newt = REF_NONE;
        struct ref_value tv;
        if (strcmp(k, "email") == 0 || json_is_null(v))
            continue; /* email is the built-in column; null changes nothing */
        if (cx->text_mode && json_is_string(v) && json_string_length(v) == 0)
            continue; /* an empty CSV cell is absent */
        decl = ref_decl_type("contact", k);
        t = decl != REF_NONE ? decl : reg_type(w, k);
        if (t == REF_NONE)
            t = newt = model_infer(v);
        if (model_coerce(v, t, 0, &tv) != 0) {
            reject = 1;
            break;
        }
        ASSERT(nkv < NELEM(kv));
        kv[nkv++] = (struct typed_kv){k, tv, newt};
    }
    if (ci >= 0 && w->db.c[ci].deleted)
        reject = 1;
    W_ASSERT(w, ingest_contact(&w->f.in, cx, rec, &o, &w->f.e) == 0, "%s", w->f.e.msg);
    w->records++;
    if ((o == INGEST_REJECTED) != reject)
        record_fail(w, "contact", rec, reject, o);
    if (reject) {
        w->rejected++;
        for (i = 0; i < nkv; i++)
            ref_value_release(&kv[i].v);
        return;
    }
    if (ci < 0) {
        ci = ref_contact_add(&w->db, xid, email, consent >= 0 ? consent : 0, cx->received_at);
        strmap_put(&w->xids, xid, strlen(xid), ci);
        set_store_id(w, ci, xid, NULL);
    } else {
        struct ref_contact *c = &w->db.c[ci];
        if (email) {
            free(c->email);
            c->email = strdup(email);
        }
        /* Consent is sticky: a bulk source never lifts an opt-out. */
        if (consent >= 0 && !(source_is_bulk(cx->kind) && c->consent != 0 && consent == 0))
            c->consent = consent;
    }
    for (i = 0; i < nkv; i++) {
        if (kv[i].new_type != REF_NONE)
            ref_db_register(&w->db, kv[i].key, kv[i].new_type);
        ref_contact_set(&w->db, ci, kv[i].key, kv[i].v);
    }
}

static json_t *gen_ts_json(struct world *w, int64_t ms)
{
    char b[48];

    fmt_ts(&w->r, ms, b);
    return json_string(b);
}

static int64_t gen_created(struct world *w)
{
    return pct(&w->r, 50) ? gen_time(&w->r)
                          : T0 - rng_int(&w->r, 900) * DAY - rng_int(&w->r, (int)DAY_MS);
}

static json_t *gen_number_json(struct world *w)
{
    double d = PICK(&w->r, num_pool);

    if (pct(&w->r, 5))
        return json_integer(9007199254740993LL); /* not a double: rounds the same everywhere */
    if (d == floor(d) && pct(&w->r, 60))
        return json_integer((json_int_t)d);
    return json_real(d);
}

/* A JSON value of any type, with strings that look like other types. */
static json_t *gen_mixed(struct world *w, int allow_null)
{
    static const char *const looks[] = {"123", "007", "true", "FALSE", "1e2", "-5", "2.5"};

    switch (rng_int(&w->r, allow_null ? 8 : 7)) {
    case 0:
        return json_integer(rng_int(&w->r, 120) - 20);
    case 1:
        return gen_number_json(w);
    case 2:
        return json_boolean(rng_int(&w->r, 2));
    case 3:
        return gen_ts_json(w, gen_time(&w->r));
    case 4:
        return json_string(PICK(&w->r, looks));
    case 7:
        return json_null();
    default:
        return json_string(PICK(&w->r, str_pool));
    }
}

/* The CSV spelling of a JSON value (text mode): NULL if it has none. */
static json_t *to_text(struct world *w, json_t *v)
{
    static const char *const t[] = {"true", "TRUE", "True"}, *const f[] = {"false", "FALSE"};
    char b[64];

    if (json_is_string(v))
        return json_incref(v);
    if (json_is_integer(v))
        snprintf(b, sizeof b, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(b, sizeof b, "%.17g", json_real_value(v));
    else if (json_is_true(v))
        snprintf(b, sizeof b, "%s", PICK(&w->r, t));
    else if (json_is_false(v))
        snprintf(b, sizeof b, "%s", PICK(&w->r, f));
    else
        return NULL;
    return json_string(b);
}

static void textify(struct world *w, json_t *o)
{
    const char *k;
    json_t *v;
    void *tmp;

    json_object_foreach_safe(o, tmp, k, v) {
        json_t *t = to_text(w, v);
        if (t)
            json_object_set_new(o, k, t);
        else
            json_object_del(o, k);
    }
}

static json_t *gen_email(struct world *w)
{
    static const char *const local[] = {
        "ann",       "Ann", "ANN", "bob.lee", "bob+tag", "o'neil", "\u03a3\u03bf\u03c6\u03af\u03b1",
        "d\u0169ng", "k",   "z9"};
    static const char *const dom[] = {"example.com",        "Example.COM", "x.io",
                                      "v\u00ed-d\u1ee5.vn", "mail.gr",     "b.co"};
    static const char *const bad[] = {"not-an-email", "a@b", "a b@c.io", "@x.io", "x@.io"};
    char b[128];

    if (pct(&w->r, 2))
        return json_string(PICK(&w->r, bad));
    snprintf(b, sizeof b, "%s%d@%s", PICK(&w->r, local), rng_int(&w->r, 4), PICK(&w->r, dom));
    return json_string(b);
}

/* An attribute value for name (the kind of value that attribute usually gets). */
static json_t *gen_attr_value(struct world *w, const char *name)
{
    static const char *const firsts[] = {"Ann",
                                         "ann",
                                         "ANN",
                                         "\u03a3\u03bf\u03c6\u03af\u03b1",
                                         "\u03a3\u039f\u03a6\u038a\u0391",
                                         "Zo\u00eb",
                                         "\u01c5emal",
                                         "\u00d6mer",
                                         "\u0130lker",
                                         "Jos\u00e9",
                                         "JOS\u00c9",
                                         "",
                                         "\u674e",
                                         "ilker"};
    static const char *const plans[] = {"free", "pro", "Pro", "PRO", "enterprise", "", "pro "};
    static const char *const numtext[] = {"12.5", "1e3", "-0", "7", "100"};
    static const char *const codes[] = {"123", "45", "7", "-2", "100"};
    static const char *const flags[] = {"TRUE", "false", "True", "FALSE", "true"};
    char b[32];

    if (strcmp(name, "first_name") == 0 || strcmp(name, "last_name") == 0)
        return pct(&w->r, 3) ? json_integer(42) : json_string(PICK(&w->r, firsts));
    if (strcmp(name, "city") == 0)
        return pct(&w->r, 3) ? json_integer(411001) : json_string(PICK(&w->r, str_pool));
    if (strcmp(name, "plan") == 0)
        return json_string(PICK(&w->r, plans));
    if (strcmp(name, "ltv") == 0 || strcmp(name, "score") == 0) {
        if (pct(&w->r, 2))
            return json_string("abc"); /* refused: not a number */
        return pct(&w->r, 10) ? json_string(PICK(&w->r, numtext)) : gen_number_json(w);
    }
    if (strcmp(name, "signup_at") == 0 || strcmp(name, "last_seen") == 0 ||
        strcmp(name, "created_at") == 0) {
        if (pct(&w->r, 2))
            return json_string("yesterday"); /* refused */
        return gen_ts_json(w, gen_created(w));
    }
    if (strcmp(name, "nick") == 0 || strcmp(name, "stra\u00dfe \u2116") == 0)
        return json_string(PICK(&w->r, str_pool));
    if (strcmp(name, "vip") == 0)
        return pct(&w->r, 10) ? json_string(PICK(&w->r, flags)) : json_boolean(rng_int(&w->r, 2));
    if (strcmp(name, "zip") == 0) {
        snprintf(b, sizeof b, "0%04d", rng_int(&w->r, 200));
        return json_string(b);
    }
    if (strcmp(name, "code") == 0) /* JSON strings that read as numbers: stored as numbers */
        return json_string(pct(&w->r, 3) ? "007" : PICK(&w->r, codes));
    if (strcmp(name, "flag") == 0)
        return json_string(PICK(&w->r, flags));
    if (strcmp(name, "email") == 0)
        return json_string("ignored@x.io");
    return gen_mixed(w, 1); /* "mixed" and late attributes */
}

/* A contact record for a new contact (xid NULL) or an existing one, sent and mirrored. */
static void gen_contact(struct world *w, const char *xid_in)
{
    static const char *const fmts[] = {"c%04d", "C%d",  "\u00fc%d",  "u-%d@x",
                                       "%d",    "c%d ", "\u03a3-%d", "z%d"};
    static const struct {
        const char *name;
        int p;
    } attrs[] = {{"first_name", 60},
                 {"last_name", 4},
                 {"city", 70},
                 {"plan", 50},
                 {"ltv", 50},
                 {"signup_at", 40},
                 {"nick", 40},
                 {"score", 40},
                 {"vip", 40},
                 {"last_seen", 30},
                 {"zip", 20},
                 {"code", 25},
                 {"flag", 25},
                 {"mixed", 40},
                 {"created_at", 3},
                 {"email", 3},
                 {"stra\u00dfe \u2116", 15}};
    json_t *rec = json_object(), *a = json_object();
    char xid[64];
    int text = pct(&w->r, 10), i, fresh = xid_in == NULL;
    struct ingest_ctx cx = w_ctx(text ? SRC_CSV : SRC_API, gen_created(w));

    if (fresh)
        snprintf(xid, sizeof xid, PICK(&w->r, fmts), w->next_contact++);
    else
        snprintf(xid, sizeof xid, "%s", xid_in);
    json_object_set_new(rec, "external_id", json_string(xid));
    if (pct(&w->r, fresh ? 70 : 25))
        json_object_set_new(rec, "email", gen_email(w));
    if (pct(&w->r, fresh ? 40 : 30))
        json_object_set_new(rec, "email_consent",
                            json_string(pct(&w->r, 1) ? "maybe" : PICK(&w->r, consent_pool)));
    for (i = 0; i < NELEM(attrs); i++)
        if (pct(&w->r, fresh ? attrs[i].p : attrs[i].p / 3))
            json_object_set_new(a, attrs[i].name, gen_attr_value(w, attrs[i].name));
    if (w->late_attr[0] && pct(&w->r, 30))
        json_object_set_new(a, w->late_attr, gen_mixed(w, 0));
    if (text)
        textify(w, a);
    json_object_set_new(rec, "attributes", a);
    w_contact(w, &cx, rec);
    json_decref(rec);
}

/* ---- events ------------------------------------------------------------------------------- */

static int spec_of(const char *name)
{
    int i;

    for (i = 0; i < EV__N; i++)
        if (strcmp(evspecs[i].name, name) == 0)
            return i;
    return -1;
}

/* Where the event goes: the contact it is stored under, creating it if needed. -1 when
 * ingestion refuses (a deleted contact). */
static int route_event(struct world *w, const struct ingest_ctx *cx, const char *xid,
                       const char *anon, int *created)
{
    int ci;

    *created = 0;
    if (xid) {
        ci = w_xid(w, xid);
        if (ci >= 0)
            return w->db.c[ci].deleted ? -1 : ci;
        ci = ref_contact_add(&w->db, xid, NULL, 0, cx->received_at);
        strmap_put(&w->xids, xid, strlen(xid), ci);
        *created = 1;
        return ci;
    }
    ci = w_anon(w, anon);
    if (ci >= 0) {
        if (w->db.c[ci].merged_into >= 0)
            return w->db.c[ci].merged_into;
        return w->db.c[ci].deleted ? -1 : ci;
    }
    ci = ref_contact_add(&w->db, NULL, NULL, 0, cx->received_at);
    strmap_put(&w->anons, anon, strlen(anon), ci);
    *created = 2;
    return ci;
}

/* Runs an event record through ingest_event (inside a batch) and mirrors it. */
static void w_event(struct world *w, const struct ingest_ctx *cx, json_t *rec)
{
    const char *name = json_string_value(json_object_get(rec, "event"));
    const char *xid = json_string_value(json_object_get(rec, "external_id"));
    const char *anon = json_string_value(json_object_get(rec, "anonymous_id"));
    const char *occ = json_string_value(json_object_get(rec, "occurred_at"));
    const char *eid = json_string_value(json_object_get(rec, "event_id"));
    json_t *props = json_object_get(rec, "properties"), *v;
    struct typed_kv kv[32];
    int nkv = 0, reject = 0, ci = -1, ei = w_evid(w, eid), dup = 0, created = 0, i, sp;
    int has_contract = ref_event_has_contract(name);
    int64_t at = 0;
    const struct ref_decl *dc;
    const char *k;
    enum ingest_outcome o;
    size_t d;

    /* declared properties (every shipped one is required) */
    for (d = 0; (dc = ref_decl_at(d)) != NULL && !reject; d++) {
        struct ref_value tv;
        if (strcmp(dc->owner, name) != 0)
            continue;
        v = json_object_get(props, dc->name);
        if (v == NULL || json_is_null(v) ||
            (cx->text_mode && json_is_string(v) && json_string_length(v) == 0)) {
            reject = !dc->optional;
            continue;
        }
        if (model_coerce(v, dc->type, dc->integer, &tv) != 0) {
            reject = 1;
            break;
        }
        /* constraints: amount and duration_sec >= 0, currency ^[A-Z]{3}$ */
        if ((tv.type == REF_NUMBER && tv.d < 0 && strcmp(dc->owner, "strict_ping") != 0) ||
            (strcmp(dc->name, "currency") == 0 &&
             (tv.n != 3 || tv.s[0] < 'A' || tv.s[0] > 'Z' || tv.s[1] < 'A' || tv.s[1] > 'Z' ||
              tv.s[2] < 'A' || tv.s[2] > 'Z')))
            reject = 1;
        kv[nkv++] = (struct typed_kv){dc->name, tv, REF_NONE};
    }
    json_object_foreach(props, k, v) {
        struct ref_value tv;
        if (reject)
            break;
        if (has_contract && ref_decl_type(name, k) != REF_NONE)
            continue;
        if (json_is_null(v) || (cx->text_mode && json_is_string(v) && json_string_length(v) == 0))
            continue;
        if (ref_strict_event && strcmp(name, ref_strict_event) == 0) {
            reject = 1; /* undeclared_field */
            break;
        }
        if (cx->text_mode)
            W_ASSERT(w, model_coerce(v, model_infer(v), 0, &tv) == 0, "text cell");
        else
            tv = model_stored_json(v);
        if (tv.type == REF_NONE)
            continue;
        ASSERT(nkv < NELEM(kv));
        kv[nkv++] = (struct typed_kv){k, tv, REF_NONE};
    }
    if (!reject) {
        /* the shipped contracts take occurred_at from a property; strict_ping has none */
        const char *occ_prop = strcmp(name, "email_opened") == 0                  ? "opened_at"
                               : has_contract && strcmp(name, "strict_ping") != 0 ? "created_at"
                                                                                  : NULL;
        if (occ) {
            reject = time_parse_iso(occ, strlen(occ), &at) != 0;
        } else if (occ_prop) {
            for (i = 0; i < nkv; i++)
                if (strcmp(kv[i].key, occ_prop) == 0)
                    at = kv[i].v.i;
        } else if (cx->kind == SRC_SDK || cx->kind == SRC_API) {
            at = cx->received_at;
        } else {
            reject = 1;
        }
    }
    if (!reject) {
        ci = route_event(w, cx, xid, anon, &created);
        reject = ci < 0;
    }
    if (!reject && ei >= 0) {
        if (cx->owns_rows)
            reject = strcmp(w->db.ev[ei].source, cx->source) != 0; /* another source's event */
        else
            dup = 1; /* first write wins */
    }
    W_ASSERT(w, ingest_event(&w->f.in, cx, rec, &o, &w->f.e) == 0, "%s", w->f.e.msg);
    w->records++;
    if ((o == INGEST_REJECTED) != reject ||
        (!reject && !cx->owns_rows && (o == INGEST_UNCHANGED) != dup))
        record_fail(w, "event", rec, reject, o);
    if (created)
        set_store_id(w, ci, xid, anon);
    if (reject || dup) {
        w->rejected += reject;
        for (i = 0; i < nkv; i++)
            ref_value_release(&kv[i].v);
        return;
    }
    if (ei < 0) {
        ei = ref_event_add(&w->db, eid, name, cx->source, ci, at);
        strmap_put(&w->evids, eid, strlen(eid), ei);
    } else { /* the owner rewrote it: latest values, back if it was deleted */
        struct ref_event *ev = &w->db.ev[ei];
        ref_event_clear(&w->db, ei);
        free(ev->name);
        ev->name = strdup(name);
        ev->contact = ci;
        ev->at = at;
        ev->deleted = 0;
    }
    for (i = 0; i < nkv; i++)
        ref_event_set(&w->db, ei, kv[i].key, kv[i].v);
    sp = spec_of(name);
    if (sp >= 0)
        w->known[sp] = 1;
}

static json_t *gen_str_prop(struct world *w, const char *const *extra, int nextra)
{
    if (extra && pct(&w->r, 60))
        return json_string(extra[rng_int(&w->r, nextra)]);
    return json_string(PICK(&w->r, str_pool));
}

/* The properties of an event of kind sp; created: the contract's created_at (JSON values;
 * text mode converts them). */
static json_t *gen_props(struct world *w, int sp, int64_t created)
{
    static const char *const screens[] = {
        "home", "Home", "HOME", "cart", "checkout", "\u00dcn\u00efc\u00f6d\u00e9", ""};
    static const char *const codes[] = {"123", "007", "abc", "45", "-1", "1e2", "true"};
    static const char *const agents[] = {"ag-1", "ag-2", "AG-1", "\u0430\u0433\u0435\u043d\u0442-7",
                                         "ag-10"};
    static const char *const outcomes[] = {"answered", "voicemail", "Answered"};
    static const char *const statuses[] = {"sent", "delivered", "read", "failed", "READ"};
    static const char *const urls[] = {"/", "/home", "/Cart", "/\u03a3\u0391\u03a3",
                                       "/stra\u00dfe"};
    static const char *const stages[] = {"lead", "won", "lost", "Won"};
    static const char *const curr[] = {"EUR", "USD", "INR", "GBP"};
    static const double amounts[] = {0, 5, 10, 10.5, 99.99, 1000, 1e6, 2.5, 12.5};
    static const int durs[] = {0, 30, 59, 60, 61, 3600};
    json_t *p = json_object();
    char b[48];

    switch (sp) {
    case EV_ORDER:
        snprintf(b, sizeof b, "o-%d", w->next_event);
        json_object_set_new(p, "order_id", json_string(b));
        if (pct(&w->r, 1))
            json_object_set_new(p, "amount", json_integer(-1)); /* constraint: refused */
        else if (pct(&w->r, 10))
            json_object_set_new(p, "amount", json_string(pct(&w->r, 50) ? "12.50" : "1e3"));
        else
            json_object_set_new(p, "amount", json_real(PICK(&w->r, amounts)));
        json_object_set_new(p, "currency", json_string(pct(&w->r, 1) ? "eur" : PICK(&w->r, curr)));
        json_object_set_new(p, "created_at", gen_ts_json(w, created));
        if (pct(&w->r, 20))
            json_object_set_new(p, "coupon", gen_str_prop(w, NULL, 0));
        if (pct(&w->r, 15))
            json_object_set_new(p, "gift", json_boolean(rng_int(&w->r, 2)));
        if (pct(&w->r, 20))
            json_object_set_new(p, "n_items", json_integer(rng_int(&w->r, 6)));
        if (pct(&w->r, 15))
            json_object_set_new(p, "note", gen_str_prop(w, NULL, 0));
        if (pct(&w->r, 10))
            json_object_set_new(p, "v", gen_mixed(w, 1));
        break;
    case EV_CALL:
        snprintf(b, sizeof b, "call-%d", w->next_event);
        json_object_set_new(p, "call_id", json_string(b));
        json_object_set_new(p, "agent_id", json_string(PICK(&w->r, agents)));
        if (pct(&w->r, 1))
            json_object_set_new(p, "duration_sec",
                                pct(&w->r, 50) ? json_integer(-5) : json_real(2.5));
        else if (pct(&w->r, 10))
            json_object_set_new(p, "duration_sec",
                                pct(&w->r, 50) ? json_real(30.0) : json_string("45"));
        else
            json_object_set_new(p, "duration_sec", json_integer(PICK(&w->r, durs)));
        json_object_set_new(p, "created_at", gen_ts_json(w, created));
        if (pct(&w->r, 20))
            json_object_set_new(p, "outcome", json_string(PICK(&w->r, outcomes)));
        break;
    case EV_WA:
        snprintf(b, sizeof b, "wa-%d", w->next_event);
        json_object_set_new(p, "message_id", json_string(b));
        json_object_set_new(p, "status", json_string(PICK(&w->r, statuses)));
        json_object_set_new(p, "created_at", gen_ts_json(w, created));
        break;
    case EV_APP:
        if (pct(&w->r, 80))
            json_object_set_new(p, "screen", gen_str_prop(w, screens, NELEM(screens)));
        if (pct(&w->r, 60))
            json_object_set_new(p, "n", gen_number_json(w));
        if (pct(&w->r, 50))
            json_object_set_new(p, "ok", json_boolean(rng_int(&w->r, 2)));
        if (pct(&w->r, 40))
            json_object_set_new(p, "at", gen_ts_json(w, gen_time(&w->r)));
        if (pct(&w->r, 30))
            json_object_set_new(p, "code", json_string(PICK(&w->r, codes)));
        if (pct(&w->r, 40))
            json_object_set_new(p, "v", gen_mixed(w, 1));
        if (pct(&w->r, 20))
            json_object_set_new(p, "note", gen_str_prop(w, NULL, 0));
        if (pct(&w->r, 3))
            json_object_set_new(p, "meta", json_pack("{s:i}", "a", 1));
        if (pct(&w->r, 3))
            json_object_set_new(p, "tags", json_pack("[s]", "x"));
        break;
    case EV_PAGE:
        json_object_set_new(p, "url", json_string(PICK(&w->r, urls)));
        if (pct(&w->r, 70))
            json_object_set_new(p, "dur", gen_number_json(w));
        if (pct(&w->r, 30))
            json_object_set_new(p, "v", gen_mixed(w, 1));
        break;
    case EV_OC:
        json_object_set_new(p, "total", gen_number_json(w));
        json_object_set_new(p, "currency", json_string(PICK(&w->r, curr)));
        if (pct(&w->r, 50))
            json_object_set_new(p, "at", gen_ts_json(w, gen_time(&w->r)));
        break;
    case EV_CAFE:
        json_object_set_new(p, "note", gen_str_prop(w, NULL, 0));
        json_object_set_new(p, "n", gen_number_json(w));
        break;
    case EV_DEAL:
        json_object_set_new(p, "stage", json_string(PICK(&w->r, stages)));
        json_object_set_new(p, "value", gen_number_json(w));
        if (pct(&w->r, 60))
            json_object_set_new(p, "won", json_boolean(rng_int(&w->r, 2)));
        break;
    case EV_ODD: {
        int k;
        for (k = 0; evspecs[EV_ODD].props[k]; k++)
            json_object_set_new(p, evspecs[EV_ODD].props[k],
                                k % 3 == 0   ? gen_str_prop(w, screens, NELEM(screens))
                                : k % 3 == 1 ? gen_number_json(w)
                                             : json_boolean(rng_int(&w->r, 2)));
        break;
    }
    case EV_STRICT:
        json_object_set_new(p, "kind", gen_str_prop(w, screens, NELEM(screens)));
        if (pct(&w->r, 60))
            json_object_set_new(
                p, "n", pct(&w->r, 10) ? json_string("7") : json_integer(rng_int(&w->r, 9) - 2));
        if (pct(&w->r, 4))
            json_object_set_new(p, "extra", json_string("refused")); /* not declared */
        break;
    default: /* late_event */
        json_object_set_new(p, "v", gen_mixed(w, 1));
        if (pct(&w->r, 50))
            json_object_set_new(p, "screen", gen_str_prop(w, screens, NELEM(screens)));
        break;
    }
    return p;
}

/* A new anonymous id, or one handed out before. */
static const char *gen_anon(struct world *w)
{
    char b[32];

    if (w->nanon && pct(&w->r, 60))
        return w->anon_ids[rng_int(&w->r, w->nanon)];
    if (w->nanon == w->anoncap) {
        w->anoncap = w->anoncap ? w->anoncap * 2 : 32;
        w->anon_ids = realloc(w->anon_ids, (size_t)w->anoncap * sizeof *w->anon_ids);
    }
    snprintf(b, sizeof b, "anon-%d-%d", w->case_no, w->next_anon++);
    w->anon_ids[w->nanon] = strdup(b);
    return w->anon_ids[w->nanon++];
}

/* Sends one event of a random kind from a random source and mirrors it. owned_id: rewrite
 * that owned event (NULL: a new one). */
static void gen_event(struct world *w, const char *owned_id)
{
    int keep = owned_id && pct(&w->r, 50) ? w_evid(w, owned_id) : -1;
    static const int weights[EV__N] = {25, 12, 6, 0, 25, 8, 6, 4, 8, 6, 5, 4};
    json_t *rec = json_object(), *props;
    int sp = 0, roll, total = 0, i, who = rng_int(&w->r, 100), ci;
    int64_t t = gen_time(&w->r), created = t;
    enum source_kind kind = SRC_API;
    char eid[64], xid[64];
    struct ingest_ctx cx;

    for (i = 0; i < EV__N; i++)
        total += (i == EV_LATE && w->round == 0) || (i == EV_WA && w->case_no % 4 == 3) ||
                         (i == EV_STRICT && !w->strict)
                     ? 0
                     : weights[i];
    roll = rng_int(&w->r, total);
    for (sp = 0; sp < EV__N; sp++) {
        int wt = (sp == EV_LATE && w->round == 0) || (sp == EV_WA && w->case_no % 4 == 3) ||
                         (sp == EV_STRICT && !w->strict)
                     ? 0
                     : weights[sp];
        if (roll < wt)
            break;
        roll -= wt;
    }
    if (owned_id) {
        kind = SRC_SYNC;
        sp = keep >= 0 ? spec_of(w->db.ev[keep].name)
                       : PICK(&w->r, ((const int[]){EV_ORDER, EV_CALL, EV_DEAL}));
        if (keep >= 0 && pct(&w->r, 50))
            t = w->db.ev[keep].at; /* the same instant, other values */
        snprintf(eid, sizeof eid, "%s", owned_id);
    } else {
        if (sp == EV_DEAL || ((sp == EV_ORDER || sp == EV_CALL) && pct(&w->r, 12))) {
            kind = SRC_SYNC;
            snprintf(eid, sizeof eid, "crm-%d-%d", w->case_no, w->next_owned++);
        } else {
            kind = pct(&w->r, 10) ? SRC_CSV : SRC_API;
            snprintf(eid, sizeof eid, "e%d-%d", w->case_no, w->next_event);
        }
    }
    w->next_event++;
    if (sp == EV_PAGE && kind != SRC_SYNC && pct(&w->r, 70))
        who = 90; /* mostly anonymous */
    if (pct(&w->r, 20) && (sp == EV_ORDER || sp == EV_CALL || sp == EV_WA))
        created = gen_time(&w->r); /* the contract's created_at apart from occurred_at */
    props = gen_props(w, sp, created);
    json_object_set_new(rec, "event", json_string(evspecs[sp].name));
    if (keep >= 0 && w->db.c[w->db.ev[keep].contact].xid) {
        json_object_set_new(rec, "external_id", json_string(w->db.c[w->db.ev[keep].contact].xid));
    } else if (who < 84 || kind == SRC_SYNC) {
        ci = who < 93 ? some_contact(w) : -1;
        if (ci < 0) {
            snprintf(xid, sizeof xid, "ev-only-%d-%d", w->case_no, w->next_contact++);
            json_object_set_new(rec, "external_id", json_string(xid));
        } else {
            json_object_set_new(rec, "external_id", json_string(w->db.c[ci].xid));
        }
    } else if (who < 92) {
        snprintf(xid, sizeof xid, "ev-only-%d-%d", w->case_no, w->next_contact++);
        json_object_set_new(rec, "external_id", json_string(xid));
    } else {
        kind = kind == SRC_CSV ? SRC_CSV : SRC_SDK;
        json_object_set_new(rec, "anonymous_id", json_string(gen_anon(w)));
    }
    cx = w_ctx(kind, gen_created(w));
    if (sp <= EV_OPENED && sp != EV_STRICT && pct(&w->r, 15)) {
        /* no occurred_at: the contract's created_at gives it */
        json_t *c = json_object_get(props, "created_at");
        if (c && json_is_string(c)) {
            int64_t ms;
            if (time_parse_iso(json_string_value(c), json_string_length(c), &ms) == 0)
                t = ms;
        }
    } else if (sp > EV_OPENED && (kind == SRC_API || kind == SRC_SDK) && pct(&w->r, 5)) {
        cx.received_at = t; /* no occurred_at: received_at gives it */
    } else {
        json_object_set_new(rec, "occurred_at", gen_ts_json(w, t));
    }
    json_object_set_new(rec, "event_id", json_string(eid));
    if (kind == SRC_CSV)
        textify(w, props);
    json_object_set_new(rec, "properties", props);
    w_event(w, &cx, rec);
    json_decref(rec);
}

/* ---- other changes -------------------------------------------------------------------------- */

/* Deletes contact ci through the store (outside a batch), as the API's DELETE does. */
static void w_delete_contact(struct world *w, int ci)
{
    struct store_contact k;

    store_contact_init(&k);
    W_ASSERT(w, store_contact_get_by_xid(w->f.st, w->db.c[ci].xid, &k, &w->f.e) == 0, "%s",
             w->f.e.msg);
    W_ASSERT(w, store_begin(w->f.st, &w->f.e) == 0, "%s", w->f.e.msg);
    k.deleted = 1;
    W_ASSERT(w, store_contact_update(w->f.st, &k, &w->f.e) == 0, "%s", w->f.e.msg);
    W_ASSERT(w, store_commit(w->f.st, &w->f.e) == 0, "%s", w->f.e.msg);
    store_contact_release(&k);
    w->db.c[ci].deleted = 1;
}

/* The CRM deletes one of its events (inside a batch). */
static void w_delete_owned(struct world *w, int ei)
{
    struct ingest_ctx cx = w_ctx(SRC_SYNC, T0);
    int deleted = -1,
        expect = !w->db.ev[ei].deleted && strcmp(w->db.ev[ei].source, "sync:crm") == 0;

    W_ASSERT(w, ingest_event_delete(&w->f.in, &cx, w->db.ev[ei].event_id, &deleted, &w->f.e) == 0,
             "%s", w->f.e.msg);
    W_ASSERT(w, deleted == expect, "delete of %s: %d, expected %d", w->db.ev[ei].event_id, deleted,
             expect);
    if (expect)
        w->db.ev[ei].deleted = 1;
}

/* Links an anonymous id to an external id (inside a batch), as an identify call does. */
static void w_link(struct world *w, const char *anon, const char *xid)
{
    struct ingest_ctx cx = w_ctx(SRC_SDK, gen_created(w));
    int a = w_anon(w, anon), u = w_xid(w, xid);

    W_ASSERT(w, ingest_link_anonymous(&w->f.in, &cx, anon, xid, &w->f.e) == 0, "%s", w->f.e.msg);
    if (a >= 0 && w->db.c[a].xid)
        return; /* already a known user's */
    if (u < 0) {
        if (a >= 0) { /* the anonymous contact becomes the user */
            w->db.c[a].xid = strdup(xid);
            strmap_put(&w->xids, xid, strlen(xid), a);
            return;
        }
        u = ref_contact_add(&w->db, xid, NULL, 0, cx.received_at);
        strmap_put(&w->xids, xid, strlen(xid), u);
        set_store_id(w, u, xid, NULL);
    } else if (a >= 0 && a != u) { /* merged: its events count for the user */
        w->db.c[a].deleted = 1;
        w->db.c[a].merged_into = u;
    }
    strmap_put(&w->anons, anon, strlen(anon), u);
}

/* ---- the mirror against the store ------------------------------------------------------------ */

struct evcheck {
    struct world *w;
    int ci;
    int n;
};

static int check_event_row(void *ctx, const struct store_event *sev)
{
    struct evcheck *ec = ctx;
    struct world *w = ec->w;
    int ei = w_evid(w, sev->event_id), i, has_contract;
    struct ref_event *ev;
    json_t *props, *v;
    const char *k;

    W_ASSERT(w, ei >= 0, "the store holds event %s that the mirror does not know", sev->event_id);
    ev = &w->db.ev[ei];
    W_ASSERT(w,
             !ev->deleted && ref_owner(&w->db, ev->contact) == ec->ci &&
                 strcmp(ev->name, sev->name) == 0 && ev->at == sev->occurred_at,
             "event %s: store has contact %lld name %s at %lld; mirror: contact %lld deleted %d "
             "name %s at %lld",
             sev->event_id, (long long)sev->contact_id, sev->name, (long long)sev->occurred_at,
             (long long)w->db.c[ref_owner(&w->db, ev->contact)].store_id, ev->deleted, ev->name,
             (long long)ev->at);
    props = json_loads(sev->props ? sev->props : "{}", 0, NULL);
    W_ASSERT(w, props != NULL, "event %s: props do not parse", sev->event_id);
    has_contract = ref_event_has_contract(ev->name);
    i = 0;
    json_object_foreach(props, k, v) {
        int t = has_contract ? ref_decl_type(ev->name, k) : REF_NONE;
        struct ref_value sv = read_stored(v, t);
        struct ref_value *mv = ref_kv_get(ev->props, ev->nprops, k);
        int same = sv.type == REF_NONE ? mv == NULL : mv && ref_value_equal(mv, &sv);
        if (!same) {
            fprintf(stderr, "event %s property %s: store ", sev->event_id, k);
            ref_value_print(stderr, &sv);
            fprintf(stderr, ", mirror ");
            if (mv)
                ref_value_print(stderr, mv);
            fprintf(stderr, "\n");
        }
        W_ASSERT(w, same, "event %s property %s differs between store and mirror (%s)",
                 sev->event_id, k, sev->props);
        i += sv.type != REF_NONE;
        ref_value_release(&sv);
    }
    W_ASSERT(w, i == ev->nprops, "event %s: store has %d typed properties, mirror %d (%s)",
             sev->event_id, i, ev->nprops, sev->props);
    json_decref(props);
    ec->n++;
    return 0;
}

/* Every contact of the mirror against its row and live events in the store. */
static void w_check_mirror(struct world *w)
{
    int ci, *nlive = calloc((size_t)w->db.nc + 1, sizeof *nlive), i;

    for (i = 0; i < w->db.nev; i++)
        if (!w->db.ev[i].deleted)
            nlive[ref_owner(&w->db, w->db.ev[i].contact)]++;
    for (ci = 0; ci < w->db.nc; ci++) {
        struct ref_contact *c = &w->db.c[ci];
        struct store_contact sc;
        struct evcheck ec = {w, ci, 0};
        const char *k;
        json_t *v;
        int nattr = 0;

        if (c->xid && strncmp(c->xid, "bulk", 4) == 0 && ci % 16 != 0)
            continue; /* bare bulk contacts: a sample is enough */
        store_contact_init(&sc);
        W_ASSERT(w, c->store_id > 0 && store_contact_get(w->f.st, c->store_id, &sc, &w->f.e) == 0,
                 "mirror contact #%d (%s) has no store row", ci, c->xid ? c->xid : "anonymous");
        W_ASSERT(w,
                 (c->xid == NULL) == (sc.external_id == NULL) &&
                     (c->xid == NULL || strcmp(c->xid, sc.external_id) == 0) &&
                     (c->email == NULL) == (sc.email == NULL) &&
                     (c->email == NULL || strcmp(c->email, sc.email) == 0) &&
                     c->consent == (int)sc.consent && c->created_at == sc.created_at &&
                     c->deleted == sc.deleted &&
                     (c->merged_into < 0 ? sc.merged_into == 0
                                         : w->db.c[c->merged_into].store_id == sc.merged_into),
                 "contact %s: store and mirror differ (xid %s email %s consent %d created %lld "
                 "deleted %d merged %lld)",
                 c->xid ? c->xid : "anonymous", sc.external_id ? sc.external_id : "-",
                 sc.email ? sc.email : "-", (int)sc.consent, (long long)sc.created_at, sc.deleted,
                 (long long)sc.merged_into);
        json_object_foreach(sc.attrs, k, v) {
            int t = ref_field_type(&w->db, k);
            struct ref_value sv = read_stored(
                v, strcmp(k, "created_at") == 0 || strcmp(k, "email") == 0 ? reg_type(w, k) : t);
            struct ref_value *mv = ref_kv_get(c->attrs, c->nattrs, k);
            W_ASSERT(w, mv && ref_value_equal(mv, &sv),
                     "contact %s attribute %s differs between store and mirror",
                     c->xid ? c->xid : "anonymous", k);
            ref_value_release(&sv);
            nattr++;
        }
        W_ASSERT(w, nattr == c->nattrs, "contact %s: store has %d attributes, mirror %d",
                 c->xid ? c->xid : "anonymous", nattr, c->nattrs);
        store_contact_release(&sc);
        W_ASSERT(w,
                 store_events_of_contact(w->f.st, c->store_id, 1 << 30, check_event_row, &ec,
                                         &w->f.e) == 0,
                 "%s", w->f.e.msg);
        W_ASSERT(w, ec.n == nlive[ci], "contact %s: store has %d live events, mirror %d",
                 c->xid ? c->xid : "anonymous", ec.n, nlive[ci]);
    }
    free(nlive);
}

/* ---- rule trees -------------------------------------------------------------------------------
 */

/* A random substring of s (whole code points). */
static json_t *substring_json(struct world *w, const char *s, size_t n)
{
    size_t bounds[256], nb = 0, i = 0, a, b;
    uint32_t cp;

    bounds[nb++] = 0;
    while (i < n && nb < NELEM(bounds)) {
        size_t len = ref_utf8_dec((const unsigned char *)s + i, n - i, &cp);
        i += len ? len : 1;
        bounds[nb++] = i;
    }
    a = bounds[rng_int(&w->r, (int)nb)];
    b = bounds[rng_int(&w->r, (int)nb)];
    if (a > b) {
        size_t t = a;
        a = b;
        b = t;
    }
    return json_stringn(s + a, b - a);
}

/* Flips the case of some ASCII letters. */
static json_t *flip_ascii(struct world *w, json_t *j)
{
    char *s = strdup(json_string_value(j));
    size_t i, n = json_string_length(j);
    json_t *out;

    for (i = 0; i < n; i++)
        if (((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z') && pct(&w->r, 50))
            s[i] ^= 0x20;
    out = json_stringn(s, n);
    free(s);
    json_decref(j);
    return out;
}

static int64_t ts_pool_value(struct world *w)
{
    static const int64_t off[] = {-1, 0, 0, 1};

    switch (rng_int(&w->r, 4)) {
    case 0:
        return T0 - (int64_t)PICK(&w->r, edge_days) * DAY + PICK(&w->r, off);
    case 1:
        return T0 + PICK(&w->r, off);
    default:
        return gen_time(&w->r);
    }
}

/* A rule value of type t, often taken from sample (a stored value of that type). */
static json_t *gen_value(struct world *w, int t, const struct ref_value *sample, int op_contains,
                         int undeclared)
{
    json_t *j;
    int64_t ms;

    if (sample && sample->type != t)
        sample = NULL;
    switch (t) {
    case REF_NUMBER:
        if (sample && pct(&w->r, 65)) {
            double d =
                sample->d + (pct(&w->r, 20) ? PICK(&w->r, ((const double[]){-1, 0.5, -0.25})) : 0);
            return d == floor(d) && fabs(d) < 1e15 && pct(&w->r, 50) ? json_integer((json_int_t)d)
                                                                     : json_real(d);
        }
        return gen_number_json(w);
    case REF_BOOLEAN:
        return json_boolean(sample && pct(&w->r, 60) ? (int)sample->i : rng_int(&w->r, 2));
    case REF_TIMESTAMP:
        if (sample && pct(&w->r, 60))
            return gen_ts_json(w, sample->i + (pct(&w->r, 25) ? rng_int(&w->r, 3) - 1 : 0));
        return gen_ts_json(w, ts_pool_value(w));
    default:
        if (sample && pct(&w->r, 60)) {
            j = op_contains && pct(&w->r, 70) ? substring_json(w, sample->s, sample->n)
                                              : json_stringn(sample->s, sample->n);
            if (pct(&w->r, op_contains ? 40 : 10))
                j = flip_ascii(w, j);
        } else if (op_contains && pct(&w->r, 50)) {
            j = json_string(PICK(&w->r, needle_pool));
        } else {
            j = json_string(PICK(&w->r, str_pool));
        }
        /* An undeclared property's type comes from the value: keep strings strings. */
        if (undeclared && time_parse_iso(json_string_value(j), json_string_length(j), &ms) == 0) {
            char b[128];
            snprintf(b, sizeof b, "%s~", json_string_value(j));
            json_decref(j);
            j = json_string(b);
        }
        return j;
    }
}

static const char *gen_op(struct world *w, int t)
{
    static const char *const str_ops[] = {"eq", "neq", "in", "contains", "gte", "lte", "contains"};
    static const char *const ord_ops[] = {"eq", "neq", "in", "gte", "lte"};
    static const char *const bool_ops[] = {"eq", "neq"};

    if (t == REF_STRING)
        return PICK(&w->r, str_ops);
    if (t == REF_BOOLEAN)
        return PICK(&w->r, bool_ops);
    return PICK(&w->r, ord_ops);
}

/* A stored value of an attribute field on a random contact (owned), or type REF_NONE. */
static struct ref_value sample_attr(struct world *w, const char *field)
{
    int i;

    for (i = 0; i < 12 && w->db.nc; i++) {
        struct ref_value tmp,
            *v = ref_contact_field(&w->db.c[rng_int(&w->r, w->db.nc)], field, &tmp);
        if (v && v->type != REF_NONE) {
            struct ref_value out = ref_value_copy(v);
            ref_value_release(&tmp);
            return out;
        }
        ref_value_release(&tmp);
    }
    return (struct ref_value){.type = REF_NONE};
}

static struct ref_value sample_prop(struct world *w, const char *name, const char *prop)
{
    int i;

    for (i = 0; i < 40 && w->db.nev; i++) {
        struct ref_event *ev = &w->db.ev[rng_int(&w->r, w->db.nev)];
        struct ref_value *v;
        if (strcmp(ev->name, name) != 0)
            continue;
        v = ref_kv_get(ev->props, ev->nprops, prop);
        if (v)
            return ref_value_copy(v);
    }
    return (struct ref_value){.type = REF_NONE};
}

/* {field, op, value} for a field of type t; consent: the email_consent built-in. */
static void gen_cond(struct world *w, json_t *o, int t, const struct ref_value *sample, int consent,
                     int undeclared)
{
    const char *op = gen_op(w, t);
    int contains = strcmp(op, "contains") == 0, n, i;

    json_object_set_new(o, "op", json_string(op));
    if (consent && (strcmp(op, "eq") == 0 || strcmp(op, "neq") == 0)) {
        json_object_set_new(o, "value", json_string(PICK(&w->r, consent_pool)));
    } else if (strcmp(op, "in") == 0) {
        json_t *arr = json_array();
        n = 1 + rng_int(&w->r, pct(&w->r, 80) ? 4 : 12);
        for (i = 0; i < n; i++)
            json_array_append_new(arr, consent ? json_string(PICK(&w->r, consent_pool))
                                               : gen_value(w, t, sample, 0, undeclared));
        json_object_set_new(o, "value", arr);
    } else {
        json_object_set_new(o, "value", gen_value(w, t, sample, contains, undeclared));
    }
}

static json_t *gen_attribute_rule(struct world *w)
{
    json_t *o = json_object();
    const char *field;
    struct ref_value sample;
    int t, roll = rng_int(&w->r, 100);

    if (roll < 25 || w->db.nreg == 0)
        field = PICK(&w->r, builtin_fields);
    else if (roll < 55)
        field = PICK(&w->r, declared_attrs);
    else
        field = w->db.reg[rng_int(&w->r, w->db.nreg)].key;
    t = ref_field_type(&w->db, field);
    ASSERT(t != REF_NONE);
    sample = sample_attr(w, field);
    json_object_set_new(o, "type", json_string("attribute"));
    json_object_set_new(o, "field", json_string(field));
    gen_cond(w, o, t, &sample, strcmp(field, "email_consent") == 0, 0);
    ref_value_release(&sample);
    return o;
}

static json_t *gen_behavior_rule(struct world *w)
{
    json_t *o = json_object();
    int sp, i, nwhere;

    do
        sp = rng_int(&w->r, EV__N);
    while (!w->known[sp] && !ref_event_has_contract(evspecs[sp].name));
    json_object_set_new(o, "type", json_string("behavior"));
    json_object_set_new(o, "event", json_string(evspecs[sp].name));
    json_object_set_new(o, "op", json_string(pct(&w->r, 65) ? "did_event" : "did_not_event"));
    json_object_set_new(
        o, "within_days",
        json_integer(pct(&w->r, 65) ? PICK(&w->r, edge_days) : 1 + rng_int(&w->r, 730)));
    if (strcmp(json_string_value(json_object_get(o, "op")), "did_event") == 0 && pct(&w->r, 35))
        json_object_set_new(
            o, "count_gte",
            json_integer(pct(&w->r, 90)
                             ? 1 + rng_int(&w->r, 4)
                             : PICK(&w->r, ((const int[]){10, 20, 50, 100, 1000000000}))));
    nwhere = pct(&w->r, 45) ? 1 + rng_int(&w->r, 3) : 0;
    if (nwhere) {
        json_t *arr = json_array();
        for (i = 0; i < nwhere; i++) {
            json_t *c = json_object();
            const char *prop;
            int np = 0, t, decl;
            struct ref_value sample;
            while (evspecs[sp].props[np])
                np++;
            prop = pct(&w->r, 92) || sp == EV_STRICT
                       ? evspecs[sp].props[rng_int(&w->r, np)]
                       : PICK(&w->r, ((const char *const[]){"nope", "Screen", "amount "}));
            decl = ref_decl_type(evspecs[sp].name, prop);
            sample = sample_prop(w, evspecs[sp].name, prop);
            if (decl != REF_NONE)
                t = decl;
            else if (sample.type != REF_NONE && pct(&w->r, 75))
                t = sample.type;
            else
                t = rng_int(&w->r, 4);
            json_object_set_new(c, "field", json_string(prop));
            gen_cond(w, c, t, &sample, 0, decl == REF_NONE);
            ref_value_release(&sample);
            json_array_append_new(arr, c);
        }
        if (json_array_size(arr))
            json_object_set_new(o, "where", arr);
        else
            json_decref(arr);
    }
    return o;
}

struct gen {
    int nrules, cap, deep;
};

static json_t *gen_rule(struct world *w, struct gen *g)
{
    g->nrules++;
    return pct(&w->r, 55) ? gen_attribute_rule(w) : gen_behavior_rule(w);
}

/* A group at depth (the root group is 1); groups nest at most 5 deep. */
static json_t *gen_group(struct world *w, struct gen *g, int depth)
{
    json_t *o = json_object(), *arr = json_array();
    int n = 1 + rng_int(&w->r, depth == 1 ? 4 : 3), i;

    json_object_set_new(o, "op", json_string(pct(&w->r, 50) ? "AND" : "OR"));
    for (i = 0; i < n; i++) {
        if (i > 0 && g->nrules >= g->cap)
            break;
        if (depth < 5 && g->nrules < g->cap && pct(&w->r, g->deep ? 70 : 30))
            json_array_append_new(arr, gen_group(w, g, depth + 1));
        else
            json_array_append_new(arr, gen_rule(w, g));
    }
    json_object_set_new(o, "rules", arr);
    return o;
}

static json_t *gen_tree(struct world *w)
{
    struct gen g = {0, 30, pct(&w->r, 20)};

    if (pct(&w->r, 15))
        return gen_rule(w, &g);
    return gen_group(w, &g, 1);
}

/* A rule that is wrong in one way (docs/dsl.md "Validation"). */
static json_t *gen_invalid_rule(struct world *w)
{
    static const char *const bad[] = {
        "{\"type\":\"attribute\",\"field\":\"ltv\",\"op\":\"contains\",\"value\":\"1\"}",
        "{\"type\":\"attribute\",\"field\":\"cty\",\"op\":\"eq\",\"value\":\"x\"}",
        "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"eq\",\"value\":5}",
        "{\"type\":\"attribute\",\"field\":\"email_consent\",\"op\":\"eq\",\"value\":\"maybe\"}",
        "{\"type\":\"attribute\",\"field\":\"email_consent\",\"op\":\"in\",\"value\":[\"bounced\","
        "\"x\"]}",
        "{\"type\":\"attribute\",\"field\":\"signup_at\",\"op\":\"gte\",\"value\":\"soon\"}",
        "{\"type\":\"attribute\",\"field\":\"created_at\",\"op\":\"contains\",\"value\":\"2026\"}",
        "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"in\",\"value\":[]}",
        "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"in\",\"value\":\"Pune\"}",
        "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"eq\",\"value\":[\"Pune\"]}",
        "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"like\",\"value\":\"x\"}",
        "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"eq\"}",
        "{\"type\":\"attribute\",\"feild\":\"city\",\"op\":\"eq\",\"value\":\"x\"}",
        "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"eq\",\"value\":\"x\",\"extra\":1}",
        "{\"type\":\"attribut\",\"field\":\"city\",\"op\":\"eq\",\"value\":\"x\"}",
        "{\"type\":\"attribute\",\"field\":\"\",\"op\":\"eq\",\"value\":\"x\"}",
        "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\",\"within_days\":"
        "0}",
        "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\",\"within_days\":"
        "731}",
        "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\",\"within_days\":1."
        "5}",
        "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\",\"within_days\":"
        "\"30\"}",
        "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\"}",
        "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_not_event\",\"within_"
        "days\":3,"
        "\"count_gte\":2}",
        "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\",\"within_days\":3,"
        "\"count_gte\":0}",
        "{\"type\":\"behavior\",\"event\":\"order_craeted\",\"op\":\"did_event\",\"within_days\":"
        "3}",
        "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did\",\"within_days\":3}",
        "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\",\"within_days\":3,"
        "\"where\":[{\"field\":\"amount\",\"op\":\"contains\",\"value\":\"1\"}]}",
        "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\",\"within_days\":3,"
        "\"where\":[{\"field\":\"amount\",\"op\":\"eq\",\"value\":\"10\"}]}",
        "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\",\"within_days\":3,"
        "\"where\":[{\"field\":\"coupon\",\"op\":\"in\",\"value\":[1,\"a\"]}]}",
        "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\",\"within_days\":3,"
        "\"where\":[{\"field\":\"gift\",\"op\":\"gte\",\"value\":true}]}",
        "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\",\"within_days\":3,"
        "\"where\":{\"field\":\"gift\",\"op\":\"eq\",\"value\":true}}",
        "{\"op\":\"OR\",\"rules\":[]}",
        "{\"op\":\"XOR\",\"rules\":[{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"eq\","
        "\"value\":\"x\"}]}",
        "{\"op\":\"AND\",\"rules\":[{\"op\":\"AND\",\"rules\":[{\"op\":\"AND\",\"rules\":[{\"op\":"
        "\"AND\",\"rules\":[{\"op\":\"AND\",\"rules\":[{\"op\":\"OR\",\"rules\":[{\"type\":"
        "\"attribute\",\"field\":\"city\",\"op\":\"eq\",\"value\":\"x\"}]}]}]}]}]}]}",
        "[]",
    };
    json_t *j;

    if (w->strict && pct(&w->r, 10))
        return json_pack("{s:s,s:s,s:s,s:i,s:[{s:s,s:s,s:s}]}", "type", "behavior", "event",
                         "strict_ping", "op", "did_event", "within_days", 30, "where", "field",
                         "extra", "op", "eq", "value", "x"); /* not declared by a strict contract */
    j = json_loads(PICK(&w->r, bad), 0, NULL);
    ASSERT(j);
    return j;
}

/* Trees at the guardrails: exactly max_rules rules / max_in_values values / max_depth
 * groups (valid), or one more (invalid). */
static json_t *gen_limit_tree(struct world *w, int *invalid)
{
    json_t *arr = json_array(), *vals, *root;
    int i, over = rng_int(&w->r, 2), kind = rng_int(&w->r, 3);

    *invalid = over;
    if (kind == 0) {
        struct gen g = {0, 1000, 0};
        for (i = 0; i < w->lim.max_rules + over; i++)
            json_array_append_new(arr, gen_rule(w, &g));
        return json_pack("{s:s,s:o}", "op", pct(&w->r, 50) ? "AND" : "OR", "rules", arr);
    }
    if (kind == 1) {
        vals = json_array();
        for (i = 0; i < w->lim.max_in_values + over; i++) {
            char b[32];
            snprintf(b, sizeof b, "v%d", i);
            json_array_append_new(vals, json_string(i == 7 ? "Pune" : b));
        }
        json_decref(arr);
        return json_pack("{s:s,s:s,s:s,s:o}", "type", "attribute", "field", "city", "op", "in",
                         "value", vals);
    }
    /* a chain of groups, each with one rule beside the next group */
    json_decref(arr);
    {
        struct gen g = {0, 1000, 0};
        root = json_pack("{s:s,s:[o]}", "op", "OR", "rules", gen_rule(w, &g));
        for (i = 1; i < w->lim.max_depth + over; i++)
            root = json_pack("{s:s,s:[o,o]}", "op", i % 2 ? "AND" : "OR", "rules", gen_rule(w, &g),
                             root);
        return root;
    }
}

/* ---- evaluation and comparison ----------------------------------------------------------- */

struct idlist {
    char **ids;
    int64_t *cids, last;
    size_t n, cap;
};

static int collect_id(void *ctx, int64_t id, const char *xid)
{
    struct idlist *l = ctx;

    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->ids = realloc(l->ids, l->cap * sizeof *l->ids);
        l->cids = realloc(l->cids, l->cap * sizeof *l->cids);
    }
    l->cids[l->n] = id;
    l->ids[l->n++] = strdup(xid);
    l->last = id;
    return 0;
}

static void idlist_release(struct idlist *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->ids[i]);
    free(l->ids);
    free(l->cids);
    memset(l, 0, sizeof *l);
}

/* The members again in pages (after_id cursor, limit): the same ids in the same order. */
static void check_pages(struct world *w, const struct segment_result *res, const struct idlist *all)
{
    struct idlist pg = {0};
    int64_t limit = 1 + rng_int(&w->r, 7), after = 0;
    size_t before;

    do {
        before = pg.n;
        W_ASSERT(w,
                 segment_members(w->ix, w->f.st, res, after, limit, collect_id, &pg, &w->f.e) == 0,
                 "members: %s", w->f.e.msg);
        W_ASSERT(w, pg.n - before <= (size_t)limit, "a page of %zu > limit %lld", pg.n - before,
                 (long long)limit);
        after = pg.last;
    } while (pg.n - before == (size_t)limit);
    W_ASSERT(w, pg.n == all->n, "paging gave %zu members, one walk %zu", pg.n, all->n);
    for (before = 0; before < pg.n; before++)
        W_ASSERT(w,
                 pg.cids[before] == all->cids[before] &&
                     strcmp(pg.ids[before], all->ids[before]) == 0,
                 "page walk differs at %zu", before);
    idlist_release(&pg);
    w->pages++;
}

static int strp_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void event_names_in(const json_t *j, const char **names, int *n, int cap)
{
    const char *k;
    json_t *v;
    size_t i;

    if (json_is_array(j)) {
        json_array_foreach(j, i, v)
            event_names_in(v, names, n, cap);
    } else if (json_is_object(j)) {
        json_object_foreach((json_t *)j, k, v) {
            if (strcmp(k, "event") == 0 && json_is_string(v) && *n < cap)
                names[(*n)++] = json_string_value(v);
            else
                event_names_in(v, names, n, cap);
        }
    }
}

static void dump_by_xid(struct world *w, const char *xid, const char **names, int nnames)
{
    int ci = w_xid(w, xid);

    if (ci < 0) {
        fprintf(stderr, "  %s: not in the reference copy\n", xid);
        return;
    }
    ref_contact_dump(stderr, &w->db, ci, names, nnames);
}

static void report(struct world *w, const json_t *rules, const struct segment_plan *plan,
                   int64_t now, struct idlist *eng, const char **ref, size_t nref)
{
    char *txt = json_dumps(rules, JSON_COMPACT), iso[32], *ptxt;
    const char *names[16];
    json_t *ex = segment_plan_explain(plan);
    int nnames = 0, shown = 0;
    size_t i = 0, j = 0;

    time_format_iso(now, iso);
    event_names_in(rules, names, &nnames, NELEM(names));
    fprintf(stderr,
            "\n==== segment_random: engine and reference disagree\n"
            "seed=%llu, case %d (case seed 0x%016llx), round %d, tree %ld, now %s (%lld)\n"
            "rules: %s\nengine: %zu members, reference: %zu\n",
            (unsigned long long)test_seed(), w->case_no, (unsigned long long)w->seed, w->round,
            w->trees, iso, (long long)now, txt, eng->n, nref);
    while ((i < eng->n || j < nref) && shown < 6) {
        int c = i >= eng->n ? 1 : j >= nref ? -1 : strcmp(eng->ids[i], ref[j]);
        if (c == 0) {
            i++;
            j++;
            continue;
        }
        fprintf(stderr, "only the %s has %s:\n", c < 0 ? "ENGINE" : "REFERENCE",
                c < 0 ? eng->ids[i] : ref[j]);
        dump_by_xid(w, c < 0 ? eng->ids[i] : ref[j], names, nnames);
        if (c < 0)
            i++;
        else
            j++;
        shown++;
    }
    ptxt = json_dumps(ex, JSON_COMPACT);
    fprintf(stderr,
            "plan: %s\nreproduce: ENGAGE_TEST_SEED=%llu ./t-segment_random "
            "--filter 'segment_random/case%d'\n",
            ptxt, (unsigned long long)test_seed(), w->case_no);
    free(ptxt);
    json_decref(ex);
    free(txt);
}

/* Compiles and evaluates rules on the engine and the reference; 0 if they agree. */
static int check_tree(struct world *w, json_t *rules, int64_t now, int invalid)
{
    struct segment_plan *plan = NULL;
    struct segment_result res = {0};
    struct errlist errs;
    struct idlist eng = {0};
    const char **ref;
    size_t nref, i;
    int rc, bad = 0;

    memset(&errs, 0, sizeof errs);
    rc = segment_compile(w->ix, w->f.st, w->cs, rules, &w->lim, &plan, &errs, &w->f.e);
    w->trees++;
    if (invalid) {
        char *t = json_dumps(rules, JSON_COMPACT | JSON_ENCODE_ANY);
        W_ASSERT(w, rc == E_INVAL && errs.n > 0 && plan == NULL,
                 "invalid rules were accepted (rc %d, %d problems): %s", rc, errs.n, t);
        free(t);
        err_clear(&w->f.e);
        w->invalid++;
        return 0;
    }
    if (rc != 0) {
        char *t = json_dumps(rules, JSON_COMPACT);
        for (i = 0; i < (size_t)errs.n; i++)
            fprintf(stderr, "  %s: %s\n", errs.items[i].path, errs.items[i].msg);
        W_ASSERT(w, 0, "valid rules were refused (rc %d: %s): %s", rc, w->f.e.msg, t);
        free(t);
    }
    W_ASSERT(w, segment_eval(w->ix, plan, now, &w->lim, &res, &w->f.e) == 0, "%s", w->f.e.msg);
    W_ASSERT(w, segment_members(w->ix, w->f.st, &res, 0, 0, collect_id, &eng, &w->f.e) == 0,
             "members: %s", w->f.e.msg);
    W_ASSERT(w, (size_t)res.count == eng.n, "count %lld but %zu members", (long long)res.count,
             eng.n);
    if (pct(&w->r, 10))
        check_pages(w, &res, &eng);
    if (pct(&w->r, 5)) { /* explain works on every plan */
        json_t *ex = segment_plan_explain(plan);
        W_ASSERT(w, json_is_object(ex), "explain");
        json_decref(ex);
    }
    if (eng.n)
        qsort(eng.ids, eng.n, sizeof *eng.ids, strp_cmp);
    ref = ref_eval(&w->db, rules, now, &nref);
    if (eng.n != nref)
        bad = 1;
    for (i = 0; i < eng.n && !bad; i++)
        bad = strcmp(eng.ids[i], ref[i]) != 0;
    if (bad) {
        report(w, rules, plan, now, &eng, ref, nref);
        w->mismatches++;
    }
    w->nonempty += nref > 0;
    idlist_release(&eng);
    free(ref);
    segment_result_release(&res);
    segment_plan_free(plan);
    if (bad && !w->keep_going)
        W_ASSERT(w, 0, "engine and reference disagree (details above)");
    return bad;
}

static int64_t gen_now(struct world *w)
{
    static const int64_t near[] = {1, -1, DAY, -DAY};

    switch (rng_int(&w->r, 12)) {
    case 0:
        return T0 + PICK(&w->r, near);
    case 1:
        return w->db.nev ? w->db.ev[rng_int(&w->r, w->db.nev)].at : T0;
    case 10: /* an event exactly on the window's far edge */
        return (w->db.nev ? w->db.ev[rng_int(&w->r, w->db.nev)].at : T0) +
               (int64_t)PICK(&w->r, edge_days) * DAY;
    case 2:
        return T0 - rng_int(&w->r, 400) * DAY - rng_int(&w->r, (int)DAY_MS);
    default:
        return T0;
    }
}

/* One round: catch up the index, check the mirror, run the trees. */
/* n random trees (a few invalid, a few at the guardrails) against the reference. */
static void w_trees(struct world *w, int n)
{
    double t0 = mono_ms();
    int i;

    ref_db_index(&w->db);
    for (i = 0; i < n; i++) {
        int invalid = pct(&w->r, 4);
        json_t *rules;
        if (pct(&w->r, 2))
            rules = gen_limit_tree(w, &invalid);
        else if (invalid)
            rules = pct(&w->r, 50) ? gen_invalid_rule(w)
                                   : json_pack("{s:s,s:[o,o]}", "op", "AND", "rules", gen_tree(w),
                                               gen_invalid_rule(w));
        else
            rules = gen_tree(w);
        check_tree(w, rules, gen_now(w), invalid);
        json_decref(rules);
    }
    w->eval_ms += mono_ms() - t0;
}

/* Between two batches of changes: sometimes a catch-up and a few trees, so that the
 * index sees the changes in more than one step (and loads property columns halfway). */
static void w_midway(struct world *w)
{
    if (!pct(&w->r, 50))
        return;
    W_ASSERT(w, audience_index_catch_up(w->ix, w->f.st, &w->f.e) == 0, "%s", w->f.e.msg);
    w_trees(w, 3 + rng_int(&w->r, 6));
}

struct seqs {
    int n;
    int64_t seq[8];
};

static int grab_seq(void *ctx, const struct store_event *ev)
{
    struct seqs *s = ctx;
    if (s->n < 8)
        s->seq[s->n++] = ev->seq;
    return 0;
}

/* Each contact's latest events as the index gives them (the contacts API) and as a
 * scan of the store does, in the same order. */
static void w_check_recent(struct world *w)
{
    int i, k;

    for (i = 0; i < w->db.nc; i++) {
        int64_t rows[5], times[5];
        struct seqs st = {0};
        size_t n = audience_index_recent(w->ix, w->db.c[i].store_id, 5, rows, times);
        W_ASSERT(w,
                 store_events_of_contact(w->f.st, w->db.c[i].store_id, 5, grab_seq, &st, &w->f.e) ==
                     0,
                 "%s", w->f.e.msg);
        W_ASSERT(w, (int)n == st.n, "contact %lld: the index has %zu latest events, the store %d",
                 (long long)w->db.c[i].store_id, n, st.n);
        for (k = 0; k < st.n; k++)
            W_ASSERT(w, rows[k] == st.seq[k],
                     "contact %lld: latest event %d is %lld in the index, "
                     "%lld in the store",
                     (long long)w->db.c[i].store_id, k, (long long)rows[k], (long long)st.seq[k]);
    }
}

static void w_round(struct world *w)
{
    int i;
    struct audience_stats as;
    int64_t members = 0, live_events = 0, max_id = 0;

    W_ASSERT(w, audience_index_catch_up(w->ix, w->f.st, &w->f.e) == 0, "%s", w->f.e.msg);
    if (pct(&w->r, 30)) /* a catch-up with nothing new changes nothing */
        W_ASSERT(w, audience_index_catch_up(w->ix, w->f.st, &w->f.e) == 0, "%s", w->f.e.msg);
    double t0 = mono_ms();

    ref_db_index(&w->db);
    w_check_mirror(w);
    w_check_recent(w);
    w->check_ms += mono_ms() - t0;
    for (i = 0; i < w->db.nc; i++) {
        members += ref_is_member(&w->db.c[i]);
        if (w->db.c[i].store_id > max_id)
            max_id = w->db.c[i].store_id;
    }
    for (i = 0; i < w->db.nev; i++)
        live_events += !w->db.ev[i].deleted;
    audience_index_stats(w->ix, &as);
    W_ASSERT(w, as.members == members && as.events == live_events && as.contacts == max_id,
             "index stats: %lld members, %lld events, %lld contacts; reference %lld, %lld, %lld",
             (long long)as.members, (long long)as.events, (long long)as.contacts,
             (long long)members, (long long)live_events, (long long)max_id);
    w_trees(w, w->trees_per_round);
}

/* ---- building and changing the data ------------------------------------------------------- */

/* Bare contacts (an id, maybe a city): cheap bulk, for index sizes past a boundary. */
static void bare_contacts(struct world *w, int n)
{
    int i;
    char xid[32];

    for (i = 0; i < n; i++) {
        struct ingest_ctx cx = w_ctx(SRC_API, T0 - rng_int(&w->r, 100) * DAY);
        json_t *rec;
        snprintf(xid, sizeof xid, "bulk%06d", w->next_contact++);
        rec = pct(&w->r, 20) ? json_pack("{s:s,s:{s:s}}", "external_id", xid, "attributes", "city",
                                         PICK(&w->r, str_pool))
                             : json_pack("{s:s}", "external_id", xid);
        w_contact(w, &cx, rec);
        json_decref(rec);
    }
}

/* A few contacts with many events of one name on few instants (ties at the edges). */
static void heavy_contacts(struct world *w)
{
    static const int64_t at_days[] = {0, 1, 7, 30};
    int h, i, n;

    for (h = 0; h < 3; h++) {
        int ci = live_contact(w);
        if (ci < 0)
            return;
        n = 20 + rng_int(&w->r, 120);
        for (i = 0; i < n; i++) {
            struct ingest_ctx cx = w_ctx(SRC_API, T0);
            char eid[48];
            json_t *rec;
            snprintf(eid, sizeof eid, "h%d-%d", w->case_no, w->next_event++);
            rec = json_pack("{s:s,s:s,s:s,s:o,s:{s:i,s:s}}", "external_id", w->db.c[ci].xid,
                            "event", "app_open", "event_id", eid, "occurred_at",
                            gen_ts_json(w, T0 - PICK(&w->r, at_days) * DAY + rng_int(&w->r, 3) - 1),
                            "properties", "n", rng_int(&w->r, 3), "screen",
                            pct(&w->r, 50) ? "home" : "cart");
            w_event(w, &cx, rec);
            json_decref(rec);
        }
    }
}

static void populate(struct world *w, int ncontacts, int nevents, int nbare)
{
    int i;
    double t0 = mono_ms();

    w_begin(w);
    for (i = 0; i < ncontacts; i++) {
        gen_contact(w, NULL);
        if (nbare && i == ncontacts / 2)
            bare_contacts(w, nbare);
    }
    for (i = 0; i < nevents; i++)
        gen_event(w, NULL);
    heavy_contacts(w);
    w_commit(w);
    w->ingest_ms += mono_ms() - t0;
}

/* A random owned event (index) of the CRM, or -1. */
static int owned_event(struct world *w)
{
    int i, ei;

    for (i = 0; i < 60 && w->db.nev; i++) {
        ei = rng_int(&w->r, w->db.nev);
        if (strcmp(w->db.ev[ei].source, "sync:crm") == 0)
            return ei;
    }
    return -1;
}

/* A deleted (not merged) contact restored through the store, as the API's restore does. */
static void w_restore_contact(struct world *w)
{
    struct store_contact k;
    int i, ci = -1;

    for (i = 0; i < w->db.nc && ci < 0; i++)
        if (w->db.c[i].deleted && w->db.c[i].merged_into < 0 && w->db.c[i].xid)
            ci = i;
    if (ci < 0)
        return;
    store_contact_init(&k);
    W_ASSERT(w, store_contact_get_by_xid(w->f.st, w->db.c[ci].xid, &k, &w->f.e) == 0, "%s",
             w->f.e.msg);
    W_ASSERT(w, store_begin(w->f.st, &w->f.e) == 0, "%s", w->f.e.msg);
    k.deleted = 0;
    W_ASSERT(w, store_contact_update(w->f.st, &k, &w->f.e) == 0, "%s", w->f.e.msg);
    W_ASSERT(w, store_commit(w->f.st, &w->f.e) == 0, "%s", w->f.e.msg);
    store_contact_release(&k);
    w->db.c[ci].deleted = 0;
}

static void mutate(struct world *w, int grow)
{
    int i, ci, ei, n;
    char b[64];
    double t0 = mono_ms(), e0 = w->eval_ms;

    snprintf(w->late_attr, sizeof w->late_attr, "late_%d", w->round);
    w_begin(w);
    if (grow)
        bare_contacts(w, grow);
    n = 10 + rng_int(&w->r, 25);
    for (i = 0; i < n; i++) /* new contacts, some with a never-seen attribute */
        gen_contact(w, NULL);
    n = 20 + rng_int(&w->r, 40);
    for (i = 0; i < n; i++) { /* changes: attributes, email, consent (sticky from CSV) */
        ci = some_contact(w);
        if (ci >= 0)
            gen_contact(w, w->db.c[ci].xid);
    }
    w_commit(w);
    w_midway(w);
    w_begin(w);
    n = 150 + rng_int(&w->r, 300);
    for (i = 0; i < n; i++)
        gen_event(w, NULL);
    w_commit(w);
    w_midway(w);
    w_begin(w);
    n = 10 + rng_int(&w->r, 20);
    for (i = 0; i < n; i++) { /* the CRM rewrites its events, deletes some, revives some */
        ei = owned_event(w);
        if (ei < 0)
            break;
        if (pct(&w->r, 35) && !w->db.ev[ei].deleted)
            w_delete_owned(w, ei);
        else
            gen_event(w, w->db.ev[ei].event_id);
        if (i % 4 == 3) { /* a change the index sees before the next one */
            w_commit(w);
            w_midway(w);
            w_begin(w);
        }
    }
    /* a non-owner cannot touch an owned event: a duplicate id is ignored */
    ei = owned_event(w);
    ci = live_contact(w);
    if (ei >= 0 && ci >= 0) {
        struct ingest_ctx cx = w_ctx(SRC_API, T0);
        json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:{}}", "external_id", w->db.c[ci].xid, "event",
                                w->db.ev[ei].name, "event_id", w->db.ev[ei].event_id, "occurred_at",
                                "2025-12-31T00:00:00Z", "properties");
        w_event(w, &cx, rec);
        json_decref(rec);
    }
    /* identify calls: anonymous ids linked to users, old and new */
    n = 2 + rng_int(&w->r, 5);
    for (i = 0; i < n && w->nanon; i++) {
        const char *anon = w->anon_ids[rng_int(&w->r, w->nanon)];
        ci = live_contact(w);
        if (pct(&w->r, 30) || ci < 0) {
            snprintf(b, sizeof b, "idf-%d-%d", w->case_no, w->next_contact++);
            w_link(w, anon, b);
        } else {
            w_link(w, anon, w->db.c[ci].xid);
        }
    }
    /* an anonymous id linked before its first event: its events go to the user */
    ci = live_contact(w);
    if (ci >= 0) {
        if (w->nanon == w->anoncap) {
            w->anoncap = w->anoncap ? w->anoncap * 2 : 32;
            w->anon_ids = realloc(w->anon_ids, (size_t)w->anoncap * sizeof *w->anon_ids);
        }
        snprintf(b, sizeof b, "anon-%d-early-%d", w->case_no, w->round);
        w->anon_ids[w->nanon++] = strdup(b);
        w_link(w, b, w->db.c[ci].xid);
    }
    w_commit(w);
    w_midway(w);
    if (pct(&w->r, 40))
        w_restore_contact(w);
    n = 1 + rng_int(&w->r, 3);
    for (i = 0; i < n; i++) { /* deletions, then records for deleted contacts are refused */
        ci = live_contact(w);
        if (ci >= 0)
            w_delete_contact(w, ci);
    }
    w_midway(w);
    w_begin(w);
    for (i = 0; i < 20; i++)
        gen_event(w, NULL);
    for (i = 0; i < 5; i++) {
        ci = some_contact(w);
        if (ci >= 0)
            gen_contact(w, w->db.c[ci].xid);
    }
    w_commit(w);
    w->ingest_ms += mono_ms() - t0 - (w->eval_ms - e0);
}

/* Case shapes: most cases hold a few hundred contacts; case 4 starts just under the
 * index's first capacity (1024 contact ids) and grows past it between rounds; case 9
 * holds more than one evaluation block (16384 contacts) and runs on 4 threads. */
static void run_case(int case_no)
{
    struct world w;
    int rounds, big = case_no == 9, cross = case_no == 4;
    int nbig = env_int("SEGMENT_BIG", 16500); /* > 65536 also makes string decisions threaded */

    w_open(&w, case_no);
    if (big) {
        w.lim.threads = 4;
        w.trees_per_round = w.trees_per_round * 2 / 5;
    }
    populate(&w,
             big     ? 250
             : cross ? 300
                     : 150 + rng_int(&w.r, 200),
             big     ? 1200
             : cross ? 900
                     : 1200 + rng_int(&w.r, 1600),
             big     ? nbig
             : cross ? 500
                     : 0);
    w_round(&w);
    rounds = big ? 1 : 2 + rng_int(&w.r, 2);
    for (w.round = 1; w.round <= rounds; w.round++) {
        mutate(&w, cross && w.round == 1 ? 200 : 0);
        w_round(&w);
    }
    w.round--;
    fprintf(stderr,
            "segment_random case %d (seed=%llu): %ld trees (%ld invalid, %ld with members, "
            "%ld paged), %d contacts, %d events, %ld records (%ld refused), ingest %.0f ms, "
            "trees %.0f ms, mirror check %.0f ms, %ld mismatches\n",
            case_no, (unsigned long long)test_seed(), w.trees, w.invalid, w.nonempty, w.pages,
            w.db.nc, w.db.nev, w.records, w.rejected, w.ingest_ms, w.eval_ms, w.check_ms,
            w.mismatches);
    W_ASSERT(&w, w.mismatches == 0, "%ld trees disagreed (details above)", w.mismatches);
    W_ASSERT(&w, w.nonempty * 4 > w.trees - w.invalid, "too few trees have members: %ld of %ld",
             w.nonempty, w.trees);
    w_close(&w);
}

/* ThreadSanitizer (tests/run.sh runs case 9 under it) makes a case 5-15 times slower. */
#ifdef __SANITIZE_THREAD__
#define CASE_TIMEOUT_S 900
#else
#define CASE_TIMEOUT_S 120
#endif
#define CASE(k)                                                                                    \
    UTEST(segment_random, case##k, .timeout = CASE_TIMEOUT_S)                                      \
    {                                                                                              \
        cr_assert_eq(ref_fold_load("/usr/share/unicode/CaseFolding.txt"), 0);                      \
        run_case(k);                                                                               \
        ref_fold_free();                                                                           \
    }
CASE(0)
CASE(1)
CASE(2)
CASE(3)
CASE(4)
CASE(5)
CASE(6)
CASE(7)
CASE(8)
CASE(9)

/* ---- the reference itself ------------------------------------------------------------------ */

UTEST(segment_random, reference_folds_like_dsl_md)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"PUNE", "pune"},
        {"\u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3",
         "\u03c3\u03af\u03c3\u03c5\u03c6\u03bf\u03c3"},
        {"\u03c3\u03b1\u03c2", "\u03c3\u03b1\u03c3"},
        {"\u01c5", "\u01c6"},
        {"\u212a", "k"},
        {"\uff21\uff22", "\uff41\uff42"},
        {"\u00df", "\u00df"}, /* ß does not become ss */
        {"STRASSE", "strasse"},
        {"\u0130stanbul", "\u0130stanbul"}, /* İ stays */
        {"\u1e9e", "\u00df"},
        {"\u00c9", "\u00e9"},
        {"\u041c\u041e\u0421\u041a\u0412\u0410", "\u043c\u043e\u0441\u043a\u0432\u0430"},
        {"\U0001F600", "\U0001F600"},
        {"\ufb01", "\ufb01"}, /* full fold only */
    };
    size_t i, n;
    char *f;
    uint32_t cp;

    cr_assert_eq(ref_fold_load("/usr/share/unicode/CaseFolding.txt"), 0);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f = ref_fold(cases[i].in, strlen(cases[i].in), &n);
        cr_expect_str_eq(f, cases[i].out, "fold(%s)", cases[i].in);
        free(f);
    }
    /* The reference's table and the engine's generated one, code point by code point. */
    for (cp = 0; cp <= 0x10FFFF; cp++)
        if (ref_fold_cp(cp) != casefold_cp(cp))
            cr_expect_fail("U+%04X folds to U+%04X in the reference, U+%04X in the engine", cp,
                           ref_fold_cp(cp), casefold_cp(cp));
    ref_fold_free();
}

UTEST(segment_random, reference_knows_the_shipped_contracts)
{
    struct fx f;
    struct contract_set *cs;
    size_t d;
    int i, k, n = 0;

    fx_open(&f);
    cr_assert_eq(contract_set_load(f.st, NULL, &cs, &f.e), 0, "%s", f.e.msg);
    for (d = 0; d < sizeof ref_decls / sizeof ref_decls[0]; d++) {
        const struct contract *c = strcmp(ref_decls[d].owner, "contact") == 0
                                       ? contract_set_contact(cs)
                                       : contract_set_event(cs, ref_decls[d].owner);
        int t;
        cr_assert_not_null(c, "no contract %s", ref_decls[d].owner);
        t = contract_prop_type(c, ref_decls[d].name);
        cr_expect(t >= 0, "%s.%s is not declared", ref_decls[d].owner, ref_decls[d].name);
        cr_expect_eq(t == VT_INTEGER   ? REF_NUMBER
                     : t == VT_STRING  ? REF_STRING
                     : t == VT_NUMBER  ? REF_NUMBER
                     : t == VT_BOOLEAN ? REF_BOOLEAN
                                       : REF_TIMESTAMP,
                     ref_decls[d].type, "%s.%s", ref_decls[d].owner, ref_decls[d].name);
    }
    /* ... and nothing more */
    for (i = 0; i < contract_set_nevents(cs); i++) {
        const struct contract *c = contract_set_event_at(cs, i);
        for (k = 0; k < contract_nprops(c); k++, n++)
            cr_expect_neq(ref_decl_type(contract_name(c), contract_prop_name(c, k)), REF_NONE,
                          "%s.%s", contract_name(c), contract_prop_name(c, k));
    }
    for (k = 0; k < contract_nprops(contract_set_contact(cs)); k++, n++)
        cr_expect_neq(ref_decl_type("contact", contract_prop_name(contract_set_contact(cs), k)),
                      REF_NONE);
    cr_expect_eq((size_t)n, sizeof ref_decls / sizeof ref_decls[0]);
    contract_set_free(cs);
    fx_close(&f);
}

/* Members of rules (JSON text) at now in a hand-built copy, comma-separated. */
static char *ref_members(struct ref_db *db, int64_t now, const char *rules_json)
{
    json_error_t je;
    json_t *rules = json_loads(rules_json, 0, &je);
    const char **ids;
    size_t n, i;
    struct buf b;

    cr_assert_not_null(rules, "bad test JSON %s: %s", rules_json, je.text);
    ids = ref_eval(db, rules, now, &n);
    buf_init(&b);
    buf_adds(&b, "");
    for (i = 0; i < n; i++)
        buf_printf(&b, "%s%s", i ? "," : "", ids[i]);
    free(ids);
    json_decref(rules);
    return buf_take(&b);
}

#define REF_EXPECT(db, now, rules, want)                                                           \
    do {                                                                                           \
        char *got_ = ref_members((db), (now), (rules));                                            \
        cr_expect_str_eq(got_, (want), "%s", (rules));                                             \
        free(got_);                                                                                \
    } while (0)

UTEST(segment_random, reference_hand_cases)
{
    struct ref_db db;
    int a, b, c, d, anon, gone, e;

    cr_assert_eq(ref_fold_load("/usr/share/unicode/CaseFolding.txt"), 0);
    ref_db_init(&db);
    a = ref_contact_add(&db, "a", "Ann@X.io", 0, T0 - 30 * DAY);
    b = ref_contact_add(&db, "b", NULL, 1, T0);
    c = ref_contact_add(&db, "c", "c@x.io", 3, T0 + 1);
    d = ref_contact_add(&db, "ab", NULL, 0, T0);
    anon = ref_contact_add(&db, NULL, NULL, 0, T0);
    gone = ref_contact_add(&db, "gone", NULL, 0, T0);
    db.c[gone].deleted = 1;
    ref_db_register(&db, "nick", REF_STRING);
    ref_db_register(&db, "score", REF_NUMBER);
    ref_db_register(&db, "vip", REF_BOOLEAN);
    ref_contact_set(&db, a, "city",
                    ref_str("\u03a3\u0391\u03a3 Pune", strlen("\u03a3\u0391\u03a3 Pune")));
    ref_contact_set(&db, b, "city", ref_str("pune", 4));
    ref_contact_set(&db, c, "city", ref_str("", 0));
    ref_contact_set(&db, gone, "city", ref_str("Pune", 4));
    ref_contact_set(&db, a, "nick", ref_str("", 0));
    ref_contact_set(&db, b, "score", ref_num(10));
    ref_contact_set(&db, c, "score", ref_num(10.5));
    ref_contact_set(&db, a, "vip", ref_bool(1));
    ref_contact_set(&db, b, "vip", ref_bool(0));
    ref_contact_set(&db, d, "signup_at", ref_ts(T0));
    /* window edges: a at now - 30 days, b at now, c just outside and in the future */
    e = ref_event_add(&db, "1", "order_created", "api", a, T0 - 30 * DAY);
    ref_event_set(&db, e, "amount", ref_num(5));
    ref_event_set(&db, e, "at", ref_ts(T0));
    e = ref_event_add(&db, "2", "order_created", "api", b, T0);
    ref_event_set(&db, e, "amount", ref_num(50));
    ref_event_set(&db, e, "at", ref_str("later", 5));
    ref_event_add(&db, "3", "order_created", "api", c, T0 - 30 * DAY - 1);
    ref_event_add(&db, "4", "order_created", "api", c, T0 + 1);
    ref_event_add(&db, "5", "order_created", "api", b, T0 - DAY);
    e = ref_event_add(&db, "6", "order_created", "api", a, T0 - DAY);
    db.ev[e].deleted = 1;
    /* an anonymous contact's events count once it is merged into d */
    ref_event_add(&db, "7", "page_viewed", "sdk", anon, T0 - DAY);
    ref_event_add(&db, "8", "page_viewed", "sdk", gone, T0 - DAY);
    ref_db_index(&db);

    REF_EXPECT(&db, T0,
               "{\"type\":\"behavior\",\"event\":\"page_viewed\",\"op\":\"did_event\","
               "\"within_days\":7}",
               "");
    db.c[anon].merged_into = d;
    db.c[anon].deleted = 1;
    ref_db_index(&db);
    REF_EXPECT(&db, T0,
               "{\"type\":\"behavior\",\"event\":\"page_viewed\",\"op\":\"did_event\","
               "\"within_days\":7}",
               "ab");
    REF_EXPECT(&db, T0,
               "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\","
               "\"within_days\":30}",
               "a,b");
    REF_EXPECT(&db, T0,
               "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\","
               "\"within_days\":30,\"count_gte\":2}",
               "b");
    REF_EXPECT(&db, T0,
               "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_not_event\","
               "\"within_days\":30}",
               "ab,c");
    REF_EXPECT(&db, T0 + 1,
               "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\","
               "\"within_days\":30}",
               "b,c");
    REF_EXPECT(&db, T0,
               "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\","
               "\"within_days\":30,\"where\":[{\"field\":\"amount\",\"op\":\"gte\","
               "\"value\":10}]}",
               "b");
    /* where typed by the value: "at" is a timestamp for a, a string for b */
    REF_EXPECT(&db, T0,
               "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\","
               "\"within_days\":30,\"where\":[{\"field\":\"at\",\"op\":\"eq\","
               "\"value\":\"2026-01-01\"}]}",
               "a");
    REF_EXPECT(&db, T0,
               "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\","
               "\"within_days\":30,\"where\":[{\"field\":\"at\",\"op\":\"neq\","
               "\"value\":\"2026-01-01\"}]}",
               "b");
    REF_EXPECT(&db, T0,
               "{\"type\":\"behavior\",\"event\":\"order_created\",\"op\":\"did_event\","
               "\"within_days\":30,\"where\":[{\"field\":\"at\",\"op\":\"contains\","
               "\"value\":\"ATE\"}]}",
               "b");
    REF_EXPECT(&db, T0,
               "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"contains\","
               "\"value\":\"PUNE\"}",
               "a,b");
    REF_EXPECT(&db, T0,
               "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"contains\","
               "\"value\":\"\u03c3\u03b1\u03c2\"}",
               "a");
    REF_EXPECT(&db, T0,
               "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"contains\","
               "\"value\":\"\"}",
               "a,b,c");
    REF_EXPECT(&db, T0, "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"eq\",\"value\":\"\"}",
               "c");
    REF_EXPECT(&db, T0,
               "{\"type\":\"attribute\",\"field\":\"city\",\"op\":\"neq\","
               "\"value\":\"pune\"}",
               "a,ab,c");
    REF_EXPECT(&db, T0, "{\"type\":\"attribute\",\"field\":\"nick\",\"op\":\"eq\",\"value\":\"\"}",
               "a");
    REF_EXPECT(&db, T0,
               "{\"type\":\"attribute\",\"field\":\"score\",\"op\":\"in\","
               "\"value\":[10.5,3]}",
               "c");
    REF_EXPECT(&db, T0, "{\"type\":\"attribute\",\"field\":\"score\",\"op\":\"lte\",\"value\":10}",
               "b");
    REF_EXPECT(&db, T0, "{\"type\":\"attribute\",\"field\":\"vip\",\"op\":\"neq\",\"value\":true}",
               "ab,b,c");
    REF_EXPECT(&db, T0,
               "{\"type\":\"attribute\",\"field\":\"email\",\"op\":\"neq\","
               "\"value\":\"c@x.io\"}",
               "a,ab,b");
    REF_EXPECT(&db, T0,
               "{\"type\":\"attribute\",\"field\":\"email\",\"op\":\"contains\","
               "\"value\":\"ann@\"}",
               "a");
    /* byte order, a prefix first */
    REF_EXPECT(&db, T0,
               "{\"type\":\"attribute\",\"field\":\"external_id\",\"op\":\"gte\","
               "\"value\":\"ab\"}",
               "ab,b,c");
    REF_EXPECT(&db, T0,
               "{\"type\":\"attribute\",\"field\":\"external_id\",\"op\":\"lte\","
               "\"value\":\"ab\"}",
               "a,ab");
    REF_EXPECT(&db, T0,
               "{\"type\":\"attribute\",\"field\":\"email_consent\",\"op\":\"in\","
               "\"value\":[\"unsubscribed\",\"complained\"]}",
               "b,c");
    REF_EXPECT(&db, T0,
               "{\"type\":\"attribute\",\"field\":\"created_at\",\"op\":\"lte\","
               "\"value\":\"2026-01-01T05:30:00+05:30\"}",
               "a,ab,b");
    REF_EXPECT(&db, T0,
               "{\"type\":\"attribute\",\"field\":\"created_at\",\"op\":\"eq\","
               "\"value\":\"2025-12-02\"}",
               "a");
    REF_EXPECT(&db, T0,
               "{\"type\":\"attribute\",\"field\":\"signup_at\",\"op\":\"neq\","
               "\"value\":\"2026-01-01T00:00:00.000Z\"}",
               "a,b,c");
    REF_EXPECT(&db, T0,
               "{\"op\":\"OR\",\"rules\":[{\"op\":\"AND\",\"rules\":[{\"type\":"
               "\"attribute\",\"field\":\"vip\",\"op\":\"eq\",\"value\":false},{\"type\":"
               "\"attribute\",\"field\":\"score\",\"op\":\"eq\",\"value\":10}]},{\"type\":"
               "\"attribute\",\"field\":\"city\",\"op\":\"eq\",\"value\":\"\"}]}",
               "b,c");
    ref_db_release(&db);
    ref_fold_free();
}
