"""The topology's ``signals:`` section: validation, merging with the built-in rules, and ``detect`` on shopfloor."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from diagnosis.cli import main
from diagnosis.exceptions import DiagnosisError, TopologyError
from diagnosis.model.topology import Topology, load_topology
from diagnosis.telemetry.signals import DEFAULT_RULES, SignalRule, match_rules, rules_for

SHOPFLOOR = Path(__file__).resolve().parents[2] / "data" / "telemetry" / "shopfloor"
COMPONENTS = [{"name": "web", "uses": ["db"]}, {"name": "db", "kind": "database"}]


def topo(signals) -> Topology:
    return Topology.from_dict({"name": "t", "components": COMPONENTS, "signals": signals}, source="t.yaml")


def test_rules_are_parsed_and_round_trip():
    t = topo(
        {
            "rules": [
                {"name": "busy", "metric": "busy_pct", "watches": "cpu"},
                {"name": "ok_ratio", "metric": "ok_ratio", "watches": "error_rate", "direction": -1, "rel_floor": 0.2},
                {"name": "memory", "enabled": False},
            ]
        }
    )
    assert [s.name for s in t.signal_rules] == ["busy", "ok_ratio", "memory"]
    assert t.signal_rules[1].direction == -1 and t.signal_rules[1].rel_floor == 0.2
    assert not t.signal_rules[2].enabled and not t.signals_replace
    assert Topology.from_dict(t.to_dict(), source="t.yaml") == t


@pytest.mark.parametrize(
    ("signals", "path", "needle"),
    [
        ([{"name": "x", "metric": "a", "watches": "cpuu"}], "signals[0].watches", "'cpu'"),
        ([{"name": "x", "metric": "a(", "watches": "cpu"}], "signals[0].metric", "bad regular expression"),
        ([{"name": "x", "watches": "cpu"}], "signals[0].metric", "None"),
        ([{"name": "x", "metric": "a", "watches": "cpu", "direction": 0}], "signals[0].direction", "Got 0"),
        ([{"name": "x", "metric": "a", "watches": "cpu", "side": "callr"}], "signals[0].side", "callee"),
        ([{"name": "x", "metric": "a", "watches": "cpu", "rel_floor": -1}], "signals[0].rel_floor", "Got -1"),
        ([{"name": "x", "metric": "a", "watches": "cpu", "metrics": "b"}], "signals[0].metrics", "unknown field"),
        ([{"name": "X", "metric": "a", "watches": "cpu"}], "signals[0].name", "[a-z]"),
        ([{"name": "cpu", "enabled": False, "metric": "a"}], "signals[0].metric", "disabled"),
        ([{"name": "x", "metric": "a", "watches": "cpu"}] * 2, "signals[1].name", "duplicate"),
        ({"rules": [{"name": "cpu", "enabled": False}], "replace_defaults": True}, "signals.rules", "enabled"),
        ({"replace_defaults": "yes"}, "signals.replace_defaults", "'yes'"),
        ("cpu", "signals", "list of rules"),
    ],
)
def test_bad_rules_name_the_file_and_path(signals, path, needle):
    with pytest.raises(TopologyError) as info:
        topo(signals)
    assert str(info.value).startswith(f"t.yaml, {path}:")
    assert needle in str(info.value)


def test_topology_rules_go_first_replace_by_name_and_can_disable():
    t = topo(
        [
            {"name": "busy", "metric": "busy_pct", "watches": "cpu"},
            {"name": "memory", "enabled": False},
            {"name": "cpu", "metric": "proc_cpu", "watches": "cpu"},
        ]
    )
    rules = rules_for(t)
    names = [r.name for r in rules]
    assert names[0] == "busy" and "memory" not in names
    assert names[1:] == [r.name for r in DEFAULT_RULES if r.name != "memory"]
    assert rules[1].metric == "proc_cpu"
    assert match_rules(["busy_pct", "proc_cpu", "MemoryUsage(Mi)"], ["web", "web", "web"], rules).tolist() == [0, 1, -1]
    assert rules_for(Topology.from_dict({"name": "t", "components": COMPONENTS})) == DEFAULT_RULES


def test_replace_defaults_uses_only_the_topology_rules():
    t = topo({"replace_defaults": True, "rules": [{"name": "busy", "metric": "busy_pct", "watches": "cpu"}]})
    assert [r.name for r in rules_for(t)] == ["busy"]


def test_disabling_an_unknown_builtin_rule_is_an_error():
    with pytest.raises(DiagnosisError, match="'cpuu' is disabled but is not a built-in rule.*'cpu'"):
        rules_for(topo([{"name": "cpuu", "enabled": False}]))


@pytest.mark.parametrize("metric", ["resp_count", "resp_total", "resp_sum", "RESP_BUCKET"])
def test_a_counter_never_feeds_a_latency_rule(metric):
    latency = SignalRule("rt", r"resp_.*", "latency")
    assert not latency.matches(metric)
    assert latency.matches("resp_p95_ms")
    assert SignalRule("calls", r"resp_.*", "load").matches(metric)


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(map(str, argv)), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_detect_on_shopfloor_uses_the_topology_rules(tmp_path):
    out = tmp_path / "inc.jsonl"
    code, text, err = run(
        "detect", "-t", SHOPFLOOR / "topology.yaml", "--metrics", SHOPFLOOR / "metrics",
        "--windows", SHOPFLOOR / "windows.csv", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert "busy 9" in text and "response_time 9" in text
    assert "(unused): resp_count" in text
    incidents = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(incidents) == 3
    scored = tmp_path / "scored.jsonl"
    code, text, err = run("score", "-t", SHOPFLOOR / "topology.yaml", "--assume-fault", "--out", scored, out)
    assert code == 0, err
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert [r["top_component"] for r in rows] == [r["true_component"] for r in rows] == ["billing", "ledgerdb", "web"]


def test_without_the_signals_section_shopfloor_names_map_to_nothing(tmp_path):
    plain = load_topology(SHOPFLOOR / "topology.yaml").to_dict()
    del plain["signals"]
    path = tmp_path / "plain.yaml"
    path.write_text(json.dumps(plain))
    code, text, err = run(
        "detect", "-t", path, "--metrics", SHOPFLOOR / "metrics", "--windows", SHOPFLOOR / "windows.csv",
        "--out", tmp_path / "inc.jsonl",
    )  # fmt: skip
    assert code == 0, err
    assert "(unused): busy_pct, fail_ratio, heap_mb, resp_count, resp_p95_ms" in text
    assert "series scored per rule: none" in text


def test_datastores_and_queues_have_cpu_and_memory_detectors_by_default(tmp_path):
    t = Topology.from_dict(
        {
            "name": "t",
            "components": [
                {"name": "app", "uses": ["db", "kv", "mq"]},
                {"name": "db", "kind": "database"},
                {"name": "kv", "kind": "cache"},
                {"name": "mq", "kind": "queue"},
            ],
        }
    )
    for c in ("db", "kv", "mq"):
        assert {f"{c}.cpu", f"{c}.memory"} <= set(t.symptoms), c
    assert dict(
        t.component("db").detectors[[d.name for d in t.component("db").detectors].index("cpu")].sensitivity
    ) == {"slow_queries": 0.6}
    # the shopfloor database's busy_pct is now evidence: its incident gets a ledgerdb.cpu observation
    out = tmp_path / "inc.jsonl"
    code, text, err = run(
        "detect", "-t", SHOPFLOOR / "topology.yaml", "--metrics", SHOPFLOOR / "metrics",
        "--windows", SHOPFLOOR / "windows.csv", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert "no detector in the topology" not in text
    first = json.loads(out.read_text().splitlines()[1])
    assert "ledgerdb.cpu" in {o["symptom"] for o in first["observations"]}
