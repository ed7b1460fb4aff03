"""Triangulation and junction-tree construction (private helpers of the compiled engine).

Variables are integers ``0..n-1`` with cardinalities ``cards``; a graph is a list
of neighbour sets.  Nothing here knows about pgmpy.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["EliminationTooLarge", "best_elimination", "eliminate", "junction_tree"]


class EliminationTooLarge(Exception):
    """Raised when the cliques of an elimination exceed an entry limit.

    Attributes
    ----------
    entries : int
        Table entries reached when the elimination was abandoned.
    treewidth : int
        Largest clique size minus one reached so far.
    """

    def __init__(self, entries: int, treewidth: int):
        self.entries = entries
        self.treewidth = treewidth
        super().__init__(f"cliques exceed the limit ({entries} entries, treewidth >= {treewidth})")


def eliminate(
    adj: Sequence[set[int]],
    nodes: Sequence[int],
    logcards: np.ndarray,
    *,
    heuristic: str = "min-fill",
    max_entries: float = math.inf,
) -> tuple[list[int], list[tuple[int, ...]]]:
    """Greedy elimination of ``nodes`` from the undirected graph ``adj``.

    Parameters
    ----------
    adj : sequence of set of int
        Neighbour sets (only entries of ``nodes`` are read; not modified).
    nodes : sequence of int
        The variables to eliminate (all of the graph).
    logcards : ndarray
        ``log(cardinality)`` per variable index.
    heuristic : {"min-fill", "min-weight"}
        ``min-fill`` picks the variable adding fewest fill edges (ties: smallest
        clique table); ``min-weight`` picks the smallest clique table (ties: fill).
    max_entries : float
        Abandon (raise :class:`EliminationTooLarge`) once the summed clique tables
        exceed this many entries.

    Returns
    -------
    order : list of int
        Elimination order.
    cliques : list of tuple of int
        ``cliques[i]`` is the eliminated variable ``order[i]`` followed by its
        neighbours at elimination time.
    """
    node_set = set(nodes)
    adjd = {v: set(adj[v]) & node_set for v in nodes}

    def score(v: int) -> tuple[float, float]:
        w = logcards[v] + sum(logcards[u] for u in adjd[v])
        if heuristic == "min-fill":
            nb = list(adjd[v])
            c = 0
            for i, a in enumerate(nb):
                na = adjd[a]
                for b in nb[i + 1 :]:
                    if b not in na:
                        c += 1
            return (c, w)
        return (w, 0.0)

    version = {v: 0 for v in nodes}
    heap = [(score(v), v, 0) for v in nodes]
    heapq.heapify(heap)
    order: list[int] = []
    cliques: list[tuple[int, ...]] = []
    total = 0.0
    maxsize = 0
    eliminated: set[int] = set()
    while heap:
        _, v, ver = heapq.heappop(heap)
        if v in eliminated or ver != version[v]:
            continue
        nb = adjd.pop(v)
        eliminated.add(v)
        clique = (v, *sorted(nb))
        entries = math.exp(sum(logcards[u] for u in clique))
        total += entries
        maxsize = max(maxsize, len(clique))
        if total > max_entries:
            raise EliminationTooLarge(int(min(total, 2**62)), maxsize - 1)
        order.append(v)
        cliques.append(clique)
        affected = set(nb)
        nbl = list(nb)
        for u in nbl:
            adjd[u].discard(v)
        for i, a in enumerate(nbl):
            na = adjd[a]
            for b in nbl[i + 1 :]:
                if b not in na:
                    nbb = adjd[b]
                    if heuristic == "min-fill":
                        affected |= na & nbb
                    na.add(b)
                    nbb.add(a)
        for u in affected:
            version[u] += 1
            heapq.heappush(heap, (score(u), u, version[u]))
    return order, cliques


def best_elimination(
    adj: Sequence[set[int]],
    nodes: Sequence[int],
    cards: np.ndarray,
    *,
    max_entries: float = math.inf,
) -> tuple[list[int], list[tuple[int, ...]], str]:
    """Run the min-fill and min-weight heuristics; keep the one with fewer clique entries.

    Returns
    -------
    order, cliques, heuristic
        As :func:`eliminate`, plus the name of the winning heuristic.

    Raises
    ------
    EliminationTooLarge
        If both heuristics exceed ``max_entries``.
    """
    logcards = np.log(np.maximum(np.asarray(cards, dtype=float), 1.0))
    best = None
    failure = None
    for h in ("min-fill", "min-weight"):
        try:
            order, cliques = eliminate(adj, nodes, logcards, heuristic=h, max_entries=max_entries)
        except EliminationTooLarge as exc:
            if failure is None or exc.entries < failure.entries:
                failure = exc
            continue
        size = sum(math.prod(int(cards[u]) for u in c) for c in cliques)
        if best is None or size < best[0]:
            best = (size, order, cliques, h)
        max_entries = min(max_entries, size)
    if best is None:
        assert failure is not None
        raise failure
    return best[1], best[2], best[3]


def junction_tree(order: Sequence[int], cliques: Sequence[tuple[int, ...]]) -> tuple[list[tuple[int, ...]], list[int]]:
    """Junction tree (forest joined by empty separators) of an elimination.

    Parameters
    ----------
    order, cliques
        Output of :func:`eliminate`.

    Returns
    -------
    nodes : list of tuple of int
        Maximal cliques, variables sorted increasingly.
    parent : list of int
        Parent clique index, ``-1`` for the root (index 0).  Cliques of separate
        connected components hang below the root with an empty separator.
    """
    if not cliques:
        return [], []
    pos = {v: i for i, v in enumerate(order)}
    n = len(cliques)
    sets = [frozenset(c) for c in cliques]
    nbrs: list[set[int]] = [set() for _ in range(n)]
    roots = []
    for i, c in enumerate(cliques):
        rest = c[1:]
        if rest:
            j = min(pos[u] for u in rest)
            nbrs[i].add(j)
            nbrs[j].add(i)
        else:
            roots.append(i)
    alive = [True] * n
    # Contract edges whose one end is contained in the other (keeps maximal cliques).
    changed = True
    while changed:
        changed = False
        for a in range(n):
            if not alive[a]:
                continue
            for b in list(nbrs[a]):
                if sets[a] <= sets[b]:
                    for c in nbrs[a]:
                        if c != b:
                            nbrs[c].discard(a)
                            nbrs[c].add(b)
                            nbrs[b].add(c)
                    nbrs[b].discard(a)
                    nbrs[a] = set()
                    alive[a] = False
                    roots = [b if r == a else r for r in roots]
                    changed = True
                    break
    # One tree: join component roots to the largest clique's component.
    comp_root = []
    seen = [False] * n
    # Component roots first, then (safety) any alive clique no root reached.
    for r in [*roots, *range(n)]:
        if alive[r] and not seen[r]:
            comp_root.append(r)
            stack = [r]
            seen[r] = True
            while stack:
                x = stack.pop()
                for y in nbrs[x]:
                    if not seen[y]:
                        seen[y] = True
                        stack.append(y)
    live = [i for i in range(n) if alive[i]]
    size = {i: len(sets[i]) for i in live}
    main = max(live, key=lambda i: (size[i], -i))
    # find the component holding `main` and re-root it at `main`
    for r in comp_root:
        if r != main and not _same_component(r, main, nbrs):
            nbrs[main].add(r)
            nbrs[r].add(main)
    # BFS from main
    index = {main: 0}
    out_nodes = [tuple(sorted(sets[main]))]
    parent = [-1]
    queue = [main]
    head = 0
    while head < len(queue):
        x = queue[head]
        head += 1
        for y in sorted(nbrs[x]):
            if y not in index:
                index[y] = len(out_nodes)
                out_nodes.append(tuple(sorted(sets[y])))
                parent.append(index[x])
                queue.append(y)
    return out_nodes, parent


def _same_component(a: int, b: int, nbrs: list[set[int]]) -> bool:
    seen = {a}
    stack = [a]
    while stack:
        x = stack.pop()
        if x == b:
            return True
        for y in nbrs[x]:
            if y not in seen:
                seen.add(y)
                stack.append(y)
    return False
