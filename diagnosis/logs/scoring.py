"""Batch scoring of incident logs: per-incident answers, accuracy and calibration.

:func:`score_frame` diagnoses a chunk of incidents in one batched engine call
and returns one row per incident plus additive :class:`ScoreStats`.
:func:`score_log` streams a whole log through it chunk by chunk (memory stays
flat), is resumable, and can run on a Dask cluster; ``docs/incidents.md``
documents the output and the metrics.

Metrics, each at two levels: *location* (component + fault mode, ranked by
``P(fault_c = m | D)``) and *component* (ranked by ``P(fault_c != ok | D)``):

* ``AC@k``: share of incidents with a known root cause whose root cause is in
  the top ``k`` (rank = 1 + number of candidates with a strictly higher
  probability); ``Avg@5`` = mean of AC@1..AC@5; ``MRR`` = mean of 1 / rank.
* Calibration, over every (incident, candidate) pair of incidents whose
  truth is known (the full fault list when the log has it, else the root
  cause alone): ``brier`` = mean (p - y)^2, ``log_loss`` = mean Bernoulli
  log loss (p clipped to [1e-15, 1 - 1e-15]), ``ece`` = sum over 15
  equal-width bins of (bin share) x |mean p - observed frequency|, with its
  reliability table. Most pairs are near-certain negatives, so ``ece`` is
  small for any sane model; ``ece_top1`` (and ``reliability_top1``) bins
  only each incident's top candidate: its probability against whether it is
  truly faulty, the confidence calibration a person reading the top answer
  relies on.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diagnosis._files import (
    atomic_write,
    check_outputs,
    os_error_message,
    output_lock,
    remove_stale_temporaries,
)
from diagnosis._validation import Interval, short_repr, validate_params
from diagnosis.exceptions import EvidenceError, IncidentLogError, OutputError
from diagnosis.logs.schema import IncidentFrame, Reject, parse_faults, validate_frame
from diagnosis.model.network import FAULT_OK, SYMPTOM_STATES, Network, build_network
from diagnosis.model.topology import Topology

__all__ = [
    "LEVELS",
    "N_BINS",
    "ROW_COLUMNS",
    "ScoreStats",
    "ScoreSummary",
    "calibrated_ece_top1",
    "ece_top1",
    "score_frame",
    "score_log",
]

LEVELS = ("location", "component")
N_BINS = 15
K_MAX = 5
_EPS = 1e-15


@dataclass
class _LevelStats:
    n_ranked: int = 0
    hits: np.ndarray = field(default_factory=lambda: np.zeros(K_MAX, dtype=np.int64))
    sum_rr: float = 0.0
    n_pairs: int = 0
    sum_sq: float = 0.0
    sum_ll: float = 0.0
    bin_n: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS, dtype=np.int64))
    bin_p: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS))
    bin_y: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS))
    top_n: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS, dtype=np.int64))
    top_p: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS))
    top_y: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS))

    def add(self, other: _LevelStats) -> None:
        self.n_ranked += other.n_ranked
        self.hits = self.hits + other.hits
        self.sum_rr += other.sum_rr
        self.n_pairs += other.n_pairs
        self.sum_sq += other.sum_sq
        self.sum_ll += other.sum_ll
        self.bin_n = self.bin_n + other.bin_n
        self.bin_p = self.bin_p + other.bin_p
        self.bin_y = self.bin_y + other.bin_y
        self.top_n = self.top_n + other.top_n
        self.top_p = self.top_p + other.top_p
        self.top_y = self.top_y + other.top_y

    def to_json(self) -> dict:
        return {
            "n_ranked": self.n_ranked, "hits": self.hits.tolist(), "sum_rr": self.sum_rr, "n_pairs": self.n_pairs,
            "sum_sq": self.sum_sq, "sum_ll": self.sum_ll, "bin_n": self.bin_n.tolist(), "bin_p": self.bin_p.tolist(), "bin_y": self.bin_y.tolist(),
            "top_n": self.top_n.tolist(), "top_p": self.top_p.tolist(), "top_y": self.top_y.tolist(),
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: Mapping) -> _LevelStats:
        return cls(
            int(d["n_ranked"]), np.array(d["hits"], dtype=np.int64), float(d["sum_rr"]), int(d["n_pairs"]), float(d["sum_sq"]),
            float(d["sum_ll"]), np.array(d["bin_n"], dtype=np.int64), np.array(d["bin_p"], dtype=float), np.array(d["bin_y"], dtype=float),
            np.array(d["top_n"], dtype=np.int64), np.array(d["top_p"], dtype=float), np.array(d["top_y"], dtype=float),
        )  # fmt: skip

    def metrics(self) -> dict[str, Any]:
        ac = self.hits / self.n_ranked if self.n_ranked else np.full(K_MAX, math.nan)

        def table(bn, bp, by):
            rows = []
            for b in range(N_BINS):
                n = int(bn[b])
                rows.append(
                    {
                        "bin": f"[{b / N_BINS:.3f}, {(b + 1) / N_BINS:.3f}{']' if b == N_BINS - 1 else ')'}",
                        "n": n,
                        "mean_p": bp[b] / n if n else None,
                        "observed": by[b] / n if n else None,
                    }
                )
            return rows

        ece = float(np.sum(np.abs(self.bin_p - self.bin_y)) / self.n_pairs) if self.n_pairs else math.nan
        n_top = int(self.top_n.sum())
        ece_top1 = float(np.sum(np.abs(self.top_p - self.top_y)) / n_top) if n_top else math.nan
        return {
            "n_ranked": self.n_ranked,
            **{f"AC@{k}": float(ac[k - 1]) for k in (1, 2, 3, 4, 5)},
            "Avg@5": float(np.mean(ac)),
            "MRR": self.sum_rr / self.n_ranked if self.n_ranked else math.nan,
            "n_pairs": self.n_pairs,
            "brier": self.sum_sq / self.n_pairs if self.n_pairs else math.nan,
            "log_loss": self.sum_ll / self.n_pairs if self.n_pairs else math.nan,
            "ece": ece,
            "ece_top1": ece_top1,
            "reliability": table(self.bin_n, self.bin_p, self.bin_y),
            "reliability_top1": table(self.top_n, self.top_p, self.top_y),
        }


@dataclass
class ScoreStats:
    """Additive sufficient statistics of a scored chunk (sum them across chunks)."""

    n_scored: int = 0
    n_rejected: int = 0
    levels: dict[str, _LevelStats] = field(default_factory=lambda: {lvl: _LevelStats() for lvl in LEVELS})

    def add(self, other: ScoreStats) -> ScoreStats:
        self.n_scored += other.n_scored
        self.n_rejected += other.n_rejected
        for lvl in LEVELS:
            self.levels[lvl].add(other.levels[lvl])
        return self

    def to_json(self) -> dict:
        return {
            "n_scored": self.n_scored,
            "n_rejected": self.n_rejected,
            "levels": {k: v.to_json() for k, v in self.levels.items()},
        }

    @classmethod
    def from_json(cls, d: Mapping) -> ScoreStats:
        return cls(
            int(d["n_scored"]), int(d["n_rejected"]), {k: _LevelStats.from_json(v) for k, v in d["levels"].items()}
        )


@dataclass(frozen=True)
class ScoreSummary:
    """The outcome of scoring a log.

    Attributes
    ----------
    n_scored, n_rejected : int
    metrics : Mapping[str, dict]
        Level (``location``, ``component``) -> metric name -> value (see the module docstring).
    n_chunks, n_chunks_resumed : int
        Chunks in the log, and chunks found already done and not redone.
    engine : str
    """

    n_scored: int
    n_rejected: int
    metrics: Mapping[str, dict]
    n_chunks: int = 0
    n_chunks_resumed: int = 0
    engine: str = ""

    @classmethod
    def from_stats(cls, stats: ScoreStats, **kw) -> ScoreSummary:
        return cls(stats.n_scored, stats.n_rejected, {k: v.metrics() for k, v in stats.levels.items()}, **kw)

    def to_dict(self) -> dict:
        return {
            "n_scored": self.n_scored,
            "n_rejected": self.n_rejected,
            "n_chunks": self.n_chunks,
            "n_chunks_resumed": self.n_chunks_resumed,
            "engine": self.engine,
            "metrics": {k: dict(v) for k, v in self.metrics.items()},
        }


# --------------------------------------------------------------------------- one chunk
def _evidence_arrays(network: Network, frame: IncidentFrame):
    """Engine evidence arrays from the observations of a validated frame."""
    n = len(frame)
    pos = pd.Index(frame.incidents["id"]).get_indexer(frame.observations["incident_id"])
    var = frame.observations["symptom"].map(network.symptom_variable).to_numpy()
    value = frame.observations["value"].to_numpy()
    hard: dict[str, np.ndarray] = {}
    soft: dict[str, np.ndarray] = {}
    fired = SYMPTOM_STATES.index("fired")
    passed = SYMPTOM_STATES.index("passed")
    df = pd.DataFrame(
        {
            "pos": pos,
            "var": var,
            "value": value,
            "pf": frame.observations["p_fired"].to_numpy(),
            "pp": frame.observations["p_passed"].to_numpy(),
        }
    )
    for v, g in df.groupby("var", sort=False):
        h = g[g["value"] != "soft"]
        if len(h):
            arr = np.full(n, -1, dtype=np.int64)
            arr[h["pos"].to_numpy()] = np.where(h["value"].to_numpy() == "fired", fired, passed)
            hard[v] = arr
        s = g[g["value"] == "soft"]
        if len(s):
            lik = np.ones((n, len(SYMPTOM_STATES)))
            lik[s["pos"].to_numpy(), fired] = s["pf"].to_numpy()
            lik[s["pos"].to_numpy(), passed] = s["pp"].to_numpy()
            soft[v] = lik
    return hard, soft


def _query(engine, targets, hard, soft, n) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Batch query; cases whose evidence has probability 0 are isolated and marked bad."""
    ok = np.ones(n, dtype=bool)
    try:
        return engine.query(targets, hard, soft, n_cases=n), ok
    except EvidenceError:
        if n == 1:
            ok[0] = False
            return {t: np.full((1, 1), np.nan) for t in targets}, ok
    half = n // 2
    parts = []
    for sl in (slice(0, half), slice(half, n)):
        h = {k: v[sl] for k, v in hard.items()}
        s = {k: v[sl] for k, v in soft.items()}
        parts.append(_query(engine, targets, h, s, sl.stop - sl.start))
    out = {}
    for t in targets:
        a, b = parts[0][0][t], parts[1][0][t]
        width = max(a.shape[1], b.shape[1])
        pad = lambda x: x if x.shape[1] == width else np.full((x.shape[0], width), np.nan)  # noqa: E731, B023 (used at once)
        out[t] = np.concatenate([pad(a), pad(b)])
    return out, np.concatenate([parts[0][1], parts[1][1]])


