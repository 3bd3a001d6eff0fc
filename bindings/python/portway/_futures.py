"""The futures that carry completions: ``Future`` (``concurrent.futures``) and the routing of a
completion to an asyncio future.

The engine core talks to this module through ``settle`` (a polled batch of completions),
``fail`` (an entry that will get no completion) and ``Future(core, token, ...)``; a future
talks back through the five methods of ``CoreLink``. Neither reads the other's fields.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from concurrent.futures import _base
from typing import Any, Callable, Generic, Protocol, TypeVar, Union

from ._completion import Completion
from ._errors import Status

__all__ = ["Completion", "Future", "CoreLink", "AsyncTarget", "settle", "fail", "cancel_with", "set_request_id"]

T = TypeVar("T")

_STATUS_CANCELLED = int(Status.CANCELLED)


class CoreLink(Protocol):
    """What a future asks of the engine core (``_core._Core``), and all it asks."""

    def help_poll(self) -> None:
        """Drains the completions that are ready, on the calling thread, without waiting."""

    def add_demand(self) -> None:
        """One more future is waited on without polling: keep the delivery thread polling."""

    def drop_demand(self) -> None:
        """Undoes one ``add_demand`` (the future was settled)."""

    def cancel_id(self, rid: int) -> bool:
        """Cancels request ``rid``; True if it was still in flight."""

    def claim(self, token: int, entry: object) -> bool:
        """Unregisters ``entry`` from ``token``; True if it was still registered there (no
        poller took it), so the caller alone may settle it."""


class _LazyCondition:
    """``Future._condition``, made on first use: most futures are resolved and read without
    anyone ever waiting on them, and a ``threading.Condition`` costs more than the rest of
    the future. A non-data descriptor: once made, the instance attribute shadows it."""

    def __get__(self, fut: Future[Any] | None, owner: type | None = None) -> Any:
        if fut is None:
            return self
        fut._slow = True  # before publishing: a resolver that misses the condition then
        # finishes before the waiter looks at the state (see Future)
        cond: threading.Condition = fut.__dict__.setdefault("_condition", threading.Condition())
        return cond


class _LazyWaiters:
    """``Future._waiters``: made on first use (by ``concurrent.futures.wait``/``as_completed``,
    always under the condition); an append registers demand with the delivery thread."""

    def __get__(self, fut: Future[Any] | None, owner: type | None = None) -> Any:
        if fut is None:
            return self
        waiters = _DemandingList()
        waiters._fut = fut
        return fut.__dict__.setdefault("_waiters", waiters)


class _LazyList:
    """``Future._done_callbacks``: made on first use (always under the condition)."""

    def __get__(self, fut: Future[Any] | None, owner: type | None = None) -> Any:
        if fut is None:
            return self
        return fut.__dict__.setdefault("_done_callbacks", [])


# The base class's state names (module-level strings of concurrent.futures._base). This module
# only ever stores these very objects in ``_state``, so identity tests are exact.
_PENDING: str = _base.PENDING
_RUNNING: str = _base.RUNNING
_CANCELLED: str = _base.CANCELLED
_CANCELLED_AND_NOTIFIED: str = _base.CANCELLED_AND_NOTIFIED
_FINISHED: str = _base.FINISHED


class Future(concurrent.futures.Future[T], Generic[T]):
    """A ``concurrent.futures.Future`` for one request.

    ``cancel()`` cancels the native request. ``result()`` first drains ready completions on
    the calling thread (no thread hop for requests that finish inline, such as "echo"), then
    waits for the engine's delivery thread; Ctrl-C interrupts the wait.

    Cheaper than the base class, with the same behaviour: the base ``__init__`` is not called.
    The base fields are class-level defaults, and ``_condition``, ``_waiters`` and
    ``_done_callbacks`` are made on first use, so a future that is resolved before anyone
    waits on it never makes a ``threading.Condition``. The protocol that keeps this safe:

    - Exactly one thread settles a future: the one that popped it from the core's pending
      table (a poller holding its completion, ``close()``), or the one that made it if it was
      never registered (a refused submit). It writes ``_result``/``_exception``, then ``_state``,
      then, only if ``_slow`` is set, wakes waiters under the condition and runs callbacks.
      Cancellation by ``cancel()`` (once the native cancel succeeded) and the CANCELLED
      completion race to settle as cancelled; a one-shot claim in ``__dict__`` picks one.
    - Whoever needs the condition (a waiter, ``wait``/``as_completed``, a callback) gets it
      through ``_LazyCondition``, which sets ``_slow`` *before* publishing it, and reads
      ``_state`` only under it. So a settler that saw no condition finished before that
      reader looked, and a settler that saw one wakes it (under the GIL, these reads and
      writes are sequentially consistent).
    - ``set_running_or_notify_cancel`` moves PENDING to RUNNING with ``dict.setdefault`` on
      ``_state``, which never overwrites a settled state.
    """

    # Slots for what every future sets (``_id`` is written by the submitting code, before the
    # future is returned); the rest are class-level defaults, overridden per instance when set.
    # ``_owner`` is the Engine: a future keeps its engine alive, so that an engine nobody else
    # references is not finalized (which cancels) while someone can still wait on its work.
    __slots__ = ("_core", "_token", "_id", "_owner")

    # The base class's fields, as class-level defaults (instance values shadow them).
    _state = _PENDING
    _result = None
    _exception = None
    _condition = _LazyCondition()
    _waiters = _LazyWaiters()
    _done_callbacks = _LazyList()

    _transform: Callable[[Completion], Any] | None = None
    _demanded: bool = False  # counted in the engine's demand (see _add_demand)
    _slow: bool = False  # a condition was made or demand registered: settling must wake

    _core: CoreLink
    _token: int
    _id: int
    _owner: object | None

    def __init__(
        self,
        core: CoreLink,
        token: int = 0,
        transform: Callable[[Completion], Any] | None = None,
        owner: object | None = None,
    ) -> None:
        self._core = core
        self._token = token
        self._owner = owner
        if transform is not None:
            self._transform = transform

    @property
    def request_id(self) -> int:
        """The engine's id for the request (0 if it was never accepted)."""
        return getattr(self, "_id", 0)

    # ------------------------------------------------------------ reading

    def done(self) -> bool:
        st = self._state
        return st is _FINISHED or st is _CANCELLED_AND_NOTIFIED or st is _CANCELLED

    def cancelled(self) -> bool:
        st = self._state
        return st is _CANCELLED_AND_NOTIFIED or st is _CANCELLED

    def running(self) -> bool:
        return self._state is _RUNNING

    def result(self, timeout: float | None = None) -> T:
        st = self._state
        if st is _FINISHED:
            if self._exception is None:
                return self._result  # type: ignore[return-value]
        elif st is _PENDING or st is _RUNNING:
            core = self._core
            core.help_poll()  # completions that are ready, on this thread: no hand-off
            st = self._state
            if st is _FINISHED:
                if self._exception is None:
                    return self._result  # type: ignore[return-value]
            elif st is _PENDING or st is _RUNNING:
                _add_demand(self)  # ask the delivery thread, then wait
        try:
            return super().result(timeout)
        except concurrent.futures.CancelledError:
            raise self._cancelled_error() from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state is _FINISHED:
            return self._exception
        self._prepare_wait()
        if self._state is _FINISHED:
            return self._exception
        try:
            return super().exception(timeout)
        except concurrent.futures.CancelledError:
            raise self._cancelled_error() from None

    def _cancelled_error(self) -> concurrent.futures.CancelledError:
        """The ``CancelledError`` to raise, saying why (the base class raises one without)."""
        reason = self.__dict__.get("_cancel_reason") or "cancelled"
        return concurrent.futures.CancelledError(f"request {self.request_id}: {reason}")

    def _prepare_wait(self) -> None:
        st = self._state
        if st is _PENDING or st is _RUNNING:
            core = self._core
            core.help_poll()
            st = self._state
            if st is _PENDING or st is _RUNNING:
                _add_demand(self)

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[T]], object]) -> None:
        with self._condition:
            st = self._state
            if not (st is _FINISHED or st is _CANCELLED_AND_NOTIFIED or st is _CANCELLED):
                self._done_callbacks.append(fn)
                added = True
            else:
                added = False
        if added:
            _add_demand(self)  # deliver it even if nobody calls result()
            return
        try:
            fn(self)
        except Exception:
            _base.LOGGER.exception("exception calling callback for %r", self)

    # ------------------------------------------------------------ cancelling

    def cancel(self) -> bool:
        """Cancels the native request; True if it was still in flight (or already cancelled).
        ``result()`` then raises ``CancelledError("... cancelled by Future.cancel()")``."""
        return self._cancel("cancelled by Future.cancel()")

    def _cancel(self, reason: str) -> bool:
        st = self._state
        if st is _CANCELLED or st is _CANCELLED_AND_NOTIFIED:
            return True
        if st is not _PENDING:
            return False
        rid = getattr(self, "_id", 0)
        if not rid or not self._core.cancel_id(rid):
            return False  # already completed: the completion is on its way
        self._set_cancelled(reason)  # its completion will say CANCELLED; whichever comes first
        return True

    def set_running_or_notify_cancel(self) -> bool:
        d = self.__dict__
        if d.get("_state") is _RUNNING:
            raise RuntimeError("Future in unexpected state")
        st = d.setdefault("_state", _RUNNING)
        if st is _RUNNING:
            return True
        if st is _CANCELLED or st is _CANCELLED_AND_NOTIFIED:
            return False
        raise RuntimeError("Future in unexpected state")

    # ------------------------------------------------------------ settling

    def set_result(self, result: T) -> None:
        """For completeness (the engine settles its futures itself): claims the future, so
        that its completion, when it comes, is dropped."""
        self._claim_for_user()
        self._result = result
        self._state = _FINISHED
        if self._slow:
            self._wake()

    def set_exception(self, exception: BaseException | None) -> None:
        self._claim_for_user()
        self._exception = exception
        self._state = _FINISHED
        if self._slow:
            self._wake()

    def _claim_for_user(self) -> None:
        st = self._state
        if not (st is _PENDING or st is _RUNNING) or (
            self._token and not self._core.claim(self._token, self)
        ):
            raise concurrent.futures.InvalidStateError(f"{st}: {self!r}")

    def _resolve(self, c: Completion) -> None:
        """Settles from a completion; the caller popped this future from ``pending``."""
        status = c.status
        if status == 0:
            tr = self._transform
            if tr is not None:
                try:
                    value = tr(c)
                except Exception as exc:  # a transform (e.g. HTTP parsing) failed
                    self._exception = exc
                    self._state = _FINISHED
                    if self._slow:
                        self._wake()
                    return
                self._result = value
            else:
                self._result = c  # type: ignore[assignment]
        elif status == _STATUS_CANCELLED:
            self._set_cancelled(c.data.decode("utf-8", "replace"))
            return
        else:
            self._exception = c.error()
        st = self._state
        if st is _PENDING or st is _RUNNING:
            self._state = _FINISHED
            if self._slow:
                self._wake()

    def _fail(self, exc: BaseException) -> None:
        """Settles with ``exc``; the caller popped this future, or it was never registered."""
        st = self._state
        if st is _PENDING or st is _RUNNING:
            self._exception = exc
            self._state = _FINISHED
            if self._slow:
                self._wake()

    def _set_cancelled(self, reason: str) -> None:
        st = self._state
        if not (st is _PENDING or st is _RUNNING):
            return
        mark: list[Any] = []
        if self.__dict__.setdefault("_cancel_claim", mark) is not mark:
            return  # the other side (cancel() or the CANCELLED completion) got here first
        self.__dict__["_cancel_reason"] = reason
        # CANCELLED_AND_NOTIFIED, not CANCELLED: no executor will call
        # set_running_or_notify_cancel, and wait()/as_completed count only the former as done.
        self._state = _CANCELLED_AND_NOTIFIED
        if self._slow:
            self._wake()

    def _wake(self) -> None:
        """The slow part of settling: somebody made the condition or registered demand."""
        d = self.__dict__
        cond = d.get("_condition")
        if cond is not None:
            with cond:
                waiters = d.get("_waiters")
                if waiters:
                    st = self._state
                    for w in waiters:
                        if st is not _FINISHED:
                            w.add_cancelled(self)
                        elif self._exception is None:
                            w.add_result(self)
                        else:
                            w.add_exception(self)
                cond.notify_all()
            if d.get("_done_callbacks"):
                self._invoke_callbacks()  # type: ignore[attr-defined]
        if self._demanded and d.pop("_demanded", False):  # _drop_demand, inline
            self._core.drop_demand()


