"""The local HTTP server the client tests and the httpx comparison run against."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

# Request headers the two libraries send differently by design (each names itself, asks
# for the encodings it can decode); everything else the server saw is reported.
NOT_REPORTED = ("user-agent", "accept-encoding", "connection")


class CompatHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(code)
        for k, v in headers or [("Content-Type", "text/plain")]:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if parts[0] == "echo":
            seen = {
                "method": self.command,
                "path": url.path,
                "query": url.query,
                "headers": sorted((k.lower(), v) for k, v in self.headers.items() if k.lower() not in NOT_REPORTED),
                "body": body.decode("latin-1"),
            }
            self._send(200, json.dumps(seen).encode(), [("Content-Type", "application/json"), ("X-Echo", "1")])
        elif parts[0] == "json":
            self._send(200, json.dumps({"a": [1, 2], "b": "\u00e9"}).encode(), [("Content-Type", "application/json; charset=utf-8")])
        elif parts[0] == "latin1":
            self._send(200, "caf\u00e9".encode("latin-1"), [("Content-Type", 'text/plain; charset="iso-8859-1"')])
        elif parts[0] == "multi":
            self._send(200, b"m", [("X-Multi", "one"), ("x-multi", "two"), ("Content-Type", "text/plain")])
        elif parts[0] == "status":
            self._send(int(parts[1]), b"status body")
        elif parts[0] == "redirect":
            self._send(int(parts[1]), b"", [("Location", "/echo?from=" + parts[1])])
        elif parts[0] == "chain":
            left = int(parts[1])
            to = f"/chain/{left - 1}" if left > 0 else "/echo?chain=done"
            self._send(302, b"", [("Location", to)])
        elif parts[0] == "loop":
            self._send(302, b"", [("Location", "/loop")])
        elif parts[0] == "to-other":
            to = parse_qs(url.query)["to"][0]
            self._send(302, b"", [("Location", to + "/echo?hop=other")])
        elif parts[0] == "slow":
            import time

            time.sleep(float(parts[1]))
            self._send(200, b"late")
        else:
            self._send(404, b"not found")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle
