# portway — build, test, demo and benchmark entry points.
#   make demo    build everything and run the examples end to end
#   make test    install what the tests need and run every suite
#   make header  regenerate include/portway.h from the Rust sources
#   make bench   run the benchmarks (release build)

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
CC ?= cc
CXX ?= c++

DEBUG_DIR   := target/debug
RELEASE_DIR := target/release
C_BUILD     := target/c
CFLAGS_C    := -std=c11 -Wall -Wextra -Werror -g -O1 -Iinclude -pthread
SAN_FLAGS   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
C_TESTS     := $(basename $(notdir $(wildcard tests/c/test_*.c)))
C_EXAMPLES  := $(basename $(notdir $(wildcard examples/c/*.c)))

.PHONY: all lib release header header-check lint test test-rust test-c test-c-asan test-c-valgrind test-examples test-examples-python test-quickstart \
        test-header-alone test-python test-node deps examples demo bench clean

all: lib

lib:
	$(CARGO) build

release:
	$(CARGO) build --release

# The header cbindgen wrote into OUT_DIR during the last debug build.
GENERATED_HEADER = $$($(PYTHON) tools/generated_header.py)

header:
	cp "$(GENERATED_HEADER)" include/portway.h
	@echo "include/portway.h regenerated"

header-check:
	diff -u include/portway.h "$(GENERATED_HEADER)" || { echo "include/portway.h is stale: run 'make header'"; exit 1; }

# ---------------------------------------------------------------- tests

test: lint test-rust test-loom test-c test-examples test-install test-python test-examples-python test-node test-examples-node test-quickstart test-dist test-deploy test-bench test-bench-w5 test-cross-binding
	@echo "make test: every suite passed"

# Formatting and lints (warnings are errors).
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --quiet

# Unit, integration and doc tests (benches are run by `make bench`, not here).
test-rust:
	$(CARGO) test -- --test-threads=2

test-c: test-header-alone test-c-asan test-c-valgrind

test-header-alone: lib
	@mkdir -p $(C_BUILD)
	$(CC) $(CFLAGS_C) -pedantic -c tests/c/header_alone.c -o $(C_BUILD)/header_alone_c.o
	cp tests/c/header_alone.c $(C_BUILD)/header_alone.cpp
	$(CXX) -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude -c $(C_BUILD)/header_alone.cpp -o $(C_BUILD)/header_alone_cpp.o

# C programs built against the static library with ASan + UBSan.
test-c-asan: lib
	@mkdir -p $(C_BUILD)/asan
	@set -e; for t in $(C_TESTS); do \
	  $(CC) $(CFLAGS_C) $(SAN_FLAGS) tests/c/$$t.c $(DEBUG_DIR)/libportway.a -ldl -lm -o $(C_BUILD)/asan/$$t; \
	  echo "== asan $$t"; ASAN_OPTIONS=detect_leaks=1 $(C_BUILD)/asan/$$t; \
	done

# The same programs, plain, under valgrind (tools/valgrind_test.sh: a failure ends with a line
# naming the program and why). VALGRIND_ARGS adds options, e.g. --fair-sched=yes.
test-c-valgrind: lib
	@command -v valgrind >/dev/null || { echo "installing valgrind"; (apt-get update -qq && apt-get install -y -qq valgrind) >/dev/null; }
	@mkdir -p $(C_BUILD)/plain
	@set -e; for t in $(C_TESTS); do \
	  $(CC) $(CFLAGS_C) tests/c/$$t.c $(DEBUG_DIR)/libportway.a -ldl -lm -o $(C_BUILD)/plain/$$t; \
	  echo "== valgrind $$t"; tools/valgrind_test.sh $(C_BUILD)/plain/$$t $(VALGRIND_ARGS); \
	done

test-python:
	@if [ -d bindings/python ]; then $(MAKE) -C bindings/python test; else echo "python binding not present yet"; fi

test-node:
	@if [ -d bindings/node ]; then $(MAKE) -C bindings/node test; else echo "node binding not present yet"; fi

# The Python examples run as smoke tests against the package test-python installed.
test-examples-python:
	@set -e; for e in worker_pool asyncio_gather client; do echo "== examples/python/$$e.py"; target/pyenv/bin/python examples/python/$$e.py >/dev/null; done
	target/pyenv/bin/python examples/python/metrics_server.py --self-test

# The README's quick starts, run exactly as written (after the Python and Node builds).
test-quickstart: release
	$(PYTHON) tools/check_readme.py $(abspath target/pyenv/bin/python)

# ---------------------------------------------------------------- examples and demo

examples: release
	@mkdir -p $(C_BUILD)/examples
	@set -e; for e in $(C_EXAMPLES); do \
	  $(CC) $(CFLAGS_C) -O2 examples/c/$$e.c -L$(RELEASE_DIR) -Wl,-rpath,$(abspath $(RELEASE_DIR)) -lportway -o $(C_BUILD)/examples/$$e; \
	done

# The C examples other than fanout (which needs a server) run as smoke tests.
test-examples: examples
	@set -e; for e in $(filter-out fanout,$(C_EXAMPLES)); do echo "== examples/c/$$e"; $(C_BUILD)/examples/$$e >/dev/null; done

demo: examples
	$(CARGO) build --release --example demo_server
	$(MAKE) -C bindings/python install
	@if command -v node >/dev/null; then $(MAKE) -C bindings/node build; fi
	bash tools/demo.sh

clean:
	$(CARGO) clean
	rm -rf $(C_BUILD)

include mk/*.mk
