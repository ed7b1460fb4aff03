"""Incident windows: when each incident happened, what to compare it with, and its truth when known.

A windows file is CSV or JSON Lines (one object per line), one window per
row:

==================  ========  ==================================================================
field               required  meaning
==================  ========  ==================================================================
``id``              yes       unique id; becomes the incident id
``start``           yes       when the incident started (ISO 8601 or epoch; no zone means UTC)
``end``             no        when it ended; default ``start + duration``
``baseline``        no        a duration (``10min``): the baseline is ``[start - baseline, start)``
``baseline_start``  no        or explicit bounds of the baseline period (``baseline_end`` default ``start``)
``baseline_end``    no
``component``       no        the true root-cause component, when known
``fault_mode``      no        its fault mode (a fault mode of that component in the topology)
``fault_type``      no        the source's own label for the fault (``cpu_contention``), kept for reports
``entity``          no        the entity the fault was injected into (``frontend-579b9bff58-t2dbm``)
==================  ========  ==================================================================

In memory a windows table is a DataFrame with :data:`WINDOW_COLUMNS`
(times as datetime64[ns, UTC], the rest str or None), every bound filled
in. Bad rows (no id, a duplicate id, a time that does not parse, an end
before the start, a baseline that ends after the start) are set aside as
:class:`~diagnosis.logs.schema.Reject` values and the rest goes on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from diagnosis._files import atomic_write, atomic_write_text
from diagnosis._time import parse_times
from diagnosis._validation import short_repr
from diagnosis.exceptions import DiagnosisError
from diagnosis.logs.schema import Reject
from diagnosis.telemetry._io import (
    objects,
    open_text,
    read_csv_rows,
    to_timedelta,
)

__all__ = [
    "DEFAULT_BASELINE",
    "DEFAULT_DURATION",
    "WINDOW_COLUMNS",
    "make_windows",
    "quiet_windows",
    "read_windows",
    "write_windows",
]

WINDOW_COLUMNS = (
    "id",
    "start",
    "end",
    "baseline_start",
    "baseline_end",
    "component",
    "fault_mode",
    "fault_type",
    "entity",
)
_TIMES = ("start", "end", "baseline_start", "baseline_end")
_TEXT = ("component", "fault_mode", "fault_type", "entity")
#: Incident period when a window has no ``end``.
DEFAULT_DURATION = "5min"
#: Baseline length when a window gives neither ``baseline`` nor ``baseline_start``.
DEFAULT_BASELINE = "10min"


def make_windows(
    rows: pd.DataFrame | list[dict],
    *,
    duration: str | pd.Timedelta = DEFAULT_DURATION,
    baseline: str | pd.Timedelta = DEFAULT_BASELINE,
    source: str = "(windows)",
    locations: list[str] | None = None,
) -> tuple[pd.DataFrame, list[Reject]]:
    """Validate raw window rows and fill in the missing bounds.

    Parameters
    ----------
    rows : DataFrame or list of dict
        Fields as in the module docstring; values may be strings.
    duration, baseline : duration
        Defaults for a missing ``end`` and a missing baseline.
    source : str
        For the rejects.
    locations : list of str, optional
        Where each row came from (``row 3``, ``line 3``).

    Returns
    -------
    (DataFrame, list of Reject)

    Examples
    --------
    >>> w, rejects = make_windows([{"id": "a", "start": "2024-01-01T10:00:00Z", "component": "cart"}])
    >>> str(w.loc[0, "end"]), str(w.loc[0, "baseline_start"]), rejects
    ('2024-01-01 10:05:00+00:00', '2024-01-01 09:50:00+00:00', [])
    """
    dur = to_timedelta(duration, "duration")
    base = to_timedelta(baseline, "baseline")
    if dur <= pd.Timedelta(0):
        raise DiagnosisError(f"duration must be positive. Got {duration!r} instead.")
    if base <= pd.Timedelta(0):
        raise DiagnosisError(f"baseline must be positive. Got {baseline!r} instead.")
    raw = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows.reset_index(drop=True)
    n = len(raw)
    locs = locations or [f"row {i + 1}" for i in range(n)]
    reason = np.full(n, None, dtype=object)
    fld = np.full(n, None, dtype=object)
    val = np.full(n, None, dtype=object)

    def flag(mask, name, values, why):
        mask = np.asarray(mask, dtype=bool) & (reason == None)
        reason[mask] = why
        fld[mask] = name
        val[mask] = values if values is None or np.isscalar(values) else np.asarray(values, dtype=object)[mask]

    def col(c):
        return raw[c] if c in raw else pd.Series([None] * n, dtype=object)

    ids = col("id").astype(object)
    ids = ids.map(lambda x: str(int(x)) if isinstance(x, (int, np.integer)) else x)
    ok_id = np.array([isinstance(x, str) and x.strip() != "" for x in ids], dtype=bool)
    flag(~ok_id, "id", ids.to_numpy(), "must be a non-empty string")
    dup = ids.duplicated(keep="first").to_numpy() & ok_id
    flag(dup, "id", ids.to_numpy(), "duplicate window id")
    times = {}
    for c in _TIMES:
        t, bad = parse_times(col(c))
        flag(bad, c, col(c).to_numpy(dtype=object), "is not a time (ISO 8601 or epoch)")
        times[c] = t
    flag(times["start"].isna().to_numpy(), "start", None, "is required")
    end = times["end"].fillna(times["start"] + dur)
    flag((end <= times["start"]).to_numpy(), "end", col("end").to_numpy(dtype=object), "must be after start")
    b_len = pd.Series([base] * n, dtype="timedelta64[ns]")
    if "baseline" in raw:
        for i, x in enumerate(raw["baseline"]):
            if x is None or (isinstance(x, float) and np.isnan(x)) or (isinstance(x, str) and not x.strip()):
                continue
            try:
                b_len[i] = to_timedelta(x, "baseline")
            except DiagnosisError:
                flag(np.arange(n) == i, "baseline", x, "is not a duration (e.g. '10min', '600s', 'PT10M')")
    b_end = times["baseline_end"].fillna(times["start"])
    b_start = times["baseline_start"].fillna(b_end - b_len)
    flag(
        (b_end > times["start"]).to_numpy(),
        "baseline_end",
        col("baseline_end").to_numpy(dtype=object),
        "must not be after start",
    )
    flag(
        (b_start >= b_end).to_numpy(),
        "baseline_start",
        col("baseline_start").to_numpy(dtype=object),
        "must be before baseline_end",
    )
    text = {}
    for c in _TEXT:
        s = col(c).astype(object)
        blank = np.array(
            [
                x is None or (isinstance(x, float) and np.isnan(x)) or (isinstance(x, str) and x.strip() == "")
                for x in s
            ],
            dtype=bool,
        )
        not_str = ~blank & ~np.array([isinstance(x, str) for x in s], dtype=bool)
        flag(not_str, c, s.to_numpy(), "must be a string")
        text[c] = np.where(blank | not_str, None, s.map(lambda x: x.strip() if isinstance(x, str) else x).to_numpy())
    orphan = (text["fault_mode"] != None) & (text["component"] == None)
    flag(orphan, "component", None, "is required when fault_mode is given")
    bad = reason != None
    rejects = [
        Reject(source, locs[i], ids.iat[i] if ok_id[i] else None, fld[i], short_repr(val[i]), reason[i])
        for i in np.flatnonzero(bad)
    ]
    good = ~bad
    out = pd.DataFrame(
        {
            "id": ids.to_numpy(dtype=object)[good],
            "start": times["start"][good].reset_index(drop=True),
            "end": end[good].reset_index(drop=True),
            "baseline_start": b_start[good].reset_index(drop=True),
            "baseline_end": b_end[good].reset_index(drop=True),
            **{c: text[c][good] for c in _TEXT},
        }
    )
    for c in _TIMES:
        out[c] = out[c].astype("datetime64[ns, UTC]")
    out["id"] = objects(ids.to_numpy(dtype=object)[good])
    for c in _TEXT:
        out[c] = objects(text[c][good])
    return out[list(WINDOW_COLUMNS)], rejects


def read_windows(
    path: str | os.PathLike,
    *,
    duration: str | pd.Timedelta = DEFAULT_DURATION,
    baseline: str | pd.Timedelta = DEFAULT_BASELINE,
) -> tuple[pd.DataFrame, list[Reject]]:
    """Read a windows file (CSV, or JSON Lines for ``*.jsonl`` / ``*.json``).

    Returns
    -------
    (DataFrame, list of Reject)
        The windows (:data:`WINDOW_COLUMNS`) and the rows set aside.

    Raises
    ------
    DiagnosisError
        When the file cannot be read or has no ``id`` / ``start`` column.
    """
    path = Path(path)
    if not path.is_file():
        raise DiagnosisError(f"{path}: no such windows file")
    source = str(path)
    rejects: list[Reject] = []
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json", ".ndjson")):
        records, locs = [], []
        with open_text(path) as fh:
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    rejects.append(
                        Reject(
                            source, f"line {i}", None, "(line)", short_repr(line.strip()), f"not valid JSON: {exc.msg}"
                        )
                    )
                    continue
                if not isinstance(rec, dict):
                    rejects.append(
                        Reject(source, f"line {i}", None, "(line)", short_repr(rec), "must be a JSON object")
                    )
                    continue
                records.append(rec)
                locs.append(f"line {i}")
        raw = pd.DataFrame.from_records(records) if records else pd.DataFrame({"id": [], "start": []})
    else:
        header, good, bad, numbers = read_csv_rows(path)
        if not header:
            raise DiagnosisError(f"{path}: empty windows file; needs at least the columns 'id' and 'start'")
        for row_no, row in bad:
            rejects.append(
                Reject(
                    source,
                    f"row {row_no}",
                    None,
                    "(row)",
                    short_repr(",".join(row)),
                    f"has {len(row)} fields; the header has {len(header)}",
                )
            )
        raw = pd.DataFrame(good, columns=header, dtype=object)
        locs = [f"row {i}" for i in numbers]
    missing = [c for c in ("id", "start") if c not in raw.columns]
    if missing:
        raise DiagnosisError(
            f"{path}: windows need the columns 'id' and 'start'; missing {missing} (has {list(raw.columns)})"
        )
    unknown = [c for c in raw.columns if c not in (*WINDOW_COLUMNS, "baseline")]
    raw = raw.drop(columns=unknown)
    windows, more = make_windows(raw, duration=duration, baseline=baseline, source=source, locations=locs)
    return windows, rejects + more


def write_windows(windows: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write windows as CSV, or JSON Lines when ``path`` ends in ``.jsonl``; atomically.

    Times are written as ISO 8601 UTC with milliseconds; unknown fields are empty (CSV) or null (JSON).
    """
    path = Path(path)
    missing = [c for c in WINDOW_COLUMNS if c not in windows.columns]
    if missing:
        raise DiagnosisError(f"windows need the columns {list(WINDOW_COLUMNS)}; missing {missing}")
    df = windows[list(WINDOW_COLUMNS)].copy()
    for c in _TIMES:
        t = pd.to_datetime(df[c], utc=True)
        df[c] = [None if pd.isna(x) else x.strftime("%Y-%m-%dT%H:%M:%S.") + f"{x.microsecond // 1000:03d}Z" for x in t]
    df = df.astype(object).where(df.notna(), None)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.lower().endswith((".jsonl", ".ndjson")):
        return atomic_write_text(
            path, (json.dumps({k: v for k, v in zip(df.columns, row)}) + "\n" for row in df.itertuples(index=False))
        )
    return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def quiet_windows(
    windows: pd.DataFrame,
    *,
    span: tuple[pd.Timestamp, pd.Timestamp],
    stride: str | pd.Timedelta | None = None,
    guard: str | pd.Timedelta = "0s",
) -> pd.DataFrame:
    """Windows shaped like ``windows`` but placed where no incident was: the reference for "nothing is wrong".

    Windows of the median incident length, each with the median baseline
    length, are laid every ``stride`` (default: the median incident length)
    across ``span``; those whose incident period, or whose baseline, overlaps
    an incident period of ``windows`` (widened by ``guard`` on both sides) are
    dropped. Only the times of the incidents are used, never their labels.

    Returns
    -------
    DataFrame
        :data:`WINDOW_COLUMNS`, ids ``quiet-N``, no truth.

    Examples
    --------
    >>> w, _ = make_windows([{"id": "a", "start": "2024-01-01T01:00:00Z"}])
    >>> q = quiet_windows(w, span=(pd.Timestamp("2024-01-01T00:00Z"), pd.Timestamp("2024-01-01T02:00Z")))
    >>> len(q), q["start"].min() >= pd.Timestamp("2024-01-01T00:10Z")
    (19, True)
    """
    if len(windows) == 0:
        dur, base = to_timedelta(DEFAULT_DURATION, "duration"), to_timedelta(DEFAULT_BASELINE, "baseline")
    else:
        dur = (windows["end"] - windows["start"]).median()
        base = (windows["baseline_end"] - windows["baseline_start"]).median()
    step = dur if stride is None else to_timedelta(stride, "stride")
    g = to_timedelta(guard, "guard")
    lo, hi = pd.Timestamp(span[0]), pd.Timestamp(span[1])
    lo = lo.tz_localize("UTC") if lo.tzinfo is None else lo.tz_convert("UTC")
    hi = hi.tz_localize("UTC") if hi.tzinfo is None else hi.tz_convert("UTC")
    starts = pd.date_range(lo + base, hi - dur, freq=step) if hi - dur >= lo + base else pd.DatetimeIndex([], tz="UTC")
    starts = starts.as_unit("ns")
    inc_lo = (
        (windows["start"] - g).to_numpy(dtype="datetime64[ns]")
        if len(windows)
        else np.array([], dtype="datetime64[ns]")
    )
    inc_hi = (
        (windows["end"] + g).to_numpy(dtype="datetime64[ns]") if len(windows) else np.array([], dtype="datetime64[ns]")
    )
    s = starts.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    q_lo = s - base.to_timedelta64()
    q_hi = s + dur.to_timedelta64()
    overlap = (
        (q_lo[:, None] < inc_hi[None, :]) & (q_hi[:, None] > inc_lo[None, :])
        if len(inc_lo)
        else np.zeros((len(s), 0), bool)
    )
    keep = ~overlap.any(axis=1) if overlap.shape[1] else np.ones(len(s), dtype=bool)
    s = starts[keep]
    out = pd.DataFrame(
        {
            "id": objects([f"quiet-{i}" for i in range(len(s))]),
            "start": pd.Series(s, dtype="datetime64[ns, UTC]"),
            "end": pd.Series(s + dur, dtype="datetime64[ns, UTC]"),
            "baseline_start": pd.Series(s - base, dtype="datetime64[ns, UTC]"),
            "baseline_end": pd.Series(s, dtype="datetime64[ns, UTC]"),
        }
    )
    for c in _TEXT:
        out[c] = objects([None] * len(out))
    return out[list(WINDOW_COLUMNS)]
