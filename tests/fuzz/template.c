/* tests/fuzz/template.c -- libFuzzer: the template language (src/campaign/template.c).
 *
 * Each input is compiled as a template; when it compiles, it is rendered in the three
 * escape modes for a contact with a few attributes (one with CR/LF and markup, one
 * empty, the rest missing), and template_missing() is asked. A refusal must be E_INVAL
 * or E_TOOBIG with a "line L, column C: ..." sentence. The input is also converted
 * from HTML to text and that text compiled. Never a crash or a leak. */
#include <stdlib.h>
#include <string.h>

#include "campaign/campaign.h"

static const char *look(void *ctx, const char *name, size_t *len)
{
    static const char *const kv[][2] = {{"first_name", "Zoë <b>&'\"</b>"},
                                        {"email", "a@b.co"},
                                        {"evil", "x\r\nBcc: y\x01\x7f"},
                                        {"empty", ""}};

    (void)ctx;
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (strcmp(kv[i][0], name) == 0) {
            *len = strlen(kv[i][1]);
            return kv[i][1];
        }
    return NULL;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct template *t = NULL, *t2 = NULL;
    struct err e = {0};
    struct buf out, text;
    int rc, esc;

    buf_init(&out);
    buf_init(&text);
    rc = template_compile(&t, (const char *)data, size, &e);
    if (rc == 0) {
        for (esc = TEMPLATE_HTML; esc <= TEMPLATE_HEADER; esc++) {
            buf_reset(&out);
            if (template_render(t, (enum template_escape)esc, look, NULL, &out, &e) != 0)
                abort();
            if (esc == TEMPLATE_HEADER)
                for (size_t i = 0; i < out.len; i++)
                    if ((unsigned char)out.p[i] < 0x20)
                        abort(); /* no header injection, whatever the template */
        }
        (void)template_missing(t, look, NULL);
        for (size_t i = 0; i < template_token_count(t); i++)
            if (template_token_name(t, i)[0] == '\0')
                abort();
    } else if ((rc != E_INVAL && rc != E_TOOBIG) || t != NULL || e.msg[0] == '\0') {
        abort();
    } else if (rc == E_INVAL && strncmp(e.msg, "line ", 5) != 0) {
        abort();
    }
    err_clear(&e);
    if (template_html_to_text((const char *)data, size, &text, &e) != 0)
        abort();
    /* the text may not compile (an entity can decode to '{'); it must not crash */
    if (template_compile(&t2, text.p ? text.p : "", text.len, &e) != 0 && t2 != NULL)
        abort();
    template_free(t2);
    template_free(t);
    buf_release(&out);
    buf_release(&text);
    return 0;
}
