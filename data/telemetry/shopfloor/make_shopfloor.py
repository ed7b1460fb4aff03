"""Write the synthetic ``shopfloor`` telemetry: a made-up 3-service system in a wide CSV.

``web`` calls ``billing``, which uses the database ``ledgerdb``. One column
per ``<entity>_<metric>`` every 15 s for 90 minutes, with metric names of
its own (``busy_pct``, ``heap_mb``, ``resp_p95_ms``, ``resp_count``,
``fail_ratio``) that the built-in signal rules do not know; the topology's
``signals:`` section maps them. Three incidents are injected (a CPU hog on
``billing``, slow queries on ``ledgerdb`` that callers feel, a memory leak
on ``web``) and a traffic surge that only moves the request counters.
Deterministic: ``python make_shopfloor.py`` rewrites the same files.
"""

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
START = pd.Timestamp("2026-03-02T10:00:00Z")
rng = np.random.default_rng(20260302)
t = pd.date_range(START, periods=360, freq="15s")
minute = (t - START).total_seconds().to_numpy() / 60


def during(a, b):
    return (minute >= a) & (minute < b)


cols = {"time": t.strftime("%Y-%m-%dT%H:%M:%SZ")}
base = {"web": (30, 400, 80, 50), "billing": (25, 300, 60, 20), "ledgerdb": (20, 0, 8, 20)}
for ent, (cpu, heap, lat, count) in base.items():
    cols[f"{ent}_busy_pct"] = cpu + rng.normal(0, 2, len(t))
    if heap:
        cols[f"{ent}_heap_mb"] = heap + rng.normal(0, 5, len(t))
    cols[f"{ent}_resp_p95_ms"] = lat * (1 + rng.normal(0, 0.04, len(t)))
    cols[f"{ent}_resp_count"] = rng.poisson(count * 15, len(t)).astype(float)
    cols[f"{ent}_fail_ratio"] = np.abs(rng.normal(0.002, 0.001, len(t)))
# incident 1 (minute 20-25): CPU hog on billing
cols["billing_busy_pct"][during(20, 25)] += 50
# incident 2 (minute 45-50): slow queries on ledgerdb, felt by billing and web
cols["ledgerdb_resp_p95_ms"][during(45, 50)] *= 6
cols["billing_resp_p95_ms"][during(45, 50)] += 40
cols["web_resp_p95_ms"][during(45, 50)] += 40
# incident 3 (minute 70-75): memory leak on web
leak = np.where(during(70, 75), (minute - 70) * 60, 0)
cols["web_heap_mb"] += leak
# traffic surge (minute 55-60, no incident window): only the request counters move
for ent in base:
    cols[f"{ent}_resp_count"][during(55, 60)] *= 4
frame = pd.DataFrame(cols)
for c in frame.columns[1:]:
    frame[c] = frame[c].round(3)
(HERE / "metrics").mkdir(exist_ok=True)
frame.to_csv(HERE / "metrics" / "shopfloor.csv", index=False)
