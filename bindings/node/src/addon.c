/*
 * portway Node addon: N-API (version 8) over the C ABI in include/portway.h.
 *
 * Delivery: the engine's notify hook (an engine thread, or the submitting thread for inline
 * handlers) makes one non-blocking call on a napi_threadsafe_function; on the JS thread
 * `drain` polls with timeout 0 in batches until the queue is empty, copies each poll batch
 * into flat records (a Float64Array, a body arena, one string of headers), hands them to JS in
 * one call (lib/index.js `deliver` builds the completion objects and settles the promises,
 * which live in JS) and releases the batch. A flag coalesces notifications so at most one tsfn
 * call is queued per engine.
 *
 * Buffers: each completion's data is copied (into the arena, then into its own Buffer by
 * `deliver`) and the batch is released at once. External buffers would hold the in-flight slot until the Buffer is garbage collected,
 * which stalls `maxInFlight` backpressure on a GC schedule; see bindings/node/README.md.
 *
 * Lifetime: a `pw_engine` is shared by the JS wrapper (napi_wrap) and the tsfn; it is freed
 * when both let go (refcount). The native engine is freed on close (after PORTWAY_CLOSED),
 * on wrapper GC, or by an env cleanup hook registered *after* the tsfn was created, so it runs
 * before Node tears the tsfn down (hooks run in reverse order): engine threads are joined
 * before the tsfn can disappear. The notify hook also checks `tsfn_open` under a mutex.
 * No static mutable state: per-instance data holds the class references.
 *
 * Logs (`onLog`): a second tsfn, see "log delivery" below for its ordering.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <pthread.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portway.h"

#define POLL_BATCH 256
/* Single-request completions are handed to JS in batches (see "completions -> JS"). */
#define DELIVER_FIELDS 10          /* Float64 fields per completion record */
#define ARENA_BYTES (64 * 1024)    /* bodies of one delivery are copied here */

/* ------------------------------------------------------------------ helpers */

#define NAPI_CALL_BASE(env, call, ret)                                                   \
    do {                                                                                 \
        napi_status status_ = (call);                                                    \
        if (status_ != napi_ok) {                                                        \
            throw_napi_error((env), status_, #call);                                     \
            return ret;                                                                  \
        }                                                                                \
    } while (0)
#define NAPI_CALL(env, call) NAPI_CALL_BASE(env, call, NULL)
#define NAPI_CALL_VOID(env, call) NAPI_CALL_BASE(env, call, )
#define NAPI_CALL_BOOL(env, call) NAPI_CALL_BASE(env, call, false)

static void throw_napi_error(napi_env env, napi_status st, const char *what) {
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
static void throw_invalid(napi_env env, bool range, const char *msg) {
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

/* Reads integer argument `what` in [min, max] (max at most 2^53 - 1, so every value is exact in
 * a double) into *out. `undefined` gives *out = dflt when `optional`; anything else that is not
 * such a number throws (TypeError for a non-number, RangeError for NaN, fractions, out of
 * range) and returns false. No coercion: `"5"`, `1.5`, `-1` and `null` are refused, and no
 * out-of-range double ever reaches a C integer conversion. */
static bool get_int_arg(napi_env env, napi_value v, const char *what, double min, double max,
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
        throw_invalid(env, false, msg);
        return false;
    }
    double d = 0;
    NAPI_CALL_BOOL(env, napi_get_value_double(env, v, &d));
    if (!(d >= min && d <= max) || d != floor(d)) {
        snprintf(msg, sizeof msg, "%s must be an integer from %.0f to %.0f (got %g)", what, min, max, d);
        throw_invalid(env, true, msg);
        return false;
    }
    *out = (int64_t)d;
    return true;
}

#define U32_MAX_D 4294967295.0
#define SAFE_INT_MAX_D 9007199254740991.0 /* Number.MAX_SAFE_INTEGER */

/* Clears a pending JS exception left by a failed N-API call we recover from. */
static void clear_exception(napi_env env) {
    bool pending = false;
    napi_value ignored;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending)
        napi_get_and_clear_last_exception(env, &ignored);
}

/* Test-only fault injection (built with -DPORTWAY_FAULT_INJECTION by `make test` into
 * build/faults/, never into build/portway.node): NativeEngine#_fault(point, count) makes the
 * next `count` passes through a failure point fail as the N-API call there can, so the tests
 * can check that every such failure still settles the promises it concerns. */
enum {
    FAULT_FLUSH,       /* deliver_flush cannot prepare its call into JS */
    FAULT_BUFFER_COPY, /* napi_create_buffer_copy of a large body fails */
    FAULT_NOTIFY,      /* napi_call_threadsafe_function in the notify hook fails */
    FAULT_BATCH_GAP,   /* submitMany: another request takes an id inside the batch's range */
    FAULT_COUNT
};
#ifdef PORTWAY_FAULT_INJECTION
#define FAULT(pe, point) fault_hit((pe), (point))
#else
#define FAULT(pe, point) ((void)(pe), false)
#endif

/* Per-instance data: the PortwayError class given by lib/index.js. */
typedef struct {
    napi_ref error_ctor;
    napi_ref deliver; /* lib/index.js's deliver(n, nums, arena, hdrs, errs), this = NativeEngine */
} pw_instance;

static void instance_finalize(napi_env env, void *data, void *hint) {
    (void)hint;
    pw_instance *inst = data;
    if (inst->error_ctor) napi_delete_reference(env, inst->error_ctor);
    if (inst->deliver) napi_delete_reference(env, inst->deliver);
    free(inst);
}

static pw_instance *get_instance(napi_env env) {
    void *data = NULL;
    if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
    return data;
}

/* A PortwayError(message, code, status) value; falls back to a plain Error with .code. */
static napi_value make_error(napi_env env, uint32_t status, const char *msg, size_t msg_len) {
    napi_value message, code, st, err = NULL;
    const char *name = portway_status_str(status);
    if (napi_create_string_utf8(env, msg, msg_len, &message) != napi_ok) return NULL;
    if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok) return NULL;
    if (napi_create_uint32(env, status, &st) != napi_ok) return NULL;
    pw_instance *inst = get_instance(env);
    napi_value ctor;
    if (inst && inst->error_ctor && napi_get_reference_value(env, inst->error_ctor, &ctor) == napi_ok &&
        ctor) {
        napi_value argv[3] = {message, code, st};
        if (napi_new_instance(env, ctor, 3, argv, &err) == napi_ok) return err;
        bool pending = false;
        napi_is_exception_pending(env, &pending);
        if (pending) {
            napi_value ignored;
            napi_get_and_clear_last_exception(env, &ignored);
        }
    }
    if (napi_create_error(env, code, message, &err) != napi_ok) return NULL;
    return err;
}

/* Throws a PortwayError for a failed C call, using portway_last_error(). */
static void throw_status(napi_env env, portway_status status) {
    const char *msg = portway_last_error();
    if (!msg || !*msg) msg = portway_status_str(status);
    napi_value err = make_error(env, status, msg, strlen(msg));
    if (err) napi_throw(env, err);
    else napi_throw_error(env, portway_status_str(status), msg);
}

/* ------------------------------------------------------------------ engine state */

/* A waiter: one promise, settled by one completion (single) or by `remaining` (batch). The
 * promise itself lives in JS (NativeEngine._res/_rej[slot], see "completions -> JS"). */
typedef struct {
    bool used;              /* false when the slot is free */
    uint32_t remaining;     /* completions still expected */
    bool batch;
    bool settled;           /* batch already rejected */
    uint32_t next_free;
} pw_waiter;

