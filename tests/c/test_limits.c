/*
 * test_limits.c: every count and length the C ABI takes is checked against its documented
 * limit before anything is read or written through it. Each function that takes one gets the
 * same table of absurd values (SIZE_MAX, SIZE_MAX/2, 2^60, PTRDIFF_MAX + 1) with real, small
 * buffers behind them, and must refuse each with its status and a fresh last-error message,
 * writing no output. Run under ASan/UBSan and valgrind: a count that reached a slice would
 * read or write past the buffers here.
 */
#include "check.h"

#include <stdint.h>

static const size_t HUGE_COUNTS[] = {
    SIZE_MAX,
    SIZE_MAX / 2,
    (size_t)1 << 60,
    (size_t)PTRDIFF_MAX + 1,
};
#define N_HUGE (sizeof HUGE_COUNTS / sizeof HUGE_COUNTS[0])

/* The error a refusal must leave: set by this call (it names the limit), never empty. */
static void check_message(const char *call, size_t value, const char *needle) {
    const char *e = portway_last_error();
    if (e == NULL || e[0] == '\0' || strstr(e, needle) == NULL) {
        fprintf(stderr, "%s with %zu: last_error %s lacks \"%s\"\n", call, value,
                e ? e : "(null)", needle);
        exit(1);
    }
}

/* Fails the previous call's message, so a refusal that forgets to set one is caught. */
static void reset_message(portway_engine *eng) {
    CHECK_ST(portway_handler_lookup(eng, "no such handler: reset", &(uint32_t){0}),
             PORTWAY_NOT_FOUND);
}

static uint8_t payload[16] = "sixteen bytes...";

static void submit_lengths(portway_engine *eng, uint32_t echo) {
    for (size_t k = 0; k < N_HUGE; k++) {
        portway_request r = make_req(echo, NULL, 0, 7);
        r.payload = payload;
        r.payload_len = HUGE_COUNTS[k];
        uint64_t id = 12345;
        reset_message(eng);
        CHECK_ST(portway_submit(eng, &r, &id), PORTWAY_PAYLOAD_TOO_LARGE);
        check_message("portway_submit", HUGE_COUNTS[k], "max_payload");
        CHECK(id == 12345);
        reset_message(eng);
        CHECK_ST(portway_submit_wait(eng, &r, 0, &id), PORTWAY_PAYLOAD_TOO_LARGE);
        check_message("portway_submit_wait", HUGE_COUNTS[k], "max_payload");
        CHECK(id == 12345);
    }
}

static void batch_counts(portway_engine *eng, uint32_t echo) {
    portway_request reqs[3];
    for (int i = 0; i < 3; i++) reqs[i] = make_req(echo, "x", 0, (uint64_t)i);
    uint64_t ids[3] = {0, 0, 0};
    for (size_t k = 0; k < N_HUGE; k++) {
        size_t accepted = 999;
        reset_message(eng);
        CHECK_ST(portway_submit_batch(eng, reqs, HUGE_COUNTS[k], ids, &accepted),
                 PORTWAY_INVALID_ARGUMENT);
        check_message("portway_submit_batch n", HUGE_COUNTS[k], "limit");
        CHECK(accepted == 999); /* arguments invalid: nothing written, nothing accepted */
        CHECK(ids[0] == 0);
        reset_message(eng);
        CHECK_ST(portway_submit_batch(eng, reqs, HUGE_COUNTS[k], NULL, &accepted),
                 PORTWAY_INVALID_ARGUMENT);
        check_message("portway_submit_batch n (no ids)", HUGE_COUNTS[k], "limit");
    }
    /* A huge payload_len inside the batch stops it there, before that payload is read. */
    for (size_t k = 0; k < N_HUGE; k++) {
        reqs[1].payload = payload;
        reqs[1].payload_len = HUGE_COUNTS[k];
        size_t accepted = 999;
        reset_message(eng);
        CHECK_ST(portway_submit_batch(eng, reqs, 3, ids, &accepted), PORTWAY_PAYLOAD_TOO_LARGE);
        check_message("portway_submit_batch payload_len", HUGE_COUNTS[k], "max_payload");
        CHECK(accepted == 1);
        portway_completion c = wait_for(eng, ids[0], 5000);
        CHECK(c.status == PORTWAY_OK && c.len == 1);
        CHECK_OK(portway_release(eng, &c, 1));
    }
}

static void release_counts(portway_engine *eng) {
    portway_completion c[2];
    memset(c, 0, sizeof c);
    for (size_t k = 0; k < N_HUGE; k++) {
        reset_message(eng);
        CHECK_ST(portway_release(eng, c, HUGE_COUNTS[k]), PORTWAY_INVALID_ARGUMENT);
        check_message("portway_release", HUGE_COUNTS[k], "limit");
    }
}

