/* campaign/template.c -- the template language: compile once, render per message.
 *
 * DESIGN: compiling walks the source once, left to right, keeping the line and
 * column (1-based; a column counts characters, not bytes) so that the first problem
 * is reported where it is, as a sentence. The result is an array of parts pointing
 * into the template's own copy of the source (text runs) or holding a token's name
 * and its filters (default's argument unescaped, once). Rendering appends each
 * value to the output buffer and then works on it in place: the case filters keep
 * the byte length (only mappings between two-byte letters, or between ASCII
 * letters, are made), default replaces an empty tail, HEADER cleaning rewrites
 * bytes, and HTML escaping grows the tail and expands it backwards. So a render
 * allocates nothing but the buffer's growth, and a template is read-only while it
 * renders (threads may share it). Language: docs/templates.md. */
#include <stdlib.h>
#include <string.h>

#include "campaign.h"

enum filter_kind { FILTER_DEFAULT, FILTER_UPCASE, FILTER_DOWNCASE, FILTER_CAPITALIZE };

static const char *const filter_names[] = {"default", "upcase", "downcase", "capitalize"};

struct filter {
    enum filter_kind kind;
    char *arg; /* default's text, unescaped; NULL for the others */
    size_t arg_len;
};

struct part {
    int is_token;
    size_t off, len; /* text run: bytes of the template's source copy */
    char *name;      /* token */
    int has_default; /* token: one of its filters is default */
    struct filter *filters;
    int nfilters;
};

struct template
{
    char *src; /* copy of the source: text runs point into it */
    struct part *parts;
    size_t nparts, cap;
    size_t ntokens;
    size_t *tokens; /* index into parts of each token, in order */
};

/* ---- compiling ---------------------------------------------------------------------- */

struct cursor {
    const char *s;
    size_t n, i;
    int line, col;
};

static void cur_next(struct cursor *c)
{
    if (c->i >= c->n)
        return;
    if (c->s[c->i] == '\n') {
        c->line++;
        c->col = 1;
    } else if (((unsigned char)c->s[c->i] & 0xC0) != 0x80) {
        c->col++;
    }
    c->i++;
    /* a continuation byte does not start a character: its column stays */
}

static int cur_at(const struct cursor *c, const char *lit)
{
    size_t k = strlen(lit);

    return c->n - c->i >= k && memcmp(c->s + c->i, lit, k) == 0;
}

static int cur_eof(const struct cursor *c)
{
    return c->i >= c->n;
}

