/* core/jtree.c -- a JSON document read into an arena (jtree.h).
 *
 * DESIGN: a recursive descent over the text. A container's children are parsed onto
 * a scratch stack shared by the whole document and copied into the arena when the
 * container closes, so each array and object is one arena block of known size. A
 * string without escapes is copied as it is (after its UTF-8 is checked); one with
 * escapes is decoded. Numbers are read as jansson reads them (strtoll, strtod) so the
 * values, and the errors for integers or reals out of range, are the same. */
#include "jtree.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define JT_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

struct parser {
    struct arena *a;
    const char *text, *p, *end;
    struct jt_error *err;
    struct jt *items; /* the scratch stacks */
    size_t nitems, capitems;
    struct jt_member *members;
    size_t nmembers, capmembers;
    struct buf sbuf; /* an escaped string being decoded */
    int depth;
    size_t values;        /* read so far, against the limits */
    int at_list;          /* the next value is the top object's items_key member */
    struct jt_limits lim; /* 0: no limit */
};

static int fail(struct parser *ps, const char *msg)
{
    const char *q;
    int line = 1, col = 1;

    for (q = ps->text; q < ps->p && q < ps->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    ps->err->line = line;
    ps->err->column = col;
    snprintf(ps->err->text, sizeof ps->err->text, "%s", msg);
    return E_INVAL;
}

/* A limit passed (list: the capped list's name; NULL: the values): reading stops there,
 * before the document is read whole. */
static int too_big(struct parser *ps, const char *list, size_t n)
{
    fail(ps, "");
    if (list)
        snprintf(ps->err->text, sizeof ps->err->text, "\"%s\" holds more than %zu items", list, n);
    else
        snprintf(ps->err->text, sizeof ps->err->text, "the document holds more than %zu values", n);
    return E_TOOBIG;
}

static void skip_ws(struct parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int hex4(const char *p, unsigned *out)
{
    int i;

    *out = 0;
    for (i = 0; i < 4; i++) {
        char c = p[i];
        unsigned v = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16;
        if (v == 16)
            return -1;
        *out = *out << 4 | v;
    }
    return 0;
}

/* A string at ps->p (the opening quote): its decoded bytes into the arena. */
static int parse_string(struct parser *ps, const char **out, uint32_t *outlen)
{
    const char *start = ++ps->p, *run;
    int high = 0;

    /* The common case: no escape. */
    while (ps->p < ps->end) {
        unsigned char c = (unsigned char)*ps->p;
        if (c == '"' || c == '\\' || c < 0x20)
            break;
        high |= c & 0x80;
        ps->p++;
    }
    if (ps->p >= ps->end)
        return fail(ps, "premature end of input in a string");
    if (*ps->p == '"') {
        size_t n = (size_t)(ps->p - start);
        if (high && !utf8_valid(start, n))
            return fail(ps, "invalid UTF-8 in a string");
        if (n > UINT32_MAX)
            return fail(ps, "string too long");
        *out = arena_strndup(ps->a, start, n);
        *outlen = (uint32_t)n;
        ps->p++;
        return 0;
    }
    /* Escapes: decoded into sbuf, run by run. */
    buf_reset(&ps->sbuf);
    run = start;
    for (;;) {
        unsigned char c;
        if (ps->p >= ps->end)
            return fail(ps, "premature end of input in a string");
        c = (unsigned char)*ps->p;
        if (c == '"' || c == '\\' || c < 0x20) {
            if (high && !utf8_valid(run, (size_t)(ps->p - run)))
                return fail(ps, "invalid UTF-8 in a string");
            buf_add(&ps->sbuf, run, (size_t)(ps->p - run));
            high = 0;
        } else {
            high |= c & 0x80;
            ps->p++;
            continue;
        }
        if (c == '"')
            break;
        if (c < 0x20)
            return fail(ps, "control character in a string");
        /* a backslash */
        if (ps->p + 1 >= ps->end)
            return fail(ps, "premature end of input in a string");
        c = (unsigned char)ps->p[1];
        ps->p += 2;
        switch (c) {
        case '"':
        case '\\':
        case '/':
            buf_addc(&ps->sbuf, (char)c);
            break;
        case 'b':
            buf_addc(&ps->sbuf, '\b');
            break;
        case 'f':
            buf_addc(&ps->sbuf, '\f');
            break;
        case 'n':
            buf_addc(&ps->sbuf, '\n');
            break;
        case 'r':
            buf_addc(&ps->sbuf, '\r');
            break;
        case 't':
            buf_addc(&ps->sbuf, '\t');
            break;
        case 'u': {
            unsigned cp, lo;
            char u[4];
            if (ps->end - ps->p < 4 || hex4(ps->p, &cp))
                return fail(ps, "invalid \\u escape");
            ps->p += 4;
            if (cp == 0)
                return fail(ps, "\\u0000 is not allowed");
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return fail(ps, "invalid Unicode: a lone low surrogate");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
                    hex4(ps->p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return fail(ps, "invalid Unicode: a high surrogate without its pair");
                ps->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            buf_add(&ps->sbuf, u, utf8_put(u, cp));
            break;
        }
        default:
            ps->p--;
            return fail(ps, "invalid escape in a string");
        }
        run = ps->p;
    }
    if (ps->sbuf.len > UINT32_MAX)
        return fail(ps, "string too long");
    *out = arena_strndup(ps->a, ps->sbuf.p ? ps->sbuf.p : "", ps->sbuf.len);
    *outlen = (uint32_t)ps->sbuf.len;
    ps->p++;
    return 0;
}

static int is_digit(const char *p, const char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

static int parse_number(struct parser *ps, struct jt *v)
{
    const char *s = ps->p, *q = s;
    char tmp[64], *num = tmp, *endp;
    int real = 0;
    size_t n;

    if (q < ps->end && *q == '-')
        q++;
    if (!is_digit(q, ps->end))
        return fail(ps, "invalid token");
    if (*q == '0') {
        q++;
        if (is_digit(q, ps->end))
            return fail(ps, "invalid token: a number with a leading zero");
    } else {
        while (is_digit(q, ps->end))
            q++;
    }
    if (q < ps->end && *q == '.') {
        q++;
        if (!is_digit(q, ps->end))
            return fail(ps, "invalid token: a number without digits after '.'");
        while (is_digit(q, ps->end))
            q++;
        real = 1;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < ps->end && (*q == '+' || *q == '-'))
            q++;
        if (!is_digit(q, ps->end))
            return fail(ps, "invalid token: an exponent without digits");
        while (is_digit(q, ps->end))
            q++;
        real = 1;
    }
    n = (size_t)(q - s);
    if (n >= sizeof tmp)
        num = arena_alloc(ps->a, n + 1);
    memcpy(num, s, n);
    num[n] = '\0';
    errno = 0;
    if (real) {
        v->type = JT_REAL;
        v->u.d = strtod(num, &endp);
        if ((v->u.d == HUGE_VAL || v->u.d == -HUGE_VAL) && errno == ERANGE)
            return fail(ps, "real number overflow");
    } else {
        v->type = JT_INT;
        v->u.i = strtoll(num, &endp, 10);
        if (errno == ERANGE)
            return fail(ps, v->u.i < 0 ? "too big negative integer" : "too big integer");
    }
    ps->p = q;
    return 0;
}

static int parse_value(struct parser *ps, struct jt *v);

static int parse_array(struct parser *ps, struct jt *v)
{
    size_t base = ps->nitems, n;
    struct jt item;
    int rc, list = ps->at_list; /* the top object's items_key member: capped */

    ps->at_list = 0;

    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        goto done;
    }
    for (;;) {
        rc = parse_value(ps, &item);
        if (rc)
            return rc;
        if (list && ps->nitems - base >= ps->lim.max_items)
            return too_big(ps, ps->lim.items_key, ps->lim.max_items);
        if (ps->nitems == ps->capitems) {
            ps->capitems = ps->capitems ? ps->capitems * 2 : 64;
            ps->items = xrealloc(ps->items, ps->capitems * sizeof *ps->items);
        }
        ps->items[ps->nitems++] = item;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            break;
        }
        return fail(ps, ps->p < ps->end ? "']' expected" : "premature end of input");
    }
done:
    n = ps->nitems - base;
    v->type = JT_ARR;
    v->n = (uint32_t)n;
    v->u.items = n ? arena_alloc(ps->a, n * sizeof *v->u.items) : NULL;
    if (n)
        memcpy(v->u.items, ps->items + base, n * sizeof *v->u.items);
    ps->nitems = base;
    return 0;
}

static int parse_object(struct parser *ps, struct jt *v)
{
    size_t base = ps->nmembers, n;
    struct jt_member m;
    int rc;

    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        goto done;
    }
    for (;;) {
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"')
            return fail(ps, ps->p < ps->end ? "string or '}' expected" : "premature end of input");
        rc = parse_string(ps, &m.key, &m.klen);
        if (rc)
            return rc;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':')
            return fail(ps, ps->p < ps->end ? "':' expected" : "premature end of input");
        ps->p++;
        ps->at_list = ps->depth == 1 && ps->lim.items_key && ps->lim.max_items &&
                      strcmp(m.key, ps->lim.items_key) == 0;
        rc = parse_value(ps, &m.v);
        ps->at_list = 0;
        if (rc)
            return rc;
        if (ps->nmembers == ps->capmembers) {
            ps->capmembers = ps->capmembers ? ps->capmembers * 2 : 64;
            ps->members = xrealloc(ps->members, ps->capmembers * sizeof *ps->members);
        }
        ps->members[ps->nmembers++] = m;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            break;
        }
        return fail(ps, ps->p < ps->end ? "'}' expected" : "premature end of input");
    }
