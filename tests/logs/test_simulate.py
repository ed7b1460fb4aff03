"""The simulator follows the model, is deterministic, and records its ground truth."""

import numpy as np
import pandas as pd
import pytest

from diagnosis import Topology, build_network
from diagnosis.exceptions import ParameterError
from diagnosis.logs.simulate import sample_network, simulate


def test_same_seed_same_incidents(boutique):
    a, b = simulate(boutique, 400, rng=11), simulate(boutique, 400, rng=11)
    for x, y in ((a.incidents, b.incidents), (a.observations, b.observations), (a.actions, b.actions)):
        pd.testing.assert_frame_equal(x, y)
    c = simulate(boutique, 400, rng=12)
    assert not a.observations.equals(c.observations)


def test_forward_sampling_matches_the_tables():
    # Root priors and one conditional table, within 5/sqrt(N).
    topo = Topology.from_dict(
        {"name": "t", "leak": 0.0, "components": [
            {"name": "a", "replace_defaults": True, "calls": [{"to": "b", "strength": 0.6}], "fault_modes": {"x": 0.3},
             "detectors": {"d": {"raised_by": {"impaired": 0.8}, "false_alarm": 0.1}}},
            {"name": "b", "replace_defaults": True, "fault_modes": {"y": 0.4}, "detectors": {"d": {"raised_by": {"y": 0.9}, "false_alarm": 0.05}}},
        ]}
    )  # fmt: skip
    net = build_network(topo)
    n = 40_000
    s = sample_network(net, n, np.random.default_rng(0))
    tol = 5 / np.sqrt(n)
    assert abs((s["fault__b"] == 1).mean() - 0.4) < tol
    # P(a impaired | a ok, b impaired) = 0.6
    sel = (s["fault__a"] == 0) & (s["impaired__b"] == 1)
    assert abs(s["impaired__a"][sel].mean() - 0.6) < 5 / np.sqrt(sel.sum())
    # P(b.d fired | b ok) = 0.05
    sel = s["fault__b"] == 0
    assert abs(s["symptom__b__d"][sel].mean() - 0.05) < 5 / np.sqrt(sel.sum())


def test_incidents_open_on_a_fired_observation_and_carry_truth(boutique):
    f = simulate(boutique, 500, rng=4)
    assert len(f) == 500 and f.incidents["id"].is_unique
    fired = f.observations[f.observations["value"] == "fired"]
    assert set(fired["incident_id"]) == set(f.incidents["id"])  # every incident has a fired observation
    known = set(boutique.symptoms)
    assert set(f.observations["symptom"]) <= known
    with_cause = f.incidents[f.incidents["cause_component"].notna()]
    assert len(with_cause) > 100
    for faults, c, m in zip(with_cause["faults"], with_cause["cause_component"], with_cause["cause_fault_mode"]):
        assert f"{c}:{m}" in faults.split("|")
    assert (f.incidents.loc[f.incidents["cause_component"].isna(), "faults"] == "none").all()
    # Checks not run: health checks are observed about half the time (P_OBSERVED).
    n_health = (f.observations["symptom"].str.endswith(".health_check")).sum()
    expected = 0.5 * 500 * sum(s.endswith(".health_check") for s in known)
    assert abs(n_health - expected) < 5 * np.sqrt(expected)
    # Recovery attempts: in order, at most 3, stopping at the first success.
    for _, g in f.actions.groupby("incident_id"):
        assert list(g["seq"]) == list(range(len(g))) and len(g) <= 3
        assert "success" not in list(g["outcome"])[:-1]


def test_bad_arguments(boutique):
    with pytest.raises(ParameterError, match="'n' parameter of simulate must be an int >= 0"):
        simulate(boutique, -1)
    with pytest.raises(ParameterError, match=r"probabilities in \[0, 1\]; p_observed\['latency'\] is"):
        simulate(boutique, 5, p_observed={"latency": 2})


def test_components_without_actions():
    topo = Topology.from_dict(
        {
            "name": "t",
            "components": [
                {"name": "a", "calls": ["b"], "actions": {"restart": None, "rollback": None, "scale_out": None}},
                {"name": "b"},
            ],
        }
    )
    assert topo.component("a").actions == ()
    f = simulate(topo, 200, rng=1)
    assert len(f) == 200 and set(f.actions["target"]) <= {"b"}
