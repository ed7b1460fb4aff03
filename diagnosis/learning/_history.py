"""An incident log as the arrays EM works on (private).

:class:`History` holds, for validated incidents of one topology:

* the evidence: per incident and detector, ``-1`` (the check did not run:
  missing, not a negative), ``0`` passed or ``1`` fired, and soft likelihoods;
* the labels, as a likelihood over each component's fault states: the full
  fault list when the log has it (``faults``; ``none`` = nothing was faulty),
  else the confirmed root cause (its component in that mode, or in some fault
  mode when only the component is known), else nothing;
* the recovery attempts with a known outcome;
* each incident's weight (1, or the half-life decay) and the opening times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from diagnosis.exceptions import IncidentLogError
from diagnosis.logs.schema import NO_FAULT, IncidentFrame, parse_faults
from diagnosis.model.network import FAULT_OK
from diagnosis.model.topology import Topology

__all__ = ["History"]

_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True, eq=False)
class History:
    """Validated incidents as arrays (see the module docstring).

    Attributes
    ----------
    n : int
        Incidents.
    ids : ndarray of object
    opened_ns : ndarray of int64
        Opening times, ns since the epoch (UTC).
    weight : ndarray of float64
        Per incident: 1, or ``0.5 ** (age / half_life)`` with the age counted
        back from the newest incident.
    observed : ndarray of int8, shape (n, n_detectors)
        -1 not run, 0 passed, 1 fired (hard observations).
    soft : dict of int to ndarray
        Detector index -> ``(n, 2)`` likelihoods ``(P(score | passed), P(score | fired))``;
        rows of ones where the detector has no soft observation.
    labels : tuple of ndarray
        Per component, ``(n, n_fault_states)``: 1 where a state is allowed by
        the incident's confirmed cause or fault list, 0 where ruled out.
    label_kind : ndarray of int8
        Per incident: 2 full fault list, 1 root cause only, 0 unknown.
    n_no_fault : int
        Incidents whose fault list says nothing was faulty (``faults: none``).
    attempt_case, attempt_action : ndarray of int64
        Recovery attempts with outcome ``success`` or ``failure``: the incident
        and the action (``topology.actions`` index).
    attempt_success : ndarray of bool
    n_unknown_outcomes : int
        Attempts with outcome ``unknown`` (not used).
    """

    n: int
    ids: np.ndarray
    opened_ns: np.ndarray
    weight: np.ndarray
    observed: np.ndarray
    soft: dict
    labels: tuple
    label_kind: np.ndarray
    n_no_fault: int
    attempt_case: np.ndarray
    attempt_action: np.ndarray
    attempt_success: np.ndarray
    n_unknown_outcomes: int

    @classmethod
    def from_frame(cls, frame: IncidentFrame, topology: Topology, *, half_life_days: float | None = None) -> History:
        """Arrays of a frame already checked by :func:`~diagnosis.logs.schema.validate_frame`."""
        inc = frame.incidents
        n = len(inc)
        if n == 0:
            raise IncidentLogError("no incidents to fit on: the log is empty or every record was rejected")
        ids = inc["id"].to_numpy(dtype=object)
        opened = inc["opened"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        if half_life_days is None:
            weight = np.ones(n)
        else:
            age_days = (opened.max() - opened) / _NS_PER_DAY
            weight = np.exp2(-age_days / half_life_days)
        index = pd.Index(ids)

        detectors = topology.detectors
        dindex = {d.symptom: k for k, d in enumerate(detectors)}
        observed = np.full((n, len(detectors)), -1, dtype=np.int8)
        soft: dict[int, np.ndarray] = {}
        obs = frame.observations
        if len(obs):
            rows = index.get_indexer(obs["incident_id"])
            cols = obs["symptom"].map(dindex).to_numpy(dtype=np.int64)
            value = obs["value"].to_numpy(dtype=object)
            hard = value != "soft"
            observed[rows[hard], cols[hard]] = np.where(value[hard] == "fired", 1, 0)
            sel = np.flatnonzero(~hard)
            pf, pp = obs["p_fired"].to_numpy(), obs["p_passed"].to_numpy()
            for k in sel:
                lik = soft.setdefault(int(cols[k]), np.ones((n, 2)))
                lik[rows[k]] = (pp[k], pf[k])

        comps = topology.components
        cindex = {c.name: j for j, c in enumerate(comps)}
        states = [(FAULT_OK, *(m.name for m in c.fault_modes)) for c in comps]
        labels = [np.ones((n, len(s))) for s in states]
        label_kind = np.zeros(n, dtype=np.int8)
        n_no_fault = 0
        faults = inc["faults"].to_numpy(dtype=object)
        cause_c = inc["cause_component"].to_numpy(dtype=object)
        cause_m = inc["cause_fault_mode"].to_numpy(dtype=object)
        for i in range(n):
            if faults[i] is not None:
                label_kind[i] = 2
                n_no_fault += faults[i] == NO_FAULT
                for lab in labels:
                    lab[i] = 0.0
                    lab[i, 0] = 1.0
                for c, m in parse_faults(faults[i]):
                    j = cindex[c]
                    labels[j][i] = 0.0
                    labels[j][i, states[j].index(m)] = 1.0
            elif cause_c[i] is not None:
                label_kind[i] = 1
                j = cindex[cause_c[i]]
                if cause_m[i] is None:
                    labels[j][i, 0] = 0.0
                else:
                    labels[j][i] = 0.0
                    labels[j][i, states[j].index(cause_m[i])] = 1.0

        acts = frame.actions
        aindex = {(a.name, a.component): k for k, a in enumerate(topology.actions)}
        if len(acts):
            outcome = acts["outcome"].to_numpy(dtype=object)
            known = outcome != "unknown"
            case = index.get_indexer(acts["incident_id"])[known]
            action = np.array(
                [aindex[(a, t)] for a, t in zip(acts["action"].to_numpy()[known], acts["target"].to_numpy()[known])],
                dtype=np.int64,
            )
            success = outcome[known] == "success"
            n_unknown = int((~known).sum())
        else:
            case = action = np.zeros(0, dtype=np.int64)
            success = np.zeros(0, dtype=bool)
            n_unknown = 0
        return cls(
            n=n,
            ids=ids,
            opened_ns=opened,
            weight=weight,
            observed=observed,
            soft=soft,
            labels=tuple(labels),
            label_kind=label_kind,
            n_no_fault=n_no_fault,
            attempt_case=np.asarray(case, dtype=np.int64),
            attempt_action=action,
            attempt_success=np.asarray(success, dtype=bool),
            n_unknown_outcomes=n_unknown,
        )
