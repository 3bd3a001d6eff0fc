"""The Python anchors of `make bench`. Prints one JSON line.

    anchors.py tpe N BATCH            W1: N no-op calls through ThreadPoolExecutor(2), submitted
                                      in batches of BATCH, two batches in flight
    anchors.py asyncio N BATCH        W1: N no-op coroutines as tasks, asyncio.gather per batch
    anchors.py sleep N MS             W2: asyncio.gather of N asyncio.sleep(MS / 1000)
    anchors.py aiohttp URL N CONC [CA_PEM]
                                      W3: N GETs with aiohttp (one ClientSession, a connector of
                                      CONC connections), CONC asyncio workers in flight; with
                                      CA_PEM (W3-TLS) over https trusting that CA (aiohttp
                                      speaks HTTP/1.1 only: up to CONC TLS connections)
    anchors.py httpx URL N CONC CA_PEM
                                      W3-TLS: the same with httpx.AsyncClient(http2=True), one
                                      client, CONC asyncio workers (HTTP/2 through ALPN)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import resource
import ssl
import sys
import time
from collections import Counter, deque
from typing import Awaitable, Callable


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


def ssl_context(ca_pem: str | None) -> ssl.SSLContext | bool:
    """A default client context that also trusts the harness's CA; without one True, which both
    aiohttp and httpx take as "verify with the default roots"."""
    return True if ca_pem is None else ssl.create_default_context(cafile=ca_pem)


async def fanout(get: Callable[[], Awaitable[bool]], errors: tuple[type[BaseException], ...],
                 n: int, conc: int) -> dict[str, float]:
    """W3's loop for every Python client: `conc` asyncio workers share `n` calls of get()
    (True = a 200 response; an exception of `errors` counts as a failure, the first one is
    printed), after a warm-up of `conc` calls that opens the connections. Returns the timed
    part's figures for the JSON line."""
    failed = 0

    async def run(total: int) -> None:
        nonlocal failed
        left = total

        async def worker() -> None:
            nonlocal left, failed
            while left > 0:
                left -= 1
                try:
                    ok = await get()
                except errors as exc:
                    if failed == 0:
                        print(f"anchors.py: {exc!r}", file=sys.stderr)
                    ok = False
                failed += not ok

        await asyncio.gather(*(worker() for _ in range(conc)))

    await run(conc)
    failed = 0
    c0, t0 = cpu_s(), time.perf_counter()
    await run(n)
    secs = time.perf_counter() - t0
    return {"n": n, "secs": secs, "rate": n / secs, "cpu_s": cpu_s() - c0, "failed": failed,
            "concurrency": conc}


def aiohttp_fanout(url: str, n: int, conc: int, ca_pem: str | None) -> None:
    import aiohttp

    async def main() -> dict[str, float]:
        conn = aiohttp.TCPConnector(limit=conc, limit_per_host=conc, ssl=ssl_context(ca_pem))
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30)) as s:

            async def get() -> bool:
                async with s.get(url) as r:
                    await r.read()
                    return r.status == 200

            return await fanout(get, (aiohttp.ClientError,), n, conc)

    out = asyncio.run(main())
    emit(**out)
    sys.exit(1 if out["failed"] else 0)


def httpx_fanout(url: str, n: int, conc: int, ca_pem: str) -> None:
    import httpx

    async def main() -> dict[str, float]:
        versions: Counter[str] = Counter()
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        async with httpx.AsyncClient(http2=True, verify=ssl_context(ca_pem), limits=limits,
                                     timeout=30.0) as client:

            async def get() -> bool:
                r = await client.get(url)
                versions[r.http_version] += 1
                return r.status_code == 200

            out = await fanout(get, (httpx.HTTPError,), n, conc)
        # Counted over the warm-up too: what matters is that no request fell back to HTTP/1.1.
        h2 = versions["HTTP/2"]
        return {**out, "h2_responses": h2, "other_versions": sum(versions.values()) - h2}

    out = asyncio.run(main())
    emit(**out)
    sys.exit(1 if out["failed"] else 0)


if __name__ == "__main__":
    a = sys.argv
    if len(a) >= 4 and a[1] == "tpe":
        tpe(int(a[2]), int(a[3]))
    elif len(a) >= 4 and a[1] == "asyncio":
        aio(int(a[2]), int(a[3]))
    elif len(a) >= 4 and a[1] == "sleep":
        sleep(int(a[2]), int(a[3]))
    elif len(a) >= 5 and a[1] == "aiohttp":
        aiohttp_fanout(a[2], int(a[3]), int(a[4]), a[5] if len(a) >= 6 else None)
    elif len(a) >= 6 and a[1] == "httpx":
        httpx_fanout(a[2], int(a[3]), int(a[4]), a[5])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
