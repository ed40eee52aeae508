/* core/map.c -- string map and error lists. */
#include "map.h"

#include <stdlib.h>
#include <string.h>

void strmap_init(struct strmap *m)
{
    m->slots = NULL;
    m->cap = m->count = 0;
}

void strmap_clear(struct strmap *m)
{
    size_t i;

    for (i = 0; i < m->cap; i++) {
        free(m->slots[i].key);
        m->slots[i].key = NULL;
    }
    m->count = 0;
}

void strmap_release(struct strmap *m)
{
    strmap_clear(m);
    free(m->slots);
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
    struct strmap_slot *s;

    if (m->cap == 0)
        return 0;
    s = find(m, key, len, hash64(key, len));
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
    struct strmap_slot *s;
    uint64_t h = hash64(key, len);

    if ((m->count + 1) * 4 > m->cap * 3)
        grow(m);
    s = find(m, key, len, h);
    if (s->key == NULL) {
        s->key = xstrndup(key, len);
        s->len = len;
        s->hash = h;
        m->count++;
    }
    s->value = value;
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
