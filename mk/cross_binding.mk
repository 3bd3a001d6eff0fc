# mk/cross_binding.mk: `make test-cross-binding`, one table of cases (tests/cross_binding/
# cases.json) run through the C ABI, the Python binding and the Node binding; compare.py prints
# the table and fails on any binding whose status differs from the decided one.
#
# Uses the debug static library (built for the C tests), the Python package in target/pyenv
# (installed by test-python; installed here if missing) and the Node addon (debug profile, as
# test-node builds it).

NPM       ?= npm
CROSS_DIR := tests/cross_binding
CROSS_OUT := $(C_BUILD)/cross_binding

.PHONY: test-cross-binding

test-cross-binding: lib
	@mkdir -p $(CROSS_OUT)
	$(CC) $(CFLAGS_C) $(CROSS_DIR)/driver.c $(DEBUG_DIR)/libportway.a -ldl -lm -o $(CROSS_OUT)/driver_c
	@test -x target/pyenv/bin/python && target/pyenv/bin/python -c 'import portway' 2>/dev/null \
	  || $(MAKE) -C bindings/python install
	cd bindings/node && PORTWAY_PROFILE=debug $(NPM) install --offline --no-package-lock --no-audit --no-fund >/dev/null
	$(PYTHON) $(CROSS_DIR)/compare.py --c $(CROSS_OUT)/driver_c --python target/pyenv/bin/python --node node
