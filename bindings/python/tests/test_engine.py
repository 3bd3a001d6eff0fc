"""Engine, futures, batches, map, handlers, errors, cancellation, lifecycle."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

import portway


def test_submit_echo_completion_fields(eng: portway.Engine) -> None:
    fut = eng.submit("echo", b"hi", timeout=1.0)
    assert isinstance(fut, portway.Future)
    assert isinstance(fut, concurrent.futures.Future)
    c = fut.result()
    assert isinstance(c, portway.Completion)
    assert c.data == b"hi" and c.code == 0 and c.meta == [] and c.ok
    assert c.id == fut.request_id > 0
    assert c.user_data > 0
    assert c.queued_ns >= 0 and c.run_ns >= 0


def test_payload_types_and_binary_data(eng: portway.Engine) -> None:
    blob = bytes(range(256)) * 10
    assert eng.submit("echo", blob).result().data == blob
    assert eng.submit("echo", bytearray(b"ba")).result().data == b"ba"
    assert eng.submit("echo", memoryview(b"mv")).result().data == b"mv"
    assert eng.submit("echo", "str").result().data == b"str"
    assert eng.submit("echo").result().data == b""


def test_submit_many_100k_echoes() -> None:
    with portway.Engine(runtime_threads=2, pool_workers=2, max_in_flight=131072) as e:
        payloads = [b"%d" % i for i in range(100_000)]
        futs = e.submit_many("echo", payloads)
        assert len(futs) == 100_000
        for i, f in enumerate(futs):
            assert f.result(timeout=30).data == payloads[i]
        ids = {f.request_id for f in futs}
        assert len(ids) == 100_000 and 0 not in ids
        s = e.stats()
        assert s["completed"]["OK"] >= 100_000


def test_submit_many_empty_and_timeout(eng: portway.Engine) -> None:
    assert eng.submit_many("echo", []) == []
    futs = eng.submit_many("sleep", [b"2000", b"1"], timeout=0.05)
    with pytest.raises(portway.TimeoutError):
        futs[0].result(timeout=5)
    assert futs[1].result(timeout=5).ok


def test_map_is_ordered_and_bounded(eng: portway.Engine) -> None:
    payloads = [str(x).encode() for x in [30, 1, 20, 1, 10, 1] * 5]
    seen_in_flight = []
    out = []
    for c in eng.map("sleep", payloads, window=4):
        out.append(c)
        seen_in_flight.append(eng.stats()["in_flight"])
    assert len(out) == len(payloads)
    assert max(seen_in_flight) <= 4
    # ordered: echo through map keeps payload order
    data = [c.data for c in eng.map("echo", [b"%d" % i for i in range(1000)], window=16)]
    assert data == [b"%d" % i for i in range(1000)]


def test_map_raises_and_cancels_rest(eng: portway.Engine) -> None:
    it = eng.map("sleep", [b"5000"] * 8, window=4, timeout=0.05)
    with pytest.raises(portway.TimeoutError):
        next(it)


def test_map_close_cancels_window(eng: portway.Engine) -> None:
    it = eng.map("sleep", [b"1"] + [b"10000"] * 10, window=5)
    next(it)
    it.close()
    deadline = time.monotonic() + 5
    while eng.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert eng.stats()["in_flight"] == 0


def test_timeout_per_request_and_default() -> None:
    with portway.Engine(runtime_threads=1, pool_workers=1, default_timeout=0.05) as e:
        t0 = time.monotonic()
        with pytest.raises(portway.TimeoutError) as info:
            e.submit("sleep", b"5000").result()
        assert time.monotonic() - t0 < 2
        assert isinstance(info.value, TimeoutError)
        assert info.value.status == portway.Status.TIMEOUT
        assert e.submit("sleep", b"1", timeout=2.0).result().ok
        with pytest.raises(portway.TimeoutError):
            e.submit("sleep", b"5000", timeout=0.02).result()


def test_result_timeout_is_the_futures_own(eng: portway.Engine) -> None:
    fut = eng.submit("sleep", b"2000")
    with pytest.raises(TimeoutError):
        fut.result(timeout=0.05)
    assert fut.cancel()


def test_cancel_via_future(eng: portway.Engine) -> None:
    fut = eng.submit("sleep", b"10000")
    assert fut.cancel()
    assert fut.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result()
    done = eng.submit("echo", b"x")
    done.result()
    assert not done.cancel()
    deadline = time.monotonic() + 5
    while eng.stats()["completed"]["CANCELLED"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert eng.stats()["completed"]["CANCELLED"] == 1
    assert portway.CancelledError is concurrent.futures.CancelledError


def test_cancel_all(eng: portway.Engine) -> None:
    futs = [eng.submit("sleep", b"10000") for _ in range(20)]
    eng.cancel_all()
    for f in futs:
        with pytest.raises(concurrent.futures.CancelledError):
            f.result(timeout=5)


def test_busy_with_small_max_in_flight() -> None:
    with portway.Engine(runtime_threads=1, pool_workers=1, max_in_flight=4) as e:
        held = [e.submit("sleep", b"10000") for _ in range(4)]
        with pytest.raises(portway.BusyError) as info:
            e.submit("echo", b"x")
        assert info.value.status == portway.Status.BUSY
        assert e.stats()["rejected_busy"] >= 1
        e.cancel_all()
        for f in held:
            with pytest.raises(concurrent.futures.CancelledError):
                f.result(timeout=5)
        # a batch accepts the longest prefix; the rest fail with BusyError
        held = e.submit_many("sleep", [b"10000"] * 6)
        assert all(f.request_id for f in held[:4])
        for f in held[4:]:
            assert isinstance(f.exception(timeout=1), portway.BusyError)
        e.cancel_all()


def test_error_classes_from_the_engine() -> None:
    with pytest.raises(portway.InvalidArgumentError):
        portway.Engine(pool_workers=5000)
    with pytest.raises(portway.InvalidArgumentError):
        portway.Engine(max_in_flight=0)
    with portway.Engine(runtime_threads=1, pool_workers=1, max_payload=10) as e:
        with pytest.raises(portway.UnknownHandlerError):
            e.submit("no-such-handler", b"")
        with pytest.raises(portway.PayloadTooLargeError):
            e.submit("echo", b"x" * 11)
        with pytest.raises(portway.InvalidArgumentError):
            e.submit("echo", b"x", timeout=-1)
        with pytest.raises(portway.InvalidArgumentError):
            e.submit("sleep", b"abc").result()  # refused at submit or failed as a completion
    with pytest.raises(portway.ShutdownError):
        e.submit("echo", b"x")


def test_python_handler_and_handler_error(eng: portway.Engine) -> None:
    hid = eng.register("upper", lambda p: p.upper())
    assert hid == eng.handler_id("upper")
    assert eng.submit("upper", b"abc").result().data == b"ABC"

    def boom(_: bytes) -> bytes:
        raise RuntimeError("kaput")

    eng.register("boom", boom)
    with pytest.raises(portway.HandlerError, match="kaput"):
        eng.submit("boom", b"").result()
    with pytest.raises(portway.InvalidArgumentError):
        eng.register("upper", lambda p: p)  # duplicate name


def test_pipeline_and_concurrency(eng: portway.Engine) -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def slow(p: bytes) -> bytes:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.01)
        with lock:
            active -= 1
        return p + b"!"

    eng.register("slow", slow)
    eng.register("rev", lambda p: p[::-1])
    eng.set_concurrency("slow", 1)
    eng.pipeline("slowrev", ["echo", "slow", "rev"])
    futs = [eng.submit("slowrev", b"ab%d" % i) for i in range(10)]
    assert [f.result(timeout=10).data for f in futs] == [(b"ab%d!" % i)[::-1] for i in range(10)]
    assert peak == 1
    with pytest.raises(portway.UnknownHandlerError):
        eng.pipeline("bad", ["echo", "missing"])
    with pytest.raises(portway.UnknownHandlerError):
        eng.set_concurrency("missing", 1)


def test_eight_threads_submitting(eng: portway.Engine) -> None:
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            futs = [eng.submit("echo", b"%d-%d" % (t, i)) for i in range(2000)]
            for i, f in enumerate(futs):
                assert f.result(timeout=30).data == b"%d-%d" % (t, i)
            for i in range(200):
                assert eng.submit("echo", b"%d" % i).result(timeout=30).data == b"%d" % i
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert eng.stats()["in_flight"] == 0


def test_callbacks_and_wait_without_result(eng: portway.Engine) -> None:
    got = threading.Event()
    fut = eng.submit("sleep", b"20")
    fut.add_done_callback(lambda f: got.set())
    assert got.wait(5)
    futs = [eng.submit("sleep", b"10") for _ in range(10)]
    done, not_done = concurrent.futures.wait(futs, timeout=5)
    assert len(done) == 10 and not not_done
    assert len(list(concurrent.futures.as_completed([eng.submit("echo", b"z") for _ in range(5)], timeout=5))) == 5


def test_stats_keys(eng: portway.Engine) -> None:
    eng.submit("echo", b"x").result()
    s = eng.stats()
    for key in [
        "submitted", "accepted", "rejected_busy", "rejected_shutdown", "rejected_invalid",
        "completed", "in_flight", "queued", "running", "ready", "unreleased", "pool_workers",
    ]:
        assert key in s
    assert s["accepted"] >= 1 and s["pool_workers"] == 2
    assert s["completed"]["OK"] >= 1


def test_close_is_idempotent_and_drains() -> None:
    e = portway.Engine(runtime_threads=1, pool_workers=1)
    futs = [e.submit("sleep", b"50") for _ in range(10)]
    e.close(drain=True, timeout=5.0)
    assert all(f.result(timeout=0).ok for f in futs)
    e.close()
    e.close(drain=False)
    assert e.closed
    with pytest.raises(portway.ShutdownError):
        e.submit("echo", b"")


def test_close_cancel_now_and_drain_deadline() -> None:
    e = portway.Engine(runtime_threads=1, pool_workers=1)
    futs = [e.submit("sleep", b"60000") for _ in range(10)]
    t0 = time.monotonic()
    e.close(drain=False)
    assert time.monotonic() - t0 < 3
    assert all(f.cancelled() for f in futs)
    e = portway.Engine(runtime_threads=1, pool_workers=1)
    fut = e.submit("sleep", b"60000")
    t0 = time.monotonic()
    e.close(drain=True, timeout=0.1)
    assert time.monotonic() - t0 < 3
    assert fut.cancelled()


def test_context_manager() -> None:
    with portway.Engine(runtime_threads=1, pool_workers=1) as e:
        fut = e.submit("sleep", b"20")
    assert fut.result(timeout=0).ok
    assert e.closed


def test_metrics_text_when_available(eng: portway.Engine) -> None:
    from portway import _lib

    if not hasattr(_lib.LIB, "portway_metrics_text"):
        pytest.skip("library predates portway_metrics_text")
    eng.submit("echo", b"x").result()
    text = eng.metrics_text()
    assert "portway" in text
