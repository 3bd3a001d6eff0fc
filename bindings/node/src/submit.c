/* Submitting: submit, submitMany, cancel, cancelAll, lastId, and the waiter slots that tie
 * each completion (its user_data: slot << 32 | batch position) to its promise in JS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

static uint32_t waiter_alloc(pw_engine *pe) {
    if (pe->free_head == 0) {
        uint32_t ncap = pe->cap ? pe->cap * 2 : 1024;
        pw_waiter *w = realloc(pe->waiters, (size_t)ncap * sizeof *w);
        if (!w) return 0;
        for (uint32_t i = pe->cap; i < ncap; i++) {
            memset(&w[i], 0, sizeof w[i]);
            w[i].next_free = (i + 1 < ncap) ? i + 2 : 0;
        }
        pe->waiters = w;
        pe->free_head = pe->cap + 1;
        pe->cap = ncap;
    }
    uint32_t slot = pe->free_head;
    pe->free_head = pe->waiters[slot - 1].next_free;
    pe->waiters[slot - 1].next_free = 0;
    return slot;
}

uint32_t pw_waiter_take(napi_env env, pw_engine *pe) {
    uint32_t slot = waiter_alloc(pe);
    if (!slot) pw_throw_oom(env);
    return slot;
}

/* submit(handlerId, payload, timeoutMs) -> slot: lib/engine.js keeps the promise's resolve and
 * reject in this._res[slot] / this._rej[slot] until deliver settles it. Submits at once
 * (after the queued ones: pw_this flushes them); a refusal throws. */
napi_value pw_js_submit(napi_env env, napi_callback_info info) {
    portway_request req = {0};
    pw_engine *pe = pw_this_request(env, info, true, &req);
    return pe ? pw_submit_now(env, pe, &req) : NULL;
}

pw_engine *pw_this_request(napi_env env, napi_callback_info info, bool flush, portway_request *req) {
    pw_args a;
    pw_engine *pe = flush ? pw_this(env, info, 3, true, &a) : pw_this_noflush(env, info, 3, true, &a);
    bool ok = pe && pw_get_handler_id(env, a.v[0], &req->handler) &&
              pw_get_bytes(env, a.v[1], &req->payload, &req->payload_len) &&
              pw_get_timeout(env, a.v[2], &req->timeout_ms);
    return ok ? pe : NULL;
}

napi_value pw_submit_now(napi_env env, pw_engine *pe, portway_request *req) {
    if (!pw_deliver_ready(env, pe)) return NULL;
    uint32_t slot = pw_waiter_take(env, pe);
    if (!slot) return NULL;
    req->user_data = (uint64_t)slot << 32;
    uint64_t id = 0;
    if (!pw_status_ok(env, portway_submit(pe->eng, req, &id))) {
        pw_waiter_free(pe, slot);
        return NULL;
    }
    pe->last_id = id;
    pw_waiter *w = &pe->waiters[slot - 1];
    w->used = true;
    w->remaining = 1;
    w->id = id;
    pe->in_flight++;
    pw_recover_notify(pe); /* an inline completion's notify call may have failed just now */
    napi_value v;
    NAPI_CALL(env, napi_create_uint32(env, slot, &v));
    if (!pw_update_busy(env, pe)) return NULL;
    return v;
}

/* submitMany(handlerId, payloads[], timeoutMs) -> slot (0 for an empty batch); lib/engine.js
 * keeps the promise by slot, as for submit. All or nothing: if the batch is only partly accepted,
 * the accepted prefix is cancelled and the rejection (a PortwayError with .accepted) is
 * returned instead of a slot; the batch's completions are then absorbed. */
