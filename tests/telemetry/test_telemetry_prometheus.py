"""Prometheus ``query_range`` / ``query`` JSON as a metrics input: the label rule, malformed entries, ``detect``."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from diagnosis.cli import main
from diagnosis.telemetry import read_metrics

SHOPFLOOR = Path(__file__).resolve().parents[2] / "data" / "telemetry" / "shopfloor"
T0 = 1_772_445_600  # 2026-03-02T10:00:00Z


def response(result, kind="matrix", status="success"):
    return {"status": status, "data": {"resultType": kind, "result": result}}


def series(labels, values):
    return {"metric": labels, "values": [[T0 + 15 * i, str(v)] for i, v in enumerate(values)]}


def test_labels_give_entity_and_metric(tmp_path):
    doc = response(
        [
            series(
                {"__name__": "container_cpu_usage_seconds_total", "pod": "carts-5d8f7c9b4d-x2k4z", "job": "k"}, [1, 2]
            ),
            series({"__name__": "http_request_duration_seconds", "service": "orders", "quantile": "0.99"}, [0.1, 0.2]),
            series({"__name__": "up", "instance": "10.0.0.1:9100"}, [1]),
        ]
    )
    (tmp_path / "q.json").write_text(json.dumps(doc))
    m = read_metrics(tmp_path)
    s = m.samples
    assert set(zip(s["entity"], s["component"], s["metric"])) == {
        ("carts-5d8f7c9b4d-x2k4z", "carts", "container_cpu_usage_seconds_total"),
        ("orders", "orders", "http_request_duration_seconds_p99"),
        ("10.0.0.1:9100", "10.0.0.1:9100", "up"),
    }
    assert s["time"].min() == pd.Timestamp(T0, unit="s", tz="UTC")
    assert s.loc[s["metric"] == "http_request_duration_seconds_p99", "value"].tolist() == [0.1, 0.2]
    assert m.report.files == (str(tmp_path / "q.json"),) and m.report.rows == 5


def test_a_series_without_name_takes_the_file_name_and_gzip_is_read(tmp_path):
    with gzip.open(tmp_path / "cpu_rate.json.gz", "wt") as fh:
        json.dump(response([series({"pod": "web-579b9bff58-t2dbm"}, [0.5, 0.6, 0.7])]), fh)
    s = read_metrics(tmp_path / "cpu_rate.json.gz").samples
    assert s["metric"].unique().tolist() == ["cpu_rate"] and s["component"].unique().tolist() == ["web"]


def test_an_instant_query_vector_is_read(tmp_path):
    doc = response([{"metric": {"__name__": "mem", "pod": "a"}, "value": [T0, "3.5"]}], kind="vector")
    (tmp_path / "v.json").write_text(json.dumps(doc))
    assert read_metrics(tmp_path).samples["value"].tolist() == [3.5]


def test_malformed_entries_are_counted_not_fatal(tmp_path):
    doc = response(
        [
            series({"__name__": "cpu", "pod": "a"}, [1, "NaN", "oops", "+Inf"]),
            {"metric": {"__name__": "cpu", "pod": "b"}, "values": [[T0, "1"], [T0 + 15], ["soon", "2"], 7]},
            {"metric": {"__name__": "cpu", "zone": "eu"}, "values": [[T0, "1"]]},
            {"values": [[T0, "1"]]},
            {"metric": {"__name__": "cpu", "pod": "c"}, "values": []},
            "junk",
        ]
    )
    (tmp_path / "q.json").write_text(json.dumps(doc))
    m = read_metrics(tmp_path)
    r = m.report
    assert sorted(m.samples["entity"].unique()) == ["a", "b"]
    assert r.malformed == 3 + 4  # three bad pairs; no entity label, no labels, no samples, not a series
    assert r.missing_values == 1 and r.bad_values == 2
    reasons = " ".join(r.by_reason)
    assert "[epoch seconds, value] pair" in reasons and "entity labels" in reasons and "is not a number" in reasons
    assert np.isnan(m.samples.loc[m.samples["entity"] == "a", "value"]).sum() == 3


def test_files_that_are_not_query_responses_are_skipped_and_listed(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "err.json").write_text(json.dumps({"status": "error", "error": "bad_data: parse error"}))
    (tmp_path / "str.json").write_text(json.dumps({"status": "success", "data": {"resultType": "string"}}))
    (tmp_path / "faults.json").write_text(json.dumps([{"fault": "cpu"}]))
    (tmp_path / "ok.json").write_text(json.dumps(response([series({"__name__": "cpu", "pod": "a"}, [1])])))
    m = read_metrics(tmp_path)
    skipped = m.report.skipped_files
    assert set(skipped) == {str(tmp_path / n) for n in ("bad.json", "err.json", "str.json", "faults.json")}
    assert "not JSON" in skipped[str(tmp_path / "bad.json")]
    assert "'error'" in skipped[str(tmp_path / "err.json")] and "parse error" in skipped[str(tmp_path / "err.json")]
    assert "'string'" in skipped[str(tmp_path / "str.json")]
    assert len(m.samples) == 1


def test_detect_reads_prometheus_json(tmp_path):
    """The shopfloor wide CSV exported as one range-query response per metric, then ``detect`` and ``score``."""
    wide = pd.read_csv(SHOPFLOOR / "metrics" / "shopfloor.csv")
    epoch = ((pd.to_datetime(wide["time"], utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta("1s")).tolist()
    by_metric: dict[str, list] = {}
    for col in wide.columns[1:]:
        ent, _, metric = col.partition("_")
        by_metric.setdefault(metric, []).append(
            {"metric": {"__name__": metric, "pod": f"{ent}-579b9bff58-t2dbm", "namespace": "shop"},
             "values": [[t, str(v)] for t, v in zip(epoch, wide[col])]}
        )  # fmt: skip
    (tmp_path / "prom").mkdir()
    for metric, result in by_metric.items():
        (tmp_path / "prom" / f"{metric}.json").write_text(json.dumps(response(result)))
    out, err = io.StringIO(), io.StringIO()
    args = ["detect", "-t", SHOPFLOOR / "topology.yaml", "--metrics", tmp_path / "prom",
            "--windows", SHOPFLOOR / "windows.csv", "--out", tmp_path / "inc.jsonl"]  # fmt: skip
    assert main(list(map(str, args)), stdout=out, stderr=err) == 0, err.getvalue()
    assert "read 5040 rows from 5 files" in out.getvalue()
    assert "busy 9" in out.getvalue()
    scored = tmp_path / "s.jsonl"
    args = ["score", "-t", SHOPFLOOR / "topology.yaml", "--assume-fault", "--out", scored, tmp_path / "inc.jsonl"]
    assert main(list(map(str, args)), stdout=io.StringIO(), stderr=err) == 0, err.getvalue()
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert [r["top_component"] for r in rows] == ["billing", "ledgerdb", "web"]
