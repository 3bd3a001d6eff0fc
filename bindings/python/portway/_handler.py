"""Python handlers: a Python callable as a ``portway_handler_fn`` (``Engine.register``).

The returned callback runs on the engine's worker threads, holding the GIL while it runs: the
one place, with the log bridge (``_log``), where the engine calls Python code, and only for a
handler the user registered. Nothing may unwind into C: every exception becomes a
``HandlerError`` completion with its message.
"""

from __future__ import annotations

import ctypes
import threading
from ctypes import byref, c_size_t
from typing import Any, Callable, Union

from ._args import _to_bytes
from ._lib import HANDLER_FN, LIB

__all__ = ["Call", "HandlerFn", "CallHandlerFn", "c_handler"]

_Response = Union[bytes, bytearray, memoryview, str]
#: A handler that takes the payload only (``Engine.register(name, fn)``).
HandlerFn = Callable[[bytes], _Response]


class Call:
    """One call of a Python handler registered with ``with_call=True``, passed as its second
    argument: what the handler can ask the engine while it runs.

    ``cancelled`` turns true once the request was cancelled, timed out or shut down, or when
    this call is the losing attempt of a hedge (the other attempt succeeded first): the
    handler should stop soon, as whatever it returns then is dropped. A Python handler cannot
    be interrupted, so a long one polls it (a hedge's loser otherwise keeps a pool worker until
    it returns). The object may be read from other threads; once the handler has returned the
    call is over and ``cancelled`` is ``True`` (the engine's call is no longer touched)."""

    __slots__ = ("_ptr", "_lock")

    def __init__(self, ptr: int | None) -> None:
        self._ptr = ptr
        # Held around each read of the engine's call, and to end it: a thread reading
        # `cancelled` never reaches the call after the handler returned (then it is freed).
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        """True once the work of this call is no longer wanted (see the class doc)."""
        with self._lock:
            return self._ptr is None or bool(LIB.portway_call_is_cancelled(self._ptr))

    def _end(self) -> None:
        with self._lock:
            self._ptr = None

    def __repr__(self) -> str:
        return f"<portway.Call cancelled={self.cancelled}>"


#: A handler that also takes its ``Call`` (``Engine.register(name, fn, with_call=True)``).
CallHandlerFn = Callable[[bytes, Call], _Response]


def c_handler(name: str, fn: Callable[..., _Response], with_call: bool = False) -> Any:
    """The C callback that runs ``fn(payload)`` (``fn(payload, call)`` with ``with_call``) for
    handler ``name`` and responds with what it returns (any bytes-like object, or a ``str``
    sent as UTF-8). The caller keeps the returned object alive as long as the engine may call
    it."""
    string_at = ctypes.string_at
    data_p = ctypes.POINTER(ctypes.c_uint8)

    def trampoline(_ctx: int | None, call: int | None) -> None:
        handle = None
        try:
            ptr = data_p()
            ln = c_size_t()
            LIB.portway_call_payload(call, byref(ptr), byref(ln))
            payload = string_at(ptr, ln.value) if ln.value else b""
            if with_call:
                handle = Call(call)
                out = fn(payload, handle)
            else:
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
        finally:
            if handle is not None:
                handle._end()

    return HANDLER_FN(trampoline)
