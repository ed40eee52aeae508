/* provider/smtp.c -- type smtp: libcurl opens the connection, the mail is pipelined.
 *
 * DESIGN: libcurl makes each connection (CURLOPT_CONNECT_ONLY): TCP, the greeting,
 * EHLO, STARTTLS (when offered, or insisted on with starttls = required), implicit TLS
 * for smtps://, certificate checks and AUTH are all its own, and it stops once the
 * session is ready. The mail transactions on it are ours, over curl_easy_send and
 * curl_easy_recv (so through its TLS too), because libcurl does not pipeline SMTP:
 * it waits for each reply, four round trips a message (shared/reference/
 * dependencies.md §4). Here, when the server's EHLO offered PIPELINING (RFC 2920),
 * MAIL FROM, RCPT TO and DATA go out in one write, and a message's text, its final
 * dot and the next message's MAIL, RCPT and DATA in another: one round trip a
 * message. A server without PIPELINING gets one command at a time.
 *
 * A struct provider_conn holds up to SMTP_LINKS_MAX connections (struct link), opened
 * when first needed and kept across batches. provider_send_batch spreads n messages
 * over them, up to SMTP_DEPTH a connection, and drives them all from one poll loop:
 * one thread keeps every connection busy and is woken once for whichever replies came.
 *
 * What each reply means (classification in provider.c, then by stage): a refused MAIL
 * FROM is retry, never a bounce (it is about our sender); a refused RCPT is failed for
 * 5xx, a hard bounce for 5.1.x, retry for 4xx; a refused DATA or final dot is failed
 * or retry, never a bounce; anything refused before the transaction (greeting, EHLO,
 * STARTTLS, AUTH) is retry, because the message is fine and the relay or our
 * configuration is not. After a refused command the transaction is reset (RSET) and
 * the connection serves the next message; a 421, a hang-up or a timeout closes it.
 *
 * A lost connection: the message whose reply was awaited, and any whose text already
 * went out (it may have been accepted), are retry with code 0; the others on it had
 * not started and go out again on a new connection, at most SMTP_RECONNECTS times a
 * batch. A connection refused at the start makes every message meant for it retry,
 * with the relay's reply when it gave one, else libcurl's error.
 *
 * Nothing here logs, the password is copied and wiped at fini, and libcurl's verbose
 * mode (which would print AUTH) stays off. */
#include <curl/curl.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "provider_int.h"

#define REPLY_MAX 512
#define SMTP_LINKS_MAX 32 /* connections of one provider_conn */
#define SMTP_DEPTH 16     /* messages one connection takes in one batch */
#define SMTP_RECONNECTS 2 /* new connections a connection may need within one batch */
#define QUIT_WAIT_MS 1000 /* for the reply to QUIT */
#define SMTP_INFLIGHT 8   /* commands awaiting replies: at most RSET MAIL RCPT DATA + DOT */

struct smtp {
    char url[600];
    char username[128];
    char *password; /* owned, wiped; NULL: no AUTH */
    long use_ssl;   /* CURLUSESSL_TRY or CURLUSESSL_ALL */
    int tls_verify;
    long connect_timeout_s, timeout_s;
};

/* What a command is, and so what its reply decides. */
enum cmd { C_RSET, C_MAIL, C_RCPT, C_DATA, C_DOT };
static const char *const cmd_name[] = {"RSET", "MAIL FROM", "RCPT TO", "DATA",
                                       "the end of the message"};

struct step {
    enum cmd what;
    int i; /* the message of the batch, -1 for RSET */
};

