/*
 * test_call_rules.c: the thread rules of portway_call (a watchdog thread reading cancellation
 * and user data while the handler responds, under ASan and valgrind), a failure message that
 * is not UTF-8 (kept, lossily), registration on a shut-down engine (refused), and the record
 * typedefs a C user writes.
 */
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

/* ---------------------------------------------------------------- watchdog while responding */

struct watchdog {
    portway_call *call;
    atomic_int stop;
    long reads;
    int bad;
};

static void *watch(void *arg) {
    struct watchdog *w = arg;
    while (!atomic_load(&w->stop)) {
        if (portway_call_is_cancelled(w->call)) w->bad = 1; /* never cancelled here */
        if (portway_call_user_data(w->call) == 0) w->bad = 1;
        w->reads++;
        /* Under valgrind, which runs one thread at a time, a spinning reader would starve the
         * responding handler: yield between rounds. */
        sched_yield();
    }
    /* One more round after the handler responded: still valid until the handler returns. */
    if (portway_call_is_cancelled(w->call)) w->bad = 1;
    return NULL;
}

/* Responds (payload, code, meta, respond) while a watchdog thread hammers the read-only
 * accessors; joins it before returning, as the header says to. Code 1 = the watchdog saw only
 * what it should. */
static void h_watched(void *ctx, portway_call *call) {
    (void)ctx;
    struct watchdog w = {.call = call, .reads = 0, .bad = 0};
    atomic_init(&w.stop, 0);
    pthread_t t;
    if (pthread_create(&t, NULL, watch, &w) != 0) {
        portway_call_fail(call, "pthread_create failed");
        return;
    }
    const uint8_t *d = NULL;
    size_t n = 0;
    portway_call_payload(call, &d, &n);
    for (int i = 0; i < 20; i++) portway_call_add_meta(call, "k", "v");
    portway_call_respond(call, d, n);
    atomic_store(&w.stop, 1);
    pthread_join(t, NULL);
    portway_call_set_code(call, w.bad ? 2 : 1);
}

/* A second thread does the responding while the handler thread watches: the mutating calls
 * are allowed from another thread too, as long as the handler has not returned. */
static void *respond_from_thread(void *arg) {
    portway_call *call = arg;
    portway_call_set_code(call, 7);
    portway_call_respond(call, (const uint8_t *)"from a thread", 13);
    return NULL;
}

static void h_delegating(void *ctx, portway_call *call) {
    (void)ctx;
    pthread_t t;
    if (pthread_create(&t, NULL, respond_from_thread, call) != 0) {
        portway_call_fail(call, "pthread_create failed");
        return;
    }
    for (int i = 0; i < 1000; i++) (void)portway_call_is_cancelled(call); /* concurrent reads */
    pthread_join(t, NULL);
}

static void test_call_threads(void) {
    portway_config *cfg = portway_config_new();
    CHECK_OK(portway_config_set_pool_workers(cfg, 2));
    portway_engine *eng = new_engine_cfg(cfg);
    portway_config_free(cfg);
    uint32_t watched = 0, delegating = 0;
    CHECK_OK(portway_register_handler(eng, "watched", h_watched, NULL, &watched));
    CHECK_OK(portway_register_handler(eng, "delegating", h_delegating, NULL, &delegating));
    long rounds = scaled(200);
    for (long i = 0; i < rounds; i++) {
        portway_request r[2] = {make_req(watched, "payload", 0, (uint64_t)i + 1),
                                make_req(delegating, "x", 0, 9)};
        uint64_t ids[2];
        size_t accepted = 0;
        CHECK_OK(portway_submit_batch(eng, r, 2, ids, &accepted));
        for (int k = 0; k < 2; k++) {
            portway_completion c = poll_one(eng, 60000);
            CHECK(c.status == PORTWAY_OK);
            if (c.id == ids[0]) {
                CHECK(c.code == 1);
                CHECK(c.len == 7 && memcmp(c.data, "payload", 7) == 0);
                CHECK(c.meta_len == 20);
            } else {
                CHECK(c.id == ids[1]);
                CHECK(c.code == 7);
                CHECK(c.len == 13 && memcmp(c.data, "from a thread", 13) == 0);
            }
            CHECK_OK(portway_release(eng, &c, 1));
        }
    }
    portway_engine_free(eng);
}

