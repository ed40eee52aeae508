/* auth/auth.h -- API keys, roles, and the audit log.
 *
 * Keys are 256-bit random tokens ("ek_" + base64url), shown once at creation;
 * the store keeps only their BLAKE2b-256 hash (a fast hash is right for
 * high-entropy tokens). Every control-plane change calls audit_record() inside
 * the transaction that makes the change; values named like secrets are masked. */
#ifndef ENGAGE_AUTH_H
#define ENGAGE_AUTH_H

#include <jansson.h>

#include "../store/store.h"

enum role { ROLE_INGEST = 1, ROLE_ANALYST = 2, ROLE_MARKETER = 4, ROLE_ADMIN = 8 };
#define ROLES_ALL (ROLE_INGEST | ROLE_ANALYST | ROLE_MARKETER | ROLE_ADMIN)
#define ROLES_READ (ROLE_ANALYST | ROLE_MARKETER | ROLE_ADMIN)
#define ROLES_WRITE (ROLE_MARKETER | ROLE_ADMIN) /* segments, templates, campaigns */

const char *role_name(enum role r);
int role_parse(const char *s, enum role *out);

struct principal {
    enum role role;
    int64_t key_id;
    char actor[96]; /* "apikey:12:name" or "cli:root" */
};

/* Creates a key; *key_out (caller owns) is the only copy of the secret. Audited. */
int auth_apikey_create(struct store *st, const char *name, enum role role, const char *actor,
                       const char *req_id, char **key_out, int64_t *id, struct err *e);
int auth_apikey_revoke(struct store *st, int64_t id, const char *actor, const char *req_id,
                       struct err *e);
/* Revokes every live key named name, each as auth_apikey_revoke does (audited);
 * *revoked: how many. */
int auth_apikey_revoke_named(struct store *st, const char *name, const char *actor,
                             const char *req_id, int *revoked, struct err *e);
/* E_AUTH for an unknown or revoked key. A key verified in the last 5 s is taken from a
 * cache (a revocation is seen within 5 s in another process; at once in this one). */
int auth_apikey_verify(struct store *st, const char *key, struct principal *out, struct err *e);
/* The same from the cache of keys verified in the last 5 s only: 1 and *out set, or 0
 * (then verify with a store). Needs no store connection. */
int auth_apikey_cached(const char *key, struct principal *out);
/* Empties the cache: keys are checked against the store again. A check under way that
 * read its key before the clear does not cache it. */
void auth_cache_clear(void);
/* An API key as the API and the CLI show it: {id, name, role, prefix, created_at,
 * last_used_at?, revoked_at?} (never its secret or hash). Caller owns it. */
json_t *auth_apikey_json(const struct store_apikey *k);
/* Every key, oldest first, as auth_apikey_json shows it: *items (caller owns). */
int auth_apikeys_json(struct store *st, json_t **items, struct err *e);
/* The answer to a creation: {id, name, role, key}, the key shown this once. */
json_t *auth_apikey_created_json(int64_t id, const char *name, enum role role, const char *key);
/* Tests only: called inside auth_apikey_verify between the store lookup and caching. */
extern void (*auth_test_after_lookup)(void);

/* Writes an audit row; before/after may be NULL. Secrets inside are masked. */
int audit_record(struct store *st, const char *actor, const char *action, const char *entity,
                 const char *entity_id, const json_t *before, const json_t *after,
                 const char *req_id, struct err *e);
/* An audit row as the API and the CLI show it. */
json_t *audit_json(const struct store_audit *a);
/* A page of the audit log, newest first: the rows before before_id (0: the newest) that
 * match f (NULL: all), at most limit, as audit_json shows them; *items (caller owns),
 * *last_id the id of the last row (0: none). */
int audit_list_json(struct store *st, int64_t before_id, int limit,
                    const struct store_audit_filter *f, json_t **items, int64_t *last_id,
                    struct err *e);
/* Returns a copy of v with every member whose name looks like a secret replaced by "***". */
json_t *audit_mask(const json_t *v);

#endif
