#!/usr/bin/env python3
"""Runs the pre-fork recipes of docs/DEPLOYING.md briefly (make test-deploy).

    run_deploy.py --python target/pyenv/bin/python

- gunicorn, 2 workers (examples/deploy/gunicorn.conf.py + wsgi_app.py): curls /fanout
  concurrently until both workers have answered, checks every result, scrapes both workers'
  metrics ports and checks their sum counts every request (what Prometheus' sum by does), then
  stops it with SIGTERM and checks a clean exit.
- gunicorn --preload with an engine made at import (preload_mistake.py): the request fails and
  the worker's log shows ForkedError with its message.
- uWSGI with lazy-apps, 2 workers (uwsgi.ini + uwsgi_app.py): the same checks as gunicorn.
- Node cluster, 2 workers (node_cluster.js): the same checks as gunicorn.
- Node worker_threads (node_worker_threads.js): two threads, an engine each, exits 0.
Nothing here asserts on time: waits are bounded only so that a hang fails instead of blocking.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "examples" / "deploy"
HANG_S = 60  # a server that is not up (or not down) by then has hung
N, MS = 100, 200  # one /fanout request: N sleeps of MS ms and N echoes
ROUNDS, CONCURRENT = 20, 4  # up to ROUNDS rounds of CONCURRENT requests until both workers answer


def free_ports(count: int) -> int:
    """A base port such that base..base+count-1 are free right now."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base: int = s.getsockname()[1]
        if base + count > 65535:
            continue
        socks = []
        try:
            for p in range(base, base + count):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    sys.exit("no run of free ports found")


# Servers started and not yet stopped: main() kills their process groups on any failure, so a
# failed run leaves no gunicorn or cluster worker behind.
_RUNNING: list[Server] = []


