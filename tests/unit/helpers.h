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

#include <ftw.h>

static inline int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* A fresh directory under /tmp, removed when the test process exits unless
 * ENGAGE_KEEP_TMP is set; caller frees the string. Each Criterion test is its own
 * process, so this cleans up after every test, passed or failed. */
static char *test_tmp_made[64];
static int test_tmp_count;
static inline void test_tmp_cleanup(void)
{
    int i;

    for (i = 0; i < test_tmp_count; i++) {
        if (getenv("ENGAGE_KEEP_TMP") == NULL)
            nftw(test_tmp_made[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(test_tmp_made[i]);
    }
    test_tmp_count = 0;
}

static inline char *test_tmpdir(void)
{
    char *p = strdup("/tmp/engage-unit-XXXXXX");
    cr_assert_not_null(mkdtemp(p));
    if (test_tmp_count == 0)
        atexit(test_tmp_cleanup);
    if (test_tmp_count < 64)
        test_tmp_made[test_tmp_count++] = strdup(p);
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
