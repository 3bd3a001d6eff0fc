/*
 * test_backpressure.c: max_in_flight slots. A slot is held from acceptance until release
 * (not until poll); BUSY posts no completion; batch accepts the longest prefix; submit_wait
 * times out or is woken by a release on another thread; stats agree.
 */
#include "check.h"

#include <pthread.h>

#define MAX_IN_FLIGHT 4

static portway_engine *eng;
static uint32_t echo;

static void drain_all(portway_completion *held, size_t *n_held, size_t want) {
    double t0 = now_ms();
    while (*n_held < want) {
        size_t n = 0;
        CHECK_OK(portway_poll(eng, held + *n_held, want - *n_held, 2000, &n));
        *n_held += n;
        CHECK(now_ms() - t0 < patience_ms(5000));
    }
}

static void test_busy_until_release(void) {
    portway_request r = make_req(echo, "slot", 0, 0);
    uint64_t ids[MAX_IN_FLIGHT];
    for (int i = 0; i < MAX_IN_FLIGHT; i++) {
        r.user_data = (uint64_t)i;
        CHECK_OK(portway_submit(eng, &r, &ids[i]));
    }
    uint64_t extra = 0;
    CHECK_ST(portway_submit(eng, &r, &extra), PORTWAY_BUSY);
    CHECK(portway_last_error()[0] != '\0');
    CHECK(extra == 0);
    CHECK_ST(portway_submit_wait(eng, &r, 0, &extra), PORTWAY_BUSY);

    /* Polling does not free slots. */
    portway_completion held[MAX_IN_FLIGHT + 1];
    size_t n_held = 0;
    drain_all(held, &n_held, MAX_IN_FLIGHT);
    for (int i = 0; i < MAX_IN_FLIGHT; i++) CHECK(held[i].status == PORTWAY_OK);
    CHECK_ST(portway_submit(eng, &r, &extra), PORTWAY_BUSY);

    /* The rejected submits posted no completion. */
    size_t n = 99;
    portway_completion c;
    CHECK_OK(portway_poll(eng, &c, 1, 20, &n));
    CHECK(n == 0);

    struct portway_stats st;
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.in_flight == MAX_IN_FLIGHT);
    CHECK(st.unreleased == MAX_IN_FLIGHT);
    CHECK(st.ready == 0);
    CHECK(st.rejected_busy == 3);

    /* Releasing one frees exactly one slot. */
    CHECK_OK(portway_release(eng, &held[0], 1));
    CHECK_OK(portway_submit(eng, &r, &extra));
    CHECK(extra != 0);
    CHECK_ST(portway_submit(eng, &r, &extra), PORTWAY_BUSY);
    /* Releasing the same completion again frees nothing more. */
    CHECK_OK(portway_release(eng, &held[0], 1));
    CHECK_ST(portway_submit(eng, &r, &extra), PORTWAY_BUSY);

    /* Release everything. */
    CHECK_OK(portway_release(eng, &held[1], MAX_IN_FLIGHT - 1));
    n_held = 0;
    drain_all(held, &n_held, 1);
    CHECK_OK(portway_release(eng, held, 1));
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.in_flight == 0 && st.unreleased == 0 && st.ready == 0);
}

static void test_batch_prefix(void) {
    portway_request reqs[MAX_IN_FLIGHT + 3];
    for (int i = 0; i < MAX_IN_FLIGHT + 3; i++) reqs[i] = make_req(echo, "b", 0, (uint64_t)(100 + i));
    uint64_t ids[MAX_IN_FLIGHT + 3] = {0};
    size_t acc = 99;
    CHECK_ST(portway_submit_batch(eng, reqs, MAX_IN_FLIGHT + 3, ids, &acc), PORTWAY_BUSY);
    CHECK(acc == MAX_IN_FLIGHT);
    for (int i = 0; i < MAX_IN_FLIGHT; i++) {
        CHECK(ids[i] != 0);
        for (int j = 0; j < i; j++) CHECK(ids[i] != ids[j]);
    }
    /* A full engine accepts nothing, and says so. */
    acc = 99;
    CHECK_ST(portway_submit_batch(eng, reqs, 2, NULL, &acc), PORTWAY_BUSY);
    CHECK(acc == 0);

    portway_completion held[MAX_IN_FLIGHT];
    size_t n_held = 0;
    drain_all(held, &n_held, MAX_IN_FLIGHT);
    for (size_t i = 0; i < n_held; i++) {
        CHECK(held[i].user_data >= 100 && held[i].user_data < 100 + MAX_IN_FLIGHT);
        CHECK(held[i].id == ids[held[i].user_data - 100]);
    }
    CHECK_OK(portway_release(eng, held, n_held));

    /* An empty batch is fine; a batch that fits is OK. */
    acc = 99;
    CHECK_OK(portway_submit_batch(eng, NULL, 0, NULL, &acc));
    CHECK(acc == 0);
    CHECK_OK(portway_submit_batch(eng, reqs, 3, NULL, &acc));
    CHECK(acc == 3);
    n_held = 0;
    drain_all(held, &n_held, 3);
    CHECK_OK(portway_release(eng, held, n_held));

    /* A batch stopped by an unknown handler in the middle. */
    reqs[2].handler = 0xabcdef;
    CHECK_ST(portway_submit_batch(eng, reqs, 4, ids, &acc), PORTWAY_UNKNOWN_HANDLER);
    CHECK(acc == 2);
    reqs[2].handler = echo;
    n_held = 0;
    drain_all(held, &n_held, 2);
    CHECK_OK(portway_release(eng, held, n_held));
}

