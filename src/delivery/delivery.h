/* delivery/delivery.h -- what happens to a message after the provider took it: provider
 * webhooks and our own open/click tracking, read into one model of message events.
 * docs/webhooks.md says what users configure; this header what the code promises.
 *
 * DESIGN: every source (a provider's webhook body, a pixel or click hit) is turned into
 * a list of struct mev, one normalised message event each. The parsers are pure: bytes
 * in, events out, every string in the caller's arena; they never touch the store.
 * Verification (signatures, credentials, timestamps) is separate from parsing, so the
 * HTTP route verifies first, stores the raw body, answers, and the inbox worker parses
 * it later (a body that verified once is not verified again). */
#ifndef ENGAGE_DELIVERY_H
#define ENGAGE_DELIVERY_H

#include <stddef.h>
#include <stdint.h>

#include "../campaign/campaign.h"
#include "../core/core.h"

/* ---- the message-event model: enum mev_kind and struct mev are campaign.h's ------------ */

/* Bounds on what one event may carry: longer strings are cut (at a UTF-8 boundary). */
#define MEV_MAX_ID 255 /* source_id, message_id, queue_id */
#define MEV_MAX_EMAIL 320
#define MEV_MAX_REASON 1024
#define MEV_MAX_URL 2048
#define MEV_MAX_AGENT 512
/* Events in one webhook body at most; a body with more is refused (E_TOOBIG). */
#define MEV_MAX_PER_BODY 10000

/* A growing list of events; items and strings in arena a. */
struct mev_list {
    struct mev *v;
    size_t n, cap;
    struct arena *a;
};
void mev_list_init(struct mev_list *l, struct arena *a);
/* A new zeroed event at the end of l (E_TOOBIG past MEV_MAX_PER_BODY: NULL then). */
struct mev *mev_list_add(struct mev_list *l);
/* s[0..n) cut to max bytes at a UTF-8 boundary, copied into the arena; NULL for NULL. */
const char *mev_strdup(struct arena *a, const char *s, size_t n, size_t max);
/* Our message id found in s: "RUN.CONTACT" or "RUN_CONTACT" (SES tags cannot hold a dot)
 * as the whole of s, or at the start of a Message-ID ("<RUN.CONTACT.XXXX@domain>", angle
 * brackets optional). Writes "RUN.CONTACT" into out and returns 0, or E_INVAL. */
int mev_message_id(const char *s, char out[48]);

/* 1 when ENGAGE_TEST_HOLD_APPLY is set: the tracking journal and the webhook inbox keep
 * what arrives and apply nothing (tests/e2e/engagement_crash.test.mjs kills a server
 * with work kept and not applied; docs/testing.md). */
int delivery_hold_apply(void);

/* ---- provider formats (parse: body -> events; verify: is it from the provider) ----------- */

/* Every parser: the raw body in, events appended to out. E_INVAL (e says what and where,
 * a sentence a webhook sender can act on) for a body that is not the provider's format;
 * events of a type the model has no kind for (SendGrid "processed", Mailgun "accepted")
 * are skipped, not errors. A parser never fails on a string's content: an unexpected
 * value type for an optional field is treated as absent. */

/* SendGrid Event Webhook: a JSON array of events. sg_event_id is the source_id;
 * engage_message_id (a unique arg, a top-level key) the message id, else smtp-id's
 * Message-ID; sg_message_id up to its first '.' the queue id. Kinds: delivered,
 * deferred, dropped, bounce (type "blocked" or bounce_classification technical/content:
 * soft; else hard), spamreport -> complained, unsubscribe and group_unsubscribe ->
 * unsubscribed, open (sg_machine_open), click (url). */
int sendgrid_parse(const char *body, size_t len, struct mev_list *out, struct err *e);
/* key: SubjectPublicKeyInfo, DER (the dashboard's base64 decoded by the caller). NULL and
 * E_INVAL (e says why) when it is not an EC P-256 public key. */
