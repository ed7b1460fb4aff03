"""Metric adapters: long tables and the Nezha wide per-pod CSVs -> one long sample table.

Everything the detectors read is one *long* table of samples (the shape a
flattened Prometheus range-query export has):

=============  ==========================  =====================================================
column         dtype                       meaning
=============  ==========================  =====================================================
``time``       datetime64[ns, UTC]         when the sample was taken (on the reference clock)
``entity``     str                         who emitted it: a pod, an instance, or an edge ``caller->callee``
``component``  str or None                 the topology component (:class:`~diagnosis.telemetry.entities.EntityMap`);
                                           ``caller->callee`` for an edge; None when unmapped
``metric``     str                         the metric's name (``CpuUsageRate(%)``, ``edge_latency_p50_source``)
``value``      float64                     NaN when the source had no value
=============  ==========================  =====================================================

sorted by time. Input formats, told apart by their header:

* **long** (CSV, ``.csv.gz`` or Parquet): columns ``timestamp`` (or ``time``,
  ``ts``), ``entity`` (or ``pod``, ``instance``, ``service``), ``metric`` (or
  ``name``, ``__name__``) and ``value``; any other column is ignored.
* **Nezha** (``metric/`` folders of the Nezha data): the wide per-pod
  ``<pod>_metric.csv`` (one row per minute, one column per metric), the
  per-edge ``source_50.csv`` / ``destination_50.csv`` (median latency of
  each ``caller_callee`` call edge seen at the caller / the callee, read as
  metrics ``edge_latency_p50_source`` / ``edge_latency_p50_destination`` of
  the entity ``caller->callee``) and ``front_service.csv`` (the entry
  service; its ``ServiceName`` lower-cased is the entity).
  ``dependency.csv`` is a call graph, not metrics, and is skipped.
* **wide** (CSV): a time column then one ``<entity>_<metric>`` column per
  series (the RCD / RCAEval layout).
* **Prometheus** (``.json``, ``.json.gz``): saved ``/api/v1/query_range`` or
  ``/api/v1/query`` responses; labels -> entity and metric as in
  :mod:`diagnosis.telemetry.prometheus`.

Times may be ISO 8601 (no zone means UTC), Go's ``time.String()`` form, or
epoch numbers. A Nezha pod file has two clocks, ``Time`` and ``TimeStamp``;
``Time`` is used (the labels of the data are on it) and any disagreement is
reported as a note (in the 2022-08-22 data, adservice's ``TimeStamp`` is
200,000,000 s ahead).

``time_offset`` shifts every time of a source onto the reference clock
(the clock of the incident windows): pass ``"8h"`` for a source whose clock
runs 8 hours behind.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from diagnosis._time import NAN_TEXT, parse_times
from diagnosis.exceptions import DiagnosisError
from diagnosis.telemetry._io import (
    as_paths,
    objects,
    read_csv_rows,
    to_timedelta,
)
from diagnosis.telemetry.entities import EntityMap
from diagnosis.telemetry.quality import ReadReport, _Tally

__all__ = ["METRIC_COLUMNS", "MetricSamples", "long_samples", "read_metrics"]

METRIC_COLUMNS = ("time", "entity", "component", "metric", "value")
_ALIASES = {
    "time": ("timestamp", "time", "ts", "datetime"),
    "entity": ("entity", "pod", "instance", "service", "container", "target"),
    "metric": ("metric", "name", "__name__", "metric_name"),
    "value": ("value", "val", "y"),
}
_PATTERNS = ("*.csv", "*.csv.gz", "*.parquet", "*.json", "*.json.gz")


@dataclass(frozen=True)
class MetricSamples:
    """Metric samples in long form (columns :data:`METRIC_COLUMNS`) and the reader's report."""

    samples: pd.DataFrame
    report: ReadReport

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def entities(self) -> tuple[str, ...]:
        return tuple(sorted(self.samples["entity"].unique()))

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(sorted(self.samples["metric"].unique()))


