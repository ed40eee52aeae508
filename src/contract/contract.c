/* contract/contract.c -- versioned contracts: parse, check, compile; typed values.
 *
 * A contract is a JSON document (docs/contracts.md):
 *   {"name":"order_created","kind":"event","occurred_at":"created_at",
 *    "properties":{"amount":{"type":"number","required":true,"minimum":0},…}}
 * or, for contact attributes, {"name":"contact","kind":"contact","attributes":{…}}.
 * Compiling checks every key and reports every problem with a JSON pointer. */
#include "contract.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/jtree.h"
#include "../core/map.h"
#include "contract_int.h"
#include "../auth/auth.h"

struct prop_spec {
    char *name;
    enum vtype type;
    int required;
    int has_min, has_max;
    double min, max;
    struct pattern *pattern;
    char *pattern_error; /* a stored pattern that no longer compiles: every value refused */
    json_t *enum_vals;   /* array of allowed (typed) values, or NULL */
    int email;           /* "format":"email" */
    long max_length;     /* strings, in bytes; 0 = none */
};

struct contract {
    char *name, *kind, *occurred_at;
    int version;
    struct prop_spec *props;
    int nprops;
    int strict;               /* "additional_properties": false */
    size_t pattern_max_bytes; /* longest value matched against a pattern */
};

struct contract_set {
    struct contract **events;
    int nevents;
    struct contract *contact;
    _Atomic int refs; /* contract_set_ref / contract_set_free */
};

static const char *vtype_names[] = {"string", "number", "integer", "boolean", "timestamp"};

const char *vtype_name(enum vtype t)
{
    return (unsigned)t < 5 ? vtype_names[t] : "unknown";
}

int vtype_parse(const char *s, enum vtype *out)
{
    int i;

    for (i = 0; i < 5; i++) {
        if (strcmp(s, vtype_names[i]) == 0) {
            *out = (enum vtype)i;
            return 0;
        }
    }
    return E_INVAL;
}

/* ---- values ---------------------------------------------------------------------- */

/* A typed scalar parsed from text: the one place text becomes a typed value, used
 * by the JSON path (value_coerce) and the CSV fast path (contract_type_text). */
struct tval {
    enum vtype t;
    const char *s; /* VT_STRING */
    size_t n;
    double d;  /* VT_NUMBER */
    int64_t i; /* VT_INTEGER; VT_BOOLEAN (0/1); VT_TIMESTAMP (ms) */
};

/* Spaces and tabs around a number, boolean or timestamp are not part of it: a CSV
 * cell " 42 " keeps its spaces as a string, and is the number 42. Strings keep them. */
