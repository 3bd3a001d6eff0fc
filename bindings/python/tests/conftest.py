from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import portway

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def eng() -> Iterator[portway.Engine]:
    e = portway.Engine(runtime_threads=2, pool_workers=2)
    try:
        yield e
    finally:
        e.close(drain=False)


def child_env() -> dict[str, str]:
    """Environment for subprocesses: the same portway the tests imported."""
    env = dict(os.environ)
    env["PORTWAY_LIBRARY"] = portway.LIBRARY_PATH
    env["PYTHONPATH"] = str(Path(portway.__file__).resolve().parents[1])
    return env


class QuietHandler(BaseHTTPRequestHandler):
    """A keep-alive (HTTP/1.1) request handler that logs nothing; ``reply`` sends a response."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, code: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        """Sends ``code`` with ``headers`` (in order), a Content-Length and ``body``."""
        self.send_response(code)
        for k, v in headers or []:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LocalServer(ThreadingHTTPServer):
    """A threaded stdlib HTTP server for tests, on 127.0.0.1."""

    request_queue_size = 256  # the default backlog of 5 resets concurrent connects
    daemon_threads = True


def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Runs `handler` on a random local port; yields the base URL, stops the server after."""
    srv = LocalServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
