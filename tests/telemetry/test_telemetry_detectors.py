"""The detector statistic on synthetic data with a known shift, its null, and the evidence it gives."""

import numpy as np
import pandas as pd
import pytest
import telemetry_synth as synth

from diagnosis import DiagnosisError
from diagnosis.telemetry import (
    EvidenceModel,
    NullModel,
    long_samples,
    make_windows,
    rank_nsigma,
    robust_z,
    score_windows,
)

SEEDS = (11, 12, 13, 14, 15)


@pytest.mark.parametrize("seed", SEEDS)
def test_robust_z_finds_a_known_shift_and_not_noise(seed):
    rng = np.random.default_rng(seed)
    base = 100 + 5 * rng.standard_normal(30)
    shifted = 100 + 50 + 5 * rng.standard_normal(5)  # +10 sd
    noise = 100 + 5 * rng.standard_normal(5)
    assert robust_z(base, shifted, rel_floor=0).min() > 6
    assert np.abs(robust_z(base, noise, rel_floor=0)).max() < 4.5


def test_robust_z_ignores_a_spike_in_the_baseline():
    rng = np.random.default_rng(3)
    base = 10 + rng.standard_normal(12)
    base[4] = 500.0  # the tail of another incident
    window = np.array([16.0])
    assert robust_z(base, window, rel_floor=0)[0] > 4  # median / MAD: still a clear shift
    assert (window[0] - base.mean()) / base.std(ddof=1) < 0.1  # mean / sd: the spike hides it


def test_robust_z_floor_and_missing_values():
    assert robust_z([2, 2, 2, 2], [2.2]).tolist() == pytest.approx([1.0])  # flat: 10 % of the level
    assert np.isnan(robust_z([np.nan, np.nan], [1.0])).all()
    assert robust_z([1, np.nan, 1, 1], [1.5], rel_floor=0.5).tolist() == pytest.approx([1.0])


def _frame(**kw):
    return long_samples(synth.metrics(**kw)).samples


def test_score_windows_pooling_lead_and_exclusion():
    s = _frame(minutes=120, shifts=[("back", "CpuUsageRate(%)", 60, 64, 30.0)])
    w, _ = make_windows(synth.windows([60, 3]), baseline="20min")
    sc = score_windows(s, w)
    cpu = sc[(sc["component"] == "back") & (sc["metric"] == "CpuUsageRate(%)")].set_index("window_id")
    assert cpu.loc["w60", "z_up"] > 10 and not cpu.loc["w60", "pooled"]
    assert cpu.loc["w3", "pooled"] and cpu.loc["w3", "n_baseline"] >= 4  # 3 minutes of data before w3: pooled
    others = sc[(sc["window_id"] == "w60") & ~((sc["component"] == "back") & (sc["metric"] == "CpuUsageRate(%)"))]
    assert others["z_up"].max() < 6
    # lead: a shift that starts one minute before the labelled start
    w2, _ = make_windows(synth.windows([61]), baseline="20min")
    late = score_windows(s, w2, lead="0s").query("component == 'back' and metric == 'CpuUsageRate(%)'")
    early = score_windows(s, w2, lead="60s").query("component == 'back' and metric == 'CpuUsageRate(%)'")
    assert early["n_window"].iloc[0] == late["n_window"].iloc[0] + 1
    # exclusion: a baseline holding an earlier incident's shift
    s2 = _frame(
        minutes=120, shifts=[("back", "CpuUsageRate(%)", 45, 54, 30.0), ("back", "CpuUsageRate(%)", 60, 64, 30.0)]
    )
    w3, _ = make_windows(synth.windows([45, 60], duration="10min", baseline="15min"))
    kept = score_windows(s2, w3).query("window_id == 'w60' and component == 'back' and metric == 'CpuUsageRate(%)'")
    excl = score_windows(s2, w3, exclude=w3).query(
        "window_id == 'w60' and component == 'back' and metric == 'CpuUsageRate(%)'"
    )
    assert excl["z_up"].iloc[0] > 3 * kept["z_up"].iloc[0]
    with pytest.raises(DiagnosisError, match="min_baseline must be >= 1"):
        score_windows(s, w, min_baseline=0)


