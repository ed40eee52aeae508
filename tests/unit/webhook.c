/* tests/unit/webhook.c -- provider webhooks (src/delivery/sendgrid.c, mailgun.c,
 * postmark.c, generic.c).
 *
 * Signatures: SendGrid's published test vector verifies and every tampering with it
 * does not; a P-256 key made here signs a real multi-event body; Mailgun's and the
 * generic format's HMACs are computed here with OpenSSL (not the code under test) and
 * checked for wrong keys, tampering and the replay window both ways; Postmark's Basic
 * credentials are refused for every near miss. Parsing: each provider's documented
 * payloads (protocols.md section 2 and the providers' examples) map to the expected
 * kind, ids, message id, time, reason, URL and agent; malformed bodies give E_INVAL
 * naming where; more than MEV_MAX_PER_BODY events, or a body of too many values, give
 * E_TOOBIG. JSON below is written with ' for " (js()), as the providers print it. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <stdint.h>

#include "delivery/delivery.h"
#include "helpers.h"

/* ---- helpers ------------------------------------------------------------------------ */

/* s with every ' made ", copied into a */
static char *js(struct arena *a, const char *s)
{
    char *p = arena_strndup(a, s, strlen(s));

    for (char *q = p; *q; q++)
        if (*q == '\'')
            *q = '"';
    return p;
}

typedef int (*parse_fn)(const char *, size_t, struct mev_list *, struct err *);

struct run {
    struct arena a;
    struct mev_list l;
    struct err e;
    int rc;
};

static void run_raw(struct run *r, parse_fn fn, const char *body, size_t len)
{
    memset(r, 0, sizeof *r);
    arena_init(&r->a);
    mev_list_init(&r->l, &r->a);
    r->rc = fn(body, len, &r->l, &r->e);
}

/* parses json (with ' for ") with fn; run_done() releases */
static void run(struct run *r, parse_fn fn, const char *json)
{
    struct arena tmp;
    char *body;

    arena_init(&tmp);
    body = js(&tmp, json);
    run_raw(r, fn, body, strlen(body));
    arena_release(&tmp); /* the events must not point into the caller's body */
}

static void run_done(struct run *r)
{
    arena_release(&r->a);
}

struct want {
    enum mev_kind kind;
    const char *source_id, *message_id, *queue_id, *email;
    int64_t at_ms;
    const char *reason, *url, *user_agent;
    int machine;
};

static int same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static void expect_str(size_t i, const char *what, const char *got, const char *want)
{
    cr_assert(same(got, want), "event %zu %s: got %s%s%s, want %s%s%s", i, what, got ? "\"" : "",
              got ? got : "NULL", got ? "\"" : "", want ? "\"" : "", want ? want : "NULL",
              want ? "\"" : "");
}

static void expect(const struct mev_list *l, size_t i, const struct want *w)
{
    const struct mev *m;

    cr_assert_lt(i, l->n, "event %zu wanted, %zu parsed", i, l->n);
    m = &l->v[i];
    cr_assert_eq(m->kind, w->kind, "event %zu: kind %s, want %s", i,
                 mev_kind_name(m->kind) ? mev_kind_name(m->kind) : "none", mev_kind_name(w->kind));
    expect_str(i, "source_id", m->source_id, w->source_id);
    expect_str(i, "message_id", m->message_id, w->message_id);
    expect_str(i, "queue_id", m->queue_id, w->queue_id);
    expect_str(i, "email", m->email, w->email);
    cr_assert_eq(m->at_ms, w->at_ms, "event %zu at_ms: got %lld, want %lld", i, (long long)m->at_ms,
                 (long long)w->at_ms);
    expect_str(i, "reason", m->reason, w->reason);
    expect_str(i, "url", m->url, w->url);
    expect_str(i, "user_agent", m->user_agent, w->user_agent);
    cr_assert_eq(m->machine, w->machine, "event %zu machine: got %d", i, m->machine);
}

/* the run failed with code and its message holds what */
static void expect_err(const struct run *r, int code, const char *what)
{
    cr_assert_eq(r->rc, code, "rc %d (%s), want %d", r->rc, r->e.msg, code);
    cr_assert_eq(r->e.code, code);
    cr_assert(strstr(r->e.msg, what) != NULL, "message \"%s\" does not say \"%s\"", r->e.msg, what);
}

static void hex_of(const unsigned char *p, size_t n, char *out, size_t outlen)
{
    sodium_bin2hex(out, outlen, p, n);
}

/* hex(HMAC-SHA256(key, a || b || c)) by OpenSSL: not the code under test */
static void openssl_hmac_hex(const void *key, size_t keylen, const char *a, const char *b,
                             const char *body, size_t blen, char out[65])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    size_t alen = strlen(a), bl = strlen(b);
    unsigned char *msg = malloc(alen + bl + blen + 1);

    memcpy(msg, a, alen);
    memcpy(msg + alen, b, bl);
    memcpy(msg + alen + bl, body, blen);
    cr_assert_not_null(HMAC(EVP_sha256(), key, (int)keylen, msg, alen + bl + blen, mac, &maclen));
    cr_assert_eq(maclen, 32);
    hex_of(mac, 32, out, 65);
    free(msg);
}

/* ---- SendGrid: signatures ------------------------------------------------------------ */

/* protocols.md section 2.1, from sendgrid-nodejs eventwebhook.spec.js */
#define SG_PUBLIC_KEY                                                                              \
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+"                                    \
    "u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhH"                                                        \
    "PTnlvFYPAZFceEu/1FwCM/QmGUhA=="
#define SG_SIGNATURE                                                                               \
    "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/"                                                          \
    "U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/"                                  \
    "0="
#define SG_TIMESTAMP "1588788367"
#define SG_PAYLOAD                                                                                 \
    "{\"category\":\"example_payload\",\"event\":\"test_event\",\"message_id\":\"message_id\"}"

static size_t b64_decode(const char *b64, unsigned char *out, size_t cap)
{
    size_t n = 0;

    cr_assert_eq(sodium_base642bin(out, cap, b64, strlen(b64), NULL, &n, NULL,
                                   sodium_base64_VARIANT_ORIGINAL),
                 0);
    return n;
}

static void *vector_key(void)
{
    unsigned char der[128];
    size_t n = b64_decode(SG_PUBLIC_KEY, der, sizeof der);
    struct err e = {0};
    void *key = sendgrid_key_load(der, n, &e);

    cr_assert_not_null(key, "%s", e.msg);
    return key;
}

static int sg_verify(void *key, const char *ts, const char *sig, const char *body, size_t len)
{
    struct err e = {0};
    int rc = sendgrid_verify(key, ts, sig, body, len, &e);

    cr_assert_eq(rc == 0, e.code == 0, "rc %d but e.code %d", rc, e.code);
    if (rc)
        cr_assert_eq(rc, E_AUTH, "rc %d: %s", rc, e.msg);
    return rc;
}

UTEST(sendgrid, test_vector_verifies)
{
    void *key = vector_key();

    cr_assert_eq(sg_verify(key, SG_TIMESTAMP, SG_SIGNATURE, SG_PAYLOAD, strlen(SG_PAYLOAD)), 0);
    sendgrid_key_free(key);
    sendgrid_key_free(NULL);
}

