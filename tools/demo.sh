#!/usr/bin/env bash
# `make demo`: start the local demo API server, fan 20,000 calls out to it from Python through
# portway (beside a thread pool + urllib), then briefly from C and Node. Exits non-zero when
# any portway request failed. Assumes `make demo` built everything first.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=target/pyenv/bin/python
SERVER=target/release/examples/demo_server
TOTAL=${DEMO_TOTAL:-20000}

coproc SRV { exec "$SERVER"; }
server_pid=$SRV_PID
stop_server() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
trap stop_server EXIT
read -r -t 30 line <&"${SRV[0]}" || { echo "demo: the demo server did not start" >&2; exit 1; }
base=${line#LISTENING }
echo "demo: API server listening on $base (GET /items/{id} answers in 1-5 ms)"

echo
echo "== Python: examples/python/fanout.py"
"$PY" examples/python/fanout.py "$base/items/{i}" "$TOTAL" 64

echo
echo "== C: examples/c/fanout.c"
target/c/examples/fanout "$base/items/{i}" 5000 64

if command -v node >/dev/null && [ -f bindings/node/build/portway.node ]; then
  echo
  echo "== Node: examples/node/fanout.js (its own local server)"
  node examples/node/fanout.js 2000 64
fi

echo
for e in worker_pool pipeline deadlines; do
  echo "== C: examples/c/$e.c"
  "target/c/examples/$e"
  echo
done

echo "demo: every request succeeded"
