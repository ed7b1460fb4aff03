"""Verbs on incident logs: ``simulate``, ``score``, ``convert``."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from diagnosis.cli._common import guarded_outputs, load_topology, log_outputs
from diagnosis.cli._common import table as _table
from diagnosis.exceptions import ParameterError
from diagnosis.inference import ENGINES

__all__ = ["register"]


def register(verbs) -> None:
    """Add this group's verbs to the ``diagnosis`` parser."""
    p = verbs.add_parser("simulate", help="sample incidents with ground truth from a topology's model")
    p.add_argument("--topology", "-t", required=True, metavar="T")
    p.add_argument("-n", type=int, required=True, metavar="N", help="number of incidents")
    p.add_argument(
        "--seed", type=int, default=0, metavar="S", help="random seed (default 0); the same seed gives the same file"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="output log: .jsonl, .parquet, or a folder for CSV (with --format csv)",
    )
    p.add_argument("--format", choices=("jsonl", "parquet", "csv"), help="output format (default: from the suffix)")
    p.add_argument(
        "--max-actions", type=int, default=3, metavar="K", help="recovery attempts per incident at most (default 3)"
    )
    p.set_defaults(func=_simulate)
    p = verbs.add_parser("score", help="diagnose every incident of a log; accuracy and calibration")
    p.add_argument("--topology", "-t", required=True, metavar="T")
    p.add_argument(
        "incidents", metavar="INCIDENTS", help="incident log: .jsonl, .parquet (file or folder), or a CSV folder"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="SCORED",
        help="per-incident results: .parquet, .jsonl or .csv; SCORED.summary.json and SCORED.rejects.jsonl go beside it",
    )
    p.add_argument("--chunk-size", type=int, default=10_000, metavar="N", help="incidents per chunk (default 10000)")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="locations kept per incident (default 5)")
    p.add_argument(
        "--assume-fault",
        action="store_true",
        help="condition on 'some component is faulty' (incidents opened from known faults, e.g. a fault list)",
    )
    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0], help="inference engine (default: %(default)s)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="score on a Dask distributed cluster (Parquet logs)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="how to print the summary")
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard the work of an earlier, unfinished run with other arguments (SCORED.parts) and start over",
    )
    p.add_argument(
        "--group-by",
        choices=("fault_type", "component"),
        help="also print component-level AC@1/3/5, MRR and top-1 ECE per fault type or per true component",
    )
    p.add_argument(
        "--aliases",
        metavar="FILE.yaml",
        help="component alias map (carts-db: carts): score per unit, summing the posterior of aliased components",
    )
    p.add_argument(
        "--windows",
        metavar="WINDOWS",
        help="incident windows (CSV or JSON Lines) whose fault_type column labels --group-by fault_type "
        "(default: the true fault mode)",
    )
    p.set_defaults(func=_score)
    p = verbs.add_parser("convert", help="convert an incident log between JSON Lines, Parquet and CSV")
    p.add_argument("incidents", metavar="INCIDENTS")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--format", choices=("jsonl", "parquet", "csv"), help="output format (default: from the suffix)")
    p.add_argument("--rejects", metavar="FILE", help="where to list records set aside (default: OUT.rejects.jsonl)")
    p.set_defaults(func=_convert)


