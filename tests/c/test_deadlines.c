/*
 * test_deadlines.c: per-request and default timeouts, cancel and cancel_all, shutdown by
 * drain (with a deadline) and cancel-now, and engine_free on a busy engine: with 1,000
 * sleeping requests, and with a native handler that ignores cancellation.
 */
#include "check.h"

#include <stdatomic.h>

static portway_engine *new_engine(uint32_t default_timeout_ms, uint32_t free_grace_ms) {
    portway_config *cfg = portway_config_new();
    CHECK(cfg != NULL);
    CHECK_OK(portway_config_set_runtime_threads(cfg, 2));
    CHECK_OK(portway_config_set_pool_workers(cfg, 2));
    CHECK_OK(portway_config_set_default_timeout_ms(cfg, default_timeout_ms));
    if (free_grace_ms) CHECK_OK(portway_config_set_free_grace_ms(cfg, free_grace_ms));
    portway_engine *eng = new_engine_cfg(cfg);
    portway_config_free(cfg);
    return eng;
}

static uint64_t submit(portway_engine *eng, uint32_t h, const char *payload, uint32_t timeout_ms,
                       uint64_t ud) {
    portway_request r = make_req(h, payload, timeout_ms, ud);
    uint64_t id = 0;
    CHECK_OK(portway_submit(eng, &r, &id));
    CHECK(id != 0);
    return id;
}

/* Polls and releases `want` completions, counting them per status into counts[] (if non-NULL). */
static void collect(portway_engine *eng, size_t want, uint64_t *counts, int32_t wait_ms) {
    portway_completion c[64];
    size_t got = 0;
    double t0 = now_ms();
    while (got < want) {
        size_t n = 0;
        CHECK_OK(portway_poll(eng, c, 64, wait_ms, &n));
        for (size_t i = 0; i < n; i++) {
            CHECK(c[i].status < PORTWAY_STATUS_SLOTS);
            CHECK(c[i].data != NULL && c[i].data[c[i].len] == '\0');
            if (counts) counts[c[i].status]++;
        }
        CHECK_OK(portway_release(eng, c, n));
        got += n;
        CHECK(now_ms() - t0 < patience_ms(10000));
    }
}

static void test_timeouts(void) {
    portway_engine *eng = new_engine(0, 0);
    uint32_t sl = lookup(eng, "sleep");

    double t0 = now_ms();
    uint64_t id = submit(eng, sl, "10000", 50, 1);
    portway_completion c = wait_for(eng, id, 5000);
    double dt = now_ms() - t0;
    CHECK(c.status == PORTWAY_TIMEOUT);
    CHECK(c.len > 0); /* a message */
    CHECK(dt >= 45 && dt < patience_ms(2000));
    CHECK_OK(portway_release(eng, &c, 1));
    CHECK_ST(portway_cancel(eng, id), PORTWAY_NOT_FOUND);

    /* A sleep shorter than its deadline completes OK with an empty response. */
    id = submit(eng, sl, "20", (uint32_t)patience_ms(2000), 2);
    c = wait_for(eng, id, 5000);
    CHECK(c.status == PORTWAY_OK && c.len == 0);
    CHECK(c.run_ns >= 15ull * 1000 * 1000);
    CHECK_OK(portway_release(eng, &c, 1));

    /* A bad sleep payload is refused at submit or fails the request: never OK. */
    portway_request bad = make_req(sl, "soon", 0, 0);
    uint64_t bid = 0;
    portway_status st = portway_submit(eng, &bad, &bid);
    if (st == PORTWAY_OK) {
        c = wait_for(eng, bid, 5000);
        CHECK(c.status != PORTWAY_OK);
        CHECK_OK(portway_release(eng, &c, 1));
    } else {
        CHECK(st == PORTWAY_INVALID_ARGUMENT);
    }
    portway_engine_free(eng);

    /* default_timeout_ms applies when timeout_ms is 0; an explicit timeout overrides it. */
    eng = new_engine(100, 0);
    sl = lookup(eng, "sleep");
    t0 = now_ms();
    id = submit(eng, sl, "10000", 0, 3);
    c = wait_for(eng, id, 5000);
    dt = now_ms() - t0;
    CHECK(c.status == PORTWAY_TIMEOUT);
    CHECK(dt >= 90 && dt < patience_ms(2000));
    CHECK_OK(portway_release(eng, &c, 1));

    id = submit(eng, sl, "250", (uint32_t)patience_ms(3000), 4);
    c = wait_for(eng, id, 5000);
    CHECK(c.status == PORTWAY_OK);
    CHECK_OK(portway_release(eng, &c, 1));

    struct portway_stats s;
    CHECK_OK(portway_stats(eng, &s));
    CHECK(s.completed[PORTWAY_TIMEOUT] == 1 && s.completed[PORTWAY_OK] == 1);
    portway_engine_free(eng);
}

