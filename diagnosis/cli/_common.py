"""Formatting helpers shared by the verb modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from diagnosis.exceptions import DiagnosisError

__all__ = ["load_topology", "table", "time_offset"]


def table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)), file=out)
    for row in rows:
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths)), file=out)


def load_topology(path):
    """:func:`diagnosis.model.topology.load_topology`, imported when a verb runs (not at start-up)."""
    from diagnosis.model.topology import load_topology as load

    return load(path)


def time_offset(text: str | None):
    if text is None:
        return None
    import pandas as pd

    try:
        return pd.Timedelta(text)
    except ValueError:
        raise DiagnosisError(f"cannot read the time offset {text!r}; use e.g. '8h', '-90s', '2min'") from None
