"""portway.Client: HTTP the way httpx code is written, over portway's engine.

    python examples/python/client.py            # against a small local server it starts
    python examples/python/client.py URL        # GETs URL too (e.g. https://example.com/)

Code written for httpx moves over by changing the import (``import portway as httpx``); the
client adds ``get_many``/``stream_many`` for fan-out, where the engine shines.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

import portway


class Demo(BaseHTTPRequestHandler):
    """/items/N answers JSON; /old redirects to /items/1; /missing is a 404."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/old":
            self.send_response(301)
            self.send_header("Location", "/items/1")
            body = b""
        elif self.path.startswith("/items/"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            item: dict[str, str] = {"item": self.path.split("/")[2].split("?")[0], "query": self.path.partition("?")[2]}
            body = json.dumps(item).encode()
        else:
            self.send_response(404)
            body = b"no such thing"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        echo: dict[str, str | None] = {"you sent": data.decode(), "as": self.headers.get("Content-Type")}
        body = json.dumps(echo).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Demo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    with portway.Client(base_url=base, headers={"X-App": "demo"}, timeout=10) as client:
        r = client.get("/items/7", params={"verbose": True})
        print(r.status_code, r.reason_phrase, r.http_version, r.headers["content-type"], r.url)
        print("json:", cast(dict[str, str], r.json()))

        r = client.post("/items", json={"name": "widget", "tags": ["a", "b"]})
        print("post json ->", r.status_code, r.text)
        r = client.post("/items", data={"name": "form widget"})
        print("post form ->", r.text)

        r = client.get("/old", follow_redirects=True)
        print("redirected:", [h.status_code for h in r.history], "->", r.url)

        try:
            client.get("/missing").raise_for_status()
        except portway.HTTPStatusError as exc:
            print("raise_for_status:", exc.response.status_code, exc)

        # Fan-out: 200 GETs, at most 32 in flight, results in input order.
        done: list[int] = []
        rs = client.get_many([f"/items/{i}" for i in range(200)], window=32, on_progress=lambda d, t: done.append(d))
        assert all(x.is_success for x in rs) and done[-1] == 200
        print("get_many:", len(rs), "responses, first", rs[0].text)

        if len(sys.argv) > 1:
            r = client.get(sys.argv[1], follow_redirects=True)
            print(sys.argv[1], "->", r.status_code, r.http_version, len(r.content), "bytes")

    async def fan_out() -> None:
        async with portway.AsyncClient(base_url=base) as aclient:
            first = await aclient.get("/items/1")
            print("async:", first.status_code)
            # As completed; r.index says which input URL each response answers.
            seen = [r.index async for r in aclient.stream_many((f"/items/{i}" for i in range(100)), window=16)]
            assert sorted(i for i in seen if i is not None) == list(range(100))
            print("stream_many:", len(seen), "responses, as they completed")

    asyncio.run(fan_out())
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
