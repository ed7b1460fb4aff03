"""Post-mortem reports: one incident, explained, replayed and compared with the plan.

:func:`post_mortem` computes everything a post-mortem needs for one incident
(a :class:`PostMortem`); :func:`write_report` renders it as a self-contained
HTML page (figures embedded as ``data:`` URIs, no scripts, no external
resources) and as Markdown (figures as PNG files beside it), inside one
folder. It contains:

* the topology graph coloured by the posterior ``P(component has any fault)``;
* the ranked fault locations;
* the explanation (:mod:`diagnosis.postmortem.explain`): evidence contributions,
  propagation paths, unexplained symptoms, what-ifs;
* the checks worth running and the check-or-act plan from what was known
  before the first recovery action, against the naive order and against
  what was actually done (:mod:`diagnosis.postmortem.planning`);
* the belief timeline (:mod:`diagnosis.postmortem.timeline`): plot, when the model
  knew, turning points, and each action taken against the recommendation.

The posterior, ranked table and explanation use every observation of the
incident (action outcomes excluded, so that a final success does not explain
itself away); the timeline adds the action outcomes in time order.

Every name is escaped (a component called ``<script>`` is text), and files
are written only inside the output folder: names are fixed, each target is
resolved and refused when it (or a symbolic link in its place) points
elsewhere, and every write goes to a temporary file in the folder renamed
into place.
"""

from __future__ import annotations

import base64
import html
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from diagnosis.exceptions import DiagnosisError, IncidentLogError, ParameterError, suggest
from diagnosis.localization import Diagnosis
from diagnosis.logs.schema import Incident, IncidentFrame, validate_frame
from diagnosis.model.network import Network
from diagnosis.model.topology import Topology, load_topology
from diagnosis.postmortem.explain import Explanation, _explain
from diagnosis.postmortem.planning import (
    ESCALATION_COST,
    CheckValue,
    Plan,
    _check_cost,
    _check_values,
    _Node,
    _Planner,
    _ranked,
)
from diagnosis.postmortem.session import Context
from diagnosis.postmortem.timeline import Timeline, belief_timeline

__all__ = ["FORMATS", "PostMortem", "ReportFiles", "find_incident", "post_mortem", "write_report"]

#: Report formats :func:`write_report` writes.
FORMATS = ("html", "md")
#: File names inside the output folder (fixed: nothing from the data goes into a path).
HTML_NAME = "post_mortem.html"
MARKDOWN_NAME = "post_mortem.md"
FIGURES = ("topology", "timeline", "contributions")


@dataclass(frozen=True, slots=True)
class PostMortem:
    """Everything a post-mortem report shows for one incident.

    Attributes
    ----------
    incident : Incident
    topology : Topology
    diagnosis : Diagnosis
        The posterior from every observation.
    explanation : Explanation
        Why (top hypotheses of :attr:`diagnosis`).
    timeline : Timeline
    decision_step : int
        The timeline step the plan starts from: just before the first recovery
        action (the last step when there was none).
    checks : tuple of CheckValue
        The checks not yet run at the decision step, best information per cost first.
    plan, naive : Plan
        The check-or-act plan and the naive order from the decision step.
    escalation_cost : float
    """

    incident: Incident
    topology: Topology
    diagnosis: Diagnosis
    explanation: Explanation
    timeline: Timeline
    decision_step: int
    checks: tuple[CheckValue, ...]
    plan: Plan
    naive: Plan
    escalation_cost: float

    @property
    def actions_cost(self) -> float:
        """Cost of the recovery actions actually tried (as listed in the incident)."""
        cost = {(a.component, a.name): a.cost for a in self.topology.actions}
        return math.fsum(cost[(a.target, a.action)] for a in self.incident.actions)

    @property
    def decision_time(self) -> pd.Timestamp:
        return self.timeline.events[self.decision_step].time


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """The files :func:`write_report` wrote.

    Attributes
    ----------
    folder : pathlib.Path
        The output folder (resolved).
    html, markdown : pathlib.Path or None
    figures : tuple of pathlib.Path
        The PNG files beside the Markdown report.
    """

    folder: Path
    html: Path | None
    markdown: Path | None
    figures: tuple[Path, ...]


