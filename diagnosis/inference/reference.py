"""The exact reference engine: pgmpy's ``VariableElimination``, one query per target.

Slow but independent of our own code; the tests check every other engine
against it (and against brute-force enumeration on tiny networks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from diagnosis.exceptions import EvidenceError, suggest

__all__ = ["ReferenceEngine"]


class ReferenceEngine:
    """Exact posteriors from pgmpy ``VariableElimination``.

    Parameters
    ----------
    model : pgmpy.models.DiscreteBayesianNetwork
        The network. It is not copied; do not change it while the engine lives.

    Attributes
    ----------
    kind : str
        Always ``"exact"``.
    name : str
        ``"pgmpy-ve"``.
    """

    kind = "exact"
    name = "pgmpy-ve"

    def __init__(self, model):
        from diagnosis.model.pgmpy_interop import VariableElimination

        self._model = model
        self._ve = VariableElimination(model)
        self.variables = tuple(model.nodes())
        self.states = {v: tuple(model.get_cpds(v).state_names[v]) for v in self.variables}

    @classmethod
    def from_pgmpy(cls, model) -> ReferenceEngine:
        """Build the engine for a pgmpy model."""
        return cls(model)

    def _check(self, var: str, what: str) -> None:
        if var not in self.states:
            raise EvidenceError(f"unknown {what} variable {var!r}{suggest(var, self.states)}")

    def query(
        self,
        targets: Sequence[str],
        evidence: Mapping[str, np.ndarray] | None = None,
        soft_evidence: Mapping[str, np.ndarray] | None = None,
        *,
        n_cases: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Posterior marginals of ``targets`` for each case.

        Parameters
        ----------
        targets : sequence of str
            Variables whose marginals to return.
        evidence : mapping str -> int array of shape (B,), optional
            State index per case; -1 means unobserved in that case.
        soft_evidence : mapping str -> float array of shape (B, card), optional
            A likelihood vector per case (virtual evidence).
        n_cases : int, optional
            B, needed only when there is no evidence at all.

        Returns
        -------
        dict str -> numpy.ndarray of shape (B, card)
        """
        from diagnosis.model.pgmpy_interop import TabularCPD

        evidence = {k: np.asarray(v, dtype=np.int64).reshape(-1) for k, v in (evidence or {}).items()}
        soft_evidence = {
            k: np.asarray(v, dtype=np.float64).reshape(len(v), -1) for k, v in (soft_evidence or {}).items()
        }
        sizes = {len(v) for v in evidence.values()} | {len(v) for v in soft_evidence.values()}
        if n_cases is not None:
            sizes.add(n_cases)
        if len(sizes) > 1:
            raise EvidenceError(f"evidence arrays disagree on the number of cases: {sorted(sizes)}")
        n = sizes.pop() if sizes else 1
        for t in targets:
            self._check(t, "target")
        for var in (*evidence, *soft_evidence):
            self._check(var, "evidence")
        out = {t: np.empty((n, len(self.states[t]))) for t in targets}
        for b in range(n):
            hard = {}
            for var, idx in evidence.items():
                i = int(idx[b])
                if i >= 0:
                    if i >= len(self.states[var]):
                        raise EvidenceError(f"case {b}: state index {i} out of range for {var!r}")
                    hard[var] = self.states[var][i]
            virtual = []
            for var, lik in soft_evidence.items():
                row = lik[b]
                if row.shape != (len(self.states[var]),) or np.any(row < 0) or not np.any(row > 0):
                    raise EvidenceError(f"case {b}: bad likelihood {row.tolist()!r} for {var!r}")
                if var in hard:
                    continue  # hard evidence already fixes the state
                virtual.append(
                    TabularCPD(
                        var, len(row), (row / row.sum()).reshape(-1, 1), state_names={var: list(self.states[var])}
                    )
                )
            for t in targets:
                if t in hard:
                    vec = np.zeros(len(self.states[t]))
                    vec[self.states[t].index(hard[t])] = 1.0
                    out[t][b] = vec
                    continue
                with np.errstate(invalid="ignore", divide="ignore"):  # zero-probability evidence is reported below
                    factor = self._ve.query(
                        [t], evidence=hard or None, virtual_evidence=virtual or None, show_progress=False
                    )
                order = factor.state_names[t]
                vals = np.asarray(factor.values, dtype=np.float64)
                if not np.all(np.isfinite(vals)) or vals.sum() <= 0:
                    raise EvidenceError(f"case {b}: the evidence has probability 0 under the model")
                out[t][b] = [vals[order.index(s)] for s in self.states[t]]
        return out
