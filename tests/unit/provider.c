/* tests/unit/provider.c -- providers (src/provider/).
 *
 * The classification of SMTP replies as a table; the id headers of every ESP, exactly;
 * the built-in outbox; configuration errors naming the section and key; the outbox's
 * whole-file writes; and the smtp type against a real Postfix smtp-sink started here
 * on a free loopback port: several messages over one connection (the sink counts one
 * session and keeps every message, read back from its dump files), the sink made to
 * refuse RCPT with a 4xx and with a 5.1.1, to reject the final dot, to answer 421, to
 * refuse the greeting and to hang up mid-transaction, and nothing listening at all. */
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "helpers.h"
#include "provider/provider.h"

/* ---- classification ---------------------------------------------------------------- */

UTEST(provider, classify_table)
{
    static const struct {
        int code;
        const char *text;
        enum provider_outcome outcome;
        const char *status;
        int hard;
        const char *queue_id;
    } t[] = {
        {250, "250 2.0.0 Ok", PROVIDER_SENT, "2.0.0", 0, ""},
        {250, "250 2.0.0 Ok: queued as ABC123", PROVIDER_SENT, "2.0.0", 0, "ABC123"},
        {250, "Ok: queued as 4XyZ9", PROVIDER_SENT, "", 0, "4XyZ9"},
        {250, "250 Ok 0100018c5f1d2e3a-00000000-0000-0000-0000-000000000000-000000", PROVIDER_SENT,
         "", 0, "0100018c5f1d2e3a-00000000-0000-0000-0000-000000000000-000000"},
        {421, "421 4.4.2 Service shutting down", PROVIDER_RETRY, "4.4.2", 0, ""},
        {450, "450 4.2.2 Mailbox full", PROVIDER_RETRY, "4.2.2", 0, ""},
        {451, "451 4.3.0 Error: queue file write error", PROVIDER_RETRY, "4.3.0", 0, ""},
        {452, "452 Too many recipients", PROVIDER_RETRY, "", 0, ""},
        {454, "454 4.7.0 TLS not available due to temporary reason", PROVIDER_RETRY, "4.7.0", 0,
         ""},
        {550, "550 5.1.1 <x@example.org>: Recipient address rejected: User unknown",
         PROVIDER_FAILED, "5.1.1", 1, ""},
        {550, "550 5.7.1 Message rejected as spam", PROVIDER_FAILED, "5.7.1", 0, ""},
        {552, "552 5.2.2 Mailbox full", PROVIDER_FAILED, "5.2.2", 0, ""},
        {553, "553 5.1.3 Bad recipient address syntax", PROVIDER_FAILED, "5.1.3", 1, ""},
        {554, "554 Transaction failed", PROVIDER_FAILED, "", 0, ""},
        {0, "", PROVIDER_RETRY, "", 0, ""},
        {0, NULL, PROVIDER_RETRY, "", 0, ""},
        {354, "354 End data", PROVIDER_RETRY, "", 0, ""},
        {550, "550 5.1.10 Recipient not found", PROVIDER_FAILED, "5.1.10", 1, ""},
        {550, "550 5.1 not a status", PROVIDER_FAILED, "", 0, ""},
        /* our sender refused, as Postfix says it at RCPT TO: retry, no bounce */
        {553, "553 5.1.8 <news@example.com>: Sender address rejected: Domain not found",
         PROVIDER_RETRY, "5.1.8", 0, ""},
        {550, "550 5.1.7 Bad sender's mailbox address syntax", PROVIDER_RETRY, "5.1.7", 0, ""},
        {550, "550 5.1.0 Address rejected", PROVIDER_FAILED, "5.1.0", 0, ""},
        {550, "550 5.1.2 Bad destination system address", PROVIDER_FAILED, "5.1.2", 1, ""},
        {550, "550 5.1.6 Destination mailbox has moved", PROVIDER_FAILED, "5.1.6", 1, ""},
    };

    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        struct provider_result r;
        memset(&r, 0x5a, sizeof r);
        provider_classify_smtp(t[i].code, t[i].text, &r);
        cr_assert_eq(r.outcome, t[i].outcome, "row %zu (%d)", i, t[i].code);
        cr_assert_eq(r.code, t[i].code, "row %zu", i);
        cr_assert_str_eq(r.status, t[i].status, "row %zu", i);
        cr_assert_eq(r.hard_bounce, t[i].hard, "row %zu", i);
        cr_assert_str_eq(r.queue_id, t[i].queue_id, "row %zu", i);
        cr_assert_str_eq(r.text, t[i].text ? t[i].text : "", "row %zu", i);
    }
}

/* ---- the id headers --------------------------------------------------------------- */

static void collect(void *ctx, const char *name, const char *value)
{
    buf_printf(ctx, "%s: %s\n", name, value);
}

UTEST(provider, id_headers_per_esp)
{
    static const struct {
        enum provider_esp esp;
        const char *want;
    } t[] = {
        {ESP_PLAIN, "X-Engage-Message-Id: 12.345\n"},
        {ESP_SENDGRID, "X-SMTPAPI: {\"unique_args\":{\"engage_message_id\":\"12.345\"}}\n"
                       "X-Engage-Message-Id: 12.345\n"},
        {ESP_MAILGUN, "X-Mailgun-Variables: {\"engage_message_id\": \"12.345\"}\n"
                      "X-Engage-Message-Id: 12.345\n"},
        {ESP_POSTMARK, "X-PM-Metadata-engage_message_id: 12.345\nX-Engage-Message-Id: 12.345\n"},
        {ESP_SES, "X-SES-MESSAGE-TAGS: engage_message_id=12_345\nX-Engage-Message-Id: 12.345\n"},
    };

    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        struct provider p = {.esp = t[i].esp};
        struct buf b;
        enum provider_esp back;
        buf_init(&b);
        provider_id_headers(&p, "12.345", collect, &b);
        cr_assert_str_eq(b.p, t[i].want);
        cr_assert_eq(provider_esp_parse(provider_esp_name(t[i].esp), &back), 0);
        cr_assert_eq(back, t[i].esp);
        buf_release(&b);
    }
    {
        enum provider_esp e;
        cr_assert_eq(provider_esp_parse("sendgird", &e), E_INVAL);
        cr_assert_eq(provider_esp_parse("", &e), E_INVAL);
    }
}

