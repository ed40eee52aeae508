/* tests/fuzz/text.c -- libFuzzer: ISO-8601 parsing, UTF-8 handling, JSON string
 * escaping and inference on arbitrary bytes. Checks round trips, not just crashes. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "contract/contract.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *s = (const char *)data;
    struct buf b;
    int64_t ms, back;
    char iso[32];
    json_t *j;

    if (time_parse_iso(s, size, &ms) == 0) {
        time_format_iso(ms, iso);
        if (time_parse_iso(iso, strlen(iso), &back) != 0 || back != ms)
            abort(); /* every accepted instant formats and parses back */
    }
    buf_init(&b);
    buf_add_json_str(&b, s, size);
    j = json_loadb(b.p, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (j == NULL)
        abort(); /* escaping always yields valid JSON */
    if (utf8_valid(s, size) && memchr(s, 0, size) == NULL &&
        (json_string_length(j) != size || memcmp(json_string_value(j), s, size) != 0))
        abort(); /* and valid UTF-8 comes back byte for byte */
    json_decref(j);
    buf_reset(&b);
    value_infer_text_json(s, size, &b);
    j = json_loadb(b.p, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (j == NULL)
        abort();
    json_decref(j);
    buf_release(&b);
    {
        char *copy = malloc(size + 1);
        memcpy(copy, s, size);
        copy[size] = '\0';
        utf8_sanitize(copy);
        if (!utf8_valid(copy, strlen(copy)))
            abort();
        free(copy);
    }
    return 0;
}
