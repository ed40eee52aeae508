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
 * Each thread keeps one message made of GMime objects (struct mime_cache) and refills it
 * for every message: making and freeing the twenty-odd objects of a message took more
 * than half of a sender's time (docs/benchmarks.md). What one message set and the next
 * does not (a Reply-To, List-Unsubscribe, an id header) is taken out again, so no
 * header outlives its message (tests/unit/mime.c builds differing messages in a row).
 * The cache is freed when its thread ends; g_mime_init runs once (mime_init). */
#include <gmime/gmime.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "campaign.h"

#define MIME_LINE_MAX 998

#define MIME_EXTRA_MAX 8 /* raw extra headers (the provider's id headers) a message has */

static pthread_once_t mime_once = PTHREAD_ONCE_INIT;
static GMimeFormatOptions *crlf; /* made once, only read afterwards */
static pthread_key_t cache_key;  /* a thread's struct mime_cache */

/* One thread's message, refilled for each message it builds. */
struct mime_cache {
    GMimeMessage *msg;
    InternetAddressMailbox *from, *to, *reply_to; /* owned refs; reply_to in its list or not */
    int has_reply_to, has_unsubscribe;
    GMimeStreamMem *text, *html; /* the parts' contents */
    GMimeStreamMem *out;         /* the whole message, written */
    char extra[MIME_EXTRA_MAX][64];
    size_t nextra; /* the raw extra headers the last message had */
};

static void cache_free(void *arg)
{
    struct mime_cache *c = arg;

    g_object_unref(c->out);
    g_object_unref(c->html);
    g_object_unref(c->text);
    g_object_unref(c->reply_to);
    g_object_unref(c->to);
    g_object_unref(c->from);
    g_object_unref(c->msg);
    g_free(c);
}

static void mime_warm_up(void);