typedef struct pw_engine {
    portway_engine *eng;          /* NULL once freed */
    napi_env env;
    napi_threadsafe_function tsfn;
    pthread_mutex_t mu;           /* guards tsfn_open and log_open against the hooks */
    bool tsfn_open;
    napi_threadsafe_function log_tsfn; /* NULL without onLog, or once released */
    bool log_open;                /* log_tsfn may be called */
    napi_deferred flush_deferred; /* close(): resolved by the log flush marker */
    bool flushing;                /* the marker is queued: keep the wrapper (busy) */
    size_t text_hint;             /* metricsText/inflight: last size needed */
    atomic_bool notify_pending;
    atomic_bool notify_lost;      /* a notify call failed: the JS thread retries it */
    bool watch_release;           /* JS has submits waiting for a slot: report releases */
#ifdef PORTWAY_FAULT_INJECTION
    atomic_uint faults[FAULT_COUNT];
#endif
    int refs;                     /* wrapper + tsfn + log_tsfn */
    bool hook_registered;
    napi_ref wrapper;             /* weak (0) when idle, strong (1) while busy */
    bool busy;                    /* loop and wrapper referenced */
    uint64_t in_flight;           /* accepted, not yet settled */
    bool closing;
    napi_deferred close_deferred;
    uint64_t last_id;
    pw_waiter *waiters;
    uint32_t cap, free_head;      /* free list, 1-based; 0 = none */
    /* Batched delivery of single completions to JS (drain): records in `nums` (a Float64Array
     * over nums_data), bodies in `arena` (a Buffer over arena_data), header pairs joined with
     * NUL in hbuf, error values in errs. Created lazily, held by references. */
    napi_ref nums_ref, arena_ref;
    double *nums_data;
    uint8_t *arena_data;
    size_t arena_used;
    uint32_t dn;                  /* records pending */
    char *hbuf;
    size_t hlen, hcap;
    napi_value errs;              /* NULL, or an array (within the drain's handle scope) */
    portway_completion buf[POLL_BATCH];
} pw_engine;

static void engine_unref(pw_engine *pe) {
    if (--pe->refs > 0) return;
    pthread_mutex_destroy(&pe->mu);
    free(pe->waiters);
    free(pe->hbuf);
    free(pe);
}

#ifdef PORTWAY_FAULT_INJECTION
static bool fault_hit(pw_engine *pe, int point) {
    unsigned n = atomic_load(&pe->faults[point]);
    while (n > 0)
        if (atomic_compare_exchange_weak(&pe->faults[point], &n, n - 1)) return true;
    return false;
}
#endif

/* The engine calls this when its completion queue turns non-empty (and only then: while
 * completions wait, later ones do not call it again). If the tsfn call fails, nothing would
 * ever drain them, so the flag is cleared and the loss recorded: the JS thread makes the call
 * again the next time it enters the addon (recover_notify). */
static void notify_hook(void *ctx) {
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

/* On the JS thread: repeats a notification that could not be queued. */
static void recover_notify(pw_engine *pe) {
    if (atomic_load(&pe->notify_lost) && atomic_exchange(&pe->notify_lost, false) && pe->eng)
        notify_hook(pe);
}

/* ------------------------------------------------------------------ log delivery
 *
 * The engine calls log_hook from its own threads or from the thread that caused the event
 * (here mostly the JS thread: engine start in portway_engine_new, shutdown in
 * portway_engine_shutdown, leaked-request warnings in portway_engine_free). The message is
 * valid only during the call, so it is copied into a pw_log_msg and queued on `log_tsfn`;
 * log_call_js hands (levelName, message) to the `onLog` function on the JS thread.
 *
 * The tsfn holds no JS function: onLog is a hidden property of the NativeEngine wrapper, read
 * through the (weak when idle) wrapper reference at delivery time. A strong reference from
 * the tsfn would root any closure over the engine and keep an idle engine from being
 * collected. The tsfn is unref'd for its whole life, so logging never keeps the loop alive.
 *
 * Ordering at teardown (engine_destroy), on every path (close, wrapper GC, env cleanup hook):
 *   1. portway_set_notify(NULL), tsfn_open = false (the notify tsfn as before).
 *   2. portway_engine_free with the log hook still installed: it joins every engine thread,
 *      and its own warnings (requests leaked past free, abandoned handlers) are emitted on
 *      this thread during the call, so they are still delivered. After it returns no thread
 *      can call log_hook (the addon registers no native handlers, so no pool thread can be
 *      abandoned and outlive the engine). portway_set_log(NULL) is not used as the barrier:
 *      the library clones the hook out of its lock before calling it, so removing the hook
 *      does not wait for a call in progress on an engine thread; engine free does.
 *   3. close() only: a flush marker (data == pe) is queued after every message emitted so
 *      far, and the tsfn is ref'd so the loop lives until the marker is delivered; the
 *      marker resolves the close() promise. Hence `await eng.close()` has seen every log
 *      event, shutdown and free included.
 *   4. log_open = false under the mutex (a second guard, as tsfn_open), then the log tsfn is
 *      released: napi_tsfn_release on close/GC (queued messages still run), napi_tsfn_abort
 *      from the env cleanup hook. Queued items that Node discards at teardown reach
 *      log_call_js with env == NULL, which frees them.
 *   5. The notify tsfn is released (abort), as before.
 * Both tsfns are created before the env cleanup hook is registered, so the hook (and with it
 * engine free) runs before Node's own teardown of either tsfn. Each tsfn holds a reference
 * on pw_engine, dropped by its finalizer, so pe (and its mutex) outlives every queued item.
 */

typedef struct {
    uint32_t level;
    size_t len;
    char text[];
} pw_log_msg;

static const char *log_level_name(uint32_t level) {
    switch (level) {
    case PORTWAY_LOG_DEBUG: return "debug";
    case PORTWAY_LOG_INFO: return "info";
    case PORTWAY_LOG_WARN: return "warn";
    default: return "error";
    }
}

static void log_hook(void *ctx, uint32_t level, const char *message) {
    pw_engine *pe = ctx;
    size_t len = message ? strlen(message) : 0;
    pw_log_msg *m = malloc(sizeof *m + len + 1);
    if (!m) return;
    m->level = level;
    m->len = len;
    if (len) memcpy(m->text, message, len);
    m->text[len] = '\0';
    napi_status st = napi_closing;
    pthread_mutex_lock(&pe->mu);
    if (pe->log_open) st = napi_call_threadsafe_function(pe->log_tsfn, m, napi_tsfn_nonblocking);
    pthread_mutex_unlock(&pe->mu);
    if (st != napi_ok) free(m); /* not queued: ours to free */
}

static void resolve_undefined(napi_env env, napi_deferred d) {
    napi_value undef;
    if (napi_get_undefined(env, &undef) == napi_ok) napi_resolve_deferred(env, d, undef);
}

static bool update_busy(napi_env env, pw_engine *pe);

static void log_call_js(napi_env env, napi_value js_cb, void *context, void *data) {
    (void)js_cb;
    pw_engine *pe = context;
    if (data == pe) { /* the flush marker queued by close() */
        napi_deferred d = pe->flush_deferred;
        pe->flush_deferred = NULL;
        pe->flushing = false;
        if (env) {
            update_busy(env, pe); /* lets go of the wrapper */
            if (d) resolve_undefined(env, d);
        }
        return;
    }
    pw_log_msg *m = data;
    if (env == NULL || pe->wrapper == NULL) { /* teardown, or the wrapper was collected */
        free(m);
        return;
    }
    napi_value self = NULL, fn, recv, argv[2], ignored;
    napi_valuetype t = napi_undefined;
    bool ok = napi_get_reference_value(env, pe->wrapper, &self) == napi_ok && self &&
              napi_get_named_property(env, self, "onLog", &fn) == napi_ok &&
              napi_get_undefined(env, &recv) == napi_ok &&
              napi_typeof(env, fn, &t) == napi_ok && t == napi_function &&
              napi_create_string_utf8(env, log_level_name(m->level), NAPI_AUTO_LENGTH, &argv[0]) ==
                  napi_ok &&
              napi_create_string_utf8(env, m->text, m->len, &argv[1]) == napi_ok;
    free(m);
    if (!ok) return;
    if (napi_call_function(env, recv, fn, 2, argv, &ignored) == napi_pending_exception) {
        /* An exception thrown by onLog becomes an uncaught exception, as for an event
         * listener (left pending, Node would only print a DEP0168 warning). */
        napi_value err;
        if (napi_get_and_clear_last_exception(env, &err) == napi_ok)
            napi_fatal_exception(env, err);
    }
}

static void log_tsfn_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    pw_engine *pe = data;
    pthread_mutex_lock(&pe->mu);
    pe->log_open = false;
    pthread_mutex_unlock(&pe->mu);
    engine_unref(pe);
}