def _p_some_fault(network: Network, engine, frame: IncidentFrame, targets: list[str], n: int) -> np.ndarray:
    """1 - P(every component ok | evidence), by the chain rule over the fault variables (exact)."""
    hard, soft = _evidence_arrays(network, frame)
    hard = {k: v.copy() for k, v in hard.items()}
    p_none = np.ones(n)
    alive = np.ones(n, dtype=bool)
    for t in targets:
        states = network.variable(t).states
        i_ok = states.index(FAULT_OK)
        post, ok = _query(engine, [t], hard, soft, n)
        m = post[t]
        with np.errstate(invalid="ignore"):
            q = m[:, i_ok] / m.sum(axis=1)
        alive &= ok
        p_none = np.where(alive, p_none * np.nan_to_num(q, nan=0.0), 0.0)
        prev = hard.get(t)
        col = np.full(n, i_ok, dtype=np.int64)
        if prev is not None:
            col = np.where(prev >= 0, prev, col)
        hard[t] = col
    return np.maximum(1.0 - p_none, 1e-300)


#: Two probabilities closer than this (relative) tie: they differ only by rounding.
_TIE_RTOL = 1e-9


def _tie_tol(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How close ``a`` and ``b`` must be to tie (:data:`_TIE_RTOL` of the larger, plus a floor)."""
    return _TIE_RTOL * np.maximum(np.abs(a), np.abs(b)) + _EPS


def _ranks(p: np.ndarray, true_idx: np.ndarray) -> np.ndarray:
    """The true candidate's mid-rank: ``h + (t + 1) / 2``.

    ``h`` candidates have a strictly higher probability than the true one and
    ``t`` (itself included) tie with it, to a relative :data:`_TIE_RTOL`. A tie
    shares the mean of its positions (fractional ranking, as
    ``scipy.stats.rankdata(method="average")``), so a tie at the top is not
    counted as a hit: with no evidence, every candidate ties and the true one
    gets the middle rank, not rank 1.
    """
    rows = np.arange(len(p))
    pt = p[rows, true_idx][:, None]
    tol = _tie_tol(p, pt)
    higher = (p - pt > tol).sum(axis=1)
    ties = (np.abs(p - pt) <= tol).sum(axis=1)
    return higher + (ties + 1) / 2.0


def _calibration(stats: _LevelStats, p: np.ndarray, y: np.ndarray) -> None:
    p = p.ravel()
    y = y.ravel().astype(float)
    stats.n_pairs += len(p)
    stats.sum_sq += float(np.sum((p - y) ** 2))
    pc = np.clip(p, _EPS, 1 - _EPS)
    stats.sum_ll += float(-np.sum(y * np.log(pc) + (1 - y) * np.log1p(-pc)))
    b = np.minimum((p * N_BINS).astype(np.int64), N_BINS - 1)
    stats.bin_n += np.bincount(b, minlength=N_BINS)
    stats.bin_p += np.bincount(b, weights=p, minlength=N_BINS)
    stats.bin_y += np.bincount(b, weights=y, minlength=N_BINS)


#: The columns of the scored rows, in order (also the header of a CSV output with no rows).
ROW_COLUMNS = (
    "incident_id", "n_observations", "top_locations", "top_component", "p_top_component", "recommended_action",
    "recommended_target", "expected_success", "true_component", "true_fault_mode", "rank_location",
    "rank_component", "p_true_location", "posterior",
)  # fmt: skip


def _no_rows() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ROW_COLUMNS})


def ece_top1(p_top, hit, *, n_bins: int = N_BINS) -> float:
    """Top-1 ECE of top-candidate probabilities ``p_top`` against whether each was right (``hit``).

    The statistic :class:`ScoreStats` reports as ``ece_top1``: ``n_bins``
    equal-width bins of ``p_top`` (the last closed), ``sum over bins of |sum
    p - sum hit| / n``. NaN for no incident.
    """
    p = np.asarray(p_top, dtype=np.float64).ravel()
    y = np.asarray(hit, dtype=np.float64).ravel()
    if len(p) != len(y):
        raise ValueError(f"p_top and hit must have one entry per incident. Got {len(p)} and {len(y)}.")
    if len(p) == 0:
        return math.nan
    b = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    return float(
        np.abs(np.bincount(b, weights=p, minlength=n_bins) - np.bincount(b, weights=y, minlength=n_bins)).sum() / len(p)
    )


def calibrated_ece_top1(
    p_top, *, n_bins: int = N_BINS, n_draws: int = 4000, seed: int = 0, quantiles=(0.05, 0.5, 0.95)
) -> dict[str, float]:
    """The top-1 ECE a *perfectly calibrated* model would show on these incidents: its sampling noise.

    Each incident's top answer is drawn right with probability ``p_top``
    (exactly what calibration means), ``n_draws`` times, and :func:`ece_top1`
    computed for each draw. With a few dozen incidents and top
    probabilities near 0.5, even a calibrated model shows a large ECE: a
    measured ECE inside this range cannot be told from calibration, and a
    target below it cannot be reached on so few incidents whatever the model.
    Uses no labels.

    Returns
    -------
    dict
        ``mean`` and one entry per quantile (``"q05"``, ``"q50"``, ``"q95"`` by default).

    Examples
    --------
    >>> r = calibrated_ece_top1([0.5] * 28)
    >>> bool(0.05 < r["mean"] < 0.12)
    True
    """
    p = np.clip(np.asarray(p_top, dtype=np.float64).ravel(), 0.0, 1.0)
    rng = np.random.default_rng(seed)
    draws = rng.random((n_draws, len(p))) < p
    b = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    onehot = np.zeros((len(p), n_bins))
    onehot[np.arange(len(p)), b] = 1.0
    sum_p = p @ onehot
    ece = np.abs(draws.astype(np.float64) @ onehot - sum_p).sum(axis=1) / max(len(p), 1)
    out = {"mean": float(ece.mean())}
    for q in quantiles:
        out[f"q{round(100 * q):02d}"] = float(np.quantile(ece, q))
    return out


def score_frame(
    network: Network, engine, frame: IncidentFrame, *, top_k: int = 5, source: str = "", assume_fault: bool = False
) -> tuple[pd.DataFrame, ScoreStats, list[Reject]]:
    """Diagnose every incident of a validated frame in one batch and score it.

    With ``assume_fault``, every posterior is conditioned on "some component
    is faulty" as well as on the evidence (an incident opened from a known
    fault: a fault list, a fault injection): ``P(c | e, some fault) =
    P(c | e) / (1 - P(no fault | e))``, with ``P(no fault | e)`` computed
    exactly as ``prod_i P(F_i = ok | e, F_1..F_{i-1} = ok)`` (one batched
    query per component; ``docs/model.md``).

    Returns
    -------
    rows : DataFrame
        One row per scored incident: ``incident_id``, ``n_observations``,
        ``top_locations`` (JSON list of ``[component, fault_mode, p]``, top ``top_k``),
        ``top_component``, ``p_top_component``, ``recommended_action``,
        ``recommended_target``, ``expected_success``, ``true_component``,
        ``true_fault_mode``, ``rank_location``, ``rank_component``,
        ``p_true_location``, ``posterior`` (JSON object ``"component:mode" -> p``).
    stats : ScoreStats
    rejects : list of Reject
        Incidents whose evidence has probability 0 under the model.
    """
    stats = ScoreStats()
    if len(frame) == 0:
        return _no_rows(), stats, []
    targets = [network.fault_variable[c.name] for c in network.topology.components]
    post, frame, rejects = _posteriors(network, engine, frame, targets, source)
    stats.n_rejected = len(rejects)
    if len(frame) == 0:
        return _no_rows(), stats, rejects
    p_fault = _p_some_fault(network, engine, frame, targets, len(frame)) if assume_fault else None
    loc = _Locations.of(network, post, targets, p_fault)
    truth = _Truth.of(frame, loc)
    truth.count_ranks(stats)
    truth.calibrate(stats, loc)
    stats.n_scored = len(frame)
    return _rows(network, frame, loc, truth, top_k), stats, rejects


def _posteriors(
    network: Network, engine, frame: IncidentFrame, targets: list[str], source: str
) -> tuple[dict[str, np.ndarray], IncidentFrame, list[Reject]]:
    """The fault marginals of every incident; incidents of probability-0 evidence are set aside as rejects."""
    hard, soft = _evidence_arrays(network, frame)
    post, ok = _query(engine, targets, hard, soft, len(frame))
    if ok.all():
        return post, frame, []
    ids = frame.incidents["id"].to_numpy()
    rejects = [
        Reject(
            source,
            frame.location.get(iid, f"incident {iid}"),
            iid,
            "observations",
            "",
            "the evidence has probability 0 under the model",
        )
        for iid in ids[~ok]
    ]
    return {t: v[ok] for t, v in post.items()}, frame.select(ids[ok]), rejects


@dataclass(frozen=True)
class _Locations:
    """Posterior per fault location ``P`` (n, L) and per component ``p_any`` (n, C), with their labels."""

    P: np.ndarray
    p_any: np.ndarray
    labels: list[tuple[str, str]]
    loc_index: dict[str, int]
    comp_index: dict[str, int]

    @classmethod
    def of(cls, network: Network, post: dict[str, np.ndarray], targets: list[str], p_fault) -> _Locations:
        comps = network.topology.components
        n = len(post[targets[0]]) if targets else 0
        labels, blocks = [], []
        p_any = np.empty((n, len(comps)))
        for j, c in enumerate(comps):
            m = post[targets[j]]
            m = m / m.sum(axis=1, keepdims=True)
            states = network.variable(targets[j]).states
            p_any[:, j] = 1.0 - m[:, states.index(FAULT_OK)]
            labels.extend((c.name, s) for s in states if s != FAULT_OK)
            blocks.append(np.delete(m, states.index(FAULT_OK), axis=1))
        P = np.concatenate(blocks, axis=1)
        if p_fault is not None:
            P = np.minimum(P / p_fault[:, None], 1.0)
            p_any = np.minimum(p_any / p_fault[:, None], 1.0)
        return cls(
            P,
            p_any,
            labels,
            {f"{c}:{m}": i for i, (c, m) in enumerate(labels)},
            {c.name: j for j, c in enumerate(comps)},
        )


@dataclass(frozen=True)
class _Truth:
    """What is known of each incident's truth: the root cause and, where given, the whole fault list."""

    component: np.ndarray
    fault_mode: np.ndarray
    has_loc: np.ndarray
    has_comp: np.ndarray
    Y: np.ndarray  # (n, L) true fault locations
    Yc: np.ndarray  # (n, C) true faulty components
    known: np.ndarray  # the truth is known (a fault list or a root cause)
    rank_loc: np.ndarray
    rank_comp: np.ndarray
    p_true: np.ndarray

    @classmethod
    def of(cls, frame: IncidentFrame, loc: _Locations) -> _Truth:
        inc = frame.incidents
        n = len(inc)
        cc = inc["cause_component"].to_numpy(dtype=object)
        cm = inc["cause_fault_mode"].to_numpy(dtype=object)
        has_loc = np.array([c is not None and m is not None for c, m in zip(cc, cm)], dtype=bool)
        # Calibration: the full fault list when known, else the root cause alone.
        faults = inc["faults"].to_numpy(dtype=object)
        Y = np.zeros_like(loc.P, dtype=bool)
        Yc = np.zeros_like(loc.p_any, dtype=bool)
        known = np.zeros(n, dtype=bool)
        for r_i in range(n):
            if faults[r_i] is not None:
                known[r_i] = True
                for c, m in parse_faults(faults[r_i]):
                    Y[r_i, loc.loc_index[f"{c}:{m}"]] = True
                    Yc[r_i, loc.comp_index[c]] = True
            elif has_loc[r_i]:
                known[r_i] = True
                Y[r_i, loc.loc_index[f"{cc[r_i]}:{cm[r_i]}"]] = True
                Yc[r_i, loc.comp_index[cc[r_i]]] = True
        has_comp = np.array([c is not None for c in cc], dtype=bool)
        rank_loc, rank_comp, p_true = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        if has_loc.any():
            ti = np.array([loc.loc_index[f"{c}:{m}"] for c, m in zip(cc[has_loc], cm[has_loc])])
            rank_loc[has_loc] = _ranks(loc.P[has_loc], ti)
            p_true[has_loc] = loc.P[has_loc][np.arange(len(ti)), ti]
        if has_comp.any():
            tj = np.array([loc.comp_index[c] for c in cc[has_comp]])
            rank_comp[has_comp] = _ranks(loc.p_any[has_comp], tj)
        return cls(cc, cm, has_loc, has_comp, Y, Yc, known, rank_loc, rank_comp, p_true)

    def count_ranks(self, stats: ScoreStats) -> None:
        """Add the ranks of the true location and component to the AC@k and MRR counts."""
        for lvl, sel, r in (("location", self.has_loc, self.rank_loc), ("component", self.has_comp, self.rank_comp)):
            if sel.any():
                lv = stats.levels[lvl]
                lv.n_ranked += int(sel.sum())
                lv.hits += np.array([(r[sel] <= kk).sum() for kk in range(1, K_MAX + 1)])
                lv.sum_rr += float(np.sum(1.0 / r[sel]))

    def calibrate(self, stats: ScoreStats, loc: _Locations) -> None:
        """Reliability counts of every probability and of the top answer, per level."""
        k = self.known
        if not k.any():
            return
        for lvl, M, T in (("location", loc.P, self.Y), ("component", loc.p_any, self.Yc)):
            lv = stats.levels[lvl]
            _calibration(lv, M[k], T[k])
            Mk, Tk = M[k], T[k]
            p_top = Mk.max(axis=1)
            # the top answer is one of the candidates tied at the top, drawn at random: its hit rate is the
            # share of true ones among them
            top = p_top[:, None] - Mk <= _tie_tol(p_top[:, None], Mk)
            y_top = (top & Tk).sum(axis=1) / top.sum(axis=1)
            b = np.minimum((p_top * N_BINS).astype(np.int64), N_BINS - 1)
            lv.top_n += np.bincount(b, minlength=N_BINS)
            lv.top_p += np.bincount(b, weights=p_top, minlength=N_BINS)
            lv.top_y += np.bincount(b, weights=y_top, minlength=N_BINS)


