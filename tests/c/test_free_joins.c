/*
 * test_free_joins.c: portway_engine_free returns only once every pool thread has ended,
 * replacement threads (started after a handler's pthread_exit) included, so nothing runs on
 * them after free and the library could be unloaded. Each thread that runs a handler sets a
 * thread-specific value whose destructor (run as the thread ends, after the pool's own code)
 * takes a while and then counts itself: after free, every one must have counted.
 */
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>

static pthread_key_t key;
static atomic_int marked = 0;   /* threads that set the value */
static atomic_int finished = 0; /* destructors that ran to the end */

/* Slow on purpose: a free that does not wait for the thread returns before it counts. */
static void thread_done(void *value) {
    (void)value;
    sleep_ms(300);
    atomic_fetch_add(&finished, 1);
}

/* Marks its thread; payload "exit" then ends the thread (the pool replaces it). */
static void h_mark(void *ctx, portway_call *call) {
    (void)ctx;
    if (pthread_getspecific(key) == NULL) {
        atomic_fetch_add(&marked, 1);
        CHECK(pthread_setspecific(key, &key) == 0);
    }
    const uint8_t *d = NULL;
    size_t n = 0;
    CHECK_OK(portway_call_payload(call, &d, &n));
    if (n == 4 && memcmp(d, "exit", 4) == 0) pthread_exit(NULL);
    portway_call_respond(call, d, n);
}

static void one_round(int round) {
    portway_engine *eng = new_engine_workers(2);
    uint32_t h = 0;
    CHECK_OK(portway_register_handler(eng, "mark", h_mark, NULL, &h));
    enum { N = 10 };
    portway_request reqs[N];
    for (int i = 0; i < N; i++) reqs[i] = make_req(h, i % 4 == 1 ? "exit" : "mark", 0, (uint64_t)i);
    uint64_t ids[N];
    size_t accepted = 0;
    CHECK_OK(portway_submit_batch(eng, reqs, N, ids, &accepted));
    CHECK(accepted == N);
    for (int got = 0; got < N; got++) {
        portway_completion c = poll_one(eng, 20000);
        CHECK(c.user_data < N && c.id == ids[c.user_data]);
        CHECK(c.status == (c.user_data % 4 == 1 ? PORTWAY_HANDLER_ERROR : PORTWAY_OK));
        CHECK_OK(portway_release(eng, &c, 1));
    }
    portway_engine_free(eng);
    int m = atomic_load(&marked), f = atomic_load(&finished);
    if (f != m) {
        fprintf(stderr, "round %d: %d pool thread(s) still running after free (%d of %d ended)\n",
                round, m - f, f, m);
    }
    CHECK(f == m);
}

int main(void) {
    CHECK(pthread_key_create(&key, thread_done) == 0);
    for (int round = 0; round < 3; round++) one_round(round);
    CHECK(atomic_load(&marked) >= 3 * 3); /* the exits alone took three threads per round */
    printf("test_free_joins: %d pool threads, all ended before free returned\n",
           atomic_load(&marked));
    return 0;
}
