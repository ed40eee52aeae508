/* tests/unit/mime.c -- whole messages from mime_build (src/campaign/mime.c).
 *
 * Every message is checked on the wire form (CRLF everywhere and no bare LF or CR, no
 * line over 998 bytes, List-Unsubscribe written raw and exact, the id headers exact),
 * then parsed back with GMime: the subject and the display name decode to what went
 * in, and both bodies decode byte for byte. */
#include <gmime/gmime.h>

#include "campaign/campaign.h"
#include "helpers.h"

static const char *const ids[] = {"X-Engage-Message-Id", "7.42", "X-SMTPAPI",
                                  "{\"unique_args\":{\"engage_message_id\":\"7.42\"}}"};

static struct mime_message sample(void)
{
    struct mime_message m = {
        .from_email = "news@example.com",
        .from_name = "Zoë Müller",
        .to = "jane@example.org",
        .reply_to = "help@example.com",
        .subject = "Ihre Wochenübersicht ✓ — 3 neue Angebote 🎉",
        .html = "<p>Hallo Zoë</p>",
        .text = "Hallo Zoë\r\n",
        .message_id = "7.42",
        .message_id_domain = "example.com",
        .date_ms = 1765000000000LL,
        .list_unsubscribe = "https://mail.example.com/u/abc",
        .headers = ids,
        .nheaders = 2,
    };
    return m;
}

static void build(const struct mime_message *m, struct buf *out)
{
    struct err e = {0};

    mime_init();
    buf_init(out);
    cr_assert_eq(mime_build(m, out, &e), 0, "%s", e.msg);
    cr_assert_gt(out->len, 100);
}

/* CRLF everywhere, nothing else, no line over 998 bytes (without its CRLF). */
static void assert_wire_form(const struct buf *b)
{
    size_t i, line = 0;

    for (i = 0; i < b->len; i++) {
        if (b->p[i] == '\r') {
            cr_assert(i + 1 < b->len && b->p[i + 1] == '\n', "bare CR at byte %zu", i);
            cr_assert_leq(line, 998, "line of %zu bytes ends at %zu", line, i);
            line = 0;
            i++;
        } else {
            cr_assert_neq(b->p[i], '\n', "bare LF at byte %zu", i);
            line++;
        }
    }
    cr_assert_leq(line, 998);
}

/* The header block (up to the first empty line), unfolded lines kept as they are. */
static char *headers_of(const struct buf *b)
{
    const char *end = strstr(b->p, "\r\n\r\n");

    cr_assert_not_null(end);
    return xstrndup(b->p, (size_t)(end - b->p) + 2);
}

static int has_line(const char *headers, const char *line)
{
    char *want = xasprintf("\r\n%s\r\n", line);
    int found = strstr(headers, want) != NULL || strncmp(headers, want + 2, strlen(want) - 2) == 0;

    free(want);
    return found;
}

static GMimeMessage *parse(const struct buf *b)
{
    GMimeStream *st = g_mime_stream_mem_new_with_buffer(b->p, b->len);
    GMimeParser *p = g_mime_parser_new_with_stream(st);
    GMimeMessage *msg = g_mime_parser_construct_message(p, NULL);

    g_object_unref(p);
    g_object_unref(st);
    cr_assert_not_null(msg);
    return msg;
}

/* The decoded content of part i of the message's multipart/alternative. */
static char *decoded_part(GMimeMessage *msg, int i, const char *type)
{
    GMimeObject *top = g_mime_message_get_mime_part(msg);
    GMimeObject *part;
    GMimeStream *st;
    GByteArray *ba;
    char *s;

    cr_assert(GMIME_IS_MULTIPART(top));
    cr_assert_str_eq(g_mime_content_type_get_media_subtype(g_mime_object_get_content_type(top)),
                     "alternative");
    part = g_mime_multipart_get_part(GMIME_MULTIPART(top), i);
    cr_assert_str_eq(g_mime_content_type_get_media_subtype(g_mime_object_get_content_type(part)),
                     type);
    cr_assert_str_eq(g_mime_object_get_content_type_parameter(part, "charset"), "utf-8");
    cr_assert_eq(g_mime_part_get_content_encoding(GMIME_PART(part)),
                 GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
    st = g_mime_stream_mem_new();
    g_mime_data_wrapper_write_to_stream(g_mime_part_get_content(GMIME_PART(part)), st);
    ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(st));
    s = xstrndup((const char *)ba->data, ba->len);
    g_object_unref(st);
    return s;
}

