"""eng.http()/ahttp() against a local stdlib ThreadingHTTPServer.

Skipped while the engine has no "http" handler (the handler lands separately)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

import portway
import portway._lib
from portway._http import build_request

from conftest import serve


def _has_http() -> bool:
    with portway.Engine(runtime_threads=1, pool_workers=1) as e:
        return e.has_handler("http")


needs_http = pytest.mark.skipif(
    not _has_http(), reason='the engine has no "http" handler yet (portway_handler_lookup -> NOT_FOUND)'
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes, ctype: str = "text/plain", extra: list[tuple[str, str]] = []) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/hello":
            self._send(200, b"hello world", extra=[("X-One", "1"), ("X-Two", "2")])
        elif self.path == "/json":
            self._send(200, json.dumps({"a": [1, 2], "b": "\u00e9"}).encode(), "application/json; charset=utf-8")
        elif self.path == "/slow":
            time.sleep(2)
            self._send(200, b"late")
        elif self.path == "/headers":
            self._send(200, json.dumps(dict(self.headers.items())).encode(), "application/json")
        else:
            self._send(404, b"not found")

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self._send(201, json.dumps({"got": body.decode(), "path": self.path}).encode(), "application/json")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    yield from serve(Handler)


def test_build_request() -> None:
    raw = build_request("POST", "http://example.test:81/a?b=1", {"X-K": "v"}, b"{}")
    assert raw == (
        b"POST http://example.test:81/a?b=1 HTTP/1.1\r\nHost: example.test:81\r\nX-K: v\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    assert build_request("GET", "http://h/", [("Host", "other")]) == b"GET http://h/ HTTP/1.1\r\nHost: other\r\n\r\n"
    with pytest.raises(ValueError):
        build_request("GET", "/relative")
    with pytest.raises(ValueError):
        build_request("GET", "http://h/", {"X": "a\r\nInjected: 1"})


def test_header_names_must_be_tokens() -> None:
    # A colon in a name used to split it: {"X:Y": "1"} went out as header "X" with value "Y: 1".
    for name in ("X:Y", "X Y", "", "X\x00", "X\r\nY", "é", "(x)"):
        with pytest.raises(portway.InvalidArgumentError, match="RFC 9110 token"):
            build_request("GET", "http://h/", {name: "1"})
    for value in ("a\x00b", "a\rb", "a\nb"):
        with pytest.raises(portway.InvalidArgumentError, match="CR, LF and NUL"):
            build_request("GET", "http://h/", [("X-A", value)])
    ok = build_request("GET", "http://h/", {"X-Odd_!#$%&'*+.^`|~9": "v: w"})
    assert b"\r\nX-Odd_!#$%&'*+.^`|~9: v: w\r\n" in ok


def test_http_response_helpers() -> None:
    r = portway.HttpResponse(200, [("Content-Type", "text/plain; charset=latin-1")], "é".encode("latin-1"))
    assert r.text() == "é" and r.header("content-type") is not None and r.ok
    assert portway.HttpResponse(200, [], b'{"x": 1}').json() == {"x": 1}


@needs_http
def test_status_headers_body(eng: portway.Engine, server: str) -> None:
    resp = eng.http("GET", server + "/hello").result(timeout=10)
    assert isinstance(resp, portway.HttpResponse)
    assert resp.status == 200
    assert resp.body == b"hello world" and resp.text() == "hello world"
    names = [k.lower() for k, _ in resp.headers]
    assert names.index("x-one") < names.index("x-two")
    assert resp.header("X-Two") == "2"
    # The version comes apart from the headers.
    assert resp.http_version == "HTTP/1.1"
    assert ":http-version" not in names


@needs_http
def test_json_and_post(eng: portway.Engine, server: str) -> None:
    assert eng.http("GET", server + "/json").result(timeout=10).json() == {"a": [1, 2], "b": "\u00e9"}
    resp = eng.http("POST", server + "/items", headers={"Content-Type": "application/json"}, body=b'{"k":1}').result(
        timeout=10
    )
    assert resp.status == 201 and resp.json() == {"got": '{"k":1}', "path": "/items"}
    echoed = eng.http("GET", server + "/headers", headers=[("X-Custom", "yes")]).result(timeout=10).json()
    assert {k.lower(): v for k, v in echoed.items()}.get("x-custom") == "yes"


@needs_http
def test_404_is_a_response(eng: portway.Engine, server: str) -> None:
    resp = eng.http("GET", server + "/missing").result(timeout=10)
    assert resp.status == 404 and resp.body == b"not found" and not resp.ok


@needs_http
def test_connect_refused(eng: portway.Engine) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(portway.ConnectError) as info:
        eng.http("GET", f"http://127.0.0.1:{port}/").result(timeout=10)
    assert info.value.status == portway.Status.CONNECT_ERROR


@needs_http
def test_timeout(eng: portway.Engine, server: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(portway.TimeoutError):
        eng.http("GET", server + "/slow", timeout=0.2).result(timeout=10)
    assert time.monotonic() - t0 < 1.5


@needs_http
def test_ahttp_gather(eng: portway.Engine, server: str) -> None:
    async def main() -> list[portway.HttpResponse]:
        return await asyncio.gather(
            *(eng.ahttp("GET", server + "/hello") for _ in range(50)),
            eng.ahttp("POST", server + "/p", body=b"{}"),
        )

    out = asyncio.run(main())
    assert all(r.status == 200 and r.body == b"hello world" for r in out[:50])
    assert out[50].status == 201 and out[50].json()["got"] == "{}"


@needs_http
def test_register_http_with_limits(eng: portway.Engine, server: str) -> None:
    if not hasattr(portway._lib.LIB, "portway_register_http"):
        pytest.skip("library predates portway_register_http")
    eng.register_http("small", max_body_bytes=4, user_agent="portway-test/1")
    with pytest.raises(portway.BodyTooLargeError):
        eng.http("GET", server + "/hello", handler="small").result(timeout=10)
    with pytest.raises(TypeError):  # the options are typed keywords now
        eng.register_http("bad", no_such_option=1)  # type: ignore[call-arg]


@needs_http
def test_read_timeout_ms(eng: portway.Engine, server: str) -> None:
    # The /slow handler answers after 2 s: a 200 ms read timeout ends the request on its own.
    eng.register_http("impatient", read_timeout_ms=200)
    with pytest.raises(portway.TimeoutError, match="read_timeout_ms"):
        eng.http("GET", server + "/slow", handler="impatient").result(timeout=10)
    assert eng.http("GET", server + "/hello", handler="impatient").result(timeout=10).body == b"hello world"
