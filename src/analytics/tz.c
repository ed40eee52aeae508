/* analytics/tz.c -- local minutes, hours and days of an IANA zone, with ICU.
 *
 * DESIGN: ICU is asked two things only: the zone's total offset at an instant, and the
 * zone's transitions (instants where that offset may change) before or after one. The
 * calendar arithmetic is ours, on "local milliseconds" (utc + offset): a local unit is
 * floor(local / unit). Between two transitions the offset is constant, so a bucket's
 * start is the local boundary moved back by that offset -- unless a transition comes
 * between, and then the bucket starts at the transition (a minute or an hour: a new
 * offset is a new bucket) or, for a day, the search goes on before the transition while
 * the local date is the same. ICU resolves no local times for us: its rules for a
 * skipped or repeated wall time would put a bucket's start after, or an hour before,
 * the instant asked about. Dates are formatted from local milliseconds by gmtime_r. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unicode/ucal.h>
#include <unicode/ustring.h>

#include "tz.h"

#define TZ_ID_CAP 128   /* UChars of a canonical id */
#define TZ_MAX_STEPS 16 /* transitions looked at for one bucket (two in practice) */

struct tz {
    UCalendar *cal; /* NULL for UTC */
};

int tz_open(const char *name, struct tz **out, struct err *e)
{
    UChar id[TZ_NAME_MAX + 1], canon[TZ_ID_CAP], got[TZ_ID_CAP], unknown[TZ_ID_CAP];
    UErrorCode st = U_ZERO_ERROR;
    UBool system = 0;
    UCalendar *cal = NULL;
    size_t n, i;
    int32_t clen;

    *out = NULL;
    if (name == NULL || name[0] == '\0' || strcmp(name, "UTC") == 0) {
        *out = xcalloc(1, sizeof **out);
        return 0;
    }
    n = strnlen(name, TZ_NAME_MAX + 1);
    if (n > TZ_NAME_MAX)
        return ERR(e, E_INVAL,
                   "time zone name over %d bytes (an IANA name such as Asia/Kolkata is expected)",
                   TZ_NAME_MAX);
    for (i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && strchr("/_-+", name[i]) == NULL)
            return ERR(e, E_INVAL,
                       "unknown time zone: a zone's name has letters, digits and / _ - + only "
                       "(an IANA name such as Asia/Kolkata)");
    u_charsToUChars(name, id, (int32_t)n); /* ASCII, checked above */
    id[n] = 0;
    /* ucal_open takes any name and falls back to "Etc/Unknown" (GMT) silently: ask
     * first whether ICU knows the zone as a system zone (not a custom "GMT+05:30"). */
    clen = ucal_getCanonicalTimeZoneID(id, (int32_t)n, canon, TZ_ID_CAP, &system, &st);
    u_uastrcpy(unknown, UCAL_UNKNOWN_ZONE_ID);
    if (U_SUCCESS(st) && system && clen > 0 && clen < TZ_ID_CAP && u_strcmp(canon, unknown) != 0)
        cal = ucal_open(canon, clen, "en_US_POSIX", UCAL_GREGORIAN, &st);
    if (cal && U_SUCCESS(st)) {
        int32_t glen = ucal_getTimeZoneID(cal, got, TZ_ID_CAP, &st);
        if (U_FAILURE(st) || glen <= 0 || glen >= TZ_ID_CAP || u_strcmp(got, unknown) == 0) {
            ucal_close(cal);
            cal = NULL;
        }
    }
    if (cal == NULL || U_FAILURE(st)) {
        if (cal)
            ucal_close(cal);
        return ERR(e, E_INVAL, "unknown time zone \"%s\" (an IANA name such as Asia/Kolkata)",
                   name);
    }
    *out = xcalloc(1, sizeof **out);
    (*out)->cal = cal;
    return 0;
}

void tz_free(struct tz *z)
{
    if (z == NULL)
        return;
    if (z->cal)
        ucal_close(z->cal);
    free(z);
}

/* ---- offsets and transitions ------------------------------------------------------ */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;

    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t clamp(int64_t t)
{
    return t < TIME_MIN_MS ? TIME_MIN_MS : t > TIME_MAX_MS ? TIME_MAX_MS : t;
}

