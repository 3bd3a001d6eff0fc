"""Engine.ahttp() requests of one loop tick go to the engine in one portway_submit_batch call
(``portway/_tick.py``): coalescing, cancel before and after the flush, refusals found at the
flush, an exception out of the flush, close() with requests still queued, several loops; and
response headers decoded only when read."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import portway
from portway import _completion, _core

from conftest import QuietHandler, serve

_release = threading.Event()  # /block answers once this is set (or after 10 s)


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        if self.path == "/block":
            _release.wait(10)
        self.reply(200, self.path.encode(), [("X-Path", self.path)])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    yield from serve(_Handler)


@pytest.fixture
def release_blocked() -> Iterator[None]:
    _release.clear()
    yield
    _release.set()


@pytest.fixture
def native_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Counts the core's portway_submit and portway_submit_batch calls (with each batch's
    size), passing them through."""
    calls: dict[str, list[int]] = {"submit": [], "batch": []}
    single, batch = getattr(_core, "_submit_raw"), getattr(_core, "_submit_batch_raw")

    def counted_single(*args: Any) -> int:
        calls["submit"].append(1)
        return int(single(*args))

    def counted_batch(eng: Any, reqs: Any, n: Any, ids: Any, accepted: Any) -> int:
        calls["batch"].append(n.value)
        return int(batch(eng, reqs, n, ids, accepted))

    monkeypatch.setattr(_core, "_submit_raw", counted_single)
    monkeypatch.setattr(_core, "_submit_batch_raw", counted_batch)
    return calls


def test_one_tick_is_one_batch(eng: portway.Engine, server: str, native_calls: dict[str, list[int]]) -> None:
    async def main() -> list[portway.HttpResponse]:
        return await asyncio.gather(*(eng.ahttp("GET", f"{server}/r{i}", timeout=10.0) for i in range(40)))

    out = asyncio.run(main())
    assert [r.body for r in out] == [b"/r%d" % i for i in range(40)]
    assert native_calls == {"submit": [], "batch": [40]}


def test_cancel_before_the_flush_never_submits(eng: portway.Engine, server: str) -> None:
    async def main() -> None:
        task = asyncio.create_task(eng.ahttp("GET", server + "/hello", timeout=10.0))
        await asyncio.sleep(0)  # the task ran up to its await: queued, the flush not run yet
        assert eng._core.readers[id(asyncio.get_running_loop())][2].entries
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)  # the flush ran (and dropped it)

    asyncio.run(main())
    s = eng.stats()
    assert s["submitted"] == 0 and s["in_flight"] == 0


def test_cancel_after_the_flush_cancels_the_native_request(
    eng: portway.Engine, server: str, release_blocked: None
) -> None:
    async def main() -> None:
        task = asyncio.create_task(eng.ahttp("GET", server + "/block", timeout=10.0))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if eng.stats()["in_flight"] == 1:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):
            if eng.stats()["completed"].get("CANCELLED") == 1:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    s = eng.stats()
    assert s["submitted"] == 1 and s["completed"].get("CANCELLED") == 1 and s["in_flight"] == 0


def test_busy_partway_fails_the_refused_rest(server: str, release_blocked: None) -> None:
    with portway.Engine(runtime_threads=1, pool_workers=1, max_in_flight=3) as e:

        async def main() -> list[Any]:
            return await asyncio.gather(
                *(e.ahttp("GET", f"{server}/block", timeout=10.0) for _ in range(5)),
                _release_soon(),
                return_exceptions=True,
            )

        out = asyncio.run(main())[:5]
    # The first three in call order were accepted; the batch stopped at the fourth.
    assert [r.status for r in out[:3]] == [200, 200, 200]
    assert all(isinstance(r, portway.BusyError) for r in out[3:])
    assert "not submitted: the batch stopped at request 3" in str(out[4])


async def _release_soon() -> None:
    await asyncio.sleep(0.2)
    _release.set()


def test_a_request_refused_alone_does_not_stop_the_batch(eng: portway.Engine, server: str) -> None:
    async def main() -> list[Any]:
        return await asyncio.gather(  # type: ignore[return-value]
            eng.ahttp("GET", server + "/a", timeout=10.0),
            eng.ahttp("GET", "http://127.0.0.1:99999/", timeout=10.0),  # the engine refuses the port
            eng.ahttp("GET", server + "/c", timeout=10.0),
            return_exceptions=True,
        )

    a, bad, c = asyncio.run(main())
    assert isinstance(a, portway.HttpResponse) and a.body == b"/a"
    assert isinstance(bad, portway.InvalidArgumentError) and "invalid port" in str(bad)
    assert isinstance(c, portway.HttpResponse) and c.body == b"/c"


def test_an_exception_in_the_flush_reaches_every_request(
    eng: portway.Engine, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("flush failed")

    monkeypatch.setattr(eng._core, "submit_batch", broken)

    async def main() -> list[Any]:
        return await asyncio.gather(*(eng.ahttp("GET", server + "/x", timeout=10.0) for _ in range(4)), return_exceptions=True)

    out = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and str(r) == "flush failed" for r in out)
    assert not eng._core.pending


def test_engine_closed_before_the_flush(eng: portway.Engine, server: str) -> None:
    # The core closes between the requests and their flush (as when another thread closes the
    # engine): each request fails with ShutdownError, once, and nothing is left registered.
    async def main() -> list[Any]:
        tasks = [asyncio.create_task(eng.ahttp("GET", server + "/x", timeout=10.0)) for _ in range(3)]
        await asyncio.sleep(0)  # queued
        eng._core.close(False, None)
        return await asyncio.gather(*tasks, return_exceptions=True)

    out = asyncio.run(main())
    assert all(isinstance(r, portway.ShutdownError) for r in out)
    assert not eng._core.pending
    with pytest.raises(portway.ShutdownError):  # after close, at once (not from the flush)
        asyncio.run(eng.ahttp("GET", server + "/x"))