static void cur_skip_ws(struct cursor *c)
{
    while (!cur_eof(c) &&
           (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' || c->s[c->i] == '\r'))
        cur_next(c);
}

static int is_name_start(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_';
}

static int is_name_char(char ch)
{
    return is_name_start(ch) || (ch >= '0' && ch <= '9');
}

/* What is found at c, for a message: one character (whole, if multibyte) in quotes. */
static void found_text(const struct cursor *c, char out[24])
{
    size_t k = 1;

    if (cur_eof(c)) {
        snprintf(out, 24, "the end");
        return;
    }
    while (c->i + k < c->n && k < 4 && ((unsigned char)c->s[c->i + k] & 0xC0) == 0x80)
        k++;
    if ((unsigned char)c->s[c->i] < 0x20)
        snprintf(out, 24, "a control character");
    else
        snprintf(out, 24, "'%.*s'", (int)k, c->s + c->i);
}

static struct part *part_add(struct template *t)
{
    struct part *p;

    if (t->nparts == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->parts = xrealloc(t->parts, t->cap * sizeof *t->parts);
    }
    p = &t->parts[t->nparts++];
    memset(p, 0, sizeof *p);
    return p;
}

/* A quoted string at c (its opening quote) into *out (caller frees). */
static int parse_string(struct cursor *c, char **out, size_t *out_len, struct err *e)
{
    char q = c->s[c->i];
    int line = c->line, col = c->col;
    struct buf b;

    buf_init(&b);
    cur_next(c);
    while (!cur_eof(c) && c->s[c->i] != q) {
        if (c->s[c->i] == '\\' && c->i + 1 < c->n &&
            (c->s[c->i + 1] == '"' || c->s[c->i + 1] == '\'' || c->s[c->i + 1] == '\\'))
            cur_next(c);
        buf_addc(&b, c->s[c->i]);
        cur_next(c);
    }
    if (cur_eof(c)) {
        buf_release(&b);
        return ERR(e, E_INVAL, "line %d, column %d: the string is not closed by %c", line, col, q);
    }
    cur_next(c);
    *out_len = b.len;
    *out = buf_take(&b);
    return 0;
}

static int parse_filter(struct cursor *c, struct part *p, int open_line, int open_col,
                        struct err *e)
{
    struct filter *f;
    int line, col, k;
    size_t start;
    char found[24];

    cur_skip_ws(c);
    if (cur_eof(c))
        return ERR(e, E_INVAL, "line %d, column %d: '{{' is not closed by '}}'", open_line,
                   open_col);
    line = c->line;
    col = c->col;
    if (!is_name_start(c->s[c->i])) {
        found_text(c, found);
        return ERR(e, E_INVAL, "line %d, column %d: expected a filter name after '|', found %s",
                   line, col, found);
    }
    if (p->nfilters == TEMPLATE_MAX_FILTERS)
        return ERR(e, E_TOOBIG, "line %d, column %d: a token may have at most %d filters", line,
                   col, TEMPLATE_MAX_FILTERS);
    start = c->i;
    while (!cur_eof(c) && is_name_char(c->s[c->i]))
        cur_next(c);
    for (k = 0; k < 4; k++)
        if (strlen(filter_names[k]) == c->i - start &&
            memcmp(filter_names[k], c->s + start, c->i - start) == 0)
            break;
    if (k == 4)
        return ERR(e, E_INVAL,
                   "line %d, column %d: unknown filter '%.*s' (filters: default, upcase, "
                   "downcase, capitalize)",
                   line, col, (int)(c->i - start > 64 ? 64 : c->i - start), c->s + start);
    f = &p->filters[p->nfilters++];
    f->kind = (enum filter_kind)k;
    cur_skip_ws(c);
    if (f->kind != FILTER_DEFAULT) {
        if (!cur_eof(c) && c->s[c->i] == ':')
            return ERR(e, E_INVAL, "line %d, column %d: filter '%s' takes no argument", c->line,
                       c->col, filter_names[k]);
        return 0;
    }
    p->has_default = 1;
    if (cur_eof(c))
        return ERR(e, E_INVAL, "line %d, column %d: '{{' is not closed by '}}'", open_line,
                   open_col);
    if (c->s[c->i] != ':')
        return ERR(e, E_INVAL,
                   "line %d, column %d: filter 'default' needs an argument, as in default: "
                   "\"text\"",
                   c->line, c->col);
    cur_next(c);
    cur_skip_ws(c);
    if (cur_eof(c))
        return ERR(e, E_INVAL, "line %d, column %d: '{{' is not closed by '}}'", open_line,
                   open_col);
    if (c->s[c->i] != '"' && c->s[c->i] != '\'') {
        found_text(c, found);
        return ERR(e, E_INVAL,
                   "line %d, column %d: the argument of 'default' must be a string in quotes, "
                   "found %s",
                   c->line, c->col, found);
    }
    return parse_string(c, &f->arg, &f->arg_len, e);
}

/* One token; c is just past its "{{", at open_line:open_col. */
static int parse_token(struct template *t, struct cursor *c, int open_line, int open_col,
                       struct err *e)
{
    struct part *p;
    size_t start;
    int line, col, rc;
    char found[24];

    if (t->ntokens == TEMPLATE_MAX_TOKENS)
        return ERR(e, E_TOOBIG, "line %d, column %d: a template may have at most %d tokens",
                   open_line, open_col, TEMPLATE_MAX_TOKENS);
    cur_skip_ws(c);
    if (cur_eof(c))
        return ERR(e, E_INVAL, "line %d, column %d: '{{' is not closed by '}}'", open_line,
                   open_col);
    if (cur_at(c, "}}"))
        return ERR(e, E_INVAL,
                   "line %d, column %d: empty token: a name is needed between "
                   "'{{' and '}}'",
                   open_line, open_col);
    line = c->line;
    col = c->col;
    start = c->i;
    while (!cur_eof(c) && c->s[c->i] != ' ' && c->s[c->i] != '\t' && c->s[c->i] != '\n' &&
           c->s[c->i] != '\r' && c->s[c->i] != '|' && c->s[c->i] != '}')
        cur_next(c);
    if (c->i == start) {
        found_text(c, found);
        return ERR(e, E_INVAL,
                   "line %d, column %d: expected a name (a letter or _, then letters, digits "
                   "or _), found %s",
                   line, col, found);
    }
    for (size_t k = start; k < c->i; k++)
        if (!is_name_char(c->s[k]) || (k == start && !is_name_start(c->s[k])))
            return ERR(e, E_INVAL,
                       "line %d, column %d: '%.*s' is not a valid name (letters, digits and _, "
                       "not starting with a digit)",
                       line, col, (int)utf8_prefix(c->s + start, c->i - start, 64), c->s + start);
    if (c->i - start > TEMPLATE_MAX_NAME)
        return ERR(e, E_INVAL, "line %d, column %d: a name may have at most %d characters", line,
                   col, TEMPLATE_MAX_NAME);
    p = part_add(t);
    p->is_token = 1;
    p->name = xstrndup(c->s + start, c->i - start);
    p->filters = xcalloc(TEMPLATE_MAX_FILTERS, sizeof *p->filters);
    t->ntokens++;
    for (;;) {
        cur_skip_ws(c);
        if (cur_eof(c))
            return ERR(e, E_INVAL, "line %d, column %d: '{{' is not closed by '}}'", open_line,
                       open_col);
        if (cur_at(c, "}}")) {
            cur_next(c);
            cur_next(c);
            return 0;
        }
        if (c->s[c->i] != '|') {
            if (c->s[c->i] == '}' && c->i + 1 == c->n)
                return ERR(e, E_INVAL, "line %d, column %d: '{{' is not closed by '}}'", open_line,
                           open_col);
            found_text(c, found);
            return ERR(e, E_INVAL, "line %d, column %d: expected '|' or '}}', found %s", c->line,
                       c->col, found);
        }
        cur_next(c);
        rc = parse_filter(c, p, open_line, open_col, e);
        if (rc)
            return rc;
    }
}

int template_compile(struct template **out, const char *src, size_t len, struct err *e)
{
    struct template *t = NULL;
    struct cursor c = {.n = len, .line = 1, .col = 1};
    size_t text_start;
    int rc = 0, line, col;

    *out = NULL;
    if (len > TEMPLATE_MAX_SOURCE)
        return ERR(e, E_TOOBIG, "the template has %zu bytes; at most %d are allowed", len,
                   TEMPLATE_MAX_SOURCE);
    t = xcalloc(1, sizeof *t);
    t->src = xmalloc(len + 1);
    if (len)
        memcpy(t->src, src, len);
    t->src[len] = '\0';
    c.s = t->src;
    while (!cur_eof(&c)) {
        struct part *p;

        text_start = c.i;
        while (!cur_eof(&c) && !cur_at(&c, "{{"))
            cur_next(&c);
        if (c.i > text_start) {
            p = part_add(t);
            p->off = text_start;
            p->len = c.i - text_start;
        }
        if (cur_eof(&c))
            break;
        line = c.line;
        col = c.col;
        cur_next(&c);
        cur_next(&c);
        rc = parse_token(t, &c, line, col, e);
        if (rc)
            goto out;
    }
    t->tokens = xcalloc(t->ntokens ? t->ntokens : 1, sizeof *t->tokens);
    t->ntokens = 0;
    for (size_t i = 0; i < t->nparts; i++)
        if (t->parts[i].is_token)
            t->tokens[t->ntokens++] = i;
    *out = t;
    t = NULL;
out:
    template_free(t);
    return rc;
}

void template_free(struct template *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nparts; i++) {
        struct part *p = &t->parts[i];
        for (int k = 0; k < p->nfilters; k++)
            free(p->filters[k].arg);
        free(p->filters);
        free(p->name);
    }
    free(t->parts);
    free(t->tokens);
    free(t->src);
    free(t);
}

size_t template_token_count(const struct template *t)
{
    return t->ntokens;
}

const char *template_token_name(const struct template *t, size_t i)
{
    ASSERT(i < t->ntokens);
    return t->parts[t->tokens[i]].name;
}

int template_token_has_default(const struct template *t, size_t i)
{
    ASSERT(i < t->ntokens);
    return t->parts[t->tokens[i]].has_default;
}

int template_missing(const struct template *t,
                     const char *(*lookup)(void *ctx, const char *name, size_t *len), void *ctx)
{
    for (size_t i = 0; i < t->ntokens; i++) {
        const struct part *p = &t->parts[t->tokens[i]];
        size_t n = 0;
        if (p->has_default)
            continue;
        if (lookup(ctx, p->name, &n) == NULL || n == 0)
            return 1;
    }
    return 0;
}

/* ---- rendering ------------------------------------------------------------------------ */

/* Case mapping of the letters whose upper and lower forms have the same UTF-8 length:
 * ASCII, Latin-1 (U+00C0-U+00DE <-> U+00E0-U+00FE, but not x and ÷), basic Greek
 * (U+0391-U+03A9 <-> U+03B1-U+03C9, final sigma upcased to Σ) and basic Cyrillic
 * (U+0410-U+042F <-> U+0430-U+044F, U+0400-U+040F <-> U+0450-U+045F). Other
 * characters are left as they are (docs/templates.md). */
static unsigned cp_upper(unsigned cp)
{
    if (cp >= 'a' && cp <= 'z')
        return cp - 32;
    if (cp >= 0xE0 && cp <= 0xFE && cp != 0xF7)
        return cp - 32;
    if (cp >= 0x3B1 && cp <= 0x3C9 && cp != 0x3C2)
        return cp - 32;
    if (cp == 0x3C2)
        return 0x3A3;
    if (cp >= 0x430 && cp <= 0x44F)
        return cp - 32;
    if (cp >= 0x450 && cp <= 0x45F)
        return cp - 80;
    return cp;
}

static unsigned cp_lower(unsigned cp)
{
    if (cp >= 'A' && cp <= 'Z')
        return cp + 32;
    if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7)
        return cp + 32;
    if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2)
        return cp + 32;
    if (cp >= 0x410 && cp <= 0x42F)
        return cp + 32;
    if (cp >= 0x400 && cp <= 0x40F)
        return cp + 80;
    return cp;
}

