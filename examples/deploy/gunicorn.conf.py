"""gunicorn settings for wsgi_app (docs/DEPLOYING.md): one portway engine per worker.

Environment: PORT (default 8000), WORKERS (default 2), METRICS_PORT (default 9100: worker
metrics on METRICS_PORT..METRICS_PORT+WORKERS-1; 0 turns them off).
"""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WORKERS", "2"))
worker_class = "sync"
# A fan-out request waits on its futures; give it longer than gunicorn's 30 s default allows.
timeout = 60
graceful_timeout = 15


def post_fork(server: Any, worker: Any) -> None:
    """Runs in each new worker: its own engine (never the master's) and its metrics port."""
    import wsgi_app

    wsgi_app.engine()
    base = int(os.environ.get("METRICS_PORT", "9100"))
    if base:
        port = wsgi_app.start_metrics_server("127.0.0.1", base, workers)
        server.log.info("worker %s: portway metrics on 127.0.0.1:%s/metrics", worker.pid, port)


def worker_exit(server: Any, worker: Any) -> None:
    """Runs in the worker as it exits: in-flight requests finish before the engine is freed."""
    import wsgi_app

    wsgi_app.close_engine()
