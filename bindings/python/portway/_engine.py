"""The engine: submission, the delivery thread, asyncio integration and lifecycle.

Design:
- Every request carries a binding-assigned token in ``user_data``; the token is registered
  in ``_Core.pending`` *before* the submit call, so a completion polled by any thread (even
  one that finishes inline, before ``portway_submit`` returns) finds its future. Whichever
  thread polled a completion pops its entry (the pop is the claim: exactly once) and settles
  it.
- Pollers: one daemon delivery thread per engine (started with the first sync future) waits
  in ``portway_poll`` in slices of at most 200 ms; ``Future.result()`` first drains ready
  completions on the caller's thread; asyncio loops drain on the loop thread from
  ``loop.add_reader(notify_fd)``.
- Native calls are counted (``_Core.active``, a deque: append/pop are atomic under the GIL,
  no lock on the hot path); ``portway_engine_free`` runs only when none is running. No native
  work from ``__del__``: ``weakref.finalize`` closes with cancel (also at interpreter exit).
  Every future references its Engine, so the finalizer runs only once no one can wait for
  the work it cancels.
  In a forked child every call raises ``ForkedError``.
- Hot paths (submit, poll, release) call private function objects without ``argtypes``,
  with preallocated ``c_void_p``/``c_size_t`` arguments (per-thread scratch buffers taken
  from a pool), fill requests with ``struct.pack_into`` and read completions in one
  ``struct.iter_unpack`` over the raw poll buffer.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import json
import logging
import math
import numbers
import operator
import os
import struct
import sys
import threading
import time
import weakref
from array import array
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Generator, Iterable, Iterator
from ctypes import addressof, byref, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Any, Literal, Union, overload

from . import _lib, _policy
from ._errors import (
    ForkedError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    PortwayError,
    ShutdownError,
    Status,
    UnknownHandlerError,
    check,
    error_for,
    last_error,
)
from ._futures import (
    _FINISHED,
    _PENDING,
    AsyncTarget,
    Completion,
    Future,
    _AsyncEntry,
    _fail_async,
    _resolve_async,
    _resolve_async_batch,
)
from ._http import HeadersArg, HttpResponse, build_request, response_from_completion
from ._policy import PolicyState
from ._types import HandlerStats, Inflight, Latency, Stats
from ._lib import LIB, LOG_FN, PortwayCompletion, PortwayHandlerStats, PortwayLatency, PortwayRequest

__all__ = ["Engine"]

Payload = Union[bytes, bytearray, memoryview, str]
Entry = Union[Future[Any], AsyncTarget]

_POLL_SLICE_MS = 200
_POLL_CAP = 256
_REQ = struct.Struct("=IIQQQ")
_COMP = struct.Struct("=QQIIQQQQQQ")
assert _REQ.size == ctypes.sizeof(PortwayRequest)
assert _COMP.size == ctypes.sizeof(PortwayCompletion)
for _name, _off in (("handler", 0), ("timeout_ms", 4), ("user_data", 8), ("payload", 16), ("payload_len", 24)):
    assert getattr(PortwayRequest, _name).offset == _off
for _name, _off in (("id", 0), ("user_data", 8), ("status", 16), ("code", 20), ("data", 24), ("len", 32),
                    ("meta", 40), ("meta_len", 48), ("queued_ns", 56), ("run_ns", 64)):
    assert getattr(PortwayCompletion, _name).offset == _off
_COMP_SIZE = _COMP.size
_OK = int(Status.OK)
_CLOSED = int(Status.CLOSED)
_NOT_FOUND = int(Status.NOT_FOUND)
_FORKED = int(Status.FORKED)
_INVALID = int(Status.INVALID_ARGUMENT)
_BUSY = int(Status.BUSY)
_CANCELLED_ST = int(Status.CANCELLED)
_BATCH_TOKEN_BASE = 1 << 62  # submit_many's tokens; single submits count up from 1
_BATCH_JOIN_MAX = 1 << 20  # submit_many copies payloads up to this total into one blob

# Bumped in a forked child: every engine created before the fork then refuses to work.
_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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


def _to_bytes(payload: Payload, what: str = "payload") -> bytes:
    """``payload`` as an exact ``bytes`` object: a bytes-like object (the buffer protocol:
    ``bytes``, ``bytearray``, ``memoryview``, ``array``...) copied, a ``str`` encoded as UTF-8.
    Anything else raises ``InvalidArgumentTypeError``: ``bytes(5)`` would be five NUL bytes and
    ``bytes([1, 2])`` a coercion nobody asked for."""
    if payload.__class__ is bytes:
        return payload
    if isinstance(payload, str):
        return payload.encode()
    try:
        view = memoryview(payload)
    except TypeError:
        raise InvalidArgumentTypeError(
            f"{what} must be bytes, bytearray, memoryview (any bytes-like object) or str, "
            f"got {type(payload).__name__}"
        ) from None
    with view:
        return view.tobytes()


# Float timeouts already converted (a program uses a handful): a dict hit instead of the checks
# and arithmetic. Only exact floats: an equal Fraction or Decimal may round differently.
_TIMEOUT_CACHE: dict[float, int] = {}
_TIMEOUT_CACHE_MAX = 256


_TIMEOUT_MAX_S = 0xFFFFFFFF / 1000  # the C field is a u32 of milliseconds


def _timeout_ms(timeout: float | None, what: str = "timeout") -> int:
    """Seconds -> the C ``timeout_ms`` (rounded up to whole ms). ``None`` is 0, which the
    engine reads as its default deadline. 0 or below, NaN, infinity and values past the C
    field (about 49.7 days) raise ``InvalidArgumentError``: 0 would otherwise be read as
    "the default" by C and as "already expired" by a reader of the Python call."""
    if timeout is None:
        return 0
    if timeout.__class__ is float:
        ms = _TIMEOUT_CACHE.get(timeout)
        if ms is not None:
            return ms
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise InvalidArgumentTypeError(
            f"{what} must be a number of seconds or None, got {type(timeout).__name__}"
        )
    if not 0 < timeout <= _TIMEOUT_MAX_S:  # also False for NaN
        hint = "None = no deadline; drain=False cancels at once" if what.startswith("close") else "None = the engine default"
        raise InvalidArgumentError(
            f"{what} must be a number of seconds above 0 and at most {_TIMEOUT_MAX_S} ({hint}), got {timeout!r}"
        )
    ms = max(1, math.ceil(timeout * 1000))
    if timeout.__class__ is float and len(_TIMEOUT_CACHE) < _TIMEOUT_CACHE_MAX:
        _TIMEOUT_CACHE[timeout] = ms
    return ms


def _wait_ms(wait: float | None) -> int:
    """``submit(wait=)`` seconds -> ms for ``portway_submit_wait``: None or 0 = do not wait,
    ``math.inf`` = until a slot frees up (-1). Negative or NaN raises."""
    if wait is None:
        return 0
    if isinstance(wait, bool) or not isinstance(wait, numbers.Real):
        raise InvalidArgumentTypeError(f"wait must be a number of seconds or None, got {type(wait).__name__}")
    if wait == math.inf:
        return -1
    if not 0 <= wait < math.inf:
        raise InvalidArgumentError(f"wait must be >= 0 seconds (math.inf = no limit), got {wait!r}")
    return min(0x7FFFFFFF, math.ceil(wait * 1000))


def _uint(name: str, value: int, bits: int = 32) -> int:
    """``value`` checked to be an ``int`` (not a ``bool``) that fits an unsigned C field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentTypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value < 1 << bits:
        raise InvalidArgumentError(f"{name} must be between 0 and {(1 << bits) - 1}, got {value!r}")
    return value


def _u32(name: str, value: int) -> int:
    return _uint(name, value, 32)


def _check_name(name: str, what: str = "handler name") -> bytes:
    """A handler name as the C string the library takes."""
    if not isinstance(name, str):
        raise InvalidArgumentTypeError(f"{what} must be a str, got {type(name).__name__}")
    return name.encode()


