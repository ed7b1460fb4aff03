"""detect(): synthetic telemetry -> incident records; pods with no data, clock offsets, diagnosis, rejects."""

import json

import numpy as np
import pandas as pd
import pytest
import telemetry_synth as synth

from diagnosis import DiagnosisError, build_network, diagnose, make_engine
from diagnosis.logs.formats import read_incidents, write_incidents
from diagnosis.logs.scoring import score_frame
from diagnosis.telemetry import (
    DEFAULT_RULES,
    SignalRule,
    detect,
    long_samples,
    make_windows,
    spans_from_frame,
)
from diagnosis.telemetry.detect import EVIDENCE_COLUMNS

TOPO = synth.topology()


def run(metrics_df, window_rows, **kw):
    w, _ = make_windows(window_rows, baseline="20min")
    return detect(TOPO, long_samples(metrics_df), w, **kw)


def obs_of(frame, iid):
    o = frame.observations[frame.observations["incident_id"] == iid]
    return {r.symptom: r for r in o.itertuples(index=False)}


def test_a_cpu_shift_becomes_strong_evidence_and_the_right_diagnosis():
    df = synth.metrics(minutes=300, shifts=[("back", "CpuUsageRate(%)", 200, 204, 40.0), ("back", "PodServerLatencyP90(s)", 200, 204, 0.2),
                                            ("front", "PodServerLatencyP90(s)", 200, 204, 0.2)])  # fmt: skip
    frame, rejects, rep = run(df, synth.windows([200], truth={200: ("back", "cpu_saturation")}))
    assert rejects == [] and len(frame) == 1
    obs = obs_of(frame, "w200")
    assert obs["back.cpu"].value == "soft" and obs["back.cpu"].p_fired > 0.9
    assert obs["store.cpu"].p_fired < 0.5 and obs["front.cpu"].p_fired < 0.5
    assert obs["back.health_check"].value == "passed"
    soft = frame.observations[frame.observations["value"] == "soft"]
    assert ((soft["p_fired"] > 0) & (soft["p_fired"] < 1) & np.isclose(soft["p_fired"] + soft["p_passed"], 1)).all()
    assert dict(rep.null) == {"cpu": "empirical", "memory": "empirical", "server_latency": "empirical"}
    assert rep.quiet_windows > 30
    assert list(rep.evidence.columns) == list(EVIDENCE_COLUMNS)
    json.dumps(rep.to_dict())
    d = diagnose(TOPO, next(frame.records()).observation_mapping())
    assert (d.locations[0].component, d.locations[0].fault_mode) == ("back", "cpu_saturation")
    net = build_network(TOPO)
    rows, _, _ = score_frame(net, make_engine(net), frame)
    assert rows["rank_component"].tolist() == [1.0]


def test_pods_with_no_data():
    df = synth.metrics(minutes=120, drop=[("store", 60, 119)])
    frame, _, rep = run(df, synth.windows([60, 30]))
    o = obs_of(frame, "w60")
    assert o["store.health_check"].value == "fired"
    assert "store.cpu" not in o  # nothing to score
    assert o["back.health_check"].value == "passed"
    assert dict(rep.no_data) == {"w60": ("store",)}
    assert obs_of(frame, "w30")["store.health_check"].value == "passed"
    _, _, rep2 = run(df, synth.windows([60]), presence=False)
    assert not any(s.endswith("health_check") for s in rep2.evidence["symptom"])


def test_clock_offset_between_sources():
    shifts = [("back", "CpuUsageRate(%)", 200, 204, 40.0)]
    late = synth.metrics(minutes=300, shifts=shifts, offset="-8h")  # this source's clock runs 8 h behind
    w, _ = make_windows(synth.windows([200]), baseline="20min")
    frame, _, rep = detect(TOPO, long_samples(late), w)
    assert rep.empty_windows == ("w200",) and len(frame.observations) == 0
    fixed, _, rep2 = detect(TOPO, long_samples(late, time_offset="8h"), w)
    assert rep2.empty_windows == () and obs_of(fixed, "w200")["back.cpu"].p_fired > 0.9


def test_hard_evidence_and_cauchy_null():
    # The Cauchy fallback is conservative (real quiet latency scores are that heavy-tailed): it takes a huge shift.
    df = synth.metrics(minutes=300, shifts=[("back", "CpuUsageRate(%)", 200, 204, 1000.0)])
    frame, _, rep = run(df, synth.windows([200]), evidence="hard", null="cauchy")
    o = obs_of(frame, "w200")
    assert o["back.cpu"].value == "fired" and o["front.cpu"].value == "passed"
    assert set(rep.null.values()) == {"cauchy"} and rep.quiet_windows == 0
    assert frame.observations["p_fired"].isna().all()


