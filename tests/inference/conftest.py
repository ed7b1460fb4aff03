"""Shared fixtures for the inference tests: small random networks and pgmpy references.

The helpers are reached through the ``netlib`` fixture (``netlib.random_network(...)``)
rather than imported, because ``tests/conftest.py`` also exists and two modules named
``conftest`` cannot both be imported by name.
"""

from __future__ import annotations

import gzip
import itertools
import pathlib
import types

import numpy as np
import pytest


def random_network(n, *, seed, max_parents=3, max_card=4, zeros=0.0, disconnected=False):
    """A random discrete BN with multi-state variables (pgmpy ``DiscreteBayesianNetwork``).

    Parameters
    ----------
    n : int
        Number of variables ``X0..X{n-1}`` (topological order = index order).
    seed : int
    max_parents, max_card : int
    zeros : float
        Probability of zeroing a CPT entry (columns are renormalised; at least one
        entry stays positive).
    disconnected : bool
        Split the variables into two independent halves.
    """
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    rng = np.random.default_rng(seed)
    names = [f"X{i}" for i in range(n)]
    cards = rng.integers(2, max_card + 1, size=n)
    model = DiscreteBayesianNetwork()
    model.add_nodes_from(names)
    cpds = []
    for i in range(n):
        lo = n // 2 if (disconnected and i >= n // 2) else 0
        pool = np.arange(lo, i)
        if disconnected and i < n // 2:
            pool = pool[pool < n // 2]
        k = min(len(pool), int(rng.integers(0, max_parents + 1)))
        parents = sorted(rng.choice(pool, size=k, replace=False).tolist()) if k else []
        cols = int(np.prod([cards[p] for p in parents])) if parents else 1
        table = rng.dirichlet(np.ones(cards[i]) * 0.7, size=cols).T
        if zeros:
            mask = rng.random(table.shape) < zeros
            mask[rng.integers(0, cards[i], size=cols), np.arange(cols)] = False
            table[mask] = 0.0
            table /= table.sum(axis=0, keepdims=True)
        states = {names[j]: [f"s{s}" for s in range(cards[j])] for j in [i, *parents]}
        cpds.append(
            TabularCPD(
                names[i],
                int(cards[i]),
                table,
                evidence=[names[p] for p in parents] or None,
                evidence_card=[int(cards[p]) for p in parents] or None,
                state_names=states,
            )
        )
        model.add_edges_from((names[p], names[i]) for p in parents)
    model.add_cpds(*cpds)
    return model


def noisy_or_network(n, *, seed, detectors=2, calls="random", width=4):
    """Topology-shaped network: faults ``F``, noisy-OR impairments ``I``, detectors ``D``."""
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    rng = np.random.default_rng(seed)
    model = DiscreteBayesianNetwork()
    model.add_nodes_from(
        [f"F{i}" for i in range(n)]
        + [f"I{i}" for i in range(n)]
        + [f"D{i}_{k}" for i in range(n) for k in range(detectors)]
    )
    cpds = []
    for i in range(n):
        later = np.arange(i + 1, n) if calls == "random" else np.arange(i + 1, min(n, i + 1 + width))
        k = min(len(later), int(rng.integers(1, 4)))
        callees = sorted(rng.choice(later, size=k, replace=False).tolist()) if k else []
        p = rng.uniform(0.01, 0.1)
        cpds.append(TabularCPD(f"F{i}", 2, [[1 - p], [p]], state_names={f"F{i}": ["ok", "fault"]}))
        parents = [f"F{i}"] + [f"I{j}" for j in callees]
        q = [rng.uniform(0.8, 0.99)] + [rng.uniform(0.3, 0.9) for _ in callees]
        leak = rng.uniform(0.001, 0.03)
        table = np.empty((2,) + (2,) * len(parents))
        for bits in itertools.product((0, 1), repeat=len(parents)):
            off = (1 - leak) * np.prod([1 - qq for b, qq in zip(bits, q) if b])
            table[(0,) + bits] = off
            table[(1,) + bits] = 1 - off
        names = {f"I{i}": ["ok", "impaired"], f"F{i}": ["ok", "fault"]}
        names.update({f"I{j}": ["ok", "impaired"] for j in callees})
        cpds.append(
            TabularCPD(
                f"I{i}", 2, table.reshape(2, -1), evidence=parents, evidence_card=[2] * len(parents), state_names=names
            )
        )
        model.add_edges_from((pp, f"I{i}") for pp in parents)
        for d in range(detectors):
            hit, fa = rng.uniform(0.6, 0.95), rng.uniform(0.01, 0.1)
            cpds.append(
                TabularCPD(
                    f"D{i}_{d}",
                    2,
                    [[1 - fa, 1 - hit], [fa, hit]],
                    evidence=[f"I{i}"],
                    evidence_card=[2],
                    state_names={f"D{i}_{d}": ["ok", "alarm"], f"I{i}": ["ok", "impaired"]},
                )
            )
            model.add_edge(f"I{i}", f"D{i}_{d}")
    model.add_cpds(*cpds)
    return model


def classic(name):
    """A classic network shipped inside pgmpy (read from the local file, no network access)."""
    import pgmpy
    from pgmpy.readwrite import BIFReader

    path = pathlib.Path(pgmpy.__file__).parent / "utils" / "example_models" / f"{name}.bif.gz"
    return BIFReader(string=gzip.decompress(path.read_bytes()).decode()).get_model()


def sample(model, n_cases, *, seed):
    """Forward samples: ``{var: state index array}`` (indices in each variable's own state order)."""
    import networkx as nx

    rng = np.random.default_rng(seed)
    values = {}
    for v in nx.topological_sort(model):
        cpd = model.get_cpds(v)
        table = np.asarray(cpd.values, dtype=float)
        idx = tuple(values[p] for p in cpd.variables[1:])
        probs = table[(slice(None),) + idx] if idx else np.repeat(table[:, None], n_cases, 1)
        u = rng.random(n_cases)
        values[v] = np.minimum((u[None, :] > np.cumsum(probs, axis=0)).sum(axis=0), table.shape[0] - 1)
    return values


def reference(model, targets, evidence_names, virtual=None):
    """pgmpy ``VariableElimination`` marginals: ``{target: array}`` for one case."""
    from pgmpy.inference import VariableElimination

    ve = VariableElimination(model)
    targets = [t for t in targets if t not in evidence_names]
    out = {}
    for t in targets:  # one query per target: joint=False can need far more memory
        f = ve.query([t], evidence=evidence_names or None, virtual_evidence=virtual, show_progress=False)
        order = list(model.get_cpds(t).state_names[t])
        names = list(f.state_names[t])
        out[t] = np.array([f.values[names.index(s)] for s in order])
    return out


@pytest.fixture(scope="session")
def netlib():
    """The network helpers of this module, as a namespace."""
    return types.SimpleNamespace(
        random_network=random_network,
        noisy_or_network=noisy_or_network,
        classic=classic,
        sample=sample,
        reference=reference,
    )


@pytest.fixture(scope="session")
def alarm():
    return classic("alarm")


@pytest.fixture(scope="session")
def asia():
    return classic("asia")


@pytest.fixture(scope="session")
def win95pts():
    return classic("win95pts")
