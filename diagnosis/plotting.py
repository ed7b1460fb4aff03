"""Plots. The only module that imports matplotlib; every function takes ``ax=None`` and returns the Axes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from diagnosis.logs.scoring import ScoreSummary

__all__ = [
    "plot_contributions",
    "plot_policy_costs",
    "plot_policy_savings",
    "plot_reliability",
    "plot_timeline",
    "plot_topk",
    "plot_topology",
    "to_png",
    "topology_figsize",
]


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


# ----------------------------------------------------------------------------- post-mortem plots
def _text(s) -> str:
    """Plain text for matplotlib: ``$`` would start mathtext."""
    return str(s).replace("$", r"\$")


def _p_faulty(posteriors) -> dict[str, float]:
    post = getattr(posteriors, "posteriors", posteriors)
    return {c: 1.0 - float(p.get("ok", 0.0)) for c, p in post.items()}


def _layers(topology) -> dict[str, int]:
    """Layer per component: 0 for what nothing depends on, then the longest dependency chain below it."""
    order = topology.dependency_order()[::-1]  # dependents before their dependencies
    layer = {c: 0 for c in topology.component_names}
    for name in order:
        for d in topology.dependencies_of(name):
            layer[d.target] = max(layer[d.target], layer[name] + 1)
    return layer


def plot_topology(topology, posteriors=None, *, highlight: str | None = None, cmap: str = "Reds", ax=None):
    """The dependency graph, each component coloured by P(component has any fault).

    Components are drawn in layers: what nothing depends on at the top, each
    dependency below what uses it (arrows point from a component to what it
    depends on: calls, datastores, hosts).

    Parameters
    ----------
    topology : Topology
    posteriors : Diagnosis or Mapping[str, Mapping[str, float]], optional
        Component -> fault state -> probability (``Diagnosis.posteriors``);
        without it, the priors.
    highlight : str, optional
        A component to outline (the confirmed root cause, say).
    cmap : str, default "Reds"
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib as mpl
    from matplotlib.patches import FancyArrowPatch

    layer = _layers(topology)
    rows: dict[int, list[str]] = {}
    for c in topology.component_names:
        rows.setdefault(layer[c], []).append(c)
    width = max(len(v) for v in rows.values())
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(max(7.0, 1.9 * width), max(3.0, 1.35 * len(rows) + 0.8)))
    p = _p_faulty(posteriors) if posteriors is not None else {c.name: 1.0 - c.p_ok for c in topology.components}
    pos = {}
    for r, names in rows.items():
        for i, name in enumerate(names):
            pos[name] = ((i + 0.5) * width / len(names), -r)
    colormap = mpl.colormaps[cmap]
    norm = mpl.colors.Normalize(0.0, 1.0)
    fontsize = 9 if width <= 8 else 7
    for d in topology.dependencies:
        (x0, y0), (x1, y1) = pos[d.source], pos[d.target]
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=12, color="0.55",
                                     linewidth=0.9, shrinkA=16, shrinkB=16, zorder=1))  # fmt: skip
    for name, (x, y) in pos.items():
        prob = p.get(name, 0.0)
        face = colormap(norm(0.08 + 0.92 * prob))
        dark = prob > 0.55
        edge = "black" if name == highlight else "0.35"
        ax.text(x, y, f"{_text(name)}\n{prob:.2f}", ha="center", va="center", fontsize=fontsize, zorder=3,
                color="white" if dark else "black",
                bbox={"boxstyle": "round,pad=0.4", "facecolor": face, "edgecolor": edge,
                      "linewidth": 2.4 if name == highlight else 0.8})  # fmt: skip
    ax.set_xlim(-0.1, width + 0.1)
    ax.set_ylim(-(len(rows) - 1) - 0.6, 0.6)
    ax.set_axis_off()
    sm = mpl.cm.ScalarMappable(norm=norm, cmap=colormap)
    sm.set_array([])
    ax.figure.colorbar(sm, ax=ax, fraction=0.025, pad=0.01, label="P(component has any fault)")
    title = f"{_text(topology.name)}: P(component faulty)"
    if highlight:
        title += f" (outlined: {_text(highlight)})"
    ax.set_title(title)
    return ax


