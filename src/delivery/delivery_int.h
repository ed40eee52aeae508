/* delivery/delivery_int.h -- what the webhook parsers and verifiers share (webhook.c):
 * reading a body within limits, a member as an event's string or time, HMAC-SHA256
 * compared in constant time, the replay window. Inside src/delivery/ only. */
#ifndef ENGAGE_DELIVERY_INT_H
#define ENGAGE_DELIVERY_INT_H

#include "../core/jtree.h"
#include "delivery.h"

/* JSON values one event may hold on average before a body is refused (E_TOOBIG) while
 * it is read: the per-body event limit alone would let one event of a million values
 * through. Providers send 10 to 40 per event. */
#define HOOK_VALUES_PER_EVENT 64
/* The values of a body that holds one event (Mailgun, Postmark). */
#define HOOK_VALUES_ONE (64 * 1024)

/* Reads body into arena a within the limits (list: the top object's member that holds
 * the events, capped at MEV_MAX_PER_BODY items; NULL when the body is the list or one
 * event). E_INVAL (not JSON) or E_TOOBIG, with e saying where; what says whose body. */
int hook_json(struct arena *a, const char *what, const char *body, size_t len, const char *list,
              size_t max_values, const struct jt **out, struct err *e);
/* obj[key] as an event's string cut to max bytes (in a; the tree's own copy when it
 * fits); NULL when missing, not a string, or empty. */
const char *hook_str(struct arena *a, const struct jt *obj, const char *key, size_t max);
/* v (a string or an integer: its text) the same way. */
const char *hook_text(struct arena *a, const struct jt *v, size_t max);
/* Our message id ("RUN.CONTACT") found in s, copied into a; NULL when none. */
const char *hook_message_id(struct arena *a, const char *s);
/* v as Unix seconds (an integer or a real) in ms; 0 when it is neither or out of range. */
int64_t hook_seconds_ms(const struct jt *v);
/* s as ISO-8601 in ms; 0 when NULL or not ISO-8601. */
int64_t hook_iso_ms(const char *s);
/* How much of s an error message quotes ("%.*s"): at most 40 bytes, UTF-8 kept whole. */
int hook_quote_len(const char *s);

/* HMAC-SHA256(key, a || b || c) of a key of any length. */
void hook_hmac(const unsigned char *key, size_t keylen, const void *a, size_t alen, const void *b,
               size_t blen, const void *c, size_t clen, unsigned char mac[32]);
/* 1 when hex[0..n) is the lower or upper case hex of mac: constant time in mac. */
int hook_hex_eq(const unsigned char mac[32], const char *hex, size_t n);
/* 1 when ts_s (Unix seconds) is within max_age_s of now_ms, either way. */
int hook_in_window(int64_t ts_s, int64_t now_ms, int max_age_s);

#endif