# Serializes the waiters that set a future's ``_demanded`` flag (two threads may wait on one
# future). Whoever drops the demand pops the flag from the instance ``__dict__`` instead, which
# is atomic under the GIL and takes no lock: exactly one pop finds it.
_demand_lock = threading.Lock()


def _add_demand(fut: Future[Any]) -> None:
    """``fut`` will be waited on without polling: the core's delivery thread polls until it is
    settled. Sets ``_slow`` first, so that the settler runs ``_wake``, which drops the demand."""
    fut._slow = True
    with _demand_lock:
        if fut._demanded:
            return
        fut._demanded = True
    fut._core.add_demand()
    if fut.done():  # settled before the flag was visible to the settler
        _drop_demand(fut)


def _drop_demand(fut: Future[Any]) -> None:
    """Undoes ``_add_demand`` once, whoever calls it first (settler or waiter)."""
    if fut.__dict__.pop("_demanded", False):
        fut._core.drop_demand()


class _DemandingList(list[Any]):
    """``Future._waiters``: an append (by ``concurrent.futures.wait``) registers demand."""

    __slots__ = ("_fut",)
    _fut: Future[Any]

    def append(self, item: Any) -> None:
        super().append(item)
        fut = self._fut
        if not fut.done():
            # called under fut._condition; add_demand takes only the engine's demand lock
            _add_demand(fut)


