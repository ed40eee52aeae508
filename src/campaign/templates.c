/* campaign/templates.c -- templates as records: save with versions, read, delete,
 * preview for a contact or a segment's members, and one real test message.
 *
 * DESIGN: saving reads every field, checks each (all problems at once, each with its
 * JSON pointer) and compiles the three parts with message_template_compile, so a
 * template that is stored is one that renders: a syntax error is a 422 at /subject,
 * /html or /text with its line and column, never a failed run later. The template, its
 * new version (only when a body field changed: a rename alone keeps the version) and
 * the audit row are written in one transaction. Preview and test-send render exactly
 * as the dispatcher does (message.c), with a real unsubscribe link of run 0; preview
 * changes nothing, test-send sends one message through the provider, synchronously, and
 * says what came of it. docs/templates.md and docs/api.md, "Templates". */
#include <roaring/roaring.h>
#include <stdlib.h>
#include <string.h>

#include "../auth/auth.h"
#include "../core/map.h"
#include "../provider/provider.h"
#include "../store/store.h"
#include "campaign.h"
#include "campaign_int.h"

#define MAX_NAME_CHARS 128
#define MAX_FROM_NAME 256
#define PREVIEW_SAMPLE 5

/* ---- a template's JSON ------------------------------------------------------------------- */

static json_t *template_json(const struct store_template *t)
{
    return json_pack("{s:I,s:s,s:i,s:s,s:s,s:s?,s:s,s:s?,s:s?,s:o,s:o,s:s}", "id",
                     (json_int_t)t->id, "name", t->name, "version", t->version, "subject",
                     t->subject, "html", t->html, "text", t->text, "from_email", t->from_email,
                     "from_name", t->from_name, "reply_to", t->reply_to, "created_at",
                     json_iso_or_null(t->created_at), "updated_at", json_iso_or_null(t->updated_at),
                     "created_by", t->created_by);
}

/* A copy of a stored template owning its strings. */
struct tpl_copy {
    struct store_template t;
    char *s[9];
};

static int copy_template(void *ctx, const struct store_template *t)
{
    struct tpl_copy *c = ctx;
    const char *const *from[] = {&t->name,       &t->subject,   &t->html,     &t->text,
                                 &t->from_email, &t->from_name, &t->reply_to, &t->created_by};
    const char **to[] = {&c->t.name,       &c->t.subject,   &c->t.html,     &c->t.text,
                         &c->t.from_email, &c->t.from_name, &c->t.reply_to, &c->t.created_by};
    size_t i;

    for (i = 0; i < sizeof c->s / sizeof *c->s; i++)
        free(c->s[i]);
    memset(c, 0, sizeof *c);
    c->t = *t;
    for (i = 0; i < sizeof from / sizeof *from; i++)
        *to[i] = c->s[i] = *from[i] ? xstrdup(*from[i]) : NULL;
    return 0;
}

static void tpl_copy_release(struct tpl_copy *c)
{
    for (size_t i = 0; i < sizeof c->s / sizeof *c->s; i++)
        free(c->s[i]);
    memset(c, 0, sizeof *c);
}

/* ---- checking a body --------------------------------------------------------------------- */

static size_t utf8_chars(const char *s, size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

static int has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            return 1;
    return 0;
}

enum field_kind { F_NAME, F_SUBJECT, F_BODY, F_TEXT, F_ADDRESS, F_OPT_ADDRESS, F_DISPLAY };

/* Checks body's key (absent: *dst kept when partial, else required or NULL); every
 * problem into errs; *bad set when the key was given and refused. */
