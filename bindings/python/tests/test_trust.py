"""Issue 13, the Python side: no silently lost work, no leaked loops, clear errors for bad
input (never a coercion), CancelledErrors that say why, and the statuses the three bindings
agree on."""

from __future__ import annotations

import array
import asyncio
import concurrent.futures
import gc
import inspect
import math
import re
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest

import portway
from portway import Status, _lib

from conftest import REPO, child_env


def small_engine(**kw: Any) -> portway.Engine:
    return portway.Engine(runtime_threads=1, pool_workers=1, **kw)


# ------------------------------------------------------------------ work lost without a word


def test_close_without_deadline_waits_for_the_work() -> None:
    # The delivery thread exists (a future was waited on): close(timeout=None) used to give
    # up after 2 s and cancel.
    e = small_engine()
    assert e.submit("echo", b"x").result().ok
    fut = e.submit("sleep", b"2500")
    e.close(timeout=None)
    assert fut.result(timeout=0).ok


def test_ctrl_c_during_an_endless_drain_cancels_and_closes() -> None:
    import os
    import signal

    e = small_engine()
    assert e.submit("echo", b"x").result().ok  # the delivery thread exists
    fut = e.submit("sleep", b"60000")
    core = e._core

    def interrupt() -> None:
        while not core.closing:
            time.sleep(0.01)
        time.sleep(0.2)  # let close() reach its wait (the test does not depend on how long)
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=interrupt)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        e.close(timeout=None)
    t.join()
    assert core.freed  # closed all the same
    assert "interrupted" in _cancel_message(fut)


def test_a_temporary_engine_lives_until_its_future_is_done() -> None:
    c = portway.Engine(runtime_threads=1, pool_workers=1).submit("sleep", b"50").result(timeout=30)
    assert c.ok


def test_futures_returned_from_a_function_keep_its_engine() -> None:
    def start() -> list[portway.Future[portway.Completion]]:
        e = small_engine()
        return [e.submit("sleep", b"30") for _ in range(3)]

    futs = start()
    gc.collect()
    assert all(f.result(timeout=30).ok for f in futs)


def test_a_done_callback_is_delivered_after_the_engine_is_dropped() -> None:
    got: list[bool] = []
    done = threading.Event()

    def cb(f: concurrent.futures.Future[portway.Completion]) -> None:
        got.append(f.result().ok)
        done.set()

    e = small_engine()
    e.submit("sleep", b"30").add_done_callback(cb)
    del e
    gc.collect()
    assert done.wait(30)
    assert got == [True]


def test_the_engine_is_finalized_once_nothing_references_it() -> None:
    e = small_engine()
    ref = weakref.ref(e)
    fut = e.submit("sleep", b"60000")
    del e
    gc.collect()
    assert ref() is not None  # the pending future holds it
    core = fut._core
    assert fut.cancel()
    del fut
    for _ in range(3000):  # until the delivery thread has swept the CANCELLED completion
        if not core.pending:
            break
        time.sleep(0.01)
    gc.collect()
    assert ref() is None
    assert core.closing  # the finalizer closed it


def _spy_close(core: Any) -> tuple[list[str], threading.Event]:
    """Records the name of the thread the finalizer's close() runs on."""
    seen: list[str] = []
    done = threading.Event()
    close = core.close

    def spy(*args: Any) -> None:
        seen.append(threading.current_thread().name)
        close(*args)
        done.set()

    core.close = spy
    return seen, done


def test_the_finalizer_never_closes_on_the_delivery_thread() -> None:
    # The delivery thread settles the last future and drops it: the engine goes with it.
    e = small_engine()
    seen, done = _spy_close(e._core)
    e.submit("sleep", b"30").add_done_callback(lambda f: None)
    del e
    gc.collect()
    assert done.wait(30)
    assert seen == ["portway-finalize"]


def test_the_finalizer_never_closes_on_an_engine_thread() -> None:
    other = small_engine()
    holder = [small_engine()]
    seen, done = _spy_close(holder[0]._core)
    other.register("drop", lambda p: holder.clear() or b"")  # runs on other's pool thread
    try:
        assert other.submit("drop", b"").result().ok
        assert done.wait(30)
        assert seen == ["portway-finalize"]
    finally:
        other.close()


