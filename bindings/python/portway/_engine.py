"""``Engine``: the public API over the core (``_core._Core``).

Submission (sync, asyncio, batches, ``map``), handler registration, control and
introspection. The engine's state, the delivery thread and the asyncio reader live in
``_core``; the futures in ``_futures``; argument checks in ``_args``.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import json
import os
import weakref
from array import array
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Generator, Iterable, Iterator
from ctypes import byref, c_size_t, c_uint32, c_void_p
from typing import Any, Literal, overload

from . import _core, _lib, _log, _policy
from ._args import (
    Payload,
    _check_name,
    _payload_iterable,
    _payload_list,
    _timeout_ms,
    _to_bytes,
    _u32,
    _uint,
    _wait_ms,
    _window,
)
from ._batch import BatchResult, BatchValue
from ._completion import Completion
from ._core import _BUSY, _OK, _Core, _close_core, _get_running_loop
from ._errors import (
    BusyError,
    InvalidArgumentTypeError,
    PortwayError,
    Status,
    UnknownHandlerError,
    check,
    error_for,
    last_error,
)
from ._futures import Future, _AsyncEntry, cancel_with, fail, set_request_id
from ._handler import CallHandlerFn, HandlerFn, c_handler
from ._http import _HEAD_CACHE, HeadersArg, HttpResponse, build_request, http_options, response_from_completion
from ._lib import LIB, PortwayHandlerStats
from ._policy import PolicyState
from ._raw import _address, _head, _req_pack_into, _Scratch, _submit_raw
from ._types import HandlerStats, Inflight, Stats, handler_stats_from, stats_from

__all__ = ["Engine", "Payload"]

# portway_register_handler_ex flag (PORTWAY_HANDLER_IDEMPOTENT): every call is safe to run twice.
_HANDLER_IDEMPOTENT = 1

def _batch_parts(datas: list[bytes], step: int) -> Iterator[tuple[bytes, array[int]]]:
    """The sub-batches of ``datas``, at most ``step`` items each: one buffer and its offsets."""
    for start in range(0, len(datas), step):
        part = datas[start : start + step]
        yield b"".join(part), array("Q", list(itertools.accumulate(map(len, part), initial=0)))


def _empty_batch() -> BatchResult:
    return BatchResult(array("I"), array("I"), array("Q", [0]), b"", array("Q", [0]), [])

_MAP_CLOSED = "cancelled: the map()/amap() iterator was closed before this result was read"


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
                log_fn = _log.configure(cfg, log_level)
            out = c_void_p()
            check(LIB.portway_engine_new(cfg, byref(out)))
        finally:
            LIB.portway_config_free(cfg)
        assert out.value is not None
        self._core = _Core(out.value)
        self._max_in_flight = max_in_flight  # the largest sub-batch Engine.batch() submits
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
        self._core.flush_here()  # this tick's ahttp() requests: drained (or cancelled) too
        self._core.close(drain, timeout)

    @property
    def closed(self) -> bool:
        """True once ``close()`` began (or the finalizer closed the engine)."""
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
        if core.freed or core.gen != _core._fork_generation:
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
        ids, failed = core.submit_batch(_head(hid, tms), datas, first, futs)
        deque(map(set_request_id, futs, ids), 0)
        for i, exc in failed:
            fail(futs[i], exc)
        if core.poller is None:
            core.ensure_poller()
        return futs

    def batch(self, handler: str, payloads: Iterable[Payload], *, timeout: float | None = None) -> BatchResult:
        """Runs every payload on ``handler`` as one batch and returns their results in order
        (blocking): one buffer, one ``portway_batch_submit`` call and one completion per
        ``max_in_flight`` items (longer sequences are split into sub-batches transparently),
        the results read as columns. Each item is a request of its own (its own ``timeout``
        deadline, in seconds; None = the engine default) and may fail on its own: see
        ``BatchResult.status``, ``.ok``, ``.failures()``, ``.raise_first()``. Raises
        ``BusyError`` when the engine has not enough free slots for a sub-batch (and none of
        this call's sub-batches is left to wait for), ``InvalidArgumentError`` for a payload
        the handler refuses (naming the item), ``UnknownHandlerError``, ``ShutdownError``."""
        core = self._core
        hid = core.handler_id(handler)
        datas = _payload_list(payloads)
        tms = _timeout_ms(timeout)
        if not datas:
            return _empty_batch()
        waiting: deque[Future[BatchResult]] = deque()
        done: list[BatchResult] = []
        try:
            for data, offsets in _batch_parts(datas, self._max_in_flight):
                while True:
                    token = next(core.tokens)
                    fut: Future[BatchResult] = Future(core, token, BatchValue(), self)
                    try:
                        fut._id = core.submit_items(hid, data, offsets, tms, token, fut)
                    except BusyError:
                        if not waiting:
                            raise
                        done.append(waiting.popleft().result())  # a slot-holder of ours finishes
                        continue
                    break
                if core.poller is None:
                    core.ensure_poller()
                waiting.append(fut)
            while waiting:
                done.append(waiting.popleft().result())
        finally:
            for f in waiting:
                cancel_with(f, "cancelled: Engine.batch() did not finish")
        return BatchResult._join(done)

    async def abatch(self, handler: str, payloads: Iterable[Payload], *, timeout: float | None = None) -> BatchResult:
        """Awaitable ``batch``: the same sub-batches and errors, its completions delivered to
        the running loop through the notify fd (no thread blocks). Cancelling the awaiting task
        cancels the items still running."""
        core = self._core
        hid = core.handler_id(handler)
        datas = _payload_list(payloads)
        tms = _timeout_ms(timeout)
        loop = _get_running_loop()
        ent = core.readers.get(id(loop))
        if ent is None or ent[0]() is not loop:
            core.ensure_reader(loop)
        waiting: deque[tuple[asyncio.Future[BatchResult], int]] = deque()
        done: list[BatchResult] = []
        try:
            for data, offsets in _batch_parts(datas, self._max_in_flight):
                while True:
                    token = next(core.tokens)
                    afut: asyncio.Future[BatchResult] = loop.create_future()
                    entry = _AsyncEntry(afut, BatchValue(), loop)
                    try:
                        rid = core.submit_items(hid, data, offsets, tms, token, entry)
                    except BusyError:
                        if not waiting:
                            raise
                        done.append(await waiting[0][0])  # a slot-holder of ours finishes
                        waiting.popleft()
                        continue
                    break
                waiting.append((afut, rid))
            while waiting:
                done.append(await waiting[0][0])
                waiting.popleft()
        finally:
            for left, left_id in waiting:
                if not left.done() or left.cancelled():
                    core.cancel_id(left_id)
        return BatchResult._join(done) if done else _empty_batch()

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
                cancel_with(f, _MAP_CLOSED)

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
        data = payload if payload.__class__ is bytes else _to_bytes(payload)
        afut, rid = self._asubmit_start(handler, data, timeout)
        try:
            return await afut
        except asyncio.CancelledError:
            if not afut.done() or afut.cancelled():
                self._core.cancel_id(rid)
            raise

    def _asubmit_start(self, handler: str, payload: bytes, timeout: float | None) -> tuple[asyncio.Future[Completion], int]:
        """``asubmit`` without the coroutine: submits from the running loop and returns the
        loop future the completion settles (cancelled for a CANCELLED completion) and the
        request id, for callers that drive many requests without a task each (the
        ``AsyncClient`` fan-outs); cancelling the future does not cancel the request:
        ``_core.cancel_id`` does."""
        core = self._core
        loop = _get_running_loop()
        ent = core.readers.get(id(loop))
        if ent is None or ent[0]() is not loop:
            core.ensure_reader(loop)
        hid = core.handlers.get(handler)
        if hid is None:
            hid = core.handler_id(handler)
        afut: asyncio.Future[Completion] = loop.create_future()
        rid = core.submit_entry(hid, payload, 0 if timeout is None else _timeout_ms(timeout), next(core.tokens), afut)
        return afut, rid

    async def ahttp(
        self,
        method: str,
        url: str,
        headers: HeadersArg = None,
        body: bytes | str | None = None,
        timeout: float | None = None,
        handler: str = "http",
    ) -> HttpResponse:
        """Awaitable ``http``; cancelling the awaiting task cancels the native request.

        The requests started on one loop in one tick are submitted together, in one
        ``portway_submit_batch`` call at the end of the tick (``_tick``). Errors in the
        arguments raise at once; an engine refusal (``BusyError``, ``ShutdownError``, a
        request the handler refuses) raises from the ``await``, as do the request's own
        errors. A task cancelled before the flush never reaches the engine."""
        payload = _HEAD_CACHE.get((method, url)) if headers is None and body is None else None
        if payload is None:
            payload = build_request(method, url, headers, body)
        core = self._core
        if core.closing or core.gen != _core._fork_generation:
            raise core.refusal()  # at once, as a direct submit would (the flush is too late)
        loop = _get_running_loop()
        ent = core.readers.get(id(loop))
        if ent is None or ent[0]() is not loop:
            ent = core.ensure_reader(loop)
        try:
            head = core.heads.get((handler, timeout))
        except TypeError:  # an unhashable handler or timeout: request_head says what is wrong
            head = None
        if head is None:
            head = core.request_head(handler, timeout)
        afut: asyncio.Future[HttpResponse] = loop.create_future()
        entry = _AsyncEntry(afut, response_from_completion, loop)
        q = ent[2]
        if q.direct and not q.entries:  # a small tick: at once (see _tick)
            st, entry.rid = core.submit_status(head, payload, next(core.tokens), entry)
            if st:
                raise core.refusal() if st < 0 else error_for(st, last_error())
        else:  # TickQueue.add, inlined
            if not q.entries:
                loop.call_soon(q.flush)
            q.heads.append(head)
            q.datas.append(payload)
            q.entries.append(entry)
        try:
            return await afut
        except asyncio.CancelledError:
            rid = entry.rid  # 0: still queued, and the flush drops it (its future is done)
            if rid and (not afut.done() or afut.cancelled()):
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

    @overload
    def register(
        self, name: str, fn: HandlerFn, *, idempotent: bool = False, with_call: Literal[False] = False
    ) -> int: ...

    @overload
    def register(self, name: str, fn: CallHandlerFn, *, idempotent: bool = False, with_call: Literal[True]) -> int: ...

    def register(
        self,
        name: str,
        fn: HandlerFn | CallHandlerFn,
        *,
        idempotent: bool = False,
        with_call: bool = False,
    ) -> int:
        """Registers a Python handler ``fn(payload) -> bytes``, run on the engine's worker pool
        (holding the GIL). It may return any bytes-like object or a ``str`` (sent as UTF-8);
        anything else, or an exception, becomes a ``HandlerError`` completion with a message.
        ``with_call=True`` calls ``fn(payload, call)`` instead, with a ``portway.Call`` whose
        ``cancelled`` turns true once the request is cancelled, timed out or shut down, or the
        call lost a hedge: a long handler polls it and returns early (a Python handler cannot
        be interrupted; what it returns then is dropped). A flag, not the signature, decides,
        so that any callable works and the type checker knows which ``fn`` is expected.
        ``idempotent=True`` declares every call safe to run twice, so that hedging
        (``set_policy(..., hedge_after=...)``) may start a second call of a slow request; the
        losing call is dropped, and runs to its end unless it watches ``call.cancelled``.
        Raises ``InvalidArgumentTypeError`` when ``fn`` is not callable, ``name`` not a str, or
        ``idempotent`` / ``with_call`` not a bool. Returns the handler id."""
        raw_name = _check_name(name)
        if not callable(fn):
            raise InvalidArgumentTypeError(f"handler {name!r} must be callable, got {type(fn).__name__}")
        for flag, value in (("idempotent", idempotent), ("with_call", with_call)):
            if not isinstance(value, bool):
                raise InvalidArgumentTypeError(f"{flag} must be a bool, got {type(value).__name__}")
        cb = c_handler(name, fn, with_call)
        core = self._core
        out_id = c_uint32()
        flags = _HANDLER_IDEMPOTENT if idempotent else 0
        st = core.call(LIB.portway_register_handler_ex, raw_name, cb, None, flags, byref(out_id))
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
        # Every keyword, by name (the locals are only the parameters here): each is the
        # portway_http_options field of that name, which http_options() checks and fills.
        given = dict(locals())
        del given["self"], given["name"]
        raw_name = _check_name(name)
        if not hasattr(LIB, "portway_register_http"):
            raise PortwayError("this libportway has no portway_register_http")
        opts, keep = http_options(given)
        core = self._core
        out_id = c_uint32()
        st = core.call(LIB.portway_register_http, raw_name, byref(opts), byref(out_id))
        del keep  # the library copied the strings
        check(st)
        core.handlers[name] = out_id.value
        return out_id.value

    def pipeline(self, name: str, stages: list[str]) -> int:
        """Registers handler ``name`` running ``stages`` in order (each response feeds the next)."""
        core = self._core
        ids = [core.handler_id(s) for s in stages]
        arr = (c_uint32 * max(1, len(ids)))(*ids)
        out_id = c_uint32()
        st = core.call(LIB.portway_pipeline_new, _check_name(name), arr, len(ids), byref(out_id))
        check(st)
        core.handlers[name] = out_id.value
        return out_id.value

    def set_concurrency(self, name: str, limit: int) -> None:
        """At most ``limit`` calls of handler ``name`` run at once (0 = only the pool limits)."""
        core = self._core
        hid = core.handler_id(name)
        st = core.call(LIB.portway_handler_set_concurrency, hid, _u32("limit", limit))
        check(st)

    def set_policy(
        self,
        name: str,
        *,
        max_concurrency: int = 0,
        adaptive: bool = False,
        min_concurrency: int = 1,
        rate_per_s: float = 0.0,
        burst: int = 0,
        hedge_after: float | None = None,
        hedge_after_p95: bool = False,
        hedge_budget: int | None = None,
        breaker_failures: int = 0,
        breaker_cooldown: float | None = None,
    ) -> None:
        """Sets every policy of handler ``name`` at once (omitted ones are off): at most
        ``max_concurrency`` calls at once (0 = none; the same as ``set_concurrency``), or with
        ``adaptive=True`` a latency-driven limit between ``min_concurrency`` and
        ``max_concurrency`` (0 = 1000) that grows while the calls' latency holds and shrinks
        as it rises (the algorithm: ``portway_policy.adaptive`` in portway.h; its live figure
        is ``policy_state(name)["concurrency_limit"]``); a token
        bucket of ``rate_per_s`` calls a second holding ``burst`` tokens (0 = ``max(1,
        rate_per_s)``), where a request whose token comes after its deadline fails with
        ``TimeoutError`` at once; and a circuit breaker that opens after ``breaker_failures``
        consecutive failures, refusing requests with ``UnavailableError`` for
        ``breaker_cooldown`` seconds (default 5) before one trial request decides. Hedging:
        a request still running ``hedge_after`` seconds after it started (or, with
        ``hedge_after_p95``, after the handler's recent 95th percentile) gets a second call
        with the same payload; the first success completes it (its ``meta`` then has
        ``("portway-hedge", "won")``) and the other call is cancelled; at most
        ``hedge_budget`` percent (default 5) of requests are hedged. Only handlers safe to
        repeat are hedged: ``http`` GET, HEAD, OPTIONS, PUT, DELETE, and handlers registered
        with ``idempotent=True``; hedging any other raises ``InvalidArgumentError``, as do
        ``min_concurrency`` above 1 without ``adaptive`` or above ``max_concurrency``, and
        ``adaptive`` on a pipeline. Invalid settings change nothing."""
        policy = _policy.build_policy(
            max_concurrency=max_concurrency,
            adaptive=adaptive,
            min_concurrency=min_concurrency,
            rate_per_s=rate_per_s,
            burst=burst,
            hedge_after=hedge_after,
            hedge_after_p95=hedge_after_p95,
            hedge_budget=hedge_budget,
            breaker_failures=breaker_failures,
            breaker_cooldown=breaker_cooldown,
        )
        core = self._core
        core.call(_policy.apply_policy, core.handler_id(name), policy)

    def policy_state(self, name: str) -> PolicyState:
        """The live figures of handler ``name``'s policies: ``concurrency_limit``, ``running``,
        ``waiting``, ``tokens``, ``breaker_state`` (``"closed"``, ``"open"``,
        ``"half-open"``; for ``http``, with one breaker per origin, the worst of them),
        ``breaker_failures``, ``breaker_open`` (breakers open or half-open: origins for
        ``http``), ``breaker_trips``, ``breaker_rejected``, ``rate_timeouts`` and the hedging
        counters (``hedges_started``, ``hedges_won``, ``hedges_cancelled``; ``hedges_skipped``:
        hedges not started for want of a free concurrency slot)."""
        core = self._core
        core.flush_here()
        return core.call(_policy.read_policy_state, core.handler_id(name))

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
        core.flush_here()
        st = core.call(LIB.portway_cancel_all)
        check(st)

    def stats(self) -> Stats:
        """A snapshot keyed by the ``portway_stats`` field names; ``completed`` maps status
        names (``"OK"``, ``"TIMEOUT"``, ...) to counts."""
        core = self._core
        core.flush_here()
        s = _lib.PortwayStats()
        st = core.call(LIB.portway_stats, byref(s))
        check(st)
        return stats_from(s)

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
        core.flush_here()
        hid = core.handler_id(name)
        out = PortwayHandlerStats()
        check(core.call(fn, hid, byref(out)))
        return handler_stats_from(name, out)

    def _text_call(self, fn_name: str, *args: int) -> str:
        fn = getattr(LIB, fn_name, None)
        if fn is None:
            raise PortwayError(f"this libportway has no {fn_name}")
        core = self._core
        core.flush_here()
        cap = 1 << 16
        for _ in range(8):
            buf = ctypes.create_string_buffer(cap)
            needed = c_size_t()
            st = core.call(fn, *args, buf, cap, byref(needed))
            if st == Status.BUFFER_TOO_SMALL or (st == _OK and needed.value > cap):
                cap = max(cap * 2, needed.value + 1)
                continue
            check(st)
            return buf.value.decode("utf-8", "replace")
        raise PortwayError(f"{fn_name}: output kept growing")

    def notify_fd(self) -> int:
        """The engine's notify descriptor (owned by the engine; do not read or close it)."""
        core = self._core
        fd = int(core.call(LIB.portway_notify_fd))
        if fd < 0:
            raise PortwayError(last_error())
        return fd
