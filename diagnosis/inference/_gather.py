"""Per-case factors gathered from CPT rows (private helper of the inference engines)."""

from __future__ import annotations

import numpy as np

__all__ = ["GatherBlock"]


class GatherBlock:
    """Per-case factors gathered from CPT rows, all with reduced tables of ``R`` entries.

    Factor ``f`` picks, per case, row ``base[f] + sum_j strides[f, j] * H[rows[f, j]]``
    of its ``(K_f, R)`` table (``H``: the hard-evidence matrix); the factors sharing a
    group key are multiplied together.  Groups are ordered by size, then key
    (``group_keys`` gives the order), so that equal-size groups form one reshape.
    """

    def __init__(self, R: int, items: list, row_of: dict[int, int]):
        # items: (group key, table (K, R), obs vars, strides)
        self.R = R
        size: dict = {}
        for it in items:
            size[it[0]] = size.get(it[0], 0) + 1
        items = sorted(items, key=lambda it: (size[it[0]], it[0]))
        J = max(len(it[2]) for it in items)
        n = len(items)
        self.rows = np.zeros((J, n), dtype=np.intp)
        self.strides = np.zeros((J, n, 1), dtype=np.int64)
        base = np.zeros(n, dtype=np.int64)
        flat = []
        off = 0
        keys = []
        for f, (key, tab, obs, strides) in enumerate(items):
            for j, (o, s) in enumerate(zip(obs, strides)):
                self.rows[j, f] = row_of[o]
                self.strides[j, f, 0] = s
            base[f] = off
            off += tab.shape[0]
            flat.append(tab.ravel())
            keys.append(key)
        self.base = base[:, None]
        self.flat = np.concatenate(flat)
        self.arange = np.arange(R, dtype=np.int64)[None, :, None]
        starts = [0] + [f for f in range(1, n) if keys[f] != keys[f - 1]]
        self.group_keys = [keys[s] for s in starts]
        self.grouped = len(starts) < n
        # segments of equal group size: (first factor, number of groups, group size)
        self.segments = []
        f = 0
        while f < n:
            k = size[keys[f]]
            m = 0
            while f + m * k < n and size[keys[f + m * k]] == k:
                m += 1
            self.segments.append((f, m, k))
            f += m * k

    def _reduce(self, g: np.ndarray, op) -> np.ndarray:
        """Combine the factors of each group along axis 0 with ``op`` (multiply or add)."""
        parts = []
        for f, m, k in self.segments:
            seg = g[f : f + m * k]
            if k == 1:
                parts.append(seg)
                continue
            seg = seg.reshape((m, k) + g.shape[1:])
            acc = op(seg[:, 0], seg[:, 1])
            for j in range(2, k):
                op(acc, seg[:, j], out=acc)
            parts.append(acc)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def evaluate(self, H: np.ndarray, robust: bool):
        """Per-group products, shape ``(n_groups, R, B)``; with ``robust`` also per-case log scales
        (``(n_groups, B)``) removed from them."""
        idx = self.base + self.strides[0] * H[self.rows[0]]
        for j in range(1, self.rows.shape[0]):
            idx = idx + self.strides[j] * H[self.rows[j]]
        if self.R == 1:
            g = self.flat[idx][:, None, :]
        else:
            g = self.flat[(idx * self.R)[:, None, :] + self.arange]
        if not robust:
            if self.grouped:
                g = self._reduce(g, np.multiply)
            return g, None
        with np.errstate(divide="ignore"):
            lg = np.log(g)
        if self.grouped:
            lg = self._reduce(lg, np.add)
        top = lg.max(axis=1)  # (n_groups, B)
        top_safe = np.where(np.isfinite(top), top, 0.0)
        g = np.exp(lg - top_safe[:, None, :])
        return g, top
