/* demo/gen.c -- seeded CSV generator for demos and benchmarks.
 *
 * DESIGN: a splitmix64 stream drives every choice, so output depends only on the
 * options. Events are spread over contacts with a skew (a few very active
 * contacts, a long tail), and over the last 400 days with more recent activity,
 * which is what segment benchmarks need to be realistic. */
#include "demo.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t *s, uint64_t n)
{
    return next(s) % n;
}

static double unit(uint64_t *s)
{
    return (double)(next(s) >> 11) / 9007199254740992.0;
}

static const char *cities[] = {"Mumbai",  "Delhi",     "Bengaluru", "Pune",
                               "Chennai", "Hyderabad", "Kolkata",   "Ahmedabad",
                               "Jaipur",  "Lucknow",   "Kochi",     "São Paulo"};
static const char *plans[] = {"free", "basic", "pro", "enterprise"};
static const char *first[] = {"Aarav", "Priya", "Rohan",  "Ananya", "Vikram", "Isha",
                              "Kabir", "Meera", "Arjun",  "Zoë",    "Sanjay", "Divya",
                              "Rahul", "Neha",  "Aditya", "Kavya"};
static const char *last[] = {"Sharma", "Patel", "Iyer",  "Reddy",    "Gupta",  "Nair",
                             "Singh",  "Das",   "Mehta", "Kulkarni", "Müller", "Fernandes"};
static const char *currencies[] = {"INR", "INR", "INR", "USD", "EUR"};
static const char *wa_status[] = {"sent", "delivered", "read", "failed"};

static void iso(int64_t ms, char out[32])
{
    time_format_iso(ms - ms % 1000, out);
    /* drop the milliseconds: CRMs write whole seconds */
    memcpy(out + 19, "Z", 2);
}

static FILE *open_out(const char *dir, const char *name, char **path, struct err *e)
{
    FILE *f;

    *path = xasprintf("%s/%s", dir, name);
    f = fopen(*path, "w");
    if (f == NULL)
        ERR(e, E_IO, "cannot create '%s': %s", *path, strerror(errno));
    else
        setvbuf(f, NULL, _IOFBF, 1 << 20);
    return f;
}

int demo_generate(const struct gen_opts *o, struct err *e)
{
    uint64_t s = o->seed ? o->seed : 42;
    const int64_t day = DAY_MS;
    int64_t i, nevents = o->events ? o->events : o->contacts * 12;
    char *cpath = NULL, *epath = NULL;
    FILE *cf = NULL, *ef = NULL;
    int rc;

    rc = dir_ensure(o->out_dir, e);
    if (rc)
        return rc;
    cf = open_out(o->out_dir, "contacts.csv", &cpath, e);
    if (cf)
        ef = open_out(o->out_dir, "events.csv", &epath, e);
    if (cf == NULL || ef == NULL) {
        rc = e->code;
        goto out;
    }
    fprintf(cf, "external_id,email,first_name,last_name,city,plan,signup_at,ltv,email_consent\n");
    for (i = 1; i <= o->contacts; i++) {
        char ts[32];
        const char *fn = first[below(&s, 16)], *ln = last[below(&s, 12)];
        const char *consent = below(&s, 50) == 0 ? "unsubscribed" : "";
        int64_t signup = o->now_ms - (int64_t)below(&s, 1500) * day - (int64_t)below(&s, day);
        double ltv = (double)below(&s, 2000000) / 100.0;
        iso(signup, ts);
        fprintf(cf, "c%07lld,user%lld@example.com,%s,%s,%s,%s,%s,%.2f,%s\n", (long long)i,
                (long long)i, fn, ln, cities[below(&s, 12)], plans[below(&s, 4)], ts, ltv, consent);
    }
    if (o->bad_rows) {
        fprintf(cf, "c9000001,not-an-email,Bad,Row,Mumbai,pro,2024-01-01,10,\n");
        fprintf(cf, "c9000002,bad2@example.com,Bad,Row,Mumbai,pro,last tuesday,10,\n");
    }
    fprintf(ef, "external_id,event,occurred_at,event_id,order_id,amount,currency,created_at,"
                "call_id,agent_id,duration_sec,message_id,status,campaign_id,opened_at\n");
    for (i = 1; i <= nevents; i++) {
        /* Skew: squaring a uniform draw favours low contact numbers. */
        double u = unit(&s);
        int64_t c = 1 + (int64_t)(u * u * (double)o->contacts);
        double r = unit(&s);
        int64_t at =
            o->now_ms - (int64_t)(r * r * 400.0 * (double)day) - (int64_t)below(&s, HOUR_MS);
        char ts[32];
        int kind = (int)below(&s, 12);
        if (c > o->contacts)
            c = o->contacts;
        iso(at, ts);
        if (kind < 3) {
            fprintf(ef, "c%07lld,order_created,,ev%llu-%lld,o%lld,%.2f,%s,%s,,,,,,,\n",
                    (long long)c, (unsigned long long)o->seed, (long long)i, (long long)i,
                    (double)below(&s, 500000) / 100.0, currencies[below(&s, 5)], ts);
        } else if (kind < 5) {
            fprintf(ef, "c%07lld,call_logged,,ev%llu-%lld,,,,%s,call%lld,agent%02d,%d,,,,\n",
                    (long long)c, (unsigned long long)o->seed, (long long)i, ts, (long long)i,
                    (int)below(&s, 40), (int)below(&s, 1800));
        } else if (kind < 9) {
            fprintf(ef, "c%07lld,whatsapp_sent,,ev%llu-%lld,,,,%s,,,,wa%lld,%s,,\n", (long long)c,
                    (unsigned long long)o->seed, (long long)i, ts, (long long)i,
                    wa_status[below(&s, 4)]);
        } else {
            fprintf(ef, "c%07lld,email_opened,,ev%llu-%lld,,,,,,,,m%lld,,camp%02d,%s\n",
                    (long long)c, (unsigned long long)o->seed, (long long)i, (long long)i,
                    (int)below(&s, 20), ts);
        }
    }
    if (o->bad_rows) {
        fprintf(ef, "c0000001,order_created,,bad-1,o-bad1,-5.00,INR,2024-01-01T00:00:00Z,,,,,,,\n");
        fprintf(ef,
                "c0000002,order_created,,bad-2,o-bad2,10.00,rupees,2024-01-01T00:00:00Z,,,,,,,\n");
    }
    if (fflush(cf) || fflush(ef) || ferror(cf) || ferror(ef))
        rc = ERR(e, E_IO, "cannot write to '%s': %s", o->out_dir, strerror(errno));
out:
    if (cf && fclose(cf) && rc == 0)
        rc = ERR(e, E_IO, "cannot write '%s'", cpath);
    if (ef && fclose(ef) && rc == 0)
        rc = ERR(e, E_IO, "cannot write '%s'", epath);
    free(cpath);
    free(epath);
    return rc;
}
