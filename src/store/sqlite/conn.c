/* store/sqlite/conn.c -- a SQLite connection: opening (files, pragmas, the schema
 * check), closing, transactions and their change sequences, the online backup, and
 * the WAL checkpointer of a bulk connection.
 *
 * DESIGN: one sqlite3 connection per struct store, WAL journal, synchronous=NORMAL
 * (a commit survives a process crash; only an OS crash may lose the last commits),
 * busy_timeout for other processes. Change sequences: store_begin() takes the write
 * lock (BEGIN IMMEDIATE) and reads max(seq) of contacts and events once; writes in
 * that transaction hand out the next numbers. Writers are serialised by SQLite's lock,
 * so the sequences increase in commit order and a reader never later sees a change
 * numbered at or below what it has read (store.h, promise 1). */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../core/worker.h"
#include "sqlite_int.h"

/* ---- the WAL checkpointer of a bulk connection -------------------------------------
 * Copies the WAL into the database (and fsyncs) on a worker (core/worker.h) with a
 * connection of its own while the writer goes on committing: the commit hook kicks it
 * (a flag and worker_wake), and each tick that finds the flag set runs one passive
 * checkpoint. The worker also ticks once as it starts; the flag makes that tick, like
 * any wake without a kick, do nothing, so it checkpoints only when kicked. */

struct ckpt {
    struct worker *w;
    sqlite3 *db; /* the worker's thread only (after start) */
    _Atomic int kicked;
    int last_kick; /* WAL frames at the last kick (the writer's thread only) */
};

/* Passive checkpoints whenever the writer has added CKPT_KICK frames (64 MiB); a
 * blocking one by the writer itself past CKPT_MAX frames (1 GiB), since a WAL that
 * is never caught up with at a commit never restarts from its beginning. */
#define CKPT_KICK 16384
#define CKPT_MAX 262144

/* A passive checkpoint's result is not an error: one that could not copy everything
 * (the writer's blocking one under way) leaves the rest to the next. */
static int ckpt_tick(void *ctx, struct store *unused, struct err *e)
{
    struct ckpt *c = ctx;

    (void)unused;
    (void)e;
    if (atomic_exchange(&c->kicked, 0))
        sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return 0;
}

static const struct worker_def ckpt_worker = {
    .name = "wal-checkpoint",
    .tick = ckpt_tick,
    .interval_ms = 0, /* only when kicked */
    .store = WORKER_NO_STORE,
};

/* After each commit of the bulk connection (sqlite3_wal_hook). */
static int ckpt_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct ckpt *c = arg;

    if (frames >= CKPT_MAX) {
        /* Waits for the checkpointer's pass, finishes the copy, restarts the WAL. */
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
        c->last_kick = 0;
        return SQLITE_OK;
    }
    if (frames < c->last_kick)
        c->last_kick = 0; /* the WAL restarted */
    if (frames - c->last_kick >= CKPT_KICK) {
        c->last_kick = frames;
        atomic_store(&c->kicked, 1);
        worker_wake(c->w);
    }
    return SQLITE_OK;
}

static int ckpt_start(struct store *st, struct err *e)
{
    struct ckpt *c = xcalloc(1, sizeof *c);
    int rc = sqlite3_open_v2(st->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);

    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(c->db, st->busy_timeout_ms > 0 ? st->busy_timeout_ms : 5000);
        rc = sqlite3_exec(c->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        rc = ERR(e, E_IO, "store: cannot open a checkpoint connection to '%s': %s", st->path,
                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        goto out;
    }
    rc = worker_start(&c->w, NULL, &ckpt_worker, c, e);
    if (rc)
        goto out;
    st->ckpt = c;
    sqlite3_wal_hook(st->db, ckpt_hook, c); /* replaces the automatic checkpoints */
out:
    if (rc) {
        sqlite3_close(c->db);
        free(c);
    }
    return rc;
}

static void ckpt_stop(struct store *st)
{
    struct ckpt *c = st->ckpt;

    if (c == NULL)
        return;
    sqlite3_wal_hook(st->db, NULL, NULL);
    worker_stop(c->w); /* a pass under way finishes; no other starts */
    sqlite3_close(c->db);
    free(c);
    st->ckpt = NULL;
}

/* The store holds e-mail addresses, key hashes and sealed passwords: its directory is
 * 0700 and its files (engage.db, its WAL and shared-memory files, backups) 0600. A new
 * file is created 0600 before SQLite opens it (SQLite gives the WAL and shm files the
 * database file's mode); one found more open, from an older version, is tightened. */
static int tighten(const char *path, mode_t mode, struct err *e)
{
    struct stat sb;

    if (stat(path, &sb) != 0)
        return errno == ENOENT ? 0
                               : ERR(e, E_IO, "store: cannot stat '%s': %s", path, strerror(errno));
    if ((sb.st_mode & 077) == 0)
        return 0;
    if (chmod(path, mode) != 0)
        return ERR(e, E_IO,
                   "store: '%s' is readable by others (mode %04o) and cannot be "
                   "made %04o: %s",
                   path, (unsigned)(sb.st_mode & 07777), (unsigned)mode, strerror(errno));
    log_warn("store", "'%s' was mode %04o: made %04o (it holds personal data)", path,
             (unsigned)(sb.st_mode & 07777), (unsigned)mode);
    return 0;
}

/* Creates path empty with mode 0600 if it does not exist (an empty file is an empty
 * SQLite database). */
static int create_private(const char *path, struct err *e)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

    if (fd >= 0) {
        close(fd);
        return 0;
    }
    return errno == EEXIST ? 0
                           : ERR(e, E_IO, "store: cannot create '%s': %s", path, strerror(errno));
}

