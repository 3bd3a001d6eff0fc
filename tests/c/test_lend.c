/*
 * test_lend.c: portway_submit_batch_ex with PORTWAY_SUBMIT_LEND_PAYLOAD. A native handler reads
 * the host's bytes in place (the very pointer the host passed); a BUSY batch lends only its
 * accepted prefix; a request that times out or is cancelled while its handler runs gets its
 * completion only when the handler returns; one cancelled while queued never has its bytes read;
 * built-in handlers and pipelines still work (copying what they need); a hedged run's losing
 * attempt, which reads its payload after the winner's completion was polled, reads a copy;
 * unknown flags are refused.
 *
 * Every lent buffer is malloc'd and freed as soon as the rule allows (its completion polled, or
 * the submit returned for a request not accepted), so under ASan and valgrind any later read by
 * the engine is a use-after-free report.
 */
#include "check.h"

#include <stdatomic.h>

#define SLOTS 16

/* What the handler saw, by user_data. */
static const uint8_t *seen_ptr[SLOTS];
static atomic_int started;        /* calls of h_gate begun */
static atomic_int gate_open = 1;  /* h_gate returns only once this is 1 */
static atomic_int saw_cancelled;  /* h_gate saw portway_call_is_cancelled turn true */

/* Records the payload pointer, waits for the gate (at most 10 s), responds with the payload. */
static void h_gate(void *ctx, portway_call *call) {
    (void)ctx;
    const uint8_t *d = NULL;
    size_t n = 0;
    if (portway_call_payload(call, &d, &n) != PORTWAY_OK) return;
    uint64_t slot = portway_call_user_data(call);
    if (slot < SLOTS) seen_ptr[slot] = d;
    atomic_fetch_add(&started, 1);
    for (int i = 0; i < 10000 && !atomic_load(&gate_open); i++) {
        if (portway_call_is_cancelled(call)) atomic_store(&saw_cancelled, 1);
        sleep_ms(1);
    }
    portway_call_respond(call, d, n);
}

/* A malloc'd copy of `s` (its NUL not counted), to lend. */
static uint8_t *lendable(const char *s) {
    size_t n = strlen(s);
    uint8_t *p = malloc(n);
    CHECK(p != NULL);
    memcpy(p, s, n);
    return p;
}

static portway_request lent_req(uint32_t handler, const uint8_t *p, size_t n, uint32_t timeout_ms,
                                uint64_t user_data) {
    portway_request r;
    memset(&r, 0, sizeof r);
    r.handler = handler;
    r.timeout_ms = timeout_ms;
    r.user_data = user_data;
    r.payload = p;
    r.payload_len = n;
    return r;
}

static portway_engine *engine(uint32_t workers, uint32_t max_in_flight, uint32_t *gate) {
    portway_config *cfg = portway_config_new();
    CHECK_OK(portway_config_set_runtime_threads(cfg, 1));
    CHECK_OK(portway_config_set_pool_workers(cfg, workers));
    CHECK_OK(portway_config_set_max_in_flight(cfg, max_in_flight));
    portway_engine *eng = new_engine_cfg(cfg);
    portway_config_free(cfg);
    CHECK_OK(portway_register_handler(eng, "gate", h_gate, NULL, gate));
    return eng;
}

static int data_is(const portway_completion *c, const char *want) {
    return c->len == strlen(want) && memcmp(c->data, want, c->len) == 0;
}

