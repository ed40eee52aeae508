/* ingest/ingest_int.h -- shared inside src/ingest only. */
#ifndef ENGAGE_INGEST_INT_H
#define ENGAGE_INGEST_INT_H

#include "ingest.h"

/* [ingest] max_value_bytes, one rule for every source (CSV, the APIs, SDKs, CRM sync):
 * NULL when a string value of n bytes is taken, else the reason "value_too_large" with
 * the sentence every source gives in msg. */
const char *ingest_value_check(size_t n, size_t max, char *msg, size_t msgcap);

/* 1 if s is 1 to max bytes without control characters (ids: external_id, event_id). */
int ingest_id_ok(const char *s, size_t max);
/* 1 if s is an event name: 1 to 128 bytes without control characters. */
int ingest_name_ok(const char *s);
/* The canonical key of an event without an event_id: a hash of the contact, name,
 * instant and the non-empty raw properties sorted by name. Both the JSON path and
 * the CSV fast path build it through these calls, so they agree byte for byte. */
struct event_key;
struct event_key *event_key_new(const char *who, const char *name, int64_t occurred_at);
/* Properties must be added in ascending byte order of key. is_text: v is raw text;
 * otherwise v is the compact JSON of a non-string value. */
void event_key_prop(struct event_key *k, const char *key, size_t kn, int is_text, const char *v,
                    size_t vn);
char *event_key_finish(struct event_key *k); /* "k:<32 hex>"; frees k; caller owns it */

#endif
