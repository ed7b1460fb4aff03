"""How the belief evolved as an incident unfolded.

:func:`belief_timeline` replays an incident's findings in time order -- its
observations, then each recovery attempt's outcome as evidence (a failure
multiplies the posterior by ``1 - P(R | F_t = m, a)`` on the target's fault
variable, a success by ``P(R | F_t = m, a)``; ``unknown`` adds nothing) -- and
records the posterior of every location after each one. Step 0 is the prior
(the incident just opened, nothing looked at).

Findings without a time are placed at the incident's opening, in record
order; ties keep observations before actions, in record order.

From the replay:

* **when it knew** -- the first step from which the true cause (when the
  incident has one) stays the top location to the end (``knew_at``; the
  component's ``P(any fault)`` is ranked when only the component is known);
* **turning points** -- the findings after which the top location changed;
* **recommended against taken** -- at each recovery attempt, the action the
  model would have recommended from what was known just before (highest
  ``P(R | D, a)`` among the actions not yet tried; ties to the lower cost),
  the check-or-act plan's next step (:mod:`diagnosis.postmortem.planning`), and where
  the action actually taken ranked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from diagnosis.exceptions import IncidentLogError
from diagnosis.logs.schema import Incident
from diagnosis.model.network import Network
from diagnosis.model.topology import Topology
from diagnosis.postmortem.session import BeliefState, Context, Finding, findings_from

__all__ = ["ActionReview", "Timeline", "TimelineEvent", "TurningPoint", "belief_timeline"]

_REL = 1e-9  # relative tolerance: probabilities this close are ties


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One step of the replay.

    Attributes
    ----------
    step : int
        0 for the opening (the prior), then 1, 2, ...
    time : pandas.Timestamp
    kind : {"opened", "symptom", "action"}
    finding : str
        The symptom, ``action target``, or ``"opened"``.
    observation : str
        ``fired``, ``passed``, ``fired:P,passed:Q``; ``failure``, ``success``,
        ``unknown``; ``""`` for the opening.
    """

    step: int
    time: pd.Timestamp
    kind: str
    finding: str
    observation: str


@dataclass(frozen=True, slots=True)
class TurningPoint:
    """A finding after which the top location changed.

    Attributes
    ----------
    step : int
    time : pandas.Timestamp
    finding, observation : str
    before, after : (str, str)
        Top location (component, fault mode) before and after.
    p_before, p_after : float
        Their probabilities just after the finding.
    """

    step: int
    time: pd.Timestamp
    finding: str
    observation: str
    before: tuple[str, str]
    after: tuple[str, str]
    p_before: float
    p_after: float


@dataclass(frozen=True, slots=True)
class ActionReview:
    """One recovery attempt against what the model recommended at that moment.

    Attributes
    ----------
    step : int
        The timeline step of the attempt's outcome.
    time : pandas.Timestamp
    action, target, outcome : str
        What was done and how it went.
    p_success : float
        ``P(R | D, a)`` of the action taken, from what was known just before.
    rank : int
        Its rank among the actions not yet tried (1 = the recommended one).
    recommended_action, recommended_target : str or None
    p_success_recommended : float
    plan_step : str
        The check-or-act plan's next step at that moment (``check SYMPTOM``,
        ``ACTION TARGET`` or ``escalate``).
    """

    step: int
    time: pd.Timestamp
    action: str
    target: str
    outcome: str
    p_success: float
    rank: int
    recommended_action: str | None
    recommended_target: str | None
    p_success_recommended: float
    plan_step: str

    @property
    def followed(self) -> bool:
        """Whether the action taken was the recommended one."""
        return (self.action, self.target) == (self.recommended_action, self.recommended_target)