class _AsyncEntry:
    """Routes a completion through a transform (e.g. HTTP parsing) to an asyncio future.
    ``rid`` is the request's id once submitted (0 before: see ``_tick``)."""

    __slots__ = ("fut", "transform", "loop", "rid")

    def __init__(
        self,
        fut: asyncio.Future[Any],
        transform: Callable[[Completion], Any],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.fut = fut
        self.transform = transform
        self.loop = fut.get_loop() if loop is None else loop  # the future's loop
        self.rid = 0

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.loop


AsyncTarget = Union["asyncio.Future[Any]", _AsyncEntry]


def _resolve_async(entry: AsyncTarget, c: Completion) -> None:
    """Settles an asyncio future (or a transforming entry) from a completion; runs on the
    future's loop thread."""
    fut: asyncio.Future[Any]
    tr: Callable[[Completion], Any] | None
    if isinstance(entry, _AsyncEntry):
        fut = entry.fut
        tr = entry.transform
    else:
        fut = entry
        tr = None
    if fut.done():
        return
    status = c.status
    if status == 0:
        if tr is None:
            fut.set_result(c)
            return
        try:
            value = tr(c)
        except Exception as exc:
            fut.set_exception(exc)
            return
        fut.set_result(value)
    elif status == _STATUS_CANCELLED:
        fut.cancel(c.data.decode("utf-8", "replace"))  # the message says why
    else:
        fut.set_exception(c.error())


def _fail_async(entry: AsyncTarget, exc: BaseException) -> None:
    fut = entry.fut if isinstance(entry, _AsyncEntry) else entry
    if not fut.done():
        fut.set_exception(exc)


def _resolve_async_batch(batch: list[tuple[AsyncTarget, Completion]]) -> None:
    for entry, c in batch:
        _resolve_async(entry, c)


_AIO_FUTURE = asyncio.Future


def settle(
    entries: list[Any], comps: list[Completion], here: asyncio.AbstractEventLoop | None, cancel_reason: str
) -> None:
    """Settles ``entries[i]`` (a ``Future``, an asyncio future or an ``_AsyncEntry``, popped from
    the pending table by the caller) with ``comps[i]``. Runs on the thread that polled: inline
    for OK completions of plain futures and of asyncio futures of ``here`` (the loop running on
    this thread, if any); others of asyncio futures go to their loop in one callback per loop.
    ``cancel_reason`` replaces the engine's "cancelled by shutdown" when a close() said why."""
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
            # an OK completion for ahttp() awaited on this loop (as _deliver() would)
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
        _deliver(rest, here, cancel_reason)


def _deliver(items: list[tuple[Any, Completion]], here: asyncio.AbstractEventLoop | None, cancel_reason: str) -> None:
    """``settle``'s general case: errors, cancellations, transforms, other loops."""
    remote: dict[asyncio.AbstractEventLoop, list[tuple[AsyncTarget, Completion]]] | None = None
    for entry, c in items:
        if c.status == _STATUS_CANCELLED and cancel_reason and c.data == b"cancelled by shutdown":
            c.data = cancel_reason.encode()  # say which close() it was
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


def fail(entry: Future[Any] | AsyncTarget, exc: BaseException) -> None:
    """Settles ``entry`` with ``exc``: it was never accepted, or the engine closed without its
    completion. The caller popped it from the pending table (or never registered it)."""
    if isinstance(entry, Future):
        entry._fail(exc)
    else:
        try:
            entry.get_loop().call_soon_threadsafe(_fail_async, entry, exc)
        except RuntimeError:
            pass  # the loop is closed: nobody can await it any more


def cancel_with(fut: Future[Any], reason: str) -> bool:
    """``fut.cancel()`` whose ``CancelledError`` says ``reason``."""
    return fut._cancel(reason)


# The ``_id`` slot's setter: writes a request id without a Python-level call (``map()`` over
# the ids of a batch). ``Engine.submit`` writes the slot directly, as documented on Future.
set_request_id: Callable[[Future[Any], int], None] = Future.__dict__["_id"].__set__