done:
    n = ps->nmembers - base;
    v->type = JT_OBJ;
    v->n = (uint32_t)n;
    v->u.members = n ? arena_alloc(ps->a, n * sizeof *v->u.members) : NULL;
    if (n)
        memcpy(v->u.members, ps->members + base, n * sizeof *v->u.members);
    ps->nmembers = base;
    return 0;
}

static int literal(struct parser *ps, const char *word, enum jt_type type, struct jt *v)
{
    size_t n = strlen(word);

    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, "invalid token");
    ps->p += n;
    v->type = type;
    return 0;
}

static int parse_value(struct parser *ps, struct jt *v)
{
    int rc;

    skip_ws(ps);
    memset(v, 0, sizeof *v);
    v->src = ps->p;
    if (ps->p >= ps->end)
        return fail(ps, "premature end of input");
    if (ps->lim.max_values && ++ps->values > ps->lim.max_values)
        return too_big(ps, NULL, ps->lim.max_values);
    /* jansson counts a scalar as one level too: 2048 arrays around a number are too deep */
    if (*ps->p != '{' && *ps->p != '[' && ps->depth + 1 > JT_MAX_DEPTH)
        return fail(ps, "maximum parsing depth reached");
    switch (*ps->p) {
    case '{':
    case '[':
        if (++ps->depth > JT_MAX_DEPTH)
            return fail(ps, "maximum parsing depth reached");
        rc = *ps->p == '{' ? parse_object(ps, v) : parse_array(ps, v);
        ps->depth--;
        break;
    case '"':
        v->type = JT_STR;
        rc = parse_string(ps, &v->u.s, &v->n);
        break;
    case 't':
        rc = literal(ps, "true", JT_TRUE, v);
        break;
    case 'f':
        rc = literal(ps, "false", JT_FALSE, v);
        break;
    case 'n':
        rc = literal(ps, "null", JT_NULL, v);
        break;
    default:
        rc = parse_number(ps, v);
    }
    v->srclen = (size_t)(ps->p - v->src);
    return rc;
}

