"""Typed shapes of the dictionaries the engine returns (``stats()``, ``inflight()``,
``handler_stats()``), so that a misspelt key fails type checking instead of at run time."""

from __future__ import annotations

from typing import Literal, TypedDict

__all__ = ["Stats", "InflightRequest", "Inflight", "Latency", "HandlerStats"]


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
