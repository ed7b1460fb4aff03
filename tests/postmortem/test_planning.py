"""Next best check and check-or-act plan: exact values against enumeration, Monte Carlo against the exact expectation."""

import json
import math

import numpy as np
import pytest
from helpers import SEEDS, brute_force_marginals, random_topology

from diagnosis import DiagnosisError, EvidenceError, build_network
from diagnosis.exceptions import ParameterError
from diagnosis.postmortem.planning import (
    ESCALATION_COST,
    POLICIES,
    compare_policies,
    next_step,
    plan_recovery,
    rank_checks,
)


def _entropy(p):
    p = np.asarray(p)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def _state(net, evidence, failed):
    hard = {net.symptom_variable[s]: v for s, v in evidence.items()}
    soft = {}
    for name, target in failed:
        action = next(a for a in net.topology.actions if (a.name, a.component) == (name, target))
        fv = net.fault_variable[target]
        fail = np.array([1.0 if s == "ok" else 1.0 - action.success.get(s, 0.0) for s in net.variable(fv).states])
        soft[fv] = tuple(np.asarray(soft.get(fv, np.ones(len(fail)))) * np.maximum(fail, 1e-12))
    return hard, soft


def _marginals(net, hard, soft=None, assume_fault=False):
    """Enumerated marginals; with assume_fault, given that some component is faulty."""
    m = brute_force_marginals(net, hard, soft)
    if not assume_fault:
        return m
    fvs = list(net.fault_variable.values())
    z, ok = 1.0, dict(hard)  # P(all ok | D) by the chain rule, each factor by enumeration
    for fv in fvs:
        z *= brute_force_marginals(net, ok, soft)[fv][0]
        ok[fv] = "ok"
    m_ok = brute_force_marginals(net, ok, soft)
    out = {}
    for var, vec in m.items():
        # P(x | D, some fault) = (P(x | D) - P(all ok | D) P(x | D, all ok)) / (1 - P(all ok | D))
        out[var] = (vec - z * m_ok[var]) / (1.0 - z)
    return out


def _p_success(net, marg, name, target):
    action = next(a for a in net.topology.actions if (a.name, a.component) == (name, target))
    fv = net.fault_variable[target]
    return sum(action.success.get(s, 0.0) * p for s, p in zip(net.variable(fv).states, marg[fv]) if s != "ok")


@pytest.mark.parametrize("assume_fault", [False, True])
@pytest.mark.parametrize("seed", SEEDS[:4])
def test_check_values_by_enumeration(seed, assume_fault):
    topo = random_topology(seed, n_components=3)
    net = build_network(topo)
    first = topo.symptoms[0]
    evidence = {first: "fired"}
    values = rank_checks(topo, evidence, assume_fault=assume_fault)
    assert {v.symptom for v in values} == set(topo.symptoms) - {first}
    hard, _ = _state(net, evidence, [])
    base = _marginals(net, hard, assume_fault=assume_fault)
    fvs = list(net.fault_variable.values())
    h0 = sum(_entropy(base[fv]) for fv in fvs)
    best0 = max(_p_success(net, base, a.name, a.component) for a in topo.actions)
    for v in values:
        sv = net.symptom_variable[v.symptom]
        exp_h = exp_r = 0.0
        for j, state in enumerate(("passed", "fired")):
            p_o = base[sv][j]
            if p_o <= 1e-12:
                continue
            m = _marginals(net, {**hard, sv: state}, assume_fault=assume_fault)
            exp_h += p_o * sum(_entropy(m[fv]) for fv in fvs)
            exp_r += p_o * max(_p_success(net, m, a.name, a.component) for a in topo.actions)
        assert v.p_fired == pytest.approx(base[sv][1], abs=1e-10)
        assert v.information_gain == pytest.approx(h0 - exp_h, abs=1e-9)
        assert v.success_gain == pytest.approx(exp_r - best0, abs=1e-9)
    ratios = [v.information_per_cost for v in values]
    assert ratios == sorted(ratios, reverse=True)
    by_success = [v.success_per_cost for v in rank_checks(topo, evidence, by="success", assume_fault=assume_fault)]
    assert by_success == sorted(by_success, reverse=True)


