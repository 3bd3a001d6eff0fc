/*
 * test_batch.c: the columnar batch ABI (portway_batch_submit, portway_batch_result): results
 * in submit order, per-item failures, per-item deadlines inside one batch, cancel of a batch
 * (one completion, items cancelled), whole-or-nothing BUSY, malformed offsets refused, and
 * the stats counting items.
 */
#include "check.h"

#include <stdatomic.h>

/* Responds "<payload>!" with code = payload length, and one meta pair; fails payloads that
 * start with 'x' (code 7). */
static void h_bang(void *ctx, portway_call *call) {
    (void)ctx;
    const uint8_t *d = NULL;
    size_t n = 0;
    if (portway_call_payload(call, &d, &n) != PORTWAY_OK) return;
    if (n > 0 && d[0] == 'x') {
        portway_call_set_code(call, 7);
        portway_call_fail(call, "refused x");
        return;
    }
    char out[256];
    if (n > sizeof out - 1) n = sizeof out - 1;
    memcpy(out, d, n);
    out[n] = '!';
    char len[32];
    snprintf(len, sizeof len, "%zu", n);
    portway_call_set_code(call, (uint32_t)n);
    portway_call_add_meta(call, "len", len);
    portway_call_respond(call, (const uint8_t *)out, n + 1);
}

static portway_engine *new_engine(uint32_t max_in_flight) {
    portway_config *cfg = portway_config_new();
    CHECK(cfg != NULL);
    CHECK_OK(portway_config_set_max_in_flight(cfg, max_in_flight));
    portway_engine *eng = NULL;
    CHECK_OK(portway_engine_new(cfg, &eng));
    portway_config_free(cfg);
    return eng;
}

/* Packs NULL-terminated strings into one buffer and n+1 offsets starting at `base`. */
static size_t pack(const char *const *items, uint8_t *buf, uint64_t *offsets, uint64_t base) {
    size_t n = 0, at = (size_t)base;
    offsets[0] = base;
    for (; items[n] != NULL; n++) {
        size_t len = strlen(items[n]);
        memcpy(buf + at, items[n], len);
        at += len;
        offsets[n + 1] = at;
    }
    return n;
}

static int item_is(const portway_batch_view *v, size_t i, const char *want) {
    size_t len = (size_t)(v->offsets[i + 1] - v->offsets[i]);
    return len == strlen(want) && memcmp(v->data + v->offsets[i], want, len) == 0;
}

