/* demo/demo.h -- the seeded generator behind `engage demo` and `engage bench gen`.
 *
 * Writes contacts.csv and events.csv shaped like the seed's CRM: contacts with
 * city, plan, signup date and LTV; orders, calls, WhatsApp messages and email
 * opens. The same seed and sizes give byte-identical files. */
#ifndef ENGAGE_DEMO_H
#define ENGAGE_DEMO_H

#include "../core/core.h"

struct gen_opts {
    const char *out_dir;
    int64_t contacts;
    int64_t events; /* total events; 0 = about 12 per contact */
    uint64_t seed;
    int64_t now_ms; /* events fall in the 400 days before this instant */
    int bad_rows;   /* write a few invalid rows, to show the dead-letter store */
};

int demo_generate(const struct gen_opts *o, struct err *e);

#endif
