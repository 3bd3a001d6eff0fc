"""Build hook: compiles libportway with cargo (release) and ships it inside the package.

``pip install ./bindings/python`` and ``pip install -e ./bindings/python`` both run
``build_py``, which runs ``cargo build --release --manifest-path <repo>/Cargo.toml`` and copies
``target/release/libportway.so`` into ``portway/`` before the package files are collected.
Environment: ``CARGO`` (the cargo to run), ``CARGO_TARGET_DIR`` (honoured),
``PORTWAY_PREBUILT_LIBRARY`` (copy this file instead of running cargo), ``PORTWAY_KEEP_DEBUG=1``
(ship the library with its debug info; by default the copy is stripped of it: 28 MB -> 5 MB,
the symbol table stays so panic backtraces still name functions), ``STRIP`` (the strip to run).

The wheel is tagged ``py3-none-<platform>``: the package is pure Python over ctypes, so one wheel
serves every CPython 3.10+, but it carries a native library for one platform.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1 ships it in the wheel package
    from wheel.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LIBNAME = {"darwin": "libportway.dylib", "win32": "portway.dll"}.get(sys.platform, "libportway.so")


def build_library() -> Path:
    prebuilt = os.environ.get("PORTWAY_PREBUILT_LIBRARY")
    if prebuilt:
        return Path(prebuilt)
    manifest = REPO / "Cargo.toml"
    if not manifest.exists():
        raise SystemExit(f"portway: {manifest} not found; build from a checkout of the repository")
    cargo = os.environ.get("CARGO", "cargo")
    cmd = [cargo, "build", "--release", "--lib", "--manifest-path", str(manifest)]
    print("portway: running " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "release" / LIBNAME


def strip_debug(path: Path) -> None:
    """Removes debug info from ``path`` in place (a missing ``strip`` leaves it, with a warning)."""
    strip = os.environ.get("STRIP", "strip")
    if shutil.which(strip) is None:
        print(f"portway: warning: {strip!r} not found; shipping the library unstripped", flush=True)
        return
    subprocess.run([strip, "--strip-debug", str(path)], check=True)


class BuildPyWithCargo(build_py):
    def run(self) -> None:
        lib = build_library()
        dest = HERE / "portway" / LIBNAME
        if not lib.exists():
            raise SystemExit(f"portway: cargo finished but {lib} does not exist")
        tmp = dest.with_suffix(".tmp")
        shutil.copyfile(lib, tmp)
        if os.environ.get("PORTWAY_KEEP_DEBUG") != "1":
            strip_debug(tmp)
        os.replace(tmp, dest)  # atomic: a process that has the old one mapped keeps it
        super().run()


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:  # a platform wheel: it carries a native library
        return True


class PlatformWheel(bdist_wheel):
    def get_tag(self) -> tuple[str, str, str]:
        # Any CPython 3 (ctypes, no extension module), one platform (the library inside).
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(
    cmdclass={"build_py": BuildPyWithCargo, "bdist_wheel": PlatformWheel},
    distclass=BinaryDistribution,
)
