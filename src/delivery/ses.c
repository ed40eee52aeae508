/* delivery/ses.c -- Amazon SES events delivered through SNS: the envelope, its signature,
 * the signing certificates, subscription confirmation, and the SES event inside.
 *
 * DESIGN: an SNS POST is a JSON envelope whose Message is a string holding the SES event
 * (itself JSON). sns_read takes the envelope apart into the caller's arena; sns_verify
 * checks its RSA signature (v1 SHA-1, v2 SHA-256) over the "Key\nValue\n" string SNS
 * signs; ses_parse reads the Message into message events. Nothing here trusts a URL
 * from the body: the certificate URL must match a pattern (AWS's hosts by default)
 * before anything is fetched, the fetch speaks http(s) only, follows no redirect, stops
 * at 64 KiB and 10 s, and a certificate is kept (its public key, by URL) only once it
 * was read as an RSA certificate -- a failed fetch is retried with the next message.
 * The cache is a fixed array of 64 under one mutex, replaced oldest first: SNS signs
 * with a handful of certificates, so a lookup is a short scan and never a fetch. */
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pcre2.h>
#include <sodium.h>

#include "core/jtree.h"
#include "delivery.h"
#include "ses_int.h"

#define SNS_MAX_VALUES 4096    /* JSON values in an envelope (a dozen in practice) */
#define SES_MAX_VALUES 200000  /* in a Message: MEV_MAX_PER_BODY recipients and more */
#define SNS_SIG_MAX_BYTES 1024 /* a decoded signature: RSA up to 8192 bits */
#define URL_MATCH_LIMIT 100000 /* PCRE2 steps for one certificate URL */
#define URL_DEPTH_LIMIT 10000

/* ---- the envelope ------------------------------------------------------------------- */

static const char *const type_names[] = {
    [SNS_NOTIFICATION] = "Notification",
    [SNS_SUBSCRIPTION_CONFIRMATION] = "SubscriptionConfirmation",
    [SNS_UNSUBSCRIBE_CONFIRMATION] = "UnsubscribeConfirmation",
};
#define TYPE_COUNT (sizeof type_names / sizeof *type_names)

/* The members every envelope has (confirm: only confirmations), with where they go. */
static const struct {
    const char *pointer; /* "/Key": the key is what follows the slash */
    size_t off;
    int confirm;
} envelope_fields[] = {
    {"/MessageId", offsetof(struct sns_msg, message_id), 0},
    {"/TopicArn", offsetof(struct sns_msg, topic_arn), 0},
    {"/Message", offsetof(struct sns_msg, message), 0},
    {"/Timestamp", offsetof(struct sns_msg, timestamp), 0},
    {"/SignatureVersion", offsetof(struct sns_msg, signature_version), 0},
    {"/Signature", offsetof(struct sns_msg, signature), 0},
    {"/SigningCertURL", offsetof(struct sns_msg, signing_cert_url), 0},
    {"/SubscribeURL", offsetof(struct sns_msg, subscribe_url), 1},
    {"/Token", offsetof(struct sns_msg, token), 1},
};

