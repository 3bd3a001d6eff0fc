/*
 * driver.c: the portway side of W5 (issue 16), through the C ABI. Prints one JSON line.
 *
 *   w5-driver URL N IN_FLIGHT [options]
 *
 * Offers N GETs of URL "work" (URL is the upstream's base, ending in '/') through an http
 * handler of its own, keeping IN_FLIGHT requests submitted (a closed loop: a completion is
 * replaced at once), and records each request's latency from submit to completion. Reports
 * goodput (requests answered 200 within the SLO, per second), p50 / p99 / p99.9 / max of every
 * request's latency (failures count at the time they completed), and what the upstream saw
 * (its GET /stats after the run, reset before it).
 *
 *   --limit L        portway_handler_set_concurrency(handler, L) (0 = no limit: the default)
 *   --adaptive       portway_handler_set_policy with adaptive on (max_concurrency = --limit, 0 =
 *                    the library's ceiling), set right before the timed part, after the warm-up,
 *                    so the timed part includes its climb from where it starts
 *   --timeout-ms T   each request's deadline (0 = none: the default); a request that cannot
 *                    finish in time completes PORTWAY_TIMEOUT and counts against goodput
 *   --slo-ms S       the latency a good response is within (default 100)
 *   --warmup W       requests run before the timed part (default: IN_FLIGHT)
 *   --series FILE    also writes one CSV line per timed request: submit offset (s), latency
 *                    (ms), portway status, HTTP code, queue wait in portway (ms)
 *   --down MODE:MS   takes the upstream down (POST /admin/down, MODE 500, hang or refuse) for
 *                    MS ms right before the timed part; implies --allow-failures
 *   --allow-failures failed requests (5xx, connect errors) are reported, not an exit status
 *   --offer R        an open loop instead: submits at R req/s (IN_FLIGHT caps what is in flight
 *                    at once), so the offered load does not shrink when portway holds requests
 *   --rate R         portway_handler_set_policy with rate_per_s R (set right before the timed
 *                    part, after the warm-up, so the bucket starts full there)
 *   --burst B        the token bucket's size (with --rate; 0 = the library's default)
 *   --breaker N:MS   the circuit breaker: opens after N consecutive failures, MS ms cooldown
 *   --state FILE     samples portway_handler_policy_state every 10 ms of the timed part into a
 *                    CSV: t (s), tokens, waiting, running, breaker_state, trips, rejected, limit
 *   --hedge-ms MS    hedging (portway_policy.hedge_after_ms): a GET still running after MS ms
 *                    is sent again, the first answer wins; set before the warm-up
 *   --hedge-p95      hedge after the handler's live p95 (hedge_after_p95; --hedge-ms, if any,
 *                    until the p95 is known); the warm-up fills its window
 *   --hedge-budget P hedge_budget_percent (0 = the library's default, 5)
 *
 * The JSON line also has hedges_started / hedges_won / hedges_cancelled of the timed part.
 *
 * With a policy the JSON line also has: window_s (from the policy's start to the last
 * completion), achieved_rate (the upstream's started count over window_s), ok_per_s (200s per
 * whole second of the timed part, by completion time), unavailable (PORTWAY_UNAVAILABLE
 * completions) and their unavail_p50_ms / unavail_p99_ms, the breaker's trips and, with
 * --down, recover_ms: from the upstream's return (the down request's send time + MS) to the
 * first 200 completed after it (null when none). Always: limit_end, the concurrency limit in
 * force at the end (the adaptive limit's last figure), and with --state limit_mean, the mean
 * of the sampled limits.
 *
 * The handler has no per-host connection cap (max_connections_per_host 0), so that "no limit"
 * really offers IN_FLIGHT requests at once to the upstream over HTTP/1.1 keep-alive; the
 * upstream's control endpoints go through the built-in "http" handler, outside any limit.
 * Exits 0 when every request completed (timeouts included); 1 on any other failure (a
 * connect error, a 5xx; unless --allow-failures) or when the upstream saw fewer requests than
 * were answered. fail_p50_ms / fail_p99_ms are the latencies of the requests that did not get
 * a 200 (timeouts included): how fast a caller learns that the upstream is unusable.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portway.h"

#define BATCH 512 /* completions per poll, requests per submit_batch */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, portway_status st) {
    fprintf(stderr, "w5-driver: %s: %s: %s\n", what, portway_status_str(st), portway_last_error());
    exit(1);
}

