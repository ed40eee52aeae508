/* tests/unit/core.c -- time, numbers, buffers, maps, configuration, secrets. */
#include <stdlib.h>

#include "core/config.h"
#include "core/core.h"
#include "core/map.h"
#include "core/secret.h"
#include "helpers.h"

static int64_t iso(const char *s)
{
    int64_t ms = 0;
    cr_assert_eq(time_parse_iso(s, strlen(s), &ms), 0, "should parse: %s", s);
    return ms;
}

UTEST(time, parses_forms)
{
    cr_assert_eq(iso("1970-01-01T00:00:00Z"), 0);
    cr_assert_eq(iso("1970-01-01"), 0);
    cr_assert_eq(iso("2024-02-29T12:00:00Z"), 1709208000000LL);
    cr_assert_eq(iso("2024-02-29 12:00:00"), 1709208000000LL);
    cr_assert_eq(iso("2024-02-29T17:30:00+05:30"), 1709208000000LL);
    cr_assert_eq(iso("2024-02-29T07:00:00-0500"), 1709208000000LL);
    cr_assert_eq(iso("2024-02-29T12:00:00.5Z"), 1709208000500LL);
    cr_assert_eq(iso("2024-02-29T12:00:00.123456Z"), 1709208000123LL);
    cr_assert_eq(iso("2024-02-29T12:00Z"), 1709208000000LL);
    cr_assert_eq(iso("1969-12-31T23:59:59Z"), -1000);
}