static void trim_blanks(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

static int text_parse(const char *s, size_t n, enum vtype t, struct tval *v, char *msg,
                      size_t msgcap)
{
    const char *given = s; /* messages quote the text as given, blanks and all */
    int show = (int)utf8_prefix(s, n, 40);

    v->t = t;
    if (t != VT_STRING)
        trim_blanks(&s, &n);
    v->s = s; /* the text is kept: numbers are written as given */
    v->n = n;
    switch (t) {
    case VT_STRING:
        return 0;
    case VT_NUMBER:
        if (parse_double(s, n, &v->d) == 0)
            return 0;
        snprintf(msg, msgcap, "expected a number, got \"%.*s\"", show, given);
        return -1;
    case VT_INTEGER:
        if (parse_i64(s, n, &v->i) == 0)
            return 0;
        snprintf(msg, msgcap, "expected an integer, got \"%.*s\"", show, given);
        return -1;
    case VT_BOOLEAN:
        if ((n == 4 && strncasecmp(s, "true", 4) == 0) ||
            (n == 5 && strncasecmp(s, "false", 5) == 0)) {
            v->i = n == 4;
            return 0;
        }
        snprintf(msg, msgcap, "expected true or false");
        return -1;
    case VT_TIMESTAMP:
        if (time_parse_iso(s, n, &v->i) == 0)
            return 0;
        snprintf(msg, msgcap, "expected an ISO-8601 timestamp, got \"%.*s\"", show, given);
        return -1;
    }
    return -1;
}

int value_parse_time(const char *s, size_t n, int64_t *ms)
{
    trim_blanks(&s, &n);
    return time_parse_iso(s, n, ms);
}

static json_t *tval_to_json(const struct tval *v)
{
    char iso[32];

    switch (v->t) {
    case VT_STRING:
        return json_stringn(v->s, v->n);
    case VT_NUMBER:
        return json_real(v->d);
    case VT_INTEGER:
        return json_integer(v->i);
    case VT_BOOLEAN:
        return json_boolean(v->i);
    case VT_TIMESTAMP:
        time_format_iso(v->i, iso);
        return json_string(iso);
    }
    return json_null();
}

/* The JSON text of a typed value, as jansson would write it. */
static void tval_write(const struct tval *v, struct buf *out)
{
    char tmp[40];

    switch (v->t) {
    case VT_STRING:
        buf_add_json_str(out, v->s, v->n);
        return;
    case VT_NUMBER:
        /* Text that parsed is JSON number grammar already: keep it as written. */
        if (v->s) {
            buf_add(out, v->s, v->n);
            if (memchr(v->s, '.', v->n) == NULL && memchr(v->s, 'e', v->n) == NULL &&
                memchr(v->s, 'E', v->n) == NULL)
                buf_add(out, ".0", 2); /* stays a real when read back */
            return;
        }
        snprintf(tmp, sizeof tmp, "%.17g", v->d);
        buf_adds(out, tmp);
        if (strpbrk(tmp, ".eE") == NULL)
            buf_add(out, ".0", 2);
        return;
    case VT_INTEGER: {
        char *e = tmp + sizeof tmp, *q = e;
        uint64_t u = v->i < 0 ? (uint64_t)0 - (uint64_t)v->i : (uint64_t)v->i;
        do
            *--q = (char)('0' + u % 10);
        while ((u /= 10) != 0);
        if (v->i < 0)
            *--q = '-';
        buf_add(out, q, (size_t)(e - q));
        return;
    }
    case VT_BOOLEAN:
        buf_adds(out, v->i ? "true" : "false");
        return;
    case VT_TIMESTAMP:
        time_format_iso(v->i, tmp);
        buf_addc(out, '"');
        buf_adds(out, tmp);
        buf_addc(out, '"');
        return;
    }
}

json_t *value_coerce(const json_t *v, enum vtype t, char *msg, size_t msgcap)
{
    struct tval tv;

    if (json_is_string(v)) {
        if (t == VT_STRING)
            return json_incref((json_t *)v);
        if (text_parse(json_string_value(v), json_string_length(v), t, &tv, msg, msgcap))
            return NULL;
        return tval_to_json(&tv);
    }
    switch (t) {
    case VT_STRING:
        if (json_is_integer(v))
            return json_sprintf("%lld", (long long)json_integer_value(v));
        if (json_is_real(v))
            return json_sprintf("%.17g", json_real_value(v));
        snprintf(msg, msgcap, "expected a string");
        return NULL;
    case VT_NUMBER:
        if (json_is_number(v))
            return json_real(json_number_value(v));
        snprintf(msg, msgcap, "expected a number");
        return NULL;
    case VT_INTEGER:
        if (json_is_integer(v))
            return json_incref((json_t *)v);
        if (json_is_real(v) && json_real_value(v) >= -9.2e18 && json_real_value(v) <= 9.2e18 &&
            json_real_value(v) == (double)(int64_t)json_real_value(v))
            return json_integer((json_int_t)json_real_value(v));
        snprintf(msg, msgcap, "expected an integer");
        return NULL;
    case VT_BOOLEAN:
        if (json_is_boolean(v))
            return json_incref((json_t *)v);
        snprintf(msg, msgcap, "expected true or false");
        return NULL;
    case VT_TIMESTAMP:
        snprintf(msg, msgcap, "expected an ISO-8601 timestamp string");
        return NULL;
    }
    snprintf(msg, msgcap, "unknown type");
    return NULL;
}

static enum vtype infer_text(const char *s, size_t n)
{
    double d;
    int64_t ms;

    trim_blanks(&s, &n); /* as text_parse reads it; all blanks: a string */
    if (n == 4 && strncasecmp(s, "true", 4) == 0)
        return VT_BOOLEAN;
    if (n == 5 && strncasecmp(s, "false", 5) == 0)
        return VT_BOOLEAN;
    if (n > 0 && ((s[0] >= '0' && s[0] <= '9') || s[0] == '-')) {
        if (parse_double(s, n, &d) == 0)
            return VT_NUMBER;
        /* A date or date-time, at least YYYY-MM-DD: a timestamp. */
        if (n >= 10 && s[4] == '-' && time_parse_iso(s, n, &ms) == 0)
            return VT_TIMESTAMP;
    }
    return VT_STRING;
}

void value_infer_text_json(const char *s, size_t n, struct buf *out)
{
    struct tval v;
    char msg[8];

    if (text_parse(s, n, infer_text(s, n), &v, msg, sizeof msg))
        text_parse(s, n, VT_STRING, &v, msg, sizeof msg);
    tval_write(&v, out);
}

enum vtype value_infer(const json_t *v)
{
    if (json_is_boolean(v))
        return VT_BOOLEAN;
    if (json_is_number(v))
        return VT_NUMBER;
    if (!json_is_string(v))
        return VT_STRING;
    return infer_text(json_string_value(v), json_string_length(v));
}

int value_email_ok(const char *s)
{
    const char *at = strchr(s, '@'), *dot;

    if (strlen(s) > 320 || at == NULL || at == s || strchr(at + 1, '@') ||
        strpbrk(s, " \t\r\n<>,;\"()[]\\"))
        return 0;
    /* The domain needs a dot, not at either end: mail to "bob@example" goes nowhere. */
    dot = strchr(at + 1, '.');
    return dot && dot != at + 1 && s[strlen(s) - 1] != '.';
}

/* ---- compile ----------------------------------------------------------------------- */

/* Contract names are event names: 1 to 128 bytes of UTF-8, no control characters and
 * no '/' (they appear in URLs). "Order Completed" is fine. */
static int name_ok(const char *s)
{
    size_t i, n = strlen(s);

    if (n == 0 || n > STORE_MAX_NAME || !utf8_valid(s, n))
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == '/' || s[i] == 0x7f)
            return 0;
    return 1;
}

