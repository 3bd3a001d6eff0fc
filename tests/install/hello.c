/*
 * tests/install/hello.c: the program `make test-install` builds against an installed portway,
 * with nothing but the flags `pkg-config --cflags --libs portway` (and `--static`) prints.
 * One echo round trip; exits 0 when the payload comes back unchanged.
 */
#include <portway.h>

#include <stdio.h>
#include <string.h>

int main(void) {
    if (portway_abi_version() != PORTWAY_ABI_VERSION) {
        fprintf(stderr, "hello: header ABI %u, library ABI %u\n", (unsigned)PORTWAY_ABI_VERSION,
                (unsigned)portway_abi_version());
        return 1;
    }
    portway_engine *eng = NULL;
    if (portway_engine_new(NULL, &eng) != PORTWAY_OK) {
        fprintf(stderr, "hello: portway_engine_new: %s\n", portway_last_error());
        return 1;
    }
    uint32_t echo = 0;
    if (portway_handler_lookup(eng, "echo", &echo) != PORTWAY_OK) {
        fprintf(stderr, "hello: no echo handler: %s\n", portway_last_error());
        portway_engine_free(eng);
        return 1;
    }
    static const char msg[] = "hello from an installed portway";
    portway_request req = {.handler = echo, .timeout_ms = 5000, .user_data = 42,
                           .payload = (const uint8_t *)msg, .payload_len = sizeof msg - 1};
    uint64_t id = 0;
    if (portway_submit(eng, &req, &id) != PORTWAY_OK) {
        fprintf(stderr, "hello: portway_submit: %s\n", portway_last_error());
        portway_engine_free(eng);
        return 1;
    }
    portway_completion c;
    size_t n = 0;
    while (n == 0) {
        portway_status st = portway_poll(eng, &c, 1, 5000, &n);
        if (st != PORTWAY_OK) {
            fprintf(stderr, "hello: portway_poll: %s\n", portway_status_str(st));
            portway_engine_free(eng);
            return 1;
        }
    }
    int ok = c.id == id && c.user_data == 42 && c.status == PORTWAY_OK &&
             c.len == sizeof msg - 1 && memcmp(c.data, msg, c.len) == 0;
    printf("portway %s: %s: %.*s\n", portway_version(), portway_status_str(c.status), (int)c.len,
           (const char *)c.data);
    portway_release(eng, &c, 1);
    portway_engine_free(eng);
    if (!ok) {
        fprintf(stderr, "hello: the echo did not round-trip\n");
        return 1;
    }
    return 0;
}
