/* tests/fuzz/props.c -- libFuzzer: the stored-properties reader (store/props.c) on
 * arbitrary text. Never reads past the end; where jansson reads the text as an object
 * with distinct keys, both find the same members with the same values. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const char *const names[] = {"a", "b", "", "é", "a b", "\"", "x\ny"};
    const int n = (int)(sizeof names / sizeof *names);
    struct store_prop_value pv[sizeof names / sizeof *names];
    char *text = malloc(size + 1);
    struct buf scratch;
    json_t *o;
    int i;

    memcpy(text, data, size);
    text[size] = '\0'; /* stored texts end in NUL; the reader must stop there */
    buf_init(&scratch);
    store_props_find(text, names, n, pv, &scratch);
    o = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    for (i = 0; json_is_object(o) && i < n; i++) {
        json_t *x = json_object_get(o, names[i]);
        if (json_is_string(x)) {
            if (pv[i].kind != STORE_PROP_TEXT || pv[i].len != json_string_length(x) ||
                memcmp(pv[i].text, json_string_value(x), pv[i].len) != 0)
                abort();
        } else if (json_is_number(x)) {
            if (pv[i].kind != STORE_PROP_NUMBER || pv[i].num != json_number_value(x))
                abort();
        } else if (json_is_boolean(x)) {
            if (pv[i].kind != (json_is_true(x) ? STORE_PROP_TRUE : STORE_PROP_FALSE))
                abort();
        } else if (pv[i].kind != STORE_PROP_OTHER) {
            abort();
        }
    }
    json_decref(o);
    buf_release(&scratch);
    free(text);
    return 0;
}