# ============================================================================ computing
def post_mortem(
    model: Topology | Network,
    incident: Incident,
    *,
    n_hypotheses: int = 3,
    escalation_cost: float = ESCALATION_COST,
    max_nodes: int = 100,
    engine: Any = "auto",
) -> PostMortem:
    """Compute a post-mortem for one incident.

    Parameters
    ----------
    model : Topology or Network
    incident : Incident
    n_hypotheses : int, default 3
        Hypotheses explained.
    escalation_cost : float, default 30
        For the plans (see :mod:`diagnosis.postmortem.planning`).
    max_nodes : int, default 100
        Decisions evaluated for each plan's expected cost (see
        :func:`diagnosis.postmortem.planning.plan_recovery`).
    engine : str or engine, default "auto"

    Returns
    -------
    PostMortem

    Examples
    --------
    >>> from diagnosis import bundled_topology, load_topology, simulate
    >>> topo = load_topology(bundled_topology("webshop"))
    >>> incident = next(simulate(topo, 1, rng=5).records())
    >>> pm = post_mortem(topo, incident)
    >>> pm.plan.policy, pm.naive.policy
    ('plan', 'naive')
    """
    if not isinstance(n_hypotheses, int) or isinstance(n_hypotheses, bool) or n_hypotheses < 1:
        raise ParameterError(
            f"The 'n_hypotheses' parameter of post_mortem must be an int >= 1. Got {n_hypotheses!r} instead."
        )
    ctx = Context(model, engine)
    c_esc = _check_cost(escalation_cost)
    timeline = belief_timeline(ctx, incident, escalation_cost=c_esc)
    from diagnosis.postmortem.session import BeliefState, findings_from

    findings = findings_from(incident.observation_mapping())
    explanation = _explain(ctx, findings, n_hypotheses)

    first_action = next((e.step for e in timeline.events if e.kind == "action"), None)
    decision = (first_action - 1) if first_action is not None else timeline.n_steps - 1
    state = BeliefState({}, {})
    obs = {f.name: f for f in findings}
    for e in timeline.events[1 : decision + 1]:
        state = obs[e.finding].apply(ctx, state)
    checks = _ranked(ctx, _check_values(ctx, state, frozenset()))
    planner = _Planner(ctx, c_esc, 20)
    root = _Node(state, frozenset(), 0)
    plans = {}
    for policy in ("plan", "naive"):
        plans[policy] = planner.plan(root, policy, max_nodes=max_nodes)
        planner.declare()
    return PostMortem(
        incident=incident,
        topology=ctx.topology,
        diagnosis=explanation.diagnosis,
        explanation=explanation,
        timeline=timeline,
        decision_step=decision,
        checks=tuple(checks),
        plan=plans["plan"],
        naive=plans["naive"],
        escalation_cost=c_esc,
    )


def find_incident(
    incidents: str | os.PathLike | IncidentFrame, incident_id: str | None, topology: Topology
) -> Incident:
    """One incident of a log, checked against ``topology``.

    Parameters
    ----------
    incidents : path or IncidentFrame
        An incident log (any format :func:`diagnosis.read_incidents` reads).
    incident_id : str or None
        The incident; None picks the only incident of a one-incident log.
    topology : Topology

    Raises
    ------
    IncidentLogError
        Unknown id (with the closest ids), an incident set aside when the log
        was read or checked against the topology (with the reasons in ``rows``).
    """
    from diagnosis.logs.formats import read_incidents

    if isinstance(incidents, IncidentFrame):
        frame, rejects, source = incidents, [], "the incident frame"
    else:
        frame, rejects = read_incidents(incidents)
        source = str(incidents)
    ids = list(frame.incidents["id"])
    if incident_id is None:
        if len(ids) != 1:
            raise IncidentLogError(
                f"{source}: holds {len(ids)} incidents; name one with --incident (first ids: {ids[:5]})"
            )
        incident_id = ids[0]
    if incident_id not in set(ids):
        bad = [r for r in rejects if r.incident_id == incident_id]
        if bad:
            reasons = "; ".join(f"{r.location}: {r.field}: {r.reason}" for r in bad)
            raise IncidentLogError(
                f"{source}: incident {incident_id!r} was set aside: {reasons}", rows=[r.to_dict() for r in bad]
            )
        raise IncidentLogError(
            f"{source}: no incident {incident_id!r}{suggest(incident_id, ids)}; it holds {len(ids)} incidents "
            f"(first ids: {ids[:5]})"
        )
    one, bad = validate_frame(frame.select([incident_id]), topology, source=source)
    if bad:
        reasons = "; ".join(f"{r.field} {r.value}: {r.reason}" for r in bad)
        raise IncidentLogError(f"{source}: incident {incident_id!r} does not fit topology {topology.name!r}: {reasons}",
                               rows=[r.to_dict() for r in bad])  # fmt: skip
    return next(one.records())


