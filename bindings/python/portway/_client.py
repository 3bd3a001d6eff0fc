"""``Client`` and ``AsyncClient``: HTTP the way httpx users write it, over the engine's http
handler (``Engine.http`` / ``Engine.ahttp``).

The client builds each request (base URL, query parameters, default headers, auth, JSON and
form bodies), follows redirects itself (so that every request may choose, and ``url`` and
``history`` are right), and wraps responses in ``Response``. Errors stay portway's typed
exceptions; only ``HTTPStatusError`` and ``TooManyRedirects`` are the client's own."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json as _json
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, Union
from urllib.parse import parse_qsl, quote, unquote, urlencode, urljoin, urlsplit, urlunsplit

from ._args import _window
from ._engine import Engine
from ._errors import (
    ClosedError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    PortwayError,
    ProtocolError,
    TimeoutError,
    UnknownHandlerError,
)
from ._completion import Completion
from ._headers import Headers, HeaderTypes
from ._http import _VERSION_META, build_request
from ._response import Request, Response, TooManyRedirects

if TYPE_CHECKING:  # typing_extensions only for the checker: 3.10 has no typing.Unpack
    from typing_extensions import Unpack

__all__ = ["Client", "AsyncClient", "BasicAuth", "AuthTypes", "ParamTypes", "RequestOptions", "USE_CLIENT_DEFAULT"]

_Primitive = Union[str, int, float, bool, None]
#: ``params=`` / form ``data=``: a mapping (a value may be a list for a repeated key),
#: ``(key, value)`` pairs, or a query string.
ParamTypes = Union[Mapping[str, Union[_Primitive, Sequence[_Primitive]]], Iterable[tuple[str, _Primitive]], str, None]
#: ``auth=``: ``(user, password)``, a ``BasicAuth``, or a callable that gets the ``Request``
#: and returns it (or another) with credentials added.
AuthTypes = Union[tuple[str, str], Callable[[Request], Request], None]


class RequestOptions(TypedDict, total=False):
    """The keywords of ``get``, ``post``, ... (those of ``request`` after the URL)."""

    params: ParamTypes
    headers: HeaderTypes
    json: object
    data: ParamTypes | bytes
    content: bytes | str | None
    auth: AuthTypes
    timeout: float | None
    follow_redirects: bool


class _Default:
    """The type of ``USE_CLIENT_DEFAULT``."""

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


#: A per-request argument left at this takes the client's setting (``timeout``, ``auth``,
#: ``follow_redirects``); None is a real value there (no deadline, no auth).
USE_CLIENT_DEFAULT: Any = _Default()

_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_BODILESS = frozenset(("GET", "HEAD", "OPTIONS", "DELETE"))  # no Content-Length: 0 when empty
_HEAD_CACHE_MAX = 512
# Characters a URL may not carry as they are but a user may type (RFC 3986 section 2: space,
# '"', '<', '>', '`' and non-ASCII): percent-encoded as UTF-8, as httpx and browsers do.
# Control characters stay refused (InvalidArgumentError): encoding them would hide an error.
_UNSAFE = re.compile('[ "<>`\u0080-\U0010ffff]+')
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")  # RFC 3986 scheme: an absolute URL
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Fetch's request-body header names: a redirect that drops the body drops these too.
_BODY_HEADERS = ("content-length", "transfer-encoding", "content-type", "content-encoding", "content-language", "content-location")
_private_handlers = itertools.count(1)


class BasicAuth:
    """HTTP Basic authentication (RFC 7617): sets ``Authorization`` on each request."""

    __slots__ = ("_header",)

    def __init__(self, username: str | bytes, password: str | bytes) -> None:
        user = username.encode() if isinstance(username, str) else bytes(username)
        pw = password.encode() if isinstance(password, str) else bytes(password)
        self._header = "Basic " + base64.b64encode(user + b":" + pw).decode("ascii")

    def __call__(self, request: Request) -> Request:
        request.headers["Authorization"] = self._header
        return request


def _auth_fn(auth: object) -> Callable[[Request], Request] | None:
    if auth is None:
        return None
    if isinstance(auth, tuple):
        if len(auth) != 2 or not all(isinstance(p, (str, bytes)) for p in auth):
            raise InvalidArgumentTypeError("auth must be a (username, password) tuple of str, a BasicAuth or a callable")
        return BasicAuth(auth[0], auth[1])
    if callable(auth):
        fn: Callable[[Request], Request] = auth
        return fn
    raise InvalidArgumentTypeError(f"auth must be a (username, password) tuple, a BasicAuth or a callable, got {type(auth).__name__}")


def _primitive(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value)
    raise InvalidArgumentTypeError(f"a query or form value must be str, int, float, bool or None, got {type(value).__name__}")


def _pairs(params: object) -> list[tuple[str, str]]:
    """``params=``/``data=`` as ordered ``(key, value)`` text pairs."""
    if params is None:
        return []
    if isinstance(params, str):
        return parse_qsl(params, keep_blank_values=True)
    items: Iterable[Any]
    if isinstance(params, Mapping):
        items = params.items()
    elif isinstance(params, (bytes, bytearray)):
        raise InvalidArgumentTypeError("params must be a mapping, (key, value) pairs or a str, not bytes")
    elif isinstance(params, Iterable):
        items = params
    else:
        raise InvalidArgumentTypeError(f"params/data must be a mapping, (key, value) pairs or a str, got {type(params).__name__}")
    out: list[tuple[str, str]] = []
    for item in items:
        try:
            key, value = item
        except (TypeError, ValueError):
            raise InvalidArgumentTypeError(f"params/data items must be (key, value) pairs, got {item!r}") from None
        if isinstance(value, (list, tuple)):
            out.extend((str(key), _primitive(v)) for v in value)
        else:
            out.append((str(key), _primitive(value)))
    return out


def _merge(base: list[tuple[str, str]], over: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``base`` with every key that ``over`` has replaced by ``over``'s values (httpx's
    merge: a per-request parameter overrides the client's or the URL's of the same key)."""
    if not over:
        return base
    keys = {k for k, _ in over}
    return [(k, v) for k, v in base if k not in keys] + over