# ------------------------------------------------------------------ asyncio loops are freed


def test_many_asyncio_runs_leave_no_reader_behind() -> None:
    e = small_engine()
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def one() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        assert (await e.asubmit("echo", b"x")).ok

    try:
        for _ in range(50):
            asyncio.run(one())
        gc.collect()
        assert len(e._core.readers) == 0
        assert all(r() is None for r in loops)  # the closed loops themselves were freed
        asyncio.run(one())  # and a new loop is served as before
    finally:
        e.close()


# ------------------------------------------------------------------ bad input


def test_payloads_must_be_bytes_like_or_str(eng: portway.Engine) -> None:
    for bad in (5, [1, 2], None, 1.5, object()):
        with pytest.raises(portway.InvalidArgumentTypeError) as info:
            eng.submit("echo", bad)  # type: ignore[arg-type]
        assert isinstance(info.value, TypeError) and isinstance(info.value, portway.InvalidArgumentError)
        assert info.value.status == Status.INVALID_ARGUMENT
        assert type(bad).__name__ in str(info.value)
    for good, want in ((bytearray(b"ab"), b"ab"), (memoryview(b"cd"), b"cd"), ("\u00e9", "\u00e9".encode()),
                       (array.array("B", [65, 66]), b"AB")):
        assert eng.submit("echo", good).result().data == want  # type: ignore[arg-type]


def test_submit_many_refuses_a_single_bytes_object(eng: portway.Engine) -> None:
    with pytest.raises(portway.InvalidArgumentTypeError, match="iterable of payloads"):
        eng.submit_many("echo", b"\x03\x01")  # type: ignore[arg-type]
    with pytest.raises(portway.InvalidArgumentTypeError, match=r"payloads\[1\]"):
        eng.submit_many("echo", [b"a", 5])  # type: ignore[list-item]
    with pytest.raises(portway.InvalidArgumentTypeError):
        list(eng.map("echo", "abc"))


def test_submit_many_blames_each_payload_for_its_own_size() -> None:
    with small_engine(max_payload=4) as e:
        futs = e.submit_many("echo", [b"ok", b"1234567", b"ok2", b"1234567890", b"x"])
        assert futs[0].result().data == b"ok"
        assert futs[2].result().data == b"ok2"  # submitted, not failed with its neighbour's error
        assert futs[4].result().data == b"x"
        for i, size in ((1, 7), (3, 10)):
            exc = futs[i].exception()
            assert isinstance(exc, portway.PayloadTooLargeError)
            assert str(size) in str(exc), exc


def test_a_handler_returning_a_non_bytes_value_fails(eng: portway.Engine) -> None:
    eng.register("int", lambda p: 3)  # type: ignore[arg-type,return-value]
    eng.register("none", lambda p: None)  # type: ignore[arg-type,return-value]
    eng.register("text", lambda p: "ok")
    for name in ("int", "none"):
        with pytest.raises(portway.HandlerError, match="must be bytes"):
            eng.submit(name, b"").result()
    assert eng.submit("text", b"").result().data == b"ok"


def test_register_refuses_what_is_not_a_handler(eng: portway.Engine) -> None:
    with pytest.raises(portway.InvalidArgumentTypeError, match="callable"):
        eng.register("x", 42)  # type: ignore[arg-type]
    with pytest.raises(portway.InvalidArgumentTypeError):
        eng.register(7, lambda p: p)  # type: ignore[arg-type]
    assert not eng.has_handler("x")


def test_handler_names_must_be_str(eng: portway.Engine) -> None:
    for call in (
        lambda: eng.submit(None, b""),  # type: ignore[arg-type]
        lambda: eng.submit_many(None, [b""]),  # type: ignore[arg-type]
        lambda: eng.http("GET", "http://127.0.0.1:1/", handler=None),  # type: ignore[arg-type]
        lambda: eng.handler_id(b"echo"),  # type: ignore[arg-type]
        lambda: asyncio.run(eng.asubmit(None, b"")),  # type: ignore[arg-type]
    ):
        with pytest.raises(portway.InvalidArgumentTypeError, match="handler name must be a str"):
            call()


