"""The topology spec: components, dependencies, fault modes, detectors and actions.

A :class:`Topology` is an immutable, validated description of a platform. It is
read from YAML (or a plain mapping) by :func:`load_topology` /
:meth:`Topology.from_dict`; every mistake raises :class:`TopologyError` naming
the file, the path inside it and the bad value. The format is documented in
``docs/topology.md``; the defaults by kind live in ``diagnosis/data/defaults.yaml``.
"""

from __future__ import annotations

import copy
import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from diagnosis._validation import yaml_error_text
from diagnosis.exceptions import TopologyError, suggest

__all__ = [
    "COMPONENT_KINDS",
    "DEPENDENCY_TYPES",
    "IMPAIRED",
    "MAX_LOG10_RATIO",
    "Action",
    "AlertRule",
    "Component",
    "Dependency",
    "Detector",
    "FaultMode",
    "Hook",
    "LikelihoodCurve",
    "SignalSpec",
    "Topology",
    "load_topology",
]

#: The trigger name a detector uses to watch a component's impairment.
IMPAIRED = "impaired"
#: Component kinds that have defaults; ``uses`` may only target the datastore kinds.
COMPONENT_KINDS = ("service", "load_balancer", "database", "cache", "queue", "host")
DATASTORE_KINDS = ("database", "cache", "queue")
#: Dependency types: a synchronous call, a datastore use, placement on a host.
DEPENDENCY_TYPES = ("call", "datastore", "host")
CYCLE_POLICIES = ("reject", "break")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
_IDENT_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class FaultMode:
    """One way a component can fail.

    Parameters
    ----------
    name : str
        Identifier (``[a-z][a-z0-9_]*``), unique within the component.
    prior : float
        P(component is in this fault mode) per incident, in [0, 1].
    impact : float
        P(component impaired | this fault mode), in [0, 1].
    """

    name: str
    prior: float
    impact: float = 1.0

    def __post_init__(self):
        _check_probability(self.prior, f"fault mode {self.name!r} prior")
        _check_probability(self.impact, f"fault mode {self.name!r} impact")


@dataclass(frozen=True, slots=True)
class Detector:
    """A monitor or check on one component, and its reliability.

    Parameters
    ----------
    name : str
        Identifier, unique within the component. The symptom is named
        ``"<component>.<name>"``.
    component : str
        The component it watches.
    watches : str
        The signal: ``latency``, ``error_rate``, ``cpu``, ``health_check``, ...
    sensitivity : Mapping[str, float]
        Trigger -> P(fired | that trigger active). A trigger is ``"impaired"``
        (the component's impairment) or one of the component's fault modes.
    false_alarm : float
        P(fired | no trigger active).
    cost : float
        Cost of running the check (used to rank the next check).
    """

    name: str
    component: str
    watches: str
    sensitivity: Mapping[str, float]
    false_alarm: float
    cost: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "sensitivity", _frozen(self.sensitivity))
        for trigger, p in self.sensitivity.items():
            _check_probability(p, f"detector {self.symptom!r} sensitivity to {trigger!r}")
        _check_probability(self.false_alarm, f"detector {self.symptom!r} false_alarm")
        if not self.sensitivity:
            raise TopologyError(f"detector {self.symptom!r} is raised by nothing")

    @property
    def symptom(self) -> str:
        """The symptom name evidence uses: ``"<component>.<detector>"``."""
        return f"{self.component}.{self.name}"


@dataclass(frozen=True, slots=True)
class Hook:
    """How ``diagnosis serve --execute`` runs a recovery action.

    Exactly one of ``argv`` (a command as an argument list, run without a
    shell) and ``url`` (an HTTP webhook, POSTed a JSON body) is set.

    Parameters
    ----------
    argv : tuple of str, optional
    url : str, optional
        ``http://`` or ``https://`` URL.
    timeout : float, default 30
        Seconds before the run is abandoned (outcome ``unknown``).
    """

    argv: tuple[str, ...] | None = None
    url: str | None = None
    timeout: float = 30.0

    def __post_init__(self):
        if (self.argv is None) == (self.url is None):
            raise TopologyError("a hook needs exactly one of 'argv' (a command as a list) and 'url'")
        if self.argv is not None:
            argv = tuple(self.argv) if isinstance(self.argv, (list, tuple)) else None
            if not argv or not all(isinstance(a, str) for a in argv) or not argv[0]:
                raise TopologyError(
                    f"a hook's argv must be a non-empty list of strings, the program first. Got {self.argv!r} instead."
                )
            object.__setattr__(self, "argv", argv)
        if self.url is not None:
            from urllib.parse import urlsplit

            parts = urlsplit(self.url) if isinstance(self.url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise TopologyError(f"a hook's url must be an http:// or https:// URL. Got {self.url!r} instead.")
        t = self.timeout
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (0 < t <= 3600):
            raise TopologyError(f"a hook's timeout must be a number of seconds in (0, 3600]. Got {t!r} instead.")
        object.__setattr__(self, "timeout", float(t))

    @property
    def kind(self) -> str:
        """``argv`` or ``url``."""
        return "argv" if self.argv is not None else "url"

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"argv": list(self.argv)} if self.argv is not None else {"url": self.url}
        out["timeout"] = self.timeout
        return out


@dataclass(frozen=True, slots=True)
class Action:
    """A recovery action on one component.

    Parameters
    ----------
    name : str
        Identifier, unique within the component.
    component : str
        The target.
    success : Mapping[str, float]
        Fault mode -> P(the action removes the fault | the target is in that mode).
        Modes not listed have success 0.
    cost : float
        Cost of trying the action (time, risk), in the topology's unit.
    hook : Hook, optional
        How ``diagnosis serve --execute`` runs it (never run otherwise).
    """

    name: str
    component: str
    success: Mapping[str, float]
    cost: float = 1.0
    hook: Hook | None = None

    def __post_init__(self):
        object.__setattr__(self, "success", _frozen(self.success))
        for mode, p in self.success.items():
            _check_probability(p, f"action {self.name!r} on {self.component!r} success for {mode!r}")
        if not (isinstance(self.cost, (int, float)) and math.isfinite(self.cost) and self.cost >= 0):
            raise TopologyError(f"action {self.name!r} cost must be a number >= 0. Got {self.cost!r} instead.")


