# mk/bench.mk: `make bench`, portway side by side with the systems users would pick instead
# (issue 7). Included by the top-level Makefile.
#
#   make bench           install what the anchors need if missing, build everything in release
#                        mode, run each figure 5 times after a warm-up round (about 10 minutes
#                        on 2 cores); writes bench/results/latest.json, bench/results/latest.png
#                        and the generated section of BENCHMARKS.md; then `make bench-channels`
#                        (mk/channels.mk: the pool channel, flume vs crossbeam vs tokio mpsc)
#   make bench QUICK=1   one run of each figure at a tenth of the size (what `make test` runs);
#                        exits non-zero unless every figure was produced; writes its JSON,
#                        chart and table under target/bench/quick/ (BENCHMARKS.md untouched)
#   make bench BENCH_ARGS="--only W3"     any bench/run.py option (--reps N, --allow-missing)
#   make test-bench      the same as `make bench QUICK=1` (for the top-level `test` target)
#   make bench-build     only the installs and builds
#
# Installs only: Debian golang-go, libcurl4-openssl-dev, libssl-dev (apt-get, when missing) and
# a virtual environment target/bench-venv with aiohttp and matplotlib; mk/bench-tls.mk adds
# nginx-light, openssl and httpx[http2] for W3-TLS. Everything it builds goes
# under target/bench/; the Node addon used here is a private release build in
# target/bench/node-portway, so bindings/node/build is left as the tests left it.

BENCH_OUT     := target/bench
BENCH_VENV    := target/bench-venv
BENCH_PY      := $(BENCH_VENV)/bin/python
BENCH_STAMP   := $(BENCH_VENV)/.bench-deps
BENCH_CFLAGS  := -std=c11 -O2 -Wall -Wextra -Werror -pthread
BENCH_GOENV   := GOCACHE=$(abspath $(BENCH_OUT)/go-cache) GOPATH=$(abspath $(BENCH_OUT)/go-path) \
                 GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0
BENCH_NODE    := $(BENCH_OUT)/node-portway
QUICK         ?=
BENCH_ARGS    ?=

.PHONY: bench test-bench bench-deps bench-build bench-c bench-go bench-node bench-core

bench: bench-build
	$(BENCH_PY) bench/run.py $(if $(filter 1,$(QUICK)),--quick) $(BENCH_ARGS)
	$(if $(filter 1,$(QUICK)),,$(MAKE) --no-print-directory bench-channels)

# For `make test`: the quick form, which fails unless every figure was produced.
test-bench:
	$(MAKE) --no-print-directory bench QUICK=1

bench-deps: $(BENCH_STAMP)
	@missing=""; \
	command -v go >/dev/null 2>&1 || missing="$$missing golang-go"; \
	echo '#include <curl/curl.h>' | $(CC) -E -x c - >/dev/null 2>&1 || missing="$$missing libcurl4-openssl-dev"; \
	echo '#include <openssl/sha.h>' | $(CC) -E -x c - >/dev/null 2>&1 || missing="$$missing libssl-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "bench: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BENCH_STAMP):
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install -q --disable-pip-version-check aiohttp matplotlib
	touch $@

bench-build: bench-deps release bench-c bench-go bench-node bench-core

# C drivers against the release shared library (the portway one) and the C anchors.
bench-c: release
	@mkdir -p $(BENCH_OUT)
	$(CC) $(BENCH_CFLAGS) -Iinclude bench/portway/c/pw_bench.c -L$(RELEASE_DIR) \
	  -Wl,-rpath,$(abspath $(RELEASE_DIR)) -lportway -lcrypto -o $(BENCH_OUT)/pw_bench
	$(CC) $(BENCH_CFLAGS) bench/anchors/c/uvpool.c -o $(BENCH_OUT)/uvpool
	$(CC) $(BENCH_CFLAGS) bench/anchors/c/curl_multi.c -lcurl -o $(BENCH_OUT)/curl_multi

bench-go: bench-deps
	@mkdir -p $(BENCH_OUT)
	cd bench/anchors/go && $(BENCH_GOENV) go build -trimpath -o $(abspath $(BENCH_OUT))/go-anchors .

# The Node addon, built by bindings/node/scripts/build.sh (the same sources, flags and strip as
# a release `npm install`) against the release static library, into a private copy of the
# package.
bench-node: release
	@mkdir -p $(BENCH_NODE)/lib $(BENCH_NODE)/build
	cp -R bindings/node/lib/. $(BENCH_NODE)/lib/
	cp bindings/node/package.json $(BENCH_NODE)/package.json
	PORTWAY_PROFILE=release PORTWAY_SKIP_CARGO=1 PORTWAY_LIB=$(abspath $(RELEASE_DIR))/libportway.a \
	  PORTWAY_ADDON_OUT=$(abspath $(BENCH_NODE))/build/portway.node sh bindings/node/scripts/build.sh

# benches/core.rs, built by cargo (bench profile = release settings) and copied where run.py
# finds it.
bench-core:
	@mkdir -p $(BENCH_OUT)
	$(CARGO) bench --bench core --no-run --message-format=json-render-diagnostics > $(BENCH_OUT)/core-build.json
	@exe=$$($(PYTHON) -c 'import json,sys; print([m["executable"] for m in map(json.loads, open(sys.argv[1])) if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "core"][-1])' $(BENCH_OUT)/core-build.json) \
	  && cp "$$exe" $(BENCH_OUT)/core-bench && echo "benches/core.rs -> $(BENCH_OUT)/core-bench"
