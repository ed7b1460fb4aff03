"""Leaves observed in only some cases of a batch are folded into per-case factors: still exact."""

import numpy as np
import pytest
from helpers import SEEDS, brute_force_marginals, random_topology  # noqa: E402

from diagnosis import build_network, make_engine  # noqa: E402


@pytest.mark.parametrize("seed", SEEDS[:10])
def test_partially_observed_leaves_match_brute_force(seed):
    net = build_network(random_topology(seed))
    engine = make_engine(net, "exact")
    rng = np.random.default_rng(seed)
    B = 12
    symptoms = list(net.symptom_variable.values())
    evidence = {v: rng.integers(-1, 2, size=B) for v in symptoms}  # -1 = not observed in that case
    soft_var = symptoms[0]
    soft = {soft_var: rng.uniform(0.1, 1.0, size=(B, 2))}
    evidence.pop(soft_var)
    targets = [net.fault_variable[c] for c in net.topology.component_names] + [symptoms[-1]]
    got = engine.query(targets, evidence, soft, n_cases=B)
    log_z = engine.log_evidence(evidence, soft, n_cases=B)
    for b in range(B):
        hard = {v: net.variable(v).states[int(evidence[v][b])] for v in evidence if evidence[v][b] >= 0}
        if symptoms[-1] in hard:
            continue  # the target itself observed: one-hot, checked elsewhere
        expected = brute_force_marginals(net, hard, {soft_var: soft[soft_var][b]})
        for t in targets:
            np.testing.assert_allclose(got[t][b], expected[t], atol=1e-10)
    assert np.all(np.isfinite(log_z))
    # The folded leaves do not enter the junction tree: compare with every symptom observed in every case.
    stats = engine.query_stats(targets, evidence, soft, n_cases=B)
    everywhere = {v: (e if v == symptoms[-1] else np.zeros(B, dtype=int)) for v, e in evidence.items()}
    full = engine.query_stats(targets, everywhere, soft, n_cases=B)
    assert stats.total_entries == full.total_entries
