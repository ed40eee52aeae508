/* store/sqlite.c -- the SQLite backend of store.h.
 *
 * DESIGN: one sqlite3 connection per struct store, WAL journal, synchronous=NORMAL
 * (a commit survives a process crash; only an OS crash may lose the last
 * commits), busy_timeout for other processes. Statements are prepared once per
 * connection, lazily, from the table below, and reused (bind, step, reset).
 * Change sequences: store_begin() takes the write lock and reads max(seq) of
 * contacts and events once; writes in that transaction hand out the next
 * numbers. Writers are serialised by SQLite's lock, so the sequences increase
 * in commit order, which is what readers catching up need. */
#include "store_int.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "schema.h"

enum stmt_id {
    Q_CONTACT_GET, Q_CONTACT_BY_XID, Q_CONTACT_BY_ANON, Q_CONTACT_LOOKUP, Q_CONTACT_IDS, Q_CONTACT_INSERT,
    Q_CONTACT_UPDATE, Q_CONSENT_LOG, Q_CONSENT_HISTORY, Q_ANON_LINK, Q_CONTACTS_SINCE, Q_CONTACTS_LIST, Q_CONTACTS_BY_EMAIL, Q_ATTR_TYPES, Q_ATTR_PUT, Q_ATTR_GET, Q_NAME_GET, Q_NAME_PUT, Q_NAMES,
    Q_CONTRACT_MAXV, Q_CONTRACT_PUT,
    Q_CONTRACTS_LATEST, Q_CONTRACT_VERSIONS, Q_CONTRACTS_STAMP, Q_REJ_ADD, Q_REJ_ADD_ONCE,
    Q_REJ_UPDATE,
    Q_REJ_COUNTS, Q_KEY_ADD, Q_KEY_BY_HASH, Q_KEY_TOUCH, Q_KEYS, Q_KEY_REVOKE, Q_AUDIT_ADD,
    Q_AUDIT_LIST, Q_IMPORT_BEGIN, Q_IMPORT_PROGRESS, Q_MAXSEQ_C, Q_COUNT_C,
    Q_COUNT_REJ, Q_IMPORTS, Q_SEG_INSERT, Q_SEG_VERSION_ADD, Q_SEG_UPDATE, Q_SEG_GET, Q_SEG_LIST,
    Q_SEG_VERSIONS, Q_SEG_DUE, Q_SEG_NEXT_RUN, Q_EVAL_BEGIN, Q_EVAL_FINISH, Q_EVAL_LIST, Q_EVAL_GET,
    Q_EVAL_LATEST, Q_SNAP_PUT, Q_SNAP_GET, Q_EVAL_INTERRUPT, Q_EVAL_COUNTS,
    Q_NAME_DROP, Q__N
};

#define CONTACT_COLS "id, external_id, email, attrs, consent, created_at, updated_at, seq, deleted, merged_into"
#define SEGMENT_COLS "s.id, s.name, s.description, s.created_by, v.rules, v.plan, s.version," \
    " s.schedule_minutes, s.next_run_at, s.created_at, s.updated_at, s.deleted"
#define EVAL_COLS "id, segment_id, version, trigger, status, error, as_of, started_at," \
    " finished_at, member_count, took_ms"

