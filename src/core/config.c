/* core/config.c -- INI configuration via inih.
 *
 * DESIGN: one table of scalar keys (section, name, type, offset) drives parsing,
 * defaults-dumping and documentation checks, so a key exists in exactly one
 * place. Named sections ([provider:NAME], [webhook:NAME]) have their own small
 * table (named_keys), parsed and dumped by the same code, plus secrets by reference.
 * Errors carry "FILE:LINE: [section] key: what is wrong". */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

enum key_type { K_STR, K_INT, K_LONG, K_BOOL, K_LOGLEVEL, K_UNKNOWN_EVENTS, K_CONSENT, K_STARTTLS };

struct key_def {
    const char *section, *name;
    enum key_type type;
    size_t off, size;
    long min, max;
};

/* clang-format off: one key a line, as a table */
#define S(sec, nm, field)                                                                          \
    {                                                                                              \
        sec, nm, K_STR, offsetof(struct config, field), sizeof(((struct config *)0)->field), 0, 0  \
    }
#define I(sec, nm, field, lo, hi)                                                                  \
    {                                                                                              \
        sec, nm, K_INT, offsetof(struct config, field), sizeof(int), lo, hi                        \
    }
#define B(sec, nm, field)                                                                          \
    {                                                                                              \
        sec, nm, K_BOOL, offsetof(struct config, field), sizeof(int), 0, 1                         \
    }
/* clang-format on */

static const struct key_def keys[] = {
    S("server", "listen", listen),
    S("server", "public_url", public_url),
    I("server", "http_threads", http_threads, 0, 256),
    {"server", "max_body_bytes", K_LONG, offsetof(struct config, max_body_bytes), sizeof(long),
     1024, 1L << 30},
    I("server", "max_json_values", max_json_values, 1000, 100000000),
    I("server", "max_connections", max_connections, 16, 100000),
    I("server", "per_ip_connections", per_ip_connections, 0, 100000),
    I("server", "header_timeout_s", header_timeout_s, 1, 3600),
    I("server", "body_timeout_s", body_timeout_s, 1, 86400),
    I("server", "idle_timeout_s", idle_timeout_s, 1, 3600),
    I("server", "keyless_per_ip", keyless_per_ip, 1, 100000),
    I("server", "keyless_max", keyless_max, 1, 100000),
    {"log", "level", K_LOGLEVEL, offsetof(struct config, log_level), sizeof(int), 0, 0},
    I("store", "busy_timeout_ms", busy_timeout_ms, 0, 600000),
    {"ingest", "unknown_events", K_UNKNOWN_EVENTS, offsetof(struct config, unknown_events_reject),
     sizeof(int), 0, 0},
    {"ingest", "default_consent", K_CONSENT, offsetof(struct config, default_consent), sizeof(int),
     0, 0},
    I("ingest", "import_batch_rows", import_batch_rows, 1, 1000000),
    I("ingest", "queue_max", ingest_queue_max, 100, 10000000),
    {"ingest", "max_value_bytes", K_LONG, offsetof(struct config, max_value_bytes), sizeof(long),
     256, 1L << 30},
    {"ingest", "max_row_bytes", K_LONG, offsetof(struct config, max_row_bytes), sizeof(long), 1024,
     1L << 30},
    I("ingest", "pattern_max_value_bytes", pattern_max_value_bytes, 16, 1 << 20),
    I("sync", "interval_seconds", sync_interval_s, 1, 3600),
    I("sync", "reconcile_hour", sync_reconcile_hour, -1, 23),
    B("sync", "reconcile_repair", sync_reconcile_repair),
    S("sync", "secret_dir", sync_secret_dir),
    S("sync", "sqlite_dir", sync_sqlite_dir),
    S("sync", "secret_env_prefix", sync_secret_env_prefix),
    B("sync", "allow_insecure_tls", sync_allow_insecure_tls),
    I("segment", "max_depth", seg_max_depth, 1, 64),
    I("segment", "max_rules", seg_max_rules, 1, 10000),
    I("segment", "max_in_values", seg_max_in_values, 1, 1000000),
    I("segment", "max_window_days", seg_max_window_days, 1, 36500),
    I("segment", "eval_timeout_ms", seg_eval_timeout_ms, 10, HOUR_MS),
    I("retry", "max_attempts", retry_max_attempts, 1, 100),
    I("retry", "base_delay_s", retry_base_delay_s, 1, 86400),
    I("retry", "max_delay_s", retry_max_delay_s, 1, 7 * 86400),
    S("secrets", "key_file", secrets_key_file),
    S("secrets", "key_env", secrets_key_env),
};

