/* segment/casefold.c -- Unicode simple case folding, for `contains`.
 *
 * The table is generated at build time from Debian's CaseFolding.txt
 * (tools/casefold.c): statuses C and S, one code point to one code point, so a
 * folded string stays valid UTF-8 and a byte search in folded text finds whole
 * characters. */
#include <string.h>

#include "segment_int.h"

extern const uint32_t casefold_table[][2];
extern const int casefold_table_len;

uint32_t casefold_cp(uint32_t cp)
{
    int lo = 0, hi = casefold_table_len - 1;

    if (cp < 0x80)
        return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (casefold_table[mid][0] == cp)
            return casefold_table[mid][1];
        if (casefold_table[mid][0] < cp)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return cp;
}

/* Decodes one UTF-8 sequence at s (n bytes left); 0 if invalid. */
static int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    int len, i;
    uint32_t c;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2, c = s[0] & 0x1F;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3, c = s[0] & 0x0F;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4, c = s[0] & 0x07;
    else
        return 0;
    if ((size_t)len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10FFFF)) ||
        (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

static void utf8_encode(uint32_t c, struct buf *out)
{
    char b[4];

    if (c < 0x80) {
        buf_addc(out, (char)c);
        return;
    }
    if (c < 0x800) {
        b[0] = (char)(0xC0 | (c >> 6));
        b[1] = (char)(0x80 | (c & 0x3F));
        buf_add(out, b, 2);
    } else if (c < 0x10000) {
        b[0] = (char)(0xE0 | (c >> 12));
        b[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        b[2] = (char)(0x80 | (c & 0x3F));
        buf_add(out, b, 3);
    } else {
        b[0] = (char)(0xF0 | (c >> 18));
        b[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((c >> 6) & 0x3F));
        b[3] = (char)(0x80 | (c & 0x3F));
        buf_add(out, b, 4);
    }
}

void casefold_utf8(const char *s, size_t n, struct buf *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    uint32_t cp;
    int len;

    while (i < n) {
        if (p[i] < 0x80) {
            buf_addc(out, (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]));
            i++;
            continue;
        }
        len = utf8_decode(p + i, n - i, &cp);
        if (len == 0) {
            buf_addc(out, (char)p[i]); /* not UTF-8: kept as it is */
            i++;
            continue;
        }
        utf8_encode(casefold_cp(cp), out);
        i += (size_t)len;
    }
}

int contains_folded(const char *s, size_t n, const char *needle, size_t needle_len,
                    struct buf *scratch)
{
    if (needle_len == 0)
        return 1;
    buf_reset(scratch);
    casefold_utf8(s, n, scratch);
    if (scratch->len < needle_len)
        return 0;
    return memmem(scratch->p, scratch->len, needle, needle_len) != NULL;
}
