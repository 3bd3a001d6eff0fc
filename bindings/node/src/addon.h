/*
 * portway Node addon: N-API (version 8) over the C ABI in include/portway.h. This private
 * header holds what the addon's files share: the per-engine state, the N-API call macros and
 * the helpers every file uses. One file per job:
 *
 *   errors.c    PortwayError values, argument errors (TypeError/RangeError), status throws
 *   args.c      argument readers: integers, handler ids, timeouts, payload bytes, strings
 *   lifetime.c  per-instance data, the engine refcount, teardown (close, GC, env cleanup),
 *               the busy/idle switch, unwrapping `this`
 *   engine.c    the NativeEngine constructor (options -> portway_config) and close()
 *   submit.c    submit, submitMany, cancel, the waiter slots
 *   batch.c     batchSubmit (eng.batch): portway_batch_submit, its result to JS as columns
 *   coalesce.c  per-tick coalescing: submits queued in C, one portway_submit_batch per flush
 *   delivery.c  the notify hook and the drain: completions -> JS in batches
 *   log.c       onLog: the log hook and its tsfn
 *   handlers.c  lookup, pipeline, setConcurrency
 *   policy.c    setPolicy, policyState
 *   http.c      registerHttp and its options object
 *   stats.c     stats, handlerStats, metricsText, inflightJson
 *   faults.c    test-only fault injection (-DPORTWAY_FAULT_INJECTION)
 *   module.c    the module: class definition and exports
 *
 * Delivery: the engine's notify hook (an engine thread, or the submitting thread for inline
 * handlers) makes one non-blocking call on a napi_threadsafe_function; on the JS thread
 * `pw_drain` polls with timeout 0 in batches until the queue is empty, copies each poll batch
 * into flat records (a Float64Array, a body arena, one string of headers), hands them to JS in
 * one call (lib/native.js `deliver` builds the completion objects and settles the promises,
 * which live in JS) and releases the batch. A flag coalesces notifications so at most one tsfn
 * call is queued per engine.
 *
 * Buffers: each completion's data is copied (into the arena, then into its own Buffer by
 * `deliver`) and the batch is released at once. External buffers would hold the in-flight
 * slot until the Buffer is garbage collected, which stalls `maxInFlight` backpressure on a GC
 * schedule; see bindings/node/README.md.
 *
 * Lifetime: a `pw_engine` is shared by the JS wrapper (napi_wrap) and the tsfn; it is freed
 * when both let go (refcount). The native engine is freed on close (after PORTWAY_CLOSED),
 * on wrapper GC, or by an env cleanup hook registered *after* the tsfn was created, so it runs
 * before Node tears the tsfn down (hooks run in reverse order): engine threads are joined
 * before the tsfn can disappear. The notify hook also checks `tsfn_open` under a mutex.
 * No static mutable state: per-instance data holds the class references.
 *
 * Logs (`onLog`): a second tsfn, see log.c for its ordering.
 *
 * Every cross-file name starts with pw_ (the addon links a large static library; a short
 * global name such as `drain` could collide with one of its C objects).
 */
#ifndef PORTWAY_NODE_ADDON_H
#define PORTWAY_NODE_ADDON_H

#define NAPI_VERSION 8
#include <node_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portway.h"

#define POLL_BATCH 256
/* Single-request completions are handed to JS in batches (see delivery.c). */
#define DELIVER_FIELDS 10          /* Float64 fields per completion record */
#define ARENA_BYTES (64 * 1024)    /* bodies of one delivery are copied here */

#define U32_MAX_D 4294967295.0
#define SAFE_INT_MAX_D 9007199254740991.0 /* Number.MAX_SAFE_INTEGER */

/* ------------------------------------------------------------------ N-API calls */