#undef S
#undef I
#undef B

void config_defaults(struct config *c, const char *data_dir)
{
    memset(c, 0, sizeof *c);
    snprintf(c->data_dir, sizeof c->data_dir, "%s", data_dir);
    snprintf(c->listen, sizeof c->listen, "127.0.0.1:8080");
    c->http_threads = 0;
    c->max_body_bytes = 4L << 20;
    c->max_json_values = 100000;
    c->max_connections = 2048;
    c->per_ip_connections = 64;
    c->header_timeout_s = 10;
    c->body_timeout_s = 120;
    c->idle_timeout_s = 60;
    c->keyless_per_ip = 8;
    c->keyless_max = 256;
    c->log_level = LOG_INFO;
    c->busy_timeout_ms = 10000;
    c->unknown_events_reject = 0;
    c->default_consent = CONSENT_SUBSCRIBED;
    c->import_batch_rows = 20000;
    c->ingest_queue_max = 50000;
    c->max_value_bytes = CONFIG_MAX_VALUE_BYTES;
    c->max_row_bytes = 4L << 20;
    c->pattern_max_value_bytes = CONFIG_PATTERN_MAX_VALUE_BYTES;
    c->sync_interval_s = 5;
    c->sync_reconcile_hour = 3;
    c->sync_reconcile_repair = 0;
    c->seg_max_depth = 5;
    c->seg_max_rules = 50;
    c->seg_max_in_values = 1000;
    c->seg_max_window_days = 730;
    c->seg_eval_timeout_ms = 30000;
    c->retry_max_attempts = 6;
    c->retry_base_delay_s = 30;
    c->retry_max_delay_s = 3600;
    snprintf(c->secrets_key_file, sizeof c->secrets_key_file, "%s/secret.key", data_dir);
}

struct load_ctx {
    struct config *c;
    const char *path;
    char msg[400];
};

/* Sets key k of the struct at base (struct config, or a struct config_named for the
 * named sections' keys) from value; -1 with lc->msg saying why. */
static int set_scalar(struct load_ctx *lc, const struct key_def *k, void *base, const char *value)
{
    char *field = (char *)base + k->off;
    int64_t v;

    switch (k->type) {
    case K_STR:
        if (strlen(value) >= k->size) {
            snprintf(lc->msg, sizeof lc->msg, "longer than %zu characters", k->size - 1);
            return -1;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case K_INT:
    case K_LONG:
        if (parse_i64(value, strlen(value), &v) || v < k->min || v > k->max) {
            snprintf(lc->msg, sizeof lc->msg, "expected an integer from %ld to %ld, got \"%s\"",
                     k->min, k->max, value);
            return -1;
        }
        if (k->type == K_INT)
            *(int *)field = (int)v;
        else
            *(long *)field = (long)v;
        return 0;
    case K_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0) {
            *(int *)field = value[0] == 't';
            return 0;
        }
        snprintf(lc->msg, sizeof lc->msg, "expected true or false, got \"%s\"", value);
        return -1;
    case K_LOGLEVEL: {
        enum log_level l;
        if (log_level_parse(value, &l)) {
            snprintf(lc->msg, sizeof lc->msg, "expected error, warn, info or debug, got \"%s\"",
                     value);
            return -1;
        }
        *(int *)field = (int)l;
        return 0;
    }
    case K_UNKNOWN_EVENTS:
        if (strcmp(value, "accept") && strcmp(value, "reject")) {
            snprintf(lc->msg, sizeof lc->msg, "expected accept or reject, got \"%s\"", value);
            return -1;
        }
        *(int *)field = strcmp(value, "reject") == 0;
        return 0;
    case K_CONSENT: {
        enum consent_state s;
        if (consent_parse(value, &s) || (s != CONSENT_SUBSCRIBED && s != CONSENT_UNSUBSCRIBED)) {
            snprintf(lc->msg, sizeof lc->msg, "expected subscribed or unsubscribed, got \"%s\"",
                     value);
            return -1;
        }
        *(int *)field = (int)s;
        return 0;
    }
    case K_STARTTLS:
        if (strcmp(value, "auto") && strcmp(value, "required")) {
            snprintf(lc->msg, sizeof lc->msg, "expected auto or required, got \"%s\"", value);
            return -1;
        }
        *(int *)field = value[0] == 'r';
        return 0;
    }
    return -1;
}