def _payload_list(payloads: Iterable[Payload]) -> list[bytes]:
    """``payloads`` as a list of exact ``bytes`` (see ``_to_bytes``)."""
    datas = [p if p.__class__ is bytes else _to_bytes(p, f"payloads[{i}]")
             for i, p in enumerate(_payload_iterable(payloads))]
    return datas


def _payload_iterable(payloads: Iterable[Payload]) -> Iterable[Payload]:
    """Refuses one bytes-like or ``str`` object where an iterable of payloads is expected:
    iterating ``b"\\x03\\x01"`` gives ints, iterating ``"ab"`` gives one-letter payloads."""
    if isinstance(payloads, (bytes, bytearray, memoryview, str)):
        raise InvalidArgumentTypeError(
            f"payloads must be an iterable of payloads (e.g. a list of bytes), not one "
            f"{type(payloads).__name__}; wrap it in a list to send it as one request"
        )
    return payloads


def _window(window: int) -> int:
    if isinstance(window, bool) or not isinstance(window, int):
        raise InvalidArgumentTypeError(f"window must be an int, got {type(window).__name__}")
    if window < 1:
        raise InvalidArgumentError(f"window must be >= 1, got {window}")
    return window


_MAP_CLOSED = "cancelled: the map()/amap() iterator was closed before this result was read"
# Statuses by which portway_submit_batch refuses one request for itself: the next may be fine.
_PER_REQUEST = frozenset({int(Status.PAYLOAD_TOO_LARGE), int(Status.INVALID_ARGUMENT), int(Status.UNKNOWN_HANDLER)})


# ``char *[2n]`` array types: ``portway_meta[n]`` read as its 2n string pointers.
_STRING_ARRAYS = tuple(ctypes.c_char_p * (2 * i) for i in range(65))


def _meta_pairs(ptr: int, n: int) -> list[tuple[str, str]]:
    """The ``n`` pairs of a ``portway_meta`` array, decoded (UTF-8, invalid bytes replaced).

    One slice of a ``char *`` array copies every string (ctypes makes the list of bytes in C);
    valid UTF-8 (the usual case) is then decoded in one call over the strings joined with NUL,
    which none of them contains, and split back."""
    arr_t = _STRING_ARRAYS[n] if n < len(_STRING_ARRAYS) else ctypes.c_char_p * (2 * n)
    raw: list[bytes | None] = arr_t.from_address(ptr)[:]
    try:
        strs = b"\0".join(raw).decode().split("\0")  # type: ignore[arg-type]
    except (TypeError, UnicodeDecodeError):  # a NULL string, or invalid UTF-8 somewhere
        strs = [(b or b"").decode("utf-8", "replace") for b in raw]
    it = iter(strs)
    return list(zip(it, it))


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


_req_pack_into = _REQ.pack_into
_comp_iter_unpack = _COMP.iter_unpack
_string_at = ctypes.string_at
_get_running_loop = asyncio.get_running_loop
_AIO_FUTURE = asyncio.Future
_set_future_id = Future.__dict__["_id"].__set__  # the slot's setter, for map() over a batch