def long_samples(
    df: pd.DataFrame, *, entity_map: EntityMap | None = None, time_offset: str | pd.Timedelta | None = None
) -> MetricSamples:
    """Normalise an in-memory long table (columns named as in :data:`METRIC_COLUMNS` or their aliases).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"timestamp": ["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"],
    ...                    "pod": ["cart-7d4f8b9c6d-x2k4z"] * 2, "metric": ["cpu"] * 2, "value": [0.5, 0.7]})
    >>> s = long_samples(df)
    >>> s.samples[["component", "metric", "value"]].to_dict("list")
    {'component': ['cart', 'cart'], 'metric': ['cpu', 'cpu'], 'value': [0.5, 0.7]}
    """
    tally = _Tally()
    cols = _long_columns([str(c) for c in df.columns])
    if cols is None:
        raise DiagnosisError(
            f"a long metric table needs columns time, entity, metric and value (or their aliases {_ALIASES}). Got {list(df.columns)} instead."
        )
    raw = pd.DataFrame({k: df[v].reset_index(drop=True) for k, v in cols.items()})
    part = _normalise_long(raw, "(frame)", tally)
    result = _finish([part], ["(frame)"], tally, {}, [], entity_map, time_offset)
    return MetricSamples(result.samples, _replace_rows(result.report, len(df)))


def read_metrics(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    entity_map: EntityMap | None = None,
    time_offset: str | pd.Timedelta | None = None,
    max_examples: int = 100,
) -> MetricSamples:
    """Read metric files (long tables, wide CSVs, Nezha CSVs, Prometheus JSON) into one long sample table.

    Parameters
    ----------
    paths : path, folder, or list of them
        A folder is read whole (``*.csv``, ``*.csv.gz``, ``*.parquet``,
        ``*.json``, ``*.json.gz``, in name order); files that are not metric tables are skipped and listed
        in the report.
    entity_map : EntityMap, optional
        Entity -> component; default :meth:`EntityMap.default` (the Nezha pod rule).
    time_offset : duration, optional
        Added to every time, to put this source on the reference clock.
    max_examples : int, default 100
        How many rejected rows the report keeps (all are counted).

    Returns
    -------
    MetricSamples
        ``samples`` (the module's column contract) and ``report``: malformed
        rows (wrong number of fields, a time that does not parse), cells that
        are not numbers, empty cells, duplicates, skipped files, unmapped
        entities, clock notes.

    Raises
    ------
    DiagnosisError
        When a path does not exist or no file holds metrics.
    """
    files = as_paths(paths, patterns=_PATTERNS)
    from diagnosis.telemetry import nezha, prometheus

    tally = _Tally(max_examples)
    parts: list[pd.DataFrame] = []
    read: list[str] = []
    skipped: dict[str, str] = {}
    notes: list[str] = []
    rows_total = 0
    for path in files:
        source = str(path)
        if prometheus.is_query_file(path):
            frame, reason, _ = prometheus.read_query_file(path, tally)
            if frame is None:
                skipped[source] = reason
                continue
            rows_total += len(frame)
            parts.append(frame)
            read.append(source)
            continue
        if path.suffix == ".parquet":
            try:
                df = pd.read_parquet(path)
            except (OSError, ValueError) as exc:
                raise DiagnosisError(f"{path}: cannot read the Parquet file: {exc}") from None
            cols = _long_columns([str(c) for c in df.columns])
            if cols is None:
                skipped[source] = f"no time/entity/metric/value columns (has {list(df.columns)[:8]})"
                continue
            rows_total += len(df)
            parts.append(
                _normalise_long(pd.DataFrame({k: df[v].astype(object) for k, v in cols.items()}), source, tally)
            )
            read.append(source)
            continue
        header, good, bad, numbers = read_csv_rows(path)
        if not header:
            skipped[source] = "empty file"
            continue
        parser = nezha.metric_table_parser(header, path)
        cols = _long_columns(header)
        if parser is None and cols is None:
            parser = _entity_metric_parser(header)
        if parser is None and cols is None:
            skipped[source] = nezha.skip_reason(header, path) or f"not a metric table (columns {header[:6]})"
            continue
        rows_total += len(good) + len(bad)
        for row_no, row in bad:
            tally.reject(
                source, f"row {row_no}", "(row)", ",".join(row), f"has {len(row)} fields; the header has {len(header)}"
            )
        read.append(source)
        if parser is not None:
            part, note = parser(header, good, numbers, source, tally)
            parts.append(part)
            notes.extend(note)
        else:
            table = pd.DataFrame(good, columns=header, dtype=object)
            raw = pd.DataFrame({k: table[v] for k, v in cols.items()})
            raw.index = pd.Index(numbers)
            parts.append(_normalise_long(raw, source, tally))
    if not read:
        where = ", ".join(str(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths))
        raise DiagnosisError(
            f"{where}: no metric tables found ({len(skipped)} files skipped: {dict(list(skipped.items())[:3])})"
        )
    result = _finish(parts, read, tally, skipped, notes, entity_map, time_offset)
    return MetricSamples(result.samples, _replace_rows(result.report, rows_total))


