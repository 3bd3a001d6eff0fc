/*
 * test_native.c: native handlers on the worker pool (respond, fail, code, meta, no response,
 * double respond, cancellation seen by the handler, per-handler concurrency) and pipelines.
 */
#include "check.h"

#include <ctype.h>
#include <stdatomic.h>

/* ---------------------------------------------------------------- handlers */

/* Uppercases the payload, sets code 201 and two meta pairs. */
static void h_upper(void *ctx, portway_call *call) {
    (void)ctx;
    const uint8_t *d = NULL;
    size_t n = 0;
    if (portway_call_payload(call, &d, &n) != PORTWAY_OK) return;
    char *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++) out[i] = (char)toupper(d[i]);
    char ud[32];
    snprintf(ud, sizeof ud, "%llu", (unsigned long long)portway_call_user_data(call));
    portway_call_set_code(call, 201);
    portway_call_add_meta(call, "content-type", "text/plain");
    portway_call_add_meta(call, "user-data", ud);
    portway_call_respond(call, (const uint8_t *)out, n);
    free(out);
}

/* Responds with its own payload minus the first byte, then sets code 1 if the payload it was
 * given is still intact after responding (it stays the handler's until it returns). */
static void h_tail(void *ctx, portway_call *call) {
    (void)ctx;
    const uint8_t *d = NULL;
    size_t n = 0;
    portway_call_payload(call, &d, &n);
    if (n == 0) {
        portway_call_fail(call, "empty payload");
        return;
    }
    uint8_t *copy = malloc(n);
    memcpy(copy, d, n);
    portway_call_respond(call, d + 1, n - 1);
    portway_call_set_code(call, memcmp(copy, d, n) == 0 ? 1 : 2);
    free(copy);
}

static void h_fail(void *ctx, portway_call *call) {
    (void)ctx;
    portway_call_set_code(call, 42);
    portway_call_fail(call, "deliberate failure");
}

static void h_silent(void *ctx, portway_call *call) {
    (void)ctx;
    (void)call; /* returns without responding */
}

/* Results of the second respond/fail inside h_twice. */
static atomic_uint twice_second_respond = 99;
static atomic_uint twice_fail_after = 99;
static void h_twice(void *ctx, portway_call *call) {
    (void)ctx;
    portway_call_respond(call, (const uint8_t *)"first", 5);
    atomic_store(&twice_second_respond, portway_call_respond(call, (const uint8_t *)"second", 6));
    atomic_store(&twice_fail_after, portway_call_fail(call, "late"));
}

/* Loops until cancelled (at most 5 s), records what it saw. */
static atomic_int spin_started = 0;
static atomic_int spin_saw_cancel = 0;
static void h_spin(void *ctx, portway_call *call) {
    (void)ctx;
    atomic_store(&spin_started, 1);
    double t0 = now_ms();
    while (!portway_call_is_cancelled(call)) {
        if (now_ms() - t0 > 5000) {
            portway_call_fail(call, "never cancelled");
            return;
        }
        sleep_ms(1);
    }
    atomic_store(&spin_saw_cancel, 1);
    /* Anything responded after cancellation is discarded. */
    portway_call_respond(call, (const uint8_t *)"too late", 8);
}

/* Tracks how many calls run at once. */
static atomic_int gate_now = 0;
static atomic_int gate_max = 0;
static atomic_int gate_calls = 0;
static void h_gate(void *ctx, portway_call *call) {
    (void)ctx;
    int cur = atomic_fetch_add(&gate_now, 1) + 1;
    int m = atomic_load(&gate_max);
    while (cur > m && !atomic_compare_exchange_weak(&gate_max, &m, cur)) {
    }
    sleep_ms(3);
    atomic_fetch_add(&gate_calls, 1);
    atomic_fetch_sub(&gate_now, 1);
    portway_call_respond(call, NULL, 0);
}

/* Appends the character in ctx to the payload; counts its calls. */
struct stage {
    char tag;
    atomic_int calls;
};
static void h_append(void *ctx, portway_call *call) {
    struct stage *s = ctx;
    atomic_fetch_add(&s->calls, 1);
    const uint8_t *d = NULL;
    size_t n = 0;
    portway_call_payload(call, &d, &n);
    char *out = malloc(n + 1);
    if (n) memcpy(out, d, n);
    out[n] = s->tag;
    portway_call_respond(call, (const uint8_t *)out, n + 1);
    free(out);
}