/* The handler gets the host's own pointer when lent, a copy otherwise. */
static void lent_bytes_are_read_in_place(void) {
    uint32_t gate;
    portway_engine *eng = engine(2, 64, &gate);
    const char *words[3] = {"alpha", "beta", "gamma"};
    uint8_t *bufs[3];
    portway_request reqs[3];
    for (int i = 0; i < 3; i++) {
        bufs[i] = lendable(words[i]);
        reqs[i] = lent_req(gate, bufs[i], strlen(words[i]), 5000, (uint64_t)i);
    }
    size_t accepted = 0;
    CHECK_OK(portway_submit_batch_ex(eng, reqs, 3, PORTWAY_SUBMIT_LEND_PAYLOAD, NULL, &accepted));
    CHECK(accepted == 3);
    for (int k = 0; k < 3; k++) {
        portway_completion c = poll_one(eng, 5000);
        CHECK(c.status == PORTWAY_OK && c.user_data < 3);
        CHECK(data_is(&c, words[c.user_data]));
        CHECK(seen_ptr[c.user_data] == bufs[c.user_data]); /* not copied */
        CHECK_OK(portway_release(eng, &c, 1));
        free(bufs[c.user_data]); /* the rule: reusable once polled */
        bufs[c.user_data] = NULL;
    }
    /* Without the flag the handler reads the engine's copy. */
    uint8_t *buf = lendable("delta");
    portway_request r = lent_req(gate, buf, 5, 5000, 3);
    CHECK_OK(portway_submit_batch_ex(eng, &r, 1, 0, NULL, &accepted));
    CHECK(accepted == 1);
    free(buf); /* copied: free at once */
    portway_completion c = poll_one(eng, 5000);
    CHECK(c.status == PORTWAY_OK && data_is(&c, "delta") && seen_ptr[3] != buf);
    CHECK_OK(portway_release(eng, &c, 1));
    portway_engine_free(eng);
}

/* BUSY partway: the accepted prefix is lent and runs; the rest is never read after the call. */
static void a_busy_batch_lends_its_accepted_prefix(void) {
    uint32_t gate;
    portway_engine *eng = engine(2, 3, &gate);
    uint8_t *bufs[5];
    portway_request reqs[5];
    uint64_t ids[5] = {0};
    for (int i = 0; i < 5; i++) {
        char word[24];
        snprintf(word, sizeof word, "item-%d", i);
        bufs[i] = lendable(word);
        reqs[i] = lent_req(gate, bufs[i], strlen(word), 5000, (uint64_t)i);
    }
    size_t accepted = 99;
    CHECK_ST(portway_submit_batch_ex(eng, reqs, 5, PORTWAY_SUBMIT_LEND_PAYLOAD, ids, &accepted),
             PORTWAY_BUSY);
    CHECK(accepted == 3);
    CHECK(ids[0] != 0 && ids[2] != 0 && ids[3] == 0);
    free(bufs[3]); /* refused: the engine must not read them any more */
    free(bufs[4]);
    for (int k = 0; k < 3; k++) {
        portway_completion c = poll_one(eng, 5000);
        CHECK(c.status == PORTWAY_OK && c.user_data < 3);
        char want[24];
        snprintf(want, sizeof want, "item-%d", (int)c.user_data);
        CHECK(data_is(&c, want) && seen_ptr[c.user_data] == bufs[c.user_data]);
        CHECK_OK(portway_release(eng, &c, 1));
        free(bufs[c.user_data]);
    }
    portway_engine_free(eng);
}

/* Times out (or is cancelled) while its handler runs: no completion until the handler returns,
 * which sees the request cancelled; then exactly one, with the timeout (or cancel) status. */
static void ended_while_running(int by_cancel) {
    uint32_t gate;
    portway_engine *eng = engine(1, 8, &gate);
    atomic_store(&started, 0);
    atomic_store(&saw_cancelled, 0);
    atomic_store(&gate_open, 0);
    uint8_t *buf = lendable("held by the handler");
    portway_request r = lent_req(gate, buf, 19, by_cancel ? 0 : 30, 0);
    uint64_t id = 0;
    size_t accepted = 0;
    CHECK_OK(portway_submit_batch_ex(eng, &r, 1, PORTWAY_SUBMIT_LEND_PAYLOAD, &id, &accepted));
    CHECK(accepted == 1);
    for (int i = 0; i < 10000 && atomic_load(&started) == 0; i++) sleep_ms(1);
    CHECK(atomic_load(&started) == 1);
    if (by_cancel) CHECK_OK(portway_cancel(eng, id));
    /* Well past the deadline (or the cancel): the completion is held while the handler reads. */
    portway_completion c;
    size_t n = 0;
    CHECK_OK(portway_poll(eng, &c, 1, 200, &n));
    CHECK(n == 0);
    CHECK(atomic_load(&saw_cancelled) == 1);
    atomic_store(&gate_open, 1);
    c = wait_for(eng, id, 5000);
    CHECK(c.status == (by_cancel ? PORTWAY_CANCELLED : PORTWAY_TIMEOUT));
    CHECK_OK(portway_release(eng, &c, 1));
    free(buf);
    CHECK_OK(portway_poll(eng, &c, 1, 50, &n));
    CHECK(n == 0); /* exactly one completion */
    portway_engine_free(eng);
}