def test_trace_edges_feed_the_callee_latency():
    quiet = synth.spans(n_traces=200, start=synth.T0)  # 20 minutes of normal calls
    slow = synth.spans(n_traces=50, start=synth.T0 + pd.Timedelta("25min"), slow_back=True, errors=True)
    slow["TraceID"] = "s" + slow["TraceID"]
    slow["SpanID"] = "s" + slow["SpanID"]
    slow["ParentID"] = slow["ParentID"].where(slow["ParentID"] == "root", "s" + slow["ParentID"])
    spans = spans_from_frame(pd.concat([quiet.assign(status="OK"), slow], ignore_index=True))
    w, _ = make_windows(synth.windows([25], duration="5min"), baseline="20min")
    frame, _, rep = detect(TOPO, None, w, traces=spans, presence=False)
    o = obs_of(frame, "w25")
    assert o["back.latency"].p_fired > o["store.latency"].p_fired
    assert o["back.error_rate"].p_fired > 0.5
    assert rep.signals["trace_latency"] > 0 and rep.null["trace_latency"].startswith("self")


def test_time_on_the_wire_is_the_callers_latency_by_default():
    # 50 ms more between front's call and back's span (a network delay): back's own span is unchanged
    rng = np.random.default_rng(2)
    quiet = synth.spans(n_traces=200, start=synth.T0)
    late = synth.spans(n_traces=50, start=synth.T0 + pd.Timedelta("25min"))
    late["TraceID"] = "s" + late["TraceID"]
    late["SpanID"] = "s" + late["SpanID"]
    late["ParentID"] = late["ParentID"].where(late["ParentID"] == "root", "s" + late["ParentID"])
    both = pd.concat([quiet, late], ignore_index=True)
    jitter = rng.integers(0, 2 * 10**6, len(both))  # up to 2 ms, so that no baseline is flat
    both["EndTimeUnixNano"] = both["EndTimeUnixNano"] + np.where(both["PodName"] == synth.PODS["front"], jitter, 0)
    front_late = both["TraceID"].str.startswith("s") & (both["PodName"] == synth.PODS["front"])
    both.loc[front_late, "EndTimeUnixNano"] += 50 * 10**6
    w, _ = make_windows(synth.windows([25], duration="5min"), baseline="20min")
    frame, _, rep = detect(TOPO, None, w, traces=spans_from_frame(both), presence=False)
    ev = rep.evidence.set_index("symptom")
    # the window's own (self) null of two edges is coarse: p ~ 0.07 for a score beyond every baseline value
    assert "trace_wire" in ev.loc["front.latency", "rules"] and ev.loc["front.latency", "p_value"] < 0.1
    assert ev.loc["back.latency", "p_value"] > 0.3 and ev.loc["store.latency", "p_value"] > 0.3
    assert ev["p_value"].idxmin() == "front.latency"
    assert rep.signals["trace_wire"] > 0


def test_unknown_truth_is_rejected_and_unknown_telemetry_reported():
    df = synth.metrics(minutes=90)
    df.loc[len(df)] = [synth.T0, "ghost-5f6585d649-x2k4z", "CpuUsageRate(%)", 1.0]
    frame, rejects, rep = run(
        df, synth.windows([60, 70], truth={60: ("nope", "crash"), 70: ("back", "cpu_saturation")})
    )
    assert frame.incidents["id"].tolist() == ["w70"]
    assert len(rejects) == 1 and rejects[0].field == "root_cause.component"
    assert rep.unknown_components == ("ghost",)
    assert "MemoryUsage(Mi)" not in rep.unused_metrics


def test_custom_rules_and_errors():
    df = synth.metrics(minutes=90)
    rules = (SignalRule("mem_only", r"MemoryUsage\(Mi\)", "memory"),)
    frame, _, rep = run(df, synth.windows([60]), rules=rules, presence=False)
    assert set(frame.observations["symptom"]) == {"front.memory", "back.memory", "store.memory"}
    assert set(rep.unused_metrics) == {"CpuUsageRate(%)", "PodServerLatencyP90(s)"}
    with pytest.raises(DiagnosisError, match="signal rule names must be unique"):
        run(df, synth.windows([60]), rules=(rules[0], rules[0]))
    with pytest.raises(DiagnosisError, match="null must be one of"):
        run(df, synth.windows([60]), null="gaussian")
    with pytest.raises(DiagnosisError, match="did you mean 'empirical'"):
        run(df, synth.windows([60]), null="empirica")
    with pytest.raises(DiagnosisError, match="did you mean 'callee'"):
        SignalRule("x", "y", "latency", side="calee")
    with pytest.raises(DiagnosisError, match="direction must be 1 or -1"):
        SignalRule("x", "y", "cpu", direction=0)
    with pytest.raises(DiagnosisError, match="windows need the columns"):
        detect(TOPO, long_samples(df), pd.DataFrame({"id": ["a"]}))
    assert DEFAULT_RULES[0].name == "cpu"


