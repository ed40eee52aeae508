/* tests/unit/message.c -- a stored template version compiled and rendered for a contact
 * (src/campaign/message.c): escaping per part, the subject's CR/LF rule, the unsubscribe
 * footer, the derived text part, built-ins over attributes, numbers and other JSON values,
 * the missing rule, and compile errors per part. */
#include <jansson.h>

#include "campaign/campaign.h"
#include "core/map.h"
#include "helpers.h"
#include "store/store.h"

static struct store_template version(const char *subject, const char *html, const char *text)
{
    struct store_template t = {
        .id = 1,
        .name = "t",
        .subject = subject,
        .html = html,
        .text = text,
        .from_email = "news@example.com",
        .version = 1,
    };
    return t;
}

static struct message_template *compile(const char *subject, const char *html, const char *text)
{
    struct store_template t = version(subject, html, text);
    struct message_template *mt = NULL;
    struct errlist errs = {0};
    struct err e = {0};

    cr_assert_eq(message_template_compile(&t, &mt, &errs, &e), 0, "%s", e.msg);
    cr_assert_eq(errs.n, 0);
    return mt;
}

static const char *attrs_json =
    "{\"first_name\": \"<Ada> & 'Bob'\", \"city\": \"Paris\", \"evil\": \"Hi\\r\\nBcc: x@y.z\","
    " \"age\": 36, \"score\": 0.1, \"big\": 1e21, \"three\": 3.0, \"vip\": true, \"churned\": "
    "false,"
    " \"gone\": null, \"tags\": [\"a\"], \"obj\": {\"k\": 1}, \"empty\": \"\","
    " \"email\": \"attr@evil.example\", \"unsubscribe_url\": \"http://evil.example/\"}";

struct rendered {
    struct message_rendered r;
    json_t *attrs;
};

static void render_for(const struct message_template *mt, struct rendered *out)
{
    struct message_contact c = {.external_id = "u-1",
                                .email = "ada@example.com",
                                .unsubscribe_url = "https://x.example/u/TOK?a=1&b=2"};
    struct err e = {0};

    memset(out, 0, sizeof *out);
    out->attrs = json_loads(attrs_json, 0, NULL);
    cr_assert_not_null(out->attrs);
    c.attrs = out->attrs;
    cr_assert_eq(message_render(mt, &c, &out->r, &e), 0, "%s", e.msg);
}

static void rendered_release(struct rendered *r)
{
    message_rendered_release(&r->r);
    json_decref(r->attrs);
}

UTEST(message, escaping_per_part)
{
    struct message_template *mt =
        compile("Hi {{ first_name }}", "<p>Hi {{ first_name }}</p>{{ unsubscribe_url }}",
                "Hi {{ first_name }} {{ unsubscribe_url }}");
    struct rendered r;

    render_for(mt, &r);
    cr_assert_str_eq(r.r.subject.p, "Hi <Ada> & 'Bob'");
    cr_assert_str_eq(r.r.html.p, "<p>Hi &lt;Ada&gt; &amp; &#39;Bob&#39;</p>"
                                 "https://x.example/u/TOK?a=1&amp;b=2");
    cr_assert_str_eq(r.r.text.p, "Hi <Ada> & 'Bob' https://x.example/u/TOK?a=1&b=2");
    cr_assert_eq(message_template_has_unsubscribe(mt), 1);
    cr_assert_eq(message_template_footer_added(mt), 0);
    rendered_release(&r);
    message_template_free(mt);
}

UTEST(message, subject_crlf_from_an_attribute_becomes_spaces)
{
    struct message_template *mt = compile("Re: {{ evil }}!", "{{ unsubscribe_url }}", "x");
    struct rendered r;

    render_for(mt, &r);
    cr_assert_str_eq(r.r.subject.p, "Re: Hi  Bcc: x@y.z!");
    cr_assert_null(strchr(r.r.subject.p, '\r'));
    cr_assert_null(strchr(r.r.subject.p, '\n'));
    rendered_release(&r);
    message_template_free(mt);
}