/* Property names: the same, without '/' either (they appear in JSON pointers). */
#define prop_name_ok name_ok

static void spec_free(struct prop_spec *p)
{
    free(p->name);
    pattern_free(p->pattern);
    free(p->pattern_error);
    json_decref(p->enum_vals);
}

void contract_free(struct contract *c)
{
    int i;

    if (c == NULL)
        return;
    for (i = 0; i < c->nprops; i++)
        spec_free(&c->props[i]);
    free(c->props);
    free(c->name);
    free(c->kind);
    free(c->occurred_at);
    free(c);
}

/* stored: the contract comes from the store, where it was valid when put. A pattern of it
 * that no longer compiles (an expression of the POSIX dialect patterns had before PCRE2)
 * does not stop the contract from loading: its property refuses every value, saying why,
 * until a new version is stored (the values wait in the dead-letter store for a replay). */
static void compile_spec(const struct contract *c, struct prop_spec *p, const char *key,
                         json_t *spec, const char *ptr, int stored, struct errlist *errs)
{
    const char *k;
    json_t *v;
    char path[200];

    p->name = xstrdup(key);
    p->type = VT_STRING;
    if (!json_is_object(spec)) {
        errlist_add(errs, ptr, "must be an object such as {\"type\":\"string\"}");
        return;
    }
    v = json_object_get(spec, "type");
    snprintf(path, sizeof path, "%s/type", ptr);
    if (!json_is_string(v) || vtype_parse(json_string_value(v), &p->type))
        errlist_add(errs, path, "must be one of string, number, integer, boolean, timestamp");
    json_object_foreach(spec, k, v) {
        snprintf(path, sizeof path, "%s/%s", ptr, k);
        if (strcmp(k, "type") == 0 || strcmp(k, "description") == 0) {
            if (!json_is_string(v))
                errlist_add(errs, path, "must be a string");
        } else if (strcmp(k, "required") == 0) {
            if (!json_is_boolean(v))
                errlist_add(errs, path, "must be true or false");
            p->required = json_is_true(v);
        } else if (strcmp(k, "minimum") == 0 || strcmp(k, "maximum") == 0) {
            if (!json_is_number(v))
                errlist_add(errs, path, "must be a number");
            else if (p->type != VT_NUMBER && p->type != VT_INTEGER)
                errlist_add(errs, path, "applies to number and integer properties only");
            else if (k[1] == 'i')
                p->has_min = 1, p->min = json_number_value(v);
            else
                p->has_max = 1, p->max = json_number_value(v);
        } else if (strcmp(k, "pattern") == 0) {
            char why[240];
            if (!json_is_string(v) || p->type != VT_STRING) {
                errlist_add(errs, path, "must be a string, on a string property");
            } else if (pattern_compile(json_string_value(v), json_string_length(v), &p->pattern,
                                       why, sizeof why) != 0) {
                if (stored)
                    p->pattern_error = xasprintf("contract %s v%d: %s %s; store a new version of "
                                                 "the contract",
                                                 c->name, c->version, path, why);
                else
                    errlist_add(errs, path, "%s", why);
            }
        } else if (strcmp(k, "max_length") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || p->type != VT_STRING)
                errlist_add(errs, path, "must be a positive integer, on a string property");
            else
                p->max_length = (long)json_integer_value(v);
        } else if (strcmp(k, "format") == 0) {
            if (!json_is_string(v) || strcmp(json_string_value(v), "email") != 0)
                errlist_add(errs, path, "the only format is \"email\"");
            else if (p->type != VT_STRING)
                errlist_add(errs, path, "applies to string properties only");
            else
                p->email = 1;
        } else if (strcmp(k, "enum") == 0) {
            size_t i;
            json_t *item;
            if (!json_is_array(v) || json_array_size(v) == 0) {
                errlist_add(errs, path, "must be a non-empty array");
                continue;
            }
            p->enum_vals = json_array();
            json_array_foreach(v, i, item) {
                char msg[160];
                json_t *t = value_coerce(item, p->type, msg, sizeof msg);
                if (t == NULL) {
                    char ip[220];
                    snprintf(ip, sizeof ip, "%s/%zu", path, i);
                    errlist_add(errs, ip, "%s", msg);
                } else {
                    json_array_append_new(p->enum_vals, t);
                }
            }
        } else {
            errlist_add(errs, path,
                        "unknown key (expected type, required, minimum, maximum, "
                        "pattern, max_length, format, enum, description)");
        }
    }
}