static void read_field(const json_t *body, const char *key, enum field_kind kind, int partial,
                       const char **dst, int *bad, struct errlist *errs)
{
    const json_t *v = json_object_get(body, key);
    int optional = kind == F_TEXT || kind == F_OPT_ADDRESS || kind == F_DISPLAY;
    char path[40], msg[200] = "";
    const char *s;
    size_t n;

    snprintf(path, sizeof path, "/%s", key);
    if (v == NULL && partial)
        return;
    if (v == NULL || json_is_null(v)) {
        if (optional)
            *dst = NULL;
        else {
            errlist_add(errs, path, "is required");
            *bad = 1;
        }
        return;
    }
    s = json_string_value(v);
    n = json_string_length(v);
    switch (kind) {
    case F_NAME:
        if (!s || n == 0 || utf8_chars(s, n) > MAX_NAME_CHARS || has_control(s, n))
            snprintf(msg, sizeof msg,
                     "must be a string of 1 to %d characters, without control characters",
                     MAX_NAME_CHARS);
        break;
    case F_SUBJECT:
        if (!s || n == 0 || n > TEMPLATE_MAX_SUBJECT)
            snprintf(msg, sizeof msg, "must be a string of 1 to %d bytes", TEMPLATE_MAX_SUBJECT);
        break;
    case F_BODY:
    case F_TEXT:
        if (!s || n == 0 || n > TEMPLATE_MAX_SOURCE)
            snprintf(msg, sizeof msg, "must be %sa string of 1 to %d bytes",
                     kind == F_TEXT ? "null (derived from the HTML) or " : "", TEMPLATE_MAX_SOURCE);
        break;
    case F_ADDRESS:
    case F_OPT_ADDRESS:
        if (!s || !message_address_plausible(s, n))
            snprintf(msg, sizeof msg,
                     "must be %san email address such as news@example.com (one @, no spaces,"
                     " no <>: the name goes in from_name)",
                     kind == F_OPT_ADDRESS ? "null or " : "");
        break;
    case F_DISPLAY:
        if (!s || n > MAX_FROM_NAME || has_control(s, n))
            snprintf(msg, sizeof msg,
                     "must be null or a string of at most %d bytes without line breaks or"
                     " control characters",
                     MAX_FROM_NAME);
        break;
    }
    if (msg[0]) {
        errlist_add(errs, path, "%s", msg);
        *bad = 1;
        return;
    }
    *bad = 0;
    *dst = s;
}

/* Reads and checks every field of body into t (strings point into body), then compiles
 * the parts that passed: every problem into errs. partial (PUT): absent keys keep t's. */
static void read_template(const json_t *body, struct store_template *t, int partial,
                          struct errlist *errs, struct err *e)
{
    static const struct {
        const char *key;
        enum field_kind kind;
        size_t off;
    } fields[] = {
        {"name", F_NAME, offsetof(struct store_template, name)},
        {"subject", F_SUBJECT, offsetof(struct store_template, subject)},
        {"html", F_BODY, offsetof(struct store_template, html)},
        {"text", F_TEXT, offsetof(struct store_template, text)},
        {"from_email", F_ADDRESS, offsetof(struct store_template, from_email)},
        {"from_name", F_DISPLAY, offsetof(struct store_template, from_name)},
        {"reply_to", F_OPT_ADDRESS, offsetof(struct store_template, reply_to)},
    };
    struct store_template probe;
    struct message_template *mt = NULL;
    struct err ce = {0};
    int bad[7] = {0};

    campaign_only_keys(body, " name subject html text from_email from_name reply_to ",
                       "a template has name, subject, html, text, from_email, from_name, reply_to",
                       errs);
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        read_field(body, fields[i].key, fields[i].kind, partial,
                   (const char **)((char *)t + fields[i].off), &bad[i], errs);
    /* The parts that are well-formed strings are compiled; the others stand in empty. */
    probe = *t;
    if (bad[1] || !probe.subject)
        probe.subject = "";
    if (bad[2] || !probe.html)
        probe.html = "";
    if (bad[3])
        probe.text = "";
    if (message_template_compile(&probe, &mt, errs, &ce) != 0 && ce.code != E_INVAL)
        *e = ce; /* not a syntax error: the caller passes it up */
    message_template_free(mt);
}

static int invalid(struct errlist *errs, struct err *e)
{
    return ERR(e, E_INVAL, "the template is not valid: %d problem%s", errs->n,
               errs->n == 1 ? "" : "s");
}

static void id_text(int64_t id, char out[24])
{
    snprintf(out, 24, "%lld", (long long)id);
}

/* ---- create, update, delete -------------------------------------------------------------- */

