"""The parameters being fitted, and the expanded network whose marginals give EM's expected counts (private).

:class:`Layout` is the fixed structure of a topology seen as a parameter
vector: which entries are fault-mode priors, detector rates, edge strengths
and recovery successes. A parameter vector ``theta`` (float64, one entry per
fitted number) together with the layout gives back a :class:`Topology`.

:func:`expanded_tables` builds the *latent-activation* form of the network of
``docs/model.md`` for the compiled engine: each noisy-OR input gets an explicit
binary activation variable,

    own__c        = 1 with probability impact(c, fault_c)          (parent fault__c)
    active__c__t  = 1 with probability s(c, t) if impaired__t        (parent impaired__t)
    impaired__c   = OR(own__c, active__c__t, ...), or the leak when none is active

(long OR lists are chained through ``or__c__j`` variables of at most
``max_parents`` inputs), and each component gets a deterministic
``family__c`` variable whose state is the pair (fault__c, impaired__c).
Summing the activations out gives exactly the noisy-OR tables of
:func:`diagnosis.model.network.build_network`; the fault and symptom tables are taken
from it unchanged. So one batched engine query of the ``family__`` and
``active__`` marginals yields every expected count EM needs: the joint
posterior of each detector's parents, and P(dependency impairment reached the
dependent | evidence) for each edge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from diagnosis.inference import ModelTables
from diagnosis.model.network import (
    FAULT_OK,
    IMPAIRMENT_STATES,
    MAX_PARENTS,
    SYMPTOM_STATES,
    Network,
    build_network,
)
from diagnosis.model.topology import IMPAIRED, Topology

__all__ = ["KINDS", "SECTIONS", "Layout", "expanded_tables"]

#: Parameter kinds, in the order of the parameter vector.
KINDS = ("prior", "strength", "false_alarm", "sensitivity", "success")
#: The sections of a topology that can be fitted, and the parameter kinds in each.
SECTIONS: Mapping[str, tuple[str, ...]] = {
    "fault_modes": ("prior",),
    "dependencies": ("strength",),
    "detectors": ("false_alarm", "sensitivity"),
    "actions": ("success",),
}


@dataclass(frozen=True, eq=False)
class Layout:
    """The fitted parameters of a topology, as slices of one vector.

    Attributes
    ----------
    topology : Topology
        The starting topology (its values are the prior means).
    network : Network
        Its network (names of the fault, impairment and symptom variables).
    kind, component, name, detail : tuple of str
        Per parameter: its kind (:data:`KINDS`), component, and what it is:
        ``prior`` (fault mode, ""), ``strength`` (dependency target, edge type),
        ``false_alarm`` (detector, ""), ``sensitivity`` (detector, trigger),
        ``success`` (action, fault mode).
    theta0 : ndarray
        The starting topology's values.
    prior_slices : tuple of slice
        Per component, its fault-mode priors (declaration order; ``ok`` is the rest).
    edge_index : ndarray of int
        Per dependency (``topology.dependencies`` order), its parameter.
    edges : tuple of (int, int)
        Per dependency, (source, target) component indices.
    alpha_index : ndarray of int
        Per detector (``topology.detectors`` order), its false-alarm parameter.
    sigma_slices : tuple of slice
        Per detector, its sensitivities (trigger declaration order).
    detector_component : ndarray of int
    triggers : tuple of tuple of str
        Per detector, its triggers.
    active : tuple of ndarray
        Per detector, bool array ``(n_triggers, n_fault_states, 2)``: trigger
        ``t`` is active when fault__c = f and impaired__c = i.
    action_target : ndarray of int
        Per action (``topology.actions`` order), its target component.
    success_slices : tuple of slice
        Per action, P(R | mode) for its listed modes.
    success_modes : tuple of ndarray of int
        Per action, the fault-state index (1-based, 0 is ok) of each listed mode.
    """

    topology: Topology
    network: Network
    kind: tuple[str, ...]
    component: tuple[str, ...]
    name: tuple[str, ...]
    detail: tuple[str, ...]
    theta0: np.ndarray
    prior_slices: tuple[slice, ...]
    edge_index: np.ndarray
    edges: tuple[tuple[int, int], ...]
    alpha_index: np.ndarray
    sigma_slices: tuple[slice, ...]
    detector_component: np.ndarray
    triggers: tuple[tuple[str, ...], ...]
    active: tuple[np.ndarray, ...]
    action_target: np.ndarray
    success_slices: tuple[slice, ...]
    success_modes: tuple[np.ndarray, ...]

    @classmethod
    def from_topology(cls, topology: Topology) -> Layout:
        comps = topology.components
        cindex = {c.name: j for j, c in enumerate(comps)}
        kind, component, name, detail, theta = [], [], [], [], []

        def add(k, c, n, d, v):
            kind.append(k)
            component.append(c)
            name.append(n)
            detail.append(d)
            theta.append(float(v))
            return len(theta) - 1

        prior_slices = []
        for c in comps:
            start = len(theta)
            for m in c.fault_modes:
                add("prior", c.name, m.name, "", m.prior)
            prior_slices.append(slice(start, len(theta)))
        edge_index, edges = [], []
        for d in topology.dependencies:
            edge_index.append(add("strength", d.source, d.target, d.type, d.strength))
            edges.append((cindex[d.source], cindex[d.target]))
        alpha_index, sigma_slices, det_comp, triggers, active = [], [], [], [], []
        for d in topology.detectors:
            alpha_index.append(add("false_alarm", d.component, d.name, "", d.false_alarm))
        for d in topology.detectors:
            c = topology.component(d.component)
            start = len(theta)
            trig = tuple(d.sensitivity)
            for t in trig:
                add("sensitivity", d.component, d.name, t, d.sensitivity[t])
            sigma_slices.append(slice(start, len(theta)))
            det_comp.append(cindex[d.component])
            triggers.append(trig)
            states = (FAULT_OK, *(m.name for m in c.fault_modes))
            act = np.zeros((len(trig), len(states), 2), dtype=bool)
            for k, t in enumerate(trig):
                if t == IMPAIRED:
                    act[k, :, 1] = True
                else:
                    act[k, states.index(t), :] = True
            active.append(act)
        action_target, success_slices, success_modes = [], [], []
        for a in topology.actions:
            c = topology.component(a.component)
            states = (FAULT_OK, *(m.name for m in c.fault_modes))
            start = len(theta)
            for m, p in a.success.items():
                add("success", a.component, a.name, m, p)
            success_slices.append(slice(start, len(theta)))
            success_modes.append(np.array([states.index(m) for m in a.success], dtype=np.int64))
            action_target.append(cindex[a.component])
        theta0 = np.array(theta, dtype=np.float64)
        theta0.setflags(write=False)
        return cls(
            topology=topology,
            network=build_network(topology),
            kind=tuple(kind),
            component=tuple(component),
            name=tuple(name),
            detail=tuple(detail),
            theta0=theta0,
            prior_slices=tuple(prior_slices),
            edge_index=np.array(edge_index, dtype=np.int64),
            edges=tuple(edges),
            alpha_index=np.array(alpha_index, dtype=np.int64),
            sigma_slices=tuple(sigma_slices),
            detector_component=np.array(det_comp, dtype=np.int64),
            triggers=tuple(triggers),
            active=tuple(active),
            action_target=np.array(action_target, dtype=np.int64),
            success_slices=tuple(success_slices),
            success_modes=tuple(success_modes),
        )

    @property
    def n_parameters(self) -> int:
        return len(self.theta0)

    def mask(self, kinds: Sequence[str]) -> np.ndarray:
        """Bool array: which parameters are of one of ``kinds``."""
        return np.isin(np.array(self.kind, dtype=object), list(kinds))

    def fault_prior(self, theta: np.ndarray, j: int) -> np.ndarray:
        """Component ``j``'s fault distribution ``(ok, modes...)`` under ``theta``."""
        modes = theta[self.prior_slices[j]]
        return np.concatenate([[max(0.0, 1.0 - math.fsum(modes))], modes])

    def success_table(self, theta: np.ndarray, a: int) -> np.ndarray:
        """P(R | fault state, action ``a``) over its target's fault states (0 for ok and unlisted modes)."""
        c = self.topology.components[self.action_target[a]]
        out = np.zeros(1 + len(c.fault_modes))
        out[self.success_modes[a]] = theta[self.success_slices[a]]
        return out

    def to_topology(self, theta: np.ndarray) -> Topology:
        """The starting topology with the values of ``theta``."""
        topo = self.topology
        th = [float(x) for x in theta]
        comps = []
        di = 0
        ai = 0
        for j, c in enumerate(topo.components):
            pri = th[self.prior_slices[j]]
            modes = tuple(replace(m, prior=p) for m, p in zip(c.fault_modes, pri))
            dets = []
            for d in c.detectors:
                sig = th[self.sigma_slices[di]]
                dets.append(
                    replace(d, sensitivity=dict(zip(self.triggers[di], sig)), false_alarm=th[self.alpha_index[di]])
                )
                di += 1
            acts = []
            for a in c.actions:
                acts.append(replace(a, success=dict(zip(a.success, th[self.success_slices[ai]]))))
                ai += 1
            comps.append(replace(c, fault_modes=modes, detectors=tuple(dets), actions=tuple(acts)))
        deps = tuple(replace(d, strength=th[k]) for d, k in zip(topo.dependencies, self.edge_index))
        return replace(topo, components=tuple(comps), dependencies=deps)