napi_value pw_js_submit_many(napi_env env, napi_callback_info info) {
    pw_args a;
    pw_engine *pe = pw_this(env, info, 4, true, &a);
    if (!pe) return NULL;
    uint32_t handler = 0, n = 0, timeout = 0;
    if (!pw_get_handler_id(env, a.v[0], &handler)) return NULL;
    NAPI_CALL(env, napi_get_array_length(env, a.v[1], &n));
    if (!pw_get_timeout(env, a.v[2], &timeout)) return NULL;
    /* a.v[3]: undefined, or a Float64Array of n elements that receives the accepted ids (an
     * abort cancels exactly those: the header does not promise consecutive ids). */
    double *out_ids = NULL;
    bool is_ta = false;
    NAPI_CALL(env, napi_is_typedarray(env, a.v[3], &is_ta));
    if (is_ta) {
        napi_typedarray_type type;
        size_t length = 0;
        void *ptr = NULL;
        NAPI_CALL(env, napi_get_typedarray_info(env, a.v[3], &type, &length, &ptr, NULL, NULL));
        if (type != napi_float64_array || length < n) {
            pw_throw_invalid(env, false, "ids must be a Float64Array of one element per payload");
            return NULL;
        }
        out_ids = ptr;
    }
    napi_value v;
    if (n == 0) {
        NAPI_CALL(env, napi_create_uint32(env, 0, &v));
        return v;
    }
    if (!pw_deliver_ready(env, pe)) return NULL;
    uint32_t slot = pw_waiter_take(env, pe);
    if (!slot) return NULL;
    portway_request *reqs = calloc(n, sizeof *reqs);
    uint64_t *ids = calloc(n, sizeof *ids);
    if (!reqs || !ids) {
        free(reqs);
        free(ids);
        pw_waiter_free(pe, slot);
        pw_throw_oom(env);
        return NULL;
    }
    bool good = true;
    for (uint32_t i = 0; i < n && good; i++) {
        napi_handle_scope scope;
        if (napi_open_handle_scope(env, &scope) != napi_ok) {
            good = false;
            break;
        }
        napi_value el;
        if (napi_get_element(env, a.v[1], i, &el) != napi_ok ||
            !pw_get_bytes(env, el, &reqs[i].payload, &reqs[i].payload_len))
            good = false;
        /* The pointer stays valid: the array keeps the buffer alive during this call. */
        reqs[i].handler = handler;
        reqs[i].timeout_ms = timeout;
        reqs[i].user_data = ((uint64_t)slot << 32) | i;
        napi_close_handle_scope(env, scope);
    }
    if (!good) {
        free(reqs);
        free(ids);
        pw_waiter_free(pe, slot);
        bool pending = false;
        napi_is_exception_pending(env, &pending);
        if (!pending) napi_throw_type_error(env, NULL, "payloads must be Buffers or Uint8Arrays");
        return NULL;
    }
    size_t accepted = 0;
    portway_status st;
#ifdef PORTWAY_FAULT_INJECTION
    if (n > 1 && FAULT(pe, FAULT_BATCH_GAP)) {
        /* Submits the batch in two calls with an unrelated request (user_data 0: no waiter)
         * between them, so its ids have a gap, as the header allows. */
        size_t more = 0;
        uint64_t gap_id;
        portway_request gap = reqs[0];
        gap.user_data = 0;
        st = portway_submit_batch(pe->eng, reqs, 1, ids, &accepted);
        if (st == PORTWAY_OK) st = portway_submit(pe->eng, &gap, &gap_id);
        if (st == PORTWAY_OK) st = portway_submit_batch(pe->eng, reqs + 1, n - 1, ids + 1, &more);
        accepted += more;
    } else
#endif
        st = portway_submit_batch(pe->eng, reqs, n, ids, &accepted);
    free(reqs);
    if (out_ids)
        for (size_t i = 0; i < accepted; i++) out_ids[i] = (double)ids[i];
    if (st != PORTWAY_OK && accepted == 0) {
        free(ids);
        pw_waiter_free(pe, slot);
        pw_throw_status(env, st);
        return NULL;
    }
    pw_waiter *w = &pe->waiters[slot - 1];
    w->used = true;
    w->batch = true;
    w->remaining = (uint32_t)accepted;
    pe->in_flight += accepted;
    pe->last_id = ids[accepted - 1];
    v = NULL;
    if (st != PORTWAY_OK) {
        /* Partial: cancel the accepted prefix; reject with the status that stopped the batch. */
        const char *msg = portway_last_error();
        char buf[512];
        snprintf(buf, sizeof buf, "%s (accepted %zu of %u; the accepted requests were cancelled)",
                 (msg && *msg) ? msg : portway_status_str(st), accepted, n);
        napi_value err = pw_make_error(env, st, buf, strlen(buf));
        for (size_t i = 0; i < accepted; i++) portway_cancel(pe->eng, ids[i]);
        if (err) {
            napi_value acc;
            if (napi_create_double(env, (double)accepted, &acc) == napi_ok)
                napi_set_named_property(env, err, "accepted", acc);
        }
        w->settled = true;
        v = err;
    }
    free(ids);
    pw_recover_notify(pe);
    if (!pw_update_busy(env, pe)) return NULL;
    if (v) return v;
    if (st != PORTWAY_OK) NAPI_CALL(env, napi_get_undefined(env, &v)); /* no error object */
    else NAPI_CALL(env, napi_create_uint32(env, slot, &v));
    return v;
}

napi_value pw_js_last_id(napi_env env, napi_callback_info info) {
    pw_engine *pe = pw_this(env, info, 0, false, NULL);
    if (!pe) return NULL;
    napi_value v;
    NAPI_CALL(env, napi_create_double(env, (double)pe->last_id, &v));
    return v;
}

/* cancel(id) -> true if it was still in flight */
napi_value pw_js_cancel(napi_env env, napi_callback_info info) {
    pw_args a;
    napi_value v;
    pw_engine *pe = pw_this(env, info, 1, false, &a);
    if (!pe) return NULL;
    bool r = false;
    int64_t id = 0; /* ids are exact in a Number up to 2^53 - 1 */
    if (!pw_get_int_arg(env, a.v[0], "id", 0, SAFE_INT_MAX_D, false, 0, &id)) return NULL;
    if (pe->eng) {
        portway_status st = portway_cancel(pe->eng, (uint64_t)id);
        if (st != PORTWAY_OK && st != PORTWAY_NOT_FOUND) {
            pw_throw_status(env, st);
            return NULL;
        }
        r = st == PORTWAY_OK;
    }
    NAPI_CALL(env, napi_get_boolean(env, r, &v));
    return v;
}

napi_value pw_js_cancel_all(napi_env env, napi_callback_info info) {
    pw_engine *pe = pw_this(env, info, 0, true, NULL);
    if (!pe) return NULL;
    pw_status_ok(env, portway_cancel_all(pe->eng));
    return NULL;
}
