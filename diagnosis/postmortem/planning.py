"""What to check next, and what to do: the next best check and the check-or-act plan.

**The next best check** (:func:`rank_checks`). The candidates are the
detectors not yet observed (a health check, a file-system integrity check, a
database consistency check, a metric nobody looked at). For a candidate
``S`` with outcomes ``o`` in {passed, fired}:

* information gain on the fault location, in bits::

      IG(S) = sum_c [ H(F_c | D) - sum_o P(o | D) H(F_c | D, S = o) ] = sum_c I(F_c ; S | D)

  (the faults of different components are not exclusive, so the location is
  measured as the sum of the components' fault-variable entropies);
* expected change in the best action's success::

      dR(S) = sum_o P(o | D) max_a P(R | D, S = o, a)  -  max_a P(R | D, a)

  over the actions not yet tried (always >= 0);
* ranking by value per unit of the check's cost (``IG / cost`` by default,
  ``dR / cost`` with ``by="success"``).

**The check-or-act plan** (:func:`next_step`, :func:`plan_recovery`)
follows the decision-theoretic troubleshooting of Heckerman, Breese and
Rommelse (1995), adapted to this model:

* each step runs a check, tries a recovery action or escalates (the
  "service call" of the paper: a fixed cost ``escalation_cost`` that ends
  the incident);
* a failed action is evidence: the posterior is multiplied by
  ``P(fail | F_t = m) = 1 - P(R | F_t = m, a)`` on the target's fault
  variable (virtual evidence); an action is tried at most once;
* by default (``assume_fault=True``) the beliefs are conditioned on "some
  component is faulty" (the incident is real):
  ``P(R | D, some fault, a) = P(R | D, a) / P(some fault | D)``, and check
  outcomes likewise;
* the expected cost of repair of the actions-only sequence, ``ECR(D)``:
  the untried actions with ``P(R | D, a) / cost(a) > 1 / escalation_cost``
  in decreasing order of that ratio, then escalation. Its expected cost is
  computed exactly under the model (chain rule over the failures);
* the expected cost of a check, ``ECO(S) = cost(S) + sum_o P(o | D) ECR(D, S = o)``.
  The plan runs the check of least ``ECO`` when it is below ``ECR(D)``,
  else it takes the first action of the sequence (or escalates when the
  sequence is empty) -- the paper's myopic rule.

The baseline is the **naive order**, "fix the most likely cause first": the
most probable location ``(c, m)`` under the current posterior that an untried
action can repair, with the action most likely to repair it (ties: lower
cost), whatever its cost; no checks. Failures update its posterior the same
way. Every policy escalates when no untried action is worth trying
(``P(R | D, a) / cost(a) <= 1 / escalation_cost`` for all of them) or after
``max_steps`` steps. ``docs/post_mortem.md`` defines the cost model.
:func:`compare_policies` measures the policies on incidents sampled from the
model.

On large models (more than :data:`MAX_EXPANDED` fault states of probability
above :data:`PRUNE_BELOW` at a decision, Train Ticket) the plan values its
checks from the joints of the :data:`PLAN_MAX_EXPANDED` most probable fault
states and the later actions of each sequence by a factorised posterior, a
declared approximation (see :class:`_PlanPolicy`); ``benchmarks/planning.py
--approx-error`` measures it against the exact plan.

The code: :class:`_Planner` holds what every policy shares (success
probabilities, actions-only sequences and their expected cost, transitions,
the expected-cost walk); each policy is a :class:`_Policy` of :data:`_POLICIES`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from diagnosis.exceptions import ApproximationWarning, ParameterError, suggest
from diagnosis.model.evidence import Evidence
from diagnosis.model.network import SYMPTOM_STATES, Network
from diagnosis.model.topology import Topology
from diagnosis.postmortem.session import BeliefState, Context, entropy_bits, findings_from, state_of

__all__ = [
    "ESCALATION_COST",
    "POLICIES",
    "CheckValue",
    "Plan",
    "PlanStep",
    "PolicyComparison",
    "PolicyResult",
    "compare_policies",
    "next_step",
    "plan_recovery",
    "rank_checks",
]

#: Default cost of escalating (the paper's service call), in the topology's cost unit.
ESCALATION_COST = 30.0
#: Policies: the check-or-act plan, the actions-only plan (same order, no checks),
#: the naive order (most likely cause first) and "recommended" (highest P(R | D, a) first).
POLICIES = ("plan", "actions", "naive", "recommended")
_TINY = 1e-12
_FIRED = SYMPTOM_STATES.index("fired")


# ============================================================================ values
@dataclass(frozen=True, slots=True)
class CheckValue:
    """The value of running one check now.

    Attributes
    ----------
    symptom : str
        ``component.detector``.
    component, detector : str
    cost : float
        Cost of running the check.
    p_fired : float
        ``P(S = fired | D)``.
    information_gain : float
        Expected information gain on the fault location, bits.
    success_gain : float
        Expected increase of the best untried action's ``P(R | D, a)``.
    """

    symptom: str
    component: str
    detector: str
    cost: float
    p_fired: float
    information_gain: float
    success_gain: float

    @property
    def information_per_cost(self) -> float:
        return _per_cost(self.information_gain, self.cost)

    @property
    def success_per_cost(self) -> float:
        return _per_cost(self.success_gain, self.cost)

    def to_dict(self) -> dict:
        """A JSON-ready mapping of the fields and both per-cost ratios."""
        from dataclasses import asdict

        return {
            **asdict(self),
            "information_per_cost": self.information_per_cost,
            "success_per_cost": self.success_per_cost,
        }


def _per_cost(value: float, cost: float) -> float:
    if cost > 0:
        return value / cost
    return math.inf if value > 0 else 0.0


@dataclass(frozen=True, slots=True)
class PlanStep:
    """One step of a plan.

    Attributes
    ----------
    kind : {"check", "action", "escalate"}
    name : str
        The symptom checked, the action tried, or ``"escalate"``.
    target : str or None
        The action's target component (the check's component for checks).
    cost : float
    probability : float
        Checks: ``P(fired | D)``; actions: ``P(R | D, a)``; escalation: 1.
    expected_cost : float
        Expected cost to recovery when taking this step now: ``ECO`` for a
        check, ``ECR`` of the sequence it starts for an action, the escalation
        cost for escalation. NaN when the policy does not compute it.
    assumed_outcome : str or None
        On a plan's displayed path: the outcome assumed to continue (the more
        likely result of a check; ``failure`` for an action).
    """

    kind: str
    name: str
    target: str | None
    cost: float
    probability: float
    expected_cost: float = math.nan
    assumed_outcome: str | None = None

    def describe(self) -> str:
        if self.kind == "check":
            return f"check {self.name}"
        if self.kind == "action":
            return f"{self.name} {self.target}"
        return "escalate"


@dataclass(frozen=True, slots=True)
class Plan:
    """A policy's course of action from one state of an incident.

    Attributes
    ----------
    policy : str
        One of :data:`POLICIES`.
    steps : tuple of PlanStep
        The path followed when every action fails and every check gives its
        more likely outcome (each step's ``assumed_outcome``), up to the first
        escalation.
    expected_cost : float
        Expected cost to recovery of the policy under the model (checks,
        actions and escalation; see ``docs/post_mortem.md``).
    exact : bool
        True when ``expected_cost`` expands the whole decision tree; False when
        the node budget cut it and the remaining branches were valued by the
        actions-only sequence from there.
    escalation_cost : float
    """

    policy: str
    steps: tuple[PlanStep, ...]
    expected_cost: float
    exact: bool
    escalation_cost: float

    @property
    def first(self) -> PlanStep:
        return self.steps[0]

    def to_dict(self) -> dict:
        """A JSON-ready mapping: ``policy``, ``expected_cost``, ``exact`` and the ``steps``."""
        from dataclasses import asdict

        return {
            "policy": self.policy,
            "expected_cost": self.expected_cost,
            "exact": self.exact,
            "steps": [asdict(st) for st in self.steps],
        }


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """One policy's costs on simulated incidents (see :func:`compare_policies`).

    Attributes
    ----------
    policy : str
    costs : tuple of float
        Cost to recovery per incident, in incident order.
    n_checks, n_actions : tuple of int
        Checks run and actions tried per incident.
    escalated : tuple of bool
        Whether the incident ended by escalation.
    """

    policy: str
    costs: tuple[float, ...]
    n_checks: tuple[int, ...]
    n_actions: tuple[int, ...]
    escalated: tuple[bool, ...]

    @property
    def mean_cost(self) -> float:
        return float(np.mean(self.costs)) if self.costs else math.nan

    @property
    def se_cost(self) -> float:
        """Standard error of the mean cost."""
        n = len(self.costs)
        return float(np.std(self.costs, ddof=1) / math.sqrt(n)) if n > 1 else math.nan

    def summary(self) -> dict[str, float]:
        return {
            "mean_cost": self.mean_cost,
            "se_cost": self.se_cost,
            "mean_checks": float(np.mean(self.n_checks)) if self.n_checks else math.nan,
            "mean_actions": float(np.mean(self.n_actions)) if self.n_actions else math.nan,
            "share_escalated": float(np.mean(self.escalated)) if self.escalated else math.nan,
        }


@dataclass(frozen=True, slots=True)
class PolicyComparison:
    """Policies run on the same simulated incidents (common random numbers).

    Attributes
    ----------
    topology : str
    n_incidents : int
    escalation_cost : float
    max_steps : int
    seed : Any
        The ``rng`` argument (an int reproduces the run).
    require_fault, assume_fault : bool
        Whether the incidents all have a true fault; whether the policies plan given one.
    results : Mapping[str, PolicyResult]
    """

    topology: str
    n_incidents: int
    escalation_cost: float
    max_steps: int
    seed: Any
    require_fault: bool = True
    assume_fault: bool = True
    results: Mapping[str, PolicyResult] = field(default_factory=dict)

    def saving(self, policy: str = "plan", baseline: str = "naive") -> dict[str, float]:
        """Paired saving of ``policy`` against ``baseline``.

        Returns
        -------
        dict
            ``saving`` (mean cost difference baseline - policy), ``se`` (its
            standard error over incidents), ``relative`` (saving / baseline mean)
            and ``share_cheaper`` / ``share_dearer`` (incidents where the policy
            cost less / more).
        """
        for name in (policy, baseline):
            if name not in self.results:
                raise ParameterError(
                    f"policy {name!r} was not run{suggest(name, self.results)}; run: {list(self.results)}"
                )
        a = np.asarray(self.results[policy].costs)
        b = np.asarray(self.results[baseline].costs)
        d = b - a
        n = len(d)
        return {
            "saving": float(d.mean()),
            "se": float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
            "relative": float(d.mean() / b.mean()) if b.mean() > 0 else math.nan,
            "share_cheaper": float(np.mean(d > 1e-9)),
            "share_dearer": float(np.mean(d < -1e-9)),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "topology": self.topology,
            "n_incidents": self.n_incidents,
            "escalation_cost": self.escalation_cost,
            "max_steps": self.max_steps,
            "seed": self.seed if isinstance(self.seed, (int, type(None))) else repr(self.seed),
            "require_fault": self.require_fault,
            "assume_fault": self.assume_fault,
            "policies": {p: r.summary() for p, r in self.results.items()},
            "saving_vs_naive": {p: self.saving(p, "naive") for p in self.results if p != "naive"}
            if "naive" in self.results
            else {},
        }


# ============================================================================ public API
def rank_checks(
    model: Topology | Network,
    evidence: Evidence | Mapping[str, Any] | None = None,
    *,
    actions: Sequence[Any] = (),
    by: str = "information",
    assume_fault: bool = True,
    engine: Any = "auto",
) -> tuple[CheckValue, ...]:
    """Value of every check not yet run, best value per unit of cost first.

    Parameters
    ----------
    model : Topology, Network or Context
        A :class:`~diagnosis.postmortem.session.Context` shares its engine's
        compiled plans and the fault-state joints with other calls on it
        (:func:`plan_recovery` on the same evidence reuses them).
    evidence : Evidence or mapping symptom -> observation, optional
    actions : sequence, optional
        Recovery attempts so far (``ActionAttempt`` or ``(action, target, outcome)``);
        their outcomes are evidence and tried actions are not counted in the
        success gain.
    by : {"information", "success"}
        Rank by information gain per cost (ties: success gain per cost) or the
        other way round; then lower cost, then declaration order.
    assume_fault : bool, default True
        Condition on "some component is faulty" (the incident is real); see
        ``docs/post_mortem.md``. False uses the plain posterior.
    engine : str or engine, default "auto"

    Returns
    -------
    tuple of CheckValue

    Warns
    -----
    ApproximationWarning
        When the posterior has more than :data:`MAX_EXPANDED` fault states of
        probability above :data:`PRUNE_BELOW` (Train Ticket): only the most
        probably faulty components, :data:`MAX_EXPANDED_LARGE` states, are then
        expanded, the others taken as unaffected by the checks (see
        ``docs/post_mortem.md``, "How the values are computed").

    Examples
    --------
    >>> from diagnosis import bundled_topology, load_topology
    >>> topo = load_topology(bundled_topology("webshop"))
    >>> best = rank_checks(topo, {"frontend.latency": "fired", "db.latency": "fired"})[0]
    >>> best.symptom, round(best.information_gain, 3)
    ('db-host.ping', 0.664)
    """
    if by not in ("information", "success"):
        raise ParameterError(
            f"The 'by' parameter of rank_checks must be one of {{'information', 'success'}}. Got {by!r} instead."
        )
    ctx = model if isinstance(model, Context) else Context(model, engine)
    findings = findings_from(evidence, actions)
    state = state_of(ctx, findings)
    tried = frozenset(ctx.acts.index(f.name, f.target) for f in findings if f.kind == "action")
    return _ranked(ctx, _check_values(ctx, state, tried, bool(assume_fault)), by)


def next_step(
    model: Topology | Network,
    evidence: Evidence | Mapping[str, Any] | None = None,
    *,
    actions: Sequence[Any] = (),
    policy: str = "plan",
    escalation_cost: float = ESCALATION_COST,
    assume_fault: bool = True,
    engine: Any = "auto",
) -> PlanStep:
    """The step a policy takes now.

    Parameters
    ----------
    model : Topology or Network
    evidence : Evidence or mapping, optional
        What has been observed.
    actions : sequence, optional
        Recovery attempts so far with their outcomes (tried actions are not
        tried again; failures are evidence).
    policy : {"plan", "actions", "naive", "recommended"}
    escalation_cost : float, default 30
    assume_fault : bool, default True
        Plan given that some component is faulty (the incident is real):
        ``P(R | D, a)`` becomes ``P(R | D, a) / P(some fault | D)``, and check
        outcomes are conditioned the same way. False plans on the plain posterior.
    engine : str or engine, default "auto"

    Returns
    -------
    PlanStep

    Warns
    -----
    ApproximationWarning
        With ``policy="plan"``, at a state with more than :data:`MAX_EXPANDED`
        fault states of probability above :data:`PRUNE_BELOW` (Train Ticket):
        the checks are then valued from the joints of the
        :data:`PLAN_MAX_EXPANDED` most probable fault states, the later actions
        of each sequence by a factorised posterior (see ``docs/post_mortem.md``,
        "The plan on large models").

    Examples
    --------
    >>> from diagnosis import bundled_topology, load_topology
    >>> topo = load_topology(bundled_topology("webshop"))
    >>> ev = {"frontend.latency": "fired", "backend.latency": "fired", "db.latency": "fired"}
    >>> next_step(topo, ev).describe()
    'check db-host.disk_usage'
    >>> next_step(topo, ev, policy="naive").describe()
    'failover db'
    """
    planner, state, tried = _setup(model, evidence, actions, policy, escalation_cost, engine, assume_fault=assume_fault)
    step = planner.decide([_Node(state, tried, 0)], policy)[0]
    planner.declare()
    return step


def plan_recovery(
    model: Topology | Network,
    evidence: Evidence | Mapping[str, Any] | None = None,
    *,
    actions: Sequence[Any] = (),
    policy: str = "plan",
    escalation_cost: float = ESCALATION_COST,
    max_steps: int = 20,
    max_nodes: int = 200,
    assume_fault: bool = True,
    engine: Any = "auto",
) -> Plan:
    """A policy's plan from the current state, with its expected cost to recovery.

    Parameters
    ----------
    model : Topology or Network
    evidence, actions : as :func:`next_step`
    policy : {"plan", "actions", "naive", "recommended"}
    escalation_cost : float, default 30
    max_steps : int, default 20
        A branch that reaches this many steps escalates.
    max_nodes : int, default 200
        Decisions evaluated in the expected-cost tree; beyond, branches are
        valued by the actions-only sequence (``Plan.exact`` is then False).
    assume_fault : bool, default True
        As :func:`next_step`; the expected cost is then over incidents with a fault.
    engine : str or engine, default "auto"

    Returns
    -------
    Plan

    Warns
    -----
    ApproximationWarning
        As :func:`next_step`; the expected-cost tree is then also cut after
        :data:`PLAN_MAX_NODES_APPROX` decisions (``Plan.exact`` False).

    Examples
    --------
    >>> from diagnosis import bundled_topology, load_topology
    >>> topo = load_topology(bundled_topology("webshop"))
    >>> ev = {"frontend.latency": "fired", "backend.latency": "fired", "db.latency": "fired"}
    >>> plan, naive = (plan_recovery(topo, ev, policy=p) for p in ("plan", "naive"))
    >>> [s.describe() for s in plan.steps][:3]
    ['check db-host.disk_usage', 'check db.disk_usage', 'check db.cpu']
    >>> round(plan.expected_cost, 2), round(naive.expected_cost, 2)
    (17.03, 22.51)
    """
    if not isinstance(max_nodes, (int, np.integer)) or max_nodes < 1:
        raise ParameterError(
            f"The 'max_nodes' parameter of plan_recovery must be an int >= 1. Got {max_nodes!r} instead."
        )
    planner, state, tried = _setup(model, evidence, actions, policy, escalation_cost, engine, max_steps, assume_fault)
    plan = planner.plan(_Node(state, tried, 0), policy, max_nodes=int(max_nodes))
    planner.declare()
    return plan


def compare_policies(
    model: Topology | Network,
    n: int,
    *,
    policies: Sequence[str] = POLICIES,
    rng: int | np.random.Generator | None = None,
    escalation_cost: float = ESCALATION_COST,
    max_steps: int = 20,
    p_observed: Mapping[str, float] | None = None,
    require_fault: bool = True,
    assume_fault: bool | None = None,
    engine: Any = "auto",
) -> PolicyComparison:
    """Run troubleshooting policies on incidents sampled from the model.

    Each incident is a joint sample of every network variable (as
    :func:`diagnosis.logs.simulate.simulate` draws them): its true faults, the
    value every detector would show, and which detectors were observed when
    it was opened (:data:`diagnosis.logs.simulate.P_OBSERVED`; an incident opens
    when an observed detector fired). A policy starts from the observed
    detectors; a check it runs shows the sampled value; an action on target
    ``t`` succeeds when ``u < P(R | F_t = true mode, a)``, with one uniform
    ``u`` per incident and action shared by every policy (common random
    numbers, so the comparison is paired). The incident ends at the first
    success or at escalation.

    Parameters
    ----------
    model : Topology or Network
    n : int
        Number of incidents.
    policies : sequence of str
        Among :data:`POLICIES`.
    rng : int, Generator or None
        Seed; the same seed gives the same incidents and costs.
    escalation_cost : float, default 30
    max_steps : int, default 20
    p_observed : mapping, optional
        Overrides of :data:`diagnosis.logs.simulate.P_OBSERVED`.
    require_fault : bool, default True
        Keep only incidents with at least one true fault (an incident opened
        by false alarms alone has nothing to repair).
    assume_fault : bool, optional
        Whether the policies plan given that some component is faulty; by
        default the same as ``require_fault``, so that their beliefs match the
        incidents they are run on.
    engine : str or engine, default "auto"

    Returns
    -------
    PolicyComparison
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ParameterError(f"The 'n' parameter of compare_policies must be an int >= 1. Got {n!r} instead.")
    for p in policies:
        _check_policy(p)
    ctx = Context(model, engine)
    assume = bool(require_fault) if assume_fault is None else bool(assume_fault)
    planner = _Planner(ctx, _check_cost(escalation_cost), _check_steps(max_steps), assume)
    gen = np.random.default_rng(rng)
    truth = _sample_incidents(ctx, int(n), gen, p_observed, require_fault)
    u = gen.random((int(n), len(ctx.acts.actions)))
    results = {}
    for p in policies:
        results[p] = _run_policy(planner, truth, u, p)
    planner.declare()
    return PolicyComparison(ctx.topology.name, int(n), float(escalation_cost), int(max_steps), rng,
                            bool(require_fault), assume, MappingProxyType(results))  # fmt: skip


# ============================================================================ internals
def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ParameterError(f"unknown policy {policy!r}{suggest(str(policy), POLICIES)}; allowed: {list(POLICIES)}")


def _check_cost(c: float) -> float:
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c <= 0:
        raise ParameterError(f"The 'escalation_cost' parameter must be a number > 0. Got {c!r} instead.")
    return float(c)


def _check_steps(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ParameterError(f"The 'max_steps' parameter must be an int >= 1. Got {k!r} instead.")
    return int(k)


def _setup(model, evidence, actions, policy, escalation_cost, engine, max_steps=20, assume_fault=True):
    _check_policy(policy)
    ctx = model if isinstance(model, Context) else Context(model, engine)
    planner = _Planner(ctx, _check_cost(escalation_cost), _check_steps(max_steps), bool(assume_fault))
    findings = findings_from(evidence, actions)
    state = state_of(ctx, findings)
    tried = frozenset(ctx.acts.index(f.name, f.target) for f in findings if f.kind == "action")
    return planner, state, tried


def _ranked(ctx: Context, values: Sequence[CheckValue], by: str = "information") -> tuple[CheckValue, ...]:
    """Check values best first: by information gain per cost (ties: success gain per cost) or the other
    way round with ``by="success"``; then lower cost, then declaration order (:func:`rank_checks`'s order)."""
    order = {d.symptom: i for i, d in enumerate(ctx.detectors)}
    if by == "information":
        key = lambda v: (-v.information_per_cost, -v.success_per_cost, v.cost, order[v.symptom])  # noqa: E731
    else:
        key = lambda v: (-v.success_per_cost, -v.information_per_cost, v.cost, order[v.symptom])  # noqa: E731
    return tuple(sorted(values, key=key))


@dataclass(frozen=True, slots=True)
class _Node:
    state: BeliefState
    tried: frozenset
    depth: int


def _given_fault(m: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Fault-variable marginals (B, card) given that some component is faulty (``q = P(some fault | D)``)."""
    out = np.array(m, dtype=np.float64)
    out[:, 0] -= 1.0 - q
    out /= np.maximum(q, _TINY)[:, None]
    return np.clip(out, 0.0, 1.0)


#: Fault states whose posterior ``P(F_c = m | D)`` is at most this are not
#: expanded by :func:`_check_values`: their joint with every check is taken as
#: ``P(F_c = m | D) P(S = o | D)`` (no information), so each pruned state moves
#: a check's information gain by at most about ``PRUNE_BELOW`` bits times the
#: log of its likelihood ratio. ``0`` expands every state of non-zero probability
#: (exact).
PRUNE_BELOW = 1e-6
#: Most fault states :func:`_check_values` expands (one propagation each, all in
#: one batched query); beyond, whole components are expanded in decreasing order
#: of ``P(F_c != ok | D)`` up to :data:`MAX_EXPANDED_LARGE` states, the others keep
#: ``P(F_c | D)`` whatever the outcome (as pruned states), with an
#: :class:`~diagnosis.exceptions.ApproximationWarning`.
MAX_EXPANDED = 64
#: States :func:`rank_checks` expands past :data:`MAX_EXPANDED` (Train Ticket:
#: the same 10 best checks as all 296 states, information gains within 0.001
#: bits, in a third of the time of 64).
MAX_EXPANDED_LARGE = 32
#: Fault states the check-or-act plan expands per decision at a node with more
#: than :data:`MAX_EXPANDED` states of probability above :data:`PRUNE_BELOW`
#: (Train Ticket: one propagation each); see :class:`_PlanPolicy`. Forced on
#: Online Boutique (53 states), 32 kept the 5 checks of least ECO in 99% of
#: incidents, 16 in 78% (``benchmarks/planning.py --approx-error``).
PLAN_MAX_EXPANDED = MAX_EXPANDED_LARGE
#: Decisions :func:`plan_recovery` evaluates in the expected-cost tree once a
#: decision was approximated (a node past :data:`MAX_EXPANDED` states); the
#: branches beyond, and the displayed path past them, follow the actions-only
#: sequence valued by the factorised posterior.
PLAN_MAX_NODES_APPROX = 1


def _fault_joints(
    ctx: Context,
    batch,
    prior: Mapping[str, np.ndarray],
    ps: np.ndarray,
    cand_vars: Sequence[str],
    prune: float = PRUNE_BELOW,
    max_expanded: int | None = MAX_EXPANDED,
    *,
    stacklevel: int | None = 3,
    keys: Sequence[Any] | None = None,
) -> dict[str, np.ndarray]:
    """Joints ``P(F_c = m, S = o | D)`` at every case of ``batch``, for the checks ``cand_vars``.

    ``prior[fv]`` (B, card) holds ``P(F_c | D)`` and ``ps`` (B, n_cand, 2) ``P(S = o | D)``
    at each case. One batched query for all cases: each of its rows carries a
    one-hot likelihood on one fault state ``(c, m)`` (``m`` not ``ok``; virtual
    evidence, so every row shares one compiled plan) and gives
    ``P(S = o | D, F_c = m)``; the ``ok`` row is ``P(S = o | D)`` minus the others.
    States of probability at most ``prune`` are not expanded, nor (past
    ``max_expanded`` states at a case, whole components from the most probably
    faulty up to ``min(max_expanded, MAX_EXPANDED_LARGE)`` states, with an
    :class:`~diagnosis.exceptions.ApproximationWarning`) the least probably
    faulty components: those keep ``P(F_c | D) P(S = o | D)``.
    ``stacklevel`` None: no warning (the caller declares the approximation).
    ``keys`` (one per case, its evidence's :attr:`BeliefState.key`): the result of
    each case is kept in ``ctx.memo`` (the last :data:`_MEMO_SIZE`) and reused,
    so that ``rank_checks`` and the plan share the root's joints in one context.

    Returns
    -------
    dict
        ``{fv: (B, n_cand, card, 2)}``.
    """
    n = batch.n
    joint = {fv: prior[fv][:, None, :, None] * ps[:, :, None, :] for fv in ctx.fault_vars}
    budget = None if max_expanded is None else min(max_expanded, MAX_EXPANDED_LARGE)
    cases: list[tuple[int, str, int]] = []  # (case b, fault variable, state m)
    store = []  # (case b, memo key) computed here
    for b in range(n):
        mine = [(fv, m) for fv in ctx.fault_vars for m in range(1, ctx.cards[fv]) if prior[fv][b, m] > prune]
        if max_expanded is not None and len(mine) > max_expanded:
            level = None if stacklevel is None else stacklevel + 1
            mine = _component_budget(mine, {fv: prior[fv][b] for fv in ctx.fault_vars}, budget, level)
        key = None if keys is None else ("joints", keys[b], tuple(cand_vars), tuple(mine))
        if key is not None and key in ctx.memo:  # the same evidence, checks and expanded states
            for fv in ctx.fault_vars:
                joint[fv][b] = ctx.memo[key][fv]
            continue
        cases += [(b, fv, m) for fv, m in mine]
        if key is not None:
            store.append((b, key))
    if cases:
        _expand(ctx, batch, prior, ps, cand_vars, cases, joint)
    for b, key in store:
        while len(ctx.memo) >= _MEMO_SIZE:
            ctx.memo.pop(next(iter(ctx.memo)))
        ctx.memo[key] = {fv: joint[fv][b].copy() for fv in ctx.fault_vars}
    return joint


#: Results :func:`_fault_joints` keeps per context (about 2 MB each on Train Ticket).
_MEMO_SIZE = 4


def _expand(ctx: Context, batch, prior, ps, cand_vars, cases, joint) -> None:
    """The expanded states' rows of ``joint`` (see :func:`_fault_joints`), in place."""
    cb = batch.take(np.array([c[0] for c in cases], dtype=np.int64))
    for fv in {fv for _, fv, _ in cases}:
        ind = np.ones((len(cases), ctx.cards[fv]))
        for r, (_, f, m) in enumerate(cases):
            if f == fv:
                ind[r] = 0.0
                ind[r, m] = 1.0
        cb.multiply(fv, ind, ctx.cards[fv])
    given = ctx.query(cb, targets=list(cand_vars))
    cond = np.stack([given[sv] for sv in cand_vars], axis=1)  # (rows, n_cand, 2): P(S = o | D, F_c = m)
    expanded = set()
    for r, (b, fv, m) in enumerate(cases):
        joint[fv][b, :, m, :] = prior[fv][b, m] * cond[r]
        expanded.add((b, fv))
    for b, fv in expanded:
        joint[fv][b, :, 0, :] = np.maximum(ps[b] - joint[fv][b, :, 1:, :].sum(axis=1), 0.0)


def _component_budget(cases, prior_m, max_expanded: int, stacklevel: int | None):
    """Whole components, most probably faulty first, up to ``max_expanded`` states; warns (unless
    ``stacklevel`` is None)."""
    import warnings

    per: dict[str, list] = {}
    for fv, m in cases:
        per.setdefault(fv, []).append((fv, m))
    kept: list[tuple[str, int]] = []
    dropped = 0.0
    for fv in sorted(per, key=lambda f: -(1.0 - prior_m[f][0])):
        if not kept or len(kept) + len(per[fv]) <= max_expanded:
            kept += per[fv]
        else:
            dropped += 1.0 - prior_m[fv][0]
    if stacklevel is None:
        return kept
    warnings.warn(
        f"check values: the {len(per) - len({fv for fv, _ in kept})} least probably faulty components "
        f"(summed P(fault) {dropped:.3g}) taken as independent of the checks; "
        f"{len(kept)} fault states expanded exactly",
        ApproximationWarning,
        stacklevel=stacklevel,
    )
    return kept


def _check_values(
    ctx: Context,
    state: BeliefState,
    tried: frozenset,
    assume_fault: bool = True,
    prune: float = PRUNE_BELOW,
    max_expanded: int | None = MAX_EXPANDED,
) -> list[CheckValue]:
    """Value of every unrun check from pairwise joints ``P(F_c = m, S = o | D)``.

    Each check ``S`` is a leaf, so its outcome updates the fault variables by
    ``P(F_c = m | D, S = o) = P(F_c = m | D) P(S = o | D, F_c = m) / P(S = o | D)``.
    One batched query whose cases each carry a one-hot likelihood on one fault
    state ``(c, m)`` (``m`` not ``ok``; virtual evidence, so every case shares one
    compiled plan) gives ``P(S = o | D, F_c = m)`` for every candidate at once;
    the ``ok`` row is ``P(S = o | D)`` minus the others. With ``assume_fault``,
    ``P(all ok, S = o | D) = P(all ok | D) P(S = o | D, all ok)`` (one more
    query) conditions on "some fault". Exact (up to rounding) when ``prune`` is
    0 and ``max_expanded`` is None or large enough; see :data:`PRUNE_BELOW` and
    :data:`MAX_EXPANDED`.
    """
    cand = [k for k, sv in enumerate(ctx.symptom_vars) if not state.observes(sv)]
    if not cand:
        return []
    batch = ctx.batch([state])
    cand_vars = [ctx.symptom_vars[k] for k in cand]
    sym = list(ctx.symptom_vars)  # the joints over every symptom, as the plan's (shared through ctx.memo)
    base = ctx.query(batch, targets=list(ctx.fault_vars) + sym)
    ps_all = np.stack([base[sv][0] for sv in sym], axis=0)
    ps = ps_all[cand]  # (n_cand, 2): P(S = o | D)
    p_f = ps[:, _FIRED].copy()
    q0 = np.ones(1)
    allok = np.zeros_like(ps)  # P(all ok, S = o | D)
    if assume_fault:
        ok = ctx.all_ok(batch)
        q0 = ctx.p_some_fault(batch, ok)
        m_ok = ctx.query(ok, targets=cand_vars)
        f_ok = np.stack([m_ok[sv][0] for sv in cand_vars], axis=0)
        allok = (1.0 - q0[0]) * f_ok
        p_f = np.clip((p_f - (1.0 - q0[0]) * f_ok[:, _FIRED]) / max(q0[0], _TINY), 0.0, 1.0)
    prior_m = {fv: base[fv][0] for fv in ctx.fault_vars}  # P(F_c | D), before conditioning on a fault
    if assume_fault:
        base = {**base, **{fv: _given_fault(base[fv], q0) for fv in ctx.fault_vars}}
    h0 = sum(float(entropy_bits(base[fv][0])) for fv in ctx.fault_vars)
    untried = np.array([i not in tried for i in range(len(ctx.acts.actions))], dtype=bool)
    best0 = float(np.max(ctx.acts.expected_success(base)[0][untried])) if untried.any() else 0.0
    prior = {fv: base_m[None, :] for fv, base_m in prior_m.items()}
    joint = _fault_joints(ctx, batch, prior, ps_all[None], sym, prune, max_expanded, stacklevel=4, keys=[state.key])
    joint = {fv: j[0][cand] for fv, j in joint.items()}
    rows = []  # (candidate j, outcome o, weight)
    for j in range(len(cand)):
        for o, p in ((0, 1.0 - p_f[j]), (1, p_f[j])):
            if p > _TINY:
                rows.append((j, o, float(p)))
    exp_h = np.zeros(len(cand))
    exp_r = np.zeros(len(cand))
    if rows:
        js = np.array([r[0] for r in rows], dtype=np.int64)
        os_ = np.array([r[1] for r in rows], dtype=np.int64)
        den = np.maximum(ps[js, os_], 1e-300)
        marg = {fv: joint[fv][js, :, os_] / den[:, None] for fv in ctx.fault_vars}
        if assume_fault:
            q = np.clip(1.0 - allok[js, os_] / den, 0.0, 1.0)
            marg = {fv: _given_fault(marg[fv], q) for fv in ctx.fault_vars}
        ent = sum(entropy_bits(marg[fv]) for fv in ctx.fault_vars)
        succ = ctx.acts.expected_success(marg)[:, untried].max(axis=1) if untried.any() else np.zeros(len(rows))
        for r, (j, _o, p) in enumerate(rows):
            exp_h[j] += p * ent[r]
            exp_r[j] += p * succ[r]
    values = []
    for j, k in enumerate(cand):
        d = ctx.detectors[k]
        values.append(
            CheckValue(
                symptom=d.symptom,
                component=d.component,
                detector=d.name,
                cost=float(d.cost),
                p_fired=float(p_f[j]),
                information_gain=max(0.0, h0 - float(exp_h[j])),
                success_gain=max(0.0, float(exp_r[j]) - best0),
            )
        )
    return values


def _outcome_batch(ctx: Context, batch, rows: Sequence[tuple[int, int, int, float]]):
    """Cases ``batch[b]`` with detector ``k`` observed in state ``o``, one per row ``(b, k, o, p)``."""
    out = batch.take(np.array([r[0] for r in rows], dtype=np.int64))
    ks = np.array([r[1] for r in rows], dtype=np.int64)
    os_ = np.array([r[2] for r in rows], dtype=np.int64)
    for k in np.unique(ks):
        out.set_hard(ctx.symptom_vars[k], np.where(ks == k, os_, -1))
    return out


@dataclass(frozen=True, slots=True)
class _Beliefs:
    """What the policies read at a batch of nodes: one engine query for all of them.

    Attributes
    ----------
    batch : Batch
        The nodes' evidence, one case each.
    marg : dict
        Posterior marginals per case (fault variables; symptoms too when asked).
    p : ndarray (B, n_actions)
        ``P(R | D, a)`` (given some fault with ``assume_fault``).
    p_fired : ndarray (B, n_detectors) or None
        ``P(S = fired | D)`` (same conditioning), when asked.
    z : ndarray (B,)
        ``P(all ok | D)`` (0 without ``assume_fault``).
    f_ok : ndarray (B, n_detectors) or None
        ``P(S = fired | D, all ok)``, with ``p_fired`` under ``assume_fault``.
    large : ndarray (B,) of bool
        Nodes with more than the planner's ``approx_above`` fault states of
        probability above :data:`PRUNE_BELOW`: the plan values their checks
        approximately (see :class:`_PlanPolicy`).
    """

    batch: Any
    marg: Mapping[str, np.ndarray]
    p: np.ndarray
    p_fired: np.ndarray | None = None
    z: np.ndarray | None = None
    f_ok: np.ndarray | None = None
    large: np.ndarray | None = None


class _Planner:
    """The machinery every policy shares: success probabilities, actions-only sequences and their
    expected cost, transitions between nodes and the expected-cost walk of a policy's tree.

    The policies themselves (which step to take at a node) are the :class:`_Policy` classes of
    :data:`_POLICIES`.
    """

    def __init__(
        self,
        ctx: Context,
        escalation_cost: float,
        max_steps: int,
        assume_fault: bool = True,
        approx_above: int | None = MAX_EXPANDED,
        max_expanded: int | None = PLAN_MAX_EXPANDED,
    ):
        self.ctx = ctx
        self.approx_above = approx_above
        self.max_expanded = max_expanded
        #: Set when a decision was approximated (a node past ``approx_above``).
        self.approximated = False
        self.assume_fault = bool(assume_fault)
        self.c_esc = float(escalation_cost)
        self.max_steps = int(max_steps)
        self.check_cost = np.array([d.cost for d in ctx.detectors], dtype=np.float64)
        self.target_vars = sorted(set(ctx.acts.var))
        # Location index -> (fault var column, component index).
        self.loc_comp = np.array([ci for ci, c in enumerate(ctx.components) for _ in c.fault_modes], dtype=np.int64)
        self.loc_state = np.array([si + 1 for c in ctx.components for si in range(len(c.fault_modes))], dtype=np.int64)
        comp_index = {c.name: i for i, c in enumerate(ctx.components)}
        self.action_comp = np.array([comp_index[a.component] for a in ctx.acts.actions], dtype=np.int64)
        self.escalate = PlanStep("escalate", "escalate", None, self.c_esc, 1.0, self.c_esc)

    # ------------------------------------------------------------------ probabilities
    def _success(self, batch, marg, q: np.ndarray | None = None) -> np.ndarray:
        """``P(R | D, a)`` per case and action; with ``assume_fault``, given that some component is faulty:
        ``P(R | D, a) / P(some fault | D)`` (an action only succeeds on a faulty target)."""
        p = self.ctx.acts.expected_success(marg)
        if not self.assume_fault:
            return p
        if q is None:
            q = self.ctx.p_some_fault(batch)
        return np.minimum(p / np.maximum(q, _TINY)[:, None], 1.0)

    def beliefs(self, nodes: Sequence[_Node], with_symptoms: bool = False) -> _Beliefs:
        """The posterior at each node (one batched query), with the checks' ``P(fired)`` when asked."""
        ctx = self.ctx
        targets = list(ctx.fault_vars) + (list(ctx.symptom_vars) if with_symptoms else [])
        batch = ctx.batch([nd.state for nd in nodes])
        marg = ctx.query(batch, targets=targets)
        ok = ctx.all_ok(batch) if self.assume_fault else None
        q = ctx.p_some_fault(batch, ok) if self.assume_fault else None
        p = self._success(batch, marg, q)
        z = (1.0 - q) if self.assume_fault else np.zeros(batch.n)
        if self.approx_above is None:
            large = np.zeros(batch.n, dtype=bool)
        else:
            n_states = sum((marg[fv][:, 1:] > PRUNE_BELOW).sum(axis=1) for fv in ctx.fault_vars)
            large = np.asarray(n_states > self.approx_above)
        if not with_symptoms:
            return _Beliefs(batch, marg, p, z=z, large=large)
        f_ok = None
        p_fired = (
            np.stack([marg[sv][:, _FIRED] for sv in ctx.symptom_vars], axis=1)
            if ctx.symptom_vars
            else np.zeros((len(nodes), 0))
        )
        if self.assume_fault and ctx.symptom_vars:
            # P(o | D, some fault) = (P(o | D) - P(all ok | D) P(o | D, all ok)) / P(some fault | D)
            m_ok = ctx.query(ok, targets=list(ctx.symptom_vars))
            f_ok = np.stack([m_ok[sv][:, _FIRED] for sv in ctx.symptom_vars], axis=1)
            p_fired = np.clip((p_fired - z[:, None] * f_ok) / np.maximum(q, _TINY)[:, None], 0.0, 1.0)
        return _Beliefs(batch, marg, p, p_fired, z, f_ok, large)

    # ------------------------------------------------------------------ sequences
    def _sequences(self, p: np.ndarray, tried: Sequence[frozenset]) -> tuple[np.ndarray, np.ndarray]:
        """Actions-only sequences, one per row of ``p`` (B, n_actions).

        The worthwhile untried actions (``P / cost > 1 / escalation cost``) by
        decreasing ``P / cost`` (ties: higher P, lower cost, declaration order).

        Returns
        -------
        (seq, lengths)
            ``seq[b, :lengths[b]]`` are action indices; the rest is -1.
        """
        p = np.asarray(p, dtype=np.float64)
        n_rows, n_act = p.shape
        if n_act == 0:
            return np.zeros((n_rows, 0), dtype=np.int64), np.zeros(n_rows, dtype=np.int64)
        cost = self.ctx.acts.cost
        mask = p * self.c_esc > cost[None, :]
        for r, t in enumerate(tried):
            if t:
                mask[r, list(t)] = False
        safe = np.where(cost > 0, cost, 1.0)
        ratio = np.where(cost[None, :] > 0, p / safe[None, :], np.where(p > 0, np.inf, 0.0))
        rows = np.repeat(np.arange(n_rows), n_act)
        cols = np.tile(np.arange(n_act), n_rows)
        order = np.lexsort((cols, np.tile(cost, n_rows), -p.ravel(), -ratio.ravel(), ~mask.ravel(), rows))
        seq = cols[order].reshape(n_rows, n_act)
        lengths = mask.sum(axis=1)
        seq = np.where(np.arange(n_act)[None, :] < lengths[:, None], seq, -1)
        return seq, lengths

    def sequence_costs(self, bel: _Beliefs, tried: Sequence[frozenset]):
        """The actions-only sequence at every node of ``bel`` and its expected cost.

        Exact (:meth:`_ecr`) at the nodes that are not ``large``; at the others by
        the factorised posterior (:meth:`_product_ecr`).

        Returns
        -------
        (seq, lengths, ecr)
        """
        seq, lengths = self._sequences(bel.p, tried)
        ecr = np.empty(bel.batch.n)
        large = bel.large if bel.large is not None else np.zeros(bel.batch.n, dtype=bool)
        small = np.flatnonzero(~large)
        if len(small):
            ecr[small] = self._ecr(bel.batch, small, seq[small], lengths[small], bel.p[small])
        big = np.flatnonzero(large)
        if len(big):
            marg = {t: bel.marg[t][big] for t in self.target_vars}
            ecr[big] = self._product_ecr(marg, bel.z[big], seq[big], lengths[big])[0]
        return seq, lengths, ecr

    def _product_ecr(self, marg: Mapping[str, np.ndarray], z: np.ndarray, seq, lengths):
        """Expected cost of each actions-only sequence with the later failures under a factorised posterior.

        The chance that the first ``k`` actions all fail is taken from the
        targets' marginals ``marg`` (B, card) as if the components were
        independent given the evidence, ``prod_t sum_m P(F_t = m | D) prod_(a on t) P(fail | m)``;
        with ``assume_fault`` the all-ok part ``z = P(all ok | D)`` (every action fails
        there) is taken out: ``(prod - z) / (1 - z)``. The first action's
        failure is exact; the later ones are the declared approximation of the
        plan on large models (its error is measured by ``benchmarks/planning.py --approx-error``).

        Returns
        -------
        (ecr, alive)
            ``alive[b, k]``: chance that the first ``k`` actions all fail (``alive[:, 0] = 1``).
        """
        ctx = self.ctx
        n_rows = len(lengths)
        lmax = int(lengths.max()) if n_rows else 0
        alive = np.ones((n_rows, lmax + 1))
        if lmax == 0:
            return np.full(n_rows, self.c_esc), alive
        tix = {t: i for i, t in enumerate(self.target_vars)}
        width = max(ctx.cards[t] for t in self.target_vars)
        w = np.zeros((n_rows, len(self.target_vars), width))
        for t, i in tix.items():
            w[:, i, : ctx.cards[t]] = marg[t]
        g = w.sum(axis=2)
        prod = np.prod(g, axis=1)
        rows = np.arange(n_rows)
        costs = np.zeros(n_rows)
        for k in range(lmax):
            live = lengths > k
            r = rows[live]
            a = seq[r, k]
            costs[r] += ctx.acts.cost[a] * alive[r, k]
            ti = np.array([tix[ctx.acts.var[j]] for j in a], dtype=np.int64)
            fail = np.ones((len(a), width))
            for j in np.unique(a):
                fail[a == j, : ctx.cards[ctx.acts.var[j]]] = 1.0 - ctx.acts.success[j]
            old = g[r, ti]
            w[r, ti] *= fail
            new = w[r, ti].sum(axis=1)
            prod[r] *= np.where(old > 0, new / np.where(old > 0, old, 1.0), 0.0)
            g[r, ti] = new
            if self.assume_fault:
                alive[r, k + 1] = (prod[r] - z[r]) / np.maximum(1.0 - z[r], _TINY)
            else:
                alive[r, k + 1] = prod[r]
            alive[r, k + 1] = np.clip(alive[r, k + 1], 0.0, alive[r, k])
            done = ~live
            alive[done, k + 1] = alive[done, k]
        return costs + alive[rows, lengths] * self.c_esc, alive

    def _ecr(self, batch, rows: np.ndarray, seq: np.ndarray, lengths: np.ndarray, p_first: np.ndarray) -> np.ndarray:
        """Exact expected cost of each actions-only sequence (then escalation) from case ``rows[i]``.

        ``p_first[i]`` holds ``P(R | D, a)`` at the case itself for every action.
        Chain rule: ``P(a_k fails | D, a_1..a_{k-1} failed)`` from the posterior
        with those failures multiplied in (one case per prefix).
        """
        rows = np.asarray(rows, dtype=np.int64)
        n_rows = len(rows)
        out = np.empty(n_rows)
        # Chunk the rows so that a chunk's prefix cases stay bounded in memory.
        start = 0
        while start < n_rows:
            stop, cases = start, 0
            while stop < n_rows and (stop == start or cases + lengths[stop] <= 40_000):
                cases += int(lengths[stop])
                stop += 1
            sl = slice(start, stop)
            out[sl] = self._ecr_chunk(batch, rows[sl], seq[sl], lengths[sl], p_first[sl])
            start = stop
        return out

    def _ecr_chunk(self, batch, rows, seq, lengths, p_first) -> np.ndarray:
        ctx = self.ctx
        n_rows = len(rows)
        lmax = int(lengths.max()) if n_rows else 0
        if lmax == 0:
            return np.full(n_rows, self.c_esc)
        valid = np.arange(lmax)[None, :] < lengths[:, None]
        act = np.where(valid, seq[:, :lmax], 0)
        costs = np.where(valid, ctx.acts.cost[act], 0.0)
        pf = np.ones((n_rows, lmax))
        has = lengths > 0
        pf[has, 0] = 1.0 - p_first[has, act[has, 0]]
        ii, kk = np.nonzero(valid[:, 1:])
        kk = kk + 1
        if len(ii):
            pre = batch.take(rows[ii])
            for var in self.target_vars:
                if var not in pre.soft:
                    pre.soft[var] = np.ones((pre.n, ctx.cards[var]))
            big = np.iinfo(np.int64).max
            pos = np.full((n_rows, len(ctx.acts.actions)), big, dtype=np.int64)
            vr, vk = np.nonzero(valid)
            pos[vr, act[vr, vk]] = vk
            for j in np.unique(act[valid]):
                m = pos[ii, j] < kk
                if m.any():
                    pre.soft[ctx.acts.var[j]][m] *= ctx.acts.failure_likelihood(j)
            marg = ctx.query(pre, targets=self.target_vars)
            q = np.maximum(ctx.p_some_fault(pre), _TINY) if self.assume_fault else np.ones(pre.n)
            aj = act[ii, kk]
            for j in np.unique(aj):
                m = aj == j
                pf[ii[m], kk[m]] = 1.0 - (marg[ctx.acts.var[j]][m] @ ctx.acts.success[j]) / q[m]
        pf = np.clip(pf, 0.0, 1.0)
        alive = np.cumprod(pf, axis=1)
        before = np.concatenate([np.ones((n_rows, 1)), alive[:, :-1]], axis=1)
        return (before * costs).sum(axis=1) + alive[:, -1] * self.c_esc

    # ------------------------------------------------------------------ steps
    def worthwhile(self, p: np.ndarray, tried: frozenset) -> np.ndarray:
        """Mask of untried actions worth trying before escalating: P / cost > 1 / escalation cost."""
        mask = p * self.c_esc > self.ctx.acts.cost
        if tried:
            mask[list(tried)] = False
        return mask

    def action_step(self, j: int, p: float, ecr: float) -> PlanStep:
        a = self.ctx.acts.actions[j]
        return PlanStep("action", a.name, a.component, float(a.cost), float(p), ecr)

    def decide(self, nodes: Sequence[_Node], policy: str) -> list[PlanStep]:
        """The step ``policy`` takes at each node (batched; see :data:`_POLICIES`)."""
        return _POLICIES[policy].decide(self, nodes)

    def _sequence_path(self, bel: _Beliefs, i: int, seq: np.ndarray, ecr: float) -> list[PlanStep]:
        """Node ``i``'s actions-only sequence as path steps (each action failing), then escalation;
        the later actions' probabilities from the factorised posterior."""
        marg = {t: bel.marg[t][[i]] for t in self.target_vars}
        alive = self._product_ecr(marg, bel.z[[i]], seq[None, :], np.array([len(seq)]))[1][0]
        steps = []
        for k, j in enumerate(seq):
            p = 1.0 - alive[k + 1] / alive[k] if alive[k] > 0 else 0.0
            steps.append(_with_outcome(self.action_step(int(j), p, ecr if k == 0 else math.nan), "failure"))
        return [*steps, self.escalate]

    # ------------------------------------------------------------------ transitions
    def child(self, node: _Node, step: PlanStep, outcome: str) -> _Node:
        ctx = self.ctx
        if step.kind == "check":
            var = ctx.network.symptom_variable[step.name]
            return _Node(node.state.observe(var, SYMPTOM_STATES.index(outcome)), node.tried, node.depth + 1)
        j = ctx.acts.index(step.name, step.target)
        return _Node(ctx.acts.after(node.state, j, "failure"), node.tried | {j}, node.depth + 1)

    def declare(self, stacklevel: int = 3) -> None:
        """An :class:`~diagnosis.exceptions.ApproximationWarning` when a decision was approximated."""
        if not self.approximated:
            return
        import warnings

        warnings.warn(
            f"check-or-act plan: more than {self.approx_above} fault states of probability above "
            f"{PRUNE_BELOW:g}; checks valued on the {self.max_expanded} most probable fault states "
            f"(whole components), the later actions of each sequence by a factorised posterior, "
            f"and the expected-cost tree cut after {PLAN_MAX_NODES_APPROX} decision(s)",
            ApproximationWarning,
            stacklevel=stacklevel,
        )

    def plan(self, root: _Node, policy: str, *, max_nodes: int) -> Plan:
        """``policy``'s :class:`Plan` from ``root`` (see :meth:`walk`)."""
        steps, cost, exact = self.walk(root, policy, max_nodes=max_nodes)
        return Plan(policy, tuple(steps), cost, exact, self.c_esc)

    def walk(self, root: _Node, policy: str, *, max_nodes: int) -> tuple[list[PlanStep], float, bool]:
        """The displayed path and the expected cost of ``policy`` from ``root``, in one pass.

        The decision tree is expanded level by level (every level's nodes
        decided in one batch): a check branches on both outcomes, an action
        continues on failure. Past ``max_nodes`` decisions the open branches are
        valued by their actions-only sequence (``exact`` False), and the path is
        finished alone.

        Returns
        -------
        (steps, expected_cost, exact)
        """
        frontier = [(root, 1.0, True)]  # (node, probability of reaching it, on the displayed path)
        total, used, exact = 0.0, 0, True
        path: list[PlanStep] = []
        on_path: _Node | None = root
        self.approximated = False
        while frontier:
            limit = min(max_nodes, PLAN_MAX_NODES_APPROX) if self.approximated else max_nodes
            if used + len(frontier) > limit:
                exact = False
                nodes = [nd for nd, _, _ in frontier]
                bel = self.beliefs(nodes)
                seq, lengths, ecr = self.sequence_costs(bel, [nd.tried for nd in nodes])
                total += float(sum(w * c for (_, w, _), c in zip(frontier, ecr)))
                i = next((i for i, (_, _, flag) in enumerate(frontier) if flag), None)
                on_path = None if i is None else frontier[i][0]
                if i is not None and self.approximated:  # the path goes on as the branch was valued
                    path += self._sequence_path(bel, i, seq[i, : lengths[i]], float(ecr[i]))
                    on_path = None
                break
            steps = self.decide([nd for nd, _, _ in frontier], policy)
            used += len(frontier)
            nxt = []
            on_path = None
            for (nd, w, flag), st in zip(frontier, steps):
                total += w * st.cost
                assumed = _assumed(st)
                if flag:
                    path.append(_with_outcome(st, assumed))
                if st.kind == "check":
                    for outcome, po in (("passed", 1.0 - st.probability), ("fired", st.probability)):
                        if po > _TINY or (flag and outcome == assumed):
                            nxt.append((self.child(nd, st, outcome), w * po, flag and outcome == assumed))
                elif st.kind == "action":
                    pf = 1.0 - st.probability
                    if pf > _TINY or flag:
                        nxt.append((self.child(nd, st, "failure"), w * pf, flag))
            frontier = nxt
        node = on_path
        while node is not None:  # finish the displayed path past the node budget
            st = self.decide([node], policy)[0]
            assumed = _assumed(st)
            path.append(_with_outcome(st, assumed))
            node = None if st.kind == "escalate" else self.child(node, st, assumed)
        return path, total, exact


# ============================================================================ policies
class _Policy:
    """How one policy picks its step; :meth:`decide` batches the nodes into one query."""

    name = ""
    #: Whether :meth:`choose` reads the checks' ``P(fired)``.
    with_symptoms = False

    def decide(self, planner: _Planner, nodes: Sequence[_Node]) -> list[PlanStep]:
        """The step taken at each node."""
        if not nodes:
            return []
        return self.choose(planner, nodes, planner.beliefs(nodes, self.with_symptoms))

    def choose(self, planner: _Planner, nodes: Sequence[_Node], bel: _Beliefs) -> list[PlanStep]:
        raise NotImplementedError


class _GreedyPolicy(_Policy):
    """One action at a time by a rule on the current posterior, with the shared stopping rule."""

    def choose(self, planner, nodes, bel):
        steps = []
        extra = self.prepare(planner, bel)
        for b, nd in enumerate(nodes):
            mask = planner.worthwhile(bel.p[b], nd.tried)
            if nd.depth >= planner.max_steps or not mask.any():
                steps.append(planner.escalate)
                continue
            j = self.pick(planner, bel.p[b], nd, mask, extra[b] if extra is not None else None)
            steps.append(planner.escalate if j is None else planner.action_step(j, bel.p[b][j], math.nan))
        return steps

    def prepare(self, planner: _Planner, bel: _Beliefs) -> np.ndarray | None:
        return None

    def pick(self, planner, p, node, mask, extra) -> int | None:
        raise NotImplementedError


class _NaivePolicy(_GreedyPolicy):
    """Fix the most likely cause first: the most probable location an untried action can repair."""

    name = "naive"

    def prepare(self, planner, bel):
        return planner.ctx.location_matrix(bel.marg)

    def pick(self, planner, p, node, mask, locs):
        # cost-blind: any untried action may serve the most likely cause
        ctx = planner.ctx
        untried = np.ones(len(ctx.acts.actions), dtype=bool)
        untried[list(node.tried)] = False
        for li in np.argsort(-locs, kind="stable"):
            if locs[li] <= 0:
                break
            comp, state = planner.loc_comp[li], planner.loc_state[li]
            best, key = None, None
            for j in np.flatnonzero(untried & (planner.action_comp == comp)):
                s = ctx.acts.success[j][state]
                if s <= 0:
                    continue
                cand = (-s, ctx.acts.cost[j], j)
                if key is None or cand < key:
                    best, key = int(j), cand
            if best is not None:
                return best
        return None


def _by_success(p: np.ndarray, cost: np.ndarray, candidates) -> list[int]:
    """Action indices ``candidates`` by decreasing ``P(R | D, a)`` (ties: lower cost, declaration order)."""
    return sorted((int(j) for j in candidates), key=lambda j: (-p[j], cost[j], j))


class _RecommendedPolicy(_GreedyPolicy):
    """The worthwhile action of highest ``P(R | D, a)`` first."""

    name = "recommended"

    def pick(self, planner, p, node, mask, extra):
        order = _by_success(p, planner.ctx.acts.cost, np.flatnonzero(mask))
        return order[0] if order else None


class _ActionsPolicy(_Policy):
    """The actions-only sequence (by ``P / cost``), no checks."""

    name = "actions"

    def choose(self, planner, nodes, bel):
        seq, lengths = planner._sequences(bel.p, [nd.tried for nd in nodes])
        steps = []
        for b, nd in enumerate(nodes):
            if nd.depth >= planner.max_steps or lengths[b] == 0:
                steps.append(planner.escalate)
            else:
                steps.append(planner.action_step(int(seq[b, 0]), bel.p[b][seq[b, 0]], math.nan))
        return steps


class _PlanPolicy(_Policy):
    """The check-or-act plan: the check of least ``ECO`` when below ``ECR``, else the sequence's first action.

    At a ``large`` node (more fault states than the planner's ``approx_above``,
    Train Ticket) the checks are valued without one propagation per (check,
    outcome): the outcome's posterior on the fault variables comes from the
    joints ``P(F_c = m, S = o | D)`` of :func:`_fault_joints` (at most
    ``max_expanded`` states, the most probably faulty components), and the
    expected cost of the sequence after it from the factorised posterior
    (:meth:`_Planner._product_ecr`; the node's own ``ECR`` too, so that both
    sides of the comparison are valued alike). A check whose two outcomes leave
    the sequence unchanged has ``ECO = cost + ECR`` exactly and is never run.
    """

    name = "plan"
    with_symptoms = True

    def values(self, planner: _Planner, nodes: Sequence[_Node], bel: _Beliefs | None = None):
        """``ECR`` and the checks' ``ECO`` at each node.

        Returns
        -------
        (seq, lengths, ecr, eco)
            The actions-only sequences, their expected costs, and per node a
            mapping detector index -> ``ECO`` for the checks cheaper than ``ECR``.
        """
        bel = planner.beliefs(nodes, True) if bel is None else bel
        seq, lengths, ecr0 = planner.sequence_costs(bel, [nd.tried for nd in nodes])
        return seq, lengths, ecr0, self.check_costs(planner, nodes, bel, ecr0, seq, lengths)

    def choose(self, planner, nodes, bel):
        ctx = planner.ctx
        seq, lengths, ecr0, eco = self.values(planner, nodes, bel)
        steps = []
        for b, nd in enumerate(nodes):
            if nd.depth >= planner.max_steps:
                steps.append(planner.escalate)
                continue
            if eco[b]:
                v, _, k = min((v, planner.check_cost[k], k) for k, v in eco[b].items())
                if v < ecr0[b] - 1e-12:
                    d = ctx.detectors[k]
                    steps.append(
                        PlanStep("check", d.symptom, d.component, float(d.cost), float(bel.p_fired[b, k]), float(v))
                    )
                    continue
            if lengths[b]:
                steps.append(planner.action_step(int(seq[b, 0]), bel.p[b][seq[b, 0]], float(ecr0[b])))
            else:
                steps.append(planner.escalate)
        return steps

    def check_costs(self, planner, nodes, bel, ecr0, seq, lengths) -> list[dict[int, float]]:
        """``ECO(S)`` per node for every check cheaper than the node's ``ECR``."""
        ctx = planner.ctx
        rows = []  # (node b, detector k, outcome o, P(o))
        for b, nd in enumerate(nodes):
            if nd.depth >= planner.max_steps:
                continue
            for k, sv in enumerate(ctx.symptom_vars):
                if planner.check_cost[k] >= ecr0[b] or nd.state.observes(sv):
                    continue
                p_f = float(bel.p_fired[b, k])
                if not _TINY < p_f < 1.0 - _TINY:
                    continue
                rows.append((b, k, 0, 1.0 - p_f))
                rows.append((b, k, 1, p_f))
        eco: list[dict[int, float]] = [{} for _ in nodes]
        large = bel.large if bel.large is not None else np.zeros(len(nodes), dtype=bool)
        exact = [r for r in rows if not large[r[0]]]
        if exact:  # one case per (check, outcome), the outcome as hard evidence
            out_batch = _outcome_batch(ctx, bel.batch, exact)
            op = planner._success(out_batch, ctx.query(out_batch))
            out = _Beliefs(out_batch, {}, op)
            oecr = planner.sequence_costs(out, [nodes[r[0]].tried for r in exact])[2]
            for r, (b, k, _o, po) in enumerate(exact):
                eco[b][k] = eco[b].get(k, planner.check_cost[k]) + po * oecr[r]
        approx = [r for r in rows if large[r[0]]]
        if approx:
            planner.approximated = True
            self._approximate(planner, nodes, bel, approx, (seq, lengths, ecr0), eco)
        return eco

    def _approximate(self, planner, nodes, bel, rows, node_seq, eco) -> None:
        """``ECO`` at large nodes from the fault-state joints (see the class docstring), into ``eco``."""
        ctx = planner.ctx
        seq0, len0, ecr0 = node_seq
        big = sorted({r[0] for r in rows})
        local = {b: i for i, b in enumerate(big)}
        sym = list(ctx.symptom_vars)
        prior = {fv: bel.marg[fv][big] for fv in ctx.fault_vars}
        ps = np.stack([bel.marg[sv][big] for sv in sym], axis=1)  # (n_big, n_sym, 2)
        joint = _fault_joints(
            ctx, bel.batch.take(np.array(big)), prior, ps, sym, PRUNE_BELOW, planner.max_expanded,
            stacklevel=None, keys=[nodes[b].state.key for b in big],
        )  # fmt: skip
        bi = np.array([local[r[0]] for r in rows], dtype=np.int64)
        ks = np.array([r[1] for r in rows], dtype=np.int64)
        os_ = np.array([r[2] for r in rows], dtype=np.int64)
        den = np.maximum(ps[bi, ks, os_], 1e-300)
        marg = {t: joint[t][bi, ks, :, os_] / den[:, None] for t in planner.target_vars}
        p = ctx.acts.expected_success(marg)
        bb = np.array([r[0] for r in rows], dtype=np.int64)
        z = np.zeros(len(rows))
        if planner.assume_fault:
            f_ok = bel.f_ok[bb, ks]
            z = np.clip(bel.z[bb] * np.where(os_ == _FIRED, f_ok, 1.0 - f_ok) / den, 0.0, 1.0)
            p = np.minimum(p / np.maximum(1.0 - z, _TINY)[:, None], 1.0)
        seq, lengths = planner._sequences(p, [nodes[b].tried for b in bb])
        same = (lengths == len0[bb]) & np.all(seq == seq0[bb, : seq.shape[1]], axis=1)
        ecr = planner._product_ecr(marg, z, seq, lengths)[0]
        changed: dict[tuple[int, int], bool] = {}
        for r, (b, k, _o, po) in enumerate(rows):
            changed[(b, k)] = changed.get((b, k), False) or not same[r]
            eco[b][k] = eco[b].get(k, planner.check_cost[k]) + po * ecr[r]
        for (b, k), ch in changed.items():
            if not ch:  # both outcomes keep the sequence: ECO = cost + ECR, never below it
                eco[b][k] = planner.check_cost[k] + ecr0[b]


#: The policies of :data:`POLICIES`, by name.
_POLICIES: Mapping[str, _Policy] = MappingProxyType(
    {p.name: p for p in (_PlanPolicy(), _ActionsPolicy(), _NaivePolicy(), _RecommendedPolicy())}
)


def _assumed(step: PlanStep) -> str | None:
    """The outcome the displayed path continues with: the more likely check result, an action's failure."""
    if step.kind == "check":
        return "fired" if step.probability >= 0.5 else "passed"
    return "failure" if step.kind == "action" else None


def _with_outcome(step: PlanStep, outcome: str | None) -> PlanStep:
    return PlanStep(step.kind, step.name, step.target, step.cost, step.probability, step.expected_cost, outcome)


# ============================================================================ simulation
def _sample_incidents(ctx: Context, n: int, gen: np.random.Generator, p_observed, require_fault: bool):
    from diagnosis.logs.simulate import observation_probabilities, sample_opened

    probs = observation_probabilities(p_observed, caller="compare_policies")
    return sample_opened(
        ctx.network, n, gen, probs=probs, require_fault=require_fault, batch_size=20_000, max_rounds=1000
    )


def _run_policy(planner: _Planner, truth, u: np.ndarray, policy: str) -> PolicyResult:
    ctx = planner.ctx
    n = truth.faults.shape[0]
    comp_index = {c.name: i for i, c in enumerate(ctx.components)}
    sym_index = {d.symptom: k for k, d in enumerate(ctx.detectors)}
    nodes = []
    for i in range(n):
        hard = {ctx.symptom_vars[k]: int(truth.symptoms[i, k]) for k in np.flatnonzero(truth.observed[i])}
        nodes.append(_Node(BeliefState(hard, {}), frozenset(), 0))
    cost = np.zeros(n)
    n_checks = np.zeros(n, dtype=np.int64)
    n_actions = np.zeros(n, dtype=np.int64)
    escalated = np.zeros(n, dtype=bool)
    active = list(range(n))
    while active:
        steps = planner.decide([nodes[i] for i in active], policy)
        still = []
        for i, st in zip(active, steps):
            cost[i] += st.cost
            if st.kind == "escalate":
                escalated[i] = True
                continue
            if st.kind == "check":
                n_checks[i] += 1
                outcome = SYMPTOM_STATES[int(truth.symptoms[i, sym_index[st.name]])]
                nodes[i] = planner.child(nodes[i], st, outcome)
                still.append(i)
                continue
            n_actions[i] += 1
            j = ctx.acts.index(st.name, st.target)
            true_state = truth.faults[i, comp_index[st.target]]
            if u[i, j] < ctx.acts.success[j][true_state]:
                continue  # repaired
            nodes[i] = planner.child(nodes[i], st, "failure")
            still.append(i)
        active = still
    return PolicyResult(
        policy,
        tuple(float(c) for c in cost),
        tuple(int(c) for c in n_checks),
        tuple(int(c) for c in n_actions),
        tuple(bool(e) for e in escalated),
    )