int template_create(struct store *st, const json_t *body, const char *actor, const char *req_id,
                    int64_t *id, struct errlist *errs, struct err *e)
{
    struct store_template t = {0};
    json_t *after = NULL;
    char sid[24];
    int rc;

    read_template(body, &t, 0, errs, e);
    if (e->code)
        return e->code;
    if (errs->n)
        return invalid(errs, e);
    t.version = 1;
    t.created_by = actor;
    t.created_at = t.updated_at = clock_now_ms();
    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = store_template_insert(st, &t, e);
    if (rc == E_CONFLICT) {
        err_clear(e);
        rc = ERRF(e, E_CONFLICT, "/name", "a template named '%s' exists already", t.name);
    }
    if (rc == 0) {
        after = template_json(&t);
        id_text(t.id, sid);
        rc = audit_record(st, actor, "template.create", "template", sid, NULL, after, req_id, e);
    }
    rc = store_finish(st, rc, e);
    if (rc == 0)
        *id = t.id;
    json_decref(after);
    return rc;
}

static int same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static int body_changed(const struct store_template *a, const struct store_template *b)
{
    return !same(a->subject, b->subject) || !same(a->html, b->html) || !same(a->text, b->text) ||
           !same(a->from_email, b->from_email) || !same(a->from_name, b->from_name) ||
           !same(a->reply_to, b->reply_to);
}

/* Inside the transaction: the template must still be as it was read (cur), else a
 * concurrent change is a conflict, never overwritten. */
static int still_same(struct store *st, const struct tpl_copy *cur, struct err *e)
{
    struct tpl_copy now = {0};
    int rc = store_template_get(st, cur->t.id, copy_template, &now, e);

    if (rc == 0 && (now.t.version != cur->t.version || now.t.updated_at != cur->t.updated_at ||
                    strcmp(now.t.name, cur->t.name) != 0))
        rc = ERR(e, E_CONFLICT,
                 "the template changed while this change was prepared: read it"
                 " again and retry");
    tpl_copy_release(&now);
    return rc;
}

int template_update(struct store *st, int64_t id, const json_t *body, const char *actor,
                    const char *req_id, struct errlist *errs, struct err *e)
{
    struct tpl_copy cur = {0};
    struct store_template t;
    json_t *before = NULL, *after = NULL;
    char sid[24];
    int rc, new_version;

    rc = store_template_get(st, id, copy_template, &cur, e);
    if (rc)
        return rc;
    t = cur.t;
    read_template(body, &t, 1, errs, e);
    if (e->code || errs->n) {
        rc = e->code ? e->code : invalid(errs, e);
        goto out;
    }
    new_version = body_changed(&cur.t, &t);
    t.updated_at = clock_now_ms();
    if (t.updated_at <= cur.t.updated_at)
        t.updated_at = cur.t.updated_at + 1; /* each change is seen as one (still_same) */
    if (new_version) {
        t.version = cur.t.version + 1;
        t.created_by = actor; /* the version's author */
    }
    before = template_json(&cur.t);
    after = template_json(&t);
    json_object_set_new(after, "created_by", json_string(cur.t.created_by));
    rc = store_begin(st, e);
    if (rc)
        goto out;
    rc = still_same(st, &cur, e);
    if (rc == 0) {
        rc = store_template_update(st, &t, new_version, e);
        if (rc == E_CONFLICT) { /* the unique index on live names */
            err_clear(e);
            rc = ERRF(e, E_CONFLICT, "/name", "a template named '%s' exists already", t.name);
        }
    }
    id_text(id, sid);
    if (rc == 0)
        rc = audit_record(st, actor, "template.update", "template", sid, before, after, req_id, e);
    rc = store_finish(st, rc, e);
out:
    json_decref(before);
    json_decref(after);
    tpl_copy_release(&cur);
    return rc;
}

/* The first live campaign using the template that has not ended, by id (0: none). */
struct user_of {
    int64_t template_id, campaign_id, last;
    char name[129], state[32];
    int n;
};

static int find_user(void *ctx, const struct store_campaign *c)
{
    struct user_of *u = ctx;

    u->last = c->id;
    u->n++;
    if (u->campaign_id == 0 && c->template_id == u->template_id &&
        strcmp(c->state, "completed") != 0 && strcmp(c->state, "cancelled") != 0) {
        u->campaign_id = c->id;
        snprintf(u->name, sizeof u->name, "%s", c->name);
        snprintf(u->state, sizeof u->state, "%s", c->state);
    }
    return 0;
}

static int campaign_using(struct store *st, int64_t template_id, struct user_of *u, struct err *e)
{
    int rc = 0;

    memset(u, 0, sizeof *u);
    u->template_id = template_id;
    do { /* pages of 500: the whole list without holding it */
        u->n = 0;
        rc = store_campaigns_list(st, u->last, 500, find_user, u, e);
    } while (rc == 0 && u->n == 500 && u->campaign_id == 0);
    return rc;
}

