"""Expected counts (E-step) and Beta posteriors (M-step) for the fitted parameters (private).

The E-step asks the engine, in one batch per pass, for the posterior of every
``family__c`` (fault and impairment of component ``c`` jointly) and every
``active__c__t`` (the dependency's impairment reached ``c``) of the expanded
network (:mod:`diagnosis.learning._model`), given each incident's evidence, its
labels and its recovery outcomes. Checks that did not run are left out of the
evidence (summed out), never read as "passed".

Selection: an incident is opened only when an observed detector fires, so
the log holds draws of ``P(evidence | opened)``, not ``P(evidence)``. With
``selection=True`` each incident whose hard observations include a firing
stands for ``(1 - p) / p`` unseen draws with the same checks run and all
passed, ``p = P(some of its checks fires)`` -- the standard EM treatment of
truncated data (the number of discarded draws before each kept one is
geometric). Their expected counts come from one more engine pass over the
distinct sets of checks run.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import gammaln

from diagnosis.exceptions import ApproximationWarning, ModelError, ModelTooLargeError
from diagnosis.inference.approximate import LoopyBPEngine
from diagnosis.inference.compiled import CompiledEngine
from diagnosis.learning._history import History
from diagnosis.learning._model import Layout, expanded_tables

__all__ = ["OUTCOME_FLOOR", "Posterior", "Stats", "check_exact", "e_step", "m_step"]

#: Recovery outcomes are read with P(R) clipped to [floor, 1 - floor], so that a
#: "successful" restart of a component the labels call healthy is unlikely, not impossible.
OUTCOME_FLOOR = 1e-6
_KAPPA_BOUNDS = (1e-2, 1e7)


@dataclass
class Stats:
    """Expected sufficient statistics of one E-step (weighted by the incident weights)."""

    prior: list  # per component (n_states,): expected count of each fault state (incl. unseen draws)
    prior_real: list  # the same, logged incidents only (for the rates)
    impaired: np.ndarray  # per component: expected count of impaired
    edge: np.ndarray  # per dependency: expected count of the dependency's impairment reaching the dependent
    det_total: list  # per detector (n_states, 2): expected count of (fault, impaired) among cases it was observed
    det_fired: list  # per detector (n_states, 2): ... and it fired
    act_trials: list  # per action (n_states of its target,)
    act_success: list
    n_real: float = 0.0
    n_unseen: float = 0.0
    log_likelihood: float = float("nan")
    info_complete: np.ndarray | None = None  # per parameter: complete-data information (events, non-events)
    info_missing: np.ndarray | None = None  # per parameter: information lost to the latent variables

    @classmethod
    def zeros(cls, layout: Layout) -> Stats:
        ks = [1 + len(c.fault_modes) for c in layout.topology.components]
        return cls(
            prior=[np.zeros(k) for k in ks],
            prior_real=[np.zeros(k) for k in ks],
            impaired=np.zeros(len(ks)),
            edge=np.zeros(len(layout.edges)),
            det_total=[np.zeros((ks[j], 2)) for j in layout.detector_component],
            det_fired=[np.zeros((ks[j], 2)) for j in layout.detector_component],
            act_trials=[np.zeros(ks[j]) for j in layout.action_target],
            act_success=[np.zeros(ks[j]) for j in layout.action_target],
        )


def p_fired_table(layout: Layout, theta: np.ndarray, d: int) -> np.ndarray:
    """P(detector ``d`` fires | fault state, impaired), shape ``(n_states, 2)`` (docs/model.md)."""
    act = layout.active[d]
    sig = theta[layout.sigma_slices[d]]
    p_quiet = np.prod(np.where(act, (1.0 - sig)[:, None, None], 1.0), axis=0)
    return np.where(act.any(axis=0), 1.0 - p_quiet, theta[layout.alpha_index[d]])


def _engine(layout: Layout, theta: np.ndarray, memory_budget_bytes: int | None, approximate: bool = False):
    tables = expanded_tables(layout, theta)
    kw = {} if memory_budget_bytes is None else {"memory_budget_bytes": memory_budget_bytes}
    if approximate:
        return _BPWithEvidence(LoopyBPEngine(tables, **kw))
    try:
        # The targets are every family: a plan per evidence pattern would prune nothing.
        return CompiledEngine(tables, group_patterns=False, **kw)
    except ModelTooLargeError as exc:
        raise ModelError(
            f"topology {layout.topology.name!r} is too large for exact EM: {exc}. Fit a smaller part of the "
            "platform (its components and their dependencies), or raise memory_budget_bytes"
        ) from None


def check_exact(layout: Layout, memory_budget_bytes: int | None) -> None:
    """Raise :class:`ModelError` if the exact engine on the expanded network does not fit the budget."""
    _engine(layout, layout.theta0, memory_budget_bytes)


class _BPWithEvidence:
    """Loopy BP on the expanded network, with ``query_with_log_evidence`` as the E-step asks for it.

    log P(evidence) comes from ``P(e) = P(x0, e) / P(x0 | e)`` at the
    configuration ``x0`` where every variable is in its first state (no fault,
    nothing impaired or active, every observed check passed): ``P(x0, e)`` is a
    product of table entries (exact) and ``P(x0 | e)``, the posterior that
    every family is ``ok|ok``, is taken as the product of the families' BP
    marginals. That needs the evidence to allow ``x0`` (checks that passed,
    no label ruling "ok" out), which holds for the selection correction's
    "every check run passed"; other cases get NaN.
    """

    kind = "approximate"

    def __init__(self, engine: LoopyBPEngine):
        self.engine = engine
        t = engine.tables
        self._log_first = np.array([math.log(c.reshape(-1)[0]) if c.reshape(-1)[0] > 0 else -np.inf for c in t.cpts])
        # Leaves (checks, and the deterministic families whose first entry is 1) count only when observed.
        self._leaf = np.array([not ch for ch in t.children])

    def query_with_log_evidence(self, targets, evidence=None, soft_evidence=None, *, n_cases=None):
        evidence = evidence or {}
        soft_evidence = soft_evidence or {}
        q = self.engine.query(targets, evidence, soft_evidence, n_cases=n_cases)
        run = self.engine.last_run
        if run is not None and not run.converged:
            warnings.warn(  # one text for every E-step, so that the warning is shown once
                "loopy BP did not converge for some incidents (their messages still change after the last "
                "iteration): their expected counts are unreliable",
                ApproximationWarning,
                stacklevel=4,
            )
        n = len(next(iter(q.values())))
        index = self.engine.tables.index
        log_joint = np.full(n, float(self._log_first[~self._leaf].sum()))
        allowed = np.ones(n, dtype=bool)
        for name, states in evidence.items():
            states = np.asarray(states)
            allowed &= states <= 0
            log_joint += np.where(states == 0, self._log_first[index[name]], 0.0)
        for lik in soft_evidence.values():
            first = np.asarray(lik)[:, 0]
            allowed &= first > 0
            log_joint += np.log(np.where(first > 0, first, 1.0))
        log_post = np.zeros(n)
        for name, marg in q.items():
            if name.startswith("family__"):
                log_post += np.log(np.maximum(marg[:, 0], 1e-300))
        # P(e) <= 1: a product of marginals below the joint would say otherwise
        return q, np.where(allowed, np.minimum(log_joint - log_post, math.log1p(-1e-9)), np.nan)


def _names(layout: Layout) -> tuple[list[str], list[str]]:
    net = layout.network
    fam = [f"family__{net.fault_variable[c.name][len('fault__') :]}" for c in layout.topology.components]
    act = []
    comps = layout.topology.components
    for src, tgt in layout.edges:
        s = net.impairment_variable[comps[src].name][len("impaired__") :]
        t = net.impairment_variable[comps[tgt].name][len("impaired__") :]
        act.append(f"active__{s}__{t}")
    return fam, act


def _add_information(
    stats: Stats,
    idx,
    theta: np.ndarray,
    v: np.ndarray,
    p1: np.ndarray,
    p0: np.ndarray,
    v_count: np.ndarray | None = None,
) -> None:
    """Add per-case information about Bernoulli parameter(s) ``idx``: P(event), P(trial without event) per case.

    Complete-data information ``sum v (p1 / t^2 + p0 / (1 - t)^2)``; missing
    information ``sum v Var(score | data)`` (Louis 1982), each case being one
    trial that is an event, a non-event or neither. For unseen draws, whose
    number is itself latent (geometric), ``v_count`` is the variance of that
    number, adding ``v_count * E[score]^2``.
    """
    t = np.clip(theta[idx], 1e-12, 1.0 - 1e-12)
    q1, q0 = 1.0 / t, 1.0 / (1.0 - t)
    stats.info_complete[idx] += v @ (p1 * q1**2 + p0 * q0**2)
    stats.info_missing[idx] += v @ (p1 * (1 - p1) * q1**2 + p0 * (1 - p0) * q0**2 + 2 * p1 * p0 * q1 * q0)
    if v_count is not None:
        stats.info_missing[idx] += v_count @ (p1 * q1 - p0 * q0) ** 2


def _accumulate(
    stats: Stats,
    layout: Layout,
    theta: np.ndarray,
    q: dict,
    w: np.ndarray,
    observed: np.ndarray,
    soft: dict,
    hist: History | None,
    real: bool,
    info_weight: np.ndarray | None = None,
    count_variance: np.ndarray | None = None,
) -> None:
    fam_names, act_names = _names(layout)
    info = info_weight is not None

    def add_information(idx, v, p1, p0):
        _add_information(stats, idx, theta, v, p1, p0, count_variance)

    fams = []
    for j, name in enumerate(fam_names):
        f = q[name]
        fams.append(f)
        k = f.shape[1] // 2
        counts = (w @ f).reshape(k, 2)
        stats.prior[j] += counts.sum(axis=1)
        if real:
            stats.prior_real[j] += counts.sum(axis=1)
        stats.impaired[j] += counts[:, 1].sum()
        if info and k > 1:
            pf = f.reshape(len(f), k, 2).sum(axis=2)[:, 1:]
            add_information(
                np.arange(layout.prior_slices[j].start, layout.prior_slices[j].stop), info_weight, pf, 1.0 - pf
            )
    for e, name in enumerate(act_names):
        a1 = q[name][:, 1]
        stats.edge[e] += w @ a1
        if info:
            p_imp = fams[layout.edges[e][1]].reshape(len(a1), -1, 2)[:, :, 1].sum(axis=1)
            add_information(layout.edge_index[e], info_weight, a1, np.maximum(p_imp - a1, 0.0))
    for d, j in enumerate(layout.detector_component):
        f = fams[j]
        o = observed[:, d]
        k = f.shape[1] // 2
        fired = (o == 1).astype(float)
        seen = (o >= 0).astype(float)
        if d in soft:
            lik = soft[d]
            rows = np.flatnonzero((lik != 1.0).any(axis=1) & (o < 0))
        else:
            rows = np.zeros(0, dtype=np.int64)
        stats.det_total[d] += ((w * seen) @ f).reshape(k, 2)
        stats.det_fired[d] += ((w * fired) @ f).reshape(k, 2)
        # P(fired | parent state, what was observed), per case and parent state
        p_obs = np.broadcast_to(fired[:, None], f.shape)
        if len(rows):
            pf = p_fired_table(layout, theta, d).reshape(-1)
            num = pf * lik[rows, 1:2]
            post = num / (num + (1.0 - pf) * lik[rows, 0:1])
            stats.det_total[d] += (w[rows] @ f[rows]).reshape(k, 2)
            stats.det_fired[d] += (w[rows] @ (f[rows] * post)).reshape(k, 2)
            p_obs = p_obs.copy()
            p_obs[rows] = post
            seen = seen.copy()
            seen[rows] = 1.0
        if info:
            act = layout.active[d].reshape(len(layout.triggers[d]), -1)
            quiet = ~act.any(axis=0)
            fs = f * seen[:, None]
            p1 = (fs * p_obs)[:, quiet].sum(axis=1)
            add_information(layout.alpha_index[d], info_weight, p1, fs[:, quiet].sum(axis=1) - p1)
            sig = theta[layout.sigma_slices[d]]
            pft = p_fired_table(layout, theta, d).reshape(-1)
            for t, idx in enumerate(range(layout.sigma_slices[d].start, layout.sigma_slices[d].stop)):
                share = np.divide(sig[t], pft, out=np.zeros_like(pft), where=pft > 0)
                on = act[t]
                p1 = (fs * p_obs * share)[:, on].sum(axis=1)
                add_information(idx, info_weight, p1, fs[:, on].sum(axis=1) - p1)
    if hist is not None and len(hist.attempt_case):
        for a in range(len(layout.action_target)):
            sel = hist.attempt_action == a
            if not sel.any():
                continue
            f = fams[layout.action_target[a]]
            cases = hist.attempt_case[sel]
            k = f.shape[1] // 2
            p_state = f[cases].reshape(len(cases), k, 2).sum(axis=2)
            post = p_state * w[cases, None]
            ok = hist.attempt_success[sel]
            stats.act_trials[a] += post.sum(axis=0)
            stats.act_success[a] += post[ok].sum(axis=0)
            if info:
                modes = layout.success_modes[a]
                pm = p_state[:, modes]
                add_information(
                    np.arange(layout.success_slices[a].start, layout.success_slices[a].stop),
                    info_weight[cases],
                    pm * ok[:, None],
                    pm * ~ok[:, None],
                )


def _fault_evidence(layout: Layout, theta: np.ndarray, hist: History) -> dict[str, np.ndarray]:
    """Soft evidence on the fault variables: the labels times the likelihood of the recovery outcomes."""
    lik = [lab.copy() for lab in hist.labels]
    for a in range(len(layout.action_target)):
        sel = hist.attempt_action == a
        if not sel.any():
            continue
        r = np.clip(layout.success_table(theta, a), OUTCOME_FLOOR, 1.0 - OUTCOME_FLOOR)
        j = layout.action_target[a]
        cases = hist.attempt_case[sel]
        ok = hist.attempt_success[sel]
        np.multiply.at(lik[j], cases, np.where(ok[:, None], r[None, :], 1.0 - r[None, :]))
    net = layout.network
    out = {}
    for j, c in enumerate(layout.topology.components):
        if np.any(lik[j] != 1.0):
            out[net.fault_variable[c.name]] = lik[j]
    return out


def _query_distinct(engine, targets: list[str], hard: dict, soft: dict, n: int) -> tuple[dict, np.ndarray]:
    """Marginals of ``targets`` and log P(evidence) per case, propagating each distinct evidence row once.

    Incidents with the same checks, outcomes, labels and recovery attempts
    (their whole evidence) get the same posterior: the engine sees one row for
    them, and the answers are indexed back to every case.
    """
    keys = list(hard)
    columns = [np.stack([hard[k] for k in keys], axis=1).astype(np.float64)] if keys else []
    columns += [np.asarray(soft[k], dtype=np.float64) for k in soft]
    if not columns:
        one_q, one_z = engine.query_with_log_evidence(targets, n_cases=1)
        return {t: np.repeat(v, n, axis=0) for t, v in one_q.items()}, np.repeat(one_z, n)
    _, first, inverse = np.unique(np.concatenate(columns, axis=1), axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(first) == n:
        return engine.query_with_log_evidence(targets, hard, soft, n_cases=n)
    q, log_z = engine.query_with_log_evidence(
        targets, {k: v[first] for k, v in hard.items()}, {k: v[first] for k, v in soft.items()}, n_cases=len(first)
    )
    return {t: v[inverse] for t, v in q.items()}, log_z[inverse]


def e_step(
    layout: Layout,
    theta: np.ndarray,
    hist: History,
    *,
    selection: bool,
    with_likelihood: bool = False,
    with_information: bool = False,
    memory_budget_bytes: int | None = None,
    approximate: bool = False,
    max_selection_masks: int | None = None,
) -> Stats:
    """Expected counts under ``theta`` (see the module docstring).

    ``with_likelihood`` adds the log-likelihood of the log (given selection);
    ``with_information`` the complete and missing information per parameter.
    ``approximate``: the marginals from loopy BP (:class:`_BPWithEvidence`);
    the log-likelihood is then NaN. ``max_selection_masks``: the selection
    correction's pass runs on at most this many of the distinct sets of checks
    run (a fixed random sample, weighted up to stand for all of them).
    """
    engine = _engine(layout, theta, memory_budget_bytes, approximate)
    net = layout.network
    sym = [net.symptom_variable[d.symptom] for d in layout.topology.detectors]
    fam_names, act_names = _names(layout)
    targets = fam_names + act_names
    stats = Stats.zeros(layout)
    if with_information:
        stats.info_complete = np.zeros(layout.n_parameters)
        stats.info_missing = np.zeros(layout.n_parameters)

    hard = {sym[d]: hist.observed[:, d].astype(np.int64) for d in range(len(sym)) if (hist.observed[:, d] >= 0).any()}
    soft = {sym[d]: lik for d, lik in hist.soft.items()}
    soft.update(_fault_evidence(layout, theta, hist))
    q, log_z = _query_distinct(engine, targets, hard, soft, hist.n)
    _accumulate(
        stats,
        layout,
        theta,
        q,
        hist.weight,
        hist.observed,
        hist.soft,
        hist,
        True,
        hist.weight**2 if with_information else None,
    )
    stats.n_real = float(hist.weight.sum())
    log_lik = float(hist.weight @ log_z) if with_likelihood and not approximate else math.nan

    if selection:
        mask = hist.observed >= 0
        opened = (hist.observed == 1).any(axis=1)
        if opened.any():
            masks, inverse = np.unique(mask[opened], axis=0, return_inverse=True)
            w_mask = np.bincount(inverse.reshape(-1), weights=hist.weight[opened], minlength=len(masks))
            w2_mask = np.bincount(inverse.reshape(-1), weights=hist.weight[opened] ** 2, minlength=len(masks))
            if max_selection_masks is not None and len(masks) > max_selection_masks:
                # The same seeded sample every E-step (EM stays a fixed map), reweighted: unbiased counts.
                keep = np.sort(np.random.default_rng(0).choice(len(masks), max_selection_masks, replace=False))
                scale = len(masks) / max_selection_masks
                masks, w_mask, w2_mask = masks[keep], w_mask[keep] * scale, w2_mask[keep] * scale
            ev = {sym[d]: np.where(masks[:, d], 0, -1).astype(np.int64) for d in range(len(sym)) if masks[:, d].any()}
            qp, log_quiet = engine.query_with_log_evidence(targets, ev, n_cases=len(masks))
            p_open = np.clip(-np.expm1(log_quiet), 1e-300, 1.0)
            w_unseen = w_mask * np.exp(log_quiet) / p_open
            # Each unseen draw is one independent case: its information adds with weight 1 per draw.
            _accumulate(
                stats,
                layout,
                theta,
                qp,
                w_unseen,
                np.where(masks, 0, -1).astype(np.int8),
                {},
                None,
                False,
                w_unseen if with_information else None,
                w2_mask * np.exp(log_quiet) / p_open**2,
            )
            stats.n_unseen = float(w_unseen.sum())
            log_lik -= float(w_mask @ np.log(p_open))
    stats.log_likelihood = log_lik if with_likelihood else math.nan
    return stats


@dataclass(frozen=True)
class Posterior:
    """The posterior of every parameter after an M-step.

    Attributes
    ----------
    theta : ndarray
        Posterior means (the new parameter values; fixed parameters keep their start value).
    concentration : ndarray
        ``a + b`` of the Beta posterior ``Beta(theta * c, (1 - theta) * c)`` used
        for the credible interval: the prior's weight, the peers' and the
        effective observations.
    n_trials, n_events : ndarray
        Expected observations behind each parameter, and events among them
        (faults, propagations, firings, successes).
    n_effective : ndarray
        ``n_trials`` times the share of their information the data carry
        (observed over complete information, Louis 1982): less than
        ``n_trials`` when the causes behind them are uncertain.
    prior_share, peer_share : ndarray
        Shares of the posterior weight from the topology's value and from the
        peers of the same kind with the same fault mode (fault-mode priors only).
    kappa : dict
        ``(kind, fault mode)`` -> pooling concentration (0 when not pooled).
    """

    theta: np.ndarray
    concentration: np.ndarray
    n_trials: np.ndarray
    n_events: np.ndarray
    n_effective: np.ndarray
    prior_share: np.ndarray
    peer_share: np.ndarray
    kappa: dict = field(default_factory=dict)


def _betabinom_loglik(a: np.ndarray, b: np.ndarray, n: np.ndarray, total: np.ndarray) -> float:
    """Sum of Beta-binomial log-likelihoods (without the binomial coefficients, constant in a and b)."""
    return float(
        np.sum(
            gammaln(a + n) + gammaln(b + total - n) - gammaln(a + b + total) - gammaln(a) - gammaln(b) + gammaln(a + b)
        )
    )


@dataclass(frozen=True)
class Pooling:
    """The pooled priors of the fault-mode priors (see :func:`pool_priors`).

    Attributes
    ----------
    a, c : ndarray
        Per prior parameter: the Beta prior ``Beta(a, c - a)`` of that mode's
        probability (the topology's value with weight ``w``, plus the peers'
        pooled rate with weight ``peer``).
    peer : ndarray
        Per prior parameter, the peers' weight ``k_c``.
    kappa : dict
        ``(kind, fault mode) -> concentration`` for every mode shared by two or
        more components of a kind (0: no pooling).
    """

    a: np.ndarray
    c: np.ndarray
    peer: np.ndarray
    kappa: dict


def pool_priors(layout: Layout, counts: list[np.ndarray], weight: float, pooling: bool) -> Pooling:
    """Beta prior of each fault-mode probability, pooled hierarchically by kind and fault mode.

    Mode ``m`` of component ``c`` has prior mean ``pi_cm`` from the topology
    (weight ``weight``) plus the pooled rate ``mu`` of mode ``m`` among the
    other components of its kind that have it (their expected counts and
    priors, leave-one-out) with weight ``k_c = kappa * M_c / (kappa + M_c)``.
    ``M_c`` is what those peers saw (their incidents plus prior weights), so
    even full pooling (kappa -> infinity) lends a component no more than its
    peers' data. ``kappa`` per (kind, mode) maximises the Beta-binomial
    likelihood of the components' counts (empirical Bayes): a mode whose rate
    differs between components is pooled little, one they share a lot.
    """
    comps = layout.topology.components
    P = layout.n_parameters
    a = np.zeros(P)
    c = np.zeros(P)
    peer = np.zeros(P)
    kappa: dict[tuple[str, str], float] = {}
    groups: dict[tuple[str, str], list[tuple[int, int]]] = {}  # (kind, mode) -> [(component, parameter)]
    for j, comp in enumerate(comps):
        for k, m in enumerate(comp.fault_modes):
            idx = layout.prior_slices[j].start + k
            a[idx] = weight * layout.theta0[idx]
            c[idx] = weight
            groups.setdefault((comp.kind, m.name), []).append((j, idx))
    for key, members in groups.items():
        if len(members) < 2:
            continue
        if not pooling:
            kappa[key] = 0.0
            continue
        n = np.array([counts[j][1 + idx - layout.prior_slices[j].start] for j, idx in members])
        total = np.array([counts[j].sum() for j, _ in members])
        seen, trials = n + a[[i for _, i in members]], total + weight
        mass = trials.sum() - trials  # leave-one-out
        mu = (seen.sum() - seen) / mass
        a0, c0 = a[[i for _, i in members]], c[[i for _, i in members]]

        def nll(log_k, mass=mass, mu=mu, a0=a0, c0=c0, n=n, total=total):
            k = np.exp(log_k) * mass / (np.exp(log_k) + mass)
            return -_betabinom_loglik(a0 + k * mu, c0 - a0 + k * (1.0 - mu), n, total)

        res = minimize_scalar(nll, bounds=np.log(_KAPPA_BOUNDS), method="bounded", options={"xatol": 1e-3})
        kap = float(np.exp(res.x))
        if nll(np.log(_KAPPA_BOUNDS[0])) <= res.fun:
            kap = 0.0
        kappa[key] = kap
        ks = kap * mass / (kap + mass)
        for (_j, idx), kc, m_ in zip(members, ks, mu):
            a[idx] += kc * m_
            c[idx] += kc
            peer[idx] = kc
    return Pooling(a, c, peer, kappa)


def m_step(
    layout: Layout, theta: np.ndarray, stats: Stats, *, prior_weight: np.ndarray, fitted: np.ndarray, pooling: bool
) -> Posterior:
    """Posterior means from expected counts, and the posteriors' concentrations (see the module docstring).

    ``prior_weight`` is per parameter (pseudo-observations of the topology's
    value); ``fitted`` says which parameters move (the rest keep their start
    value). When ``stats`` carries information, the intervals' concentrations
    count only the effective observations.
    """
    P = layout.n_parameters
    theta0 = layout.theta0
    n_trials = np.zeros(P)
    n_events = np.zeros(P)
    prior_w = np.zeros(P)
    peer_w = np.zeros(P)
    new = theta0.copy()

    # Fault-mode priors: per mode a Beta posterior, pooled by kind and mode; "ok" is the rest.
    comps = layout.topology.components
    is_prior = layout.mask(["prior"])
    w_prior = float(prior_weight[is_prior].max()) if is_prior.any() else 1.0
    pool = pool_priors(layout, stats.prior, w_prior, pooling)
    for j in range(len(comps)):
        sl = layout.prior_slices[j]
        total = stats.prior[j].sum()
        events = stats.prior[j][1:]
        means = (pool.a[sl] + events) / (pool.c[sl] + total)
        if means.sum() >= 1.0:  # only with absurd counts: keep room for "ok"
            means *= (1.0 - 1e-9) / means.sum()
        new[sl] = means
        n_trials[sl] = total
        n_events[sl] = events
        prior_w[sl] = w_prior
        peer_w[sl] = pool.peer[sl]
    kappa = pool.kappa

    def beta(idx, events, trials):
        new[idx] = (prior_weight[idx] * theta0[idx] + events) / (prior_weight[idx] + trials)
        n_trials[idx] = trials
        n_events[idx] = events
        prior_w[idx] = prior_weight[idx]

    # Dependency strengths: activations over the dependency's impairment.
    for e, (_src, tgt) in enumerate(layout.edges):
        beta(layout.edge_index[e], stats.edge[e], stats.impaired[tgt])

    # Detectors: the false alarm from parent states with no trigger active; each
    # sensitivity from those where its trigger is, splitting a firing between two
    # active triggers in proportion to their activation probabilities (noisy-OR EM).
    for d in range(len(layout.detector_component)):
        act = layout.active[d]
        tot, fired = stats.det_total[d], stats.det_fired[d]
        quiet = ~act.any(axis=0)
        beta(layout.alpha_index[d], fired[quiet].sum(), tot[quiet].sum())
        sig = theta[layout.sigma_slices[d]]
        pf = p_fired_table(layout, theta, d)
        for k, idx in enumerate(range(layout.sigma_slices[d].start, layout.sigma_slices[d].stop)):
            on = act[k]
            share = np.divide(sig[k], pf, out=np.zeros_like(pf), where=pf > 0)
            beta(idx, float((fired * share)[on].sum()), float(tot[on].sum()))

    # Recovery: outcomes against the target's fault state.
    for i in range(len(layout.action_target)):
        sl = layout.success_slices[i]
        modes = layout.success_modes[i]
        beta(np.arange(sl.start, sl.stop), stats.act_success[i][modes], stats.act_trials[i][modes])

    if stats.info_complete is not None:
        kept = np.divide(
            stats.info_complete - stats.info_missing, stats.info_complete, out=np.ones(P), where=stats.info_complete > 0
        )
        n_effective = n_trials * np.clip(kept, 0.0, 1.0)
    else:
        n_effective = n_trials.copy()
    concentration = prior_w + peer_w + n_effective
    new = np.where(fitted, np.clip(new, 0.0, 1.0), theta0)
    return Posterior(
        new, concentration, n_trials, n_events, n_effective, prior_w / concentration, peer_w / concentration, kappa
    )
