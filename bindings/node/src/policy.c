/* setPolicy(id, options) and policyState(id): portway_policy and portway_policy_state in
 * camelCase. */
#include "addon.h"

static const pw_opt_field policy_fields[] = {
#define F(key, kind, field) {key, PW_OPT_##kind, offsetof(portway_policy, field)}
    F("maxConcurrency", U32, max_concurrency),
    F("adaptive", BOOL, adaptive),
    F("minConcurrency", U32, min_concurrency),
    F("ratePerS", F64, rate_per_s),
    F("burst", U32, burst),
    F("hedgeAfterMs", U32, hedge_after_ms),
    F("hedgeAfterP95", BOOL, hedge_after_p95),
    F("hedgeBudgetPercent", U32, hedge_budget_percent),
    F("breakerFailures", U32, breaker_failures),
    F("breakerCooldownMs", U32, breaker_cooldown_ms),
#undef F
};
#define POLICY_FIELDS (sizeof policy_fields / sizeof policy_fields[0])

/* setPolicy(id, options): options already checked by lib/engine.js (known keys, kinds); fields
 * left out keep portway_policy_default's values, and the library refuses what it does not
 * implement (hedging) or a bad combination (minConcurrency without adaptive) with
 * PORTWAY_INVALID_ARGUMENT. */
napi_value pw_js_set_policy(napi_env env, napi_callback_info info) {
    pw_args a;
    pw_engine *pe = pw_this(env, info, 2, true, &a);
    uint32_t id;
    if (!pe || !pw_get_handler_id(env, a.v[0], &id)) return NULL;
    portway_policy p;
    if (!pw_status_ok(env, portway_policy_default(&p))) return NULL;
    for (size_t i = 0; i < POLICY_FIELDS; i++)
        if (!pw_read_opt(env, a.v[1], &policy_fields[i], &p, NULL)) return NULL;
    pw_status_ok(env, portway_handler_set_policy(pe->eng, id, &p));
    return NULL;
}

static bool set_number(napi_env env, napi_value obj, const char *key, double v) {
    napi_value x;
    NAPI_CALL_BOOL(env, napi_create_double(env, v, &x));
    NAPI_CALL_BOOL(env, napi_set_named_property(env, obj, key, x));
    return true;
}

/* policyState(id) -> the portway_policy_state figures in camelCase, breakerState as a word. */
napi_value pw_js_policy_state(napi_env env, napi_callback_info info) {
    pw_args a;
    pw_engine *pe = pw_this(env, info, 1, true, &a);
    uint32_t id;
    if (!pe || !pw_get_handler_id(env, a.v[0], &id)) return NULL;
    portway_policy_state s;
    if (!pw_status_ok(env, portway_handler_policy_state(pe->eng, id, &s))) return NULL;
    const char *breaker = s.breaker_state == PORTWAY_BREAKER_CLOSED      ? "closed"
                          : s.breaker_state == PORTWAY_BREAKER_HALF_OPEN ? "half-open"
                                                                         : "open";
    napi_value obj, word;
    NAPI_CALL(env, napi_create_object(env, &obj));
    NAPI_CALL(env, napi_create_string_utf8(env, breaker, NAPI_AUTO_LENGTH, &word));
    NAPI_CALL(env, napi_set_named_property(env, obj, "breakerState", word));
    const struct {
        const char *key;
        double value;
    } figures[] = {
        {"concurrencyLimit", s.concurrency_limit},
        {"running", s.running},
        {"waiting", s.waiting},
        {"tokens", s.tokens},
        {"breakerFailures", s.breaker_failures},
        {"breakerOpen", s.breaker_open},
        {"breakerTrips", (double)s.breaker_trips},
        {"breakerRejected", (double)s.breaker_rejected},
        {"rateTimeouts", (double)s.rate_timeouts},
        {"hedgesStarted", (double)s.hedges_started},
        {"hedgesWon", (double)s.hedges_won},
        {"hedgesCancelled", (double)s.hedges_cancelled},
        {"hedgesSkipped", (double)s.hedges_skipped},
    };
    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++)
        if (!set_number(env, obj, figures[i].key, figures[i].value)) return NULL;
    return obj;
}
