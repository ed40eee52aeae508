/* campaign/message.c -- one stored template version, compiled and rendered per contact.
 *
 * DESIGN: a version's three parts are compiled once (the subject, the HTML, and the
 * text given or derived from the HTML source with template_html_to_text, then compiled
 * like a written one) into an immutable struct message_template that any number of
 * threads render at once. Values come from the contact through one lookup: the
 * built-ins email, external_id and unsubscribe_url first (an attribute of the same name
 * cannot replace the unsubscribe link), then the attributes, written plainly (strings
 * as they are, numbers in their shortest exact form, true/false; null, arrays and
 * objects count as missing). Bulk mail must show an unsubscribe link in its body: a
 * part that has no {{ unsubscribe_url }} of its own gets a small footer with it, itself
 * a compiled template so the link is escaped like any value (docs/templates.md,
 * "The unsubscribe footer"). */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/map.h"
#include "../store/store.h"
#include "../provider/provider.h"
#include "campaign.h"

/* The footers: the link inside the HTML body (before </body>) and at the end of the text. */
static const char footer_html_src[] = "<p style=\"font-size:12px;color:#666666;margin-top:24px\">"
                                      "You receive this email because you subscribed. "
                                      "<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>";
/* After a blank line: the text part gets a line break first when it does not end with one. */
static const char footer_text_src[] = "\n-- \nUnsubscribe: {{ unsubscribe_url }}\n";

struct message_template {
    struct template *subject, *html, *text;
    struct template *footer_html, *footer_text; /* NULL when the part shows the link itself */
    char *from_email, *from_name, *reply_to;
    char *html_src; /* the HTML part's source, for tracking */
    char **links;   /* tracked links: their href source */
    size_t nlinks;
};

static int shows_unsubscribe(const struct template *t)
{
    for (size_t i = 0; i < template_token_count(t); i++)
        if (strcmp(template_token_name(t, i), "unsubscribe_url") == 0)
            return 1;
    return 0;
}

/* Compiles one part; a syntax error (or a part past the limits) becomes an errlist entry
 * at path, prefixed by what (for the derived text), and E_INVAL. */
static int compile_part(const char *src, const char *path, const char *what, struct template **out,
                        struct errlist *errs, struct err *e)
{
    struct err ce = {0};
    int rc = template_compile(out, src, strlen(src), &ce);

    if (rc == E_INVAL || rc == E_TOOBIG) {
        errlist_add(errs, path, "%s%s", what, ce.msg);
        return ERR(e, E_INVAL, "%s does not compile: %s", path, ce.msg);
    }
    if (rc)
        *e = ce;
    return rc;
}

static char *dup_or_null(const char *s)
{
    return s && *s ? xstrdup(s) : NULL;
}

int message_template_compile(const struct store_template *t, struct message_template **out,
                             struct errlist *errs, struct err *e)
{
    struct message_template *mt = xcalloc(1, sizeof *mt);
    struct buf derived;
    int rc = 0, r;

    buf_init(&derived);
    *out = NULL;
    /* Every part is compiled, so that every problem is reported at once. */
    r = compile_part(t->subject ? t->subject : "", "/subject", "", &mt->subject, errs, e);
    rc = rc ? rc : r;
    r = compile_part(t->html ? t->html : "", "/html", "", &mt->html, errs, e);
    rc = rc ? rc : r;
    if (t->text) {
        r = compile_part(t->text, "/text", "", &mt->text, errs, e);
    } else if (r == 0) {
        /* An entity can decode to '{': the derived text may not compile where the HTML did. */
        const char *html = t->html ? t->html : "";
        r = template_html_to_text(html, strlen(html), &derived, e);
        if (r == 0)
            r = compile_part(derived.p ? derived.p : "", "/html",
                             "the text part derived from the HTML does not compile: ", &mt->text,
                             errs, e);
    }
    rc = rc ? rc : r;
    if (rc)
        goto out;
    if (!shows_unsubscribe(mt->html))
        rc = compile_part(footer_html_src, "/html", "", &mt->footer_html, errs, e);
    if (rc == 0 && !shows_unsubscribe(mt->text))
        rc = compile_part(footer_text_src, "/text", "", &mt->footer_text, errs, e);
    if (rc)
        goto out;
    mt->html_src = xstrdup(t->html ? t->html : "");
    mt->from_email = xstrdup(t->from_email ? t->from_email : "");
    mt->from_name = dup_or_null(t->from_name);
    mt->reply_to = dup_or_null(t->reply_to);
    *out = mt;
    mt = NULL;
out:
    buf_release(&derived);
    message_template_free(mt);
    return rc;
}