static atomic_int failstage_calls = 0;
static void h_failstage(void *ctx, portway_call *call) {
    (void)ctx;
    atomic_fetch_add(&failstage_calls, 1);
    portway_call_fail(call, "stage failed");
}

/* ---------------------------------------------------------------- helpers */

static portway_engine *new_engine(uint32_t pool) {
    portway_config *cfg = portway_config_new();
    CHECK(cfg != NULL);
    CHECK_OK(portway_config_set_pool_workers(cfg, pool));
    CHECK_OK(portway_config_set_runtime_threads(cfg, 2));
    portway_engine *eng = new_engine_cfg(cfg);
    portway_config_free(cfg);
    return eng;
}

static uint32_t reg(portway_engine *eng, const char *name, portway_handler_fn fn, void *ctx) {
    uint32_t id = 0;
    CHECK_OK(portway_register_handler(eng, name, fn, ctx, &id));
    CHECK(lookup(eng, name) == id);
    return id;
}

static portway_completion run(portway_engine *eng, uint32_t h, const char *payload) {
    portway_request r = make_req(h, payload, 5000, 77);
    uint64_t id = 0;
    CHECK_OK(portway_submit(eng, &r, &id));
    return wait_for(eng, id, 10000);
}

#define DATA_IS(c, s) ((c).len == strlen(s) && memcmp((c).data, (s), (c).len) == 0 && (c).data[(c).len] == '\0')

/* ---------------------------------------------------------------- tests */

static void test_respond_fail_meta(void) {
    portway_engine *eng = new_engine(2);
    uint32_t up = reg(eng, "upper", h_upper, NULL);
    uint32_t fail = reg(eng, "fail", h_fail, NULL);
    uint32_t silent = reg(eng, "silent", h_silent, NULL);
    uint32_t twice = reg(eng, "twice", h_twice, NULL);

    /* Duplicate names are refused (including built-ins); bad names too. */
    uint32_t dup = 0;
    CHECK_ST(portway_register_handler(eng, "upper", h_fail, NULL, &dup), PORTWAY_INVALID_ARGUMENT);
    CHECK(portway_last_error()[0] != '\0');
    CHECK_ST(portway_register_handler(eng, "echo", h_fail, NULL, &dup), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_register_handler(eng, "", h_fail, NULL, &dup), PORTWAY_INVALID_ARGUMENT);
    char longname[300];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_ST(portway_register_handler(eng, longname, h_fail, NULL, &dup), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_register_handler(eng, "nofn", NULL, NULL, &dup), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_register_handler(eng, "noout", h_fail, NULL, NULL), PORTWAY_INVALID_ARGUMENT);
    CHECK(lookup(eng, "upper") == up);

    portway_completion c = run(eng, up, "hello");
    CHECK(c.status == PORTWAY_OK);
    CHECK(DATA_IS(c, "HELLO"));
    CHECK(c.code == 201);
    CHECK(c.user_data == 77);
    CHECK(c.meta_len == 2 && c.meta != NULL);
    CHECK(strcmp(c.meta[0].key, "content-type") == 0 && strcmp(c.meta[0].value, "text/plain") == 0);
    CHECK(strcmp(c.meta[1].key, "user-data") == 0 && strcmp(c.meta[1].value, "77") == 0);
    CHECK_OK(portway_release(eng, &c, 1));

    /* A response taken from the payload itself, short (kept in the call) and long. */
    uint32_t tail = reg(eng, "tail", h_tail, NULL);
    c = run(eng, tail, "xhello");
    CHECK(c.status == PORTWAY_OK && c.code == 1);
    CHECK(DATA_IS(c, "hello"));
    CHECK_OK(portway_release(eng, &c, 1));
    char big[301];
    for (size_t i = 0; i < sizeof big - 1; i++) big[i] = (char)('a' + i % 26);
    big[sizeof big - 1] = '\0';
    c = run(eng, tail, big);
    CHECK(c.status == PORTWAY_OK && c.code == 1);
    CHECK(DATA_IS(c, big + 1));
    CHECK_OK(portway_release(eng, &c, 1));

    c = run(eng, fail, "x");
    CHECK(c.status == PORTWAY_HANDLER_ERROR);
    CHECK(DATA_IS(c, "deliberate failure"));
    CHECK(c.code == 42);
    CHECK_OK(portway_release(eng, &c, 1));

    c = run(eng, silent, "x");
    CHECK(c.status == PORTWAY_HANDLER_ERROR);
    CHECK(c.len > 0 && c.data[c.len] == '\0'); /* a message saying why */
    CHECK_OK(portway_release(eng, &c, 1));

    c = run(eng, twice, "x");
    CHECK(c.status == PORTWAY_OK);
    CHECK(DATA_IS(c, "first"));
    CHECK(atomic_load(&twice_second_respond) == PORTWAY_INVALID_ARGUMENT);
    CHECK(atomic_load(&twice_fail_after) == PORTWAY_INVALID_ARGUMENT);
    CHECK_OK(portway_release(eng, &c, 1));

    struct portway_stats st;
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.pool_workers == 2);
    CHECK(st.completed[PORTWAY_OK] == 4);
    CHECK(st.completed[PORTWAY_HANDLER_ERROR] == 2);
    CHECK(st.in_flight == 0);
    portway_engine_free(eng);
}

