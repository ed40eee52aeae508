/* tests/unit/template.c -- the template language (src/campaign/template.c).
 *
 * Every syntax error with its line and column, the filters alone and chained, default
 * on missing and empty values, the three escape modes, the size caps, HTML to text,
 * and random templates rendered by the engine and by a small reference renderer
 * written the obvious way (one malloc'd string per step), which must agree byte for
 * byte. Seed: tests/unit/seed.h. */
#include <stdint.h>

#include "campaign/campaign.h"
#include "helpers.h"
#include "seed.h"

/* ---- a contact: name/value pairs, NULL value = missing --------------------------------- */

struct kv {
    const char *name, *value;
};

struct contact {
    const struct kv *kv;
    size_t n;
};

static const char *look(void *ctx, const char *name, size_t *len)
{
    const struct contact *c = ctx;

    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->kv[i].name, name) == 0) {
            if (c->kv[i].value == NULL)
                return NULL;
            *len = strlen(c->kv[i].value);
            return c->kv[i].value;
        }
    return NULL;
}

static const struct kv people[] = {
    {"first_name", "ada"},
    {"last_name", "LOVELACE"},
    {"email", "ada@example.org"},
    {"empty", ""},
    {"city", "élan Ωmega"},
    {"html", "<a href=\"x\">Tom & 'Jerry'</a>"},
    {"evil", "Hi\r\nBcc: x@y.z\tend\x01"},
};
static struct contact ada = {people, sizeof people / sizeof people[0]};

/* Renders src for ada in mode esc; the caller frees. Fails the test on a compile error. */
static char *render(const char *src, enum template_escape esc)
{
    struct template *t = NULL;
    struct err e = {0};
    struct buf out;
    int rc;

    buf_init(&out);
    rc = template_compile(&t, src, strlen(src), &e);
    cr_assert_eq(rc, 0, "compile '%s': %s", src, e.msg);
    cr_assert_eq(template_render(t, esc, look, &ada, &out, &e), 0);
    template_free(t);
    return buf_take(&out);
}

static void check(const char *src, enum template_escape esc, const char *want)
{
    char *got = render(src, esc);

    cr_assert_str_eq(got, want, "template '%s' (mode %d)", src, (int)esc);
    free(got);
}

/* ---- syntax errors ------------------------------------------------------------------------ */

static void check_error(const char *src, int code, const char *msg)
{
    struct template *t = (struct template *)1;
    struct err e = {0};
    int rc = template_compile(&t, src, strlen(src), &e);

    cr_assert_eq(rc, code, "'%s' gave %d (%s), want %d", src, rc, e.msg, code);
    cr_assert_null(t);
    cr_assert_str_eq(e.msg, msg, "'%s'", src);
}

