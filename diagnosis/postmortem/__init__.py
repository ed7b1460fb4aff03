"""Post-mortem analysis: why the model believes what it believes, what to check next, what to do.

- :mod:`~diagnosis.postmortem.session`: the belief session every analysis shares
  (one network, one engine, batched what-if queries).
- :mod:`~diagnosis.postmortem.explain`: per-hypothesis weights of evidence,
  propagation paths, what-ifs.
- :mod:`~diagnosis.postmortem.planning`: the next best check and the
  check-or-act recovery plan.
- :mod:`~diagnosis.postmortem.timeline`: an incident replayed in time order.
- :mod:`~diagnosis.postmortem.report`: the HTML and Markdown post-mortem.
"""

from diagnosis.postmortem.explain import Explanation, explain
from diagnosis.postmortem.planning import CheckValue, Plan, compare_policies, next_step, plan_recovery, rank_checks
from diagnosis.postmortem.report import find_incident, post_mortem, write_report
from diagnosis.postmortem.session import BeliefState, Context
from diagnosis.postmortem.timeline import Timeline, belief_timeline

__all__ = [
    "BeliefState",
    "CheckValue",
    "Context",
    "Explanation",
    "Plan",
    "Timeline",
    "belief_timeline",
    "compare_policies",
    "explain",
    "find_incident",
    "next_step",
    "plan_recovery",
    "post_mortem",
    "rank_checks",
    "write_report",
]