/* Maps s[0..n) in place: mode 0 upcase, 1 downcase, 2 capitalize (the first character
 * up, the rest down). Only one- and two-byte characters change, into characters of the
 * same length; invalid bytes and longer sequences are stepped over whole. */
static void case_map(char *s, size_t n, int mode)
{
    size_t i = 0;
    int first = 1;

    while (i < n) {
        unsigned char c0 = (unsigned char)s[i];
        int up = mode == 0 || (mode == 2 && first);
        first = 0;
        if (c0 < 0x80) {
            s[i] = (char)(up ? cp_upper(c0) : cp_lower(c0));
            i++;
        } else if (c0 >= 0xC2 && c0 <= 0xDF && i + 1 < n &&
                   ((unsigned char)s[i + 1] & 0xC0) == 0x80) {
            unsigned cp = ((c0 & 0x1Fu) << 6) | ((unsigned char)s[i + 1] & 0x3Fu);
            unsigned m = up ? cp_upper(cp) : cp_lower(cp);
            if (m >= 0x80 && m < 0x800) {
                s[i] = (char)(0xC0 | m >> 6);
                s[i + 1] = (char)(0x80 | (m & 0x3F));
            }
            i += 2;
        } else {
            i++;
            while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
                i++;
        }
    }
}

static const char spaces[16] = "                ";

