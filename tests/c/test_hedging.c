/*
 * test_hedging.c: hedged requests through the C ABI (issue 16). A native handler registered
 * with PORTWAY_HANDLER_IDEMPOTENT: the hedge of a slow call wins (meta portway-hedge: won) and
 * the slow call sees portway_call_is_cancelled; a hedged request cancelled while both calls
 * run completes once and both calls see it; hedging a handler registered without the flag is
 * refused. The calls wait for signals (their cancellation), never for a clock to be asserted.
 */
#include "check.h"

#include <stdatomic.h>

static atomic_int calls, cancelled_seen;
static atomic_int all_wait; /* every call waits for its cancellation */

/* The first call (and, with all_wait, every call) waits up to 10 s for its cancellation; the
 * others answer "hedge" at once. */
static void lookup_fn(void *ctx, struct portway_call *call) {
    (void)ctx;
    int n = atomic_fetch_add(&calls, 1);
    if (n == 0 || atomic_load(&all_wait)) {
        double give_up = now_ms() + 10000;
        while (!portway_call_is_cancelled(call) && now_ms() < give_up) sleep_ms(1);
        if (portway_call_is_cancelled(call)) atomic_fetch_add(&cancelled_seen, 1);
        return;
    }
    CHECK_OK(portway_call_respond(call, (const uint8_t *)"hedge", 5));
}

static void plain_fn(void *ctx, struct portway_call *call) {
    (void)ctx;
    CHECK_OK(portway_call_respond(call, NULL, 0));
}

static portway_policy_state state_of(portway_engine *eng, uint32_t h) {
    portway_policy_state s;
    memset(&s, 0xAB, sizeof s);
    CHECK_OK(portway_handler_policy_state(eng, h, &s));
    return s;
}

static void wait_until(atomic_int *v, int want) {
    double give_up = now_ms() + patience_ms(10000);
    while (atomic_load(v) != want) {
        CHECK(now_ms() < give_up);
        sleep_ms(1);
    }
}

static void test_registration_and_refusals(portway_engine *eng) {
    uint32_t plain = 0, out = 7;
    CHECK_OK(portway_register_handler(eng, "plain", plain_fn, NULL, &plain));
    CHECK_ST(portway_register_handler_ex(eng, "bad-flags", plain_fn, NULL, 0x80, &out), PORTWAY_INVALID_ARGUMENT);
    CHECK(out == 7);
    portway_policy p;
    CHECK_OK(portway_policy_default(&p));
    CHECK(p.hedge_after_ms == 0 && !p.hedge_after_p95 && p.hedge_budget_percent == 5);
    p.hedge_after_ms = 20;
    CHECK_ST(portway_handler_set_policy(eng, plain, &p), PORTWAY_INVALID_ARGUMENT);
    CHECK(strstr(portway_last_error(), "idempotent") != NULL);
    CHECK_ST(portway_handler_set_policy(eng, lookup(eng, "echo"), &p), PORTWAY_INVALID_ARGUMENT);
    p.hedge_budget_percent = 101;
    CHECK_ST(portway_handler_set_policy(eng, lookup(eng, "http"), &p), PORTWAY_INVALID_ARGUMENT);
    p.hedge_budget_percent = 100;
    CHECK_OK(portway_handler_set_policy(eng, lookup(eng, "http"), &p));
}

static void test_hedge_wins(portway_engine *eng, uint32_t h) {
    atomic_store(&calls, 0);
    atomic_store(&cancelled_seen, 0);
    portway_request r = make_req(h, "k", 0, 1);
    uint64_t id = 0;
    CHECK_OK(portway_submit(eng, &r, &id));
    portway_completion c = wait_for(eng, id, 10000);
    CHECK(c.status == PORTWAY_OK && c.len == 5 && memcmp(c.data, "hedge", 5) == 0);
    CHECK(c.meta_len == 1);
    CHECK(strcmp(c.meta[0].key, "portway-hedge") == 0 && strcmp(c.meta[0].value, "won") == 0);
    CHECK_OK(portway_release(eng, &c, 1));
    wait_until(&cancelled_seen, 1);
    portway_policy_state s = state_of(eng, h);
    CHECK(s.hedges_started == 1 && s.hedges_won == 1 && s.hedges_cancelled == 1);
}

static void test_cancel_reaches_both_calls(portway_engine *eng, uint32_t h) {
    atomic_store(&calls, 0);
    atomic_store(&cancelled_seen, 0);
    atomic_store(&all_wait, 1);
    portway_request r = make_req(h, "k", 0, 2);
    uint64_t id = 0;
    CHECK_OK(portway_submit(eng, &r, &id));
    wait_until(&calls, 2);
    CHECK_OK(portway_cancel(eng, id));
    portway_completion c = wait_for(eng, id, 10000);
    CHECK(c.status == PORTWAY_CANCELLED);
    CHECK_OK(portway_release(eng, &c, 1));
    wait_until(&cancelled_seen, 2);
    size_t n = 7;
    portway_completion more;
    CHECK_OK(portway_poll(eng, &more, 1, 20, &n));
    CHECK(n == 0);
    atomic_store(&all_wait, 0);
}

int main(void) {
    portway_engine *eng = new_engine_workers(2);
    uint32_t h = 0;
    CHECK_OK(portway_register_handler_ex(eng, "lookup", lookup_fn, NULL, PORTWAY_HANDLER_IDEMPOTENT, &h));
    portway_policy p;
    CHECK_OK(portway_policy_default(&p));
    p.hedge_after_ms = 20;
    p.hedge_budget_percent = 100; /* every request may be hedged: one per test below */
    CHECK_OK(portway_handler_set_policy(eng, h, &p));
    test_registration_and_refusals(eng);
    test_hedge_wins(eng, h);
    test_cancel_reaches_both_calls(eng, h);
    portway_engine_free(eng);
    puts("test_hedging: ok");
    return 0;
}