@dataclass(frozen=True, slots=True)
class Dependency:
    """``source`` depends on ``target``: impairment flows from target to source.

    Parameters
    ----------
    source, target : str
        Component names.
    type : {"call", "datastore", "host"}
        A synchronous call, a datastore use, or placement on a host.
    strength : float
        P(source impaired | target impaired), the noisy-OR link probability.
    """

    source: str
    target: str
    type: str
    strength: float

    def __post_init__(self):
        _check_probability(self.strength, f"dependency {self.source!r} -> {self.target!r} strength")


@dataclass(frozen=True, slots=True)
class AlertRule:
    """Maps Prometheus Alertmanager alerts to a symptom.

    An alert matches when every ``match`` label equals its value and every
    ``match_re`` label fully matches its regular expression. The symptom is
    ``symptom`` with ``{label}`` placeholders filled from the alert's labels
    (``"{service}.latency"``).
    """

    symptom: str
    match: Mapping[str, str]
    match_re: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "match", _frozen(self.match))
        object.__setattr__(self, "match_re", _frozen(self.match_re))

    def symptom_for(self, labels: Mapping[str, str]) -> str | None:
        """The symptom this alert maps to, or None when the rule does not match."""
        for k, v in self.match.items():
            if labels.get(k) != v:
                return None
        for k, pattern in self.match_re.items():
            if k not in labels or re.fullmatch(pattern, str(labels[k])) is None:
                return None
        try:
            return self.symptom.format_map(dict(labels))
        except (KeyError, ValueError, IndexError):
            return None


#: Largest ``|log10 LR|`` a :class:`LikelihoodCurve` may hold: a likelihood ratio is never 0 or infinite.
MAX_LOG10_RATIO = 12.0


@dataclass(frozen=True, slots=True)
class LikelihoodCurve:
    """A fitted soft-evidence likelihood ratio of one detector kind: the ``likelihoods:`` section.

    The ratio ``LR(p) = P(p | the symptom's component is faulty) / P(p | it
    is not)`` of a detector's p-value ``p`` (fitted by
    :class:`~diagnosis.learning.likelihood.LikelihoodFitter`). ``log10 LR``
    is interpolated linearly in ``x = -log10 p`` between the knots and held
    constant beyond the first and the last, so it is monotone (a smaller p is
    never weaker evidence) and bounded. ``detect`` uses it in place of the
    default beta-uniform ratio ``a * p**(a - 1)`` for the detectors that
    watch ``watches`` (:class:`~diagnosis.telemetry.detectors.EvidenceModel`).

    Attributes
    ----------
    watches : str
        The detectors it applies to (their ``watches``).
    knots : tuple of float
        ``-log10 p`` at the knots: finite, >= 0, strictly increasing; at least one.
    log10_ratio : tuple of float
        ``log10 LR`` at the knots: finite, non-decreasing, within
        ``[-MAX_LOG10_RATIO, MAX_LOG10_RATIO]``.

    Examples
    --------
    >>> c = LikelihoodCurve("latency", (0.0, 2.0), (-0.5, 1.5))
    >>> c.ratio([1.0, 0.1, 0.01, 1e-9]).round(3).tolist()
    [0.316, 3.162, 31.623, 31.623]
    """

    watches: str
    knots: tuple[float, ...]
    log10_ratio: tuple[float, ...]

    def __post_init__(self):
        object.__setattr__(self, "knots", tuple(float(x) for x in self.knots))
        object.__setattr__(self, "log10_ratio", tuple(float(y) for y in self.log10_ratio))
        problem = _curve_problem(self.knots, self.log10_ratio)
        if problem:
            raise TopologyError(f"likelihood curve of {self.watches!r}: {problem}")

    def ratio(self, p) -> Any:
        """``LR(p)`` for an array of p-values (clipped to ``[1e-300, 1]``); an ndarray."""
        import numpy as np

        x = -np.log10(np.clip(np.asarray(p, dtype=np.float64), 1e-300, 1.0))
        return 10.0 ** np.interp(x, self.knots, self.log10_ratio)

    def to_dict(self) -> dict:
        """``{"neg_log10_p": [...], "log10_ratio": [...]}``, as the topology YAML holds it."""
        return {"neg_log10_p": list(self.knots), "log10_ratio": list(self.log10_ratio)}


def _curve_problem(knots: Sequence, ratios: Sequence) -> str | None:
    """Why ``(knots, log10_ratio)`` is not a valid curve, or None."""

    def real(v) -> bool:
        return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)

    if len(knots) == 0 or len(knots) != len(ratios):
        return (
            f"needs as many log10_ratio values as neg_log10_p knots, at least one. Got {len(knots)} and {len(ratios)}"
        )
    bad = [v for v in (*knots, *ratios) if not real(v)]
    if bad:
        return f"every knot and ratio must be a finite number. Got {bad[0]!r}"
    if knots[0] < 0 or any(b <= a for a, b in zip(knots, knots[1:])):
        return f"neg_log10_p must be >= 0 and strictly increasing. Got {list(knots)!r}"
    if any(b < a for a, b in zip(ratios, ratios[1:])):
        return f"log10_ratio must be non-decreasing (a smaller p-value is never weaker evidence). Got {list(ratios)!r}"
    if any(abs(v) > MAX_LOG10_RATIO for v in ratios):
        return f"log10_ratio must lie in [-{MAX_LOG10_RATIO:g}, {MAX_LOG10_RATIO:g}] (a ratio is never 0 or infinite). Got {list(ratios)!r}"
    return None


#: Which end of an entity a signal rule blames: the entity itself, or an edge's caller or callee.
SIGNAL_SIDES = ("self", "caller", "callee")


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """A ``signals:`` rule of the topology: which metric names feed which detector.

    Read by :func:`diagnosis.telemetry.signals.rules_for`, which turns these
    into signal rules ahead of (or instead of) the built-in ones. A spec whose
    name is a built-in rule's replaces that rule; ``enabled: false`` removes it.

    Attributes
    ----------
    name : str
        The rule's name (unique).
    metric : str or None
        Regular expression fully matched against metric names, case-insensitive;
        None only for a disabled rule.
    watches : str or None
        The ``watches`` of the detectors it feeds; None only for a disabled rule.
    direction : {1, -1}
        1: a rise is harmful; -1: a drop is.
    side : {"self", "caller", "callee"}
        For an edge ``caller->callee`` entity, which end it blames.
    rel_floor : float
        Robust-scale floor as a fraction of the baseline median.
    enabled : bool
        False removes the built-in rule of the same name.
    """

    name: str
    metric: str | None
    watches: str | None
    direction: int = 1
    side: str = "self"
    rel_floor: float = 0.1
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Component:
    """A component of the platform with its fault modes, detectors and actions."""

    name: str
    kind: str
    host: str | None = None
    fault_modes: tuple[FaultMode, ...] = ()
    detectors: tuple[Detector, ...] = ()
    actions: tuple[Action, ...] = ()

    def __post_init__(self):
        total = math.fsum(m.prior for m in self.fault_modes)
        if total > 1.0 + 1e-12:
            raise TopologyError(
                f"the fault-mode priors of component {self.name!r} sum to {total!r}; they must sum to at most 1"
            )

    @property
    def p_ok(self) -> float:
        """Prior probability that the component has none of its fault modes."""
        return max(0.0, 1.0 - math.fsum(m.prior for m in self.fault_modes))

    def fault_mode(self, name: str) -> FaultMode:
        """Return the fault mode called ``name``.

        Raises
        ------
        TopologyError
            No such fault mode, with the close matches and the modes it has.
        """
        for m in self.fault_modes:
            if m.name == name:
                return m
        modes = [m.name for m in self.fault_modes]
        raise TopologyError(
            f"component {self.name!r} has no fault mode {name!r}{suggest(str(name), modes)}; its fault modes: {modes}"
        )


