/* campaign/campaign_int.h -- what the files of src/campaign/ share and no one else sees. */
#ifndef ENGAGE_CAMPAIGN_INT_H
#define ENGAGE_CAMPAIGN_INT_H

#include "../store/store.h"
#include "campaign.h"

/* A run read from the store, owning its strings (store_run_get(..., run_copy_keep, &k,
 * ...); run_copy_release). k.state is NULL until a row was read. */
struct run_copy {
    struct store_run r;
    char *state, *reason, *provider, *created_by;
};
int run_copy_keep(void *ctx, const struct store_run *r);
void run_copy_release(struct run_copy *k);

/* Adds to errs every key of the JSON object body not in keys (" a b c "), at its pointer,
 * saying "unknown key (what)". */
struct errlist;
void campaign_only_keys(const json_t *body, const char *keys, const char *what,
                        struct errlist *errs);

/* The clock of everything the send half does over time (a run's start and end, leases,
 * retries, ledger stamps): the wall clock, even under --now / ENGAGE_NOW, which pins
 * the instant segments are evaluated at but must not stop leases from running out. */
int64_t send_clock_ms(void);

/* Moves run r to state to (with reason, NULL for none) and the campaign with it when r is
 * its latest run (a run that fails to start leaves its campaign a draft again). With from
 * not NULL, only if the run is still in state from as stored now (E_CONFLICT otherwise:
 * someone changed it meanwhile, a cancel say). In a transaction. */
int run_transition(struct store *st, struct store_run *r, const char *from, const char *to,
                   const char *reason, int64_t now, struct err *e);

#endif
