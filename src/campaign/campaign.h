/* campaign/campaign.h -- the send half: templates, rendering, MIME, tokens, campaigns,
 * runs, the send ledger and the dispatcher. docs/campaigns.md and docs/templates.md say
 * what users see; this header what the code promises.
 *
 * DESIGN (the template language): a template (subject, HTML or text body) is compiled once per run
 * into a list of parts (literal text runs, and {{ name | filter ... }} tokens) and rendered once
 * per message into a caller's struct buf, with no allocation per part beyond the buffer's growth.
 * Values come from a lookup callback (contact attributes and the built-ins email, external_id,
 * unsubscribe_url); a compiled template is immutable, so many threads may render it at once. The
 * language, its errors and its limits: docs/templates.md. */
#ifndef ENGAGE_CAMPAIGN_H
#define ENGAGE_CAMPAIGN_H

#include <jansson.h>

#include "../core/config.h"
#include "../core/core.h"

struct store;
struct store_template;
struct errlist;
struct provider_set;
struct segment_service;
struct worker_set;
struct metrics;

#define TEMPLATE_MAX_SOURCE (512 * 1024) /* bytes of one template's source */
#define TEMPLATE_MAX_TOKENS 1000         /* {{ }} tokens in one template */
#define TEMPLATE_MAX_FILTERS 8           /* filters in one token */
#define TEMPLATE_MAX_NAME 64             /* bytes of a token's name */
/* Bytes one render may add: contact values are untrusted (up to [ingest] max_value_bytes
 * each), and 1,000 tokens of a 1 MiB value, HTML-escaped, would be gigabytes. */
#define TEMPLATE_MAX_OUTPUT (16 * 1024 * 1024)

/* How values are escaped as they are written (literal text is written as it is,
 * except in HEADER mode, where it is cleaned the same way). */
enum template_escape {
    TEMPLATE_HTML,   /* & < > " ' become &amp; &lt; &gt; &quot; &#39; */
    TEMPLATE_TEXT,   /* raw */
    TEMPLATE_HEADER, /* raw, but CR, LF and every other control character become a space */
};

struct template; /* opaque */

/* Compiles src[0..len). On a syntax error returns E_INVAL with "line L, column C: ..."
 * (1-based, columns count characters) in e; E_TOOBIG past the limits above. The
 * caller owns *out (template_free). */
int template_compile(struct template **out, const char *src, size_t len, struct err *e);
void template_free(struct template *t); /* NULL-safe */

/* The tokens of t in source order: their names and whether they carry a default. */
size_t template_token_count(const struct template *t);
const char *template_token_name(const struct template *t, size_t i);
int template_token_has_default(const struct template *t, size_t i);
/* 1 if a token without a default would render empty for this contact (its value is
 * missing or empty), else 0: the "missing" count of a preview. */
int template_missing(const struct template *t,
                     const char *(*lookup)(void *ctx, const char *name, size_t *len), void *ctx);

/* Appends t rendered for one contact to out. lookup gives the value of name (a
 * NUL-terminated attribute or built-in name) and its length in *len, or NULL when the
 * contact has none; the bytes must stay valid until the call returns. Filters apply in order, then
 * the escape. A missing value renders empty unless a default applies. E_TOOBIG (out
 * cut back to where it was) once the rendering passes TEMPLATE_MAX_OUTPUT bytes. */
int template_render(const struct template *t, enum template_escape esc,
                    const char *(*lookup)(void *ctx, const char *name, size_t *len), void *ctx,
                    struct buf *out, struct err *e);

/* Appends the plain text of an HTML document to out: the text part derived from the
 * HTML body when a template has none. It runs on the template source, before
 * compiling: {{ }} tokens are copied through unchanged. E_TOOBIG past
 * TEMPLATE_MAX_SOURCE. */
int template_html_to_text(const char *html, size_t len, struct buf *out, struct err *e);

/* ---- what the send half shares ------------------------------------------------------- */

#define TOKEN_KEY_BYTES 32

/* Built once by `engage serve` (app.c) and read by the template routes, the campaign
 * routes and the dispatcher; immutable once built. */
struct send_env {
    const struct config *cfg;
    struct provider_set *providers;
    struct segment_service *segments;
    unsigned char token_key[TOKEN_KEY_BYTES]; /* signs unsubscribe (later open, click) tokens */
    char base_url[512]; /* [server] public_url, or the server's own http://host:port */
    int public_url_set; /* 0: base_url is the server's own address */
};
/* Fills env: providers from cfg (E_INVAL naming the section), the token key derived
 * from the [secrets] key, base_url from public_url or else listen_url. */
