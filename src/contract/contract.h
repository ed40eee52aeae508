/* contract/contract.h -- versioned contracts: compile, check, type; typed values.
 *
 * DESIGN: a contract is a JSON document that declares an event's properties or the
 * contact's attributes (docs/contracts.md). It is compiled once (patterns in PCRE2,
 * pattern.c), then read by any number of threads; the latest version of every contract
 * is a contract_set, shared by reference. Ingestion types and checks records with it,
 * and the segment engine reads the declared types from it. Depends on the store (where
 * versions are kept, audited through auth) and core only. */
#ifndef ENGAGE_CONTRACT_H
#define ENGAGE_CONTRACT_H

#include <jansson.h>

#include "../core/config.h"
#include "../core/map.h"
#include "../store/store.h"

/* ---- contracts ---------------------------------------------------------------- */

enum vtype { VT_STRING, VT_NUMBER, VT_INTEGER, VT_BOOLEAN, VT_TIMESTAMP };
const char *vtype_name(enum vtype t);
int vtype_parse(const char *s, enum vtype *out);

struct contract;     /* one compiled version */
struct contract_set; /* the latest version of every contract; immutable once built */

/* Parses and checks a contract document. Problems go to errs with JSON pointers
 * (E_INVAL if any). name_expected, if not NULL, must equal the document's name.
 * Caller owns *out. */
int contract_compile(const char *text, size_t len, const char *name_expected, int version,
                     struct contract **out, struct errlist *errs, struct err *e);
void contract_free(struct contract *c);
const char *contract_name(const struct contract *c);
const char *contract_kind(const struct contract *c);

/* Stores text as the next version of contract name (audited, one transaction), unless it
 * equals the latest version (*unchanged = 1, *version = that version). A document that
 * does not compile: E_INVAL with every problem in errs. */
int contract_put(struct store *st, const char *name, const char *text, size_t len,
                 const char *actor, const char *req_id, int *version, int *unchanged,
                 struct errlist *errs, struct err *e);
/* A stored version as the API and the CLI show it: {name, kind, version, created_at,
 * created_by, contract} (the document parsed; null if it does not parse). Caller owns it. */
json_t *contract_record_json(const struct store_contract *c);
/* The latest version of every stored contract, by name (name NULL), or every version of
 * contract name, newest first: fn gets each (as store_contract_fn). E_NOTFOUND for a
 * name with no version. */
int contract_records_each(struct store *st, const char *name, store_contract_fn fn, void *ctx,
                          struct err *e);
/* The same as contract_record_json shows them: *items (caller owns; NULL on error). */
int contract_records_json(struct store *st, const char *name, json_t **items, struct err *e);
/* Loads the latest version of every stored contract, with cfg's limits ([ingest]
 * pattern_max_value_bytes; NULL: the defaults, for readers that only look at types).
 * A stored pattern that no longer compiles is logged, and its property refuses every
 * value (reason pattern_invalid) until a new version is stored. Caller owns *out. */
int contract_set_load(struct store *st, const struct config *cfg, struct contract_set **out,
                      struct err *e);
/* Sets are shared by reference: free drops one; the last frees. */
struct contract_set *contract_set_ref(struct contract_set *cs);
void contract_set_free(struct contract_set *cs);
/* NULL if there is none. */
const struct contract *contract_set_event(const struct contract_set *cs, const char *name);
const struct contract *contract_set_contact(const struct contract_set *cs);
int contract_set_nevents(const struct contract_set *cs);
const struct contract *contract_set_event_at(const struct contract_set *cs, int i);
int contract_version(const struct contract *c);
/* Declared properties (attributes for the contact contract), by index. */
int contract_nprops(const struct contract *c);
const char *contract_prop_name(const struct contract *c, int i);
int contract_prop_required(const struct contract *c, int i);
/* Declared type of a property, or -1. */
int contract_prop_type(const struct contract *c, const char *name);
/* 1 if undeclared properties are refused. */
int contract_strict(const struct contract *c);
/* Types a value of a JSON record (read by core/jtree.c) for the property at index i
 * and checks it, exactly as the JSON path does: NULL with the typed value in out (its
 * strings in the arena), or the reason code with a sentence in msg. */
struct jt;
struct arena;
const char *contract_type_jt(const struct contract *c, int i, const struct jt *v, struct arena *a,
                             struct jt *out, char *msg, size_t msgcap);

/* The contracts shipped in contracts/ (embedded at build time). */
struct shipped_contract {
    const char *file, *text;
};
extern const struct shipped_contract shipped_contracts[];
extern const int shipped_contracts_count;
/* Stores version 1 of each shipped contract that the store does not have yet. */
int contracts_seed(struct store *st, int *added, struct err *e);

/* Types and checks props against c: NULL on success (*typed = new object: declared
 * properties typed, undeclared ones as given), else a reason code with field/msg. */
const char *contract_apply(const struct contract *c, const json_t *props, json_t **typed,
                           char *field, size_t fieldcap, char *msg, size_t msgcap);
/* The property that gives occurred_at, or NULL. */
const char *contract_occurred_at(const struct contract *c);

/* ---- typed values -------------------------------------------------------------- */

/* Converts a raw value to type t. Text mode (CSV): v is a string. Returns a new
 * reference, or NULL with a sentence in msg. Timestamps become canonical
 * ISO-8601 strings (ms, UTC, Z). */
json_t *value_coerce(const json_t *v, enum vtype t, char *msg, size_t msgcap);
/* Infers the type of an undeclared value (see docs/contracts.md "Inference"). */
enum vtype value_infer(const json_t *v);

/* The text path (CSV fast path): properties by index. */
/* Types the text s as property i, checks it, appends its JSON to out; *ms receives a
 * timestamp's instant. NULL, or a reason code with a sentence in msg. */
const char *contract_type_text(const struct contract *c, int i, const char *s, size_t n,
                               struct buf *out, int64_t *ms, char *msg, size_t msgcap);
/* A timestamp in text (occurred_at), read as a typed value is: the spaces and tabs
 * around it ignored. 0, or E_INVAL. */
int value_parse_time(const char *s, size_t n, int64_t *ms);
/* An undeclared text value, typed by inference, as JSON. */
void value_infer_text_json(const char *s, size_t n, struct buf *out);

/* A loose email check ("format":"email", a contact's email): one '@' with text on both
 * sides, no spaces or brackets, a dot in the domain. */
int value_email_ok(const char *s);

#endif
