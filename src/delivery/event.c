/* delivery/event.c -- the parsers' shared parts: the event list, strings cut to their
 * bounds, and finding our message id in what a provider echoes back. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "delivery.h"

void mev_list_init(struct mev_list *l, struct arena *a)
{
    memset(l, 0, sizeof *l);
    l->a = a;
}

struct mev *mev_list_add(struct mev_list *l)
{
    if (l->n >= MEV_MAX_PER_BODY)
        return NULL;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct mev *v = arena_alloc(l->a, cap * sizeof *v);
        if (l->n)
            memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    memset(&l->v[l->n], 0, sizeof l->v[l->n]);
    return &l->v[l->n++];
}

const char *mev_strdup(struct arena *a, const char *s, size_t n, size_t max)
{
    if (s == NULL)
        return NULL;
    if (n > max) {
        n = max;
        /* back to the start of a UTF-8 sequence: continuation bytes are 10xxxxxx */
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    return arena_strndup(a, s, n);
}

/* Digits at s: their count (0 if none, or more than 18: no id of ours is that long). */
static size_t digits(const char *s)
{
    size_t n = 0;

    while (isdigit((unsigned char)s[n]))
        n++;
    return n > 18 ? 0 : n;
}

int mev_message_id(const char *s, char out[48])
{
    size_t a, b;
    int bracket;

    if (s == NULL)
        return E_INVAL;
    bracket = s[0] == '<';
    s += bracket;
    a = digits(s);
    if (a == 0 || (s[a] != '.' && s[a] != '_'))
        return E_INVAL;
    b = digits(s + a + 1);
    if (b == 0)
        return E_INVAL;
    /* the whole string, or the start of our Message-ID's local part: RUN.CONTACT.XXXX@ */
    if (s[a + 1 + b] != '\0') {
        const char *rest = s + a + 1 + b;
        if (rest[0] != '.' || strchr(rest, '@') == NULL)
            return E_INVAL;
    } else if (bracket) {
        return E_INVAL;
    }
    memcpy(out, s, a);
    out[a] = '.';
    memcpy(out + a + 1, s + a + 1, b);
    out[a + 1 + b] = '\0';
    return 0;
}

int delivery_hold_apply(void)
{
    static int hold = -1;
    int h = __atomic_load_n(&hold, __ATOMIC_RELAXED);

    if (h < 0) { /* workers racing here store the same value */
        h = getenv("ENGAGE_TEST_HOLD_APPLY") != NULL;
        __atomic_store_n(&hold, h, __ATOMIC_RELAXED);
    }
    return h;
}