static int64_t unit_ms(enum tz_unit u)
{
    return u == TZ_DAY ? DAY_MS : u == TZ_HOUR ? HOUR_MS : MIN_MS;
}

/* Local time minus UTC at t, in ms (raw offset plus DST). */
static int64_t offset_at(const struct tz *z, int64_t t)
{
    UErrorCode st = U_ZERO_ERROR;
    int32_t raw, dst;

    if (z->cal == NULL)
        return 0;
    ucal_setMillis(z->cal, (UDate)t, &st);
    raw = ucal_get(z->cal, UCAL_ZONE_OFFSET, &st);
    dst = ucal_get(z->cal, UCAL_DST_OFFSET, &st);
    return U_SUCCESS(st) ? (int64_t)raw + dst : 0;
}

/* The zone's transition before (or at) t, or after t: 1 and *out, or 0 when none. */
static int transition(const struct tz *z, int64_t t, UTimeZoneTransitionType type, int64_t *out)
{
    UErrorCode st = U_ZERO_ERROR;
    UDate d = 0;

    if (z->cal == NULL)
        return 0;
    ucal_setMillis(z->cal, (UDate)t, &st);
    if (U_FAILURE(st) || !ucal_getTimeZoneTransitionDate(z->cal, type, &d, &st) || U_FAILURE(st))
        return 0;
    if (d < (UDate)TIME_MIN_MS || d > (UDate)TIME_MAX_MS)
        return 0;
    *out = (int64_t)d;
    return 1;
}

/* ---- buckets ---------------------------------------------------------------------- */

int64_t tz_floor(struct tz *z, int64_t utc_ms, enum tz_unit u)
{
    int64_t unit = unit_ms(u), end = clamp(utc_ms), off = offset_at(z, end);
    int64_t key = floor_div(end + off, unit), start = key * unit - off, t, before;
    int step;

    /* [end - ..., end] has offset off; start is where the bucket would begin if it
     * stayed so. A transition at or after start cuts that short. */
    for (step = 0; step < TZ_MAX_STEPS; step++) {
        start = key * unit - off;
        if (!transition(z, end, UCAL_TZ_TRANSITION_PREVIOUS_INCLUSIVE, &t) || t < start)
            break;
        before = offset_at(z, t - 1);
        if (before != off && (u != TZ_DAY || floor_div(t - 1 + before, unit) != key)) {
            start = t; /* a new offset: a new minute or hour, or the day's first instant */
            break;
        }
        /* the same offset (a change of name or rule only), or the same local day */
        end = t - 1;
        off = before;
    }
    return start;
}

int64_t tz_next(struct tz *z, int64_t bucket_start_ms, enum tz_unit u)
{
    int64_t unit = unit_ms(u), cur = clamp(bucket_start_ms), off = offset_at(z, cur);
    int64_t key = floor_div(cur + off, unit), next = (key + 1) * unit - off, t, after;
    int step;

    for (step = 0; step < TZ_MAX_STEPS; step++) {
        next = (key + 1) * unit - off;
        /* at next itself, a transition may keep the day: back from 00:00 to 23:00 */
        if (!transition(z, cur, UCAL_TZ_TRANSITION_NEXT, &t) || t > next)
            break;
        after = offset_at(z, t);
        if (after != off && (u != TZ_DAY || floor_div(t + after, unit) != key)) {
            next = t;
            break;
        }
        cur = t;
        off = after;
    }
    return next;
}

void tz_label(struct tz *z, int64_t bucket_start_ms, char out[40])
{
    int64_t t = clamp(bucket_start_ms), off = offset_at(z, t), local = t + off;
    int64_t aoff = off < 0 ? -off : off, ms = local - floor_div(local, SEC_MS) * SEC_MS;
    time_t secs = (time_t)floor_div(local, SEC_MS);
    char frac[8] = "", osec[8] = "";
    struct tm tm;

    memset(&tm, 0, sizeof tm);
    gmtime_r(&secs, &tm);
    if (ms)
        snprintf(frac, sizeof frac, ".%03d", (int)ms);
    if (aoff / SEC_MS % 60)
        snprintf(osec, sizeof osec, ":%02d", (int)(aoff / SEC_MS % 60));
    snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d%s%c%02d:%02d%s", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac, off < 0 ? '-' : '+',
             (int)(aoff / HOUR_MS), (int)(aoff / MIN_MS % 60), osec);
}
