"""``BatchResult``: the items of one batch (``Engine.batch``), read from the columnar C view.

A batch is one ``portway_batch_submit`` call (one buffer built with ``b"".join``, one
``array('Q')`` of offsets) and one completion; its n results are copied out with one
``string_at`` per column (statuses, codes, offsets, data) instead of one object per item.
Items become ``bytes`` on demand: one at a time when indexed, all at once (one
``struct.unpack`` of the data, no Python code per item) when iterated or sliced.
"""

from __future__ import annotations

import itertools
import operator
import struct
from array import array
from collections.abc import Iterator, Sequence
from ctypes import byref, c_void_p, string_at
from typing import overload

from ._completion import Completion
from ._errors import PortwayError, Status, check, error_for
from ._lib import LIB, PortwayBatchView
from ._raw import _meta_pairs

__all__ = ["BatchResult"]

# The Structs that split a batch's data into its items, by the item lengths they split (the
# offsets' bytes): batches of the same shape (fixed-size records, repeated payloads) reuse one
# instead of formatting and compiling n fields again. Bounded: at most _SHAPES_MAX entries, each
# of at most _SHAPE_ITEMS_MAX items (a 16,384-item Struct and its key are ~0.7 MB).
_SHAPES: dict[bytes, struct.Struct] = {}
_SHAPES_MAX = 4
_SHAPE_ITEMS_MAX = 16384


def _split(data: bytes, offsets: array[int]) -> tuple[bytes, ...]:
    """Every item ``data[offsets[i] : offsets[i+1]]`` as ``bytes``, in one C call: a Struct of
    one ``"<len>s"`` field per item (``offsets[0]`` is 0 and ``offsets[-1]`` is ``len(data)``)."""
    n = len(offsets) - 1
    if n <= 0:
        return ()
    key = offsets.tobytes()
    st = _SHAPES.get(key)
    if st is None:
        lengths = tuple(map(operator.sub, itertools.islice(offsets, 1, None), offsets))
        st = struct.Struct("<" + "%ds" * n % lengths)
        if n <= _SHAPE_ITEMS_MAX:
            if len(_SHAPES) >= _SHAPES_MAX:
                _SHAPES.clear()  # race-free under concurrent batches, unlike evicting one
            _SHAPES[key] = st
    return st.unpack(data)


def _all_zero(column: array[int]) -> bool:
    """True when every entry of ``column`` is 0 (one C scan, no int object per entry)."""
    return column.tobytes() == bytes(column.itemsize * len(column))


