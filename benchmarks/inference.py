"""Benchmark of the compiled exact engine and the loopy-BP engine.

Run from the repository root::

    .venv/bin/python benchmarks/inference.py            # full run (a few minutes)
    .venv/bin/python benchmarks/inference.py --quick    # smaller batches, fewer networks

Networks: topology-shaped networks (``_networks.topology_network``, random call
graphs, seed 0) with N = 10, 30, 100 components, and the classic win95pts, alarm,
hepar2 and pathfinder networks shipped inside pgmpy.  Every detector (for the
classic networks: every leaf) is observed, with evidence forward-sampled from the
network (seed 1); targets are all fault variables (classic: all unobserved
variables).

References: pyAgrum ``LazyPropagation`` with the engine reused across incidents
(``chgEvidence`` + ``makeInference`` + ``posterior`` of every target), and pgmpy
``VariableElimination`` (one ``query([target], evidence)`` per target and incident)
in a child process with a time and address-space limit.  pyAgrum columns are skipped when
it is not installed.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
import tracemalloc
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout, not an installed copy
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

import _networks as nets  # noqa: E402

from diagnosis.exceptions import ModelError  # noqa: E402
from diagnosis.inference import make_engine  # noqa: E402
from diagnosis.inference.approximate import LoopyBPEngine  # noqa: E402

try:
    import pyagrum as gum
except ImportError:  # pragma: no cover - optional
    gum = None

GiB = 2**30


# --------------------------------------------------------------------------------------
# machine
# --------------------------------------------------------------------------------------


def arithmetic_rate():
    """Elementwise multiply(-accumulate) rate numpy reaches here, in Gop/s: (in cache, from memory)."""
    rng = np.random.default_rng(0)
    out = {}
    for label, n in (("cache", 2**15), ("memory", 2**24)):
        a, b = rng.random(n), rng.random(n)
        reps = max(3, 2**26 // n)
        np.multiply(a, b, out=a)
        best = np.inf
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                np.multiply(a, b, out=a)
                a += b
            best = min(best, (time.perf_counter() - t) / reps)
        out[label] = 2 * n / best / 1e9
    return out


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------
# engines under test
# --------------------------------------------------------------------------------------


def time_ours(engine, targets, ev, n_batch, n_single):
    """ms/incident in batch, ms for a single incident, results of the batch, traced peak MiB."""
    batch = {k: v[:n_batch] for k, v in ev.items()}
    t0 = time.perf_counter()
    engine.query(targets, {k: v[:2] for k, v in batch.items()})  # compile this evidence pattern
    compile_s = time.perf_counter() - t0
    best = np.inf
    res = None
    reps = 3 if n_batch * engine.query_stats(targets, batch).ops_per_case < 5e9 else 1
    for _ in range(reps):
        t = time.perf_counter()
        res = engine.query(targets, batch)
        best = min(best, time.perf_counter() - t)
    batch_ms = best / n_batch * 1e3
    singles = []
    for b in range(n_single):
        one = {k: v[b : b + 1] for k, v in ev.items()}
        t = time.perf_counter()
        engine.query(targets, one)
        singles.append(time.perf_counter() - t)
    single_ms = float(np.median(singles)) * 1e3
    tracemalloc.start()
    engine.query(targets, batch)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return batch_ms, single_ms, res, peak, compile_s


def time_pyagrum(model, targets, obs, ev, n, time_limit):
    if gum is None:
        return None, None, 0
    bn = nets.to_pyagrum(model)
    ie = gum.LazyPropagation(bn)
    for t in targets:
        ie.addTarget(t)
    for v in obs:
        ie.addEvidence(v, int(ev[v][0]))
    ie.makeInference()  # build the junction tree once
    post = {t: np.empty((n, len(bn.variable(t).labels()))) for t in targets}
    start = time.perf_counter()
    done = 0
    for b in range(n):
        for v in obs:
            ie.chgEvidence(v, int(ev[v][b]))
        ie.makeInference()
        for t in targets:
            post[t][b] = ie.posterior(t).toarray()
        done += 1
        if time.perf_counter() - start > time_limit:
            break
    ms = (time.perf_counter() - start) / done * 1e3
    return ms, {t: p[:done] for t, p in post.items()}, done


def _pgmpy_worker(conn, model, targets, ev_names, mem_limit):
    try:
        # the limit is on address space: the forked child starts with the parent's mappings
        with open("/proc/self/status") as fh:
            vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + int(mem_limit), vm + int(mem_limit)))
        warnings.filterwarnings("ignore")
        from pgmpy.inference import VariableElimination

        ve = VariableElimination(model)
        out = []
        t = time.perf_counter()
        for e in ev_names:
            row = {}
            for v in targets:  # one query per variable (joint=False can exhaust memory)
                f = ve.query([v], evidence=e, show_progress=False)
                order = list(model.get_cpds(v).state_names[v])
                names = list(f.state_names[v])
                row[v] = np.array([f.values[names.index(s)] for s in order])
            out.append(row)
            conn.send(("row", row, time.perf_counter() - t))
        conn.send(("done", None, time.perf_counter() - t))
    except MemoryError:
        conn.send(("error", "MemoryError (address-space limit)", 0.0))
    except Exception as exc:  # report, do not crash the benchmark
        conn.send(("error", f"{type(exc).__name__}: {exc}", 0.0))


def time_pgmpy(model, targets, ev_names, timeout, mem_limit):
    """pgmpy VE per incident in a child process; (ms/incident or None, rows, status)."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_pgmpy_worker, args=(child, model, targets, ev_names, mem_limit))
    proc.start()
    rows, elapsed, status = [], 0.0, "ok"
    deadline = time.perf_counter() + timeout
    while True:
        left = deadline - time.perf_counter()
        if left <= 0 or not parent.poll(left):
            status = f"did not finish 1 incident in {timeout:.0f} s" if not rows else "timeout"
            break
        kind, payload, el = parent.recv()
        if kind == "row":
            rows.append(payload)
            elapsed = el
        elif kind == "done":
            break
        else:
            status = payload
            break
    if proc.is_alive():
        proc.kill()
    proc.join()
    ms = elapsed / len(rows) * 1e3 if rows else None
    return ms, rows, status


