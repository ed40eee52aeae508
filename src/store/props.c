/* store/props.c -- reads chosen top-level members of a stored JSON object without
 * building it: the property scans behind `where` filters read millions of them.
 *
 * DESIGN: one pass over the text. Keys and string values without a backslash are
 * compared and returned in place; escaped ones are decoded into a scratch buffer.
 * Nested objects and arrays are skipped by depth, strings inside them respected.
 * The first occurrence of a key counts (SQLite's json_extract agrees). Text that is
 * not a JSON object, or stops being one, leaves the members not yet found absent:
 * never a read past the terminating NUL. tests/unit/events.c compares it with jansson
 * on random objects, tests/fuzz/props.c with anything. */
#include <stdlib.h>
#include <string.h>

#include "store.h"

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static int hex4(const char *p, unsigned *out)
{
    int i, v;

    *out = 0;
    for (i = 0; i < 4; i++) {
        if ((v = hexval(p[i])) < 0)
            return -1;
        *out = *out << 4 | (unsigned)v;
    }
    return 0;
}

/* p is just past an opening quote. Finds the closing one: *end just past it, *esc
 * whether a backslash occurs. NULL if the text ends first. */
static const char *string_end(const char *p, int *esc)
{
    *esc = 0;
    for (; *p; p++) {
        if (*p == '"')
            return p + 1;
        if (*p == '\\') {
            *esc = 1;
            if (*++p == '\0')
                return NULL;
        }
    }
    return NULL;
}

/* Decodes the escaped string [p, q) (q at its closing quote) onto b; -1 if invalid. */
static int unescape(const char *p, const char *q, struct buf *b)
{
    unsigned cp, lo;

    while (p < q) {
        const char *s = p;
        while (p < q && *p != '\\')
            p++;
        buf_add(b, s, (size_t)(p - s));
        if (p == q)
            break;
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
            buf_addc(b, p[1]);
            break;
        case 'b':
            buf_addc(b, '\b');
            break;
        case 'f':
            buf_addc(b, '\f');
            break;
        case 'n':
            buf_addc(b, '\n');
            break;
        case 'r':
            buf_addc(b, '\r');
            break;
        case 't':
            buf_addc(b, '\t');
            break;
        case 'u':
            if (q - p < 6 || hex4(p + 2, &cp))
                return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (q - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, &lo) || lo < 0xDC00 ||
                    lo > 0xDFFF)
                    return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -1;
            }
            {
                char u[4];
                buf_add(b, u, utf8_put(u, cp));
            }
            p += 4;
            break;
        default:
            return -1;
        }
        p += 2;
    }
    return 0;
}

/* Skips one value of any kind; NULL if malformed. */
static const char *skip_value(const char *p)
{
    int depth = 0, esc;

    do {
        p = ws(p);
        switch (*p) {
        case '"':
            if ((p = string_end(p + 1, &esc)) == NULL)
                return NULL;
            break;
        case '{':
        case '[':
            depth++;
            p++;
            break;
        case '}':
        case ']':
            if (depth == 0)
                return NULL;
            depth--;
            p++;
            break;
        case ',':
        case ':':
            if (depth == 0)
                return NULL;
            p++;
            break;
        case '\0':
            return NULL;
        default: /* a number or a literal: up to a delimiter */
            while (*p && !strchr(" \t\r\n,:]}[{\"", *p))
                p++;
        }
    } while (depth > 0);
    return p;
}

int store_props_find(const char *json, const char *const *names, int n,
                     struct store_prop_value *out, struct buf *scratch)
{
    size_t off[STORE_MAX_PROPS];
    int i, found = 0, is_scratch[STORE_MAX_PROPS] = {0};
    const char *p = ws(json);

    ASSERT(n >= 1 && n <= STORE_MAX_PROPS);
    buf_reset(scratch);
    for (i = 0; i < n; i++)
        memset(&out[i], 0, sizeof out[i]);
    if (*p != '{')
        return 0;
    p = ws(p + 1);
    if (*p == '}')
        return 0;
    while (found < n) {
        const char *k, *kend, *v;
        size_t klen, keyoff = 0;
        int esc, which = -1;

        if (*p != '"')
            break;
        k = p + 1;
        if ((kend = string_end(k, &esc)) == NULL)
            break;
        klen = (size_t)(kend - 1 - k);
        if (esc) {
            keyoff = scratch->len;
            if (unescape(k, kend - 1, scratch))
                break;
            klen = scratch->len - keyoff;
        }
        for (i = 0; i < n; i++) {
            const char *key = esc ? scratch->p + keyoff : k;
            if (out[i].kind == STORE_PROP_OTHER && !out[i].text && strlen(names[i]) == klen &&
                memcmp(names[i], key, klen) == 0) {
                which = i;
                break;
            }
        }
        if (esc)
            scratch->len = keyoff; /* the key is no longer needed */
        p = ws(kend);
        if (*p != ':')
            break;
        v = ws(p + 1);
        if (which >= 0) {
            struct store_prop_value *o = &out[which];
            found++;
            o->text = ""; /* marks it found, whatever its kind */
            if (*v == '"') {
                const char *vend = string_end(v + 1, &esc);
                if (vend == NULL)
                    break;
                o->kind = STORE_PROP_TEXT;
                if (esc) {
                    off[which] = scratch->len;
                    if (unescape(v + 1, vend - 1, scratch)) {
                        o->kind = STORE_PROP_OTHER; /* not a valid string: absent */
                        break;
                    }
                    o->len = scratch->len - off[which];
                    is_scratch[which] = 1;
                } else {
                    o->text = v + 1;
                    o->len = (size_t)(vend - 1 - (v + 1));
                }
                p = vend;
            } else if (strncmp(v, "true", 4) == 0) {
                o->kind = STORE_PROP_TRUE;
                p = v + 4;
            } else if (strncmp(v, "false", 5) == 0) {
                o->kind = STORE_PROP_FALSE;
                p = v + 5;
            } else if (*v == '-' || (*v >= '0' && *v <= '9')) {
                char *end;
                o->kind = STORE_PROP_NUMBER;
                o->num = strtod(v, &end);
                p = end;
            } else if ((p = skip_value(v)) == NULL) {
                break; /* null, an object or an array: absent to a scan */
            }
        } else if ((p = skip_value(v)) == NULL) {
            break;
        }
        p = ws(p);
        if (*p == ',')
            p = ws(p + 1);
        else
            break; /* '}' or garbage: done either way */
    }
    /* Decoded texts point into scratch only now that it has stopped moving. */
    for (i = 0; i < n; i++) {
        int j;
        if (is_scratch[i] && out[i].kind == STORE_PROP_TEXT)
            out[i].text = scratch->p + off[i];
        else if (out[i].kind != STORE_PROP_TEXT) {
            out[i].text = NULL;
            out[i].len = 0;
        }
        for (j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0) {
                out[i] = out[j]; /* a name asked twice */
                break;
            }
    }
    return found;
}