static const char *const stmt_sql[Q__N] = {
    [Q_CONTACT_GET] = "SELECT " CONTACT_COLS " FROM contacts WHERE id = ?1",
    [Q_CONTACT_BY_XID] = "SELECT " CONTACT_COLS " FROM contacts WHERE external_id = ?1",
    [Q_CONTACT_BY_ANON] = "SELECT c.id, c.external_id, c.email, c.attrs, c.consent, c.created_at,"
                          " c.updated_at, c.seq, c.deleted, c.merged_into FROM anonymous_ids a"
                          " JOIN contacts c ON c.id = a.contact_id WHERE a.anonymous_id = ?1",
    [Q_CONTACT_LOOKUP] = "SELECT id, deleted FROM contacts WHERE external_id = ?1",
    [Q_CONTACT_IDS] = "SELECT external_id, id, deleted FROM contacts WHERE external_id IS NOT NULL",
    [Q_CONTACT_INSERT] = "INSERT INTO contacts(external_id, email, attrs, consent, created_at,"
                         " updated_at, seq, deleted, merged_into) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)",
    /* Same parameter numbers as the insert (?5 created_at is not rewritten): one binder. */
    [Q_CONTACT_UPDATE] = "UPDATE contacts SET external_id=?1, email=?2, attrs=?3, consent=?4,"
                         " updated_at=?6, seq=?7, deleted=?8, merged_into=?9 WHERE id=?10",
    [Q_CONSENT_LOG] = "INSERT INTO consent_changes(contact_id, at, from_state, to_state, source,"
                      " reason) VALUES(?1,?2,?3,?4,?5,?6)",
    [Q_CONSENT_HISTORY] = "SELECT at, from_state, to_state, source, coalesce(reason,'')"
                          " FROM consent_changes WHERE contact_id = ?1 ORDER BY id",
    [Q_ANON_LINK] = "INSERT INTO anonymous_ids(anonymous_id, contact_id, created_at)"
                    " VALUES(?1,?2,?3) ON CONFLICT(anonymous_id) DO UPDATE SET contact_id=?2",
    [Q_CONTACTS_SINCE] = "SELECT " CONTACT_COLS " FROM contacts WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    [Q_CONTACTS_LIST] = "SELECT " CONTACT_COLS " FROM contacts WHERE id > ?1 AND deleted = 0"
                        " ORDER BY id LIMIT ?2",
    [Q_CONTACTS_BY_EMAIL] = "SELECT " CONTACT_COLS " FROM contacts WHERE email = ?3 AND id > ?1"
                            " AND deleted = 0 ORDER BY id LIMIT ?2",
    [Q_ATTR_TYPES] = "SELECT name, type, origin FROM attributes ORDER BY name",
    [Q_ATTR_PUT] = "INSERT INTO attributes(name, type, origin) VALUES(?1,?2,?3)"
                   " ON CONFLICT(name) DO NOTHING",
    [Q_ATTR_GET] = "SELECT type FROM attributes WHERE name = ?1",
    [Q_NAME_GET] = "SELECT id FROM event_names WHERE name = ?1",
    [Q_NAME_PUT] = "INSERT INTO event_names(name) VALUES(?1)",
    [Q_NAMES] = "SELECT id, name FROM event_names ORDER BY name",
    [Q_NAME_DROP] = "DELETE FROM event_names WHERE id = ?1",
    [Q_CONTRACT_MAXV] = "SELECT coalesce(max(version), 0) FROM contracts WHERE name = ?1",
    [Q_CONTRACT_PUT] = "INSERT INTO contracts(name, version, kind, body, created_at, created_by)"
                       " VALUES(?1,?2,?3,?4,?5,?6)",
    [Q_CONTRACTS_LATEST] = "SELECT c.name, c.version, c.kind, c.body, c.created_at, c.created_by"
                           " FROM contracts c WHERE c.version = (SELECT max(version) FROM"
                           " contracts d WHERE d.name = c.name) ORDER BY c.name",
    [Q_CONTRACT_VERSIONS] = "SELECT name, version, kind, body, created_at, created_by FROM"
                            " contracts WHERE name = ?1 ORDER BY version DESC",
    [Q_CONTRACTS_STAMP] = "SELECT count(*) FROM contracts",
    /* A record rejected again with the same raw payload while still pending is kept once. */
    [Q_REJ_ADD] = "INSERT INTO rejected(created_at, source, kind, reason, field, message, origin,"
                  " raw, fingerprint, truncated, raw_bytes) SELECT ?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,"
                  "?11 WHERE NOT EXISTS (SELECT 1 FROM rejected WHERE fingerprint = ?9 AND"
                  " status = 'pending')",
    /* ... or ever (a row read again, whose letter may have been dismissed or replayed). */
    [Q_REJ_ADD_ONCE] = "INSERT INTO rejected(created_at, source, kind, reason, field, message,"
                       " origin, raw, fingerprint, truncated, raw_bytes) SELECT ?1,?2,?3,?4,?5,?6,"
                       "?7,?8,?9,?10,?11 WHERE NOT EXISTS (SELECT 1 FROM rejected WHERE"
                       " fingerprint = ?9)",
    [Q_REJ_UPDATE] = "UPDATE rejected SET status=?2, reason=coalesce(?3, reason), field=coalesce(?4, field),"
                     " message=coalesce(?5, message),"
                     " attempts=attempts+1, resolved_at=?6 WHERE id=?1",
    [Q_REJ_COUNTS] = "SELECT reason, count(*) FROM rejected WHERE status = 'pending'"
                     " GROUP BY reason ORDER BY reason",
    [Q_EVAL_COUNTS] = "SELECT status, count(*) FROM segment_evaluations GROUP BY status"
                      " ORDER BY status",
    [Q_KEY_ADD] = "INSERT INTO apikeys(name, role, prefix, hash, created_at) VALUES(?1,?2,?3,?4,?5)",
    [Q_KEY_BY_HASH] = "SELECT id, name, role, prefix, created_at, revoked_at, last_used_at"
                      " FROM apikeys WHERE hash = ?1 AND revoked_at = 0",
    [Q_KEY_TOUCH] = "UPDATE apikeys SET last_used_at = ?2 WHERE id = ?1 AND last_used_at < ?2 - 60000",
    [Q_KEYS] = "SELECT id, name, role, prefix, created_at, revoked_at, last_used_at FROM apikeys"
               " ORDER BY id",
    [Q_KEY_REVOKE] = "UPDATE apikeys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at = 0",
    [Q_AUDIT_ADD] = "INSERT INTO audit(at, actor, action, entity, entity_id, before, after,"
                    " request_id) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
    [Q_AUDIT_LIST] = "SELECT id, at, actor, action, entity, entity_id, before, after, request_id"
                     " FROM audit WHERE id < ?1 AND (?3 IS NULL OR actor = ?3)"
                     " AND (?4 IS NULL OR action = ?4) AND (?5 IS NULL OR entity = ?5)"
                     " AND (?6 IS NULL OR entity_id = ?6) AND at >= ?7 AND at < ?8"
                     " ORDER BY id DESC LIMIT ?2",
    [Q_IMPORT_BEGIN] = "INSERT INTO imports(kind, file, status, started_at) VALUES(?1,?2,'running',?3)",
    [Q_IMPORT_PROGRESS] = "UPDATE imports SET status=?2, finished_at=?3, read=?4, inserted=?5,"
                          " updated=?6, duplicates=?7, rejected=?8 WHERE id=?1",
    [Q_MAXSEQ_C] = "SELECT coalesce(max(seq), 0) FROM contacts",
    [Q_COUNT_C] = "SELECT count(*), coalesce(sum(deleted), 0), coalesce(max(seq), 0) FROM contacts",
    [Q_COUNT_REJ] = "SELECT count(*) FROM rejected WHERE status = 'pending'",
    [Q_IMPORTS] = "SELECT id, kind, file, status, started_at, finished_at, read, inserted,"
                  " updated, duplicates, rejected FROM imports ORDER BY id DESC LIMIT ?1",
    [Q_SEG_INSERT] = "INSERT INTO segments(name, description, version, schedule_minutes,"
                     " next_run_at, created_at, updated_at, created_by) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
    [Q_SEG_VERSION_ADD] = "INSERT INTO segment_versions(segment_id, version, rules, plan,"
                          " created_at, created_by) VALUES(?1,?2,?3,?4,?5,?6)",
    [Q_SEG_UPDATE] = "UPDATE segments SET name=?2, description=?3, version=?4, schedule_minutes=?5,"
                     " next_run_at=?6, updated_at=?7, deleted=?8 WHERE id=?1",
    [Q_SEG_GET] = "SELECT " SEGMENT_COLS " FROM segments s JOIN segment_versions v ON"
                  " v.segment_id = s.id AND v.version = s.version WHERE s.id = ?1 AND s.deleted = 0",
    [Q_SEG_LIST] = "SELECT " SEGMENT_COLS " FROM segments s JOIN segment_versions v ON"
                   " v.segment_id = s.id AND v.version = s.version WHERE s.id > ?1 AND s.deleted = 0"
                   " ORDER BY s.id LIMIT ?2",
    [Q_SEG_VERSIONS] = "SELECT s.id, s.name, s.description, v.created_by, v.rules, v.plan, v.version,"
                       " s.schedule_minutes, s.next_run_at, v.created_at, v.created_at, s.deleted"
                       " FROM segment_versions v JOIN segments s ON s.id = v.segment_id"
                       " WHERE v.segment_id = ?1 ORDER BY v.version DESC",
    [Q_SEG_DUE] = "SELECT " SEGMENT_COLS " FROM segments s JOIN segment_versions v ON"
                  " v.segment_id = s.id AND v.version = s.version WHERE s.schedule_minutes > 0"
                  " AND s.deleted = 0 AND s.next_run_at <= ?1 ORDER BY s.next_run_at LIMIT 100",
    [Q_SEG_NEXT_RUN] = "UPDATE segments SET next_run_at = ?2 WHERE id = ?1",
    [Q_EVAL_BEGIN] = "INSERT INTO segment_evaluations(segment_id, version, trigger, status, as_of,"
                     " started_at) VALUES(?1,?2,?3,'running',?4,?5)",
    [Q_EVAL_FINISH] = "UPDATE segment_evaluations SET status=?2, finished_at=?3, member_count=?4,"
                      " took_ms=?5, error=?6 WHERE id=?1",
    [Q_EVAL_LIST] = "SELECT " EVAL_COLS " FROM segment_evaluations WHERE segment_id = ?1 AND id < ?2"
                    " ORDER BY id DESC LIMIT ?3",
    [Q_EVAL_GET] = "SELECT " EVAL_COLS " FROM segment_evaluations WHERE segment_id = ?1 AND id = ?2",
    [Q_EVAL_LATEST] = "SELECT " EVAL_COLS " FROM segment_evaluations WHERE segment_id = ?1"
                      " AND status = 'succeeded' ORDER BY id DESC LIMIT 1",
    [Q_SNAP_PUT] = "INSERT INTO segment_snapshots(evaluation_id, format, members)"
                   " VALUES(?1,'roaring-portable',?2)",
    [Q_SNAP_GET] = "SELECT members FROM segment_snapshots WHERE evaluation_id = ?1",
    [Q_EVAL_INTERRUPT] = "UPDATE segment_evaluations SET status='failed', finished_at=?1,"
                         " error='interrupted: the process stopped during the evaluation'"
                         " WHERE status = 'running'",
};

/* A bulk connection's checkpointer: copies the WAL into the database (and fsyncs)
 * on its own thread and connection while the writer goes on committing. */
struct ckpt {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sqlite3 *db;
    int kicked, stop;
    int last_kick; /* WAL frames at the last kick */
};

struct store {
    sqlite3 *db;
    struct ckpt *ckpt;
    sqlite3_stmt *stmts[Q__N];
    int in_tx, writing;
    struct evstate *ev; /* events.c */
    int64_t next_contact_seq, next_event_seq; /* valid inside a transaction */
    int busy_timeout_ms;
    char path[1024];
};

static int db_err(struct store *st, struct err *e, int rc, const char *what)
{
    int code = E_INTERNAL;

    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        code = E_BUSY;
    else if (rc == SQLITE_CONSTRAINT)
        code = E_CONFLICT;
    else if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB)
        code = E_CORRUPT;
    else if (rc == SQLITE_IOERR || rc == SQLITE_FULL || rc == SQLITE_CANTOPEN)
        code = E_IO;
    else if (rc == SQLITE_NOMEM)
        code = E_NOMEM;
    return ERR(e, code, "store: %s: %s", what, st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
}

static sqlite3_stmt *stmt(struct store *st, enum stmt_id id, struct err *e)
{
    int rc;

    if (st->stmts[id] == NULL) {
        rc = sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                &st->stmts[id], NULL);
        if (rc != SQLITE_OK) {
            db_err(st, e, rc, "prepare");
            return NULL;
        }
    }
    return st->stmts[id];
}

/* ---- for events.c (store_int.h) ---- */

sqlite3 *store_sql_db(struct store *st)
{
    return st->db;
}

int store_sql_err(struct store *st, struct err *e, int rc, const char *what)
{
    return db_err(st, e, rc, what);
}

int store_sql_writing(const struct store *st)
{
    return st->in_tx && st->writing;
}

int64_t *store_sql_event_seq(struct store *st)
{
    return &st->next_event_seq;
}

const char *store_sql_path(const struct store *st)
{
    return st->path;
}

struct evstate **store_sql_evstate(struct store *st)
{
    return &st->ev;
}

static void done(sqlite3_stmt *s)
{
    if (s) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

void store_sql_bind_text(sqlite3_stmt *s, int i, const char *v)
{
    bind_text(s, i, v);
}

static const char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? (const char *)t : NULL;
}

