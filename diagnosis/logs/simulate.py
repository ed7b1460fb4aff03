"""Sampling incidents with ground truth from a topology's model.

:func:`simulate` draws every network variable by vectorised forward sampling
(numpy, all incidents at once, in topological order), so the root faults,
their propagation along dependencies and the detectors' false alarms and
misses follow the model exactly. Then:

* **checks not run:** each detector is observed with a probability that
  depends on what it watches (continuous metrics usually, manual checks
  rarely; :data:`P_OBSERVED`). Unobserved detectors leave no record, and
  whether a check ran does not depend on the fault, so the missingness is
  ignorable;
* **an incident is opened when an observed detector fires.** Samples with
  no fired observation are discarded. This conditions on the evidence only,
  so posteriors computed by the same model stay calibrated;
* **ground truth:** every true fault is recorded (``faults``; possibly none,
  for an incident opened by false alarms); the root cause is the fault
  deepest in the dependency graph (the one the others depend on), or null;
* **recovery attempts:** up to ``max_actions`` actions are tried, each on a
  component chosen among those with fired symptoms (in proportion to how
  many fired) with one of its actions at random; an attempt succeeds with
  probability ``P(R | fault at its target, a)`` (0 on a healthy target), and
  the first success ends the incident.

The same inputs and seed give the same incidents.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from diagnosis.exceptions import DiagnosisError, ParameterError
from diagnosis.logs.schema import (
    ACTION_COLUMNS,
    INCIDENT_COLUMNS,
    NO_FAULT,
    OBSERVATION_COLUMNS,
    IncidentFrame,
    _normalise,
)
from diagnosis.model.network import SYMPTOM_STATES, Network, build_network
from diagnosis.model.topology import Topology

__all__ = [
    "P_OBSERVED",
    "P_OBSERVED_OTHER",
    "OpenedIncidents",
    "iter_simulate",
    "observation_probabilities",
    "sample_network",
    "sample_opened",
    "simulate",
]

#: Probability that a detector is observed in an incident, by what it watches.
P_OBSERVED: Mapping[str, float] = {
    "latency": 0.9,
    "error_rate": 0.9,
    "cpu": 0.8,
    "memory": 0.8,
    "disk_usage": 0.8,
    "queue_depth": 0.8,
    "health_check": 0.5,
    "fs_integrity": 0.2,
    "consistency_check": 0.2,
}
P_OBSERVED_OTHER = 0.5
_FIRED = SYMPTOM_STATES.index("fired")


def sample_network(network: Network, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Forward-sample ``n`` joint states of every network variable.

    Returns
    -------
    dict str -> int array of shape (n,)
        State index per variable.
    """
    out: dict[str, np.ndarray] = {}
    for v in network.variables:
        probs = v.table[tuple(out[p] for p in v.parents)] if v.parents else np.broadcast_to(v.table, (n, v.card))
        cum = np.cumsum(probs, axis=-1)
        u = rng.random(n)[:, None]
        idx = (u >= cum[:, :-1]).sum(axis=1) if v.card > 1 else np.zeros(n, dtype=np.int64)
        out[v.name] = idx.astype(np.int16)
    return out


