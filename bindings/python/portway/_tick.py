"""Per-tick coalescing of ``Engine.ahttp``: the requests one asyncio loop starts in one tick
reach the engine in one ``portway_submit_batch`` call.

Why: a ``portway_submit`` per request cost more than everything else ``ahttp`` does (the
ctypes call, a GIL release, and on the engine's side a wake-up of a runtime thread, which on
a busy machine also takes the CPU from the loop). The first ``ahttp`` of a tick schedules
``TickQueue.flush`` with ``loop.call_soon``; the others of that tick only append to the queue.
Tasks woken by one batch of completions run in one tick, so their next requests go out
together.

When the loop's last poll delivered only a few completions (``TickQueue.direct``), the few
requests their tasks start go to the engine at once, one ``portway_submit`` each, as before
coalescing: a flush callback per tick would cost more than it saves.

Ownership: until the flush a queued request belongs to its ``TickQueue`` alone: it has no
token and is not in the core's pending table, so no poller and no ``close()`` can see it.
The flush (always on the loop's thread, like every ``add``):

- drops a request whose future is already done (its task was cancelled while it waited):
  it is never submitted, and its future was settled (cancelled) once, by asyncio;
- registers the rest under fresh tokens and submits them (``_Core.submit_batch``; a tick of
  at most ``_EACH_MAX`` requests with one ``portway_submit`` each, ``_Core.submit_each``, as
  a batch call costs more than that): each accepted entry gets its request id in ``rid``
  (what cancelling the task cancels);
- fails each refused request's future with the engine's error, as a direct submit would
  have raised it: a request refused for itself (bad payload) alone, and on an engine-wide
  refusal (``BusyError`` with every slot taken, ``ShutdownError``) that request and every
  later one of the batch, none of which was submitted;
- when the flush itself raises (the engine closed or forked: nothing submitted), every future
  of the batch gets that exception.

``Engine`` methods whose effect depends on what was submitted before them (``close``,
``cancel_all``, ``stats``, ...) first flush the queue of the loop running on the calling
thread, if any (``_Core.flush_here``): a request started before ``close()`` in the same tick
is drained, not refused.
"""

from __future__ import annotations

import asyncio
from array import array
from typing import Any, Protocol

from ._errors import PortwayError
from ._futures import _AsyncEntry

__all__ = ["TickQueue", "Submitter"]

# Ticks of at most this many requests are submitted one portway_submit each (measured: a
# portway_submit_batch call's Python-side set-up costs about as much as four single submits).
_EACH_MAX = 3


class Submitter(Protocol):
    """What a ``TickQueue`` asks of the engine core (``_core._Core``), and all it asks."""

    pending: dict[int, Any]

    def batch_tokens(self, n: int) -> int:
        """Reserves ``n`` consecutive tokens; returns the first."""

    def submit_batch(
        self, heads: int | list[int], datas: list[bytes], first: int, entries: list[Any]
    ) -> tuple[array[int], list[tuple[int, PortwayError]]]:
        """Registers and submits; returns the ids and the refused ``(index, error)``s."""

    def submit_each(
        self, heads: list[int], datas: list[bytes], first: int, entries: list[Any]
    ) -> tuple[array[int], list[tuple[int, PortwayError]]]:
        """``submit_batch`` with one native call per request (for a handful)."""


class TickQueue:
    """The requests of one engine started on one loop since its last flush, as columns: the
    first word of each ``portway_request`` (handler and timeout, ``_raw._head``), the payload
    and the ``_AsyncEntry``. ``Engine.ahttp`` appends to the three lists itself (inlined: the
    per-request path) after scheduling ``flush`` when ``entries`` was empty."""

    __slots__ = ("core", "heads", "datas", "entries", "direct")

    def __init__(self, core: Submitter) -> None:
        self.core = core
        # Set by the loop's reader after each poll: True when it delivered at most
        # ``_EACH_MAX`` completions, so that the few requests their tasks start next go to
        # the engine at once (a flush costs a loop callback: it pays only for several).
        self.direct = False
        self.heads: list[int] = []
        self.datas: list[bytes] = []
        self.entries: list[_AsyncEntry] = []

    def add(self, loop: asyncio.AbstractEventLoop, head: int, data: bytes, entry: _AsyncEntry) -> None:
        """Queues one request (what ``Engine.ahttp`` does inline)."""
        if not self.entries:
            loop.call_soon(self.flush)
        self.heads.append(head)
        self.datas.append(data)
        self.entries.append(entry)

    def flush(self) -> None:
        """Submits what is queued (see the module doc). Idempotent: a flush that finds the
        queue empty (it was flushed early by ``flush_here``) does nothing."""
        entries = self.entries
        if not entries:
            return
        heads, datas = self.heads, self.datas
        self.heads, self.datas, self.entries = [], [], []
        if any([e.fut.done() for e in entries]):  # cancelled while queued: never submitted
            live = [i for i, e in enumerate(entries) if not e.fut.done()]
            heads = [heads[i] for i in live]
            datas = [datas[i] for i in live]
            entries = [entries[i] for i in live]
            if not entries:
                return
        core = self.core
        n = len(entries)
        first = core.batch_tokens(n)
        # A batch call has a fixed cost of several single submits: a small tick goes one by one.
        submit = core.submit_each if n <= _EACH_MAX else core.submit_batch
        try:
            ids, failed = submit(heads, datas, first, entries)
        except BaseException as exc:  # nothing was submitted (submit_batch unregistered all)
            _fail_all(core, first, entries, exc)
            if isinstance(exc, Exception):
                return
            raise  # KeyboardInterrupt, SystemExit: the futures know, and so does the loop
        for entry, rid in zip(entries, ids):
            entry.rid = rid
        for i, err in failed:
            fut = entries[i].fut
            if not fut.done():
                fut.set_exception(err)


def _fail_all(core: Submitter, first: int, entries: list[_AsyncEntry], exc: BaseException) -> None:
    """Fails every future of a batch whose flush raised ``exc``; unregisters their tokens
    first (a no-op when ``submit_batch`` did), so that no completion settles them again."""
    pending = core.pending
    for i, entry in enumerate(entries):
        pending.pop(first + i, None)
        fut: asyncio.Future[Any] = entry.fut
        if not fut.done():
            fut.set_exception(exc)
