/* store/sqlite/events.c -- events stored in blocks, one SQLite row per transaction's worth,
 * and the registry of event names.
 *
 * DESIGN: every change to an event -- first write, rewrite by its owning source, move
 * to another contact, delete -- is a *version* with its own change sequence number
 * (seq). A write transaction collects its versions in memory and stores them at
 * commit as one row of event_blocks (split every BLOCK_MAX): the id is the seq of the
 * first version, the versions have consecutive seqs, their fixed-size records
 * (struct evrec, 56 bytes) sit in `cols` and their texts (event id, properties,
 * source) in `texts`. One B-tree append per block instead of a row and four index
 * entries per event: that is what lets an import of 20M events stay fast (a random
 * index leaf rewritten per event cost 9 KB of writes each).
 *
 * A version that replaces another names it (`prev`); the replaced seq is recorded in
 * event_superseded, so a full scan knows which versions are no longer current.
 * Deleting writes a tombstone: a copy flagged EVF_DELETED. An event is identified by
 * the seq of its current version (store_event.id == .seq).
 *
 * First-write-wins needs every event_id: a process keeps one shared key map per store
 * file (struct evkeys): 8-byte slots holding a version's seq and 24 bits of the key's
 * SipHash, positioned by 40 other bits. A tag that matches is confirmed by reading the
 * version's event_id. Under the write lock a transaction first applies every block
 * committed since the map last looked (any process may have written them); after its
 * own COMMIT it applies its own. Nothing else is indexed per event: the events of
 * anonymous contacts, which an identify moves, are listed in event_anon. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite_int.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "event blocks are stored in host order, which must be little-endian"
#endif

#define EVF_DELETED 1u
#define EVF_ANON 2u
#define BLOCK_MAX 65536
#define TAG_BITS 24
#define TAG_MASK ((UINT64_C(1) << TAG_BITS) - 1)

struct evrec {
    uint64_t key; /* SipHash of the event_id */
    int64_t prev; /* the seq this version replaces; 0 for a first write */
    int64_t contact;
    int64_t occurred;
    int64_t received;
    uint32_t name;
    uint32_t text;   /* offset in the block's texts: event_id NUL props NUL */
    uint32_t source; /* offset in the block's texts: source NUL */
    uint16_t cv;     /* contract version; 0 = unvalidated */
    uint8_t flags;
    uint8_t pad;
};
_Static_assert(sizeof(struct evrec) == 56, "an event record is 56 bytes on disk");

/* The key map shared by a process's connections to one store file. */
struct evkeys {
    struct evkeys *next;
    char path[1024];
    int refs;
    pthread_mutex_t mu;
    uint64_t *slot; /* seq << TAG_BITS | tag; 0 = empty */
    size_t cap, count;
    int64_t applied; /* every version up to this seq is in the map */
};

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct evkeys *registry;

/* One stored block, decoded for reads by seq (the last one read is kept). */
struct evblock {
    int64_t first;
    size_t n;
    struct evrec *recs;
    char *texts;
    size_t tlen;
};

static const struct sq_def q_block_add = {
    SQ_BLOCK_ADD, "INSERT INTO event_blocks(id, n, cols, texts) VALUES(?1,?2,?3,?4)"};
static const struct sq_def q_block_at = {
    SQ_BLOCK_AT,
    "SELECT id, n, cols, texts FROM event_blocks WHERE id <= ?1 ORDER BY id DESC LIMIT 1"};
static const struct sq_def q_totals_add = {
    SQ_TOTALS_ADD, "UPDATE event_totals SET live = live + ?1, unvalidated = unvalidated + ?2"};
static const struct sq_def q_totals = {SQ_TOTALS, "SELECT live, unvalidated FROM event_totals"};
static const struct sq_def q_max_seq = {
    SQ_MAXSEQ_E, "SELECT id + n - 1 FROM event_blocks ORDER BY id DESC LIMIT 1"};
static const struct sq_def q_supersede = {SQ_SUPERSEDE,
                                          "INSERT INTO event_superseded(seq) VALUES(?1)"};
static const struct sq_def q_anon_add = {SQ_ANON_ADD,
                                         "INSERT INTO event_anon(contact_id, seq) VALUES(?1,?2)"};
static const struct sq_def q_anon_del = {
    SQ_ANON_DEL, "DELETE FROM event_anon WHERE contact_id = ?1 AND seq = ?2"};
static const struct sq_def q_anon_of = {
    SQ_ANON_OF, "SELECT seq FROM event_anon WHERE contact_id = ?1 ORDER BY seq"};
static const struct sq_def q_anon_clear = {SQ_ANON_CLEAR,
                                           "DELETE FROM event_anon WHERE contact_id = ?1"};
static const struct sq_def q_dead = {SQ_DEAD, "SELECT seq FROM event_superseded ORDER BY seq"};
static const struct sq_def q_sum = {SQ_SUM, "SELECT coalesce(sum(n), 0) FROM event_blocks"};
static const struct sq_def q_cols_after = {
    SQ_COLS_AFTER, "SELECT id, n, cols FROM event_blocks WHERE id > ?1 AND id < ?2 ORDER BY id"};
static const struct sq_def q_block_of = {
    SQ_BLOCK_OF, "SELECT id, n FROM event_blocks WHERE id <= ?1 ORDER BY id DESC LIMIT 1"};
/* The block holding after + 1, and every later one (without or with the texts). A scan
 * prepares its own statement: a scan's callback may start another. */
#define SCAN_FROM                                                                                  \
    " FROM event_blocks WHERE id >= coalesce((SELECT max(id) FROM event_blocks"                    \
    " WHERE id <= ?1 + 1), 0) ORDER BY id"
static const char scan_sql[] = "SELECT id, n, cols" SCAN_FROM;
static const char scan_texts_sql[] = "SELECT id, n, cols, texts" SCAN_FROM;
static const struct sq_def q_old_events = {
    SQ_OLD_EVENTS, "SELECT event_id, contact_id, name_id, occurred_at, received_at, source,"
                   " contract_version, props, deleted, anon FROM events ORDER BY seq"};
