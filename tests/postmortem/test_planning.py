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
    u = gen.random((len(keep), len(ctx.acts)))
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
    states[1] = exact.acts.after(states[1], exact.acts.index("restart", "db"), "failure")
    a = exact.p_some_fault(exact.batch(states))
    b = ref.p_some_fault(ref.batch(states))
    np.testing.assert_allclose(a, b, atol=1e-9)
    assert np.all((0 < a) & (a < 1))


# ---------------------------------------------------------------- check values at scale
def _per_outcome_values(ctx, state, assume_fault):
    """The former implementation: one case per (check, outcome) with the outcome as hard evidence."""
    from diagnosis.postmortem.planning import _given_fault, _outcome_batch
    from diagnosis.postmortem.session import entropy_bits

    cand = [k for k, sv in enumerate(ctx.symptom_vars) if not state.observes(sv)]
    batch = ctx.batch([state])
    cand_vars = [ctx.symptom_vars[k] for k in cand]
    base = ctx.query(batch, targets=list(ctx.fault_vars) + cand_vars)
    p_f = np.array([base[sv][0, 1] for sv in cand_vars])
    q0 = np.ones(1)
    if assume_fault:
        ok = ctx.all_ok(batch)
        q0 = ctx.p_some_fault(batch, ok)
        f_ok = np.array([ctx.query(ok, targets=cand_vars)[sv][0, 1] for sv in cand_vars])
        p_f = np.clip((p_f - (1.0 - q0[0]) * f_ok) / q0[0], 0.0, 1.0)
        base = {**base, **{fv: _given_fault(base[fv], q0) for fv in ctx.fault_vars}}
    h0 = sum(float(entropy_bits(base[fv][0])) for fv in ctx.fault_vars)
    best0 = float(np.max(ctx.acts.expected_success(base)[0]))
    rows = [(0, k, o, p) for j, k in enumerate(cand) for o, p in ((0, 1 - p_f[j]), (1, p_f[j])) if p > 1e-12]
    out = _outcome_batch(ctx, batch, rows)
    marg = ctx.query(out)
    if assume_fault:
        marg = {fv: _given_fault(marg[fv], ctx.p_some_fault(out)) for fv in ctx.fault_vars}
    ent = sum(entropy_bits(marg[fv]) for fv in ctx.fault_vars)
    succ = ctx.acts.expected_success(marg).max(axis=1)
    ig = {ctx.detectors[k].symptom: h0 for k in cand}
    dr = {ctx.detectors[k].symptom: -best0 for k in cand}
    for r, (_, k, _o, p) in enumerate(rows):
        ig[ctx.detectors[k].symptom] -= p * ent[r]
        dr[ctx.detectors[k].symptom] += p * succ[r]
    return {s: (max(0.0, ig[s]), max(0.0, dr[s])) for s in ig}


def _incident(ctx, name):
    if name == "webshop":
        return ctx.state({"frontend.latency": "fired", "db.latency": "fired", "backend.latency": "fired"})
    d = ctx.detectors
    return ctx.state({d[0].symptom: "fired", d[5].symptom: "fired", d[9].symptom: "passed"})


def _top5(values):
    return [v.symptom for v in sorted(values, key=lambda v: (-v.information_per_cost, v.cost, v.symptom))][:5]


@pytest.mark.parametrize("name", ["webshop", "online-boutique"])
@pytest.mark.parametrize("assume_fault", [True, False])
def test_joint_check_values_match_per_outcome_queries(name, assume_fault):
    from diagnosis import bundled_topology, load_topology
    from diagnosis.postmortem.planning import _check_values
    from diagnosis.postmortem.session import Context

    ctx = Context(load_topology(bundled_topology(name)))
    state = _incident(ctx, name)
    ref = _per_outcome_values(ctx, state, assume_fault)
    got = _check_values(ctx, state, frozenset(), assume_fault, prune=0.0, max_expanded=None)
    assert len(got) == len(ref) > 10
    for v in got:
        assert v.information_gain == pytest.approx(ref[v.symptom][0], abs=1e-9)
        assert v.success_gain == pytest.approx(ref[v.symptom][1], abs=1e-9)


@pytest.mark.parametrize("name", ["webshop", "online-boutique"])
def test_pruned_check_values_keep_the_top_five(name):
    from diagnosis import bundled_topology, load_topology
    from diagnosis.postmortem.planning import PRUNE_BELOW, _check_values
    from diagnosis.postmortem.session import Context

    ctx = Context(load_topology(bundled_topology(name)))
    state = _incident(ctx, name)
    exact = _check_values(ctx, state, frozenset(), True, prune=0.0, max_expanded=None)
    pruned = _check_values(ctx, state, frozenset(), True, prune=PRUNE_BELOW)
    assert _top5(pruned) == _top5(exact)
    assert max(abs(a.information_gain - b.information_gain) for a, b in zip(exact, pruned)) < 1e-4


def test_state_budget_is_a_declared_approximation():
    from diagnosis import bundled_topology, load_topology
    from diagnosis.exceptions import ApproximationWarning
    from diagnosis.postmortem.planning import _check_values
    from diagnosis.postmortem.session import Context

    ctx = Context(load_topology(bundled_topology("webshop")))
    state = _incident(ctx, "webshop")
    exact = _check_values(ctx, state, frozenset(), True, max_expanded=None)
    with pytest.warns(ApproximationWarning, match="taken as independent"):
        approx = _check_values(ctx, state, frozenset(), True, max_expanded=8)
    assert len(approx) == len(exact)
    assert all(a.p_fired == pytest.approx(b.p_fired, abs=1e-12) for a, b in zip(exact, approx))


