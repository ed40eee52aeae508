/* store/store_int.h -- between the backend-neutral part of the store (store.c: the
 * location string, the pool) and its backends (sqlite/). Not for other modules. */
#ifndef ENGAGE_STORE_INT_H
#define ENGAGE_STORE_INT_H

#include "store.h"

/* Opens DIR/engage.db (sqlite/conn.c). */
int sqlite_store_open(struct store **out, const char *dir, const struct store_opts *opts,
                      struct err *e);

#endif