static const struct sq_def q_name_get = {SQ_NAME_GET, "SELECT id FROM event_names WHERE name = ?1"};
static const struct sq_def q_name_put = {SQ_NAME_PUT, "INSERT INTO event_names(name) VALUES(?1)"};
static const struct sq_def q_names = {SQ_NAMES, "SELECT id, name FROM event_names ORDER BY name"};
static const struct sq_def q_name_drop = {SQ_NAME_DROP, "DELETE FROM event_names WHERE id = ?1"};
static const struct sq_def q_name_of = {SQ_NAME_OF, "SELECT name FROM event_names WHERE id = ?1"};

/* A connection's event state: the write transaction's versions, the block last read. */
struct evstate {
    struct evkeys *keys;
    int synced; /* keys caught up in this write transaction */
    /* the write transaction's versions: seqs first .. first + n - 1 */
    int64_t first;
    struct evrec *recs;
    size_t n, cap, flushed;
    struct buf texts;
    uint32_t last_source; /* offset + 1 of the last source string added, 0 = none */
    uint32_t *tslot;      /* key -> index + 1 of its newest version here */
    size_t tcap;
    int64_t d_live, d_unval; /* totals not yet written */
    int64_t reserve;         /* versions announced by events_reserve() (store_caps) */
    struct evrec *out;       /* flush(): a block's records and texts as stored (reused) */
    size_t outcap;
    struct buf outtexts;
    struct evblock cache;
    struct err *migrate_err; /* events_migrate_blocks(): where its rows report */
};

/* A version as read: the record and its texts. */
struct evview {
    int64_t seq;
    struct evrec r;
    const char *event_id, *props, *source;
};

/* ---- plumbing ------------------------------------------------------------------- */

static struct evstate *state(struct store *st)
{
    if (st->ev == NULL) {
        st->ev = xcalloc(1, sizeof *st->ev);
        buf_init(&st->ev->texts);
        buf_init(&st->ev->outtexts);
    }
    return st->ev;
}

/* Runs a statement of one or two integer parameters (b is bound if it has two). */
static int run2(struct store *st, const struct sq_def *def, int64_t a, int64_t b, const char *what,
                struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, def, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, a);
    if (sqlite3_bind_parameter_count(q.s) > 1)
        sq_i64(&q, 2, b);
    return sq_exec(&q, what, e);
}

/* Record i of a cols blob, which SQLite need not align. */
static void rec_at(const void *cols, size_t i, struct evrec *r)
{
    memcpy(r, (const char *)cols + i * sizeof *r, sizeof *r);
}

static int texts_ok(const struct evrec *r, size_t tlen)
{
    return r->text < tlen && r->source < tlen;
}

static void view_of(struct evview *v, int64_t seq, const struct evrec *r, const char *texts)
{
    v->seq = seq;
    v->r = *r;
    v->event_id = texts + r->text;
    v->props = v->event_id + strlen(v->event_id) + 1;
    v->source = texts + r->source;
}

static int corrupt(struct err *e, int64_t id)
{
    return ERR(e, E_CORRUPT, "store: event block %lld is damaged", (long long)id);
}

/* Reads up to two integers of a one-row query (0 when it returns no row). */
static int one_row(struct store *st, const struct sq_def *def, int64_t *a, int64_t *b,
                   const char *what, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, def, e);

    *a = 0;
    if (b)
        *b = 0;
    return rc ? rc : sq_ints(&q, a, b, what, e);
}

/* ---- reading one version by seq -------------------------------------------------- */

static int load_block(struct store *st, struct evstate *es, int64_t seq, struct err *e)
{
    struct evblock *b = &es->cache;
    struct sq q;
    int rc = sq_prep(&q, st, &q_block_at, e);

    if (rc)
        return rc;
    sq_i64(&q, 1, seq);
    rc = sq_step(&q, "read an event block", e);
    if (rc == 0) {
        rc = ERR(e, E_NOTFOUND, "no event version %lld", (long long)seq);
    } else if (rc > 0) {
        int64_t id = sqlite3_column_int64(q.s, 0), n = sqlite3_column_int64(q.s, 1);
        const void *cols = sqlite3_column_blob(q.s, 2);
        size_t clen = (size_t)sqlite3_column_bytes(q.s, 2);
        const void *texts = sqlite3_column_blob(q.s, 3);
        size_t tlen = (size_t)sqlite3_column_bytes(q.s, 3);

        rc = 0;
        if (n <= 0 || clen != (size_t)n * sizeof(struct evrec) || tlen == 0 ||
            ((const char *)texts)[tlen - 1] != '\0') {
            rc = corrupt(e, id);
        } else if (seq >= id + n) {
            rc = ERR(e, E_NOTFOUND, "no event version %lld", (long long)seq);
        } else {
            free(b->recs);
            free(b->texts);
            b->first = id;
            b->n = (size_t)n;
            b->recs = xmalloc(clen);
            memcpy(b->recs, cols, clen);
            b->texts = xmalloc(tlen);
            memcpy(b->texts, texts, tlen);
            b->tlen = tlen;
        }
    }
    sq_done(&q);
    return rc;
}

/* The version with this seq: the transaction's own, or a stored one. */
static int version(struct store *st, struct evstate *es, int64_t seq, struct evview *v,
                   struct err *e)
{
    struct evblock *b = &es->cache;
    int rc;

    if (es->n && seq >= es->first && seq < es->first + (int64_t)es->n) {
        view_of(v, seq, &es->recs[seq - es->first], es->texts.p);
        return 0;
    }
    if (b->recs == NULL || seq < b->first || seq >= b->first + (int64_t)b->n) {
        rc = load_block(st, es, seq, e);
        if (rc)
            return rc;
    }
    if (!texts_ok(&b->recs[seq - b->first], b->tlen))
        return corrupt(e, b->first);
    view_of(v, seq, &b->recs[seq - b->first], b->texts);
    return 0;
}

/* ---- the shared key map ---------------------------------------------------------- */

static struct evkeys *keys_attach(const char *path)
{
    struct evkeys *k;

    pthread_mutex_lock(&registry_mu);
    for (k = registry; k; k = k->next)
        if (strcmp(k->path, path) == 0)
            break;
    if (k == NULL) {
        k = xcalloc(1, sizeof *k);
        snprintf(k->path, sizeof k->path, "%s", path);
        pthread_mutex_init(&k->mu, NULL);
        k->next = registry;
        registry = k;
    }
    k->refs++;
    pthread_mutex_unlock(&registry_mu);
    return k;
}