static void mime_start(void)
{
    g_mime_init();
    crlf = g_mime_format_options_new();
    g_mime_format_options_set_newline_format(crlf, GMIME_NEWLINE_FORMAT_DOS);
    if (pthread_key_create(&cache_key, cache_free))
        abort(); /* only when the process is out of keys at start */
    mime_warm_up();
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

/* A text part of subtype sub (text/plain, text/html) in UTF-8 and quoted-printable whose
 * content is read from st at each write. */
static GMimeObject *text_part(const char *sub, GMimeStreamMem *st)
{
    GMimeTextPart *tp = g_mime_text_part_new_with_subtype(sub);
    GMimeDataWrapper *dw =
        g_mime_data_wrapper_new_with_stream(GMIME_STREAM(st), GMIME_CONTENT_ENCODING_DEFAULT);

    g_mime_part_set_content(GMIME_PART(tp), dw);
    g_mime_object_set_content_type_parameter(GMIME_OBJECT(tp), "charset", "utf-8");
    g_mime_part_set_content_encoding(GMIME_PART(tp), GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
    g_object_unref(dw);
    return GMIME_OBJECT(tp);
}

/* Puts body into st, its CRLF and lone CR made LF (GMime writes each line end as CRLF). */
static void set_body(GMimeStreamMem *st, const char *body)
{
    GByteArray *ba = g_mime_stream_mem_get_byte_array(st);
    const char *p = body, *cr;

    g_byte_array_set_size(ba, 0);
    while ((cr = strchr(p, '\r')) != NULL) {
        g_byte_array_append(ba, (const guint8 *)p, (guint)(cr - p));
        g_byte_array_append(ba, (const guint8 *)"\n", 1);
        p = cr + (cr[1] == '\n' ? 2 : 1);
    }
    g_byte_array_append(ba, (const guint8 *)p, (guint)strlen(p));
    g_mime_stream_reset(GMIME_STREAM(st));
}

/* A random boundary in GMime's own form ("=-" and 32 letters or digits: never inside a
 * quoted-printable body, where '=' is always followed by hex digits or a line break),
 * from libsodium: GMime's would open and read /dev/urandom. */
static void multipart_boundary(GMimeMultipart *mp)
{
    unsigned char r[16];
    char b[2 + 2 * sizeof r + 1] = "=-";

    randombytes_buf(r, sizeof r);
    sodium_bin2hex(b + 2, sizeof b - 2, r, sizeof r);
    g_mime_multipart_set_boundary(mp, b);
}

/* A message of GMime objects to refill. */
static struct mime_cache *cache_new(void)
{
    struct mime_cache *c = g_new0(struct mime_cache, 1);
    GMimeMultipart *alt;
    GMimeObject *part;

    c->msg = g_mime_message_new(TRUE);
    c->from = INTERNET_ADDRESS_MAILBOX(internet_address_mailbox_new(NULL, "a@b"));
    c->to = INTERNET_ADDRESS_MAILBOX(internet_address_mailbox_new(NULL, "a@b"));
    c->reply_to = INTERNET_ADDRESS_MAILBOX(internet_address_mailbox_new(NULL, "a@b"));
    internet_address_list_add(g_mime_message_get_from(c->msg), INTERNET_ADDRESS(c->from));
    internet_address_list_add(g_mime_message_get_to(c->msg), INTERNET_ADDRESS(c->to));
    c->text = GMIME_STREAM_MEM(g_mime_stream_mem_new());
    c->html = GMIME_STREAM_MEM(g_mime_stream_mem_new());
    c->out = GMIME_STREAM_MEM(g_mime_stream_mem_new());
    alt = g_mime_multipart_new_with_subtype("alternative");
    multipart_boundary(alt);
    part = text_part("plain", c->text);
    g_mime_multipart_add(alt, part);
    g_object_unref(part);
    part = text_part("html", c->html);
    g_mime_multipart_add(alt, part);
    g_object_unref(part);
    g_mime_message_set_mime_part(c->msg, GMIME_OBJECT(alt));
    g_object_unref(alt);
    return c;
}

/* The calling thread's message, made at its first use. */
static struct mime_cache *cache_get(void)
{
    struct mime_cache *c = pthread_getspecific(cache_key);

    if (c == NULL) {
        c = cache_new();
        pthread_setspecific(cache_key, c);
    }
    return c;
}

/* The mailbox mb becomes name (NULL: none, else written as UTF-8 words) <addr>. */
static void set_mailbox(InternetAddressMailbox *mb, const char *name, const char *addr)
{
    InternetAddress *ia = INTERNET_ADDRESS(mb);

    internet_address_set_charset(ia, name ? "utf-8" : NULL);
    internet_address_set_name(ia, name);
    internet_address_mailbox_set_addr(mb, addr);
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

static int cache_write(struct mime_cache *c, const struct mime_message *m, struct buf *out,
                       struct err *e);

int mime_build(const struct mime_message *m, struct buf *out, struct err *e)
{
    size_t i;
    int rc = mime_check(m, e);

    if (rc)
        return rc;
    if (m->nheaders > MIME_EXTRA_MAX)
        return ERR(e, E_INVAL, "more than %d extra headers", MIME_EXTRA_MAX);
    for (i = 0; i < m->nheaders; i++)
        if (strlen(m->headers[2 * i]) >= sizeof((struct mime_cache *)0)->extra[0])
            return ERR(e, E_INVAL, "header name %.64s... is too long", m->headers[2 * i]);
    mime_init();
    return cache_write(cache_get(), m, out, e);
}

/* Refills c with m and appends the whole message to out. */
static int cache_write(struct mime_cache *c, const struct mime_message *m, struct buf *out,
                       struct err *e)
{
    GMimeObject *obj = GMIME_OBJECT(c->msg);
    GDateTime *date;
    GByteArray *bytes;
    char mid[300];
    size_t i, k;

    set_mailbox(c->from, m->from_name && m->from_name[0] ? m->from_name : NULL, m->from_email);
    set_mailbox(c->to, NULL, m->to);
    if (m->reply_to && m->reply_to[0]) {
        set_mailbox(c->reply_to, NULL, m->reply_to);
        if (!c->has_reply_to)
            internet_address_list_add(g_mime_message_get_reply_to(c->msg),
                                      INTERNET_ADDRESS(c->reply_to));
        c->has_reply_to = 1;
    } else if (c->has_reply_to) {
        internet_address_list_clear(g_mime_message_get_reply_to(c->msg));
        g_mime_object_remove_header(obj, "Reply-To");
        c->has_reply_to = 0;
    }
    g_mime_message_set_subject(c->msg, m->subject ? m->subject : "", "utf-8");
    date = g_date_time_new_from_unix_utc(m->date_ms / 1000);
    g_mime_message_set_date(c->msg, date);
    g_date_time_unref(date);
    snprintf(mid, sizeof mid, "%s.%08" PRIx32 "@%s", m->message_id,
             (uint32_t)hash64(m->message_id, strlen(m->message_id)), m->message_id_domain);
    g_mime_message_set_message_id(c->msg, mid);
    set_body(c->text, m->text ? m->text : "");
    set_body(c->html, m->html ? m->html : "");

    if (m->list_unsubscribe) {
        char *v = g_strdup_printf("<%s>", m->list_unsubscribe);
        header_raw(obj, "List-Unsubscribe", v);
        header_raw(obj, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
        g_free(v);
        c->has_unsubscribe = 1;
    } else if (c->has_unsubscribe) {
        g_mime_object_remove_header(obj, "List-Unsubscribe");
        g_mime_object_remove_header(obj, "List-Unsubscribe-Post");
        c->has_unsubscribe = 0;
    }
    for (k = 0; k < c->nextra; k++) { /* the last message's extra headers this one lacks */
        for (i = 0; i < m->nheaders && g_ascii_strcasecmp(c->extra[k], m->headers[2 * i]); i++)
            ;
        if (i == m->nheaders)
            g_mime_object_remove_header(obj, c->extra[k]);
    }
    c->nextra = 0;
    for (i = 0; i < m->nheaders; i++) {
        header_raw(obj, m->headers[2 * i], m->headers[2 * i + 1]);
        snprintf(c->extra[c->nextra++], sizeof c->extra[0], "%s", m->headers[2 * i]);
    }

    bytes = g_mime_stream_mem_get_byte_array(c->out);
    g_byte_array_set_size(bytes, 0);
    g_mime_stream_reset(GMIME_STREAM(c->out));
    if (g_mime_object_write_to_stream(obj, crlf, GMIME_STREAM(c->out)) < 0)
        return ERR(e, E_INTERNAL, "GMime could not write the message");
    buf_add(out, bytes->data, bytes->len);
    return 0;
}

/* Once, on the thread that starts the process's sending (before any sender thread):
 * makes and writes one message, so every GLib and GMime class is set up here. Classes
 * set up lazily by the first of several threads at once are correct (GLib locks), but
 * ThreadSanitizer cannot see GLib's locks and reports a race. */
static void mime_warm_up(void)
{
    struct mime_message m = {.from_email = "a@example.com",
                             .from_name = "A",
                             .to = "b@example.com",
                             .reply_to = "c@example.com",
                             .subject = "warm-up",
                             .html = "<p>x</p>",
                             .text = "x",
                             .message_id = "0.0",
                             .message_id_domain = "example.com",
                             .list_unsubscribe = "http://example.com/u/x"};
    struct mime_cache *c;
    struct buf b;
    struct err e = {0};

    if (mime_check(&m, &e))
        abort(); /* cannot be: a fixed, valid message */
    c = cache_new();
    buf_init(&b);
    cache_write(c, &m, &b, &e);
    buf_release(&b);
    cache_free(c);
}