class Server:
    """A server process (in a process group of its own, with its workers) whose stdout and
    stderr lines are collected as they come."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.lines: list[str] = []
        self.cond = threading.Condition()
        print(f"== {name}: {' '.join(cmd)}", flush=True)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        _RUNNING.append(self)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pattern: str, count: int) -> list[str]:
        """Waits until ``count`` lines match ``pattern``; fails if the process exits first."""
        rx = re.compile(pattern)
        with self.cond:
            ok = self.cond.wait_for(
                lambda: sum(1 for ln in self.lines if rx.search(ln)) >= count or self.proc.poll() is not None,
                timeout=HANG_S)
            found = [ln for ln in self.lines if rx.search(ln)]
        if not ok or len(found) < count:
            self.fail(f"expected {count} lines matching {pattern!r}")
        return found

    def stop(self) -> None:
        """SIGTERM, then a clean exit (status 0) is required."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            self.fail("did not exit after SIGTERM")
        _RUNNING.remove(self)
        if rc != 0:
            self.fail(f"exited with status {rc} after SIGTERM")

    def kill(self) -> None:
        """SIGKILL to the whole process group (the server and its workers)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def fail(self, why: str) -> NoReturn:
        self.kill()
        with self.cond:
            log = "\n".join(self.lines[-60:])
        sys.exit(f"{self.name}: {why}\n--- its output ---\n{log}")


def curl(url: str) -> tuple[int, str]:
    res = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", url],
                         capture_output=True, text=True, timeout=HANG_S)
    if res.returncode != 0:
        sys.exit(f"curl {url} failed: {res.stderr}")
    body, _, code = res.stdout.rpartition("\n")
    return int(code), body


def fan_out_until_both_answer(srv: Server, port: int) -> int:
    """Curls /fanout CONCURRENT at a time until two worker pids have answered; checks every
    result; returns how many requests were made."""
    url = f"http://127.0.0.1:{port}/fanout?n={N}&ms={MS}"
    pids: set[int] = set()
    made = 0
    with ThreadPoolExecutor(CONCURRENT) as pool:
        for _ in range(ROUNDS):
            for code, body in pool.map(curl, [url] * CONCURRENT):
                made += 1
                if code != 200:
                    srv.fail(f"/fanout answered {code}: {body}")
                r = json.loads(body)
                if (r["n"], r["ok"], r["sum"]) != (N, N, N * (N - 1) // 2):
                    srv.fail(f"/fanout gave a wrong result: {r}")
                pids.add(r["pid"])
            if len(pids) == 2:
                print(f"  {made} /fanout requests, answered by workers {sorted(pids)}, all results right")
                return made
    srv.fail(f"after {made} requests only workers {sorted(pids)} answered")


def check_metrics_sum(srv: Server, base: int, requests: int) -> None:
    """Scrapes each worker's metrics port and sums the echo submissions, like Prometheus'
    sum by (handler) (portway_requests_submitted_total) over the two targets."""
    counts = []
    for port in (base, base + 1):
        code, text = curl(f"http://127.0.0.1:{port}/metrics")
        m = re.search(r'^portway_requests_submitted_total\{handler="echo"\} (\d+)$', text, re.M)
        if code != 200 or m is None:
            srv.fail(f"metrics port {port}: {code}, no echo counter")
        counts.append(int(m.group(1)))
    if sum(counts) != requests * N or 0 in counts:
        srv.fail(f"per-worker echo counts {counts} should be nonzero and sum to {requests * N}")
    print(f"  metrics: echo submissions per worker {counts}, sum {sum(counts)} = {requests} x {N}")


def gunicorn(python: str) -> None:
    gunicorn_bin = str(Path(python).parent / "gunicorn")
    port, metrics = free_ports(1), free_ports(2)
    env = {"PORT": str(port), "WORKERS": "2", "METRICS_PORT": str(metrics)}
    srv = Server("gunicorn", [gunicorn_bin, "-c", str(DEPLOY / "gunicorn.conf.py"), "wsgi_app:app"], env)
    srv.wait_for(r"portway metrics on", 2)
    made = fan_out_until_both_answer(srv, port)
    check_metrics_sum(srv, metrics, made)
    srv.stop()
    print("  stopped cleanly")


def gunicorn_preload(python: str) -> None:
    gunicorn_bin = str(Path(python).parent / "gunicorn")
    port = free_ports(1)
    srv = Server("gunicorn --preload (the mistake)",
                 [gunicorn_bin, "--preload", "-w", "1", "-b", f"127.0.0.1:{port}", "--chdir", str(DEPLOY),
                  "preload_mistake:app"], {})
    srv.wait_for(r"Booting worker", 1)
    code, _ = curl(f"http://127.0.0.1:{port}/hello")
    if code != 500:
        srv.fail(f"the request through an inherited engine answered {code}, expected 500")
    (line,) = srv.wait_for(r"ForkedError", 1)[-1:]
    if "created before fork()" not in line:
        srv.fail(f"ForkedError without its explanation: {line}")
    print(f"  the worker's log: {line.strip()}")
    srv.stop()


def uwsgi(python: str) -> None:
    uwsgi_bin = str(Path(python).parent / "uwsgi")
    port, metrics = free_ports(1), free_ports(2)
    env = {"PORT": str(port), "WORKERS": "2", "METRICS_PORT": str(metrics)}
    srv = Server("uWSGI lazy-apps", [uwsgi_bin, "--ini", str(DEPLOY / "uwsgi.ini")], env)
    srv.wait_for(r"portway metrics on", 2)
    made = fan_out_until_both_answer(srv, port)
    check_metrics_sum(srv, metrics, made)
    srv.stop()
    print("  stopped cleanly")


def node_cluster() -> None:
    port, metrics = free_ports(1), free_ports(2)
    env = {"PORT": str(port), "WORKERS": "2", "METRICS_PORT": str(metrics)}
    srv = Server("node cluster", ["node", str(DEPLOY / "node_cluster.js")], env)
    srv.wait_for(r"cluster ready", 1)
    srv.wait_for(r"portway metrics on", 2)
    made = fan_out_until_both_answer(srv, port)
    check_metrics_sum(srv, metrics, made)
    srv.stop()
    print("  stopped cleanly")


def node_worker_threads() -> None:
    print("== node worker_threads")
    res = subprocess.run(["node", str(DEPLOY / "node_worker_threads.js"), "2", str(N)], cwd=ROOT,
                         capture_output=True, text=True, timeout=HANG_S)
    if res.returncode != 0:
        sys.exit(f"node_worker_threads.js failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    print("  " + res.stdout.strip().replace("\n", "\n  "))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", required=True, help="the venv python with portway and gunicorn")
    args = ap.parse_args()
    try:
        gunicorn(args.python)
        gunicorn_preload(args.python)
        uwsgi(args.python)
        node_cluster()
        node_worker_threads()
    finally:
        for srv in _RUNNING:
            srv.kill()
    print("test-deploy: gunicorn, gunicorn --preload, uWSGI lazy-apps, Node cluster and worker_threads recipes passed")


if __name__ == "__main__":
    main()
