/* bench/http-load.c -- drives the tracking API the way issue 3 measures it.
 *
 *   build/http-load URL WRITE_KEY [SECONDS] [CLIENTS] [BATCH] [RATE]
 *
 * CLIENTS (2) threads, each on one keep-alive connection, post /v1/batch with BATCH
 * (500) track events and wait for the answer before the next (a 200 means the batch
 * was committed), for SECONDS (20): as fast as the server answers, or, with RATE,
 * paced to RATE events/s in all (a batch starts on its schedule, or at once if late). One more thread sends single /v1/track calls, one
 * at a time and 5 ms apart, on its own connection and times them from the first byte
 * sent to the last byte of the answer read. Prints events/s accepted and the
 * /v1/track latency percentiles. Every messageId is new.
 *
 * In C, with blocking sockets, so that the load generator takes little of the 2 cores
 * it shares with the server (the Node.js one it replaces took about 1.4 of them). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static const char *names[] = {"order_created", "call_logged", "whatsapp_sent", "email_opened"};
static struct sockaddr_in addr;
static char auth[512];
static double until;
static int batch_size, clients;
static double rate;
static char run[64], now_iso[32];
static _Atomic long accepted, rejected, failures;

static double mono(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int connect_to(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("http-load: connect");
        exit(1);
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

struct conn {
    int fd;
    char in[1 << 16];
    size_t have;
};

static int send_all(int fd, const char *head, size_t hn, const char *body, size_t bn)
{
    struct iovec v[2] = {{(void *)head, hn}, {(void *)body, bn}};
    int k = 0;

    while (k < 2) {
        ssize_t w = writev(fd, v + k, 2 - k);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (k < 2 && (size_t)w >= v[k].iov_len)
            w -= (ssize_t)v[k++].iov_len;
        if (k < 2) {
            v[k].iov_base = (char *)v[k].iov_base + w;
            v[k].iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Posts body to path and reads the answer: its status, the answer's body into *out
 * (NUL-terminated, in c->in). -1 on a broken connection. */
static int post(struct conn *c, const char *path, const char *body, size_t n, char **out)
{
    char head[1024];
    int hn = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: bench\r\nAuthorization: %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                      path, auth, n);
    char *end, *cl;
    size_t need;
    int status;

    if (send_all(c->fd, head, (size_t)hn, body, n))
        return -1;
    c->have = 0;
    for (;;) {
        ssize_t r = read(c->fd, c->in + c->have, sizeof c->in - 1 - c->have);
        if (r <= 0)
            return -1;
        c->have += (size_t)r;
        c->in[c->have] = '\0';
        end = strstr(c->in, "\r\n\r\n");
        if (end == NULL)
            continue;
        cl = strcasestr(c->in, "\r\nContent-Length:");
        need = (size_t)(end + 4 - c->in) + (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
        if (need > sizeof c->in - 1)
            return -1;
        if (c->have >= need)
            break;
    }
    status = (int)strtol(c->in + 9, NULL, 10);
    *out = end + 4;
    /* The server closes after this answer (a connection's 1,000th request): the next
     * request goes on a new connection, as any HTTP/1.1 client does. */
    cl = strcasestr(c->in, "\r\nConnection: close");
    if (cl && cl < end) {
        close(c->fd);
        c->fd = connect_to();
    }
    return status;
}

static void *batcher(void *arg)
{
    int client = (int)(long)arg;
    struct conn *c = calloc(1, sizeof *c);
    size_t cap = (size_t)batch_size * 400 + 256, len;
    char *body = malloc(cap), *answer;
    long n;
    int i;
    double start = mono(), every = rate > 0 ? batch_size / (rate / clients) : 0;

    c->fd = connect_to();
    for (n = 0; mono() < until; n++) {
        double wait = start + n * every - mono();
        if (wait > 0)
            nanosleep(&(struct timespec){(time_t)wait, (long)((wait - (time_t)wait) * 1e9)}, NULL);
        len = (size_t)snprintf(body, cap, "{\"batch\":[");
        for (i = 0; i < batch_size; i++) {
            /* The contacts bench/http.sh imported (c0000001 … c1000000). */
            long u = 1 + ((n % 64) * 7919 + (long)i * 104729 + client * 31) % 1000000;
            len += (size_t)snprintf(
                body + len, cap - len,
                "%s{\"type\":\"track\",\"userId\":\"c%07ld\",\"event\":\"app_%s\","
                "\"messageId\":\"%s-%d-%ld-%d\",\"timestamp\":\"%s\",\"properties\":{"
                "\"screen\":\"home\",\"step\":%d,\"value\":%.1f},\"context\":{\"library\":{"
                "\"name\":\"bench\",\"version\":\"1\"}}}",
                i ? "," : "", u, names[i % 4], run, client, n, i, now_iso, i, i * 3.7);
        }
        len += (size_t)snprintf(body + len, cap - len, "],\"sentAt\":\"%s\"}", now_iso);
        int status = post(c, "/v1/batch", body, len, &answer);
        const char *a = status == 200 ? strstr(answer, "\"accepted\":") : NULL;
        if (a) {
            accepted += strtol(a + 11, NULL, 10);
            /* rejected items each carry a "reason" */
            for (const char *r = strstr(answer, "\"reason\""); r; r = strstr(r + 1, "\"reason\""))
                rejected++;
        } else {
            failures++;
            if (status < 0) {
                close(c->fd);
                c->fd = connect_to();
            }
        }
    }
    close(c->fd);
    free(body);
    free(c);
    return NULL;
}

