/*
 * test_notify.c: the notify descriptor's level semantics, the notify callback, portway_wake,
 * and several threads polling one engine at once (every completion delivered exactly once).
 */
#include "check.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

static int readable(int fd, int timeout_ms) {
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, timeout_ms);
    CHECK(r >= 0);
    CHECK((p.revents & (POLLERR | POLLNVAL)) == 0);
    return r == 1 && (p.revents & POLLIN);
}

static portway_engine *new_engine(void) {
    portway_config *cfg = portway_config_new();
    CHECK_OK(portway_config_set_runtime_threads(cfg, 2));
    CHECK_OK(portway_config_set_pool_workers(cfg, 2));
    portway_engine *eng = new_engine_cfg(cfg);
    portway_config_free(cfg);
    return eng;
}

static void submit(portway_engine *eng, uint32_t h, const char *payload) {
    portway_request r = make_req(h, payload, 0, 0);
    uint64_t id = 0;
    CHECK_OK(portway_submit(eng, &r, &id));
}

static void take(portway_engine *eng, size_t cap, size_t want) {
    portway_completion c[8];
    size_t n = 0;
    CHECK(cap <= 8);
    CHECK_OK(portway_poll(eng, c, cap, 0, &n));
    CHECK(n == want);
    CHECK_OK(portway_release(eng, c, n));
}

static void test_fd_level(void) {
    portway_engine *eng = new_engine();
    uint32_t echo = lookup(eng, "echo");
    uint32_t sl = lookup(eng, "sleep");
    int fd = portway_notify_fd(eng);
    CHECK(fd >= 0);
    CHECK(portway_notify_fd(eng) == fd); /* stable */

    CHECK(!readable(fd, 0)); /* fresh engine */
    CHECK(!readable(fd, 30));

    submit(eng, echo, "a");
    CHECK(readable(fd, 2000));
    CHECK(readable(fd, 0)); /* level: stays readable while the completion waits */
    take(eng, 1, 1);
    CHECK(!readable(fd, 0));

    /* Partial poll: stays readable until everything is taken. */
    submit(eng, echo, "1");
    submit(eng, echo, "2");
    submit(eng, echo, "3");
    CHECK(readable(fd, 2000));
    sleep_ms(20);
    take(eng, 1, 1);
    CHECK(readable(fd, 0));
    take(eng, 1, 1);
    CHECK(readable(fd, 0));
    take(eng, 2, 1);
    CHECK(!readable(fd, 0));
    CHECK(!readable(fd, 20));

    /* No missed wakeup: a completion from an engine thread after a drain. The sleep is long
     * enough that it cannot finish before the next line even under valgrind. */
    submit(eng, sl, "500");
    CHECK(!readable(fd, 0));
    CHECK(readable(fd, 3000));
    take(eng, 4, 1);
    CHECK(!readable(fd, 0));

    /* Many rounds of the same, alternating inline and timer completions. */
    for (int i = 0; i < (int)scaled(200); i++) {
        submit(eng, (i & 1) ? echo : sl, (i & 1) ? "x" : "1");
        CHECK(readable(fd, 3000));
        take(eng, 4, 1);
        CHECK(!readable(fd, 0));
    }

    /* Closed: readable once shut down and drained, and stays so. */
    CHECK_OK(portway_engine_shutdown(eng, PORTWAY_DRAIN, 0));
    CHECK(readable(fd, 2000));
    portway_completion c;
    size_t n = 0;
    CHECK_ST(portway_poll(eng, &c, 1, 0, &n), PORTWAY_CLOSED);
    CHECK(readable(fd, 0));

    /* Shutdown with a completion still pending: readable, drained, then closed-readable. */
    portway_engine_free(eng);
    eng = new_engine();
    fd = portway_notify_fd(eng);
    sl = lookup(eng, "sleep");
    submit(eng, sl, "20");
    CHECK_OK(portway_engine_shutdown(eng, PORTWAY_DRAIN, 0));
    CHECK(readable(fd, 3000));
    take(eng, 4, 1);
    CHECK(readable(fd, 1000));
    CHECK_ST(portway_poll(eng, &c, 1, 0, &n), PORTWAY_CLOSED);
    portway_engine_free(eng);
}