int send_env_init(struct send_env *env, const struct config *cfg, const char *listen_url,
                  struct segment_service *segments, struct err *e);
void send_env_release(struct send_env *env);

/* ---- signed tokens (token.c) ------------------------------------------------------------ */

/* A token names one message (run, contact) and what it is for: 'u' unsubscribe (and,
 * with issue 15, 'o' open, 'c' click with a link index). Form: base64url of the
 * payload, '.', base64url of the first 16 bytes of HMAC-SHA256(key, payload); at most
 * TOKEN_MAX bytes. docs/campaigns.md, "Unsubscribe links". */
#define TOKEN_MAX 96
void token_make(const unsigned char key[TOKEN_KEY_BYTES], char kind, int64_t run_id,
                int64_t contact_id, int link, char out[TOKEN_MAX]);
/* 0 and the fields, or E_INVAL for anything forged, altered or malformed (constant-time
 * compare). */
int token_check(const unsigned char key[TOKEN_KEY_BYTES], const char *token, char *kind,
                int64_t *run_id, int64_t *contact_id, int *link);
/* Appends base_url + "/u/" + the unsubscribe token of (run, contact) to out. */
void token_unsubscribe_url(const struct send_env *env, int64_t run_id, int64_t contact_id,
                           struct buf *out);
/* Appends the URL of a token of kind 'u' (base_url/u/T), 'o' (base_url/t/o/T) or 'c'
 * (base_url/t/c/T, link: the link's index in the message) to out. */
void token_url(const struct send_env *env, char kind, int64_t run_id, int64_t contact_id, int link,
               struct buf *out);

/* Appends s to out with & < > " ' written as HTML entities (template.c: the same escape
 * as a template's HTML part). */
void html_escape_append(struct buf *out, const char *s);
/* Appends s[0..n) with its character references decoded (&amp; &lt; &gt; &quot; &#39;
 * &apos; &nbsp; and numeric ones; anything else is written as it is). */
void html_unescape_append(struct buf *out, const char *s, size_t n);
/* Just past the "}}" closing the template token that opens at s[i] ("{{"), its quoted
 * strings stepped over as the compiler does; n when it does not close. */
size_t template_token_end(const char *s, size_t n, size_t i);

/* ---- the recipient's own unsubscribe (unsubscribe.c) ------------------------------------ */

/* What the page of an unsubscribe link shows: the address, masked ("j***@example.org"),
 * and whether the contact is subscribed now. */
struct unsubscribe_view {
    char email_masked[128];
    int subscribed;
};
/* The contact an unsubscribe token names, as its page shows it: E_NOTFOUND for a forged,
 * altered or other-kind token, or a contact that is gone. (Unsubscribing itself is
 * tracker_unsubscribe's, delivery.h: a message event.) */
int unsubscribe_view(struct store *st, const struct send_env *env, const char *token,
                     struct unsubscribe_view *out, struct err *e);

/* ---- a template version ready to render (message.c) ------------------------------------- */

/* One stored template version compiled: subject, HTML, and text (given, or derived from
 * the HTML and compiled too). Immutable: any number of threads render it at once. */
struct message_template;
/* E_INVAL with one errlist entry per part that does not compile: path "/subject",
 * "/html" or "/text" and the compiler's "line L, column C: ..." sentence. */
int message_template_compile(const struct store_template *t, struct message_template **out,
                             struct errlist *errs, struct err *e);
void message_template_free(struct message_template *mt); /* NULL-safe */
/* 1 when the HTML part shows {{ unsubscribe_url }} itself; else a footer with the link is
 * added to the HTML (and to the text part) at render. */
int message_template_has_unsubscribe(const struct message_template *mt);
/* 1 when a footer with the link is added at render to the HTML part or the text part
 * (each part that does not show {{ unsubscribe_url }} itself gets one). */
int message_template_footer_added(const struct message_template *mt);
const char *message_template_from_email(const struct message_template *mt);
const char *message_template_from_name(const struct message_template *mt); /* or NULL */
const char *message_template_reply_to(const struct message_template *mt);  /* or NULL */

/* The contact a message is rendered for. */
struct message_contact {
    const char *external_id, *email; /* either may be NULL */
    const json_t *attrs;             /* object of the contact's attributes, or NULL */
    const char *unsubscribe_url;     /* the built-in of that name */
    /* the message's tracking links (message_template_track): signed with env's key for
     * (run_id, contact_id); env NULL: they render empty */
    const struct send_env *env;
    int64_t run_id, contact_id;
};

