"""Derive the demo sample in data/telemetry/ from the Nezha data (a development tool; the product never reads ../shared).

Usage: python data/telemetry/derive_sample.py [NEZHA_DIR]   (default ../shared/datasets/nezha)

Online Boutique, 2022-08-22 (online-boutique/): every metric file cut to two
periods, 03:51-05:31 (the first 12 injections of the day) and 08:00-09:30 (no
injection: the quiet reference the detectors' null distributions are fitted
on), rows copied byte for byte; fault_list.json keeps those 12 injections.
Train Ticket, 2023-01-29 (train-ticket/): the three trace and log files
around the 09:03:53 injection (ts-basic-service, code-level `return`), the
fault-free reference minute (fault-free/log, fault-free/trace) and that one
injection's label (fault_list.json), unchanged: `topology from-traces` and
the log-driven `make run` demo. Source:
IntelligentDDS/Nezha (FSE 2023), MIT licence (LICENSE-nezha here).
"""

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent.parent.parent / "shared" / "datasets" / "nezha"
PERIODS = [("2022-08-22 03:51", "2022-08-22 05:31"), ("2022-08-22 08:00", "2022-08-22 09:30")]
TRACES = ["09_03_trace.csv.gz", "09_04_trace.csv.gz", "09_05_trace.csv.gz"]
LOGS = ["09_03_log.csv.gz", "09_04_log.csv.gz", "09_05_log.csv.gz"]
TT_FAULT = "2023-01-29 09:03:53"


def keep(line: str) -> bool:
    stamp = line[:16]
    return any(lo <= stamp < hi for lo, hi in PERIODS)


def main() -> None:
    ob = HERE / "online-boutique"
    (ob / "metric").mkdir(parents=True, exist_ok=True)
    for f in sorted((SRC / "2022-08-22" / "metric").glob("*.csv")):
        lines = f.read_text().splitlines(keepends=True)
        if f.name == "dependency.csv":
            out = lines
        else:
            out = lines[:1] + [ln for ln in lines[1:] if keep(ln)]
        (ob / "metric" / f.name).write_text("".join(out))
    faults = json.loads((SRC / "2022-08-22" / "fault_list.json").read_text())
    sub = {}
    for hour, items in faults.items():
        kept = [x for x in items if any(lo <= x["inject_time"][:16] < hi for lo, hi in PERIODS)]
        if kept:
            sub[hour] = kept
    (ob / "fault_list.json").write_text(json.dumps(sub, indent=4) + "\n")
    tt = HERE / "train-ticket" / "trace"
    tt.mkdir(parents=True, exist_ok=True)
    for name in TRACES:
        shutil.copyfile(SRC / "2023-01-29" / "trace" / name, tt / name)
    # the log-driven demo: the logs of the same minutes, the fault-free reference minute, that one injection
    (HERE / "train-ticket" / "log").mkdir(parents=True, exist_ok=True)
    for name in LOGS:
        shutil.copyfile(SRC / "2023-01-29" / "log" / name, HERE / "train-ticket" / "log" / name)
    for kind in ("log", "trace"):
        dst = HERE / "train-ticket" / "fault-free" / kind
        dst.mkdir(parents=True, exist_ok=True)
        for f in sorted((SRC / "2023-01-29" / "fault-free" / kind).glob("*.csv.gz")):
            shutil.copyfile(f, dst / f.name)
    tt_faults = json.loads((SRC / "2023-01-29" / "fault_list.json").read_text())
    one = {h: [x for x in items if x["inject_time"] == TT_FAULT] for h, items in tt_faults.items()}
    one = {h: v for h, v in one.items() if v}
    (HERE / "train-ticket" / "fault_list.json").write_text(json.dumps(one, indent=4) + "\n")
    shutil.copyfile(SRC / "LICENSE", HERE / "LICENSE-nezha")
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"wrote {HERE} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
