"""Heterogeneous evidence, as users run it: ``diagnosis query`` on a CSV of cases that each observe a
different random share of the variables, against pyAgrum ``LazyPropagation`` looping over the same cases.

Used by ``benchmarks/inference.py --hetero``; also the pyAgrum child process
(``python benchmarks/_hetero.py pyagrum MODEL CASES TARGETS LIMIT``), so both
sides are timed as whole processes: start-up, reading the model and the cases,
inference, writing the posteriors.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def sample_cases(tables, n_cases, share, *, seed=1):
    """Forward-sample ``n_cases`` full states from ``ModelTables``; keep a random ``share`` per case.

    Returns an int matrix ``(n_variables, n_cases)`` of state indices, ``-1`` where unobserved.
    """
    rng = np.random.default_rng(seed)
    n = len(tables.names)
    order, seen = [], set()

    def visit(v):
        stack = [(v, False)]
        while stack:
            x, done = stack.pop()
            if done:
                if x not in seen:
                    seen.add(x)
                    order.append(x)
                continue
            if x in seen:
                continue
            stack.append((x, True))
            stack.extend((p, False) for p in tables.parents[x] if p not in seen)

    for v in range(n):
        visit(v)
    values = np.empty((n, n_cases), dtype=np.int64)
    for v in order:
        table = tables.cpts[v]
        probs = table[(slice(None), *(values[p] for p in tables.parents[v]))] if tables.parents[v] else None
        if probs is None:
            probs = np.repeat(table[:, None], n_cases, axis=1)
        cum = np.cumsum(probs, axis=0)
        u = rng.random(n_cases)
        values[v] = np.minimum((u[None, :] > cum).sum(axis=0), table.shape[0] - 1)
    mask = rng.random((n, n_cases)) < share
    # a CSV row of blanks is not a case (read_cases skips it): every case observes at least one variable
    empty = np.flatnonzero(~mask.any(axis=0))
    mask[rng.integers(0, n, empty.size), empty] = True
    return np.where(mask, values, -1)


def write_cases(path, tables, matrix):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(tables.names)
        states = tables.states
        for row in matrix.T.tolist():
            w.writerow([states[v][s] if s >= 0 else "" for v, s in enumerate(row)])


def default_targets(tables, k=10):
    """Up to ``k`` root variables (the causes a user asks about), in file order."""
    roots = [n for n, ps in zip(tables.names, tables.parents) if not ps]
    return roots[:k]


def plain_bif(path, folder):
    """A path pyAgrum can load: ``.bif.gz`` decompressed into ``folder``."""
    p = str(path)
    if p.endswith(".gz"):
        out = os.path.join(folder, os.path.basename(p)[:-3])
        with open(out, "wb") as fh:
            fh.write(gzip.decompress(open(p, "rb").read()))
        return out
    return p


def pyagrum_from_tables(tables):
    """A ``pyagrum.BayesNet`` with exactly our float64 tables (``gum.loadBN`` rounds BIF numbers: ~3e-8)."""
    import pyagrum as gum

    bn = gum.BayesNet()
    ids = [bn.add(gum.LabelizedVariable(n, n, list(s))) for n, s in zip(tables.names, tables.states)]
    for v, ps in enumerate(tables.parents):
        for p in ps:
            bn.addArc(ids[p], ids[v])
    for v, ps in enumerate(tables.parents):
        pot = bn.cpt(ids[v])
        scope = [tables.names[v], *(tables.names[p] for p in ps)]
        arr = np.transpose(tables.cpts[v], [scope.index(nm) for nm in pot.names])
        pot.fillWith(np.transpose(arr, list(range(arr.ndim))[::-1]).ravel().tolist())
    return bn


def pgmpy_check(tables, matrix, res, pa_post, targets):
    """At the case and target where we differ most from pyAgrum: |ours - pgmpy VE| and |pyAgrum - pgmpy VE|."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgmpy.factors.discrete import TabularCPD
        from pgmpy.inference import VariableElimination
        from pgmpy.models import DiscreteBayesianNetwork

    done = len(next(iter(pa_post.values())))
    worst, where = -1.0, None
    for t in targets:
        d = np.abs(res[t][:done] - pa_post[t]).max(axis=1)
        b = int(d.argmax())
        if d[b] > worst:
            worst, where = float(d[b]), (b, t)
    b, t = where
    names = tables.names
    model = DiscreteBayesianNetwork()
    model.add_nodes_from(names)
    model.add_edges_from((names[p], names[v]) for v, ps in enumerate(tables.parents) for p in ps)
    for v, ps in enumerate(tables.parents):
        card = int(tables.cards[v])
        model.add_cpds(
            TabularCPD(
                names[v],
                card,
                tables.cpts[v].reshape(card, -1),
                evidence=[names[p] for p in ps] or None,
                evidence_card=[int(tables.cards[p]) for p in ps] or None,
                state_names={names[x]: list(tables.states[x]) for x in (v, *ps)},
            )
        )
    ev = {names[v]: tables.states[v][s] for v, s in enumerate(matrix[:, b]) if s >= 0}
    if t in ev:
        return 0.0, 0.0
    f = VariableElimination(model).query([t], evidence=ev, show_progress=False)
    ref = np.array([f.values[list(f.state_names[t]).index(s)] for s in tables.states[tables.index[t]]])
    return float(np.abs(res[t][b] - ref).max()), float(np.abs(pa_post[t][b] - ref).max())


