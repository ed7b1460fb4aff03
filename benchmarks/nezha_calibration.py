"""Fitted soft-evidence likelihoods on the Nezha data, cross-validated by time.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/nezha_calibration.py [--data ../shared/datasets/nezha] [--folds 4]
       [--reuse DIR] [--out DIR] [--pool systems] [--transfer] [--widen]

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
Beside each ECE: the top-1 ECE a perfectly calibrated model would show with
the same top probabilities on the same number of windows
(``calibrated_ece_top1``: outcomes drawn from the probabilities; mean and
5-95 % range), the sampling noise a measured ECE is to be read against.

Also printed: how often the held-out fitted ratio lies outside the range one
symptom can express under its table (``expressible_ratios``: above ``s / f``
or below ``(1 - s) / (1 - f)``), by detector kind, at root-cause components
and at the others, with the mean ``log10`` of the ratio lost to the clip.

``--pool systems`` fits each block's curves on the other blocks of *every*
system (``fit_likelihoods(history=...)``: a team with labelled history on
several systems; block ``j`` of every system is held out together).
``--transfer`` fits on every labelled window of the other systems and scores
every window of this one (one fold: no window of the scored system is
fitted on). ``--widen`` adds an experiment, not a library feature: per fold,
the tables of the detectors of a kind with a curve are widened just enough
that the curve's whole range is expressible (every fault mode of the
component made a trigger of the detector with the sensitivity that brings
``(1 - s) / (1 - f)`` down to the curve's smallest ratio, then the false
alarm lowered until ``s / f`` reaches its largest), and the block is scored
with that network.

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
    expressible_ratios,
    fit_likelihoods,
    labelled_p_values,
    read_evidence,
    symptom_rates,
)
from diagnosis.logs.formats import read_incidents, write_incidents  # noqa: E402
from diagnosis.logs.scoring import ScoreStats, calibrated_ece_top1, score_frame  # noqa: E402
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


def score(frames):
    """Rows and merged stats over the held-out folds (``(network, engine, frame)`` each), plain and with assume_fault."""
    out = {}
    for af in (False, True):
        rows, stats = [], ScoreStats()
        for network, engine, f in frames:
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


def with_detectors(topology, change):
    """The topology with ``change(component, detector)`` in place of every detector."""
    return replace(
        topology,
        components=tuple(replace(c, detectors=tuple(change(c, d) for d in c.detectors)) for c in topology.components),
    )


def widened(topology, curves):
    """``--widen``: the detector tables of the kinds with a curve widened to the curve's range (an experiment).

    Both steps are linear: with every fault mode a trigger, ``s`` is affine in
    the added modes' sensitivity and does not depend on the false alarm;
    ``f`` is affine in the false alarm. Each is solved from two exact
    ``symptom_rates`` and checked after."""
    span = {c.watches: (10.0 ** min(c.log10_ratio), 10.0 ** max(c.log10_ratio)) for c in curves}

    def added(sigma):
        def change(c, d):
            if d.watches not in span:
                return d
            extra = {m.name: sigma for m in c.fault_modes if m.name not in d.sensitivity}
            return replace(d, sensitivity={**d.sensitivity, **extra}) if extra else d

        return change

    r0, r1 = symptom_rates(with_detectors(topology, added(0.0))), symptom_rates(with_detectors(topology, added(1.0)))
    sigma = {}
    for d in topology.detectors:
        if d.watches in span:
            (s0, f), (s1, _) = r0[d.symptom], r1[d.symptom]
            need = 1.0 - span[d.watches][0] * (1.0 - f)  # the s that gives (1 - s) / (1 - f) = the smallest ratio
            sigma[d.symptom] = float(np.clip((need - s0) / (s1 - s0), 0.0, 1.0)) if s1 > s0 else 0.0

    def set_sigma(c, d):
        return added(sigma[d.symptom])(c, d) if sigma.get(d.symptom, 0.0) > 0 else d

    topo = with_detectors(topology, set_sigma)
    ra = symptom_rates(topo)
    rz = symptom_rates(with_detectors(topo, lambda c, d: replace(d, false_alarm=0.0) if d.watches in span else d))

    def lower_alarm(c, d):
        if d.watches not in span or d.false_alarm == 0:
            return d
        (s, f), (sz, fz) = ra[d.symptom], rz[d.symptom]
        top = span[d.watches][1]
        if s >= top * f:
            return d
        ds, df = (s - sz) / d.false_alarm, (f - fz) / d.false_alarm  # s = sz + ds a, f = fz + df a
        den = top * df - ds
        alarm = (sz - top * fz) / den if den > 0 else 0.0
        return replace(d, false_alarm=float(np.clip(alarm, 1e-6, d.false_alarm)))

    return with_detectors(topo, lower_alarm)


def clip_table(rows: pd.DataFrame) -> None:
    """Share of held-out fitted ratios outside what the symptom's table can express, per kind and class."""
    print("  fitted ratio outside the symptom's range (held out): kind, class, n, share above s/f (mean log10 lost),")
    print("  share below (1-s)/(1-f) (mean log10 lost)")
    for (kind, faulty), g in rows.groupby(["watches", "faulty"]):
        above, below = g["R"] > g["hi"], g["R"] < g["lo"]
        lost_hi = np.log10(np.maximum(g["R"] / g["hi"], 1.0)).mean()
        lost_lo = np.log10(np.maximum(g["lo"] / g["R"], 1.0)).mean()
        label = "root cause" if faulty else "other"
        print(
            f"    {kind:<12} {label:<10} {len(g):5d}  {above.mean():6.3f} ({lost_hi:5.3f})  {below.mean():6.3f} ({lost_lo:5.3f})"
        )


