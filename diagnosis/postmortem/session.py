"""Belief states shared by the post-mortem tools (:mod:`diagnosis.postmortem.explain`,
:mod:`diagnosis.postmortem.planning`, :mod:`diagnosis.postmortem.timeline`).

A :class:`BeliefState` is what is known at one moment of an incident, in
network terms: hard evidence (variable -> state index) and virtual evidence
(variable -> likelihood vector). Observed symptoms are hard (``fired`` /
``passed``) or virtual (a detector's score); the outcome of a recovery action
is virtual evidence on its target's fault variable::

    P(action a fails    | F_t = m) = 1 - P(R | F_t = m, a)
    P(action a succeeds | F_t = m) =     P(R | F_t = m, a)

:class:`ActionTable` holds the recovery actions and what each outcome does to
its target's belief; :class:`Context` holds a network, its engine and its
:class:`ActionTable` (``ctx.acts``), and answers batches of belief states with
one engine query (each state one case).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from diagnosis.exceptions import EvidenceError, suggest
from diagnosis.model.evidence import Evidence, ResolvedEvidence
from diagnosis.model.network import FAULT_OK, SYMPTOM_STATES, Network, build_network
from diagnosis.model.topology import Topology

__all__ = ["LIKELIHOOD_FLOOR", "ActionTable", "Batch", "BeliefState", "Context"]

#: Smallest likelihood an action outcome contributes. An action with
#: ``P(R | m, a) = 1`` makes ``m`` impossible after a failure; flooring the
#: failure likelihood at this value keeps every later state well defined (the
#: change is far below any reported digit).
LIKELIHOOD_FLOOR = 1e-12
#: Cases per engine call; larger batches are split (bounds memory).
MAX_CASES = 20_000
_FIRED = SYMPTOM_STATES.index("fired")
_PASSED = SYMPTOM_STATES.index("passed")


@dataclass(frozen=True, slots=True)
class BeliefState:
    """What is known at one moment, in network terms.

    Attributes
    ----------
    hard : Mapping[str, int]
        Variable -> observed state index.
    soft : Mapping[str, tuple of float]
        Variable -> likelihood vector (virtual evidence), in state order.
    """

    hard: Mapping[str, int]
    soft: Mapping[str, tuple[float, ...]]

    def __post_init__(self):
        object.__setattr__(self, "hard", MappingProxyType(dict(self.hard)))
        object.__setattr__(self, "soft", MappingProxyType({k: tuple(map(float, v)) for k, v in self.soft.items()}))

    @property
    def key(self) -> tuple:
        """A hashable form of the evidence (equal states, equal keys)."""
        return (tuple(sorted(self.hard.items())), tuple(sorted(self.soft.items())))

    def observes(self, var: str) -> bool:
        return var in self.hard or var in self.soft

    def observe(self, var: str, index: int) -> BeliefState:
        """A copy with ``var`` observed in state ``index`` (replacing any soft evidence on it)."""
        hard = dict(self.hard)
        hard[var] = int(index)
        soft = {k: v for k, v in self.soft.items() if k != var}
        return BeliefState(hard, soft)

    def forget(self, var: str) -> BeliefState:
        """A copy without any evidence on ``var``."""
        return BeliefState(
            {k: v for k, v in self.hard.items() if k != var}, {k: v for k, v in self.soft.items() if k != var}
        )

    def multiply(self, var: str, likelihood: Sequence[float]) -> BeliefState:
        """A copy with ``likelihood`` multiplied into the virtual evidence on ``var``."""
        soft = dict(self.soft)
        lik = np.asarray(likelihood, dtype=np.float64)
        if var in soft:
            lik = lik * np.asarray(soft[var])
        soft[var] = tuple(lik.tolist())
        return BeliefState(self.hard, soft)


class Batch:
    """Evidence arrays for a batch of cases, as the engines' ``query`` takes them."""

    __slots__ = ("hard", "soft", "n")

    def __init__(self, hard: dict[str, np.ndarray], soft: dict[str, np.ndarray], n: int):
        self.hard = hard
        self.soft = soft
        self.n = int(n)

    @classmethod
    def from_states(cls, states: Sequence[BeliefState], cards: Mapping[str, int]) -> Batch:
        n = len(states)
        hard: dict[str, np.ndarray] = {}
        soft: dict[str, np.ndarray] = {}
        for b, st in enumerate(states):
            for var, idx in st.hard.items():
                if var not in hard:
                    hard[var] = np.full(n, -1, dtype=np.int64)
                hard[var][b] = idx
            for var, lik in st.soft.items():
                if var not in soft:
                    soft[var] = np.ones((n, cards[var]))
                soft[var][b] = lik
        return cls(hard, soft, n)

    def take(self, rows: np.ndarray) -> Batch:
        """The cases ``rows`` (repeats allowed), as a new batch."""
        rows = np.asarray(rows, dtype=np.int64)
        return Batch({k: v[rows] for k, v in self.hard.items()}, {k: v[rows] for k, v in self.soft.items()}, len(rows))

    def set_hard(self, var: str, values: np.ndarray) -> None:
        """Set the observed state of ``var`` per case (``-1`` = unobserved), in place."""
        values = np.asarray(values, dtype=np.int64)
        if var in self.hard:
            col = self.hard[var]
            col[values >= 0] = values[values >= 0]
        else:
            self.hard[var] = values.copy()
        if var in self.soft:  # hard evidence overrides soft on the same variable
            self.soft[var][values >= 0] = 1.0

    def multiply(self, var: str, factors: np.ndarray, card: int) -> None:
        """Multiply per-case likelihood rows ``factors`` (B, card) into ``var``, in place."""
        if var not in self.soft:
            self.soft[var] = np.ones((self.n, card))
        self.soft[var] *= factors