# ============================================================================ writing
def write_report(
    topology: Topology | str | os.PathLike,
    incidents: str | os.PathLike | IncidentFrame | Incident,
    incident_id: str | None,
    out: str | os.PathLike,
    *,
    formats: Sequence[str] = FORMATS,
    escalation_cost: float = ESCALATION_COST,
    engine: Any = "auto",
) -> ReportFiles:
    """Write the post-mortem of one incident into the folder ``out``.

    This is ``diagnosis report --topology T INCIDENTS --incident ID --out DIR``.

    Parameters
    ----------
    topology : Topology or path to a topology file
    incidents : path to an incident log, IncidentFrame, or an Incident
    incident_id : str or None
        The incident (None: the only one in the log; ignored for an Incident).
    out : path
        The output folder, created when missing. Only ``post_mortem.html``,
        ``post_mortem.md`` and its figures (``topology.png``, ``timeline.png``,
        ``contributions.png``) are written there.
    formats : sequence of {"html", "md"}
    escalation_cost : float, default 30
    engine : str or engine, default "auto"

    Returns
    -------
    ReportFiles

    Raises
    ------
    DiagnosisError
        ``out`` exists and is not a folder, or a target resolves outside it.
    IncidentLogError
        See :func:`find_incident`.
    """
    formats = tuple(formats)
    for f in formats:
        if f not in FORMATS:
            raise ParameterError(f"unknown report format {f!r}{suggest(str(f), FORMATS)}; allowed: {list(FORMATS)}")
    if not formats:
        raise ParameterError(f"The 'formats' parameter of write_report is empty; allowed: {list(FORMATS)}")
    if not isinstance(topology, Topology):
        topology = load_topology(topology)
    folder = _prepare_folder(out)
    names = ([HTML_NAME] if "html" in formats else []) + (
        [MARKDOWN_NAME, *(f"{f}.png" for f in FIGURES)] if "md" in formats else []
    )
    for name in names:  # refuse before the work, not after
        _target_inside(folder, name)
    incident = incidents if isinstance(incidents, Incident) else find_incident(incidents, incident_id, topology)
    pm = post_mortem(topology, incident, escalation_cost=escalation_cost, engine=engine)
    figures = render_figures(pm)
    html_path = md_path = None
    written = []
    if "md" in formats:
        for name, data in figures.items():
            written.append(_write_inside(folder, f"{name}.png", data))
        md_path = _write_inside(
            folder, MARKDOWN_NAME, render_markdown(pm, {k: f"{k}.png" for k in figures}).encode("utf-8")
        )
    if "html" in formats:
        html_path = _write_inside(folder, HTML_NAME, render_html(pm, figures).encode("utf-8"))
    return ReportFiles(folder, html_path, md_path, tuple(written))


