/* The module: the NativeEngine class (its methods live in the other files, see addon.h) and
 * the module's exports. */
#include <stdlib.h>

#include "addon.h"

/* statusStr(status) -> the status's name, e.g. 'PORTWAY_BUSY' */
static napi_value status_str(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], v;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    uint32_t s = 0;
    if (!pw_get_u32(env, argv[0], "status", false, 0, &s)) return NULL;
    NAPI_CALL(env, napi_create_string_utf8(env, portway_status_str(s), NAPI_AUTO_LENGTH, &v));
    return v;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
    pw_instance *inst = calloc(1, sizeof *inst);
    if (!inst) {
        pw_throw_oom(env);
        return NULL;
    }
    napi_status s = napi_set_instance_data(env, inst, pw_instance_finalize, NULL);
    if (s != napi_ok) {
        free(inst);
        pw_throw_napi_error(env, s, "napi_set_instance_data");
        return NULL;
    }
#define METHOD(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_default_method, NULL}
    napi_property_descriptor methods[] = {
        METHOD("submit", pw_js_submit),
        METHOD("submitMany", pw_js_submit_many),
        METHOD("batchSubmit", pw_js_batch_submit),
        METHOD("enqueue", pw_js_enqueue),
        METHOD("flush", pw_js_flush),
        METHOD("cancelSlot", pw_js_cancel_slot),
        METHOD("_coalesceStats", pw_js_coalesce_stats),
        METHOD("lastId", pw_js_last_id),
        METHOD("cancel", pw_js_cancel),
        METHOD("cancelAll", pw_js_cancel_all),
        METHOD("lookup", pw_js_lookup),
        METHOD("pipeline", pw_js_pipeline),
        METHOD("setConcurrency", pw_js_set_concurrency),
        METHOD("setPolicy", pw_js_set_policy),
        METHOD("policyState", pw_js_policy_state),
        METHOD("registerHttp", pw_js_register_http),
        METHOD("stats", pw_js_stats),
        METHOD("metricsText", pw_js_metrics_text),
        METHOD("inflightJson", pw_js_inflight_json),
        METHOD("handlerStats", pw_js_handler_stats),
        METHOD("close", pw_js_close),
        METHOD("watchRelease", pw_js_watch_release),
#ifdef PORTWAY_FAULT_INJECTION
        METHOD("_fault", pw_js_fault),
#endif
    };
#undef METHOD
    napi_value cls, fn, v;
    NAPI_CALL(env, napi_define_class(env, "NativeEngine", NAPI_AUTO_LENGTH, pw_js_engine_ctor, NULL,
                                     sizeof methods / sizeof methods[0], methods, &cls));
    NAPI_CALL(env, napi_set_named_property(env, exports, "NativeEngine", cls));
    /* Plain properties (writable, enumerable), as napi_set_named_property makes them. */
    static const struct {
        const char *name;
        napi_callback cb;
    } fns[] = {{"setErrorClass", pw_js_set_error_class}, {"setDeliver", pw_js_set_deliver}, {"statusStr", status_str}};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        NAPI_CALL(env, napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn));
        NAPI_CALL(env, napi_set_named_property(env, exports, fns[i].name, fn));
    }
    NAPI_CALL(env, napi_create_string_utf8(env, portway_version(), NAPI_AUTO_LENGTH, &v));
    NAPI_CALL(env, napi_set_named_property(env, exports, "version", v));
    NAPI_CALL(env, napi_create_uint32(env, portway_abi_version(), &v));
    NAPI_CALL(env, napi_set_named_property(env, exports, "abiVersion", v));
    return exports;
}