int jt_parse(struct arena *a, const char *text, size_t len, struct jt **out, struct jt_error *err)
{
    return jt_parse_limited(a, text, len, NULL, out, err);
}

int jt_parse_limited(struct arena *a, const char *text, size_t len, const struct jt_limits *lim,
                     struct jt **out, struct jt_error *err)
{
    struct parser ps = {.a = a, .text = text, .p = text, .end = text + len, .err = err};
    struct jt *v = arena_alloc(a, sizeof *v);
    int rc;

    *out = NULL;
    memset(err, 0, sizeof *err);
    if (lim)
        ps.lim = *lim;
    buf_init(&ps.sbuf);
    skip_ws(&ps);
    if (ps.p >= ps.end || (*ps.p != '{' && *ps.p != '['))
        rc = fail(&ps, ps.p < ps.end ? "'[' or '{' expected" : "premature end of input");
    else
        rc = parse_value(&ps, v);
    if (rc == 0) {
        skip_ws(&ps);
        if (ps.p < ps.end)
            rc = fail(&ps, "end of file expected");
    }
    free(ps.items);
    free(ps.members);
    buf_release(&ps.sbuf);
    if (rc == 0)
        *out = v;
    return rc;
}

const struct jt *jt_get(const struct jt *obj, const char *key)
{
    uint32_t i;

    if (obj == NULL || obj->type != JT_OBJ)
        return NULL;
    for (i = obj->n; i-- > 0;)
        if (strcmp(obj->u.members[i].key, key) == 0)
            return &obj->u.members[i].v;
    return NULL;
}

const char *jt_str(const struct jt *obj, const char *key)
{
    const struct jt *v = jt_get(obj, key);

    return v && v->type == JT_STR ? v->u.s : NULL;
}

/* ---- output ---------------------------------------------------------------------- */

/* As jansson's dump_string: \" \\ \b \f \n \r \t, other controls as \u00XX, the rest
 * as it is. */
static void dump_string(struct buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, run = 0;

    buf_addc(out, '"');
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t k = 2;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_add(out, s + run, i - run);
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            k = 6;
        }
        buf_add(out, esc, k);
    }
    buf_add(out, s + run, n - run);
    buf_addc(out, '"');
}

/* As jansson's jsonp_dtostr with its default precision: %.17g, ".0" added when the
 * text would read as an integer, the exponent without '+' or leading zeros. */