int config_secret_resolve(const char *kind, const char *ref, char **out, char *msg, size_t msgcap)
{
    if (strcmp(kind, "env") == 0) {
        const char *v = getenv(ref);
        if (v == NULL || *v == '\0') {
            snprintf(msg, msgcap, "environment variable %s is not set", ref);
            return -1;
        }
        *out = xstrdup(v);
        return 0;
    } else {
        struct err e = {0};
        char *data;
        size_t n;
        if (file_read_all(ref, 64 * 1024, &data, &n, &e)) {
            snprintf(msg, msgcap, "%s", e.msg);
            return -1;
        }
        data[strcspn(data, "\r\n")] = '\0'; /* the first line */
        n = strlen(data);
        while (n > 0 && (data[n - 1] == ' ' || data[n - 1] == '\t'))
            data[--n] = '\0';
        *out = data;
        return 0;
    }
}

/* The keys of [provider:NAME] and [webhook:NAME] sections (secrets apart): section
 * "provider" for the keys only a provider has, "" for both. */
#define NS(nm, field, sec)                                                                         \
    {                                                                                              \
        sec, nm, K_STR, offsetof(struct config_named, field),                                      \
            sizeof(((struct config_named *)0)->field), 0, 0                                        \
    }
#define NI(nm, field, sec, lo, hi)                                                                 \
    {                                                                                              \
        sec, nm, K_INT, offsetof(struct config_named, field), sizeof(int), lo, hi                  \
    }
static const struct key_def named_keys[] = {
    NS("type", type, ""),
    NS("url", url, ""),
    NS("username", username, ""),
    NS("from", from, ""),
    NI("rate_per_second", rate_per_second, "", 1, 100000),
    NI("max_connections", max_connections, "", 1, 100000),
    NS("esp", esp, "provider"),
    {"provider", "starttls", K_STARTTLS, offsetof(struct config_named, starttls_required),
     sizeof(int), 0, 1},
    {"provider", "tls_verify", K_BOOL, offsetof(struct config_named, tls_verify), sizeof(int), 0,
     1},
    NI("connect_timeout_s", connect_timeout_s, "provider", 1, 3600),
    NI("timeout_s", timeout_s, "provider", 1, 3600),
    NS("dir", dir, "provider"),
    NS("topic_arn", topic_arn, "webhook"),
    NS("cert_url_pattern", cert_url_pattern, "webhook"),
    {"webhook", "insecure", K_BOOL, offsetof(struct config_named, insecure), sizeof(int), 0, 1},
    NI("max_age_s", max_age_s, "webhook", 10, 86400),
};
#undef NS
#undef NI

