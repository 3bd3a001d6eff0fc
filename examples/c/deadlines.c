/*
 * deadlines.c: timeouts, cancellation and a graceful shutdown.
 *
 * Uses the built-in "sleep" handler (payload: milliseconds; it waits on a timer without
 * holding a thread) to show what happens to requests that take too long:
 *   1. a per-request timeout_ms, and the engine-wide default timeout;
 *   2. portway_cancel of one request by id;
 *   3. portway_engine_shutdown(PORTWAY_DRAIN, deadline): quick work finishes, slow work is
 *      cancelled at the deadline, and poll reports PORTWAY_CLOSED once everything is handed out.
 * Every accepted request gets exactly one completion, whatever happens to it.
 *
 *   build:  make examples        run:  target/c/examples/deadlines
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portway.h"

#define TRY(call)                                                                          \
    do {                                                                                   \
        portway_status st_ = (call);                                                       \
        if (st_ != PORTWAY_OK) {                                                           \
            fprintf(stderr, "%s failed: %s (%s)\n", #call, portway_status_str(st_),       \
                    portway_last_error());                                                 \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static double t_start;
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6 - t_start;
}

static portway_engine *eng;
static uint32_t sleep_id;

/* Submits "sleep <ms>" with a timeout (0 = the engine default); user_data = ms, for printing. */
static uint64_t submit_sleep(unsigned ms, uint32_t timeout_ms) {
    char payload[16];
    snprintf(payload, sizeof payload, "%u", ms);
    portway_request req = {.handler = sleep_id,
                           .timeout_ms = timeout_ms,
                           .user_data = ms,
                           .payload = (const uint8_t *)payload,
                           .payload_len = strlen(payload)};
    uint64_t id;
    TRY(portway_submit(eng, &req, &id));
    return id;
}

/* Polls and prints `n` completions, returning how many had `expect` as their status. */
static int collect(int n, uint32_t expect) {
    int matched = 0;
    for (int got = 0; got < n;) {
        portway_completion c[8];
        size_t k;
        TRY(portway_poll(eng, c, 8, 5000, &k));
        if (k == 0) {
            fprintf(stderr, "no completion within 5 s\n");
            exit(1);
        }
        for (size_t i = 0; i < k; i++) {
            printf("  [%6.0f ms] sleep %-5llu -> %-17s %s\n", now_ms(),
                   (unsigned long long)c[i].user_data, portway_status_str(c[i].status),
                   c[i].status == PORTWAY_OK ? "" : (const char *)c[i].data);
            matched += c[i].status == expect;
        }
        TRY(portway_release(eng, c, k));
        got += (int)k;
    }
    return matched;
}

int main(void) {
    t_start = 0;
    t_start = now_ms();
    int ok = 1;

    /* An engine whose requests time out after 300 ms unless they say otherwise. */
    portway_config *cfg = portway_config_new();
    TRY(portway_config_set_default_timeout_ms(cfg, 300));
    TRY(portway_config_set_runtime_threads(cfg, 1));
    TRY(portway_config_set_pool_workers(cfg, 1));
    TRY(portway_engine_new(cfg, &eng));
    portway_config_free(cfg);
    TRY(portway_handler_lookup(eng, "sleep", &sleep_id));

    /* 1. Timeouts. The clock starts at submit. */
    printf("1. timeouts (engine default 300 ms)\n");
    submit_sleep(50, 0);     /* finishes within the default */
    submit_sleep(5000, 100); /* its own 100 ms timeout */
    submit_sleep(5000, 0);   /* the default 300 ms */
    ok &= collect(3, PORTWAY_TIMEOUT) == 2;

    /* 2. Cancel by id. Cancelling again reports NOT_FOUND: it has already completed. */
    printf("2. cancel\n");
    uint64_t id = submit_sleep(5000, 10000);
    submit_sleep(20, 10000);
    TRY(portway_cancel(eng, id));
    ok &= collect(2, PORTWAY_CANCELLED) == 1;
    portway_status again = portway_cancel(eng, id);
    printf("  cancel again -> %s\n", portway_status_str(again));
    ok &= again == PORTWAY_NOT_FOUND;

    /* 3. Graceful shutdown: drain for up to 200 ms. New submits are refused at once. */
    printf("3. shutdown: drain with a 200 ms deadline\n");
    submit_sleep(30, 10000);
    submit_sleep(100, 10000);
    submit_sleep(3000, 10000);
    submit_sleep(8000, 10000);
    TRY(portway_engine_shutdown(eng, PORTWAY_DRAIN, 200));
    portway_request late = {.handler = sleep_id, .payload = (const uint8_t *)"1", .payload_len = 1};
    uint64_t late_id;
    portway_status st = portway_submit(eng, &late, &late_id);
    printf("  submit after shutdown -> %s\n", portway_status_str(st));
    ok &= st == PORTWAY_SHUTDOWN;
    ok &= collect(4, PORTWAY_CANCELLED) == 2; /* the 3 s and 8 s sleeps, at ~200 ms */

    /* Once every completion is handed out, poll says CLOSED. */
    portway_completion c;
    size_t n;
    st = portway_poll(eng, &c, 1, -1, &n);
    printf("  poll after the drain -> %s\n", portway_status_str(st));
    ok &= st == PORTWAY_CLOSED;

    portway_engine_free(eng);
    printf("summary: %s in %.0f ms\n", ok ? "every request completed as expected" : "UNEXPECTED RESULTS",
           now_ms());
    return ok ? 0 : 1;
}
