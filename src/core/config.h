/* core/config.h -- the one configuration file (INI), with flag > env > file > default.
 *
 * config_defaults() fills every key; config_load_file() overlays a file (a
 * missing file is fine only when it was not named explicitly); config_apply_env()
 * overlays ENGAGE_* variables; the CLI then overlays its flags; config_check()
 * validates the result. Errors name the file, line, section and key.
 * Secrets are never read from the file itself: only *_env / *_file references,
 * resolved at load time into memory that is wiped on config_release(). */
#ifndef ENGAGE_CONFIG_H
#define ENGAGE_CONFIG_H

#include "../consent/consent.h" /* [ingest] default_consent */
#include "core.h"

#define CONFIG_MAX_NAMED 16
#define CONFIG_MAX_VALUE_BYTES (1L << 20)   /* [ingest] max_value_bytes, by default */
#define CONFIG_PATTERN_MAX_VALUE_BYTES 4096 /* default of [ingest] pattern_max_value_bytes */

/* A [provider:NAME] or [webhook:NAME] section: known keys only, secret resolved. */
struct config_named {
    char name[64];
    char type[32];
    char url[512];
    char username[128];
    char from[256];
    int rate_per_second;
    int max_connections;
    /* [provider:NAME] only (a [webhook:NAME] refuses them) */
    char esp[16];          /* plain|sendgrid|mailgun|postmark|ses (provider.c checks it) */
    int starttls_required; /* starttls = required: 1; auto (default): 0 */
    int tls_verify;        /* certificate and host name checked (default 1) */
    char dir[1024];        /* outbox: where the .eml files go ("": DATA/outbox) */
    int connect_timeout_s; /* TCP and TLS connect, default 10 */
    int timeout_s;         /* one whole message, default 120 */
    /* [webhook:NAME] only (a [provider:NAME] refuses them) */
    char topic_arn[256];        /* ses: the SNS topic notifications must come from */
    char cert_url_pattern[512]; /* ses: where SNS signing certificates may be fetched */
    int insecure;               /* 1: no verification secret (a warning at every start) */
    int max_age_s;              /* mailgun, generic: how old a timestamp may be (300) */
    char *secret;               /* resolved from secret_env/password_env/.._file; owned, wiped */
    char secret_ref[300];       /* "env:VAR" or "file:PATH", for display (never the value) */
};

struct config {
    char path[1024]; /* file that was loaded, "" if none */
    char data_dir[1024];
    /* [server] */
    char listen[256];
    char public_url[512];
    int http_threads;
    long max_body_bytes;
    int max_json_values;    /* values read from one JSON body before 413 */
    int max_connections;    /* open connections in all */
    int per_ip_connections; /* open connections from one address; 0: no limit */
    int header_timeout_s;   /* a request's headers complete within this (slow clients) */
    int body_timeout_s;     /* its body within this after the headers */
    int idle_timeout_s;     /* a connection silent this long is closed */
    int keyless_per_ip;     /* tracking requests in flight from one address without a key */
    int keyless_max;        /* the same, from all addresses */
    /* [log] */
    int log_level;
    /* [store] */
    int busy_timeout_ms;
    /* [ingest] */
    int unknown_events_reject; /* 0 = accept (default), 1 = reject */
    enum consent_state default_consent;
    int import_batch_rows;
    int ingest_queue_max;        /* messages waiting for the server's writer before 429 */
    long max_value_bytes;        /* longest string value taken from any source */
    long max_row_bytes;          /* longest CSV row (the bytes of its cells) */
    int pattern_max_value_bytes; /* longest value a contract's pattern is matched against */
    /* [sync] */
    int sync_interval_s;       /* seconds between passes of the serve's sync worker */
    int sync_reconcile_hour;   /* UTC hour of the nightly reconciliation; -1: none */
    int sync_reconcile_repair; /* whether the nightly reconciliation repairs */
    /* What a source added over the API may name (docs/sync.md, Sources over the API):
     * "" allows no file: / env: reference at all. */
    char sync_secret_dir[1024];       /* file: references: regular files inside it */
    char sync_sqlite_dir[1024];       /* SQLite sources added over the API: files inside it */
    char sync_secret_env_prefix[128]; /* env: references: variables starting with it */
    int sync_allow_insecure_tls;      /* sslmode below require, passwords without TLS */
    /* [segment] guardrails */
    int seg_max_depth, seg_max_rules, seg_max_in_values, seg_max_window_days, seg_eval_timeout_ms;
    /* [retry] send retry policy */
    int retry_max_attempts, retry_base_delay_s, retry_max_delay_s;
    /* [secrets]: key for secrets that must live in the store (secretbox) */
    char secrets_key_file[1024];
    char secrets_key_env[128];
    /* [provider:NAME], [webhook:NAME] */
    struct config_named providers[CONFIG_MAX_NAMED];
    int nproviders;
    struct config_named webhooks[CONFIG_MAX_NAMED];
    int nwebhooks;
};

void config_defaults(struct config *c, const char *data_dir);
/* Loads path over c. If required is 0, a missing file is not an error. */
int config_load_file(struct config *c, const char *path, int required, struct err *e);
/* Overlays ENGAGE_LISTEN, ENGAGE_PUBLIC_URL, ENGAGE_LOG_LEVEL, ENGAGE_UNKNOWN_EVENTS and
 * ENGAGE_SYNC_{SECRET_DIR,SECRET_ENV_PREFIX,ALLOW_INSECURE_TLS}. */
int config_apply_env(struct config *c, struct err *e);
/* Whether an environment variable is one of engage's own settings (ENGAGE_CONFIG,
 * ENGAGE_DATA, or one that config_apply_env reads). */
int config_env_is_setting(const char *name);
/* Checks cross-key rules (public_url https unless loopback, listen form, [sync] secret_dir
 * absolute, secret_env_prefix a variable name's start). */
int config_check(const struct config *c, struct err *e);
void config_release(struct config *c);
/* Splits "host:port" (also "[::1]:port"); host written to host (cap hostcap). */
int config_parse_listen(const char *s, char *host, size_t hostcap, int *port);
/* Writes the effective configuration as INI text (secrets shown as references). */
void config_dump(const struct config *c, struct buf *out);

/* Reads a secret by reference: kind "env" (the variable) or "file" (its first line,
 * trimmed). 0 and *out (caller frees), or -1 with msg saying why. */
int config_secret_resolve(const char *kind, const char *ref, char **out, char *msg, size_t msgcap);

#endif
