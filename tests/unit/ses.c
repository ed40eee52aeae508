/* tests/unit/ses.c -- Amazon SES through SNS (src/delivery/ses.c).
 *
 * An RSA-2048 key and a self-signed certificate are made here with OpenSSL; SNS
 * envelopes (a Notification with and without Subject, a SubscriptionConfirmation, an
 * UnsubscribeConfirmation) are signed with it, version 1 and 2, over a string to sign
 * this file builds itself from AWS's page, and must verify; a changed Message,
 * MessageId, Subject, Timestamp, TopicArn, Type, Token or signature, another key, an
 * unknown version, must not. The default certificate URL pattern against AWS's URLs and
 * look-alikes. The certificate cache and sns_confirm against a small HTTP server run
 * here on 127.0.0.1 (a thread; it counts requests): fetched once, kept, 64 at most; a
 * 404, a redirect, an oversized or non-PEM answer and nothing listening are E_IO and are
 * not kept. Then ses_parse on each shape of SES event in AWS's examples. */
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include <jansson.h>

#include "delivery/delivery.h"
#include "delivery/ses_int.h"
#include "helpers.h"

/* ---- keys, certificates, signed envelopes ------------------------------------------- */

static EVP_PKEY *make_key(void)
{
    EVP_PKEY *k = EVP_RSA_gen(2048);
    cr_assert_not_null(k);
    return k;
}

/* A self-signed certificate for k, as PEM (caller frees). */
static char *make_cert(EVP_PKEY *k)
{
    X509 *x = X509_new();
    X509_NAME *name;
    BIO *b = BIO_new(BIO_s_mem());
    char *p = NULL, *pem;
    long n;

    cr_assert(x && b);
    cr_assert_eq(X509_set_version(x, 2), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    cr_assert_eq(X509_set_pubkey(x, k), 1);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"sns.amazonaws.com",
                               -1, -1, 0);
    cr_assert_eq(X509_set_issuer_name(x, name), 1);
    cr_assert_gt(X509_sign(x, k, EVP_sha256()), 0);
    cr_assert_eq(PEM_write_bio_X509(b, x), 1);
    n = BIO_get_mem_data(b, &p);
    pem = strndup(p, (size_t)n);
    BIO_free(b);
    X509_free(x);
    return pem;
}

/* What SNS sends; NULL members are left out of the JSON. */
struct env {
    const char *type, *message_id, *topic_arn, *subject, *message, *timestamp, *version;
    const char *subscribe_url, *token, *cert_url;
};

/* The string to sign, from docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-
 * message.html, written here again rather than taken from the code under test. */
static char *to_sign(const struct env *v)
{
    char *s = NULL;
    int notification = strcmp(v->type, "Notification") == 0;

    if (notification && v->subject)
        cr_assert_gt(
            asprintf(&s,
                     "Message\n%s\nMessageId\n%s\nSubject\n%s\nTimestamp\n%s\nTopicArn\n%s\n"
                     "Type\n%s\n",
                     v->message, v->message_id, v->subject, v->timestamp, v->topic_arn, v->type),
            0);
    else if (notification)
        cr_assert_gt(asprintf(&s,
                              "Message\n%s\nMessageId\n%s\nTimestamp\n%s\nTopicArn\n%s\nType\n%s\n",
                              v->message, v->message_id, v->timestamp, v->topic_arn, v->type),
                     0);
    else
        cr_assert_gt(
            asprintf(&s,
                     "Message\n%s\nMessageId\n%s\nSubscribeURL\n%s\nTimestamp\n%s\nToken\n%s\n"
                     "TopicArn\n%s\nType\n%s\n",
                     v->message, v->message_id, v->subscribe_url, v->timestamp, v->token,
                     v->topic_arn, v->type),
            0);
    return s;
}

/* base64 of the RSA signature of text with md (caller frees). */
static char *sign_b64(EVP_PKEY *k, const EVP_MD *md, const char *text)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned char *sig;
    size_t n = 0;
    char *b64;

    cr_assert_eq(EVP_DigestSignInit(c, NULL, md, NULL, k), 1);
    cr_assert_eq(EVP_DigestSign(c, NULL, &n, (const unsigned char *)text, strlen(text)), 1);
    sig = malloc(n);
    cr_assert_eq(EVP_DigestSign(c, sig, &n, (const unsigned char *)text, strlen(text)), 1);
    b64 = malloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)b64, sig, (int)n);
    free(sig);
    EVP_MD_CTX_free(c);
    return b64;
}

static void set_str(json_t *o, const char *key, const char *value)
{
    if (value)
        json_object_set_new(o, key, json_string(value));
}

/* The envelope's JSON, signed with k (version "1": SHA-1, else SHA-256) unless
 * signature is given; caller frees. */
static char *envelope(const struct env *v, EVP_PKEY *k, const char *signature)
{
    json_t *o = json_object();
    char *tbs = to_sign(v), *sig = signature ? strdup(signature) : NULL, *text;

    if (sig == NULL)
        sig = sign_b64(k, strcmp(v->version, "1") == 0 ? EVP_sha1() : EVP_sha256(), tbs);
    set_str(o, "Type", v->type);
    set_str(o, "MessageId", v->message_id);
    set_str(o, "Token", v->token);
    set_str(o, "TopicArn", v->topic_arn);
    set_str(o, "Subject", v->subject);
    set_str(o, "Message", v->message);
    set_str(o, "SubscribeURL", v->subscribe_url);
    set_str(o, "Timestamp", v->timestamp);
    set_str(o, "SignatureVersion", v->version);
    set_str(o, "Signature", sig);
    set_str(o, "SigningCertURL", v->cert_url);
    set_str(o, "UnsubscribeURL", "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe");
    text = json_dumps(o, JSON_INDENT(2)); /* SNS sends it pretty-printed */
    json_decref(o);
    free(tbs);
    free(sig);
    return text;
}

#define CERT_URL "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem"
#define TOPIC "arn:aws:sns:us-east-1:123456789012:ses-events"
#define SES_BOUNCE                                                                                 \
    "{\"notificationType\":\"Bounce\",\"bounce\":{\"bounceType\":\"Permanent\","                   \
    "\"bouncedRecipients\":[{\"emailAddress\":\"jane@example.com\",\"status\":\"5.1.1\"}],"        \
    "\"timestamp\":\"2016-01-27T14:59:44.101Z\"},\"mail\":{\"timestamp\":"                         \
    "\"2016-01-27T14:59:38.237Z\",\"messageId\":\"0000014-ses\",\"destination\":"                  \
    "[\"jane@example.com\"],\"tags\":{\"engage_message_id\":[\"42_9001\"]}}}"

