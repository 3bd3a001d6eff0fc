# mk/cross_binding.mk: `make test-cross-binding`, one table of cases (tests/cross_binding/
# cases.json) run through the C ABI, the Python binding and the Node binding; compare.py prints
# the table and fails on any binding whose status differs from the decided one.
#
# Uses the debug static library (built for the C tests), the Python package in target/pyenv
# and the Node addon (debug profile, as test-node builds it); `bindings-ready` provides the
# last two when this runs on its own (mk/deploy.mk uses it too).

NPM       ?= npm
PYENV     := target/pyenv
CROSS_DIR := tests/cross_binding
CROSS_OUT := $(C_BUILD)/cross_binding

.PHONY: test-cross-binding bindings-ready

bindings-ready:
	@test -x $(PYENV)/bin/python && $(PYENV)/bin/python -c 'import portway' 2>/dev/null \
	  || $(MAKE) -C bindings/python install
	cd bindings/node && PORTWAY_PROFILE=debug $(NPM) install --offline --no-package-lock --no-audit --no-fund >/dev/null

test-cross-binding: lib bindings-ready
	@mkdir -p $(CROSS_OUT)
	$(CC) $(CFLAGS_C) $(CROSS_DIR)/driver.c $(DEBUG_DIR)/libportway.a -ldl -lm -o $(CROSS_OUT)/driver_c
	$(PYTHON) $(CROSS_DIR)/compare.py --c $(CROSS_OUT)/driver_c --python $(PYENV)/bin/python --node node