def simulate(
    model: Topology | Network,
    n: int,
    *,
    rng: int | np.random.Generator | None = None,
    p_observed: Mapping[str, float] | None = None,
    max_actions: int = 3,
    start: str = "2026-01-01T00:00:00Z",
    mean_gap_hours: float | None = None,
    id_prefix: str = "sim",
    block_size: int = 25_000,
) -> IncidentFrame:
    """Simulate ``n`` incidents with ground truth (see the module docstring).

    Parameters
    ----------
    model : Topology or Network
    n : int
        Number of incidents to return.
    rng : int, Generator or None
        Seed or generator; the same seed gives the same incidents.
    p_observed : mapping, optional
        Overrides of :data:`P_OBSERVED` (what a detector watches -> probability
        it is observed).
    max_actions : int, default 3
        Most recovery attempts per incident.
    start : str
        Time before the first incident; incidents follow at exponential gaps.
    mean_gap_hours : float, optional
        Mean gap between incidents; by default 6 hours, shortened for large
        ``n`` so that the log spans at most three years.
    id_prefix : str
        Incident ids are ``{id_prefix}-{i:08d}``.
    block_size : int, default 25000
        Incidents simulated per block (see :func:`iter_simulate`).

    Returns
    -------
    IncidentFrame

    Examples
    --------
    >>> from diagnosis import bundled_topology, load_topology
    >>> log = simulate(load_topology(bundled_topology("webshop")), 3, rng=1)
    >>> list(log.incidents["id"])
    ['sim-00000000', 'sim-00000001', 'sim-00000002']
    """
    return IncidentFrame.concat(
        list(
            iter_simulate(
                model, n, rng=rng, p_observed=p_observed, max_actions=max_actions, start=start,
                mean_gap_hours=mean_gap_hours, id_prefix=id_prefix, block_size=block_size,
            )
        )
    )  # fmt: skip


