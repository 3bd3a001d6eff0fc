/*
 * test_thread_exit.c: a native handler whose thread ends under it (pthread_exit, a forced
 * unwind, as CPython does to threads wanting the GIL while it shuts down; issue 12, point 3).
 * The process must not abort; that request completes exactly once with
 * PORTWAY_HANDLER_ERROR saying its thread exited; the pool replaces the thread, so later
 * requests still run; a pipeline stage that exits ends its pipeline; the engine frees cleanly.
 */
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>

static atomic_int exits = 0;

/* Payload "exit": ends its thread without returning. Anything else: echoed. */
static void h_maybe_exit(void *ctx, portway_call *call) {
    (void)ctx;
    const uint8_t *d = NULL;
    size_t n = 0;
    CHECK_OK(portway_call_payload(call, &d, &n));
    if (n == 4 && memcmp(d, "exit", 4) == 0) {
        atomic_fetch_add(&exits, 1);
        pthread_exit(NULL);
    }
    portway_call_respond(call, d, n);
}

/* Polls until `n` completions arrived, checking each id is one of `ids` and unseen. */
static void collect(portway_engine *eng, const uint64_t *ids, size_t n, portway_completion *out) {
    size_t got = 0;
    double t0 = now_ms();
    while (got < n) {
        CHECK(now_ms() - t0 < patience_ms(20000));
        portway_completion c;
        size_t k = 0;
        CHECK_OK(portway_poll(eng, &c, 1, 100, &k));
        if (k == 0) continue;
        size_t at = n;
        for (size_t i = 0; i < n; i++) {
            if (ids[i] == c.id) at = i;
        }
        CHECK(at < n);
        CHECK(out[at].id == 0); /* exactly once */
        out[at] = c;
        got++;
    }
}

static void check_exited(const portway_completion *c) {
    CHECK(c->status == PORTWAY_HANDLER_ERROR);
    CHECK(strstr((const char *)c->data, "thread exited") != NULL);
}

int main(void) {
    portway_engine *eng = new_engine_workers(2);
    uint32_t h = 0;
    CHECK_OK(portway_register_handler(eng, "maybe_exit", h_maybe_exit, NULL, &h));

    /* One exit: its request completes once, with the reason. */
    portway_request r = make_req(h, "exit", 0, 1);
    uint64_t id = 0;
    CHECK_OK(portway_submit(eng, &r, &id));
    portway_completion c = wait_for(eng, id, 20000);
    check_exited(&c);
    CHECK_OK(portway_release(eng, &c, 1));

    /* More exits than workers, mixed with ordinary requests: every one completes once, and
     * the ordinary ones still run (the pool replaced each lost thread). */
    enum { N = 12 };
    portway_request reqs[N];
    uint64_t ids[N];
    for (int i = 0; i < N; i++) reqs[i] = make_req(h, i % 2 ? "exit" : "hello", 0, (uint64_t)i);
    size_t accepted = 0;
    CHECK_OK(portway_submit_batch(eng, reqs, N, ids, &accepted));
    CHECK(accepted == N);
    portway_completion got[N];
    memset(got, 0, sizeof got);
    collect(eng, ids, N, got);
    for (int i = 0; i < N; i++) {
        if (i % 2) {
            check_exited(&got[i]);
        } else {
            CHECK(got[i].status == PORTWAY_OK);
            CHECK(got[i].len == 5 && memcmp(got[i].data, "hello", 5) == 0);
        }
    }
    CHECK_OK(portway_release(eng, got, N));
    CHECK(atomic_load(&exits) == 1 + N / 2);

    /* A pipeline whose stage exits fails as a whole; the next one runs. */
    uint32_t stages[2] = {h, h};
    uint32_t pipe = 0;
    CHECK_OK(portway_pipeline_new(eng, "twice", stages, 2, &pipe));
    r = make_req(pipe, "exit", 0, 2);
    CHECK_OK(portway_submit(eng, &r, &id));
    c = wait_for(eng, id, 20000);
    check_exited(&c);
    CHECK_OK(portway_release(eng, &c, 1));
    r = make_req(pipe, "again", 0, 3);
    CHECK_OK(portway_submit(eng, &r, &id));
    c = wait_for(eng, id, 20000);
    CHECK(c.status == PORTWAY_OK && c.len == 5);
    CHECK_OK(portway_release(eng, &c, 1));

    /* Nothing completed twice: nothing more to poll. */
    size_t k = 0;
    CHECK_OK(portway_poll(eng, &c, 1, 50, &k));
    CHECK(k == 0);
    struct portway_stats st;
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.in_flight == 0);
    CHECK(st.completed[PORTWAY_HANDLER_ERROR] == 2 + N / 2);

    /* Exits during teardown: the engine still frees without waiting for the lost threads. */
    r = make_req(h, "exit", 0, 4);
    CHECK_OK(portway_submit(eng, &r, &id));
    portway_engine_free(eng);
    printf("test_thread_exit: %d handler threads exited, none aborted the process\n",
           atomic_load(&exits));
    return 0;
}
