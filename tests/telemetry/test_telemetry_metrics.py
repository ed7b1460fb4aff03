"""Metric adapters: long tables, the Nezha wide files, malformed rows counted, clocks, entity mapping."""

import gzip

import numpy as np
import pandas as pd
import pytest
import telemetry_synth as synth

from diagnosis import DiagnosisError
from diagnosis.telemetry import EntityMap, long_samples, read_metrics
from diagnosis.telemetry.metrics import METRIC_COLUMNS

NEZHA_HEADER = "Time,TimeStamp,PodName,CpuUsageRate(%),MemoryUsage(Mi),PodServerLatencyP90(s),PodSuccessRate(%)"


def nezha_row(minute: int, pod: str = "cart-579f59597d-wc2lz", stamp_offset: int = 0, cpu="5.0") -> str:
    t = pd.Timestamp("2022-08-22T03:51:19.799087274Z") + pd.Timedelta(minutes=minute)
    go = t.strftime("%Y-%m-%d %H:%M:%S.%f") + f"274 +0000 UTC m=+{60.3 * minute:.6f}"
    return f"{go},{int(t.timestamp()) + stamp_offset},{pod},{cpu},33.4,0.004,0"


def test_long_csv_with_malformed_rows_counted(tmp_path):
    lines = [
        "timestamp,entity,metric,value",
        "2024-03-01T00:00:00Z,cart-7d4f8b9c6d-x2k4z,cpu,0.5",
        "2024-03-01T00:01:00Z,cart-7d4f8b9c6d-x2k4z,cpu,0.7",
        "2024-03-01T00:01:00Z,cart-7d4f8b9c6d-x2k4z,cpu,0.9",  # duplicate (entity, metric, time): dropped
        "2024-03-01T00:02:00Z,cart-7d4f8b9c6d-x2k4z,cpu",  # too few fields
        "not-a-time,cart-7d4f8b9c6d-x2k4z,cpu,0.1",  # bad time
        "2024-03-01T00:03:00Z,,cpu,0.1",  # no entity
        "2024-03-01T00:04:00Z,cart-7d4f8b9c6d-x2k4z,cpu,abc",  # not a number: the cell, not the row
        "2024-03-01T00:05:00Z,cart-7d4f8b9c6d-x2k4z,cpu,",  # empty: missing, not malformed
        "1709251560,cart-7d4f8b9c6d-x2k4z,cpu,0.4",  # epoch seconds
    ]
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n")
    m = read_metrics(path)
    r = m.report
    assert (r.rows, r.malformed, r.bad_values, r.missing_values, r.duplicates) == (9, 3, 1, 1, 1)
    assert {x.location for x in r.examples} >= {"row 4", "row 5", "row 6", "row 7"}
    assert any("the header has 4" in x.reason for x in r.examples)
    s = m.samples
    assert list(s.columns) == list(METRIC_COLUMNS)
    assert str(s["time"].dtype) == "datetime64[ns, UTC]"
    assert set(s["component"]) == {"cart"}
    assert s["value"].iloc[:2].tolist() == [0.5, 0.7]
    assert pd.Timestamp("2024-03-01T00:06:00Z") in set(s["time"])  # the epoch row


def test_nezha_wide_pod_file_edges_front_and_skipped_dependency(tmp_path):
    metric = tmp_path / "metric"
    metric.mkdir()
    pod = "adservice-5f6585d649-fnmft"
    rows = [nezha_row(i, pod, stamp_offset=200_000_000) for i in range(5)]
    rows.insert(2, "2022-08-22 03:53:19 +0000 UTC,1661140399,adservice-5f6585d649-fnmft,1.0")  # truncated row
    rows.append(nezha_row(6, pod, cpu="oops"))
    (metric / f"{pod}_metric.csv").write_text(NEZHA_HEADER + "\n" + "\n".join(rows) + "\n")
    (metric / "source_50.csv").write_text(
        "time,timestamp,frontend_adservice,bad_col_name\n2022-08-22 03:51:20.02 +0000 UTC m=+0.5,1661140280,0.008,0.1\n"
    )
    (metric / "front_service.csv").write_text(
        "Time,TimeStamp,ServiceName,SuccessRate(%)\n2022-08-22 03:51:19.57 +0000 UTC m=+0.07,1661140279,Frontend,100\n"
    )
    (metric / "dependency.csv").write_text("Source,Target,Weight\nfrontend,adservice,1\n")
    m = read_metrics(metric)
    r = m.report
    assert r.malformed == 1 and r.bad_values == 1
    assert "dependency.csv" in next(iter(r.skipped_files))
    # the last row's TimeStamp is right, the others are 200,000,000 s ahead (as adservice's in the real data)
    assert any(
        "TimeStamp disagrees with Time for 5 of 6 rows" in n and "(median Time - TimeStamp -1999999" in n
        for n in r.notes
    )
    assert any("bad_col_name" in n for n in r.notes)
    s = m.samples
    edge = s[s["metric"] == "edge_latency_p50_source"]
    assert edge["entity"].tolist() == ["frontend->adservice"] and edge["component"].tolist() == ["frontend->adservice"]
    assert s.loc[s["metric"] == "SuccessRate(%)", "component"].tolist() == ["frontend"]
    cpu = s[(s["metric"] == "CpuUsageRate(%)") & (s["component"] == "adservice")]
    assert len(cpu) == 6 and cpu["value"].isna().sum() == 1  # 'oops' is NaN; the Time column is the clock
    assert cpu["time"].min() == pd.Timestamp("2022-08-22T03:51:19.799087274Z")