UTEST(mime, wire_form_with_a_long_single_line_html_body)
{
    struct mime_message m = sample();
    struct buf b, html;
    char *h;

    buf_init(&html);
    buf_adds(&html, "<p>");
    for (int i = 0; i < 1000; i++)
        buf_adds(&html, "abcé "); /* 5,000 characters, one line, non-ASCII and spaces */
    buf_adds(&html, "</p>");
    m.html = html.p;
    build(&m, &b);
    assert_wire_form(&b);
    h = headers_of(&b);
    for (size_t i = 0; h[i]; i++)
        cr_assert_lt((unsigned char)h[i], 0x80, "non-ASCII header byte at %zu", i);
    cr_assert(has_line(h, "MIME-Version: 1.0"));
    cr_assert(strncmp(h, "Date: ", 6) == 0 || strstr(h, "\r\nDate: ") != NULL);
    cr_assert_not_null(strstr(b.p, "Content-Type: multipart/alternative"));
    free(h);
    buf_release(&html);
    buf_release(&b);
}

UTEST(mime, list_unsubscribe_is_raw_and_exact_even_when_long)
{
    struct mime_message m = sample();
    struct buf b;
    char url[256], *line, *h;

    /* 200 characters: GMime would fold or RFC 2047-encode it if it were a normal value */
    memcpy(url, "https://mail.example.com/u/", 27);
    for (int i = 27; i < 200; i++)
        url[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[i % 64];
    url[200] = '\0';
    m.list_unsubscribe = url;
    build(&m, &b);
    assert_wire_form(&b);
    h = headers_of(&b);
    line = xasprintf("List-Unsubscribe: <%s>", url);
    cr_assert(has_line(h, line), "no exact List-Unsubscribe line in:\n%s", h);
    cr_assert(has_line(h, "List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    free(line);
    free(h);
    buf_release(&b);
}

UTEST(mime, no_list_unsubscribe_when_none_given)
{
    struct mime_message m = sample();
    struct buf b;

    m.list_unsubscribe = NULL;
    build(&m, &b);
    cr_assert_null(strstr(b.p, "List-Unsubscribe"));
    buf_release(&b);
}

UTEST(mime, utf8_subject_and_display_name_decode_back_equal)
{
    struct mime_message m = sample();
    GMimeMessage *msg;
    InternetAddressList *from;
    InternetAddress *ia;
    struct buf b;
    char *h;

    build(&m, &b);
    h = headers_of(&b);
    cr_assert_null(strstr(h, "iso-8859"), "display names are forced to UTF-8:\n%s", h);
    cr_assert(strcasestr(h, "=?utf-8?") != NULL);
    msg = parse(&b);
    cr_assert_str_eq(g_mime_message_get_subject(msg), m.subject);
    from = g_mime_message_get_from(msg);
    cr_assert_eq(internet_address_list_length(from), 1);
    ia = internet_address_list_get_address(from, 0);
    cr_assert_str_eq(internet_address_get_name(ia), m.from_name);
    cr_assert_str_eq(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)), m.from_email);
    ia = internet_address_list_get_address(g_mime_message_get_to(msg), 0);
    cr_assert_str_eq(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)), m.to);
    ia = internet_address_list_get_address(g_mime_message_get_reply_to(msg), 0);
    cr_assert_str_eq(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)), m.reply_to);
    g_object_unref(msg);
    free(h);
    buf_release(&b);
}

UTEST(mime, bodies_decode_back_byte_identical)
{
    struct mime_message m = sample();
    struct buf b, html, text;
    GMimeMessage *msg;
    char *got;

    /* what quoted-printable must get right: '=' signs, trailing spaces and tabs, a
     * leading dot and "From " (both mean something to SMTP and mbox), control-free
     * non-ASCII, a line far over 76 characters, and CRLF line ends */
    buf_init(&text);
    buf_adds(&text, "Hallo Zoë, a=b ==\r\n.leading dot\r\nFrom me  \r\ntab\t\r\n\r\n");
    for (int i = 0; i < 300; i++)
        buf_adds(&text, "wörd= ");
    buf_adds(&text, "\r\nend");
    buf_init(&html);
    buf_adds(&html, "<html><body style=\"a=b\">");
    for (int i = 0; i < 1000; i++)
        buf_adds(&html, "<b>ü</b> ");
    buf_adds(&html, "</body></html>\r\n");
    m.text = text.p;
    m.html = html.p;
    build(&m, &b);
    assert_wire_form(&b);
    msg = parse(&b);
    got = decoded_part(msg, 0, "plain");
    cr_assert_eq(strlen(got), text.len);
    cr_assert_str_eq(got, text.p);
    free(got);
    got = decoded_part(msg, 1, "html");
    cr_assert_str_eq(got, html.p);
    free(got);
    g_object_unref(msg);
    buf_release(&text);
    buf_release(&html);
    buf_release(&b);
}

