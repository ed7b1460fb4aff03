"""The ``query`` verb: posteriors of any BIF/XMLBIF network."""

from __future__ import annotations

import argparse
from typing import TextIO

from diagnosis.cli._common import guarded_outputs
from diagnosis.exceptions import EvidenceError

__all__ = ["register"]


def register(verbs) -> None:
    """Add this group's verbs to the ``diagnosis`` parser."""
    p = verbs.add_parser("query", help="posterior marginals of any BIF/XMLBIF network for a file of cases")
    p.add_argument("--model", required=True, metavar="FILE", help="the network: .bif, .bif.gz, .xmlbif or .xml")
    p.add_argument(
        "--evidence",
        metavar="CASES.csv",
        help="one row per case, one column per observed variable, state names as values; blank = unobserved",
    )
    p.add_argument(
        "--observe",
        action="append",
        default=[],
        metavar="VAR=STATE",
        help="one case given on the command line (repeatable)",
    )
    p.add_argument(
        "--target",
        action="append",
        required=True,
        metavar="VAR",
        help="a variable whose posterior to compute (repeatable)",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help="posteriors (.csv or .parquet): one row per case (first column: the cases' id column, or their row "
        "number), one column per VAR=STATE; default: print",
    )
    p.add_argument("--engine", choices=("auto", "exact", "approximate", "reference"), default="auto")
    p.add_argument(
        "--memory-budget", type=float, default=2.0, metavar="GiB", help="memory the exact engine may use (default 2)"
    )
    p.set_defaults(func=_query)


def _query(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    if args.out:
        with guarded_outputs([args.out], [args.model, args.evidence], lock=args.out):
            _query_run(args, out)
    else:
        _query_run(args, out)


def _query_run(args: argparse.Namespace, out: TextIO) -> None:
    import numpy as np

    from diagnosis.inference import make_engine, read_cases, read_model, read_tables, write_posteriors

    # our own BIF/XMLBIF reader (no pgmpy); the pgmpy reference engine needs pgmpy's model
    model = read_model(args.model) if args.engine == "reference" else read_tables(args.model)
    engine = make_engine(model, args.engine, memory_budget_bytes=int(args.memory_budget * 2**30))
    for t in args.target:
        if t not in engine.states:
            from diagnosis.exceptions import suggest

            raise EvidenceError(f"unknown target variable {t!r}{suggest(t, engine.states)}")
    if args.evidence and args.observe:
        raise EvidenceError("give cases either with --evidence CASES.csv or with --observe, not both")
    case_ids = None
    if args.evidence:
        evidence, n, case_ids = read_cases(args.evidence, engine, with_ids=True)
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
                raise EvidenceError(
                    f"--observe {item}: unknown state {state!r} of {var!r}; allowed: {list(engine.states[var])}"
                )
            evidence[var] = np.array([engine.states[var].index(state)])
    post = engine.query(args.target, evidence, n_cases=n)
    if args.out:
        path = write_posteriors(args.out, post, engine, case_ids=case_ids)
        print(
            f"wrote posteriors of {len(args.target)} variables for {n} cases to {path} (engine {engine.name}, {engine.kind})",
            file=out,
        )
        return
    for t in args.target:
        for case in range(n):
            cells = ", ".join(f"{s}={p:.6g}" for s, p in zip(engine.states[t], post[t][case]))
            print(f"{t}{f' [case {case}]' if n > 1 else ''}: {cells}", file=out)
