"""Soft-evidence likelihoods fitted from labelled history: :class:`LikelihoodFitter`.

``detect`` turns a detector's p-value ``p`` into soft evidence through a
likelihood ratio ``LR(p) = P(p | the symptom's component is faulty) / P(p |
it is not)``; by default the beta-uniform ratio ``a * p**(a - 1)``
(``a = 0.25``, :class:`~diagnosis.telemetry.detectors.EvidenceModel`). With
labelled history (incident windows whose root cause is known, and the
p-values ``detect`` gave every symptom) the ratio is fitted instead, per
detector kind (the detectors' ``watches``: ``latency``, ``error_rate``, ...):

1. **Bins** of ``x = -log10 p`` (:data:`DEFAULT_EDGES`). In each bin ``b``
   count the p-values of symptoms whose component was a root cause
   (``n1_b``, of ``N1``) and of the others (``n0_b``, of ``N0``).
2. **Prior** masses of the bins under the beta-uniform model: under "faulty"
   p has density ``a * p**(a - 1)``, so bin ``[p_lo, p_hi]`` has mass
   ``F1_b = p_hi**a - p_lo**a``; under "not faulty" p is uniform,
   ``F0_b = p_hi - p_lo``.
3. **Smoothed masses** (a Dirichlet posterior mean with ``w = prior_weight``
   pseudo-observations per class): ``m1_b = c1_b / (N1 + w)`` with
   ``c1_b = n1_b + w F1_b``, and ``m0_b = c0_b / (N0 + w)``, ``c0_b = n0_b + w F0_b``.
   The bin's ratio is ``m1_b / m0_b``, a ratio of *densities* (each mass over
   the same bin width), not a posterior: the base rate of faults cancels, so
   it can be used as virtual evidence whatever the prior of the network.
   Its logarithm has approximate variance ``v_b = 1 / c1_b + 1 / c0_b``; it
   is shrunk towards the prior's log ratio ``mu_b = ln(F1_b / F0_b)`` with
   prior standard deviation ``prior_sd`` (in log10 units, ``tau``): the
   precision-weighted mean ``(mu_b / tau**2 + ln(m1_b / m0_b) / v_b) /
   (1 / tau**2 + 1 / v_b)``. A bin where one class has (almost) no data --
   the far tail, where a healthy component's p-value is too rare to count --
   keeps the prior's ratio instead of an infinite or zero one.
4. **Pooling.** The prior masses and log ratios of one kind are the pooled ones of every
   kind (step 3 over all kinds, itself with the beta-uniform prior), so a
   kind with few labelled p-values borrows from the others, and with no
   data at all the curve is the beta-uniform one.
5. **Monotone and bounded.** ``log10(m1_b / m0_b)`` is made non-decreasing
   in ``x`` by weighted isotonic regression (pool adjacent violators,
   weights the posterior precisions of step 3) and clipped to ``[-max_log10_ratio,
   max_log10_ratio]``.
6. **Knots.** Each bin's value sits at the ``x`` where the beta-uniform
   ratio equals the prior mass ratio ``F1_b / F0_b``. Since ``log10 LR`` of
   the beta-uniform model is linear in ``x``, a curve fitted on no data
   reproduces the default ratio exactly between the first and the last
   knot (and is held constant beyond them).

**Into the network.** The fitted ratio ``R(p)`` compares the faulty and the
healthy component; the soft evidence sits on the symptom, whose table says
it fires with probability ``s`` when the component is faulty and ``f`` when
it is not (:func:`symptom_rates`). Virtual evidence ``L`` on the symptom
gives the component the ratio ``(s L + 1 - s) / (f L + 1 - f)``, so the
ratio that reproduces ``R`` is (:func:`virtual_ratio`)::

    L = (R (1 - f) - (1 - s)) / (s - R f)

for ``(1 - s) / (1 - f) < R < s / f`` (:func:`expressible_ratios`); a
fitted ratio beyond that range is more than one symptom of this detector
can say under the network's table, and gets the largest (smallest) evidence
allowed. ``detect`` applies this with the topology's own ``s`` and ``f`` for
every symptom of a kind that has a curve (the default beta-uniform ratio is,
as before, entered directly).

**Several systems.** A detector kind is the same signal on every system, so
the labelled p-values of other systems' logs (each joined to its own
topology) can be pooled with this system's before fitting
(:func:`fit_likelihoods` ``history=``): more root-cause windows per kind.

The result is a :class:`~diagnosis.model.topology.LikelihoodCurve` per kind,
stored in the topology's ``likelihoods:`` section by ``diagnosis fit
--evidence`` (:func:`fit_likelihoods`) and used by ``detect``. The label
is the root cause, not the symptom's state: the fitted ratio says how much
more often a p-value this small is seen at a faulty component than at a
healthy one, symptoms that fire through a faulty callee included.
``docs/learning.md`` has the figures measured on the Nezha data.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diagnosis._validation import Interval, validate_params
from diagnosis.exceptions import DiagnosisError, NotFittedError
from diagnosis.logs.schema import IncidentFrame, parse_faults
from diagnosis.model.topology import MAX_LOG10_RATIO, LikelihoodCurve, Topology

__all__ = [
    "DEFAULT_EDGES",
    "EVIDENCE_FILE_COLUMNS",
    "LikelihoodFitter",
    "expressible_ratios",
    "fit_likelihoods",
    "labelled_p_values",
    "read_evidence",
    "symptom_rates",
    "virtual_ratio",
]

#: Bin edges of ``-log10 p`` (the last bin is open).
DEFAULT_EDGES = (0.0, 0.1, 0.3, 0.6, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, math.inf)
#: Columns an evidence table (``detect --save-evidence``) needs.
EVIDENCE_FILE_COLUMNS = ("window_id", "symptom", "p_value")
_POOLED = "(pooled)"


def _pava(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted isotonic (non-decreasing) regression by pooling adjacent violators."""
    vals, wts, sizes = [], [], []
    for yi, wi in zip(y.tolist(), w.tolist()):
        vals.append(yi)
        wts.append(wi)
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w2 = wts[-2] + wts[-1]
            v2 = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w2
            s2 = sizes[-2] + sizes[-1]
            del vals[-1], wts[-1], sizes[-1]
            vals[-1], wts[-1], sizes[-1] = v2, w2, s2
    return np.repeat(np.asarray(vals), sizes)


