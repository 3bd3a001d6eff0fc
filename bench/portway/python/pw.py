"""The portway side of `make bench` from Python (bindings/python). Prints one JSON line.

    pw.py overhead N BATCH        W1: N empty "echo" requests, submit_many in batches of BATCH,
                                  two batches in flight
    pw.py batch N BATCH           W1: N empty "echo" requests through Engine.batch, BATCH per
                                  call, every result taken out as bytes
    pw.py http URL N CONCURRENCY [CA_PEM]
                                  W3: N GETs through "http" (Engine.ahttp), CONCURRENCY asyncio
                                  workers in flight. With CA_PEM (W3-TLS): through an http
                                  handler registered with extra_ca_pem_path=CA_PEM
    pw.py client URL N WINDOW     W3: N GETs through portway.Client.get_many, WINDOW in flight
                                  (the client's overhead over the raw `http` mode)
    pw.py aclient URL N WINDOW    W3: N GETs through portway.AsyncClient.get_many (stream_many),
                                  WINDOW in flight
    pw.py map URL N WINDOW        W3: N GETs through the raw sync path (Engine.map over "http"
                                  with prebuilt requests), WINDOW in flight: get_many's floor
    pw.py loopcost N CONCURRENCY  the binding's own cost in W3's shape, without a network: N
                                  Engine.ahttp requests sent to the built-in "echo" handler
                                  (which answers inline) by CONCURRENCY asyncio workers; prints
                                  the loop thread's CPU per request (best and median of 5)
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import deque
from collections.abc import Callable

import portway


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def timed_w1(n: int, batch: int, run: Callable[[int], int]) -> None:
    """Runs a W1 loop ``run(total) -> failures`` once to warm up, then times it over ``n``
    requests, prints the JSON line and exits non-zero if any failed."""
    run(min(10 * batch, n))  # warm-up
    t0 = time.perf_counter()
    failed = run(n)
    secs = time.perf_counter() - t0
    print(json.dumps({"n": n, "secs": secs, "rate": n / secs, "failed": failed, "batch": batch}))
    sys.exit(1 if failed else 0)


def overhead(n: int, batch: int) -> None:
    with portway.Engine(pool_workers=2) as eng:
        payloads = [b""] * batch

        def run(total: int) -> int:
            failed = done = submitted = 0
            in_flight: deque[list[portway.Future[portway.Completion]]] = deque()
            while done < total:
                while submitted < total and len(in_flight) < 2:
                    k = min(batch, total - submitted)
                    in_flight.append(eng.submit_many("echo", payloads[:k]))
                    submitted += k
                futs = in_flight.popleft()
                for f in futs:
                    if f.exception() is not None:
                        failed += 1
                done += len(futs)
            return failed

        timed_w1(n, batch, run)


def batch(n: int, size: int) -> None:
    """W1 through ``Engine.batch``: one native call and one completion per ``size`` requests;
    the host's work to get every result as ``bytes`` (``list(result)``) is counted."""
    with portway.Engine(pool_workers=2) as eng:
        payloads = [b""] * size

        def run(total: int) -> int:
            failed = done = 0
            while done < total:
                k = min(size, total - done)
                r = eng.batch("echo", payloads[:k])
                items = list(r)
                failed += len(r.failures())
                done += len(items)
            return failed

        timed_w1(n, size, run)


def http(url: str, n: int, conc: int, ca_pem: str | None) -> None:
    handler = "http"
    async def main() -> tuple[float, float, int]:
        failed = 0

        async def run(total: int) -> None:
            nonlocal failed
            left = total

            async def worker() -> None:
                nonlocal left, failed
                while left > 0:
                    left -= 1
                    try:
                        r = await eng.ahttp("GET", url, timeout=30.0, handler=handler)
                        if r.status != 200:
                            failed += 1
                    except portway.PortwayError as exc:
                        if failed == 0:
                            print(f"pw.py: {exc}", file=sys.stderr)
                        failed += 1

            await asyncio.gather(*(worker() for _ in range(conc)))

        await run(conc)  # warm-up: opens the connections
        failed = 0
        c0, t0 = cpu_s(), time.perf_counter()
        await run(n)
        return time.perf_counter() - t0, cpu_s() - c0, failed

    with portway.Engine() as eng:
        if ca_pem is not None:
            handler = "http-bench-ca"
            eng.register_http(handler, extra_ca_pem_path=ca_pem)
        secs, cpu, failed = asyncio.run(main())
    print(json.dumps({"n": n, "secs": secs, "rate": n / secs, "cpu_s": cpu, "failed": failed, "concurrency": conc}))
    sys.exit(1 if failed else 0)


