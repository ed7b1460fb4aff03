"""Recovery: the expected success of each action, and the choice among them.

For an action ``a`` on target component ``t`` with per-mode success
probabilities ``P(R | F_t = m, a)``::

    P(R | D, a) = sum_m P(R | F_t = m, a) * P(F_t = m | D)

where ``P(F_t = m | D)`` is the posterior of the target's fault variable. An
action only repairs faults at its own target, and ``P(R | F_t = ok, a) = 0``:
restarting a healthy service resolves nothing. The recommended action
maximises ``P(R | D, a)``; ties go to the lower cost. ``success_per_cost`` is
``P(R | D, a) / cost`` (infinite for a free action with positive success).
See ``docs/model.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from diagnosis.model.topology import Topology

__all__ = ["ActionScore", "choose_action", "score_actions"]


@dataclass(frozen=True, slots=True)
class ActionScore:
    """An action on a target with its expected success under the posterior.

    Attributes
    ----------
    action : str
    target : str
        The component acted on.
    expected_success : float
        ``P(R | D, a)``.
    cost : float
    """

    action: str
    target: str
    expected_success: float
    cost: float

    @property
    def success_per_cost(self) -> float:
        """Expected success per unit of cost."""
        if self.cost > 0:
            return self.expected_success / self.cost
        return math.inf if self.expected_success > 0 else 0.0


def score_actions(topology: Topology, posteriors: Mapping[str, Mapping[str, float]]) -> tuple[ActionScore, ...]:
    """Expected success of every action, best first.

    Parameters
    ----------
    topology : Topology
    posteriors : Mapping[str, Mapping[str, float]]
        Component -> fault-variable state -> posterior probability.

    Returns
    -------
    tuple of ActionScore
        Sorted by expected success (descending), then cost (ascending), then
        declaration order.

    Examples
    --------
    >>> from diagnosis import bundled_topology, load_topology
    >>> topo = load_topology(bundled_topology("webshop"))
    >>> post = {c: {"ok": 1.0} for c in topo.component_names}
    >>> post["db"] = {"ok": 0.5, "down": 0.5, "slow_queries": 0.0, "disk_full": 0.0, "inconsistency": 0.0}
    >>> best = score_actions(topo, post)[0]
    >>> best.action, best.target, best.expected_success
    ('failover', 'db', 0.45)
    """
    scored = []
    for order, action in enumerate(topology.actions):
        post = posteriors.get(action.component)
        if post is None:
            continue
        p = math.fsum(p_success * post.get(mode, 0.0) for mode, p_success in action.success.items())
        scored.append((order, ActionScore(action.name, action.component, p, action.cost)))
    scored.sort(key=lambda item: (-item[1].expected_success, item[1].cost, item[0]))
    return tuple(s for _, s in scored)


def choose_action(scores: tuple[ActionScore, ...] | list[ActionScore]) -> ActionScore | None:
    """The action with the highest expected success; ties go to the lower cost.

    Returns ``None`` when there are no actions.
    """
    best = None
    for s in scores:
        if best is None or (s.expected_success, -s.cost) > (best.expected_success, -best.cost):
            best = s
    return best