static int exec(struct store *st, const char *sql, struct err *e)
{
    char *msg = NULL;
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK) {
        int code = rc == SQLITE_BUSY ? E_BUSY : E_INTERNAL;
        ERR(e, code, "store: %s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return code;
    }
    return 0;
}

/* Runs a statement expected to produce no rows (or ignores them). */
static int step_done(struct store *st, sqlite3_stmt *s, const char *what, struct err *e)
{
    int rc = sqlite3_step(s);

    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rc = db_err(st, e, rc, what);
        done(s);
        return rc;
    }
    done(s);
    return 0;
}

static int scalar_i64(struct store *st, enum stmt_id id, int64_t *out, struct err *e)
{
    sqlite3_stmt *s = stmt(st, id, e);
    int rc;

    if (s == NULL)
        return e->code;
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        rc = db_err(st, e, rc, "query");
        done(s);
        return rc;
    }
    *out = sqlite3_column_int64(s, 0);
    done(s);
    return 0;
}

int store_schema_version(struct store *st, int *out, struct err *e)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL);

    if (rc != SQLITE_OK)
        return db_err(st, e, rc, "read schema version");
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(s);
        return db_err(st, e, rc, "read schema version");
    }
    *out = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return 0;
}

static int rejected_cut_old(struct store *st, struct err *e);

int store_migrate(struct store *st, int *from, int *to, struct err *e)
{
    int v, rc;
    char sql[64];

    rc = exec(st, "BEGIN IMMEDIATE", e);
    if (rc)
        return rc;
    rc = store_schema_version(st, &v, e);
    if (rc)
        goto fail;
    if (from)
        *from = v;
    if (v > STORE_SCHEMA_VERSION) {
        rc = ERR(e, E_CONFLICT,
                 "store: '%s' has schema version %d, newer than this binary's %d: upgrade engage "
                 "before using this data directory", st->path, v, STORE_SCHEMA_VERSION);
        goto fail;
    }
    for (; v < STORE_SCHEMA_VERSION; v++) {
        rc = exec(st, store_migrations[v], e);
        if (rc == 0 && v == 9)
            rc = rejected_cut_old(st, e); /* 9 -> 10: letters kept whole before are cut */
        if (rc == 0 && v == 3) {
            /* 3 -> 4 moves the old events table's rows into blocks, in C. */
            st->in_tx = st->writing = 1;
            rc = events_migrate_blocks(st, e);
            st->in_tx = st->writing = 0;
            if (rc == 0)
                rc = exec(st, "DROP TABLE events", e);
        }
        if (rc)
            goto fail;
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        rc = exec(st, sql, e);
        if (rc)
            goto fail;
    }
    rc = exec(st, "COMMIT", e);
    if (rc)
        goto fail;
    if (to)
        *to = v;
    return 0;
fail:
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Passive checkpoints whenever the writer has added CKPT_KICK frames (64 MiB); a
 * blocking one by the writer itself past CKPT_MAX frames (1 GiB), since a WAL that
 * is never caught up with at a commit never restarts from its beginning. */
#define CKPT_KICK 16384
#define CKPT_MAX 262144

static void *ckpt_main(void *arg)
{
    struct ckpt *c = arg;

    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->kicked && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->stop)
            break;
        c->kicked = 0;
        pthread_mutex_unlock(&c->mu);
        sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

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
        pthread_mutex_lock(&c->mu);
        c->kicked = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
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
        sqlite3_close(c->db);
        free(c);
        return rc;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->thread, NULL, ckpt_main, c) == 0) {
        pthread_setname_np(c->thread, "wal-checkpoint");
    } else {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        sqlite3_close(c->db);
        free(c);
        return ERR(e, E_NOMEM, "store: cannot start the checkpoint thread");
    }
    st->ckpt = c;
    sqlite3_wal_hook(st->db, ckpt_hook, c); /* replaces the automatic checkpoints */
    return 0;
}

static void ckpt_stop(struct store *st)
{
    struct ckpt *c = st->ckpt;

    if (c == NULL)
        return;
    sqlite3_wal_hook(st->db, NULL, NULL);
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    sqlite3_close(c->db);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
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
        return errno == ENOENT ? 0 : ERR(e, E_IO, "store: cannot stat '%s': %s", path,
                                        strerror(errno));
    if ((sb.st_mode & 077) == 0)
        return 0;
    if (chmod(path, mode) != 0)
        return ERR(e, E_IO, "store: '%s' is readable by others (mode %04o) and cannot be "
                            "made %04o: %s", path, (unsigned)(sb.st_mode & 07777),
                   (unsigned)mode, strerror(errno));
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
    return errno == EEXIST ? 0 : ERR(e, E_IO, "store: cannot create '%s': %s", path,
                                     strerror(errno));
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

int store_open(struct store **out, const char *data_dir, const struct store_opts *opts,
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
        rc = exec(st, "PRAGMA journal_mode = WAL", e);
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
        rc = exec(st, pragmas, e);
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
                       "engage before using this data directory", st->path, v, STORE_SCHEMA_VERSION)
                 : ERR(e, E_CONFLICT,
                       "store: '%s' has schema version %d, this binary needs %d: run 'engage "
                       "migrate'", st->path, v, STORE_SCHEMA_VERSION);
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
    for (i = 0; i < Q__N; i++)
        sqlite3_finalize(st->stmts[i]);
    events_close(st);
    if (st->db) {
        if (st->in_tx)
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
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
        return errno == EEXIST ? ERR(e, E_CONFLICT, "backup: '%s' already exists", dest_path)
                               : ERR(e, E_IO, "backup: cannot create '%s': %s", dest_path,
                                     strerror(errno));
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

/* ---- reading rows ----------------------------------------------------------------
 * Every list reader is the same loop: step, turn the row into its struct, hand it to
 * the caller's callback, stop early if that returns non-zero (passed up unchanged),
 * map a SQLite failure to an error, reset or finalize the statement. each_row() is
 * that loop; each reader supplies only the row-to-struct step. */

struct visit {
    union {
        store_consent_fn consent;
        store_contact_fn contact;
        store_attr_fn attr;
        store_name_fn name;
        store_event_fn event;
        store_contract_fn contract;
        store_rejected_fn rejected;
        store_count_fn count;
        store_apikey_fn key;
        store_audit_fn audit;
        store_import_fn import;
        store_segment_fn segment;
        store_evaluation_fn evaluation;
        store_props_fn props;
    } fn;
    void *ctx;
    struct store_contact *contact; /* contacts_since: one struct reused for every row */
    int rows;
};

typedef int (*row_fn)(sqlite3_stmt *s, struct visit *v);

static int each_row(struct store *st, sqlite3_stmt *s, int finalize, const char *what, row_fn row,
                    struct visit *v, struct err *e)
{
    int rc;

    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        v->rows++;
        rc = row(s, v);
        if (rc != 0)
            goto out; /* the callback's own code */
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(st, e, rc, what);
out:
    if (finalize)
        sqlite3_finalize(s);
    else
        done(s);
    return rc;
}

/* ---- transactions ------------------------------------------------------------ */

int store_begin(struct store *st, struct err *e)
{
    int rc;

    ASSERT(!st->in_tx);
    rc = exec(st, "BEGIN IMMEDIATE", e);
    if (rc)
        return rc;
    st->in_tx = 1;
    st->writing = 1;
    rc = scalar_i64(st, Q_MAXSEQ_C, &st->next_contact_seq, e);
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
        rc = exec(st, "COMMIT", e);
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
    rc = exec(st, "BEGIN", e);
    if (rc == 0)
        st->in_tx = 1;
    return rc;
}

void store_rollback(struct store *st)
{
    if (!st->in_tx)
        return;
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    st->in_tx = 0;
    if (st->writing)
        events_end(st, 0);
    st->writing = 0;
}

int store_finish(struct store *st, int rc, struct err *e)
{
    if (rc == 0)
        return store_commit(st, e);
    store_rollback(st);
    return rc;
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

/* ---- contacts -------------------------------------------------------------- */

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

static void read_contact(sqlite3_stmt *s, struct store_contact *c)
{
    const char *xid = col_text(s, 1), *email = col_text(s, 2), *attrs = col_text(s, 3);

    store_contact_release(c);
    c->id = sqlite3_column_int64(s, 0);
    c->external_id = xid ? xstrdup(xid) : NULL;
    c->email = email ? xstrdup(email) : NULL;
    c->attrs = attrs ? json_loads(attrs, 0, NULL) : NULL;
    if (c->attrs == NULL || !json_is_object(c->attrs)) {
        json_decref(c->attrs);
        c->attrs = json_object();
    }
    c->consent = (enum consent_state)sqlite3_column_int(s, 4);
    c->created_at = sqlite3_column_int64(s, 5);
    c->updated_at = sqlite3_column_int64(s, 6);
    c->seq = sqlite3_column_int64(s, 7);
    c->deleted = sqlite3_column_int(s, 8);
    c->merged_into = sqlite3_column_int64(s, 9);
}

static int contact_get_by(struct store *st, enum stmt_id q, int64_t id, const char *key,
                          struct store_contact *out, struct err *e)
{
    sqlite3_stmt *s = stmt(st, q, e);
    int rc;

    if (s == NULL)
        return e->code;
    if (key)
        bind_text(s, 1, key);
    else
        sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        read_contact(s, out);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = ERR(e, E_NOTFOUND, "contact not found");
    } else {
        rc = db_err(st, e, rc, "read contact");
    }
    done(s);
    return rc;
}

int store_contact_get(struct store *st, int64_t id, struct store_contact *out, struct err *e)
{
    return contact_get_by(st, Q_CONTACT_GET, id, NULL, out, e);
}

int store_contact_get_by_xid(struct store *st, const char *xid, struct store_contact *out,
                             struct err *e)
{
    return contact_get_by(st, Q_CONTACT_BY_XID, 0, xid, out, e);
}

int store_contact_get_by_anon(struct store *st, const char *anon_id, struct store_contact *out,
                              struct err *e)
{
    return contact_get_by(st, Q_CONTACT_BY_ANON, 0, anon_id, out, e);
}

int store_contact_lookup(struct store *st, const char *xid, int64_t *id, int *deleted,
                         struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_CONTACT_LOOKUP, e);
    int rc;

    if (s == NULL)
        return e->code;
    bind_text(s, 1, xid);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        *deleted = sqlite3_column_int(s, 1);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = E_NOTFOUND; /* an expected outcome on this path: not recorded */
    } else {
        rc = db_err(st, e, rc, "look up contact");
    }
    done(s);
    return rc;
}

