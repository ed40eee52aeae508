/* provider/provider.h -- where a message goes: the [provider:NAME] sections.
 *
 * DESIGN: a provider is a small interface (struct provider_ops): open a connection,
 * send one whole message to one recipient, close. Sending classifies the answer
 * itself into sent, retry or failed (struct provider_result), so the dispatcher
 * never knows what SMTP, an HTTP API or a WhatsApp gateway say; a new provider
 * type is a new ops table and one row in provider.c, nothing else. Types today:
 *
 *   smtp    libcurl opens the connections: smtp:// (STARTTLS when offered, or
 *           insisted on with starttls = required) or smtps:// (implicit TLS), AUTH;
 *           the mail on them is pipelined (RFC 2920) by smtp.c itself. A struct
 *           provider_conn holds several, kept open and reused across messages.
 *   outbox  each message written whole as DIR/<message id>.eml (written to a
 *           temporary name, then renamed: a reader never sees half a file).
 *
 * A struct provider_set is built once from the configuration (with no [provider:...]
 * section it holds one provider named "outbox" of type outbox in DATA/outbox/); it
 * is immutable, so any thread may read it. A struct provider_conn is used by one
 * thread at a time. docs/campaigns.md, "Providers", says all of this for operators. */
#ifndef ENGAGE_PROVIDER_H
#define ENGAGE_PROVIDER_H

#include <stddef.h>

#include "../core/config.h"
#include "../core/core.h"

/* Which ESP is behind an SMTP relay: decides the headers that carry our message id
 * back to us in its webhooks (provider_id_headers). */
enum provider_esp { ESP_PLAIN, ESP_SENDGRID, ESP_MAILGUN, ESP_POSTMARK, ESP_SES };

enum provider_outcome {
    PROVIDER_SENT = 1, /* accepted (SMTP 250; the file is in the outbox); not 0, so a
                        * result never filled in is never taken for sent */
    PROVIDER_RETRY,    /* temporary: 4xx, a timeout, a dropped or refused connection */
    PROVIDER_FAILED    /* permanent: 5xx, or a message the provider can never take */
};

struct provider_result {
    enum provider_outcome outcome;
    int code;           /* the SMTP reply code (250, 451, 550...), 0 when there was none */
    char status[16];    /* the enhanced status code ("5.1.1"), "" when none */
    int hard_bounce;    /* failed with 5.1.x: the address does not exist (consent bounced) */
    char text[256];     /* the reply's text or the error, for last_error (no secrets) */
    char queue_id[128]; /* the provider's id of the accepted message, "" when not given */
};

/* One message as it goes out: the envelope and the whole RFC 5322 text (CRLF lines). */
struct provider_message {
    const char *mail_from; /* envelope sender: a bare address */
    const char *rcpt_to;   /* envelope recipient: a bare address */
    const char *data;
    size_t len;
    const char *message_id; /* ours ("RUN.CONTACT"; the outbox names its file by it) */
};

struct provider;
struct provider_conn;

struct provider_ops {
    const char *type;
    /* Checks the section (every problem a sentence naming the key) and prepares what
     * every connection shares. */
    int (*init)(struct provider *p, const struct config_named *c, const struct config *cfg,
                struct err *e);
    void (*fini)(struct provider *p);
    /* A connection for one thread, holding up to connections of the provider's own (at
     * least 1; a type caps it at connections_max). */
    int (*open)(const struct provider *p, size_t connections, struct provider_conn **out,
                struct err *e);
    /* Sends m and says what came of it in *r (never fails otherwise). The connection
     * stays usable whatever happened: a type whose connection was lost opens it again
     * itself, so the caller never closes and reopens it after a failure. */
    void (*send)(struct provider_conn *c, const struct provider_message *m,
                 struct provider_result *r);
    void (*close)(struct provider_conn *c);
    /* Optional: sends m[0..n) at once (n <= provider_batch_max), spread over c's
     * connections, and says what came of each in r[i]: a type whose sending waits on
     * the network drives many messages from one thread this way, with no thread switch
     * per reply. */
    void (*send_batch)(struct provider_conn *c, const struct provider_message *m, size_t n,
                       struct provider_result *r);
    size_t per_connection;  /* messages one connection takes in one send_batch */
    size_t connections_max; /* connections one provider_conn holds at most; 0: 1 */
};

struct provider {
    char name[64];
    const struct provider_ops *ops;
    enum provider_esp esp;
    int rate_per_second;  /* cap of this provider across every run; 0: none */
    int max_connections;  /* connections a dispatcher opens to it */
    char from[256];       /* default From ("Name <addr>" or addr) when a template has none */
    int needs_public_url; /* links must reach the recipient: refused while public_url is "" */
    void *impl;           /* the type's own state */
};

struct provider_set;
/* Builds every [provider:NAME] of cfg (or the default outbox). E_INVAL naming the section
 * and key of the first problem (an unknown type, a bad url, a missing dir...). */
int provider_set_new(struct provider_set **out, const struct config *cfg, struct err *e);
void provider_set_free(struct provider_set *s); /* NULL-safe */
/* The provider named name, or with name NULL or "" the default one (the first section,
 * or the built-in outbox). NULL if there is none of that name. */
const struct provider *provider_find(const struct provider_set *s, const char *name);
size_t provider_count(const struct provider_set *s);
const struct provider *provider_at(const struct provider_set *s, size_t i);

/* A connection of p for one thread, with up to connections of p's own (the dispatcher
 * spreads max_connections over its threads this way). */
int provider_open(const struct provider *p, size_t connections, struct provider_conn **out,
                  struct err *e);
void provider_send(struct provider_conn *c, const struct provider_message *m,
                   struct provider_result *r);
void provider_close(struct provider_conn *c); /* NULL-safe */
/* How many connections one provider_conn of p holds at most (1 for most types). */
size_t provider_connections_max(const struct provider *p);
/* How many messages one provider_send_batch takes over a provider_conn opened with
 * connections (1 for a type without send_batch). */
size_t provider_batch_max(const struct provider *p, size_t connections);
/* Sends m[0..n) (n <= provider_batch_max) over c at once, or one after the other for a
 * type without send_batch; r[i] says what came of m[i]. */
void provider_send_batch(struct provider_conn *c, const struct provider_message *m, size_t n,
                         struct provider_result *r);

/* "plain", "sendgrid"...; provider_esp_parse: 0 or E_INVAL. */
const char *provider_esp_name(enum provider_esp esp);
int provider_esp_parse(const char *s, enum provider_esp *out);
/* Calls add(ctx, name, value) for each header that carries message_id where p's ESP
 * echoes it back in webhooks, always under the name engage_message_id: X-SMTPAPI
 * unique_args (sendgrid), X-Mailgun-Variables (mailgun), X-PM-Metadata-engage_message_id
 * (postmark), X-SES-MESSAGE-TAGS (ses, with '.' written '_': SES tag values allow no
 * dot); and X-Engage-Message-Id whatever the ESP. */
void provider_id_headers(const struct provider *p, const char *message_id,
                         void (*add)(void *ctx, const char *name, const char *value), void *ctx);

/* Classifies an SMTP reply (code and its text, which may start with an enhanced status
 * code) into r: 2xx sent; 4xx retry; 5xx failed, hard_bounce for 5.1.x; anything else
 * (code 0: no reply) retry. Exposed for the tests and for other SMTP-speaking types. */
void provider_classify_smtp(int code, const char *text, struct provider_result *r);

#endif