UTEST(mime, bare_lf_in_a_body_goes_out_as_crlf)
{
    struct mime_message m = sample();
    struct buf b;
    GMimeMessage *msg;
    char *got;

    m.text = "one\ntwo\rthree\r\n";
    build(&m, &b);
    assert_wire_form(&b);
    msg = parse(&b);
    got = decoded_part(msg, 0, "plain");
    cr_assert_str_eq(got, "one\r\ntwo\r\nthree\r\n");
    free(got);
    g_object_unref(msg);
    buf_release(&b);
}

UTEST(mime, id_headers_exact)
{
    struct mime_message m = sample();
    struct buf b;
    char *h;

    build(&m, &b);
    h = headers_of(&b);
    cr_assert(has_line(h, "X-Engage-Message-Id: 7.42"), "%s", h);
    cr_assert(has_line(h, "X-SMTPAPI: {\"unique_args\":{\"engage_message_id\":\"7.42\"}}"));
    free(h);
    buf_release(&b);
}

/* The Message-ID line of a built message (caller frees). */
static char *message_id_line(const struct mime_message *m)
{
    struct buf b;
    char *h, *p, *line;

    build(m, &b);
    h = headers_of(&b);
    p = strstr(h, "\r\nMessage-Id: ");
    if (p == NULL)
        p = strcasestr(h, "\r\nMessage-ID: ");
    cr_assert_not_null(p, "no Message-ID in:\n%s", h);
    p += 2;
    line = xstrndup(p, strcspn(p, "\r"));
    free(h);
    buf_release(&b);
    return line;
}

UTEST(mime, message_id_is_stable_for_the_same_ledger_row)
{
    struct mime_message m = sample();
    char *a, *b2, *c, *v;
    size_t i;

    a = message_id_line(&m);
    m.date_ms += 3600 * 1000; /* a retry an hour later, with another subject */
    m.subject = "Second try";
    b2 = message_id_line(&m);
    cr_assert_str_eq(a, b2);
    m.message_id = "7.43";
    c = message_id_line(&m);
    cr_assert_str_neq(a, c);
    /* <7.42.XXXXXXXX@example.com> with 8 hex digits */
    v = strchr(a, '<');
    cr_assert_not_null(v);
    cr_assert_eq(strncmp(v, "<7.42.", 6), 0, "%s", a);
    for (i = 6; i < 14; i++)
        cr_assert(strchr("0123456789abcdef", v[i]) != NULL, "%s", a);
    cr_assert_str_eq(v + 14, "@example.com>");
    free(a);
    free(b2);
    free(c);
}

UTEST(mime, refuses_what_would_make_a_wrong_message)
{
    static const char *const inject[] = {"X-Engage-Message-Id", "1.2\r\nBcc: x@y.z"};
    struct mime_message m;
    struct buf b;
    struct err e = {0};

    mime_init();
    buf_init(&b);
    m = sample();
    m.to = "not an address";
    cr_assert_eq(mime_build(&m, &b, &e), E_INVAL);
    m = sample();
    m.to = "a@b.c\r\nBcc: victim@example.com";
    cr_assert_eq(mime_build(&m, &b, &e), E_INVAL);
    m = sample();
    m.from_email = "";
    cr_assert_eq(mime_build(&m, &b, &e), E_INVAL);
    m = sample();
    m.list_unsubscribe = "https://x/u/a b";
    cr_assert_eq(mime_build(&m, &b, &e), E_INVAL);
    m = sample();
    m.headers = inject;
    m.nheaders = 1;
    cr_assert_eq(mime_build(&m, &b, &e), E_INVAL);
    m = sample();
    m.message_id = "7.42>";
    cr_assert_eq(mime_build(&m, &b, &e), E_INVAL);
    cr_assert_eq(b.len, 0, "nothing written on a refusal");
    buf_release(&b);
}