def _recommendations(topo: Topology, loc: _Locations) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The recommended action per incident (highest expected success per cost), its target and success."""
    actions = topo.actions
    n = len(loc.P)
    if not actions:
        return np.full(n, None, dtype=object), np.full(n, None, dtype=object), np.full(n, np.nan)
    A = np.zeros((n, len(actions)))
    for a_i, a in enumerate(actions):
        for mode, p_s in a.success.items():
            A[:, a_i] += p_s * loc.P[:, loc.loc_index[f"{a.component}:{mode}"]]
    order = _best_actions(A, np.array([a.cost for a in actions]))
    return (
        np.array([actions[i].name for i in order], dtype=object),
        np.array([actions[i].component for i in order], dtype=object),
        A[np.arange(n), order],
    )


def _rows(network: Network, frame: IncidentFrame, loc: _Locations, truth: _Truth, top_k: int) -> pd.DataFrame:
    """The per-incident output table (see :func:`score_frame`)."""
    comps = network.topology.components
    inc = frame.incidents
    n = len(inc)
    P = loc.P
    k = min(top_k, P.shape[1])
    top = np.argsort(-P, axis=1, kind="stable")[:, :k]
    top_json = [
        json.dumps([[loc.labels[i][0], loc.labels[i][1], round(float(P[r, i]), 10)] for i in top[r]]) for r in range(n)
    ]
    rec_action, rec_target, rec_es = _recommendations(network.topology, loc)
    n_obs = (
        frame.observations.groupby("incident_id", sort=False).size().reindex(inc["id"]).fillna(0).astype(int).to_numpy()
    )
    best_c = np.argmax(loc.p_any, axis=1)
    keys = [f"{c}:{m}" for c, m in loc.labels]
    return pd.DataFrame(
        {
            "incident_id": inc["id"].to_numpy(dtype=object),
            "n_observations": n_obs,
            "top_locations": top_json,
            "top_component": np.array([comps[j].name for j in best_c], dtype=object),
            "p_top_component": loc.p_any[np.arange(n), best_c],
            "recommended_action": rec_action,
            "recommended_target": rec_target,
            "expected_success": rec_es,
            "true_component": truth.component,
            "true_fault_mode": truth.fault_mode,
            "rank_location": truth.rank_loc,
            "rank_component": truth.rank_comp,
            "p_true_location": truth.p_true,
            "posterior": [json.dumps(dict(zip(keys, np.round(P[r], 12).tolist()))) for r in range(n)],
        }
    )


def _best_actions(A: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Per row, the action with the highest expected success; ties to the lower cost, then declaration order."""
    best = A.max(axis=1, keepdims=True)
    tied = A >= best  # exact ties, as in recovery.choose_action
    c = np.where(tied, costs[None, :], np.inf)
    return np.argmin(c, axis=1)


