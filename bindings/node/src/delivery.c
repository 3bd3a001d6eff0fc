/* Completions -> JS: the notify hook (any thread) queues one tsfn call; on the JS thread
 * pw_drain polls, turns each completion into a record and hands the records to lib/native.js's
 * deliver in one call per poll batch, then releases the batch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

/* The engine calls this when its completion queue turns non-empty (and only then: while
 * completions wait, later ones do not call it again). If the tsfn call fails, nothing would
 * ever drain them, so the flag is cleared and the loss recorded: the JS thread makes the call
 * again the next time it enters the addon (pw_recover_notify). */
void pw_notify_hook(void *ctx) {
    pw_engine *pe = ctx;
    if (atomic_exchange(&pe->notify_pending, true)) return; /* a call is already queued */
    napi_status st = napi_closing;
    pthread_mutex_lock(&pe->mu);
    if (pe->tsfn_open)
        st = FAULT(pe, FAULT_NOTIFY) ? napi_generic_failure
                                     : napi_call_threadsafe_function(pe->tsfn, NULL, napi_tsfn_nonblocking);
    pthread_mutex_unlock(&pe->mu);
    if (st != napi_ok) {
        atomic_store(&pe->notify_lost, true);
        atomic_store(&pe->notify_pending, false);
    }
}

static napi_value completion_error(napi_env env, const portway_completion *c) {
    const char *msg = (const char *)c->data;
    size_t len = c->len;
    if (len == 0) {
        msg = portway_status_str(c->status);
        len = strlen(msg);
    }
    return pw_request_error(env, c->status, msg, len, c->id);
}

/* Single completions (submit, http) go to JS in batches: pw_drain appends one record per
 * completion and calls lib/native.js's deliver(n, nums, arena, hdrs, errs) once per poll batch
 * (sooner when the arena is full), with `this` = the NativeEngine, which holds the promises'
 * resolve/reject functions by slot (_res/_rej; _bat: a batch's results). Record i is
 * nums[i*10 .. i*10+9]:
 *   slot, id, code, body offset in `arena` (-1: rejected with errs[i]), body length,
 *   meta count, queuedNs, runNs, batch position (-1: single), last (1: the batch is complete).
 * `hdrs` is every meta key and value of the delivery in order, each followed by NUL (NUL cannot
 * occur in them: they are C strings), or undefined when there are none. JS copies each body out
 * of the arena into its own Buffer before returning, so the arena is reused. One JS call per
 * batch replaces some twenty N-API calls per completion. Records keep the poll order. A batch
 * rejects at its first failure (record with last = 1); its later completions send no record. */
bool pw_deliver_init(napi_env env, pw_engine *pe) {
    if (pe->arena_ref) return true;
    if (!pe->nums_ref) {
        napi_value ab, ta;
        void *p = NULL;
        NAPI_CALL_BOOL(env, napi_create_arraybuffer(env, POLL_BATCH * DELIVER_FIELDS * sizeof(double),
                                                    &p, &ab));
        NAPI_CALL_BOOL(env, napi_create_typedarray(env, napi_float64_array,
                                                   POLL_BATCH * DELIVER_FIELDS, ab, 0, &ta));
        NAPI_CALL_BOOL(env, napi_create_reference(env, ta, 1, &pe->nums_ref));
        pe->nums_data = p;
    }
    napi_value buf;
    void *q = NULL;
    NAPI_CALL_BOOL(env, napi_create_buffer(env, ARENA_BYTES, &q, &buf));
    NAPI_CALL_BOOL(env, napi_create_reference(env, buf, 1, &pe->arena_ref));
    pe->arena_data = q;
    return true;
}

/* A batch whose promise was rejected: its later completions send no record (JS has forgotten
 * it). No-op for a single request or a batch already complete (its slot is free). */
static void batch_abandon(pw_engine *pe, uint32_t slot) {
    if (slot == 0 || slot > pe->cap) return;
    pw_waiter *w = &pe->waiters[slot - 1];
    if (w->used && w->batch) w->settled = true;
}

/* The fallback when the first `n` records could not be handed to deliver (or deliver threw):
 * rejects every promise among them that is still pending, through the NativeEngine's _rej
 * table, with the record's own completion error if it has one, else a PortwayError
 * PORTWAY_INTERNAL naming the step that failed. Completions are never dropped in silence: if
 * even this is impossible, the error becomes an uncaught exception. */