static const struct env notification = {
    .type = "Notification",
    .message_id = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
    .topic_arn = TOPIC,
    .subject = "Amazon SES Email Event Notification",
    .message = SES_BOUNCE,
    .timestamp = "2026-03-08T12:00:00.123Z",
    .version = "1",
    .cert_url = CERT_URL,
};
static const struct env confirmation = {
    .type = "SubscriptionConfirmation",
    .message_id = "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
    .topic_arn = TOPIC,
    .message = "You have chosen to subscribe to the topic " TOPIC
               ".\nTo confirm the subscription, visit the SubscribeURL included in this message.",
    .timestamp = "2026-03-08T12:00:00.000Z",
    .version = "1",
    .subscribe_url = "https://sns.us-east-1.amazonaws.com/"
                     "?Action=ConfirmSubscription&TopicArn=" TOPIC "&Token=2336412f37",
    .token = "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb"
             "71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82e",
    .cert_url = CERT_URL,
};

struct sig_fixture {
    EVP_PKEY *key;
    char *pem;
    struct arena a;
};

static void fixture_init(struct sig_fixture *f)
{
    f->key = make_key();
    f->pem = make_cert(f->key);
    arena_init(&f->a);
}

static void fixture_release(struct sig_fixture *f)
{
    EVP_PKEY_free(f->key);
    free(f->pem);
    arena_release(&f->a);
}

/* v signed and read back; the message read is in f's arena. */
static struct sns_msg read_signed(struct sig_fixture *f, const struct env *v)
{
    char *body = envelope(v, f->key, NULL);
    struct sns_msg m;
    struct err e = {0};

    cr_assert_eq(sns_read(body, strlen(body), &f->a, &m, &e), 0, "%s", e.msg);
    free(body);
    return m;
}

static int verify(const struct sig_fixture *f, const struct sns_msg *m)
{
    struct err e = {0};
    int rc = sns_verify(m, f->pem, strlen(f->pem), &e);
    cr_assert(rc == 0 || e.msg[0], "an error says why");
    return rc;
}

/* ---- the envelope and its signature -------------------------------------------------- */

UTEST(ses, string_to_sign_is_awss)
{
    struct sns_msg m = {.type = SNS_NOTIFICATION,
                        .message_id = "id",
                        .topic_arn = "arn",
                        .subject = "subj",
                        .message = "{\"a\":\"b\\n\"}\n",
                        .timestamp = "ts"};
    struct buf b;

    buf_init(&b);
    sns_string_to_sign(&m, &b);
    cr_assert_str_eq(b.p,
                     "Message\n{\"a\":\"b\\n\"}\n\nMessageId\nid\nSubject\nsubj\nTimestamp\nts\n"
                     "TopicArn\narn\nType\nNotification\n");
    buf_reset(&b);
    m.subject = NULL;
    sns_string_to_sign(&m, &b);
    cr_assert_str_eq(b.p, "Message\n{\"a\":\"b\\n\"}"
                          "\n\nMessageId\nid\nTimestamp\nts\nTopicArn\narn\nType\nNotification\n");
    buf_reset(&b);
    m.type = SNS_UNSUBSCRIBE_CONFIRMATION;
    m.subject = "ignored: not signed on a confirmation";
    m.subscribe_url = "https://x/";
    m.token = "tok";
    sns_string_to_sign(&m, &b);
    cr_assert_str_eq(b.p,
                     "Message\n{\"a\":\"b\\n\"}\n\nMessageId\nid\nSubscribeURL\nhttps://x/\n"
                     "Timestamp\nts\nToken\ntok\nTopicArn\narn\nType\nUnsubscribeConfirmation\n");
    buf_release(&b);
}

UTEST(ses, read_envelopes)
{
    struct sig_fixture f;
    struct sns_msg m;

    fixture_init(&f);
    m = read_signed(&f, &notification);
    cr_assert_eq(m.type, SNS_NOTIFICATION);
    cr_assert_str_eq(m.message_id, notification.message_id);
    cr_assert_str_eq(m.topic_arn, TOPIC);
    cr_assert_str_eq(m.subject, notification.subject);
    cr_assert_str_eq(m.message, SES_BOUNCE, "the Message string decoded");
    cr_assert_str_eq(m.timestamp, notification.timestamp);
    cr_assert_str_eq(m.signature_version, "1");
    cr_assert_str_eq(m.signing_cert_url, CERT_URL);
    cr_assert_null(m.subscribe_url);
    cr_assert_null(m.token);
    m = read_signed(&f, &confirmation);
    cr_assert_eq(m.type, SNS_SUBSCRIPTION_CONFIRMATION);
    cr_assert_str_eq(m.subscribe_url, confirmation.subscribe_url);
    cr_assert_str_eq(m.token, confirmation.token);
    cr_assert_null(m.subject);
    fixture_release(&f);
}

UTEST(ses, read_refuses_what_is_not_an_envelope)
{
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "\"Notification\"",
        "{}",
        "{\"Type\":\"Notice\",\"MessageId\":\"a\",\"TopicArn\":\"t\",\"Message\":\"m\","
        "\"Timestamp\":\"x\",\"SignatureVersion\":\"1\",\"Signature\":\"s\",\"SigningCertURL\":"
        "\"u\"}",
        /* MessageId a number */
        "{\"Type\":\"Notification\",\"MessageId\":1,\"TopicArn\":\"t\",\"Message\":\"m\","
        "\"Timestamp\":\"x\",\"SignatureVersion\":\"1\",\"Signature\":\"s\",\"SigningCertURL\":"
        "\"u\"}",
        /* Message an object, not a string */
        "{\"Type\":\"Notification\",\"MessageId\":\"a\",\"TopicArn\":\"t\",\"Message\":{},"
        "\"Timestamp\":\"x\",\"SignatureVersion\":\"1\",\"Signature\":\"s\",\"SigningCertURL\":"
        "\"u\"}",
        /* a confirmation without SubscribeURL */
        "{\"Type\":\"SubscriptionConfirmation\",\"MessageId\":\"a\",\"TopicArn\":\"t\","
        "\"Message\":\"m\",\"Token\":\"k\",\"Timestamp\":\"x\",\"SignatureVersion\":\"1\","
        "\"Signature\":\"s\",\"SigningCertURL\":\"u\"}",
        /* an UnsubscribeConfirmation without Token */
        "{\"Type\":\"UnsubscribeConfirmation\",\"MessageId\":\"a\",\"TopicArn\":\"t\","
        "\"Message\":\"m\",\"SubscribeURL\":\"k\",\"Timestamp\":\"x\",\"SignatureVersion\":\"1\","
        "\"Signature\":\"s\",\"SigningCertURL\":\"u\"}",
    };
    static const char *const required[] = {"Type",      "MessageId",     "TopicArn",
                                           "Message",   "Timestamp",     "SignatureVersion",
                                           "Signature", "SigningCertURL"};
    struct sig_fixture f;
    struct sns_msg m;
    struct err e;

    fixture_init(&f);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(&e, 0, sizeof e);
        cr_assert_eq(sns_read(bad[i], strlen(bad[i]), &f.a, &m, &e), E_INVAL, "%s", bad[i]);
        cr_assert_neq(e.msg[0], 0);
    }
    /* each required member left out of a real envelope */
    for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
        char *body = envelope(&notification, f.key, NULL);
        json_t *o = json_loads(body, 0, NULL);
        char *text;
        json_object_del(o, required[i]);
        text = json_dumps(o, 0);
        memset(&e, 0, sizeof e);
        cr_assert_eq(sns_read(text, strlen(text), &f.a, &m, &e), E_INVAL, "without %s",
                     required[i]);
        cr_assert_not_null(strstr(e.msg, required[i]), "%s", e.msg);
        free(text);
        free(body);
        json_decref(o);
    }
    fixture_release(&f);
}