/* Grows out by extra bytes (their content undefined). */
static void buf_extend(struct buf *out, size_t extra)
{
    while (extra > 0) {
        size_t k = extra < sizeof spaces ? extra : sizeof spaces;
        buf_add(out, spaces, k);
        extra -= k;
    }
}

/* HTML-escapes out->p[start..] in place, growing it. */
static void escape_html_tail(struct buf *out, size_t start)
{
    size_t extra = 0, r, w, end = out->len;

    for (r = start; r < end; r++) {
        switch (out->p[r]) {
        case '&':
            extra += 4;
            break;
        case '<':
        case '>':
            extra += 3;
            break;
        case '"':
            extra += 5;
            break;
        case '\'':
            extra += 4;
            break;
        default:
            break;
        }
    }
    if (extra == 0)
        return;
    buf_extend(out, extra);
    w = out->len;
    for (r = end; r > start; r--) {
        const char *rep;
        size_t k;
        char ch = out->p[r - 1];
        switch (ch) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            out->p[--w] = ch;
            continue;
        }
        k = strlen(rep);
        w -= k;
        memcpy(out->p + w, rep, k);
    }
    ASSERT(w == start);
}

void html_escape_append(struct buf *out, const char *s)
{
    size_t start = out->len;

    buf_adds(out, s);
    escape_html_tail(out, start);
}

