/* Errors thrown into JS: PortwayError values for statuses (the class lib/native.js registers),
 * TypeError/RangeError for bad arguments, PORTWAY_NAPI for a failed N-API call. */
#include <string.h>

#include "addon.h"

void pw_throw_napi_error(napi_env env, napi_status st, const char *what) {
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
    const napi_extended_error_info *info = NULL;
    const char *msg = what;
    if (napi_get_last_error_info(env, &info) == napi_ok && info && info->error_message)
        msg = info->error_message;
    (void)st;
    napi_throw_error(env, "PORTWAY_NAPI", msg);
}

/* Throws a TypeError (range false) or RangeError carrying `.code` 'PORTWAY_INVALID_ARGUMENT'
 * and `.status` 1: every argument check of the binding refuses bad input this way, so callers
 * can test one code whichever binding they use (README "Errors"). */
void pw_throw_invalid(napi_env env, bool range, const char *msg) {
    napi_value code, text, err, st;
    napi_status s = napi_create_string_utf8(env, "PORTWAY_INVALID_ARGUMENT", NAPI_AUTO_LENGTH, &code);
    if (s == napi_ok) s = napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
    if (s == napi_ok)
        s = range ? napi_create_range_error(env, code, text, &err) : napi_create_type_error(env, code, text, &err);
    if (s != napi_ok) {
        napi_throw_type_error(env, "PORTWAY_INVALID_ARGUMENT", msg);
        return;
    }
    if (napi_create_uint32(env, PORTWAY_INVALID_ARGUMENT, &st) == napi_ok)
        napi_set_named_property(env, err, "status", st);
    napi_throw(env, err);
}

void pw_throw_oom(napi_env env) {
    napi_throw_error(env, "PORTWAY_INTERNAL", "out of memory");
}

void pw_clear_exception(napi_env env) {
    bool pending = false;
    napi_value ignored;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending)
        napi_get_and_clear_last_exception(env, &ignored);
}

/* Falls back to a plain Error with .code when the PortwayError class is missing or its
 * constructor throws (the error being reported matters more than its class). */
napi_value pw_make_error(napi_env env, uint32_t status, const char *msg, size_t msg_len) {
    napi_value message, code, st, err = NULL;
    const char *name = portway_status_str(status);
    if (napi_create_string_utf8(env, msg, msg_len, &message) != napi_ok) return NULL;
    if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok) return NULL;
    if (napi_create_uint32(env, status, &st) != napi_ok) return NULL;
    pw_instance *inst = pw_get_instance(env);
    napi_value ctor;
    if (inst && inst->error_ctor && napi_get_reference_value(env, inst->error_ctor, &ctor) == napi_ok &&
        ctor) {
        napi_value argv[3] = {message, code, st};
        if (napi_new_instance(env, ctor, 3, argv, &err) == napi_ok) return err;
        pw_clear_exception(env);
    }
    if (napi_create_error(env, code, message, &err) != napi_ok) return NULL;
    return err;
}

napi_value pw_request_error(napi_env env, uint32_t status, const char *msg, size_t msg_len,
                            uint64_t id) {
    napi_value err = pw_make_error(env, status, msg, msg_len), v;
    if (err && napi_create_double(env, (double)id, &v) == napi_ok)
        napi_set_named_property(env, err, "requestId", v);
    return err;
}

napi_value pw_status_error(napi_env env, portway_status status) {
    const char *msg = portway_last_error();
    if (!msg || !*msg) msg = portway_status_str(status);
    return pw_make_error(env, status, msg, strlen(msg));
}

void pw_throw_status(napi_env env, portway_status status) {
    napi_value err = pw_status_error(env, status);
    if (err) {
        napi_throw(env, err);
        return;
    }
    const char *msg = portway_last_error();
    napi_throw_error(env, portway_status_str(status), msg && *msg ? msg : portway_status_str(status));
}

bool pw_status_ok(napi_env env, portway_status status) {
    if (status == PORTWAY_OK) return true;
    pw_throw_status(env, status);
    return false;
}

void pw_resolve_undefined(napi_env env, napi_deferred d) {
    napi_value undef;
    if (napi_get_undefined(env, &undef) == napi_ok) napi_resolve_deferred(env, d, undef);
}

bool pw_call_or_fatal(napi_env env, napi_value recv, napi_value fn, size_t argc,
                      const napi_value *argv) {
    napi_value ignored, err;
    if (napi_call_function(env, recv, fn, argc, argv, &ignored) != napi_pending_exception) return true;
    if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    return false;
}

napi_value pw_id_result(napi_env env, portway_status st, uint32_t id) {
    napi_value v;
    if (!pw_status_ok(env, st)) return NULL;
    NAPI_CALL(env, napi_create_uint32(env, id, &v));
    return v;
}
