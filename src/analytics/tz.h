/* analytics/tz.h -- time buckets in a reader's time zone: minutes, hours and days as the
 * clocks of one IANA zone show them, for reports that count events "per day in Kolkata".
 *
 * Instants are UTC milliseconds (core.h), as everywhere; a bucket is named by the UTC
 * instant it starts at. Days are local calendar days, so 23 or 25 hours long across a
 * DST change; minutes and hours are whole local minutes and hours (a zone at +05:30 or
 * +05:45 has hours that start at :30 or :15 UTC), cut where the zone's offset changes, so
 * a bucket is never longer than its unit and a repeated hour (DST ends) is two buckets
 * with two labels. Instants outside 0000-01-01 .. 9999-12-31 are clamped to that range. */
#ifndef ENGAGE_ANALYTICS_TZ_H
#define ENGAGE_ANALYTICS_TZ_H

#include <stdint.h>

#include "../core/core.h"

#define TZ_NAME_MAX 64 /* bytes of a zone's name */

enum tz_unit { TZ_MINUTE, TZ_HOUR, TZ_DAY };
struct tz; /* one IANA zone (ICU ucal), used by one thread at a time */
/* NULL, "" or "UTC": UTC. An unknown zone, a name over TZ_NAME_MAX bytes or an ICU
 * custom zone ("GMT+05:30") is E_INVAL, e naming the zone; caller frees *out. */
int tz_open(const char *name, struct tz **out, struct err *e);
void tz_free(struct tz *z); /* NULL-safe */
/* The UTC instant at which the local minute, hour or day containing utc_ms starts: a day
 * starts at local midnight, or at its first instant when DST skips midnight. */
int64_t tz_floor(struct tz *z, int64_t utc_ms, enum tz_unit u);
/* The start of the bucket after the one containing bucket_start_ms. */
int64_t tz_next(struct tz *z, int64_t bucket_start_ms, enum tz_unit u);
/* The local time at bucket_start_ms in ISO-8601 with its offset, as
 * "2026-03-08T00:00:00-05:00" (UTC: "+00:00"; ".mmm" only when not a whole second). */
void tz_label(struct tz *z, int64_t bucket_start_ms, char out[40]);

#endif