/* ---- configuration ------------------------------------------------------------------ */

static int load(struct config *c, const char *dir, const char *text, struct err *e)
{
    char *path = xasprintf("%s/engage.conf", dir);
    int rc;

    config_defaults(c, dir);
    write_file(path, text);
    rc = config_load_file(c, path, 1, e);
    free(path);
    return rc;
}

UTEST(provider, default_outbox_without_a_section)
{
    char *dir = test_tmpdir();
    struct config cfg;
    struct provider_set *s = NULL;
    const struct provider *p;
    struct err e = {0};

    config_defaults(&cfg, dir);
    cr_assert_eq(provider_set_new(&s, &cfg, &e), 0, "%s", e.msg);
    cr_assert_eq(provider_count(s), 1);
    p = provider_find(s, NULL);
    cr_assert_not_null(p);
    cr_assert_eq(p, provider_find(s, ""));
    cr_assert_eq(p, provider_find(s, "outbox"));
    cr_assert_eq(p, provider_at(s, 0));
    cr_assert_null(provider_at(s, 1));
    cr_assert_null(provider_find(s, "smtp"));
    cr_assert_str_eq(p->name, "outbox");
    cr_assert_str_eq(p->ops->type, "outbox");
    cr_assert_eq(p->needs_public_url, 0);
    cr_assert_eq(p->esp, ESP_PLAIN);
    provider_set_free(s);
    config_release(&cfg);
    free(dir);
}

UTEST(provider, sections_with_their_keys)
{
    char *dir = test_tmpdir();
    struct config cfg;
    struct provider_set *s = NULL;
    struct err e = {0};
    struct buf dump;
    const struct provider *p;

    setenv("ENGAGE_TEST_SMTP_PW", "hunter2", 1);
    cr_assert_eq(load(&cfg, dir,
                      "[provider:relay]\ntype = smtp\nurl = smtps://mail.example.com:465\n"
                      "username = u\npassword_env = ENGAGE_TEST_SMTP_PW\nesp = sendgrid\n"
                      "starttls = required\ntls_verify = false\nconnect_timeout_s = 5\n"
                      "timeout_s = 600\nrate_per_second = 100\nmax_connections = 2\n"
                      "from = News <news@example.com>\n"
                      "[provider:files]\ntype = outbox\ndir = /tmp/x-outbox\n",
                      &e),
                 0, "%s", e.msg);
    cr_assert_eq(cfg.nproviders, 2);
    cr_assert_str_eq(cfg.providers[0].esp, "sendgrid");
    cr_assert_eq(cfg.providers[0].starttls_required, 1);
    cr_assert_eq(cfg.providers[0].tls_verify, 0);
    cr_assert_eq(cfg.providers[0].connect_timeout_s, 5);
    cr_assert_eq(cfg.providers[0].timeout_s, 600);
    cr_assert_eq(cfg.providers[1].tls_verify, 1, "default");
    cr_assert_eq(cfg.providers[1].timeout_s, 120, "default");
    cr_assert_eq(cfg.providers[1].connect_timeout_s, 10, "default");
    cr_assert_str_eq(cfg.providers[1].esp, "plain", "default");
    cr_assert_str_eq(cfg.providers[1].dir, "/tmp/x-outbox");
    cr_assert_eq(provider_set_new(&s, &cfg, &e), 0, "%s", e.msg);
    cr_assert_eq(provider_count(s), 2);
    p = provider_find(s, NULL);
    cr_assert_str_eq(p->name, "relay", "the first section is the default");
    cr_assert_eq(p->esp, ESP_SENDGRID);
    cr_assert_eq(p->needs_public_url, 1);
    cr_assert_eq(p->rate_per_second, 100);
    cr_assert_eq(p->max_connections, 2);
    cr_assert_str_eq(p->from, "News <news@example.com>");
    cr_assert_eq(provider_find(s, "files")->needs_public_url, 0);
    buf_init(&dump);
    config_dump(&cfg, &dump);
    cr_assert_not_null(strstr(dump.p, "[provider:relay]\ntype = smtp\n"));
    cr_assert_not_null(strstr(dump.p, "esp = sendgrid\nstarttls = required\ntls_verify = false\n"));
    cr_assert_not_null(strstr(dump.p, "timeout_s = 600\n"));
    cr_assert_not_null(strstr(dump.p, "; secret from env:ENGAGE_TEST_SMTP_PW\n"));
    cr_assert_null(strstr(dump.p, "hunter2"), "the password is never shown");
    cr_assert_not_null(strstr(dump.p, "dir = /tmp/x-outbox\n"));
    buf_release(&dump);
    provider_set_free(s);
    config_release(&cfg);
    free(dir);
}

/* The configuration loads, and provider_set_new refuses it with want in the message. */
static void set_fails(const char *text, const char *want)
{
    char *dir = test_tmpdir();
    struct config cfg;
    struct provider_set *s = (struct provider_set *)&cfg; /* must become NULL */
    struct err e = {0};

    cr_assert_eq(load(&cfg, dir, text, &e), 0, "%s", e.msg);
    cr_assert_eq(provider_set_new(&s, &cfg, &e), E_INVAL, "accepted: %s", text);
    cr_assert_null(s);
    cr_assert_not_null(strstr(e.msg, want), "\"%s\" lacks \"%s\"", e.msg, want);
    config_release(&cfg);
    free(dir);
}

