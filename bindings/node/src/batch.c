/* eng.batch over the columnar batch ABI: n payloads of one handler submitted from one buffer and
 * an offsets array (portway_batch_submit), their results read from the batch's one completion
 * (portway_batch_result) and handed to JS once, as columns over one data buffer
 * (lib/batch.js BatchResult).
 *
 * batchSubmit(handlerId, data, offsets, timeoutMs, idOut) submits the items as one unit, all or
 * nothing (a refusal throws its status), writes the batch id to idOut[0] (an abort cancels it:
 * portway_cancel of a batch id reaches every item) and returns a waiter slot. When the batch's
 * completion is polled, the NativeEngine's _batchDone(slot, data, cols, hdrs) is called once:
 * data is one Buffer holding every item's bytes in order, cols a Float64Array of COLS fields
 * per item, hdrs every meta key and value in item order, each followed by NUL. The completion
 * is released with its poll batch as any other: the bytes are copied once (into `data`), so
 * the batch's maxInFlight slots are free again at once and not held until a GC; every item
 * is then a slice of `data` in JS, with no copy of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

/* Per-item fields of the columns: data start, data length, status, code, meta count, index of
 * its first meta pair in `hdrs`. */
#define COLS 6

/* batchSubmit(handlerId, data, offsets, timeoutMs, idOut) -> slot; see above. `offsets` is a
 * Float64Array of n + 1 nondecreasing byte offsets into `data` (n from 1 to maxInFlight: the
 * engine refuses more), `idOut` a Float64Array that receives the batch id. */
napi_value pw_js_batch_submit(napi_env env, napi_callback_info info) {
    pw_args a;
    pw_engine *pe = pw_this(env, info, 5, true, &a);
    if (!pe) return NULL;
    uint32_t handler = 0, timeout = 0;
    const uint8_t *data = NULL;
    size_t dlen = 0;
    if (!pw_get_handler_id(env, a.v[0], &handler) || !pw_get_bytes(env, a.v[1], &data, &dlen) ||
        !pw_get_timeout(env, a.v[3], &timeout))
        return NULL;
    double *offs = NULL, *id_out = NULL;
    size_t noffs = 0, nid = 0;
    napi_typedarray_type t1 = napi_uint8_array, t2 = napi_uint8_array;
    bool is1 = false, is2 = false;
    NAPI_CALL(env, napi_is_typedarray(env, a.v[2], &is1));
    NAPI_CALL(env, napi_is_typedarray(env, a.v[4], &is2));
    if (is1) NAPI_CALL(env, napi_get_typedarray_info(env, a.v[2], &t1, &noffs, (void **)&offs, NULL, NULL));
    if (is2) NAPI_CALL(env, napi_get_typedarray_info(env, a.v[4], &t2, &nid, (void **)&id_out, NULL, NULL));
    if (!is1 || t1 != napi_float64_array || noffs < 2 || !is2 || t2 != napi_float64_array || nid < 1) {
        pw_throw_invalid(env, false, "batchSubmit: offsets must be a Float64Array of n + 1 and idOut one of 1");
        return NULL;
    }
    size_t n = noffs - 1;
    uint64_t *o = malloc(noffs * sizeof *o);
    if (!o) {
        pw_throw_oom(env);
        return NULL;
    }
    for (size_t i = 0; i < noffs; i++) {
        /* Checked here as Numbers (NaN, negative, past the data); the engine checks the order. */
        if (!(offs[i] >= 0 && offs[i] <= (double)dlen)) {
            free(o);
            pw_throw_invalid(env, true, "batchSubmit: offsets must lie within the data");
            return NULL;
        }
        o[i] = (uint64_t)offs[i];
    }
    if (!pw_deliver_ready(env, pe)) {
        free(o);
        return NULL;
    }
    uint32_t slot = pw_waiter_take(env, pe);
    if (!slot) {
        free(o);
        return NULL;
    }
    uint64_t id = 0;
    portway_status st = portway_batch_submit(pe->eng, handler, data, o, n, timeout, (uint64_t)slot << 32, &id);
    free(o);
    if (!pw_status_ok(env, st)) {
        pw_waiter_free(pe, slot);
        return NULL;
    }
    id_out[0] = (double)id;
    pe->last_id = id;
    pw_waiter *w = &pe->waiters[slot - 1];
    w->used = true;
    w->columnar = true;
    w->remaining = 1;
    w->id = id;
    pe->in_flight++;
    pw_recover_notify(pe);
    if (!pw_update_busy(env, pe)) return NULL;
    napi_value v;
    NAPI_CALL(env, napi_create_uint32(env, slot, &v));
    return v;
}