static void test_cancel(void) {
    portway_engine *eng = new_engine(0, 0);
    uint32_t sl = lookup(eng, "sleep");

    uint64_t id = submit(eng, sl, "10000", 0, 9);
    sleep_ms(20);
    double t0 = now_ms();
    CHECK_OK(portway_cancel(eng, id));
    portway_completion c = wait_for(eng, id, 5000);
    CHECK(now_ms() - t0 < patience_ms(2000));
    CHECK(c.status == PORTWAY_CANCELLED);
    CHECK(c.user_data == 9);
    CHECK_ST(portway_cancel(eng, id), PORTWAY_NOT_FOUND); /* completed, unreleased */
    CHECK_OK(portway_release(eng, &c, 1));
    CHECK_ST(portway_cancel(eng, id), PORTWAY_NOT_FOUND);

    /* Cancel right after submit (possibly still queued). */
    id = submit(eng, sl, "10000", 0, 10);
    CHECK_OK(portway_cancel(eng, id));
    c = wait_for(eng, id, 5000);
    CHECK(c.status == PORTWAY_CANCELLED);
    CHECK_OK(portway_release(eng, &c, 1));

    /* cancel_all: every in-flight request gets CANCELLED; one that already finished stays OK. */
    uint32_t echo = lookup(eng, "echo");
    uint64_t eid = submit(eng, echo, "done", 0, 0);
    c = wait_for(eng, eid, 5000);
    CHECK(c.status == PORTWAY_OK);
    const int N = 20;
    for (int i = 0; i < N; i++) submit(eng, sl, "10000", 0, (uint64_t)i);
    t0 = now_ms();
    CHECK_OK(portway_cancel_all(eng));
    uint64_t counts[PORTWAY_STATUS_SLOTS] = {0};
    collect(eng, N, counts, 2000);
    CHECK(counts[PORTWAY_CANCELLED] == (uint64_t)N);
    CHECK(now_ms() - t0 < patience_ms(2000));
    CHECK(c.status == PORTWAY_OK && memcmp(c.data, "done", 4) == 0); /* untouched */
    CHECK_OK(portway_release(eng, &c, 1));
    CHECK_OK(portway_cancel_all(eng)); /* nothing in flight: still OK */
    size_t n = 9;
    CHECK_OK(portway_poll(eng, &c, 1, 20, &n));
    CHECK(n == 0);
    portway_engine_free(eng);
}

static void test_shutdown_drain_deadline(void) {
    portway_engine *eng = new_engine(0, 0);
    uint32_t sl = lookup(eng, "sleep");
    for (int i = 0; i < 3; i++) submit(eng, sl, "20", 0, 1);
    for (int i = 0; i < 3; i++) submit(eng, sl, "10000", 0, 2);
    double t0 = now_ms();
    CHECK_OK(portway_engine_shutdown(eng, PORTWAY_DRAIN, 300));
    CHECK(now_ms() - t0 < patience_ms(100)); /* returns at once */

    portway_completion c[8];
    int ok = 0, cancelled = 0;
    double last_cancel_at = 0;
    while (ok + cancelled < 6) {
        size_t n = 0;
        CHECK_OK(portway_poll(eng, c, 8, (int32_t)patience_ms(5000), &n));
        CHECK(n > 0);
        for (size_t i = 0; i < n; i++) {
            if (c[i].user_data == 1) {
                CHECK(c[i].status == PORTWAY_OK);
                ok++;
            } else {
                CHECK(c[i].status == PORTWAY_CANCELLED);
                cancelled++;
                last_cancel_at = now_ms() - t0;
            }
        }
        CHECK_OK(portway_release(eng, c, n));
    }
    /* The long sleeps were cancelled at the deadline, not before and not much after. */
    CHECK(last_cancel_at >= 250);
    CHECK(last_cancel_at < patience_ms(3000));
    size_t n = 0;
    CHECK_ST(portway_poll(eng, c, 8, 1000, &n), PORTWAY_CLOSED);
    portway_engine_free(eng);

    /* A drain can be escalated to cancel-now. */
    eng = new_engine(0, 0);
    sl = lookup(eng, "sleep");
    for (int i = 0; i < 4; i++) submit(eng, sl, "10000", 0, 3);
    CHECK_OK(portway_engine_shutdown(eng, PORTWAY_DRAIN, 0));
    sleep_ms(30);
    t0 = now_ms();
    CHECK_OK(portway_engine_shutdown(eng, PORTWAY_CANCEL_NOW, 0));
    uint64_t counts[PORTWAY_STATUS_SLOTS] = {0};
    collect(eng, 4, counts, 2000);
    CHECK(counts[PORTWAY_CANCELLED] == 4);
    CHECK(now_ms() - t0 < patience_ms(2000));
    CHECK_ST(portway_poll(eng, c, 8, 1000, &n), PORTWAY_CLOSED);
    portway_engine_free(eng);
}