static void keys_detach(struct evkeys *k)
{
    struct evkeys **p;

    if (k == NULL)
        return;
    pthread_mutex_lock(&registry_mu);
    if (--k->refs == 0) {
        for (p = &registry; *p; p = &(*p)->next)
            if (*p == k) {
                *p = k->next;
                break;
            }
        pthread_mutex_destroy(&k->mu);
        free(k->slot);
        free(k);
    }
    pthread_mutex_unlock(&registry_mu);
}

static size_t slot_pos(const struct evkeys *k, uint64_t h)
{
    return (size_t)(h >> TAG_BITS) & (k->cap - 1);
}

static int64_t slot_seq(uint64_t v)
{
    return (int64_t)(v >> TAG_BITS);
}

/* Puts one version in the map: a first write takes a free slot, a later version the
 * slot of the one it replaces. The caller keeps the load under 3/4. */
static void keys_put(struct evkeys *k, uint64_t h, int64_t seq, int64_t prev)
{
    size_t i = slot_pos(k, h);
    uint64_t v = (uint64_t)seq << TAG_BITS | (h & TAG_MASK);

    if (prev) {
        for (; k->slot[i]; i = (i + 1) & (k->cap - 1))
            if (slot_seq(k->slot[i]) == prev) {
                k->slot[i] = v;
                return;
            }
        /* not there (its block predates a rebuild that already had this one): add */
    }
    for (; k->slot[i]; i = (i + 1) & (k->cap - 1))
        if (slot_seq(k->slot[i]) == seq)
            return; /* applied already */
    k->slot[i] = v;
    k->count++;
}

static int keys_fits(const struct evkeys *k, size_t more)
{
    return k->cap && (k->count + more) <= k->cap / 4 * 3;
}

/* Applies every committed block after k->applied; rebuilds the map (bigger) when it
 * would pass 3/4 full. A write transaction's own blocks (written before its first key
 * lookup: a large move, say) are left out: they are not committed, and if it rolls
 * back their seqs are handed out again. With k->mu held. */
static int keys_catch_up(struct store *st, struct evstate *es, struct evkeys *k, struct err *e)
{
    int64_t below = sqlite_writing(st) && es->n ? es->first : INT64_MAX;

    struct sq q;
    int rc;

    for (;;) {
        int again = 0;
        if (k->cap == 0) {
            int64_t total;
            if ((rc = one_row(st, &q_sum, &total, NULL, "count event versions", e)))
                return rc;
            total += es->reserve; /* a bulk writer's announced rows: no rebuild midway */
            es->reserve = 0;
            k->cap = 1024;
            while (k->cap / 4 * 3 < (size_t)total + (size_t)total / 8)
                k->cap *= 2;
            log_debug("store", "event key map: %zu slots for %lld versions", k->cap,
                      (long long)total);
            free(k->slot);
            k->slot = xcalloc(k->cap, sizeof *k->slot);
            k->count = 0;
            k->applied = 0;
        }
        if ((rc = sq_prep(&q, st, &q_cols_after, e)))
            return rc;
        sq_i64(&q, 1, k->applied);
        sq_i64(&q, 2, below);
        while ((rc = sq_step(&q, "read event keys", e)) > 0) {
            int64_t id = sqlite3_column_int64(q.s, 0), n = sqlite3_column_int64(q.s, 1), i;
            const void *cols = sqlite3_column_blob(q.s, 2);
            struct evrec r;

            if (n <= 0 || (size_t)sqlite3_column_bytes(q.s, 2) != (size_t)n * sizeof r) {
                sq_done(&q);
                return corrupt(e, id);
            }
            if (!keys_fits(k, (size_t)n)) {
                k->cap = 0; /* start over, bigger */
                again = 1;
                break;
            }
            for (i = 0; i < n; i++) {
                rec_at(cols, (size_t)i, &r);
                keys_put(k, r.key, id + i, r.prev);
            }
            k->applied = id + n - 1;
        }
        sq_done(&q);
        if (!again)
            return rc;
    }
}

static int keys_ready(struct store *st, struct evstate *es, struct err *e)
{
    int rc;

    if (es->keys == NULL)
        es->keys = keys_attach(st->path);
    if (es->synced && sqlite_writing(st))
        return 0;
    pthread_mutex_lock(&es->keys->mu);
    if (es->reserve && es->keys->cap && !keys_fits(es->keys, (size_t)es->reserve))
        es->keys->cap = 0; /* rebuilt now, at the size announced */
    rc = keys_catch_up(st, es, es->keys, e);
    pthread_mutex_unlock(&es->keys->mu);
    if (rc == 0 && sqlite_writing(st))
        es->synced = 1; /* nobody else can append until this transaction ends */
    return rc;
}

void events_reserve(struct store *st, int64_t versions)
{
    state(st)->reserve = versions > 0 ? versions : 0;
}

void events_prefetch(struct store *st, uint64_t key_hash)
{
    struct evstate *es = st->ev;
    const struct evkeys *k = es ? es->keys : NULL;

    /* Read without the lock: at worst a stale address is prefetched, which is harmless
     * (a prefetch never faults). */
    if (k && k->cap)
        __builtin_prefetch(&k->slot[slot_pos(k, key_hash)]);
}

/* ---- this transaction's versions ------------------------------------------------- */

static void tslot_put(struct evstate *es, uint64_t h, size_t idx);

static void tslot_grow(struct evstate *es)
{
    size_t i;

    es->tcap = es->tcap ? es->tcap * 2 : 1024;
    free(es->tslot);
    es->tslot = xcalloc(es->tcap, sizeof *es->tslot);
    for (i = 0; i < es->n; i++)
        tslot_put(es, es->recs[i].key, i);
}

static void tslot_put(struct evstate *es, uint64_t h, size_t idx)
{
    size_t i = (size_t)(h >> TAG_BITS) & (es->tcap - 1);

    for (; es->tslot[i]; i = (i + 1) & (es->tcap - 1)) {
        const struct evrec *r = &es->recs[es->tslot[i] - 1];
        if (r->key == h && strcmp(es->texts.p + r->text, es->texts.p + es->recs[idx].text) == 0) {
            es->tslot[i] = (uint32_t)idx + 1; /* the newest version wins */
            return;
        }
    }
    es->tslot[i] = (uint32_t)idx + 1;
}

