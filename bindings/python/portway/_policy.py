"""Per-handler policies: what ``Engine.set_policy`` sends to ``portway_handler_set_policy``
and how ``Engine.policy_state`` reads ``portway_handler_policy_state`` back.

Times are seconds (floats), as everywhere in this package; the C struct takes milliseconds.
Settings the library refuses are passed through, so it raises ``InvalidArgumentError``
rather than this binding ignoring them: hedging on a handler that is not safe to repeat, and
combinations only the library can judge (``min_concurrency`` without ``adaptive`` or above its
ceiling, an adaptive limit on a pipeline).
"""

from __future__ import annotations

import math
from ctypes import byref
from typing import Any, Literal, TypedDict

from ._errors import InvalidArgumentError, InvalidArgumentTypeError, PortwayError, check
from ._lib import LIB, PortwayPolicy, PortwayPolicyState

__all__ = ["PolicyState", "build_policy", "apply_policy", "read_policy_state"]

_U32_MAX = (1 << 32) - 1
_BREAKER_STATES: tuple[Literal["closed", "open", "half-open"], ...] = ("closed", "open", "half-open")


class PolicyState(TypedDict):
    """``Engine.policy_state(name)``: the live figures of a handler's policies."""

    concurrency_limit: int
    running: int
    waiting: int
    tokens: float
    breaker_state: Literal["closed", "open", "half-open"]
    breaker_failures: int
    breaker_open: int
    breaker_trips: int
    breaker_rejected: int
    rate_timeouts: int
    hedges_started: int
    hedges_won: int
    hedges_cancelled: int
    hedges_skipped: int


def _function(name: str) -> Any:
    fn = getattr(LIB, name, None)
    if fn is None:
        raise PortwayError(f"this libportway has no {name}")
    return fn


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentTypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= _U32_MAX:
        raise InvalidArgumentError(f"{name} must be between 0 and {_U32_MAX}, got {value!r}")
    return value


def _flag(name: str, value: bool) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgumentTypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _millis(name: str, seconds: float) -> int:
    """Seconds as whole milliseconds, rounded up so a positive time never becomes 0."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InvalidArgumentTypeError(f"{name} must be a number of seconds, got {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds < 0 or seconds * 1000 > _U32_MAX:
        raise InvalidArgumentError(f"{name} must be between 0 and {_U32_MAX / 1000} seconds, got {seconds!r}")
    return math.ceil(seconds * 1000)


def build_policy(
    *,
    max_concurrency: int,
    adaptive: bool,
    min_concurrency: int,
    rate_per_s: float,
    burst: int,
    hedge_after: float | None,
    hedge_budget: int | None,
    breaker_failures: int,
    hedge_after_p95: bool = False,
    breaker_cooldown: float | None,
) -> PortwayPolicy:
    """A ``portway_policy`` from ``portway_policy_default`` with the given fields set."""
    p = PortwayPolicy()
    check(_function("portway_policy_default")(byref(p)))
    p.max_concurrency = _count("max_concurrency", max_concurrency)
    p.adaptive = _flag("adaptive", adaptive)
    p.min_concurrency = _count("min_concurrency", min_concurrency)
    if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, (int, float)):
        raise InvalidArgumentTypeError(f"rate_per_s must be a number, got {type(rate_per_s).__name__}")
    p.rate_per_s = float(rate_per_s)  # range and NaN are checked by the library
    p.burst = _count("burst", burst)
    if hedge_after is not None:
        p.hedge_after_ms = _millis("hedge_after", hedge_after)
    p.hedge_after_p95 = _flag("hedge_after_p95", hedge_after_p95)
    if hedge_budget is not None:
        p.hedge_budget_percent = _count("hedge_budget", hedge_budget)
    p.breaker_failures = _count("breaker_failures", breaker_failures)
    if breaker_cooldown is not None:
        ms = _millis("breaker_cooldown", breaker_cooldown)
        if ms == 0:
            raise InvalidArgumentError("breaker_cooldown must be above 0 seconds")
        p.breaker_cooldown_ms = ms
    return p


def apply_policy(eng: Any, handler: int, policy: PortwayPolicy) -> None:
    """``portway_handler_set_policy``; raises the library's error."""
    check(_function("portway_handler_set_policy")(eng, handler, byref(policy)))


def read_policy_state(eng: Any, handler: int) -> PolicyState:
    """``portway_handler_policy_state`` as a ``PolicyState``."""
    out = PortwayPolicyState()
    check(_function("portway_handler_policy_state")(eng, handler, byref(out)))
    breaker = int(out.breaker_state)
    return PolicyState(
        concurrency_limit=int(out.concurrency_limit),
        running=int(out.running),
        waiting=int(out.waiting),
        tokens=float(out.tokens),
        breaker_state=_BREAKER_STATES[breaker] if breaker < len(_BREAKER_STATES) else "open",
        breaker_failures=int(out.breaker_failures),
        breaker_open=int(out.breaker_open),
        breaker_trips=int(out.breaker_trips),
        breaker_rejected=int(out.breaker_rejected),
        rate_timeouts=int(out.rate_timeouts),
        hedges_started=int(out.hedges_started),
        hedges_won=int(out.hedges_won),
        hedges_cancelled=int(out.hedges_cancelled),
        hedges_skipped=int(out.hedges_skipped),
    )
