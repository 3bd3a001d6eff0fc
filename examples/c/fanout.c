/*
 * fanout.c: many HTTP GETs at once through portway's "http" handler, from one C thread.
 *
 * Keeps CONCURRENCY requests in flight until N have completed: it submits in batches with
 * portway_submit_batch, collects completions in batches with portway_poll and hands them back
 * with portway_release (which frees each request's in-flight slot). Then it prints the rate,
 * the latency percentiles (accepted -> finished, from each completion's queued_ns + run_ns)
 * and how many responses had each status.
 *
 *   usage:  fanout URL [N=1000] [CONCURRENCY=64]
 *           A "{i}" in URL is replaced by the request's index (0 .. N-1), e.g.
 *           fanout 'http://127.0.0.1:8080/items/{i}' 20000 128
 *   exit:   0 when every request got an HTTP response below 400; 1 otherwise; 2 on bad usage.
 *   build:  make examples        run against the demo server:
 *           cargo run --release --example demo_server   (prints LISTENING http://127.0.0.1:PORT)
 *           target/c/examples/fanout 'http://127.0.0.1:PORT/items/{i}' 10000 64
 *
 * The built-in "http" handler keeps at most 256 connections per host; beyond that, requests
 * wait inside portway for a connection (portway_register_http sets other limits).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portway.h"

#define BATCH 256                 /* requests per submit, completions per poll */
#define REQUEST_TIMEOUT_MS 30000  /* per request, queue time included */
#define MAX_URL 4096
#define MAX_CODE 1000             /* HTTP status codes are 100..999 */

static void usage(const char *prog) {
    fprintf(stderr,
            "usage: %s URL [N] [CONCURRENCY]\n"
            "  GETs URL N times (default 1000), CONCURRENCY at a time (default 64), through\n"
            "  portway's \"http\" handler. A \"{i}\" in URL becomes the request index.\n"
            "  Exits 0 when every request got an HTTP response below 400, 1 otherwise.\n",
            prog);
}

/* Parses a decimal count in [1, max]; returns 0 on success. */
static int parse_count(const char *text, unsigned long max, unsigned long *out) {
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v == 0 || v > max) return -1;
    *out = v;
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The value at quantile q (0..1) of sorted[0..n), nearest rank. */
static double percentile_ms(const uint64_t *sorted, size_t n, double q) {
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank == 0) rank = 1;
    if (rank > n) rank = n;
    return (double)sorted[rank - 1] / 1e6;
}

