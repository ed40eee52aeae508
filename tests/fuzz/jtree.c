/* tests/fuzz/jtree.c -- libFuzzer: the arena JSON reader (core/jtree.c) on arbitrary
 * bytes. It accepts what jansson accepts (but refuses any NUL byte, which jansson
 * sometimes skips), and then writes the same compact sorted text and the same value. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/jtree.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static struct arena a; /* reset, not released: a fresh 1 MB chunk per run is slow */
    const char *text = (const char *)data;
    struct jt *t;
    struct jt_error je;
    json_t *j = json_loadb(text, size, 0, NULL);
    int rc;

    arena_reset(&a);
    rc = jt_parse(&a, text, size, &t, &je);
    if (memchr(text, '\0', size)) {
        if (rc == 0)
            abort();
    } else if ((rc == 0) != (j != NULL)) {
        abort();
    } else if (j) {
        struct buf b;
        char *want = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_t *back = jt_json(t);
        buf_init(&b);
        jt_dump(&b, t, 0);
        if (strcmp(b.p, want) != 0 || !json_equal(back, j))
            abort();
        free(want);
        json_decref(back);
        buf_release(&b);
    }
    json_decref(j);
    return 0;
}
