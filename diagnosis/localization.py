"""Localization: from evidence to the posterior over fault locations, and the action to take.

:func:`diagnose` is the main entry point. It returns a :class:`Diagnosis`: the
posterior of every component's fault variable, the ranked fault locations
(component, fault mode) and the actions ranked by expected success.

The locations are posterior *marginals* ``P(F_c = m | D)``: faults at different
components are not exclusive in the model (two things can break at once), so
the list need not sum to 1; each component's posterior (``ok`` plus its fault
modes) does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from diagnosis.inference import engine_label, make_engine
from diagnosis.model.evidence import Evidence
from diagnosis.model.network import FAULT_OK, Network, build_network
from diagnosis.model.topology import Topology
from diagnosis.recovery import ActionScore, score_actions

__all__ = ["Diagnosis", "Location", "diagnose"]


@dataclass(frozen=True, slots=True)
class Location:
    """A candidate fault location and its posterior probability.

    Attributes
    ----------
    component, fault_mode : str
    probability : float
        ``P(F_component = fault_mode | evidence)``.
    variable, state : str
        The network variable and state this is the posterior of, as written
        by ``diagnosis export``.
    """

    component: str
    fault_mode: str
    probability: float
    variable: str
    state: str


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The answer for one incident.

    Attributes
    ----------
    evidence : Mapping[str, str]
        Network variable -> state, the hard evidence applied.
    soft_evidence : Mapping[str, tuple of float]
        Network variable -> likelihood vector, the soft evidence applied.
    posteriors : Mapping[str, Mapping[str, float]]
        Component -> fault state (``ok`` and its modes) -> probability.
    locations : tuple of Location
        Every (component, fault mode), most probable first.
    actions : tuple of ActionScore
        Every action, best expected success first (ties: lower cost).
    engine : str
        The engine that computed the posteriors.
    """

    evidence: Mapping[str, str]
    soft_evidence: Mapping[str, tuple[float, ...]]
    posteriors: Mapping[str, Mapping[str, float]]
    locations: tuple[Location, ...]
    actions: tuple[ActionScore, ...]
    engine: str

    @property
    def recommended(self) -> ActionScore | None:
        """The action to take: the highest expected success, ties to the lower cost."""
        return self.actions[0] if self.actions else None

    def top(self, k: int = 5) -> tuple[Location, ...]:
        """The ``k`` most probable locations."""
        return self.locations[:k]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping: ``evidence``, ``soft_evidence``, ``locations``, ``actions``,
        ``posteriors`` and ``engine`` (see the README for the contract)."""
        return {
            "evidence": dict(self.evidence),
            "soft_evidence": {k: list(v) for k, v in self.soft_evidence.items()},
            "locations": [
                {
                    "component": loc.component,
                    "fault_mode": loc.fault_mode,
                    "probability": loc.probability,
                    "variable": loc.variable,
                    "state": loc.state,
                }
                for loc in self.locations
            ],
            "actions": [
                {
                    "action": a.action,
                    "target": a.target,
                    "expected_success": a.expected_success,
                    "cost": a.cost,
                    "success_per_cost": a.success_per_cost if np.isfinite(a.success_per_cost) else None,
                }
                for a in self.actions
            ],
            "posteriors": {c: dict(p) for c, p in self.posteriors.items()},
            "engine": self.engine,
        }


def diagnose(
    model: Topology | Network,
    evidence: Evidence | Mapping[str, Any] | None = None,
    *,
    engine: Any = "auto",
) -> Diagnosis:
    """Posterior fault locations and recovery actions for one incident.

    Parameters
    ----------
    model : Topology or Network
        The platform. A Topology is built into a network first; pass a
        Network (and a prepared engine) to diagnose many incidents.
    evidence : Evidence or mapping symptom -> observation, optional
        What was observed. Symptoms left out are not observed.
    engine : str or engine, default "auto"
        An engine name for :func:`diagnosis.inference.make_engine` (the compiled exact engine when
        it fits in memory), or an engine already built for this network.

    Returns
    -------
    Diagnosis

    Raises
    ------
    EvidenceError
        For an unknown symptom or observation, or evidence of probability 0.

    Examples
    --------
    >>> from diagnosis import bundled_topology, load_topology, diagnose
    >>> topo = load_topology(bundled_topology("webshop"))
    >>> d = diagnose(topo, {"frontend.latency": "fired", "db.latency": "fired",
    ...                     "db-host.cpu": "passed", "db-host.disk_usage": "passed"})
    >>> top = d.locations[0]
    >>> (top.component, top.fault_mode), round(top.probability, 3)
    (('db', 'slow_queries'), 0.371)
    >>> d.recommended.action, d.recommended.target
    ('failover', 'db')
    """
    network = model if isinstance(model, Network) else build_network(model)
    if evidence is None:
        evidence = Evidence({})
    elif not isinstance(evidence, Evidence):
        evidence = Evidence(evidence)
    resolved = evidence.resolve(network)
    eng = make_engine(network, engine) if isinstance(engine, str) else engine

    hard = {var: np.array([network.variable(var).states.index(state)]) for var, state in resolved.hard.items()}
    soft = {var: np.array([lik]) for var, lik in resolved.soft.items()}
    targets = [network.fault_variable[c.name] for c in network.topology.components]
    marginals = eng.query(targets, hard, soft, n_cases=1)

    posteriors: dict[str, Mapping[str, float]] = {}
    locations = []
    for c in network.topology.components:
        var = network.fault_variable[c.name]
        states = network.variable(var).states
        probs = np.asarray(marginals[var][0], dtype=np.float64)
        probs = probs / probs.sum()
        posteriors[c.name] = MappingProxyType({s: float(p) for s, p in zip(states, probs)})
        for s, p in zip(states, probs):
            if s != FAULT_OK:
                locations.append(Location(c.name, s, float(p), var, s))
    # Stable sort: ties keep component then fault-mode declaration order.
    locations.sort(key=lambda loc: -loc.probability)
    return Diagnosis(
        evidence=resolved.hard,
        soft_evidence=resolved.soft,
        posteriors=MappingProxyType(posteriors),
        locations=tuple(locations),
        actions=score_actions(network.topology, posteriors),
        engine=engine_label(eng),
    )