static void cleanup_hook(void *arg);

/* Frees the native engine and releases both tsfns, in the order described above. Safe at env
 * teardown (no JS is called). With `pe->flush_deferred` set (close), queues the flush marker
 * and returns true: log_call_js then owns the deferred. Returns false when nothing was queued
 * (the caller still owns any flush_deferred). */
static bool engine_destroy(pw_engine *pe, bool from_cleanup_hook) {
    bool flush = false;
    if (pe->hook_registered) {
        pe->hook_registered = false;
        if (!from_cleanup_hook) napi_remove_env_cleanup_hook(pe->env, cleanup_hook, pe);
    }
    if (pe->eng) {
        portway_set_notify(pe->eng, NULL, NULL);
        pthread_mutex_lock(&pe->mu);
        pe->tsfn_open = false;
        pthread_mutex_unlock(&pe->mu);
        portway_engine_free(pe->eng); /* joins engine threads: no hook runs after this */
        pe->eng = NULL;
    }
    if (pe->log_tsfn) {
        napi_threadsafe_function t = pe->log_tsfn;
        flush = pe->flush_deferred != NULL && !from_cleanup_hook;
        if (flush && (napi_ref_threadsafe_function(pe->env, t) != napi_ok ||
                      napi_call_threadsafe_function(t, pe, napi_tsfn_nonblocking) != napi_ok))
            flush = false;
        pthread_mutex_lock(&pe->mu);
        pe->log_open = false;
        pthread_mutex_unlock(&pe->mu);
        pe->log_tsfn = NULL;
        napi_release_threadsafe_function(t, from_cleanup_hook ? napi_tsfn_abort : napi_tsfn_release);
    }
    if (pe->tsfn) {
        napi_threadsafe_function t = pe->tsfn;
        pe->tsfn = NULL;
        napi_release_threadsafe_function(t, napi_tsfn_abort);
    }
    return flush;
}

static void cleanup_hook(void *arg) {
    pw_engine *pe = arg;
    engine_destroy(pe, true);
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    pw_engine *pe = data;
    pthread_mutex_lock(&pe->mu);
    pe->tsfn_open = false;
    pthread_mutex_unlock(&pe->mu);
    engine_unref(pe);
}

static void wrapper_finalize(napi_env env, void *data, void *hint) {
    (void)hint;
    pw_engine *pe = data;
    /* Only reached when idle (a busy engine holds a strong reference to its wrapper). */
    engine_destroy(pe, false);
    if (pe->wrapper) {
        napi_delete_reference(env, pe->wrapper);
        pe->wrapper = NULL;
    }
    if (pe->nums_ref) napi_delete_reference(env, pe->nums_ref);
    if (pe->arena_ref) napi_delete_reference(env, pe->arena_ref);
    pe->nums_ref = pe->arena_ref = NULL;
    engine_unref(pe);
}

/* Keep the event loop and the wrapper alive exactly while requests are in flight or a close
 * is pending; keep the wrapper (only: the notify tsfn is gone by then) until close's log
 * flush marker has been delivered, so onLog can still be read from it. */
static bool update_busy(napi_env env, pw_engine *pe) {
    bool want = pe->in_flight > 0 || pe->closing || pe->flushing;
    if (want == pe->busy) return true;
    uint32_t rc;
    if (want) {
        if (pe->tsfn) NAPI_CALL_BOOL(env, napi_ref_threadsafe_function(env, pe->tsfn));
        NAPI_CALL_BOOL(env, napi_reference_ref(env, pe->wrapper, &rc));
    } else {
        if (pe->tsfn) NAPI_CALL_BOOL(env, napi_unref_threadsafe_function(env, pe->tsfn));
        NAPI_CALL_BOOL(env, napi_reference_unref(env, pe->wrapper, &rc));
    }
    pe->busy = want;
    return true;
}

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

static void waiter_free(pw_engine *pe, uint32_t slot) {
    pw_waiter *w = &pe->waiters[slot - 1];
    memset(w, 0, sizeof *w);
    w->next_free = pe->free_head;
    pe->free_head = slot;
}

/* ------------------------------------------------------------------ completions -> JS */

static napi_value completion_error(napi_env env, const portway_completion *c) {
    const char *msg = (const char *)c->data;
    size_t len = c->len;
    if (len == 0) {
        msg = portway_status_str(c->status);
        len = strlen(msg);
    }
    napi_value err = make_error(env, c->status, msg, len);
    if (!err) return NULL;
    napi_value id;
    if (napi_create_double(env, (double)c->id, &id) == napi_ok)
        napi_set_named_property(env, err, "requestId", id);
    return err;
}

/* Single completions (submit, http) go to JS in batches: drain appends one record per
 * completion and calls lib/index.js's deliver(n, nums, arena, hdrs, errs) once per poll batch
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
static bool deliver_init(napi_env env, pw_engine *pe) {
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
    clear_exception(env);
    char msg[200];
    snprintf(msg, sizeof msg, "portway: a completion could not be handed to JavaScript (%s)", what);
    napi_value err = make_error(env, PORTWAY_INTERNAL, msg, strlen(msg));
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
        if (napi_call_function(env, undef, fn, 1, &e, &ignored) != napi_ok) clear_exception(env);
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
    pw_instance *inst = get_instance(env);
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
            clear_exception(env);
            pe->hlen = hmark;
            r[3] = -1;
            r[4] = 0;
            r[5] = 0;
            char msg[160];
            snprintf(msg, sizeof msg, "portway: could not allocate a Buffer for a %zu-byte response body",
                     c->len);
            napi_value err = make_error(env, PORTWAY_INTERNAL, msg, strlen(msg)), id;
            if (err && napi_create_double(env, (double)c->id, &id) == napi_ok)
                napi_set_named_property(env, err, "requestId", id);
            record_error(env, pe, i, err, pos);
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

static void settle(napi_env env, pw_engine *pe, const portway_completion *c) {
    uint32_t slot = (uint32_t)(c->user_data >> 32);
    uint32_t pos = (uint32_t)c->user_data;
    if (slot == 0 || slot > pe->cap) return;
    pw_waiter *w = &pe->waiters[slot - 1];
    if (!w->used) return;
    if (pe->in_flight > 0) pe->in_flight--;
    if (!w->batch) {
        deliver_add(env, pe, slot, c, -1, false);
        waiter_free(pe, slot);
        return;
    }
    bool last = --w->remaining == 0;
    /* The first failure rejects the batch (JS forgets it); the rest is absorbed. */
    if (!w->settled && !deliver_add(env, pe, slot, c, pos, last || c->status != PORTWAY_OK))
        w->settled = true;
    if (last) waiter_free(pe, slot);
}

static void on_closed(napi_env env, pw_engine *pe) {
    napi_deferred d = pe->close_deferred;
    pe->close_deferred = NULL;
    pe->closing = false;
    /* With onLog, close() resolves once the log flush marker comes through (see above). */
    pe->flush_deferred = d;
    if (engine_destroy(pe, false)) {
        d = NULL; /* log_call_js resolves it */
        pe->flushing = true;
    } else {
        pe->flush_deferred = NULL;
    }
    update_busy(env, pe);
    if (d) resolve_undefined(env, d);
}

/* Tells JS that in-flight slots were released, for submits waiting for one ({ wait }): calls
 * the NativeEngine's _onRelease(). Released slots are not always visible to deliver (the
 * absorbed completions of a rejected batch send no record), hence a notice of its own. */
static void release_notice(napi_env env, pw_engine *pe) {
    napi_value self = NULL, fn, ignored;
    napi_valuetype t = napi_undefined;
    if (!pe->wrapper || napi_get_reference_value(env, pe->wrapper, &self) != napi_ok || !self ||
        napi_get_named_property(env, self, "_onRelease", &fn) != napi_ok ||
        napi_typeof(env, fn, &t) != napi_ok || t != napi_function)
        return;
    if (napi_call_function(env, self, fn, 0, NULL, &ignored) == napi_pending_exception) {
        napi_value err;
        if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    }
}

