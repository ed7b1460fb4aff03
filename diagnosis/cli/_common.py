"""Formatting helpers shared by the verb modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

__all__ = ["table", "time_offset"]


def table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)), file=out)
    for row in rows:
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths)), file=out)


def time_offset(text: str | None):
    if text is None:
        return None
    from diagnosis._time import parse_duration

    return parse_duration(text, name="--metrics-offset/--traces-offset", caller="diagnosis detect", allow_negative=True)