static void clean_header_tail(struct buf *out, size_t start)
{
    for (size_t i = start; i < out->len; i++)
        if ((unsigned char)out->p[i] < 0x20 || out->p[i] == 0x7F)
            out->p[i] = ' ';
}

static void render_token(const struct part *p, enum template_escape esc,
                         const char *(*lookup)(void *ctx, const char *name, size_t *len), void *ctx,
                         struct buf *out)
{
    size_t start = out->len, n = 0;
    const char *v = lookup(ctx, p->name, &n);

    if (v && n)
        buf_add(out, v, n);
    for (int k = 0; k < p->nfilters; k++) {
        const struct filter *f = &p->filters[k];
        switch (f->kind) {
        case FILTER_DEFAULT:
            if (out->len == start)
                buf_add(out, f->arg, f->arg_len);
            break;
        case FILTER_UPCASE:
            case_map(out->p + start, out->len - start, 0);
            break;
        case FILTER_DOWNCASE:
            case_map(out->p + start, out->len - start, 1);
            break;
        case FILTER_CAPITALIZE:
            case_map(out->p + start, out->len - start, 2);
            break;
        }
    }
    if (esc == TEMPLATE_HTML)
        escape_html_tail(out, start);
    else if (esc == TEMPLATE_HEADER)
        clean_header_tail(out, start);
}

int template_render(const struct template *t, enum template_escape esc,
                    const char *(*lookup)(void *ctx, const char *name, size_t *len), void *ctx,
                    struct buf *out, struct err *e)
{
    size_t begin;

