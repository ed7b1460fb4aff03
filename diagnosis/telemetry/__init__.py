"""Telemetry -> symptoms: metric and trace adapters, detectors, and the call graph seen in traces.

The pipeline (``docs/telemetry.md``)::

    windows = read_windows("windows.csv")                  # or import_nezha("fault_list.json"), import_rcaeval("RE2-SS/")
    metrics = read_metrics("metric/")                       # or read_rcaeval_metrics("RE2-SS/", windows=windows)
    spans = read_spans("trace/")                            # optional: OpenTelemetry-shaped spans
    logs = read_logs("log/")                                # optional: Nezha CSV, OTLP JSON, ECS JSON Lines
    ref = read_reference("fault-free/")                     # optional: fault-free metric/, trace/, log/
    frame, rejects, report = detect(topology, metrics, windows, traces=spans, logs=logs, reference=ref)
    write_incidents(frame, "incidents.jsonl")               # ready for diagnose and score

Modules: :mod:`~diagnosis.telemetry.entities` (entity -> component),
:mod:`~diagnosis.telemetry.metrics`, :mod:`~diagnosis.telemetry.traces`,
:mod:`~diagnosis.telemetry.windows`, :mod:`~diagnosis.telemetry.nezha`,
:mod:`~diagnosis.telemetry.rcaeval` (adapters), :mod:`~diagnosis.telemetry.signals` (signal -> symptom mapping),
:mod:`~diagnosis.telemetry.detectors` (the statistic, its null, the evidence),
:mod:`~diagnosis.telemetry.detect` (the pipeline),
:mod:`~diagnosis.telemetry.callgraph` (topology from traces),
:mod:`~diagnosis.telemetry.quality` (what the readers set aside).
"""

from diagnosis.telemetry.callgraph import CallGraphDiff, derive_topology, write_topology
from diagnosis.telemetry.detect import DetectReport, Reference, detect, fit_null, read_reference
from diagnosis.telemetry.detectors import (
    CombinedNull,
    EvidenceModel,
    NullModel,
    rank_nsigma,
    read_null,
    robust_z,
    score_windows,
)
from diagnosis.telemetry.entities import EntityMap, EntityRule, load_entity_map
from diagnosis.telemetry.logs import LogSet, log_evidence, read_logs
from diagnosis.telemetry.metrics import MetricSamples, long_samples, read_metrics
from diagnosis.telemetry.nezha import NEZHA_FAULT_MODES, NezhaImport, import_nezha
from diagnosis.telemetry.quality import ReadReport
from diagnosis.telemetry.rcaeval import RCAEVAL_FAULT_MODES, RcaevalImport, import_rcaeval, read_rcaeval_metrics
from diagnosis.telemetry.signals import DEFAULT_RULES, SignalRule, rules_for
from diagnosis.telemetry.traces import SpanSet, edge_stats, read_spans, spans_from_frame
from diagnosis.telemetry.windows import (
    make_windows,
    quiet_windows,
    read_windows,
    write_windows,
)

__all__ = [
    "DEFAULT_RULES",
    "NEZHA_FAULT_MODES",
    "RCAEVAL_FAULT_MODES",
    "CallGraphDiff",
    "CombinedNull",
    "DetectReport",
    "EntityMap",
    "EntityRule",
    "EvidenceModel",
    "LogSet",
    "MetricSamples",
    "NezhaImport",
    "NullModel",
    "RcaevalImport",
    "ReadReport",
    "Reference",
    "SignalRule",
    "SpanSet",
    "derive_topology",
    "detect",
    "edge_stats",
    "fit_null",
    "import_nezha",
    "import_rcaeval",
    "load_entity_map",
    "log_evidence",
    "long_samples",
    "make_windows",
    "quiet_windows",
    "rank_nsigma",
    "read_logs",
    "read_metrics",
    "read_null",
    "read_rcaeval_metrics",
    "read_reference",
    "read_spans",
    "read_windows",
    "robust_z",
    "rules_for",
    "score_windows",
    "spans_from_frame",
    "write_topology",
    "write_windows",
]
