"""Seeing inside from Python: Prometheus text, handler stats, the in-flight dump, logging."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

import portway


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_exposition_parses_and_agrees_with_stats() -> None:
    with portway.Engine() as eng:
        for f in eng.submit_many("echo", [b"x"] * 40):
            f.result()
        for f in eng.submit_many("sleep", [b"1"] * 5):
            f.result()
        text = eng.metrics_text()
        s = samples(text)
        stats = eng.stats()
        assert s[("portway_requests_submitted_total", (("handler", "echo"),))] == 40
        assert s[("portway_requests_completed_total", (("handler", "sleep"), ("status", "PORTWAY_OK")))] == 5
        assert s[("portway_engine_accepted_total", ())] == stats["accepted"]
        assert s[("portway_engine_completed_total", (("status", "PORTWAY_OK"),))] == stats["completed"]["OK"]
        # Histogram counts equal completions.
        assert s[("portway_run_seconds_count", (("handler", "echo"),))] == 40
        assert s[("portway_queue_wait_seconds_bucket", (("handler", "sleep"), ("le", "+Inf")))] == 5


def test_handler_stats_report_latency() -> None:
    with portway.Engine() as eng:
        for f in eng.submit_many("sleep", [b"20"] * 3):
            f.result()
        st = eng.handler_stats("sleep")
        assert st["submitted"] == 3 and st["completed"] == {"OK": 3}
        assert st["run"]["count"] == 3 and st["run"]["p50_ns"] >= 19_000_000
        with pytest.raises(portway.PortwayError):
            eng.handler_stats("no-such-handler")


def test_inflight_shows_a_stuck_request_then_nothing() -> None:
    release = threading.Event()

    def stuck(payload: bytes) -> bytes:
        release.wait(10)
        return payload

    with portway.Engine() as eng:
        eng.register("stuck", stuck)
        fut = eng.submit("stuck", b"x")
        deadline = time.monotonic() + 5
        while True:
            dump = eng.inflight(limit=10)
            if dump["requests"] and dump["requests"][0]["state"] == "running" or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        assert dump["total"] == 1
        first = dump["requests"][0]
        assert first["handler"] == "stuck" and first["state"] == "running"
        time.sleep(0.03)
        assert eng.inflight()["requests"][0]["age_ms"] >= first["age_ms"] + 25
        release.set()
        fut.result()
        assert eng.inflight() == {"total": 0, "requests": []}


def test_engine_events_reach_the_portway_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portway")
    eng = portway.Engine(log_level=logging.INFO)
    eng.submit("echo", b"x").result()
    eng.close()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "portway"]
    assert any(lvl == logging.INFO and m.startswith("engine started") for lvl, m in messages), messages
    assert any(lvl == logging.INFO and m.startswith("shutdown") for lvl, m in messages), messages


def test_logging_is_off_unless_asked_for(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="portway")
    with portway.Engine() as eng:
        eng.submit("echo", b"x").result()
    assert not [r for r in caplog.records if r.name == "portway"]