/* One SMTP connection. */
struct link {
    CURL *h;                     /* NULL: not open */
    curl_socket_t fd;            /* its socket, for poll */
    int pipelining;              /* its last EHLO offered PIPELINING */
    int dirty;                   /* a transaction may be open: RSET before the next MAIL */
    int write_failed;            /* a write failed: the replies the server sent are still read */
    int reconnects;              /* within this batch */
    double deadline;             /* clock_mono_ms after which the awaited reply is late */
    int q[SMTP_DEPTH], nq, next; /* this batch's messages on it; next: the first not begun */
    struct step todo[SMTP_INFLIGHT]; /* made, not yet written */
    int ntodo;
    struct step wait[SMTP_INFLIGHT]; /* written, awaiting their replies, oldest first */
    int nwait;
    struct buf out; /* being written; only refilled once empty (TLS retries want it still) */
    size_t out_pos;
    char in[2048]; /* read, not yet a whole line */
    size_t in_len;
    int skipping;          /* the rest of a line too long for in[] is dropped */
    char reply[REPLY_MAX]; /* the reply being read: "250 text text..." */
    int reply_open;        /* reply has lines and awaits its last */
    /* while libcurl connects: the replies it saw */
    char failure[REPLY_MAX]; /* the first 4xx/5xx reply, "" if none */
    char errbuf[CURL_ERROR_SIZE];
};

struct smtp_conn {
    struct provider_conn base; /* first */
    const struct smtp *s;
    size_t nlinks;
    struct link links[SMTP_LINKS_MAX];
    /* the batch being sent */
    const struct provider_message *m;
    struct provider_result *r;
    unsigned char decided[SMTP_LINKS_MAX * SMTP_DEPTH];
    unsigned char text_sent[SMTP_LINKS_MAX * SMTP_DEPTH];
    unsigned opens; /* connections opened (each blocks the loop for its set-up) */
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

    (void)cfg;
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

/* ---- replies ----------------------------------------------------------------------------- */

/* Adds one line (without its CR LF) of a server reply to L->reply: lines of one reply
 * ("250-..." continues, "250 ..." ends it) are joined with a space, each after the first
 * without its code. 1 once the reply is whole, 0 while it goes on or for a line that is
 * no reply line. */
static int reply_line(struct link *L, const char *line, size_t k)
{
    size_t have = L->reply_open ? strlen(L->reply) : 0, cap = sizeof L->reply - 1;
    const char *text = line + 4;
    size_t n = k > 4 ? k - 4 : 0;
    int last;

    if (k < 3)
        return 0;
    last = k == 3 || line[3] != '-';
    if (have == 0) { /* the code, then the text */
        memcpy(L->reply, line, 3);
        have = 3;
    }
    if (n > 0 && have + 1 + n > cap)
        n = have + 1 < cap ? cap - have - 1 : 0;
    if (n > 0) {
        L->reply[have++] = ' ';
        memmove(L->reply + have, text, n);
        have += n;
    }
    L->reply[have] = '\0';
    L->reply_open = !last;
    return last;
}

/* libcurl's header callback while it connects: every reply line it reads. Keeps the
 * first refusal, and whether the last EHLO offered PIPELINING (a 220 -- the greeting,
 * or the go-ahead of STARTTLS, after which the server is asked again -- forgets it). */
static size_t on_connect_line(char *line, size_t size, size_t nitems, void *ctx)
{
    struct link *L = ctx;
    size_t n = size * nitems, k = n;

    while (k > 0 && (line[k - 1] == '\r' || line[k - 1] == '\n'))
        k--;
    if (k >= 3 && strncmp(line, "220", 3) == 0)
        L->pipelining = 0;
    if (k >= 14 && strncmp(line, "250", 3) == 0 && strncasecmp(line + 4, "PIPELINING", 10) == 0 &&
        (k == 14 || line[14] == ' '))
        L->pipelining = 1;
    if (reply_line(L, line, k) && (L->reply[0] == '4' || L->reply[0] == '5') &&
        L->failure[0] == '\0')
        memcpy(L->failure, L->reply, sizeof L->failure);
    return n;
}

/* ---- connections ------------------------------------------------------------------------- */

static void link_reset(struct link *L)
{
    L->write_failed = 0;
    L->ntodo = L->nwait = 0;
    buf_reset(&L->out);
    L->out_pos = 0;
    L->in_len = 0;
    L->skipping = L->reply_open = 0;
    L->dirty = 0;
}

/* Closes L's connection: with a QUIT, and a short wait for its reply, when no reply is
 * awaited (libcurl sends none for a connection it only opened); else at once, as a server
 * that stopped answering must not hold us. */
static void link_close(struct link *L, int clean)
{
    if (L->h == NULL)
        return;
    if (clean) {
        size_t n = 0;
        if (curl_easy_send(L->h, "QUIT\r\n", 6, &n) == CURLE_OK && n == 6) {
            struct pollfd pf = {.fd = L->fd, .events = POLLIN};
            char b[256];
            if (poll(&pf, 1, QUIT_WAIT_MS) > 0)
                curl_easy_recv(L->h, b, sizeof b, &n);
        }
    }
    shutdown(L->fd, SHUT_RDWR);
    curl_easy_cleanup(L->h);
    L->h = NULL;
    link_reset(L);
}

/* Opens L through libcurl (blocking, within connect_timeout_s and timeout_s): 0, or -1
 * with L->failure or L->errbuf saying why. */
static int link_open(struct smtp_conn *c, struct link *L)
{
    const struct smtp *s = c->s;
    CURL *h = curl_easy_init();
    CURLcode rc;
    curl_socket_t fd = CURL_SOCKET_BAD;

    c->opens++;
    link_reset(L);
    L->failure[0] = L->errbuf[0] = '\0';
    L->pipelining = 0;
    if (h == NULL) {
        snprintf(L->errbuf, sizeof L->errbuf, "out of memory");
        return -1;
    }
    curl_easy_setopt(h, CURLOPT_URL, s->url);
    curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
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
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_connect_line);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, L->errbuf);
    rc = curl_easy_perform(h);
    if (rc == CURLE_OK)
        rc = curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &fd);
    if (rc != CURLE_OK || fd == CURL_SOCKET_BAD) {
        if (L->errbuf[0] == '\0')
            snprintf(L->errbuf, sizeof L->errbuf, "%s", curl_easy_strerror(rc));
        curl_easy_cleanup(h);
        L->reply_open = 0;
        return -1;
    }
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, NULL);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, NULL);
    L->h = h;
    L->fd = fd;
    L->reply_open = 0;
    return 0;
}

