"""A small stdlib HTTP service that fans work out through portway and exposes its insides.

    python examples/python/metrics_server.py [PORT] [--self-test]

Endpoints:
    GET /work?n=50&ms=20   runs n portway "sleep" requests of ms milliseconds concurrently
    GET /metrics           Prometheus text exposition (scrape it with Prometheus or curl)
    GET /debug/inflight    JSON dump of the requests in flight, oldest first

With --self-test it binds a free port, calls each endpoint once, checks the answers and exits.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
import urllib.parse
import urllib.request
from http.client import HTTPResponse
from typing import cast

import portway

ENGINE = portway.Engine()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/metrics":
            self.reply(200, "text/plain; version=0.0.4", ENGINE.metrics_text().encode())
        elif url.path == "/debug/inflight":
            self.reply(200, "application/json", ENGINE.inflight_json(limit=100).encode())
        elif url.path == "/work":
            q = urllib.parse.parse_qs(url.query)
            n = min(int(q.get("n", ["50"])[0]), 10_000)
            ms = min(int(q.get("ms", ["20"])[0]), 10_000)
            futures = ENGINE.submit_many("sleep", [str(ms).encode()] * n, timeout=5.0)
            ok = sum(1 for f in futures if f.result().ok)
            answer: dict[str, int] = {"requests": n, "ok": ok}
            self.reply(200, "application/json", json.dumps(answer).encode())
        else:
            self.reply(404, "text/plain", b"not found\n")

    def reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def get(url: str) -> bytes:
    """The body of a GET (urlopen's return type is not declared: say what it is)."""
    with cast(HTTPResponse, urllib.request.urlopen(url)) as resp:
        return resp.read()


def self_test(base: str) -> int:
    work: object = json.loads(get(f"{base}/work?n=20&ms=5"))
    assert work == {"requests": 20, "ok": 20}, work
    metrics = get(f"{base}/metrics").decode()
    assert 'portway_requests_submitted_total{handler="sleep"} 20' in metrics, metrics
    inflight: portway.Inflight = json.loads(get(f"{base}/debug/inflight"))
    assert inflight["total"] == 0, inflight
    print("metrics_server self-test: /work, /metrics and /debug/inflight answered correctly")
    return 0


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    port = int(args[0]) if args else (0 if "--self-test" in sys.argv else 8000)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    if "--self-test" in sys.argv:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            return self_test(base)
        finally:
            server.shutdown()
            ENGINE.close()
    print(f"serving on {base}: try {base}/work?n=100&ms=50 then {base}/metrics")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        ENGINE.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