@dataclass(frozen=True, slots=True)
class Topology:
    """A validated platform description.

    Use :func:`load_topology` or :meth:`from_dict` to make one.

    Attributes
    ----------
    name : str
        The platform's name.
    components : tuple of Component
        In declaration order.
    dependencies : tuple of Dependency
        The dependency edges the model uses (cycle-breaking already applied).
    dropped_dependencies : tuple of Dependency
        Edges removed to break call cycles (``cycles: break``); empty otherwise.
    alert_rules : tuple of AlertRule
        How Alertmanager alerts map to symptoms (first matching rule wins).
    signal_rules : tuple of SignalSpec
        The ``signals:`` section: metric-name rules for ``detect``.
    signals_replace : bool
        True: ``signal_rules`` replace the built-in rules instead of going first.
    likelihoods : tuple of LikelihoodCurve
        The ``likelihoods:`` section: fitted soft-evidence ratios per detector kind (``diagnosis fit --evidence``).
    leak : float
        P(impaired | no modelled cause), the noisy-OR leak.
    source : str or None
        The file it was read from.
    """

    name: str
    components: tuple[Component, ...]
    dependencies: tuple[Dependency, ...]
    leak: float = 0.001
    dropped_dependencies: tuple[Dependency, ...] = ()
    source: str | None = None
    alert_rules: tuple[AlertRule, ...] = ()
    signal_rules: tuple[SignalSpec, ...] = ()
    signals_replace: bool = False
    likelihoods: tuple[LikelihoodCurve, ...] = ()
    _index: Mapping[str, Component] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self):
        object.__setattr__(self, "_index", _frozen({c.name: c for c in self.components}))
        _check_probability(self.leak, "leak")

    def likelihood(self, watches: str) -> LikelihoodCurve | None:
        """The fitted likelihood curve of the detectors watching ``watches``, or None (the default ratio)."""
        for c in self.likelihoods:
            if c.watches == watches:
                return c
        return None

    def component(self, name: str) -> Component:
        """Return the component called ``name``, or raise TopologyError with suggestions."""
        try:
            return self._index[name]
        except KeyError:
            raise TopologyError(f"unknown component {name!r}{suggest(name, self._index)}", source=self.source) from None

    @property
    def component_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)

    @property
    def detectors(self) -> tuple[Detector, ...]:
        """Every detector, in component order."""
        return tuple(d for c in self.components for d in c.detectors)

    @property
    def symptoms(self) -> tuple[str, ...]:
        """Every symptom name (``component.detector``), as evidence takes them."""
        return tuple(d.symptom for d in self.detectors)

    @property
    def actions(self) -> tuple[Action, ...]:
        """Every recovery action, in component order."""
        return tuple(a for c in self.components for a in c.actions)

    def dependencies_of(self, name: str) -> tuple[Dependency, ...]:
        """The edges whose source is ``name`` (what it depends on), in order."""
        return tuple(d for d in self.dependencies if d.source == name)

    def dependency_order(self) -> list[str]:
        """Component names with every dependency before its dependents.

        Ties keep declaration order (a lexicographic topological sort by
        position), so the order is the same on every run.
        """
        return _ordered_topological_sort(self.component_names, [(d.target, d.source) for d in self.dependencies])

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> Topology:
        """Validate a parsed topology mapping and build a Topology.

        Parameters
        ----------
        data : mapping
            The parsed YAML document (see ``docs/topology.md``).
        source : str, optional
            File name used in error messages.

        Raises
        ------
        TopologyError
            On any invalid field, naming ``source`` and the path inside it.
        """
        return _Parser(source).parse(data)

    def with_scaled_priors(self, factor: float) -> Topology:
        """A copy with every fault-mode prior multiplied by ``factor``.

        For sensitivity analysis ("what if our priors are off by 10x?") and for
        building mis-specified models in calibration tests.

        Raises
        ------
        TopologyError
            If a prior leaves [0, 1] or a component's priors sum past 1.

        Examples
        --------
        >>> from diagnosis import bundled_topology, load_topology
        >>> topo = load_topology(bundled_topology("webshop"))
        >>> topo.with_scaled_priors(10).component("db").fault_mode("down").prior
        0.03
        """
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor < 0:
            raise TopologyError(f"the prior scale factor must be a number >= 0. Got {factor!r} instead.")
        components = tuple(
            replace(c, fault_modes=tuple(replace(m, prior=m.prior * factor) for m in c.fault_modes))
            for c in self.components
        )
        return replace(self, components=components)

    def to_dict(self) -> dict:
        """A plain mapping that :meth:`from_dict` reads back to an equal topology."""
        comps = []
        for c in self.components:
            deps = self.dependencies_of(c.name) + tuple(d for d in self.dropped_dependencies if d.source == c.name)
            entry: dict[str, Any] = {"name": c.name, "kind": c.kind}
            if c.host:
                entry["host"] = c.host
            for key, typ in (("calls", "call"), ("uses", "datastore")):
                edges = [{"to": d.target, "strength": d.strength} for d in deps if d.type == typ]
                if edges:
                    entry[key] = edges
            host_edge = [d for d in deps if d.type == "host"]
            if host_edge:
                entry["host_strength"] = host_edge[0].strength
            entry["fault_modes"] = {m.name: {"prior": m.prior, "impact": m.impact} for m in c.fault_modes}
            entry["detectors"] = {
                d.name: {
                    "watches": d.watches,
                    "raised_by": dict(d.sensitivity),
                    "false_alarm": d.false_alarm,
                    "cost": d.cost,
                }
                for d in c.detectors
            }
            entry["actions"] = {
                a.name: {"success": dict(a.success), "cost": a.cost, **({"hook": a.hook.to_dict()} if a.hook else {})}
                for a in c.actions
            }
            entry["replace_defaults"] = True
            comps.append(entry)
        out = {"name": self.name, "leak": self.leak, "components": comps}
        if self.dropped_dependencies:
            out["cycles"] = "break"
        if self.alert_rules:
            out["alerts"] = [
                {"symptom": r.symptom, "match": dict(r.match), **({"match_re": dict(r.match_re)} if r.match_re else {})}
                for r in self.alert_rules
            ]
        if self.signal_rules or self.signals_replace:
            out["signals"] = {
                "replace_defaults": self.signals_replace,
                "rules": [
                    {"name": r.name, "enabled": False}
                    if not r.enabled
                    else {
                        "name": r.name,
                        "metric": r.metric,
                        "watches": r.watches,
                        "direction": r.direction,
                        "side": r.side,
                        "rel_floor": r.rel_floor,
                    }
                    for r in self.signal_rules
                ],
            }
        if self.likelihoods:
            out["likelihoods"] = {c.watches: c.to_dict() for c in self.likelihoods}
        return out


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology YAML file.

    Parameters
    ----------
    path : str or path-like
        The YAML file.

    Returns
    -------
    Topology

    Raises
    ------
    TopologyError
        If the file is missing, is not YAML, or is invalid; the message names
        the file, the path inside it and the bad value.

    Examples
    --------
    >>> from diagnosis import load_topology, bundled_topology
    >>> topo = load_topology(bundled_topology("webshop"))
    >>> topo.component_names
    ('frontend', 'backend', 'db', 'db-host')
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TopologyError("file not found", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(f"cannot read file: {exc}", source=source) from None
    # Parse once (libyaml when available: the pure-Python parser was most of
    # `diagnose`'s time on a small platform), check the node tree (duplicate keys;
    # nesting and alias expansion bounded, before anything is built), then construct.
    loader = _SafeLoader(text)
    try:
        root = loader.get_single_node()
        _check_duplicate_keys(root, source)
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):  # libyaml's own bound on nesting
            raise TopologyError(
                f"the YAML is nested too deeply to read (a topology needs at most {_MAX_YAML_DEPTH} levels)",
                source=source,
            ) from None
        raise TopologyError(f"not valid YAML: {yaml_error_text(exc)}", source=source) from None
    except RecursionError:
        raise TopologyError(
            f"the YAML is nested too deeply to read (a topology needs at most {_MAX_YAML_DEPTH} levels)", source=source
        ) from None
    finally:
        loader.dispose()
    return Topology.from_dict(data, source=source)


