/* contract/contract_int.h -- shared inside src/contract only (and its unit tests). */
#ifndef ENGAGE_CONTRACT_INT_H
#define ENGAGE_CONTRACT_INT_H

#include "contract.h"

/* ---- a property's "pattern" (pattern.c) ----
 * PCRE2 in UTF-8 mode, searched for anywhere in the value unless anchored, with the work
 * per value bounded (docs/contracts.md, "Patterns"). Compiled once, then matched by any
 * number of threads at once without a lock: each thread has its own match data. */
#define PATTERN_MAX_BYTES 8192      /* of a pattern's text */
#define PATTERN_MATCH_LIMIT 100000  /* steps per value (every start position together) */
#define PATTERN_DEPTH_LIMIT 25000   /* nested backtracking points (interpreter) */
#define PATTERN_HEAP_LIMIT_KIB 8192 /* backtracking memory per thread (interpreter) */
#define PATTERN_JIT_STACK_KIB 1024  /* match stack per thread (JIT code) */
struct pattern;
/* 0 and *out (caller frees with pattern_free), or E_INVAL with a sentence in msg (PCRE2's
 * error and its offset for a bad expression). */
int pattern_compile(const char *text, size_t len, struct pattern **out, char *msg, size_t msgcap);
void pattern_free(struct pattern *p); /* NULL-safe */
const char *pattern_text(const struct pattern *p);
enum { PATTERN_MATCH, PATTERN_NO_MATCH, PATTERN_GAVE_UP, PATTERN_BAD_VALUE };
/* Whether s[0..n) (UTF-8) contains a match. PATTERN_GAVE_UP (a limit reached: the answer is
 * unknown) and PATTERN_BAD_VALUE (not UTF-8) come with a sentence in msg. Any thread. */
int pattern_match(const struct pattern *p, const char *s, size_t n, char *msg, size_t msgcap);

#endif
