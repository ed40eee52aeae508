/* tests/fuzz/csv.c -- libFuzzer: whole CSV imports (contacts or events, chosen by the
 * first byte) into one store, through the real two-thread pipeline. Any input must end
 * in a report or a clean error naming the file and line, never a crash or a leak. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "ingest/ingest.h"

static struct store *st;
static struct config cfg;
static char path[256];

static void setup(void)
{
    struct store_opts o = {.busy_timeout_ms = 1000, .migrate = 1};
    struct err e = {0};
    char dir[] = "/tmp/engage-fuzz-csv-XXXXXX";

    if (mkdtemp(dir) == NULL || store_open(&st, dir, &o, &e) || contracts_seed(st, NULL, &e))
        abort();
    config_defaults(&cfg, dir);
    cfg.import_batch_rows = 3; /* many batches: exercise the hand-offs */
    snprintf(path, sizeof path, "%s/in.csv", dir);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct import_opts o = {.path = path};
    struct import_report rep;
    struct ingest in;
    struct err e = {0};
    FILE *f;
    int rc;

    if (st == NULL)
        setup();
    if (size == 0)
        return 0;
    o.kind = data[0] & 1 ? IMPORT_EVENTS : IMPORT_CONTACTS;
    o.batch_rows = 1 + data[0] % 4;
    /* The smallest caps now and then, so that inputs this small reach the cut cells */
    cfg.max_value_bytes = data[0] & 8 ? 256 : 1L << 20;
    cfg.max_row_bytes = data[0] & 16 ? 1024 : 4L << 20;
    f = fopen(path, "wb");
    if (f == NULL)
        abort();
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    ingest_init(&in, st, &cfg);
    rc = import_csv(&in, &o, &rep, &e);
    if (rc && (e.msg[0] == '\0' || strstr(e.msg, "in.csv") == NULL))
        abort(); /* an error must say where */
    if (rc == 0 && rep.stats.read != rep.stats.inserted + rep.stats.updated + rep.stats.duplicates +
                                         rep.stats.rejected)
        abort(); /* every row is accounted for */
    import_report_release(&rep);
    ingest_release(&in);
    return 0;
}