UTEST(template, syntax_errors)
{
    check_error("Hi {{ name", E_INVAL, "line 1, column 4: '{{' is not closed by '}}'");
    check_error("a\nb\n  {{ x }", E_INVAL, "line 3, column 3: '{{' is not closed by '}}'");
    check_error("{{", E_INVAL, "line 1, column 1: '{{' is not closed by '}}'");
    check_error("{{ x |", E_INVAL, "line 1, column 1: '{{' is not closed by '}}'");
    check_error("{{ x | default:", E_INVAL, "line 1, column 1: '{{' is not closed by '}}'");
    check_error("{{ x | default", E_INVAL, "line 1, column 1: '{{' is not closed by '}}'");
    check_error("{{ }}", E_INVAL,
                "line 1, column 1: empty token: a name is needed between '{{' and '}}'");
    check_error("x\n{{}}", E_INVAL,
                "line 2, column 1: empty token: a name is needed between '{{' and '}}'");
    check_error("{{ 9lives }}", E_INVAL,
                "line 1, column 4: '9lives' is not a valid name (letters, digits and _, not "
                "starting with a digit)");
    check_error("{{ first-name }}", E_INVAL,
                "line 1, column 4: 'first-name' is not a valid name (letters, digits and _, "
                "not starting with a digit)");
    check_error("é {{ a.b }}", E_INVAL,
                "line 1, column 6: 'a.b' is not a valid name (letters, digits and _, not "
                "starting with a digit)");
    check_error("{{ | upcase }}", E_INVAL,
                "line 1, column 4: expected a name (a letter or _, then letters, digits or _), "
                "found '|'");
    check_error("one\ntwo\nHello {{ name | upper }}", E_INVAL,
                "line 3, column 17: unknown filter 'upper' (filters: default, upcase, downcase, "
                "capitalize)");
    check_error("{{ x | }}", E_INVAL,
                "line 1, column 8: expected a filter name after '|', found '}'");
    check_error("{{ x | upcase: \"a\" }}", E_INVAL,
                "line 1, column 14: filter 'upcase' takes no argument");
    check_error("{{ x | capitalize : 'a' }}", E_INVAL,
                "line 1, column 19: filter 'capitalize' takes no argument");
    check_error("{{ x | default }}", E_INVAL,
                "line 1, column 16: filter 'default' needs an argument, as in default: \"text\"");
    check_error("{{ x | default: there }}", E_INVAL,
                "line 1, column 17: the argument of 'default' must be a string in quotes, found "
                "'t'");
    check_error("{{ x | default: \"there }}", E_INVAL,
                "line 1, column 17: the string is not closed by \"");
    check_error("{{ x y }}", E_INVAL, "line 1, column 6: expected '|' or '}}', found 'y'");
    check_error("{{ x } }}", E_INVAL, "line 1, column 6: expected '|' or '}}', found '}'");
    check_error("{{ x }} {{ y | downcase | default: 'a' | upcase | nope }}", E_INVAL,
                "line 1, column 51: unknown filter 'nope' (filters: default, upcase, downcase, "
                "capitalize)");
    /* the first error wins */
    check_error("{{ x | upper }} {{", E_INVAL,
                "line 1, column 8: unknown filter 'upper' (filters: default, upcase, downcase, "
                "capitalize)");
    /* columns count characters, not bytes */
    check_error("ΩΩΩ {{ x | bad }}", E_INVAL,
                "line 1, column 12: unknown filter 'bad' (filters: default, upcase, downcase, "
                "capitalize)");
}

UTEST(template, literal_text)
{
    check("", TEMPLATE_TEXT, "");
    check("plain } { }} text", TEMPLATE_TEXT, "plain } { }} text");
    check("<b>kept</b> & so", TEMPLATE_HTML, "<b>kept</b> & so"); /* literal text is not escaped */
    check("{{first_name}}{{ first_name }}{{\n\tfirst_name\n}}", TEMPLATE_TEXT, "adaadaada");
}

UTEST(template, filters_and_chains)
{
    check("{{ first_name | upcase }}", TEMPLATE_TEXT, "ADA");
    check("{{ last_name | downcase }}", TEMPLATE_TEXT, "lovelace");
    check("{{ last_name | capitalize }}", TEMPLATE_TEXT, "Lovelace");
    check("{{ first_name | capitalize }}", TEMPLATE_TEXT, "Ada");
    check("{{ first_name | upcase | downcase | capitalize }}", TEMPLATE_TEXT, "Ada");
    check("{{ last_name|downcase|upcase }}", TEMPLATE_TEXT, "LOVELACE");
    check("Dear {{ first_name | capitalize }} {{ last_name | capitalize }},", TEMPLATE_TEXT,
          "Dear Ada Lovelace,");
    check("{{ nobody | default: 'friend' | upcase }}", TEMPLATE_TEXT, "FRIEND");
    check("{{ nobody | upcase | default: 'friend' }}", TEMPLATE_TEXT, "friend");
    check("{{ first_name | default: 'friend' | upcase }}", TEMPLATE_TEXT, "ADA");
    check("{{ nobody | default: '' | default: \"b\" }}", TEMPLATE_TEXT, "b");
}

UTEST(template, defaults)
{
    check("Hi {{ nobody }}!", TEMPLATE_TEXT, "Hi !");
    check("Hi {{ empty }}!", TEMPLATE_TEXT, "Hi !");
    check("Hi {{ nobody | default: \"there\" }}!", TEMPLATE_TEXT, "Hi there!");
    check("Hi {{ empty | default: 'there' }}!", TEMPLATE_TEXT, "Hi there!");
    check("Hi {{ first_name | default: 'there' }}!", TEMPLATE_TEXT, "Hi ada!");
    check("{{ nobody | default: \"say \\\"hi\\\"\" }}", TEMPLATE_TEXT, "say \"hi\"");
    check("{{ nobody | default: 'it\\'s \\\\ ok' }}", TEMPLATE_TEXT, "it's \\ ok");
    check("{{ nobody | default: \"a}}b|c\" }}", TEMPLATE_TEXT, "a}}b|c");
    check("{{ nobody | default: \"<&>\" }}", TEMPLATE_HTML, "&lt;&amp;&gt;");
}

