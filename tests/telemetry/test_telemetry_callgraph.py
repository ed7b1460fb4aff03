"""The call graph seen in traces: derived topology, cycles, the diff against a declared topology, YAML round trip."""

import pandas as pd

from diagnosis import Topology, load_topology
from diagnosis.telemetry import derive_topology, spans_from_frame, write_topology

T = 1_709_251_200_000_000_000


def spans(edges):
    """One trace per (caller, callee, n): n child spans of the callee under one caller span."""
    rows = []
    for k, (a, b, n) in enumerate(edges):
        rows.append((f"t{k}", f"t{k}-0", "root", a, T + k, T + k + 10**6))
        for i in range(n):
            rows.append((f"t{k}", f"t{k}-{i + 1}", f"t{k}-0", b, T + k + 1, T + k + 10**5))
    return spans_from_frame(pd.DataFrame(rows, columns=["trace_id", "span_id", "parent_id", "service", "start", "end"]))


def test_derived_topology_and_diff():
    s = spans([("gw", "a", 5), ("a", "b", 3), ("b", "a", 1), ("gw", "db", 2)])
    declared = Topology.from_dict(
        {
            "name": "shop",
            "components": [
                {"name": "gw", "kind": "load_balancer", "calls": ["a", "c"], "uses": ["db"]},
                {"name": "a", "calls": ["b"]},
                {"name": "b"},
                {"name": "c"},
                {"name": "db", "kind": "database"},
            ],
        }
    )
    topo, diff = derive_topology(s, declared=declared)
    assert topo.name == "shop-observed" and topo.component("gw").kind == "load_balancer"
    assert [(d.source, d.target) for d in topo.dependencies] == [("gw", "a"), ("a", "b")]
    assert [(d.source, d.target) for d in topo.dropped_dependencies] == [("b", "a")]  # the rarer call closes the cycle
    assert diff.observed[0] == ("gw", "a", 5)
    assert diff.only_observed == (("gw", "db", 2), ("b", "a", 1))  # most called first
    assert diff.only_declared == (("gw", "c"),)
    assert diff.components_only_declared == ("c",)
    assert diff.left_out == (("gw", "db", 2),)  # a database cannot be called
    text = "\n".join(diff.lines())
    assert "gw -> c" in text and "left out of the derived topology: gw -> db" in text
    assert diff.to_dict()["only_declared"] == [["gw", "c"]]


def test_without_a_declared_topology_and_min_calls():
    topo, diff = derive_topology(spans([("x", "y", 4), ("y", "z", 1)]), min_calls=2, name="obs")
    assert topo.name == "obs" and [(d.source, d.target) for d in topo.dependencies] == [("x", "y")]
    assert diff.declared is None and diff.left_out == (("y", "z", 1),)
    assert set(topo.component_names) == {"x", "y", "z"}


def test_write_topology_round_trip(tmp_path):
    topo, _ = derive_topology(spans([("a", "b", 2), ("b", "c", 1), ("c", "a", 1)]))
    path = write_topology(topo, tmp_path / "t.yaml", header="derived from traces\nby a test")
    text = path.read_text()
    assert text.startswith("# derived from traces\n# by a test\n")
    back = load_topology(path)
    assert back.component_names == topo.component_names
    assert back.dependencies == topo.dependencies and back.dropped_dependencies == topo.dropped_dependencies
    full = load_topology(write_topology(topo, tmp_path / "full.yaml", compact=False))
    assert full.symptoms == topo.symptoms