int sns_read(const char *body, size_t len, struct arena *a, struct sns_msg *out, struct err *e)
{
    struct jt_limits lim = {.max_values = SNS_MAX_VALUES};
    struct jt_error je;
    struct jt *root;
    const char *type;
    size_t i;
    int rc;

    memset(out, 0, sizeof *out);
    rc = jt_parse_limited(a, body, len, &lim, &root, &je);
    if (rc == E_TOOBIG)
        return ERR(e, E_TOOBIG, "not an SNS message: more than %d JSON values", SNS_MAX_VALUES);
    if (rc)
        return ERR(e, E_INVAL, "not an SNS message: %s at line %d, column %d", je.text, je.line,
                   je.column);
    if (root->type != JT_OBJ)
        return ERR(e, E_INVAL, "not an SNS message: a JSON object is expected");
    type = jt_str(root, "Type");
    for (i = 1; type && i < TYPE_COUNT; i++)
        if (strcmp(type, type_names[i]) == 0)
            out->type = (enum sns_type)i;
    if (out->type == 0)
        return ERRF(e, E_INVAL, "/Type",
                    "not an SNS message: Type is not Notification, SubscriptionConfirmation "
                    "or UnsubscribeConfirmation");
    for (i = 0; i < sizeof envelope_fields / sizeof *envelope_fields; i++) {
        const char **slot = (const char **)((char *)out + envelope_fields[i].off);
        const char *key = envelope_fields[i].pointer + 1;
        if (envelope_fields[i].confirm && out->type == SNS_NOTIFICATION)
            continue;
        *slot = jt_str(root, key);
        if (*slot == NULL)
            return ERRF(e, E_INVAL, envelope_fields[i].pointer,
                        "not an SNS %s: \"%s\" (a string) is missing", type_names[out->type], key);
    }
    out->subject = jt_str(root, "Subject"); /* optional; null is absent */
    return 0;
}

static void sign_add(struct buf *out, const char *key, const char *value)
{
    if (value == NULL)
        return;
    buf_adds(out, key);
    buf_addc(out, '\n');
    buf_adds(out, value);
    buf_addc(out, '\n');
}

void sns_string_to_sign(const struct sns_msg *m, struct buf *out)
{
    int note = m->type == SNS_NOTIFICATION;

    /* Keys in byte order; Subject only on a Notification that has one (AWS's page). */
    sign_add(out, "Message", m->message);
    sign_add(out, "MessageId", m->message_id);
    if (note)
        sign_add(out, "Subject", m->subject);
    else
        sign_add(out, "SubscribeURL", m->subscribe_url);
    sign_add(out, "Timestamp", m->timestamp);
    if (!note)
        sign_add(out, "Token", m->token);
    sign_add(out, "TopicArn", m->topic_arn);
    sign_add(out, "Type", (unsigned)m->type < TYPE_COUNT ? type_names[m->type] : NULL);
}

/* ---- signatures --------------------------------------------------------------------- */

static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* The RSA public key of the first certificate in pem[0..len); NULL with *why saying
 * what is wrong ("...: the certificate <why>"). Caller frees the key. */
static EVP_PKEY *pem_key(const char *pem, size_t len, const char **why)
{
    BIO *bio = NULL;
    X509 *x = NULL;
    EVP_PKEY *k = NULL;

    if (pem == NULL || len == 0 || len > SNS_CERT_MAX_BYTES) {
        *why = "is empty or over 64 KiB";
        return NULL;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio)
        x = PEM_read_bio_X509(bio, NULL, no_password, NULL);
    if (x)
        k = X509_get_pubkey(x);
    if (x == NULL) {
        *why = "is not a PEM X.509 certificate";
    } else if (k == NULL) {
        *why = "has a public key OpenSSL cannot read";
    } else if (EVP_PKEY_base_id(k) != EVP_PKEY_RSA) {
        *why = "does not hold an RSA key";
        EVP_PKEY_free(k);
        k = NULL;
    }
    X509_free(x);
    BIO_free(bio);
    ERR_clear_error(); /* this thread's OpenSSL error queue: nobody reads it */
    return k;
}

