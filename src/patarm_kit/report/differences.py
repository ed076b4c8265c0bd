"""Differences between a stored file and its rebuilt twin, number by number and cell by cell:
what `verify` and `compare` report.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

TOLERANCE = 1e-12
_ABSENT = object()  # a key one side does not have


@dataclass(frozen=True)
class Difference:
    """One disagreement: the file it is in, the field (a dotted path, a row and column, a line) and what differs."""

    file: str
    field: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.detail}"


# ---------------------------------------------------------------- comparing JSON values


def _absent(value: Any) -> bool:
    """A missing key, None and NaN all mean "no value" (pandas writes NaN where a row has no column)."""
    return value is _ABSENT or value is None or (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _field_differences(a: Any, b: Any, path: str, tolerance: float) -> Iterator[tuple[str, Any, Any]]:
    """(field, a, b) wherever two JSON values differ: numbers beyond `tolerance`, the rest exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            yield from _field_differences(a.get(key, _ABSENT), b.get(key, _ABSENT), f"{path}.{key}" if path else str(key), tolerance)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path} (length)", len(a), len(b)
        else:
            for index, (x, y) in enumerate(zip(a, b)):
                yield from _field_differences(x, y, f"{path}[{index}]", tolerance)
    elif _absent(a) and _absent(b):
        return
    elif _is_number(a) and _is_number(b):
        if not abs(a - b) <= tolerance:
            yield path, a, b
    elif a != b or isinstance(a, bool) != isinstance(b, bool):  # JSON true is not 1
        yield path, a, b


def value_differences(a: Any, b: Any, file: str, labels: tuple[str, str], path: str = "", tolerance: float = TOLERANCE) -> list[Difference]:
    """Every field where `a` and `b` differ, as Differences naming `file` and the field."""
    show = lambda value: "(absent)" if value is _ABSENT else repr(value)  # noqa: E731
    return [Difference(file, where, f"{labels[0]} {show(x)}, {labels[1]} {show(y)}")
            for where, x, y in _field_differences(a, b, path, tolerance)]


def _count_numbers(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_count_numbers(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_numbers(v) for v in value)
    return int(_is_number(value))


# ---------------------------------------------------------------- comparing text files with their rebuild


def _cells(text: str, markdown: bool) -> list[list[str]]:
    """A CSV or Markdown table as rows of cells (the Markdown rule line dropped, escaped pipes kept)."""
    if not markdown:
        return list(csv.reader(io.StringIO(text)))
    lines = [line for number, line in enumerate(text.splitlines()) if number != 1]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]] for line in lines]


def table_differences(file: str, stored: str, rebuilt: str, markdown: bool = False) -> list[Difference]:
    """A table file against its rebuild: byte for byte, each differing cell named by row and column."""
    if stored == rebuilt:
        return []
    old, new = _cells(stored, markdown), _cells(rebuilt, markdown)
    header = new[0] if new else []
    if old[:1] != new[:1]:
        return [Difference(file, "(header)", f"stored {old[:1]}, rebuilt {new[:1]}")]
    found = []
    for number, (a, b) in enumerate(zip(old[1:], new[1:]), start=1):
        label = f"row {number} ({b[0][:40]})" if b else f"row {number}"
        for index in range(max(len(a), len(b))):
            x, y = (row[index] if index < len(row) else "(absent)" for row in (a, b))
            if x != y:
                column = header[index] if index < len(header) else f"column {index + 1}"
                found.append(Difference(file, f"{label}.{column}", f"stored {x!r}, rebuilt {y!r}"))
    if len(old) != len(new):
        found.append(Difference(file, "(rows)", f"stored {len(old) - 1} rows, rebuilt {len(new) - 1}"))
    return found or [Difference(file, "(text)", "the cells agree but the bytes differ from the rebuilt file")]


def text_differences(file: str, stored: str, rebuilt: str) -> list[Difference]:
    """A text file against its rebuild, byte for byte: the first differing line."""
    if stored == rebuilt:
        return []
    old, new = stored.splitlines(), rebuilt.splitlines()
    for number, (a, b) in enumerate(zip(old, new), start=1):
        if a != b:
            return [Difference(file, f"line {number}", f"stored {a[:120]!r}, rebuilt {b[:120]!r}")]
    return [Difference(file, "(end)", f"stored {len(old)} lines, rebuilt {len(new)} lines")]
