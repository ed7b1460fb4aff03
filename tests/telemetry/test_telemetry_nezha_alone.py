"""One incident at a time on real telemetry: Online Boutique windows detected alone rank as in one batch run.

Each window is detected with only its own telemetry (its baseline and
window) and a null fitted on history: the quiet windows of the other half
of the day (:func:`~diagnosis.telemetry.detect.fit_null`, cross-validated,
as ``--null FILE`` of ``diagnosis detect``). With the window's own ``self``
null instead, the gap is larger (``benchmarks/nezha.py`` prints both): in
Nezha's back-to-back injections the baseline of a window holds the previous
fault, often on the same service. Reads ``../shared/datasets/nezha/2022-08-22``
(metrics only, to stay within seconds). The subset is fixed: every other window of the day that has a baseline
in its own telemetry (11 windows, five fault types). The whole day, and Train Ticket with logs and traces, is
``benchmarks/nezha.py`` (batch and one-at-a-time side by side).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diagnosis import build_network, load_topology, make_engine
from diagnosis.logs.scoring import score_frame
from diagnosis.telemetry import detect, fit_null, import_nezha, read_metrics

ROOT = Path(__file__).resolve().parents[2]


def _nezha_day(day: str) -> Path:
    """``shared/datasets/nezha/<day>`` next to the checkout or one of its parents (CI: ``../shared``)."""
    for parent in ROOT.parents:
        folder = parent / "shared" / "datasets" / "nezha" / day
        if folder.is_dir():
            return folder
    raise AssertionError(f"the Nezha data (shared/datasets/nezha/{day}) is not next to {ROOT} or any parent")


@pytest.fixture(scope="module")
def online_boutique():
    day = _nezha_day("2022-08-22")
    topo = load_topology(ROOT / "data" / "topologies" / "online-boutique.yaml")
    windows, _ = import_nezha(day / "fault_list.json")
    return topo, windows, read_metrics(day / "metric").samples


def test_online_boutique_windows_detected_alone_rank_as_in_the_batch(online_boutique):
    topo, windows, m = online_boutique
    net = build_network(topo)
    eng = make_engine(net)
    # a window whose own telemetry holds no baseline (the day's first: the metrics start inside
    # its baseline) cannot be detected alone by any method; the batch pools one from after it
    lead = pd.Timedelta("60s")
    cpu = m[m["metric"] == "CpuUsageRate(%)"]
    has_base = [
        cpu[(cpu["time"] >= w.baseline_start) & (cpu["time"] < w.start - lead)].groupby("entity").size().median() >= 4
        for w in windows.itertuples(index=False)
    ]
    subset = windows[has_base].iloc[::2].reset_index(drop=True)
    assert subset["fault_type"].nunique() >= 4
    batch, _, rep = detect(topo, m, windows, lead="60s")
    assert set(rep.null.values()) == {"empirical"}
    rows, _, _ = score_frame(net, eng, batch)
    ranks = rows.set_index("incident_id")["rank_component"]
    hit_batch = int((ranks.loc[subset["id"]] <= 1).sum())
    mid = m["time"].min() + (m["time"].max() - m["time"].min()) / 2
    nulls = {
        half: fit_null(topo, m[(m["time"] < mid) == (half == "first")], windows, lead="60s")
        for half in ("first", "second")
    }
    hit_alone = 0
    for i in range(len(subset)):
        w = subset.iloc[[i]].reset_index(drop=True)
        own = m[(m["time"] >= w["baseline_start"].iloc[0]) & (m["time"] <= w["end"].iloc[0])]
        null = nulls["second"] if w["start"].iloc[0] < mid else nulls["first"]
        frame, _, rep_a = detect(topo, own, w, lead="60s", null=null)
        assert rep_a.quiet_windows == 0 and set(rep_a.null.values()) == {"empirical"}
        r, _, _ = score_frame(net, eng, frame)
        assert (frame.observations["value"] == "soft").sum() > 20  # a real answer, not a tie of empty evidence
        hit_alone += int(r["rank_component"].iloc[0] <= 1)
    # (how many the batch ranks first is benchmarks/nezha.py's figure; with the default majority statistic
    # it is lower than with the largest value: docs/telemetry.md)
    assert hit_batch >= len(subset) // 2
    assert abs(hit_alone - hit_batch) <= 1, (hit_alone, hit_batch)
    assert np.isfinite(ranks.to_numpy()).all()