class _Core:
    """Everything the finalizer, the delivery thread and the futures share (not the Engine)."""

    def __init__(self, eng: int) -> None:
        self.eng = eng
        self.eng_p = c_void_p(eng)
        self.gen = _fork_generation
        self.pending: dict[int, Entry] = {}
        self.tokens = itertools.count(1)
        self.batch_lock = threading.Lock()
        self.batch_next = _BATCH_TOKEN_BASE
        self.handlers: dict[str, int] = {}
        self.keepalive: list[Any] = []  # CFUNCTYPE objects of registered Python handlers
        self.scratch: list[_Scratch] = []
        # One entry per native call running: append before the call, pop after. close()
        # sets `freed` first and then waits for this to empty; a caller appends first and
        # then checks `freed`. Under the GIL one of them sees the other.
        self.active: deque[None] = deque()
        self.call_lock = threading.Lock()
        self.closing = False  # close() began: intake refused by the binding too
        self.freed = False  # no new native call may start
        self.poller: threading.Thread | None = None
        self.poller_lock = threading.Lock()
        # Set when the delivery thread ends. close() waits on this, not on Thread.join():
        # a Ctrl-C that interrupts join() can leave the thread marked stopped while it runs
        # (CPython 3.11, bpo-45274's fix releases the thread-state lock it did not take).
        self.poller_exited = threading.Event()
        # Demand: futures somebody waits on without polling (result() after a drain found
        # nothing, concurrent.futures.wait/as_completed, add_done_callback). The delivery
        # thread sits in portway_poll only while demand exists (or always_poll is set);
        # otherwise it parks, so that a thread driving submit()+result() on inline handlers
        # never competes with it for the GIL.
        self.demand_lock = threading.Lock()
        self.demand_cond = threading.Condition(self.demand_lock)
        self.demand_count = 0
        self.always_poll = False
        # The loops this engine's notify fd is registered with, by id(loop), each as a weak
        # reference (True: add_reader worked; False: the delivery thread serves that loop).
        # Weak, so a closed loop (asyncio.run() per request) is freed; the reference's
        # callback drops the entry, and that runs before the id can be reused.
        self.readers: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], bool]] = {}
        self.readers_lock = threading.Lock()
        self.notify_fd = -1
        # Why in-flight work was cancelled by close()/the finalizer, for CancelledError.
        self.cancel_reason = ""

    # ------------------------------------------------------------ native-call accounting

    def refusal(self) -> PortwayError:
        if self.gen != _fork_generation:
            return ForkedError("this engine was created before fork(); create a new one in the child")
        return ShutdownError("engine is closed")

    def enter(self) -> int:
        """Counts a native call that is about to start; pair with ``exit()``."""
        self.active.append(None)
        if self.freed or self.gen != _fork_generation:
            self.active.pop()
            raise self.refusal()
        return self.eng

    def exit(self) -> None:
        self.active.pop()

    # ------------------------------------------------------------ handlers

    def handler_id(self, name: str) -> int:
        hid = self.handlers.get(name)
        if hid is not None:
            return hid
        raw = _check_name(name)
        out = c_uint32()
        eng = self.enter()
        try:
            st = LIB.portway_handler_lookup(eng, raw, byref(out))
        finally:
            self.exit()
        if st == _NOT_FOUND:  # status NOT_FOUND, as C's lookup and the Node binding say
            raise UnknownHandlerError(f"no handler named {name!r}")
        check(st)
        self.handlers[name] = out.value
        return out.value

    def cancel_id(self, rid: int) -> bool:
        """True if the request was still in flight (its completion will say CANCELLED)."""
        try:
            eng = self.enter()
        except PortwayError:
            return False
        try:
            st = LIB.portway_cancel(eng, rid)
        finally:
            self.exit()
        if st == _OK:
            return True
        if st == _NOT_FOUND:
            return False
        raise error_for(st, last_error())

    # ------------------------------------------------------------ submitting

    def submit_entry(self, hid: int, data: bytes, tms: int, token: int, entry: Entry) -> int:
        """Registers ``entry`` under ``token``, submits, returns the request id. On a refusal
        the entry is unregistered and the error raised."""
        pool = self.scratch
        try:
            s = pool.pop()
        except IndexError:
            s = _Scratch()
        ln = len(data)
        _req_pack_into(s.req, 0, hid, tms, token, _address(data) if ln else 0, ln)
        active = self.active
        active.append(None)
        if self.freed or self.gen != _fork_generation:
            active.pop()
            raise self.refusal()
        pending = self.pending
        pending[token] = entry
        try:
            st = _submit_raw(self.eng_p, s.req_p, s.rid_p)
        finally:
            active.pop()
        rid: int = s.rid.value
        pool.append(s)
        if st:
            pending.pop(token, None)
            raise error_for(st, last_error())
        return rid

    def submit_batch(
        self, hid: int, tms: int, datas: list[bytes], first: int, entries: list[Any]
    ) -> tuple[array[int], list[tuple[int, PortwayError]]]:
        """Registers ``entries[i]`` under token ``first + i`` and submits ``datas[i]`` to handler
        ``hid``: one ``portway_submit_batch`` call when all are accepted. Returns the ids (0
        where not accepted) and the ``(index, error)`` of every refused request, unregistered
        here for the caller to settle. A request refused for itself (payload too large or
        refused by the handler) fails alone and the batch goes on after it; an engine-wide
        refusal (BUSY, SHUTDOWN) fails it and every later one, unsent. Raises when nothing
        could be submitted because of the engine (closed, forked)."""
        n = len(datas)
        tokens = range(first, first + n)
        # The request array as 4n native u64 words: (handler, timeout_ms), user_data, payload,
        # payload_len. Every column is filled by C loops (array slice assignment).
        reqs = array("Q", _REQ.pack(hid, tms, 0, 0, 0)[:8]) * (4 * n)
        reqs[1::4] = array("Q", tokens)
        lens = array("Q", map(len, datas))
        reqs[3::4] = lens
        blob: bytes | None = None
        if _BYTES_OFF is None or sum(lens) <= _BATCH_JOIN_MAX:
            # small payloads: one copy into a blob, addresses by running offsets (C loops)
            blob = b"".join(datas)
            reqs[2::4] = array("Q", itertools.accumulate(lens[:-1], initial=_address_ctypes(blob)))
        else:  # large payloads: point at each bytes object's own buffer
            reqs[2::4] = array("Q", map(operator.add, map(id, datas), itertools.repeat(_BYTES_OFF, n)))
        ids = array("Q", bytes(8 * n))
        reqs_at = reqs.buffer_info()[0]
        ids_at = ids.buffer_info()[0]
        accepted = c_size_t()
        pending = self.pending
        pending.update(zip(tokens, entries))
        failed: list[tuple[int, PortwayError]] = []
        active = self.active
        start = 0
        while start < n:
            left = n - start
            accepted.value = left + 1  # not written when the call itself is refused
            active.append(None)
            try:
                if self.freed or self.gen != _fork_generation:
                    st = -1
                else:
                    st = _submit_batch_raw(
                        self.eng_p,
                        c_void_p(reqs_at + start * _REQ.size),
                        c_size_t(left),
                        c_void_p(ids_at + start * 8),
                        byref(accepted),
                    )
            finally:
                active.pop()
            if st == _OK:
                break
            k = accepted.value
            if st < 0 or k > left:  # the engine refused the call itself: nothing was accepted
                exc = self.refusal() if st < 0 else error_for(st, last_error())
                if start == 0:
                    for tok in tokens:
                        pending.pop(tok, None)
                    raise exc
                failed.extend((i, exc) for i in range(start, n))
                break
            at = start + k
            msg = last_error()
            if st in _PER_REQUEST:
                failed.append((at, error_for(st, f"request {at} of the batch: {msg}")))
                start = at + 1
                continue
            failed.append((at, error_for(st, msg)))
            rest = f"not submitted: the batch stopped at request {at}: {msg}"
            failed.extend((i, error_for(st, rest)) for i in range(at + 1, n))
            break
        del blob  # the engine copied the payloads
        for i, _ in failed:
            pending.pop(first + i, None)
        return ids, failed

    def running_loop(self) -> asyncio.AbstractEventLoop:
        """The running asyncio loop, with this engine's notify fd registered on it."""
        loop = _get_running_loop()
        ent = self.readers.get(id(loop))
        if ent is None or ent[0]() is not loop:
            self.ensure_reader(loop)
        return loop

    def submit_async_batch(
        self, loop: asyncio.AbstractEventLoop, hid: int, tms: int, datas: list[bytes]
    ) -> list[tuple[asyncio.Future[Completion], int]]:
        """``submit_batch`` for asyncio: one future of ``loop`` per payload (failed at once for
        a refused request), each with its request id (0 when refused)."""
        afuts: list[asyncio.Future[Completion]] = [loop.create_future() for _ in datas]
        ids, failed = self.submit_batch(hid, tms, datas, self.batch_tokens(len(datas)), afuts)
        for i, exc in failed:
            afuts[i].set_exception(exc)
        return list(zip(afuts, ids))

    def submit_waiting(self, s: _Scratch, wait_ms: int) -> int:
        """``portway_submit_wait`` for the request in ``s``, whose plain submit found every
        slot taken (its token is registered). Waits in slices of at most 200 ms, so that
        Ctrl-C and close() are noticed, until ``wait_ms`` (-1 = no limit) has passed. While it
        waits, the delivery thread polls, so that the slots of finished requests are released
        even if nobody waits on their futures. Returns the last status."""
        deadline = None if wait_ms < 0 else time.monotonic() + wait_ms / 1000
        with self.demand_lock:
            self.demand_count += 1  # a waiting submitter is demand, like a waiting result()
            self.demand_cond.notify()
        try:
            self.ensure_poller()
            active = self.active
            while True:
                if deadline is None:
                    slice_ms = _POLL_SLICE_MS
                else:
                    left = math.ceil((deadline - time.monotonic()) * 1000)
                    if left <= 0:
                        return _BUSY
                    slice_ms = min(_POLL_SLICE_MS, left)
                active.append(None)
                if self.freed or self.gen != _fork_generation:
                    active.pop()
                    raise self.refusal()
                try:
                    st: int = _submit_wait_raw(self.eng_p, s.req_p, slice_ms, s.rid_p)
                finally:
                    active.pop()
                if st != _BUSY:
                    return st
        finally:
            with self.demand_lock:
                self.demand_count -= 1

    def batch_tokens(self, n: int) -> int:
        """Reserves ``n`` consecutive tokens for a batch; returns the first."""
        with self.batch_lock:
            first = self.batch_next
            self.batch_next = first + n
        return first

    # ------------------------------------------------------------ polling and delivery

    def poll_once(self, timeout_ms: int, here: asyncio.AbstractEventLoop | None = None) -> int:
        """Polls once, copies out, releases, delivers. Returns the count, or -1 once CLOSED."""
        pool = self.scratch
        try:
            s = pool.pop()
        except IndexError:
            s = _Scratch()
        active = self.active
        active.append(None)
        try:
            if self.freed or self.gen != _fork_generation:
                raise self.refusal()
            st = _poll_raw(self.eng_p, s.buf_p, _POLL_CAP_C, timeout_ms, s.n_p)
            if st:
                if st == _CLOSED:
                    pool.append(s)
                    return -1
                raise error_for(st, last_error())
            count: int = s.n.value
            if not count:
                pool.append(s)
                return 0
            pop = self.pending.pop
            entries: list[Any] = []
            comps: list[Completion] = []
            mem = _MEMORY
            for cid, ud, status, code, data, ln, meta, meta_len, qns, rns in _comp_iter_unpack(
                s.mv[: count * _COMP_SIZE]
            ):
                entry = pop(ud, None)
                if entry is not None:  # else: cancelled and settled already, or nobody's
                    if ln:
                        body = mem[data : data + ln].tobytes() if mem is not None else _string_at(data, ln)
                    else:
                        body = b""
                    entries.append(entry)
                    comps.append(
                        Completion(
                            cid, ud, status, code, body, _meta_pairs(meta, meta_len) if meta_len else [], qns, rns
                        )
                    )
            # Release before settling: whoever sees a result also sees its slot returned.
            _release_raw(self.eng_p, s.buf_p, _SIZES[count])
        finally:
            active.pop()
        pool.append(s)
        rest: list[tuple[Any, Completion]] | None = None
        fut_cls = Future
        for entry, c in zip(entries, comps):
            cls = entry.__class__
            if cls is fut_cls and c.status == 0 and entry._transform is None and entry._state is _PENDING:
                # the common case, inline: an OK completion for a plain future
                entry._result = c
                entry._state = _FINISHED
                if entry._slow:
                    entry._wake()
            elif cls is _AsyncEntry and c.status == 0 and entry.loop is here:
                # an OK completion for ahttp() awaited on this loop (as deliver() would)
                afut = entry.fut
                if not afut.done():
                    try:
                        value = entry.transform(c)
                    except Exception as exc:  # a transform (e.g. HTTP parsing) failed
                        afut.set_exception(exc)
                    else:
                        afut.set_result(value)
            elif cls is _AIO_FUTURE and c.status == 0 and here is not None and entry.get_loop() is here:
                if not entry.done():  # an OK completion for asubmit() on this loop
                    entry.set_result(c)
            else:
                if rest is None:
                    rest = []
                rest.append((entry, c))
        if rest:
            self.deliver(rest, here)
        return count

    def deliver(self, items: list[tuple[Any, Completion]], here: asyncio.AbstractEventLoop | None) -> None:
        remote: dict[asyncio.AbstractEventLoop, list[tuple[AsyncTarget, Completion]]] | None = None
        for entry, c in items:
            if c.status == _CANCELLED_ST and self.cancel_reason and c.data == b"cancelled by shutdown":
                c.data = self.cancel_reason.encode()  # say which close() it was
            if isinstance(entry, Future):
                entry._resolve(c)
            else:
                loop = entry.get_loop()
                if loop is here:
                    _resolve_async(entry, c)
                else:
                    if remote is None:
                        remote = {}
                    remote.setdefault(loop, []).append((entry, c))
        if remote:
            for loop, batch in remote.items():
                try:
                    loop.call_soon_threadsafe(_resolve_async_batch, batch)
                except RuntimeError:
                    pass  # the loop is closed: nobody can await these any more

    def help_poll(self) -> None:
        """Drains ready completions on the calling thread without waiting."""
        try:
            while self.poll_once(0) == _POLL_CAP:
                pass
        except ForkedError:
            raise
        except PortwayError:
            pass

    def add_demand(self, fut: Future[Any]) -> None:
        """``fut`` will be waited on without polling: keep the delivery thread polling until it
        is resolved."""
        with self.demand_lock:  # never take a future's condition under this lock
            if fut._demanded:
                return
            fut._demanded = True
            self.demand_count += 1
            if self.demand_count == 1:
                self.demand_cond.notify()
        self.ensure_poller()
        if fut.done():  # resolved before the flag was visible to the resolver
            self.drop_demand(fut)

    def drop_demand(self, fut: Future[Any]) -> None:
        with self.demand_lock:
            if fut._demanded:
                fut._demanded = False
                self.demand_count -= 1

    def poll_always(self) -> None:
        with self.demand_lock:
            self.always_poll = True
            self.demand_cond.notify()
        self.ensure_poller()

    def ensure_poller(self) -> None:
        if self.poller is not None or self.freed:
            return
        with self.poller_lock:
            if self.poller is None and not self.freed:
                t = threading.Thread(target=self._poller_main, name="portway-delivery", daemon=True)
                self.poller = t
                t.start()

    def _poller_main(self) -> None:
        try:
            self._deliver_until_closed()
        finally:
            self.poller_exited.set()

    def _deliver_until_closed(self) -> None:
        cond = self.demand_cond
        while True:
            if not self.always_poll and self.demand_count == 0:
                # Parked: nobody waits without polling. Still sweep now and then, so that
                # completions nobody asked for (cancelled or fire-and-forget requests) are
                # released and their in-flight slots return.
                with cond:
                    if not self.always_poll and self.demand_count == 0:
                        cond.wait(0.02 if self.pending else 0.2)
                if not self.always_poll and self.demand_count == 0:
                    try:
                        if self.pending and self.poll_once(0) < 0:
                            break
                    except ForkedError:
                        return
                    except ShutdownError:
                        break
                    except PortwayError:
                        pass
                    continue
            try:
                if self.poll_once(_POLL_SLICE_MS) < 0:
                    break
            except ForkedError:
                return
            except ShutdownError:
                break  # freed under us (should not happen: close joins first)
            except PortwayError:
                continue
        self._fail_pending(ShutdownError("engine closed before this request completed"))

    def _fail_pending(self, exc: PortwayError) -> None:
        # Every accepted request gets a completion, so this only catches binding-side leftovers.
        while self.pending:
            try:
                _, entry = self.pending.popitem()
            except KeyError:
                break
            if isinstance(entry, Future):
                entry._fail(exc)
            else:
                try:
                    entry.get_loop().call_soon_threadsafe(_fail_async, entry, exc)
                except RuntimeError:
                    pass

    # ------------------------------------------------------------ asyncio

    def has_reader(self, loop: asyncio.AbstractEventLoop) -> bool:
        """True when ``loop`` is served (by its reader or the delivery thread)."""
        ent = self.readers.get(id(loop))
        return ent is not None and ent[0]() is loop

    def ensure_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.has_reader(loop):
            return
        with self.readers_lock:
            if self.has_reader(loop):
                return
            # A new loop often means an old one closed (asyncio.run() per call): forget
            # closed loops now rather than when the collector frees them.
            for key, (ref, _) in list(self.readers.items()):
                old = ref()
                if old is None or old.is_closed():
                    self.readers.pop(key, None)
            if self.notify_fd < 0:
                eng = self.enter()
                try:
                    fd = LIB.portway_notify_fd(eng)
                finally:
                    self.exit()
                if fd < 0:
                    raise PortwayError(last_error())
                self.notify_fd = fd
            key = id(loop)
            readers = self.readers

            def forget(_ref: object, key: int = key, readers: dict[int, Any] = readers) -> None:
                ent = readers.get(key)
                if ent is not None and ent[0] is _ref:
                    readers.pop(key, None)

            ref = weakref.ref(loop, forget)
            try:
                loop.add_reader(self.notify_fd, self._on_readable, ref)
                readers[key] = (ref, True)
            except NotImplementedError:
                readers[key] = (ref, False)  # e.g. a proactor loop: the delivery thread serves it
                self.poll_always()

    def _on_readable(self, ref: weakref.ref[asyncio.AbstractEventLoop]) -> None:
        # The loop by weak reference: the handle that the loop's selector keeps must not
        # keep the loop alive either once the loop is closed.
        loop = ref()
        if loop is None:
            return
        try:
            while True:
                n = self.poll_once(0, loop)
                if n < 0:
                    self.remove_reader(loop)
                    return
                if n < _POLL_CAP:
                    return
        except PortwayError:
            self.remove_reader(loop)

    def remove_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        with self.readers_lock:
            if not self.has_reader(loop):
                return
            _, added = self.readers.pop(id(loop))
            if added and not loop.is_closed():
                loop.remove_reader(self.notify_fd)

    def _remove_all_readers(self, wait: float) -> None:
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        loops = [ref() for ref, _ in list(self.readers.values())]
        for loop in loops:
            if loop is None:
                continue
            if loop is current or not loop.is_running():
                self.remove_reader(loop)
                continue
            done = threading.Event()

            def _remove(lp: asyncio.AbstractEventLoop = loop, ev: threading.Event = done) -> None:
                self.remove_reader(lp)
                ev.set()

            try:
                loop.call_soon_threadsafe(_remove)
                done.wait(wait)
            except RuntimeError:
                pass

    # ------------------------------------------------------------ lifecycle

    def close(self, drain: bool, timeout: float | None, reason: str = "") -> None:
        """Shuts down (draining up to ``timeout`` seconds, None = no deadline, or cancelling),
        waits until every completion has been delivered, frees the engine. ``reason`` is what
        a request cancelled by a cancelling close says in its ``CancelledError``."""
        if self.gen != _fork_generation:
            # A child after fork(): the inherited engine belongs to the parent. Leak it.
            self.freed = True
            return
        deadline_ms = _timeout_ms(timeout, "close() timeout") if drain else 0  # before any change
        with self.call_lock:
            if self.closing:
                return
            self.closing = True
        if not drain:
            self.cancel_reason = reason or "cancelled: Engine.close(drain=False) with this request in flight"
        mode = _lib.DRAIN if drain else _lib.CANCEL_NOW
        eng = self.eng
        LIB.portway_engine_shutdown(eng, mode, deadline_ms)
        self.poll_always()
        poller = self.poller
        interrupted: BaseException | None = None
        if poller is not None and poller is not threading.current_thread():
            exited = self.poller_exited
            try:
                if drain and timeout is None:
                    exited.wait()  # no deadline: the drain ends when the last request does
                else:
                    # the engine cancels at the deadline; then the last completions arrive
                    exited.wait((timeout if drain and timeout is not None else 0) + 2.0)
            except BaseException as exc:  # noqa: BLE001 - e.g. Ctrl-C during a long drain
                interrupted = exc
            if not exited.is_set():
                if interrupted is not None:
                    self.cancel_reason = "cancelled: close() was interrupted during its drain"
                LIB.portway_engine_shutdown(eng, _lib.CANCEL_NOW, 0)
                LIB.portway_wake(eng)
                exited.wait(2.0)
        self._remove_all_readers(1.0)
        # From here no native call may start; wait for those running (e.g. a poll slice on
        # another thread, which ends within a slice) to return.
        self.freed = True
        active = self.active
        deadline = time.monotonic() + 5.0
        while active and time.monotonic() < deadline:
            LIB.portway_wake(eng)
            time.sleep(0.001)
        if not active:  # else someone is stuck inside the library: leak rather than free under them
            LIB.portway_engine_free(eng)
            self._fail_pending(ShutdownError("engine closed before this request completed"))
        if interrupted is not None:
            raise interrupted