@dataclass(frozen=True)
class ActionTable:
    """The recovery actions of a network and what each does to its target's belief.

    Attributes
    ----------
    actions : tuple of Action
        In the topology's order; an action's index is its position here.
    var : tuple of str
        The fault variable of each action's target.
    cost : ndarray (n_actions,)
    success : tuple of ndarray
        ``P(action succeeds | F_t = m)`` over the target's fault states (0 for ``ok``).
    """

    actions: tuple
    var: tuple[str, ...]
    cost: np.ndarray
    success: tuple[np.ndarray, ...]
    _index: Mapping[tuple[str, str], int]
    _components: tuple[str, ...]

    @classmethod
    def of(cls, network: Network) -> ActionTable:
        topo = network.topology
        actions = tuple(topo.actions)
        var = tuple(network.fault_variable[a.component] for a in actions)
        success = tuple(
            np.array([0.0 if s == FAULT_OK else a.success.get(s, 0.0) for s in network.variable(fv).states])
            for a, fv in zip(actions, var)
        )
        index = {(a.name, a.component): i for i, a in enumerate(actions)}
        cost = np.array([a.cost for a in actions], dtype=np.float64)
        return cls(actions, var, cost, success, MappingProxyType(index), tuple(topo.component_names))

    def __len__(self) -> int:
        return len(self.actions)

    def index(self, action: str, target: str) -> int:
        """Index of the action ``action`` on ``target``; EvidenceError naming the known ones."""
        try:
            return self._index[(action, target)]
        except KeyError:
            same = sorted(a for a, t in self._index if t == target)
            targets = sorted({t for _, t in self._index})
            known = (
                f"; actions of {target!r}: {same}"
                if same
                else suggest(target, self._components) or f"; targets with actions: {targets}"
            )
            raise EvidenceError(f"unknown action {action!r} on target {target!r}{known}") from None

    def failure_likelihood(self, index: int) -> np.ndarray:
        """``P(action fails | F_t = m)`` over the target's fault states (floored)."""
        return np.maximum(1.0 - self.success[index], LIKELIHOOD_FLOOR)

    def success_likelihood(self, index: int) -> np.ndarray:
        """``P(action succeeds | F_t = m)`` over the target's fault states (floored)."""
        return np.maximum(self.success[index], LIKELIHOOD_FLOOR)

    def after(self, state: BeliefState, index: int, outcome: str) -> BeliefState:
        """The state after action ``index`` came out ``outcome`` (``failure``, ``success`` or ``unknown``)."""
        if outcome == "failure":
            return state.multiply(self.var[index], self.failure_likelihood(index))
        if outcome == "success":
            return state.multiply(self.var[index], self.success_likelihood(index))
        return state

    def expected_success(self, marginals: Mapping[str, np.ndarray]) -> np.ndarray:
        """``P(R | D, a)`` per case and action: array (B, n_actions)."""
        cols = [marginals[fv] @ s for fv, s in zip(self.var, self.success)]
        if not cols:
            n = next(iter(marginals.values())).shape[0] if marginals else 0
            return np.zeros((n, 0))
        return np.stack(cols, axis=1)


