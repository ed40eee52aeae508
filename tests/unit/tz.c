/* tests/unit/tz.c -- local time buckets (src/analytics/tz.c).
 *
 * Days in Asia/Kolkata (+05:30); America/New_York's days and hours across both DST
 * changes of 2026 (a 23-hour and a 25-hour day, a skipped and a repeated hour);
 * America/Sao_Paulo in 2018, when DST skipped midnight; Asia/Kathmandu (+05:45) and
 * Australia/Lord_Howe (30-minute DST) hours; UTC; unknown and malformed names refused;
 * labels. Then every bucket of a year walked with tz_next, each checked against
 * tz_floor, in several zones: buckets tile time with no gap and no overlap. */
#include "analytics/tz.h"
#include "helpers.h"

static int64_t at(const char *iso)
{
    int64_t ms = 0;
    cr_assert_eq(time_parse_iso(iso, strlen(iso), &ms), 0, "%s", iso);
    return ms;
}

static struct tz *open_zone(const char *name)
{
    struct err e = {0};
    struct tz *z = NULL;

    cr_assert_eq(tz_open(name, &z, &e), 0, "%s: %s", name, e.msg);
    cr_assert_not_null(z);
    return z;
}

/* floor(t) is `start`, labelled `label`, and the next bucket starts at `next`. */
static void check_bucket(struct tz *z, enum tz_unit u, const char *t, const char *start,
                         const char *label, const char *next)
{
    char got[40];
    int64_t s = tz_floor(z, at(t), u);

    cr_assert_eq(s, at(start), "floor(%s) = %lld, want %s", t, (long long)s, start);
    tz_label(z, s, got);
    cr_assert_str_eq(got, label, "label of floor(%s)", t);
    cr_assert_eq(tz_next(z, s, u), at(next), "next after %s", start);
    cr_assert_eq(tz_floor(z, s, u), s, "a bucket's start is its own floor (%s)", start);
}

UTEST(tz, kolkata_days)
{
    struct tz *z = open_zone("Asia/Kolkata");

    /* 20:00Z is 01:30 the next day in India */
    check_bucket(z, TZ_DAY, "2026-03-08T20:00:00Z", "2026-03-08T18:30:00Z",
                 "2026-03-09T00:00:00+05:30", "2026-03-09T18:30:00Z");
    check_bucket(z, TZ_DAY, "2026-03-08T18:29:59.999Z", "2026-03-07T18:30:00Z",
                 "2026-03-08T00:00:00+05:30", "2026-03-08T18:30:00Z");
    check_bucket(z, TZ_HOUR, "2026-03-08T20:00:00Z", "2026-03-08T19:30:00Z",
                 "2026-03-09T01:00:00+05:30", "2026-03-08T20:30:00Z");
    check_bucket(z, TZ_MINUTE, "2026-03-08T20:00:59.999Z", "2026-03-08T20:00:00Z",
                 "2026-03-09T01:30:00+05:30", "2026-03-08T20:01:00Z");
    tz_free(z);
}

UTEST(tz, new_york_dst_days)
{
    struct tz *z = open_zone("America/New_York");

    /* 2026-03-08: clocks go from 02:00 EST to 03:00 EDT: a 23-hour day */
    check_bucket(z, TZ_DAY, "2026-03-08T12:00:00Z", "2026-03-08T05:00:00Z",
                 "2026-03-08T00:00:00-05:00", "2026-03-09T04:00:00Z");
    cr_assert_eq(tz_next(z, at("2026-03-08T05:00:00Z"), TZ_DAY) - at("2026-03-08T05:00:00Z"),
                 23 * HOUR_MS);
    check_bucket(z, TZ_DAY, "2026-03-09T03:59:59Z", "2026-03-08T05:00:00Z",
                 "2026-03-08T00:00:00-05:00", "2026-03-09T04:00:00Z");
    check_bucket(z, TZ_DAY, "2026-03-09T04:00:00Z", "2026-03-09T04:00:00Z",
                 "2026-03-09T00:00:00-04:00", "2026-03-10T04:00:00Z");
    /* 2026-11-01: from 02:00 EDT back to 01:00 EST: a 25-hour day */
    check_bucket(z, TZ_DAY, "2026-11-01T06:30:00Z", "2026-11-01T04:00:00Z",
                 "2026-11-01T00:00:00-04:00", "2026-11-02T05:00:00Z");
    cr_assert_eq(tz_next(z, at("2026-11-01T04:00:00Z"), TZ_DAY) - at("2026-11-01T04:00:00Z"),
                 25 * HOUR_MS);
    check_bucket(z, TZ_DAY, "2026-11-02T04:59:59.999Z", "2026-11-01T04:00:00Z",
                 "2026-11-01T00:00:00-04:00", "2026-11-02T05:00:00Z");
    tz_free(z);
}