static int compile_doc(const char *text, size_t len, const char *name_expected, int version,
                       int stored, struct contract **out, struct errlist *errs, struct err *e)
{
    json_error_t jerr;
    json_t *doc, *v, *props;
    struct contract *c;
    const char *k, *props_key;
    int is_contact;

    *out = NULL;
    doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        json_error_tidy(&jerr);
        errlist_add(errs, "", "not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                    jerr.column);
        return ERR(e, E_INVAL, "contract is not valid JSON");
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        errlist_add(errs, "", "must be a JSON object");
        return ERR(e, E_INVAL, "contract is not an object");
    }
    c = xcalloc(1, sizeof *c);
    c->version = version;
    c->pattern_max_bytes = CONFIG_PATTERN_MAX_VALUE_BYTES;
    v = json_object_get(doc, "name");
    if (!json_is_string(v) || !name_ok(json_string_value(v))) {
        errlist_add(errs, "/name",
                    "must be a name of 1 to 128 bytes without control characters "
                    "or '/'");
        c->name = xstrdup("");
    } else {
        c->name = xstrdup(json_string_value(v));
        if (name_expected && strcmp(name_expected, c->name) != 0)
            errlist_add(errs, "/name", "must be \"%s\", the contract being stored", name_expected);
    }
    v = json_object_get(doc, "kind");
    if (v == NULL) {
        c->kind = xstrdup(strcmp(c->name, "contact") == 0 ? "contact" : "event");
    } else if (json_is_string(v) && (strcmp(json_string_value(v), "event") == 0 ||
                                     strcmp(json_string_value(v), "contact") == 0)) {
        c->kind = xstrdup(json_string_value(v));
    } else {
        errlist_add(errs, "/kind", "must be \"event\" or \"contact\"");
        c->kind = xstrdup("event");
    }
    is_contact = strcmp(c->kind, "contact") == 0;
    if (is_contact && strcmp(c->name, "contact") != 0)
        errlist_add(errs, "/name", "the contact attributes contract is named \"contact\"");
    props_key = is_contact ? "attributes" : "properties";
    json_object_foreach(doc, k, v) {
        if (strcmp(k, "name") && strcmp(k, "kind") && strcmp(k, "description") &&
            strcmp(k, props_key) && strcmp(k, "additional_properties") && strcmp(k, "version") &&
            (is_contact || strcmp(k, "occurred_at"))) {
            char path[160];
            snprintf(path, sizeof path, "/%s", k);
            errlist_add(errs, path, "unknown key");
        }
    }
    v = json_object_get(doc, "additional_properties");
    if (v && !json_is_boolean(v))
        errlist_add(errs, "/additional_properties", "must be true or false");
    c->strict = json_is_false(v);
    props = json_object_get(doc, props_key);
    if (!json_is_object(props)) {
        errlist_add(errs, is_contact ? "/attributes" : "/properties", "must be an object");
    } else {
        size_t n = json_object_size(props), i = 0;
        json_t *spec;
        c->props = xcalloc(n, sizeof *c->props);
        json_object_foreach(props, k, spec) {
            char path[200];
            snprintf(path, sizeof path, "/%s/%s", props_key, k);
            if (!prop_name_ok(k))
                errlist_add(errs, path,
                            "property names are 1 to 128 bytes without control "
                            "characters or '/'");
            compile_spec(c, &c->props[i++], k, spec, path, stored, errs);
            c->nprops = (int)i;
        }
    }
    v = json_object_get(doc, "occurred_at");
    if (v) {
        int i, found = 0;
        if (!json_is_string(v)) {
            errlist_add(errs, "/occurred_at", "must name a timestamp property");
        } else {
            for (i = 0; i < c->nprops; i++)
                if (strcmp(c->props[i].name, json_string_value(v)) == 0 &&
                    c->props[i].type == VT_TIMESTAMP)
                    found = 1;
            if (!found)
                errlist_add(errs, "/occurred_at",
                            "must name a timestamp property of this contract");
            else
                c->occurred_at = xstrdup(json_string_value(v));
        }
    }
    json_decref(doc);
    if (errs->n) {
        contract_free(c);
        return ERR(e, E_INVAL, "contract has %d problem%s", errs->n, errs->n == 1 ? "" : "s");
    }
    *out = c;
    return 0;
}