static int store_files_private(const char *data_dir, const char *db, struct err *e)
{
    static const char *const suffix[] = {"", "-wal", "-shm"};
    char path[1100];
    size_t i;
    int rc;

    if ((rc = tighten(data_dir, 0700, e)) || (rc = create_private(db, e)))
        return rc;
    for (i = 0; i < sizeof suffix / sizeof *suffix; i++) {
        snprintf(path, sizeof path, "%s%s", db, suffix[i]);
        if ((rc = tighten(path, 0600, e)))
            return rc;
    }
    return 0;
}

int sqlite_store_open(struct store **out, const char *data_dir, const struct store_opts *opts,
                      struct err *e)
{
    struct store *st;
    int rc, v;
    int flags;

    *out = NULL;
    if (!opts->readonly) {
        rc = dir_ensure(data_dir, e);
        if (rc)
            return rc;
    }
    st = xcalloc(1, sizeof *st);
    snprintf(st->path, sizeof st->path, "%s/engage.db", data_dir);
    if (!opts->readonly && (rc = store_files_private(data_dir, st->path, e))) {
        free(st);
        return rc;
    }
    flags = opts->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    rc = sqlite3_open_v2(st->path, &st->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = ERR(e, E_IO, "store: cannot open '%s': %s", st->path,
                 st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        store_close(st);
        return rc;
    }
    st->busy_timeout_ms = opts->busy_timeout_ms;
    sqlite3_busy_timeout(st->db, opts->busy_timeout_ms);
    sqlite3_extended_result_codes(st->db, 0);
    if (!opts->readonly) {
        rc = sq_script(st, "PRAGMA journal_mode = WAL", e);
        if (rc)
            goto fail;
    }
    {
        /* Reads of the first GiB of the store go through mmap (no syscall per page; the
         * resident size stays bounded); the page cache is per connection, so pooled
         * server connections keep it small. Checkpoints run
         * every 64 MiB of WAL rather than 4 MiB: hot index pages are copied less often. */
        char pragmas[256];
        snprintf(pragmas, sizeof pragmas,
                 "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF; PRAGMA cache_size = %d;"
                 " PRAGMA mmap_size = 1073741824; PRAGMA temp_store = MEMORY;"
                 " PRAGMA wal_autocheckpoint = 16384",
                 -1024 * (opts->cache_mb > 0 ? opts->cache_mb : 32));
        rc = sq_script(st, pragmas, e);
    }
    if (rc)
        goto fail;
    if (opts->migrate) {
        rc = store_migrate(st, NULL, NULL, e);
        if (rc)
            goto fail;
    }
    rc = store_schema_version(st, &v, e);
    if (rc)
        goto fail;
    if (v != STORE_SCHEMA_VERSION && !opts->any_version) {
        rc = v > STORE_SCHEMA_VERSION
                 ? ERR(e, E_CONFLICT,
                       "store: '%s' has schema version %d, newer than this binary's %d: upgrade "
                       "engage before using this data directory",
                       st->path, v, STORE_SCHEMA_VERSION)
                 : ERR(e, E_CONFLICT,
                       "store: '%s' has schema version %d, this binary needs %d: run 'engage "
                       "migrate'",
                       st->path, v, STORE_SCHEMA_VERSION);
        goto fail;
    }
    if (opts->bulk && !opts->readonly) {
        rc = ckpt_start(st, e);
        if (rc)
            goto fail;
    }
    *out = st;
    return 0;
fail:
    store_close(st);
    return rc;
}

void store_close(struct store *st)
{
    int i;

    if (st == NULL)
        return;
    ckpt_stop(st);
    for (i = 0; i < SQ__N; i++)
        sqlite3_finalize(st->stmts[i]);
    events_close(st);
    if (st->db) {
        if (st->in_tx)
            sq_rollback(st);
        sqlite3_close(st->db);
    }
    free(st);
}

int store_ping(struct store *st, struct err *e)
{
    int v;
    return store_schema_version(st, &v, e);
}

int store_backup(struct store *st, const char *dest_path, struct err *e)
{
    sqlite3 *dst = NULL;
    sqlite3_backup *b;
    int rc;

    /* Made here, 0600 and only if absent (no window between a check and SQLite's open). */
    rc = open(dest_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (rc < 0)
        return errno == EEXIST
                   ? ERR(e, E_CONFLICT, "backup: '%s' already exists", dest_path)
                   : ERR(e, E_IO, "backup: cannot create '%s': %s", dest_path, strerror(errno));
    close(rc);
    rc = sqlite3_open(dest_path, &dst);
    if (rc != SQLITE_OK) {
        rc = ERR(e, E_IO, "backup: cannot create '%s': %s", dest_path, sqlite3_errmsg(dst));
        sqlite3_close(dst);
        return rc;
    }
    b = sqlite3_backup_init(dst, "main", st->db, "main");
    if (b == NULL) {
        rc = ERR(e, E_IO, "backup: %s", sqlite3_errmsg(dst));
        sqlite3_close(dst);
        return rc;
    }
    /* Copy in steps so writers are held up for short moments only. */
    {
        int busy = 0;
        do {
            rc = sqlite3_backup_step(b, 1024);
            if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
                if (++busy > 6000)
                    break; /* a minute without progress */
                sqlite3_sleep(10);
            } else {
                busy = 0;
            }
        } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
    }
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        rc = ERR(e, rc == SQLITE_BUSY ? E_BUSY : E_IO, "backup: %s", sqlite3_errstr(rc));
        sqlite3_close(dst);
        unlink(dest_path); /* no partial copy left behind */
        return rc;
    }
    sqlite3_close(dst);
    return 0;
}

