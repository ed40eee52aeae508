/* core/map.h -- string -> int64 hash map (open addressing, linear probing).
 * Keys are copied into the map's arena. Not thread-safe. */
#ifndef ENGAGE_MAP_H
#define ENGAGE_MAP_H

#include "core.h"

struct strmap_slot {
    char *key;
    size_t len;
    uint64_t hash;
    int64_t value;
};

struct strmap {
    struct strmap_slot *slots;
    size_t cap, count;
    struct arena keys;
};

void strmap_init(struct strmap *m);
void strmap_release(struct strmap *m);
void strmap_clear(struct strmap *m); /* drops all entries, keeps capacity */
/* 1 and *value set if found, else 0. */
int strmap_get(const struct strmap *m, const char *key, size_t len, int64_t *value);
void strmap_put(struct strmap *m, const char *key, size_t len, int64_t value);
/* The same with the key's hash64() computed beforehand (on another thread, say). */
int strmap_get_h(const struct strmap *m, const char *key, size_t len, uint64_t h, int64_t *value);
void strmap_put_h(struct strmap *m, const char *key, size_t len, uint64_t h, int64_t value);
/* Hints for a lookup a few rows ahead: stage 0 fetches the key's home slot, stage 1
 * (later) the key text of the entry found there. Never required, never faults. */
void strmap_prefetch(const struct strmap *m, uint64_t h, int stage);

/* A list of validation problems: each a JSON pointer (or field) and a sentence. */
#define ERRLIST_MAX 64
struct errlist {
    int n, dropped;
    struct {
        char path[160];
        char msg[240];
    } items[ERRLIST_MAX];
};
void errlist_add(struct errlist *l, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