# --------------------------------------------------------------------------------------
# main tables
# --------------------------------------------------------------------------------------


def networks(quick):
    for n in (10, 30, 100):
        m = nets.topology_network(n, seed=0)
        yield f"topology N={n}", m, nets.fault_names(m), nets.detector_names(m)
    names = ("alarm", "win95pts") if quick else ("alarm", "win95pts", "hepar2", "pathfinder")
    for name in names:
        m = nets.classic_network(name)
        obs = nets.detector_names(m)
        yield name, m, [v for v in m.nodes() if v not in obs], obs


def exact_table(args, rate):
    rows = []
    for label, model, targets, obs in networks(args.quick):
        big = label == "topology N=100"
        n_batch = 32 if big else (256 if args.quick else 2048)
        n_single = 3 if big else 30
        n_ref = 5 if big else (20 if args.quick else 100)
        ev = nets.sample_evidence(model, obs, max(n_batch, n_ref), seed=1)
        t = time.perf_counter()
        engine = make_engine(model)
        build_s = time.perf_counter() - t
        st = engine.query_stats(targets, {k: v[:2] for k, v in ev.items()})
        batch_ms, single_ms, res, peak, compile_s = time_ours(engine, targets, ev, n_batch, n_single)
        pa_ms, pa_post, pa_n = time_pyagrum(model, targets, obs, ev, n_ref, args.pyagrum_limit)
        d_pa = None
        if pa_post:
            d_pa = max(float(np.abs(res[t][:pa_n] - pa_post[t]).max()) for t in targets)
        n_ve = 3 if not big else 1
        ev_names = [{v: engine.states[v][ev[v][b]] for v in obs} for b in range(n_ve)]
        ve_ms, ve_rows, ve_status = (
            (None, [], "skipped")
            if args.no_pgmpy
            else time_pgmpy(model, targets, ev_names, args.pgmpy_timeout, args.pgmpy_mem * GiB)
        )
        d_ve = None
        if ve_rows:
            d_ve = max(float(np.abs(res[t][b] - r[t]).max()) for b, r in enumerate(ve_rows) for t in targets)
        achieved = st.ops_per_case / (batch_ms * 1e-3) / 1e9
        rows.append(
            dict(
                label=label,
                vars=len(engine.variables),
                tw=st.treewidth,
                kind=engine.kind,
                entries=st.total_entries,
                ops=st.ops_per_case,
                build_s=build_s,
                compile_s=compile_s,
                batch=batch_ms,
                single=single_ms,
                pa=pa_ms,
                ve=ve_ms,
                ve_status=ve_status,
                d_pa=d_pa,
                d_ve=d_ve,
                achieved=achieved,
                peak=peak,
                n_batch=n_batch,
                floor=st.ops_per_case / (rate["cache"] * 1e9) * 1e3,
            )
        )
        print(
            f"  done {label}: batch {batch_ms:.4f} ms, single {single_ms:.3f} ms, pyAgrum "
            f"{'-' if pa_ms is None else f'{pa_ms:.3f}'} ms, pgmpy {ve_status}",
            flush=True,
        )
    return rows