# ---------------------------------------------------------------- the plan on large models
@pytest.mark.parametrize("assume_fault", [True, False])
def test_factorised_sequence_cost_is_exact_when_the_posterior_factorises(webshop, assume_fault):
    """With no evidence the components' faults are independent: the factorised ECR is the exact one."""
    from diagnosis.postmortem.planning import _Node, _Planner
    from diagnosis.postmortem.session import Context

    ctx = Context(webshop)
    nodes = [_Node(ctx.state({}), frozenset(), 0), _Node(ctx.state({}), frozenset({0, 3}), 0)]
    exact = _Planner(ctx, 500.0, 20, assume_fault, approx_above=None)  # a dear escalation: long sequences
    approx = _Planner(ctx, 500.0, 20, assume_fault, approx_above=0)
    seq_e, len_e, ecr_e = exact.sequence_costs(exact.beliefs(nodes), [nd.tried for nd in nodes])
    bel = approx.beliefs(nodes)
    assert bel.large.all()
    seq_a, len_a, ecr_a = approx.sequence_costs(bel, [nd.tried for nd in nodes])
    assert (len_e == len_a).all() and (len_e >= 3).all() and (seq_e == seq_a).all()
    np.testing.assert_allclose(ecr_a, ecr_e, atol=1e-9)


def _simulated_roots(ctx, topo, n, seed):
    from diagnosis import simulate
    from diagnosis.postmortem.planning import _Node

    return [_Node(ctx.state(i.observation_mapping()), frozenset(), 0) for i in simulate(topo, n, rng=seed).records()]


def test_large_model_plan_agrees_with_the_exact_plan_on_webshop(webshop):
    """The approximation of large models, forced on webshop with 16 of its 19 fault states, against the exact plan.

    ``benchmarks/planning.py --approx-error --topology webshop --max-expanded 16`` measured on 100
    webshop incidents (seed 7): top-5 checks by ECO overlap 98%, first step the same in 95%, the
    plan's expected cost within 3.0% on average (17.9% at most), the policy's simulated cost -0.1%.
    """
    from diagnosis.exceptions import ApproximationWarning
    from diagnosis.postmortem.planning import _Planner, _PlanPolicy
    from diagnosis.postmortem.session import Context

    ctx = Context(webshop)
    exact = _Planner(ctx, 30.0, 20, True, approx_above=None)
    approx = _Planner(ctx, 30.0, 20, True, approx_above=0, max_expanded=16)
    assert approx.max_expanded < sum(len(c.fault_modes) for c in webshop.components)
    policy = _PlanPolicy()
    overlap, first, rel = [], [], []
    for root in _simulated_roots(ctx, webshop, 12, SEEDS[2]):
        e = policy.values(exact, [root])[3][0]
        a = policy.values(approx, [root])[3][0]
        top = [sorted(m, key=lambda k: (round(m[k], 9), exact.check_cost[k], k))[:5] for m in (e, a)]
        overlap.append(len(set(top[0]) & set(top[1])) / max(len(top[0]), 1))
        pe, pa = exact.plan(root, "plan", max_nodes=200), approx.plan(root, "plan", max_nodes=200)
        assert pe.exact and not pa.exact
        first.append(pe.first.describe() == pa.first.describe())
        rel.append(abs(pa.expected_cost - pe.expected_cost) / pe.expected_cost)
    assert np.mean(overlap) >= 0.9, overlap
    assert np.mean(first) >= 0.8, first
    assert np.mean(rel) < 0.06 and max(rel) < 0.25, rel
    with pytest.warns(ApproximationWarning, match="factorised posterior"):
        approx.declare()
    exact.declare()  # nothing approximated: no warning (warnings are errors here)


def test_models_up_to_max_expanded_states_are_planned_exactly(webshop):
    from diagnosis.postmortem.planning import MAX_EXPANDED, _Planner
    from diagnosis.postmortem.session import Context

    ctx = Context(webshop)
    planner = _Planner(ctx, 30.0, 20)
    roots = _simulated_roots(ctx, webshop, 5, SEEDS[0])
    assert not planner.beliefs(roots).large.any()
    assert sum(len(c.fault_modes) for c in webshop.components) <= MAX_EXPANDED
    plan = planner.plan(roots[0], "plan", max_nodes=200)
    assert plan.exact and not planner.approximated


def test_rank_checks_and_the_plan_share_the_root_joints(webshop):
    """One context: the plan's approximate decision reuses the joints rank_checks computed (same values)."""
    from diagnosis.postmortem.planning import _Node, _Planner, _PlanPolicy
    from diagnosis.postmortem.session import Context, findings_from, state_of

    ev = {"frontend.latency": "fired", "db.latency": "fired", "backend.latency": "fired"}
    ctx, fresh = Context(webshop), Context(webshop)
    rank_checks(ctx, ev)
    assert len(ctx.memo) == 1
    values = []
    for c in (ctx, fresh):
        planner = _Planner(c, 30.0, 20, True, approx_above=0, max_expanded=64)
        root = _Node(state_of(c, findings_from(ev)), frozenset(), 0)
        values.append(_PlanPolicy().values(planner, [root])[3][0])
    assert len(ctx.memo) == 1 and len(fresh.memo) == 1  # reused, not recomputed
    assert values[0].keys() == values[1].keys() and len(values[0]) > 3
    for k, v in values[0].items():
        assert v == pytest.approx(values[1][k], abs=1e-12)
