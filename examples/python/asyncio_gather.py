"""asyncio with portway: gather thousands of requests, per-request timeouts, task cancellation.

    python examples/python/asyncio_gather.py
"""

from __future__ import annotations

import asyncio
import time

import portway


async def main() -> None:
    with portway.Engine() as eng:
        t0 = time.perf_counter()
        echoes = await asyncio.gather(*(eng.asubmit("echo", f"msg {i}") for i in range(10_000)))
        print(f"10000 echoes in {time.perf_counter() - t0:.3f}s; last = {echoes[-1].data!r}")

        # 1000 timers of 100 ms each run concurrently without holding any thread
        t0 = time.perf_counter()
        await asyncio.gather(*(eng.asubmit("sleep", b"100") for _ in range(1000)))
        print(f"1000 x sleep(100ms) in {time.perf_counter() - t0:.3f}s")

        # a per-request deadline
        try:
            await eng.asubmit("sleep", b"5000", timeout=0.1)
        except portway.TimeoutError as exc:
            print("timed out as asked:", exc)

        # cancelling the task cancels the native request
        task = asyncio.create_task(eng.asubmit("sleep", b"60000"))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # let the loop poll the CANCELLED completion
            print("cancelled; engine in_flight =", eng.stats()["in_flight"])

        # results and errors side by side
        results = await asyncio.gather(
            eng.asubmit("echo", b"fine"), eng.asubmit("nope", b""), return_exceptions=True
        )
        print("mixed:", [r.data if isinstance(r, portway.Completion) else type(r).__name__ for r in results])


if __name__ == "__main__":
    asyncio.run(main())
