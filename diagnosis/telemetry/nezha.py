"""The Nezha fault-injection data (IntelligentDDS/Nezha, FSE 2023, MIT): fault lists and metric files.

**Fault lists** (``fault_list.json``) map each hour to a list of injections::

    {"04": [{"inject_time": "2022-08-22 04:02:07", "inject_timestamp": "1661140927",
             "inject_pod": "frontend-579b9bff58-t2dbm", "inject_type": "return"}, ...]}

:func:`import_nezha` turns one into incident windows
(:mod:`diagnosis.telemetry.windows`): the window starts at ``inject_time``
(the clock of the metrics' ``Time`` column; a time without a zone is UTC),
lasts ``duration``, and its baseline is the ``baseline`` before it. The
root-cause component is the pod's service (:data:`~diagnosis.telemetry.entities.NEZHA_POD_RULE`),
and the fault type maps to a fault mode of the default service kind
(:data:`NEZHA_FAULT_MODES`).

**Clocks.** ``inject_timestamp`` is a second clock. In the Train Ticket
labels (2023-01-29) it runs about 8 hours behind ``inject_time`` (the
injector logged local time for one and UTC for the other) and repeats one
value for two faults; :func:`import_nezha` uses ``inject_time`` and reports
the offset it found.

**Metric files** of a ``metric/`` folder (read through
:func:`~diagnosis.telemetry.metrics.read_metrics`): the wide per-pod
``<pod>_metric.csv``, the per-edge ``source_50.csv`` / ``destination_50.csv``
and ``front_service.csv``; see :mod:`diagnosis.telemetry.metrics`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from diagnosis._time import parse_times
from diagnosis._validation import short_repr
from diagnosis.exceptions import DiagnosisError
from diagnosis.logs.schema import Reject
from diagnosis.telemetry.entities import EDGE_SEPARATOR, EntityMap
from diagnosis.telemetry.quality import _Tally
from diagnosis.telemetry.windows import DEFAULT_BASELINE, DEFAULT_DURATION, make_windows

__all__ = ["NEZHA_FAULT_MODES", "NezhaImport", "import_nezha", "metric_table_parser", "skip_reason"]

#: Nezha fault type -> fault mode of the default ``service`` kind (``diagnosis/data/defaults.yaml``).
#: ``return`` and ``exception`` are code-level faults (a changed return value, a thrown error): the
#: nearest default mode is ``bad_deploy``.
NEZHA_FAULT_MODES: Mapping[str, str] = MappingProxyType(
    {
        "cpu_contention": "cpu_saturation",
        "cpu_consumed": "cpu_saturation",
        "network_delay": "network_latency",
        "return": "bad_deploy",
        "exception": "bad_deploy",
    }
)
_POD_HEADER = ("Time", "TimeStamp", "PodName")
_FRONT_HEADER = ("Time", "TimeStamp", "ServiceName")
_EDGE_FILE = re.compile(r"^(?P<side>source|destination)_(?P<q>\d+)\.csv(\.gz)?$")


@dataclass(frozen=True, slots=True)
class NezhaImport:
    """What :func:`import_nezha` read.

    Attributes
    ----------
    source : str
        The fault list.
    faults : int
        Injections listed (malformed ones included).
    windows : int
        Windows made.
    by_type : Mapping[str, int]
        Windows per fault type.
    clock_offsets : Mapping[str, int]
        ``inject_time - inject_timestamp`` rounded to whole hours (``"+8h"``,
        ``"+0h"``) -> number of injections: the two clocks of the labels.
    clock_jitter : int
        Injections whose offset is more than 2 s off a whole hour.
    max_jitter_seconds : float
        The largest such deviation.
    repeated_timestamps : int
        Injections whose ``inject_timestamp`` repeats an earlier one.
    rejects : tuple of Reject
        Injections set aside (a missing field, a time that does not parse).
    """

    source: str
    faults: int
    windows: int
    by_type: Mapping[str, int] = field(default_factory=dict)
    clock_offsets: Mapping[str, int] = field(default_factory=dict)
    clock_jitter: int = 0
    max_jitter_seconds: float = 0.0
    repeated_timestamps: int = 0
    rejects: tuple[Reject, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "by_type", MappingProxyType(dict(sorted(self.by_type.items()))))
        object.__setattr__(self, "clock_offsets", MappingProxyType(dict(self.clock_offsets)))

    def lines(self) -> list[str]:
        """A short human-readable summary."""
        out = [
            f"{self.source}: {self.faults} injections -> {self.windows} windows ({', '.join(f'{k} {v}' for k, v in self.by_type.items())}); {len(self.rejects)} set aside"
        ]
        if set(self.clock_offsets) - {"+0h"} or self.clock_jitter:
            parts = ", ".join(f"{n} at {k}" for k, n in self.clock_offsets.items())
            out.append(
                f"  inject_time - inject_timestamp: {parts}; {self.clock_jitter} more than 2 s off a whole hour "
                f"(up to {self.max_jitter_seconds:.0f} s); windows use inject_time"
            )
        if self.repeated_timestamps:
            out.append(
                f"  {self.repeated_timestamps} injections repeat an earlier inject_timestamp (ignored: windows use inject_time)"
            )
        return out


def import_nezha(
    fault_list: str | os.PathLike,
    *,
    duration: str | pd.Timedelta = DEFAULT_DURATION,
    baseline: str | pd.Timedelta = DEFAULT_BASELINE,
    fault_modes: Mapping[str, str] | None = None,
    entity_map: EntityMap | None = None,
) -> tuple[pd.DataFrame, NezhaImport]:
    """Turn a Nezha ``fault_list.json`` into incident windows.

    Parameters
    ----------
    fault_list : path
        The JSON file: hour -> list of ``{inject_time, inject_timestamp, inject_pod, inject_type}``.
    duration : duration, default ``"5min"``
        The fault period after ``inject_time``.
    baseline : duration, default ``"10min"``
        The baseline period before ``inject_time``.
    fault_modes : mapping, optional
        Fault type -> fault mode; default :data:`NEZHA_FAULT_MODES`. A type
        not listed keeps its component and has no fault mode.
    entity_map : EntityMap, optional
        Pod -> component; default the Nezha pod rule.

    Returns
    -------
    (DataFrame, NezhaImport)
        The windows (:data:`~diagnosis.telemetry.windows.WINDOW_COLUMNS`, in
        time order; ids ``nezha-YYYYMMDD-HHMMSS``) and the import report.

    Raises
    ------
    DiagnosisError
        When the file cannot be read or is not a mapping of lists.
    """
    path = Path(fault_list)
    source = str(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DiagnosisError(f"{path}: cannot read the fault list: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise DiagnosisError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from None
    except RecursionError:
        raise DiagnosisError(f"{path}: the JSON is nested too deeply to be a fault list") from None
    if not isinstance(doc, Mapping):
        raise DiagnosisError(
            f"{path}: a Nezha fault list maps hours to lists of injections. Got a JSON {type(doc).__name__} instead."
        )
    modes = NEZHA_FAULT_MODES if fault_modes is None else fault_modes
    emap = entity_map or EntityMap.default()
    rejects: list[Reject] = []
    rows: list[dict[str, Any]] = []
    locs: list[str] = []
    stamps: list[Any] = []
    n_faults = 0
    for hour in sorted(doc):
        items = doc[hour]
        if not isinstance(items, list):
            rejects.append(Reject(source, f"[{hour!r}]", None, hour, short_repr(items), "must be a list of injections"))
            continue
        for k, item in enumerate(items):
            n_faults += 1
            loc = f"[{hour!r}][{k}]"
            if not isinstance(item, Mapping):
                rejects.append(Reject(source, loc, None, "(injection)", short_repr(item), "must be an object"))
                continue
            missing = [
                f for f in ("inject_time", "inject_pod") if not isinstance(item.get(f), str) or not item.get(f).strip()
            ]
            if missing:
                rejects.append(
                    Reject(
                        source,
                        loc,
                        None,
                        missing[0],
                        short_repr(item.get(missing[0])),
                        "is required (a non-empty string)",
                    )
                )
                continue
            pod = item["inject_pod"].strip()
            ftype = item.get("inject_type")
            ftype = ftype.strip() if isinstance(ftype, str) and ftype.strip() else None
            rows.append(
                {
                    "start": item["inject_time"],
                    "component": emap.component(pod),
                    "fault_mode": modes.get(ftype) if ftype else None,
                    "fault_type": ftype,
                    "entity": pod,
                }
            )
            locs.append(loc)
            stamps.append(item.get("inject_timestamp"))
    raw = pd.DataFrame(rows, columns=["start", "component", "fault_mode", "fault_type", "entity"])
    start, bad = parse_times(raw["start"])
    raw["id"] = [f"nezha-{t:%Y%m%d-%H%M%S}" if not pd.isna(t) else None for t in start]
    # Two injections in the same second would collide: number the repeats.
    seen: dict[str, int] = {}
    for i, x in enumerate(raw["id"]):
        if x is not None:
            seen[x] = seen.get(x, 0) + 1
            if seen[x] > 1:
                raw.loc[i, "id"] = f"{x}-{seen[x]}"
    raw.loc[bad, "id"] = [f"bad-{i}" for i in np.flatnonzero(bad)]
    windows, more = make_windows(raw, duration=duration, baseline=baseline, source=source, locations=locs)
    rejects += [Reject(r.source, r.location, None, r.field, r.value, r.reason) for r in more]
    # The second clock.
    ts, _ = parse_times(pd.Series(stamps, dtype=object))
    offset = (start - ts).dt.total_seconds().to_numpy()
    valid = ~np.isnan(offset)
    hours = np.round(offset[valid] / 3600.0)
    dev = np.abs(offset[valid] - hours * 3600.0)
    clusters = pd.Series([f"{int(h):+d}h" for h in hours], dtype=object).value_counts().to_dict() if valid.any() else {}
    repeated = int(pd.Series([str(x) for x in stamps if x is not None], dtype=object).duplicated().sum())
    windows = windows.sort_values("start", kind="stable").reset_index(drop=True)
    report = NezhaImport(
        source=source,
        faults=n_faults,
        windows=len(windows),
        by_type=windows["fault_type"].fillna("(none)").value_counts().to_dict(),
        clock_offsets=clusters,
        clock_jitter=int((dev > 2).sum()),
        max_jitter_seconds=float(dev.max()) if len(dev) else 0.0,
        repeated_timestamps=repeated,
        rejects=tuple(rejects),
    )
    return windows, report


# --------------------------------------------------------------------------- metric files
Parser = Callable[[list[str], list[list[str]], np.ndarray, str, _Tally], tuple[pd.DataFrame, list[str]]]


def metric_table_parser(header: list[str], path: Path) -> Parser | None:
    """The parser for a Nezha metric file with this header, or None when it is not one."""
    if tuple(header[:3]) == _POD_HEADER:
        return _parse_pod
    if tuple(header[:3]) == _FRONT_HEADER:
        return _parse_front
    m = _EDGE_FILE.match(path.name)
    if m and len(header) > 2 and [h.lower() for h in header[:2]] == ["time", "timestamp"]:
        metric = f"edge_latency_p{m['q']}_{m['side']}"
        return lambda h, rows, numbers, source, tally: _parse_edges(h, rows, numbers, source, tally, metric)
    return None


def skip_reason(header: list[str], path: Path) -> str | None:
    """Why a known non-metric Nezha file is skipped, or None."""
    if [h.lower() for h in header[:3]] == ["source", "target", "weight"]:
        return "a call graph (Source,Target,Weight), not metrics"
    return None


def _times(col: list[str], numbers: np.ndarray, source: str, tally: _Tally, name: str) -> tuple[pd.Series, np.ndarray]:
    t, bad = parse_times(pd.Series(col, dtype=object))
    bad = bad | t.isna().to_numpy()
    for i in np.flatnonzero(bad)[:20]:
        tally.reject(source, f"row {numbers[i]}", name, col[i], "is not a time")
    if bad.sum() > 20:
        tally.reject(source, "(more rows)", name, "...", "is not a time", count=int(bad.sum()) - 20)
    return t, bad


def _clock_note(table: pd.DataFrame, t: pd.Series, entity: pd.Series, source: str) -> list[str]:
    """Compare the file's two clocks (Time and TimeStamp); note a disagreement per entity."""
    ts, _ = parse_times(table["TimeStamp"])
    off = (t - ts).dt.total_seconds()
    notes = []
    for ent, o in off.groupby(entity.to_numpy()):
        o = o.dropna()
        far = o.abs() > 2
        if far.any():
            notes.append(
                f"{source}: TimeStamp disagrees with Time for {int(far.sum())} of {len(o)} rows of {ent} "
                f"(median Time - TimeStamp {o.median():+.0f} s); Time is used"
            )
    return notes