class Context:
    """A network, its engine and its action tables, built once for many queries.

    Parameters
    ----------
    model : Topology or Network
    engine : str or engine, default "auto"
        An engine name for :func:`diagnosis.make_engine`, or an engine built for this network.
    """

    def __init__(self, model: Topology | Network, engine: Any = "auto"):
        from diagnosis.inference import make_engine

        self.network = model if isinstance(model, Network) else build_network(model)
        self.engine = make_engine(self.network, engine) if isinstance(engine, str) else engine
        topo = self.network.topology
        self.topology = topo
        self.components = topo.components
        self.fault_vars = tuple(self.network.fault_variable[c.name] for c in topo.components)
        self.cards = {v.name: v.card for v in self.network.variables}
        self.fault_states = {fv: self.network.variable(fv).states for fv in self.fault_vars}
        self.prior = {fv: np.asarray(self.network.variable(fv).table, dtype=np.float64) for fv in self.fault_vars}
        self.detectors = topo.detectors
        self.symptom_vars = tuple(self.network.symptom_variable[d.symptom] for d in self.detectors)
        self.acts = ActionTable.of(self.network)
        # Location list in diagnose's order: components, then their modes.
        self.locations = tuple((c.name, m.name) for c in topo.components for m in c.fault_modes)
        #: Results derived from this network and engine, kept for reuse by the callers that share
        #: this context (the planner's fault-state joints; bounded by the caller).
        self.memo: dict = {}

    # ------------------------------------------------------------------ evidence
    def state(
        self, evidence: Evidence | Mapping[str, Any] | ResolvedEvidence | BeliefState | None = None
    ) -> BeliefState:
        """The belief state of some evidence (symptom names or already resolved)."""
        if isinstance(evidence, BeliefState):
            return evidence
        if evidence is None:
            return BeliefState({}, {})
        if not isinstance(evidence, ResolvedEvidence):
            if not isinstance(evidence, Evidence):
                evidence = Evidence(evidence)
            evidence = evidence.resolve(self.network)
        hard = {var: self.network.variable(var).states.index(state) for var, state in evidence.hard.items()}
        return BeliefState(hard, dict(evidence.soft))

    # ------------------------------------------------------------------ queries
    def batch(self, states: Sequence[BeliefState]) -> Batch:
        return Batch.from_states(states, self.cards)

    def query(
        self, batch: Batch | Sequence[BeliefState], targets: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Posterior marginals ``{var: (B, card)}`` of ``targets`` (default: every fault variable)."""
        if not isinstance(batch, Batch):
            batch = self.batch(batch)
        targets = list(self.fault_vars if targets is None else targets)
        n = batch.n
        if n == 0:
            return {t: np.zeros((0, self.cards[t])) for t in targets}
        out = {t: np.empty((n, self.cards[t])) for t in targets}
        for start in range(0, n, MAX_CASES):
            stop = min(n, start + MAX_CASES)
            hard = {k: v[start:stop] for k, v in batch.hard.items() if np.any(v[start:stop] >= 0)}
            soft = {k: v[start:stop] for k, v in batch.soft.items()}
            res = self.engine.query(targets, hard, soft, n_cases=stop - start)
            for t in targets:
                r = np.asarray(res[t], dtype=np.float64)
                out[t][start:stop] = r / r.sum(axis=1, keepdims=True)
        return out

    def all_ok(self, batch: Batch) -> Batch:
        """A copy of ``batch`` with every fault variable observed ``ok``."""
        ok = batch.take(np.arange(batch.n))
        zeros = np.zeros(batch.n, dtype=np.int64)
        for fv in self.fault_vars:
            ok.set_hard(fv, zeros)
        return ok

    def p_some_fault(self, batch: Batch, ok: Batch | None = None) -> np.ndarray:
        """``P(at least one component is faulty | evidence)`` per case.

        ``1 - P(D, every fault variable ok) / P(D)``: from the engine's
        ``log_evidence`` when it has one, else by the chain rule
        ``P(all ok | D) = prod_c P(F_c = ok | D, F_1..F_{c-1} = ok)``.
        """
        ok = self.all_ok(batch) if ok is None else ok
        if hasattr(self.engine, "log_evidence"):
            with np.errstate(invalid="ignore"):
                diff = self._log_evidence(ok) - self._log_evidence(batch)
            return np.clip(-np.expm1(np.where(np.isnan(diff), -np.inf, diff)), 0.0, 1.0)
        n, k = batch.n, len(self.fault_vars)
        chain = batch.take(np.repeat(np.arange(n), k))
        pos = np.tile(np.arange(k), n)
        for c, fv in enumerate(self.fault_vars):
            chain.set_hard(fv, np.where(pos > c, 0, -1))
        marg = self.query(chain)
        p_ok = np.stack([marg[fv][:, 0] for fv in self.fault_vars], axis=1)  # (n * k, k)
        z = p_ok[np.arange(n * k), pos].reshape(n, k).prod(axis=1)
        return np.clip(1.0 - z, 0.0, 1.0)

    def _log_evidence(self, batch: Batch) -> np.ndarray:
        out = np.empty(batch.n)
        for start in range(0, batch.n, MAX_CASES):
            stop = min(batch.n, start + MAX_CASES)
            hard = {k: v[start:stop] for k, v in batch.hard.items() if np.any(v[start:stop] >= 0)}
            soft = {k: v[start:stop] for k, v in batch.soft.items()}
            out[start:stop] = self.engine.log_evidence(hard, soft, n_cases=stop - start)
        return out

    def location_matrix(self, marginals: Mapping[str, np.ndarray]) -> np.ndarray:
        """``P(F_c = m | D)`` per case for every location in :attr:`locations` order: (B, n_locations)."""
        cols = [marginals[fv][:, 1:] for fv in self.fault_vars]
        return np.concatenate(cols, axis=1) if cols else np.zeros((0, 0))

    def prior_locations(self) -> np.ndarray:
        return np.concatenate([self.prior[fv][1:] for fv in self.fault_vars])


def entropy_bits(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of each row of ``p`` (0 log 0 = 0; rows are not renormalised)."""
    from scipy.special import entr

    return entr(np.asarray(p, dtype=np.float64)).sum(axis=-1) / math.log(2.0)


def logit(p: np.ndarray | float) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped away from 0 and 1 (natural log)."""
    from scipy.special import logit as _logit

    return _logit(np.clip(np.asarray(p, dtype=np.float64), 1e-300, 1.0 - 1e-16))


def finite(x: float) -> float | None:
    """``x`` for JSON: None when not finite."""
    return float(x) if math.isfinite(x) else None


def diagnosis_from(ctx: Context, state: BeliefState, marginals: Mapping[str, np.ndarray], row: int = 0):
    """A :class:`~diagnosis.localization.Diagnosis` from one row of a batched query.

    Hard and soft evidence on symptoms are reported as :func:`diagnose` does;
    virtual evidence from action outcomes (on fault variables) is listed in
    ``soft_evidence`` under the fault variable's name.
    """
    from diagnosis.localization import Diagnosis, Location
    from diagnosis.recovery import score_actions

    posteriors: dict[str, Mapping[str, float]] = {}
    locations = []
    for c, fv in zip(ctx.components, ctx.fault_vars):
        states = ctx.fault_states[fv]
        probs = marginals[fv][row]
        posteriors[c.name] = MappingProxyType({s: float(p) for s, p in zip(states, probs)})
        for s, p in zip(states, probs):
            if s != FAULT_OK:
                locations.append(Location(c.name, s, float(p), fv, s))
    locations.sort(key=lambda loc: -loc.probability)
    hard = {var: ctx.network.variable(var).states[i] for var, i in state.hard.items()}
    name = getattr(ctx.engine, "name", type(ctx.engine).__name__)
    kind = getattr(ctx.engine, "kind", None)
    return Diagnosis(
        evidence=MappingProxyType(hard),
        soft_evidence=MappingProxyType(dict(state.soft)),
        posteriors=MappingProxyType(posteriors),
        locations=tuple(locations),
        actions=score_actions(ctx.topology, posteriors),
        engine=f"{name} ({kind})" if kind and kind not in name else name,
    )


_OUTCOMES = ("failure", "success", "unknown")


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing learnt during an incident: a symptom's observation or an action's outcome.

    Attributes
    ----------
    kind : {"symptom", "action"}
    name : str
        The symptom (``component.detector``) or the action's name.
    target : str or None
        The action's target component.
    value : str
        ``fired``, ``passed`` or ``soft`` for symptoms; ``failure``, ``success``
        or ``unknown`` for actions.
    likelihood : (float, float) or None
        For ``soft``: ``(P(score | passed), P(score | fired))``.
    time : pandas.Timestamp or None
    """

    kind: str
    name: str
    value: str
    target: str | None = None
    likelihood: tuple[float, float] | None = None
    time: Any = None

    @property
    def label(self) -> str:
        """``component.detector`` for a symptom, ``action target`` for an action."""
        return self.name if self.kind == "symptom" else f"{self.name} {self.target}"

    @property
    def observation(self) -> str:
        """The value as text (a soft observation as ``fired:P,passed:Q``)."""
        if self.value == "soft" and self.likelihood is not None:
            return f"fired:{self.likelihood[1]:g},passed:{self.likelihood[0]:g}"
        return self.value

    def flipped(self) -> Finding | None:
        """The opposite outcome (fired <-> passed, a soft likelihood swapped, failure <-> success), or None."""
        swap = {"fired": "passed", "passed": "fired", "failure": "success", "success": "failure"}
        if self.value in swap:
            return Finding(self.kind, self.name, swap[self.value], self.target, None, self.time)
        if self.value == "soft" and self.likelihood is not None and self.likelihood[0] != self.likelihood[1]:
            return Finding(
                self.kind, self.name, "soft", self.target, (self.likelihood[1], self.likelihood[0]), self.time
            )
        return None

    @property
    def informative(self) -> bool:
        return not (
            self.value == "unknown"
            or (self.value == "soft" and self.likelihood is not None and self.likelihood[0] == self.likelihood[1])
        )

    def apply(self, ctx: Context, state: BeliefState) -> BeliefState:
        """``state`` with this finding added."""
        if self.kind == "action":
            return ctx.acts.after(state, ctx.acts.index(self.name, self.target), self.value)
        var = ctx.network.symptom_variable.get(self.name)
        if var is None:
            raise EvidenceError(f"unknown symptom {self.name!r}{suggest(self.name, ctx.network.symptom_variable)}")
        if self.value == "soft":
            lik = dict(zip(("passed", "fired"), self.likelihood))
            return state.forget(var).multiply(var, [lik[s] for s in SYMPTOM_STATES])
        return state.observe(var, SYMPTOM_STATES.index(self.value))


def findings_from(evidence: Evidence | Mapping[str, Any] | None, actions: Sequence[Any] = ()) -> list[Finding]:
    """Findings from evidence (symptom -> observation) and action attempts.

    ``actions`` holds :class:`~diagnosis.logs.schema.ActionAttempt` values or
    ``(action, target, outcome)`` tuples. ``absent`` observations are skipped.
    """
    out: list[Finding] = []
    if evidence is not None:
        if not isinstance(evidence, Evidence):
            evidence = Evidence(evidence)
        for symptom, obs in evidence.observations.items():
            if obs.kind == "absent":
                continue
            out.append(Finding("symptom", symptom, obs.kind, likelihood=obs.likelihood))
    for a in actions:
        if isinstance(a, Finding):
            out.append(a)
            continue
        if hasattr(a, "action"):
            name, target, outcome, time = a.action, a.target, a.outcome, getattr(a, "time", None)
        else:
            try:
                name, target, outcome = a
            except (TypeError, ValueError):
                raise EvidenceError(
                    f"an action attempt must be (action, target, outcome). Got {a!r} instead."
                ) from None
            time = None
        if outcome not in _OUTCOMES:
            raise EvidenceError(
                f"action {name!r} on {target!r}: unknown outcome {outcome!r}; allowed: {list(_OUTCOMES)}"
            )
        out.append(Finding("action", name, outcome, target, None, time))
    return out


def state_of(ctx: Context, findings: Sequence[Finding], base: BeliefState | None = None) -> BeliefState:
    state = base if base is not None else BeliefState({}, {})
    for f in findings:
        state = f.apply(ctx, state)
    return state
