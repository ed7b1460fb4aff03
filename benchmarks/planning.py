"""The check-or-act plan against the naive order, on incidents simulated from the model.

Usage: .venv/bin/python benchmarks/planning.py [--topology webshop online-boutique] [-n 2000] [--seed 7]
       [--escalation-cost 30] [--json FILE] [--figure FILE.png]
       .venv/bin/python benchmarks/planning.py --scale [--scale-timeout 120]

``--scale`` times, on the bundled Train Ticket incident
(``data/incidents/train-ticket-orders.yaml``), ``diagnose``, ``rank_checks``,
``next_step`` and ``plan_recovery`` in process, and ``diagnosis diagnose``,
``diagnosis explain --no-plan`` and ``diagnosis explain`` as whole processes,
each as a ratio to ``diagnose`` in the same run (a run past
``--scale-timeout`` seconds is stopped and reported as "> timeout").

For each topology, ``diagnosis.postmortem.planning.compare_policies`` samples ``n``
incidents with at least one true fault (each a joint sample of the model:
true faults, the value every check would show, which detectors were observed
when it opened) and runs four policies on the same incidents with the same
random draws for the actions' outcomes:

* plan        -- the check-or-act plan (Heckerman, Breese and Rommelse 1995);
* actions     -- the same action order without checks;
* naive       -- "fix the most likely cause first";
* recommended -- the action of highest expected success first.

It prints the mean cost to recovery per policy (checks + actions + escalation,
docs/post_mortem.md), the paired saving of the plan against the naive order
with its standard error, and the same on the incidents left once those that
every policy escalated at once (no action was worth trying) are set aside.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diagnosis import bundled_topology, list_bundled, load_topology  # noqa: E402
from diagnosis.postmortem.planning import POLICIES, compare_policies  # noqa: E402


def _topology(name: str):
    return load_topology(bundled_topology(name) if name in list_bundled() else name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--topology", nargs="+", default=["webshop", "online-boutique"], help="bundled names or topology files"
    )
    ap.add_argument("-n", type=int, default=2000, help="incidents per topology (default 2000)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--escalation-cost", type=float, nargs="+", default=[30.0], help="one run per value (default 30)")
    ap.add_argument("--json", type=Path, help="write every figure as JSON")
    ap.add_argument("--figure", type=Path, help="write a bar chart of the mean costs (PNG)")
    ap.add_argument("--scale", action="store_true", help="Train Ticket timings against diagnose (see above)")
    ap.add_argument("--scale-timeout", type=float, default=120.0, help="seconds per timed run with --scale")
    args = ap.parse_args()
    if args.scale:
        _scale(args.scale_timeout)
        return

    doc = []
    comparisons = []
    for name in args.topology:
        topo = _topology(name)
        for c_esc in args.escalation_cost:
            t0 = time.perf_counter()
            cmp = compare_policies(topo, args.n, rng=args.seed, escalation_cost=c_esc)
            seconds = time.perf_counter() - t0
            comparisons.append(cmp)
            print(f"\n{topo.name}: {args.n} simulated incidents with a true fault, seed {args.seed}, "
                  f"escalation cost {c_esc:g} ({seconds:.1f} s)")  # fmt: skip
            print(f"  {'policy':<12} {'mean cost':>10} {'± se':>7} {'checks':>7} {'actions':>8} {'escalated':>10}")
            for p in POLICIES:
                s = cmp.results[p].summary()
                print(f"  {p:<12} {s['mean_cost']:>10.3f} {s['se_cost']:>7.3f} {s['mean_checks']:>7.2f} "
                      f"{s['mean_actions']:>8.2f} {s['share_escalated']:>9.1%}")  # fmt: skip
            sv = cmp.saving("plan", "naive")
            lo, hi = sv["saving"] - 1.96 * sv["se"], sv["saving"] + 1.96 * sv["se"]
            print(f"  plan vs naive: saving {sv['saving']:.3f} per incident (95% CI {lo:.3f} to {hi:.3f}), "
                  f"{sv['relative']:.1%} of the naive cost; plan cheaper in {sv['share_cheaper']:.0%} of incidents, "
                  f"dearer in {sv['share_dearer']:.0%}")  # fmt: skip
            # Incidents every policy escalated at once cost the same for all; the saving on the rest.
            at_once = np.ones(args.n, dtype=bool)
            for r in cmp.results.values():
                at_once &= np.asarray(r.escalated) & (np.asarray(r.n_actions) == 0) & (np.asarray(r.n_checks) == 0)
            rest = ~at_once
            naive = np.asarray(cmp.results["naive"].costs)[rest]
            plan = np.asarray(cmp.results["plan"].costs)[rest]
            d = naive - plan
            se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else math.nan
            print(f"  every policy escalated at once in {at_once.mean():.1%} of incidents; on the other {rest.sum()}: "
                  f"naive {naive.mean():.3f}, plan {plan.mean():.3f}, saving {d.mean():.3f} ± {se:.3f} "
                  f"({d.mean() / naive.mean():.1%})")  # fmt: skip
            entry = cmp.to_dict()
            entry["seconds"] = seconds
            entry["escalated_at_once_share"] = float(at_once.mean())
            entry["saving_on_the_rest"] = {"naive": float(naive.mean()), "plan": float(plan.mean()), "saving": float(d.mean()),
                                           "se": float(se), "relative": float(d.mean() / naive.mean())}  # fmt: skip
            doc.append(entry)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    if args.figure:
        from matplotlib.figure import Figure

        from diagnosis.plotting import plot_policy_savings

        n_rows, n_cols = len(args.topology), len(args.escalation_cost)
        fig = Figure(figsize=(4.2 * n_cols, 3.4 * n_rows), layout="constrained")
        for i, cmp in enumerate(comparisons):
            plot_policy_savings(cmp, ax=fig.add_subplot(n_rows, n_cols, i + 1))
        fig.suptitle(
            "Saving against the naive order (fix the most likely cause first), 95% intervals; labels: share of the naive cost"
        )
        fig.savefig(args.figure, dpi=110)
        print(f"wrote {args.figure}")


_SCALE_CODE = """
import sys, time, warnings, yaml
warnings.simplefilter("ignore")
from diagnosis import diagnose, load_topology
from diagnosis.postmortem.planning import next_step, plan_recovery, rank_checks
topo = load_topology(sys.argv[1])
ev = yaml.safe_load(open(sys.argv[2]))["observations"]
f = {"diagnose": diagnose, "rank_checks": rank_checks, "next_step": next_step, "plan_recovery": plan_recovery}[sys.argv[3]]
t = time.perf_counter()
f(topo, ev)
print(time.perf_counter() - t)
"""


def _timed(cmd: list[str], timeout: float) -> tuple[float, str | None]:
    """Wall time of ``cmd`` and its last stdout line (None past the timeout)."""
    import subprocess

    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=True)
    except subprocess.TimeoutExpired:
        return math.inf, None
    return time.perf_counter() - t0, (done.stdout.strip().splitlines() or [""])[-1]


def _scale(timeout: float) -> None:
    topo = str(ROOT / "data" / "topologies" / "train-ticket.yaml")
    incident = str(ROOT / "data" / "incidents" / "train-ticket-orders.yaml")
    py = sys.executable
    env_code = ["-c", _SCALE_CODE, topo, incident]
    print(f"Train Ticket, {incident}: seconds (ratio to diagnose in the same run); timeout {timeout:g} s")
    ref = None
    for what in ("diagnose", "rank_checks", "next_step", "plan_recovery"):
        _, line = _timed([py, *env_code, what], timeout)
        sec = float(line) if line else math.inf
        ref = sec if ref is None else ref
        shown = f"{sec:8.2f}" if math.isfinite(sec) else f"> {timeout:g}"
        print(f"  in process  {what:<22} {shown} s  ({sec / ref:7.1f}x)")
    ref = None
    for label, extra in (
        ("diagnose", ["diagnose"]),
        ("explain --no-plan", ["explain", "--no-plan"]),
        ("explain", ["explain"]),
    ):
        sec, _ = _timed([py, "-m", "diagnosis", *extra, "-t", topo, "--incident", incident], timeout)
        ref = sec if ref is None else ref
        shown = f"{sec:8.2f}" if math.isfinite(sec) else f"> {timeout:g}"
        print(f"  process     {label:<22} {shown} s  ({sec / ref:7.1f}x)")


if __name__ == "__main__":
    main()
