/* provider/smtp.c -- type smtp: one message per SMTP transaction through libcurl.
 *
 * DESIGN: a struct provider_conn owns one CURL easy handle, and libcurl keeps that
 * handle's connection open between transfers: the second message goes out as MAIL
 * FROM on the same socket, with no new TCP, TLS or EHLO (measured in
 * shared/reference/dependencies.md §4; the unit test counts the sink's sessions). A
 * transaction cut short (MAIL, RCPT or DATA refused) makes libcurl quit the connection
 * and the next message opens a new one, so a half-open transaction never leaks into
 * the next; a refused final dot ends the transaction cleanly and the connection stays
 * (both counted in the unit test).
 *
 * What the server said: libcurl gives only the numeric code (CURLINFO_RESPONSE_CODE),
 * so the header callback, which sees every reply line, keeps the last reply and the
 * first error reply (4xx/5xx) of the transfer; the QUIT that follows a failure must
 * not hide the reply that caused it. Classification (provider.c) then decides: 250 is
 * sent (its "queued as" id kept); 4xx anywhere is retry; 5xx to MAIL, RCPT, DATA or the
 * final dot is failed; 5xx before the transaction (greeting, HELO, AUTH) is retry,
 * because the message is fine and the relay or our configuration is not; no reply at
 * all (refused, timed out, dropped) is retry with code 0 and libcurl's error. Which
 * stage failed is told by libcurl's error code: CURLE_SEND_ERROR for MAIL, RCPT and
 * DATA, and CURLE_WEIRD_SERVER_REPLY for the final dot once every byte was read, or for
 * the greeting before any was.
 *
 * Many at once: a struct provider_conn is a libcurl multi handle with up to SMTP_BATCH
 * transfers (easy handles), and libcurl keeps up to SMTP_BATCH connections open in the
 * multi's cache between calls. provider_send_batch puts n messages on n connections and
 * waits for all of them in one poll loop, so one thread keeps n round trips in flight
 * and is woken once for whichever replies came (measured: docs/benchmarks.md); a single
 * send is a batch of one. Each transfer's replies are kept apart (struct smtp_xfer).
 *
 * The password is copied and wiped at fini; nothing here logs, and libcurl's verbose
 * mode (which would print AUTH) stays off. */
#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "provider_int.h"

#define REPLY_MAX 512

struct smtp {
    char url[600];
    char username[128];
    char *password; /* owned, wiped; NULL: no AUTH */
    long use_ssl;   /* CURLUSESSL_TRY or CURLUSESSL_ALL */
    int tls_verify;
    long connect_timeout_s, timeout_s;
};

#define SMTP_BATCH 8 /* transfers (and cached connections) of one provider_conn */

/* One transfer: a message on its way, and what the server said about it. */
struct smtp_xfer {
    CURL *h;          /* NULL until first used */
    const char *data; /* the message being sent */
    size_t len, pos;
    char reply[REPLY_MAX];   /* the reply being read, or the last one */
    int reply_done;          /* reply is complete: the next line starts a new one */
    char failure[REPLY_MAX]; /* the first 4xx/5xx reply of this transfer, "" if none */
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *rcpt;
    CURLcode rc;
};

struct smtp_conn {
    struct provider_conn base; /* first */
    const struct smtp *s;
    CURLM *m;
    struct smtp_xfer x[SMTP_BATCH];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_start(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT); /* not thread-safe itself: once, here */
}

static int smtp_init(struct provider *p, const struct config_named *c, const struct config *cfg,
                     struct err *e)
{
    struct smtp *s;
    const char *host;

    if (strncasecmp(c->url, "smtp://", 7) == 0)
        host = c->url + 7;
    else if (strncasecmp(c->url, "smtps://", 8) == 0)
        host = c->url + 8;
    else
        return ERR(e, E_INVAL,
                   "[provider:%s] url: expected smtp://HOST[:PORT] or smtps://HOST[:PORT], got "
                   "\"%s\"",
                   c->name, c->url);
    if (*host == '\0' || *host == '/' || *host == ':')
        return ERR(e, E_INVAL, "[provider:%s] url: no host in \"%s\"", c->name, c->url);
    if (c->username[0] && c->secret == NULL)
        return ERR(e, E_INVAL,
                   "[provider:%s] password_env: username is set but no password (password_env "
                   "or password_file)",
                   c->name);
    if (c->username[0] == '\0' && c->secret)
        return ERR(e, E_INVAL, "[provider:%s] username: a password is set but no username",
                   c->name);
    pthread_once(&curl_once, curl_start);
    s = xcalloc(1, sizeof *s);
    snprintf(s->url, sizeof s->url, "%s", c->url);
    snprintf(s->username, sizeof s->username, "%s", c->username);
    s->password = c->secret ? xstrdup(c->secret) : NULL;
    s->use_ssl = c->starttls_required ? (long)CURLUSESSL_ALL : (long)CURLUSESSL_TRY;
    s->tls_verify = c->tls_verify;
    s->connect_timeout_s = c->connect_timeout_s > 0 ? c->connect_timeout_s : 10;
    s->timeout_s = c->timeout_s > 0 ? c->timeout_s : 120;
    p->impl = s;
    p->needs_public_url = 1; /* recipients elsewhere click the links */
    return 0;
}