static atomic_int notified = 0;
static void on_notify(void *ctx) {
    CHECK(ctx == (void *)&notified);
    atomic_fetch_add(&notified, 1);
}

static int wait_notified(int at_least, int ms) {
    double t0 = now_ms();
    while (atomic_load(&notified) < at_least) {
        if (now_ms() - t0 > ms) return 0;
        sleep_ms(1);
    }
    return 1;
}

static void test_callback(void) {
    portway_engine *eng = new_engine();
    uint32_t echo = lookup(eng, "echo");
    uint32_t sl = lookup(eng, "sleep");
    CHECK_OK(portway_set_notify(eng, on_notify, &notified));
    CHECK(atomic_load(&notified) == 0);

    submit(eng, echo, "a"); /* may notify inline on this thread */
    CHECK(wait_notified(1, 2000));
    take(eng, 4, 1);

    int before = atomic_load(&notified);
    submit(eng, sl, "20"); /* notifies from an engine thread */
    CHECK(wait_notified(before + 1, 3000));
    take(eng, 4, 1);

    /* Two completions while one is already waiting: the transition happens once. */
    before = atomic_load(&notified);
    submit(eng, echo, "1");
    CHECK(wait_notified(before + 1, 2000));
    submit(eng, echo, "2");
    sleep_ms(20);
    int after = atomic_load(&notified);
    if (after != before + 1) fprintf(stderr, "note: notify called %d times for one transition\n", after - before);
    CHECK(after >= before + 1);
    take(eng, 4, 2);

    /* Removed with NULL: no more calls. */
    CHECK_OK(portway_set_notify(eng, NULL, NULL));
    before = atomic_load(&notified);
    submit(eng, echo, "x");
    submit(eng, sl, "10");
    sleep_ms(60);
    take(eng, 4, 2);
    CHECK(atomic_load(&notified) == before);
    portway_engine_free(eng);
}

struct blocked_poll {
    portway_engine *eng;
    int32_t timeout_ms;
    portway_status st;
    size_t n;
    double took_ms;
    atomic_int entered;
    size_t min; /* portway_poll_min's minimum (1: a plain portway_poll) */
};

static void *poll_thread(void *arg) {
    struct blocked_poll *b = arg;
    portway_completion c[4];
    b->n = 999;
    atomic_store(&b->entered, 1);
    double t0 = now_ms();
    b->st = portway_poll_min(b->eng, c, 4, b->min, b->timeout_ms, &b->n);
    b->took_ms = now_ms() - t0;
    if (b->st == PORTWAY_OK && b->n > 0) portway_release(b->eng, c, b->n);
    return NULL;
}

static void test_wake(void) {
    portway_engine *eng = new_engine();
    struct blocked_poll b = {eng, -1, 99, 0, 0, 0, 1};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, poll_thread, &b) == 0);
    while (!atomic_load(&b.entered)) sleep_ms(1);
    sleep_ms(100); /* let it block */
    CHECK_OK(portway_wake(eng));
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_OK(b.st);
    CHECK(b.n == 0);
    CHECK(b.took_ms >= 50);

    /* A wake with nobody blocked makes the next blocking poll return at once. */
    CHECK_OK(portway_wake(eng));
    struct blocked_poll b2 = {eng, 5000, 99, 0, 0, 0, 1};
    CHECK(pthread_create(&th, NULL, poll_thread, &b2) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_OK(b2.st);
    CHECK(b2.n == 0);
    CHECK(b2.took_ms < patience_ms(1000));

    /* Shutdown wakes a poller blocked forever: it gets CLOSED. */
    struct blocked_poll b3 = {eng, -1, 99, 0, 0, 0, 1};
    CHECK(pthread_create(&th, NULL, poll_thread, &b3) == 0);
    while (!atomic_load(&b3.entered)) sleep_ms(1);
    sleep_ms(50);
    CHECK_OK(portway_engine_shutdown(eng, PORTWAY_DRAIN, 0));
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(b3.st == PORTWAY_CLOSED || (b3.st == PORTWAY_OK && b3.n == 0));
    portway_engine_free(eng);
}