/* An idle connection the server may have closed meanwhile (or said 421 on): anything to
 * read while no reply is awaited means it is no use (bytes that are only TLS's own, a
 * session ticket, give CURLE_AGAIN). 1 if L can serve. */
static int link_alive(struct link *L)
{
    struct pollfd pf = {.fd = L->fd, .events = POLLIN};
    char b[64];
    size_t got = 0;

    if (poll(&pf, 1, 0) == 0)
        return 1;
    return curl_easy_recv(L->h, b, sizeof b, &got) == CURLE_AGAIN;
}

static int smtp_open(const struct provider *p, size_t connections, struct provider_conn **out,
                     struct err *e)
{
    struct smtp_conn *c = xcalloc(1, sizeof *c);
    size_t i;

    (void)e;
    c->base.p = p;
    c->s = p->impl;
    c->nlinks = connections < 1 ? 1 : connections > SMTP_LINKS_MAX ? SMTP_LINKS_MAX : connections;
    for (i = 0; i < SMTP_LINKS_MAX; i++)
        buf_init(&c->links[i].out);
    *out = &c->base;
    return 0;
}

static void smtp_close(struct provider_conn *conn)
{
    struct smtp_conn *c = (struct smtp_conn *)conn;
    size_t i;

    for (i = 0; i < SMTP_LINKS_MAX; i++) {
        link_close(&c->links[i], c->links[i].nwait == 0 && c->links[i].ntodo == 0);
        buf_release(&c->links[i].out);
    }
    free(c);
}

/* ---- outcomes ---------------------------------------------------------------------------- */