def test_null_model_p_values():
    null = NullModel({"cpu": np.linspace(0, 5, 200)})
    z = np.array([-1.0, 0.0, 2.0, 4.9, 10.0, 100.0])
    p = null.p_value("cpu", z)
    assert ((p > 0) & (p <= 1)).all() and (np.diff(p) <= 0).all()
    assert p[-1] < p[-2] < 1 / 201 * 10  # the Pareto tail keeps ranking scores past every quiet one
    assert null.kind("cpu") == "empirical" and null.kind("memory") == "cauchy"
    q = null.p_value("memory", np.array([0.0, 3.0, 30.0]), n_tests=np.array([1, 1, 1]))
    assert q.tolist() == pytest.approx([0.5, 0.5 - np.arctan(3) / np.pi, 0.5 - np.arctan(30) / np.pi])
    more_tests = null.p_value("memory", np.array([3.0]), n_tests=10)
    assert more_tests[0] > q[1]


def test_evidence_likelihoods_in_range():
    m = EvidenceModel()
    p = np.concatenate([[0.0, 1e-12], np.logspace(-8, 0, 50)])
    pf, pp = m.likelihoods(p)
    assert ((pf > 0) & (pf < 1) & (pp > 0) & (pp < 1)).all()
    assert np.allclose(pf + pp, 1.0)
    assert (np.diff(pf[1:]) <= 0).all()  # a larger p-value is weaker evidence of fired
    assert pf[-1] / pp[-1] == pytest.approx(m.shape)  # p = 1: evidence that the check passed
    assert m.hard(np.array([0.009, 0.011])).tolist() == ["fired", "passed"]
    assert m.false_alarm == 0.01 and m.sensitivity == pytest.approx(0.01**0.25)
    for kw, match in (
        ({"mode": "maybe"}, "evidence mode"),
        ({"shape": 1.0}, "shape must be in"),
        ({"alpha": 0}, "alpha must be in"),
    ):
        with pytest.raises(DiagnosisError, match=match):
            EvidenceModel(**kw)


def test_rank_nsigma_puts_the_shifted_service_first():
    s = _frame(minutes=90, shifts=[("store", "MemoryUsage(Mi)", 60, 64, -80.0)])  # a drop counts too
    w, _ = make_windows(synth.windows([60]), baseline="20min")
    r = rank_nsigma(s, w)
    assert r.iloc[0]["component"] == "store" and r.iloc[0]["rank"] == 1
    assert "MemoryUsage" in r.iloc[0]["signal"]
    assert rank_nsigma(s, w, components=["front", "back"])["component"].isin(["front", "back"]).all()


def test_the_self_null_scores_each_baseline_value_against_its_past():
    # memory that grows steadily: every window value is above the baseline median, and so is every
    # baseline value against the values before it; the self null must know that (leave-one-out would
    # give scores centred on zero and call the quiet window anomalous)
    rng = np.random.default_rng(5)
    t = synth.T0 + np.arange(30) * np.timedelta64(60, "s")
    s = pd.DataFrame({"time": t, "entity": "pod-a", "component": "a", "metric": "MemoryUsage(Mi)",
                      "value": 300 + 1.0 * np.arange(30) + 0.3 * rng.standard_normal(30)})  # fmt: skip
    w, _ = make_windows([{"id": "w", "start": (synth.T0 + pd.Timedelta(minutes=20)).isoformat()}], baseline="20min")
    nv = []
    sc = score_windows(s, w, rel_floor=0.0, null_values=nv)
    z = nv[0]["z"].to_numpy()
    assert len(z) == 20 - 4  # every baseline value with at least min_baseline values before it
    assert (z > 0).all()
    # the window's largest score is within the range the baseline itself produced
    assert sc["z_up"].iloc[0] < 3 * z.max()
    # a reference (no order in time) is scored leave-one-out instead: centred on zero
    ref = s.iloc[:20].assign(time=s["time"].iloc[:20] - pd.Timedelta("1D"))
    nv = []
    score_windows(s, w, rel_floor=0.0, null_values=nv, reference=ref)
    zr = nv[0]["z"].to_numpy()
    assert len(zr) == 20 and (zr < 0).sum() >= 8 and (zr > 0).sum() >= 8