static void test_cancel_now(void) {
    portway_engine *eng = new_engine(0, 0);
    uint32_t sl = lookup(eng, "sleep");
    const int N = 50;
    for (int i = 0; i < N; i++) submit(eng, sl, "10000", 0, 0);
    double t0 = now_ms();
    CHECK_OK(portway_engine_shutdown(eng, PORTWAY_CANCEL_NOW, 0));
    uint64_t counts[PORTWAY_STATUS_SLOTS] = {0};
    collect(eng, N, counts, 2000);
    CHECK(counts[PORTWAY_CANCELLED] == (uint64_t)N);
    CHECK(now_ms() - t0 < patience_ms(2000));
    portway_completion c;
    size_t n = 0;
    CHECK_ST(portway_poll(eng, &c, 1, -1, &n), PORTWAY_CLOSED);
    uint64_t id = 0;
    portway_request r = make_req(sl, "1", 0, 0);
    CHECK_ST(portway_submit(eng, &r, &id), PORTWAY_SHUTDOWN);
    struct portway_stats s;
    CHECK_OK(portway_stats(eng, &s));
    CHECK(s.completed[PORTWAY_CANCELLED] == (uint64_t)N && s.in_flight == 0);
    portway_engine_free(eng);
}

static void test_free_live_engine(void) {
    portway_engine *eng = new_engine(0, 0);
    uint32_t sl = lookup(eng, "sleep");
    uint32_t echo = lookup(eng, "echo");
    const int N = (int)scaled(1000);
    for (int i = 0; i < N; i++) submit(eng, sl, "10000", 0, (uint64_t)i);
    /* Some completions ready and unpolled, some polled and unreleased: free must reclaim all. */
    for (int i = 0; i < 4; i++) submit(eng, echo, "ready", 0, 0);
    portway_completion c;
    size_t n = 0;
    CHECK_OK(portway_poll(eng, &c, 1, 2000, &n));
    CHECK(n == 1);
    double t0 = now_ms();
    portway_engine_free(eng);
    double dt = now_ms() - t0;
    if (dt > patience_ms(3000)) fprintf(stderr, "engine_free took %.0f ms\n", dt);
    CHECK(dt < patience_ms(3000));
}

/* A handler that ignores cancellation for 500 ms, then responds (the call is still valid). */
static atomic_int stuck_started = 0;
static atomic_int stuck_done = 0;
static void h_stuck(void *ctx, portway_call *call) {
    (void)ctx;
    atomic_store(&stuck_started, 1);
    double t0 = now_ms();
    while (now_ms() - t0 < 500) sleep_ms(5);
    portway_call_respond(call, (const uint8_t *)"late", 4);
    atomic_store(&stuck_done, 1);
}

static void test_free_with_stuck_handler(void) {
    portway_engine *eng = new_engine(0, 200);
    uint32_t id = 0;
    CHECK_OK(portway_register_handler(eng, "stuck", h_stuck, NULL, &id));
    submit(eng, id, "", 0, 0);
    double t0 = now_ms();
    while (!atomic_load(&stuck_started)) {
        CHECK(now_ms() - t0 < patience_ms(5000));
        sleep_ms(1);
    }
    t0 = now_ms();
    portway_engine_free(eng);
    double dt = now_ms() - t0;
    if (dt > 450) fprintf(stderr, "engine_free with a stuck handler took %.0f ms\n", dt);
    /* Returns after the grace (200 ms), well before the handler gives up (500 ms). */
    CHECK(dt >= 150);
    CHECK(dt < 450 || under_valgrind());
    /* Let the abandoned handler return; the library must cope with it after the free. */
    t0 = now_ms();
    while (!atomic_load(&stuck_done)) {
        CHECK(now_ms() - t0 < patience_ms(5000));
        sleep_ms(5);
    }
    sleep_ms(100);
}

int main(void) {
    test_timeouts();
    test_cancel();
    test_shutdown_drain_deadline();
    test_cancel_now();
    test_free_live_engine();
    test_free_with_stuck_handler();
    printf("test_deadlines: ok\n");
    return 0;
}