static void test_order_and_failures(void) {
    portway_engine *eng = new_engine(64);
    uint32_t bang = 0;
    CHECK_OK(portway_register_handler(eng, "bang", h_bang, NULL, &bang));
    const char *items[] = {"a", "", "xbad", "hello", "xx", "z", NULL};
    uint8_t buf[64];
    uint64_t off[8];
    /* offsets[0] may be nonzero: payload i is data[offsets[i] .. offsets[i+1]]. */
    size_t n = pack(items, buf, off, 3);
    uint64_t id = 0;
    CHECK_OK(portway_batch_submit(eng, bang, buf, off, n, 0, 99, &id));
    CHECK(id != 0);
    portway_completion c = poll_one(eng, 10000);
    CHECK(c.id == id && c.user_data == 99 && c.status == PORTWAY_OK);
    CHECK(c.code == 2); /* two items failed */
    /* Nothing else comes: one completion for the batch. */
    size_t more = 9;
    portway_completion extra;
    CHECK_OK(portway_poll(eng, &extra, 1, 50, &more));
    CHECK(more == 0);

    portway_batch_view v;
    memset(&v, 0, sizeof v);
    CHECK_OK(portway_batch_result(eng, &c, &v));
    CHECK(v.n == n && v.offsets[0] == 0 && v.meta_offsets[0] == 0);
    CHECK(v.statuses[0] == PORTWAY_OK && item_is(&v, 0, "a!") && v.codes[0] == 1);
    CHECK(v.statuses[1] == PORTWAY_OK && item_is(&v, 1, "!") && v.codes[1] == 0);
    CHECK(v.statuses[2] == PORTWAY_HANDLER_ERROR && item_is(&v, 2, "refused x") && v.codes[2] == 7);
    CHECK(v.statuses[3] == PORTWAY_OK && item_is(&v, 3, "hello!") && v.codes[3] == 5);
    CHECK(v.statuses[4] == PORTWAY_HANDLER_ERROR && v.codes[4] == 7);
    CHECK(v.statuses[5] == PORTWAY_OK && item_is(&v, 5, "z!"));
    /* Meta: one pair per successful item, none for the failed ones. */
    CHECK(v.meta_offsets[1] == 1 && v.meta_offsets[2] == 2 && v.meta_offsets[3] == 2);
    CHECK(v.meta_offsets[n] == 4 && v.meta != NULL);
    CHECK(strcmp(v.meta[v.meta_offsets[3]].key, "len") == 0);
    CHECK(strcmp(v.meta[v.meta_offsets[3]].value, "5") == 0);

    /* Stats count items: 6 accepted, 6 slots held until the release. */
    portway_stats_record st;
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.accepted == n && st.in_flight == n && st.unreleased == n && st.ready == 0);
    CHECK(st.completed[PORTWAY_OK] == 4 && st.completed[PORTWAY_HANDLER_ERROR] == 2);

    /* A plain completion is not a batch. */
    uint32_t echo = lookup(eng, "echo");
    portway_request req = {echo, 0, 1, (const uint8_t *)"p", 1};
    uint64_t rid = 0;
    CHECK_OK(portway_submit(eng, &req, &rid));
    portway_completion plain = poll_one(eng, 10000);
    CHECK_ST(portway_batch_result(eng, &plain, &v), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_batch_result(eng, NULL, &v), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_batch_result(eng, &c, NULL), PORTWAY_INVALID_ARGUMENT);
    CHECK_OK(portway_release(eng, &plain, 1));

    CHECK_OK(portway_release(eng, &c, 1));
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.in_flight == 0 && st.unreleased == 0);
    /* Released: no longer readable. */
    CHECK_ST(portway_batch_result(eng, &c, &v), PORTWAY_INVALID_ARGUMENT);

    /* echo completes inline: the batch is ready when the submit returns, in order. */
    const char *words[] = {"one", "two", "", "four", NULL};
    n = pack(words, buf, off, 0);
    CHECK_OK(portway_batch_submit(eng, echo, buf, off, n, 0, 5, &id));
    size_t got = 0;
    CHECK_OK(portway_poll(eng, &c, 1, 0, &got));
    CHECK(got == 1 && c.id == id && c.code == 0);
    CHECK_OK(portway_batch_result(eng, &c, &v));
    CHECK(v.n == 4 && item_is(&v, 0, "one") && item_is(&v, 1, "two") && item_is(&v, 2, ""));
    CHECK(item_is(&v, 3, "four") && v.meta == NULL && v.meta_offsets[4] == 0);
    CHECK_OK(portway_release(eng, &c, 1));

    /* Every payload empty: data may be NULL. */
    uint64_t zeros[4] = {0, 0, 0, 0};
    CHECK_OK(portway_batch_submit(eng, echo, NULL, zeros, 3, 0, 0, &id));
    c = poll_one(eng, 10000);
    CHECK_OK(portway_batch_result(eng, &c, &v));
    CHECK(v.n == 3 && v.offsets[3] == 0 && v.data != NULL && v.data[0] == '\0');
    CHECK_OK(portway_release(eng, &c, 1));
    portway_engine_free(eng);
}

/* Items with different sleeps under one deadline: the short ones succeed, the long ones time
 * out, each on its own; the batch completes once the last deadline passed. The deadline is
 * patience_ms(500): a starved valgrind run took more than 200 ms for a 1 ms sleep. */
static void test_item_deadlines(void) {
    portway_engine *eng = new_engine(64);
    uint32_t sleep = lookup(eng, "sleep");
    const char *items[] = {"1", "60000", "2", "60000", NULL};
    uint8_t buf[64];
    uint64_t off[8];
    size_t n = pack(items, buf, off, 0);
    uint64_t id = 0;
    CHECK_OK(portway_batch_submit(eng, sleep, buf, off, n, (uint32_t)patience_ms(500), 0, &id));
    portway_completion c = poll_one(eng, 10000);
    CHECK(c.id == id && c.status == PORTWAY_OK && c.code == 2);
    portway_batch_view v;
    CHECK_OK(portway_batch_result(eng, &c, &v));
    CHECK(v.statuses[0] == PORTWAY_OK && v.statuses[2] == PORTWAY_OK);
    CHECK(v.statuses[1] == PORTWAY_TIMEOUT && v.statuses[3] == PORTWAY_TIMEOUT);
    CHECK(memmem(v.data + v.offsets[1], v.offsets[2] - v.offsets[1], "deadline", 8) != NULL);
    CHECK_OK(portway_release(eng, &c, 1));
    portway_engine_free(eng);
}

