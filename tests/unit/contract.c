/* tests/unit/contract.c -- contract documents, typed values, inference, patterns. */
#include <pthread.h>

#include "helpers.h"
#include "contract/contract.h"
#include "contract/contract_int.h"

static int compile(const char *text, struct errlist *errs)
{
    struct contract *c = NULL;
    struct err e = {0};
    int rc = contract_compile(text, strlen(text), NULL, 1, &c, errs, &e);
    contract_free(c);
    return rc;
}

static int has_error(const struct errlist *l, const char *path, const char *fragment)
{
    int i;
    for (i = 0; i < l->n; i++)
        if (strcmp(l->items[i].path, path) == 0 && strstr(l->items[i].msg, fragment))
            return 1;
    return 0;
}

UTEST(contract, shipped_contracts_compile)
{
    int i;
    cr_assert_geq(shipped_contracts_count, 5);
    for (i = 0; i < shipped_contracts_count; i++) {
        struct errlist errs = {0};
        cr_assert_eq(compile(shipped_contracts[i].text, &errs), 0, "%s: %s %s",
                     shipped_contracts[i].file, errs.items[0].path, errs.items[0].msg);
    }
}

UTEST(contract, every_problem_reported_with_a_pointer)
{
    struct errlist errs = {0};
    const char *doc =
        "{\"name\":\"bad/name\",\"kind\":\"thing\",\"colour\":1,\"occurred_at\":\"when\","
        "\"properties\":{\"a\":{\"type\":\"strin\"},"
        "\"b\":{\"type\":\"string\",\"minimum\":3,\"pattern\":\"([\"},"
        "\"c\":{\"type\":\"number\",\"enum\":[1,\"x\"]}}}";
    cr_assert_eq(compile(doc, &errs), E_INVAL);
    cr_assert(has_error(&errs, "/name", "without control characters or '/'"));
    cr_assert(has_error(&errs, "/kind", "\"event\" or \"contact\""));
    cr_assert(has_error(&errs, "/colour", "unknown key"));
    cr_assert(has_error(&errs, "/properties/a/type", "must be one of"));
    cr_assert(has_error(&errs, "/properties/b/minimum", "number and integer"));
    cr_assert(has_error(&errs, "/properties/b/pattern",
                        "is not a valid regular expression: missing terminating ] for character "
                        "class at offset 2"));
    cr_assert(has_error(&errs, "/properties/c/enum/1", "expected a number"));
    cr_assert(has_error(&errs, "/occurred_at", "timestamp property"));
    cr_assert_geq(errs.n, 8);
}

UTEST(contract, name_must_match_the_url)
{
    struct errlist errs = {0};
    struct contract *c = NULL;
    struct err e = {0};
    const char *doc = "{\"name\":\"a\",\"properties\":{}}";
    cr_assert_eq(contract_compile(doc, strlen(doc), "b", 1, &c, &errs, &e), E_INVAL);
    cr_assert(has_error(&errs, "/name", "\"b\""));
}

UTEST(contract, invalid_json_is_reported)
{
    struct errlist errs = {0};
    cr_assert_eq(compile("{\"name\": ", &errs), E_INVAL);
    cr_assert(strstr(errs.items[0].msg, "not valid JSON"));
}

UTEST(values, coercion_by_type)
{
    char msg[200];
    json_t *s = json_string("12.50"), *t;

    t = value_coerce(s, VT_NUMBER, msg, sizeof msg);
    cr_assert(json_is_real(t) && json_real_value(t) == 12.5);
    json_decref(t);
    cr_assert_null(value_coerce(s, VT_INTEGER, msg, sizeof msg));
    cr_assert(strstr(msg, "expected an integer"));
    t = value_coerce(s, VT_STRING, msg, sizeof msg);
    cr_assert_str_eq(json_string_value(t), "12.50");
    json_decref(t);
    json_decref(s);

    s = json_string("2024-03-01T10:00:00+05:30");
    t = value_coerce(s, VT_TIMESTAMP, msg, sizeof msg);
    cr_assert_str_eq(json_string_value(t), "2024-03-01T04:30:00.000Z", "canonical UTC form");
    json_decref(t);
    json_decref(s);

    s = json_string("TRUE");
    t = value_coerce(s, VT_BOOLEAN, msg, sizeof msg);
    cr_assert(json_is_true(t));
    json_decref(t);
    json_decref(s);

    s = json_integer(42);
    t = value_coerce(s, VT_STRING, msg, sizeof msg);
    cr_assert_str_eq(json_string_value(t), "42", "numeric ids are accepted as strings");
    json_decref(t);
    cr_assert_null(value_coerce(s, VT_TIMESTAMP, msg, sizeof msg), "numbers are not timestamps");
    json_decref(s);
}