/* ---------------------------------------------------------------- non-UTF-8 failure message */

static void h_fail_latin1(void *ctx, portway_call *call) {
    (void)ctx;
    portway_call_set_code(call, 500);
    /* "caf\xe9 ferm\xe9" is Latin-1; the handler's status must survive and so must its text. */
    portway_status st = portway_call_fail(call, "caf\xe9 ferm\xe9: disk full");
    if (st != PORTWAY_OK) portway_call_set_code(call, 999);
}

static void test_fail_not_utf8(void) {
    portway_engine *eng = new_engine_cfg(NULL);
    uint32_t h = 0;
    CHECK_OK(portway_register_handler(eng, "latin1", h_fail_latin1, NULL, &h));
    portway_request r = make_req(h, "x", 0, 0);
    uint64_t id = 0;
    CHECK_OK(portway_submit(eng, &r, &id));
    portway_completion c = wait_for(eng, id, 10000);
    CHECK(c.status == PORTWAY_HANDLER_ERROR);
    CHECK(c.code == 500);
    const char *want = "caf\xef\xbf\xbd ferm\xef\xbf\xbd: disk full"; /* U+FFFD for each byte */
    if (c.len != strlen(want) || memcmp(c.data, want, c.len) != 0) {
        fprintf(stderr, "fail message: got \"%.*s\", want \"%s\"\n", (int)c.len,
                (const char *)c.data, want);
        exit(1);
    }
    CHECK_OK(portway_release(eng, &c, 1));
    portway_engine_free(eng);
}

/* ---------------------------------------------------------------- registering after shutdown */

static void h_never(void *ctx, portway_call *call) {
    (void)ctx;
    portway_call_respond(call, NULL, 0);
}

static void test_register_after_shutdown(void) {
    portway_engine *eng = new_engine_cfg(NULL);
    uint32_t echo = lookup(eng, "echo");
    CHECK_OK(portway_engine_shutdown(eng, PORTWAY_DRAIN, 0));
    uint32_t id = 77;
    CHECK_ST(portway_register_handler(eng, "late", h_never, NULL, &id), PORTWAY_SHUTDOWN);
    CHECK(strstr(portway_last_error(), "shutting down") != NULL);
    CHECK(id == 77);
    CHECK_ST(portway_pipeline_new(eng, "late-pipe", &echo, 1, &id), PORTWAY_SHUTDOWN);
    CHECK(strstr(portway_last_error(), "shutting down") != NULL);
    CHECK_ST(portway_register_http(eng, "late-http", NULL, &id), PORTWAY_SHUTDOWN);
    CHECK(strstr(portway_last_error(), "shutting down") != NULL);
    CHECK(id == 77);
    CHECK_ST(portway_handler_lookup(eng, "late", &id), PORTWAY_NOT_FOUND);
    portway_engine_free(eng);
}

/* ---------------------------------------------------------------- record typedefs */

static void test_record_typedefs(void) {
    portway_engine *eng = new_engine_cfg(NULL);
    portway_stats_record st;
    struct portway_stats same; /* the struct tag keeps working */
    CHECK_OK(portway_stats(eng, &st));
    CHECK_OK(portway_stats(eng, &same));
    CHECK(st.pool_workers == same.pool_workers && st.pool_workers > 0);
    portway_handler_stats_record hs;
    CHECK_OK(portway_handler_stats(eng, lookup(eng, "echo"), &hs));
    portway_latency lat = hs.run;
    CHECK(lat.count == 0);
    portway_engine_free(eng);
}

int main(void) {
    test_call_threads();
    test_fail_not_utf8();
    test_register_after_shutdown();
    test_record_typedefs();
    printf("test_call_rules: ok\n");
    return 0;
}