/* Open and click tracking (docs/campaigns.md, "Tracking"): with opens, a 1x1 image from
 * base_url/t/o/TOKEN goes before the HTML part's </body>; with clicks, the href of every
 * <a> whose link is http(s) or a {{ }} token (other than {{ unsubscribe_url }}), and
 * that has no data-engage-notrack attribute, becomes base_url/t/c/TOKEN, TOKEN naming the
 * link by its index. The HTML part is compiled again from the rewritten source. Once,
 * before the template is shared. */
int message_template_track(struct message_template *mt, int opens, int clicks, struct err *e);
/* The tracked links: how many, and link i's href as the template wrote it (HTML source,
 * maybe with {{ }} tokens). */
size_t message_template_links(const struct message_template *mt);
const char *message_template_link(const struct message_template *mt, size_t i);
/* The URL link i leads c to: its href rendered for c, character references decoded.
 * E_NOTFOUND when there is no link i; E_INVAL when it is not an http(s) URL. */
int message_link_url(const struct message_template *mt, size_t i, const struct message_contact *c,
                     struct buf *out, struct err *e);
struct message_rendered {
    struct buf subject, html, text;
};
void message_rendered_release(struct message_rendered *r);
/* Renders the three parts for c (buffers reset first), with the footer when needed. */
int message_render(const struct message_template *mt, const struct message_contact *c,
                   struct message_rendered *out, struct err *e);
/* 1 if a token without a default would render empty for c. */
int message_missing(const struct message_template *mt, const struct message_contact *c);
/* 1 for an address that can be one: one @ with something on each side, at most
 * TEMPLATE_MAX_ADDRESS bytes, no whitespace or control character, none of < > , ; " */
int message_address_plausible(const char *s, size_t n);
struct provider;
/* The whole message r, rendered from mt, to `to` through p: From, Reply-To, Message-ID
 * for message_id (its domain the From address's), List-Unsubscribe with unsub, and p's
 * id headers; appended to out (mime_build). *mail_from is the envelope sender: p's
 * `from` when it has one, else the template's From address. */
int message_mime(const struct message_template *mt, const struct message_rendered *r,
                 const struct provider *p, const char *to, const char *message_id,
                 const char *unsub, int64_t date_ms, struct buf *out, const char **mail_from,
                 struct err *e);

/* ---- MIME (mime.c, GMime) ---------------------------------------------------------------- */

struct mime_message {
    const char *from_email, *from_name; /* from_name may be NULL */
    const char *to;                     /* the recipient's address */
    const char *reply_to;               /* or NULL */
    const char *subject;                /* UTF-8, already free of CR/LF */
    const char *html, *text;            /* UTF-8 bodies (NUL-terminated) */
    const char *message_id;             /* ours, "RUN.CONTACT": the Message-ID carries it */
    const char *message_id_domain;      /* the right side of Message-ID (the From domain) */
    int64_t date_ms;
    const char *list_unsubscribe; /* the one-click URL, or NULL (a test-send has one too) */
    /* extra headers (the provider's id headers): nheaders name, value pairs, headers[2i]
     * the name and headers[2i + 1] the value, each written raw (printable ASCII) */
    const char *const *headers;
    size_t nheaders;
};
/* Once per process, before the first mime_build (g_mime_init). */
void mime_init(void);
/* Appends the whole message to out: multipart/alternative (text, then HTML) in
 * quoted-printable, UTF-8 headers encoded as RFC 2047 words, CRLF line ends, no line
 * over 998 bytes, Date, Message-ID <message_id.XXXX@domain>, MIME-Version, and
 * List-Unsubscribe: <url> with List-Unsubscribe-Post: List-Unsubscribe=One-Click
 * written raw. E_INVAL for an address GMime cannot parse. Thread-safe. */
int mime_build(const struct mime_message *m, struct buf *out, struct err *e);

/* ---- templates as records (templates.c) --------------------------------------------------- */

/* Limits of a template's plain fields (the bodies: TEMPLATE_MAX_SOURCE). */
#define TEMPLATE_MAX_SUBJECT 998
#define TEMPLATE_MAX_ADDRESS 320