int contract_compile(const char *text, size_t len, const char *name_expected, int version,
                     struct contract **out, struct errlist *errs, struct err *e)
{
    return compile_doc(text, len, name_expected, version, 0, out, errs, e);
}

const char *contract_name(const struct contract *c)
{
    return c->name;
}

const char *contract_kind(const struct contract *c)
{
    return c->kind;
}

int contract_version(const struct contract *c)
{
    return c->version;
}

/* ---- validation (used by ingest.c through contract_apply) ----------------------------- */

/* A string value against the property's pattern: NULL, or a reason code with a sentence. */
static const char *pattern_check(const struct contract *c, const struct prop_spec *p, const char *s,
                                 size_t n, char *msg, size_t cap)
{
    if (p->pattern_error) {
        snprintf(msg, cap, "%s", p->pattern_error);
        return "pattern_invalid";
    }
    /* The cap keeps the work of a match in proportion to what a pattern is for (codes,
     * ids, addresses), whatever the pattern. */
    if (n > c->pattern_max_bytes) {
        snprintf(msg, cap,
                 "value of %zu bytes is longer than the %zu bytes matched against a "
                 "pattern ([ingest] pattern_max_value_bytes)",
                 n, c->pattern_max_bytes);
        return "pattern_limit";
    }
    switch (pattern_match(p->pattern, s, n, msg, cap)) {
    case PATTERN_MATCH:
        return NULL;
    case PATTERN_NO_MATCH:
        snprintf(msg, cap, "must match %s, got \"%.*s\"", pattern_text(p->pattern),
                 (int)utf8_prefix(s, n, 40), s);
        return "constraint";
    case PATTERN_BAD_VALUE:
        return "invalid_encoding";
    default:
        return "pattern_limit";
    }
}

/* Checks one typed value against its spec. NULL, or a reason code with a sentence. */
static const char *spec_check_tval(const struct contract *c, const struct prop_spec *p,
                                   const struct tval *v, char *msg, size_t cap)
{
    double num = v->t == VT_NUMBER ? v->d : (double)v->i;

    if (p->has_min && num < p->min) {
        snprintf(msg, cap, "must be at least %g", p->min);
        return "constraint";
    }
    if (p->has_max && num > p->max) {
        snprintf(msg, cap, "must be at most %g", p->max);
        return "constraint";
    }
    if (v->t == VT_STRING) {
        if (p->max_length && (long)v->n > p->max_length) {
            snprintf(msg, cap, "must be at most %ld bytes", p->max_length);
            return "constraint";
        }
        if (p->pattern || p->pattern_error) {
            const char *why = pattern_check(c, p, v->s, v->n, msg, cap);
            if (why)
                return why;
        }
        if (p->email) {
            /* value_email_ok needs a NUL-terminated string */
            char small[256], *z = v->n < sizeof small ? small : xmalloc(v->n + 1);
            const char *why = NULL;
            memcpy(z, v->s, v->n);
            z[v->n] = '\0';
            if (!value_email_ok(z)) {
                snprintf(msg, cap, "is not an email address: \"%.60s\"", z);
                why = "invalid_email";
            }
            if (z != small)
                free(z);
            if (why)
                return why;
        }
    }
    if (p->enum_vals) {
        json_t *j = tval_to_json(v), *ev;
        size_t i;
        int found = 0;
        json_array_foreach(p->enum_vals, i, ev)
            found |= json_equal(ev, j);
        json_decref(j);
        if (!found) {
            snprintf(msg, cap, "must be one of the contract's enum values");
            return "constraint";
        }
    }
    return NULL;
}

/* The same check on a typed JSON value (the JSON path). */
static const char *spec_check(const struct contract *c, const struct prop_spec *p, const json_t *t,
                              char *msg, size_t cap)
{
    struct tval v = {.t = p->type};

    switch (p->type) {
    case VT_STRING:
        v.s = json_string_value(t);
        v.n = json_string_length(t);
        break;
    case VT_NUMBER:
        v.d = json_number_value(t);
        break;
    case VT_INTEGER:
        v.i = json_integer_value(t);
        break;
    case VT_BOOLEAN:
        v.i = json_is_true(t);
        break;
    case VT_TIMESTAMP:
        if (time_parse_iso(json_string_value(t), json_string_length(t), &v.i))
            return NULL;
        break;
    }
    return spec_check_tval(c, p, &v, msg, cap);
}

/* ---- the text path (CSV) ---- */

int contract_nprops(const struct contract *c)
{
    return c->nprops;
}

const char *contract_prop_name(const struct contract *c, int i)
{
    return c->props[i].name;
}

int contract_prop_required(const struct contract *c, int i)
{
    return c->props[i].required;
}

int contract_strict(const struct contract *c)
{
    return c->strict;
}

