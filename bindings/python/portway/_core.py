"""The engine core: the native handle, the delivery thread and the asyncio reader.

``_Core`` is everything the finalizer, the delivery thread and the futures share (the public
``Engine`` wraps one). Design:

- Every request carries a binding-assigned token in ``user_data``; the token is registered
  in ``_Core.pending`` *before* the submit call, so a completion polled by any thread (even
  one that finishes inline, before ``portway_submit`` returns) finds its future. Whichever
  thread polled a completion pops its entry (the pop is the claim: exactly once) and settles
  it through ``_futures.settle``.
- Pollers: one daemon delivery thread per engine (started with the first sync future) waits
  in ``portway_poll`` in slices of at most 200 ms; ``Future.result()`` first drains ready
  completions on the caller's thread (``help_poll``); asyncio loops drain on the loop thread
  from ``loop.add_reader(notify_fd)``.
- Native calls are counted (``_Core.active``, a deque: append/pop are atomic under the GIL,
  no lock on the hot path); ``portway_engine_free`` runs only when none is running. No native
  work from ``__del__``: ``weakref.finalize`` closes with cancel (also at interpreter exit).
  Every future references its Engine, so the finalizer runs only once no one can wait for
  the work it cancels. In a forked child every call raises ``ForkedError``.
- Hot paths (submit, poll, release) use ``_raw``: function objects without ``argtypes``,
  preallocated arguments, per-thread scratch buffers taken from a pool, requests filled with
  ``struct.pack_into`` and completions read in one ``struct.iter_unpack`` over the poll buffer.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import operator
import os
import threading
import time
import weakref
from array import array
from collections import deque
from ctypes import byref, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Any, Callable, TypeVar, Union

from . import _lib
from ._args import _check_name, _timeout_ms
from ._batch import read_batch
from ._completion import Completion
from ._errors import (
    ForkedError,
    PortwayError,
    ShutdownError,
    Status,
    UnknownHandlerError,
    check,
    error_for,
    last_error,
)
from ._futures import AsyncTarget, Future, _AsyncEntry, fail, settle
from ._lib import LIB
from ._tick import _EACH_MAX as _DIRECT_MAX, TickQueue
from ._raw import (
    _BYTES_OFF,
    _COMP_SIZE,
    _MEMORY,
    _POLL_CAP,
    _POLL_CAP_C,
    _REQ,
    _SIZES,
    _STRING_ARRAYS,
    _Scratch,
    _address,
    _comp_iter_unpack,
    _head,
    _meta_raw,
    _poll_raw,
    _release_raw,
    _req_words_pack_into,
    _string_at,
    _submit_batch_raw,
    _submit_raw,
    _submit_wait_raw,
)

__all__ = ["_Core", "_close_core", "Entry"]

Entry = Union[Future[Any], AsyncTarget]
# ``_Core.readers``' value: the loop (weakly), whether add_reader worked, its tick's queue.
LoopEntry = tuple["weakref.ref[asyncio.AbstractEventLoop]", bool, TickQueue]
R = TypeVar("R")

_POLL_SLICE_MS = 200
_OK = int(Status.OK)
_CLOSED = int(Status.CLOSED)
_NOT_FOUND = int(Status.NOT_FOUND)
_BUSY = int(Status.BUSY)
_BATCH_TOKEN_BASE = 1 << 62  # submit_many's tokens; single submits count up from 1
_BATCH_JOIN_MAX = 1 << 20  # submit_many copies payloads up to this total into one blob
_HEADS_MAX = 256  # _Core.heads entries (a program uses a handful)

# Bumped in a forked child: every engine created before the fork then refuses to work.
_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# Statuses by which portway_submit_batch refuses one request for itself: the next may be fine.
_PER_REQUEST = frozenset({int(Status.PAYLOAD_TOO_LARGE), int(Status.INVALID_ARGUMENT), int(Status.UNKNOWN_HANDLER)})

def _stopped(st: int, at: int, n: int, msg: str) -> list[tuple[int, PortwayError]]:
    """The failures of a batch of ``n`` that the engine-wide refusal ``st`` (BUSY, SHUTDOWN)
    stopped at request ``at``: that one with the engine's message, every later one unsent."""
    rest = f"not submitted: the batch stopped at request {at}: {msg}"
    return [(at, error_for(st, msg)), *((i, error_for(st, rest)) for i in range(at + 1, n))]


_get_running_loop = asyncio.get_running_loop
_get_running_loop_or_none = asyncio._get_running_loop


