"""Engine.set_policy / Engine.policy_state / UnavailableError (issue 16). No timing is
asserted: the rate is one token a day, or fast with generous deadlines."""

from __future__ import annotations

import threading
import time

import pytest

import portway

A_DAY = 1 / 86400


def test_rate_limit_waits_and_times_out_at_once(eng: portway.Engine) -> None:
    eng.set_policy("echo", rate_per_s=A_DAY, burst=1)
    assert eng.submit("echo", b"first").result(timeout=10).data == b"first"
    # The next token is a day away and the deadline a minute: it fails now.
    with pytest.raises(portway.TimeoutError, match="rate limit"):
        eng.submit("echo", b"late", timeout=60).result(timeout=10)
    waiting = eng.submit("echo", b"waits")
    state = eng.policy_state("echo")
    assert state["waiting"] == 1 and state["rate_timeouts"] == 1
    assert state["tokens"] < 1
    # Lifting the limit starts it.
    eng.set_policy("echo")
    assert waiting.result(timeout=10).data == b"waits"
    assert eng.policy_state("echo")["waiting"] == 0


def test_cancel_reaches_a_waiting_request(eng: portway.Engine) -> None:
    eng.set_policy("echo", rate_per_s=A_DAY)
    eng.submit("echo", b"1").result(timeout=10)
    fut = eng.submit("echo", b"2")
    assert eng.cancel(fut)
    with pytest.raises(portway.CancelledError):
        fut.result(timeout=10)


def test_breaker_opens_and_recovers(eng: portway.Engine) -> None:
    down = threading.Event()
    down.set()

    def flaky(payload: bytes) -> bytes:
        if down.is_set():
            raise RuntimeError("upstream down")
        return payload

    eng.register("flaky", flaky)
    eng.set_policy("flaky", breaker_failures=2, breaker_cooldown=0.05)
    for _ in range(2):
        with pytest.raises(portway.HandlerError):
            eng.submit("flaky", b"x").result(timeout=10)
    state = eng.policy_state("flaky")
    assert (state["breaker_state"], state["breaker_open"]) == ("open", 1)
    with pytest.raises(portway.UnavailableError, match="circuit breaker"):
        eng.submit("flaky", b"x").result(timeout=10)
    down.clear()
    time.sleep(0.1)  # past the cooldown: the next request is the trial
    assert eng.policy_state("flaky")["breaker_state"] == "half-open"
    assert eng.submit("flaky", b"ok").result(timeout=10).data == b"ok"
    state = eng.policy_state("flaky")
    assert (state["breaker_state"], state["breaker_trips"], state["breaker_rejected"]) == ("closed", 1, 1)
    assert state["breaker_open"] == 0


def test_the_adaptive_limit_is_set_and_its_bad_combinations_refused(eng: portway.Engine) -> None:
    eng.set_policy("echo", adaptive=True, min_concurrency=2, max_concurrency=50)
    assert eng.policy_state("echo")["concurrency_limit"] == 20  # where it starts
    assert eng.submit("echo", b"hi").result(timeout=10).data == b"hi"
    eng.set_policy("echo", adaptive=True, max_concurrency=8)
    assert eng.policy_state("echo")["concurrency_limit"] == 8
    with pytest.raises(portway.InvalidArgumentError, match="set adaptive too"):
        eng.set_policy("echo", min_concurrency=4)
    with pytest.raises(portway.InvalidArgumentError, match="ceiling 3"):
        eng.set_policy("echo", adaptive=True, min_concurrency=4, max_concurrency=3)
    with pytest.raises(portway.InvalidArgumentTypeError):
        eng.set_policy("echo", adaptive=True, min_concurrency=2.5)  # type: ignore[arg-type]
    with pytest.raises(portway.InvalidArgumentError):
        eng.set_policy("echo", adaptive=True, min_concurrency=-1)
    assert eng.policy_state("echo")["concurrency_limit"] == 8, "refusals change nothing"
    eng.set_policy("echo")
    assert eng.policy_state("echo")["concurrency_limit"] == 0