# --------------------------------------------------------------------------- whole logs
@dataclass(frozen=True, slots=True)
class _Chunk:
    """One unit of work: a Parquet row group (or a slice of one), or the k-th run of records."""

    index: int
    file: str
    row_group: int | None = None
    offset: int = 0
    length: int | None = None


def _plan(path: Path, fmt: str, chunk_size: int) -> list[_Chunk] | None:
    """Chunks of a Parquet log (row groups, split when larger than ``chunk_size``); None for streamed formats.

    Every file is opened and its schema checked here, before any work: a file
    that is not Parquet, or whose columns have the wrong types, is one clear error.
    """
    if fmt != "parquet":
        return None
    from diagnosis.logs.formats import _open_parquet, _parquet_files

    chunks = []
    for file in _parquet_files(path):
        md = _open_parquet(file).metadata
        for rg in range(md.num_row_groups):
            rows = md.row_group(rg).num_rows
            for off in range(0, max(rows, 1), chunk_size):
                chunks.append(_Chunk(len(chunks), str(file), rg, off, min(chunk_size, rows - off)))
    return chunks


def _earlier_ids(plan: list[_Chunk]) -> dict[int, dict[str, str]]:
    """Per chunk, the incident ids an earlier chunk already holds, with where they were first seen.

    Reads only the ``id`` column, so a duplicate id is caught across the whole
    log (and the same way on a Dask cluster, where chunks run in any order).
    """
    import pyarrow.parquet as pq

    first: dict[str, tuple[int, str]] = {}
    out: dict[int, dict[str, str]] = {}
    files: dict[str, Any] = {}
    for chunk in plan:
        pf = files.get(chunk.file)
        if pf is None:
            pf = files[chunk.file] = pq.ParquetFile(chunk.file)
        if "id" not in pf.schema_arrow.names:
            continue
        start_row = sum(pf.metadata.row_group(i).num_rows for i in range(chunk.row_group)) + chunk.offset
        ids = pf.read_row_group(chunk.row_group, columns=["id"]).column("id").slice(chunk.offset, chunk.length)
        for k, iid in enumerate(ids.to_pylist()):
            if not isinstance(iid, str) or not iid:
                continue
            seen = first.get(iid)
            if seen is None:
                first[iid] = (chunk.index, f"row {start_row + k + 1} of {chunk.file}")
            elif seen[0] != chunk.index:
                out.setdefault(chunk.index, {})[iid] = seen[1]
    return out