const char *contract_type_text(const struct contract *c, int i, const char *s, size_t n,
                               struct buf *out, int64_t *ms, char *msg, size_t msgcap)
{
    const struct prop_spec *p = &c->props[i];
    struct tval v;
    const char *why;

    if (text_parse(s, n, p->type, &v, msg, msgcap))
        return p->type == VT_TIMESTAMP ? "invalid_timestamp" : "invalid_type";
    why = spec_check_tval(c, p, &v, msg, msgcap);
    if (why)
        return why;
    if (p->type == VT_TIMESTAMP && ms)
        *ms = v.i;
    tval_write(&v, out);
    return NULL;
}

const char *contract_type_jt(const struct contract *c, int i, const struct jt *v, struct arena *a,
                             struct jt *out, char *msg, size_t msgcap)
{
    const struct prop_spec *p = &c->props[i];
    struct tval tv = {.t = p->type};
    const char *why;
    char tmp[40];

    /* As value_coerce() then spec_check() on the same value as jansson's. */
    if (v->type == JT_STR) {
        if (text_parse(v->u.s, v->n, p->type, &tv, msg, msgcap))
            return p->type == VT_TIMESTAMP ? "invalid_timestamp" : "invalid_type";
    } else {
        switch (p->type) {
        case VT_STRING:
            if (v->type != JT_INT && v->type != JT_REAL) {
                snprintf(msg, msgcap, "expected a string");
                return "invalid_type";
            }
            if (v->type == JT_INT)
                tv.n = (size_t)snprintf(tmp, sizeof tmp, "%lld", v->u.i);
            else
                tv.n = (size_t)snprintf(tmp, sizeof tmp, "%.17g", v->u.d);
            tv.s = arena_strndup(a, tmp, tv.n);
            break;
        case VT_NUMBER:
            if (v->type != JT_INT && v->type != JT_REAL) {
                snprintf(msg, msgcap, "expected a number");
                return "invalid_type";
            }
            tv.d = v->type == JT_INT ? (double)v->u.i : v->u.d;
            break;
        case VT_INTEGER:
            if (v->type == JT_INT) {
                tv.i = v->u.i;
            } else if (v->type == JT_REAL && v->u.d >= -9.2e18 && v->u.d <= 9.2e18 &&
                       v->u.d == (double)(int64_t)v->u.d) {
                tv.i = (int64_t)v->u.d;
            } else {
                snprintf(msg, msgcap, "expected an integer");
                return "invalid_type";
            }
            break;
        case VT_BOOLEAN:
            if (v->type != JT_TRUE && v->type != JT_FALSE) {
                snprintf(msg, msgcap, "expected true or false");
                return "invalid_type";
            }
            tv.i = v->type == JT_TRUE;
            break;
        case VT_TIMESTAMP:
            snprintf(msg, msgcap, "expected an ISO-8601 timestamp string");
            return "invalid_timestamp";
        }
    }
    why = spec_check_tval(c, p, &tv, msg, msgcap);
    if (why)
        return why;
    memset(out, 0, sizeof *out);
    switch (tv.t) {
    case VT_STRING:
        out->type = JT_STR;
        out->u.s = tv.s; /* NUL-terminated: a jt string's, or tmp's copy */
        out->n = (uint32_t)tv.n;
        break;
    case VT_NUMBER:
        out->type = JT_REAL;
        out->u.d = tv.d;
        break;
    case VT_INTEGER:
        out->type = JT_INT;
        out->u.i = tv.i;
        break;
    case VT_BOOLEAN:
        out->type = tv.i ? JT_TRUE : JT_FALSE;
        break;
    case VT_TIMESTAMP:
        time_format_iso(tv.i, tmp);
        out->type = JT_STR;
        out->n = (uint32_t)strlen(tmp);
        out->u.s = arena_strndup(a, tmp, out->n);
        break;
    }
    return NULL;
}

/* Types and checks props (object of raw values) against c. On success *typed is a
 * new object holding every declared property typed and every undeclared one as is
 * (the caller infers those). On failure returns the reason code and sets field/msg. */
