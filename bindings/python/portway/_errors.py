"""One exception class per ``portway_status``, all under ``PortwayError``."""

from __future__ import annotations

import builtins
import enum

from ._lib import LIB


class Status(enum.IntEnum):
    """``portway_status`` values, in header order."""

    OK = 0
    INVALID_ARGUMENT = 1
    BUSY = 2
    SHUTDOWN = 3
    CLOSED = 4
    NOT_FOUND = 5
    UNKNOWN_HANDLER = 6
    TIMEOUT = 7
    CANCELLED = 8
    HANDLER_ERROR = 9
    PANIC = 10
    FORKED = 11
    PAYLOAD_TOO_LARGE = 12
    CONNECT_ERROR = 13
    TLS_ERROR = 14
    PROTOCOL_ERROR = 15
    BODY_TOO_LARGE = 16
    INTERNAL = 17
    BUFFER_TOO_SMALL = 18
    UNAVAILABLE = 19


def status_label(status: int) -> str:
    """The ``Status`` member name of ``status`` (``"OK"``, ``"TIMEOUT"``, ...), or the number as
    text for a value without one: the keys of ``stats()["completed"]``."""
    return Status(status).name if status in Status._value2member_map_ else str(status)


def status_name(status: int) -> str:
    raw: bytes = LIB.portway_status_str(status)
    return raw.decode()


class PortwayError(Exception):
    """Base of every portway error. ``status`` is the ``portway_status`` value."""

    status: int = -1

    def __init__(self, message: str = "", status: int | None = None) -> None:
        if status is not None:
            self.status = status
        self.message = message
        name = status_name(self.status) if self.status >= 0 else "PORTWAY_ERROR"
        super().__init__(f"{name}: {message}" if message else name)


class InvalidArgumentError(PortwayError, ValueError):
    """A bad argument (``INVALID_ARGUMENT``): a timeout of 0 or below, NaN or infinite, a
    relative URL, a value out of range, a payload the handler refuses. Also a ``ValueError``."""

    status = Status.INVALID_ARGUMENT


class InvalidArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument of the wrong type (an ``int`` payload, a handler name that is not a ``str``,
    a handler that is not callable). Status ``INVALID_ARGUMENT``; also a ``TypeError``."""


class BusyError(PortwayError):
    status = Status.BUSY


class ShutdownError(PortwayError):
    status = Status.SHUTDOWN


class ClosedError(ShutdownError):
    status = Status.CLOSED


class NotFoundError(PortwayError, LookupError):
    """``NOT_FOUND``: no handler has that name, or a request id is unknown or completed."""

    status = Status.NOT_FOUND


class UnknownHandlerError(NotFoundError):
    """No handler has that name: status ``NOT_FOUND``, as ``portway_handler_lookup`` answers and
    as the Node binding reports. (A handler *id* the engine does not know, which the binding
    never sends, comes as this class too, with status ``UNKNOWN_HANDLER``.)"""

    status = Status.NOT_FOUND


class TimeoutError(PortwayError, builtins.TimeoutError):  # noqa: A001 - the contract's name
    status = Status.TIMEOUT


class HandlerError(PortwayError):
    status = Status.HANDLER_ERROR


class PanicError(PortwayError):
    status = Status.PANIC


class ForkedError(PortwayError):
    status = Status.FORKED


class PayloadTooLargeError(PortwayError, ValueError):
    status = Status.PAYLOAD_TOO_LARGE


class ConnectError(PortwayError, ConnectionError):
    status = Status.CONNECT_ERROR


class TlsError(PortwayError, ConnectionError):
    status = Status.TLS_ERROR


class ProtocolError(PortwayError):
    status = Status.PROTOCOL_ERROR


class BodyTooLargeError(PortwayError):
    status = Status.BODY_TOO_LARGE


class InternalError(PortwayError):
    status = Status.INTERNAL


class BufferTooSmallError(PortwayError):
    status = Status.BUFFER_TOO_SMALL


class UnavailableError(PortwayError):
    """The handler's circuit breaker is open: the request was refused without running."""

    status = Status.UNAVAILABLE


_BY_STATUS: dict[int, type[PortwayError]] = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        BusyError,
        ShutdownError,
        ClosedError,
        NotFoundError,
        TimeoutError,
        HandlerError,
        PanicError,
        ForkedError,
        PayloadTooLargeError,
        ConnectError,
        TlsError,
        ProtocolError,
        BodyTooLargeError,
        InternalError,
        BufferTooSmallError,
        UnavailableError,
    )
}


def error_for(status: int, message: str = "") -> PortwayError:
    """The exception for ``status`` (a generic ``PortwayError`` for an unknown value)."""
    if status == Status.UNKNOWN_HANDLER:
        return UnknownHandlerError(message, status)
    cls = _BY_STATUS.get(status)
    if cls is None:
        return PortwayError(message, status)
    return cls(message)


def last_error() -> str:
    raw: bytes = LIB.portway_last_error()
    return raw.decode("utf-8", "replace")


def check(status: int) -> None:
    """Raises the error for a failed call, with ``portway_last_error``'s message."""
    if status != 0:
        raise error_for(status, last_error())
