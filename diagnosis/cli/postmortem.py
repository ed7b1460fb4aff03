"""Post-mortem verbs: ``explain``, ``timeline``, ``report``."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from diagnosis.cli._common import evidence_of, load_topology
from diagnosis.cli._common import table as _table
from diagnosis.exceptions import DiagnosisError, EvidenceError
from diagnosis.inference import ENGINES

if TYPE_CHECKING:  # the verbs import what they run when they run (start-up time)
    pass

__all__ = ["register"]


def register(verbs) -> None:
    """Add this group's verbs to the ``diagnosis`` parser."""
    p = verbs.add_parser(
        "explain", help="why the model believes what it believes; the next best check; a check-or-act plan"
    )
    p.add_argument("--topology", "-t", required=True, metavar="T")
    p.add_argument(
        "--observe", "-o", action="append", default=[], metavar="SYMPTOM=OBS", help="as for diagnose (repeatable)"
    )
    p.add_argument("--incident", metavar="FILE", help="a YAML/JSON incident file with an 'observations' mapping")
    p.add_argument(
        "--tried",
        action="append",
        default=[],
        metavar="ACTION@TARGET=OUTCOME",
        help="a recovery action already tried, e.g. restart@cartservice=failure (repeatable)",
    )
    p.add_argument(
        "--escalation-cost", type=float, default=30.0, metavar="C", help="cost of giving up and escalating (default 30)"
    )
    p.add_argument("--no-checks", action="store_true", help="skip ranking the next checks (slow on large platforms)")
    p.add_argument("--no-plan", action="store_true", help="skip the check-or-act plan (slow on large platforms)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0])
    p.add_argument(
        "--budget",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="stop with a clear message when the work takes longer (default 300; 0 = no limit)",
    )
    p.set_defaults(func=_explain)
    p = verbs.add_parser(
        "timeline", help="replay an incident's observations in time order: when the model knew, turning points, actions"
    )
    p.add_argument("--topology", "-t", required=True, metavar="T")
    p.add_argument("incidents", metavar="INCIDENTS", help="incident log")
    p.add_argument("--incident", metavar="ID", help="the incident id (optional when the log holds one incident)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=_timeline)
    p = verbs.add_parser("report", help="write a self-contained HTML (and Markdown) post-mortem of one incident")
    p.add_argument("--topology", "-t", required=True, metavar="T")
    p.add_argument("incidents", metavar="INCIDENTS", help="incident log")
    p.add_argument("--incident", metavar="ID", help="the incident id (optional when the log holds one incident)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into (nothing is written outside it)")
    p.add_argument("--escalation-cost", type=float, default=30.0, metavar="C")
    p.set_defaults(func=_report)


class _OutOfTime(BaseException):
    """Raised by the timer inside a stage that ran past the budget (a BaseException: nothing on the way catches it)."""


class _Budget:
    """Progress on a terminal (one line per stage, with its time) and a wall-clock budget for the whole run.

    The budget is enforced with a real-time timer (``SIGALRM``) in the main
    thread; elsewhere (a thread, or a platform without it) only progress is shown.
    """

    def __init__(self, seconds: float, err: TextIO):
        import time

        self.seconds = seconds
        self.err = err
        self.tty = bool(getattr(err, "isatty", lambda: False)())
        self.start = time.monotonic()

    def _elapsed(self) -> float:
        import time

        return time.monotonic() - self.start

    @contextlib.contextmanager
    def stage(self, name: str, skip: str | None = None):
        import signal
        import threading

        if self.tty:
            print(f"explain: {name}... ({self._elapsed():.1f} s)", file=self.err, flush=True)
        timed = (
            self.seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        )
        if timed:
            left = self.seconds - self._elapsed()
            if left <= 0:
                self._fail(name, skip)

            def on_alarm(signum, frame):
                raise _OutOfTime

            previous = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, left)
        try:
            yield
        except _OutOfTime:
            self._fail(name, skip)
        finally:
            if timed:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)

    def _fail(self, name: str, skip: str | None):
        hint = f"rerun with {skip} to skip this step, or" if skip else "rerun"
        raise DiagnosisError(
            f"explain: {name} did not finish within the time budget of {self.seconds:g} s "
            f"(stopped after {self._elapsed():.1f} s); {hint} with a larger --budget (0 = no limit)"
        )

    def done(self) -> None:
        if self.tty:
            print(f"explain: done ({self._elapsed():.1f} s)", file=self.err, flush=True)


def _tried(items: Sequence[str]) -> list[tuple[str, str, str]]:
    out = []
    for item in items:
        head, sep, outcome = item.partition("=")
        action, at, target = head.partition("@")
        if not (sep and at and action and target) or outcome not in ("success", "failure"):
            raise EvidenceError(
                f"cannot read --tried {item!r}; expected ACTION@TARGET=success|failure, e.g. restart@cartservice=failure"
            )
        out.append((action, target, outcome))
    return out