def test_written_incidents_read_back(tmp_path):
    df = synth.metrics(minutes=300, shifts=[("back", "CpuUsageRate(%)", 200, 204, 40.0)])
    frame, _, _ = run(df, synth.windows([200, 250], truth={200: ("back", "cpu_saturation")}))
    back, rejects = read_incidents(write_incidents(frame, tmp_path / "incidents.jsonl"))
    assert rejects == [] and back.incidents["id"].tolist() == ["w200", "w250"]
    assert back.incidents["cause_component"].tolist() == ["back", None]
    pd.testing.assert_frame_equal(
        back.observations.reset_index(drop=True),
        frame.observations.reset_index(drop=True),
        check_exact=False,
        atol=1e-9,
    )


def test_no_telemetry_at_all_gives_empty_incidents():
    w, _ = make_windows(synth.windows([20]))
    frame, rejects, rep = detect(TOPO, None, w)
    assert len(frame) == 1 and len(frame.observations) == 0 and rejects == []
    assert rep.silent_components == ("front", "back", "store") and rep.empty_windows == ("w20",)
    empty, _ = make_windows([])
    frame, _, _ = detect(TOPO, long_samples(synth.metrics(minutes=30)), empty)
    assert len(frame) == 0


def test_one_window_alone_with_only_its_own_telemetry_gets_the_self_null_and_the_same_answer():
    df = synth.metrics(minutes=300, shifts=[("back", "CpuUsageRate(%)", 200, 204, 40.0), ("back", "PodServerLatencyP90(s)", 200, 204, 0.2),
                                            ("front", "PodServerLatencyP90(s)", 200, 204, 0.2)])  # fmt: skip
    rows = synth.windows([200], truth={200: ("back", "cpu_saturation")})
    batch, _, rep_b = run(df, rows)
    own = df[
        (df["timestamp"] >= synth.T0 + pd.Timedelta(minutes=180))
        & (df["timestamp"] <= synth.T0 + pd.Timedelta(minutes=205))
    ]
    alone, _, rep_a = run(own, rows)
    assert rep_a.quiet_windows == 0 and set(rep_a.null.values()) == {"self"}
    assert "cauchy" not in " ".join(rep_a.null.values())
    pa = obs_of(alone, "w200")
    assert pa["back.cpu"].p_fired > 0.9 and pa["front.cpu"].p_fired < 0.5
    net = build_network(TOPO)
    eng = make_engine(net)
    for frame in (batch, alone):
        r, _, _ = score_frame(net, eng, frame)
        assert r["rank_component"].tolist() == [1.0]


def test_another_incident_in_the_baseline_is_kept_out_of_it():
    # store's latency jumps at minutes 182-197 (an earlier incident), then back's cpu at 200
    df = synth.metrics(minutes=300, shifts=[("store", "PodServerLatencyP90(s)", 182, 197, 0.5),
                                            ("back", "CpuUsageRate(%)", 200, 204, 40.0)])  # fmt: skip
    rows = synth.windows([182, 200])
    w, _ = make_windows(rows, baseline="20min", duration="16min")
    w.loc[1, "end"] = w.loc[1, "start"] + pd.Timedelta("5min")
    for excl, expect_quiet in ((True, True), (False, False)):
        frame, _, rep = detect(TOPO, long_samples(df), w, exclude_incidents=excl, null="self")
        ev = rep.evidence.set_index(["window_id", "symptom"])
        # the earlier incident, left in the baseline, pulls its median up
        med = rep.scores.set_index(["window_id", "entity", "metric"]).loc[
            ("w200", synth.PODS["store"], "PodServerLatencyP90(s)"), "median"
        ]
        assert (abs(med - 0.1) < 0.02) == expect_quiet
        assert ev.loc[("w200", "back.cpu"), "p_value"] < 0.05


