"""Recovery: expected success is sum_L P(R | L, a) P(L | D); the choice is the argmax, ties to lower cost."""

import math

import pytest

from diagnosis import ActionScore, Topology, choose_action, diagnose, score_actions


def topo():
    return Topology.from_dict(
        {
            "name": "r",
            "components": [
                {
                    "name": "svc",
                    "replace_defaults": True,
                    "fault_modes": {"crash": 0.1, "bad_deploy": 0.1},
                    "detectors": {"err": {"raised_by": {"crash": 0.9, "bad_deploy": 0.8}, "false_alarm": 0.05}},
                    "actions": {
                        "restart": {"success": {"crash": 0.9, "bad_deploy": 0.1}, "cost": 1},
                        "rollback": {"success": {"bad_deploy": 0.95, "crash": 0.3}, "cost": 3},
                        "pray": {"success": {}, "cost": 0},
                    },
                }
            ],
        }
    )


def test_expected_success_formula():
    post = {"svc": {"ok": 0.2, "crash": 0.5, "bad_deploy": 0.3}}
    scores = {s.action: s for s in score_actions(topo(), post)}
    assert scores["restart"].expected_success == pytest.approx(0.9 * 0.5 + 0.1 * 0.3, abs=1e-15)
    assert scores["rollback"].expected_success == pytest.approx(0.3 * 0.5 + 0.95 * 0.3, abs=1e-15)
    assert scores["pray"].expected_success == 0.0
    assert scores["pray"].success_per_cost == 0.0
    assert scores["restart"].success_per_cost == pytest.approx(scores["restart"].expected_success / 1)


def test_ranking_and_ties_go_to_lower_cost():
    post = {"svc": {"ok": 0.0, "crash": 0.6, "bad_deploy": 0.4}}
    ranked = score_actions(topo(), post)
    es = [s.expected_success for s in ranked]
    assert es == sorted(es, reverse=True)
    tie = [ActionScore("a", "x", 0.5, 3.0), ActionScore("b", "x", 0.5, 1.0), ActionScore("c", "x", 0.4, 0.1)]
    assert choose_action(tie).action == "b"
    assert choose_action([]) is None
    assert ActionScore("free", "x", 0.2, 0.0).success_per_cost == math.inf


def test_diagnosis_recommends_the_argmax():
    d = diagnose(topo(), {"svc.err": "fired"})
    manual = {
        a.name: sum(p * d.posteriors["svc"][m] for m, p in a.success.items()) for a in topo().component("svc").actions
    }
    assert d.recommended.action == max(manual, key=manual.get)
    assert d.recommended.expected_success == pytest.approx(manual[d.recommended.action], abs=1e-12)
    assert choose_action(d.actions) == d.recommended
