/* Compiles portway.h on its own, as C and as C++, and pins the layout of the records that
 * the header spells out by hand (the Rust side asserts the same sizes). */
#include "portway.h"

#ifdef __cplusplus
#define LAYOUT_CHECK(cond, what) static_assert(cond, what)
#else
#define LAYOUT_CHECK(cond, what) _Static_assert(cond, what)
#endif

LAYOUT_CHECK(sizeof(struct portway_stats) == 344, "struct portway_stats layout");
LAYOUT_CHECK(sizeof(struct portway_latency) == 48, "struct portway_latency layout");
LAYOUT_CHECK(sizeof(struct portway_handler_stats) == 368, "struct portway_handler_stats layout");

int main(void) { return portway_abi_version() == PORTWAY_ABI_VERSION ? 0 : 1; }
