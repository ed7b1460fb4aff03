"""Which metric or edge signal is evidence for which symptom of the topology.

A :class:`SignalRule` says: samples whose metric name fully matches
``metric`` (a regular expression, case-insensitive) are evidence for the
detector that ``watches`` a kind of signal (``cpu``, ``memory``,
``latency``, ``error_rate``) on a component, and which direction of change
is harmful. For a per-pod metric the component is the pod's; for an edge
``caller->callee`` the rule's ``side`` picks the caller or the callee. The
symptom is the first detector of that component whose ``watches`` is the
rule's (in the default service kind: ``<svc>.cpu``, ``<svc>.memory``,
``<svc>.latency``, ``<svc>.error_rate``). The first matching rule wins.

A topology's ``signals:`` section (``docs/topology.md``) adds rules ahead of
these, replaces one by name, drops one (``enabled: false``) or replaces them
all (``replace_defaults: true``); :func:`rules_for` merges them and is what
``detect`` uses unless you pass ``rules``. A rule that watches ``latency``
never takes a counter or histogram part (names ending in ``_count``,
``_sum``, ``_total``, ``_bucket``).

:data:`DEFAULT_RULES`, the mapping used unless you pass your own:

=====================  ================================================  ============  =========  ========
rule                   metrics                                           symptom       harmful    side
=====================  ================================================  ============  =========  ========
``cpu``                ``CpuUsageRate(%)``, ``container_cpu_usage*``,
                       ``cpu``                                           ``.cpu``      rise       the pod
``memory``             ``MemoryUsage(Mi)``, ``container_memory_*``,
                       ``mem``, ``memory``                               ``.memory``   rise       the pod
``server_latency``     ``PodServerLatencyP90/P95/P99(s)``, ``*server*latency*``,
                       ``*request_duration*``, ``latency-50/90/95/99``,
                       ``latency`` -- never a ``*_count``, ``*_sum``,
                       ``*_total`` or ``*_bucket`` series (a request
                       counter or histogram bucket is not a latency)     ``.latency``  rise       the pod
``entry_latency``      ``LatencyP50..P99(s)`` (Nezha ``front_service``)  ``.latency``  rise       the entry service
``entry_success``      ``SuccessRate(%)``, ``PodSuccessRate(%)``         ``.error_rate``  drop    the service
``error_rate``         ``*error_rate*``, ``*errors_ratio*``              ``.error_rate``  rise    the pod
``edge_latency``       ``edge_latency_*`` (Nezha ``source_50`` /
                       ``destination_50``)                               ``.latency``  rise       the callee
``trace_latency``      ``trace_edge_latency_p50/p90`` (from spans)       ``.latency``  rise       the callee
``trace_errors``       ``trace_edge_error_rate`` (from spans)            ``.error_rate``  rise    the callee
``trace_wire``         ``trace_edge_wire_p50`` (from spans: the
                       caller's span minus the callee's)                 ``.latency``  rise       the caller
=====================  ================================================  ============  =========  ========

Deliberately **not** mapped (listed as unused in the detection report):

* client-side latency of a pod (``PodClientLatency*``): it is its callees'
  latency seen from the caller, already covered by the edge signals, and
  blaming the caller for it would point away from the root cause;
* volumes (``PodWorkload``, syscalls, network bytes, ``trace_edge_calls``):
  they follow the load generator as much as any fault;
* node metrics (``Node*``): they belong to a host component, and these
  topologies declare no hosts.

An edge's latency is the callee's: a slow or delayed callee is what makes
the call slow. The Nezha network-delay faults show why both sides count:
a delay injected into a pod's network raises the latency its callers see
(``source_50``) but not what the pod itself measures (``destination_50``).

**Time on the wire** (``trace_wire``) is the caller's latency: the caller's
span minus the callee's grows when either end is at fault (a delay on the
callee's network or the caller's, a caller too busy to send, a callee too
busy to start serving), so it is observed where both explanations meet --
the caller's latency symptom, which the network also explains by a fault of
any service it calls. Mapped to the callee instead, a busy caller blames
every service it calls (Online Boutique, all windows in one run: AC@1
95.8 % -> 91.7 %, a CPU fault on ``checkoutservice`` put on ``cartservice``;
mapped to the caller: 95.8 %).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from diagnosis.exceptions import DiagnosisError, suggest
from diagnosis.model.topology import Topology
from diagnosis.telemetry.entities import EDGE_SEPARATOR

__all__ = ["COUNTER_SUFFIXES", "DEFAULT_RULES", "SIDES", "SignalRule", "match_rules", "rules_for", "symptom_index"]

#: Metric-name endings of counters and histogram parts: never a latency, whatever a rule's pattern says.
COUNTER_SUFFIXES = ("_count", "_sum", "_total", "_bucket")

#: Which component of an entity a rule blames: the entity's own, or an edge's caller or callee.
SIDES = ("self", "caller", "callee")


@dataclass(frozen=True, slots=True)
class SignalRule:
    """Samples of matching metrics are evidence for one kind of detector.

    Parameters
    ----------
    name : str
        The rule's name: the unit of the null distribution and of the report.
    metric : str
        Regular expression, fully matched against the metric name, case-insensitive.
    watches : str
        The ``watches`` of the topology detector it feeds (``cpu``, ``latency``, ...).
    direction : {1, -1}
        1: a rise is harmful; -1: a drop is.
    side : {"self", "caller", "callee"}
        For an edge entity ``caller->callee``, which end the evidence is about;
        ``self`` rules match only non-edge entities, the others only edges.
    rel_floor : float, default 0.1
        The robust scale is at least this fraction of the baseline median
        (quantised or flat series have a MAD of 0).
    """

    name: str
    metric: str
    watches: str
    direction: int = 1
    side: str = "self"
    rel_floor: float = 0.1

    def __post_init__(self):
        if self.direction not in (1, -1):
            raise DiagnosisError(
                f"signal rule {self.name!r}: direction must be 1 or -1. Got {self.direction!r} instead."
            )
        if self.side not in SIDES:
            raise DiagnosisError(
                f"signal rule {self.name!r}: side must be one of {list(SIDES)}. Got {self.side!r} instead{suggest(self.side, SIDES)}"
            )
        if not (0 <= self.rel_floor < 10):
            raise DiagnosisError(
                f"signal rule {self.name!r}: rel_floor must be in [0, 10). Got {self.rel_floor!r} instead."
            )
        try:
            re.compile(self.metric)
        except re.error as exc:
            raise DiagnosisError(
                f"signal rule {self.name!r}: metric {self.metric!r} is not a valid regular expression: {exc}"
            ) from None

    def matches(self, metric: str) -> bool:
        """Whether ``metric`` feeds this rule (a latency rule never takes a counter)."""
        if self.watches == "latency" and metric.lower().endswith(COUNTER_SUFFIXES):
            return False
        return re.fullmatch(self.metric, metric, flags=re.IGNORECASE) is not None


DEFAULT_RULES: tuple[SignalRule, ...] = (
    SignalRule("cpu", r"CpuUsageRate\(%\)|container_cpu_usage.*|pod_cpu_usage.*|cpu_usage(_rate)?|cpu", "cpu"),
    SignalRule(
        "memory",
        r"MemoryUsage\(Mi\)|container_memory_(working_set|rss|usage).*|pod_memory_usage.*|memory_usage|mem(ory)?",
        "memory",
    ),
    SignalRule(
        "server_latency",
        r"(?!.*_(count|sum|total|bucket)$)(PodServerLatencyP(90|95|99)\(s\)|.*server.*latency.*|.*request_duration.*"
        r"|latency[-_]?(50|90|95|99)|latency)",
        "latency",
    ),
    SignalRule("entry_latency", r"LatencyP(50|90|95|99)\(s\)", "latency"),
    SignalRule("entry_success", r"(Pod)?SuccessRate\(%\)", "error_rate", direction=-1),
    SignalRule("error_rate", r"(?!trace_edge_).*error_rate.*|.*errors?_ratio.*", "error_rate"),
    SignalRule("edge_latency", r"edge_latency_.*", "latency", side="callee"),
    SignalRule("trace_latency", r"trace_edge_latency_p(50|90)", "latency", side="callee"),
    SignalRule("trace_errors", r"trace_edge_error_rate", "error_rate", side="callee"),
    SignalRule("trace_wire", r"trace_edge_wire_p50", "latency", side="caller"),
)


def rules_for(topology: Topology, base: Iterable[SignalRule] = DEFAULT_RULES) -> tuple[SignalRule, ...]:
    """The signal rules ``detect`` uses for ``topology``: its ``signals:`` section merged with ``base``.

    A topology rule named like a ``base`` rule replaces it in place
    (``enabled: false`` drops it); the other topology rules come first, in
    their order, so they win over the defaults (the first matching rule
    wins). With ``replace_defaults: true`` only the topology's rules are used.

    Examples
    --------
    >>> from diagnosis.model.topology import Topology
    >>> topo = Topology.from_dict({"name": "t", "components": [{"name": "a"}], "signals": [
    ...     {"name": "busy", "metric": "busy_ratio", "watches": "cpu"}, {"name": "memory", "enabled": False}]})
    >>> [r.name for r in rules_for(topo)][:3]
    ['busy', 'cpu', 'server_latency']
    """
    base = tuple(base)
    specs = topology.signal_rules
    if not specs and not topology.signals_replace:
        return base
    made = {
        s.name: SignalRule(s.name, s.metric, s.watches, direction=s.direction, side=s.side, rel_floor=s.rel_floor)
        for s in specs
        if s.enabled
    }
    if topology.signals_replace:
        return tuple(made.values())
    disabled = {s.name for s in specs if not s.enabled}
    base_names = {r.name for r in base}
    unknown = sorted(disabled - base_names)
    if unknown:
        raise DiagnosisError(
            f"topology {topology.name!r}: signals rule {unknown[0]!r} is disabled but is not a built-in rule"
            f"{suggest(unknown[0], base_names)}; built-in rules: {sorted(base_names)}"
        )
    new = tuple(r for name, r in made.items() if name not in base_names)
    kept = tuple(made.get(r.name, r) for r in base if r.name not in disabled)
    return new + kept


@lru_cache(maxsize=4096)
def _first_rule(rules: tuple[SignalRule, ...], metric: str, edge: bool) -> int:
    for i, r in enumerate(rules):
        if (r.side == "self") != edge and r.matches(metric):
            return i
    return -1


def match_rules(
    metrics: Iterable[str], entities: Iterable[str], rules: tuple[SignalRule, ...] = DEFAULT_RULES
) -> pd.Series:
    """The index of the first rule matching each (metric, entity) pair, -1 for none.

    Examples
    --------
    >>> match_rules(["CpuUsageRate(%)", "edge_latency_p50_source", "PodWorkload(Ops)"],
    ...             ["cart-7d4f8b9c6d-x2k4z", "frontend->cart", "cart-7d4f8b9c6d-x2k4z"]).tolist()
    [0, 6, -1]
    """
    rules = tuple(rules)
    return pd.Series([_first_rule(rules, m, EDGE_SEPARATOR in e) for m, e in zip(metrics, entities)], dtype="int64")


def symptom_index(topology: Topology) -> Mapping[tuple[str, str], str]:
    """``(component, watches)`` -> symptom name: the first detector of the component watching it."""
    out: dict[tuple[str, str], str] = {}
    for d in topology.detectors:
        out.setdefault((d.component, d.watches), d.symptom)
    return out
