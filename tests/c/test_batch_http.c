/*
 * test_batch_http.c: "http" requests as items of one columnar batch (portway_batch_submit)
 * against a tiny local HTTP/1.1 server run in a thread with plain sockets: each item's status
 * code, headers and body read by index through portway_batch_result; an item whose upstream
 * is unreachable fails alone (the others answer, the batch's code counts one failure); an
 * item whose URL is malformed refuses the whole batch at submit, naming the item, as the
 * header's "accepted whole or not at all" says.
 */
#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* The server: answers "GET /<code>/<name>" with status <code>, a header "X-Item: <name>" and
 * the body "<name>", one request per connection (Connection: close). */
typedef struct {
    int fd;
    atomic_bool stop;
    atomic_int served;
} server;

static void serve_one(server *s, int conn) {
    char req[4096] = "";
    size_t len = 0;
    while (len < sizeof req - 1 && strstr(req, "\r\n\r\n") == NULL) {
        ssize_t r = read(conn, req + len, sizeof req - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
        req[len] = '\0';
    }
    req[len] = '\0';
    int code = 0;
    char name[64] = "";
    if (sscanf(req, "GET /%d/%63[^ ] HTTP/1.1", &code, name) != 2) code = 400;
    char resp[512];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 %d Test\r\nContent-Length: %zu\r\nX-Item: %s\r\nConnection: close\r\n\r\n%s",
                     code, strlen(name), name, name);
    for (int off = 0; off < n;) {
        ssize_t w = write(conn, resp + off, (size_t)(n - off));
        if (w <= 0) break;
        off += (int)w;
    }
    atomic_fetch_add(&s->served, 1);
}

static void *serve(void *arg) {
    server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0) continue;
        int conn = accept(s->fd, NULL, NULL);
        if (conn < 0) continue;
        serve_one(s, conn);
        close(conn);
    }
    return NULL;
}

/* A listening socket on 127.0.0.1 with an OS-chosen port; writes the port. */
static int listen_local(uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(fd, 64) == 0);
    socklen_t alen = sizeof a;
    CHECK(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Packs n NUL-terminated request heads into buf with n+1 offsets. */
static void pack(char heads[][128], size_t n, uint8_t *buf, uint64_t *off) {
    off[0] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(heads[i]);
        memcpy(buf + off[i], heads[i], len);
        off[i + 1] = off[i] + len;
    }
}

/* The value of header `key` (case-insensitive) among item i's meta pairs, or NULL. */
static const char *item_meta(const portway_batch_view *v, size_t i, const char *key) {
    for (uint64_t m = v->meta_offsets[i]; m < v->meta_offsets[i + 1]; m++)
        if (strcasecmp(v->meta[m].key, key) == 0) return v->meta[m].value;
    return NULL;
}

static int item_data_is(const portway_batch_view *v, size_t i, const char *want) {
    size_t len = (size_t)(v->offsets[i + 1] - v->offsets[i]);
    return len == strlen(want) && memcmp(v->data + v->offsets[i], want, len) == 0;
}

int main(void) {
    server s = {.fd = -1};
    uint16_t port = 0, dead_port = 0;
    s.fd = listen_local(&port);
    atomic_init(&s.stop, false);
    atomic_init(&s.served, 0);
    /* A port nothing listens on: bound, then closed. */
    int dead = listen_local(&dead_port);
    close(dead);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, serve, &s) == 0);

    portway_engine *eng = NULL;
    CHECK_OK(portway_engine_new(NULL, &eng));
    uint32_t http = lookup(eng, "http");

    /* Four answers with different codes, and one unreachable upstream in the middle. */
    enum { N = 5 };
    const int codes[N] = {200, 201, 0, 404, 503};
    const char *names[N] = {"a", "bb", "", "ccc", "d"};
    char heads[N][128];
    for (size_t i = 0; i < N; i++) {
        if (codes[i] == 0)
            snprintf(heads[i], sizeof heads[i], "GET http://127.0.0.1:%u/200/x HTTP/1.1\r\n\r\n", dead_port);
        else
            snprintf(heads[i], sizeof heads[i], "GET http://127.0.0.1:%u/%d/%s HTTP/1.1\r\n\r\n", port,
                     codes[i], names[i]);
    }
    uint8_t buf[N * 128];
    uint64_t off[N + 1];
    pack(heads, N, buf, off);
    uint64_t id = 0;
    CHECK_OK(portway_batch_submit(eng, http, buf, off, N, 10000, 42, &id));
    portway_completion c = poll_one(eng, 20000);
    CHECK(c.id == id && c.user_data == 42 && c.status == PORTWAY_OK);
    CHECK(c.code == 1); /* only the unreachable one failed: HTTP error codes are answers */
    portway_batch_view v;
    CHECK_OK(portway_batch_result(eng, &c, &v));
    CHECK(v.n == N);
    for (size_t i = 0; i < N; i++) {
        if (codes[i] == 0) {
            CHECK(v.statuses[i] == PORTWAY_CONNECT_ERROR);
            CHECK(v.offsets[i + 1] > v.offsets[i]); /* a message */
            CHECK(v.meta_offsets[i + 1] == v.meta_offsets[i]);
            continue;
        }
        CHECK(v.statuses[i] == PORTWAY_OK);
        CHECK(v.codes[i] == (uint32_t)codes[i]);
        CHECK(item_data_is(&v, i, names[i]));
        const char *x = item_meta(&v, i, "x-item");
        CHECK(x != NULL && strcmp(x, names[i]) == 0);
        const char *ver = item_meta(&v, i, ":http-version");
        CHECK(ver != NULL && strcmp(ver, "HTTP/1.1") == 0);
    }
    CHECK(atomic_load(&s.served) == N - 1);
    CHECK_OK(portway_release(eng, &c, 1));

    /* A malformed URL in item 1 refuses the batch whole, naming the item; nothing runs. */
    portway_stats_record before, after;
    CHECK_OK(portway_stats(eng, &before));
    snprintf(heads[1], sizeof heads[1], "GET http://[::1/bad HTTP/1.1\r\n\r\n");
    pack(heads, 2, buf, off);
    uint64_t id2 = 0;
    CHECK_ST(portway_batch_submit(eng, http, buf, off, 2, 10000, 43, &id2), PORTWAY_INVALID_ARGUMENT);
    CHECK(strstr(portway_last_error(), "item 1") != NULL);
    CHECK(id2 == 0);
    CHECK_OK(portway_stats(eng, &after));
    CHECK(after.accepted == before.accepted && after.in_flight == 0);
    CHECK(after.rejected_invalid == before.rejected_invalid + 2);
    size_t got = 9;
    CHECK_OK(portway_poll(eng, &c, 1, 0, &got));
    CHECK(got == 0);

    portway_engine_free(eng);
    atomic_store(&s.stop, true);
    CHECK(pthread_join(th, NULL) == 0);
    close(s.fd);
    CHECK(atomic_load(&s.served) == N - 1);
    printf("test_batch_http: ok\n");
    return 0;
}