int template_delete(struct store *st, int64_t id, const char *actor, const char *req_id,
                    struct err *e)
{
    struct tpl_copy cur = {0};
    struct user_of u;
    json_t *before = NULL;
    char sid[24];
    int rc;

    rc = store_begin(st, e);
    if (rc)
        return rc;
    rc = store_template_get(st, id, copy_template, &cur, e);
    if (rc == 0)
        rc = campaign_using(st, id, &u, e);
    if (rc == 0 && u.campaign_id)
        rc = ERR(e, E_CONFLICT,
                 "campaign %lld ('%s', %s) uses this template: delete it (or let it end)"
                 " first",
                 (long long)u.campaign_id, u.name, u.state);
    if (rc == 0) {
        before = template_json(&cur.t);
        cur.t.deleted = 1;
        cur.t.updated_at = clock_now_ms();
        rc = store_template_update(st, &cur.t, 0, e);
    }
    id_text(id, sid);
    if (rc == 0)
        rc = audit_record(st, actor, "template.delete", "template", sid, before, NULL, req_id, e);
    rc = store_finish(st, rc, e);
    json_decref(before);
    tpl_copy_release(&cur);
    return rc;
}

/* ---- reading ----------------------------------------------------------------------------- */

static int keep_json(void *ctx, const struct store_template *t)
{
    json_t **out = ctx;

    json_decref(*out);
    *out = template_json(t);
    return 0;
}

int template_get(struct store *st, int64_t id, json_t **out, struct err *e)
{
    *out = NULL;
    return store_template_get(st, id, keep_json, out, e);
}

struct page {
    json_t *items;
    int64_t last;
};

static int add_template(void *ctx, const struct store_template *t)
{
    struct page *p = ctx;

    json_array_append_new(p->items, template_json(t));
    p->last = t->id;
    return 0;
}

int template_list(struct store *st, int64_t after_id, int limit, json_t **items,
                  int64_t *next_cursor, struct err *e)
{
    struct page p = {json_array(), 0};
    int rc = store_templates_list(st, after_id, limit, add_template, &p, e);

    *next_cursor = rc == 0 && (int)json_array_size(p.items) == limit ? p.last : 0;
    if (rc) {
        json_decref(p.items);
        p.items = NULL;
    }
    *items = p.items;
    return rc;
}

static int add_version(void *ctx, const struct store_template *t)
{
    json_t *o = template_json(t);

    json_object_del(o, "id");
    json_object_del(o, "name");
    json_object_del(o, "updated_at");
    json_array_append_new(((struct page *)ctx)->items, o);
    return 0;
}

int template_versions(struct store *st, int64_t id, json_t **items, struct err *e)
{
    struct page p = {json_array(), 0};
    json_t *probe = NULL;
    int rc = template_get(st, id, &probe, e); /* 404 once deleted */

    json_decref(probe);
    if (rc == 0)
        rc = store_template_versions(st, id, add_version, &p, e);
    if (rc) {
        json_decref(p.items);
        p.items = NULL;
    }
    *items = p.items;
    return rc;
}

/* ---- rendering for a contact ------------------------------------------------------------- */

/* The current version of template id, compiled. */
static int load_message(struct store *st, int64_t id, struct message_template **mt, struct err *e)
{
    struct tpl_copy cur = {0};
    struct errlist errs = {0};
    int rc = store_template_get(st, id, copy_template, &cur, e);

    if (rc == 0 && message_template_compile(&cur.t, mt, &errs, e) != 0)
        rc = e->code; /* stored templates compiled when saved: a changed language */
    tpl_copy_release(&cur);
    return rc;
}

/* Renders mt for contact c (NULL: no contact, to as its email) with the unsubscribe link
 * of run 0. */
static int render_for(const struct send_env *env, const struct message_template *mt,
                      const struct store_contact *c, const char *to, struct buf *unsub,
                      struct message_rendered *out, struct err *e)
{
    struct message_contact mc = {.email = to};

    buf_reset(unsub);
    token_unsubscribe_url(env, 0, c ? c->id : 0, unsub);
    mc.unsubscribe_url = unsub->p;
    if (c) {
        mc.external_id = c->external_id;
        mc.email = c->email;
        mc.attrs = c->attrs;
    }
    return message_render(mt, &mc, out, e);
}