UTEST(ses, signatures_v1_and_v2_verify)
{
    const struct env *kinds[] = {&notification, &confirmation};
    struct sig_fixture f;

    fixture_init(&f);
    for (int version = 1; version <= 2; version++) {
        for (size_t k = 0; k < 2; k++) {
            struct env v = *kinds[k];
            struct sns_msg m;
            v.version = version == 1 ? "1" : "2";
            m = read_signed(&f, &v);
            cr_assert_eq(verify(&f, &m), 0, "%s v%d", v.type, version);
        }
        {
            struct env v = notification; /* no Subject: not in the string to sign */
            struct sns_msg m;
            v.version = version == 1 ? "1" : "2";
            v.subject = NULL;
            m = read_signed(&f, &v);
            cr_assert_eq(verify(&f, &m), 0, "without Subject, v%d", version);
        }
        {
            struct env v = confirmation;
            struct sns_msg m;
            v.version = version == 1 ? "1" : "2";
            v.type = "UnsubscribeConfirmation";
            m = read_signed(&f, &v);
            cr_assert_eq(m.type, SNS_UNSUBSCRIBE_CONFIRMATION);
            cr_assert_eq(verify(&f, &m), 0, "UnsubscribeConfirmation v%d", version);
        }
    }
    {
        struct env v = notification; /* what JSON escapes, and UTF-8 */
        struct sns_msg m;
        v.message = "{\"a\":\"line\\nbreak \\\"q\\\" \\u00e9\"}\n\ttab \xc3\xa9 \xf0\x9f\x98\x80";
        v.subject = "Caf\xc3\xa9 \"quoted\"";
        m = read_signed(&f, &v);
        cr_assert_str_eq(m.message, v.message);
        cr_assert_eq(verify(&f, &m), 0);
    }
    fixture_release(&f);
}

UTEST(ses, tampering_is_refused)
{
    struct sig_fixture f;
    struct sns_msg good, m;
    char sig[1024];
    struct err e = {0};

    fixture_init(&f);
    for (int version = 1; version <= 2; version++) {
        struct env v = notification;
        v.version = version == 1 ? "1" : "2";
        good = read_signed(&f, &v);
        cr_assert_eq(verify(&f, &good), 0);
        m = good;
        m.message = "{\"notificationType\":\"Delivery\"}";
        cr_assert_eq(verify(&f, &m), E_AUTH, "Message changed");
        m = good;
        m.topic_arn = "arn:aws:sns:us-east-1:999999999999:ses-events";
        cr_assert_eq(verify(&f, &m), E_AUTH, "TopicArn changed");
        m = good;
        m.message_id = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf325";
        cr_assert_eq(verify(&f, &m), E_AUTH, "MessageId changed");
        m = good;
        m.subject = NULL;
        cr_assert_eq(verify(&f, &m), E_AUTH, "Subject removed");
        m = good;
        m.timestamp = "2026-03-08T12:00:00.124Z";
        cr_assert_eq(verify(&f, &m), E_AUTH, "Timestamp changed");
        m = good;
        m.type = SNS_SUBSCRIPTION_CONFIRMATION;
        cr_assert_eq(verify(&f, &m), E_AUTH, "Type changed");
        m = good;
        m.signature_version = version == 1 ? "2" : "1";
        cr_assert_eq(verify(&f, &m), E_AUTH, "the other version's digest");
        /* each of a few bytes of the signature changed */
        for (size_t i = 0; i < strlen(good.signature) - 2; i += 37) {
            snprintf(sig, sizeof sig, "%s", good.signature);
            sig[i] = sig[i] == 'A' ? 'B' : 'A';
            m = good;
            m.signature = sig;
            cr_assert_eq(verify(&f, &m), E_AUTH, "signature byte %zu changed", i);
        }
        m = good;
        m.signature = "";
        cr_assert_eq(verify(&f, &m), E_AUTH, "no signature");
        m = good;
        m.signature = "not base64!";
        cr_assert_eq(verify(&f, &m), E_AUTH);
        m = good;
        m.signature = NULL;
        cr_assert_eq(verify(&f, &m), E_AUTH);
    }
    {
        struct env v = confirmation;
        v.version = "2";
        good = read_signed(&f, &v);
        m = good;
        m.token = "2336412f37";
        cr_assert_eq(verify(&f, &m), E_AUTH, "Token changed");
        m = good;
        m.subscribe_url = "https://evil.example.com/";
        cr_assert_eq(verify(&f, &m), E_AUTH, "SubscribeURL changed");
    }
    /* versions other than "1" and "2" */
    {
        static const char *const versions[] = {"3", "0", "", "01", "1 ", "SHA256", "v2"};
        for (size_t i = 0; i < sizeof versions / sizeof *versions; i++) {
            m = good;
            m.signature_version = versions[i];
            memset(&e, 0, sizeof e);
            cr_assert_eq(sns_verify(&m, f.pem, strlen(f.pem), &e), E_AUTH, "%s", versions[i]);
            cr_assert_not_null(strstr(e.msg, "SignatureVersion"), "%s", e.msg);
        }
        m = good;
        m.signature_version = NULL;
        cr_assert_eq(verify(&f, &m), E_AUTH);
    }
    fixture_release(&f);
}

UTEST(ses, another_key_or_no_certificate_is_refused)
{
    struct sig_fixture f;
    EVP_PKEY *other = make_key(), *ec = EVP_EC_gen("P-256");
    char *other_pem = make_cert(other), *ec_pem = make_cert(ec);
    struct sns_msg m;
    struct err e = {0};

    fixture_init(&f);
    m = read_signed(&f, &notification);
    cr_assert_eq(sns_verify(&m, other_pem, strlen(other_pem), &e), E_AUTH);
    memset(&e, 0, sizeof e);
    cr_assert_eq(sns_verify(&m, ec_pem, strlen(ec_pem), &e), E_AUTH);
    cr_assert_not_null(strstr(e.msg, "RSA"), "%s", e.msg);
    memset(&e, 0, sizeof e);
    cr_assert_eq(sns_verify(&m, "not a certificate", 17, &e), E_AUTH);
    cr_assert_eq(sns_verify(&m, f.pem, 40, &e), E_AUTH, "a cut certificate");
    cr_assert_eq(sns_verify(&m, NULL, 0, &e), E_AUTH);
    cr_assert_eq(sns_verify(&m, f.pem, strlen(f.pem), &e), 0);
    EVP_PKEY_free(other);
    EVP_PKEY_free(ec);
    free(other_pem);
    free(ec_pem);
    fixture_release(&f);
}

/* ---- the certificate URL pattern ---------------------------------------------------- */

