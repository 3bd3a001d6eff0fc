/* eng.batch: n payloads of one handler submitted from one buffer and an offsets array, their
 * results handed to JS once, as columns over one data buffer (lib/batch.js BatchResult).
 *
 * batchSubmit(handlerId, data, offsets, timeoutMs, ids) submits the items with one
 * portway_submit_batch call, all or nothing (a partly accepted batch is cancelled and rejects
 * PORTWAY_BUSY), and returns a waiter slot. Each item's completion is collected here as it is
 * polled: its status, code and meta count and position go into a Float64Array allocated at submit (JS
 * memory, written in place), its bytes (the response, or the error message) are appended to a
 * data arena in completion order (start and length in the columns), its meta pairs to a string
 * arena. When the last item is in, the NativeEngine's _batchDone(slot, data, cols, hdrs) is
 * called once: data is the arena itself, handed over as a Buffer (no copy; freed when JS lets
 * it go), so every item is a slice of it. Nothing of the engine's is lent: each completion is
 * released with its poll batch as usual, so maxInFlight backpressure is unaffected.
 *
 * When the columnar batch ABI (portway_batch_submit / portway_batch_result) is in the library,
 * this collector is what it replaces: one completion per batch, read as the same columns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

/* Per-item fields of the columns: data start, data length, status, code, meta count, index of
 * its first meta pair in `hdrs` (items complete in any order: so do their pairs). */
#define COLS 6

struct pw_collector {
    uint32_t n;
    napi_ref cols_ref;
    double *cols;
    uint8_t *data;
    size_t len, cap;
    char *hbuf;
    size_t hlen, hcap;
    size_t npairs; /* meta pairs in hbuf */
    bool failed; /* out of memory while collecting: the batch rejects PORTWAY_INTERNAL */
};

static bool reserve(void **p, size_t *cap, size_t len, size_t more) {
    if (*cap - len >= more) return true;
    size_t ncap = *cap ? *cap : 4096;
    while (ncap - len < more) ncap *= 2;
    void *q = realloc(*p, ncap);
    if (!q) return false;
    *p = q;
    *cap = ncap;
    return true;
}

void pw_collector_free(napi_env env, pw_collector *col) {
    if (!col) return;
    if (env && col->cols_ref) napi_delete_reference(env, col->cols_ref);
    free(col->data);
    free(col->hbuf);
    free(col);
}

/* batchSubmit(handlerId, data, offsets, timeoutMs, ids) -> slot; see above. `offsets` is a
 * Float64Array of n + 1 nondecreasing byte offsets into `data`; `ids` a Float64Array of n that
 * receives the items' ids (abort cancels them). */
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
    double *offs = NULL, *out_ids = NULL;
    size_t noffs = 0, nids = 0;
    napi_typedarray_type t1 = napi_uint8_array, t2 = napi_uint8_array;
    bool is1 = false, is2 = false;
    NAPI_CALL(env, napi_is_typedarray(env, a.v[2], &is1));
    NAPI_CALL(env, napi_is_typedarray(env, a.v[4], &is2));
    if (is1) NAPI_CALL(env, napi_get_typedarray_info(env, a.v[2], &t1, &noffs, (void **)&offs, NULL, NULL));
    if (is2) NAPI_CALL(env, napi_get_typedarray_info(env, a.v[4], &t2, &nids, (void **)&out_ids, NULL, NULL));
    if (!is1 || t1 != napi_float64_array || noffs < 2 || !is2 || t2 != napi_float64_array ||
        nids < noffs - 1 || noffs - 1 > UINT32_MAX) {
        pw_throw_invalid(env, false, "batchSubmit: offsets must be a Float64Array of n + 1 and ids one of n");
        return NULL;
    }
    size_t n = noffs - 1;
    for (size_t i = 0; i < n; i++) {
        if (!(offs[i] >= 0 && offs[i] <= offs[i + 1] && offs[i + 1] <= (double)dlen)) {
            pw_throw_invalid(env, true, "batchSubmit: offsets must be nondecreasing within the data");
            return NULL;
        }
    }
    if (!pw_deliver_ready(env, pe)) return NULL;
    pw_collector *col = calloc(1, sizeof *col);
    portway_request *reqs = calloc(n, sizeof *reqs);
    uint64_t *ids = calloc(n, sizeof *ids);
    if (!col || !reqs || !ids) {
        free(col);
        free(reqs);
        free(ids);
        pw_throw_oom(env);
        return NULL;
    }
    col->n = (uint32_t)n;
    napi_value ab, ta;
    void *p = NULL;
    if (napi_create_arraybuffer(env, n * COLS * sizeof(double), &p, &ab) != napi_ok ||
        napi_create_typedarray(env, napi_float64_array, n * COLS, ab, 0, &ta) != napi_ok ||
        napi_create_reference(env, ta, 1, &col->cols_ref) != napi_ok) {
        free(reqs);
        free(ids);
        pw_collector_free(env, col);
        pw_throw_oom(env);
        return NULL;
    }
    col->cols = p;
    uint32_t slot = pw_waiter_take(env, pe);
    if (!slot) {
        free(reqs);
        free(ids);
        pw_collector_free(env, col);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        size_t off = (size_t)offs[i];
        reqs[i] = (portway_request){.handler = handler, .payload = data ? data + off : NULL,
                                    .payload_len = (size_t)offs[i + 1] - off, .timeout_ms = timeout,
                                    .user_data = ((uint64_t)slot << 32) | i};
    }
    size_t accepted = 0;
    portway_status st = portway_submit_batch(pe->eng, reqs, n, ids, &accepted);
    free(reqs);
    if (st != PORTWAY_OK) {
        /* All or nothing: a partly accepted batch is cancelled; its completions are absorbed
         * by the waiter, which stays until the last of them is polled. */
        char msg[512];
        const char *m = portway_last_error();
        snprintf(msg, sizeof msg, "%s", (m && *m) ? m : portway_status_str(st));
        for (size_t i = 0; i < accepted; i++) portway_cancel(pe->eng, ids[i]);
        free(ids);
        pw_collector_free(env, col);
        if (accepted == 0) {
            pw_waiter_free(pe, slot);
        } else {
            pw_waiter *w = &pe->waiters[slot - 1];
            w->used = true;
            w->batch = true;
            w->settled = true;
            w->remaining = (uint32_t)accepted;
            pe->in_flight += accepted;
        }
        napi_value err = pw_make_error(env, st, msg, strlen(msg));
        if (err) napi_throw(env, err);
        pw_update_busy(env, pe);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) out_ids[i] = (double)ids[i];
    pe->last_id = ids[n - 1];
    free(ids);
    pw_waiter *w = &pe->waiters[slot - 1];
    w->used = true;
    w->batch = true;
    w->col = col;
    w->remaining = (uint32_t)n;
    pe->in_flight += n;
    pw_recover_notify(pe);
    if (!pw_update_busy(env, pe)) return NULL;
    napi_value v;
    NAPI_CALL(env, napi_create_uint32(env, slot, &v));
    return v;
}