def _simulate(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    if args.n < 0:
        raise ParameterError(f"-n must be >= 0. Got {args.n!r} instead.")
    files, folders = log_outputs(args.out, args.format)
    with guarded_outputs(files, [args.topology], folders=folders, lock=args.out):
        _simulate_run(args, out)


def _simulate_run(args: argparse.Namespace, out: TextIO) -> None:
    from diagnosis.logs.formats import write_incidents
    from diagnosis.logs.simulate import iter_simulate

    topology = load_topology(args.topology)
    counts = {"incidents": 0, "cause": 0, "observations": 0, "actions": 0}

    def counted(frames):
        for f in frames:
            counts["incidents"] += len(f)
            counts["cause"] += int(f.incidents["cause_component"].notna().sum())
            counts["observations"] += len(f.observations)
            counts["actions"] += len(f.actions)
            yield f

    path = write_incidents(
        counted(iter_simulate(topology, args.n, rng=args.seed, max_actions=args.max_actions)),
        args.out,
        format=args.format,
    )
    print(
        f"wrote {counts['incidents']} incidents to {path} ({counts['cause']} with a root cause, "
        f"{counts['incidents'] - counts['cause']} opened by false alarms alone; "
        f"{counts['observations']} observations, {counts['actions']} recovery attempts)",
        file=out,
    )


def _score(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    from diagnosis._files import check_outputs
    from diagnosis.logs.scoring import score_log

    if args.top_k < 1:
        raise ParameterError(f"--top-k must be an int >= 1. Got {args.top_k!r} instead.")
    if args.chunk_size < 1:
        raise ParameterError(f"--chunk-size must be an int >= 1. Got {args.chunk_size!r} instead.")
    # score_log checks its outputs against the log and takes the output's lock; the topology file is ours to guard.
    side = [f"{args.out}.rejects.jsonl", f"{args.out}.summary.json"]
    check_outputs([args.out, *side], [args.topology, args.aliases, args.windows])
    topology = load_topology(args.topology)
    grouping = _grouping_inputs(args, topology.component_names)
    summary = score_log(
        topology,
        args.incidents,
        args.out,
        chunk_size=args.chunk_size,
        top_k=args.top_k,
        engine=args.engine,
        scheduler=args.scheduler,
        progress=err.isatty() if hasattr(err, "isatty") else False,
        assume_fault=args.assume_fault,
        restart=args.restart,
    )
    groups = _groups(args, grouping)
    if args.format == "json":
        doc = summary.to_dict()
        if groups is not None:
            doc["groups"] = {"by": args.group_by or "all", "aliases": bool(args.aliases), "metrics": groups}
        json.dump(doc, out, indent=2)
        out.write("\n")
        return
    print(
        f"scored {summary.n_scored} incidents, set aside {summary.n_rejected} (see {args.out}.rejects.jsonl); "
        f"{summary.n_chunks} chunks, {summary.n_chunks_resumed} resumed; engine {summary.engine}",
        file=out,
    )
    names = ("n_ranked", "AC@1", "AC@3", "AC@5", "Avg@5", "MRR", "brier", "log_loss", "ece", "ece_top1")
    rows = []
    for level, m in summary.metrics.items():
        rows.append((level, *(str(m[k]) if k == "n_ranked" else f"{m[k]:.4f}" for k in names)))
    _table(("level", *names), rows, out)
    print(f"\nsummary with reliability tables: {args.out}.summary.json", file=out)
    if groups is not None:
        cols = ("n", "AC@1", "AC@3", "AC@5", "MRR", "ece_top1")
        unit = "unit (aliased component)" if args.aliases else "component"
        print(f"\n{unit} level by {args.group_by or 'all incidents'}:", file=out)
        _table(
            (args.group_by or "group", *cols),
            [(g, *(str(m[k]) if k == "n" else f"{m[k]:.4f}" for k in cols)) for g, m in groups.items()],
            out,
        )


def _grouping_inputs(args: argparse.Namespace, components):
    """Read --aliases and --windows before scoring, so a bad file fails fast."""
    if not (args.group_by or args.aliases):
        if args.windows:
            raise ParameterError("--windows labels --group-by fault_type; give --group-by too")
        return None
    from diagnosis.logs.grouping import load_aliases

    aliases = load_aliases(args.aliases, components) if args.aliases else {}
    fault_types = {}
    if args.windows:
        from diagnosis.telemetry import read_windows

        windows, _ = read_windows(args.windows)
        fault_types = {str(i): str(t) for i, t in zip(windows["id"], windows["fault_type"]) if isinstance(t, str) and t}
    return aliases, fault_types


def _groups(args: argparse.Namespace, grouping):
    if grouping is None:
        return None
    from diagnosis.logs.grouping import group_metrics, read_scored

    aliases, fault_types = grouping
    return group_metrics(read_scored(args.out), by=args.group_by, aliases=aliases, fault_types=fault_types)


def _convert(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    from diagnosis.logs.formats import read_incidents, write_incidents, write_rejects

    rej = args.rejects or f"{args.out}.rejects.jsonl"
    files, folders = log_outputs(args.out, args.format)
    with guarded_outputs([*files, rej], [args.incidents], folders=folders, lock=args.out, not_inside_inputs=True):
        frame, rejects = read_incidents(args.incidents)
        path = write_incidents(frame, args.out, format=args.format)
        write_rejects(rejects, rej)
    print(f"wrote {len(frame)} incidents to {path}; {len(rejects)} set aside (listed in {rej})", file=out)
