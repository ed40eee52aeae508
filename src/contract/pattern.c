/* contract/pattern.c -- a contract's "pattern": PCRE2, with the work per value bounded.
 *
 * DESIGN: a pattern is compiled once (with the contract) into PCRE2 code that
 * every thread then matches against at the same time: the code is read only once
 * compiled (JIT code included), and what a match writes -- its match data (where
 * the interpreter keeps its backtracking frames), its match context (the limits)
 * and its JIT stack -- is each thread's own, made on the thread's first match and
 * freed when it exits. So there is no lock anywhere on the way. JIT code runs on 32 KiB
 * of the thread's own stack, which most patterns never outgrow; a thread makes its 1 MiB
 * JIT stack (an mmap: 14 us, against 0.1 us for the rest, and a server thread may live
 * for one connection) only when a match first needs more, and matches again on it.
 *
 * Work is bounded by PCRE2's match limit (and, for the interpreter, its depth and
 * heap limits; for JIT code, the size of the JIT stack). PCRE2 restarts that count
 * at every start position of an unanchored pattern, so a pattern that is costly but
 * just under the limit at each position could still take seconds on one value
 * (measured: (?:a|a){0,14}bd on 4 KiB, 9.5 s interpreted, 0.5 s with JIT). An
 * unanchored pattern is therefore compiled as the anchored (?s:.*?)(?:PATTERN):
 * one attempt that tries every start position in turn, all counted together. An
 * anchored pattern (^..., \A..., .*...) is compiled as written: it has one start
 * position already. The dialect and the limits are in docs/contracts.md. */
#include "contract_int.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* UTF-8 with code point semantics; '.' matches any character (newlines too) and '$'
 * only the very end, as under the POSIX ERE that patterns used before; \C (one byte
 * of a character) refused. */
#define COMPILE_OPTIONS (PCRE2_UTF | PCRE2_DOTALL | PCRE2_DOLLAR_ENDONLY | PCRE2_NEVER_BACKSLASH_C)

struct pattern {
    char *text;       /* as written in the contract */
    pcre2_code *code; /* read only once made: shared by every thread */
};

/* Made once (pthread_once), never changed after: shared by every thread. */
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static pcre2_general_context *gctx;
static pcre2_compile_context *cctx;
static int jit_ok;
static pthread_key_t matcher_key; /* frees a thread's matcher when the thread exits */

/* One thread's: everything a match writes. */
struct matcher {
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *stack; /* made when JIT code first needs more than 32 KiB */
};
static __thread struct matcher *tls_matcher;

/* PCRE2 allocates through xmalloc: out of memory aborts, as everywhere else. */
static void *pcre_alloc(PCRE2_SIZE n, void *data)
{
    (void)data;
    return xmalloc(n);
}

static void pcre_free(void *p, void *data)
{
    (void)data;
    free(p);
}

static void matcher_free(void *arg)
{
    struct matcher *m = arg;

    if (m == NULL)
        return;
    pcre2_match_data_free(m->md);
    pcre2_match_context_free(m->mc);
    pcre2_jit_stack_free(m->stack);
    free(m);
    if (tls_matcher == m)
        tls_matcher = NULL;
}

static void setup(void)
{
    uint32_t jit = 0;

    gctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL);
    cctx = pcre2_compile_context_create(gctx);
    ASSERT(gctx && cctx);
    jit_ok = pcre2_config(PCRE2_CONFIG_JIT, &jit) == 0 && jit == 1;
    ASSERT(pthread_key_create(&matcher_key, matcher_free) == 0);
}

static struct matcher *matcher_get(void)
{
    struct matcher *m = tls_matcher;

    if (m)
        return m;
    pthread_once(&setup_once, setup); /* done by the compile already: also makes it seen here */
    m = xcalloc(1, sizeof *m);
    /* One pair: a match is yes or no, captures are never read. The interpreter keeps
     * its backtracking frames here between matches, within the heap limit. */
    m->md = pcre2_match_data_create(1, gctx);
    m->mc = pcre2_match_context_create(gctx);
    ASSERT(m->md && m->mc);
    pcre2_set_match_limit(m->mc, PATTERN_MATCH_LIMIT);
    pcre2_set_depth_limit(m->mc, PATTERN_DEPTH_LIMIT);
    pcre2_set_heap_limit(m->mc, PATTERN_HEAP_LIMIT_KIB);
    tls_matcher = m;
    pthread_setspecific(matcher_key, m);
    return m;
}

/* ---- compile ------------------------------------------------------------------------ */

