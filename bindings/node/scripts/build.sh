#!/bin/sh
# Builds the addon offline: the cargo release build of portway (static library), then one cc
# invocation against the installed Node headers. No node-gyp, no header download.
# Env: NODE_INCLUDE (default: the running node's include dir, else /usr/include/node),
#      CARGO (default cargo), CC (default cc), PORTWAY_SKIP_CARGO=1 to reuse the built library,
#      PORTWAY_PROFILE=release (default; what `npm install` uses) or debug (what `make test` uses:
#      the top-level `make test` builds target/debug for the C tests already, so no second
#      full compile of the crate is needed),
#      PORTWAY_STRIP=1|0 (default 1 for release, 0 for debug; PORTWAY_KEEP_DEBUG=1 means 0):
#      strip the addon's symbols and debug info (the static library's debug info is most of an
#      unstripped addon's size),
#      PORTWAY_ADDON_OUT (default build/portway.node) and PORTWAY_CFLAGS (extra cc flags): the
#      test-only fault-injection build uses them (see Makefile `test`),
#      PORTWAY_LIB (default target/$PORTWAY_PROFILE/libportway.a): a static library built
#      elsewhere (use with PORTWAY_SKIP_CARGO=1).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$here/../.." && pwd)
CARGO=${CARGO:-cargo}
CC=${CC:-cc}
if [ -z "${NODE_INCLUDE:-}" ]; then
  prefix=$(dirname "$(dirname "$(command -v node)")")
  if [ -f "$prefix/include/node/node_api.h" ]; then NODE_INCLUDE="$prefix/include/node"
  else NODE_INCLUDE=/usr/include/node; fi
fi
[ -f "$NODE_INCLUDE/node_api.h" ] || { echo "build.sh: node_api.h not found in $NODE_INCLUDE (set NODE_INCLUDE)" >&2; exit 1; }
profile=${PORTWAY_PROFILE:-release}
case "$profile" in
  release) cargo_flag=--release ;;
  debug) cargo_flag= ;;
  *) echo "build.sh: PORTWAY_PROFILE must be release or debug" >&2; exit 1 ;;
esac
if [ "${PORTWAY_SKIP_CARGO:-0}" != 1 ]; then
  "$CARGO" build $cargo_flag --lib --manifest-path "$root/Cargo.toml"
fi
case "${PORTWAY_STRIP:-}" in
  "") if [ "$profile" = release ] && [ "${PORTWAY_KEEP_DEBUG:-0}" != 1 ]; then strip=1; else strip=0; fi ;;
  0|1) strip=$PORTWAY_STRIP ;;
  *) echo "build.sh: PORTWAY_STRIP must be 0 or 1" >&2; exit 1 ;;
esac
if [ "$strip" = 1 ]; then debug_flags=-s; else debug_flags=-g; fi
extra=${PORTWAY_CFLAGS:-}
lib=${PORTWAY_LIB:-$root/target/$profile/libportway.a}
[ -f "$lib" ] || { echo "build.sh: $lib not found" >&2; exit 1; }
out=${PORTWAY_ADDON_OUT:-$here/build/portway.node}
mkdir -p "$(dirname "$out")"
stamp="$out.stamp"
want="$profile strip=$strip $extra"
# The addon's sources: every src/*.c, sharing the private header src/addon.h.
stale=0
if [ ! -f "$out" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then stale=1; fi
for f in "$lib" "$root/include/portway.h" "$here"/src/*.c "$here"/src/*.h; do
  if [ "$f" -nt "$out" ]; then stale=1; fi
done
if [ "$stale" = 1 ]; then
  # shellcheck disable=SC2086 # $extra and $debug_flags are word lists
  "$CC" -std=c11 -shared -fPIC -O2 $debug_flags -Wall -Wextra -Werror -D_GNU_SOURCE -pthread \
    -fvisibility=hidden $extra -I"$NODE_INCLUDE" -I"$root/include" \
    "$here"/src/*.c "$lib" -Wl,--gc-sections -Wl,--exclude-libs,ALL -lpthread -ldl -lm \
    -o "$out.tmp"
  mv "$out.tmp" "$out"
  echo "$want" > "$stamp"
  echo "built $out ($want)"
fi
