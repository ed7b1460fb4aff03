"""Exactness and behaviour of the compiled junction-tree engine."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from diagnosis.exceptions import ApproximationWarning, EvidenceError, ModelError, ModelTooLargeError
from diagnosis.inference import Engine, make_engine
from diagnosis.inference.compiled import CompiledEngine, CompiledStats

TOL = 1e-9


def _partial_evidence(netlib, model, names, n_cases, n_obs, *, seed):
    """Sampled evidence on ``n_obs`` variables; every other one blanked in ~40% of cases."""
    rng = np.random.default_rng(seed)
    vals = netlib.sample(model, n_cases, seed=seed)
    obs = rng.choice(sorted(names), size=n_obs, replace=False)
    ev = {}
    for j, v in enumerate(obs):
        a = vals[v].copy()
        if j % 2:
            a[rng.random(n_cases) < 0.4] = -1
        ev[str(v)] = a
    return ev


def _check_against_pgmpy(netlib, model, engine, targets, ev, n_cases):
    res = engine.query(targets, ev)
    logz = engine.log_evidence(ev)
    worst = 0.0
    from pgmpy.inference import VariableElimination

    ve = VariableElimination(model)
    for b in range(n_cases):
        e = {v: engine.states[v][a[b]] for v, a in ev.items() if a[b] >= 0}
        ref = netlib.reference(model, targets, e)
        for t in targets:
            expected = np.eye(len(engine.states[t]))[ev[t][b]] if t in e else ref[t]
            worst = max(worst, float(np.abs(res[t][b] - expected).max()))
        if e:
            joint = ve.query(list(e), joint=True, show_progress=False)
            worst = max(worst, abs(float(np.exp(logz[b])) - float(joint.get_value(**e))))
    return worst


@pytest.mark.parametrize("seed", range(8))
def test_random_networks_match_pgmpy(seed, netlib):
    if seed % 3 == 0:
        model = netlib.noisy_or_network(5, seed=seed, calls="random" if seed % 2 else "local")
    else:
        model = netlib.random_network(9, seed=seed, zeros=0.25 if seed % 2 else 0.0, disconnected=seed == 5)
    engine = CompiledEngine.from_pgmpy(model)
    names = list(engine.variables)
    ev = _partial_evidence(netlib, model, names, 5, 4, seed=seed)
    rng = np.random.default_rng(seed)
    targets = [v for v in names if rng.random() < 0.6] or names[:2]
    assert _check_against_pgmpy(netlib, model, engine, targets, ev, 5) <= TOL


@pytest.mark.parametrize("name, n_targets, n_cases", [("asia", None, 4), ("alarm", 8, 3), ("win95pts", 6, 2)])
def test_classic_networks_match_pgmpy(request, name, n_targets, n_cases, netlib):
    model = request.getfixturevalue(name)
    engine = CompiledEngine.from_pgmpy(model)
    leaves = [v for v in model.nodes() if model.out_degree(v) == 0]
    vals = netlib.sample(model, n_cases, seed=3)
    ev = {v: vals[v] for v in leaves}
    hidden = [v for v in engine.variables if v not in leaves]
    rng = np.random.default_rng(0)
    targets = hidden if n_targets is None else sorted(rng.choice(hidden, size=n_targets, replace=False).tolist())
    assert _check_against_pgmpy(netlib, model, engine, targets, ev, n_cases) <= TOL


def _to_pyagrum(gum, model):
    bn = gum.BayesNet()
    for v in model.nodes():
        cpd = model.get_cpds(v)
        bn.add(gum.LabelizedVariable(v, v, [str(s) for s in cpd.state_names[v]]))
    for v in model.nodes():
        for p in model.get_cpds(v).variables[1:]:
            bn.addArc(p, v)
    for v in model.nodes():
        cpd = model.get_cpds(v)
        table = np.asarray(cpd.values, dtype=float)
        pot = bn.cpt(v)
        arr = np.transpose(table, [list(cpd.variables).index(n) for n in pot.names])
        pot.fillWith(np.transpose(arr, list(range(arr.ndim))[::-1]).ravel().tolist())
    return bn


def _pyagrum_check(gum, model, engine, targets, ev, n_cases):
    res = engine.query(targets, ev)
    ie = gum.LazyPropagation(_to_pyagrum(gum, model))
    worst = 0.0
    for b in range(n_cases):
        ie.eraseAllEvidence()
        ie.setEvidence({v: int(a[b]) for v, a in ev.items()})
        ie.makeInference()
        for t in targets:
            worst = max(worst, float(np.abs(ie.posterior(t).toarray() - res[t][b]).max()))
    return worst


def test_pyagrum_agrees_on_alarm(alarm, netlib):
    gum = pytest.importorskip("pyagrum")
    engine = CompiledEngine.from_pgmpy(alarm)
    leaves = [v for v in alarm.nodes() if alarm.out_degree(v) == 0]
    vals = netlib.sample(alarm, 5, seed=11)
    ev = {v: vals[v] for v in leaves}
    targets = [v for v in engine.variables if v not in leaves]
    assert _pyagrum_check(gum, alarm, engine, targets, ev, 5) <= TOL


def test_bundled_messages_and_static_subtrees_are_exact(netlib, monkeypatch):
    """A network whose plan bundles small separators and folds batch-independent subtrees."""
    import diagnosis.inference.compiled as compiled

    model = netlib.noisy_or_network(20, seed=1, detectors=2)
    engine = CompiledEngine.from_pgmpy(model)
    faults = [f"F{i}" for i in range(20)]
    dets = [v for v in engine.variables if v.startswith("D")]
    vals = netlib.sample(model, 6, seed=1)
    ev = {v: vals[v] for v in dets}
    ev["D3_0"] = np.where(np.arange(6) % 2 == 0, ev["D3_0"], -1)
    res = engine.query(faults, ev)
    plan = next(iter(engine._plans.values()))
    assert any(b is not None for b in plan.st.collect_bundle)
    assert any(b is not None for b in plan.st.phi_bundle)
    assert not all(plan.st.dynamic)
    monkeypatch.setattr(compiled, "_SMALL_SEP", 10**12)  # no bundles
    plain = CompiledEngine.from_pgmpy(model).query(faults, ev)
    for f in faults:
        np.testing.assert_allclose(res[f], plain[f], atol=1e-13)
    e = {v: engine.states[v][a[0]] for v, a in ev.items() if a[0] >= 0}
    ref = netlib.reference(model, ["F0", "F7"], e)
    for f in ("F0", "F7"):
        assert np.abs(res[f][0] - ref[f]).max() <= TOL
    gum = pytest.importorskip("pyagrum")
    full = {v: a for v, a in ev.items() if v != "D3_0"}
    assert _pyagrum_check(gum, model, engine, faults, full, 6) <= TOL


def test_soft_evidence_matches_pgmpy_virtual_evidence(netlib):
    from pgmpy.factors.discrete import TabularCPD

    model = netlib.random_network(8, seed=21)
    engine = CompiledEngine.from_pgmpy(model)
    names = list(engine.variables)
    rng = np.random.default_rng(2)
    soft_vars = ["X2", "X6"]
    soft = {v: rng.random((3, len(engine.states[v]))) * 5 for v in soft_vars}
    vals = netlib.sample(model, 3, seed=2)
    ev = {"X7": vals["X7"]}
    res = engine.query(names, ev, soft)
    for b in range(3):
        virtual = []
        for v in soft_vars:
            lik = soft[v][b] / soft[v][b].sum()
            virtual.append(TabularCPD(v, len(lik), lik.reshape(-1, 1), state_names={v: list(engine.states[v])}))
        ref = netlib.reference(model, names, {"X7": engine.states["X7"][ev["X7"][b]]}, virtual)
        for t, r in ref.items():
            assert np.abs(res[t][b] - r).max() <= TOL


def test_soft_evidence_scale_and_uninformative_rows(netlib):
    model = netlib.noisy_or_network(4, seed=3)
    engine = CompiledEngine.from_pgmpy(model)
    lik = np.array([[0.2, 0.9], [1.0, 1.0], [2.0, 9.0]])
    res = engine.query(["F0", "F1"], soft_evidence={"D0_0": lik})
    prior = engine.query(["F0", "F1"], n_cases=1)
    np.testing.assert_allclose(res["F0"][1], prior["F0"][0], atol=TOL)  # all-ones row = no information
    np.testing.assert_allclose(res["F0"][0], res["F0"][2], atol=TOL)  # only the ratio matters
    le = engine.log_evidence(soft_evidence={"D0_0": lik})
    assert le[1] == pytest.approx(0.0, abs=TOL)
    assert le[2] - le[0] == pytest.approx(np.log(10.0), abs=1e-9)


def test_invariants_rows_sum_prior_and_batch_equals_single(netlib):
    model = netlib.random_network(10, seed=4)
    engine = CompiledEngine.from_pgmpy(model)
    names = list(engine.variables)
    ev = _partial_evidence(netlib, model, names, 7, 4, seed=4)
    res = engine.query(names, ev)
    for t in names:
        assert res[t].shape == (7, len(engine.states[t]))
        np.testing.assert_allclose(res[t].sum(axis=1), 1.0, atol=1e-12)
    for b in range(7):
        one = engine.query(names, {v: a[b : b + 1] for v, a in ev.items()})
        for t in names:
            np.testing.assert_allclose(one[t][0], res[t][b], atol=1e-12)
    prior = engine.query(names, n_cases=2)
    ref = netlib.reference(model, names, {})
    for t in names:
        np.testing.assert_allclose(prior[t], np.tile(ref[t], (2, 1)), atol=TOL)
    assert np.all(engine.log_evidence(n_cases=3) == 0.0)


def test_observed_targets_are_one_hot_and_names_accepted(netlib):
    model = netlib.noisy_or_network(4, seed=5)
    engine = CompiledEngine.from_pgmpy(model)
    res = engine.query(["D1_0", "I1"], {"D1_0": np.array([1, 0]), "I1": np.array([-1, 1])})
    np.testing.assert_array_equal(res["D1_0"], [[0, 1], [1, 0]])
    assert res["I1"][1].tolist() == [0.0, 1.0]
    by_name = engine.query(["F1"], {"D1_0": ["alarm", "ok"], "I1": [None, "impaired"]})
    np.testing.assert_allclose(
        by_name["F1"], engine.query(["F1"], {"D1_0": np.array([1, 0]), "I1": np.array([-1, 1])})["F1"]
    )
    post = engine.posterior(["F1"], {"D1_0": "alarm"})
    assert set(post["F1"]) == {"ok", "fault"}
    assert sum(post["F1"].values()) == pytest.approx(1.0)


def test_underflowing_evidence_is_rescaled():
    """400 observations with probability ~1e-3 each: P(e) ~ 1e-1200, far below float64."""
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    n = 400
    model = DiscreteBayesianNetwork()
    model.add_nodes_from(["R"] + [f"C{i}" for i in range(n)])
    cpds = [TabularCPD("R", 2, [[0.5], [0.5]])]
    lik = np.where(np.arange(n) % 2 == 0, 2e-3, 1.5e-3)  # P(C=1 | R=1); P(C=1 | R=0) = 1e-3
    for i in range(n):
        model.add_edge("R", f"C{i}")
        cpds.append(TabularCPD(f"C{i}", 2, [[1 - 1e-3, 1 - lik[i]], [1e-3, lik[i]]], evidence=["R"], evidence_card=[2]))
    model.add_cpds(*cpds)
    engine = CompiledEngine.from_pgmpy(model)
    ev = {f"C{i}": np.array([1, 0]) for i in range(n)}
    res = engine.query(["R"], ev)
    log1 = np.log(lik).sum()
    log0 = n * np.log(1e-3)
    p1 = 1.0 / (1.0 + np.exp(log0 - log1))
    assert res["R"][0, 1] == pytest.approx(p1, abs=1e-9)
    le = engine.log_evidence(ev)
    expected = np.logaddexp(log0, log1) + np.log(0.5)
    assert le[0] == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(le[1])


def test_zero_probability_evidence_names_the_case():
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    model = DiscreteBayesianNetwork([("A", "B"), ("B", "C")])
    model.add_cpds(
        TabularCPD("A", 2, [[1.0], [0.0]]),
        TabularCPD("B", 2, [[1.0, 0.3], [0.0, 0.7]], evidence=["A"], evidence_card=[2]),
        TabularCPD("C", 2, [[0.5, 0.1], [0.5, 0.9]], evidence=["B"], evidence_card=[2]),
    )
    engine = CompiledEngine.from_pgmpy(model)
    with pytest.raises(EvidenceError, match=r"probability zero in case\(s\) 1, 3"):
        engine.query(["C"], {"B": np.array([0, 1, 0, 1])})
    with pytest.raises(EvidenceError, match=r"case\(s\) 2"):
        engine.query(["A"], {"C": np.array([1, 0, 1]), "B": np.array([-1, 0, 1])})
    le = engine.log_evidence({"B": np.array([0, 1])})
    assert le[0] == 0.0 and le[1] == -np.inf


def test_unknown_variable_state_and_malformed_evidence(netlib):
    model = netlib.noisy_or_network(4, seed=6)
    engine = CompiledEngine.from_pgmpy(model)
    with pytest.raises(EvidenceError, match=r"unknown variable 'D1_9'.*did you mean"):
        engine.query(["F0"], {"D1_9": np.array([0])})
    with pytest.raises(EvidenceError, match=r"unknown variable 'F9x'"):
        engine.query(["F9x"])
    with pytest.raises(EvidenceError, match=r"unknown state 'alrm'.*allowed: ok, alarm.*did you mean 'alarm'"):
        engine.query(["F0"], {"D0_0": ["ok", "alrm"]})
    with pytest.raises(EvidenceError, match=r"case 1: state index 2 out of range"):
        engine.query(["F0"], {"D0_0": np.array([0, 2])})
    with pytest.raises(EvidenceError, match="disagree on the number of cases"):
        engine.query(["F0"], {"D0_0": np.array([0, 1]), "D0_1": np.array([0])})
    with pytest.raises(EvidenceError, match=r"shape \(n_cases, 2\)"):
        engine.query(["F0"], soft_evidence={"D0_0": np.ones((2, 3))})
    with pytest.raises(EvidenceError, match="negative or non-finite"):
        engine.query(["F0"], soft_evidence={"D0_0": np.array([[1.0, -1.0]])})
    with pytest.raises(EvidenceError, match="all zeros"):
        engine.query(["F0"], soft_evidence={"D0_0": np.array([[1.0, 1.0], [0.0, 0.0]])})


def test_budget_refusal_and_selection(netlib):
    model = netlib.noisy_or_network(40, seed=7, detectors=1)
    engine = CompiledEngine.from_pgmpy(model)
    assert engine.kind == "exact"
    need = engine.stats.static_bytes + engine.stats.bytes_per_case
    with pytest.raises(ModelTooLargeError, match="too large for exact inference.*memory budget"):
        CompiledEngine.from_pgmpy(model, memory_budget_bytes=need // 2)
    with pytest.raises(ModelTooLargeError, match="engine='auto'"):
        make_engine(model, "exact", memory_budget_bytes=need // 2)
    with pytest.warns(ApproximationWarning, match="loopy belief propagation"):
        chosen = make_engine(model, memory_budget_bytes=need // 2)
    assert chosen.kind == "approximate" and "memory budget" in chosen.fallback_reason
    assert make_engine(model).kind == "exact"
    assert isinstance(chosen, Engine) and isinstance(engine, Engine)


def test_bad_tables_are_model_errors():
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    model = DiscreteBayesianNetwork([("A", "B")])
    model.add_cpds(TabularCPD("A", 2, [[0.5], [0.5]]))
    with pytest.raises(ModelError, match="'B' has no CPD"):
        CompiledEngine.from_pgmpy(model)
    cpd = TabularCPD("B", 2, [[0.5, 0.5], [0.5, 0.5]], evidence=["A"], evidence_card=[2])
    cpd.values[0, 0] = 0.9  # bypass pgmpy's own check
    model.add_cpds(cpd)
    with pytest.raises(ModelError, match="does not normalise"):
        CompiledEngine.from_pgmpy(model)


def test_stats_and_batching_in_chunks(netlib):
    model = netlib.noisy_or_network(12, seed=8)
    engine = CompiledEngine.from_pgmpy(model)
    assert isinstance(engine.stats, CompiledStats)
    with pytest.raises(dataclasses.FrozenInstanceError):
        engine.stats.treewidth = 0
    names = [f"F{i}" for i in range(12)]
    dets = [v for v in engine.variables if v.startswith("D")]
    vals = netlib.sample(model, 300, seed=8)
    ev = {v: vals[v] for v in dets}
    st = engine.query_stats(names, ev)
    assert st.n_instantiated == len(dets) and st.ops_per_case > 0
    full = engine.query(names, ev)
    # a budget admitting only a few cases per chunk gives the same answer
    small = CompiledEngine.from_pgmpy(model, memory_budget_bytes=st.static_bytes + 5 * st.bytes_per_case)
    chunked = small.query(names, ev)
    for t in names:
        np.testing.assert_allclose(chunked[t], full[t], atol=1e-12)


def test_engines_pickle_without_their_plan_cache(netlib):
    import pickle

    from diagnosis.inference.approximate import LoopyBPEngine

    model = netlib.noisy_or_network(5, seed=9)
    ev = {"D0_0": np.array([1, 0]), "D2_1": np.array([1, 1])}
    for cls in (CompiledEngine, LoopyBPEngine):
        engine = cls.from_pgmpy(model)
        before = engine.query(["F0", "F2"], ev)
        clone = pickle.loads(pickle.dumps(engine))
        assert dict(clone.states) == dict(engine.states) and clone.kind == engine.kind
        after = clone.query(["F0", "F2"], ev)
        for t in before:
            np.testing.assert_array_equal(after[t], before[t])


def test_two_threads_stay_within_the_memory_budget(netlib, monkeypatch):
    # Two chunks in flight hold twice the working memory: each is sized for its share of the budget.
    import threading

    from diagnosis.inference import compiled

    model = netlib.noisy_or_network(12, seed=8)
    names = [f"F{i}" for i in range(12)]
    probe = CompiledEngine.from_pgmpy(model)
    dets = [v for v in probe.variables if v.startswith("D")]
    vals = netlib.sample(model, 400, seed=8)
    ev = {v: vals[v] for v in dets}
    full = probe.query(names, ev)
    st = probe.query_stats(names, ev)
    budget = st.static_bytes + 40 * st.bytes_per_case
    monkeypatch.setattr(compiled, "_THREAD_MIN_OPS", 0)
    lock, state = threading.Lock(), {"now": 0, "peak": 0, "threads": set()}
    run = compiled._Plan.run

    def counted(self, ev, *args, **kw):
        with lock:
            state["now"] += ev.n_cases
            state["peak"] = max(state["peak"], state["now"])
            state["threads"].add(threading.get_ident())
        try:
            return run(self, ev, *args, **kw)
        finally:
            with lock:
                state["now"] -= ev.n_cases

    monkeypatch.setattr(compiled._Plan, "run", counted)
    engine = CompiledEngine.from_pgmpy(model, memory_budget_bytes=budget)
    engine.threads = 2
    got = engine.query(names, ev)
    for t in names:
        np.testing.assert_allclose(got[t], full[t], atol=1e-12)
    assert state["peak"] <= 40 and len(state["threads"]) == 2