static int verify_key(const struct sns_msg *m, EVP_PKEY *key, struct err *e)
{
    unsigned char sig[SNS_SIG_MAX_BYTES];
    size_t siglen = 0;
    const EVP_MD *md = NULL;
    EVP_MD_CTX *ctx = NULL;
    struct buf tbs;
    int rc = 0;

    buf_init(&tbs);
    if (m->signature_version && strcmp(m->signature_version, "1") == 0)
        md = EVP_sha1();
    else if (m->signature_version && strcmp(m->signature_version, "2") == 0)
        md = EVP_sha256();
    if (md == NULL) {
        rc = ERRF(e, E_AUTH, "/SignatureVersion", "SignatureVersion is not \"1\" or \"2\"");
        goto out;
    }
    if (m->signature == NULL ||
        sodium_base642bin(sig, sizeof sig, m->signature, strlen(m->signature), NULL, &siglen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        siglen == 0) {
        rc = ERRF(e, E_AUTH, "/Signature", "Signature is not base64 of at most %d bytes",
                  SNS_SIG_MAX_BYTES);
        goto out;
    }
    sns_string_to_sign(m, &tbs);
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestVerifyInit(ctx, NULL, md, NULL, key) != 1) {
        rc = ERR(e, E_AUTH, "cannot check a SignatureVersion %s signature (OpenSSL refused)",
                 m->signature_version);
        goto out;
    }
    if (EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)tbs.p, tbs.len) != 1)
        rc = ERRF(e, E_AUTH, "/Signature", "the signature does not verify");
out:
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    buf_release(&tbs);
    return rc;
}

int sns_verify(const struct sns_msg *m, const char *cert_pem, size_t cert_len, struct err *e)
{
    const char *why = NULL;
    EVP_PKEY *key = pem_key(cert_pem, cert_len, &why);
    int rc;

    if (key == NULL)
        return ERR(e, E_AUTH, "the signing certificate %s", why);
    rc = verify_key(m, key, e);
    EVP_PKEY_free(key);
    return rc;
}

/* ---- HTTP GET (certificates, confirmations) ----------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_start(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT); /* not thread-safe itself: once, here */
}

struct sink {
    struct buf *body; /* NULL: the answer is read and dropped */
    size_t max;
    int over;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t len = size * n;

    if (s->body == NULL)
        return len;
    if (len > s->max - s->body->len) {
        s->over = 1;
        return 0; /* stops the transfer: CURLE_WRITE_ERROR */
    }
    buf_add(s->body, p, len);
    return len;
}

/* GET url (http or https, no redirect, SNS_FETCH_TIMEOUT_S) into body (NULL: dropped),
 * at most max bytes. 0 on a 2xx, else E_IO with e saying "<what>: why". */
static int http_get(const char *url, struct buf *body, size_t max, const char *what, struct err *e)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    struct sink s = {body, max, 0};
    long status = 0;
    CURLcode cc;
    CURL *h;
    int rc = 0;

    pthread_once(&curl_once, curl_start);
    h = curl_easy_init();
    if (h == NULL)
        return ERR(e, E_IO, "%s: libcurl could not start a transfer", what);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
    curl_easy_setopt(h, CURLOPT_TIMEOUT, SNS_FETCH_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "EqueEngage");
    if (body)
        curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
    cc = curl_easy_perform(h);
    if (cc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (s.over || cc == CURLE_FILESIZE_EXCEEDED)
        rc = ERR(e, E_IO, "%s: the answer is over %zu bytes", what, max);
    else if (cc != CURLE_OK)
        rc = ERR(e, E_IO, "%s: %s", what, errbuf[0] ? errbuf : curl_easy_strerror(cc));
    else if (status < 200 || status > 299)
        rc = ERR(e, E_IO, "%s: the server answered HTTP %ld", what, status);
    curl_easy_cleanup(h);
    return rc;
}

/* ---- the certificate cache ---------------------------------------------------------- */

struct cert_entry {
    char *url;
    EVP_PKEY *key; /* read only once cached: several threads verify with it at once */
};

struct sns_certs {
    pcre2_code *re;          /* read only: shared by every thread */
    pcre2_match_context *mc; /* the limits; read only too */
    pthread_mutex_t mu;      /* mu protects v, n and next */
    struct cert_entry v[SNS_CERT_CACHE_MAX];
    size_t n, next; /* next: the slot replaced when v is full (the oldest) */
};

