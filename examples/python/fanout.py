"""HTTP fan-out: N requests through portway's "http" handler, a progress bar, a latency summary.

    python examples/python/fanout.py                 # against a built-in local server
    python examples/python/fanout.py URL [N] [CONC]  # against your own URL
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import portway


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"hello from " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True


def _bar(done: int, total: int, width: int = 40) -> str:
    filled = width * done // total
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def _pct(sorted_ms: list[float], p: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(p / 100 * len(sorted_ms)))]


def main() -> int:
    server = None
    if len(sys.argv) > 1:
        base = sys.argv[1]
    else:
        server = _Server(("127.0.0.1", 0), _Hello)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    window = int(sys.argv[3]) if len(sys.argv) > 3 else 64

    with portway.Engine() as eng:
        if not eng.has_handler("http"):
            print("this libportway has no 'http' handler yet; nothing to fan out")
            return 0
        latencies: list[float] = []
        statuses: dict[str, int] = {}
        t0 = time.perf_counter()
        done = 0
        pending: set[concurrent.futures.Future[portway.HttpResponse]] = set()
        urls = iter(f"{base}/item/{i}" if server else base for i in range(total))
        while True:
            while len(pending) < window:
                url = next(urls, None)
                if url is None:
                    break
                pending.add(eng.http("GET", url, timeout=10.0))
            if not pending:
                break
            finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for f in finished:
                try:
                    resp = f.result()
                    key = str(resp.status)
                    if resp.completion is not None:
                        latencies.append((resp.completion.queued_ns + resp.completion.run_ns) / 1e6)
                except portway.PortwayError as exc:
                    key = type(exc).__name__
                statuses[key] = statuses.get(key, 0) + 1
                done += 1
            print(_bar(done, total), end="", flush=True)
        wall = time.perf_counter() - t0
        print()
        lat = sorted(latencies)
        print(f"{total} requests in {wall:.2f}s ({total / wall:.0f} req/s), window {window}")
        print("outcomes:", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
        if lat:
            print(
                f"latency ms: min {lat[0]:.2f}  p50 {_pct(lat, 50):.2f}  p90 {_pct(lat, 90):.2f}  "
                f"p99 {_pct(lat, 99):.2f}  max {lat[-1]:.2f}"
            )
    if server:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
