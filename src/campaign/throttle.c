/* campaign/throttle.c -- a token bucket: rate tokens a second, at most burst held.
 *
 * DESIGN: tokens are refilled lazily from the time passed since the last call, on a
 * clock the caller passes (monotonic ns), so tests drive it with a fake one. A caller
 * that finds no token is told how long until there is one, and waits itself. */
#include "campaign.h"

void throttle_init(struct throttle *t, double rate, double burst, int64_t now_ns)
{
    t->rate = rate > 0 ? rate : 0;
    if (burst <= 0)
        burst = t->rate / 10;
    t->burst = burst < 1 ? 1 : burst;
    t->tokens = t->burst;
    t->last_ns = now_ns;
}

int64_t throttle_take(struct throttle *t, int64_t now_ns)
{
    if (t->rate <= 0)
        return 0;
    if (now_ns > t->last_ns) {
        t->tokens += (double)(now_ns - t->last_ns) * t->rate / 1e9;
        if (t->tokens > t->burst)
            t->tokens = t->burst;
        t->last_ns = now_ns;
    }
    if (t->tokens >= 1) {
        t->tokens -= 1;
        return 0;
    }
    /* Rounded up, so a caller that waits exactly this long finds its token. */
    return (int64_t)((1 - t->tokens) * 1e9 / t->rate) + 1;
}
