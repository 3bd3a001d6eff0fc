"""The lighter Future (no Condition until someone waits), submit_many's payload paths and
map's batched refill: every concurrent.futures.Future method and helper still works."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time

import pytest

import portway


def test_resolved_future_never_makes_a_condition(eng: portway.Engine) -> None:
    fut = eng.submit("echo", b"a")
    assert fut.result().data == b"a"
    assert "_condition" not in fut.__dict__ and "_waiters" not in fut.__dict__
    futs = eng.submit_many("echo", [b"%d" % i for i in range(300)])
    assert [f.result().data for f in futs] == [b"%d" % i for i in range(300)]
    assert not any("_condition" in f.__dict__ for f in futs)
    assert fut.done() and not fut.running() and not fut.cancelled()
    assert fut.exception() is None
    assert "finished" in repr(fut)


def test_wait_and_as_completed_mixed_done_and_pending(eng: portway.Engine) -> None:
    done_now = [eng.submit("echo", b"x") for _ in range(3)]
    for f in done_now:
        f.result()
    slow = [eng.submit("sleep", b"30") for _ in range(5)]
    done, not_done = concurrent.futures.wait(done_now + slow, timeout=10)
    assert len(done) == 8 and not not_done
    first = [eng.submit("sleep", b"5000"), eng.submit("sleep", b"10")]
    done, not_done = concurrent.futures.wait(first, timeout=10, return_when=concurrent.futures.FIRST_COMPLETED)
    assert done == {first[1]} and not_done == {first[0]}
    assert first[0].cancel()
    got = list(concurrent.futures.as_completed([eng.submit("sleep", b"20") for _ in range(4)] + done_now, timeout=10))
    assert len(got) == 7


def test_wait_counts_cancelled_futures_as_done(eng: portway.Engine) -> None:
    futs = [eng.submit("sleep", b"10000") for _ in range(3)]
    waiter_result: list[object] = []

    def waiter() -> None:
        waiter_result.append(concurrent.futures.wait(futs, timeout=10))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)  # the waiter installed itself on pending futures
    assert all(f.cancel() for f in futs)
    t.join(10)
    assert not t.is_alive()
    done, not_done = waiter_result[0]  # type: ignore[misc]
    assert len(done) == 3 and not not_done
    assert list(concurrent.futures.as_completed(futs, timeout=1)) != []
    with pytest.raises(concurrent.futures.CancelledError):
        futs[0].result()
    with pytest.raises(concurrent.futures.CancelledError):
        futs[0].exception()
    assert futs[0].cancel() and futs[0].cancelled()


def test_done_callbacks_before_and_after_and_failing(eng: portway.Engine, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[bytes] = []
    ev = threading.Event()
    fut = eng.submit("sleep", b"20")
    fut.add_done_callback(lambda f: (seen.append(b"before"), ev.set()))
    assert ev.wait(5)
    fut.add_done_callback(lambda f: seen.append(b"after"))
    assert seen == [b"before", b"after"]

    def boom(_: concurrent.futures.Future[portway.Completion]) -> None:
        raise RuntimeError("callback failed")

    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        fut.add_done_callback(boom)
        ev2 = threading.Event()
        f2 = eng.submit("sleep", b"10")
        f2.add_done_callback(boom)
        f2.add_done_callback(lambda f: ev2.set())
        assert ev2.wait(5)
    assert len([r for r in caplog.records if "exception calling callback" in r.getMessage()]) == 2
    cancelled = threading.Event()
    f3 = eng.submit("sleep", b"10000")
    f3.add_done_callback(lambda f: f.cancelled() and cancelled.set())
    assert f3.cancel()
    assert cancelled.wait(5)


def test_many_threads_wait_on_one_future(eng: portway.Engine) -> None:
    fut = eng.submit("sleep", b"50")
    out: list[int] = []
    lock = threading.Lock()

    def wait_it() -> None:
        c = fut.result(timeout=10)
        with lock:
            out.append(c.id)

    threads = [threading.Thread(target=wait_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert out == [fut.request_id] * 8


def test_exception_and_failed_results(eng: portway.Engine) -> None:
    fut = eng.submit("sleep", b"5000", timeout=0.02)
    exc = fut.exception(timeout=5)
    assert isinstance(exc, portway.TimeoutError)
    with pytest.raises(portway.TimeoutError):
        fut.result()
    f2 = eng.submit("sleep", b"2000")
    with pytest.raises(TimeoutError):
        f2.exception(timeout=0.02)
    assert f2.cancel()


def test_set_running_or_notify_cancel_and_user_settling(eng: portway.Engine) -> None:
    fut = eng.submit("sleep", b"10000")
    assert fut.set_running_or_notify_cancel() is True
    assert fut.running()
    with pytest.raises(RuntimeError):
        fut.set_running_or_notify_cancel()
    assert not fut.cancel()  # base semantics: a running future cannot be cancelled
    fut.set_result("mine")  # type: ignore[arg-type]
    assert fut.result() == "mine"
    with pytest.raises(concurrent.futures.InvalidStateError):
        fut.set_result("again")  # type: ignore[arg-type]
    f2 = eng.submit("sleep", b"10000")
    assert f2.cancel()
    assert f2.set_running_or_notify_cancel() is False
    eng.cancel_all()  # the first request's CANCELLED completion is dropped: the user settled it
    deadline = time.monotonic() + 5
    while eng.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fut.result() == "mine"


def test_wrap_future_in_asyncio(eng: portway.Engine) -> None:
    async def main() -> bytes:
        c = await asyncio.wrap_future(eng.submit("sleep", b"10"))
        d = await asyncio.wrap_future(eng.submit("echo", b"w"))
        assert c.ok
        return d.data

    assert asyncio.run(main()) == b"w"


def test_submit_many_payload_kinds_and_sizes(eng: portway.Engine) -> None:
    payloads: list[portway._engine.Payload] = [b"", b"a", bytearray(b"ba"), memoryview(b"mv"), "str", b"", bytes(5000)]
    futs = eng.submit_many("echo", payloads)
    assert [f.result().data for f in futs] == [b"", b"a", b"ba", b"mv", b"str", b"", bytes(5000)]
    # past the blob threshold: each payload's own buffer is handed to the engine
    big = [bytes([i]) * 300_000 for i in range(5)] + [b"", b"tail"]
    futs = eng.submit_many("echo", iter(big))
    assert [f.result(timeout=10).data for f in futs] == big
    assert all(f.request_id for f in futs)


def test_map_refills_in_batches_and_stays_bounded(eng: portway.Engine) -> None:
    for window in (1, 2, 3, 8, 64):
        out = [c.data for c in eng.map("echo", (b"%d" % i for i in range(200)), window=window)]
        assert out == [b"%d" % i for i in range(200)]
    peak = 0
    for _ in eng.map("sleep", [b"2"] * 40, window=5):
        peak = max(peak, eng.stats()["in_flight"])
    assert peak <= 5
    assert list(eng.map("echo", [])) == []


def test_concurrent_pollers_deliver_exactly_once(eng: portway.Engine) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def waiter() -> None:  # keeps the delivery thread polling too
        while not stop.is_set():
            concurrent.futures.wait([eng.submit("sleep", b"1")], timeout=5)

    def worker(t: int) -> None:
        try:
            for r in range(20):
                futs = eng.submit_many("echo", [b"%d-%d-%d" % (t, r, i) for i in range(200)])
                singles = [eng.submit("echo", b"s%d" % i) for i in range(20)]
                assert [f.result(timeout=10).data for f in futs] == [b"%d-%d-%d" % (t, r, i) for i in range(200)]
                assert [f.result(timeout=10).data for f in singles] == [b"s%d" % i for i in range(20)]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    w = threading.Thread(target=waiter)
    w.start()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    w.join(10)
    assert not errors, errors
    deadline = time.monotonic() + 5
    while eng.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert eng.stats()["in_flight"] == 0


def test_demand_is_dropped_when_the_future_settles_before_its_waiter_sleeps(eng: portway.Engine) -> None:
    # result() registers demand (the delivery thread then polls) and only afterwards makes the
    # condition it sleeps on. A completion settled in between must still drop the demand, or
    # the delivery thread never parks again.
    from portway import _futures

    core = eng._core
    fut = eng.submit("sleep", b"20")
    _futures._add_demand(fut)  # what result() does before it waits on the condition
    assert core.demand_count == 1 and "_condition" not in fut.__dict__
    while not fut.done():  # settled by the delivery thread; nobody made the condition
        time.sleep(0.001)
    assert fut.result().data == b""
    assert core.demand_count == 0
    assert not fut._demanded
