"""The Python anchors of `make bench`. Prints one JSON line.

    anchors.py tpe N BATCH            W1: N no-op calls through ThreadPoolExecutor(2), submitted
                                      in batches of BATCH, two batches in flight
    anchors.py asyncio N BATCH        W1: N no-op coroutines as tasks, asyncio.gather per batch
    anchors.py sleep N MS             W2: asyncio.gather of N asyncio.sleep(MS / 1000)
    anchors.py aiohttp URL N CONC     W3: N GETs with aiohttp (one ClientSession, a connector of
                                      CONC connections), CONC asyncio workers in flight
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import resource
import sys
import time
from collections import deque


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def emit(**kw: object) -> None:
    print(json.dumps(kw))


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def noop(x: bytes) -> bytes:
    return x


def tpe(n: int, batch: int) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as ex:

        def run(total: int) -> None:
            done = submitted = 0
            in_flight: deque[list[concurrent.futures.Future[bytes]]] = deque()
            while done < total:
                while submitted < total and len(in_flight) < 2:
                    k = min(batch, total - submitted)
                    in_flight.append([ex.submit(noop, b"") for _ in range(k)])
                    submitted += k
                futs = in_flight.popleft()
                for f in futs:
                    f.result()
                done += len(futs)

        run(min(10 * batch, n))
        t0 = time.perf_counter()
        run(n)
        secs = time.perf_counter() - t0
    emit(n=n, secs=secs, rate=n / secs, batch=batch, workers=2)


def aio(n: int, batch: int) -> None:
    async def one(x: bytes) -> bytes:
        return x

    async def run(total: int) -> None:
        done = 0
        while done < total:
            k = min(batch, total - done)
            await asyncio.gather(*(one(b"") for _ in range(k)))
            done += k

    async def main() -> float:
        await run(min(10 * batch, n))
        t0 = time.perf_counter()
        await run(n)
        return time.perf_counter() - t0

    secs = asyncio.run(main())
    emit(n=n, secs=secs, rate=n / secs, batch=batch)


def sleep(n: int, ms: int) -> None:
    async def main() -> tuple[float, int]:
        await asyncio.gather(*(asyncio.sleep(ms / 1000) for _ in range(100)))
        base = rss_kib()
        t0 = time.perf_counter()
        # gather wraps every coroutine in a task before any of them runs: all n are in flight.
        await asyncio.gather(*(asyncio.sleep(ms / 1000) for _ in range(n)))
        return time.perf_counter() - t0, base

    secs, base = asyncio.run(main())
    emit(n=n, secs=secs, rss_base_kib=base, peak_in_flight=n, failed=0)


def aiohttp_fanout(url: str, n: int, conc: int) -> None:
    import aiohttp

    async def main() -> tuple[float, float, int]:
        failed = 0
        conn = aiohttp.TCPConnector(limit=conc, limit_per_host=conc)
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30)) as s:

            async def run(total: int) -> None:
                nonlocal failed
                left = total

                async def worker() -> None:
                    nonlocal left, failed
                    while left > 0:
                        left -= 1
                        try:
                            async with s.get(url) as r:
                                await r.read()
                                if r.status != 200:
                                    failed += 1
                        except aiohttp.ClientError as exc:
                            if failed == 0:
                                print(f"anchors.py: {exc}", file=sys.stderr)
                            failed += 1

                await asyncio.gather(*(worker() for _ in range(conc)))

            await run(conc)
            failed = 0
            c0, t0 = cpu_s(), time.perf_counter()
            await run(n)
            return time.perf_counter() - t0, cpu_s() - c0, failed

    secs, cpu, failed = asyncio.run(main())
    emit(n=n, secs=secs, rate=n / secs, cpu_s=cpu, failed=failed, concurrency=conc)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    a = sys.argv
    if len(a) >= 4 and a[1] == "tpe":
        tpe(int(a[2]), int(a[3]))
    elif len(a) >= 4 and a[1] == "asyncio":
        aio(int(a[2]), int(a[3]))
    elif len(a) >= 4 and a[1] == "sleep":
        sleep(int(a[2]), int(a[3]))
    elif len(a) >= 5 and a[1] == "aiohttp":
        aiohttp_fanout(a[2], int(a[3]), int(a[4]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
