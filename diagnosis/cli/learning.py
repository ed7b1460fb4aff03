"""The ``fit`` verb: parameters from incident history."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from diagnosis.cli._common import guarded_outputs, load_topology
from diagnosis.exceptions import ParameterError

__all__ = ["register"]


def register(verbs) -> None:
    """Add this group's verbs to the ``diagnosis`` parser."""
    p = verbs.add_parser(
        "fit", help="fit priors, detector rates, edge strengths and recovery success from incident history"
    )
    p.add_argument(
        "--topology", "-t", required=True, metavar="T", help="the starting topology (its values are the priors)"
    )
    p.add_argument("incidents", metavar="INCIDENTS", help="incident log (.jsonl, .parquet, CSV folder)")
    p.add_argument(
        "--out",
        required=True,
        metavar="FITTED.yaml",
        help="fitted topology; FITTED.yaml.provenance.json goes beside it",
    )
    p.add_argument(
        "--prior-weight",
        type=float,
        default=10.0,
        metavar="W",
        help="weight of the topology's values, in pseudo-incidents (default 10)",
    )
    p.add_argument(
        "--no-pooling", action="store_true", help="do not pool fault priors across components of the same kind"
    )
    p.add_argument(
        "--half-life",
        metavar="DURATION",
        help="old incidents count less, halving every DURATION (e.g. 90d; a bare number is seconds)",
    )
    p.add_argument("--interval", type=float, default=0.9, metavar="P", help="credible-interval mass (default 0.9)")
    p.add_argument("--max-iter", type=int, default=200, metavar="N", help="most EM iterations (default 200)")
    p.add_argument(
        "--engine",
        choices=("auto", "exact", "approximate"),
        default="auto",
        help="the E-step's inference: auto (exact when it fits in memory, else loopy BP with a warning; default), "
        "exact, approximate (loopy BP)",
    )
    p.add_argument(
        "--max-selection-masks",
        type=int,
        metavar="M",
        help="run the selection correction on a seeded sample of at most M distinct sets of checks run, "
        "weighted up (an approximation, with a warning; default: all of them)",
    )
    p.add_argument(
        "--evidence",
        metavar="EVIDENCE.csv",
        help="also fit the soft-evidence likelihood of each detector kind from the p-values "
        "'diagnosis detect --save-evidence' wrote for INCIDENTS (its root causes are the labels)",
    )
    p.add_argument(
        "--history",
        nargs=3,
        action="append",
        default=[],
        metavar=("TOPOLOGY", "LOG", "EVIDENCE.csv"),
        help="with --evidence: also fit the likelihoods on another system's labelled log (its topology, the "
        "incident log detect wrote for it, its --save-evidence table), pooled per detector kind; repeatable",
    )
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=_fit)


def _fit(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    from diagnosis.learning import fit_topology

    outputs = [args.out, f"{args.out}.provenance.json"]
    if args.history and not args.evidence:
        raise ParameterError("--history needs --evidence: it adds other systems' labelled p-values to the fit")
    inputs = [args.topology, args.incidents, args.evidence, *(f for h in args.history for f in h)]
    with guarded_outputs(outputs, inputs, lock=args.out):
        topology, curves = load_topology(args.topology), None
        if args.evidence:
            from diagnosis.learning.likelihood import fit_likelihoods

            history = [(load_topology(t), log, ev) for t, log, ev in args.history]
            topology, curves = fit_likelihoods(topology, args.incidents, args.evidence, history=history)
        report = fit_topology(
            topology,
            args.incidents,
            args.out,
            prior_weight=args.prior_weight,
            pooling=not args.no_pooling,
            half_life=args.half_life,
            interval=args.interval,
            max_iter=args.max_iter,
            engine=args.engine,
            max_selection_masks=args.max_selection_masks,
        )
        if curves is not None:
            _record_likelihoods(f"{args.out}.provenance.json", args.evidence, curves, args.history)
    if args.format == "json":
        doc = report.to_dict()
        if curves is not None:
            doc["likelihoods"] = _likelihood_provenance(args.evidence, curves, args.history)
        json.dump(doc, out, indent=2, default=str)
        out.write("\n")
    else:
        print(report.summary(), file=out)
        if curves is not None:
            print(_curves_table(curves), file=out)
        print(f"\nwrote {args.out} and {args.out}.provenance.json", file=out)


def _likelihood_provenance(evidence: str, fitter, history=()) -> dict:
    """What the likelihood curves were fitted on: the evidence file (and history), the settings, the counts per kind."""
    import math

    settings = fitter.get_params()
    settings["edges"] = [e if math.isfinite(e) else "inf" for e in map(float, settings["edges"])]
    return {
        "evidence": str(evidence),
        "history": [{"topology": str(a), "incidents": str(b), "evidence": str(c)} for a, b, c in history],
        "settings": settings,
        "kinds": {
            c.watches: {"n_faulty": fitter.counts_[c.watches][0], "n_ok": fitter.counts_[c.watches][1], **c.to_dict()}
            for c in fitter.curves_
        },
    }


def _record_likelihoods(provenance: str, evidence: str, fitter, history=()) -> None:
    """Add the likelihood fit to the provenance sidecar ``fit`` wrote (rewritten atomically)."""
    from diagnosis._files import atomic_write_text

    with open(provenance, encoding="utf-8") as fh:
        doc = json.load(fh)
    doc["likelihoods"] = _likelihood_provenance(evidence, fitter, history)
    atomic_write_text(provenance, json.dumps(doc, indent=1, allow_nan=False) + "\n")


def _curves_table(fitter) -> str:
    """The fitted likelihood ratios at a few p-values, against the default beta-uniform ratio."""
    import numpy as np

    from diagnosis.telemetry.detectors import EvidenceModel

    pts = np.array([1.0, 0.1, 0.01, 1e-3, 1e-5])
    head = " ".join(f"{f'p={p:g}':>8}" for p in pts)
    lines = [
        "\nsoft-evidence likelihood ratios LR(p) fitted per detector kind (likelihoods: section):",
        f"  {'kind':<14} {'n faulty/ok':>12} {head}",
        f"  {'(default)':<14} {'':>12} " + " ".join(f"{v:8.3g}" for v in EvidenceModel().ratio(pts)),
    ]
    for c in fitter.curves_:
        n1, n0 = fitter.counts_[c.watches]
        lines.append(f"  {c.watches:<14} {f'{n1}/{n0}':>12} " + " ".join(f"{v:8.3g}" for v in c.ratio(pts)))
    return "\n".join(lines)
