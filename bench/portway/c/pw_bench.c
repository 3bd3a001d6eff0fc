/*
 * pw_bench.c: the portway side of `make bench`, through the C ABI. Prints one JSON line.
 *
 *   pw_bench overhead native|echo N WORKERS   W1: N no-op requests, submitted with
 *                                             portway_submit_batch and polled in batches
 *                                             (portway_poll_min), a window of WINDOW in flight. "native" is a C
 *                                             handler on the pool that responds with nothing;
 *                                             "echo" is the built-in (inline) echo.
 *   pw_bench sleep N MS                       W2: N concurrent MS-millisecond "sleep" requests.
 *   pw_bench http URL N CONCURRENCY [CA_PEM]  W3: N GETs of URL through "http", CONCURRENCY in
 *                                             flight (a sliding window, refilled and polled a
 *                                             quarter of it at a time). With CA_PEM (W3-TLS):
 *                                             through an http handler registered with that CA
 *                                             as `extra_ca_pem_path`, default options otherwise.
 *   pw_bench sha N WORKERS                    W4: N SHA-256 digests of 1 KiB payloads by a C
 *                                             handler (libcrypto) on WORKERS pool threads; also
 *                                             measures the one-thread rate of the same hashing.
 *                                             The digest is libcrypto's fastest use: the EVP_MD
 *                                             fetched once, one EVP_MD_CTX per thread (the
 *                                             one-shot SHA256() looks the algorithm up per call,
 *                                             about 20% slower here). The payload is lent
 *                                             (PORTWAY_SUBMIT_LEND_PAYLOAD): one static buffer,
 *                                             read in place by every request.
 *   pw_bench sha-copy N WORKERS               W4 with the payload copied at submit (as before
 *                                             the lend flag, and as the bindings do).
 *   pw_bench sha-bare N WORKERS               W4's ceiling on this machine: the same hashing on
 *                                             WORKERS bare pthreads, N/WORKERS digests each, no
 *                                             queue and no engine; same output fields.
 *
 * Exit 0 only when every request completed with PORTWAY_OK (and, for http, HTTP 200).
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <sys/resource.h>

#include <openssl/evp.h>

#include "portway.h"

#define BATCH 1024    /* requests per submit_batch, completions per poll */
#define WINDOW 4096   /* W1, W4: requests in flight at most (Go's anchor holds up to 2 x 1024
                         in its channels, plus what its goroutines hold) */
#define SHA_PAYLOAD 1024

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) of the whole process, every thread included. */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds (user + system) of the calling thread only. */
static double thread_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds (user + system) of this process's pool workers (threads named portway-pool-*),
 * from /proc/self/task/ * /stat: which share of the CPU the workers got, beside the host's. */
static double pool_cpu_s(void) {
    static long ticks_per_s;
    if (ticks_per_s == 0) ticks_per_s = sysconf(_SC_CLK_TCK);
    DIR *d = opendir("/proc/self/task");
    if (d == NULL) return -1;
    double sum = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        /* pid (comm) state ppid ... field 14 utime, 15 stime; comm may hold spaces. */
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        if (open == NULL || close == NULL || strncmp(open + 1, "portway-pool", 12) != 0) continue;
        unsigned long ut = 0, st = 0;
        if (sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            sum += (double)(ut + st) / (double)ticks_per_s;
    }
    closedir(d);
    return sum;
}

/* Where the CPU of a timed run went: the host thread, the pool workers, the whole process. */
struct cpu_split {
    double host, pool, all;
};

static struct cpu_split cpu_now(void) { return (struct cpu_split){thread_cpu_s(), pool_cpu_s(), cpu_s()}; }

static struct cpu_split cpu_since(struct cpu_split t0) {
    struct cpu_split t1 = cpu_now();
    return (struct cpu_split){t1.host - t0.host, t1.pool - t0.pool, t1.all - t0.all};
}

/* The CPU split of a run of n requests as JSON fields: ns per request of the host thread, of
 * the pool workers and of the whole process. */