UTEST(time, rejects_bad)
{
    static const char *bad[] = {"",
                                "2024",
                                "2024-13-01",
                                "2023-02-29",
                                "2024-01-32",
                                "2024-01-01T25:00:00Z",
                                "2024-01-01T10:00:00Q",
                                "2024-01-01T10:00:00+25:00",
                                "yesterday",
                                "2024-01-01T",
                                "2024-01-01T10:00:00.Z",
                                "2024-01-01x"};
    size_t i;
    int64_t ms;
    for (i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_neq(time_parse_iso(bad[i], strlen(bad[i]), &ms), 0, "should reject: '%s'",
                      bad[i]);
}

UTEST(time, format_round_trips)
{
    static const int64_t samples[] = {0, 1709208000123LL, -1000, 253402300799999LL, 951782400000LL};
    size_t i;
    for (i = 0; i < sizeof samples / sizeof *samples; i++) {
        char out[32];
        time_format_iso(samples[i], out);
        cr_assert_eq(iso(out), samples[i], "%s", out);
    }
    {
        char out[32];
        time_format_iso(1709208000123LL, out);
        cr_assert_str_eq(out, "2024-02-29T12:00:00.123Z");
    }
}

UTEST(time, clock_starts_at_given_instant)
{
    int64_t at = iso("2030-06-01T00:00:00Z");
    clock_start_at(at);
    cr_assert(clock_now_ms() >= at && clock_now_ms() < at + 5000);
}

UTEST(numbers, json_grammar_only)
{
    double d;
    int64_t i;
    cr_assert_eq(parse_double("12.5", 4, &d), 0);
    cr_assert_float_eq(d, 12.5, 1e-12);
    cr_assert_eq(parse_double("-0.5e3", 6, &d), 0);
    cr_assert_float_eq(d, -500.0, 1e-9);
    cr_assert_neq(parse_double("0123", 4, &d), 0, "a leading zero is a code, not a number");
    cr_assert_neq(parse_double("inf", 3, &d), 0);
    cr_assert_neq(parse_double("0x10", 4, &d), 0);
    cr_assert_neq(parse_double(" 1", 2, &d), 0);
    cr_assert_neq(parse_double("1e999", 5, &d), 0);
    cr_assert_neq(parse_double("2.", 2, &d), 0, "not JSON: the text is stored as written");
    cr_assert_neq(parse_double(".5", 2, &d), 0);
    cr_assert_neq(parse_double("1e", 2, &d), 0);
    cr_assert_neq(parse_double("-", 1, &d), 0);
    cr_assert_neq(parse_double("1.5.2", 5, &d), 0);
    cr_assert_neq(parse_double("2\0", 2, &d), 0, "no embedded NUL");
    cr_assert_eq(parse_double("-0.5E+3", 7, &d), 0);
    cr_assert_eq(parse_i64("-42", 3, &i), 0);
    cr_assert_eq(i, -42);
    cr_assert_neq(parse_i64("4.2", 3, &i), 0);
    cr_assert_neq(parse_i64("99999999999999999999", 20, &i), 0);
}

UTEST(buf, json_escaping)
{
    struct buf b;
    buf_init(&b);
    buf_add_json_str(&b, "a\"b\\c\n\x01", 7);
    cr_assert_str_eq(b.p, "\"a\\\"b\\\\c\\n\\u0001\"");
    buf_release(&b);
}

UTEST(map, put_get_grow_clear)
{
    struct strmap m;
    char key[32];
    int64_t v;
    int i;
    strmap_init(&m);
    for (i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        strmap_put(&m, key, strlen(key), i);
    }
    cr_assert_eq(m.count, 5000);
    cr_assert(strmap_get(&m, "k4321", 5, &v));
    cr_assert_eq(v, 4321);
    cr_assert_not(strmap_get(&m, "k5000", 5, &v));
    strmap_put(&m, "k1", 2, -7);
    cr_assert(strmap_get(&m, "k1", 2, &v) && v == -7);
    strmap_clear(&m);
    cr_assert_not(strmap_get(&m, "k1", 2, &v));
    strmap_release(&m);
}

/* ---- configuration ---- */

static int load(struct config *c, const char *dir, const char *text, struct err *e)
{
    char *path;
    int rc;
    config_defaults(c, dir);
    path = malloc(strlen(dir) + 20);
    snprintf(path, strlen(dir) + 20, "%s/engage.conf", dir);
    write_file(path, text);
    rc = config_load_file(c, path, 1, e);
    if (rc == 0)
        rc = config_check(c, e);
    free(path);
    return rc;
}

/* The configuration text fails to load with an error holding want. */
static void load_fails(const char *dir, const char *text, const char *want)
{
    struct config c;
    struct err e = {0};
    cr_assert_neq(load(&c, dir, text, &e), 0, "%s", text);
    cr_assert(strstr(e.msg, want), "%s", e.msg);
    config_release(&c);
}

UTEST(config, defaults_and_values)
{
    char *d = test_tmpdir();
    struct config c;
    struct err e = {0};
    cr_assert_eq(load(&c, d,
                      "[server]\nlisten = 0.0.0.0:9000\npublic_url = https://mail.example.com\n"
                      "[ingest]\nunknown_events = reject ; inline comment\n"
                      "[segment]\nmax_depth = 7\n",
                      &e),
                 0, "%s", e.msg);
    cr_assert_str_eq(c.listen, "0.0.0.0:9000");
    cr_assert_eq(c.unknown_events_reject, 1);
    cr_assert_eq(c.seg_max_depth, 7);
    cr_assert_eq(c.seg_max_rules, 50, "untouched keys keep their defaults");
    config_release(&c);
    free(d);
}

UTEST(config, errors_name_file_line_and_key)
{
    char *d = test_tmpdir();
    struct config c;
    struct err e = {0};
    cr_assert_neq(
        load(&c, d, "[server]\nlisten = 127.0.0.1:1\n\n[segment]\nmax_depth = lots\n", &e), 0);
    cr_assert(strstr(e.msg, "engage.conf:5: [segment] max_depth: expected an integer"), "%s",
              e.msg);
    config_release(&c);
    err_clear(&e);
    cr_assert_neq(load(&c, d, "[server]\nlisen = 127.0.0.1:1\n", &e), 0);
    cr_assert(strstr(e.msg, "engage.conf:2: [server] lisen: unknown key"), "%s", e.msg);
    config_release(&c);
    err_clear(&e);
    cr_assert_neq(load(&c, d, "[server\n", &e), 0);
    cr_assert(strstr(e.msg, "engage.conf:1:"), "%s", e.msg);
    config_release(&c);
    free(d);
}

/* [sync]: the nightly reconciliation, and what sources added over the API may name. */
UTEST(config, sync_keys)
{
    char *d = test_tmpdir();
    struct config c;
    struct err e = {0};
    struct buf b;
    cr_assert_eq(load(&c, d, "", &e), 0, "%s", e.msg);
    cr_assert_eq(c.sync_reconcile_hour, 3);
    cr_assert_eq(c.sync_reconcile_repair, 0);
    cr_assert_str_eq(c.sync_secret_dir, "", "nothing allowed unless set");
    cr_assert_str_eq(c.sync_secret_env_prefix, "");
    cr_assert_eq(c.sync_allow_insecure_tls, 0);
    config_release(&c);
    cr_assert_eq(load(&c, d,
                      "[sync]\nreconcile_hour = -1\nreconcile_repair = true\n"
                      "secret_dir = /run/engage-sync\nsecret_env_prefix = CRM_\n"
                      "allow_insecure_tls = true\n",
                      &e),
                 0, "%s", e.msg);
    cr_assert_eq(c.sync_reconcile_hour, -1);
    cr_assert_eq(c.sync_reconcile_repair, 1);
    cr_assert_str_eq(c.sync_secret_dir, "/run/engage-sync");
    cr_assert_str_eq(c.sync_secret_env_prefix, "CRM_");
    cr_assert_eq(c.sync_allow_insecure_tls, 1);
    /* The environment over the file. */
    setenv("ENGAGE_SYNC_SECRET_DIR", "/srv/pw", 1);
    setenv("ENGAGE_SYNC_SECRET_ENV_PREFIX", "ENGAGE_SYNC_PW_", 1);
    setenv("ENGAGE_SYNC_ALLOW_INSECURE_TLS", "false", 1);
    cr_assert_eq(config_apply_env(&c, &e), 0, "%s", e.msg);
    unsetenv("ENGAGE_SYNC_SECRET_DIR");
    unsetenv("ENGAGE_SYNC_SECRET_ENV_PREFIX");
    unsetenv("ENGAGE_SYNC_ALLOW_INSECURE_TLS");
    cr_assert_str_eq(c.sync_secret_dir, "/srv/pw");
    cr_assert_str_eq(c.sync_secret_env_prefix, "ENGAGE_SYNC_PW_");
    cr_assert_eq(c.sync_allow_insecure_tls, 0);
    cr_assert(config_env_is_setting("ENGAGE_SYNC_SECRET_DIR"));
    cr_assert(config_env_is_setting("ENGAGE_DATA"));
    cr_assert(!config_env_is_setting("ENGAGE_SYNC_PW_CRM"));
    buf_init(&b);
    config_dump(&c, &b);
    cr_assert(strstr(b.p, "reconcile_hour = -1\nreconcile_repair = true\nsecret_dir = /srv/pw\n"
                          "sqlite_dir = \nsecret_env_prefix = ENGAGE_SYNC_PW_\n"
                          "allow_insecure_tls = false\n"),
              "%s", b.p);
    buf_release(&b);
    config_release(&c);
    load_fails(d, "[sync]\nreconcile_hour = 24\n",
               "[sync] reconcile_hour: expected an integer from -1 to 23, got \"24\"");
    load_fails(d, "[sync]\nreconcile_repair = yes\n",
               "engage.conf:2: [sync] reconcile_repair: expected true or false, got \"yes\"");
    load_fails(d, "[sync]\nsecret_dir = secrets\n",
               "[sync] secret_dir: must be an absolute path, got \"secrets\"");
    load_fails(d, "[sync]\nsecret_env_prefix = CRM-\n",
               "[sync] secret_env_prefix: expected the start of a variable name");
    load_fails(d, "[sync]\nallow_insecure_tls = yes\n",
               "[sync] allow_insecure_tls: expected true or false");
    free(d);
}

UTEST(config, public_url_needs_https_unless_loopback)
{
    char *d = test_tmpdir();
    struct config c;
    struct err e = {0};
    cr_assert_neq(load(&c, d, "[server]\npublic_url = http://mail.example.com\n", &e), 0);
    cr_assert(strstr(e.msg, "https is required"), "%s", e.msg);
    cr_assert_str_eq(e.field, "public_url");
    config_release(&c);
    err_clear(&e);
    cr_assert_eq(load(&c, d, "[server]\npublic_url = http://127.0.0.1:8080/\n", &e), 0, "%s",
                 e.msg);
    config_release(&c);
    cr_assert_eq(load(&c, d, "[server]\npublic_url = http://localhost:8080\n", &e), 0, "%s", e.msg);
    config_release(&c);
    cr_assert_neq(load(&c, d, "[server]\npublic_url = http://localhost.evil.com\n", &e), 0);
    config_release(&c);
    free(d);
}

UTEST(config, environment_overrides_file)
{
    char *d = test_tmpdir();
    struct config c;
    struct err e = {0};
    cr_assert_eq(load(&c, d, "[server]\nlisten = 127.0.0.1:1111\n", &e), 0);
    setenv("ENGAGE_LISTEN", "127.0.0.1:2222", 1);
    cr_assert_eq(config_apply_env(&c, &e), 0);
    unsetenv("ENGAGE_LISTEN");
    cr_assert_str_eq(c.listen, "127.0.0.1:2222");
    config_release(&c);
    free(d);
}

UTEST(config, secrets_only_by_reference)
{
    char *d = test_tmpdir();
    char path[256], text[512];
    struct config c;
    struct err e = {0};
    cr_assert_neq(load(&c, d, "[provider:main]\ntype = smtp\npassword = hunter2\n", &e), 0);
    cr_assert(strstr(e.msg, "password_env"), "%s", e.msg);
    cr_assert_null(strstr(e.msg, "hunter2"), "the secret must not be echoed");
    config_release(&c);
    err_clear(&e);
    setenv("TEST_SMTP_PW", "s3cret", 1);
    snprintf(path, sizeof path, "%s/pw", d);
    write_file(path, "from-file\n");
    snprintf(text, sizeof text,
             "[provider:main]\ntype = smtp\npassword_env = TEST_SMTP_PW\n"
             "[webhook:sg]\ntype = sendgrid\nsecret_file = %s\n",
             path);
    cr_assert_eq(load(&c, d, text, &e), 0, "%s", e.msg);
    cr_assert_str_eq(c.providers[0].secret, "s3cret");
    cr_assert_str_eq(c.webhooks[0].secret, "from-file");
    {
        struct buf b;
        buf_init(&b);
        config_dump(&c, &b);
        cr_assert_null(strstr(b.p, "s3cret"), "dump shows references, never values");
        cr_assert(strstr(b.p, "env:TEST_SMTP_PW"));
        buf_release(&b);
    }
    config_release(&c);
    err_clear(&e);
    unsetenv("TEST_SMTP_PW");
    cr_assert_neq(load(&c, d, "[provider:x]\npassword_env = NOPE_NOT_SET\n", &e), 0);
    cr_assert(strstr(e.msg, "NOPE_NOT_SET is not set"), "%s", e.msg);
    config_release(&c);
    free(d);
}

/* ---- secrets ---- */

UTEST(secret, seal_open_and_tamper)
{
    char *d = test_tmpdir();
    struct config c;
    struct err e = {0};
    unsigned char key[SECRET_KEY_BYTES], key2[SECRET_KEY_BYTES];
    char *sealed, *plain;
    size_t n;

    config_defaults(&c, d);
    cr_assert_eq(secret_key_load(&c, key, &e), 0, "%s", e.msg);
    cr_assert_eq(secret_key_load(&c, key2, &e), 0, "the key file is reused");
    cr_assert_eq(memcmp(key, key2, sizeof key), 0);
    cr_assert_eq(secret_seal(key, "crm-password", 12, &sealed, &e), 0);
    cr_assert_null(strstr(sealed, "crm-password"));
    cr_assert_eq(strncmp(sealed, "sb1:", 4), 0);
    cr_assert_eq(secret_open(key, sealed, &plain, &n, &e), 0, "%s", e.msg);
    cr_assert_str_eq(plain, "crm-password");
    secret_free(plain);
    sealed[10] = sealed[10] == 'A' ? 'B' : 'A';
    cr_assert_neq(secret_open(key, sealed, &plain, &n, &e), 0, "tampering is detected");
    free(sealed);
    key2[0] ^= 1;
    err_clear(&e);
    cr_assert_eq(secret_seal(key, "x", 1, &sealed, &e), 0);
    cr_assert_neq(secret_open(key2, sealed, &plain, &n, &e), 0, "a wrong key does not open it");
    free(sealed);
    config_release(&c);
    free(d);
}

UTEST(secret, key_from_environment)
{
    struct config c;
    struct err e = {0};
    unsigned char key[SECRET_KEY_BYTES];
    config_defaults(&c, "/nonexistent");
    snprintf(c.secrets_key_env, sizeof c.secrets_key_env, "TEST_ENGAGE_KEY");
    setenv("TEST_ENGAGE_KEY", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
           1);
    cr_assert_eq(secret_key_load(&c, key, &e), 0, "%s", e.msg);
    cr_assert_eq(key[1], 0x11);
    setenv("TEST_ENGAGE_KEY", "short", 1);
    cr_assert_neq(secret_key_load(&c, key, &e), 0);
    unsetenv("TEST_ENGAGE_KEY");
    config_release(&c);
}

/* ---- the arena JSON reader against jansson ---- */

#include "core/jtree.h"
#include "rnd_json.h"

/* jt_parse accepts text exactly when json_loadb(…, 0) does; then jt_dump writes what
 * json_dumps(…, COMPACT | SORT_KEYS) writes, and jt_json gives an equal value. */
static struct arena jt_arena; /* reset, not released, between documents */

static void same_as_jansson(const char *text, size_t len, int *accepted)
{
    struct arena *a = &jt_arena;
    struct jt *t;
    struct jt_error je;
    json_error_t jerr;
    json_t *j = json_loadb(text, len, 0, &jerr);
    int rc;

    arena_reset(a);
    rc = jt_parse(a, text, len, &t, &je);
    if (memchr(text, '\0', len)) {
        /* jansson skips a NUL byte after some tokens ("[1\0]" reads as [1]); jt refuses
         * every NUL outside a string, and inside one JSON forbids it. */
        cr_assert_neq(rc, 0, "a NUL byte is refused");
        json_decref(j);
        return;
    }
    cr_assert_eq(rc == 0, j != NULL, "'%.*s': jansson %s (%s), jt %s (%s)", (int)len, text,
                 j ? "accepts" : "refuses", j ? "" : jerr.text, rc ? "refuses" : "accepts",
                 rc ? je.text : "");
    if (j) {
        struct buf b;
        char *want = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_t *back = jt_json(t);
        buf_init(&b);
        jt_dump(&b, t, 0);
        cr_assert_str_eq(b.p, want, "'%.*s'", (int)len, text);
        cr_assert(json_equal(back, j), "'%.*s'", (int)len, text);
        {
            size_t lead = strspn(text, " \t\r\n"), end = len;
            while (end > lead && strchr(" \t\r\n", text[end - 1]))
                end--;
            cr_assert(t->src == text + lead && t->srclen == end - lead,
                      "the value's text is the document's, without the white space");
        }
        (*accepted)++;
        free(want);
        json_decref(back);
        buf_release(&b);
    }
    json_decref(j);
}

UTEST(jtree, agrees_with_jansson_on_random_documents_and_their_mutations)
{
    static const char bytes[] = {'"', '\\', '}',  ']',    '{',  '[',    ',',    ':',    '0',
                                 '1', 'e',  'E',  '-',    '+',  '.',    'u',    'D',    '8',
                                 'n', ' ',  '\n', '\x1f', '\0', '\x80', '\xc3', '\xed', '\xff'};
    int round, accepted = 0, refused = 0;

    for (round = 0; round < 6000; round++) {
        json_t *v = rnd(2) ? json_object() : json_array();
        size_t flags = rnd(3) == 0 ? JSON_INDENT(2)
                       : rnd(2)    ? JSON_COMPACT | JSON_ENSURE_ASCII
                                   : JSON_COMPACT;
        char *text;
        size_t len;
        int i, n = (int)rnd(5), before = accepted;

        for (i = 0; i < n; i++) {
            if (json_is_object(v)) {
                char *k = rnd_text();
                json_object_set_new(v, k, rnd_value(0));
                free(k);
            } else {
                json_array_append_new(v, rnd_value(0));
            }
        }
        text = json_dumps(v, flags);
        len = strlen(text);
        same_as_jansson(text, len, &accepted);
        cr_assert_eq(accepted, before + 1);
        /* The same text broken: a byte changed, or cut short. */
        for (i = 0; i < 3 && len; i++) {
            char *m = malloc(len);
            size_t at = rnd((unsigned)len), cut = rnd(4) == 0 ? rnd((unsigned)len) + 1 : len;
            memcpy(m, text, len);
            m[at] = bytes[rnd(sizeof bytes)];
            before = accepted;
            same_as_jansson(m, cut, &accepted);
            refused += accepted == before;
            free(m);
        }
        free(text);
        json_decref(v);
    }
    arena_release(&jt_arena);
    cr_assert_gt(refused, 3000, "the mutations must exercise the errors (%d)", refused);
    cr_assert_gt(accepted, 7000, "and accept some (%d)", accepted);
}

UTEST(jtree, edge_cases_as_jansson)
{
    static const char *docs[] = {"[9223372036854775807,-9223372036854775808]",
                                 "[9223372036854775808]",
                                 "[-9223372036854775809]",
                                 "[1e308,1e309]",
                                 "[-1e309]",
                                 "[1e-400,5e-324,-0.0,-0]",
                                 "[0.1,3.7,100.0,1e16,1e17,1E+2,1e-05,123456789012345678.5]",
                                 "[01]",
                                 "[1.]",
                                 "[.5]",
                                 "[1e]",
                                 "[1e+]",
                                 "[-]",
                                 "[+1]",
                                 "[\"\\ud83d\\ude00\"]",
                                 "[\"\\ud83d\"]",
                                 "[\"\\ude00\"]",
                                 "[\"\\ud83dx\"]",
                                 "[\"\\u00e9\\u2028\\u001f\\/\"]",
                                 "[\"\\u0000\"]",
                                 "[\"\\x\"]",
                                 "[\"\\u12G4\"]",
                                 "[\"a\tb\"]",
                                 "{\"a\":1,\"a\":2}",
                                 "{\"b\":null,\"a\":[],\"\":{}}",
                                 "{\"a\" : 1 , \"b\" :[ true , false,null ] }",
                                 "{\"a\":1,}",
                                 "[1,]",
                                 "[1 2]",
                                 "{\"a\"}",
                                 "{1:2}",
                                 "[]x",
                                 " [] ",
                                 "1",
                                 "\"s\"",
                                 "",
                                 "[tru]",
                                 "[nul]",
                                 "[\"\xc3\xa9\"]",
                                 "[\"\xc3\"]",
                                 "[\"\xed\xa0\x80\"]",
                                 "[\"\xf4\x90\x80\x80\"]",
                                 "[\"\xe0\x80\xaf\"]",
                                 "\xef\xbb\xbf[]"};
    struct buf deep;
    int accepted = 0, i;
    size_t k;

    for (k = 0; k < sizeof docs / sizeof *docs; k++)
        same_as_jansson(docs[k], strlen(docs[k]), &accepted);
    cr_assert_gt(accepted, 8, "(%d)", accepted);
    /* Depth: 2048 nested arrays are read, 2049 are not; a scalar counts as a level
     * (2047 arrays around a number are read, 2048 are not). */
    for (i = 2047; i <= 2049; i++) {
        int with_scalar;
        for (with_scalar = 0; with_scalar < 2; with_scalar++) {
            buf_init(&deep);
            for (k = 0; k < (size_t)i; k++)
                buf_addc(&deep, '[');
            if (with_scalar)
                buf_addc(&deep, '1');
            for (k = 0; k < (size_t)i; k++)
                buf_addc(&deep, ']');
            same_as_jansson(deep.p, deep.len, &accepted);
            buf_release(&deep);
        }
    }
    arena_release(&jt_arena);
}

UTEST(jtree, members_and_their_text)
{
    static const char doc[] =
        "{\"batch\": [ {\"a\":1} ,\"x\\ny\", 2.50 ], \"k\":\"v\", \"k\":\"w\"}";
    struct arena a;
    struct jt *t;
    struct jt_error je;
    const struct jt *b;

    arena_init(&a);
    cr_assert_eq(jt_parse(&a, doc, strlen(doc), &t, &je), 0);
    b = jt_get(t, "batch");
    cr_assert(b && b->type == JT_ARR && b->n == 3);
    cr_assert_eq(b->u.items[0].srclen, 7);
    cr_assert(memcmp(b->u.items[0].src, "{\"a\":1}", 7) == 0);
    cr_assert_str_eq(b->u.items[1].u.s, "x\ny");
    cr_assert(memcmp(b->u.items[1].src, "\"x\\ny\"", b->u.items[1].srclen) == 0);
    cr_assert(memcmp(b->u.items[2].src, "2.50", b->u.items[2].srclen) == 0);
    cr_assert_str_eq(jt_str(t, "k"), "w", "the last of duplicate keys, as jansson");
    cr_assert_null(jt_str(t, "batch"), "not a string");
    cr_assert_null(jt_get(b, "a"), "not an object");
    cr_assert_neq(jt_parse(&a, "{\n\"a\": tru}", 12, &t, &je), 0);
    cr_assert_eq(je.line, 2);
    cr_assert_eq(je.column, 6, "at the t of tru");
    arena_release(&a);
}

/* Limits stop the reading where they are passed: values anywhere, items only in the named
 * list of the top object (a record's own arrays are not the list). */
UTEST(jtree, limits_stop_the_reading)
{
    struct jt_limits lim = {.max_values = 50, .max_items = 3, .items_key = "items"};
    struct arena a;
    struct jt_error je;
    struct jt *t;

    arena_init(&a);
    cr_assert_eq(
        jt_parse_limited(&a, "{\"items\":[1,2,3]}", strlen("{\"items\":[1,2,3]}"), &lim, &t, &je),
        0, "%s", je.text);
    cr_assert_eq(jt_parse_limited(&a, "{\"items\":[1,2,3,4]}", strlen("{\"items\":[1,2,3,4]}"),
                                  &lim, &t, &je),
                 E_TOOBIG);
    cr_assert_str_eq(je.text, "\"items\" holds more than 3 items");
    cr_assert_eq(je.column, 18, "stopped at the fourth item's end (column %d)", je.column);
    /* Not the list: another member, a nested array, a top-level array. */
    cr_assert_eq(jt_parse_limited(&a, "{\"tags\":[1,2,3,4,5]}", strlen("{\"tags\":[1,2,3,4,5]}"),
                                  &lim, &t, &je),
                 0, "%s", je.text);
    cr_assert_eq(jt_parse_limited(&a, "{\"items\":[[1,2,3,4,5]]}",
                                  strlen("{\"items\":[[1,2,3,4,5]]}"), &lim, &t, &je),
                 0, "%s", je.text);
    cr_assert_eq(jt_parse_limited(&a, "[1,2,3,4,5]", strlen("[1,2,3,4,5]"), &lim, &t, &je), 0, "%s",
                 je.text);
    cr_assert_eq(jt_parse_limited(&a, "{\"x\":{\"items\":[1,2,3,4]}}",
                                  strlen("{\"x\":{\"items\":[1,2,3,4]}}"), &lim, &t, &je),
                 0, "only the top object's member");
    /* Values: 51 of them anywhere. */
    {
        struct buf b;
        int i;
        buf_init(&b);
        buf_adds(&b, "{\"a\":[");
        for (i = 0; i < 60; i++)
            buf_adds(&b, i ? ",{}" : "{}");
        buf_adds(&b, "]}");
        cr_assert_eq(jt_parse_limited(&a, b.p, b.len, &lim, &t, &je), E_TOOBIG);
        cr_assert_str_eq(je.text, "the document holds more than 50 values");
        buf_release(&b);
    }
    arena_release(&a);
}