@dataclass(frozen=True, slots=True)
class Timeline:
    """The replay of one incident (see the module docstring).

    Attributes
    ----------
    incident_id : str
    opened : pandas.Timestamp
    events : tuple of TimelineEvent
        ``events[s]`` is step ``s``; ``events[0]`` the opening.
    locations : tuple of (str, str)
        Every (component, fault mode), in declaration order.
    posterior : numpy.ndarray
        Read-only ``(n_steps, n_locations)``: ``P(F_c = m | findings up to step s)``.
    components : tuple of str
    p_faulty : numpy.ndarray
        Read-only ``(n_steps, n_components)``: ``P(F_c != ok | findings up to step s)``.
    true_cause : (str, str or None) or None
        The confirmed root cause (fault mode None when only the component is known).
    tops : tuple of (str, str)
        The top location per step. A top location keeps its place while it is
        within a relative 1e-9 of the maximum (float noise does not flip it);
        otherwise the first maximum in declaration order.
    turning_points : tuple of TurningPoint
    actions : tuple of ActionReview
    """

    incident_id: str
    opened: pd.Timestamp
    events: tuple[TimelineEvent, ...]
    locations: tuple[tuple[str, str], ...]
    posterior: np.ndarray
    components: tuple[str, ...]
    p_faulty: np.ndarray
    true_cause: tuple[str, str | None] | None
    tops: tuple[tuple[str, str], ...]
    turning_points: tuple[TurningPoint, ...]
    actions: tuple[ActionReview, ...]

    @property
    def n_steps(self) -> int:
        return len(self.events)

    @property
    def times(self) -> tuple[pd.Timestamp, ...]:
        return tuple(e.time for e in self.events)

    @property
    def minutes(self) -> np.ndarray:
        """Minutes since the opening, per step."""
        return np.array([(e.time - self.opened).total_seconds() / 60.0 for e in self.events])

    def top(self, step: int = -1) -> tuple[str, str]:
        """The top location at ``step`` (see :attr:`tops`)."""
        return self.tops[step]

    def rank_of_truth(self) -> np.ndarray | None:
        """Rank of the true cause per step (1 = top), or None without a known cause.

        Rank = 1 + the number of candidates with a higher probability (by more
        than a relative 1e-9), among locations (or components, when only the
        component is known).
        """
        found = self._truth()
        if found is None:
            return None
        m, col = found
        return 1 + (m > m[:, [col]] * (1 + _REL)).sum(axis=1)

    def _truth(self) -> tuple[np.ndarray, int] | None:
        if self.true_cause is None:
            return None
        comp, mode = self.true_cause
        if mode is None:
            return self.p_faulty, self.components.index(comp)
        return self.posterior, self.locations.index((comp, mode))

    @property
    def knew_at_step(self) -> int | None:
        """First step from which the true cause stays strictly top-1 to the end; None if never (or no known cause)."""
        ranks = self._top1()
        if ranks is None or not ranks[-1]:
            return None
        s = len(ranks) - 1
        while s > 0 and ranks[s - 1]:
            s -= 1
        return s

    @property
    def knew_at(self) -> pd.Timestamp | None:
        """The time of :attr:`knew_at_step`."""
        s = self.knew_at_step
        return None if s is None else self.events[s].time

    def _top1(self) -> np.ndarray | None:
        """Per step: the true cause beats every other candidate by more than a relative 1e-9."""
        found = self._truth()
        if found is None:
            return None
        m, col = found
        others = np.delete(m, col, axis=1)
        best_other = others.max(axis=1) if others.shape[1] else np.zeros(len(m))
        return m[:, col] > best_other * (1 + _REL)

    def tracked(self, k: int = 5) -> tuple[tuple[str, str], ...]:
        """Locations worth plotting: every step's top-1, the final top ``k`` and the true cause, by final probability."""
        chosen = set(self.tops)
        final = self.posterior[-1]
        chosen |= {self.locations[int(i)] for i in np.argsort(-final, kind="stable")[:k]}
        if self.true_cause is not None and self.true_cause[1] is not None:
            chosen.add((self.true_cause[0], self.true_cause[1]))
        index = {loc: i for i, loc in enumerate(self.locations)}
        return tuple(sorted(chosen, key=lambda loc: (-final[index[loc]], index[loc])))

    def to_frame(self) -> pd.DataFrame:
        """One row per step: ``step``, ``time``, ``minutes``, ``kind``, ``finding``,
        ``observation``, ``top_component``, ``top_fault_mode``, ``p_top`` and
        ``rank_of_truth`` (NA without a known cause)."""
        index = {loc: i for i, loc in enumerate(self.locations)}
        top = np.array([index[t] for t in self.tops], dtype=np.int64)
        ranks = self.rank_of_truth()
        return pd.DataFrame(
            {
                "step": [e.step for e in self.events],
                "time": [e.time for e in self.events],
                "minutes": self.minutes,
                "kind": [e.kind for e in self.events],
                "finding": [e.finding for e in self.events],
                "observation": [e.observation for e in self.events],
                "top_component": [self.locations[i][0] for i in top],
                "top_fault_mode": [self.locations[i][1] for i in top],
                "p_top": self.posterior[np.arange(len(top)), top],
                "rank_of_truth": pd.array(ranks if ranks is not None else [None] * len(top), dtype="Int64"),
            }
        )