/* The seq of the current version of event_id, or 0. */
static int find(struct store *st, struct evstate *es, const char *event_id, uint64_t h,
                int64_t *seq, struct err *e)
{
    struct evkeys *k;
    size_t i;
    int rc = 0;

    *seq = 0;
    if (es->tcap) {
        for (i = (size_t)(h >> TAG_BITS) & (es->tcap - 1); es->tslot[i];
             i = (i + 1) & (es->tcap - 1)) {
            const struct evrec *r = &es->recs[es->tslot[i] - 1];
            if (r->key == h && strcmp(es->texts.p + r->text, event_id) == 0) {
                *seq = es->first + (int64_t)(es->tslot[i] - 1);
                return 0;
            }
        }
    }
    k = es->keys;
    pthread_mutex_lock(&k->mu);
    for (i = slot_pos(k, h); k->cap && k->slot[i]; i = (i + 1) & (k->cap - 1)) {
        struct evview v;
        if ((k->slot[i] & TAG_MASK) != (h & TAG_MASK))
            continue;
        rc = version(st, es, slot_seq(k->slot[i]), &v, e);
        if (rc == E_NOTFOUND) {
            err_clear(e); /* a version newer than this reader's snapshot */
            rc = 0;
            continue;
        }
        if (rc)
            break;
        if (v.r.key == h && strcmp(v.event_id, event_id) == 0) {
            *seq = v.seq;
            break;
        }
    }
    pthread_mutex_unlock(&k->mu);
    return rc;
}

/* Writes versions [flushed, n) as blocks, and the totals. */
static int flush(struct store *st, struct evstate *es, struct err *e)
{
    struct buf *texts = &es->outtexts;
    struct evrec *recs;
    size_t from, i;
    int rc = 0;

    for (from = es->flushed; rc == 0 && from < es->n;) {
        size_t n = es->n - from < BLOCK_MAX ? es->n - from : BLOCK_MAX;
        uint32_t src_in = 0, src_out = 0;
        struct sq q;

        if ((rc = sq_prep(&q, st, &q_block_add, e)))
            return rc;
        if (es->outcap < n) {
            es->outcap = n;
            es->out = xrealloc(es->out, n * sizeof *es->out);
        }
        recs = es->out;
        buf_reset(texts);
        for (i = 0; i < n; i++) {
            const struct evrec *r = &es->recs[from + i];
            const char *id = es->texts.p + r->text, *props = id + strlen(id) + 1;
            recs[i] = *r;
            if (i == 0 || r->source != src_in) {
                src_in = r->source;
                src_out = (uint32_t)texts->len;
                buf_add(texts, es->texts.p + r->source, strlen(es->texts.p + r->source) + 1);
            }
            recs[i].source = src_out;
            recs[i].text = (uint32_t)texts->len;
            buf_add(texts, id, (size_t)(props + strlen(props) + 1 - id));
        }
        sq_i64(&q, 1, es->first + (int64_t)from);
        sq_i64(&q, 2, (int64_t)n);
        sq_blob(&q, 3, recs, n * sizeof *recs);
        sq_blob(&q, 4, texts->p, texts->len);
        rc = sq_exec(&q, "store an event block", e);
        from += n;
    }
    if (rc)
        return rc;
    es->flushed = es->n;
    if (es->d_live || es->d_unval) {
        rc = run2(st, &q_totals_add, es->d_live, es->d_unval, "count events", e);
        if (rc == 0)
            es->d_live = es->d_unval = 0;
    }
    return rc;
}

static void tx_clear(struct evstate *es)
{
    es->n = es->flushed = 0;
    es->first = 0;
    buf_reset(&es->texts);
    es->last_source = 0;
    if (es->tcap)
        memset(es->tslot, 0, es->tcap * sizeof *es->tslot);
    es->d_live = es->d_unval = 0;
    es->synced = 0;
}

/* Appends a version. old: the version it replaces (NULL for a first write). */
static int append(struct store *st, struct evstate *es, const struct store_event *ev, uint64_t h,
                  const struct evview *old, unsigned flags, int64_t *seq_out, struct err *e)
{
    int64_t *next = &st->next_event_seq, seq;
    struct evrec *r;
    size_t ilen, plen;
    int rc;

    ASSERT(sqlite_writing(st));
    if (ev->contract_version < 0 || ev->contract_version > UINT16_MAX)
        return ERR(e, E_INVAL, "contract version %d is out of range", ev->contract_version);
    if (es->n > UINT32_MAX / 2 || es->texts.len > UINT32_MAX / 2)
        return ERR(e, E_INVAL, "too many events in one transaction");
    if (old) {
        /* The replaced version leaves the counts, the anonymous list and the scans. */
        rc = run2(st, &q_supersede, old->seq, 0, "supersede an event version", e);
        if (rc == 0 && (old->r.flags & EVF_ANON))
            rc = run2(st, &q_anon_del, old->r.contact, old->seq, "unlist an event", e);
        if (rc)
            return rc;
        if (!(old->r.flags & EVF_DELETED)) {
            es->d_live--;
            es->d_unval -= old->r.cv == 0;
        }
    }
    seq = (*next)++;
    if (!(flags & EVF_DELETED)) {
        es->d_live++;
        es->d_unval += ev->contract_version == 0;
        if (flags & EVF_ANON) {
            rc = run2(st, &q_anon_add, ev->contact_id, seq, "list an anonymous event", e);
            if (rc)
                return rc;
        }
    }
    if (es->n == 0)
        es->first = seq;
    ASSERT(seq == es->first + (int64_t)es->n);
    if (es->n == es->cap) {
        es->cap = es->cap ? es->cap * 2 : 1024;
        es->recs = xrealloc(es->recs, es->cap * sizeof *es->recs);
    }
    r = &es->recs[es->n];
    memset(r, 0, sizeof *r);
    r->key = h;
    r->prev = old ? old->seq : 0;
    r->contact = ev->contact_id;
    r->occurred = ev->occurred_at;
    r->received = ev->received_at;
    r->name = (uint32_t)ev->name_id;
    r->cv = (uint16_t)ev->contract_version;
    r->flags = (uint8_t)flags;
    if (es->last_source == 0 ||
        strcmp(es->texts.p + es->last_source - 1, ev->source ? ev->source : "") != 0) {
        es->last_source = (uint32_t)es->texts.len + 1;
        buf_add(&es->texts, ev->source ? ev->source : "", strlen(ev->source ? ev->source : "") + 1);
    }
    r->source = es->last_source - 1;
    r->text = (uint32_t)es->texts.len;
    ilen = strlen(ev->event_id);
    plen = strlen(ev->props ? ev->props : "{}");
    buf_add(&es->texts, ev->event_id, ilen + 1);
    buf_add(&es->texts, ev->props ? ev->props : "{}", plen + 1);
    es->n++;
    if (es->n * 2 > es->tcap)
        tslot_grow(es);
    else
        tslot_put(es, h, es->n - 1);
    *seq_out = seq;
    if (es->n - es->flushed >= BLOCK_MAX)
        return flush(st, es, e);
    return 0;
}

