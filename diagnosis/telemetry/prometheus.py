"""Prometheus HTTP API query results (``/api/v1/query_range``, ``/api/v1/query``) as metric samples.

A saved response of a range query looks like::

    {"status": "success",
     "data": {"resultType": "matrix",
              "result": [{"metric": {"__name__": "container_cpu_usage_seconds_total",
                                     "pod": "carts-5d8f7c-x2k4z", ...},
                          "values": [[1677628800, "0.25"], [1677628815, "0.27"], ...]}]}}

Each series becomes long samples ``time, entity, metric, value``
(:mod:`diagnosis.telemetry.metrics`) by this rule:

* **metric**: the ``__name__`` label; with a ``quantile`` label, ``_p`` and
  the quantile in percent are appended (``quantile="0.99"`` ->
  ``..._p99``). A series without ``__name__`` (the result of an expression
  such as ``rate(x[1m])``) takes the file's name without its extensions
  (``cpu_rate.json`` -> ``cpu_rate``): save one query per file.
* **entity**: the first of the labels :data:`ENTITY_LABELS` the series has
  (``pod``, then ``service``, ``service_name``, ``container``, ``app``,
  ``job``, ``instance``); the entity map then turns it into a component as
  for every other metric source (the default strips a pod's two trailing
  ``-<hash>`` parts).
* **time**: the sample's epoch seconds (UTC); **value**: the sample's string,
  ``"NaN"`` is an empty value, ``"+Inf"``/``"-Inf"`` are counted as not finite.

An instant-query result (``resultType: vector``, one ``value`` pair per
series) is read the same way. A file may hold one response or a JSON list of
responses. Malformed entries (a series without labels or samples, a sample
that is not a ``[time, "value"]`` pair, a series with no entity label) are
counted and reported, never fatal; a response whose ``status`` is not
``success``, or a JSON file that is not a query response, is skipped and
listed in the report. Two series that map to the same entity and metric (they
differ in some other label, say ``method``) keep the first sample per time; the
rest are counted as duplicates.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from diagnosis.telemetry._io import open_text
from diagnosis.telemetry.quality import _Tally

__all__ = ["ENTITY_LABELS", "is_query_file", "read_query_file"]

#: Labels tried in this order for a series' entity.
ENTITY_LABELS = ("pod", "service", "service_name", "container", "app", "job", "instance")
_RESULT_TYPES = ("matrix", "vector")


def is_query_file(path: Path) -> bool:
    """Whether ``path`` is named like a JSON file (``.json``, ``.json.gz``)."""
    name = path.name.lower()
    return name.endswith((".json", ".json.gz"))


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".gz", ".json"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return name


def _metric_name(labels: dict, default: str) -> str:
    name = labels.get("__name__") or default
    q = labels.get("quantile")
    if q is not None:
        try:
            pct = float(q) * 100
        except (TypeError, ValueError):
            pct = math.nan
        if math.isfinite(pct):
            name = f"{name}_p{pct:g}".replace(".", "_")
    return str(name)


def read_query_file(path: Path, tally: _Tally) -> tuple[pd.DataFrame | None, str | None, int]:
    """One saved query response -> (samples ``time, entity, metric, value``, skip reason, series seen).

    Returns ``(None, reason, 0)`` when the file is not a successful query
    response (the caller lists it as skipped).
    """
    source = str(path)
    try:
        with open_text(path) as fh:
            doc = json.load(fh)
    except (OSError, EOFError, ValueError) as exc:
        return None, f"not JSON ({exc.__class__.__name__}: {str(exc)[:80]})", 0
    responses = doc if isinstance(doc, list) else [doc]
    times: list[float] = []
    entities: list[str] = []
    metrics: list[str] = []
    values: list[object] = []
    seen = 0
    reasons = []
    default = _stem(path)
    for r_no, resp in enumerate(responses):
        where = f"response {r_no}" if isinstance(doc, list) else "response"
        if isinstance(resp, dict) and resp.get("status", "success") != "success":
            reasons.append(f"{where} has status {resp.get('status')!r}: {str(resp.get('error', ''))[:80]}")
            continue
        if not isinstance(resp, dict) or "data" not in resp:
            reasons.append(f"{where} is not a Prometheus query response (no 'data')")
            continue
        data = resp["data"]
        kind = data.get("resultType") if isinstance(data, dict) else None
        if kind not in _RESULT_TYPES:
            reasons.append(f"{where} has resultType {kind!r}; readable: {list(_RESULT_TYPES)}")
            continue
        result = data.get("result")
        if not isinstance(result, list):
            tally.reject(source, f"{where}.data.result", "result", result, "must be a list of series")
            continue
        for s_no, series in enumerate(result):
            loc = f"{where} series {s_no}"
            seen += 1
            if not isinstance(series, dict) or not isinstance(series.get("metric"), dict):
                tally.reject(source, loc, "metric", series, "a series needs a 'metric' mapping of labels")
                continue
            labels = series["metric"]
            entity = next((labels[k] for k in ENTITY_LABELS if isinstance(labels.get(k), str) and labels[k]), None)
            if entity is None:
                tally.reject(source, loc, "metric", labels, f"has none of the entity labels {list(ENTITY_LABELS)}")
                continue
            samples = series.get("values") if kind == "matrix" else [series.get("value")]
            if not isinstance(samples, list) or not samples:
                tally.reject(source, loc, "values", samples, "must be a non-empty list of [time, value] pairs")
                continue
            name = _metric_name(labels, default)
            for i, pair in enumerate(samples):
                if (
                    not isinstance(pair, (list, tuple))
                    or len(pair) != 2
                    or isinstance(pair[0], bool)
                    or not isinstance(pair[0], (int, float))
                    or not math.isfinite(pair[0])
                ):
                    tally.reject(source, f"{loc} sample {i}", "values", pair, "must be a [epoch seconds, value] pair")
                    continue
                times.append(float(pair[0]))
                entities.append(entity)
                metrics.append(name)
                values.append(pair[1])
    if seen == 0 and reasons:
        return None, "; ".join(reasons[:3]), 0
    for reason in reasons:
        tally.reject(source, "(file)", "data", "", reason)
    raw = pd.Series(values, dtype=object)
    num = np.array(pd.to_numeric(raw, errors="coerce"), dtype=np.float64) if len(raw) else np.array([], np.float64)
    text = raw.astype(str).str.strip().str.lower().to_numpy() if len(raw) else np.array([], dtype=object)
    empty = np.isnan(num) & np.isin(text, ["nan", ""])
    bad = np.isnan(num) & ~empty
    inf = np.isinf(num)
    for k in np.flatnonzero(bad)[:5]:
        tally.reject(source, f"{entities[k]} {metrics[k]}", "value", values[k], "is not a number", whole_row=False)
    if bad.sum() > 5:
        tally.reject(
            source, "(more samples)", "value", "...", "is not a number", whole_row=False, count=int(bad.sum()) - 5
        )
    if inf.any():
        tally.reject(
            source, "(samples)", "value", "inf", "is not a finite number", whole_row=False, count=int(inf.sum())
        )
        num[inf] = np.nan
    tally.missing += int(empty.sum())
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(
                np.round(np.asarray(times, dtype=np.float64) * 1000).astype(np.int64), unit="ms", utc=True
            ),
            "entity": pd.Series(entities, dtype=object),
            "metric": pd.Series(metrics, dtype=object),
            "value": num,
        }
    )
    return frame, None, seen
