from __future__ import annotations

import asyncio
import threading
import time

import pytest

import portway


def test_gather_10000_asubmit(eng: portway.Engine) -> None:
    async def main() -> list[portway.Completion]:
        return await asyncio.gather(*(eng.asubmit("echo", b"%d" % i) for i in range(10_000)))

    out = asyncio.run(main())
    assert [c.data for c in out] == [b"%d" % i for i in range(10_000)]
    assert eng.stats()["in_flight"] == 0


def test_asubmit_without_delivery_thread(eng: portway.Engine) -> None:
    async def main() -> bytes:
        cs = await asyncio.gather(*(eng.asubmit("sleep", b"5") for _ in range(50)))
        assert all(c.ok for c in cs)
        return (await eng.asubmit("echo", b"x")).data

    assert asyncio.run(main()) == b"x"
    assert eng._core.poller is None  # served from loop.add_reader only


def test_asubmit_errors_and_timeout(eng: portway.Engine) -> None:
    async def main() -> None:
        with pytest.raises(portway.TimeoutError):
            await eng.asubmit("sleep", b"5000", timeout=0.05)
        with pytest.raises(portway.UnknownHandlerError):
            await eng.asubmit("missing", b"")
        eng.register("fail", lambda p: (_ for _ in ()).throw(ValueError("bad input")))
        with pytest.raises(portway.HandlerError, match="bad input"):
            await eng.asubmit("fail", b"")

    asyncio.run(main())


def test_task_cancellation_cancels_native_request(eng: portway.Engine) -> None:
    async def main() -> None:
        task = asyncio.create_task(eng.asubmit("sleep", b"60000"))
        await asyncio.sleep(0.05)
        assert eng.stats()["in_flight"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):
            if eng.stats()["in_flight"] == 0:
                break
            await asyncio.sleep(0.01)
        s = eng.stats()
        assert s["in_flight"] == 0 and s["completed"]["CANCELLED"] == 1
        # wait_for timeout cancels too
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(eng.asubmit("sleep", b"60000"), 0.05)

    asyncio.run(main())


def test_engine_cancel_all_raises_cancelled_in_task(eng: portway.Engine) -> None:
    async def main() -> None:
        task = asyncio.create_task(eng.asubmit("sleep", b"60000"))
        await asyncio.sleep(0.02)
        eng.cancel_all()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_mixed_sync_and_async_and_two_loops(eng: portway.Engine) -> None:
    sync = [eng.submit("sleep", b"5") for _ in range(100)]
    results: list[int] = []

    def other_loop() -> None:
        async def m() -> int:
            cs = await asyncio.gather(*(eng.asubmit("sleep", b"3") for _ in range(300)))
            return len(cs)

        results.append(asyncio.run(m()))

    t = threading.Thread(target=other_loop)
    t.start()

    async def main() -> int:
        cs = await asyncio.gather(*(eng.asubmit("echo", b"%d" % i) for i in range(3000)))
        assert [c.data for c in cs] == [b"%d" % i for i in range(3000)]
        return len(cs)

    assert asyncio.run(main()) == 3000
    t.join(10)
    assert results == [300]
    assert all(f.result(timeout=5).ok for f in sync)


def test_close_from_the_loop_with_pending_async(eng: portway.Engine) -> None:
    async def main() -> None:
        tasks = [asyncio.create_task(eng.asubmit("sleep", b"60000")) for _ in range(5)]
        await asyncio.sleep(0.02)
        t0 = time.monotonic()
        eng.close(drain=False)
        assert time.monotonic() - t0 < 3
        res = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in res)

    asyncio.run(main())
