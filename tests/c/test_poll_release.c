/*
 * test_poll_release.c: one thread polls while another releases ids it only guesses (issue 12,
 * point 1). A release that races with the poll handing out that completion must never free
 * what the poll is reading to fill its entry (the metadata view, the bytes): ASan and
 * valgrind see any such read. Every completion still arrives once, every one is released once,
 * and every slot comes back.
 *
 * The releasing thread releases only odd ids, so the poller may read the bytes and metadata
 * of the even ones until it releases them itself; an odd one may be freed by the other thread
 * as soon as the poll returns it, so the poller reads only its id and status.
 */
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define BATCH 64

/* Echoes the payload and adds two metadata pairs (so a poll reads heap memory to fill the
 * entry's meta view). */
static void h_meta(void *ctx, portway_call *call) {
    (void)ctx;
    const uint8_t *d = NULL;
    size_t n = 0;
    if (portway_call_payload(call, &d, &n) != PORTWAY_OK) return;
    char ud[32];
    snprintf(ud, sizeof ud, "%llu", (unsigned long long)portway_call_user_data(call));
    portway_call_add_meta(call, "user-data", ud);
    portway_call_add_meta(call, "kind", "meta");
    portway_call_respond(call, d, n);
}

struct shared {
    portway_engine *eng;
    atomic_ullong last_id; /* the newest id submitted */
    atomic_int done;
};

/* Releases the odd ids around the newest one submitted, over and over: some not yet polled
 * (ignored), some being handed out right now, some already returned to the poller. */
static void *releaser(void *arg) {
    struct shared *s = arg;
    portway_completion guess[BATCH];
    memset(guess, 0, sizeof guess);
    while (!atomic_load(&s->done)) {
        unsigned long long last = atomic_load(&s->last_id);
        size_t n = 0;
        for (unsigned long long id = last > 2 * BATCH ? last - 2 * BATCH : 1;
             id <= last && n < BATCH; id++) {
            if (id % 2 == 1) guess[n++].id = id;
        }
        CHECK_OK(portway_release(s->eng, guess, n));
        /* Under valgrind, which runs one thread at a time, a spinning releaser would starve
         * the engine's threads: yield between rounds. */
        sched_yield();
    }
    return NULL;
}

int main(void) {
    portway_config *cfg = portway_config_new();
    CHECK_OK(portway_config_set_runtime_threads(cfg, 2));
    CHECK_OK(portway_config_set_pool_workers(cfg, 2));
    CHECK_OK(portway_config_set_max_in_flight(cfg, 4 * BATCH));
    portway_engine *eng = new_engine_cfg(cfg);
    portway_config_free(cfg);

    uint32_t meta_id = 0;
    CHECK_OK(portway_register_handler(eng, "meta", h_meta, NULL, &meta_id));

    struct shared s = {.eng = eng};
    atomic_init(&s.last_id, 0);
    atomic_init(&s.done, 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, releaser, &s) == 0);

    const long rounds = under_valgrind() ? 100 : 4000;
    const char *payload = "a payload long enough to live on the heap, not inline anywhere";
    size_t payload_len = strlen(payload);
    unsigned long long total = 0;
    unsigned char *seen = calloc((size_t)(rounds * BATCH + 1), 1);
    CHECK(seen != NULL);
    portway_completion got[BATCH];
    for (long r = 0; r < rounds; r++) {
        portway_request reqs[BATCH];
        uint64_t ids[BATCH];
        for (int i = 0; i < BATCH; i++) {
            reqs[i] = make_req(meta_id, payload, 0, (uint64_t)i);
        }
        size_t accepted = 0;
        CHECK_OK(portway_submit_batch(eng, reqs, BATCH, ids, &accepted));
        CHECK(accepted == BATCH);
        atomic_store(&s.last_id, ids[BATCH - 1]);
        size_t left = BATCH;
        while (left > 0) {
            size_t n = 0;
            CHECK_OK(portway_poll(eng, got, BATCH, 60000, &n));
            CHECK(n > 0);
            for (size_t i = 0; i < n; i++) {
                CHECK(got[i].id >= ids[0] && got[i].id <= ids[BATCH - 1]);
                CHECK(got[i].status == PORTWAY_OK);
                CHECK(!seen[got[i].id]);
                seen[got[i].id] = 1;
                if (got[i].id % 2 == 0) {
                    /* Ours alone until we release it: read everything. */
                    CHECK(got[i].len == payload_len);
                    CHECK(memcmp(got[i].data, payload, payload_len) == 0);
                    CHECK(got[i].meta_len == 2);
                    CHECK(strcmp(got[i].meta[1].value, "meta") == 0);
                }
            }
            /* The odd ones may already be gone: release them too (ignored if so). */
            CHECK_OK(portway_release(eng, got, n));
            left -= n;
            total += n;
        }
    }
    atomic_store(&s.done, 1);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(total == (unsigned long long)(rounds * BATCH));

    struct portway_stats st;
    CHECK_OK(portway_stats(eng, &st));
    CHECK(st.in_flight == 0);
    CHECK(st.unreleased == 0);
    CHECK(st.completed[PORTWAY_OK] == total);
    free(seen);
    portway_engine_free(eng);
    printf("test_poll_release: %llu completions, polled while released from another thread\n",
           total);
    return 0;
}