/* Records item completion `c` (user_data: slot << 32 | index) into its batch's columns. */
void pw_collect(pw_collector *col, const portway_completion *c) {
    uint32_t i = (uint32_t)c->user_data;
    if (i >= col->n) return;
    double *r = col->cols + (size_t)i * COLS;
    r[2] = c->status;
    r[3] = c->code;
    if (!reserve((void **)&col->data, &col->cap, col->len, c->len)) {
        col->failed = true;
        return;
    }
    r[0] = (double)col->len;
    r[1] = (double)c->len;
    if (c->len) memcpy(col->data + col->len, c->data, c->len);
    col->len += c->len;
    size_t m = 0;
    for (; m < c->meta_len; m++) {
        size_t kl = strlen(c->meta[m].key) + 1, vl = strlen(c->meta[m].value) + 1;
        if (!reserve((void **)&col->hbuf, &col->hcap, col->hlen, kl + vl)) {
            col->failed = true;
            return;
        }
        memcpy(col->hbuf + col->hlen, c->meta[m].key, kl);
        memcpy(col->hbuf + col->hlen + kl, c->meta[m].value, vl);
        col->hlen += kl + vl;
    }
    r[4] = (double)m;
    r[5] = (double)col->npairs;
    col->npairs += m;
}

static void free_data(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    free(data);
}

/* The whole batch is in: calls this._batchDone(slot, data, cols, hdrs), or on failure
 * this._batchDone(slot, error). Frees the collector. */
void pw_collect_done(napi_env env, pw_engine *pe, uint32_t slot, pw_collector *col) {
    napi_handle_scope scope = NULL;
    if (napi_open_handle_scope(env, &scope) != napi_ok) scope = NULL;
    napi_value self, fn, argv[4];
    bool ok = !col->failed && pw_wrapper_method(env, pe, "_batchDone", &self, &fn) &&
              napi_create_uint32(env, slot, &argv[0]) == napi_ok;
    if (ok) {
        napi_status st = napi_generic_failure;
        if (col->len == 0) {
            st = napi_create_buffer(env, 0, NULL, &argv[1]);
        } else {
            st = napi_create_external_buffer(env, col->len, col->data, free_data, NULL, &argv[1]);
            if (st == napi_ok) {
                col->data = NULL; /* the Buffer owns it now */
            } else {
                pw_clear_exception(env); /* external buffers not allowed here: copy */
                st = napi_create_buffer_copy(env, col->len, col->data, NULL, &argv[1]);
            }
        }
        ok = st == napi_ok && napi_get_reference_value(env, col->cols_ref, &argv[2]) == napi_ok &&
             (col->hlen ? napi_create_string_utf8(env, col->hbuf, col->hlen, &argv[3])
                        : napi_get_undefined(env, &argv[3])) == napi_ok;
    }
    if (ok) {
        pw_call_or_fatal(env, self, fn, 4, argv);
    } else if (pw_wrapper_method(env, pe, "_batchDone", &self, &fn) &&
               napi_create_uint32(env, slot, &argv[0]) == napi_ok) {
        pw_clear_exception(env);
        const char *m = "portway: a batch's results could not be handed to JavaScript (out of memory)";
        argv[1] = pw_make_error(env, PORTWAY_INTERNAL, m, strlen(m));
        if (argv[1]) pw_call_or_fatal(env, self, fn, 2, argv);
    }
    pw_collector_free(env, col);
    if (scope) napi_close_handle_scope(env, scope);
}
