"""Approximate, batched inference for networks too wide for exact inference.

:class:`LoopyBPEngine` runs loopy belief propagation (sum-product on the factor
graph, flooding schedule, damped) on a batch of cases at once, with the same
``query`` signature as :class:`~diagnosis.inference.compiled.CompiledEngine`.

Why loopy BP
------------
Exact inference costs ``exp(treewidth)``.  Topology networks whose call graphs
are *local* (components call nearby ones) keep a small treewidth at any size and
stay exact.  Wide treewidth comes from *random-like* call graphs, which are
locally tree-like: their cycles are long, and long cycles are where loopy BP's
only assumption -- that the messages reaching a factor are independent -- holds
best.  Bounding the number of simultaneous faults does not remove the hard part
(leaks and converging call paths still couple every impairment), and a two-layer
noisy-OR compilation double-counts converging paths.  ``benchmarks/README.md``
has the measured error of this engine against exact inference.

Implementation
--------------
As in the exact engine, variables observed in every case are instantiated (their
CPTs become per-case factors over the remaining variables) and barren variables
are dropped.  Single-variable factors become per-variable *local evidence*.  A
variable that sits in one factor only, with batch-independent local evidence
(e.g. a root fault with its prior), is summed out of that factor before the
iterations -- exactly -- and its marginal is recovered from the converged
messages afterwards.  Messages have shape ``(edges, card, B)``; factors with the
same shape are processed together, so one iteration is a few dozen numpy calls
whatever the network size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from diagnosis.exceptions import EvidenceError, ModelError, ParameterError
from diagnosis.inference._gather import GatherBlock
from diagnosis.inference.base import TableEngine
from diagnosis.inference.tables import (
    ModelTables,
    PreparedEvidence,
    _case_list,
    prepare_evidence,
    resolve_targets,
)

__all__ = ["ASSUMPTION", "BPRunInfo", "LoopyBPEngine"]

#: The assumption every answer of :class:`LoopyBPEngine` rests on.
ASSUMPTION = (
    "loopy belief propagation: messages arriving at a factor are treated as independent, "
    "i.e. the network is treated as if it had no cycles (exact on polytrees; on cyclic "
    "networks the marginals are approximate -- accurate when cycles are long, as in "
    "random call graphs, less so with many short converging paths)"
)

_ITEM = 8
_FLOOR = 1e-300
_CLAMP = 700.0  # log-odds bound: probabilities within 1e-304 of 0 or 1
_CHUNK = 64  # fewest cases per chunk: cache-sized message arrays; each chunk stops once converged


@dataclass(frozen=True)
class BPRunInfo:
    """How the last batch of :meth:`LoopyBPEngine.query` went.

    Attributes
    ----------
    iterations : int
        Iterations run (the largest over the chunks of the batch).
    max_change : float
        Largest change of a normalised message in the last iteration.
    converged : bool
        ``max_change <= tolerance`` in every chunk.
    n_factors : int
        Factors with two or more variables left after instantiation/absorption.
    n_edges : int
        Factor-variable edges carrying messages.
    bytes_per_case : int
        Working memory per case.
    """

    iterations: int
    max_change: float
    converged: bool
    n_factors: int
    n_edges: int
    bytes_per_case: int


def _noisy_or(table: np.ndarray, child_axis: int, rtol: float = 1e-10):
    """Fit a binary table ``P(child | parents)`` as a noisy-OR with leak.

    Returns
    -------
    (q, 1 - leak) or None
        ``q[p]``: probability that parent ``p`` alone switches the child on; ``None``
        if the table is not a noisy-OR (or has a deterministic link, ``q = 1``).
    """
    t = np.moveaxis(table, child_axis, 0)
    k = t.ndim - 1
    off = t[0].reshape(-1)
    if not np.allclose(t[0] + t[1], 1.0, rtol=0, atol=1e-12):
        return None
    base = off[0]
    if base <= 0:
        return None
    q = []
    for p in range(k):
        idx = [0] * k
        idx[p] = 1
        q.append(1.0 - t[0][tuple(idx)] / base)
    q = np.array(q)
    if np.any(q < 0) or np.any(q >= 1.0 - 1e-12):
        return None
    grid = np.array(np.unravel_index(np.arange(2**k), (2,) * k)).T  # (2^k, k) parent states
    pred = base * np.prod(np.where(grid == 1, 1.0 - q, 1.0), axis=1)
    if not np.allclose(pred, off, rtol=rtol, atol=1e-14):
        return None
    return q, base


class _BPPlan:
    """Factor graph and schedule for one evidence signature."""

    def __init__(
        self, tables: ModelTables, hard: frozenset, evvars: frozenset, targets: frozenset, ev_rows: tuple[int, ...]
    ):
        cards = tables.cards
        self.tables = tables
        self.hard = hard
        relevant = tables.ancestors_closure(sorted(targets | hard | evvars))
        keep = sorted(relevant - hard)
        self.keep = keep
        pos = {v: k for k, v in enumerate(keep)}  # variable -> row in the local/belief arrays
        self.pos = pos
        C = int(max((cards[v] for v in keep), default=1))
        self.C = C
        V = len(keep)
        self.V = V
        row_of = {v: k for k, v in enumerate(ev_rows)}
        self.row_of = row_of
        # static local evidence (log-free, product form), padded states get 0
        local = np.zeros((V, C, 1))
        for v in keep:
            local[pos[v], : int(cards[v]), 0] = 1.0
        unary_items = []  # gathered unary factors -> per-case local evidence
        const_items = []  # factors without unobserved variables
        nary: list[dict] = []  # {"scope", "table" (None if per-case), "case", "child" (CPT variable)}
        nary_items = []
        for v in sorted(relevant):
            scope = (v, *tables.parents[v])
            red = tuple(sorted(x for x in scope if x not in hard))
            obs = tuple(x for x in scope if x in hard)
            table = tables.cpts[v]
            if not red:  # whole family observed: only its zero entries matter (impossible cases)
                ocards = [int(cards[x]) for x in obs]
                strides = [math.prod(ocards[k + 1 :]) for k in range(len(obs))]
                perm = [scope.index(x) for x in obs]
                const_items.append(((0,), np.transpose(table, perm).reshape(-1, 1), obs, strides))
                continue
            if not obs:
                t = np.transpose(table, [scope.index(x) for x in red])
                if len(red) == 1:
                    local[pos[red[0]], : t.shape[0], 0] *= t
                else:
                    nary.append({"scope": red, "table": np.ascontiguousarray(t), "case": False, "child": v})
                continue
            perm = [scope.index(x) for x in obs] + [scope.index(x) for x in red]
            ocards = [int(cards[x]) for x in obs]
            strides = [math.prod(ocards[k + 1 :]) for k in range(len(obs))]
            R = math.prod(int(cards[x]) for x in red)
            t = np.ascontiguousarray(np.transpose(table, perm)).reshape(math.prod(ocards), R)
            if len(red) == 1:
                unary_items.append(((pos[red[0]],), t, obs, strides))
            else:
                f = len(nary)
                nary.append({"scope": red, "table": None, "case": True, "child": None})
                nary_items.append(((f,), t, obs, strides, R))
        # gathered blocks: unary ones grouped per variable (so a product per variable)
        self.unary_blocks = []
        by_R: dict[int, list] = {}
        for it in unary_items:
            by_R.setdefault(it[1].shape[1], []).append(it)
        for R, items in sorted(by_R.items()):
            blk = GatherBlock(R, items, row_of)
            self.unary_blocks.append((blk, np.array([k[0] for k in blk.group_keys], dtype=np.intp)))
        by_R = {}
        for key, t, obs, strides, R in nary_items:
            by_R.setdefault(R, []).append((key, t, obs, strides))
        self.nary_blocks = []
        for R, items in sorted(by_R.items()):
            blk = GatherBlock(R, items, row_of)
            self.nary_blocks.append((blk, [k[0] for k in blk.group_keys]))
        self.const_block = GatherBlock(1, const_items, row_of) if const_items else None
        self.ev_local = [(pos[v], v) for v in sorted(evvars) if v in pos]
        case_local = {p for p, _ in self.ev_local} | {int(p) for _, ids in self.unary_blocks for p in ids}
        # absorb leaves: a variable in one static factor, with static local evidence
        degree: dict[int, list[int]] = {v: [] for v in keep}
        for f, fac in enumerate(nary):
            for x in fac["scope"]:
                degree[x].append(f)
        self.absorbed = []  # (variable, factor index, original table, original scope)
        taken = set()
        for v in keep:
            fs = degree[v]
            if len(fs) != 1 or pos[v] in case_local:
                continue
            f = fs[0]
            fac = nary[f]
            if fac["case"] or f in taken or len(fac["scope"]) < 2:
                continue
            taken.add(f)
            scope, t = fac["scope"], fac["table"]
            ax = scope.index(v)
            lv = local[pos[v], : int(cards[v]), 0]
            shape = [1] * len(scope)
            shape[ax] = int(cards[v])
            self.absorbed.append((v, f, t, scope))
            fac["table"] = np.ascontiguousarray((t * lv.reshape(shape)).sum(axis=ax))
            fac["scope"] = tuple(x for x in scope if x != v)
            if fac["child"] == v:
                fac["child"] = None
        self.targets = sorted(targets - hard)
        # edges: (factor, position) ; sorted by variable for the belief products
        edge_list = []
        for f, fac in enumerate(nary):
            for j, x in enumerate(fac["scope"]):
                edge_list.append((pos[x], f, j))
        edge_list.sort()
        self.E = len(edge_list)
        edge_id = {(f, j): e for e, (_, f, j) in enumerate(edge_list)}
        self.edge_var = np.array([p for p, _, _ in edge_list], dtype=np.intp)
        starts = [0] + [e for e in range(1, self.E) if edge_list[e][0] != edge_list[e - 1][0]]
        self.edge_starts = np.array(starts if self.E else [], dtype=np.intp)
        # variables bucketed by number of edges: belief products without reduceat
        by_deg: dict[int, list[list[int]]] = {}
        bounds = list(self.edge_starts) + [self.E]
        for k in range(len(bounds) - 1):
            lo, hi = bounds[k], bounds[k + 1]
            by_deg.setdefault(hi - lo, []).append([int(self.edge_var[lo])] + list(range(lo, hi)))
        self.deg_buckets = [
            (np.array([r[0] for r in rows], dtype=np.intp), np.array([r[1:] for r in rows], dtype=np.intp).T)
            for d, rows in sorted(by_deg.items())
        ]
        # factor groups: same (shape, per-case) -> stacked tables and edge ids per position
        groups: dict[tuple, list[int]] = {}
        for f, fac in enumerate(nary):
            if not fac["scope"]:
                continue
            shape = tuple(int(cards[x]) for x in fac["scope"])
            groups.setdefault((shape, fac["case"]), []).append(f)
        case_slot = {}
        for b, (_, fids) in enumerate(self.nary_blocks):
            for k, f in enumerate(fids):
                case_slot[f] = (b, k)
        self.groups = []
        for (shape, case), fids in groups.items():
            edges = np.array([[edge_id[(f, j)] for f in fids] for j in range(len(shape))], dtype=np.intp)
            if case:
                slots = [case_slot[f] for f in fids]
                table = None
            else:
                slots = None
                table = np.stack([nary[f]["table"] for f in fids]).reshape((len(fids),) + shape + (1,))
            bshapes = []
            for j in range(len(shape)):
                sh = [len(fids)] + [1] * len(shape)
                sh[1 + j] = shape[j]
                bshapes.append(tuple(sh))
            axes = [tuple(a for a in range(1, len(shape) + 1) if a != 1 + j) for j in range(len(shape))]
            self.groups.append((shape, table, slots, edges, bshapes, axes))
        self.factor_edges = {f: [edge_id[(f, j)] for j in range(len(fac["scope"]))] for f, fac in enumerate(nary)}
        self.local = local
        self.n_factors = sum(1 for fac in nary if fac["scope"])
        self.bytes_per_case = int(
            (
                6 * self.E * C
                + 4 * V * C
                + sum(b.flat.size for b, _ in self.nary_blocks)
                + 8 * sum(int(np.prod(g[0])) * g[3].shape[1] for g in self.groups)
            )
            * _ITEM
        )
        self.binary = C == 2
        self.nor_leaves = []
        # variable x edge incidence: beliefs (log-odds) are one sparse product
        self.incidence = scipy.sparse.csr_matrix(
            (np.ones(self.E), (self.edge_var, np.arange(self.E))), shape=(max(V, 1), self.E)
        )
        if self.binary:
            self._compile_binary(nary, edge_id)
        self._compile_absorbed(skip={v for item in self.nor_leaves for v in item[2]})
        self.plain_targets = self._plain_targets()

    def _compile_binary(self, nary: list[dict], edge_id: dict) -> None:
        """Split factors into noisy-OR ones (O(k) messages) and generic binary ones (log-odds messages)."""
        nor: dict[int, list] = {}  # number of parents -> [(child edge, parent edges, q, 1-leak)]
        generic: dict[tuple, list[int]] = {}
        for f, fac in enumerate(nary):
            scope = fac["scope"]
            if not scope:
                continue
            fit = (
                None
                if fac["case"] or fac["child"] is None or len(scope) < 2
                else _noisy_or(fac["table"], scope.index(fac["child"]))
            )
            if fit is not None:
                q, keep_ = fit
                cpos = scope.index(fac["child"])
                parents = [j for j in range(len(scope)) if j != cpos]
                nor.setdefault(len(parents), []).append(
                    (edge_id[(f, cpos)], [edge_id[(f, j)] for j in parents], q, keep_, f)
                )
            else:
                generic.setdefault((len(scope), fac["case"]), []).append(f)
        self.nor_groups = []
        nor_pos = {}
        for gi, (k, items) in enumerate(sorted(nor.items())):
            for n_, it in enumerate(items):
                nor_pos[it[4]] = (gi, n_, it[3])
            self.nor_groups.append(
                (
                    np.array([it[0] for it in items], dtype=np.intp),
                    np.array([it[1] for it in items], dtype=np.intp).T.copy(),  # (k, n)
                    np.array([it[2] for it in items]).T.reshape(k, len(items), 1).copy(),
                    np.array([it[3] for it in items]).reshape(len(items), 1),
                    1.0 - np.array([it[2] for it in items]).T.reshape(k, len(items), 1),
                )
            )
        # absorbed target leaves that are noisy-OR parents of a noisy-OR factor: O(1) recovery
        leaves: dict[int, list] = {}
        for v, f, table, scope in self.absorbed:
            child = nary[f]["child"]
            if v not in self.targets or f not in nor_pos or child is None:
                continue
            fit = _noisy_or(table, scope.index(child))
            if fit is None:
                continue
            q_orig, keep_orig = fit
            parents = [x for x in scope if x != child]
            gi, n_, keep_red = nor_pos[f]
            leaves.setdefault(gi, []).append((v, n_, q_orig[parents.index(v)], keep_orig / keep_red))
        for gi, items in sorted(leaves.items()):
            self.nor_leaves.append(
                (
                    gi,
                    np.array([it[1] for it in items], dtype=np.intp),
                    [it[0] for it in items],
                    np.array([it[2] for it in items]).reshape(-1, 1),
                    np.array([it[3] for it in items]).reshape(-1, 1),
                    np.array([self.pos[it[0]] for it in items], dtype=np.intp),
                )
            )
        case_slot = {}
        for b, (_, fids) in enumerate(self.nary_blocks):
            for kk, f in enumerate(fids):
                case_slot[f] = (b, kk)
        self.bin_groups = []
        for (a, case), fids in generic.items():
            edges = np.array([[edge_id[(f, j)] for f in fids] for j in range(a)], dtype=np.intp)
            if case:
                table, slots = None, [case_slot[f] for f in fids]
            else:
                table = np.stack([nary[f]["table"] for f in fids]).reshape((len(fids),) + (2,) * a + (1,))
                slots = None
            bsh = []
            for j in range(a):
                sh = [len(fids)] + [1] * a
                sh[1 + j] = 2
                bsh.append(tuple(sh))
            axes = [tuple(x for x in range(1, a + 1) if x != 1 + j) for j in range(a)]
            self.bin_groups.append((a, table, slots, edges, bsh, axes))

    def run(self, ev: PreparedEvidence, max_iter: int, tol: float, damping: float):
        if self.binary:
            return self.run_binary(ev, max_iter, tol, damping)
        return self.run_general(ev, max_iter, tol, damping)

    def _local(self, ev: PreparedEvidence):
        """Local evidence ``(V, C, B)`` (max 1 per variable and case), or the cases where it is all zero."""
        B = ev.n_cases
        local = np.repeat(self.local, B, axis=2) if B > 1 else self.local.copy()
        H = ev.matrix
        for blk, rows in self.unary_blocks:
            g, _ = blk.evaluate(H, False)  # (n_groups, R, B)
            local[rows, : blk.R, :] *= g
        for p, v in self.ev_local:
            card = int(self.tables.cards[v])
            k = self.row_of.get(v)
            if k is not None:
                h = H[k]
                seen = np.flatnonzero(h >= 0)
                ind = np.ones((card, B))
                ind[:, seen] = 0.0
                ind[h[seen], seen] = 1.0
                local[p, :card] *= ind
            s = ev.soft.get(v)
            if s is not None:
                local[p, :card] *= s.T
        top = local.max(axis=1, keepdims=True)
        bad = (top[:, 0, :] <= 0).any(axis=0) if local.shape[0] else np.zeros(B, dtype=bool)
        if self.const_block is not None:
            g, _ = self.const_block.evaluate(H, False)
            bad |= ~(g.reshape(-1, B) > 0).all(axis=0)
        case_tables = []
        for blk, _ in self.nary_blocks:
            g, _ = blk.evaluate(H, False)
            case_tables.append(g)
            bad |= ~(g.max(axis=1) > 0).all(axis=0)
        if bad.any():
            return None, bad
        local /= top
        return local, case_tables

    def _compile_absorbed(self, skip: set) -> None:
        """Group absorbed target leaves (except ``skip``) by table shape for a vectorised recovery."""
        cards = self.tables.cards
        groups: dict[tuple, list] = {}
        for v, f, table, scope in self.absorbed:
            if v not in self.targets or v in skip:
                continue
            groups.setdefault((table.shape, scope.index(v)), []).append((v, f, table, scope))
        self.absorbed_groups = []
        for (shape, ax), items in groups.items():
            tables = np.stack([it[2] for it in items]).reshape((len(items),) + shape + (1,))
            others = []
            for j in range(len(shape)):
                if j == ax:
                    continue
                k = j if j < ax else j - 1  # position in the reduced factor
                edges = np.array([self.factor_edges[it[1]][k] for it in items], dtype=np.intp)
                bshape = [len(items)] + [1] * len(shape)
                bshape[1 + j] = shape[j]
                others.append((edges, int(shape[j]), tuple(bshape)))
            rows = np.array([self.pos[it[0]] for it in items], dtype=np.intp)
            axes = tuple(1 + j for j in range(len(shape)) if j != ax)
            self.absorbed_groups.append(([it[0] for it in items], rows, int(cards[items[0][0]]), tables, others, axes))

    def _absorbed_marginals(self, out: list, local: np.ndarray, incoming, B: int) -> None:
        """Marginals of absorbed target leaves from their original factor and converged messages.

        ``incoming(edges, card)`` returns the probability-vector messages ``(len(edges), card, B)``.
        """
        for names, rows, card, tables, others, axes in self.absorbed_groups:
            prod = tables
            for edges, c, bshape in others:
                prod = prod * incoming(edges, c).reshape(bshape + (B,))
            msg = np.add.reduce(prod, axis=axes)  # (G, card, B)
            msg *= local[rows, :card]
            out.append((names, msg))

    def _plain_targets(self):
        """Targets read from beliefs directly (not absorbed), grouped by cardinality."""
        groups: dict[int, list[int]] = {}
        absorbed = {v for names, *_ in self.absorbed_groups for v in names}
        absorbed |= {v for item in self.nor_leaves for v in item[2]}
        for t in self.targets:
            if t not in absorbed:
                groups.setdefault(int(self.tables.cards[t]), []).append(t)
        return [(names, np.array([self.pos[t] for t in names], dtype=np.intp), card) for card, names in groups.items()]

    @staticmethod
    def _finish(groups: list, B: int):
        """Normalise ``[(names, array (G, card, B))]``; return ``{name: (card, B)}`` and impossible cases."""
        out = {}
        bad = np.zeros(B, dtype=bool)
        for names, arr in groups:
            s = arr.sum(axis=1, keepdims=True)
            ok = s > 0
            bad |= ~ok[:, 0, :].all(axis=0)
            arr = arr / np.where(ok, s, 1.0)
            for k, v in enumerate(names):
                out[v] = arr[k]
        return out, bad

    def run_binary(self, ev: PreparedEvidence, max_iter: int, tol: float, damping: float):
        """Loopy BP with log-odds messages (all variables binary)."""
        B = ev.n_cases
        E = self.E
        local, case_tables = self._local(ev)
        if local is None:
            return None, case_tables, 0, 0.0
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            lo_local = np.log(local[:, 1]) - np.log(local[:, 0])  # (V, B)
            np.clip(lo_local, -_CLAMP, _CLAMP, out=lo_local)
            f2v = np.zeros((E, B))
            new = np.empty((E, B))
            p1 = np.empty((E, B))
            diff = np.empty((E, B))
            v2f = lo_local[self.edge_var]
            change, it = 0.0, 0
            for it in range(1, max_iter + 1):
                # P(state 1) of each variable-to-factor message: 1 / (1 + exp(-v2f))
                np.negative(v2f, out=p1)
                np.exp(p1, out=p1)
                p1 += 1.0
                np.reciprocal(p1, out=p1)
                for child, parents, q, keep_, omq in self.nor_groups:
                    t = np.take(p1, parents, axis=0)  # (k, n, B); take beats fancy indexing here
                    t *= -q
                    t += 1.0  # expected "no transmission" from each parent
                    a = np.multiply.reduce(t, axis=0)
                    a *= keep_  # P(child = 0 | messages)
                    r = 1.0 - a
                    r /= a
                    np.log(r, out=r)
                    new[child] = r
                    lam1 = np.take(p1, child, axis=0)
                    d = lam1 * -2.0
                    d += 1.0
                    a_p = a / t  # leave one parent out
                    a_p *= d
                    m1 = omq * a_p
                    m1 += lam1
                    a_p += lam1
                    m1 /= a_p
                    np.log(m1, out=m1)
                    new[parents] = m1
                for a_, table, slots, edges, bsh, axes in self.bin_groups:
                    if table is None:
                        table = np.stack([case_tables[b][k] for b, k in slots]).reshape(
                            (edges.shape[1],) + (2,) * a_ + (B,)
                        )
                    ms = []
                    for j in range(a_):
                        pj = p1[edges[j]]
                        ms.append(np.stack([1.0 - pj, pj], axis=1).reshape(bsh[j] + (B,)))
                    for j in range(a_):
                        prod = table
                        for k2 in range(a_):
                            if k2 != j:
                                prod = prod * ms[k2]
                        sj = np.add.reduce(prod, axis=axes[j])
                        sj = sj.reshape(edges.shape[1], 2, sj.shape[-1])
                        new[edges[j]] = np.log(sj[:, 1] / sj[:, 0])
                np.fmin(new, _CLAMP, out=new)  # fmin/fmax also map NaN to a bound
                np.fmax(new, -_CLAMP, out=new)
                if damping and it > 1:
                    f2v *= damping
                    new *= 1.0 - damping
                    f2v += new
                else:
                    f2v, new = new, f2v
                belief = self.incidence @ f2v
                belief += lo_local
                nv = np.take(belief, self.edge_var, axis=0)  # (faster without out=)
                nv -= f2v
                np.clip(nv, -_CLAMP, _CLAMP, out=nv)
                if E:
                    np.subtract(nv, v2f, out=diff)
                    np.abs(diff, out=diff)
                    change = float(diff.max()) / 4.0  # |d sigmoid| <= |d log-odds| / 4
                v2f = nv
                if change <= tol:
                    break
            if not E:
                belief = lo_local
            out = []
            for names, rows, _ in self.plain_targets:
                p = 1.0 / (1.0 + np.exp(-belief[rows]))
                out.append((names, np.stack([1.0 - p, p], axis=1)))
            p1 = 1.0 / (1.0 + np.exp(-v2f))
            for gi, idx, names, q, ratio, rows in self.nor_leaves:
                child, parents, qs, keep_, _ = self.nor_groups[gi]
                t = p1[parents[:, idx]]
                t *= -qs[:, idx]
                t += 1.0
                a_leaf = np.prod(t, axis=0) * (keep_[idx] * ratio)  # P(child off | leaf off, messages)
                lam1 = p1[child[idx]]
                d = 1.0 - 2.0 * lam1
                m0 = lam1 + d * a_leaf
                m1 = lam1 + d * ((1.0 - q) * a_leaf)
                lv = local[rows]
                out.append((names, np.stack([lv[:, 0] * m0, lv[:, 1] * m1], axis=1)))
            if self.absorbed_groups:

                def incoming(edges, card):
                    pe = p1[edges]
                    return np.stack([1.0 - pe, pe], axis=1)

                self._absorbed_marginals(out, local, incoming, B)
        out, bad = self._finish(out, B)
        return out, bad, it, change

    def run_general(self, ev: PreparedEvidence, max_iter: int, tol: float, damping: float):
        B = ev.n_cases
        C, E = self.C, self.E
        local, case_tables = self._local(ev)
        if local is None:
            return None, case_tables, 0, 0.0
        f2v = np.ones((E, C, B))
        v2f = local[self.edge_var]
        np.maximum(v2f, _FLOOR, out=v2f)
        change = 0.0
        it = 0
        prev = v2f
        for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
            new_f2v = np.empty_like(f2v) if damping else f2v
            for shape, table, slots, edges, bshapes, axes in self.groups:
                if table is None:
                    table = np.stack([case_tables[b][k] for b, k in slots]).reshape((edges.shape[1],) + shape + (B,))
                ms = [v2f[edges[j], : shape[j]].reshape(bshapes[j] + (B,)) for j in range(len(shape))]
                prod = table * ms[0]
                for m in ms[1:]:
                    prod *= m
                for j in range(len(shape)):
                    s = np.add.reduce(prod, axis=axes[j])
                    s = s.reshape(edges.shape[1], shape[j], s.shape[-1])
                    s = s / np.maximum(ms[j].reshape(edges.shape[1], shape[j], B), _FLOOR)
                    t = s.max(axis=1, keepdims=True)
                    s /= np.where(t > 0, t, 1.0)
                    new_f2v[edges[j], : shape[j]] = s
            if damping:
                f2v = damping * f2v + (1.0 - damping) * new_f2v
            np.maximum(f2v, _FLOOR, out=f2v)
            belief = local.copy()
            for vrows, erows in self.deg_buckets:
                acc = f2v[erows[0]]
                for er in erows[1:]:
                    acc *= f2v[er]
                belief[vrows] *= acc
            v2f = belief[self.edge_var] / f2v
            t = v2f.max(axis=1, keepdims=True)
            v2f /= np.where(t > 0, t, 1.0)
            np.maximum(v2f, _FLOOR, out=v2f)
            change = float(np.abs(v2f - prev).max()) if E else 0.0
            prev = v2f
            if change <= tol:
                break
        if not E:
            belief = local
        out = [(names, belief[rows, :card]) for names, rows, card in self.plain_targets]
        if self.absorbed_groups:

            def incoming(edges, card):
                return v2f[edges, :card]

            self._absorbed_marginals(out, local, incoming, B)
        out, bad = self._finish(out, B)
        return out, bad, it, change


class LoopyBPEngine(TableEngine):
    """Approximate posterior marginals by batched loopy belief propagation.

    Parameters
    ----------
    tables : ModelTables
        The network (see :meth:`from_pgmpy`).
    max_iterations : int, default 100
    tolerance : float, default 1e-6
        Stop once no normalised message changes by more than this.
    damping : float, default 0.0
        Weight of the previous factor-to-variable message (0 = undamped).
    memory_budget_bytes : int, default 2 GiB
        Cases are processed in chunks that fit.

    Attributes
    ----------
    kind : str
        ``"approximate"``.
    name : str
        ``"loopy-bp"``.
    assumption : str
        What the answers assume (see :data:`ASSUMPTION`).
    variables, states
        As in :class:`~diagnosis.inference.compiled.CompiledEngine`.
    last_run : BPRunInfo or None
        Diagnostics of the last :meth:`query`.
    fallback_reason : str or None
        Set by :func:`~diagnosis.inference.make_engine`: why exact inference
        was refused.
    """

    kind = "approximate"
    name = "loopy-bp"
    assumption = ASSUMPTION

    def __init__(
        self,
        tables: ModelTables,
        *,
        max_iterations: int = 100,
        tolerance: float = 1e-6,
        damping: float = 0.0,
        memory_budget_bytes: int = 2**31,
    ):
        if not 0.0 <= damping < 1.0:
            raise ParameterError(
                f"The 'damping' parameter of LoopyBPEngine must be a float in the range [0, 1). Got {damping!r} instead."
            )
        super().__init__(tables)
        self.max_iterations = int(max_iterations)
        self.tolerance = float(tolerance)
        self.damping = float(damping)
        self.memory_budget_bytes = int(memory_budget_bytes)
        self.last_run: BPRunInfo | None = None
        self.fallback_reason: str | None = None

    @classmethod
    def from_pgmpy(cls, model, **kwargs) -> LoopyBPEngine:
        """Build the engine from a pgmpy ``DiscreteBayesianNetwork``.

        Parameters
        ----------
        model : pgmpy.models.DiscreteBayesianNetwork
        **kwargs
            ``max_iterations``, ``tolerance``, ``damping``, ``memory_budget_bytes``.

        Returns
        -------
        LoopyBPEngine
        """
        return cls(ModelTables.from_pgmpy(model), **kwargs)

    def _plan(self, ev: PreparedEvidence, targets: frozenset) -> _BPPlan:
        hard, partial, soft = ev.signature()
        return self._cached_plan(
            (hard, partial, soft, targets),
            lambda: _BPPlan(self._tables, hard, (partial | soft) - hard, targets, ev.vars),
        )

    def query(
        self,
        targets: Sequence[str],
        evidence: Mapping[str, np.ndarray] | None = None,
        soft_evidence: Mapping[str, np.ndarray] | None = None,
        *,
        n_cases: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Approximate posterior marginals of ``targets`` for a batch of cases.

        Parameters
        ----------
        targets, evidence, soft_evidence, n_cases
            As in :meth:`diagnosis.inference.compiled.CompiledEngine.query`.

        Returns
        -------
        dict of str to ndarray
            ``{target: array (B, card)}``, rows summing to 1.

        Raises
        ------
        EvidenceError
            Unknown variable or state, or evidence that propagation finds
            impossible (a belief of all zeros), naming the cases.
        ModelError
            One case does not fit the memory budget.
        """
        tix = resolve_targets(self._tables, targets)
        ev = prepare_evidence(self._tables, evidence, soft_evidence, n_cases)
        plan = self._plan(ev, frozenset(tix))
        B = ev.n_cases
        if plan.bytes_per_case > self.memory_budget_bytes:
            raise ModelError(
                f"loopy BP needs {plan.bytes_per_case:,} bytes per case; memory budget is "
                f"{self.memory_budget_bytes:,} bytes"
            )
        by_cache = max(_CHUNK, min(1024, 2**18 // max(plan.E, 1)))
        chunk = int(max(1, min(B, self.memory_budget_bytes // max(plan.bytes_per_case, 1), by_cache)))
        out = {t: np.empty((B, int(self._tables.cards[t]))) for t in dict.fromkeys(tix)}
        bad = np.zeros(B, dtype=bool)
        iters, change = 0, 0.0
        converged = True
        for start in range(0, B, chunk):
            stop = min(B, start + chunk)
            sub = ev.take(start, stop) if (start, stop) != (0, B) else ev
            res, bd, it, ch = plan.run(sub, self.max_iterations, self.tolerance, self.damping)
            bad[start:stop] = bd
            iters = max(iters, it)
            change = max(change, ch)
            converged &= ch <= self.tolerance
            if res is None:
                continue
            for t, r in res.items():
                if t in out:
                    out[t][start:stop] = r.T
        for t in out:
            if t in plan.hard:
                o = out[t]
                o.fill(0.0)
                o[np.arange(B), ev.matrix[ev.vars.index(t)]] = 1.0
        self.last_run = BPRunInfo(iters, change, bool(converged), plan.n_factors, plan.E, plan.bytes_per_case)
        if np.any(bad):
            raise EvidenceError(f"evidence has probability zero in case(s) {_case_list(np.flatnonzero(bad))}")
        return {self._tables.names[t]: out[t] for t in tix}

    def __repr__(self) -> str:
        return f"LoopyBPEngine({len(self.variables)} variables, max_iterations={self.max_iterations})"
