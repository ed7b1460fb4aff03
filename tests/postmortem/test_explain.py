"""Explanations: contributions against brute-force enumeration, paths, unexplained symptoms, what-ifs."""

import json
import math

import numpy as np
import pytest
from helpers import SEEDS, brute_force_marginals, random_topology

from diagnosis import EvidenceError, build_network, diagnose
from diagnosis.exceptions import ParameterError, TopologyError
from diagnosis.postmortem.explain import explain, propagation_paths


def _logit(p):
    return math.log(p) - math.log1p(-p)


def _random_case(seed):
    topo = random_topology(seed, n_components=4)
    net = build_network(topo)
    rng = np.random.default_rng(seed)
    symptoms = list(net.symptom_variable)
    chosen = rng.choice(symptoms, size=min(4, len(symptoms)), replace=False)
    evidence = {}
    for i, s in enumerate(chosen):
        evidence[str(s)] = "fired" if i % 2 == 0 else "passed"
    if len(chosen) > 2:  # one soft score too
        evidence[str(chosen[-1])] = {"fired": 0.7, "passed": 0.2}
    return topo, net, evidence


def _resolve(net, evidence, actions=()):
    hard, soft = {}, {}
    for s, v in evidence.items():
        var = net.symptom_variable[s]
        if isinstance(v, dict):
            soft[var] = (v["passed"], v["fired"])
        else:
            hard[var] = v
    for name, target, outcome in actions:
        action = next(a for a in net.topology.actions if (a.name, a.component) == (name, target))
        fv = net.fault_variable[target]
        succ = np.array([0.0 if s == "ok" else action.success.get(s, 0.0) for s in net.variable(fv).states])
        lik = 1.0 - succ if outcome == "failure" else succ
        soft[fv] = tuple(np.asarray(soft.get(fv, np.ones(len(succ)))) * np.maximum(lik, 1e-12))
    return hard, soft


@pytest.mark.parametrize("seed", SEEDS[:6])
def test_contributions_are_log_likelihood_ratios_by_enumeration(seed):
    topo, net, evidence = _random_case(seed)
    actions = [("fix", "c0", "failure")]
    ex = explain(topo, evidence, actions=actions, n_hypotheses=2)
    hard, soft = _resolve(net, evidence, actions)
    full = brute_force_marginals(net, hard, soft)
    for h in ex.hypotheses:
        fv = net.fault_variable[h.component]
        k = net.variable(fv).states.index(h.fault_mode)
        assert h.probability == pytest.approx(full[fv][k], abs=1e-10)
        by_name = {c.finding: c.log_likelihood_ratio for c in h.contributions}
        assert len(by_name) == len(evidence) + len(actions)
        for s in evidence:
            # Independently: P(o | H, rest) and P(o | not H, rest) from the enumerated joint.
            rest = {k2: v for k2, v in evidence.items() if k2 != s}
            h_rest, s_rest = _resolve(net, rest, actions)
            var = net.symptom_variable[s]
            p_h = brute_force_marginals(net, h_rest, s_rest)[fv][k]
            given_h = brute_force_marginals(net, {**h_rest, fv: h.fault_mode}, s_rest)[var]
            p_o = brute_force_marginals(net, h_rest, s_rest)[var]
            if isinstance(evidence[s], dict):
                lik = np.array([evidence[s]["passed"], evidence[s]["fired"]])
                l_h, l_all = lik @ given_h, lik @ p_o
            else:
                j = ("passed", "fired").index(evidence[s])
                l_h, l_all = given_h[j], p_o[j]
            l_not = (l_all - l_h * p_h) / (1.0 - p_h)
            assert by_name[s] == pytest.approx(math.log(l_h / l_not), abs=1e-8)
        prior = net.variable(fv).table[k]
        assert h.log_bayes_factor == pytest.approx(_logit(full[fv][k]) - _logit(prior), abs=1e-8)


