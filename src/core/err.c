/* core/err.c -- error recording, allocation that never fails, growable buffers. */
#include "core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int err_set(struct err *e, int code, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    if (e == NULL || e->code != 0)
        return code;
    e->code = code;
    e->file = file;
    e->line = line;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    utf8_sanitize(e->msg);
    return code;
}

int err_set_field(struct err *e, int code, const char *file, int line, const char *field,
                  const char *fmt, ...)
{
    va_list ap;

    if (e == NULL || e->code != 0)
        return code;
    e->code = code;
    e->file = file;
    e->line = line;
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    utf8_sanitize(e->field);
    utf8_sanitize(e->msg);
    return code;
}

void err_clear(struct err *e)
{
    memset(e, 0, sizeof *e);
}

const char *err_code_name(int code)
{
    switch (code) {
    case E_OK:
        return "ok";
    case E_NOMEM:
        return "out_of_memory";
    case E_IO:
        return "io_error";
    case E_INVAL:
        return "invalid";
    case E_NOTFOUND:
        return "not_found";
    case E_CONFLICT:
        return "conflict";
    case E_BUSY:
        return "busy";
    case E_TOOBIG:
        return "too_big";
    case E_CORRUPT:
        return "corrupt";
    case E_AUTH:
        return "unauthorized";
    case E_FORBIDDEN:
        return "forbidden";
    default:
        return "internal";
    }
}

void core_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "engage: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

static void oom(size_t n)
{
    fprintf(stderr, "engage: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    struct buf b;
    va_list ap;

    buf_init(&b);
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    return buf_take(&b);
}

void buf_init(struct buf *b)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_release(struct buf *b)
{
    free(b->p);
    buf_init(b);
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

static void buf_grow(struct buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    size_t cap;

    if (need <= b->cap)
        return;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

void buf_add(struct buf *b, const void *p, size_t n)
{
    buf_grow(b, n);
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void buf_adds(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

void buf_addc(struct buf *b, char c)
{
    buf_add(b, &c, 1);
}

void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    int n;

    va_copy(cp, ap);
    n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    ASSERT(n >= 0);
    buf_grow(b, (size_t)n);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

char *buf_take(struct buf *b)
{
    char *p;

    if (b->p == NULL)
        buf_grow(b, 0), b->p[0] = '\0';
    p = b->p;
    buf_init(b);
    return p;
}

/* Length of the valid UTF-8 sequence at s (up to n bytes), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len, i;
    unsigned cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

void utf8_sanitize(char *s)
{
    utf8_sanitize_n(s, strlen(s));
}

void utf8_sanitize_n(char *s, size_t n)
{
    size_t i = 0, k;

    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0) {
            s[i++] = '?';
            continue;
        }
        i += k;
    }
}

int utf8_valid(const char *s, size_t n)
{
    size_t i = 0, k;

    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

size_t utf8_put(char out[4], unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t utf8_prefix(const char *s, size_t n, size_t max)
{
    size_t i = 0, k;

    while (i < n) {
        k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0)
            k = 1;
        if (i + k > max)
            break;
        i += k;
    }
    return i;
}

void buf_add_json_str(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0, run;

    buf_grow(b, n + 2);
    buf_addc(b, '"');
    while (i < n) {
        /* Copy the longest run that needs no escaping in one go. */
        for (run = i; run < n; run++) {
            unsigned char c = (unsigned char)s[run];
            if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80)
                break;
        }
        if (run > i) {
            buf_add(b, s + i, run - i);
            i = run;
            continue;
        }
        {
            unsigned char c = (unsigned char)s[i];
            if (c >= 0x80) {
                size_t k = utf8_seq((const unsigned char *)s + i, n - i);
                if (k == 0) {
                    buf_add(b, "\\ufffd", 6);
                    i++;
                } else {
                    buf_add(b, s + i, k);
                    i += k;
                }
                continue;
            }
            switch (c) {
            case '"':
                buf_add(b, "\\\"", 2);
                break;
            case '\\':
                buf_add(b, "\\\\", 2);
                break;
            case '\n':
                buf_add(b, "\\n", 2);
                break;
            case '\r':
                buf_add(b, "\\r", 2);
                break;
            case '\t':
                buf_add(b, "\\t", 2);
                break;
            default: {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                buf_add(b, esc, 6);
            }
            }
            i++;
        }
    }
    buf_addc(b, '"');
}
