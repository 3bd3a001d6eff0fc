/*
 * test_basics.c: version, status names, config validation, the echo round trip, handler
 * lookup, argument validation (every NULL pointer case), shutdown and close.
 */
#include "check.h"

#include <limits.h>

static const char *const STATUS_NAMES[] = {
    "PORTWAY_OK",           "PORTWAY_INVALID_ARGUMENT", "PORTWAY_BUSY",
    "PORTWAY_SHUTDOWN",     "PORTWAY_CLOSED",           "PORTWAY_NOT_FOUND",
    "PORTWAY_UNKNOWN_HANDLER", "PORTWAY_TIMEOUT",       "PORTWAY_CANCELLED",
    "PORTWAY_HANDLER_ERROR", "PORTWAY_PANIC",           "PORTWAY_FORKED",
    "PORTWAY_PAYLOAD_TOO_LARGE", "PORTWAY_CONNECT_ERROR", "PORTWAY_TLS_ERROR",
    "PORTWAY_PROTOCOL_ERROR", "PORTWAY_BODY_TOO_LARGE", "PORTWAY_INTERNAL", "PORTWAY_BUFFER_TOO_SMALL",
    "PORTWAY_UNAVAILABLE",
};
#define N_STATUS (sizeof STATUS_NAMES / sizeof STATUS_NAMES[0])

/* The previous call failed: last_error must say something. */
#define CHECK_HAS_ERROR() CHECK(portway_last_error() != NULL && portway_last_error()[0] != '\0')

static void test_version(void) {
    const char *v = portway_version();
    CHECK(v != NULL);
    CHECK(strlen(v) >= 5);
    CHECK(strchr(v, '.') != NULL);
    CHECK(portway_abi_version() == PORTWAY_ABI_VERSION);
    CHECK(portway_last_error() != NULL);
}

static void test_status_str(void) {
    CHECK(PORTWAY_OK == 0);
    CHECK(PORTWAY_UNAVAILABLE == N_STATUS - 1);
    for (uint32_t s = 0; s < N_STATUS; s++) {
        const char *name = portway_status_str(s);
        CHECK(name != NULL);
        if (strcmp(name, STATUS_NAMES[s]) != 0) {
            fprintf(stderr, "status %u: got %s, want %s\n", s, name, STATUS_NAMES[s]);
        }
        CHECK(strcmp(name, STATUS_NAMES[s]) == 0);
    }
    CHECK(strcmp(portway_status_str(N_STATUS), "PORTWAY_UNKNOWN_STATUS") == 0);
    CHECK(strcmp(portway_status_str(1000), "PORTWAY_UNKNOWN_STATUS") == 0);
    CHECK(strcmp(portway_status_str(UINT32_MAX), "PORTWAY_UNKNOWN_STATUS") == 0);
    CHECK(PORTWAY_STATUS_SLOTS >= N_STATUS);
}