/* Cancelled while queued behind a busy worker: completed at once, and its bytes (freed as soon
 * as it is polled) are never read when the worker reaches its job. */
static void cancelled_while_queued_is_never_read(void) {
    uint32_t gate;
    portway_engine *eng = engine(1, 8, &gate);
    atomic_store(&started, 0);
    atomic_store(&gate_open, 0);
    uint8_t *first = lendable("first"), *second = lendable("second");
    portway_request reqs[2] = {lent_req(gate, first, 5, 0, 0), lent_req(gate, second, 6, 0, 1)};
    uint64_t ids[2];
    size_t accepted = 0;
    CHECK_OK(portway_submit_batch_ex(eng, reqs, 2, PORTWAY_SUBMIT_LEND_PAYLOAD, ids, &accepted));
    CHECK(accepted == 2);
    for (int i = 0; i < 10000 && atomic_load(&started) == 0; i++) sleep_ms(1);
    CHECK_OK(portway_cancel(eng, ids[1]));
    portway_completion c = wait_for(eng, ids[1], 5000);
    CHECK(c.status == PORTWAY_CANCELLED);
    CHECK_OK(portway_release(eng, &c, 1));
    free(second);
    atomic_store(&gate_open, 1);
    c = wait_for(eng, ids[0], 5000);
    CHECK(c.status == PORTWAY_OK && data_is(&c, "first"));
    CHECK_OK(portway_release(eng, &c, 1));
    free(first);
    CHECK(atomic_load(&started) == 1); /* the cancelled one never ran */
    portway_engine_free(eng);
}

/* Built-in handlers copy inside the call (the buffer may go at once); a pipeline whose first
 * stage is native reads the lent bytes there and hands its output on. */
static void builtins_and_pipelines(void) {
    uint32_t gate;
    portway_engine *eng = engine(2, 8, &gate);
    uint32_t echo = lookup(eng, "echo");
    uint32_t stages[2] = {gate, echo}, pipe = 0;
    CHECK_OK(portway_pipeline_new(eng, "gate-then-echo", stages, 2, &pipe));
    uint8_t *a = lendable("to echo"), *b = lendable("through the pipe");
    portway_request reqs[2] = {lent_req(echo, a, 7, 5000, 0), lent_req(pipe, b, 16, 5000, 1)};
    size_t accepted = 0;
    CHECK_OK(portway_submit_batch_ex(eng, reqs, 2, PORTWAY_SUBMIT_LEND_PAYLOAD, NULL, &accepted));
    CHECK(accepted == 2);
    free(a); /* echo copied it */
    for (int k = 0; k < 2; k++) {
        portway_completion c = poll_one(eng, 5000);
        CHECK(c.status == PORTWAY_OK);
        CHECK(data_is(&c, c.user_data == 0 ? "to echo" : "through the pipe"));
        if (c.user_data == 1) CHECK(seen_ptr[1] == b);
        CHECK_OK(portway_release(eng, &c, 1));
    }
    free(b);
    portway_engine_free(eng);
}

/* Lent requests still queued when the engine is freed: never read after portway_engine_free
 * returns (their buffers are freed right after it). */
static void freed_with_lent_requests_queued(void) {
    uint32_t gate;
    portway_engine *eng = engine(1, 64, &gate);
    atomic_store(&gate_open, 1);
    uint8_t *bufs[32];
    portway_request reqs[32];
    for (int i = 0; i < 32; i++) {
        bufs[i] = lendable("queued at free");
        reqs[i] = lent_req(gate, bufs[i], 14, 0, 0);
    }
    size_t accepted = 0;
    CHECK_OK(portway_submit_batch_ex(eng, reqs, 32, PORTWAY_SUBMIT_LEND_PAYLOAD, NULL, &accepted));
    CHECK(accepted == 32);
    portway_engine_free(eng);
    for (int i = 0; i < 32; i++) free(bufs[i]);
}