static json_t *rendered_json(const struct message_rendered *r)
{
    return json_pack("{s:s,s:s,s:s}", "subject", r->subject.p, "html", r->html.p, "text",
                     r->text.p);
}

/* A live contact by external id: E_NOTFOUND (said so) when absent or deleted. */
static int live_contact(struct store *st, const char *xid, struct store_contact *c, struct err *e)
{
    int rc = store_contact_get_by_xid(st, xid, c, e);

    if (rc == E_NOTFOUND || (rc == 0 && c->deleted)) {
        err_clear(e);
        rc = ERRF(e, E_NOTFOUND, "/external_id", "no contact with external_id '%.64s'", xid);
    }
    return rc;
}

static int preview_contact(const struct send_env *env, struct store *st,
                           const struct message_template *mt, const char *xid, json_t **out,
                           struct err *e)
{
    struct message_rendered r = {0};
    struct store_contact c;
    struct buf unsub;
    int rc;

    buf_init(&unsub);
    store_contact_init(&c);
    rc = live_contact(st, xid, &c, e);
    if (rc == 0)
        rc = render_for(env, mt, &c, NULL, &unsub, &r, e);
    if (rc == 0) {
        *out = rendered_json(&r);
        json_object_set_new(*out, "footer_added", json_boolean(message_template_footer_added(mt)));
    }
    message_rendered_release(&r);
    store_contact_release(&c);
    buf_release(&unsub);
    return rc;
}

static int keep_evaluation_id(void *ctx, const struct store_evaluation *ev)
{
    *(int64_t *)ctx = ev->id;
    return 0;
}

/* The members of the segment's latest successful evaluation. Caller frees *out. */
static int segment_members(struct store *st, int64_t segment_id, roaring_bitmap_t **out,
                           struct err *e)
{
    int64_t evid = 0;
    void *blob = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    rc = store_evaluation_get(st, segment_id, 0, keep_evaluation_id, &evid, e);
    if (rc == E_NOTFOUND) {
        err_clear(e);
        return ERRF(e, E_CONFLICT, "/segment_id",
                    "segment %lld has no successful evaluation to preview: evaluate it first"
                    " (POST /api/v1/segments/%lld/evaluate)",
                    (long long)segment_id, (long long)segment_id);
    }
    if (rc == 0)
        rc = store_snapshot_get(st, evid, &blob, &len, e);
    if (rc)
        return rc;
    *out = roaring_bitmap_portable_deserialize_safe(blob, len);
    free(blob);
    if (*out == NULL)
        return ERR(e, E_CORRUPT, "the snapshot of evaluation %lld does not decode",
                   (long long)evid);
    return 0;
}

static int ignore_segment(void *ctx, const struct store_segment *s)
{
    return 0;
}

/* {sample, members, missing, footer_added}: a sample of the first members rendered, and
 * how many members lack a value for a token without a default (one pass over them all). */
static int preview_segment(const struct send_env *env, struct store *st,
                           const struct message_template *mt, int64_t segment_id, json_t **out,
                           struct err *e)
{
    struct message_rendered r = {0};
    roaring_bitmap_t *rb = NULL;
    roaring_uint32_iterator_t *it = NULL;
    json_t *sample = json_array();
    struct buf unsub;
    int64_t missing = 0;
    int rc;