@pytest.mark.parametrize("bad", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, 5e9])
def test_bad_timeouts_are_refused(eng: portway.Engine, bad: float) -> None:
    for call in (
        lambda: eng.submit("echo", b"", timeout=bad),
        lambda: eng.submit_many("echo", [b""], timeout=bad),
        lambda: eng.http("GET", "http://127.0.0.1:1/", timeout=bad),
        lambda: list(eng.map("echo", [b""], timeout=bad)),
        lambda: asyncio.run(eng.asubmit("echo", b"", timeout=bad)),
        lambda: small_engine(default_timeout=bad),
    ):
        with pytest.raises(portway.InvalidArgumentError) as info:
            call()
        assert isinstance(info.value, ValueError) and info.value.status == Status.INVALID_ARGUMENT
        assert "timeout" in str(info.value)
    with pytest.raises(portway.InvalidArgumentTypeError):
        eng.submit("echo", b"", timeout="1")  # type: ignore[arg-type]


def test_close_refuses_a_zero_timeout_and_stays_usable() -> None:
    e = small_engine()
    with pytest.raises(portway.InvalidArgumentError, match="drain=False"):
        e.close(timeout=0)
    assert not e.closed and e.submit("echo", b"x").result().ok
    e.close()


def test_register_http_options_are_checked() -> None:
    if not hasattr(_lib.LIB, "portway_register_http"):
        pytest.skip("library predates portway_register_http")
    with small_engine() as e:
        for kw, exc, words in (
            ({"max_connections_per_host": -1}, portway.InvalidArgumentError, "max_connections_per_host"),
            ({"max_connections_per_host": 1 << 32}, portway.InvalidArgumentError, "4294967295"),
            ({"max_body_bytes": 1 << 64}, portway.InvalidArgumentError, "max_body_bytes"),
            ({"max_redirects": "ten"}, portway.InvalidArgumentTypeError, "max_redirects must be an int"),
            ({"retries": 1.5}, portway.InvalidArgumentTypeError, "retries must be an int"),
            ({"follow_redirects": 1}, portway.InvalidArgumentTypeError, "follow_redirects must be a bool"),
            ({"user_agent": b"x"}, portway.InvalidArgumentTypeError, "user_agent must be a str"),
            ({"user_agent": "a\0b"}, portway.InvalidArgumentError, "NUL"),
        ):
            with pytest.raises(exc, match=words):
                e.register_http("h", **kw)
        assert not e.has_handler("h")
        assert e.register_http("h", max_connections_per_host=0, follow_redirects=True, user_agent="") > 0


def test_register_http_has_a_keyword_for_every_option() -> None:
    params = inspect.signature(portway.Engine.register_http).parameters
    fields = [f[0] for f in _lib.PortwayHttpOptions._fields_]
    assert [p for p in params if p not in ("self", "name")] == fields
    assert all(params[f].kind is inspect.Parameter.KEYWORD_ONLY for f in fields)


# ------------------------------------------------------------------ CancelledError says why


def _cancel_message(fut: portway.Future[Any]) -> str:
    with pytest.raises(concurrent.futures.CancelledError) as info:
        fut.result(timeout=30)
    with pytest.raises(concurrent.futures.CancelledError) as info2:
        fut.exception(timeout=30)
    assert str(info.value) == str(info2.value)
    return str(info.value)


def test_every_cancelled_error_says_why() -> None:
    e = small_engine()
    f = e.submit("sleep", b"60000")
    assert f.cancel()
    assert "Future.cancel()" in _cancel_message(f)

    f = e.submit("sleep", b"60000")
    e.cancel_all()
    assert "cancel_all" in _cancel_message(f)

    it = e.map("sleep", [b"1", b"60000", b"60000"], window=3)
    next(it)
    rest = list(e._core.pending.values())
    it.close()
    assert rest and all("map()" in _cancel_message(r) for r in rest if isinstance(r, portway.Future))

    f = e.submit("sleep", b"60000")
    e.close(drain=False)
    assert "close(drain=False)" in _cancel_message(f)

    e = small_engine()
    f = e.submit("sleep", b"60000")
    e.close(timeout=0.05)
    assert "deadline" in _cancel_message(f)