int sns_certs_new(struct sns_certs **out, const char *pattern, struct err *e)
{
    struct sns_certs *c;
    PCRE2_SIZE off;
    pcre2_code *re;
    int ec;

    *out = NULL;
    if (pattern == NULL)
        pattern = SNS_CERT_PATTERN_DEFAULT;
    /* $ at the very end only: by default it also matches before a final newline. */
    re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                       PCRE2_DOLLAR_ENDONLY | PCRE2_NEVER_BACKSLASH_C, &ec, &off, NULL);
    if (re == NULL) {
        PCRE2_UCHAR why[160];
        if (pcre2_get_error_message(ec, why, sizeof why) < 0)
            snprintf((char *)why, sizeof why, "error %d", ec);
        return ERR(e, E_INVAL,
                   "the SNS certificate URL pattern is not a valid regular expression: %s at "
                   "offset %zu",
                   (const char *)why, (size_t)off);
    }
    c = xcalloc(1, sizeof *c);
    c->re = re;
    c->mc = pcre2_match_context_create(NULL);
    ASSERT(c->mc);
    pcre2_set_match_limit(c->mc, URL_MATCH_LIMIT);
    pcre2_set_depth_limit(c->mc, URL_DEPTH_LIMIT);
    ASSERT(pthread_mutex_init(&c->mu, NULL) == 0);
    *out = c;
    return 0;
}