/* The configuration file itself is refused, with want in the message. */
static void load_fails(const char *text, const char *want)
{
    char *dir = test_tmpdir();
    struct config cfg;
    struct err e = {0};

    cr_assert_neq(load(&cfg, dir, text, &e), 0, "accepted: %s", text);
    cr_assert_not_null(strstr(e.msg, want), "\"%s\" lacks \"%s\"", e.msg, want);
    config_release(&cfg);
    free(dir);
}

UTEST(provider, configuration_errors_name_the_section_and_key)
{
    set_fails("[provider:p]\ntype = carrier-pigeon\n",
              "[provider:p] type: expected smtp or outbox");
    set_fails("[provider:p]\nurl = smtp://x\n", "[provider:p] type: missing");
    set_fails("[provider:p]\ntype = smtp\nurl = http://mail.example.com\n", "[provider:p] url");
    set_fails("[provider:p]\ntype = smtp\n", "[provider:p] url");
    set_fails("[provider:p]\ntype = smtp\nurl = smtp://\n", "[provider:p] url: no host");
    set_fails("[provider:p]\ntype = smtp\nurl = smtp://h\nesp = sendgird\n",
              "[provider:p] esp: expected plain, sendgrid, mailgun, postmark or ses, got "
              "\"sendgird\"");
    set_fails("[provider:p]\ntype = smtp\nurl = smtp://h\nusername = u\n",
              "[provider:p] password_env");
    set_fails("[provider:a]\ntype = outbox\n[provider:b]\ntype = nope\n", "[provider:b] type");
    load_fails("[provider:p]\nstarttls = maybe\n",
               "[provider:p] starttls: expected auto or required");
    load_fails("[provider:p]\ntls_verify = no\n",
               "[provider:p] tls_verify: expected true or false");
    load_fails("[provider:p]\ntimeout_s = 0\n", "[provider:p] timeout_s: expected an integer");
    load_fails("[provider:p]\nconnect_timeout_s = x\n", "[provider:p] connect_timeout_s");
    load_fails("[provider:p]\npassword = hunter2\n", "[provider:p] password: secrets are not");
    load_fails("[webhook:w]\nesp = sendgrid\n", "[webhook:w] esp: unknown key");
    load_fails("[webhook:w]\ndir = /tmp\n", "[webhook:w] dir: unknown key");
}

/* ---- the outbox --------------------------------------------------------------------- */

static const char msg_text[] = "From: news@example.com\r\nTo: jane@example.org\r\nSubject: hi\r\n"
                               "\r\n.a line that starts with a dot\r\nbody\r\n";

static struct provider_message message(const char *id)
{
    struct provider_message m = {.mail_from = "news@example.com",
                                 .rcpt_to = "jane@example.org",
                                 .data = msg_text,
                                 .len = sizeof msg_text - 1,
                                 .message_id = id};
    return m;
}

/* Names in dir, sorted, one a line. */
static void list_dir(const char *dir, struct buf *out)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);

    cr_assert_geq(n, 0, "cannot read %s", dir);
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") && strcmp(names[i]->d_name, ".."))
            buf_printf(out, "%s\n", names[i]->d_name);
        free(names[i]);
    }
    free(names);
}

UTEST(provider, outbox_writes_whole_files_and_no_temporary_one)
{
    char *dir = test_tmpdir(), *path, *data = NULL;
    struct config cfg;
    struct provider_set *s = NULL;
    struct provider_conn *c = NULL;
    struct provider_result r;
    struct provider_message m = message("3.4");
    struct err e = {0};
    struct buf names;
    struct stat st;
    size_t n;

    config_defaults(&cfg, dir);
    cr_assert_eq(provider_set_new(&s, &cfg, &e), 0, "%s", e.msg);
    path = xasprintf("%s/outbox", dir);
    cr_assert_neq(stat(path, &st), 0, "made at the first open, not before");
    cr_assert_eq(provider_open(provider_find(s, NULL), 1, &c, &e), 0, "%s", e.msg);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700);
    provider_send(c, &m, &r);
    cr_assert_eq(r.outcome, PROVIDER_SENT, "%s", r.text);
    cr_assert_str_eq(r.queue_id, "3.4.eml");
    m = message("3.5");
    provider_send(c, &m, &r);
    cr_assert_eq(r.outcome, PROVIDER_SENT, "%s", r.text);
    provider_send(c, &m, &r); /* the same row again: the same file, replaced */
    cr_assert_eq(r.outcome, PROVIDER_SENT, "%s", r.text);
    m = message("../escape");
    provider_send(c, &m, &r);
    cr_assert_eq(r.outcome, PROVIDER_FAILED);
    m = message(".hidden");
    provider_send(c, &m, &r);
    cr_assert_eq(r.outcome, PROVIDER_FAILED);
    provider_close(c);
    buf_init(&names);
    list_dir(path, &names);
    cr_assert_str_eq(names.p, "3.4.eml\n3.5.eml\n", "exactly the messages, nothing else");
    free(path);
    path = xasprintf("%s/outbox/3.4.eml", dir);
    cr_assert_eq(file_read_all(path, 1 << 20, &data, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n, sizeof msg_text - 1);
    cr_assert_eq(memcmp(data, msg_text, n), 0);
    free(data);
    free(path);
    buf_release(&names);
    provider_set_free(s);
    config_release(&cfg);
    free(dir);
}

