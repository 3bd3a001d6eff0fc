#!/usr/bin/env python3
"""Runs the README's C, Python and Node quick starts exactly as written.

    python3 tools/check_readme.py PYTHON   (PYTHON: an interpreter with portway installed)
"""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "quickstart"


def blocks(lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def run(cmd: list[str], **kw: object) -> str:
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, **kw)
    if res.returncode != 0:
        sys.exit(f"quick start failed: {' '.join(cmd)}\n{res.stdout}\n{res.stderr}")
    return res.stdout


def main() -> None:
    python = sys.argv[1] if len(sys.argv) > 1 else sys.executable
    OUT.mkdir(parents=True, exist_ok=True)
    checks = []
    for lang, ext in (("c", "c"), ("python", "py"), ("js", "js")):
        found = blocks(lang)
        if len(found) != 1:
            sys.exit(f"README.md should have exactly one ```{lang} quick start, found {len(found)}")
        lines = found[0].count("\n")
        if lines > 25:
            sys.exit(f"the {lang} quick start has {lines} lines; keep it under 25")
        path = OUT / f"hello.{ext}"
        path.write_text(found[0])
        checks.append((lang, path))
    release = ROOT / "target" / "release"
    exe = OUT / "hello"
    run(["cc", "-Wall", "-Wextra", "-Werror", str(checks[0][1]), "-Iinclude", f"-L{release}",
         "-lportway", f"-Wl,-rpath,{release}", "-o", str(exe)])
    assert "hello" in run([str(exe)]), "C quick start printed no hello"
    out = run([python, str(checks[1][1])])
    assert "b'hello'" in out and "timed out" in out, out
    js = ROOT / "target" / "quickstart_hello.js"  # beside the repo root so the require path works
    js.write_text(checks[2][1].read_text().replace("./bindings/node", str(ROOT / "bindings" / "node")))
    out = run(["node", str(js)])
    assert "hello" in out and "PORTWAY_TIMEOUT" in out, out
    print("README quick starts: 3 passed, 0 failed")


if __name__ == "__main__":
    main()
