"""``Request`` and ``Response`` of ``Client``/``AsyncClient`` (shaped like httpx's), and the
errors only the client raises: ``HTTPStatusError`` and ``TooManyRedirects``."""

from __future__ import annotations

import datetime
import http
import json as _json
from typing import Any

from ._errors import PortwayError, ProtocolError
from ._headers import Headers, HeaderTypes

__all__ = ["Request", "Response", "HTTPStatusError", "TooManyRedirects"]

_REDIRECTS = frozenset((301, 302, 303, 307, 308))


class Request:
    """A request as the client sends it: ``method``, absolute ``url``, ``headers`` (without
    ``Host`` and ``Content-Length``, which are added from the URL and body on the wire) and
    ``content`` (the body bytes, ``b""`` for none). An ``auth=`` callable receives and returns
    one of these."""

    __slots__ = ("method", "url", "headers", "content")

    def __init__(self, method: str, url: str, headers: HeaderTypes = None, content: bytes = b"") -> None:
        self.method = method
        self.url = url
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.content = content

    def read(self) -> bytes:
        return self.content

    def __repr__(self) -> str:
        return f"<Request({self.method!r}, {self.url!r})>"


class Response:
    """An HTTP response of ``Client``/``AsyncClient``; any status is a response (see
    ``raise_for_status``).

    ``url`` is the final URL (after the redirects the client followed, listed oldest first
    in ``history``) as a ``str``; ``elapsed`` is the engine's time for this exchange (queue
    wait + run); ``index`` is the position of its URL in the input of ``get_many`` /
    ``stream_many`` (None otherwise)."""

    __slots__ = ("status_code", "_fields", "_headers", "content", "http_version", "_elapsed_ns", "request", "history", "index")

    def __init__(
        self,
        status_code: int,
        headers: list[tuple[str, str]],
        content: bytes,
        request: Request,
        http_version: str = "HTTP/1.1",
        elapsed_ns: int = 0,
        history: list[Response] | None = None,
    ) -> None:
        self.status_code = status_code
        self._fields = headers
        self._headers: Headers | None = None
        self.content = content
        self.request = request
        self.http_version = http_version
        self._elapsed_ns = elapsed_ns
        self.history: list[Response] = history if history is not None else []
        self.index: int | None = None

    @property
    def headers(self) -> Headers:
        """The response headers as received (case-insensitive multi-dict)."""
        h = self._headers
        if h is None:
            h = self._headers = Headers._wrap(self._fields)
        return h

    @property
    def url(self) -> str:
        """The URL this response came from: the last one when redirects were followed."""
        return self.request.url

    @property
    def elapsed(self) -> datetime.timedelta:
        return datetime.timedelta(microseconds=self._elapsed_ns // 1000)

    @property
    def reason_phrase(self) -> str:
        """The standard phrase for ``status_code`` ("" for a code without one)."""
        try:
            return http.HTTPStatus(self.status_code).phrase
        except ValueError:
            return ""

    @property
    def charset_encoding(self) -> str | None:
        """The ``charset`` parameter of ``Content-Type``, if any."""
        ctype = self.headers.get("content-type")
        if ctype is None:
            return None
        for param in ctype.split(";")[1:]:
            key, _, val = param.strip().partition("=")
            if key.strip().lower() == "charset" and val:
                return val.strip().strip('"')
        return None

    @property
    def encoding(self) -> str:
        """The encoding ``text`` decodes with: the charset if Python knows it, else utf-8."""
        enc = self.charset_encoding
        if enc is not None:
            try:
                "".encode(enc)
                return enc
            except LookupError:
                pass
        return "utf-8"

    @property
    def text(self) -> str:
        """``content`` decoded with ``encoding``; undecodable bytes become U+FFFD."""
        return self.content.decode(self.encoding, "replace")

    def json(self, **kwargs: Any) -> Any:
        """``content`` parsed as JSON (``json.loads`` keywords allowed)."""
        return _json.loads(self.content, **kwargs)

    def read(self) -> bytes:
        return self.content

    @property
    def is_informational(self) -> bool:
        return 100 <= self.status_code < 200

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        """A 301, 302, 303, 307 or 308 with a ``Location`` to follow."""
        return self.status_code in _REDIRECTS and "location" in self.headers

    has_redirect_location = is_redirect

    @property
    def is_client_error(self) -> bool:
        return 400 <= self.status_code < 500

    @property
    def is_server_error(self) -> bool:
        return 500 <= self.status_code < 600

    @property
    def is_error(self) -> bool:
        return 400 <= self.status_code < 600

    def raise_for_status(self) -> Response:
        """Returns the response when it is a 2xx; raises ``HTTPStatusError`` otherwise
        (1xx and 3xx included, as httpx does: a redirect not followed is not a success)."""
        if self.is_success:
            return self
        code = self.status_code
        if code < 200:
            kind = "Informational response"
        elif code < 400:
            kind = "Redirect response"
        elif code < 500:
            kind = "Client error"
        elif code < 600:
            kind = "Server error"
        else:
            kind = "Invalid status code"
        message = f"{kind} '{code} {self.reason_phrase}' for url '{self.url}'"
        if self.is_redirect:
            message += f"\nRedirect location: '{self.headers['location']}'"
        raise HTTPStatusError(message, request=self.request, response=self)

    def __repr__(self) -> str:
        return f"<Response [{self.status_code} {self.reason_phrase}]>"


class HTTPStatusError(PortwayError):
    """``Response.raise_for_status()`` on a non-2xx response; ``response`` and ``request``
    are attached. Not a ``portway_status``: ``status`` is -1 and ``str()`` is the message."""

    def __init__(self, message: str, *, request: Request, response: Response) -> None:
        super().__init__(message)
        self.args = (message,)
        self.request = request
        self.response = response


class TooManyRedirects(ProtocolError):
    """The client was redirected more than ``max_redirects`` times (status
    ``PROTOCOL_ERROR``, as the http handler's own redirect limit). ``request`` is the
    redirect that was not followed; ``response`` the last redirect response."""

    def __init__(self, message: str, *, request: Request, response: Response) -> None:
        super().__init__(message)
        self.request = request
        self.response = response