def _parse_pod(header, rows, numbers, source, tally):
    from diagnosis.telemetry.metrics import wide_to_long

    table = pd.DataFrame(rows, columns=header, dtype=object)
    t, bad = _times(table["Time"].tolist(), numbers, source, tally, "Time")
    pod = table["PodName"].str.strip()
    no_pod = (pod == "").to_numpy()
    for i in np.flatnonzero(no_pod & ~bad):
        tally.reject(source, f"row {numbers[i]}", "PodName", "", "is empty")
    keep = ~(bad | no_pod)
    notes = _clock_note(table[keep], t[keep], pod[keep], source)
    metrics = [h for h in header[3:] if h]
    rows_no = numbers[keep]
    return wide_to_long(
        table[keep].reset_index(drop=True),
        t[keep].reset_index(drop=True),
        pod[keep].to_numpy(),
        metrics,
        source,
        rows_no,
        tally,
    ), notes


def _parse_front(header, rows, numbers, source, tally):
    from diagnosis.telemetry.metrics import wide_to_long

    table = pd.DataFrame(rows, columns=header, dtype=object)
    t, bad = _times(table["Time"].tolist(), numbers, source, tally, "Time")
    name = table["ServiceName"].str.strip().str.lower()
    keep = ~(bad | (name == "").to_numpy())
    metrics = [h for h in header[3:] if h]
    rows_no = numbers[keep]
    return wide_to_long(
        table[keep].reset_index(drop=True),
        t[keep].reset_index(drop=True),
        name[keep].to_numpy(),
        metrics,
        source,
        rows_no,
        tally,
    ), []


def _parse_edges(header, rows, numbers, source, tally, metric):
    from diagnosis.telemetry.metrics import wide_to_long

    table = pd.DataFrame(rows, columns=header, dtype=object)
    t, bad = _times(table[header[0]].tolist(), numbers, source, tally, header[0])
    keep = ~bad
    notes = []
    parts = []
    rows_no = numbers[keep]
    sub = table[keep].reset_index(drop=True)
    times = t[keep].reset_index(drop=True)
    for col in header[2:]:
        caller, sep, callee = col.partition("_")
        if not sep or "_" in callee or not caller:
            notes.append(f"{source}: column {col!r} is not 'caller_callee' with one underscore; skipped")
            continue
        long = wide_to_long(
            sub[[col]].rename(columns={col: metric}),
            times,
            f"{caller}{EDGE_SEPARATOR}{callee}",
            [metric],
            source,
            rows_no,
            tally,
        )
        parts.append(long)
    if not parts:
        return wide_to_long(sub, times, "", [], source, rows_no, tally), notes
    return pd.concat(parts, ignore_index=True), notes
