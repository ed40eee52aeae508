/* tests/unit/sync.c -- CRM sync: when the nightly reconciliation of `engage serve` is due. */
#include <stdlib.h>

#include "core/core.h"
#include "helpers.h"
#include "sync/sync.h"

static int64_t at(const char *s)
{
    int64_t ms = 0;
    cr_assert_eq(time_parse_iso(s, strlen(s), &ms), 0, "should parse: %s", s);
    return ms;
}

/* Due at now for the hour, the last run having started at last ("" for none). */
static int due(const char *now, int hour, const char *last)
{
    return sync_reconcile_due(at(now), hour, *last ? at(last) : 0);
}

UTEST(reconcile_due, waits_for_the_hour)
{
    cr_assert_not(due("2026-10-10T02:00:00Z", 3, ""), "started at 02:00: not before 03:00");
    cr_assert_not(due("2026-10-10T02:59:59.999Z", 3, "2026-10-09T03:00:00Z"));
    cr_assert(due("2026-10-10T03:00:00Z", 3, ""), "at the hour itself");
    cr_assert(due("2026-10-10T03:00:00Z", 3, "2026-10-09T03:00:00Z"));
}

UTEST(reconcile_due, once_a_day)
{
    cr_assert(due("2026-10-10T10:00:00Z", 3, "2026-10-09T03:00:00Z"), "yesterday's: at once");
    cr_assert(due("2026-10-10T10:00:00Z", 3, ""), "never run: at once");
    cr_assert_not(due("2026-10-10T10:00:00Z", 3, "2026-10-10T03:05:00Z"), "today's: done");
    cr_assert_not(due("2026-10-10T03:00:01Z", 3, "2026-10-10T03:00:00Z"), "at the mark counts");
    cr_assert_not(due("2026-10-10T23:59:59.999Z", 3, "2026-10-10T03:05:00Z"));
    cr_assert(due("2026-10-10T10:00:00Z", 3, "2026-10-10T02:59:59.999Z"),
              "a run before today's hour is not today's");
    cr_assert_not(due("2026-10-11T02:00:00Z", 3, "2026-10-10T03:05:00Z"), "tomorrow, not yet");
    cr_assert(due("2026-10-11T03:00:00Z", 3, "2026-10-10T03:05:00Z"), "tomorrow at the hour");
    cr_assert(due("2026-10-12T09:00:00Z", 3, "2026-10-09T03:05:00Z"), "days missed: one run");
}

UTEST(reconcile_due, day_edges)
{
    cr_assert(due("2026-10-10T00:00:00Z", 0, "2026-10-09T00:00:00Z"), "hour 0 at midnight");
    cr_assert_not(due("2026-10-09T23:59:59.999Z", 0, "2026-10-09T00:00:00Z"));
    cr_assert(due("2026-10-10T23:00:00Z", 23, "2026-10-09T23:59:59.999Z"));
    cr_assert_not(due("2026-10-11T00:30:00Z", 23, "2026-10-10T23:59:59.999Z"),
                  "past midnight, today's 23:00 has not come");
    cr_assert(due("2024-03-01T05:00:00Z", 5, "2024-02-29T05:00:00Z"), "a leap day");
    cr_assert(due("2027-01-01T03:00:00Z", 3, "2026-12-31T03:00:00Z"), "a new year");
}

UTEST(reconcile_due, off_and_out_of_range)
{
    cr_assert_not(due("2026-10-10T10:00:00Z", -1, ""), "-1: never");
    cr_assert_not(due("2026-10-10T10:00:00Z", -1, "2020-01-01T00:00:00Z"));
    cr_assert_not(due("2026-10-10T23:59:59Z", 24, ""), "no 24th hour");
    cr_assert_not(due("2026-10-10T10:00:00Z", 3, "2026-10-12T03:00:00Z"),
                  "a run from the future (the clock went back): not again today");
}