/* Message i's outcome from the reply to command what (the first outcome stands). */
static void decide(struct smtp_conn *c, int i, enum cmd what, const char *reply)
{
    struct provider_result *r = &c->r[i];

    if (c->decided[i])
        return;
    c->decided[i] = 1;
    provider_classify_smtp((int)strtol(reply, NULL, 10), reply, r);
    if (r->outcome == PROVIDER_SENT && what != C_DOT) /* only the final reply accepts it */
        r->outcome = PROVIDER_RETRY;
    if (what == C_MAIL && r->outcome == PROVIDER_FAILED)
        r->outcome = PROVIDER_RETRY; /* about our sender, not this recipient */
    if (what != C_RCPT)
        r->hard_bounce = 0;
}

/* Message i is retry with no reply (code 0) and the reason. */
static void decide_lost(struct smtp_conn *c, int i, const char *fmt, const char *a, const char *b)
{
    struct provider_result *r = &c->r[i];

    if (c->decided[i])
        return;
    c->decided[i] = 1;
    provider_classify_smtp(0, "", r);
    snprintf(r->text, sizeof r->text, fmt, a, b);
}

/* Every message meant for L that is not decided yet: retry, as L could not be opened. */
static void decide_unopened(struct smtp_conn *c, struct link *L)
{
    int k;

    for (k = 0; k < L->nq; k++) {
        int i = L->q[k];
        struct provider_result *r = &c->r[i];
        if (c->decided[i])
            continue;
        c->decided[i] = 1;
        if (L->failure[0]) { /* the relay refused us, not the message: retry */
            provider_classify_smtp((int)strtol(L->failure, NULL, 10), L->failure, r);
            r->outcome = PROVIDER_RETRY;
            r->hard_bounce = 0;
        } else {
            provider_classify_smtp(0, "", r);
            snprintf(r->text, sizeof r->text, "curl: %s", L->errbuf);
        }
    }
    L->nq = L->next = 0;
}

/* ---- the conversation -------------------------------------------------------------------- */

static void push(struct link *L, enum cmd what, int i)
{
    L->todo[L->ntodo].what = what;
    L->todo[L->ntodo].i = i;
    L->ntodo++;
}

/* Begins L's next message: RSET first if a transaction may be open, then MAIL, RCPT, DATA. */
static void begin_next(struct link *L)
{
    int i;

    if (L->next >= L->nq)
        return;
    i = L->q[L->next++];
    if (L->dirty)
        push(L, C_RSET, -1);
    L->dirty = 0;
    push(L, C_MAIL, i);
    push(L, C_RCPT, i);
    push(L, C_DATA, i);
}

/* The message text, dot-stuffed (a line starting with '.' gets another), ended by CR LF
 * and the final dot. */
static void put_text(struct buf *b, const char *d, size_t n)
{
    const char *p = d, *end = d + n, *nl;

    if (n && d[0] == '.')
        buf_addc(b, '.');
    while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL && nl + 1 < end) {
        buf_add(b, p, (size_t)(nl + 1 - p));
        p = nl + 1;
        if (*p == '.')
            buf_addc(b, '.');
    }
    buf_add(b, p, (size_t)(end - p));
    if (n < 2 || d[n - 2] != '\r' || d[n - 1] != '\n')
        buf_adds(b, "\r\n"); /* the final dot is always CRLF . CRLF */
    buf_adds(b, ".\r\n");
}

/* Writes the commands made so far into L->out, as many as may go at once: all with
 * PIPELINING (a DATA is always the last before its 354, as the caller never makes more),
 * else one while none awaits its reply. */