def plot_timeline(timeline, *, k: int = 5, ax=None):
    """Posterior of the leading locations over the incident, step by step.

    Each line is ``P(F_c = m | findings so far)`` for one location (those
    :meth:`Timeline.tracked` picks: every step's top location, the final top
    ``k`` and the true cause, drawn thick). Dotted vertical lines mark
    recovery attempts (red: failed, green: succeeded); a star marks when the
    true cause became top-1 for good.

    Parameters
    ----------
    timeline : Timeline
    k : int, default 5
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(10, 4.5))
    x = timeline.minutes
    index = {loc: i for i, loc in enumerate(timeline.locations)}
    truth = timeline.true_cause
    for loc in timeline.tracked(k):
        y = timeline.posterior[:, index[loc]]
        is_truth = truth is not None and tuple(truth) == loc
        label = f"{_text(loc[0])}: {_text(loc[1])}" + (" (true cause)" if is_truth else "")
        ax.step(x, y, where="post", linewidth=3.0 if is_truth else 1.4, label=label, zorder=3 if is_truth else 2)
        ax.plot(x, y, linestyle="none", marker="o", markersize=3, color=ax.lines[-1].get_color())
    for e in timeline.events:
        if e.kind == "action":
            colour = {"failure": "tab:red", "success": "tab:green"}.get(e.observation, "0.5")
            ax.axvline((e.time - timeline.opened).total_seconds() / 60.0, color=colour, linestyle=":", linewidth=1.2)
            ax.annotate(_text(f"{e.finding} ({e.observation})"), ((e.time - timeline.opened).total_seconds() / 60.0, 1.0),
                        xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right", fontsize=8, color=colour)  # fmt: skip
    s = timeline.knew_at_step
    if s is not None and truth is not None and truth[1] is not None:
        y = timeline.posterior[s, index[tuple(truth)]]
        ax.plot([x[s]], [y], marker="*", markersize=16, color="gold", markeredgecolor="black", zorder=5,
                linestyle="none", label=f"top-1 for good at {x[s]:.0f} min")  # fmt: skip
    ax.set_xlabel("minutes since the incident opened")
    ax.set_ylabel("posterior probability")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"How the belief evolved: incident {_text(timeline.incident_id)}")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    return ax


def plot_contributions(hypothesis, *, max_findings: int = 12, ax=None):
    """Each finding's log-likelihood ratio for one hypothesis, as horizontal bars.

    Parameters
    ----------
    hypothesis : HypothesisExplanation
        One of ``Explanation.hypotheses``.
    max_findings : int, default 12
        The largest ``|LLR|`` are shown.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    items = list(hypothesis.contributions[:max_findings])[::-1]
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(8, 0.45 * len(items) + 1.4))
    values = [c.log_likelihood_ratio for c in items]
    colours = ["tab:green" if v > 0 else "tab:red" for v in values]
    ax.barh(range(len(items)), values, color=colours)
    ax.set_yticks(range(len(items)), [_text(f"{c.finding} = {c.observation}") for c in items])
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.set_xlabel("log-likelihood ratio (natural log; > 0 supports the hypothesis)")
    ax.set_title(
        _text(f"Evidence for {hypothesis.component}: {hypothesis.fault_mode} (P = {hypothesis.probability:.3f})")
    )
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_policy_costs(comparison, *, ax=None):
    """Mean cost to recovery per policy on simulated incidents, with 95% intervals.

    Parameters
    ----------
    comparison : PolicyComparison
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    names = list(comparison.results)
    means = [comparison.results[p].mean_cost for p in names]
    errs = [1.96 * comparison.results[p].se_cost for p in names]
    ax.bar(names, means, yerr=errs, capsize=4, color=["tab:blue" if p == "plan" else "0.6" for p in names])
    ax.set_ylabel("mean cost to recovery")
    ax.set_title(_text(f"{comparison.topology}: {comparison.n_incidents} simulated incidents"))
    for i, (m, e) in enumerate(zip(means, errs)):
        ax.annotate(f"{m:.2f}", (i, m + e), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    return ax


def plot_policy_savings(comparison, *, baseline: str = "naive", ax=None):
    """Paired saving of each policy against ``baseline`` (mean cost difference per incident), with 95% intervals.

    Parameters
    ----------
    comparison : PolicyComparison
    baseline : str, default "naive"
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    names = [p for p in comparison.results if p != baseline]
    savings = [comparison.saving(p, baseline) for p in names]
    values = [s["saving"] for s in savings]
    errs = [1.96 * s["se"] for s in savings]
    ax.bar(names, values, yerr=errs, capsize=4, color=["tab:blue" if p == "plan" else "0.6" for p in names])
    ax.axhline(0, color="0.3", linewidth=0.8)
    for i, (s, e) in enumerate(zip(savings, errs)):
        y = s["saving"] + (e if s["saving"] >= 0 else -e)
        ax.annotate(f"{s['relative']:+.1%}", (i, y), textcoords="offset points", xytext=(0, 3 if s["saving"] >= 0 else -11),
                    ha="center", fontsize=8)  # fmt: skip
    ax.margins(y=0.12)
    ax.set_ylabel(_text(f"saving against {baseline} (cost per incident)"))
    ax.set_title(
        _text(f"{comparison.topology}, escalation {comparison.escalation_cost:g} (n = {comparison.n_incidents})")
    )
    ax.grid(axis="y", alpha=0.3)
    return ax


def topology_figsize(topology) -> tuple[float, float]:
    """A figure size (inches) that keeps :func:`plot_topology`'s labels legible."""
    layer = _layers(topology)
    width = max(list(layer.values()).count(r) for r in set(layer.values()))
    return (max(8.0, 1.9 * width + 1.2), max(3.2, 1.35 * (max(layer.values()) + 1) + 1.0))


def to_png(plot, *args, figsize: tuple[float, float] = (9.0, 4.5), dpi: int = 110, **kwargs) -> bytes:
    """Draw ``plot(*args, ax=ax, **kwargs)`` on a new figure and return it as PNG bytes.

    The figure is created without pyplot (nothing is shown, nothing is left
    open), with a constrained layout.

    Parameters
    ----------
    plot : callable
        One of this module's plot functions.
    figsize : (float, float), default (9, 4.5)
    dpi : int, default 110

    Returns
    -------
    bytes
    """
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    plot(*args, ax=ax, **kwargs)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()
