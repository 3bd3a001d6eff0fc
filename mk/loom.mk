# mk/loom.mk: `make loom`, the loom models of the completion queue, the ledger, requests and
# the recycler (src/engine/loom_models.rs; issue 12). Included by the top-level Makefile.
#
#   make loom                          every model, at most 4 preemptions per interleaving
#                                      (about 1.5 minutes on 2 cores after the build)
#   make loom LOOM_MAX_PREEMPTIONS=    no bound at all: the two four-thread models did not
#                                      finish within 15 minutes
#   make test-loom                     at most 2 preemptions (a few seconds): what `make test` runs
#
# The models need `--cfg portway_loom` (src/engine/sync.rs then swaps std's synchronisation
# types for loom's). That flag goes to every crate through RUSTFLAGS, so the build has its own
# target directory, target/loom (the first build compiles every dependency, a few minutes):
# sharing target/ would rebuild them each time `make loom` and an ordinary build alternate.
# A cfg of our own, not `loom`, which would switch tokio into its own loom mode. Release
# mode: the models run about ten times faster.

LOOM_TARGET          := target/loom
LOOM_MAX_PREEMPTIONS ?= 4
LOOM_BOUNDED         := 2

.PHONY: loom test-loom

loom:
	RUSTFLAGS="--cfg portway_loom" CARGO_TARGET_DIR=$(LOOM_TARGET) \
	  $(if $(LOOM_MAX_PREEMPTIONS),LOOM_MAX_PREEMPTIONS=$(LOOM_MAX_PREEMPTIONS)) \
	  $(CARGO) test --release --lib loom_ -- --test-threads=2

test-loom:
	$(MAKE) --no-print-directory loom LOOM_MAX_PREEMPTIONS=$(LOOM_BOUNDED)