class LikelihoodFitter:
    """Fit the soft-evidence likelihood ratio of detector p-values per detector kind (module docstring).

    Parameters
    ----------
    prior_shape : float, default 0.25
        ``a`` of the beta-uniform prior curve, in (0, 1): the default of
        :class:`~diagnosis.telemetry.detectors.EvidenceModel`.
    prior_weight : float, default 1
        Pseudo-observations of the prior masses per class (faulty, not faulty), > 0.
    prior_sd : float, default 0.5
        Prior standard deviation of each bin's ``log10 LR`` around the prior
        curve, > 0: how far the data may move it.
    edges : sequence of float, default :data:`DEFAULT_EDGES`
        Bin edges of ``-log10 p``: start at 0, strictly increasing, the last
        may be ``inf`` (else the last bin is ``[edges[-2], inf)`` anyway).
    pooling : bool, default True
        Shrink each kind towards the pooled curve of every kind (else towards
        the beta-uniform one).
    max_log10_ratio : float, default 6
        Bound of ``|log10 LR|``, in (0, 12].

    Attributes
    ----------
    curves_ : tuple of LikelihoodCurve
        One per detector kind seen in ``fit``, sorted by kind.
    pooled_ : LikelihoodCurve
        The pooled curve (``watches`` = ``"(pooled)"``).
    counts_ : dict of str to (int, int)
        Kind -> (p-values of faulty components, of the others).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = np.concatenate([rng.uniform(size=4000), rng.beta(0.25, 1.0, size=1000)])
    >>> faulty = np.r_[np.zeros(4000, bool), np.ones(1000, bool)]
    >>> f = LikelihoodFitter().fit(p, faulty, ["latency"] * 5000)
    >>> lr = f.ratio([0.5, 1e-3], ["latency"] * 2)
    >>> bool(0.3 < lr[0] < 0.6 and 25 < lr[1] < 80)   # the true ratio: 0.42 and 44.5
    True
    """

    def __init__(
        self,
        *,
        prior_shape: float = 0.25,
        prior_weight: float = 1.0,
        prior_sd: float = 0.5,
        edges: Sequence[float] = DEFAULT_EDGES,
        pooling: bool = True,
        max_log10_ratio: float = 6.0,
    ):
        self.prior_shape = prior_shape
        self.prior_weight = prior_weight
        self.prior_sd = prior_sd
        self.edges = edges
        self.pooling = pooling
        self.max_log10_ratio = max_log10_ratio

    def get_params(self) -> dict[str, Any]:
        """The settings, as given to ``__init__``."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {k: getattr(self, k) for k in names}

    def __getattr__(self, name: str):
        if name.endswith("_") and not name.startswith("__"):
            raise NotFittedError(
                f"This LikelihoodFitter instance is not fitted yet: {name!r} is set by fit(p_values, faulty, watches); "
                "call it first."
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _edges(self) -> np.ndarray:
        from diagnosis.exceptions import ParameterError

        try:
            e = np.asarray(list(self.edges), dtype=np.float64)
        except (TypeError, ValueError):
            e = np.zeros(0)
        if len(e) < 2 or e[0] != 0.0 or np.any(np.diff(e) <= 0) or np.isnan(e).any() or np.isinf(e[:-1]).any():
            raise ParameterError(
                "The 'edges' parameter of LikelihoodFitter must be at least two bin edges of -log10 p, "
                f"starting at 0 and strictly increasing (the last may be inf). Got {self.edges!r} instead."
            )
        if np.isfinite(e[-1]):
            e = np.append(e, math.inf)
        return e

    def fit(self, p_values, faulty, watches: Sequence[str] | None = None) -> LikelihoodFitter:
        """Fit one curve per detector kind.

        Parameters
        ----------
        p_values : array-like of float
            Detector p-values, in [0, 1] (0 is read as the smallest float).
        faulty : array-like of bool
            Whether the symptom's component was a root cause of its incident.
        watches : sequence of str, optional
            The detector kind of each p-value; default: one kind, ``"(pooled)"``.

        Returns
        -------
        LikelihoodFitter
            ``self``.
        """
        validate_params(
            {
                "prior_shape": self.prior_shape,
                "prior_weight": self.prior_weight,
                "prior_sd": self.prior_sd,
                "max_log10_ratio": self.max_log10_ratio,
                "pooling": self.pooling,
            },
            {
                "prior_shape": [Interval(float, 0, 1, closed="neither")],
                "prior_weight": [Interval(float, 0, None, closed="neither")],
                "prior_sd": [Interval(float, 0, None, closed="neither")],
                "max_log10_ratio": [Interval(float, 0, MAX_LOG10_RATIO, closed="right")],
                "pooling": [bool],
            },
            caller="LikelihoodFitter",
        )
        edges = self._edges()
        p = np.asarray(p_values, dtype=np.float64).ravel()
        y = np.asarray(faulty).ravel()
        kinds = np.full(len(p), _POOLED, dtype=object) if watches is None else np.asarray(watches, dtype=object).ravel()
        if not (len(p) == len(y) == len(kinds)):
            raise DiagnosisError(
                f"p_values, faulty and watches must have one entry per p-value. Got {len(p)}, {len(y)} and {len(kinds)}."
            )
        bad = ~((p >= 0) & (p <= 1))
        if bad.any():
            raise DiagnosisError(f"p-values must be in [0, 1]. Got {p[bad][0]!r} instead.")
        if y.dtype != bool:
            if not np.isin(y, (0, 1)).all():
                raise DiagnosisError(f"faulty must be booleans (or 0/1). Got {y[~np.isin(y, (0, 1))][0]!r} instead.")
            y = y.astype(bool)
        a, w = float(self.prior_shape), float(self.prior_weight)
        p_hi, p_lo = 10.0 ** -edges[:-1], 10.0 ** -edges[1:]
        prior1, prior0 = p_hi**a - p_lo**a, p_hi - p_lo
        # the x at which the beta-uniform log10 LR (log10 a + (1 - a) x) equals log10(F1 / F0)
        knots = (np.log10(prior1 / prior0) - math.log10(a)) / (1.0 - a)
        x = -np.log10(np.clip(p, 1e-300, 1.0))
        b = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(prior1) - 1)
        nb = len(prior1)

        tau2 = (float(self.prior_sd) * math.log(10.0)) ** 2

        def smoothed(sel, q1, q0, mu):
            """Smoothed masses, and the log ratio shrunk towards ``mu`` (natural log) with its precision."""
            n1 = np.bincount(b[sel & y], minlength=nb).astype(np.float64)
            n0 = np.bincount(b[sel & ~y], minlength=nb).astype(np.float64)
            c1, c0 = n1 + w * q1, n0 + w * q0
            m1, m0 = c1 / c1.sum(), c0 / c0.sum()
            prec = 1.0 / tau2 + 1.0 / (1.0 / c1 + 1.0 / c0)
            post = (mu / tau2 + np.log(m1 / m0) / (1.0 / c1 + 1.0 / c0)) / prec
            return m1, m0, post, prec, (int(n1.sum()), int(n0.sum()))

        def curve(name, post, prec) -> LikelihoodCurve:
            r = _pava(post / math.log(10.0), prec)
            r = np.clip(r, -self.max_log10_ratio, self.max_log10_ratio)
            return LikelihoodCurve(name, tuple(np.round(knots, 6)), tuple(np.round(r, 6)))

        everything = np.ones(len(p), dtype=bool)
        m1p, m0p, post_p, prec_p, _ = smoothed(everything, prior1, prior0, np.log(prior1 / prior0))
        self.pooled_ = curve(_POOLED, post_p, prec_p)
        q1, q0, mu = (m1p, m0p, post_p) if self.pooling else (prior1, prior0, np.log(prior1 / prior0))
        curves, counts = [], {}
        for k in sorted({str(k) for k in kinds}):
            _, _, post, prec, counts[k] = smoothed(kinds == k, q1, q0, mu)
            curves.append(curve(k, post, prec))
        self.curves_ = tuple(curves)
        self.counts_ = counts
        return self

    def curve(self, watches: str) -> LikelihoodCurve:
        """The fitted curve of one kind; the pooled one for a kind not seen in ``fit``."""
        for c in self.curves_:
            if c.watches == watches:
                return c
        return self.pooled_

    def ratio(self, p_values, watches: Sequence[str] | None = None) -> np.ndarray:
        """The fitted ``LR(p)`` per p-value (kind ``watches``; default: the pooled curve)."""
        p = np.asarray(p_values, dtype=np.float64).ravel()
        if watches is None:
            return self.pooled_.ratio(p)
        kinds = np.asarray(watches, dtype=object).ravel()
        out = np.empty(len(p))
        for k in set(kinds.tolist()):
            sel = kinds == k
            out[sel] = self.curve(k).ratio(p[sel])
        return out


def read_evidence(path: str | os.PathLike) -> pd.DataFrame:
    """Read an evidence table written by ``diagnosis detect --save-evidence`` (CSV).

    Returns
    -------
    DataFrame
        At least :data:`EVIDENCE_FILE_COLUMNS`; ``p_value`` as float, rows without one dropped.

    Raises
    ------
    DiagnosisError
        The file cannot be read, lacks a column, or holds a p-value outside [0, 1].
    """
    path = Path(path)
    try:
        ev = pd.read_csv(path, dtype={"window_id": str, "symptom": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DiagnosisError(f"{path}: cannot read the evidence table: {exc}") from None
    missing = [c for c in EVIDENCE_FILE_COLUMNS if c not in ev.columns]
    if missing:
        raise DiagnosisError(
            f"{path}: an evidence table needs the columns {list(EVIDENCE_FILE_COLUMNS)}; missing {missing} "
            "(write one with 'diagnosis detect --save-evidence FILE')"
        )
    p = pd.to_numeric(ev["p_value"], errors="coerce")
    bad = ev["p_value"].notna() & ~((p >= 0) & (p <= 1))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DiagnosisError(
            f"{path}: row {i + 2}: p_value must be a number in [0, 1]. Got {ev['p_value'].iloc[i]!r} instead."
        )
    return ev.assign(p_value=p)[p.notna()].reset_index(drop=True)


def labelled_p_values(evidence: pd.DataFrame, incidents: IncidentFrame, topology: Topology) -> pd.DataFrame:
    """Join detector p-values with the root causes of their incidents.

    Parameters
    ----------
    evidence : DataFrame
        ``window_id`` (the incident id), ``symptom``, ``p_value``
        (:attr:`~diagnosis.telemetry.detect.DetectReport.evidence`, :func:`read_evidence`).
    incidents : IncidentFrame
        The incident log ``detect`` wrote; its ``faults`` (else
        ``cause_component``) are the labels. Incidents with no known cause are left out.
    topology : Topology
        Maps each symptom to its component and detector kind.

    Returns
    -------
    DataFrame
        ``incident_id``, ``symptom``, ``component``, ``watches``, ``p_value``,
        ``faulty`` (the symptom's component was a root cause).
    """
    det = {d.symptom: (d.component, d.watches) for d in topology.detectors}
    causes: dict[str, set[str]] = {}
    for r in incidents.incidents.itertuples(index=False):
        comps = {c for c, _ in parse_faults(r.faults)} if isinstance(r.faults, str) else set()
        if not comps and isinstance(r.cause_component, str):
            comps = {r.cause_component}
        if comps or r.faults == "none":
            causes[str(r.id)] = comps
    ev = evidence[evidence["symptom"].isin(list(det)) & evidence["window_id"].astype(str).isin(list(causes))]
    comp = [det[s][0] for s in ev["symptom"]]
    return pd.DataFrame(
        {
            "incident_id": ev["window_id"].astype(str).to_numpy(dtype=object),
            "symptom": ev["symptom"].to_numpy(dtype=object),
            "component": np.asarray(comp, dtype=object),
            "watches": np.asarray([det[s][1] for s in ev["symptom"]], dtype=object),
            "p_value": ev["p_value"].to_numpy(dtype=np.float64),
            "faulty": np.asarray([c in causes[str(i)] for c, i in zip(comp, ev["window_id"])], dtype=bool),
        }
    )


def fit_likelihoods(
    topology: Topology,
    incidents: IncidentFrame | str | os.PathLike,
    evidence: pd.DataFrame | str | os.PathLike,
    *,
    history: Sequence[tuple[Topology, IncidentFrame | str | os.PathLike, pd.DataFrame | str | os.PathLike]] = (),
    **settings: Any,
) -> tuple[Topology, LikelihoodFitter]:
    """Fit the likelihood curves of a labelled log and put them in the topology: ``diagnosis fit --evidence``.

    Parameters
    ----------
    topology : Topology
        Its ``likelihoods:`` section is replaced by the fitted curves (one per
        detector kind with labelled p-values; other kinds keep the default ratio).
    incidents : IncidentFrame or path-like
        The incident log ``detect`` wrote (its root causes are the labels).
    evidence : DataFrame or path-like
        The p-values ``detect --save-evidence`` wrote (:func:`read_evidence`).
    history : sequence of (Topology, incidents, evidence), default ()
        Labelled logs of *other* systems (each with its own topology, the
        incident log ``detect`` wrote for it and its evidence table): their
        labelled p-values are pooled with this system's, kind by kind (a
        detector kind means the same signal whatever the system). More
        root-cause windows per kind; the curves are still only those of the
        kinds ``topology`` watches. ``docs/learning.md`` has what pooling
        two Nezha systems does.
    **settings
        :class:`LikelihoodFitter` settings.

    Returns
    -------
    (Topology, LikelihoodFitter)

    Raises
    ------
    DiagnosisError
        No p-value of the evidence (and history) belongs to an incident with a known root cause.
    """
    from dataclasses import replace

    def labelled(topo, log, ev) -> tuple[pd.DataFrame, int, int]:
        if not isinstance(log, IncidentFrame):
            from diagnosis.logs.formats import read_incidents

            log, _ = read_incidents(log)
        table = ev if isinstance(ev, pd.DataFrame) else read_evidence(ev)
        return labelled_p_values(table, log, topo), len(table), len(log)

    parts = [labelled(topology, incidents, evidence)]
    for item in history:
        if not (isinstance(item, (tuple, list)) and len(item) == 3 and isinstance(item[0], Topology)):
            raise DiagnosisError(
                f"each history entry must be (topology, incidents, evidence) of another system. Got {item!r} instead."
            )
        parts.append(labelled(*item))
    data = pd.concat([d for d, _, _ in parts], ignore_index=True)
    if not data["faulty"].any():
        rows, logs = sum(n for _, n, _ in parts), sum(n for _, _, n in parts)
        raise DiagnosisError(
            f"no p-value of the evidence table ({rows} rows) belongs to a root-cause component of an incident "
            f"of the log ({logs} incidents): the likelihoods need labelled incidents (known root causes) "
            "and the evidence table 'diagnosis detect --save-evidence' wrote for the same log"
        )
    fitter = LikelihoodFitter(**settings).fit(data["p_value"], data["faulty"], data["watches"])
    watched = {d.watches for d in topology.detectors}
    return replace(topology, likelihoods=tuple(c for c in fitter.curves_ if c.watches in watched)), fitter


def symptom_rates(topology: Topology, *, engine=None) -> dict[str, tuple[float, float]]:
    """Per symptom, ``(s, f)``: P(fired | its component is faulty) and P(fired | it is not).

    Computed exactly in the topology's network with no other evidence (the
    other components at their priors); "faulty" is the component's fault
    modes weighted by their priors. A component without fault modes gets
    ``s = nan``.

    Parameters
    ----------
    topology : Topology
    engine : inference engine, optional
        An engine on ``build_network(topology)`` (default: ``make_engine``).

    Returns
    -------
    dict of str to (float, float)
    """
    from diagnosis import build_network, make_engine

    network = build_network(topology)
    engine = engine or make_engine(network)
    out: dict[str, tuple[float, float]] = {}
    for c in topology.components:
        if not c.detectors:
            continue
        fv = network.fault_variable[c.name]
        states = tuple(engine.states[fv])
        targets = [network.symptom_variable[d.symptom] for d in c.detectors]
        post = engine.query(targets, evidence={fv: np.arange(len(states))})
        prior = np.array([0.0 if m == "ok" else c.fault_mode(m).prior for m in states])
        ok = states.index("ok")
        for d, v in zip(c.detectors, targets):
            fired = post[v][:, tuple(engine.states[v]).index("fired")]
            s = float(prior @ fired / prior.sum()) if prior.sum() > 0 else math.nan
            out[d.symptom] = (s, float(fired[ok]))
    return out


def virtual_ratio(ratio, fired_if_faulty, fired_if_ok, *, max_ratio: float = 1e6) -> np.ndarray:
    """The symptom's soft-evidence ratio ``L`` that gives its component the likelihood ratio ``ratio``.

    See the module docstring: ``L = (R (1 - f) - (1 - s)) / (s - R f)``,
    with ``R`` clipped to the range the symptom's table can express and
    ``L`` to ``[1 / max_ratio, max_ratio]``. Where ``s <= f`` or either is
    not a number (the symptom does not tell a faulty component from a
    healthy one), ``R`` itself is returned.

    Examples
    --------
    >>> L = virtual_ratio([5.0], 0.8, 0.1)
    >>> round(float(L[0]), 6), round(float((0.8 * L[0] + 0.2) / (0.1 * L[0] + 0.9)), 6)
    (14.333333, 5.0)
    """
    r = np.asarray(ratio, dtype=np.float64)
    s = np.broadcast_to(np.asarray(fired_if_faulty, dtype=np.float64), r.shape)
    f = np.broadcast_to(np.asarray(fired_if_ok, dtype=np.float64), r.shape)
    ok = np.isfinite(s) & np.isfinite(f) & (s > f) & (f >= 0) & (s <= 1)
    out = r.copy()
    if ok.any():
        rs, ss, fs = r[ok], s[ok], f[ok]
        lo, hi = expressible_ratios(ss, fs)
        with np.errstate(divide="ignore", invalid="ignore"):
            rc = np.clip(rs, lo, hi)
            num, den = rc * (1.0 - fs) - (1.0 - ss), ss - rc * fs
            lv = np.where(den > 0, num / den, np.inf)
        out[ok] = np.clip(np.nan_to_num(lv, nan=max_ratio, posinf=max_ratio), 1.0 / max_ratio, max_ratio)
    return out


def expressible_ratios(fired_if_faulty, fired_if_ok) -> tuple[np.ndarray, np.ndarray]:
    """The range of component ratios one symptom's soft evidence can give: ``((1 - s) / (1 - f), s / f)``.

    Virtual evidence ``L`` on a symptom whose table fires with probability
    ``s`` when its component is faulty and ``f`` when it is not gives the
    component the ratio ``(s L + 1 - s) / (f L + 1 - f)`` (module
    docstring), increasing in ``L`` when ``s > f``: ``L -> 0`` (the symptom
    surely passed) gives the lower end, ``L -> inf`` (it surely fired) the
    upper end. A fitted ratio outside the range is clipped to it by
    :func:`virtual_ratio`; ``benchmarks/nezha_calibration.py`` prints how
    often that happens. Where ``s <= f`` or either is not a number: ``(nan, nan)``.

    Parameters
    ----------
    fired_if_faulty, fired_if_ok : array-like of float
        ``s`` and ``f`` per symptom (:func:`symptom_rates`).

    Returns
    -------
    (ndarray, ndarray)
        The smallest and the largest ratio (``inf`` when ``f = 0``).

    Examples
    --------
    >>> lo, hi = expressible_ratios([0.216], [0.02])     # a cpu symptom of the default service tables
    >>> round(float(lo[0]), 3), round(float(hi[0]), 1)
    (0.8, 10.8)
    """
    s = np.atleast_1d(np.asarray(fired_if_faulty, dtype=np.float64))
    f = np.atleast_1d(np.asarray(fired_if_ok, dtype=np.float64))
    s, f = np.broadcast_arrays(s, f)
    ok = np.isfinite(s) & np.isfinite(f) & (s > f) & (f >= 0) & (s <= 1)
    lo, hi = np.full(s.shape, np.nan), np.full(s.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo[ok] = (1.0 - s[ok]) / (1.0 - f[ok])
        hi[ok] = np.where(f[ok] > 0, s[ok] / np.where(f[ok] > 0, f[ok], 1.0), np.inf)
    return lo, hi
