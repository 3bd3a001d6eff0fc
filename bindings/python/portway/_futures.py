"""Completion values and the futures that carry them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from ._errors import PortwayError, Status, error_for

if TYPE_CHECKING:
    from ._engine import _Core

__all__ = ["Completion", "Future"]

T = TypeVar("T")


class Completion:
    """The one completion of an accepted request, copied out of the engine.

    ``data`` is the response (or the error message when ``status`` is not OK), ``code`` the
    handler-defined code (the HTTP status for "http"), ``meta`` the handler-defined pairs.
    ``user_data`` is the token the binding used to route the completion to its future.
    """

    __slots__ = ("id", "user_data", "status", "code", "data", "meta", "queued_ns", "run_ns")

    def __init__(
        self,
        id: int,
        user_data: int,
        status: int,
        code: int,
        data: bytes,
        meta: list[tuple[str, str]],
        queued_ns: int,
        run_ns: int,
    ) -> None:
        self.id = id
        self.user_data = user_data
        self.status = status
        self.code = code
        self.data = data
        self.meta = meta
        self.queued_ns = queued_ns
        self.run_ns = run_ns

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    def error(self) -> PortwayError:
        """The exception this completion's status maps to (for a non-OK status)."""
        exc = error_for(self.status, self.data.decode("utf-8", "replace"))
        exc.completion = self  # type: ignore[attr-defined]
        return exc

    def __repr__(self) -> str:
        return (
            f"Completion(id={self.id}, status={Status(self.status).name if self.status in Status._value2member_map_ else self.status}, "
            f"code={self.code}, data={self.data[:64]!r}, meta={self.meta[:4]!r})"
        )


class Future(concurrent.futures.Future[T], Generic[T]):
    """A ``concurrent.futures.Future`` for one request.

    ``cancel()`` cancels the native request. ``result()`` first drains ready completions on
    the calling thread (no thread hop for requests that finish inline, such as "echo"), then
    waits for the engine's delivery thread; Ctrl-C interrupts the wait.
    """

    _core: _Core
    _id: int
    _transform: Callable[[Completion], Any] | None
    _demanded: bool

    def __init__(self, core: _Core, transform: Callable[[Completion], Any] | None = None) -> None:
        # concurrent.futures.Future.__init__, inlined (this is the per-request hot path)
        self._condition = threading.Condition()
        self._state = "PENDING"
        self._result = None
        self._exception = None
        self._done_callbacks: list[Any] = []
        self._core = core
        self._id = 0
        self._transform = transform
        self._demanded = False
        # concurrent.futures.wait()/as_completed() register waiters here without calling
        # result(): that, too, asks the delivery thread to poll for this future.
        waiters = _DemandingList()
        waiters._fut = self
        self._waiters = waiters

    @property
    def request_id(self) -> int:
        """The engine's id for the request (0 if it was never accepted)."""
        return self._id

    def cancel(self) -> bool:
        if self.done():
            return False
        if self._id and not self._core.cancel_id(self._id):
            return False  # already completed: the completion is on its way
        cancelled = super().cancel()
        if self._demanded:
            self._core.drop_demand(self)
        return cancelled

    def result(self, timeout: float | None = None) -> T:
        if not self.done():
            self._core.help_poll()
            if not self.done():
                self._core.add_demand(self)
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self.done():
            self._core.help_poll()
            if not self.done():
                self._core.add_demand(self)
        return super().exception(timeout)

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[T]], object]) -> None:
        super().add_done_callback(fn)
        if not self.done():
            self._core.add_demand(self)

    def _resolve(self, c: Completion) -> None:
        try:
            status = c.status
            if status == Status.OK:
                tr = self._transform
                value: Any
                try:
                    value = tr(c) if tr is not None else c
                except Exception as exc:  # a transform (e.g. HTTP parsing) failed
                    self.set_exception(exc)
                    return
                self.set_result(value)
            elif status == Status.CANCELLED:
                concurrent.futures.Future.cancel(self)
            else:
                self.set_exception(c.error())
        except concurrent.futures.InvalidStateError:
            pass  # cancelled by the user meanwhile
        if self._demanded:
            self._core.drop_demand(self)

    def _fail(self, exc: BaseException) -> None:
        try:
            self.set_exception(exc)
        except concurrent.futures.InvalidStateError:
            pass
        if self._demanded:
            self._core.drop_demand(self)


class _DemandingList(list[Any]):
    """``Future._waiters``: an append (by ``concurrent.futures.wait``) registers demand."""

    __slots__ = ("_fut",)
    _fut: Future[Any]

    def append(self, item: Any) -> None:
        super().append(item)
        fut = self._fut
        if not fut.done():
            # called under fut._condition; add_demand takes only the engine's demand lock
            fut._core.add_demand(fut)


class _AsyncEntry:
    """Routes a completion to an asyncio future on its loop."""

    __slots__ = ("loop", "fut", "transform")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fut: asyncio.Future[Any],
        transform: Callable[[Completion], Any] | None,
    ) -> None:
        self.loop = loop
        self.fut = fut
        self.transform = transform

    def resolve(self, c: Completion) -> None:
        """Runs on the entry's loop thread."""
        fut = self.fut
        if fut.done():
            return
        status = c.status
        if status == Status.OK:
            tr = self.transform
            try:
                value = tr(c) if tr is not None else c
            except Exception as exc:
                fut.set_exception(exc)
                return
            fut.set_result(value)
        elif status == Status.CANCELLED:
            fut.cancel()
        else:
            fut.set_exception(c.error())

    def fail(self, exc: BaseException) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)


def _resolve_async_batch(batch: list[tuple[_AsyncEntry, Completion]]) -> None:
    for entry, c in batch:
        entry.resolve(c)
