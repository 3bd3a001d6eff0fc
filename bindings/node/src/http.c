/* registerHttp(name, options): the options object (portway_http_options in camelCase) read
 * field by field from a table. */
#include <stdlib.h>

#include "addon.h"

/* How one option is read into portway_http_options. */
typedef enum { OPT_U32, OPT_U64, OPT_BOOL, OPT_STR } opt_kind;

static const struct {
    const char *key;
    opt_kind kind;
    size_t offset;
} http_fields[] = {
#define F(key, kind, field) {key, kind, offsetof(portway_http_options, field)}
    F("maxConnectionsPerHost", OPT_U32, max_connections_per_host),
    F("maxHeaderBytes", OPT_U32, max_header_bytes),
    F("connectTimeoutMs", OPT_U32, connect_timeout_ms),
    F("readTimeoutMs", OPT_U32, read_timeout_ms),
    F("poolIdleTimeoutMs", OPT_U32, pool_idle_timeout_ms),
    F("followRedirects", OPT_BOOL, follow_redirects),
    F("maxRedirects", OPT_U32, max_redirects),
    F("retries", OPT_U32, retries),
    F("retryBaseBackoffMs", OPT_U32, retry_base_backoff_ms),
    F("http2PriorKnowledge", OPT_BOOL, http2_prior_knowledge),
    F("http1Only", OPT_BOOL, http1_only),
    F("decompress", OPT_BOOL, decompress),
    F("bundledRootsOnly", OPT_BOOL, bundled_roots_only),
    F("dangerAcceptInvalidCerts", OPT_BOOL, danger_accept_invalid_certs),
    F("userAgent", OPT_STR, user_agent),
    F("extraCaPemPath", OPT_STR, extra_ca_pem_path),
    F("proxy", OPT_STR, proxy),
    F("maxBodyBytes", OPT_U64, max_body_bytes),
#undef F
};
#define HTTP_FIELDS (sizeof http_fields / sizeof http_fields[0])

/* Reads option i of `obj` into *o when it is set (not undefined/null); a string is copied into
 * strs[i] (malloc'd, freed by the caller) and *o points at it. */
static bool read_field(napi_env env, napi_value obj, size_t i, portway_http_options *o, char **strs) {
    napi_value v;
    napi_valuetype t;
    const char *key = http_fields[i].key;
    void *field = (char *)o + http_fields[i].offset;
    NAPI_CALL_BOOL(env, napi_get_named_property(env, obj, key, &v));
    NAPI_CALL_BOOL(env, napi_typeof(env, v, &t));
    if (t == napi_undefined || t == napi_null) return true;
    int64_t n = 0;
    switch (http_fields[i].kind) {
    case OPT_U32: return pw_get_u32(env, v, key, false, 0, field);
    case OPT_U64:
        if (!pw_get_int_arg(env, v, key, 0, SAFE_INT_MAX_D, false, 0, &n)) return false;
        *(uint64_t *)field = (uint64_t)n;
        return true;
    case OPT_BOOL: NAPI_CALL_BOOL(env, napi_get_value_bool(env, v, field)); return true;
    case OPT_STR:
        if (!pw_get_string(env, v, key, &strs[i])) return false;
        *(const char **)field = strs[i];
        return true;
    }
    return true;
}

/* registerHttp(name, options) -> id. `options` was checked by lib/http.js: known keys of the
 * right types only (numbers as u32, maxBodyBytes as a safe integer). */
napi_value pw_js_register_http(napi_env env, napi_callback_info info) {
    pw_args a;
    pw_engine *pe = pw_this(env, info, 2, true, &a);
    if (!pe) return NULL;
    portway_http_options o;
    if (!pw_status_ok(env, portway_http_options_default(&o))) return NULL;
    char *name = NULL, *strs[HTTP_FIELDS] = {0};
    bool ok = pw_get_string(env, a.v[0], "handler name", &name);
    for (size_t i = 0; i < HTTP_FIELDS && ok; i++) ok = read_field(env, a.v[1], i, &o, strs);
    uint32_t id = 0;
    portway_status st = ok ? portway_register_http(pe->eng, name, &o, &id) : PORTWAY_OK;
    free(name);
    for (size_t i = 0; i < HTTP_FIELDS; i++) free(strs[i]);
    return ok ? pw_id_result(env, st, id) : NULL;
}
