"""Verbs on a topology and its network: ``diagnose``, ``export``, ``topology check|show|from-traces``."""

from __future__ import annotations

import argparse
import json
import math
from typing import TYPE_CHECKING, TextIO

from diagnosis.cli._common import evidence_of, guarded_outputs, load_topology
from diagnosis.cli._common import table as _table
from diagnosis.exceptions import ParameterError
from diagnosis.inference import ENGINES

if TYPE_CHECKING:  # the verbs import what they run when they run (start-up time)
    from diagnosis.localization import Diagnosis
    from diagnosis.model.topology import Topology

__all__ = ["register"]


def register(verbs) -> None:
    """Add this group's verbs to the ``diagnosis`` parser."""
    p = verbs.add_parser("diagnose", help="rank fault locations and recovery actions for one incident")
    p.add_argument("--topology", "-t", required=True, metavar="T", help="topology YAML file")
    p.add_argument(
        "--observe",
        "-o",
        action="append",
        default=[],
        metavar="SYMPTOM=OBS",
        help="an observation: SYMPTOM=fired|passed|absent, or SYMPTOM=fired:P,passed:Q for a score's likelihood (repeatable)",
    )
    p.add_argument("--incident", metavar="FILE", help="a YAML/JSON incident file with an 'observations' mapping")
    p.add_argument(
        "--top", type=int, default=10, metavar="K", help="show the K most probable locations (table format; default 10)"
    )
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0], help="inference engine (default: %(default)s)")
    p.set_defaults(func=_diagnose)
    p = verbs.add_parser("export", help="write the Bayesian network of a topology as BIF or XMLBIF")
    p.add_argument("topology", metavar="TOPOLOGY")
    p.add_argument("--to", required=True, metavar="FILE", help="output file: .bif, .xmlbif or .xml")
    p.set_defaults(func=_export)
    p = verbs.add_parser("topology", help="check or summarise a topology, or derive one from traces")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="validate a topology; exit 1 with the first error")
    c.add_argument("topology", metavar="TOPOLOGY")
    ft = sub.add_parser(
        "from-traces", help="derive the observed call graph from spans; report how it differs from a declared topology"
    )
    ft.add_argument("spans", nargs="+", metavar="SPANS", help="span files or folders")
    ft.add_argument("--out", required=True, metavar="T.yaml")
    ft.add_argument("--declared", metavar="T", help="a declared topology to compare with")
    ft.add_argument("--name", metavar="NAME", help="name of the derived topology")
    ft.add_argument("--entities", metavar="MAP.yaml", help="entity -> component patterns")
    ft.add_argument(
        "--min-calls", type=int, default=1, metavar="N", help="keep edges seen at least N times (default 1)"
    )
    s = sub.add_parser("show", help="summarise a topology: components, fault modes, symptoms, actions")
    s.add_argument("topology", metavar="TOPOLOGY")
    s.add_argument("--format", choices=("table", "json"), default="table")
    c.set_defaults(func=_check_cmd)
    s.set_defaults(func=_show_cmd)
    ft.set_defaults(func=_from_traces)