/* Writes every column of c with the next change sequence (insert or update by id). */
int store_contact_ids(struct store *st, store_contact_id_fn fn, void *ctx, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_CONTACT_IDS, e);
    int rc;

    if (s == NULL)
        return e->code;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        rc = fn(ctx, col_text(s, 0), sqlite3_column_int64(s, 1), sqlite3_column_int(s, 2));
        if (rc) {
            done(s);
            return rc;
        }
    }
    done(s);
    return rc == SQLITE_DONE ? 0 : db_err(st, e, rc, "read contact ids");
}

static int contact_write(struct store *st, enum stmt_id q, struct store_contact *c, struct err *e)
{
    sqlite3_stmt *s = stmt(st, q, e);
    char *attrs;
    int rc;

    ASSERT(st->in_tx);
    if (s == NULL)
        return e->code;
    attrs = c->attrs ? json_dumps(c->attrs, JSON_COMPACT | JSON_SORT_KEYS) : xstrdup("{}");
    ASSERT(attrs);
    c->seq = st->next_contact_seq++;
    bind_text(s, 1, c->external_id);
    bind_text(s, 2, c->email);
    sqlite3_bind_text(s, 3, attrs, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 4, (int)c->consent);
    sqlite3_bind_int64(s, 5, c->created_at);
    sqlite3_bind_int64(s, 6, c->updated_at);
    sqlite3_bind_int64(s, 7, c->seq);
    sqlite3_bind_int(s, 8, c->deleted);
    sqlite3_bind_int64(s, 9, c->merged_into);
    if (q == Q_CONTACT_UPDATE)
        sqlite3_bind_int64(s, 10, c->id);
    rc = sqlite3_step(s);
    free(attrs);
    if (rc != SQLITE_DONE) {
        rc = db_err(st, e, rc, q == Q_CONTACT_UPDATE ? "update contact" : "insert contact");
        done(s);
        return rc;
    }
    if (q == Q_CONTACT_INSERT)
        c->id = sqlite3_last_insert_rowid(st->db);
    done(s);
    return 0;
}

int store_contact_insert(struct store *st, struct store_contact *c, struct err *e)
{
    return contact_write(st, Q_CONTACT_INSERT, c, e);
}

int store_contact_update(struct store *st, struct store_contact *c, struct err *e)
{
    return contact_write(st, Q_CONTACT_UPDATE, c, e);
}

int store_consent_log(struct store *st, int64_t contact_id, int from, int to, const char *source,
                      const char *reason, int64_t at, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_CONSENT_LOG, e);

    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, contact_id);
    sqlite3_bind_int64(s, 2, at);
    sqlite3_bind_int(s, 3, from);
    sqlite3_bind_int(s, 4, to);
    bind_text(s, 5, source);
    bind_text(s, 6, reason);
    return step_done(st, s, "log consent change", e);
}

static int row_consent(sqlite3_stmt *s, struct visit *v)
{
    struct store_consent_change c = {
        .at = sqlite3_column_int64(s, 0),
        .from = sqlite3_column_int(s, 1),
        .to = sqlite3_column_int(s, 2),
        .source = col_text(s, 3),
        .reason = col_text(s, 4),
    };

    return v->fn.consent(v->ctx, &c);
}

int store_consent_history(struct store *st, int64_t contact_id, store_consent_fn fn, void *ctx,
                          struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_CONSENT_HISTORY, e);
    struct visit v = {0};

    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, contact_id);
    v.fn.consent = fn;
    v.ctx = ctx;
    return each_row(st, s, 0, "read consent history", row_consent, &v, e);
}

int store_anon_link(struct store *st, const char *anon_id, int64_t contact_id, int64_t at,
                    struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_ANON_LINK, e);

    if (s == NULL)
        return e->code;
    bind_text(s, 1, anon_id);
    sqlite3_bind_int64(s, 2, contact_id);
    sqlite3_bind_int64(s, 3, at);
    return step_done(st, s, "link anonymous id", e);
}

static int row_contact(sqlite3_stmt *s, struct visit *v)
{
    read_contact(s, v->contact);
    return v->fn.contact(v->ctx, v->contact);
}

int store_contacts_since(struct store *st, int64_t after_seq, int64_t limit, store_contact_fn fn,
                         void *ctx, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_CONTACTS_SINCE, e);
    struct store_contact c;
    struct visit v = {.ctx = ctx, .contact = &c};
    int rc;

    if (s == NULL)
        return e->code;
    store_contact_init(&c);
    sqlite3_bind_int64(s, 1, after_seq);
    sqlite3_bind_int64(s, 2, limit > 0 ? limit : -1);
    v.fn.contact = fn;
    rc = each_row(st, s, 0, "read contacts", row_contact, &v, e);
    store_contact_release(&c);
    return rc;
}

int store_contact_rows_since(struct store *st, int64_t after_seq, int64_t limit,
                             store_contact_row_fn fn, void *ctx, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_CONTACTS_SINCE, e);
    int rc;

    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, after_seq);
    sqlite3_bind_int64(s, 2, limit > 0 ? limit : -1);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_contact_row c = {
            .id = sqlite3_column_int64(s, 0),
            .external_id = col_text(s, 1),
            .email = col_text(s, 2),
            .attrs_json = col_text(s, 3),
            .consent = (enum consent_state)sqlite3_column_int(s, 4),
            .created_at = sqlite3_column_int64(s, 5),
            .updated_at = sqlite3_column_int64(s, 6),
            .seq = sqlite3_column_int64(s, 7),
            .deleted = sqlite3_column_int(s, 8),
            .merged_into = sqlite3_column_int64(s, 9),
        };
        if ((rc = fn(ctx, &c)) != 0) {
            done(s);
            return rc;
        }
    }
    done(s);
    return rc == SQLITE_DONE ? 0 : db_err(st, e, rc, "read contacts");
}

int store_contacts_list(struct store *st, int64_t after_id, int limit, const char *email,
                        store_contact_fn fn, void *ctx, struct err *e)
{
    sqlite3_stmt *s = stmt(st, email ? Q_CONTACTS_BY_EMAIL : Q_CONTACTS_LIST, e);
    struct store_contact c;
    struct visit v = {.fn.contact = fn, .ctx = ctx, .contact = &c};
    int rc;

    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, after_id);
    sqlite3_bind_int(s, 2, limit > 0 ? limit : -1);
    if (email)
        bind_text(s, 3, email);
    store_contact_init(&c);
    rc = each_row(st, s, 0, "list contacts", row_contact, &v, e);
    store_contact_release(&c);
    return rc;
}