struct releaser {
    portway_completion *c;
    size_t n;
    long delay_ms;
};

static void *release_later(void *arg) {
    struct releaser *rl = arg;
    sleep_ms(rl->delay_ms);
    CHECK_OK(portway_release(eng, rl->c, rl->n));
    return NULL;
}

static void test_submit_wait(void) {
    portway_request r = make_req(echo, "w", 0, 0);
    for (int i = 0; i < MAX_IN_FLIGHT; i++) {
        uint64_t id = 0;
        CHECK_OK(portway_submit(eng, &r, &id));
    }
    uint64_t id = 0;
    double t0 = now_ms();
    CHECK_ST(portway_submit_wait(eng, &r, 50, &id), PORTWAY_BUSY);
    double waited = now_ms() - t0;
    CHECK(waited >= 45);
    CHECK(waited < patience_ms(2000));
    CHECK(id == 0);

    portway_completion held[MAX_IN_FLIGHT];
    size_t n_held = 0;
    drain_all(held, &n_held, MAX_IN_FLIGHT);

    /* Another thread releases one after 100 ms: a forever-wait gets the slot. */
    struct releaser rl = {held, 1, 100};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, release_later, &rl) == 0);
    t0 = now_ms();
    CHECK_OK(portway_submit_wait(eng, &r, -1, &id));
    waited = now_ms() - t0;
    CHECK(id != 0);
    CHECK(waited >= 50);
    CHECK(pthread_join(th, NULL) == 0);

    /* And a bounded wait works the same way. */
    struct releaser rl2 = {held + 1, 1, 50};
    CHECK(pthread_create(&th, NULL, release_later, &rl2) == 0);
    uint64_t id2 = 0;
    CHECK_OK(portway_submit_wait(eng, &r, 5000, &id2));
    CHECK(id2 != 0 && id2 != id);
    CHECK(pthread_join(th, NULL) == 0);

    CHECK_OK(portway_release(eng, held + 2, MAX_IN_FLIGHT - 2));
    n_held = 0;
    drain_all(held, &n_held, 2);
    CHECK_OK(portway_release(eng, held, n_held));

    /* A waiting submit is refused with SHUTDOWN when shutdown begins meanwhile: tested last. */
}

struct shutter {
    long delay_ms;
};
static void *shutdown_later(void *arg) {
    struct shutter *s = arg;
    sleep_ms(s->delay_ms);
    CHECK_OK(portway_engine_shutdown(eng, PORTWAY_DRAIN, 0));
    return NULL;
}

static void test_stats_and_shutdown_while_waiting(void) {
    struct portway_stats st;
    CHECK_OK(portway_stats(eng, &st));
    /* Accepted so far: 4 + 1 (busy test), 4 + 3 + 2 (batch), 4 + 2 (wait). */
    CHECK(st.accepted == 20);
    CHECK(st.completed[PORTWAY_OK] == 20);
    /* BUSY: 3 in test_busy_until_release + 2 after the single release, batch: 2, wait: 1
       timeout + the 0-ms one in the first test. submit_wait counts once per call. */
    CHECK(st.rejected_busy >= 7);
    CHECK(st.in_flight == 0 && st.ready == 0 && st.unreleased == 0 && st.queued == 0 &&
          st.running == 0);
    CHECK(st.submitted >= st.accepted + st.rejected_busy);

    portway_request r = make_req(echo, "s", 0, 0);
    for (int i = 0; i < MAX_IN_FLIGHT; i++) {
        uint64_t id = 0;
        CHECK_OK(portway_submit(eng, &r, &id));
    }
    struct shutter sh = {50};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, shutdown_later, &sh) == 0);
    uint64_t id = 0;
    double t0 = now_ms();
    CHECK_ST(portway_submit_wait(eng, &r, 5000, &id), PORTWAY_SHUTDOWN);
    CHECK(now_ms() - t0 < patience_ms(2000));
    CHECK(pthread_join(th, NULL) == 0);

    portway_completion held[MAX_IN_FLIGHT];
    size_t n_held = 0;
    drain_all(held, &n_held, MAX_IN_FLIGHT);
    CHECK_OK(portway_release(eng, held, n_held));
    size_t n = 0;
    CHECK_ST(portway_poll(eng, held, 1, 1000, &n), PORTWAY_CLOSED);
}

int main(void) {
    portway_config *cfg = portway_config_new();
    CHECK_OK(portway_config_set_max_in_flight(cfg, MAX_IN_FLIGHT));
    CHECK_OK(portway_config_set_runtime_threads(cfg, 2));
    CHECK_OK(portway_config_set_pool_workers(cfg, 2));
    eng = new_engine_cfg(cfg);
    portway_config_free(cfg);
    echo = lookup(eng, "echo");

    test_busy_until_release();
    test_batch_prefix();
    test_submit_wait();
    test_stats_and_shutdown_while_waiting();
    portway_engine_free(eng);
    printf("test_backpressure: ok\n");
    return 0;
}