def _diagnose(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    if args.top < 1:
        raise ParameterError(f"--top must be an int >= 1. Got {args.top!r} instead.")
    from diagnosis.localization import diagnose

    topology = load_topology(args.topology)
    result = diagnose(topology, evidence_of(args), engine=args.engine)
    if args.format == "json":
        json.dump(result.to_dict(), out, indent=2, allow_nan=False)
        out.write("\n")
    else:
        _print_diagnosis(result, topology, args.top, out)


def _from_traces(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    with guarded_outputs([args.out], [args.spans, args.declared, args.entities], lock=args.out):
        _from_traces_run(args, out)


def _from_traces_run(args: argparse.Namespace, out: TextIO) -> None:
    from diagnosis.telemetry import derive_topology, load_entity_map, read_spans, write_topology

    spans = read_spans(args.spans, entity_map=load_entity_map(args.entities))
    declared = load_topology(args.declared) if args.declared else None
    topology, diff = derive_topology(spans, declared=declared, name=args.name, min_calls=args.min_calls)
    path = write_topology(topology, args.out)
    print(
        f"wrote {path}: {len(topology.components)} components, {len(topology.dependencies)} calls seen in traces",
        file=out,
    )
    for line in spans.report.lines():  # spans set aside or dropped, counted by reason
        print(f"  traces: {line}", file=out)
    for line in diff.lines():
        print(f"  {line}", file=out)


def _print_diagnosis(result: Diagnosis, topology: Topology, k: int, out: TextIO) -> None:
    if result.evidence or result.soft_evidence:
        print("Evidence applied:", file=out)
        for var, state in result.evidence.items():
            print(f"  {var} = {state}", file=out)
        for var, lik in result.soft_evidence.items():
            print(f"  {var} ~ likelihood(passed={lik[0]:g}, fired={lik[1]:g})", file=out)
    else:
        print("No evidence: showing the prior.", file=out)
    print(f"\nMost probable fault locations (posterior marginals, engine {result.engine}):", file=out)
    rows = [
        (str(i + 1), loc.component, loc.fault_mode, f"{loc.probability:.4f}") for i, loc in enumerate(result.top(k))
    ]
    _table(("#", "component", "fault mode", "P"), rows, out)
    print("\nP(component has any fault):", file=out)
    anyfault = sorted(((1.0 - p["ok"], c) for c, p in result.posteriors.items()), reverse=True)[: min(k, 5)]
    _table(("component", "P(fault)"), [(c, f"{p:.4f}") for p, c in anyfault], out)
    print("\nRecovery actions (expected success P(R | D) = sum_L P(R | L, a) P(L | D)):", file=out)
    rows = [
        (
            a.action,
            a.target,
            f"{a.expected_success:.4f}",
            f"{a.cost:g}",
            "inf" if math.isinf(a.success_per_cost) else f"{a.success_per_cost:.4f}",
        )
        for a in result.actions[:5]
    ]
    _table(("action", "target", "P(success)", "cost", "P/cost"), rows, out)
    best = result.recommended
    if best is not None:
        print(
            f"\nRecommended: {best.action} {best.target} (expected success {best.expected_success:.3f}, cost {best.cost:g})",
            file=out,
        )


def _check(topology: Topology, out: TextIO) -> None:
    from diagnosis.model.network import build_network

    network = build_network(topology)
    print(
        f"ok: {topology.source or topology.name}: {len(topology.components)} components, "
        f"{len(topology.dependencies)} dependencies, {len(topology.symptoms)} symptoms, "
        f"{len(topology.actions)} actions; network of {len(network.variables)} variables",
        file=out,
    )
    for dep in topology.dropped_dependencies:
        print(f"note: dependency {dep.source} -> {dep.target} dropped to break a cycle (cycles: break)", file=out)


def _show(topology: Topology, fmt: str, out: TextIO) -> None:
    from diagnosis.model.network import build_network

    network = build_network(topology)
    if fmt == "json":
        doc = network.summary()
        json.dump(doc, out, indent=2)
        out.write("\n")
        return
    print(
        f"{topology.name}: {len(topology.components)} components, {len(network.variables)} network variables", file=out
    )
    rows = []
    for c in topology.components:
        deps = ", ".join(f"{d.target}({d.type} {d.strength:g})" for d in topology.dependencies_of(c.name)) or "-"
        modes = ", ".join(f"{m.name} {m.prior:g}" for m in c.fault_modes)
        rows.append((c.name, c.kind, deps, modes))
    _table(("component", "kind", "depends on", "fault modes (prior)"), rows, out)
    print("\nSymptoms (use with --observe SYMPTOM=fired|passed):", file=out)
    rows = [
        (d.symptom, d.watches, ", ".join(f"{t} {p:g}" for t, p in d.sensitivity.items()), f"{d.false_alarm:g}")
        for d in topology.detectors
    ]
    _table(("symptom", "watches", "raised by (sensitivity)", "false alarm"), rows, out)
    print("\nActions:", file=out)
    rows = [
        (a.name, a.component, ", ".join(f"{m} {p:g}" for m, p in a.success.items()), f"{a.cost:g}")
        for a in topology.actions
    ]
    _table(("action", "target", "success by fault mode", "cost"), rows, out)
    for dep in topology.dropped_dependencies:
        print(f"\nnote: dependency {dep.source} -> {dep.target} dropped to break a cycle", file=out)


def _export(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    from diagnosis.model.network import build_network, export_network

    with guarded_outputs([args.to], [args.topology], lock=args.to):
        path = export_network(build_network(load_topology(args.topology)), args.to)
    print(f"wrote {path}", file=out)


def _check_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    _check(load_topology(args.topology), out)


def _show_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    _show(load_topology(args.topology), args.format, out)
