"""Topology -> Bayesian network. The only place probability tables are built.

:func:`build_network` turns a :class:`~diagnosis.model.topology.Topology` into a
:class:`Network`: our own immutable description of every variable, its states,
parents and conditional probability table. ``Network.to_pgmpy()`` is the
documented way out to a pgmpy ``DiscreteBayesianNetwork``; pgmpy objects never
leave this module and :mod:`diagnosis.inference`.

The semantics of every table are specified in ``docs/model.md``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from diagnosis.exceptions import ModelError, TopologyError, suggest
from diagnosis.model.topology import IMPAIRED, Topology

__all__ = [
    "FAULT_OK",
    "IMPAIRMENT_STATES",
    "MAX_PARENTS",
    "SYMPTOM_STATES",
    "Network",
    "Variable",
    "build_network",
    "export_network",
]

#: The fault variable's state for "none of its fault modes".
FAULT_OK = "ok"
#: States of impairment and link variables.
IMPAIRMENT_STATES = ("ok", "impaired")
#: States of a symptom variable: the check ran and was fine, or it fired.
SYMPTOM_STATES = ("passed", "fired")
#: At most this many parents per impairment variable; larger noisy-OR families
#: are divorced into a chain of link variables (exactly, see docs/model.md).
MAX_PARENTS = 6
ROLES = ("fault", "impairment", "link", "symptom")
_TOL = 1e-9


@dataclass(frozen=True, slots=True)
class Variable:
    """One network variable and its conditional probability table.

    Attributes
    ----------
    name : str
        The network name (BIF-safe: ``[A-Za-z0-9_]``).
    states : tuple of str
        Its states, in table order.
    parents : tuple of str
        Parent variable names, in table-axis order.
    table : numpy.ndarray
        Read-only float64 array of shape ``(*parent_cards, len(states))``:
        ``table[i1, ..., ik, s] = P(self = states[s] | parents = (i1, ..., ik))``.
    role : {"fault", "impairment", "link", "symptom"}
    component : str
        The component it belongs to.
    detector : str or None
        For symptoms, the detector name.
    """

    name: str
    states: tuple[str, ...]
    parents: tuple[str, ...]
    table: np.ndarray = field(repr=False)
    role: str
    component: str
    detector: str | None = None

    def __post_init__(self):
        table = np.array(self.table, dtype=np.float64)
        if table.shape[-1] != len(self.states) or table.ndim != len(self.parents) + 1:
            raise ModelError(
                f"table of {self.name!r} has shape {table.shape}; expected {len(self.parents)} parent axes and {len(self.states)} states"
            )
        if not np.all(np.isfinite(table)) or table.min() < 0.0 or table.max() > 1.0:
            raise ModelError(f"table of {self.name!r} has entries outside [0, 1]")
        sums = table.sum(axis=-1)
        worst = float(np.max(np.abs(sums - 1.0)))
        if worst > _TOL:
            raise ModelError(f"table of {self.name!r} does not normalise: a row sums to 1 {worst:+.3g}")
        table.setflags(write=False)
        object.__setattr__(self, "table", table)

    @property
    def card(self) -> int:
        return len(self.states)


@dataclass(frozen=True, slots=True)
class Network:
    """The Bayesian network built from a topology.

    Attributes
    ----------
    topology : Topology
    variables : tuple of Variable
        In topological order (parents before children).
    fault_variable : Mapping[str, str]
        Component -> the name of its fault variable.
    impairment_variable : Mapping[str, str]
        Component -> the name of its impairment variable.
    symptom_variable : Mapping[str, str]
        Symptom (``component.detector``) -> the name of its variable.
    """

    topology: Topology
    variables: tuple[Variable, ...]
    fault_variable: Mapping[str, str]
    impairment_variable: Mapping[str, str]
    symptom_variable: Mapping[str, str]
    _index: Mapping[str, Variable] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self):
        object.__setattr__(self, "_index", MappingProxyType({v.name: v for v in self.variables}))
        for name in ("fault_variable", "impairment_variable", "symptom_variable"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def variable(self, name: str) -> Variable:
        """Return the variable called ``name``; raise ModelError with suggestions."""
        try:
            return self._index[name]
        except KeyError:
            raise ModelError(f"unknown variable {name!r}{suggest(name, self._index)}") from None

    @property
    def variable_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)

    def summary(self) -> dict:
        """A JSON-ready description of the platform as modelled (``diagnosis topology show --format json``).

        Keys: ``name``; ``components`` (kind, host, fault variable, fault modes
        with prior and impact, what each depends on); ``symptoms`` (component,
        what it watches, triggers with sensitivities, false alarm, cost, network
        variable); ``actions`` (target, success by fault mode, cost);
        ``dropped_dependencies`` (edges removed to break cycles).
        """
        topology = self.topology
        return {
            "name": topology.name,
            "components": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "host": c.host,
                    "fault_variable": self.fault_variable[c.name],
                    "fault_modes": {m.name: {"prior": m.prior, "impact": m.impact} for m in c.fault_modes},
                    "depends_on": [
                        {"component": d.target, "type": d.type, "strength": d.strength}
                        for d in topology.dependencies_of(c.name)
                    ],
                }
                for c in topology.components
            ],
            "symptoms": [
                {
                    "symptom": d.symptom,
                    "component": d.component,
                    "watches": d.watches,
                    "raised_by": dict(d.sensitivity),
                    "false_alarm": d.false_alarm,
                    "cost": d.cost,
                    "variable": self.symptom_variable[d.symptom],
                }
                for d in topology.detectors
            ],
            "actions": [
                {"action": a.name, "target": a.component, "success": dict(a.success), "cost": a.cost}
                for a in topology.actions
            ],
            "dropped_dependencies": [
                {"source": d.source, "target": d.target, "type": d.type} for d in topology.dropped_dependencies
            ],
        }

    def to_pgmpy(self):
        """Return an equivalent pgmpy ``DiscreteBayesianNetwork``.

        This is the boundary to pgmpy: a fresh object each call, with state
        names, whose CPDs hold exactly this network's tables.
        """
        from diagnosis.model.pgmpy_interop import DiscreteBayesianNetwork, TabularCPD

        model = DiscreteBayesianNetwork()
        model.add_nodes_from(self.variable_names)
        model.add_edges_from((p, v.name) for v in self.variables for p in v.parents)
        cpds = []
        for v in self.variables:
            parents = [self.variable(p) for p in v.parents]
            values = v.table.reshape(-1, v.card).T  # (card, prod(parent cards)), last parent fastest
            cpds.append(
                TabularCPD(
                    v.name,
                    v.card,
                    values,
                    evidence=list(v.parents) or None,
                    evidence_card=[p.card for p in parents] or None,
                    state_names={v.name: list(v.states), **{p.name: list(p.states) for p in parents}},
                )
            )
        model.add_cpds(*cpds)
        return model


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def build_network(topology: Topology, *, max_parents: int = MAX_PARENTS) -> Network:
    """Build the Bayesian network of a topology.

    Parameters
    ----------
    topology : Topology
        A validated topology.
    max_parents : int, default 6
        At most this many parents per impairment or link variable. Larger
        noisy-OR families are divorced into chains of link variables; the
        joint distribution of the other variables is unchanged.

    Returns
    -------
    Network

    Raises
    ------
    TopologyError
        If two components map to the same network name (names differing only
        in ``-`` versus ``_``, say).

    Examples
    --------
    >>> from diagnosis import bundled_topology, load_topology, build_network
    >>> net = build_network(load_topology(bundled_topology("webshop")))
    >>> net.fault_variable["db"], net.variable("fault__db").states
    ('fault__db', ('ok', 'down', 'slow_queries', 'disk_full', 'inconsistency'))
    """
    if not isinstance(max_parents, int) or max_parents < 3:
        raise ModelError(f"max_parents must be an int >= 3. Got {max_parents!r} instead.")
    owner: dict[str, str] = {}

    def claim(var: str, component: str) -> str:
        if var in owner and owner[var] != component:
            raise TopologyError(
                f"components {owner[var]!r} and {component!r} both map to network name {var!r}; rename one "
                "(network names replace every character outside [A-Za-z0-9_] with '_')",
                source=topology.source,
            )
        owner[var] = component
        return var

    fault_var = {c.name: claim(f"fault__{_safe(c.name)}", c.name) for c in topology.components}
    impaired_var = {c.name: claim(f"impaired__{_safe(c.name)}", c.name) for c in topology.components}
    variables: dict[str, Variable] = {}

    for c in topology.components:
        states = (FAULT_OK, *(m.name for m in c.fault_modes))
        prior = np.array([c.p_ok, *(m.prior for m in c.fault_modes)])
        # p_ok is computed as 1 - fsum(priors); renormalise away the last ulp.
        variables[fault_var[c.name]] = Variable(fault_var[c.name], states, (), prior / prior.sum(), "fault", c.name)

    # Impairment in dependency order: a component after everything it depends on.
    order = topology.dependency_order()
    k_max = max_parents - 1  # slots beside the fault variable
    for name in order:
        c = topology.component(name)
        deps = [(impaired_var[d.target], d.strength) for d in topology.dependencies_of(name)]
        prev: str | None = None
        n_links = 0
        while len(deps) + (prev is not None) > k_max:
            take = max_parents - (prev is not None)
            group, deps = deps[:take], deps[take:]
            n_links += 1
            link = claim(f"link__{_safe(name)}__{n_links}", name)
            inputs = ([(prev, 1.0)] if prev else []) + group
            variables[link] = Variable(
                link,
                IMPAIRMENT_STATES,
                tuple(p for p, _ in inputs),
                _noisy_or([s for _, s in inputs], 0.0),
                "link",
                name,
            )
            prev = link
        inputs = ([(prev, 1.0)] if prev else []) + deps
        impacts = [0.0] + [m.impact for m in c.fault_modes]
        table = _noisy_or([s for _, s in inputs], topology.leak, own=impacts)
        iv = impaired_var[name]
        variables[iv] = Variable(
            iv, IMPAIRMENT_STATES, (fault_var[name], *(p for p, _ in inputs)), table, "impairment", name
        )

    symptom_var = {}
    for c in topology.components:
        modes = [m.name for m in c.fault_modes]
        for d in c.detectors:
            sv = claim(f"symptom__{_safe(c.name)}__{d.name}", c.name)
            symptom_var[d.symptom] = sv
            parents, axes = [], []
            if IMPAIRED in d.sensitivity:
                parents.append(impaired_var[c.name])
                axes.append([(), ((IMPAIRED, d.sensitivity[IMPAIRED]),)])
            mode_triggers = [(m, d.sensitivity[m]) for m in modes if m in d.sensitivity]
            if mode_triggers:
                parents.append(fault_var[c.name])
                axes.append([()] + [((m, d.sensitivity[m]),) if m in d.sensitivity else () for m in modes])
            shape = [len(a) for a in axes]
            table = np.empty((*shape, 2))
            for idx in np.ndindex(*shape):
                active = [t for ax, i in zip(axes, idx) for t in ax[i]]
                p_fire = d.false_alarm if not active else 1.0 - math.prod(1.0 - s for _, s in active)
                table[idx] = (1.0 - p_fire, p_fire)
            variables[sv] = Variable(sv, SYMPTOM_STATES, tuple(parents), table, "symptom", c.name, d.name)

    ordered = _topological(variables)
    return Network(topology, ordered, fault_var, impaired_var, symptom_var)


def _noisy_or(strengths: Sequence[float], leak: float, own: Sequence[float] | None = None) -> np.ndarray:
    """Noisy-OR table over binary inputs (plus an optional multi-state own-fault axis first).

    ``P(ok | own=f, x) = (1 - leak) * (1 - own[f]) * prod_i (1 - strengths[i]) ** x_i``.
    """
    p_ok = np.array(1.0 - leak)
    for s in strengths:
        p_ok = np.multiply.outer(p_ok, np.array([1.0, 1.0 - s]))
    if own is not None:
        p_ok = np.multiply.outer(1.0 - np.asarray(own, dtype=float), p_ok)
    return np.stack([p_ok, 1.0 - p_ok], axis=-1)


def _topological(variables: Mapping[str, Variable]) -> tuple[Variable, ...]:
    from diagnosis.model.topology import _ordered_topological_sort

    order = _ordered_topological_sort(list(variables), [(p, v.name) for v in variables.values() for p in v.parents])
    return tuple(variables[n] for n in order)


def export_network(network: Network, path: str | os.PathLike) -> Path:
    """Write the network as BIF (``.bif``) or XMLBIF (``.xmlbif``/``.xml``).

    The file is written to a temporary file in the same folder and renamed,
    so a failed export never leaves a half-written file. The tests check
    that pgmpy and pyAgrum read the tables back unchanged.

    Parameters
    ----------
    network : Network
    path : str or path-like
        Destination; its suffix picks the format.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from diagnosis.model.pgmpy_interop import BIFWriter, XMLBIFWriter

    path = Path(path)
    suffix = path.suffix.lower()
    writers = {".bif": BIFWriter, ".xmlbif": XMLBIFWriter, ".xml": XMLBIFWriter}
    if suffix not in writers:
        raise ModelError(
            f"cannot export to {str(path)!r}: unknown format {suffix!r}; allowed suffixes: {sorted(writers)}"
        )
    if not path.parent.is_dir():
        raise ModelError(f"cannot export to {str(path)!r}: folder {str(path.parent)!r} does not exist")
    model = network.to_pgmpy()
    writer = writers[suffix](model)
    text = str(writer)
    from diagnosis._files import atomic_write_text  # tempfile etc. only when writing

    atomic_write_text(path, text)
    return path
