"""The interpreter exits while a Python handler still runs (issue 12, point 3).

CPython 3.11+ ends a thread that wants the GIL once finalization has begun with
``pthread_exit``, a forced unwind through the engine's worker thread. The engine must let it
pass: the process exits normally instead of aborting ("FATAL: exception not rethrown").
"""

from __future__ import annotations

import subprocess
import sys

from conftest import child_env

# The handler naps in a loop, taking the GIL back after each nap. At exit the engine is
# closed (its worker, still inside the handler, is abandoned after the grace period); then,
# while the interpreter finalizes, an object's __del__ sleeps, so the handler's thread wakes
# up, wants the GIL, and is ended by CPython with pthread_exit.
SCRIPT = """
import threading, time, portway

eng = portway.Engine(runtime_threads=1, pool_workers=1)
started = threading.Event()

def napper(payload: bytes) -> bytes:
    started.set()
    for _ in range(3000):
        time.sleep(0.01)
    return payload

eng.register("napper", napper)
fut = eng.submit("napper", b"x")
assert started.wait(10)

class SlowToDie:
    def __del__(self) -> None:
        time.sleep(0.5)  # runs while the interpreter finalizes

keeper = SlowToDie()
print("exiting while the handler runs", flush=True)
"""


def test_interpreter_exit_while_a_python_handler_runs() -> None:
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=child_env(), capture_output=True, text=True, timeout=60
    )
    assert "exiting while the handler runs" in r.stdout
    assert "exception not rethrown" not in r.stderr, r.stderr
    assert r.returncode == 0, (r.returncode, r.stderr)
