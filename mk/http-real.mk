# mk/http-real.mk: the http handler against a real nginx (tests/http_nginx.rs).
# Included by the top-level Makefile.
#
#   make nginx-installed   installs Debian's nginx-light when no nginx is found (as root,
#                          through apt-get; `apt-get update` first when the package is
#                          unknown). Runs before test-rust, so `make test` has nginx.
#   make test-http-real    the nginx test alone (TLS, HTTP/2, gzip, GOAWAY, cold bursts).
#
# Without nginx (not root, no package source) the test passes with a loud SKIPPED message.

NGINX_BIN := $(firstword $(wildcard /usr/sbin/nginx) $(shell command -v nginx 2>/dev/null))

.PHONY: nginx-installed test-http-real

nginx-installed:
ifeq ($(NGINX_BIN),)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing nginx-light for tests/http_nginx.rs"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null 2>&1; } || \
	  echo "*** could not install nginx-light: tests/http_nginx.rs will be skipped ***"; \
	else \
	  echo "*** nginx is missing and cannot be installed here (needs root and apt-get): tests/http_nginx.rs will be skipped ***"; \
	fi
endif

test-rust: nginx-installed

test-http-real: nginx-installed
	$(CARGO) test --test http_nginx -- --nocapture
