/* tests/unit/seed.h -- one seed per run for the unit tests that draw random numbers.
 *
 * DESIGN: test_seed() is ENGAGE_TEST_SEED (decimal, or hex with 0x) when it is set, else
 * a number drawn from the clock. Criterion's runner picks it before the test processes
 * start, puts it in ENGAGE_TEST_SEED (each test process inherits it, so every test of
 * the run uses the same one) and prints "t-NAME: seed=N" first in the log; tests/run.sh
 * shows that line again under a failure. ENGAGE_TEST_SEED=N build-asan/t-NAME repeats
 * the run exactly (docs/testing.md). Include it once per test file, before any use. */
#ifndef ENGAGE_TEST_SEED_H
#define ENGAGE_TEST_SEED_H

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static uint64_t test_seed(void)
{
    static uint64_t seed;
    static int done;
    const char *s;

    if (!done) {
        s = getenv("ENGAGE_TEST_SEED");
        if (s == NULL || *s == '\0')
            s = getenv("SEGMENT_SEED"); /* segment_random's older name */
        if (s && *s) {
            seed = strtoull(s, NULL, 0);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            seed = ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^
                   ((uint64_t)getpid() << 32);
        }
        done = 1;
    }
    return seed;
}

/* A splitmix64 stream: small, fast, and the same numbers for the same seed everywhere. */
struct rng {
    uint64_t s;
};

static inline uint64_t rng_u64(struct rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* 0 .. n-1 (0 when n <= 1). */
static inline int rng_int(struct rng *r, int n)
{
    return n <= 1 ? 0 : (int)(rng_u64(r) % (uint64_t)n);
}

/* One seed for the whole run: the runner picks it before the test processes start. */
ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    char b[24];

    (void)set;
    snprintf(b, sizeof b, "%llu", (unsigned long long)test_seed());
    setenv("ENGAGE_TEST_SEED", b, 1);
    fprintf(stderr, "%s: seed=%s (ENGAGE_TEST_SEED=%s repeats this run)\n",
            program_invocation_short_name, b, b);
}

#endif