def _or_table(n_inputs: int, leak: float) -> np.ndarray:
    """``(2, 2, ..., 2)`` table of a deterministic OR with a leak: the variable axis first."""
    p_on = np.ones((2,) * n_inputs)
    p_on[(0,) * n_inputs] = leak
    return np.stack([1.0 - p_on, p_on])


def expanded_tables(layout: Layout, theta: np.ndarray, *, max_parents: int = MAX_PARENTS) -> ModelTables:
    """The latent-activation network of ``theta`` as engine tables (see the module docstring)."""
    topo = layout.to_topology(theta)
    net = build_network(topo)
    names: list[str] = []
    states: list[tuple[str, ...]] = []
    parents: list[tuple[str, ...]] = []
    cpts: list[np.ndarray] = []

    def add(name, sts, pars, cpt):
        names.append(name)
        states.append(tuple(sts))
        parents.append(tuple(pars))
        cpts.append(np.ascontiguousarray(cpt, dtype=np.float64))
        return name

    for v in net.variables:
        if v.role == "fault":
            add(v.name, v.states, (), v.table)
    cindex = {c.name: j for j, c in enumerate(topo.components)}
    for v in net.variables:
        if v.role != "impairment":
            continue
        c = topo.component(v.component)
        j = cindex[c.name]
        safe = v.name[len("impaired__") :]
        fvar = net.fault_variable[c.name]
        impacts = np.array([0.0] + [m.impact for m in c.fault_modes])
        inputs = [add(f"own__{safe}", IMPAIRMENT_STATES, (fvar,), np.stack([1.0 - impacts, impacts]))]
        for k, (src, tgt) in enumerate(layout.edges):
            if src != j:
                continue
            tname = topo.components[tgt].name
            s = float(theta[layout.edge_index[k]])
            tvar = net.impairment_variable[tname]
            inputs.append(
                add(
                    f"active__{safe}__{tvar[len('impaired__') :]}",
                    IMPAIRMENT_STATES,
                    (tvar,),
                    np.array([[1.0, 1.0 - s], [0.0, s]]),
                )
            )
        n_or = 0
        while len(inputs) > max_parents:
            n_or += 1
            group, inputs = inputs[:max_parents], inputs[max_parents:]
            inputs.insert(0, add(f"or__{safe}__{n_or}", IMPAIRMENT_STATES, group, _or_table(len(group), 0.0)))
        add(v.name, IMPAIRMENT_STATES, inputs, _or_table(len(inputs), topo.leak))
        k1 = 1 + len(c.fault_modes)
        fam = np.zeros((2 * k1, k1, 2))
        for f in range(k1):
            for i in range(2):
                fam[2 * f + i, f, i] = 1.0
        add(
            f"family__{safe}",
            [f"{s}|{t}" for s in (FAULT_OK, *(m.name for m in c.fault_modes)) for t in IMPAIRMENT_STATES],
            (fvar, v.name),
            fam,
        )
    for v in net.variables:
        if v.role == "symptom":
            add(v.name, SYMPTOM_STATES, v.parents, np.moveaxis(v.table, -1, 0))
    index = {n: i for i, n in enumerate(names)}
    for c in cpts:
        c.setflags(write=False)
    return ModelTables(
        names=tuple(names),
        states=tuple(states),
        cards=np.array([len(s) for s in states], dtype=np.int64),
        parents=tuple(tuple(index[p] for p in ps) for ps in parents),
        cpts=tuple(cpts),
    )