/* Drains every ready completion on the JS thread. */
static void drain(napi_env env, pw_engine *pe) {
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
    update_busy(env, pe);
}

static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
    (void)js_cb;
    (void)data;
    if (env == NULL) return; /* teardown: the cleanup hook frees the engine */
    drain(env, context);
}

/* ------------------------------------------------------------------ JS methods */

static pw_engine *unwrap_this(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
    napi_value self;
    void *data = NULL;
    NAPI_CALL(env, napi_get_cb_info(env, info, argc, argv, &self, NULL));
    NAPI_CALL(env, napi_unwrap(env, self, &data));
    if (data) recover_notify(data);
    return data;
}

static pw_engine *live_engine(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
    pw_engine *pe = unwrap_this(env, info, argc, argv);
    if (!pe) return NULL;
    if (!pe->eng) {
        /* PORTWAY_SHUTDOWN, as a submit between close() and the free gets from the library
         * (and as the Python and C APIs answer after close): one status for "closed". */
        const char *m = "engine is closed";
        napi_value err = make_error(env, PORTWAY_SHUTDOWN, m, strlen(m));
        if (err) napi_throw(env, err);
        return NULL;
    }
    return pe;
}

static bool get_bytes(napi_env env, napi_value v, const uint8_t **data, size_t *len) {
    bool is;
    NAPI_CALL_BOOL(env, napi_is_typedarray(env, v, &is));
    if (is) {
        napi_typedarray_type type;
        size_t length;
        void *ptr;
        NAPI_CALL_BOOL(env, napi_get_typedarray_info(env, v, &type, &length, &ptr, NULL, NULL));
        if (type != napi_uint8_array && type != napi_uint8_clamped_array && type != napi_int8_array) {
            throw_invalid(env, false, "payload must be a Buffer or Uint8Array");
            return false;
        }
        *data = ptr;
        *len = length;
        return true;
    }
    throw_invalid(env, false, "payload must be a Buffer or Uint8Array");
    return false;
}

/* new NativeEngine(runtimeThreads, poolWorkers, maxInFlight, defaultTimeoutMs, maxPayload,
 *                  onLog, logLevel) */
static napi_value engine_ctor(napi_env env, napi_callback_info info) {
    size_t argc = 7;
    napi_value argv[7], self;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
    /* Options as given (lib/index.js passes them through): undefined = the library default. */
    static const struct {
        const char *name;
        double min, max;
    } opt_spec[5] = {
        {"runtimeThreads", 0, 1024},       {"poolWorkers", 0, 1024}, {"maxInFlight", 1, U32_MAX_D},
        {"defaultTimeoutMs", 0, U32_MAX_D}, {"maxPayload", 1, SAFE_INT_MAX_D},
    };
    int64_t opt[5];
    for (size_t i = 0; i < 5; i++)
        if (!get_int_arg(env, argv[i], opt_spec[i].name, opt_spec[i].min, opt_spec[i].max, true, -1,
                         &opt[i]))
            return NULL;
    napi_value on_log = NULL;
    uint32_t log_level = PORTWAY_LOG_INFO;
    if (argc > 5) {
        napi_valuetype t;
        NAPI_CALL(env, napi_typeof(env, argv[5], &t));
        if (t == napi_function) on_log = argv[5];
        else if (t != napi_undefined && t != napi_null) {
            napi_throw_type_error(env, NULL, "onLog must be a function");
            return NULL;
        }
    }
    if (argc > 6) {
        int64_t lv;
        if (!get_int_arg(env, argv[6], "logLevel", PORTWAY_LOG_DEBUG, PORTWAY_LOG_ERROR, true,
                         PORTWAY_LOG_INFO, &lv))
            return NULL;
        log_level = (uint32_t)lv;
    }
    pw_engine *pe = calloc(1, sizeof *pe);
    if (!pe) {
        napi_throw_error(env, "PORTWAY_INTERNAL", "out of memory");
        return NULL;
    }
    if (pthread_mutex_init(&pe->mu, NULL) != 0) {
        free(pe);
        napi_throw_error(env, "PORTWAY_INTERNAL", "pthread_mutex_init failed");
        return NULL;
    }
    pe->env = env;
    pe->refs = 1; /* wrapper */
    napi_status ns = napi_wrap(env, self, pe, wrapper_finalize, NULL, &pe->wrapper);
    if (ns != napi_ok) {
        engine_unref(pe);
        throw_napi_error(env, ns, "napi_wrap");
        return NULL;
    }
    /* From here on the wrapper finalizer owns cleanup (engine_destroy copes with a NULL engine
     * and NULL tsfns); failures below call engine_destroy at once so nothing lingers. */
    napi_value name;
    NAPI_CALL(env, napi_create_string_utf8(env, "portway.notify", NAPI_AUTO_LENGTH, &name));
    NAPI_CALL(env, napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, pe, tsfn_finalize, pe,
                                                   call_js, &pe->tsfn));
    pe->refs++; /* tsfn */
    pe->tsfn_open = true;
    if ((ns = napi_unref_threadsafe_function(env, pe->tsfn)) != napi_ok) goto napi_fail;
    if (on_log) {
        /* onLog lives on the wrapper, not in the tsfn (see "log delivery"). */
        napi_property_descriptor prop = {"onLog", NULL, NULL, NULL, NULL, on_log, napi_default, NULL};
        if ((ns = napi_define_properties(env, self, 1, &prop)) != napi_ok) goto napi_fail;
        if ((ns = napi_create_string_utf8(env, "portway.log", NAPI_AUTO_LENGTH, &name)) != napi_ok)
            goto napi_fail;
        if ((ns = napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, pe, log_tsfn_finalize,
                                                  pe, log_call_js, &pe->log_tsfn)) != napi_ok)
            goto napi_fail;
        pe->refs++; /* log_tsfn */
        pe->log_open = true;
        /* Logging never keeps the event loop alive. */
        if ((ns = napi_unref_threadsafe_function(env, pe->log_tsfn)) != napi_ok) goto napi_fail;
    }
    /* Registered after both tsfns, so it runs before Node's own tsfn teardown. */
    if ((ns = napi_add_env_cleanup_hook(env, cleanup_hook, pe)) != napi_ok) goto napi_fail;
    pe->hook_registered = true;

    portway_config *cfg = portway_config_new();
    if (!cfg) {
        engine_destroy(pe, false);
        napi_throw_error(env, "PORTWAY_INTERNAL", "portway_config_new failed");
        return NULL;
    }
    portway_status st = PORTWAY_OK;
    if (st == PORTWAY_OK && opt[0] >= 0) st = portway_config_set_runtime_threads(cfg, (uint32_t)opt[0]);
    if (st == PORTWAY_OK && opt[1] >= 0) st = portway_config_set_pool_workers(cfg, (uint32_t)opt[1]);
    if (st == PORTWAY_OK && opt[2] >= 0) st = portway_config_set_max_in_flight(cfg, (uint32_t)opt[2]);
    if (st == PORTWAY_OK && opt[3] >= 0) st = portway_config_set_default_timeout_ms(cfg, (uint32_t)opt[3]);
    if (st == PORTWAY_OK && opt[4] >= 0) st = portway_config_set_max_payload(cfg, (uint64_t)opt[4]);
    /* On the config, so the hook also sees the engine start (emitted inside engine_new). */
    if (st == PORTWAY_OK && on_log) st = portway_config_set_log(cfg, log_hook, pe, log_level);
    portway_engine *eng = NULL;
    if (st == PORTWAY_OK) st = portway_engine_new(cfg, &eng);
    portway_config_free(cfg);
    if (st == PORTWAY_OK) {
        pe->eng = eng;
        st = portway_set_notify(eng, notify_hook, pe);
    }
    if (st != PORTWAY_OK) {
        throw_status(env, st); /* reads portway_last_error() before anything else runs */
        engine_destroy(pe, false);
        return NULL;
    }
    return self;

