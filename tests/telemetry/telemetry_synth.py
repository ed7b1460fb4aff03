"""Tiny synthetic telemetry for the telemetry tests: a three-service platform, per-minute pod metrics, spans."""

from __future__ import annotations

import numpy as np
import pandas as pd

from diagnosis import Topology

#: Pod names in the Kubernetes shape the default entity rule strips.
PODS = {"front": "front-5f6585d649-x2k4z", "back": "back-7d4f8b9c6d-bq7mn", "store": "store-66b9f7c4d8-hz2lp"}
T0 = pd.Timestamp("2024-03-01T00:00:00Z")


def topology() -> Topology:
    """front calls back, back calls store; default service detectors."""
    return Topology.from_dict(
        {
            "name": "tiny",
            "components": [
                {"name": "front", "kind": "service", "calls": ["back"]},
                {"name": "back", "kind": "service", "calls": ["store"]},
                {"name": "store", "kind": "service"},
            ],
        }
    )


def metrics(*, minutes: int = 240, seed: int = 7, shifts=(), drop=(), offset: str | None = None) -> pd.DataFrame:
    """Long samples, one per minute per pod and metric: cpu (%), memory (MiB), server latency (s).

    ``shifts``: (service, metric, first minute, last minute, added value);
    ``drop``: (service, first minute, last minute) with no samples at all;
    ``offset``: shift every time (a source on another clock).
    """
    rng = np.random.default_rng(seed)
    levels = {"CpuUsageRate(%)": (20.0, 1.0), "MemoryUsage(Mi)": (300.0, 2.0), "PodServerLatencyP90(s)": (0.1, 0.005)}
    rows = []
    for svc, pod in PODS.items():
        for metric, (mu, sd) in levels.items():
            v = mu + sd * rng.standard_normal(minutes)
            for s, m, a, b, d in shifts:
                if s == svc and m == metric:
                    v[a : b + 1] += d
            for i in range(minutes):
                if any(s == svc and a <= i <= b for s, a, b in drop):
                    continue
                rows.append((T0 + pd.Timedelta(minutes=i), pod, metric, float(v[i])))
    df = pd.DataFrame(rows, columns=["timestamp", "pod", "metric", "value"])
    if offset is not None:
        df["timestamp"] = df["timestamp"] + pd.Timedelta(offset)
    return df


def windows(starts_minutes, *, truth=None, duration: str = "5min", baseline: str = "20min") -> list[dict]:
    """Window rows starting at the given minutes after T0; ``truth`` maps start minute -> (component, fault_mode)."""
    truth = truth or {}
    out = []
    for m in starts_minutes:
        c, f = truth.get(m, (None, None))
        out.append(
            {"id": f"w{m}", "start": (T0 + pd.Timedelta(minutes=m)).isoformat(), "component": c, "fault_mode": f}
        )
    return out


def spans(
    *, n_traces: int = 50, start: pd.Timestamp = T0, slow_back: bool = False, errors: bool = False
) -> pd.DataFrame:
    """front -> back -> store traces, one every 6 s; status when ``errors`` (every 5th back span fails)."""
    rows = []
    for i in range(n_traces):
        t = (start + pd.Timedelta(seconds=6 * i)).value
        back_ms = 80 if slow_back else 20
        tid = f"t{i:04d}"
        rows.append((tid, f"{tid}a", "root", PODS["front"], "GET /", t, t + (back_ms + 10) * 10**6, "OK"))
        rows.append(
            (
                tid,
                f"{tid}b",
                f"{tid}a",
                PODS["back"],
                "rpc",
                t + 10**6,
                t + (back_ms + 1) * 10**6,
                "ERROR" if errors and i % 5 == 0 else "OK",
            )
        )
        rows.append((tid, f"{tid}c", f"{tid}b", PODS["store"], "query", t + 2 * 10**6, t + 7 * 10**6, "OK"))
    df = pd.DataFrame(
        rows,
        columns=[
            "TraceID",
            "SpanID",
            "ParentID",
            "PodName",
            "OperationName",
            "StartTimeUnixNano",
            "EndTimeUnixNano",
            "status",
        ],
    )
    if not errors:
        df = df.drop(columns="status")
    return df
