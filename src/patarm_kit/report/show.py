"""What a notebook cell shows: a figure or a table, or one line saying why this run has none.

Notebooks run on every profile, and a profile may leave a stage or a bench out: its section then
says so in one line under its heading, never an empty heading, "None" or "Empty DataFrame".
"""

from __future__ import annotations

from typing import Any


def show(value: Any, absent: str) -> None:
    """Display `value` (a figure, an image, a table), or print `absent` when it is None or an empty table."""
    from IPython.display import display  # a notebook's display; the library runs without IPython too

    if value is None or getattr(value, "empty", False):
        print(absent)
    else:
        display(value)
