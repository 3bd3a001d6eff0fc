/* Test-only fault injection (built with -DPORTWAY_FAULT_INJECTION by `make test` into
 * build/faults/, never into build/portway.node): NativeEngine#_fault(point, count) makes the
 * next `count` passes through a failure point fail as the N-API call there can, so the tests
 * can check that every such failure still settles the promises it concerns. Without the
 * macro this file compiles to nothing. */
#include <stdlib.h>
#include <string.h>

#include "addon.h"

#ifdef PORTWAY_FAULT_INJECTION
bool pw_fault_hit(pw_engine *pe, int point) {
    unsigned n = atomic_load(&pe->faults[point]);
    while (n > 0)
        if (atomic_compare_exchange_weak(&pe->faults[point], &n, n - 1)) return true;
    return false;
}

/* _fault(point, count): the next `count` passes through failure point `point` fail. */
napi_value pw_js_fault(napi_env env, napi_callback_info info) {
    pw_args a;
    pw_engine *pe = pw_this(env, info, 2, false, &a);
    if (!pe) return NULL;
    static const char *const names[FAULT_COUNT] = {"flush", "bufferCopy", "notify", "batchGap"};
    int64_t count = 0;
    char *name = NULL;
    if (!pw_get_int_arg(env, a.v[1], "count", 0, 1000, false, 0, &count) ||
        !pw_get_string(env, a.v[0], "fault point", &name))
        return NULL;
    int i = 0;
    while (i < FAULT_COUNT && strcmp(name, names[i]) != 0) i++;
    free(name);
    if (i == FAULT_COUNT) pw_throw_invalid(env, true, "unknown fault point");
    else atomic_store(&pe->faults[i], (unsigned)count);
    return NULL;
}
#endif