def run_system(system: str, d: dict, plan: list, *, title: str, widen: bool = False) -> dict:
    """Score one system's held-out windows: ``plan`` is a list of (held-out window ids, fitting data)."""
    t0 = time.perf_counter()
    frame, evidence, topology, labelled = d["frame"], d["evidence"], d["topology"], d["labelled"]
    network, engine, rates = d["network"], d["engine"], d["rates"]
    variants = ["before", "after", "direct"] + (["widened"] if widen else [])
    frames = {v: [] for v in variants}
    fitted, clipped = [], []
    short = [0, 0]  # --widen: detectors checked, and those whose widened range still misses the curve's
    for test, train in plan:
        fitter = fit_likelihoods(*train[0], history=train[1:])[1]
        fitted.append(fitter)
        held = subset(frame, test)
        ev = evidence[evidence["window_id"].astype(str).isin(test)]
        frames["before"].append((network, engine, reweigh(held, ev, topology, EvidenceModel())))
        frames["after"].append(
            (network, engine, reweigh(held, ev, topology, EvidenceModel(curves=fitter.curves_), rates))
        )
        frames["direct"].append((network, engine, reweigh(held, ev, topology, EvidenceModel(curves=fitter.curves_))))
        if widen:
            topo_w = widened(topology, fitter.curves_)
            net_w = build_network(topo_w)
            eng_w = make_engine(net_w)
            rates_w = symptom_rates(topo_w, engine=eng_w)
            for c in fitter.curves_:  # do the widened tables express the whole curve? (not always reachable)
                for det in (x for x in topo_w.detectors if x.watches == c.watches):
                    lo, hi = expressible_ratios(*rates_w[det.symptom])
                    short[0] += 1
                    short[1] += not (
                        lo[0] <= 10 ** min(c.log10_ratio) * 1.0001 and hi[0] >= 10 ** max(c.log10_ratio) * 0.9999
                    )
            frames["widened"].append(
                (net_w, eng_w, reweigh(held, ev, topo_w, EvidenceModel(curves=fitter.curves_), rates_w))
            )
        te = labelled[labelled["incident_id"].isin(test)]
        sf = np.array([rates[s] for s in te["symptom"]])
        lo, hi = expressible_ratios(sf[:, 0], sf[:, 1])
        clipped.append(te.assign(R=fitter.ratio(te["p_value"], te["watches"]), lo=lo, hi=hi))
    res = {v: score(frames[v]) for v in variants}
    n_win = sum(len(t) for t, _ in plan)
    n1 = int(labelled["faulty"].sum())
    print(
        f"\n=== {system}, {title}: {n_win} fault windows held out in {len(plan)} folds of {[len(t) for t, _ in plan]}; "
        f"{len(labelled)} labelled p-values ({n1} at a root-cause component); {time.perf_counter() - t0:.1f} s"
    )
    print(
        f"  {'held-out, cross-validated':<40} {'AC@1':>6} {'AC@3':>6} {'MRR':>6} {'top-1 mean P':>13} {'hit rate':>9} "
        f"{'ECE top-1':>10}  {'if calibrated: mean [5 %, 95 %]':>31}"
    )
    names = {
        "before": "before fitting",
        "after": "after fitting",
        "direct": "fitted R entered directly",
        "widened": "fitted, tables widened",
    }
    for name in variants:
        for af in (False, True):
            rows, m = res[name][af]
            label = names[name] + (", assume-fault" if af else "")
            floor = calibrated_ece_top1(rows["p_top_component"])
            print(
                f"  {label:<40} {100 * m['AC@1']:6.1f} {100 * m['AC@3']:6.1f} {m['MRR']:6.3f} "
                f"{rows['p_top_component'].mean():13.3f} {(rows['rank_component'] == 1).mean():9.3f} {m['ece_top1']:10.3f}"
                f"  {floor['mean']:>17.3f} [{floor['q05']:.3f}, {floor['q95']:.3f}]"
            )
    for af in (False, True):
        print(f"  top-1 reliability{' (assume-fault)' if af else ''}: bin, n, mean P, hit rate -- before | after")
        rb, ra = reliability(res["before"][af][0]), reliability(res["after"][af][0])
        for r in sorted({r[0] for r in rb + ra}):
            b = next((x for x in rb if x[0] == r), None)
            a = next((x for x in ra if x[0] == r), None)
            fmt = lambda x: f"{x[1]:3d} {x[2]:.3f} {x[3]:.3f}" if x else f"{'-':>3} {'-':>5} {'-':>5}"  # noqa: E731
            print(f"    {r:<11} {fmt(b)} | {fmt(a)}")
    clip_table(pd.concat(clipped, ignore_index=True))
    if widen:
        print(f"  widened tables: {short[1]} of {short[0]} (fold, detector) pairs still short of their curve's range")
    print(
        "  fitted log10 LR per kind (fold 1) at p = 1, 0.1, 0.01, 1e-3, 1e-5 (default: -0.60, 0.15, 0.90, 1.65, 3.15):"
    )
    pts = np.array([1.0, 0.1, 0.01, 1e-3, 1e-5])
    watched = {x.watches for x in topology.detectors}
    for c in fitted[0].curves_:
        if c.watches in watched:
            n = fitted[0].counts_[c.watches]
            print(
                f"    {c.watches:<12} n={n[0]:3d}/{n[1]:4d}  " + " ".join(f"{v:6.2f}" for v in np.log10(c.ratio(pts)))
            )
    return res


