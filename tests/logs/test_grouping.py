"""``score --group-by`` and ``--aliases``: per-group tables, unit-level ranks, and the error branches."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from diagnosis.cli import main
from diagnosis.exceptions import DiagnosisError
from diagnosis.logs.grouping import group_metrics, load_aliases

SHOPFLOOR = Path(__file__).resolve().parents[2] / "data" / "telemetry" / "shopfloor"


def frame():
    post = [
        {"carts:crash": 0.5, "carts-db:down": 0.3, "web:crash": 0.1},  # truth carts-db: rank 2, unit carts: rank 1
        {"carts:crash": 0.1, "web:crash": 0.2, "web:memory_leak": 0.6},  # truth web: rank 1 (0.8)
        {"carts:crash": 0.9, "web:crash": 0.05},  # truth web: rank 2
        {"carts:crash": 0.9},  # truth unknown: left out
        {"web:crash": 0.9},  # truth "queue", not in the posterior: a miss
    ]
    return pd.DataFrame(
        {
            "incident_id": ["a", "b", "c", "d", "e"],
            "true_component": ["carts-db", "web", "web", None, "queue"],
            "true_fault_mode": ["down", "memory_leak", "crash", None, None],
            "posterior": [json.dumps(p) for p in post],
        }
    )


def test_component_groups_ranks_and_calibration():
    g = group_metrics(frame(), by="component")
    assert list(g) == ["carts-db", "queue", "web", "all"]
    assert g["carts-db"] == {"n": 1, "AC@1": 0.0, "AC@3": 1.0, "AC@5": 1.0, "MRR": 0.5, "ece_top1": 0.5}
    assert g["web"]["AC@1"] == 0.5 and g["web"]["MRR"] == 0.75
    assert g["queue"]["AC@5"] == 0.0 and g["queue"]["MRR"] == 0.0
    assert g["all"]["n"] == 4 and g["all"]["AC@1"] == 0.25
    # top-1 ECE over all: confidences 0.5, 0.8, 0.9, 0.9 with hits 0, 1, 0, 0 -> bins apart
    assert g["all"]["ece_top1"] == pytest.approx((0.5 + abs(0.8 - 1) + 0.9 + 0.9) / 4)


def test_aliases_merge_components_into_units():
    g = group_metrics(frame(), by="component", aliases={"carts-db": "carts"})
    assert "carts-db" not in g
    assert g["carts"]["AC@1"] == 1.0
    assert g["carts"]["ece_top1"] == pytest.approx(1 - 0.8)  # 0.5 + 0.3 summed


def test_fault_types_come_from_the_windows_else_the_fault_mode():
    g = group_metrics(frame(), by="fault_type", fault_types={"a": "disk"})
    assert list(g) == ["(unknown)", "crash", "disk", "memory_leak", "all"]
    assert g["disk"]["n"] == 1


def test_bad_inputs(tmp_path):
    with pytest.raises(DiagnosisError, match="group_by must be one of"):
        group_metrics(frame(), by="service")
    with pytest.raises(DiagnosisError, match="no 'posterior' column"):
        group_metrics(frame().drop(columns="posterior"))
    bad = tmp_path / "a.yaml"
    for text, needle in (("[a, b]", "must be a mapping"), ("a: [b]", "entry 'a'"), ("a: {", "not valid YAML")):
        bad.write_text(text)
        with pytest.raises(DiagnosisError, match=needle) as info:
            load_aliases(bad)
        assert str(bad) in str(info.value)
    with pytest.raises(DiagnosisError, match="cannot read"):
        load_aliases(tmp_path / "missing.yaml")
    bad.write_text("carts-db: carts\nordres: orders\n")
    assert load_aliases(bad) == {"carts-db": "carts", "ordres": "orders"}  # no topology: not checked
    with pytest.raises(DiagnosisError, match=r"a\.yaml: entry 'ordres': unknown component; did you mean 'orders'\?"):
        load_aliases(bad, ["carts", "carts-db", "orders"])


def test_score_refuses_an_alias_of_an_unknown_component(tmp_path):
    import io

    from diagnosis import bundled_topology
    from diagnosis.cli import main

    topo = bundled_topology("webshop")
    assert (
        main(["simulate", "-t", str(topo), "-n", "20", "--out", str(tmp_path / "log.jsonl")], stdout=io.StringIO()) == 0
    )
    (tmp_path / "al.yaml").write_text("fronted: web\n")
    err = io.StringIO()
    argv = ["score", "-t", str(topo), str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "s.jsonl")]
    code = main([*argv, "--aliases", str(tmp_path / "al.yaml")], stdout=io.StringIO(), stderr=err)
    assert code == 1 and "Traceback" not in err.getvalue()
    assert "al.yaml: entry 'fronted': unknown component; did you mean 'frontend'?" in err.getvalue()
    assert not (tmp_path / "s.jsonl").exists()


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(map(str, argv)), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_score_cli_prints_group_tables(tmp_path):
    inc = tmp_path / "inc.jsonl"
    code, _, err = run(
        "detect", "-t", SHOPFLOOR / "topology.yaml", "--metrics", SHOPFLOOR / "metrics",
        "--windows", SHOPFLOOR / "windows.csv", "--out", inc,
    )  # fmt: skip
    assert code == 0, err
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("ledgerdb: billing\n")
    code, text, err = run(
        "score", "-t", SHOPFLOOR / "topology.yaml", "--assume-fault", "--out", tmp_path / "s.jsonl", inc,
        "--group-by", "fault_type", "--windows", SHOPFLOOR / "windows.csv", "--aliases", aliases,
    )  # fmt: skip
    assert code == 0, err
    table = text.split("unit (aliased component) level by fault_type:")[1].splitlines()
    assert table[1].split()[:3] == ["fault_type", "n", "AC@1"]
    assert [line.split()[0] for line in table[2:]] == ["cpu", "latency", "memory", "all"]
    code, text, err = run(
        "score", "-t", SHOPFLOOR / "topology.yaml", "--assume-fault", "--out", tmp_path / "s2.jsonl", inc,
        "--group-by", "component", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    groups = json.loads(text)["groups"]
    assert groups["by"] == "component" and set(groups["metrics"]) == {"billing", "ledgerdb", "web", "all"}
    code, _, err = run(
        "score",
        "-t",
        SHOPFLOOR / "topology.yaml",
        "--out",
        tmp_path / "s3.jsonl",
        inc,
        "--aliases",
        tmp_path / "no.yaml",
    )
    assert code == 1 and err.startswith("error: ") and "no.yaml" in err and "Traceback" not in err
