"""diagnose(): hand-computed cases, brute force against pgmpy on random topologies, invariants."""

import json

import numpy as np
import pytest
from helpers import SEEDS, brute_force_loop, brute_force_marginals, random_topology

from diagnosis import Evidence, EvidenceError, Topology, build_network, diagnose, make_engine
from diagnosis.exceptions import ParameterError


def one_detector(prior=0.1, sens=0.9, fa=0.05) -> Topology:
    return Topology.from_dict(
        {
            "name": "one",
            "leak": 0.0,
            "components": [
                {
                    "name": "svc",
                    "replace_defaults": True,
                    "fault_modes": {"crash": prior},
                    "detectors": {"health": {"raised_by": {"crash": sens}, "false_alarm": fa}},
                }
            ],
        }
    )


def test_single_detector_bayes_by_hand():
    # P(crash | fired) = s p / (s p + f (1 - p)); P(crash | passed) = (1-s) p / ((1-s) p + (1-f)(1-p))
    p, s, f = 0.1, 0.9, 0.05
    topo = one_detector(p, s, f)
    fired = diagnose(topo, {"svc.health": "fired"})
    passed = diagnose(topo, {"svc.health": "passed"})
    assert fired.posteriors["svc"]["crash"] == pytest.approx(0.09 / (0.09 + 0.045), abs=1e-12)
    assert passed.posteriors["svc"]["crash"] == pytest.approx(0.01 / (0.01 + 0.855), abs=1e-12)
    # Not observed: the prior, untouched.
    assert diagnose(topo, {"svc.health": "absent"}).posteriors["svc"]["crash"] == pytest.approx(p, abs=1e-15)


def test_soft_evidence_by_hand():
    # A score with likelihood P(score | fired) = 0.6, P(score | passed) = 0.2.
    p, s, f = 0.1, 0.9, 0.05
    topo = one_detector(p, s, f)
    d = diagnose(topo, {"svc.health": {"fired": 0.6, "passed": 0.2}})
    like_crash = 0.6 * s + 0.2 * (1 - s)
    like_ok = 0.6 * f + 0.2 * (1 - f)
    assert d.posteriors["svc"]["crash"] == pytest.approx(
        like_crash * p / (like_crash * p + like_ok * (1 - p)), abs=1e-12
    )
    assert d.soft_evidence == {"symptom__svc__health": (0.2, 0.6)}


def chain() -> Topology:
    return Topology.from_dict(
        {
            "name": "chain",
            "leak": 0.0,
            "components": [
                {
                    "name": "frontend",
                    "replace_defaults": True,
                    "calls": [{"to": "backend", "strength": 0.8}],
                    "fault_modes": {"crash": 0.01},
                    "detectors": {"latency": {"raised_by": {"impaired": 0.9}, "false_alarm": 0.02}},
                },
                {
                    "name": "backend",
                    "replace_defaults": True,
                    "fault_modes": {"crash": 0.05},
                    "detectors": {"health": {"raised_by": {"crash": 0.95}, "false_alarm": 0.01}},
                    "actions": {"restart": {"success": {"crash": 0.9}, "cost": 1}},
                },
            ],
        }
    )


def test_backend_fault_explains_frontend_symptoms_by_hand():
    # Hypotheses (frontend, backend) with prior x P(latency fired) x P(health fired):
    w_ok_ok = 0.99 * 0.95 * 0.02 * 0.01
    w_c_ok = 0.01 * 0.95 * 0.9 * 0.01
    w_ok_c = 0.99 * 0.05 * (0.8 * 0.9 + 0.2 * 0.02) * 0.95  # backend crash impairs frontend w.p. 0.8
    w_c_c = 0.01 * 0.05 * 0.9 * 0.95
    total = w_ok_ok + w_c_ok + w_ok_c + w_c_c
    d = diagnose(chain(), {"frontend.latency": "fired", "backend.health": "fired"})
    assert d.posteriors["backend"]["crash"] == pytest.approx((w_ok_c + w_c_c) / total, abs=1e-12)
    assert d.posteriors["frontend"]["crash"] == pytest.approx((w_c_ok + w_c_c) / total, abs=1e-12)
    assert d.locations[0].component == "backend"
    # The frontend symptom alone is better explained by the backend (prior 0.05, link 0.8) than by the frontend (0.01).
    alone = diagnose(chain(), {"frontend.latency": "fired"})
    assert alone.posteriors["backend"]["crash"] > alone.posteriors["frontend"]["crash"]
    # Recovery: P(R | D) = 0.9 * P(backend crash | D).
    assert d.recommended.action == "restart" and d.recommended.target == "backend"
    assert d.recommended.expected_success == pytest.approx(0.9 * (w_ok_c + w_c_c) / total, abs=1e-12)


def _random_evidence(topo, seed):
    rng = np.random.default_rng(seed)
    ev = {}
    for s in topo.symptoms:
        r = rng.random()
        if r < 0.35:
            ev[s] = "fired"
        elif r < 0.6:
            ev[s] = "passed"
        elif r < 0.7:
            ev[s] = {"fired": float(rng.uniform(0.05, 1)), "passed": float(rng.uniform(0.05, 1))}
    return ev


