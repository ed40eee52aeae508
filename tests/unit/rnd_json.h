/* tests/unit/rnd_json.h -- random JSON values for the tests that compare a reader or
 * writer of ours with jansson: strings full of escapes, quotes, controls and non-ASCII
 * text, numbers of both kinds, nesting. Seeded by test_seed() (seed.h): the run's seed is
 * printed, and ENGAGE_TEST_SEED repeats it. */
#ifndef ENGAGE_TEST_RND_JSON_H
#define ENGAGE_TEST_RND_JSON_H

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "seed.h"

static unsigned rnd_state;
static unsigned rnd(unsigned n)
{
    static int seeded;

    if (!seeded) {
        rnd_state = (unsigned)(test_seed() ^ (test_seed() >> 32));
        seeded = 1;
    }
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 8) % n;
}

static json_t *rnd_value(int depth);

static char *rnd_text(void)
{
    static const char *bits[] = {"a", "Pune", "\"", "\\", "/", "\n", "\t", "\x01", "é",     "😀",
                                 "ş", "{",    "}",  ",",  ":", " ",  "[",  "]",    "\u2028"};
    char *s = calloc(1, 64);
    int i, n = (int)rnd(6);
    for (i = 0; i < n; i++)
        snprintf(s + strlen(s), 64 - strlen(s), "%s", bits[rnd(sizeof bits / sizeof *bits)]);
    return s;
}

static json_t *rnd_value(int depth)
{
    switch (rnd(depth > 2 ? 5 : 7)) {
    case 0: {
        char *t = rnd_text();
        json_t *v = json_string(t);
        free(t);
        return v;
    }
    case 1:
        return json_integer((json_int_t)rnd(2000000) - 1000000);
    case 2:
        return json_real(((double)rnd(1000000) - 500000) / 997.0);
    case 3:
        return rnd(2) ? json_true() : json_false();
    case 4:
        return json_null();
    case 5: {
        json_t *o = json_object();
        int i, n = (int)rnd(4);
        for (i = 0; i < n; i++) {
            char *k = rnd_text();
            json_object_set_new(o, k, rnd_value(depth + 1));
            free(k);
        }
        return o;
    }
    default: {
        json_t *a = json_array();
        int i, n = (int)rnd(4);
        for (i = 0; i < n; i++)
            json_array_append_new(a, rnd_value(depth + 1));
        return a;
    }
    }
}

#endif
