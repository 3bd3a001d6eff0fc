#!/bin/sh
# Builds the addon offline: the cargo release build of portway (static library), then one cc
# invocation against the installed Node headers. No node-gyp, no header download.
# Env: NODE_INCLUDE (default: the running node's include dir, else /usr/include/node),
#      CARGO (default cargo), CC (default cc), PORTWAY_SKIP_CARGO=1 to reuse the built library,
#      PORTWAY_PROFILE=release (default; what `npm install` uses) or debug (what `make test` uses:
#      the top-level `make test` builds target/debug for the C tests already, so no second
#      full compile of the crate is needed). A release addon is stripped of debug info
#      (50 MB -> under 10 MB; the symbol table stays); PORTWAY_KEEP_DEBUG=1 keeps it. STRIP
#      names the strip to run (default strip; if missing the addon stays unstripped).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$here/../.." && pwd)
CARGO=${CARGO:-cargo}
CC=${CC:-cc}
STRIP=${STRIP:-strip}
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
lib="$root/target/$profile/libportway.a"
mkdir -p "$here/build"
out="$here/build/portway.node"
stamp="$here/build/profile"
# What the stamp records: the profile, and whether a release addon is stripped (so switching
# PORTWAY_KEEP_DEBUG rebuilds it).
flavor=$profile
if [ "$profile" = release ] && [ "${PORTWAY_KEEP_DEBUG:-0}" != 1 ]; then flavor=release-stripped; fi
if [ ! -f "$out" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$flavor" ] || [ "$lib" -nt "$out" ] || \
   [ "$here/src/addon.c" -nt "$out" ] || [ "$root/include/portway.h" -nt "$out" ]; then
  "$CC" -std=c11 -shared -fPIC -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread \
    -fvisibility=hidden -I"$NODE_INCLUDE" -I"$root/include" \
    "$here/src/addon.c" "$lib" -Wl,--gc-sections -Wl,--exclude-libs,ALL -lpthread -ldl -lm \
    -o "$out.tmp"
  if [ "$flavor" = release-stripped ]; then
    if command -v "$STRIP" >/dev/null 2>&1; then "$STRIP" --strip-debug "$out.tmp"
    else echo "build.sh: warning: $STRIP not found; the addon keeps its debug info" >&2; fi
  fi
  mv "$out.tmp" "$out"
  echo "$flavor" > "$stamp"
  echo "built $out ($flavor)"
fi
