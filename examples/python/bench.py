"""No-op echo throughput from Python: portway vs ThreadPoolExecutor(2) vs plain asyncio.

    PORTWAY_LIBRARY=target/release/libportway.so python examples/python/bench.py [N]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import time
from collections.abc import Callable

import portway

N = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000


def rate(label: str, n: int, fn: Callable[[], object]) -> float:
    """Wall-clock rate; also prints the process CPU time per request (all threads), which
    moves less than the rate on a loaded machine."""
    t0 = time.perf_counter()
    c0 = time.process_time()
    fn()
    dt = time.perf_counter() - t0
    dc = time.process_time() - c0
    print(f"{label:<46} {n / dt:>10,.0f} req/s  {dc / n * 1e6:>7.2f} us CPU/req")
    return n / dt


def noop(x: bytes) -> bytes:
    return x


def main() -> None:
    with portway.Engine(runtime_threads=2, pool_workers=2) as eng, concurrent.futures.ThreadPoolExecutor(2) as tpe:
        eng.submit("echo", b"warm").result()
        tpe.submit(noop, b"warm").result()

        def pw_loop() -> None:
            for _ in range(N):
                eng.submit("echo", b"x").result()

        def pw_batch() -> None:
            for i in range(0, N, 1000):
                for f in eng.submit_many("echo", [b"x"] * 1000):
                    f.result()

        async def pw_async() -> None:
            for i in range(0, N, 10_000):
                await asyncio.gather(*(eng.asubmit("echo", b"x") for _ in range(10_000)))

        def tpe_loop() -> None:
            for _ in range(N):
                tpe.submit(noop, b"x").result()

        def tpe_batch() -> None:
            for i in range(0, N, 1000):
                for f in [tpe.submit(noop, b"x") for _ in range(1000)]:
                    f.result()

        async def plain_async() -> None:
            async def one(x: bytes) -> bytes:
                return x

            for i in range(0, N, 10_000):
                await asyncio.gather(*(one(b"x") for _ in range(10_000)))

        print(f"N = {N}, portway {portway.library_version()} from {portway.LIBRARY_PATH}")
        if hasattr(os, "getloadavg"):
            print("load average %.2f %.2f %.2f on %d CPUs" % (*os.getloadavg(), os.cpu_count() or 0))
        a = rate("portway submit().result() loop", N, pw_loop)
        b = rate("portway submit_many (batches of 1000)", N, pw_batch)
        c = rate("portway asubmit x asyncio.gather(10000)", N, lambda: asyncio.run(pw_async()))
        t = rate("ThreadPoolExecutor(2) submit().result() loop", N, tpe_loop)
        tb = rate("ThreadPoolExecutor(2) submit x1000 then result", N, tpe_batch)
        rate("plain asyncio gather(10000) of no-op coroutines", N, lambda: asyncio.run(plain_async()))
        print(f"per-request vs TPE loop: {a / t:.1f}x   batch vs TPE loop: {b / t:.1f}x   "
              f"batch vs TPE batch: {b / tb:.1f}x   asyncio vs TPE loop: {c / t:.1f}x")


if __name__ == "__main__":
    main()