def iter_simulate(
    model: Topology | Network,
    n: int,
    *,
    rng: int | np.random.Generator | None = None,
    p_observed: Mapping[str, float] | None = None,
    max_actions: int = 3,
    start: str = "2026-01-01T00:00:00Z",
    mean_gap_hours: float | None = None,
    id_prefix: str = "sim",
    block_size: int = 25_000,
) -> Iterator[IncidentFrame]:
    """Simulate ``n`` incidents as a stream of blocks of ``block_size`` (memory stays flat).

    Block ``b`` draws from the ``b``-th generator spawned from ``rng``, so the
    incidents depend on the seed and the block size only, and
    :func:`simulate` returns exactly the concatenation of these blocks.
    Parameters as :func:`simulate`.
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ParameterError(f"The 'n' parameter of simulate must be an int >= 0. Got {n!r} instead.")
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ParameterError(f"The 'block_size' parameter of simulate must be an int >= 1. Got {block_size!r} instead.")
    network = model if isinstance(model, Network) else build_network(model)
    probs = observation_probabilities(p_observed, caller="simulate")
    if mean_gap_hours is None:
        mean_gap_hours = min(6.0, 3 * 365 * 24 / max(int(n), 1))
    if not (isinstance(mean_gap_hours, (int, float)) and 0 < mean_gap_hours and np.isfinite(mean_gap_hours)):
        raise ParameterError(
            f"The 'mean_gap_hours' parameter of simulate must be a number > 0. Got {mean_gap_hours!r} instead."
        )
    parent = np.random.default_rng(rng)
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    done = 0
    while done < n:
        m = min(block_size, n - done)
        (gen,) = parent.spawn(1)
        frame, t0 = _simulate_block(
            network, m, gen, probs=probs, max_actions=max_actions, t0=t0, mean_gap_hours=mean_gap_hours,
            id_prefix=id_prefix, index0=done,
        )  # fmt: skip
        done += m
        yield frame


@dataclass(frozen=True, slots=True)
class OpenedIncidents:
    """Incidents drawn from a network and kept when an observed check fired (see :func:`sample_opened`).

    Attributes
    ----------
    faults : ndarray of int, shape (n, n_components)
        True fault-state index per component (0 = ok), in topology order.
    symptoms : ndarray of int, shape (n, n_detectors)
        True symptom-state index per detector (1 = fired), in topology order.
    observed : ndarray of bool, shape (n, n_detectors)
        Whether each check was run in the incident.
    """

    faults: np.ndarray
    symptoms: np.ndarray
    observed: np.ndarray


def observation_probabilities(p_observed: Mapping[str, float] | None, *, caller: str) -> dict[str, float]:
    """:data:`P_OBSERVED` updated by ``p_observed``, each checked to lie in [0, 1]."""
    probs = dict(P_OBSERVED)
    probs.update(p_observed or {})
    for k, p in probs.items():
        if not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0.0 <= p <= 1.0):
            raise ParameterError(
                f"The 'p_observed' parameter of {caller} must map signals to probabilities in [0, 1]; "
                f"p_observed[{k!r}] is {p!r}."
            )
    return probs


def sample_opened(
    network: Network,
    n: int,
    gen: np.random.Generator,
    *,
    probs: Mapping[str, float],
    require_fault: bool = False,
    batch_size: int = 50_000,
    max_rounds: int = 10_000,
) -> OpenedIncidents:
    """Draw ``n`` incidents that open: some check that was run fired (and, optionally, something is faulty).

    Each round forward-samples ``batch_size`` cases of the network, draws which
    checks were run (probability by what each detector watches, from
    ``probs``; :data:`P_OBSERVED_OTHER` otherwise) and keeps the cases in which
    an observed check fired. This one sampler serves :func:`simulate` and the
    policy comparison of :func:`diagnosis.postmortem.planning.compare_policies`.

    Raises
    ------
    ParameterError
        When no detector is ever observed.
    DiagnosisError
        When ``max_rounds`` rounds keep too few cases (observed checks almost never fire).
    """
    detectors = network.topology.detectors
    comps = network.topology.components
    sym_vars = [network.symptom_variable[d.symptom] for d in detectors]
    fault_vars = [network.fault_variable[c.name] for c in comps]
    p_obs = np.array([probs.get(d.watches, P_OBSERVED_OTHER) for d in detectors])
    if n > 0 and not np.any(p_obs > 0):
        raise ParameterError("no detector is ever observed (every p_observed is 0): no incident would open")
    kept_faults, kept_symptoms, kept_observed = [], [], []
    n_kept = rounds = 0
    while n_kept < n:
        rounds += 1
        if rounds > max_rounds:
            raise DiagnosisError("simulation made no progress: observed detectors almost never fire")
        sample = sample_network(network, batch_size, gen)
        sym = (
            np.stack([sample[v] for v in sym_vars], axis=1).astype(np.int64)
            if sym_vars
            else np.zeros((batch_size, 0), np.int64)
        )
        flt = np.stack([sample[v] for v in fault_vars], axis=1)
        observed = gen.random((batch_size, len(detectors))) < p_obs
        keep = ((sym == _FIRED) & observed).any(axis=1)
        if require_fault:
            keep &= (flt > 0).any(axis=1)
        idx = np.flatnonzero(keep)[: n - n_kept]
        kept_faults.append(flt[idx])
        kept_symptoms.append(sym[idx])
        kept_observed.append(observed[idx])
        n_kept += len(idx)
    if not kept_faults:
        return OpenedIncidents(
            np.zeros((0, len(comps)), np.int16),
            np.zeros((0, len(detectors)), np.int64),
            np.zeros((0, len(detectors)), bool),
        )
    return OpenedIncidents(np.concatenate(kept_faults), np.concatenate(kept_symptoms), np.concatenate(kept_observed))


def _simulate_block(network, n, gen, *, probs, max_actions, t0, mean_gap_hours, id_prefix, index0, batch_size=50_000):
    topo = network.topology
    detectors = topo.detectors
    comps = topo.components
    fault_vars = [network.fault_variable[c.name] for c in comps]
    # Depth: components later in dependency order are deeper (dependencies come first).
    order = topo.dependency_order()
    depth_rank = np.array([len(order) - order.index(c.name) for c in comps])  # smaller = deeper

    opened = sample_opened(network, n, gen, probs=probs, batch_size=batch_size)
    faults, observed = opened.faults, opened.observed
    fired = opened.symptoms == _FIRED

    ids = np.array([f"{id_prefix}-{index0 + i:08d}" for i in range(n)], dtype=object)
    gaps = gen.exponential(mean_gap_hours * 3600.0, size=n)
    opened_at = t0 + pd.to_timedelta(np.cumsum(gaps), unit="s")

    # Ground truth.
    mode_names = [np.array(network.variable(v).states, dtype=object) for v in fault_vars]
    faulty = faults > 0
    fault_text = np.full(n, NO_FAULT, dtype=object)
    cause_c = np.full(n, None, dtype=object)
    cause_m = np.full(n, None, dtype=object)
    rows_with = np.flatnonzero(faulty.any(axis=1))
    for i in rows_with:
        cols = np.flatnonzero(faulty[i])
        fault_text[i] = "|".join(f"{comps[j].name}:{mode_names[j][faults[i, j]]}" for j in cols)
        root = cols[np.argmin(depth_rank[cols])]
        cause_c[i], cause_m[i] = comps[root].name, mode_names[root][faults[i, root]]

    # Observations (long form).
    oi, od = np.nonzero(observed)
    sym_names = np.array([d.symptom for d in detectors], dtype=object)
    obs_offsets = gen.uniform(0, 600, size=len(oi))
    observations = pd.DataFrame(
        {
            "incident_id": ids[oi],
            "symptom": sym_names[od],
            "value": np.where(fired[oi, od], "fired", "passed").astype(object),
            "p_fired": np.nan,
            "p_passed": np.nan,
            "time": opened_at[oi] + pd.to_timedelta(obs_offsets, unit="s"),
        }
    )

    # Recovery attempts.
    comp_index = {c.name: j for j, c in enumerate(comps)}
    det_comp = np.array([comp_index[d.component] for d in detectors])
    fired_obs = (fired & observed).astype(float)
    weight = np.zeros((n, len(comps)))
    np.add.at(weight.T, det_comp, fired_obs.T)
    actions_of = [[a for a in c.actions] for c in comps]
    success_table = [
        np.array(
            [[a.success.get(s, 0.0) for s in network.variable(fault_vars[j]).states] for a in actions_of[j]],
            dtype=float,
        ).reshape(len(actions_of[j]), network.variable(fault_vars[j]).card)
        for j in range(len(comps))
    ]
    done = np.zeros(n, dtype=bool)
    act_rows = {k: [] for k in ("incident_id", "seq", "action", "target", "time", "outcome")}
    end_ns = (opened_at + pd.to_timedelta(gen.uniform(3600, 4 * 3600, size=n), unit="s")).asi8.copy()
    has_actions = np.array([len(a) > 0 for a in actions_of])
    w = weight * has_actions
    for step in range(max_actions):
        active = np.flatnonzero(~done & (w.sum(axis=1) > 0))
        if len(active) == 0:
            break
        p = w[active] / w[active].sum(axis=1, keepdims=True)
        u = gen.random(len(active))
        target = np.minimum((u[:, None] >= np.cumsum(p, axis=1)[:, :-1]).sum(axis=1), len(comps) - 1)
        which = gen.random(len(active))
        succ_u = gen.random(len(active))
        t = opened_at[active] + pd.to_timedelta(900.0 * (step + 1) + gen.uniform(0, 300, size=len(active)), unit="s")
        for k, i in enumerate(active):
            j = target[k]
            acts = actions_of[j]
            a = min(int(which[k] * len(acts)), len(acts) - 1)
            ok = succ_u[k] < success_table[j][a, faults[i, j]]
            act_rows["incident_id"].append(ids[i])
            act_rows["seq"].append(step)
            act_rows["action"].append(acts[a].name)
            act_rows["target"].append(comps[j].name)
            act_rows["time"].append(t[k])
            act_rows["outcome"].append("success" if ok else "failure")
            if ok:
                done[i] = True
                end_ns[i] = (t[k] + pd.Timedelta(minutes=5)).value
    actions = pd.DataFrame(act_rows)
    if len(actions):  # canonical order: by incident, then attempt
        order = np.lexsort((actions["seq"].to_numpy(), pd.Index(ids).get_indexer(actions["incident_id"])))
        actions = actions.iloc[order].reset_index(drop=True)

    incidents = pd.DataFrame(
        {
            "id": ids,
            "opened": opened_at,
            "resolved": pd.to_datetime(end_ns, utc=True),
            "topology": topo.name,
            "cause_component": cause_c,
            "cause_fault_mode": cause_m,
            "faults": fault_text,
        }
    )
    frame = IncidentFrame(
        _normalise(incidents, INCIDENT_COLUMNS),
        _normalise(observations, OBSERVATION_COLUMNS),
        _normalise(actions, ACTION_COLUMNS),
    )
    return frame, (opened_at[-1] if n else t0)
