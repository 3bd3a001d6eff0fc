/*
 * curl_multi.c: W3 anchor, HTTP fan-out with libcurl's multi interface from one thread.
 *
 *   curl_multi URL N CONCURRENCY [CA_PEM]
 *                     N GETs, CONCURRENCY easy handles in flight, one JSON line. With CA_PEM
 *                     (W3-TLS): https trusting that CA, HTTP/2 multiplexed on one connection
 *                     (CURL_HTTP_VERSION_2TLS, CURLPIPE_MULTIPLEX, waiting for it rather than
 *                     opening one connection per handle while the first handshake runs).
 *
 * Each easy handle is reused for its next request (curl_multi_remove_handle, then add again),
 * so the multi handle's connection cache keeps CONCURRENCY keep-alive connections open (over
 * HTTP/1.1; over HTTP/2 all handles share one).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include <curl/curl.h>

static size_t discard(char *p, size_t size, size_t n, void *ud) {
    (void)p;
    *(size_t *)ud += size * n;
    return size * n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static unsigned long failed, h2_responses;

/* Runs `total` GETs over the `conc` handles already configured; returns when all are done. */
static void run(CURLM *m, CURL **h, unsigned long conc, unsigned long total) {
    unsigned long started = 0, done = 0;
    for (unsigned long i = 0; i < conc && started < total; i++, started++) curl_multi_add_handle(m, h[i]);
    while (done < total) {
        int running = 0;
        if (curl_multi_perform(m, &running) != CURLM_OK) {
            fprintf(stderr, "curl_multi_perform failed\n");
            exit(1);
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE) continue;
            CURL *e = msg->easy_handle;
            long code = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
            long version = 0;
            curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &version);
            if (version == CURL_HTTP_VERSION_2_0) h2_responses++;
            if (msg->data.result != CURLE_OK || code != 200) {
                if (failed++ == 0)
                    fprintf(stderr, "curl_multi: %s, HTTP %ld\n", curl_easy_strerror(msg->data.result), code);
            }
            done++;
            curl_multi_remove_handle(m, e);
            if (started < total) {
                started++;
                curl_multi_add_handle(m, e);
            }
        }
        if (done < total && curl_multi_poll(m, NULL, 0, 1000, NULL) != CURLM_OK) {
            fprintf(stderr, "curl_multi_poll failed\n");
            exit(1);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: curl_multi URL N CONCURRENCY [CA_PEM]\n");
        return 2;
    }
    const char *url = argv[1], *ca_pem = argc >= 5 ? argv[4] : NULL;
    unsigned long n = strtoul(argv[2], NULL, 10), conc = strtoul(argv[3], NULL, 10);
    if (n == 0 || conc == 0) return 2;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conc);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)conc);
    if (ca_pem != NULL) curl_multi_setopt(m, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    CURL **h = calloc(conc, sizeof *h);
    size_t bytes = 0;
    for (unsigned long i = 0; i < conc; i++) {
        h[i] = curl_easy_init();
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(h[i], CURLOPT_WRITEDATA, &bytes);
        curl_easy_setopt(h[i], CURLOPT_TIMEOUT_MS, 30000L);
        curl_easy_setopt(h[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h[i], CURLOPT_TCP_NODELAY, 1L);
        if (ca_pem != NULL) {
            curl_easy_setopt(h[i], CURLOPT_CAINFO, ca_pem);
            curl_easy_setopt(h[i], CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
            curl_easy_setopt(h[i], CURLOPT_PIPEWAIT, 1L);
        }
    }
    run(m, h, conc, conc); /* warm-up: opens the connections */
    failed = 0;
    h2_responses = 0;
    double c0 = cpu_s(), t0 = now_s();
    run(m, h, conc, n);
    double secs = now_s() - t0, cpu = cpu_s() - c0;
    for (unsigned long i = 0; i < conc; i++) curl_easy_cleanup(h[i]);
    curl_multi_cleanup(m);
    free(h);
    curl_global_cleanup();
    printf("{\"n\": %lu, \"secs\": %.6f, \"rate\": %.1f, \"cpu_s\": %.4f, \"failed\": %lu, \"concurrency\": %lu, "
           "\"h2_responses\": %lu}\n",
           n, secs, (double)n / secs, cpu, failed, conc, h2_responses);
    return failed ? 1 : 0;
}