/* The columns, data and hdrs of `view` as JS values (argv[1..3]); false when out of memory. */
static bool batch_values(napi_env env, const portway_batch_view *view, napi_value *argv) {
    size_t n = view->n, total = (size_t)view->offsets[n];
    void *p = NULL;
    napi_value ab;
    if ((total ? napi_create_buffer_copy(env, total, view->data, NULL, &argv[1])
               : napi_create_buffer(env, 0, NULL, &argv[1])) != napi_ok ||
        napi_create_arraybuffer(env, n * COLS * sizeof(double), &p, &ab) != napi_ok ||
        napi_create_typedarray(env, napi_float64_array, n * COLS, ab, 0, &argv[2]) != napi_ok)
        return false;
    double *cols = p;
    for (size_t i = 0; i < n; i++, cols += COLS) {
        cols[0] = (double)view->offsets[i];
        cols[1] = (double)(view->offsets[i + 1] - view->offsets[i]);
        cols[2] = view->statuses[i];
        cols[3] = view->codes[i];
        cols[4] = (double)(view->meta_offsets[i + 1] - view->meta_offsets[i]);
        cols[5] = (double)view->meta_offsets[i];
    }
    size_t pairs = (size_t)view->meta_offsets[n];
    if (pairs == 0) return napi_get_undefined(env, &argv[3]) == napi_ok;
    char *h = NULL;
    size_t hlen = 0, hcap = 0;
    for (size_t m = 0; m < pairs; m++) {
        size_t kl = strlen(view->meta[m].key) + 1, vl = strlen(view->meta[m].value) + 1;
        if (!pw_grow((void **)&h, &hcap, hlen + kl + vl, 1)) {
            free(h);
            return false;
        }
        memcpy(h + hlen, view->meta[m].key, kl);
        memcpy(h + hlen + kl, view->meta[m].value, vl);
        hlen += kl + vl;
    }
    bool ok = napi_create_string_utf8(env, h, hlen, &argv[3]) == napi_ok;
    free(h);
    return ok;
}

void pw_batch_done(napi_env env, pw_engine *pe, uint32_t slot, const portway_completion *c) {
    napi_value self, fn, argv[4];
    if (!pw_wrapper_method(env, pe, "_batchDone", &self, &fn) ||
        napi_create_uint32(env, slot, &argv[0]) != napi_ok) {
        pw_clear_exception(env);
        return; /* the wrapper is gone: nobody waits for the result */
    }
    portway_batch_view view;
    portway_status st = c->status == PORTWAY_OK ? portway_batch_result(pe->eng, c, &view) : c->status;
    if (st == PORTWAY_OK && batch_values(env, &view, argv)) {
        pw_call_or_fatal(env, self, fn, 4, argv);
        return;
    }
    pw_clear_exception(env);
    char msg[160];
    if (st == PORTWAY_OK)
        snprintf(msg, sizeof msg, "portway: a batch's results could not be handed to JavaScript (out of memory)");
    else if (c->status != PORTWAY_OK && c->len)
        snprintf(msg, sizeof msg, "%.*s", (int)(c->len < 150 ? c->len : 150), (const char *)c->data);
    else
        snprintf(msg, sizeof msg, "%s", portway_status_str(st));
    argv[1] = pw_make_error(env, st == PORTWAY_OK ? PORTWAY_INTERNAL : st, msg, strlen(msg));
    if (argv[1]) pw_call_or_fatal(env, self, fn, 2, argv);
}