/* Runs an N-API call; on failure throws (unless an exception is pending) and returns `ret`. */
#define NAPI_CALL_BASE(env, call, ret)                                                   \
    do {                                                                                 \
        napi_status status_ = (call);                                                    \
        if (status_ != napi_ok) {                                                        \
            pw_throw_napi_error((env), status_, #call);                                  \
            return ret;                                                                  \
        }                                                                                \
    } while (0)
#define NAPI_CALL(env, call) NAPI_CALL_BASE(env, call, NULL)
#define NAPI_CALL_VOID(env, call) NAPI_CALL_BASE(env, call, )
#define NAPI_CALL_BOOL(env, call) NAPI_CALL_BASE(env, call, false)


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
#define FAULT(pe, point) pw_fault_hit((pe), (point))
#else
#define FAULT(pe, point) ((void)(pe), false)
#endif

/* ------------------------------------------------------------------ per-instance data */

/* Per-instance data: the classes and functions lib/native.js hands over at load. */
typedef struct {
    napi_ref error_ctor; /* PortwayError */
    napi_ref deliver; /* lib/native.js's deliver(n, nums, arena, hdrs, errs), this = NativeEngine */
} pw_instance;

/* ------------------------------------------------------------------ engine state */

/* A waiter: one promise, settled by one completion (single) or by `remaining` (batch). The
 * promise itself lives in JS (NativeEngine._res/_rej[slot], see delivery.c). */
typedef struct {
    bool used;              /* false when the slot is free */
    uint32_t remaining;     /* completions still expected */
    bool batch;
    bool settled;           /* batch already rejected */
    bool pending;           /* queued for the next coalesced flush (coalesce.c), no id yet */
    uint32_t next_free;
    uint64_t id;            /* the engine's id once submitted (single requests) */
    bool columnar;          /* eng.batch: one portway_batch_submit batch (batch.c) */
} pw_waiter;

/* A submit queued for the next flush (coalesce.c): its payload is pend_data[off .. off+len]. */
typedef struct {
    uint32_t handler, timeout_ms;
    uint32_t slot; /* 0: cancelled before the flush */
    size_t off, len;
} pw_pend;

/* The state behind one NativeEngine: shared by the wrapper and the tsfns (refcounted, see
 * lifetime.c); touched only on the JS thread except the fields the hooks read under `mu` and
 * the atomics. */
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
    /* Per-tick coalescing (coalesce.c): submits queued since the last flush, their payloads
     * copied into pend_data, and test-visible counters of the flushes. */
    pw_pend *pend;
    uint32_t npend, pend_cap;
    uint8_t *pend_data;
    size_t pend_len, pend_data_cap;
    portway_request *pend_reqs; /* scratch of the flush */
    uint64_t *pend_ids;
    uint32_t pend_reqs_cap;
    uint64_t flush_calls, flush_items;
    portway_completion buf[POLL_BATCH];
} pw_engine;

/* ------------------------------------------------------------------ errors.c */

/* Throws PORTWAY_NAPI with N-API's own message for a failed call (unless one is pending). */
void pw_throw_napi_error(napi_env env, napi_status st, const char *what);
/* Throws a TypeError (range false) or RangeError with code PORTWAY_INVALID_ARGUMENT. */
void pw_throw_invalid(napi_env env, bool range, const char *msg);
/* Throws PORTWAY_INTERNAL "out of memory" (an Error: no status is involved). */
void pw_throw_oom(napi_env env);
/* Clears a pending JS exception left by a failed N-API call we recover from. */
void pw_clear_exception(napi_env env);
/* A PortwayError(message, code, status); NULL if even a plain Error cannot be made. */
napi_value pw_make_error(napi_env env, uint32_t status, const char *msg, size_t msg_len);
/* pw_make_error with `.requestId` = id: the rejection of one request. */
napi_value pw_request_error(napi_env env, uint32_t status, const char *msg, size_t msg_len,
                            uint64_t id);
/* The PortwayError of a failed C call: portway_last_error(), or the status name if empty. */
napi_value pw_status_error(napi_env env, portway_status status);
/* Throws pw_status_error (call it before anything else can overwrite the last error). */
void pw_throw_status(napi_env env, portway_status status);
/* true for PORTWAY_OK; otherwise throws as pw_throw_status and returns false. */
bool pw_status_ok(napi_env env, portway_status status);
/* Calls fn; an exception it throws becomes an uncaught exception, as for an event listener
 * (left pending, Node would only print a DEP0168 warning). Returns false if it threw. */
