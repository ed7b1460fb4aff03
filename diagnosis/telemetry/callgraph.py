"""The call graph seen in traces: derive a topology and compare it with a declared one.

Every parent-child span pair whose components differ is a call from the
parent's component to the child's (:func:`~diagnosis.telemetry.traces.edge_stats`).
:func:`derive_topology` turns the observed edges into a :class:`~diagnosis.model.topology.Topology`:

* components: every component seen in a span, in order of first appearance;
  a component the declared topology also has keeps its declared kind (and a
  load balancer stays a load balancer), others are services; kinds other
  than ``service`` and ``load_balancer`` cannot be called in a topology, so
  a call into a datastore the traces happen to show is reported and left out;
* dependencies: the observed calls with at least ``min_calls`` calls, each
  caller's callees in decreasing order of calls, so that when cycles are
  broken (``cycles: break``, real call graphs have cycles) the rarest call
  of a cycle is the one dropped;
* fault modes, detectors and actions: the defaults by kind.

:class:`CallGraphDiff` lists what differs from the declared topology: calls
observed but not declared (an out-of-date topology, or a call path the
source reading missed), calls declared but never observed (dead code, or
paths the load never exercised), and components present on one side only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from diagnosis._files import atomic_write_text
from diagnosis.model.topology import Topology
from diagnosis.telemetry.traces import SpanSet, edge_stats

__all__ = ["CallGraphDiff", "derive_topology", "write_topology"]

_CALLABLE = ("service", "load_balancer")


@dataclass(frozen=True, slots=True)
class CallGraphDiff:
    """How the observed call graph differs from a declared topology.

    Attributes
    ----------
    observed : tuple of (caller, callee, calls)
        Every observed call edge with its number of calls, most called first.
    only_observed : tuple of (caller, callee, calls)
        Observed calls the declared topology does not have (empty without one).
    only_declared : tuple of (caller, callee)
        Declared calls never observed.
    components_only_observed, components_only_declared : tuple of str
        Components seen in spans but not declared, and declared but never seen.
    left_out : tuple of (caller, callee, calls)
        Observed calls not in the derived topology: below ``min_calls``, or
        into a component whose declared kind cannot be called.
    """

    observed: tuple[tuple[str, str, int], ...]
    only_observed: tuple[tuple[str, str, int], ...] = ()
    only_declared: tuple[tuple[str, str], ...] = ()
    components_only_observed: tuple[str, ...] = ()
    components_only_declared: tuple[str, ...] = ()
    left_out: tuple[tuple[str, str, int], ...] = ()
    declared: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready mapping."""
        return {
            "declared": self.declared,
            "observed": [list(e) for e in self.observed],
            "only_observed": [list(e) for e in self.only_observed],
            "only_declared": [list(e) for e in self.only_declared],
            "components_only_observed": list(self.components_only_observed),
            "components_only_declared": list(self.components_only_declared),
            "left_out": [list(e) for e in self.left_out],
        }

    def lines(self) -> list[str]:
        """A human-readable report."""
        comps = {c for e in self.observed for c in e[:2]}
        out = [
            f"observed {len(self.observed)} call edges between {len(comps)} components ({sum(e[2] for e in self.observed)} calls)"
        ]
        if self.declared is not None:
            out.append(f"compared with {self.declared}:")
            out.append(f"  {len(self.only_observed)} observed calls not declared" + (":" if self.only_observed else ""))
            out += [f"    {a} -> {b} ({n} calls)" for a, b, n in self.only_observed]
            out.append(
                f"  {len(self.only_declared)} declared calls never observed" + (":" if self.only_declared else "")
            )
            out += [f"    {a} -> {b}" for a, b in self.only_declared]
            if self.components_only_observed:
                out.append(f"  components seen but not declared: {', '.join(self.components_only_observed)}")
            if self.components_only_declared:
                out.append(f"  declared components never seen: {', '.join(self.components_only_declared)}")
        for a, b, n in self.left_out:
            out.append(f"  left out of the derived topology: {a} -> {b} ({n} calls)")
        return out