def belief_timeline(
    model: Topology | Network,
    incident: Incident,
    *,
    escalation_cost: float | None = None,
    engine: Any = "auto",
) -> Timeline:
    """Replay an incident's findings in time order (see the module docstring).

    Parameters
    ----------
    model : Topology or Network
    incident : Incident
        One record of an incident log (``IncidentFrame.records()``).
    escalation_cost : float, optional
        Passed to the check-or-act plan (default
        :data:`diagnosis.postmortem.planning.ESCALATION_COST`).
    engine : str or engine, default "auto"

    Returns
    -------
    Timeline

    Raises
    ------
    IncidentLogError
        When the incident belongs to another topology.
    EvidenceError
        Unknown symptom or action, or findings of probability 0.

    Examples
    --------
    >>> from diagnosis import bundled_topology, load_topology, simulate
    >>> topo = load_topology(bundled_topology("webshop"))
    >>> incident = next(simulate(topo, 1, rng=5).records())
    >>> tl = belief_timeline(topo, incident)
    >>> tl.events[0].kind, tl.n_steps == 1 + len(incident.observations) + len(incident.actions)
    ('opened', True)
    """
    from diagnosis.postmortem.planning import ESCALATION_COST, _by_success, _check_cost, _Node, _Planner

    ctx = model if isinstance(model, Context) else Context(model, engine)
    if incident.topology != ctx.topology.name:
        raise IncidentLogError(
            f"incident {incident.id!r} is on topology {incident.topology!r}, not {ctx.topology.name!r}"
        )
    opened = _utc(incident.opened)
    findings = _ordered_findings(incident, opened)
    states = [BeliefState({}, {})]
    for f in findings:
        states.append(f.apply(ctx, states[-1]))
    marg = ctx.query(states)
    post = ctx.location_matrix(marg)
    p_faulty = np.stack([1.0 - marg[fv][:, 0] for fv in ctx.fault_vars], axis=1)
    locations = ctx.locations
    events = [TimelineEvent(0, opened, "opened", "opened", "")]
    for s, f in enumerate(findings, start=1):
        events.append(TimelineEvent(s, f.time, f.kind, f.label, f.observation))

    top = _sticky_tops(post)
    turning = []
    for s in range(1, len(states)):
        if top[s] != top[s - 1]:
            turning.append(
                TurningPoint(s, events[s].time, events[s].finding, events[s].observation, locations[top[s - 1]],
                             locations[top[s]], float(post[s, top[s - 1]]), float(post[s, top[s]]))
            )  # fmt: skip

    # Recommended against taken: decisions from the state just before each attempt.
    reviews = []
    attempts = [(s, f) for s, f in enumerate(findings, start=1) if f.kind == "action"]
    if attempts:
        planner = _Planner(ctx, _check_cost(ESCALATION_COST if escalation_cost is None else escalation_cost), 10**6)
        nodes, tried = [], set()
        for s, f in attempts:
            nodes.append(_Node(states[s - 1], frozenset(tried), 0))
            tried.add(ctx.acts.index(f.name, f.target))
        plan_steps = planner.decide(nodes, "plan")
        planner.declare()
        p = ctx.acts.expected_success(marg)
        cost = ctx.acts.cost
        for (s, f), node, step in zip(attempts, nodes, plan_steps):
            j = ctx.acts.index(f.name, f.target)
            ps = p[s - 1]
            untried = [i for i in range(len(ctx.acts.actions)) if i not in node.tried]
            order = _by_success(ps, cost, untried)
            best = order[0] if order else None
            rank = 1 + sum(1 for i in untried if ps[i] > ps[j])
            reviews.append(
                ActionReview(
                    step=s, time=f.time, action=f.name, target=f.target, outcome=f.value,
                    p_success=float(ps[j]), rank=rank,
                    recommended_action=None if best is None else ctx.acts.actions[best].name,
                    recommended_target=None if best is None else ctx.acts.actions[best].component,
                    p_success_recommended=float(ps[best]) if best is not None else 0.0,
                    plan_step=step.describe(),
                )
            )  # fmt: skip
    post.setflags(write=False)
    p_faulty.setflags(write=False)
    cause = None
    if incident.cause_component is not None:
        cause = (incident.cause_component, incident.cause_fault_mode)
    return Timeline(
        incident_id=incident.id,
        opened=opened,
        events=tuple(events),
        locations=locations,
        posterior=post,
        components=tuple(c.name for c in ctx.components),
        p_faulty=p_faulty,
        true_cause=cause,
        tops=tuple(locations[i] for i in top),
        turning_points=tuple(turning),
        actions=tuple(reviews),
    )


def _sticky_tops(post: np.ndarray) -> np.ndarray:
    """Top location per step; the previous top stays while within a relative 1e-9 of the maximum."""
    top = np.empty(len(post), dtype=np.int64)
    for s, row in enumerate(post):
        best = int(np.argmax(row))
        if s and row[top[s - 1]] >= row[best] * (1 - _REL):
            best = int(top[s - 1])
        top[s] = best
    return top


def _utc(t) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _ordered_findings(incident: Incident, opened: pd.Timestamp) -> list[Finding]:
    """Observations then actions, each with a time (missing -> opened), stably sorted by time."""
    obs = {}
    for o in incident.observations:
        obs[o.symptom] = {"fired": o.p_fired, "passed": o.p_passed} if o.value == "soft" else o.value
    sym = findings_from(obs)
    times = {o.symptom: o.time for o in incident.observations}
    items: list[Finding] = []
    for f in sym:
        t = times.get(f.name)
        items.append(
            Finding(f.kind, f.name, f.value, f.target, f.likelihood, opened if t is None or pd.isna(t) else _utc(t))
        )
    for f in findings_from(None, incident.actions):
        t = f.time
        items.append(
            Finding(f.kind, f.name, f.value, f.target, f.likelihood, opened if t is None or pd.isna(t) else _utc(t))
        )
    # Evidence(...) sorts observations by name; restore record order before the stable time sort.
    record = {o.symptom: i for i, o in enumerate(incident.observations)}
    sym_items = sorted((f for f in items if f.kind == "symptom"), key=lambda f: record[f.name])
    act_items = [f for f in items if f.kind == "action"]
    ordered = sym_items + act_items
    return sorted(ordered, key=lambda f: f.time)  # stable: ties keep observations first, record order