class _Core:
    """Everything the finalizer, the delivery thread and the futures share (not the Engine)."""

    def __init__(self, eng: int) -> None:
        self.eng = eng
        self.eng_p = c_void_p(eng)
        self.gen = _fork_generation
        self.pending: dict[int, Entry] = {}
        # Tokens of batches in flight (Engine.batch): their items are read
        # (portway_batch_result) by the poller, before the release.
        self.batch_pending: set[int] = set()
        self.tokens = itertools.count(1)
        self.batch_lock = threading.Lock()
        self.batch_next = _BATCH_TOKEN_BASE
        self.handlers: dict[str, int] = {}
        # (handler name, timeout) -> the request head (``_raw._head``) of a checked pair: the
        # ahttp() hot path's one dict hit for the lookup, the timeout check and the packing.
        self.heads: dict[tuple[str, float | None], int] = {}
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
        # reference (True: add_reader worked; False: the delivery thread serves that loop)
        # and the queue of ahttp() requests of its current tick (``_tick``). Weak, so a closed
        # loop (asyncio.run() per request) is freed; the reference's callback drops the
        # entry, and that runs before the id can be reused.
        self.readers: dict[int, LoopEntry] = {}
        self.readers_lock = threading.Lock()
        self.notify_fd = -1
        # Why in-flight work was cancelled by close()/the finalizer, for CancelledError.
        self.cancel_reason = ""

    # ------------------------------------------------------------ native-call accounting

    def refusal(self) -> PortwayError:
        """The error for a call this engine can no longer take: ``ForkedError`` in a child
        after fork(), else ``ShutdownError``."""
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
        """Ends a native call counted by ``enter()``."""
        self.active.pop()

    def call(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(engine, *args)``, counted as a native call (``enter``/``exit``): raises
        ``ShutdownError``/``ForkedError`` instead once the engine is closed or inherited."""
        eng = self.enter()
        try:
            return fn(eng, *args)
        finally:
            self.active.pop()

    # ------------------------------------------------------------ handlers

    def handler_id(self, name: str) -> int:
        """The id of handler ``name`` (cached after the first lookup); raises
        ``UnknownHandlerError`` (status NOT_FOUND)."""
        hid = self.handlers.get(name)
        if hid is not None:
            return hid
        raw = _check_name(name)
        out = c_uint32()
        st = self.call(LIB.portway_handler_lookup, raw, byref(out))
        if st == _NOT_FOUND:  # status NOT_FOUND, as C's lookup and the Node binding say
            raise UnknownHandlerError(f"no handler named {name!r}")
        check(st)
        self.handlers[name] = out.value
        return out.value

    def request_head(self, handler: str, timeout: float | None) -> int:
        """``_raw._head`` of ``handler`` (a name) and ``timeout`` (seconds or None), checked
        (``UnknownHandlerError``, ``InvalidArgumentError``...) and cached in ``heads`` for a
        None, float or int timeout. Names never change ids: a duplicate name is refused."""
        hid = self.handlers.get(handler)
        if hid is None:
            hid = self.handler_id(handler)
        head = _head(hid, 0 if timeout is None else _timeout_ms(timeout))
        if timeout is None or timeout.__class__ is float or timeout.__class__ is int:
            heads = self.heads
            if len(heads) >= _HEADS_MAX:
                heads.clear()
            heads[(handler, timeout)] = head
        return head

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
        st, rid = self.submit_status(_head(hid, tms), data, token, entry)
        if st:
            raise self.refusal() if st < 0 else error_for(st, last_error())
        return rid

    def submit_status(self, head: int, data: bytes, token: int, entry: Entry) -> tuple[int, int]:
        """Registers ``entry`` under ``token`` and submits ``data`` with request head ``head``
        (``portway_submit``): returns the status and the id. -1 when the engine is closed or
        forked (no call made); on any refusal the entry is unregistered again."""
        pool = self.scratch
        try:
            s = pool.pop()
        except IndexError:
            s = _Scratch()
        ln = len(data)
        _req_words_pack_into(s.req, 0, head, token, _address(data) if ln else 0, ln)
        active = self.active
        active.append(None)
        if self.freed or self.gen != _fork_generation:
            active.pop()
            pool.append(s)
            return -1, 0
        pending = self.pending
        pending[token] = entry
        try:
            st: int = _submit_raw(self.eng_p, s.req_p, s.rid_p)
        finally:
            active.pop()
        rid: int = s.rid.value
        pool.append(s)
        if st:
            pending.pop(token, None)
        return st, rid

    def submit_each(
        self, heads: list[int], datas: list[bytes], first: int, entries: list[Any]
    ) -> tuple[array[int], list[tuple[int, PortwayError]]]:
        """``submit_batch`` for a handful of requests: one ``portway_submit`` each (building a
        batch costs more than that below about four requests), with the same results, refusal
        rules and exceptions."""
        n = len(datas)
        ids = array("Q", bytes(8 * n))
        failed: list[tuple[int, PortwayError]] = []
        for i in range(n):
            st, rid = self.submit_status(heads[i], datas[i], first + i, entries[i])
            if not st:
                ids[i] = rid
                continue
            if st < 0:  # closed or forked meanwhile: nothing more can be submitted
                if i == 0:
                    raise self.refusal()
                failed.extend((j, self.refusal()) for j in range(i, n))
                break
            msg = last_error()
            if st in _PER_REQUEST:
                failed.append((i, error_for(st, f"request {i} of the batch: {msg}")))
                continue
            failed.extend(_stopped(st, i, n, msg))
            break
        return ids, failed

    def submit_items(self, hid: int, data: bytes, offsets: array[int], tms: int, token: int, entry: Entry) -> int:
        """Registers ``entry`` under ``token`` and submits the payloads ``data[offsets[i] ..
        offsets[i+1]]`` as one batch (``portway_batch_submit``); returns the batch id. On a
        refusal the entry is unregistered and the error raised."""
        n = len(offsets) - 1
        rid = c_uint64()
        active = self.active
        active.append(None)
        if self.freed or self.gen != _fork_generation:
            active.pop()
            raise self.refusal()
        self.pending[token] = entry
        self.batch_pending.add(token)
        try:
            st = LIB.portway_batch_submit(
                self.eng_p, hid, data, offsets.buffer_info()[0], n, tms, token, byref(rid)
            )
        finally:
            active.pop()
        if st:
            self.pending.pop(token, None)
            self.batch_pending.discard(token)
            raise error_for(st, last_error())
        return rid.value

    def submit_batch(
        self, heads: int | list[int], datas: list[bytes], first: int, entries: list[Any]
    ) -> tuple[array[int], list[tuple[int, PortwayError]]]:
        """Registers ``entries[i]`` under token ``first + i`` and submits ``datas[i]``, with
        handler and timeout ``heads`` (``_raw._head(hid, tms)``: one for every request, or one
        per request): one ``portway_submit_batch`` call when all are accepted. Returns the ids
        (0 where not accepted) and the ``(index, error)`` of every refused request,
        unregistered here for the caller to settle. A request refused for itself (payload too
        large or refused by the handler) fails alone and the batch goes on after it; an
        engine-wide refusal (BUSY, SHUTDOWN) fails it and every later one, unsent. Raises when
        nothing could be submitted because of the engine (closed, forked)."""
        n = len(datas)
        tokens = range(first, first + n)
        # The request array as 4n native u64 words: (handler, timeout_ms), user_data, payload,
        # payload_len. Every column is filled by C loops (array slice assignment).
        if isinstance(heads, int):
            reqs = array("Q", (heads, 0, 0, 0)) * n
        else:
            reqs = array("Q", bytes(_REQ.size * n))
            reqs[0::4] = array("Q", heads)
        reqs[1::4] = array("Q", tokens)
        lens = array("Q", map(len, datas))
        reqs[3::4] = lens
        blob: bytes | None = None
        if _BYTES_OFF is None or sum(lens) <= _BATCH_JOIN_MAX:
            # small payloads: one copy into a blob, addresses by running offsets (C loops)
            blob = b"".join(datas)
            reqs[2::4] = array("Q", itertools.accumulate(lens[:-1], initial=_address(blob)))
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
            failed.extend(_stopped(st, at, n, msg))
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
        ids, failed = self.submit_batch(_head(hid, tms), datas, self.batch_tokens(len(datas)), afuts)
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
        self._count_demand()  # a waiting submitter is demand, like a waiting result()
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
            self.drop_demand()

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
            batches = self.batch_pending
            arrays = _STRING_ARRAYS
            n_arrays = len(arrays)
            for i, (cid, ud, status, code, data, ln, meta, meta_len, qns, rns) in enumerate(
                _comp_iter_unpack(s.mv[: count * _COMP_SIZE])
            ):
                entry = pop(ud, None)
                if batches and ud in batches:
                    batches.discard(ud)
                    if entry is not None:  # its transform (a BatchValue) hands the items out
                        value: Any = entry.transform if isinstance(entry, _AsyncEntry) else getattr(entry, "_transform")
                        value.result = read_batch(self.eng_p, (s.buf_p.value or 0) + i * _COMP_SIZE)
                if entry is not None:  # else: cancelled and settled already, or nobody's
                    if ln:
                        body = mem[data : data + ln].tobytes() if mem is not None else _string_at(data, ln)
                    else:
                        body = b""
                    entries.append(entry)
                    if meta_len:  # copied now (_meta_raw, inlined), decoded when Completion.meta is read
                        raw = (
                            arrays[meta_len].from_address(meta)[:] if meta_len < n_arrays else _meta_raw(meta, meta_len)
                        )
                        comps.append(Completion(cid, ud, status, code, body, None, qns, rns, raw))
                    else:
                        comps.append(Completion(cid, ud, status, code, body, [], qns, rns))
            # Release before settling: whoever sees a result also sees its slot returned.
            _release_raw(self.eng_p, s.buf_p, _SIZES[count])
        finally:
            active.pop()
        pool.append(s)
        settle(entries, comps, here, self.cancel_reason)
        return count

    def help_poll(self) -> None:
        """Drains ready completions on the calling thread without waiting."""
        try:
            while self.poll_once(0) == _POLL_CAP:
                pass
        except ForkedError:
            raise
        except PortwayError:
            pass

    def add_demand(self) -> None:
        """One more waiter that does not poll (a future's ``result()`` after a drain found
        nothing, ``concurrent.futures.wait``, a done callback, a waiting submitter): the
        delivery thread polls until ``drop_demand``."""
        self._count_demand()
        self.ensure_poller()

    def _count_demand(self) -> None:
        with self.demand_lock:
            self.demand_count += 1
            if self.demand_count == 1:
                self.demand_cond.notify()  # the delivery thread may be parked

    def drop_demand(self) -> None:
        """Undoes one ``add_demand`` (its future was settled, or the submitter got a slot)."""
        with self.demand_lock:
            self.demand_count -= 1

    def claim(self, token: int, entry: object) -> bool:
        """Unregisters ``entry`` from ``token``: True if it was still there, so that no poller
        will settle it (``Future.set_result`` by a user)."""
        return self.pending.pop(token, None) is entry

    def poll_always(self) -> None:
        """Keeps the delivery thread polling from now on (a loop without ``add_reader``,
        or close() waiting for the last completions)."""
        with self.demand_lock:
            self.always_poll = True
            self.demand_cond.notify()
        self.ensure_poller()

    def ensure_poller(self) -> None:
        """Starts the delivery thread unless it runs already or the engine is freed."""
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
        """Settles every entry still registered with ``exc`` (the engine is closing)."""
        # Every accepted request gets a completion, so this only catches binding-side leftovers.
        while self.pending:
            try:
                _, entry = self.pending.popitem()
            except KeyError:
                break
            fail(entry, exc)

    # ------------------------------------------------------------ asyncio

    def has_reader(self, loop: asyncio.AbstractEventLoop) -> bool:
        """True when ``loop`` is served (by its reader or the delivery thread)."""
        ent = self.readers.get(id(loop))
        return ent is not None and ent[0]() is loop

    def ensure_reader(self, loop: asyncio.AbstractEventLoop) -> LoopEntry:
        """Registers this engine's notify fd with ``loop`` (once per loop): completions
        are then polled on the loop's thread when the fd is readable. Returns the loop's
        ``readers`` entry."""
        ent = self.readers.get(id(loop))
        if ent is not None and ent[0]() is loop:
            return ent
        with self.readers_lock:
            ent = self.readers.get(id(loop))
            if ent is not None and ent[0]() is loop:
                return ent
            # A new loop often means an old one closed (asyncio.run() per call): forget
            # closed loops now rather than when the collector frees them.
            for key, (ref, _, _) in list(self.readers.items()):
                old = ref()
                if old is None or old.is_closed():
                    self.readers.pop(key, None)
            if self.notify_fd < 0:
                fd = self.call(LIB.portway_notify_fd)
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
                ent = readers[key] = (ref, True, TickQueue(self))
            except NotImplementedError:
                # e.g. a proactor loop: the delivery thread serves it
                ent = readers[key] = (ref, False, TickQueue(self))
                self.poll_always()
            return ent

    def flush_here(self) -> None:
        """Submits the ``ahttp()`` requests queued in this tick by the loop running on the
        calling thread, if any (``_tick``): for methods whose effect depends on what was
        submitted before them. Another thread's loop flushes its own queue."""
        loop = _get_running_loop_or_none()
        if loop is not None:
            ent = self.readers.get(id(loop))
            if ent is not None and ent[0]() is loop:
                ent[2].flush()

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
                    break
        except PortwayError:
            self.remove_reader(loop)
            return
        # The tasks these completions woke start about as many requests in the next tick: a
        # few go straight to the engine, more are coalesced (``_tick``).
        ent = self.readers.get(id(loop))
        if ent is not None:
            ent[2].direct = n <= _DIRECT_MAX

    def remove_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        """Unregisters the notify fd from ``loop`` (a no-op when it is not registered)."""
        with self.readers_lock:
            if not self.has_reader(loop):
                return
            _, added, _ = self.readers.pop(id(loop))
            if added and not loop.is_closed():
                loop.remove_reader(self.notify_fd)

    def _remove_all_readers(self, wait: float) -> None:
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        loops = [ref() for ref, _, _ in list(self.readers.values())]
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
