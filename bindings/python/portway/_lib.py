"""Loads libportway and declares ``argtypes``/``restype`` for every C function.

This is the only module that loads the shared library (``_raw`` adds argtypes-less copies of
the hot-path functions). Its ``Structure`` classes are the binding's one copy of each C record:
``tests/test_layout.py`` checks every field against ``include/portway.h`` (offset, size,
integer kind), and a test fails when a function in the header has no entry in ``_SIGNATURES``.

Resolution order for the library: the ``PORTWAY_LIBRARY`` environment variable, then the
``libportway.so`` shipped inside this package. A failure raises ``LibraryLoadError`` naming the
path tried and the OS message.
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_double,
    c_int32,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any

__all__ = [
    "LIB",
    "LIBRARY_PATH",
    "LibraryLoadError",
    "PortwayRequest",
    "PortwayBatchView",
    "PortwayCompletion",
    "PortwayMeta",
    "PortwayStats",
    "NOTIFY_FN",
    "HANDLER_FN",
    "STATUS_SLOTS",
    "DRAIN",
    "CANCEL_NOW",
]

STATUS_SLOTS = 32
DRAIN = 0
CANCEL_NOW = 1


class LibraryLoadError(OSError):
    """libportway could not be loaded; the message names the path tried and the OS error."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot load libportway from {path!r}: {reason}")
        self.path = path
        self.reason = reason


class PortwayRequest(Structure):
    """``portway_request``: one request for ``portway_submit``/``portway_submit_batch``."""

    _fields_ = [
        ("handler", c_uint32),
        ("timeout_ms", c_uint32),
        ("user_data", c_uint64),
        ("payload", c_void_p),
        ("payload_len", c_size_t),
    ]


class PortwayMeta(Structure):
    """``portway_meta``: one key/value pair of a completion."""

    _fields_ = [("key", c_char_p), ("value", c_char_p)]


class PortwayCompletion(Structure):
    """``portway_completion``: what ``portway_poll`` fills."""

    _fields_ = [
        ("id", c_uint64),
        ("user_data", c_uint64),
        ("status", c_uint32),
        ("code", c_uint32),
        ("data", c_void_p),
        ("len", c_size_t),
        ("meta", POINTER(PortwayMeta)),
        ("meta_len", c_size_t),
        ("queued_ns", c_uint64),
        ("run_ns", c_uint64),
    ]


class PortwayBatchView(Structure):
    """``portway_batch_view``: the items of a polled batch completion (``portway_batch_result``)."""

    _fields_ = [
        ("n", c_size_t),
        ("statuses", c_void_p),
        ("codes", c_void_p),
        ("offsets", c_void_p),
        ("data", c_void_p),
        ("meta_offsets", c_void_p),
        ("meta", c_void_p),
    ]


class PortwayStats(Structure):
    """``struct portway_stats``: what ``portway_stats`` fills."""

    _fields_ = [
        ("submitted", c_uint64),
        ("accepted", c_uint64),
        ("rejected_busy", c_uint64),
        ("rejected_shutdown", c_uint64),
        ("rejected_invalid", c_uint64),
        ("completed", c_uint64 * STATUS_SLOTS),
        ("in_flight", c_uint64),
        ("queued", c_uint64),
        ("running", c_uint64),
        ("ready", c_uint64),
        ("unreleased", c_uint64),
        ("pool_workers", c_uint64),
    ]


class PortwayHttpOptions(Structure):
    """``portway_http_options``: fill with ``portway_http_options_default`` first."""

    _fields_ = [
        ("max_connections_per_host", c_uint32),
        ("max_header_bytes", c_uint32),
        ("max_body_bytes", c_uint64),
        ("connect_timeout_ms", c_uint32),
        ("pool_idle_timeout_ms", c_uint32),
        ("follow_redirects", c_bool),
        ("max_redirects", c_uint32),
        ("retries", c_uint32),
        ("retry_base_backoff_ms", c_uint32),
        ("user_agent", c_char_p),
        ("http2_prior_knowledge", c_bool),
        ("extra_ca_pem_path", c_char_p),
        ("danger_accept_invalid_certs", c_bool),
        ("read_timeout_ms", c_uint32),
        ("decompress", c_bool),
        ("bundled_roots_only", c_bool),
        ("http1_only", c_bool),
        ("proxy", c_char_p),
    ]