void sns_certs_free(struct sns_certs *c)
{
    size_t i;

    if (c == NULL)
        return;
    for (i = 0; i < c->n; i++) {
        free(c->v[i].url);
        EVP_PKEY_free(c->v[i].key);
    }
    pcre2_match_context_free(c->mc);
    pcre2_code_free(c->re);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int sns_cert_url_allowed(const struct sns_certs *c, const char *url)
{
    pcre2_match_data *md;
    size_t i, n;
    int rc;

    if (url == NULL)
        return 0;
    n = strnlen(url, SNS_URL_MAX + 1);
    if (n == 0 || n > SNS_URL_MAX)
        return 0;
    /* No space, control or non-ASCII byte, whatever the pattern allows: curl would
     * read such a URL in ways a pattern's author does not foresee. */
    for (i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return 0;
    md = pcre2_match_data_create(1, NULL);
    ASSERT(md);
    rc = pcre2_match(c->re, (PCRE2_SPTR)url, n, 0, 0, md, c->mc);
    pcre2_match_data_free(md);
    return rc >= 0; /* a limit reached is no match */
}

/* The key cached for url, with a reference the caller drops (EVP_PKEY_free); NULL. */
static EVP_PKEY *cache_get(struct sns_certs *c, const char *url)
{
    EVP_PKEY *k = NULL;
    size_t i;

    pthread_mutex_lock(&c->mu);
    for (i = 0; i < c->n && k == NULL; i++)
        if (strcmp(c->v[i].url, url) == 0 && EVP_PKEY_up_ref(c->v[i].key) == 1)
            k = c->v[i].key;
    pthread_mutex_unlock(&c->mu);
    return k;
}

/* Keeps key (a reference of its own) for url, unless another thread did meanwhile. */
static void cache_put(struct sns_certs *c, const char *url, EVP_PKEY *key)
{
    struct cert_entry *slot;
    size_t i;

    pthread_mutex_lock(&c->mu);
    for (i = 0; i < c->n; i++)
        if (strcmp(c->v[i].url, url) == 0)
            goto out;
    if (EVP_PKEY_up_ref(key) != 1)
        goto out;
    if (c->n < SNS_CERT_CACHE_MAX) {
        slot = &c->v[c->n++];
    } else {
        slot = &c->v[c->next];
        c->next = (c->next + 1) % SNS_CERT_CACHE_MAX;
        free(slot->url);
        EVP_PKEY_free(slot->key);
    }
    slot->url = xstrdup(url);
    slot->key = key;
out:
    pthread_mutex_unlock(&c->mu);
}

size_t sns_certs_cached(struct sns_certs *c)
{
    size_t n;

    pthread_mutex_lock(&c->mu);
    n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

int sns_certs_verify(struct sns_certs *c, const struct sns_msg *m, struct err *e)
{
    const char *url = m->signing_cert_url, *why = NULL;
    EVP_PKEY *key = NULL;
    struct buf pem;
    int rc = 0;

    buf_init(&pem);
    if (!sns_cert_url_allowed(c, url)) {
        rc = ERRF(e, E_AUTH, "/SigningCertURL",
                  "SigningCertURL is not an SNS certificate URL (it does not match the "
                  "allowed pattern)");
        goto out;
    }
    key = cache_get(c, url);
    if (key == NULL) {
        rc = http_get(url, &pem, SNS_CERT_MAX_BYTES, "cannot fetch the SNS signing certificate", e);
        if (rc)
            goto out;
        key = pem_key(pem.p, pem.len, &why);
        if (key == NULL) {
            rc = ERR(e, E_IO, "the SNS signing certificate at SigningCertURL %s", why);
            goto out;
        }
        cache_put(c, url, key);
    }
    rc = verify_key(m, key, e);
out:
    EVP_PKEY_free(key);
    buf_release(&pem);
    return rc;
}

int sns_confirm(const struct sns_msg *m, struct err *e)
{
    const char *u = m->subscribe_url;

    if (m->type != SNS_SUBSCRIPTION_CONFIRMATION && m->type != SNS_UNSUBSCRIBE_CONFIRMATION)
        return ERRF(e, E_INVAL, "/Type", "only a confirmation has a SubscribeURL to visit");
    if (u == NULL || (strncasecmp(u, "https://", 8) != 0 && strncasecmp(u, "http://", 7) != 0))
        return ERRF(e, E_INVAL, "/SubscribeURL", "SubscribeURL is not an http(s) URL");
    return http_get(u, NULL, 0, "cannot confirm the SNS subscription", e);
}

/* ---- the SES event ------------------------------------------------------------------ */

/* Who an event is about: each item of a list in the event's own object, each of
 * mail.destination, or one event (opens and clicks: the message's sole recipient). */
enum ses_per { PER_LIST, PER_DESTINATION, PER_MESSAGE };

static const struct {
    const char *type; /* eventType or notificationType */
    const char *key;  /* the event's object */
    enum ses_per per;
    const char *list; /* PER_LIST: the recipients in the event's object */
    enum mev_kind kind;
} ses_types[] = {
    {"Bounce", "bounce", PER_LIST, "bouncedRecipients", MEV_BOUNCED_SOFT}, /* or hard */
    {"Complaint", "complaint", PER_LIST, "complainedRecipients", MEV_COMPLAINED},
    {"Delivery", "delivery", PER_LIST, "recipients", MEV_DELIVERED},
    {"Open", "open", PER_MESSAGE, NULL, MEV_OPENED},
    {"Click", "click", PER_MESSAGE, NULL, MEV_CLICKED},
    {"Reject", "reject", PER_DESTINATION, NULL, MEV_DROPPED},
    {"DeliveryDelay", "deliveryDelay", PER_LIST, "delayedRecipients", MEV_DEFERRED},
    /* Send, Rendering Failure, Subscription, AmazonSnsSubscriptionSucceeded: skipped */
};

/* What every event of one Message shares. */
struct ses_msg {
    struct arena *a;
    const char *source_id; /* the SNS MessageId */
    const char *message_id, *queue_id;
    int64_t mail_ms;
};

static int64_t iso_ms(const char *s)
{
    int64_t ms = 0;

    if (s == NULL || time_parse_iso(s, strlen(s), &ms) != 0)
        return 0;
    return ms;
}

/* "a b", "a", "b" or NULL, cut to MEV_MAX_REASON. */
static const char *join2(struct arena *a, const char *x, const char *y)
{
    struct buf b;
    const char *r;

    if (x == NULL || y == NULL)
        return mev_strdup(a, x ? x : y, strlen(x ? x : y ? y : ""), MEV_MAX_REASON);
    buf_init(&b);
    buf_printf(&b, "%s %s", x, y);
    r = mev_strdup(a, b.p, b.len, MEV_MAX_REASON);
    buf_release(&b);
    return r;
}

/* Our message id: mail.tags.engage_message_id[0], else the Message-ID header. */
static const char *find_message_id(struct arena *a, const struct jt *mail)
{
    const struct jt *tag = jt_get(jt_get(mail, "tags"), "engage_message_id");
    const struct jt *headers = jt_get(mail, "headers");
    const char *s;
    char id[48];
    uint32_t i;

    if (tag && tag->type == JT_ARR && tag->n > 0)
        tag = &tag->u.items[0];
    if (tag && tag->type == JT_STR && mev_message_id(tag->u.s, id) == 0)
        return arena_strndup(a, id, strlen(id));
    for (i = 0; headers && headers->type == JT_ARR && i < headers->n; i++) {
        const struct jt *h = &headers->u.items[i];
        s = jt_str(h, "name");
        if (s && strcasecmp(s, "Message-ID") == 0 && mev_message_id(jt_str(h, "value"), id) == 0)
            return arena_strndup(a, id, strlen(id));
    }
    s = jt_str(jt_get(mail, "commonHeaders"), "messageId");
    if (s && mev_message_id(s, id) == 0)
        return arena_strndup(a, id, strlen(id));
    return NULL;
}

/* A new event for recipient index i of count, its shared fields filled. */
static struct mev *ses_add(const struct ses_msg *x, struct mev_list *out, enum mev_kind kind,
                           const char *email, size_t i, size_t count, int64_t at_ms, struct err *e)
{
    struct mev *v = mev_list_add(out);

    if (v == NULL) {
        ERR(e, E_TOOBIG, "the SES event names more than %d recipients", MEV_MAX_PER_BODY);
        return NULL;
    }
    v->kind = kind;
    if (count > 1 && x->source_id) {
        struct buf b;
        buf_init(&b);
        buf_printf(&b, "%s/%zu", x->source_id, i);
        v->source_id = mev_strdup(x->a, b.p, b.len, MEV_MAX_ID);
        buf_release(&b);
    } else if (x->source_id) {
        v->source_id = mev_strdup(x->a, x->source_id, strlen(x->source_id), MEV_MAX_ID);
    }
    v->message_id = x->message_id;
    v->queue_id = x->queue_id;
    v->email = email ? mev_strdup(x->a, email, strlen(email), MEV_MAX_EMAIL) : NULL;
    v->at_ms = at_ms ? at_ms : x->mail_ms;
    return v;
}

/* A bounce's or a delay's recipient: "status diagnosticCode", else fallback_a fallback_b. */
static const char *recipient_reason(struct arena *a, const struct jt *r, const char *fallback_a,
                                    const char *fallback_b)
{
    const char *status = jt_str(r, "status"), *diag = jt_str(r, "diagnosticCode");

    if (status || diag)
        return join2(a, status, diag);
    return join2(a, fallback_a, fallback_b);
}

static int ses_events(const struct ses_msg *x, size_t row, const struct jt *ev,
                      const struct jt *mail, struct mev_list *out, struct err *e)
{
    const struct jt *list = NULL;
    int64_t at = iso_ms(jt_str(ev, "timestamp"));
    size_t i, count;
    struct mev *v;

    if (ses_types[row].per == PER_LIST)
        list = jt_get(ev, ses_types[row].list);
    else
        list = jt_get(mail, "destination");
    count = list && list->type == JT_ARR ? list->n : 0;
    if (ses_types[row].per == PER_MESSAGE) {
        const char *email =
            count == 1 && list->u.items[0].type == JT_STR ? list->u.items[0].u.s : NULL;
        v = ses_add(x, out, ses_types[row].kind, email, 0, 1, at, e);
        if (v == NULL)
            return E_TOOBIG;
        v->user_agent = jt_str(ev, "userAgent");
        v->user_agent = mev_strdup(x->a, v->user_agent, v->user_agent ? strlen(v->user_agent) : 0,
                                   MEV_MAX_AGENT);
        if (ses_types[row].kind == MEV_CLICKED) {
            const char *link = jt_str(ev, "link");
            v->url = mev_strdup(x->a, link, link ? strlen(link) : 0, MEV_MAX_URL);
        }
        return 0;
    }
    for (i = 0; i < count; i++) {
        const struct jt *r = &list->u.items[i];
        const char *email = r->type == JT_STR ? r->u.s : jt_str(r, "emailAddress");
        enum mev_kind kind = ses_types[row].kind;
        if (kind == MEV_BOUNCED_SOFT) {
            const char *type = jt_str(ev, "bounceType"), *status = jt_str(r, "status");
            if (type &&
                (strcmp(type, "Permanent") == 0 ||
                 (strcmp(type, "Transient") == 0 && status && strcmp(status, "5.4.4") == 0)))
                kind = MEV_BOUNCED_HARD;
        }
        v = ses_add(x, out, kind, email, i, count, at, e);
        if (v == NULL)
            return E_TOOBIG;
        if (kind == MEV_BOUNCED_HARD || kind == MEV_BOUNCED_SOFT)
            v->reason =
                recipient_reason(x->a, r, jt_str(ev, "bounceType"), jt_str(ev, "bounceSubType"));
        else if (kind == MEV_DEFERRED)
            v->reason = recipient_reason(x->a, r, jt_str(ev, "delayType"), NULL);
        else if (kind == MEV_DROPPED)
            v->reason = join2(x->a, jt_str(ev, "reason"), NULL);
    }
    return 0;
}

int ses_parse(const struct sns_msg *m, struct mev_list *out, struct err *e)
{
    struct jt_limits lim = {.max_values = SES_MAX_VALUES};
    struct ses_msg x = {.a = out->a, .source_id = m->message_id};
    const struct jt *mail, *ev;
    struct jt_error je;
    struct jt *root;
    const char *type;
    size_t row, nrows = sizeof ses_types / sizeof *ses_types, n0;
    int rc;

    if (m->type != SNS_NOTIFICATION || m->message == NULL)
        return ERRF(e, E_INVAL, "/Type", "only an SNS Notification carries an SES event");
    rc = jt_parse_limited(out->a, m->message, strlen(m->message), &lim, &root, &je);
    if (rc == E_TOOBIG)
        return ERRF(e, E_TOOBIG, "/Message", "the SES event has more than %d JSON values",
                    SES_MAX_VALUES);
    if (rc)
        return ERRF(e, E_INVAL, "/Message", "Message is not an SES event: %s at line %d, column %d",
                    je.text, je.line, je.column);
    type = jt_str(root, "eventType");
    if (type == NULL)
        type = jt_str(root, "notificationType");
    if (type == NULL)
        return ERRF(e, E_INVAL, "/Message",
                    "Message is not an SES event: it has no eventType or notificationType");
    for (row = 0; row < nrows; row++)
        if (strcmp(type, ses_types[row].type) == 0)
            break;
    if (row == nrows)
        return 0; /* a type with no kind of ours */
    mail = jt_get(root, "mail");
    if (mail == NULL || mail->type != JT_OBJ)
        return ERRF(e, E_INVAL, "/Message/mail", "the SES %s event has no \"mail\" object", type);
    ev = jt_get(root, ses_types[row].key);
    if (ev == NULL || ev->type != JT_OBJ)
        return ERRF(e, E_INVAL, "/Message", "the SES %s event has no \"%s\" object", type,
                    ses_types[row].key);
    x.message_id = find_message_id(out->a, mail);
    x.queue_id = jt_str(mail, "messageId");
    x.queue_id = mev_strdup(out->a, x.queue_id, x.queue_id ? strlen(x.queue_id) : 0, MEV_MAX_ID);
    x.mail_ms = iso_ms(jt_str(mail, "timestamp"));
    n0 = out->n;
    rc = ses_events(&x, row, ev, mail, out, e);
    if (rc)
        out->n = n0; /* all of the Message's events or none */
    return rc;
}