void *sendgrid_key_load(const unsigned char *der, size_t len, struct err *e);
void sendgrid_key_free(void *key); /* NULL-safe */
/* ECDSA P-256 / SHA-256 over timestamp || body; sig_b64 the
 * X-Twilio-Email-Event-Webhook-Signature header (base64 DER). 0 when it verifies, else
 * E_AUTH (e says why: missing, malformed, does not verify). */
int sendgrid_verify(const void *key, const char *timestamp, const char *sig_b64, const char *body,
                    size_t len, struct err *e);

/* Mailgun: {"signature":{timestamp,token,signature},"event-data":{...}}. source_id is the
 * signature token (event-data.id is unique only within a day); message id from
 * event-data.user-variables.engage_message_id, else message.headers.message-id.
 * Kinds: delivered; failed with severity permanent -> bounced_hard (or dropped when
 * reason is "suppress-bounce", "suppress-unsubscribe", "suppress-complaint"),
 * temporary -> deferred; opened; clicked; unsubscribed; complained. */
int mailgun_parse(const char *body, size_t len, struct mev_list *out, struct err *e);
/* Checks signature.signature == hex(HMAC-SHA256(key, timestamp || token)) in constant
 * time and that the timestamp is within max_age_s of now_ms (either way: a clock ahead
 * too). 0, with the token copied to token_out (for the caller's replay check); E_AUTH
 * for a bad or missing signature; E_FORBIDDEN for a timestamp out of the window. */
#define MAILGUN_TOKEN_MAX 256
int mailgun_verify(const unsigned char *key, size_t keylen, const char *body, size_t len,
                   int64_t now_ms, int max_age_s, char token_out[MAILGUN_TOKEN_MAX], struct err *e);

/* Postmark: one JSON object per POST with RecordType Delivery, Bounce, SpamComplaint,
 * Open, Click, SubscriptionChange. source_id: RecordType + ":" + ID for bounces (ID is
 * the bounce's id), else RecordType + ":" + MessageID + ":" + the event's time (Postmark
 * gives no event id; two opens of one message differ in ReceivedAt). Message id from
 * Metadata.engage_message_id; queue id MessageID. Bounce Type HardBounce,
 * BadEmailAddress, ManuallyDeactivated -> bounced_hard; SpamComplaint -> complained;
 * SoftBounce, Transient, DnsError, ... -> bounced_soft; SubscriptionChange with
 * SuppressSending true -> unsubscribed. */
int postmark_parse(const char *body, size_t len, struct mev_list *out, struct err *e);
/* The Authorization header against user and password: "Basic base64(user:pass)",
 * compared in constant time (lengths too leak nothing beyond "differs"). 0 or E_AUTH. */
int postmark_verify(const char *authorization, const char *user, const char *password,
                    struct err *e);

/* Generic: {"events":[{"id","type","message_id","email"?,"timestamp","reason"?,"url"?,
 * "user_agent"?}]}; type one of the kind names; timestamp Unix seconds (number) or an
 * ISO-8601 string. id and type and message_id are required (E_INVAL naming the event's
 * index and field). */
int generic_parse(const char *body, size_t len, struct mev_list *out, struct err *e);
/* X-Engage-Timestamp (Unix seconds) within max_age_s of now_ms, and X-Engage-Signature
 * "v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>" (several comma-separated v1=
 * values accepted, for secret rotation: one must match), constant time. 0, E_AUTH or
 * E_FORBIDDEN (timestamp missing or out of the window). */
int generic_verify(const unsigned char *secret, size_t secretlen, const char *timestamp,
                   const char *signature, const char *body, size_t len, int64_t now_ms,
                   int max_age_s, struct err *e);

/* Amazon SES through SNS. The SNS envelope is read first (sns_read), verified
 * (sns_verify, with a certificate from the cache), then a Notification's Message is
 * parsed (ses_parse). */