UTEST(mime, cr_lf_in_a_display_name_or_subject_never_makes_a_header)
{
    struct mime_message m = sample();
    struct buf b;
    char *h;

    m.from_name = "Evil\r\nBcc: victim@example.com";
    m.subject = "Hi\r\nBcc: other@example.com\nX-Spam: no";
    build(&m, &b);
    assert_wire_form(&b);
    h = headers_of(&b);
    cr_assert_null(strstr(h, "\r\nBcc:"), "%s", h);
    cr_assert_null(strstr(h, "\r\nX-Spam:"), "%s", h);
    free(h);
    buf_release(&b);
}

/* Headers whose name is name (case-insensitively, at a line start) in the block h. */
static int count_header(const char *h, const char *name)
{
    int n = 0;
    size_t k = strlen(name);

    for (const char *p = h; p; p = strstr(p, "\r\n")) {
        p += p == h ? 0 : 2;
        if (strncasecmp(p, name, k) == 0 && p[k] == ':')
            n++;
        if (*p == '\0')
            break;
    }
    return n;
}

/* A thread reuses one GMime message for all it builds: what one message had and the next
 * has not (display name, Reply-To, List-Unsubscribe, an id header) must not carry over,
 * and each message's own values and bodies must be its own. */
UTEST(mime, messages_built_in_a_row_share_nothing)
{
    static const char *const mailgun[] = {"X-Mailgun-Variables",
                                          "{\"engage_message_id\": \"7.44\"}"};
    struct mime_message full = sample(), bare = sample(), other = sample();
    const struct mime_message *seq[] = {&full, &bare, &other, &full, &bare};
    struct buf b;

    bare.from_name = NULL;
    bare.to = "bob@example.net";
    bare.reply_to = NULL;
    bare.subject = "plain";
    bare.html = "<p>second\r\nline</p>";
    bare.text = "second\rline";
    bare.message_id = "7.43";
    bare.list_unsubscribe = NULL;
    bare.headers = NULL;
    bare.nheaders = 0;
    other.message_id = "7.44";
    other.headers = mailgun;
    other.nheaders = 1;
    other.from_name = "Other Sender";
    for (size_t i = 0; i < sizeof seq / sizeof *seq; i++) {
        const struct mime_message *m = seq[i];
        GMimeMessage *msg;
        InternetAddress *from;
        char *h, *text, *html, *want;

        build(m, &b);
        assert_wire_form(&b);
        h = headers_of(&b);
        cr_assert_eq(count_header(h, "Reply-To"), m->reply_to ? 1 : 0, "%zu: %s", i, h);
        cr_assert_eq(count_header(h, "List-Unsubscribe"), m->list_unsubscribe ? 1 : 0, "%zu", i);
        cr_assert_eq(count_header(h, "List-Unsubscribe-Post"), m->list_unsubscribe ? 1 : 0);
        cr_assert_eq(count_header(h, "X-SMTPAPI"), m->headers == ids ? 1 : 0, "%zu: %s", i, h);
        cr_assert_eq(count_header(h, "X-Engage-Message-Id"), m->headers == ids ? 1 : 0);
        cr_assert_eq(count_header(h, "X-Mailgun-Variables"), m->headers == mailgun ? 1 : 0);
        cr_assert_eq(count_header(h, "From"), 1);
        cr_assert_eq(count_header(h, "To"), 1);
        cr_assert_eq(count_header(h, "Subject"), 1);
        want = xasprintf("Message-ID: <%s.", m->message_id);
        cr_assert_not_null(strcasestr(h, want), "%zu: %s", i, h);
        free(want);
        msg = parse(&b);
        cr_assert_str_eq(g_mime_message_get_subject(msg), m->subject);
        from = internet_address_list_get_address(g_mime_message_get_from(msg), 0);
        if (m->from_name)
            cr_assert_str_eq(internet_address_get_name(from), m->from_name);
        else
            cr_assert(internet_address_get_name(from) == NULL ||
                          internet_address_get_name(from)[0] == '\0',
                      "%zu: %s", i, h);
        cr_assert_str_eq(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(
                             internet_address_list_get_address(g_mime_message_get_to(msg), 0))),
                         m->to);
        text = decoded_part(msg, 0, "plain");
        html = decoded_part(msg, 1, "html");
        cr_assert_str_eq(text, m == &bare ? "second\r\nline" : "Hallo Zoë\r\n");
        cr_assert_str_eq(html, m == &bare ? "<p>second\r\nline</p>" : "<p>Hallo Zoë</p>");
        free(text);
        free(html);
        g_object_unref(msg);
        free(h);
        buf_release(&b);
    }
}