static void test_cancel_seen_by_handler(void) {
    portway_engine *eng = new_engine(2);
    uint32_t spin = reg(eng, "spin", h_spin, NULL);
    portway_request r = make_req(spin, "", 0, 5);
    uint64_t id = 0;
    CHECK_OK(portway_submit(eng, &r, &id));
    double t0 = now_ms();
    while (!atomic_load(&spin_started)) {
        CHECK(now_ms() - t0 < patience_ms(5000));
        sleep_ms(1);
    }
    CHECK_OK(portway_cancel(eng, id));
    portway_completion c = wait_for(eng, id, 5000);
    CHECK(c.status == PORTWAY_CANCELLED);
    CHECK(c.user_data == 5);
    CHECK_OK(portway_release(eng, &c, 1));
    /* The handler observes the cancellation and returns by itself. */
    t0 = now_ms();
    while (!atomic_load(&spin_saw_cancel)) {
        CHECK(now_ms() - t0 < patience_ms(5000));
        sleep_ms(1);
    }
    CHECK_ST(portway_cancel(eng, id), PORTWAY_NOT_FOUND);
    portway_engine_free(eng);
}

static void test_concurrency_limit(void) {
    portway_engine *eng = new_engine(4);
    uint32_t gate = reg(eng, "gate", h_gate, NULL);
    CHECK_OK(portway_handler_set_concurrency(eng, gate, 1));
    CHECK_ST(portway_handler_set_concurrency(eng, 999999, 1), PORTWAY_UNKNOWN_HANDLER);

    const int N = (int)scaled(40);
    portway_request r = make_req(gate, "", 0, 0);
    for (int i = 0; i < N; i++) {
        uint64_t id = 0;
        CHECK_OK(portway_submit(eng, &r, &id));
    }
    int got = 0;
    portway_completion c[16];
    while (got < N) {
        size_t n = 0;
        CHECK_OK(portway_poll(eng, c, 16, 10000, &n));
        CHECK(n > 0);
        for (size_t i = 0; i < n; i++) CHECK(c[i].status == PORTWAY_OK);
        CHECK_OK(portway_release(eng, c, n));
        got += (int)n;
    }
    CHECK(atomic_load(&gate_calls) == N);
    if (atomic_load(&gate_max) != 1) fprintf(stderr, "max concurrent = %d\n", atomic_load(&gate_max));
    CHECK(atomic_load(&gate_max) == 1);

    /* Limit 2 on a 4-worker pool: never more than 2. */
    atomic_store(&gate_max, 0);
    CHECK_OK(portway_handler_set_concurrency(eng, gate, 2));
    for (int i = 0; i < N; i++) {
        uint64_t id = 0;
        CHECK_OK(portway_submit(eng, &r, &id));
    }
    got = 0;
    while (got < N) {
        size_t n = 0;
        CHECK_OK(portway_poll(eng, c, 16, 10000, &n));
        CHECK(n > 0);
        CHECK_OK(portway_release(eng, c, n));
        got += (int)n;
    }
    CHECK(atomic_load(&gate_max) >= 1 && atomic_load(&gate_max) <= 2);
    portway_engine_free(eng);
}