    buf_init(&unsub);
    /* One read transaction for the whole pass: a consistent view, and one lock taken
     * instead of one per member (the locks were most of the time, 27 us a member). */
    rc = store_read_begin(st, e);
    if (rc)
        goto out;
    rc = store_segment_get(st, segment_id, ignore_segment, NULL, e);
    if (rc == E_NOTFOUND) {
        err_clear(e);
        rc = ERRF(e, E_NOTFOUND, "/segment_id", "no segment %lld", (long long)segment_id);
    }
    if (rc == 0)
        rc = segment_members(st, segment_id, &rb, e);
    if (rc)
        goto out;
    it = roaring_create_iterator(rb);
    for (; rc == 0 && it->has_value; roaring_advance_uint32_iterator(it)) {
        struct store_contact c;
        /* the link is always there (render_for makes it): any non-empty value will do */
        struct message_contact mc = {.unsubscribe_url = "unsubscribe_url"};
        store_contact_init(&c);
        rc = store_contact_get(st, it->current_value, &c, e);
        if (rc == E_NOTFOUND || (rc == 0 && c.deleted)) { /* gone since: not counted */
            err_clear(e);
            rc = 0;
        } else if (rc == 0) {
            mc.external_id = c.external_id;
            mc.email = c.email;
            mc.attrs = c.attrs;
            missing += message_missing(mt, &mc);
            if (json_array_size(sample) < PREVIEW_SAMPLE &&
                (rc = render_for(env, mt, &c, NULL, &unsub, &r, e)) == 0) {
                json_t *o = rendered_json(&r);
                json_object_set_new(o, "external_id",
                                    c.external_id ? json_string(c.external_id) : json_null());
                json_array_append_new(sample, o);
            }
        }
        store_contact_release(&c);
    }
    if (rc == 0)
        *out = json_pack("{s:O,s:I,s:I,s:b}", "sample", sample, "members",
                         (json_int_t)roaring_bitmap_get_cardinality(rb), "missing",
                         (json_int_t)missing, "footer_added", message_template_footer_added(mt));
out:
    store_rollback(st); /* the read transaction, if taken */
    if (it)             /* neither is NULL-safe */
        roaring_free_uint32_iterator(it);
    if (rb)
        roaring_bitmap_free(rb);
    json_decref(sample);
    message_rendered_release(&r);
    buf_release(&unsub);
    return rc;
}

static int no_send_env(const struct send_env *env, struct err *e)
{
    if (env && env->providers)
        return 0;
    return ERR(e, E_BUSY, "sending is not set up in this process (engage serve sets it up)");
}

int template_preview(const struct send_env *env, struct store *st, int64_t id, const json_t *body,
                     json_t **out, struct errlist *errs, struct err *e)
{
    const json_t *xid = json_object_get(body, "external_id");
    const json_t *sid = json_object_get(body, "segment_id");
    struct message_template *mt = NULL;
    int rc;

    *out = NULL;
    campaign_only_keys(body, " external_id segment_id ",
                       "a preview is {\"external_id\": …} or {\"segment_id\": …}", errs);
    if (xid && sid)
        errlist_add(errs, "", "give external_id or segment_id, not both");
    else if (!xid && !sid)
        errlist_add(errs, "",
                    "give external_id (one contact) or segment_id (a sample of its"
                    " members)");
    if (xid && (!json_is_string(xid) || json_string_length(xid) == 0))
        errlist_add(errs, "/external_id", "must be a non-empty string");
    if (sid && (!json_is_integer(sid) || json_integer_value(sid) < 1))
        errlist_add(errs, "/segment_id", "must be a segment id (a positive integer)");
    if (errs->n)
        return ERR(e, E_INVAL, "the preview request is not valid");
    if ((rc = no_send_env(env, e)))
        return rc;
    rc = load_message(st, id, &mt, e);
    if (rc == 0 && xid)
        rc = preview_contact(env, st, mt, json_string_value(xid), out, e);
    else if (rc == 0)
        rc = preview_segment(env, st, mt, json_integer_value(sid), out, e);
    message_template_free(mt);
    return rc;
}

/* ---- test-send --------------------------------------------------------------------------- */

/* Checks {to, external_id?, provider?}; *p the provider. */
static int test_send_request(const struct send_env *env, const json_t *body,
                             const struct provider **p, struct errlist *errs, struct err *e)
{
    const json_t *to = json_object_get(body, "to"), *xid = json_object_get(body, "external_id");
    const json_t *pv = json_object_get(body, "provider");
    int rc, pv_ok = pv == NULL || json_is_null(pv) || json_is_string(pv);

    campaign_only_keys(body, " to external_id provider ",
                       "a test-send is {to, external_id?, provider?}", errs);
    if (!json_is_string(to) ||
        !message_address_plausible(json_string_value(to), json_string_length(to)))
        errlist_add(errs, "/to", "must be an email address such as you@example.com");
    if (xid && !json_is_null(xid) && (!json_is_string(xid) || json_string_length(xid) == 0))
        errlist_add(errs, "/external_id", "must be null or a non-empty string");
    if (!pv_ok)
        errlist_add(errs, "/provider", "must be null (the default provider) or a provider name");
    if ((rc = no_send_env(env, e)))
        return rc;
    if (pv_ok)
        *p = provider_find(env->providers, json_string_value(pv));
    if (pv_ok && *p == NULL) {
        char names[400] = "";
        for (size_t i = 0; i < provider_count(env->providers); i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                     provider_at(env->providers, i)->name);
        errlist_add(errs, "/provider", "no provider named '%.64s' (providers: %s)",
                    json_string_value(pv) ? json_string_value(pv) : "", names);
    }
    if (errs->n)
        return ERR(e, E_INVAL, "the test-send request is not valid");
    if ((*p)->needs_public_url && !env->public_url_set)
        return ERRF(e, E_CONFLICT, "/provider",
                    "provider '%s' sends real mail, whose links must reach the recipient: set"
                    " [server] public_url first",
                    (*p)->name);
    return 0;
}