static int set_named(struct load_ctx *lc, const char *section, const char *name, const char *value)
{
    int is_provider = strncmp(section, "provider:", 9) == 0;
    const char *nm = section + (is_provider ? 9 : 8);
    struct config_named *arr = is_provider ? lc->c->providers : lc->c->webhooks;
    int *count = is_provider ? &lc->c->nproviders : &lc->c->nwebhooks;
    struct config_named *t = NULL;
    int i;

    if (*nm == '\0' || strlen(nm) >= sizeof t->name) {
        snprintf(lc->msg, sizeof lc->msg, "section name must be 1 to 63 characters");
        return -1;
    }
    for (i = 0; i < *count; i++)
        if (strcmp(arr[i].name, nm) == 0)
            t = &arr[i];
    if (t == NULL) {
        if (*count == CONFIG_MAX_NAMED) {
            snprintf(lc->msg, sizeof lc->msg, "at most %d such sections", CONFIG_MAX_NAMED);
            return -1;
        }
        t = &arr[(*count)++];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", nm);
        t->rate_per_second = 50;
        t->max_connections = 4;
        snprintf(t->esp, sizeof t->esp, "plain");
        t->tls_verify = 1;
        t->connect_timeout_s = 10;
        t->timeout_s = 120;
        t->max_age_s = 300;
    }
    for (i = 0; i < (int)(sizeof named_keys / sizeof *named_keys); i++)
        if (strcmp(named_keys[i].name, name) == 0 &&
            (!named_keys[i].section[0] ||
             strcmp(named_keys[i].section, is_provider ? "provider" : "webhook") == 0))
            return set_scalar(lc, &named_keys[i], t, value);
    {
        /* Secrets: only references. password/secret/key given literally are refused. */
        static const char *secret_names[] = {"password", "secret", "public_key", "api_key",
                                             "signing_key"};
        size_t k;
        for (k = 0; k < sizeof secret_names / sizeof *secret_names; k++) {
            size_t sl = strlen(secret_names[k]);
            if (strncmp(name, secret_names[k], sl) != 0)
                continue;
            if (name[sl] == '\0') {
                snprintf(lc->msg, sizeof lc->msg,
                         "secrets are not written in the file: use %s_env = VAR or %s_file = PATH",
                         name, name);
                return -1;
            }
            if (strcmp(name + sl, "_env") == 0 || strcmp(name + sl, "_file") == 0) {
                const char *kind = name[sl + 1] == 'e' ? "env" : "file";
                if (t->secret) {
                    sodium_memzero(t->secret, strlen(t->secret));
                    free(t->secret);
                    t->secret = NULL;
                }
                if (config_secret_resolve(kind, value, &t->secret, lc->msg, sizeof lc->msg))
                    return -1;
                snprintf(t->secret_ref, sizeof t->secret_ref, "%s:%s", kind, value);
                return 0;
            }
        }
    }
    snprintf(lc->msg, sizeof lc->msg, "unknown key");
    return -1;
}

static int on_ini_line(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *lc = user;
    size_t i;

    if (name == NULL)
        return 1; /* section header alone */
    if (strncmp(section, "provider:", 9) == 0 || strncmp(section, "webhook:", 8) == 0) {
        if (set_named(lc, section, name, value) == 0)
            return 1;
        goto fail;
    }
    for (i = 0; i < sizeof keys / sizeof *keys; i++) {
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0) {
            if (set_scalar(lc, &keys[i], lc->c, value) == 0)
                return 1;
            goto fail;
        }
    }
    snprintf(lc->msg, sizeof lc->msg, "unknown key");
fail : {
    char tmp[400];
    snprintf(tmp, sizeof tmp, "[%s] %s: %s", section, name, lc->msg);
    memcpy(lc->msg, tmp, sizeof tmp);
}
    return 0;
}

int config_load_file(struct config *c, const char *path, int required, struct err *e)
{
    struct load_ctx lc = {.c = c, .path = path};
    FILE *f;
    int rc;

    f = fopen(path, "r");
    if (f == NULL) {
        if (!required && errno == ENOENT)
            return 0;
        return ERR(e, E_INVAL, "%s: cannot open: %s", path, strerror(errno));
    }
    rc = ini_parse_file(f, on_ini_line, &lc);
    fclose(f);
    if (rc > 0) {
        if (lc.msg[0] == '\0')
            snprintf(lc.msg, sizeof lc.msg, "syntax error (expected [section] or key = value)");
        return ERR(e, E_INVAL, "%s:%d: %s", path, rc, lc.msg);
    }
    if (rc < 0)
        return ERR(e, E_IO, "%s: cannot read", path);
    snprintf(c->path, sizeof c->path, "%s", path);
    return 0;
}

/* The keys the environment overrides. */
static const struct {
    const char *env, *section, *name;
} env_keys[] = {
    {"ENGAGE_LISTEN", "server", "listen"},
    {"ENGAGE_PUBLIC_URL", "server", "public_url"},
    {"ENGAGE_LOG_LEVEL", "log", "level"},
    {"ENGAGE_UNKNOWN_EVENTS", "ingest", "unknown_events"},
    {"ENGAGE_SYNC_SECRET_DIR", "sync", "secret_dir"},
    {"ENGAGE_SYNC_SQLITE_DIR", "sync", "sqlite_dir"},
    {"ENGAGE_SYNC_SECRET_ENV_PREFIX", "sync", "secret_env_prefix"},
    {"ENGAGE_SYNC_ALLOW_INSECURE_TLS", "sync", "allow_insecure_tls"},
};

int config_env_is_setting(const char *name)
{
    size_t i;

    if (strcmp(name, "ENGAGE_CONFIG") == 0 || strcmp(name, "ENGAGE_DATA") == 0)
        return 1;
    for (i = 0; i < sizeof env_keys / sizeof *env_keys; i++)
        if (strcmp(name, env_keys[i].env) == 0)
            return 1;
    return 0;
}