enum sns_type { SNS_NOTIFICATION = 1, SNS_SUBSCRIPTION_CONFIRMATION, SNS_UNSUBSCRIBE_CONFIRMATION };
struct sns_msg {
    enum sns_type type;
    const char *message_id, *topic_arn, *subject, *message, *timestamp;
    const char *signature_version, *signature, *signing_cert_url;
    const char *subscribe_url, *token; /* confirmations */
};
/* The envelope (any Content-Type: SNS sends text/plain), strings in arena a. E_INVAL
 * when it is not one (missing Type, MessageId, TopicArn, Message, Timestamp,
 * SignatureVersion, Signature or SigningCertURL; SubscribeURL and Token on
 * confirmations). */
int sns_read(const char *body, size_t len, struct arena *a, struct sns_msg *out, struct err *e);
/* The string SNS signs (docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-
 * message.html) appended to out. */
void sns_string_to_sign(const struct sns_msg *m, struct buf *out);
/* The signature against the PEM certificate cert_pem: version "1" SHA1withRSA, "2"
 * SHA256withRSA. 0 or E_AUTH (e says why). */
int sns_verify(const struct sns_msg *m, const char *cert_pem, size_t cert_len, struct err *e);
/* Certificates fetched over HTTPS (libcurl) only from a URL matching pattern (a PCRE2
 * regex, anchored by the pattern itself), kept in memory by URL; thread-safe. */
/* The SNS hosts of every region (sns.us-east-1..., sns.cn-north-1....com.cn), and not
 * S3's virtual hosts (sns.s3.amazonaws.com would let whoever owns a bucket "sns" sign). */
#define SNS_CERT_PATTERN_DEFAULT                                                                   \
    "^https://sns\\.[a-z]{2}(-[a-z]+)+-[0-9]+\\.amazonaws\\.com(\\.cn)?/"                          \
    "SimpleNotificationService-[a-f0-9]+\\.pem$"
struct sns_certs;
/* E_INVAL when pattern does not compile. */
int sns_certs_new(struct sns_certs **out, const char *pattern, struct err *e);
void sns_certs_free(struct sns_certs *c); /* NULL-safe */
/* Verifies m: the certificate of m->signing_cert_url (E_AUTH if the URL does not match
 * the pattern; fetched once, at most 64 KiB, 10 s; E_IO when it cannot be fetched: the
 * route answers 503 so SNS retries), then sns_verify. */
int sns_certs_verify(struct sns_certs *c, const struct sns_msg *m, struct err *e);
/* GETs a confirmation's SubscribeURL (at most 10 s): 0 on a 2xx, else E_IO. */
int sns_confirm(const struct sns_msg *m, struct err *e);
/* The SES event in a Notification's Message (notificationType or eventType): Bounce
 * (Permanent -> bounced_hard; Transient with a 5.4.4 status -> bounced_hard; other
 * Transient and Undetermined -> bounced_soft; one event per bounced recipient),
 * Complaint (one per recipient), Delivery (one per recipient), Open, Click, Reject
 * (dropped), DeliveryDelay (deferred), Send / Rendering Failure skipped. source_id: the
 * SNS MessageId, with "/" and the recipient's index when there are several. Message id
 * from mail.tags.engage_message_id[0] (with '_' for '.'), else the Message-ID header in
 * mail.headers / commonHeaders.messageId; queue id mail.messageId. */
int ses_parse(const struct sns_msg *m, struct mev_list *out, struct err *e);

/* ---- our own tracking (tracker.c) -------------------------------------------------------- */

/* The open pixel, the click redirect and the one-click unsubscribe: each verified on the
 * caller's thread (a forged, altered or other-kind token is E_NOTFOUND and writes
 * nothing), then stored by one writer thread in group commits; a call returns once its
 * hit is committed. Registers engage_tracking_* metrics in m. */