void message_template_free(struct message_template *mt)
{
    if (mt == NULL)
        return;
    template_free(mt->subject);
    template_free(mt->html);
    template_free(mt->text);
    template_free(mt->footer_html);
    template_free(mt->footer_text);
    free(mt->from_email);
    free(mt->from_name);
    free(mt->reply_to);
    free(mt->html_src);
    for (size_t i = 0; i < mt->nlinks; i++)
        free(mt->links[i]);
    free(mt->links);
    free(mt);
}

int message_template_has_unsubscribe(const struct message_template *mt)
{
    return mt->footer_html == NULL;
}

int message_template_footer_added(const struct message_template *mt)
{
    return mt->footer_html != NULL || mt->footer_text != NULL;
}

const char *message_template_from_email(const struct message_template *mt)
{
    return mt->from_email;
}

const char *message_template_from_name(const struct message_template *mt)
{
    return mt->from_name;
}

const char *message_template_reply_to(const struct message_template *mt)
{
    return mt->reply_to;
}

/* ---- the contact's values ---------------------------------------------------------------- */

struct lookup_ctx {
    const struct message_contact *c;
    char num[40];    /* a number written out: valid until the next lookup */
    struct buf link; /* a tracking link made: the same */
};

/* A real in the shortest form that reads back as the same value ("0.1", "3", "1e+21"). */
static void real_plain(double v, char *out, size_t cap)
{
    int prec;

    for (prec = 15; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* An attribute's value written plainly, or NULL for a missing one (absent, null, an array
 * or an object). */
static const char *attr_text(struct lookup_ctx *l, const json_t *a, size_t *len)
{
    const char *v = NULL;

    switch (a ? json_typeof(a) : JSON_NULL) {
    case JSON_STRING:
        *len = json_string_length(a);
        return json_string_value(a);
    case JSON_INTEGER:
        snprintf(l->num, sizeof l->num, "%" JSON_INTEGER_FORMAT, json_integer_value(a));
        v = l->num;
        break;
    case JSON_REAL:
        if (isfinite(json_real_value(a))) {
            real_plain(json_real_value(a), l->num, sizeof l->num);
            v = l->num;
        }
        break;
    case JSON_TRUE:
        v = "true";
        break;
    case JSON_FALSE:
        v = "false";
        break;
    default:
        break;
    }
    if (v)
        *len = strlen(v);
    return v;
}

/* The tracking links' token names: __engage_open, __engage_click_N. */
#define TRACK_PREFIX "__engage_"

/* The link a tracking token stands for ("open", "click_N"), or NULL. */
static const char *tracking_link(struct lookup_ctx *l, const char *what)
{
    const struct message_contact *c = l->c;
    char *end;
    long i;

    if (c->env == NULL)
        return NULL;
    buf_reset(&l->link);
    if (strcmp(what, "open") == 0) {
        token_url(c->env, 'o', c->run_id, c->contact_id, 0, &l->link);
    } else if (strncmp(what, "click_", 6) == 0) {
        i = strtol(what + 6, &end, 10);
        if (*end || i < 0 || i > INT32_MAX)
            return NULL;
        token_url(c->env, 'c', c->run_id, c->contact_id, (int)i, &l->link);
    } else {
        return NULL;
    }
    return l->link.p;
}

/* The built-ins first: an attribute cannot stand in for one. */
static const char *contact_value(void *ctx, const char *name, size_t *len)
{
    struct lookup_ctx *l = ctx;
    const struct message_contact *c = l->c;
    const char *v;

    if (strcmp(name, "email") == 0)
        v = c->email;
    else if (strcmp(name, "external_id") == 0)
        v = c->external_id;
    else if (strcmp(name, "unsubscribe_url") == 0)
        v = c->unsubscribe_url;
    else if (strncmp(name, TRACK_PREFIX, sizeof TRACK_PREFIX - 1) == 0)
        v = tracking_link(l, name + sizeof TRACK_PREFIX - 1);
    else
        return attr_text(l, c->attrs ? json_object_get(c->attrs, name) : NULL, len);
    if (v)
        *len = strlen(v);
    return v;
}

/* ---- rendering --------------------------------------------------------------------------- */

void message_rendered_release(struct message_rendered *r)
{
    buf_release(&r->subject);
    buf_release(&r->html);
    buf_release(&r->text);
}

/* Where the HTML footer goes: before the last </body> (any case), else at the end. */
static size_t footer_at(const struct buf *html)
{
    size_t i = html->len;

    while (i > 0) {
        i--;
        if (html->p[i] == '<' && i + 6 <= html->len && strncasecmp(html->p + i, "</body", 6) == 0)
            return i;
    }
    return html->len;
}

/* Renders footer into html at the footer's place. */
static int add_html_footer(const struct template *footer, struct lookup_ctx *l, struct buf *html,
                           struct err *e)
{
    size_t at = footer_at(html), tail = html->len - at;
    struct buf f;
    int rc;

    buf_init(&f);
    rc = template_render(footer, TEMPLATE_HTML, contact_value, l, &f, e);
    if (rc == 0) {
        buf_add(html, f.p, f.len); /* grows html by the footer's length, then shifts */
        memmove(html->p + at + f.len, html->p + at, tail);
        memcpy(html->p + at, f.p, f.len);
    }
    buf_release(&f);
    return rc;
}

int message_render(const struct message_template *mt, const struct message_contact *c,
                   struct message_rendered *out, struct err *e)
{
    struct lookup_ctx l = {.c = c};
    int rc;

    buf_init(&l.link);
    buf_reset(&out->subject);
    buf_reset(&out->html);
    buf_reset(&out->text);
    rc = template_render(mt->subject, TEMPLATE_HEADER, contact_value, &l, &out->subject, e);
    if (rc == 0)
        rc = template_render(mt->html, TEMPLATE_HTML, contact_value, &l, &out->html, e);
    if (rc == 0 && mt->footer_html)
        rc = add_html_footer(mt->footer_html, &l, &out->html, e);
    if (rc == 0)
        rc = template_render(mt->text, TEMPLATE_TEXT, contact_value, &l, &out->text, e);
    if (rc == 0 && mt->footer_text) {
        if (out->text.len && out->text.p[out->text.len - 1] != '\n')
            buf_addc(&out->text, '\n');
        rc = template_render(mt->footer_text, TEMPLATE_TEXT, contact_value, &l, &out->text, e);
    }
    buf_release(&l.link);
    return rc;
}

int message_missing(const struct message_template *mt, const struct message_contact *c)
{
    struct lookup_ctx l = {.c = c};
    int missing;

    buf_init(&l.link);
    missing = template_missing(mt->subject, contact_value, &l) ||
              template_missing(mt->html, contact_value, &l) ||
              template_missing(mt->text, contact_value, &l);
    buf_release(&l.link);
    return missing;
}

/* ---- tracking ------------------------------------------------------------------------ */

static int ci_prefix(const char *s, size_t n, const char *lit)
{
    size_t k = strlen(lit);

    return n >= k && strncasecmp(s, lit, k) == 0;
}

/* Whether an href's source is a link to track: http(s), or a token other than the
 * unsubscribe link (what it renders to is checked at the click). */
static int trackable(const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')) {
        v++;
        n--;
    }
    if (ci_prefix(v, n, "http://") || ci_prefix(v, n, "https://"))
        return 1;
    if (n >= 2 && v[0] == '{' && v[1] == '{') {
        size_t i = 2, j;
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        j = i;
        while (j < n && (isalnum((unsigned char)v[j]) || v[j] == '_'))
            j++;
        if (j - i == 15 && strncmp(v + i, "unsubscribe_url", 15) == 0)
            return 0;
        return 1;
    }
    return 0;
}

