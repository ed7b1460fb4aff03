"""Trace adapters: spans in the OpenTelemetry shape -> a span table and per-edge call statistics.

A span table has one row per span:

=============  ===================  =========================================================
column         dtype                meaning
=============  ===================  =========================================================
``trace_id``   str
``span_id``    str                  unique within its trace
``parent_id``  str or None          None for a root span
``entity``     str                  the emitting pod or service
``component``  str or None          its topology component (:class:`~diagnosis.telemetry.entities.EntityMap`)
``operation``  str or None
``start``      datetime64[ns, UTC]
``end``        datetime64[ns, UTC]
``error``      float64              1.0 the span failed, 0.0 it did not, NaN no status recorded
=============  ===================  =========================================================

Input formats:

* **CSV** (``.csv``, ``.csv.gz``) with a header; column names are matched
  case-insensitively against the OpenTelemetry names and common exports
  (``TraceID``/``trace_id``/``traceId``, ``SpanID``, ``ParentID``/``parentSpanId``,
  ``PodName``/``service``/``service.name``, ``OperationName``/``name``,
  ``StartTimeUnixNano``/``start``, ``EndTimeUnixNano``/``end``, and optionally
  ``status``/``StatusCode``/``status.code``/``http.status_code``). The Nezha
  trace files are this shape (no status column). A parent of ``root``, ``0``
  or empty marks a root span.
* **OTLP JSON** (``.json``, ``.jsonl``, ``.gz``): ``{"resourceSpans": [...]}``
  exports, one per file or one per line (the collector's file exporter). The
  entity is the resource's ``k8s.pod.name``, else its ``service.name``.

Status: OTLP ``STATUS_CODE_ERROR`` / ``2`` / ``ERROR`` is an error, ``OK`` /
``UNSET`` / ``0`` / ``1`` are not; in an ``http.status_code`` column, 5xx is an
error.

Malformed spans (no trace or span id, a time that does not parse, an end
before the start) are set aside and counted; repeated ``(trace_id,
span_id)`` pairs, common when exports overlap, are dropped and counted.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diagnosis._time import parse_times
from diagnosis.exceptions import DiagnosisError
from diagnosis.telemetry._io import (
    as_paths,
    objects,
    open_text,
    read_csv_rows,
    to_timedelta,
)
from diagnosis.telemetry.entities import EDGE_SEPARATOR, EntityMap
from diagnosis.telemetry.quality import ReadReport, _Tally

__all__ = [
    "EDGE_STAT_COLUMNS",
    "SPAN_COLUMNS",
    "SpanSet",
    "edge_samples",
    "edge_stats",
    "read_spans",
    "spans_from_frame",
]

SPAN_COLUMNS = ("trace_id", "span_id", "parent_id", "entity", "component", "operation", "start", "end", "error")
EDGE_STAT_COLUMNS = (
    "time",
    "caller",
    "callee",
    "calls",
    "latency_mean",
    "latency_p50",
    "latency_p90",
    "wire_p50",
    "errors",
    "error_rate",
)
_ALIASES = {
    "trace_id": ("traceid", "trace_id", "trace id", "trace"),
    "span_id": ("spanid", "span_id", "span id", "span"),
    "parent_id": ("parentid", "parent_id", "parentspanid", "parent_span_id", "parent span id", "parent"),
    "entity": (
        "podname",
        "pod",
        "k8s.pod.name",
        "entity",
        "service",
        "servicename",
        "service.name",
        "service_name",
        "resource.service.name",
    ),
    "operation": ("operationname", "operation", "name", "span_name", "spanname"),
    "start": ("starttimeunixnano", "start_time_unix_nano", "start", "start_time", "starttime", "timestamp"),
    "end": ("endtimeunixnano", "end_time_unix_nano", "end", "end_time", "endtime"),
    "status": (
        "status",
        "statuscode",
        "status_code",
        "status.code",
        "otel.status_code",
        "http.status_code",
        "http_status_code",
        "error",
    ),
}
_REQUIRED = ("trace_id", "span_id", "parent_id", "entity", "start", "end")
_ROOT = frozenset({"", "root", "0", "none", "null", "0000000000000000", "00000000000000000000000000000000"})
_ERROR = frozenset({"error", "status_code_error", "2", "true", "1.0_error", "fail", "failed"})
_OK = frozenset({"ok", "unset", "status_code_ok", "status_code_unset", "0", "1", "false"})
_PATTERNS = ("*.csv", "*.csv.gz", "*.json", "*.json.gz", "*.jsonl", "*.jsonl.gz")


@dataclass(frozen=True)
class SpanSet:
    """Spans (columns :data:`SPAN_COLUMNS`) and the reader's report."""

    spans: pd.DataFrame
    report: ReadReport

    def __len__(self) -> int:
        return len(self.spans)