napi_fail:
    throw_napi_error(env, ns, "NativeEngine constructor");
    engine_destroy(pe, false);
    return NULL;
}

static uint32_t get_handler_id(napi_env env, napi_value v, bool *ok) {
    int64_t id = 0;
    *ok = get_int_arg(env, v, "handler id", 0, U32_MAX_D, false, 0, &id);
    return (uint32_t)id;
}

/* A request's timeoutMs: undefined = 0, the engine default; else 1 ms or more. 0 is refused
 * rather than read as "the default" or "no deadline" (README "Statuses and decisions"). */
static bool get_timeout(napi_env env, napi_value v, uint32_t *out) {
    int64_t t = 0;
    if (!get_int_arg(env, v, "timeoutMs", 1, U32_MAX_D, true, 0, &t)) return false;
    *out = (uint32_t)t;
    return true;
}

/* submit(handlerId, payload, timeoutMs) -> slot: lib/index.js keeps the promise's resolve and
 * reject in this._res[slot] / this._rej[slot] until deliver settles it. */
static napi_value m_submit(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    pw_engine *pe = live_engine(env, info, &argc, argv);
    if (!pe) return NULL;
    bool ok;
    uint32_t handler = get_handler_id(env, argv[0], &ok);
    if (!ok) return NULL;
    portway_request req = {.handler = handler};
    if (!get_bytes(env, argv[1], &req.payload, &req.payload_len)) return NULL;
    if (!get_timeout(env, argv[2], &req.timeout_ms)) return NULL;
    if (!deliver_init(env, pe)) return NULL;
    uint32_t slot = waiter_alloc(pe);
    if (!slot) {
        napi_throw_error(env, "PORTWAY_INTERNAL", "out of memory");
        return NULL;
    }
    req.user_data = (uint64_t)slot << 32;
    uint64_t id = 0;
    portway_status st = portway_submit(pe->eng, &req, &id);
    if (st != PORTWAY_OK) {
        waiter_free(pe, slot);
        throw_status(env, st);
        return NULL;
    }
    pe->last_id = id;
    pw_waiter *w = &pe->waiters[slot - 1];
    w->used = true;
    w->remaining = 1;
    pe->in_flight++;
    recover_notify(pe); /* an inline completion's notify call may have failed just now */
    napi_value v;
    NAPI_CALL(env, napi_create_uint32(env, slot, &v));
    if (!update_busy(env, pe)) return NULL;
    return v;
}

/* submitMany(handlerId, payloads[], timeoutMs) -> slot (0 for an empty batch); lib/index.js
 * keeps the promise by slot, as for submit. All or nothing: if the batch is only partly accepted,
 * the accepted prefix is cancelled and the rejection (a PortwayError with .accepted) is
 * returned instead of a slot; the batch's completions are then absorbed. */
static napi_value m_submit_many(napi_env env, napi_callback_info info) {
    size_t argc = 4;
    napi_value argv[4];
    pw_engine *pe = live_engine(env, info, &argc, argv);
    if (!pe) return NULL;
    bool ok;
    uint32_t handler = get_handler_id(env, argv[0], &ok);
    if (!ok) return NULL;
    uint32_t n = 0, timeout = 0;
    NAPI_CALL(env, napi_get_array_length(env, argv[1], &n));
    if (!get_timeout(env, argv[2], &timeout)) return NULL;
    /* argv[3]: undefined, or a Float64Array of n elements that receives the accepted ids (an
     * abort cancels exactly those: the header does not promise consecutive ids). */
    double *out_ids = NULL;
    bool is_ta = false;
    NAPI_CALL(env, napi_is_typedarray(env, argv[3], &is_ta));
    if (is_ta) {
        napi_typedarray_type type;
        size_t length = 0;
        void *ptr = NULL;
        NAPI_CALL(env, napi_get_typedarray_info(env, argv[3], &type, &length, &ptr, NULL, NULL));
        if (type != napi_float64_array || length < n) {
            throw_invalid(env, false, "ids must be a Float64Array of one element per payload");
            return NULL;
        }
        out_ids = ptr;
    }
    napi_value v;
    if (n == 0) {
        NAPI_CALL(env, napi_create_uint32(env, 0, &v));
        return v;
    }
    if (!deliver_init(env, pe)) return NULL;
    portway_request *reqs = calloc(n, sizeof *reqs);
    uint64_t *ids = calloc(n, sizeof *ids);
    if (!reqs || !ids) {
        free(reqs);
        free(ids);
        napi_throw_error(env, "PORTWAY_INTERNAL", "out of memory");
        return NULL;
    }
    uint32_t slot = waiter_alloc(pe);
    if (!slot) {
        free(reqs);
        free(ids);
        napi_throw_error(env, "PORTWAY_INTERNAL", "out of memory");
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
        if (napi_get_element(env, argv[1], i, &el) != napi_ok ||
            !get_bytes(env, el, &reqs[i].payload, &reqs[i].payload_len))
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
        waiter_free(pe, slot);
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
        waiter_free(pe, slot);
        throw_status(env, st);
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
        napi_value err = make_error(env, st, buf, strlen(buf));
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
    recover_notify(pe);
    if (!update_busy(env, pe)) return NULL;
    if (v) return v;
    if (st != PORTWAY_OK) NAPI_CALL(env, napi_get_undefined(env, &v)); /* no error object */
    else NAPI_CALL(env, napi_create_uint32(env, slot, &v));
    return v;
}

static napi_value m_last_id(napi_env env, napi_callback_info info) {
    size_t argc = 0;
    pw_engine *pe = unwrap_this(env, info, &argc, NULL);
    if (!pe) return NULL;
    napi_value v;
    NAPI_CALL(env, napi_create_double(env, (double)pe->last_id, &v));
    return v;
}

/* cancel(id) -> true if it was still in flight */
static napi_value m_cancel(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], v;
    pw_engine *pe = unwrap_this(env, info, &argc, argv);
    if (!pe) return NULL;
    bool r = false;
    int64_t id = 0; /* ids are exact in a Number up to 2^53 - 1 */
    if (!get_int_arg(env, argv[0], "id", 0, SAFE_INT_MAX_D, false, 0, &id)) return NULL;
    if (pe->eng) {
        portway_status st = portway_cancel(pe->eng, (uint64_t)id);
        if (st != PORTWAY_OK && st != PORTWAY_NOT_FOUND) {
            throw_status(env, st);
            return NULL;
        }
        r = st == PORTWAY_OK;
    }
    NAPI_CALL(env, napi_get_boolean(env, r, &v));
    return v;
}

static napi_value m_cancel_all(napi_env env, napi_callback_info info) {
    size_t argc = 0;
    pw_engine *pe = live_engine(env, info, &argc, NULL);
    if (!pe) return NULL;
    portway_status st = portway_cancel_all(pe->eng);
    if (st != PORTWAY_OK) {
        throw_status(env, st);
        return NULL;
    }
    return NULL;
}

/* lookup(name) -> id (throws PortwayError NOT_FOUND) */
static napi_value m_lookup(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], v;
    pw_engine *pe = live_engine(env, info, &argc, argv);
    if (!pe) return NULL;
    char name[300];
    size_t len;
    NAPI_CALL(env, napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len));
    uint32_t id = 0;
    portway_status st = portway_handler_lookup(pe->eng, name, &id);
    if (st != PORTWAY_OK) {
        throw_status(env, st);
        return NULL;
    }
    NAPI_CALL(env, napi_create_uint32(env, id, &v));
    return v;
}

