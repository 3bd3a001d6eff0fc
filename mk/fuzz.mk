# mk/fuzz.mk: fuzzing and the Rust suites under AddressSanitizer (issue 12). Both need the
# nightly toolchain and are not part of `make test`; the committed corpora are replayed on
# stable by tests/fuzz_replay.rs, which `make test` runs. docs/FUZZING.md says more.
#
#   make fuzz FUZZ_SECONDS=N      every target for N seconds (default 60), one after the other,
#                                 one process each (libFuzzer + ASan + debug assertions);
#                                 new inputs go to target/fuzz/corpus/<target>, a crash to
#                                 fuzz/artifacts/<target>/ and stops the run (non-zero exit)
#   make fuzz FUZZ_TARGETS="api_sequence" FUZZ_ARGS="-max_len=512"
#                                 some targets only, extra libFuzzer options
#   make fuzz-cmin                merge target/fuzz/corpus/<target> into fuzz/corpus/<target>
#                                 and minimize it (cargo fuzz cmin): what gets committed
#   make test-asan-rust           the Rust unit and integration tests built with
#                                 -Zsanitizer=address (target/asan)

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= http_request_head http_response meta sleep_payload api_sequence
FUZZ_ARGS    ?=
FUZZ_OUT     := target/fuzz
ASAN_TARGET  := x86_64-unknown-linux-gnu

.PHONY: fuzz fuzz-build fuzz-cmin fuzz-tools nightly-check test-asan-rust

# Fails, saying what to install, instead of skipping silently.
nightly-check:
	@$(CARGO) +nightly --version >/dev/null 2>&1 || { \
	  echo "error: this target needs the nightly Rust toolchain (cargo +nightly)."; \
	  echo "       install it with: rustup toolchain install nightly"; exit 1; }

fuzz-tools: nightly-check
	@$(CARGO) +nightly fuzz --version >/dev/null 2>&1 || { \
	  echo "error: cargo-fuzz is not installed."; \
	  echo "       install it with: cargo install cargo-fuzz"; exit 1; }

fuzz-build: fuzz-tools
	$(CARGO) +nightly fuzz build --target-dir $(FUZZ_OUT)

fuzz: fuzz-build
	@mkdir -p $(FUZZ_OUT)/logs
	@set -eo pipefail; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_OUT)/corpus/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s (log: $(FUZZ_OUT)/logs/$$t.log)"; \
	  $(CARGO) +nightly fuzz run --target-dir $(FUZZ_OUT) $$t $(FUZZ_OUT)/corpus/$$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(FUZZ_ARGS) > $(FUZZ_OUT)/logs/$$t.log 2>&1 \
	    || { tail -n 60 $(FUZZ_OUT)/logs/$$t.log; echo "fuzz $$t FAILED: the input is in fuzz/artifacts/$$t/"; exit 1; }; \
	  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|DONE' $(FUZZ_OUT)/logs/$$t.log; \
	done

fuzz-cmin: fuzz-tools
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  if [ -d $(FUZZ_OUT)/corpus/$$t ]; then cp -n $(FUZZ_OUT)/corpus/$$t/* fuzz/corpus/$$t/ 2>/dev/null || true; fi; \
	  echo "== cmin $$t"; \
	  $(CARGO) +nightly fuzz cmin --target-dir $(FUZZ_OUT) $$t fuzz/corpus/$$t > $(FUZZ_OUT)/logs/cmin-$$t.log 2>&1 \
	    || { tail -n 30 $(FUZZ_OUT)/logs/cmin-$$t.log; exit 1; }; \
	  echo "   $$(ls fuzz/corpus/$$t | wc -l) files, $$(du -sk --apparent-size fuzz/corpus/$$t | cut -f1) KiB"; \
	done

# The unit and integration tests (not the doc tests) with AddressSanitizer on the Rust code
# (the standard library is not rebuilt, so its own code is not instrumented). Separate target
# dir: the flags change every crate's build.
test-asan-rust: nightly-check
	RUSTFLAGS="-Zsanitizer=address -Cforce-frame-pointers=yes" \
	ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" \
	  $(CARGO) +nightly test --target $(ASAN_TARGET) --target-dir target/asan --lib --tests -- --test-threads=2
