"""Model tables and evidence normalisation shared by the inference engines (private).

:class:`ModelTables` is the only place that reads a pgmpy model; engines work on
integer variable indices and plain numpy tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from diagnosis.exceptions import EvidenceError, ModelError, suggest

__all__ = ["ModelTables", "PreparedEvidence", "prepare_evidence", "resolve_targets"]

_COLUMN_TOL = 1e-5
_RENORMALISE_TOL = 1e-12


@dataclass(frozen=True, eq=False)
class ModelTables:
    """A discrete Bayesian network as numpy tables.

    Attributes
    ----------
    names : tuple of str
        Variable names; the index of a name is its variable index.
    states : tuple of tuple of str
        State names per variable, in the order of the variable's own CPD.
    cards : ndarray of int
        Cardinality per variable.
    parents : tuple of tuple of int
        Parents per variable, in CPD evidence order.
    cpts : tuple of ndarray
        ``cpts[v]`` has shape ``(card[v], *card[parents[v]])``, float64.
    """

    names: tuple[str, ...]
    states: tuple[tuple[str, ...], ...]
    cards: np.ndarray
    parents: tuple[tuple[int, ...], ...]
    cpts: tuple[np.ndarray, ...]

    @property
    def index(self) -> dict[str, int]:
        """Map variable name -> index."""
        idx = self.__dict__.get("_index")
        if idx is None:
            idx = {n: i for i, n in enumerate(self.names)}
            object.__setattr__(self, "_index", idx)
        return idx

    @property
    def children(self) -> tuple[tuple[int, ...], ...]:
        """Children per variable."""
        ch = self.__dict__.get("_children")
        if ch is None:
            lists: list[list[int]] = [[] for _ in self.names]
            for v, ps in enumerate(self.parents):
                for p in ps:
                    lists[p].append(v)
            ch = tuple(tuple(c) for c in lists)
            object.__setattr__(self, "_children", ch)
        return ch

    def ancestors_closure(self, seeds: Sequence[int]) -> set[int]:
        """``seeds`` together with all their ancestors."""
        out = set(seeds)
        stack = list(seeds)
        while stack:
            v = stack.pop()
            for p in self.parents[v]:
                if p not in out:
                    out.add(p)
                    stack.append(p)
        return out

    @classmethod
    def from_variables(cls, variables) -> ModelTables:
        """Tables from variables with ``name``, ``states``, ``parents`` and a ``table``
        of shape ``(*parent_cards, card)`` (:class:`diagnosis.model.network.Variable`),
        without going through pgmpy. The tables are trusted to be normalised
        (``Variable`` checks that to 1e-9)."""
        variables = list(variables)
        if not variables:
            raise ModelError("the model has no variables")
        names = tuple(v.name for v in variables)
        idx = {n: i for i, n in enumerate(names)}
        if len(idx) != len(names):
            raise ModelError("variable names are not unique")
        states = tuple(tuple(v.states) for v in variables)
        cards = np.array([len(s) for s in states], dtype=np.int64)
        parents, cpts = [], []
        for v in variables:
            try:
                ps = tuple(idx[p] for p in v.parents)
            except KeyError as exc:
                raise ModelError(f"variable {v.name!r} names unknown parent {exc.args[0]!r}") from None
            table = np.asarray(v.table, dtype=np.float64)
            if table.shape != (*(int(cards[p]) for p in ps), len(v.states)):
                raise ModelError(
                    f"table of {v.name!r} has shape {table.shape}, which does not match its parents and states"
                )
            parents.append(ps)
            cpts.append(np.ascontiguousarray(np.moveaxis(table, -1, 0)))
        return cls(names, states, cards, tuple(parents), tuple(cpts))

    @classmethod
    def from_cpts(
        cls,
        names: Sequence[str],
        states: Sequence[Sequence[str]],
        parents: Sequence[Sequence[str]],
        cpts: Sequence[np.ndarray],
        *,
        error: type[Exception] = ModelError,
    ) -> ModelTables:
        """Tables from CPTs of shape ``(card, *parent_cards)`` given by variable names.

        Checks what :meth:`from_pgmpy` checks (shapes, finite non-negative
        entries, columns summing to 1 within 1e-5) and that the graph is acyclic;
        a problem raises ``error`` (default :class:`ModelError`). Columns that sum
        to 1 within 1e-5 but not within 1e-12 (rounded decimals in a file) are
        divided by their sum.
        """
        names = tuple(str(n) for n in names)
        if not names:
            raise error("the model has no variables")
        idx = {n: i for i, n in enumerate(names)}
        if len(idx) != len(names):
            raise error("variable names are not unique")
        states_t = tuple(tuple(str(s) for s in st) for st in states)
        cards = np.array([len(s) for s in states_t], dtype=np.int64)
        par, tabs = [], []
        for v, ps, table in zip(names, parents, cpts):
            try:
                pi = tuple(idx[p] for p in ps)
            except KeyError as exc:
                raise error(f"variable {v!r} names unknown parent {exc.args[0]!r}") from None
            table = np.ascontiguousarray(table, dtype=np.float64)
            if table.shape != (int(cards[idx[v]]), *(int(cards[p]) for p in pi)):
                raise error(f"CPD of {v!r} has shape {table.shape}, which does not match its states and parents")
            _check_cpt(v, table, error)
            sums = table.sum(axis=0)
            if np.any(np.abs(sums - 1.0) > _RENORMALISE_TOL):
                # printed decimals (hepar2's columns sum to 1 +- 1e-7): renormalise, so that an
                # unobserved variable sums out to exactly 1 and the answer does not depend on
                # whether an engine prunes it
                table = table / sums
            table.setflags(write=False)
            par.append(pi)
            tabs.append(table)
        # acyclic: Kahn's algorithm
        indeg = [len(p) for p in par]
        children: list[list[int]] = [[] for _ in names]
        for v, ps in enumerate(par):
            for p in ps:
                children[p].append(v)
        ready = [v for v, d in enumerate(indeg) if d == 0]
        seen = 0
        while ready:
            v = ready.pop()
            seen += 1
            for c in children[v]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    ready.append(c)
        if seen != len(names):
            cyc = next(names[v] for v, d in enumerate(indeg) if d > 0)
            raise error(f"the graph has a cycle (through {cyc!r})")
        return cls(names, states_t, cards, tuple(par), tuple(tabs))

    @classmethod
    def from_pgmpy(cls, model) -> ModelTables:
        """Read the variables, states and CPTs of a pgmpy discrete Bayesian network.

        Raises
        ------
        ModelError
            A variable without a CPD, inconsistent cardinalities or state names,
            negative/non-finite entries, or a CPT column not summing to 1.
        """
        try:
            nodes = list(model.nodes())
        except AttributeError as exc:
            raise ModelError(f"expected a pgmpy DiscreteBayesianNetwork, got {type(model).__name__}") from exc
        if not nodes:
            raise ModelError("the model has no variables")
        cpds = {}
        for v in nodes:
            cpd = model.get_cpds(v)
            if cpd is None:
                raise ModelError(f"variable {v!r} has no CPD")
            cpds[v] = cpd
        names = tuple(str(v) for v in nodes)
        if len(set(names)) != len(names):
            raise ModelError("variable names are not unique as strings")
        idx = {v: i for i, v in enumerate(nodes)}
        states = []
        for v in nodes:
            sn = cpds[v].state_names.get(v) if cpds[v].state_names else None
            card = int(cpds[v].cardinality[0])
            if sn is None:
                sn = list(range(card))
            if len(sn) != card:
                raise ModelError(f"variable {v!r}: {len(sn)} state names for cardinality {card}")
            states.append(tuple(str(s) for s in sn))
        cards = np.array([len(s) for s in states], dtype=np.int64)
        parents = []
        cpts = []
        for v in nodes:
            cpd = cpds[v]
            scope = list(cpd.variables)
            if scope[0] != v:
                raise ModelError(f"CPD of {v!r} has {scope[0]!r} as its variable")
            for p in scope[1:]:
                if p not in idx:
                    raise ModelError(f"CPD of {v!r} names unknown parent {p!r}")
            shape = tuple(int(c) for c in cpd.cardinality)
            if shape != tuple(int(cards[idx[x]]) for x in scope):
                raise ModelError(f"CPD of {v!r}: cardinalities {shape} do not match the variables' states")
            table = np.array(cpd.values, dtype=np.float64).reshape(shape)
            # Put every axis in the state order of that variable's own CPD.
            for ax, x in enumerate(scope):
                here = [str(s) for s in (cpd.state_names or {}).get(x, range(shape[ax]))]
                own = list(states[idx[x]])
                if here != own:
                    if sorted(here) != sorted(own):
                        raise ModelError(f"CPD of {v!r} lists states {here} for {x!r}, whose own CPD has {own}")
                    table = np.take(table, [here.index(s) for s in own], axis=ax)
            _check_cpt(v, table, ModelError)
            table.setflags(write=False)
            parents.append(tuple(idx[p] for p in scope[1:]))
            cpts.append(table)
        return cls(names=names, states=tuple(states), cards=cards, parents=tuple(parents), cpts=tuple(cpts))


def _check_cpt(v, table: np.ndarray, error: type[Exception]) -> None:
    if not np.all(np.isfinite(table)) or np.any(table < 0):
        raise error(f"CPD of {v!r} has negative or non-finite entries")
    sums = table.sum(axis=0)
    bad = np.abs(sums - 1.0) > _COLUMN_TOL
    if np.any(bad):
        where = np.argwhere(bad)[0]
        raise error(
            f"CPD of {v!r} does not normalise: column {tuple(int(i) for i in where)} sums to "
            f"{float(sums[tuple(where)]):.6g}"
        )


@dataclass(frozen=True, eq=False)
class PreparedEvidence:
    """Validated evidence for ``n_cases`` cases, keyed by variable index.

    Attributes
    ----------
    vars : tuple of int
        Variables with hard evidence in at least one case, increasing.
    matrix : ndarray of int64, shape ``(len(vars), n_cases)``
        Observed state index per variable and case, ``-1`` where unobserved.
    soft : dict of int to ndarray
        Likelihood per case, float64, shape ``(n_cases, card)``, each row scaled
        so that its largest entry is 1.
    soft_log_scale : ndarray or None
        ``(n_cases,)`` sum of the logs of the scales removed from ``soft``.
    n_cases : int
    """

    vars: tuple[int, ...]
    matrix: np.ndarray
    soft: dict[int, np.ndarray]
    soft_log_scale: np.ndarray | None
    n_cases: int

    def row(self, v: int) -> np.ndarray:
        """Hard evidence of variable ``v`` (``-1`` everywhere if it has none)."""
        k = self.vars.index(v) if v in self.vars else -1
        return self.matrix[k] if k >= 0 else np.full(self.n_cases, -1, dtype=np.int64)

    def take(self, start: int, stop: int) -> PreparedEvidence:
        """The cases ``start:stop``."""
        return PreparedEvidence(
            self.vars,
            self.matrix[:, start:stop],
            {v: a[start:stop] for v, a in self.soft.items()},
            None if self.soft_log_scale is None else self.soft_log_scale[start:stop],
            stop - start,
        )

    def subset(self, idx: np.ndarray, *, pattern: bool = False) -> PreparedEvidence:
        """The cases ``idx``; with ``pattern`` (they all observe the same variables) only the
        variables they observe are kept, so a plan instantiates them all."""
        matrix = self.matrix[:, idx]
        vars_ = self.vars
        if pattern and vars_:
            seen = matrix[:, 0] >= 0
            matrix = matrix[seen]
            vars_ = tuple(v for v, s in zip(vars_, seen.tolist()) if s)
        return PreparedEvidence(
            vars_,
            matrix,
            {v: a[idx] for v, a in self.soft.items()},
            None if self.soft_log_scale is None else self.soft_log_scale[idx],
            int(idx.size),
        )

    def signature(self) -> tuple[frozenset, frozenset, frozenset]:
        """``(hard, partial, soft)``: variables observed in every case, in some cases, softly."""
        if self.vars:
            every = (self.matrix >= 0).all(axis=1)
            hard = frozenset(v for v, e in zip(self.vars, every.tolist()) if e)
        else:
            hard = frozenset()
        partial = frozenset(self.vars) - hard
        return hard, partial, frozenset(self.soft)


def _unknown(name, tables: ModelTables, what: str = "variable") -> EvidenceError:
    return EvidenceError(f"unknown {what} {name!r}{suggest(str(name), tables.names)}")


def resolve_targets(tables: ModelTables, targets: Sequence[str] | str) -> list[int]:
    """Variable indices of ``targets``; raise :class:`EvidenceError` for unknown names."""
    if isinstance(targets, str):
        targets = [targets]
    index = tables.index
    out = []
    for t in targets:
        i = index.get(t)
        if i is None:
            i = index.get(str(t))
            if i is None:
                raise _unknown(t, tables)
        out.append(i)
    return out


def _state_indices(tables: ModelTables, v: int, raw) -> np.ndarray:
    """Convert one variable's evidence (ints, state names, None/'' = unobserved) to int64."""
    arr = np.asarray(raw)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise EvidenceError(f"evidence for {tables.names[v]!r} must be 1-D (one entry per case), got shape {arr.shape}")
    states = tables.states[v]
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "b":
        raise EvidenceError(f"evidence for {tables.names[v]!r} must be state indices or names, got booleans")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr) & (arr == np.round(arr))):
            raise EvidenceError(f"evidence for {tables.names[v]!r} must be integer state indices")
        return arr.astype(np.int64)
    lookup = {s: i for i, s in enumerate(states)}
    out = np.empty(arr.shape[0], dtype=np.int64)
    for k, s in enumerate(arr.tolist()):
        if s is None or s == "" or (isinstance(s, float) and np.isnan(s)):
            out[k] = -1
        elif isinstance(s, (int, np.integer)) and not isinstance(s, bool):
            out[k] = int(s)
        else:
            i = lookup.get(str(s))
            if i is None:
                raise EvidenceError(
                    f"case {k}: unknown state {s!r} of {tables.names[v]!r}; allowed: "
                    f"{', '.join(states)}{suggest(str(s), states)}"
                )
            out[k] = i
    return out