UTEST(tz, new_york_dst_hours)
{
    struct tz *z = open_zone("America/New_York");

    /* spring: 01:00 EST is followed by 03:00 EDT */
    check_bucket(z, TZ_HOUR, "2026-03-08T06:59:00Z", "2026-03-08T06:00:00Z",
                 "2026-03-08T01:00:00-05:00", "2026-03-08T07:00:00Z");
    check_bucket(z, TZ_HOUR, "2026-03-08T07:00:00Z", "2026-03-08T07:00:00Z",
                 "2026-03-08T03:00:00-04:00", "2026-03-08T08:00:00Z");
    /* autumn: 01:00-02:00 happens twice, once in EDT and once in EST: two buckets */
    check_bucket(z, TZ_HOUR, "2026-11-01T05:30:00Z", "2026-11-01T05:00:00Z",
                 "2026-11-01T01:00:00-04:00", "2026-11-01T06:00:00Z");
    check_bucket(z, TZ_HOUR, "2026-11-01T06:30:00Z", "2026-11-01T06:00:00Z",
                 "2026-11-01T01:00:00-05:00", "2026-11-01T07:00:00Z");
    check_bucket(z, TZ_MINUTE, "2026-11-01T06:30:30Z", "2026-11-01T06:30:00Z",
                 "2026-11-01T01:30:00-05:00", "2026-11-01T06:31:00Z");
    tz_free(z);
}

UTEST(tz, sao_paulo_dst_skipped_midnight)
{
    struct tz *z = open_zone("America/Sao_Paulo");

    /* 2018-11-04: 00:00 -03 became 01:00 -02, so the day starts at 01:00 and is 23 h */
    check_bucket(z, TZ_DAY, "2018-11-04T12:00:00Z", "2018-11-04T03:00:00Z",
                 "2018-11-04T01:00:00-02:00", "2018-11-05T02:00:00Z");
    check_bucket(z, TZ_DAY, "2018-11-04T02:59:59Z", "2018-11-03T03:00:00Z",
                 "2018-11-03T00:00:00-03:00", "2018-11-04T03:00:00Z");
    /* 2019-02-17: 00:00 -02 went back to 23:00 -03 on the 16th: the 16th has 25 h */
    check_bucket(z, TZ_DAY, "2019-02-17T02:30:00Z", "2019-02-16T02:00:00Z",
                 "2019-02-16T00:00:00-02:00", "2019-02-17T03:00:00Z");
    tz_free(z);
}

UTEST(tz, half_and_quarter_hour_zones)
{
    struct tz *k = open_zone("Asia/Kathmandu"), *l = open_zone("Australia/Lord_Howe");

    check_bucket(k, TZ_HOUR, "2026-01-01T00:00:00Z", "2025-12-31T23:15:00Z",
                 "2026-01-01T05:00:00+05:45", "2026-01-01T00:15:00Z");
    check_bucket(k, TZ_DAY, "2026-01-01T00:00:00Z", "2025-12-31T18:15:00Z",
                 "2026-01-01T00:00:00+05:45", "2026-01-01T18:15:00Z");
    /* Lord Howe, DST starts 2026-10-04: 02:00 +10:30 becomes 02:30 +11:00 (15:30Z) */
    check_bucket(l, TZ_HOUR, "2026-10-03T15:20:00Z", "2026-10-03T14:30:00Z",
                 "2026-10-04T01:00:00+10:30", "2026-10-03T15:30:00Z");
    check_bucket(l, TZ_HOUR, "2026-10-03T15:45:00Z", "2026-10-03T15:30:00Z",
                 "2026-10-04T02:30:00+11:00", "2026-10-03T16:00:00Z");
    check_bucket(l, TZ_HOUR, "2026-10-03T16:00:00Z", "2026-10-03T16:00:00Z",
                 "2026-10-04T03:00:00+11:00", "2026-10-03T17:00:00Z");
    check_bucket(l, TZ_DAY, "2026-10-04T05:00:00Z", "2026-10-03T13:30:00Z",
                 "2026-10-04T00:00:00+10:30", "2026-10-04T13:00:00Z");
    /* DST ends 2026-04-05: 02:00 +11:00 goes back to 01:30 +10:30 (15:00Z) */
    check_bucket(l, TZ_HOUR, "2026-04-04T14:59:00Z", "2026-04-04T14:00:00Z",
                 "2026-04-05T01:00:00+11:00", "2026-04-04T15:00:00Z");
    check_bucket(l, TZ_HOUR, "2026-04-04T15:10:00Z", "2026-04-04T15:00:00Z",
                 "2026-04-05T01:30:00+10:30", "2026-04-04T15:30:00Z");
    check_bucket(l, TZ_HOUR, "2026-04-04T15:30:00Z", "2026-04-04T15:30:00Z",
                 "2026-04-05T02:00:00+10:30", "2026-04-04T16:30:00Z");
    check_bucket(l, TZ_DAY, "2026-04-05T05:00:00Z", "2026-04-04T13:00:00Z",
                 "2026-04-05T00:00:00+11:00", "2026-04-05T13:30:00Z");
    tz_free(k);
    tz_free(l);
}