const char *contract_apply(const struct contract *c, const json_t *props, json_t **typed,
                           char *field, size_t fieldcap, char *msg, size_t msgcap)
{
    json_t *outp = json_object();
    const char *k;
    json_t *v;
    int i;

    for (i = 0; i < c->nprops; i++) {
        const struct prop_spec *p = &c->props[i];
        json_t *raw = json_object_get(props, p->name), *t;
        const char *why;
        if (raw == NULL || json_is_null(raw)) {
            if (p->required) {
                snprintf(field, fieldcap, "%s", p->name);
                snprintf(msg, msgcap, "is required by contract %s v%d", c->name, c->version);
                json_decref(outp);
                return "missing_field";
            }
            continue;
        }
        t = value_coerce(raw, p->type, msg, msgcap);
        if (t == NULL) {
            snprintf(field, fieldcap, "%s", p->name);
            json_decref(outp);
            return p->type == VT_TIMESTAMP ? "invalid_timestamp" : "invalid_type";
        }
        why = spec_check(c, p, t, msg, msgcap);
        if (why) {
            snprintf(field, fieldcap, "%s", p->name);
            json_decref(t);
            json_decref(outp);
            return why;
        }
        json_object_set_new(outp, p->name, t);
    }
    json_object_foreach((json_t *)props, k, v) {
        int declared = 0;
        if (json_is_null(v))
            continue;
        for (i = 0; i < c->nprops && !declared; i++)
            declared = strcmp(c->props[i].name, k) == 0;
        if (declared)
            continue;
        if (c->strict) {
            snprintf(field, fieldcap, "%s", k);
            snprintf(msg, msgcap, "is not declared by contract %s v%d, which allows no others",
                     c->name, c->version);
            json_decref(outp);
            return "undeclared_field";
        }
        json_object_set(outp, k, v);
    }
    *typed = outp;
    return NULL;
}

int contract_prop_type(const struct contract *c, const char *name)
{
    int i;

    for (i = 0; i < c->nprops; i++)
        if (strcmp(c->props[i].name, name) == 0)
            return (int)c->props[i].type;
    return -1;
}

const char *contract_occurred_at(const struct contract *c)
{
    return c->occurred_at;
}

/* ---- sets ------------------------------------------------------------------------- */

struct load_ctx {
    struct contract_set *cs;
    size_t pattern_max_bytes;
    struct err *e;
};

static int load_one(void *ctx, const struct store_contract *sc)
{
    struct load_ctx *lc = ctx;
    struct errlist errs = {0};
    struct contract *c;
    int i;

    if (compile_doc(sc->body, strlen(sc->body), NULL, sc->version, 1, &c, &errs, lc->e)) {
        err_clear(lc->e);
        return ERR(lc->e, E_CORRUPT, "stored contract %s v%d no longer compiles: %s: %s", sc->name,
                   sc->version, errs.n ? errs.items[0].path : "", errs.n ? errs.items[0].msg : "");
    }
    c->pattern_max_bytes = lc->pattern_max_bytes;
    for (i = 0; i < c->nprops; i++)
        if (c->props[i].pattern_error)
            log_warn("contracts",
                     "%s (until then its values are refused, reason "
                     "pattern_invalid)",
                     c->props[i].pattern_error);
    if (strcmp(c->kind, "contact") == 0) {
        contract_free(lc->cs->contact);
        lc->cs->contact = c;
    } else {
        lc->cs->events =
            xrealloc(lc->cs->events, (size_t)(lc->cs->nevents + 1) * sizeof *lc->cs->events);
        lc->cs->events[lc->cs->nevents++] = c;
    }
    return 0;
}

int contract_set_load(struct store *st, const struct config *cfg, struct contract_set **out,
                      struct err *e)
{
    struct contract_set *cs = xcalloc(1, sizeof *cs);
    struct load_ctx lc = {cs, CONFIG_PATTERN_MAX_VALUE_BYTES, e};
    int rc;

    if (cfg)
        lc.pattern_max_bytes = (size_t)cfg->pattern_max_value_bytes;
    atomic_init(&cs->refs, 1);
    rc = store_contracts_latest(st, load_one, &lc, e);
    if (rc) {
        contract_set_free(cs);
        return rc;
    }
    *out = cs;
    return 0;
}

struct contract_set *contract_set_ref(struct contract_set *cs)
{
    if (cs)
        atomic_fetch_add(&cs->refs, 1);
    return cs;
}

void contract_set_free(struct contract_set *cs)
{
    int i;

    if (cs == NULL || atomic_fetch_sub(&cs->refs, 1) > 1)
        return;
    for (i = 0; i < cs->nevents; i++)
        contract_free(cs->events[i]);
    free(cs->events);
    contract_free(cs->contact);
    free(cs);
}

const struct contract *contract_set_event(const struct contract_set *cs, const char *name)
{
    int i;

    for (i = 0; i < cs->nevents; i++)
        if (strcmp(cs->events[i]->name, name) == 0)
            return cs->events[i];
    return NULL;
}

int contract_set_nevents(const struct contract_set *cs)
{
    return cs->nevents;
}

const struct contract *contract_set_event_at(const struct contract_set *cs, int i)
{
    return cs->events[i];
}

const struct contract *contract_set_contact(const struct contract_set *cs)
{
    return cs->contact;
}

static int count_one(void *ctx, const struct store_contract *c)
{
    (void)c;
    ++*(int *)ctx;
    return 0;
}

