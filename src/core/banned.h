/* core/banned.h -- C library functions this code does not call (as git's banned.h).
 *
 * DESIGN: meson passes `-include src/core/banned.h` to every C file it compiles (engage,
 * its tests, fuzz targets and bench tools), so a call is a compile error in any
 * translation unit, whatever it includes. The headers that declare the functions are
 * included first, so their declarations (and inline definitions) are read before the
 * macros exist; a header included later is skipped by its include guard. A banned call
 * expands to an undeclared name, `sorry_strcpy_is_banned`, which
 * -Werror=implicit-function-declaration turns into an error naming the call.
 *
 * Why each one, and what to use instead:
 *   strcpy strcat strncpy sprintf vsprintf gets  no bound, or a bound that silently
 *       truncates without NUL (strncpy): snprintf, buf_printf/buf_add, memcpy with a
 *       checked length, xstrdup
 *   strtok          hidden state, not thread-safe: strtok_r, or scan with strchr
 *   atoi atol atoll no error and undefined on overflow: parse_i64 (core.h), or strtol
 *       with errno and end checks
 *   gmtime localtime ctime asctime  a static buffer shared by all threads: gmtime_r,
 *       localtime_r, time_format_iso (core.h)
 * scripts/lint.sh's "banned" step finds the same calls by name, in every file. */
#ifndef ENGAGE_BANNED_H
#define ENGAGE_BANNED_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BANNED(func) sorry_##func##_is_banned

#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) BANNED(strncpy)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef gets
#define gets(x) BANNED(gets)
#undef strtok
#define strtok(x, y) BANNED(strtok)
#undef atoi
#define atoi(x) BANNED(atoi)
#undef atol
#define atol(x) BANNED(atol)
#undef atoll
#define atoll(x) BANNED(atoll)
#undef gmtime
#define gmtime(x) BANNED(gmtime)
#undef localtime
#define localtime(x) BANNED(localtime)
#undef ctime
#define ctime(x) BANNED(ctime)
#undef asctime
#define asctime(x) BANNED(asctime)

#endif
