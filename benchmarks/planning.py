"""The check-or-act plan against the naive order, on incidents simulated from the model.

Usage: .venv/bin/python benchmarks/planning.py [--topology webshop online-boutique] [-n 2000] [--seed 7]
       [--escalation-cost 30] [--json FILE] [--figure FILE.png]
       .venv/bin/python benchmarks/planning.py --scale [--scale-timeout 120] [--scale-repeat 3]
       .venv/bin/python benchmarks/planning.py --approx-error [-n 200] [--topology ...]

``--scale`` times, on the bundled Train Ticket incident
(``data/incidents/train-ticket-orders.yaml``), ``diagnose``, ``rank_checks``,
``next_step`` and ``plan_recovery`` in process, and ``diagnosis diagnose``,
``diagnosis explain --no-plan`` and ``diagnosis explain`` as whole processes,
each as a ratio to ``diagnose`` in the same run (a run past
``--scale-timeout`` seconds is stopped and reported as "> timeout"). Each is
run ``--scale-repeat`` times and the least time kept (the machine is shared:
single runs of the same command varied by 2x).

``--approx-error`` measures the approximation the plan makes on large models
(more than ``MAX_EXPANDED`` fault states, Train Ticket: checks valued from the
joints of ``PLAN_MAX_EXPANDED`` fault states, later actions by a factorised
posterior, the expected-cost tree cut after one decision) against the exact
plan, by forcing it on every node of smaller models: on ``n`` incidents
simulated from each topology, the agreement of the 5 checks of least expected
cost ``ECO`` at the first decision, of the first step, the plan's expected
cost as ``plan_recovery`` reports it, and the mean cost of following each
policy on the same simulated incidents (``compare_policies``' simulation).

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
    ap.add_argument("--scale-repeat", type=int, default=3, help="runs per timing with --scale (least kept)")
    ap.add_argument("--approx-error", action="store_true", help="the large-model plan against the exact one")
    ap.add_argument("--max-expanded", type=int, help="with --approx-error: fault states expanded (PLAN_MAX_EXPANDED)")
    args = ap.parse_args()
    if args.scale:
        _scale(args.scale_timeout, max(1, args.scale_repeat))
        return
    if args.approx_error:
        for name in args.topology:
            _approx_error(_topology(name), min(args.n, 200), args.seed, args.max_expanded)
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


def _scale(timeout: float, repeat: int = 1) -> None:
    topo = str(ROOT / "data" / "topologies" / "train-ticket.yaml")
    incident = str(ROOT / "data" / "incidents" / "train-ticket-orders.yaml")
    py = sys.executable
    env_code = ["-c", _SCALE_CODE, topo, incident]
    print(f"Train Ticket, {incident}: seconds, least of {repeat} run(s) (ratio to diagnose in the same run); "
          f"timeout {timeout:g} s")  # fmt: skip
    ref = None
    for what in ("diagnose", "rank_checks", "next_step", "plan_recovery"):
        lines = [_timed([py, *env_code, what], timeout)[1] for _ in range(repeat)]
        sec = min(float(line) if line else math.inf for line in lines)
        ref = sec if ref is None else ref
        shown = f"{sec:8.2f}" if math.isfinite(sec) else f"> {timeout:g}"
        print(f"  in process  {what:<22} {shown} s  ({sec / ref:7.1f}x)")
    ref = None
    for label, extra in (
        ("diagnose", ["diagnose"]),
        ("explain --no-plan", ["explain", "--no-plan"]),
        ("explain", ["explain"]),
    ):
        sec = min(_timed([py, "-m", "diagnosis", *extra, "-t", topo, "--incident", incident], timeout)[0]
                  for _ in range(repeat))  # fmt: skip
        ref = sec if ref is None else ref
        shown = f"{sec:8.2f}" if math.isfinite(sec) else f"> {timeout:g}"
        print(f"  process     {label:<22} {shown} s  ({sec / ref:7.1f}x)")


def _top5(eco: dict[int, float], cost) -> list[int]:
    """The 5 checks of least ECO; values equal to 1e-9 (rounding) tie, broken by cost then declaration order."""
    return sorted(eco, key=lambda k: (round(eco[k], 9), cost[k], k))[:5]


def _approx_error(topo, n: int, seed: int, max_expanded: int | None = None) -> None:
    """The large-model approximation forced on every node, against the exact plan (see above)."""
    import warnings

    from diagnosis import simulate
    from diagnosis.exceptions import ApproximationWarning
    from diagnosis.postmortem.planning import (
        ESCALATION_COST,
        PLAN_MAX_EXPANDED,
        _Node,
        _Planner,
        _PlanPolicy,
        _run_policy,
        _sample_incidents,
    )
    from diagnosis.postmortem.session import Context

    ctx = Context(topo)
    exact = _Planner(ctx, ESCALATION_COST, 20, True, approx_above=None)
    budget = PLAN_MAX_EXPANDED if max_expanded is None else max_expanded
    approx = _Planner(ctx, ESCALATION_COST, 20, True, approx_above=0, max_expanded=budget)
    policy = _PlanPolicy()
    t0 = time.perf_counter()
    same5 = overlap = same_first = 0
    err, rel, n_checked = [], [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ApproximationWarning)
        for inc in simulate(topo, n, rng=seed).records():
            root = _Node(ctx.state(inc.observation_mapping()), frozenset(), 0)
            e = policy.values(exact, [root])[3][0]
            a = policy.values(approx, [root])[3][0]
            te, ta = _top5(e, exact.check_cost), _top5(a, approx.check_cost)
            n_checked += bool(te)
            same5 += te == ta
            overlap += len(set(te) & set(ta)) / max(len(te), 1) if te else 1.0
            pe, pa = exact.plan(root, "plan", max_nodes=200), approx.plan(root, "plan", max_nodes=200)
            same_first += pe.first.describe() == pa.first.describe()
            err.append(pa.expected_cost - pe.expected_cost)
            rel.append(abs(err[-1]) / pe.expected_cost)
        err, rel = np.asarray(err), np.asarray(rel)
        gen = np.random.default_rng(seed)
        truth = _sample_incidents(ctx, n, gen, None, True)
        u = gen.random((n, len(ctx.actions)))
        ce = np.asarray(_run_policy(exact, truth, u, "plan").costs)
        ca = np.asarray(_run_policy(approx, truth, u, "plan").costs)
    d = ca - ce
    se = d.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
    print(f"\n{topo.name}: large-model plan ({budget} fault states, factorised sequences, 1 decision) "
          f"forced on every node, against the exact plan; {n} simulated incidents, seed {seed} "
          f"({time.perf_counter() - t0:.1f} s)")  # fmt: skip
    print(f"  top-5 checks by ECO at the first decision: same order in {same5 / n:.0%} of incidents "
          f"({n_checked} with a check cheaper than ECR), mean overlap {overlap / n:.0%}")  # fmt: skip
    print(f"  first step the same in {same_first / n:.0%} of incidents")
    print(f"  plan_recovery expected cost: approximate - exact mean {err.mean():+.3f}, mean |rel| {rel.mean():.2%}, "
          f"max |rel| {rel.max():.2%}")  # fmt: skip
    print(f"  following the policy on {n} simulated incidents with a fault: exact {ce.mean():.3f}, "
          f"approximate {ca.mean():.3f}, difference {d.mean():+.3f} ± {se:.3f} ({d.mean() / ce.mean():+.1%})")  # fmt: skip


if __name__ == "__main__":
    main()