/* ---- registries ------------------------------------------------------------- */

static int row_attr(sqlite3_stmt *s, struct visit *v)
{
    return v->fn.attr(v->ctx, col_text(s, 0), col_text(s, 1), col_text(s, 2));
}

int store_attr_types(struct store *st, store_attr_fn fn, void *ctx, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_ATTR_TYPES, e);
    struct visit v = {.fn.attr = fn, .ctx = ctx};

    if (s == NULL)
        return e->code;
    return each_row(st, s, 0, "read attribute types", row_attr, &v, e);
}

int store_attr_type_get(struct store *st, const char *name, char *type_out, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_ATTR_GET, e);
    int rc;

    if (s == NULL)
        return e->code;
    bind_text(s, 1, name);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        snprintf(type_out, 16, "%s", col_text(s, 0));
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = E_NOTFOUND; /* expected: not recorded */
    } else {
        rc = db_err(st, e, rc, "read attribute type");
    }
    done(s);
    return rc;
}

int store_attr_type_put(struct store *st, const char *name, const char *type, const char *origin,
                        char *type_out, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_ATTR_PUT, e);
    int rc;

    if (s == NULL)
        return e->code;
    bind_text(s, 1, name);
    bind_text(s, 2, type);
    bind_text(s, 3, origin);
    rc = step_done(st, s, "record attribute type", e);
    if (rc)
        return rc;
    rc = store_attr_type_get(st, name, type_out, e); /* the type that holds */
    return rc == E_NOTFOUND ? ERR(e, E_INTERNAL, "attribute type of '%s' vanished", name) : rc;
}

int store_event_name_id(struct store *st, const char *name, int create, int64_t *id,
                        struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_NAME_GET, e);
    int rc;

    if (s == NULL)
        return e->code;
    bind_text(s, 1, name);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        done(s);
        return 0;
    }
    done(s);
    if (rc != SQLITE_DONE)
        return db_err(st, e, rc, "read event name");
    *id = 0;
    if (!create)
        return 0;
    ASSERT(st->in_tx);
    s = stmt(st, Q_NAME_PUT, e);
    if (s == NULL)
        return e->code;
    bind_text(s, 1, name);
    rc = step_done(st, s, "record event name", e);
    if (rc == 0)
        *id = sqlite3_last_insert_rowid(st->db);
    return rc;
}

int store_event_name_drop(struct store *st, int64_t id, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_NAME_DROP, e);

    ASSERT(st->in_tx);
    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, id);
    return step_done(st, s, "drop event name", e);
}

static int row_name(sqlite3_stmt *s, struct visit *v)
{
    return v->fn.name(v->ctx, sqlite3_column_int64(s, 0), col_text(s, 1));
}

int store_event_names(struct store *st, store_name_fn fn, void *ctx, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_NAMES, e);
    struct visit v = {.fn.name = fn, .ctx = ctx};

    if (s == NULL)
        return e->code;
    return each_row(st, s, 0, "read event names", row_name, &v, e);
}

int store_counts(struct store *st, struct store_counts *out, struct err *e)
{
    sqlite3_stmt *s;
    int rc;

    memset(out, 0, sizeof *out);
    s = stmt(st, Q_COUNT_C, e);
    if (s == NULL)
        return e->code;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->contacts = sqlite3_column_int64(s, 0);
        out->contacts_deleted = sqlite3_column_int64(s, 1);
        out->contact_seq = sqlite3_column_int64(s, 2);
    }
    done(s);
    if (rc != SQLITE_ROW)
        return db_err(st, e, rc, "count contacts");
    if ((rc = events_totals(st, &out->events, &out->events_unvalidated, e)) ||
        (rc = events_max_seq(st, &out->event_seq, e)))
        return rc;
    return scalar_i64(st, Q_COUNT_REJ, &out->rejected_pending, e);
}

int store_change_seqs(struct store *st, int64_t *contact_seq, int64_t *event_seq, struct err *e)
{
    int rc = scalar_i64(st, Q_MAXSEQ_C, contact_seq, e);

    return rc ? rc : events_max_seq(st, event_seq, e);
}

/* ---- contracts ---------------------------------------------------------------- */

int store_contract_put(struct store *st, const char *name, const char *kind, const char *body,
                       const char *created_by, int *version, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_CONTRACT_MAXV, e);
    int rc, v;

    ASSERT(st->in_tx);
    if (s == NULL)
        return e->code;
    bind_text(s, 1, name);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        rc = db_err(st, e, rc, "read contract version");
        done(s);
        return rc;
    }
    v = sqlite3_column_int(s, 0) + 1;
    done(s);
    s = stmt(st, Q_CONTRACT_PUT, e);
    if (s == NULL)
        return e->code;
    bind_text(s, 1, name);
    sqlite3_bind_int(s, 2, v);
    bind_text(s, 3, kind);
    bind_text(s, 4, body);
    sqlite3_bind_int64(s, 5, clock_now_ms());
    bind_text(s, 6, created_by);
    rc = step_done(st, s, "store contract", e);
    if (rc == 0)
        *version = v;
    return rc;
}

static int row_contract(sqlite3_stmt *s, struct visit *v)
{
    struct store_contract c = {
        .name = col_text(s, 0),
        .version = sqlite3_column_int(s, 1),
        .kind = col_text(s, 2),
        .body = col_text(s, 3),
        .created_at = sqlite3_column_int64(s, 4),
        .created_by = col_text(s, 5),
    };

    return v->fn.contract(v->ctx, &c);
}

static int read_contracts(struct store *st, sqlite3_stmt *s, store_contract_fn fn, void *ctx,
                          int *count, struct err *e)
{
    struct visit v = {.fn.contract = fn, .ctx = ctx};
    int rc = each_row(st, s, 0, "read contracts", row_contract, &v, e);

    *count = v.rows;
    return rc;
}

int store_contracts_latest(struct store *st, store_contract_fn fn, void *ctx, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_CONTRACTS_LATEST, e);
    int n;

    if (s == NULL)
        return e->code;
    return read_contracts(st, s, fn, ctx, &n, e);
}

int store_contract_versions(struct store *st, const char *name, store_contract_fn fn, void *ctx,
                            struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_CONTRACT_VERSIONS, e);
    int n, rc;

    if (s == NULL)
        return e->code;
    bind_text(s, 1, name);
    rc = read_contracts(st, s, fn, ctx, &n, e);
    if (rc == 0 && n == 0)
        rc = ERR(e, E_NOTFOUND, "no contract named '%s'", name);
    return rc;
}

int store_contracts_stamp(struct store *st, int64_t *out, struct err *e)
{
    return scalar_i64(st, Q_CONTRACTS_STAMP, out, e);
}

/* ---- dead letters -------------------------------------------------------------- */

int store_rejected_add(struct store *st, const struct store_rejected *r, int64_t *id,
                       struct err *e)
{
    sqlite3_stmt *s = stmt(st, r->once ? Q_REJ_ADD_ONCE : Q_REJ_ADD, e);
    size_t n = strlen(r->raw), kept = utf8_prefix(r->raw, n, STORE_REJECTED_MAX_RAW);
    int rc;

    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, r->created_at);
    bind_text(s, 2, r->source);
    bind_text(s, 3, r->kind);
    bind_text(s, 4, r->reason);
    bind_text(s, 5, r->field ? r->field : "");
    bind_text(s, 6, r->message);
    bind_text(s, 7, r->origin ? r->origin : "");
    sqlite3_bind_text(s, 8, r->raw, (int)kept, SQLITE_STATIC);
    bind_text(s, 9, r->fingerprint);
    sqlite3_bind_int(s, 10, r->truncated || kept < n);
    sqlite3_bind_int64(s, 11, r->raw_bytes > 0 ? r->raw_bytes : (int64_t)n);
    rc = step_done(st, s, "store rejected record", e);
    if (rc == 0 && id)
        *id = sqlite3_changes(st->db) ? sqlite3_last_insert_rowid(st->db) : 0;
    return rc;
}

/* Migration 9 -> 10: letters kept whole before (a 300 MB CSV line, say) keep what new
 * ones keep. Updating the rows being read is fine: cutting again changes nothing. */
