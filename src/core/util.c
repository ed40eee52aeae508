/* core/util.c -- time, number parsing, files, hashing. */
#include "core.h"

#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Offset added to the real clock; set once at start (--now), read by every thread. */
static _Atomic int64_t clock_offset_ms;
static _Atomic int64_t clock_pinned_ms = INT64_MIN; /* INT64_MIN: not pinned */

static int64_t real_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_now_ms(void)
{
    int64_t pinned = atomic_load(&clock_pinned_ms);

    return pinned != INT64_MIN ? pinned : real_now_ms() + atomic_load(&clock_offset_ms);
}

void clock_pin(int64_t at_ms)
{
    atomic_store(&clock_pinned_ms, at_ms);
}

double clock_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void clock_start_at(int64_t at_ms)
{
    atomic_store(&clock_offset_ms, at_ms - real_now_ms());
}

/* Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    *y = (int64_t)yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y += *m <= 2;
}

static int digits(const char *s, size_t n, size_t at, size_t count, int *out)
{
    int v = 0;
    size_t i;

    if (at + count > n)
        return -1;
    for (i = 0; i < count; i++) {
        char c = s[at + i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return 0;
}

static int month_days(int y, int m)
{
    static const int md[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 ? 28 + leap : md[m - 1];
}

int time_parse_iso(const char *s, size_t n, int64_t *out_ms)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0, tz = 0;
    size_t i = 10;

    if (n < 10 || digits(s, n, 0, 4, &y) || s[4] != '-' || digits(s, n, 5, 2, &mo) || s[7] != '-' ||
        digits(s, n, 8, 2, &d))
        return E_INVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo))
        return E_INVAL;
    if (i < n) {
        if (s[i] != 'T' && s[i] != 't' && s[i] != ' ')
            return E_INVAL;
        if (digits(s, n, i + 1, 2, &h) || i + 3 >= n || s[i + 3] != ':' ||
            digits(s, n, i + 4, 2, &mi))
            return E_INVAL;
        i += 6;
        if (i < n && s[i] == ':') {
            if (digits(s, n, i + 1, 2, &sec))
                return E_INVAL;
            i += 3;
            if (i < n && (s[i] == '.' || s[i] == ',')) {
                int scale = 100, nd = 0;
                i++;
                while (i < n && s[i] >= '0' && s[i] <= '9') {
                    ms += (s[i] - '0') * scale;
                    scale /= 10;
                    i++;
                    nd++;
                }
                if (nd == 0)
                    return E_INVAL;
            }
        }
        if (h > 23 || mi > 59 || sec > 60)
            return E_INVAL;
        if (sec == 60)
            sec = 59; /* leap second: clamp */
        if (i < n) {
            if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
                i++;
            } else if (s[i] == '+' || s[i] == '-') {
                int th, tm;
                int sign = s[i] == '-' ? -1 : 1;
                if (digits(s, n, i + 1, 2, &th))
                    return E_INVAL;
                if (i + 3 == n) {
                    tm = 0;
                    i += 3;
                } else if (i + 6 == n && s[i + 3] == ':' && !digits(s, n, i + 4, 2, &tm)) {
                    i += 6;
                } else if (i + 5 == n && !digits(s, n, i + 3, 2, &tm)) {
                    i += 5;
                } else {
                    return E_INVAL;
                }
                if (th > 23 || tm > 59)
                    return E_INVAL;
                tz = sign * (th * 60 + tm);
            } else {
                return E_INVAL;
            }
        }
        if (i != n)
            return E_INVAL;
    }
    *out_ms = ((days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec) -
               (int64_t)tz * 60) *
                  1000 +
              ms;
    /* A zone offset can push year 0000 or 9999 out of range: keep instants that format
     * and parse back (0000-01-01 .. 9999-12-31). */
    if (*out_ms < TIME_MIN_MS || *out_ms > TIME_MAX_MS)
        return E_INVAL;
    return 0;
}

void time_format_iso(int64_t ms, char out[32])
{
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int64_t msr = ms - secs * 1000;
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t rem = secs - days * 86400;
    int64_t y;
    unsigned m, d;

    char tmp[96];

    civil_from_days(days, &y, &m, &d);
    if (y >= 0 && y <= 9999) {
        /* The common case without printf: YYYY-MM-DDTHH:MM:SS.mmmZ */
        int v[] = {(int)y,          (int)m,  (int)d, (int)(rem / 3600), (int)(rem % 3600 / 60),
                   (int)(rem % 60), (int)msr};
        static const int width[] = {4, 2, 2, 2, 2, 2, 3};
        static const char sep[] = "--T::.Z";
        char *q = out;
        int f, k;
        for (f = 0; f < 7; f++) {
            for (k = width[f] - 1; k >= 0; k--) {
                q[k] = (char)('0' + v[f] % 10);
                v[f] /= 10;
            }
            q += width[f];
            *q++ = sep[f];
        }
        *q = '\0';
        return;
    }
    snprintf(tmp, sizeof tmp, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ", (long long)y, m, d,
             (int)(rem / 3600), (int)(rem % 3600 / 60), (int)(rem % 60), (int)msr);
    memcpy(out, tmp, 31);
    out[31] = '\0';
}

int parse_i64(const char *s, size_t n, int64_t *out)
{
    char tmp[32];
    char *end;
    long long v;

    if (n == 0 || n >= sizeof tmp || memchr(s, '\0', n))
        return E_INVAL;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (!(tmp[0] == '-' || (tmp[0] >= '0' && tmp[0] <= '9')))
        return E_INVAL;
    errno = 0;
    v = strtoll(tmp, &end, 10);
    if (errno || *end != '\0')
        return E_INVAL;
    *out = v;
    return 0;
}

