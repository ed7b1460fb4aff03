"""The ``fit`` verb: parameters from incident history."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from diagnosis.cli._common import guarded_outputs, load_topology

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
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=_fit)


def _fit(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    from diagnosis.learning import fit_topology

    outputs = [args.out, f"{args.out}.provenance.json"]
    with guarded_outputs(outputs, [args.topology, args.incidents], lock=args.out):
        report = fit_topology(
            load_topology(args.topology),
            args.incidents,
            args.out,
            prior_weight=args.prior_weight,
            pooling=not args.no_pooling,
            half_life=args.half_life,
            interval=args.interval,
            max_iter=args.max_iter,
        )
    if args.format == "json":
        json.dump(report.to_dict(), out, indent=2, default=str)
        out.write("\n")
    else:
        print(report.summary(), file=out)
        print(f"\nwrote {args.out} and {args.out}.provenance.json", file=out)
