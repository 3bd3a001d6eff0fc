/* Log delivery (`onLog`).
 *
 * The engine calls pw_log_hook from its own threads or from the thread that caused the event
 * (here mostly the JS thread: engine start in portway_engine_new, shutdown in
 * portway_engine_shutdown, leaked-request warnings in portway_engine_free). The message is
 * valid only during the call, so it is copied into a pw_log_msg and queued on `log_tsfn`;
 * pw_log_call_js hands (levelName, message) to the `onLog` function on the JS thread.
 *
 * The tsfn holds no JS function: onLog is a hidden property of the NativeEngine wrapper, read
 * through the (weak when idle) wrapper reference at delivery time. A strong reference from
 * the tsfn would root any closure over the engine and keep an idle engine from being
 * collected. The tsfn is unref'd for its whole life, so logging never keeps the loop alive.
 *
 * Ordering at teardown (pw_engine_destroy), on every path (close, wrapper GC, env cleanup hook):
 *   1. portway_set_notify(NULL), tsfn_open = false (the notify tsfn as before).
 *   2. portway_engine_free with the log hook still installed: it joins every engine thread,
 *      and its own warnings (requests leaked past free, abandoned handlers) are emitted on
 *      this thread during the call, so they are still delivered. After it returns no thread
 *      can call pw_log_hook (the addon registers no native handlers, so no pool thread can be
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
 *      pw_log_call_js with env == NULL, which frees them.
 *   5. The notify tsfn is released (abort), as before.
 * Both tsfns are created before the env cleanup hook is registered, so the hook (and with it
 * engine free) runs before Node's own teardown of either tsfn. Each tsfn holds a reference
 * on pw_engine, dropped by its finalizer, so pe (and its mutex) outlives every queued item.
 */
#include <stdlib.h>
#include <string.h>

#include "addon.h"

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

void pw_log_hook(void *ctx, uint32_t level, const char *message) {
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

void pw_log_call_js(napi_env env, napi_value js_cb, void *context, void *data) {
    (void)js_cb;
    pw_engine *pe = context;
    if (data == pe) { /* the flush marker queued by close() */
        napi_deferred d = pe->flush_deferred;
        pe->flush_deferred = NULL;
        pe->flushing = false;
        if (env) {
            pw_update_busy(env, pe); /* lets go of the wrapper */
            if (d) pw_resolve_undefined(env, d);
        }
        return;
    }
    pw_log_msg *m = data;
    if (env == NULL || pe->wrapper == NULL) { /* teardown, or the wrapper was collected */
        free(m);
        return;
    }
    napi_value self, fn, recv, argv[2];
    bool ok = pw_wrapper_method(env, pe, "onLog", &self, &fn) &&
              napi_get_undefined(env, &recv) == napi_ok &&
              napi_create_string_utf8(env, log_level_name(m->level), NAPI_AUTO_LENGTH, &argv[0]) ==
                  napi_ok &&
              napi_create_string_utf8(env, m->text, m->len, &argv[1]) == napi_ok;
    free(m);
    /* An exception thrown by onLog becomes an uncaught exception, as for an event listener. */
    if (ok) pw_call_or_fatal(env, recv, fn, 2, argv);
}

void pw_log_tsfn_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    pw_engine *pe = data;
    pw_flag_clear(pe, &pe->log_open);
    pw_engine_unref(pe);
}
