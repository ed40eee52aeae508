/* tests/unit/guard.c -- the HTTP connection guard's address counting (http/guard.c):
 * addresses as the limits count them, and the per-address table against a plain array
 * on random adds and drops (the backward-shift removal is where such tables go wrong). */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "helpers.h"
#include "http/guard.h"
#include "seed.h"

static struct guard_addr addr(const char *text)
{
    struct sockaddr_storage ss;
    struct guard_addr a;

    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    else
        cr_assert_fail("bad address %s", text);
    guard_addr_of((struct sockaddr *)&ss, &a);
    return a;
}

UTEST(guard, an_ipv6_host_is_its_64_an_ipv4_address_itself)
{
    struct guard_addr a = addr("2001:db8:1:2::1"), b = addr("2001:db8:1:2:ffff::9"),
                      c = addr("2001:db8:1:3::1"), d = addr("10.0.0.1"), e = addr("10.0.0.2"),
                      f = addr("::ffff:10.0.0.1");

    cr_assert_eq(memcmp(&a, &b, sizeof a), 0, "one /64");
    cr_assert_neq(memcmp(&a, &c, sizeof a), 0, "another /64");
    cr_assert_neq(memcmp(&d, &e, sizeof d), 0, "IPv4 addresses apart");
    cr_assert_eq(memcmp(&d, &f, sizeof d), 0, "an IPv4-mapped IPv6 address is the IPv4 one");
}

/* Random adds and drops over addresses filling most of a small table (long probe runs), checked
 * against plain counts after every step. */
UTEST(guard, the_address_table_counts_as_a_plain_array_does)
{
    enum { NADDR = 56, STEPS = 200000 };
    struct guard_table t;
    struct guard_addr as[NADDR];
    int want[NADDR] = {0}, i, k, step;
    uint64_t r = test_seed(); /* seed.h: printed, ENGAGE_TEST_SEED repeats it */

    guard_table_init(&t, 30); /* 64 slots for up to 56 addresses: long probe runs */
    for (i = 0; i < NADDR; i++) {
        memset(&as[i], 0, sizeof as[i]);
        as[i].b[0] = (unsigned char)i;
        as[i].b[15] = (unsigned char)(i * 7);
    }
    for (step = 0; step < STEPS; step++) {
        struct guard_count *e;
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        k = (int)((r >> 33) % NADDR);
        if ((r >> 20) % 2 && want[k] < 5) {
            e = guard_table_find(&t, &as[k]);
            if (e->n == 0)
                e->a = as[k];
            e->n++;
            want[k]++;
        } else {
            guard_table_drop(&t, &as[k]);
            if (want[k])
                want[k]--;
        }
        if (step % 97 == 0 || step == STEPS - 1) {
            int used = 0;
            for (i = 0; i < NADDR; i++)
                cr_assert_eq(guard_table_find(&t, &as[i])->n, want[i], "step %d, address %d", step,
                             i);
            for (i = 0; i <= (int)t.mask; i++)
                used += t.slots[i].n > 0;
            for (k = 0, i = 0; i < NADDR; i++)
                k += want[i] > 0;
            cr_assert_eq(used, k, "step %d: no slot left behind", step);
        }
    }
    guard_table_release(&t);
}
