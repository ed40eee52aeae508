/* store/store.c -- what every backend shares: opening by location string, the pool of
 * connections for threads, the event-id hash, and the records' init/release helpers.
 *
 * DESIGN: a location names a backend and where its data lives ("sqlite:DIR"; a bare
 * path is a SQLite directory, as --data always was). Backends other than SQLite are
 * recognised so that a mistake reads as one ("not built yet"), not as a directory
 * created under a strange name; so is any other URL (scheme://), while a path with a
 * colon in it ("backup:2024") stays a path. */
#include <pthread.h>
#include <stdio.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_int.h"

/* ---- locations ------------------------------------------------------------------- */

/* The length of the scheme before ':' (letters, then letters, digits, '+', '-' or '.'),
 * or 0 for a location without one (a path). */
static size_t scheme_len(const char *loc)
{
    size_t i = 0;

    if (!((loc[0] >= 'a' && loc[0] <= 'z') || (loc[0] >= 'A' && loc[0] <= 'Z')))
        return 0;
    for (i = 1; loc[i] && loc[i] != ':'; i++) {
        char c = loc[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '-' || c == '.'))
            return 0;
    }
    return loc[i] == ':' ? i : 0;
}

int store_location_parse(const char *location, enum store_kind *kind, const char **where,
                         struct err *e)
{
    size_t n;

    if (location == NULL || location[0] == '\0')
        return ERR(e, E_INVAL, "store: no location given (expected sqlite:DIR or a directory)");
    n = scheme_len(location);
    if (n == 0) {
        *kind = STORE_SQLITE;
        *where = location;
        return 0;
    }
    if (n == 6 && strncmp(location, "sqlite", 6) == 0) {
        if (location[7] == '\0')
            return ERR(e, E_INVAL, "store: location '%s' names no directory (sqlite:DIR)",
                       location);
        *kind = STORE_SQLITE;
        *where = location + 7;
        return 0;
    }
    if ((n == 8 && strncmp(location, "postgres", 8) == 0) ||
        (n == 10 && strncmp(location, "postgresql", 10) == 0)) {
        *kind = STORE_PG;
        *where = location;
        return 0;
    }
    /* A URL of another backend is a mistake to name; "backup:2024" or "d:1" without
     * "//" is a directory, as --data always took it. */
    if (strncmp(location + n, "://", 3) != 0) {
        *kind = STORE_SQLITE;
        *where = location;
        return 0;
    }
    return ERR(e, E_INVAL,
               "store: unknown location '%s' (expected sqlite:DIR, a directory, or "
               "postgresql://...)",
               location);
}

static int not_built(const char *location, struct err *e)
{
    return ERR(e, E_INVAL, "store: '%s': the PostgreSQL backend is not built yet", location);
}

int store_open(struct store **out, const char *location, const struct store_opts *opts,
               struct err *e)
{
    enum store_kind kind;
    const char *where;
    int rc;

    *out = NULL;
    if ((rc = store_location_parse(location, &kind, &where, e)))
        return rc;
    if (kind == STORE_PG)
        return not_built(location, e);
    return sqlite_store_open(out, where, opts, e);
}

int store_exists(const char *location, int *exists, struct err *e)
{
    enum store_kind kind;
    const char *where;
    char path[1100];
    int rc;

    *exists = 0;
    if ((rc = store_location_parse(location, &kind, &where, e)))
        return rc;
    if (kind == STORE_PG)
        return not_built(location, e);
    snprintf(path, sizeof path, "%s/engage.db", where);
    *exists = access(path, F_OK) == 0;
    return 0;
}

/* ---- a pool of connections ------------------------------------------------------- */

struct store_pool {
    pthread_mutex_t mu; /* mu protects free_list, nfree */
    pthread_cond_t cv;
    struct store **all, **free_list;
    int n, nfree;
};

