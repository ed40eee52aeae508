/* tests/unit/tsan_criterion.c -- linked into the unit tests of a ThreadSanitizer build only.
 *
 * DESIGN: Criterion's runner shares its test data with the test processes through an
 * arena (BoxFort's) that it maps at a random address between 0x200000000000 and
 * 0x600000000000, drawn with rand_r(), and it gives up after ten tries at pages that are
 * already mapped. ThreadSanitizer reserves nearly all of that range for its shadow and
 * metadata, so the runner aborts ("Could not initialize inheritable arena") or crashes
 * (Criterion issue #274). Defining rand_r here, in the executable, takes the place of
 * libc's for libcriterion: its draws land in 0x567000000000-0x568000000000, application
 * memory for ThreadSanitizer on x86-64 and above where the kernel puts PIE binaries.
 * Neither engage nor the tests call rand_r. */
#include <stdlib.h>

int rand_r(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return 0x367000 + (int)((*seed >> 16) & 0xfff); /* 0x200000000000 + n * 16 MiB */
}