_FINALIZED = "cancelled: the Engine was garbage-collected or the interpreter exited with this request in flight"


def _close_core(core: _Core, drain: bool, timeout: float | None) -> None:
    """The Engine's finalizer. It runs only once nothing references the Engine, and every
    future references its Engine: so the work it cancels is work nobody can wait for.

    The last reference may go on the delivery thread (it settled the last future) or, through
    the cycle collector, on an engine thread running a Python handler, where freeing the
    engine must not happen: there the close runs on a thread of its own."""
    here = threading.current_thread()
    if here is core.poller or isinstance(here, threading._DummyThread):
        try:
            threading.Thread(
                target=core.close, args=(drain, timeout, _FINALIZED), name="portway-finalize", daemon=True
            ).start()
            return
        except RuntimeError:  # interpreter shutdown: no new threads; close here
            pass
    core.close(drain, timeout, _FINALIZED)


def _cancel_async(core: _Core, items: Iterable[tuple[asyncio.Future[Any], int]], reason: str) -> None:
    """Cancels the native requests (by id) of the asyncio futures nobody will read, and the
    futures themselves; marks failures as retrieved (no "never retrieved" warnings)."""
    for afut, rid in list(items):
        if not afut.done():
            if rid:
                core.cancel_id(rid)
            afut.cancel(reason)
        elif afut.cancelled():  # cancelled by asyncio (the task was): the request may run on
            if rid:
                core.cancel_id(rid)
        else:
            afut.exception()