bool pw_call_or_fatal(napi_env env, napi_value recv, napi_value fn, size_t argc,
                      const napi_value *argv);
/* `id` as a JS number when `st` is PORTWAY_OK; otherwise throws it (NULL). */
napi_value pw_id_result(napi_env env, portway_status st, uint32_t id);
/* Resolves `d` with undefined (best effort: used where nothing can be thrown). */
void pw_resolve_undefined(napi_env env, napi_deferred d);

/* ------------------------------------------------------------------ args.c */

/* An integer in [min, max] (undefined = dflt when optional); no coercion (see args.c). */
bool pw_get_int_arg(napi_env env, napi_value v, const char *what, double min, double max,
                    bool optional, int64_t dflt, int64_t *out);
/* An integer from 0 to 2^32 - 1 (pw_get_int_arg over that range). */
bool pw_get_u32(napi_env env, napi_value v, const char *what, bool optional, uint32_t dflt,
                uint32_t *out);
/* A handler id (an integer in u32 range) into *out; throws and returns false otherwise. */
bool pw_get_handler_id(napi_env env, napi_value v, uint32_t *out);
/* A request's timeoutMs: undefined = 0 (the engine default), else 1 ms or more. */
bool pw_get_timeout(napi_env env, napi_value v, uint32_t *out);
/* The bytes of a Buffer/Uint8Array (borrowed: valid while `v` is alive). */
bool pw_get_bytes(napi_env env, napi_value v, const uint8_t **data, size_t *len);
/* The whole of string `v` as a NUL-terminated UTF-8 copy (malloc'd: the caller frees it).
 * Refuses a non-string and a string containing NUL (C would see it cut there). */
bool pw_get_string(napi_env env, napi_value v, const char *what, char **out);
/* One field of an options object read into a C struct (registerHttp, setPolicy): its JS key,
 * its kind and its offset in the struct. */
typedef enum { PW_OPT_U32, PW_OPT_U64, PW_OPT_BOOL, PW_OPT_F64, PW_OPT_STR } pw_opt_kind;
typedef struct {
    const char *key;
    pw_opt_kind kind;
    size_t offset;
} pw_opt_field;
/* Reads `f.key` of `obj` into the struct at `base` when it is set (not undefined/null); a
 * string is copied into *str (malloc'd, freed by the caller) and the field points at it. */
bool pw_read_opt(napi_env env, napi_value obj, const pw_opt_field *f, void *base, char **str);

/* ------------------------------------------------------------------ lifetime.c */

/* Frees the per-instance data (its finalizer, given to napi_set_instance_data). */
void pw_instance_finalize(napi_env env, void *data, void *hint);
/* The per-instance data, or NULL. */
pw_instance *pw_get_instance(napi_env env);
/* setErrorClass(PortwayError) and setDeliver(deliver): lib/native.js calls them at load. */
napi_value pw_js_set_error_class(napi_env env, napi_callback_info info);
napi_value pw_js_set_deliver(napi_env env, napi_callback_info info);
/* Drops one of the references (wrapper, tsfn, log tsfn); the last one frees `pe`. */
void pw_engine_unref(pw_engine *pe);
/* Frees the native engine and releases both tsfns, in the order log.c describes. */
bool pw_engine_destroy(pw_engine *pe, bool from_cleanup_hook);
/* The env cleanup hook (registered after both tsfns): pw_engine_destroy at env teardown. */
void pw_cleanup_hook(void *arg);
/* Finalizers of the notify tsfn and of the wrapper: each drops its reference. */
void pw_tsfn_finalize(napi_env env, void *data, void *hint);
void pw_wrapper_finalize(napi_env env, void *data, void *hint);
/* Sets *flag (tsfn_open or log_open) to false under pe->mu, against the hooks reading it. */
void pw_flag_clear(pw_engine *pe, bool *flag);
/* The wrapper (`this`) and its property `key` when the wrapper is alive and `key` is a
 * function; false otherwise (collected, or not set). */
