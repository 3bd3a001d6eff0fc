"""HTTP fan-out through portway, beside the same calls made with a thread pool and urllib.

    python examples/python/fanout.py [URL] [TOTAL] [WINDOW]

URL may contain ``{i}`` (replaced by the request index); without a URL a small local server
is started. Prints a live progress bar, then a table of requests/s, p50/p90/p99 latency and
statuses for both clients. Exits 0 only when every request succeeded with HTTP 2xx.
"""

from __future__ import annotations

import concurrent.futures
import http.server
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from http.client import HTTPResponse
from typing import cast

import portway


@dataclass
class Run:
    """What one client achieved."""

    name: str
    total: int
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    def ok(self) -> bool:
        return sum(n for k, n in self.outcomes.items() if k.startswith("2")) == self.total

    def pct(self, p: float) -> float:
        lat = sorted(self.latencies_ms)
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else 0.0


class _Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def progress(name: str, done: int, total: int, started: float) -> None:
    width = 32
    filled = width * done // total
    rate = done / max(time.perf_counter() - started, 1e-9)
    bar = "#" * filled + "." * (width - filled)
    print(f"\r  {name:<22} [{bar}] {done:>6}/{total} {rate:>8.0f} req/s", end="", flush=True)


def run_portway(eng: portway.Engine, urls: list[str], window: int) -> Run:
    run = Run("portway (1 thread)", len(urls))
    pending: dict[concurrent.futures.Future[portway.HttpResponse], float] = {}
    it = iter(urls)
    started = time.perf_counter()
    done = 0
    while True:
        while len(pending) < window:
            url = next(it, None)
            if url is None:
                break
            pending[eng.http("GET", url, timeout=10.0)] = time.perf_counter()
        if not pending:
            break
        finished, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
        now = time.perf_counter()
        for f in finished:
            t0 = pending.pop(f)
            try:
                run.outcomes[str(f.result().status)] += 1
            except portway.PortwayError as exc:
                run.outcomes[type(exc).__name__] += 1
            run.latencies_ms.append((now - t0) * 1e3)
            done += 1
        if done % 500 < len(finished) or done == run.total:
            progress(run.name, done, run.total, started)
    run.wall_s = time.perf_counter() - started
    print()
    return run


def run_threads(urls: list[str], window: int) -> Run:
    run = Run(f"ThreadPool({window})+urllib", len(urls))

    def fetch(url: str) -> tuple[str, float]:
        t0 = time.perf_counter()
        try:
            with cast(HTTPResponse, urllib.request.urlopen(url, timeout=10.0)) as resp:
                resp.read()
                key = str(resp.status)
        except Exception as exc:  # noqa: BLE001 (every failure is counted, not raised)
            key = type(exc).__name__
        return key, (time.perf_counter() - t0) * 1e3

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=window) as pool:
        for done, (key, ms) in enumerate(pool.map(fetch, urls), 1):
            run.outcomes[key] += 1
            run.latencies_ms.append(ms)
            if done % 500 == 0 or done == run.total:
                progress(run.name, done, run.total, started)
    run.wall_s = time.perf_counter() - started
    print()
    return run


def table(runs: list[Run]) -> None:
    print(f"\n  {'client':<26}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}   statuses")
    for r in runs:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r.outcomes.items()))
        print(
            f"  {r.name:<26}{r.total / r.wall_s:>9.0f}{r.pct(50):>9.2f}{r.pct(90):>9.2f}{r.pct(99):>9.2f}   {statuses}"
        )
    if len(runs) == 2 and runs[1].wall_s > 0:
        print(f"\n  portway is {runs[1].wall_s / runs[0].wall_s:.1f}x the thread pool's throughput")


def main() -> int:
    server: http.server.ThreadingHTTPServer | None = None
    if len(sys.argv) > 1:
        base = sys.argv[1]
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}/items/{{i}}"
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    window = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    urls = [base.replace("{i}", str(i)) for i in range(total)]
    print(f"fan-out: {total} GETs, {window} in flight, to {base}")
    with portway.Engine() as eng:
        runs = [run_portway(eng, urls, window)]
    runs.append(run_threads(urls, window))
    table(runs)
    if server is not None:
        server.shutdown()
    if not runs[0].ok():
        print("\nFAILED: some portway requests did not succeed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