def loopcost(n: int, conc: int) -> None:
    """The Python side of W3 alone: what ahttp, the tick flush, the poll and the asyncio
    machinery cost the loop thread per request (thread CPU time, so other processes on a
    shared machine disturb it less than a rate)."""
    url = "http://127.0.0.1:1/loopcost"  # never connected to: "echo" returns the request

    async def run(eng: portway.Engine, total: int) -> int:
        left, failed = total, 0

        async def worker() -> None:
            nonlocal left, failed
            while left > 0:
                left -= 1
                r = await eng.ahttp("GET", url, timeout=30.0, handler="echo")
                failed += r.status != 0 or not r.body.startswith(b"GET ")

        await asyncio.gather(*(worker() for _ in range(conc)))
        return failed

    with portway.Engine(runtime_threads=1, pool_workers=1) as eng:
        asyncio.run(run(eng, min(n, 1000)))  # warm-up
        per_req, failed = [], 0
        for _ in range(5):
            t0 = time.thread_time()
            failed += asyncio.run(run(eng, n))
            per_req.append((time.thread_time() - t0) / n * 1e6)
    per_req.sort()
    print(json.dumps({"n": n, "concurrency": conc, "loop_cpu_us_per_req_best": per_req[0],
                      "loop_cpu_us_per_req_median": per_req[2], "failed": failed}))
    sys.exit(1 if failed else 0)


def report(run: Callable[[int], int], n: int, window: int) -> None:
    """Warms up (opens the connections), times ``run(n)`` (it returns the failures), prints
    the JSON line and exits 1 on any failure."""
    run(window)
    c0, t0 = cpu_s(), time.perf_counter()
    failed = run(n)
    secs, cpu = time.perf_counter() - t0, cpu_s() - c0
    print(json.dumps({"n": n, "secs": secs, "rate": n / secs, "cpu_s": cpu, "failed": failed, "concurrency": window}))
    sys.exit(1 if failed else 0)


def client(url: str, n: int, window: int) -> None:
    with portway.Client(timeout=30.0) as cl:

        def run(total: int) -> int:
            rs = cl.get_many([url] * total, window=window, return_exceptions=True)
            bad = [r for r in rs if not isinstance(r, portway.Response) or r.status_code != 200]
            if bad:
                print(f"pw.py: {bad[0]!r}", file=sys.stderr)
            return len(bad)

        report(run, n, window)


def aclient(url: str, n: int, window: int) -> None:
    loop = asyncio.new_event_loop()
    cl = portway.AsyncClient(timeout=30.0)

    def run(total: int) -> int:
        rs = loop.run_until_complete(cl.get_many([url] * total, window=window))
        return sum(r.status_code != 200 for r in rs)

    try:
        report(run, n, window)
    finally:
        loop.run_until_complete(cl.aclose())
        loop.close()


def raw_map(url: str, n: int, window: int) -> None:
    from portway._http import build_request

    with portway.Engine() as eng:
        payload = build_request("GET", url, {"Accept": "*/*"})

        def run(total: int) -> int:
            return sum(c.code != 200 for c in eng.map("http", [payload] * total, window=window, timeout=30.0))

        report(run, n, window)


if __name__ == "__main__":
    a = sys.argv
    if len(a) >= 4 and a[1] == "overhead":
        overhead(int(a[2]), int(a[3]))
    elif len(a) >= 4 and a[1] == "batch":
        batch(int(a[2]), int(a[3]))
    elif len(a) >= 5 and a[1] == "http":
        http(a[2], int(a[3]), int(a[4]), a[5] if len(a) >= 6 else None)
    elif len(a) >= 5 and a[1] == "map":
        raw_map(a[2], int(a[3]), int(a[4]))
    elif len(a) >= 5 and a[1] == "aclient":
        aclient(a[2], int(a[3]), int(a[4]))
    elif len(a) >= 4 and a[1] == "loopcost":
        loopcost(int(a[2]), int(a[3]))
    elif len(a) >= 5 and a[1] == "client":
        client(a[2], int(a[3]), int(a[4]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