static void fill(struct smtp_conn *c, struct link *L)
{
    int k = 0;

    while (k < L->ntodo && (L->pipelining || L->nwait == 0) && L->nwait < SMTP_INFLIGHT) {
        struct step st = L->todo[k++];
        const struct provider_message *m = st.i >= 0 ? &c->m[st.i] : NULL;
        switch (st.what) {
        case C_RSET:
            buf_adds(&L->out, "RSET\r\n");
            break;
        case C_MAIL:
            buf_printf(&L->out, "MAIL FROM:<%s>\r\n", m->mail_from);
            break;
        case C_RCPT:
            buf_printf(&L->out, "RCPT TO:<%s>\r\n", m->rcpt_to);
            break;
        case C_DATA:
            buf_adds(&L->out, "DATA\r\n");
            break;
        case C_DOT:
            if (c->decided[st.i]) { /* 354 after a refused MAIL or RCPT: end it empty */
                buf_adds(&L->out, ".\r\n");
            } else {
                put_text(&L->out, m->data, m->len);
                c->text_sent[st.i] = 1;
            }
            break;
        }
        L->wait[L->nwait++] = st;
    }
    memmove(L->todo, L->todo + k, (size_t)(L->ntodo - k) * sizeof *L->todo);
    L->ntodo -= k;
}

static void link_lost(struct smtp_conn *c, struct link *L, const char *why);

/* Writes what L has to write, refilling from its commands: 0, or -1 once L was lost. A
 * failed write loses L at once only when no reply is awaited; else the replies the
 * server sent before it went away (a 250 to a final dot among them) are read first, and
 * the end of the stream then loses it. */
static int link_write(struct smtp_conn *c, struct link *L)
{
    if (L->write_failed)
        return 0;
    for (;;) {
        size_t sent = 0;
        CURLcode rc;
        if (L->out_pos == L->out.len) {
            buf_reset(&L->out);
            L->out_pos = 0;
            fill(c, L);
            if (L->out.len == 0)
                return 0;
        }
        rc = curl_easy_send(L->h, L->out.p + L->out_pos, L->out.len - L->out_pos, &sent);
        if (rc == CURLE_AGAIN)
            return 0;
        if (rc != CURLE_OK) {
            if (L->nwait > 0) {
                L->write_failed = 1;
                return 0;
            }
            link_lost(c, L, curl_easy_strerror(rc));
            return -1;
        }
        L->out_pos += sent;
        L->deadline = clock_mono_ms() + 1000.0 * (double)c->s->timeout_s;
    }
}

/* A whole reply came: it answers L's oldest awaited command. 0, or -1 once L was lost. */
static int on_reply(struct smtp_conn *c, struct link *L)
{
    int code = (int)strtol(L->reply, NULL, 10);
    struct step st;

    if (L->nwait == 0 || code < 200 || code > 599) {
        char why[REPLY_MAX + 32];
        snprintf(why, sizeof why, "%s: %s", L->nwait ? "a reply that is none" : "unasked reply",
                 L->reply);
        link_lost(c, L, why);
        return -1;
    }
    st = L->wait[0];
    memmove(L->wait, L->wait + 1, (size_t)(--L->nwait) * sizeof *L->wait);
    switch (st.what) {
    case C_RSET:
        if (code / 100 != 2) {
            link_lost(c, L, L->reply);
            return -1;
        }
        break;
    case C_MAIL:
    case C_RCPT:
        if (code / 100 != 2) {
            decide(c, st.i, st.what, L->reply);
            L->dirty = 1;
            if (!L->pipelining) { /* the rest of this transaction need not be asked */
                L->ntodo = 0;
                begin_next(L);
            }
        }
        break;
    case C_DATA:
        if (code == 354) {
            if (c->decided[st.i])
                L->dirty = 1; /* a server that took DATA with no recipient */
            push(L, C_DOT, st.i);
            if (L->pipelining)
                begin_next(L);
        } else {
            decide(c, st.i, C_DATA, L->reply);
            L->dirty = 1;
            begin_next(L);
        }
        break;
    case C_DOT:
        decide(c, st.i, C_DOT, L->reply);
        if (!L->pipelining)
            begin_next(L);
        break;
    }
    if (code == 421) { /* the server is closing the connection */
        link_lost(c, L, L->reply);
        return -1;
    }
    return link_write(c, L);
}

