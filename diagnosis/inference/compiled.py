"""Compiled, batched, exact inference for discrete Bayesian networks.

:class:`CompiledEngine` reads a pgmpy network once into numpy tables and answers
*batches* of incidents: a matrix of evidence rows (hard state indices or soft
likelihood vectors) in, posterior marginals per case out.

How it works
------------
For each *evidence signature* -- which variables are observed in every case of
the batch, which only in some (or softly), which are targets -- a junction tree is
compiled and cached:

1. barren variables (not an ancestor of a target or of evidence) are dropped;
2. variables observed in every case are instantiated: each CPT touching them
   becomes a per-case factor by gathering (no table over the observed variable
   remains), so e.g. observed detectors add no clique dimensions;
3. the remaining interaction graph is triangulated with min-fill and with
   min-weight; the elimination with fewer clique-table entries wins; its cliques
   form a junction tree (components joined by empty separators);
4. batch-independent CPTs are multiplied into static clique tables once.

A query runs Hugin propagation (collect to the root, distribute to the cliques
holding targets) on clique potentials of shape ``(*clique_cards, B)`` -- the batch
axis last, so every multiply/sum is a vectorised numpy loop over cases.  Collect
messages are normalised per case (their logs accumulate into ``log P(e)``), so
long evidence vectors do not underflow.  Cases are processed in chunks sized to
the memory budget.

The result is exact (up to float64 rounding); the tests check it against pgmpy's
``VariableElimination`` to 1e-9.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from diagnosis.exceptions import EvidenceError, ModelTooLargeError
from diagnosis.inference._gather import GatherBlock as _GatherBlock
from diagnosis.inference._jtree import EliminationTooLarge, best_elimination, junction_tree
from diagnosis.inference.base import DEFAULT_MEMORY_BUDGET, TableEngine
from diagnosis.inference.tables import (
    ModelTables,
    PreparedEvidence,
    _case_list,
    prepare_evidence,
    resolve_targets,
)

__all__ = ["CompiledEngine", "CompiledStats"]

#: Default memory budget of an engine: 2 GiB.

_ITEM = 8  # bytes per float64
_CHUNK_CAP = 4096  # most cases per chunk (more does not amortise anything further)
_CHUNK_MIN = 64  # fewest cases per chunk when memory allows (short inner loops are slow)
_CHUNK_TARGET_ENTRIES = 2**21  # aim: all clique potentials of a chunk ~16 MiB (cache-friendly)
_GROUP_MIN_CASES = 32  # smaller batches: one structure
_GROUP_MIN_OPS = 5e6  # per case of the one structure; above, a plan per pattern wins (water: 2e7, andes: 2e6)
_THREAD_MIN_OPS = 2e7  # a chunk worth a thread of its own (below, the pool costs more than it saves)


@dataclass(frozen=True)
class CompiledStats:
    """Size of a compiled junction tree (per case unless stated).

    Attributes
    ----------
    n_variables : int
        Variables kept in the junction tree.
    n_instantiated : int
        Variables observed in every case, folded into per-case factors.
    n_cliques : int
        Cliques of the junction tree.
    treewidth : int
        Largest clique size minus one.
    max_clique_vars : int
        Variables in the largest clique.
    max_clique_entries : int
        Entries of the largest clique table.
    total_entries : int
        Entries of all clique tables (per case).
    separator_entries : int
        Entries of all separators (per case).
    ops_per_case : int
        Scalar multiply/add/divide operations one case costs in the schedule
        (the "table entries touched per incident").
    bytes_per_case : int
        Working memory per case of a batch.
    static_bytes : int
        Batch-independent tables held by the compiled plan.
    heuristic : str
        Triangulation heuristic that won (``"min-fill"`` or ``"min-weight"``).
    compile_seconds : float
        Wall time of the compilation.
    """

    n_variables: int
    n_instantiated: int
    n_cliques: int
    treewidth: int
    max_clique_vars: int
    max_clique_entries: int
    total_entries: int
    separator_entries: int
    ops_per_case: int
    bytes_per_case: int
    static_bytes: int
    heuristic: str
    compile_seconds: float


# --------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------

_SMALL_SEP = 16  # a separator this many times smaller than its clique may join a bundle


class _Structure:
    """Junction tree, factor assignment and schedule for one evidence signature.

    Parameters
    ----------
    tables : ModelTables
    hard : frozenset of int
        Variables observed in every case (instantiated).
    evvars : frozenset of int
        Variables with per-case indicator/likelihood vectors (observed in some
        cases only, or soft evidence), not in ``hard``.
    targets : frozenset of int
    max_entries : float
        Abandon triangulation beyond this many clique entries.
    """

    def __init__(
        self, tables: ModelTables, hard: frozenset, evvars: frozenset, targets: frozenset, *, max_entries: float
    ):
        t0 = time.perf_counter()
        self._cards = tables.cards
        self.hard = hard
        self.evvars = evvars
        self.targets = targets
        cards = tables.cards
        relevant = tables.ancestors_closure(sorted(targets | hard | evvars))
        self.relevant = relevant
        keep = sorted(relevant - hard)
        self.keep = keep
        # factors: (cpt variable, reduced scope sorted, observed variables of the scope)
        factors = []
        adj: dict[int, set[int]] = {v: set() for v in keep}
        for v in sorted(relevant):
            scope = (v, *tables.parents[v])
            red = tuple(sorted(x for x in scope if x not in hard))
            obs = tuple(x for x in scope if x in hard)
            factors.append((v, red, obs))
            for a in red:
                adj[a].update(red)
        for a in keep:
            adj[a].discard(a)
        self.factors = factors
        if keep:
            full_adj: list[set[int]] = [set()] * len(cards)
            for a in keep:
                full_adj[a] = adj[a]
            order, elim_cliques, heuristic = best_elimination(full_adj, keep, cards, max_entries=max_entries)
            cliques, parent = junction_tree(order, elim_cliques)
        else:
            cliques, parent, heuristic = [], [], "none"
        self.heuristic = heuristic
        self.cliques = cliques
        self.parent = parent
        n = len(cliques)
        self.children: list[list[int]] = [[] for _ in range(n)]
        for i, p in enumerate(parent):
            if p >= 0:
                self.children[p].append(i)
        self.sizes = [math.prod(int(cards[v]) for v in c) for c in cliques]
        self.seps = [
            tuple(sorted(set(cliques[i]) & set(cliques[parent[i]]))) if parent[i] >= 0 else () for i in range(n)
        ]
        self.sep_sizes = [math.prod(int(cards[v]) for v in s) for s in self.seps]
        holders: dict[int, list[int]] = {v: [] for v in keep}
        for i, c in enumerate(cliques):
            for v in c:
                holders[v].append(i)
        sep_holders: dict[int, list[int]] = {v: [] for v in keep}
        for i, sp in enumerate(self.seps):
            for v in sp:
                sep_holders[v].append(i)
        # each factor with a non-empty reduced scope goes to the smallest clique holding it
        self.assign: list[int] = []
        for _, red, _ in factors:
            if not red:
                self.assign.append(-1)
                continue
            cand = [i for i in holders[red[0]] if set(red) <= set(cliques[i])]
            self.assign.append(min(cand, key=lambda i: (self.sizes[i], i)))
        self.ev_assign = {v: min(holders[v], key=lambda i: (self.sizes[i], i)) for v in sorted(evvars)}
        # batch-dependent cliques: a per-case factor inside, or below
        has_batch = [False] * n
        for (_, _, obs), i in zip(factors, self.assign):
            if obs and i >= 0:
                has_batch[i] = True
        for i in self.ev_assign.values():
            has_batch[i] = True
        pre: list[int] = []
        stack = [0] if n else []
        while stack:
            i = stack.pop()
            pre.append(i)
            stack.extend(reversed(self.children[i]))
        self.pre = pre
        self.post = pre[::-1]
        dynamic = list(has_batch)
        for i in self.post:
            if parent[i] >= 0 and dynamic[i]:
                dynamic[parent[i]] = True
        self.dynamic = dynamic
        # target containers: the smallest clique or separator holding the target
        self.containers: dict[int, tuple[str, int]] = {}
        for t in sorted(targets - hard):
            best = None
            for i in holders[t]:
                cand = (self.sizes[i], 0, i)
                if best is None or cand < best[0]:
                    best = (cand, ("clique", i))
            for i in sep_holders[t]:
                cand = (self.sep_sizes[i], 1, i)
                if cand < best[0]:
                    best = (cand, ("sep", i))
            self.containers[t] = best[1]
        calibrate = [False] * n
        need_phi = [False] * n
        for kind, i in self.containers.values():
            j = i if kind == "clique" else parent[i]
            if kind == "sep":
                need_phi[i] = True
            while j >= 0 and not calibrate[j]:
                calibrate[j] = True
                j = parent[j]
        for i in range(n):
            if parent[i] >= 0 and calibrate[i]:
                need_phi[i] = True
            if parent[i] >= 0 and not self.seps[i]:  # empty separator: an independent component
                need_phi[i] = False
        self.calibrate = calibrate
        self.need_phi = need_phi
        # bundles: several small child separators handled through their union
        self.collect_bundle = [
            self._bundle(i, [c for c in self.children[i] if dynamic[c] and self.seps[c]]) for i in range(n)
        ]
        self.phi_bundle = [self._bundle(i, [c for c in self.children[i] if need_phi[c]]) for i in range(n)]
        self.compile_seconds = time.perf_counter() - t0

    def _bundle(self, i: int, kids: list[int]):
        small = [c for c in kids if self.sep_sizes[c] * _SMALL_SEP <= self.sizes[i]]
        if len(small) < 2:
            return None
        union = tuple(sorted(set().union(*(self.seps[c] for c in small))))
        usize = math.prod(int(self._cards[v]) for v in union) if union else 1
        if usize * 4 > self.sizes[i]:
            return None
        return union, small

    # ---- sizes ------------------------------------------------------------------
    def ops_per_case(self) -> int:
        """Scalar operations per case of the schedule (dynamic part)."""
        counts = [0] * len(self.cliques)
        for (_, _, obs), i in zip(self.factors, self.assign):
            if obs and i >= 0:
                counts[i] += 1
        for i in self.ev_assign.values():
            counts[i] += 1
        ops = 0
        for i, size in enumerate(self.sizes):
            if self.dynamic[i]:
                b = self.collect_bundle[i]
                kids = [c for c in self.children[i] if self.dynamic[c] and self.seps[c]]
                nterms = counts[i] + len(kids) + 1
                if b is not None:
                    nterms -= len(b[1]) - 1
                    ops += len(b[1]) * math.prod(int(self._cards[v]) for v in b[0])
                ops += size * max(1, nterms - 1)
                ops += size if self.parent[i] >= 0 else size  # message or normalising sum
            if self.parent[i] >= 0 and self.need_phi[i]:
                pb = self.phi_bundle[self.parent[i]]
                if pb is not None and i in pb[1]:
                    ops += math.prod(int(self._cards[v]) for v in pb[0])
                else:
                    ops += self.sizes[self.parent[i]]
                ops += self.sep_sizes[i]
                if self.calibrate[i]:
                    ops += size
        for kind, i in self.containers.values():
            ops += self.sizes[i] if kind == "clique" else self.sep_sizes[i]
        # per-phi-bundle reduction of the parent
        for i, pb in enumerate(self.phi_bundle):
            if pb is not None:
                ops += self.sizes[i]
        return int(ops)

    def bytes_per_case(self, tables: ModelTables) -> int:
        entries = sum(self.sizes) + 3 * sum(self.sep_sizes) + 2 * (max(self.sizes) if self.sizes else 0)
        entries += sum(int(tables.cards[v]) for v in self.targets) + 2 * sum(int(tables.cards[v]) for v in self.evvars)
        entries += 4 * len(self.factors) * 2 + len(self.hard) + 8
        return int(entries * _ITEM)

    def static_bytes(self, tables: ModelTables) -> int:
        return int((2 * sum(self.sizes) + sum(t.size for t in tables.cpts)) * _ITEM)

    def stats(self, tables: ModelTables) -> CompiledStats:
        return CompiledStats(
            n_variables=len(self.keep),
            n_instantiated=len(self.hard & self.relevant),
            n_cliques=len(self.cliques),
            treewidth=max((len(c) for c in self.cliques), default=1) - 1,
            max_clique_vars=max((len(c) for c in self.cliques), default=0),
            max_clique_entries=max(self.sizes, default=0),
            total_entries=int(sum(self.sizes)),
            separator_entries=int(sum(self.sep_sizes)),
            ops_per_case=self.ops_per_case(),
            bytes_per_case=self.bytes_per_case(tables),
            static_bytes=self.static_bytes(tables),
            heuristic=self.heuristic,
            compile_seconds=self.compile_seconds,
        )


def _bshape(sub: Sequence[int], full: Sequence[int], cards) -> tuple[int, ...]:
    """Broadcast shape (without the batch axis) of a table over ``sub`` inside one over ``full``."""
    s = set(sub)
    return tuple(int(cards[v]) if v in s else 1 for v in full)


def _sum_axes(full: Sequence[int], keep: Sequence[int]) -> tuple[int, ...]:
    k = set(keep)
    return tuple(a for a, v in enumerate(full) if v not in k)


class _Plan:
    """Executable schedule for one evidence signature."""

    def __init__(self, tables: ModelTables, st: _Structure, ev_rows: tuple[int, ...]):
        t0 = time.perf_counter()
        cards = tables.cards
        self.st = st
        self.tables = tables
        n = len(st.cliques)
        cl = st.cliques
        self.n = n
        self.shapes = [tuple(int(cards[v]) for v in c) for c in cl]
        row_of = {v: k for k, v in enumerate(ev_rows)}
        # static tables (with a trailing batch axis of 1)
        static: list[np.ndarray | None] = [None] * n
        by_R: dict[int, list] = {}
        for (v, red, obs), i in zip(st.factors, st.assign):
            scope = (v, *tables.parents[v])
            table = tables.cpts[v]
            if not obs:
                perm = [scope.index(x) for x in red]
                t = np.transpose(table, perm).reshape(_bshape(red, cl[i], cards) + (1,))
                static[i] = t.copy() if static[i] is None else static[i] * t
                continue
            if v in obs and not tables.children[v]:
                # A leaf observed in some cases only is folded like an always-observed
                # one: its extra row of ones (index ``card``) stands for "not observed
                # in this case", so the leaf never enters the junction tree.
                table = np.concatenate([table, np.ones((1,) + table.shape[1:])], axis=0)
            perm = [scope.index(x) for x in obs] + [scope.index(x) for x in red]
            ocards = [int(cards[x]) + (x == v and not tables.children[v]) for x in obs]
            strides = [math.prod(ocards[k + 1 :]) for k in range(len(obs))]
            R = math.prod(int(cards[x]) for x in red)
            t = np.ascontiguousarray(np.transpose(table, perm)).reshape(math.prod(ocards), R)
            by_R.setdefault(R, []).append(((i, red), t, obs, strides))
        for i in range(n):
            if static[i] is not None and static[i].shape[:-1] != self.shapes[i]:
                static[i] = np.broadcast_to(static[i], self.shapes[i] + (1,)).copy()
        # gather blocks; group (i, red) -> (block, group index)
        self.blocks = []
        self.terms: list[list] = [[] for _ in range(n)]  # ("g", block, k, bshape) | ("e", var, bshape)
        self.const_blocks = []
        for R, items in sorted(by_R.items()):
            blk = _GatherBlock(R, items, row_of)
            b = len(self.blocks)
            self.blocks.append(blk)
            for k, (i, red) in enumerate(blk.group_keys):
                if i < 0:
                    self.const_blocks.append((b, k))
                else:
                    self.terms[i].append(("g", b, k, _bshape(red, cl[i], cards)))
        for v, i in st.ev_assign.items():
            self.terms[i].append(("e", v, _bshape((v,), cl[i], cards)))
        self.ev_rows = row_of
        # static subtrees: fold their (batch-independent) messages into the parent once
        self.static_scale = 1.0
        self.static_pot: list[np.ndarray | None] = [None] * n
        self.static_msg: list[np.ndarray | None] = [None] * n
        for i in st.post:
            if st.dynamic[i]:
                continue
            pot = static[i] if static[i] is not None else np.ones(self.shapes[i] + (1,))
            self.static_pot[i] = pot
            p = st.parent[i]
            if p < 0:
                continue
            axes = _sum_axes(cl[i], st.seps[i])
            m = np.add.reduce(pot, axis=axes) if axes else pot.copy()
            self.static_msg[i] = m
            if st.seps[i]:
                mb = m.reshape(_bshape(st.seps[i], cl[p], cards) + (1,))
                static[p] = mb * np.ones(self.shapes[p] + (1,)) if static[p] is None else static[p] * mb
            else:
                # independent component without evidence: its total is a constant factor
                self.static_scale *= float(m.reshape(-1)[0])
        self.static = static
        self.static_msg_zero_free = [m is not None and bool(np.all(m > 0)) for m in self.static_msg]
        self.parent = st.parent
        self.msg_axes = [(_sum_axes(cl[i], st.seps[i]) if st.parent[i] >= 0 else ()) for i in range(n)]
        self.msg_shape_parent = [
            (_bshape(st.seps[i], cl[st.parent[i]], cards) if st.parent[i] >= 0 else None) for i in range(n)
        ]
        self.phi_axes = [(_sum_axes(cl[st.parent[i]], st.seps[i]) if st.parent[i] >= 0 else ()) for i in range(n)]
        self.msg_shape_child = [_bshape(st.seps[i], cl[i], cards) for i in range(n)]
        # collect: per dynamic clique, children handled directly / through a bundle
        self.collect = []
        for i in st.post:
            if not st.dynamic[i]:
                continue
            kids = [c for c in st.children[i] if st.dynamic[c]]
            bundle = st.collect_bundle[i]
            direct = [c for c in kids if bundle is None or c not in bundle[1]]
            bspec = None
            if bundle is not None:
                union, small = bundle
                bspec = ([(c, _bshape(st.seps[c], union, cards)) for c in small], _bshape(union, cl[i], cards))
            self.collect.append((i, [(c, self.msg_shape_parent[c], not st.seps[c]) for c in direct], bspec))
        # distribute
        self.distribute = []
        for i in st.pre:
            p = st.parent[i]
            if p < 0 or not st.need_phi[i]:
                continue
            pb = st.phi_bundle[p]
            if pb is not None and i in pb[1]:
                union = pb[0]
                via = (_sum_axes(cl[p], union), _sum_axes(union, st.seps[i]))
            else:
                via = None
            self.distribute.append((i, p, via))
        self.targets_out = []
        for t, (kind, i) in st.containers.items():
            full = cl[i] if kind == "clique" else st.seps[i]
            self.targets_out.append((t, kind, i, _sum_axes(full, (t,))))
        self.max_clique = max(st.sizes, default=0)
        self.bytes_per_case = st.bytes_per_case(tables)
        self.static_bytes = int(
            sum(x.size for x in static if x is not None) * _ITEM
            + sum(x.size for x in self.static_pot if x is not None) * _ITEM
            + sum(b.flat.size for b in self.blocks) * _ITEM
        )
        st.compile_seconds += time.perf_counter() - t0
        self.stats = st.stats(tables)

    # ---- execution ------------------------------------------------------------------
    def chunk_size(self, n_cases: int, budget: int, parallel: int = 1) -> int:
        """Cases per chunk: ``parallel`` chunks in flight at once, with the static tables, fit ``budget``."""
        avail = budget - self.static_bytes
        if avail < self.bytes_per_case:
            raise _too_large(self.static_bytes + self.bytes_per_case, budget, self.stats)
        by_mem = avail // (self.bytes_per_case * max(1, parallel))
        total = max(1, self.stats.total_entries)
        by_cache = max(_CHUNK_MIN, 1 << max(0, (_CHUNK_TARGET_ENTRIES // total).bit_length() - 1))
        return int(max(1, min(n_cases, by_mem, by_cache, _CHUNK_CAP)))

    def _ev_factor(self, v: int, ev: PreparedEvidence, B: int) -> np.ndarray:
        card = int(self.tables.cards[v])
        out = np.ones((card, B))
        k = self.ev_rows.get(v)
        if k is not None:
            h = ev.matrix[k]
            seen = np.flatnonzero(h >= 0)
            out[:, seen] = 0.0
            out[h[seen], seen] = 1.0
        s = ev.soft.get(v)
        if s is not None:
            out *= s.T
        return out

    def run(self, ev: PreparedEvidence, want_marginals: bool, robust: bool = False):
        """Propagate one chunk of cases.

        Returns
        -------
        marginals : dict of int to ndarray ``(card, B)`` (``B`` may be 1 if batch-independent)
        log_z : ndarray ``(B,)``
            ``log`` of the evidence probability (soft likelihoods as scaled).
        suspect : ndarray of bool ``(B,)``
            Cases whose normalising constant under- or overflowed (fast path) or is
            zero (robust path).
        """
        B = ev.n_cases
        H = ev.matrix
        logz = np.zeros(B)
        scal = np.ones(B)
        gathered = []
        for blk in self.blocks:
            g, top = blk.evaluate(H, robust)
            gathered.append(g)
            if top is not None:
                logz += np.where(np.isfinite(top), top, 0.0).sum(axis=0)
                scal[~np.isfinite(top).all(axis=0)] = 0.0
        for b, k in self.const_blocks:
            scal *= gathered[b][k, 0]
        for v, s in ev.soft.items():
            if v in self.st.hard:
                scal *= s[np.arange(B), ev.matrix[self.ev_rows[v]]]
        scal *= self.static_scale
        n = self.n
        pots: list[np.ndarray | None] = list(self.static_pot)
        msgs: list[np.ndarray | None] = list(self.static_msg)
        static, shapes, terms_all = self.static, self.shapes, self.terms
        for i, direct, bspec in self.collect:
            terms = []
            if static[i] is not None:
                terms.append(static[i])
            for term in terms_all[i]:
                if term[0] == "g":
                    terms.append(gathered[term[1]][term[2]].reshape(term[3] + (B,)))
                else:
                    terms.append(self._ev_factor(term[1], ev, B).reshape(term[2] + (B,)))
            for c, mshape, empty in direct:
                m = msgs[c]
                if empty:
                    scal *= m
                else:
                    terms.append(m.reshape(mshape + (B,)))
            if bspec is not None:
                small, ushape = bspec
                c, sh = small[0]
                prod = msgs[c].reshape(sh + (B,))
                for c, sh in small[1:]:
                    prod = prod * msgs[c].reshape(sh + (B,))
                terms.append(prod.reshape(ushape + (B,)))
            pot = np.empty(shapes[i] + (B,))
            if not terms:
                pot.fill(1.0)
            elif len(terms) == 1:
                pot[...] = terms[0]
            else:
                np.multiply(terms[0], terms[1], out=pot)
                for t in terms[2:]:
                    pot *= t
            pots[i] = pot
            if self.parent[i] < 0:
                continue
            axes = self.msg_axes[i]
            m = np.add.reduce(pot, axis=axes) if axes else pot.copy()
            if robust and m.ndim > 1:
                top = m.reshape(-1, B).max(axis=0)
                ok = top > 0
                top = np.where(ok, top, 1.0)
                m /= top
                logz += np.log(top)
                scal[~ok] = 0.0
            msgs[i] = m
        if n:
            root = pots[0]
            z = root.reshape(-1, root.shape[-1]).sum(axis=0)
            scal = scal * z
        suspect = ~((scal > _TINY) & (scal < _HUGE)) if not robust else ~(scal > 0)
        with np.errstate(divide="ignore"):
            logz += np.log(scal)
        marg: dict[int, np.ndarray] = {}
        if not want_marginals:
            return marg, logz, suspect
        phis: dict[int, np.ndarray] = {}
        qcache: dict[int, np.ndarray] = {}
        for i, p, via in self.distribute:
            src = pots[p]
            if via is None:
                phi = np.add.reduce(src, axis=self.phi_axes[i])
            else:
                q = qcache.get(p)
                if q is None:
                    q = np.add.reduce(src, axis=via[0]) if via[0] else src
                    qcache[p] = q
                phi = np.add.reduce(q, axis=via[1]) if via[1] else q.copy()
            if robust:
                top = phi.reshape(-1, phi.shape[-1]).max(axis=0)
                phi /= np.where(top > 0, top, 1.0)
            phis[i] = phi
            if not self.st.calibrate[i]:
                continue
            m = msgs[i]
            if self.static_msg_zero_free[i] if m is self.static_msg[i] else m.all():
                ratio = phi / m
            else:
                ratio = np.divide(phi, m, out=np.zeros(np.broadcast_shapes(phi.shape, m.shape)), where=m > 0)
            rb = ratio.reshape(self.msg_shape_child[i] + (ratio.shape[-1],))
            if self.st.dynamic[i]:
                pots[i] *= rb
            else:
                pots[i] = self.static_pot[i] * rb
        for t, kind, i, axes in self.targets_out:
            src = pots[i] if kind == "clique" else phis[i]
            r = np.add.reduce(src, axis=axes) if axes else src.copy()
            s = r.sum(axis=0)
            s[s <= 0] = 1.0
            r /= s
            marg[t] = r
        return marg, logz, suspect


def _threads_and_chunks(plan, n_cases: int, budget: int, threads: int) -> tuple[int, range]:
    """How many threads run the chunks, and where the chunks start (their step is the chunk size).

    A thread is worth starting when its chunk has at least ``_THREAD_MIN_OPS``
    operations; two chunks in flight hold twice the working memory, so with
    more than one thread each chunk is sized for its share of the budget
    (``chunk_size(parallel=threads)``); when that share holds no case, or the
    smaller chunks are no longer worth a thread, the chunks run one at a time.
    """
    chunk = plan.chunk_size(n_cases, budget)
    threads = min(threads, -(-n_cases // chunk))
    if threads > 1:
        avail = budget - plan.static_bytes
        if avail >= plan.bytes_per_case * threads:
            small = min(chunk, plan.chunk_size(n_cases, budget, parallel=threads))
            if plan.stats.ops_per_case * small >= _THREAD_MIN_OPS:
                return min(threads, -(-n_cases // small)), range(0, n_cases, small)
    return 1, range(0, n_cases, chunk)


def _too_large(need: int, budget: int, stats: CompiledStats) -> ModelTooLargeError:
    return ModelTooLargeError(
        f"model too large for exact inference: one case needs {need:,} bytes (treewidth "
        f"{stats.treewidth}, {stats.total_entries:,} clique-table entries); the memory budget is "
        f"{budget:,} bytes",
        needed_bytes=need,
        budget_bytes=budget,
        treewidth=stats.treewidth,
    )


_TINY = 1e-250
_HUGE = 1e250


# --------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------


class CompiledEngine(TableEngine):
    """Exact, batched posterior marginals of a discrete Bayesian network.

    Build it with :meth:`from_pgmpy`.  The model is read and checked once; the
    junction tree for the full model is sized at construction (so a model that
    cannot fit the memory budget is refused up front), and a junction tree per
    evidence signature is compiled on first use and cached.

    Parameters
    ----------
    tables : ModelTables
        The network as numpy tables (see :meth:`from_pgmpy`).
    memory_budget_bytes : int
        Upper bound on the tables plus the batch workspace.
    group_patterns : bool, default True
        Let a large batch whose cases observe different variables run one plan
        per evidence pattern (barren variables dropped) when one structure is
        costly. False keeps one structure for the whole batch: the better
        choice when the targets cover most of the network, so that a pattern's
        plan prunes little and its compilation is pure overhead (EM's E-step).

    Attributes
    ----------
    kind : str
        ``"exact"``.
    name : str
        ``"compiled-jtree"``.
    variables : tuple of str
        All network variables.
    states : Mapping[str, tuple of str]
        State names per variable, in pgmpy's order.
    memory_budget_bytes : int
    stats : CompiledStats
        Size of the junction tree of the whole model (no evidence, every
        variable a target) -- the worst case the budget was checked against.

    Notes
    -----
    An engine caches compiled plans and is not safe to share between threads
    while it compiles.
    """

    kind = "exact"
    name = "compiled-jtree"

    def __init__(
        self, tables: ModelTables, *, memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET, group_patterns: bool = True
    ):
        super().__init__(tables)
        self.memory_budget_bytes = int(memory_budget_bytes)
        self.group_patterns = bool(group_patterns)
        #: Chunks of a large batch run on this many threads (numpy releases the GIL); at most 2 by default.
        self.threads = min(2, os.cpu_count() or 1)
        everything = frozenset(range(len(tables.names)))
        st = self._structure(frozenset(), frozenset(), everything)
        self.stats: CompiledStats = st.stats(tables)
        need = self.stats.static_bytes + self.stats.bytes_per_case
        if need > self.memory_budget_bytes:
            raise _too_large(need, self.memory_budget_bytes, self.stats)

    @classmethod
    def from_pgmpy(cls, model, *, memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET) -> CompiledEngine:
        """Compile a pgmpy ``DiscreteBayesianNetwork``.

        Parameters
        ----------
        model : pgmpy.models.DiscreteBayesianNetwork
            Every variable needs a CPD.
        memory_budget_bytes : int, default 2 GiB
            Refuse the model if its junction tree (no evidence, all variables
            targets) needs more than this for one case.

        Returns
        -------
        CompiledEngine

        Raises
        ------
        ModelError
            Missing or non-normalised CPTs, or junction-tree tables beyond the
            memory budget.
        """
        return cls(ModelTables.from_pgmpy(model), memory_budget_bytes=memory_budget_bytes)

    # ---- compilation ------------------------------------------------------------------
    def _structure(self, hard: frozenset, evvars: frozenset, targets: frozenset) -> _Structure:
        # Clique tables of one case (entries * 8 bytes, kept twice) must fit the budget.
        limit = self.memory_budget_bytes / _ITEM / 4
        try:
            return _Structure(self._tables, hard, evvars, targets, max_entries=limit)
        except EliminationTooLarge as exc:
            raise ModelTooLargeError(
                f"model too large for exact inference: its junction tree exceeds the memory budget of "
                f"{self.memory_budget_bytes:,} bytes (triangulation stopped at {exc.entries:,} table "
                f"entries per case, treewidth >= {exc.treewidth})",
                needed_bytes=exc.entries * _ITEM,
                budget_bytes=self.memory_budget_bytes,
                treewidth=exc.treewidth,
            ) from None

    def _fold(self, ev: PreparedEvidence, targets: frozenset) -> frozenset:
        """Leaves with hard evidence in some cases only (not targets, no soft evidence):
        folded into per-case factors instead of joining the junction tree."""
        _, partial, soft = ev.signature()
        children = self._tables.children
        return frozenset(v for v in partial if not children[v] and v not in targets and v not in soft)

    def _plan(self, ev: PreparedEvidence, targets: frozenset) -> _Plan:
        hard, partial, soft = ev.signature()
        fold = self._fold(ev, targets)
        hard, partial = hard | fold, partial - fold

        def build() -> _Plan:
            st = self._structure(hard, (partial | soft) - hard, targets)
            plan = _Plan(self._tables, st, ev.vars)
            if plan.static_bytes + plan.bytes_per_case > self.memory_budget_bytes:
                raise _too_large(plan.static_bytes + plan.bytes_per_case, self.memory_budget_bytes, plan.stats)
            return plan

        return self._cached_plan((hard, partial, soft, targets), build)

    def query_stats(
        self,
        targets: Sequence[str],
        evidence: Mapping[str, np.ndarray] | None = None,
        soft_evidence: Mapping[str, np.ndarray] | None = None,
        *,
        n_cases: int | None = None,
    ) -> CompiledStats:
        """Compile (or fetch) the plan a :meth:`query` with these arguments uses; return its size.

        Parameters
        ----------
        targets, evidence, soft_evidence, n_cases
            As in :meth:`query`.

        Returns
        -------
        CompiledStats
        """
        ev = prepare_evidence(self._tables, evidence, soft_evidence, n_cases)
        return self._plan(ev, frozenset(resolve_targets(self._tables, targets))).stats

    # ---- queries ----------------------------------------------------------------------
    def _run(self, targets: list[int], ev: PreparedEvidence, want: bool):
        """One propagation of one structure for the whole batch; or, when the cases observe
        different variables and that structure is large, one plan per evidence pattern (its
        observed variables instantiated, barren ones dropped), which then costs less per case
        than a case of the whole structure even with a compilation each (water, treewidth 10,
        or a topology network at N=100: 3-4x faster). The choice depends on the model and the
        targets only, so a batch always takes the same path."""
        B = ev.n_cases
        if B < _GROUP_MIN_CASES or not ev.signature()[1] or not getattr(self, "group_patterns", True):
            return self._run_one(targets, ev, want)
        plan = self._plan(ev, frozenset(targets))
        if plan.stats.ops_per_case < _GROUP_MIN_OPS:
            return self._run_one(targets, ev, want)
        # evidence patterns: which variables each case observes
        mask = np.packbits(ev.matrix >= 0, axis=0)
        _, first, inverse = np.unique(mask.T, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        groups = [np.flatnonzero(inverse == g) for g in np.argsort(first)] if len(first) < 64 else None
        if groups is None:  # many patterns: group by sorting
            order = np.argsort(inverse, kind="stable")
            bounds = np.flatnonzero(np.diff(inverse[order])) + 1
            groups = sorted(np.split(order, bounds), key=lambda g: g[0])
        width = {t: int(self._tables.cards[t]) for t in targets}
        res = {t: np.empty((B, width[t])) for t in targets} if want else {}
        logz = np.empty(B)
        bad = np.zeros(B, dtype=bool)

        def put(idx, out):
            r, lz, bd = out
            for t in res:
                res[t][idx] = r[t]
            logz[idx] = lz
            bad[idx] = bd

        def by_pattern(group_list) -> int:
            done = 0
            for idx in group_list:
                put(idx, self._run_one(targets, ev.subset(idx, pattern=True), want))
                done += idx.size
            return done

        by_pattern(groups)
        return res, logz, bad

    def _run_one(self, targets: list[int], ev: PreparedEvidence, want: bool):
        plan = self._plan(ev, frozenset(targets))
        fold = self._fold(ev, frozenset(targets))
        if fold:  # "not observed in this case" is the folded leaf's extra row
            matrix = ev.matrix.copy()
            for v in fold:
                row = matrix[ev.vars.index(v)]
                row[row < 0] = int(self._tables.cards[v])
            ev = PreparedEvidence(ev.vars, matrix, ev.soft, ev.soft_log_scale, ev.n_cases)
        B = ev.n_cases
        threads, starts = _threads_and_chunks(plan, B, self.memory_budget_bytes, getattr(self, "threads", 1))
        chunk = starts.step
        logz = np.empty(B)
        bad = np.zeros(B, dtype=bool)
        offsets = {}
        width = 0
        for t in targets:
            offsets[t] = width
            width += int(self._tables.cards[t])
        out = np.empty((B, width)) if want else None

        def one(start: int) -> None:
            stop = min(B, start + chunk)
            sub = ev.take(start, stop) if (start, stop) != (0, B) else ev
            marg, lz, suspect = plan.run(sub, want)
            if suspect.any():  # under/overflow in the fast path: redo those cases with scaling
                idx = np.flatnonzero(suspect)
                redo = PreparedEvidence(
                    sub.vars, sub.matrix[:, idx], {v: a[idx] for v, a in sub.soft.items()}, None, idx.size
                )
                marg2, lz2, zero = plan.run(redo, want, robust=True)
                lz[idx] = lz2
                bad[start + idx[zero]] = True
                if want:
                    for t, r in marg.items():
                        r = np.broadcast_to(r, (r.shape[0], stop - start)).copy()
                        r[:, idx] = marg2[t]
                        marg[t] = r
            logz[start:stop] = lz
            if want:
                for t, r in marg.items():
                    o = offsets[t]
                    out[start:stop, o : o + r.shape[0]] = r.T

        if threads > 1:
            # numpy releases the GIL in its loops: chunks on two cores (each writes its own rows)
            from concurrent.futures import ThreadPoolExecutor  # here: 40 ms of imports at start-up otherwise

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(one, starts))
        else:
            for start in starts:
                one(start)
        if ev.soft_log_scale is not None:
            logz += ev.soft_log_scale
        res = {}
        if want:
            for t in targets:
                o = offsets[t]
                res[t] = out[:, o : o + int(self._tables.cards[t])]
                if t in plan.st.hard:  # observed in every case: a one-hot posterior
                    r = res[t]
                    r.fill(0.0)
                    r[np.arange(B), ev.matrix[ev.vars.index(t)]] = 1.0
        logz[bad] = -np.inf
        return res, logz, bad

    def query(
        self,
        targets: Sequence[str],
        evidence: Mapping[str, np.ndarray] | None = None,
        soft_evidence: Mapping[str, np.ndarray] | None = None,
        *,
        n_cases: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Posterior marginals of ``targets`` for a batch of cases.

        Parameters
        ----------
        targets : sequence of str
            Variables whose posterior is wanted.
        evidence : mapping of str to array_like, optional
            ``evidence[var]``: int array of shape ``(B,)`` with the observed state
            index per case, ``-1`` where unobserved.  State names (``None``/``""``
            for unobserved) and a scalar for a single case are accepted too.
        soft_evidence : mapping of str to array_like, optional
            ``soft_evidence[var]``: float array ``(B, card)``, a likelihood vector
            per case (virtual evidence, multiplied in; need not sum to 1).
        n_cases : int, optional
            Number of cases ``B`` (needed only when no evidence is given).

        Returns
        -------
        dict of str to ndarray
            ``{target: array (B, card)}`` of ``P(target | evidence)`` per case.

        Raises
        ------
        EvidenceError
            Unknown variable or state, malformed arrays, or evidence of probability
            zero (the message names the case indices).
        ModelError
            The junction tree for this evidence pattern exceeds the memory budget.
        """
        return self.query_with_log_evidence(targets, evidence, soft_evidence, n_cases=n_cases)[0]

    def query_with_log_evidence(
        self,
        targets: Sequence[str],
        evidence: Mapping[str, np.ndarray] | None = None,
        soft_evidence: Mapping[str, np.ndarray] | None = None,
        *,
        n_cases: int | None = None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """:meth:`query` and :meth:`log_evidence` from one propagation.

        Parameters
        ----------
        targets, evidence, soft_evidence, n_cases
            As in :meth:`query`.

        Returns
        -------
        marginals : dict of str to ndarray
            As :meth:`query` returns them.
        log_evidence : ndarray of shape ``(B,)``
            As :meth:`log_evidence` returns it.

        Raises
        ------
        EvidenceError, ModelError
            As :meth:`query` raises them.
        """
        tix = resolve_targets(self._tables, targets)
        ev = prepare_evidence(self._tables, evidence, soft_evidence, n_cases)
        out, logz, bad = self._run(list(dict.fromkeys(tix)), ev, True)
        if np.any(bad):
            raise EvidenceError(f"evidence has probability zero in case(s) {_case_list(np.flatnonzero(bad))}")
        return {self._tables.names[t]: out[t] for t in tix}, logz

    def log_evidence(
        self,
        evidence: Mapping[str, np.ndarray] | None = None,
        soft_evidence: Mapping[str, np.ndarray] | None = None,
        *,
        n_cases: int | None = None,
    ) -> np.ndarray:
        """``log P(evidence)`` per case (soft evidence multiplies its likelihood in).

        Parameters
        ----------
        evidence, soft_evidence, n_cases
            As in :meth:`query`.

        Returns
        -------
        ndarray of shape ``(B,)``
            ``-inf`` for cases whose evidence is impossible.
        """
        ev = prepare_evidence(self._tables, evidence, soft_evidence, n_cases)
        _, logz, _ = self._run([], ev, False)
        return logz

    def posterior(
        self, targets: Sequence[str], evidence: Mapping[str, str] | None = None
    ) -> dict[str, dict[str, float]]:
        """Single-case convenience: hard evidence as ``{var: state name}``.

        Returns
        -------
        dict of str to dict of str to float
            ``{target: {state: probability}}``.
        """
        ev = {k: np.array([v], dtype=object) for k, v in (evidence or {}).items()}
        res = self.query(targets, ev, n_cases=1)
        return {t: dict(zip(self.states[t], map(float, r[0]))) for t, r in res.items()}

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"CompiledEngine({len(self.variables)} variables, treewidth {s.treewidth}, "
            f"{s.total_entries:,} clique entries)"
        )
