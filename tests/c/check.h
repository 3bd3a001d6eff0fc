/*
 * check.h: a tiny assertion helper shared by the C tests.
 *
 * CHECK(expr) prints file:line, the expression and portway_last_error() and exits 1 when
 * expr is false. CHECK_ST(call, status) does the same when a call does not return the
 * expected portway_status, naming both statuses.
 */
#ifndef PORTWAY_TEST_CHECK_H
#define PORTWAY_TEST_CHECK_H

#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portway.h"

#define CHECK(expr)                                                                        \
    do {                                                                                   \
        if (!(expr)) {                                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n  last_error: %s\n", __FILE__,       \
                    __LINE__, #expr, portway_last_error());                                \
            fflush(stderr);                                                                \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

#define CHECK_ST(call, expected)                                                           \
    do {                                                                                   \
        portway_status check_st_got_ = (call);                                             \
        portway_status check_st_want_ = (expected);                                        \
        if (check_st_got_ != check_st_want_) {                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n  got %s, want %s\n  last_error: %s\n", \
                    __FILE__, __LINE__, #call, portway_status_str(check_st_got_),         \
                    portway_status_str(check_st_want_), portway_last_error());             \
            fflush(stderr);                                                                \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

#define CHECK_OK(call) CHECK_ST(call, PORTWAY_OK)

/* Monotonic milliseconds. */
static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* 1 under valgrind (PORTWAY_UNDER_VALGRIND=1): loops scale down ~10x. */
static inline int under_valgrind(void) {
    const char *v = getenv("PORTWAY_UNDER_VALGRIND");
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

/*
 * The bound of a check that something happens promptly, or at all: `ms` natively, 20 times
 * that under valgrind, which runs the program tens of times slower and, on a busy 2-CPU
 * machine, starves it for seconds (creating one engine has taken 13 s). These bounds tell
 * "prompt" from "hung" or "waited for the whole sleep"; they are not measurements.
 */
static inline double patience_ms(double ms) { return under_valgrind() ? ms * 20 : ms; }

static inline long scaled(long n) {
    if (under_valgrind()) {
        long s = n / 10;
        return s > 0 ? s : 1;
    }
    return n;
}

/* Looks up a built-in or registered handler, failing the test if absent. */
static inline uint32_t lookup(portway_engine *eng, const char *name) {
    uint32_t id = 0;
    CHECK_OK(portway_handler_lookup(eng, name, &id));
    return id;
}

/* Polls until exactly one completion arrives (waiting up to patience_ms(timeout_ms)), failing
 * otherwise. */
static inline portway_completion poll_one(portway_engine *eng, int32_t timeout_ms) {
    portway_completion c;
    size_t n = 0;
    memset(&c, 0, sizeof c);
    int32_t wait = timeout_ms > 0 ? (int32_t)patience_ms(timeout_ms) : timeout_ms;
    CHECK_OK(portway_poll(eng, &c, 1, wait, &n));
    CHECK(n == 1);
    return c;
}

/* Polls the completion for a single outstanding request, checks id, and returns it. */
static inline portway_completion wait_for(portway_engine *eng, uint64_t id, int32_t timeout_ms) {
    portway_completion c = poll_one(eng, timeout_ms);
    if (c.id != id) {
        fprintf(stderr, "wait_for: got completion %llu, want %llu\n", (unsigned long long)c.id,
                (unsigned long long)id);
    }
    CHECK(c.id == id);
    return c;
}

static inline portway_request make_req(uint32_t handler, const char *payload, uint32_t timeout_ms,
                                       uint64_t user_data) {
    portway_request r;
    memset(&r, 0, sizeof r);
    r.handler = handler;
    r.timeout_ms = timeout_ms;
    r.user_data = user_data;
    r.payload = (const uint8_t *)payload;
    r.payload_len = payload ? strlen(payload) : 0;
    return r;
}

static inline portway_engine *new_engine_cfg(portway_config *cfg) {
    portway_engine *eng = NULL;
    CHECK_OK(portway_engine_new(cfg, &eng));
    CHECK(eng != NULL);
    return eng;
}

/* An engine with one runtime thread and `workers` pool threads. */
static inline portway_engine *new_engine_workers(uint32_t workers) {
    portway_config *cfg = portway_config_new();
    CHECK_OK(portway_config_set_runtime_threads(cfg, 1));
    CHECK_OK(portway_config_set_pool_workers(cfg, workers));
    portway_engine *eng = new_engine_cfg(cfg);
    portway_config_free(cfg);
    return eng;
}

#endif /* PORTWAY_TEST_CHECK_H */
