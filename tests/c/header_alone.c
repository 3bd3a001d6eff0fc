/* Compiles portway.h on its own, as C and as C++, and pins the layout of the records that
 * the header spells out by hand (tests/ffi_layout.rs checks every field's offset). */
#include "portway.h"

#ifdef __cplusplus
#define LAYOUT_CHECK(cond, what) static_assert(cond, what)
#else
#define LAYOUT_CHECK(cond, what) _Static_assert(cond, what)
#endif

LAYOUT_CHECK(sizeof(struct portway_stats) == 344, "struct portway_stats layout");
LAYOUT_CHECK(sizeof(struct portway_latency) == 48, "struct portway_latency layout");
LAYOUT_CHECK(sizeof(struct portway_handler_stats) == 368, "struct portway_handler_stats layout");
/* The names a C (or C++) user writes for the records whose plain names the functions own. */
LAYOUT_CHECK(sizeof(portway_stats_record) == sizeof(struct portway_stats), "portway_stats_record");
LAYOUT_CHECK(sizeof(portway_latency) == sizeof(struct portway_latency), "portway_latency");
LAYOUT_CHECK(sizeof(portway_handler_stats_record) == sizeof(struct portway_handler_stats),
             "portway_handler_stats_record");

int main(void) { return portway_abi_version() == PORTWAY_ABI_VERSION ? 0 : 1; }