#define CPU_FMT "\"host_cpu_ns\": %.1f, \"pool_cpu_ns\": %.1f, \"cpu_ns\": %.1f"
#define CPU_ARGS(c, n) (c).host * 1e9 / (double)(n), (c).pool * 1e9 / (double)(n), (c).all * 1e9 / (double)(n)

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0) {
            v = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static void die(const char *what, portway_status st) {
    fprintf(stderr, "pw_bench: %s: %s: %s\n", what, portway_status_str(st), portway_last_error());
    exit(1);
}

#define CHECK(call)                                   \
    do {                                              \
        portway_status st_ = (call);                  \
        if (st_ != PORTWAY_OK) die(#call, st_);       \
    } while (0)

static portway_engine *engine(uint32_t workers, uint32_t max_in_flight) {
    portway_config *cfg = portway_config_new();
    if (cfg == NULL) die("portway_config_new", PORTWAY_INTERNAL);
    if (workers) CHECK(portway_config_set_pool_workers(cfg, workers));
    CHECK(portway_config_set_max_in_flight(cfg, max_in_flight));
    portway_engine *eng = NULL;
    CHECK(portway_engine_new(cfg, &eng));
    portway_config_free(cfg);
    return eng;
}

static uint32_t lookup(portway_engine *eng, const char *name) {
    uint32_t id = 0;
    CHECK(portway_handler_lookup(eng, name, &id));
    return id;
}

/* ------------------------------------------------------------------ handlers */

static void noop_handler(void *ctx, portway_call *call) {
    (void)ctx;
    portway_call_respond(call, NULL, 0);
}

static EVP_MD *sha256_md; /* fetched once in main */

static void sha256(const uint8_t *data, size_t len, uint8_t out[32]) {
    static _Thread_local EVP_MD_CTX *ctx; /* one per thread, kept for the process's life */
    unsigned int n = 0;
    if (ctx == NULL && (ctx = EVP_MD_CTX_new()) == NULL) abort();
    if (!EVP_DigestInit_ex(ctx, sha256_md, NULL) || !EVP_DigestUpdate(ctx, data, len) ||
        !EVP_DigestFinal_ex(ctx, out, &n))
        abort();
}

static void sha_handler(void *ctx, portway_call *call) {
    (void)ctx;
    const uint8_t *data = NULL;
    size_t len = 0;
    uint8_t digest[32];
    portway_call_payload(call, &data, &len);
    sha256(data, len, digest);
    portway_call_respond(call, digest, sizeof digest);
}

/* The one-thread hashing rate (n/8 digests on the calling thread). W4 measures it right before
 * and right after the pool run and uses the mean of the two, so that a drift in this VM's speed
 * during the run falls on both sides of the ratio. */
static double single_thread_rate(const uint8_t *payload, uint64_t n) {
    static volatile uint8_t sink;
    uint8_t digest[32];
    uint64_t single_n = n / 8;
    double t0 = now_s();
    for (uint64_t i = 0; i < single_n; i++) {
        sha256(payload, SHA_PAYLOAD, digest);
        sink ^= digest[0];
    }
    return (double)single_n / (now_s() - t0);
}

/* ------------------------------------------------------------------ the windowed loop */

static uint64_t peak_in_flight; /* the most requests holding a slot at once in run_window */

/* Keeps up to `window` requests in flight until `total` completed; each batch submit reuses
 * `reqs` (`BATCH` identical requests). The loop works in batches of `batch` (1 to BATCH): it
 * refills only when that many slots (or the rest) are free, and each poll waits for that many
 * completions (portway_poll_min, which also returns once everything in flight completed)
 * instead of returning with the first one, so the host is woken once per batch rather than per
 * completion. `wait_ms` bounds each poll's wait (-1: no bound). Returns the number of failed
 * completions. */

static uint32_t submit_flags; /* portway_submit_batch_ex flags of run_window's submits */

static uint64_t run_window(portway_engine *eng, const portway_request *reqs, uint64_t total,
                           uint64_t window, uint64_t batch, int32_t wait_ms,
                           int (*check)(const portway_completion *)) {
    static portway_completion comps[BATCH];
    uint64_t submitted = 0, done = 0, in_flight = 0, failed = 0;
    if (batch < 1) batch = 1;
    if (batch > BATCH) batch = BATCH;
    uint64_t refill_at = window >= batch ? batch : 1; /* free slots worth a submit */
    while (done < total) {
        while (submitted < total && in_flight < window &&
               (window - in_flight >= refill_at || total - submitted <= window - in_flight)) {
            uint64_t want = window - in_flight;
            if (want > total - submitted) want = total - submitted;
            if (want > BATCH) want = BATCH;
            size_t accepted = 0;
            portway_status st =
                portway_submit_batch_ex(eng, reqs, (size_t)want, submit_flags, NULL, &accepted);
            submitted += accepted;
            in_flight += accepted;
            if (st == PORTWAY_BUSY) break;
            if (st != PORTWAY_OK) die("portway_submit_batch", st);
        }
        if (in_flight > peak_in_flight) peak_in_flight = in_flight;
        size_t n = 0;
        CHECK(portway_poll_min(eng, comps, BATCH, (size_t)batch, in_flight ? wait_ms : 0, &n));
        for (size_t k = 0; k < n; k++)
            if (comps[k].status != PORTWAY_OK || (check && !check(&comps[k]))) {
                if (failed == 0)
                    fprintf(stderr, "pw_bench: first failure: %s code %u: %.*s\n",
                            portway_status_str(comps[k].status), comps[k].code,
                            (int)(comps[k].len < 200 ? comps[k].len : 200),
                            (const char *)comps[k].data);
                failed++;
            }
        CHECK(portway_release(eng, comps, n));
        in_flight -= n;
        done += n;
    }
    return failed;
}

static portway_request *same_requests(uint32_t handler, const void *payload, size_t len) {
    portway_request *reqs = calloc(BATCH, sizeof *reqs);
    if (reqs == NULL) exit(1);
    for (size_t i = 0; i < BATCH; i++)
        reqs[i] = (portway_request){.handler = handler, .timeout_ms = 0, .user_data = i,
                                    .payload = payload, .payload_len = len};
    return reqs;
}

/* ------------------------------------------------------------------ W1 */

static int overhead(const char *kind, uint64_t n, uint32_t workers) {
    portway_engine *eng = engine(workers, 65536);
    uint32_t h;
    if (strcmp(kind, "native") == 0)
        CHECK(portway_register_handler(eng, "noop", noop_handler, NULL, &h));
    else if (strcmp(kind, "echo") == 0)
        h = lookup(eng, "echo");
    else {
        fprintf(stderr, "pw_bench: overhead native|echo\n");
        return 2;
    }
    portway_request *reqs = same_requests(h, NULL, 0);
    run_window(eng, reqs, n / 10 < 10000 ? n / 10 : 10000, WINDOW, BATCH, -1, NULL); /* warm-up */
    struct cpu_split c0 = cpu_now();
    double t0 = now_s();
    uint64_t failed = run_window(eng, reqs, n, WINDOW, BATCH, -1, NULL);
    double secs = now_s() - t0;
    struct cpu_split cpu = cpu_since(c0);
    portway_engine_free(eng);
    free(reqs);
    printf("{\"n\": %" PRIu64 ", \"secs\": %.6f, \"rate\": %.1f, \"failed\": %" PRIu64
           ", \"batch\": %d, \"window\": %d, \"workers\": %u, " CPU_FMT "}\n",
           n, secs, (double)n / secs, failed, BATCH, WINDOW, workers, CPU_ARGS(cpu, n));
    return failed ? 1 : 0;
}

/* ------------------------------------------------------------------ W2 */

static int sleeps(uint64_t n, const char *ms) {
    portway_engine *eng = engine(0, (uint32_t)(n + BATCH));
    portway_request *reqs = same_requests(lookup(eng, "sleep"), ms, strlen(ms));
    run_window(eng, reqs, 100, 100, 1, -1, NULL); /* warm-up: timers, runtime threads */
    long base = rss_kib();
    peak_in_flight = 0;
    double t0 = now_s();
    uint64_t failed = run_window(eng, reqs, n, n, 1, -1, NULL);
    double secs = now_s() - t0;
    portway_engine_free(eng);
    free(reqs);
    /* Completed requests keep their slot (and their memory) until polled and released, so
     * every one of them counts as in flight until then. */
    printf("{\"n\": %" PRIu64 ", \"secs\": %.6f, \"rss_base_kib\": %ld, \"peak_in_flight\": %" PRIu64
           ", \"failed\": %" PRIu64 "}\n",
           n, secs, base, peak_in_flight, failed);
    return failed ? 1 : 0;
}

/* ------------------------------------------------------------------ W3 */

#ifndef HTTP_BATCH_DIV
#define HTTP_BATCH_DIV 4 /* W3 polls for window / HTTP_BATCH_DIV completions at a time */
#endif
#define HTTP_WAIT_MS 2 /* and waits at most this long for them, so a slow straggler holds no
                          completion back for longer */

static int http_ok(const portway_completion *c) { return c->code == 200; }

static int fanout(const char *url, uint64_t n, uint64_t conc, const char *ca_pem) {
    portway_engine *eng = engine(0, 65536);
    char head[4096];
    int len = snprintf(head, sizeof head, "GET %s HTTP/1.1\r\n\r\n", url);
    if (len < 0 || (size_t)len >= sizeof head) return 2;
    uint32_t h;
    if (ca_pem != NULL) {
        portway_http_options opts;
        CHECK(portway_http_options_default(&opts));
        opts.extra_ca_pem_path = ca_pem;
        CHECK(portway_register_http(eng, "http-bench-ca", &opts, &h));
    } else {
        h = lookup(eng, "http");
    }
    portway_request *reqs = same_requests(h, head, (size_t)len);
    /* A quarter of the window per wake-up keeps at least three quarters in flight. */
    uint64_t batch = conc / HTTP_BATCH_DIV ? conc / HTTP_BATCH_DIV : 1;
    run_window(eng, reqs, conc, conc, batch, HTTP_WAIT_MS, http_ok); /* warm-up: opens the connections */
    double c0 = cpu_s(), t0 = now_s();
    uint64_t failed = run_window(eng, reqs, n, conc, batch, HTTP_WAIT_MS, http_ok);
    double secs = now_s() - t0, cpu = cpu_s() - c0;
    portway_engine_free(eng);
    free(reqs);
    printf("{\"n\": %" PRIu64 ", \"secs\": %.6f, \"rate\": %.1f, \"cpu_s\": %.4f, \"failed\": %" PRIu64
           ", \"concurrency\": %" PRIu64 ", \"poll_batch\": %" PRIu64 "}\n",
           n, secs, (double)n / secs, cpu, failed, conc, batch);
    return failed ? 1 : 0;
}

/* ------------------------------------------------------------------ W4 */

static int sha(uint64_t n, uint32_t workers, int lend) {
    static uint8_t payload[SHA_PAYLOAD];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)(i * 31 + 7);

    /* One thread, no engine: the rate the pool is measured against. */
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha256_md == NULL) {
        fprintf(stderr, "pw_bench: EVP_MD_fetch(SHA256) failed\n");
        return 1;
    }
    double single_before = single_thread_rate(payload, n);

    portway_engine *eng = engine(workers, 65536);
    uint32_t h;
    CHECK(portway_register_handler(eng, "sha256", sha_handler, NULL, &h));
    portway_request *reqs = same_requests(h, payload, sizeof payload);
    /* Lending is safe here: `payload` is static and never written while the engine lives. */
    submit_flags = lend ? PORTWAY_SUBMIT_LEND_PAYLOAD : 0;
    run_window(eng, reqs, 10000, WINDOW, BATCH, -1, NULL);
    struct cpu_split c0 = cpu_now();
    double t0 = now_s();
    uint64_t failed = run_window(eng, reqs, n, WINDOW, BATCH, -1, NULL);
    double secs = now_s() - t0;
    struct cpu_split cpu = cpu_since(c0);
    portway_engine_free(eng);
    free(reqs);
    double single_rate = (single_before + single_thread_rate(payload, n)) / 2;
    EVP_MD_free(sha256_md);
    double rate = (double)n / secs;
    printf("{\"n\": %" PRIu64 ", \"secs\": %.6f, \"rate\": %.1f, \"single_thread_rate\": %.1f, "
           "\"efficiency\": %.4f, \"workers\": %u, \"failed\": %" PRIu64 ", \"lend\": %s, " CPU_FMT "}\n",
           n, secs, rate, single_rate, rate / (single_rate * workers), workers, failed,
           lend ? "true" : "false", CPU_ARGS(cpu, n));
    return failed ? 1 : 0;
}