class PortwayPolicy(Structure):
    """``portway_policy``: fill with ``portway_policy_default`` first."""

    _fields_ = [
        ("max_concurrency", c_uint32),
        ("adaptive", c_bool),
        ("min_concurrency", c_uint32),
        ("rate_per_s", c_double),
        ("burst", c_uint32),
        ("hedge_after_ms", c_uint32),
        ("hedge_after_p95", c_bool),
        ("hedge_budget_percent", c_uint32),
        ("breaker_failures", c_uint32),
        ("breaker_cooldown_ms", c_uint32),
    ]


class PortwayPolicyState(Structure):
    """``portway_policy_state``: the live figures of a handler's policies."""

    _fields_ = [
        ("concurrency_limit", c_uint32),
        ("running", c_uint32),
        ("waiting", c_uint32),
        ("breaker_state", c_uint32),
        ("tokens", c_double),
        ("breaker_failures", c_uint32),
        ("breaker_open", c_uint32),
        ("breaker_trips", c_uint64),
        ("breaker_rejected", c_uint64),
        ("rate_timeouts", c_uint64),
        ("hedges_started", c_uint64),
        ("hedges_won", c_uint64),
        ("hedges_cancelled", c_uint64),
        ("hedges_skipped", c_uint64),
    ]


class PortwayLatency(Structure):
    """``struct portway_latency``: nanoseconds."""

    _fields_ = [(n, c_uint64) for n in ("p50_ns", "p90_ns", "p99_ns", "max_ns", "sum_ns", "count")]


class PortwayHandlerStats(Structure):
    """``struct portway_handler_stats``."""

    _fields_ = [
        ("id", c_uint32),
        ("submitted", c_uint64),
        ("completed", c_uint64 * STATUS_SLOTS),
        ("queue_wait", PortwayLatency),
        ("run", PortwayLatency),
    ]


NOTIFY_FN = CFUNCTYPE(None, c_void_p)
LOG_FN = CFUNCTYPE(None, c_void_p, c_uint32, c_char_p)
HANDLER_FN = CFUNCTYPE(None, c_void_p, c_void_p)

status_t = c_uint32
eng_p = c_void_p
cfg_p = c_void_p
call_p = c_void_p

# name -> (restype, argtypes). Every function of include/portway.h must appear here.
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "portway_poll": (status_t, [eng_p, POINTER(PortwayCompletion), c_size_t, c_int32, POINTER(c_size_t)]),
    "portway_poll_min": (status_t, [eng_p, POINTER(PortwayCompletion), c_size_t, c_size_t, c_int32, POINTER(c_size_t)]),
    "portway_release": (status_t, [eng_p, POINTER(PortwayCompletion), c_size_t]),
    "portway_notify_fd": (c_int32, [eng_p]),
    "portway_set_notify": (status_t, [eng_p, NOTIFY_FN, c_void_p]),
    "portway_wake": (status_t, [eng_p]),
    "portway_config_new": (cfg_p, []),
    "portway_config_free": (None, [cfg_p]),
    "portway_config_set_runtime_threads": (status_t, [cfg_p, c_uint32]),
    "portway_config_set_pool_workers": (status_t, [cfg_p, c_uint32]),
    "portway_config_set_max_in_flight": (status_t, [cfg_p, c_uint32]),
    "portway_config_set_default_timeout_ms": (status_t, [cfg_p, c_uint32]),
    "portway_config_set_max_payload": (status_t, [cfg_p, c_uint64]),
    "portway_config_set_free_grace_ms": (status_t, [cfg_p, c_uint32]),
    "portway_engine_new": (status_t, [cfg_p, POINTER(c_void_p)]),
    "portway_engine_shutdown": (status_t, [eng_p, c_uint32, c_uint32]),
    "portway_engine_free": (None, [eng_p]),
    "portway_register_handler": (status_t, [eng_p, c_char_p, HANDLER_FN, c_void_p, POINTER(c_uint32)]),
    "portway_register_handler_ex": (status_t, [eng_p, c_char_p, HANDLER_FN, c_void_p, c_uint32, POINTER(c_uint32)]),
    "portway_handler_lookup": (status_t, [eng_p, c_char_p, POINTER(c_uint32)]),
    "portway_handler_set_concurrency": (status_t, [eng_p, c_uint32, c_uint32]),
    "portway_pipeline_new": (status_t, [eng_p, c_char_p, POINTER(c_uint32), c_size_t, POINTER(c_uint32)]),
    "portway_call_payload": (status_t, [call_p, POINTER(POINTER(c_uint8)), POINTER(c_size_t)]),
    "portway_call_user_data": (c_uint64, [call_p]),
    "portway_call_is_cancelled": (c_bool, [call_p]),
    "portway_call_respond": (status_t, [call_p, c_char_p, c_size_t]),
    "portway_call_fail": (status_t, [call_p, c_char_p]),
    "portway_call_set_code": (status_t, [call_p, c_uint32]),
    "portway_call_add_meta": (status_t, [call_p, c_char_p, c_char_p]),
    "portway_stats": (status_t, [eng_p, POINTER(PortwayStats)]),
    "portway_submit": (status_t, [eng_p, POINTER(PortwayRequest), POINTER(c_uint64)]),
    "portway_submit_batch": (status_t, [eng_p, c_void_p, c_size_t, POINTER(c_uint64), POINTER(c_size_t)]),
    "portway_batch_submit": (
        status_t,
        [eng_p, c_uint32, c_void_p, c_void_p, c_size_t, c_uint32, c_uint64, POINTER(c_uint64)],
    ),
    "portway_batch_result": (status_t, [eng_p, c_void_p, POINTER(PortwayBatchView)]),
    "portway_submit_wait": (status_t, [eng_p, POINTER(PortwayRequest), c_int32, POINTER(c_uint64)]),
    "portway_cancel": (status_t, [eng_p, c_uint64]),
    "portway_cancel_all": (status_t, [eng_p]),
    "portway_version": (c_char_p, []),
    "portway_abi_version": (c_uint32, []),
    "portway_status_str": (c_char_p, [c_uint32]),
    "portway_last_error": (c_char_p, []),
}

