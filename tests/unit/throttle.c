/* tests/unit/throttle.c -- the dispatcher's token bucket (src/campaign/throttle.c), on an
 * injected clock: the rate over a long stretch, the burst, the wait it announces, a rate
 * of 0, and a clock that stands still or steps back. */
#include "campaign/campaign.h"
#include "helpers.h"

#define NS 1000000000LL

/* Takes tokens as fast as the bucket allows for secs simulated seconds, stepping the
 * clock by exactly the wait announced: how many were taken. */
static int64_t drain(struct throttle *t, int64_t *now, double secs)
{
    int64_t end = *now + (int64_t)(secs * NS), n = 0;

    while (*now < end) {
        int64_t w = throttle_take(t, *now);
        if (w == 0)
            n++;
        else
            *now += w;
    }
    return n;
}

Test(throttle, holds_the_rate_over_a_long_stretch)
{
    static const double rates[] = {1, 7, 50, 1000, 6000};
    size_t i;

    for (i = 0; i < sizeof rates / sizeof *rates; i++) {
        struct throttle t;
        int64_t now = 5 * NS, n;
        throttle_init(&t, rates[i], 0, now);
        n = drain(&t, &now, 100);
        /* the burst it starts with, then rate a second: within one token of that */
        cr_assert(n >= (int64_t)(rates[i] * 100 + t.burst) - 1 &&
                      n <= (int64_t)(rates[i] * 100 + t.burst) + 1,
                  "rate %g: %lld tokens in 100 s", rates[i], (long long)n);
    }
}

Test(throttle, burst_is_a_tenth_of_the_rate_and_at_least_one)
{
    struct throttle t;

    throttle_init(&t, 100, 0, 0);
    cr_assert_float_eq(t.burst, 10, 1e-9);
    throttle_init(&t, 3, 0, 0);
    cr_assert_float_eq(t.burst, 1, 1e-9);
    throttle_init(&t, 100, 25, 0);
    cr_assert_float_eq(t.burst, 25, 1e-9);
}

Test(throttle, an_idle_bucket_fills_only_to_its_burst)
{
    struct throttle t;
    int64_t now = 0, n = 0;

    throttle_init(&t, 10, 0, now); /* burst 1 */
    cr_assert_eq(throttle_take(&t, now), 0);
    now += 3600 * NS; /* an hour idle */
    while (throttle_take(&t, now) == 0)
        n++;
    cr_assert_eq(n, 1, "an hour idle gave %lld tokens at once", (long long)n);
}

Test(throttle, the_announced_wait_is_enough_and_not_much_more)
{
    struct throttle t;
    int64_t now = 0, w;

    throttle_init(&t, 4, 0, now);
    cr_assert_eq(throttle_take(&t, now), 0);
    w = throttle_take(&t, now);
    cr_assert(w > 0);
    cr_assert(w <= NS / 4 + 1 && w >= NS / 4 - 1, "wait %lld ns for a rate of 4", (long long)w);
    cr_assert(throttle_take(&t, now + w - 2) > 0, "a token before the wait was over");
    cr_assert_eq(throttle_take(&t, now + w), 0);
}

Test(throttle, rate_zero_never_waits)
{
    struct throttle t;
    int i;

    throttle_init(&t, 0, 0, 0);
    for (i = 0; i < 100000; i++)
        cr_assert_eq(throttle_take(&t, 0), 0);
}

Test(throttle, a_clock_that_steps_back_gives_nothing_extra)
{
    struct throttle t;
    int64_t now = 10 * NS;

    throttle_init(&t, 1, 0, now);
    cr_assert_eq(throttle_take(&t, now), 0);
    cr_assert(throttle_take(&t, now - 5 * NS) > 0);
    cr_assert(throttle_take(&t, now) > 0);
    cr_assert_eq(throttle_take(&t, now + NS), 0);
}
