"""Fitted soft-evidence likelihoods on the Nezha data, cross-validated by time.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/nezha_calibration.py [--data ../shared/datasets/nezha] [--folds 4]
       [--reuse DIR] [--out DIR]

For each system the pipeline of ``benchmarks/nezha.py`` runs once (import,
detect with the library's defaults and a 60 s lead, nothing fitted to the
labels): one incident per labelled fault window, and the p-value of every
(window, symptom). The windows are then split by time into ``--folds``
contiguous blocks (block ``j`` = the ``j``-th quarter of the day's windows in
time order). For each block, the likelihood curves
(:class:`~diagnosis.learning.likelihood.LikelihoodFitter`, default settings,
per detector kind) are fitted on the p-values and root causes of the
*other* blocks only, and the held-out block's soft evidence is recomputed
from its own p-values with the fitted curves (what ``detect`` does with a
topology that has a ``likelihoods:`` section); its incidents are then scored.
"before" is the same windows scored with the default beta-uniform ratio
``a * p**(a - 1)``; "fitted R entered directly" uses the fitted curves as the
symptom's soft-evidence ratio without the conversion through the symptom's
table that ``detect`` makes (``virtual_ratio``), to show what that
conversion does. Printed per system: AC@1 and top-1 ECE before and after
fitting, plain and conditioned on "some component is faulty"
(``score_frame(assume_fault=True)``), and the top-1 reliability table.

``--reuse DIR`` reads the incidents and evidence a previous run wrote with
``--out DIR`` (skips detect: minutes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nezha as nz  # noqa: E402

from diagnosis import build_network, make_engine  # noqa: E402
from diagnosis.learning.likelihood import (  # noqa: E402
    LikelihoodFitter,
    labelled_p_values,
    read_evidence,
    symptom_rates,
)
from diagnosis.logs.formats import read_incidents, write_incidents  # noqa: E402
from diagnosis.logs.scoring import ScoreStats, score_frame  # noqa: E402
from diagnosis.telemetry.detectors import EvidenceModel  # noqa: E402

BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0)


def detected(system: str, data: Path, work: Path, reuse: Path | None):
    """The incident frame and the evidence table of one system (detect once, or read a previous run)."""
    day = nz.SYSTEMS[system]["day"]
    if reuse is not None:
        frame, _ = read_incidents(reuse / f"{day}-incidents.jsonl")
        from diagnosis import load_topology

        return frame, read_evidence(reuse / f"{day}-evidence.csv"), load_topology(nz.SYSTEMS[system]["topology"])
    d = nz.load(system, data, work)
    frame, _, report = nz.detect(
        d["topology"], d["metrics"], d["windows"], traces=d["traces"], logs=d["logs"], reference=d["reference"],
        **nz.DEFAULTS,
    )  # fmt: skip
    frame, _ = read_incidents(write_incidents(frame, work / f"{day}-incidents.jsonl"))
    report.evidence.to_csv(work / f"{day}-evidence.csv", index=False)
    return frame, read_evidence(work / f"{day}-evidence.csv"), d["topology"]


def reweigh(frame, evidence: pd.DataFrame, topology, model: EvidenceModel, rates=None):
    """The frame with every soft observation's likelihoods recomputed from its p-value by ``model``.

    ``rates`` (:func:`symptom_rates`) as ``detect`` passes them; None enters a fitted ratio directly."""
    watches = {d.symptom: d.watches for d in topology.detectors}
    key = evidence["window_id"].astype(str) + "\x00" + evidence["symptom"].astype(str)
    sf = None if rates is None else np.array([rates.get(s, (np.nan, np.nan)) for s in evidence["symptom"]])
    pf, pp = model.likelihoods(evidence["p_value"].to_numpy(), [watches.get(s) for s in evidence["symptom"]], sf)
    lut_f, lut_p = dict(zip(key, pf)), dict(zip(key, pp))
    obs = frame.observations.copy()
    soft = (obs["value"] == "soft").to_numpy()
    k = (obs["incident_id"].astype(str) + "\x00" + obs["symptom"].astype(str)).to_numpy()
    obs.loc[soft, "p_fired"] = [lut_f[x] for x in k[soft]]
    obs.loc[soft, "p_passed"] = [lut_p[x] for x in k[soft]]
    return replace(frame, observations=obs)


def subset(frame, ids):
    ids = set(ids)
    return replace(
        frame,
        incidents=frame.incidents[frame.incidents["id"].isin(ids)].reset_index(drop=True),
        observations=frame.observations[frame.observations["incident_id"].isin(ids)].reset_index(drop=True),
        actions=frame.actions[frame.actions["incident_id"].isin(ids)].reset_index(drop=True),
    )


def score(network, engine, frames):
    """Rows and merged stats over the held-out folds, plain and with assume_fault."""
    out = {}
    for af in (False, True):
        rows, stats = [], ScoreStats()
        for f in frames:
            r, s, _ = score_frame(network, engine, f, assume_fault=af)
            rows.append(r)
            stats.add(s)
        out[af] = (pd.concat(rows, ignore_index=True), stats.levels["component"].metrics())
    return out


def reliability(rows: pd.DataFrame) -> list[tuple[str, int, float, float]]:
    p = rows["p_top_component"].to_numpy()
    hit = (rows["rank_component"] == 1).to_numpy()
    b = np.clip(np.searchsorted(BINS, p, side="right") - 1, 0, len(BINS) - 2)
    out = []
    for i in range(len(BINS) - 1):
        sel = b == i
        if sel.any():
            out.append(
                (f"[{BINS[i]:.1f}, {BINS[i + 1]:.1f})", int(sel.sum()), float(p[sel].mean()), float(hit[sel].mean()))
            )
    return out


def run_system(system: str, frame, evidence, topology, folds: int) -> dict:
    t0 = time.perf_counter()
    inc = frame.incidents.sort_values("opened", kind="stable")
    ids = inc["id"].astype(str).to_numpy()
    blocks = np.array_split(np.arange(len(ids)), folds)
    labelled = labelled_p_values(evidence, frame, topology)
    network = build_network(topology)
    engine = make_engine(network)
    rates = symptom_rates(topology, engine=engine)
    before, after, direct, fitted = [], [], [], []
    for blk in blocks:
        test = set(ids[blk])
        train = labelled[~labelled["incident_id"].isin(test)]
        fitter = LikelihoodFitter().fit(train["p_value"], train["faulty"], train["watches"])
        fitted.append(fitter)
        held = subset(frame, test)
        ev = evidence[evidence["window_id"].astype(str).isin(test)]
        before.append(reweigh(held, ev, topology, EvidenceModel()))
        after.append(reweigh(held, ev, topology, EvidenceModel(curves=fitter.curves_), rates))
        direct.append(reweigh(held, ev, topology, EvidenceModel(curves=fitter.curves_)))
    res = {
        "before": score(network, engine, before),
        "after": score(network, engine, after),
        "direct": score(network, engine, direct),
    }
    n1 = int(labelled["faulty"].sum())
    print(
        f"\n=== {system}: {len(ids)} fault windows in {folds} time blocks of {[len(b) for b in blocks]} windows; "
        f"{len(labelled)} labelled p-values ({n1} at a root-cause component); {time.perf_counter() - t0:.1f} s"
    )
    print(
        f"  {'held-out, cross-validated':<40} {'AC@1':>6} {'AC@3':>6} {'MRR':>6} {'top-1 mean P':>13} {'hit rate':>9} {'ECE top-1':>10}"
    )
    names = {"before": "before fitting", "after": "after fitting", "direct": "fitted R entered directly"}
    for name in ("before", "after", "direct"):
        for af in (False, True):
            rows, m = res[name][af]
            label = names[name] + (", assume-fault" if af else "")
            print(
                f"  {label:<40} {100 * m['AC@1']:6.1f} {100 * m['AC@3']:6.1f} {m['MRR']:6.3f} "
                f"{rows['p_top_component'].mean():13.3f} {(rows['rank_component'] == 1).mean():9.3f} {m['ece_top1']:10.3f}"
            )
    for af in (False, True):
        print(f"  top-1 reliability{' (assume-fault)' if af else ''}: bin, n, mean P, hit rate -- before | after")
        rb, ra = reliability(res["before"][af][0]), reliability(res["after"][af][0])
        for r in sorted({r[0] for r in rb + ra}):
            b = next((x for x in rb if x[0] == r), None)
            a = next((x for x in ra if x[0] == r), None)
            fmt = lambda x: f"{x[1]:3d} {x[2]:.3f} {x[3]:.3f}" if x else f"{'-':>3} {'-':>5} {'-':>5}"  # noqa: E731
            print(f"    {r:<11} {fmt(b)} | {fmt(a)}")
    print(
        "  fitted log10 LR per kind (fold 1) at p = 1, 0.1, 0.01, 1e-3, 1e-5 (default: -0.60, 0.15, 0.90, 1.65, 3.15):"
    )
    pts = np.array([1.0, 0.1, 0.01, 1e-3, 1e-5])
    for c in fitted[0].curves_:
        n = fitted[0].counts_[c.watches]
        print(f"    {c.watches:<12} n={n[0]:3d}/{n[1]:4d}  " + " ".join(f"{v:6.2f}" for v in np.log10(c.ratio(pts))))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", type=Path, default=nz.ROOT_DATA, help="the Nezha data folder (default ../shared/datasets/nezha)"
    )
    ap.add_argument("--folds", type=int, default=4, help="contiguous time blocks of windows (default 4)")
    ap.add_argument("--systems", nargs="+", choices=list(nz.SYSTEMS), default=list(nz.SYSTEMS))
    ap.add_argument("--out", type=Path, help="keep the incidents and evidence here")
    ap.add_argument("--reuse", type=Path, help="read the incidents and evidence of a previous --out run (skip detect)")
    args = ap.parse_args()
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="diagnosis-calib-") as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for system in args.systems:
            frame, evidence, topology = detected(system, args.data, work, args.reuse)
            run_system(system, frame, evidence, topology, args.folds)
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
