/* ingest/tracking.c -- messages of the Segment tracking spec (identify, track, page,
 * screen, group, alias) as native records (docs/api.md, "Tracking API").
 *
 * DESIGN: pure. A message in; out, what it means here: an event record, a contact
 * record, an anonymous id to link to a user, or a rejection (reason, field, sentence)
 * with the record kept for the dead-letter store. The caller stores them in a batch
 * (tracking_store) and answers. The instant follows Segment: the caller's `timestamp`
 * as given; else `originalTimestamp` corrected by the client's clock skew
 * (receivedAt - (sentAt - originalTimestamp)); else the time received. `messageId`
 * is the event id, so a retried message is stored once. */
#include <string.h>

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

/* The instant of the message (ms), or -1 with m rejected. */
static int64_t instant(const json_t *msg, int64_t received_at, const char *batch_sent_at,
                       struct ingest_item *m)
{
    const char *ts = str(msg, "timestamp"), *orig = str(msg, "originalTimestamp");
    const char *sent = str(msg, "sentAt") ? str(msg, "sentAt") : batch_sent_at;
    int64_t t, o, s;

    if (ts) {
        if (time_parse_iso(ts, strlen(ts), &t) == 0)
            return t;
        reject(m, "invalid_timestamp", "timestamp", "must be an ISO-8601 timestamp");
        return -1;
    }
    if (orig) {
        if (time_parse_iso(orig, strlen(orig), &o)) {
            reject(m, "invalid_timestamp", "originalTimestamp", "must be an ISO-8601 timestamp");
            return -1;
        }
        if (sent && time_parse_iso(sent, strlen(sent), &s) == 0)
            return received_at - (s - o); /* the client's clock skew taken out */
        return o;
    }
    return received_at;
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
    const char *mid;
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
    at = instant(msg, received_at, batch_sent_at, m);
    if (at < 0) {
        json_decref(uid);
        json_decref(aid);
        return 0;
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
        m->event = json_pack("{s:s,s:s,s:o}", "event", name, "occurred_at", iso, "properties",
                             props);
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