bool pw_wrapper_method(napi_env env, pw_engine *pe, const char *key, napi_value *self,
                       napi_value *fn);
/* Refs or unrefs the loop and the wrapper to match `busy` (see pw_update_busy). */
bool pw_set_busy(napi_env env, pw_engine *pe, bool busy);
/* A method's arguments: missing ones read as undefined. */
#define PW_MAX_ARGS 5
typedef struct {
    napi_value v[PW_MAX_ARGS];
} pw_args;

/* The pw_engine of a method call's `this`, its first `n` (at most PW_MAX_ARGS) arguments in
 * *args (NULL when n is 0); with `live`, throws PORTWAY_SHUTDOWN (and returns NULL) once the
 * native engine is freed. Also repeats a lost notification (pw_recover_notify). */
pw_engine *pw_this(napi_env env, napi_callback_info info, size_t n, bool live, pw_args *args);
/* pw_this without the coalescing flush it starts with: for enqueue and cancelSlot, the calls
 * that work on the queue itself. Every other method flushes first, so what it sees or does
 * (stats, lastId, cancelAll, close, submitMany) comes after every submit made before it. */
pw_engine *pw_this_noflush(napi_env env, napi_callback_info info, size_t n, bool live, pw_args *args);

/* Keeps the event loop and the wrapper alive exactly while requests are in flight or a close
 * is pending; keeps the wrapper (only: the notify tsfn is gone by then) until close's log
 * flush marker has been delivered, so onLog can still be read from it. Inline: every submit
 * and drain calls it, and it nearly always has nothing to do. */
static inline bool pw_update_busy(napi_env env, pw_engine *pe) {
    bool want = pe->in_flight > 0 || pe->closing || pe->flushing;
    return want == pe->busy || pw_set_busy(env, pe, want);
}

/* ------------------------------------------------------------------ engine.c */

/* The NativeEngine methods below (pw_js_*) are N-API callbacks; module.c lists them. */
napi_value pw_js_engine_ctor(napi_env env, napi_callback_info info);
napi_value pw_js_close(napi_env env, napi_callback_info info);

/* ------------------------------------------------------------------ submit.c */

napi_value pw_js_submit(napi_env env, napi_callback_info info);
napi_value pw_js_submit_many(napi_env env, napi_callback_info info);
napi_value pw_js_last_id(napi_env env, napi_callback_info info);
napi_value pw_js_cancel(napi_env env, napi_callback_info info);
napi_value pw_js_cancel_all(napi_env env, napi_callback_info info);
/* The engine of a submit or enqueue call (pw_this, or pw_this_noflush when !flush) and its
 * arguments (handlerId, payload, timeoutMs) in *req (the payload borrowed from the call's
 * argument); NULL after throwing when the engine is closed or an argument is invalid. */
pw_engine *pw_this_request(napi_env env, napi_callback_info info, bool flush, portway_request *req);
/* A free waiter slot (1-based), or 0 after throwing "out of memory". */
uint32_t pw_waiter_take(napi_env env, pw_engine *pe);
/* Submits `req` now (portway_submit) with a new waiter slot: the slot as a JS number, or
 * NULL after throwing the refusal. */
napi_value pw_submit_now(napi_env env, pw_engine *pe, portway_request *req);

/* Returns waiter `slot` (1-based) to the free list. */
static inline void pw_waiter_free(pw_engine *pe, uint32_t slot) {
    pw_waiter *w = &pe->waiters[slot - 1];
    *w = (pw_waiter){.next_free = pe->free_head};
    pe->free_head = slot;
}

/* Makes room for `need` elements of `elem` bytes in *p (capacity *cap, doubled from 256 as
 * needed; *p may be NULL). False when out of memory (*p and *cap unchanged). In coalesce.c. */
bool pw_grow(void **p, size_t *cap, size_t need, size_t elem);

/* ------------------------------------------------------------------ batch.c */

