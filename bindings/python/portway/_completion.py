"""``Completion``: the value type of one finished request, copied out of the engine."""

from __future__ import annotations

from ._errors import PortwayError, Status, error_for, status_label

__all__ = ["Completion"]


class Completion:
    """The one completion of an accepted request, copied out of the engine.

    ``data`` is the response (or the error message when ``status`` is not OK), ``code`` the
    handler-defined code (the HTTP status for "http"), ``meta`` the handler-defined pairs.
    ``user_data`` is the token the binding used to route the completion to its future.
    """

    __slots__ = ("id", "user_data", "status", "code", "data", "_meta", "_raw_meta", "queued_ns", "run_ns")

    def __init__(
        self,
        id: int,
        user_data: int,
        status: int,
        code: int,
        data: bytes,
        meta: list[tuple[str, str]] | None,
        queued_ns: int,
        run_ns: int,
        raw_meta: list[bytes | None] | None = None,
    ) -> None:
        self.id = id
        self.user_data = user_data
        self.status = status
        self.code = code
        self.data = data
        # The poller passes the pairs as copied strings (``raw_meta``, ``_raw._meta_raw``) and
        # None here: they are decoded when ``meta`` is first read.
        self._meta = meta
        self._raw_meta = raw_meta
        self.queued_ns = queued_ns
        self.run_ns = run_ns

    @property
    def meta(self) -> list[tuple[str, str]]:
        """The handler-defined ``(key, value)`` pairs (for "http": the response headers, then
        ``(":http-version", ...)`` until an ``HttpResponse`` pops it), decoded on first read."""
        m = self._meta
        if m is None:
            raw = self._raw_meta
            m = self._meta = _decode_meta(raw) if raw else []
            self._raw_meta = None
        return m

    @meta.setter
    def meta(self, value: list[tuple[str, str]]) -> None:
        self._meta = value
        self._raw_meta = None

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    def error(self) -> PortwayError:
        """The exception this completion's status maps to (for a non-OK status)."""
        exc = error_for(self.status, self.data.decode("utf-8", "replace"))
        exc.completion = self  # type: ignore[attr-defined]
        return exc

    def __repr__(self) -> str:
        return (
            f"Completion(id={self.id}, status={status_label(self.status)}, "
            f"code={self.code}, data={self.data[:64]!r}, meta={self.meta[:4]!r})"
        )


def _decode_meta(raw: list[bytes | None]) -> list[tuple[str, str]]:
    """``_meta_raw``'s strings as pairs, decoded (UTF-8, invalid bytes replaced). Valid UTF-8
    (the usual case) is decoded in one call over the strings joined with NUL, which none of
    them contains, and split back."""
    try:
        strs = b"\0".join(raw).decode().split("\0")  # type: ignore[arg-type]
    except (TypeError, UnicodeDecodeError):  # a NULL string, or invalid UTF-8 somewhere
        strs = [(b or b"").decode("utf-8", "replace") for b in raw]
    it = iter(strs)
    return list(zip(it, it))
