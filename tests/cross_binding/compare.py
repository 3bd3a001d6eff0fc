#!/usr/bin/env python3
"""Runs tests/cross_binding/cases.json through the C, Python and Node drivers and compares each
outcome with the table's expectation. Prints the whole table, then the mismatches with each
binding's message, and exits 1 if there is any mismatch (no case is ever skipped).

    compare.py --c DRIVER_C --python PYTHON --node NODE [cases.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LANGS = ("c", "python", "node")
# One driver run must not hang make test (every case ends within its deadline or a 20 ms sleep;
# a binding that ignored a deadline would take the 5 s sleep of the default-timeout case).
DRIVER_TIMEOUT_S = 120


def run(cmd: list[str]) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=DRIVER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return json.dumps({"__driver__": f"timed out after {DRIVER_TIMEOUT_S} s"})
    if res.returncode != 0:
        raise SystemExit(f"driver failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout}\n{res.stderr}")
    return res.stdout


def c_outcomes(driver: str, cases: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    out = {}
    for case in cases:
        def arg(key: str) -> str:
            v = case.get(key)
            return "-" if v is None else str(v)

        lines = run([driver, case["op"], case.get("handler", ""), case.get("payload", ""),
                     arg("timeout_ms"), arg("max_payload"), arg("default_timeout_ms"),
                     case.get("url", "")]).splitlines()
        out[case["name"]] = {"status": lines[0] if lines else "(no output)", "detail": " ".join(lines[1:])}
    return out


def expected(case: dict[str, Any], lang: str) -> str:
    exp = case["expect"]
    return exp if isinstance(exp, str) else exp[lang]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--c", required=True, help="the built driver.c")
    ap.add_argument("--python", required=True, help="an interpreter with portway installed")
    ap.add_argument("--node", default="node")
    ap.add_argument("cases", nargs="?", default=str(HERE / "cases.json"))
    args = ap.parse_args()
    cases = json.loads(Path(args.cases).read_text())["cases"]
    got = {
        "c": c_outcomes(args.c, cases),
        "python": json.loads(run([args.python, str(HERE / "driver.py"), args.cases])),
        "node": json.loads(run([args.node, str(HERE / "driver.js"), args.cases])),
    }
    width = max(len(c["name"]) for c in cases)
    print(f"{'case':<{width}}  {'lang':<6}  {'expected':<27}  {'got':<27}")
    mismatches = []
    for case in cases:
        for lang in LANGS:
            exp = expected(case, lang)
            res = got[lang].get(case["name"], {"status": "(no result)", "detail": ""})
            ok = res["status"] == exp
            mark = "ok" if ok else "MISMATCH"
            print(f"{case['name']:<{width}}  {lang:<6}  {exp:<27}  {res['status']:<27}  {mark}")
            if not ok:
                mismatches.append((case["name"], lang, exp, res))
    if mismatches:
        print(f"\n{len(mismatches)} mismatch(es):")
        for name, lang, exp, res in mismatches:
            print(f"  {name} [{lang}]: expected {exp}, got {res['status']}: {res['detail']!r}")
        sys.exit(1)
    print(f"\ncross-binding table: {len(cases)} cases x {len(LANGS)} bindings agree")


if __name__ == "__main__":
    main()
