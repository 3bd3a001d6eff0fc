/*
 * test_hook_free.c: portway_engine_free returns only once a notify hook already running on an
 * engine thread has returned, so the host may free the hook's context right after free (a late
 * or still-running call then touches freed memory, which ASan and valgrind report).
 */
#include "check.h"

#include <stdatomic.h>
#include <stdlib.h>

typedef struct {
    atomic_int entered;
    atomic_int exited;
} hook_ctx;

/* Slow on purpose: a free that does not wait for it returns before it sets `exited`. */
static void slow_notify(void *ctx) {
    hook_ctx *h = ctx;
    atomic_fetch_add(&h->entered, 1);
    sleep_ms(300);
    atomic_fetch_add(&h->exited, 1);
}

static void test_free_waits_for_notify(void) {
    portway_engine *eng = new_engine_workers(1);
    hook_ctx *h = calloc(1, sizeof *h);
    CHECK(h != NULL);
    CHECK_OK(portway_set_notify(eng, slow_notify, h));
    /* "sleep" completes on an engine thread, which then runs the hook. */
    portway_request r = make_req(lookup(eng, "sleep"), "20", 0, 0);
    uint64_t id = 0;
    CHECK_OK(portway_submit(eng, &r, &id));
    double waited = 0, limit = patience_ms(5000);
    while (atomic_load(&h->entered) == 0 && waited < limit) {
        sleep_ms(5);
        waited += 5;
    }
    CHECK(atomic_load(&h->entered) == 1);
    portway_engine_free(eng);
    CHECK(atomic_load(&h->exited) == atomic_load(&h->entered));
    free(h);
}

int main(void) {
    test_free_waits_for_notify();
    puts("test_hook_free: ok");
    return 0;
}
