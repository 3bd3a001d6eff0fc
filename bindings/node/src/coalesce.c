/* Per-tick coalescing of submits. `enqueue` (what Engine#submit calls) does not call the engine:
 * it takes a waiter slot, copies the payload into a queue and returns the slot; lib/engine.js
 * queues one microtask per tick that calls `flush`, which submits the whole queue in one
 * portway_submit_batch call. One call per tick instead of one per request is where the time
 * goes: the engine hands a batch to its pool in one step.
 *
 * The slot is the request's handle until the engine gives it an id: `cancelSlot` of a queued
 * request takes it out of the queue and rejects it PORTWAY_CANCELLED (it never reaches the
 * engine); of a submitted one, it cancels the engine's id. Either way it completes once.
 *
 * A refusal found at the flush rejects that request with the status and message the engine
 * gave. PORTWAY_BUSY and PORTWAY_SHUTDOWN refuse the rest of the queue too (the engine counts
 * each refused request, so rejectedBusy equals the BUSY rejections JS sees, as with one submit
 * per request); after any other refusal (PORTWAY_INVALID_ARGUMENT for a payload over
 * max_payload, PORTWAY_NOT_FOUND for an unknown handler id) the flush goes on with the next
 * request (the engine did not count the requests after the refused one, so the ones
 * submitted again count once).
 *
 * Every other method flushes the queue first (pw_this), so its effect comes after every
 * submit made before it. Payloads over COALESCE_MAX_PAYLOAD are submitted at once instead
 * (after a flush): the copy into the queue would cost more than the call it saves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

#define COALESCE_MAX_PAYLOAD (16 * 1024)
/* Queue buffers above these sizes are freed after a flush rather than kept for the next tick. */
#define KEEP_DATA_BYTES (1024 * 1024)
#define KEEP_ITEMS 65536u

bool pw_grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t ncap = *cap ? *cap : 256;
    while (ncap < need) ncap *= 2;
    void *q = realloc(*p, ncap * elem);
    if (!q) return false;
    *p = q;
    *cap = ncap;
    return true;
}

/* enqueue(handlerId, payload, timeoutMs) -> slot, settled like submit's. */
napi_value pw_js_enqueue(napi_env env, napi_callback_info info) {
    portway_request req = {0};
    pw_engine *pe = pw_this_request(env, info, false, &req);
    if (!pe) return NULL;
    if (req.payload_len > COALESCE_MAX_PAYLOAD) {
        if (pe->npend) pw_pending_flush(env, pe); /* keep the submission order */
        return pw_submit_now(env, pe, &req);
    }
    if (!pw_deliver_ready(env, pe)) return NULL;
    size_t cap = pe->pend_cap, dcap = pe->pend_data_cap;
    bool ok = pw_grow((void **)&pe->pend, &cap, (size_t)pe->npend + 1, sizeof *pe->pend);
    pe->pend_cap = (uint32_t)cap;
    ok = ok && pw_grow((void **)&pe->pend_data, &dcap, pe->pend_len + req.payload_len, 1);
    pe->pend_data_cap = dcap;
    if (!ok) {
        pw_throw_oom(env);
        return NULL;
    }
    uint32_t slot = pw_waiter_take(env, pe);
    if (!slot) return NULL;
    pw_waiter *w = &pe->waiters[slot - 1];
    w->used = true;
    w->pending = true;
    w->remaining = 1;
    pe->pend[pe->npend++] = (pw_pend){.handler = req.handler, .timeout_ms = req.timeout_ms,
                                      .slot = slot, .off = pe->pend_len, .len = req.payload_len};
    if (req.payload_len) memcpy(pe->pend_data + pe->pend_len, req.payload, req.payload_len);
    pe->pend_len += req.payload_len;
    napi_value v;
    NAPI_CALL(env, napi_create_uint32(env, slot, &v));
    return v;
}

/* Rejects queued request `slot` with the PortwayError of `status` and `msg` and frees it. */
static void reject_pending(napi_env env, pw_engine *pe, uint32_t slot, uint32_t status, const char *msg) {
    napi_value err = pw_make_error(env, status, msg, strlen(msg));
    pw_deliver_reject(env, pe, slot, err);
    pw_waiter_free(pe, slot);
}

static void pending_reset(pw_engine *pe) {
    pe->npend = 0;
    pe->pend_len = 0;
    if (pe->pend_data_cap > KEEP_DATA_BYTES) {
        free(pe->pend_data);
        pe->pend_data = NULL;
        pe->pend_data_cap = 0;
    }
    if (pe->pend_cap > KEEP_ITEMS) {
        free(pe->pend);
        pe->pend = NULL;
        pe->pend_cap = 0;
    }
    if (pe->pend_reqs_cap > KEEP_ITEMS) {
        free(pe->pend_reqs);
        free(pe->pend_ids);
        pe->pend_reqs = NULL;
        pe->pend_ids = NULL;
        pe->pend_reqs_cap = 0;
    }
}

