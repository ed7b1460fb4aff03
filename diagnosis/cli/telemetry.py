"""Telemetry verbs: ``detect`` and ``import alertmanager|nezha|rcaeval``."""

from __future__ import annotations

import argparse
from typing import TextIO

from diagnosis.cli._common import guarded_outputs, load_topology, log_outputs
from diagnosis.cli._common import time_offset as _offset

__all__ = ["register"]


def register(verbs) -> None:
    """Add this group's verbs to the ``diagnosis`` parser."""
    p = verbs.add_parser(
        "detect", help="metrics, traces and logs -> symptom evidence per incident window, as an incident log"
    )
    p.add_argument("--topology", "-t", required=True, metavar="T")
    p.add_argument(
        "--metrics",
        nargs="+",
        metavar="PATH",
        help="metric files or folders: long tables (timestamp, entity, metric, value), wide <entity>_<metric> "
        "CSVs, Nezha per-pod CSVs, or Prometheus query_range JSON responses",
    )
    p.add_argument(
        "--rcaeval",
        metavar="ROOT",
        help="instead of --metrics: the metrics of every RCAEval case under ROOT (each case's data.csv, "
        "simple_metrics.csv or metrics.csv), refused when two cases overlap in time",
    )
    p.add_argument(
        "--traces", nargs="+", metavar="PATH", help="span files or folders (OpenTelemetry-shaped CSV or OTLP JSON)"
    )
    p.add_argument(
        "--logs",
        nargs="+",
        metavar="PATH",
        help="log files or folders (Nezha log CSV, OTLP JSON logs, ECS JSON Lines; .gz or not)",
    )
    p.add_argument(
        "--reference",
        metavar="DIR",
        help="fault-free telemetry of the same system laid out like the data (metric/, trace/, log/), "
        "recorded at any time: the log detectors' reference, and the baseline of every metric or trace "
        "series it holds enough values of",
    )
    p.add_argument(
        "--null",
        default="auto",
        metavar="KIND|FILE",
        help="null distribution of the scores: auto (quiet windows of the data when there are enough, else each "
        "window's own baseline; default), self, empirical, cauchy, or a null model file written by --save-null",
    )
    p.add_argument(
        "--statistic",
        choices=["max", "majority", "combined"],
        default="max",
        help="a series' window score: the largest robust z of its window values (any spike; default), the robust z "
        "a majority of them reach (a sustained shift; misses faults shorter than half the window), or both "
        "(combined: each p-value under its own null, p = min(1, 2 min(p_max, p_majority))); a --null FILE must have "
        "been saved with the same",
    )
    p.add_argument(
        "--save-null",
        metavar="FILE",
        help="fit the null distributions on the quiet windows of these data and save them (JSON) for later runs",
    )
    p.add_argument(
        "--windows",
        required=True,
        metavar="WINDOWS",
        help="incident windows: CSV or JSON Lines (id, start, optional end and baseline, ground truth)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="INCIDENTS",
        help="incident log to write (.jsonl, .parquet, or NAME.csv with NAME.observations.csv and NAME.actions.csv)",
    )
    p.add_argument(
        "--entities",
        metavar="MAP.yaml",
        help="entity -> component patterns (default: strip the pod's two trailing -<hash> parts)",
    )
    p.add_argument(
        "--evidence",
        choices=("soft", "hard"),
        default="soft",
        help="likelihoods from the scores (default) or fired/passed",
    )
    p.add_argument(
        "--save-evidence",
        metavar="EVIDENCE.csv",
        help="also write every (window, symptom) p-value and its evidence: what 'diagnosis fit --evidence' fits on",
    )
    p.add_argument(
        "--lead", default="0s", metavar="D", help="start each incident window D earlier (clock offsets; default 0s)"
    )
    p.add_argument(
        "--metrics-offset", metavar="D", help="add D to every metric timestamp (clock offset between sources)"
    )
    p.add_argument("--traces-offset", metavar="D", help="add D to every span timestamp")
    p.set_defaults(func=_detect)
    p = verbs.add_parser("import", help="import incidents from other tools")
    sub = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    a = sub.add_parser(
        "alertmanager", help="Prometheus Alertmanager webhook payloads -> incidents, grouped by time window"
    )
    a.add_argument(
        "payloads",
        nargs="+",
        metavar="PAYLOADS",
        help="files of webhook payloads: one JSON payload, a JSON array, or JSON Lines",
    )
    a.add_argument(
        "--topology",
        "-t",
        required=True,
        metavar="T",
        help="topology whose 'alerts' rules map alert labels to symptoms",
    )
    a.add_argument(
        "--out",
        required=True,
        metavar="INCIDENTS",
        help="incident log to write (.jsonl, .parquet, or a CSV folder with --format csv)",
    )
    a.add_argument("--format", choices=("jsonl", "parquet", "csv"))
    a.add_argument(
        "--window",
        default="15min",
        metavar="GAP",
        help="alerts starting within GAP of the previous one join its incident (default 15min)",
    )
    nz = sub.add_parser("nezha", help="Nezha fault lists (fault_list.json) -> a windows file for `diagnosis detect`")
    nz.add_argument("fault_list", metavar="FAULT_LIST.json")
    nz.add_argument("--out", required=True, metavar="WINDOWS", help="windows file: .csv or .jsonl")
    nz.add_argument(
        "--duration", default="5min", metavar="D", help="incident window after each injection (default 5min)"
    )
    nz.add_argument("--baseline", default="10min", metavar="B", help="baseline window before it (default 10min)")
    rc = sub.add_parser(
        "rcaeval",
        help="RCAEval case folders (<service>_<fault>/<n>/inject_time.txt) -> a windows file for `diagnosis detect`",
    )
    rc.add_argument("root", metavar="ROOT", help="a folder holding RCAEval cases at any depth (RE2, RE2-SS, ...)")
    rc.add_argument("--out", required=True, metavar="WINDOWS", help="windows file: .csv or .jsonl")
    rc.add_argument(
        "--duration", default="5min", metavar="D", help="incident window after each inject time (default 5min)"
    )
    rc.add_argument("--baseline", default="10min", metavar="B", help="baseline window before it (default 10min)")
    a.set_defaults(func=_import_alertmanager)
    nz.set_defaults(func=_import_nezha)
    rc.set_defaults(func=_import_rcaeval)