/* Where the tag that opens at s[i] ('<') ends (just past its '>'), tokens and quoted
 * values stepped over; its href value's span in *vs, *vn (vs = 0: none) and whether it
 * carries data-engage-notrack. */
static size_t tag_scan(const char *s, size_t n, size_t i, size_t *vs, size_t *vn, int *notrack)
{
    *vs = *vn = 0;
    *notrack = 0;
    i += 2; /* "<a" */
    while (i < n && s[i] != '>') {
        size_t ns, ne, a, b;
        if (s[i] == '{' && i + 1 < n && s[i + 1] == '{') {
            i = template_token_end(s, n, i);
            continue;
        }
        if (isspace((unsigned char)s[i]) || s[i] == '/') {
            i++;
            continue;
        }
        ns = i;
        while (i < n && !isspace((unsigned char)s[i]) && s[i] != '=' && s[i] != '>' && s[i] != '/')
            i++;
        ne = i;
        while (i < n && isspace((unsigned char)s[i]))
            i++;
        a = b = 0;
        if (i < n && s[i] == '=') {
            i++;
            while (i < n && isspace((unsigned char)s[i]))
                i++;
            if (i < n && (s[i] == '"' || s[i] == '\'')) {
                char q = s[i++];
                a = i;
                while (i < n && s[i] != q) {
                    if (s[i] == '{' && i + 1 < n && s[i + 1] == '{')
                        i = template_token_end(s, n, i);
                    else
                        i++;
                }
                b = i < n ? i : n;
                if (i < n)
                    i++;
            } else {
                a = i;
                while (i < n && !isspace((unsigned char)s[i]) && s[i] != '>') {
                    if (s[i] == '{' && i + 1 < n && s[i + 1] == '{')
                        i = template_token_end(s, n, i);
                    else
                        i++;
                }
                b = i;
            }
        }
        if (ne - ns == 4 && strncasecmp(s + ns, "href", 4) == 0 && *vs == 0 && b > a) {
            *vs = a;
            *vn = b - a;
        }
        if (ne - ns == 19 && strncasecmp(s + ns, "data-engage-notrack", 19) == 0)
            *notrack = 1;
    }
    return i < n ? i + 1 : n;
}

