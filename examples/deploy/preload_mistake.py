"""What NOT to do under `gunicorn --preload` (docs/DEPLOYING.md shows the error it gives).

    gunicorn --preload -w 2 preload_mistake:app

The engine is created at import, which --preload runs in the master before it forks the
workers. The engine's threads stay in the master; in a worker every call raises
portway.ForkedError. Use wsgi_app.engine() (one per process) instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import portway

ENGINE = portway.Engine()  # the mistake: runs once, in the master


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Echoes the request path through the inherited engine: raises ForkedError in a worker."""
    data = ENGINE.submit("echo", environ.get("PATH_INFO", "/").encode()).result(5).data
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
