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
import operator
import os
import struct
import sys
import threading
import time
import weakref
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from ctypes import addressof, byref, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Any, Union

from . import _lib
from ._errors import (
    ForkedError,
    InvalidArgumentError,
    PortwayError,
    ShutdownError,
    Status,
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


def _to_bytes(payload: Payload) -> bytes:
    """``payload`` as an exact ``bytes`` object."""
    if payload.__class__ is bytes:
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return bytes(payload)


# Float timeouts already converted (a program uses a handful): a dict hit instead of the checks
# and arithmetic. Only exact floats: an equal Fraction or Decimal may round differently.
_TIMEOUT_CACHE: dict[float, int] = {}
_TIMEOUT_CACHE_MAX = 256


def _timeout_ms(timeout: float | None) -> int:
    if timeout is None:
        return 0
    if timeout.__class__ is float:
        ms = _TIMEOUT_CACHE.get(timeout)
        if ms is not None:
            return ms
    if timeout < 0 or math.isnan(timeout):
        raise InvalidArgumentError(f"timeout must be >= 0, got {timeout!r}")
    ms = max(1, min(0xFFFFFFFF, math.ceil(timeout * 1000)))
    if timeout.__class__ is float and len(_TIMEOUT_CACHE) < _TIMEOUT_CACHE_MAX:
        _TIMEOUT_CACHE[timeout] = ms
    return ms


def _u32(name: str, value: int) -> int:
    if not 0 <= value <= 0xFFFFFFFF:
        raise InvalidArgumentError(f"{name} out of range: {value!r}")
    return value


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
        # Demand: futures somebody waits on without polling (result() after a drain found
        # nothing, concurrent.futures.wait/as_completed, add_done_callback). The delivery
        # thread sits in portway_poll only while demand exists (or always_poll is set);
        # otherwise it parks, so that a thread driving submit()+result() on inline handlers
        # never competes with it for the GIL.
        self.demand_lock = threading.Lock()
        self.demand_cond = threading.Condition(self.demand_lock)
        self.demand_count = 0
        self.always_poll = False
        self.readers: dict[asyncio.AbstractEventLoop, bool] = {}
        self.readers_lock = threading.Lock()
        self.notify_fd = -1

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
        out = c_uint32()
        eng = self.enter()
        try:
            st = LIB.portway_handler_lookup(eng, name.encode(), byref(out))
        finally:
            self.exit()
        if st == _NOT_FOUND:
            raise error_for(Status.UNKNOWN_HANDLER, f"no handler named {name!r}")
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

    def ensure_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop in self.readers:
            return
        with self.readers_lock:
            if loop in self.readers:
                return
            if self.notify_fd < 0:
                eng = self.enter()
                try:
                    fd = LIB.portway_notify_fd(eng)
                finally:
                    self.exit()
                if fd < 0:
                    raise PortwayError(last_error())
                self.notify_fd = fd
            try:
                loop.add_reader(self.notify_fd, self._on_readable, loop)
                self.readers[loop] = True
            except NotImplementedError:
                self.readers[loop] = False  # e.g. a proactor loop: the delivery thread serves it
                self.poll_always()

    def _on_readable(self, loop: asyncio.AbstractEventLoop) -> None:
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
            if self.readers.pop(loop, False) and not loop.is_closed():
                loop.remove_reader(self.notify_fd)

    def _remove_all_readers(self, wait: float) -> None:
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop in list(self.readers):
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

    def close(self, drain: bool, timeout: float | None) -> None:
        if self.gen != _fork_generation:
            # A child after fork(): the inherited engine belongs to the parent. Leak it.
            self.freed = True
            return
        with self.call_lock:
            if self.closing:
                return
            self.closing = True
        mode = _lib.DRAIN if drain else _lib.CANCEL_NOW
        deadline_ms = _timeout_ms(timeout) if drain else 0
        eng = self.eng
        LIB.portway_engine_shutdown(eng, mode, deadline_ms)
        self.poll_always()
        poller = self.poller
        if poller is not None and poller is not threading.current_thread():
            poller.join((timeout if drain and timeout is not None else 0) + 2.0)
            if poller.is_alive():
                LIB.portway_engine_shutdown(eng, _lib.CANCEL_NOW, 0)
                LIB.portway_wake(eng)
                poller.join(2.0)
        self._remove_all_readers(1.0)
        # From here no native call may start; wait for those running (e.g. a poll slice on
        # another thread, which ends within a slice) to return.
        self.freed = True
        active = self.active
        deadline = time.monotonic() + 5.0
        while active and time.monotonic() < deadline:
            LIB.portway_wake(eng)
            time.sleep(0.001)
        if active:
            return  # someone is stuck inside the library: leak rather than free under them
        LIB.portway_engine_free(eng)
        self._fail_pending(ShutdownError("engine closed before this request completed"))


def _close_core(core: _Core, drain: bool, timeout: float | None) -> None:
    core.close(drain, timeout)


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

    ``runtime_threads``/``pool_workers``: None = one per CPU. ``default_timeout`` (seconds)
    applies to requests submitted without one. Exiting the ``with`` block closes with drain.
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
                check(LIB.portway_config_set_default_timeout_ms(cfg, _timeout_ms(default_timeout)))
            if max_payload is not None:
                if not 0 <= max_payload < 2**64:
                    raise InvalidArgumentError(f"max_payload out of range: {max_payload!r}")
                check(LIB.portway_config_set_max_payload(cfg, max_payload))
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
        """Stops intake, lets in-flight work finish (``drain``, up to ``timeout`` seconds; None
        = no deadline) or cancels it, delivers every completion, frees the engine. Idempotent."""
        self._finalizer.detach()
        self._core.close(drain, timeout)

    @property
    def closed(self) -> bool:
        return self._core.closing

    # ------------------------------------------------------------ submitting

    def submit(self, handler: str, payload: Payload = b"", timeout: float | None = None) -> Future[Completion]:
        """Submits one request; never blocks. Raises ``BusyError`` when every slot is taken."""
        core = self._core
        hid = core.handlers.get(handler)
        if hid is None:
            hid = core.handler_id(handler)
        data = payload if payload.__class__ is bytes else _to_bytes(payload)
        tms = 0 if timeout is None else _timeout_ms(timeout)
        token = next(core.tokens)
        fut: Future[Completion] = Future(core, token)
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
        fut: Future[Any] = Future(core, token, transform)
        fut._id = core.submit_entry(hid, data, tms, token, fut)
        if core.poller is None:
            core.ensure_poller()
        return fut

    def submit_many(
        self, handler: str, payloads: Iterable[Payload], timeout: float | None = None
    ) -> list[Future[Completion]]:
        """Submits every payload in one ``portway_submit_batch`` call. The engine accepts the
        longest possible prefix; futures past it fail with the error that stopped the batch
        (e.g. ``BusyError``)."""
        core = self._core
        hid = core.handler_id(handler)
        to_bytes = _to_bytes
        datas = [p if p.__class__ is bytes else to_bytes(p) for p in payloads]
        n = len(datas)
        if n == 0:
            return []
        tms = _timeout_ms(timeout)
        first = core.batch_tokens(n)
        tokens = range(first, first + n)
        futs: list[Future[Completion]] = list(map(Future, itertools.repeat(core, n), tokens))
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
        accepted = c_size_t()
        pending = core.pending
        pending.update(zip(tokens, futs))
        active = core.active
        active.append(None)
        try:
            if core.freed or core.gen != _fork_generation:
                for tok in tokens:
                    pending.pop(tok, None)
                raise core.refusal()
            st = _submit_batch_raw(
                core.eng_p,
                c_void_p(reqs.buffer_info()[0]),
                c_size_t(n),
                c_void_p(ids.buffer_info()[0]),
                byref(accepted),
            )
        finally:
            active.pop()
        del blob, datas  # the engine copied the payloads
        if st == _OK:
            k = n
        elif st == _FORKED or (st == _INVALID and accepted.value == 0):
            for tok in tokens:  # the call itself failed: nothing was accepted
                pending.pop(tok, None)
            raise error_for(st, last_error())
        else:
            k = accepted.value
        deque(map(_set_future_id, futs, ids), 0)
        if k < n:
            exc = error_for(st, last_error())
            for tok, f in zip(tokens[k:], futs[k:]):
                pending.pop(tok, None)
                f._fail(exc)
        if core.poller is None:
            core.ensure_poller()
        return futs

    def map(
        self, handler: str, payloads: Iterable[Payload], window: int = 256, timeout: float | None = None
    ) -> Iterator[Completion]:
        """Yields completions in payload order, with at most ``window`` requests in flight.
        Raises the first failed request's error; closing the iterator cancels the rest.
        Requests go in batches (``submit_many``) as the window frees up."""
        if window < 1:
            raise InvalidArgumentError("window must be >= 1")
        it = iter(payloads)
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
                f.cancel()

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
        ``HttpResponse``; connection, TLS, protocol, body-size errors and timeouts raise."""
        payload = build_request(method, url, headers, body)
        return self._submit(handler, payload, timeout, response_from_completion)

    # ------------------------------------------------------------ asyncio

    async def asubmit(self, handler: str, payload: Payload = b"", timeout: float | None = None) -> Completion:
        """Awaitable submit; cancelling the awaiting task cancels the native request."""
        core = self._core
        loop = _get_running_loop()
        if loop not in core.readers:
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
        if loop not in core.readers:
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

    # ------------------------------------------------------------ handlers

    def register(self, name: str, fn: Callable[[bytes], bytes]) -> int:
        """Registers a Python handler ``fn(payload) -> bytes``, run on the engine's worker pool
        (holding the GIL). An exception becomes a ``HandlerError`` completion with its message.
        Returns the handler id."""
        string_at = ctypes.string_at
        data_p = ctypes.POINTER(ctypes.c_uint8)

        def trampoline(_ctx: int | None, call: int | None) -> None:
            try:
                ptr = data_p()
                ln = c_size_t()
                LIB.portway_call_payload(call, byref(ptr), byref(ln))
                payload = string_at(ptr, ln.value) if ln.value else b""
                out = fn(payload)
                if isinstance(out, str):
                    out = out.encode()
                elif not isinstance(out, bytes):
                    out = bytes(out)
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
            st = LIB.portway_register_handler(eng, name.encode(), cb, None, byref(out_id))
        finally:
            core.exit()
        check(st)
        core.keepalive.append(cb)  # must outlive the engine's use of it
        core.handlers[name] = out_id.value
        return out_id.value

    def register_http(self, name: str, **options: Any) -> int:
        """Registers another http handler ``name`` with its own connection pool and limits.
        ``options`` are ``portway_http_options`` fields (e.g. ``max_connections_per_host=8,
        max_body_bytes=1 << 20, follow_redirects=True, retries=2, user_agent="me/1",
        read_timeout_ms=5000, decompress=False, http1_only=True, bundled_roots_only=True``);
        the rest keep their defaults (bindings/python/README.md lists them all). Use it with
        ``http(..., handler=name)``."""
        if not hasattr(LIB, "portway_register_http"):
            raise PortwayError("this libportway has no portway_register_http")
        opts = _lib.PortwayHttpOptions()
        check(LIB.portway_http_options_default(byref(opts)))
        fields = {f[0] for f in _lib.PortwayHttpOptions._fields_}
        for key, value in options.items():
            if key not in fields:
                raise InvalidArgumentError(f"unknown http option {key!r}; known: {sorted(fields)}")
            if isinstance(value, str):
                value = value.encode()
            setattr(opts, key, value)
        core = self._core
        out_id = c_uint32()
        eng = core.enter()
        try:
            st = LIB.portway_register_http(eng, name.encode(), byref(opts), byref(out_id))
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
            st = LIB.portway_pipeline_new(eng, name.encode(), arr, len(ids), byref(out_id))
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

    def handler_id(self, name: str) -> int:
        """The id of handler ``name``; raises ``UnknownHandlerError``."""
        return self._core.handler_id(name)

    def has_handler(self, name: str) -> bool:
        try:
            self._core.handler_id(name)
        except PortwayError as exc:
            if exc.status == Status.UNKNOWN_HANDLER:
                return False
            raise
        return True

    # ------------------------------------------------------------ control and introspection

    def cancel(self, fut: Future[Any]) -> bool:
        return fut.cancel()

    def cancel_all(self) -> None:
        core = self._core
        eng = core.enter()
        try:
            st = LIB.portway_cancel_all(eng)
        finally:
            core.exit()
        check(st)

    def stats(self) -> dict[str, Any]:
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
        out: dict[str, Any] = {}
        for field in _lib.PortwayStats._fields_:
            name = field[0]
            if name == "completed":
                out[name] = {
                    (Status(i).name if i in Status._value2member_map_ else str(i)): int(v)
                    for i, v in enumerate(s.completed)
                }
            else:
                out[name] = int(getattr(s, name))
        return out

    def metrics_text(self) -> str:
        """Prometheus text exposition (``portway_metrics_text``), when the library has it."""
        return self._text_call("portway_metrics_text")

    def inflight_json(self, limit: int = 100) -> str:
        """A JSON snapshot of up to ``limit`` in-flight requests (``portway_inflight_json``)."""
        return self._text_call("portway_inflight_json", _u32("limit", limit))

    def inflight(self, limit: int = 100) -> dict[str, Any]:
        """The in-flight dump as a dict: ``{"total": N, "requests": [{"id", "user_data",
        "handler", "stage", "stage_handler", "state", "age_ms"}]}``, oldest first."""
        result: dict[str, Any] = json.loads(self.inflight_json(limit))
        return result

    def handler_stats(self, name: str) -> dict[str, Any]:
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

        def latency(lat: PortwayLatency) -> dict[str, int]:
            return {f[0]: int(getattr(lat, f[0])) for f in PortwayLatency._fields_}

        completed = {
            (Status(i).name if i in Status._value2member_map_ else str(i)): int(n)
            for i, n in enumerate(out.completed)
            if n
        }
        return {
            "id": int(out.id),
            "name": name,
            "submitted": int(out.submitted),
            "completed": completed,
            "queue_wait": latency(out.queue_wait),
            "run": latency(out.run),
        }

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