#define CHECK(call)                             \
    do {                                        \
        portway_status st_ = (call);            \
        if (st_ != PORTWAY_OK) die(#call, st_); \
    } while (0)

static void usage(void) {
    fprintf(stderr, "usage: w5-driver URL N IN_FLIGHT [--limit L] [--timeout-ms T] [--slo-ms S] "
                    "[--warmup W] [--series FILE] [--down 500|hang|refuse:MS] [--allow-failures] [--offer R]\n"
                    "                 [--rate R] [--burst B] [--breaker N:MS] [--state FILE] [--adaptive]\n"
                    "                 [--hedge-ms MS] [--hedge-p95] [--hedge-budget P]\n");
    exit(2);
}

/* A whole decimal number in [min, max], or the usage message. */
static uint64_t number(const char *s, uint64_t min, uint64_t max) {
    char *end = NULL;
    if (s == NULL || *s < '0' || *s > '9') usage();
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || v < min || v > max) usage();
    return v;
}

/* ------------------------------------------------------------------ the upstream's control */

/* One control call to the upstream through the built-in "http" (outside the measured handler
 * and its limit). Writes the body (NUL-terminated, truncated to cap) to out. */
static void control(portway_engine *eng, const char *method, const char *url, const char *path,
                    char *out, size_t cap) {
    char head[2048];
    int len = snprintf(head, sizeof head, "%s %s%s HTTP/1.1\r\nContent-Length: 0\r\n\r\n", method, url, path);
    if (len < 0 || (size_t)len >= sizeof head) usage();
    uint32_t http;
    CHECK(portway_handler_lookup(eng, "http", &http));
    portway_request req = {.handler = http, .timeout_ms = 30000, .user_data = UINT64_MAX,
                           .payload = (const uint8_t *)head, .payload_len = (size_t)len};
    uint64_t id;
    CHECK(portway_submit_wait(eng, &req, -1, &id));
    portway_completion c;
    size_t n = 0;
    while (n == 0) CHECK(portway_poll(eng, &c, 1, -1, &n));
    if (c.status != PORTWAY_OK || c.code >= 300) {
        fprintf(stderr, "w5-driver: %s %s%s: %s, HTTP %u: %.*s\n", method, url, path,
                portway_status_str((portway_status)c.status), c.code, (int)(c.len < 200 ? c.len : 200),
                (const char *)c.data);
        exit(1);
    }
    size_t k = c.len < cap - 1 ? c.len : cap - 1;
    memcpy(out, c.data, k);
    out[k] = '\0';
    CHECK(portway_release(eng, &c, 1));
}

/* The number after "key": in the upstream's stats JSON (flat, numbers only where we look). */
static double stat(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (p == NULL) {
        fprintf(stderr, "w5-driver: the upstream's stats have no %s: %s\n", key, json);
        exit(1);
    }
    return strtod(p + strlen(pat), NULL);
}

/* Polls the upstream's stats until nothing is in progress there: requests portway gave up on
 * (timeouts) keep the upstream busy until their service time ends. */