#: Bounds on a topology file's YAML: nesting depth, and nodes once every alias is expanded.
_MAX_YAML_DEPTH = 64
_MAX_YAML_NODES = 1_000_000


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root, source: str) -> None:
    """Refuse aliases that expand to a huge tree ("billion laughs") or refer to themselves, in linear time."""
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in _children(node))
            if size[key] > _MAX_YAML_NODES:
                line = node.start_mark.line + 1
                raise TopologyError(
                    f"the YAML aliases expand to more than {_MAX_YAML_NODES:,} values (at line {line}); "
                    "a topology needs far fewer -- is this an alias bomb?",
                    source=source,
                )
            continue
        if key in size:
            continue
        open_.add(key)
        stack.append((node, True))
        for k in _children(node):
            if id(k) in open_:
                raise TopologyError(
                    f"a YAML alias refers to the value that contains it (line {k.start_mark.line + 1})", source=source
                )
            if id(k) not in size:
                stack.append((k, False))


#: libyaml's safe loader when PyYAML was built with it (same YAML, about 10x faster).
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_duplicate_keys(root: yaml.Node | None, source: str) -> None:
    """Reject duplicate mapping keys, which ``yaml.safe_load`` silently overwrites.

    Walks the composed node tree (no object construction), so it is as safe as
    ``safe_load``.
    """
    if root is None:
        return
    _check_expansion(root, source)
    stack = [(root, "", 0)]
    visited: set[int] = set()
    while stack:
        node, path, depth = stack.pop()
        if id(node) in visited:
            continue  # an alias: its keys were checked where it was defined
        visited.add(id(node))
        if depth > _MAX_YAML_DEPTH:
            raise TopologyError(
                f"nested more than {_MAX_YAML_DEPTH} levels deep (line {node.start_mark.line + 1})",
                source=source,
                path=path or None,
            )
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                k = key.value if isinstance(key, yaml.ScalarNode) else str(key)
                line = key.start_mark.line + 1
                if k in seen:
                    raise TopologyError(
                        f"duplicate key {k!r} (line {line}; first at line {seen[k]})", source=source, path=path or None
                    )
                seen[k] = line
                stack.append((value, f"{path}.{k}" if path else k, depth + 1))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node.value))


@cache
def _defaults() -> dict:
    text = resources.files("diagnosis").joinpath("data/defaults.yaml").read_text(encoding="utf-8")
    return yaml.load(text, Loader=_SafeLoader)


def _check_probability(p: Any, what: str) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0.0 <= float(p) <= 1.0) or math.isnan(p):
        raise TopologyError(f"{what} must be a probability in [0, 1]. Got {p!r} instead.")


