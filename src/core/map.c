/* core/map.c -- string map and error lists. */
#include "map.h"

#include <stdlib.h>
#include <string.h>

void strmap_init(struct strmap *m)
{
    m->slots = NULL;
    m->cap = m->count = 0;
    arena_init(&m->keys);
}

void strmap_clear(struct strmap *m)
{
    if (m->count)
        memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->count = 0;
    arena_reset(&m->keys);
}

void strmap_release(struct strmap *m)
{
    free(m->slots);
    arena_release(&m->keys);
    strmap_init(m);
}

static struct strmap_slot *find(const struct strmap *m, const char *key, size_t len, uint64_t h)
{
    size_t i = (size_t)h & (m->cap - 1);

    for (;;) {
        struct strmap_slot *s = &m->slots[i];
        if (s->key == NULL || (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0))
            return s;
        i = (i + 1) & (m->cap - 1);
    }
}

int strmap_get(const struct strmap *m, const char *key, size_t len, int64_t *value)
{
    return strmap_get_h(m, key, len, hash64(key, len), value);
}

int strmap_get_h(const struct strmap *m, const char *key, size_t len, uint64_t h, int64_t *value)
{
    struct strmap_slot *s;

    if (m->cap == 0)
        return 0;
    s = find(m, key, len, h);
    if (s->key == NULL)
        return 0;
    *value = s->value;
    return 1;
}

static void grow(struct strmap *m)
{
    struct strmap_slot *old = m->slots;
    size_t oldcap = m->cap, i;

    m->cap = oldcap ? oldcap * 2 : 64;
    m->slots = xcalloc(m->cap, sizeof *m->slots);
    for (i = 0; i < oldcap; i++) {
        if (old[i].key) {
            struct strmap_slot *s = find(m, old[i].key, old[i].len, old[i].hash);
            *s = old[i];
        }
    }
    free(old);
}

void strmap_put(struct strmap *m, const char *key, size_t len, int64_t value)
{
    strmap_put_h(m, key, len, hash64(key, len), value);
}

void strmap_put_h(struct strmap *m, const char *key, size_t len, uint64_t h, int64_t value)
{
    struct strmap_slot *s;

    if ((m->count + 1) * 4 > m->cap * 3)
        grow(m);
    s = find(m, key, len, h);
    if (s->key == NULL) {
        s->key = arena_strndup(&m->keys, key, len);
        s->len = len;
        s->hash = h;
        m->count++;
    }
    s->value = value;
}

void strmap_prefetch(const struct strmap *m, uint64_t h, int stage)
{
    const struct strmap_slot *s;

    if (m->cap == 0)
        return;
    s = &m->slots[(size_t)h & (m->cap - 1)];
    if (stage == 0)
        __builtin_prefetch(s);
    else if (s->key && s->hash == h)
        __builtin_prefetch(s->key);
}

void errlist_add(struct errlist *l, const char *path, const char *fmt, ...)
{
    va_list ap;

    if (l->n == ERRLIST_MAX) {
        l->dropped++;
        return;
    }
    snprintf(l->items[l->n].path, sizeof l->items[l->n].path, "%s", path);
    va_start(ap, fmt);
    vsnprintf(l->items[l->n].msg, sizeof l->items[l->n].msg, fmt, ap);
    va_end(ap);
    utf8_sanitize(l->items[l->n].path);
    utf8_sanitize(l->items[l->n].msg);
    l->n++;
}
