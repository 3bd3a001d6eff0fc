# mk/install.mk: installing portway for C users (included by the top-level Makefile).
#
#   make install   PREFIX=/opt/portway   libportway.so.X.Y.Z (+ .so.X and .so links), libportway.a,
#                                         include/portway.h, lib/pkgconfig/portway.pc
#   make uninstall PREFIX=/opt/portway   removes exactly those files
#   make test-install                    installs into a temporary prefix, builds and runs
#                                         tests/install/hello.c with pkg-config only (shared and
#                                         --static), checks the soname, uninstalls, checks nothing is left
#
# PREFIX defaults to /usr/local; LIBDIR, INCLUDEDIR and PKGCONFIGDIR may be set separately, and
# DESTDIR stages the whole tree elsewhere (for packagers). The installed libraries are stripped
# of debug info (the release build keeps it for profiling: 28 MB shared, 85 MB static);
# INSTALL_DEBUG=1 keeps it, for packagers who split it off themselves. The soname major must
# match the `-soname` linker argument in build.rs.

PREFIX       ?= /usr/local
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALL      ?= install
PKG_CONFIG   ?= pkg-config
STRIP        ?= strip
INSTALL_DEBUG ?=

# The [package] version in Cargo.toml, e.g. 0.1.0; its first number is the soname major.
PORTWAY_VERSION := $(shell awk -F'"' '/^\[/ { pkg = ($$0 == "[package]") } pkg && /^version *=/ { print $$2; exit }' Cargo.toml)
PORTWAY_SOMAJOR := $(firstword $(subst ., ,$(PORTWAY_VERSION)))
PORTWAY_REALLIB := libportway.so.$(PORTWAY_VERSION)
PORTWAY_SONAME  := libportway.so.$(PORTWAY_SOMAJOR)

# In portway.pc, paths under PREFIX are written relative to ${prefix}.
PC_LIBDIR     = $(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))
PC_INCLUDEDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))

.PHONY: install uninstall test-install soname-link

# A build tree link target/release/libportway.so.0 -> libportway.so, so that programs linked
# with -Ltarget/release -lportway (whose DT_NEEDED is the soname) find the library through
# their rpath: the C examples, for one.
soname-link:
	@mkdir -p $(RELEASE_DIR)
	@ln -sfn libportway.so $(RELEASE_DIR)/$(PORTWAY_SONAME)
release: soname-link

