/* analytics/analytics.h -- what the dashboard reads about sends: funnels, time series, the
 * overview, and the queues an operator watches. docs/analytics.md defines every figure.
 *
 * DESIGN: nothing here counts events. The counters are kept as events arrive (per run
 * and per minute: campaign/engagement.c, the ledger's triggers), so a read sums a few
 * rows: a run's funnel is its run_stats rows and its ledger counts, a campaign's the sum
 * over its runs, a time series the minute rows of the range folded into buckets of the
 * reader's time zone (tz.h). */
#ifndef ENGAGE_ANALYTICS_H
#define ENGAGE_ANALYTICS_H

#include <jansson.h>

#include "../core/core.h"

struct store;

/* {counts: {sent, delivered, opened_unique, opened_total, opened_machine, clicked_unique,
 * clicked_total, bounced_hard, bounced_soft, complained, unsubscribed, deferred, dropped,
 * failed, skipped, dead, conversions, revenue}, rates: {delivery, open, click,
 * click_to_open, bounce, complaint, unsubscribe, conversion}, rate_base: "delivered" |
 * "sent"} of one run, or of every run of a campaign. E_NOTFOUND. */
int analytics_run_funnel(struct store *st, int64_t run_id, json_t **out, struct err *e);
int analytics_campaign_funnel(struct store *st, int64_t campaign_id, json_t **out, struct err *e);

/* A time series query: ?bucket=minute|hour|day&from=&to=&tz= as given (NULL: absent). */
struct analytics_range {
    const char *bucket, *from, *to, *tz;
};
/* {bucket, tz, from, to, series: [{t, sent, delivered, opened_unique, opened_total,
 * clicked_unique, clicked_total, bounced_hard, bounced_soft, complained, unsubscribed,
 * failed, conversions, revenue}]}, a zero-filled bucket for every step of the range.
 * Defaults: bucket hour, from the run's start (the campaign's first run's), to now.
 * E_INVAL (field in e) for a bad parameter or more than ANALYTICS_MAX_BUCKETS buckets. */
#define ANALYTICS_MAX_BUCKETS 5000
int analytics_run_timeseries(struct store *st, int64_t run_id, const struct analytics_range *q,
                             json_t **out, struct err *e);
int analytics_campaign_timeseries(struct store *st, int64_t campaign_id,
                                  const struct analytics_range *q, json_t **out, struct err *e);
/* ?from=&to=&tz= (default: the last 30 days) -> {from, to, tz, totals: {the series
 * keys}, rates, top_campaigns: [{id, name, sent, opened_unique, clicked_unique, rates}]
 * (by sent, at most 10), daily: [{t, ...}]}. */
int analytics_overview(struct store *st, const struct analytics_range *q, json_t **out,
                       struct err *e);

/* {ledger: {queued, sending, sent, retry, failed, dead, skipped}, oldest_queued_seconds,
 * retry_backlog, next_retry_at, dead_letters, webhook_inbox: {pending,
 * oldest_pending_seconds, failed}, unknown_message_events}. */
int analytics_queues(struct store *st, json_t **out, struct err *e);

#endif
