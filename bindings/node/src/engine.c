/* The NativeEngine constructor (its options -> a portway_config, the two tsfns, the cleanup
 * hook) and close(). */
#include <stdlib.h>

#include "addon.h"

/* new NativeEngine(runtimeThreads, poolWorkers, maxInFlight, defaultTimeoutMs, maxPayload,
 *                  onLog, logLevel) */
napi_value pw_js_engine_ctor(napi_env env, napi_callback_info info) {
    size_t argc = 7;
    napi_value argv[7], self;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
    /* Options as given (lib/engine.js passes them through): undefined = the library default. */
    static const struct {
        const char *name;
        double min, max;
    } opt_spec[5] = {
        {"runtimeThreads", 0, 1024},       {"poolWorkers", 0, 1024}, {"maxInFlight", 1, U32_MAX_D},
        {"defaultTimeoutMs", 0, U32_MAX_D}, {"maxPayload", 1, SAFE_INT_MAX_D},
    };
    int64_t opt[5];
    for (size_t i = 0; i < 5; i++)
        if (!pw_get_int_arg(env, argv[i], opt_spec[i].name, opt_spec[i].min, opt_spec[i].max, true, -1,
                         &opt[i]))
            return NULL;
    napi_value on_log = NULL;
    uint32_t log_level = PORTWAY_LOG_INFO;
    if (argc > 5) {
        napi_valuetype t;
        NAPI_CALL(env, napi_typeof(env, argv[5], &t));
        if (t == napi_function) on_log = argv[5];
        else if (t != napi_undefined && t != napi_null) {
            napi_throw_type_error(env, NULL, "onLog must be a function");
            return NULL;
        }
    }
    if (argc > 6) {
        int64_t lv;
        if (!pw_get_int_arg(env, argv[6], "logLevel", PORTWAY_LOG_DEBUG, PORTWAY_LOG_ERROR, true,
                         PORTWAY_LOG_INFO, &lv))
            return NULL;
        log_level = (uint32_t)lv;
    }
    pw_engine *pe = calloc(1, sizeof *pe);
    if (!pe) {
        pw_throw_oom(env);
        return NULL;
    }
    if (pthread_mutex_init(&pe->mu, NULL) != 0) {
        free(pe);
        napi_throw_error(env, "PORTWAY_INTERNAL", "pthread_mutex_init failed");
        return NULL;
    }
    pe->env = env;
    pe->refs = 1; /* wrapper */
    napi_status ns = napi_wrap(env, self, pe, pw_wrapper_finalize, NULL, &pe->wrapper);
    if (ns != napi_ok) {
        pw_engine_unref(pe);
        pw_throw_napi_error(env, ns, "napi_wrap");
        return NULL;
    }
    /* From here on the wrapper finalizer owns cleanup (pw_engine_destroy copes with a NULL engine
     * and NULL tsfns); failures below call pw_engine_destroy at once so nothing lingers. */
    napi_value name;
    NAPI_CALL(env, napi_create_string_utf8(env, "portway.notify", NAPI_AUTO_LENGTH, &name));
    NAPI_CALL(env, napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, pe, pw_tsfn_finalize, pe,
                                                   pw_call_js, &pe->tsfn));
    pe->refs++; /* tsfn */
    pe->tsfn_open = true;
    if ((ns = napi_unref_threadsafe_function(env, pe->tsfn)) != napi_ok) goto napi_fail;
    if (on_log) {
        /* onLog lives on the wrapper, not in the tsfn (see log.c). */
        napi_property_descriptor prop = {"onLog", NULL, NULL, NULL, NULL, on_log, napi_default, NULL};
        if ((ns = napi_define_properties(env, self, 1, &prop)) != napi_ok) goto napi_fail;
        if ((ns = napi_create_string_utf8(env, "portway.log", NAPI_AUTO_LENGTH, &name)) != napi_ok)
            goto napi_fail;
        if ((ns = napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, pe, pw_log_tsfn_finalize,
                                                  pe, pw_log_call_js, &pe->log_tsfn)) != napi_ok)
            goto napi_fail;
        pe->refs++; /* log_tsfn */
        pe->log_open = true;
        /* Logging never keeps the event loop alive. */
        if ((ns = napi_unref_threadsafe_function(env, pe->log_tsfn)) != napi_ok) goto napi_fail;
    }
    /* Registered after both tsfns, so it runs before Node's own tsfn teardown. */
    if ((ns = napi_add_env_cleanup_hook(env, pw_cleanup_hook, pe)) != napi_ok) goto napi_fail;
    pe->hook_registered = true;

    portway_config *cfg = portway_config_new();
    if (!cfg) {
        pw_engine_destroy(pe, false);
        napi_throw_error(env, "PORTWAY_INTERNAL", "portway_config_new failed");
        return NULL;
    }
    portway_status st = PORTWAY_OK;
    if (st == PORTWAY_OK && opt[0] >= 0) st = portway_config_set_runtime_threads(cfg, (uint32_t)opt[0]);
    if (st == PORTWAY_OK && opt[1] >= 0) st = portway_config_set_pool_workers(cfg, (uint32_t)opt[1]);
    if (st == PORTWAY_OK && opt[2] >= 0) st = portway_config_set_max_in_flight(cfg, (uint32_t)opt[2]);
    if (st == PORTWAY_OK && opt[3] >= 0) st = portway_config_set_default_timeout_ms(cfg, (uint32_t)opt[3]);
    if (st == PORTWAY_OK && opt[4] >= 0) st = portway_config_set_max_payload(cfg, (uint64_t)opt[4]);
    /* On the config, so the hook also sees the engine start (emitted inside engine_new). */
    if (st == PORTWAY_OK && on_log) st = portway_config_set_log(cfg, pw_log_hook, pe, log_level);
    portway_engine *eng = NULL;
    if (st == PORTWAY_OK) st = portway_engine_new(cfg, &eng);
    portway_config_free(cfg);
    if (st == PORTWAY_OK) {
        pe->eng = eng;
        st = portway_set_notify(eng, pw_notify_hook, pe);
    }
    if (st != PORTWAY_OK) {
        pw_throw_status(env, st); /* reads portway_last_error() before anything else runs */
        pw_engine_destroy(pe, false);
        return NULL;
    }
    return self;

