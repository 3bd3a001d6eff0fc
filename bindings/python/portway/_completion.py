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

    __slots__ = ("id", "user_data", "status", "code", "data", "meta", "queued_ns", "run_ns")

    def __init__(
        self,
        id: int,
        user_data: int,
        status: int,
        code: int,
        data: bytes,
        meta: list[tuple[str, str]],
        queued_ns: int,
        run_ns: int,
    ) -> None:
        self.id = id
        self.user_data = user_data
        self.status = status
        self.code = code
        self.data = data
        self.meta = meta
        self.queued_ns = queued_ns
        self.run_ns = run_ns

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