static const char pixel_src[] = "<img src=\"{{ " TRACK_PREFIX "open }}\" width=\"1\" height=\"1\""
                                " alt=\"\" style=\"display:block;width:1px;height:1px;border:0\">";

int message_template_track(struct message_template *mt, int opens, int clicks, struct err *e)
{
    const char *s = mt->html_src;
    size_t n = strlen(s), i = 0, copied = 0, body_at = n;
    struct template *t = NULL;
    struct buf out;
    int rc;

    if (!opens && !clicks)
        return 0;
    buf_init(&out);
    while (i < n) {
        if (s[i] == '{' && i + 1 < n && s[i + 1] == '{') {
            i = template_token_end(s, n, i);
        } else if (s[i] == '<' && i + 3 < n && memcmp(s + i, "<!--", 4) == 0) {
            const char *end = strstr(s + i + 4, "-->");
            i = end ? (size_t)(end - s) + 3 : n;
        } else if (s[i] == '<' && i + 2 < n && (s[i + 1] == 'a' || s[i + 1] == 'A') &&
                   isspace((unsigned char)s[i + 2])) {
            size_t vs, vn, end;
            int notrack;
            end = tag_scan(s, n, i, &vs, &vn, &notrack);
            if (clicks && vs && !notrack && trackable(s + vs, vn)) {
                mt->links = xrealloc(mt->links, (mt->nlinks + 1) * sizeof *mt->links);
                mt->links[mt->nlinks] = xstrndup(s + vs, vn);
                buf_add(&out, s + copied, vs - copied);
                buf_printf(&out, "{{ " TRACK_PREFIX "click_%zu }}", mt->nlinks);
                copied = vs + vn;
                mt->nlinks++;
            }
            i = end;
        } else {
            if (s[i] == '<' && i + 6 <= n && strncasecmp(s + i, "</body", 6) == 0)
                body_at = i; /* the last one */
            i++;
        }
    }
    if (opens && body_at >= copied) {
        buf_add(&out, s + copied, body_at - copied);
        buf_adds(&out, pixel_src);
        copied = body_at;
    }
    buf_add(&out, s + copied, n - copied);
    rc = template_compile(&t, out.p ? out.p : "", out.len, e);
    if (rc == 0) {
        template_free(mt->html);
        mt->html = t;
    }
    buf_release(&out);
    return rc;
}

size_t message_template_links(const struct message_template *mt)
{
    return mt->nlinks;
}