class BatchResult(Sequence[bytes]):
    """The results of ``Engine.batch``, in submit order: ``result[i]`` is item ``i``'s bytes
    (its response, or its error message when it failed: check ``status(i)`` or ``ok``).

    ``status(i)`` is a ``Status``; ``code(i)`` the handler code (the HTTP status for "http");
    ``headers(i)`` the handler's pairs (the response headers for "http"); ``failures()`` the
    indexes of failed items; ``raise_first()`` raises the first failure's error.
    """

    __slots__ = ("_statuses", "_codes", "_offsets", "_data", "_meta_offsets", "_meta", "_items")

    def __init__(
        self,
        statuses: array[int],
        codes: array[int],
        offsets: array[int],
        data: bytes,
        meta_offsets: array[int],
        meta: list[tuple[str, str]],
    ) -> None:
        self._statuses = statuses
        self._codes = codes
        self._offsets = offsets  # len + 1 entries into data
        self._data = data
        self._meta_offsets = meta_offsets
        self._meta = meta
        # Every item as bytes, made on first iteration (then ``_data`` is dropped: the items
        # hold the same bytes).
        self._items: tuple[bytes, ...] | None = None

    def _all(self) -> tuple[bytes, ...]:
        # Another thread may be making the items too: ``_items`` is set before ``_data`` is
        # dropped, so data read before ``_items`` is checked is whole, or the items are there.
        data = self._data
        items = self._items
        if items is None:
            items = self._items = _split(data, self._offsets)
            self._data = b""
        return items

    def _bytes(self) -> bytes:
        """Every item's bytes, one after the other (as ``portway_batch_view.data``)."""
        data = self._data  # before ``_items``: see ``_all``
        items = self._items
        return data if items is None else b"".join(items)

    @classmethod
    def _join(cls, parts: list[BatchResult]) -> BatchResult:
        """One result from the results of consecutive sub-batches."""
        if len(parts) == 1:
            return parts[0]
        statuses, codes, offsets, meta_offsets = array("I"), array("I"), array("Q", [0]), array("Q", [0])
        meta: list[tuple[str, str]] = []
        for p in parts:
            statuses.extend(p._statuses)
            codes.extend(p._codes)
            base, mbase = offsets[-1], meta_offsets[-1]
            offsets.extend(o + base for o in p._offsets[1:])
            meta_offsets.extend(o + mbase for o in p._meta_offsets[1:])
            meta.extend(p._meta)
        return cls(statuses, codes, offsets, b"".join(p._bytes() for p in parts), meta_offsets, meta)

    def __len__(self) -> int:
        return len(self._statuses)

    @overload
    def __getitem__(self, i: int) -> bytes: ...

    @overload
    def __getitem__(self, i: slice) -> list[bytes]: ...

    def __getitem__(self, i: int | slice) -> bytes | list[bytes]:
        if isinstance(i, slice):
            return list(self._all()[i])
        data = self._data  # before ``_items``: see ``_all``
        items = self._items
        if items is not None:
            try:
                return items[i]
            except IndexError:
                raise IndexError("batch index out of range") from None
        n = len(self._statuses)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("batch index out of range")
        o = self._offsets
        return data[o[i] : o[i + 1]]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._all())

    def status(self, i: int) -> Status:
        """Item ``i``'s status."""
        return Status(self._statuses[i])

    def code(self, i: int) -> int:
        """Item ``i``'s handler code (the HTTP status for "http")."""
        return self._codes[i]

    def headers(self, i: int) -> list[tuple[str, str]]:
        """Item ``i``'s pairs (for "http": the response headers, then ``:http-version``)."""
        if i < 0:
            i += len(self._statuses)
        return self._meta[self._meta_offsets[i] : self._meta_offsets[i + 1]]

    @property
    def ok(self) -> bool:
        """True when every item succeeded."""
        return _all_zero(self._statuses)

    def failures(self) -> list[int]:
        """The indexes of the items that failed, in order."""
        statuses = self._statuses
        if _all_zero(statuses):
            return []
        return [i for i, s in enumerate(statuses) if s]

    def error(self, i: int) -> PortwayError | None:
        """Item ``i``'s error (None when it succeeded)."""
        st = self._statuses[i]
        return error_for(st, self[i].decode("utf-8", "replace")) if st else None

    def raise_first(self) -> None:
        """Raises the error of the first failed item, if any."""
        for i in self.failures()[:1]:
            st = self._statuses[i]
            raise error_for(st, f"batch item {i}: " + self[i].decode("utf-8", "replace"))

    def __repr__(self) -> str:
        return f"BatchResult(n={len(self)}, failures={len(self.failures())})"


class BatchValue:
    """The transform of a batch's future: the items the poller read for it before the release
    (kept here, with the future, so a batch nobody waits for any more takes its items along)."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result: BatchResult | None = None

    def __call__(self, c: Completion) -> BatchResult:
        if self.result is None:  # a batch's completion is always read before it is settled
            raise PortwayError(f"batch {c.id}: its items were not read")
        return self.result


def read_batch(eng_p: c_void_p, completion_addr: int) -> BatchResult:
    """Copies out the items of the polled (not yet released) batch completion at
    ``completion_addr``: one copy per column."""
    v = PortwayBatchView()
    check(LIB.portway_batch_result(eng_p, completion_addr, byref(v)))
    n = v.n
    statuses, codes, offsets, meta_offsets = array("I"), array("I"), array("Q"), array("Q")
    statuses.frombytes(string_at(v.statuses, 4 * n))
    codes.frombytes(string_at(v.codes, 4 * n))
    offsets.frombytes(string_at(v.offsets, 8 * (n + 1)))
    meta_offsets.frombytes(string_at(v.meta_offsets, 8 * (n + 1)))
    data = string_at(v.data, offsets[n]) if offsets[n] else b""
    pairs = meta_offsets[n]
    meta = _meta_pairs(v.meta, pairs) if pairs else []
    return BatchResult(statuses, codes, offsets, data, meta_offsets, meta)