int config_apply_env(struct config *c, struct err *e)
{
    struct load_ctx lc = {.c = c};
    size_t i, k;

    for (i = 0; i < sizeof env_keys / sizeof *env_keys; i++) {
        const char *v = getenv(env_keys[i].env);
        if (v == NULL || *v == '\0')
            continue;
        for (k = 0; k < sizeof keys / sizeof *keys; k++) {
            if (strcmp(keys[k].section, env_keys[i].section) ||
                strcmp(keys[k].name, env_keys[i].name))
                continue;
            if (set_scalar(&lc, &keys[k], c, v))
                return ERR(e, E_INVAL, "environment %s: %s", env_keys[i].env, lc.msg);
        }
    }
    return 0;
}

int config_parse_listen(const char *s, char *host, size_t hostcap, int *port)
{
    const char *colon;
    size_t hl;
    int64_t p;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return E_INVAL;
        hl = (size_t)(close - s - 1);
        if (hl == 0 || hl >= hostcap)
            return E_INVAL;
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return E_INVAL;
        hl = (size_t)(colon - s);
        if (hl == 0 || hl >= hostcap)
            return E_INVAL;
        memcpy(host, s, hl);
        host[hl] = '\0';
    }
    if (parse_i64(colon + 1, strlen(colon + 1), &p) || p < 0 || p > 65535)
        return E_INVAL;
    *port = (int)p;
    return 0;
}

/* localhost, 127.a.b.c (a dotted quad) or [::1]. */
static int host_is_loopback(const char *h, size_t n)
{
    size_t i;
    int dots = 0, digits = 0;

    if ((n == 9 && strncmp(h, "localhost", 9) == 0) || (n == 5 && strncmp(h, "[::1]", 5) == 0))
        return 1;
    if (n < 7 || strncmp(h, "127.", 4) != 0)
        return 0;
    for (i = 0; i < n; i++) {
        if (h[i] == '.') {
            if (digits == 0)
                return 0;
            dots++;
            digits = 0;
        } else if (h[i] >= '0' && h[i] <= '9' && digits < 3) {
            digits++;
        } else {
            return 0;
        }
    }
    return dots == 3 && digits > 0;
}

int config_check(const struct config *c, struct err *e)
{
    char host[256];
    int port;
    const char *where = c->path[0] ? c->path : "configuration";

    if (config_parse_listen(c->listen, host, sizeof host, &port))
        return ERRF(e, E_INVAL, "listen", "%s: [server] listen: expected ADDR:PORT, got \"%s\"",
                    where, c->listen);
    if (c->sync_secret_dir[0] && c->sync_secret_dir[0] != '/')
        return ERRF(e, E_INVAL, "secret_dir",
                    "%s: [sync] secret_dir: must be an absolute path, got \"%s\"", where,
                    c->sync_secret_dir);
    if (c->sync_sqlite_dir[0] && c->sync_sqlite_dir[0] != '/')
        return ERRF(e, E_INVAL, "sqlite_dir",
                    "%s: [sync] sqlite_dir: must be an absolute path, got \"%s\"", where,
                    c->sync_sqlite_dir);
    if (c->sync_secret_env_prefix[0] &&
        (strspn(c->sync_secret_env_prefix, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                           "0123456789_") != strlen(c->sync_secret_env_prefix) ||
         isdigit((unsigned char)c->sync_secret_env_prefix[0])))
        return ERRF(e, E_INVAL, "secret_env_prefix",
                    "%s: [sync] secret_env_prefix: expected the start of a variable name "
                    "(letters, digits and _), got \"%s\"",
                    where, c->sync_secret_env_prefix);
    if (c->public_url[0]) {
        const char *u = c->public_url, *h, *end;
        int https = strncmp(u, "https://", 8) == 0;
        if (!https && strncmp(u, "http://", 7) != 0)
            return ERRF(e, E_INVAL, "public_url",
                        "%s: [server] public_url: must start with https:// (or http:// for a "
                        "loopback host), got \"%s\"",
                        where, u);
        h = u + (https ? 8 : 7);
        end = h + strcspn(h, "/?#");
        if (memchr(h, '@', (size_t)(end - h)))
            return ERRF(e, E_INVAL, "public_url",
                        "%s: [server] public_url: must not hold credentials (user@host)", where);
        {
            /* Strip the port, but not inside an IPv6 literal. */
            const char *hend = end;
            const char *colon = NULL, *p;
            for (p = h; p < end; p++)
                if (*p == ':')
                    colon = p;
            if (colon && !(h[0] == '[' && colon < (const char *)memchr(h, ']', (size_t)(end - h))))
                hend = colon;
            if (hend == h)
                return ERRF(e, E_INVAL, "public_url", "%s: [server] public_url: has no host",
                            where);
            if (!https && !host_is_loopback(h, (size_t)(hend - h)))
                return ERRF(e, E_INVAL, "public_url",
                            "%s: [server] public_url: https is required unless the host is "
                            "loopback, got \"%s\"",
                            where, u);
        }
    }
    return 0;
}