def _read_chunk(chunk: _Chunk) -> tuple[IncidentFrame, list[Reject]]:
    import pyarrow.parquet as pq

    from diagnosis.logs.formats import _parquet_chunk

    pf = pq.ParquetFile(chunk.file)
    start_row = sum(pf.metadata.row_group(i).num_rows for i in range(chunk.row_group)) + chunk.offset
    table = pf.read_row_group(chunk.row_group).slice(chunk.offset, chunk.length)
    parts, start = [], start_row
    for batch in table.to_batches():
        parts.append((chunk.file, start, batch))
        start += batch.num_rows
    if not parts:
        return IncidentFrame.empty(), []
    return _parquet_chunk(parts)


def _drop_earlier(frame: IncidentFrame, earlier: Mapping[str, str], source: str) -> tuple[IncidentFrame, list[Reject]]:
    """Set aside the incidents whose id an earlier chunk already held (the first record with an id wins)."""
    ids = frame.incidents["id"].to_numpy(dtype=object)
    dup = np.fromiter((i in earlier for i in ids), dtype=bool, count=len(ids))
    if not dup.any():
        return frame, []
    rejects = [
        Reject(
            source,
            frame.location.get(iid, f"incident {iid}"),
            iid,
            "id",
            short_repr(iid),
            f"duplicate incident id (first at {earlier[iid]})",
        )
        for iid in ids[dup]
    ]
    return frame.select(ids[~dup]), rejects


