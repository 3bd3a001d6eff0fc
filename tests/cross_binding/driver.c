/*
 * Cross-binding driver for the C ABI: runs ONE case of tests/cross_binding/cases.json, passed
 * by compare.py as arguments (C has no JSON parser at hand, so the comparer flattens the row):
 *
 *     driver_c OP HANDLER PAYLOAD TIMEOUT_MS MAX_PAYLOAD DEFAULT_TIMEOUT_MS URL
 *
 * TIMEOUT_MS, MAX_PAYLOAD and DEFAULT_TIMEOUT_MS are "-" when the case leaves them unset. Prints the outcome's status
 * name (portway_status_str) and, on a second line, portway_last_error() when a call refused.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portway.h"

/* An id no fresh engine has issued: cancel must answer NOT_FOUND. */
#define NEVER_ISSUED_ID ((uint64_t)1 << 40)

static int report(portway_status st, int refused) {
    printf("%s\n", portway_status_str(st));
    if (refused && st != PORTWAY_OK) printf("%s\n", portway_last_error());
    return 0;
}

/* Submits `req` and waits for its completion; the outcome is the refusal or the completion. */
static int submit_and_wait(portway_engine *eng, const portway_request *req) {
    uint64_t id;
    portway_status st = portway_submit(eng, req, &id);
    if (st != PORTWAY_OK) return report(st, 1);
    portway_completion c;
    size_t n = 0;
    while (n == 0) {
        st = portway_poll(eng, &c, 1, -1, &n);
        if (st != PORTWAY_OK) return report(st, 1);
    }
    portway_status done = (portway_status)c.status;
    portway_release(eng, &c, 1);
    return report(done, 0);
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s OP HANDLER PAYLOAD TIMEOUT_MS MAX_PAYLOAD DEFAULT_TIMEOUT_MS URL\n", argv[0]);
        return 2;
    }
    const char *op = argv[1], *handler = argv[2], *payload = argv[3], *url = argv[7];
    portway_config *cfg = portway_config_new();
    if (cfg == NULL) return 2;
    if (strcmp(argv[5], "-") != 0)
        portway_config_set_max_payload(cfg, strtoull(argv[5], NULL, 10));
    if (strcmp(argv[6], "-") != 0)
        portway_config_set_default_timeout_ms(cfg, (uint32_t)strtoul(argv[6], NULL, 10));
    portway_engine *eng;
    portway_status st = portway_engine_new(cfg, &eng);
    portway_config_free(cfg);
    if (st != PORTWAY_OK) {
        fprintf(stderr, "engine_new: %s\n", portway_last_error());
        return 2;
    }
    int rc = 0;
    if (strcmp(op, "cancel_unknown") == 0) {
        report(portway_cancel(eng, NEVER_ISSUED_ID), 0);
    } else if (strcmp(op, "submit") == 0 || strcmp(op, "submit_after_close") == 0 ||
               strcmp(op, "http") == 0) {
        static char head[4096];
        if (strcmp(op, "http") == 0) {
            handler = "http";
            snprintf(head, sizeof head, "GET %s HTTP/1.1\r\n\r\n", url);
            payload = head;
        }
        if (strcmp(op, "submit_after_close") == 0)
            portway_engine_shutdown(eng, PORTWAY_DRAIN, 0);
        uint32_t hid;
        st = portway_handler_lookup(eng, handler, &hid);
        if (st != PORTWAY_OK) {
            report(st, 1);
        } else {
            portway_request req = {.handler = hid,
                                   .timeout_ms = strcmp(argv[4], "-") == 0 ? 0 : (uint32_t)strtoul(argv[4], NULL, 10),
                                   .user_data = 1,
                                   .payload = (const uint8_t *)payload,
                                   .payload_len = strlen(payload)};
            submit_and_wait(eng, &req);
        }
    } else {
        fprintf(stderr, "unknown op %s\n", op);
        rc = 2;
    }
    portway_engine_free(eng);
    return rc;
}
