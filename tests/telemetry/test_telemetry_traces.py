"""Trace adapters: CSV and OTLP JSON spans, malformed and duplicate spans counted, per-edge statistics."""

import gzip
import json

import numpy as np
import pandas as pd
import pytest
import telemetry_synth as synth

from diagnosis import DiagnosisError
from diagnosis.telemetry import edge_stats, read_spans, spans_from_frame
from diagnosis.telemetry.traces import SPAN_COLUMNS, edge_samples


def test_csv_spans_with_malformed_duplicate_and_orphan_spans(tmp_path):
    df = synth.spans(n_traces=10)
    lines = df.to_csv(index=False).splitlines()
    lines.append(lines[1])  # an exact repeat (overlapping exports)
    lines.append("t9999,x1,root,front-5f6585d649-x2k4z,GET /,notatime,1709251200000000000")  # bad start
    lines.append(
        "t9999,x2,root,front-5f6585d649-x2k4z,GET /,1709251200000000000,1709251100000000000"
    )  # end before start
    lines.append(",x3,root,front-5f6585d649-x2k4z,GET /,1709251200000000000,1709251200000000001")  # no trace id
    lines.append("t9999,x4,missing-parent,back-7d4f8b9c6d-bq7mn,rpc,1709251200000000000,1709251200000000001")  # orphan
    lines.append("t9999,x5,root")  # truncated
    with gzip.open(tmp_path / "spans.csv.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    s = read_spans(tmp_path)
    r = s.report
    assert (r.rows, r.malformed, r.duplicates) == (36, 4, 1)
    assert {x.reason for x in r.examples} >= {"is before the span's start", "is required (a non-empty string)"}
    assert any("1 spans name a parent that is not in the data" in n for n in r.notes)
    assert any("no span has a status" in n for n in r.notes)
    spans = s.spans
    assert list(spans.columns) == list(SPAN_COLUMNS) and len(spans) == 31
    assert spans["parent_id"].isna().sum() == 10  # roots
    assert set(spans["component"]) == {"front", "back", "store"}
    assert np.isnan(spans["error"]).all()


def test_edge_stats_counts_latency_and_error_rate():
    s = spans_from_frame(synth.spans(n_traces=20, slow_back=True, errors=True))
    e = edge_stats(s, freq=None).set_index(["caller", "callee"])
    assert e.loc[("front", "back"), "calls"] == 20 and e.loc[("back", "store"), "calls"] == 20
    assert e.loc[("front", "back"), "latency_p50"] == pytest.approx(0.080)
    assert e.loc[("back", "store"), "latency_mean"] == pytest.approx(0.005)
    assert e.loc[("front", "back"), "error_rate"] == pytest.approx(0.2)
    assert e.loc[("back", "store"), "error_rate"] == 0.0
    # time on the wire: the caller's span minus the callee's
    assert e.loc[("front", "back"), "wire_p50"] == pytest.approx(0.010)
    per_min = edge_stats(s)  # 20 traces, one every 6 s: two one-minute buckets
    assert per_min.groupby("time")["calls"].sum().tolist() == [20, 20]
    long = edge_samples(per_min)
    assert set(long["metric"]) == {
        "trace_edge_calls",
        "trace_edge_latency_p50",
        "trace_edge_latency_p90",
        "trace_edge_wire_p50",
        "trace_edge_error_rate",
    }
    assert set(long["entity"]) == {"front->back", "back->store"}


def test_otlp_json_export(tmp_path):
    def span(sid, parent, name, start, end, code):
        return {"traceId": "abc", "spanId": sid, "parentSpanId": parent, "name": name,
                "startTimeUnixNano": str(start), "endTimeUnixNano": str(end), "status": {"code": code}}  # fmt: skip

    t = 1_709_251_200_000_000_000
    doc = {
        "resourceSpans": [
            {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "front"}}]},
             "scopeSpans": [{"spans": [span("a", "", "GET /", t, t + 9_000_000, 1)]}]},
            {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cart"}},
                                         {"key": "k8s.pod.name", "value": {"stringValue": "cart-7d4f8b9c6d-x2k4z"}}]},
             "scopeSpans": [{"spans": [span("b", "a", "rpc", t + 1_000_000, t + 5_000_000, "STATUS_CODE_ERROR")]}]},
        ]
    }  # fmt: skip
    (tmp_path / "export.jsonl").write_text(json.dumps(doc) + "\n{not json\n")
    s = read_spans(tmp_path / "export.jsonl")
    assert s.report.malformed == 1
    assert s.spans["entity"].tolist() == ["front", "cart-7d4f8b9c6d-x2k4z"]
    assert s.spans["error"].tolist() == [0.0, 1.0]
    e = edge_stats(s, freq=None)
    assert (e["caller"].iloc[0], e["callee"].iloc[0], e["error_rate"].iloc[0]) == ("front", "cart", 1.0)


def test_http_status_column_and_time_offset():
    df = synth.spans(n_traces=3).assign(**{"http.status_code": [200, 503, 200] * 3})
    s = spans_from_frame(df, time_offset="-1h")
    assert s.spans["error"].tolist().count(1.0) == 3
    assert s.spans["start"].min() == synth.T0 - pd.Timedelta("1h")


def test_missing_columns_are_named(tmp_path):
    (tmp_path / "x.csv").write_text("TraceID,SpanID,PodName\nt,s,p\n")
    with pytest.raises(DiagnosisError, match=r"cannot find \['parent_id', 'start', 'end'\]"):
        read_spans(tmp_path / "x.csv")