int store_pool_new(struct store_pool **out, const char *location, int size,
                   const struct store_opts *opts, struct err *e)
{
    struct store_pool *p = xcalloc(1, sizeof *p);
    int i, rc;

    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->all = xcalloc((size_t)size, sizeof *p->all);
    p->free_list = xcalloc((size_t)size, sizeof *p->free_list);
    for (i = 0; i < size; i++) {
        rc = store_open(&p->all[i], location, opts, e);
        if (rc) {
            p->n = i;
            store_pool_free(p);
            return rc;
        }
        p->free_list[i] = p->all[i];
    }
    p->n = p->nfree = size;
    *out = p;
    return 0;
}

void store_pool_free(struct store_pool *p)
{
    int i;

    if (p == NULL)
        return;
    for (i = 0; i < p->n; i++)
        store_close(p->all[i]);
    free(p->all);
    free(p->free_list);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

struct store *store_pool_get(struct store_pool *p)
{
    struct store *st;

    pthread_mutex_lock(&p->mu);
    while (p->nfree == 0)
        pthread_cond_wait(&p->cv, &p->mu);
    st = p->free_list[--p->nfree];
    pthread_mutex_unlock(&p->mu);
    return st;
}

void store_pool_put(struct store_pool *p, struct store *st)
{
    store_rollback(st); /* a handler that failed mid-transaction leaves nothing open */
    pthread_mutex_lock(&p->mu);
    p->free_list[p->nfree++] = st;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* ---- shared helpers -------------------------------------------------------------- */

int store_finish(struct store *st, int rc, struct err *e)
{
    if (rc == 0)
        return store_commit(st, e);
    store_rollback(st);
    return rc;
}

uint64_t store_event_key_hash(const char *event_id)
{
    static const unsigned char k[crypto_shorthash_KEYBYTES] = "engage-event-ids";
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t h;

    crypto_shorthash(out, (const unsigned char *)event_id, strlen(event_id), k);
    memcpy(&h, out, sizeof h);
    return h;
}

void store_contact_init(struct store_contact *c)
{
    memset(c, 0, sizeof *c);
}

void store_contact_release(struct store_contact *c)
{
    free(c->external_id);
    free(c->email);
    json_decref(c->attrs);
    store_contact_init(c);
}

void store_sync_source_release(struct store_sync_source *s)
{
    free(s->dsn);
    free(s->password);
    free(s->mapping);
    memset(s, 0, sizeof *s);
}

void store_sync_checkpoint_release(struct store_sync_checkpoint *c)
{
    free(c->cursor);
    free(c->key);
    free(c->trail);
    memset(c, 0, sizeof *c);
}

/* ---- the send ledger's names ------------------------------------------------------- */

static const char *const msg_state_names[MSG_STATES] = {
    [MSG_QUEUED] = "queued",   [MSG_SENDING] = "sending", [MSG_SENT] = "sent",
    [MSG_RETRY] = "retry",     [MSG_FAILED] = "failed",   [MSG_DEAD] = "dead",
    [MSG_SKIPPED] = "skipped",
};

const char *store_msg_state_name(int s)
{
    return s >= 0 && s < MSG_STATES ? msg_state_names[s] : "unknown";
}

int store_msg_state_parse(const char *s)
{
    int i;

    for (i = 0; s && i < MSG_STATES; i++)
        if (strcmp(s, msg_state_names[i]) == 0)
            return i;
    return -1;
}

void store_message_id(int64_t run_id, int64_t contact_id, char *buf, size_t cap)
{
    snprintf(buf, cap, "%lld.%lld", (long long)run_id, (long long)contact_id);
}

/* One positive id in canonical form (digits, no sign, no leading zero). */
static int message_id_part(const char *s, size_t n, int64_t *out)
{
    size_t i;

    if (n == 0 || s[0] == '0')
        return E_INVAL;
    for (i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return E_INVAL;
    return parse_i64(s, n, out);
}

int store_message_id_parse(const char *s, int64_t *run_id, int64_t *contact_id)
{
    const char *dot = s ? strchr(s, '.') : NULL;

    if (dot == NULL || message_id_part(s, (size_t)(dot - s), run_id) ||
        message_id_part(dot + 1, strlen(dot + 1), contact_id))
        return E_INVAL;
    return 0;
}
