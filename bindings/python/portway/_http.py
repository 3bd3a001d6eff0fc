"""HTTP requests through the engine's "http" handler: payload building and responses."""

from __future__ import annotations

import ctypes
import json as _json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Union
from ctypes import byref
from urllib.parse import urlsplit

from ._args import _uint
from ._errors import InvalidArgumentError, InvalidArgumentTypeError, check
from ._lib import LIB, PortwayHttpOptions
from ._completion import Completion

__all__ = ["HttpResponse", "build_request", "HeadersArg", "response_from_completion", "http_options"]

HeadersArg = Union[Mapping[str, str], Iterable[tuple[str, str]], None]


_BAD_TOKEN = re.compile("[\r\n\0]")
# RFC 9110 section 5.6.2 token: what a header name must be. A ":" in a name would otherwise
# split it, so that {"X:Y": "1"} went out as header "X" with value "Y: 1".
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_URL = re.compile("[ \r\n\0]")

# Request heads of bodiless, header-less requests (the common GET), by (method, url): building
# one validates and formats it, a dict hit does not. Bounded: cleared when full.
_HEAD_CACHE: dict[tuple[str, str], bytes] = {}

# The last meta pair of every "http" completion: the HTTP version used.
_VERSION_META = ":http-version"
_HEAD_CACHE_MAX = 512


def _check_token(value: str, what: str) -> None:
    if not isinstance(value, str):
        raise InvalidArgumentTypeError(f"{what} must be a str, got {type(value).__name__}")
    if not value or _BAD_TOKEN.search(value) is not None:
        raise InvalidArgumentError(f"invalid {what}: {value!r}")


def build_request(method: str, url: str, headers: HeadersArg = None, body: bytes | str | None = None) -> bytes:
    """The "http" handler's payload: an HTTP/1.1 request head in absolute form, then the body.

    A relative URL, a bad method or header raises ``InvalidArgumentError`` (status
    INVALID_ARGUMENT, also a ``ValueError``); a non-``str`` method or URL, or a body that is
    neither bytes-like nor ``str``, raises ``InvalidArgumentTypeError``."""
    if headers is None and body is None and method.__class__ is str and url.__class__ is str:
        key = (method, url)
        head = _HEAD_CACHE.get(key)
        if head is None:
            head = _build_request(method, url, None, None)  # raises before anything is cached
            if len(_HEAD_CACHE) >= _HEAD_CACHE_MAX:
                _HEAD_CACHE.clear()
            _HEAD_CACHE[key] = head
        return head
    return _build_request(method, url, headers, body)