int pattern_compile(const char *text, size_t len, struct pattern **out, char *msg, size_t msgcap)
{
    struct pattern *p;
    struct buf wrapped;
    uint32_t opts = 0;
    PCRE2_SIZE off;
    pcre2_code *code;
    int ec;

    *out = NULL;
    pthread_once(&setup_once, setup);
    if (len > PATTERN_MAX_BYTES) {
        snprintf(msg, msgcap, "is %zu bytes long; a pattern is at most %d", len, PATTERN_MAX_BYTES);
        return E_INVAL;
    }
    code = pcre2_compile((PCRE2_SPTR)text, len, COMPILE_OPTIONS, &ec, &off, cctx);
    if (code == NULL) {
        PCRE2_UCHAR why[160];
        if (pcre2_get_error_message(ec, why, sizeof why) < 0)
            snprintf((char *)why, sizeof why, "error %d", ec);
        snprintf(msg, msgcap, "is not a valid regular expression: %s at offset %zu",
                 (const char *)why, (size_t)off);
        return E_INVAL;
    }
    pcre2_pattern_info(code, PCRE2_INFO_ALLOPTIONS, &opts);
    if (!(opts & PCRE2_ANCHORED)) {
        /* One anchored attempt over every start position (see the top). The \E ends a
         * \Q the pattern left open, as the end of the pattern would have. */
        pcre2_code_free(code);
        buf_init(&wrapped);
        buf_adds(&wrapped, "(?s:.*?)(?:");
        buf_add(&wrapped, text, len);
        buf_adds(&wrapped, "\\E)");
        code = pcre2_compile((PCRE2_SPTR)wrapped.p, wrapped.len, COMPILE_OPTIONS | PCRE2_ANCHORED,
                             &ec, &off, cctx);
        buf_release(&wrapped);
        if (code == NULL) {
            /* Valid alone, not inside a group: a start-of-pattern setting such as
             * (*UCP), or a # comment running to the end under (?x). */
            snprintf(msg, msgcap,
                     "cannot be searched for in a value with bounded work: anchor it "
                     "with ^, or remove a start-of-pattern setting such as (*UCP) or "
                     "a final # comment");
            return E_INVAL;
        }
    }
    /* JIT where the platform allows it (else the interpreter: same results). */
    if (jit_ok)
        pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    p = xcalloc(1, sizeof *p);
    p->text = xstrndup(text, len);
    p->code = code;
    *out = p;
    return 0;
}

void pattern_free(struct pattern *p)
{
    if (p == NULL)
        return;
    pcre2_code_free(p->code);
    free(p->text);
    free(p);
}

const char *pattern_text(const struct pattern *p)
{
    return p->text;
}

/* ---- match -------------------------------------------------------------------------- */

/* The limits a match can reach, with how a refusal names each. */
static const struct {
    int rc;
    const char *how, *unit;
    uint32_t info; /* where the pattern's own (*LIMIT_...) is read; 0: none */
    uint32_t ours;
} limits[] = {
    {PCRE2_ERROR_MATCHLIMIT, "after", "steps", PCRE2_INFO_MATCHLIMIT, PATTERN_MATCH_LIMIT},
    {PCRE2_ERROR_DEPTHLIMIT, "at", "levels of backtracking", PCRE2_INFO_DEPTHLIMIT,
     PATTERN_DEPTH_LIMIT},
    {PCRE2_ERROR_HEAPLIMIT, "at", "KiB of backtracking memory", PCRE2_INFO_HEAPLIMIT,
     PATTERN_HEAP_LIMIT_KIB},
    {PCRE2_ERROR_JIT_STACKLIMIT, "at", "KiB of match stack", 0, PATTERN_JIT_STACK_KIB},
};

/* "pattern "…" gave up after 100000 steps: simplify the pattern" */
static int gave_up(const struct pattern *p, const struct matcher *m, size_t i, char *msg,
                   size_t msgcap)
{
    int show = (int)utf8_prefix(p->text, strlen(p->text), 60);
    uint32_t n = limits[i].ours, own;

    /* The pattern's own limit when lower; JIT code without our stack had 32 KiB. */
    if (limits[i].info && pcre2_pattern_info(p->code, limits[i].info, &own) == 0 && own < n)
        n = own;
    if (limits[i].rc == PCRE2_ERROR_JIT_STACKLIMIT && m->stack == NULL)
        n = 32;
    snprintf(msg, msgcap, "pattern \"%.*s\" gave up %s %u %s: simplify the pattern", show, p->text,
             limits[i].how, n, limits[i].unit);
    return PATTERN_GAVE_UP;
}

int pattern_match(const struct pattern *p, const char *s, size_t n, char *msg, size_t msgcap)
{
    struct matcher *m = matcher_get();
    PCRE2_UCHAR text[160];
    size_t i;
    int rc = pcre2_match(p->code, (PCRE2_SPTR)s, n, 0, 0, m->md, m->mc);

    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && m->stack == NULL) {
        /* Address space reserved up to the maximum, memory used as it grows. If the mmap
         * fails, the answer stays: gave up at 32 KiB. */
        m->stack = pcre2_jit_stack_create(32 * 1024, PATTERN_JIT_STACK_KIB * 1024, gctx);
        if (m->stack) {
            pcre2_jit_stack_assign(m->mc, NULL, m->stack);
            rc = pcre2_match(p->code, (PCRE2_SPTR)s, n, 0, 0, m->md, m->mc);
        }
    }
    if (rc >= 0)
        return PATTERN_MATCH;
    if (rc == PCRE2_ERROR_NOMATCH)
        return PATTERN_NO_MATCH;
    for (i = 0; i < sizeof limits / sizeof *limits; i++)
        if (rc == limits[i].rc)
            return gave_up(p, m, i, msg, msgcap);
    if (pcre2_get_error_message(rc, text, sizeof text) < 0)
        snprintf((char *)text, sizeof text, "error %d", rc);
    if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21) {
        /* Not expected: every source checks that its text is UTF-8 before this. */
        snprintf(msg, msgcap, "is not valid UTF-8 (%s at byte %zu)", (const char *)text,
                 (size_t)pcre2_get_startchar(m->md));
        return PATTERN_BAD_VALUE;
    }
    snprintf(msg, msgcap, "could not be matched against pattern: %s", (const char *)text);
    return PATTERN_GAVE_UP;
}
