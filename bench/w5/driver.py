#!/usr/bin/env python3
"""W5 from Python (issue 16): the C driver's closed loop through the Python binding.

    python bench/w5/driver.py URL N IN_FLIGHT [--limit L] [--timeout-ms T] [--slo-ms S]

IN_FLIGHT asyncio workers each await ``Engine.ahttp`` on an http handler of its own (no
per-host connection cap, as in driver.c), so IN_FLIGHT requests stay submitted; ``--limit`` is
``Engine.set_concurrency``. Prints one JSON line with the C driver's fields (goodput within the
SLO, p50 / p99 / p99.9 of every request, what the upstream's ``/stats`` saw). Needs the
``portway`` package importable (bench/w5/runner.py sets PYTHONPATH and PORTWAY_LIBRARY).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
import urllib.request
from typing import Any

import portway


def upstream(url: str, path: str, method: str = "GET") -> dict[str, Any]:
    """A control call to the upstream outside portway (the stats are not part of the load)."""
    with urllib.request.urlopen(urllib.request.Request(url + path, method=method), timeout=30) as r:
        body = r.read()
    return dict(json.loads(body)) if body else {}


def idle_stats(url: str) -> dict[str, Any]:
    """The upstream's stats once nothing is in progress there (timed-out requests keep it busy)."""
    while True:
        st = upstream(url, "stats")
        if st["in_progress"] == 0:
            return st
        time.sleep(0.02)


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted values (None when there are none)."""
    if not values:
        return None
    return values[max(0, math.ceil(p * len(values)) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", help="the upstream's base, http://HOST:PORT/")
    ap.add_argument("n", type=int)
    ap.add_argument("in_flight", type=int)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--timeout-ms", type=int, default=0)
    ap.add_argument("--slo-ms", type=int, default=100)
    args = ap.parse_args()
    if not args.url.startswith("http://") or not args.url.endswith("/"):
        ap.error("URL must be the upstream's base, http://HOST:PORT/")
    if args.n < 1 or args.in_flight < 1 or args.limit < 0 or args.timeout_ms < 0 or args.slo_ms < 1:
        ap.error("N and IN_FLIGHT must be >= 1, --limit and --timeout-ms >= 0, --slo-ms >= 1")
    work = args.url + "work"
    timeout = args.timeout_ms / 1000 if args.timeout_ms else None

    async def run(eng: portway.Engine, total: int, out: list[tuple[float, str]] | None) -> None:
        left = total

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                t = time.perf_counter()
                try:
                    r = await eng.ahttp("GET", work, timeout=timeout, handler="w5")
                    kind = "ok" if r.status == 200 else "error"
                except portway.TimeoutError:
                    kind = "timeout"
                if out is not None:
                    out.append(((time.perf_counter() - t) * 1e3, kind))

        await asyncio.gather(*(worker() for _ in range(args.in_flight)))

    outcomes: list[tuple[float, str]] = []
    with portway.Engine(max_in_flight=args.in_flight + 16) as eng:
        eng.register_http("w5", max_connections_per_host=0, decompress=False, proxy="", read_timeout_ms=0)
        if args.limit:
            eng.set_concurrency("w5", args.limit)
        asyncio.run(run(eng, args.in_flight, None))  # warm-up: opens the connections
        idle_stats(args.url)
        upstream(args.url, "stats/reset", "POST")
        t0 = time.perf_counter()
        asyncio.run(run(eng, args.n, outcomes))
        secs = time.perf_counter() - t0
    st = idle_stats(args.url)
    lat = sorted(ms for ms, _ in outcomes)
    ok = sum(1 for _, kind in outcomes if kind == "ok")
    good = sum(1 for ms, kind in outcomes if kind == "ok" and ms <= args.slo_ms)
    timeouts = sum(1 for _, kind in outcomes if kind == "timeout")
    errors = args.n - ok - timeouts
    print(json.dumps({
        "n": args.n, "in_flight": args.in_flight, "limit": args.limit, "timeout_ms": args.timeout_ms,
        "slo_ms": args.slo_ms, "secs": secs, "ok": ok, "good": good, "timeouts": timeouts, "errors": errors,
        "goodput": good / secs, "throughput": ok / secs, "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
        "p999_ms": pct(lat, 0.999), "max_ms": lat[-1], "server_started": st["started"],
        "server_served": st["served"], "server_max_in_progress": st["max_in_progress"],
        "server_over_knee": st["over_knee"], "server_tails": st["tails"], "server_abandoned": st["abandoned"],
        "server_down_rejected": st["down_rejected"], "host": "python"}))
    return 0 if errors == 0 and st["started"] >= ok and st["served"] == st["started"] else 1


if __name__ == "__main__":
    sys.exit(main())