/* Reads what L's server sent and acts on each whole reply: 0, or -1 once L was lost. */
static int link_read(struct smtp_conn *c, struct link *L)
{
    for (;;) {
        size_t got = 0, start = 0, i;
        CURLcode rc = curl_easy_recv(L->h, L->in + L->in_len, sizeof L->in - L->in_len, &got);
        if (rc == CURLE_AGAIN)
            return 0;
        if (rc != CURLE_OK || got == 0) {
            link_lost(c, L, rc != CURLE_OK ? curl_easy_strerror(rc) : "closed by the server");
            return -1;
        }
        L->deadline = clock_mono_ms() + 1000.0 * (double)c->s->timeout_s;
        L->in_len += got;
        for (i = 0; i < L->in_len; i++) {
            size_t k;
            if (L->in[i] != '\n')
                continue;
            k = i - start;
            if (k > 0 && L->in[start + k - 1] == '\r')
                k--;
            if (L->skipping)
                L->skipping = 0;
            else if (reply_line(L, L->in + start, k) && on_reply(c, L))
                return -1;
            start = i + 1;
        }
        if (start == 0 && L->in_len == sizeof L->in) { /* a line longer than in[] */
            int whole = !L->skipping && reply_line(L, L->in, L->in_len); /* its start */
            L->skipping = 1;
            L->in_len = 0;
            if (whole && on_reply(c, L))
                return -1;
            continue;
        }
        memmove(L->in, L->in + start, L->in_len - start);
        L->in_len -= start;
    }
}

/* L's connection is gone (why): the message whose reply was awaited, and any whose text
 * went out, are retry with no reply; the others that were not decided begin again on a
 * new connection, while L has reconnects left. */
static void link_lost(struct smtp_conn *c, struct link *L, const char *why)
{
    int k, n = 0, requeue[SMTP_DEPTH];

    if (L->nwait > 0 && L->wait[0].i >= 0)
        decide_lost(c, L->wait[0].i, "connection lost awaiting the reply to %s: %s",
                    cmd_name[L->wait[0].what], why);
    for (k = 0; k < L->nq; k++) {
        int i = L->q[k];
        if (c->decided[i])
            continue;
        if (c->text_sent[i])
            decide_lost(c, i, "connection lost after the message went out (%s): %s",
                        "it may have been accepted", why);
        else
            requeue[n++] = i;
    }
    link_close(L, 0);
    memcpy(L->q, requeue, (size_t)n * sizeof *requeue);
    L->nq = n;
    L->next = 0;
    if (n == 0)
        return;
    if (L->reconnects >= SMTP_RECONNECTS) {
        for (k = 0; k < n; k++)
            decide_lost(c, L->q[k], "connection lost: %s%s", why, "");
        L->nq = 0;
        return;
    }
    L->reconnects++;
    if (link_open(c, L)) {
        decide_unopened(c, L);
        return;
    }
    L->deadline = clock_mono_ms() + 1000.0 * (double)c->s->timeout_s;
    begin_next(L);
    link_write(c, L);
}

/* What L waits for: POLLIN while a reply is awaited, POLLOUT while bytes wait to go out
 * (not after a failed write); 0 when it is idle or closed. */
