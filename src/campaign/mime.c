/* campaign/mime.c -- one whole RFC 5322 message from its rendered parts, with GMime 3.
 *
 * DESIGN: GMime does the encoding we must not get wrong by hand: RFC 2047 words for a
 * UTF-8 subject and display names, quoted-printable bodies (soft line breaks keep every
 * line under 78 bytes, so a 5,000-character one-line HTML body still fits the 998-byte
 * limit), address quoting. What GMime gets wrong for us is overridden (see
 * shared/reference/dependencies.md §3):
 *  - List-Unsubscribe would be RFC 2047-encoded once long, which breaks one-click
 *    unsubscribe: it and List-Unsubscribe-Post, and the provider's id headers, are
 *    written as raw values (checked here to be printable ASCII that fits one line);
 *  - lines end in LF by default: the format options ask for CRLF (made once);
 *  - a display name gets the smallest charset that fits (iso-8859-1): we force UTF-8.
 * Bodies are given to GMime as they are (no charset guessing, which could recode them),
 * with their line breaks made LF first; GMime writes each as CRLF, so a body decodes
 * back as its text with CRLF line breaks (byte-identical when it had CRLF already).
 *
 * Message-ID: <MESSAGEID.XXXXXXXX@DOMAIN>, XXXXXXXX the low 32 bits of a hash of our
 * message id, in hex: a function of the ledger row alone, so a row sent again (a retry,
 * a crash re-send) carries the same Message-ID and a receiver can drop the duplicate.
 *
 * Every object is made and freed inside one call, so threads build messages at once;
 * g_mime_init runs once (mime_init). */
#include <gmime/gmime.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>

#include "campaign.h"

#define MIME_LINE_MAX 998

static pthread_once_t mime_once = PTHREAD_ONCE_INIT;
static GMimeFormatOptions *crlf; /* made once, only read afterwards */

static void mime_start(void)
{
    g_mime_init();
    crlf = g_mime_format_options_new();
    g_mime_format_options_set_newline_format(crlf, GMIME_NEWLINE_FORMAT_DOS);
}

void mime_init(void)
{
    pthread_once(&mime_once, mime_start);
}

/* 1 when addr is one plain mailbox address as GMime reads it. */
static int address_ok(const char *addr)
{
    InternetAddressList *l;
    InternetAddress *ia;
    int ok = 0;
    size_t i;

    for (i = 0; addr[i]; i++)
        if ((unsigned char)addr[i] < 0x21 || addr[i] == 0x7f || addr[i] == '<' || addr[i] == '>')
            return 0;
    if (i == 0 || i > TEMPLATE_MAX_ADDRESS || strchr(addr, '@') == NULL)
        return 0;
    l = internet_address_list_parse(NULL, addr);
    if (l == NULL)
        return 0;
    if (internet_address_list_length(l) == 1) {
        ia = internet_address_list_get_address(l, 0);
        ok = INTERNET_ADDRESS_IS_MAILBOX(ia) &&
             strcmp(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)), addr) == 0;
    }
    g_object_unref(l);
    return ok;
}

/* 1 when a header of this name and value can be written raw on one line. */
static int raw_ok(const char *name, const char *value)
{
    size_t i, n = strlen(value);

    if (strlen(name) + 2 + n > MIME_LINE_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)value[i] < 0x20 || (unsigned char)value[i] > 0x7e)
            return 0;
    return 1;
}

/* Sets name: value written exactly as given (GMime neither folds nor encodes it). */
static void header_raw(GMimeObject *obj, const char *name, const char *value)
{
    GMimeHeader *h;
    char *raw;

    g_mime_object_set_header(obj, name, value, NULL);
    h = g_mime_header_list_get_header(g_mime_object_get_header_list(obj), name);
    raw = g_strdup_printf(" %s\n", value);
    g_mime_header_set_raw_value(h, raw);
    g_free(raw);
}

