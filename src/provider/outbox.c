/* provider/outbox.c -- type outbox: each message written whole as DIR/<message id>.eml.
 *
 * DESIGN: a reader of the directory (a person, make demo, a test) must never see half a
 * message, and a crash must never leave one under the final name. So the bytes go to
 * a temporary name in the same directory (".<id>.eml.XXXXXX", hidden, the same file
 * system so rename is atomic), are fsync'd, and only then renamed over the final name;
 * a failed write removes the temporary file. The directory itself is not fsync'd
 * after each rename: a process crash (kill -9) loses nothing, a power cut may lose the
 * last renames, which the ledger then shows as sent without a file -- the outbox is for
 * demos and tests, and a second fsync per message would halve its speed. The directory
 * (default DATA/outbox/) is created 0700 at the first open: messages hold personal data.
 * Resending the same ledger row replaces its file (same name): the outbox never holds
 * duplicates. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "provider_int.h"

struct outbox {
    char dir[1024];
};

struct outbox_conn {
    struct provider_conn base; /* first */
    const struct outbox *ob;
};

static int outbox_init(struct provider *p, const struct config_named *c, const struct config *cfg,
                       struct err *e)
{
    struct outbox *ob = xcalloc(1, sizeof *ob);
    int n;

    if (c->dir[0])
        n = snprintf(ob->dir, sizeof ob->dir, "%s", c->dir);
    else
        n = snprintf(ob->dir, sizeof ob->dir, "%s/outbox", cfg->data_dir);
    if (n <= 0 || (size_t)n >= sizeof ob->dir) {
        free(ob);
        return ERR(e, E_INVAL, "[provider:%s] dir: longer than %zu characters", c->name,
                   sizeof ob->dir - 1);
    }
    p->impl = ob;
    p->needs_public_url = 0; /* nobody clicks a file on this machine's disk from elsewhere */
    return 0;
}

static void outbox_fini(struct provider *p)
{
    free(p->impl);
    p->impl = NULL;
}

static int outbox_open(const struct provider *p, size_t connections, struct provider_conn **out,
                       struct err *e)
{
    const struct outbox *ob = p->impl;
    struct outbox_conn *c;
    int rc = dir_ensure(ob->dir, e);

    (void)connections; /* a file each: no connection to share */
    if (rc)
        return rc;
    c = xcalloc(1, sizeof *c);
    c->base.p = p;
    c->ob = ob;
    *out = &c->base;
    return 0;
}

/* A message id names a file: it may not climb out of the directory or hide in it. */
static int id_is_file_name(const char *id)
{
    size_t n = strlen(id);

    return n > 0 && n < 200 && id[0] != '.' &&
           strspn(id, "0123456789abcdefghijklmnopqrstuvwxyz"
                      "ABCDEFGHIJKLMNOPQRSTUVWXYZ._-") == n;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void outbox_send(struct provider_conn *conn, const struct provider_message *m,
                        struct provider_result *r)
{
    const struct outbox_conn *c = (const struct outbox_conn *)conn;
    char tmp[1300], path[1300];
    int fd, saved, rc;

    if (!id_is_file_name(m->message_id)) {
        r->outcome = PROVIDER_FAILED;
        snprintf(r->text, sizeof r->text, "outbox: message id \"%.64s\" is not a file name",
                 m->message_id);
        return;
    }
    snprintf(path, sizeof path, "%s/%s.eml", c->ob->dir, m->message_id);
    snprintf(tmp, sizeof tmp, "%s/.%s.eml.XXXXXX", c->ob->dir, m->message_id);
    fd = mkstemp(tmp);
    if (fd < 0)
        goto fail;
    rc = write_all(fd, m->data, m->len);
    if (rc == 0)
        rc = fsync(fd);
    saved = errno;
    if (close(fd) && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc) {
        unlink(tmp);
        errno = saved;
        goto fail;
    }
    if (rename(tmp, path)) {
        saved = errno;
        unlink(tmp);
        errno = saved;
        goto fail;
    }
    r->outcome = PROVIDER_SENT;
    snprintf(r->queue_id, sizeof r->queue_id, "%s.eml", m->message_id);
    snprintf(r->text, sizeof r->text, "written to the outbox");
    return;
fail:
    /* A full or read-only disk may pass: try again later. */
    r->outcome = PROVIDER_RETRY;
    snprintf(r->text, sizeof r->text, "outbox: cannot write '%.200s': %s", path, strerror(errno));
}

static void outbox_close(struct provider_conn *conn)
{
    free(conn);
}

const struct provider_ops provider_outbox_ops = {
    .type = "outbox",
    .init = outbox_init,
    .fini = outbox_fini,
    .open = outbox_open,
    .send = outbox_send,
    .close = outbox_close,
};