UTEST(sendgrid, test_vector_tampered_fails)
{
    void *key = vector_key();
    char body[sizeof SG_PAYLOAD], sig[sizeof SG_SIGNATURE];
    unsigned char raw[128];
    size_t n, i;

    /* every byte of the body, changed */
    for (i = 0; i < strlen(SG_PAYLOAD); i++) {
        memcpy(body, SG_PAYLOAD, sizeof body);
        body[i] ^= 0x01;
        cr_assert_eq(sg_verify(key, SG_TIMESTAMP, SG_SIGNATURE, body, strlen(body)), E_AUTH,
                     "body byte %zu", i);
    }
    /* a byte more or less of body */
    cr_assert_eq(sg_verify(key, SG_TIMESTAMP, SG_SIGNATURE, SG_PAYLOAD, strlen(SG_PAYLOAD) - 1),
                 E_AUTH);
    cr_assert_eq(sg_verify(key, SG_TIMESTAMP, SG_SIGNATURE, SG_PAYLOAD " ", strlen(SG_PAYLOAD) + 1),
                 E_AUTH);
    /* another timestamp */
    cr_assert_eq(sg_verify(key, "1588788368", SG_SIGNATURE, SG_PAYLOAD, strlen(SG_PAYLOAD)),
                 E_AUTH);
    cr_assert_eq(sg_verify(key, "01588788367", SG_SIGNATURE, SG_PAYLOAD, strlen(SG_PAYLOAD)),
                 E_AUTH);
    /* SendGrid signs timestamp || body with no separator: the body's first byte moved into
     * the timestamp is the same signed text, refused only because a timestamp is digits */
    cr_assert_eq(
        sg_verify(key, SG_TIMESTAMP "{", SG_SIGNATURE, SG_PAYLOAD + 1, strlen(SG_PAYLOAD) - 1),
        E_AUTH);
    cr_assert_eq(sg_verify(key, "1588788367 ", SG_SIGNATURE, SG_PAYLOAD, strlen(SG_PAYLOAD)),
                 E_AUTH);
    /* every byte of the decoded signature, changed (malformed DER or a wrong r, s) */
    n = b64_decode(SG_SIGNATURE, raw, sizeof raw);
    for (i = 0; i < n; i++) {
        unsigned char t[128];
        memcpy(t, raw, n);
        t[i] ^= 0x40;
        sodium_bin2base64(sig, sizeof sig, t, n, sodium_base64_VARIANT_ORIGINAL);
        cr_assert_eq(sg_verify(key, SG_TIMESTAMP, sig, SG_PAYLOAD, strlen(SG_PAYLOAD)), E_AUTH,
                     "signature byte %zu", i);
    }
    /* truncated, not base64, missing */
    cr_assert_eq(
        sg_verify(key, SG_TIMESTAMP, "MEUCIQCtIHJeH93Y+qpY", SG_PAYLOAD, strlen(SG_PAYLOAD)),
        E_AUTH);
    cr_assert_eq(sg_verify(key, SG_TIMESTAMP, "not base64!", SG_PAYLOAD, strlen(SG_PAYLOAD)),
                 E_AUTH);
    cr_assert_eq(sg_verify(key, SG_TIMESTAMP, "", SG_PAYLOAD, strlen(SG_PAYLOAD)), E_AUTH);
    cr_assert_eq(sg_verify(key, SG_TIMESTAMP, NULL, SG_PAYLOAD, strlen(SG_PAYLOAD)), E_AUTH);
    cr_assert_eq(sg_verify(key, NULL, SG_SIGNATURE, SG_PAYLOAD, strlen(SG_PAYLOAD)), E_AUTH);
    cr_assert_eq(sg_verify(key, "", SG_SIGNATURE, SG_PAYLOAD, strlen(SG_PAYLOAD)), E_AUTH);
    cr_assert_eq(sg_verify(NULL, SG_TIMESTAMP, SG_SIGNATURE, SG_PAYLOAD, strlen(SG_PAYLOAD)),
                 E_AUTH);
    /* and the right one still verifies: no state left behind */
    cr_assert_eq(sg_verify(key, SG_TIMESTAMP, SG_SIGNATURE, SG_PAYLOAD, strlen(SG_PAYLOAD)), 0);
    sendgrid_key_free(key);
}

static EVP_PKEY *ec_key(int nid)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
    EVP_PKEY *pk = NULL;

    cr_assert_not_null(c);
    cr_assert_eq(EVP_PKEY_keygen_init(c), 1);
    cr_assert_eq(EVP_PKEY_CTX_set_ec_paramgen_curve_nid(c, nid), 1);
    cr_assert_eq(EVP_PKEY_keygen(c, &pk), 1);
    EVP_PKEY_CTX_free(c);
    return pk;
}

/* pk's SubjectPublicKeyInfo loaded by the code under test (NULL: refused, e says why) */
static void *load_spki(EVP_PKEY *pk, struct err *e)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(pk, &der);
    void *key;

    cr_assert_gt(n, 0);
    key = sendgrid_key_load(der, (size_t)n, e);
    OPENSSL_free(der);
    return key;
}

/* base64 DER ECDSA signature of ts || body; caller frees */
static char *sign(EVP_PKEY *pk, const char *ts, const char *body, size_t len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char sig[256];
    size_t siglen = sizeof sig, b64len;
    char *b64;

    cr_assert_eq(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pk), 1);
    cr_assert_eq(EVP_DigestSignUpdate(ctx, ts, strlen(ts)), 1);
    cr_assert_eq(EVP_DigestSignUpdate(ctx, body, len), 1);
    cr_assert_eq(EVP_DigestSignFinal(ctx, sig, &siglen), 1);
    EVP_MD_CTX_free(ctx);
    b64len = sodium_base64_ENCODED_LEN(siglen, sodium_base64_VARIANT_ORIGINAL);
    b64 = malloc(b64len);
    sodium_bin2base64(b64, b64len, sig, siglen, sodium_base64_VARIANT_ORIGINAL);
    return b64;
}

