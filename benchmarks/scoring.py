"""Batch-scoring throughput and memory: `diagnosis simulate` + `diagnosis score` on Online Boutique.

Usage: .venv/bin/python benchmarks/scoring.py [--sizes 10000 1000000] [--workdir DIR] [--reference-sample 200]

Each command runs in its own process; its wall time and peak RSS (from
wait4's rusage) are printed, so memory at two sizes can be compared. The
reference engine (pgmpy VariableElimination) scores a small sample in the same
run, for the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = ROOT / "data" / "topologies" / "online-boutique.yaml"


def run_measured(cmd: list[str]) -> tuple[float, float, str]:
    # Popen.communicate() reaps the child, so measure through a tiny wrapper that reports its child's rusage.
    wrapper = (
        "import resource, subprocess, sys, time, json; t = time.perf_counter(); "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print(json.dumps({'rc': p.returncode, 'wall': time.perf_counter() - t, 'rss_mib': u.ru_maxrss / 1024, 'out': p.stdout, 'err': p.stderr}))"
    )
    res = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, check=True)
    doc = json.loads(res.stdout)
    if doc["rc"]:
        sys.exit(f"failed: {' '.join(cmd)}\n{doc['err']}")
    return doc["wall"], doc["rss_mib"], doc["out"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--reference-sample", type=int, default=200)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="diagnosis-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    dx = [sys.executable, "-m", "diagnosis"]
    rows = []
    for n in args.sizes:
        log = work / f"sim-{n}.parquet"
        sim_s, sim_rss, _ = run_measured(
            [*dx, "simulate", "-t", str(TOPOLOGY), "-n", str(n), "--seed", "1", "--out", str(log)]
        )
        out = work / f"scored-{n}.parquet"
        score_s, score_rss, text = run_measured(
            [*dx, "score", "-t", str(TOPOLOGY), str(log), "--out", str(out), "--format", "json"]
        )
        summary = json.loads(text)
        rows.append((n, sim_s, sim_rss, score_s, score_rss, summary))
    # The reference engine on a small sample, same topology, same kind of log.
    n_ref = args.reference_sample
    log = work / f"sim-{n_ref}.parquet"
    run_measured([*dx, "simulate", "-t", str(TOPOLOGY), "-n", str(n_ref), "--seed", "1", "--out", str(log)])
    ref_s, ref_rss, _ = run_measured(
        [
            *dx,
            "score",
            "-t",
            str(TOPOLOGY),
            str(log),
            "--out",
            str(work / "ref.parquet"),
            "--engine",
            "reference",
            "--format",
            "json",
        ]
    )
    fast_s, _, _ = run_measured(
        [*dx, "score", "-t", str(TOPOLOGY), str(log), "--out", str(work / "fast.parquet"), "--format", "json"]
    )

    print(f"Online Boutique ({TOPOLOGY.name}), {os.cpu_count()} cores; work folder {work}")
    print(
        f"{'incidents':>10} {'simulate s':>11} {'sim RSS MiB':>12} {'score s':>9} {'incidents/s':>12} {'score RSS MiB':>14}  engine"
    )
    for n, sim_s, sim_rss, score_s, score_rss, summary in rows:
        print(
            f"{n:>10} {sim_s:>11.1f} {sim_rss:>12.0f} {score_s:>9.1f} {n / score_s:>12.0f} {score_rss:>14.0f}  {summary['engine']}"
        )
    print(
        f"\nreference engine (pgmpy VE) on {n_ref} incidents: {ref_s:.1f} s ({n_ref / ref_s:.1f} incidents/s, whole command); "
        f"default engine on the same log: {fast_s:.1f} s -> ratio {ref_s / fast_s:.1f}x (start-up included)"
    )
    last = rows[-1][5]["metrics"]
    for level in ("location", "component"):
        m = last[level]
        print(
            f"{level:>9}: AC@1 {m['AC@1']:.3f}  AC@3 {m['AC@3']:.3f}  AC@5 {m['AC@5']:.3f}  Avg@5 {m['Avg@5']:.3f}  MRR {m['MRR']:.3f}  "
            f"Brier {m['brier']:.4f}  log loss {m['log_loss']:.4f}  ECE {m['ece']:.5f}  ECE(top-1) {m['ece_top1']:.4f}"
        )


if __name__ == "__main__":
    main()
