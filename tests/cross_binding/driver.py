"""Cross-binding driver for the Python binding: runs every case of cases.json (argv[1]) and
prints one JSON object {case name: {"status": ..., "detail": ...}}.

The status is ``PortwayError.status`` by name for a portway error, the exception's class name
for anything else (a bare ``ValueError`` shows as such, so a missing mapping is visible), and
PORTWAY_OK when the request completed successfully.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import portway

# How long a driver waits for one outcome; a case that hangs fails instead of blocking make test.
WAIT_S = 30.0


def status_name(status: int) -> str:
    try:
        return "PORTWAY_" + portway.Status(status).name
    except ValueError:
        return f"status {status}"


def run_case(case: dict[str, Any]) -> tuple[str, str]:
    kwargs: dict[str, Any] = {}
    if case.get("max_payload") is not None:
        kwargs["max_payload"] = case["max_payload"]
    if case.get("default_timeout_ms") is not None:
        kwargs["default_timeout"] = case["default_timeout_ms"] / 1000
    eng = portway.Engine(**kwargs)
    try:
        op = case["op"]
        if op == "cancel_unknown":
            # The binding names requests by their Future, not by id: the unknown id is that of a
            # request already completed (the header's NOT_FOUND covers "unknown or completed").
            fut = eng.submit("echo", b"done")
            fut.result(WAIT_S)
            return ("PORTWAY_OK" if eng.cancel(fut) else "PORTWAY_NOT_FOUND"), ""
        timeout = None if case.get("timeout_ms") is None else case["timeout_ms"] / 1000
        if op == "submit_after_close":
            eng.close()
        if op == "http":
            eng.http("GET", case["url"], timeout=timeout).result(WAIT_S)
        else:
            eng.submit(case["handler"], case["payload"].encode(), timeout=timeout).result(WAIT_S)
        return "PORTWAY_OK", ""
    except portway.PortwayError as exc:
        return status_name(exc.status), str(exc)
    except Exception as exc:  # noqa: BLE001 - a non-portway exception is an outcome to report
        return type(exc).__name__, str(exc)
    finally:
        eng.close()


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    out = {}
    for case in cases:
        status, detail = run_case(case)
        out[case["name"]] = {"status": status, "detail": detail}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
