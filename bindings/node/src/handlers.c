/* Handlers by name: lookup, pipeline (registration), setConcurrency. */
#include <stdlib.h>

#include "addon.h"

/* lookup(name) -> id (throws PortwayError NOT_FOUND) */
napi_value pw_js_lookup(napi_env env, napi_callback_info info) {
    pw_args a;
    pw_engine *pe = pw_this(env, info, 1, true, &a);
    char *name = NULL;
    if (!pe || !pw_get_string(env, a.v[0], "handler name", &name)) return NULL;
    uint32_t id = 0;
    portway_status st = portway_handler_lookup(pe->eng, name, &id);
    free(name);
    return pw_id_result(env, st, id);
}

/* pipeline(name, stageIds[]) -> id */
napi_value pw_js_pipeline(napi_env env, napi_callback_info info) {
    pw_args a;
    pw_engine *pe = pw_this(env, info, 2, true, &a);
    if (!pe) return NULL;
    uint32_t n = 0;
    NAPI_CALL(env, napi_get_array_length(env, a.v[1], &n));
    uint32_t stages[64];
    if (n > 64) n = 65; /* let the library refuse it */
    uint32_t *st_ids = n > 64 ? calloc(n, sizeof *st_ids) : stages;
    if (!st_ids) {
        pw_throw_oom(env);
        return NULL;
    }
    char *name = NULL;
    bool ok = true;
    for (uint32_t i = 0; i < n && ok; i++) {
        napi_value el;
        ok = napi_get_element(env, a.v[1], i, &el) == napi_ok &&
             pw_get_u32(env, el, "stage handler id", false, 0, &st_ids[i]);
    }
    ok = ok && pw_get_string(env, a.v[0], "pipeline name", &name);
    uint32_t id = 0;
    portway_status st = ok ? portway_pipeline_new(pe->eng, name, st_ids, n, &id) : PORTWAY_OK;
    if (st_ids != stages) free(st_ids);
    free(name);
    return ok ? pw_id_result(env, st, id) : NULL;
}

/* setConcurrency(id, limit) */
napi_value pw_js_set_concurrency(napi_env env, napi_callback_info info) {
    pw_args a;
    pw_engine *pe = pw_this(env, info, 2, true, &a);
    uint32_t id, limit;
    if (!pe || !pw_get_handler_id(env, a.v[0], &id) || !pw_get_u32(env, a.v[1], "limit", false, 0, &limit))
        return NULL;
    pw_status_ok(env, portway_handler_set_concurrency(pe->eng, id, limit));
    return NULL;
}