/* body {name, subject, html, text?, from_email, from_name?, reply_to?}, nothing else:
 * every problem in errs with its path (a template that does not compile: /subject,
 * /html or /text with line and column), E_INVAL then. E_CONFLICT on a name in use.
 * Audited (template.create). */
int template_create(struct store *st, const json_t *body, const char *actor, const char *req_id,
                    int64_t *id, struct errlist *errs, struct err *e);
/* Any of the create keys; a changed subject, html, text, from_email, from_name or
 * reply_to makes a new version. Audited (template.update). */
int template_update(struct store *st, int64_t id, const json_t *body, const char *actor,
                    const char *req_id, struct errlist *errs, struct err *e);
/* Soft delete; E_CONFLICT while a campaign that is not completed or cancelled uses it.
 * Audited (template.delete). */
int template_delete(struct store *st, int64_t id, const char *actor, const char *req_id,
                    struct err *e);
/* {id, name, version, subject, html, text, from_email, from_name, reply_to, created_at,
 * updated_at, created_by}; E_NOTFOUND. */
int template_get(struct store *st, int64_t id, json_t **out, struct err *e);
int template_list(struct store *st, int64_t after_id, int limit, json_t **items,
                  int64_t *next_cursor, struct err *e);
int template_versions(struct store *st, int64_t id, json_t **items, struct err *e);
/* body {external_id} -> {subject, html, text, footer_added}; body {segment_id} ->
 * {sample: [{external_id, subject, html, text}...], members, missing, footer_added}. */
int template_preview(const struct send_env *env, struct store *st, int64_t id, const json_t *body,
                     json_t **out, struct errlist *errs, struct err *e);
/* body {to, external_id?, provider?}: renders (for that contact, or with no attributes)
 * and sends one real message through the provider; {message_id, provider, outcome,
 * code, status, text, queue_id}. Audited (template.test_send). */
int template_test_send(const struct send_env *env, struct store *st, int64_t id, const json_t *body,
                       const char *actor, const char *req_id, json_t **out, struct errlist *errs,
                       struct err *e);

/* ---- campaigns and runs (campaigns.c) ------------------------------------------------------ */

/* body {name, segment_id, template_id, provider?, throttle_per_second?, scheduled_at?}:
 * 422 with every problem; E_CONFLICT on a name in use. State draft. Audited. */
int campaign_create(const struct send_env *env, struct store *st, const json_t *body,
                    const char *actor, const char *req_id, int64_t *id, struct errlist *errs,
                    struct err *e);
/* Draft or scheduled only (E_CONFLICT otherwise). Audited. */
int campaign_update(const struct send_env *env, struct store *st, int64_t id, const json_t *body,
                    const char *actor, const char *req_id, struct errlist *errs, struct err *e);
/* Not while running or paused (E_CONFLICT). Audited. */
int campaign_delete(struct store *st, int64_t id, const char *actor, const char *req_id,
                    struct err *e);
int campaign_get(struct store *st, int64_t id, json_t **out, struct err *e);
int campaign_list(struct store *st, int64_t after_id, int limit, json_t **items,
                  int64_t *next_cursor, struct err *e);
/* Creates a run (scheduled: at the campaign's scheduled_at, or now) and moves the
 * campaign to scheduled or running; *out is the run. E_CONFLICT while a run of it is
 * scheduled, running or paused; E_INVAL when the provider needs [server] public_url and
 * it is not set. Audited (campaign.send). */
int campaign_send(const struct send_env *env, struct store *st, int64_t id, const char *actor,
                  const char *req_id, json_t **out, struct err *e);
/* What POST .../pause, .../resume, .../cancel do to the campaign's current run; *out is
 * the run. E_CONFLICT when the state does not allow it. Audited. */
enum campaign_action { CAMPAIGN_PAUSE, CAMPAIGN_RESUME, CAMPAIGN_CANCEL };
int campaign_act(struct store *st, int64_t id, enum campaign_action act, const char *actor,
                 const char *req_id, json_t **out, struct err *e);

/* {id, campaign_id, state, reason, evaluation_id, audience, counts: {queued, sending,
 * sent, retry, failed, dead, skipped}, possible_duplicates, started_at, finished_at,
 * rate_per_second, eta_seconds}. */
int run_get(struct store *st, int64_t id, json_t **out, struct err *e);
int run_list(struct store *st, int64_t campaign_id, int64_t before_id, int limit, json_t **items,
             int64_t *next_cursor, struct err *e);