def fmt(x, spec, dash="-"):
    return dash if x is None else format(x, spec)


def print_exact(rows, rate):
    print()
    print("Exact inference, ms per incident (batch = mean over the batch; single = one-case query, median)")
    head = (
        f"{'network':<18}{'vars':>5}{'tw':>4}{'batch ms':>10}{'single ms':>10}{'pyAgrum ms':>11}"
        f"{'x pyA batch':>12}{'x pyA single':>13}{'pgmpy VE ms':>12}{'x VE batch':>11}"
        f"{'|d| pyAgrum':>12}{'|d| VE':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        rb = r["pa"] / r["batch"] if r["pa"] else None
        rs = r["pa"] / r["single"] if r["pa"] else None
        rv = r["ve"] / r["batch"] if r["ve"] else None
        ve = fmt(r["ve"], ".1f") if r["ve"] else r["ve_status"]
        print(
            f"{r['label']:<18}{r['vars']:>5}{r['tw']:>4}{r['batch']:>10.4f}{r['single']:>10.3f}"
            f"{fmt(r['pa'], '.3f'):>11}{fmt(rb, '.0f'):>12}{fmt(rs, '.1f'):>13}{ve:>12}"
            f"{fmt(rv, '.0f'):>11}{fmt(r['d_pa'], '.1e'):>12}{fmt(r['d_ve'], '.1e'):>9}"
        )
    print()
    print(
        f"Compiled size against the arithmetic rate of this machine (numpy multiply/add: "
        f"{rate['cache']:.2f} Gop/s in cache, {rate['memory']:.2f} Gop/s from memory)"
    )
    head = (
        f"{'network':<18}{'clique entries':>15}{'ops/incident':>14}{'floor ms':>10}{'batch ms':>10}"
        f"{'achieved Gop/s':>15}{'% of peak':>10}{'batch':>7}{'peak MiB':>10}{'compile s':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['label']:<18}{r['entries']:>15,}{r['ops']:>14,}{r['floor']:>10.4f}{r['batch']:>10.4f}"
            f"{r['achieved']:>15.2f}{100 * r['achieved'] / rate['cache']:>9.0f}%{r['n_batch']:>7}"
            f"{r['peak']:>10.1f}{r['build_s'] + r['compile_s']:>10.2f}"
        )
    print(
        "floor ms = ops/incident at the in-cache rate: the time this design needs if every "
        "operation ran at numpy's peak."
    )


def approx_table(args):
    print()
    print("Approximate mode (loopy BP) against exact, all fault marginals, every detector observed")
    head = (
        f"{'calls':<8}{'N':>6}{'exact?':>22}{'cases':>7}{'top-1 agree':>12}{'max |d|':>9}{'mean |d|':>10}"
        f"{'iters':>6}{'BP ms/inc':>10}{'exact ms/inc':>13}{'BP peak MiB':>12}"
    )
    print(head)
    print("-" * len(head))
    sizes = (10, 30, 100, 300, 1000)
    for calls in ("random", "local"):
        for n in sizes:
            model = nets.topology_network(n, seed=0, calls=calls)
            faults, obs = nets.fault_names(model), nets.detector_names(model)
            n_cases = 256 if n >= 300 else 512
            if args.quick:
                n_cases //= 4
            ev = nets.sample_evidence(model, obs, n_cases, seed=2)
            bp = LoopyBPEngine.from_pgmpy(model)
            bp.query(faults, {k: v[:2] for k, v in ev.items()})
            best = np.inf
            for _ in range(3):
                t = time.perf_counter()
                ra = bp.query(faults, ev)
                best = min(best, time.perf_counter() - t)
            bp_ms = best / n_cases * 1e3
            tracemalloc.start()
            bp.query(faults, ev)
            bp_peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            try:
                exact = make_engine(model, "exact")
                status = f"exact (tw {exact.stats.treewidth})"
            except ModelError as exc:
                exact = None
                status = f"refused (tw>={exc.treewidth})"
                chosen = make_engine(model, "approximate")
                assert chosen.kind == "approximate"
            if exact is not None:
                n_ex = n_cases if n <= 30 or calls == "local" else 32
                sub = {k: v[:n_ex] for k, v in ev.items()}
                exact.query(faults, {k: v[:2] for k, v in sub.items()})
                t = time.perf_counter()
                re_ = exact.query(faults, sub)
                ex_ms = (time.perf_counter() - t) / n_ex * 1e3
                pa = np.stack([ra[f][:n_ex, 1] for f in faults], axis=1)
                pe = np.stack([re_[f][:, 1] for f in faults], axis=1)
                top1 = float(np.mean(pa.argmax(axis=1) == pe.argmax(axis=1)))
                dmax, dmean = float(np.abs(pa - pe).max()), float(np.abs(pa - pe).mean())
                cases = n_ex
            else:
                ex_ms = top1 = dmax = dmean = None
                cases = n_cases
            print(
                f"{calls:<8}{n:>6}{status:>22}{cases:>7}{fmt(top1, '.3f'):>12}{fmt(dmax, '.3f'):>9}"
                f"{fmt(dmean, '.1e'):>10}{bp.last_run.iterations:>6}{bp_ms:>10.3f}{fmt(ex_ms, '.3f'):>13}"
                f"{bp_peak:>12.1f}",
                flush=True,
            )
    print(
        "top-1 agree: share of incidents where the most probable fault is the same; "
        "|d|: difference of P(fault) per variable and incident."
    )


def hetero_networks(args):
    """(label, model path) of every network of the heterogeneous table; topology networks written as BIF."""
    from pgmpy.readwrite import BIFWriter

    folder = args.workdir
    if not args.only_models:
        for n in (10, 30, 100):
            path = os.path.join(folder, f"topology-{n}.bif")
            with open(path, "w") as fh:
                fh.write(str(BIFWriter(nets.topology_network(n, seed=0))))
            yield f"topology N={n}", path
        for name in ("alarm", "win95pts", "hepar2", "pathfinder"):
            yield name, str(nets.classic_path(name))
    for path in args.model:
        yield os.path.basename(path).split(".")[0], path


def hetero_table(args, rate):
    """``diagnosis query`` whole process and in process vs pyAgrum, each case observing its own random share."""
    import _hetero as het
    import pyarrow.parquet as pq

    from diagnosis.inference import read_tables

    print()
    print(
        f"Heterogeneous evidence: {args.cases:,} cases, each observing a different random "
        f"{args.share:.0%} of the variables (forward-sampled values); targets: up to 10 root variables"
    )
    head = (
        f"{'network':<16}{'vars':>5}{'tw':>4}{'cases':>7}{'ops/case':>11}{'floor s':>9}{'ours s':>8}"
        f"{'ours proc s':>12}{'pyA s':>9}{'pyA proc s':>11}{'x proc':>8}{'x in-proc':>10}{'|d|':>9}{'|d| file':>9}{'VE: ours':>9}{'pyA':>8}"
    )
    print(head)
    print("-" * len(head))
    rows = []
    for label, path in hetero_networks(args):
        tables = read_tables(path)
        targets = het.default_targets(tables)
        engine = make_engine(tables)
        n = args.cases
        probe = het.sample_cases(tables, 64, args.share, seed=1)
        st = engine.query_stats(targets, {v: probe[i] for i, v in enumerate(tables.names)})
        budget_n = int(args.hetero_budget * rate["memory"] * 1e9 / max(st.ops_per_case, 1))
        if budget_n < n:  # cap our run at ~hetero_budget seconds of arithmetic; say so
            n = max(100, budget_n)
        matrix = het.sample_cases(tables, n, args.share, seed=1)
        cases = os.path.join(args.workdir, f"{label.replace(' ', '_').replace('=', '')}-cases.csv")
        het.write_cases(cases, tables, matrix)
        ev = {v: matrix[i] for i, v in enumerate(tables.names)}
        t = time.perf_counter()
        res = engine.query(targets, ev)
        ours_in = time.perf_counter() - t
        pa_case, pa_post = het.pyagrum_in_process(tables, matrix, targets, args.pyagrum_limit)
        done = len(next(iter(pa_post.values())))
        d = max(float(np.abs(res[t][:done] - pa_post[t]).max()) for t in targets)
        d_ve, d_pa_ve = het.pgmpy_check(tables, matrix, res, pa_post, targets)
        pa_in = pa_case * n
        out = os.path.join(args.workdir, "ours.parquet")
        ours_proc = het.time_ours_process(path, cases, targets, out)
        pa_info = het.time_pyagrum_process(
            het.pyagrum_file(path, tables, args.workdir), cases, targets, args.pyagrum_limit
        )
        pa_proc = pa_info["wall"] - pa_info["loop"] + pa_info["loop"] / pa_info["done"] * n
        ours_tab = pq.read_table(out)
        pa_tab = pq.read_table(pa_info["out"])
        d_file = max(
            float(np.abs(ours_tab.column(c).to_numpy()[: pa_info["done"]] - pa_tab.column(c).to_numpy()).max())
            for c in pa_tab.column_names
        )
        os.unlink(pa_info["out"])
        floor = st.ops_per_case * n / (rate["cache"] * 1e9)
        r = dict(
            label=label,
            vars=len(tables.names),
            tw=st.treewidth,
            n=n,
            ops=st.ops_per_case,
            floor=floor,
            ours_in=ours_in,
            ours_proc=ours_proc,
            pa_in=pa_in,
            pa_proc=pa_proc,
            pa_done=pa_info["done"],
            d=d,
            d_file=d_file,
            d_ve=d_ve,
            d_pa_ve=d_pa_ve,
        )
        rows.append(r)
        print(
            f"{label:<16}{r['vars']:>5}{r['tw']:>4}{n:>7}{r['ops']:>11,}{floor:>9.3f}{ours_in:>8.2f}"
            f"{ours_proc:>12.2f}{pa_in:>9.1f}{pa_proc:>11.1f}{pa_proc / ours_proc:>8.1f}{pa_in / ours_in:>10.1f}"
            f"{d:>9.1e}{d_file:>9.1e}{d_ve:>9.1e}{d_pa_ve:>8.1e}",
            flush=True,
        )
    print(
        "ours s / ours proc s: engine.query over all cases in process / `diagnosis query` as a whole process "
        "(start-up, BIF, CSV, inference, Parquet out).\n"
        f"pyA: LazyPropagation with setEvidence + makeInference + posterior per case, in a child process "
        f"that reads the same CSV and writes Parquet; it ran {args.pyagrum_limit:g} s of cases and its "
        "loop time is extrapolated to all cases (pyA proc s = its measured start-up, load, read and write "
        "+ the extrapolated loop).\n"
        "floor s = ops/case x cases at numpy's in-cache multiply-add rate; |d| = max abs difference of "
        "any posterior entry from pyAgrum's (same float64 tables) on the cases it ran; |d| file: against the "
        "pyAgrum process, whose gum.loadBN rounds the BIF's numbers; VE: at the case and target where ours and "
        "pyAgrum differ most, ours and pyAgrum against pgmpy VariableElimination. Cases are capped so that ours needs about "
        f"{args.hetero_budget:g} s of arithmetic (the 'cases' column)."
    )
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller batches, skip hepar2/pathfinder")
    ap.add_argument("--no-pgmpy", action="store_true", help="skip the pgmpy VariableElimination reference")
    ap.add_argument("--pgmpy-timeout", type=float, default=60.0, help="seconds per network for pgmpy VE")
    ap.add_argument(
        "--pgmpy-mem", type=float, default=4.0, help="GiB of address space the pgmpy child may add to what it inherits"
    )
    ap.add_argument("--pyagrum-limit", type=float, default=15.0, help="seconds of pyAgrum incidents per network")
    ap.add_argument(
        "--hetero", action="store_true", help="only the heterogeneous-evidence table (query as users run it)"
    )
    ap.add_argument(
        "--model", action="append", default=[], metavar="PATH", help="also this BIF/XMLBIF network (repeatable)"
    )
    ap.add_argument("--only-models", action="store_true", help="heterogeneous table: only the --model networks")
    ap.add_argument("--cases", type=int, default=20_000, help="heterogeneous table: cases per network")
    ap.add_argument("--share", type=float, default=0.3, help="heterogeneous table: share observed per case")
    ap.add_argument(
        "--hetero-budget", type=float, default=30.0, help="heterogeneous table: seconds of our arithmetic per network"
    )
    ap.add_argument("--skip-exact", action="store_true")
    ap.add_argument("--skip-approx", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    import platform

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, pyAgrum "
        f"{gum.__version__ if gum else 'not installed'}"
        f"{f' ({gum.getNumberOfThreads()} threads)' if gum else ''}, cpus {os.cpu_count()}; "
        f"the compiled engine runs large batches on 2 threads"
    )
    rate = arithmetic_rate()
    if args.hetero or args.model:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            args.workdir = folder
            hetero_table(args, rate)
        print(f"wall time {time.perf_counter() - t0:.0f} s")
        return
    if not args.skip_exact:
        rows = exact_table(args, rate)
        print_exact(rows, rate)
    if not args.skip_approx:
        approx_table(args)
    print()
    print(f"process peak RSS {rss_mib():.0f} MiB; wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
