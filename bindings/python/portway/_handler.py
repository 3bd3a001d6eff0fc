"""Python handlers: a Python callable as a ``portway_handler_fn`` (``Engine.register``).

The returned callback runs on the engine's worker threads, holding the GIL while it runs: the
one place, with the log bridge (``_log``), where the engine calls Python code, and only for a
handler the user registered. Nothing may unwind into C: every exception becomes a
``HandlerError`` completion with its message.
"""

from __future__ import annotations

import ctypes
from ctypes import byref, c_size_t
from typing import Any, Callable

from ._args import _to_bytes
from ._lib import HANDLER_FN, LIB

__all__ = ["c_handler"]


def c_handler(name: str, fn: Callable[[bytes], bytes | bytearray | memoryview | str]) -> Any:
    """The C callback that runs ``fn(payload)`` for handler ``name`` and responds with what it
    returns (any bytes-like object, or a ``str`` sent as UTF-8). The caller keeps the returned
    object alive as long as the engine may call it."""
    string_at = ctypes.string_at
    data_p = ctypes.POINTER(ctypes.c_uint8)

    def trampoline(_ctx: int | None, call: int | None) -> None:
        try:
            ptr = data_p()
            ln = c_size_t()
            LIB.portway_call_payload(call, byref(ptr), byref(ln))
            payload = string_at(ptr, ln.value) if ln.value else b""
            out = fn(payload)
            if out.__class__ is not bytes:
                out = _to_bytes(out, f"the value returned by handler {name!r}")
            LIB.portway_call_respond(call, out, len(out))
        except BaseException as exc:  # noqa: BLE001 - must never unwind into C
            try:
                msg = f"{type(exc).__name__}: {exc}".replace("\0", "\\0")
                LIB.portway_call_fail(call, msg.encode("utf-8", "replace"))
            except BaseException:  # noqa: BLE001
                pass

    return HANDLER_FN(trampoline)
