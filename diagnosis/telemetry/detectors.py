"""The detector statistic, its null distribution, and the evidence it gives.

**Statistic: a one-sided robust z-score.** For one series (an entity's
metric), with baseline values ``b`` and incident-window values ``x_t``::

    med   = median(b)
    scale = max(1.4826 * median(|b - med|), rel_floor * |med|, abs_floor)
    z_t   = direction * (x_t - med) / scale
    score = max_t z_t                       (statistic="max", score_windows' default)
    score = k-th largest z_t, k = n//2 + 1  (statistic="majority")

and ``statistic="combined"`` is not a score but a p-value: the two
statistics' p-values, each under its own null, combined (below).

The median and the MAD ignore a spike or two in the baseline (another
incident's tail, a scrape glitch) where a mean and standard deviation
would not; the floor keeps a flat or quantised baseline (MAD 0, common for
latency histograms) from turning a tiny change into an infinite score; the
maximum over the window catches a fault that lasts only part of it. Why
this and not a rank test or a change point: ``docs/telemetry.md`` (the
figures come from ``benchmarks/nezha.py --justify``).

**Sustained shifts** (``statistic="majority"``): the score is the value
that more than half of the window's ``n`` values reach (the
``n // 2 + 1``-th largest): a one-sample spike, however high, does not move
it, a shift that lasts the window moves it as much as the maximum; a
fault shorter than half the window does not move it either (use ``max``
for those; the figures are in ``docs/telemetry.md``). Its
null is the same statistic where nothing is wrong: a null fitted on quiet
windows scores them with it, and the window's own (*self*) null scores
blocks of the baseline as long as the window with it (each block both
against the values before it and against the rest of the baseline: real
series are autocorrelated, so the window's values are not independent and
a binomial tail of single values would be far too small -- 5 to 21 % of
quiet (window, symptom) pairs at p < 0.01 on the Nezha data). Only the
Cauchy fallback, which has no data, assumes independent values: ``k`` of
``n`` reach a score with probability ``P(Binomial(n, q) >= k)``
(:func:`window_p`; ``k = 1`` is the maximum's ``1 - (1 - q)**n``).

**Both** (``statistic="combined"``): per window and series set (a rule of a
symptom), the ``max`` score's p-value under the ``max`` null and the
``majority`` score's p-value under the ``majority`` null, each null built
exactly as for that statistic alone, combined by Bonferroni over the two
tests (:func:`combined_p`)::

    p = min(1, 2 * min(p_max, p_majority))

valid whatever the dependence of the two tests: a short fault is seen by
the first, a sustained shift by the second, at the price of a factor 2 on
the smaller p-value. Its null is the pair (:class:`CombinedNull`).

With ``exclude``, the baseline does not use the incident periods of the
given windows (another incident's effects are not "normal"; in the Nezha
data injections come every eight minutes or so, so a ten-minute baseline
often holds the previous fault; the median copes with part of it). When a
series has fewer than ``min_baseline`` baseline values (the data starts just
before the incident; spans exported only around incidents), its baseline is
*pooled*: the values of the series within ``pool`` before the window
(outside the excluded periods), or, when these are still too few, within
``pool`` on either side.

**Null distribution.** A score means nothing until we know how large it
gets when nothing is wrong. :class:`NullModel` holds, per rule, the scores
of *quiet windows* (windows of the same length placed where no incident
was, :func:`~diagnosis.telemetry.windows.quiet_windows`): no labels are
used, only the incident times. A score's p-value is its empirical tail
probability among them, with a Pareto tail of index 1 beyond the tenth
largest (so that scores past every quiet one still rank by size). A rule
without enough quiet scores (spans recorded only during incidents) falls
back to a Cauchy tail per tested value, corrected for the number of values
tested (Šidák).

**Evidence.** :class:`EvidenceModel` turns a p-value into likelihoods of
the symptom's two states with the beta-uniform model of p-values (Pounds &
Morris 2003): under ``passed`` p is uniform, under ``fired`` it has density
``a * p**(a - 1)``, so the likelihood ratio is ``LR(p) = a * p**(a - 1)``
(``a`` = ``shape``): p = 1 gives ``a`` (evidence that the symptom passed),
a small p gives a large ratio. Written as a soft observation,
``p_fired = LR / (1 + LR)`` and ``p_passed = 1 / (1 + LR)``. Hard evidence
is ``fired`` when ``p <= alpha``, else ``passed``; its reliability is then
``false_alarm = alpha`` and ``sensitivity = alpha ** a`` under the same
model. ``shape`` and ``alpha`` are the detector's reliability: fit them
from history (the learning issue) or leave the defaults.

**Fitted likelihoods.** With ``curves`` (the topology's ``likelihoods:``
section, fitted from labelled history by ``diagnosis fit --evidence``:
:class:`~diagnosis.learning.likelihood.LikelihoodFitter`), a symptom whose
detector kind has a curve gets that curve's ratio instead of the
beta-uniform one; the other symptoms keep ``a * p**(a - 1)``. A curve's
ratio compares a faulty component with a healthy one; given each symptom's
``(s, f)`` = P(fired | component faulty), P(fired | not)
(:func:`~diagnosis.learning.likelihood.symptom_rates`), it is turned into the
symptom's virtual evidence that gives the component exactly that ratio
(:func:`~diagnosis.learning.likelihood.virtual_ratio`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pandas as pd

from diagnosis.exceptions import DiagnosisError, suggest
from diagnosis.model.topology import LikelihoodCurve

__all__ = [
    "EVIDENCE_MODES",
    "SCORE_COLUMNS",
    "SCORE_STATISTICS",
    "WINDOW_STATISTICS",
    "CombinedNull",
    "EvidenceModel",
    "NullModel",
    "combined_p",
    "rank_nsigma",
    "read_null",
    "robust_z",
    "score_windows",
    "window_order",
    "window_p",
]

#: How detector scores become observations: likelihoods or fired/passed.
EVIDENCE_MODES = ("soft", "hard")
#: Columns of :func:`score_windows`.
SCORE_COLUMNS = (
    "window_id", "entity", "component", "metric", "n_baseline", "n_window", "pooled", "referenced",
    "median", "scale", "z_up", "z_down", "time_up", "time_down",
)  # fmt: skip
#: Window statistics of :func:`~diagnosis.telemetry.detect.detect`: the largest value, the one a majority
#: reach, or both (the Bonferroni combination of their p-values, :func:`combined_p`).
WINDOW_STATISTICS = ("max", "majority", "combined")
#: The statistics that are a score (:func:`score_windows`, :class:`NullModel`); ``combined`` combines their p-values.
SCORE_STATISTICS = ("max", "majority")
_MAD = 1.4826
_LOO_MAX = 64


def _check_statistic(statistic: str) -> str:
    if statistic not in WINDOW_STATISTICS:
        raise DiagnosisError(
            f"statistic must be one of {list(WINDOW_STATISTICS)}. Got {statistic!r} instead{suggest(str(statistic), WINDOW_STATISTICS)}"
        )
    return statistic


def _check_score_statistic(statistic: str) -> str:
    """A statistic that scores a window by one value: ``max`` or ``majority`` (``combined`` is two p-values)."""
    if _check_statistic(statistic) not in SCORE_STATISTICS:
        raise DiagnosisError(
            f"statistic={statistic!r} is not a score but the combination of the p-values of {list(SCORE_STATISTICS)}: "
            "score with each of them (detect does)"
        )
    return statistic


def combined_p(p_max, p_majority) -> np.ndarray:
    """P-value of ``statistic="combined"``: Bonferroni over the ``max`` and the ``majority`` tests.

    Parameters
    ----------
    p_max, p_majority : array-like of float
        The two statistics' p-values of the same (window, rule), each under
        its own null; NaN where a test has none (the other one counts alone,
        still doubled).

    Returns
    -------
    ndarray
        ``min(1, 2 * min(p_max, p_majority))``: valid whatever the two tests' dependence.

    Examples
    --------
    >>> combined_p([0.001, 0.3, 0.8], [0.2, 0.01, 0.9]).tolist()
    [0.002, 0.02, 1.0]
    """
    p = np.fmin(np.asarray(p_max, dtype=np.float64), np.asarray(p_majority, dtype=np.float64))
    return np.clip(2.0 * p, 0.0, 1.0)


def window_order(n, statistic: str = "max") -> np.ndarray:
    """Which order statistic of ``n`` window values is the score: 1 (the largest) or ``n // 2 + 1``.

    Examples
    --------
    >>> window_order([1, 2, 5, 6], "majority").tolist()
    [1, 2, 3, 4]
    >>> window_order([1, 6]).tolist()
    [1, 1]
    """
    n = np.maximum(np.asarray(n, dtype=np.int64), 1)
    return np.ones_like(n) if _check_score_statistic(statistic) == "max" else n // 2 + 1


def window_p(q, n, *, statistic: str = "max", n_series=1) -> np.ndarray:
    """P-value of a window score whose single-value tail probability is ``q``.

    Parameters
    ----------
    q : array-like of float
        P(one null value >= the score).
    n : array-like of int
        Window values per series.
    statistic : {"max", "majority"}
        The window statistic (:func:`window_order` gives ``k``).
    n_series : array-like of int, default 1
        Series whose largest window score is the symptom's: Šidák over them.

    Returns
    -------
    ndarray
        ``1 - (1 - P(Binomial(n, q) >= k))**n_series`` (independent values).

    Examples
    --------
    >>> window_p([0.01], [6]).round(4).tolist()                          # the largest of 6
    [0.0585]
    >>> window_p([0.01], [6], statistic="majority").round(8).tolist()    # 4 of 6 reach it
    [1.5e-07]
    """
    from scipy.stats import binom

    q = np.clip(np.asarray(q, dtype=np.float64), 0.0, 1.0)
    n = np.maximum(np.rint(np.asarray(n, dtype=np.float64)), 1.0)
    k = window_order(n, statistic)
    if statistic == "max":
        p1 = -np.expm1(n * np.log1p(-np.clip(q, 0.0, 1.0 - 1e-16)))
    else:
        p1 = binom.sf(k - 1, n, q)
    s = np.maximum(np.asarray(n_series, dtype=np.float64), 1.0)
    return np.clip(-np.expm1(s * np.log1p(-np.clip(p1, 0.0, 1.0 - 1e-16))), 0.0, 1.0)


def robust_z(baseline, window, *, rel_floor: float = 0.1, abs_floor: float = 1e-9) -> np.ndarray:
    """Robust z-scores of ``window`` values against a ``baseline`` (see the module docstring).

    Parameters
    ----------
    baseline, window : array-like of float
        NaN values are ignored in the baseline and give NaN scores.
    rel_floor, abs_floor : float
        Lower bounds of the scale: a fraction of ``|median|``, and an absolute value.

    Returns
    -------
    ndarray
        ``(window - median) / scale``, signed (use ``-z`` when a drop is harmful).

    Examples
    --------
    >>> robust_z([10, 11, 9, 10, 10, 30], [10, 14, 25]).round(2).tolist()
    [0.0, 4.0, 15.0]
    >>> robust_z([2, 2, 2, 2], [2.1, 3.0]).round(2).tolist()   # flat baseline: the scale is 10% of 2
    [0.5, 5.0]
    """
    b = np.asarray(baseline, dtype=np.float64)
    b = b[~np.isnan(b)]
    x = np.asarray(window, dtype=np.float64)
    if len(b) == 0:
        return np.full(x.shape, np.nan)
    med = float(np.median(b))
    scale = max(_MAD * float(np.median(np.abs(b - med))), rel_floor * abs(med), abs_floor)
    return (x - med) / scale


def _group_median(keys: np.ndarray, values: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-key median and count of values (NaN values ignored); keys in [0, n_keys)."""
    ok = ~np.isnan(values)
    keys, values = keys[ok], values[ok]
    med = np.full(n_keys, np.nan)
    cnt = np.bincount(keys, minlength=n_keys)
    if len(keys) == 0:
        return med, cnt
    order = np.lexsort((values, keys))
    k, v = keys[order], values[order]
    starts = np.searchsorted(k, np.arange(n_keys), side="left")
    ends = np.searchsorted(k, np.arange(n_keys), side="right")
    has = ends > starts
    lo = (starts + (ends - starts - 1) // 2)[has]
    hi = (starts + (ends - starts) // 2)[has]
    med[has] = 0.5 * (v[lo] + v[hi])
    return med, cnt


def _stats(keys: np.ndarray, values: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    med, cnt = _group_median(keys, values, n_keys)
    dev = np.abs(values - med[keys])
    mad, _ = _group_median(keys, dev, n_keys)
    return med, _MAD * mad, cnt


def _loo_z(keys: np.ndarray, values: np.ndarray, key_floor: np.ndarray, abs_floor: float):
    """Leave-one-out robust z-scores: each value against the other values of its series.

    This is how a new value is scored (out of sample), so its distribution is
    the null of a window value; in-sample z-scores would understate it.
    """
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    uk, start, size = np.unique(keys, return_index=True, return_counts=True)
    out_k, out_z = [], []
    for n in np.unique(size):
        if n < 3:
            continue
        sel = size == n
        if n > _LOO_MAX:  # long series (a reference): leaving one out moves the median and MAD by O(1/n)
            for s0 in start[sel]:
                v = values[s0 : s0 + n]
                med = float(np.median(v))
                fl = key_floor[keys[s0]]
                sc = max(_MAD * float(np.median(np.abs(v - med))), fl * abs(med), abs_floor)
                out_k.append(np.full(n, keys[s0]))
                out_z.append((v - med) / sc)
            continue
        rows = start[sel][:, None] + np.arange(n)[None, :]
        v = values[rows]  # (g, n)
        mask = ~np.eye(n, dtype=bool)
        others = np.stack([v[:, mask[i]] for i in range(n)], axis=1)  # (g, n, n - 1)
        med = np.median(others, axis=2)
        mad = _MAD * np.median(np.abs(others - med[..., None]), axis=2)
        fl = key_floor[uk[sel]][:, None]
        sc = np.maximum(np.maximum(mad, fl * np.abs(med)), abs_floor)
        out_k.append(np.repeat(uk[sel], n))
        out_z.append(((v - med) / sc).ravel())
    if not out_k:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(out_k), np.concatenate(out_z)


def _forward_z(keys: np.ndarray, values: np.ndarray, key_floor: np.ndarray, abs_floor: float, min_past: int):
    """Forward robust z-scores: each value against the values of its series before it (at least ``min_past``).

    This is how a window value is scored (against the past), so a series
    that drifts (memory that grows, latency that creeps) gets the large
    scores it will also get in a quiet window; leave-one-out scores, which
    also see the future, miss that.
    """
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    uk, start, size = np.unique(keys, return_index=True, return_counts=True)
    out_k, out_z = [], []
    for n in np.unique(size):
        if n <= min_past:
            continue
        sel = size == n
        rows = start[sel][:, None] + np.arange(n)[None, :]
        v = values[rows]  # (g, n), each row in time order
        fl = key_floor[uk[sel]]
        for j in range(min_past, n):
            past = v[:, :j]
            med = np.median(past, axis=1)
            mad = _MAD * np.median(np.abs(past - med[:, None]), axis=1)
            sc = np.maximum(np.maximum(mad, fl * np.abs(med)), abs_floor)
            out_k.append(uk[sel])
            out_z.append((v[:, j] - med) / sc)
    if not out_k:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(out_k), np.concatenate(out_z)


def _block_scores(
    keys: np.ndarray,
    values: np.ndarray,
    length: np.ndarray,
    key_floor: np.ndarray,
    abs_floor: float,
    min_past: int,
    statistic: str,
    *,
    forward: bool,
):
    """Window statistics of baseline blocks: the null of a statistic of several values.

    Per series (values in time order), every run of ``L`` consecutive values,
    ``L`` = the series' window length ``length[key]`` (shorter when its
    baseline is too short, at least 1), is scored as a window is: forward
    (``forward=True``), against the values before it (at least
    ``min_past``); else against the series' other values (a reference, at
    least ``min_past`` of them). Returns the keys, the rise and the drop of
    each block (as :func:`score_windows` gives ``z_up`` / ``z_down``).
    """
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    uk, start, size = np.unique(keys, return_index=True, return_counts=True)
    L = np.minimum(length[uk], size - min_past)
    out_k, out_u, out_d = [], [], []
    for n, ln in {(int(a), int(b)) for a, b in zip(size, L) if b >= 1}:
        sel = (size == n) & (L == ln)
        rows = start[sel][:, None] + np.arange(n)[None, :]
        v = values[rows]  # (g, n)
        fl = key_floor[uk[sel]][:, None]
        kth = int(window_order([ln], statistic)[0])
        for j in range(min_past, n - ln + 1) if forward else range(0, n - ln + 1):
            ref = v[:, :j] if forward else np.concatenate([v[:, :j], v[:, j + ln :]], axis=1)
            med = np.median(ref, axis=1, keepdims=True)
            mad = _MAD * np.median(np.abs(ref - med), axis=1, keepdims=True)
            sc = np.maximum(np.maximum(mad, fl * np.abs(med)), abs_floor)
            zb = np.sort((v[:, j : j + ln] - med) / sc, axis=1)
            up, down = zb[:, ln - kth], -zb[:, kth - 1]
            out_k.append(uk[sel])
            out_u.append(up)
            out_d.append(down)
    if not out_k:
        return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
    return np.concatenate(out_k), np.concatenate(out_u), np.concatenate(out_d)


def score_windows(
    samples: pd.DataFrame,
    windows: pd.DataFrame,
    *,
    lead: str | pd.Timedelta = "0s",
    min_baseline: int = 4,
    pool: str | pd.Timedelta = "60min",
    rel_floor: float | np.ndarray = 0.1,
    abs_floor: float = 1e-9,
    exclude: pd.DataFrame | None = None,
    null_values: list | None = None,
    reference: pd.DataFrame | None = None,
    statistic: str = "max",
) -> pd.DataFrame:
    """Robust z-scores of every series in every window.

    Parameters
    ----------
    samples : DataFrame
        Long samples: ``time``, ``entity``, ``component``, ``metric``, ``value``.
    windows : DataFrame
        ``id``, ``start``, ``end``, ``baseline_start``, ``baseline_end``.
    lead : duration, default ``"0s"``
        The window is ``[start - lead, end]`` and the baseline stops at
        ``start - lead``: slack for labels that trail the fault's first samples.
    min_baseline : int, default 4
        Baseline values a series needs; with fewer, its baseline is pooled.
    pool : duration, default ``"60min"``
        Reach of a pooled baseline on either side of the window.
    rel_floor : float or array, default 0.1
        Relative scale floor; an array gives one per sample row.
    abs_floor : float, default 1e-9
    exclude : DataFrame, optional
        Windows (``start``, ``end``) whose incident periods ``[start - lead,
        end]`` no baseline may use: another incident's effects are not
        "normal". Pass the incident windows themselves.
    null_values : list, optional
        When given, one DataFrame per window is appended to it: ``window_id``,
        ``entity``, ``metric``, ``z`` -- the *forward* robust z-score of every
        baseline value of every scored series that has at least
        ``min_baseline`` values before it, against those values (a window
        value is scored against its past, so a drifting series gets the
        scores it also gets when nothing is wrong); a series scored against
        the ``reference`` gets the leave-one-out z-scores of its reference
        values instead. This is the series' own variability when nothing is
        wrong: the *self* null of :func:`~diagnosis.telemetry.detect.detect`.
        With another ``statistic``, ``z`` (and ``z_down``, the drop) are
        instead the statistic of *blocks* of the baseline as long as the
        series' window (shorter when the baseline is too short), each block
        scored as a window is, both forward (against the values before it)
        and against the rest of the baseline (a reference: against the rest
        of the reference); see :func:`_block_scores`.
    reference : DataFrame, optional
        Long samples (``entity``, ``metric``, ``value``; any times) of fault-free
        telemetry of the same system: a series with at least ``min_baseline``
        reference values uses them as its baseline in every window (and its
        self null comes from them); the others keep the window's baseline.
    statistic : {"max", "majority"}, default "max"
        The window's score per series and direction: its largest z-score, or
        the one more than half of its values reach (:func:`window_order`).
        ``combined`` is not a score: :func:`~diagnosis.telemetry.detect.detect`
        scores with each of the two and combines their p-values (:func:`combined_p`).

    Returns
    -------
    DataFrame
        :data:`SCORE_COLUMNS`, one row per window and series with at least one
        value in the window and a baseline: ``z_up`` the largest rise and
        ``z_down`` the largest drop (both as positive scores of that
        direction; with ``"majority"``, the rise and the drop a majority of
        the window's values reach), ``time_up`` / ``time_down`` when they happened, ``pooled``
        whether the baseline was pooled (``n_baseline`` is then the pooled
        count), ``referenced`` whether it was the reference's values.
    """
    from diagnosis.telemetry._io import to_timedelta

    lead_td = to_timedelta(lead, "lead")
    pool_td = to_timedelta(pool, "pool")
    if min_baseline < 1:
        raise DiagnosisError(f"min_baseline must be >= 1. Got {min_baseline!r} instead.")
    _check_score_statistic(statistic)
    floors = np.broadcast_to(np.asarray(rel_floor, dtype=np.float64), (len(samples),))
    s = samples.assign(_floor=floors).sort_values("time", kind="stable")
    t = pd.DatetimeIndex(s["time"].astype("datetime64[ns, UTC]")).asi8
    series = pd.MultiIndex.from_arrays([s["entity"].to_numpy(dtype=object), s["metric"].to_numpy(dtype=object)])
    codes, uniq = pd.factorize(series)
    n_keys = len(uniq)
    values = s["value"].to_numpy(dtype=np.float64)
    key_floor = np.zeros(n_keys)
    key_floor[codes] = s["_floor"].to_numpy(dtype=np.float64)
    comp_of_key = np.empty(n_keys, dtype=object)
    comp_of_key[codes] = s["component"].to_numpy(dtype=object)
    out = []
    # the reference: per series, its fault-free values (a baseline that holds in every window)
    has_ref = np.zeros(n_keys, dtype=bool)
    if reference is not None and len(reference):
        rk = uniq.get_indexer(
            pd.MultiIndex.from_arrays(
                [reference["entity"].to_numpy(dtype=object), reference["metric"].to_numpy(dtype=object)]
            )
        )
        rv = reference["value"].to_numpy(dtype=np.float64)
        keep = (rk >= 0) & ~np.isnan(rv)
        ref_k, ref_v = rk[keep], rv[keep]
        ref_med, ref_scale, ref_cnt = _stats(ref_k, ref_v, n_keys)
        has_ref = ref_cnt >= min_baseline
        ref_rows = has_ref[ref_k]
        ref_k, ref_v = ref_k[ref_rows], ref_v[ref_rows]

    def ns(x) -> int:
        return pd.Timestamp(x).value

    usable = np.ones(len(t), dtype=bool)
    if exclude is not None and len(exclude):
        for e in exclude.itertuples(index=False):
            a = np.searchsorted(t, ns(e.start) - lead_td.value, side="left")
            b = np.searchsorted(t, ns(e.end), side="right")
            usable[a:b] = False

    for w in windows.itertuples(index=False):
        w_lo = ns(w.start) - lead_td.value
        w_hi = ns(w.end)
        b_lo = ns(w.baseline_start)
        b_hi = min(ns(w.baseline_end), w_lo)
        i0 = np.searchsorted(t, w_lo, side="left")
        i1 = np.searchsorted(t, w_hi, side="right")
        if i1 <= i0:
            continue
        j0, j1 = np.searchsorted(t, [b_lo, b_hi], side="left")
        bsel = np.arange(j0, j1)[usable[j0:j1]]
        bsel = bsel[~has_ref[codes[bsel]]]
        med, scale, cnt = _stats(codes[bsel], values[bsel], n_keys)
        if has_ref.any():
            med[has_ref], scale[has_ref], cnt[has_ref] = ref_med[has_ref], ref_scale[has_ref], ref_cnt[has_ref]
        pooled = np.zeros(n_keys, dtype=bool)
        wk = np.unique(codes[i0:i1])
        short = wk[cnt[wk] < min_baseline]
        base_idx = bsel
        if len(short):
            # the nearest clean values before the window first; then both sides
            p0, p1 = np.searchsorted(t, [w_lo - pool_td.value, w_hi + pool_td.value], side="left")
            extra = []
            for idx in (np.arange(p0, i0), np.r_[p0:i0, i1:p1]):
                idx = idx[usable[idx]]
                sel = np.isin(codes[idx], short)
                pm, ps, pc = _stats(codes[idx][sel], values[idx][sel], n_keys)
                use = short[pc[short] >= min_baseline]
                med[use], scale[use], cnt[use] = pm[use], ps[use], pc[use]
                pooled[use] = True
                chosen = idx[sel]
                extra.append(chosen[np.isin(codes[chosen], use)])
                short = short[pc[short] < min_baseline]
                if not len(short):
                    break
            if null_values is not None:
                base_idx = np.concatenate([bsel[~pooled[codes[bsel]]], *extra])
        k = codes[i0:i1]
        x = values[i0:i1]
        tt = t[i0:i1]
        ok = ~np.isnan(x) & (cnt[k] >= min_baseline) & ~np.isnan(med[k])
        k, x, tt = k[ok], x[ok], tt[ok]
        if len(k) == 0:
            continue
        sc = np.maximum.reduce([scale[k], key_floor[k] * np.abs(med[k]), np.full(len(k), abs_floor)])
        z = (x - med[k]) / sc
        # per series, its values sorted by z (ties: the earliest first): the k-th largest and the k-th smallest
        o_up, o_down = np.lexsort((-tt, z, k)), np.lexsort((tt, z, k))
        keys, first, n_win = np.unique(k[o_up], return_index=True, return_counts=True)
        kth = window_order(n_win, statistic)
        i_up, i_down = o_up[first + n_win - kth], o_down[first + kth - 1]
        z_up, z_down = z[i_up], -z[i_down]
        if null_values is not None:
            scored = np.zeros(n_keys, dtype=bool)
            scored[k] = True
            bk = codes[base_idx]
            bv = values[base_idx]
            if has_ref.any():
                bk, bv = np.concatenate([bk, ref_k]), np.concatenate([bv, ref_v])
            keep = scored[bk] & ~np.isnan(bv)
            bk, bv = bk[keep], bv[keep]
            # the window's own baseline in time order: each value against the ones before it;
            # a reference has no order in time: each value against the others
            is_ref = has_ref[bk]
            if statistic == "max":
                fk, fz = _forward_z(bk[~is_ref], bv[~is_ref], key_floor, abs_floor, min_baseline)
                rk2, rz = _loo_z(bk[is_ref], bv[is_ref], key_floor, abs_floor)
                bk, bz = np.concatenate([fk, rk2]), np.concatenate([fz, rz])
                bd = -bz
            else:  # blocks as long as the window, scored with the same statistic
                length = np.zeros(n_keys, dtype=np.int64)
                length[keys] = n_win
                blocks = [
                    _block_scores(
                        bk[~is_ref], bv[~is_ref], length, key_floor, abs_floor, min_baseline, statistic, forward=fw
                    )
                    for fw in (True, False)
                ]
                fk, fu, fd = (np.concatenate(a) for a in zip(*blocks))
                rk2, ru, rd = _block_scores(
                    bk[is_ref], bv[is_ref], length, key_floor, abs_floor, min_baseline, statistic, forward=False
                )
                bk, bz, bd = np.concatenate([fk, rk2]), np.concatenate([fu, ru]), np.concatenate([fd, rd])
            null_values.append(
                pd.DataFrame(
                    {
                        "window_id": w.id,
                        "entity": uniq[bk].get_level_values(0).to_numpy(dtype=object),
                        "metric": uniq[bk].get_level_values(1).to_numpy(dtype=object),
                        "z": bz,
                        "z_down": bd,
                    }
                )
            )
        out.append(
            pd.DataFrame(
                {
                    "window_id": w.id,
                    "entity": uniq[keys].get_level_values(0).to_numpy(dtype=object),
                    "component": comp_of_key[keys],
                    "metric": uniq[keys].get_level_values(1).to_numpy(dtype=object),
                    "n_baseline": cnt[keys],
                    "n_window": n_win,
                    "pooled": pooled[keys],
                    "referenced": has_ref[keys],
                    "median": med[keys],
                    "scale": np.maximum(scale[keys], np.maximum(key_floor[keys] * np.abs(med[keys]), abs_floor)),
                    "z_up": z_up,
                    "z_down": z_down,
                    "time_up": pd.to_datetime(tt[i_up], utc=True),
                    "time_down": pd.to_datetime(tt[i_down], utc=True),
                }
            )
        )
    if not out:
        return pd.DataFrame(
            {c: pd.Series(dtype="datetime64[ns, UTC]" if c.startswith("time") else object) for c in SCORE_COLUMNS}
        )
    res = pd.concat(out, ignore_index=True)
    for c in ("window_id", "entity", "component", "metric"):
        res[c] = pd.Series(res[c].to_numpy(dtype=object), dtype=object)
    for c in ("time_up", "time_down"):
        res[c] = res[c].astype("datetime64[ns, UTC]")
    return res[list(SCORE_COLUMNS)]


@dataclass(frozen=True)
class NullModel:
    """Per rule, detector scores of quiet windows; gives p-values.

    Parameters
    ----------
    quiet : Mapping[str, ndarray]
        Rule name -> scores seen in quiet windows.
    min_quiet : int, default 30
        Fewer quiet scores than this and the rule uses the Cauchy fallback.
    tail_k : int, default 10
        The Pareto tail starts at the ``tail_k``-th largest quiet score.
    tail_index : float or None, default 1.0
        Index of the Pareto tail; None estimates it from the ``tail_k``
        largest scores (Hill's estimator), clipped to ``max_index``.
    max_index : float, default 3.0
        Upper bound of an estimated tail index (a light tail fitted on a few
        values would make large scores implausibly rare).
    statistic : {"max", "majority"}, default "max"
        The window statistic the quiet scores were computed with
        (:func:`score_windows`); :func:`~diagnosis.telemetry.detect.detect`
        refuses a model of another statistic. ``combined`` holds one model
        of each (:class:`CombinedNull`).

    Examples
    --------
    >>> null = NullModel({"cpu": np.arange(100.0) / 10})
    >>> null.p_value("cpu", np.array([0.0, 5.0, 100.0])).round(4).tolist()
    [1.0, 0.505, 0.0089]
    >>> null.p_value("latency", np.array([0.0, 10.0]), n_tests=np.array([5, 5])).round(4).tolist()   # no quiet data
    [0.9688, 0.1489]
    """

    quiet: Mapping[str, np.ndarray] = field(default_factory=dict)
    min_quiet: int = 30
    tail_k: int = 10
    tail_index: float | None = 1.0
    max_index: float = 3.0
    statistic: str = "max"

    def __post_init__(self):
        _check_score_statistic(self.statistic)
        clean = {}
        for k, v in self.quiet.items():
            a = np.sort(np.asarray(v, dtype=np.float64))
            clean[k] = a[~np.isnan(a)]
        object.__setattr__(self, "quiet", MappingProxyType(clean))

    def to_dict(self) -> dict:
        """A JSON-ready mapping (``{"quiet": {rule: [scores]}, "min_quiet": ..., "tail_k": ...}``)."""
        return {
            "quiet": {k: [float(x) for x in v] for k, v in self.quiet.items()},
            "min_quiet": self.min_quiet,
            "tail_k": self.tail_k,
            "statistic": self.statistic,
        }

    @classmethod
    def from_dict(cls, d, *, source: str = "(null model)") -> NullModel:
        """The inverse of :meth:`to_dict`; raises :class:`~diagnosis.exceptions.TelemetryError` on a bad mapping."""
        from diagnosis.exceptions import TelemetryError

        if not isinstance(d, Mapping) or not isinstance(d.get("quiet"), Mapping):
            raise TelemetryError(f"{source}: a null model is an object with a 'quiet' object of rule -> scores")
        quiet = {}
        for k, v in d["quiet"].items():
            try:
                quiet[str(k)] = np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError):
                raise TelemetryError(f"{source}: quiet.{k} must be a list of numbers. Got {str(v)[:60]!r}") from None
        stat = d.get("statistic", "max")
        if stat == "combined":  # a file of the old combined score, max(majority, max / 2)
            raise TelemetryError(
                f"{source}: a null of the old statistic='combined' (the score max(majority, max / 2), since removed); "
                "combined now combines the p-values of max and majority, each with its own null: refit it "
                "(fit_null, diagnosis detect --save-null)"
            )
        if stat not in SCORE_STATISTICS:
            raise TelemetryError(f"{source}: statistic must be one of {list(SCORE_STATISTICS)}. Got {stat!r}")
        return cls(quiet, min_quiet=int(d.get("min_quiet", 30)), tail_k=int(d.get("tail_k", 10)), statistic=stat)

    def save(self, path) -> None:
        """Write the model as JSON (atomically)."""
        import json

        from diagnosis._files import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path) -> NullModel:
        """Read a model written by :meth:`save` (:func:`read_null` reads either kind of null file)."""
        return cls.from_dict(_read_json(path), source=str(path))

    def kind(self, rule: str) -> str:
        """``empirical`` or ``cauchy`` (the fallback)."""
        q = self.quiet.get(rule)
        return "empirical" if q is not None and len(q) >= self.min_quiet else "cauchy"

    def p_value(
        self, rule: str, z: np.ndarray, *, n_tests: np.ndarray | int = 1, n_series: np.ndarray | int = 1
    ) -> np.ndarray:
        """P(a quiet score >= z) for each score of one rule.

        ``n_tests`` (window values) and ``n_series`` (series) are used by the
        Cauchy fallback only, through :func:`window_p` with the model's statistic.
        """
        z = np.asarray(z, dtype=np.float64)
        q = self.quiet.get(rule)
        if q is not None and len(q) >= self.min_quiet:
            n = len(q)
            ge = n - np.searchsorted(q, z, side="left")
            p = (1.0 + ge) / (n + 1.0)
            k = min(self.tail_k, n)
            zk = q[n - k]
            if zk > 0:
                a = self.tail_index
                if a is None:
                    top = q[n - k + 1 :]
                    h = float(np.mean(np.log(top / zk))) if len(top) else 0.0
                    a = self.max_index if h <= 1.0 / self.max_index else max(1.0, 1.0 / h)
                tail = (k / (n + 1.0)) * (zk / np.maximum(z, zk)) ** a
                p = np.where(z > zk, np.minimum(p, tail), p)
            return np.clip(p, 0.0, 1.0)
        # Cauchy tail per tested value, Šidák-corrected for the number tested.
        q1 = 0.5 - np.arctan(z) / np.pi
        m = np.maximum(np.asarray(n_tests, dtype=np.float64), 1.0)
        if self.statistic == "max":
            return window_p(q1, m)
        ns = np.maximum(np.asarray(n_series, dtype=np.float64), 1.0)
        return window_p(q1, m / ns, statistic="majority", n_series=ns)


def _read_json(path):
    import json

    from diagnosis.exceptions import TelemetryError

    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise TelemetryError(f"{path}: cannot read the null model: {exc}") from None


@dataclass(frozen=True)
class CombinedNull:
    """The null of ``statistic="combined"``: one :class:`NullModel` per statistic it combines.

    Parameters
    ----------
    max : NullModel
        Quiet scores of the ``max`` statistic.
    majority : NullModel
        Quiet scores of the ``majority`` statistic.

    Examples
    --------
    >>> null = CombinedNull(NullModel({"cpu": np.arange(50.0)}), NullModel({"cpu": np.arange(40.0)}, statistic="majority"))
    >>> null.statistic, null.part("majority").statistic, null.kind("cpu")
    ('combined', 'majority', 'empirical')
    """

    max: NullModel
    majority: NullModel

    def __post_init__(self):
        for stat in SCORE_STATISTICS:
            m = getattr(self, stat)
            if not isinstance(m, NullModel) or m.statistic != stat:
                got = m.statistic if isinstance(m, NullModel) else type(m).__name__
                raise DiagnosisError(
                    f"CombinedNull.{stat} must be a NullModel of statistic={stat!r}. Got {got!r} instead."
                )

    @property
    def statistic(self) -> str:
        """``combined``."""
        return "combined"

    def part(self, statistic: str) -> NullModel:
        """The null of one of the combined statistics (``max`` or ``majority``)."""
        return getattr(self, _check_score_statistic(statistic))

    def kind(self, rule: str) -> str:
        """``empirical`` or ``cauchy`` when both parts agree, else ``max <kind>, majority <kind>``."""
        kinds = {s: self.part(s).kind(rule) for s in SCORE_STATISTICS}
        return kinds["max"] if len(set(kinds.values())) == 1 else ", ".join(f"{s} {k}" for s, k in kinds.items())

    def to_dict(self) -> dict:
        """A JSON-ready mapping: ``{"statistic": "combined", "nulls": {"max": ..., "majority": ...}}``."""
        return {"statistic": "combined", "nulls": {s: self.part(s).to_dict() for s in SCORE_STATISTICS}}

    @classmethod
    def from_dict(cls, d, *, source: str = "(null model)") -> CombinedNull:
        """The inverse of :meth:`to_dict`; raises :class:`~diagnosis.exceptions.TelemetryError` on a bad mapping."""
        from diagnosis.exceptions import TelemetryError

        nulls = d.get("nulls") if isinstance(d, Mapping) else None
        if not isinstance(d, Mapping) or d.get("statistic") != "combined" or not isinstance(nulls, Mapping):
            if isinstance(d, Mapping) and "quiet" in d:
                NullModel.from_dict(d, source=source)  # the old combined score is refused there, with its reason
                raise TelemetryError(f"{source}: a null of statistic={d.get('statistic', 'max')!r}, not 'combined'")
            raise TelemetryError(f"{source}: a combined null is an object with a 'nulls' object of max and majority")
        missing = [s for s in SCORE_STATISTICS if s not in nulls]
        if missing:
            raise TelemetryError(f"{source}: the combined null lacks the null of {missing}")
        parts = {s: NullModel.from_dict(nulls[s], source=f"{source} (nulls.{s})") for s in SCORE_STATISTICS}
        for s, m in parts.items():
            if m.statistic != s:
                raise TelemetryError(f"{source}: nulls.{s} holds a null of statistic={m.statistic!r}")
        return cls(**parts)

    def save(self, path) -> None:
        """Write the pair as JSON (atomically)."""
        import json

        from diagnosis._files import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path) -> CombinedNull:
        """Read a pair written by :meth:`save`."""
        return cls.from_dict(_read_json(path), source=str(path))