/* ---- transactions ------------------------------------------------------------ */

int store_begin(struct store *st, struct err *e)
{
    int rc;

    ASSERT(!st->in_tx);
    rc = sq_script(st, "BEGIN IMMEDIATE", e);
    if (rc)
        return rc;
    st->in_tx = 1;
    st->writing = 1;
    rc = contacts_max_seq(st, &st->next_contact_seq, e);
    if (rc == 0)
        rc = events_max_seq(st, &st->next_event_seq, e);
    if (rc) {
        store_rollback(st);
        return rc;
    }
    st->next_contact_seq++;
    st->next_event_seq++;
    return 0;
}

int store_commit(struct store *st, struct err *e)
{
    int rc;

    ASSERT(st->in_tx);
    rc = events_flush(st, e);
    if (rc == 0)
        rc = sq_script(st, "COMMIT", e);
    if (rc) {
        store_rollback(st);
        return rc;
    }
    st->in_tx = 0;
    if (st->writing)
        events_end(st, 1);
    st->writing = 0;
    return 0;
}

int store_read_begin(struct store *st, struct err *e)
{
    int rc;

    ASSERT(!st->in_tx);
    rc = sq_script(st, "BEGIN", e);
    if (rc == 0)
        st->in_tx = 1;
    return rc;
}

void store_rollback(struct store *st)
{
    if (!st->in_tx)
        return;
    sq_rollback(st);
    st->in_tx = 0;
    if (st->writing)
        events_end(st, 0);
    st->writing = 0;
}

int store_in_tx(const struct store *st)
{
    return st->in_tx;
}

int64_t store_tx_contact_seq(const struct store *st)
{
    ASSERT(st->in_tx);
    return st->next_contact_seq - 1;
}

/* ---- counts and sequences ------------------------------------------------------- */

static const struct sq_def q_count_rej = {SQ_COUNT_REJ,
                                          "SELECT count(*) FROM rejected WHERE status = 'pending'"};

int store_counts(struct store *st, struct store_counts *out, struct err *e)
{
    struct sq q;
    int rc;

    memset(out, 0, sizeof *out);
    if ((rc = contacts_totals(st, &out->contacts, &out->contacts_deleted, &out->contact_seq, e)) ||
        (rc = events_totals(st, &out->events, &out->events_unvalidated, e)) ||
        (rc = events_max_seq(st, &out->event_seq, e)) || (rc = sq_prep(&q, st, &q_count_rej, e)))
        return rc;
    return sq_ints(&q, &out->rejected_pending, NULL, "query", e);
}

int store_change_seqs(struct store *st, int64_t *contact_seq, int64_t *event_seq, struct err *e)
{
    int rc = contacts_max_seq(st, contact_seq, e);

    return rc ? rc : events_max_seq(st, event_seq, e);
}

/* ---- optional capabilities ------------------------------------------------------ */

static const struct store_caps caps = {
    .event_key_hash = 1,
    .events_reserve = events_reserve,
    .event_prefetch = events_prefetch,
};

const struct store_caps *store_caps(const struct store *st)
{
    (void)st;
    return &caps;
}
