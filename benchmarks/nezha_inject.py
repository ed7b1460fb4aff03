"""Synthetic faults injected into real fault-free telemetry: is every fault type detectable on each system?

Usage: .venv/bin/python benchmarks/nezha_inject.py [--data ../shared/datasets/nezha]

Labelled days hold some fault types and not others, so each type is also
injected by hand into real telemetry recorded with no fault, and ``detect``
(default settings, one window at a time, nothing tuned) must find it:

* **pod CPU** (Online Boutique metrics, quiet windows between the labelled
  injections; Train Ticket metrics likewise): one pod's ``CpuUsageRate(%)``
  doubled (or multiplied by five) over the window;
* **edge delay** (Train Ticket fault-free trace minute 08:50): the caller's
  (client) spans of one call edge lengthened by 50 ms, the callee's own
  spans unchanged (time on the wire); either end explains it, so the
  verdict is on the caller or the callee;
* **service delay** (same minute): every call into and out of one service
  delayed by 50 ms on the wire (a delay on the pod's network, as the Nezha
  ``network_delay`` faults); the verdict is on that service;
* **removed log template** (Train Ticket fault-free logs): every line of the
  service's most frequent statement dropped from the window;
* **added ERROR template** (Train Ticket fault-free logs): a new ERROR
  statement written in 20 % of the service's spans;
* **ERROR echoed by the caller** (Train Ticket fault-free logs and traces):
  for each call edge (caller A, callee B) with at least 20 calls, a new
  ERROR statement written in 20 % of B's spans called by A, and in the same
  traces two new ERROR statements of A about the failed call (a catch block
  and the failed request's handler), written in A's nearest logging span
  above B's span; the verdict is on B, where the error started;
* **silent callee, caller ERROR** (same edges): B's failed spans (and their
  descendants in B) write none of their lines (an exception thrown before
  them, as Train Ticket's injected exceptions appear to do), A writes the
  two ERROR statements; the verdict is on B, "detected" when any of B's
  log symptoms has p < 0.01.

For the trace and log injections the fault-free recording is split at the
median time of its log lines: the first half is the reference, the second
the window. Reported per type: the
share of injections where the injected service's symptom has p < 0.01, and
where the service is ranked first by the Bayesian network; and, with no
injection, the share of (service, log symptom) pairs with p < 0.01 (false
alarms of the log detectors on fault-free traffic).

``--statistic`` (``detect(statistic=...)``): every metric and trace series is
scored by its largest robust z (``max``, detect's default), by the robust z a
majority of its window values reach (``majority``), or by both (``combined``:
each statistic's p-value under its own null, p = min(1, 2 min(p_max,
p_majority))). "first 2 min": the pod's CPU raised for
the first two minutes of the window only (of its six or seven minutes with
the lead), a fault shorter than the window. Last, the label-free calibration check: every
quiet window of each day (away from every labelled incident, metrics only,
each with its own ``self`` null, baselines not cleaned) and, per rule set of
a symptom, the share of (window, symptom) p-values below 0.01 (1 % when
calibrated).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from diagnosis import build_network, load_topology, make_engine
from diagnosis.logs.scoring import score_frame
from diagnosis.telemetry import detect, import_nezha, make_windows, quiet_windows, read_logs, read_metrics, read_spans
from diagnosis.telemetry.detect import Reference
from diagnosis.telemetry.logs import LogSet
from diagnosis.telemetry.quality import ReadReport
from diagnosis.telemetry.traces import SpanSet

ROOT = Path(__file__).resolve().parent.parent
TOPO = {
    "2022-08-22": ROOT / "data" / "topologies" / "online-boutique.yaml",
    "2023-01-29": ROOT / "data" / "topologies" / "train-ticket-nezha.yaml",
}


def verdict(topo, net, eng, frame, report, component: str, symptom_kind: str) -> tuple[bool, bool]:
    ev = report.evidence
    if ev.empty:
        return False, False
    mine = ev[(ev["component"] == component) & ev["symptom"].astype(str).str.endswith("." + symptom_kind)]
    detected = bool(len(mine)) and float(mine["p_value"].min()) < 0.01
    rows, _, _ = score_frame(net, eng, frame)
    return detected, bool(len(rows)) and rows["top_component"].iloc[0] == component


def cpu_injections(
    day: str, data: Path, rng: np.random.Generator, n: int = 12, factor: float = 2.0, minutes: float | None = None
) -> list[tuple[bool, bool]]:
    folder = data / day
    topo = load_topology(TOPO[day])
    net = build_network(topo)
    eng = make_engine(net)
    windows, _ = import_nezha(folder / "fault_list.json")
    m = read_metrics(folder / "metric").samples
    span = (m["time"].min(), m["time"].max())
    quiet = quiet_windows(windows, span=span, guard="30min")
    pods = sorted(m.loc[m["metric"] == "CpuUsageRate(%)", "entity"].unique())
    comps = set(topo.component_names)
    out = []
    picks = rng.choice(len(quiet), size=min(n, len(quiet)), replace=False)
    for qi in picks:
        w = quiet.iloc[[qi]].reset_index(drop=True)
        pod = pods[rng.integers(len(pods))]
        comp = m.loc[m["entity"] == pod, "component"].iloc[0]
        if comp not in comps:
            continue
        lo, hi = w["baseline_start"].iloc[0], w["end"].iloc[0]
        own = m[(m["time"] >= lo) & (m["time"] <= hi)].copy()
        hit = (own["entity"] == pod) & (own["metric"] == "CpuUsageRate(%)") & (own["time"] >= w["start"].iloc[0])
        if minutes is not None:  # a fault shorter than the window
            hit &= own["time"] < w["start"].iloc[0] + pd.Timedelta(minutes=minutes)
        own.loc[hit, "value"] = own.loc[hit, "value"] * factor
        w = w.assign(component=comp, fault_mode="cpu_saturation")
        frame, _, rep = detect(topo, own, w, lead="60s", statistic=STAT)
        out.append(verdict(topo, net, eng, frame, rep, comp, "cpu"))
    return out


def split_minute(data: Path):
    ff = data / "2023-01-29" / "fault-free"
    spans = read_spans(ff / "trace").spans
    logs = read_logs(ff / "log").lines
    mid = logs["time"].quantile(0.5)  # the logs' median time: half the lines on each side
    global WINDOW
    WINDOW = max(logs["time"].max(), spans["start"].max()) - mid + pd.Timedelta("1s")
    ref = Reference(
        logs=LogSet(logs[logs["time"] < mid].reset_index(drop=True), ReadReport()),
        traces=SpanSet(spans[spans["start"] < mid].reset_index(drop=True), ReadReport()),
    )
    win_spans = spans[spans["start"] >= mid].reset_index(drop=True)
    win_logs = logs[logs["time"] >= mid].reset_index(drop=True)
    return ref, win_spans, win_logs, mid, spans


WINDOW = pd.Timedelta("30s")
STAT = "max"


def quiet_calibration(day: str, data: Path) -> dict[str, tuple[int, float]]:
    """Per rule set: (number of quiet (window, symptom) p-values, share below 0.01) under the self null."""
    folder = data / day
    topo = load_topology(TOPO[day])
    windows, _ = import_nezha(folder / "fault_list.json")
    m = read_metrics(folder / "metric").samples
    quiet = quiet_windows(windows, span=(m["time"].min(), m["time"].max()), guard="60s")
    _, _, rep = detect(topo, m, quiet, lead="60s", null="self", exclude_incidents=False, statistic=STAT)
    ev = rep.evidence
    return {r: (len(g), float((g["p_value"] < 0.01).mean())) for r, g in ev.groupby("rules")}


def window(mid, comp: str, mode: str) -> pd.DataFrame:
    w, _ = make_windows(
        [{"id": "inj", "start": mid.isoformat(), "component": comp, "fault_mode": mode}],
        duration=WINDOW,
        baseline=WINDOW,
    )
    return w


def log_injections(data: Path, rng: np.random.Generator) -> dict[str, list[tuple[bool, bool]]]:
    topo = load_topology(TOPO["2023-01-29"])
    net = build_network(topo)
    eng = make_engine(net)
    ref, wsp, wlg, mid, _ = split_minute(data)
    comps = [c for c in sorted(wlg["component"].dropna().unique()) if c in set(topo.component_names)]
    res = {"removed log template": [], "added ERROR template": [], "no injection (false alarms)": []}
    for comp in comps:
        mine = wlg[wlg["component"] == comp]
        if mine["span_id"].nunique() < 10:
            continue
        top = mine["template"].value_counts().index[0]
        removed = wlg[~((wlg["component"] == comp) & (wlg["template"] == top))]
        frame, _, rep = detect(topo, None, window(mid, comp, "bad_deploy"), logs=removed, traces=wsp, reference=ref)
        res["removed log template"].append(verdict(topo, net, eng, frame, rep, comp, "log_missing"))
        spans = mine.drop_duplicates("span_id")
        spans = spans.iloc[rng.random(len(spans)) < 0.2]
        extra = spans.assign(level="ERROR", template="injected.Fault#1", time=spans["time"] + pd.Timedelta("1ms"))
        added = pd.concat([wlg, extra], ignore_index=True).sort_values("time", kind="stable")
        frame, _, rep = detect(topo, None, window(mid, comp, "bad_deploy"), logs=added, traces=wsp, reference=ref)
        res["added ERROR template"].append(verdict(topo, net, eng, frame, rep, comp, "log_errors"))
    frame, _, rep = detect(topo, None, window(mid, None, None), logs=wlg, traces=wsp, reference=ref)
    ev = rep.evidence
    logs_ev = ev[ev["symptom"].astype(str).str.contains(".log_")] if len(ev) else ev
    res["no injection (false alarms)"] = [(bool(p < 0.01), False) for p in logs_ev["p_value"]]
    return res


def _caller_pairs(wsp: pd.DataFrame) -> pd.DataFrame:
    """Parent-child spans whose components differ: one row per call, ``caller`` the parent's component."""
    par = wsp[["trace_id", "span_id", "component"]].rename(columns={"span_id": "parent_id", "component": "caller"})
    pairs = wsp.merge(par, on=["trace_id", "parent_id"])
    return pairs[pairs["caller"] != pairs["component"]]