static void test_config(void) {
    portway_config *cfg = portway_config_new();
    CHECK(cfg != NULL);

    CHECK_OK(portway_config_set_runtime_threads(cfg, 0));
    CHECK_OK(portway_config_set_runtime_threads(cfg, 2));
    CHECK_OK(portway_config_set_runtime_threads(cfg, 1024));
    CHECK_ST(portway_config_set_runtime_threads(cfg, 1025), PORTWAY_INVALID_ARGUMENT);
    CHECK_HAS_ERROR();
    CHECK_OK(portway_config_set_runtime_threads(cfg, 2));

    CHECK_OK(portway_config_set_pool_workers(cfg, 0));
    CHECK_OK(portway_config_set_pool_workers(cfg, 1024));
    CHECK_ST(portway_config_set_pool_workers(cfg, 1025), PORTWAY_INVALID_ARGUMENT);
    CHECK_HAS_ERROR();
    CHECK_ST(portway_config_set_pool_workers(cfg, UINT32_MAX), PORTWAY_INVALID_ARGUMENT);
    CHECK_OK(portway_config_set_pool_workers(cfg, 2));

    CHECK_ST(portway_config_set_max_in_flight(cfg, 0), PORTWAY_INVALID_ARGUMENT);
    CHECK_HAS_ERROR();
    CHECK_OK(portway_config_set_max_in_flight(cfg, 1));
    CHECK_OK(portway_config_set_max_in_flight(cfg, 128));

    CHECK_OK(portway_config_set_default_timeout_ms(cfg, 0));
    CHECK_OK(portway_config_set_default_timeout_ms(cfg, 5000));

    CHECK_ST(portway_config_set_max_payload(cfg, 0), PORTWAY_INVALID_ARGUMENT);
    CHECK_HAS_ERROR();
    CHECK_OK(portway_config_set_max_payload(cfg, 16));

    CHECK_OK(portway_config_set_free_grace_ms(cfg, 100));

    /* NULL config: every setter refuses. */
    CHECK_ST(portway_config_set_runtime_threads(NULL, 1), PORTWAY_INVALID_ARGUMENT);
    CHECK_HAS_ERROR();
    CHECK_ST(portway_config_set_pool_workers(NULL, 1), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_config_set_max_in_flight(NULL, 1), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_config_set_default_timeout_ms(NULL, 1), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_config_set_max_payload(NULL, 1), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_config_set_free_grace_ms(NULL, 1), PORTWAY_INVALID_ARGUMENT);

    /* The engine copies the config: freeing it right after is fine. */
    portway_engine *eng = NULL;
    CHECK_OK(portway_engine_new(cfg, &eng));
    portway_config_free(cfg);
    CHECK(eng != NULL);

    /* max_payload = 16 applies. */
    uint32_t echo = lookup(eng, "echo");
    char big[17];
    memset(big, 'x', sizeof big);
    portway_request r = {echo, 0, 7, (const uint8_t *)big, 16};
    uint64_t id = 0;
    CHECK_OK(portway_submit(eng, &r, &id));
    portway_completion c = wait_for(eng, id, 5000);
    CHECK(c.status == PORTWAY_OK && c.len == 16);
    CHECK_OK(portway_release(eng, &c, 1));

    r.payload_len = 17;
    id = 0;
    CHECK_ST(portway_submit(eng, &r, &id), PORTWAY_PAYLOAD_TOO_LARGE);
    CHECK_HAS_ERROR();
    CHECK(id == 0); /* outputs are written only on success */
    size_t n = 99;
    CHECK_OK(portway_poll(eng, &c, 1, 0, &n));
    CHECK(n == 0); /* a rejected submit posts no completion */

    struct portway_stats st;
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.pool_workers == 2);
    CHECK(st.accepted == 1);
    CHECK(st.submitted == 2);
    CHECK(st.in_flight == 0);
    portway_engine_free(eng);
}