def test_what_ifs_match_diagnose_with_the_flipped_observation(webshop):
    evidence = {
        "frontend.latency": "fired",
        "db.latency": "fired",
        "db.health_check": "passed",
        "db.disk_usage": "passed",
    }
    ex = explain(webshop, evidence)
    assert ex.decisive, "flipping db.latency or db.health_check changes the answer"
    for w in ex.what_ifs:
        flipped = dict(evidence, **{w.finding: w.flipped})
        top = diagnose(webshop, flipped).locations[0]
        assert (w.top_component, w.top_fault_mode) == (top.component, top.fault_mode)
        assert w.top_probability == pytest.approx(top.probability, abs=1e-10)
        assert w.changes_top == (
            (top.component, top.fault_mode) != (ex.hypotheses[0].component, ex.hypotheses[0].fault_mode)
        )
    # Decisive flips come first.
    flags = [w.changes_top for w in ex.what_ifs]
    assert flags == sorted(flags, reverse=True)


def test_paths_and_unexplained_symptoms(webshop):
    ex = explain(webshop, {"frontend.latency": "fired", "db.latency": "fired", "frontend.cpu": "fired", "db.health_check": "passed"},
                 n_hypotheses=5)  # fmt: skip
    h = next(h for h in ex.hypotheses if (h.component, h.fault_mode) == ("db", "slow_queries"))
    # frontend.cpu is raised only by the frontend's own cpu_saturation: a slow database does not explain it.
    assert h.unexplained == ("frontend.cpu",)
    paths = {p.symptom: p for p in h.paths}
    assert paths["db.latency"].components == ("db",) and paths["db.latency"].trigger == "slow_queries"
    assert paths["frontend.latency"].components == ("db", "backend", "frontend")
    # strength = impact 0.85 x datastore 0.85 x call 0.7 x sensitivity 0.8
    assert paths["frontend.latency"].strength == pytest.approx(0.85 * 0.85 * 0.7 * 0.8)
    assert 0 < paths["frontend.latency"].p_fired < 1
    assert "=> frontend.latency" in paths["frontend.latency"].describe()


def test_contradicting_symptoms(webshop):
    # A crash of the database would almost surely fail its health check; it passed.
    ex = explain(webshop, {"db.error_rate": "fired", "db.health_check": "passed"}, n_hypotheses=40)
    assert len(ex.hypotheses) == 19  # every location of the web shop
    crash = [h for h in ex.hypotheses if (h.component, h.fault_mode) == ("db", "down")]
    assert crash and crash[0].contradicting == ("db.health_check",)


def test_every_path_is_in_the_dependency_graph(boutique):
    net = build_network(boutique)
    edges = {(d.target, d.source) for d in boutique.dependencies}
    for comp in boutique.components:
        for mode in comp.fault_modes:
            for symptom, (chain, _trigger, strength) in propagation_paths(net, comp.name, mode.name).items():
                assert chain[0] == comp.name and chain[-1] == symptom.split(".")[0]
                assert all((a, b) in edges for a, b in zip(chain, chain[1:]))
                assert 0 < strength <= 1


def test_to_dict_is_json(webshop):
    ex = explain(webshop, {"frontend.latency": "fired"}, actions=[("restart", "backend", "failure")])
    doc = json.loads(json.dumps(ex.to_dict(), allow_nan=False))
    assert doc["hypotheses"][0]["contributions"][0]["finding"] in {"frontend.latency", "restart backend"}


def test_errors(webshop):
    with pytest.raises(ParameterError, match="'n_hypotheses' parameter of explain must be an int >= 1. Got 0 instead"):
        explain(webshop, {}, n_hypotheses=0)
    with pytest.raises(
        EvidenceError,
        match="unknown action 'reboot' on target 'backend'; actions of 'backend': \\['restart', 'rollback', 'scale_out'\\]",
    ):
        explain(webshop, {}, actions=[("reboot", "backend", "failure")])
    with pytest.raises(EvidenceError, match="unknown outcome 'failed'; allowed"):
        explain(webshop, {}, actions=[("restart", "backend", "failed")])
    with pytest.raises(EvidenceError, match="must be \\(action, target, outcome\\)"):
        explain(webshop, {}, actions=["restart"])
    with pytest.raises(TopologyError, match="component 'db' has no fault mode 'melted'"):
        propagation_paths(build_network(webshop), "db", "melted")