/* pipeline(name, stageIds[]) -> id */
static napi_value m_pipeline(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2], v;
    pw_engine *pe = live_engine(env, info, &argc, argv);
    if (!pe) return NULL;
    char name[300];
    size_t len;
    NAPI_CALL(env, napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len));
    uint32_t n = 0;
    NAPI_CALL(env, napi_get_array_length(env, argv[1], &n));
    uint32_t stages[64];
    if (n > 64) n = 65; /* let the library refuse it */
    uint32_t *st_ids = n > 64 ? calloc(n, sizeof *st_ids) : stages;
    if (!st_ids) {
        napi_throw_error(env, "PORTWAY_INTERNAL", "out of memory");
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++) {
        napi_value el;
        int64_t sid = 0;
        if (napi_get_element(env, argv[1], i, &el) != napi_ok ||
            !get_int_arg(env, el, "stage handler id", 0, U32_MAX_D, false, 0, &sid)) {
            if (st_ids != stages) free(st_ids);
            return NULL;
        }
        st_ids[i] = (uint32_t)sid;
    }
    uint32_t id = 0;
    portway_status st = portway_pipeline_new(pe->eng, name, st_ids, n, &id);
    if (st_ids != stages) free(st_ids);
    if (st != PORTWAY_OK) {
        throw_status(env, st);
        return NULL;
    }
    NAPI_CALL(env, napi_create_uint32(env, id, &v));
    return v;
}

/* The property `key` of `obj` when it is set (not undefined/null); *v is NULL otherwise. */
static bool opt_prop(napi_env env, napi_value obj, const char *key, napi_value *v) {
    napi_valuetype t;
    *v = NULL;
    NAPI_CALL_BOOL(env, napi_get_named_property(env, obj, key, v));
    NAPI_CALL_BOOL(env, napi_typeof(env, *v, &t));
    if (t == napi_undefined || t == napi_null) *v = NULL;
    return true;
}

static bool opt_u32(napi_env env, napi_value obj, const char *key, uint32_t *out) {
    napi_value v;
    if (!opt_prop(env, obj, key, &v)) return false;
    if (v) NAPI_CALL_BOOL(env, napi_get_value_uint32(env, v, out));
    return true;
}

static bool opt_bool(napi_env env, napi_value obj, const char *key, bool *out) {
    napi_value v;
    if (!opt_prop(env, obj, key, &v)) return false;
    if (v) NAPI_CALL_BOOL(env, napi_get_value_bool(env, v, out));
    return true;
}

/* A string option copied into malloc'd memory (freed by the caller); NULL when unset. */
static bool opt_str(napi_env env, napi_value obj, const char *key, char **out) {
    napi_value v;
    size_t len = 0;
    if (!opt_prop(env, obj, key, &v)) return false;
    if (!v) return true;
    NAPI_CALL_BOOL(env, napi_get_value_string_utf8(env, v, NULL, 0, &len));
    *out = malloc(len + 1);
    if (!*out) {
        napi_throw_error(env, "PORTWAY_INTERNAL", "out of memory");
        return false;
    }
    NAPI_CALL_BOOL(env, napi_get_value_string_utf8(env, v, *out, len + 1, &len));
    return true;
}

/* registerHttp(name, options) -> id. `options` was checked by lib/index.js: known keys of the
 * right types only (numbers as u32, maxBodyBytes as a safe integer). */
static napi_value m_register_http(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2], v;
    pw_engine *pe = live_engine(env, info, &argc, argv);
    if (!pe) return NULL;
    char name[300];
    size_t len;
    NAPI_CALL(env, napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len));
    portway_http_options o;
    portway_status st = portway_http_options_default(&o);
    if (st != PORTWAY_OK) {
        throw_status(env, st);
        return NULL;
    }
    char *user_agent = NULL, *ca = NULL, *proxy = NULL;
    napi_value body;
    bool ok = opt_u32(env, argv[1], "maxConnectionsPerHost", &o.max_connections_per_host) &&
              opt_u32(env, argv[1], "maxHeaderBytes", &o.max_header_bytes) &&
              opt_u32(env, argv[1], "connectTimeoutMs", &o.connect_timeout_ms) &&
              opt_u32(env, argv[1], "readTimeoutMs", &o.read_timeout_ms) &&
              opt_u32(env, argv[1], "poolIdleTimeoutMs", &o.pool_idle_timeout_ms) &&
              opt_bool(env, argv[1], "followRedirects", &o.follow_redirects) &&
              opt_u32(env, argv[1], "maxRedirects", &o.max_redirects) &&
              opt_u32(env, argv[1], "retries", &o.retries) &&
              opt_u32(env, argv[1], "retryBaseBackoffMs", &o.retry_base_backoff_ms) &&
              opt_bool(env, argv[1], "http2PriorKnowledge", &o.http2_prior_knowledge) &&
              opt_bool(env, argv[1], "http1Only", &o.http1_only) &&
              opt_bool(env, argv[1], "decompress", &o.decompress) &&
              opt_bool(env, argv[1], "bundledRootsOnly", &o.bundled_roots_only) &&
              opt_bool(env, argv[1], "dangerAcceptInvalidCerts", &o.danger_accept_invalid_certs) &&
              opt_str(env, argv[1], "userAgent", &user_agent) &&
              opt_str(env, argv[1], "extraCaPemPath", &ca) &&
              opt_str(env, argv[1], "proxy", &proxy) &&
              opt_prop(env, argv[1], "maxBodyBytes", &body);
    if (ok && body) {
        int64_t n = 0;
        ok = napi_get_value_int64(env, body, &n) == napi_ok;
        o.max_body_bytes = (uint64_t)n;
    }
    uint32_t id = 0;
    if (ok) {
        o.user_agent = user_agent;
        o.extra_ca_pem_path = ca;
        o.proxy = proxy;
        st = portway_register_http(pe->eng, name, &o, &id);
    }
    free(user_agent);
    free(ca);
    free(proxy);
    if (!ok) return NULL;
    if (st != PORTWAY_OK) {
        throw_status(env, st);
        return NULL;
    }
    NAPI_CALL(env, napi_create_uint32(env, id, &v));
    return v;
}

/* setConcurrency(id, limit) */
static napi_value m_set_concurrency(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    pw_engine *pe = live_engine(env, info, &argc, argv);
    if (!pe) return NULL;
    int64_t id, limit;
    if (!get_int_arg(env, argv[0], "handler id", 0, U32_MAX_D, false, 0, &id) ||
        !get_int_arg(env, argv[1], "limit", 0, U32_MAX_D, false, 0, &limit))
        return NULL;
    portway_status st = portway_handler_set_concurrency(pe->eng, (uint32_t)id, (uint32_t)limit);
    if (st != PORTWAY_OK) {
        throw_status(env, st);
        return NULL;
    }
    return NULL;
}

static bool set_u64(napi_env env, napi_value obj, const char *key, uint64_t v) {
    napi_value x;
    NAPI_CALL_BOOL(env, napi_create_double(env, (double)v, &x));
    NAPI_CALL_BOOL(env, napi_set_named_property(env, obj, key, x));
    return true;
}

/* setPolicy(id, options): options already checked by lib/index.js (known keys, kinds); fields
 * left out keep portway_policy_default's values, and the library refuses what it does not
 * implement (adaptive, hedging) with PORTWAY_INVALID_ARGUMENT. */
static napi_value m_set_policy(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2], rate;
    pw_engine *pe = live_engine(env, info, &argc, argv);
    if (!pe) return NULL;
    int64_t id;
    if (!get_int_arg(env, argv[0], "handler id", 0, U32_MAX_D, false, 0, &id)) return NULL;
    portway_policy p;
    portway_status st = portway_policy_default(&p);
    if (st != PORTWAY_OK) {
        throw_status(env, st);
        return NULL;
    }
    bool ok = opt_u32(env, argv[1], "maxConcurrency", &p.max_concurrency) &&
              opt_bool(env, argv[1], "adaptive", &p.adaptive) &&
              opt_u32(env, argv[1], "minConcurrency", &p.min_concurrency) &&
              opt_u32(env, argv[1], "burst", &p.burst) &&
              opt_u32(env, argv[1], "hedgeAfterMs", &p.hedge_after_ms) &&
              opt_bool(env, argv[1], "hedgeAfterP95", &p.hedge_after_p95) &&
              opt_u32(env, argv[1], "hedgeBudgetPercent", &p.hedge_budget_percent) &&
              opt_u32(env, argv[1], "breakerFailures", &p.breaker_failures) &&
              opt_u32(env, argv[1], "breakerCooldownMs", &p.breaker_cooldown_ms) &&
              opt_prop(env, argv[1], "ratePerS", &rate);
    if (!ok) return NULL;
    if (rate) NAPI_CALL(env, napi_get_value_double(env, rate, &p.rate_per_s));
    st = portway_handler_set_policy(pe->eng, (uint32_t)id, &p);
    if (st != PORTWAY_OK) throw_status(env, st);
    return NULL;
}