struct bare_share {
    const uint8_t *payload;
    uint64_t n;
};

static void *bare_hash(void *arg) {
    const struct bare_share *share = arg;
    static volatile uint8_t sink;
    uint8_t digest[32];
    for (uint64_t i = 0; i < share->n; i++) {
        sha256(share->payload, SHA_PAYLOAD, digest);
        sink ^= digest[0];
    }
    return NULL;
}

static int sha_bare(uint64_t n, uint32_t workers) {
    static uint8_t payload[SHA_PAYLOAD];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)(i * 31 + 7);
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha256_md == NULL || workers == 0 || workers > 64) return 1;
    double single_before = single_thread_rate(payload, n);
    pthread_t th[64];
    struct bare_share share = {payload, n / workers};
    double c0 = cpu_s(), t0 = now_s();
    for (uint32_t w = 0; w < workers; w++)
        if (pthread_create(&th[w], NULL, bare_hash, &share) != 0) return 1;
    for (uint32_t w = 0; w < workers; w++) pthread_join(th[w], NULL);
    double secs = now_s() - t0, rate = (double)(share.n * workers) / secs;
    double cpu_ns = (cpu_s() - c0) * 1e9 / (double)(share.n * workers);
    double single = (single_before + single_thread_rate(payload, n)) / 2;
    EVP_MD_free(sha256_md);
    printf("{\"n\": %" PRIu64 ", \"secs\": %.6f, \"rate\": %.1f, \"single_thread_rate\": %.1f, "
           "\"efficiency\": %.4f, \"workers\": %u, \"failed\": 0, \"cpu_ns\": %.1f}\n",
           share.n * workers, secs, rate, single, rate / (single * workers), workers, cpu_ns);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "overhead") == 0)
        return overhead(argv[2], strtoull(argv[3], NULL, 10), (uint32_t)strtoul(argv[4], NULL, 10));
    if (argc >= 4 && strcmp(argv[1], "sleep") == 0) return sleeps(strtoull(argv[2], NULL, 10), argv[3]);
    if (argc >= 5 && strcmp(argv[1], "http") == 0)
        return fanout(argv[2], strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10),
                      argc >= 6 ? argv[5] : NULL);
    if (argc >= 4 && strcmp(argv[1], "sha-bare") == 0)
        return sha_bare(strtoull(argv[2], NULL, 10), (uint32_t)strtoul(argv[3], NULL, 10));
    if (argc >= 4 && (strcmp(argv[1], "sha") == 0 || strcmp(argv[1], "sha-copy") == 0))
        return sha(strtoull(argv[2], NULL, 10), (uint32_t)strtoul(argv[3], NULL, 10),
                   strcmp(argv[1], "sha") == 0);
    fprintf(stderr,
            "usage: pw_bench overhead native|echo N WORKERS | sleep N MS | http URL N CONC [CA_PEM] | "
            "sha N WORKERS | sha-copy N WORKERS | sha-bare N WORKERS\n");
    return 2;
}
