/* tests/unit/helpers.h -- shared by the Criterion unit tests.
 *
 * UTEST wraps Test() and ends each test with a LeakSanitizer check: Criterion
 * workers exit with _exit(), so LSan's own exit-time check never runs (see
 * dependencies.md, section 8). A leak fails the test. */
#ifndef ENGAGE_TEST_HELPERS_H
#define ENGAGE_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define CHECK_LEAKS()                                                                              \
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked (report above)")
#else
#define CHECK_LEAKS() ((void)0)
#endif

#define UTEST(suite, name, ...)                                                                    \
    static void suite##_##name##_body(void);                                                       \
    Test(suite, name, ##__VA_ARGS__)                                                               \
    {                                                                                              \
        suite##_##name##_body();                                                                   \
        CHECK_LEAKS();                                                                             \
    }                                                                                              \
    static void suite##_##name##_body(void)

/* A fresh directory under /tmp; caller frees the string (the directory stays for
 * post-mortems; /tmp is cleaned by the OS). */
static inline char *test_tmpdir(void)
{
    char *p = strdup("/tmp/engage-unit-XXXXXX");
    cr_assert_not_null(mkdtemp(p));
    return p;
}

static inline void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

#endif