def _brute_expected_cost(topo, net, evidence, failed, c_esc, policy, assume_fault):
    """Expected cost of a policy by recursion: decisions from next_step, probabilities from enumeration."""
    step = next_step(topo, evidence, actions=[(a, t, "failure") for a, t in failed], policy=policy, escalation_cost=c_esc,
                     assume_fault=assume_fault)  # fmt: skip
    if step.kind == "escalate":
        return c_esc
    hard, soft = _state(net, evidence, failed)
    marg = _marginals(net, hard, soft, assume_fault)
    if step.kind == "check":
        sv = net.symptom_variable[step.name]
        total = step.cost
        for j, state in enumerate(("passed", "fired")):
            if marg[sv][j] > 1e-12:
                total += marg[sv][j] * _brute_expected_cost(
                    topo, net, {**evidence, step.name: state}, failed, c_esc, policy, assume_fault
                )
        return total
    p = _p_success(net, marg, step.name, step.target)
    assert step.probability == pytest.approx(p, abs=1e-10)
    rest = (
        _brute_expected_cost(topo, net, evidence, [*failed, (step.name, step.target)], c_esc, policy, assume_fault)
        if p < 1 - 1e-12
        else 0.0
    )
    return step.cost + (1 - p) * rest


@pytest.mark.parametrize("assume_fault", [False, True])
@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("policy", ["plan", "naive"])
def test_expected_cost_by_enumeration(seed, policy, assume_fault):
    topo = random_topology(seed, n_components=3)
    net = build_network(topo)
    evidence = {topo.symptoms[0]: "fired"}
    plan = plan_recovery(topo, evidence, policy=policy, escalation_cost=12.0, assume_fault=assume_fault)
    assert plan.exact and plan.steps[-1].kind == "escalate"
    expected = _brute_expected_cost(topo, net, evidence, [], 12.0, policy, assume_fault)
    assert plan.expected_cost == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("assume_fault", [False, True])
def test_monte_carlo_agrees_with_the_exact_expected_cost(assume_fault):
    """Run the policies on incidents drawn from the model with the same initial evidence (and a fault, if assumed)."""
    from diagnosis.logs.simulate import OpenedIncidents, sample_network
    from diagnosis.postmortem.planning import _Planner, _run_policy
    from diagnosis.postmortem.session import Context

    topo = random_topology(SEEDS[0], n_components=3)
    ctx = Context(topo)
    symptom = topo.symptoms[0]
    k = topo.symptoms.index(symptom)
    gen = np.random.default_rng(SEEDS[1])
    s = sample_network(ctx.network, 200_000, gen)
    sym = np.stack([s[v] for v in ctx.symptom_vars], axis=1).astype(np.int64)
    flt = np.stack([s[v] for v in ctx.fault_vars], axis=1).astype(np.int64)
    keep = np.flatnonzero((sym[:, k] == 1) & ((flt > 0).any(axis=1) | (not assume_fault)))[:6000]
    observed = np.zeros((len(keep), len(ctx.detectors)), dtype=bool)
    observed[:, k] = True
    truth = OpenedIncidents(flt[keep], sym[keep], observed)
    u = gen.random((len(keep), len(ctx.actions)))
    planner = _Planner(ctx, 12.0, 20, assume_fault)
    for policy in ("plan", "naive"):
        run = _run_policy(planner, truth, u, policy)
        exact = plan_recovery(
            topo, {symptom: "fired"}, policy=policy, escalation_cost=12.0, assume_fault=assume_fault
        ).expected_cost
        assert abs(run.mean_cost - exact) < 4 * run.se_cost + 1e-9, (policy, run.mean_cost, exact, run.se_cost)