def _ids_of(frame: IncidentFrame, rejects: list[Reject]) -> dict[str, str]:
    """Every incident id a chunk holds (scored or set aside), with its location."""
    out = {r.incident_id: r.location for r in rejects if r.incident_id}
    out.update(frame.location)
    return out


_ENGINE_CACHE: dict[str, tuple[Network, Any]] = {}


def _network_and_engine(topology: Topology, engine: str):
    """Build (and cache per process, for Dask workers) the network and engine of a topology."""
    from diagnosis.inference import make_engine

    key = hashlib.sha256(json.dumps([topology.to_dict(), engine], sort_keys=True).encode()).hexdigest()
    if key not in _ENGINE_CACHE:
        network = build_network(topology)
        _ENGINE_CACHE.clear()
        _ENGINE_CACHE[key] = (network, make_engine(network, engine))
    return _ENGINE_CACHE[key]


def _score_chunk(
    topology: Topology,
    frame: IncidentFrame,
    rejects: list[Reject],
    *,
    engine: str,
    top_k: int,
    source: str,
    assume_fault: bool = False,
    earlier: Mapping[str, str] | None = None,
):
    network, eng = _network_and_engine(topology, engine)
    dups: list[Reject] = []
    if earlier:
        frame, dups = _drop_earlier(frame, earlier, source)
    good, bad = validate_frame(frame, topology, source=source)
    rows, stats, more = score_frame(network, eng, good, top_k=top_k, source=source, assume_fault=assume_fault)
    all_rejects = list(rejects) + dups + bad + more
    stats.n_rejected = len(all_rejects)
    return rows, stats, all_rejects


def _chunk_task(
    topology_doc: dict, chunk: _Chunk, engine: str, top_k: int, assume_fault: bool = False, earlier: dict | None = None
):
    """What a Dask worker runs: read one Parquet chunk and score it (pure function of its inputs)."""
    topology = Topology.from_dict(topology_doc)
    frame, rejects = _read_chunk(chunk)
    rows, stats, rejects = _score_chunk(
        topology,
        frame,
        rejects,
        engine=engine,
        top_k=top_k,
        source=chunk.file,
        assume_fault=assume_fault,
        earlier=earlier,
    )
    return chunk.index, rows, stats.to_json(), [r.to_dict() for r in rejects]


def _fingerprint(
    topology: Topology, path: Path, chunk_size: int, top_k: int, engine: str, assume_fault: bool = False
) -> str:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    meta = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    doc = {
        "topology": topology.to_dict(),
        "input": meta,
        "chunk_size": chunk_size,
        "top_k": top_k,
        "engine": engine,
        "version": 1,
    }
    if assume_fault:
        doc["assume_fault"] = True
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _atomic_write(path: Path, write) -> None:
    atomic_write(path, write)


def _write_part(parts: Path, index: int, rows: pd.DataFrame, stats_json: dict, rejects: list[dict]) -> None:
    """Write one chunk's outputs; the stats file, written last, marks the chunk done."""
    stem = parts / f"part-{index:06d}"
    _atomic_write(stem.with_suffix(".parquet"), lambda tmp: rows.to_parquet(tmp, index=False))
    _atomic_write(
        Path(f"{stem}.rejects.jsonl"), lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in rejects))
    )
    _atomic_write(Path(f"{stem}.stats.json"), lambda tmp: Path(tmp).write_text(json.dumps(stats_json)))


def _done(parts: Path) -> set[int]:
    """Chunks whose three files are all there (the stats file marks a chunk done; the others are checked too)."""
    done = set()
    for p in parts.glob("part-*.stats.json"):
        stem = parts / p.name[: -len(".stats.json")]
        if stem.with_suffix(".parquet").is_file() and Path(f"{stem}.rejects.jsonl").is_file():
            done.add(int(p.name[5:11]))
    return done


def _stats_json(parts: Path, index: int) -> dict:
    return json.loads((parts / f"part-{index:06d}.stats.json").read_text())


def _progress(total: int | None, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="chunk", file=sys.stderr, desc="scoring")