/* Builds the message for r (sent to `to`) and sends it through p: *res says what came of
 * it. */
static int send_one(const struct provider *p, const struct message_template *mt,
                    const struct message_rendered *r, const char *to, const char *message_id,
                    const char *unsub, struct provider_result *res, struct err *e)
{
    struct provider_conn *conn = NULL;
    const char *mail_from = NULL;
    struct buf raw;
    int rc;

    buf_init(&raw);
    rc = message_mime(mt, r, p, to, message_id, unsub, clock_now_ms(), &raw, &mail_from, e);
    if (rc == 0)
        rc = provider_open(p, 1, &conn, e);
    if (rc == 0) {
        struct provider_message pm = {.mail_from = mail_from,
                                      .rcpt_to = to,
                                      .data = raw.p,
                                      .len = raw.len,
                                      .message_id = message_id};
        provider_send(conn, &pm, res);
    }
    provider_close(conn);
    buf_release(&raw);
    return rc;
}

static const char *outcome_name(enum provider_outcome o)
{
    return o == PROVIDER_SENT ? "sent" : o == PROVIDER_RETRY ? "retry" : "failed";
}

int template_test_send(const struct send_env *env, struct store *st, int64_t id, const json_t *body,
                       const char *actor, const char *req_id, json_t **out, struct errlist *errs,
                       struct err *e)
{
    const struct provider *p = NULL;
    const json_t *xid = json_object_get(body, "external_id");
    const char *to = json_string_value(json_object_get(body, "to"));
    struct message_template *mt = NULL;
    struct message_rendered r = {0};
    struct provider_result res = {0};
    struct store_contact c;
    struct buf unsub;
    char message_id[64], sid[24];
    int rc, have_contact = 0;

    *out = NULL;
    buf_init(&unsub);
    store_contact_init(&c);
    rc = test_send_request(env, body, &p, errs, e);
    if (rc == 0)
        rc = load_message(st, id, &mt, e);
    if (rc == 0 && json_is_string(xid)) {
        rc = live_contact(st, json_string_value(xid), &c, e);
        have_contact = rc == 0;
    }
    if (rc == 0)
        rc = render_for(env, mt, have_contact ? &c : NULL, to, &unsub, &r, e);
    if (rc)
        goto out;
    /* Run 0 (no run): distinct per send, so outbox files and Message-IDs never collide. */
    snprintf(message_id, sizeof message_id, "0.%lld.%lld", (long long)(have_contact ? c.id : 0),
             (long long)clock_now_ms());
    rc = send_one(p, mt, &r, to, message_id, unsub.p, &res, e);
    if (rc)
        goto out;
    *out = json_pack("{s:s,s:s,s:s,s:i,s:s,s:s,s:s}", "message_id", message_id, "provider", p->name,
                     "outcome", outcome_name(res.outcome), "code", res.code, "status", res.status,
                     "text", res.text, "queue_id", res.queue_id);
    id_text(id, sid);
    rc = store_begin(st, e);
    if (rc == 0) {
        json_t *a = json_pack("{s:s,s:O}", "to", to, "result", *out);
        if (have_contact)
            json_object_set_new(a, "external_id", json_string(c.external_id));
        rc = audit_record(st, actor, "template.test_send", "template", sid, NULL, a, req_id, e);
        json_decref(a);
    }
    rc = store_finish(st, rc, e);
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
out:
    message_template_free(mt);
    message_rendered_release(&r);
    store_contact_release(&c);
    buf_release(&unsub);
    return rc;
}
