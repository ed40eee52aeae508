/* sync/policy.c -- what a sync source may name: its password reference and its DSN.
 *
 * DESIGN: this server reads a source's password reference (a file, a variable of its
 * environment) and sends the password to the host the DSN names. The operator (the
 * CLI) may name anything; an admin key (the API) only what the operator set aside:
 * files inside [sync] secret_dir, variables starting with [sync] secret_env_prefix, and
 * DSN options from an allow-list, none of which names a file or a socket of this
 * server. Who added a source is kept with it (origin) and these checks run again at
 * every connection (source.c), so a source added before a setting was tightened, or
 * before these rules, cannot read past them. Whatever the origin, a password goes only
 * over TLS (sslmode require or stronger) unless [sync] allow_insecure_tls, and never as
 * the secrets key itself. Every problem is reported with its JSON pointer. */
#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sync.h"

enum sync_origin sync_origin_of(const struct store_sync_source *s)
{
    return strcmp(s->origin, "cli") == 0 ? SYNC_ORIGIN_CLI : SYNC_ORIGIN_API;
}

/* ---- TLS --------------------------------------------------------------------------- */

static const char *const tls_modes[] = {"disable", "allow",     "prefer",
                                        "require", "verify-ca", "verify-full"};

/* libpq's sslmode when a DSN sets none: PGSSLMODE (or PGREQUIRESSL), else "prefer". */
static int default_tls(void)
{
    PQconninfoOption *d = PQconndefaults(), *o;
    int level = SYNC_TLS_PREFER, i;

    for (o = d; o && o->keyword; o++) {
        if (strcmp(o->keyword, "sslmode") || o->val == NULL)
            continue;
        for (i = 0; i <= SYNC_TLS_VERIFY_FULL; i++)
            if (strcmp(o->val, tls_modes[i]) == 0)
                level = i;
    }
    PQconninfoFree(d);
    return level;
}

/* The option's value in a parsed DSN, NULL when not set. */
static const char *opt_val(const PQconninfoOption *opts, const char *keyword)
{
    for (; opts->keyword; opts++)
        if (strcmp(opts->keyword, keyword) == 0)
            return opts->val;
    return NULL;
}

static int tls_of(const PQconninfoOption *opts)
{
    const char *mode = opt_val(opts, "sslmode");
    int i;

    if (mode == NULL)
        return default_tls();
    for (i = 0; i <= SYNC_TLS_VERIFY_FULL; i++)
        if (strcmp(mode, tls_modes[i]) == 0)
            return i;
    return -1;
}

int sync_dsn_tls(const char *dsn)
{
    PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
    int level = opts ? tls_of(opts) : -1;

    PQconninfoFree(opts);
    return level;
}

int sync_password_needs_tls(const struct config *cfg)
{
    /* libpq 16 and later refuse a clear-text request themselves (require_auth, source.c) */
    return !cfg->sync_allow_insecure_tls && PQlibVersion() < 160000;
}

/* ---- DSN options -------------------------------------------------------------------- */

/* Options a DSN from the API may set. An allow-list: an option a later libpq adds is
 * refused until it is read and listed here. */
static const char *const api_options[] = {"host",
                                          "hostaddr",
                                          "port",
                                          "dbname",
                                          "user",
                                          "connect_timeout",
                                          "client_encoding",
                                          "options",
                                          "application_name",
                                          "fallback_application_name",
                                          "keepalives",
                                          "keepalives_idle",
                                          "keepalives_interval",
                                          "keepalives_count",
                                          "tcp_user_timeout",
                                          "sslmode",
                                          "sslcompression",
                                          "sslsni",
                                          "sslcertmode",
                                          "ssl_min_protocol_version",
                                          "ssl_max_protocol_version",
                                          "channel_binding",
                                          "gssencmode",
                                          "krbsrvname",
                                          "target_session_attrs",
                                          "load_balance_hosts",
                                          "require_auth",
                                          NULL};