def derive_topology(
    spans: SpanSet | pd.DataFrame,
    *,
    declared: Topology | None = None,
    name: str | None = None,
    min_calls: int = 1,
) -> tuple[Topology, CallGraphDiff]:
    """The topology of the calls observed in spans, and how it differs from a declared one.

    Parameters
    ----------
    spans : SpanSet or DataFrame
        Spans (:data:`~diagnosis.telemetry.traces.SPAN_COLUMNS`).
    declared : Topology, optional
        The topology to compare with; its kinds are kept for the components it has.
    name : str, optional
        The derived topology's name; default ``"<declared name>-observed"`` or ``"observed"``.
    min_calls : int, default 1
        Calls an edge needs to be kept.

    Returns
    -------
    (Topology, CallGraphDiff)

    Examples
    --------
    >>> import pandas as pd
    >>> from diagnosis.telemetry.traces import spans_from_frame
    >>> df = pd.DataFrame({"trace_id": ["t"] * 3, "span_id": ["a", "b", "c"], "parent_id": ["root", "a", "b"],
    ...                    "service": ["front", "cart", "db-proxy"],
    ...                    "start": [1_700_000_000, 1_700_000_001, 1_700_000_002], "end": [1_700_000_009, 1_700_000_008, 1_700_000_007]})
    >>> topo, diff = derive_topology(spans_from_frame(df))
    >>> [(d.source, d.target) for d in topo.dependencies]
    [('front', 'cart'), ('cart', 'db-proxy')]
    """
    df = spans.spans if isinstance(spans, SpanSet) else spans
    stats = edge_stats(df, freq=None)
    counts = stats.groupby(["caller", "callee"], sort=False)["calls"].sum().sort_values(ascending=False, kind="stable")
    observed = tuple((str(a), str(b), int(n)) for (a, b), n in counts.items())
    seen = list(dict.fromkeys(c for c in df.loc[df["component"].notna(), "component"].tolist()))
    kinds = {c.name: c.kind for c in declared.components} if declared is not None else {}
    comps: list[dict[str, Any]] = []
    left_out = []
    calls: dict[str, list[str]] = {}
    for a, b, n in observed:
        if n < min_calls or kinds.get(b, "service") not in _CALLABLE:
            left_out.append((a, b, n))
            continue
        calls.setdefault(a, []).append(b)
    for c in seen:
        entry: dict[str, Any] = {"name": c, "kind": kinds.get(c, "service")}
        if c in calls:
            entry["calls"] = calls[c]
        comps.append(entry)
    doc = {
        "name": name or (f"{declared.name}-observed" if declared is not None else "observed"),
        "description": "call graph observed in traces",
        "cycles": "break",
        "components": comps,
    }
    topology = Topology.from_dict(doc, source="(derived from traces)")
    diff = CallGraphDiff(observed=observed, left_out=tuple(left_out))
    if declared is not None:
        dec = {
            (d.source, d.target) for d in (*declared.dependencies, *declared.dropped_dependencies) if d.type == "call"
        }
        obs = {(a, b) for a, b, _ in observed}
        declared_names = set(declared.component_names)
        diff = CallGraphDiff(
            observed=observed,
            only_observed=tuple(e for e in observed if (e[0], e[1]) not in dec),
            only_declared=tuple(sorted(dec - obs)),
            components_only_observed=tuple(c for c in seen if c not in declared_names),
            components_only_declared=tuple(
                c.name for c in declared.components if c.name not in set(seen) and c.kind in _CALLABLE
            ),
            left_out=tuple(left_out),
            declared=declared.source or declared.name,
        )
    return topology, diff


def write_topology(
    topology: Topology | Mapping, path: str | os.PathLike, *, header: str | None = None, compact: bool = True
) -> Path:
    """Write a topology as YAML, atomically.

    Parameters
    ----------
    topology : Topology or mapping
        A Topology (written with :meth:`Topology.to_dict`) or a topology document.
    path : path-like
    header : str, optional
        Comment lines written first (each prefixed with ``# ``).
    compact : bool, default True
        For a Topology: write only names, kinds and dependencies (fault modes,
        detectors and actions come back from the defaults by kind when the file
        is read), instead of every table in full.
    """
    if isinstance(topology, Topology):
        doc: dict[str, Any] = topology.to_dict()
        if compact:
            doc = _compact(topology)
    else:
        doc = dict(topology)
    text = yaml.safe_dump(doc, sort_keys=False, width=120)
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + text
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text)


def _compact(topology: Topology) -> dict[str, Any]:
    comps = []
    for c in topology.components:
        deps = [d for d in (*topology.dependencies, *topology.dropped_dependencies) if d.source == c.name]
        entry: dict[str, Any] = {"name": c.name, "kind": c.kind}
        for key, typ in (("calls", "call"), ("uses", "datastore")):
            targets = [d.target for d in deps if d.type == typ]
            if targets:
                entry[key] = targets
        if c.host:
            entry["host"] = c.host
        comps.append(entry)
    doc: dict[str, Any] = {"name": topology.name}
    if topology.dropped_dependencies:
        doc["cycles"] = "break"
    doc["components"] = comps
    return doc
