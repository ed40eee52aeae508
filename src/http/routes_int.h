/* http/routes_int.h -- handlers defined in the route files beside routes.c, which
 * holds the one route table. */
#ifndef ENGAGE_ROUTES_INT_H
#define ENGAGE_ROUTES_INT_H

#include "http.h"

/* What the route files share (routes.c). */
/* The route's first {id}: a positive integer, else 404 "no such WHAT" and -1. */
int route_id(struct http_req *r, struct http_resp *w, const char *what, int64_t *id);
/* A JSON object body (caller owns it), or NULL once 400 (malformed), 413 or 422 (not an
 * object) is answered. */
json_t *route_object_body(struct http_req *r, struct http_resp *w);
/* Answers rc: 422 invalid_code with every problem of errs (or the one field an E_INVAL
 * names), another error as the server maps it, else status with out (stolen either way). */
void route_answer(struct http_req *r, struct http_resp *w, int rc, const struct err *e,
                  const struct errlist *errs, const char *invalid_code, int status, json_t *out);
/* GET of one record by the route's {id}: get(st, id, &out, e) answered (404 "no such
 * WHAT"), the result wrapped as {"WRAP": out} when wrap is not NULL. */
typedef int (*route_get_fn)(struct store *st, int64_t id, json_t **out, struct err *e);
void route_get(struct http_req *r, struct http_resp *w, const char *what, route_get_fn get,
               const char *wrap);
/* GET of a page (?limit=&cursor=): list(st, after_id, limit, &items, &next_cursor, e). */
typedef int (*route_list_fn)(struct store *st, int64_t after_id, int limit, json_t **items,
                             int64_t *next_cursor, struct err *e);
void route_list(struct http_req *r, struct http_resp *w, route_list_fn list);

/* routes_segment.c */
void h_segments_preview(struct http_req *r, struct http_resp *w);
void h_segments_create(struct http_req *r, struct http_resp *w);
void h_segments_list(struct http_req *r, struct http_resp *w);
void h_segment_get(struct http_req *r, struct http_resp *w);
void h_segment_update(struct http_req *r, struct http_resp *w);
void h_segment_delete(struct http_req *r, struct http_resp *w);
void h_segment_plan(struct http_req *r, struct http_resp *w);
void h_segment_versions(struct http_req *r, struct http_resp *w);
void h_segment_evaluate(struct http_req *r, struct http_resp *w);
void h_segment_evaluations(struct http_req *r, struct http_resp *w);
void h_segment_members(struct http_req *r, struct http_resp *w);

/* routes_campaign.c */
void h_campaigns_create(struct http_req *r, struct http_resp *w);
void h_campaigns_list(struct http_req *r, struct http_resp *w);
void h_campaign_get(struct http_req *r, struct http_resp *w);
void h_campaign_update(struct http_req *r, struct http_resp *w);
void h_campaign_delete(struct http_req *r, struct http_resp *w);
void h_campaign_send(struct http_req *r, struct http_resp *w);
void h_campaign_pause(struct http_req *r, struct http_resp *w);
void h_campaign_resume(struct http_req *r, struct http_resp *w);
void h_campaign_cancel(struct http_req *r, struct http_resp *w);
void h_campaign_runs(struct http_req *r, struct http_resp *w);
void h_run_get(struct http_req *r, struct http_resp *w);
void h_run_messages(struct http_req *r, struct http_resp *w);
void h_run_reasons(struct http_req *r, struct http_resp *w);
void h_run_log(struct http_req *r, struct http_resp *w);
void h_run_resend_failed(struct http_req *r, struct http_resp *w);
void h_dlq_list(struct http_req *r, struct http_resp *w);
void h_dlq_replay(struct http_req *r, struct http_resp *w);
/* routes_delivery.c */
void h_track_open(struct http_req *r, struct http_resp *w);
void h_track_click(struct http_req *r, struct http_resp *w);
void h_unsubscribe_get(struct http_req *r, struct http_resp *w);
void h_unsubscribe_post(struct http_req *r, struct http_resp *w);
void h_webhook(struct http_req *r, struct http_resp *w);
void h_campaign_funnel(struct http_req *r, struct http_resp *w);
void h_run_funnel(struct http_req *r, struct http_resp *w);
void h_campaign_timeseries(struct http_req *r, struct http_resp *w);
void h_run_timeseries(struct http_req *r, struct http_resp *w);
void h_analytics_overview(struct http_req *r, struct http_resp *w);
void h_ops_queues(struct http_req *r, struct http_resp *w);
/* routes_template.c */
void h_templates_create(struct http_req *r, struct http_resp *w);
void h_templates_list(struct http_req *r, struct http_resp *w);
void h_template_get(struct http_req *r, struct http_resp *w);
void h_template_update(struct http_req *r, struct http_resp *w);
void h_template_delete(struct http_req *r, struct http_resp *w);
void h_template_versions(struct http_req *r, struct http_resp *w);
void h_template_preview(struct http_req *r, struct http_resp *w);
void h_template_test_send(struct http_req *r, struct http_resp *w);

/* routes_ingest.c */
void h_tracking(struct http_req *r, struct http_resp *w);
void h_events_post(struct http_req *r, struct http_resp *w);
void h_contacts_post(struct http_req *r, struct http_resp *w);

/* routes_sync.c */
void h_sync_sources_list(struct http_req *r, struct http_resp *w);
void h_sync_sources_create(struct http_req *r, struct http_resp *w);
void h_sync_source_delete(struct http_req *r, struct http_resp *w);
void h_sync_health(struct http_req *r, struct http_resp *w);
void h_sync_reconciliations(struct http_req *r, struct http_resp *w);

/* routes_admin.c */
void h_contact_get(struct http_req *r, struct http_resp *w);
void h_contacts_list(struct http_req *r, struct http_resp *w);
void h_contact_delete(struct http_req *r, struct http_resp *w);
void h_contact_restore(struct http_req *r, struct http_resp *w);
void h_contact_consent(struct http_req *r, struct http_resp *w);
void h_apikeys_list(struct http_req *r, struct http_resp *w);
void h_apikeys_create(struct http_req *r, struct http_resp *w);
void h_apikey_revoke(struct http_req *r, struct http_resp *w);
void h_audit_list(struct http_req *r, struct http_resp *w);

#endif
