# mk/bench-tls.mk: what the W3-TLS row of `make bench` needs beyond mk/bench.mk (issue 14).
# Included by the top-level Makefile.
#
# W3-TLS runs 20,000 GETs over TLS + HTTP/2 against a local nginx that bench/run.py starts with
# a throwaway CA and server certificate it makes with the openssl CLI (everything under
# target/bench/nginx-tls, removed afterwards). So `make bench` (and `make test`'s QUICK run)
# also needs:
#   - nginx: Debian's nginx-light, installed when missing by `nginx-installed` (mk/http-real.mk);
#   - the openssl CLI (Debian `openssl`, installed when missing);
#   - httpx with HTTP/2 (`httpx[http2]`) in the bench venv, for the httpx anchor.
# When one cannot be installed, bench/run.py names what is missing and the run fails (unless
# --allow-missing).

# Literal paths: this file is included before mk/bench.mk, whose variables are not set yet
# when the rule lines below are read (recipes are expanded later, so they may use them).
BENCH_TLS_STAMP := target/bench-venv/.bench-tls-deps

.PHONY: bench-tls-deps

bench-deps: bench-tls-deps

bench-tls-deps: nginx-installed $(BENCH_TLS_STAMP)
	@command -v openssl >/dev/null 2>&1 || { \
	  echo "bench: installing openssl"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }

# A separate stamp, so that a venv made before W3-TLS existed gets httpx too.
$(BENCH_TLS_STAMP): target/bench-venv/.bench-deps
	$(BENCH_PY) -m pip install -q --disable-pip-version-check 'httpx[http2]'
	touch $@
