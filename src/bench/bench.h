/* bench/bench.h -- benchmark harnesses run by `engage bench`.
 *
 * They print their figures to out as they go; errors are recorded in e once. */
#ifndef ENGAGE_BENCH_H
#define ENGAGE_BENCH_H

#include <stdio.h>

#include "../core/config.h"
#include "../store/store.h"

/* Loads the audience index of st once, then evaluates every .json file of dir runs times
 * (1 to 10000) at one instant (the clock's now); prints the index's load time, size and
 * the process's RSS growth, then each segment's member count and median, p95 and
 * fastest evaluation time. */
int bench_segments(struct store *st, const struct config *cfg, const char *dir, int runs, FILE *out,
                   struct err *e);

#endif
