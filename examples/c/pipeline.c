/*
 * pipeline.c: chaining native handlers into a pipeline.
 *
 * Three stages -- parse -> transform -> format -- are registered as ordinary native handlers
 * and then combined with portway_pipeline_new. A request to the pipeline runs each stage in
 * turn on the worker pool; a stage's response becomes the next stage's payload. Each stage
 * has its own concurrency limit (for example, "format" might write to a resource that allows
 * only one user at a time). The first failing stage ends the request with its error.
 *
 *   build:  make examples        run:  target/c/examples/pipeline
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdatomic.h>
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

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Per-stage bookkeeping, passed to each handler as its ctx: how many run at once. */
struct stage_stats {
    const char *name;
    atomic_int running;
    atomic_int peak;
};

static void enter(struct stage_stats *s) {
    int now = atomic_fetch_add(&s->running, 1) + 1;
    int peak = atomic_load(&s->peak);
    while (now > peak && !atomic_compare_exchange_weak(&s->peak, &peak, now)) {
    }
}
static void leave(struct stage_stats *s) { atomic_fetch_sub(&s->running, 1); }

/* Stage 1, "parse": input "name,quantity,unit_price_cents"; output "NAME QTY CENTS"
 * (space separated, validated). Bad records fail here and never reach later stages. */
static void parse(void *ctx, portway_call *call) {
    struct stage_stats *s = ctx;
    enter(s);
    const uint8_t *d;
    size_t len;
    portway_call_payload(call, &d, &len);
    char line[128], name[64];
    unsigned qty, cents;
    if (len >= sizeof line) len = sizeof line - 1;
    memcpy(line, d, len);
    line[len] = '\0';
    if (sscanf(line, "%63[^,],%u,%u", name, &qty, &cents) != 3) {
        char msg[160];
        snprintf(msg, sizeof msg, "parse: malformed record \"%s\"", line);
        portway_call_fail(call, msg);
    } else {
        char out[128];
        int n = snprintf(out, sizeof out, "%s %u %u", name, qty, cents);
        sleep_ms(2); /* pretend parsing costs something */
        portway_call_respond(call, (const uint8_t *)out, (size_t)n);
    }
    leave(s);
}

/* Stage 2, "transform": computes the line total and upper-cases the name. */
static void transform(void *ctx, portway_call *call) {
    struct stage_stats *s = ctx;
    enter(s);
    const uint8_t *d;
    size_t len;
    portway_call_payload(call, &d, &len);
    char name[64];
    unsigned qty, cents;
    /* The previous stage's response is NUL-free text of known length; copy to terminate. */
    char in[128];
    if (len >= sizeof in) len = sizeof in - 1;
    memcpy(in, d, len);
    in[len] = '\0';
    sscanf(in, "%63s %u %u", name, &qty, &cents);
    for (char *p = name; *p; p++) *p = (char)toupper((unsigned char)*p);
    char out[128];
    int n = snprintf(out, sizeof out, "%s %u %llu", name, qty,
                     (unsigned long long)qty * cents);
    sleep_ms(5);
    portway_call_respond(call, (const uint8_t *)out, (size_t)n);
    leave(s);
}

/* Stage 3, "format": renders a receipt line. Limited to one call at a time below. */
static void format(void *ctx, portway_call *call) {
    struct stage_stats *s = ctx;
    enter(s);
    const uint8_t *d;
    size_t len;
    portway_call_payload(call, &d, &len);
    char in[128], name[64];
    unsigned qty;
    unsigned long long total;
    if (len >= sizeof in) len = sizeof in - 1;
    memcpy(in, d, len);
    in[len] = '\0';
    sscanf(in, "%63s %u %llu", name, &qty, &total);
    char out[128];
    int n = snprintf(out, sizeof out, "%-10s x%-3u %6llu.%02llu", name, qty, total / 100,
                     total % 100);
    sleep_ms(1);
    portway_call_set_code(call, (uint32_t)(total % 100000)); /* code: total cents, capped */
    portway_call_respond(call, (const uint8_t *)out, (size_t)n);
    leave(s);
}

int main(void) {
    portway_config *cfg = portway_config_new();
    TRY(portway_config_set_pool_workers(cfg, 4));
    TRY(portway_config_set_runtime_threads(cfg, 1));
    TRY(portway_config_set_default_timeout_ms(cfg, 2000)); /* covers the whole pipeline */
    portway_engine *eng;
    TRY(portway_engine_new(cfg, &eng));
    portway_config_free(cfg);

    /* Register the stages, give each its own concurrency limit, then chain them. */
    static struct stage_stats sp = {"parse", 0, 0}, st = {"transform", 0, 0}, sf = {"format", 0, 0};
    uint32_t stages[3];
    TRY(portway_register_handler(eng, "parse", parse, &sp, &stages[0]));
    TRY(portway_register_handler(eng, "transform", transform, &st, &stages[1]));
    TRY(portway_register_handler(eng, "format", format, &sf, &stages[2]));
    TRY(portway_handler_set_concurrency(eng, stages[0], 4));
    TRY(portway_handler_set_concurrency(eng, stages[1], 2));
    TRY(portway_handler_set_concurrency(eng, stages[2], 1));
    uint32_t receipt;
    TRY(portway_pipeline_new(eng, "receipt", stages, 3, &receipt));

    /* Submit every record in one batch. One record is malformed on purpose. */
    static const char *const records[] = {
        "apples,12,45",   "bread,1,329",  "coffee,2,899", "dates,30,12",
        "eggs,6,35",      "flour,1,249",  "not a record", "grapes,3,199",
        "honey,1,1099",   "ice,4,150",    "jam,2,375",    "kale,5,89",
    };
    enum { N = sizeof records / sizeof records[0] };
    portway_request reqs[N];
    for (int i = 0; i < N; i++) {
        reqs[i] = (portway_request){.handler = receipt,
                                    .user_data = (uint64_t)i,
                                    .payload = (const uint8_t *)records[i],
                                    .payload_len = strlen(records[i])};
    }
    size_t accepted;
    TRY(portway_submit_batch(eng, reqs, N, NULL, &accepted));

    /* Collect the results, then print them in input order. */
    char lines[N][160];
    int ok = 0, failed = 0;
    unsigned long long cents = 0;
    for (size_t done = 0; done < accepted;) {
        portway_completion c[N];
        size_t n;
        TRY(portway_poll(eng, c, N, -1, &n));
        for (size_t i = 0; i < n; i++) {
            if (c[i].status == PORTWAY_OK) {
                snprintf(lines[c[i].user_data], sizeof lines[0], "  %s", (const char *)c[i].data);
                cents += c[i].code;
                ok++;
            } else {
                snprintf(lines[c[i].user_data], sizeof lines[0], "  (skipped: %s: %s)",
                         portway_status_str(c[i].status), (const char *)c[i].data);
                failed++;
            }
        }
        TRY(portway_release(eng, c, n));
        done += n;
    }
    for (int i = 0; i < N; i++) puts(lines[i]);
    printf("  %-15s %6llu.%02llu\n", "TOTAL", cents / 100, cents % 100);
    printf("summary: %d ok, %d failed; peak concurrency parse=%d (limit 4) transform=%d "
           "(limit 2) format=%d (limit 1)\n",
           ok, failed, atomic_load(&sp.peak), atomic_load(&st.peak), atomic_load(&sf.peak));

    portway_engine_free(eng);
    /* Success: exactly the malformed record failed, and the limits held. */
    int limits_held = atomic_load(&st.peak) <= 2 && atomic_load(&sf.peak) <= 1;
    return (ok == N - 1 && failed == 1 && limits_held) ? 0 : 1;
}
