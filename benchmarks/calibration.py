"""Calibration sanity: score incidents simulated from Online Boutique's model with the true model and with mis-specified ones.

Usage: .venv/bin/python benchmarks/calibration.py [-n 20000] [--seed 1]

Mis-specified models: every fault prior 10x too high; 10x too low; and every
detector's sensitivity and false-alarm rate swapped with each other.
"""

from __future__ import annotations

import argparse
import time

from diagnosis import Topology, build_network, bundled_topology, load_topology, make_engine
from diagnosis.logs.scoring import ScoreSummary, score_frame
from diagnosis.logs.simulate import simulate


def swapped(topo: Topology) -> Topology:
    d = topo.to_dict()
    for c in d["components"]:
        for det in c["detectors"].values():
            sens = det["raised_by"]
            mean_sens = sum(sens.values()) / len(sens)
            det["raised_by"] = {t: det["false_alarm"] for t in sens}
            det["false_alarm"] = mean_sens
    return Topology.from_dict(d)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    truth = load_topology(bundled_topology("online-boutique"))
    t = time.perf_counter()
    log = simulate(truth, args.n, rng=args.seed)
    print(
        f"simulated {len(log)} incidents from the true model in {time.perf_counter() - t:.1f} s "
        f"({log.incidents['cause_component'].notna().sum()} with a root cause)"
    )
    models = {
        "true model": truth,
        "priors x10": truth.with_scaled_priors(10),
        "priors /10": truth.with_scaled_priors(0.1),
        "detector rates swapped": swapped(truth),
    }
    print(
        f"{'model':<24} {'level':<10} {'AC@1':>6} {'AC@3':>6} {'MRR':>6} {'Brier':>8} {'log loss':>9} {'ECE':>8} {'ECE top-1':>10}"
    )
    for name, topo in models.items():
        net = build_network(topo)
        _, stats, _ = score_frame(net, make_engine(net), log)
        s = ScoreSummary.from_stats(stats)
        for level in ("location", "component"):
            m = s.metrics[level]
            print(
                f"{name:<24} {level:<10} {m['AC@1']:>6.3f} {m['AC@3']:>6.3f} {m['MRR']:>6.3f} {m['brier']:>8.4f} {m['log_loss']:>9.4f} {m['ece']:>8.5f} {m['ece_top1']:>10.4f}"
            )


if __name__ == "__main__":
    main()