    if (out->p == NULL)
        buf_add(out, "", 0); /* an empty render still gives a string */
    begin = out->len;
    for (size_t i = 0; i < t->nparts; i++) {
        const struct part *p = &t->parts[i];
        if (p->is_token) {
            render_token(p, esc, lookup, ctx, out);
        } else {
            size_t start = out->len;
            buf_add(out, t->src + p->off, p->len);
            if (esc == TEMPLATE_HEADER)
                clean_header_tail(out, start);
        }
        /* checked per part: one part adds at most a value, escaped (6x), past the cap */
        if (out->len - begin > TEMPLATE_MAX_OUTPUT) {
            out->len = begin;
            out->p[begin] = '\0';
            return ERR(e, E_TOOBIG, "the rendered message passes %d bytes", TEMPLATE_MAX_OUTPUT);
        }
    }
    return 0;
}

/* ---- HTML to text ---------------------------------------------------------------------- */

/* The raw pass writes text with every run of HTML whitespace as one space and a '\n'
 * for each line break; tidy() then trims the lines and keeps at most one blank line. */

static int ci_at(const char *s, size_t n, size_t i, const char *lit)
{
    size_t k = strlen(lit);

    return n - i >= k && strncasecmp(s + i, lit, k) == 0;
}

/* Decodes the entity at s[i] ('&') into out; returns the bytes consumed (1 when it is
 * not one we know: the '&' is then written as it is). */
static size_t entity_decode(const char *s, size_t n, size_t i, struct buf *out)
{
    static const struct {
        const char *name;
        const char *text;
    } named[] = {{"&amp;", "&"}, {"&lt;", "<"},   {"&gt;", ">"},  {"&quot;", "\""},
                 {"&#39;", "'"}, {"&apos;", "'"}, {"&nbsp;", " "}};
    size_t j;

    for (j = 0; j < sizeof named / sizeof named[0]; j++)
        if (ci_at(s, n, i, named[j].name)) {
            buf_adds(out, named[j].text);
            return strlen(named[j].name);
        }
    if (i + 2 < n && s[i + 1] == '#') {
        unsigned long cp = 0;
        int hex = s[i + 2] == 'x' || s[i + 2] == 'X';
        size_t k = i + 2 + (size_t)hex, digits = 0;
        char u[4];
        for (; k < n && digits < 8; k++, digits++) {
            char ch = s[k];
            if (ch >= '0' && ch <= '9')
                cp = cp * (hex ? 16 : 10) + (unsigned long)(ch - '0');
            else if (hex && ch >= 'a' && ch <= 'f')
                cp = cp * 16 + (unsigned long)(ch - 'a' + 10);
            else if (hex && ch >= 'A' && ch <= 'F')
                cp = cp * 16 + (unsigned long)(ch - 'A' + 10);
            else
                break;
        }
        if (digits > 0 && k < n && s[k] == ';') {
            if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                cp = 0xFFFD;
            if (cp == 0xA0)
                cp = ' ';
            buf_add(out, u, utf8_put(u, (unsigned)cp));
            return k + 1 - i;
        }
    }
    buf_addc(out, '&');
    return 1;
}

void html_unescape_append(struct buf *out, const char *s, size_t n)
{
    size_t i = 0, run;

    while (i < n) {
        run = i;
        while (i < n && s[i] != '&')
            i++;
        buf_add(out, s + run, i - run);
        if (i < n)
            i += entity_decode(s, n, i, out);
    }
    if (out->p == NULL)
        buf_adds(out, "");
}

size_t template_token_end(const char *s, size_t n, size_t i)
{
    char q = 0;

    for (i += 2; i < n; i++) {
        if (q) {
            if (s[i] == '\\' && i + 1 < n)
                i++;
            else if (s[i] == q)
                q = 0;
        } else if (s[i] == '"' || s[i] == '\'') {
            q = s[i];
        } else if (s[i] == '}' && i + 1 < n && s[i + 1] == '}') {
            return i + 2;
        }
    }
    return n;
}

