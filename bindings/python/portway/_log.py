"""The log bridge: engine events (``portway_set_log``) to the ``portway`` logger.

Installed only when the user asks for logging (``Engine(log_level=...)``): the callback runs
on engine threads, and is the only Python code the engine calls without a registered handler.
"""

from __future__ import annotations

import logging
from typing import Any

from ._errors import check
from ._lib import LIB, LOG_FN

_LOGGER = logging.getLogger("portway")
_C_TO_LOGGING = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}


def _portway_log_level(level: int) -> int:
    """The C level (PORTWAY_LOG_DEBUG=1 .. ERROR=4) for a ``logging`` level."""
    if level <= logging.DEBUG:
        return 1
    if level <= logging.INFO:
        return 2
    if level <= logging.WARNING:
        return 3
    return 4


def _deliver_log(_ctx: int | None, level: int, message: bytes | None) -> None:
    """Engine event -> the ``portway`` logger. Runs on an engine thread (or the thread that
    caused the event); exceptions must not reach C."""
    try:
        _LOGGER.log(_C_TO_LOGGING.get(level, logging.ERROR), (message or b"").decode("utf-8", "replace"))
    except Exception:  # noqa: BLE001 (a broken log handler must not unwind into C)
        pass


def configure(cfg: int, level: int) -> Any:
    """Routes the events of the engine that ``cfg`` will build, at ``level`` (a ``logging``
    level) and above, to the ``portway`` logger. Returns the C callback object: the caller
    keeps it alive as long as the engine (the engine calls it until it is freed)."""
    fn = LOG_FN(_deliver_log)
    check(LIB.portway_config_set_log(cfg, fn, None, _portway_log_level(level)))
    return fn
