"""portway: an embeddable request engine, over the libportway C ABI (ctypes).

    with portway.Client() as client:  # httpx-style HTTP
        print(client.get("https://example.com/").status_code)

    with portway.Engine() as eng:
        print(eng.submit("echo", b"hi").result().data)
"""

from __future__ import annotations

from concurrent.futures import CancelledError

from ._client import USE_CLIENT_DEFAULT, AsyncClient, BasicAuth, Client
from ._engine import Engine
from ._errors import (
    BodyTooLargeError,
    BufferTooSmallError,
    BusyError,
    ClosedError,
    ConnectError,
    ForkedError,
    HandlerError,
    InternalError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    NotFoundError,
    PanicError,
    PayloadTooLargeError,
    PortwayError,
    ProtocolError,
    ShutdownError,
    Status,
    TimeoutError,
    TlsError,
    UnavailableError,
    UnknownHandlerError,
)
from ._batch import BatchResult
from ._completion import Completion
from ._futures import Future
from ._handler import Call
from ._headers import Headers
from ._http import HttpResponse
from ._lib import LIB as _LIB
from ._lib import LIBRARY_PATH, LibraryLoadError
from ._response import HTTPStatusError, Request, Response, TooManyRedirects
from ._policy import PolicyState
from ._types import HandlerStats, Inflight, InflightRequest, Latency, Stats

__version__ = "0.1.0"


def library_version() -> str:
    """The loaded libportway's version string."""
    raw: bytes = _LIB.portway_version()
    return raw.decode()


__all__ = [
    "Client",
    "AsyncClient",
    "Request",
    "Response",
    "Headers",
    "BasicAuth",
    "HTTPStatusError",
    "TooManyRedirects",
    "USE_CLIENT_DEFAULT",
    "Engine",
    "Call",
    "Future",
    "BatchResult",
    "Completion",
    "HttpResponse",
    "Status",
    "CancelledError",
    "PortwayError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "BusyError",
    "ShutdownError",
    "ClosedError",
    "NotFoundError",
    "UnknownHandlerError",
    "TimeoutError",
    "HandlerError",
    "PanicError",
    "ForkedError",
    "PayloadTooLargeError",
    "ConnectError",
    "TlsError",
    "ProtocolError",
    "BodyTooLargeError",
    "InternalError",
    "BufferTooSmallError",
    "UnavailableError",
    "LibraryLoadError",
    "Stats",
    "Inflight",
    "InflightRequest",
    "HandlerStats",
    "PolicyState",
    "Latency",
    "LIBRARY_PATH",
    "library_version",
]