/* Why the others are refused, where there is more to say than "not allowed". */
static const struct {
    const char *option, *why;
} refused[] = {
    {"passfile", "names a file on this server"},
    {"sslcert", "names a file on this server"},
    {"sslkey", "names a file on this server"},
    {"sslrootcert", "names a file on this server"},
    {"sslcrl", "names a file on this server"},
    {"sslcrldir", "names a directory on this server"},
    {"sslkeylogfile", "names a file on this server"},
    {"service", "reads this server's pg_service.conf"},
    {"servicefile", "names a file on this server"},
    {"requirepeer", "is for unix sockets of this server"},
    {"gssdelegation", "would hand this server's Kerberos credentials to the host"},
    {"gsslib", "is for this server's GSS library"},
    {"replication", "is not for reading tables"},
};

static int listed(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return 1;
    return 0;
}

static void api_option_check(const char *keyword, const char *at, struct errlist *errs)
{
    size_t i;

    if (listed(api_options, keyword))
        return;
    for (i = 0; i < sizeof refused / sizeof *refused; i++)
        if (strcmp(refused[i].option, keyword) == 0) {
            errlist_add(errs, at, "%s: %s: not allowed over the API", keyword, refused[i].why);
            return;
        }
    errlist_add(errs, at,
                "%s: not among the options a source added over the API may set "
                "(docs/sync.md)",
                keyword);
}

/* host (a list, a,b,c) must name TCP hosts: a path or an empty entry without a hostaddr
 * is a unix socket of this server. */
static void api_host_check(const char *host, const char *hostaddr, const char *at,
                           struct errlist *errs)
{
    const char *h = host ? host : "", *a = hostaddr ? hostaddr : "";

    for (;;) {
        size_t hn = strcspn(h, ","), an = strcspn(a, ",");
        if (h[0] == '/' || h[0] == '@')
            errlist_add(errs, at,
                        "host: %.*s is a unix socket of this server: not allowed over "
                        "the API (name a TCP host)",
                        (int)(hn > 100 ? 100 : hn), h);
        else if (hn == 0 && an == 0)
            errlist_add(errs, at,
                        "host: is required over the API, a TCP host name or address "
                        "(without one libpq connects to this server's unix socket)");
        if (h[hn] == '\0' && a[an] == '\0')
            return;
        h += h[hn] ? hn + 1 : hn;
        a += a[an] ? an + 1 : an;
    }
}

void sync_dsn_check(const char *dsn, enum sync_origin origin, int has_password,
                    const struct config *cfg, const char *at, struct errlist *errs)
{
    char *why = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &why), *o;
    int level, api = origin == SYNC_ORIGIN_API;

    if (opts == NULL) {
        if (why)
            why[strcspn(why, "\n")] = '\0';
        errlist_add(errs, at, "not a libpq connection string: %s", why ? why : "out of memory");
        PQfreemem(why);
        return;
    }
    for (o = opts; o->keyword; o++) {
        if (o->val == NULL)
            continue;
        if (strcmp(o->keyword, "password") == 0 || strcmp(o->keyword, "sslpassword") == 0)
            errlist_add(errs, at,
                        "must not hold the password (it would be stored and shown): "
                        "give it as a reference (env:VAR, file:PATH) or to be sealed");
        else if (api)
            api_option_check(o->keyword, at, errs);
    }
    if (api)
        api_host_check(opt_val(opts, "host"), opt_val(opts, "hostaddr"), at, errs);
    level = tls_of(opts);
    if (level < 0)
        errlist_add(errs, at,
                    "sslmode: \"%.40s\" is none of disable, allow, prefer, require, "
                    "verify-ca, verify-full",
                    opt_val(opts, "sslmode"));
    else if (level < SYNC_TLS_REQUIRE && !cfg->sync_allow_insecure_tls &&
             (api || (has_password && sync_password_needs_tls(cfg))))
        errlist_add(errs, at,
                    "sslmode: is %s%s: %s: set sslmode=require (or verify-ca, "
                    "verify-full), or [sync] allow_insecure_tls = true",
                    tls_modes[level],
                    opt_val(opts, "sslmode") ? ""
                    : getenv("PGSSLMODE")    ? " (from PGSSLMODE)"
                                             : " (the default)",
                    api ? "a source added over the API must use TLS"
                        : "the password would be sent without TLS");
    PQconninfoFree(opts);
}