void config_release(struct config *c)
{
    int i;

    for (i = 0; i < c->nproviders; i++)
        if (c->providers[i].secret) {
            sodium_memzero(c->providers[i].secret, strlen(c->providers[i].secret));
            free(c->providers[i].secret);
        }
    for (i = 0; i < c->nwebhooks; i++)
        if (c->webhooks[i].secret) {
            sodium_memzero(c->webhooks[i].secret, strlen(c->webhooks[i].secret));
            free(c->webhooks[i].secret);
        }
    c->nproviders = c->nwebhooks = 0;
}

/* Writes "name = value" for key k of the struct at base (as set_scalar reads it). */
static void dump_value(struct buf *out, const struct key_def *k, const void *base)
{
    const char *field = (const char *)base + k->off;

    switch (k->type) {
    case K_STR:
        buf_printf(out, "%s = %s\n", k->name, field);
        break;
    case K_INT:
        buf_printf(out, "%s = %d\n", k->name, *(const int *)field);
        break;
    case K_LONG:
        buf_printf(out, "%s = %ld\n", k->name, *(const long *)field);
        break;
    case K_BOOL:
        buf_printf(out, "%s = %s\n", k->name, *(const int *)field ? "true" : "false");
        break;
    case K_LOGLEVEL: {
        static const char *ln[] = {"error", "warn", "info", "debug"};
        buf_printf(out, "%s = %s\n", k->name, ln[*(const int *)field & 3]);
        break;
    }
    case K_UNKNOWN_EVENTS:
        buf_printf(out, "%s = %s\n", k->name, *(const int *)field ? "reject" : "accept");
        break;
    case K_CONSENT:
        buf_printf(out, "%s = %s\n", k->name, consent_name(*(const int *)field));
        break;
    case K_STARTTLS:
        buf_printf(out, "%s = %s\n", k->name, *(const int *)field ? "required" : "auto");
        break;
    }
}

void config_dump(const struct config *c, struct buf *out)
{
    const char *cur = "";
    size_t i;
    int n;

    for (i = 0; i < sizeof keys / sizeof *keys; i++) {
        if (strcmp(cur, keys[i].section) != 0) {
            buf_printf(out, "%s[%s]\n", i ? "\n" : "", keys[i].section);
            cur = keys[i].section;
        }
        dump_value(out, &keys[i], c);
    }
    for (n = 0; n < c->nproviders + c->nwebhooks; n++) {
        const struct config_named *t =
            n < c->nproviders ? &c->providers[n] : &c->webhooks[n - c->nproviders];
        buf_printf(out, "\n[%s:%s]\ntype = %s\n", n < c->nproviders ? "provider" : "webhook",
                   t->name, t->type);
        for (i = 1; i < sizeof named_keys / sizeof *named_keys; i++) { /* [0] is type */
            const char *sec = named_keys[i].section;
            if (sec[0] && strcmp(sec, n < c->nproviders ? "provider" : "webhook") != 0)
                continue;
            if (n >= c->nproviders && !sec[0] && strcmp(named_keys[i].name, "url") &&
                strcmp(named_keys[i].name, "username"))
                continue; /* a webhook has no rate, connections or from */
            if (named_keys[i].type != K_STR || ((const char *)t + named_keys[i].off)[0])
                dump_value(out, &named_keys[i], t);
        }
        if (t->secret_ref[0])
            buf_printf(out, "; secret from %s\n", t->secret_ref);
    }
}
