/* ingest/tracking.c -- messages of the Segment tracking spec (identify, track, page,
 * screen, group, alias) as native records (docs/api.md, "Tracking API").
 *
 * DESIGN: pure. A message in; out, what it means here: an event record, a contact
 * record, an anonymous id to link to a user, or a rejection (reason, field, sentence)
 * with the record kept for the dead-letter store. The caller stores them in a batch
 * (tracking_store) and answers. The instant follows Segment: the caller's `timestamp`
 * as given; else `originalTimestamp` corrected by the client's clock skew
 * (receivedAt - (sentAt - originalTimestamp)); else the time received. `messageId`
 * is the event id, so a retried message is stored once.
 *
 * Two ways in. tracking_map() takes a jansson message and handles everything.
 * tracking_map_fast() takes a message read by core/jtree.c and maps the common case
 * (a track, page or screen call with a messageId, for an event without a contract)
 * straight into a prepared event, with no jansson value made; anything else it leaves
 * to tracking_map(). Both give the same prepared event (tests/unit/ingest.c). */
#include <string.h>

#include "../core/jtree.h"

#include "ingest.h"
#include "ingest_int.h"

static const char *str(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A user or anonymous id may be a string or a number (analytics.js sends either). */
static json_t *id_of(const json_t *o, const char *k, int *bad)
{
    const json_t *v = json_object_get(o, k);
    char n[32];

    if (v == NULL || json_is_null(v))
        return NULL;
    if (json_is_string(v))
        return json_string_length(v) ? json_incref((json_t *)v) : NULL;
    if (json_is_integer(v)) {
        snprintf(n, sizeof n, "%lld", (long long)json_integer_value(v));
        return json_string(n);
    }
    *bad = 1;
    return NULL;
}

static int reject(struct ingest_item *m, const char *reason, const char *field, const char *msg)
{
    m->rejected = 1;
    snprintf(m->reason, sizeof m->reason, "%s", reason);
    snprintf(m->field, sizeof m->field, "%s", field);
    snprintf(m->msg, sizeof m->msg, "%s", msg);
    return 0;
}

/* The instant of a message (ms) into *at, from its timestamp, originalTimestamp and
 * sentAt (the batch's when it has none): 0, or -1 with *bad the field that is not a
 * timestamp. (An instant before 1970 is negative, and valid.) */
static int instant(const char *ts, const char *orig, const char *sent, int64_t received_at,
                   int64_t *at, const char **bad)
{
    int64_t o, s;

    if (ts) {
        *bad = "timestamp";
        return time_parse_iso(ts, strlen(ts), at) ? -1 : 0;
    }
    if (orig) {
        *bad = "originalTimestamp";
        if (time_parse_iso(orig, strlen(orig), &o))
            return -1;
        /* the client's clock skew taken out */
        *at = sent && time_parse_iso(sent, strlen(sent), &s) == 0 ? received_at - (s - o) : o;
        return 0;
    }
    *at = received_at;
    return 0;
}

enum tracking_type tracking_type_parse(const char *s)
{
    static const char *const names[] = {"identify", "track", "page", "screen", "group", "alias"};
    int i;

    for (i = 0; s && i < (int)(sizeof names / sizeof *names); i++)
        if (strcmp(s, names[i]) == 0)
            return (enum tracking_type)(i + 1);
    return TRACK_NONE;
}

void ingest_item_release(struct ingest_item *m)
{
    if (m->prepared)
        prepared_event_release(&m->prep);
    json_decref(m->event);
    json_decref(m->contact);
    json_decref(m->raw);
    free(m->link_anon);
    free(m->link_user);
    memset(m, 0, sizeof *m);
}

int tracking_map(const json_t *msg, enum tracking_type type, int64_t received_at,
                 const char *batch_sent_at, struct ingest_item *m)
{
    json_t *uid, *aid, *props;
    const char *mid, *bad_field;
    char iso[32];
    int64_t at;
    int bad = 0;

    memset(m, 0, sizeof *m);
    m->raw = json_incref((json_t *)msg);
    if (!json_is_object(msg))
        return reject(m, "invalid_type", "", "a message must be a JSON object");
    if (type == TRACK_NONE)
        type = tracking_type_parse(str(msg, "type"));
    m->type = type;
    m->is_contact = type == TRACK_IDENTIFY;
    if (type == TRACK_NONE)
        return reject(m, json_object_get(msg, "type") ? "invalid_type" : "missing_field", "type",
                      "must be identify, track, page, screen, group or alias");
    uid = id_of(msg, "userId", &bad);
    aid = id_of(msg, "anonymousId", &bad);
    if (bad) {
        json_decref(uid);
        json_decref(aid);
        return reject(m, "invalid_id", "userId", "userId and anonymousId must be strings");
    }
    if (uid == NULL && aid == NULL)
        return reject(m, "missing_field", "userId", "is required (or anonymousId)");
    if (instant(str(msg, "timestamp"), str(msg, "originalTimestamp"),
                str(msg, "sentAt") ? str(msg, "sentAt") : batch_sent_at, received_at, &at,
                &bad_field)) {
        json_decref(uid);
        json_decref(aid);
        return reject(m, "invalid_timestamp", bad_field, "must be an ISO-8601 timestamp");
    }
    time_format_iso(at, iso);
    mid = str(msg, "messageId");

    switch (type) {
    case TRACK_IDENTIFY: {
        const json_t *traits = json_object_get(msg, "traits");
        json_t *attrs;
        if (traits == NULL || json_is_null(traits))
            traits = json_object_get(json_object_get(msg, "context"), "traits");
        if (traits && !json_is_null(traits) && !json_is_object(traits))
            return json_decref(uid), json_decref(aid),
                   reject(m, "invalid_type", "traits", "must be an object");
        if (uid == NULL) {
            json_decref(aid);
            return reject(m, "missing_field", "userId",
                          "identify needs a userId: traits are kept on identified contacts");
        }
        attrs = traits ? json_deep_copy(traits) : json_object();
        json_object_del(attrs, "email");
        json_object_del(attrs, "id");
        m->contact = json_pack("{s:O,s:o}", "external_id", uid, "attributes", attrs);
        if (str(traits, "email"))
            json_object_set_new(m->contact, "email", json_string(str(traits, "email")));
        if (aid) {
            m->link_anon = xstrdup(json_string_value(aid));
            m->link_user = xstrdup(json_string_value(uid));
        }
        break;
    }
    case TRACK_ALIAS: {
        json_t *prev = id_of(msg, "previousId", &bad);
        if (uid == NULL || prev == NULL || bad) {
            json_decref(uid);
            json_decref(aid);
            json_decref(prev);
            return reject(m, bad ? "invalid_id" : "missing_field", uid ? "previousId" : "userId",
                          "alias needs userId and previousId");
        }
        m->link_anon = xstrdup(json_string_value(prev));
        m->link_user = xstrdup(json_string_value(uid));
        json_decref(prev);
        break;
    }
    default: {
        const char *name = NULL;
        props = json_object_get(msg, type == TRACK_GROUP ? "traits" : "properties");
        if (props && !json_is_null(props) && !json_is_object(props))
            return json_decref(uid), json_decref(aid),
                   reject(m, "invalid_type", type == TRACK_GROUP ? "traits" : "properties",
                          "must be an object");
        /* Shared with the message, which outlives the record: copied only when a page's
         * name and category are added to it. */
        if (props && json_is_object(props))
            props = type == TRACK_PAGE || type == TRACK_SCREEN || type == TRACK_GROUP
                        ? json_copy(props)
                        : json_incref(props);
        else
            props = json_object();
        if (type == TRACK_TRACK) {
            name = str(msg, "event");
            if (name == NULL) {
                json_decref(uid);
                json_decref(aid);
                json_decref(props);
                return reject(m, json_object_get(msg, "event") ? "invalid_name" : "missing_field",
                              "event", "a track call needs an event name");
            }
        } else if (type == TRACK_PAGE || type == TRACK_SCREEN) {
            /* The page's name and category become properties of page_viewed. */
            name = type == TRACK_PAGE ? "page_viewed" : "screen_viewed";
            if (str(msg, "name"))
                json_object_set_new(props, "name", json_string(str(msg, "name")));
            if (str(msg, "category"))
                json_object_set_new(props, "category", json_string(str(msg, "category")));
        } else { /* group */
            json_t *gid = id_of(msg, "groupId", &bad);
            name = "group_joined";
            if (gid == NULL) {
                json_decref(uid);
                json_decref(aid);
                json_decref(props);
                return reject(m, bad ? "invalid_id" : "missing_field", "groupId",
                              "a group call needs a groupId");
            }
            json_object_set_new(props, "group_id", gid);
        }
        m->event =
            json_pack("{s:s,s:s,s:o}", "event", name, "occurred_at", iso, "properties", props);
        if (uid)
            json_object_set(m->event, "external_id", uid);
        if (aid)
            json_object_set(m->event, "anonymous_id", aid);
        if (mid)
            json_object_set_new(m->event, "event_id", json_string(mid));
        /* Both ids on one message: the anonymous history joins the user. */
        if (uid && aid) {
            m->link_anon = xstrdup(json_string_value(aid));
            m->link_user = xstrdup(json_string_value(uid));
        }
    }
    }
    json_decref(uid);
    json_decref(aid);
    return 0;
}

/* ---- the fast path ---------------------------------------------------------------- */

/* What a fast-mapped event needs to rebuild the general path's record, should the
 * writer keep it as a dead letter (the unknown-event policy can refuse it there). */
struct fast_origin {
    const struct jt *msg;
    enum tracking_type type;
    int64_t received_at;
    const char *batch_sent_at;
};

static char *fast_raw(const void *ctx, const struct prepared_event *p)
{
    const struct fast_origin *f = ctx;
    json_t *msg = jt_json(f->msg);
    struct ingest_item m;
    char *text;

    (void)p;
    tracking_map(msg, f->type, f->received_at, f->batch_sent_at, &m);
    text = json_dumps(m.event ? m.event : msg, JSON_COMPACT);
    ingest_item_release(&m);
    json_decref(msg);
    return text;
}

/* A user or anonymous id as tracking_map reads it: NULL when absent, null or empty; a
 * string; an integer in decimal. *bad for any other type. */
static const char *fast_id(struct arena *a, const struct jt *msg, const char *k, int *bad)
{
    const struct jt *v = jt_get(msg, k);
    char n[32];

    if (v == NULL || v->type == JT_NULL)
        return NULL;
    if (v->type == JT_STR)
        return v->n ? v->u.s : NULL;
    if (v->type == JT_INT) {
        snprintf(n, sizeof n, "%lld", v->u.i);
        return arena_strndup(a, n, strlen(n));
    }
    *bad = 1;
    return NULL;
}

int tracking_map_fast(const struct jt *msg, enum tracking_type type, int64_t received_at,
                      const char *batch_sent_at, const struct contract_set *cs,
                      size_t max_value_bytes, struct arena *a, struct buf *scratch,
                      struct ingest_item *m)
{
    struct ingest_parts parts = {0};
    struct prepared_event p;
    const char *uid, *aid, *name, *mid, *bad_field;
    const struct jt *props;
    struct fast_origin *origin;
    struct jt extra;
    char iso[32];
    int64_t at;
    int bad = 0;

    if (msg->type != JT_OBJ)
        return 0;
    if (type == TRACK_NONE)
        type = tracking_type_parse(jt_str(msg, "type"));
    if (type != TRACK_TRACK && type != TRACK_PAGE && type != TRACK_SCREEN)
        return 0;
    uid = fast_id(a, msg, "userId", &bad);
    aid = fast_id(a, msg, "anonymousId", &bad);
    mid = jt_str(msg, "messageId"); /* none: an id derived from the content, the general path */
    name = type == TRACK_PAGE     ? "page_viewed"
           : type == TRACK_SCREEN ? "screen_viewed"
                                  : jt_str(msg, "event");
    if (bad || mid == NULL || name == NULL || (cs && contract_set_event(cs, name)))
        return 0; /* (before the properties are written; the rest is checked below) */
    props = jt_get(msg, "properties");
    if (props && props->type == JT_NULL)
        props = NULL;
    if (props && props->type != JT_OBJ)
        return 0;

    /* The instant, through the same ISO text as the general path's record. */
    if (instant(jt_str(msg, "timestamp"), jt_str(msg, "originalTimestamp"),
                jt_str(msg, "sentAt") ? jt_str(msg, "sentAt") : batch_sent_at, received_at, &at,
                &bad_field))
        return 0;
    time_format_iso(at, iso);
    if (time_parse_iso(iso, strlen(iso), &parts.occurred_at))
        return 0;

    /* A page's or screen's name and category join its properties (after them, so they
     * win over properties of the same names, as json_object_set does). */
    if ((type == TRACK_PAGE || type == TRACK_SCREEN) &&
        (jt_str(msg, "name") || jt_str(msg, "category"))) {
        uint32_t n = props ? props->n : 0, k = n;
        struct jt_member *mm = arena_alloc(a, (n + 2) * sizeof *mm);
        if (n)
            memcpy(mm, props->u.members, n * sizeof *mm);
        if (jt_str(msg, "name"))
            mm[k++] = (struct jt_member){.key = "name", .klen = 4, .v = *jt_get(msg, "name")};
        if (jt_str(msg, "category"))
            mm[k++] =
                (struct jt_member){.key = "category", .klen = 8, .v = *jt_get(msg, "category")};
        memset(&extra, 0, sizeof extra);
        extra.type = JT_OBJ;
        extra.n = k;
        extra.u.members = mm;
        props = &extra;
    }
    buf_reset(scratch);
    if (props)
        jt_dump(scratch, props, JT_DROP_NULLS);
    else
        buf_add(scratch, "{}", 2);

    origin = arena_alloc(a, sizeof *origin);
    *origin = (struct fast_origin){msg, type, received_at, batch_sent_at};
    parts.name = name;
    parts.xid = uid;
    parts.anon = aid;
    parts.event_id = mid;
    parts.props = arena_strndup(a, scratch->p, scratch->len);
    parts.raw_fn = fast_raw;
    parts.raw_ctx = origin;
    parts.max_value_bytes = max_value_bytes;
    if (!ingest_event_prepare_fast(cs, &parts, &p))
        return 0;
    memset(m, 0, sizeof *m);
    m->prep = p;
    m->type = type;
    m->prepared = 1;
    if (uid && aid) { /* both ids: the anonymous history joins the user */
        m->link_anon = xstrdup(aid);
        m->link_user = xstrdup(uid);
    }
    return 1;
}