int contracts_seed(struct store *st, int *added, struct err *e)
{
    char names[64][STORE_MAX_NAME + 1];
    int i, k, rc = 0, n = 0;

    ASSERT(shipped_contracts_count <= 64);
    rc = store_begin(st, e);
    if (rc)
        return rc;
    for (i = 0; i < shipped_contracts_count; i++) {
        struct errlist errs = {0};
        struct contract *c;
        int version, stored = 0, shipped_before = 0;
        rc = contract_compile(shipped_contracts[i].text, strlen(shipped_contracts[i].text), NULL, 1,
                              &c, &errs, e);
        if (rc) {
            err_clear(e);
            rc = ERR(e, E_INTERNAL, "shipped contract %s: %s: %s", shipped_contracts[i].file,
                     errs.items[0].path, errs.items[0].msg);
            break;
        }
        snprintf(names[i], sizeof names[i], "%s", c->name);
        for (k = 0; k < i; k++)
            shipped_before += strcmp(names[k], c->name) == 0;
        {
            struct err tmp = {0};
            rc = store_contract_versions(st, c->name, count_one, &stored, &tmp);
            if (rc && rc != E_NOTFOUND) {
                contract_free(c);
                *e = tmp;
                break;
            }
            rc = 0;
        }
        /* The shipped versions of a name are stored in order (contracts/NAME.json is
         * version 1, NAME.v2.json version 2, ...), each only while the store holds exactly
         * the shipped ones before it: a version of the user's own always wins. */
        if (stored == shipped_before) {
            rc = store_contract_put(st, c->name, c->kind, shipped_contracts[i].text, "engage",
                                    &version, e);
            n++;
        }
        contract_free(c);
        if (rc)
            break;
    }
    if (rc) {
        store_rollback(st);
        return rc;
    }
    rc = store_commit(st, e);
    if (rc == 0 && added)
        *added = n;
    return rc;
}

/* ---- storing a new version ---- */

struct latest {
    json_t *doc;
    int version;
};

static int keep_latest(void *ctx, const struct store_contract *c)
{
    struct latest *l = ctx;

    if (l->doc == NULL) {
        l->doc = json_loads(c->body, 0, NULL);
        l->version = c->version;
    }
    return 0;
}

int contract_put(struct store *st, const char *name, const char *text, size_t len,
                 const char *actor, const char *req_id, int *version, int *unchanged,
                 struct errlist *errs, struct err *e)
{
    struct contract *c = NULL;
    struct latest prev = {NULL, 0};
    struct err tmp = {0};
    json_t *doc = NULL;
    char *body = NULL;
    int rc;

    *unchanged = 0;
    rc = contract_compile(text, len, name, 0, &c, errs, e);
    if (rc)
        return rc;
    doc = json_loadb(text, len, 0, NULL);
    body = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    rc = store_begin(st, e);
    if (rc)
        goto out;
    rc = store_contract_versions(st, name, keep_latest, &prev, &tmp);
    if (rc == E_NOTFOUND) {
        rc = 0;
    } else if (rc) {
        *e = tmp;
    }
    if (rc == 0 && prev.doc && json_equal(prev.doc, doc)) {
        /* The same document again: no new version. */
        *unchanged = 1;
        *version = prev.version;
        store_rollback(st);
        goto out;
    }
    if (rc == 0)
        rc = store_contract_put(st, name, contract_kind(c), body, actor, version, e);
    if (rc == 0) {
        char ent[200];
        snprintf(ent, sizeof ent, "%s@%d", name, *version);
        rc = audit_record(st, actor, "contract.put", "contract", ent, prev.doc, doc, req_id, e);
    }
    if (rc == 0)
        rc = store_commit(st, e);
    else
        store_rollback(st);
out:
    contract_free(c);
    json_decref(prev.doc);
    json_decref(doc);
    free(body);
    return rc;
}

/* ---- stored versions as the API and the CLI show them ---- */

json_t *contract_record_json(const struct store_contract *c)
{
    char ts[32];
    json_t *doc = json_loads(c->body, 0, NULL);

    time_format_iso(c->created_at, ts);
    return json_pack("{s:s,s:s,s:i,s:s,s:s,s:o}", "name", c->name, "kind", c->kind, "version",
                     c->version, "created_at", ts, "created_by", c->created_by, "contract",
                     doc ? doc : json_null());
}

int contract_records_each(struct store *st, const char *name, store_contract_fn fn, void *ctx,
                          struct err *e)
{
    return name ? store_contract_versions(st, name, fn, ctx, e)
                : store_contracts_latest(st, fn, ctx, e);
}

static int add_record(void *ctx, const struct store_contract *c)
{
    json_array_append_new(ctx, contract_record_json(c));
    return 0;
}

int contract_records_json(struct store *st, const char *name, json_t **items, struct err *e)
{
    int rc;

    *items = json_array();
    rc = contract_records_each(st, name, add_record, *items, e);
    if (rc) {
        json_decref(*items);
        *items = NULL;
    }
    return rc;
}
