"""The ``majority`` window statistic: a sustained shift is found, a one-sample spike is not, and its null is calibrated.

``combined`` (the two statistics' p-values combined) is tested in ``test_telemetry_combined.py``.
"""

import numpy as np
import pandas as pd
import pytest
import telemetry_synth as synth

from diagnosis import DiagnosisError
from diagnosis.telemetry import NullModel, detect, long_samples, make_windows, score_windows
from diagnosis.telemetry.detectors import SCORE_STATISTICS, window_order, window_p

T0 = pd.Timestamp("2024-01-01", tz="UTC")
N_BASE, N_WIN = 30, 6


def noise_samples(rng, n_series, *, level=10.0, sd=1.0, window_values=None):
    """``n_series`` series of one metric: ``N_BASE`` baseline minutes then ``N_WIN`` window minutes of noise."""
    n = N_BASE + N_WIN
    v = level + sd * rng.standard_normal((n_series, n))
    if window_values is not None:
        v[:, N_BASE:] = window_values(v[:, N_BASE:])
    t = T0 + pd.to_timedelta(np.arange(n), unit="min")
    return pd.DataFrame(
        {
            "time": np.tile(t, n_series),
            "entity": np.repeat([f"pod{i}" for i in range(n_series)], n),
            "component": np.repeat([f"c{i}" for i in range(n_series)], n),
            "metric": "cpu",
            "value": v.ravel(),
        }
    )


WINDOW = pd.DataFrame(
    {
        "id": ["w"],
        "start": [T0 + pd.Timedelta(minutes=N_BASE)],
        "end": [T0 + pd.Timedelta(minutes=N_BASE + N_WIN - 1)],
        "baseline_start": [T0],
        "baseline_end": [T0 + pd.Timedelta(minutes=N_BASE)],
    }
)


def self_p(samples, statistic):
    """Each series' p-value under the window's own null, pooled over its series, as ``detect(null="self")``.

    The maximum's null holds single forward scores (corrected for the window's ``n`` values); the
    majority's holds the same statistic of baseline blocks as long as the window.
    """
    nv = []
    sc = score_windows(samples, WINDOW, rel_floor=0.0, null_values=nv, statistic=statistic)
    null = NullModel({"cpu": pd.concat(nv)["z"].to_numpy()}, tail_index=None)
    q = null.p_value("cpu", sc["z_up"].to_numpy())
    return sc, (window_p(q, sc["n_window"].to_numpy()) if statistic == "max" else q)


def test_the_order_statistic_and_its_p_value():
    assert window_order([1, 2, 6, 7], "majority").tolist() == [1, 2, 4, 4]
    with pytest.raises(DiagnosisError, match="not a score"):  # combined combines two p-values, it has no order
        window_order([6, 7], "combined")
    # k = 1 is the maximum's Šidák correction; the majority's is the binomial tail
    q = np.array([0.2, 0.01])
    assert np.allclose(window_p(q, [6, 6]), 1 - (1 - q) ** 6)
    p4 = 15 * 0.2**4 * 0.8**2 + 6 * 0.2**5 * 0.8 + 0.2**6  # 4, 5 or 6 of 6 values reach it
    assert window_p([0.2], [6], statistic="majority")[0] == pytest.approx(p4)
    assert window_p([0.2], [6], statistic="majority", n_series=3)[0] == pytest.approx(1 - (1 - p4) ** 3)
    with pytest.raises(DiagnosisError, match="statistic"):
        window_order([3], "median")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_sustained_fivefold_rise_is_found_and_a_spike_of_the_same_height_is_not(seed):
    rng = np.random.default_rng(seed)
    df = noise_samples(rng, 40)
    pod = df["entity"].str.slice(3).astype(int)
    t_win = df["time"] >= WINDOW["start"].iloc[0]
    one = df["time"] == WINDOW["start"].iloc[0] + pd.Timedelta(minutes=2)
    df.loc[(pod < 10) & t_win, "value"] *= 5  # pods 0-9: the whole window
    df.loc[(pod >= 10) & (pod < 20) & one, "value"] *= 5  # pods 10-19: one sample, same height
    for statistic in SCORE_STATISTICS:
        sc, p = self_p(df, statistic)
        k = sc["entity"].str.slice(3).astype(int).to_numpy()
        spiked = (k >= 10) & (k < 20)
        assert (p[k < 10] < 1e-2).all()  # the sustained rise, under every statistic
        if statistic == "max":
            assert (p[spiked] < 1e-2).all()  # the maximum cannot tell the spike from the rise
        else:
            assert (sc["z_up"].to_numpy()[k < 10] > 20).all() and (p[k < 10] < 1e-3).all()
            assert (sc["z_up"].to_numpy()[(k >= 10) & (k < 20)] < 4).all()  # the spike is ignored
            assert (p[(k >= 10) & (k < 20)] < 1e-2).sum() <= 2  # as often as on noise (pods 20-39)


def test_the_self_null_is_calibrated_on_pure_noise():
    rng = np.random.default_rng(20240101)
    p = {st: [] for st in SCORE_STATISTICS}
    for _ in range(4):  # 2000 noise windows, 500 series at a time (the null pools a window's series)
        df = noise_samples(rng, 500)
        for st in p:
            p[st].append(self_p(df, st)[1])
    for st, v in p.items():
        v = np.concatenate(v)
        assert len(v) == 2000
        share = {a: float((v < a).mean()) for a in (0.01, 0.1, 0.5)}
        assert share[0.01] <= 0.02, (st, share)  # no more false alarms than promised
        if st != "max":  # the block null: close to uniform (forward blocks make its far tail conservative)
            assert 0.06 <= share[0.1] <= 0.14 and 0.4 <= share[0.5] <= 0.6, (st, share)
        else:  # the maximum's: conservative (forward scores with a short past have heavier tails)
            assert share[0.1] <= 0.06, share


def test_detect_with_the_majority_statistic_and_its_null_model():
    df = synth.metrics(minutes=300, shifts=[("back", "CpuUsageRate(%)", 200, 204, 40.0)])
    w, _ = make_windows(synth.windows([200], truth={200: ("back", "cpu_saturation")}), baseline="20min")
    frame, _, rep = detect(synth.topology(), long_samples(df), w, statistic="majority")
    ev = rep.evidence.set_index("symptom")
    assert ev.loc["back.cpu", "p_value"] < 0.01 and ev.loc["front.cpu", "p_value"] > 0.01
    null = NullModel({"cpu": np.arange(50.0)}, statistic="majority")
    assert NullModel.from_dict(null.to_dict()).statistic == "majority"
    assert NullModel.from_dict({"quiet": {}}).statistic == "max"  # a model saved before the option
    with pytest.raises(DiagnosisError, match="refit"):  # a null of the majority used with detect's default (max)
        detect(synth.topology(), long_samples(df), w, null=null)
    with pytest.raises(DiagnosisError, match="refit"):  # and a null of the max with the majority
        detect(synth.topology(), long_samples(df), w, null=NullModel({"cpu": np.arange(50.0)}), statistic="majority")
    with pytest.raises(DiagnosisError, match="statistic"):
        NullModel({}, statistic="mean")
