/* core/core.h -- errors, allocation, buffers, logging, time: what every module uses.
 *
 * DESIGN: functions return 0 or a negative E_* code and record the cause once in
 * a struct err (first error wins, like curl's failf); callers pass rc up
 * unchanged. Allocation never returns NULL (xmalloc aborts on OOM). Time is
 * int64 milliseconds since the Unix epoch, UTC, everywhere. */
#ifndef ENGAGE_CORE_H
#define ENGAGE_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* meson compiles every file with -include banned.h; this covers a file compiled alone. */
#include "banned.h"

/* ---- errors ---------------------------------------------------------------- */

enum {
    E_OK = 0,
    E_NOMEM = -1,
    E_IO = -2,
    E_INVAL = -3,
    E_NOTFOUND = -4,
    E_CONFLICT = -5,
    E_BUSY = -6,
    E_TOOBIG = -7,
    E_CORRUPT = -8,
    E_INTERNAL = -9,
    E_AUTH = -10, /* no or bad credentials */
    E_FORBIDDEN = -11,
};

struct err {
    int code;
    const char *file; /* source location that detected it */
    int line;
    char field[96]; /* optional: the input field at fault (JSON pointer, column) */
    char msg[256];
};

/* Record code and message unless an error is already recorded; returns code. */
int err_set(struct err *e, int code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define ERR(e, code, ...) err_set((e), (code), __FILE__, __LINE__, __VA_ARGS__)
/* Same, naming the field at fault. */
int err_set_field(struct err *e, int code, const char *file, int line, const char *field,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
#define ERRF(e, code, field, ...)                                                                  \
    err_set_field((e), (code), __FILE__, __LINE__, (field), __VA_ARGS__)
void err_clear(struct err *e);
const char *err_code_name(int code);

/* Bugs, not errors: abort with file:line; on in every build. */
#define ASSERT(x)                                                                                  \
    do {                                                                                           \
        if (!(x))                                                                                  \
            core_assert_fail(#x, __FILE__, __LINE__);                                              \
    } while (0)
void core_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

/* ---- memory ---------------------------------------------------------------- */

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A bump allocator: many small copies made and dropped together (a batch of rows).
 * arena_reset() keeps the chunks for the next round. */
struct arena_chunk;
struct arena {
    struct arena_chunk *first, *cur;
    size_t used;
};
/* An instant (ms) as an ISO-8601 JSON string, or JSON null for 0 (never): what API
 * answers give for times. */
struct json_t;
struct json_t *json_iso_or_null(int64_t ms);

void arena_init(struct arena *a);
void *arena_alloc(struct arena *a, size_t n); /* 8-byte aligned */
char *arena_strndup(struct arena *a, const char *s, size_t n);
void arena_reset(struct arena *a);
void arena_release(struct arena *a);
size_t arena_size(const struct arena *a); /* bytes of chunks held */

/* Growable NUL-terminated byte buffer. buf_take() hands the bytes to the caller. */
struct buf {
    char *p;
    size_t len, cap;
};
void buf_init(struct buf *b);
void buf_release(struct buf *b);
void buf_reset(struct buf *b);
void buf_add(struct buf *b, const void *p, size_t n);
void buf_adds(struct buf *b, const char *s);
void buf_addc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
char *buf_take(struct buf *b);
/* 1 if s[0..n) is valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
int utf8_valid(const char *s, size_t n);
/* Writes code point cp (at most U+10FFFF) as UTF-8 into out; returns its length. */
size_t utf8_put(char out[4], unsigned cp);
/* Length of the longest prefix of s[0..n) that is at most max bytes and does not cut
 * a UTF-8 sequence: for truncating user text in messages. */
size_t utf8_prefix(const char *s, size_t n, size_t max);
/* Makes a NUL-terminated string valid UTF-8 in place: invalid bytes (and a sequence cut
 * by truncation) become '?'. For user text that reaches messages, logs and JSON. */
void utf8_sanitize(char *s);
void utf8_sanitize_n(char *s, size_t n); /* the same for s[0..n), NULs and all */
/* A progress line on stderr, redrawn in place: label, the share done (done of total,
 * when total > 0) with an ETA, rows and rows/s; final ends the line. */
void progress_line(const char *label, int64_t done, int64_t total, int64_t rows, double elapsed_s,
                   int final);
/* Appends s as a JSON string literal (quotes included); invalid UTF-8 becomes U+FFFD. */
void buf_add_json_str(struct buf *b, const char *s, size_t n);

/* Non-owning slice. */
struct str {
    const char *p;
    size_t len;
};

/* ---- time -------------------------------------------------------------------- */

/* Milliseconds since the epoch, UTC. The clock may be pinned at an instant (--now /
 * ENGAGE_NOW for a command: every reading is exactly that instant) or shifted to start
 * at one and run on from there (the same for engage serve, whose schedules need time
 * to pass). A reader that needs one "now" for a whole computation reads it once. */
int64_t clock_now_ms(void);
/* Pins the clock: clock_now_ms() returns at_ms from now on. */
void clock_pin(int64_t at_ms);
/* Milliseconds on a monotonic clock (for durations and deadlines, not instants). */
double clock_mono_ms(void);
/* Sets the clock so that "now" is at_ms at this moment. Thread-safe to read. */
void clock_start_at(int64_t at_ms);
/* Parses ISO-8601: YYYY-MM-DD, YYYY-MM-DD[T ]HH:MM[:SS[.frac]][Z|+HH:MM|-HH:MM|+HHMM].
 * A time without zone is UTC. Returns 0 or E_INVAL. */
int time_parse_iso(const char *s, size_t n, int64_t *out_ms);
/* Durations in milliseconds, int64_t like every instant: write these, not 86400000
 * (scripts/lint.sh refuses a day or an hour spelled as a literal outside this file). */
#define SEC_MS INT64_C(1000)
#define MIN_MS (60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)
#define TIME_MIN_MS (-62167219200000LL) /* 0000-01-01T00:00:00.000Z */
#define TIME_MAX_MS (253402300799999LL) /* 9999-12-31T23:59:59.999Z */
/* Formats as 2024-01-02T03:04:05.678Z into out (at least 32 bytes). */
void time_format_iso(int64_t ms, char out[32]);

/* ---- logging ----------------------------------------------------------------- */

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };
extern int log_level_current;
/* Writes one JSON line {"ts","level","component","msg",...} to stderr (or the log file). */
void log_write(enum log_level lvl, const char *component, const char *req_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define log_error(comp, ...) log_write(LOG_ERROR, comp, NULL, __VA_ARGS__)
#define log_warn(comp, ...)                                                                        \
    do {                                                                                           \
        if (log_level_current >= LOG_WARN)                                                         \
            log_write(LOG_WARN, comp, NULL, __VA_ARGS__);                                          \
    } while (0)
#define log_info(comp, ...)                                                                        \
    do {                                                                                           \
        if (log_level_current >= LOG_INFO)                                                         \
            log_write(LOG_INFO, comp, NULL, __VA_ARGS__);                                          \
    } while (0)
#define log_debug(comp, ...)                                                                       \
    do {                                                                                           \
        if (log_level_current >= LOG_DEBUG)                                                        \
            log_write(LOG_DEBUG, comp, NULL, __VA_ARGS__);                                         \
    } while (0)
int log_level_parse(const char *s, enum log_level *out);

/* ---- small helpers ------------------------------------------------------------- */

/* Makes a jansson error's text fit for a user: jansson names its own flags ("\u0000 is
 * not allowed without JSON_ALLOW_NUL"), which mean nothing outside this code. */
struct json_error_t;
void json_error_tidy(struct json_error_t *je);

/* Parses a whole string as a base-10 integer / finite double. 0 or E_INVAL. */
int parse_i64(const char *s, size_t n, int64_t *out);
int parse_double(const char *s, size_t n, double *out);
/* Reads a whole file (capped at max bytes). Caller owns *out. */
int file_read_all(const char *path, size_t max, char **out, size_t *out_len, struct err *e);
/* mkdir -p: the directories above made 0755, path itself 0700 (data directories hold
 * personal data). An existing one is left as it is. */
int dir_ensure(const char *path, struct err *e);
/* 64-bit FNV-1a, for hash tables (not for security). */
uint64_t hash64(const void *p, size_t n);

#endif