@pytest.mark.parametrize("engine", ["reference", "exact"])
@pytest.mark.parametrize("seed", SEEDS)
def test_engines_match_brute_force_on_random_topologies(seed, engine):
    # "reference" is pgmpy's VariableElimination; "exact" the compiled engine.
    topo = random_topology(seed)
    net = build_network(topo)
    ev = Evidence(_random_evidence(topo, seed))
    resolved = ev.resolve(net)
    expected = brute_force_marginals(net, dict(resolved.hard), dict(resolved.soft))
    d = diagnose(net, ev, engine=engine)
    for comp, var in net.fault_variable.items():
        got = np.array([d.posteriors[comp][s] for s in net.variable(var).states])
        np.testing.assert_allclose(got, expected[var], atol=1e-10, rtol=0)


def test_two_brute_forces_agree():
    # The vectorised enumerator is itself checked against a plain loop over assignments.
    topo = random_topology(SEEDS[0], n_components=3)
    net = build_network(topo)
    hard = {net.symptom_variable[topo.symptoms[0]]: "fired"}
    a, b = brute_force_marginals(net, hard), brute_force_loop(net, hard)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS[:6])
def test_invariants(seed):
    topo = random_topology(seed)
    net = build_network(topo)
    raw = _random_evidence(topo, seed)
    d = diagnose(net, raw)
    for post in d.posteriors.values():
        assert sum(post.values()) == pytest.approx(1.0, abs=1e-12)
    # Order of evidence does not matter.
    d_rev = diagnose(net, dict(reversed(list(raw.items()))))
    for comp in d.posteriors:
        for s in d.posteriors[comp]:
            assert d.posteriors[comp][s] == pytest.approx(d_rev.posteriors[comp][s], abs=1e-12)
    # No evidence gives the prior of every fault variable.
    prior = diagnose(net, {})
    for c in topo.components:
        assert prior.posteriors[c.name]["ok"] == pytest.approx(c.p_ok, abs=1e-12)
        for m in c.fault_modes:
            assert prior.posteriors[c.name][m.name] == pytest.approx(m.prior, abs=1e-12)
    # Locations are sorted and cover every (component, fault mode).
    probs = [loc.probability for loc in d.locations]
    assert probs == sorted(probs, reverse=True)
    assert len(d.locations) == sum(len(c.fault_modes) for c in topo.components)
    # The recommended action is the argmax of expected success.
    assert d.recommended.expected_success == max(a.expected_success for a in d.actions)


def test_divorced_noisy_or_gives_the_same_posteriors():
    # A caller with seven callees: the impairment family is split into link variables
    # when max_parents is small; the posteriors must not change.
    comps = [
        {
            "name": "hub",
            "replace_defaults": True,
            "calls": [{"to": f"s{i}", "strength": 0.3 + 0.08 * i} for i in range(7)],
            "fault_modes": {"crash": 0.02},
            "detectors": {"latency": {"raised_by": ["impaired"], "sensitivity": 0.9, "false_alarm": 0.05}},
        }
    ] + [
        {
            "name": f"s{i}",
            "replace_defaults": True,
            "fault_modes": {"slow": 0.01 * (i + 1)},
            "detectors": {"health": {"raised_by": ["slow"], "sensitivity": 0.7, "false_alarm": 0.02}},
        }
        for i in range(7)
    ]
    topo = Topology.from_dict({"name": "hub", "leak": 0.01, "components": comps})
    ev = {"hub.latency": "fired", "s3.health": "passed", "s5.health": "fired"}
    wide = build_network(topo, max_parents=8)
    narrow = build_network(topo, max_parents=3)
    assert not any(v.role == "link" for v in wide.variables)
    assert sum(v.role == "link" for v in narrow.variables) >= 2
    assert max(len(v.parents) for v in narrow.variables if v.role in ("link", "impairment")) <= 3
    a, b = diagnose(wide, ev), diagnose(narrow, ev)
    for comp in a.posteriors:
        for s in a.posteriors[comp]:
            assert a.posteriors[comp][s] == pytest.approx(b.posteriors[comp][s], abs=1e-12)


def test_json_contract(boutique):
    d = diagnose(boutique, {"frontend.latency": "fired", "checkoutservice.error_rate": "fired"})
    doc = json.loads(json.dumps(d.to_dict()))
    assert doc["evidence"] == {"symptom__frontend__latency": "fired", "symptom__checkoutservice__error_rate": "fired"}
    loc = doc["locations"][0]
    assert set(loc) == {"component", "fault_mode", "probability", "variable", "state"}
    assert loc["variable"] == f"fault__{loc['component']}" and loc["state"] == loc["fault_mode"]
    assert set(doc["actions"][0]) >= {"action", "target", "expected_success", "cost"}


def test_unknown_symptom_lists_close_matches(webshop):
    with pytest.raises(EvidenceError, match=r"unknown symptom 'frontend\.latncy'; did you mean 'frontend\.latency'"):
        diagnose(webshop, {"frontend.latncy": "fired"})


@pytest.mark.parametrize("engine", ["reference", "exact"])
def test_impossible_evidence_is_an_error(engine):
    topo = one_detector(prior=0.0, sens=1.0, fa=0.0)
    with pytest.raises(EvidenceError, match="probability (0|zero)"):
        diagnose(topo, {"svc.health": "fired"}, engine=engine)


def test_unknown_engine(webshop):
    with pytest.raises(
        ParameterError,
        match=r"The 'engine' parameter of make_engine must be one of \{'auto', 'exact', 'approximate', 'reference'\}. Got 'fast' instead",
    ):
        make_engine(build_network(webshop), "fast")