UTEST(template, html_escaping)
{
    check("{{ html }}", TEMPLATE_HTML,
          "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
    check("{{ html }}", TEMPLATE_TEXT, "<a href=\"x\">Tom & 'Jerry'</a>");
    check("<p>{{ html | upcase }}</p>", TEMPLATE_HTML,
          "<p>&lt;A HREF=&quot;X&quot;&gt;TOM &amp; &#39;JERRY&#39;&lt;/A&gt;</p>");
    check("{{ first_name }}", TEMPLATE_HTML, "ada");
}

UTEST(template, header_mode)
{
    static const struct kv kv[] = {
        {"a", "x\ry"}, {"b", "x\ny"}, {"c", "x\r\ny"}, {"d", "x\ty"}, {"e", "\x7f\x1b"}};
    struct contact c = {kv, 5};
    const char *src = "{{a}}|{{b}}|{{c}}|{{d}}|{{e}}|{{ z | default: \"q\\\"\" }}";
    struct template *t = NULL;
    struct err e = {0};
    struct buf out;

    check("Hello {{ evil }}", TEMPLATE_HEADER, "Hello Hi  Bcc: x@y.z end ");
    check("Line\r\nbreak {{ first_name }}", TEMPLATE_HEADER, "Line  break ada");
    check("{{ html }}", TEMPLATE_HEADER, "<a href=\"x\">Tom & 'Jerry'</a>");
    buf_init(&out);
    cr_assert_eq(template_compile(&t, src, strlen(src), &e), 0, "%s", e.msg);
    template_render(t, TEMPLATE_HEADER, look, &c, &out, &e);
    cr_assert_str_eq(out.p, "x y|x y|x  y|x y|  |q\"");
    buf_reset(&out);
    template_render(t, TEMPLATE_TEXT, look, &c, &out, &e);
    cr_assert_str_eq(out.p, "x\ry|x\ny|x\r\ny|x\ty|\x7f\x1b|q\"");
    template_free(t);
    buf_release(&out);
}

UTEST(template, utf8_case)
{
    check("{{ city | upcase }}", TEMPLATE_TEXT, "ÉLAN ΩMEGA");
    check("{{ city | capitalize }}", TEMPLATE_TEXT, "Élan ωmega");
    check("{{ city | downcase }}", TEMPLATE_TEXT, "élan ωmega");
    check("{{ nobody | default: 'ßtraße ÿ 日本 ѐ' | upcase }}", TEMPLATE_TEXT,
          "ßTRAßE ÿ 日本 Ѐ"); /* ß and ÿ have no same-length upper case: left */
    check("{{ nobody | default: 'ЖУК σοφός' | capitalize }}", TEMPLATE_TEXT, "Жук σοφός");
    check("{{ nobody | default: 'σοφός' | upcase }}", TEMPLATE_TEXT, "ΣΟΦόΣ"); /* ό: left */
    check("{{ nobody | default: '日本 abc' | capitalize }}", TEMPLATE_TEXT, "日本 abc");
}

UTEST(template, invalid_utf8_values_are_not_split)
{
    static const struct kv kv[] = {{"v", "\xc3"}, {"w", "a\xe6\x97\xa5\xc3\xa9"}};
    struct contact c = {kv, 2};
    struct template *t = NULL;
    struct err e = {0};
    struct buf out;

    buf_init(&out);
    cr_assert_eq(template_compile(&t, "{{ v | upcase }}{{ w | upcase }}", 32, &e), 0);
    template_render(t, TEMPLATE_TEXT, look, &c, &out, &e);
    cr_assert_eq(out.len, 7);
    cr_assert_eq(memcmp(out.p,
                        "\xc3"
                        "A\xe6\x97\xa5\xc3\x89",
                        7),
                 0);
    template_free(t);
    buf_release(&out);
}

UTEST(template, tokens_and_missing)
{
    const char *src = "{{ first_name }} {{ nobody | default: 'x' }} {{ empty }}";
    static const struct kv full_kv[] = {{"first_name", "a"}, {"empty", "b"}};
    struct contact full = {full_kv, 2};
    struct template *t = NULL;
    struct err e = {0};

    cr_assert_eq(template_compile(&t, src, strlen(src), &e), 0);
    cr_assert_eq(template_token_count(t), 3);
    cr_assert_str_eq(template_token_name(t, 0), "first_name");
    cr_assert_str_eq(template_token_name(t, 1), "nobody");
    cr_assert_str_eq(template_token_name(t, 2), "empty");
    cr_assert_eq(template_token_has_default(t, 0), 0);
    cr_assert_eq(template_token_has_default(t, 1), 1);
    cr_assert_eq(template_missing(t, look, &ada), 1); /* empty is "" */
    cr_assert_eq(template_missing(t, look, &full), 0);
    template_free(t);
    template_free(NULL);
}

/* lookup for output_cap: every name is ctx, a big value of '<' */
static const char *big_value(void *ctx, const char *name, size_t *len)
{
    (void)name;
    *len = strlen(ctx);
    return ctx;
}

UTEST(template, output_cap)
{
    size_t mib = 1024 * 1024;
    char *v = malloc(mib + 1);
    struct template *t = NULL;
    struct err e = {0};
    struct buf out;

    memset(v, '<', mib);
    v[mib] = '\0';
    buf_init(&out);
    buf_adds(&out, "kept");
    /* two tokens: 2 x 4 MiB of "&lt;" fit under 16 MiB */
    cr_assert_eq(template_compile(&t, "{{a}}{{b}}", 10, &e), 0);
    cr_assert_eq(template_render(t, TEMPLATE_HTML, big_value, v, &out, &e), 0, "%s", e.msg);
    cr_assert_eq(out.len, 4 + 8 * mib);
    template_free(t);
    /* five: 20 MiB is refused, and what was in out before stays as it was */
    buf_reset(&out);
    buf_adds(&out, "kept");
    cr_assert_eq(template_compile(&t, "{{a}}{{a}}{{a}}{{a}}{{a}}", 25, &e), 0);
    cr_assert_eq(template_render(t, TEMPLATE_HTML, big_value, v, &out, &e), E_TOOBIG);
    cr_assert_str_eq(e.msg, "the rendered message passes 16777216 bytes");
    cr_assert_str_eq(out.p, "kept");
    cr_assert_eq(out.len, 4);
    /* raw, the same five fit */
    err_clear(&e);
    cr_assert_eq(template_render(t, TEMPLATE_TEXT, big_value, v, &out, &e), 0, "%s", e.msg);
    cr_assert_eq(out.len, 4 + 5 * mib);
    template_free(t);
    buf_release(&out);
    free(v);
}

UTEST(template, size_caps)
{
    struct template *t = NULL;
    struct err e = {0};
    struct buf src, out;
    int i;

    buf_init(&src);
    buf_init(&out);
    for (i = 0; i < TEMPLATE_MAX_SOURCE; i += 8)
        buf_add(&src, "abcdefgh", 8);
    cr_assert_eq(template_compile(&t, src.p, src.len, &e), 0);
    template_free(t);
    buf_addc(&src, 'x');
    cr_assert_eq(template_compile(&t, src.p, src.len, &e), E_TOOBIG);
    cr_assert_str_eq(e.msg, "the template has 524289 bytes; at most 524288 are allowed");
    cr_assert_eq(template_html_to_text(src.p, src.len, &out, &e), E_TOOBIG);
    buf_reset(&src);
    for (i = 0; i < TEMPLATE_MAX_TOKENS; i++)
        buf_adds(&src, "{{a}}");
    err_clear(&e);
    cr_assert_eq(template_compile(&t, src.p, src.len, &e), 0);
    template_free(t);
    buf_adds(&src, "\n {{a}}");
    cr_assert_eq(template_compile(&t, src.p, src.len, &e), E_TOOBIG);
    cr_assert_str_eq(e.msg, "line 2, column 2: a template may have at most 1000 tokens");
    err_clear(&e);
    buf_reset(&src);
    buf_adds(&src, "{{a");
    for (i = 0; i < TEMPLATE_MAX_FILTERS; i++)
        buf_adds(&src, "|upcase");
    buf_adds(&src, "}}");
    cr_assert_eq(template_compile(&t, src.p, src.len, &e), 0, "%s", e.msg);
    template_free(t);
    src.len -= 2;
    buf_adds(&src, "|upcase}}");
    cr_assert_eq(template_compile(&t, src.p, src.len, &e), E_TOOBIG);
    cr_assert_str_eq(e.msg, "line 1, column 61: a token may have at most 8 filters");
    err_clear(&e);
    buf_reset(&src);
    buf_adds(&src, "{{ ");
    for (i = 0; i < TEMPLATE_MAX_NAME; i++)
        buf_addc(&src, 'n');
    buf_adds(&src, " }}");
    cr_assert_eq(template_compile(&t, src.p, src.len, &e), 0);
    template_free(t);
    buf_reset(&src);
    buf_adds(&src, "{{ ");
    for (i = 0; i <= TEMPLATE_MAX_NAME; i++)
        buf_addc(&src, 'n');
    buf_adds(&src, " }}");
    cr_assert_eq(template_compile(&t, src.p, src.len, &e), E_INVAL);
    cr_assert_str_eq(e.msg, "line 1, column 4: a name may have at most 64 characters");
    buf_release(&src);
    buf_release(&out);
}

/* ---- HTML to text -------------------------------------------------------------------------- */

static void check_text(const char *html, const char *want)
{
    struct buf out;
    struct err e = {0};

    buf_init(&out);
    cr_assert_eq(template_html_to_text(html, strlen(html), &out, &e), 0);
    cr_assert_str_eq(out.p ? out.p : "", want, "html '%s'", html);
    buf_release(&out);
}

UTEST(template, html_to_text)
{
    check_text("", "");
    check_text("<p>Hello   <b>world</b></p>\n<p>Bye</p>", "Hello world\n\nBye\n");
    check_text("a<br>b<br/>c<BR />d", "a\nb\nc\nd\n");
    check_text("<div>one</div><div>two</div>", "one\n\ntwo\n");
    check_text("<h1>Title</h1>text<h6>x</h6>", "Title\ntext\nx\n");
    check_text("<ul><li>a</li><li>b</li></ul>", "a\nb\n");
    check_text("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc\n");
    check_text("x<script>var a = '<p>no</p>';</script>y<style>p { color: red }</style>z", "xyz\n");
    check_text("x<SCRIPT type=a>alert(1)</SCRIPT >y", "xy\n");
    check_text("a<!-- a <p> comment -->b<!-- open", "ab\n");
    check_text("See <a href=\"https://x.io/?a=1&amp;b=2\">our site</a>.",
               "See our site (https://x.io/?a=1&b=2).\n");
    check_text("<a href='https://x.io'>https://x.io</a>", "https://x.io\n");
    check_text("<a name=top>top</a> <a href=\"\">none</a>", "top none\n");
    check_text("<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
               "Unsubscribe ({{ unsubscribe_url }})\n");
    check_text("&amp; &lt; &gt; &quot; &#39; a&nbsp;b &#65;&#x42;&#X43; &#233; &#x1F600; &bogus; "
               "& &#; &#0; &#xD800;",
               "& < > \" ' a b ABC é 😀 &bogus; & &#; \xEF\xBF\xBD \xEF\xBF\xBD\n");
    check_text("a < b and c > d", "a < b and c > d\n");
    check_text("Hi {{ first_name | default: \"<b>you</b> &amp;\" }}!\n\n\n\n<p></p><p></p>x",
               "Hi {{ first_name | default: \"<b>you</b> &amp;\" }}!\n\nx\n");
    check_text("  lots   of\n\n\tspace  ", "lots of space\n");
    check_text("<p>{{ x | default: \"}} <b> &amp;\" }}</p><p>{{ y | default: 'a\\'}}<' }}</p>",
               "{{ x | default: \"}} <b> &amp;\" }}\n\n{{ y | default: 'a\\'}}<' }}\n");
    check_text("<p>a</p>\n\n<p></p>\n<br><br><br>b", "a\n\nb\n");
}

UTEST(template, html_to_text_then_compile)
{
    const char *html = "<p>Dear {{ first_name | capitalize | default: 'friend' }},</p>"
                       "<p>Bye &amp; <a href=\"{{ unsubscribe_url }}\">leave</a></p>";
    struct buf text;
    struct err e = {0};
    struct template *t = NULL;
    char *got;

    buf_init(&text);
    cr_assert_eq(template_html_to_text(html, strlen(html), &text, &e), 0);
    got = render(text.p, TEMPLATE_TEXT);
    cr_assert_str_eq(got, "Dear Ada,\n\nBye & leave ()\n");
    free(got);
    cr_assert_eq(template_compile(&t, text.p, text.len, &e), 0);
    cr_assert_eq(template_token_count(t), 2);
    template_free(t);
    buf_release(&text);
}

/* ---- random templates against the reference renderer --------------------------------------- */

/* The characters values, defaults and text are drawn from; the pairs the reference knows
 * how to change case, and some it must leave (ß, ÿ, 日, ό). */
static const char *const pieces[] = {"a",  "Z",  "q",    " ",  "&", "<", ">", "\"", "'", "\r",
                                     "\n", "\t", "\x01", "é",  "É", "ω", "Ω", "ж",  "Ж", "ß",
                                     "ÿ",  "日", "ό",    "\\", "|", "}", "{", "9",  "_"};
static const char *const case_pairs[][2] = {{"é", "É"}, {"ω", "Ω"}, {"ж", "Ж"}};
static const char *const ref_names[] = {
    "n0", "n1", "n2", "email", "external_id", "unsubscribe_url", "gone"};

struct ref_filter {
    int kind; /* 0 default, 1 upcase, 2 downcase, 3 capitalize */
    char arg[32];
};

struct ref_part {
    int is_token;
    char text[64];
    const char *name;
    struct ref_filter f[TEMPLATE_MAX_FILTERS];
    int nf;
};

static void rand_str(struct rng *r, char *out, size_t cap, int maxpieces)
{
    int k = rng_int(r, maxpieces + 1);

    out[0] = '\0';
    for (int i = 0; i < k; i++) {
        const char *p = pieces[rng_int(r, (int)(sizeof pieces / sizeof pieces[0]))];
        size_t len = strlen(out);
        if (len + strlen(p) < cap)
            snprintf(out + len, cap - len, "%s", p);
    }
}

/* The reference: one character at a time, looked up in the pairs or mapped as ASCII. */
static char *ref_case(const char *s, int mode)
{
    struct buf b;
    int first = 1;

    buf_init(&b);
    buf_add(&b, "", 0);
    while (*s) {
        int up = mode == 1 || (mode == 3 && first), done = 0;
        first = 0;
        for (size_t k = 0; k < sizeof case_pairs / sizeof case_pairs[0] && !done; k++)
            for (int side = 0; side < 2 && !done; side++)
                if (strncmp(s, case_pairs[k][side], strlen(case_pairs[k][side])) == 0) {
                    buf_adds(&b, case_pairs[k][up ? 1 : 0]);
                    s += strlen(case_pairs[k][side]);
                    done = 1;
                }
        if (done)
            continue;
        if ((unsigned char)*s < 0x80) {
            char c = *s++;
            if (up && c >= 'a' && c <= 'z')
                c = (char)(c - 'a' + 'A');
            else if (!up && c >= 'A' && c <= 'Z')
                c = (char)(c - 'A' + 'a');
            buf_addc(&b, c);
            continue;
        }
        do
            buf_addc(&b, *s++);
        while (((unsigned char)*s & 0xC0) == 0x80);
    }
    return buf_take(&b);
}

static char *ref_escape(const char *s, enum template_escape esc)
{
    struct buf b;

    buf_init(&b);
    buf_add(&b, "", 0);
    for (; *s; s++) {
        if (esc == TEMPLATE_HTML && *s == '&')
            buf_adds(&b, "&amp;");
        else if (esc == TEMPLATE_HTML && *s == '<')
            buf_adds(&b, "&lt;");
        else if (esc == TEMPLATE_HTML && *s == '>')
            buf_adds(&b, "&gt;");
        else if (esc == TEMPLATE_HTML && *s == '"')
            buf_adds(&b, "&quot;");
        else if (esc == TEMPLATE_HTML && *s == '\'')
            buf_adds(&b, "&#39;");
        else if (esc == TEMPLATE_HEADER && ((unsigned char)*s < 0x20 || *s == 0x7f))
            buf_addc(&b, ' ');
        else
            buf_addc(&b, *s);
    }
    return buf_take(&b);
}

static char *ref_render(const struct ref_part *parts, int n, enum template_escape esc,
                        struct contact *c)
{
    struct buf b;

    buf_init(&b);
    buf_add(&b, "", 0);
    for (int i = 0; i < n; i++) {
        char *v, *x;
        size_t len = 0;
        const char *got;
        if (!parts[i].is_token) {
            x = ref_escape(parts[i].text, esc == TEMPLATE_HEADER ? esc : TEMPLATE_TEXT);
            buf_adds(&b, x);
            free(x);
            continue;
        }
        got = look(c, parts[i].name, &len);
        v = xstrdup(got ? got : "");
        for (int k = 0; k < parts[i].nf; k++) {
            if (parts[i].f[k].kind == 0) {
                if (v[0] == '\0') {
                    free(v);
                    v = xstrdup(parts[i].f[k].arg);
                }
                continue;
            }
            x = ref_case(v, parts[i].f[k].kind);
            free(v);
            v = x;
        }
        x = ref_escape(v, esc);
        buf_adds(&b, x);
        free(x);
        free(v);
    }
    return buf_take(&b);
}

static const char *ws(struct rng *r)
{
    static const char *const w[] = {"", " ", "  ", "\n", "\t ", " \r\n"};
    return w[rng_int(r, 6)];
}

/* Writes the source of parts into src. */
static void ref_source(struct rng *r, const struct ref_part *parts, int n, struct buf *src)
{
    static const char *const fnames[] = {"default", "upcase", "downcase", "capitalize"};

    for (int i = 0; i < n; i++) {
        if (!parts[i].is_token) {
            buf_adds(src, parts[i].text);
            continue;
        }
        buf_printf(src, "{{%s%s%s", ws(r), parts[i].name, ws(r));
        for (int k = 0; k < parts[i].nf; k++) {
            buf_printf(src, "|%s%s%s", ws(r), fnames[parts[i].f[k].kind], ws(r));
            if (parts[i].f[k].kind == 0) {
                char q = rng_int(r, 2) ? '"' : '\'';
                buf_printf(src, ":%s%c", ws(r), q);
                for (const char *a = parts[i].f[k].arg; *a; a++) {
                    if (*a == q || *a == '\\')
                        buf_addc(src, '\\');
                    buf_addc(src, *a);
                }
                buf_printf(src, "%c%s", q, ws(r));
            }
        }
        buf_adds(src, "}}");
    }
}

UTEST(template, random_against_reference)
{
    struct rng r = {test_seed() ^ 0x7e3a11ceULL};
    char vals[6][40];
    struct kv kv[6];
    struct contact c = {kv, 6};
    struct ref_part parts[12];
    struct buf src, out;
    int round;

    buf_init(&src);
    buf_init(&out);
    for (round = 0; round < 3000; round++) {
        struct template *t = NULL;
        struct err e = {0};
        int n = rng_int(&r, 12), i;

        for (i = 0; i < 6; i++) {
            rand_str(&r, vals[i], sizeof vals[i], 6);
            kv[i].name = ref_names[i];
            kv[i].value = rng_int(&r, 5) == 0 ? NULL : vals[i];
        }
        for (i = 0; i < n; i++) {
            struct ref_part *p = &parts[i];
            memset(p, 0, sizeof *p);
            p->is_token = rng_int(&r, 2);
            if (!p->is_token) {
                rand_str(&r, p->text, sizeof p->text, 10);
                /* no "{{" in a text run, nor a '{' that would make one with a token */
                for (char *s = p->text; *s; s++)
                    if (*s == '{')
                        *s = '(';
                continue;
            }
            p->name = ref_names[rng_int(&r, 7)];
            p->nf = rng_int(&r, 4);
            for (int k = 0; k < p->nf; k++) {
                p->f[k].kind = rng_int(&r, 4);
                if (p->f[k].kind == 0)
                    rand_str(&r, p->f[k].arg, sizeof p->f[k].arg, 5);
            }
        }
        buf_reset(&src);
        ref_source(&r, parts, n, &src);
        cr_assert_eq(template_compile(&t, src.p ? src.p : "", src.len, &e), 0,
                     "seed %llu round %d: '%s': %s", (unsigned long long)test_seed(), round, src.p,
                     e.msg);
        for (int esc = TEMPLATE_HTML; esc <= TEMPLATE_HEADER; esc++) {
            char *want = ref_render(parts, n, (enum template_escape)esc, &c);
            buf_reset(&out);
            buf_adds(&out, "pre:"); /* render appends */
            template_render(t, (enum template_escape)esc, look, &c, &out, &e);
            cr_assert_eq(strncmp(out.p, "pre:", 4), 0);
            cr_assert_str_eq(out.p + 4, want, "seed %llu round %d mode %d: template '%s'",
                             (unsigned long long)test_seed(), round, esc, src.p);
            free(want);
        }
        template_free(t);
    }
    buf_release(&src);
    buf_release(&out);
}