static void test_pipelines(void) {
    portway_engine *eng = new_engine(2);
    static struct stage sa = {'A', 0}, sb = {'B', 0}, sc = {'C', 0};
    uint32_t a = reg(eng, "append-a", h_append, &sa);
    uint32_t b = reg(eng, "append-b", h_append, &sb);
    uint32_t cst = reg(eng, "append-c", h_append, &sc);
    uint32_t f = reg(eng, "fail-stage", h_failstage, NULL);
    uint32_t echo = lookup(eng, "echo");

    /* Stage order: a, echo, b, c. */
    uint32_t p = 0;
    CHECK_OK(portway_pipeline_new(eng, "abc", (uint32_t[]){a, echo, b, cst}, 4, &p));
    CHECK(lookup(eng, "abc") == p);
    CHECK_OK(portway_handler_set_concurrency(eng, b, 1));
    portway_completion c = run(eng, p, "x:");
    CHECK(c.status == PORTWAY_OK);
    CHECK(DATA_IS(c, "x:ABC"));
    CHECK(c.user_data == 77);
    CHECK_OK(portway_release(eng, &c, 1));

    /* Reverse order gives the reverse result. */
    uint32_t q = 0;
    CHECK_OK(portway_pipeline_new(eng, "cba", (uint32_t[]){cst, b, a}, 3, &q));
    c = run(eng, q, "");
    CHECK(c.status == PORTWAY_OK && DATA_IS(c, "CBA"));
    CHECK_OK(portway_release(eng, &c, 1));

    /* A pipeline used as a stage is flattened. */
    uint32_t nested = 0;
    CHECK_OK(portway_pipeline_new(eng, "nested", (uint32_t[]){q, p}, 2, &nested));
    c = run(eng, nested, "");
    CHECK(c.status == PORTWAY_OK && DATA_IS(c, "CBAABC"));
    CHECK_OK(portway_release(eng, &c, 1));

    /* First failure ends it: c never runs. */
    int c_before = atomic_load(&sc.calls);
    uint32_t pf = 0;
    CHECK_OK(portway_pipeline_new(eng, "a-fail-c", (uint32_t[]){a, f, cst}, 3, &pf));
    c = run(eng, pf, "");
    CHECK(c.status == PORTWAY_HANDLER_ERROR);
    CHECK(DATA_IS(c, "stage failed"));
    CHECK_OK(portway_release(eng, &c, 1));
    CHECK(atomic_load(&failstage_calls) == 1);
    CHECK(atomic_load(&sc.calls) == c_before);

    /* Submitting many through the pipeline concurrently: each result is complete. */
    const int N = (int)scaled(200);
    portway_request r = make_req(p, "", 0, 0);
    for (int i = 0; i < N; i++) {
        uint64_t id = 0;
        CHECK_OK(portway_submit(eng, &r, &id));
    }
    int got = 0;
    portway_completion cs[32];
    while (got < N) {
        size_t n = 0;
        CHECK_OK(portway_poll(eng, cs, 32, 10000, &n));
        CHECK(n > 0);
        for (size_t i = 0; i < n; i++) CHECK(cs[i].status == PORTWAY_OK && DATA_IS(cs[i], "ABC"));
        CHECK_OK(portway_release(eng, cs, n));
        got += (int)n;
    }

    /* Errors. */
    uint32_t bad = 0;
    CHECK_ST(portway_pipeline_new(eng, "bad1", (uint32_t[]){a, 424242}, 2, &bad), PORTWAY_UNKNOWN_HANDLER);
    CHECK(portway_last_error()[0] != '\0');
    CHECK_ST(portway_pipeline_new(eng, "bad2", (uint32_t[]){a}, 0, &bad), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_pipeline_new(eng, "abc", (uint32_t[]){a}, 1, &bad), PORTWAY_INVALID_ARGUMENT);
    uint32_t many[65];
    for (int i = 0; i < 65; i++) many[i] = echo;
    CHECK_ST(portway_pipeline_new(eng, "too-long", many, 65, &bad), PORTWAY_INVALID_ARGUMENT);
    uint32_t lookup_bad = 0;
    CHECK_ST(portway_handler_lookup(eng, "bad1", &lookup_bad), PORTWAY_NOT_FOUND);
    CHECK_ST(portway_handler_lookup(eng, "bad2", &lookup_bad), PORTWAY_NOT_FOUND);
    portway_engine_free(eng);
}

int main(void) {
    test_respond_fail_meta();
    test_cancel_seen_by_handler();
    test_concurrency_limit();
    test_pipelines();
    printf("test_native: ok\n");
    return 0;
}