static void test_echo_roundtrip(void) {
    portway_engine *eng = NULL;
    CHECK_OK(portway_engine_new(NULL, &eng));
    CHECK(eng != NULL);

    uint32_t echo = 0, sleep_id = 0, http = 0;
    CHECK_OK(portway_handler_lookup(eng, "echo", &echo));
    CHECK_OK(portway_handler_lookup(eng, "sleep", &sleep_id));
    CHECK(echo != sleep_id);
    /* "http" is specified by the contract; it may still be under construction. */
    portway_status hs = portway_handler_lookup(eng, "http", &http);
    CHECK(hs == PORTWAY_OK || hs == PORTWAY_NOT_FOUND);
    uint32_t missing = 12345;
    CHECK_ST(portway_handler_lookup(eng, "no-such-handler", &missing), PORTWAY_NOT_FOUND);
    CHECK_HAS_ERROR();
    CHECK(missing == 12345);

    const char msg[] = "hello, portway";
    /* Submit from a buffer we then overwrite: the payload must have been copied. */
    char buf[sizeof msg];
    memcpy(buf, msg, sizeof msg);
    portway_request r = make_req(echo, buf, 0, 0xfeedfacecafebeefULL);
    uint64_t id = 0;
    CHECK_OK(portway_submit(eng, &r, &id));
    CHECK(id != 0);
    memset(buf, '#', sizeof buf);

    portway_completion c = wait_for(eng, id, 5000);
    CHECK(c.status == PORTWAY_OK);
    CHECK(c.user_data == 0xfeedfacecafebeefULL);
    CHECK(c.len == strlen(msg));
    CHECK(c.data != NULL);
    CHECK(memcmp(c.data, msg, c.len) == 0);
    CHECK(c.data[c.len] == '\0');
    CHECK(c.meta_len == 0);
    CHECK(c.meta == NULL);
    CHECK_OK(portway_release(eng, &c, 1));
    /* Releasing again is ignored. */
    CHECK_OK(portway_release(eng, &c, 1));

    /* Empty payload, NULL pointer with length 0: data is non-NULL and NUL-terminated. */
    portway_request e = {echo, 0, 1, NULL, 0};
    uint64_t id2 = 0;
    CHECK_OK(portway_submit(eng, &e, &id2));
    CHECK(id2 != 0 && id2 != id);
    c = wait_for(eng, id2, 5000);
    CHECK(c.status == PORTWAY_OK && c.len == 0 && c.data != NULL && c.data[0] == '\0');
    CHECK(c.user_data == 1);
    CHECK_OK(portway_release(eng, &c, 1));

    /* Binary payload with embedded NULs. */
    uint8_t bin[256];
    for (int i = 0; i < 256; i++) bin[i] = (uint8_t)i;
    portway_request b = {echo, 0, 2, bin, sizeof bin};
    uint64_t id3 = 0;
    CHECK_OK(portway_submit(eng, &b, &id3));
    c = wait_for(eng, id3, 5000);
    CHECK(c.status == PORTWAY_OK && c.len == 256 && memcmp(c.data, bin, 256) == 0);
    CHECK(c.data[256] == '\0');
    CHECK_OK(portway_release(eng, &c, 1));

    /* Ids are never reused. */
    uint64_t prev = id3;
    for (int i = 0; i < 100; i++) {
        uint64_t nid = 0;
        CHECK_OK(portway_submit(eng, &r, &nid));
        CHECK(nid != 0 && nid != prev && nid != id && nid != id2);
        c = wait_for(eng, nid, 5000);
        CHECK_OK(portway_release(eng, &c, 1));
        prev = nid;
    }

    /* Unknown handler id. */
    portway_request u = make_req(0xdeadbeef, "x", 0, 0);
    uint64_t uid = 0;
    CHECK_ST(portway_submit(eng, &u, &uid), PORTWAY_UNKNOWN_HANDLER);
    CHECK_HAS_ERROR();
    CHECK(uid == 0);
    size_t nb = 0;
    CHECK_ST(portway_submit_batch(eng, &u, 1, NULL, &nb), PORTWAY_UNKNOWN_HANDLER);
    CHECK(nb == 0);
    CHECK_ST(portway_submit_wait(eng, &u, 10, &uid), PORTWAY_UNKNOWN_HANDLER);
    CHECK_ST(portway_handler_set_concurrency(eng, 0xdeadbeef, 1), PORTWAY_UNKNOWN_HANDLER);

    /* Payload over the default 64 MiB max_payload. The length is checked before reading. */
    size_t too_big = (size_t)64 * 1024 * 1024 + 1;
    uint8_t *huge = malloc(too_big);
    CHECK(huge != NULL);
    memset(huge, 0, 16);
    portway_request h = {echo, 0, 0, huge, too_big};
    CHECK_ST(portway_submit(eng, &h, &uid), PORTWAY_PAYLOAD_TOO_LARGE);
    CHECK_HAS_ERROR();
    free(huge);

    size_t n = 99;
    CHECK_OK(portway_poll(eng, &c, 1, 0, &n));
    CHECK(n == 0);

    struct portway_stats st;
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.accepted == 103);
    CHECK(st.completed[PORTWAY_OK] == 103);
    CHECK(st.in_flight == 0 && st.ready == 0 && st.unreleased == 0);
    CHECK(st.rejected_invalid >= 1 || st.submitted >= 106);
    portway_engine_free(eng);
}