/* A store_event from a version, for writing it again (or for a reader). */
static void event_of(const struct evview *v, struct store_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->id = ev->seq = v->seq;
    ev->prev = v->r.prev;
    ev->contact_id = v->r.contact;
    ev->name_id = v->r.name;
    ev->occurred_at = v->r.occurred;
    ev->received_at = v->r.received;
    ev->event_id = v->event_id;
    ev->source = v->source;
    ev->contract_version = v->r.cv;
    ev->props = v->props;
    ev->deleted = (v->r.flags & EVF_DELETED) != 0;
}

/* ---- conn.c's hooks -------------------------------------------------------------- */

int events_flush(struct store *st, struct err *e)
{
    struct evstate *es = st->ev;

    return es && es->n > es->flushed ? flush(st, es, e) : 0;
}

void events_end(struct store *st, int committed)
{
    struct evstate *es = st->ev;
    struct evkeys *k;
    size_t i;

    if (es == NULL)
        return;
    k = es->keys;
    if (committed && es->n && k) {
        pthread_mutex_lock(&k->mu);
        /* Applied in place only when the map was current just before this
         * transaction's versions (else the next catch-up reads them). */
        if (k->applied == es->first - 1 && keys_fits(k, es->n)) {
            for (i = 0; i < es->n; i++) {
                if (i + 8 < es->n)
                    __builtin_prefetch(&k->slot[slot_pos(k, es->recs[i + 8].key)]);
                keys_put(k, es->recs[i].key, es->first + (int64_t)i, es->recs[i].prev);
            }
            k->applied = es->first + (int64_t)es->n - 1;
        }
        pthread_mutex_unlock(&k->mu);
    }
    tx_clear(es);
}

void events_close(struct store *st)
{
    struct evstate *es = st->ev;

    if (es == NULL)
        return;
    keys_detach(es->keys);
    free(es->recs);
    free(es->tslot);
    buf_release(&es->texts);
    free(es->out);
    buf_release(&es->outtexts);
    free(es->cache.recs);
    free(es->cache.texts);
    free(es);
    st->ev = NULL;
}

int events_max_seq(struct store *st, int64_t *out, struct err *e)
{
    return one_row(st, &q_max_seq, out, NULL, "read event seq", e);
}

int events_totals(struct store *st, int64_t *live, int64_t *unvalidated, struct err *e)
{
    return one_row(st, &q_totals, live, unvalidated, "count events", e);
}

/* The old rows as events to append. */
static int row_old_event(sqlite3_stmt *s, void *ctx)
{
    struct store *st = ctx;
    struct evstate *es = st->ev;
    struct store_event ev = {
        .event_id = sq_col_text(s, 0),
        .contact_id = sqlite3_column_int64(s, 1),
        .name_id = sqlite3_column_int64(s, 2),
        .occurred_at = sqlite3_column_int64(s, 3),
        .received_at = sqlite3_column_int64(s, 4),
        .source = sq_col_text(s, 5),
        .contract_version = sqlite3_column_int(s, 6),
        .props = sq_col_text(s, 7),
    };
    unsigned flags =
        (sqlite3_column_int(s, 8) ? EVF_DELETED : 0) | (sqlite3_column_int(s, 9) ? EVF_ANON : 0);
    struct err *e = es->migrate_err;
    int64_t seq;
    int rc = append(st, es, &ev, store_event_key_hash(ev.event_id), NULL, flags, &seq, e);

    if (rc == 0 && es->n >= BLOCK_MAX)
        rc = flush(st, es, e);
    if (rc == 0 && es->flushed == es->n)
        tx_clear(es); /* nothing reads them back: keep memory to one block */
    return rc;
}

int events_migrate_blocks(struct store *st, struct err *e)
{
    struct evstate *es = state(st);
    struct sq q;
    int rc = sq_prep(&q, st, &q_old_events, e);

    if (rc)
        return rc;
    st->next_event_seq = 1;
    tx_clear(es);
    es->migrate_err = e;
    rc = sq_each(&q, "read the old events", row_old_event, st, NULL, e);
    es->migrate_err = NULL;
    if (rc == 0)
        rc = flush(st, es, e);
    tx_clear(es);
    return rc;
}

/* ---- writes ---------------------------------------------------------------------- */

int store_event_insert(struct store *st, struct store_event *ev, int *inserted, struct err *e)
{
    struct evstate *es = state(st);
    uint64_t h = ev->key_hash ? ev->key_hash : store_event_key_hash(ev->event_id);
    int64_t seq;
    int rc;

    ASSERT(sqlite_writing(st));
    *inserted = 0;
    if ((rc = keys_ready(st, es, e)) || (rc = find(st, es, ev->event_id, h, &seq, e)))
        return rc;
    if (seq)
        return 0;
    rc = append(st, es, ev, h, NULL, ev->anonymous ? EVF_ANON : 0, &seq, e);
    if (rc == 0) {
        ev->id = ev->seq = seq;
        *inserted = 1;
    }
    return rc;
}

