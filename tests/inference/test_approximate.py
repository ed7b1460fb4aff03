"""The loopy-BP engine: exact on trees, bounded error on small loopy topology networks."""

from __future__ import annotations

import numpy as np
import pytest

from diagnosis.exceptions import EvidenceError
from diagnosis.inference.approximate import ASSUMPTION, LoopyBPEngine
from diagnosis.inference.compiled import CompiledEngine

# Documented in benchmarks/README.md: on the loopy topology networks of the
# benchmark the largest error of a fault marginal was 0.24, with top-1 agreement
# >= 0.98 (the largest on these test networks is 0.25).  Bound: 0.3 and 0.9.
MAX_ABS_ERROR = 0.3
MIN_TOP1 = 0.9


def _tree_network(seed):
    """A polytree (each variable has at most one parent): loopy BP is exact on it."""
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    rng = np.random.default_rng(seed)
    n = 9
    cards = rng.integers(2, 4, size=n)
    model = DiscreteBayesianNetwork()
    model.add_nodes_from([f"T{i}" for i in range(n)])
    cpds = []
    for i in range(n):
        if i == 0:
            cpds.append(TabularCPD("T0", int(cards[0]), rng.dirichlet(np.ones(cards[0])).reshape(-1, 1)))
            continue
        p = int(rng.integers(0, i))
        model.add_edge(f"T{p}", f"T{i}")
        table = rng.dirichlet(np.ones(cards[i]), size=int(cards[p])).T
        cpds.append(TabularCPD(f"T{i}", int(cards[i]), table, evidence=[f"T{p}"], evidence_card=[int(cards[p])]))
    model.add_cpds(*cpds)
    return model


def _binary_tree_noisy_or(netlib):
    """Faults feeding noisy-OR impairments along a chain of calls: a polytree, all binary."""
    return netlib.noisy_or_network(6, seed=1, calls="local", width=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_on_polytrees(seed, netlib):
    model = _tree_network(seed)
    exact = CompiledEngine.from_pgmpy(model)
    approx = LoopyBPEngine.from_pgmpy(model, tolerance=1e-12, max_iterations=200)
    names = list(exact.variables)
    vals = netlib.sample(model, 6, seed=seed)
    ev = {"T8": vals["T8"], "T5": np.where(np.arange(6) % 2 == 0, vals["T5"], -1)}
    soft = {"T3": np.random.default_rng(seed).random((6, len(exact.states["T3"])))}
    a, e = approx.query(names, ev, soft), exact.query(names, ev, soft)
    for t in names:
        np.testing.assert_allclose(a[t], e[t], atol=1e-9)
    assert approx.last_run.converged


def test_exact_on_binary_noisy_or_polytree(netlib):
    model = _binary_tree_noisy_or(netlib)
    exact = CompiledEngine.from_pgmpy(model)
    approx = LoopyBPEngine.from_pgmpy(model, tolerance=1e-13, max_iterations=200)
    faults = [f"F{i}" for i in range(6)]
    dets = [v for v in exact.variables if v.startswith("D")]
    vals = netlib.sample(model, 20, seed=3)
    ev = {v: vals[v] for v in dets}
    a, e = approx.query(faults + ["I2"], ev), exact.query(faults + ["I2"], ev)
    for t in faults + ["I2"]:
        np.testing.assert_allclose(a[t], e[t], atol=1e-9)


@pytest.mark.parametrize("seed, calls", [(0, "random"), (1, "random"), (2, "local"), (3, "local")])
def test_error_bounded_on_loopy_topologies(seed, calls, netlib):
    model = netlib.noisy_or_network(12, seed=seed, calls=calls, detectors=3)
    exact = CompiledEngine.from_pgmpy(model)
    approx = LoopyBPEngine.from_pgmpy(model)
    faults = [f"F{i}" for i in range(12)]
    dets = [v for v in exact.variables if v.startswith("D")]
    vals = netlib.sample(model, 200, seed=seed)
    ev = {v: vals[v] for v in dets}
    a, e = approx.query(faults, ev), exact.query(faults, ev)
    pa = np.stack([a[f][:, 1] for f in faults], axis=1)
    pe = np.stack([e[f][:, 1] for f in faults], axis=1)
    assert np.abs(pa - pe).max() <= MAX_ABS_ERROR
    assert np.mean(pa.argmax(axis=1) == pe.argmax(axis=1)) >= MIN_TOP1
    for f in faults:
        np.testing.assert_allclose(a[f].sum(axis=1), 1.0, atol=1e-12)


def test_general_path_on_multistate_loopy_network(netlib):
    model = netlib.random_network(10, seed=12, max_card=3)
    exact = CompiledEngine.from_pgmpy(model)
    approx = LoopyBPEngine.from_pgmpy(model, damping=0.3, max_iterations=300)
    names = list(exact.variables)
    vals = netlib.sample(model, 30, seed=12)
    ev = {"X9": vals["X9"], "X7": vals["X7"]}
    a, e = approx.query(names, ev), exact.query(names, ev)
    for t in names:
        assert a[t].shape == e[t].shape
        assert np.abs(a[t] - e[t]).max() <= MAX_ABS_ERROR
        np.testing.assert_allclose(a[t].sum(axis=1), 1.0, atol=1e-12)


def test_assumption_and_errors(netlib):
    model = netlib.noisy_or_network(5, seed=4)
    approx = LoopyBPEngine.from_pgmpy(model)
    assert approx.kind == "approximate" and approx.assumption == ASSUMPTION
    assert "loopy belief propagation" in approx.assumption
    with pytest.raises(EvidenceError, match="did you mean"):
        approx.query(["F0"], {"D0_x": np.array([0])})
    with pytest.raises(EvidenceError, match="unknown state"):
        approx.query(["F0"], {"D0_0": ["broken"]})
    res = approx.query(["D0_0", "F0"], {"D0_0": np.array([1, 0])})
    np.testing.assert_array_equal(res["D0_0"], [[0, 1], [1, 0]])


def test_impossible_local_evidence_is_reported():
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    model = DiscreteBayesianNetwork([("A", "B")])
    model.add_cpds(
        TabularCPD("A", 2, [[1.0], [0.0]]),
        TabularCPD("B", 2, [[0.5, 0.5], [0.5, 0.5]], evidence=["A"], evidence_card=[2]),
    )
    approx = LoopyBPEngine.from_pgmpy(model)
    with pytest.raises(EvidenceError, match=r"case\(s\) 1"):
        approx.query(["B"], {"A": np.array([0, 1])})
