"""The ctypes layer: every header function declared, library loading, error classes."""

from __future__ import annotations

import builtins
import re
import subprocess
import sys

import portway
from portway import _lib
from portway._errors import Status, error_for

from conftest import REPO, child_env

HEADER = REPO / "include" / "portway.h"


def header_functions() -> set[str]:
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # drop comments (they mention functions)
    text = re.sub(r"//[^\n]*", "", text)
    names = set(re.findall(r"\b(portway_\w+)\s*\(", text))
    # typedef'd function pointer types look like `(*portway_x_fn)(`, not `portway_x(`
    return {n for n in names if not n.endswith("_fn")}


def test_every_header_function_is_declared() -> None:
    funcs = header_functions()
    assert len(funcs) > 30, funcs
    declared = set(_lib._SIGNATURES) | set(_lib._OPTIONAL_SIGNATURES)
    missing = funcs - declared
    assert not missing, f"declare these in portway/_lib.py: {sorted(missing)}"
    for name in funcs:
        fn = getattr(_lib.LIB, name, None)
        if fn is None and name in _lib._OPTIONAL_SIGNATURES:
            continue  # an older library than the header
        assert fn is not None and fn.argtypes is not None, name


def test_declared_functions_exist_in_header() -> None:
    extra = set(_lib._SIGNATURES) - header_functions()
    assert not extra, f"declared but not in the header: {sorted(extra)}"


def test_struct_sizes_match_header_layout() -> None:
    import ctypes

    assert ctypes.sizeof(_lib.PortwayRequest) == 32
    assert ctypes.sizeof(_lib.PortwayCompletion) == 72
    assert ctypes.sizeof(_lib.PortwayStats) == 8 * (5 + 32 + 6)


def test_status_enum_matches_header() -> None:
    text = HEADER.read_text()
    for name, value in re.findall(r"PORTWAY_([A-Z_]+) = (\d+),", text):
        assert Status[name] == int(value)
        assert _lib.LIB.portway_status_str(int(value)).decode() == f"PORTWAY_{name}"


def test_versions() -> None:
    assert re.match(r"^\d+\.\d+\.\d+", portway.library_version())
    assert _lib.LIB.portway_abi_version() == 1


def test_load_failure_names_path_and_os_message() -> None:
    env = child_env()
    env["PORTWAY_LIBRARY"] = "/nonexistent/libportway.so"
    r = subprocess.run([sys.executable, "-c", "import portway"], env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "LibraryLoadError" in r.stderr
    assert "/nonexistent/libportway.so" in r.stderr
    assert "No such file" in r.stderr


def test_library_override_is_used() -> None:
    env = child_env()
    r = subprocess.run(
        [sys.executable, "-c", "import portway; print(portway.LIBRARY_PATH)"], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == env["PORTWAY_LIBRARY"]


def test_one_error_class_per_status() -> None:
    expected = {
        Status.INVALID_ARGUMENT: portway.InvalidArgumentError,
        Status.BUSY: portway.BusyError,
        Status.SHUTDOWN: portway.ShutdownError,
        Status.NOT_FOUND: portway.NotFoundError,
        Status.UNKNOWN_HANDLER: portway.UnknownHandlerError,
        Status.TIMEOUT: portway.TimeoutError,
        Status.HANDLER_ERROR: portway.HandlerError,
        Status.PANIC: portway.PanicError,
        Status.FORKED: portway.ForkedError,
        Status.PAYLOAD_TOO_LARGE: portway.PayloadTooLargeError,
        Status.CONNECT_ERROR: portway.ConnectError,
        Status.TLS_ERROR: portway.TlsError,
        Status.PROTOCOL_ERROR: portway.ProtocolError,
        Status.BODY_TOO_LARGE: portway.BodyTooLargeError,
        Status.INTERNAL: portway.InternalError,
        Status.BUFFER_TOO_SMALL: portway.BufferTooSmallError,
        Status.UNAVAILABLE: portway.UnavailableError,
    }
    for status, cls in expected.items():
        exc = error_for(status, "msg")
        assert type(exc) is cls
        assert isinstance(exc, portway.PortwayError)
        assert exc.status == status
        assert "msg" in str(exc) and f"PORTWAY_{status.name}" in str(exc)
    assert issubclass(portway.TimeoutError, builtins.TimeoutError)
    assert error_for(999, "x").status == 999
