/* campaign/campaign.h -- the send half of issue 14; for now its template engine.
 *
 * DESIGN: a template (subject, HTML or text body) is compiled once per run into a
 * list of parts (literal text runs, and {{ name | filter ... }} tokens) and rendered
 * once per message into a caller's struct buf, with no allocation per part beyond
 * the buffer's growth. Values come from a lookup callback (contact attributes and
 * the built-ins email, external_id, unsubscribe_url); a compiled template is
 * immutable, so many threads may render it at once. The language, its errors and
 * its limits: docs/templates.md. */
#ifndef ENGAGE_CAMPAIGN_H
#define ENGAGE_CAMPAIGN_H

#include "core/core.h"

#define TEMPLATE_MAX_SOURCE (512 * 1024) /* bytes of one template's source */
#define TEMPLATE_MAX_TOKENS 1000         /* {{ }} tokens in one template */
#define TEMPLATE_MAX_FILTERS 8           /* filters in one token */
#define TEMPLATE_MAX_NAME 64             /* bytes of a token's name */
/* Bytes one render may add: contact values are untrusted (up to [ingest] max_value_bytes
 * each), and 1,000 tokens of a 1 MiB value, HTML-escaped, would be gigabytes. */
#define TEMPLATE_MAX_OUTPUT (16 * 1024 * 1024)

/* How values are escaped as they are written (literal text is written as it is,
 * except in HEADER mode, where it is cleaned the same way). */
enum template_escape {
    TEMPLATE_HTML,   /* & < > " ' become &amp; &lt; &gt; &quot; &#39; */
    TEMPLATE_TEXT,   /* raw */
    TEMPLATE_HEADER, /* raw, but CR, LF and every other control character become a space */
};

struct template; /* opaque */

/* Compiles src[0..len). On a syntax error returns E_INVAL with "line L, column C: ..."
 * (1-based, columns count characters) in e; E_TOOBIG past the limits above. The
 * caller owns *out (template_free). */
int template_compile(struct template **out, const char *src, size_t len, struct err *e);
void template_free(struct template *t); /* NULL-safe */

/* The tokens of t in source order: their names and whether they carry a default. */
size_t template_token_count(const struct template *t);
const char *template_token_name(const struct template *t, size_t i);
int template_token_has_default(const struct template *t, size_t i);
/* 1 if a token without a default would render empty for this contact (its value is
 * missing or empty), else 0: the "missing" count of a preview. */
int template_missing(const struct template *t,
                     const char *(*lookup)(void *ctx, const char *name, size_t *len), void *ctx);

/* Appends t rendered for one contact to out. lookup gives the value of name (a
 * NUL-terminated attribute or built-in name) and its length in *len, or NULL when the
 * contact has none; the bytes must stay valid until the call returns. Filters apply in order, then
 * the escape. A missing value renders empty unless a default applies. E_TOOBIG (out
 * cut back to where it was) once the rendering passes TEMPLATE_MAX_OUTPUT bytes. */
int template_render(const struct template *t, enum template_escape esc,
                    const char *(*lookup)(void *ctx, const char *name, size_t *len), void *ctx,
                    struct buf *out, struct err *e);

/* Appends the plain text of an HTML document to out: the text part derived from the
 * HTML body when a template has none. It runs on the template source, before
 * compiling: {{ }} tokens are copied through unchanged. E_TOOBIG past
 * TEMPLATE_MAX_SOURCE. */
int template_html_to_text(const char *html, size_t len, struct buf *out, struct err *e);

#endif
