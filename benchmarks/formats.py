"""Reading an incident log: JSON Lines against Parquet, in the same run.

Usage: .venv/bin/python benchmarks/formats.py [--n 100000] [--repeat 3] [--workdir DIR]

Simulates ``n`` Online Boutique incidents (seed 1), writes them as Parquet and
as JSON Lines, and times ``read_incidents`` on each (in process, ``repeat``
times, alternating); prints every time, the medians and the ratio. Also times
the per-line JSON reader (the fallback for blocks pyarrow cannot read exactly)
once, for reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diagnosis.logs import formats  # noqa: E402
from diagnosis.logs.formats import read_incidents, write_incidents  # noqa: E402
from diagnosis.logs.simulate import simulate  # noqa: E402
from diagnosis.model.topology import load_topology  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--no-line-reader", action="store_true", help="skip timing the per-line fallback")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="diagnosis-formats-"))
    work.mkdir(parents=True, exist_ok=True)
    topo = load_topology(ROOT / "data" / "topologies" / "online-boutique.yaml")
    pq_path, js_path = work / f"ob-{args.n}.parquet", work / f"ob-{args.n}.jsonl"
    if not (pq_path.exists() and js_path.exists()):
        frame = simulate(topo, args.n, rng=1)
        write_incidents(frame, pq_path)
        write_incidents(frame, js_path)
    print(
        f"{args.n:,} incidents; Parquet {pq_path.stat().st_size / 2**20:.0f} MiB, "
        f"JSON Lines {js_path.stat().st_size / 2**20:.0f} MiB; cpus {os.cpu_count()}"
    )
    times = {"parquet": [], "jsonl": []}
    for _ in range(args.repeat):
        for fmt, path in (("parquet", pq_path), ("jsonl", js_path)):
            t = time.perf_counter()
            frame, rejects = read_incidents(path)
            times[fmt].append(time.perf_counter() - t)
            assert len(frame) == args.n and not rejects
    for fmt, ts in times.items():
        print(f"  {fmt:<8} read_incidents: {', '.join(f'{t:.2f}' for t in ts)} s (median {statistics.median(ts):.2f})")
    ratio = statistics.median(times["jsonl"]) / statistics.median(times["parquet"])
    spread = [j / p for j, p in zip(times["jsonl"], times["parquet"])]
    print(f"  JSON Lines / Parquet: {ratio:.2f}x (per pair: {', '.join(f'{r:.2f}' for r in spread)})")
    if not args.no_line_reader:
        real = formats._jsonl_block_arrow
        formats._jsonl_block_arrow = lambda linenos, data: None
        try:
            t = time.perf_counter()
            read_incidents(js_path)
            slow = time.perf_counter() - t
        finally:
            formats._jsonl_block_arrow = real
        print(
            f"  per-line JSON reader (the fallback): {slow:.2f} s ({slow / statistics.median(times['parquet']):.1f}x Parquet)"
        )


if __name__ == "__main__":
    main()