UTEST(values, inference)
{
    struct {
        const char *text;
        enum vtype want;
    } cases[] = {
        {"12", VT_NUMBER},
        {"-1.5e3", VT_NUMBER},
        {"0123", VT_STRING},
        {"true", VT_BOOLEAN},
        {"False", VT_BOOLEAN},
        {"2024-01-02", VT_TIMESTAMP},
        {"2024-01-02T03:04:05Z", VT_TIMESTAMP},
        {"Mumbai", VT_STRING},
        {"", VT_STRING},
        {"1e999", VT_STRING},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *v = json_string(cases[i].text);
        cr_assert_eq(value_infer(v), cases[i].want, "'%s'", cases[i].text);
        json_decref(v);
    }
}

/* ---- patterns ---------------------------------------------------------------------------- */

/* A contract of one string property "v" with the given pattern (JSON-escaped). */
static struct contract *pattern_contract(const char *pattern_json)
{
    struct errlist errs = {0};
    struct contract *c = NULL;
    struct err e = {0};
    char doc[512];
    snprintf(doc, sizeof doc,
             "{\"name\":\"p\",\"properties\":{\"v\":{\"type\":\"string\","
             "\"pattern\":\"%s\"}}}",
             pattern_json);
    cr_assert_eq(contract_compile(doc, strlen(doc), NULL, 1, &c, &errs, &e), 0, "%s: %s %s",
                 pattern_json, errs.n ? errs.items[0].path : "", errs.n ? errs.items[0].msg : "");
    return c;
}

/* The reason contract_type_text gives for s (NULL: accepted), its sentence in msg. */
static const char *check(const struct contract *c, const char *s, size_t n, char *msg, size_t cap)
{
    struct buf out;
    int64_t ms;
    const char *why;
    buf_init(&out);
    msg[0] = '\0';
    why = contract_type_text(c, 0, s, n, &out, &ms, msg, cap);
    buf_release(&out);
    return why;
}