napi_value pw_js_batch_submit(napi_env env, napi_callback_info info);
/* Hands the polled completion `c` of eng.batch `slot` to JS (this._batchDone), before it is
 * released. */
void pw_batch_done(napi_env env, pw_engine *pe, uint32_t slot, const portway_completion *c);

/* ------------------------------------------------------------------ coalesce.c */

napi_value pw_js_enqueue(napi_env env, napi_callback_info info);
napi_value pw_js_flush(napi_env env, napi_callback_info info);
napi_value pw_js_cancel_slot(napi_env env, napi_callback_info info);
napi_value pw_js_coalesce_stats(napi_env env, napi_callback_info info);
/* Submits every queued request in portway_submit_batch calls; refused ones reject. */
void pw_pending_flush(napi_env env, pw_engine *pe);
/* Frees the queue's buffers (engine teardown). */
void pw_pending_free(pw_engine *pe);

/* ------------------------------------------------------------------ delivery.c */

/* The engine's notify hook (any thread): queues one call of pw_call_js. */
void pw_notify_hook(void *ctx);
/* Creates the delivery buffers (first submit); see pw_deliver_ready. */
bool pw_deliver_init(napi_env env, pw_engine *pe);
/* Polls, delivers and releases every ready completion (JS thread). */
void pw_drain(napi_env env, pw_engine *pe);
/* The notify tsfn's callback: pw_drain (nothing at teardown, env == NULL). */
void pw_call_js(napi_env env, napi_value js_cb, void *context, void *data);
napi_value pw_js_watch_release(napi_env env, napi_callback_info info);
/* Rejects single request `slot` with `err` through deliver (the waiter is freed by the
 * caller); pw_deliver_end hands the records to JS. For refusals found after the submit call
 * returned (coalesce.c). */
void pw_deliver_reject(napi_env env, pw_engine *pe, uint32_t slot, napi_value err);
void pw_deliver_end(napi_env env, pw_engine *pe);

/* The delivery buffers exist (created on the first submit). */
static inline bool pw_deliver_ready(napi_env env, pw_engine *pe) {
    return pe->arena_ref != NULL || pw_deliver_init(env, pe);
}

/* On the JS thread: repeats a notification that could not be queued (see pw_notify_hook). */
static inline void pw_recover_notify(pw_engine *pe) {
    if (atomic_load(&pe->notify_lost) && atomic_exchange(&pe->notify_lost, false) && pe->eng)
        pw_notify_hook(pe);
}

/* ------------------------------------------------------------------ log.c */

/* The engine's log hook (any thread), the log tsfn's callback (JS thread: onLog, or the close
 * flush marker) and its finalizer. */
void pw_log_hook(void *ctx, uint32_t level, const char *message);
void pw_log_call_js(napi_env env, napi_value js_cb, void *context, void *data);
void pw_log_tsfn_finalize(napi_env env, void *data, void *hint);

/* ------------------------------------------------------------------ handlers.c, policy.c, http.c, stats.c */

napi_value pw_js_lookup(napi_env env, napi_callback_info info);
napi_value pw_js_pipeline(napi_env env, napi_callback_info info);
napi_value pw_js_set_concurrency(napi_env env, napi_callback_info info);
napi_value pw_js_set_policy(napi_env env, napi_callback_info info);
napi_value pw_js_policy_state(napi_env env, napi_callback_info info);
napi_value pw_js_register_http(napi_env env, napi_callback_info info);
napi_value pw_js_stats(napi_env env, napi_callback_info info);
napi_value pw_js_metrics_text(napi_env env, napi_callback_info info);
napi_value pw_js_inflight_json(napi_env env, napi_callback_info info);
napi_value pw_js_handler_stats(napi_env env, napi_callback_info info);

/* ------------------------------------------------------------------ faults.c */

#ifdef PORTWAY_FAULT_INJECTION
/* true (and one fewer left) when failure point `point` is armed. */
bool pw_fault_hit(pw_engine *pe, int point);
napi_value pw_js_fault(napi_env env, napi_callback_info info);
#endif

#endif /* PORTWAY_NODE_ADDON_H */
