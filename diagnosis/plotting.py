"""Plots. The only module that imports matplotlib; every function takes ``ax=None`` and returns the Axes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from diagnosis.scoring import ScoreSummary

__all__ = ["plot_reliability", "plot_topk"]


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5, 4))
    return ax


def _metrics(summary: ScoreSummary | Mapping, level: str) -> Mapping:
    metrics = summary.metrics if isinstance(summary, ScoreSummary) else summary["metrics"]
    return metrics[level]


def plot_reliability(summary: ScoreSummary | Mapping, *, level: str = "location", top1: bool = True, ax=None):
    """Reliability diagram: mean predicted probability against observed frequency per bin.

    Parameters
    ----------
    summary : ScoreSummary or the parsed ``SCORED.summary.json``
    level : {"location", "component"}
    top1 : bool, default True
        Each incident's top candidate only (``reliability_top1``); else every pair.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    m = _metrics(summary, level)
    table = m["reliability_top1" if top1 else "reliability"]
    rows = [r for r in table if r["n"]]
    p = np.array([r["mean_p"] for r in rows])
    y = np.array([r["observed"] for r in rows])
    n = np.array([r["n"] for r in rows], dtype=float)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    ax.scatter(p, y, s=20 + 200 * n / n.max(), zorder=3, label="bins (area ~ count)")
    ax.plot(p, y, linewidth=1)
    ece = m["ece_top1" if top1 else "ece"]
    ax.set_xlabel("predicted probability" + (" of the top candidate" if top1 else ""))
    ax.set_ylabel("observed frequency")
    ax.set_title(f"Reliability ({level}{', top-1' if top1 else ''}): ECE {ece:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize="small")
    return ax


def plot_topk(summary: ScoreSummary | Mapping, *, ax=None):
    """AC@k for k = 1..5 at both levels, as bars.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    ks = np.arange(1, 6)
    for offset, level in ((-0.2, "component"), (0.2, "location")):
        m = _metrics(summary, level)
        ax.bar(ks + offset, [m[f"AC@{k}"] for k in ks], width=0.4, label=level)
    ax.set_xticks(ks, [f"AC@{k}" for k in ks])
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of incidents")
    ax.set_title("Root cause in the top k")
    ax.legend(loc="lower right")
    return ax