/* A page of the ledger, filtered by what is not NULL: state (a state name), event (a
 * kind of message event the row has had: "opened", "bounced_hard", ...), reason (a
 * substring of its last error). E_INVAL with the field for a name that is none. Each
 * row carries "events": the kinds it has had. */
struct run_msg_filter {
    const char *state, *event, *reason;
};
int run_messages(struct store *st, int64_t run_id, const struct run_msg_filter *f, int64_t after_id,
                 int limit, json_t **items, int64_t *next_cursor, struct err *e);
/* A page of the run's log, in order: [{"id", "at", "kind", "detail", "count"}]; kind
 * "state" (detail "from -> to: reason"), "retry", "failed" or "dead" (the messages of
 * one batch of outcomes with one error: count of them, detail the error). */
int run_log(struct store *st, int64_t run_id, int64_t after_id, int limit, json_t **items,
            int64_t *next_cursor, struct err *e);
/* {"reasons": [{"state", "reason", "count"}...]}: the run's rows that did not go out,
 * grouped by state and last error, the largest first (at most 100). */
int run_reasons(struct store *st, int64_t run_id, json_t **out, struct err *e);
/* A contact's latest messages (at most limit), newest first: [{"message_id", "run_id",
 * "campaign_id", "state", "events", "updated_at"}]. */
int contact_messages(struct store *st, int64_t contact_id, int limit, json_t **out, struct err *e);
/* Re-queues the run's failed and dead rows (the run runs again if it had ended);
 * {requeued, run}. Audited. */
int run_resend_failed(struct store *st, int64_t run_id, const char *actor, const char *req_id,
                      json_t **out, struct err *e);
/* Dead messages across runs (run_id 0: any; reason: substring or NULL). */
int dlq_list(struct store *st, int64_t run_id, const char *reason, int64_t after_id, int limit,
             json_t **items, int64_t *next_cursor, struct err *e);
/* body {run_id?, reason?}: re-queues them; {requeued}. Audited. */
int dlq_replay(struct store *st, const json_t *body, const char *actor, const char *req_id,
               json_t **out, struct errlist *errs, struct err *e);

/* ---- engagement: the message-event model (engagement.c) ----------------------------------- */

/* What happened to a message after the provider took it. The numbers are stored
 * (message_events.kind, the bits of messages.events): never renumber. */
enum mev_kind {
    MEV_NONE = 0,
    MEV_DELIVERED,
    MEV_DEFERRED,
    MEV_DROPPED,
    MEV_BOUNCED_HARD,
    MEV_BOUNCED_SOFT,
    MEV_COMPLAINED,
    MEV_UNSUBSCRIBED,
    MEV_OPENED,
    MEV_CLICKED,
    MEV_CONVERTED, /* ours only: a conversion attributed to the message */
    MEV_KINDS
};
/* "delivered", "deferred", "dropped", "bounced_hard", "bounced_soft", "complained",
 * "unsubscribed", "opened", "clicked", "converted"; NULL for anything else. */
const char *mev_kind_name(enum mev_kind k);
/* The kind named s, or MEV_NONE. */
enum mev_kind mev_kind_parse(const char *s);

/* One normalised message event. Every string is NUL-terminated and NULL when the source
 * did not say (a parser's live in the arena it was given). */
struct mev {
    enum mev_kind kind;
    const char *source_id;  /* the source's own id of this event, unique within the source
                             * (the webhook) for deduplication: SendGrid sg_event_id, SNS
                             * MessageId (+ "/" + recipient index when one notification
                             * names several recipients), Mailgun signature token, ... */
    const char *message_id; /* ours, "RUN.CONTACT" (digits '.' digits), when found */
    const char *queue_id;   /* the provider's own id of the message */
    const char *email;      /* the recipient */
    int64_t at_ms;          /* when it happened, by the source; 0: unknown */
    const char *reason;     /* bounces, drops, deferrals: status code and text */
    const char *url;        /* clicks: the URL clicked */
    const char *user_agent; /* opens, clicks */
    int machine;            /* 1: a machine opened it (SendGrid sg_machine_open, Apple Mail
                             * Privacy Protection's proxy: docs/analytics.md) */
    double value;           /* conversions: the revenue */
};

/* The counters kept per run and per minute (store_stat_add). Stored: never renumber.
 * STAT_SENT .. STAT_SKIPPED exist only per minute (the ledger's trigger writes them; a
 * run's totals are its ledger counts); STAT_KIND + k counts the messages that have had
 * an event of kind k (unique), the others count events (totals). docs/analytics.md. */
