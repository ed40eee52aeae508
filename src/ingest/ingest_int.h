/* ingest/ingest_int.h -- shared inside src/ingest only. */
#ifndef ENGAGE_INGEST_INT_H
#define ENGAGE_INGEST_INT_H

#include "ingest.h"

/* Types and checks props against c: NULL on success (*typed = new object: declared
 * properties typed, undeclared ones as given), else a reason code with field/msg. */
const char *contract_apply(const struct contract *c, const json_t *props, json_t **typed,
                           char *field, size_t fieldcap, char *msg, size_t msgcap);
/* Declared type of a property, or -1. */
int contract_prop_type(const struct contract *c, const char *name);
/* The property that gives occurred_at, or NULL. */
const char *contract_occurred_at(const struct contract *c);

#endif