UTEST(sendgrid, key_load_refuses_what_is_not_p256)
{
    unsigned char der[128], junk[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    size_t n = b64_decode(SG_PUBLIC_KEY, der, sizeof der);
    EVP_PKEY *p384 = ec_key(NID_secp384r1), *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    struct err e = {0};

    cr_assert_null(sendgrid_key_load(der, n - 1, &e)); /* cut short */
    cr_assert_eq(e.code, E_INVAL);
    err_clear(&e);
    der[n] = 0;
    cr_assert_null(sendgrid_key_load(der, n + 1, &e)); /* a byte after it */
    cr_assert_eq(e.code, E_INVAL);
    err_clear(&e);
    cr_assert_null(sendgrid_key_load(junk, sizeof junk, &e));
    cr_assert_eq(e.code, E_INVAL);
    err_clear(&e);
    cr_assert_null(sendgrid_key_load(der, 0, &e));
    cr_assert_eq(e.code, E_INVAL);
    err_clear(&e);
    cr_assert_null(load_spki(p384, &e));
    cr_assert_eq(e.code, E_INVAL);
    cr_assert(strstr(e.msg, "P-256") != NULL, "%s", e.msg);
    err_clear(&e);
    cr_assert_not_null(ed);
    cr_assert_null(load_spki(ed, &e));
    cr_assert_eq(e.code, E_INVAL);
    cr_assert(strstr(e.msg, "not an EC") != NULL, "%s", e.msg);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(ed);
}

/* SendGrid's documented event shapes (twilio.com/docs/sendgrid/for-developers/tracking-
 * events/event), with our engage_message_id unique arg on most, and what each becomes. */
static const char sg_body[] =
    "[{'email':'ann@example.com','timestamp':1700000001,'smtp-id':'<101.2001.k3j@mail.example."
    "com>','event':'processed','category':['welcome'],'sg_event_id':'ev-processed','sg_message_"
    "id':'W86EgYT6SQKk0lRflfLRsA.filterdrecv-5645d9c87f-6r2ch-1-5F1E7B7B-2F.0','engage_message_"
    "id':'101.2001'},"
    "{'email':'ann@example.com','timestamp':1700000002,'smtp-id':'<101.2001.k3j@mail.example."
    "com>','event':'delivered','category':['welcome'],'sg_event_id':'rWVYmVk90MjZJ9iohOBa3w==','"
    "sg_message_id':'W86EgYT6SQKk0lRflfLRsA.filterdrecv-5645d9c87f-6r2ch-1-5F1E7B7B-2F.0','"
    "response':'250 OK','engage_message_id':'101.2001'},"
    "{'email':'bob@example.com','timestamp':1700000003,'smtp-id':'<14c5d75ce93.dfd.64b469@ismtpd-"
    "555>','event':'deferred','category':'cat facts','sg_event_id':'t7LEShmowp86DTdUW8M-GQ==','sg_"
    "message_id':'14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0','response':'400 try again "
    "later','attempt':'5','engage_message_id':'101_2002'},"
    "{'email':'bob@example.com','timestamp':1513299569,'smtp-id':'<14c5d75ce93.dfd.64b469@ismtpd-"
    "555>','event':'bounce','type':'bounce','bounce_classification':'Invalid Address','status':'5."
    "1.1','reason':'550 5.1.1 user unknown','sg_event_id':'6g4ZI7SA-xmRDv57GoPIPw==','sg_message_"
    "id':'14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0','campaign_id':'42','contact_id':'"
    "9001','engage_message_id':'101.2002'},"
    "{'email':'cy@example.com','timestamp':1700000005,'event':'bounce','type':'blocked','bounce_"
    "classification':'Reputation','status':'4.7.0','reason':'421 Messages temporarily deferred "
    "due to user complaints','sg_event_id':'ev-blocked','sg_message_id':'Q1.filter.0','engage_"
    "message_id':'101.2003'},"
    "{'email':'di@example.com','timestamp':1700000006,'event':'bounce','type':'bounce','bounce_"
    "classification':'Technical','status':'5.4.4','reason':'unable to route','sg_event_id':'ev-"
    "technical','sg_message_id':'Q2.filter.0','engage_message_id':'101.2004'},"
    "{'email':'ann@example.com','timestamp':1700000007,'smtp-id':'<101.2001.k3j@mail.example."
    "com>','event':'open','sg_machine_open':true,'useragent':'Mozilla/5.0','ip':'17.58.0.1','sg_"
    "event_id':'ev-open-mpp','sg_message_id':'W86EgYT6SQKk0lRflfLRsA.filterdrecv-1.0'},"
    "{'email':'ann@example.com','timestamp':1700000008,'event':'open','sg_machine_open':false,'"
    "useragent':'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)','ip':'203.0.113.9','sg_"
    "event_id':'ev-open','sg_message_id':'W86EgYT6SQKk0lRflfLRsA.filterdrecv-1.0','engage_message_"
    "id':'101.2001'},"
    "{'email':'ann@example.com','timestamp':1700000009,'smtp-id':'<101.2001.k3j@mail.example."
    "com>','event':'click','useragent':'Mozilla/4.0 (compatible; MSIE 6.1; Windows XP)','ip':'255."
    "255.255.255','url':'https://example.com/pricing?utm_source=x&a=1','url_offset':{'index':0,'"
    "type':'html'},'sg_event_id':'kCAi1KttyQdEKHhdC-nuEA==','sg_message_id':'W86EgYT6SQKk0lRflfLR"
    "sA.filterdrecv-1.0','engage_message_id':'not ours'},"
    "{'email':'ed@example.com','timestamp':1700000010,'event':'spamreport','sg_event_id':'ev-"
    "spam','sg_message_id':'Q3.filter.0','engage_message_id':'101.2005'},"
    "{'email':'ed@example.com','timestamp':1700000011,'event':'unsubscribe','sg_event_id':'ev-"
    "unsub','sg_message_id':'Q3.filter.0','engage_message_id':'101.2005'},"
    "{'email':'ed@example.com','timestamp':1700000012,'event':'group_unsubscribe','asm_group_id':"
    "10,'useragent':'Mozilla/5.0','ip':'255.255.255.255','url':'http://www.sendgrid.com/','sg_"
    "event_id':'ev-group-unsub','sg_message_id':'Q3.filter.0','engage_message_id':'101.2005'},"
    "{'email':'ed@example.com','timestamp':1700000013,'event':'group_resubscribe','asm_group_id':"
    "10,'sg_event_id':'ev-group-resub','sg_message_id':'Q3.filter.0'},"
    "{'email':'fay@example.com','timestamp':1700000014,'smtp-id':'<14c5d75ce93.dfd.64b469@"
    "ismtpd-555>','event':'dropped','category':'cat facts','sg_event_id':'zmzJhfJgAfUSOW80yEbPyw="
    "=','sg_message_id':'14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0','reason':'Bounced "
    "Address','status':'5.0.0','engage_message_id':'101.2006'},"
    "{'email':'fay@example.com','timestamp':1700000015,'event':'a_future_event','sg_event_id':'ev-"
    "future'}]";

static const struct want sg_want[] = {
    {MEV_DELIVERED, "rWVYmVk90MjZJ9iohOBa3w==", "101.2001", "W86EgYT6SQKk0lRflfLRsA",
     "ann@example.com", 1700000002000, NULL, NULL, NULL, 0},
    {MEV_DEFERRED, "t7LEShmowp86DTdUW8M-GQ==", "101.2002", "14c5d75ce93", "bob@example.com",
     1700000003000, "400 try again later", NULL, NULL, 0},
    {MEV_BOUNCED_HARD, "6g4ZI7SA-xmRDv57GoPIPw==", "101.2002", "14c5d75ce93", "bob@example.com",
     1513299569000, "550 5.1.1 user unknown", NULL, NULL, 0},
    {MEV_BOUNCED_SOFT, "ev-blocked", "101.2003", "Q1", "cy@example.com", 1700000005000,
     "4.7.0 421 Messages temporarily deferred due to user complaints", NULL, NULL, 0},
    {MEV_BOUNCED_SOFT, "ev-technical", "101.2004", "Q2", "di@example.com", 1700000006000,
     "5.4.4 unable to route", NULL, NULL, 0},
    {MEV_OPENED, "ev-open-mpp", "101.2001", "W86EgYT6SQKk0lRflfLRsA", "ann@example.com",
     1700000007000, NULL, NULL, "Mozilla/5.0", 1},
    {MEV_OPENED, "ev-open", "101.2001", "W86EgYT6SQKk0lRflfLRsA", "ann@example.com", 1700000008000,
     NULL, NULL, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)", 0},
    {MEV_CLICKED, "kCAi1KttyQdEKHhdC-nuEA==", "101.2001", "W86EgYT6SQKk0lRflfLRsA",
     "ann@example.com", 1700000009000, NULL, "https://example.com/pricing?utm_source=x&a=1",
     "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP)", 0},
    {MEV_COMPLAINED, "ev-spam", "101.2005", "Q3", "ed@example.com", 1700000010000, NULL, NULL, NULL,
     0},
    {MEV_UNSUBSCRIBED, "ev-unsub", "101.2005", "Q3", "ed@example.com", 1700000011000, NULL, NULL,
     NULL, 0},
    {MEV_UNSUBSCRIBED, "ev-group-unsub", "101.2005", "Q3", "ed@example.com", 1700000012000, NULL,
     NULL, NULL, 0},
    {MEV_DROPPED, "zmzJhfJgAfUSOW80yEbPyw==", "101.2006", "14c5d75ce93", "fay@example.com",
     1700000014000, "5.0.0 Bounced Address", NULL, NULL, 0},
};

UTEST(sendgrid, documented_events_map)
{
    struct run r;

    run(&r, sendgrid_parse, sg_body);
    cr_assert_eq(r.rc, 0, "%s", r.e.msg);
    cr_assert_eq(r.l.n, sizeof sg_want / sizeof *sg_want,
                 "%zu events (processed, "
                 "group_resubscribe and an unknown type are skipped)",
                 r.l.n);
    for (size_t i = 0; i < r.l.n; i++)
        expect(&r.l, i, &sg_want[i]);
    run_done(&r);
}

UTEST(sendgrid, generated_key_signs_real_body)
{
    EVP_PKEY *pk = ec_key(NID_X9_62_prime256v1), *other = ec_key(NID_X9_62_prime256v1);
    struct arena a;
    struct err e = {0};
    const char *ts = "1700000100";
    char *body, *sig, *sig_other;
    void *key, *key_other;
    struct run r;
    size_t len;

    arena_init(&a);
    body = js(&a, sg_body);
    len = strlen(body);
    sig = sign(pk, ts, body, len);
    sig_other = sign(other, ts, body, len);
    key = load_spki(pk, &e);
    cr_assert_not_null(key, "%s", e.msg);
    key_other = load_spki(other, &e);
    cr_assert_not_null(key_other, "%s", e.msg);
    cr_assert_eq(sg_verify(key, ts, sig, body, len), 0);
    cr_assert_eq(sg_verify(key_other, ts, sig_other, body, len), 0);
    cr_assert_eq(sg_verify(key, ts, sig_other, body, len), E_AUTH); /* another key's */
    cr_assert_eq(sg_verify(key_other, ts, sig, body, len), E_AUTH);
    cr_assert_eq(sg_verify(key, "1700000101", sig, body, len), E_AUTH);
    body[len / 2] ^= 0x20;
    cr_assert_eq(sg_verify(key, ts, sig, body, len), E_AUTH);
    body[len / 2] ^= 0x20;
    /* the body that verified parses to its events */
    run_raw(&r, sendgrid_parse, body, len);
    cr_assert_eq(r.rc, 0, "%s", r.e.msg);
    cr_assert_eq(r.l.n, 12);
    expect(&r.l, 7, &sg_want[7]);
    run_done(&r);
    sendgrid_key_free(key);
    sendgrid_key_free(key_other);
    EVP_PKEY_free(pk);
    EVP_PKEY_free(other);
    free(sig);
    free(sig_other);
    arena_release(&a);
}

UTEST(sendgrid, message_id_from_smtp_id_and_unique_arg)
{
    struct run r;

    run(&r, sendgrid_parse,
        "[{'event':'delivered','smtp-id':'<7.9.abc@mail.example.com>'},"
        "{'event':'delivered','smtp-id':'<7.9.abc@mail.example.com>','engage_message_id':'8.1'},"
        "{'event':'delivered','smtp-id':'7.9.abc@mail.example.com'},"
        "{'event':'delivered','smtp-id':'<14c5d75ce93.dfd.64b469@ismtpd-555>'},"
        "{'event':'delivered','engage_message_id':'8_2'},"
        "{'event':'delivered','engage_message_id':8.2},"
        "{'event':'delivered','smtp-id':'<7.9>'}]");
    cr_assert_eq(r.rc, 0, "%s", r.e.msg);
    cr_assert_eq(r.l.n, 7);
    cr_assert_str_eq(r.l.v[0].message_id, "7.9");
    cr_assert_str_eq(r.l.v[1].message_id, "8.1"); /* the unique arg first */
    cr_assert_str_eq(r.l.v[2].message_id, "7.9"); /* brackets optional */
    cr_assert_null(r.l.v[3].message_id);          /* SendGrid's own: not ours */
    cr_assert_str_eq(r.l.v[4].message_id, "8.2");
    cr_assert_null(r.l.v[5].message_id); /* a number is not an id */
    cr_assert_null(r.l.v[6].message_id); /* not our Message-ID's shape */
    run_done(&r);
}

UTEST(sendgrid, optional_fields_of_another_type_are_absent)
{
    struct run r;

    run(&r, sendgrid_parse,
        "[{'event':'open','timestamp':'soon','email':7,'sg_event_id':['x'],'smtp-id':null,"
        "'sg_machine_open':'true','useragent':{},'sg_message_id':''},"
        "{'event':'bounce','timestamp':-5,'email':'','reason':false,'status':5},"
        "{'event':'click','timestamp':1e300,'url':''}]");
    cr_assert_eq(r.rc, 0, "%s", r.e.msg);
    cr_assert_eq(r.l.n, 3);
    expect(&r.l, 0, &(struct want){.kind = MEV_OPENED});
    expect(&r.l, 1, &(struct want){.kind = MEV_BOUNCED_HARD});
    expect(&r.l, 2, &(struct want){.kind = MEV_CLICKED});
    run_done(&r);
}

UTEST(sendgrid, malformed_bodies)
{
    static const struct {
        const char *body, *says;
    } cases[] = {
        {"", "empty body"},
        {"[{'event':'open'}", "not JSON"},
        {"{'event':'open'}", "not a JSON array"},
        {"'open'", "not JSON"},
        {"[{'event':'open'},1]", "[1] is not an object"},
        {"[{'event':'open'},{'event':'open'},{'email':'a@b.c'}]", "[2].event: missing"},
        {"[{'event':5}]", "[0].event: missing"},
        {"[{'event':'open'}] x", "not JSON"},
        {"[{'event':'op\\u0000en'}]", "not JSON"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct run r;
        run(&r, sendgrid_parse, cases[i].body);
        expect_err(&r, E_INVAL, cases[i].says);
        run_done(&r);
    }
}

/* n events of type ev: "[{'event':'ev','sg_event_id':'i'},...]" */
static char *sg_many(size_t n, const char *ev, size_t *len)
{
    struct buf b;

    buf_init(&b);
    buf_addc(&b, '[');
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, "%s{\"event\":\"%s\",\"sg_event_id\":\"e%zu\",\"timestamp\":%zu}",
                   i ? "," : "", ev, i, 1700000000 + i);
    buf_addc(&b, ']');
    *len = b.len;
    return buf_take(&b);
}

UTEST(sendgrid, body_limits)
{
    size_t len, i;
    char *body;
    struct run r;
    double t0;

    body = sg_many(MEV_MAX_PER_BODY, "delivered", &len);
    run_raw(&r, sendgrid_parse, body, len);
    cr_assert_eq(r.rc, 0, "%s", r.e.msg);
    cr_assert_eq(r.l.n, MEV_MAX_PER_BODY);
    cr_assert_str_eq(r.l.v[MEV_MAX_PER_BODY - 1].source_id, "e9999");
    cr_assert_eq(r.l.v[MEV_MAX_PER_BODY - 1].at_ms, (1700000000LL + 9999) * 1000);
    run_done(&r);
    free(body);

    /* one more, even of a skipped type, is refused */
    body = sg_many(MEV_MAX_PER_BODY + 1, "processed", &len);
    run_raw(&r, sendgrid_parse, body, len);
    expect_err(&r, E_TOOBIG, "more than 10000");
    run_done(&r);
    free(body);

    /* one event of a million values is refused while being read */
    {
        struct buf b;
        buf_init(&b);
        buf_adds(&b, "[{\"event\":\"delivered\",\"x\":[0");
        for (i = 0; i < 1000000; i++)
            buf_adds(&b, ",0");
        buf_adds(&b, "]}]");
        run_raw(&r, sendgrid_parse, b.p, b.len);
        expect_err(&r, E_TOOBIG, "values");
        run_done(&r);
        buf_release(&b);
    }

    /* a thousand events read fast (even under ASan: a loose bound) */
    body = sg_many(1000, "open", &len);
    t0 = clock_mono_ms();
    for (i = 0; i < 10; i++) {
        run_raw(&r, sendgrid_parse, body, len);
        cr_assert_eq(r.rc, 0);
        cr_assert_eq(r.l.n, 1000);
        run_done(&r);
    }
    cr_assert_lt(clock_mono_ms() - t0, 2000.0, "10 bodies of 1000 events took %.0f ms",
                 clock_mono_ms() - t0);
    free(body);
}

UTEST(sendgrid, long_strings_cut_at_utf8_boundaries)
{
    struct buf b;
    struct run r;
    size_t i;

    buf_init(&b);
    buf_adds(&b, "[{\"event\":\"bounce\",\"email\":\"");
    for (i = 0; i < 400; i++)
        buf_addc(&b, 'a');
    buf_adds(&b, "@example.com\",\"reason\":\"");
    for (i = 0; i < 1023; i++)
        buf_addc(&b, 'r');
    buf_adds(&b, "\xc3\xa9 and more\",\"sg_event_id\":\"");
    for (i = 0; i < 300; i++)
        buf_adds(&b, "\xe2\x82\xac"); /* the euro sign, 3 bytes */
    buf_adds(&b, "\"},{\"event\":\"click\",\"url\":\"https://e.x/");
    for (i = 0; i < 3000; i++)
        buf_addc(&b, 'u');
    buf_adds(&b, "\",\"useragent\":\"");
    for (i = 0; i < 600; i++)
        buf_addc(&b, 'g');
    buf_adds(&b, "\"}]");
    run_raw(&r, sendgrid_parse, b.p, b.len);
    cr_assert_eq(r.rc, 0, "%s", r.e.msg);
    cr_assert_eq(strlen(r.l.v[0].email), MEV_MAX_EMAIL);
    cr_assert_eq(strlen(r.l.v[0].reason), 1023, "the 2-byte e-acute is not cut in half");
    cr_assert_eq(strlen(r.l.v[0].source_id), 255); /* 85 euro signs */
    cr_assert(utf8_valid(r.l.v[0].source_id, strlen(r.l.v[0].source_id)));
    cr_assert_eq(strlen(r.l.v[1].url), MEV_MAX_URL);
    cr_assert_eq(strlen(r.l.v[1].user_agent), MEV_MAX_AGENT);
    run_done(&r);
    buf_release(&b);
}

/* ---- Mailgun ------------------------------------------------------------------------- */

/* documentation.mailgun.com webhook payloads (trimmed of storage, envelope, flags) */
static const char mg_delivered[] =
    "{'signature':{'timestamp':'1529006854','token':'a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f9"
    "79f3de0','signature':'@SIG@'},'event-data':{'tags':['my_tag_1','my_tag_2'],'timestamp':"
    "1521472262.908181,'storage':{'url':'https://se.api.mailgun.net/v3/domains/sandbox.mailgun."
    "org/messages/message_key','key':'message_key'},'envelope':{'transport':'smtp','sender':'bob@"
    "sandbox.mailgun.org','sending-ip':'209.61.154.250','targets':'alice@example.com'},'recipient-"
    "domain':'example.com','id':'CPgfbmQMTCKtHW6uIWtuVe','campaigns':[],'user-variables':{'my_var_"
    "1':'Mailgun Variable #1','my-var-2':'awesome','engage_message_id':'31.4159'},'flags':{'is-"
    "routed':false,'is-authenticated':true,'is-system-test':false,'is-test-mode':false},'log-"
    "level':'info','message':{'headers':{'to':'Alice <alice@example.com>','message-id':'20130503"
    "182626.18666.16540@sandbox.mailgun.org','from':'Bob <bob@sandbox.mailgun.org>','subject':'"
    "Test delivered webhook'},'attachments':[],'size':111},'recipient':'alice@example.com','event':"
    "'delivered','delivery-status':{'tls':true,'mx-host':'smtp-in.example.com','attempt-no':1,'"
    "description':'','session-seconds':0.4331989288330078,'utf8':true,'code':250,'message':'OK','"
    "certificate-verified':true}}}";

static const struct {
    const char *body;
    struct want w;
} mg_cases[] = {
    {"{'signature':{'timestamp':'1529006854','token':'tok-perm','signature':'00'},'event-data':{"
     "'severity':'permanent','timestamp':1521233195.375624,'delivery-status':{'attempt-no':1,'"
     "message':'5.1.1 The email account that you tried to reach does not exist.','code':550,'"
     "description':''},'log-level':'error','id':'G9Bn5sl1TC6nu79C8C0bwg','reason':'bounce','"
     "message':{'headers':{'to':'Alice <alice@example.com>','message-id':'31.2718.x7@mail.example."
     "com'}},'recipient':'alice@example.com','event':'failed'}}",
     {MEV_BOUNCED_HARD, "tok-perm", "31.2718", "31.2718.x7@mail.example.com", "alice@example.com",
      1521233195376, "550 5.1.1 The email account that you tried to reach does not exist.", NULL,
      NULL, 0}},
    {"{'signature':{'timestamp':'1529006854','token':'tok-supp','signature':'00'},'event-data':{"
     "'severity':'permanent','timestamp':1521233195.375624,'delivery-status':{'attempt-no':1,'"
     "message':'','code':605,'description':'Not delivering to previously bounced address','"
     "session-seconds':0},'log-level':'error','id':'G9Bn5sl1TC6nu79C8C0bwg','campaigns':[],'"
     "reason':'suppress-bounce','user-variables':{'engage_message_id':'31_99'},'message':{'"
     "headers':{'message-id':'20130503192659.13651.20287@sandbox.mailgun.org'}},'recipient':'"
     "alice@example.com','event':'failed'}}",
     {MEV_DROPPED, "tok-supp", "31.99", "20130503192659.13651.20287@sandbox.mailgun.org",
      "alice@example.com", 1521233195376, "605 Not delivering to previously bounced address", NULL,
      NULL, 0}},
    {"{'signature':{'timestamp':'1529006854','token':'tok-temp','signature':'00'},'event-data':{"
     "'severity':'temporary','timestamp':1521233195.5,'reason':'generic','delivery-status':{'"
     "attempt-no':1,'message':'4.2.2 The email account that you tried to reach is over quota.','"
     "code':452,'description':'','retry-seconds':600},'message':{'headers':{'message-id':'31.5."
     "q@mail.example.com'}},'recipient':'bob@example.com','event':'failed'}}",
     {MEV_DEFERRED, "tok-temp", "31.5", "31.5.q@mail.example.com", "bob@example.com", 1521233195500,
      "452 4.2.2 The email account that you tried to reach is over quota.", NULL, NULL, 0}},
    {"{'signature':{'timestamp':'1529006854','token':'tok-open','signature':'00'},'event-data':{"
     "'event':'opened','timestamp':1521243339.873676,'id':'Ase7i2zsRYeDXztHGENqRA','client-info':"
     "{'client-os':'Linux','device-type':'desktop','client-name':'Chrome','client-type':'browser'"
     ",'user-agent':'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.31 (KHTML, like Gecko) "
     "Chrome/26.0.1410.43 Safari/537.31'},'ip':'50.56.129.169','geolocation':{'country':'US','"
     "region':'CA','city':'San Francisco'},'tags':[],'message':{'headers':{'message-id':'31.6.m@"
     "mail.example.com'}},'recipient':'alice@example.com'}}",
     {MEV_OPENED, "tok-open", "31.6", "31.6.m@mail.example.com", "alice@example.com", 1521243339874,
      NULL, NULL,
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.31 (KHTML, like Gecko) "
      "Chrome/26.0.1410.43 Safari/537.31",
      0}},
    {"{'signature':{'timestamp':'1529006854','token':'tok-click','signature':'00'},'event-data':"
     "{'event':'clicked','timestamp':1521243339,'url':'https://example.com/a?b=c','client-info':"
     "{'user-agent':'curl/8.0'},'message':{'headers':{'message-id':'31.7.m@mail.example.com'}},"
     "'recipient':'alice@example.com'}}",
     {MEV_CLICKED, "tok-click", "31.7", "31.7.m@mail.example.com", "alice@example.com",
      1521243339000, NULL, "https://example.com/a?b=c", "curl/8.0", 0}},
    {"{'signature':{'timestamp':'1529006854','token':'tok-unsub','signature':'00'},'event-data':"
     "{'event':'unsubscribed','timestamp':1521243339.1,'message':{'headers':{'message-id':'31.8.m"
     "@mail.example.com'}},'recipient':'alice@example.com'}}",
     {MEV_UNSUBSCRIBED, "tok-unsub", "31.8", "31.8.m@mail.example.com", "alice@example.com",
      1521243339100, NULL, NULL, NULL, 0}},
    {"{'signature':{'timestamp':'1529006854','token':'tok-spam','signature':'00'},'event-data':{"
     "'event':'complained','timestamp':1521243339.25,'message':{'headers':{'message-id':'<31.9.m@"
     "mail.example.com>'}},'recipient':'alice@example.com'}}",
     {MEV_COMPLAINED, "tok-spam", "31.9", "<31.9.m@mail.example.com>", "alice@example.com",
      1521243339250, NULL, NULL, NULL, 0}},
    {"{'event-data':{'event':'failed','severity':'permanent','reason':'suppress-unsubscribe',"
     "'recipient':'z@example.com'}}",
     {MEV_DROPPED, NULL, NULL, NULL, "z@example.com", 0, "suppress-unsubscribe", NULL, NULL, 0}},
};

UTEST(mailgun, documented_events_map)
{
    struct run r;

    run(&r, mailgun_parse, mg_delivered);
    cr_assert_eq(r.rc, 0, "%s", r.e.msg);
    cr_assert_eq(r.l.n, 1);
    expect(&r.l, 0,
           &(struct want){MEV_DELIVERED, "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
                          "31.4159", "20130503182626.18666.16540@sandbox.mailgun.org",
                          "alice@example.com", 1521472262908, NULL, NULL, NULL, 0});
    run_done(&r);
    for (size_t i = 0; i < sizeof mg_cases / sizeof *mg_cases; i++) {
        run(&r, mailgun_parse, mg_cases[i].body);
        cr_assert_eq(r.rc, 0, "case %zu: %s", i, r.e.msg);
        cr_assert_eq(r.l.n, 1, "case %zu", i);
        expect(&r.l, 0, &mg_cases[i].w);
        run_done(&r);
    }
}

UTEST(mailgun, skipped_and_malformed)
{
    static const char *const skipped[] = {
        "{'event-data':{'event':'accepted','recipient':'a@b.c'}}",
        "{'event-data':{'event':'failed','recipient':'a@b.c'}}", /* no severity */
        "{'event-data':{'event':'stored'}}",
    };
    static const struct {
        const char *body, *says;
    } bad[] = {
        {"[]", "not a JSON object"},
        {"{}", "\"event-data\" missing"},
        {"{'event-data':[]}", "\"event-data\" missing or not an object"},
        {"{'event-data':{'recipient':'a@b.c'}}", "event-data.event missing"},
        {"{'event-data':{'event':null}}", "event-data.event missing"},
        {"{'event-data':", "not JSON"},
    };
    struct run r;

    for (size_t i = 0; i < sizeof skipped / sizeof *skipped; i++) {
        run(&r, mailgun_parse, skipped[i]);
        cr_assert_eq(r.rc, 0, "%s", r.e.msg);
        cr_assert_eq(r.l.n, 0, "skipped[%zu]", i);
        run_done(&r);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        run(&r, mailgun_parse, bad[i].body);
        expect_err(&r, E_INVAL, bad[i].says);
        run_done(&r);
    }
}

/* the delivered body signed with key at timestamp ts, token tok */
static char *mg_signed(struct arena *a, const void *key, size_t keylen, const char *ts,
                       const char *tok, int upper)
{
    char hex[65], *body;
    struct buf b;

    openssl_hmac_hex(key, keylen, ts, tok, "", 0, hex);
    for (char *p = hex; upper && *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    buf_init(&b);
    buf_printf(&b,
               "{\"signature\":{\"timestamp\":\"%s\",\"token\":\"%s\",\"signature\":\"%s\"},"
               "\"event-data\":{\"event\":\"delivered\",\"recipient\":\"a@example.com\"}}",
               ts, tok, hex);
    body = arena_strndup(a, b.p, b.len);
    buf_release(&b);
    return body;
}

static int mg_verify(const void *key, size_t keylen, const char *body, int64_t now_ms,
                     char token[MAILGUN_TOKEN_MAX])
{
    struct err e = {0};
    int rc = mailgun_verify(key, keylen, body, strlen(body), now_ms, 300, token, &e);

    cr_assert_eq(rc, e.code, "rc %d, e.code %d (%s)", rc, e.code, e.msg);
    return rc;
}

UTEST(mailgun, signature_computed_here)
{
    static const char key[] = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
    unsigned char longkey[200];
    const int64_t now = 1529006854LL * 1000 + 500;
    char token[MAILGUN_TOKEN_MAX];
    const char *tok = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";
    struct arena a;
    char *body;

    arena_init(&a);
    body = mg_signed(&a, key, strlen(key), "1529006854", tok, 0);
    cr_assert_eq(mg_verify(key, strlen(key), body, now, token), 0);
    cr_assert_str_eq(token, tok);
    /* the hex in capitals is the same signature */
    body = mg_signed(&a, key, strlen(key), "1529006854", tok, 1);
    cr_assert_eq(mg_verify(key, strlen(key), body, now, token), 0);
    /* another key; the same key one byte shorter */
    body = mg_signed(&a, key, strlen(key), "1529006854", tok, 0);
    cr_assert_eq(mg_verify("key-3ax6xnjp29jd6fds4gc373sgvjxteol1", strlen(key), body, now, token),
                 E_AUTH);
    cr_assert_eq(token[0], '\0', "no token handed out on a failure");
    cr_assert_eq(mg_verify(key, strlen(key) - 1, body, now, token), E_AUTH);
    cr_assert_eq(mg_verify(key, 0, body, now, token), E_AUTH);
    /* signed over another timestamp or token than the body says */
    body = mg_signed(&a, key, strlen(key), "1529006854", tok, 0);
    body[strstr(body, tok) - body] = 'b';
    cr_assert_eq(mg_verify(key, strlen(key), body, now, token), E_AUTH);
    body = mg_signed(&a, key, strlen(key), "1529006854", tok, 0);
    *(strstr(body, "1529006854") + 9) = '5';
    cr_assert_eq(mg_verify(key, strlen(key), body, now + 1000, token), E_AUTH);
    /* the signature cut, lengthened, not hex, missing */
    body = mg_signed(&a, key, strlen(key), "1529006854", tok, 0);
    {
        char *q = strstr(body, "\"},\"event-data");
        q[-1] = '"'; /* the last hex digit cut: "...e" }, still JSON */
        q[0] = ' ';
    }
    cr_assert_eq(mg_verify(key, strlen(key), body, now, token), E_AUTH);
    cr_assert_eq(mg_verify(key, strlen(key),
                           "{\"signature\":{\"timestamp\":\"1529006854\",\"token\":\"t\","
                           "\"signature\":\"zz\"},\"event-data\":{}}",
                           now, token),
                 E_AUTH);
    cr_assert_eq(mg_verify(key, strlen(key),
                           "{\"signature\":{\"timestamp\":\"1529006854\",\"token\":\"t\"}}", now,
                           token),
                 E_AUTH);
    cr_assert_eq(mg_verify(key, strlen(key), "{\"event-data\":{}}", now, token), E_AUTH);
    cr_assert_eq(mg_verify(key, strlen(key), "not json", now, token), E_AUTH);
    /* a key longer than SHA-256's block (hashed first, as HMAC says) */
    for (size_t i = 0; i < sizeof longkey; i++)
        longkey[i] = (unsigned char)(i * 7 + 1);
    body = mg_signed(&a, longkey, sizeof longkey, "1529006854", tok, 0);
    cr_assert_eq(mg_verify(longkey, sizeof longkey, body, now, token), 0);
    cr_assert_eq(mg_verify(longkey, 64, body, now, token), E_AUTH);
    arena_release(&a);
}

UTEST(mailgun, timestamp_window_both_ways)
{
    static const char key[] = "a webhook signing key";
    const int64_t ts = 1529006854LL, at = ts * 1000;
    char token[MAILGUN_TOKEN_MAX], tok[300];
    struct arena a;
    struct err e = {0};
    char *body;

    arena_init(&a);
    body = mg_signed(&a, key, strlen(key), "1529006854", "tok", 0);
    cr_assert_eq(mg_verify(key, strlen(key), body, at + 300 * SEC_MS, token), 0);
    cr_assert_eq(mg_verify(key, strlen(key), body, at - 300 * SEC_MS, token), 0);
    cr_assert_eq(mg_verify(key, strlen(key), body, at + 301 * SEC_MS, token), E_FORBIDDEN);
    cr_assert_eq(token[0], '\0');
    cr_assert_eq(mg_verify(key, strlen(key), body, at - 301 * SEC_MS, token), E_FORBIDDEN);
    cr_assert_eq(mg_verify(key, strlen(key), body, at + DAY_MS, token), E_FORBIDDEN);
    /* a bad signature is E_AUTH even when old: the window is checked second */
    cr_assert_eq(mg_verify("other key", 9, body, at + DAY_MS, token), E_AUTH);
    /* max_age_s 0: only the very second */
    cr_assert_eq(mailgun_verify((const unsigned char *)key, strlen(key), body, strlen(body), at, 0,
                                token, &e),
                 0);
    /* a token too long for token_out */
    memset(tok, 'k', sizeof tok - 1);
    tok[sizeof tok - 1] = '\0';
    body = mg_signed(&a, key, strlen(key), "1529006854", tok, 0);
    cr_assert_eq(mg_verify(key, strlen(key), body, at, token), E_AUTH);
    arena_release(&a);
}

/* ---- Postmark ------------------------------------------------------------------------ */

/* the webhook examples of postmarkapp.com/developer/webhooks; protocols.md section 2.4 */
static const struct {
    const char *body;
    struct want w;
} pm_cases[] = {
    {"{'RecordType':'Delivery','ServerID':23,'MessageStream':'outbound','MessageID':'00000000-"
     "0000-0000-0000-000000000001','Recipient':'john@example.com','Tag':'welcome-email','"
     "DeliveredAt':'2019-11-05T16:33:54.9070259Z','Details':'Test delivery webhook details','"
     "Metadata':{'example':'value','engage_message_id':'7.8'}}",
     {MEV_DELIVERED, "Delivery:00000000-0000-0000-0000-000000000001:2019-11-05T16:33:54.9070259Z",
      "7.8", "00000000-0000-0000-0000-000000000001", "john@example.com", 1572971634907, NULL, NULL,
      NULL, 0}},
    {"{'RecordType':'Bounce','ID':42,'Type':'HardBounce','TypeCode':1,'MessageID':'883953f4-"
     "6105-42a2-a16a-77a8eac79483','Email':'john@example.com','BouncedAt':'2014-08-01T13:28:10."
     "2735393-04:00','Details':'smtp;550 5.1.1','Metadata':{'contact_id':'43'}}",
     {MEV_BOUNCED_HARD, "Bounce:42", NULL, "883953f4-6105-42a2-a16a-77a8eac79483",
      "john@example.com", 1406914090273, "HardBounce: smtp;550 5.1.1", NULL, NULL, 0}},
    {"{'RecordType':'Bounce','MessageStream':'outbound','ID':4323372036854775807,'Type':'"
     "SoftBounce','TypeCode':4096,'Name':'Soft bounce','Tag':'Test','MessageID':'883953f4-6105-"
     "42a2-a16a-77a8eac79483','Metadata':{'a_key':'a_value','engage_message_id':'12_34'},'"
     "ServerID':23,'Description':'The server could not temporarily deliver your message (ex: "
     "Message is delayed due to network troubles).','Details':'','Email':'john@example.com','From"
     "':'sender@example.com','BouncedAt':'2019-11-05T16:33:54.9070259Z','DumpAvailable':true,'"
     "Inactive':false,'CanActivate':true,'Subject':'Test subject','Content':'<Full dump>'}",
     {MEV_BOUNCED_SOFT, "Bounce:4323372036854775807", "12.34",
      "883953f4-6105-42a2-a16a-77a8eac79483", "john@example.com", 1572971634907,
      "SoftBounce: The server could not temporarily deliver your message (ex: Message is delayed "
      "due to network troubles).",
      NULL, NULL, 0}},
    {"{'RecordType':'Bounce','ID':44,'Type':'Transient','MessageID':'m3','Email':'t@example.com',"
     "'BouncedAt':'2019-11-05T16:33:54Z','Details':'smtp;421 try later'}",
     {MEV_BOUNCED_SOFT, "Bounce:44", NULL, "m3", "t@example.com", 1572971634000,
      "Transient: smtp;421 try later", NULL, NULL, 0}},
    {"{'RecordType':'Bounce','ID':45,'Type':'BadEmailAddress','MessageID':'m4','Email':'b@"
     "example.com','BouncedAt':'2019-11-05T16:33:54Z','Description':'Invalid email address'}",
     {MEV_BOUNCED_HARD, "Bounce:45", NULL, "m4", "b@example.com", 1572971634000,
      "BadEmailAddress: Invalid email address", NULL, NULL, 0}},
    {"{'RecordType':'Bounce','ID':46,'Type':'SpamComplaint','MessageID':'m5','Email':'s@"
     "example.com','BouncedAt':'2019-11-05T16:33:54Z','Metadata':{'engage_message_id':'9.9'}}",
     {MEV_COMPLAINED, "Bounce:46", "9.9", "m5", "s@example.com", 1572971634000, NULL, NULL, NULL,
      0}},
    {"{'RecordType':'SpamComplaint','MessageStream':'outbound','ID':42,'Type':'SpamComplaint','"
     "TypeCode':512,'Name':'Spam complaint','Tag':'Test','MessageID':'00000000-0000-0000-0000-"
     "000000000000','Metadata':{'engage_message_id':'7.9'},'ServerID':1234,'Description':'','"
     "Details':'Test spam complaint details','Email':'john@example.com','From':'sender@example.com"
     "','BouncedAt':'2019-11-05T16:33:54.9070259Z','DumpAvailable':true,'Inactive':true,'"
     "CanActivate':false,'Subject':'Test subject','Content':'<Abuse report dump>'}",
     {MEV_COMPLAINED, "SpamComplaint:42", "7.9", "00000000-0000-0000-0000-000000000000",
      "john@example.com", 1572971634907, NULL, NULL, NULL, 0}},
    {"{'RecordType':'Open','MessageStream':'outbound','Metadata':{'example':'value','engage_"
     "message_id':'7.10'},'FirstOpen':true,'Recipient':'john@example.com','MessageID':'00000000-"
     "0000-0000-0000-000000000000','ReceivedAt':'2019-11-05T16:33:54.9070259Z','Platform':'"
     "WebMail','ReadSeconds':5,'Tag':'welcome-email','UserAgent':'Mozilla/5.0 (Windows NT 10.0; "
     "Win64; x64)','OS':{'Name':'OS X 10.7 Lion','Family':'OS X','Company':'Apple Computer, "
     "Inc.'},'Client':{'Name':'Chrome 35.0.1916.153','Family':'Chrome','Company':'Google'},'Geo':"
     "{'IP':'188.2.95.4','City':'Novi Sad','Country':'Serbia'}}",
     {MEV_OPENED, "Open:00000000-0000-0000-0000-000000000000:2019-11-05T16:33:54.9070259Z", "7.10",
      "00000000-0000-0000-0000-000000000000", "john@example.com", 1572971634907, NULL, NULL,
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", 0}},
    {"{'RecordType':'Click','MessageStream':'outbound','ClickLocation':'HTML','Client':{'Name':'"
     "Chrome 35.0.1916.153','Family':'Chrome'},'OS':{'Name':'OS X 10.7 Lion'},'Platform':'Desktop"
     "','UserAgent':'Mozilla/5.0 (Macintosh)','OriginalLink':'https://example.com/x?y=1','Geo':{"
     "},'MessageID':'00000000-0000-0000-0000-000000000000','Metadata':{'engage_message_id':'7.11'"
     "},'ReceivedAt':'2017-10-25T15:21:11.0000000-04:00','Tag':'welcome-email','Recipient':'john@"
     "example.com'}",
     {MEV_CLICKED, "Click:00000000-0000-0000-0000-000000000000:2017-10-25T15:21:11.0000000-04:00",
      "7.11", "00000000-0000-0000-0000-000000000000", "john@example.com", 1508959271000, NULL,
      "https://example.com/x?y=1", "Mozilla/5.0 (Macintosh)", 0}},
    {"{'RecordType':'SubscriptionChange','MessageID':'883953f4-6105-42a2-a16a-77a8eac79483','"
     "ServerID':123456,'MessageStream':'outbound','ChangedAt':'2020-02-01T10:53:34.416071Z','"
     "Recipient':'bounced-address@wildbit.com','Origin':'Recipient','SuppressSending':true,'"
     "SuppressionReason':'ManualSuppression','Tag':'my-tag','Metadata':{'engage_message_id':'7."
     "12'}}",
     {MEV_UNSUBSCRIBED,
      "SubscriptionChange:883953f4-6105-42a2-a16a-77a8eac79483:2020-02-01T10:53:34.416071Z", "7.12",
      "883953f4-6105-42a2-a16a-77a8eac79483", "bounced-address@wildbit.com", 1580554414416, NULL,
      NULL, NULL, 0}},
};

UTEST(postmark, documented_records_map)
{
    struct run r;

    for (size_t i = 0; i < sizeof pm_cases / sizeof *pm_cases; i++) {
        run(&r, postmark_parse, pm_cases[i].body);
        cr_assert_eq(r.rc, 0, "case %zu: %s", i, r.e.msg);
        cr_assert_eq(r.l.n, 1, "case %zu", i);
        expect(&r.l, 0, &pm_cases[i].w);
        run_done(&r);
    }
}

UTEST(postmark, two_opens_differ_and_skipped_records)
{
    static const char *const skipped[] = {
        "{'RecordType':'SubscriptionChange','MessageID':'m','ChangedAt':'2020-02-01T10:53:34Z',"
        "'Recipient':'a@b.c','SuppressSending':false}",
        "{'RecordType':'SubscriptionChange','MessageID':'m','Recipient':'a@b.c'}",
        "{'RecordType':'Inbound','MessageID':'m'}",
    };
    static const struct {
        const char *body, *says;
    } bad[] = {
        {"[]", "not a JSON object"},
        {"{}", "RecordType missing"},
        {"{'RecordType':7}", "RecordType missing"},
        {"{'RecordType':'Open',}", "not JSON"},
    };
    struct run r1, r2;

    run(&r1, postmark_parse,
        "{'RecordType':'Open','MessageID':'m1','ReceivedAt':'2019-11-05T16:33:54.9070259Z'}");
    run(&r2, postmark_parse,
        "{'RecordType':'Open','MessageID':'m1','ReceivedAt':'2019-11-05T16:33:54.9070260Z'}");
    cr_assert_eq(r1.l.n, 1);
    cr_assert_eq(r2.l.n, 1);
    cr_assert_str_neq(r1.l.v[0].source_id, r2.l.v[0].source_id);
    cr_assert_eq(r1.l.v[0].at_ms, r2.l.v[0].at_ms);
    run_done(&r1);
    run_done(&r2);
    for (size_t i = 0; i < sizeof skipped / sizeof *skipped; i++) {
        run(&r1, postmark_parse, skipped[i]);
        cr_assert_eq(r1.rc, 0, "%s", r1.e.msg);
        cr_assert_eq(r1.l.n, 0, "skipped[%zu]", i);
        run_done(&r1);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        run(&r1, postmark_parse, bad[i].body);
        expect_err(&r1, E_INVAL, bad[i].says);
        run_done(&r1);
    }
}

/* "Basic " + base64(creds[0..n)) */
static void basic(char *out, size_t cap, const char *creds, size_t n, int variant)
{
    char b64[256];

    sodium_bin2base64(b64, sizeof b64, (const unsigned char *)creds, n, variant);
    snprintf(out, cap, "Basic %s", b64);
}

static int pm_verify(const char *header, const char *user, const char *pass)
{
    struct err e = {0};
    int rc = postmark_verify(header, user, pass, &e);

    cr_assert_eq(rc, e.code, "rc %d, e.code %d", rc, e.code);
    cr_assert(rc == 0 || rc == E_AUTH, "rc %d: %s", rc, e.msg);
    return rc;
}

UTEST(postmark, basic_credentials)
{
    static const char *const refused[] = {
        "hook:s3cret",  "hook:s3cre",    "hook:s3cret!",
        "hoo:s3cret",   "hookk:s3cret",  ":s3cret",
        "hook:",        "hook",          "",
        "HOOK:s3cret",  "hook:S3cret",   "hook:s3cret\n",
        "hook :s3cret", "hook:s3cre\0t",
    };
    char h[512];

    basic(h, sizeof h, "hook:pa:ss", 10, sodium_base64_VARIANT_ORIGINAL);
    cr_assert_eq(pm_verify(h, "hook", "pa:ss"), 0); /* a ':' in the password */
    basic(h, sizeof h, "hook:s3cret", 11, sodium_base64_VARIANT_ORIGINAL);
    cr_assert_eq(pm_verify(h, "hook", "s3cret"), 0);
    h[0] = 'b'; /* the scheme is case-insensitive */
    cr_assert_eq(pm_verify(h, "hook", "s3cret"), 0);
    basic(h, sizeof h, "hook:s3cret", 11, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    cr_assert_eq(pm_verify(h, "hook", "s3cret"), 0);
    cr_assert_eq(pm_verify("Basic   aG9vazpzM2NyZXQ=  ", "hook", "s3cret"), 0);
    /* every near miss (the first entry is right for other credentials) */
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        size_t n = i == 13 ? 12 : strlen(refused[i]);
        basic(h, sizeof h, refused[i], n, sodium_base64_VARIANT_ORIGINAL);
        cr_assert_eq(pm_verify(h, "hook", i == 0 ? "s3cret2" : "s3cret"), E_AUTH, "case %zu", i);
    }
    cr_assert_eq(pm_verify(NULL, "hook", "s3cret"), E_AUTH);
    cr_assert_eq(pm_verify("", "hook", "s3cret"), E_AUTH);
    cr_assert_eq(pm_verify("Bearer aG9vazpzM2NyZXQ=", "hook", "s3cret"), E_AUTH);
    cr_assert_eq(pm_verify("BasicaG9vazpzM2NyZXQ=", "hook", "s3cret"), E_AUTH);
    cr_assert_eq(pm_verify("Basic ", "hook", "s3cret"), E_AUTH);
    cr_assert_eq(pm_verify("Basic aG9vazpzM2Ny*XQ=", "hook", "s3cret"), E_AUTH);
    cr_assert_eq(pm_verify("Basic aG9vazpzM2NyZXQ=", NULL, "s3cret"), E_AUTH);
    cr_assert_eq(pm_verify("Basic aG9vazpzM2NyZXQ=", "hook", NULL), E_AUTH);
}

/* ---- generic ------------------------------------------------------------------------- */

UTEST(generic, events_map)
{
    struct run r;

    run(&r, generic_parse,
        "{'events':[{'id':'e1','type':'delivered','message_id':'5.6','email':'a@x.io','timestamp':"
        "1700000000},"
        "{'id':'e2','type':'bounced_hard','message_id':'<5.7.abc@mail.example.com>','timestamp':'"
        "2024-02-29T12:00:00+05:30','reason':'550 5.1.1 no such user','email':'b@x.io'},"
        "{'id':42,'type':'clicked','message_id':'5_8','url':'https://e.x/a','user_agent':'UA/1',"
        "'timestamp':1700000000.5},"
        "{'id':'e4','type':'opened','message_id':'5.9','timestamp':'yesterday','extra':[1,2]},"
        "{'id':'e5','type':'bounced_soft','message_id':'5.10','reason':'452 4.2.2 full'},"
        "{'id':'e6','type':'deferred','message_id':'5.11'},"
        "{'id':'e7','type':'dropped','message_id':'5.12'},"
        "{'id':'e8','type':'complained','message_id':'5.13'},"
        "{'id':'e9','type':'unsubscribed','message_id':'5.14','timestamp':'2024-02-29'}],"
        "'sender':'acme'}");
    cr_assert_eq(r.rc, 0, "%s", r.e.msg);
    cr_assert_eq(r.l.n, 9);
    expect(&r.l, 0,
           &(struct want){MEV_DELIVERED, "e1", "5.6", NULL, "a@x.io", 1700000000000, NULL, NULL,
                          NULL, 0});
    expect(&r.l, 1,
           &(struct want){MEV_BOUNCED_HARD, "e2", "5.7", NULL, "b@x.io", 1709188200000,
                          "550 5.1.1 no such user", NULL, NULL, 0});
    expect(&r.l, 2,
           &(struct want){MEV_CLICKED, "42", "5.8", NULL, NULL, 1700000000500, NULL,
                          "https://e.x/a", "UA/1", 0});
    expect(&r.l, 3, &(struct want){MEV_OPENED, "e4", "5.9", NULL, NULL, 0, NULL, NULL, NULL, 0});
    expect(&r.l, 4,
           &(struct want){MEV_BOUNCED_SOFT, "e5", "5.10", NULL, NULL, 0, "452 4.2.2 full", NULL,
                          NULL, 0});
    cr_assert_eq(r.l.v[5].kind, MEV_DEFERRED);
    cr_assert_eq(r.l.v[6].kind, MEV_DROPPED);
    cr_assert_eq(r.l.v[7].kind, MEV_COMPLAINED);
    cr_assert_eq(r.l.v[8].kind, MEV_UNSUBSCRIBED);
    cr_assert_eq(r.l.v[8].at_ms, 1709164800000);
    run_done(&r);
}

UTEST(generic, malformed_names_index_and_field)
{
    static const struct {
        const char *body, *says;
    } bad[] = {
        {"{'events':[{'id':'a','type':'opened','message_id':'1.2'},{'id':'b','type':'opened',"
         "'message_id':'1.2'},{'id':'c','type':'opened','message_id':'1.2'},{'id':'d','type':'"
         "foo','message_id':'1.2'}]}",
         "events[3].type: unknown type \"foo\""},
        {"{'events':[{'type':'opened','message_id':'1.2'}]}", "events[0].id: missing"},
        {"{'events':[{'id':'','type':'opened','message_id':'1.2'}]}", "events[0].id: missing"},
        {"{'events':[{'id':true,'type':'opened','message_id':'1.2'}]}", "events[0].id"},
        {"{'events':[{'id':'a','message_id':'1.2'}]}", "events[0].type: missing"},
        {"{'events':[{'id':'a','type':'Opened','message_id':'1.2'}]}",
         "events[0].type: unknown type \"Opened\""},
        {"{'events':[{'id':'a','type':'opened'}]}", "events[0].message_id: missing"},
        {"{'events':[{'id':'a','type':'opened','message_id':12}]}",
         "events[0].message_id: missing"},
        {"{'events':[{'id':'a','type':'opened','message_id':'1.2'},{'id':'b','type':'opened','"
         "message_id':''}]}",
         "events[1].message_id: empty"},
        {"{'events':[{'id':'a','type':'converted','message_id':'1.2'}]}",
         "events[0].type: unknown type \"converted\""},
        {"{'events':[{'id':'a','type':'opened','message_id':'1.2'},[]]}",
         "events[1]: not an object"},
        {"{'events':{}}", "events: missing or not an array"},
        {"{'event':[]}", "events: missing or not an array"},
        {"[]", "not a JSON object"},
        {"{'events':[}", "not JSON"},
        {"", "empty body"},
    };
    struct run r;

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        run(&r, generic_parse, bad[i].body);
        expect_err(&r, E_INVAL, bad[i].says);
        run_done(&r);
    }
    /* a message id that is not ours is the provider's queue id */
    run(&r, generic_parse, "{'events':[{'id':'a','type':'delivered','message_id':'4F2A1C0B9'}]}");
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(r.l.n, 1);
    cr_assert_null(r.l.v[0].message_id);
    cr_assert_str_eq(r.l.v[0].queue_id, "4F2A1C0B9");
    run_done(&r);
    /* an empty list is no error */
    run(&r, generic_parse, "{'events':[]}");
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(r.l.n, 0);
    run_done(&r);
}

UTEST(generic, too_many_events)
{
    struct buf b;
    struct run r;

    buf_init(&b);
    buf_adds(&b, "{\"events\":[");
    for (size_t i = 0; i <= MEV_MAX_PER_BODY; i++)
        buf_adds(&b, i ? ",{}" : "{}");
    buf_adds(&b, "]}");
    run_raw(&r, generic_parse, b.p, b.len);
    expect_err(&r, E_TOOBIG, "\"events\" holds more than 10000 items");
    run_done(&r);
    buf_release(&b);
}

static int gen_verify(const char *secret, const char *ts, const char *sig, const char *body,
                      int64_t now_ms)
{
    struct err e = {0};
    int rc = generic_verify((const unsigned char *)secret, strlen(secret), ts, sig, body,
                            body ? strlen(body) : 0, now_ms, 300, &e);

    cr_assert_eq(rc, e.code, "rc %d, e.code %d", rc, e.code);
    return rc;
}

UTEST(generic, signature_and_window)
{
    static const char secret[] = "whsec_7f3a9c1e5b2d4f6a8c0e2b4d6f8a0c2e";
    static const char body[] = "{\"events\":[{\"id\":\"e1\",\"type\":\"opened\","
                               "\"message_id\":\"1.2\"}]}";
    const int64_t now = 1700000000LL * 1000;
    char hex[65], other[65], sig[256];

    openssl_hmac_hex(secret, strlen(secret), "1700000000", ".", body, strlen(body), hex);
    openssl_hmac_hex("old secret", 10, "1700000000", ".", body, strlen(body), other);
    snprintf(sig, sizeof sig, "v1=%s", hex);
    cr_assert_eq(gen_verify(secret, "1700000000", sig, body, now), 0);
    /* rotation: either of several values */
    snprintf(sig, sizeof sig, "v1=%s, v1=%s", other, hex);
    cr_assert_eq(gen_verify(secret, "1700000000", sig, body, now), 0);
    snprintf(sig, sizeof sig, "v1=%s,v1=%s", hex, other);
    cr_assert_eq(gen_verify(secret, "1700000000", sig, body, now), 0);
    snprintf(sig, sizeof sig, "v0=%s,v1=%s", other, hex);
    cr_assert_eq(gen_verify(secret, "1700000000", sig, body, now), 0);
    /* only the old secret's; another scheme; nothing */
    snprintf(sig, sizeof sig, "v1=%s", other);
    cr_assert_eq(gen_verify(secret, "1700000000", sig, body, now), E_AUTH);
    snprintf(sig, sizeof sig, "v2=%s", hex);
    cr_assert_eq(gen_verify(secret, "1700000000", sig, body, now), E_AUTH);
    snprintf(sig, sizeof sig, "%s", hex);
    cr_assert_eq(gen_verify(secret, "1700000000", sig, body, now), E_AUTH);
    cr_assert_eq(gen_verify(secret, "1700000000", "", body, now), E_AUTH);
    cr_assert_eq(gen_verify(secret, "1700000000", NULL, body, now), E_AUTH);
    snprintf(sig, sizeof sig, "v1=%.63s", hex);
    cr_assert_eq(gen_verify(secret, "1700000000", sig, body, now), E_AUTH);
    /* tampered body, timestamp, secret */
    snprintf(sig, sizeof sig, "v1=%s", hex);
    cr_assert_eq(gen_verify(secret, "1700000000", sig, "{\"events\":[]}", now), E_AUTH);
    cr_assert_eq(gen_verify(secret, "1700000001", sig, body, now), E_AUTH);
    cr_assert_eq(gen_verify("whsec_7f3a9c1e5b2d4f6a8c0e2b4d6f8a0c2f", "1700000000", sig, body, now),
                 E_AUTH);
    /* the window, both ways; a timestamp missing or not seconds */
    cr_assert_eq(gen_verify(secret, "1700000000", sig, body, now + 300 * SEC_MS), 0);
    cr_assert_eq(gen_verify(secret, "1700000000", sig, body, now + 301 * SEC_MS), E_FORBIDDEN);
    cr_assert_eq(gen_verify(secret, "1700000000", sig, body, now - 301 * SEC_MS), E_FORBIDDEN);
    cr_assert_eq(gen_verify(secret, NULL, sig, body, now), E_FORBIDDEN);
    cr_assert_eq(gen_verify(secret, "", sig, body, now), E_FORBIDDEN);
    cr_assert_eq(gen_verify(secret, "1700000000.0", sig, body, now), E_FORBIDDEN);
    /* too many values to try */
    {
        struct buf b;
        buf_init(&b);
        for (int i = 0; i < 9; i++)
            buf_printf(&b, "%sv1=%s", i ? "," : "", other);
        cr_assert_eq(gen_verify(secret, "1700000000", b.p, body, now), E_AUTH);
        buf_release(&b);
    }
}