static void wait_upstream_idle(portway_engine *eng, const char *url, char *stats, size_t cap) {
    for (;;) {
        control(eng, "GET", url, "stats", stats, cap);
        if (stat(stats, "in_progress") == 0) return;
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
}

/* ------------------------------------------------------------------ the loop */

/* Where the timed part samples the handler's policy state (state.f NULL: not sampled). */
static struct {
    FILE *f;
    uint32_t handler;
    double next;
    double limit_sum; /* of the sampled concurrency limits, for limit_mean */
    uint64_t samples;
} state;

/* One policy-state line at time t (s since the timed part began), every 10 ms at most. */
static void sample_state(portway_engine *eng, double t) {
    if (state.f == NULL || t < state.next) return;
    state.next = t + 0.010;
    portway_policy_state ps;
    CHECK(portway_handler_policy_state(eng, state.handler, &ps));
    fprintf(state.f, "%.4f,%.2f,%u,%u,%u,%" PRIu64 ",%" PRIu64 ",%u\n", t, ps.tokens, ps.waiting, ps.running,
            ps.breaker_state, ps.breaker_trips, ps.breaker_rejected, ps.concurrency_limit);
    state.limit_sum += ps.concurrency_limit;
    state.samples++;
}

struct outcome {
    double submit_s, latency_s, queued_s;
    uint32_t status, code;
};

/* Keeps `in_flight` requests of `reqs` submitted until `total` completed, each request's
 * outcome in out[user_data] (out may be NULL for the warm-up). With offer > 0 (req/s) it is an
 * open loop: no more than offer x (time since t0) submitted, in_flight at most in flight. */
static void run(portway_engine *eng, portway_request *reqs, uint64_t total, uint64_t in_flight,
                struct outcome *out, double t0, double offer) {
    static portway_completion comps[BATCH];
    uint64_t submitted = 0, done = 0, holding = 0;
    while (done < total) {
        uint64_t due = total;
        if (offer > 0) {
            double d = floor(offer * (now_s() - t0)) + 1;
            if (d < (double)total) due = (uint64_t)d;
        }
        while (submitted < due && holding < in_flight) {
            uint64_t want = in_flight - holding;
            if (want > due - submitted) want = due - submitted;
            if (want > BATCH) want = BATCH;
            double t = now_s();
            for (uint64_t i = 0; i < want; i++) {
                reqs[i].user_data = submitted + i;
                if (out) out[submitted + i].submit_s = t;
            }
            size_t accepted = 0;
            portway_status st = portway_submit_batch(eng, reqs, (size_t)want, NULL, &accepted);
            submitted += accepted;
            holding += accepted;
            if (st == PORTWAY_BUSY) break;
            if (st != PORTWAY_OK) die("portway_submit_batch", st);
        }
        size_t n = 0;
        /* the open loop wakes every ms to submit what has come due */
        int32_t wait_ms = offer > 0 && submitted < total ? 1 : -1;
        CHECK(portway_poll(eng, comps, BATCH, wait_ms, &n));
        double t = now_s();
        if (out) sample_state(eng, t - t0);
        for (size_t k = 0; k < n; k++) {
            if (out) {
                struct outcome *o = &out[comps[k].user_data];
                o->latency_s = t - o->submit_s;
                o->submit_s -= t0;
                o->queued_s = (double)comps[k].queued_ns / 1e9;
                o->status = comps[k].status;
                o->code = comps[k].code;
            }
            static int told; /* the first failure that is not a timeout says why */
            if (comps[k].status != PORTWAY_OK && comps[k].status != PORTWAY_TIMEOUT && !told++)
                fprintf(stderr, "w5-driver: first error: %s: %.*s\n",
                        portway_status_str((portway_status)comps[k].status),
                        (int)(comps[k].len < 200 ? comps[k].len : 200), (const char *)comps[k].data);
        }
        CHECK(portway_release(eng, comps, n));
        holding -= n;
        done += n;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n]. */
static double pct(const double *v, uint64_t n, double p) {
    if (n == 0) return NAN;
    uint64_t rank = (uint64_t)ceil(p * (double)n);
    return v[rank ? rank - 1 : 0];
}

/* A latency in ms for the JSON line: null when there is none (no failed request). */
static const char *json_ms(char buf[32], double v) {
    if (isnan(v)) return "null";
    snprintf(buf, 32, "%.3f", v);
    return buf;
}

int main(int argc, char **argv) {
    if (argc < 4) usage();
    const char *url = argv[1];
    uint64_t n = number(argv[2], 1, 100000000);
    uint64_t in_flight = number(argv[3], 1, 1000000);
    uint64_t limit = 0, timeout_ms = 0, slo_ms = 100, warmup = in_flight;
    const char *series = NULL, *down = NULL, *breaker = NULL, *state_path = NULL;
    int allow_failures = 0, adaptive = 0, hedge_p95 = 0;
    uint64_t hedge_ms = 0, hedge_budget = 0;
    double offer = 0, rate = 0;
    uint64_t burst = 0, breaker_n = 0, breaker_ms = 0;
    for (int i = 4; i < argc; i += 2) {
        int *flag = strcmp(argv[i], "--allow-failures") == 0 ? &allow_failures
                    : strcmp(argv[i], "--adaptive") == 0     ? &adaptive
                    : strcmp(argv[i], "--hedge-p95") == 0    ? &hedge_p95
                                                             : NULL;
        if (flag) { /* an option without a value */
            *flag = 1;
            i--;
            continue;
        }
        if (i + 1 >= argc) usage();
        if (strcmp(argv[i], "--limit") == 0) limit = number(argv[i + 1], 0, UINT32_MAX);
        else if (strcmp(argv[i], "--timeout-ms") == 0) timeout_ms = number(argv[i + 1], 0, UINT32_MAX);
        else if (strcmp(argv[i], "--slo-ms") == 0) slo_ms = number(argv[i + 1], 1, UINT32_MAX);
        else if (strcmp(argv[i], "--warmup") == 0) warmup = number(argv[i + 1], 0, 100000000);
        else if (strcmp(argv[i], "--series") == 0) series = argv[i + 1];
        else if (strcmp(argv[i], "--down") == 0) down = argv[i + 1];
        else if (strcmp(argv[i], "--offer") == 0) offer = (double)number(argv[i + 1], 1, 10000000);
        else if (strcmp(argv[i], "--rate") == 0) rate = (double)number(argv[i + 1], 1, 1000000000);
        else if (strcmp(argv[i], "--burst") == 0) burst = number(argv[i + 1], 0, UINT32_MAX);
        else if (strcmp(argv[i], "--breaker") == 0) breaker = argv[i + 1];
        else if (strcmp(argv[i], "--state") == 0) state_path = argv[i + 1];
        else if (strcmp(argv[i], "--hedge-ms") == 0) hedge_ms = number(argv[i + 1], 1, UINT32_MAX);
        else if (strcmp(argv[i], "--hedge-budget") == 0) hedge_budget = number(argv[i + 1], 0, 100);
        else usage();
    }
    if (breaker) {
        char n_part[16];
        const char *colon = strchr(breaker, ':');
        if (colon == NULL || colon == breaker || (size_t)(colon - breaker) >= sizeof n_part) usage();
        memcpy(n_part, breaker, (size_t)(colon - breaker));
        n_part[colon - breaker] = '\0';
        breaker_n = number(n_part, 1, UINT32_MAX);
        breaker_ms = number(colon + 1, 1, UINT32_MAX);
    }
    if (burst && rate == 0) usage();
    int policy = rate > 0 || breaker_n > 0 || adaptive;
    uint64_t down_ms = 0;
    char down_path[128] = "";
    if (down) {
        const char *colon = strchr(down, ':');
        size_t mode_len = colon ? (size_t)(colon - down) : 0;
        if (colon == NULL || !((mode_len == 3 && strncmp(down, "500", 3) == 0) ||
                               (mode_len == 4 && strncmp(down, "hang", 4) == 0) ||
                               (mode_len == 6 && strncmp(down, "refuse", 6) == 0)))
            usage();
        down_ms = number(colon + 1, 1, UINT32_MAX);
        snprintf(down_path, sizeof down_path, "admin/down?mode=%.*s&ms=%" PRIu64, (int)mode_len, down, down_ms);
        allow_failures = 1;
    }
    size_t url_len = strlen(url);
    if (strncmp(url, "http://", 7) != 0 || url_len < 8 || url[url_len - 1] != '/') {
        fprintf(stderr, "w5-driver: URL must be the upstream's base, http://HOST:PORT/\n");
        return 2;
    }

    portway_config *cfg = portway_config_new();
    if (cfg == NULL) die("portway_config_new", PORTWAY_INTERNAL);
    CHECK(portway_config_set_max_in_flight(cfg, (uint32_t)(in_flight + 16)));
    portway_engine *eng = NULL;
    CHECK(portway_engine_new(cfg, &eng));
    portway_config_free(cfg);

    portway_http_options opts;
    CHECK(portway_http_options_default(&opts));
    opts.max_connections_per_host = 0; /* the upstream sees every request offered */
    opts.decompress = false;
    opts.proxy = "";
    opts.read_timeout_ms = 0; /* only the request's own deadline applies */
    uint32_t h;
    CHECK(portway_register_http(eng, "w5", &opts, &h));
    if (limit && !adaptive) CHECK(portway_handler_set_concurrency(eng, h, (uint32_t)limit));
    portway_policy pol;
    CHECK(portway_policy_default(&pol));
    pol.max_concurrency = (uint32_t)limit;
    pol.hedge_after_ms = (uint32_t)hedge_ms;
    pol.hedge_after_p95 = hedge_p95;
    pol.hedge_budget_percent = (uint32_t)hedge_budget;
    /* Hedging before the warm-up, so that the live p95 has its samples when the timed part begins. */
    if (hedge_ms || hedge_p95) CHECK(portway_handler_set_policy(eng, h, &pol));

    char head[2048];
    int len = snprintf(head, sizeof head, "GET %swork HTTP/1.1\r\n\r\n", url);
    if (len < 0 || (size_t)len >= sizeof head) usage();
    portway_request *reqs = calloc(BATCH, sizeof *reqs);
    struct outcome *out = calloc(n, sizeof *out);
    double *lat = calloc(n, sizeof *lat);
    double *queued = calloc(n, sizeof *queued);
    double *fail_lat = calloc(n, sizeof *fail_lat);
    if (reqs == NULL || out == NULL || lat == NULL || queued == NULL || fail_lat == NULL) return 1;
    for (size_t i = 0; i < BATCH; i++)
        reqs[i] = (portway_request){.handler = h, .timeout_ms = (uint32_t)timeout_ms,
                                    .payload = (const uint8_t *)head, .payload_len = (size_t)len};

    static char stats[8192];
    if (warmup) run(eng, reqs, warmup, in_flight, NULL, 0, 0); /* opens the connections */
    wait_upstream_idle(eng, url, stats, sizeof stats);
    control(eng, "POST", url, "stats/reset", stats, sizeof stats);
    double down_sent = now_s();
    if (down) control(eng, "POST", url, down_path, stats, sizeof stats);
    if (state_path) {
        state.f = fopen(state_path, "w");
        if (state.f == NULL) {
            perror(state_path);
            return 1;
        }
        state.handler = h;
        fprintf(state.f, "t_s,tokens,waiting,running,breaker_state,trips,rejected,limit\n");
    }
    double policy_at = now_s();
    if (policy) { /* after the warm-up: the bucket starts full here, the breaker closed */
        pol.adaptive = adaptive;
        pol.rate_per_s = rate;
        pol.burst = (uint32_t)burst;
        pol.breaker_failures = (uint32_t)breaker_n;
        pol.breaker_cooldown_ms = (uint32_t)breaker_ms;
        CHECK(portway_handler_set_policy(eng, h, &pol));
    }

    portway_policy_state ps0; /* the hedge counters of the warm-up, left out of the figures */
    CHECK(portway_handler_policy_state(eng, h, &ps0));
    double t0 = now_s();
    sample_state(eng, 0);
    run(eng, reqs, n, in_flight, out, t0, offer);
    double secs = now_s() - t0, window = now_s() - policy_at;
    portway_policy_state ps;
    CHECK(portway_handler_policy_state(eng, h, &ps));
    if (state.f) {
        state.next = 0;
        sample_state(eng, secs);
        if (fclose(state.f) != 0) {
            perror(state_path);
            return 1;
        }
    }
    /* 200s per whole second of the timed part (by completion time) and the breaker's recovery:
     * the first 200 completed once the upstream is back. */
    uint64_t whole = (uint64_t)secs, unavailable = 0;
    uint64_t *ok_per_s = calloc(whole + 1, sizeof *ok_per_s);
    double *unavail_lat = calloc(n, sizeof *unavail_lat);
    if (ok_per_s == NULL || unavail_lat == NULL) return 1;
    double up_at = down_sent - t0 + (double)down_ms / 1e3, first_ok = NAN;
    for (uint64_t i = 0; i < n; i++) {
        double done_at = out[i].submit_s + out[i].latency_s;
        if (out[i].status == (uint32_t)PORTWAY_UNAVAILABLE) unavail_lat[unavailable++] = out[i].latency_s * 1e3;
        if (out[i].status != PORTWAY_OK || out[i].code != 200) continue;
        if (done_at < (double)whole) ok_per_s[(uint64_t)done_at]++;
        if (down && done_at >= up_at && !(done_at >= first_ok)) first_ok = done_at;
    }
    qsort(unavail_lat, unavailable, sizeof *unavail_lat, cmp_double);

    uint64_t ok = 0, good = 0, timeouts = 0, errors = 0, failed = 0;
    for (uint64_t i = 0; i < n; i++) {
        lat[i] = out[i].latency_s * 1e3;
        queued[i] = out[i].queued_s * 1e3;
        if (out[i].status == PORTWAY_OK && out[i].code == 200) {
            ok++;
            if (lat[i] <= (double)slo_ms) good++;
            continue;
        }
        fail_lat[failed++] = lat[i];
        if (out[i].status == PORTWAY_TIMEOUT)
            timeouts++;
        else if (out[i].status == (uint32_t)PORTWAY_UNAVAILABLE)
            continue; /* the breaker's answer: counted in unavailable, not an error */
        else
            errors++;
    }
    if (series) {
        FILE *f = fopen(series, "w");
        if (f == NULL) {
            perror(series);
            return 1;
        }
        fprintf(f, "submit_s,latency_ms,status,code,queued_ms\n");
        for (uint64_t i = 0; i < n; i++)
            fprintf(f, "%.6f,%.3f,%u,%u,%.3f\n", out[i].submit_s, lat[i], out[i].status, out[i].code, queued[i]);
        if (fclose(f) != 0) {
            perror(series);
            return 1;
        }
    }
    qsort(lat, n, sizeof *lat, cmp_double);
    qsort(queued, n, sizeof *queued, cmp_double);
    qsort(fail_lat, failed, sizeof *fail_lat, cmp_double);

    /* What the upstream saw: once it is idle, every request it admitted has been served. */
    wait_upstream_idle(eng, url, stats, sizeof stats);
    char f50[32], f99[32];
    double started = stat(stats, "started"), served = stat(stats, "served");
    portway_engine_free(eng);

    printf("{\"n\": %" PRIu64 ", \"in_flight\": %" PRIu64 ", \"limit\": %" PRIu64 ", \"timeout_ms\": %" PRIu64
           ", \"slo_ms\": %" PRIu64 ", \"secs\": %.6f, \"ok\": %" PRIu64 ", \"good\": %" PRIu64
           ", \"timeouts\": %" PRIu64 ", \"errors\": %" PRIu64 ", \"goodput\": %.1f, \"throughput\": %.1f"
           ", \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"p999_ms\": %.3f, \"max_ms\": %.3f, \"queued_p50_ms\": %.3f"
           ", \"queued_p99_ms\": %.3f, \"server_started\": %.0f, \"server_served\": %.0f"
           ", \"server_max_in_progress\": %.0f, \"server_over_knee\": %.0f, \"server_tails\": %.0f"
           ", \"server_abandoned\": %.0f, \"server_down_rejected\": %.0f, \"not_ok\": %" PRIu64
           ", \"fail_p50_ms\": %s, \"fail_p99_ms\": %s, \"down\": \"%s\"",
           n, in_flight, limit, timeout_ms, slo_ms, secs, ok, good, timeouts, errors, (double)good / secs,
           (double)ok / secs, pct(lat, n, 0.50), pct(lat, n, 0.99), pct(lat, n, 0.999), pct(lat, n, 1.0),
           pct(queued, n, 0.50), pct(queued, n, 0.99), started, served, stat(stats, "max_in_progress"),
           stat(stats, "over_knee"), stat(stats, "tails"), stat(stats, "abandoned"),
           stat(stats, "down_rejected"), failed, json_ms(f50, pct(fail_lat, failed, 0.50)),
           json_ms(f99, pct(fail_lat, failed, 0.99)),
           down ? down : "");
    char u50[32], u99[32], rec[32], lmean[32];
    printf(", \"offer\": %.0f, \"rate\": %.3f, \"burst\": %" PRIu64 ", \"breaker\": \"%s\", \"window_s\": %.6f"
           ", \"achieved_rate\": %.2f, \"unavailable\": %" PRIu64 ", \"unavail_p50_ms\": %s, \"unavail_p99_ms\": %s"
           ", \"breaker_trips\": %" PRIu64 ", \"breaker_rejected\": %" PRIu64 ", \"rate_timeouts\": %" PRIu64
           ", \"recover_ms\": %s, \"hedge_ms\": %" PRIu64 ", \"hedge_p95\": %s, \"hedges_started\": %" PRIu64
           ", \"hedges_won\": %" PRIu64 ", \"hedges_cancelled\": %" PRIu64
           ", \"adaptive\": %s, \"limit_end\": %u, \"limit_mean\": %s, \"ok_per_s\": [",
           offer, rate, burst, breaker ? breaker : "", window, started / window, unavailable,
           json_ms(u50, pct(unavail_lat, unavailable, 0.50)), json_ms(u99, pct(unavail_lat, unavailable, 0.99)),
           ps.breaker_trips, ps.breaker_rejected, ps.rate_timeouts,
           json_ms(rec, isnan(first_ok) ? NAN : (first_ok - up_at) * 1e3), hedge_ms,
           hedge_p95 ? "true" : "false", ps.hedges_started - ps0.hedges_started, ps.hedges_won - ps0.hedges_won,
           ps.hedges_cancelled - ps0.hedges_cancelled, adaptive ? "true" : "false",
           ps.concurrency_limit, json_ms(lmean, state.samples ? state.limit_sum / (double)state.samples : NAN));
    for (uint64_t s = 0; s < whole; s++) printf("%s%" PRIu64, s ? ", " : "", ok_per_s[s]);
    printf("]}\n");
    int bad = (errors != 0 && !allow_failures) || started < (double)ok || served != started;
    if (bad)
        fprintf(stderr, "w5-driver: %" PRIu64 " errors; the upstream started %.0f and served %.0f for %" PRIu64
                        " answered\n", errors, started, served, ok);
    free(reqs);
    free(out);
    free(lat);
    free(queued);
    free(fail_lat);
    free(ok_per_s);
    free(unavail_lat);
    return bad;
}