static int rejected_cut_old(struct store *st, struct err *e)
{
    sqlite3_stmt *sel = NULL, *upd = NULL;
    int rc;

    rc = sqlite3_prepare_v2(st->db, "SELECT id, raw FROM rejected WHERE raw_bytes > ?1", -1, &sel,
                            NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(st->db, "UPDATE rejected SET raw = ?2, truncated = 1 WHERE id = ?1",
                                -1, &upd, NULL);
    if (rc != SQLITE_OK) {
        rc = db_err(st, e, rc, "cut dead letters");
        goto out;
    }
    sqlite3_bind_int64(sel, 1, STORE_REJECTED_MAX_RAW);
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
        const char *raw = (const char *)sqlite3_column_text(sel, 1);
        size_t n = (size_t)sqlite3_column_bytes(sel, 1);
        sqlite3_bind_int64(upd, 1, sqlite3_column_int64(sel, 0));
        sqlite3_bind_text(upd, 2, raw ? raw : "", (int)utf8_prefix(raw ? raw : "", n,
                                                                   STORE_REJECTED_MAX_RAW),
                          SQLITE_TRANSIENT);
        rc = sqlite3_step(upd);
        sqlite3_reset(upd);
        if (rc != SQLITE_DONE)
            break;
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(st, e, rc, "cut dead letters");
out:
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    return rc;
}

/* The WHERE clause of a dead-letter filter: fixed fragments, values always bound
 * (?1 after_id … ?8 until), shared by list and dismiss. */
static void rejected_where(struct buf *sql, const struct store_rejected_filter *f)
{
    buf_adds(sql, " WHERE id > ?1");
    if (f->id)
        buf_adds(sql, " AND id = ?2");
    if (f->status)
        buf_adds(sql, " AND status = ?3");
    if (f->reason)
        buf_adds(sql, " AND reason = ?4");
    if (f->source)
        buf_adds(sql, " AND source = ?5");
    if (f->kind)
        buf_adds(sql, " AND kind = ?6");
    if (f->since)
        buf_adds(sql, " AND created_at >= ?7");
    if (f->until)
        buf_adds(sql, " AND created_at < ?8");
    if (f->replayable_only)
        buf_adds(sql, " AND reason NOT IN ('bad_row', 'invalid_encoding')");
}

static void rejected_bind(sqlite3_stmt *s, const struct store_rejected_filter *f)
{
    sqlite3_bind_int64(s, 1, f->after_id);
    sqlite3_bind_int64(s, 2, f->id);
    bind_text(s, 3, f->status);
    bind_text(s, 4, f->reason);
    bind_text(s, 5, f->source);
    bind_text(s, 6, f->kind);
    sqlite3_bind_int64(s, 7, f->since);
    sqlite3_bind_int64(s, 8, f->until);
}

static int row_rejected(sqlite3_stmt *s, struct visit *v)
{
    struct store_rejected r = {
        .id = sqlite3_column_int64(s, 0),
        .created_at = sqlite3_column_int64(s, 1),
        .source = col_text(s, 2),
        .kind = col_text(s, 3),
        .reason = col_text(s, 4),
        .field = col_text(s, 5),
        .message = col_text(s, 6),
        .origin = col_text(s, 7),
        .raw = col_text(s, 8),
        .status = col_text(s, 9),
        .attempts = sqlite3_column_int(s, 10),
        .resolved_at = sqlite3_column_int64(s, 11),
        .truncated = sqlite3_column_int(s, 12),
        .raw_bytes = sqlite3_column_int64(s, 13),
    };

    return v->fn.rejected(v->ctx, &r);
}

int store_rejected_list(struct store *st, const struct store_rejected_filter *f,
                        store_rejected_fn fn, void *ctx, struct err *e)
{
    struct visit v = {0};
    struct buf sql;
    sqlite3_stmt *s = NULL;
    int rc;

    buf_init(&sql);
    buf_adds(&sql, "SELECT id, created_at, source, kind, reason, field, message, origin,");
    if (f->raw_max)
        buf_printf(&sql, " substr(raw, 1, %zu),", f->raw_max + 1);
    else
        buf_adds(&sql, " raw,");
    buf_adds(&sql, " status, attempts, resolved_at, truncated, raw_bytes FROM rejected");
    rejected_where(&sql, f);
    buf_adds(&sql, " ORDER BY id LIMIT ?9");
    rc = sqlite3_prepare_v2(st->db, sql.p, -1, &s, NULL);
    buf_release(&sql);
    if (rc != SQLITE_OK)
        return db_err(st, e, rc, "list rejected");
    rejected_bind(s, f);
    sqlite3_bind_int64(s, 9, f->limit > 0 ? f->limit : -1);
    v.fn.rejected = fn;
    v.ctx = ctx;
    return each_row(st, s, 1, "list rejected", row_rejected, &v, e);
}

int store_rejected_set_status(struct store *st, const struct store_rejected_filter *f,
                              const char *status, int64_t at, int64_t *changed, struct err *e)
{
    struct buf sql;
    sqlite3_stmt *s = NULL;
    int rc;

    buf_init(&sql);
    buf_adds(&sql, "UPDATE rejected SET status = ?10, resolved_at = ?11");
    rejected_where(&sql, f);
    rc = sqlite3_prepare_v2(st->db, sql.p, -1, &s, NULL);
    buf_release(&sql);
    if (rc != SQLITE_OK)
        return db_err(st, e, rc, "update rejected");
    rejected_bind(s, f);
    bind_text(s, 10, status);
    sqlite3_bind_int64(s, 11, at);
    rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
        rc = db_err(st, e, rc, "update rejected");
    } else {
        *changed = sqlite3_changes(st->db);
        rc = 0;
    }
    sqlite3_finalize(s);
    return rc;
}

int store_rejected_update(struct store *st, int64_t id, const char *status, const char *reason,
                          const char *field, const char *message, int64_t at, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_REJ_UPDATE, e);

    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, id);
    bind_text(s, 2, status);
    bind_text(s, 3, reason);
    bind_text(s, 4, field);
    bind_text(s, 5, message);
    sqlite3_bind_int64(s, 6, at);
    return step_done(st, s, "update rejected record", e);
}

static int row_count(sqlite3_stmt *s, struct visit *v)
{
    return v->fn.count(v->ctx, col_text(s, 0), sqlite3_column_int64(s, 1));
}

int store_rejected_counts(struct store *st, store_count_fn fn, void *ctx, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_REJ_COUNTS, e);
    struct visit v = {.fn.count = fn, .ctx = ctx};

    if (s == NULL)
        return e->code;
    return each_row(st, s, 0, "count rejected", row_count, &v, e);
}

int store_evaluation_counts(struct store *st, store_count_fn fn, void *ctx, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_EVAL_COUNTS, e);
    struct visit v = {.fn.count = fn, .ctx = ctx};

    if (s == NULL)
        return e->code;
    return each_row(st, s, 0, "count evaluations", row_count, &v, e);
}

/* ---- keys and audit -------------------------------------------------------------- */

int store_apikey_add(struct store *st, const char *name, const char *role, const char *prefix,
                     const unsigned char *hash, size_t hash_len, int64_t at, int64_t *id,
                     struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_KEY_ADD, e);
    int rc;

    if (s == NULL)
        return e->code;
    bind_text(s, 1, name);
    bind_text(s, 2, role);
    bind_text(s, 3, prefix);
    sqlite3_bind_blob(s, 4, hash, (int)hash_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, at);
    rc = step_done(st, s, "store api key", e);
    if (rc == 0 && id)
        *id = sqlite3_last_insert_rowid(st->db);
    return rc;
}

static void read_key(sqlite3_stmt *s, struct store_apikey *k)
{
    k->id = sqlite3_column_int64(s, 0);
    k->name = col_text(s, 1);
    k->role = col_text(s, 2);
    k->prefix = col_text(s, 3);
    k->created_at = sqlite3_column_int64(s, 4);
    k->revoked_at = sqlite3_column_int64(s, 5);
    k->last_used_at = sqlite3_column_int64(s, 6);
}

