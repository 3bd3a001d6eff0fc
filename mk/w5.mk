# mk/w5.mk: workload W5 of issue 16, an upstream with a capacity knee and a long tail
# (bench/w5/). Included by the top-level Makefile.
#
#   make bench-w5          builds the upstream (Go, standard library only, offline) and the C
#                          driver against the release library, then runs bench/w5/runner.py: a
#                          warm-up round and 5 measured rounds (about 11 minutes on 2 cores; the
#                          three rate rows hold a 1,000 req/s token bucket for 10 s each, the
#                          breaker row takes the upstream down for 3 s);
#                          writes bench/results/w5.json, bench/results/w5.png and the W5 section
#                          of BENCHMARKS.md
#   make bench-w5 QUICK=1  one round of fewer rows at a fifth of the size, with the count checks;
#                          writes under target/bench/w5/quick/ (the tree is left as it was)
#   make test-bench-w5     the upstream's Go tests (the knee and the tail on its own counts), then
#                          the quick run with --check (for `make test`; about 30 s after builds;
#                          the rate and breaker rows' checks are counts: the upstream started at
#                          most rate x window + burst, saw at most N + in flight + one trial per
#                          cooldown while down)
#   make bench-w5 W5_ARGS="--reps 3"    any bench/w5/runner.py option; W5_ARGS="--only rate,breaker"
#                          measures those groups alone (under target/bench/w5/only/)
#
# Uses what mk/bench.mk installs (bench-deps: golang-go; the bench venv with matplotlib).

W5_OUT    := $(BENCH_OUT)/w5
W5_ARGS   ?=
W5_GOENV  := GOCACHE=$(abspath $(BENCH_OUT)/go-cache) GOPATH=$(abspath $(BENCH_OUT)/go-path) \
             GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0

.PHONY: bench-w5 test-bench-w5 bench-w5-build test-w5-upstream

bench-w5: bench-w5-build
	$(BENCH_PY) bench/w5/runner.py $(if $(filter 1,$(QUICK)),--quick --check) $(W5_ARGS)

test-bench-w5: test-w5-upstream bench-w5-build
	$(BENCH_PY) bench/w5/runner.py --quick --check

test-w5-upstream: bench-deps
	cd bench/w5/upstream && $(W5_GOENV) go vet . && $(W5_GOENV) go test -count=1 .

bench-w5-build: bench-deps release
	@mkdir -p $(W5_OUT)
	cd bench/w5/upstream && $(W5_GOENV) go build -trimpath -o $(abspath $(W5_OUT))/w5-upstream .
	$(CC) $(BENCH_CFLAGS) -Iinclude bench/w5/driver.c -L$(RELEASE_DIR) \
	  -Wl,-rpath,$(abspath $(RELEASE_DIR)) -lportway -lm -o $(W5_OUT)/w5-driver