static void test_null_arguments(void) {
    portway_engine *eng = NULL;
    CHECK_OK(portway_engine_new(NULL, &eng));
    uint32_t echo = lookup(eng, "echo");
    portway_request r = make_req(echo, "abc", 0, 0);
    portway_completion c;
    memset(&c, 0, sizeof c);
    uint64_t id = 0;
    uint32_t hid = 0;
    size_t n = 0;
    struct portway_stats st;

    CHECK_ST(portway_engine_new(NULL, NULL), PORTWAY_INVALID_ARGUMENT);
    CHECK_HAS_ERROR();

    /* NULL engine. */
    CHECK_ST(portway_submit(NULL, &r, &id), PORTWAY_INVALID_ARGUMENT);
    CHECK_HAS_ERROR();
    CHECK_ST(portway_submit_batch(NULL, &r, 1, NULL, &n), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_submit_wait(NULL, &r, 0, &id), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_poll(NULL, &c, 1, 0, &n), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_release(NULL, &c, 1), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_cancel(NULL, 1), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_cancel_all(NULL), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_stats(NULL, &st), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_handler_lookup(NULL, "echo", &hid), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_handler_set_concurrency(NULL, echo, 1), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_pipeline_new(NULL, "p", &echo, 1, &hid), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_set_notify(NULL, NULL, NULL), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_wake(NULL), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_engine_shutdown(NULL, PORTWAY_DRAIN, 0), PORTWAY_INVALID_ARGUMENT);
    CHECK(portway_notify_fd(NULL) == -1);
    CHECK_HAS_ERROR();

    /* NULL request / out pointers. */
    CHECK_ST(portway_submit(eng, NULL, &id), PORTWAY_INVALID_ARGUMENT);
    CHECK_HAS_ERROR();
    CHECK_ST(portway_submit(eng, &r, NULL), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_submit_wait(eng, NULL, 0, &id), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_submit_wait(eng, &r, 0, NULL), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_submit_wait(eng, &r, -2, &id), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_submit_batch(eng, NULL, 1, NULL, &n), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_submit_batch(eng, &r, 1, NULL, NULL), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_poll(eng, NULL, 1, 0, &n), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_poll(eng, &c, 1, 0, NULL), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_poll(eng, &c, 0, 0, &n), PORTWAY_INVALID_ARGUMENT); /* zero capacity */
    CHECK_HAS_ERROR();
    CHECK_ST(portway_poll(eng, &c, 1, -2, &n), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_release(eng, NULL, 1), PORTWAY_INVALID_ARGUMENT);
    CHECK_OK(portway_release(eng, NULL, 0));
    CHECK_ST(portway_stats(eng, NULL), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_handler_lookup(eng, NULL, &hid), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_handler_lookup(eng, "echo", NULL), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_register_handler(eng, NULL, NULL, NULL, &hid), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_register_handler(eng, "h", NULL, NULL, &hid), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_pipeline_new(eng, NULL, &echo, 1, &hid), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_pipeline_new(eng, "p", NULL, 1, &hid), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_pipeline_new(eng, "p", &echo, 1, NULL), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_engine_shutdown(eng, 7, 0), PORTWAY_INVALID_ARGUMENT); /* unknown mode */

    /* NULL payload with a nonzero length. */
    portway_request bad = {echo, 0, 0, NULL, 5};
    CHECK_ST(portway_submit(eng, &bad, &id), PORTWAY_INVALID_ARGUMENT);
    CHECK_HAS_ERROR();
    /* A batch with a malformed entry is refused as a whole (invalid arguments), before any
       of it is accepted: out_accepted is then not written. */
    portway_request mixed[2] = {r, bad};
    CHECK_ST(portway_submit_batch(eng, mixed, 2, NULL, &n), PORTWAY_INVALID_ARGUMENT);
    CHECK_HAS_ERROR();
    CHECK_ST(portway_submit_wait(eng, &bad, 0, &id), PORTWAY_INVALID_ARGUMENT);

    /* Call functions with a NULL call. */
    const uint8_t *d = NULL;
    size_t dl = 0;
    CHECK_ST(portway_call_payload(NULL, &d, &dl), PORTWAY_INVALID_ARGUMENT);
    CHECK(portway_call_user_data(NULL) == 0);
    CHECK(portway_call_is_cancelled(NULL));
    CHECK_ST(portway_call_respond(NULL, NULL, 0), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_call_fail(NULL, "x"), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_call_set_code(NULL, 1), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_call_add_meta(NULL, "k", "v"), PORTWAY_INVALID_ARGUMENT);

    /* Cancel of an unknown id, and of a finished one. */
    CHECK_ST(portway_cancel(eng, 0), PORTWAY_NOT_FOUND);
    CHECK_ST(portway_cancel(eng, 987654321), PORTWAY_NOT_FOUND);
    CHECK_HAS_ERROR();
    CHECK_OK(portway_submit(eng, &r, &id));
    c = wait_for(eng, id, 5000);
    CHECK_ST(portway_cancel(eng, id), PORTWAY_NOT_FOUND); /* completed, not yet released */
    CHECK_OK(portway_release(eng, &c, 1));
    CHECK_ST(portway_cancel(eng, id), PORTWAY_NOT_FOUND); /* completed and released */

    /* Nothing above posted a completion. */
    CHECK_OK(portway_poll(eng, &c, 1, 0, &n));
    CHECK(n == 0);
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.accepted == 1 && st.in_flight == 0);

    /* Every *_free(NULL) is a no-op. */
    portway_config_free(NULL);
    portway_engine_free(NULL);

    /* A successful call after failures: last_error is still a valid string. */
    CHECK(portway_last_error() != NULL);
    portway_engine_free(eng);
}