def _timeout(value: object, what: str = "timeout") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentTypeError(f"{what} must be seconds as int or float, or None, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise InvalidArgumentError(f"{what} must be above 0 and finite, got {value!r}")
    return float(value)


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlsplit(url)
    scheme = p.scheme.lower()
    return scheme, (p.hostname or ""), p.port or _DEFAULT_PORTS.get(scheme)


def _requote(url: str) -> str:
    """``url`` with the characters of ``_UNSAFE`` percent-encoded (existing %XX kept)."""
    if _UNSAFE.search(url) is None:
        return url
    return _UNSAFE.sub(lambda m: quote(m.group(0), safe=""), url)


def _remaining(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (a ``time.monotonic()`` value); raises
    ``TimeoutError`` once it has passed (redirect hops share the request's deadline)."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0.0005:
        raise TimeoutError("the request's deadline passed while following redirects")
    return left


class _BaseClient:
    """What ``Client`` and ``AsyncClient`` share: settings, request building, redirects."""

    def __init__(
        self,
        base_url: str | None = None,
        headers: HeaderTypes = None,
        params: ParamTypes = None,
        timeout: float | None = None,
        auth: AuthTypes = None,
        follow_redirects: bool = False,
        engine: Engine | None = None,
        handler: str = "http",
        *,
        max_redirects: int = 20,
        **http_options: Any,
    ) -> None:
        if base_url is not None:
            if not isinstance(base_url, str):
                raise InvalidArgumentTypeError(f"base_url must be a str, got {type(base_url).__name__}")
            p = urlsplit(base_url)
            if p.scheme not in ("http", "https") or not p.netloc:
                raise InvalidArgumentError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
            if not base_url.endswith("/"):
                base_url += "/"
        if not isinstance(follow_redirects, bool):
            raise InvalidArgumentTypeError("follow_redirects must be a bool")
        if isinstance(max_redirects, bool) or not isinstance(max_redirects, int) or max_redirects < 0:
            raise InvalidArgumentError(f"max_redirects must be an int >= 0, got {max_redirects!r}")
        if not isinstance(handler, str):
            raise InvalidArgumentTypeError(f"handler must be a str, got {type(handler).__name__}")
        if "follow_redirects" in http_options or "max_redirects" in http_options:
            raise InvalidArgumentError("follow_redirects and max_redirects are the client's own arguments")
        self.base_url = base_url
        self.headers = Headers({"Accept": "*/*"})
        self.headers.update(Headers(headers))
        self.params = _pairs(params)
        self.timeout = _timeout(timeout)
        self.auth = _auth_fn(auth)
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self._owns_engine = engine is None
        eng = Engine() if engine is None else engine
        if not isinstance(eng, Engine):
            raise InvalidArgumentTypeError(f"engine must be a portway.Engine, got {type(eng).__name__}")
        try:
            if http_options:
                # A private handler with these options; redirects are the client's to follow.
                handler = "portway.client" if engine is None else f"portway.client.{next(_private_handlers)}"
                eng.register_http(handler, follow_redirects=False, **http_options)
            elif not eng.has_handler(handler):
                raise UnknownHandlerError(f"the engine has no handler named {handler!r}")
        except BaseException:
            if engine is None:
                eng.close(drain=False)
            raise
        self._engine = eng
        self._handler = handler
        self._closed = False
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]], bytes] = {}

    @property
    def engine(self) -> Engine:
        """The engine the client sends through (its own unless one was passed)."""
        return self._engine

    @property
    def is_closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the client has been closed")

    def _url(self, url: str, params: ParamTypes) -> str:
        if not isinstance(url, str):
            raise InvalidArgumentTypeError(f"url must be a str, got {type(url).__name__}")
        url = _requote(url)
        if self.base_url is not None and _SCHEME.match(url) is None:
            url = self.base_url + url.lstrip("/")  # httpx: the path is appended to base_url's
        extra = _merge(self.params, _pairs(params))
        if extra:
            p = urlsplit(url)
            query = _merge(parse_qsl(p.query, keep_blank_values=True), extra)
            url = urlunsplit((p.scheme, p.netloc, p.path, urlencode(query), p.fragment))
        return url

    def build_request(
        self,
        method: str,
        url: str,
        *,
        params: ParamTypes = None,
        headers: HeaderTypes = None,
        json: object = None,
        data: ParamTypes | bytes = None,
        content: bytes | str | None = None,
        auth: AuthTypes = USE_CLIENT_DEFAULT,
    ) -> Request:
        """The ``Request`` that ``request()`` would send (auth applied), without sending it."""
        if not isinstance(method, str):
            raise InvalidArgumentTypeError(f"method must be a str, got {type(method).__name__}")
        hdrs = self.headers.copy()
        if headers is not None:
            hdrs.update(Headers(headers))
        body = b""
        if sum(x is not None for x in (json, data, content)) > 1:
            raise InvalidArgumentError("give at most one of json=, data= and content=")
        if content is not None or isinstance(data, (bytes, bytearray, memoryview)):
            raw = content if content is not None else data
            if isinstance(raw, str):
                body = raw.encode()
            elif isinstance(raw, (bytes, bytearray, memoryview)):
                body = bytes(raw)
            else:
                raise InvalidArgumentTypeError(f"content must be bytes or str, got {type(raw).__name__}")
        elif isinstance(data, str):
            body = data.encode()
        elif data is not None:
            body = urlencode(_pairs(data)).encode()
            if "content-type" not in hdrs:
                hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        elif json is not None:
            try:
                body = _json.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            except (TypeError, ValueError) as exc:
                raise InvalidArgumentTypeError(f"json= is not JSON-serializable: {exc}") from None
            if "content-type" not in hdrs:
                hdrs["Content-Type"] = "application/json"
        req = Request(method.upper(), self._url(url, params), hdrs, body)
        p = urlsplit(req.url) if "@" in req.url else None  # (urlsplit only when it may matter)
        if p is not None and (p.username is not None or p.password is not None):  # -> Basic auth
            req.headers["Authorization"] = BasicAuth(unquote(p.username or ""), unquote(p.password or ""))._header
            netloc = p.netloc.rpartition("@")[2]
            req.url = urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))
        fn = self.auth if auth is USE_CLIENT_DEFAULT else _auth_fn(auth)
        if fn is not None:
            req = fn(req)
            if not isinstance(req, Request):
                raise InvalidArgumentTypeError(f"an auth callable must return a Request, got {type(req).__name__}")
        return req

    def _prepare_get(self, params: ParamTypes, headers: HeaderTypes) -> Callable[[str], tuple[str, Headers, bytes]]:
        """For the fan-outs: a function giving a GET's final URL, headers and payload for one
        input URL. In the common case (no per-call ``params``/``headers``, no auth) only the
        URL differs: the requests share one ``Headers`` (nothing mutates it: no auth hook
        runs) and a repeated URL is prepared once (remembered per call, bounded); a URL with
        credentials goes the long way (``build_request``)."""
        if params is not None or headers is not None or self.auth is not None or self.params:

            def each(u: str) -> tuple[str, Headers, bytes]:
                req = self.build_request("GET", u, params=params, headers=headers)
                return req.url, req.headers, self._payload(req)

            return each
        shared = self.headers.copy()
        prepared: dict[str, tuple[str, Headers, bytes]] = {}

        def common(u: str) -> tuple[str, Headers, bytes]:
            p = prepared.get(u) if u.__class__ is str else None
            if p is None:
                if isinstance(u, str) and "@" not in u:
                    req = Request("GET", self._url(u, None), shared)
                else:
                    req = self.build_request("GET", u)
                p = (req.url, req.headers, self._payload(req))
                if len(prepared) >= _HEAD_CACHE_MAX:
                    prepared.clear()
                prepared[u] = p
            return p

        return common

    def _settings(self, timeout: object, follow_redirects: object) -> tuple[float | None, bool]:
        tmo = self.timeout if timeout is USE_CLIENT_DEFAULT else _timeout(timeout)
        follow = self.follow_redirects if follow_redirects is USE_CLIENT_DEFAULT else follow_redirects
        if not isinstance(follow, bool):
            raise InvalidArgumentTypeError("follow_redirects must be a bool")
        return tmo, follow

    def _payload(self, req: Request) -> bytes:
        """The http handler's payload for ``req``. Bodiless requests are cached by method, URL
        and headers (bounded, cleared when full), as ``Engine.http`` caches header-less ones:
        a repeated GET is not validated and formatted again."""
        content = req.content
        if content or req.method not in _BODILESS:
            return build_request(req.method, req.url.partition("#")[0], req.headers._fields, content)
        key = (req.method, req.url, tuple(req.headers._fields))
        cache = self._heads
        head = cache.get(key)
        if head is None:
            head = build_request(req.method, req.url.partition("#")[0], req.headers._fields)  # a fragment never goes out
            if len(cache) >= _HEAD_CACHE_MAX:
                cache.clear()
            cache[key] = head
        return head

    @staticmethod
    def _response(c: Completion, req: Request, history: list[Response]) -> Response:
        """The ``Response`` of an http completion (its ``meta`` list becomes the headers, the
        last pair, ``:http-version``, popped off as ``HttpResponse`` does)."""
        meta = c.meta
        version = meta.pop()[1] if meta and meta[-1][0] == _VERSION_META else "HTTP/1.1"
        return Response(c.code, meta, c.data, req, version, c.queued_ns + c.run_ns, history)

    def _flow(self, request: Request, tmo: float | None, follow: bool) -> Generator[tuple[bytes, float | None], Completion, Response]:
        """One request, redirects included, without I/O: yields each hop's payload and
        timeout, receives its completion, returns the final ``Response``. ``Client.send``
        and ``AsyncClient.send`` drive it, blocking or awaiting. ``tmo`` and ``follow`` are
        the resolved settings (``_settings``)."""
        deadline = None if tmo is None else time.monotonic() + tmo
        c = yield self._payload(request), _remaining(deadline)
        resp = self._response(c, request, [])
        if not follow or resp.status_code not in _REDIRECTS:
            return resp
        return (yield from self._redirects(resp, deadline))

    def _redirects(self, resp: Response, deadline: float | None) -> Generator[tuple[bytes, float | None], Completion, Response]:
        """``_flow`` after the first response ``resp``: follows its redirects (yielding each
        hop's payload and timeout, all within ``deadline``) and returns the final response.
        ``get_many`` starts here only for a response that is a redirect, so the usual
        response costs no generator."""
        history: list[Response] = []
        while True:
            nxt = self._next_request(resp, history)
            if nxt is None:
                return resp
            history = [*history, resp]
            c = yield self._payload(nxt), _remaining(deadline)
            resp = self._response(c, nxt, history)

    def _next_request(self, resp: Response, history: list[Response]) -> Request | None:
        """The request a redirect response asks for (RFC 9110 section 15.4, with the browsers'
        and httpx's 301/302 rules), or None when ``resp`` is not one to follow. Raises
        ``TooManyRedirects`` past ``max_redirects`` and ``ProtocolError`` for a ``Location``
        that is not an http(s) URL."""
        if resp.status_code not in _REDIRECTS:
            return None
        location = resp.headers.get("location")
        if location is None:
            return None
        req = resp.request
        url = urljoin(req.url, _requote(location.strip()))
        p = urlsplit(url)
        if p.scheme not in ("http", "https") or not p.netloc:
            raise ProtocolError(f"redirect to an unsupported URL {url!r} (from {req.url})")
        if not p.fragment and "#" in req.url:  # RFC 9110 section 10.2.2: keep the fragment
            url = url + "#" + req.url.partition("#")[2]
        code, method = resp.status_code, req.method
        if (code in (302, 303) and method != "HEAD") or (code == 301 and method == "POST"):
            method = "GET"
        headers = req.headers.copy()
        old, new = _origin(req.url), _origin(url)
        if old != new:
            upgrade = old[0] == "http" and new[0] == "https" and old[1] == new[1] and old[2] == 80 and new[2] == 443
            if not upgrade:
                headers.pop("Authorization", None)  # credentials never leak to another origin
            headers.pop("Host", None)
        content = req.content
        if method != req.method and method == "GET":
            content = b""
            for name in _BODY_HEADERS:
                headers.pop(name, None)
        nxt = Request(method, url, headers, content)
        if len(history) >= self.max_redirects:
            raise TooManyRedirects(
                f"too many redirects: {req.url} redirected again after {len(history)} (max_redirects), to {url}",
                request=nxt,
                response=resp,
            )
        return nxt


