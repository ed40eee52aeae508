/* tests/fuzz/webhook_ses.c -- libFuzzer: what an SES webhook reads before and after its
 * signature is checked (src/delivery/ses.c), on arbitrary bytes.
 *
 * The input is read as an SNS envelope (sns_read); when it is one, its string to sign is
 * built and, for a Notification, its Message parsed (ses_parse). The same bytes are also
 * given to ses_parse directly as a Notification's Message, so the SES reader is reached
 * without the envelope's escaping in the way. Every event must have a kind and, as
 * delivery.h promises, strings within their bounds. Never a crash, a read past the
 * input, or a leak. */
#include <stdlib.h>
#include <string.h>

#include "delivery/delivery.h"

static void check(const struct mev_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct mev *v = &l->v[i];
        if (v->kind <= MEV_NONE || v->kind >= MEV_KINDS ||
            (v->source_id && strlen(v->source_id) > MEV_MAX_ID) ||
            (v->message_id && strlen(v->message_id) > MEV_MAX_ID) ||
            (v->queue_id && strlen(v->queue_id) > MEV_MAX_ID) ||
            (v->email && strlen(v->email) > MEV_MAX_EMAIL) ||
            (v->reason && strlen(v->reason) > MEV_MAX_REASON) ||
            (v->url && strlen(v->url) > MEV_MAX_URL) ||
            (v->user_agent && strlen(v->user_agent) > MEV_MAX_AGENT))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static struct arena a; /* reset, not released: a fresh chunk per run is slow */
    struct sns_msg m;
    struct mev_list l;
    struct err e = {0};
    char *text;

    arena_reset(&a);
    if (sns_read((const char *)data, size, &a, &m, &e) == 0) {
        struct buf b;
        buf_init(&b);
        sns_string_to_sign(&m, &b);
        if (b.len == 0 || strncmp(b.p, "Message\n", 8) != 0)
            abort();
        buf_release(&b);
        mev_list_init(&l, &a);
        memset(&e, 0, sizeof e);
        if (ses_parse(&m, &l, &e) == 0)
            check(&l);
        else if (l.n != 0 || e.msg[0] == '\0')
            abort(); /* a failed parse adds nothing and says why */
    }
    /* the bytes as a Message (up to a NUL: the envelope's strings hold none) */
    text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    memset(&m, 0, sizeof m);
    m.type = SNS_NOTIFICATION;
    m.message_id = "fuzz";
    m.message = text;
    mev_list_init(&l, &a);
    memset(&e, 0, sizeof e);
    if (ses_parse(&m, &l, &e) == 0)
        check(&l);
    else if (l.n != 0 || e.msg[0] == '\0')
        abort();
    free(text);
    return 0;
}
