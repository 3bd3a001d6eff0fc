/* Per-instance data and the life of a pw_engine: its refcount (wrapper + tsfns), teardown on
 * every path (close, wrapper GC, env cleanup hook), the busy/idle switch that refs the loop
 * while requests are in flight, and `this` unwrapping for the methods. */
#include <stdlib.h>
#include <string.h>

#include "addon.h"

void pw_instance_finalize(napi_env env, void *data, void *hint) {
    (void)hint;
    pw_instance *inst = data;
    if (inst->error_ctor) napi_delete_reference(env, inst->error_ctor);
    if (inst->deliver) napi_delete_reference(env, inst->deliver);
    free(inst);
}

pw_instance *pw_get_instance(napi_env env) {
    void *data = NULL;
    if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
    return data;
}

/* Replaces the per-instance reference *slot with one to the call's first argument. */
static napi_value set_instance_ref(napi_env env, napi_callback_info info, size_t slot_offset) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    pw_instance *inst = pw_get_instance(env);
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

napi_value pw_js_set_error_class(napi_env env, napi_callback_info info) {
    return set_instance_ref(env, info, offsetof(pw_instance, error_ctor));
}

napi_value pw_js_set_deliver(napi_env env, napi_callback_info info) {
    return set_instance_ref(env, info, offsetof(pw_instance, deliver));
}

void pw_engine_unref(pw_engine *pe) {
    if (--pe->refs > 0) return;
    pthread_mutex_destroy(&pe->mu);
    free(pe->waiters);
    pw_pending_free(pe);
    free(pe->hbuf);
    free(pe);
}

void pw_flag_clear(pw_engine *pe, bool *flag) {
    pthread_mutex_lock(&pe->mu);
    *flag = false;
    pthread_mutex_unlock(&pe->mu);
}

/* Frees the native engine and releases both tsfns, in the order described in log.c. Safe at
 * env teardown (no JS is called). With `pe->flush_deferred` set (close), queues the flush
 * marker and returns true: pw_log_call_js then owns the deferred. Returns false when nothing
 * was queued (the caller still owns any flush_deferred). */
bool pw_engine_destroy(pw_engine *pe, bool from_cleanup_hook) {
    bool flush = false;
    if (pe->hook_registered) {
        pe->hook_registered = false;
        if (!from_cleanup_hook) napi_remove_env_cleanup_hook(pe->env, pw_cleanup_hook, pe);
    }
    if (pe->eng) {
        portway_set_notify(pe->eng, NULL, NULL);
        pw_flag_clear(pe, &pe->tsfn_open);
        portway_engine_free(pe->eng); /* joins engine threads: no hook runs after this */
        pe->eng = NULL;
    }
    if (pe->log_tsfn) {
        napi_threadsafe_function t = pe->log_tsfn;
        flush = pe->flush_deferred != NULL && !from_cleanup_hook;
        if (flush && (napi_ref_threadsafe_function(pe->env, t) != napi_ok ||
                      napi_call_threadsafe_function(t, pe, napi_tsfn_nonblocking) != napi_ok))
            flush = false;
        pw_flag_clear(pe, &pe->log_open);
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

void pw_cleanup_hook(void *arg) {
    pw_engine *pe = arg;
    pw_engine_destroy(pe, true);
}

void pw_tsfn_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    pw_engine *pe = data;
    pw_flag_clear(pe, &pe->tsfn_open);
    pw_engine_unref(pe);
}

void pw_wrapper_finalize(napi_env env, void *data, void *hint) {
    (void)hint;
    pw_engine *pe = data;
    /* Only reached when idle (a busy engine holds a strong reference to its wrapper). */
    pw_engine_destroy(pe, false);
    if (pe->wrapper) {
        napi_delete_reference(env, pe->wrapper);
        pe->wrapper = NULL;
    }
    if (pe->nums_ref) napi_delete_reference(env, pe->nums_ref);
    if (pe->arena_ref) napi_delete_reference(env, pe->arena_ref);
    pe->nums_ref = pe->arena_ref = NULL;
    pw_engine_unref(pe);
}

bool pw_set_busy(napi_env env, pw_engine *pe, bool want) {
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

bool pw_wrapper_method(napi_env env, pw_engine *pe, const char *key, napi_value *self,
                       napi_value *fn) {
    napi_valuetype t = napi_undefined;
    *self = NULL;
    return pe->wrapper && napi_get_reference_value(env, pe->wrapper, self) == napi_ok && *self &&
           napi_get_named_property(env, *self, key, fn) == napi_ok &&
           napi_typeof(env, *fn, &t) == napi_ok && t == napi_function;
}

/* Throws PORTWAY_SHUTDOWN and returns false once the native engine is freed, as a submit
 * between close() and the free gets from the library (and as the Python and C APIs answer
 * after close): one status for "closed". */
static bool check_live(napi_env env, pw_engine *pe) {
    if (pe->eng) return true;
    const char *m = "engine is closed";
    napi_value err = pw_make_error(env, PORTWAY_SHUTDOWN, m, strlen(m));
    if (err) napi_throw(env, err);
    return false;
}

pw_engine *pw_this(napi_env env, napi_callback_info info, size_t n, bool live, pw_args *args) {
    pw_engine *pe = pw_this_noflush(env, info, n, false, args);
    if (!pe) return NULL;
    if (pe->npend) pw_pending_flush(env, pe);
    return live && !check_live(env, pe) ? NULL : pe;
}

pw_engine *pw_this_noflush(napi_env env, napi_callback_info info, size_t n, bool live,
                           pw_args *args) {
    napi_value self;
    void *data = NULL;
    if (n > PW_MAX_ARGS) n = PW_MAX_ARGS; /* never write past args->v */
    NAPI_CALL(env, napi_get_cb_info(env, info, &n, args ? args->v : NULL, &self, NULL));
    NAPI_CALL(env, napi_unwrap(env, self, &data));
    pw_engine *pe = data;
    if (!pe) return NULL;
    pw_recover_notify(pe);
    return live && !check_live(env, pe) ? NULL : pe;
}