static void poll_caps(portway_engine *eng) {
    portway_completion c[2];
    for (size_t k = 0; k < N_HUGE; k++) {
        size_t n = 999;
        reset_message(eng);
        CHECK_ST(portway_poll(eng, c, HUGE_COUNTS[k], 0, &n), PORTWAY_INVALID_ARGUMENT);
        check_message("portway_poll", HUGE_COUNTS[k], "limit");
        CHECK(n == 999);
        reset_message(eng);
        CHECK_ST(portway_poll_min(eng, c, HUGE_COUNTS[k], 1, 0, &n), PORTWAY_INVALID_ARGUMENT);
        check_message("portway_poll_min", HUGE_COUNTS[k], "limit");
        CHECK(n == 999);
    }
}

static void pipeline_counts(portway_engine *eng, uint32_t echo) {
    /* A real 70-entry array: any n above the 64-stage limit must be refused unread. */
    uint32_t stages[70];
    for (int i = 0; i < 70; i++) stages[i] = echo;
    const size_t counts[] = {65, 70, 100000, SIZE_MAX, SIZE_MAX / 2, (size_t)1 << 60,
                             (size_t)PTRDIFF_MAX + 1};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        uint32_t id = 4242;
        reset_message(eng);
        CHECK_ST(portway_pipeline_new(eng, "too-long", stages, counts[k], &id),
                 PORTWAY_INVALID_ARGUMENT);
        check_message("portway_pipeline_new", counts[k], "limit is 64");
        CHECK(id == 4242);
    }
    uint32_t id = 0;
    CHECK_OK(portway_pipeline_new(eng, "sixty-four", stages, 64, &id));
}

static void text_caps(portway_engine *eng) {
    char buf[8];
    for (size_t k = 0; k < N_HUGE; k++) {
        size_t needed = 999;
        reset_message(eng);
        CHECK_ST(portway_metrics_text(eng, buf, HUGE_COUNTS[k], &needed),
                 PORTWAY_INVALID_ARGUMENT);
        check_message("portway_metrics_text", HUGE_COUNTS[k], "limit");
        reset_message(eng);
        CHECK_ST(portway_inflight_json(eng, 10, buf, HUGE_COUNTS[k], &needed),
                 PORTWAY_INVALID_ARGUMENT);
        check_message("portway_inflight_json", HUGE_COUNTS[k], "limit");
    }
}

/* portway_call_respond from inside a native handler: each huge len is refused, then the
 * handler responds normally with how many refusals carried the right status and message. */
static void h_huge_respond(void *ctx, portway_call *call) {
    (void)ctx;
    uint8_t ok = 0;
    for (size_t k = 0; k < N_HUGE; k++) {
        portway_status st = portway_call_respond(call, payload, HUGE_COUNTS[k]);
        const char *e = portway_last_error();
        if (st == PORTWAY_INVALID_ARGUMENT && strstr(e, "limit") != NULL) ok++;
    }
    portway_call_respond(call, &ok, 1);
}

static void respond_lengths(portway_engine *eng) {
    uint32_t h = 0;
    CHECK_OK(portway_register_handler(eng, "huge-respond", h_huge_respond, NULL, &h));
    portway_request r = make_req(h, "x", 0, 0);
    uint64_t id = 0;
    CHECK_OK(portway_submit(eng, &r, &id));
    portway_completion c = wait_for(eng, id, 10000);
    CHECK(c.status == PORTWAY_OK);
    CHECK(c.len == 1 && c.data[0] == N_HUGE);
    CHECK_OK(portway_release(eng, &c, 1));
}

int main(void) {
    portway_engine *eng = new_engine_cfg(NULL);
    uint32_t echo = lookup(eng, "echo");
    submit_lengths(eng, echo);
    batch_counts(eng, echo);
    release_counts(eng);
    poll_caps(eng);
    pipeline_counts(eng, echo);
    text_caps(eng);
    respond_lengths(eng);

    /* The refusals changed nothing: the engine still works and nothing is in flight. */
    portway_request r = make_req(echo, "still fine", 0, 1);
    uint64_t id = 0;
    CHECK_OK(portway_submit(eng, &r, &id));
    portway_completion c = wait_for(eng, id, 5000);
    CHECK(c.status == PORTWAY_OK && c.len == 10);
    CHECK_OK(portway_release(eng, &c, 1));
    portway_stats_record st;
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.in_flight == 0);
    /* Each refused payload counts as one invalid rejection (2 per value from submit and
     * submit_wait, 1 per value from the batch: the refused request; the one after it was not
     * looked at and is not counted). */
    CHECK(st.rejected_invalid == 3 * N_HUGE);
    portway_engine_free(eng);
    printf("test_limits: ok\n");
    return 0;
}
