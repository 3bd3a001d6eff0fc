"""``Headers``: the case-insensitive multi-dict of HTTP headers that ``Client`` and
``Response`` use, shaped like httpx's (lowercased keys, repeated fields joined by ``", "``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Union

__all__ = ["Headers", "HeaderTypes"]

#: What a ``headers=`` argument may be: a mapping, ``(name, value)`` pairs, ``Headers``, None.
HeaderTypes = Union["Headers", Mapping[str, str], Iterable[tuple[str, str]], None]


class Headers(MutableMapping[str, str]):
    """HTTP header fields in wire order, names compared case-insensitively.

    ``h["set-cookie"]`` joins repeated fields with ``", "`` (RFC 9110 section 5.3);
    ``get_list(name)`` gives them one by one, ``multi_items()`` every field with its name
    lowercased, ``raw`` every field as sent or received. Keys iterate lowercased and once each.
    Setting a name replaces every field of that name; deleting a missing name raises
    ``KeyError``. Equality ignores name case and the order of different names."""

    __slots__ = ("_fields",)
    _fields: list[tuple[str, str]]

    def __init__(self, headers: HeaderTypes = None) -> None:
        fields: list[tuple[str, str]]
        if headers is None:
            fields = []
        elif isinstance(headers, Headers):
            fields = list(headers._fields)
        elif isinstance(headers, Mapping):
            fields = [(_name(k), _value(v)) for k, v in headers.items()]
        else:
            fields = [(_name(k), _value(v)) for k, v in headers]
        self._fields = fields

    @classmethod
    def _wrap(cls, fields: list[tuple[str, str]]) -> Headers:
        """A ``Headers`` over ``fields`` as they are (a response's list: no copy, no checks)."""
        h = cls.__new__(cls)
        h._fields = fields
        return h

    @property
    def raw(self) -> list[tuple[str, str]]:
        """Every field as ``(name, value)``, names in their original case, in order."""
        return list(self._fields)

    def multi_items(self) -> list[tuple[str, str]]:
        """Every field as ``(lowercased name, value)``, repeated names repeated."""
        return [(k.lower(), v) for k, v in self._fields]

    def get_list(self, key: str, split_commas: bool = False) -> list[str]:
        """Every value of ``key`` (case-insensitive) in order; ``split_commas`` also splits
        each value on commas (for list-valued fields such as ``Vary``)."""
        low = key.lower()
        values = [v for k, v in self._fields if k.lower() == low]
        if not split_commas:
            return values
        return [part.strip() for v in values for part in v.split(",")]

    def copy(self) -> Headers:
        return Headers(self)

    def __getitem__(self, key: str) -> str:
        values = self.get_list(key)
        if not values:
            raise KeyError(key)
        return ", ".join(values)

    def __setitem__(self, key: str, value: str) -> None:
        name, val = _name(key), _value(value)
        low = name.lower()
        self._fields = [(k, v) for k, v in self._fields if k.lower() != low]
        self._fields.append((name, val))

    def __delitem__(self, key: str) -> None:
        low = key.lower()
        kept = [(k, v) for k, v in self._fields if k.lower() != low]
        if len(kept) == len(self._fields):
            raise KeyError(key)
        self._fields = kept

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        low = key.lower()
        return any(k.lower() == low for k, _ in self._fields)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k.lower() for k, _ in self._fields))

    def __len__(self) -> int:
        return len({k.lower() for k, _ in self._fields})

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            theirs = other.multi_items()
        elif isinstance(other, Mapping):
            theirs = [(str(k).lower(), str(v)) for k, v in other.items()]
        elif isinstance(other, list):
            theirs = [(str(k).lower(), str(v)) for k, v in other]
        else:
            return NotImplemented
        return sorted(self.multi_items()) == sorted(theirs)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


def _name(key: object) -> str:
    if isinstance(key, bytes):
        return key.decode("latin-1")
    return str(key)


def _value(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)