def read_spans(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    entity_map: EntityMap | None = None,
    time_offset: str | pd.Timedelta | None = None,
    max_examples: int = 100,
) -> SpanSet:
    """Read span files (CSV or OTLP JSON) into one span table.

    Parameters
    ----------
    paths : path, folder, or list of them
        A folder is read whole (``*.csv``, ``*.csv.gz``, ``*.json``,
        ``*.jsonl`` and their ``.gz``), in name order.
    entity_map : EntityMap, optional
        Entity -> component; default the Nezha pod rule.
    time_offset : duration, optional
        Added to every time, to put this source on the reference clock.

    Returns
    -------
    SpanSet

    Raises
    ------
    DiagnosisError
        When a path does not exist, or a CSV lacks a required column.
    """
    files = as_paths(paths, patterns=_PATTERNS)
    tally = _Tally(max_examples)
    parts, read, skipped = [], [], {}
    rows = 0
    for path in files:
        name = path.name.lower().removesuffix(".gz")
        if name.endswith((".json", ".jsonl", ".ndjson")):
            raw, n = _otlp_rows(path, tally)
        else:
            header, good, bad, numbers = read_csv_rows(path)
            if not header:
                skipped[str(path)] = "empty file"
                continue
            cols = _columns(header)
            missing = [c for c in _REQUIRED if c not in cols]
            if missing:
                raise DiagnosisError(
                    f"{path}: a span table needs trace id, span id, parent id, service or pod, start and end columns; "
                    f"cannot find {missing} among {header} (accepted names: { {k: _ALIASES[k] for k in missing} })"
                )
            for row_no, row in bad:
                tally.reject(
                    str(path),
                    f"row {row_no}",
                    "(row)",
                    ",".join(row),
                    f"has {len(row)} fields; the header has {len(header)}",
                )
            table = pd.DataFrame(good, columns=header, dtype=object)
            raw = pd.DataFrame({k: table[v] for k, v in cols.items()})
            raw["_row"] = numbers
            raw["_http"] = "http" in cols.get("status", "").lower()
            n = len(good) + len(bad)
        rows += n
        raw["_source"] = str(path)
        parts.append(raw)
        read.append(str(path))
    return _finish(parts, read, rows, tally, skipped, entity_map, time_offset)


def spans_from_frame(
    df: pd.DataFrame, *, entity_map: EntityMap | None = None, time_offset: str | pd.Timedelta | None = None
) -> SpanSet:
    """Normalise an in-memory span table (any accepted column names).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"trace_id": ["t", "t"], "span_id": ["a", "b"], "parent_id": ["root", "a"],
    ...                    "service": ["front", "cart"], "start": [1_700_000_000, 1_700_000_001],
    ...                    "end": [1_700_000_005, 1_700_000_004]})
    >>> spans_from_frame(df).spans[["component", "parent_id"]].to_dict("list")
    {'component': ['front', 'cart'], 'parent_id': [None, 'a']}
    """
    cols = _columns([str(c) for c in df.columns])
    missing = [c for c in _REQUIRED if c not in cols]
    if missing:
        raise DiagnosisError(
            f"a span table needs the columns {list(_REQUIRED)} (or their aliases); cannot find {missing} among {list(df.columns)}"
        )
    raw = pd.DataFrame({k: df[v].astype(object).reset_index(drop=True) for k, v in cols.items()})
    raw["_row"] = np.arange(1, len(df) + 1)
    raw["_http"] = "http" in cols.get("status", "").lower()
    raw["_source"] = "(frame)"
    return _finish([raw], ["(frame)"], len(df), _Tally(), {}, entity_map, time_offset)


def _columns(header: list[str]) -> dict[str, str]:
    lower = {h.strip().lower(): h for h in header}
    out = {}
    for key, names in _ALIASES.items():
        hit = next((lower[n] for n in names if n in lower), None)
        if hit is not None:
            out[key] = hit
    return out


def _attr(attrs: Any, key: str) -> str | None:
    for a in attrs or []:
        if isinstance(a, dict) and a.get("key") == key:
            v = a.get("value") or {}
            for k in ("stringValue", "intValue"):
                if k in v:
                    return str(v[k])
    return None


