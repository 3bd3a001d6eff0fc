"""A WSGI app for gunicorn and uWSGI with one portway engine per worker process (docs/DEPLOYING.md).

    gunicorn -c examples/deploy/gunicorn.conf.py wsgi_app:app
    uwsgi --ini examples/deploy/uwsgi.ini   (through uwsgi_app.py)

Endpoints:
    GET /fanout?n=50&ms=20   n "sleep" requests of ms milliseconds and n "echo" requests, all in
                             flight at once; answers {"pid", "n", "ok", "sum"} where ok counts the
                             sleeps that succeeded and sum adds up the echoed numbers 0..n-1
    GET /metrics             this worker's Prometheus text (the per-worker metrics port serves
                             the same; scrape those, see start_metrics_server)

An engine owns threads, and threads do not survive fork(): an engine made in the gunicorn master
(e.g. at import time under --preload) refuses every call in the workers with ForkedError.
``engine()`` creates one per process on first use, so the app is correct with or without
--preload; gunicorn.conf.py's post_fork hook calls it early so the first request is not slower.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import portway

_engine: portway.Engine | None = None
_engine_pid = 0
_lock = threading.Lock()

# Bounds of /fanout's query, so one request cannot take a worker's every slot or minute.
MAX_N = 10_000
MAX_MS = 10_000


def engine() -> portway.Engine:
    """This process's engine, created on first use in each process (never inherited)."""
    global _engine, _engine_pid
    pid = os.getpid()
    if _engine is None or _engine_pid != pid:
        with _lock:
            if _engine is None or _engine_pid != pid:
                _engine = portway.Engine()
                _engine_pid = pid
    return _engine


def close_engine() -> None:
    """Closes this process's engine, letting in-flight work finish (gunicorn's worker_exit)."""
    global _engine
    with _lock:
        if _engine is not None and _engine_pid == os.getpid():
            _engine.close(drain=True, timeout=10.0)
        _engine = None


def fanout(n: int, ms: int) -> dict[str, int]:
    eng = engine()
    sleeps = eng.submit_many("sleep", [str(ms).encode()] * n, timeout=30.0)
    echoes = eng.submit_many("echo", [str(i).encode() for i in range(n)], timeout=30.0)
    ok = sum(1 for f in sleeps if f.result().ok)
    total = sum(int(f.result().data) for f in echoes)
    return {"pid": os.getpid(), "n": n, "ok": ok, "sum": total}


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = engine().metrics_text().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not news
        pass


def start_metrics_server(host: str, base: int, count: int) -> int:
    """Serves this worker's /metrics on the first free port of base..base+count-1 (a worker
    that died frees its port for its replacement) and returns the port. Prometheus scrapes all
    of them and sums: the shared app port would reach a different worker on each scrape."""
    for port in range(base, base + count):
        try:
            server = http.server.ThreadingHTTPServer((host, port), _MetricsHandler)
        except OSError:
            continue
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return port
    raise RuntimeError(f"no free metrics port in {base}..{base + count - 1}")


StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI entry point."""
    path = environ.get("PATH_INFO", "")
    if path == "/fanout":
        q = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        try:
            n = int(q.get("n", ["50"])[0])
            ms = int(q.get("ms", ["20"])[0])
        except ValueError:
            n = ms = -1
        if not (0 < n <= MAX_N and 0 <= ms <= MAX_MS):
            return _reply(start_response, "400 Bad Request", "text/plain", f"n in 1..{MAX_N}, ms in 0..{MAX_MS}\n")
        return _reply(start_response, "200 OK", "application/json", json.dumps(fanout(n, ms)) + "\n")
    if path == "/metrics":
        return _reply(start_response, "200 OK", "text/plain; version=0.0.4", engine().metrics_text())
    return _reply(start_response, "404 Not Found", "text/plain", "not found\n")


def _reply(start_response: StartResponse, status: str, ctype: str, text: str) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]
