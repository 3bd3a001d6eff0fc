"""Typed shapes of the dictionaries the engine returns (``stats()``, ``inflight()``,
``handler_stats()``), so that a misspelt key fails type checking instead of at run time, and
their conversion from the C records."""

from __future__ import annotations

from typing import Literal, TypedDict

from ._errors import status_label
from ._lib import PortwayHandlerStats, PortwayLatency, PortwayStats

__all__ = ["Stats", "InflightRequest", "Inflight", "Latency", "HandlerStats", "stats_from", "handler_stats_from"]


class Stats(TypedDict):
    """``Engine.stats()``: the ``portway_stats`` counters. ``completed`` maps status names
    (``"OK"``, ``"TIMEOUT"``, ...; a number as text for a slot without a name) to counts."""

    submitted: int
    accepted: int
    rejected_busy: int
    rejected_shutdown: int
    rejected_invalid: int
    completed: dict[str, int]
    in_flight: int
    queued: int
    running: int
    ready: int
    unreleased: int
    pool_workers: int


class InflightRequest(TypedDict):
    """One request of ``Engine.inflight()``."""

    id: int
    user_data: int
    handler: str
    stage: int
    stage_handler: str
    state: Literal["queued", "running", "ready", "unreleased"]
    age_ms: float


class Inflight(TypedDict):
    """``Engine.inflight()``: how many requests are in flight and the oldest ``limit``."""

    total: int
    requests: list[InflightRequest]


class Latency(TypedDict):
    """A latency summary in nanoseconds (``struct portway_latency``)."""

    p50_ns: int
    p90_ns: int
    p99_ns: int
    max_ns: int
    sum_ns: int
    count: int


class HandlerStats(TypedDict):
    """``Engine.handler_stats(name)``: ``completed`` has the nonzero counts only."""

    id: int
    name: str
    submitted: int
    completed: dict[str, int]
    queue_wait: Latency
    run: Latency


def stats_from(s: PortwayStats) -> Stats:
    """``Engine.stats()`` from a filled ``portway_stats``: every field of the C record, by name
    (so a field added to the record appears here without a change)."""
    out: dict[str, object] = {}
    for field in PortwayStats._fields_:
        name = field[0]
        if name == "completed":
            out[name] = {status_label(i): int(v) for i, v in enumerate(s.completed)}
        else:
            out[name] = int(getattr(s, name))
    return out  # type: ignore[return-value]  # every Stats key, from the C struct's fields


def _latency(lat: PortwayLatency) -> Latency:
    return Latency(
        p50_ns=int(lat.p50_ns),
        p90_ns=int(lat.p90_ns),
        p99_ns=int(lat.p99_ns),
        max_ns=int(lat.max_ns),
        sum_ns=int(lat.sum_ns),
        count=int(lat.count),
    )


def handler_stats_from(name: str, out: PortwayHandlerStats) -> HandlerStats:
    """``Engine.handler_stats(name)`` from a filled ``portway_handler_stats``; ``completed``
    keeps the nonzero counts only."""
    return HandlerStats(
        id=int(out.id),
        name=name,
        submitted=int(out.submitted),
        completed={status_label(i): int(n) for i, n in enumerate(out.completed) if n},
        queue_wait=_latency(out.queue_wait),
        run=_latency(out.run),
    )
