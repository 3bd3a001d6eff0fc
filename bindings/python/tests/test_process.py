"""Interpreter exit, fork and Ctrl-C: run in subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import portway

from conftest import child_env


def run_py(code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=timeout
    )


def test_exit_with_10000_in_flight() -> None:
    code = """
import portway
eng = portway.Engine(runtime_threads=2, pool_workers=2)
futs = eng.submit_many("sleep", [b"60000"] * 10000)
futs += [eng.submit("sleep", b"60000") for _ in range(100)]
eng.register("py", lambda p: p)
more = [eng.submit("py", b"x") for _ in range(100)]
print("submitted", len(futs), flush=True)
"""
    t0 = time.monotonic()
    r = run_py(code)
    assert r.returncode == 0, r.stderr
    assert "submitted 10100" in r.stdout
    assert time.monotonic() - t0 < 20
    assert "Traceback" not in r.stderr


def test_exit_with_asyncio_and_daemon_thread_in_flight() -> None:
    code = """
import asyncio, threading, portway
eng = portway.Engine(runtime_threads=2, pool_workers=2)
def spin():
    while True:
        eng.submit("sleep", b"60000")
        try:
            eng.submit("echo", b"x").result()
        except portway.PortwayError:
            return
threading.Thread(target=spin, daemon=True).start()
async def main():
    for _ in range(100):
        asyncio.ensure_future(eng.asubmit("sleep", b"60000"))
    await asyncio.sleep(0.1)
asyncio.run(main())
print("done", flush=True)
"""
    r = run_py(code)
    assert r.returncode == 0, r.stderr
    assert "done" in r.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_child_gets_forked_error(eng: portway.Engine) -> None:
    assert eng.submit("echo", b"before").result().data == b"before"
    held = eng.submit("sleep", b"200")
    r_fd, w_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(r_fd)
            msgs = []
            for call in (
                lambda: eng.submit("echo", b"x"),
                lambda: eng.submit_many("echo", [b"x"]),
                lambda: eng.stats(),
                lambda: eng.cancel_all(),
            ):
                try:
                    call()
                    msgs.append("no error")
                except portway.ForkedError as exc:
                    msgs.append("forked" if exc.status == portway.Status.FORKED else "bad status")
                except BaseException as exc:  # noqa: BLE001
                    msgs.append(repr(exc))
            with portway.Engine(runtime_threads=1, pool_workers=1) as fresh:
                msgs.append(fresh.submit("echo", b"child").result(timeout=5).data.decode())
            eng.close()  # leaks the parent's engine, must not hang
            os.write(w_fd, ",".join(msgs).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w_fd)
    _, status = os.waitpid(pid, 0)
    out = os.read(r_fd, 4096).decode()
    os.close(r_fd)
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert out == "forked,forked,forked,forked,child"
    assert held.result(timeout=5).ok
    assert eng.submit("echo", b"after").result().data == b"after"


def test_ctrl_c_interrupts_blocked_result() -> None:
    code = """
import portway, sys
eng = portway.Engine(runtime_threads=1, pool_workers=1)
fut = eng.submit("sleep", b"60000")
print("waiting", flush=True)
try:
    fut.result()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(0)
sys.exit(3)
"""
    p = subprocess.Popen([sys.executable, "-c", code], env=child_env(), stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "waiting"
    time.sleep(0.3)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=20)
    assert p.returncode == 0
    assert "interrupted" in out
    assert time.monotonic() - t0 < 5