void pw_pending_flush(napi_env env, pw_engine *pe) {
    uint32_t np = pe->npend;
    if (np == 0) return;
    napi_handle_scope scope = NULL;
    if (napi_open_handle_scope(env, &scope) != napi_ok) scope = NULL;
    size_t rcap = pe->pend_reqs_cap, icap = pe->pend_reqs_cap;
    bool ok = pw_grow((void **)&pe->pend_reqs, &rcap, np, sizeof *pe->pend_reqs) &&
              pw_grow((void **)&pe->pend_ids, &icap, np, sizeof *pe->pend_ids);
    pe->pend_reqs_cap = (uint32_t)(rcap < icap ? rcap : icap);
    if (!pe->eng || !ok) {
        /* Freed engine, or no memory for the call's arrays: each request rejects. */
        for (uint32_t i = 0; i < np; i++)
            if (pe->pend[i].slot)
                reject_pending(env, pe, pe->pend[i].slot, pe->eng ? PORTWAY_INTERNAL : PORTWAY_SHUTDOWN,
                               pe->eng ? "out of memory" : "engine is closed");
        pending_reset(pe);
        pw_deliver_end(env, pe);
        if (scope) napi_close_handle_scope(env, scope);
        return;
    }
    size_t n = 0;
    for (uint32_t i = 0; i < np; i++) {
        const pw_pend *q = &pe->pend[i];
        if (!q->slot) continue; /* cancelled while queued */
        pe->pend_reqs[n++] = (portway_request){.handler = q->handler, .payload = pe->pend_data + q->off,
                                               .payload_len = q->len, .timeout_ms = q->timeout_ms,
                                               .user_data = (uint64_t)q->slot << 32};
    }
    size_t i = 0;
    while (i < n) {
        size_t accepted = 0;
        portway_status st = portway_submit_batch(pe->eng, pe->pend_reqs + i, n - i, pe->pend_ids + i, &accepted);
        pe->flush_calls++;
        for (size_t k = i; k < i + accepted; k++) {
            pw_waiter *w = &pe->waiters[(pe->pend_reqs[k].user_data >> 32) - 1];
            w->pending = false;
            w->id = pe->pend_ids[k];
        }
        pe->in_flight += accepted;
        if (accepted) pe->last_id = pe->pend_ids[i + accepted - 1];
        i += accepted;
        if (st == PORTWAY_OK) break;
        /* Request i was refused; its message before any other call can replace it. PORTWAY_BUSY
         * and PORTWAY_SHUTDOWN refuse every later request as well (nothing releases a slot
         * before the JS thread polls), and the engine has counted each of them already: they
         * reject with the same error without another call. Any other refusal concerns request
         * i alone; the flush goes on with the next. */
        const char *m = portway_last_error();
        char msg[512];
        snprintf(msg, sizeof msg, "%s", (m && *m) ? m : portway_status_str(st));
        size_t end = (st == PORTWAY_BUSY || st == PORTWAY_SHUTDOWN) ? n : i + 1;
        for (; i < end; i++) reject_pending(env, pe, (uint32_t)(pe->pend_reqs[i].user_data >> 32), st, msg);
    }
    pe->flush_items += n;
    pending_reset(pe);
    pw_recover_notify(pe);
    pw_deliver_end(env, pe);
    pw_update_busy(env, pe);
    if (scope) napi_close_handle_scope(env, scope);
}

/* flush(): submits the queue (lib/engine.js calls it from a microtask once per tick). */
napi_value pw_js_flush(napi_env env, napi_callback_info info) {
    pw_this(env, info, 0, false, NULL); /* flushes */
    return NULL;
}

/* cancelSlot(slot) -> true if the request was still queued or in flight. lib/engine.js calls it
 * only while `slot` is still that request's (its reject function is still registered). */
napi_value pw_js_cancel_slot(napi_env env, napi_callback_info info) {
    pw_args a;
    pw_engine *pe = pw_this_noflush(env, info, 1, false, &a);
    if (!pe) return NULL;
    uint32_t slot = 0;
    if (!pw_get_u32(env, a.v[0], "slot", false, 0, &slot)) return NULL;
    bool r = false;
    pw_waiter *w = slot && slot <= pe->cap ? &pe->waiters[slot - 1] : NULL;
    if (w && w->used && !w->batch && w->pending) {
        for (uint32_t i = pe->npend; i-- > 0;) {
            if (pe->pend[i].slot == slot) {
                pe->pend[i].slot = 0;
                break;
            }
        }
        reject_pending(env, pe, slot, PORTWAY_CANCELLED, "cancelled before it was submitted");
        pw_deliver_end(env, pe);
        r = true;
    } else if (w && w->used && !w->batch && pe->eng) {
        portway_status st = portway_cancel(pe->eng, w->id);
        if (st != PORTWAY_OK && st != PORTWAY_NOT_FOUND) {
            pw_throw_status(env, st);
            return NULL;
        }
        r = st == PORTWAY_OK;
    }
    napi_value v;
    NAPI_CALL(env, napi_get_boolean(env, r, &v));
    return v;
}

/* _coalesceStats() -> [portway_submit_batch calls made by flushes, requests flushed]: for the
 * tests (one call per tick) and for anyone checking that coalescing happens. */
napi_value pw_js_coalesce_stats(napi_env env, napi_callback_info info) {
    pw_engine *pe = pw_this_noflush(env, info, 0, false, NULL);
    if (!pe) return NULL;
    napi_value arr, v;
    NAPI_CALL(env, napi_create_array_with_length(env, 2, &arr));
    NAPI_CALL(env, napi_create_double(env, (double)pe->flush_calls, &v));
    NAPI_CALL(env, napi_set_element(env, arr, 0, v));
    NAPI_CALL(env, napi_create_double(env, (double)pe->flush_items, &v));
    NAPI_CALL(env, napi_set_element(env, arr, 1, v));
    return arr;
}

void pw_pending_free(pw_engine *pe) {
    free(pe->pend);
    free(pe->pend_data);
    free(pe->pend_reqs);
    free(pe->pend_ids);
    pe->pend = NULL;
    pe->pend_data = NULL;
    pe->pend_reqs = NULL;
    pe->pend_ids = NULL;
    pe->npend = pe->pend_cap = pe->pend_reqs_cap = 0;
    pe->pend_data_cap = pe->pend_len = 0;
}
