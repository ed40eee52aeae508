/* tests/unit/store_loc.h -- where the store conformance tests (store.c, events.c) open
 * their store.
 *
 * ENGAGE_TEST_STORE names the backend under test as a location template: each "{}" in
 * it is replaced by a name unique to the test (a PostgreSQL database, say:
 * "postgresql://localhost/engage_{}"); without one the location is used as it is and
 * the runner must give every test a fresh store. Unset, each test gets a fresh
 * "sqlite:" temporary directory. */
#ifndef ENGAGE_TEST_STORE_LOC_H
#define ENGAGE_TEST_STORE_LOC_H

#include "helpers.h"

/* A location for a fresh, empty store; caller frees. */
static inline char *test_store_location(void)
{
    static int made;
    const char *tpl = getenv("ENGAGE_TEST_STORE");
    char name[64], *loc, *dir;
    const char *p;
    size_t n = 0;

    if (tpl == NULL || tpl[0] == '\0') {
        dir = test_tmpdir();
        n = strlen(dir) + 8;
        loc = malloc(n);
        cr_assert_not_null(loc);
        snprintf(loc, n, "sqlite:%s", dir);
        free(dir);
        return loc;
    }
    snprintf(name, sizeof name, "t%ld_%d", (long)getpid(), made++);
    loc = malloc(strlen(tpl) * (strlen(name) + 1) + 1);
    cr_assert_not_null(loc);
    for (p = tpl; *p; p++) {
        if (p[0] == '{' && p[1] == '}') {
            memcpy(loc + n, name, strlen(name));
            n += strlen(name);
            p++;
        } else {
            loc[n++] = *p;
        }
    }
    loc[n] = '\0';
    return loc;
}

#endif