def read_null(path) -> NullModel | CombinedNull:
    """Read a null file of any statistic (:meth:`NullModel.save`, :meth:`CombinedNull.save`).

    Raises
    ------
    TelemetryError
        When the file cannot be read or is not a null model, or holds a null
        of the old ``combined`` score (refit it).
    """
    d = _read_json(path)
    if isinstance(d, Mapping) and d.get("statistic") == "combined" and "quiet" not in d:
        return CombinedNull.from_dict(d, source=str(path))
    return NullModel.from_dict(d, source=str(path))


@dataclass(frozen=True, slots=True)
class EvidenceModel:
    """How a p-value becomes an observation (see the module docstring).

    Parameters
    ----------
    mode : {"soft", "hard"}, default "soft"
    shape : float, default 0.25
        ``a`` of the beta-uniform model, in (0, 1): smaller is more trusting.
    alpha : float, default 0.01
        Hard evidence fires when ``p <= alpha``.
    curves : tuple of LikelihoodCurve, default ()
        Fitted ratios per detector kind (``Topology.likelihoods``); they
        replace the beta-uniform ratio for the symptoms whose kind is passed
        to :meth:`ratio` and has a curve.

    Examples
    --------
    >>> m = EvidenceModel()
    >>> pf, pp = m.likelihoods(np.array([1.0, 0.01, 1e-4]))
    >>> (pf / pp).round(2).tolist()     # the likelihood ratio a * p**(a - 1)
    [0.25, 7.91, 250.0]
    >>> m.hard(np.array([0.5, 0.001])).tolist()
    ['passed', 'fired']
    """

    mode: str = "soft"
    shape: float = 0.25
    alpha: float = 0.01
    curves: tuple[LikelihoodCurve, ...] = ()

    def __post_init__(self):
        if self.mode not in EVIDENCE_MODES:
            raise DiagnosisError(
                f"evidence mode must be one of {list(EVIDENCE_MODES)}. Got {self.mode!r} instead{suggest(self.mode, EVIDENCE_MODES)}"
            )
        if not (0 < self.shape < 1):
            raise DiagnosisError(f"evidence shape must be in (0, 1). Got {self.shape!r} instead.")
        if not (0 < self.alpha < 1):
            raise DiagnosisError(f"evidence alpha must be in (0, 1). Got {self.alpha!r} instead.")
        object.__setattr__(self, "curves", tuple(self.curves))
        bad = [c for c in self.curves if not isinstance(c, LikelihoodCurve)]
        if bad:
            raise DiagnosisError(f"evidence curves must be LikelihoodCurve values. Got {bad[0]!r} instead.")

    def ratio(self, p: np.ndarray, watches: Sequence | None = None, rates: np.ndarray | None = None) -> np.ndarray:
        """LR(p) = P(p | fired) / P(p | passed).

        ``watches`` (one detector kind per p-value) selects the fitted curve
        of each kind that has one; without it, or for other kinds, the
        beta-uniform ratio. ``rates`` (shape ``(n, 2)``: each symptom's
        P(fired | component faulty), P(fired | not); NaN where unknown)
        turns a curve's component-level ratio into the symptom's virtual
        evidence (:func:`~diagnosis.learning.likelihood.virtual_ratio`).
        """
        p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1.0)
        lr = self.shape * p ** (self.shape - 1.0)
        if watches is not None and self.curves:
            kinds = np.asarray(watches, dtype=object)
            fitted = np.zeros(len(p), dtype=bool)
            for c in self.curves:
                sel = kinds == c.watches
                if sel.any():
                    lr[sel] = c.ratio(p[sel])
                    fitted |= sel
            if rates is not None and fitted.any():
                from diagnosis.learning.likelihood import virtual_ratio

                r = np.asarray(rates, dtype=np.float64).reshape(len(p), 2)
                lr[fitted] = virtual_ratio(lr[fitted], r[fitted, 0], r[fitted, 1])
        return lr

    def likelihoods(
        self, p: np.ndarray, watches: Sequence | None = None, rates: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(p_fired, p_passed)``, each in (0, 1), summing to 1, with ratio LR(p) (see :meth:`ratio`)."""
        lr = self.ratio(p, watches, rates)
        return lr / (1.0 + lr), 1.0 / (1.0 + lr)

    def hard(self, p: np.ndarray) -> np.ndarray:
        """``fired`` where ``p <= alpha``, else ``passed``."""
        return np.where(np.asarray(p) <= self.alpha, "fired", "passed").astype(object)

    @property
    def sensitivity(self) -> float:
        """P(hard fired | fired) = alpha ** shape under the beta-uniform model."""
        return float(self.alpha**self.shape)

    @property
    def false_alarm(self) -> float:
        """P(hard fired | passed) = alpha."""
        return float(self.alpha)


def rank_nsigma(
    samples: pd.DataFrame,
    windows: pd.DataFrame,
    *,
    components: Sequence[str] | None = None,
    lead: str | pd.Timedelta = "0s",
    min_baseline: int = 4,
    pool: str | pd.Timedelta = "60min",
    rel_floor: float = 0.1,
    exclude_incidents: bool = False,
) -> pd.DataFrame:
    """The n-sigma baseline: rank components by their largest robust z-score, in either direction, over every metric.

    Every metric of a component's own entities counts (no mapping, no null
    distribution, no model), scored with :func:`score_windows` and the same
    windows and baselines (incident periods kept out of baselines with
    ``exclude_incidents``); edges are left out (they belong to two
    components).

    Returns
    -------
    DataFrame
        ``window_id``, ``component``, ``score`` (the largest ``|z|``), ``signal``
        (the entity and metric that gave it), ``rank`` (1 + number of
        components with a strictly higher score), per window in rank order.
    """
    from diagnosis.telemetry.entities import EDGE_SEPARATOR

    own = samples[
        samples["component"].notna() & ~samples["entity"].astype(str).str.contains(EDGE_SEPARATOR, regex=False)
    ]
    if components is not None:
        own = own[own["component"].isin(list(components))]
    sc = score_windows(
        own,
        windows,
        lead=lead,
        min_baseline=min_baseline,
        pool=pool,
        rel_floor=rel_floor,
        exclude=windows if exclude_incidents else None,
    )
    if sc.empty:
        return pd.DataFrame({"window_id": [], "component": [], "score": [], "signal": [], "rank": []})
    sc["score"] = np.fmax(sc["z_up"].to_numpy(dtype=np.float64), sc["z_down"].to_numpy(dtype=np.float64))
    sc["signal"] = sc["entity"] + " " + sc["metric"]
    best = sc.loc[sc.groupby(["window_id", "component"], sort=False)["score"].idxmax()]
    out = best[["window_id", "component", "score", "signal"]].reset_index(drop=True)
    out["rank"] = out.groupby("window_id")["score"].rank(method="min", ascending=False).astype(np.int64)
    return out.sort_values(["window_id", "rank"], kind="stable").reset_index(drop=True)