def prepare_evidence(
    tables: ModelTables,
    evidence: Mapping[str, object] | None,
    soft_evidence: Mapping[str, object] | None,
    n_cases: int | None,
) -> PreparedEvidence:
    """Validate hard and soft evidence and bring it to per-case arrays.

    Raises
    ------
    EvidenceError
        Unknown variable or state, inconsistent number of cases, negative or
        non-finite likelihoods, or a likelihood row of zeros.
    """
    index = tables.index
    sizes: dict[str, int] = {}
    hard_idx: list[int] = []
    hard_vals: list[np.ndarray] = []
    for name, raw in (evidence or {}).items():
        v = index.get(name)
        if v is None:
            v = index.get(str(name))
            if v is None:
                raise _unknown(name, tables)
        if type(raw) is np.ndarray and raw.ndim == 1 and raw.dtype.kind in "iu":
            arr = raw
        else:
            arr = _state_indices(tables, v, raw)
        sizes[str(name)] = arr.shape[0]
        hard_idx.append(v)
        hard_vals.append(arr)
    soft: dict[int, np.ndarray] = {}
    for name, raw in (soft_evidence or {}).items():
        v = index.get(name)
        if v is None:
            v = index.get(str(name))
            if v is None:
                raise _unknown(name, tables)
        arr = np.asarray(raw, dtype=np.float64)
        card = int(tables.cards[v])
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != card:
            raise EvidenceError(f"soft evidence for {name!r} must have shape (n_cases, {card}), got {np.shape(raw)}")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise EvidenceError(f"soft evidence for {name!r} has negative or non-finite likelihoods")
        sizes[f"soft {name}"] = arr.shape[0]
        soft[v] = arr
    distinct = set(sizes.values())
    if n_cases is not None:
        n_cases = int(n_cases)
        if n_cases < 1:
            raise EvidenceError(f"n_cases must be >= 1, got {n_cases}")
        distinct.add(n_cases)
    if len(distinct) > 1:
        detail = ", ".join(f"{k}: {s}" for k, s in sizes.items())
        raise EvidenceError(f"evidence arrays disagree on the number of cases ({detail}; n_cases={n_cases})")
    n = distinct.pop() if distinct else 1
    if n < 1:
        raise EvidenceError("evidence arrays are empty (zero cases)")
    if len(set(hard_idx)) != len(hard_idx):
        raise EvidenceError("a variable is given twice in the evidence")
    if hard_idx:
        matrix = np.stack(hard_vals).astype(np.int64, copy=False)
        cards = tables.cards[hard_idx][:, None]
        bad = (matrix < -1) | (matrix >= cards)
        if bad.any():
            r, k = (int(x) for x in np.argwhere(bad)[0])
            v = hard_idx[r]
            raise EvidenceError(
                f"case {k}: state index {int(matrix[r, k])} out of range for {tables.names[v]!r} "
                f"(0..{int(tables.cards[v]) - 1}, or -1 for unobserved)"
            )
        order = np.argsort(hard_idx, kind="stable")
        matrix = matrix[order]
        vars_ = [hard_idx[k] for k in order.tolist()]
        seen = (matrix >= 0).any(axis=1)
        if not seen.all():
            matrix = matrix[seen]
            vars_ = [v for v, s in zip(vars_, seen.tolist()) if s]
    else:
        matrix = np.empty((0, n), dtype=np.int64)
        vars_ = []
    log_scale = None
    for v, arr in soft.items():
        top = arr.max(axis=1)
        if np.any(top <= 0):
            raise EvidenceError(
                f"soft evidence for {tables.names[v]!r} is all zeros in case(s) {_case_list(np.flatnonzero(top <= 0))}"
            )
        if np.any(top != 1.0):
            soft[v] = arr / top[:, None]
            log_scale = np.log(top) if log_scale is None else log_scale + np.log(top)
    return PreparedEvidence(tuple(vars_), matrix, soft, log_scale, n)


def _case_list(idx, limit: int = 10) -> str:
    idx = [int(i) for i in idx]
    s = ", ".join(str(i) for i in idx[:limit])
    return s + (f", ... ({len(idx)} in all)" if len(idx) > limit else "")