def test_gzip_and_parquet_long_tables(tmp_path):
    df = synth.metrics(minutes=3)
    with gzip.open(tmp_path / "a.csv.gz", "wt") as fh:
        df.iloc[:9].to_csv(fh, index=False)
    df.iloc[9:].to_parquet(tmp_path / "b.parquet")
    m = read_metrics(tmp_path)
    assert len(m) == len(df) and m.report.malformed == 0
    assert set(m.samples["component"]) == {"front", "back", "store"}


def test_time_offset_puts_a_source_on_the_reference_clock():
    df = synth.metrics(minutes=2, offset="-8h")
    m = long_samples(df, time_offset="8h")
    assert m.samples["time"].min() == synth.T0


def test_unmapped_entities_are_reported():
    m = long_samples(
        synth.metrics(minutes=1), entity_map=EntityMap(aliases={synth.PODS["front"]: "front"}, identity=False)
    )
    assert set(m.report.unmapped_entities) == {synth.PODS["back"], synth.PODS["store"]}
    assert m.samples["component"].isna().sum() == 6


def test_errors(tmp_path):
    with pytest.raises(DiagnosisError, match="no such file or folder"):
        read_metrics(tmp_path / "nothing")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DiagnosisError, match="no metric tables found"):
        read_metrics(tmp_path)
    with pytest.raises(DiagnosisError, match="needs columns time, entity, metric and value"):
        long_samples(pd.DataFrame({"a": [1]}))


def test_a_pod_with_only_a_header_has_no_samples(tmp_path):
    (tmp_path / "ghost-5f6585d649-x2k4z_metric.csv").write_text(NEZHA_HEADER + "\n")
    (tmp_path / "cart-579f59597d-wc2lz_metric.csv").write_text(NEZHA_HEADER + "\n" + nezha_row(0) + "\n")
    m = read_metrics(tmp_path)
    assert set(m.samples["component"]) == {"cart"}
    assert np.isfinite(m.samples["value"]).sum() == 4


def test_wide_entity_metric_csv_rcaeval_layout(tmp_path):
    # time, <entity>_<metric> columns (RCD / RCAEval); a bad time row and a bad cell are counted, not fatal
    text = (
        "time,carts_cpu,carts_mem,carts-db_latency-50,orders_workload\n"
        "1700000000,0.5,100,0.01,10\n"
        "1700000060,0.6,101,x,11\n"
        "not-a-time,0.7,102,0.02,12\n"
        "1700000180,0.8,103,0.03,13\n"
    )
    (tmp_path / "data.csv").write_text(text)
    from diagnosis.telemetry import read_metrics
    from diagnosis.telemetry.signals import match_rules

    m = read_metrics(tmp_path / "data.csv")
    s = m.samples
    assert set(s["entity"]) == {"carts", "carts-db", "orders"}
    assert set(s["metric"]) == {"cpu", "mem", "latency-50", "workload"}
    assert m.report.malformed == 1 and m.report.bad_values == 1
    assert len(s[(s["entity"] == "carts") & (s["metric"] == "cpu")]) == 3
    assert s["time"].min() == pd.Timestamp("2023-11-14T22:13:20Z")  # epoch seconds
    rules = match_rules(["cpu", "mem", "latency-50", "workload", "http_request_duration_seconds_count"], ["carts"] * 5)
    assert rules.tolist()[:3] == [0, 1, 2] and rules.tolist()[3:] == [-1, -1]  # a request counter is not latency