UTEST(message, footer_before_body_end_or_at_the_end)
{
    struct message_template *mt =
        compile("S", "<html><body><p>Hello</p></BODY></html>", "Plain {{ unsubscribe_url }}");
    struct rendered r;
    const char *at, *end;

    render_for(mt, &r);
    cr_assert_eq(message_template_has_unsubscribe(mt), 0);
    cr_assert_eq(message_template_footer_added(mt), 1);
    at = strstr(r.r.html.p, "<a href=\"https://x.example/u/TOK?a=1&amp;b=2\">Unsubscribe</a>");
    end = strstr(r.r.html.p, "</BODY></html>");
    cr_assert_not_null(at, "%s", r.r.html.p);
    cr_assert_not_null(end);
    cr_assert_lt(at, end, "the footer goes before </body>");
    cr_assert_eq(strncmp(r.r.html.p, "<html><body><p>Hello</p><p ", 27), 0, "%s", r.r.html.p);
    /* The text part shows the link itself: no footer there. */
    cr_assert_str_eq(r.r.text.p, "Plain https://x.example/u/TOK?a=1&b=2");
    rendered_release(&r);
    message_template_free(mt);

    /* No </body>: at the end; a text without the link gets one too. */
    mt = compile("S", "<p>Hello</p>", "Plain");
    render_for(mt, &r);
    cr_assert_eq(strncmp(r.r.html.p, "<p>Hello</p><p ", 15), 0, "%s", r.r.html.p);
    cr_assert_not_null(strstr(r.r.html.p, "Unsubscribe</a></p>"));
    cr_assert_eq(strcmp(r.r.html.p + r.r.html.len - 4, "</p>"), 0);
    cr_assert_str_eq(r.r.text.p, "Plain\n\n-- \nUnsubscribe: https://x.example/u/TOK?a=1&b=2\n");
    rendered_release(&r);
    message_template_free(mt);

    /* A derived text (it ends with a line break) gets the same one blank line. */
    mt = compile("S", "<p>Hello</p>", NULL);
    render_for(mt, &r);
    cr_assert_str_eq(r.r.text.p, "Hello\n\n-- \nUnsubscribe: https://x.example/u/TOK?a=1&b=2\n");
    rendered_release(&r);
    message_template_free(mt);

    /* The HTML shows it, a given text does not: only the text gets a footer. */
    mt = compile("S", "<a href=\"{{ unsubscribe_url }}\">bye</a>", "Plain");
    render_for(mt, &r);
    cr_assert_eq(message_template_has_unsubscribe(mt), 1);
    cr_assert_eq(message_template_footer_added(mt), 1);
    cr_assert_str_eq(r.r.html.p, "<a href=\"https://x.example/u/TOK?a=1&amp;b=2\">bye</a>");
    cr_assert_not_null(strstr(r.r.text.p, "Unsubscribe: https://"));
    rendered_release(&r);
    message_template_free(mt);
}

UTEST(message, derived_text_part)
{
    struct message_template *mt =
        compile("S",
                "<h1>Hi {{ first_name | default: \"there\" }}</h1><p>From {{ city }} &amp; co</p>"
                "<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
                NULL);
    struct rendered r;

    render_for(mt, &r);
    cr_assert_str_eq(r.r.text.p, "Hi <Ada> & 'Bob'\n\nFrom Paris & co\n"
                                 "Unsubscribe (https://x.example/u/TOK?a=1&b=2)\n");
    cr_assert_eq(message_template_footer_added(mt), 0, "the derived text shows the link too");
    rendered_release(&r);
    message_template_free(mt);

    /* An entity that decodes to '{' makes a token in the derived text: compiled too. */
    mt = compile("S", "<p>&#123;{ city }}</p>", NULL);
    render_for(mt, &r);
    cr_assert_eq(strncmp(r.r.html.p, "<p>&#123;{ city }}</p><p ", 25), 0, "the HTML as written");
    cr_assert_eq(strncmp(r.r.text.p, "Paris\n", 6), 0, "%s", r.r.text.p);
    rendered_release(&r);
    message_template_free(mt);
}

UTEST(message, builtins_win_over_attributes)
{
    struct message_template *mt =
        compile("{{ email }}|{{ external_id }}", "{{ unsubscribe_url }}", "{{ email }}");
    struct rendered r;

    render_for(mt, &r);
    cr_assert_str_eq(r.r.subject.p, "ada@example.com|u-1");
    cr_assert_str_eq(r.r.html.p, "https://x.example/u/TOK?a=1&amp;b=2");
    rendered_release(&r);
    message_template_free(mt);
}

