"""Root-cause localisation on real labelled fault injections: the Nezha data (IntelligentDDS/Nezha, FSE 2023).

Usage: .venv/bin/python benchmarks/nezha.py [--data ../shared/datasets/nezha] [--out DIR] [--justify] [--sensitivity]

For each system the whole pipeline runs as a user would run it:

1. import: the fault list -> a windows CSV (import_nezha, write_windows, read_windows);
2. detect: the metrics (and, for Train Ticket, the traces) -> one incident
   record per window, written as JSON Lines and read back (detect,
   write_incidents, read_incidents);
3. diagnose and score: every incident against the topology's Bayesian
   network (score_frame): service-level AC@1/3/5, Avg@5, MRR and the
   calibration of P(component has a fault).

Train Ticket also reads its logs (``log/``) and the fault-free reference
minute (``fault-free/``, ``--reference``). Every system is run twice more
**one incident at a time**, each window with only its own telemetry (its
baseline and window): with the default null (``auto``, which falls back to
each window's own ``self`` null) and with a null fitted on the quiet windows
of the other half of the day (``fit_null``, cross-validated). Calibration is
printed plain and conditioned on "some component is faulty"
(``score_frame(assume_fault=True)``).

Three baselines from the same run: **SimpleRCA-style rules** count threshold
alerts per service (|robust z| > 3 on any series, the callee's for an edge;
ERROR/WARN or error-keyword log templates writing more than in the
reference) and rank by the count; **n-sigma** ranks services by their largest
robust z-score over the incident window, in either direction, over every
metric of their pods; **detectors only** ranks them by the smallest p-value of
their symptoms (the same evidence as ours, without the model). The published
figures (Nezha, FSE 2023, using logs, metrics and traces; 56 Online Boutique
and 45 Train Ticket faults over two days) are printed for reference.

Nothing is fitted to the labels: the settings are the library's defaults
plus a lead of one sampling interval (60 s), chosen before the run; the null
distributions are fitted on quiet windows of the same data (times only).
``--sensitivity`` reruns with other settings and prints every result;
``--justify`` prints the figures behind the choice of the detector
statistic (synthetic shifts, and real quiet versus incident windows).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from diagnosis import build_network, load_topology, make_engine
from diagnosis.logs.formats import read_incidents, write_incidents
from diagnosis.logs.scoring import calibrated_ece_top1, score_frame
from diagnosis.telemetry import (
    detect,
    fit_null,
    import_nezha,
    rank_nsigma,
    read_logs,
    read_metrics,
    read_reference,
    read_spans,
    read_windows,
    write_windows,
)
from diagnosis.telemetry.detectors import EvidenceModel

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = {
    "Online Boutique": {
        "day": "2022-08-22",
        "topology": ROOT / "data" / "topologies" / "online-boutique.yaml",
        "published": (92.9, 96.4, 96.4),
    },
    "Train Ticket": {
        "day": "2023-01-29",
        "topology": ROOT / "data" / "topologies" / "train-ticket-nezha.yaml",
        "published": (86.7, 97.8, 97.8),
    },
}
CODE_LEVEL = ("return", "exception")
DEFAULTS = {"lead": "60s"}
USE_LOGS = True


def ac(ranks: np.ndarray) -> dict[str, float]:
    r = np.asarray(ranks, dtype=np.float64)
    r = np.where(np.isnan(r), np.inf, r)
    out = {f"AC@{k}": float(np.mean(r <= k)) for k in range(1, 6)}
    out["Avg@5"] = float(np.mean([out[f"AC@{k}"] for k in range(1, 6)]))
    out["MRR"] = float(np.mean(1.0 / r))
    return out


def load(system: str, data: Path, work: Path) -> dict:
    cfg = SYSTEMS[system]
    folder = data / cfg["day"]
    t0 = time.perf_counter()
    windows, imp = import_nezha(folder / "fault_list.json")
    wpath = write_windows(windows, work / f"{cfg['day']}-windows.csv")
    windows, w_rejects = read_windows(wpath)
    metrics = read_metrics(folder / "metric")
    traces = read_spans(folder / "trace") if (folder / "trace").is_dir() else None
    t_logs = time.perf_counter()
    logs = read_logs(folder / "log") if (folder / "log").is_dir() and USE_LOGS else None
    t_logs = time.perf_counter() - t_logs
    reference = read_reference(folder / "fault-free") if (folder / "fault-free").is_dir() and USE_LOGS else None
    topo = load_topology(cfg["topology"])
    return {
        "windows": windows,
        "import": imp,
        "w_rejects": w_rejects,
        "metrics": metrics,
        "traces": traces,
        "logs": logs,
        "logs_s": t_logs,
        "reference": reference,
        "topology": topo,
        "read_s": time.perf_counter() - t0,
    }


def run(system: str, d: dict, work: Path, *, network=None, engine=None, **settings) -> dict:
    t0 = time.perf_counter()
    kw = {**DEFAULTS, **settings}
    frame, rejects, report = detect(
        d["topology"], d["metrics"], d["windows"], traces=d["traces"], logs=d["logs"], reference=d["reference"], **kw
    )
    path = write_incidents(frame, work / f"{SYSTEMS[system]['day']}-incidents.jsonl")
    frame, read_rejects = read_incidents(path)
    t_detect = time.perf_counter() - t0
    network = network or build_network(d["topology"])
    engine = engine or make_engine(network)
    rows, stats, score_rejects = score_frame(network, engine, frame)
    t_score = time.perf_counter() - t0 - t_detect
    rows = rows.merge(d["windows"][["id", "fault_type"]], left_on="incident_id", right_on="id", how="left").drop(
        columns="id"
    )
    rows_af, stats_af, _ = score_frame(network, engine, frame, assume_fault=True)
    return {
        "rows": rows, "stats": stats, "report": report, "rejects": rejects + read_rejects + score_rejects,
        "stats_af": stats_af, "rows_af": rows_af,
        "network": network, "engine": engine, "detect_s": t_detect, "score_s": t_score,
    }  # fmt: skip


def halves_nulls(d: dict) -> tuple[pd.Timestamp, dict]:
    """Null models fitted on the quiet windows of each half of the day (cross-validation: an incident uses the other half's)."""
    m = d["metrics"].samples
    mid = m["time"].min() + (m["time"].max() - m["time"].min()) / 2
    out = {}
    for half, sel in (("first", m["time"] < mid), ("second", m["time"] >= mid)):
        tr = None
        if d["traces"] is not None:
            sp = d["traces"].spans
            tr = sp[(sp["start"] < mid) if half == "first" else (sp["start"] >= mid)]
        stat = {"statistic": DEFAULTS["statistic"]} if "statistic" in DEFAULTS else {}
        out[half] = fit_null(d["topology"], m[sel], d["windows"], traces=tr, lead=DEFAULTS["lead"], **stat)
    return mid, out


def run_alone(system: str, d: dict, work: Path, *, network, engine, nulls=None, **settings) -> dict:
    """Each window detected on its own, with only its own telemetry (its baseline and window) and no other window.

    With ``nulls`` (:func:`halves_nulls`), each window uses the null fitted on the other half of the day."""
    kw = {**DEFAULTS, **settings}
    frames = []
    for i in range(len(d["windows"])):
        w = d["windows"].iloc[[i]].reset_index(drop=True)
        lo, hi = w["baseline_start"].iloc[0], w["end"].iloc[0]
        m = d["metrics"].samples
        m = m[(m["time"] >= lo) & (m["time"] <= hi)]
        tr = None
        if d["traces"] is not None:
            sp = d["traces"].spans
            tr = sp[(sp["start"] >= lo) & (sp["start"] <= hi)]
        extra = {}
        if d.get("logs") is not None:
            lg = d["logs"].lines
            extra["logs"] = lg[(lg["time"] >= lo) & (lg["time"] <= hi)]
        if nulls is not None:
            mid, models = nulls
            extra["null"] = models["second"] if w["start"].iloc[0] < mid else models["first"]
        frame, _, _ = detect(d["topology"], m, w, traces=tr, reference=d["reference"], **extra, **kw)
        frames.append(frame)
    rows = []
    for f in frames:
        r, _, _ = score_frame(network, engine, f)
        rows.append(r)
    rows = pd.concat(rows, ignore_index=True)
    return rows.merge(d["windows"][["id", "fault_type"]], left_on="incident_id", right_on="id", how="left").drop(
        columns="id"
    )


def simple_rule_ranks(report, d: dict, threshold: float = 3.0) -> np.ndarray:
    """SimpleRCA-style rule baseline: count threshold alerts per service, the service with most alerts wins.

    Alerts: every series (pod metric, edge latency: the callee's) whose robust z exceeds ``threshold`` in
    either direction in the window, and every log template with ERROR/WARN level or an error keyword
    (error, exception, fail) that writes more lines in the window than in the same length of reference."""
    sc = report.scores
    comps = list(d["topology"].component_names)
    z = np.fmax(sc["z_up"].to_numpy(dtype=np.float64), sc["z_down"].to_numpy(dtype=np.float64))
    owner = sc["component"].astype(str).str.split("->").str[-1]
    alerts = pd.DataFrame({"window_id": sc["window_id"], "component": owner, "n": (z > threshold).astype(int)})
    counts = alerts.groupby(["window_id", "component"])["n"].sum()
    logs = d.get("logs")
    ref = d.get("reference")
    if logs is not None and ref is not None and ref.logs is not None:
        lg = logs.lines
        rl = ref.logs.lines
        ref_len = max((rl["time"].max() - rl["time"].min()).total_seconds(), 1.0)

        def err(x):
            kw = x["template"].astype(str).str.contains("(?i)error|exception|fail")
            return x[x["level"].isin(["ERROR", "WARN"]) | kw]

        rc = err(rl).groupby(["component", "template"]).size() / ref_len
        extra = []
        for w in d["windows"].itertuples(index=False):
            lo = w.start - pd.Timedelta(DEFAULTS["lead"])
            sub = err(lg[(lg["time"] >= lo) & (lg["time"] <= w.end)])
            wc = sub.groupby(["component", "template"]).size() / max((w.end - lo).total_seconds(), 1.0)
            up = wc > rc.reindex(wc.index).fillna(0.0)
            for comp, n in up.groupby(level=0).sum().items():
                extra.append((w.id, comp, int(n)))
        if extra:
            e = (
                pd.DataFrame(extra, columns=["window_id", "component", "n"])
                .groupby(["window_id", "component"])["n"]
                .sum()
            )
            counts = counts.add(e, fill_value=0)
    ranks = []
    for w in d["windows"].itertuples(index=False):
        c = counts.xs(w.id, level=0) if w.id in counts.index.get_level_values(0) else pd.Series(dtype=float)
        c = c.reindex(comps).fillna(0.0)
        ranks.append(float(1 + (c > c.get(w.component, 0.0)).sum()) if w.component in c.index else np.nan)
    return np.array(ranks)


def detectors_only(report, windows: pd.DataFrame, components) -> np.ndarray:
    """Rank of the true component when components are ranked by the smallest p-value of their symptoms."""
    ev = report.evidence
    ranks = []
    for w in windows.itertuples(index=False):
        e = ev[ev["window_id"] == w.id]
        best = e.groupby("component")["p_value"].min().reindex(list(components)).fillna(1.0)
        ranks.append(float(1 + (best < best.get(w.component, 1.0)).sum()) if w.component in best.index else np.nan)
    return np.array(ranks)


def nsigma_ranks(d: dict, lead: str) -> tuple[np.ndarray, pd.DataFrame]:
    comps = d["topology"].component_names
    r = rank_nsigma(d["metrics"].samples, d["windows"], components=comps, lead=lead)
    ranks = []
    for w in d["windows"].itertuples(index=False):
        hit = r[(r["window_id"] == w.id) & (r["component"] == w.component)]
        ranks.append(float(hit["rank"].iloc[0]) if len(hit) else np.nan)
    return np.array(ranks), r


def why(row, report) -> str:
    ev = report.evidence
    e = ev[(ev["window_id"] == row.incident_id)].sort_values("p_value")
    mine = e[e["component"] == row.true_component]
    top = e[e["component"] == row.top_component]
    if mine.empty:
        return "no telemetry for the true service"
    best = mine.iloc[0]
    t = f"true service's strongest signal {best['symptom']} p={best['p_value']:.2g} ({best['top_signal']})"
    if best["p_value"] > 0.01:
        return "no anomalous signal on the true service: " + t
    other = f"; {row.top_component} shows {top.iloc[0]['symptom']} p={top.iloc[0]['p_value']:.2g}" if len(top) else ""
    return "outranked: " + t + other


def _if_calibrated(p_top: np.ndarray) -> str:
    """The top-1 ECE a perfectly calibrated model with these top probabilities would show (its sampling noise)."""
    c = calibrated_ece_top1(p_top)
    return f"a calibrated model would show {c['mean']:.3f} [5-95 %: {c['q05']:.3f}, {c['q95']:.3f}]"


def fmt_row(name: str, m: dict, extra: str = "") -> str:
    return f"  {name:<24} {100 * m['AC@1']:6.1f} {100 * m['AC@3']:6.1f} {100 * m['AC@5']:6.1f} {100 * m['Avg@5']:6.1f} {m['MRR']:6.3f}{extra}"


def report_system(system: str, d: dict, res: dict, ns: np.ndarray) -> dict:
    rows, stats, rep = res["rows"], res["stats"], res["report"]
    comp = stats.levels["component"].metrics()
    ours = ac(rows["rank_component"].to_numpy())
    alone = ac(res["alone"]["rank_component"].to_numpy()) if "alone" in res else None
    alone_h = ac(res["alone_h"]["rank_component"].to_numpy()) if "alone_h" in res else None
    rule = ac(simple_rule_ranks(res["report"], d))
    det = ac(detectors_only(rep, d["windows"], d["topology"].component_names))
    nsg = ac(ns)
    n = len(rows)
    pub = SYSTEMS[system]["published"]
    print(
        f"\n=== {system} ({SYSTEMS[system]['day']}): {n} faults, {len(d['topology'].component_names)} candidate components; "
        f"read {d['read_s']:.1f} s, detect {res['detect_s']:.1f} s, diagnose+score {res['score_s']:.1f} s"
    )
    for line in d["import"].lines() + d["metrics"].report.lines()[:1] + list(d["metrics"].report.notes):
        print("  " + line.strip())
    if d["traces"] is not None:
        print("  traces: " + d["traces"].report.lines()[0] + "; " + "; ".join(d["traces"].report.notes))
    if d.get("logs") is not None:
        rep_l = d["logs"].report
        print(f"  logs: {rep_l.lines()[0]}; {rep_l.rows / max(d['logs_s'], 1e-9):,.0f} lines/s")
    for line in rep.lines():
        print("  " + line.strip())
    if res["rejects"]:
        print(f"  {len(res['rejects'])} incidents set aside: {res['rejects'][:3]}")
    print(f"\n  {'service level, %':<24} {'AC@1':>6} {'AC@3':>6} {'AC@5':>6} {'Avg@5':>6} {'MRR':>6}")
    print(fmt_row("diagnosis (this)", ours))
    if alone is not None:
        pa = res["alone"]["p_top_component"].to_numpy()
        ha = (res["alone"]["rank_component"] == 1).to_numpy()
        print(fmt_row("  one at a time", alone, f"   top-1 mean P {pa.mean():.3f} vs hit rate {ha.mean():.3f}"))
    if alone_h is not None:
        pa = res["alone_h"]["p_top_component"].to_numpy()
        ha = (res["alone_h"]["rank_component"] == 1).to_numpy()
        print(
            fmt_row(
                "  alone, null of other half", alone_h, f"   top-1 mean P {pa.mean():.3f} vs hit rate {ha.mean():.3f}"
            )
        )
    print(fmt_row("detectors only (no BN)", det))
    print(fmt_row("n-sigma baseline", nsg))
    print(fmt_row("SimpleRCA-style rules", rule))
    print(
        f"  {'published (Nezha, L+M+T)':<24} {pub[0]:6.1f} {pub[1]:6.1f} {pub[2]:6.1f} {'-':>6} {'-':>6}   (other fault set: two days)"
    )
    p_top = rows["p_top_component"].to_numpy()
    hit = (rows["rank_component"] == 1).to_numpy()
    print(
        f"\n  calibration of P(component has a fault): Brier {comp['brier']:.4f}, log loss {comp['log_loss']:.4f}, ECE {comp['ece']:.4f} "
        f"over {comp['n_pairs']} (incident, service) pairs; top-1: mean P {p_top.mean():.3f} vs hit rate {hit.mean():.3f}, ECE(top-1) {comp['ece_top1']:.3f}"
        f" ({_if_calibrated(p_top)})"
    )
    comp_af = res["stats_af"].levels["component"].metrics()
    p_af = res["rows_af"]["p_top_component"].to_numpy()
    print(
        f"  conditioned on some component being faulty (score_frame(assume_fault=True)): top-1 mean P {p_af.mean():.3f} "
        f"vs hit rate {hit.mean():.3f}, ECE(top-1) {comp_af['ece_top1']:.3f} ({_if_calibrated(p_af)}), Brier {comp_af['brier']:.4f}, "
        f"ECE {comp_af['ece']:.4f}"
    )
    bins = [b for b in comp["reliability_top1"] if b["n"]]
    print(
        "  top-1 reliability: "
        + "; ".join(f"{b['bin']} n={b['n']} P={b['mean_p']:.2f} hit={b['observed']:.2f}" for b in bins)
    )
    print(f"\n  {'by fault type':<16} {'n':>3} {'AC@1':>6} {'AC@3':>6} {'n-sigma AC@1':>13}")
    for ft, g in rows.groupby("fault_type"):
        idx = g.index.to_numpy()
        print(
            f"  {ft:<16} {len(g):>3} {100 * np.mean(g['rank_component'] <= 1):6.1f} {100 * np.mean(g['rank_component'] <= 3):6.1f} {100 * np.mean(ns[idx] <= 1):13.1f}"
        )
    misses = rows[rows["rank_component"] > 1]
    print(f"\n  missed at AC@1 ({len(misses)}):")
    for r in misses.itertuples(index=False):
        print(
            f"    {r.incident_id} {r.fault_type:<15} true {r.true_component} rank {int(r.rank_component)}, top {r.top_component} "
            f"(P {r.p_top_component:.2f}): {why(r, rep)}"
        )
    return {
        "ours": ours,
        "detectors_only": det,
        "nsigma": nsg,
        "calibration": {k: comp[k] for k in ("brier", "log_loss", "ece", "ece_top1")},
        "mean_p_top": float(p_top.mean()),
        "by_type": rows.groupby("fault_type")["rank_component"].apply(lambda x: float(np.mean(x <= 1))).to_dict(),
    }


def sensitivity(systems: dict, work: Path) -> None:
    variants = [
        ("defaults (lead 60 s)", {}),
        ("lead 0 s", {"lead": "0s"}),
        ("hard evidence", {"evidence": EvidenceModel(mode="hard")}),
        ("shape 0.1", {"evidence": EvidenceModel(shape=0.1)}),
        ("shape 0.5", {"evidence": EvidenceModel(shape=0.5)}),
        ("Cauchy null only", {"null": "cauchy"}),
        ("min_baseline 8", {"min_baseline": 8}),
        ("no presence", {"presence": False}),
        ("exclude incidents", {"exclude_incidents": True}),
    ]
    print("\n=== sensitivity (every variant printed; the defaults were fixed before any run)")
    print(f"  {'variant':<22} " + "  ".join(f"{s[:15]:>15} AC@1 AC@3 Avg@5" for s in systems))
    for name, kw in variants:
        cells = []
        for system, (d, base) in systems.items():
            res = run(system, d, work, network=base["network"], engine=base["engine"], **kw)
            m = ac(res["rows"]["rank_component"].to_numpy())
            cells.append(f"{'':>15} {100 * m['AC@1']:4.0f} {100 * m['AC@3']:4.0f} {100 * m['Avg@5']:5.1f}")
        print(f"  {name:<22} " + "  ".join(cells))
    # windows of another length: re-import
    for dur in ("3min", "8min"):
        cells = []
        for system, (d, base) in systems.items():
            w, _ = import_nezha(ROOT_DATA / SYSTEMS[system]["day"] / "fault_list.json", duration=dur)
            res = run(system, {**d, "windows": w}, work, network=base["network"], engine=base["engine"])
            m = ac(res["rows"]["rank_component"].to_numpy())
            cells.append(f"{'':>15} {100 * m['AC@1']:4.0f} {100 * m['AC@3']:4.0f} {100 * m['Avg@5']:5.1f}")
        print(f"  {'window ' + dur:<22} " + "  ".join(cells))


# --------------------------------------------------------------------------- justification of the statistic
def _stat_robust(b, x):
    med = np.median(b)
    s = max(1.4826 * np.median(np.abs(b - med)), 0.1 * abs(med), 1e-9)
    return np.max((x - med) / s)


def _stat_majority(b, x):
    """The robust z that more than half of the window's values reach (``detect(statistic="majority")``)."""
    med = np.median(b)
    s = max(1.4826 * np.median(np.abs(b - med)), 0.1 * abs(med), 1e-9)
    z = np.sort((x - med) / s)
    return z[len(z) - (len(z) // 2 + 1)]


def _stat_sigma(b, x):
    return np.max((x - b.mean()) / max(b.std(ddof=1), 1e-9))


def _stat_rank(b, x):
    from scipy.stats import mannwhitneyu

    return -np.log10(mannwhitneyu(x, b, alternative="greater").pvalue)


def _stat_changepoint(b, x):
    """Largest standardised mean shift over every split point inside the window (binary segmentation)."""
    y = np.concatenate([b, x])
    n = len(y)
    s = max(1.4826 * np.median(np.abs(np.diff(y))) / np.sqrt(2), 1e-9)
    best = -np.inf
    for k in range(len(b), n):
        left, right = y[:k], y[k:]
        best = max(best, (right.mean() - left.mean()) / s * np.sqrt(len(left) * len(right) / n))
    return best


STATS = {
    "robust z (max)": _stat_robust,
    "robust z (majority)": _stat_majority,
    "mean/sd z (3-sigma)": _stat_sigma,
    "rank test (-log10 p)": _stat_rank,
    "change point": _stat_changepoint,
}


def justify(systems: dict, seed: int = 20230129) -> None:
    rng = np.random.default_rng(seed)
    n_b, n_w, trials = 10, 5, 2000
    deltas = (2.0, 4.0, 8.0, 16.0)
    print("\n=== justification of the detector statistic")
    print(
        f"  synthetic: baseline {n_b} values, window {n_w} values; the fault shifts the last k window values by delta noise units;"
    )
    print("  noise Student-t(3); with probability 0.3 one baseline value is a spike of +20 (another incident's tail).")
    print(
        "  power = share of faulty windows above the statistic's 1% false-alarm threshold (fitted on fault-free windows)"
    )
    print(f"  {'statistic':<22} " + " ".join(f"{f'k={k} d={dl:g}':>9}" for k in (1, 3, 5) for dl in deltas))

    def draw(k, dl):
        b = rng.standard_t(3, size=(trials, n_b))
        spike = rng.random(trials) < 0.3
        b[spike, rng.integers(0, n_b, spike.sum())] += 20.0
        x = rng.standard_t(3, size=(trials, n_w))
        if k:
            x[:, n_w - k :] += dl
        return b, x

    null_draw = draw(0, 0.0)
    sims = {(k, dl): draw(k, dl) for k in (1, 3, 5) for dl in deltas}
    for name, f in STATS.items():
        thr = np.quantile([f(b, x) for b, x in zip(*null_draw)], 0.99)
        power = [np.mean(np.array([f(b, x) for b, x in zip(*sims[key])]) > thr) for key in sims]
        print(f"  {name:<22} " + " ".join(f"{p:9.2f}" for p in power))
    print(
        "\n  real data, label-free (only the incident times are used): for each statistic and rule, the threshold is the"
    )
    print("  99th percentile of the rule's largest score per quiet window; a window is flagged when a rule exceeds it.")
    from diagnosis.telemetry.detect import prepare_signals
    from diagnosis.telemetry.windows import quiet_windows

    for system, (d, _) in systems.items():
        sig, _ = prepare_signals(d["topology"], d["metrics"], traces=None)
        sig = sig[sig["value"].notna()].sort_values("time", kind="stable")
        t = sig["time"]
        quiet = quiet_windows(d["windows"], span=(t.min(), t.max()), guard="60s")
        pairs = {"quiet": [], "incident": []}
        for kind, wins in (("quiet", quiet), ("incident", d["windows"])):
            for w in wins.itertuples(index=False):
                lo = w.start - pd.Timedelta("60s")
                base = sig[(t >= w.baseline_start) & (t < lo)]
                win = sig[(t >= lo) & (t <= w.end)]
                bg = dict(tuple(base.groupby(["entity", "metric"])))
                for key, g in win.groupby(["entity", "metric"]):
                    if key not in bg or len(bg[key]) < 4:
                        continue
                    b, x = bg[key]["value"].to_numpy(), g["value"].to_numpy()
                    if g["direction"].iloc[0] == -1:
                        b, x = -b, -x
                    pairs[kind].append((w.id, g["rule"].iloc[0], b, x))
        cells = []
        for name, f in STATS.items():
            per = {}
            for kind, items in pairs.items():
                df = pd.DataFrame([(wid, rule, f(b, x)) for wid, rule, b, x in items], columns=["w", "rule", "v"])
                per[kind] = df.groupby(["w", "rule"])["v"].max().unstack()
            thr = per["quiet"].quantile(0.99)
            inc = (per["incident"] > thr.reindex(per["incident"].columns)).any(axis=1).mean()
            fa = (per["quiet"] > thr).any(axis=1).mean()
            cells.append(f"{name} {100 * inc:.0f}% (quiet {100 * fa:.0f}%)")
        print(f"  {system}, incident windows flagged: " + ", ".join(cells))


ROOT_DATA = ROOT.parent / "shared" / "datasets" / "nezha"


def main() -> None:
    global ROOT_DATA
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", type=Path, default=ROOT_DATA, help="the Nezha data folder (default ../shared/datasets/nezha)"
    )
    ap.add_argument(
        "--out", type=Path, help="keep the windows, incidents and scored rows here (default: a temporary folder)"
    )
    ap.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    ap.add_argument("--sensitivity", action="store_true", help="rerun with other settings and print every result")
    ap.add_argument("--justify", action="store_true", help="print the figures behind the choice of statistic")
    ap.add_argument(
        "--statistic",
        choices=["max", "majority", "combined"],
        default=None,
        help="the window statistic (default: detect's)",
    )
    args = ap.parse_args()
    if args.statistic:
        DEFAULTS["statistic"] = args.statistic
    ROOT_DATA = args.data
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="diagnosis-nezha-") as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        done, summary = {}, {}
        for system in args.systems:
            d = load(system, args.data, work)
            res = run(system, d, work)
            res["alone"] = run_alone(system, d, work, network=res["network"], engine=res["engine"])
            res["alone_h"] = run_alone(
                system, d, work, network=res["network"], engine=res["engine"], nulls=halves_nulls(d)
            )
            ns, _ = nsigma_ranks(d, DEFAULTS["lead"])
            summary[system] = report_system(system, d, res, ns)
            if args.out:
                res["rows"].to_csv(work / f"{SYSTEMS[system]['day']}-scored.csv", index=False)
                res["report"].evidence.to_csv(work / f"{SYSTEMS[system]['day']}-evidence.csv", index=False)
            done[system] = (d, res)
        if args.sensitivity:
            sensitivity(done, work)
        if args.justify:
            justify(done)
        if args.out:
            (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