UTEST(ses, default_pattern)
{
    static const char *const ok[] = {
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem",
        "https://sns.eu-west-1.amazonaws.com/"
        "SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc123.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-0123.pem",
    };
    static const char *const refused[] = {
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem",
        "https://sns.evil.com/SimpleNotificationService-abc123.pem",
        "https://sns.us-east-1.evil.com/SimpleNotificationService-abc123.pem",
        "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-abc123.pem",
        "https://sns.us-east-1.amazonaws.com.cn.evil.com/SimpleNotificationService-abc123.pem",
        "https://evil.com/sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem",
        "https://evil.com/?https://sns.us-east-1.amazonaws.com/SimpleNotificationService-a.pem",
        "https://evilsns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem",
        "https://sns.us-east-1.amazonawsXcom/SimpleNotificationService-abc123.pem",
        "https://snsXus-east-1.amazonaws.com/SimpleNotificationService-abc123.pem",
        "https://sns..amazonaws.com/SimpleNotificationService-abc123.pem",
        "https://sns.us-east-1.amazonaws.com@evil.com/SimpleNotificationService-abc123.pem",
        "https://evil.com#@sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-abc123.pem",
        "https://sns.us-east-1.amazonaws.com/../SimpleNotificationService-abc123.pem",
        "https://sns.us-east-1.amazonaws.com/x/../SimpleNotificationService-abc123.pem",
        "https://sns.us-east-1.amazonaws.com/x/SimpleNotificationService-abc123.pem",
        "https://sns.us-east-1.amazonaws.com//SimpleNotificationService-abc123.pem",
        "https://sns.us-east-1.amazonaws.com/%2e%2e/SimpleNotificationService-abc123.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem?x=1",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem#x",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem/",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem.evil",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem\n",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem%0a",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc 123.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.PEM",
        " https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem",
        "HTTPS://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem",
        "file:///etc/ssl/SimpleNotificationService-abc123.pem",
        "ftp://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem",
        "https://sns.us-east-1.amazonaws.com\\@evil.com/SimpleNotificationService-abc123.pem",
        "https://sns.us-\xc3\xa9"
        "ast-1.amazonaws.com/SimpleNotificationService-abc123.pem",
        "",
    };
    struct sns_certs *c = NULL;
    struct err e = {0};
    struct sns_msg m = {.type = SNS_NOTIFICATION, .signature_version = "1", .signature = "AAAA"};

    cr_assert_eq(sns_certs_new(&c, SNS_CERT_PATTERN_DEFAULT, &e), 0, "%s", e.msg);
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        cr_assert(sns_cert_url_allowed(c, ok[i]), "%s refused", ok[i]);
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        cr_assert_not(sns_cert_url_allowed(c, refused[i]), "%s allowed", refused[i]);
        /* refused before any fetch: E_AUTH, not E_IO */
        m.signing_cert_url = refused[i];
        memset(&e, 0, sizeof e);
        cr_assert_eq(sns_certs_verify(c, &m, &e), E_AUTH, "%s", refused[i]);
    }
    cr_assert_not(sns_cert_url_allowed(c, NULL));
    m.signing_cert_url = NULL;
    cr_assert_eq(sns_certs_verify(c, &m, &e), E_AUTH);
    {
        char longurl[SNS_URL_MAX + 64];
        size_t n = (size_t)snprintf(longurl, sizeof longurl,
                                    "https://sns.us-east-1.amazonaws.com/"
                                    "SimpleNotificationService-");
        memset(longurl + n, 'a', sizeof longurl - n - 5);
        memcpy(longurl + sizeof longurl - 5, ".pem", 5);
        cr_assert_not(sns_cert_url_allowed(c, longurl), "over SNS_URL_MAX");
    }
    sns_certs_free(c);
    sns_certs_free(NULL);
    c = (struct sns_certs *)1;
    memset(&e, 0, sizeof e);
    cr_assert_eq(sns_certs_new(&c, "^https://(unclosed", &e), E_INVAL);
    cr_assert_null(c);
    cr_assert_not_null(strstr(e.msg, "regular expression"), "%s", e.msg);
}

/* ---- a small HTTP server on 127.0.0.1 ------------------------------------------------ */

struct server {
    int fd, port;
    pthread_t thread;
    atomic_int stop;
    atomic_int requests;     /* every request */
    atomic_int cert_status;  /* what /cert.pem answers: 200 or 404 */
    atomic_int cert_hits;    /* requests for /cert.pem (any query) */
    atomic_int confirm_hits; /* requests for /confirm */
    const char *pem;
    pthread_mutex_t mu; /* mu protects last_path */
    char last_path[1024];
};

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void answer(int fd, int status, const char *extra, const char *body, size_t len)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n", status,
                     len, extra);
    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
}

static void serve_one(struct server *s, int fd)
{
    char req[4096], path[1024] = "";
    size_t n = 0;
    ssize_t r;

    while (n < sizeof req - 1 && (r = recv(fd, req + n, sizeof req - 1 - n, 0)) > 0) {
        n += (size_t)r;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    req[n] = '\0';
    if (sscanf(req, "GET %1023s HTTP/1.1", path) != 1)
        return;
    atomic_fetch_add(&s->requests, 1);
    pthread_mutex_lock(&s->mu);
    snprintf(s->last_path, sizeof s->last_path, "%s", path);
    pthread_mutex_unlock(&s->mu);
    if (strncmp(path, "/cert.pem", 9) == 0 && (path[9] == '\0' || path[9] == '?')) {
        atomic_fetch_add(&s->cert_hits, 1);
        if (atomic_load(&s->cert_status) == 200)
            answer(fd, 200, "Content-Type: application/x-x509-ca-cert\r\n", s->pem, strlen(s->pem));
        else
            answer(fd, atomic_load(&s->cert_status), "", "no such key", 11);
    } else if (strcmp(path, "/junk.pem") == 0) {
        answer(fd, 200, "", "<html>hello</html>", 18);
    } else if (strcmp(path, "/big.pem") == 0) {
        size_t len = SNS_CERT_MAX_BYTES + 100;
        char *big = malloc(len);
        memset(big, 'A', len);
        answer(fd, 200, "", big, len);
        free(big);
    } else if (strcmp(path, "/chunked.pem") == 0) { /* over 64 KiB, size not said first */
        const char *head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                           "Connection: close\r\n\r\n";
        char chunk[8192 + 16];
        memset(chunk, 'B', sizeof chunk);
        memcpy(chunk, "2000\r\n", 6);
        memcpy(chunk + 6 + 8192, "\r\n", 2);
        send_all(fd, head, strlen(head));
        for (int i = 0; i < 9; i++)
            send_all(fd, chunk, 6 + 8192 + 2);
        send_all(fd, "0\r\n\r\n", 5);
    } else if (strcmp(path, "/redirect.pem") == 0) {
        answer(fd, 302, "Location: /cert.pem\r\n", "", 0);
    } else if (strncmp(path, "/confirm", 8) == 0) {
        atomic_fetch_add(&s->confirm_hits, 1);
        if (strstr(path, "fail"))
            answer(fd, 500, "", "oops", 4);
        else
            answer(fd, 200, "Content-Type: text/xml\r\n", "<ConfirmSubscriptionResponse/>", 30);
    } else {
        answer(fd, 404, "", "", 0);
    }
}

static void *server_main(void *arg)
{
    struct server *s = arg;

    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        int c;
        if (poll(&p, 1, 50) <= 0)
            continue;
        c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        serve_one(s, c);
        close(c);
    }
    return NULL;
}

