"""Checks and converts the arguments users pass (payloads, timeouts, names, C integers) into
what the C functions take; a bad one raises ``InvalidArgumentError`` or
``InvalidArgumentTypeError`` before anything reaches the library."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Union, cast

from ._errors import InvalidArgumentError, InvalidArgumentTypeError

Payload = Union[bytes, bytearray, memoryview, str]


def _to_bytes(payload: Payload, what: str = "payload") -> bytes:
    """``payload`` as an exact ``bytes`` object: a bytes-like object (the buffer protocol:
    ``bytes``, ``bytearray``, ``memoryview``, ``array``...) copied, a ``str`` encoded as UTF-8.
    Anything else raises ``InvalidArgumentTypeError``: ``bytes(5)`` would be five NUL bytes and
    ``bytes([1, 2])`` a coercion nobody asked for."""
    if payload.__class__ is bytes:
        return payload
    if isinstance(payload, str):
        return payload.encode()
    try:
        view = memoryview(payload)
    except TypeError:
        raise InvalidArgumentTypeError(
            f"{what} must be bytes, bytearray, memoryview (any bytes-like object) or str, "
            f"got {type(payload).__name__}"
        ) from None
    with view:
        return view.tobytes()


# Float timeouts already converted (a program uses a handful): a dict hit instead of the checks
# and arithmetic. Only exact floats: an equal Fraction or Decimal may round differently.
_TIMEOUT_CACHE: dict[float, int] = {}
_TIMEOUT_CACHE_MAX = 256


_TIMEOUT_MAX_S = 0xFFFFFFFF / 1000  # the C field is a u32 of milliseconds


def _timeout_ms(timeout: float | None, what: str = "timeout") -> int:
    """Seconds -> the C ``timeout_ms`` (rounded up to whole ms). ``None`` is 0, which the
    engine reads as its default deadline. 0 or below, NaN, infinity and values past the C
    field (about 49.7 days) raise ``InvalidArgumentError``: 0 would otherwise be read as
    "the default" by C and as "already expired" by a reader of the Python call."""
    if timeout is None:
        return 0
    if timeout.__class__ is float:
        ms = _TIMEOUT_CACHE.get(timeout)
        if ms is not None:
            return ms
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise InvalidArgumentTypeError(
            f"{what} must be a number of seconds or None, got {type(timeout).__name__}"
        )
    if not 0 < timeout <= _TIMEOUT_MAX_S:  # also False for NaN
        hint = "None = no deadline; drain=False cancels at once" if what.startswith("close") else "None = the engine default"
        raise InvalidArgumentError(
            f"{what} must be a number of seconds above 0 and at most {_TIMEOUT_MAX_S} ({hint}), got {timeout!r}"
        )
    ms = max(1, math.ceil(timeout * 1000))
    if timeout.__class__ is float and len(_TIMEOUT_CACHE) < _TIMEOUT_CACHE_MAX:
        _TIMEOUT_CACHE[timeout] = ms
    return ms


def _wait_ms(wait: float | None) -> int:
    """``submit(wait=)`` seconds -> ms for ``portway_submit_wait``: None or 0 = do not wait,
    ``math.inf`` = until a slot frees up (-1). Negative or NaN raises."""
    if wait is None:
        return 0
    if isinstance(wait, bool) or not isinstance(wait, numbers.Real):
        raise InvalidArgumentTypeError(f"wait must be a number of seconds or None, got {type(wait).__name__}")
    if wait == math.inf:
        return -1
    if not 0 <= wait < math.inf:
        raise InvalidArgumentError(f"wait must be >= 0 seconds (math.inf = no limit), got {wait!r}")
    return min(0x7FFFFFFF, math.ceil(wait * 1000))


def _uint(name: str, value: int, bits: int = 32) -> int:
    """``value`` checked to be an ``int`` (not a ``bool``) that fits an unsigned C field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentTypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value < 1 << bits:
        raise InvalidArgumentError(f"{name} must be between 0 and {(1 << bits) - 1}, got {value!r}")
    return value


def _u32(name: str, value: int) -> int:
    return _uint(name, value, 32)


def _check_name(name: str, what: str = "handler name") -> bytes:
    """A handler name as the C string the library takes."""
    if not isinstance(name, str):
        raise InvalidArgumentTypeError(f"{what} must be a str, got {type(name).__name__}")
    return name.encode()


_ONLY_BYTES = frozenset((bytes,))


def _payload_list(payloads: Iterable[Payload]) -> list[bytes]:
    """``payloads`` as a new list of exact ``bytes`` (see ``_to_bytes``). A list of ``bytes``
    only is copied as it is (one C pass over the item types instead of a check per item)."""
    if payloads.__class__ is list and set(map(type, payloads)) <= _ONLY_BYTES:
        return list(cast("list[bytes]", payloads))
    datas = [p if p.__class__ is bytes else _to_bytes(p, f"payloads[{i}]")
             for i, p in enumerate(_payload_iterable(payloads))]
    return datas


def _payload_iterable(payloads: Iterable[Payload]) -> Iterable[Payload]:
    """Refuses one bytes-like or ``str`` object where an iterable of payloads is expected:
    iterating ``b"\\x03\\x01"`` gives ints, iterating ``"ab"`` gives one-letter payloads."""
    if isinstance(payloads, (bytes, bytearray, memoryview, str)):
        raise InvalidArgumentTypeError(
            f"payloads must be an iterable of payloads (e.g. a list of bytes), not one "
            f"{type(payloads).__name__}; wrap it in a list to send it as one request"
        )
    return payloads


def _window(window: object) -> int:
    if isinstance(window, bool) or not isinstance(window, int):
        raise InvalidArgumentTypeError(f"window must be an int, got {type(window).__name__}")
    if window < 1:
        raise InvalidArgumentError(f"window must be >= 1, got {window}")
    return window

