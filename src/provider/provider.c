/* provider/provider.c -- the set of providers, dispatch through their ops, the ESP id
 * headers and the classification of SMTP replies (provider.h).
 *
 * DESIGN: the types are a table (types[]): a section's type picks its row, and the
 * row's ops do the rest, so adding a type touches this file in one line. The set is
 * built once and never changes, so threads share it without a lock. Classification
 * lives here, not in smtp.c, because any SMTP-speaking type (an HTTP ESP that returns
 * SMTP codes, a second relay library) must classify the same way. */
#include "provider.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "provider_int.h"

static const struct provider_ops *const types[] = {&provider_smtp_ops, &provider_outbox_ops};

struct provider_set {
    struct provider *p;
    size_t n;
};

/* Each ESP: its name in the configuration, and the header that carries our message id
 * back in its webhooks (before + id + after), NULL for none beyond X-Engage-Message-Id;
 * dot, when set, replaces '.' in the id: SES tag values may hold only letters, digits,
 * '_' and '-' (its MessageTag reference), so "12.345" goes as "12_345" there. */
static const struct esp_row {
    const char *name, *header, *before, *after;
    char dot;
} esps[] = {
    [ESP_PLAIN] = {"plain", NULL, NULL, NULL, 0},
    [ESP_SENDGRID] = {"sendgrid", "X-SMTPAPI", "{\"unique_args\":{\"engage_message_id\":\"", "\"}}",
                      0},
    [ESP_MAILGUN] = {"mailgun", "X-Mailgun-Variables", "{\"engage_message_id\": \"", "\"}", 0},
    [ESP_POSTMARK] = {"postmark", "X-PM-Metadata-engage_message_id", "", "", 0},
    [ESP_SES] = {"ses", "X-SES-MESSAGE-TAGS", "engage_message_id=", "", '_'},
};
#define NESP (sizeof esps / sizeof *esps)

const char *provider_esp_name(enum provider_esp esp)
{
    return (unsigned)esp < NESP ? esps[esp].name : "plain";
}

int provider_esp_parse(const char *s, enum provider_esp *out)
{
    size_t i;

    for (i = 0; i < NESP; i++)
        if (strcmp(s, esps[i].name) == 0) {
            *out = (enum provider_esp)i;
            return 0;
        }
    return E_INVAL;
}

/* One provider from its section: the type's row, the common keys, then the type's init. */
static int provider_init(struct provider *p, const struct config_named *c, const struct config *cfg,
                         struct err *e)
{
    size_t i;

    snprintf(p->name, sizeof p->name, "%s", c->name);
    for (i = 0; i < sizeof types / sizeof *types; i++)
        if (strcmp(types[i]->type, c->type) == 0)
            p->ops = types[i];
    if (p->ops == NULL)
        return ERR(e, E_INVAL, "[provider:%s] type: %s", c->name,
                   c->type[0] ? "expected smtp or outbox" : "missing (smtp or outbox)");
    if (provider_esp_parse(c->esp[0] ? c->esp : "plain", &p->esp))
        return ERR(e, E_INVAL,
                   "[provider:%s] esp: expected plain, sendgrid, mailgun, postmark or ses, got "
                   "\"%s\"",
                   c->name, c->esp);
    p->rate_per_second = c->rate_per_second;
    p->max_connections = c->max_connections > 0 ? c->max_connections : 1;
    snprintf(p->from, sizeof p->from, "%s", c->from);
    return p->ops->init(p, c, cfg, e);
}

int provider_set_new(struct provider_set **out, const struct config *cfg, struct err *e)
{
    struct provider_set *s = xcalloc(1, sizeof *s);
    struct config_named outbox = {.name = "outbox", .type = "outbox", .esp = "plain"};
    int rc = 0;
    size_t i, n = cfg->nproviders > 0 ? (size_t)cfg->nproviders : 1;

    /* The built-in outbox: no rate cap (it is a local file), a few writers at once. */
    outbox.max_connections = 4;
    s->p = xcalloc(n, sizeof *s->p);
    for (i = 0; i < n && rc == 0; i++) {
        rc = provider_init(&s->p[i], cfg->nproviders > 0 ? &cfg->providers[i] : &outbox, cfg, e);
        if (rc == 0)
            s->n++;
    }
    if (rc) {
        provider_set_free(s);
        s = NULL;
    }
    *out = s;
    return rc;
}

void provider_set_free(struct provider_set *s)
{
    size_t i;

    if (s == NULL)
        return;
    for (i = 0; i < s->n; i++)
        s->p[i].ops->fini(&s->p[i]);
    free(s->p);
    free(s);
}

const struct provider *provider_find(const struct provider_set *s, const char *name)
{
    size_t i;

    if (s == NULL || s->n == 0)
        return NULL;
    if (name == NULL || name[0] == '\0')
        return &s->p[0];
    for (i = 0; i < s->n; i++)
        if (strcmp(s->p[i].name, name) == 0)
            return &s->p[i];
    return NULL;
}

size_t provider_count(const struct provider_set *s)
{
    return s ? s->n : 0;
}

const struct provider *provider_at(const struct provider_set *s, size_t i)
{
    return s && i < s->n ? &s->p[i] : NULL;
}

int provider_open(const struct provider *p, size_t connections, struct provider_conn **out,
                  struct err *e)
{
    size_t max = provider_connections_max(p);
    int rc = p->ops->open(p, connections < 1 ? 1 : connections > max ? max : connections, out, e);

    if (rc == 0)
        (*out)->p = p;
    return rc;
}

void provider_send(struct provider_conn *c, const struct provider_message *m,
                   struct provider_result *r)
{
    memset(r, 0, sizeof *r);
    c->p->ops->send(c, m, r);
}

