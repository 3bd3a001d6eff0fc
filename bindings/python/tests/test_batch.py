"""``Engine.batch``: many payloads as one batch (``portway_batch_submit``), results as columns."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

import portway
from portway._http import build_request

from conftest import serve
from test_http import Handler, needs_http


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    yield from serve(Handler)


def test_order_and_bytes(eng: portway.Engine) -> None:
    payloads = [f"item {i}".encode() for i in range(1000)] + [b"", "text"]
    r = eng.batch("echo", payloads)
    assert isinstance(r, portway.BatchResult)
    assert len(r) == 1002 and r.ok and r.failures() == []
    assert list(r) == payloads[:-1] + [b"text"]
    assert r[0] == b"item 0" and r[-1] == b"text" and r[1000] == b""
    assert r[1:3] == [b"item 1", b"item 2"]
    assert r.status(5) == portway.Status.OK and r.code(5) == 0 and r.headers(5) == []
    with pytest.raises(IndexError):
        r[1002]
    r.raise_first()  # nothing failed
    assert len(eng.batch("echo", [])) == 0
    # Items count as requests; nothing is left held.
    s = eng.stats()
    assert s["in_flight"] == 0 and s["accepted"] >= 1002


def _python_calls(fn: Callable[[], object]) -> int:
    """How many Python frames start (calls, generator resumptions) while ``fn`` runs."""
    calls = 0

    def prof(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def test_every_item_as_bytes_without_python_code_per_item(eng: portway.Engine) -> None:
    # W1 from Python counts the host's work to get every result as bytes: iterating, slicing
    # and the failure checks run a handful of Python frames whatever the batch size.
    payloads = [b"%d" % i for i in range(2000)]
    r = eng.batch("echo", payloads)
    assert _python_calls(lambda: (r.ok, r.failures())) < 20
    assert _python_calls(lambda: list(r)) < 20
    assert list(r) == payloads and r[5] == b"5" and r[-1] == b"1999" and r[10:13] == [b"10", b"11", b"12"]
    # Indexing one item before iterating, and after (the items are then held as bytes).
    fresh = eng.batch("echo", payloads)
    assert fresh[1999] == b"1999" and fresh[-2] == b"1998"
    assert _python_calls(lambda: fresh[1:1999]) < 20
    assert fresh[0] == b"0" and fresh[-1] == b"1999"
    with pytest.raises(IndexError):
        fresh[2000]
    with pytest.raises(IndexError):
        fresh[-2001]


def test_items_read_from_several_threads_at_once(eng: portway.Engine) -> None:
    # The first reader makes every item's bytes and drops the one buffer; readers racing it
    # see whole items either way.
    payloads = [b"%d" % i for i in range(300)]
    for _ in range(20):
        r = eng.batch("echo", payloads)
        seen: list[object] = []
        def read(k: int) -> None:
            seen.append(list(r) if k % 2 else [r[i] for i in range(300)])

        readers = [threading.Thread(target=read, args=(k,)) for k in range(6)]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        assert seen == [payloads] * 6


def test_items_of_batches_of_the_same_shape(eng: portway.Engine) -> None:
    # Batches whose items have the same lengths share how they are split, not their bytes.
    a = eng.batch("echo", [b"ab", b"", b"cde"])
    b = eng.batch("echo", [b"xy", b"", b"zzz"])
    c = eng.batch("echo", [b"a", b"bc", b"def"])  # same total, other lengths
    assert list(a) == [b"ab", b"", b"cde"] and list(b) == [b"xy", b"", b"zzz"]
    assert list(c) == [b"a", b"bc", b"def"] and list(a) == [b"ab", b"", b"cde"]
    assert list(eng.batch("echo", [b""] * 3)) == [b""] * 3


def test_payload_lists_of_other_types_are_converted(eng: portway.Engine) -> None:
    class Odd(bytes):
        def __len__(self) -> int:  # a bytes subclass is taken as its bytes, not its len()
            return 99

    payloads: list[Any] = [b"a", bytearray(b"b"), "c", memoryview(b"d"), Odd(b"e")]
    assert list(eng.batch("echo", payloads)) == [b"a", b"b", b"c", b"d", b"e"]
    assert [f.result().data for f in eng.submit_many("echo", payloads)] == [b"a", b"b", b"c", b"d", b"e"]


def test_longer_than_max_in_flight_is_split() -> None:
    with portway.Engine(runtime_threads=1, pool_workers=1, max_in_flight=16) as e:
        r = e.batch("echo", [str(i) for i in range(100)])
        assert [int(x) for x in r] == list(range(100))
        assert e.stats()["in_flight"] == 0


def test_per_item_failures(eng: portway.Engine) -> None:
    def flaky(p: bytes) -> bytes:
        if p.startswith(b"x"):
            raise ValueError("no x")
        return p.upper()

    eng.register("flaky", flaky)
    r = eng.batch("flaky", [b"a", b"xb", b"c", b"xd"])
    assert not r.ok and r.failures() == [1, 3]
    assert r[0] == b"A" and r[2] == b"C"
    assert r.status(1) == portway.Status.HANDLER_ERROR
    assert b"no x" in r[1]
    err = r.error(1)
    assert isinstance(err, portway.HandlerError)
    assert r.error(0) is None
    with pytest.raises(portway.HandlerError, match="batch item 1"):
        r.raise_first()


def test_per_item_timeouts(eng: portway.Engine) -> None:
    r = eng.batch("sleep", [b"1", b"60000", b"2"], timeout=0.2)
    assert [r.status(i) for i in range(3)] == [portway.Status.OK, portway.Status.TIMEOUT, portway.Status.OK]
    assert r.failures() == [1]
    with pytest.raises(portway.TimeoutError):
        r.raise_first()


def test_refusals(eng: portway.Engine) -> None:
    with pytest.raises(portway.InvalidArgumentError, match="item 1"):
        eng.batch("sleep", [b"1", b"soon"])
    with pytest.raises(portway.UnknownHandlerError):
        eng.batch("nope", [b"1"])
    with pytest.raises(portway.InvalidArgumentTypeError):
        eng.batch("echo", [b"1", 2])  # type: ignore[list-item]
    assert eng.stats()["in_flight"] == 0


def test_busy_when_the_engine_is_full() -> None:
    with portway.Engine(runtime_threads=1, pool_workers=1, max_in_flight=4) as e:
        held = e.submit_many("sleep", [b"60000"] * 3)
        with pytest.raises(portway.BusyError):
            e.batch("echo", [b"a", b"b"])
        assert list(e.batch("echo", [b"a"])) == [b"a"]
        for f in held:
            e.cancel(f)


@needs_http
def test_http_items_with_codes_and_headers(eng: portway.Engine, server: str) -> None:
    reqs = [build_request("GET", server + p) for p in ("/hello", "/missing", "/hello")]
    r = eng.batch("http", reqs, timeout=10)
    assert r.ok  # a 404 is a response, not a failure
    assert [r.code(i) for i in range(3)] == [200, 404, 200]
    assert r[0] == b"hello world" and r[1] == b"not found"
    names = [k.lower() for k, _ in r.headers(2)]
    assert "x-one" in names and "x-two" in names
    assert ("X-One", "1") in r.headers(0) or ("x-one", "1") in r.headers(0)


def test_abatch(eng: portway.Engine) -> None:
    async def main() -> None:
        r = await eng.abatch("echo", [b"x", b"y"])
        assert list(r) == [b"x", b"y"]
        t = await eng.abatch("sleep", [b"1", b"60000"], timeout=0.2)
        assert t.failures() == [1] and t.status(1) == portway.Status.TIMEOUT
        # Cancelling the awaiting task cancels the items still running.
        task = asyncio.ensure_future(eng.abatch("sleep", [b"60000"] * 3))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    deadline = time.monotonic() + 5  # the cancelled batch's completion is collected meanwhile
    while eng.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert eng.stats()["in_flight"] == 0