/* Cancel of a batch: one completion, every unfinished item CANCELLED; a second cancel and a
 * cancel after completion are NOT_FOUND. */
static void test_cancel(void) {
    portway_engine *eng = new_engine(64);
    uint32_t sleep = lookup(eng, "sleep");
    const char *items[] = {"60000", "60000", "60000", NULL};
    uint8_t buf[64];
    uint64_t off[8];
    size_t n = pack(items, buf, off, 0);
    uint64_t id = 0;
    CHECK_OK(portway_batch_submit(eng, sleep, buf, off, n, 0, 1, &id));
    /* The dump lists the batch and its items. */
    char json[4096];
    size_t needed = 0;
    CHECK_OK(portway_inflight_json(eng, 100, json, sizeof json, &needed));
    CHECK(strstr(json, "\"total\":4") != NULL && strstr(json, "\"items\":3") != NULL);
    CHECK(strstr(json, "\"state\":\"batch\"") != NULL);
    CHECK_OK(portway_cancel(eng, id));
    CHECK_ST(portway_cancel(eng, id), PORTWAY_NOT_FOUND);
    portway_completion c = poll_one(eng, 10000);
    CHECK(c.id == id && c.code == 3);
    portway_batch_view v;
    CHECK_OK(portway_batch_result(eng, &c, &v));
    for (size_t i = 0; i < n; i++) CHECK(v.statuses[i] == PORTWAY_CANCELLED);
    size_t more = 9;
    portway_completion extra;
    CHECK_OK(portway_poll(eng, &extra, 1, 50, &more));
    CHECK(more == 0);
    CHECK_ST(portway_cancel(eng, id), PORTWAY_NOT_FOUND);
    CHECK_OK(portway_release(eng, &c, 1));

    /* Shutdown with CANCEL_NOW reaches items of a batch; the engine then closes. */
    CHECK_OK(portway_batch_submit(eng, sleep, buf, off, n, 0, 2, &id));
    CHECK_OK(portway_engine_shutdown(eng, PORTWAY_CANCEL_NOW, 0));
    c = poll_one(eng, 10000);
    CHECK(c.id == id && c.code == 3);
    CHECK_OK(portway_release(eng, &c, 1));
    size_t got = 0;
    CHECK_ST(portway_poll(eng, &c, 1, 1000, &got), PORTWAY_CLOSED);
    portway_engine_free(eng);

    /* Freeing the engine with a batch in flight (and one unreleased) frees everything. */
    eng = new_engine(64);
    sleep = lookup(eng, "sleep");
    CHECK_OK(portway_batch_submit(eng, sleep, buf, off, n, 0, 3, &id));
    uint32_t echo = lookup(eng, "echo");
    CHECK_OK(portway_batch_submit(eng, echo, buf, off, n, 0, 4, &id));
    portway_engine_free(eng);
}

