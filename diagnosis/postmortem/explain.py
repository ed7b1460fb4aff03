"""Why the model believes what it believes.

:func:`explain` takes the evidence of an incident (and, optionally, the
outcomes of the recovery actions tried) and returns an :class:`Explanation`:

* **evidence contributions** -- for each top hypothesis ``H = (F_c = m)``
  and each finding ``o_i`` (an observed symptom or an action outcome), its
  log-likelihood ratio against the alternatives given everything else::

      LLR_i = log P(o_i | H, D_-i) / P(o_i | not H, D_-i)
            = logit P(H | D) - logit P(H | D_-i)

  where ``D_-i`` is the evidence without ``o_i``: how much ``o_i``, added
  last, moved the odds of ``H`` (natural logs; > 0 supports ``H``). The
  total ``log_bayes_factor = logit P(H | D) - logit P(H)`` is what all the
  evidence did together; the contributions add up to it exactly only when
  the findings are independent given ``H``;
* **propagation paths** -- for each fired symptom ``H`` explains, the
  strongest dependency path from ``c`` to the symptom's component (impairment
  flows from a dependency to what depends on it) or the fault mode raising
  the detector directly, with the path's strength ``ι(c, m) · Π s · σ`` and
  the exact ``P(symptom fired | H alone)`` (every other component ok);
* **unexplained symptoms** -- fired symptoms with no such path: ``H`` alone
  raises them only through a false alarm;
* **what-ifs** -- each finding flipped (fired <-> passed, a soft score's
  likelihood swapped, failure <-> success), one at a time: the new top
  location, and whether it changes.

Every quantity comes from one batched engine query (the full evidence, each
leave-one-out and each flip are the cases).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diagnosis.exceptions import ParameterError
from diagnosis.localization import Diagnosis
from diagnosis.model.evidence import Evidence
from diagnosis.model.network import Network
from diagnosis.model.topology import IMPAIRED, Topology
from diagnosis.postmortem.session import Context, Finding, diagnosis_from, findings_from, finite, logit, state_of

__all__ = [
    "Contribution",
    "Explanation",
    "HypothesisExplanation",
    "PropagationPath",
    "WhatIf",
    "explain",
    "propagation_paths",
]


@dataclass(frozen=True, slots=True)
class Contribution:
    """One finding's weight of evidence for a hypothesis.

    Attributes
    ----------
    finding : str
        The symptom (``component.detector``) or ``action target``.
    observation : str
        ``fired``, ``passed``, ``fired:P,passed:Q``, ``failure``, ``success``.
    log_likelihood_ratio : float
        ``log P(o | H, rest) / P(o | not H, rest)`` (natural log; > 0 supports H).
    """

    finding: str
    observation: str
    log_likelihood_ratio: float


@dataclass(frozen=True, slots=True)
class PropagationPath:
    """How a fault reaches a symptom.

    Attributes
    ----------
    symptom : str
    components : tuple of str
        From the faulty component to the symptom's component (one element when
        the symptom is on the faulty component itself).
    trigger : str
        The detector's trigger the path ends in: ``impaired`` or the fault mode.
    strength : float
        ``ι(c, m) · Π s(edges) · σ(d, impaired)`` along the path, or ``σ(d, m)``
        for a fault mode raising the detector directly: the probability that
        the fault raises the symptom along this path alone.
    p_fired : float
        Exact ``P(symptom fired | F_c = m, every other component ok)``, all paths,
        the leak and the false alarm included.
    """

    symptom: str
    components: tuple[str, ...]
    trigger: str
    strength: float
    p_fired: float

    def describe(self) -> str:
        """``"db (slow_queries) -> backend -> frontend: frontend.latency"``-style text."""
        chain = " -> ".join(self.components)
        return f"{chain} [{self.trigger}] => {self.symptom}"


@dataclass(frozen=True, slots=True)
class HypothesisExplanation:
    """One hypothesis ``F_component = fault_mode`` and why it is believed.

    Attributes
    ----------
    component, fault_mode : str
    probability, prior : float
        Posterior ``P(H | D)`` and prior ``P(H)``.
    log_bayes_factor : float
        ``logit P(H | D) - logit P(H)``: all the evidence together.
    contributions : tuple of Contribution
        Every finding, largest ``|LLR|`` first.
    paths : tuple of PropagationPath
        The fired symptoms ``H`` explains, strongest path each.
    unexplained : tuple of str
        Fired symptoms ``H`` does not explain (no path).
    contradicting : tuple of str
        Symptoms observed ``passed`` although ``H`` alone would raise them with
        probability >= 0.5.
    """

    component: str
    fault_mode: str
    probability: float
    prior: float
    log_bayes_factor: float
    contributions: tuple[Contribution, ...]
    paths: tuple[PropagationPath, ...]
    unexplained: tuple[str, ...]
    contradicting: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WhatIf:
    """The answer had one finding come out the other way.

    Attributes
    ----------
    finding, observation : str
        The finding and what was actually observed.
    flipped : str
        The opposite observation assumed.
    top_component, top_fault_mode : str
        The top location under the flipped evidence.
    top_probability : float
    p_current_top : float
        The probability the flip leaves to the actual top location.
    changes_top : bool
    """

    finding: str
    observation: str
    flipped: str
    top_component: str
    top_fault_mode: str
    top_probability: float
    p_current_top: float
    changes_top: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why the model believes what it believes (see the module docstring).

    Attributes
    ----------
    diagnosis : Diagnosis
        The posterior the explanation is about.
    hypotheses : tuple of HypothesisExplanation
        The top locations, most probable first.
    what_ifs : tuple of WhatIf
        One per finding that can be flipped; those changing the top answer first.
    """

    diagnosis: Diagnosis
    hypotheses: tuple[HypothesisExplanation, ...]
    what_ifs: tuple[WhatIf, ...]

    @property
    def decisive(self) -> tuple[WhatIf, ...]:
        """The findings that, flipped alone, would change the top answer."""
        return tuple(w for w in self.what_ifs if w.changes_top)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (non-finite numbers as None)."""
        return {
            "locations": [
                {"component": loc.component, "fault_mode": loc.fault_mode, "probability": loc.probability}
                for loc in self.diagnosis.locations
            ],
            "hypotheses": [
                {
                    "component": h.component,
                    "fault_mode": h.fault_mode,
                    "probability": h.probability,
                    "prior": h.prior,
                    "log_bayes_factor": finite(h.log_bayes_factor),
                    "contributions": [
                        {"finding": c.finding, "observation": c.observation, "log_likelihood_ratio": finite(c.log_likelihood_ratio)}
                        for c in h.contributions
                    ],
                    "paths": [
                        {"symptom": p.symptom, "components": list(p.components), "trigger": p.trigger,
                         "strength": p.strength, "p_fired": p.p_fired}
                        for p in h.paths
                    ],
                    "unexplained": list(h.unexplained),
                    "contradicting": list(h.contradicting),
                }
                for h in self.hypotheses
            ],
            "what_ifs": [
                {"finding": w.finding, "observation": w.observation, "flipped": w.flipped,
                 "top_component": w.top_component, "top_fault_mode": w.top_fault_mode,
                 "top_probability": w.top_probability, "p_current_top": w.p_current_top, "changes_top": w.changes_top}
                for w in self.what_ifs
            ],
        }  # fmt: skip


def explain(
    model: Topology | Network,
    evidence: Evidence | Mapping[str, Any] | None = None,
    *,
    actions: Sequence[Any] = (),
    n_hypotheses: int = 3,
    engine: Any = "auto",
) -> Explanation:
    """Explain the diagnosis of one incident.

    Parameters
    ----------
    model : Topology or Network
    evidence : Evidence or mapping symptom -> observation, optional
        What was observed (as :func:`diagnosis.diagnose` takes it).
    actions : sequence, optional
        Recovery attempts and their outcomes: :class:`~diagnosis.logs.schema.ActionAttempt`
        values or ``(action, target, outcome)`` tuples, ``outcome`` one of
        ``failure``, ``success``, ``unknown``. A failed action multiplies the
        posterior by ``1 - P(R | F_t = m, a)`` (see ``docs/post_mortem.md``).
    n_hypotheses : int, default 3
        How many top locations to explain.
    engine : str or engine, default "auto"

    Returns
    -------
    Explanation

    Raises
    ------
    EvidenceError
        Unknown symptom, action or outcome, or evidence of probability 0.

    Examples
    --------
    >>> from diagnosis import bundled_topology, load_topology
    >>> topo = load_topology(bundled_topology("webshop"))
    >>> ex = explain(topo, {"frontend.latency": "fired", "db.latency": "fired", "db.health_check": "passed"})
    >>> h = ex.hypotheses[0]
    >>> h.component, h.fault_mode
    ('db', 'slow_queries')
    >>> [c.finding for c in h.contributions][:1]
    ['db.latency']
    >>> [p.components for p in h.paths if p.symptom == "frontend.latency"]
    [('db', 'backend', 'frontend')]
    """
    if not isinstance(n_hypotheses, (int, np.integer)) or isinstance(n_hypotheses, bool) or n_hypotheses < 1:
        raise ParameterError(
            f"The 'n_hypotheses' parameter of explain must be an int >= 1. Got {n_hypotheses!r} instead."
        )
    ctx = model if isinstance(model, Context) else Context(model, engine)
    findings = findings_from(evidence, actions)
    return _explain(ctx, findings, int(n_hypotheses))


def _explain(ctx: Context, findings: Sequence[Finding], n_hypotheses: int) -> Explanation:
    full = state_of(ctx, findings)
    n = len(findings)
    flips = [f.flipped() for f in findings]
    states = [full]
    states += [state_of(ctx, [g for j, g in enumerate(findings) if j != i]) for i in range(n)]
    flip_rows = {}
    for i, fl in enumerate(flips):
        if fl is not None:
            flip_rows[i] = len(states)
            states.append(state_of(ctx, [fl if j == i else g for j, g in enumerate(findings)]))
    marg = ctx.query(states)
    diag = diagnosis_from(ctx, full, marg, 0)
    loc = ctx.location_matrix(marg)  # (B, n_locations)
    index = {pair: k for k, pair in enumerate(ctx.locations)}
    prior = ctx.prior_locations()

    top = diag.locations[:n_hypotheses]
    hyp_cols = [index[(h.component, h.fault_mode)] for h in top]
    observed = {f.name: f for f in findings if f.kind == "symptom"}
    p_alone = _p_fired_alone(ctx, [(h.component, h.fault_mode) for h in top], list(observed))
    hypotheses = []
    for h, col, alone in zip(top, hyp_cols, p_alone):
        lf = logit(loc[0, col])
        contributions = [
            Contribution(f.label, f.observation, float(lf - logit(loc[1 + i, col]))) for i, f in enumerate(findings)
        ]
        contributions.sort(key=lambda c: -abs(c.log_likelihood_ratio))
        paths, unexplained, contradicting = [], [], []
        all_paths = propagation_paths(ctx.network, h.component, h.fault_mode)
        for symptom, f in observed.items():
            fired = f.value == "fired" or (f.value == "soft" and f.likelihood[1] > f.likelihood[0])
            passed = f.value == "passed" or (f.value == "soft" and f.likelihood[1] < f.likelihood[0])
            path = all_paths.get(symptom)
            if fired:
                if path is None:
                    unexplained.append(symptom)
                else:
                    paths.append(PropagationPath(symptom, path[0], path[1], path[2], float(alone[symptom])))
            elif passed and path is not None and alone[symptom] >= 0.5:
                contradicting.append(symptom)
        paths.sort(key=lambda p: (-p.strength, p.symptom))
        hypotheses.append(
            HypothesisExplanation(
                component=h.component,
                fault_mode=h.fault_mode,
                probability=h.probability,
                prior=float(prior[col]),
                log_bayes_factor=float(lf - logit(prior[col])),
                contributions=tuple(contributions),
                paths=tuple(paths),
                unexplained=tuple(sorted(unexplained)),
                contradicting=tuple(sorted(contradicting)),
            )
        )

    what_ifs = []
    if top:
        current = index[(top[0].component, top[0].fault_mode)]
        for i, row in flip_rows.items():
            probs = loc[row]
            best = int(np.argmax(probs))  # first maximum: declaration order on ties, as diagnose
            comp, mode = ctx.locations[best]
            what_ifs.append(
                WhatIf(findings[i].label, findings[i].observation, flips[i].observation, comp, mode,
                       float(probs[best]), float(probs[current]), best != current)
            )  # fmt: skip
    what_ifs.sort(key=lambda w: (not w.changes_top, w.p_current_top))
    return Explanation(diag, tuple(hypotheses), tuple(what_ifs))


def propagation_paths(
    network: Network, component: str, fault_mode: str
) -> dict[str, tuple[tuple[str, ...], str, float]]:
    """The strongest way a fault raises each symptom it can raise.

    Parameters
    ----------
    network : Network
    component, fault_mode : str
        The fault ``F_component = fault_mode``.

    Returns
    -------
    dict
        Symptom -> ``(components, trigger, strength)`` for every symptom with a
        path of positive strength (see :class:`PropagationPath`); symptoms the
        fault cannot raise are absent.

    Examples
    --------
    >>> from diagnosis import build_network, bundled_topology, load_topology
    >>> net = build_network(load_topology(bundled_topology("webshop")))
    >>> comps, trigger, strength = propagation_paths(net, "db-host", "down")["frontend.latency"]
    >>> comps, trigger, round(strength, 4)  # impact 1 x host 0.9 x datastore 0.85 x call 0.7 x sensitivity 0.8
    (('db-host', 'db', 'backend', 'frontend'), 'impaired', 0.4284)
    """
    topo = network.topology
    comp = topo.component(component)
    impact = comp.fault_mode(fault_mode).impact  # TopologyError for an unknown mode
    # Max-product paths from `component` along "is depended on by" edges (a DAG): best[x] = (strength, path).
    best: dict[str, tuple[float, tuple[str, ...]]] = {component: (impact, (component,))}
    users: dict[str, list] = {}
    for d in topo.dependencies:
        users.setdefault(d.target, []).append(d)
    order = _upward_order(topo, component)
    for name in order:
        if name not in best:
            continue
        s, path = best[name]
        for d in users.get(name, ()):
            cand = s * d.strength
            if cand > 0 and (d.source not in best or cand > best[d.source][0]):
                best[d.source] = (cand, (*path, d.source))
    out = {}
    for c in topo.components:
        for det in c.detectors:
            options = []
            if c.name == component and fault_mode in det.sensitivity and det.sensitivity[fault_mode] > 0:
                options.append((det.sensitivity[fault_mode], (component,), fault_mode))
            if IMPAIRED in det.sensitivity and c.name in best:
                s, path = best[c.name]
                options.append((s * det.sensitivity[IMPAIRED], path, IMPAIRED))
            options = [o for o in options if o[0] > 0]
            if options:
                s, path, trigger = max(options, key=lambda o: o[0])
                out[det.symptom] = (path, trigger, float(s))
    return out


def _upward_order(topo: Topology, start: str) -> list[str]:
    """Components reachable from ``start`` against the dependency direction, in topological order."""
    order = topo.dependency_order()  # dependencies before dependents
    return order[order.index(start) :]


def _p_fired_alone(
    ctx: Context, hypotheses: Sequence[tuple[str, str]], symptoms: Sequence[str] | None = None
) -> list[dict[str, float]]:
    """Exact ``P(symptom fired | F_c = m, every other component ok)`` for each hypothesis.

    Only for ``symptoms`` when given (the others are then barren in the query: on
    Train Ticket 3 hypotheses over the 3 observed symptoms instead of all 444 take
    a fraction of the 2.8 s).
    """
    if not hypotheses:
        return []
    from diagnosis.postmortem.session import BeliefState

    states = []
    for comp, mode in hypotheses:
        hard = {}
        for c, fv in zip(ctx.components, ctx.fault_vars):
            if c.name == comp:
                hard[fv] = ctx.fault_states[fv].index(mode)
            elif ctx.prior[fv][0] > 0:
                hard[fv] = 0
        states.append(BeliefState(hard, {}))
    wanted = ctx.detectors if symptoms is None else [d for d in ctx.detectors if d.symptom in set(symptoms)]
    svs = [ctx.network.symptom_variable[d.symptom] for d in wanted]
    if not svs:
        return [{} for _ in hypotheses]
    marg = ctx.query(states, targets=svs)
    fired = 1  # SYMPTOM_STATES = ("passed", "fired")
    return [{d.symptom: float(marg[sv][b, fired]) for d, sv in zip(wanted, svs)} for b in range(len(hypotheses))]