def _prepare_folder(out: str | os.PathLike) -> Path:
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise DiagnosisError(f"report folder {str(out)!r} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DiagnosisError(f"cannot create report folder {str(out)!r}: {exc.strerror or exc}") from None
    return folder.resolve()


def _target_inside(folder: Path, name: str) -> Path:
    """``folder/name``, refused unless it is a plain file name that stays inside ``folder``."""
    if not name or Path(name).name != name or name in (".", ".."):
        raise DiagnosisError(f"refusing to write {name!r}: not a plain file name inside {str(folder)!r}")
    target = folder / name
    resolved = target.resolve()
    if resolved.parent != folder or target.is_symlink():
        raise DiagnosisError(
            f"refusing to write {str(target)!r}: it resolves to {str(resolved)!r}, outside {str(folder)!r}"
        )
    if target.exists() and not target.is_file():
        raise DiagnosisError(f"refusing to write {str(target)!r}: it exists and is not a file")
    return target


def _write_inside(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``folder/name`` atomically, refusing anything that lands outside ``folder``."""
    target = _target_inside(folder, name)
    # Like tempfile.mkstemp, but with the usual permissions (0o666 less the umask) rather than 0o600.
    tmp = folder / f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# ============================================================================ rendering
def render_figures(pm: PostMortem) -> dict[str, bytes]:
    """The report's figures as PNG bytes: ``topology``, ``timeline``, ``contributions``."""
    from diagnosis.plotting import plot_contributions, plot_timeline, plot_topology, to_png, topology_figsize

    cause = pm.incident.cause_component
    out = {
        "topology": to_png(
            plot_topology, pm.topology, pm.diagnosis, highlight=cause, figsize=topology_figsize(pm.topology)
        ),
        "timeline": to_png(plot_timeline, pm.timeline, figsize=(11.0, 4.8)),
    }
    if pm.explanation.hypotheses:
        h = pm.explanation.hypotheses[0]
        # The findings that moved the odds (|LLR| >= 0.01), at least three, at most twelve.
        n = min(12, len(h.contributions), max(3, sum(abs(c.log_likelihood_ratio) >= 0.01 for c in h.contributions)))
        out["contributions"] = to_png(plot_contributions, h, max_findings=n, figsize=(9.0, 0.42 * n + 1.5))
    return out


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _p(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _time(t) -> str:
    if t is None or pd.isna(t):
        return "–"
    return pd.Timestamp(t).strftime("%Y-%m-%d %H:%M:%S UTC")


def _minutes(pm: PostMortem, t) -> str:
    return f"{(t - pm.timeline.opened).total_seconds() / 60.0:.0f} min"


@dataclass(frozen=True, slots=True)
class _Section:
    title: str
    blocks: tuple  # ("p", text) | ("table", headers, rows) | ("figure", key, alt) | ("list", items) | ("h3", text) | ("bars", rows)


def _sections(pm: PostMortem) -> list[_Section]:
    """The report's content, format-neutral (plain strings; each renderer escapes)."""
    inc, tl, ex = pm.incident, pm.timeline, pm.explanation
    secs = []
    cause = f"{inc.cause_component}: {inc.cause_fault_mode or '(mode unknown)'}" if inc.cause_component else "unknown"
    top = pm.diagnosis.locations[0] if pm.diagnosis.locations else None
    ranks = tl.rank_of_truth()
    summary = [
        ("Incident", inc.id),
        ("Topology", pm.topology.name),
        ("Opened", _time(inc.opened)),
        ("Resolved", _time(inc.resolved)),
        ("Confirmed root cause", cause),
        ("Model's top location (all observations)", f"{top.component}: {top.fault_mode} (P = {top.probability:.3f})" if top else "–"),
        ("Root cause's final rank", str(int(ranks[-1])) if ranks is not None else "–"),
        ("When the model knew", _knew(pm)),
        ("Observations / recovery attempts", f"{len(inc.observations)} / {len(inc.actions)}"),
        ("Expected cost from the decision point: plan / naive order",
         f"{pm.plan.expected_cost:.2f} / {pm.naive.expected_cost:.2f} (escalation costs {pm.escalation_cost:g})"),
        ("Cost of the actions actually tried", f"{pm.actions_cost:g}"),
    ]  # fmt: skip
    secs.append(_Section("Summary", (("table", ("", ""), summary),)))

    rows = []
    for i, loc in enumerate(pm.diagnosis.locations[:10], start=1):
        mark = "yes" if (loc.component, loc.fault_mode) == (inc.cause_component, inc.cause_fault_mode) else ""
        prior = pm.topology.component(loc.component).fault_mode(loc.fault_mode).prior
        rows.append((str(i), loc.component, loc.fault_mode, _p(loc.probability), _p(prior, 4), mark))
    secs.append(
        _Section(
            "Topology and ranked fault locations",
            (
                ("p", "Each component is coloured by P(component has any fault | every observation); arrows point from a "
                      "component to what it depends on. The confirmed root cause is outlined."),
                ("figure", "topology", "Topology graph coloured by the posterior"),
                ("table", ("#", "component", "fault mode", "P(fault | D)", "prior", "root cause"), rows),
            ),
        )
    )  # fmt: skip

    blocks: list = [
        ("p", "Contribution of a finding to a hypothesis H: its log-likelihood ratio log P(o | H, rest) / P(o | not H, rest) "
              "(natural log; positive supports H), i.e. how much it moved the log-odds of H when added last. "
              "Propagation paths run from the suspected fault to each fired symptom it explains."),
    ]  # fmt: skip
    if "contributions" in FIGURES and ex.hypotheses:
        blocks.append(("figure", "contributions", "Evidence contributions for the top hypothesis"))
    for i, h in enumerate(ex.hypotheses, start=1):
        blocks.append(("h3", f"{i}. {h.component}: {h.fault_mode} — P = {h.probability:.3f} (prior {h.prior:.4f}, "
                             f"log Bayes factor {h.log_bayes_factor:+.2f})"))  # fmt: skip
        blocks.append(("bars", tuple((c.finding, c.observation, c.log_likelihood_ratio) for c in h.contributions)))
        if h.paths:
            blocks.append(("list", tuple(
                f"{' → '.join(p.components)} [{p.trigger}] ⇒ {p.symptom}: strength {p.strength:.3f}, "
                f"P(fired | this fault alone) = {p.p_fired:.3f}" for p in h.paths)))  # fmt: skip
        blocks.append(
            ("p", "Unexplained fired symptoms: " + (", ".join(h.unexplained) if h.unexplained else "none") + ".")
        )
        if h.contradicting:
            blocks.append(
                ("p", "Passed although this fault alone would usually raise them: " + ", ".join(h.contradicting) + ".")
            )
    wrows = [
        (w.finding, w.observation, w.flipped, f"{w.top_component}: {w.top_fault_mode}", _p(w.top_probability),
         _p(w.p_current_top), "yes" if w.changes_top else "")
        for w in ex.what_ifs
    ]  # fmt: skip
    blocks.append(("h3", "What if one observation had come out the other way?"))
    decisive = ", ".join(w.finding for w in ex.decisive)
    blocks.append(("p", f"Findings that alone would change the top answer: {decisive or 'none'}."))
    blocks.append(
        (
            "table",
            ("finding", "observed", "flipped to", "new top", "P(new top)", "P(current top)", "changes top"),
            wrows,
        )
    )
    secs.append(_Section("Why the model believes it", tuple(blocks)))

    dt = pm.decision_time
    crow = [
        (c.symptom, f"{c.cost:g}", _p(c.p_fired), _p(c.information_gain), _p(c.success_gain),
         "∞" if math.isinf(c.information_per_cost) else _p(c.information_per_cost))
        for c in pm.checks[:8]
    ]  # fmt: skip
    plan_rows = [_step_row(i, s) for i, s in enumerate(pm.plan.steps, start=1)]
    naive_rows = [_step_row(i, s) for i, s in enumerate(pm.naive.steps, start=1)]
    cost = {(a.component, a.name): a.cost for a in pm.topology.actions}
    done_rows = []
    for r in tl.actions:
        rec = f"{r.recommended_action} {r.recommended_target}" if r.recommended_action else "–"
        done_rows.append((_time(r.time), f"{r.action} {r.target}", f"{cost[(r.target, r.action)]:g}", r.outcome, _p(r.p_success),
                          str(r.rank), rec, _p(r.p_success_recommended), r.plan_step))  # fmt: skip
    exact = "" if pm.plan.exact else " (tree cut at the node budget; the rest valued by the actions-only sequence)"
    secs.append(
        _Section(
            "What it would have checked and done",
            (
                ("p", f"From what was known at {_time(dt)} ({_minutes(pm, dt)} after opening), "
                      + ("just before the first recovery action." if any(e.kind == "action" for e in tl.events) else "the last observation.")),
                ("h3", "Checks worth running next"),
                ("p", "Expected information gain on the fault location (bits, summed over components) and expected gain in the "
                      "best untried action's P(success), ranked by information per unit of cost."),
                ("table", ("check", "cost", "P(fired)", "info gain (bits)", "success gain", "info / cost"), crow),
                ("h3", "Check-or-act plan (Heckerman, Breese and Rommelse 1995) against the naive order"),
                ("p", f"Expected cost to recovery under the model: plan {pm.plan.expected_cost:.2f}{exact}, "
                      f"naive order (fix the most likely cause first) {pm.naive.expected_cost:.2f}. "
                      "The steps shown assume each action fails and each check gives its more likely result."),
                ("table", ("#", "plan step", "cost", "P", "expected cost from here", "assumed outcome"), plan_rows),
                ("table", ("#", "naive step", "cost", "P", "expected cost from here", "assumed outcome"), naive_rows),
                ("h3", "What was done, against what was recommended at the time"),
                ("table", ("time", "action taken", "cost", "outcome", "P(success)", "rank", "recommended", "P(success)",
                           "plan's next step"), done_rows),
            ),
        )
    )  # fmt: skip

    tp_rows = [
        (
            _time(t.time),
            t.finding,
            t.observation,
            f"{t.before[0]}: {t.before[1]}",
            f"{t.after[0]}: {t.after[1]}",
            _p(t.p_after),
        )
        for t in tl.turning_points
    ]
    frame = tl.to_frame()
    step_rows = [
        (str(r.step), f"{r.minutes:.1f}", r.finding, r.observation, f"{r.top_component}: {r.top_fault_mode}", _p(r.p_top),
         "–" if pd.isna(r.rank_of_truth) else str(int(r.rank_of_truth)))
        for r in frame.itertuples(index=False)
    ]  # fmt: skip
    secs.append(
        _Section(
            "How the belief evolved",
            (
                ("p", "The observations and action outcomes replayed in time order (a failed action multiplies the posterior "
                      "by 1 − P(R | fault mode, action) on its target)."),
                ("figure", "timeline", "Posterior of the leading locations over time"),
                ("p", f"When it knew: {_knew(pm)}."),
                ("h3", "Turning points"),
                ("table", ("time", "finding", "observed", "top before", "top after", "P(top after)"), tp_rows),
                ("h3", "Every step"),
                ("table", ("step", "minute", "finding", "observed", "top location", "P", "rank of root cause"), step_rows),
            ),
        )
    )  # fmt: skip
    return secs


def _knew(pm: PostMortem) -> str:
    tl = pm.timeline
    if tl.true_cause is None:
        return "no confirmed root cause"
    s = tl.knew_at_step
    if s is None:
        return "never: the root cause was not the top location at the end"
    e = tl.events[s]
    return (
        f"{_time(e.time)} ({_minutes(pm, e.time)} after opening), after {e.finding} = {e.observation}"
        if s
        else "from the start"
    )


def _step_row(i: int, s) -> tuple:
    return (str(i), s.describe(), f"{s.cost:g}", _p(s.probability), _p(s.expected_cost, 2), s.assumed_outcome or "")


_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d1d1f; margin: 0; background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; background: white; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 2px solid #e2e2e2; padding-bottom: 4px; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
p, li { line-height: 1.45; font-size: 0.95em; }
table { border-collapse: collapse; margin: 10px 0 16px; font-size: 0.88em; }
th, td { border: 1px solid #d6d6d6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f3; }
tr:nth-child(even) td { background: #fbfbfd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 12px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.bar { display: inline-block; height: 10px; vertical-align: middle; }
.pos { background: #3a9a4a; } .neg { background: #c8443c; }
.note { color: #555; font-size: 0.85em; }
"""


def render_html(pm: PostMortem, figures: Mapping[str, bytes]) -> str:
    """The report as one self-contained HTML page (figures as base64 ``data:`` URIs)."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Post-mortem: {_e(pm.incident.id)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>Post-mortem: incident {_e(pm.incident.id)}</h1>",
        f'<p class="note">Topology {_e(pm.topology.name)}; engine {_e(pm.diagnosis.engine)}; written by diagnosis.</p>',
    ]
    for sec in _sections(pm):
        out.append(f"<h2>{_e(sec.title)}</h2>")
        for block in sec.blocks:
            kind = block[0]
            if kind == "p":
                out.append(f"<p>{_e(block[1])}</p>")
            elif kind == "h3":
                out.append(f"<h3>{_e(block[1])}</h3>")
            elif kind == "list":
                out.append("<ul>" + "".join(f"<li>{_e(x)}</li>" for x in block[1]) + "</ul>")
            elif kind == "table":
                out.append(_html_table(block[1], block[2]))
            elif kind == "bars":
                out.append(_html_bars(block[1]))
            elif kind == "figure" and block[1] in figures:
                data = base64.b64encode(figures[block[1]]).decode("ascii")
                out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{_e(block[2])}">'
                           f"<figcaption>{_e(block[2])}</figcaption></figure>")  # fmt: skip
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


def _is_num(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "" if not any(headers) else "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{_e(c)}</td>' if _is_num(str(c)) else f"<td>{_e(c)}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    return f"<table>{head}{body}</table>"


def _html_bars(items: Sequence[tuple[str, str, float]]) -> str:
    if not items:
        return "<p>(no findings)</p>"
    scale = max(abs(v) for _, _, v in items if math.isfinite(v)) if any(math.isfinite(v) for _, _, v in items) else 1.0
    scale = scale or 1.0
    rows = []
    for finding, obs, v in items:
        w = 0 if not math.isfinite(v) else int(round(160 * abs(v) / scale))
        cls = "pos" if v > 0 else "neg"
        rows.append(f'<tr><td>{_e(finding)}</td><td>{_e(obs)}</td><td class="num">{_e(f"{v:+.3f}")}</td>'
                    f'<td><span class="bar {cls}" style="width:{w}px"></span></td></tr>')  # fmt: skip
    return "<table><tr><th>finding</th><th>observed</th><th>LLR</th><th></th></tr>" + "".join(rows) + "</table>"


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|#"})


def _m(x: Any) -> str:
    """Markdown-safe text: HTML-escaped, Markdown punctuation backslash-escaped, one line."""
    text = html.escape(str(x), quote=False).translate(_MD_SPECIAL)
    return " ".join(text.splitlines())


def render_markdown(pm: PostMortem, figure_files: Mapping[str, str]) -> str:
    """The report as Markdown; figures are referenced by the file names given."""
    out = [
        f"# Post-mortem: incident {_m(pm.incident.id)}",
        "",
        f"Topology {_m(pm.topology.name)}; engine {_m(pm.diagnosis.engine)}.",
        "",
    ]
    for sec in _sections(pm):
        out += [f"## {_m(sec.title)}", ""]
        for block in sec.blocks:
            kind = block[0]
            if kind == "p":
                out += [_m(block[1]), ""]
            elif kind == "h3":
                out += [f"### {_m(block[1])}", ""]
            elif kind == "list":
                out += [f"- {_m(x)}" for x in block[1]] + [""]
            elif kind == "table":
                out += _md_table(block[1], block[2])
            elif kind == "bars":
                out += _md_table(("finding", "observed", "LLR"), [(f, o, f"{v:+.3f}") for f, o, v in block[1]])
            elif kind == "figure" and block[1] in figure_files:
                out += [f"![{_m(block[2])}]({figure_files[block[1]]})", ""]
    return "\n".join(out) + "\n"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return ["(none)", ""]
    headers = [h or " " for h in headers]
    lines = ["| " + " | ".join(_m(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_m(c) for c in row) + " |" for row in rows]
    return lines + [""]