# Functions newer than some libraries this binding may load (the http handler landed after the
# core): declared when the loaded library exports them, absent otherwise.
_OPTIONAL_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "portway_http_options_default": (status_t, [POINTER(PortwayHttpOptions)]),
    "portway_register_http": (status_t, [eng_p, c_char_p, POINTER(PortwayHttpOptions), POINTER(c_uint32)]),
    "portway_metrics_text": (status_t, [eng_p, c_char_p, c_size_t, POINTER(c_size_t)]),
    "portway_inflight_json": (status_t, [eng_p, c_uint32, c_char_p, c_size_t, POINTER(c_size_t)]),
    "portway_handler_stats": (status_t, [eng_p, c_uint32, POINTER(PortwayHandlerStats)]),
    # Log callbacks run on engine threads: used only when the user asks for logging.
    "portway_set_log": (status_t, [eng_p, LOG_FN, c_void_p, c_uint32]),
    "portway_config_set_log": (status_t, [cfg_p, LOG_FN, c_void_p, c_uint32]),
    "portway_config_set_metrics": (status_t, [cfg_p, c_bool]),
    "portway_policy_default": (status_t, [POINTER(PortwayPolicy)]),
    "portway_handler_set_policy": (status_t, [eng_p, c_uint32, POINTER(PortwayPolicy)]),
    "portway_handler_policy_state": (status_t, [eng_p, c_uint32, POINTER(PortwayPolicyState)]),
    # Declared for completeness; the binding never lends (its payloads do not outlive a submit).
    "portway_submit_batch_ex": (
        status_t,
        [eng_p, c_void_p, c_size_t, c_uint32, POINTER(c_uint64), POINTER(c_size_t)],
    ),
}

ABI_VERSION = 1


def _default_path() -> str:
    env = os.environ.get("PORTWAY_LIBRARY")
    if env:
        return env
    return str(Path(__file__).resolve().parent / _lib_filename())


def _lib_filename() -> str:
    if sys.platform == "darwin":
        return "libportway.dylib"
    if sys.platform == "win32":
        return "portway.dll"
    return "libportway.so"


def load(path: str | None = None) -> ctypes.CDLL:
    """Loads the library at ``path`` (default: see module doc) and declares every signature."""
    path = path or _default_path()
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise LibraryLoadError(path, str(exc)) from None
    missing = []
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise LibraryLoadError(path, "missing symbols: " + ", ".join(missing))
    for name, (restype, argtypes) in _OPTIONAL_SIGNATURES.items():
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = restype
            fn.argtypes = argtypes
    abi = int(lib.portway_abi_version())
    if abi != ABI_VERSION:
        raise LibraryLoadError(path, f"ABI version {abi}, this binding speaks {ABI_VERSION}")
    return lib


LIBRARY_PATH = _default_path()
LIB: Any = load(LIBRARY_PATH)
