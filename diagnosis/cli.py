"""The ``diagnosis`` command line: argument parsing and formatting only.

Every verb calls the public API. Exit codes: 0 ok, 1 a :class:`DiagnosisError`
(message on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from diagnosis.evidence import Evidence, read_evidence
from diagnosis.exceptions import DiagnosisError, EvidenceError
from diagnosis.localization import ENGINES, Diagnosis, diagnose
from diagnosis.network import build_network, export_network
from diagnosis.topology import Topology, load_topology

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diagnosis",
        description="Probabilistic fault diagnosis for service platforms.",
    )
    from diagnosis import __version__

    parser.add_argument("--version", action="version", version=f"diagnosis {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

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
    p.add_argument("--top", type=int, default=10, metavar="K", help="show the K most probable locations (table format; default 10)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0], help="inference engine (default: %(default)s)")

    p = verbs.add_parser("simulate", help="sample incidents with ground truth from a topology's model")
    p.add_argument("--topology", "-t", required=True, metavar="T")
    p.add_argument("-n", type=int, required=True, metavar="N", help="number of incidents")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0); the same seed gives the same file")
    p.add_argument("--out", required=True, metavar="FILE", help="output log: .jsonl, .parquet, or a folder for CSV (with --format csv)")
    p.add_argument("--format", choices=("jsonl", "parquet", "csv"), help="output format (default: from the suffix)")
    p.add_argument("--max-actions", type=int, default=3, metavar="K", help="recovery attempts per incident at most (default 3)")

    p = verbs.add_parser("score", help="diagnose every incident of a log; accuracy and calibration")
    p.add_argument("--topology", "-t", required=True, metavar="T")
    p.add_argument("incidents", metavar="INCIDENTS", help="incident log: .jsonl, .parquet (file or folder), or a CSV folder")
    p.add_argument("--out", required=True, metavar="SCORED", help="per-incident results: .parquet, .jsonl or .csv; SCORED.summary.json and SCORED.rejects.jsonl go beside it")
    p.add_argument("--chunk-size", type=int, default=10_000, metavar="N", help="incidents per chunk (default 10000)")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="locations kept per incident (default 5)")
    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0], help="inference engine (default: %(default)s)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="score on a Dask distributed cluster (Parquet logs)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="how to print the summary")

    p = verbs.add_parser("fit", help="fit priors, detector rates, edge strengths and recovery success from incident history")
    p.add_argument("--topology", "-t", required=True, metavar="T", help="the starting topology (its values are the priors)")
    p.add_argument("incidents", metavar="INCIDENTS", help="incident log (.jsonl, .parquet, CSV folder)")
    p.add_argument("--out", required=True, metavar="FITTED.yaml", help="fitted topology; FITTED.yaml.provenance.json goes beside it")
    p.add_argument("--prior-weight", type=float, default=10.0, metavar="W", help="weight of the topology's values, in pseudo-incidents (default 10)")
    p.add_argument("--no-pooling", action="store_true", help="do not pool fault priors across components of the same kind")
    p.add_argument("--half-life", metavar="DAYS", help="old incidents count less, halving every DAYS days (e.g. 90)")
    p.add_argument("--interval", type=float, default=0.9, metavar="P", help="credible-interval mass (default 0.9)")
    p.add_argument("--max-iter", type=int, default=200, metavar="N", help="most EM iterations (default 200)")
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = verbs.add_parser("convert", help="convert an incident log between JSON Lines, Parquet and CSV")
    p.add_argument("incidents", metavar="INCIDENTS")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--format", choices=("jsonl", "parquet", "csv"), help="output format (default: from the suffix)")
    p.add_argument("--rejects", metavar="FILE", help="where to list records set aside (default: OUT.rejects.jsonl)")

    p = verbs.add_parser("import", help="import incidents from other tools")
    sub = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    a = sub.add_parser("alertmanager", help="Prometheus Alertmanager webhook payloads -> incidents, grouped by time window")
    a.add_argument("payloads", nargs="+", metavar="PAYLOADS", help="files of webhook payloads: one JSON payload, a JSON array, or JSON Lines")
    a.add_argument("--topology", "-t", required=True, metavar="T", help="topology whose 'alerts' rules map alert labels to symptoms")
    a.add_argument("--out", required=True, metavar="INCIDENTS", help="incident log to write (.jsonl, .parquet, or a CSV folder with --format csv)")
    a.add_argument("--format", choices=("jsonl", "parquet", "csv"))
    a.add_argument("--window", default="15min", metavar="GAP", help="alerts starting within GAP of the previous one join its incident (default 15min)")
    nz = sub.add_parser("nezha", help="Nezha fault lists (fault_list.json) -> a windows file for `diagnosis detect`")
    nz.add_argument("fault_list", metavar="FAULT_LIST.json")
    nz.add_argument("--out", required=True, metavar="WINDOWS", help="windows file: .csv or .jsonl")
    nz.add_argument("--duration", default="5min", metavar="D", help="incident window after each injection (default 5min)")
    nz.add_argument("--baseline", default="10min", metavar="B", help="baseline window before it (default 10min)")

    p = verbs.add_parser("query", help="posterior marginals of any BIF/XMLBIF network for a file of cases")
    p.add_argument("--model", required=True, metavar="FILE", help="the network: .bif, .bif.gz, .xmlbif or .xml")
    p.add_argument("--evidence", metavar="CASES.csv", help="one row per case, one column per observed variable, state names as values; blank = unobserved")
    p.add_argument("--observe", action="append", default=[], metavar="VAR=STATE", help="one case given on the command line (repeatable)")
    p.add_argument("--target", action="append", required=True, metavar="VAR", help="a variable whose posterior to compute (repeatable)")
    p.add_argument("--out", metavar="FILE", help="posteriors (.csv or .parquet): one row per case, one column per VAR=STATE; default: print")
    p.add_argument("--engine", choices=("auto", "exact", "approximate", "reference"), default="auto")
    p.add_argument("--memory-budget", type=float, default=2.0, metavar="GiB", help="memory the exact engine may use (default 2)")

    p = verbs.add_parser("explain", help="why the model believes what it believes; the next best check; a check-or-act plan")
    p.add_argument("--topology", "-t", required=True, metavar="T")
    p.add_argument("--observe", "-o", action="append", default=[], metavar="SYMPTOM=OBS", help="as for diagnose (repeatable)")
    p.add_argument("--incident", metavar="FILE", help="a YAML/JSON incident file with an 'observations' mapping")
    p.add_argument("--tried", action="append", default=[], metavar="ACTION@TARGET=OUTCOME",
                   help="a recovery action already tried, e.g. restart@cartservice=failure (repeatable)")
    p.add_argument("--escalation-cost", type=float, default=30.0, metavar="C", help="cost of giving up and escalating (default 30)")
    p.add_argument("--no-checks", action="store_true", help="skip ranking the next checks (slow on large platforms)")
    p.add_argument("--no-plan", action="store_true", help="skip the check-or-act plan (slow on large platforms)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0])

    p = verbs.add_parser("timeline", help="replay an incident's observations in time order: when the model knew, turning points, actions")
    p.add_argument("--topology", "-t", required=True, metavar="T")
    p.add_argument("incidents", metavar="INCIDENTS", help="incident log")
    p.add_argument("--incident", metavar="ID", help="the incident id (optional when the log holds one incident)")
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = verbs.add_parser("report", help="write a self-contained HTML (and Markdown) post-mortem of one incident")
    p.add_argument("--topology", "-t", required=True, metavar="T")
    p.add_argument("incidents", metavar="INCIDENTS", help="incident log")
    p.add_argument("--incident", metavar="ID", help="the incident id (optional when the log holds one incident)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into (nothing is written outside it)")
    p.add_argument("--escalation-cost", type=float, default=30.0, metavar="C")

    p = verbs.add_parser("detect", help="metrics (and traces) -> symptom evidence per incident window, as an incident log")
    p.add_argument("--topology", "-t", required=True, metavar="T")
    p.add_argument("--metrics", required=True, nargs="+", metavar="PATH", help="metric files or folders: long tables (timestamp, entity, metric, value) or Nezha per-pod CSVs")
    p.add_argument("--traces", nargs="+", metavar="PATH", help="span files or folders (OpenTelemetry-shaped CSV or OTLP JSON)")
    p.add_argument("--windows", required=True, metavar="WINDOWS", help="incident windows: CSV or JSON Lines (id, start, optional end and baseline, ground truth)")
    p.add_argument("--out", required=True, metavar="INCIDENTS", help="incident log to write (.jsonl, .parquet)")
    p.add_argument("--entities", metavar="MAP.yaml", help="entity -> component patterns (default: strip the pod's two trailing -<hash> parts)")
    p.add_argument("--evidence", choices=("soft", "hard"), default="soft", help="likelihoods from the scores (default) or fired/passed")
    p.add_argument("--lead", default="0s", metavar="D", help="start each incident window D earlier (clock offsets; default 0s)")
    p.add_argument("--metrics-offset", metavar="D", help="add D to every metric timestamp (clock offset between sources)")
    p.add_argument("--traces-offset", metavar="D", help="add D to every span timestamp")

    p = verbs.add_parser("export", help="write the Bayesian network of a topology as BIF or XMLBIF")
    p.add_argument("topology", metavar="TOPOLOGY")
    p.add_argument("--to", required=True, metavar="FILE", help="output file: .bif, .xmlbif or .xml")

    p = verbs.add_parser("topology", help="check or summarise a topology")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="validate a topology; exit 1 with the first error")
    c.add_argument("topology", metavar="TOPOLOGY")
    ft = sub.add_parser("from-traces", help="derive the observed call graph from spans; report how it differs from a declared topology")
    ft.add_argument("spans", nargs="+", metavar="SPANS", help="span files or folders")
    ft.add_argument("--out", required=True, metavar="T.yaml")
    ft.add_argument("--declared", metavar="T", help="a declared topology to compare with")
    ft.add_argument("--name", metavar="NAME", help="name of the derived topology")
    ft.add_argument("--entities", metavar="MAP.yaml", help="entity -> component patterns")
    ft.add_argument("--min-calls", type=int, default=1, metavar="N", help="keep edges seen at least N times (default 1)")
    s = sub.add_parser("show", help="summarise a topology: components, fault modes, symptoms, actions")
    s.add_argument("topology", metavar="TOPOLOGY")
    s.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the CLI; return the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).
    stdout, stderr : text streams, optional
        Where to write (default: the process's streams).
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return int(exc.code or 0)
    try:
        if args.verb == "diagnose":
            _diagnose(args, stdout)
        elif args.verb == "simulate":
            _simulate(args, stdout)
        elif args.verb == "score":
            _score(args, stdout, stderr)
        elif args.verb == "convert":
            _convert(args, stdout)
        elif args.verb == "fit":
            _fit(args, stdout)
        elif args.verb == "import":
            _import(args, stdout)
        elif args.verb == "query":
            _query(args, stdout)
        elif args.verb == "explain":
            _explain(args, stdout)
        elif args.verb == "timeline":
            _timeline(args, stdout)
        elif args.verb == "report":
            _report(args, stdout)
        elif args.verb == "export":
            path = export_network(build_network(load_topology(args.topology)), args.to)
            print(f"wrote {path}", file=stdout)
        elif args.verb == "topology" and args.action == "from-traces":
            _from_traces(args, stdout)
        elif args.verb == "topology":
            topology = load_topology(args.topology)
            if args.action == "check":
                _check(topology, stdout)
            else:
                _show(topology, args.format, stdout)
        elif args.verb == "detect":
            _detect(args, stdout)
    except DiagnosisError as exc:
        print(f"error: {exc}", file=stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`diagnosis ... | head`): stop quietly, as the
        # Python docs recommend, without a traceback at interpreter exit.
        if stdout is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0


def _diagnose(args: argparse.Namespace, out: TextIO) -> None:
    topology = load_topology(args.topology)
    observations = {}
    if args.incident:
        _, ev = read_evidence(args.incident)
        observations.update(ev.observations)
    extra = Evidence.from_strings(args.observe).observations
    for symptom in extra:
        if symptom in observations:
            raise EvidenceError(f"symptom {symptom!r} is given both in {args.incident} and by --observe")
    observations.update(extra)
    result = diagnose(topology, Evidence(observations), engine=args.engine)
    if args.format == "json":
        json.dump(result.to_dict(), out, indent=2, allow_nan=False)
        out.write("\n")
    else:
        _print_diagnosis(result, topology, args.top, out)


def _simulate(args: argparse.Namespace, out: TextIO) -> None:
    from diagnosis.logformats import write_incidents
    from diagnosis.simulate import iter_simulate

    topology = load_topology(args.topology)
    if args.n < 0:
        raise DiagnosisError(f"-n must be >= 0. Got {args.n!r} instead.")
    counts = {"incidents": 0, "cause": 0, "observations": 0, "actions": 0}

    def counted(frames):
        for f in frames:
            counts["incidents"] += len(f)
            counts["cause"] += int(f.incidents["cause_component"].notna().sum())
            counts["observations"] += len(f.observations)
            counts["actions"] += len(f.actions)
            yield f

    path = write_incidents(counted(iter_simulate(topology, args.n, rng=args.seed, max_actions=args.max_actions)), args.out, format=args.format)
    print(
        f"wrote {counts['incidents']} incidents to {path} ({counts['cause']} with a root cause, "
        f"{counts['incidents'] - counts['cause']} opened by false alarms alone; "
        f"{counts['observations']} observations, {counts['actions']} recovery attempts)",
        file=out,
    )


def _score(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    from diagnosis.scoring import score_log

    topology = load_topology(args.topology)
    summary = score_log(
        topology,
        args.incidents,
        args.out,
        chunk_size=args.chunk_size,
        top_k=args.top_k,
        engine=args.engine,
        scheduler=args.scheduler,
        progress=err.isatty() if hasattr(err, "isatty") else False,
    )
    if args.format == "json":
        json.dump(summary.to_dict(), out, indent=2)
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


def _fit(args: argparse.Namespace, out: TextIO) -> None:
    from diagnosis.learning import fit_topology

    half_life = None
    if args.half_life is not None:
        try:
            half_life = float(args.half_life)
        except ValueError:
            half_life = args.half_life
    report = fit_topology(
        load_topology(args.topology),
        args.incidents,
        args.out,
        prior_weight=args.prior_weight,
        pooling=not args.no_pooling,
        half_life=half_life,
        interval=args.interval,
        max_iter=args.max_iter,
    )
    if args.format == "json":
        json.dump(report.to_dict(), out, indent=2, default=str)
        out.write("\n")
    else:
        print(report.summary(), file=out)
        print(f"\nwrote {args.out} and {args.out}.provenance.json", file=out)


def _convert(args: argparse.Namespace, out: TextIO) -> None:
    from diagnosis.logformats import read_incidents, write_incidents, write_rejects

    frame, rejects = read_incidents(args.incidents)
    path = write_incidents(frame, args.out, format=args.format)
    rej = args.rejects or f"{args.out}.rejects.jsonl"
    write_rejects(rejects, rej)
    print(f"wrote {len(frame)} incidents to {path}; {len(rejects)} set aside (listed in {rej})", file=out)


def _import(args: argparse.Namespace, out: TextIO) -> None:
    if args.source == "nezha":
        from diagnosis.telemetry import import_nezha, write_windows

        windows, info = import_nezha(args.fault_list, duration=args.duration, baseline=args.baseline)
        path = write_windows(windows, args.out)
        print(f"wrote {len(windows)} windows to {path}", file=out)
        for line in info.lines():
            print(f"  {line}", file=out)
        return
    from diagnosis.alerts import import_alertmanager
    from diagnosis.logformats import write_incidents, write_rejects

    topology = load_topology(args.topology)
    frame, rejects, summary = import_alertmanager(args.payloads, topology, window=args.window)
    path = write_incidents(frame, args.out, format=args.format)
    rej = write_rejects(rejects, f"{args.out}.rejects.jsonl")
    print(
        f"read {summary.payloads} payloads with {summary.alerts} alert notifications ({summary.duplicates} repeats merged); "
        f"wrote {summary.incidents} incidents to {path}; {len(rejects)} set aside (listed in {rej})",
        file=out,
    )
    for name, count in sorted(summary.unmatched.items()):
        print(f"  no rule maps alertname {name!r} ({count} alerts)", file=out)


def _query(args: argparse.Namespace, out: TextIO) -> None:
    import numpy as np

    from diagnosis.inference import make_engine, read_cases, read_model, write_posteriors
    from diagnosis.inference.approximate import LoopyBPEngine
    from diagnosis.inference.reference import ReferenceEngine

    model = read_model(args.model)
    budget = int(args.memory_budget * 2**30)
    if args.engine == "reference":
        engine = ReferenceEngine(model)
    elif args.engine == "approximate":
        engine = LoopyBPEngine.from_pgmpy(model, memory_budget_bytes=budget)
    else:
        engine = make_engine(model, memory_budget_bytes=budget, allow_approximate=args.engine == "auto")
    for t in args.target:
        if t not in engine.states:
            from diagnosis.exceptions import suggest

            raise EvidenceError(f"unknown target variable {t!r}{suggest(t, engine.states)}")
    if args.evidence and args.observe:
        raise EvidenceError("give cases either with --evidence CASES.csv or with --observe, not both")
    if args.evidence:
        evidence, n = read_cases(args.evidence, engine)
    else:
        evidence, n = {}, 1
        for item in args.observe:
            var, sep, state = item.partition("=")
            if not sep:
                raise EvidenceError(f"cannot read {item!r}; expected VAR=STATE")
            if var not in engine.states:
                from diagnosis.exceptions import suggest

                raise EvidenceError(f"--observe {item}: unknown variable {var!r}{suggest(var, engine.states)}")
            if state not in engine.states[var]:
                raise EvidenceError(f"--observe {item}: unknown state {state!r} of {var!r}; allowed: {list(engine.states[var])}")
            evidence[var] = np.array([engine.states[var].index(state)])
    post = engine.query(args.target, evidence, n_cases=n)
    if args.out:
        path = write_posteriors(args.out, post, engine)
        print(f"wrote posteriors of {len(args.target)} variables for {n} cases to {path} (engine {engine.name}, {engine.kind})", file=out)
        return
    for t in args.target:
        for case in range(n):
            cells = ", ".join(f"{s}={p:.6g}" for s, p in zip(engine.states[t], post[t][case]))
            print(f"{t}{f' [case {case}]' if n > 1 else ''}: {cells}", file=out)


def _evidence_of(args: argparse.Namespace) -> Evidence:
    observations = {}
    if args.incident:
        _, ev = read_evidence(args.incident)
        observations.update(ev.observations)
    extra = Evidence.from_strings(args.observe).observations
    for symptom in extra:
        if symptom in observations:
            raise EvidenceError(f"symptom {symptom!r} is given both in {args.incident} and by --observe")
    observations.update(extra)
    return Evidence(observations)


def _tried(items: Sequence[str]) -> list[tuple[str, str, str]]:
    out = []
    for item in items:
        head, sep, outcome = item.partition("=")
        action, at, target = head.partition("@")
        if not (sep and at and action and target) or outcome not in ("success", "failure"):
            raise EvidenceError(f"cannot read --tried {item!r}; expected ACTION@TARGET=success|failure, e.g. restart@cartservice=failure")
        out.append((action, target, outcome))
    return out


def _explain(args: argparse.Namespace, out: TextIO) -> None:
    from dataclasses import asdict

    from diagnosis.explain import explain
    from diagnosis.planning import plan_recovery, rank_checks

    topology = load_topology(args.topology)
    network = build_network(topology)
    from diagnosis.localization import make_engine

    engine = make_engine(network, args.engine)
    evidence = _evidence_of(args)
    tried = _tried(args.tried)
    ex = explain(network, evidence, actions=tried, engine=engine)
    checks = () if args.no_checks else rank_checks(network, evidence, actions=tried, engine=engine)
    plan = None if args.no_plan else plan_recovery(network, evidence, actions=tried, escalation_cost=args.escalation_cost, engine=engine)
    if args.format == "json":
        doc = ex.to_dict()
        if not args.no_checks:
            doc["next_checks"] = [{**asdict(c), "information_per_cost": c.information_per_cost, "success_per_cost": c.success_per_cost} for c in checks]
        if plan is not None:
            doc["plan"] = {"policy": plan.policy, "expected_cost": plan.expected_cost, "exact": plan.exact, "steps": [asdict(st) for st in plan.steps]}
        json.dump(doc, out, indent=2, default=str)
        out.write("\n")
        return
    for h in ex.hypotheses:
        print(f"{h.component} {h.fault_mode}: P = {h.probability:.4f} (prior {h.prior:.4f}, log Bayes factor {h.log_bayes_factor:+.2f})", file=out)
        rows = [(c.finding, c.observation, f"{c.log_likelihood_ratio:+.3f}") for c in h.contributions]
        if rows:
            _table(("evidence", "observed", "log LR vs alternatives"), rows, out)
        for path in h.paths:
            print(f"  path: {path.describe()}", file=out)
        if h.unexplained:
            print(f"  not explained by it: {', '.join(h.unexplained)}", file=out)
        print(file=out)
    decisive = ex.decisive
    if decisive:
        print("What-if (one observation the other way would change the top answer):", file=out)
        for w in decisive:
            print(f"  {w.finding} {w.observation} -> {w.flipped}: top becomes {w.top_component} {w.top_fault_mode} ({w.top_probability:.3f})", file=out)
        print(file=out)
    if not args.no_checks:
        print("Next best checks (expected information gain on the fault location, per unit of cost):", file=out)
        rows = [(c.symptom, f"{c.cost:g}", f"{c.p_fired:.3f}", f"{c.information_gain:.4f}", f"{c.success_gain:+.4f}", f"{c.information_per_cost:.4f}") for c in checks[:8]]
        _table(("check", "cost", "P(fires)", "info gain (nats)", "Δ best P(success)", "gain/cost"), rows, out)
    if plan is not None:
        print(f"\nCheck-or-act plan (expected cost to recovery {plan.expected_cost:.2f}{'' if plan.exact else ', search budget reached'}):", file=out)
        for i, st in enumerate(plan.steps, 1):
            print(f"  {i}. {st.describe()}", file=out)


def _timeline(args: argparse.Namespace, out: TextIO) -> None:
    from diagnosis.report import find_incident
    from diagnosis.timeline import belief_timeline

    topology = load_topology(args.topology)
    incident = find_incident(args.incidents, args.incident, topology)
    tl = belief_timeline(build_network(topology), incident)
    if args.format == "json":
        frame = tl.to_frame()
        json.dump(json.loads(frame.to_json(orient="records", date_format="iso")), out, indent=2)
        out.write("\n")
        return
    print(tl.to_frame().to_string(index=False), file=out)
    if tl.turning_points:
        print("\nTurning points:", file=out)
        for tp in tl.turning_points:
            print(f"  {tp.time}: {tp.finding} {tp.observation}: top {tp.before[0]} {tp.before[1]} -> {tp.after[0]} {tp.after[1]}", file=out)
    if tl.actions:
        print("\nActions taken against recommended:", file=out)
        for a in tl.actions:
            print(f"  {a.time}: {a.action} {a.target} ({a.outcome}); recommended {a.recommended_action} {a.recommended_target}", file=out)


def _report(args: argparse.Namespace, out: TextIO) -> None:
    from diagnosis.report import write_report

    files = write_report(load_topology(args.topology), args.incidents, args.incident, args.out, escalation_cost=args.escalation_cost)
    print(f"wrote {files.html} and {files.markdown} ({len(files.figures)} figures) in {files.folder}", file=out)


def _offset(text: str | None):
    if text is None:
        return None
    import pandas as pd

    try:
        return pd.Timedelta(text)
    except ValueError:
        raise DiagnosisError(f"cannot read the time offset {text!r}; use e.g. '8h', '-90s', '2min'") from None


def _detect(args: argparse.Namespace, out: TextIO) -> None:
    from diagnosis.logformats import write_incidents, write_rejects
    from diagnosis.telemetry import detect, load_entity_map, read_metrics, read_spans, read_windows

    topology = load_topology(args.topology)
    entities = load_entity_map(args.entities)
    windows, wrejects = read_windows(args.windows)
    metrics = read_metrics(args.metrics, entity_map=entities, time_offset=_offset(args.metrics_offset))
    spans = read_spans(args.traces, entity_map=entities, time_offset=_offset(args.traces_offset)) if args.traces else None
    frame, rejects, report = detect(topology, metrics, windows, traces=spans, evidence=args.evidence, lead=args.lead)
    path = write_incidents(frame, args.out)
    rejects = list(wrejects) + list(rejects)
    rej = write_rejects(rejects, f"{args.out}.rejects.jsonl")
    print(f"wrote {len(frame)} incidents to {path}; {len(rejects)} windows set aside (listed in {rej})", file=out)
    for line in metrics.report.lines():
        print(f"  metrics: {line}", file=out)
    if spans is not None:
        for line in spans.report.lines():
            print(f"  traces: {line}", file=out)
    for line in report.lines():
        print(f"  {line}", file=out)


def _from_traces(args: argparse.Namespace, out: TextIO) -> None:
    from diagnosis.telemetry import derive_topology, load_entity_map, read_spans, write_topology

    spans = read_spans(args.spans, entity_map=load_entity_map(args.entities))
    declared = load_topology(args.declared) if args.declared else None
    topology, diff = derive_topology(spans, declared=declared, name=args.name, min_calls=args.min_calls)
    path = write_topology(topology, args.out)
    print(f"wrote {path}: {len(topology.components)} components, {len(topology.dependencies)} calls seen in traces", file=out)
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
    rows = [(str(i + 1), loc.component, loc.fault_mode, f"{loc.probability:.4f}") for i, loc in enumerate(result.top(k))]
    _table(("#", "component", "fault mode", "P"), rows, out)
    print("\nP(component has any fault):", file=out)
    anyfault = sorted(((1.0 - p["ok"], c) for c, p in result.posteriors.items()), reverse=True)[: min(k, 5)]
    _table(("component", "P(fault)"), [(c, f"{p:.4f}") for p, c in anyfault], out)
    print("\nRecovery actions (expected success P(R | D) = sum_L P(R | L, a) P(L | D)):", file=out)
    rows = [
        (a.action, a.target, f"{a.expected_success:.4f}", f"{a.cost:g}", "inf" if math.isinf(a.success_per_cost) else f"{a.success_per_cost:.4f}")
        for a in result.actions[:5]
    ]
    _table(("action", "target", "P(success)", "cost", "P/cost"), rows, out)
    best = result.recommended
    if best is not None:
        print(f"\nRecommended: {best.action} {best.target} (expected success {best.expected_success:.3f}, cost {best.cost:g})", file=out)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)), file=out)
    for row in rows:
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths)), file=out)


def _check(topology: Topology, out: TextIO) -> None:
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
    network = build_network(topology)
    if fmt == "json":
        doc = {
            "name": topology.name,
            "components": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "host": c.host,
                    "fault_variable": network.fault_variable[c.name],
                    "fault_modes": {m.name: {"prior": m.prior, "impact": m.impact} for m in c.fault_modes},
                    "depends_on": [
                        {"component": d.target, "type": d.type, "strength": d.strength} for d in topology.dependencies_of(c.name)
                    ],
                }
                for c in topology.components
            ],
            "symptoms": [
                {
                    "symptom": d.symptom,
                    "component": d.component,
                    "watches": d.watches,
                    "raised_by": dict(d.sensitivity),
                    "false_alarm": d.false_alarm,
                    "cost": d.cost,
                    "variable": network.symptom_variable[d.symptom],
                }
                for d in topology.detectors
            ],
            "actions": [{"action": a.name, "target": a.component, "success": dict(a.success), "cost": a.cost} for a in topology.actions],
            "dropped_dependencies": [{"source": d.source, "target": d.target, "type": d.type} for d in topology.dropped_dependencies],
        }
        json.dump(doc, out, indent=2)
        out.write("\n")
        return
    print(f"{topology.name}: {len(topology.components)} components, {len(network.variables)} network variables", file=out)
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
    rows = [(a.name, a.component, ", ".join(f"{m} {p:g}" for m, p in a.success.items()), f"{a.cost:g}") for a in topology.actions]
    _table(("action", "target", "success by fault mode", "cost"), rows, out)
    for dep in topology.dropped_dependencies:
        print(f"\nnote: dependency {dep.source} -> {dep.target} dropped to break a cycle", file=out)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
