"""The ctypes copies of the C records and constants, checked field by field against
``include/portway.h`` as a C compiler lays it out.

The binding declares each struct once, in ``portway/_lib.py`` (``_raw`` derives its ``struct``
formats from those classes). This test compiles a small C program against the header that
prints, for every field of every struct the header defines, its offset, size and integer
kind, and compares them with ctypes. Field names come from the header itself, so a field added
to the header and not to the binding fails too (``tests/ffi_layout.rs`` does the same for Rust).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from portway import _lib, _raw

from conftest import REPO

HEADER = REPO / "include" / "portway.h"

# A scalar field's kind as both sides name it: the ctypes type code, and a C11 _Generic over
# the field's type giving the same letters (``P``: anything else, i.e. a pointer or a struct).
_C_KIND = (
    "_Generic((X), _Bool: \"?\", unsigned char: \"B\", unsigned short: \"H\", unsigned int: \"I\", "
    "unsigned long: \"L\", unsigned long long: \"Q\", signed char: \"b\", short: \"h\", int: \"i\", "
    "long: \"l\", long long: \"q\", char *: \"z\", const char *: \"z\", default: \"P\")"
)

# The header's constants the binding copies, by their Python home.
_CONSTANTS = {
    "PORTWAY_STATUS_SLOTS": _lib.STATUS_SLOTS,
    "PORTWAY_DRAIN": _lib.DRAIN,
    "PORTWAY_CANCEL_NOW": _lib.CANCEL_NOW,
    "PORTWAY_ABI_VERSION": _lib.ABI_VERSION,
}


def header_structs(text: str) -> dict[str, list[tuple[str, bool]]]:
    """Every ``struct NAME { ... }`` body of the header: its fields in order, each with
    whether it is an array."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out: dict[str, list[tuple[str, bool]]] = {}
    for name, body in re.findall(r"struct\s+(portway_\w+)\s*\{(.*?)\}", text, flags=re.S):
        decls = [d.strip() for d in body.split(";") if d.strip()]
        out[name] = [(re.findall(r"\w+", d.split("[")[0])[-1], "[" in d) for d in decls]
    return out


def ctypes_structs() -> dict[str, type[ctypes.Structure]]:
    """The binding's ``ctypes.Structure`` classes by C name (``PortwayHttpOptions`` is
    ``portway_http_options``)."""
    out: dict[str, type[ctypes.Structure]] = {}
    for attr, value in vars(_lib).items():
        if isinstance(value, type) and issubclass(value, ctypes.Structure) and attr.startswith("Portway"):
            out["portway" + re.sub(r"([A-Z])", r"_\1", attr[len("Portway"):]).lower()] = value
    return out


def ctypes_kind(ctype: Any) -> str:
    """The ``_C_KIND`` letter ctypes declares for a field type (arrays: their element's)."""
    while issubclass(ctype, ctypes.Array):
        ctype = ctype._type_
    code = getattr(ctype, "_type_", None)
    if isinstance(code, str) and code in "?BHILQbhilqz":
        return code
    return "P"


def c_layout(structs: dict[str, list[tuple[str, bool]]]) -> dict[tuple[str, str], tuple[int, int, str]]:
    """``(struct, field) -> (offset, size, kind)`` from the C compiler; ``(struct, "sizeof")``
    and ``("#define", NAME)`` rows carry the struct size and each constant's value."""
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "portway.h"', "int main(void) {"]
    for name, fields in structs.items():
        lines.append(f'    printf("{name} sizeof %zu 0 -\\n", sizeof(struct {name}));')
        for f, is_array in fields:
            member = f"((struct {name} *)0)->{f}"
            kind = _C_KIND.replace("X", f"{member}[0]" if is_array else member)  # an array: its element
            lines.append(
                f'    printf("{name} {f} %zu %zu %s\\n", offsetof(struct {name}, {f}), '
                f"sizeof({member}), {kind});"
            )
    for const in _CONSTANTS:
        lines.append(f'    printf("#define {const} %llu 0 -\\n", (unsigned long long)({const}));')
    lines += ["    return 0;", "}"]
    return {(r[0], r[1]): (int(r[2]), int(r[3]), r[4]) for r in _compile_and_run("\n".join(lines))}


def _compile_and_run(source: str) -> list[list[str]]:
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        pytest.fail(f"no C compiler ({cc!r}): the layout check needs one (CONTRIBUTING.md, Setup)")
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"portway-layout-{os.getpid()}"
    work.mkdir(exist_ok=True)
    try:
        (work / "layout.c").write_text(source)
        subprocess.run(
            [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", str(HEADER.parent), "-o", str(work / "layout"),
             str(work / "layout.c")],
            check=True,
        )
        out = subprocess.run([str(work / "layout")], check=True, capture_output=True, text=True).stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [line.split() for line in out.splitlines()]


@pytest.fixture(scope="module")
def layout() -> tuple[dict[str, list[tuple[str, bool]]], dict[tuple[str, str], tuple[int, int, str]]]:
    structs = header_structs(HEADER.read_text())
    return structs, c_layout(structs)


def test_every_header_struct_has_a_ctypes_class_with_its_fields(
    layout: tuple[dict[str, list[tuple[str, bool]]], Any],
) -> None:
    structs, _ = layout
    assert len(structs) >= 7, sorted(structs)
    mine = ctypes_structs()
    assert sorted(mine) == sorted(structs), "a struct of the header has no ctypes class in _lib (or the reverse)"
    for name, fields in structs.items():
        declared = [spec[0] for spec in mine[name]._fields_]
        assert declared == [f for f, _ in fields], f"{name}: ctypes fields differ from the header's"


def test_every_ctypes_field_matches_the_c_layout(layout: tuple[Any, dict[tuple[str, str], tuple[int, int, str]]]) -> None:
    _, c = layout
    wrong = []
    for name, cls in ctypes_structs().items():
        if c[(name, "sizeof")][0] != ctypes.sizeof(cls):
            wrong.append(f"sizeof(struct {name}): C {c[(name, 'sizeof')][0]}, ctypes {ctypes.sizeof(cls)}")
        for spec in cls._fields_:
            field, ctype = spec[0], spec[1]
            got = (getattr(cls, field).offset, getattr(cls, field).size, ctypes_kind(ctype))
            if c[(name, field)] != got:
                wrong.append(f"{name}.{field}: C (offset, size, kind) {c[(name, field)]}, ctypes {got}")
    assert not wrong, "\n".join(wrong)


def test_the_copied_constants_match_the_header(layout: tuple[Any, dict[tuple[str, str], tuple[int, int, str]]]) -> None:
    _, c = layout
    assert {k: c[("#define", k)][0] for k in _CONSTANTS} == _CONSTANTS


def test_the_hot_path_struct_formats_read_the_ctypes_layout() -> None:
    # _raw derives these from the ctypes classes; the request and completion records are
    # packed and unpacked with them on every submit and poll.
    assert _raw._REQ.format == "=IIQQQ" and _raw._REQ.size == ctypes.sizeof(_lib.PortwayRequest)
    assert _raw._COMP.format == "=QQIIQQQQQQ" and _raw._COMP.size == ctypes.sizeof(_lib.PortwayCompletion)
    comp = _lib.PortwayCompletion(id=1, user_data=2, status=3, code=4, data=5, len=6, meta_len=8, queued_ns=9, run_ns=10)
    assert _raw._COMP.unpack(bytes(comp)) == (1, 2, 3, 4, 5, 6, 0, 8, 9, 10)
