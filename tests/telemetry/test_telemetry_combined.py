"""The ``combined`` window statistic: Bonferroni over the ``max`` and the ``majority`` p-values, each with its own null.

The independent check is :func:`detect` run once with each statistic: ``combined`` must give twice the smaller
of their p-values (per rule), and so catch a short fault (which only ``max`` sees) and a modest sustained
shift (which only ``majority`` sees), without more false alarms on noise.
"""

import io
import json

import numpy as np
import pandas as pd
import pytest
import telemetry_synth as synth

from diagnosis import DiagnosisError, Topology
from diagnosis.cli import main
from diagnosis.exceptions import TelemetryError
from diagnosis.telemetry import CombinedNull, NullModel, detect, fit_null, long_samples, make_windows, read_null
from diagnosis.telemetry.detectors import SCORE_STATISTICS, combined_p, score_windows

N_SERVICES = 40
SUSTAINED = range(0, 10)  # +2 noise units over the whole window (z about 1.3: the maximum barely notices)
SPIKED = range(10, 20)  # +8 noise units for 2 of the window's 6 minutes (the majority cannot see it)


def flat_topology(n: int) -> Topology:
    return Topology.from_dict({"name": "flat", "components": [{"name": f"s{i}", "kind": "service"} for i in range(n)]})


def noise(rng, n: int, minutes: int, inject=None) -> pd.DataFrame:
    """``n`` services, one pod each, one CPU sample a minute around 10 % (sd 1); ``inject(values)`` edits them."""
    v = 10.0 + rng.standard_normal((n, minutes))
    if inject is not None:
        inject(v)
    t = synth.T0 + pd.to_timedelta(np.arange(minutes), unit="min")
    names = np.repeat([f"s{i}" for i in range(n)], minutes)
    return pd.DataFrame(
        {"time": np.tile(t, n), "entity": names, "component": names, "metric": "CpuUsageRate(%)", "value": v.ravel()}
    )