static void dump_real(struct buf *out, double d)
{
    char t[40], *e, *start, *end;
    size_t n = (size_t)snprintf(t, sizeof t - 3, "%.17g", d);

    if (strchr(t, '.') == NULL && strchr(t, 'e') == NULL) {
        memcpy(t + n, ".0", 3);
        n += 2;
    }
    e = strchr(t, 'e');
    if (e) {
        start = e + 1;
        end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, n - (size_t)(end - t) + 1);
            n -= (size_t)(end - start);
        }
    }
    buf_add(out, t, n);
}

static int cmp_member(const void *a, const void *b)
{
    const struct jt_member *x = *(const struct jt_member *const *)a;
    const struct jt_member *y = *(const struct jt_member *const *)b;
    int c = strcmp(x->key, y->key);

    /* Equal keys: document order, so the last of a run is the one jansson kept. */
    return c ? c : (x < y ? -1 : x > y);
}

static void dump(struct buf *out, const struct jt *v, int flags)
{
    uint32_t i, k;

    switch (v->type) {
    case JT_NULL:
        buf_add(out, "null", 4);
        break;
    case JT_FALSE:
        buf_add(out, "false", 5);
        break;
    case JT_TRUE:
        buf_add(out, "true", 4);
        break;
    case JT_INT:
        buf_printf(out, "%lld", v->u.i);
        break;
    case JT_REAL:
        dump_real(out, v->u.d);
        break;
    case JT_STR:
        dump_string(out, v->u.s, v->n);
        break;
    case JT_ARR:
        buf_addc(out, '[');
        for (i = 0; i < v->n; i++) {
            if (i)
                buf_addc(out, ',');
            dump(out, &v->u.items[i], 0);
        }
        buf_addc(out, ']');
        break;
    case JT_OBJ: {
        const struct jt_member *small[16], **m = v->n <= 16 ? small : xmalloc(v->n * sizeof *m);
        int first = 1;
        for (i = 0; i < v->n; i++)
            m[i] = &v->u.members[i];
        qsort(m, v->n, sizeof *m, cmp_member);
        buf_addc(out, '{');
        for (i = 0; i < v->n; i = k) {
            for (k = i + 1; k < v->n && strcmp(m[k]->key, m[i]->key) == 0; k++)
                ;
            /* m[k - 1]: the last of the keys equal to m[i]'s */
            if ((flags & JT_DROP_NULLS) && m[k - 1]->v.type == JT_NULL)
                continue;
            if (!first)
                buf_addc(out, ',');
            first = 0;
            dump_string(out, m[k - 1]->key, m[k - 1]->klen);
            buf_addc(out, ':');
            dump(out, &m[k - 1]->v, 0);
        }
        buf_addc(out, '}');
        if (m != small)
            free(m);
        break;
    }
    }
}

void jt_dump(struct buf *out, const struct jt *v, int flags)
{
    dump(out, v, flags);
}

/* The value as jansson; with dup set, the first member whose key its object already
 * had stops the conversion (NULL returned, *dup pointing at it). */
static json_t *to_json(const struct jt *v, const struct jt_member **dup)
{
    json_t *j, *c;
    uint32_t i;

    switch (v->type) {
    case JT_NULL:
        return json_null();
    case JT_FALSE:
        return json_false();
    case JT_TRUE:
        return json_true();
    case JT_INT:
        return json_integer(v->u.i);
    case JT_REAL:
        return json_real(v->u.d);
    case JT_STR:
        return json_stringn_nocheck(v->u.s, v->n);
    case JT_ARR:
        j = json_array();
        for (i = 0; i < v->n; i++) {
            if ((c = to_json(&v->u.items[i], dup)) == NULL) {
                json_decref(j);
                return NULL;
            }
            json_array_append_new(j, c);
        }
        return j;
    case JT_OBJ:
        j = json_object();
        for (i = 0; i < v->n; i++) {
            const struct jt_member *m = &v->u.members[i];
            if (dup && json_object_get(j, m->key)) {
                *dup = m;
                json_decref(j);
                return NULL;
            }
            if ((c = to_json(&m->v, dup)) == NULL) {
                json_decref(j);
                return NULL;
            }
            json_object_set_new_nocheck(j, m->key, c);
        }
        return j;
    }
    return json_null();
}

json_t *jt_json(const struct jt *v)
{
    return to_json(v, NULL);
}

json_t *jt_json_unique(const struct jt *v, const char *text, struct jt_error *err)
{
    const struct jt_member *dup = NULL;
    json_t *j = to_json(v, &dup);

    if (j == NULL) {
        struct parser ps = {.text = text, .p = dup->v.src, .end = dup->v.src, .err = err};
        char msg[120];
        snprintf(msg, sizeof msg, "duplicate object key \"%.*s\"",
                 (int)utf8_prefix(dup->key, dup->klen, 60), dup->key);
        fail(&ps, msg);
    }
    return j;
}