def test_close_in_the_same_tick_drains_queued_requests(server: str) -> None:
    e = portway.Engine(runtime_threads=1, pool_workers=1)

    async def main() -> list[Any]:
        tasks = [asyncio.create_task(e.ahttp("GET", f"{server}/d{i}", timeout=10.0)) for i in range(3)]
        await asyncio.sleep(0)  # queued, not flushed
        e.close()  # flushes this loop's queue first, then drains
        return await asyncio.gather(*tasks, return_exceptions=True)

    out = asyncio.run(main())
    assert [getattr(r, "body", r) for r in out] == [b"/d0", b"/d1", b"/d2"]


def test_loops_on_several_threads(eng: portway.Engine, server: str) -> None:
    results: dict[int, list[bytes]] = {}

    def run(k: int) -> None:
        async def main() -> list[bytes]:
            rs = await asyncio.gather(*(eng.ahttp("GET", f"{server}/t{k}/{i}", timeout=10.0) for i in range(100)))
            return [r.body for r in rs]

        results[k] = asyncio.run(main())

    threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {k: [b"/t%d/%d" % (k, i) for i in range(100)] for k in range(3)}
    assert not eng._core.pending


def test_headers_are_decoded_when_first_read(
    eng: portway.Engine, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    real = _completion._decode_meta

    def counting(raw: list[bytes | None]) -> list[tuple[str, str]]:
        decoded.append(len(raw))
        return real(raw)

    monkeypatch.setattr(_completion, "_decode_meta", counting)

    async def main() -> list[portway.HttpResponse]:
        return await asyncio.gather(*(eng.ahttp("GET", f"{server}/h{i}", timeout=10.0) for i in range(5)))

    out = asyncio.run(main())
    assert [r.status for r in out] == [200] * 5 and decoded == []
    r = out[2]
    assert r.header("x-path") == "/h2" and r.http_version == "HTTP/1.1"
    assert ":http-version" not in [k for k, _ in r.headers] and r.completion is not None
    assert r.completion.meta is r.headers and len(decoded) == 1


def test_argument_errors_raise_at_once_and_are_not_cached(eng: portway.Engine, server: str) -> None:
    async def main() -> None:
        for _ in range(2):  # the second time through the (handler, timeout) cache
            with pytest.raises(portway.UnknownHandlerError):
                await eng.ahttp("GET", server + "/x", handler="nope")
            with pytest.raises(portway.InvalidArgumentError):
                await eng.ahttp("GET", server + "/x", timeout=0.0)
            with pytest.raises(portway.InvalidArgumentTypeError):
                await eng.ahttp("GET", server + "/x", timeout=[1.0])  # type: ignore[arg-type]
            r = await eng.ahttp("GET", server + "/ok", timeout=2)
            assert r.body == b"/ok"

    asyncio.run(main())
    assert eng.stats()["submitted"] == 2


def test_timeouts_through_the_batch(eng: portway.Engine, server: str, release_blocked: None) -> None:
    # Requests of one tick with different timeouts go in one batch, each with its own deadline.
    async def main() -> list[Any]:
        return list(
            await asyncio.gather(
                eng.ahttp("GET", server + "/block", timeout=0.2),
                eng.ahttp("GET", server + "/fast", timeout=10.0),
                return_exceptions=True,
            )
        )

    slow, fast = asyncio.run(main())
    assert isinstance(slow, portway.TimeoutError)
    assert isinstance(fast, portway.HttpResponse) and fast.body == b"/fast"


def test_a_small_tick_goes_one_by_one(eng: portway.Engine, server: str, native_calls: dict[str, list[int]]) -> None:
    async def main() -> list[portway.HttpResponse]:
        return await asyncio.gather(*(eng.ahttp("GET", f"{server}/s{i}", timeout=10.0) for i in range(3)))

    assert [r.body for r in asyncio.run(main())] == [b"/s0", b"/s1", b"/s2"]
    assert native_calls == {"submit": [1, 1, 1], "batch": []}


def test_busy_in_a_small_tick_fails_the_rest_unsent(server: str, release_blocked: None) -> None:
    with portway.Engine(runtime_threads=1, pool_workers=1, max_in_flight=1) as e:

        async def main() -> list[Any]:
            return list(
                await asyncio.gather(
                    *(e.ahttp("GET", f"{server}/block", timeout=10.0) for _ in range(3)),
                    _release_soon(),
                    return_exceptions=True,
                )
            )[:3]

        first, second, third = asyncio.run(main())
        rejected = e.stats()["rejected_busy"]
    assert isinstance(first, portway.HttpResponse) and first.status == 200
    assert isinstance(second, portway.BusyError) and isinstance(third, portway.BusyError)
    assert "not submitted: the batch stopped at request 1" in str(third)
    assert rejected == 1  # the third never reached the engine


def test_after_a_small_poll_requests_go_at_once(eng: portway.Engine, server: str) -> None:
    async def main() -> None:
        q = eng._core.ensure_reader(asyncio.get_running_loop())[2]
        assert not q.direct  # nothing polled yet: coalesce
        assert (await eng.ahttp("GET", server + "/one", timeout=10.0)).body == b"/one"
        assert q.direct  # the reader delivered one completion: few requests follow
        task = asyncio.create_task(eng.ahttp("GET", server + "/two", timeout=10.0))
        await asyncio.sleep(0)  # the task ran up to its await
        assert not q.entries  # submitted at once, not queued for a flush
        assert (await task).body == b"/two"

    asyncio.run(main())
