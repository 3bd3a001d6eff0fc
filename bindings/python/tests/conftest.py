from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import portway

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def eng() -> Iterator[portway.Engine]:
    e = portway.Engine(runtime_threads=2, pool_workers=2)
    try:
        yield e
    finally:
        e.close(drain=False)


def child_env() -> dict[str, str]:
    """Environment for subprocesses: the same portway the tests imported."""
    env = dict(os.environ)
    env["PORTWAY_LIBRARY"] = portway.LIBRARY_PATH
    env["PYTHONPATH"] = str(Path(portway.__file__).resolve().parents[1])
    return env