static struct server *server_start(const char *pem)
{
    struct server *s = calloc(1, sizeof *s);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;

    /* a proxy from the environment would stand between curl and 127.0.0.1 */
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
    s->pem = pem;
    atomic_store(&s->cert_status, 200);
    pthread_mutex_init(&s->mu, NULL);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(s->fd, 0);
    cr_assert_eq(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(s->fd, 16), 0);
    cr_assert_eq(getsockname(s->fd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&s->thread, NULL, server_main, s), 0);
    return s;
}

static void server_stop(struct server *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    close(s->fd);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* A notification signed by f whose certificate is at http://127.0.0.1:PORT<path>. */
static struct sns_msg local_msg(struct sig_fixture *f, const struct server *s, const char *path,
                                const char *version)
{
    char url[256];
    struct env v = notification;

    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->port, path);
    v.cert_url = url;
    v.version = version;
    return read_signed(f, &v);
}

/* ---- the certificate cache ---------------------------------------------------------- */

UTEST(ses, certificate_fetched_once_and_kept)
{
    struct sig_fixture f;
    struct server *s;
    struct sns_certs *c = NULL;
    struct sns_msg m, bad;
    struct err e = {0};

    fixture_init(&f);
    s = server_start(f.pem);
    cr_assert_eq(sns_certs_new(&c, "^http://127\\.0\\.0\\.1:[0-9]+/cert\\.pem$", &e), 0);
    m = local_msg(&f, s, "/cert.pem", "1");
    cr_assert_eq(sns_certs_verify(c, &m, &e), 0, "%s", e.msg);
    cr_assert_eq(atomic_load(&s->cert_hits), 1);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(sns_certs_verify(c, &m, &e), 0, "%s", e.msg);
    m = local_msg(&f, s, "/cert.pem", "2");
    cr_assert_eq(sns_certs_verify(c, &m, &e), 0, "%s", e.msg);
    cr_assert_eq(atomic_load(&s->cert_hits), 1, "fetched once");
    cr_assert_eq(sns_certs_cached(c), 1);
    bad = m;
    bad.message = "{}";
    cr_assert_eq(sns_certs_verify(c, &bad, &e), E_AUTH, "a tampered message, cert in cache");
    cr_assert_eq(atomic_load(&s->cert_hits), 1);
    /* the pattern refuses another path before a request is made */
    bad = local_msg(&f, s, "/cert.pem.evil", "1");
    memset(&e, 0, sizeof e);
    cr_assert_eq(sns_certs_verify(c, &bad, &e), E_AUTH);
    cr_assert_eq(atomic_load(&s->requests), 1);
    sns_certs_free(c);
    server_stop(s);
    fixture_release(&f);
}

UTEST(ses, failed_fetch_is_e_io_and_not_kept)
{
    struct sig_fixture f;
    struct server *s;
    struct sns_certs *c = NULL;
    struct sns_msg m;
    struct err e = {0};

    fixture_init(&f);
    s = server_start(f.pem);
    cr_assert_eq(sns_certs_new(&c, "^http://127\\.0\\.0\\.1:[0-9]+/cert\\.pem$", &e), 0);
    m = local_msg(&f, s, "/cert.pem", "2");
    atomic_store(&s->cert_status, 404);
    cr_assert_eq(sns_certs_verify(c, &m, &e), E_IO);
    cr_assert_not_null(strstr(e.msg, "404"), "%s", e.msg);
    memset(&e, 0, sizeof e);
    cr_assert_eq(sns_certs_verify(c, &m, &e), E_IO);
    cr_assert_eq(atomic_load(&s->cert_hits), 2, "a failure is not kept: asked again");
    cr_assert_eq(sns_certs_cached(c), 0);
    atomic_store(&s->cert_status, 503);
    cr_assert_eq(sns_certs_verify(c, &m, &e), E_IO);
    atomic_store(&s->cert_status, 200);
    cr_assert_eq(sns_certs_verify(c, &m, &e), 0);
    cr_assert_eq(sns_certs_verify(c, &m, &e), 0);
    cr_assert_eq(atomic_load(&s->cert_hits), 4);
    sns_certs_free(c);
    server_stop(s);
    fixture_release(&f);
}

UTEST(ses, bad_answers_are_e_io)
{
    static const char *const paths[] = {"/junk.pem", "/big.pem", "/chunked.pem", "/redirect.pem",
                                        "/missing.pem"};
    struct sig_fixture f;
    struct server *s;
    struct sns_certs *c = NULL;
    struct sns_msg m;
    struct err e = {0};
    int port;

    fixture_init(&f);
    s = server_start(f.pem);
    cr_assert_eq(sns_certs_new(&c, "^http://127\\.0\\.0\\.1:[0-9]+/[a-z]+\\.pem$", &e), 0);
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        m = local_msg(&f, s, paths[i], "1");
        memset(&e, 0, sizeof e);
        cr_assert_eq(sns_certs_verify(c, &m, &e), E_IO, "%s: %s", paths[i], e.msg);
    }
    cr_assert_eq(atomic_load(&s->cert_hits), 0, "the redirect was not followed");
    cr_assert_eq(sns_certs_cached(c), 0);
    /* nothing listening */
    port = s->port;
    server_stop(s);
    {
        char url[128];
        struct env v = notification;
        snprintf(url, sizeof url, "http://127.0.0.1:%d/cert.pem", port);
        v.cert_url = url;
        m = read_signed(&f, &v);
        memset(&e, 0, sizeof e);
        cr_assert_eq(sns_certs_verify(c, &m, &e), E_IO);
    }
    sns_certs_free(c);
    fixture_release(&f);
}

UTEST(ses, cache_holds_64_oldest_replaced)
{
    struct sig_fixture f;
    struct server *s;
    struct sns_certs *c = NULL;
    struct sns_msg m;
    struct err e = {0};
    char path[32];

    fixture_init(&f);
    s = server_start(f.pem);
    cr_assert_eq(sns_certs_new(&c, "^http://127\\.0\\.0\\.1:[0-9]+/cert\\.pem\\?v=[0-9]+$", &e), 0);
    for (int i = 0; i < SNS_CERT_CACHE_MAX + 6; i++) {
        snprintf(path, sizeof path, "/cert.pem?v=%d", i);
        m = local_msg(&f, s, path, "2");
        cr_assert_eq(sns_certs_verify(c, &m, &e), 0, "%s", e.msg);
    }
    cr_assert_eq(sns_certs_cached(c), SNS_CERT_CACHE_MAX);
    cr_assert_eq(atomic_load(&s->cert_hits), SNS_CERT_CACHE_MAX + 6);
    m = local_msg(&f, s, "/cert.pem?v=69", "2"); /* the newest: kept */
    cr_assert_eq(sns_certs_verify(c, &m, &e), 0);
    m = local_msg(&f, s, "/cert.pem?v=6", "2"); /* the oldest kept */
    cr_assert_eq(sns_certs_verify(c, &m, &e), 0);
    cr_assert_eq(atomic_load(&s->cert_hits), SNS_CERT_CACHE_MAX + 6);
    m = local_msg(&f, s, "/cert.pem?v=0", "2"); /* replaced: fetched again */
    cr_assert_eq(sns_certs_verify(c, &m, &e), 0);
    cr_assert_eq(atomic_load(&s->cert_hits), SNS_CERT_CACHE_MAX + 7);
    cr_assert_eq(sns_certs_cached(c), SNS_CERT_CACHE_MAX);
    sns_certs_free(c);
    server_stop(s);
    fixture_release(&f);
}