/* A text part of subtype sub (text/plain, text/html) in UTF-8 and quoted-printable. */
static GMimeObject *text_part(const char *sub, const char *body)
{
    GMimeTextPart *tp = g_mime_text_part_new_with_subtype(sub);
    GString *lf = g_string_sized_new(strlen(body) + 1);
    GMimeStream *st;
    GMimeDataWrapper *dw;
    const char *p;

    for (p = body; *p; p++) { /* CRLF and a lone CR become LF: GMime writes CRLF */
        if (*p == '\r') {
            g_string_append_c(lf, '\n');
            if (p[1] == '\n')
                p++;
        } else {
            g_string_append_c(lf, *p);
        }
    }
    st = g_mime_stream_mem_new_with_buffer(lf->str, lf->len);
    dw = g_mime_data_wrapper_new_with_stream(st, GMIME_CONTENT_ENCODING_DEFAULT);
    g_mime_part_set_content(GMIME_PART(tp), dw);
    g_mime_object_set_content_type_parameter(GMIME_OBJECT(tp), "charset", "utf-8");
    g_mime_part_set_content_encoding(GMIME_PART(tp), GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
    g_object_unref(dw);
    g_object_unref(st);
    g_string_free(lf, TRUE);
    return GMIME_OBJECT(tp);
}

static void add_mailbox(InternetAddressList *l, const char *name, const char *addr)
{
    InternetAddress *ia = internet_address_mailbox_new(name, addr);

    if (name)
        internet_address_set_charset(ia, "utf-8");
    internet_address_list_add(l, ia);
    g_object_unref(ia);
}

/* Every input that could make a wrong message, refused before GMime sees it. */
static int mime_check(const struct mime_message *m, struct err *e)
{
    size_t i;

    if (!address_ok(m->from_email))
        return ERR(e, E_INVAL, "from address \"%.64s\" is not a valid address", m->from_email);
    if (!address_ok(m->to))
        return ERR(e, E_INVAL, "recipient \"%.64s\" is not a valid address", m->to);
    if (m->reply_to && m->reply_to[0] && !address_ok(m->reply_to))
        return ERR(e, E_INVAL, "reply-to \"%.64s\" is not a valid address", m->reply_to);
    if (m->message_id == NULL || m->message_id[0] == '\0' || m->message_id_domain == NULL ||
        m->message_id_domain[0] == '\0' ||
        strspn(m->message_id,
               "0123456789.-_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") !=
            strlen(m->message_id) ||
        !raw_ok("Message-ID", m->message_id_domain) ||
        strpbrk(m->message_id_domain, " <>@()[],;:\\\"") != NULL ||
        strlen(m->message_id) + strlen(m->message_id_domain) > 200)
        return ERR(e, E_INVAL, "message id or its domain is not fit for a Message-ID");
    if (m->list_unsubscribe && (!raw_ok("List-Unsubscribe", m->list_unsubscribe) ||
                                strpbrk(m->list_unsubscribe, " <>") != NULL ||
                                strlen(m->list_unsubscribe) + 20 > MIME_LINE_MAX))
        return ERR(e, E_INVAL, "unsubscribe URL is not fit for List-Unsubscribe");
    for (i = 0; i < m->nheaders; i++)
        if (!raw_ok(m->headers[2 * i], m->headers[2 * i + 1]))
            return ERR(e, E_INVAL, "header %.64s: not printable ASCII on one line",
                       m->headers[2 * i]);
    return 0;
}

int mime_build(const struct mime_message *m, struct buf *out, struct err *e)
{
    GMimeMessage *msg = NULL;
    GMimeMultipart *alt;
    GMimeObject *part;
    GMimeStream *st = NULL;
    GDateTime *date;
    GByteArray *bytes;
    char mid[300];
    size_t i;
    int rc = mime_check(m, e);

    if (rc)
        return rc;
    mime_init();
    msg = g_mime_message_new(TRUE);
    add_mailbox(g_mime_message_get_from(msg), m->from_name && m->from_name[0] ? m->from_name : NULL,
                m->from_email);
    add_mailbox(g_mime_message_get_to(msg), NULL, m->to);
    if (m->reply_to && m->reply_to[0])
        add_mailbox(g_mime_message_get_reply_to(msg), NULL, m->reply_to);
    g_mime_message_set_subject(msg, m->subject ? m->subject : "", "utf-8");
    date = g_date_time_new_from_unix_utc(m->date_ms / 1000);
    g_mime_message_set_date(msg, date);
    g_date_time_unref(date);
    snprintf(mid, sizeof mid, "%s.%08" PRIx32 "@%s", m->message_id,
             (uint32_t)hash64(m->message_id, strlen(m->message_id)), m->message_id_domain);
    g_mime_message_set_message_id(msg, mid);

    alt = g_mime_multipart_new_with_subtype("alternative");
    part = text_part("plain", m->text ? m->text : "");
    g_mime_multipart_add(alt, part);
    g_object_unref(part);
    part = text_part("html", m->html ? m->html : "");
    g_mime_multipart_add(alt, part);
    g_object_unref(part);
    g_mime_message_set_mime_part(msg, GMIME_OBJECT(alt));
    g_object_unref(alt);

    if (m->list_unsubscribe) {
        char *v = g_strdup_printf("<%s>", m->list_unsubscribe);
        header_raw(GMIME_OBJECT(msg), "List-Unsubscribe", v);
        header_raw(GMIME_OBJECT(msg), "List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
        g_free(v);
    }
    for (i = 0; i < m->nheaders; i++)
        header_raw(GMIME_OBJECT(msg), m->headers[2 * i], m->headers[2 * i + 1]);

    st = g_mime_stream_mem_new();
    if (g_mime_object_write_to_stream(GMIME_OBJECT(msg), crlf, st) < 0) {
        rc = ERR(e, E_INTERNAL, "GMime could not write the message");
        goto out;
    }
    bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(st));
    buf_add(out, bytes->data, bytes->len);
out:
    if (st)
        g_object_unref(st);
    g_object_unref(msg);
    return rc;
}