static void test_duplicate_handler(void) {
    portway_engine *eng = NULL;
    CHECK_OK(portway_engine_new(NULL, &eng));
    uint32_t echo = lookup(eng, "echo");
    uint32_t p1 = 0, p2 = 0;
    /* A pipeline is a handler with a name: the name must be unique, also against built-ins. */
    CHECK_OK(portway_pipeline_new(eng, "twice", (uint32_t[]){echo, echo}, 2, &p1));
    CHECK(p1 != 0 && p1 != echo);
    CHECK_ST(portway_pipeline_new(eng, "twice", &echo, 1, &p2), PORTWAY_INVALID_ARGUMENT);
    CHECK_HAS_ERROR();
    CHECK_ST(portway_pipeline_new(eng, "echo", &echo, 1, &p2), PORTWAY_INVALID_ARGUMENT);
    CHECK_ST(portway_pipeline_new(eng, "", &echo, 1, &p2), PORTWAY_INVALID_ARGUMENT);
    CHECK(lookup(eng, "twice") == p1);
    portway_engine_free(eng);
}

static void test_shutdown_and_close(void) {
    portway_engine *eng = NULL;
    CHECK_OK(portway_engine_new(NULL, &eng));
    uint32_t echo = lookup(eng, "echo");
    uint32_t sleep_id = lookup(eng, "sleep");

    uint64_t ids[3];
    portway_request r = make_req(echo, "bye", 0, 0);
    CHECK_OK(portway_submit(eng, &r, &ids[0]));
    CHECK_OK(portway_submit(eng, &r, &ids[1]));
    portway_request s = make_req(sleep_id, "50", 0, 0);
    CHECK_OK(portway_submit(eng, &s, &ids[2]));

    CHECK_OK(portway_engine_shutdown(eng, PORTWAY_DRAIN, 0));
    uint64_t id = 0;
    CHECK_ST(portway_submit(eng, &r, &id), PORTWAY_SHUTDOWN);
    CHECK_HAS_ERROR();
    size_t acc = 99;
    CHECK_ST(portway_submit_batch(eng, &r, 1, NULL, &acc), PORTWAY_SHUTDOWN);
    CHECK(acc == 0);
    CHECK_ST(portway_submit_wait(eng, &r, 10, &id), PORTWAY_SHUTDOWN);
    /* Shutdown is idempotent. */
    CHECK_OK(portway_engine_shutdown(eng, PORTWAY_DRAIN, 0));

    /* Every accepted request still completes (drain: they finish OK). */
    int got = 0;
    portway_completion c[4];
    double t0 = now_ms();
    while (got < 3) {
        size_t n = 0;
        portway_status st = portway_poll(eng, c, 4, 2000, &n);
        CHECK_OK(st);
        for (size_t i = 0; i < n; i++) {
            CHECK(c[i].status == PORTWAY_OK);
            CHECK(c[i].id == ids[0] || c[i].id == ids[1] || c[i].id == ids[2]);
        }
        CHECK_OK(portway_release(eng, c, n));
        got += (int)n;
        CHECK(now_ms() - t0 < patience_ms(5000));
    }
    size_t n = 12345;
    CHECK_ST(portway_poll(eng, c, 4, 1000, &n), PORTWAY_CLOSED);
    CHECK(n == 12345); /* out_n is not written on CLOSED */
    CHECK_ST(portway_poll(eng, c, 4, -1, &n), PORTWAY_CLOSED); /* never blocks once closed */
    CHECK_ST(portway_poll(eng, c, 4, 0, &n), PORTWAY_CLOSED);

    struct portway_stats st;
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.completed[PORTWAY_OK] == 3);
    CHECK(st.rejected_shutdown >= 3);
    portway_engine_free(eng);
}

int main(void) {
    test_version();
    test_status_str();
    test_config();
    test_echo_roundtrip();
    test_null_arguments();
    test_duplicate_handler();
    test_shutdown_and_close();
    printf("test_basics: ok\n");
    return 0;
}