class Client(_BaseClient):
    """A synchronous HTTP client over a portway engine, shaped like ``httpx.Client``.

        with portway.Client(base_url="https://api.example", timeout=10) as client:
            r = client.get("/items", params={"page": 2})
            r.raise_for_status()
            items = r.json()

    ``engine=None`` makes an engine the client owns and closes; ``**http_options`` (the
    ``Engine.register_http`` keywords) then configure its http handler. A shared ``engine``
    may be passed: ``handler`` names one of its http handlers (default ``"http"``; register it
    without ``follow_redirects``: the client follows redirects itself), or, with
    ``**http_options``, the client registers a private handler on it (handlers cannot be
    unregistered: make such clients once, not per request). ``close()`` never closes a shared
    engine. ``timeout`` is the whole request's deadline in seconds, redirects included
    (None: the engine's default); ``max_redirects`` defaults to 20."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the client and the engine it owns (draining what is in flight). Idempotent;
        a request after it raises ``ClosedError``."""
        if not self._closed:
            self._closed = True
            if self._owns_engine:
                self._engine.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        params: ParamTypes = None,
        headers: HeaderTypes = None,
        json: object = None,
        data: ParamTypes | bytes = None,
        content: bytes | str | None = None,
        auth: AuthTypes = USE_CLIENT_DEFAULT,
        timeout: float | None = USE_CLIENT_DEFAULT,
        follow_redirects: bool = USE_CLIENT_DEFAULT,
    ) -> Response:
        """Sends one request and returns its ``Response`` (any status). ``url`` is absolute or
        relative to ``base_url``; ``params`` merge into its query; one of ``json`` (compact
        JSON, ``Content-Type: application/json``), ``data`` (a mapping: form-urlencoded) or
        ``content`` (bytes/str) is the body. Connection, TLS, protocol, body-size errors and
        timeouts raise portway's ``ConnectError``, ``TlsError``, ``ProtocolError``,
        ``BodyTooLargeError``, ``TimeoutError``."""
        self._check_open()
        req = self.build_request(method, url, params=params, headers=headers, json=json, data=data, content=content, auth=auth)
        tmo, follow = self._settings(timeout, follow_redirects)
        return self.send(req, timeout=tmo, follow_redirects=follow)

    def send(self, request: Request, *, timeout: float | None = USE_CLIENT_DEFAULT, follow_redirects: bool = USE_CLIENT_DEFAULT) -> Response:
        """Sends a ``Request`` (from ``build_request``), following redirects if asked."""
        self._check_open()
        flow = self._flow(request, *self._settings(timeout, follow_redirects))
        eng, handler = self._engine, self._handler
        try:
            payload, tmo = next(flow)
            while True:
                payload, tmo = flow.send(eng.submit(handler, payload, tmo).result())
        except StopIteration as done:
            resp: Response = done.value
            return resp

    def get_many(
        self,
        urls: Iterable[str],
        *,
        window: int = 64,
        on_progress: Callable[[int, int], object] | None = None,
        return_exceptions: bool = False,
        params: ParamTypes = None,
        headers: HeaderTypes = None,
        timeout: float | None = USE_CLIENT_DEFAULT,
        follow_redirects: bool = USE_CLIENT_DEFAULT,
    ) -> list[Response]:
        """GETs every URL with at most ``window`` requests in flight and returns the responses
        in input order (``Response.index`` is the position). ``on_progress(done, total)`` is
        called as each result is collected, in order. The first failure raises its error and
        cancels the rest, unless ``return_exceptions=True``: then the error object takes that
        URL's place in the list (typed as ``Response`` for convenience; check with
        ``isinstance``). Every URL is checked before the first request goes out. Without
        per-call ``params``/``headers`` or auth, the responses' ``request.headers`` are one
        shared object: read it, do not change it."""
        self._check_open()
        n = _window(window)
        tmo, follow = self._settings(timeout, follow_redirects)
        # Every URL is checked and formatted before anything goes out.
        prepare = self._prepare_get(params, headers)
        todo = [prepare(u) for u in urls]
        total = len(todo)
        out: list[Any] = [None] * total
        eng, handler = self._engine, self._handler
        response = self._response
        # In flight, in input order: [index, future, deadline, redirect flow or None]. A
        # response is built straight from its completion; only a redirect to follow gets a
        # generator (``_redirects``), which keeps its place in line.
        slots: deque[list[Any]] = deque()
        chunk = max(1, n // 8)
        start = 0
        done = 0
        try:
            while done < total:
                free = n - len(slots)
                if start < total and (free >= chunk or not slots):
                    batch = todo[start : start + free]
                    deadline = None if tmo is None else time.monotonic() + tmo
                    futs = eng.submit_many(handler, [t[2] for t in batch], tmo)  # one native call
                    slots.extend([i, fut, deadline, None] for i, fut in zip(range(start, start + len(batch)), futs))
                    start += len(batch)
                slot = slots[0]
                i, fut, deadline, flow = slot
                try:
                    c = fut.result()
                    if flow is None:
                        url, hdrs, _ = todo[i]
                        resp = response(c, Request("GET", url, hdrs), [])
                        if follow and resp.status_code in _REDIRECTS:
                            flow = slot[3] = self._redirects(resp, deadline)
                            payload, hop_tmo = next(flow)
                            slot[1] = eng.submit(handler, payload, hop_tmo)  # same place in line
                            continue
                    else:
                        payload, hop_tmo = flow.send(c)
                        slot[1] = eng.submit(handler, payload, hop_tmo)
                        continue
                except StopIteration as end:
                    resp = end.value
                    resp.index = i
                    out[i] = resp
                except PortwayError as exc:
                    if flow is not None:
                        flow.close()
                    if not return_exceptions:
                        raise
                    out[i] = exc
                else:
                    resp.index = i
                    out[i] = resp
                slots.popleft()
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
        finally:
            for slot in slots:
                slot[1].cancel()
                if slot[3] is not None:
                    slot[3].close()
        return out

    def get(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        """``request("GET", url, ...)``."""
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        return self.request("OPTIONS", url, **kwargs)

    def delete(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        return self.request("DELETE", url, **kwargs)

    def post(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        return self.request("PATCH", url, **kwargs)


class AsyncClient(_BaseClient):
    """``Client`` for asyncio: the same arguments, ``async`` request methods over
    ``Engine.ahttp``'s machinery, ``aclose()`` and ``async with``. Cancelling the awaiting
    task cancels the native request. ``stream_many`` yields responses as they complete."""

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the client and the engine it owns (the drain runs off the event loop, so
        requests awaited on it still complete). Idempotent."""
        if not self._closed:
            self._closed = True
            if self._owns_engine:
                await asyncio.to_thread(self._engine.close)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: ParamTypes = None,
        headers: HeaderTypes = None,
        json: object = None,
        data: ParamTypes | bytes = None,
        content: bytes | str | None = None,
        auth: AuthTypes = USE_CLIENT_DEFAULT,
        timeout: float | None = USE_CLIENT_DEFAULT,
        follow_redirects: bool = USE_CLIENT_DEFAULT,
    ) -> Response:
        """Awaitable ``Client.request`` (same arguments, responses and errors)."""
        self._check_open()
        req = self.build_request(method, url, params=params, headers=headers, json=json, data=data, content=content, auth=auth)
        tmo, follow = self._settings(timeout, follow_redirects)
        return await self.send(req, timeout=tmo, follow_redirects=follow)

    async def send(self, request: Request, *, timeout: float | None = USE_CLIENT_DEFAULT, follow_redirects: bool = USE_CLIENT_DEFAULT) -> Response:
        """Awaitable ``Client.send``."""
        self._check_open()
        flow = self._flow(request, *self._settings(timeout, follow_redirects))
        eng, handler = self._engine, self._handler
        try:
            payload, tmo = next(flow)
            while True:
                payload, tmo = flow.send(await eng.asubmit(handler, payload, tmo))
        except StopIteration as done:
            resp: Response = done.value
            return resp

    async def stream_many(
        self,
        urls: Iterable[str],
        *,
        window: int = 64,
        params: ParamTypes = None,
        headers: HeaderTypes = None,
        timeout: float | None = USE_CLIENT_DEFAULT,
        follow_redirects: bool = USE_CLIENT_DEFAULT,
    ) -> AsyncIterator[Response]:
        """GETs every URL with at most ``window`` in flight and yields responses as they
        complete; ``Response.index`` is the position of its URL in ``urls``. URLs are read
        only as the window frees up. The first failure raises its error (with a note naming
        the URL's index); leaving the ``async for`` early, an error or cancelling the task
        cancels everything still in flight. As in ``Client.get_many``,
        without per-call ``params``/``headers`` or auth the responses' ``request.headers``
        are one shared object: read it, do not change it."""
        self._check_open()
        n = _window(window)
        tmo, follow = self._settings(timeout, follow_redirects)
        eng, handler = self._engine, self._handler
        start, cancel = eng._asubmit_start, eng._core.cancel_id
        prepare = self._prepare_get(params, headers)
        loop = asyncio.get_running_loop()
        it = enumerate(iter(urls))
        # No task per request: each request is a loop future (settled by the engine's reader)
        # whose one shared callback queues it in ``ready`` and wakes the generator.
        # pending: future -> [index, request, deadline, redirect flow or None, request id].
        pending: dict[asyncio.Future[Completion], list[Any]] = {}
        ready: deque[asyncio.Future[Completion]] = deque()
        waiter: list[asyncio.Future[None] | None] = [None]

        def on_done(fut: asyncio.Future[Completion]) -> None:
            ready.append(fut)
            w = waiter[0]
            if w is not None and not w.done():
                w.set_result(None)

        def send(slot: list[Any], payload: bytes, hop_tmo: float | None) -> None:
            fut, slot[4] = start(handler, payload, hop_tmo)
            fut.add_done_callback(on_done)
            pending[fut] = slot

        more = True
        try:
            while True:
                while more and len(pending) < n:
                    nxt = next(it, None)
                    if nxt is None:
                        more = False
                        break
                    i, url = nxt
                    final, hdrs, payload = prepare(url)
                    deadline = None if tmo is None else time.monotonic() + tmo
                    send([i, Request("GET", final, hdrs), deadline, None, 0], payload, tmo)
                if not pending:
                    return
                while not ready:
                    w = waiter[0] = loop.create_future()
                    try:
                        await w
                    finally:
                        waiter[0] = None
                fut = ready.popleft()
                slot = pending.pop(fut)
                i, req, deadline, flow, _ = slot
                try:
                    c = fut.result()  # a request cancelled elsewhere raises CancelledError
                    if flow is None:
                        resp = self._response(c, req, [])
                        if follow and resp.status_code in _REDIRECTS:
                            flow = slot[3] = self._redirects(resp, deadline)
                            send(slot, *next(flow))  # a redirect: the next hop
                            continue
                    else:
                        send(slot, *flow.send(c))
                        continue
                except StopIteration as end:
                    resp = end.value
                except PortwayError as exc:
                    if flow is not None:
                        flow.close()
                    if hasattr(exc, "add_note"):
                        exc.add_note(f"stream_many: the URL at index {i}")
                    raise
                resp.index = i
                yield resp
        finally:
            # Cancel what is still in flight and wait for the engine to settle it (cancelled,
            # or done if it finished first), so nothing of this call is left running.
            for slot in pending.values():
                cancel(slot[4])
                if slot[3] is not None:
                    slot[3].close()
            if pending:
                await asyncio.wait(pending)

    async def get_many(
        self,
        urls: Iterable[str],
        *,
        window: int = 64,
        params: ParamTypes = None,
        headers: HeaderTypes = None,
        timeout: float | None = USE_CLIENT_DEFAULT,
        follow_redirects: bool = USE_CLIENT_DEFAULT,
    ) -> list[Response]:
        """``stream_many`` collected into input order."""
        out: dict[int, Response] = {}
        async for r in self.stream_many(urls, window=window, params=params, headers=headers, timeout=timeout, follow_redirects=follow_redirects):
            assert r.index is not None
            out[r.index] = r
        return [out[i] for i in range(len(out))]

    async def get(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        """``await request("GET", url, ...)``."""
        return await self.request("GET", url, **kwargs)

    async def head(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        return await self.request("HEAD", url, **kwargs)

    async def options(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        return await self.request("OPTIONS", url, **kwargs)

    async def delete(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        return await self.request("DELETE", url, **kwargs)

    async def post(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Unpack[RequestOptions]) -> Response:
        return await self.request("PATCH", url, **kwargs)