def score_log(
    topology: Topology,
    incidents: str | os.PathLike,
    out: str | os.PathLike,
    *,
    chunk_size: int = 10_000,
    top_k: int = 5,
    engine: str = "auto",
    scheduler: Any = None,
    progress: bool = False,
    assume_fault: bool = False,
    restart: bool = False,
) -> ScoreSummary:
    """Score an incident log chunk by chunk; resumable; optionally on a Dask cluster.

    Parameters
    ----------
    topology : Topology
    incidents : path-like
        The log (JSON Lines, Parquet file or folder, CSV folder).
    out : path-like
        The scored rows: ``.parquet``, ``.jsonl`` or ``.csv``. Beside it the run
        writes ``OUT.summary.json`` (the metrics) and ``OUT.rejects.jsonl``
        (every record set aside, with its reason).
    chunk_size : int
        Incidents per chunk (Parquet: at most this many per row group slice).
    top_k : int
        Locations kept per incident.
    engine : str
        Engine name for :func:`diagnosis.inference.make_engine`.
    assume_fault : bool, default False
        Condition every posterior on "some component is faulty" (incidents
        opened from known faults; see :func:`score_frame`).
    scheduler : str or distributed.Client, optional
        A Dask scheduler address (or client): score Parquet chunks on the cluster.
    progress : bool
        Show a progress bar on stderr.
    restart : bool
        Discard the unfinished work of an earlier run with other arguments
        (``OUT.parts/``) instead of refusing to mix it in.

    Returns
    -------
    ScoreSummary

    Notes
    -----
    **Resuming.** Work happens in ``OUT.parts/``: one Parquet file of rows, one
    rejects file and one stats file per chunk, each written to a temporary
    name and renamed; the stats file is written last and marks the chunk
    done. A run started again with the same arguments finds the done chunks,
    does not redo them, and writes each chunk's rows exactly once. The folder
    holds a fingerprint of the arguments (topology, input files' sizes and
    modification times, chunk size, top-k, engine); a different fingerprint is
    an error rather than a silent mix (``restart=True`` discards it). When
    every chunk is done the parts are merged into ``OUT`` (atomically), the
    summary is the sum of the chunks' statistics in chunk order, and
    ``OUT.parts/`` is renamed away and removed. A run killed at any moment
    (``kill -9``) is finished by a plain rerun; the rerun also removes the
    temporaries the killed run left.

    **Safety.** The outputs are checked against the input before any work (an
    output that is the input, a link to it, or an existing folder is refused);
    the run holds an exclusive lock on ``OUT.lock``, so a second run on the
    same output refuses (naming the first one's pid) rather than mixing two
    logs. An incident id already seen in an earlier record (in any chunk) is
    set aside as a duplicate.
    """
    from diagnosis.logs.formats import _write_text, detect_format, iter_incident_frames

    validate_params(
        {"chunk_size": chunk_size, "top_k": top_k, "restart": restart},
        {
            "chunk_size": [Interval(int, 1, None, closed="left")],
            "top_k": [Interval(int, 1, None, closed="left")],
            "restart": [bool],
        },
        caller="score_log",
    )
    inp = Path(incidents)
    out = Path(out)
    if not inp.exists():
        raise IncidentLogError(f"{inp}: file not found")
    out_fmt = {".parquet": "parquet", ".jsonl": "jsonl", ".csv": "csv"}.get(out.suffix.lower())
    if out_fmt is None:
        raise IncidentLogError(f"{out}: the output must end in .parquet, .jsonl or .csv")
    if not out.parent.is_dir():
        raise IncidentLogError(f"{out}: folder {str(out.parent)!r} does not exist")
    rejects_path, summary_path = Path(f"{out}.rejects.jsonl"), Path(f"{out}.summary.json")
    check_outputs([out, rejects_path, summary_path], [inp], not_inside_inputs=True)
    parts = out.parent / f"{out.name}.parts"
    trash = out.parent / f".{out.name}.parts.old"
    if parts.exists() and not parts.is_dir():
        raise OutputError(f"{parts}: the run's work folder is a file; remove it or choose another --out")
    fmt = detect_format(inp)
    plan = _plan(inp, fmt, chunk_size)
    if scheduler is not None and plan is None:
        raise IncidentLogError(
            f"{inp}: a Dask run needs a Parquet log (file or folder of parts); convert it with `diagnosis convert`"
        )
    from diagnosis.inference import engine_label

    network, eng = _network_and_engine(topology, engine)
    engine_name = engine_label(eng)
    fp = _fingerprint(topology, inp, chunk_size, top_k, engine, assume_fault)
    with output_lock(out):
        for p in (out, rejects_path, summary_path):
            remove_stale_temporaries(p)
        try:
            if trash.exists():
                shutil.rmtree(trash)
            if restart and parts.exists():
                shutil.rmtree(parts)
            parts.mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputError(os_error_message(parts, exc, "cannot prepare the work folder")) from None
        try:
            return _run(
                topology, inp, out, out_fmt, parts, trash, plan, fp,
                chunk_size=chunk_size, top_k=top_k, engine=engine, engine_name=engine_name, assume_fault=assume_fault,
                scheduler=scheduler, progress=progress, iter_frames=iter_incident_frames, write_text=_write_text,
            )  # fmt: skip
        except BaseException:
            if parts.is_dir() and not _done(parts):  # nothing finished: leave no work folder behind
                shutil.rmtree(parts, ignore_errors=True)
            raise


@dataclass(frozen=True)
class _Job:
    """What every chunk of one :func:`score_log` run is scored with."""

    topology: Topology
    engine: str
    top_k: int
    assume_fault: bool

    def score(self, frame: IncidentFrame, rejects: list[Reject], *, source: str, earlier):
        return _score_chunk(
            self.topology,
            frame,
            rejects,
            engine=self.engine,
            top_k=self.top_k,
            source=source,
            assume_fault=self.assume_fault,
            earlier=earlier,
        )


def _run(
    topology, inp, out, out_fmt, parts, trash, plan, fp, *, chunk_size, top_k, engine, engine_name, assume_fault, scheduler,
    progress, iter_frames, write_text,
) -> ScoreSummary:  # fmt: skip
    """The body of :func:`score_log`, with the output's lock held: resume, score the chunks left, merge."""
    _open_work_folder(parts, fp, inp, chunk_size)
    done = _done(parts)
    job = _Job(topology, engine, top_k, assume_fault)
    if plan is not None:
        earlier = _earlier_ids(plan)
        todo = [c for c in plan if c.index not in done]
        bar = _progress(len(plan), progress)
        if bar:
            bar.update(len(plan) - len(todo))
        if scheduler is not None:
            _score_on_dask(job, scheduler, todo, earlier, parts, bar)
        else:
            _score_planned(job, todo, earlier, parts, bar)
        if bar:
            bar.close()
        n_chunks = len(plan)
    else:
        n_chunks = _score_stream(job, inp, parts, done, chunk_size, iter_frames, progress)
    return _finish(parts, trash, out, out_fmt, n_chunks, len(done), engine_name, write_text)