def test_asyncio_cancelled_error_says_why() -> None:
    async def main() -> str:
        with small_engine() as e:
            task = asyncio.ensure_future(e.asubmit("sleep", b"60000"))
            while e.stats()["in_flight"] == 0:
                await asyncio.sleep(0.001)
            e.cancel_all()
            try:
                await task
            except asyncio.CancelledError as exc:
                return str(exc)
            return "not cancelled"

    assert "cancel_all" in asyncio.run(main())


# ------------------------------------------------------------------ one behaviour everywhere


def test_unknown_handler_name_is_not_found(eng: portway.Engine) -> None:
    for call in (
        lambda: eng.submit("nope", b""),
        lambda: eng.submit_many("nope", [b""]),
        lambda: asyncio.run(eng.asubmit("nope", b"")),
        lambda: eng.set_concurrency("nope", 1),
    ):
        with pytest.raises(portway.UnknownHandlerError) as info:
            call()
        assert isinstance(info.value, portway.NotFoundError) and isinstance(info.value, LookupError)
        assert info.value.status == Status.NOT_FOUND
        assert "PORTWAY_NOT_FOUND" in str(info.value) and "'nope'" in str(info.value)
    assert not eng.has_handler("nope")


def test_submit_after_close_is_shutdown() -> None:
    e = small_engine()
    e.close()
    for call in (
        lambda: e.submit("echo", b""),
        lambda: e.submit_many("echo", [b""]),
        lambda: asyncio.run(e.asubmit("echo", b"")),
    ):
        with pytest.raises(portway.ShutdownError) as info:
            call()
        assert info.value.status == Status.SHUTDOWN


def test_relative_url_is_invalid_argument(eng: portway.Engine) -> None:
    for url in ("/path", "example.com/x", "ftp://example.com/"):
        with pytest.raises(portway.InvalidArgumentError) as info:
            eng.http("GET", url)
        assert isinstance(info.value, ValueError) and info.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(portway.InvalidArgumentTypeError):
        eng.http("GET", "http://127.0.0.1:1/", body=5)  # type: ignore[arg-type]


# ------------------------------------------------------------------ blocking submit


def test_submit_wait_takes_the_next_free_slot() -> None:
    with small_engine(max_in_flight=2) as e:
        short = e.submit("sleep", b"50")
        held = e.submit("sleep", b"60000")
        with pytest.raises(portway.BusyError):
            e.submit("echo", b"x")
        # waits for `short` to complete and be released; nobody waits on `short` itself
        c = e.submit("echo", b"y", wait=math.inf).result()
        assert c.ok and c.data == b"y"
        assert short.result().ok  # its release freed the slot (it may be settled just after)
        held2 = e.submit("sleep", b"60000")
        with pytest.raises(portway.BusyError):
            e.submit("echo", b"z", wait=0.02)  # the slots stay taken: gives up
        held.cancel()
        held2.cancel()


def test_submit_wait_ends_when_the_engine_closes() -> None:
    e = small_engine(max_in_flight=1)
    e.submit("sleep", b"60000")
    outcome: list[object] = []
    started = threading.Event()

    def waiter() -> None:
        started.set()
        try:
            outcome.append(e.submit("echo", b"x", wait=math.inf))
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    started.wait()
    e.close(drain=False)
    t.join(30)
    assert not t.is_alive()  # the wait ended
    (got,) = outcome
    if isinstance(got, portway.Future):
        # The core may hand the cancelled request's slot to a waiter that reserved its intake
        # before the shutdown: then it was accepted, and its completion was delivered.
        assert got.done() and got.result().data == b"x"
    else:
        assert isinstance(got, portway.ShutdownError), got