UTEST(tz, utc)
{
    const char *names[] = {NULL, "", "UTC", "Etc/UTC"};

    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        struct tz *z = open_zone(names[i]);
        check_bucket(z, TZ_DAY, "2026-03-08T20:00:00Z", "2026-03-08T00:00:00Z",
                     "2026-03-08T00:00:00+00:00", "2026-03-09T00:00:00Z");
        check_bucket(z, TZ_HOUR, "2026-03-08T20:59:59.999Z", "2026-03-08T20:00:00Z",
                     "2026-03-08T20:00:00+00:00", "2026-03-08T21:00:00Z");
        check_bucket(z, TZ_MINUTE, "1969-12-31T23:59:30Z", "1969-12-31T23:59:00Z",
                     "1969-12-31T23:59:00+00:00", "1970-01-01T00:00:00Z");
        tz_free(z);
    }
}

UTEST(tz, refused_names)
{
    const char *bad[] = {"Mars/Olympus_Mons", "Asia/Kolkatta", "Etc/Unknown",
                         "GMT+05:30",         "Asia/Kolkata ", "../../etc/passwd",
                         "Asia/Kolkata\n",    "Europe/",       "America/New York"};
    char longname[100];
    struct err e = {0};
    struct tz *z = (struct tz *)1;

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(&e, 0, sizeof e);
        cr_assert_eq(tz_open(bad[i], &z, &e), E_INVAL, "%s accepted", bad[i]);
        cr_assert_null(z);
        cr_assert_not_null(strstr(e.msg, "Asia/Kolkata"), "%s", e.msg);
    }
    memset(&e, 0, sizeof e);
    cr_assert_eq(tz_open("Mars/Olympus_Mons", &z, &e), E_INVAL);
    cr_assert_str_eq(e.msg,
                     "unknown time zone \"Mars/Olympus_Mons\" (an IANA name such as Asia/Kolkata)");
    memset(longname, 'A', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    memset(&e, 0, sizeof e);
    cr_assert_eq(tz_open(longname, &z, &e), E_INVAL);
    cr_assert_not_null(strstr(e.msg, "over 64 bytes"), "%s", e.msg);
    tz_free(NULL);
}

UTEST(tz, aliases_and_labels)
{
    struct tz *z = open_zone("Asia/Calcutta"); /* the old name of Asia/Kolkata */
    char got[40];

    check_bucket(z, TZ_DAY, "2026-03-08T20:00:00Z", "2026-03-08T18:30:00Z",
                 "2026-03-09T00:00:00+05:30", "2026-03-09T18:30:00Z");
    tz_label(z, at("2026-03-08T20:00:00.250Z"), got); /* not a bucket start: ms shown */
    cr_assert_str_eq(got, "2026-03-09T01:30:00.250+05:30");
    tz_free(z);
    z = open_zone("America/New_York");
    tz_label(z, at("2026-03-08T05:00:00Z"), got);
    cr_assert_str_eq(got, "2026-03-08T00:00:00-05:00");
    tz_label(z, at("1800-01-01T00:00:00Z"), got); /* local mean time: -4:56:02 */
    cr_assert_str_eq(got, "1799-12-31T19:03:58-04:56:02");
    tz_label(z, INT64_MAX, got); /* clamped to 9999-12-31T23:59:59.999Z */
    cr_assert_str_eq(got, "9999-12-31T18:59:59.999-05:00");
    tz_free(z);
}

/* Every bucket of 2026 in turn: each starts where the last ended, is its own floor,
 * holds its last millisecond, and lasts at most its unit (a day: 23 to 25 hours). */
UTEST(tz, buckets_tile_the_year)
{
    const char *zones[] = {"UTC",
                           "Asia/Kolkata",
                           "America/New_York",
                           "Asia/Kathmandu",
                           "Australia/Lord_Howe",
                           "Europe/London",
                           "Pacific/Chatham",
                           "America/Sao_Paulo"};
    const enum tz_unit units[] = {TZ_HOUR, TZ_DAY};
    const int64_t from = at("2026-01-01T00:00:00Z"), to = at("2027-01-01T00:00:00Z");

    for (size_t i = 0; i < sizeof zones / sizeof *zones; i++) {
        struct tz *z = open_zone(zones[i]);
        for (size_t k = 0; k < 2; k++) {
            enum tz_unit u = units[k];
            int64_t s = tz_floor(z, from, u), n;
            cr_assert_leq(s, from);
            for (; s < to; s = n) {
                n = tz_next(z, s, u);
                cr_assert_gt(n, s, "%s: no progress at %lld", zones[i], (long long)s);
                if (u == TZ_HOUR)
                    cr_assert_leq(n - s, HOUR_MS, "%s: hour at %lld", zones[i], (long long)s);
                else
                    cr_assert(n - s >= 23 * HOUR_MS && n - s <= 25 * HOUR_MS,
                              "%s: day at %lld lasts %lld ms", zones[i], (long long)s,
                              (long long)(n - s));
                cr_assert_eq(tz_floor(z, s, u), s, "%s: %lld", zones[i], (long long)s);
                cr_assert_eq(tz_floor(z, n - 1, u), s, "%s: %lld", zones[i], (long long)n);
                cr_assert_eq(tz_floor(z, s + (n - s) / 2, u), s);
            }
        }
        tz_free(z);
    }
}