def echo_injections(
    data: Path, rng: np.random.Generator, share: float = 0.2, *, silent: bool = False
) -> list[tuple[bool, bool]]:
    """A new ERROR in the callee's spans (``silent``: its lines dropped instead) and the caller's ERRORs about it.

    The caller's line goes in its nearest ancestor span that writes log lines in the window (the
    parent span when none does), as a caller logging the exception of a failed call does.
    """
    topo = load_topology(TOPO["2023-01-29"])
    net = build_network(topo)
    eng = make_engine(net)
    ref, wsp, wlg, mid, _ = split_minute(data)
    comps = set(topo.component_names)
    pairs = _caller_pairs(wsp)
    edges = pairs.groupby(["caller", "component"]).size()
    edges = [e for e in edges[edges >= 20].index if e[0] in comps and e[1] in comps]
    by_id = wsp.drop_duplicates("span_id").set_index("span_id")
    logging = set(wlg["span_id"].dropna())
    kids: dict = {}
    for sid, par in zip(by_id.index, by_id["parent_id"]):
        kids.setdefault(par, []).append(sid)
    out = []
    for caller, callee in edges:
        calls = pairs[(pairs["caller"] == caller) & (pairs["component"] == callee)]
        calls = calls.iloc[rng.random(len(calls)) < share]
        own, echo = [], []
        for c in calls.itertuples(index=False):
            t = c.start + pd.Timedelta("1ms")
            own.append((t, c.entity, callee, c.trace_id, c.span_id, "ERROR", "injected.Fault#1"))
            up = at = c.parent_id
            while at in by_id.index and by_id.at[at, "component"] == caller:
                if at in logging:
                    up = at
                    break
                at = by_id.at[at, "parent_id"]
            for k, tpl in enumerate(("injected.CallerCatch#1", "injected.CallerHandler#1")):
                t = c.end + pd.Timedelta(milliseconds=1 + k)
                echo.append((t, by_id.at[up, "entity"], caller, c.trace_id, up, "ERROR", tpl))
        quiet = set(calls["span_id"])  # the callee's spans of the failed calls and their descendants in the callee
        todo = list(quiet)
        while todo:
            for k in kids.get(todo.pop(), ()):
                if k not in quiet and by_id.at[k, "component"] == callee:
                    quiet.add(k)
                    todo.append(k)
        base = wlg[~wlg["span_id"].isin(quiet)] if silent else wlg
        extra = pd.DataFrame(echo if silent else own + echo, columns=list(wlg.columns))
        added = pd.concat([base, extra], ignore_index=True).sort_values("time", kind="stable")
        frame, _, rep = detect(topo, None, window(mid, callee, "bad_deploy"), logs=added, traces=wsp, reference=ref)
        hit = [verdict(topo, net, eng, frame, rep, callee, k) for k in ("log_errors", "log_missing")]
        out.append((any(d for d, _ in hit), hit[0][1]))  # detected: any log symptom on the callee
    return out


