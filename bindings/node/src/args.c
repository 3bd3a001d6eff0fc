/* Argument readers: every method reads its arguments through these, so bad input is refused
 * the same way everywhere (TypeError/RangeError, code PORTWAY_INVALID_ARGUMENT, no coercion). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

/* Reads integer argument `what` in [min, max] (max at most 2^53 - 1, so every value is exact in
 * a double) into *out. `undefined` gives *out = dflt when `optional`; anything else that is not
 * such a number throws (TypeError for a non-number, RangeError for NaN, fractions, out of
 * range) and returns false. No coercion: `"5"`, `1.5`, `-1` and `null` are refused, and no
 * out-of-range double ever reaches a C integer conversion. */
bool pw_get_int_arg(napi_env env, napi_value v, const char *what, double min, double max,
                    bool optional, int64_t dflt, int64_t *out) {
    char msg[160];
    napi_valuetype t;
    NAPI_CALL_BOOL(env, napi_typeof(env, v, &t));
    if (t == napi_undefined && optional) {
        *out = dflt;
        return true;
    }
    if (t != napi_number) {
        snprintf(msg, sizeof msg, "%s must be an integer from %.0f to %.0f", what, min, max);
        pw_throw_invalid(env, false, msg);
        return false;
    }
    double d = 0;
    NAPI_CALL_BOOL(env, napi_get_value_double(env, v, &d));
    if (!(d >= min && d <= max) || d != floor(d)) {
        snprintf(msg, sizeof msg, "%s must be an integer from %.0f to %.0f (got %g)", what, min, max, d);
        pw_throw_invalid(env, true, msg);
        return false;
    }
    *out = (int64_t)d;
    return true;
}

bool pw_get_u32(napi_env env, napi_value v, const char *what, bool optional, uint32_t dflt,
                uint32_t *out) {
    int64_t x = 0;
    if (!pw_get_int_arg(env, v, what, 0, U32_MAX_D, optional, dflt, &x)) return false;
    *out = (uint32_t)x;
    return true;
}

bool pw_get_handler_id(napi_env env, napi_value v, uint32_t *out) {
    return pw_get_u32(env, v, "handler id", false, 0, out);
}

/* 0 is refused rather than read as "the default" or "no deadline" (README "Statuses and
 * decisions"). */
bool pw_get_timeout(napi_env env, napi_value v, uint32_t *out) {
    int64_t t = 0;
    if (!pw_get_int_arg(env, v, "timeoutMs", 1, U32_MAX_D, true, 0, &t)) return false;
    *out = (uint32_t)t;
    return true;
}

/* Int8Array is taken too: bytes are bytes. lib/ turns every other accepted kind into a
 * Uint8Array first. */
bool pw_get_bytes(napi_env env, napi_value v, const uint8_t **data, size_t *len) {
    bool is;
    NAPI_CALL_BOOL(env, napi_is_typedarray(env, v, &is));
    if (is) {
        napi_typedarray_type type;
        size_t length;
        void *ptr;
        NAPI_CALL_BOOL(env, napi_get_typedarray_info(env, v, &type, &length, &ptr, NULL, NULL));
        if (type == napi_uint8_array || type == napi_uint8_clamped_array || type == napi_int8_array) {
            *data = ptr;
            *len = length;
            return true;
        }
    }
    pw_throw_invalid(env, false, "payload must be a Buffer or Uint8Array");
    return false;
}

/* Read at its real length (asked of N-API first), never into a fixed buffer: a name cut short
 * here would reach the core with the wrong length, and its refusal would quote that. */
bool pw_get_string(napi_env env, napi_value v, const char *what, char **out) {
    char msg[160];
    napi_valuetype t;
    NAPI_CALL_BOOL(env, napi_typeof(env, v, &t));
    if (t != napi_string) {
        snprintf(msg, sizeof msg, "%s must be a string", what);
        pw_throw_invalid(env, false, msg);
        return false;
    }
    size_t len = 0;
    NAPI_CALL_BOOL(env, napi_get_value_string_utf8(env, v, NULL, 0, &len));
    char *s = malloc(len + 1);
    if (!s) {
        pw_throw_oom(env);
        return false;
    }
    napi_status st = napi_get_value_string_utf8(env, v, s, len + 1, &len);
    if (st != napi_ok) {
        free(s);
        pw_throw_napi_error(env, st, "napi_get_value_string_utf8");
        return false;
    }
    if (memchr(s, '\0', len)) {
        free(s);
        snprintf(msg, sizeof msg, "%s must not contain NUL characters", what);
        pw_throw_invalid(env, false, msg);
        return false;
    }
    *out = s;
    return true;
}

bool pw_read_opt(napi_env env, napi_value obj, const pw_opt_field *f, void *base, char **str) {
    napi_value v;
    napi_valuetype t;
    void *field = (char *)base + f->offset;
    NAPI_CALL_BOOL(env, napi_get_named_property(env, obj, f->key, &v));
    NAPI_CALL_BOOL(env, napi_typeof(env, v, &t));
    if (t == napi_undefined || t == napi_null) return true;
    int64_t n = 0;
    switch (f->kind) {
    case PW_OPT_U32: return pw_get_u32(env, v, f->key, false, 0, field);
    case PW_OPT_U64:
        if (!pw_get_int_arg(env, v, f->key, 0, SAFE_INT_MAX_D, false, 0, &n)) return false;
        *(uint64_t *)field = (uint64_t)n;
        return true;
    case PW_OPT_BOOL: NAPI_CALL_BOOL(env, napi_get_value_bool(env, v, field)); return true;
    case PW_OPT_F64: NAPI_CALL_BOOL(env, napi_get_value_double(env, v, field)); return true;
    case PW_OPT_STR:
        if (!pw_get_string(env, v, f->key, str)) return false;
        *(const char **)field = *str;
        return true;
    }
    return true;
}