static bool set_f64(napi_env env, napi_value obj, const char *key, double v) {
    napi_value x;
    NAPI_CALL_BOOL(env, napi_create_double(env, v, &x));
    NAPI_CALL_BOOL(env, napi_set_named_property(env, obj, key, x));
    return true;
}

/* policyState(id) -> the portway_policy_state figures in camelCase, breakerState as a word. */
static napi_value m_policy_state(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], obj, word;
    pw_engine *pe = live_engine(env, info, &argc, argv);
    if (!pe) return NULL;
    int64_t id;
    if (!get_int_arg(env, argv[0], "handler id", 0, U32_MAX_D, false, 0, &id)) return NULL;
    portway_policy_state s;
    portway_status st = portway_handler_policy_state(pe->eng, (uint32_t)id, &s);
    if (st != PORTWAY_OK) {
        throw_status(env, st);
        return NULL;
    }
    const char *breaker = s.breaker_state == PORTWAY_BREAKER_CLOSED ? "closed"
                          : s.breaker_state == PORTWAY_BREAKER_HALF_OPEN ? "half-open"
                                                                        : "open";
    NAPI_CALL(env, napi_create_object(env, &obj));
    NAPI_CALL(env, napi_create_string_utf8(env, breaker, NAPI_AUTO_LENGTH, &word));
    NAPI_CALL(env, napi_set_named_property(env, obj, "breakerState", word));
    if (!set_u64(env, obj, "concurrencyLimit", s.concurrency_limit) ||
        !set_u64(env, obj, "running", s.running) || !set_u64(env, obj, "waiting", s.waiting) ||
        !set_f64(env, obj, "tokens", s.tokens) ||
        !set_u64(env, obj, "breakerFailures", s.breaker_failures) ||
        !set_u64(env, obj, "breakerTrips", s.breaker_trips) ||
        !set_u64(env, obj, "breakerRejected", s.breaker_rejected) ||
        !set_u64(env, obj, "rateTimeouts", s.rate_timeouts) ||
        !set_u64(env, obj, "hedgesStarted", s.hedges_started) ||
        !set_u64(env, obj, "hedgesWon", s.hedges_won) ||
        !set_u64(env, obj, "hedgesCancelled", s.hedges_cancelled))
        return NULL;
    return obj;
}

static napi_value m_stats(napi_env env, napi_callback_info info) {
    size_t argc = 0;
    pw_engine *pe = live_engine(env, info, &argc, NULL);
    if (!pe) return NULL;
    struct portway_stats s;
    portway_status st = portway_stats(pe->eng, &s);
    if (st != PORTWAY_OK) {
        throw_status(env, st);
        return NULL;
    }
    napi_value obj, completed;
    NAPI_CALL(env, napi_create_object(env, &obj));
    NAPI_CALL(env, napi_create_object(env, &completed));
    if (!set_u64(env, obj, "submitted", s.submitted) || !set_u64(env, obj, "accepted", s.accepted) ||
        !set_u64(env, obj, "rejectedBusy", s.rejected_busy) ||
        !set_u64(env, obj, "rejectedShutdown", s.rejected_shutdown) ||
        !set_u64(env, obj, "rejectedInvalid", s.rejected_invalid) ||
        !set_u64(env, obj, "inFlight", s.in_flight) || !set_u64(env, obj, "queued", s.queued) ||
        !set_u64(env, obj, "running", s.running) || !set_u64(env, obj, "ready", s.ready) ||
        !set_u64(env, obj, "unreleased", s.unreleased) ||
        !set_u64(env, obj, "poolWorkers", s.pool_workers))
        return NULL;
    for (uint32_t i = 0; i < PORTWAY_STATUS_SLOTS; i++) {
        const char *name = portway_status_str(i);
        if (strcmp(name, "PORTWAY_UNKNOWN_STATUS") == 0) continue;
        if (!set_u64(env, completed, name, s.completed[i])) return NULL;
    }
    NAPI_CALL(env, napi_set_named_property(env, obj, "completed", completed));
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
            napi_throw_error(env, "PORTWAY_INTERNAL", "out of memory");
            return NULL;
        }
        size_t needed = 0;
        portway_status st = fn(pe->eng, arg, buf, cap, &needed);
        if (st == PORTWAY_BUFFER_TOO_SMALL && needed > cap) {
            free(buf);
            cap = needed + needed / 4;
            continue;
        }
        if (st != PORTWAY_OK) {
            free(buf);
            throw_status(env, st);
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
static napi_value m_metrics_text(napi_env env, napi_callback_info info) {
    size_t argc = 0;
    pw_engine *pe = live_engine(env, info, &argc, NULL);
    if (!pe) return NULL;
    return text_call(env, pe, text_metrics, 0);
}

/* inflightJson(limit) -> string (JSON; parsed by lib/index.js) */
static napi_value m_inflight_json(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    pw_engine *pe = live_engine(env, info, &argc, argv);
    if (!pe) return NULL;
    int64_t limit = 0;
    if (!get_int_arg(env, argv[0], "limit", 0, U32_MAX_D, true, 100, &limit)) return NULL;
    return text_call(env, pe, text_inflight, (uint32_t)limit);
}

static bool set_latency(napi_env env, napi_value obj, const char *key,
                        const struct portway_latency *l) {
    napi_value o;
    NAPI_CALL_BOOL(env, napi_create_object(env, &o));
    if (!set_u64(env, o, "p50Ns", l->p50_ns) || !set_u64(env, o, "p90Ns", l->p90_ns) ||
        !set_u64(env, o, "p99Ns", l->p99_ns) || !set_u64(env, o, "maxNs", l->max_ns) ||
        !set_u64(env, o, "sumNs", l->sum_ns) || !set_u64(env, o, "count", l->count))
        return false;
    NAPI_CALL_BOOL(env, napi_set_named_property(env, obj, key, o));
    return true;
}

/* handlerStats(id) -> { id, submitted, completed: {STATUS: n (nonzero only)}, queueWait, run } */
static napi_value m_handler_stats(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    pw_engine *pe = live_engine(env, info, &argc, argv);
    if (!pe) return NULL;
    bool ok;
    uint32_t id = get_handler_id(env, argv[0], &ok);
    if (!ok) return NULL;
    struct portway_handler_stats hs;
    memset(&hs, 0, sizeof hs);
    portway_status st = portway_handler_stats(pe->eng, id, &hs);
    if (st != PORTWAY_OK) {
        throw_status(env, st);
        return NULL;
    }
    napi_value obj, completed, v;
    NAPI_CALL(env, napi_create_object(env, &obj));
    NAPI_CALL(env, napi_create_uint32(env, hs.id, &v));
    NAPI_CALL(env, napi_set_named_property(env, obj, "id", v));
    if (!set_u64(env, obj, "submitted", hs.submitted)) return NULL;
    NAPI_CALL(env, napi_create_object(env, &completed));
    for (uint32_t i = 0; i < PORTWAY_STATUS_SLOTS; i++) {
        if (hs.completed[i] == 0) continue;
        if (!set_u64(env, completed, portway_status_str(i), hs.completed[i])) return NULL;
    }
    NAPI_CALL(env, napi_set_named_property(env, obj, "completed", completed));
    if (!set_latency(env, obj, "queueWait", &hs.queue_wait) || !set_latency(env, obj, "run", &hs.run))
        return NULL;
    return obj;
}

/* close(drain, deadlineMs) -> Promise<void>; resolves once every completion was delivered
 * and the native engine is freed. The JS side makes it idempotent. */
static napi_value m_close(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2], promise;
    pw_engine *pe = unwrap_this(env, info, &argc, argv);
    if (!pe) return NULL;
    bool drain_mode = true;
    int64_t deadline = 0;
    NAPI_CALL(env, napi_get_value_bool(env, argv[0], &drain_mode));
    if (!get_int_arg(env, argv[1], "timeoutMs", 0, U32_MAX_D, false, 0, &deadline)) return NULL;
    napi_deferred d;
    NAPI_CALL(env, napi_create_promise(env, &d, &promise));
    if (!pe->eng) {
        napi_value undef;
        NAPI_CALL(env, napi_get_undefined(env, &undef));
        NAPI_CALL(env, napi_resolve_deferred(env, d, undef));
        return promise;
    }
    portway_status st =
        portway_engine_shutdown(pe->eng, drain_mode ? PORTWAY_DRAIN : PORTWAY_CANCEL_NOW, (uint32_t)deadline);
    if (st != PORTWAY_OK) {
        const char *m = portway_last_error();
        napi_value err = make_error(env, st, m, strlen(m));
        if (err) NAPI_CALL(env, napi_reject_deferred(env, d, err));
        return promise;
    }
    if (pe->close_deferred) {
        /* A second close (e.g. escalating drain to cancel): chain to the first. */
        napi_value undef;
        NAPI_CALL(env, napi_get_undefined(env, &undef));
        NAPI_CALL(env, napi_resolve_deferred(env, d, undef));
        return promise;
    }
    pe->close_deferred = d;
    pe->closing = true;
    if (!update_busy(env, pe)) return NULL;
    /* The engine notifies once on close; drain now too in case it is already closed. */
    drain(env, pe);
    return promise;
}