int store_apikey_by_hash(struct store *st, const unsigned char *hash, size_t hash_len,
                         struct store_apikey *out, char *name, size_t namecap, char *role,
                         size_t rolecap, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_KEY_BY_HASH, e);
    int rc;

    if (s == NULL)
        return e->code;
    sqlite3_bind_blob(s, 1, hash, (int)hash_len, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        read_key(s, out);
        snprintf(name, namecap, "%s", out->name);
        snprintf(role, rolecap, "%s", out->role);
        out->name = name;
        out->role = role;
        out->prefix = NULL;
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = ERR(e, E_NOTFOUND, "no such api key");
    } else {
        rc = db_err(st, e, rc, "read api key");
    }
    done(s);
    if (rc == 0 && !st->in_tx) {
        /* Best effort, at most once a minute per key: a busy store must not fail auth. */
        s = stmt(st, Q_KEY_TOUCH, e);
        if (s) {
            int64_t now = clock_now_ms();
            sqlite3_bind_int64(s, 1, out->id);
            sqlite3_bind_int64(s, 2, now);
            /* Never wait for another writer (an import) just to note a key's use. */
            sqlite3_busy_timeout(st->db, 0);
            sqlite3_step(s);
            sqlite3_busy_timeout(st->db, st->busy_timeout_ms);
            done(s);
        }
    }
    return rc;
}

static int row_key(sqlite3_stmt *s, struct visit *v)
{
    struct store_apikey k;

    read_key(s, &k);
    return v->fn.key(v->ctx, &k);
}

int store_apikeys(struct store *st, store_apikey_fn fn, void *ctx, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_KEYS, e);
    struct visit v = {.fn.key = fn, .ctx = ctx};

    if (s == NULL)
        return e->code;
    return each_row(st, s, 0, "list api keys", row_key, &v, e);
}

int store_apikey_revoke(struct store *st, int64_t id, int64_t at, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_KEY_REVOKE, e);
    int rc;

    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, at);
    rc = step_done(st, s, "revoke api key", e);
    if (rc == 0 && sqlite3_changes(st->db) == 0)
        rc = ERR(e, E_NOTFOUND, "no active api key with id %lld", (long long)id);
    return rc;
}

int store_audit_add(struct store *st, const struct store_audit *a, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_AUDIT_ADD, e);

    ASSERT(st->in_tx);
    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, a->at);
    bind_text(s, 2, a->actor);
    bind_text(s, 3, a->action);
    bind_text(s, 4, a->entity);
    bind_text(s, 5, a->entity_id ? a->entity_id : "");
    bind_text(s, 6, a->before);
    bind_text(s, 7, a->after);
    bind_text(s, 8, a->request_id ? a->request_id : "");
    return step_done(st, s, "write audit record", e);
}

static int row_audit(sqlite3_stmt *s, struct visit *v)
{
    struct store_audit a = {
        .id = sqlite3_column_int64(s, 0),
        .at = sqlite3_column_int64(s, 1),
        .actor = col_text(s, 2),
        .action = col_text(s, 3),
        .entity = col_text(s, 4),
        .entity_id = col_text(s, 5),
        .before = col_text(s, 6),
        .after = col_text(s, 7),
        .request_id = col_text(s, 8),
    };

    return v->fn.audit(v->ctx, &a);
}

int store_audit_list(struct store *st, int64_t before_id, int limit,
                     const struct store_audit_filter *f, store_audit_fn fn, void *ctx,
                     struct err *e)
{
    static const struct store_audit_filter none = {0};
    sqlite3_stmt *s = stmt(st, Q_AUDIT_LIST, e);
    struct visit v = {.fn.audit = fn, .ctx = ctx};

    if (s == NULL)
        return e->code;
    if (f == NULL)
        f = &none;
    sqlite3_bind_int64(s, 1, before_id > 0 ? before_id : INT64_MAX);
    sqlite3_bind_int(s, 2, limit > 0 ? limit : -1);
    bind_text(s, 3, f->actor);
    bind_text(s, 4, f->action);
    bind_text(s, 5, f->entity);
    bind_text(s, 6, f->entity_id);
    sqlite3_bind_int64(s, 7, f->since > 0 ? f->since : INT64_MIN);
    sqlite3_bind_int64(s, 8, f->until > 0 ? f->until : INT64_MAX);
    return each_row(st, s, 0, "read audit", row_audit, &v, e);
}

/* ---- imports ------------------------------------------------------------------- */

int store_import_begin(struct store *st, const char *kind, const char *file, int64_t at,
                       int64_t *id, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_IMPORT_BEGIN, e);
    int rc;

    if (s == NULL)
        return e->code;
    bind_text(s, 1, kind);
    bind_text(s, 2, file);
    sqlite3_bind_int64(s, 3, at);
    rc = step_done(st, s, "record import", e);
    if (rc == 0)
        *id = sqlite3_last_insert_rowid(st->db);
    return rc;
}

int store_import_progress(struct store *st, const struct store_import *im, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_IMPORT_PROGRESS, e);

    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, im->id);
    bind_text(s, 2, im->status);
    sqlite3_bind_int64(s, 3, im->finished_at);
    sqlite3_bind_int64(s, 4, im->read);
    sqlite3_bind_int64(s, 5, im->inserted);
    sqlite3_bind_int64(s, 6, im->updated);
    sqlite3_bind_int64(s, 7, im->duplicates);
    sqlite3_bind_int64(s, 8, im->rejected);
    return step_done(st, s, "update import", e);
}

static int row_import(sqlite3_stmt *s, struct visit *v)
{
    struct store_import im = {
        .id = sqlite3_column_int64(s, 0),
        .kind = col_text(s, 1),
        .file = col_text(s, 2),
        .status = col_text(s, 3),
        .started_at = sqlite3_column_int64(s, 4),
        .finished_at = sqlite3_column_int64(s, 5),
        .read = sqlite3_column_int64(s, 6),
        .inserted = sqlite3_column_int64(s, 7),
        .updated = sqlite3_column_int64(s, 8),
        .duplicates = sqlite3_column_int64(s, 9),
        .rejected = sqlite3_column_int64(s, 10),
    };

    return v->fn.import(v->ctx, &im);
}

int store_imports(struct store *st, int limit, store_import_fn fn, void *ctx, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_IMPORTS, e);
    struct visit v = {.fn.import = fn, .ctx = ctx};

    if (s == NULL)
        return e->code;
    sqlite3_bind_int(s, 1, limit > 0 ? limit : -1);
    return each_row(st, s, 0, "list imports", row_import, &v, e);
}

/* ---- saved segments ---------------------------------------------------------------- */

int store_segment_insert(struct store *st, struct store_segment *sg, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_SEG_INSERT, e);
    int rc;

    ASSERT(st->in_tx);
    if (s == NULL)
        return e->code;
    bind_text(s, 1, sg->name);
    bind_text(s, 2, sg->description ? sg->description : "");
    sqlite3_bind_int(s, 3, sg->version);
    sqlite3_bind_int(s, 4, sg->schedule_minutes);
    sqlite3_bind_int64(s, 5, sg->next_run_at);
    sqlite3_bind_int64(s, 6, sg->created_at);
    sqlite3_bind_int64(s, 7, sg->updated_at);
    bind_text(s, 8, sg->created_by);
    rc = step_done(st, s, "insert segment", e);
    if (rc)
        return rc;
    sg->id = sqlite3_last_insert_rowid(st->db);
    return store_segment_update(st, sg, 1, e);
}

int store_segment_update(struct store *st, const struct store_segment *sg, int add_version,
                         struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_SEG_UPDATE, e);
    int rc;

    ASSERT(st->in_tx);
    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, sg->id);
    bind_text(s, 2, sg->name);
    bind_text(s, 3, sg->description ? sg->description : "");
    sqlite3_bind_int(s, 4, sg->version);
    sqlite3_bind_int(s, 5, sg->schedule_minutes);
    sqlite3_bind_int64(s, 6, sg->next_run_at);
    sqlite3_bind_int64(s, 7, sg->updated_at);
    sqlite3_bind_int(s, 8, sg->deleted);
    rc = step_done(st, s, "update segment", e);
    if (rc || !add_version)
        return rc;
    s = stmt(st, Q_SEG_VERSION_ADD, e);
    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, sg->id);
    sqlite3_bind_int(s, 2, sg->version);
    bind_text(s, 3, sg->rules);
    bind_text(s, 4, sg->plan);
    sqlite3_bind_int64(s, 5, sg->updated_at);
    bind_text(s, 6, sg->created_by);
    return step_done(st, s, "add segment version", e);
}

static int row_segment(sqlite3_stmt *s, struct visit *v)
{
    struct store_segment sg = {
        .id = sqlite3_column_int64(s, 0),
        .name = col_text(s, 1),
        .description = col_text(s, 2),
        .created_by = col_text(s, 3),
        .rules = col_text(s, 4),
        .plan = col_text(s, 5),
        .version = sqlite3_column_int(s, 6),
        .schedule_minutes = sqlite3_column_int(s, 7),
        .next_run_at = sqlite3_column_int64(s, 8),
        .created_at = sqlite3_column_int64(s, 9),
        .updated_at = sqlite3_column_int64(s, 10),
        .deleted = sqlite3_column_int(s, 11),
    };

    return v->fn.segment(v->ctx, &sg);
}

