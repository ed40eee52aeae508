/* ingest/ingest_int.h -- shared inside src/ingest only. */
#ifndef ENGAGE_INGEST_INT_H
#define ENGAGE_INGEST_INT_H

#include "ingest.h"

/* Types and checks props against c: NULL on success (*typed = new object: declared
 * properties typed, undeclared ones as given), else a reason code with field/msg. */
const char *contract_apply(const struct contract *c, const json_t *props, json_t **typed,
                           char *field, size_t fieldcap, char *msg, size_t msgcap);
/* The property that gives occurred_at, or NULL. */
const char *contract_occurred_at(const struct contract *c);

/* [ingest] max_value_bytes, one rule for every source (CSV, the APIs, SDKs, CRM sync):
 * NULL when a string value of n bytes is taken, else the reason "value_too_large" with
 * the sentence every source gives in msg. */
const char *ingest_value_check(size_t n, size_t max, char *msg, size_t msgcap);

/* 1 if s is 1 to max bytes without control characters (ids: external_id, event_id). */
int ingest_id_ok(const char *s, size_t max);
/* 1 if s is an event name: 1 to 128 bytes without control characters. */
int ingest_name_ok(const char *s);
/* A loose email check: one '@' with text on both sides, no spaces or brackets. */
int ingest_email_ok(const char *s);

/* The text path (CSV fast path): properties by index. */
/* Types the text s as property i, checks it, appends its JSON to out; *ms receives a
 * timestamp's instant. NULL, or a reason code with a sentence in msg. */
const char *contract_type_text(const struct contract *c, int i, const char *s, size_t n,
                               struct buf *out, int64_t *ms, char *msg, size_t msgcap);
/* A timestamp in text (occurred_at), read as a typed value is: the spaces and tabs
 * around it ignored. 0, or E_INVAL. */
int value_parse_time(const char *s, size_t n, int64_t *ms);
/* An undeclared text value, typed by inference, as JSON. */
void value_infer_text_json(const char *s, size_t n, struct buf *out);

/* ---- a property's "pattern" (pattern.c) ----
 * PCRE2 in UTF-8 mode, searched for anywhere in the value unless anchored, with the work
 * per value bounded (docs/contracts.md, "Patterns"). Compiled once, then matched by any
 * number of threads at once without a lock: each thread has its own match data. */
#define PATTERN_MAX_BYTES 8192          /* of a pattern's text */
#define PATTERN_MATCH_LIMIT 100000      /* steps per value (every start position together) */
#define PATTERN_DEPTH_LIMIT 25000       /* nested backtracking points (interpreter) */
#define PATTERN_HEAP_LIMIT_KIB 8192     /* backtracking memory per thread (interpreter) */
#define PATTERN_JIT_STACK_KIB 1024      /* match stack per thread (JIT code) */
struct pattern;
/* 0 and *out (caller frees with pattern_free), or E_INVAL with a sentence in msg (PCRE2's
 * error and its offset for a bad expression). */
int pattern_compile(const char *text, size_t len, struct pattern **out, char *msg, size_t msgcap);
void pattern_free(struct pattern *p); /* NULL-safe */
const char *pattern_text(const struct pattern *p);
enum { PATTERN_MATCH, PATTERN_NO_MATCH, PATTERN_GAVE_UP, PATTERN_BAD_VALUE };
/* Whether s[0..n) (UTF-8) contains a match. PATTERN_GAVE_UP (a limit reached: the answer is
 * unknown) and PATTERN_BAD_VALUE (not UTF-8) come with a sentence in msg. Any thread. */
int pattern_match(const struct pattern *p, const char *s, size_t n, char *msg, size_t msgcap);

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
