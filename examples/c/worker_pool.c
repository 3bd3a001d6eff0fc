/*
 * worker_pool.c: the worker-pool pattern with portway.
 *
 * A native C function is registered as a handler; portway runs it on its pool of worker
 * threads. The host submits jobs (here: "count the primes below N" and "hash this string")
 * without blocking, and collects the results by polling completions. Each job's result comes
 * back tagged with the user_data it was submitted with.
 *
 *   build:  make examples        run:  target/c/examples/worker_pool
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portway.h"

/* Stops the program with a message when a portway call does not return PORTWAY_OK. */
#define TRY(call)                                                                          \
    do {                                                                                   \
        portway_status st_ = (call);                                                       \
        if (st_ != PORTWAY_OK) {                                                           \
            fprintf(stderr, "%s failed: %s (%s)\n", #call, portway_status_str(st_),       \
                    portway_last_error());                                                 \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

/* ------------------------------------------------------------------ the handlers */

/*
 * "primes": the payload is a decimal limit; responds with the number of primes below it.
 * Runs on a pool thread. Long work should check portway_call_is_cancelled now and then, so
 * that a cancel, a timeout or a shutdown stops it early.
 */
static void count_primes(void *ctx, portway_call *call) {
    (void)ctx;
    const uint8_t *data;
    size_t len;
    portway_call_payload(call, &data, &len);

    char text[32];
    if (len == 0 || len >= sizeof text) {
        portway_call_fail(call, "payload must be a decimal number");
        return;
    }
    memcpy(text, data, len);
    text[len] = '\0';
    unsigned long limit = strtoul(text, NULL, 10);

    unsigned long count = 0;
    for (unsigned long n = 2; n < limit; n++) {
        if ((n & 0xfff) == 0 && portway_call_is_cancelled(call)) return; /* result discarded */
        int prime = 1;
        for (unsigned long d = 2; d * d <= n; d++) {
            if (n % d == 0) {
                prime = 0;
                break;
            }
        }
        count += (unsigned long)prime;
    }

    char out[32];
    int n = snprintf(out, sizeof out, "%lu", count);
    portway_call_add_meta(call, "job", "primes"); /* metadata travels with the completion */
    portway_call_respond(call, (const uint8_t *)out, (size_t)n); /* portway copies it */
}

/* "fnv1a": responds with the 64-bit FNV-1a hash of the payload, in hex. */
static void fnv1a(void *ctx, portway_call *call) {
    (void)ctx;
    const uint8_t *data;
    size_t len;
    portway_call_payload(call, &data, &len);
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= data[i];
        h *= 0x100000001b3ULL;
    }
    char out[17];
    snprintf(out, sizeof out, "%016" PRIx64, h);
    portway_call_add_meta(call, "job", "fnv1a");
    portway_call_respond(call, (const uint8_t *)out, 16);
}

/* ------------------------------------------------------------------ the host */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(void) {
    /* 1. Configure and create the engine: 4 pool threads for native handlers. */
    portway_config *cfg = portway_config_new();
    TRY(portway_config_set_pool_workers(cfg, 4));
    TRY(portway_config_set_runtime_threads(cfg, 1));
    portway_engine *eng;
    TRY(portway_engine_new(cfg, &eng));
    portway_config_free(cfg); /* the engine keeps its own copy */

    /* 2. Register the handlers; each gets an id used when submitting. */
    uint32_t primes_id, hash_id;
    TRY(portway_register_handler(eng, "primes", count_primes, NULL, &primes_id));
    TRY(portway_register_handler(eng, "fnv1a", fnv1a, NULL, &hash_id));

    /* 3. Submit jobs. submit never blocks; the payload is copied before it returns, so a
     *    stack buffer is fine. user_data is ours: here it indexes the job table. */
    static const char *const words[] = {"portway", "worker", "pool", "completion", "queue"};
    enum { N_PRIMES = 8, N_HASH = 5, N_JOBS = N_PRIMES + N_HASH };
    char labels[N_JOBS][48];
    double t0 = now_ms();
    for (int i = 0; i < N_JOBS; i++) {
        char payload[32];
        portway_request req = {0};
        req.user_data = (uint64_t)i;
        if (i < N_PRIMES) {
            unsigned long limit = 50000UL * (unsigned long)(i + 1);
            snprintf(payload, sizeof payload, "%lu", limit);
            snprintf(labels[i], sizeof labels[i], "primes below %lu", limit);
            req.handler = primes_id;
        } else {
            snprintf(payload, sizeof payload, "%s", words[i - N_PRIMES]);
            snprintf(labels[i], sizeof labels[i], "fnv1a(\"%s\")", payload);
            req.handler = hash_id;
        }
        req.payload = (const uint8_t *)payload;
        req.payload_len = strlen(payload);
        uint64_t id;
        TRY(portway_submit(eng, &req, &id));
    }

    /* 4. Collect: poll waits for at least one completion and returns up to `cap` of them.
     *    Results arrive in completion order, not submission order. */
    int done = 0, failed = 0;
    uint64_t busiest_run_ns = 0;
    while (done < N_JOBS) {
        portway_completion c[8];
        size_t n;
        TRY(portway_poll(eng, c, 8, -1, &n));
        for (size_t i = 0; i < n; i++) {
            const char *label = labels[c[i].user_data];
            if (c[i].status == PORTWAY_OK) {
                /* data is NUL-terminated for convenience (len does not count the NUL). */
                printf("  %-26s = %-16s (%s, ran %.1f ms)\n", label, (const char *)c[i].data,
                       c[i].meta_len ? c[i].meta[0].value : "?", (double)c[i].run_ns / 1e6);
                if (c[i].run_ns > busiest_run_ns) busiest_run_ns = c[i].run_ns;
            } else {
                printf("  %-26s failed: %s: %s\n", label, portway_status_str(c[i].status),
                       (const char *)c[i].data);
                failed++;
            }
        }
        /* 5. Release: frees the completion's buffers and its in-flight slot. */
        TRY(portway_release(eng, c, n));
        done += (int)n;
    }
    double wall = now_ms() - t0;

    portway_stats_record st;
    TRY(portway_stats(eng, &st));
    printf("summary: %d jobs on %llu pool workers in %.1f ms (longest job %.1f ms), %d failed\n",
           N_JOBS, (unsigned long long)st.pool_workers, wall, (double)busiest_run_ns / 1e6, failed);

    /* 6. Free the engine: it stops the pool and frees everything. */
    portway_engine_free(eng);
    return failed == 0 ? 0 : 1;
}
