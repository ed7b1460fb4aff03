"""score_frame(assume_fault=True): posteriors conditioned on "some component is faulty"."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import telemetry_synth as synth

from diagnosis import build_network, make_engine
from diagnosis.logs.scoring import score_frame
from diagnosis.telemetry import detect, long_samples, make_windows


def frame_of(shift: bool):
    shifts = [("back", "CpuUsageRate(%)", 200, 204, 40.0)] if shift else []
    df = synth.metrics(minutes=300, shifts=shifts)
    w, _ = make_windows(synth.windows([200], truth={200: ("back", "cpu_saturation")}), baseline="20min")
    frame, _, _ = detect(synth.topology(), long_samples(df), w)
    return frame


def test_without_evidence_the_conditioning_divides_by_one_minus_the_chance_of_no_fault():
    topo = synth.topology()
    net = build_network(topo)
    eng = make_engine(net)
    frame = frame_of(False)
    empty = frame.select(frame.incidents["id"].tolist())
    empty = (
        type(empty)(empty.incidents, empty.observations.iloc[0:0], empty.actions)
        if hasattr(empty, "actions")
        else empty
    )
    assert len(empty.observations) == 0
    rows0, _, _ = score_frame(net, eng, empty)
    rows1, _, _ = score_frame(net, eng, empty, assume_fault=True)
    prior_ok = [1.0 - sum(m.prior for m in c.fault_modes) for c in topo.components]
    p_none = float(np.prod(prior_ok))
    post0 = json.loads(rows0["posterior"].iloc[0])
    post1 = json.loads(rows1["posterior"].iloc[0])
    for k, v in post0.items():
        assert np.isclose(post1[k], v / (1.0 - p_none), rtol=1e-6)


def test_a_known_fault_raises_the_top_probability_and_keeps_the_ranking():
    net = build_network(synth.topology())
    eng = make_engine(net)
    frame = frame_of(True)
    r0, s0, _ = score_frame(net, eng, frame)
    r1, s1, _ = score_frame(net, eng, frame, assume_fault=True)
    assert r0["top_component"].tolist() == r1["top_component"].tolist() == ["back"]
    assert r1["p_top_component"].iloc[0] > r0["p_top_component"].iloc[0]
    assert r1["rank_component"].tolist() == r0["rank_component"].tolist()
    assert pd.notna(s1.levels["component"].metrics()["ece_top1"])