_LOGGER = logging.getLogger("portway")
_C_TO_LOGGING = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}


def _portway_log_level(level: int) -> int:
    """The C level (PORTWAY_LOG_DEBUG=1 .. ERROR=4) for a ``logging`` level."""
    if level <= logging.DEBUG:
        return 1
    if level <= logging.INFO:
        return 2
    if level <= logging.WARNING:
        return 3
    return 4


def _deliver_log(_ctx: int | None, level: int, message: bytes | None) -> None:
    """Engine event -> the ``portway`` logger. Runs on an engine thread (or the thread that
    caused the event); exceptions must not reach C."""
    try:
        _LOGGER.log(_C_TO_LOGGING.get(level, logging.ERROR), (message or b"").decode("utf-8", "replace"))
    except Exception:  # noqa: BLE001 (a broken log handler must not unwind into C)
        pass


class Engine:
    """An embeddable request engine (``portway_engine``); also a context manager.

    ``runtime_threads``/``pool_workers``: None = one per CPU. ``default_timeout`` (seconds,
    above 0) applies to requests submitted without one. Exiting the ``with`` block closes
    with drain. The engine lives while it or any of its futures is referenced; once neither
    is, its finalizer closes it with cancel. See ``bindings/python/README.md`` for the
    statuses and errors shared with the C and Node bindings.
    """

    def __init__(
        self,
        runtime_threads: int | None = None,
        pool_workers: int | None = None,
        max_in_flight: int = 65536,
        default_timeout: float | None = None,
        max_payload: int | None = None,
        log_level: int | None = None,
    ) -> None:
        cfg = LIB.portway_config_new()
        log_fn = None
        if not cfg:
            raise MemoryError("portway_config_new failed")
        try:
            if runtime_threads is not None:
                check(LIB.portway_config_set_runtime_threads(cfg, _u32("runtime_threads", runtime_threads)))
            if pool_workers is not None:
                check(LIB.portway_config_set_pool_workers(cfg, _u32("pool_workers", pool_workers)))
            check(LIB.portway_config_set_max_in_flight(cfg, _u32("max_in_flight", max_in_flight)))
            if default_timeout is not None:
                check(LIB.portway_config_set_default_timeout_ms(cfg, _timeout_ms(default_timeout, "default_timeout")))
            if max_payload is not None:
                check(LIB.portway_config_set_max_payload(cfg, _uint("max_payload", max_payload, 64)))
            if log_level is not None:
                log_fn = LOG_FN(_deliver_log)
                check(LIB.portway_config_set_log(cfg, log_fn, None, _portway_log_level(log_level)))
            out = c_void_p()
            check(LIB.portway_engine_new(cfg, byref(out)))
        finally:
            LIB.portway_config_free(cfg)
        assert out.value is not None
        self._core = _Core(out.value)
        if log_fn is not None:
            self._core.keepalive.append(log_fn)  # the C callback must outlive the engine
        self._finalizer = weakref.finalize(self, _close_core, self._core, False, 1.0)

    # ------------------------------------------------------------ context manager

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, drain: bool = True, timeout: float | None = 5.0) -> None:
        """Stops intake, lets in-flight work finish (``drain``, up to ``timeout`` seconds, then
        cancels the rest; None = no deadline: waits as long as the work takes) or cancels it
        at once (``drain=False``), delivers every completion, frees the engine. Idempotent.

        A ``timeout`` of 0 or below raises ``InvalidArgumentError`` (use ``drain=False``).
        Ctrl-C during the wait cancels what is left, finishes closing and re-raises.
        Requests cancelled here raise ``CancelledError`` saying so."""
        if drain:
            _timeout_ms(timeout, "close() timeout")  # refuse before anything changes
        self._finalizer.detach()
        self._core.close(drain, timeout)

    @property
    def closed(self) -> bool:
        return self._core.closing

    # ------------------------------------------------------------ submitting

    def submit(
        self, handler: str, payload: Payload = b"", timeout: float | None = None, *, wait: float | None = None
    ) -> Future[Completion]:
        """Submits one request to handler ``handler`` (a name) and returns its future.

        ``payload``: a bytes-like object or a ``str`` (sent as UTF-8); anything else raises
        ``InvalidArgumentTypeError``. ``timeout``: the request's deadline in seconds (queue
        time counts); None = the engine default; 0 or below, NaN or infinity raise
        ``InvalidArgumentError``. ``wait``: when every in-flight slot is taken, wait up to this
        many seconds for one (``portway_submit_wait``; ``math.inf`` = as long as it takes)
        instead of raising ``BusyError`` at once (None or 0, the default: never block).
        Raises ``UnknownHandlerError`` (status NOT_FOUND) for an unknown name and
        ``ShutdownError`` once the engine is closing or closed. The future keeps this
        engine alive until it is dropped."""
        core = self._core
        hid = core.handlers.get(handler)
        if hid is None:
            hid = core.handler_id(handler)
        data = payload if payload.__class__ is bytes else _to_bytes(payload)
        tms = 0 if timeout is None else _timeout_ms(timeout)
        wms = 0 if wait is None else _wait_ms(wait)
        token = next(core.tokens)
        fut: Future[Completion] = Future(core, token, None, self)
        # core.submit_entry, inlined (the per-request hot path)
        pool = core.scratch
        try:
            s = pool.pop()
        except IndexError:
            s = _Scratch()
        ln = len(data)
        _req_pack_into(s.req, 0, hid, tms, token, _address(data) if ln else 0, ln)
        active = core.active
        active.append(None)
        if core.freed or core.gen != _fork_generation:
            active.pop()
            raise core.refusal()
        pending = core.pending
        pending[token] = fut
        try:
            st = _submit_raw(core.eng_p, s.req_p, s.rid_p)
        finally:
            active.pop()
        if st == _BUSY and wms:
            try:
                st = core.submit_waiting(s, wms)
            except BaseException:  # closed meanwhile, or Ctrl-C: nothing was accepted
                pending.pop(token, None)
                pool.append(s)
                raise
        fut._id = s.rid.value
        pool.append(s)
        if st:
            pending.pop(token, None)
            fut._id = 0
            raise error_for(st, last_error())
        if core.poller is None:
            core.ensure_poller()  # parked until needed; sweeps unclaimed completions
        return fut

    def _submit(
        self, handler: str, data: bytes, timeout: float | None, transform: Callable[[Completion], Any] | None
    ) -> Future[Any]:
        core = self._core
        hid = core.handler_id(handler)
        tms = _timeout_ms(timeout)
        token = next(core.tokens)
        fut: Future[Any] = Future(core, token, transform, self)
        fut._id = core.submit_entry(hid, data, tms, token, fut)
        if core.poller is None:
            core.ensure_poller()
        return fut

    def submit_many(
        self, handler: str, payloads: Iterable[Payload], timeout: float | None = None
    ) -> list[Future[Completion]]:
        """Submits every payload (bytes-like or ``str`` each; a single ``bytes`` or ``str``
        is refused, it is not a list of payloads), in one ``portway_submit_batch`` call when
        the engine accepts them all. A request refused for itself (its payload too large, or
        refused by the handler) gets its own error and the batch goes on after it; a refusal
        of the engine's (``BusyError``, ``ShutdownError``) fails that future and every later
        one, which were not submitted. Futures keep this engine alive."""
        core = self._core
        hid = core.handler_id(handler)
        datas = _payload_list(payloads)
        n = len(datas)
        if n == 0:
            return []
        tms = _timeout_ms(timeout)
        first = core.batch_tokens(n)
        futs: list[Future[Completion]] = list(
            map(Future, itertools.repeat(core, n), range(first, first + n), itertools.repeat(None, n),
                itertools.repeat(self, n))
        )
        ids, failed = core.submit_batch(hid, tms, datas, first, futs)
        deque(map(_set_future_id, futs, ids), 0)
        for i, exc in failed:
            futs[i]._fail(exc)
        if core.poller is None:
            core.ensure_poller()
        return futs

    def map(
        self, handler: str, payloads: Iterable[Payload], window: int = 256, timeout: float | None = None
    ) -> Generator[Completion, None, None]:
        """Yields completions in payload order, with at most ``window`` requests in flight.
        Raises the first failed request's error; closing the iterator cancels the rest.
        Requests go in batches (``submit_many``) as the window frees up."""
        window = _window(window)
        it = iter(_payload_iterable(payloads))
        q: deque[Future[Completion]] = deque()
        chunk = max(1, window // 8)
        more = True
        try:
            while True:
                free = window - len(q)
                if more and (free >= chunk or not q):
                    batch = self.submit_many(handler, itertools.islice(it, free), timeout)
                    more = len(batch) == free
                    q.extend(batch)
                if not q:
                    return
                c = q[0].result()
                q.popleft()
                yield c
        finally:
            for f in q:
                f._cancel(_MAP_CLOSED)

    def http(
        self,
        method: str,
        url: str,
        headers: HeadersArg = None,
        body: bytes | str | None = None,
        timeout: float | None = None,
        handler: str = "http",
    ) -> Future[HttpResponse]:
        """Sends an HTTP/1.1 request through the "http" handler. Any HTTP status resolves to an
        ``HttpResponse``; connection, TLS, protocol, body-size errors and timeouts raise.
        ``url`` must be an absolute http(s) URL: a relative one raises ``InvalidArgumentError``
        (status INVALID_ARGUMENT, a ``ValueError``), as in the C and Node bindings."""
        payload = build_request(method, url, headers, body)
        return self._submit(handler, payload, timeout, response_from_completion)

    # ------------------------------------------------------------ asyncio

    async def asubmit(self, handler: str, payload: Payload = b"", timeout: float | None = None) -> Completion:
        """Awaitable ``submit`` (same arguments and errors, no ``wait``); cancelling the
        awaiting task cancels the native request. A request cancelled otherwise (by
        ``cancel_all``, ``close(drain=False)``) raises ``asyncio.CancelledError`` saying why."""
        core = self._core
        loop = _get_running_loop()
        ent = core.readers.get(id(loop))
        if ent is None or ent[0]() is not loop:
            core.ensure_reader(loop)
        hid = core.handlers.get(handler)
        if hid is None:
            hid = core.handler_id(handler)
        data = payload if payload.__class__ is bytes else _to_bytes(payload)
        afut: asyncio.Future[Completion] = loop.create_future()
        rid = core.submit_entry(
            hid, data, 0 if timeout is None else _timeout_ms(timeout), next(core.tokens), afut
        )
        try:
            return await afut
        except asyncio.CancelledError:
            if not afut.done() or afut.cancelled():
                core.cancel_id(rid)
            raise

    async def ahttp(
        self,
        method: str,
        url: str,
        headers: HeadersArg = None,
        body: bytes | str | None = None,
        timeout: float | None = None,
        handler: str = "http",
    ) -> HttpResponse:
        """Awaitable ``http``; cancelling the awaiting task cancels the native request."""
        payload = build_request(method, url, headers, body)
        core = self._core
        loop = _get_running_loop()
        ent = core.readers.get(id(loop))
        if ent is None or ent[0]() is not loop:
            core.ensure_reader(loop)
        hid = core.handlers.get(handler)
        if hid is None:
            hid = core.handler_id(handler)
        afut: asyncio.Future[HttpResponse] = loop.create_future()
        entry = _AsyncEntry(afut, response_from_completion, loop)
        rid = core.submit_entry(hid, payload, _timeout_ms(timeout), next(core.tokens), entry)
        try:
            return await afut
        except asyncio.CancelledError:
            if not afut.done() or afut.cancelled():
                core.cancel_id(rid)
            raise

    @overload
    async def asubmit_many(
        self,
        handler: str,
        payloads: Iterable[Payload],
        timeout: float | None = None,
        *,
        return_exceptions: Literal[False] = False,
    ) -> list[Completion]: ...

    @overload
    async def asubmit_many(
        self,
        handler: str,
        payloads: Iterable[Payload],
        timeout: float | None = None,
        *,
        return_exceptions: Literal[True],
    ) -> list[Completion | BaseException]: ...

    async def asubmit_many(
        self,
        handler: str,
        payloads: Iterable[Payload],
        timeout: float | None = None,
        *,
        return_exceptions: bool = False,
    ) -> list[Completion] | list[Completion | BaseException]:
        """Awaitable ``submit_many``: submits every payload (one ``portway_submit_batch``
        call when all are accepted) and returns their completions in payload order.

        By default the first failure is raised and every request still in flight is
        cancelled (nobody can read its result any more); with ``return_exceptions=True`` each
        failure takes its request's place in the list instead (as ``asyncio.gather``).
        Cancelling the awaiting task cancels every native request still in flight."""
        core = self._core
        loop = core.running_loop()
        hid = core.handler_id(handler)
        datas = _payload_list(payloads)
        n = len(datas)
        if n == 0:
            return []
        sent = core.submit_async_batch(loop, hid, _timeout_ms(timeout), datas)
        afuts = [afut for afut, _ in sent]
        try:
            if return_exceptions:
                return await asyncio.gather(*afuts, return_exceptions=True)
            return await asyncio.gather(*afuts)
        except BaseException:  # a request failed, or the awaiting task was cancelled
            _cancel_async(core, sent, "cancelled: another request of this asubmit_many() failed or it was cancelled")
            raise

    async def amap(
        self,
        handler: str,
        payloads: Iterable[Payload] | AsyncIterable[Payload],
        window: int = 256,
        timeout: float | None = None,
    ) -> AsyncGenerator[Completion, None]:
        """Async ``map``: yields completions in payload order with at most ``window`` requests
        in flight, reading ``payloads`` (an iterable or an async iterable) only as the window
        frees up. Raises the first failed request's error; leaving the ``async for`` early,
        an error, or cancelling the task cancels every request still in flight.

            async for c in eng.amap("echo", (b"x%d" % i for i in range(10_000)), window=64):
                ...
        """
        window = _window(window)
        core = self._core
        loop = core.running_loop()
        hid = core.handler_id(handler)
        tms = _timeout_ms(timeout)
        aiter_: AsyncIterator[Payload] | None = None
        it: Iterator[Payload] | None = None
        if isinstance(payloads, AsyncIterable):
            aiter_ = payloads.__aiter__()
        else:
            it = iter(_payload_iterable(payloads))
        q: deque[tuple[asyncio.Future[Completion], int]] = deque()
        chunk = max(1, window // 8)
        more = True
        try:
            while True:
                free = window - len(q)
                if more and (free >= chunk or not q):
                    if it is not None:  # a batch of what the window has room for
                        datas = _payload_list(itertools.islice(it, free))
                        more = len(datas) == free
                        if datas:
                            q.extend(core.submit_async_batch(loop, hid, tms, datas))
                    elif aiter_ is not None:  # an async source: one at a time, as it yields
                        try:
                            p = await aiter_.__anext__()
                        except StopAsyncIteration:
                            more = False
                        else:
                            data = p if p.__class__ is bytes else _to_bytes(p)
                            afut: asyncio.Future[Completion] = loop.create_future()
                            q.append((afut, core.submit_entry(hid, data, tms, next(core.tokens), afut)))
                            if len(q) < window and not q[0][0].done():
                                continue  # keep filling the window while nothing is ready
                if not q:
                    return
                c = await q[0][0]
                q.popleft()
                yield c
        finally:
            _cancel_async(core, q, _MAP_CLOSED)

    # ------------------------------------------------------------ handlers

    def register(self, name: str, fn: Callable[[bytes], bytes | bytearray | memoryview | str]) -> int:
        """Registers a Python handler ``fn(payload) -> bytes``, run on the engine's worker pool
        (holding the GIL). It may return any bytes-like object or a ``str`` (sent as UTF-8);
        anything else, or an exception, becomes a ``HandlerError`` completion with a message.
        Raises ``InvalidArgumentTypeError`` when ``fn`` is not callable or ``name`` not a str.
        Returns the handler id."""
        raw_name = _check_name(name)
        if not callable(fn):
            raise InvalidArgumentTypeError(f"handler {name!r} must be callable, got {type(fn).__name__}")
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

        cb = _lib.HANDLER_FN(trampoline)
        core = self._core
        out_id = c_uint32()
        eng = core.enter()
        try:
            st = LIB.portway_register_handler(eng, raw_name, cb, None, byref(out_id))
        finally:
            core.exit()
        check(st)
        core.keepalive.append(cb)  # must outlive the engine's use of it
        core.handlers[name] = out_id.value
        return out_id.value

    def register_http(
        self,
        name: str,
        *,
        max_connections_per_host: int | None = None,
        max_header_bytes: int | None = None,
        max_body_bytes: int | None = None,
        connect_timeout_ms: int | None = None,
        pool_idle_timeout_ms: int | None = None,
        follow_redirects: bool | None = None,
        max_redirects: int | None = None,
        retries: int | None = None,
        retry_base_backoff_ms: int | None = None,
        user_agent: str | None = None,
        http2_prior_knowledge: bool | None = None,
        extra_ca_pem_path: str | os.PathLike[str] | None = None,
        danger_accept_invalid_certs: bool | None = None,
        read_timeout_ms: int | None = None,
        decompress: bool | None = None,
        bundled_roots_only: bool | None = None,
        http1_only: bool | None = None,
        proxy: str | None = None,
    ) -> int:
        """Registers another http handler ``name`` with its own connection pool and limits;
        use it with ``http(..., handler=name)``. Each keyword is the ``portway_http_options``
        field of that name (see ``include/portway.h``); None keeps the library default.

        - ``max_connections_per_host`` (0 = no limit), ``max_header_bytes`` (>= 1024),
          ``max_body_bytes`` (0 = no limit), ``connect_timeout_ms``, ``pool_idle_timeout_ms``
          (0 = none), ``max_redirects`` and ``retries`` (at most 100), ``retry_base_backoff_ms``,
          ``read_timeout_ms`` (no byte received for that long -> ``TimeoutError``; 0 = none):
          ``int`` within the C field's unsigned range.
        - ``follow_redirects``, ``http2_prior_knowledge``, ``danger_accept_invalid_certs``,
          ``decompress`` (default True), ``bundled_roots_only`` (ignore the system trust store),
          ``http1_only``: ``bool`` only.
        - ``user_agent`` ("" = send none), ``extra_ca_pem_path``: ``str`` (a path may be a
          ``PathLike``); ``proxy``: None = from the environment, "" = none, or an
          ``http://[user:password@]host:port`` URL.

        ``bindings/python/README.md`` lists every option with its default.

        A value of the wrong type raises ``InvalidArgumentTypeError``, one out of range
        ``InvalidArgumentError`` (never wrapped around). Returns the handler id."""
        given = {
            "max_connections_per_host": max_connections_per_host,
            "max_header_bytes": max_header_bytes,
            "max_body_bytes": max_body_bytes,
            "connect_timeout_ms": connect_timeout_ms,
            "pool_idle_timeout_ms": pool_idle_timeout_ms,
            "follow_redirects": follow_redirects,
            "max_redirects": max_redirects,
            "retries": retries,
            "retry_base_backoff_ms": retry_base_backoff_ms,
            "user_agent": user_agent,
            "http2_prior_knowledge": http2_prior_knowledge,
            "extra_ca_pem_path": extra_ca_pem_path,
            "danger_accept_invalid_certs": danger_accept_invalid_certs,
            "read_timeout_ms": read_timeout_ms,
            "decompress": decompress,
            "bundled_roots_only": bundled_roots_only,
            "http1_only": http1_only,
            "proxy": proxy,
        }
        raw_name = _check_name(name)
        if not hasattr(LIB, "portway_register_http"):
            raise PortwayError("this libportway has no portway_register_http")
        opts = _lib.PortwayHttpOptions()
        check(LIB.portway_http_options_default(byref(opts)))
        keep: list[bytes] = []  # the C strings, alive until the call has copied them
        for spec in _lib.PortwayHttpOptions._fields_:
            field, ctype = spec[0], spec[1]
            value: object = given.pop(field, None)
            if value is None:
                continue
            if ctype is ctypes.c_bool:
                if not isinstance(value, bool):
                    raise InvalidArgumentTypeError(f"{field} must be a bool, got {type(value).__name__}")
            elif ctype is ctypes.c_char_p:
                if isinstance(value, os.PathLike):
                    value = os.fspath(value)
                if not isinstance(value, str):
                    raise InvalidArgumentTypeError(f"{field} must be a str, got {type(value).__name__}")
                if "\0" in value:
                    raise InvalidArgumentError(f"{field} must not contain NUL characters")
                value = value.encode()
                keep.append(value)
            else:
                bits = 64 if ctype is ctypes.c_uint64 else 32
                value = _uint(field, value, bits)  # type: ignore[arg-type]
            setattr(opts, field, value)
        assert not given, f"register_http keywords without a portway_http_options field: {sorted(given)}"
        core = self._core
        out_id = c_uint32()
        eng = core.enter()
        try:
            st = LIB.portway_register_http(eng, raw_name, byref(opts), byref(out_id))
        finally:
            core.exit()
        check(st)
        core.handlers[name] = out_id.value
        return out_id.value

    def pipeline(self, name: str, stages: list[str]) -> int:
        """Registers handler ``name`` running ``stages`` in order (each response feeds the next)."""
        core = self._core
        ids = [core.handler_id(s) for s in stages]
        arr = (c_uint32 * max(1, len(ids)))(*ids)
        out_id = c_uint32()
        eng = core.enter()
        try:
            st = LIB.portway_pipeline_new(eng, _check_name(name), arr, len(ids), byref(out_id))
        finally:
            core.exit()
        check(st)
        core.handlers[name] = out_id.value
        return out_id.value

    def set_concurrency(self, name: str, limit: int) -> None:
        """At most ``limit`` calls of handler ``name`` run at once (0 = only the pool limits)."""
        core = self._core
        hid = core.handler_id(name)
        eng = core.enter()
        try:
            st = LIB.portway_handler_set_concurrency(eng, hid, _u32("limit", limit))
        finally:
            core.exit()
        check(st)

    def set_policy(
        self,
        name: str,
        *,
        max_concurrency: int = 0,
        adaptive: bool = False,
        rate_per_s: float = 0.0,
        burst: int = 0,
        hedge_after: float | None = None,
        hedge_budget: int | None = None,
        breaker_failures: int = 0,
        breaker_cooldown: float | None = None,
    ) -> None:
        """Sets every policy of handler ``name`` at once (omitted ones are off): at most
        ``max_concurrency`` calls at once (0 = none; the same as ``set_concurrency``); a token
        bucket of ``rate_per_s`` calls a second holding ``burst`` tokens (0 = ``max(1,
        rate_per_s)``), where a request whose token comes after its deadline fails with
        ``TimeoutError`` at once; and a circuit breaker that opens after ``breaker_failures``
        consecutive failures, refusing requests with ``UnavailableError`` for
        ``breaker_cooldown`` seconds (default 5) before one trial request decides. Adaptive
        concurrency and hedging are not implemented yet: setting them raises
        ``InvalidArgumentError``. Invalid settings change nothing."""
        policy = _policy.build_policy(
            max_concurrency=max_concurrency,
            adaptive=adaptive,
            rate_per_s=rate_per_s,
            burst=burst,
            hedge_after=hedge_after,
            hedge_budget=hedge_budget,
            breaker_failures=breaker_failures,
            breaker_cooldown=breaker_cooldown,
        )
        core = self._core
        hid = core.handler_id(name)
        eng = core.enter()
        try:
            _policy.apply_policy(eng, hid, policy)
        finally:
            core.exit()

    def policy_state(self, name: str) -> PolicyState:
        """The live figures of handler ``name``'s policies: ``concurrency_limit``, ``running``,
        ``waiting``, ``tokens``, ``breaker_state`` (``"closed"``, ``"open"``,
        ``"half-open"``), ``breaker_failures``, ``breaker_trips``, ``breaker_rejected``,
        ``rate_timeouts`` and the hedging counters (0 until hedging exists)."""
        core = self._core
        hid = core.handler_id(name)
        eng = core.enter()
        try:
            return _policy.read_policy_state(eng, hid)
        finally:
            core.exit()

    def handler_id(self, name: str) -> int:
        """The id of handler ``name``; raises ``UnknownHandlerError`` (status NOT_FOUND)."""
        return self._core.handler_id(name)

    def has_handler(self, name: str) -> bool:
        """True when a handler named ``name`` is registered."""
        try:
            self._core.handler_id(name)
        except UnknownHandlerError:
            return False
        return True

    # ------------------------------------------------------------ control and introspection

    def cancel(self, fut: Future[Any]) -> bool:
        """``fut.cancel()``: True if its request was still in flight."""
        return fut.cancel()

    def cancel_all(self) -> None:
        """Cancels every request in flight; each raises ``CancelledError("... cancel_all")``."""
        core = self._core
        eng = core.enter()
        try:
            st = LIB.portway_cancel_all(eng)
        finally:
            core.exit()
        check(st)

    def stats(self) -> Stats:
        """A snapshot keyed by the ``portway_stats`` field names; ``completed`` maps status
        names (``"OK"``, ``"TIMEOUT"``, ...) to counts."""
        core = self._core
        s = _lib.PortwayStats()
        eng = core.enter()
        try:
            st = LIB.portway_stats(eng, byref(s))
        finally:
            core.exit()
        check(st)
        out: dict[str, object] = {}
        for field in _lib.PortwayStats._fields_:
            name = field[0]
            if name == "completed":
                out[name] = {
                    (Status(i).name if i in Status._value2member_map_ else str(i)): int(v)
                    for i, v in enumerate(s.completed)
                }
            else:
                out[name] = int(getattr(s, name))
        return out  # type: ignore[return-value]  # every Stats key, from the C struct's fields

    def metrics_text(self) -> str:
        """Prometheus text exposition (``portway_metrics_text``), when the library has it."""
        return self._text_call("portway_metrics_text")

    def inflight_json(self, limit: int = 100) -> str:
        """A JSON snapshot of up to ``limit`` in-flight requests (``portway_inflight_json``)."""
        return self._text_call("portway_inflight_json", _u32("limit", limit))

    def inflight(self, limit: int = 100) -> Inflight:
        """The in-flight dump as a dict: ``{"total": N, "requests": [{"id", "user_data",
        "handler", "stage", "stage_handler", "state", "age_ms"}]}``, oldest first."""
        result: Inflight = json.loads(self.inflight_json(limit))
        return result

    def handler_stats(self, name: str) -> HandlerStats:
        """Counts and latency of one handler: ``submitted``, ``completed`` (status name ->
        count, nonzero only), and ``queue_wait`` / ``run`` each with ``p50_ns``, ``p90_ns``,
        ``p99_ns``, ``max_ns``, ``sum_ns`` and ``count``."""
        fn = getattr(LIB, "portway_handler_stats", None)
        if fn is None:
            raise PortwayError("this libportway has no portway_handler_stats")
        core = self._core
        hid = core.handler_id(name)
        out = PortwayHandlerStats()
        eng = core.enter()
        try:
            check(fn(eng, hid, byref(out)))
        finally:
            core.exit()

        def latency(lat: PortwayLatency) -> Latency:
            return Latency(
                p50_ns=int(lat.p50_ns),
                p90_ns=int(lat.p90_ns),
                p99_ns=int(lat.p99_ns),
                max_ns=int(lat.max_ns),
                sum_ns=int(lat.sum_ns),
                count=int(lat.count),
            )

        completed = {
            (Status(i).name if i in Status._value2member_map_ else str(i)): int(n)
            for i, n in enumerate(out.completed)
            if n
        }
        return HandlerStats(
            id=int(out.id),
            name=name,
            submitted=int(out.submitted),
            completed=completed,
            queue_wait=latency(out.queue_wait),
            run=latency(out.run),
        )

    def _text_call(self, fn_name: str, *args: int) -> str:
        fn = getattr(LIB, fn_name, None)
        if fn is None:
            raise PortwayError(f"this libportway has no {fn_name}")
        core = self._core
        cap = 1 << 16
        for _ in range(8):
            buf = ctypes.create_string_buffer(cap)
            needed = c_size_t()
            eng = core.enter()
            try:
                st = fn(eng, *args, buf, cap, byref(needed))
            finally:
                core.exit()
            if st == Status.BUFFER_TOO_SMALL or (st == _OK and needed.value > cap):
                cap = max(cap * 2, needed.value + 1)
                continue
            check(st)
            return buf.value.decode("utf-8", "replace")
        raise PortwayError(f"{fn_name}: output kept growing")

    def notify_fd(self) -> int:
        """The engine's notify descriptor (owned by the engine; do not read or close it)."""
        core = self._core
        eng = core.enter()
        try:
            fd = int(LIB.portway_notify_fd(eng))
        finally:
            core.exit()
        if fd < 0:
            raise PortwayError(last_error())
        return fd