def test_a_metric_reference_is_the_baseline_and_the_null_of_every_window():
    # an unknown earlier incident (not among the windows) lifts back's cpu just before w200; the
    # fault at 200 lifts it further. A fault-free reference recorded the day before is the clean baseline.
    from diagnosis.telemetry import Reference

    df = synth.metrics(minutes=300, shifts=[("back", "CpuUsageRate(%)", 182, 199, 8.0),
                                            ("back", "CpuUsageRate(%)", 200, 204, 12.0)])  # fmt: skip
    rows = synth.windows([200], truth={200: ("back", "cpu_saturation")})
    own = df[
        (df["timestamp"] >= synth.T0 + pd.Timedelta(minutes=180))
        & (df["timestamp"] <= synth.T0 + pd.Timedelta(minutes=205))
    ]  # one window, its own telemetry
    ref_df = synth.metrics(minutes=60, seed=11)
    ref_df["timestamp"] -= pd.Timedelta("1D")
    ref = Reference(metrics=long_samples(ref_df))
    # the largest value: the contaminated baseline hides the fault (a majority of the window still stands out)
    _, _, plain = run(own, rows, statistic="max")
    _, _, plain_maj = run(own, rows)
    frame, _, rep = run(own, rows, reference=ref)
    sc = rep.scores.set_index(["entity", "metric"])
    cpu = sc.loc[(synth.PODS["back"], "CpuUsageRate(%)")]
    assert cpu["referenced"] and abs(cpu["median"] - 20.0) < 1.0 and cpu["n_baseline"] == 60
    assert rep.referenced == len(rep.scores) and "reference as their baseline" in " ".join(rep.lines())
    assert not plain.scores["referenced"].any() and plain.referenced == 0
    assert set(rep.null.values()) == {"self"} and rep.quiet_windows == 0
    p_ref = rep.evidence.set_index("symptom").loc["back.cpu", "p_value"]
    p_plain = plain.evidence.set_index("symptom").loc["back.cpu", "p_value"]
    assert p_ref < 0.01 < p_plain  # the contaminated baseline hides the fault; the reference does not
    assert p_ref < plain_maj.evidence.set_index("symptom").loc["back.cpu", "p_value"]
    assert rep.evidence.set_index("symptom").loc["store.cpu", "p_value"] > 0.05
    # a series the reference lacks keeps its own baseline
    part = Reference(metrics=long_samples(ref_df[ref_df["pod"] != synth.PODS["store"]]))
    _, _, rep2 = run(own, rows, reference=part)
    r2 = rep2.scores.set_index("entity")["referenced"]
    assert not r2.loc[synth.PODS["store"]].any() and r2.loc[synth.PODS["back"]].all()


def test_a_trace_reference_is_the_baseline_of_the_edge_series():
    from diagnosis.telemetry import Reference

    def renamed(df, tag):
        df = df.copy()
        df["TraceID"] = tag + df["TraceID"]
        df["SpanID"] = tag + df["SpanID"]
        df["ParentID"] = df["ParentID"].where(df["ParentID"] == "root", tag + df["ParentID"])
        return df

    # back is slow in the window and already in the minutes before it (an unknown earlier incident)
    own = pd.concat(
        [
            renamed(synth.spans(n_traces=200, start=synth.T0, slow_back=True), "b"),
            renamed(synth.spans(n_traces=50, start=synth.T0 + pd.Timedelta("25min"), slow_back=True), "w"),
        ],
        ignore_index=True,
    )
    own.loc[own["TraceID"].str.startswith("w") & (own["PodName"] == synth.PODS["back"]), "EndTimeUnixNano"] += (
        40 * 10**6
    )
    ref = synth.spans(n_traces=200, start=synth.T0 - pd.Timedelta("1D"))  # fault-free, the day before
    w, _ = make_windows(synth.windows([25], duration="5min"), baseline="20min")
    _, _, plain = detect(TOPO, None, w, traces=spans_from_frame(own), presence=False)
    _, _, rep = detect(
        TOPO, None, w, traces=spans_from_frame(own), presence=False, reference=Reference(traces=spans_from_frame(ref))
    )
    sc = rep.scores.set_index(["entity", "metric"])
    lat = sc.loc[("front->back", "trace_edge_latency_p50")]
    assert lat["referenced"] and lat["median"] == pytest.approx(0.020) and lat["n_baseline"] == 20
    assert rep.referenced > 0 and plain.referenced == 0
    z_plain = plain.scores.set_index(["entity", "metric"]).loc[("front->back", "trace_edge_latency_p50"), "z_up"]
    assert lat["z_up"] > 2 * z_plain  # against the slow baseline the window is less anomalous