def _build_request(method: str, url: str, headers: HeadersArg, body: bytes | str | None) -> bytes:
    _check_token(method, "method")
    if " " in method:
        raise InvalidArgumentError(f"invalid method: {method!r}")
    if not isinstance(url, str):
        raise InvalidArgumentTypeError(f"url must be a str, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidArgumentError(f"an absolute http(s) URL is required, got {url!r}")
    if _BAD_URL.search(url) is not None:
        raise InvalidArgumentError(f"invalid URL: {url!r}")
    pairs: list[tuple[str, str]]
    if headers is None:
        pairs = []
    elif isinstance(headers, Mapping):
        pairs = [(str(k), str(v)) for k, v in headers.items()]
    else:
        pairs = [(str(k), str(v)) for k, v in headers]
    names = {k.lower() for k, _ in pairs}
    if "host" not in names:
        pairs.insert(0, ("Host", parts.netloc.rpartition("@")[2]))
    if body is None:
        data = b""
    elif isinstance(body, str):
        data = body.encode()
    else:
        try:
            with memoryview(body) as view:
                data = view.tobytes()
        except TypeError:
            raise InvalidArgumentTypeError(
                f"body must be bytes-like, str or None, got {type(body).__name__}"
            ) from None
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        pairs.append(("Content-Length", str(len(data))))
    lines = [f"{method} {url} HTTP/1.1"]
    for k, v in pairs:
        if _TOKEN.fullmatch(k) is None:
            raise InvalidArgumentError(
                f"invalid header name {k!r}: a name must be a non-empty RFC 9110 token "
                "(letters, digits and !#$%&'*+-.^_`|~; no spaces, colons or control characters)"
            )
        if _BAD_TOKEN.search(v) is not None:
            raise InvalidArgumentError(f"invalid value for header {k!r}: CR, LF and NUL are not allowed in a header value")
        lines.append(f"{k}: {v}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + data


class HttpResponse:
    """A response from the "http" handler: any HTTP status, 4xx and 5xx included.

    ``headers`` (``(name, value)`` pairs in wire order) and ``http_version`` are worked out
    when first read: a caller that reads only ``status`` and ``body`` never decodes them.
    ``headers=None`` takes them from ``completion.meta``."""

    __slots__ = ("status", "_headers", "body", "completion", "_version")

    def __init__(
        self, status: int, headers: list[tuple[str, str]] | None, body: bytes, completion: Completion | None = None
    ) -> None:
        self.status = status
        self._headers = headers
        self._version: str | None = None  # None: ":http-version" not popped off yet
        self.body = body
        self.completion = completion

    def _fields(self) -> list[tuple[str, str]]:
        """The header list, with the version pair popped off (once)."""
        h = self._headers
        if h is None:
            h = self._headers = self.completion.meta if self.completion is not None else []
        if self._version is None:
            # The handler reports the version as the last meta pair, popped off in place
            # (the list stays the completion's ``meta``: no copy).
            self._version = h.pop()[1] if h and h[-1][0] == _VERSION_META else ""
        return h

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The response headers as ``(name, value)`` pairs, in the order received."""
        return self._fields()

    @headers.setter
    def headers(self, value: list[tuple[str, str]]) -> None:
        self._fields()  # the version of the old list first
        self._headers = value

    @property
    def http_version(self) -> str:
        """The HTTP version of the response: "HTTP/1.1", "HTTP/2" (or "HTTP/1.0"); "" when
        the handler did not say."""
        self._fields()
        return self._version or ""

    @http_version.setter
    def http_version(self, value: str) -> None:
        self._fields()
        self._version = value

    @classmethod
    def from_completion(cls, c: Completion) -> HttpResponse:
        return cls(c.code, None, c.data, c)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first header named ``name`` (case-insensitive)."""
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return default

    def text(self, encoding: str | None = None) -> str:
        if encoding is None:
            ctype = self.header("content-type") or ""
            encoding = "utf-8"
            for param in ctype.split(";")[1:]:
                key, _, val = param.strip().partition("=")
                if key.lower() == "charset" and val:
                    encoding = val.strip('"')
        return self.body.decode(encoding, "replace")

    def json(self) -> Any:
        return _json.loads(self.body)

    def __repr__(self) -> str:
        return f"HttpResponse(status={self.status}, headers={self._header_count()}, body={self.body[:64]!r})"

    def _header_count(self) -> int:
        """``len(self.headers)`` without decoding them (a repr is no reason to)."""
        c = self.completion
        if self._headers is None and c is not None and c._meta is None:
            raw = c._raw_meta or []
            n = len(raw) // 2
            return n - 1 if n and raw[-2] == _VERSION_META.encode() else n
        return len(self.headers)


_new_response = HttpResponse.__new__


def response_from_completion(c: Completion) -> HttpResponse:
    """``HttpResponse.from_completion`` as a plain function (no bound method per request),
    filling the slots itself (one Python call per response instead of two)."""
    r = _new_response(HttpResponse)
    r.status = c.code
    r._headers = None
    r._version = None
    r.body = c.data
    r.completion = c
    return r


def http_options(given: Mapping[str, object]) -> tuple[PortwayHttpOptions, list[bytes]]:
    """``Engine.register_http``'s keywords as a ``portway_http_options``: the library's
    defaults, then every value of ``given`` that is not None, checked against its C field
    (``InvalidArgumentTypeError`` for a wrong type, ``InvalidArgumentError`` out of range or
    for a NUL in a string). Returns the record and the C strings it points into: keep them
    alive until the library has copied them."""
    given = dict(given)
    opts = PortwayHttpOptions()
    check(LIB.portway_http_options_default(byref(opts)))
    keep: list[bytes] = []  # the C strings, alive until the call has copied them
    for spec in PortwayHttpOptions._fields_:
        field, ctype = spec[0], spec[1]
        value: object = given.pop(field, None)
        if value is None:
            continue
        if ctype is ctypes.c_bool:
            if not isinstance(value, bool):
                raise InvalidArgumentTypeError(f"{field} must be a bool, got {type(value).__name__}")
        elif ctype is ctypes.c_char_p:
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            if not isinstance(value, str):
                raise InvalidArgumentTypeError(f"{field} must be a str, got {type(value).__name__}")
            if "\0" in value:
                raise InvalidArgumentError(f"{field} must not contain NUL characters")
            value = value.encode()
            keep.append(value)
        else:
            bits = 64 if ctype is ctypes.c_uint64 else 32
            value = _uint(field, value, bits)  # type: ignore[arg-type]
        setattr(opts, field, value)
    assert not given, f"register_http keywords without a portway_http_options field: {sorted(given)}"
    return opts, keep