def _verdict_any(topo, net, eng, frame, report, components, symptom_kind: str) -> tuple[bool, bool]:
    """Like :func:`verdict`, for a fault that either of ``components`` explains."""
    out = [verdict(topo, net, eng, frame, report, c, symptom_kind) for c in components]
    return any(d for d, _ in out), any(f for _, f in out)


def delay_injections(data: Path, delay: float = 0.05, *, pod: bool = False) -> list[tuple[bool, bool]]:
    """+``delay`` s on the wire: of one call edge (``pod=False``), or of every call into and out of one service.

    Only the caller's (client) span of each delayed call grows; the callee's own span is unchanged
    (a network delay sits between the two). One edge: either end explains it (a delay on the caller's
    network or the callee's), so the verdict is on both; one service: on that service.
    """
    topo = load_topology(TOPO["2023-01-29"])
    net = build_network(topo)
    eng = make_engine(net)
    ref, wsp, _, mid, spans_all = split_minute(data)
    pairs = _caller_pairs(wsp)
    edges = pairs.groupby(["caller", "component"]).size()
    edges = edges[edges >= 20].index.tolist()
    comps = set(topo.component_names)
    if pod:
        targets = sorted({c for e in edges for c in e if c in comps})
        cases = [(t, [e for e in edges if t in e], [t]) for t in targets]
    else:
        cases = [(callee, [(caller, callee)], [caller, callee]) for caller, callee in edges]
    out = []
    d = pd.Timedelta(seconds=delay)
    for target, delayed, blame in cases:
        sel = pairs[pd.Series(list(zip(pairs["caller"], pairs["component"])), index=pairs.index).isin(delayed)]
        sp = wsp.copy()
        key = sp["trace_id"] + "/" + sp["span_id"]
        parent = key.isin(sel["trace_id"] + "/" + sel["parent_id"])
        sp.loc[parent, "end"] += d
        spans = pd.concat([ref.traces.spans, sp], ignore_index=True)
        w = window(mid, target, "network_latency")
        frame, _, rep = detect(topo, None, w, traces=spans, trace_freq="5s", presence=False, statistic=STAT)
        out.append(_verdict_any(topo, net, eng, frame, rep, blame, "latency"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "nezha")
    ap.add_argument("--seed", type=int, default=20230129)
    ap.add_argument("--statistic", choices=["max", "majority", "combined"], default="max")
    args = ap.parse_args()
    global STAT
    STAT = args.statistic
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    table = {
        ("Online Boutique", "pod CPU x2"): cpu_injections("2022-08-22", args.data, rng),
        ("Online Boutique", "pod CPU x5"): cpu_injections("2022-08-22", args.data, rng, factor=5.0),
        ("Online Boutique", "pod CPU x5, first 2 min"): cpu_injections(
            "2022-08-22", args.data, rng, factor=5.0, minutes=2
        ),
        ("Train Ticket", "pod CPU x2"): cpu_injections("2023-01-29", args.data, rng),
        ("Train Ticket", "pod CPU x5"): cpu_injections("2023-01-29", args.data, rng, factor=5.0),
        ("Train Ticket", "pod CPU x5, first 2 min"): cpu_injections(
            "2023-01-29", args.data, rng, factor=5.0, minutes=2
        ),
        ("Train Ticket", "edge delay +50 ms (one call)"): delay_injections(args.data),
        ("Train Ticket", "service delay +50 ms"): delay_injections(args.data, pod=True),
    }
    for k, v in log_injections(args.data, rng).items():
        table[("Train Ticket", k)] = v
    table[("Train Ticket", "ERROR echoed by the caller")] = echo_injections(args.data, rng)
    table[("Train Ticket", "silent callee, caller ERROR")] = echo_injections(args.data, rng, silent=True)
    print(f"\n  {'system':<16} {'injected fault':<28} {'n':>3} {'detected (p<0.01)':>18} {'ranked first':>13}")
    for (system, kind), res in table.items():
        a = np.array(res, dtype=bool).reshape(-1, 2) if res else np.zeros((0, 2), bool)
        det = f"{100 * a[:, 0].mean():.0f} %" if len(a) else "-"
        first = f"{100 * a[:, 1].mean():.0f} %" if len(a) and "false" not in kind else "-"
        print(f"  {system:<16} {kind:<28} {len(a):>3} {det:>18} {first:>13}")
    print(f"\n  quiet windows, self null, statistic {STAT}: share of (window, symptom) p < 0.01 per rule set")
    for day, system in (("2022-08-22", "Online Boutique"), ("2023-01-29", "Train Ticket")):
        for rule, (n, share) in sorted(quiet_calibration(day, args.data).items()):
            print(f"  {system:<16} {rule:<28} {n:>5} {100 * share:>6.1f} %")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
