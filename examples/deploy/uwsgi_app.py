"""uWSGI entry point for wsgi_app (docs/DEPLOYING.md): with ``lazy-apps = true`` (uwsgi.ini)
uWSGI imports this module in each worker after the fork, so what it starts is the worker's own.

    uwsgi --ini examples/deploy/uwsgi.ini
"""

from __future__ import annotations

import atexit
import os

from wsgi_app import app, close_engine, engine, start_metrics_server

engine()  # this worker's engine, made now so the first request does not pay for it
atexit.register(close_engine)  # let in-flight requests finish when the worker stops
_base = int(os.environ.get("METRICS_PORT", "9100"))
if _base:
    _port = start_metrics_server("127.0.0.1", _base, int(os.environ.get("WORKERS", "2")))
    print(f"worker {os.getpid()}: portway metrics on 127.0.0.1:{_port}/metrics", flush=True)

__all__ = ["app"]