def _open_work_folder(parts: Path, fp: str, inp: Path, chunk_size: int) -> None:
    """Check that ``parts`` holds the work of this very run (its fingerprint), or start it afresh."""
    manifest = parts / "manifest.json"
    old = None
    if manifest.exists():
        try:
            old = json.loads(manifest.read_text())
        except (OSError, ValueError):
            old = {}
    if old is not None and old.get("fingerprint") != fp:
        raise IncidentLogError(
            f"{parts} holds the unfinished work of a run with different arguments or a changed input; "
            "rerun with the same arguments to finish it, or add --restart (score_log(..., restart=True)) "
            "to discard it and start over"
        )
    if old is None:
        # No manifest: whatever is in the folder belongs to no known run.
        for p in parts.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        _atomic_write(
            manifest,
            lambda tmp: Path(tmp).write_text(
                json.dumps({"fingerprint": fp, "input": str(inp), "chunk_size": chunk_size})
            ),
        )


def _score_planned(job: _Job, todo: list[_Chunk], earlier: dict, parts: Path, bar) -> None:
    """Score the chunks left of a planned (Parquet) log in this process."""
    for chunk in todo:
        frame, rejects = _read_chunk(chunk)
        rows, stats, rj = job.score(frame, rejects, source=chunk.file, earlier=earlier.get(chunk.index))
        _write_part(parts, chunk.index, rows, stats.to_json(), [r.to_dict() for r in rj])
        if bar:
            bar.update(1)


def _score_on_dask(job: _Job, scheduler, todo: list[_Chunk], earlier: dict, parts: Path, bar) -> None:
    """Score the chunks left of a planned (Parquet) log on a Dask cluster; parts are written here as they finish."""
    from distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        doc = job.topology.to_dict()
        futures = client.map(
            _chunk_task,
            [doc] * len(todo),
            todo,
            [job.engine] * len(todo),
            [job.top_k] * len(todo),
            [job.assume_fault] * len(todo),
            [earlier.get(c.index) for c in todo],
            pure=False,
        )
        for fut in as_completed(futures):
            index, rows, stats_json, rejects = fut.result()
            _write_part(parts, index, rows, stats_json, rejects)
            if bar:
                bar.update(1)
    finally:
        if not isinstance(scheduler, Client):
            client.close()


def _score_stream(job: _Job, inp: Path, parts: Path, done: set[int], chunk_size: int, iter_frames, progress) -> int:
    """Score a log read as a stream (JSON Lines, CSV) chunk by chunk; return the number of chunks."""
    first_todo = 0
    while first_todo in done:
        first_todo += 1
    # The ids of the chunks done by an earlier run, so a duplicate across chunks is still caught.
    seen: dict[str, str] = {}
    for i in range(first_todo):
        seen.update(_stats_json(parts, i).get("ids", {}))
    bar = _progress(None, progress)
    if bar:
        bar.update(first_todo)
    index = first_todo
    for frame, rejects in iter_frames(inp, chunk_size=chunk_size, skip=first_todo * chunk_size):
        if index in done:
            seen.update(_stats_json(parts, index).get("ids", {}))
        else:
            ids = _ids_of(frame, rejects)
            rows, stats, rj = job.score(frame, rejects, source=str(inp), earlier=seen)
            for iid, loc in ids.items():
                seen.setdefault(iid, loc)
            _write_part(parts, index, rows, {**stats.to_json(), "ids": ids}, [r.to_dict() for r in rj])
        index += 1
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return index


def _finish(
    parts: Path, trash: Path, out: Path, out_fmt: str, n_chunks: int, n_resumed: int, engine_name: str, write_text
) -> ScoreSummary:
    """Merge the parts in chunk order into the outputs, then remove the work folder."""
    total = ScoreStats()
    indexes = sorted(_done(parts))
    for i in indexes:
        total.add(ScoreStats.from_json(_stats_json(parts, i)))
    summary = ScoreSummary.from_stats(total, n_chunks=n_chunks, n_chunks_resumed=n_resumed, engine=engine_name)
    files = [parts / f"part-{i:06d}.parquet" for i in indexes]
    _merge(files, out, out_fmt)
    rej_lines = (p.read_text() for p in (parts / f"part-{i:06d}.rejects.jsonl" for i in indexes))
    write_text(Path(f"{out}.rejects.jsonl"), rej_lines)
    write_text(Path(f"{out}.summary.json"), [json.dumps(summary.to_dict(), indent=2, allow_nan=True) + "\n"])
    # Rename first (atomic), then delete: a run killed while deleting leaves no half-removed parts folder
    # that a rerun would mistake for work in progress, only a hidden folder the next run removes.
    try:
        os.replace(parts, trash)
        shutil.rmtree(trash)
    except OSError as exc:
        raise OutputError(os_error_message(parts, exc, "cannot remove the work folder")) from None
    return summary


def _merge(files: list[Path], out: Path, fmt: str) -> None:
    """Concatenate the part files into ``out`` one part at a time (memory stays flat)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(tmp):
        if fmt == "parquet":
            writer = None
            for f in files:
                t = pq.read_table(f)
                if t.num_rows == 0:
                    continue
                if writer is None:
                    writer = pq.ParquetWriter(tmp, t.schema)
                writer.write_table(t.cast(writer.schema))
            if writer is None:
                pq.write_table(pa.table({c: pa.array([], pa.string()) for c in ROW_COLUMNS}), tmp)
            else:
                writer.close()
        else:
            with open(tmp, "w", encoding="utf-8") as fh:
                header = True
                for f in files:
                    df = pd.read_parquet(f)
                    if fmt == "csv":
                        if len(df):
                            fh.write(df.to_csv(index=False, header=header))
                            header = False
                    elif len(df):
                        fh.write(df.to_json(orient="records", lines=True))
                if fmt == "csv" and header:  # no rows at all: still a header, so the file reads as a table
                    fh.write(",".join(ROW_COLUMNS) + "\n")

    _atomic_write(out, write)