const char *message_template_link(const struct message_template *mt, size_t i)
{
    return i < mt->nlinks ? mt->links[i] : NULL;
}

int message_link_url(const struct message_template *mt, size_t i, const struct message_contact *c,
                     struct buf *out, struct err *e)
{
    struct lookup_ctx l = {.c = c};
    struct buf raw;
    const char *u;
    int rc;

    if (i >= mt->nlinks)
        return ERR(e, E_NOTFOUND, "the message has no link %zu", i);
    buf_init(&raw);
    buf_init(&l.link);
    if (strstr(mt->links[i], "{{") == NULL) {
        buf_adds(&raw, mt->links[i]);
        rc = 0;
    } else {
        struct template *t;
        rc = template_compile(&t, mt->links[i], strlen(mt->links[i]), e);
        if (rc == 0)
            rc = template_render(t, TEMPLATE_TEXT, contact_value, &l, &raw, e);
        template_free(t);
    }
    if (rc == 0) {
        struct buf dec;
        size_t a = 0, b;
        buf_init(&dec);
        html_unescape_append(&dec, raw.p ? raw.p : "", raw.len);
        b = dec.len;
        while (a < b && strchr(" \t\r\n", dec.p[a])) /* HTML trims an href */
            a++;
        while (b > a && strchr(" \t\r\n", dec.p[b - 1]))
            b--;
        u = dec.p + a;
        if (!ci_prefix(u, b - a, "http://") && !ci_prefix(u, b - a, "https://"))
            rc = ERR(e, E_INVAL, "link %zu does not lead to an http(s) URL", i);
        for (size_t k = a; rc == 0 && k < b; k++)
            if ((unsigned char)dec.p[k] < 0x20 || dec.p[k] == 0x7F)
                rc = ERR(e, E_INVAL, "link %zu holds a control character", i);
        if (rc == 0) {
            buf_reset(out);
            buf_add(out, u, b - a);
        }
        buf_release(&dec);
    }
    buf_release(&raw);
    buf_release(&l.link);
    return rc;
}

/* ---- the whole message ------------------------------------------------------------------- */

int message_address_plausible(const char *s, size_t n)
{
    const char *at = memchr(s, '@', n);

    if (n == 0 || n > TEMPLATE_MAX_ADDRESS || at == NULL || at == s || at == s + n - 1 ||
        memchr(at + 1, '@', (size_t)(s + n - at - 1)))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch == 0x7F || strchr("<>,;\"", ch))
            return 0;
    }
    return 1;
}

/* The provider's id headers, copied. */
struct id_headers {
    const char *kv[16];
    char *own[16];
    size_t n; /* entries of kv: twice the headers */
};

static void add_header(void *ctx, const char *name, const char *value)
{
    struct id_headers *h = ctx;

    if (h->n + 2 > sizeof h->kv / sizeof *h->kv)
        return;
    h->kv[h->n] = h->own[h->n] = xstrdup(name);
    h->n++;
    h->kv[h->n] = h->own[h->n] = xstrdup(value);
    h->n++;
}

int message_mime(const struct message_template *mt, const struct message_rendered *r,
                 const struct provider *p, const char *to, const char *message_id,
                 const char *unsub, int64_t date_ms, struct buf *out, const char **mail_from,
                 struct err *e)
{
    const char *from = message_template_from_email(mt), *at = strrchr(from, '@');
    struct mime_message m = {
        .from_email = from,
        .from_name = message_template_from_name(mt),
        .to = to,
        .reply_to = message_template_reply_to(mt),
        .subject = r->subject.p ? r->subject.p : "",
        .html = r->html.p ? r->html.p : "",
        .text = r->text.p ? r->text.p : "",
        .message_id = message_id,
        .message_id_domain = at ? at + 1 : "localhost",
        .date_ms = date_ms,
        .list_unsubscribe = unsub,
    };
    struct id_headers h = {0};
    size_t i;
    int rc;

    provider_id_headers(p, message_id, add_header, &h);
    m.headers = h.kv;
    m.nheaders = h.n / 2;
    rc = mime_build(&m, out, e);
    for (i = 0; i < h.n; i++)
        free(h.own[i]);
    *mail_from = p->from[0] ? p->from : from;
    return rc;
}
