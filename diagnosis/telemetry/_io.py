"""Private I/O helpers shared by the telemetry readers: tolerant CSV rows, times, atomic writes."""

from __future__ import annotations

import csv
import gzip
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from diagnosis._time import parse_duration
from diagnosis.exceptions import DiagnosisError


def objects(values) -> pd.Series:
    """An object Series whose missing values are None (pandas 3 would infer ``str`` with NaN)."""
    s = pd.Series(
        np.asarray(values, dtype=object) if not isinstance(values, pd.Series) else values.to_numpy(dtype=object),
        dtype=object,
    )
    return s.where(s.notna(), None)


def as_paths(paths, *, patterns: tuple[str, ...]) -> list[Path]:
    """Files from a path, a folder (matching ``patterns``, sorted by name) or a list of either."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted({f for pat in patterns for f in p.glob(pat) if f.is_file()})
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise DiagnosisError(f"{p}: no such file or folder")
    return out


def open_text(path: Path):
    """Open a text file, gunzipping ``*.gz``."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def read_csv_rows(path: Path) -> tuple[list[str], list[list[str]], list[tuple[int, list[str]]], np.ndarray]:
    """Header, the rows with as many fields as the header, the others with their 1-based data row number,
    and the data row numbers of the good rows.

    Blank lines are skipped silently; a repeated header line counts as a bad row.
    """
    try:
        with open_text(path) as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return [], [], [], np.zeros(0, dtype=np.int64)
            header = [h.strip() for h in header]
            n = len(header)
            good: list[list[str]] = []
            numbers: list[int] = []
            bad: list[tuple[int, list[str]]] = []
            for i, row in enumerate(reader, start=1):
                if not row:
                    continue
                if len(row) == n and row != header:
                    good.append(row)
                    numbers.append(i)
                else:
                    bad.append((i, row))
    except (OSError, EOFError, gzip.BadGzipFile, csv.Error) as exc:
        raise DiagnosisError(f"{path}: cannot read the file: {exc}") from None
    return header, good, bad, np.asarray(numbers, dtype=np.int64)


def to_timedelta(value, what: str, *, caller: str = "diagnosis.telemetry") -> pd.Timedelta:
    """A duration by :func:`diagnosis._time.parse_duration` (a bare number is seconds); may be negative."""
    return parse_duration(value, name=what, caller=caller, allow_negative=True)
