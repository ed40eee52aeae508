/* core/jtree.h -- a JSON document read into an arena: one pass over a request body,
 * no allocation per value, each value's own text kept beside it.
 *
 * The tracking API reads batches of hundreds of messages with it (a jansson tree costs
 * a malloc per value and was half of the server's time). It accepts exactly the
 * documents jansson's json_loadb(…, 0) accepts (an object or array at the top, valid
 * UTF-8, no \u0000, paired surrogates, integers within 64 bits, finite reals, depth at
 * most 2048), except that it refuses every NUL byte where jansson skips some. jt_dump() writes what
 * json_dumps(…, JSON_COMPACT | JSON_SORT_KEYS) writes for the same value, byte for byte
 * (tests/unit/core.c compares them on random documents). */
#ifndef ENGAGE_JTREE_H
#define ENGAGE_JTREE_H

#include <jansson.h>

#include "core.h"

enum jt_type { JT_NULL, JT_FALSE, JT_TRUE, JT_INT, JT_REAL, JT_STR, JT_ARR, JT_OBJ };

struct jt_member;
struct jt {
    enum jt_type type;
    uint32_t n;      /* a string's bytes, an array's items, an object's members */
    const char *src; /* the value's text in the document (not NUL-terminated) */
    size_t srclen;
    union {
        const char *s; /* decoded and NUL-terminated (no JSON string here holds a NUL) */
        long long i;
        double d;
        struct jt *items;
        struct jt_member *members; /* in document order, duplicates kept */
    } u;
};
struct jt_member {
    const char *key; /* decoded, NUL-terminated */
    uint32_t klen;
    struct jt v;
};

struct jt_error {
    char text[160];
    int line, column; /* 1-based, of the byte where reading stopped */
};

/* Reads text[0..len) into the arena (everything *out points to lives there). 0, or
 * E_INVAL with err filled. */
int jt_parse(struct arena *a, const char *text, size_t len, struct jt **out, struct jt_error *err);
/* Limits checked while reading, so that a body of a million empty objects is refused
 * after max_values of them, not read whole first: max_values counts every value
 * (containers and scalars); max_items the items of the array that is the top object's
 * member items_key (a batch's list: "batch", "items"). 0 / NULL: no limit. */
struct jt_limits {
    size_t max_values;
    size_t max_items;
    const char *items_key;
};
/* jt_parse within limits: E_TOOBIG (err says which limit, and where reading stopped)
 * past one. */
int jt_parse_limited(struct arena *a, const char *text, size_t len, const struct jt_limits *lim,
                     struct jt **out, struct jt_error *err);
/* An object's member (the last of duplicates, as jansson keeps); NULL for a missing key
 * or when obj is not an object. */
const struct jt *jt_get(const struct jt *obj, const char *key);
/* The member's string, or NULL when it is missing or not a string. */
const char *jt_str(const struct jt *obj, const char *key);

/* Compact JSON with sorted keys, duplicates resolved as jansson does. */
#define JT_DROP_NULLS 1 /* the top object's members whose value is null left out */
void jt_dump(struct buf *out, const struct jt *v, int flags);
/* The value as jansson (caller owns the result). */
json_t *jt_json(const struct jt *v);
/* The same, refusing an object with a key twice (as JSON_REJECT_DUPLICATES): NULL then,
 * with err saying which key and where (text: the document v was read from). */
json_t *jt_json_unique(const struct jt *v, const char *text, struct jt_error *err);

#endif