def _otlp_rows(path: Path, tally: _Tally) -> tuple[pd.DataFrame, int]:
    """Rows from OTLP JSON exports (one document, or one per line)."""
    source = str(path)
    with open_text(path) as fh:
        text = fh.read()
    docs: list[tuple[str, Any]] = []
    try:
        docs.append(("document", json.loads(text)))
    except json.JSONDecodeError:
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                docs.append((f"line {i}", json.loads(line)))
            except json.JSONDecodeError as exc:
                tally.reject(source, f"line {i}", "(line)", line, f"not valid JSON: {exc.msg}")
    recs: list[dict] = []
    n = 0
    for loc, doc in docs:
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
            tally.reject(source, loc, "resourceSpans", doc, "an OTLP export has a 'resourceSpans' list")
            continue
        for r_i, rs in enumerate(doc["resourceSpans"]):
            attrs = (rs.get("resource") or {}).get("attributes") if isinstance(rs, dict) else None
            entity = _attr(attrs, "k8s.pod.name") or _attr(attrs, "service.name")
            scopes = (
                (rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []) if isinstance(rs, dict) else []
            )
            for s_i, ss in enumerate(scopes):
                for k, sp in enumerate((ss or {}).get("spans") or []):
                    n += 1
                    where = f"{loc}, resourceSpans[{r_i}].scopeSpans[{s_i}].spans[{k}]"
                    if not isinstance(sp, dict):
                        tally.reject(source, where, "(span)", sp, "must be an object")
                        continue
                    status = sp.get("status") or {}
                    code = status.get("code") if isinstance(status, dict) else status
                    recs.append(
                        {
                            "trace_id": sp.get("traceId"),
                            "span_id": sp.get("spanId"),
                            "parent_id": sp.get("parentSpanId"),
                            "entity": entity,
                            "operation": sp.get("name"),
                            "start": sp.get("startTimeUnixNano"),
                            "end": sp.get("endTimeUnixNano"),
                            "status": code,
                            "_row": where,
                        }
                    )
    raw = pd.DataFrame(recs, columns=[*_ALIASES, "_row"], dtype=object)
    raw["_http"] = False
    return raw, n


def _error(values: pd.Series, http: bool) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        text = str(v).strip().lower()
        if text in ("", "nan"):
            continue
        if http:
            try:
                out[i] = 1.0 if float(text) >= 500 else 0.0
            except ValueError:
                pass
            continue
        if text in _ERROR:
            out[i] = 1.0
        elif text in _OK:
            out[i] = 0.0
    return out


