/* registerHttp(name, options): the options object (portway_http_options in camelCase) read
 * field by field from a table. */
#include <stdlib.h>

#include "addon.h"

static const pw_opt_field http_fields[] = {
#define F(key, kind, field) {key, PW_OPT_##kind, offsetof(portway_http_options, field)}
    F("maxConnectionsPerHost", U32, max_connections_per_host),
    F("maxHeaderBytes", U32, max_header_bytes),
    F("connectTimeoutMs", U32, connect_timeout_ms),
    F("readTimeoutMs", U32, read_timeout_ms),
    F("poolIdleTimeoutMs", U32, pool_idle_timeout_ms),
    F("followRedirects", BOOL, follow_redirects),
    F("maxRedirects", U32, max_redirects),
    F("retries", U32, retries),
    F("retryBaseBackoffMs", U32, retry_base_backoff_ms),
    F("http2PriorKnowledge", BOOL, http2_prior_knowledge),
    F("http1Only", BOOL, http1_only),
    F("decompress", BOOL, decompress),
    F("bundledRootsOnly", BOOL, bundled_roots_only),
    F("dangerAcceptInvalidCerts", BOOL, danger_accept_invalid_certs),
    F("userAgent", STR, user_agent),
    F("extraCaPemPath", STR, extra_ca_pem_path),
    F("proxy", STR, proxy),
    F("maxBodyBytes", U64, max_body_bytes),
#undef F
};
#define HTTP_FIELDS (sizeof http_fields / sizeof http_fields[0])

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
    for (size_t i = 0; i < HTTP_FIELDS && ok; i++) ok = pw_read_opt(env, a.v[1], &http_fields[i], &o, &strs[i]);
    uint32_t id = 0;
    portway_status st = ok ? portway_register_http(pe->eng, name, &o, &id) : PORTWAY_OK;
    free(name);
    for (size_t i = 0; i < HTTP_FIELDS; i++) free(strs[i]);
    return ok ? pw_id_result(env, st, id) : NULL;
}
