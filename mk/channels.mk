# mk/channels.mk: `make bench-channels`, the worker pool's channel (flume) measured against
# crossbeam-channel and tokio's mpsc in the engine's own pattern, with criterion.
# Included by the top-level Makefile; the full `make bench` ends with it (not `make test`).
#
#   make bench-channels   build bench/channels (its own crate, so criterion never enters the
#                         main crate's build) into target/, run it (about 35 s on 2 cores after
#                         the build) and write target/bench/channels.json: each channel's median
#                         jobs/s per group, 95% CI, sample range, ratio to flume and the verdict
#
# criterion writes its raw results under target/criterion/ (CRITERION_HOME, since the bench
# binary runs from bench/channels/ and would otherwise pick that crate's own target/).

CHANNELS_CRITERION := target/criterion

.PHONY: bench-channels

bench-channels:
	CRITERION_HOME=$(abspath $(CHANNELS_CRITERION)) \
	  $(CARGO) bench --manifest-path bench/channels/Cargo.toml --target-dir target \
	  --bench pool_channels
	$(PYTHON) bench/channels/summarize.py --criterion $(CHANNELS_CRITERION) \
	  --out target/bench/channels.json --markdown