/* ---- password references ------------------------------------------------------------ */

/* Whether a and b are the same file (both resolve; b may be unset). */
static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;

    return b[0] && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* Whether path lies under dir ("/" holds everything), as text. */
static int under(const char *path, const char *dir)
{
    size_t n = strlen(dir);

    while (n > 1 && dir[n - 1] == '/')
        n--;
    return (n == 1 && dir[0] == '/') || (strncmp(path, dir, n) == 0 && path[n] == '/');
}

/* A file an API caller names (a password reference, a SQLite source): PATH names a place
 * under the directory the operator set aside, dir (the key `key`, "" when unset: nothing
 * allowed), as written and without `..` (nothing outside it is looked at, so the answers
 * say nothing of other files), and resolves (symlinks followed) to a regular file inside
 * it (resolved too); its resolved path into out. what ("file:" or "") prefixes PATH in
 * messages. */
static int api_file_check(const char *path, const char *dir_set, const char *key, const char *what,
                          char out[PATH_MAX], char *msg, size_t cap)
{
    char dir[PATH_MAX];
    size_t n = strlen(path);
    struct stat st;

    if (dir_set[0] == '\0') {
        snprintf(msg, cap, "%s are not allowed over the API: %s is not set",
                 what[0] ? "file: references" : "SQLite files", key);
        return -1;
    }
    if (path[0] != '/') {
        snprintf(msg, cap, "%s%.80s: must be an absolute path inside %s (%.80s)", what, path, key,
                 dir_set);
        return -1;
    }
    if (strstr(path, "/../") || (n >= 3 && strcmp(path + n - 3, "/..") == 0)) {
        snprintf(msg, cap, "%s%.120s: must not go up (..): name the file inside %s", what, path,
                 key);
        return -1;
    }
    if (realpath(dir_set, dir) == NULL) {
        snprintf(msg, cap, "%s %.100s: %s", key, dir_set, strerror(errno));
        return -1;
    }
    if (!under(path, dir_set) && !under(path, dir)) {
        snprintf(msg, cap, "%s%.120s is outside %s (%.80s)", what, path, key, dir_set);
        return -1;
    }
    if (realpath(path, out) == NULL) {
        snprintf(msg, cap, "%s%.120s: %s", what, path, strerror(errno));
        return -1;
    }
    if (!under(out, dir)) {
        snprintf(msg, cap, "%s%.80s resolves to %.80s, outside %s (%.60s)", what, path, out, key,
                 dir_set);
        return -1;
    }
    if (stat(out, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(msg, cap, "%s%.120s: not a regular file", what, path);
        return -1;
    }
    return 0;
}

int sync_sqlite_path(const char *dsn, enum sync_origin origin, const struct config *cfg,
                     char out[PATH_MAX], char *msg, size_t cap)
{
    if (origin != SYNC_ORIGIN_API) {
        snprintf(out, PATH_MAX, "%s", dsn); /* the operator's: opened as named */
        return 0;
    }
    if (strncmp(dsn, "file:", 5) == 0) {
        snprintf(msg, cap,
                 "a SQLite URI (file:…) is not allowed over the API: name the file's "
                 "path inside [sync] sqlite_dir");
        return -1;
    }
    if (api_file_check(dsn, cfg->sync_sqlite_dir, "[sync] sqlite_dir", "", out, msg, cap))
        return -1;
    {
        char data[PATH_MAX];
        if (same_file(out, cfg->secrets_key_file) ||
            (realpath(cfg->data_dir, data) && under(out, data))) {
            snprintf(msg, cap, "%.120s is in engage's data directory, not a CRM's database", dsn);
            return -1;
        }
    }
    return 0;
}

/* The problem with ref for a source of this origin, into msg (-1); for a file: reference
 * its path to read into path (resolved from the API). */
static int ref_check(const char *ref, enum sync_origin origin, const struct config *cfg,
                     char path[PATH_MAX], char *msg, size_t cap)
{
    const char *prefix = cfg->sync_secret_env_prefix;
    int api = origin == SYNC_ORIGIN_API;

    if (strncmp(ref, "env:", 4) == 0) {
        const char *name = ref + 4;
        size_t n = strlen(name);
        if (n == 0 || n > 128 || (name[0] >= '0' && name[0] <= '9') ||
            strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != n) {
            snprintf(msg, cap, "env:%.80s: expected a variable name (letters, digits and _)", name);
            return -1;
        }
        if (strcmp(name, cfg->secrets_key_env) == 0) {
            snprintf(msg, cap, "env:%s holds the secrets key ([secrets] key_env), not a password",
                     name);
            return -1;
        }
        if (api && prefix[0] == '\0') {
            snprintf(msg, cap,
                     "env: references are not allowed over the API: [sync] "
                     "secret_env_prefix is not set");
            return -1;
        }
        if (api && (strncmp(name, prefix, strlen(prefix)) != 0 || n == strlen(prefix))) {
            snprintf(msg, cap, "env:%.80s does not start with [sync] secret_env_prefix (%s)", name,
                     prefix);
            return -1;
        }
        if (api && config_env_is_setting(name)) {
            snprintf(msg, cap, "env:%s is a setting of engage, not a password", name);
            return -1;
        }
        return 0;
    }
    if (strncmp(ref, "file:", 5) == 0) {
        const char *file = ref + 5;
        if (file[0] == '\0' || strlen(file) >= PATH_MAX) {
            snprintf(msg, cap, "file: expected a path");
            return -1;
        }
        if (strcmp(file, "-") == 0) {
            snprintf(msg, cap,
                     "file:- would read the standard input at each connection: name a "
                     "file (or seal the password: --password-stdin, \"password\")");
            return -1;
        }
        if (api && api_file_check(file, cfg->sync_secret_dir, "[sync] secret_dir", "file:", path,
                                  msg, cap))
            return -1;
        if (!api)
            snprintf(path, PATH_MAX, "%s", file); /* the operator's: read as named */
        if (same_file(path, cfg->secrets_key_file)) {
            snprintf(msg, cap,
                     "file:%.120s is the secrets key ([secrets] key_file), not a "
                     "password",
                     file);
            return -1;
        }
        return 0;
    }
    snprintf(msg, cap, "must be env:VAR or file:PATH");
    return -1;
}

void sync_ref_check(const char *ref, enum sync_origin origin, const struct config *cfg,
                    const char *at, struct errlist *errs)
{
    char path[PATH_MAX], msg[240];

    if (ref_check(ref, origin, cfg, path, msg, sizeof msg))
        errlist_add(errs, at, "%s", msg);
}

int sync_ref_read(const char *ref, enum sync_origin origin, const struct config *cfg, char **out,
                  struct err *e)
{
    char path[PATH_MAX], msg[300];
    int env = strncmp(ref, "env:", 4) == 0;

    *out = NULL;
    if (ref_check(ref, origin, cfg, path, msg, sizeof msg))
        return ERR(e, E_INVAL, "password_ref: %s", msg);
    if (config_secret_resolve(env ? "env" : "file", env ? ref + 4 : path, out, msg, sizeof msg))
        return ERR(e, E_INVAL, "the password: %s", msg);
    return 0;
}