int parse_double(const char *s, size_t n, double *out)
{
    char tmp[64];
    char *end;
    double v;
    size_t i = 0;

    if (n == 0 || n >= sizeof tmp || memchr(s, '\0', n))
        return E_INVAL;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    /* JSON number grammar only: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
     * (no hex, inf, nan, '+', spaces, "2." or ".5"): the text is stored as written. */
    if (tmp[i] == '-')
        i++;
    if (tmp[i] == '0') {
        i++;
    } else if (tmp[i] >= '1' && tmp[i] <= '9') {
        while (tmp[i] >= '0' && tmp[i] <= '9')
            i++;
    } else {
        return E_INVAL;
    }
    if (tmp[i] == '.') {
        i++;
        if (!(tmp[i] >= '0' && tmp[i] <= '9'))
            return E_INVAL;
        while (tmp[i] >= '0' && tmp[i] <= '9')
            i++;
    }
    if (tmp[i] == 'e' || tmp[i] == 'E') {
        i++;
        if (tmp[i] == '+' || tmp[i] == '-')
            i++;
        if (!(tmp[i] >= '0' && tmp[i] <= '9'))
            return E_INVAL;
        while (tmp[i] >= '0' && tmp[i] <= '9')
            i++;
    }
    if (tmp[i] != '\0')
        return E_INVAL;
    errno = 0;
    v = strtod(tmp, &end);
    if (errno == ERANGE || *end != '\0' || !isfinite(v))
        return E_INVAL;
    *out = v;
    return 0;
}

int file_read_all(const char *path, size_t max, char **out, size_t *out_len, struct err *e)
{
    struct buf b;
    char chunk[65536];
    FILE *f;
    size_t n;

    f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL)
        return ERR(e, errno == ENOENT ? E_NOTFOUND : E_IO, "cannot open '%s': %s", path,
                   strerror(errno));
    buf_init(&b);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > max) {
            buf_release(&b);
            if (f != stdin)
                fclose(f);
            return ERR(e, E_TOOBIG, "'%s' is larger than %zu bytes", path, max);
        }
        buf_add(&b, chunk, n);
    }
    if (ferror(f)) {
        buf_release(&b);
        if (f != stdin)
            fclose(f);
        return ERR(e, E_IO, "cannot read '%s'", path);
    }
    if (f != stdin)
        fclose(f);
    *out_len = b.len;
    *out = buf_take(&b);
    return 0;
}

int dir_ensure(const char *path, struct err *e)
{
    char *p = xstrdup(path);
    char *s;
    int rc = 0;

    for (s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            rc = ERR(e, E_IO, "cannot create directory '%s': %s", p, strerror(errno));
            goto out;
        }
        *s = '/';
    }
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
        rc = ERR(e, E_IO, "cannot create directory '%s': %s", p, strerror(errno));
out:
    free(p);
    return rc;
}

#define ARENA_CHUNK (1u << 20)

struct arena_chunk {
    struct arena_chunk *next;
    size_t cap;
    max_align_t data[];
};

void arena_init(struct arena *a)
{
    a->first = a->cur = NULL;
    a->used = 0;
}

void *arena_alloc(struct arena *a, size_t n)
{
    struct arena_chunk *c;

    n = (n + 7) & ~(size_t)7;
    if (a->cur == NULL || a->used + n > a->cur->cap) {
        c = a->cur ? a->cur->next : a->first;
        if (c == NULL || c->cap < n) {
            size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
            struct arena_chunk *nc = xmalloc(sizeof *nc + cap);
            nc->cap = cap;
            nc->next = c;
            if (a->cur)
                a->cur->next = nc;
            else
                a->first = nc;
            c = nc;
        }
        a->cur = c;
        a->used = 0;
    }
    a->used += n;
    return (char *)a->cur->data + a->used - n;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);

    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void arena_reset(struct arena *a)
{
    a->cur = NULL;
    a->used = 0;
}

json_t *json_iso_or_null(int64_t ms)
{
    char iso[32];

    if (ms == 0)
        return json_null();
    time_format_iso(ms, iso);
    return json_string(iso);
}

void json_error_tidy(json_error_t *je)
{
    static const char flag[] = " without JSON_ALLOW_NUL";
    char *p = strstr(je->text, flag);

    if (p)
        memmove(p, p + sizeof flag - 1, strlen(p + sizeof flag - 1) + 1);
}

size_t arena_size(const struct arena *a)
{
    const struct arena_chunk *c;
    size_t n = 0;

    for (c = a->first; c; c = c->next)
        n += c->cap;
    return n;
}

void arena_release(struct arena *a)
{
    struct arena_chunk *c = a->first, *next;

    for (; c; c = next) {
        next = c->next;
        free(c);
    }
    arena_init(a);
}

uint64_t hash64(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

void progress_line(const char *label, int64_t done, int64_t total, int64_t rows, double elapsed_s,
                   int final)
{
    double rate = elapsed_s > 0 ? (double)rows / elapsed_s : 0;

    if (total > 0 && !final) {
        double frac = done >= total ? 1 : (double)done / (double)total;
        double eta = frac > 0 ? elapsed_s * (1 - frac) / frac : 0;
        fprintf(stderr, "\r  %s  %5.1f%%  %lld rows  %.0f rows/s  ETA %dm%02ds   ", label,
                frac * 100, (long long)rows, rate, (int)eta / 60, (int)eta % 60);
    } else {
        fprintf(stderr, "\r  %s  %lld rows  %.0f rows/s%s", label, (long long)rows, rate,
                final ? "                        \n" : "   ");
    }
}