def _detect(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    null_file = None if args.null in ("auto", "self", "empirical", "cauchy") else args.null
    inputs = [
        args.topology,
        args.metrics,
        args.rcaeval,
        args.traces,
        args.logs,
        args.reference,
        args.windows,
        args.entities,
        null_file,
    ]
    files, folders = log_outputs(args.out, None)  # a CSV log is three tables
    outputs = [*files, f"{args.out}.rejects.jsonl", args.save_null, args.save_evidence]
    # an output in a telemetry folder would be read (or reported as skipped) by the next run
    with guarded_outputs(outputs, inputs, folders=folders, lock=args.out, not_inside_inputs=True):
        _detect_run(args, out)


def _detect_run(args: argparse.Namespace, out: TextIO) -> None:
    from diagnosis.exceptions import TelemetryError
    from diagnosis.logs.formats import write_incidents, write_rejects
    from diagnosis.telemetry import (
        detect,
        load_entity_map,
        read_logs,
        read_metrics,
        read_reference,
        read_spans,
        read_windows,
    )

    topology = load_topology(args.topology)
    entities = load_entity_map(args.entities)
    windows, wrejects = read_windows(args.windows)
    if args.metrics and args.rcaeval:
        raise TelemetryError("give --metrics or --rcaeval, not both: --rcaeval ROOT reads the metrics of its cases")
    if args.rcaeval:
        from diagnosis.telemetry import read_rcaeval_metrics

        metrics = read_rcaeval_metrics(
            args.rcaeval, windows=windows, entity_map=entities, time_offset=_offset(args.metrics_offset)
        )
    elif args.metrics:
        metrics = read_metrics(args.metrics, entity_map=entities, time_offset=_offset(args.metrics_offset))
    else:
        metrics = None
    spans = (
        read_spans(args.traces, entity_map=entities, time_offset=_offset(args.traces_offset)) if args.traces else None
    )
    logs = read_logs(args.logs, entity_map=entities) if args.logs else None
    reference = read_reference(args.reference, entity_map=entities) if args.reference else None
    null = args.null
    if null not in ("auto", "self", "empirical", "cauchy"):
        from diagnosis.telemetry import read_null

        null = read_null(null)
    if args.save_null:
        from diagnosis.telemetry import fit_null

        fit_null(
            topology, metrics, windows, traces=spans, lead=args.lead, reference=reference, statistic=args.statistic
        ).save(args.save_null)
        print(f"wrote the null model fitted on the quiet windows of these data to {args.save_null}", file=out)
    frame, rejects, report = detect(
        topology,
        metrics,
        windows,
        traces=spans,
        logs=logs,
        reference=reference,
        null=null,
        evidence=args.evidence,
        lead=args.lead,
        statistic=args.statistic,
    )
    rejects = list(wrejects) + list(rejects)
    if len(frame) == 0:
        rej = write_rejects(rejects, f"{args.out}.rejects.jsonl")
        raise TelemetryError(
            f"every one of the {len(windows) + len(wrejects)} windows was set aside (listed in {rej}); "
            f"nothing written to {args.out}"
        )
    path = write_incidents(frame, args.out)
    rej = write_rejects(rejects, f"{args.out}.rejects.jsonl")
    print(f"wrote {len(frame)} incidents to {path}; {len(rejects)} windows set aside (listed in {rej})", file=out)
    if args.save_evidence:
        from diagnosis._files import atomic_write_text

        atomic_write_text(args.save_evidence, report.evidence.to_csv(index=False))
        print(f"wrote {len(report.evidence)} symptom p-values to {args.save_evidence}", file=out)
    if metrics is not None:
        for line in metrics.report.lines():
            print(f"  metrics: {line}", file=out)
    if spans is not None:
        for line in spans.report.lines():
            print(f"  traces: {line}", file=out)
    if logs is not None:
        for line in logs.report.lines():
            print(f"  logs: {line}", file=out)
    for line in report.lines():
        print(f"  {line}", file=out)


def _import_nezha(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    with guarded_outputs([args.out], [args.fault_list], lock=args.out):
        _import_nezha_run(args, out)


def _import_nezha_run(args: argparse.Namespace, out: TextIO) -> None:
    from diagnosis.telemetry import import_nezha, write_windows

    windows, info = import_nezha(args.fault_list, duration=args.duration, baseline=args.baseline)
    path = write_windows(windows, args.out)
    print(f"wrote {len(windows)} windows to {path}", file=out)
    for line in info.lines():
        print(f"  {line}", file=out)


def _import_alertmanager(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    files, folders = log_outputs(args.out, args.format)
    rej = f"{args.out}.rejects.jsonl"
    with guarded_outputs([*files, rej], [args.payloads, args.topology], folders=folders, lock=args.out):
        _import_alertmanager_run(args, out)


def _import_alertmanager_run(args: argparse.Namespace, out: TextIO) -> None:
    from diagnosis.logs.formats import write_incidents, write_rejects
    from diagnosis.telemetry.alertmanager import import_alertmanager

    topology = load_topology(args.topology)
    frame, rejects, summary = import_alertmanager(args.payloads, topology, window=args.window)
    path = write_incidents(frame, args.out, format=args.format)
    rej = write_rejects(rejects, f"{args.out}.rejects.jsonl")
    print(
        f"read {summary.payloads} payloads with {summary.alerts} alert notifications ({summary.duplicates} repeats merged); "
        f"wrote {summary.incidents} incidents to {path}; {len(rejects)} set aside (listed in {rej})",
        file=out,
    )
    # Why each unmapped alert was set aside: no rule matches, or a rule maps it to an unknown symptom.
    from collections import Counter

    reasons = Counter(r.reason for r in rejects if r.field == "labels")
    for reason, count in sorted(reasons.items()):
        print(f"  {count} alerts set aside: {reason}", file=out)


def _import_rcaeval(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    with guarded_outputs([args.out], [args.root], lock=args.out):
        _import_rcaeval_run(args, out)


def _import_rcaeval_run(args: argparse.Namespace, out: TextIO) -> None:
    from diagnosis.exceptions import TelemetryError
    from diagnosis.telemetry import import_rcaeval, write_windows

    windows, info = import_rcaeval(args.root, duration=args.duration, baseline=args.baseline)
    if len(windows) == 0:
        raise TelemetryError(
            "\n".join(
                [f"every one of the {info.cases} cases under {args.root} was set aside; nothing written to {args.out}"]
                + info.lines()[1:]
            )
        )
    path = write_windows(windows, args.out)
    print(f"wrote {len(windows)} windows to {path}", file=out)
    for line in info.lines():
        print(f"  {line}", file=out)