struct verifier {
    struct sns_certs *c;
    const struct sns_msg *m;
    int failures;
};

static void *verify_many(void *arg)
{
    struct verifier *v = arg;

    for (int i = 0; i < 50; i++) {
        struct err e = {0};
        if (sns_certs_verify(v->c, v->m, &e) != 0)
            v->failures++;
    }
    return NULL;
}

UTEST(ses, cache_shared_by_threads)
{
    struct sig_fixture f;
    struct server *s;
    struct sns_certs *c = NULL;
    struct sns_msg m;
    struct err e = {0};
    struct verifier v[4];
    pthread_t t[4];

    fixture_init(&f);
    s = server_start(f.pem);
    cr_assert_eq(sns_certs_new(&c, "^http://127\\.0\\.0\\.1:[0-9]+/cert\\.pem$", &e), 0);
    m = local_msg(&f, s, "/cert.pem", "2");
    for (int i = 0; i < 4; i++) {
        v[i] = (struct verifier){c, &m, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, verify_many, &v[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(v[i].failures, 0);
    }
    cr_assert_eq(sns_certs_cached(c), 1);
    cr_assert_leq(atomic_load(&s->cert_hits), 4, "at most one fetch per thread that missed");
    sns_certs_free(c);
    server_stop(s);
    fixture_release(&f);
}

/* ---- confirmation -------------------------------------------------------------------- */

UTEST(ses, confirm_gets_subscribe_url)
{
    struct sig_fixture f;
    struct server *s;
    struct sns_msg m;
    struct err e = {0};
    char url[256], want[256];

    fixture_init(&f);
    s = server_start(f.pem);
    m = read_signed(&f, &confirmation);
    snprintf(url, sizeof url,
             "http://127.0.0.1:%d/confirm?Action=ConfirmSubscription&TopicArn=%s&Token=2336412f37",
             s->port, TOPIC);
    m.subscribe_url = url;
    cr_assert_eq(sns_confirm(&m, &e), 0, "%s", e.msg);
    cr_assert_eq(atomic_load(&s->confirm_hits), 1);
    snprintf(want, sizeof want, "/confirm?Action=ConfirmSubscription&TopicArn=%s&Token=2336412f37",
             TOPIC);
    pthread_mutex_lock(&s->mu);
    cr_assert_str_eq(s->last_path, want);
    pthread_mutex_unlock(&s->mu);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/confirm-fail", s->port);
    cr_assert_eq(sns_confirm(&m, &e), E_IO);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/nothing", s->port);
    cr_assert_eq(sns_confirm(&m, &e), E_IO, "404");
    cr_assert_eq(atomic_load(&s->confirm_hits), 2);
    m.subscribe_url = "file:///etc/passwd";
    cr_assert_eq(sns_confirm(&m, &e), E_INVAL);
    m.subscribe_url = "ftp://127.0.0.1/confirm";
    cr_assert_eq(sns_confirm(&m, &e), E_INVAL);
    m.subscribe_url = NULL;
    cr_assert_eq(sns_confirm(&m, &e), E_INVAL);
    m = read_signed(&f, &notification);
    cr_assert_eq(sns_confirm(&m, &e), E_INVAL, "a Notification has nothing to confirm");
    cr_assert_eq(atomic_load(&s->requests), 3);
    server_stop(s);
    fixture_release(&f);
}

/* ---- SES events ---------------------------------------------------------------------- */

/* JSON written with ' for " (none of these payloads has an apostrophe). */
static const char *q(struct arena *a, const char *s)
{
    char *t = arena_strndup(a, s, strlen(s));
    for (char *p = t; *p; p++)
        if (*p == '\'')
            *p = '"';
    return t;
}

/* mail{} as AWS's examples have it; tags and headers vary. */
#define MAIL(extra)                                                                                \
    "'mail':{'timestamp':'2016-01-27T14:59:38.237Z','source':'john@example.com',"                  \
    "'sourceArn':'arn:aws:ses:us-east-1:888888888888:identity/example.com',"                       \
    "'sendingAccountId':'123456789012','messageId':'00000138111222aa-33322211-cccc-cccc-cccc-"     \
    "ddddaaaa0680-000000','destination':['jane@example.com']," extra "}"
#define TAGS "'tags':{'ses:configuration-set':['cs'],'engage_message_id':['42_9001']}"
#define HEADERS                                                                                    \
    "'headersTruncated':false,'headers':[{'name':'From','value':'John <john@example.com>'},"       \
    "{'name':'message-id','value':'<77.1234.x9Qz@mail.example.com>'}],"                            \
    "'commonHeaders':{'from':['John <john@example.com>'],'messageId':'<77.1234.x9Qz@mail.e>'}"

static struct mev_list parse(struct arena *a, const char *message, size_t want)
{
    struct sns_msg m = {.type = SNS_NOTIFICATION, .message_id = "sns-1", .message = q(a, message)};
    struct mev_list l;
    struct err e = {0};

    mev_list_init(&l, a);
    cr_assert_eq(ses_parse(&m, &l, &e), 0, "%s: %s", message, e.msg);
    cr_assert_eq(l.n, want, "%s: %zu events", message, l.n);
    return l;
}

static int64_t ms(const char *iso)
{
    int64_t t = 0;
    cr_assert_eq(time_parse_iso(iso, strlen(iso), &t), 0);
    return t;
}

static void check_ev(const struct mev *v, enum mev_kind kind, const char *source_id,
                     const char *email, const char *when, const char *reason)
{
    cr_assert_eq(v->kind, kind, "kind %s, want %s", mev_kind_name(v->kind), mev_kind_name(kind));
    cr_assert_str_eq(v->source_id, source_id);
    if (email)
        cr_assert_str_eq(v->email, email);
    else
        cr_assert_null(v->email);
    cr_assert_eq(v->at_ms, ms(when), "at %lld, want %s", (long long)v->at_ms, when);
    if (reason)
        cr_assert_str_eq(v->reason, reason);
    else
        cr_assert_null(v->reason);
    cr_assert_str_eq(v->queue_id, "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000");
}

UTEST(ses, bounce_permanent_two_recipients)
{
    struct arena a;
    struct mev_list l;

    arena_init(&a);
    l = parse(&a,
              "{'notificationType':'Bounce','bounce':{'bounceType':'Permanent',"
              "'reportingMTA':'dns; email.example.com','bouncedRecipients':["
              "{'emailAddress':'jane@example.com','status':'5.1.1','action':'failed',"
              "'diagnosticCode':'smtp; 550 5.1.1 <jane@example.com>... User'},"
              "{'emailAddress':'richard@example.com','status':'5.1.1','action':'failed',"
              "'diagnosticCode':'smtp; 550 5.1.1 <richard@example.com>... User'}],"
              "'bounceSubType':'General','timestamp':'2016-01-27T14:59:44.101Z',"
              "'feedbackId':'00000138111222aa-44455566-cccc-cccc-cccc-ddddaaaa068a-000000',"
              "'remoteMtaIp':'127.0.2.0'}," MAIL(TAGS) "}",
              2);
    check_ev(&l.v[0], MEV_BOUNCED_HARD, "sns-1/0", "jane@example.com", "2016-01-27T14:59:44.101Z",
             "5.1.1 smtp; 550 5.1.1 <jane@example.com>... User");
    check_ev(&l.v[1], MEV_BOUNCED_HARD, "sns-1/1", "richard@example.com",
             "2016-01-27T14:59:44.101Z", "5.1.1 smtp; 550 5.1.1 <richard@example.com>... User");
    cr_assert_str_eq(l.v[0].message_id, "42.9001", "from the tag, '_' for '.'");
    cr_assert_str_eq(l.v[1].message_id, "42.9001");
    arena_release(&a);
}

UTEST(ses, bounce_transient)
{
    struct arena a;
    struct mev_list l;

    arena_init(&a);
    /* 5.4.4 (no route to the domain): hard, even though SES says Transient */
    l = parse(&a,
              "{'eventType':'Bounce','bounce':{'bounceType':'Transient','bounceSubType':'General',"
              "'bouncedRecipients':[{'emailAddress':'jane@example.com','status':'5.4.4',"
              "'action':'failed','diagnosticCode':'smtp; 550 5.4.4 no route'}],"
              "'timestamp':'2017-08-05T00:41:02.669Z'}," MAIL(HEADERS) "}",
              1);
    check_ev(&l.v[0], MEV_BOUNCED_HARD, "sns-1", "jane@example.com", "2017-08-05T00:41:02.669Z",
             "5.4.4 smtp; 550 5.4.4 no route");
    cr_assert_str_eq(l.v[0].message_id, "77.1234", "the Message-ID header, any case of name");
    /* mailbox full: soft */
    l = parse(&a,
              "{'notificationType':'Bounce','bounce':{'bounceType':'Transient',"
              "'bounceSubType':'MailboxFull','bouncedRecipients':[{'emailAddress':"
              "'jane@example.com','status':'4.2.2','diagnosticCode':'smtp; 452 4.2.2 full'}],"
              "'timestamp':'2016-01-27T14:59:44.101Z'}," MAIL("'headers':[]") "}",
              1);
    check_ev(&l.v[0], MEV_BOUNCED_SOFT, "sns-1", "jane@example.com", "2016-01-27T14:59:44.101Z",
             "4.2.2 smtp; 452 4.2.2 full");
    cr_assert_null(l.v[0].message_id);
    /* Undetermined, no status or code: soft, the bounce type as the reason */
    l = parse(&a,
              "{'notificationType':'Bounce','bounce':{'bounceType':'Undetermined',"
              "'bounceSubType':'Undetermined','bouncedRecipients':[{'emailAddress':"
              "'jane@example.com'}]}," MAIL("'tags':{'engage_message_id':['nope']},"
                                            "'commonHeaders':{'messageId':'<5.6.abc@x>'}") "}",
              1);
    check_ev(&l.v[0], MEV_BOUNCED_SOFT, "sns-1", "jane@example.com", "2016-01-27T14:59:38.237Z",
             "Undetermined Undetermined");
    cr_assert_str_eq(l.v[0].message_id, "5.6", "commonHeaders when the tag is not ours");
    arena_release(&a);
}

UTEST(ses, complaint_delivery_delay)
{
    struct arena a;
    struct mev_list l;

    arena_init(&a);
    l = parse(&a,
              "{'notificationType':'Complaint','complaint':{'userAgent':'AnyCompany Feedback Loop "
              "(V0.01)','complainedRecipients':[{'emailAddress':'richard@example.com'}],"
              "'complaintFeedbackType':'abuse','arrivalDate':'2016-01-27T14:59:38.237Z',"
              "'timestamp':'2016-01-27T14:59:38.237Z','feedbackId':'0000013786031775-fea503bc-"
              "7497-49e1-881b-a0379bb037d3-000000'}," MAIL(TAGS) "}",
              1);
    check_ev(&l.v[0], MEV_COMPLAINED, "sns-1", "richard@example.com", "2016-01-27T14:59:38.237Z",
             NULL);
    cr_assert_str_eq(l.v[0].message_id, "42.9001");
    l = parse(
        &a,
        "{'notificationType':'Delivery'," MAIL(
            TAGS) ",'delivery':{'timestamp':"
                  "'2016-01-27T14:59:38.237Z','recipients':['jane@example.com','mary@example.com'],"
                  "'processingTimeMillis':546,'reportingMTA':'a8-70.smtp-out.amazonses.com',"
                  "'smtpResponse':'250 ok:  Message 64111812 accepted','remoteMtaIp':'127.0.2.0'}}",
        2);
    check_ev(&l.v[0], MEV_DELIVERED, "sns-1/0", "jane@example.com", "2016-01-27T14:59:38.237Z",
             NULL);
    check_ev(&l.v[1], MEV_DELIVERED, "sns-1/1", "mary@example.com", "2016-01-27T14:59:38.237Z",
             NULL);
    l = parse(
        &a,
        "{'eventType':'DeliveryDelay'," MAIL(
            TAGS) ",'deliveryDelay':{'timestamp':"
                  "'2020-06-16T00:15:40.641Z','delayType':'TransientCommunicationFailure',"
                  "'expirationTime':'2020-06-16T00:25:40.914Z','delayedRecipients':[{'emailAddress'"
                  ":"
                  "'jane@example.com','status':'4.4.1','diagnosticCode':'smtp; 421 4.4.1 Unable to "
                  "connect to remote host'}]}}",
        1);
    check_ev(&l.v[0], MEV_DEFERRED, "sns-1", "jane@example.com", "2020-06-16T00:15:40.641Z",
             "4.4.1 smtp; 421 4.4.1 Unable to connect to remote host");
    l = parse(&a,
              "{'eventType':'DeliveryDelay'," MAIL(
                  TAGS) ",'deliveryDelay':{'delayType':"
                        "'MailboxFull','delayedRecipients':[{'emailAddress':'jane@example.com'}]}}",
              1);
    check_ev(&l.v[0], MEV_DEFERRED, "sns-1", "jane@example.com", "2016-01-27T14:59:38.237Z",
             "MailboxFull");
    arena_release(&a);
}

UTEST(ses, open_click_reject)
{
    struct arena a;
    struct mev_list l;

    arena_init(&a);
    l = parse(&a,
              "{'eventType':'Open'," MAIL(
                  TAGS) ",'open':{'ipAddress':'192.0.2.1','timestamp':"
                        "'2017-08-09T22:00:19.652Z','userAgent':'Mozilla/5.0 (iPhone; CPU iPhone "
                        "OS 10_3_3 "
                        "like Mac OS X) AppleWebKit/603.3.8 (KHTML, like Gecko) Mobile/14G60'}}",
              1);
    check_ev(&l.v[0], MEV_OPENED, "sns-1", "jane@example.com", "2017-08-09T22:00:19.652Z", NULL);
    cr_assert_str_eq(l.v[0].user_agent, "Mozilla/5.0 (iPhone; CPU iPhone OS 10_3_3 like Mac OS X) "
                                        "AppleWebKit/603.3.8 (KHTML, like Gecko) Mobile/14G60");
    cr_assert_null(l.v[0].url);
    cr_assert_str_eq(l.v[0].message_id, "42.9001");
    l = parse(&a,
              "{'eventType':'Click','click':{'ipAddress':'192.0.2.1','link':"
              "'http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html',"
              "'linkTags':{'samplekey0':['samplevalue0']},'timestamp':'2017-08-09T23:51:25.570Z',"
              "'userAgent':'Mozilla/5.0 (Windows NT 10.0; Win64; x64)'}," MAIL(TAGS) "}",
              1);
    check_ev(&l.v[0], MEV_CLICKED, "sns-1", "jane@example.com", "2017-08-09T23:51:25.570Z", NULL);
    cr_assert_str_eq(l.v[0].url,
                     "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html");
    cr_assert_str_eq(l.v[0].user_agent, "Mozilla/5.0 (Windows NT 10.0; Win64; x64)");
    l = parse(&a, "{'eventType':'Reject'," MAIL(TAGS) ",'reject':{'reason':'Bad content'}}", 1);
    check_ev(&l.v[0], MEV_DROPPED, "sns-1", "jane@example.com", "2016-01-27T14:59:38.237Z",
             "Bad content");
    arena_release(&a);
}

UTEST(ses, skipped_types)
{
    static const char *const skipped[] = {
        "{'eventType':'Send'," MAIL(TAGS) ",'send':{}}",
        "{'eventType':'Rendering Failure'," MAIL(TAGS) ",'failure':{'errorMessage':'Attribute "
                                                       "missing','templateName':'MyTemplate'}}",
        "{'eventType':'Subscription'," MAIL(
            TAGS) ",'subscription':{'contactList':'L',"
                  "'timestamp':'2022-01-12T01:00:14.340Z','source':'UnsubscribeHeader'}}",
        "{'notificationType':'AmazonSnsSubscriptionSucceeded','message':'You have successfully "
        "subscribed your Amazon SNS topic to receive Bounce notifications from Amazon SES.'}",
        "{'eventType':'SomethingNew'}",
    };
    struct arena a;

    arena_init(&a);
    for (size_t i = 0; i < sizeof skipped / sizeof *skipped; i++)
        parse(&a, skipped[i], 0);
    arena_release(&a);
}

UTEST(ses, odd_values_are_absent_not_errors)
{
    struct arena a;
    struct mev_list l;

    arena_init(&a);
    /* a timestamp that is not one; tags not an array; a recipient without an address;
     * several destinations (an open cannot tell whose) */
    l = parse(&a,
              "{'eventType':'Open','open':{'timestamp':'yesterday','userAgent':7},"
              "'mail':{'timestamp':'2016-01-27T14:59:38Z','messageId':'q','destination':['a@x',"
              "'b@x'],'tags':{'engage_message_id':'42_9001'}}}",
              1);
    cr_assert_eq(l.v[0].at_ms, ms("2016-01-27T14:59:38Z"));
    cr_assert_null(l.v[0].email);
    cr_assert_null(l.v[0].user_agent);
    cr_assert_str_eq(l.v[0].message_id, "42.9001");
    l = parse(&a,
              "{'eventType':'Bounce','bounce':{'bounceType':'Permanent','bouncedRecipients':"
              "[{},'c@x',3]},'mail':{}}",
              3);
    cr_assert_null(l.v[0].email);
    cr_assert_str_eq(l.v[1].email, "c@x");
    cr_assert_str_eq(l.v[2].source_id, "sns-1/2");
    cr_assert_eq(l.v[0].at_ms, 0);
    cr_assert_null(l.v[0].queue_id);
    l = parse(&a, "{'eventType':'Delivery','delivery':{'recipients':{}},'mail':{}}", 0);
    arena_release(&a);
}

UTEST(ses, malformed_is_e_inval)
{
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "{}",
        "{'eventType':3}",
        "{'eventType':'Bounce'}",
        "{'eventType':'Bounce','mail':{}}",
        "{'eventType':'Bounce','mail':{},'bounce':[]}",
        "{'notificationType':'Delivery','delivery':{'recipients':[]},'mail':'x'}",
        "{'eventType':'Open','open':null,'mail':{}}",
    };
    struct arena a;
    struct mev_list l;
    struct err e;

    arena_init(&a);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct sns_msg m = {.type = SNS_NOTIFICATION, .message_id = "x", .message = q(&a, bad[i])};
        mev_list_init(&l, &a);
        memset(&e, 0, sizeof e);
        cr_assert_eq(ses_parse(&m, &l, &e), E_INVAL, "%s", bad[i]);
        cr_assert_neq(e.msg[0], 0);
        cr_assert_eq(l.n, 0);
    }
    {
        struct sns_msg m = {.type = SNS_SUBSCRIPTION_CONFIRMATION, .message = "You have chosen"};
        cr_assert_eq(ses_parse(&m, &l, &e), E_INVAL, "a confirmation carries no SES event");
    }
    arena_release(&a);
}

/* The whole way: a signed envelope read, verified, and its Message parsed. */
UTEST(ses, envelope_to_events)
{
    struct sig_fixture f;
    struct sns_msg m;
    struct mev_list l;
    struct err e = {0};

    fixture_init(&f);
    m = read_signed(&f, &notification);
    cr_assert_eq(verify(&f, &m), 0);
    mev_list_init(&l, &f.a);
    cr_assert_eq(ses_parse(&m, &l, &e), 0, "%s", e.msg);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(l.v[0].kind, MEV_BOUNCED_HARD);
    cr_assert_str_eq(l.v[0].source_id, notification.message_id);
    cr_assert_str_eq(l.v[0].message_id, "42.9001");
    cr_assert_str_eq(l.v[0].queue_id, "0000014-ses");
    cr_assert_str_eq(l.v[0].email, "jane@example.com");
    cr_assert_str_eq(l.v[0].reason, "5.1.1");
    cr_assert_eq(l.v[0].at_ms, ms("2016-01-27T14:59:44.101Z"));
    fixture_release(&f);
}
