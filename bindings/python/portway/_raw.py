"""The hot path's view of the library: submit, poll and release as function objects without
``argtypes``, the C ``portway_request``/``portway_completion`` layouts as ``struct`` formats,
per-call scratch buffers, and raw memory reads of completion data and meta pairs.

``_lib`` declares the same functions with ``argtypes`` for everything else; this module trades
those per-argument conversions for preallocated ctypes arguments (see ``_raw``).
"""

from __future__ import annotations

import ctypes
import functools
import struct
import sys
from ctypes import addressof, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Any

from ._completion import _decode_meta
from ._lib import LIB, PortwayCompletion, PortwayRequest

_POLL_CAP = 256


def _format_of(cls: type[ctypes.Structure]) -> struct.Struct:
    """A ``struct`` format that reads ``cls`` exactly as ctypes lays it out (pad bytes
    included), so that the ctypes class stays the one Python source of each C struct
    (``tests/test_layout.py`` checks it against the header). Pointers read as addresses."""
    codes = {4: "I", 8: "Q"}
    fmt, at = "=", 0
    for spec in cls._fields_:
        name, ctype = spec[0], spec[1]
        field = getattr(cls, name)
        if not (ctype in (c_uint32, c_uint64, c_size_t, c_void_p) or issubclass(ctype, ctypes._Pointer)):
            raise TypeError(f"{cls.__name__}.{name}: no struct code for {ctype.__name__}")
        fmt += "x" * (field.offset - at) + codes[field.size]
        at = field.offset + field.size
    return struct.Struct(fmt + "x" * (ctypes.sizeof(cls) - at))


_REQ = _format_of(PortwayRequest)
# The same request as 4 native words (``_head`` first): what batches are built from.
_REQ_WORDS = struct.Struct("=4Q")
if _REQ.size != _REQ_WORDS.size:
    raise ImportError(f"portway_request is {_REQ.size} bytes, not 4 words: this binding cannot pack it")
_COMP = _format_of(PortwayCompletion)
_COMP_SIZE = _COMP.size


def _raw(name: str) -> Any:
    """A second function object for ``name`` without ``argtypes``: every argument is passed
    as a preallocated ctypes instance (``c_void_p``, ``c_size_t``) or a small int (``int32``),
    which skips the per-argument conversions of the declared one in ``_lib``."""
    fn = LIB._FuncPtr((name, LIB))
    fn.restype = c_uint32
    return fn


_submit_raw = _raw("portway_submit")
_submit_batch_raw = _raw("portway_submit_batch")
_submit_wait_raw = _raw("portway_submit_wait")
_poll_raw = _raw("portway_poll")
_release_raw = _raw("portway_release")
# size_t arguments 0..._POLL_CAP, never mutated
_SIZES = tuple(c_size_t(i) for i in range(_POLL_CAP + 1))
_POLL_CAP_C = _SIZES[_POLL_CAP]


def _address_ctypes(data: bytes) -> int:
    return ctypes.cast(data, c_void_p).value or 0  # type: ignore[arg-type]


def _bytes_data_offset() -> int | None:
    """Offset of a bytes object's buffer from ``id()`` on CPython (checked here against
    ctypes, on several objects); None where that does not hold (then ctypes is asked)."""
    if sys.implementation.name != "cpython":
        return None
    try:
        samples = [b"portway", bytes(range(200)), b"q", b"x" * 5000]
        offsets = {_address_ctypes(s) - id(s) for s in samples}
    except Exception:  # noqa: BLE001
        return None
    if len(offsets) != 1:
        return None
    off = offsets.pop()
    return off if 0 < off < 256 else None


_BYTES_OFF = _bytes_data_offset()


def _address(data: bytes) -> int:
    """The address of a bytes object's buffer (valid while the object lives)."""
    if _BYTES_OFF is not None:
        return id(data) + _BYTES_OFF
    return _address_ctypes(data)



# ``char *[2n]`` array types: ``portway_meta[n]`` read as its 2n string pointers.
_STRING_ARRAYS = tuple(ctypes.c_char_p * (2 * i) for i in range(65))


def _meta_pairs(ptr: int, n: int) -> list[tuple[str, str]]:
    """The ``n`` pairs of a ``portway_meta`` array, decoded (UTF-8, invalid bytes replaced):
    ``_decode_meta(_meta_raw(ptr, n))``."""
    return _decode_meta(_meta_raw(ptr, n))


def _meta_raw(ptr: int, n: int) -> list[bytes | None]:
    """The 2n strings of a ``portway_meta`` array of ``n`` pairs (key, value, key, ...), copied
    and not decoded: one slice of a ``char *`` array (ctypes makes the list of bytes in C).
    What a completion keeps until someone reads its ``meta`` (most http callers never read
    the headers: decoding them was the largest cost of delivering a response)."""
    arr_t = _STRING_ARRAYS[n] if n < len(_STRING_ARRAYS) else ctypes.c_char_p * (2 * n)
    raw: list[bytes | None] = arr_t.from_address(ptr)[:]
    return raw



class _Scratch:
    """Buffers for one native call at a time: a request, an id, a poll buffer. Taken from
    ``_Core.scratch`` (a list used as a lock-free pool) and put back after the call."""

    __slots__ = ("req", "req_p", "rid", "rid_p", "buf", "buf_p", "mv", "n", "n_p")

    def __init__(self) -> None:
        self.req = PortwayRequest()
        self.req_p = c_void_p(addressof(self.req))
        self.rid = c_uint64()
        self.rid_p = c_void_p(addressof(self.rid))
        self.buf = (PortwayCompletion * _POLL_CAP)()
        self.buf_p = c_void_p(addressof(self.buf))
        self.mv = memoryview(self.buf).cast("B")
        self.n = c_size_t()
        self.n_p = c_void_p(addressof(self.n))


def _memory_view() -> memoryview | None:
    """A read-only byte view of the whole address space, to copy completion data with one
    slice (``view[p:p + n].tobytes()``) instead of a ctypes call (``string_at``) per
    completion. Only where every address fits in a Py_ssize_t (64-bit); else None."""
    if sys.maxsize < 2**62:
        return None
    try:
        view = memoryview((ctypes.c_char * sys.maxsize).from_address(0)).cast("B").toreadonly()
        probe = ctypes.create_string_buffer(b"portway", 8)
        at = addressof(probe)
        if view[at : at + 7].tobytes() != b"portway":
            return None
        return view
    except Exception:  # noqa: BLE001
        return None


_MEMORY = _memory_view()


@functools.lru_cache(maxsize=256)
def _head(hid: int, tms: int) -> int:
    """The first 8 bytes of a ``portway_request`` (handler id and timeout) as one native word:
    a batch of requests is built as an ``array("Q")`` of 4 words each (cached: a program uses a
    handful of handler and timeout pairs)."""
    return int.from_bytes(_REQ.pack(hid, tms, 0, 0, 0)[:8], sys.byteorder)


_req_pack_into = _REQ.pack_into
_req_words_pack_into = _REQ_WORDS.pack_into
_comp_iter_unpack = _COMP.iter_unpack
_string_at = ctypes.string_at