install: release
	@test -n "$(PORTWAY_VERSION)" || { echo "install: no [package] version found in Cargo.toml"; exit 1; }
	@case "$(PREFIX)" in /*) ;; *) echo "install: PREFIX must be an absolute path, not '$(PREFIX)'"; exit 1;; esac
	$(INSTALL) -d "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(INCLUDEDIR)" "$(DESTDIR)$(PKGCONFIGDIR)"
	$(INSTALL) -m 0755 $(RELEASE_DIR)/libportway.so "$(DESTDIR)$(LIBDIR)/$(PORTWAY_REALLIB)"
	ln -sfn $(PORTWAY_REALLIB) "$(DESTDIR)$(LIBDIR)/$(PORTWAY_SONAME)"
	ln -sfn $(PORTWAY_SONAME) "$(DESTDIR)$(LIBDIR)/libportway.so"
	$(INSTALL) -m 0644 $(RELEASE_DIR)/libportway.a "$(DESTDIR)$(LIBDIR)/libportway.a"
	$(if $(filter 1,$(INSTALL_DEBUG)),,$(STRIP) --strip-debug "$(DESTDIR)$(LIBDIR)/$(PORTWAY_REALLIB)" "$(DESTDIR)$(LIBDIR)/libportway.a")
	$(INSTALL) -m 0644 include/portway.h "$(DESTDIR)$(INCLUDEDIR)/portway.h"
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(PC_LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(PC_INCLUDEDIR)|g' -e 's|@VERSION@|$(PORTWAY_VERSION)|g' \
	    portway.pc.in > $(RELEASE_DIR)/portway.pc
	$(INSTALL) -m 0644 $(RELEASE_DIR)/portway.pc "$(DESTDIR)$(PKGCONFIGDIR)/portway.pc"
	@echo "installed portway $(PORTWAY_VERSION) under $(DESTDIR)$(PREFIX)"
	@echo "  (if $(LIBDIR) is a system library directory, run ldconfig; otherwise set LD_LIBRARY_PATH or an rpath)"

uninstall:
	rm -f "$(DESTDIR)$(LIBDIR)/$(PORTWAY_REALLIB)" "$(DESTDIR)$(LIBDIR)/$(PORTWAY_SONAME)" \
	      "$(DESTDIR)$(LIBDIR)/libportway.so" "$(DESTDIR)$(LIBDIR)/libportway.a" \
	      "$(DESTDIR)$(INCLUDEDIR)/portway.h" "$(DESTDIR)$(PKGCONFIGDIR)/portway.pc"

# The install round trip. PKG_CONFIG_LIBDIR (not _PATH) so that a portway installed on the
# machine cannot stand in for the one under test. The static build is fully static (-static),
# which proves that Libs.private lists everything libportway.a needs.
TEST_INSTALL_OUT := $(C_BUILD)/install
TEST_INSTALL_CFLAGS := -std=c11 -Wall -Wextra -Werror -pedantic -O1

test-install: release
	@command -v $(PKG_CONFIG) >/dev/null || { echo "installing pkg-config"; (apt-get update -qq && apt-get install -y -qq pkgconf) >/dev/null; }
	@set -euo pipefail; \
	prefix=$$(mktemp -d "$${TMPDIR:-/tmp}/portway-prefix.XXXXXX"); \
	trap 'rm -rf "$$prefix"' EXIT; \
	out=$(TEST_INSTALL_OUT); mkdir -p $$out; \
	echo "== install into $$prefix"; \
	$(MAKE) --no-print-directory install PREFIX="$$prefix" >/dev/null; \
	lib=$$prefix/lib; \
	test -f $$lib/$(PORTWAY_REALLIB) -a ! -L $$lib/$(PORTWAY_REALLIB); \
	test "$$(readlink $$lib/$(PORTWAY_SONAME))" = $(PORTWAY_REALLIB); \
	test "$$(readlink $$lib/libportway.so)" = $(PORTWAY_SONAME); \
	test -f $$lib/libportway.a -a -f $$prefix/include/portway.h; \
	echo "== no debug info in what was installed"; \
	if readelf -S $$lib/$(PORTWAY_REALLIB) | grep -F .debug_info >/dev/null; then echo "libportway.so still carries debug info"; exit 1; fi; \
	echo "== soname"; \
	readelf -d $$lib/$(PORTWAY_REALLIB) | grep -F 'Library soname: [$(PORTWAY_SONAME)]'; \
	export PKG_CONFIG_LIBDIR=$$lib/pkgconfig; \
	echo "== pkg-config: $$($(PKG_CONFIG) --modversion portway)"; \
	test "$$($(PKG_CONFIG) --modversion portway)" = "$(PORTWAY_VERSION)"; \
	shared_flags=$$($(PKG_CONFIG) --cflags --libs portway); \
	static_flags=$$($(PKG_CONFIG) --static --cflags --libs portway); \
	echo "== shared: $(CC) hello.c $$shared_flags"; \
	$(CC) $(TEST_INSTALL_CFLAGS) tests/install/hello.c -o $$out/hello_shared $$shared_flags; \
	readelf -d $$out/hello_shared | grep -F 'Shared library: [$(PORTWAY_SONAME)]'; \
	LD_LIBRARY_PATH=$$lib $$out/hello_shared; \
	echo "== static: $(CC) -static hello.c $$static_flags"; \
	$(CC) $(TEST_INSTALL_CFLAGS) -static tests/install/hello.c -o $$out/hello_static $$static_flags 2>$$out/static_link.log \
	  || { cat $$out/static_link.log; exit 1; }; \
	if readelf -d $$out/hello_static 2>/dev/null | grep -F libportway >/dev/null; then echo "hello_static needs libportway.so"; exit 1; fi; \
	env -u LD_LIBRARY_PATH $$out/hello_static; \
	echo "== uninstall"; \
	$(MAKE) --no-print-directory uninstall PREFIX="$$prefix" >/dev/null; \
	left=$$(find "$$prefix" ! -type d); \
	if [ -n "$$left" ]; then echo "uninstall left files behind:"; echo "$$left"; exit 1; fi; \
	echo "test-install: passed"