UTEST(message, values_of_every_json_type)
{
    struct message_template *mt =
        compile("{{ age }}|{{ score }}|{{ big }}|{{ three }}|{{ vip }}|{{ churned }}|{{ gone }}|"
                "{{ tags }}|{{ obj }}|{{ gone | default: \"d\" }}",
                "{{ unsubscribe_url }}", "x");
    struct rendered r;

    render_for(mt, &r);
    cr_assert_str_eq(r.r.subject.p, "36|0.1|1e+21|3|true|false||||d");
    rendered_release(&r);
    message_template_free(mt);
}

static int missing_for(const struct message_template *mt, const char *attrs)
{
    json_t *a = json_loads(attrs, 0, NULL);
    struct message_contact c = {.email = "a@b.c", .attrs = a, .unsubscribe_url = "u"};
    int m = message_missing(mt, &c);

    json_decref(a);
    return m;
}

UTEST(message, missing_counts_tokens_without_default)
{
    struct message_template *mt =
        compile("Hi {{ first_name }}", "{{ city | default: \"?\" }} {{ unsubscribe_url }}",
                "{{ email }} {{ plan }}");

    cr_assert_eq(missing_for(mt, "{\"first_name\": \"A\", \"plan\": \"pro\"}"), 0);
    cr_assert_eq(missing_for(mt, "{\"plan\": \"pro\"}"), 1, "subject token missing");
    cr_assert_eq(missing_for(mt, "{\"first_name\": \"A\"}"), 1, "text token missing");
    cr_assert_eq(missing_for(mt, "{\"first_name\": \"\", \"plan\": \"pro\"}"), 1, "empty");
    cr_assert_eq(missing_for(mt, "{\"first_name\": null, \"plan\": \"pro\"}"), 1, "null");
    cr_assert_eq(missing_for(mt, "{\"first_name\": 0, \"plan\": false}"), 0, "0 and false");
    message_template_free(mt);
}

UTEST(message, compile_errors_per_part)
{
    struct store_template t =
        version("Hi {{ name", "<p>\n    {{ x | upper }}</p>", "ok {{ y | default }}");
    struct message_template *mt = (struct message_template *)1;
    struct errlist errs = {0};
    struct err e = {0};

    cr_assert_eq(message_template_compile(&t, &mt, &errs, &e), E_INVAL);
    cr_assert_null(mt);
    cr_assert_eq(errs.n, 3);
    cr_assert_str_eq(errs.items[0].path, "/subject");
    cr_assert_str_eq(errs.items[0].msg, "line 1, column 4: '{{' is not closed by '}}'");
    cr_assert_str_eq(errs.items[1].path, "/html");
    cr_assert_str_eq(errs.items[1].msg, "line 2, column 12: unknown filter 'upper' (filters: "
                                        "default, upcase, downcase, capitalize)");
    cr_assert_str_eq(errs.items[2].path, "/text");
    cr_assert(strstr(errs.items[2].msg, "line 1, column 19: filter 'default' needs an argument"),
              "%s", errs.items[2].msg);

    /* The derived text does not compile while the HTML does: said at /html. */
    t = version("S", "<p>&#123;{ x </p>", NULL);
    memset(&errs, 0, sizeof errs);
    err_clear(&e);
    cr_assert_eq(message_template_compile(&t, &mt, &errs, &e), E_INVAL);
    cr_assert_eq(errs.n, 1);
    cr_assert_str_eq(errs.items[0].path, "/html");
    cr_assert(strstr(errs.items[0].msg, "derived"), "%s", errs.items[0].msg);
    cr_assert(strstr(errs.items[0].msg, "line 1, column 1: '{{' is not closed"), "%s",
              errs.items[0].msg);
}

UTEST(message, sender_fields)
{
    struct store_template t = version("S", "{{ unsubscribe_url }}", NULL);
    struct message_template *mt = NULL;
    struct errlist errs = {0};
    struct err e = {0};

    t.from_name = "News";
    t.reply_to = "";
    cr_assert_eq(message_template_compile(&t, &mt, &errs, &e), 0, "%s", e.msg);
    cr_assert_str_eq(message_template_from_email(mt), "news@example.com");
    cr_assert_str_eq(message_template_from_name(mt), "News");
    cr_assert_null(message_template_reply_to(mt));
    message_template_free(mt);
}
