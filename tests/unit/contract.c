/* tests/unit/contract.c -- contract documents, typed values, inference. */
#include "helpers.h"
#include "ingest/ingest.h"

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
    const char *doc = "{\"name\":\"bad/name\",\"kind\":\"thing\",\"colour\":1,\"occurred_at\":\"when\","
                      "\"properties\":{\"a\":{\"type\":\"strin\"},"
                      "\"b\":{\"type\":\"string\",\"minimum\":3,\"pattern\":\"([\"},"
                      "\"c\":{\"type\":\"number\",\"enum\":[1,\"x\"]}}}";
    cr_assert_eq(compile(doc, &errs), E_INVAL);
    cr_assert(has_error(&errs, "/name", "without control characters or '/'"));
    cr_assert(has_error(&errs, "/kind", "\"event\" or \"contact\""));
    cr_assert(has_error(&errs, "/colour", "unknown key"));
    cr_assert(has_error(&errs, "/properties/a/type", "must be one of"));
    cr_assert(has_error(&errs, "/properties/b/minimum", "number and integer"));
    cr_assert(has_error(&errs, "/properties/b/pattern", "regular expression"));
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
        {"12", VT_NUMBER},      {"-1.5e3", VT_NUMBER},        {"0123", VT_STRING},
        {"true", VT_BOOLEAN},   {"False", VT_BOOLEAN},        {"2024-01-02", VT_TIMESTAMP},
        {"2024-01-02T03:04:05Z", VT_TIMESTAMP}, {"Mumbai", VT_STRING}, {"", VT_STRING},
        {"1e999", VT_STRING},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *v = json_string(cases[i].text);
        cr_assert_eq(value_infer(v), cases[i].want, "'%s'", cases[i].text);
        json_decref(v);
    }
}
