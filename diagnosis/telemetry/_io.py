"""Private I/O helpers shared by the telemetry readers: tolerant CSV rows, times, atomic writes."""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from diagnosis._time import parse_duration
from diagnosis.exceptions import DiagnosisError

_GO_MONOTONIC = re.compile(r"\s+m=[+-][0-9.]+$")
_GO_ZONE_NAME = re.compile(r"(\s[+-]\d{4})\s+[A-Z]{2,5}$")
NAN_TEXT = frozenset({"", "nan", "NaN", "NAN", "null", "NULL", "None", "NA", "N/A"})


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


def parse_times(values: pd.Series | Iterable) -> tuple[pd.Series, np.ndarray]:
    """Parse times; return (UTC times as datetime64[ns, UTC], mask of values that did not parse).

    Accepts ISO 8601 (a time without a zone is UTC), Go's ``time.String()``
    form (``2022-08-22 03:51:19.79 +0000 UTC m=+0.30``) and Unix epoch
    numbers, in seconds, milliseconds, microseconds or nanoseconds (told
    apart by magnitude). Empty values are NaT and not flagged.
    """
    s = pd.Series(values).reset_index(drop=True)
    n = len(s)
    out = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]")
    if n == 0:
        return out, np.zeros(0, dtype=bool)
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(s):
        t = pd.to_datetime(s, utc=True).astype("datetime64[ns, UTC]")
        return t, np.zeros(n, dtype=bool)
    if s.dtype.kind in "iuf":
        return _epoch(s.tolist()).astype("datetime64[ns, UTC]"), np.zeros(n, dtype=bool) | (s.isna().to_numpy() & False)
    if s.notna().all():
        arr = np.asarray(s.astype(str).to_numpy(), dtype=str)
        if np.char.isdigit(arr).all():
            t = _epoch(arr)
            return t.astype("datetime64[ns, UTC]"), t.isna().to_numpy()
    text = s.astype(object).where(s.notna(), None)
    is_num = pd.to_numeric(text, errors="coerce")
    numeric = is_num.notna().to_numpy()
    empty = np.array([x is None or (isinstance(x, str) and x.strip() in NAN_TEXT) for x in text], dtype=bool)
    if numeric.any():
        out[numeric] = _epoch(text[numeric].tolist()).to_numpy()
    strings = ~numeric & ~empty
    if strings.any():
        st = pd.Series([str(x).strip() for x in text[strings]], dtype=object)
        st = st.str.replace(_GO_MONOTONIC, "", regex=True).str.replace(_GO_ZONE_NAME, r"\1", regex=True)
        parsed = pd.to_datetime(st, format="ISO8601", utc=True, errors="coerce")
        if parsed.isna().any():  # mixed layouts: parse the rest one by one
            rest = parsed.isna().to_numpy()
            parsed[rest] = pd.to_datetime(st[rest], utc=True, errors="coerce", format="mixed")
        out[strings] = parsed.astype("datetime64[ns, UTC]").to_numpy()
    bad = strings & out.isna().to_numpy()
    bad |= numeric & out.isna().to_numpy()
    return out.astype("datetime64[ns, UTC]"), bad


def _epoch(values: list) -> pd.Series:
    """Unix epoch numbers (unit told apart by magnitude) as UTC times; integers keep nanosecond precision."""
    try:  # fast path: every value an integer (or a string of one)
        fast = np.asarray(values)
        if fast.dtype.kind in "iu" or (fast.dtype.kind == "U" and np.char.isdigit(np.char.lstrip(fast, "+-")).all()):
            fast = fast.astype(np.int64)
            mag = float(np.median(np.abs(fast.astype(np.float64)))) if len(fast) else 0.0
            scale = 10**9 if mag < 1e11 else 10**6 if mag < 1e14 else 10**3 if mag < 1e17 else 1
            lim = np.iinfo(np.int64).max // scale
            ok = np.abs(fast) < lim
            t = pd.Series(pd.to_datetime(np.where(ok, fast, 0) * scale, unit="ns", utc=True)).astype(
                "datetime64[ns, UTC]"
            )
            return t.where(ok)
    except (ValueError, OverflowError, TypeError):
        pass
    ints = []
    exact = True
    for x in values:
        if isinstance(x, str):
            x = x.strip()
            if x.lstrip("+-").isdigit():
                ints.append(int(x))
                continue
            x = float(x)
        if isinstance(x, (int, np.integer)) and not isinstance(x, bool) or float(x).is_integer():
            ints.append(int(x))
        else:
            exact = False
            break
    if exact:
        v = np.array(ints, dtype=object)
        mag = float(np.median(np.abs(v.astype(np.float64)))) if len(v) else 0.0
    else:
        v = np.array([float(x) for x in values], dtype=np.float64)
        mag = float(np.nanmedian(np.abs(v))) if len(v) else 0.0
    scale = 10**9 if mag < 1e11 else 10**6 if mag < 1e14 else 10**3 if mag < 1e17 else 1
    if exact:
        ns = [i * scale for i in v]
        ok = np.array([abs(i) < 9.2e18 for i in ns], dtype=bool)
        arr = np.array([i if good else 0 for i, good in zip(ns, ok)], dtype=np.int64)
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            f = v * scale
        ok = np.isfinite(f) & (np.abs(f) < 9.2e18)
        arr = np.where(ok, f, 0).round().astype(np.int64)
    t = pd.Series(pd.to_datetime(arr, unit="ns", utc=True)).astype("datetime64[ns, UTC]")
    return t.where(ok)


def to_timedelta(value, what: str, *, caller: str = "diagnosis.telemetry") -> pd.Timedelta:
    """A duration by :func:`diagnosis._time.parse_duration` (a bare number is seconds); may be negative."""
    return parse_duration(value, name=what, caller=caller, allow_negative=True)