static void deliver_fail(napi_env env, pw_engine *pe, uint32_t n, napi_value errs, const char *what) {
    pw_clear_exception(env);
    char msg[200];
    snprintf(msg, sizeof msg, "portway: a completion could not be handed to JavaScript (%s)", what);
    napi_value err = pw_make_error(env, PORTWAY_INTERNAL, msg, strlen(msg));
    napi_value self = NULL, res, rej, bat, undef;
    bool ok = err && pe->wrapper && napi_get_reference_value(env, pe->wrapper, &self) == napi_ok &&
              self && napi_get_undefined(env, &undef) == napi_ok &&
              napi_get_named_property(env, self, "_res", &res) == napi_ok &&
              napi_get_named_property(env, self, "_rej", &rej) == napi_ok &&
              napi_get_named_property(env, self, "_bat", &bat) == napi_ok;
    for (uint32_t i = 0; i < n; i++) {
        const double *r = pe->nums_data + (size_t)i * DELIVER_FIELDS;
        uint32_t slot = (uint32_t)r[0];
        if (r[8] >= 0) batch_abandon(pe, slot);
        napi_value fn, e = err, ignored;
        napi_valuetype t = napi_undefined;
        if (!ok || napi_get_element(env, rej, slot, &fn) != napi_ok ||
            napi_typeof(env, fn, &t) != napi_ok || t != napi_function)
            continue; /* settled already (e.g. by deliver before it threw) */
        napi_set_element(env, res, slot, undef);
        napi_set_element(env, rej, slot, undef);
        napi_set_element(env, bat, slot, undef);
        if (r[3] < 0 && errs) {
            napi_value x;
            napi_valuetype xt = napi_undefined;
            if (napi_get_element(env, errs, i, &x) == napi_ok && napi_typeof(env, x, &xt) == napi_ok &&
                xt == napi_object)
                e = x;
        }
        if (napi_call_function(env, undef, fn, 1, &e, &ignored) != napi_ok) pw_clear_exception(env);
    }
    if (!ok && err) napi_fatal_exception(env, err);
}

/* Hands the pending records to JS; `arena` overrides the engine's arena (one large body). Any
 * failure rejects the promises concerned (deliver_fail) rather than losing the records. */
static void deliver_flush(napi_env env, pw_engine *pe, napi_value arena) {
    uint32_t n = pe->dn;
    if (n == 0) return;
    size_t hlen = pe->hlen;
    napi_value errs = pe->errs;
    pe->dn = 0;
    pe->arena_used = 0;
    pe->hlen = 0;
    pe->errs = NULL;
    pw_instance *inst = pw_get_instance(env);
    napi_value fn = NULL, self = NULL, undef, argv[5], ignored;
    if (FAULT(pe, FAULT_FLUSH) || !inst || !inst->deliver ||
        napi_get_reference_value(env, inst->deliver, &fn) != napi_ok || !fn || !pe->wrapper ||
        napi_get_reference_value(env, pe->wrapper, &self) != napi_ok || !self ||
        napi_get_undefined(env, &undef) != napi_ok || napi_create_uint32(env, n, &argv[0]) != napi_ok ||
        napi_get_reference_value(env, pe->nums_ref, &argv[1]) != napi_ok ||
        (!arena && napi_get_reference_value(env, pe->arena_ref, &argv[2]) != napi_ok) ||
        (hlen && napi_create_string_utf8(env, pe->hbuf, hlen, &argv[3]) != napi_ok)) {
        deliver_fail(env, pe, n, errs, "preparing the delivery call failed");
        return;
    }
    if (arena) argv[2] = arena;
    if (!hlen) argv[3] = undef;
    argv[4] = errs ? errs : undef;
    if (napi_call_function(env, self, fn, 5, argv, &ignored) == napi_pending_exception) {
        napi_value err; /* a bug in deliver: surface it as an uncaught exception */
        if (napi_get_and_clear_last_exception(env, &err) == napi_ok) {
            deliver_fail(env, pe, n, errs, "deliver threw");
            napi_fatal_exception(env, err);
        }
    }
}