_WIDE_TIME = ("time", "timestamp", "ts", "datetime", "date")


def _entity_metric_parser(header: list[str]):
    """A wide table ``time, <entity>_<metric>, ...`` (the RCD / RCAEval layout), or None.

    The first column is the time (``time``, ``timestamp``, ...); every other
    column is ``<entity>_<metric>``, split at the first underscore
    (``carts_cpu`` -> entity ``carts``, metric ``cpu``; ``carts-db_latency-50``
    -> ``carts-db``, ``latency-50``). A second copy of the time column
    (``time.1``, as some RCAEval files carry) is ignored.
    """
    if len(header) < 2 or header[0].strip().lower() not in _WIDE_TIME:
        return None
    copy = re.compile(rf"^{re.escape(header[0].strip().lower())}\.\d+$")
    rest = [h for h in header[1:] if h.strip() and not copy.match(h.strip().lower())]
    if not rest or not all("_" in h.strip("_") for h in rest):
        return None

    def parse(h, rows, numbers, source, tally):
        from diagnosis.telemetry.nezha import _times

        table = pd.DataFrame(rows, columns=h, dtype=object)
        t, bad = _times(table[h[0]].tolist(), numbers, source, tally, h[0])
        keep = ~bad
        parts = []
        for col in rest:
            ent, _, metric = col.strip().partition("_")
            value, missing = _numbers(table.loc[keep, col].reset_index(drop=True), source, col, numbers[keep], tally)
            tally.missing += missing
            parts.append(pd.DataFrame({"time": t[keep].to_numpy(), "entity": ent, "metric": metric, "value": value}))
        out = pd.concat(parts, ignore_index=True)
        out["time"] = out["time"].astype("datetime64[ns, UTC]")
        return out, []

    return parse


def _replace_rows(report: ReadReport, rows: int) -> ReadReport:
    from dataclasses import replace

    return replace(report, rows=rows)


def _long_columns(header: list[str]) -> dict[str, str] | None:
    lower = {h.lower(): h for h in header}
    out = {}
    for key, names in _ALIASES.items():
        hit = next((lower[n] for n in names if n in lower), None)
        if hit is None:
            return None
        out[key] = hit
    return out


def _numbers(
    values: pd.Series, source: str, field_name: str, rows: np.ndarray, tally: _Tally
) -> tuple[np.ndarray, int]:
    """Values as float64 (NaN for empty cells and cells that are not numbers); count both."""
    s = values.astype(object)
    num = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, copy=True)  # writable: inf -> NaN below
    nan = np.isnan(num)
    missing = 0
    if nan.any():
        text = s[nan]
        empty = np.array(
            [
                x is None or (isinstance(x, float) and np.isnan(x)) or (isinstance(x, str) and x.strip() in NAN_TEXT)
                for x in text
            ],
            dtype=bool,
        )
        missing = int(empty.sum())
        bad_rows = rows[nan][~empty]
        for r, v in zip(bad_rows[:5], text[~empty][:5]):
            tally.reject(source, f"row {r}", field_name, v, "is not a number", whole_row=False)
        if len(bad_rows) > 5:
            tally.reject(
                source,
                f"rows {bad_rows[5]}..",
                field_name,
                "...",
                "is not a number",
                whole_row=False,
                count=len(bad_rows) - 5,
            )
    inf = np.isinf(num)
    if inf.any():
        for r in rows[inf][:5]:
            tally.reject(source, f"row {r}", field_name, "inf", "is not a finite number", whole_row=False)
        if inf.sum() > 5:
            tally.reject(
                source,
                "(more rows)",
                field_name,
                "inf",
                "is not a finite number",
                whole_row=False,
                count=int(inf.sum()) - 5,
            )
        num[inf] = np.nan
    return num, missing