def test_submit_wait_is_checked(eng: portway.Engine) -> None:
    for bad in (-1, math.nan, -math.inf):
        with pytest.raises(portway.InvalidArgumentError):
            eng.submit("echo", b"", wait=bad)
    with pytest.raises(portway.InvalidArgumentTypeError):
        eng.submit("echo", b"", wait="1")  # type: ignore[arg-type]
    assert eng.submit("echo", b"", wait=0).result().ok


# ------------------------------------------------------------------ asubmit_many and amap


def test_asubmit_many() -> None:
    async def main() -> None:
        with small_engine() as e:
            out = await e.asubmit_many("echo", [b"a", "b", bytearray(b"c")])
            assert [c.data for c in out] == [b"a", b"b", b"c"]
            assert await e.asubmit_many("echo", []) == []
            mixed = await e.asubmit_many("sleep", [b"1", b"nope"], return_exceptions=True)
            assert isinstance(mixed[0], portway.Completion) and mixed[0].ok
            assert isinstance(mixed[1], portway.InvalidArgumentError)
            with pytest.raises(portway.TimeoutError):
                await e.asubmit_many("sleep", [b"1", b"60000"], timeout=0.05)
            # cancelling the awaiting task cancels the native requests
            task = asyncio.ensure_future(e.asubmit_many("sleep", [b"60000"] * 3))
            while e.stats()["in_flight"] < 3:
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            while e.stats()["in_flight"]:
                await asyncio.sleep(0.001)
            assert e.stats()["completed"]["CANCELLED"] == 3

    asyncio.run(main())


def test_amap_in_order_within_the_window() -> None:
    async def main() -> None:
        with small_engine() as e:
            seen: list[bytes] = []
            async for c in e.amap("echo", (b"%d" % i for i in range(1000)), window=16):
                assert e.stats()["in_flight"] <= 16
                seen.append(c.data)
            assert seen == [b"%d" % i for i in range(1000)]

            async def source() -> AsyncIterator[bytes]:
                for i in range(20):
                    await asyncio.sleep(0)
                    yield b"a%d" % i

            got = [c.data async for c in e.amap("echo", source(), window=4)]
            assert got == [b"a%d" % i for i in range(20)]

    asyncio.run(main())


def test_amap_leaving_early_cancels_the_rest() -> None:
    async def main() -> None:
        with small_engine() as e:
            gen = e.amap("sleep", [b"1"] + [b"60000"] * 5, window=4)
            async for c in gen:
                assert c.ok
                break
            await gen.aclose()
            while e.stats()["in_flight"]:
                await asyncio.sleep(0.001)
            assert e.stats()["completed"]["CANCELLED"] == 3  # the window's three, no more
            with pytest.raises(portway.InvalidArgumentError):
                async for _ in e.amap("echo", [b""], window=0):
                    pass
            with pytest.raises(portway.InvalidArgumentError):  # the first failure is raised
                async for _ in e.amap("sleep", [b"1", b"nope", b"1"]):
                    pass

    asyncio.run(main())


# ------------------------------------------------------------------ types


def test_typed_dicts_catch_key_typos(tmp_path: Any) -> None:
    api = pytest.importorskip("mypy.api")
    src = tmp_path / "use.py"
    src.write_text(
        "import portway\n"
        "e = portway.Engine()\n"
        "a: int = e.stats()['submitted']\n"
        "b: int = e.inflight()['requests'][0]['age_ms']\n"  # a float
        "c: int = e.handler_stats('echo')['run']['p99_ns']\n"
        "d = e.stats()['submited']\n"
        "e.register_http('h', max_redirects='ten')\n"
    )
    out, _, rc = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", str(src)])
    assert rc == 1
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert {int(line.split(":")[1]) for line in errors} == {4, 6, 7}, out



# ------------------------------------------------------------------ the binding's README


@pytest.mark.parametrize(
    "snippet", re.findall(r"```python\n(.*?)```", (REPO / "bindings/python/README.md").read_text(), flags=re.S)
)
def test_readme_snippets_run(snippet: str) -> None:
    import textwrap

    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(snippet)], env=child_env(), capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