def test_unsupported_and_invalid_settings_are_refused(eng: portway.Engine) -> None:
    with pytest.raises(portway.InvalidArgumentError, match="never hedged"):
        eng.set_policy("echo", hedge_after=0.02)
    eng.register("plain", lambda p: p)
    with pytest.raises(portway.InvalidArgumentError, match="not registered as idempotent"):
        eng.set_policy("plain", hedge_after=0.02, hedge_after_p95=True)
    with pytest.raises(portway.InvalidArgumentError, match="at most 100"):
        eng.set_policy("http", hedge_after=0.02, hedge_budget=101)
    with pytest.raises(portway.InvalidArgumentError, match="rate_per_s"):
        eng.set_policy("echo", rate_per_s=float("nan"))
    with pytest.raises(portway.InvalidArgumentError):
        eng.set_policy("echo", breaker_failures=1, breaker_cooldown=0)
    with pytest.raises(portway.InvalidArgumentTypeError):
        eng.set_policy("echo", max_concurrency="4")  # type: ignore[arg-type]
    with pytest.raises(portway.UnknownHandlerError):
        eng.set_policy("missing", max_concurrency=1)
    eng.set_policy("echo", max_concurrency=4)
    assert eng.policy_state("echo")["concurrency_limit"] == 4
    eng.set_concurrency("echo", 2)
    assert eng.policy_state("echo")["concurrency_limit"] == 2


def test_a_hedge_wins_for_an_idempotent_handler(eng: portway.Engine) -> None:
    release = threading.Event()
    calls = []

    def lookup(payload: bytes) -> bytes:
        calls.append(payload)
        if len(calls) == 1:  # the first call is slow: it waits for the test
            release.wait(10)
            return b"slow"
        return b"fast"

    eng.register("lookup", lookup, idempotent=True)
    eng.set_policy("lookup", hedge_after=0.02, hedge_budget=100)
    c = eng.submit("lookup", b"k").result(timeout=10)
    release.set()
    assert (c.data, c.meta) == (b"fast", [("portway-hedge", "won")])
    state = eng.policy_state("lookup")
    assert (state["hedges_started"], state["hedges_won"], state["hedges_cancelled"]) == (1, 1, 1)
    assert state["hedges_skipped"] == 0  # no concurrency limit: a hedge always has a slot
    with pytest.raises(portway.InvalidArgumentTypeError):
        eng.register("bad", lookup, idempotent=1)  # type: ignore[arg-type]


def _wait_cancelled(call: portway.Call) -> bool:
    """Polls ``call.cancelled`` for at most 10 s; what it was at the end."""
    give_up = time.monotonic() + 10
    while not call.cancelled and time.monotonic() < give_up:
        time.sleep(0.001)
    return call.cancelled


def test_the_losing_call_of_a_hedge_sees_its_cancellation(eng: portway.Engine) -> None:
    calls: list[portway.Call] = []
    loser_saw = threading.Event()

    def lookup(payload: bytes, call: portway.Call) -> bytes:
        calls.append(call)
        if len(calls) == 1:  # the first call is slow until it sees it lost
            if _wait_cancelled(call):
                loser_saw.set()
            return b"slow"
        return b"fast"

    eng.register("lookup", lookup, idempotent=True, with_call=True)
    eng.set_policy("lookup", hedge_after=0.02, hedge_budget=100)
    c = eng.submit("lookup", b"k").result(timeout=10)
    assert (c.data, c.meta) == (b"fast", [("portway-hedge", "won")])
    assert loser_saw.wait(10), "the losing call never saw its cancellation"
    # Once its handler returned, a call is over: cancelled, and the engine's call untouched.
    assert calls[1].cancelled and "cancelled=True" in repr(calls[1])
    with pytest.raises(portway.InvalidArgumentTypeError, match="with_call must be a bool"):
        eng.register("bad", lookup, with_call=1)  # type: ignore[call-overload]


def test_a_cancelled_or_timed_out_call_sees_it(eng: portway.Engine) -> None:
    saw: list[bool] = []
    started = threading.Event()

    def stuck(payload: bytes, call: portway.Call) -> bytes:
        started.set()
        saw.append(_wait_cancelled(call))
        return b""

    eng.register("stuck", stuck, with_call=True)
    f = eng.submit("stuck", b"")
    assert started.wait(10)
    assert f.cancel()
    with pytest.raises(portway.TimeoutError):
        eng.submit("stuck", b"", timeout=0.05).result(timeout=10)
    give_up = time.monotonic() + 10
    while len(saw) < 2 and time.monotonic() < give_up:
        time.sleep(0.001)
    assert saw == [True, True]
    # A handler taking the payload only still works as before.
    eng.register("plain", lambda payload: payload[::-1])
    assert eng.submit("plain", b"abc").result(timeout=10).data == b"cba"