struct tracker;
struct worker_set;
struct metrics;
struct store;
int tracker_start(struct tracker **out, struct worker_set *ws, const struct send_env *env,
                  struct metrics *m, struct err *e);
void tracker_stop(struct tracker *t); /* NULL-safe */
/* An open of the message token names ('o'); user_agent may be NULL (a machine open when
 * it is Apple's proxy's, "Mozilla/5.0"). 0 once stored. */
int tracker_open(struct tracker *t, const char *token, const char *user_agent, struct err *e);
/* A click ('c' token): url is the link of that index in the message its run rendered,
 * for the contact (never a URL from the request). 0 with url set, *recorded saying
 * whether the click was stored (the recipient is redirected either way); E_NOTFOUND for
 * a bad token or a link that is not there (or not http(s)). store(ctx) gives a
 * connection of the caller's, asked for only when the run's template is not cached or
 * the link needs the contact's values. */
int tracker_click(struct tracker *t, struct store *(*store)(void *ctx), void *ctx,
                  const char *token, const char *user_agent, struct buf *url, int *recorded,
                  struct err *e);
/* Bytes of the tracking journal not yet applied (0: every hit answered is counted). */
int64_t tracker_pending_bytes(struct tracker *t);
/* The unsubscribe link ('u'): with apply, the message's unsubscribed event and the consent
 * change are stored first (a contact already opted out stays as it is); then *v is the
 * page's view. E_NOTFOUND for a bad token or a contact that is gone. */
int tracker_unsubscribe(struct tracker *t, struct store *st, const char *token, int apply,
                        struct unsubscribe_view *v, struct err *e);

/* ---- conversions (conversions.c) ---------------------------------------------------------- */

/* The worker that follows contact events and counts a campaign's conversion goal
 * (campaign.h: "conversion"): docs/analytics.md, "Conversions". Events from its first
 * start on. */
struct conversions;
int conversions_start(struct conversions **out, struct worker_set *ws, const struct send_env *env,
                      struct err *e);
void conversions_stop(struct conversions *v); /* NULL-safe */
/* Look now (events were stored). */
void conversions_wake(struct conversions *v);

/* ---- provider webhooks (webhooks.c) ------------------------------------------------------ */

/* The [webhook:NAME] sections, served at POST /webhooks/NAME: each request verified by
 * its type's rule, then its raw body stored in the inbox (a 2xx means stored), then
 * parsed and applied by the inbox worker (store.h promise 3), so a crash between the two
 * loses nothing. docs/webhooks.md. */
struct webhooks;
/* E_INVAL (naming the section) for an unknown type, or a section without what its type
 * verifies with (unless insecure = true: then a warning, at every start). Registers
 * engage_webhook_* metrics in m. */
int webhooks_start(struct webhooks **out, struct worker_set *ws, const struct send_env *env,
                   struct metrics *m, struct err *e);
void webhooks_stop(struct webhooks *w); /* NULL-safe */

struct webhook_request {
    const char *name; /* the route's {name} */
    const char *body;
    size_t len;
    /* a request header's value (case-insensitive name), or NULL */
    const char *(*header)(void *ctx, const char *name);
    void *ctx;
};
struct webhook_answer {
    int status;       /* 200, or the error's status */
    const char *code; /* the JSON error's code when status is not 200 */
    char msg[300];
    int64_t id;     /* the inbox row (200) */
    int64_t events; /* events in the body, as checked on arrival */
};
/* Verifies, checks and stores one request, on the caller's connection st. A body that
 * verified but is not the provider's format is kept (failed, for an operator) and
 * answered 400. */
void webhooks_receive(struct webhooks *w, struct store *st, const struct webhook_request *rq,
                      struct webhook_answer *out);
/* Pending bodies, the oldest one's age in ms, failed bodies, unknown-message events. */
struct webhooks_stats {
    int64_t pending, oldest_ms, failed;
};

#endif
