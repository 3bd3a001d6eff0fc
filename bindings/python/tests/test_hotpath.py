"""The per-request fast paths give the same results as the straightforward code they replace:
cached request heads and timeouts, bulk-decoded completion meta, ahttp/asubmit settled inline by
the loop's reader."""

from __future__ import annotations

import asyncio
import ctypes
import json
from collections.abc import Iterator
from fractions import Fraction

import pytest

import portway
from portway import _engine, _http, _raw
from portway._lib import PortwayMeta

from conftest import QuietHandler, serve


def _reference_pairs(strings: list[bytes | None]) -> list[tuple[str, str]]:
    """What the meta pairs were decoded to before: each string on its own, errors replaced."""
    dec = [(s or b"").decode("utf-8", "replace") for s in strings]
    return list(zip(dec[0::2], dec[1::2]))


def _meta_array(strings: list[bytes | None]) -> tuple[int, list[object]]:
    """A ``portway_meta`` array over ``strings`` (key, value, key, ...); returns its address and
    the objects that must stay alive while it is read."""
    bufs = [None if s is None else ctypes.create_string_buffer(s) for s in strings]
    arr = (PortwayMeta * (len(strings) // 2))()
    for i, b in enumerate(bufs):
        addr = None if b is None else ctypes.addressof(b)
        setattr(arr[i // 2], "key" if i % 2 == 0 else "value", addr)
    return ctypes.addressof(arr), [arr, bufs]


@pytest.mark.parametrize(
    "strings",
    [
        [b"Content-Type", b"text/plain", b"Date", b"Sun, 29 Nov 2026 00:00:00 GMT"],
        [b"X-Empty", b"", b"", b"v"],
        [b"X-Utf8", "\u00e9\u4e2d\U0001f600".encode()],
        [b"X-Bad", b"a\xff\xfeb", b"X-Cut", b"\xe4\xb8", b"K", b"\xc3(\xa0"],
        [b"X-Null", None, None, b"v"],
        [b"k%d" % i if i % 2 == 0 else b"v%d" % i for i in range(2 * 70)],  # past the cached types
    ],
)
def test_meta_pairs_match_per_string_decoding(strings: list[bytes | None]) -> None:
    addr, keep = _meta_array(strings)
    assert _raw._meta_pairs(addr, len(strings) // 2) == _reference_pairs(strings)
    del keep


def test_build_request_cache_is_exact_and_bounded() -> None:
    url = "http://example.test:8080/path?q=1"
    first = _http.build_request("GET", url)
    assert first == b"GET http://example.test:8080/path?q=1 HTTP/1.1\r\nHost: example.test:8080\r\n\r\n"
    assert _http.build_request("GET", url) == first == _http._build_request("GET", url, None, None)
    assert ("GET", url) in _http._HEAD_CACHE
    # headers or a body bypass the cache and still get their own head
    assert _http.build_request("GET", url, {"X-A": "1"}).endswith(b"X-A: 1\r\n\r\n")
    assert _http.build_request("GET", url, body=b"").endswith(b"Content-Length: 0\r\n\r\n")
    # invalid requests are never cached: they raise every time
    for _ in range(2):
        with pytest.raises(ValueError):
            _http.build_request("GET", "/relative")
        with pytest.raises(ValueError):
            _http.build_request("G T", url)
        with pytest.raises(ValueError):
            _http.build_request("GET", "http://h/a b")
    assert ("GET", "/relative") not in _http._HEAD_CACHE
    for i in range(_http._HEAD_CACHE_MAX + 10):
        _http.build_request("GET", f"http://h/{i}")
    assert len(_http._HEAD_CACHE) <= _http._HEAD_CACHE_MAX


def test_timeout_ms_cache_is_exact() -> None:
    assert _engine._timeout_ms(0.1) == 100 and _engine._timeout_ms(0.1) == 100
    assert _engine._timeout_ms(Fraction(1, 10)) == 100  # exact, not a cache hit
    assert _engine._timeout_ms(Fraction(0.1)) == 101  # equal to the float 0.1 but rounds up
    assert _engine._timeout_ms(0.0001) == 1  # rounded up to whole ms, never down to 0
    assert _engine._timeout_ms(None) == 0 and _engine._timeout_ms(2) == 2000
    for bad in (0.0, -0.0, 0, -1.0, float("nan"), float("inf"), -1.0, float("nan"), 0.0):
        with pytest.raises(portway.InvalidArgumentError):
            _engine._timeout_ms(bad)


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path}).encode()
        self.reply(200, body, [("X-First", "1"), ("X-Utf8", "caf\u00e9"), ("Content-Type", "application/json")])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    yield from serve(_Handler)


def _needs_http(eng: portway.Engine) -> None:
    if not eng.has_handler("http"):
        pytest.skip('the engine has no "http" handler')


def test_ahttp_response_headers_in_order(eng: portway.Engine, server: str) -> None:
    _needs_http(eng)

    async def main() -> list[portway.HttpResponse]:
        return await asyncio.gather(*(eng.ahttp("GET", f"{server}/r{i}", timeout=10.0) for i in range(20)))

    for i, r in enumerate(asyncio.run(main())):
        assert r.status == 200 and r.ok and r.json() == {"path": f"/r{i}"}
        names = [k.lower() for k, _ in r.headers]
        assert names.index("x-first") < names.index("x-utf8") < names.index("content-type")
        assert r.header("X-First") == "1" and r.header("content-type") == "application/json"
        assert r.completion is not None and r.completion.meta is r.headers


def test_ahttp_transform_error_reaches_the_awaiter(
    eng: portway.Engine, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs_http(eng)

    def broken(c: portway.Completion) -> portway.HttpResponse:
        raise RuntimeError("transform failed")

    monkeypatch.setattr(_engine, "response_from_completion", broken)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="transform failed"):
            await eng.ahttp("GET", server + "/x", timeout=10.0)

    asyncio.run(main())
    assert eng.stats()["unreleased"] == 0


def test_asubmit_results_settled_by_the_reader(eng: portway.Engine) -> None:
    async def main() -> list[portway.Completion]:
        return await asyncio.gather(*(eng.asubmit("echo", b"%d" % i) for i in range(300)))

    out = asyncio.run(main())
    assert [c.data for c in out] == [b"%d" % i for i in range(300)]
    assert all(c.ok and c.meta == [] for c in out)