/* watchRelease(on): while on, each drain that released slots calls this._onRelease(). */
static napi_value m_watch_release(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    pw_engine *pe = unwrap_this(env, info, &argc, argv);
    if (!pe) return NULL;
    NAPI_CALL(env, napi_get_value_bool(env, argv[0], &pe->watch_release));
    return NULL;
}

#ifdef PORTWAY_FAULT_INJECTION
/* _fault(point, count): the next `count` passes through failure point `point` fail. */
static napi_value m_fault(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    pw_engine *pe = unwrap_this(env, info, &argc, argv);
    if (!pe) return NULL;
    static const char *const names[FAULT_COUNT] = {"flush", "bufferCopy", "notify", "batchGap"};
    char name[32];
    size_t len = 0;
    int64_t count = 0;
    NAPI_CALL(env, napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len));
    if (!get_int_arg(env, argv[1], "count", 0, 1000, false, 0, &count)) return NULL;
    for (int i = 0; i < FAULT_COUNT; i++) {
        if (strcmp(name, names[i]) == 0) {
            atomic_store(&pe->faults[i], (unsigned)count);
            return NULL;
        }
    }
    throw_invalid(env, true, "unknown fault point");
    return NULL;
}
#endif

/* ------------------------------------------------------------------ module */

/* Replaces the per-instance reference *slot with one to the call's first argument. */
static napi_value set_instance_ref(napi_env env, napi_callback_info info, size_t slot_offset) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    pw_instance *inst = get_instance(env);
    if (!inst) {
        napi_throw_error(env, "PORTWAY_NAPI", "no instance data");
        return NULL;
    }
    napi_ref *slot = (napi_ref *)((char *)inst + slot_offset);
    if (*slot) {
        NAPI_CALL(env, napi_delete_reference(env, *slot));
        *slot = NULL;
    }
    NAPI_CALL(env, napi_create_reference(env, argv[0], 1, slot));
    return NULL;
}

static napi_value m_set_error_class(napi_env env, napi_callback_info info) {
    return set_instance_ref(env, info, offsetof(pw_instance, error_ctor));
}

static napi_value m_set_deliver(napi_env env, napi_callback_info info) {
    return set_instance_ref(env, info, offsetof(pw_instance, deliver));
}

static napi_value m_status_str(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], v;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    int64_t s = 0;
    if (!get_int_arg(env, argv[0], "status", 0, U32_MAX_D, false, 0, &s)) return NULL;
    NAPI_CALL(env, napi_create_string_utf8(env, portway_status_str((uint32_t)s), NAPI_AUTO_LENGTH, &v));
    return v;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
    pw_instance *inst = calloc(1, sizeof *inst);
    if (!inst) {
        napi_throw_error(env, "PORTWAY_INTERNAL", "out of memory");
        return NULL;
    }
    napi_status s = napi_set_instance_data(env, inst, instance_finalize, NULL);
    if (s != napi_ok) {
        free(inst);
        throw_napi_error(env, s, "napi_set_instance_data");
        return NULL;
    }
    napi_property_descriptor methods[] = {
        {"submit", NULL, m_submit, NULL, NULL, NULL, napi_default_method, NULL},
        {"submitMany", NULL, m_submit_many, NULL, NULL, NULL, napi_default_method, NULL},
        {"lastId", NULL, m_last_id, NULL, NULL, NULL, napi_default_method, NULL},
        {"cancel", NULL, m_cancel, NULL, NULL, NULL, napi_default_method, NULL},
        {"cancelAll", NULL, m_cancel_all, NULL, NULL, NULL, napi_default_method, NULL},
        {"lookup", NULL, m_lookup, NULL, NULL, NULL, napi_default_method, NULL},
        {"pipeline", NULL, m_pipeline, NULL, NULL, NULL, napi_default_method, NULL},
        {"setConcurrency", NULL, m_set_concurrency, NULL, NULL, NULL, napi_default_method, NULL},
        {"setPolicy", NULL, m_set_policy, NULL, NULL, NULL, napi_default_method, NULL},
        {"policyState", NULL, m_policy_state, NULL, NULL, NULL, napi_default_method, NULL},
        {"registerHttp", NULL, m_register_http, NULL, NULL, NULL, napi_default_method, NULL},
        {"stats", NULL, m_stats, NULL, NULL, NULL, napi_default_method, NULL},
        {"metricsText", NULL, m_metrics_text, NULL, NULL, NULL, napi_default_method, NULL},
        {"inflightJson", NULL, m_inflight_json, NULL, NULL, NULL, napi_default_method, NULL},
        {"handlerStats", NULL, m_handler_stats, NULL, NULL, NULL, napi_default_method, NULL},
        {"close", NULL, m_close, NULL, NULL, NULL, napi_default_method, NULL},
        {"watchRelease", NULL, m_watch_release, NULL, NULL, NULL, napi_default_method, NULL},
#ifdef PORTWAY_FAULT_INJECTION
        {"_fault", NULL, m_fault, NULL, NULL, NULL, napi_default_method, NULL},
#endif
    };
    napi_value cls;
    NAPI_CALL(env, napi_define_class(env, "NativeEngine", NAPI_AUTO_LENGTH, engine_ctor, NULL,
                                     sizeof methods / sizeof methods[0], methods, &cls));
    napi_value fn, v;
    NAPI_CALL(env, napi_set_named_property(env, exports, "NativeEngine", cls));
    NAPI_CALL(env, napi_create_function(env, "setErrorClass", NAPI_AUTO_LENGTH, m_set_error_class, NULL, &fn));
    NAPI_CALL(env, napi_set_named_property(env, exports, "setErrorClass", fn));
    NAPI_CALL(env, napi_create_function(env, "setDeliver", NAPI_AUTO_LENGTH, m_set_deliver, NULL, &fn));
    NAPI_CALL(env, napi_set_named_property(env, exports, "setDeliver", fn));
    NAPI_CALL(env, napi_create_function(env, "statusStr", NAPI_AUTO_LENGTH, m_status_str, NULL, &fn));
    NAPI_CALL(env, napi_set_named_property(env, exports, "statusStr", fn));
    NAPI_CALL(env, napi_create_string_utf8(env, portway_version(), NAPI_AUTO_LENGTH, &v));
    NAPI_CALL(env, napi_set_named_property(env, exports, "version", v));
    NAPI_CALL(env, napi_create_uint32(env, portway_abi_version(), &v));
    NAPI_CALL(env, napi_set_named_property(env, exports, "abiVersion", v));
    return exports;
}