def test_compare_policies_is_reproducible_and_consistent(webshop):
    a = compare_policies(webshop, 250, rng=3)
    b = compare_policies(webshop, 250, rng=3)
    assert a.to_dict() == b.to_dict()
    assert set(a.results) == set(POLICIES)
    n_actions = len(webshop.actions)
    for p, r in a.results.items():
        assert len(r.costs) == 250
        assert all(c > 0 for c in r.costs)
        assert all(na <= n_actions for na in r.n_actions)
        assert all(c >= ESCALATION_COST for c, e in zip(r.costs, r.escalated) if e)
        if p != "plan":
            assert not any(r.n_checks)
    s = a.saving("plan", "naive")
    assert s["saving"] == pytest.approx(a.results["naive"].mean_cost - a.results["plan"].mean_cost)
    assert s["saving"] > 0  # the check-or-act plan is cheaper than the naive order on these incidents
    json.dumps(a.to_dict(), allow_nan=False)


def test_tried_actions_are_not_repeated_and_failures_are_evidence(webshop):
    ev = {"frontend.latency": "fired", "backend.latency": "fired", "db.latency": "fired"}
    first = next_step(webshop, ev, policy="naive")
    again = next_step(webshop, ev, actions=[(first.name, first.target, "failure")], policy="naive")
    assert (again.name, again.target) != (first.name, first.target)
    assert again.probability != pytest.approx(first.probability)
    path = plan_recovery(webshop, ev, policy="actions").steps
    acts = [(s.name, s.target) for s in path if s.kind == "action"]
    assert len(acts) == len(set(acts))


def test_node_budget_marks_the_cost_inexact(webshop):
    ev = {"frontend.latency": "fired", "backend.latency": "fired", "db.latency": "fired"}
    full = plan_recovery(webshop, ev)
    cut = plan_recovery(webshop, ev, max_nodes=1)
    assert full.exact and not cut.exact
    assert math.isfinite(cut.expected_cost) and cut.first == full.first


def test_errors(webshop):
    with pytest.raises(DiagnosisError, match="unknown policy 'random'; allowed"):
        next_step(webshop, {}, policy="random")
    with pytest.raises(ParameterError, match="'escalation_cost' parameter must be a number > 0. Got 0 instead"):
        next_step(webshop, {}, escalation_cost=0)
    with pytest.raises(ParameterError, match="'max_steps' parameter must be an int >= 1. Got 0 instead"):
        plan_recovery(webshop, {}, max_steps=0)
    with pytest.raises(ParameterError, match="'max_nodes' parameter of plan_recovery must be an int >= 1"):
        plan_recovery(webshop, {}, max_nodes=0)
    with pytest.raises(
        ParameterError,
        match="'by' parameter of rank_checks must be one of .'information', 'success'.. Got 'cost' instead",
    ):
        rank_checks(webshop, {}, by="cost")
    with pytest.raises(ParameterError, match="'n' parameter of compare_policies must be an int >= 1. Got 0 instead"):
        compare_policies(webshop, 0)
    with pytest.raises(ParameterError, match=r"probabilities in \[0, 1\]; p_observed\['latency'\] is 2.0"):
        compare_policies(webshop, 5, p_observed={"latency": 2.0})
    with pytest.raises(DiagnosisError, match="policy 'plan' was not run"):
        compare_policies(webshop, 5, policies=["naive"], rng=1).saving()
    with pytest.raises(EvidenceError, match="unknown symptom 'db.latncy'"):
        rank_checks(webshop, {"db.latncy": "fired"})


def test_p_some_fault_without_log_evidence(webshop):
    """The chain-rule fallback (engines without log_evidence) agrees with the compiled engine's log_evidence."""
    from diagnosis.postmortem.session import Context

    exact = Context(webshop)
    ref = Context(webshop, "reference")
    assert hasattr(exact.engine, "log_evidence") and not hasattr(ref.engine, "log_evidence")
    states = [
        exact.state({"frontend.latency": "fired"}),
        exact.state({"db.latency": "fired", "db.health_check": "passed"}),
    ]
    states[1] = exact.after_action(states[1], exact.action_index("restart", "db"), "failure")
    a = exact.p_some_fault(exact.batch(states))
    b = ref.p_some_fault(ref.batch(states))
    np.testing.assert_allclose(a, b, atol=1e-9)
    assert np.all((0 < a) & (a < 1))