def pyagrum_in_process(tables, matrix, targets, limit):
    """LazyPropagation over the cases (until ``limit`` s): seconds per case and the posteriors it computed."""
    import pyagrum as gum

    bn = pyagrum_from_tables(tables)
    ie = gum.LazyPropagation(bn)
    for t in targets:
        ie.addTarget(t)
    order = {t: [list(bn.variable(t).labels()).index(s) for s in tables.states[tables.index[t]]] for t in targets}
    post = {t: [] for t in targets}
    names, states = tables.names, tables.states
    rows = matrix.T.tolist()
    t0 = time.perf_counter()
    done = 0
    for row in rows:
        ie.setEvidence({names[v]: states[v][s] for v, s in enumerate(row) if s >= 0})
        ie.makeInference()
        for t in targets:
            post[t].append(ie.posterior(t).toarray()[order[t]])
        done += 1
        if time.perf_counter() - t0 > limit:
            break
    per_case = (time.perf_counter() - t0) / done
    return per_case, {t: np.array(p) for t, p in post.items()}


def pyagrum_file(path, tables, folder):
    """A file pyAgrum loads: the BIF itself, or -- when pyAgrum's parsers refuse the names (child's
    ``<7.5``, ``Asy/Patch``) -- the same tables as a pickled ``pyagrum.BayesNet``."""
    import pickle

    import pyagrum as gum

    plain = plain_bif(path, folder)
    try:
        gum.loadBN(plain)
        return plain
    except Exception:  # pyAgrum raises its own FatalError types
        out = os.path.join(folder, os.path.basename(plain).split(".")[0] + ".pkl")
        with open(out, "wb") as fh:
            pickle.dump(pyagrum_from_tables(tables), fh)
        return out


def time_ours_process(model, cases, targets, out):
    cmd = [sys.executable, "-m", "diagnosis", "query", "--model", model, "--evidence", cases, "--out", out]
    for t in targets:
        cmd += ["--target", t]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    return time.perf_counter() - t0


def time_pyagrum_process(model, cases, targets, limit):
    """pyAgrum whole process on the first cases until ``limit`` seconds of inference; its timings."""
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, __file__, "pyagrum", model, cases, ",".join(targets), str(limit)],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    info = json.loads(res.stdout.strip().splitlines()[-1])
    info["wall"] = wall
    return info


def _pyagrum_child(model, cases, targets, limit):
    """Load, read cases (pyarrow, as ours), loop LazyPropagation, write Parquet; print timings as JSON."""
    t_start = time.perf_counter()
    import pyagrum as gum
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    t_import = time.perf_counter()
    if model.endswith(".pkl"):
        import pickle

        with open(model, "rb") as fh:
            bn = pickle.load(fh)
    else:
        bn = gum.loadBN(model)
    t_load = time.perf_counter()
    table = pcsv.read_csv(
        cases,
        convert_options=pcsv.ConvertOptions(
            column_types={n: pa.string() for n in bn.names()}, strings_can_be_null=False
        ),
    )
    names = table.column_names
    cols = [table.column(n).to_pylist() for n in names]
    n_cases = table.num_rows
    t_read = time.perf_counter()
    ie = gum.LazyPropagation(bn)
    for t in targets:
        ie.addTarget(t)
    labels = {t: list(bn.variable(t).labels()) for t in targets}
    post = {t: [] for t in targets}
    done = 0
    for b in range(n_cases):
        ev = {n: c[b] for n, c in zip(names, cols) if c[b]}
        ie.setEvidence(ev)
        ie.makeInference()
        for t in targets:
            post[t].append(ie.posterior(t).toarray())
        done += 1
        if time.perf_counter() - t_read > limit:
            break
    t_loop = time.perf_counter()
    out = tempfile.mktemp(suffix=".parquet")
    columns = {}
    for t in targets:
        arr = np.array(post[t])
        for j, s in enumerate(labels[t]):
            col = np.ascontiguousarray(arr[:, j])  # as ours: from the buffer (pa.array would import pandas)
            columns[f"{t}={s}"] = pa.Array.from_buffers(pa.float64(), len(col), [None, pa.py_buffer(col)])
    pq.write_table(pa.table(columns), out)
    t_write = time.perf_counter()
    print(
        json.dumps(
            dict(
                imports=t_import - t_start,
                load=t_load - t_import,
                read=t_read - t_load,
                loop=t_loop - t_read,
                write=t_write - t_loop,
                done=done,
                n_cases=n_cases,
                out=out,
            )
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "pyagrum":
        _pyagrum_child(sys.argv[2], sys.argv[3], sys.argv[4].split(","), float(sys.argv[5]))
    else:
        sys.exit("usage: _hetero.py pyagrum MODEL CASES T1,T2,... LIMIT_SECONDS")
