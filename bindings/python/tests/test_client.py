"""portway.Client / AsyncClient beyond what the httpx comparison covers: fan-out, redirect
rules, shared engines, argument errors and typed transport errors."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import portway
from client_compat.server import CompatHandler
from conftest import serve


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    yield from serve(CompatHandler)


@pytest.fixture
def client(base: str) -> Iterator[portway.Client]:
    with portway.Client(base_url=base, timeout=30) as c:
        yield c


def echoed(r: portway.Response) -> dict[str, Any]:
    out: dict[str, Any] = r.json()
    return out


def test_get_many_is_ordered_and_reports_progress(client: portway.Client) -> None:
    urls = [f"/echo?i={i}" for i in range(50)]
    progress: list[tuple[int, int]] = []
    rs = client.get_many(urls, window=7, on_progress=lambda d, t: progress.append((d, t)))
    assert [echoed(r)["query"] for r in rs] == [f"i={i}" for i in range(50)]
    assert [r.index for r in rs] == list(range(50))
    assert progress == [(d, 50) for d in range(1, 51)]


def test_get_many_follows_redirects_in_place(client: portway.Client) -> None:
    rs = client.get_many(["/chain/2", "/echo?x=1", "/redirect/307"], follow_redirects=True, window=2)
    assert [r.status_code for r in rs] == [200, 200, 200]
    assert [len(r.history) for r in rs] == [3, 0, 1]
    assert rs[0].url.endswith("/echo?chain=done") and rs[2].url.endswith("/echo?from=307")


def test_get_many_errors(client: portway.Client) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}/"
    with pytest.raises(portway.ConnectError):
        client.get_many(["/echo", dead, "/echo"])
    rs: list[Any] = client.get_many(["/echo", dead, "/loop"], return_exceptions=True, follow_redirects=True)
    assert rs[0].status_code == 200
    assert isinstance(rs[1], portway.ConnectError)
    assert isinstance(rs[2], portway.TooManyRedirects) and isinstance(rs[2], portway.ProtocolError)
    with portway.Client(base_url=client.base_url, timeout=60) as c:  # the rest is cancelled
        with pytest.raises(portway.ConnectError):
            c.get_many([dead, "/slow/20"])
        stats = c.engine.stats()
        assert stats["completed"].get("CANCELLED") == 1, stats
    with pytest.raises(portway.InvalidArgumentError):
        client.get_many(["/echo"], window=0)
    with pytest.raises(portway.InvalidArgumentError):  # checked before anything is sent
        portway.Client().get_many(["http://127.0.0.1:1/", "relative"])


def test_stream_many_maps_results_by_index(base: str) -> None:
    async def main() -> list[tuple[int, str]]:
        async with portway.AsyncClient(base_url=base) as client:
            seen = [(r.index, echoed(r)["query"]) async for r in client.stream_many((f"/echo?i={i}" for i in range(40)), window=5)]
            ordered = await client.get_many([f"/echo?i={i}" for i in range(5)])
            assert [echoed(r)["query"] for r in ordered] == [f"i={i}" for i in range(5)]
            return [(i, q) for i, q in seen if i is not None]

    seen = asyncio.run(main())
    assert sorted(seen) == [(i, f"i={i}") for i in range(40)]


def test_stream_many_raises_and_cancels_the_rest(base: str) -> None:
    async def main() -> None:
        async with portway.AsyncClient(base_url=base, timeout=60) as client:
            with pytest.raises(portway.ConnectError) as info:
                async for _ in client.stream_many(["/slow/20", f"http://127.0.0.1:{_closed_port()}/"]):
                    pass
            assert "index 1" in str(getattr(info.value, "__notes__", []))
            # The slow one was cancelled, not waited for (stream_many awaited its end).
            stats = client.engine.stats()
            assert stats["in_flight"] == 0 and stats["completed"].get("CANCELLED") == 1, stats

    asyncio.run(main())


def test_async_client_request_shapes(base: str) -> None:
    async def main() -> None:
        async with portway.AsyncClient(base_url=base, params={"api": "1"}, auth=("u", "p")) as client:
            r = await client.post("/redirect/303", json={"a": 1}, follow_redirects=True)
            assert echoed(r)["method"] == "GET" and r.history[0].status_code == 303
            r = await client.put("/echo", data={"k": "v w"})
            seen = echoed(r)
            assert seen["body"] == "k=v+w" and seen["query"] == "api=1"
            assert ["authorization", "Basic dTpw"] in seen["headers"]
            with pytest.raises(portway.HTTPStatusError) as info:
                (await client.get("/status/418")).raise_for_status()
            assert info.value.response.status_code == 418 and isinstance(info.value, portway.PortwayError)
        assert client.is_closed
        with pytest.raises(portway.ClosedError):
            await client.get("/echo")

    asyncio.run(main())


def test_redirect_rules(client: portway.Client, base: str) -> None:
    other = base.replace("127.0.0.1", "localhost")
    # 307/308 keep method and body; 301 keeps a PUT; 302/303 turn it into a bodiless GET.
    for code, method, body in ((307, "PUT", "b"), (308, "PUT", "b"), (301, "PUT", "b"), (302, "GET", ""), (303, "GET", "")):
        r = client.put(f"/redirect/{code}", content="b", headers={"Content-Type": "text/plain"}, follow_redirects=True)
        seen = echoed(r)
        assert (seen["method"], seen["body"]) == (method, body), code
        assert (["content-type", "text/plain"] in seen["headers"]) is (method == "PUT"), code
    # HEAD stays HEAD through a 303.
    r = client.head("/redirect/303", follow_redirects=True)
    assert r.request.method == "HEAD" and r.status_code == 200
    # Authorization survives a same-origin hop, is dropped on a cross-origin one.
    r = client.get("/redirect/302", auth=("u", "p"), follow_redirects=True)
    assert any(h[0] == "authorization" for h in echoed(r)["headers"])
    r = client.get("/to-other", params={"to": other}, headers={"Authorization": "Bearer t"}, follow_redirects=True)
    assert r.url.startswith(other) and not any(h[0] == "authorization" for h in echoed(r)["headers"])
    assert ["host", other.partition("//")[2]] in echoed(r)["headers"]
    # A Location that is not http(s) is refused, not followed.
    with pytest.raises(portway.ProtocolError):
        client.get("/to-other", params={"to": "ftp://example.test"}, follow_redirects=True)
    with portway.Client(base_url=base, max_redirects=3) as c, pytest.raises(portway.TooManyRedirects) as info:
        c.get("/chain/5", follow_redirects=True)
    # Three hops followed (5 -> 4 -> 3 -> 2); the fourth, to /chain/1, was not.
    assert info.value.response.url.endswith("/chain/2") and info.value.request.url.endswith("/chain/1")


def test_max_redirects_zero_and_deadline(base: str) -> None:
    with portway.Client(base_url=base, follow_redirects=True, max_redirects=0) as c:
        with pytest.raises(portway.TooManyRedirects):
            c.get("/redirect/302")
        assert c.get("/echo").status_code == 200
    with portway.Client(base_url=base, timeout=0.5) as c:
        with pytest.raises(portway.TimeoutError):
            c.get("/slow/3")


def test_shared_engine_and_private_handler(base: str) -> None:
    with portway.Engine(runtime_threads=1, pool_workers=1) as eng:
        with portway.Client(engine=eng) as c:
            assert c.get(base + "/echo").status_code == 200
        assert not eng.closed  # a shared engine is the caller's to close
        with portway.Client(engine=eng, max_body_bytes=4) as c:  # a private handler
            with pytest.raises(portway.BodyTooLargeError):
                c.get(base + "/echo")
        with pytest.raises(portway.NotFoundError):
            portway.Client(engine=eng, handler="nope")
        eng.register_http("mine", read_timeout_ms=20000)
        with portway.Client(engine=eng, handler="mine", base_url=base) as c:
            assert c.get("/json").json() == {"a": [1, 2], "b": "\u00e9"}
    with portway.Client(max_connections_per_host=2, base_url=base) as c:  # owned + options
        assert c.get("/echo").is_success
        eng2 = c.engine
    assert eng2.closed


def test_argument_errors(client: portway.Client) -> None:
    with pytest.raises(portway.InvalidArgumentError):
        portway.Client(base_url="/relative")
    with pytest.raises(portway.InvalidArgumentError):
        portway.Client(timeout=0)
    with pytest.raises(TypeError):
        portway.Client(auth=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        portway.Client(no_such_option=1)
    with pytest.raises(portway.InvalidArgumentError):
        client.post("/echo", json={}, content=b"x")
    with pytest.raises(portway.InvalidArgumentTypeError):
        client.post("/echo", json={"x": object()})
    with pytest.raises(portway.InvalidArgumentError):
        client.post("/echo", json={"x": float("nan")})
    with pytest.raises(portway.InvalidArgumentTypeError):
        client.get("/echo", params={"x": object()})  # type: ignore[dict-item]
    with pytest.raises(portway.InvalidArgumentError):
        client.get("/echo", headers={"Bad Name": "v"})
    with pytest.raises(portway.InvalidArgumentError):
        client.get("/echo", headers={"X": "a\r\nInjected: 1"})
    with pytest.raises(portway.InvalidArgumentError):
        portway.Client().get("relative/without/base")


def test_auth_callable_and_url_credentials(client: portway.Client, base: str) -> None:
    def token(req: portway.Request) -> portway.Request:
        req.headers["Authorization"] = "Bearer " + req.method
        return req

    assert ["authorization", "Bearer GET"] in echoed(client.get("/echo", auth=token))["headers"]
    r = client.get(base.replace("://", "://us%20er:pw@") + "/echo")
    assert ["authorization", "Basic dXMgZXI6cHc="] in echoed(r)["headers"]  # "us er:pw"
    assert "@" not in r.url


def test_headers_multidict() -> None:
    h = portway.Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("X", "y")])
    assert h["SET-COOKIE"] == "a=1, b=2" and h.get_list("set-cookie") == ["a=1", "b=2"]
    assert list(h) == ["set-cookie", "x"] and len(h) == 2 and "x" in h and 3 not in h
    assert h == {"x": "y", "set-cookie": "a=1, b=2"} or h.multi_items()[0] == ("set-cookie", "a=1")
    h["x"] = "z"
    del h["SET-COOKIE"]
    assert h.raw == [("x", "z")]
    with pytest.raises(KeyError):
        del h["missing"]
    assert portway.Headers({"Vary": "a, b"}).get_list("vary", split_commas=True) == ["a", "b"]


def test_response_text_and_reason(client: portway.Client) -> None:
    r = client.get("/latin1")
    assert r.text == "caf\u00e9" and r.encoding == "iso-8859-1"
    r = client.get("/status/599")
    assert r.reason_phrase == "" and r.is_server_error and repr(r) == "<Response [599 ]>"
    with pytest.raises(portway.HTTPStatusError) as info:
        r.raise_for_status()
    assert str(info.value).startswith("Server error '599 ' for url")
    ok = client.get("/echo")
    assert ok.raise_for_status() is ok and ok.elapsed.total_seconds() > 0
    assert ok.http_version == "HTTP/1.1" and ok.request.method == "GET"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_base_url_path_is_a_prefix(base: str) -> None:
    # As httpx does (not RFC 3986 joining): "/deeper" goes under base_url's path.
    with portway.Client(base_url=base + "/echo") as c:
        assert echoed(c.get("/deeper?x=1"))["path"] == "/echo/deeper"
        assert echoed(c.get("more"))["path"] == "/echo/more"
        assert echoed(c.get(base + "/echo/abs"))["path"] == "/echo/abs"  # absolute URLs stay


def test_repeated_gets_see_their_own_headers(client: portway.Client) -> None:
    # Bodiless requests are formatted once per (method, URL, headers): a change of header
    # must never reuse another request's cached head.
    for value in ("1", "2", "1"):
        assert ["x-a", value] in echoed(client.get("/echo", headers={"X-A": value}))["headers"]
    rs = client.get_many(["/echo"] * 3, headers={"X-A": "3"})
    assert all(["x-a", "3"] in echoed(r)["headers"] for r in rs)


def test_get_many_refuses_a_url_that_is_not_a_str(client: portway.Client) -> None:
    # A typed InvalidArgumentTypeError before anything goes out, not a bare TypeError.
    with pytest.raises(portway.InvalidArgumentTypeError, match="url must be a str"):
        client.get_many(["/echo", 5])  # type: ignore[list-item]
