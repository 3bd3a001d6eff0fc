/* Introspection: stats, handlerStats, metricsText, inflightJson. */
#include <stdlib.h>
#include <string.h>

#include "addon.h"

/* A uint64_t field of a C stats record and its JS name (counts become Numbers: exact up to
 * 2^53). */
typedef struct {
    const char *key;
    size_t offset;
} u64_field;

#define U64F(type, key, field) {key, offsetof(type, field)}

static const u64_field stats_fields[] = {
    U64F(struct portway_stats, "submitted", submitted),
    U64F(struct portway_stats, "accepted", accepted),
    U64F(struct portway_stats, "rejectedBusy", rejected_busy),
    U64F(struct portway_stats, "rejectedShutdown", rejected_shutdown),
    U64F(struct portway_stats, "rejectedInvalid", rejected_invalid),
    U64F(struct portway_stats, "inFlight", in_flight),
    U64F(struct portway_stats, "queued", queued),
    U64F(struct portway_stats, "running", running),
    U64F(struct portway_stats, "ready", ready),
    U64F(struct portway_stats, "unreleased", unreleased),
    U64F(struct portway_stats, "poolWorkers", pool_workers),
};

static const u64_field latency_fields[] = {
    U64F(struct portway_latency, "p50Ns", p50_ns), U64F(struct portway_latency, "p90Ns", p90_ns),
    U64F(struct portway_latency, "p99Ns", p99_ns), U64F(struct portway_latency, "maxNs", max_ns),
    U64F(struct portway_latency, "sumNs", sum_ns), U64F(struct portway_latency, "count", count),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static bool set_u64(napi_env env, napi_value obj, const char *key, uint64_t v) {
    napi_value x;
    NAPI_CALL_BOOL(env, napi_create_double(env, (double)v, &x));
    NAPI_CALL_BOOL(env, napi_set_named_property(env, obj, key, x));
    return true;
}

/* obj[key] = a new object with the `n` fields of the record at `rec` (obj itself if key is NULL). */
static bool set_fields(napi_env env, napi_value obj, const char *key, const void *rec,
                       const u64_field *fields, size_t n) {
    napi_value o = obj;
    if (key) NAPI_CALL_BOOL(env, napi_create_object(env, &o));
    for (size_t i = 0; i < n; i++)
        if (!set_u64(env, o, fields[i].key, *(const uint64_t *)((const char *)rec + fields[i].offset)))
            return false;
    if (key) NAPI_CALL_BOOL(env, napi_set_named_property(env, obj, key, o));
    return true;
}

/* obj.completed = { STATUS_NAME: count } over the status slots; `nonzero_only` leaves out the
 * zeros (handlerStats), else every named status is there (stats). */
static bool set_completed(napi_env env, napi_value obj, const uint64_t *counts, bool nonzero_only) {
    napi_value completed;
    NAPI_CALL_BOOL(env, napi_create_object(env, &completed));
    for (uint32_t i = 0; i < PORTWAY_STATUS_SLOTS; i++) {
        const char *name = portway_status_str(i);
        if (nonzero_only ? counts[i] == 0 : strcmp(name, "PORTWAY_UNKNOWN_STATUS") == 0) continue;
        if (!set_u64(env, completed, name, counts[i])) return false;
    }
    NAPI_CALL_BOOL(env, napi_set_named_property(env, obj, "completed", completed));
    return true;
}

napi_value pw_js_stats(napi_env env, napi_callback_info info) {
    pw_engine *pe = pw_this(env, info, 0, true, NULL);
    struct portway_stats s;
    if (!pe || !pw_status_ok(env, portway_stats(pe->eng, &s))) return NULL;
    napi_value obj;
    NAPI_CALL(env, napi_create_object(env, &obj));
    if (!set_fields(env, obj, NULL, &s, stats_fields, COUNT(stats_fields)) ||
        !set_completed(env, obj, s.completed, false))
        return NULL;
    return obj;
}

/* Text from one of the two-call C functions (metrics text, in-flight JSON): call with a buffer
 * of the last size seen (starting at 4 KiB); on PORTWAY_BUFFER_TOO_SMALL grow to the size
 * needed plus slack and call again (the text may grow between calls). */
typedef portway_status (*pw_text_fn)(portway_engine *eng, uint32_t arg, char *buf, size_t cap,
                                     size_t *needed);

static portway_status text_metrics(portway_engine *eng, uint32_t arg, char *buf, size_t cap,
                                   size_t *needed) {
    (void)arg;
    return portway_metrics_text(eng, buf, cap, needed);
}

static portway_status text_inflight(portway_engine *eng, uint32_t limit, char *buf, size_t cap,
                                    size_t *needed) {
    return portway_inflight_json(eng, limit, buf, cap, needed);
}

static napi_value text_call(napi_env env, pw_engine *pe, pw_text_fn fn, uint32_t arg) {
    size_t cap = pe->text_hint ? pe->text_hint : 4096;
    for (int attempt = 0; attempt < 8; attempt++) {
        char *buf = malloc(cap);
        if (!buf) {
            pw_throw_oom(env);
            return NULL;
        }
        size_t needed = 0;
        portway_status st = fn(pe->eng, arg, buf, cap, &needed);
        if (st == PORTWAY_BUFFER_TOO_SMALL && needed > cap) {
            free(buf);
            cap = needed + needed / 4;
            continue;
        }
        if (!pw_status_ok(env, st)) {
            free(buf);
            return NULL;
        }
        if (needed > pe->text_hint) pe->text_hint = needed + needed / 4;
        napi_value v;
        napi_status ns = napi_create_string_utf8(env, buf, strnlen(buf, cap), &v);
        free(buf);
        NAPI_CALL(env, ns);
        return v;
    }
    napi_throw_error(env, "PORTWAY_INTERNAL", "the text kept growing between calls");
    return NULL;
}

/* metricsText() -> string (Prometheus text exposition) */
napi_value pw_js_metrics_text(napi_env env, napi_callback_info info) {
    pw_engine *pe = pw_this(env, info, 0, true, NULL);
    if (!pe) return NULL;
    return text_call(env, pe, text_metrics, 0);
}

/* inflightJson(limit) -> string (JSON; parsed by lib/engine.js) */
napi_value pw_js_inflight_json(napi_env env, napi_callback_info info) {
    pw_args a;
    pw_engine *pe = pw_this(env, info, 1, true, &a);
    if (!pe) return NULL;
    uint32_t limit = 0;
    if (!pw_get_u32(env, a.v[0], "limit", true, 100, &limit)) return NULL;
    return text_call(env, pe, text_inflight, limit);
}

/* handlerStats(id) -> { id, submitted, completed: {STATUS: n (nonzero only)}, queueWait, run } */
napi_value pw_js_handler_stats(napi_env env, napi_callback_info info) {
    pw_args a;
    pw_engine *pe = pw_this(env, info, 1, true, &a);
    uint32_t id;
    if (!pe || !pw_get_handler_id(env, a.v[0], &id)) return NULL;
    struct portway_handler_stats hs;
    memset(&hs, 0, sizeof hs);
    if (!pw_status_ok(env, portway_handler_stats(pe->eng, id, &hs))) return NULL;
    napi_value obj, v;
    NAPI_CALL(env, napi_create_object(env, &obj));
    NAPI_CALL(env, napi_create_uint32(env, hs.id, &v));
    NAPI_CALL(env, napi_set_named_property(env, obj, "id", v));
    if (!set_u64(env, obj, "submitted", hs.submitted) || !set_completed(env, obj, hs.completed, true) ||
        !set_fields(env, obj, "queueWait", &hs.queue_wait, latency_fields, COUNT(latency_fields)) ||
        !set_fields(env, obj, "run", &hs.run, latency_fields, COUNT(latency_fields)))
        return NULL;
    return obj;
}