size_t provider_connections_max(const struct provider *p)
{
    return p->ops->connections_max > 1 ? p->ops->connections_max : 1;
}

size_t provider_batch_max(const struct provider *p, size_t connections)
{
    size_t max = provider_connections_max(p);

    if (p->ops->send_batch == NULL || p->ops->per_connection < 1)
        return 1;
    connections = connections < 1 ? 1 : connections > max ? max : connections;
    return connections * p->ops->per_connection;
}

void provider_send_batch(struct provider_conn *c, const struct provider_message *m, size_t n,
                         struct provider_result *r)
{
    size_t i;

    memset(r, 0, n * sizeof *r);
    if (c->p->ops->send_batch && n > 1) {
        c->p->ops->send_batch(c, m, n, r);
        return;
    }
    for (i = 0; i < n; i++)
        c->p->ops->send(c, &m[i], &r[i]);
}

void provider_close(struct provider_conn *c)
{
    if (c)
        c->p->ops->close(c);
}

/* ---- the id headers ------------------------------------------------------------------ */

void provider_id_headers(const struct provider *p, const char *message_id,
                         void (*add)(void *ctx, const char *name, const char *value), void *ctx)
{
    const struct esp_row *row = &esps[(unsigned)p->esp < NESP ? p->esp : ESP_PLAIN];
    char v[512];

    /* Our ids are letters, digits, '.', '_' and '-' (mime_build refuses others): nothing
     * in them needs JSON escaping. */
    if (row->header) {
        size_t at = strlen(row->before), i;
        snprintf(v, sizeof v, "%s%s%s", row->before, message_id, row->after);
        for (i = at; row->dot && v[i] && i < at + strlen(message_id); i++)
            if (v[i] == '.')
                v[i] = row->dot;
        add(ctx, row->header, v);
    }
    add(ctx, "X-Engage-Message-Id", message_id);
}

/* ---- classification of SMTP replies ------------------------------------------------------ */

/* The enhanced status code at the start of s ("5.1.1"), its length, or 0 when none. */
static size_t enhanced_status(const char *s)
{
    size_t i = 0, n;
    int part;

    if (s[0] != '2' && s[0] != '4' && s[0] != '5')
        return 0;
    i = 1;
    for (part = 0; part < 2; part++) {
        if (s[i] != '.')
            return 0;
        i++;
        for (n = 0; isdigit((unsigned char)s[i]) && n < 3; n++)
            i++;
        if (n == 0)
            return 0;
    }
    return s[i] == '\0' || s[i] == ' ' || s[i] == '\t' ? i : 0;
}

/* The queue id in an accepting reply: "... queued as ABC123" (Postfix, SendGrid and most
 * relays), else "Ok <id>" (Amazon SES: "250 Ok 0100018c...-000000"). */
static void queue_id(const char *text, char *out, size_t cap)
{
    const char *q = strstr(text, "queued as ");
    size_t n;

    if (q)
        q += 10;
    else if (strncmp(text, "Ok ", 3) == 0 || strncmp(text, "OK ", 3) == 0)
        q = text + 3;
    else
        return;
    while (*q == ' ' || *q == '<')
        q++;
    n = strcspn(q, " \t>;,");
    if (n == 0 || n >= cap || (q == text + 3 && n < 8))
        return;
    memcpy(out, q, n);
    out[n] = '\0';
}

void provider_classify_smtp(int code, const char *text, struct provider_result *r)
{
    const char *t = text ? text : "";
    size_t st;

    r->code = code;
    r->status[0] = r->queue_id[0] = '\0';
    r->hard_bounce = 0;
    snprintf(r->text, sizeof r->text, "%s", t);
    /* The text may carry its code in front ("250 2.0.0 Ok"): skip it. */
    if (code > 0 && isdigit((unsigned char)t[0]) && isdigit((unsigned char)t[1]) &&
        isdigit((unsigned char)t[2]) && (t[3] == ' ' || t[3] == '-' || t[3] == '\0') &&
        strtol(t, NULL, 10) == code)
        t += t[3] ? 4 : 3;
    st = enhanced_status(t);
    if (st && st < sizeof r->status) {
        memcpy(r->status, t, st);
        r->status[st] = '\0';
    }
    if (code >= 200 && code < 300) {
        r->outcome = PROVIDER_SENT;
        queue_id(st ? t + st + strspn(t + st, " \t") : t, r->queue_id, sizeof r->queue_id);
    } else if (code >= 500 && code < 600 &&
               (strcmp(r->status, "5.1.7") == 0 || strcmp(r->status, "5.1.8") == 0)) {
        /* our sender's address refused (RFC 3463 X.1.7, X.1.8), wherever the relay says
         * it (Postfix delays MAIL FROM restrictions to RCPT TO): not this recipient's
         * fault, and never a bounce of a whole audience */
        r->outcome = PROVIDER_RETRY;
    } else if (code >= 500 && code < 600) {
        r->outcome = PROVIDER_FAILED;
        /* the destination address is bad: 5.1.1 no such mailbox, .2 no such system, .3
         * bad syntax, .6 moved, .10 null MX; other 5.1.x are not about the recipient */
        r->hard_bounce = strcmp(r->status, "5.1.1") == 0 || strcmp(r->status, "5.1.2") == 0 ||
                         strcmp(r->status, "5.1.3") == 0 || strcmp(r->status, "5.1.6") == 0 ||
                         strcmp(r->status, "5.1.10") == 0;
    } else {
        r->outcome = PROVIDER_RETRY; /* 4xx, and no reply at all (code 0) */
    }
}