def _explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    from diagnosis.inference import make_engine
    from diagnosis.model.network import build_network
    from diagnosis.postmortem.explain import explain
    from diagnosis.postmortem.planning import plan_recovery, rank_checks
    from diagnosis.postmortem.session import Context

    if not args.budget >= 0:
        raise EvidenceError(f"--budget must be a number of seconds >= 0. Got {args.budget!r} instead.")
    topology = load_topology(args.topology)
    evidence = evidence_of(args)
    tried = _tried(args.tried)
    budget = _Budget(args.budget, err)
    with budget.stage("building the network and its inference engine"):
        network = build_network(topology)
        # one context: the three stages share compiled plans and the checks' fault-state joints
        ctx = Context(network, make_engine(network, args.engine))
    with budget.stage("explaining the evidence"):
        ex = explain(ctx, evidence, actions=tried)
    checks = ()
    if not args.no_checks:
        with budget.stage("ranking the next checks", skip="--no-checks"):
            checks = rank_checks(ctx, evidence, actions=tried)
    plan = None
    if not args.no_plan:
        with budget.stage("planning the checks and actions", skip="--no-plan"):
            plan = plan_recovery(ctx, evidence, actions=tried, escalation_cost=args.escalation_cost)
    budget.done()
    if args.format == "json":
        doc = ex.to_dict()
        if not args.no_checks:
            doc["next_checks"] = [c.to_dict() for c in checks]
        if plan is not None:
            doc["plan"] = plan.to_dict()
        json.dump(doc, out, indent=2, default=str)
        out.write("\n")
        return
    for h in ex.hypotheses:
        print(
            f"{h.component} {h.fault_mode}: P = {h.probability:.4f} (prior {h.prior:.4f}, log Bayes factor {h.log_bayes_factor:+.2f})",
            file=out,
        )
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
            print(
                f"  {w.finding} {w.observation} -> {w.flipped}: top becomes {w.top_component} {w.top_fault_mode} ({w.top_probability:.3f})",
                file=out,
            )
        print(file=out)
    if not args.no_checks:
        print("Next best checks (expected information gain on the fault location, per unit of cost):", file=out)
        rows = [
            (
                c.symptom,
                f"{c.cost:g}",
                f"{c.p_fired:.3f}",
                f"{c.information_gain:.4f}",
                f"{c.success_gain:+.4f}",
                f"{c.information_per_cost:.4f}",
            )
            for c in checks[:8]
        ]
        _table(("check", "cost", "P(fires)", "info gain (bits)", "Δ best P(success)", "gain/cost"), rows, out)
    if plan is not None:
        print(
            f"\nCheck-or-act plan (expected cost to recovery {plan.expected_cost:.2f}{'' if plan.exact else ', search budget reached'}):",
            file=out,
        )
        for i, st in enumerate(plan.steps, 1):
            print(f"  {i}. {st.describe()}", file=out)


def _timeline(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    from diagnosis.model.network import build_network
    from diagnosis.postmortem.report import find_incident
    from diagnosis.postmortem.timeline import belief_timeline

    topology = load_topology(args.topology)
    incident = find_incident(args.incidents, args.incident, topology)
    tl = belief_timeline(build_network(topology), incident)
    if args.format == "json":
        frame = tl.to_frame()
        json.dump(json.loads(frame.to_json(orient="records", date_format="iso")), out, indent=2)
        out.write("\n")
        return
    print(tl.to_frame().to_string(index=False), file=out)
    step = tl.knew_at_step
    if tl.true_cause is None:
        knew = "no confirmed root cause"
    elif step is None:
        knew = "never: the root cause was not the top location at the end"
    elif step == 0:
        knew = "from the start"
    else:
        e = tl.events[step]
        knew = f"step {step}, {e.time}, after {e.finding} {e.observation} (the root cause stays first from then on)"
    print(f"\nWhen the model knew: {knew}", file=out)
    if tl.turning_points:
        print("\nTurning points:", file=out)
        for tp in tl.turning_points:
            print(
                f"  {tp.time}: {tp.finding} {tp.observation}: top {tp.before[0]} {tp.before[1]} -> {tp.after[0]} {tp.after[1]}",
                file=out,
            )
    if tl.actions:
        print("\nActions taken against recommended:", file=out)
        for a in tl.actions:
            print(
                f"  {a.time}: {a.action} {a.target} ({a.outcome}); recommended {a.recommended_action} {a.recommended_target}",
                file=out,
            )


def _report(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    from diagnosis.cli._common import guarded_outputs
    from diagnosis.postmortem.report import write_report

    with guarded_outputs([], [args.topology, args.incidents], folders=[args.out], lock=args.out):
        files = write_report(
            load_topology(args.topology), args.incidents, args.incident, args.out, escalation_cost=args.escalation_cost
        )
    print(f"wrote {files.html} and {files.markdown} ({len(files.figures)} figures) in {files.folder}", file=out)
