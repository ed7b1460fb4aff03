"""A batch whose cases each observe a different random subset: one propagation, exact; two threads, same."""

import numpy as np
import pytest

from diagnosis.inference import compiled, make_engine
from diagnosis.inference.tables import ModelTables


def _joint(t: ModelTables) -> np.ndarray:
    n = len(t.names)
    joint = np.ones([int(c) for c in t.cards])
    for v, ps in enumerate(t.parents):
        scope = (v, *ps)
        order = sorted(range(len(scope)), key=lambda k: scope[k])
        shape = [1] * n
        for x in scope:
            shape[x] = int(t.cards[x])
        joint = joint * np.transpose(t.cpts[v], order).reshape(shape)
    return joint


def _brute(t: ModelTables, joint: np.ndarray, case: np.ndarray) -> list[np.ndarray]:
    j = joint
    for v, s in enumerate(case):
        if s >= 0:
            ind = np.zeros(int(t.cards[v]))
            ind[s] = 1.0
            shape = [1] * len(t.names)
            shape[v] = len(ind)
            j = j * ind.reshape(shape)
    z = j.sum()
    j = j / z
    return [j.sum(axis=tuple(a for a in range(len(t.names)) if a != v)) for v in range(len(t.names))], z


@pytest.mark.parametrize("way", [None, "patterns", "single"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_case_its_own_evidence_matches_brute_force(netlib, monkeypatch, seed, way):
    if way is not None:  # the per-pattern path and the one-structure path, whatever the size
        monkeypatch.setattr(compiled, "_GROUP_MIN_OPS", 0 if way == "patterns" else 1e30)
        monkeypatch.setattr(compiled, "_GROUP_MIN_CASES", 2)
    t = ModelTables.from_pgmpy(netlib.random_network(9, seed=seed, max_parents=3, max_card=3))
    rng = np.random.default_rng(seed)
    B = 60
    # forward-sample every variable, then keep a random 30 % per case
    values = np.zeros((len(t.names), B), dtype=np.int64)
    for v, ps in enumerate(t.parents):  # random_network's variables are in topological order
        probs = t.cpts[v][(slice(None), *(values[p] for p in ps))] if ps else np.repeat(t.cpts[v][:, None], B, 1)
        values[v] = (rng.random(B)[None, :] > np.cumsum(probs, axis=0)).sum(axis=0).clip(max=int(t.cards[v]) - 1)
    matrix = np.where(rng.random(values.shape) < 0.3, values, -1)
    engine = make_engine(t, "exact")
    ev = {n: matrix[i] for i, n in enumerate(t.names)}
    got = engine.query(list(t.names), ev)
    logz = engine.log_evidence(ev)
    joint = _joint(t)
    for b in range(B):
        want, z = _brute(t, joint, matrix[:, b])
        for i, n in enumerate(t.names):
            np.testing.assert_allclose(got[n][b], want[i], atol=1e-9)
        np.testing.assert_allclose(logz[b], np.log(z), rtol=1e-9, atol=1e-12)


def test_two_threads_give_the_same_posteriors(netlib, monkeypatch):
    t = ModelTables.from_pgmpy(netlib.random_network(14, seed=5, max_parents=3, max_card=4))
    rng = np.random.default_rng(5)
    B = 3000
    ev = {n: np.where(rng.random(B) < 0.3, rng.integers(0, int(c), B), -1) for n, c in zip(t.names, t.cards)}
    engine = make_engine(t, "exact")
    monkeypatch.setattr(compiled, "_CHUNK_CAP", 256)  # several chunks
    monkeypatch.setattr(compiled, "_THREAD_MIN_OPS", 0)  # and threads for them
    engine.threads = 1
    one = engine.query(list(t.names), ev)
    engine.threads = 2
    two = engine.query(list(t.names), ev)
    for n in t.names:
        np.testing.assert_array_equal(one[n], two[n])