UTEST(provider, outbox_that_cannot_write_says_retry)
{
    char *dir = test_tmpdir(), *text, *sub;
    struct config cfg;
    struct provider_set *s = NULL;
    struct provider_conn *c = NULL;
    struct provider_result r;
    struct provider_message m = message("1.1");
    struct err e = {0};

    sub = xasprintf("%s/box", dir);
    text = xasprintf("[provider:f]\ntype = outbox\ndir = %s\n", sub);
    cr_assert_eq(load(&cfg, dir, text, &e), 0, "%s", e.msg);
    cr_assert_eq(provider_set_new(&s, &cfg, &e), 0, "%s", e.msg);
    cr_assert_eq(provider_open(provider_find(s, "f"), 1, &c, &e), 0, "%s", e.msg);
    cr_assert_eq(rmdir(sub), 0); /* gone under it */
    provider_send(c, &m, &r);
    cr_assert_eq(r.outcome, PROVIDER_RETRY);
    cr_assert_not_null(strstr(r.text, "cannot write"), "%s", r.text);
    provider_close(c);
    provider_set_free(s);
    config_release(&cfg);
    free(text);
    free(sub);
    free(dir);
}

/* ---- smtp against Postfix's smtp-sink --------------------------------------------------- */

struct sink {
    pid_t pid;
    int port;
    char *dir, *out;
};

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* 1 once something listens on 127.0.0.1:port (read from /proc: a probe connection
 * would count as a session of the sink). */
static int listening(int port)
{
    char line[512], want[32];
    FILE *f = fopen("/proc/net/tcp", "r");
    int found = 0;

    cr_assert_not_null(f);
    snprintf(want, sizeof want, "0100007F:%04X 00000000:0000 0A", port);
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, want) != NULL;
    fclose(f);
    return found;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts smtp-sink with the options opts (NULL-terminated) on a free port; it dumps
 * every message into its own directory and prints its counters into a file. */