def _finish(parts, files, rows, tally: _Tally, skipped, entity_map, time_offset) -> SpanSet:
    entity_map = entity_map or EntityMap.default()
    if parts:
        raw = pd.concat(parts, ignore_index=True)
    else:
        raw = pd.DataFrame({c: pd.Series(dtype=object) for c in (*_ALIASES, "_row", "_http", "_source")})
    for c in _ALIASES:
        if c not in raw:
            raw[c] = None
    text = {}
    bad_any = np.zeros(len(raw), dtype=bool)
    for c in ("trace_id", "span_id", "entity"):
        s = raw[c].astype(object)
        ok = np.array([isinstance(x, str) and x.strip() != "" for x in s], dtype=bool)
        for i in np.flatnonzero(~ok & ~bad_any):
            tally.reject(
                raw["_source"].iat[i],
                f"row {raw['_row'].iat[i]}" if not isinstance(raw["_row"].iat[i], str) else raw["_row"].iat[i],
                c,
                s.iat[i],
                "is required (a non-empty string)",
            )
        bad_any |= ~ok
        text[c] = s.map(lambda x: x.strip() if isinstance(x, str) else x)
    times = {}
    for c in ("start", "end"):
        t, bad = parse_times(raw[c])
        bad = (bad | t.isna().to_numpy()) & ~bad_any
        for i in np.flatnonzero(bad):
            r = raw["_row"].iat[i]
            tally.reject(
                raw["_source"].iat[i],
                r if isinstance(r, str) else f"row {r}",
                c,
                raw[c].iat[i],
                "is not a time (epoch or ISO 8601)",
            )
        bad_any |= bad
        times[c] = t
    neg = (times["end"] < times["start"]).to_numpy() & ~bad_any
    for i in np.flatnonzero(neg):
        r = raw["_row"].iat[i]
        tally.reject(
            raw["_source"].iat[i],
            r if isinstance(r, str) else f"row {r}",
            "end",
            raw["end"].iat[i],
            "is before the span's start",
        )
    bad_any |= neg
    keep = ~bad_any
    parent = (
        raw["parent_id"]
        .astype(object)
        .map(
            lambda x: (
                None
                if x is None or (isinstance(x, float) and np.isnan(x)) or str(x).strip().lower() in _ROOT
                else str(x).strip()
            )
        )
    )
    http = raw["_http"].to_numpy(dtype=bool) if "_http" in raw else np.zeros(len(raw), bool)
    err = np.where(http, _error(raw["status"], True), _error(raw["status"], False))
    df = pd.DataFrame(
        {
            "trace_id": objects(text["trace_id"][keep]),
            "span_id": objects(text["span_id"][keep]),
            "parent_id": objects(parent[keep]),
            "entity": objects(text["entity"][keep]),
            "operation": objects(raw["operation"][keep]),
            "start": times["start"][keep].reset_index(drop=True),
            "end": times["end"][keep].reset_index(drop=True),
            "error": err[keep],
        }
    )
    if time_offset is not None:
        off = to_timedelta(time_offset, "time_offset")
        df["start"] = df["start"] + off
        df["end"] = df["end"] + off
    dup = df.duplicated(["trace_id", "span_id"], keep="first").to_numpy()
    n_dup = int(dup.sum())
    df = df[~dup].sort_values("start", kind="stable").reset_index(drop=True)
    df.insert(4, "component", objects(entity_map.map(df["entity"])))
    notes = []
    if len(df):
        known = set(zip(df["trace_id"].tolist(), df["span_id"].tolist()))
        orphan = np.array(
            [p is not None and (t, p) not in known for t, p in zip(df["trace_id"].tolist(), df["parent_id"].tolist())],
            dtype=bool,
        )
        if orphan.any():
            notes.append(
                f"{int(orphan.sum())} spans name a parent that is not in the data (kept; they add no call edge)"
            )
        if np.isnan(df["error"]).all():
            notes.append("no span has a status: edge error rates are unknown")
    report = ReadReport(
        files=tuple(files),
        rows=rows,
        malformed=tally.malformed,
        bad_values=tally.bad_values,
        missing_values=0,
        duplicates=n_dup,
        by_reason=Counter(tally.reasons),
        examples=tuple(tally.examples),
        skipped_files=skipped,
        unmapped_entities=tuple(sorted(df.loc[df["component"].isna(), "entity"].unique())),
        notes=tuple(notes),
    )
    for c in ("start", "end"):
        df[c] = df[c].astype("datetime64[ns, UTC]")
    df["error"] = df["error"].astype(np.float64)
    return SpanSet(df[list(SPAN_COLUMNS)], report)


def _calls(spans: pd.DataFrame) -> pd.DataFrame:
    """Parent-child span pairs whose components differ: caller, callee, the child's start, duration and error."""
    s = spans[spans["component"].notna()]
    parent = s[["trace_id", "span_id", "component", "start", "end"]].rename(
        columns={"span_id": "parent_id", "component": "caller", "start": "p_start", "end": "p_end"}
    )
    pairs = s.merge(parent, on=["trace_id", "parent_id"], how="inner")
    pairs = pairs[pairs["caller"] != pairs["component"]]
    duration = (pairs["end"] - pairs["start"]).dt.total_seconds().to_numpy()
    return pd.DataFrame(
        {
            "start": pairs["start"].to_numpy(),
            "caller": objects(pairs["caller"]),
            "callee": objects(pairs["component"]),
            "duration": duration,
            "wire": (pairs["p_end"] - pairs["p_start"]).dt.total_seconds().to_numpy() - duration,
            "error": pairs["error"].to_numpy(dtype=np.float64),
        }
    )


