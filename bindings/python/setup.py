"""Build hook: compiles libportway with cargo (release) and ships it inside the package.

``pip install ./bindings/python`` and ``pip install -e ./bindings/python`` both run
``build_py``, which runs ``cargo build --release --manifest-path <repo>/Cargo.toml`` and copies
``target/release/libportway.so`` into ``portway/`` before the package files are collected.
Environment: ``CARGO`` (the cargo to run), ``CARGO_TARGET_DIR`` (honoured),
``PORTWAY_PREBUILT_LIBRARY`` (copy this file instead of running cargo).
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


class BuildPyWithCargo(build_py):
    def run(self) -> None:
        lib = build_library()
        dest = HERE / "portway" / LIBNAME
        if not lib.exists():
            raise SystemExit(f"portway: cargo finished but {lib} does not exist")
        tmp = dest.with_suffix(".tmp")
        shutil.copyfile(lib, tmp)
        os.replace(tmp, dest)  # atomic: a process that has the old one mapped keeps it
        super().run()


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:  # a platform wheel: it carries a native library
        return True


setup(cmdclass={"build_py": BuildPyWithCargo}, distclass=BinaryDistribution)