napi_fail:
    pw_throw_napi_error(env, ns, "NativeEngine constructor");
    pw_engine_destroy(pe, false);
    return NULL;
}

/* close(drain, deadlineMs) -> Promise<void>; resolves once every completion was delivered
 * and the native engine is freed. The JS side makes it idempotent. */
napi_value pw_js_close(napi_env env, napi_callback_info info) {
    pw_args a;
    napi_value promise;
    pw_engine *pe = pw_this(env, info, 2, false, &a);
    if (!pe) return NULL;
    bool drain_mode = true;
    uint32_t deadline = 0;
    NAPI_CALL(env, napi_get_value_bool(env, a.v[0], &drain_mode));
    if (!pw_get_u32(env, a.v[1], "timeoutMs", false, 0, &deadline)) return NULL;
    napi_deferred d;
    NAPI_CALL(env, napi_create_promise(env, &d, &promise));
    if (!pe->eng) {
        pw_resolve_undefined(env, d);
        return promise;
    }
    portway_status st =
        portway_engine_shutdown(pe->eng, drain_mode ? PORTWAY_DRAIN : PORTWAY_CANCEL_NOW, deadline);
    if (st != PORTWAY_OK) {
        napi_value err = pw_status_error(env, st);
        if (err) NAPI_CALL(env, napi_reject_deferred(env, d, err));
        return promise;
    }
    if (pe->close_deferred) {
        /* A second close (e.g. escalating drain to cancel): chain to the first. */
        pw_resolve_undefined(env, d);
        return promise;
    }
    pe->close_deferred = d;
    pe->closing = true;
    if (!pw_update_busy(env, pe)) return NULL;
    /* The engine notifies once on close; drain now too in case it is already closed. */
    pw_drain(env, pe);
    return promise;
}