def plans(data: dict, system: str, *, folds: int, pool: str, transfer: bool) -> tuple[list, str]:
    """(held-out ids, [(topology, incidents, evidence) to fit on, this system first when it has some]) per fold."""
    d = data[system]
    others = [o for o in data if o != system]
    if transfer:
        train = [(data[o]["topology"], data[o]["frame"], data[o]["evidence"]) for o in others]
        return [(set(d["ids"]), train)], f"fitted on {' + '.join(others)} only"
    out = []
    for j in range(folds):
        fit_on = [system] + (others if pool == "systems" else [])
        train = []
        for s in fit_on:
            keep = set(data[s]["ids"]) - set(data[s]["ids"][data[s]["blocks"][j]])
            train.append((data[s]["topology"], subset(data[s]["frame"], keep), data[s]["evidence"]))
        out.append((set(d["ids"][d["blocks"][j]]), train))
    title = "fitted on the other blocks" + (" of every system, pooled" if pool == "systems" else "")
    return out, title


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", type=Path, default=nz.ROOT_DATA, help="the Nezha data folder (default ../shared/datasets/nezha)"
    )
    ap.add_argument("--folds", type=int, default=4, help="contiguous time blocks of windows (default 4)")
    ap.add_argument("--systems", nargs="+", choices=list(nz.SYSTEMS), default=list(nz.SYSTEMS))
    ap.add_argument("--out", type=Path, help="keep the incidents and evidence here")
    ap.add_argument("--reuse", type=Path, help="read the incidents and evidence of a previous --out run (skip detect)")
    ap.add_argument(
        "--pool",
        choices=("none", "systems"),
        default="none",
        help="systems: fit on the training blocks of every system, pooled (default none: this system's only)",
    )
    ap.add_argument("--transfer", action="store_true", help="fit on the other systems only, score every window")
    ap.add_argument("--widen", action="store_true", help="experiment: also score with the tables widened to the curves")
    args = ap.parse_args()
    t_all = time.perf_counter()
    needed = list(nz.SYSTEMS) if (args.pool == "systems" or args.transfer) else args.systems
    with tempfile.TemporaryDirectory(prefix="diagnosis-calib-") as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = {}
        for system in needed:
            frame, evidence, topology = detected(system, args.data, work, args.reuse)
            ids = frame.incidents.sort_values("opened", kind="stable")["id"].astype(str).to_numpy()
            network = build_network(topology)
            engine = make_engine(network)
            data[system] = {
                "frame": frame,
                "evidence": evidence,
                "topology": topology,
                "ids": ids,
                "blocks": np.array_split(np.arange(len(ids)), args.folds),
                "labelled": labelled_p_values(evidence, frame, topology),
                "network": network,
                "engine": engine,
                "rates": symptom_rates(topology, engine=engine),
            }
        for system in args.systems:
            plan, title = plans(data, system, folds=args.folds, pool=args.pool, transfer=args.transfer)
            run_system(system, data[system], plan, title=title, widen=args.widen)
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