static bool hbuf_append(pw_engine *pe, const char *s) {
    size_t len = strlen(s) + 1; /* with its NUL */
    if (pe->hcap - pe->hlen < len) {
        size_t ncap = pe->hcap ? pe->hcap : 4096;
        while (ncap - pe->hlen < len) ncap *= 2;
        char *nb = realloc(pe->hbuf, ncap);
        if (!nb) return false;
        pe->hbuf = nb;
        pe->hcap = ncap;
    }
    memcpy(pe->hbuf + pe->hlen, s, len);
    pe->hlen += len;
    return true;
}

/* Adds completion error `err` as record i's rejection (errs[i]). */
static void record_error(napi_env env, pw_engine *pe, uint32_t i, napi_value err, int64_t pos) {
    napi_value idx;
    if (err && pos >= 0 && napi_create_uint32(env, (uint32_t)pos, &idx) == napi_ok)
        napi_set_named_property(env, err, "index", idx);
    if (!pe->errs && napi_create_array(env, &pe->errs) != napi_ok) pe->errs = NULL;
    if (pe->errs && err) napi_set_element(env, pe->errs, i, err);
}

/* Appends completion `c` as a record; returns false when the record rejects its promise (an
 * error status, or its body could not be copied into a Buffer). */
static bool deliver_add(napi_env env, pw_engine *pe, uint32_t slot, const portway_completion *c,
                        int64_t pos, bool last) {
    bool ok = c->status == PORTWAY_OK;
    if (pe->dn == POLL_BATCH || (ok && c->len > ARENA_BYTES - pe->arena_used))
        deliver_flush(env, pe, NULL);
    uint32_t i = pe->dn;
    double *r = pe->nums_data + (size_t)i * DELIVER_FIELDS;
    r[0] = slot;
    r[1] = (double)c->id;
    r[2] = c->code;
    r[3] = -1;
    r[4] = 0;
    r[5] = 0;
    r[6] = (double)c->queued_ns;
    r[7] = (double)c->run_ns;
    r[8] = (double)pos;
    r[9] = last ? 1 : 0;
    pe->dn++;
    if (!ok) {
        record_error(env, pe, i, completion_error(env, c), pos);
        return false;
    }
    size_t hmark = pe->hlen, m = 0;
    for (; m < c->meta_len; m++) {
        if (!hbuf_append(pe, c->meta[m].key) || !hbuf_append(pe, c->meta[m].value)) {
            pe->hlen = hmark; /* out of memory: no headers rather than torn ones */
            m = 0;
            break;
        }
    }
    r[5] = (double)m;
    r[4] = (double)c->len;
    if (c->len > ARENA_BYTES) { /* alone in this delivery (flushed above), in its own Buffer */
        napi_value big;
        r[3] = 0;
        if (FAULT(pe, FAULT_BUFFER_COPY) ||
            napi_create_buffer_copy(env, c->len, c->data, NULL, &big) != napi_ok) {
            /* No Buffer for the body (out of memory, or over the Buffer size limit): the
             * promise rejects, like any failed completion, and stays pending in this batch. */
            pw_clear_exception(env);
            pe->hlen = hmark;
            r[3] = -1;
            r[4] = 0;
            r[5] = 0;
            char msg[160];
            snprintf(msg, sizeof msg, "portway: could not allocate a Buffer for a %zu-byte response body",
                     c->len);
            record_error(env, pe, i, pw_request_error(env, PORTWAY_INTERNAL, msg, strlen(msg), c->id),
                         pos);
            return false;
        }
        deliver_flush(env, pe, big);
        return true;
    }
    r[3] = (double)pe->arena_used;
    if (c->len) memcpy(pe->arena_data + pe->arena_used, c->data, c->len);
    pe->arena_used += c->len;
    return true;
}

void pw_deliver_reject(napi_env env, pw_engine *pe, uint32_t slot, napi_value err) {
    if (pe->dn == POLL_BATCH) deliver_flush(env, pe, NULL);
    uint32_t i = pe->dn;
    double *r = pe->nums_data + (size_t)i * DELIVER_FIELDS;
    memset(r, 0, DELIVER_FIELDS * sizeof *r);
    r[0] = slot;
    r[3] = -1;
    r[8] = -1;
    pe->dn++;
    record_error(env, pe, i, err, -1);
}

