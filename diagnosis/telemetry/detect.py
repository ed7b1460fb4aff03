"""From telemetry to incident records: :func:`detect`.

For every incident window, every series (an entity's metric, a call edge's
latency) mapped by a :class:`~diagnosis.telemetry.signals.SignalRule` is
scored against its baseline with the robust z-score
(:mod:`diagnosis.telemetry.detectors`); per window, symptom and rule the
largest score is kept and turned into a p-value by the rule's null
distribution (quiet windows of the same data); the rules feeding one
symptom are combined (the smallest p-value, Šidák-corrected for the number
of rules); the p-value becomes a soft observation (or ``fired`` /
``passed``). Every symptom the telemetry covers is observed in every
window, so a quiet signal is evidence too: it says the component looks
healthy.

Pods with no data: a component whose entities reported in the baseline but
not at all in the window gets its ``health_check`` symptom ``fired`` (the
pod stopped reporting); one that reported in both gets it ``passed``; one
with no data at all gets no observation. Components the topology does not
have, metrics no rule maps, and symptoms the topology lacks are counted in
the :class:`DetectReport`.

The output is an :class:`~diagnosis.logs.schema.IncidentFrame` with one
incident per window (``opened`` = start, ``resolved`` = end, the truth of the
window as root cause), ready for :func:`~diagnosis.logs.formats.write_incidents`,
``diagnosis diagnose --incident`` and ``diagnosis score``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from diagnosis.exceptions import DiagnosisError, TelemetryError, suggest
from diagnosis.logs.schema import (
    RAW_ACTION_COLUMNS,
    RAW_INCIDENT_COLUMNS,
    RAW_OBSERVATION_COLUMNS,
    IncidentFrame,
    Reject,
    frame_from_raw,
    validate_frame,
)
from diagnosis.model.topology import Topology
from diagnosis.telemetry._io import objects, to_timedelta
from diagnosis.telemetry.detectors import (
    SCORE_STATISTICS,
    CombinedNull,
    EvidenceModel,
    NullModel,
    _check_statistic,
    combined_p,
    score_windows,
    window_p,
)
from diagnosis.telemetry.entities import EDGE_SEPARATOR, to_topology
from diagnosis.telemetry.logs import LOG_RULES, LogReference, LogSet, log_evidence
from diagnosis.telemetry.metrics import MetricSamples
from diagnosis.telemetry.signals import (
    SignalRule,
    match_rules,
    rules_for,
    symptom_index,
)
from diagnosis.telemetry.traces import SpanSet, edge_samples, edge_stats
from diagnosis.telemetry.windows import WINDOW_COLUMNS, quiet_windows

__all__ = [
    "EVIDENCE_COLUMNS",
    "NULL_KINDS",
    "DetectReport",
    "Reference",
    "detect",
    "fit_null",
    "prepare_signals",
    "read_reference",
]

#: ``null`` argument of :func:`detect`.
NULL_KINDS = ("auto", "self", "empirical", "cauchy")
#: Columns of :attr:`DetectReport.evidence`: one row per window and observed symptom.
EVIDENCE_COLUMNS = (
    "window_id",
    "component",
    "symptom",
    "rules",
    "score",
    "p_value",
    "value",
    "p_fired",
    "p_passed",
    "time",
    "top_signal",
)


@dataclass(frozen=True)
class DetectReport:
    """What :func:`detect` used, found and set aside.

    Attributes
    ----------
    windows : int
        Windows read.
    incidents : int
        Incidents written (windows minus rejects).
    observations : int
        Observations written.
    signals : Mapping[str, int]
        Rule -> series scored over all windows.
    unused_metrics : Mapping[str, int]
        Metrics no rule maps -> samples (see :mod:`diagnosis.telemetry.signals` for why some are left out).
    unknown_components : tuple of str
        Components in the telemetry that the topology does not have.
    missing_symptoms : tuple of str
        ``component:watches`` a rule maps to but the component has no such detector.
    silent_components : tuple of str
        Topology components with no telemetry at all (nothing observed about them).
    empty_windows : tuple of str
        Windows with no sample inside them (check the clocks: ``time_offset``).
    no_data : Mapping[str, tuple]
        Window -> components whose pods reported in the baseline but not in the window.
    pooled : int
        Series scores whose baseline was pooled (too few values before the window).
    null : Mapping[str, str]
        Rule -> ``empirical`` (quiet windows) or ``cauchy`` (fallback).
    quiet_windows : int
        Quiet windows used for the null distributions.
    evidence : DataFrame
        :data:`EVIDENCE_COLUMNS`: per window and symptom, the rules, the score,
        its p-value and the observation made.
    scores : DataFrame
        Per window, symptom, rule and series: the robust z-score (for analysis);
        with ``statistic="combined"``, the maximum's, and the majority's as
        ``z_up_majority`` / ``z_down_majority``.
    referenced : int
        Series scores whose baseline was the reference's values (``reference`` of :func:`detect`).
    instances : Mapping[str, str]
        Telemetry names that are not components but replicas of one (a StatefulSet's
        ``carts-db-0``, an instance number's ``webservice1``: :func:`~diagnosis.telemetry.entities.instance_of`)
        -> the component they were counted on.
    """

    windows: int
    incidents: int
    observations: int
    signals: Mapping[str, int]
    unused_metrics: Mapping[str, int]
    unknown_components: tuple[str, ...]
    missing_symptoms: tuple[str, ...]
    silent_components: tuple[str, ...]
    empty_windows: tuple[str, ...]
    no_data: Mapping[str, tuple[str, ...]]
    pooled: int
    null: Mapping[str, str]
    quiet_windows: int
    evidence: pd.DataFrame = field(repr=False)
    scores: pd.DataFrame = field(repr=False)
    referenced: int = 0
    instances: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("signals", "unused_metrics"):
            object.__setattr__(self, name, MappingProxyType({str(k): int(v) for k, v in getattr(self, name).items()}))
        for name in ("no_data", "null", "instances"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def to_dict(self) -> dict[str, Any]:
        """The counts as a plain, JSON-ready mapping (without the tables)."""
        return {
            "windows": self.windows,
            "incidents": self.incidents,
            "observations": self.observations,
            "signals": dict(self.signals),
            "unused_metrics": dict(self.unused_metrics),
            "unknown_components": list(self.unknown_components),
            "missing_symptoms": list(self.missing_symptoms),
            "silent_components": list(self.silent_components),
            "empty_windows": list(self.empty_windows),
            "no_data": {k: list(v) for k, v in self.no_data.items()},
            "pooled": self.pooled,
            "null": dict(self.null),
            "quiet_windows": self.quiet_windows,
            "referenced": self.referenced,
            "instances": dict(self.instances),
        }

    def lines(self) -> list[str]:
        """A short human-readable summary."""
        out = [
            f"{self.windows} windows -> {self.incidents} incidents with {self.observations} observations",
            "  series scored per rule: "
            + (
                ", ".join(f"{k} {v}" for k, v in sorted(self.signals.items()))
                or "none (no metric or trace rule applied)"
            ),
            "  null distributions: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.null.items())) or "none")
            + f" ({self.quiet_windows} quiet windows)",
        ]
        if self.pooled:
            out.append(f"  {self.pooled} series scores used a pooled baseline (too few values before the window)")
        if self.referenced:
            out.append(f"  {self.referenced} series scores used the reference as their baseline")
        if self.unused_metrics:
            out.append("  metrics no rule maps (unused): " + ", ".join(sorted(self.unused_metrics)))
        if self.instances:
            out.append(
                "  replicas counted on their component: "
                + ", ".join(f"{k} -> {v}" for k, v in sorted(self.instances.items()))
            )
        if self.unknown_components:
            out.append("  telemetry components not in the topology: " + ", ".join(self.unknown_components))
        if self.missing_symptoms:
            out.append("  mapped signals with no detector in the topology: " + ", ".join(self.missing_symptoms))
        if self.silent_components:
            out.append("  topology components with no telemetry: " + ", ".join(self.silent_components))
        if self.empty_windows:
            out.append(
                f"  {len(self.empty_windows)} windows hold no sample at all (clock offset?): "
                + ", ".join(self.empty_windows[:5])
            )
        for w, comps in self.no_data.items():
            out.append(f"  {w}: no data in the window from {', '.join(comps)} (health_check fired)")
        return out


def _as_samples(metrics) -> pd.DataFrame:
    if metrics is None:
        return pd.DataFrame(
            {
                "time": pd.Series(dtype="datetime64[ns, UTC]"),
                "entity": pd.Series(dtype=object),
                "component": pd.Series(dtype=object),
                "metric": pd.Series(dtype=object),
                "value": pd.Series(dtype=np.float64),
            }
        )
    if isinstance(metrics, MetricSamples):
        return metrics.samples
    if isinstance(metrics, pd.DataFrame):
        missing = [c for c in ("time", "entity", "component", "metric", "value") if c not in metrics]
        if missing:
            raise DiagnosisError(
                f"metrics must be MetricSamples or a long DataFrame with time, entity, component, metric, value; missing {missing}"
            )
        return metrics
    raise DiagnosisError(f"metrics must be MetricSamples or a DataFrame. Got {type(metrics).__name__} instead.")


def prepare_signals(
    topology: Topology,
    metrics: MetricSamples | pd.DataFrame | None,
    *,
    traces: SpanSet | pd.DataFrame | None = None,
    rules: Sequence[SignalRule] | None = None,
    trace_freq: str | pd.Timedelta = "1min",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The samples the rules map to symptoms of ``topology``, with their rule, target and symptom.

    Returns
    -------
    (DataFrame, dict)
        The mapped samples (long columns plus ``rule``, ``target``, ``symptom``,
        ``direction``, ``rel_floor``) and bookkeeping for the report
        (unused metrics, unknown components, missing symptoms).
    """
    rules = rules_for(topology) if rules is None else tuple(rules)
    if not rules:
        raise DiagnosisError("at least one signal rule is needed")
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise DiagnosisError(f"signal rule names must be unique. Got {names} instead.")
    parts = [_as_samples(metrics)]
    if traces is not None:
        spans = traces.spans if isinstance(traces, SpanSet) else traces
        parts.append(edge_samples(edge_stats(spans, freq=trace_freq)))
    samples = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    # a replica whose name is not a component (carts-db-0, webservice1) is its component's
    comps, instances = to_topology(samples["component"], topology.component_names)
    if instances:
        samples = samples.assign(component=comps)
    pairs = samples[["metric", "entity"]].drop_duplicates()
    pairs = pairs.assign(rule=match_rules(pairs["metric"].tolist(), pairs["entity"].tolist(), rules).to_numpy())
    rule_of = samples.merge(pairs, on=["metric", "entity"], how="left")["rule"].to_numpy()
    unused = samples.loc[rule_of < 0, "metric"].value_counts().to_dict()
    s = samples[rule_of >= 0].reset_index(drop=True)
    idx = rule_of[rule_of >= 0]
    s["rule"] = objects([rules[i].name for i in idx])
    s["direction"] = np.array([rules[i].direction for i in idx], dtype=np.int64)
    s["rel_floor"] = np.array([rules[i].rel_floor for i in idx], dtype=np.float64)
    side = np.array([rules[i].side for i in idx], dtype=object)
    watches = np.array([rules[i].watches for i in idx], dtype=object)
    comp = s["component"].to_numpy(dtype=object)
    target = np.empty(len(s), dtype=object)
    for i, (c, sd) in enumerate(zip(comp, side)):
        if c is None or (isinstance(c, float) and math.isnan(c)):
            target[i] = None
        elif sd == "self":
            target[i] = c
        else:
            a, _, b = c.partition(EDGE_SEPARATOR)
            target[i] = a if sd == "caller" else b
    known = set(topology.component_names)
    sym_of = symptom_index(topology)
    in_topo = np.array([t in known for t in target], dtype=bool)
    unknown = sorted({t for t in target[~in_topo] if t is not None})
    symptom = np.array([sym_of.get((t, w)) for t, w in zip(target, watches)], dtype=object)
    missing = sorted({f"{t}:{w}" for t, w, sy, ok in zip(target, watches, symptom, in_topo) if ok and sy is None})
    keep = in_topo & (symptom != None)
    s["target"] = objects(target)
    s["symptom"] = objects(symptom)
    s = s[keep].reset_index(drop=True)
    info = {"unused": unused, "unknown": unknown, "missing": missing, "all_samples": samples, "instances": instances}
    return s, info


def _aggregate(scores: pd.DataFrame, signals: pd.DataFrame) -> pd.DataFrame:
    """Per window, symptom and rule: the largest score in the harmful direction."""
    if scores.empty:
        return pd.DataFrame(
            {
                c: []
                for c in (
                    "window_id",
                    "symptom",
                    "rule",
                    "target",
                    "score",
                    "n_tests",
                    "n_series",
                    "time",
                    "top_signal",
                )
            }
        )
    meta = signals[["entity", "metric", "rule", "target", "symptom", "direction"]].drop_duplicates(["entity", "metric"])
    sc = scores.merge(meta, on=["entity", "metric"], how="inner")
    up = sc["direction"].to_numpy() == 1
    sc["z"] = np.where(up, sc["z_up"], sc["z_down"])
    sc["t"] = np.where(up, sc["time_up"], sc["time_down"])
    sc["signal"] = sc["entity"] + " " + sc["metric"]
    g = sc.groupby(["window_id", "symptom", "rule"], sort=False)
    best = sc.loc[g["z"].idxmax()]
    agg = best[["window_id", "symptom", "rule", "target", "z", "t", "signal"]].rename(
        columns={"z": "score", "t": "time", "signal": "top_signal"}
    )
    counts = pd.DataFrame({"n_tests": g["n_window"].sum(), "n_series": g.size()}).reset_index()
    agg = agg.merge(counts, on=["window_id", "symptom", "rule"])
    return agg.reset_index(drop=True)


def detect(
    topology: Topology,
    metrics: MetricSamples | pd.DataFrame | None,
    windows: pd.DataFrame,
    *,
    traces: SpanSet | pd.DataFrame | None = None,
    rules: Sequence[SignalRule] | None = None,
    evidence: EvidenceModel | str = "soft",
    null: str | NullModel | CombinedNull = "auto",
    lead: str | pd.Timedelta = "0s",
    min_baseline: int = 4,
    pool: str | pd.Timedelta = "60min",
    presence: bool = True,
    exclude_incidents: bool = True,
    exclude: pd.DataFrame | None = None,
    trace_freq: str | pd.Timedelta = "1min",
    logs: LogSet | pd.DataFrame | None = None,
    reference: Reference | None = None,
    statistic: str = "max",
    source: str = "(detect)",
) -> tuple[IncidentFrame, list[Reject], DetectReport]:
    """One incident record per window, with the symptoms the telemetry shows.

    Parameters
    ----------
    topology : Topology
        Symptoms are its detectors; its name goes into every record.
    metrics : MetricSamples or DataFrame or None
        Long samples (:func:`~diagnosis.telemetry.metrics.read_metrics`).
    windows : DataFrame
        Incident windows (:func:`~diagnosis.telemetry.windows.read_windows`,
        :func:`~diagnosis.telemetry.nezha.import_nezha`); their truth, when
        known, becomes the root cause.
    traces : SpanSet or DataFrame, optional
        Spans (:func:`~diagnosis.telemetry.traces.read_spans`): per-edge latency
        and, with a status, error rate, bucketed by ``trace_freq``.
    rules : sequence of SignalRule
        Signal -> symptom mapping; default: the topology's ``signals:`` section merged with
        :data:`~diagnosis.telemetry.signals.DEFAULT_RULES` (:func:`~diagnosis.telemetry.signals.rules_for`).
    evidence : EvidenceModel or {"soft", "hard"}
        How p-values become observations. A mode name uses the topology's
        fitted ``likelihoods:`` curves (``diagnosis fit --evidence``) where it has them.
    null : {"auto", "self", "empirical", "cauchy"} or NullModel
        ``auto`` (default): per rule, ``empirical`` when the data hold
        enough quiet windows for it, else ``self`` (one incident with only
        its own telemetry). ``self``: each window's own null, per rule,
        pooled over the window's series. With ``statistic="majority"``: the
        statistic of every block of baseline values as long as the window,
        scored against the values before it and against the rest of the
        baseline (of the reference, for a series that has one); a symptom's
        score (the largest over its ``s`` series) gets ``1 - (1 - q)**s``,
        ``q`` its tail probability among them. With ``"max"``: the robust
        z-scores of every baseline value against the values before it
        (leave-one-out against a reference), and a symptom's score (the
        largest of ``n`` window values) gets ``1 - (1 - q)**n``. Nothing
        outside the window and its baseline is used, so a window detected
        alone gets the same evidence as in a batch.
        ``empirical``: fit each rule's null on quiet windows of these data
        (no labels used); ``cauchy``: the fallback for every rule; or a
        NullModel fitted elsewhere (:func:`fit_null`; rules it lacks use ``self``;
        a CombinedNull with ``statistic="combined"``).
    lead : duration, default ``"0s"``
        Slack before ``start`` counted in the window (labels that trail the
        first anomalous sample; one sampling interval is a sensible value).
    min_baseline : int, default 4
        Baseline values a series needs before its baseline is pooled.
    pool : duration, default ``"60min"``
        Reach of a pooled baseline.
    presence : bool, default True
        Observe ``health_check`` from whether a component's pods reported.
    exclude_incidents : bool, default True
        Keep every window's incident period out of every baseline (and out of
        the quiet windows' baselines and every null); series left with too
        few baseline values are pooled.
    exclude : DataFrame, optional
        More periods (``start``, ``end``) no baseline or null may use: known
        incidents or maintenance that are not among ``windows``.
    trace_freq : duration, default ``"1min"``
        Bucket width of the per-edge trace statistics.
    logs : LogSet or DataFrame, optional
        Log lines (:func:`~diagnosis.telemetry.logs.read_logs`): the
        ``log_errors`` and ``log_missing`` symptoms of each component
        (:func:`~diagnosis.telemetry.logs.log_evidence`), against the
        reference's logs when given, else the window's baseline.
    reference : Reference, optional
        Fault-free telemetry of the same system (:func:`read_reference`),
        recorded at any time: its logs and spans are the log detectors'
        reference; every metric or trace series with at least
        ``min_baseline`` reference values (per ``trace_freq`` bucket for
        spans) is scored against them in every window instead of the
        window's baseline, and its self null comes from them (the other
        series keep their baseline).
    statistic : {"max", "majority", "combined"}, default "max"
        A series' window score: its largest z-score (``max``: any spike,
        and a fault shorter than half the window), the z-score more than
        half of its window values reach (``majority``: a sustained shift;
        a one-sample spike does not count, a fault shorter than half the
        window is missed), with every null computed for the same statistic
        (:func:`~diagnosis.telemetry.detectors.score_windows`); or both
        (``combined``): per window and rule, the p-value of each under its
        own null (as for that statistic alone), combined by Bonferroni,
        ``min(1, 2 * min(p_max, p_majority))``
        (:func:`~diagnosis.telemetry.detectors.combined_p`); the evidence's
        ``score``, ``time`` and ``top_signal`` are then the ones of the
        statistic with the smaller p-value. A null passed as ``null`` must
        have been fitted with the same statistic (:func:`fit_null`).
    source : str
        Names the windows' origin in rejects.

    Returns
    -------
    (IncidentFrame, list of Reject, DetectReport)
        Windows whose truth the topology does not know (unknown component or
        fault mode) are rejected whole, as :func:`~diagnosis.logs.schema.validate_frame` does.
    """
    if isinstance(evidence, str):
        evidence = EvidenceModel(mode=evidence, curves=topology.likelihoods)
    if isinstance(null, str) and null not in NULL_KINDS:
        raise DiagnosisError(
            f"null must be one of {list(NULL_KINDS)} or a NullModel. Got {null!r} instead{suggest(null, NULL_KINDS)}"
        )
    missing = [c for c in WINDOW_COLUMNS if c not in windows.columns]
    if missing:
        raise DiagnosisError(
            f"windows need the columns {list(WINDOW_COLUMNS)}; missing {missing} (use read_windows or make_windows)"
        )
    lead_td = to_timedelta(lead, "lead")
    rules = rules_for(topology) if rules is None else tuple(rules)
    signals, info = prepare_signals(topology, metrics, traces=traces, rules=rules, trace_freq=trace_freq)
    ref_signals = _reference_signals(topology, reference, rules, trace_freq)
    parts = ([windows[["start", "end"]]] if exclude_incidents else []) + (
        [exclude[["start", "end"]]] if exclude is not None and len(exclude) else []
    )
    kw = {
        "lead": lead_td,
        "min_baseline": min_baseline,
        "pool": pool,
        "rel_floor": signals["rel_floor"].to_numpy(),
        "exclude": pd.concat(parts, ignore_index=True) if parts else None,
        "reference": ref_signals,
    }
    _check_statistic(statistic)
    if isinstance(null, (NullModel, CombinedNull)) and null.statistic != statistic:
        raise DiagnosisError(
            f"the null model was fitted with statistic={null.statistic!r}, detect uses {statistic!r}: refit it"
        )
    if statistic == "combined":  # each statistic with its own null, then Bonferroni over the two
        parts = [
            _rule_p(signals, windows, null.part(s) if isinstance(null, CombinedNull) else null, kw, s, rules)
            for s in SCORE_STATISTICS
        ]
        rp = _combined_rule_p(*parts)
    else:
        rp = _rule_p(signals, windows, null, kw, statistic, rules)
    agg, scores = rp.agg, rp.scores
    log_rows, log_instances = _log_rows(topology, windows, logs, traces, reference, lead_td, kw["exclude"])
    if len(log_rows):
        agg = pd.concat([agg, log_rows], ignore_index=True) if len(agg) else log_rows
    rates = None
    if evidence.curves and len(agg):
        from diagnosis.learning.likelihood import symptom_rates

        rates = symptom_rates(topology)
    ev = _combine(agg, evidence, {d.symptom: d.watches for d in topology.detectors}, rates)

    # Presence: a component that reported before the window but not in it.
    all_samples = info["all_samples"]
    health = (
        _presence(topology, all_samples, windows, lead_td)
        if presence
        else pd.DataFrame(columns=["window_id", "component", "symptom", "value"])
    )

    frame, rejects = _frame(topology, windows, ev, health, source)
    present = set(
        all_samples["component"].dropna().map(lambda c: c.split(EDGE_SEPARATOR)[-1] if isinstance(c, str) else c)
    )
    present |= set(
        all_samples["component"].dropna().map(lambda c: c.split(EDGE_SEPARATOR)[0] if isinstance(c, str) else c)
    )
    times = all_samples["time"]
    empty = []
    for w in windows.itertuples(index=False):
        lo, hi = w.start - lead_td, w.end
        if not ((times >= lo) & (times <= hi)).any():
            empty.append(w.id)
    no_data = {}
    if len(health):
        for wid, g in health[health["value"] == "fired"].groupby("window_id", sort=False):
            no_data[wid] = tuple(g["component"])
    report = DetectReport(
        windows=len(windows),
        incidents=len(frame),
        observations=len(frame.observations),
        signals=Counter(
            dict(
                scores.merge(
                    signals[["entity", "metric", "rule"]].drop_duplicates(["entity", "metric"]), on=["entity", "metric"]
                )["rule"].value_counts()
            )
        )
        if len(scores)
        else {},
        unused_metrics=info["unused"],
        unknown_components=tuple(info["unknown"]),
        missing_symptoms=tuple(info["missing"]),
        silent_components=tuple(c for c in topology.component_names if c not in present),
        empty_windows=tuple(empty),
        no_data=no_data,
        pooled=int(scores["pooled"].sum()) if len(scores) else 0,
        referenced=int(scores["referenced"].sum()) if len(scores) else 0,
        null=rp.null_kinds,
        quiet_windows=rp.quiet_windows,
        evidence=ev,
        scores=scores,
        instances={**info["instances"], **log_instances},
    )
    return frame, rejects, report


@dataclass(frozen=True)
class _RuleP:
    """The metric and trace rules' p-values of one statistic (a part of :func:`detect`).

    Attributes
    ----------
    agg : DataFrame
        :func:`_aggregate`'s rows with ``p_rule``, the rule's p-value.
    scores : DataFrame
        :func:`~diagnosis.telemetry.detectors.score_windows` of the windows.
    null_kinds : Mapping[str, str]
        Rule -> the null it used (:attr:`DetectReport.null`).
    quiet_windows : int
        Quiet windows scored for an empirical null.
    """

    agg: pd.DataFrame
    scores: pd.DataFrame
    null_kinds: Mapping[str, str]
    quiet_windows: int


def _rule_p(signals, windows, null, kw, statistic, rules) -> _RuleP:
    """Score the windows with ``statistic`` (``max`` or ``majority``) and give each rule's p-value under ``null``.

    ``null`` is a kind of :data:`NULL_KINDS` or a NullModel of ``statistic``; ``kw`` are the
    keywords of :func:`~diagnosis.telemetry.detectors.score_windows` but the statistic.
    """
    kw = {**kw, "statistic": statistic}
    self_null: list[pd.DataFrame] | None = [] if null in ("self", "auto") or isinstance(null, NullModel) else None
    scores = score_windows(signals, windows, null_values=self_null, **kw)
    agg = _aggregate(scores, signals)

    quiet = pd.DataFrame()
    null_kinds: dict[str, str] = {}
    if isinstance(null, NullModel):
        null_model = null
    elif null == "self" or (null == "auto" and signals.empty):
        null_model = None
        if len(agg):
            agg["p_rule"], null_kinds = _self_p(agg, self_null, signals, statistic)
    elif null == "cauchy" or signals.empty:
        null_model = NullModel({}, statistic=statistic)
    else:
        span = (signals["time"].min(), signals["time"].max())
        quiet = quiet_windows(windows, span=span, guard=kw["lead"])
        q_agg = _aggregate(score_windows(signals, quiet, **kw), signals)
        null_model = NullModel({r: g["score"].to_numpy() for r, g in q_agg.groupby("rule")}, statistic=statistic)
    if len(agg) and null_model is not None:
        agg["p_rule"] = np.nan
        fallback = self_null is not None
        p_self, self_kinds = _self_p(agg, self_null, signals, statistic) if fallback else (None, {})
        for r, g in agg.groupby("rule"):
            if fallback and null_model.kind(r) != "empirical":
                agg.loc[g.index, "p_rule"] = p_self[g.index.to_numpy()]
                null_kinds[r] = self_kinds.get(r, "self")
                continue
            agg.loc[g.index, "p_rule"] = null_model.p_value(
                r, g["score"].to_numpy(), n_tests=g["n_tests"].to_numpy(), n_series=g["n_series"].to_numpy()
            )
            null_kinds[r] = null_model.kind(r)
    if null_model is not None and self_null is None:
        null_kinds = {r.name: null_model.kind(r.name) for r in rules if (signals["rule"] == r.name).any()}
    return _RuleP(agg, scores, null_kinds, len(quiet))


def _combined_rule_p(p_max: _RuleP, p_majority: _RuleP) -> _RuleP:
    """``statistic="combined"``: per window and rule, Bonferroni over the ``max`` and the ``majority`` p-values.

    A row's score, time and top signal are the ones of the statistic with the smaller
    p-value (the maximum's on a tie); ``scores`` are the maximum's, with the majority's
    ``z_up`` / ``z_down`` as ``z_up_majority`` / ``z_down_majority``.
    """
    key = ["window_id", "symptom", "rule"]
    a, b = p_max.agg, p_majority.agg
    if a.empty or "p_rule" not in a:
        agg = a
    else:
        both = a.merge(b, on=key, how="outer", suffixes=("", "_majority"))
        pa = both["p_rule"].to_numpy(dtype=np.float64)
        pb = both["p_rule_majority"].to_numpy(dtype=np.float64)
        take_b = np.isnan(pa) | (pb < pa)
        for c in ("target", "score", "time", "top_signal", "n_tests", "n_series"):
            both[c] = both[c].where(~take_b, both[f"{c}_majority"])
        both["p_max"], both["p_majority"] = pa, pb
        both["p_rule"] = combined_p(pa, pb)
        agg = both[[*a.columns, "p_max", "p_majority"]].reset_index(drop=True)
    sc = p_max.scores
    if len(sc):
        maj = p_majority.scores[["window_id", "entity", "metric", "z_up", "z_down"]]
        sc = sc.merge(maj, on=["window_id", "entity", "metric"], how="left", suffixes=("", "_majority"))
    kinds = {}
    for r in sorted(set(p_max.null_kinds) | set(p_majority.null_kinds)):
        ka, kb = p_max.null_kinds.get(r, "none"), p_majority.null_kinds.get(r, "none")
        kinds[r] = ka if ka == kb else f"max {ka}, majority {kb}"
    return _RuleP(agg, sc, kinds, max(p_max.quiet_windows, p_majority.quiet_windows))


@dataclass(frozen=True)
class Reference:
    """Fault-free telemetry of the same system: what "normal" looks like.

    Attributes
    ----------
    metrics : MetricSamples or None
    traces : SpanSet or None
    logs : LogSet or None
    """

    metrics: MetricSamples | None = None
    traces: SpanSet | None = None
    logs: LogSet | None = None


def read_reference(folder, *, entity_map=None) -> Reference:
    """Read a reference folder laid out like the data: ``metric/``, ``trace/``, ``log/`` (any of them).

    Raises
    ------
    TelemetryError
        When the folder does not exist or holds none of the three.
    """
    from pathlib import Path

    from diagnosis.telemetry.logs import read_logs
    from diagnosis.telemetry.metrics import read_metrics
    from diagnosis.telemetry.traces import read_spans

    root = Path(folder)
    if not root.is_dir():
        raise TelemetryError(f"reference {root}: no such folder (expected metric/, trace/ or log/ inside)")
    parts = {n: root / n for n in ("metric", "trace", "log") if (root / n).is_dir()}
    if not parts:
        raise TelemetryError(f"reference {root}: holds none of metric/, trace/, log/")
    return Reference(
        metrics=read_metrics(parts["metric"], entity_map=entity_map) if "metric" in parts else None,
        traces=read_spans(parts["trace"], entity_map=entity_map) if "trace" in parts else None,
        logs=read_logs(parts["log"], entity_map=entity_map) if "log" in parts else None,
    )


def _reference_signals(topology, reference, rules, trace_freq) -> pd.DataFrame | None:
    """The reference's metric and trace samples the rules map (None without any)."""
    if reference is None or (reference.metrics is None and reference.traces is None):
        return None
    sig, _ = prepare_signals(topology, reference.metrics, traces=reference.traces, rules=rules, trace_freq=trace_freq)
    return sig[sig["value"].notna()]


def _log_rows(topology, windows, logs, traces, reference, lead_td, exclude) -> tuple[pd.DataFrame, dict]:
    """The log detectors' aggregated rows (same columns as :func:`_aggregate` plus ``p_rule``), and the replicas."""
    cols = ["window_id", "symptom", "rule", "target", "score", "time", "top_signal", "n_tests", "p_rule"]
    if logs is None:
        return pd.DataFrame({c: [] for c in cols}), {}
    instances: dict = {}

    def own(df):  # replicas (carts-db-0, webservice1) on their component, in lines and spans alike
        if df is None or not len(df):
            return df
        comps, swap = to_topology(df["component"], topology.component_names)
        instances.update(swap)
        return df.assign(component=comps) if swap else df

    lines = own(logs.lines if isinstance(logs, LogSet) else logs)
    spans = own(None if traces is None else (traces.spans if isinstance(traces, SpanSet) else traces))
    fixed = None  # one fault-free reference for every window: prepared once
    if reference is not None and reference.logs is not None:
        ref_spans = own(reference.traces.spans) if reference.traces is not None else None
        fixed = LogReference.of(own(reference.logs.lines), ref_spans)
    sym_of = symptom_index(topology)
    lt = lines["time"]
    st = spans["start"] if spans is not None else None
    usable = np.ones(len(lines), dtype=bool)
    if exclude is not None:
        for e in exclude.itertuples(index=False):
            usable &= ~((lt >= e.start - lead_td) & (lt <= e.end)).to_numpy()
    out = []
    for w in windows.itertuples(index=False):
        lo, hi = w.start - lead_td, w.end
        win = lines[((lt >= lo) & (lt <= hi)).to_numpy()]
        wsp = spans[((st >= lo) & (st <= hi)).to_numpy()] if spans is not None else None
        if fixed is not None:
            rl, rs = fixed, None
        else:
            b = ((lt >= w.baseline_start) & (lt < min(w.baseline_end, lo))).to_numpy() & usable
            rl = lines[b]
            rs = (
                spans[((st >= w.baseline_start) & (st < min(w.baseline_end, lo))).to_numpy()]
                if spans is not None
                else None
            )
        ev = log_evidence(win, wsp, rl, rs)
        for r in ev.itertuples(index=False):
            sym = sym_of.get((r.component, LOG_RULES[r.rule]))
            if sym is None:
                continue
            out.append((w.id, sym, r.rule, r.component, r.score, w.start, r.top_signal, r.n_tests, r.p_rule))
    return pd.DataFrame(out, columns=cols), instances


def fit_null(
    topology: Topology,
    metrics: MetricSamples | pd.DataFrame | None,
    windows: pd.DataFrame,
    *,
    traces: SpanSet | pd.DataFrame | None = None,
    rules: Sequence[SignalRule] | None = None,
    lead: str | pd.Timedelta = "0s",
    min_baseline: int = 4,
    pool: str | pd.Timedelta = "60min",
    trace_freq: str | pd.Timedelta = "1min",
    exclude: pd.DataFrame | None = None,
    reference: Reference | None = None,
    statistic: str = "max",
) -> NullModel | CombinedNull:
    """The null distributions of history: per rule, the scores of quiet windows of these data.

    Quiet windows are laid where no window of ``windows`` (nor ``exclude``)
    was, shaped like them; only the times are used. Save the result with
    :meth:`NullModel.save` and pass it to :func:`detect` as ``null`` to
    detect one incident at a time against last month's quiet behaviour.
    With ``reference``, the quiet windows are scored against it as
    :func:`detect` scores incidents (pass the same reference to both), and
    with ``statistic`` (pass the same to both): ``combined`` gives a
    :class:`~diagnosis.telemetry.detectors.CombinedNull`, one model fitted
    with each statistic it combines.
    """
    if _check_statistic(statistic) == "combined":
        args = (topology, metrics, windows)
        kw = {"traces": traces, "rules": rules, "lead": lead, "min_baseline": min_baseline, "pool": pool}
        kw |= {"trace_freq": trace_freq, "exclude": exclude, "reference": reference}
        return CombinedNull(*(fit_null(*args, **kw, statistic=s) for s in SCORE_STATISTICS))
    lead_td = to_timedelta(lead, "lead")
    rules = rules_for(topology) if rules is None else tuple(rules)
    signals, _ = prepare_signals(topology, metrics, traces=traces, rules=rules, trace_freq=trace_freq)
    ref_signals = _reference_signals(topology, reference, rules, trace_freq)
    if signals.empty:
        return NullModel({}, statistic=statistic)
    known = pd.concat(
        [windows[["start", "end"]]] + ([exclude[["start", "end"]]] if exclude is not None and len(exclude) else []),
        ignore_index=True,
    )
    span = (signals["time"].min(), signals["time"].max())
    quiet = quiet_windows(windows, span=span, guard=lead_td)
    if exclude is not None and len(exclude):
        bad = np.zeros(len(quiet), dtype=bool)
        for e in exclude.itertuples(index=False):
            bad |= ((quiet["baseline_start"] < e.end) & (quiet["end"] > e.start)).to_numpy()
        quiet = quiet[~bad].reset_index(drop=True)
    kw = {
        "lead": lead_td,
        "min_baseline": min_baseline,
        "pool": pool,
        "rel_floor": signals["rel_floor"].to_numpy(),
        "exclude": known,
        "reference": ref_signals,
        "statistic": statistic,
    }
    q_agg = _aggregate(score_windows(signals, quiet, **kw), signals)
    return NullModel({r: g["score"].to_numpy() for r, g in q_agg.groupby("rule")}, statistic=statistic)


def _self_p(
    agg: pd.DataFrame, null_values: list[pd.DataFrame], signals: pd.DataFrame, statistic: str = "max"
) -> tuple[np.ndarray, dict]:
    """p-values of the aggregated scores under each window's own null (see ``null="self"`` of :func:`detect`)."""
    p = np.full(len(agg), np.nan)
    kinds: Counter = Counter()
    nv = [d for d in null_values if len(d)]
    if nv:
        meta = signals[["entity", "metric", "rule", "direction"]].drop_duplicates(["entity", "metric"])
        nz = pd.concat(nv, ignore_index=True).merge(meta, on=["entity", "metric"], how="inner")
        nz["z"] = np.where(nz["direction"].to_numpy() == 1, nz["z"].to_numpy(), nz["z_down"].to_numpy())
        groups = {k: g["z"].to_numpy() for k, g in nz.groupby(["window_id", "rule"], sort=False)}
        pooled = {k: g["z"].to_numpy() for k, g in nz.groupby("window_id", sort=False)}
    else:
        groups, pooled = {}, {}
    pos = {k: np.asarray(v) for k, v in agg.groupby(["window_id", "rule"], sort=False).indices.items()}
    for (wid, rule), ix in pos.items():
        model = NullModel({rule: groups.get((wid, rule), np.zeros(0))}, tail_index=None, statistic=statistic)
        if model.kind(rule) != "empirical":  # too few values of this rule: every rule's values of the window
            model = NullModel({rule: pooled.get(wid, np.zeros(0))}, tail_index=None, statistic=statistic)
        kinds[(rule, model.kind(rule))] += 1
        z = agg["score"].to_numpy(dtype=np.float64)[ix]
        n = np.maximum(agg["n_tests"].to_numpy(dtype=np.float64)[ix], 1.0)
        ns = np.maximum(agg["n_series"].to_numpy(dtype=np.float64)[ix], 1.0)
        if model.kind(rule) != "empirical":
            p[ix] = model.p_value(rule, z, n_tests=n, n_series=ns)
        elif statistic == "max":  # the largest of n values
            p[ix] = window_p(model.p_value(rule, z), n)
        else:  # the null holds block statistics: the largest over the series
            p[ix] = window_p(model.p_value(rule, z), 1, n_series=ns)
    out = {}
    for (rule, kind), _ in sorted(kinds.items()):
        out[rule] = "self" if kind == "empirical" and rule not in out else out.get(rule, "self (cauchy fallback)")
    for (rule, kind), c in kinds.items():
        if kind == "cauchy":
            out[rule] = f"self ({c} windows fell back to cauchy)"
    return p, out


def _combine(
    agg: pd.DataFrame,
    evidence: EvidenceModel,
    watches: Mapping[str, str] | None = None,
    rates: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Per window and symptom: Šidák-combined p-value of its rules, and the observation.

    ``watches`` (symptom -> detector kind) selects the evidence model's fitted curve per symptom;
    ``rates`` (symptom -> P(fired | component faulty), P(fired | not)) turns it into virtual evidence.
    """
    if agg.empty:
        return pd.DataFrame({c: [] for c in EVIDENCE_COLUMNS})
    g = agg.groupby(["window_id", "symptom"], sort=False)
    best = agg.loc[g["p_rule"].idxmin()].set_index(["window_id", "symptom"])
    k = g.size()
    p_min = g["p_rule"].min()
    p = -np.expm1(k.to_numpy() * np.log1p(-np.clip(p_min.to_numpy(), 0.0, 1.0 - 1e-16)))
    rules = g["rule"].agg(lambda x: "+".join(sorted(x)))
    out = pd.DataFrame(
        {
            "window_id": objects([i[0] for i in k.index]),
            "component": objects(best.loc[k.index, "target"].to_numpy()),
            "symptom": objects([i[1] for i in k.index]),
            "rules": objects(rules.loc[k.index].to_numpy()),
            "score": best.loc[k.index, "score"].to_numpy(dtype=np.float64),
            "p_value": p,
            "time": pd.to_datetime(best.loc[k.index, "time"].to_numpy(), utc=True),
            "top_signal": objects(best.loc[k.index, "top_signal"].to_numpy()),
        }
    )
    if evidence.mode == "soft":
        kinds = None if watches is None else [watches.get(s) for s in out["symptom"]]
        sf = None if rates is None else np.array([rates.get(s, (np.nan, np.nan)) for s in out["symptom"]])
        pf, pp = evidence.likelihoods(p, kinds, sf)
        out["value"] = objects(["soft"] * len(out))
        out["p_fired"], out["p_passed"] = pf, pp
    else:
        out["value"] = objects(evidence.hard(p))
        out["p_fired"], out["p_passed"] = np.nan, np.nan
    return out[list(EVIDENCE_COLUMNS)]


def _presence(topology: Topology, samples: pd.DataFrame, windows: pd.DataFrame, lead: pd.Timedelta) -> pd.DataFrame:
    """health_check fired (no data in the window after data in the baseline) or passed (data in both)."""
    health = {d.component: d.symptom for d in topology.detectors if d.watches == "health_check"}
    if samples.empty:
        return pd.DataFrame(columns=["window_id", "component", "symptom", "value"])
    own = samples[
        ~samples["entity"].str.contains(EDGE_SEPARATOR, regex=False)
        & samples["component"].isin(list(health))
        & samples["value"].notna()
    ]
    if own.empty:
        return pd.DataFrame(columns=["window_id", "component", "symptom", "value"])
    t = own["time"]
    rows = []
    for w in windows.itertuples(index=False):
        lo = w.start - lead
        in_win = set(own.loc[(t >= lo) & (t <= w.end), "component"])
        in_base = set(own.loc[(t >= w.baseline_start) & (t < min(w.baseline_end, lo)), "component"])
        for c in sorted(in_base | in_win):
            rows.append((w.id, c, health[c], "passed" if c in in_win else "fired"))
    return pd.DataFrame(rows, columns=["window_id", "component", "symptom", "value"])


def _frame(
    topology: Topology, windows: pd.DataFrame, ev: pd.DataFrame, health: pd.DataFrame, source: str
) -> tuple[IncidentFrame, list[Reject]]:
    inc: dict[str, list] = {c: [] for c in RAW_INCIDENT_COLUMNS}
    obs: dict[str, list] = {c: [] for c in RAW_OBSERVATION_COLUMNS}
    by_w = {k: g for k, g in ev.groupby("window_id", sort=False)} if len(ev) else {}
    h_by_w = {k: g for k, g in health.groupby("window_id", sort=False)} if len(health) else {}
    for i, w in enumerate(windows.itertuples(index=False)):
        comp, mode = w.component, w.fault_mode
        row = {
            "id": w.id,
            "opened": w.start,
            "resolved": w.end,
            "topology": topology.name,
            "cause_component": comp,
            "cause_fault_mode": mode,
            "faults": f"{comp}:{mode}" if comp is not None and mode is not None else None,
            "_loc": f"window {w.id}",
        }
        for c in RAW_INCIDENT_COLUMNS:
            inc[c].append(row[c])
        g = by_w.get(w.id)
        if g is not None:
            for r in g.itertuples(index=False):
                for c, v in (
                    ("_i", i),
                    ("symptom", r.symptom),
                    ("value", r.value),
                    ("p_fired", r.p_fired),
                    ("p_passed", r.p_passed),
                    ("time", r.time),
                ):
                    obs[c].append(v)
        h = h_by_w.get(w.id)
        if h is not None:
            for r in h.itertuples(index=False):
                for c, v in (
                    ("_i", i),
                    ("symptom", r.symptom),
                    ("value", r.value),
                    ("p_fired", math.nan),
                    ("p_passed", math.nan),
                    ("time", None),
                ):
                    obs[c].append(v)
    raw_inc = pd.DataFrame(
        {
            c: objects(v) if c not in ("opened", "resolved") else pd.Series(v, dtype="datetime64[ns, UTC]")
            for c, v in inc.items()
        }
    )
    raw_obs = pd.DataFrame({c: (objects(v) if c in ("symptom", "value") else v) for c, v in obs.items()})
    if len(raw_obs) == 0:
        raw_obs = pd.DataFrame({c: pd.Series(dtype=object) for c in RAW_OBSERVATION_COLUMNS}).astype({"_i": "int64"})
    frame, rejects = frame_from_raw(
        raw_inc,
        raw_obs,
        pd.DataFrame({c: pd.Series(dtype=object) for c in RAW_ACTION_COLUMNS}).astype({"_i": "int64"}),
        source=source,
    )
    frame, more = validate_frame(frame, topology, source=source)
    return frame, rejects + more