class _Parser:
    """Turns a parsed YAML document into a Topology, tracking paths for errors."""

    def __init__(self, source: str | None):
        self.source = source

    def fail(self, path: str, message: str) -> TopologyError:
        return TopologyError(message, source=self.source, path=path)

    # --- small typed getters -------------------------------------------------
    def mapping(self, value: Any, path: str) -> Mapping:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping. Got {value!r} instead.")
        return value

    def prob(self, value: Any, path: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or math.isnan(value)
            or not 0.0 <= value <= 1.0
        ):
            raise self.fail(path, f"must be a probability in [0, 1]. Got {value!r} instead.")
        return float(value)

    def cost(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise self.fail(path, f"must be a number >= 0. Got {value!r} instead.")
        return float(value)

    def ident(self, value: Any, path: str, what: str) -> str:
        if not isinstance(value, str) or not _IDENT_RE.match(value):
            raise self.fail(path, f"{what} must match [a-z][a-z0-9_]*. Got {value!r} instead.")
        return value

    def check_keys(self, spec: Mapping, allowed: Iterable[str], path: str) -> None:
        allowed = tuple(allowed)
        for key in spec:
            if key not in allowed:
                raise self.fail(
                    f"{path}.{key}" if path else str(key),
                    f"unknown field {key!r}{suggest(str(key), allowed)}; allowed: {sorted(allowed)}",
                )

    # --- the document ----------------------------------------------------------
    def parse(self, data: Any) -> Topology:
        doc = self.mapping(data, "(top level)") if data is not None else None
        if doc is None:
            raise self.fail("(top level)", "the file is empty; expected a mapping with 'name' and 'components'")
        self.check_keys(
            doc,
            (
                "name",
                "description",
                "source",
                "leak",
                "cycles",
                "defaults",
                "components",
                "alerts",
                "signals",
                "likelihoods",
            ),
            "",  # fmt: skip
        )
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail("name", f"must be a non-empty string. Got {name!r} instead.")
        defaults = copy.deepcopy(_defaults())
        self.merge_defaults(defaults, doc.get("defaults"), "defaults")
        leak = self.prob(doc["leak"], "leak") if "leak" in doc else float(defaults["leak"])
        cycles = doc.get("cycles", "reject")
        if cycles not in CYCLE_POLICIES:
            raise self.fail("cycles", f"must be one of {list(CYCLE_POLICIES)}. Got {cycles!r} instead.")
        raw = doc.get("components")
        if not isinstance(raw, list) or not raw:
            raise self.fail("components", f"must be a non-empty list of components. Got {raw!r} instead.")

        names: dict[str, int] = {}
        for i, spec in enumerate(raw):
            path = f"components[{i}]"
            spec = self.mapping(spec, path)
            cname = spec.get("name")
            if not isinstance(cname, str) or not _NAME_RE.match(cname):
                raise self.fail(
                    f"{path}.name", f"must be a name matching [A-Za-z][A-Za-z0-9_.-]*. Got {cname!r} instead."
                )
            if cname in names:
                raise self.fail(f"{path}.name", f"duplicate component {cname!r} (first at components[{names[cname]}])")
            names[cname] = i
        kinds = {}
        for i, spec in enumerate(raw):
            kind = spec.get("kind", "service")
            if kind not in COMPONENT_KINDS:
                raise self.fail(
                    f"components[{i}].kind",
                    f"unknown kind {kind!r} for component {spec['name']!r}{suggest(str(kind), COMPONENT_KINDS)}; "
                    f"allowed: {list(COMPONENT_KINDS)}",
                )
            kinds[spec["name"]] = kind

        components, edges = [], []
        for i, spec in enumerate(raw):
            comp, comp_edges = self.component(spec, f"components[{i}]", kinds, defaults)
            components.append(comp)
            edges.extend(comp_edges)
        kept, dropped = self.resolve_cycles(components, edges, cycles, {n: i for i, n in enumerate(names)})
        symptoms = {d.symptom for c in components for d in c.detectors}
        rules = self.alert_rules(doc.get("alerts"), symptoms)
        signal_rules, signals_replace = self.signal_rules(
            doc.get("signals"), {d.watches for c in components for d in c.detectors}
        )
        return Topology(
            name=name,
            components=tuple(components),
            dependencies=tuple(kept),
            leak=leak,
            dropped_dependencies=tuple(dropped),
            source=self.source,
            alert_rules=rules,
            signal_rules=signal_rules,
            signals_replace=signals_replace,
            likelihoods=self.likelihoods(doc.get("likelihoods"), {d.watches for c in components for d in c.detectors}),
        )

    def likelihoods(self, raw: Any, watched: set[str]) -> tuple[LikelihoodCurve, ...]:
        if raw is None:
            return ()
        raw = self.mapping(raw, "likelihoods")
        curves = []
        for watches, spec in raw.items():
            path = f"likelihoods.{watches}"
            if not isinstance(watches, str) or watches not in watched:
                raise self.fail(
                    path,
                    f"must be what some detector of this topology watches{suggest(str(watches), watched)}; "
                    f"allowed: {sorted(watched)}. Got {watches!r} instead.",
                )
            spec = self.mapping(spec, path)
            self.check_keys(spec, ("neg_log10_p", "log10_ratio"), path)
            knots, ratios = spec.get("neg_log10_p"), spec.get("log10_ratio")
            for key, v in (("neg_log10_p", knots), ("log10_ratio", ratios)):
                if not isinstance(v, list):
                    raise self.fail(f"{path}.{key}", f"must be a list of numbers. Got {v!r} instead.")
            problem = _curve_problem(knots, ratios)
            if problem:
                raise self.fail(path, problem + " instead.")
            curves.append(LikelihoodCurve(watches, tuple(knots), tuple(ratios)))
        return tuple(curves)

    def signal_rules(self, raw: Any, watched: set[str]) -> tuple[tuple[SignalSpec, ...], bool]:
        if raw is None:
            return (), False
        replace_defaults = False
        if isinstance(raw, Mapping):
            self.check_keys(raw, ("replace_defaults", "rules"), "signals")
            replace_defaults = raw.get("replace_defaults", False)
            if not isinstance(replace_defaults, bool):
                raise self.fail("signals.replace_defaults", f"must be true or false. Got {replace_defaults!r} instead.")
            raw, base = raw.get("rules", []), "signals.rules"
        else:
            base = "signals"
        if not isinstance(raw, list):
            raise self.fail(base, f"must be a list of rules. Got {raw!r} instead.")
        specs, seen = [], {}
        for i, spec in enumerate(raw):
            path = f"{base}[{i}]"
            spec = self.mapping(spec, path)
            self.check_keys(spec, ("name", "metric", "watches", "direction", "side", "rel_floor", "enabled"), path)
            name = self.ident(spec.get("name"), f"{path}.name", "a signal rule name")
            if name in seen:
                raise self.fail(f"{path}.name", f"duplicate signal rule {name!r} (first at {base}[{seen[name]}])")
            seen[name] = i
            enabled = spec.get("enabled", True)
            if not isinstance(enabled, bool):
                raise self.fail(f"{path}.enabled", f"must be true or false. Got {enabled!r} instead.")
            if not enabled:
                extra = sorted(set(spec) - {"name", "enabled"})
                if extra:
                    raise self.fail(f"{path}.{extra[0]}", "a disabled rule takes only 'name' and 'enabled'")
                specs.append(SignalSpec(name, None, None, enabled=False))
                continue
            metric = spec.get("metric")
            if not isinstance(metric, str) or not metric:
                raise self.fail(f"{path}.metric", f"must be a regular expression string. Got {metric!r} instead.")
            try:
                re.compile(metric)
            except re.error as exc:
                raise self.fail(f"{path}.metric", f"bad regular expression {metric!r}: {exc}") from None
            watches = spec.get("watches")
            if not isinstance(watches, str) or watches not in watched:
                raise self.fail(
                    f"{path}.watches",
                    f"must be what some detector of this topology watches{suggest(str(watches), watched)}; "
                    f"allowed: {sorted(watched)}. Got {watches!r} instead.",
                )
            direction = spec.get("direction", 1)
            if isinstance(direction, bool) or direction not in (1, -1):
                raise self.fail(f"{path}.direction", f"must be 1 (a rise is harmful) or -1. Got {direction!r} instead.")
            side = spec.get("side", "self")
            if side not in SIGNAL_SIDES:
                raise self.fail(
                    f"{path}.side",
                    f"must be one of {list(SIGNAL_SIDES)}{suggest(str(side), SIGNAL_SIDES)}. Got {side!r} instead.",
                )
            rel_floor = spec.get("rel_floor", 0.1)
            if (
                isinstance(rel_floor, bool)
                or not isinstance(rel_floor, (int, float))
                or not math.isfinite(rel_floor)
                or not 0 <= rel_floor < 10
            ):
                raise self.fail(f"{path}.rel_floor", f"must be a number in [0, 10). Got {rel_floor!r} instead.")
            specs.append(SignalSpec(name, metric, watches, int(direction), side, float(rel_floor)))
        if replace_defaults and not any(s.enabled for s in specs):
            raise self.fail(base, "'replace_defaults: true' needs at least one enabled rule")
        return tuple(specs), replace_defaults

    def alert_rules(self, raw: Any, symptoms: set[str]) -> tuple[AlertRule, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise self.fail("alerts", f"must be a list of rules. Got {raw!r} instead.")
        rules = []
        for i, spec in enumerate(raw):
            path = f"alerts[{i}]"
            spec = self.mapping(spec, path)
            self.check_keys(spec, ("symptom", "match", "match_re"), path)
            symptom = spec.get("symptom")
            if not isinstance(symptom, str) or not symptom:
                raise self.fail(
                    f"{path}.symptom",
                    f"must be a symptom name or a template like '{{service}}.latency'. Got {symptom!r} instead.",
                )
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(symptom) if f is not None]
            except ValueError as exc:
                raise self.fail(f"{path}.symptom", f"bad template {symptom!r}: {exc}") from None
            if not fields and symptom not in symptoms:
                raise self.fail(f"{path}.symptom", f"unknown symptom {symptom!r}{suggest(symptom, symptoms)}")
            match = self.mapping(spec.get("match", {}), f"{path}.match")
            match_re = self.mapping(spec.get("match_re", {}), f"{path}.match_re")
            if not match and not match_re:
                raise self.fail(path, "a rule needs 'match' or 'match_re' labels")
            for k, v in {**match, **match_re}.items():
                if not isinstance(v, str):
                    raise self.fail(f"{path}.match.{k}", f"label values must be strings. Got {v!r} instead.")
            for k, v in match_re.items():
                try:
                    re.compile(v)
                except re.error as exc:
                    raise self.fail(f"{path}.match_re.{k}", f"bad regular expression {v!r}: {exc}") from None
            for f in fields:
                if not f.isidentifier():
                    raise self.fail(
                        f"{path}.symptom", f"template fields must be label names. Got {{{f}}} in {symptom!r}"
                    )
            rules.append(AlertRule(symptom, match, match_re))
        return tuple(rules)

    def merge_defaults(self, defaults: dict, override: Any, path: str) -> None:
        if override is None:
            return
        override = self.mapping(override, path)
        self.check_keys(override, ("leak", "edge_strength", "kinds"), path)
        if "leak" in override:
            defaults["leak"] = self.prob(override["leak"], f"{path}.leak")
        for typ, value in self.mapping(override.get("edge_strength", {}), f"{path}.edge_strength").items():
            if typ not in DEPENDENCY_TYPES:
                raise self.fail(
                    f"{path}.edge_strength.{typ}",
                    f"unknown dependency type {typ!r}{suggest(str(typ), DEPENDENCY_TYPES)}; allowed: {list(DEPENDENCY_TYPES)}",
                )
            defaults["edge_strength"][typ] = self.prob(value, f"{path}.edge_strength.{typ}")
        for kind, spec in self.mapping(override.get("kinds", {}), f"{path}.kinds").items():
            kpath = f"{path}.kinds.{kind}"
            if kind not in COMPONENT_KINDS:
                raise self.fail(
                    kpath,
                    f"unknown kind {kind!r}{suggest(str(kind), COMPONENT_KINDS)}; allowed: {list(COMPONENT_KINDS)}",
                )
            spec = self.mapping(spec, kpath)
            self.check_keys(spec, ("fault_modes", "detectors", "actions"), kpath)
            for section in ("fault_modes", "detectors", "actions"):
                if section in spec:
                    merged = self.merge_section(defaults["kinds"][kind][section], spec[section], f"{kpath}.{section}")
                    defaults["kinds"][kind][section] = merged

    def merge_section(self, base: Mapping, override: Any, path: str, *, replace: bool = False) -> dict:
        """Merge ``override`` (name -> spec or null) into ``base`` (name -> spec).

        A mapping overrides the named fields of a default of the same name; a
        bare number is shorthand for ``{prior: number}`` (fault modes); null
        removes the default.
        """
        result = {} if replace else copy.deepcopy(dict(base))
        if override is None:
            return result
        override = self.mapping(override, path)
        for key, value in override.items():
            if value is None:
                if key not in result:
                    raise self.fail(
                        f"{path}.{key}",
                        f"cannot remove {key!r}: no such default{suggest(str(key), result)}; defaults: {sorted(result)}",
                    )
                del result[key]
            elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
                result[key] = {**result[key], **value}
            elif (
                isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(result.get(key), Mapping)
            ):
                result[key] = {**result[key], "prior": value}
            else:
                result[key] = value
        return result

    def component(self, spec: Mapping, path: str, kinds: Mapping[str, str], defaults: Mapping):
        self.check_keys(
            spec,
            (
                "name",
                "kind",
                "host",
                "host_strength",
                "calls",
                "uses",
                "fault_modes",
                "detectors",
                "actions",
                "replace_defaults",
                "description",
            ),
            path,
        )
        name = spec["name"]
        kind = kinds[name]
        kind_defaults = defaults["kinds"][kind]
        replace = spec.get("replace_defaults", False)
        if not isinstance(replace, bool):
            raise self.fail(f"{path}.replace_defaults", f"must be true or false. Got {replace!r} instead.")

        modes = self.fault_modes(spec, path, name, kind_defaults, replace)
        mode_names = [m.name for m in modes]
        detectors = self.detectors(spec, path, name, kind_defaults, replace, mode_names)
        actions = self.actions(spec, path, name, kind_defaults, replace, mode_names)
        edges = self.edges(spec, path, name, kinds, defaults)
        comp = Component(name, kind, spec.get("host"), tuple(modes), tuple(detectors), tuple(actions))
        return comp, edges

    def fault_modes(
        self, spec: Mapping, path: str, name: str, kind_defaults: Mapping, replace: bool
    ) -> list[FaultMode]:
        """The component's fault modes: its kind's defaults merged with its own ``fault_modes``."""
        raw_modes = self.merge_section(
            kind_defaults["fault_modes"], spec.get("fault_modes"), f"{path}.fault_modes", replace=replace
        )
        modes = []
        for mname, mspec in raw_modes.items():
            mpath = f"{path}.fault_modes.{mname}"
            mname = self.ident(mname, mpath, "a fault mode name")
            if mname in ("ok", IMPAIRED):
                raise self.fail(mpath, f"{mname!r} is reserved and cannot be a fault mode name")
            if isinstance(mspec, (int, float)) and not isinstance(mspec, bool):
                mspec = {"prior": mspec}
            if not isinstance(mspec, Mapping):
                raise self.fail(
                    mpath,
                    f"expected a prior probability (a number in [0, 1]) or a mapping {{prior, impact}}. "
                    f"Got {mspec!r} instead.",
                )
            self.check_keys(mspec, ("prior", "impact"), mpath)
            if "prior" not in mspec:
                raise self.fail(f"{mpath}.prior", "is required")
            modes.append(
                FaultMode(
                    mname,
                    self.prob(mspec["prior"], f"{mpath}.prior"),
                    self.prob(mspec.get("impact", 1.0), f"{mpath}.impact"),
                )
            )
        total = math.fsum(m.prior for m in modes)
        if total > 1.0 + 1e-12:
            raise self.fail(
                f"{path}.fault_modes", f"priors of component {name!r} sum to {total!r}; they must sum to at most 1"
            )
        return modes

    def detectors(
        self, spec: Mapping, path: str, name: str, kind_defaults: Mapping, replace: bool, mode_names: list[str]
    ) -> list[Detector]:
        """The component's detectors; a default detector keeps only the triggers the component has."""
        raw_dets = self.merge_section(
            kind_defaults["detectors"], spec.get("detectors"), f"{path}.detectors", replace=replace
        )
        detectors = []
        triggers_allowed = [IMPAIRED, *mode_names]
        user_dets = spec.get("detectors") if isinstance(spec.get("detectors"), Mapping) else {}
        for dname, dspec in raw_dets.items():
            dpath = f"{path}.detectors.{dname}"
            dname = self.ident(dname, dpath, "a detector name")
            dspec = self.mapping(dspec, dpath)
            self.check_keys(dspec, ("watches", "raised_by", "sensitivity", "false_alarm", "cost"), dpath)
            raised = dspec.get("raised_by")
            if isinstance(raised, str):
                raised = [raised]
            if not replace and "raised_by" not in (user_dets.get(dname) or {}) and isinstance(raised, Mapping):
                # A default detector: keep only the triggers this component has (its
                # fault modes may have been removed or replaced); drop it if none is left.
                raised = {t: p for t, p in raised.items() if t in triggers_allowed}
                if not raised:
                    continue
            if isinstance(raised, list):
                if "sensitivity" not in dspec:
                    raise self.fail(f"{dpath}.sensitivity", "is required when raised_by is a list")
                sens = self.prob(dspec["sensitivity"], f"{dpath}.sensitivity")
                raised = {t: sens for t in raised}
            elif isinstance(raised, Mapping):
                if "sensitivity" in dspec:
                    raise self.fail(
                        f"{dpath}.sensitivity", "give sensitivities inside raised_by when it is a mapping, not both"
                    )
            else:
                raise self.fail(
                    f"{dpath}.raised_by",
                    f"must be a list of triggers or a mapping trigger -> sensitivity. Got {raised!r} instead.",
                )
            sensitivity = {}
            for trig, p in raised.items():
                if trig not in triggers_allowed:
                    raise self.fail(
                        f"{dpath}.raised_by.{trig}",
                        f"unknown trigger {trig!r} for component {name!r}{suggest(str(trig), triggers_allowed)}; "
                        f"allowed: {triggers_allowed}",
                    )
                sensitivity[trig] = self.prob(p, f"{dpath}.raised_by.{trig}")
            if not sensitivity:
                raise self.fail(f"{dpath}.raised_by", "must name at least one trigger")
            if "false_alarm" not in dspec:
                raise self.fail(f"{dpath}.false_alarm", "is required")
            watches = dspec.get("watches", dname)
            if not isinstance(watches, str):
                raise self.fail(f"{dpath}.watches", f"must be a string. Got {watches!r} instead.")
            detectors.append(
                Detector(
                    name=dname,
                    component=name,
                    watches=watches,
                    sensitivity=sensitivity,
                    false_alarm=self.prob(dspec["false_alarm"], f"{dpath}.false_alarm"),
                    cost=self.cost(dspec.get("cost", 1.0), f"{dpath}.cost"),
                )
            )
        return detectors

    def actions(
        self, spec: Mapping, path: str, name: str, kind_defaults: Mapping, replace: bool, mode_names: list[str]
    ) -> list[Action]:
        """The component's recovery actions; a default action keeps only the fault modes the component has."""
        raw_actions = self.merge_section(
            kind_defaults["actions"], spec.get("actions"), f"{path}.actions", replace=replace
        )
        actions = []
        user_actions = spec.get("actions") if isinstance(spec.get("actions"), Mapping) else {}
        for aname, aspec in raw_actions.items():
            apath = f"{path}.actions.{aname}"
            aname = self.ident(aname, apath, "an action name")
            aspec = self.mapping(aspec, apath)
            self.check_keys(aspec, ("success", "cost", "hook"), apath)
            success = {}
            from_default = not replace and "success" not in (user_actions.get(aname) or {})
            raw_success = self.mapping(aspec.get("success", {}), f"{apath}.success")
            if from_default:
                # A default action: keep the modes this component has; drop it if none is left.
                raw_success = {m: p for m, p in raw_success.items() if m in mode_names}
                if not raw_success:
                    continue
            for mode, p in raw_success.items():
                if mode not in mode_names:
                    raise self.fail(
                        f"{apath}.success.{mode}",
                        f"unknown fault mode {mode!r} for component {name!r}{suggest(str(mode), mode_names)}; allowed: {mode_names}",
                    )
                success[mode] = self.prob(p, f"{apath}.success.{mode}")
            hook = self.hook(aspec["hook"], f"{apath}.hook") if aspec.get("hook") is not None else None
            actions.append(Action(aname, name, success, self.cost(aspec.get("cost", 1.0), f"{apath}.cost"), hook))
        return actions

    def edges(
        self, spec: Mapping, path: str, name: str, kinds: Mapping[str, str], defaults: Mapping
    ) -> list[tuple[Dependency, str]]:
        """The component's ``calls``, ``uses`` and ``host`` edges, each with its dotted path."""
        edges: list[tuple[Dependency, str]] = []
        seen_targets: dict[str, str] = {}
        for key, typ in (("calls", "call"), ("uses", "datastore")):
            items = spec.get(key, [])
            if not isinstance(items, list):
                raise self.fail(f"{path}.{key}", f"must be a list. Got {items!r} instead.")
            for j, item in enumerate(items):
                epath = f"{path}.{key}[{j}]"
                if isinstance(item, str):
                    target, strength = item, defaults["edge_strength"][typ]
                else:
                    item = self.mapping(item, epath)
                    self.check_keys(item, ("to", "strength"), epath)
                    target = item.get("to")
                    strength = self.prob(item.get("strength", defaults["edge_strength"][typ]), f"{epath}.strength")
                edges.append((self.edge(name, target, typ, strength, epath, kinds, seen_targets), epath))
        host = spec.get("host")
        if host is not None:
            hs = self.prob(spec.get("host_strength", defaults["edge_strength"]["host"]), f"{path}.host_strength")
            edges.append((self.edge(name, host, "host", hs, f"{path}.host", kinds, seen_targets), f"{path}.host"))
        elif "host_strength" in spec:
            raise self.fail(f"{path}.host_strength", "given without a host")
        return edges

    def hook(self, raw: Any, path: str) -> Hook:
        """A hook: an argv list, a URL, or a mapping with ``argv`` or ``url`` and an optional ``timeout``."""
        if isinstance(raw, list):
            spec = {"argv": raw}
        elif isinstance(raw, str):
            spec = {"url": raw}
        else:
            spec = dict(self.mapping(raw, path))
        self.check_keys(spec, ("argv", "url", "timeout"), path)
        try:
            return Hook(spec.get("argv"), spec.get("url"), spec.get("timeout", 30.0))
        except TopologyError as exc:
            raise self.fail(path, str(exc)) from None

    def edge(self, source, target, typ, strength, path, kinds, seen_targets) -> Dependency:
        if not isinstance(target, str) or target not in kinds:
            raise self.fail(path, f"unknown component {target!r}{suggest(str(target), kinds)}")
        if target == source:
            raise self.fail(path, f"component {source!r} cannot depend on itself")
        if target in seen_targets:
            raise self.fail(path, f"duplicate dependency {source!r} -> {target!r} (already at {seen_targets[target]})")
        seen_targets[target] = path
        tkind = kinds[target]
        if typ == "host" and tkind != "host":
            raise self.fail(path, f"host {target!r} has kind {tkind!r}; a host must have kind 'host'")
        if typ == "datastore" and tkind not in DATASTORE_KINDS:
            raise self.fail(
                path, f"'uses' target {target!r} has kind {tkind!r}; allowed kinds: {list(DATASTORE_KINDS)}"
            )
        if typ == "call" and tkind in DATASTORE_KINDS:
            raise self.fail(path, f"call target {target!r} is a {tkind}; list datastores under 'uses'")
        if typ == "call" and tkind == "host":
            raise self.fail(path, f"call target {target!r} is a host; give it as 'host'")
        return Dependency(source, target, typ, strength)

    def resolve_cycles(self, components, edges, policy, order):
        """Reject dependency cycles, or break them deterministically.

        Breaking: a depth-first search visits components in declaration order
        and follows each component's edges in declaration order; an edge that
        reaches a component still on the search stack closes a cycle and is
        dropped. Every other edge is kept.
        """
        out: dict[str, list[tuple[Dependency, str]]] = {c.name: [] for c in components}
        for dep, path in edges:
            out[dep.source].append((dep, path))
        state: dict[str, int] = {}  # 1 = on stack, 2 = done
        kept_ids, dropped = set(), []
        for root in (c.name for c in components):
            if root in state:
                continue
            stack = [(root, iter(out[root]))]
            state[root] = 1
            trail = [root]
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[node] = 2
                    stack.pop()
                    trail.pop()
                    continue
                dep, path = nxt
                s = state.get(dep.target)
                if s == 1:
                    cycle = trail[trail.index(dep.target) :] + [dep.target]
                    if policy == "reject":
                        raise self.fail(
                            path,
                            "dependency cycle " + " -> ".join(cycle) + "; remove an edge or set 'cycles: break' "
                            "at the top level to drop the edge that closes each cycle (see docs/topology.md)",
                        )
                    dropped.append(dep)
                    continue
                kept_ids.add(id(dep))
                if s is None:
                    state[dep.target] = 1
                    trail.append(dep.target)
                    stack.append((dep.target, iter(out[dep.target])))
        kept = [dep for dep, _ in edges if id(dep) in kept_ids]
        return kept, dropped


def _ordered_topological_sort(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """``nodes`` with every edge's tail before its head; ties in ``nodes`` order.

    The lexicographic topological sort (Kahn's algorithm with a heap keyed by
    position) that ``networkx.lexicographical_topological_sort`` computes,
    without importing networkx on the paths every command takes.
    """
    import heapq

    index = {n: i for i, n in enumerate(nodes)}
    children: dict[str, list[str]] = {n: [] for n in nodes}
    indegree = dict.fromkeys(nodes, 0)
    for tail, head in edges:
        children[tail].append(head)
        indegree[head] += 1
    heap = [index[n] for n in nodes if indegree[n] == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        n = nodes[heapq.heappop(heap)]
        order.append(n)
        for c in children[n]:
            indegree[c] -= 1
            if indegree[c] == 0:
                heapq.heappush(heap, index[c])
    if len(order) != len(nodes):
        raise ValueError("the graph has a cycle")
    return order