/* Text (entities decoded, whitespace runs made one space) of s[from..to) into out. */
static void text_add(const char *s, size_t from, size_t to, struct buf *out)
{
    size_t i = from;

    while (i < to) {
        char ch = s[i];
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f') {
            if (out->len == 0 || (out->p[out->len - 1] != ' ' && out->p[out->len - 1] != '\n'))
                buf_addc(out, ' ');
            i++;
        } else if (ch == '&') {
            i += entity_decode(s, to, i, out);
        } else if (ch == '{' && i + 1 < to && s[i + 1] == '{') {
            /* a token goes through whole, so that it survives for compiling */
            size_t stop = template_token_end(s, to, i);
            buf_add(out, s + i, stop - i);
            i = stop;
        } else {
            buf_addc(out, ch);
            i++;
        }
    }
}

/* The value of attribute attr in the tag s[from..to), entities decoded, into out;
 * 1 if present. */
static int tag_attr(const char *s, size_t from, size_t to, const char *attr, struct buf *out)
{
    size_t k = strlen(attr), i = from;

    while (i < to) {
        if ((s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') &&
            ci_at(s, to, i + 1, attr)) {
            size_t j = i + 1 + k, vs, ve;
            while (j < to && (s[j] == ' ' || s[j] == '\t'))
                j++;
            if (j < to && s[j] == '=') {
                j++;
                while (j < to && (s[j] == ' ' || s[j] == '\t'))
                    j++;
                if (j < to && (s[j] == '"' || s[j] == '\'')) {
                    char q = s[j];
                    const char *end = memchr(s + j + 1, q, to - j - 1);
                    vs = j + 1;
                    ve = end ? (size_t)(end - s) : to;
                } else {
                    vs = j;
                    ve = j;
                    while (ve < to && s[ve] != ' ' && s[ve] != '>' && s[ve] != '\t')
                        ve++;
                }
                for (size_t m = vs; m < ve;)
                    m += (s[m] == '&') ? entity_decode(s, ve, m, out) : (buf_addc(out, s[m]), 1);
                return 1;
            }
        }
        i++;
    }
    return 0;
}

/* The end of the tag that opens at s[i] ('<'): just past its '>' (quotes respected). */
static size_t tag_end(const char *s, size_t n, size_t i)
{
    char q = 0;

    for (i++; i < n; i++) {
        if (q) {
            if (s[i] == q)
                q = 0;
        } else if (s[i] == '"' || s[i] == '\'') {
            q = s[i];
        } else if (s[i] == '>') {
            return i + 1;
        }
    }
    return n;
}

static int tag_is(const char *name, size_t len, const char *const *list)
{
    for (; *list; list++)
        if (strlen(*list) == len && strncasecmp(*list, name, len) == 0)
            return 1;
    return 0;
}

/* Keeps at most one blank line, trims spaces at the ends of lines and blank lines at
 * the ends of the text. */
static void tidy(const struct buf *raw, struct buf *out)
{
    size_t i = 0, newlines = 0;
    int started = 0;

    while (i < raw->len) {
        size_t ls = i, le;
        while (i < raw->len && raw->p[i] != '\n')
            i++;
        le = i;
        if (i < raw->len)
            i++;
        while (ls < le && raw->p[ls] == ' ')
            ls++;
        while (le > ls && raw->p[le - 1] == ' ')
            le--;
        if (ls == le) {
            newlines++;
            continue;
        }
        if (started)
            buf_add(out, "\n\n", newlines > 1 ? 2 : 1);
        buf_add(out, raw->p + ls, le - ls);
        started = 1;
        newlines = 1;
    }
    if (started)
        buf_addc(out, '\n');
}

static const char *const breaks[] = {"br",     "/br", "p",   "/p",  "div", "/div", "h1",
                                     "/h1",    "h2",  "/h2", "h3",  "/h3", "h4",   "/h4",
                                     "h5",     "/h5", "h6",  "/h6", "/li", "/tr",  "table",
                                     "/table", "ul",  "/ul", "ol",  "/ol", NULL};
static const char *const cells[] = {"/td", "/th", NULL};

struct h2t {
    struct buf raw;  /* text so far, before tidy() */
    struct buf href; /* target of the open link */
    size_t link_at;  /* where the open link's text starts in raw */
    int in_link;
};

/* Just past the element whose raw contents end at "</name" (script, style), from i. */
static size_t skip_contents(const char *html, size_t len, size_t i, const char *close)
{
    for (size_t k = i; k < len; k++)
        if (ci_at(html, len, k, close))
            return tag_end(html, len, k);
    return len;
}

/* Handles the tag opening at html[i]; returns where the text goes on. */
static size_t html_tag(struct h2t *h, const char *html, size_t len, size_t i)
{
    size_t end = tag_end(html, len, i), ns = i + 1, ne = i + 1;

    if (ne < end && html[ne] == '/')
        ne++;
    while (ne < end &&
           ((html[ne] >= 'a' && html[ne] <= 'z') || (html[ne] >= 'A' && html[ne] <= 'Z') ||
            (html[ne] >= '0' && html[ne] <= '9')))
        ne++;
    if (ne - ns == 6 && ci_at(html, len, ns, "script"))
        return skip_contents(html, len, end, "</script");
    if (ne - ns == 5 && ci_at(html, len, ns, "style"))
        return skip_contents(html, len, end, "</style");
    if (tag_is(html + ns, ne - ns, breaks)) {
        buf_addc(&h->raw, '\n');
    } else if (tag_is(html + ns, ne - ns, cells)) {
        buf_addc(&h->raw, ' ');
    } else if (ne - ns == 1 && (html[ns] == 'a' || html[ns] == 'A')) {
        buf_reset(&h->href);
        h->in_link = tag_attr(html, ne, end, "href", &h->href) && h->href.len > 0;
        h->link_at = h->raw.len;
    } else if (ne - ns == 2 && html[ns] == '/' && (html[ns + 1] == 'a' || html[ns + 1] == 'A')) {
        size_t tl = h->raw.len - h->link_at;
        /* "text (url)", or the url alone when the text is the url */
        if (h->in_link &&
            !(tl == h->href.len && memcmp(h->raw.p + h->link_at, h->href.p, tl) == 0)) {
            if (tl > 0 && h->raw.p[h->raw.len - 1] != ' ')
                buf_addc(&h->raw, ' ');
            buf_addc(&h->raw, '(');
            buf_add(&h->raw, h->href.p, h->href.len);
            buf_addc(&h->raw, ')');
        }
        h->in_link = 0;
    }
    return end;
}

int template_html_to_text(const char *html, size_t len, struct buf *out, struct err *e)
{
    struct h2t h = {.in_link = 0};
    size_t i = 0, text_from = 0;

    if (len > TEMPLATE_MAX_SOURCE)
        return ERR(e, E_TOOBIG, "the HTML has %zu bytes; at most %d are allowed", len,
                   TEMPLATE_MAX_SOURCE);
    buf_init(&h.raw);
    buf_init(&h.href);
    while (i < len) {
        if (html[i] == '{' && i + 1 < len && html[i + 1] == '{') {
            i = template_token_end(html, len, i);
            continue;
        }
        /* a '<' that cannot open a tag ("a < b") is text */
        if (html[i] != '<' || i + 1 == len ||
            !(html[i + 1] == '/' || html[i + 1] == '!' ||
              (html[i + 1] >= 'a' && html[i + 1] <= 'z') ||
              (html[i + 1] >= 'A' && html[i + 1] <= 'Z'))) {
            i++;
            continue;
        }
        text_add(html, text_from, i, &h.raw);
        if (ci_at(html, len, i, "<!--")) {
            const char *close = memmem(html + i + 4, len - i - 4, "-->", 3);
            i = text_from = close ? (size_t)(close - html) + 3 : len;
            continue;
        }
        i = text_from = html_tag(&h, html, len, i);
    }
    text_add(html, text_from, len, &h.raw);
    tidy(&h.raw, out);
    buf_release(&h.raw);
    buf_release(&h.href);
    return 0;
}
