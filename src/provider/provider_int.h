/* provider/provider_int.h -- shared inside src/provider/ only: the types' ops tables.
 *
 * A new type is one more table here, its file, and one row in provider.c's types[]. */
#ifndef ENGAGE_PROVIDER_INT_H
#define ENGAGE_PROVIDER_INT_H

#include "provider.h"

extern const struct provider_ops provider_smtp_ops;
extern const struct provider_ops provider_outbox_ops;

/* Every type's connection starts with this (its first member), so provider_send and
 * provider_close find the ops. */
struct provider_conn {
    const struct provider *p;
};

#endif