UTEST(patterns, a_pattern_that_does_not_compile_is_refused_with_its_offset)
{
    struct {
        const char *pattern_json, *fragment;
    } cases[] = {
        {"ab(c", "missing closing parenthesis at offset 4"},
        {"a**", "quantifier does not follow a repeatable item at offset 2"},
        {"[[=a=]]", "POSIX collating elements are not supported at offset 1"},
        {"\\\\u00e9", "does not support \\F, \\L, \\l, \\N{name}, \\U, or \\u at offset 2"},
        /* valid alone, but not searchable as one bounded attempt: anchor it */
        {"(*UCP)\\\\w", "anchor it with ^"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct errlist errs = {0};
        char doc[256];
        snprintf(doc, sizeof doc,
                 "{\"name\":\"p\",\"properties\":{\"v\":{\"type\":\"string\","
                 "\"pattern\":\"%s\"}}}",
                 cases[i].pattern_json);
        cr_assert_eq(compile(doc, &errs), E_INVAL, "%s", cases[i].pattern_json);
        cr_assert(has_error(&errs, "/properties/v/pattern", cases[i].fragment), "%s: %s",
                  cases[i].pattern_json, errs.items[0].msg);
    }
    contract_free(pattern_contract("(*UCP)^\\\\w+$")); /* anchored: as written */
}

/* What patterns matched before PCRE2 (glibc's POSIX ERE, searched anywhere) they still
 * match, and what they refused they still refuse. */
UTEST(patterns, the_results_of_common_patterns_are_unchanged)
{
    struct {
        const char *pattern_json, *value;
        int ok;
    } cases[] = {
        {"^[A-Z]{3}$", "USD", 1},
        {"^[A-Z]{3}$", "usd", 0},
        {"^[A-Z]{3}$", "USD\n", 0},
        {"^[A-Z]{3}$", "USDX", 0},
        {"[0-9]", "ab1", 1},
        {"[0-9]", "abc", 0},
        {"^a.b$", "a\nb", 1},
        {"^(ab|cd)+$", "abcdab", 1},
        {"^(ab|cd)+$", "abc", 0},
        {"x*", "", 1},
        {"^$", "", 1},
        {"^[[:alpha:]]+$", "Pune", 1},
        {"^[[:digit:]]{6}$", "411001", 1},
        {"^[^@ ]+@[^@ ]+\\\\.[a-z]{2,}$", "a@b.co", 1},
        {"^[^@ ]+@[^@ ]+\\\\.[a-z]{2,}$", "a@b", 0},
        {"(a)\\\\1", "xaay", 1},
        {"^[a-z ]*$", "ab c", 1},
        {"^[a-z ]*$", "ab-c", 0},
        {"IN|US", "ordered in US", 1},
        {"^(IN|US)$", "INUS", 0},
        {"\\\\bcat\\\\b", "a cat sat", 1},
        {"\\\\bcat\\\\b", "concatenate", 0},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct contract *c = pattern_contract(cases[i].pattern_json);
        char msg[256];
        const char *why = check(c, cases[i].value, strlen(cases[i].value), msg, sizeof msg);
        if (cases[i].ok)
            cr_assert_null(why, "/%s/ on \"%s\": %s %s", cases[i].pattern_json, cases[i].value, why,
                           msg);
        else
            cr_assert(why && strcmp(why, "constraint") == 0 && strstr(msg, "must match"),
                      "/%s/ on \"%s\": %s", cases[i].pattern_json, cases[i].value,
                      why ? why : "accepted");
        contract_free(c);
    }
}

/* What changed on purpose (docs/contracts.md, "Patterns"): characters are code points, and
 * the whole value is matched, a NUL byte and what follows it too. */
UTEST(patterns, characters_are_code_points_and_the_whole_value_counts)
{
    struct contract *c = pattern_contract("^.{3}$");
    struct contract *az = pattern_contract("^[a-z]+$");
    char msg[256];
    cr_assert_null(check(c, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 9, msg, sizeof msg), "%s", msg);
    cr_assert_str_eq(check(c,
                           "\xc3\xa9"
                           "a",
                           3, msg, sizeof msg),
                     "constraint");
    cr_assert_null(check(az, "abc", 3, msg, sizeof msg));
    cr_assert_str_eq(check(az, "abc\0<x>", 7, msg, sizeof msg), "constraint");
    contract_free(c);
    contract_free(az);
}

struct pattern_worker {
    const struct contract *backtracks, *per_position, *id;
    const char *long_a, *many_a;
    size_t long_n, many_n;
    /* results, checked by the main thread */
    const char *why_steps, *why_position, *why_good, *why_id_good, *why_id_bad;
    char msg_steps[256], msg_position[256];
};

static void *pattern_worker_main(void *arg)
{
    struct pattern_worker *w = arg;
    char msg[256];
    int round;
    for (round = 0; round < 3; round++) {
        w->why_steps =
            check(w->backtracks, w->long_a, w->long_n, w->msg_steps, sizeof w->msg_steps);
        w->why_good = check(w->backtracks, "aaaa", 4, msg, sizeof msg);
        w->why_id_good = check(w->id, "ord-12", 6, msg, sizeof msg);
        w->why_id_bad = check(w->id, "ord-x", 5, msg, sizeof msg);
        w->why_position =
            check(w->per_position, w->many_a, w->many_n, w->msg_position, sizeof w->msg_position);
    }
    return NULL;
}

/* (a+)+$ backtracks exponentially on a run of 'a' that ends in 'b'. With glibc's regexec a
 * 30,000-character value took 4.7 s, and threads matching the same contract waited for
 * each other. Now each gives up at the step limit, with a reason, in every thread at once. */
UTEST(patterns, a_catastrophic_pattern_gives_up_with_a_reason_in_every_thread_at_once)
{
    struct contract *backtracks = pattern_contract("(a+)+$");
    /* Under the step limit at each start position, not in total: bounded all the same. */
    struct contract *per_position = pattern_contract("(a|a){0,14}bd");
    struct contract *id = pattern_contract("^[a-z]+-[0-9]+$");
    struct pattern_worker w[4];
    pthread_t t[4];
    char *long_a = malloc(4001), *many_a = malloc(4096), msg[256];
    int i;

    memset(long_a, 'a', 4000);
    long_a[4000] = 'b';
    memset(many_a, 'a', 4094);
    memcpy(many_a + 4094, "db", 2);
    for (i = 0; i < 4; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].backtracks = backtracks;
        w[i].per_position = per_position;
        w[i].id = id;
        w[i].long_a = long_a;
        w[i].long_n = 4001;
        w[i].many_a = many_a;
        w[i].many_n = 4096;
        cr_assert_eq(pthread_create(&t[i], NULL, pattern_worker_main, &w[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        cr_assert_str_eq(w[i].why_steps ? w[i].why_steps : "accepted", "pattern_limit");
        cr_assert_str_eq(w[i].msg_steps,
                         "pattern \"(a+)+$\" gave up after 100000 steps: simplify the pattern");
        cr_assert_str_eq(w[i].why_position ? w[i].why_position : "accepted", "pattern_limit", "%s",
                         w[i].msg_position);
        cr_assert(strstr(w[i].msg_position, "gave up after 100000 steps"), "%s", w[i].msg_position);
        cr_assert_null(w[i].why_good);
        cr_assert_null(w[i].why_id_good);
        cr_assert_str_eq(w[i].why_id_bad ? w[i].why_id_bad : "accepted", "constraint");
    }
    /* The main thread, with its own match data, gets the same answers. */
    cr_assert_str_eq(check(backtracks, long_a, 4001, msg, sizeof msg), "pattern_limit");
    cr_assert_null(check(id, "ord-7", 5, msg, sizeof msg));
    free(long_a);
    free(many_a);
    contract_free(backtracks);
    contract_free(per_position);
    contract_free(id);
}

/* A value longer than the cap is refused, naming the cap, and not matched at all. */
UTEST(patterns, a_value_longer_than_the_cap_is_refused_unmatched)
{
    struct contract *c = pattern_contract("(a+)+$");
    char *v = malloc(30001), msg[256];
    memset(v, 'a', 30000);
    v[30000] = 'b';
    cr_assert_str_eq(check(c, v, 30001, msg, sizeof msg), "pattern_limit");
    cr_assert_str_eq(msg, "value of 30001 bytes is longer than the 4096 bytes matched against a "
                          "pattern ([ingest] pattern_max_value_bytes)");
    cr_assert_null(check(c, v, 4096, msg, sizeof msg), "4,096 bytes are matched: %s", msg);
    free(v);
    contract_free(c);
}

/* The memory of one match is bounded too: a group repeated once per character needs a
 * frame (interpreter) or some stack (JIT) per character, so on 40,000 of them it gives
 * up at the depth or stack limit, well within its steps. */
UTEST(patterns, a_match_that_needs_too_much_memory_gives_up)
{
    struct pattern *p;
    char *v = malloc(40000), msg[256];
    memset(v, 'a', 40000);
    cr_assert_eq(pattern_compile("^(a|b)*$", 8, &p, msg, sizeof msg), 0, "%s", msg);
    /* First on this thread: more than the 32 KiB JIT code starts with, within the rest. */
    cr_assert_eq(pattern_match(p, v, 4096, msg, sizeof msg), PATTERN_MATCH,
                 "4,096 bytes are within every limit: %s", msg);
    cr_assert_eq(pattern_match(p, v, 40000, msg, sizeof msg), PATTERN_GAVE_UP);
    cr_assert(strstr(msg, "pattern \"^(a|b)*$\" gave up at "), "%s", msg);
    cr_assert(strstr(msg, "1024 KiB of match stack") || strstr(msg, "levels of backtracking"), "%s",
              msg);
    free(v);
    pattern_free(p);
}