static void smtp_fini(struct provider *p)
{
    struct smtp *s = p->impl;

    if (s == NULL)
        return;
    if (s->password) {
        sodium_memzero(s->password, strlen(s->password));
        free(s->password);
    }
    free(s);
    p->impl = NULL;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ctx)
{
    struct smtp_xfer *c = ctx;
    size_t n = c->len - c->pos;

    if (n > size * nitems)
        n = size * nitems;
    memcpy(buf, c->data + c->pos, n);
    c->pos += n;
    return n;
}

/* One line of a server reply ("250-..." continues, "250 ..." ends it). Lines of one
 * reply are joined with a space, each after the first without its code. */
static size_t on_reply_line(char *line, size_t size, size_t nitems, void *ctx)
{
    struct smtp_xfer *c = ctx;
    size_t n = size * nitems, k = n, have;
    int last;

    while (k > 0 && (line[k - 1] == '\r' || line[k - 1] == '\n'))
        k--;
    if (k < 3)
        return n;
    last = k == 3 || line[3] != '-';
    if (c->reply_done) {
        c->reply[0] = '\0';
        c->reply_done = 0;
    }
    have = strlen(c->reply);
    if (have == 0)
        snprintf(c->reply, sizeof c->reply, "%.3s%s%.*s", line, k > 4 ? " " : "",
                 (int)(k > 4 ? k - 4 : 0), line + 4);
    else if (k > 4 && have + 1 < sizeof c->reply)
        snprintf(c->reply + have, sizeof c->reply - have, " %.*s", (int)(k - 4), line + 4);
    if (last) {
        c->reply_done = 1;
        if ((c->reply[0] == '4' || c->reply[0] == '5') && c->failure[0] == '\0')
            memcpy(c->failure, c->reply, sizeof c->failure);
    }
    return n;
}

/* The transfer's easy handle, made with the provider's settings on first use. */
static int xfer_handle(const struct smtp *s, struct smtp_xfer *x)
{
    CURL *h;

    if (x->h)
        return 0;
    h = curl_easy_init();
    if (h == NULL)
        return -1;
    curl_easy_setopt(h, CURLOPT_URL, s->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
    curl_easy_setopt(h, CURLOPT_USE_SSL, s->use_ssl);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, s->tls_verify ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, s->tls_verify ? 2L : 0L);
    if (s->password) {
        curl_easy_setopt(h, CURLOPT_USERNAME, s->username);
        curl_easy_setopt(h, CURLOPT_PASSWORD, s->password);
    }
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, s->connect_timeout_s);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, s->timeout_s);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(h, CURLOPT_READDATA, x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_reply_line);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
    x->h = h;
    return 0;
}

static int smtp_open(const struct provider *p, struct provider_conn **out, struct err *e)
{
    struct smtp_conn *c;
    CURLM *m = curl_multi_init();

    if (m == NULL)
        return ERR(e, E_NOMEM, "[provider:%s]: cannot start libcurl", p->name);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)SMTP_BATCH);
    c = xcalloc(1, sizeof *c);
    c->base.p = p;
    c->s = p->impl;
    c->m = m;
    *out = &c->base;
    return 0;
}

/* The outcome of one transfer from libcurl's result and the replies seen (see DESIGN). */
static void smtp_outcome(struct smtp_xfer *c, CURLcode rc, struct provider_result *r)
{
    /* libcurl names the refused command in its error text: "MAIL failed: 553", "RCPT
     * failed: 550". A refused MAIL FROM is about our sender, not this recipient: retry,
     * never a bounce of the recipient (a 553 5.1.8 "sender domain not found" would
     * otherwise mark a whole audience bounced). Only a refused RCPT says the address
     * does not exist. */
    int at_mail = rc == CURLE_SEND_ERROR && strncmp(c->errbuf, "MAIL failed", 11) == 0;
    int at_rcpt = rc == CURLE_SEND_ERROR && strncmp(c->errbuf, "RCPT failed", 11) == 0;
    int in_txn = (rc == CURLE_SEND_ERROR && !at_mail) ||
                 (rc == CURLE_WEIRD_SERVER_REPLY && c->len > 0 && c->pos == c->len);
    const char *reply = rc == CURLE_OK ? c->reply : c->failure;

    if (reply[0]) {
        provider_classify_smtp((int)strtol(reply, NULL, 10), reply, r);
        if (rc != CURLE_OK && r->outcome == PROVIDER_SENT)
            r->outcome = PROVIDER_RETRY; /* cannot be: a 2xx is never kept as a failure */
        if (r->outcome == PROVIDER_FAILED && !in_txn) {
            r->outcome = PROVIDER_RETRY; /* the relay refused us, not this message */
            r->hard_bounce = 0;
        }
        if (!at_rcpt)
            r->hard_bounce = 0;
        return;
    }
    if (rc == CURLE_OK) { /* accepted, but no reply line seen: trust libcurl's code */
        long code = 0;
        curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &code);
        provider_classify_smtp(code > 0 ? (int)code : 250, "", r);
        return;
    }
    provider_classify_smtp(0, "", r);
    snprintf(r->text, sizeof r->text, "curl: %s%s%s", curl_easy_strerror(rc),
             c->errbuf[0] ? ": " : "", c->errbuf);
}