static short link_events(const struct link *L)
{
    if (L->h == NULL)
        return 0;
    return (short)((L->nwait ? POLLIN : 0) |
                   (L->out_pos < L->out.len && !L->write_failed ? POLLOUT : 0));
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

static void smtp_send_batch(struct provider_conn *conn, const struct provider_message *m, size_t n,
                            struct provider_result *r)
{
    struct smtp_conn *c = (struct smtp_conn *)conn;
    size_t used, i;

    for (i = c->nlinks * SMTP_DEPTH; i < n; i++) { /* past provider_batch_max: not tried */
        provider_classify_smtp(0, "", &r[i]);
        snprintf(r[i].text, sizeof r[i].text, "not sent: more than a batch takes");
    }
    if (n > c->nlinks * SMTP_DEPTH)
        n = c->nlinks * SMTP_DEPTH;
    used = n < c->nlinks ? n : c->nlinks;
    c->m = m;
    c->r = r;
    memset(c->decided, 0, n);
    memset(c->text_sent, 0, n);
    for (i = 0; i < used; i++) {
        c->links[i].nq = c->links[i].next = 0;
        c->links[i].reconnects = 0;
    }
    for (i = 0; i < n; i++) {
        struct link *L = &c->links[i % used];
        if (!envelope_ok(m[i].mail_from) || !envelope_ok(m[i].rcpt_to)) {
            c->decided[i] = 1;
            r[i].outcome = PROVIDER_FAILED;
            snprintf(r[i].text, sizeof r[i].text,
                     "envelope address not fit for SMTP (empty, too long, "
                     "or with spaces, controls or <>)");
            continue;
        }
        L->q[L->nq++] = (int)i;
    }
    for (i = 0; i < used; i++) {
        struct link *L = &c->links[i];
        if (L->nq == 0)
            continue;
        if (L->h && !link_alive(L))
            link_close(L, 0);
        if (L->h == NULL && link_open(c, L)) {
            decide_unopened(c, L);
            continue;
        }
        L->deadline = clock_mono_ms() + 1000.0 * (double)c->s->timeout_s;
        begin_next(L);
        link_write(c, L);
    }
    /* Each pass: poll, act on every link that has something (reads first: a reply that
     * came is never lost to a failed write), then declare late the links past their
     * deadline that had nothing. A pass in which a connection was opened (which blocks)
     * declares none late: replies may have come meanwhile, and the next poll sees them. */
    for (;;) {
        struct pollfd pf[SMTP_LINKS_MAX];
        size_t map[SMTP_LINKS_MAX], k = 0;
        double now = clock_mono_ms(), wait = 1000;
        unsigned opens = c->opens;

        for (i = 0; i < used; i++) {
            struct link *L = &c->links[i];
            short ev = link_events(L);
            if (ev == 0)
                continue;
            if (L->deadline - now < wait)
                wait = L->deadline - now;
            pf[k].fd = L->fd;
            pf[k].events = ev;
            pf[k].revents = 0;
            map[k++] = i;
        }
        if (k == 0)
            break;
        if (poll(pf, k, wait > 0 ? (int)wait + 1 : 0) < 0)
            continue; /* EINTR */
        for (i = 0; i < k; i++) {
            struct link *L = &c->links[map[i]];
            if (L->h && (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) && link_read(c, L))
                continue;
            if (L->h && (pf[i].revents & (POLLOUT | POLLERR)))
                link_write(c, L);
        }
        if (c->opens != opens)
            continue;
        now = clock_mono_ms();
        for (i = 0; i < k; i++) {
            struct link *L = &c->links[map[i]];
            if (pf[i].revents == 0 && link_events(L) && now >= L->deadline) {
                char why[64];
                snprintf(why, sizeof why, "no answer in %ld s", c->s->timeout_s);
                link_lost(c, L, why);
            }
        }
    }
    for (i = 0; i < n; i++) /* cannot be: every message ends decided above */
        decide_lost(c, (int)i, "no reply%s%s", "", "");
}

static void smtp_send(struct provider_conn *conn, const struct provider_message *m,
                      struct provider_result *r)
{
    smtp_send_batch(conn, m, 1, r);
}

const struct provider_ops provider_smtp_ops = {
    .type = "smtp",
    .init = smtp_init,
    .fini = smtp_fini,
    .open = smtp_open,
    .send = smtp_send,
    .close = smtp_close,
    .send_batch = smtp_send_batch,
    .per_connection = SMTP_DEPTH,
    .connections_max = SMTP_LINKS_MAX,
};
