"""Topology-shaped Bayesian networks for the inference benchmark.

Each of ``n`` components has

* a root fault ``F<i>`` (states ``ok``/``fault``),
* an impairment ``I<i>`` (``ok``/``impaired``): a noisy-OR with a leak of its own
  fault and of the impairments of the 1-3 components it calls,
* three detectors ``D<i>_<k>`` (``ok``/``alarm``), children of ``I<i>``.

Calls go from a component to components with a larger index, so the graph is a
DAG.  ``calls="random"`` picks callees uniformly among all later components
(treewidth grows with ``n``); ``calls="local"`` picks them among the next
``width`` components (treewidth stays bounded).
"""

from __future__ import annotations

import gzip
import itertools
import pathlib

import numpy as np

__all__ = [
    "classic_network",
    "classic_path",
    "detector_names",
    "fault_names",
    "sample_evidence",
    "to_pyagrum",
    "topology_network",
]


def _noisy_or_table(q_parents, leak):
    """``P(child | parents)`` of a binary noisy-OR, shape ``(2, 2, ..., 2)``."""
    k = len(q_parents)
    table = np.empty((2,) + (2,) * k)
    for bits in itertools.product((0, 1), repeat=k):
        p_off = 1.0 - leak
        for b, q in zip(bits, q_parents):
            if b:
                p_off *= 1.0 - q
        table[(0,) + bits] = p_off
        table[(1,) + bits] = 1.0 - p_off
    return table


def topology_network(n, *, seed=0, calls="random", width=8, detectors=3):
    """Build the topology-shaped network as a pgmpy ``DiscreteBayesianNetwork``.

    Parameters
    ----------
    n : int
        Number of components.
    seed : int
        Seed of the call graph and of the probabilities.
    calls : {"random", "local"}
        How callees are chosen.
    width : int
        Window of later components a local component may call.
    detectors : int
        Detectors per component.

    Returns
    -------
    pgmpy.models.DiscreteBayesianNetwork
    """
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    rng = np.random.default_rng(seed)
    callees = []
    for i in range(n):
        later = np.arange(i + 1, n) if calls == "random" else np.arange(i + 1, min(n, i + 1 + width))
        k = min(len(later), int(rng.integers(1, 4)))
        callees.append(sorted(rng.choice(later, size=k, replace=False).tolist()) if k else [])
    edges, cpds = [], []
    for i in range(n):
        f, imp = f"F{i}", f"I{i}"
        p = rng.uniform(0.005, 0.05)
        cpds.append(TabularCPD(f, 2, [[1 - p], [p]], state_names={f: ["ok", "fault"]}))
        parents = [f] + [f"I{j}" for j in callees[i]]
        q = [rng.uniform(0.85, 0.99)] + [rng.uniform(0.3, 0.9) for _ in callees[i]]
        table = _noisy_or_table(q, rng.uniform(0.001, 0.02))
        edges += [(p_, imp) for p_ in parents]
        names = {imp: ["ok", "impaired"], f: ["ok", "fault"]}
        names.update({f"I{j}": ["ok", "impaired"] for j in callees[i]})
        cpds.append(
            TabularCPD(
                imp, 2, table.reshape(2, -1), evidence=parents, evidence_card=[2] * len(parents), state_names=names
            )
        )
        for k in range(detectors):
            d = f"D{i}_{k}"
            hit, false_alarm = rng.uniform(0.7, 0.95), rng.uniform(0.01, 0.1)
            edges.append((imp, d))
            cpds.append(
                TabularCPD(
                    d,
                    2,
                    [[1 - false_alarm, 1 - hit], [false_alarm, hit]],
                    evidence=[imp],
                    evidence_card=[2],
                    state_names={d: ["ok", "alarm"], imp: ["ok", "impaired"]},
                )
            )
    model = DiscreteBayesianNetwork()
    model.add_nodes_from(
        [f"F{i}" for i in range(n)]
        + [f"I{i}" for i in range(n)]
        + [f"D{i}_{k}" for i in range(n) for k in range(detectors)]
    )
    model.add_edges_from(edges)
    model.add_cpds(*cpds)
    return model


def fault_names(model):
    """The fault variables ``F<i>`` of a topology network, in component order."""
    return sorted((v for v in model.nodes() if str(v).startswith("F")), key=lambda s: int(s[1:]))


def detector_names(model):
    """The detector variables of a topology network (or the leaves of any network)."""
    return [v for v in model.nodes() if model.out_degree(v) == 0]


def classic_path(name):
    """Path of a network shipped inside pgmpy (``pgmpy/utils/example_models``)."""
    import pgmpy

    return pathlib.Path(pgmpy.__file__).parent / "utils" / "example_models" / f"{name}.bif.gz"


def classic_network(name):
    """Read a classic network shipped with pgmpy, without network access."""
    from pgmpy.readwrite import BIFReader

    text = gzip.decompress(classic_path(name).read_bytes()).decode()
    return BIFReader(string=text).get_model()


def sample_evidence(model, observed, n_cases, *, seed=0):
    """Forward-sample ``n_cases`` from ``model``; return state indices of ``observed``.

    Returns
    -------
    dict of str to ndarray of int
    """
    import networkx as nx

    rng = np.random.default_rng(seed)
    values = {}
    for v in nx.topological_sort(model):
        cpd = model.get_cpds(v)
        table = np.asarray(cpd.values, dtype=float)
        parents = cpd.variables[1:]
        # Re-map each parent's own state order to the order used in this CPD.
        idx = tuple(values[p] for p in parents)
        probs = table[(slice(None),) + idx] if parents else np.repeat(table[:, None], n_cases, 1)
        cum = np.cumsum(probs, axis=0)
        u = rng.random(n_cases)
        values[v] = np.minimum((u[None, :] > cum).sum(axis=0), table.shape[0] - 1)
    return {v: values[v] for v in observed}


def to_pyagrum(model):
    """Convert a pgmpy network to a ``pyagrum.BayesNet`` with identical tables."""
    import pyagrum as gum

    bn = gum.BayesNet()
    ids = {}
    for v in model.nodes():
        cpd = model.get_cpds(v)
        states = [str(s) for s in cpd.state_names[v]]
        ids[v] = bn.add(gum.LabelizedVariable(str(v), str(v), states))
    for v in model.nodes():
        for p in model.get_cpds(v).variables[1:]:
            bn.addArc(ids[p], ids[v])
    for v in model.nodes():
        cpd = model.get_cpds(v)
        scope = [str(x) for x in cpd.variables]
        table = np.asarray(cpd.values, dtype=float).reshape([len(cpd.state_names[x]) for x in cpd.variables])
        # Re-order every parent's axis to the state order of its own CPD (pyagrum labels).
        for ax, x in enumerate(cpd.variables):
            own = list(model.get_cpds(x).state_names[x])
            here = list(cpd.state_names[x])
            if own != here:
                table = np.take(table, [here.index(s) for s in own], axis=ax)
        pot = bn.cpt(ids[v])
        names = list(pot.names)  # pyagrum order; toarray() axes follow this list
        arr = np.transpose(table, [scope.index(nm) for nm in names])
        # pyagrum's fill order has the first variable of pot.names varying fastest
        pot.fillWith(np.transpose(arr, list(range(arr.ndim))[::-1]).ravel().tolist())
    return bn
