"""Test helpers: fixed seeds, a random-topology generator and brute-force enumerators."""

from __future__ import annotations

import itertools

import numpy as np

from diagnosis import Topology
from diagnosis.model.network import Network

#: Fixed seeds for every randomised test (never a fresh random draw).
SEEDS = tuple(range(101, 125))


def random_topology(seed: int, *, n_components: int = 4, max_modes: int = 2, max_detectors: int = 2) -> Topology:
    """A small random topology (a DAG of calls, random modes, detectors and strengths)."""
    rng = np.random.default_rng(seed)
    comps = []
    for i in range(n_components):
        n_modes = int(rng.integers(1, max_modes + 1))
        modes = {
            f"m{j}": {"prior": float(rng.uniform(0.01, 0.2)), "impact": float(rng.uniform(0.3, 1.0))}
            for j in range(n_modes)
        }
        triggers = ["impaired", *modes]
        dets = {}
        for j in range(int(rng.integers(1, max_detectors + 1))):
            chosen = rng.choice(triggers, size=int(rng.integers(1, len(triggers) + 1)), replace=False)
            dets[f"d{j}"] = {
                "raised_by": {str(t): float(rng.uniform(0.5, 0.99)) for t in chosen},
                "false_alarm": float(rng.uniform(0.0, 0.1)),
            }
        calls = [
            {"to": f"c{k}", "strength": float(rng.uniform(0.2, 0.95))}
            for k in range(i + 1, n_components)
            if rng.random() < 0.5
        ]
        comp = {"name": f"c{i}", "kind": "service", "replace_defaults": True, "fault_modes": modes, "detectors": dets}
        comp["actions"] = {
            "fix": {"success": {m: float(rng.uniform(0.1, 1.0)) for m in modes}, "cost": float(rng.integers(1, 5))}
        }
        if calls:
            comp["calls"] = calls
        comps.append(comp)
    return Topology.from_dict({"name": f"random-{seed}", "leak": float(rng.uniform(0, 0.05)), "components": comps})


def brute_force_marginals(
    network: Network, hard: dict[str, str], soft: dict[str, tuple] | None = None
) -> dict[str, np.ndarray]:
    """Posterior marginals of every variable by enumerating the full joint distribution.

    Independent of every engine: it multiplies every table into the joint
    (one axis per variable), applies evidence as indicator/likelihood vectors,
    normalises and sums out.
    """
    names = network.variable_names
    axis = {n: i for i, n in enumerate(names)}
    cards = [network.variable(n).card for n in names]
    if np.prod(cards) > 5e6:
        raise ValueError("network too large to enumerate")
    joint = np.ones(cards)
    for v in network.variables:
        shape = [1] * len(names)
        for p in v.parents:
            shape[axis[p]] = network.variable(p).card
        shape[axis[v.name]] = v.card
        # v.table axes are (parents..., v) in the order of v.parents: move to network axis order.
        order = sorted(range(len(v.parents) + 1), key=lambda k: axis[(*v.parents, v.name)[k]])
        joint = joint * np.transpose(v.table, order).reshape(shape)
    for var, state in hard.items():
        vec = np.array([s == state for s in network.variable(var).states], dtype=float)
        shape = [1] * len(names)
        shape[axis[var]] = len(vec)
        joint = joint * vec.reshape(shape)
    for var, lik in (soft or {}).items():
        shape = [1] * len(names)
        shape[axis[var]] = len(lik)
        joint = joint * np.asarray(lik, dtype=float).reshape(shape)
    joint = joint / joint.sum()
    return {n: joint.sum(axis=tuple(i for i in range(len(names)) if i != axis[n])) for n in names}


def brute_force_loop(network: Network, hard: dict[str, str]) -> dict[str, np.ndarray]:
    """Marginals by looping over every assignment (a second, slower independent check)."""
    vars_ = network.variables
    out = {v.name: np.zeros(v.card) for v in vars_}
    pos = {v.name: i for i, v in enumerate(vars_)}
    for assignment in itertools.product(*(range(v.card) for v in vars_)):
        if any(vars_[pos[k]].states[assignment[pos[k]]] != s for k, s in hard.items()):
            continue
        p = 1.0
        for v in vars_:
            p *= v.table[tuple(assignment[pos[q]] for q in v.parents) + (assignment[pos[v.name]],)]
        for v in vars_:
            out[v.name][assignment[pos[v.name]]] += p
    return {k: x / x.sum() for k, x in out.items()}