/* A poll (and a batch poll) blocked while a request is in flight spins briefly before it
 * sleeps (issue 17); a wake ends it wherever it is, and the request still completes once. */
static void test_wake_with_work_in_flight(void) {
    portway_engine *eng = new_engine();
    uint32_t sleep = lookup(eng, "sleep");
    portway_request r = make_req(sleep, "60000", 0, 7);
    uint64_t id = 0;
    CHECK_OK(portway_submit(eng, &r, &id));
    for (size_t min = 1; min <= 2; min++) {
        struct blocked_poll b = {eng, -1, 99, 0, 0, 0, min};
        pthread_t th;
        CHECK(pthread_create(&th, NULL, poll_thread, &b) == 0);
        while (!atomic_load(&b.entered)) sleep_ms(1);
        sleep_ms(20); /* past its spin, asleep: either way the wake must end it */
        CHECK_OK(portway_wake(eng));
        CHECK(pthread_join(th, NULL) == 0);
        CHECK_OK(b.st);
        CHECK(b.n == 0);
    }
    /* The request is still in flight; cancelling it completes it, exactly once. */
    CHECK_OK(portway_cancel(eng, id));
    portway_completion c[4];
    size_t n = 0;
    CHECK_OK(portway_poll(eng, c, 4, 10000, &n));
    CHECK(n == 1 && c[0].id == id && c[0].status == PORTWAY_CANCELLED);
    CHECK_OK(portway_release(eng, c, n));
    CHECK_OK(portway_poll(eng, c, 4, 0, &n));
    CHECK(n == 0);
    portway_engine_free(eng);
}

/* ---------------------------------------------------------------- many pollers */

#define POLLERS 4
static portway_engine *mp_eng;
static long mp_total;
static atomic_long mp_received = 0;
static atomic_int mp_dupes = 0;
static atomic_uchar *mp_seen;  /* indexed by user_data */
static uint64_t *mp_got_id;    /* indexed by user_data */

/* Poller i asks for batches of at least 1 + 5 * i completions (portway_poll_min), so plain and
 * batch pollers share the queue. */
static void *mp_poller(void *arg) {
    size_t min = 1 + 5 * (size_t)(uintptr_t)arg;
    portway_completion c[16];
    while (atomic_load(&mp_received) < mp_total) {
        size_t n = 0;
        portway_status st = portway_poll_min(mp_eng, c, 16, min, 100, &n);
        CHECK_OK(st);
        for (size_t i = 0; i < n; i++) {
            uint64_t ud = c[i].user_data;
            CHECK(ud < (uint64_t)mp_total);
            CHECK(c[i].status == PORTWAY_OK);
            CHECK(c[i].len == sizeof ud && memcmp(c[i].data, &ud, sizeof ud) == 0);
            if (atomic_exchange(&mp_seen[ud], 1) != 0) atomic_fetch_add(&mp_dupes, 1);
            mp_got_id[ud] = c[i].id;
        }
        CHECK_OK(portway_release(mp_eng, c, n));
        atomic_fetch_add(&mp_received, (long)n);
    }
    return NULL;
}