int store_event_upsert_owned(struct store *st, struct store_event *ev, int *outcome, struct err *e)
{
    struct evstate *es = state(st);
    uint64_t h = ev->key_hash ? ev->key_hash : store_event_key_hash(ev->event_id);
    struct evview old;
    int64_t seq;
    int rc;

    ASSERT(sqlite_writing(st));
    *outcome = 0;
    if ((rc = keys_ready(st, es, e)) || (rc = find(st, es, ev->event_id, h, &seq, e)))
        return rc;
    if (seq == 0) {
        rc = append(st, es, ev, h, NULL, ev->anonymous ? EVF_ANON : 0, &seq, e);
        if (rc == 0) {
            ev->id = ev->seq = seq;
            *outcome = 1;
        }
        return rc;
    }
    if ((rc = version(st, es, seq, &old, e)))
        return rc;
    if (strcmp(old.source, ev->source) != 0)
        return ERR(e, E_CONFLICT, "event '%s' belongs to source '%s'", ev->event_id, old.source);
    if (old.r.contact == ev->contact_id && old.r.name == (uint32_t)ev->name_id &&
        old.r.occurred == ev->occurred_at && old.r.cv == ev->contract_version &&
        strcmp(old.props, ev->props) == 0 && !(old.r.flags & EVF_DELETED))
        return 0;
    rc = append(st, es, ev, h, &old, ev->anonymous ? EVF_ANON : 0, &seq, e);
    if (rc == 0) {
        ev->id = ev->seq = seq;
        *outcome = 2;
    }
    return rc;
}

/* Writes a version again with another contact or as a tombstone. The old version's
 * texts are copied first: appending may move them. */
static int rewrite(struct store *st, struct evstate *es, const struct evview *old, int64_t contact,
                   unsigned flags, struct err *e)
{
    struct store_event ev;
    char *id = xstrdup(old->event_id), *props = xstrdup(old->props), *src = xstrdup(old->source);
    int64_t seq;
    int rc;

    event_of(old, &ev);
    ev.contact_id = contact;
    ev.event_id = id;
    ev.props = props;
    ev.source = src;
    rc = append(st, es, &ev, old->r.key, old, flags, &seq, e);
    free(id);
    free(props);
    free(src);
    return rc;
}

int store_event_delete_owned(struct store *st, const char *event_id, const char *source,
                             int *deleted, struct err *e)
{
    struct evstate *es = state(st);
    uint64_t h = store_event_key_hash(event_id);
    struct evview old;
    int64_t seq;
    int rc;

    ASSERT(sqlite_writing(st));
    *deleted = 0;
    if ((rc = keys_ready(st, es, e)) || (rc = find(st, es, event_id, h, &seq, e)) || seq == 0)
        return rc;
    if ((rc = version(st, es, seq, &old, e)))
        return rc;
    if (strcmp(old.source, source) != 0 || (old.r.flags & EVF_DELETED))
        return 0;
    rc = rewrite(st, es, &old, old.r.contact, EVF_DELETED, e);
    *deleted = rc == 0;
    return rc;
}

/* Reads the integers of column 0 into a new array (*out, caller frees). key >= 0 binds
 * ?1. */
static int seqs_load(struct store *st, const struct sq_def *def, int64_t key, int64_t **out,
                     size_t *n, const char *what, struct err *e)
{
    size_t cap = 0;
    struct sq q;
    int rc;

    *out = NULL;
    *n = 0;
    if ((rc = sq_prep(&q, st, def, e)))
        return rc;
    if (key >= 0)
        sq_i64(&q, 1, key);
    while ((rc = sq_step(&q, what, e)) > 0) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 256;
            *out = xrealloc(*out, cap * sizeof **out);
        }
        (*out)[(*n)++] = sqlite3_column_int64(q.s, 0);
    }
    sq_done(&q);
    return rc;
}

int store_events_move(struct store *st, int64_t from_contact, int64_t to_contact, int64_t *moved,
                      struct err *e)
{
    struct evstate *es = state(st);
    int64_t *seqs = NULL;
    size_t n = 0, i;
    int rc;

    ASSERT(sqlite_writing(st));
    if (moved)
        *moved = 0;
    rc = seqs_load(st, &q_anon_of, from_contact, &seqs, &n, "list events to move", e);
    for (i = 0; rc == 0 && i < n; i++) {
        struct evview old;
        rc = version(st, es, seqs[i], &old, e);
        if (rc == 0)
            rc = rewrite(st, es, &old, to_contact, 0, e);
    }
    free(seqs);
    if (rc == 0 && moved)
        *moved = (int64_t)n;
    return rc;
}

int store_events_identified(struct store *st, int64_t contact_id, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(sqlite_writing(st));
    if ((rc = sq_prep(&q, st, &q_anon_clear, e)))
        return rc;
    sq_i64(&q, 1, contact_id);
    return sq_exec(&q, "mark events identified", e);
}

/* ---- scans ----------------------------------------------------------------------- */

/* The sorted seqs of replaced versions. */
static int dead_load(struct store *st, int64_t **out, size_t *n, struct err *e)
{
    return seqs_load(st, &q_dead, -1, out, n, "read replaced event versions", e);
}