/* An envelope address goes into an SMTP command line: no controls, no spaces, no <>. */
static int envelope_ok(const char *a)
{
    size_t i, n = strlen(a);

    if (n == 0 || n > 320)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)a[i] <= ' ' || a[i] == 0x7f || a[i] == '<' || a[i] == '>')
            return 0;
    return 1;
}

/* Readies transfer x for m and puts it on the multi handle; 0, or -1 with *r said. */
static int xfer_start(struct smtp_conn *c, struct smtp_xfer *x, const struct provider_message *m,
                      struct provider_result *r)
{
    if (!envelope_ok(m->mail_from) || !envelope_ok(m->rcpt_to)) {
        r->outcome = PROVIDER_FAILED;
        snprintf(r->text, sizeof r->text,
                 "envelope address not fit for SMTP (empty, too long, "
                 "or with spaces, controls or <>)");
        return -1;
    }
    x->rcpt = curl_slist_append(NULL, m->rcpt_to);
    if (x->rcpt == NULL || xfer_handle(c->s, x)) {
        curl_slist_free_all(x->rcpt);
        x->rcpt = NULL;
        provider_classify_smtp(0, "", r);
        snprintf(r->text, sizeof r->text, "curl: out of memory");
        return -1;
    }
    x->data = m->data;
    x->len = m->len;
    x->pos = 0;
    x->failure[0] = x->errbuf[0] = '\0';
    x->reply[0] = '\0';
    x->reply_done = 1;
    x->rc = CURLE_OK;
    curl_easy_setopt(x->h, CURLOPT_MAIL_FROM, m->mail_from);
    curl_easy_setopt(x->h, CURLOPT_MAIL_RCPT, x->rcpt);
    curl_easy_setopt(x->h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)m->len);
    if (curl_multi_add_handle(c->m, x->h) != CURLM_OK) {
        curl_easy_setopt(x->h, CURLOPT_MAIL_RCPT, NULL);
        curl_slist_free_all(x->rcpt);
        x->rcpt = NULL;
        provider_classify_smtp(0, "", r);
        snprintf(r->text, sizeof r->text, "curl: cannot start the transfer");
        return -1;
    }
    return 0;
}

static void smtp_send_batch(struct provider_conn *conn, const struct provider_message *m, size_t n,
                            struct provider_result *r)
{
    struct smtp_conn *c = (struct smtp_conn *)conn;
    int started[SMTP_BATCH] = {0}, running = 0;
    CURLMcode mc = CURLM_OK;
    CURLMsg *msg;
    size_t i;
    int left;

    if (n > SMTP_BATCH)
        n = SMTP_BATCH; /* the caller asked provider_batch_max */
    for (i = 0; i < n; i++)
        started[i] = xfer_start(c, &c->x[i], &m[i], &r[i]) == 0;
    /* CURLE_PARTIAL_FILE stands for "never finished": every started transfer gets its
     * own code from curl_multi_info_read below. */
    for (i = 0; i < n; i++)
        c->x[i].rc = CURLE_PARTIAL_FILE;
    do {
        mc = curl_multi_perform(c->m, &running);
        if (mc == CURLM_OK && running)
            mc = curl_multi_poll(c->m, NULL, 0, 1000, NULL);
    } while (mc == CURLM_OK && running);
    while ((msg = curl_multi_info_read(c->m, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        for (i = 0; i < n; i++)
            if (c->x[i].h == msg->easy_handle)
                c->x[i].rc = msg->data.result;
    }
    for (i = 0; i < n; i++) {
        struct smtp_xfer *x = &c->x[i];
        if (!started[i])
            continue;
        smtp_outcome(x, mc == CURLM_OK ? x->rc : CURLE_PARTIAL_FILE, &r[i]);
        curl_multi_remove_handle(c->m, x->h); /* its connection stays in the multi's cache */
        curl_easy_setopt(x->h, CURLOPT_MAIL_RCPT, NULL);
        curl_slist_free_all(x->rcpt);
        x->rcpt = NULL;
        x->data = NULL;
    }
}

static void smtp_send(struct provider_conn *conn, const struct provider_message *m,
                      struct provider_result *r)
{
    smtp_send_batch(conn, m, 1, r);
}

static void smtp_close(struct provider_conn *conn)
{
    struct smtp_conn *c = (struct smtp_conn *)conn;
    size_t i;

    for (i = 0; i < SMTP_BATCH; i++)
        if (c->x[i].h)
            curl_easy_cleanup(c->x[i].h);
    curl_multi_cleanup(c->m); /* sends QUIT on the open connections */
    free(c);
}

const struct provider_ops provider_smtp_ops = {
    .type = "smtp",
    .init = smtp_init,
    .fini = smtp_fini,
    .open = smtp_open,
    .send = smtp_send,
    .close = smtp_close,
    .send_batch = smtp_send_batch,
    .batch_max = SMTP_BATCH,
};
