/* delivery/ses_int.h -- what tests/unit/ses.c reaches inside delivery/ses.c. */
#ifndef ENGAGE_DELIVERY_SES_INT_H
#define ENGAGE_DELIVERY_SES_INT_H

#include "delivery.h"

/* Bounds on the certificate fetch (delivery.h says them in words). */
#define SNS_CERT_MAX_BYTES (64 * 1024)
#define SNS_CERT_CACHE_MAX 64
#define SNS_FETCH_TIMEOUT_S 10L
#define SNS_URL_MAX 2048

/* 1 when url may be fetched: printable ASCII, at most SNS_URL_MAX bytes, and matching
 * the pattern c was made with (within PCRE2's match limit); else 0. Any thread. */
int sns_cert_url_allowed(const struct sns_certs *c, const char *url);
/* Certificates held in c's cache now (for tests). */
size_t sns_certs_cached(struct sns_certs *c);

#endif
