/*
 * uvpool.c: W1 anchor, a libuv-style thread pool (what uv_queue_work does), in plain C.
 *
 *   uvpool N WORKERS     N no-op work items, WINDOW in flight, one JSON line out
 *
 * The shape copies libuv's src/threadpool.c: one global queue of work items under a mutex, a
 * condition variable signalled per submit when a worker is idle; a worker runs the item, then
 * appends it to the loop's done queue under a second mutex and wakes the loop with an
 * uv_async_send-style coalesced eventfd write; the loop thread poll()s the eventfd, swaps the
 * done queue out under its mutex and runs each item's after-work callback. Work items are
 * caller-owned (uv_work_t), preallocated here and reused, as a libuv program would do.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 8192

typedef struct work {
    struct work *next;
    void (*work_cb)(struct work *);
    void (*after_cb)(struct work *);
    uint64_t id;
} work;

typedef struct {
    work *head, *tail;
} queue;

static void q_push(queue *q, work *w) {
    w->next = NULL;
    if (q->tail) q->tail->next = w;
    else q->head = w;
    q->tail = w;
}

static work *q_pop(queue *q) {
    work *w = q->head;
    if (w) {
        q->head = w->next;
        if (!q->head) q->tail = NULL;
    }
    return w;
}

/* the pool (global in libuv) */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static queue pool_q;
static unsigned idle_threads;
static int stopping;

/* the loop's done queue + async handle */
static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static queue done_q;
static int async_fd;
static atomic_int async_pending;

static void async_send(void) {
    /* uv_async_send: only the first sender since the last loop wake-up writes. */
    if (atomic_exchange(&async_pending, 1) != 0) return;
    uint64_t one = 1;
    while (write(async_fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

static void *worker(void *arg) {
    (void)arg;
    pthread_mutex_lock(&pool_mu);
    for (;;) {
        while (pool_q.head == NULL && !stopping) {
            idle_threads++;
            pthread_cond_wait(&pool_cond, &pool_mu);
            idle_threads--;
        }
        if (stopping) break;
        work *w = q_pop(&pool_q);
        pthread_mutex_unlock(&pool_mu);
        w->work_cb(w);
        pthread_mutex_lock(&done_mu);
        q_push(&done_q, w);
        pthread_mutex_unlock(&done_mu);
        async_send();
        pthread_mutex_lock(&pool_mu);
    }
    pthread_mutex_unlock(&pool_mu);
    return NULL;
}

static void queue_work(work *w) {
    pthread_mutex_lock(&pool_mu);
    q_push(&pool_q, w);
    if (idle_threads > 0) pthread_cond_signal(&pool_cond);
    pthread_mutex_unlock(&pool_mu);
}

/* the benchmark's callbacks */
static uint64_t completed;
static void noop_work(work *w) { (void)w; }
static void after(work *w) { (void)w; completed++; }

/* Runs the loop until `total` items completed, keeping `window` in flight. */
static void run(work *items, uint64_t total, uint64_t window) {
    uint64_t submitted = 0;
    completed = 0;
    work *free_list = NULL;
    for (uint64_t i = 0; i < window; i++) {
        items[i].next = free_list;
        free_list = &items[i];
    }
    while (completed < total) {
        while (submitted < total && free_list) {
            work *w = free_list;
            free_list = w->next;
            w->work_cb = noop_work;
            w->after_cb = after;
            w->id = submitted++;
            queue_work(w);
        }
        struct pollfd p = {.fd = async_fd, .events = POLLIN};
        if (poll(&p, 1, -1) < 0 && errno != EINTR) {
            perror("poll");
            exit(1);
        }
        uint64_t v;
        if (read(async_fd, &v, sizeof v) < 0 && errno != EAGAIN) {
            perror("read");
            exit(1);
        }
        atomic_store(&async_pending, 0);
        pthread_mutex_lock(&done_mu);
        queue got = done_q;
        done_q.head = done_q.tail = NULL;
        pthread_mutex_unlock(&done_mu);
        for (work *w = got.head, *next; w; w = next) {
            next = w->next;
            w->after_cb(w);
            w->next = free_list;
            free_list = w;
        }
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: uvpool N WORKERS\n");
        return 2;
    }
    uint64_t n = strtoull(argv[1], NULL, 10);
    unsigned workers = (unsigned)strtoul(argv[2], NULL, 10);
    async_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (async_fd < 0 || workers == 0 || workers > 64) return 1;
    pthread_t th[64];
    for (unsigned i = 0; i < workers; i++) pthread_create(&th[i], NULL, worker, NULL);
    work *items = calloc(WINDOW, sizeof *items);
    if (!items) return 1;
    run(items, n / 10 < 10000 ? n / 10 : 10000, WINDOW); /* warm-up */
    double t0 = now_s();
    run(items, n, WINDOW);
    double secs = now_s() - t0;
    pthread_mutex_lock(&pool_mu);
    stopping = 1;
    pthread_cond_broadcast(&pool_cond);
    pthread_mutex_unlock(&pool_mu);
    for (unsigned i = 0; i < workers; i++) pthread_join(th[i], NULL);
    free(items);
    printf("{\"n\": %llu, \"secs\": %.6f, \"rate\": %.1f, \"workers\": %u, \"window\": %d}\n",
           (unsigned long long)n, secs, (double)n / secs, workers, WINDOW);
    return 0;
}