def _normalise_long(raw: pd.DataFrame, source: str, tally: _Tally) -> pd.DataFrame:
    """Columns time, entity, metric, value (raw values) -> typed rows; bad rows set aside."""
    rows = np.asarray(raw.index, dtype=np.int64) if raw.index.dtype.kind == "i" else np.arange(1, len(raw) + 1)
    t, bad_t = parse_times(raw["time"])
    null_t = t.isna().to_numpy() & ~bad_t
    ent = raw["entity"].astype(object)
    bad_e = ~np.array([isinstance(x, str) and x.strip() != "" for x in ent], dtype=bool)
    met = raw["metric"].astype(object)
    bad_m = ~np.array([isinstance(x, str) and x.strip() != "" for x in met], dtype=bool)
    for mask, fld, reason in ((bad_t, "time", "is not a time (ISO 8601, Go time or epoch)"), (null_t, "time", "is empty"),
                              (bad_e & ~bad_t & ~null_t, "entity", "must be a non-empty string"),
                              (bad_m & ~bad_t & ~null_t & ~bad_e, "metric", "must be a non-empty string")):  # fmt: skip
        for r, v in zip(rows[mask], raw[fld].to_numpy()[mask] if fld in raw else []):
            tally.reject(source, f"row {r}", fld, v, reason)
    keep = ~(bad_t | null_t | bad_e | bad_m)
    value, missing = _numbers(raw["value"][keep].reset_index(drop=True), source, "value", rows[keep], tally)
    tally.missing += missing
    return pd.DataFrame(
        {
            "time": t[keep].reset_index(drop=True),
            "entity": ent[keep].astype(str).str.strip().to_numpy(dtype=object),
            "metric": met[keep].astype(str).str.strip().to_numpy(dtype=object),
            "value": value,
        }
    )


def wide_to_long(
    table: pd.DataFrame,
    times: pd.Series,
    entities: pd.Series | str,
    metric_columns: list[str],
    source: str,
    rows: np.ndarray,
    tally: _Tally,
) -> pd.DataFrame:
    """Melt a wide table (one column per metric) into long rows, counting bad and empty cells."""
    parts = []
    n = len(table)
    ent = np.full(n, entities, dtype=object) if isinstance(entities, str) else np.asarray(entities, dtype=object)
    for col in metric_columns:
        value, missing = _numbers(table[col].reset_index(drop=True), source, col, rows, tally)
        tally.missing += missing
        parts.append(pd.DataFrame({"time": times.to_numpy(), "entity": ent, "metric": col, "value": value}))
    if not parts:
        return pd.DataFrame({"time": pd.Series(dtype="datetime64[ns, UTC]"), "entity": [], "metric": [], "value": []})
    out = pd.concat(parts, ignore_index=True)
    out["time"] = out["time"].astype("datetime64[ns, UTC]")
    return out


def _finish(
    parts, files, tally: _Tally, skipped: Mapping[str, str], notes: list[str], entity_map, time_offset
) -> MetricSamples:
    entity_map = entity_map or EntityMap.default()
    if parts:
        df = pd.concat(parts, ignore_index=True)
    else:
        df = pd.DataFrame({"time": pd.Series(dtype="datetime64[ns, UTC]"), "entity": [], "metric": [], "value": []})
    df["time"] = df["time"].astype("datetime64[ns, UTC]")
    if time_offset is not None:
        df["time"] = df["time"] + to_timedelta(time_offset, "time_offset")
    dup = df.duplicated(["entity", "metric", "time"], keep="first").to_numpy()
    n_dup = int(dup.sum())
    if n_dup:
        df = df[~dup]
    df = df.sort_values(["time", "entity", "metric"], kind="stable").reset_index(drop=True)
    df.insert(2, "component", objects(entity_map.map(df["entity"])))
    unmapped = tuple(sorted(df.loc[df["component"].isna(), "entity"].unique()))
    df["entity"] = objects(df["entity"])
    df["metric"] = objects(df["metric"])
    df["value"] = df["value"].astype(np.float64)
    report = ReadReport(
        files=tuple(files),
        rows=0,
        malformed=tally.malformed,
        bad_values=tally.bad_values,
        missing_values=tally.missing,
        duplicates=n_dup,
        by_reason=Counter(tally.reasons),
        examples=tuple(tally.examples),
        skipped_files=skipped,
        unmapped_entities=unmapped,
        notes=tuple(notes),
    )
    return MetricSamples(df[list(METRIC_COLUMNS)], report)