static atomic_int hedge_calls, loser_done;

/* Idempotent: the first call waits until it is cancelled (it lost the race) and only then reads
 * its payload; the second (the hedge) answers at once. */
static void h_hedge(void *ctx, portway_call *call) {
    (void)ctx;
    const uint8_t *d = NULL;
    size_t n = 0;
    int first = atomic_fetch_add(&hedge_calls, 1) == 0;
    for (int i = 0; first && i < 10000 && !portway_call_is_cancelled(call); i++) sleep_ms(1);
    if (portway_call_payload(call, &d, &n) != PORTWAY_OK) return;
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < n; i++) sum = (uint8_t)(sum + d[i]); /* a use-after-free if lent */
    portway_call_respond(call, d, n);
    if (first) atomic_store(&loser_done, 1);
}

/* The loser of a hedged run reads its payload after the winner's completion was polled (and the
 * lent buffer freed): it reads the copy the hedged run made. */
static void a_hedged_run_reads_a_copy(void) {
    portway_engine *eng = new_engine_workers(2);
    uint32_t h = 0;
    CHECK_OK(portway_register_handler_ex(eng, "hedged", h_hedge, NULL, PORTWAY_HANDLER_IDEMPOTENT, &h));
    portway_policy p;
    CHECK_OK(portway_policy_default(&p));
    p.hedge_after_ms = 5;
    p.hedge_budget_percent = 100;
    CHECK_OK(portway_handler_set_policy(eng, h, &p));
    uint8_t *buf = lendable("hedged bytes");
    portway_request r = lent_req(h, buf, 12, 0, 0);
    uint64_t id = 0;
    size_t accepted = 0;
    CHECK_OK(portway_submit_batch_ex(eng, &r, 1, PORTWAY_SUBMIT_LEND_PAYLOAD, &id, &accepted));
    portway_completion c = wait_for(eng, id, 10000);
    CHECK(c.status == PORTWAY_OK && data_is(&c, "hedged bytes"));
    CHECK_OK(portway_release(eng, &c, 1));
    free(buf);
    for (int i = 0; i < 10000 && !atomic_load(&loser_done); i++) sleep_ms(1);
    CHECK(atomic_load(&loser_done) == 1);
    portway_engine_free(eng);
}

static void unknown_flags_are_refused(void) {
    uint32_t gate;
    portway_engine *eng = engine(1, 8, &gate);
    portway_request r = make_req(gate, "x", 0, 0);
    size_t accepted = 7;
    CHECK_ST(portway_submit_batch_ex(eng, &r, 1, 2, NULL, &accepted), PORTWAY_INVALID_ARGUMENT);
    CHECK(strstr(portway_last_error(), "unknown submit flags 0x2") != NULL);
    CHECK(strstr(portway_last_error(), "PORTWAY_SUBMIT_LEND_PAYLOAD") != NULL);
    CHECK(accepted == 7); /* nothing written, nothing accepted */
    portway_completion c;
    size_t n = 0;
    CHECK_OK(portway_poll(eng, &c, 1, 0, &n));
    CHECK(n == 0);
    CHECK_ST(portway_submit_batch_ex(NULL, &r, 1, PORTWAY_SUBMIT_LEND_PAYLOAD, NULL, &accepted),
             PORTWAY_INVALID_ARGUMENT);
    portway_engine_free(eng);
}

int main(void) {
    lent_bytes_are_read_in_place();
    a_busy_batch_lends_its_accepted_prefix();
    ended_while_running(0);
    ended_while_running(1);
    cancelled_while_queued_is_never_read();
    builtins_and_pipelines();
    freed_with_lent_requests_queued();
    a_hedged_run_reads_a_copy();
    unknown_flags_are_refused();
    puts("test_lend: ok");
    return 0;
}
