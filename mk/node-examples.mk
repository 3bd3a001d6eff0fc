# mk/node-examples.mk: the Node examples that run as smoke tests (issue 18). Included by the
# top-level Makefile; `make test` runs test-examples-node after test-node, which built the
# addon (a debug build is used as it is; one is made when there is none).
#   make test-examples-node   node examples/node/fetch.js (starts its own local server)
# examples/node/fanout.js is a benchmark (`make -C bindings/node bench`), not run here.

.PHONY: test-examples-node

test-examples-node:
	@if ! command -v node >/dev/null; then echo "node not installed: Node examples skipped"; exit 0; fi; \
	set -e; \
	[ -f bindings/node/build/portway.node ] || PORTWAY_PROFILE=debug $(MAKE) -C bindings/node build; \
	for e in fetch; do echo "== examples/node/$$e.js"; node examples/node/$$e.js >/dev/null; done