/* The request head for request `index`: "GET <url> HTTP/1.1", with "{i}" replaced. */
static int build_payload(char *buf, size_t cap, const char *url, unsigned long index) {
    const char *mark = strstr(url, "{i}");
    int n;
    if (mark != NULL)
        n = snprintf(buf, cap, "GET %.*s%lu%s HTTP/1.1\r\nAccept: */*\r\n\r\n", (int)(mark - url),
                     url, index, mark + 3);
    else
        n = snprintf(buf, cap, "GET %s HTTP/1.1\r\nAccept: */*\r\n\r\n", url);
    return (n < 0 || (size_t)n >= cap) ? -1 : n;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        usage(argv[0]);
        return 2;
    }
    const char *url = argv[1];
    unsigned long total = 1000, concurrency = 64;
    if ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
        strlen(url) > MAX_URL) {
        fprintf(stderr, "fanout: URL must start with http:// or https:// (and be under %d bytes)\n",
                MAX_URL);
        usage(argv[0]);
        return 2;
    }
    if (argc > 2 && parse_count(argv[2], 100000000UL, &total) != 0) {
        fprintf(stderr, "fanout: N must be a whole number from 1 to 100000000, not '%s'\n", argv[2]);
        return 2;
    }
    if (argc > 3 && parse_count(argv[3], 65536UL, &concurrency) != 0) {
        fprintf(stderr, "fanout: CONCURRENCY must be a whole number from 1 to 65536, not '%s'\n",
                argv[3]);
        return 2;
    }
    if (concurrency > total) concurrency = total;

    /* Slots are held from submit until release, so max_in_flight caps the concurrency. */
    portway_config *cfg = portway_config_new();
    portway_engine *eng = NULL;
    uint32_t http = 0;
    if (cfg == NULL || portway_config_set_max_in_flight(cfg, (uint32_t)concurrency) != PORTWAY_OK ||
        portway_engine_new(cfg, &eng) != PORTWAY_OK ||
        portway_handler_lookup(eng, "http", &http) != PORTWAY_OK) {
        fprintf(stderr, "fanout: cannot start portway: %s\n", portway_last_error());
        portway_config_free(cfg);
        portway_engine_free(eng);
        return 1;
    }
    portway_config_free(cfg);

    size_t slot_cap = strlen(url) + 64; /* the URL, an index, the request line and a header */
    char *payloads = malloc(BATCH * slot_cap);
    portway_request *reqs = calloc(BATCH, sizeof *reqs);
    portway_completion *comps = calloc(BATCH, sizeof *comps);
    uint64_t *latency_ns = malloc(total * sizeof *latency_ns);
    if (payloads == NULL || reqs == NULL || comps == NULL || latency_ns == NULL) {
        fprintf(stderr, "fanout: out of memory\n");
        return 1;
    }

    uint64_t by_code[MAX_CODE] = {0};              /* HTTP responses, by HTTP status */
    uint64_t by_status[PORTWAY_STATUS_SLOTS] = {0}; /* failures without a response, by portway status */
    char first_error[256] = "";
    unsigned long submitted = 0, done = 0, in_flight = 0;
    int fatal = 0;

    printf("fanout: %lu GETs of %s, %lu at a time, through portway %s\n", total, url, concurrency,
           portway_version());
    fflush(stdout);
    double start = now_s();
    while (done < total) {
        /* Top up to `concurrency` requests in flight with one batch submit. */
        size_t want = concurrency - in_flight;
        if (want > total - submitted) want = total - submitted;
        if (want > BATCH) want = BATCH;
        if (want > 0) {
            for (size_t k = 0; k < want; k++) {
                char *p = payloads + k * slot_cap;
                int len = build_payload(p, slot_cap, url, submitted + k);
                if (len < 0) {
                    fprintf(stderr, "fanout: request head does not fit\n");
                    return 1;
                }
                reqs[k] = (portway_request){.handler = http,
                                            .timeout_ms = REQUEST_TIMEOUT_MS,
                                            .user_data = submitted + k,
                                            .payload = (const uint8_t *)p,
                                            .payload_len = (size_t)len};
            }
            size_t accepted = 0;
            portway_status st = portway_submit_batch(eng, reqs, want, NULL, &accepted);
            submitted += accepted;
            in_flight += accepted;
            /* BUSY only means "poll first"; anything else (a bad URL, say) ends the run. */
            if (st != PORTWAY_OK && st != PORTWAY_BUSY) {
                fprintf(stderr, "fanout: portway_submit_batch: %s: %s\n", portway_status_str(st),
                        portway_last_error());
                fatal = 1;
                break;
            }
        }

        /* Collect what has finished (waiting up to a second), then release it. */
        size_t n = 0;
        portway_status st = portway_poll(eng, comps, BATCH, 1000, &n);
        if (st != PORTWAY_OK) {
            fprintf(stderr, "fanout: portway_poll: %s: %s\n", portway_status_str(st),
                    portway_last_error());
            fatal = 1;
            break;
        }
        for (size_t k = 0; k < n; k++) {
            const portway_completion *c = &comps[k];
            latency_ns[done + k] = c->queued_ns + c->run_ns;
            if (c->status == PORTWAY_OK && c->code < MAX_CODE) {
                by_code[c->code]++;
            } else {
                by_status[c->status < PORTWAY_STATUS_SLOTS ? c->status : PORTWAY_INTERNAL]++;
                if (first_error[0] == '\0')
                    snprintf(first_error, sizeof first_error, "%s: %.*s",
                             portway_status_str(c->status), (int)(c->len < 200 ? c->len : 200),
                             (const char *)c->data);
            }
        }
        portway_release(eng, comps, n);
        in_flight -= n;
        done += n;
    }
    double elapsed = now_s() - start;

    /* Every accepted request still gets its completion; drain them so nothing leaks. */
    portway_engine_shutdown(eng, PORTWAY_CANCEL_NOW, 0);
    for (;;) {
        size_t n = 0;
        if (portway_poll(eng, comps, BATCH, 1000, &n) != PORTWAY_OK) break;
        portway_release(eng, comps, n);
    }
    portway_engine_free(eng);

    int failed = fatal;
    if (done > 0) {
        qsort(latency_ns, done, sizeof *latency_ns, cmp_u64);
        printf("  completed    %lu in %.3f s = %.0f requests/s\n", done, elapsed,
               (double)done / (elapsed > 0 ? elapsed : 1e-9));
        printf("  latency      p50 %.2f ms   p90 %.2f ms   p99 %.2f ms   max %.2f ms\n",
               percentile_ms(latency_ns, done, 0.50), percentile_ms(latency_ns, done, 0.90),
               percentile_ms(latency_ns, done, 0.99), percentile_ms(latency_ns, done, 1.0));
    }
    for (unsigned code = 0; code < MAX_CODE; code++) {
        if (by_code[code] == 0) continue;
        printf("  HTTP %-3u     %" PRIu64 "\n", code, by_code[code]);
        if (code >= 400) failed = 1;
    }
    for (unsigned s = 0; s < PORTWAY_STATUS_SLOTS; s++) {
        if (by_status[s] == 0) continue;
        printf("  %-24s %" PRIu64 "\n", portway_status_str(s), by_status[s]);
        failed = 1;
    }
    if (first_error[0] != '\0') printf("  first error: %s\n", first_error);
    if (done < total) {
        printf("  %lu of %lu requests did not run\n", total - done, total);
        failed = 1;
    }

    free(payloads);
    free(reqs);
    free(comps);
    free(latency_ns);
    if (failed) fprintf(stderr, "fanout: some requests failed\n");
    return failed ? 1 : 0;
}