static void test_many_pollers(void) {
    mp_eng = new_engine();
    mp_total = scaled(20000);
    mp_seen = calloc((size_t)mp_total, sizeof *mp_seen);
    mp_got_id = calloc((size_t)mp_total, sizeof *mp_got_id);
    uint64_t *ids = calloc((size_t)mp_total, sizeof *ids);
    uint64_t *uds = calloc((size_t)mp_total, sizeof *uds);
    CHECK(mp_seen && mp_got_id && ids && uds);
    uint32_t echo = lookup(mp_eng, "echo");

    pthread_t th[POLLERS];
    for (int i = 0; i < POLLERS; i++)
        CHECK(pthread_create(&th[i], NULL, mp_poller, (void *)(uintptr_t)i) == 0);

    enum { BATCH = 250 };
    portway_request reqs[BATCH];
    for (long base = 0; base < mp_total; base += BATCH) {
        size_t n = (size_t)(mp_total - base < BATCH ? mp_total - base : BATCH);
        for (size_t i = 0; i < n; i++) {
            uds[base + i] = (uint64_t)(base + (long)i);
            reqs[i].handler = echo;
            reqs[i].timeout_ms = 0;
            reqs[i].user_data = uds[base + i];
            reqs[i].payload = (const uint8_t *)&uds[base + i];
            reqs[i].payload_len = sizeof(uint64_t);
        }
        size_t acc = 0;
        CHECK_OK(portway_submit_batch(mp_eng, reqs, n, ids + base, &acc));
        CHECK(acc == n);
    }
    double t0 = now_ms();
    for (int i = 0; i < POLLERS; i++) CHECK(pthread_join(th[i], NULL) == 0);
    CHECK(now_ms() - t0 < patience_ms(30000));

    CHECK(atomic_load(&mp_dupes) == 0);
    CHECK(atomic_load(&mp_received) == mp_total);
    for (long i = 0; i < mp_total; i++) {
        CHECK(mp_seen[i] == 1);
        CHECK(mp_got_id[i] == ids[i]);
        CHECK(ids[i] != 0);
    }
    struct portway_stats st;
    CHECK_OK(portway_stats(mp_eng, &st));
    CHECK(st.accepted == (uint64_t)mp_total);
    CHECK(st.completed[PORTWAY_OK] == (uint64_t)mp_total);
    CHECK(st.in_flight == 0 && st.ready == 0 && st.unreleased == 0);
    /* Nothing left over. */
    portway_completion c;
    size_t n = 9;
    CHECK_OK(portway_poll(mp_eng, &c, 1, 0, &n));
    CHECK(n == 0);
    CHECK(!readable(portway_notify_fd(mp_eng), 0));
    portway_engine_free(mp_eng);
    free(mp_seen);
    free(mp_got_id);
    free(ids);
    free(uds);
}

/* ---------------------------------------------------------------- batch polls */

static void test_poll_min(void) {
    portway_engine *eng = new_engine();
    uint32_t echo = lookup(eng, "echo"), sleep = lookup(eng, "sleep");
    portway_request reqs[4] = {make_req(echo, "now", 0, 1), make_req(sleep, "30", 0, 2),
                               make_req(sleep, "40", 0, 3), make_req(sleep, "50", 0, 4)};
    size_t acc = 0, n = 0;
    CHECK_OK(portway_submit_batch(eng, reqs, 4, NULL, &acc));
    CHECK(acc == 4);
    portway_completion c[8];
    /* A plain poll would return the echo alone; this waits for all four. */
    CHECK_OK(portway_poll_min(eng, c, 8, 4, 10000, &n));
    CHECK(n == 4);
    CHECK_OK(portway_release(eng, c, n));
    /* Asking for more than is in flight returns what there is once all of it is done. */
    CHECK_OK(portway_submit_batch(eng, reqs, 2, NULL, &acc));
    CHECK_OK(portway_poll_min(eng, c, 8, 8, 10000, &n));
    CHECK(n == 2);
    CHECK_OK(portway_release(eng, c, n));
    /* The minimum must be between 1 and the capacity. */
    CHECK_ST(portway_poll_min(eng, c, 8, 0, 0, &n), PORTWAY_INVALID_ARGUMENT);
    CHECK(portway_last_error()[0] != '\0');
    CHECK_ST(portway_poll_min(eng, c, 8, 9, 0, &n), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_poll_min(NULL, c, 8, 1, 0, &n), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_poll_min(eng, NULL, 8, 1, 0, &n), PORTWAY_INVALID_ARGUMENT);
    portway_engine_free(eng);
}

int main(void) {
    test_fd_level();
    test_poll_min();
    test_callback();
    test_wake();
    test_wake_with_work_in_flight();
    test_many_pollers();
    printf("test_notify: ok\n");
    return 0;
}
