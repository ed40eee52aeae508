/* bench/hit-load.c -- drives the open pixel and the click redirect the way issue 15
 * measures them.
 *
 *   build/hit-load http://HOST:PORT PATHS_FILE [SECONDS] [CLIENTS] [RATE]
 *
 * CLIENTS (32) threads, each on one keep-alive connection, GET the paths of PATHS_FILE
 * (one a line: /t/o/TOKEN, /t/c/TOKEN) in turn, each thread from its own offset, and
 * wait for each answer before the next (a 200 or 302 means the hit was kept), for
 * SECONDS (20): as fast as the server answers, or with RATE paced to RATE hits/s in all
 * (a request starts on its schedule, or at once when late; its latency counts from its
 * schedule, so a server that falls behind shows it). Every request is timed from its first byte sent to the last byte of its
 * answer read. Prints hits/s, the latency percentiles and the statuses seen.
 *
 * In C with blocking sockets, so the load generator takes little of the cores it shares
 * with the server. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 256
#define LAT_PER_CLIENT (1 << 20)

static struct sockaddr_in addr;
static char **paths;
static size_t npaths;
static double until;
static int clients;
static double rate;
static _Atomic long ok, other, broken;
static double *lat[MAX_CLIENTS];
static long nlat[MAX_CLIENTS];

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
        perror("hit-load: connect");
        exit(1);
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* GETs path on fd and reads the whole answer: its status, -1 on a broken connection;
 * *closing when the server said it closes after it. */
static int get(int fd, const char *path, char *in, size_t cap, int *closing)
{
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "GET %s HTTP/1.1\r\nHost: bench\r\nUser-Agent: hit-load\r\n\r\n", path);
    size_t have = 0, need;
    char *end, *cl;

    if (write(fd, head, (size_t)hn) != hn)
        return -1;
    for (;;) {
        ssize_t r = read(fd, in + have, cap - 1 - have);
        if (r <= 0)
            return -1;
        have += (size_t)r;
        in[have] = '\0';
        end = strstr(in, "\r\n\r\n");
        if (end == NULL)
            continue;
        cl = strcasestr(in, "\r\nContent-Length:");
        need = (size_t)(end + 4 - in) + (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
        if (need > cap - 1)
            return -1;
        if (have >= need)
            break;
    }
    cl = strcasestr(in, "\r\nConnection: close");
    *closing = cl && cl < end;
    return (int)strtol(in + 9, NULL, 10);
}

static void *client(void *arg)
{
    int me = (int)(long)arg, fd = connect_to(), closing = 0, status;
    size_t i = (size_t)me * (npaths / (size_t)clients);
    static __thread char in[1 << 14];

    double start = mono(), every = rate > 0 ? clients / rate : 0;
    long n = 0;

    lat[me] = malloc(LAT_PER_CLIENT * sizeof *lat[me]);
    while (mono() < until) {
        double t0 = mono(), due = start + (double)n++ * every;
        if (every > 0 && due > t0) {
            double w = due - t0;
            nanosleep(&(struct timespec){(time_t)w, (long)((w - (time_t)w) * 1e9)}, NULL);
        }
        if (every > 0)
            t0 = due;
        status = get(fd, paths[i++ % npaths], in, sizeof in, &closing);
        if (nlat[me] < LAT_PER_CLIENT)
            lat[me][nlat[me]++] = (mono() - t0) * 1000;
        if (status == 200 || status == 302)
            ok++;
        else if (status > 0)
            other++;
        else
            broken++;
        if (status < 0 || closing) {
            close(fd);
            fd = connect_to();
        }
    }
    close(fd);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    char host[64], line[512];
    int port, i;
    double secs, t0;
    pthread_t tid[MAX_CLIENTS];
    FILE *f;
    size_t cap = 0, n = 0, k;
    double *all;

    if (argc < 3 || sscanf(argv[1], "http://%63[^:]:%d", host, &port) != 2) {
        fprintf(stderr, "usage: hit-load http://HOST:PORT PATHS_FILE [SECONDS] [CLIENTS] [RATE]\n");
        return 2;
    }
    secs = argc > 3 ? atof(argv[3]) : 20;
    clients = argc > 4 ? (int)strtol(argv[4], NULL, 10) : 32;
    rate = argc > 5 ? atof(argv[5]) : 0;
    if (clients < 1 || clients > MAX_CLIENTS) {
        fprintf(stderr, "hit-load: 1 to %d clients\n", MAX_CLIENTS);
        return 2;
    }
    if ((f = fopen(argv[2], "r")) == NULL) {
        perror(argv[2]);
        return 2;
    }
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] != '/')
            continue;
        if (npaths == cap) {
            cap = cap ? cap * 2 : 1024;
            paths = realloc(paths, cap * sizeof *paths);
        }
        paths[npaths++] = strdup(line);
    }
    fclose(f);
    if (npaths == 0) {
        fprintf(stderr, "hit-load: %s holds no paths\n", argv[2]);
        return 2;
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, strcmp(host, "localhost") ? host : "127.0.0.1", &addr.sin_addr) != 1) {
        fprintf(stderr, "hit-load: %s is not an IPv4 address\n", host);
        return 2;
    }
    t0 = mono();
    until = t0 + secs;
    for (i = 0; i < clients; i++)
        pthread_create(&tid[i], NULL, client, (void *)(long)i);
    for (i = 0; i < clients; i++)
        pthread_join(tid[i], NULL);
    secs = mono() - t0;
    for (i = 0; i < clients; i++)
        n += (size_t)nlat[i];
    all = malloc((n ? n : 1) * sizeof *all);
    for (i = 0, k = 0; i < clients; i++) {
        memcpy(all + k, lat[i], (size_t)nlat[i] * sizeof *all);
        k += (size_t)nlat[i];
    }
    qsort(all, n, sizeof *all, cmp);
#define P(q) (n ? all[(size_t)((double)(n - 1) * (q))] : 0)
    printf("hits: %.0f/s (%ld stored, %ld other statuses, %ld broken) over %.1f s, %d clients\n",
           (double)ok / secs, (long)ok, (long)other, (long)broken, secs, clients);
    printf("latency ms: p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n", P(0.5), P(0.9),
           P(0.99), P(0.999), n ? all[n - 1] : 0);
    return other || broken ? 1 : 0;
}