def edge_stats(spans: SpanSet | pd.DataFrame, *, freq: str | pd.Timedelta | None = "1min") -> pd.DataFrame:
    """Per call edge (and time bucket): calls, latency and error rate.

    An edge is a parent span and its child span in different components
    (caller -> callee); its latency is the child's duration (the callee's
    own span) in seconds, its error the child's status, and its *time on
    the wire* the caller's span minus the callee's (network, queueing and
    the caller's own work around the call): a network fault delays the call
    without changing the callee's own span, so it shows here and not in the
    latency.

    Parameters
    ----------
    spans : SpanSet or DataFrame with :data:`SPAN_COLUMNS`
    freq : duration or None, default ``"1min"``
        Bucket width (by the child's start); None for one row per edge over all time.

    Returns
    -------
    DataFrame
        :data:`EDGE_STAT_COLUMNS`: ``time`` (bucket start; NaT when ``freq`` is None),
        ``caller``, ``callee``, ``calls``, ``latency_mean``, ``latency_p50``,
        ``latency_p90``, ``wire_p50`` (s), ``errors`` and ``error_rate`` (NaN when no span has a status).

    Examples
    --------
    >>> import pandas as pd
    >>> t0 = 1_700_000_000 * 10**9    # epoch nanoseconds
    >>> df = pd.DataFrame({"trace_id": ["t"] * 3, "span_id": ["a", "b", "c"], "parent_id": ["root", "a", "a"],
    ...                    "service": ["front", "cart", "cart"], "start": [t0, t0 + 10**7, t0 + 2 * 10**7],
    ...                    "end": [t0 + 9 * 10**7, t0 + 3 * 10**7, t0 + 6 * 10**7], "status": ["OK", "OK", "ERROR"]})
    >>> edge_stats(spans_from_frame(df), freq=None)[["caller", "callee", "calls", "latency_mean", "error_rate"]].to_dict("records")
    [{'caller': 'front', 'callee': 'cart', 'calls': 2, 'latency_mean': 0.03, 'error_rate': 0.5}]
    """
    df = spans.spans if isinstance(spans, SpanSet) else spans
    calls = _calls(df)
    if freq is None:
        calls["time"] = pd.Series(pd.NaT, index=calls.index, dtype="datetime64[ns, UTC]")
    else:
        calls["time"] = pd.to_datetime(calls["start"], utc=True).dt.floor(to_timedelta(freq, "freq"))
    if calls.empty:
        return pd.DataFrame(
            {c: pd.Series(dtype="datetime64[ns, UTC]" if c == "time" else object) for c in EDGE_STAT_COLUMNS}
        )
    g = calls.groupby(["time", "caller", "callee"], sort=True, dropna=False)
    out = g.agg(
        calls=("duration", "size"),
        latency_mean=("duration", "mean"),
        latency_p50=("duration", "median"),
        latency_p90=("duration", lambda x: float(np.quantile(x, 0.9))),
        wire_p50=("wire", "median"),
        errors=("error", lambda x: float(np.nansum(x)) if np.isfinite(x).any() else np.nan),
        known=("error", lambda x: int(np.isfinite(x).sum())),
    ).reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["error_rate"] = np.where(out["known"] > 0, out["errors"] / out["known"].replace(0, np.nan), np.nan)
    out["calls"] = out["calls"].astype(np.int64)
    out["latency_mean"] = out["latency_mean"].round(12)
    out["time"] = out["time"].astype("datetime64[ns, UTC]")
    return out[list(EDGE_STAT_COLUMNS)]


def edge_samples(stats: pd.DataFrame) -> pd.DataFrame:
    """Edge statistics as long metric samples (entity and component ``caller->callee``).

    Metrics ``trace_edge_calls``, ``trace_edge_latency_p50``,
    ``trace_edge_latency_p90``, ``trace_edge_wire_p50`` (s) and, when known, ``trace_edge_error_rate``.
    """
    stats = stats[stats["time"].notna()]
    edge = (stats["caller"].astype(str) + EDGE_SEPARATOR + stats["callee"].astype(str)).to_numpy(dtype=object)
    parts = []
    for col, metric in (
        ("calls", "trace_edge_calls"),
        ("latency_p50", "trace_edge_latency_p50"),
        ("latency_p90", "trace_edge_latency_p90"),
        ("wire_p50", "trace_edge_wire_p50"),
        ("error_rate", "trace_edge_error_rate"),
    ):
        v = stats[col].to_numpy(dtype=np.float64)
        if col == "error_rate" and np.isnan(v).all():
            continue
        parts.append(
            pd.DataFrame(
                {"time": stats["time"].to_numpy(), "entity": edge, "component": edge, "metric": metric, "value": v}
            )
        )
    if not parts:
        return pd.DataFrame(
            {"time": pd.Series(dtype="datetime64[ns, UTC]"), "entity": [], "component": [], "metric": [], "value": []}
        )
    out = pd.concat(parts, ignore_index=True)
    out["time"] = out["time"].astype("datetime64[ns, UTC]")
    return out.sort_values(["time", "entity", "metric"], kind="stable").reset_index(drop=True)


def _with_report(spans: SpanSet, **changes) -> SpanSet:
    return SpanSet(spans.spans, replace(spans.report, **changes))