void pw_deliver_end(napi_env env, pw_engine *pe) { deliver_flush(env, pe, NULL); }

static void settle(napi_env env, pw_engine *pe, const portway_completion *c) {
    uint32_t slot = (uint32_t)(c->user_data >> 32);
    uint32_t pos = (uint32_t)c->user_data;
    if (slot == 0 || slot > pe->cap) return;
    pw_waiter *w = &pe->waiters[slot - 1];
    if (!w->used) return;
    if (pe->in_flight > 0) pe->in_flight--;
    if (w->columnar) { /* eng.batch: the one completion of all its items */
        pw_waiter_free(pe, slot);
        pw_batch_done(env, pe, slot, c);
        return;
    }
    if (!w->batch) {
        deliver_add(env, pe, slot, c, -1, false);
        pw_waiter_free(pe, slot);
        return;
    }
    bool last = --w->remaining == 0;
    /* The first failure rejects the batch (JS forgets it); the rest is absorbed. */
    if (!w->settled && !deliver_add(env, pe, slot, c, pos, last || c->status != PORTWAY_OK))
        w->settled = true;
    if (last) pw_waiter_free(pe, slot);
}

static void on_closed(napi_env env, pw_engine *pe) {
    napi_deferred d = pe->close_deferred;
    pe->close_deferred = NULL;
    pe->closing = false;
    /* With onLog, close() resolves once the log flush marker comes through (see log.c). */
    pe->flush_deferred = d;
    if (pw_engine_destroy(pe, false)) {
        d = NULL; /* pw_log_call_js resolves it */
        pe->flushing = true;
    } else {
        pe->flush_deferred = NULL;
    }
    pw_update_busy(env, pe);
    if (d) pw_resolve_undefined(env, d);
}

/* Tells JS that in-flight slots were released, for submits waiting for one ({ wait }): calls
 * the NativeEngine's _onRelease(). Released slots are not always visible to deliver (the
 * absorbed completions of a rejected batch send no record), hence a notice of its own. */
static void release_notice(napi_env env, pw_engine *pe) {
    napi_value self, fn;
    if (pw_wrapper_method(env, pe, "_onRelease", &self, &fn)) pw_call_or_fatal(env, self, fn, 0, NULL);
}

/* Drains every ready completion on the JS thread. */
void pw_drain(napi_env env, pw_engine *pe) {
    atomic_store(&pe->notify_pending, false);
    bool released = false;
    while (pe->eng) {
        size_t n = 0;
        portway_status st = portway_poll(pe->eng, pe->buf, POLL_BATCH, 0, &n);
        if (st == PORTWAY_CLOSED) {
            on_closed(env, pe);
            break;
        }
        if (st != PORTWAY_OK || n == 0) break;
        /* Without a scope of its own (it could not be opened) the values live in the
         * caller's scope: settling every completion matters more. */
        napi_handle_scope scope = NULL;
        if (napi_open_handle_scope(env, &scope) != napi_ok) scope = NULL;
        for (size_t i = 0; i < n; i++) settle(env, pe, &pe->buf[i]);
        deliver_flush(env, pe, NULL);
        portway_release(pe->eng, pe->buf, n);
        released = true;
        if (scope) napi_close_handle_scope(env, scope);
        /* Loop until a poll returns nothing: the poll that takes the last completion after a
         * shutdown closes the queue without calling the notify hook, so the CLOSED answer
         * must be collected here (see bindings/node/README.md). */
        if (n < POLL_BATCH && !pe->closing) break; /* empty; the next push notifies again */
    }
    if (released && pe->watch_release) release_notice(env, pe);
    pw_update_busy(env, pe);
}

void pw_call_js(napi_env env, napi_value js_cb, void *context, void *data) {
    (void)js_cb;
    (void)data;
    if (env == NULL) return; /* teardown: the cleanup hook frees the engine */
    pw_drain(env, context);
}

/* watchRelease(on): while on, each drain that released slots calls this._onRelease(). */
napi_value pw_js_watch_release(napi_env env, napi_callback_info info) {
    pw_args a;
    pw_engine *pe = pw_this(env, info, 1, false, &a);
    if (!pe) return NULL;
    NAPI_CALL(env, napi_get_value_bool(env, a.v[0], &pe->watch_release));
    return NULL;
}