enum run_stat {
    STAT_SENT = 1,
    STAT_FAILED = 2,
    STAT_DEAD = 3,
    STAT_SKIPPED = 4,
    STAT_KIND = 10, /* + enum mev_kind: 11 delivered ... 20 converted */
    STAT_OPENS = 30,
    STAT_CLICKS = 31,
    STAT_OPENS_MACHINE = 32,
    STAT_EVENTS_UNKNOWN = 33, /* run 0 only: events for messages not known */
    STAT_MAX = 40
};

/* Applies message events to the store inside the caller's ingest transaction
 * (ingest_begin .. ingest_commit, on the session's own store): each is stored once (a
 * duplicate of (source, source_id) changes nothing), linked to its ledger row by our
 * message id or else the provider's queue id, sets that row's kind bit (never cleared:
 * an event arriving late moves nothing back), counts, changes consent (hard bounce:
 * bounced; complaint: complained; unsubscribe: unsubscribed, from subscribed only; with
 * history, source the provider or the recipient) and lands as a contact event
 * (email_delivered, email_opened, ...). Counter deltas are gathered and written by
 * engagement_flush, before the commit. docs/analytics.md has every rule. */
struct engagement;
struct ingest;
struct engagement *engagement_new(struct ingest *in);
void engagement_free(struct engagement *g); /* NULL-safe */
enum engagement_outcome {
    ENGAGEMENT_APPLIED,   /* stored and counted */
    ENGAGEMENT_DUPLICATE, /* its (source, source_id) was stored before: nothing changed */
    ENGAGEMENT_UNKNOWN,   /* stored, counted apart: no message of ours matches */
};
/* source: "tracking", "unsubscribe", "smtp", "conversion" or "webhook:NAME". ev->at_ms 0
 * takes received_at. */
int engagement_apply(struct engagement *g, const char *source, const struct mev *ev,
                     int64_t received_at, enum engagement_outcome *out, struct err *e);
/* The same for a message known by (run, contact): our tracking and unsubscribe links. */
int engagement_apply_to(struct engagement *g, const char *source, const struct mev *ev,
                        int64_t run_id, int64_t contact_id, int64_t received_at,
                        enum engagement_outcome *out, struct err *e);
/* Writes the counters gathered since the last flush. Before the commit. */
int engagement_flush(struct engagement *g, struct err *e);
/* Forgets what was gathered (the transaction was rolled back). */
void engagement_discard(struct engagement *g);
/* Ends the session's transaction as store_finish does: with rc 0 flushes and commits,
 * else (or when that fails) rolls back and discards. Returns rc or the commit's failure. */
int engagement_finish(struct engagement *g, int rc, struct err *e);
/* Moves contact_id's consent to `to` with its history row (source, reason), in the
 * caller's transaction: unsubscribed only from subscribed; bounced and complained by the
 * sticky rule (consent_decide, bulk). *changed says whether it moved. */
int engagement_consent(struct store *st, int64_t contact_id, int to, const char *source,
                       const char *reason, int64_t now, int *changed, struct err *e);

/* ---- the throttle (throttle.c) -------------------------------------------------------------- */

/* A token bucket: rate tokens a second, holding at most burst (0: rate / 10, at least
 * 1). Not thread-safe (the dispatcher holds one lock around them). Times in ns on any
 * monotonic clock the caller passes, so tests inject theirs. */
struct throttle {
    double rate, burst, tokens;
    int64_t last_ns;
};
void throttle_init(struct throttle *t, double rate, double burst, int64_t now_ns);
/* Takes one token: 0 when it was there, else the ns to wait before asking again (nothing
 * taken). A rate of 0 never waits. */
int64_t throttle_take(struct throttle *t, int64_t now_ns);

/* ---- the dispatcher (dispatcher.c) ---------------------------------------------------------- */

/* The worker inside `engage serve` that starts due runs (freezing their audience),
 * writes their ledger, claims rows under leases, renders, builds MIME, sends through
 * the provider within the throttles, retries and records every outcome. env and ws must
 * outlive it. Registers engage_send_* metrics in m. */
struct dispatcher;
int dispatcher_start(struct dispatcher **out, struct worker_set *ws, const struct send_env *env,
                     struct metrics *m, struct err *e);
void dispatcher_stop(struct dispatcher *d); /* NULL-safe; in-flight sends finish first */
/* A run was created or changed state: look now rather than at the next tick. */
void dispatcher_wake(struct dispatcher *d);

#endif
