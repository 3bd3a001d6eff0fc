#!/usr/bin/env python3
"""Checks what `make dist` built, the way a user without a Rust toolchain would meet it.

    check_dist.py --dist dist --python python3

- Every shipped native file (the wheel's libportway.so, the npm tarball's portway.node, the C
  tarball's libraries) carries no debug info.
- The wheel is tagged manylinux; it installs into a fresh venv from the file alone, and the
  README's Python quick start runs against it with PATH holding only that venv's python.
- The npm tarball installs into a fresh directory (npm install of the file, offline) with PATH
  holding only node and npm, and the README's Node quick start runs against it.
- The C tarball unpacks anywhere; the README's C quick start builds with its pkg-config file
  alone (no other search path) and runs.
cargo is absent from every PATH used (checked), and for Python and Node so is cc: nothing
there can compile.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
STEP_TIMEOUT_S = 300


def readme_blocks(lang: str) -> str:
    """The README's one quick start in ``lang`` (tools/check_readme.py does the extracting)."""
    spec = importlib.util.spec_from_file_location("check_readme", ROOT / "tools" / "check_readme.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    found: list[str] = mod.blocks(lang)
    if len(found) != 1:
        sys.exit(f"README.md should have exactly one ```{lang} quick start, found {len(found)}")
    return found[0]


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    print("  $ " + " ".join(cmd), flush=True)
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    if res.returncode != 0:
        sys.exit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout}\n{res.stderr}")
    return res.stdout


def only_one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    if len(found) != 1:
        sys.exit(f"expected exactly one {pattern} in {dist}, found {[p.name for p in found]}")
    return found[0]


def assert_stripped(path: Path) -> None:
    sections = run(["readelf", "-S", "-W", str(path)], cwd=path.parent)
    if ".debug_info" in sections:
        sys.exit(f"{path} still carries debug info ({path.stat().st_size} bytes)")
    print(f"  {path.name}: stripped, {path.stat().st_size / 1e6:.1f} MB")


def sandbox_env(path: Path) -> dict[str, str]:
    """An environment whose PATH is the one directory ``path``; no compiler may be on it."""
    env = {"PATH": str(path), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    for absent in ("cargo", "rustc", "cc", "gcc"):
        if shutil.which(absent, path=env["PATH"]):
            sys.exit(f"{absent} is reachable from the test PATH {env['PATH']}")
    return env


def quick_start(lang: str, cmd: list[str], cwd: Path, env: dict[str, str], expect: tuple[str, ...]) -> None:
    """Runs a quick start; its output must contain every string of ``expect``."""
    out = run(cmd, cwd=cwd, env=env)
    if not all(e in out for e in expect):
        sys.exit(f"the {lang} quick start printed:\n{out}")
    print(f"  {lang} quick start: ok")


def check_wheel(dist: Path, python: str, work: Path) -> None:
    print("== wheel")
    wheel = only_one(dist, "portway-*.whl")
    if "manylinux" not in wheel.name or "-py3-none-" not in wheel.name:
        sys.exit(f"{wheel.name}: expected a py3-none-manylinux_* wheel (auditwheel repair)")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        if "portway/libportway.so" not in names:
            sys.exit(f"{wheel.name} has no portway/libportway.so: {names}")
        z.extract("portway/libportway.so", work / "unzipped")
    assert_stripped(work / "unzipped" / "portway" / "libportway.so")
    venv = work / "venv"
    run([python, "-m", "venv", str(venv)], cwd=work)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--no-index", str(wheel)], cwd=work)
    env = sandbox_env(venv / "bin")  # python and pip (a link elsewhere would lose the venv)
    app = work / "pyapp"
    app.mkdir()
    (app / "hello.py").write_text(readme_blocks("python"))
    where = run(["python", "-c", "import portway; print(portway.LIBRARY_PATH)"], cwd=app, env=env).strip()
    if not where.startswith(str(venv)):
        sys.exit(f"portway loaded its library from {where}, not from the venv {venv}")
    quick_start("Python", ["python", "hello.py"], app, env, ("b'hello'", "timed out"))


def check_npm(dist: Path, work: Path) -> None:
    print("== npm tarball")
    tgz = only_one(dist, "portway-*.tgz")
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        sys.exit("node and npm are needed to test the npm tarball")
    bindir = work / "nodebin"
    bindir.mkdir()
    (bindir / "node").symlink_to(node)
    (bindir / "npm").symlink_to(Path(npm).resolve())
    env = sandbox_env(bindir)
    app = work / "nodeapp"
    app.mkdir()
    (app / "package.json").write_text('{ "name": "quickstart", "version": "1.0.0", "private": true }\n')
    run(["npm", "install", "--offline", "--no-audit", "--no-fund", "--no-package-lock", str(tgz)],
        cwd=app, env=env)
    addon = app / "node_modules" / "portway" / "build" / "portway.node"
    assert_stripped(addon)
    needed = run(["readelf", "-d", str(addon)], cwd=app)
    if "libportway" in needed:
        sys.exit(f"{addon} needs libportway.so; it should carry libportway.a")
    (app / "hello.js").write_text(readme_blocks("js").replace("'./bindings/node'", "'portway'"))
    quick_start("Node", ["node", "hello.js"], app, env, ("hello", "PORTWAY_TIMEOUT"))


def check_c(dist: Path, work: Path) -> None:
    print("== C tarball")
    tgz = only_one(dist, "portway-*-linux-*.tar.gz")
    with tarfile.open(tgz) as t:
        t.extractall(work / "c", filter="tar")
    (top,) = (work / "c").iterdir()
    lib = top / "lib"
    for f in (lib / "libportway.a", next(lib.glob("libportway.so.*.*.*"))):
        assert_stripped(f)
    # A C user has a compiler and pkg-config but no Rust toolchain.
    env = {"PATH": "/usr/bin:/bin", "PKG_CONFIG_LIBDIR": str(lib / "pkgconfig"), "LANG": "C.UTF-8"}
    if shutil.which("cargo", path=env["PATH"]):
        sys.exit("cargo is reachable from /usr/bin:/bin")
    (work / "hello.c").write_text(readme_blocks("c"))
    flags = run(["pkg-config", "--cflags", "--libs", "portway"], cwd=work, env=env).split()
    run(["cc", "-Wall", "-Wextra", "-Werror", "hello.c", *flags, "-o", "hello"], cwd=work, env=env)
    quick_start("C", [str(work / "hello")], work, {**env, "LD_LIBRARY_PATH": str(lib)}, ("hello",))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dist", default=str(ROOT / "dist"))
    ap.add_argument("--python", default=sys.executable, help="the interpreter to make the venv with")
    args = ap.parse_args()
    dist = Path(args.dist).resolve()
    with tempfile.TemporaryDirectory(prefix="portway-dist.") as tmp:
        work = Path(tmp)
        check_wheel(dist, args.python, work)
        check_npm(dist, work)
        check_c(dist, work)
    print("test-dist: the wheel, the npm tarball and the C tarball install and run their quick starts")


if __name__ == "__main__":
    main()