static int is_dead(const int64_t *dead, size_t n, int64_t seq)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (dead[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && dead[lo] == seq;
}

/* Calls fn for each version with seq > after (at most limit; 0 = all) in seq order,
 * texts only if with_texts. live: only current, undeleted versions of name_id
 * (0 = any name) or contact (0 = any). */
struct scan {
    int64_t after, limit, name, contact;
    int with_texts, live;
    int (*fn)(void *ctx, const struct evview *v);
    void *ctx;
};

static int scan(struct store *st, const struct scan *sc, struct err *e)
{
    int64_t *dead = NULL, count = 0;
    size_t ndead = 0;
    struct sq q = {0};
    int rc;

    if ((rc = events_flush(st, e)))
        return rc;
    if (sc->live && (rc = dead_load(st, &dead, &ndead, e)))
        return rc;
    if ((rc = sq_prep_sql(&q, st, sc->with_texts ? scan_texts_sql : scan_sql, e)))
        goto out;
    sq_i64(&q, 1, sc->after);
    while ((rc = sq_step(&q, "read events", e)) > 0) {
        sqlite3_stmt *s = q.s;
        int64_t id = sqlite3_column_int64(s, 0), n = sqlite3_column_int64(s, 1), i;
        const void *cols = sqlite3_column_blob(s, 2);
        const char *texts = sc->with_texts ? sqlite3_column_blob(s, 3) : NULL;
        size_t tlen = sc->with_texts ? (size_t)sqlite3_column_bytes(s, 3) : 0;
        struct evrec r;
        struct evview v;

        if (n <= 0 || (size_t)sqlite3_column_bytes(s, 2) != (size_t)n * sizeof r ||
            (sc->with_texts && (tlen == 0 || texts[tlen - 1] != '\0'))) {
            rc = corrupt(e, id);
            goto out;
        }
        for (i = id > sc->after ? 0 : sc->after + 1 - id; i < n; i++) {
            rec_at(cols, (size_t)i, &r);
            if (sc->live && ((r.flags & EVF_DELETED) || is_dead(dead, ndead, id + i)))
                continue;
            if ((sc->name && r.name != (uint32_t)sc->name) ||
                (sc->contact && r.contact != sc->contact))
                continue;
            if (texts) {
                if (!texts_ok(&r, tlen)) {
                    rc = corrupt(e, id);
                    goto out;
                }
                view_of(&v, id + i, &r, texts);
            } else {
                v.seq = id + i;
                v.r = r;
                v.event_id = v.props = v.source = NULL;
            }
            if ((rc = sc->fn(sc->ctx, &v)) != 0)
                goto out;
            if (sc->limit > 0 && ++count >= sc->limit)
                goto out; /* rc is 0 */
        }
    }
out:
    sq_done(&q);
    free(dead);
    return rc;
}

struct slim {
    store_event_fn fn;
    void *ctx;
};

static int on_slim(void *ctx, const struct evview *v)
{
    struct slim *sl = ctx;
    struct store_event ev = {
        .id = v->seq,
        .seq = v->seq,
        .prev = v->r.prev,
        .contact_id = v->r.contact,
        .name_id = v->r.name,
        .occurred_at = v->r.occurred,
        .deleted = (v->r.flags & EVF_DELETED) != 0,
        .props = v->props,
    };

    return sl->fn(sl->ctx, &ev);
}

int store_events_since(struct store *st, int64_t after_seq, int64_t limit, int with_props,
                       store_event_fn fn, void *ctx, struct err *e)
{
    struct slim sl = {fn, ctx};
    struct scan sc = {
        .after = after_seq, .limit = limit, .with_texts = with_props, .fn = on_slim, .ctx = &sl};

    return scan(st, &sc, e);
}

struct full {
    store_event_fn fn;
    void *ctx;
};

static int on_full(void *ctx, const struct evview *v)
{
    struct full *f = ctx;
    struct store_event ev;

    event_of(v, &ev);
    return f->fn(f->ctx, &ev);
}

int store_events_live(struct store *st, int64_t after_seq, store_event_fn fn, void *ctx,
                      struct err *e)
{
    struct full f = {fn, ctx};
    struct scan sc = {.after = after_seq, .with_texts = 1, .live = 1, .fn = on_full, .ctx = &f};

    return scan(st, &sc, e);
}

struct propscan {
    const char *const *props;
    int n;
    store_props_fn fn;
    void *ctx;
    struct buf scratch;
};

static int on_props(void *ctx, const struct evview *v)
{
    struct propscan *ps = ctx;
    struct store_prop_value pv[STORE_MAX_PROPS];

    store_props_find(v->props, ps->props, ps->n, pv, &ps->scratch);
    return ps->fn(ps->ctx, v->seq, v->r.contact, v->r.occurred, pv, ps->n);
}

int store_event_prop_values(struct store *st, int64_t name_id, const char *const *props, int n,
                            store_props_fn fn, void *ctx, struct err *e)
{
    struct propscan ps = {props, n, fn, ctx, {0}};
    struct scan sc = {.name = name_id, .with_texts = 1, .live = 1, .fn = on_props, .ctx = &ps};
    int rc;

    if (n < 1 || n > STORE_MAX_PROPS)
        return ERR(e, E_INVAL, "%d properties: one scan reads 1 to %d", n, STORE_MAX_PROPS);
    buf_init(&ps.scratch);
    rc = scan(st, &sc, e);
    buf_release(&ps.scratch);
    return rc;
}

/* ---- one contact, one event ------------------------------------------------------ */

/* Calls fn with a full event: its name looked up. */
static int emit_full(struct store *st, struct evstate *es, const struct evview *v,
                     store_event_fn fn, void *ctx, struct err *e)
{
    struct store_event ev;
    char *name = NULL;
    struct sq q;
    int rc;

    if ((rc = sq_prep(&q, st, &q_name_of, e)))
        return rc;
    sq_i64(&q, 1, v->r.name);
    rc = sq_step(&q, "read an event name", e);
    if (rc > 0)
        name = sq_col_dup(q.s, 0);
    sq_done(&q);
    if (rc < 0)
        return rc;
    event_of(v, &ev);
    ev.name = name ? name : "";
    rc = fn(ctx, &ev);
    free(name);
    return rc;
}

struct recent {
    int64_t *seq, *at;
    size_t n, cap;
};

static int on_contact(void *ctx, const struct evview *v)
{
    struct recent *rc = ctx;

    if (rc->n == rc->cap) {
        rc->cap = rc->cap ? rc->cap * 2 : 64;
        rc->seq = xrealloc(rc->seq, rc->cap * sizeof *rc->seq);
        rc->at = xrealloc(rc->at, rc->cap * sizeof *rc->at);
    }
    rc->seq[rc->n] = v->seq;
    rc->at[rc->n++] = v->r.occurred;
    return 0;
}

int store_events_of_contact(struct store *st, int64_t contact_id, int limit, store_event_fn fn,
                            void *ctx, struct err *e)
{
    struct evstate *es = state(st);
    struct recent r = {0};
    struct scan sc = {.contact = contact_id, .live = 1, .fn = on_contact, .ctx = &r};
    size_t i, j, take;
    int rc;

    if (contact_id <= 0)
        return 0;
    rc = scan(st, &sc, e);
    /* Newest first: a selection of the `limit` latest (a contact has few events). */
    take = rc == 0 && limit > 0 ? ((size_t)limit < r.n ? (size_t)limit : r.n) : 0;
    for (i = 0; rc == 0 && i < take; i++) {
        size_t best = i;
        int64_t t;
        struct evview v;
        for (j = i + 1; j < r.n; j++)
            if (r.at[j] > r.at[best] || (r.at[j] == r.at[best] && r.seq[j] > r.seq[best]))
                best = j;
        t = r.seq[i], r.seq[i] = r.seq[best], r.seq[best] = t;
        t = r.at[i], r.at[i] = r.at[best], r.at[best] = t;
        rc = version(st, es, r.seq[i], &v, e);
        if (rc == 0)
            rc = emit_full(st, es, &v, fn, ctx, e);
    }
    free(r.seq);
    free(r.at);
    return rc;
}

int store_event_get(struct store *st, const char *event_id, store_event_fn fn, void *ctx,
                    struct err *e)
{
    struct evstate *es = state(st);
    uint64_t h = store_event_key_hash(event_id);
    struct evview v;
    int64_t seq;
    int rc;

    if ((rc = events_flush(st, e)) || (rc = keys_ready(st, es, e)) ||
        (rc = find(st, es, event_id, h, &seq, e)) || seq == 0)
        return rc;
    if ((rc = version(st, es, seq, &v, e)))
        return rc;
    return emit_full(st, es, &v, fn, ctx, e);
}

/* Reads n bytes at off of a block's column into out (incremental blob I/O: only the
 * pages that hold them, not the megabytes of the whole block). */
static int blob_read(struct store *st, const char *col, int64_t id, void *out, int n, int off,
                     struct err *e)
{
    sqlite3_blob *b = NULL;
    int rc = sqlite3_blob_open(st->db, "main", "event_blocks", col, id, 0, &b);

    if (rc == SQLITE_OK) {
        int len = sqlite3_blob_bytes(b);
        if (off < 0 || n < 0 || off > len)
            rc = SQLITE_CORRUPT;
        else
            rc = sqlite3_blob_read(b, out, n < len - off ? n : len - off, off);
    }
    sqlite3_blob_close(b);
    return rc == SQLITE_OK        ? 0
           : rc == SQLITE_CORRUPT ? corrupt(e, id)
                                  : sq_err(st, e, rc, "read an event");
}

int store_event_by_seq(struct store *st, int64_t seq, store_event_fn fn, void *ctx, struct err *e)
{
    struct evstate *es = state(st);
    struct evview v;
    int64_t id = 0, n = 0;
    struct sq q;
    char texts[2048];
    int rc;

    if ((rc = events_flush(st, e)))
        return rc;
    if (es->n && seq >= es->first && seq < es->first + (int64_t)es->n) {
        view_of(&v, seq, &es->recs[seq - es->first], es->texts.p);
        return emit_full(st, es, &v, fn, ctx, e);
    }
    if ((rc = sq_prep(&q, st, &q_block_of, e)))
        return rc;
    sq_i64(&q, 1, seq);
    if ((rc = sq_ints(&q, &id, &n, "find an event block", e)))
        return rc;
    if (n == 0 || seq >= id + n)
        return ERR(e, E_NOTFOUND, "no event version %lld", (long long)seq);
    if ((rc = blob_read(st, "cols", id, &v.r, sizeof v.r, (int)((seq - id) * (int64_t)sizeof v.r),
                        e)))
        return rc;
    /* The source, then the event id and properties (properties are capped well below this:
     * a longer text takes the whole-block path). */
    memset(texts, 0, sizeof texts);
    if ((rc = blob_read(st, "texts", id, texts, (int)sizeof texts - 1, (int)v.r.text, e)))
        return rc;
    if (memchr(texts, 0, sizeof texts - 1) == NULL ||
        memchr(texts + strlen(texts) + 1, 0, sizeof texts - 2 - strlen(texts)) == NULL) {
        if ((rc = version(st, es, seq, &v, e)))
            return rc;
        return emit_full(st, es, &v, fn, ctx, e);
    }
    {
        char src[256] = "";
        if ((rc = blob_read(st, "texts", id, src, (int)sizeof src - 1, (int)v.r.source, e)))
            return rc;
        src[sizeof src - 1] = '\0';
        v.seq = seq;
        v.event_id = texts;
        v.props = texts + strlen(texts) + 1;
        v.source = src;
        return emit_full(st, es, &v, fn, ctx, e);
    }
}

/* ---- the event-name registry ---------------------------------------------------- */

int store_event_name_id(struct store *st, const char *name, int create, int64_t *id, struct err *e)
{
    struct sq q;
    int rc = sq_prep(&q, st, &q_name_get, e);

    if (rc)
        return rc;
    sq_text(&q, 1, name);
    rc = sq_step(&q, "read event name", e);
    *id = rc > 0 ? sqlite3_column_int64(q.s, 0) : 0;
    sq_done(&q);
    if (rc != 0 || !create)
        return rc > 0 ? 0 : rc;
    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_name_put, e)))
        return rc;
    sq_text(&q, 1, name);
    rc = sq_exec(&q, "record event name", e);
    if (rc == 0)
        *id = sq_last_id(st);
    return rc;
}

int store_event_name_drop(struct store *st, int64_t id, struct err *e)
{
    struct sq q;
    int rc;

    ASSERT(st->in_tx);
    if ((rc = sq_prep(&q, st, &q_name_drop, e)))
        return rc;
    sq_i64(&q, 1, id);
    return sq_exec(&q, "drop event name", e);
}

struct name_visit {
    store_name_fn fn;
    void *ctx;
};

static int row_name(sqlite3_stmt *s, void *ctx)
{
    struct name_visit *v = ctx;

    return v->fn(v->ctx, sqlite3_column_int64(s, 0), sq_col_text(s, 1));
}

int store_event_names(struct store *st, store_name_fn fn, void *ctx, struct err *e)
{
    struct name_visit v = {fn, ctx};
    struct sq q;
    int rc = sq_prep(&q, st, &q_names, e);

    return rc ? rc : sq_each(&q, "read event names", row_name, &v, NULL, e);
}