def faults(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One window at minute 30 (6 one-minute values, a 30-minute baseline): sustained and short faults."""

    def inject(v):
        v[SUSTAINED.start : SUSTAINED.stop, 30:36] += 2.0
        v[SPIKED.start : SPIKED.stop, 31:33] += 8.0

    w, _ = make_windows(synth.windows([30]), baseline="30min")
    return noise(np.random.default_rng(seed), N_SERVICES, 40, inject), w


def p_of(rep) -> pd.Series:
    return rep.evidence.set_index(["window_id", "symptom"])["p_value"]


def test_combined_p_is_bonferroni_over_the_two_tests():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(size=1000) ** 3, rng.uniform(size=1000) ** 3
    p = combined_p(a, b)
    assert np.allclose(p, np.minimum(1.0, 2.0 * np.minimum(a, b)))
    assert (p >= np.minimum(a, b)).all() and (p <= 1.0).all()
    assert (p[np.minimum(a, b) > 0.5] == 1.0).all()
    assert combined_p([np.nan, 0.2], [0.01, np.nan]).tolist() == [0.02, 0.4]  # a test without a p-value: the other


@pytest.mark.parametrize("seed", [1, 2])
def test_combined_is_twice_the_smaller_p_value_of_max_and_majority_run_alone(seed):
    df, w = faults(seed)
    topo = flat_topology(N_SERVICES)
    alone = {s: p_of(detect(topo, df, w, statistic=s, null="self")[2]) for s in SCORE_STATISTICS}
    _, _, rep = detect(topo, df, w, statistic="combined", null="self")
    p = p_of(rep)
    assert set(rep.evidence["rules"]) == {"cpu"}  # one rule per symptom: the symptom's p is the rule's
    expect = np.minimum(1.0, 2.0 * np.minimum(alone["max"], alone["majority"]))
    assert np.allclose(p.to_numpy(), expect.loc[p.index].to_numpy(), rtol=1e-12, atol=0)
    assert (p >= np.minimum(alone["max"], alone["majority"]).loc[p.index]).all() and (p <= 1.0).all()
    assert rep.null == {"cpu": "self"}
    # the evidence's score is the one of the statistic with the smaller p-value; the report keeps both scores
    sc = rep.scores.set_index("entity")
    assert {"z_up_majority", "z_down_majority"} <= set(sc.columns)
    assert (sc["z_up_majority"] <= sc["z_up"] + 1e-12).all()  # the majority's z never exceeds the maximum's


def test_combined_finds_a_short_fault_and_a_sustained_shift_that_each_statistic_alone_misses():
    topo = flat_topology(N_SERVICES)
    found = {s: np.zeros(3, dtype=int) for s in (*SCORE_STATISTICS, "combined")}  # sustained, spiked, clean
    for seed in (1, 2, 3):
        df, w = faults(seed)
        for st in found:
            p = p_of(detect(topo, df, w, statistic=st, null="self")[2])
            hit = np.array([p[("w30", f"s{i}.cpu")] < 0.01 for i in range(N_SERVICES)])
            found[st] += [hit[SUSTAINED].sum(), hit[SPIKED].sum(), hit[20:].sum()]
    n = 3 * len(SUSTAINED)
    assert found["max"][0] <= 0.4 * n and found["max"][1] == n  # the maximum: spikes only
    assert found["majority"][0] >= 0.9 * n and found["majority"][1] <= 0.2 * n  # the majority: sustained only
    assert found["combined"][0] >= 0.8 * n and found["combined"][1] == n  # both
    assert found["combined"][2] <= 1  # and nothing on the 60 clean series


def test_combined_is_calibrated_on_pure_noise():
    topo = flat_topology(100)
    starts = [30 + 40 * i for i in range(10)]
    w, _ = make_windows(synth.windows(starts), baseline="30min")
    p = []
    for seed in (20240101, 20240102):
        df = noise(np.random.default_rng(seed), 100, starts[-1] + 10)
        p.append(p_of(detect(topo, df, w, statistic="combined", null="self")[2]).to_numpy())
    p = np.concatenate(p)
    assert len(p) == 2000
    assert (p < 0.01).mean() <= 0.012  # no more false alarms than promised (Bonferroni is conservative)
    assert (p < 0.1).mean() <= 0.12


def _days():
    df = synth.metrics(minutes=400, shifts=[("back", "CpuUsageRate(%)", 300, 304, 40.0)])
    w, _ = make_windows(synth.windows([100, 300], truth={300: ("back", "cpu_saturation")}), baseline="20min")
    return df, w


def test_a_combined_null_holds_both_nulls_and_round_trips(tmp_path):
    df, w = _days()
    topo = synth.topology()
    null = fit_null(topo, long_samples(df), w, statistic="combined")
    assert isinstance(null, CombinedNull) and null.statistic == "combined"
    for s in SCORE_STATISTICS:  # each part is the null fitted with that statistic alone
        alone = fit_null(topo, long_samples(df), w, statistic=s)
        assert null.part(s).statistic == s and null.part(s).quiet.keys() == alone.quiet.keys()
        assert all(np.array_equal(null.part(s).quiet[r], alone.quiet[r]) for r in alone.quiet)
    assert null.kind("cpu") == "empirical"
    null.save(tmp_path / "null.json")
    saved = json.loads((tmp_path / "null.json").read_text())
    assert saved["statistic"] == "combined" and set(saved["nulls"]) == {"max", "majority"}
    again = read_null(tmp_path / "null.json")
    assert isinstance(again, CombinedNull) and again.to_dict() == CombinedNull.load(tmp_path / "null.json").to_dict()
    for s in SCORE_STATISTICS:
        assert all(np.array_equal(again.part(s).quiet[r], null.part(s).quiet[r]) for r in null.part(s).quiet)
    # one window at a time against the saved pair: the same p-values as the parts used alone, combined
    own = long_samples(df[df["timestamp"] >= synth.T0 + pd.Timedelta("280min")])
    one = w.iloc[[1]].reset_index(drop=True)
    _, _, rep = detect(topo, own, one, null=again, statistic="combined")
    assert rep.null["cpu"] == "empirical"
    alone = {s: p_of(detect(topo, own, one, null=again.part(s), statistic=s)[2]) for s in SCORE_STATISTICS}
    p = p_of(rep)
    single = rep.evidence.set_index(["window_id", "symptom"])["rules"].str.count(r"\+") == 0
    expect = np.minimum(1.0, 2.0 * np.minimum(alone["max"], alone["majority"])).loc[p.index]
    assert np.allclose(p[single], expect[single]) and single.sum() >= 3
    # a symptom of several rules: Šidák over rules keeps it between the smaller p-value and twice it
    lo = np.minimum(alone["max"], alone["majority"]).loc[p.index]
    assert (p >= lo - 1e-12).all() and (p <= np.minimum(1.0, 2.0 * lo) + 1e-12).all()
    assert p[("w300", "back.cpu")] < 0.01 and p[("w300", "front.cpu")] > 0.05


def test_an_old_combined_null_and_a_null_of_another_statistic_are_refused(tmp_path):
    old = {"quiet": {"cpu": list(map(float, range(50)))}, "min_quiet": 30, "tail_k": 10, "statistic": "combined"}
    (tmp_path / "old.json").write_text(json.dumps(old))
    for read in (read_null, NullModel.load, CombinedNull.load):
        with pytest.raises(TelemetryError, match=r"old statistic='combined'.*refit"):
            read(tmp_path / "old.json")
    with pytest.raises(TelemetryError, match="not 'combined'"):  # a max null read as a pair
        CombinedNull.from_dict(NullModel({"cpu": np.arange(50.0)}).to_dict())
    with pytest.raises(TelemetryError, match="lacks the null of"):
        CombinedNull.from_dict({"statistic": "combined", "nulls": {"max": {"quiet": {}}}})
    with pytest.raises(DiagnosisError, match="not a score"):
        NullModel({}, statistic="combined")
    with pytest.raises(DiagnosisError, match="must be a NullModel of statistic='majority'"):
        CombinedNull(NullModel({}), NullModel({}))
    df, w = _days()
    pair = CombinedNull(NullModel({}), NullModel({}, statistic="majority"))
    with pytest.raises(DiagnosisError, match="refit"):  # a pair used with a single statistic, and the other way
        detect(synth.topology(), long_samples(df), w, null=pair)
    with pytest.raises(DiagnosisError, match="refit"):
        detect(synth.topology(), long_samples(df), w, null=NullModel({}), statistic="combined")
    with pytest.raises(DiagnosisError, match="not a score"):  # combined has no score of its own
        score_windows(long_samples(df), w, statistic="combined")
    # the command line refuses the old file with the reason, and no traceback
    (tmp_path / "m.csv").write_text(df.to_csv(index=False))
    (tmp_path / "t.yaml").write_text("name: tiny\ncomponents:\n- {name: back, kind: service}\n")
    (tmp_path / "w.csv").write_text(f"id,start\nw1,{(synth.T0 + pd.Timedelta('300min')).isoformat()}\n")
    err = io.StringIO()
    code = main(
        ["detect", "-t", str(tmp_path / "t.yaml"), "--metrics", str(tmp_path / "m.csv"), "--windows",
         str(tmp_path / "w.csv"), "--out", str(tmp_path / "i.jsonl"), "--statistic", "combined", "--null",
         str(tmp_path / "old.json")],
        stdout=io.StringIO(), stderr=err,
    )  # fmt: skip
    assert code == 1 and "old statistic='combined'" in err.getvalue() and "Traceback" not in err.getvalue()


def test_the_command_line_saves_and_reads_a_combined_null(tmp_path):
    df, _ = _days()
    (tmp_path / "m.csv").write_text(df.to_csv(index=False))
    (tmp_path / "t.yaml").write_text(
        "name: tiny\ncomponents:\n- {name: front, kind: service, calls: [back]}\n"
        "- {name: back, kind: service, calls: [store]}\n- {name: store, kind: service}\n"
    )
    starts = [(synth.T0 + pd.Timedelta(f"{m}min")).isoformat() for m in (100, 300)]
    (tmp_path / "w.csv").write_text(f"id,start\nw1,{starts[0]}\nw2,{starts[1]}\n")
    base = ["detect", "-t", tmp_path / "t.yaml", "--metrics", tmp_path / "m.csv", "--windows", tmp_path / "w.csv"]
    base += ["--statistic", "combined"]
    args = [*base, "--out", tmp_path / "a.jsonl", "--save-null", tmp_path / "n.json"]
    err = io.StringIO()
    assert main(list(map(str, args)), stdout=io.StringIO(), stderr=err) == 0, err.getvalue()
    assert isinstance(read_null(tmp_path / "n.json"), CombinedNull)
    args = [*base, "--out", tmp_path / "b.jsonl", "--null", tmp_path / "n.json"]
    assert main(list(map(str, args)), stdout=io.StringIO(), stderr=err) == 0, err.getvalue()
    obs = {o["symptom"]: o for o in json.loads((tmp_path / "b.jsonl").read_text().splitlines()[1])["observations"]}
    assert obs["back.cpu"]["p_fired"] > 0.9 > obs["front.cpu"]["p_fired"]
