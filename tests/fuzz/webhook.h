/* tests/fuzz/webhook.h -- what the webhook fuzz targets share: the input split into
 * header lines and a body, and the checks every parse must pass. */
#ifndef ENGAGE_FUZZ_WEBHOOK_H
#define ENGAGE_FUZZ_WEBHOOK_H

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/delivery.h"

/* The input as "LINE1\nLINE2\nBODY": both lines NUL-terminated copies (empty when the
 * input has fewer newlines; caller frees), body the rest of the input. */
struct fuzz_split {
    char *line1, *line2;
    const char *body;
    size_t len;
};

static char *fuzz_dup(const unsigned char *p, size_t n)
{
    char *s = malloc(n + 1);

    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static void fuzz_split(const unsigned char *data, size_t size, struct fuzz_split *s)
{
    const unsigned char *nl1 = memchr(data, '\n', size), *nl2 = NULL;

    memset(s, 0, sizeof *s);
    if (nl1)
        nl2 = memchr(nl1 + 1, '\n', size - (size_t)(nl1 + 1 - data));
    s->line1 = fuzz_dup(data, nl1 ? (size_t)(nl1 - data) : size);
    s->line2 = nl2 ? fuzz_dup(nl1 + 1, (size_t)(nl2 - nl1 - 1)) : fuzz_dup(data, 0);
    s->body = nl2 ? (const char *)nl2 + 1 : "";
    s->len = nl2 ? size - (size_t)(nl2 + 1 - data) : 0;
}

static void fuzz_split_free(struct fuzz_split *s)
{
    free(s->line1);
    free(s->line2);
}

static void fuzz_check_str(const char *s, size_t max)
{
    size_t n;

    if (s == NULL)
        return;
    n = strlen(s);
    if (n > max || !utf8_valid(s, n))
        abort();
}

/* A parse's outcome: an error recorded as returned, with a message; events of a known
 * kind whose strings keep to the model's bounds and whose message id is ours. */
static void fuzz_check(const struct mev_list *l, int rc, const struct err *e)
{
    if (rc != e->code || (rc && e->msg[0] == '\0') || (rc && rc != E_INVAL && rc != E_TOOBIG))
        abort();
    if (l->n > MEV_MAX_PER_BODY)
        abort();
    for (size_t i = 0; i < l->n; i++) {
        const struct mev *m = &l->v[i];
        char id[48];
        if (m->kind <= MEV_NONE || m->kind >= MEV_KINDS)
            abort();
        fuzz_check_str(m->source_id, MEV_MAX_ID);
        fuzz_check_str(m->queue_id, MEV_MAX_ID);
        fuzz_check_str(m->email, MEV_MAX_EMAIL);
        fuzz_check_str(m->reason, MEV_MAX_REASON);
        fuzz_check_str(m->url, MEV_MAX_URL);
        fuzz_check_str(m->user_agent, MEV_MAX_AGENT);
        if (m->message_id &&
            (mev_message_id(m->message_id, id) != 0 || strcmp(id, m->message_id) != 0))
            abort();
        if (m->machine != 0 && m->machine != 1)
            abort();
    }
}

/* parse(body) checked, in a fresh round of the arena a */
static void fuzz_parse(struct arena *a,
                       int (*parse)(const char *, size_t, struct mev_list *, struct err *),
                       const char *body, size_t len)
{
    struct mev_list l;
    struct err e = {0};
    int rc;

    arena_reset(a);
    mev_list_init(&l, a);
    rc = parse(body, len, &l, &e);
    fuzz_check(&l, rc, &e);
}

#endif