static int read_segments(struct store *st, sqlite3_stmt *s, store_segment_fn fn, void *ctx,
                         int must_find, struct err *e)
{
    struct visit v = {.fn.segment = fn, .ctx = ctx};
    int rc = each_row(st, s, 0, "read segments", row_segment, &v, e);

    if (rc == 0 && must_find && v.rows == 0)
        return ERR(e, E_NOTFOUND, "no such segment");
    return rc;
}

int store_segment_get(struct store *st, int64_t id, store_segment_fn fn, void *ctx,
                      struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_SEG_GET, e);

    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, id);
    return read_segments(st, s, fn, ctx, 1, e);
}

int store_segments_list(struct store *st, int64_t after_id, int limit, store_segment_fn fn,
                        void *ctx, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_SEG_LIST, e);

    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, after_id);
    sqlite3_bind_int(s, 2, limit > 0 ? limit : -1);
    return read_segments(st, s, fn, ctx, 0, e);
}

int store_segment_versions(struct store *st, int64_t id, store_segment_fn fn, void *ctx,
                           struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_SEG_VERSIONS, e);

    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, id);
    return read_segments(st, s, fn, ctx, 1, e);
}

/* Due segments are collected first (the callback may write), then each one's next run
 * moves a period on. */
struct due {
    int64_t *ids;
    int *every;
    int n;
};

static int collect_due(void *ctx, const struct store_segment *sg)
{
    struct due *d = ctx;

    d->ids = xrealloc(d->ids, (size_t)(d->n + 1) * sizeof *d->ids);
    d->every = xrealloc(d->every, (size_t)(d->n + 1) * sizeof *d->every);
    d->ids[d->n] = sg->id;
    d->every[d->n] = sg->schedule_minutes;
    d->n++;
    return 0;
}

int store_segments_claim_due(struct store *st, int64_t now, store_segment_fn fn, void *ctx,
                             struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_SEG_DUE, e);
    struct due d = {0};
    int rc, i;

    ASSERT(st->in_tx);
    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, now);
    rc = read_segments(st, s, collect_due, &d, 0, e);
    for (i = 0; rc == 0 && i < d.n; i++) {
        struct store_segment sg = {.id = d.ids[i], .schedule_minutes = d.every[i]};
        s = stmt(st, Q_SEG_NEXT_RUN, e);
        if (s == NULL) {
            rc = e->code;
            break;
        }
        sqlite3_bind_int64(s, 1, d.ids[i]);
        sg.next_run_at = now + (int64_t)d.every[i] * MIN_MS;
        sqlite3_bind_int64(s, 2, sg.next_run_at);
        rc = step_done(st, s, "claim segment", e);
        if (rc == 0)
            rc = fn(ctx, &sg);
    }
    free(d.ids);
    free(d.every);
    return rc;
}

int store_evaluation_begin(struct store *st, struct store_evaluation *ev, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_EVAL_BEGIN, e);
    int rc;

    ASSERT(st->in_tx);
    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, ev->segment_id);
    sqlite3_bind_int(s, 2, ev->version);
    bind_text(s, 3, ev->trigger);
    sqlite3_bind_int64(s, 4, ev->as_of);
    sqlite3_bind_int64(s, 5, ev->started_at);
    rc = step_done(st, s, "begin evaluation", e);
    if (rc == 0)
        ev->id = sqlite3_last_insert_rowid(st->db);
    return rc;
}

int store_evaluation_finish(struct store *st, const struct store_evaluation *ev,
                            const void *members, size_t members_len, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_EVAL_FINISH, e);
    int rc;

    ASSERT(st->in_tx);
    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, ev->id);
    bind_text(s, 2, ev->status);
    sqlite3_bind_int64(s, 3, ev->finished_at);
    sqlite3_bind_int64(s, 4, ev->member_count);
    sqlite3_bind_double(s, 5, ev->took_ms);
    bind_text(s, 6, ev->error ? ev->error : "");
    rc = step_done(st, s, "finish evaluation", e);
    if (rc || members == NULL)
        return rc;
    s = stmt(st, Q_SNAP_PUT, e);
    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, ev->id);
    sqlite3_bind_blob64(s, 2, members, members_len, SQLITE_STATIC);
    return step_done(st, s, "store snapshot", e);
}

static int row_evaluation(sqlite3_stmt *s, struct visit *v)
{
    struct store_evaluation ev = {
        .id = sqlite3_column_int64(s, 0),
        .segment_id = sqlite3_column_int64(s, 1),
        .version = sqlite3_column_int(s, 2),
        .trigger = col_text(s, 3),
        .status = col_text(s, 4),
        .error = col_text(s, 5),
        .as_of = sqlite3_column_int64(s, 6),
        .started_at = sqlite3_column_int64(s, 7),
        .finished_at = sqlite3_column_int64(s, 8),
        .member_count = sqlite3_column_int64(s, 9),
        .took_ms = sqlite3_column_double(s, 10),
    };

    return v->fn.evaluation(v->ctx, &ev);
}

int store_evaluations_list(struct store *st, int64_t segment_id, int64_t before_id, int limit,
                           store_evaluation_fn fn, void *ctx, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_EVAL_LIST, e);
    struct visit v = {.fn.evaluation = fn, .ctx = ctx};

    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, segment_id);
    sqlite3_bind_int64(s, 2, before_id > 0 ? before_id : INT64_MAX);
    sqlite3_bind_int(s, 3, limit > 0 ? limit : -1);
    return each_row(st, s, 0, "list evaluations", row_evaluation, &v, e);
}

int store_evaluation_get(struct store *st, int64_t segment_id, int64_t id,
                         store_evaluation_fn fn, void *ctx, struct err *e)
{
    sqlite3_stmt *s = stmt(st, id ? Q_EVAL_GET : Q_EVAL_LATEST, e);
    struct visit v = {.fn.evaluation = fn, .ctx = ctx};
    int rc;

    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, segment_id);
    if (id)
        sqlite3_bind_int64(s, 2, id);
    rc = each_row(st, s, 0, "read evaluation", row_evaluation, &v, e);
    if (rc == 0 && v.rows == 0)
        return ERR(e, E_NOTFOUND, id ? "no such evaluation of this segment"
                                     : "this segment has no successful evaluation yet");
    return rc;
}

int store_snapshot_get(struct store *st, int64_t evaluation_id, void **out, size_t *len,
                       struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_SNAP_GET, e);
    int rc;

    *out = NULL;
    *len = 0;
    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, evaluation_id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *len = (size_t)sqlite3_column_bytes(s, 0);
        *out = xmalloc(*len ? *len : 1);
        if (*len)
            memcpy(*out, sqlite3_column_blob(s, 0), *len);
        rc = 0;
    } else if (rc == SQLITE_DONE)
        rc = ERR(e, E_NOTFOUND, "evaluation %lld has no snapshot", (long long)evaluation_id);
    else
        rc = db_err(st, e, rc, "read snapshot");
    done(s);
    return rc;
}

int store_evaluations_interrupt(struct store *st, int64_t at, int64_t *count, struct err *e)
{
    sqlite3_stmt *s = stmt(st, Q_EVAL_INTERRUPT, e);
    int rc;

    ASSERT(st->in_tx);
    if (s == NULL)
        return e->code;
    sqlite3_bind_int64(s, 1, at);
    rc = step_done(st, s, "interrupt evaluations", e);
    if (count)
        *count = rc == 0 ? sqlite3_changes(st->db) : 0;
    return rc;
}

/* ---- pool ----------------------------------------------------------------------- */

struct store_pool {
    pthread_mutex_t mu; /* mu protects free_list, nfree */
    pthread_cond_t cv;
    struct store **all, **free_list;
    int n, nfree;
};

int store_pool_new(struct store_pool **out, const char *data_dir, int size,
                   const struct store_opts *opts, struct err *e)
{
    struct store_pool *p = xcalloc(1, sizeof *p);
    int i, rc;

    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->all = xcalloc((size_t)size, sizeof *p->all);
    p->free_list = xcalloc((size_t)size, sizeof *p->free_list);
    for (i = 0; i < size; i++) {
        rc = store_open(&p->all[i], data_dir, opts, e);
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