/* Whole or nothing: BUSY with fewer free slots than items, above max_in_flight refused. */
static void test_busy_and_bad_arguments(void) {
    portway_engine *eng = new_engine(4);
    uint32_t sleep = lookup(eng, "sleep");
    const char *items[] = {"60000", "60000", "60000", NULL};
    uint8_t buf[64];
    uint64_t off[8];
    size_t n = pack(items, buf, off, 0);
    uint64_t id = 0, id2 = 0;
    CHECK_OK(portway_batch_submit(eng, sleep, buf, off, n, 0, 0, &id));
    CHECK_ST(portway_batch_submit(eng, sleep, buf, off, 2, 0, 0, &id2), PORTWAY_BUSY);
    portway_stats_record st;
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.in_flight == 3 && st.rejected_busy == 2);
    CHECK_OK(portway_batch_submit(eng, sleep, buf, off, 1, 0, 0, &id2)); /* the last slot */

    uint64_t big[6] = {0, 1, 2, 3, 4, 5};
    CHECK_ST(portway_batch_submit(eng, sleep, buf, big, 5, 0, 0, &id2), PORTWAY_INVALID_ARGUMENT);
    CHECK(strstr(portway_last_error(), "max_in_flight") != NULL);
    CHECK_ST(portway_batch_submit(eng, sleep, buf, off, 0, 0, 0, &id2), PORTWAY_INVALID_ARGUMENT);
    uint64_t down[3] = {0, 5, 2};
    CHECK_ST(portway_batch_submit(eng, sleep, buf, down, 2, 0, 0, &id2), PORTWAY_INVALID_ARGUMENT);
    CHECK(strstr(portway_last_error(), "decrease") != NULL);
    CHECK_ST(portway_batch_submit(eng, sleep, NULL, off, 1, 0, 0, &id2), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_batch_submit(eng, sleep, buf, NULL, 1, 0, 0, &id2), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_batch_submit(eng, sleep, buf, off, 1, 0, 0, NULL), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_batch_submit(NULL, sleep, buf, off, 1, 0, 0, &id2), PORTWAY_INVALID_ARGUMENT);
    uint64_t huge[2] = {0, UINT64_MAX};
    CHECK_ST(portway_batch_submit(eng, sleep, buf, huge, 1, 0, 0, &id2), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_batch_submit(eng, sleep, buf, off, SIZE_MAX, 0, 0, &id2), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_batch_submit(eng, 9999, buf, off, 1, 0, 0, &id2), PORTWAY_UNKNOWN_HANDLER);
    CHECK_OK(portway_cancel_all(eng));
    portway_completion cs[2];
    size_t got = 0, total = 0;
    while (total < 2) {
        CHECK_OK(portway_poll(eng, cs, 2, 10000, &got));
        CHECK_OK(portway_release(eng, cs, got));
        total += got;
    }
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.in_flight == 0);
    portway_engine_free(eng);

    /* A payload the handler refuses refuses the batch, naming the item. */
    eng = new_engine(16);
    sleep = lookup(eng, "sleep");
    const char *bad[] = {"1", "soon", NULL};
    n = pack(bad, buf, off, 0);
    CHECK_ST(portway_batch_submit(eng, sleep, buf, off, n, 0, 0, &id), PORTWAY_INVALID_ARGUMENT);
    CHECK(strstr(portway_last_error(), "item 1") != NULL);
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.accepted == 0 && st.in_flight == 0);
    portway_engine_free(eng);
}

/* A host that splits a list into two batches, the second submitted after a drain began: the
 * first drains to completion (its items run, none cancelled), the second is refused whole with
 * PORTWAY_SHUTDOWN, counted once per item, and posts nothing; then the engine closes. */
static void test_second_part_after_shutdown(void) {
    portway_engine *eng = new_engine(16);
    uint32_t sleep = lookup(eng, "sleep");
    const char *items[] = {"30", "30", "30", NULL};
    uint8_t buf[64];
    uint64_t off[8];
    size_t n = pack(items, buf, off, 0);
    uint64_t id = 0, id2 = 0;
    CHECK_OK(portway_batch_submit(eng, sleep, buf, off, n, 0, 1, &id));
    CHECK_OK(portway_engine_shutdown(eng, PORTWAY_DRAIN, 0));
    CHECK_ST(portway_batch_submit(eng, sleep, buf, off, n, 0, 2, &id2), PORTWAY_SHUTDOWN);
    CHECK(id2 == 0);
    portway_stats_record st;
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.submitted == 2 * n && st.accepted == n && st.rejected_shutdown == n);
    CHECK(st.in_flight == n);
    portway_completion c = poll_one(eng, 10000);
    CHECK(c.id == id && c.user_data == 1 && c.code == 0);
    portway_batch_view v;
    CHECK_OK(portway_batch_result(eng, &c, &v));
    for (size_t i = 0; i < n; i++) CHECK(v.statuses[i] == PORTWAY_OK);
    CHECK_OK(portway_release(eng, &c, 1));
    size_t got = 0;
    CHECK_ST(portway_poll(eng, &c, 1, 1000, &got), PORTWAY_CLOSED);
    portway_engine_free(eng);
}

int main(void) {
    test_order_and_failures();
    test_item_deadlines();
    test_cancel();
    test_busy_and_bad_arguments();
    test_second_part_after_shutdown();
    printf("test_batch: ok\n");
    return 0;
}