static double lat[1 << 20];
static long nlat;

static void *tracker(void *arg)
{
    struct conn *c = calloc(1, sizeof *c);
    char body[512], *answer;
    long n;

    (void)arg;
    c->fd = connect_to();
    for (n = 0; mono() < until && nlat < (long)(sizeof lat / sizeof *lat); n++) {
        int len = snprintf(body, sizeof body,
                           "{\"userId\":\"c%07ld\",\"event\":\"app_opened\",\"messageId\":"
                           "\"%s-t-%ld\",\"properties\":{\"n\":%ld}}",
                           1 + n % 1000, run, n, n);
        double t0 = mono();
        int status = post(c, "/v1/track", body, (size_t)len, &answer);
        lat[nlat++] = (mono() - t0) * 1000;
        if (status != 200) {
            failures++;
            if (status < 0) {
                close(c->fd);
                c->fd = connect_to();
            }
        }
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
    close(c->fd);
    free(c);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char host[64], cred[300], enc[420];
    int port, i, k = 0;
    double secs, t0;
    size_t n, j;
    pthread_t tid[65];
    time_t now = time(NULL);

    if (argc < 3 || sscanf(argv[1], "http://%63[^:]:%d", host, &port) != 2) {
        fprintf(stderr, "usage: http-load http://HOST:PORT WRITE_KEY [SECONDS] [CLIENTS] [BATCH] [RATE]\n");
        return 2;
    }
    secs = argc > 3 ? atof(argv[3]) : 20;
    clients = argc > 4 ? (int)strtol(argv[4], NULL, 10) : 2; /* 0 if not a number: refused below */
    batch_size = argc > 5 ? (int)strtol(argv[5], NULL, 10) : 500;
    rate = argc > 6 ? atof(argv[6]) : 0;
    if (clients < 1 || clients > 64 || batch_size < 1 || batch_size > 2500) {
        fprintf(stderr, "http-load: 1 to 64 clients, batches of 1 to 2500\n");
        return 2;
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, strcmp(host, "localhost") ? host : "127.0.0.1", &addr.sin_addr) != 1) {
        fprintf(stderr, "http-load: %s is not an IPv4 address\n", host);
        return 2;
    }
    n = (size_t)snprintf(cred, sizeof cred, "%s:", argv[2]);
    for (j = 0; j < n; j += 3) { /* base64 of "KEY:" for HTTP Basic */
        unsigned v = (unsigned char)cred[j] << 16 | (j + 1 < n ? (unsigned char)cred[j + 1] << 8 : 0) |
                     (j + 2 < n ? (unsigned char)cred[j + 2] : 0);
        enc[k++] = b64[v >> 18 & 63];
        enc[k++] = b64[v >> 12 & 63];
        enc[k++] = j + 1 < n ? b64[v >> 6 & 63] : '=';
        enc[k++] = j + 2 < n ? b64[v & 63] : '=';
    }
    enc[k] = '\0';
    snprintf(auth, sizeof auth, "Basic %s", enc);
    snprintf(run, sizeof run, "%d-%ld", (int)getpid(), (long)now);
    strftime(now_iso, sizeof now_iso, "%Y-%m-%dT%H:%M:%S.000Z", gmtime_r(&now, &(struct tm){0}));

    t0 = mono();
    until = t0 + secs;
    for (i = 0; i < clients; i++)
        pthread_create(&tid[i], NULL, batcher, (void *)(long)i);
    pthread_create(&tid[clients], NULL, tracker, NULL);
    for (i = 0; i <= clients; i++)
        pthread_join(tid[i], NULL);
    secs = mono() - t0;
    if (rate > 0)
        printf("paced to %.0f events/s\n", rate);
    printf("batches: %d clients x %d events, %.1f s: %.0f events/s accepted (%ld events, %ld "
           "rejected, %ld failed requests)\n",
           clients, batch_size, secs, accepted / secs, (long)accepted, (long)rejected,
           (long)failures);
    if (nlat) {
        qsort(lat, (size_t)nlat, sizeof *lat, cmp);
#define PCT(p) lat[(long)((p) * nlat) < nlat ? (long)((p) * nlat) : nlat - 1]
        printf("/v1/track under that load: %ld calls, p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, "
               "max %.2f ms\n",
               nlat, PCT(0.5), PCT(0.95), PCT(0.99), lat[nlat - 1]);
    }
    return failures ? 1 : 0;
}