static void sink_start_on(struct sink *s, const char *const *opts, int port)
{
    const char *argv[32];
    char listen[64], *dump;
    int n = 0, i;

    s->dir = test_tmpdir();
    s->out = xasprintf("%s/counters", s->dir);
    dump = xasprintf("%s/m.", s->dir);
    s->port = port;
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    argv[n++] = "/usr/sbin/smtp-sink";
    if (geteuid() == 0) {
        argv[n++] = "-u";
        argv[n++] = "nobody";
        chmod(s->dir, 0777); /* the dumps are written as nobody */
    }
    argv[n++] = "-c";
    argv[n++] = "-d";
    argv[n++] = dump;
    for (i = 0; opts && opts[i]; i++)
        argv[n++] = opts[i];
    argv[n++] = listen;
    argv[n++] = "100";
    argv[n] = NULL;
    cr_assert_eq(access(argv[0], X_OK), 0, "smtp-sink missing: scripts/install-deps.sh --test");
    s->pid = fork();
    cr_assert_geq(s->pid, 0);
    if (s->pid == 0) {
        int fd = open(s->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (i = 0; i < 500 && !listening(s->port); i++)
        pause_ms(20);
    cr_assert(listening(s->port), "smtp-sink did not start");
    free(dump);
}

static void sink_start(struct sink *s, const char *const *opts)
{
    sink_start_on(s, opts, free_port());
}

static void sink_stop(struct sink *s)
{
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    free(s->out);
    free(s->dir);
}

/* The sink's last printed value of counter name ("sess", "quit", "mesg"), or -1. */
static long sink_counter(const struct sink *s, const char *name)
{
    char *data = NULL, *p, *last = NULL, want[16];
    size_t n;
    long v = -1;
    struct err e = {0};

    if (file_read_all(s->out, 1 << 20, &data, &n, &e))
        return -1;
    snprintf(want, sizeof want, "%s=", name);
    for (p = strstr(data, want); p; p = strstr(p + 1, want))
        last = p;
    if (last)
        v = strtol(last + strlen(want), NULL, 10);
    free(data);
    return v;
}

/* Waits (a condition, not a timing assertion) until counter name reaches at least v. */
static void sink_wait(const struct sink *s, const char *name, long v)
{
    for (int i = 0; i < 500 && sink_counter(s, name) < v; i++)
        pause_ms(20);
}

/* The configuration of the smtp provider under test (a test is its own process). */
static struct config smtp_cfg;

/* A provider set with one smtp provider to port (and extra keys). */
static struct provider_set *smtp_set(int port, const char *extra)
{
    char *dir = test_tmpdir(), *text;
    struct provider_set *s = NULL;
    struct err e = {0};

    text = xasprintf("[provider:sink]\ntype = smtp\nurl = smtp://127.0.0.1:%d\n"
                     "connect_timeout_s = 5\ntimeout_s = 30\n%s",
                     port, extra ? extra : "");
    cr_assert_eq(load(&smtp_cfg, dir, text, &e), 0, "%s", e.msg);
    cr_assert_eq(provider_set_new(&s, &smtp_cfg, &e), 0, "%s", e.msg);
    free(text);
    free(dir);
    return s;
}

static void set_done(struct provider_set *s)
{
    provider_set_free(s);
    config_release(&smtp_cfg);
}

/* Sends one message through a fresh connection of s; the result in r. */
static void send_one(struct provider_set *s, struct provider_result *r)
{
    struct provider_conn *c = NULL;
    struct provider_message m = message("1.1");
    struct err e = {0};

    cr_assert_eq(provider_open(provider_find(s, NULL), 1, &c, &e), 0, "%s", e.msg);
    provider_send(c, &m, r);
    provider_close(c);
}

/* What a sink started with opts answers to one message from a provider with the extra
 * keys: the result in r; the sink's session and message counts, once its session
 * ended, in *sess and *mesg. */
static void sink_send_one(const char *const *opts, const char *extra, struct provider_result *r,
                          long *sess, long *mesg)
{
    struct sink k;
    struct provider_set *s;

    sink_start(&k, opts);
    s = smtp_set(k.port, extra);
    send_one(s, r);
    set_done(s);
    sink_wait(&k, "sess", 1);
    *sess = sink_counter(&k, "sess");
    *mesg = sink_counter(&k, "mesg");
    sink_stop(&k);
}

UTEST(provider, smtp_several_messages_over_one_connection)
{
    struct sink k;
    struct provider_set *s;
    struct provider_conn *c = NULL;
    struct provider_result r;
    struct err e = {0};
    struct buf names;
    char ids[5][8];
    int i, files = 0;

    sink_start(&k, NULL);
    s = smtp_set(k.port, NULL);
    cr_assert_eq(provider_open(provider_find(s, NULL), 1, &c, &e), 0, "%s", e.msg);
    for (i = 0; i < 5; i++) {
        struct provider_message m;
        snprintf(ids[i], sizeof ids[i], "9.%d", i);
        m = message(ids[i]);
        provider_send(c, &m, &r);
        cr_assert_eq(r.outcome, PROVIDER_SENT, "message %d: %d %s", i, r.code, r.text);
        cr_assert_eq(r.code, 250);
        cr_assert_str_eq(r.status, "2.0.0");
        cr_assert_str_eq(r.text, "250 2.0.0 Ok");
    }
    provider_close(c); /* QUIT */
    sink_wait(&k, "quit", 1);
    cr_assert_eq(sink_counter(&k, "mesg"), 5);
    cr_assert_eq(sink_counter(&k, "sess"), 1, "five messages, one SMTP session");
    cr_assert_eq(sink_counter(&k, "quit"), 1);
    /* what the sink kept: five whole messages, the dot line unstuffed again */
    buf_init(&names);
    list_dir(k.dir, &names);
    for (char *p = strstr(names.p, "m."); p; p = strstr(p + 1, "\nm.")) {
        char *path = xasprintf("%s/%.*s", k.dir, (int)strcspn(p[0] == '\n' ? p + 1 : p, "\n"),
                               p[0] == '\n' ? p + 1 : p),
             *data = NULL;
        size_t n;
        cr_assert_eq(file_read_all(path, 1 << 20, &data, &n, &e), 0, "%s", e.msg);
        cr_assert_not_null(strstr(data, "X-Rcpt-Args: <jane@example.org>"), "%s", data);
        cr_assert_not_null(strstr(data, "Subject: hi\n\n.a line that starts with a dot\nbody\n"),
                           "%s", data);
        free(data);
        free(path);
        files++;
    }
    cr_assert_eq(files, 5);
    buf_release(&names);
    set_done(s);
    sink_stop(&k);
}

/* A batch is spread over the connection's links, and the next batch reuses them; a
 * message whose envelope cannot go into SMTP fails alone. */
UTEST(provider, smtp_batches_share_their_connections)
{
    struct sink k;
    struct provider_set *s;
    struct provider_conn *c = NULL;
    struct provider_message m[4];
    struct provider_result r[4];
    struct err e = {0};
    char ids[4][8];
    int round, i;

    sink_start(&k, NULL);
    s = smtp_set(k.port, NULL);
    cr_assert_eq(provider_batch_max(provider_find(s, NULL), 4), 4 * 16, "16 a connection");
    cr_assert_eq(provider_batch_max(provider_find(s, NULL), 1000), 32 * 16, "32 connections");
    cr_assert_eq(provider_open(provider_find(s, NULL), 4, &c, &e), 0, "%s", e.msg);
    for (round = 0; round < 2; round++) {
        for (i = 0; i < 4; i++) {
            snprintf(ids[i], sizeof ids[i], "7.%d", round * 4 + i);
            m[i] = message(ids[i]);
        }
        provider_send_batch(c, m, 4, r);
        for (i = 0; i < 4; i++) {
            cr_assert_eq(r[i].outcome, PROVIDER_SENT, "round %d message %d: %d %s", round, i,
                         r[i].code, r[i].text);
            cr_assert_str_eq(r[i].text, "250 2.0.0 Ok");
        }
    }
    sink_wait(&k, "mesg", 8);
    cr_assert_eq(sink_counter(&k, "mesg"), 8);
    /* a bad envelope in the middle of a batch: that one fails, the others go */
    m[1].rcpt_to = "two words@example.org";
    provider_send_batch(c, m, 3, r);
    cr_assert_eq(r[0].outcome, PROVIDER_SENT, "%s", r[0].text);
    cr_assert_eq(r[1].outcome, PROVIDER_FAILED);
    cr_assert_not_null(strstr(r[1].text, "envelope"), "%s", r[1].text);
    cr_assert_eq(r[2].outcome, PROVIDER_SENT, "%s", r[2].text);
    provider_close(c);
    sink_wait(&k, "quit", 4);
    cr_assert_eq(sink_counter(&k, "mesg"), 10);
    cr_assert_eq(sink_counter(&k, "sess"), 4, "two batches of four: four sessions, reused");
    cr_assert_eq(sink_counter(&k, "quit"), 4);
    set_done(s);
    sink_stop(&k);
}

/* A batch of m messages (ids "ROUND.i") over c; every one must be sent. */
static void send_all(struct provider_conn *c, int round, int m)
{
    struct provider_message msgs[16];
    struct provider_result r[16];
    char ids[16][16];
    int i;

    for (i = 0; i < m; i++) {
        snprintf(ids[i], sizeof ids[i], "%d.%d", round, i);
        msgs[i] = message(ids[i]);
    }
    provider_send_batch(c, msgs, (size_t)m, r);
    for (i = 0; i < m; i++) {
        cr_assert_eq(r[i].outcome, PROVIDER_SENT, "round %d message %d: %d %s", round, i, r[i].code,
                     r[i].text);
        cr_assert_str_eq(r[i].text, "250 2.0.0 Ok");
    }
}

/* Closes c (QUIT on each connection), checks the sink's message and session counts, and
 * stops the sink and the set. */
static void close_and_count(struct provider_conn *c, struct provider_set *s, struct sink *k,
                            long mesg, long sess, const char *why)
{
    provider_close(c);
    sink_wait(k, "quit", sess);
    cr_assert_eq(sink_counter(k, "mesg"), mesg, "%s", why);
    cr_assert_eq(sink_counter(k, "sess"), sess, "%s", why);
    set_done(s);
    sink_stop(k);
}

/* A server without PIPELINING (smtp-sink -p) is spoken to one command at a time, and
 * several messages still share each connection. */
UTEST(provider, smtp_without_pipelining_one_command_at_a_time)
{
    static const char *const opts[] = {"-p", NULL};
    struct sink k;
    struct provider_set *s;
    struct provider_conn *c = NULL;
    struct err e = {0};

    sink_start(&k, opts);
    s = smtp_set(k.port, NULL);
    cr_assert_eq(provider_open(provider_find(s, NULL), 2, &c, &e), 0, "%s", e.msg);
    send_all(c, 1, 12);
    close_and_count(c, s, &k, 12, 2, "twelve messages on two connections");
}

/* A connection the server closed while it sat idle between batches (here: the relay
 * restarted) is noticed before use and opened again: no message of the next batch pays
 * a retry for it. */
UTEST(provider, smtp_idle_connection_closed_by_the_server_is_reopened)
{
    struct sink k;
    struct provider_set *s;
    struct provider_conn *c = NULL;
    struct err e = {0};
    int port;

    sink_start(&k, NULL);
    port = k.port;
    s = smtp_set(port, NULL);
    cr_assert_eq(provider_open(provider_find(s, NULL), 2, &c, &e), 0, "%s", e.msg);
    send_all(c, 1, 6);
    sink_wait(&k, "mesg", 6);
    sink_stop(&k); /* closes both connections */
    sink_start_on(&k, NULL, port);
    send_all(c, 2, 6);
    close_and_count(c, s, &k, 6, 2, "the two connections opened again");
}

/* One message to a sink made to refuse or hang up: every such answer is a retry (the
 * message may go through later), with the sink's reply when it gave one. */
UTEST(provider, smtp_refusals_and_hang_ups_are_retry)
{
    static const struct {
        const char *why, *opts[6], *extra;
        int code;          /* -1: any 5xx */
        const char *reply; /* r.text: exactly this, or for code 0 its start */
        long mesg;         /* messages the sink took, -1: not counted */
    } t[] = {
        {"4xx at RCPT", {"-r", "RCPT"}, NULL, 450, "450 4.3.0 Error: command failed", 0},
        {"421 at RCPT", {"-Q", "RCPT"}, NULL, 421, NULL, 0},
        {"5xx greeting: the relay refused us, not the message",
         {"-f", "CONNECT"},
         NULL,
         -1,
         NULL,
         0},
        /* smtp-sink cannot complete AUTH; refusing it shows the password is offered (AUTH
         * is tried only with one) and that a refusal before MAIL fails no message */
        {"AUTH refused",
         {"-f", "AUTH", "-B", "535 5.7.8 Authentication failed"},
         "username = engage\npassword_env = ENGAGE_TEST_SMTP_PW\n",
         535,
         "535 5.7.8 Authentication failed",
         0},
        {"STARTTLS required, the sink has none", {NULL}, "starttls = required\n", 0, "curl: ", 0},
        {"5.1.8 at RCPT: our sender refused where Postfix says it, no bounce",
         {"-f", "RCPT", "-B", "553 5.1.8 <news@example.com>: Sender address rejected"},
         NULL,
         553,
         "553 5.1.8 <news@example.com>: Sender address rejected",
         0},
        {"hang-up after RCPT",
         {"-q", "RCPT"},
         NULL,
         0,
         "connection lost awaiting the reply to RCPT TO: ",
         0},
        {"hang-up after DATA",
         {"-q", "DATA"},
         NULL,
         0,
         "connection lost awaiting the reply to DATA: ",
         0},
        {"hang-up after the final dot (it may have been taken)",
         {"-q", "."},
         NULL,
         0,
         "connection lost awaiting the reply to the end of the message: ",
         -1},
    };

    setenv("ENGAGE_TEST_SMTP_PW", "hunter2", 1);
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        struct provider_result r;
        long sess, mesg;
        sink_send_one(t[i].opts, t[i].extra, &r, &sess, &mesg);
        cr_assert_eq(r.outcome, PROVIDER_RETRY, "%s: %d %s", t[i].why, r.code, r.text);
        cr_assert_eq(r.hard_bounce, 0);
        if (t[i].code == -1)
            cr_assert_eq(r.code / 100, 5, "%s: %d", t[i].why, r.code);
        else
            cr_assert_eq(r.code, t[i].code, "%s: %d %s", t[i].why, r.code, r.text);
        if (t[i].reply && t[i].code)
            cr_assert_str_eq(r.text, t[i].reply, "%s", t[i].why);
        else if (t[i].reply)
            cr_assert_eq(strncmp(r.text, t[i].reply, strlen(t[i].reply)), 0, "%s: %s", t[i].why,
                         r.text);
        cr_assert_null(strstr(r.text, "hunter2"));
        cr_assert_eq(sess, 1, "%s", t[i].why);
        if (t[i].mesg >= 0)
            cr_assert_eq(mesg, t[i].mesg, "%s", t[i].why);
    }
}

UTEST(provider, smtp_5_1_1_at_rcpt_is_a_hard_bounce)
{
    static const char *const opts[] = {"-f", "RCPT", "-B", "550 5.1.1 User unknown", NULL};
    struct sink k;
    struct provider_set *s;
    struct provider_result r;

    struct provider_conn *c = NULL;
    struct provider_message m = message("2.1");
    struct err e = {0};

    sink_start(&k, opts);
    s = smtp_set(k.port, NULL);
    cr_assert_eq(provider_open(provider_find(s, NULL), 1, &c, &e), 0, "%s", e.msg);
    for (int i = 0; i < 2; i++) { /* the second is not spoilt by the first's open MAIL */
        provider_send(c, &m, &r);
        cr_assert_eq(r.outcome, PROVIDER_FAILED, "%d %s", r.code, r.text);
        cr_assert_eq(r.code, 550);
        cr_assert_str_eq(r.status, "5.1.1");
        cr_assert_eq(r.hard_bounce, 1);
        cr_assert_str_eq(r.text, "550 5.1.1 User unknown");
    }
    provider_close(c);
    sink_wait(&k, "quit", 1);
    /* a refused recipient does not cost the connection: RSET, and the next goes on it */
    cr_assert_eq(sink_counter(&k, "sess"), 1);
    cr_assert_eq(sink_counter(&k, "quit"), 1);
    cr_assert_eq(sink_counter(&k, "mesg"), 0);
    set_done(s);
    sink_stop(&k);
}

/* ---- a scripted SMTP server, for what smtp-sink cannot be made to do ---------------- */

/* A child process accepting on port; the k-th connection (from 0) is served by a child of
 * its own running serve(k, fd). */
struct scripted {
    pid_t pid;
    int port;
};

static void scripted_start(struct scripted *sc, void (*serve)(int k, int fd))
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    cr_assert_geq(ls, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    cr_assert_eq(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(ls, 16), 0);
    cr_assert_eq(getsockname(ls, (struct sockaddr *)&a, &len), 0);
    sc->port = ntohs(a.sin_port);
    sc->pid = fork();
    cr_assert_geq(sc->pid, 0);
    if (sc->pid == 0) {
        /* a failed assertion skips scripted_stop: die with the test, hold no pipe of it,
         * and leave no zombie behind */
        int null = open("/dev/null", O_RDWR);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(null, 1);
        dup2(null, 2);
        signal(SIGCHLD, SIG_IGN);
        for (int k = 0;; k++) {
            int fd = accept(ls, NULL, NULL);
            if (fd < 0)
                _exit(0);
            if (fork() == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(ls);
                serve(k, fd);
                _exit(0);
            }
            close(fd);
        }
    }
    close(ls);
}

static void scripted_stop(struct scripted *sc)
{
    kill(sc->pid, SIGKILL);
    waitpid(sc->pid, NULL, 0);
}

/* One line from fd (its CR LF cut), -1 at the end of the stream. */
static int rd_line(int fd, char *line, size_t cap)
{
    size_t n = 0;
    char ch;

    while (read(fd, &ch, 1) == 1) {
        if (ch == '\n') {
            if (n > 0 && line[n - 1] == '\r')
                n--;
            line[n] = '\0';
            return (int)n;
        }
        if (n + 1 < cap)
            line[n++] = ch;
    }
    return -1;
}

static void wr(int fd, const char *s)
{
    if (write(fd, s, strlen(s)) < 0)
        _exit(1);
}

/* A plain pipelining SMTP conversation on fd; reply(dot) answers the dot-th final dot
 * (from 0), and hang_up_at_mail > 0 closes the connection that long after a MAIL. */
static void converse(int fd, const char *(*reply)(int dot), long hang_up_at_mail_ms)
{
    char line[8192];
    int dot = 0;

    wr(fd, "220 scripted ESMTP\r\n");
    while (rd_line(fd, line, sizeof line) >= 0) {
        if (strncasecmp(line, "EHLO", 4) == 0) {
            wr(fd, "250-scripted\r\n250 PIPELINING\r\n");
        } else if (strncasecmp(line, "MAIL", 4) == 0 && hang_up_at_mail_ms > 0) {
            pause_ms(hang_up_at_mail_ms);
            return;
        } else if (strncasecmp(line, "MAIL", 4) == 0 || strncasecmp(line, "RCPT", 4) == 0 ||
                   strncasecmp(line, "RSET", 4) == 0) {
            wr(fd, "250 2.1.0 Ok\r\n");
        } else if (strncasecmp(line, "DATA", 4) == 0) {
            wr(fd, "354 go\r\n");
            while (rd_line(fd, line, sizeof line) >= 0 && strcmp(line, ".") != 0)
                ;
            wr(fd, reply(dot++));
        } else if (strncasecmp(line, "QUIT", 4) == 0) {
            wr(fd, "221 bye\r\n");
            return;
        } else {
            wr(fd, "500 5.5.1 unknown\r\n");
        }
    }
}

static const char *reply_ok(int dot)
{
    (void)dot;
    return "250 2.0.0 Ok\r\n";
}

/* The first final dot gets a 550 whose one line is 3,000 bytes. */
static const char *reply_long_refusal(int dot)
{
    static char r[3100];

    if (dot > 0)
        return "250 2.0.0 Ok\r\n";
    memset(r, 'x', sizeof r);
    memcpy(r, "550 5.7.1 rejected ", 19);
    memcpy(r + sizeof r - 3, "\r\n", 3);
    return r;
}

static void serve_long_refusal(int k, int fd)
{
    (void)k;
    converse(fd, reply_long_refusal, 0);
}

/* A reply line longer than any buffer still answers its own command: the message it
 * refuses is failed, and the next is not matched to the wrong reply. */
UTEST(provider, smtp_overlong_reply_line_answers_its_own_command)
{
    struct scripted sc;
    struct provider_set *s;
    struct provider_conn *c = NULL;
    struct provider_message m[2] = {message("5.1"), message("5.2")};
    struct provider_result r[2];
    struct err e = {0};

    scripted_start(&sc, serve_long_refusal);
    s = smtp_set(sc.port, NULL);
    cr_assert_eq(provider_open(provider_find(s, NULL), 1, &c, &e), 0, "%s", e.msg);
    provider_send_batch(c, m, 2, r);
    cr_assert_eq(r[0].outcome, PROVIDER_FAILED, "%d %s", r[0].code, r[0].text);
    cr_assert_eq(r[0].code, 550);
    cr_assert_eq(strncmp(r[0].text, "550 5.7.1 rejected xxx", 22), 0, "%s", r[0].text);
    cr_assert_eq(r[1].outcome, PROVIDER_SENT, "%d %s", r[1].code, r[1].text);
    cr_assert_str_eq(r[1].text, "250 2.0.0 Ok");
    provider_close(c);
    set_done(s);
    scripted_stop(&sc);
}

static const char *reply_late(int dot)
{
    if (dot == 0)
        pause_ms(1200);
    return "250 2.0.0 Ok\r\n";
}

/* Connection 0 answers its first final dot after 1.2 s; connection 1 hangs up 1 s after
 * MAIL; its replacement (connection 2) greets after 1.5 s. */
static void serve_slow_reopen(int k, int fd)
{
    if (k == 1) {
        converse(fd, reply_ok, 1000);
    } else {
        if (k == 2)
            pause_ms(1500);
        converse(fd, k == 0 ? reply_late : reply_ok, 0);
    }
}

/* While one connection is opened again (which blocks), a reply that comes on another is
 * read, never taken for silence: with timeout_s = 2, connection 0's 250 comes at 1.2 s,
 * while the loop is held until 2.5 s by the reopening. Were it declared late, a message
 * the server took would be sent twice. */
UTEST(provider, smtp_reply_during_a_reconnect_is_not_taken_for_a_timeout)
{
    struct scripted sc;
    struct provider_set *s;
    struct provider_conn *c = NULL;
    struct provider_message m[4] = {message("6.0"), message("6.1"), message("6.2"), message("6.3")};
    struct provider_result r[4];
    struct err e = {0};

    scripted_start(&sc, serve_slow_reopen);
    s = smtp_set(sc.port, "timeout_s = 2\n");
    cr_assert_eq(provider_open(provider_find(s, NULL), 2, &c, &e), 0, "%s", e.msg);
    provider_send_batch(c, m, 4, r); /* 0 and 2 on connection 0, 1 and 3 on 1 */
    cr_assert_eq(r[0].outcome, PROVIDER_SENT, "%d %s", r[0].code, r[0].text);
    cr_assert_eq(r[1].outcome, PROVIDER_RETRY, "the hung-up one: %d %s", r[1].code, r[1].text);
    cr_assert_eq(r[1].code, 0);
    cr_assert_eq(r[2].outcome, PROVIDER_SENT, "%d %s", r[2].code, r[2].text);
    cr_assert_eq(r[3].outcome, PROVIDER_SENT, "on the new connection: %d %s", r[3].code, r[3].text);
    provider_close(c);
    set_done(s);
    scripted_stop(&sc);
}

/* A refused MAIL FROM is about our sender, not the recipient: retry, never a bounce (a
 * "sender domain not found" 5.1.8 would otherwise mark every recipient bounced). */
UTEST(provider, smtp_5xx_at_mail_from_is_retry_and_no_bounce)
{
    static const char *const opts[] = {"-f", "MAIL", "-B", "553 5.1.8 Sender address rejected",
                                       NULL};
    struct provider_result r;
    long sess, mesg;

    sink_send_one(opts, NULL, &r, &sess, &mesg);
    cr_assert_eq(r.outcome, PROVIDER_RETRY, "%d %s", r.code, r.text);
    cr_assert_eq(r.code, 553);
    cr_assert_str_eq(r.status, "5.1.8");
    cr_assert_eq(r.hard_bounce, 0);
    cr_assert_eq(mesg, 0);
}

UTEST(provider, smtp_5xx_at_the_final_dot_is_failed_and_the_connection_stays)
{
    static const char *const opts[] = {"-f", ".", "-B", "554 5.7.1 Spam", NULL};
    struct sink k;
    struct provider_set *s;
    struct provider_conn *c = NULL;
    struct provider_result r;
    struct provider_message m = message("2.1");
    struct err e = {0};

    sink_start(&k, opts);
    s = smtp_set(k.port, NULL);
    cr_assert_eq(provider_open(provider_find(s, NULL), 1, &c, &e), 0, "%s", e.msg);
    for (int i = 0; i < 2; i++) {
        provider_send(c, &m, &r);
        cr_assert_eq(r.outcome, PROVIDER_FAILED, "%d %s", r.code, r.text);
        cr_assert_eq(r.code, 554);
        cr_assert_str_eq(r.status, "5.7.1");
        cr_assert_eq(r.hard_bounce, 0);
    }
    provider_close(c);
    sink_wait(&k, "quit", 1);
    /* the dot's reply ends the transaction either way: the connection stays */
    cr_assert_eq(sink_counter(&k, "sess"), 1);
    cr_assert_eq(sink_counter(&k, "mesg"), 2);
    set_done(s);
    sink_stop(&k);
}

UTEST(provider, smtp_nothing_listening_is_retry_with_code_0)
{
    struct provider_set *s = smtp_set(free_port(), NULL);
    struct provider_result r;

    send_one(s, &r);
    cr_assert_eq(r.outcome, PROVIDER_RETRY);
    cr_assert_eq(r.code, 0);
    cr_assert_not_null(strstr(r.text, "connect"), "names the curl error: %s", r.text);
    set_done(s);
}

UTEST(provider, smtp_envelope_with_controls_is_refused_before_sending)
{
    struct provider_set *s = smtp_set(free_port(), NULL);
    struct provider_conn *c = NULL;
    struct provider_result r;
    struct provider_message m = message("1.1");
    struct err e = {0};

    m.rcpt_to = "jane@example.org>\r\nRCPT TO:<other@example.org";
    cr_assert_eq(provider_open(provider_find(s, NULL), 1, &c, &e), 0, "%s", e.msg);
    provider_send(c, &m, &r);
    cr_assert_eq(r.outcome, PROVIDER_FAILED);
    provider_close(c);
    set_done(s);
}
