"""Log readers (Nezha CSV, OTLP JSON, ECS JSON Lines), templates, and the log detectors."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from diagnosis import Topology
from diagnosis.exceptions import TelemetryError
from diagnosis.telemetry import detect, log_evidence, make_windows, read_logs
from diagnosis.telemetry.logs import logs_from_frame
from diagnosis.telemetry.traces import spans_from_frame

T0 = pd.Timestamp("2024-03-01T00:00:00Z")
POD = "back-7d4f8b9c6d-bq7mn"


def nezha_row(t: pd.Timestamp, pod: str, span: str, level: str, key: str, msg: str = "hello") -> list:
    line = f"16:42:22.382 {level}  {key} TraceID: t1 SpanID: {span} [op][{msg}]\n"
    env = json.dumps({"log": line, "stream": "stdout", "time": t.isoformat()})
    return [t.isoformat(), str(t.value), "10.0.0.1", pod, "server", "t1", span, env]


def write_nezha(path, rows, *, gz: bool = True):
    df = pd.DataFrame(
        rows, columns=["Timestamp", "TimeUnixNano", "Node", "PodName", "Container", "TraceID", "SpanID", "Log"]
    )
    text = df.to_csv(index=False)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text)


def test_nezha_csv_keys_levels_duplicates_and_malformed_rows(tmp_path):
    rows = [nezha_row(T0 + pd.Timedelta(seconds=i), POD, f"s{i}", "INFO", "b.s.BackImpl#12") for i in range(5)]
    rows.append(nezha_row(T0, POD, "s9", "ERROR", "b.s.BackImpl#40", "boom"))
    rows.append(rows[0])  # overlap of two minute files
    bad = nezha_row(T0, POD, "s8", "INFO", "x#1")
    bad[7] = "{not json"
    rows.append(bad)
    write_nezha(tmp_path / "00_00_log.csv.gz", rows)
    (tmp_path / "00_01_log.csv").write_text("Timestamp,TimeUnixNano,Node,PodName,Container,TraceID,SpanID,Log\n1,2,3\n")
    logs = read_logs(tmp_path)
    rep = logs.report
    assert len(rep.files) == 2 and rep.malformed == 2 and rep.duplicates == 1
    assert any("JSON envelope" in r for r in rep.by_reason) and any("fields" in r for r in rep.by_reason)
    lines = logs.lines
    assert len(lines) == 6 and set(lines["component"]) == {"back"}
    assert lines.loc[lines["level"] == "ERROR", "template"].tolist() == ["b.s.BackImpl#40"]
    assert lines["span_id"].str.startswith("s").all() and str(lines["time"].dtype) == "datetime64[ns, UTC]"


def test_otlp_json_and_ecs_json_lines(tmp_path):
    otlp = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cart"}}]},
                "scopeLogs": [
                    {
                        "logRecords": [
                            {"timeUnixNano": str(T0.value), "severityNumber": 17, "body": {"stringValue": "db down id=1"},
                             "traceId": "t", "spanId": "a"},
                            {"timeUnixNano": "not a time", "severityText": "INFO", "body": {"stringValue": "x"}},
                            "garbage",
                        ]
                    }
                ],
            }
        ]
    }  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(otlp))
    ecs = [
        {"@timestamp": "2024-03-01T00:00:01Z", "log.level": "warn", "message": "slow id=2", "service.name": "cart",
         "trace.id": "t", "span.id": "b", "log": {"logger": "CartCtl", "origin": {"file": {"line": 7}}}},
        {"@timestamp": "2024-03-01T00:00:02Z", "log": {"level": "info"}, "message": "ok user=5", "service": {"name": "cart"}},
    ]  # fmt: skip
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as fh:
        fh.write("\n".join(json.dumps(e) for e in ecs) + "\nnot json\n")
    logs = read_logs([tmp_path / "a.json", tmp_path / "b.jsonl.gz"])
    rep = logs.report
    assert rep.malformed == 3  # the bad time, the non-object record, the non-JSON line
    lines = logs.lines.sort_values("time")
    assert lines["level"].tolist() == ["ERROR", "WARN", "INFO"]
    assert lines["template"].iloc[1] == "CartCtl#7"  # ECS logger + line
    assert lines["template"].iloc[0].startswith("drain:") and lines["template"].iloc[2].startswith("drain:")
    assert lines["span_id"].iloc[0] == "a" and set(lines["component"]) == {"cart"}


def test_drain_templates_group_lines_of_one_statement():
    df = pd.DataFrame(
        {"time": [T0 + pd.Timedelta(seconds=i) for i in range(6)], "entity": ["cart"] * 6,
         "message": [f"user {i} logged in from 10.0.0.{i}" for i in range(4)] + ["cache miss", "cache miss"]}
    )  # fmt: skip
    lines = logs_from_frame(df).lines
    assert lines["template"].nunique() == 2


def test_reader_errors_name_the_path(tmp_path):
    with pytest.raises(TelemetryError, match="no such file"):
        read_logs(tmp_path / "missing")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(TelemetryError, match="PodName, Log"):
        read_logs(tmp_path / "x.csv")


def synthetic_logs(start: pd.Timestamp, n_spans: int, *, drop_line: bool = False, errors: int = 0, seed: int = 0):
    """Every back span writes #12 and #20; some write the ERROR #40 (normal traffic does too, rarely)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_spans):
        t = start + pd.Timedelta(seconds=i)
        sp = f"{start.value}-{i}"
        rows.append((t, POD, sp, "INFO", "b.s.BackImpl#12"))
        if not drop_line:
            rows.append((t, POD, sp, "INFO", "b.s.BackImpl#20"))
        rows.append((t, "front-5f6585d649-x2k4z", sp + "f", "INFO", "f.c.FrontCtl#5"))
        if rng.random() < 0.02:
            rows.append((t, "front-5f6585d649-x2k4z", sp + "f", "ERROR", "f.c.FrontCtl#9"))
    for i in range(errors):
        t = start + pd.Timedelta(seconds=i)
        rows.append((t, POD, f"{start.value}-{i}", "ERROR", "b.s.BackImpl#40"))
    df = pd.DataFrame(rows, columns=["time", "entity", "span_id", "level", "template"])
    return logs_from_frame(df.assign(message=df["template"])).lines


def test_log_detectors_find_a_missing_line_and_a_new_error_on_the_owning_service():
    ref = synthetic_logs(T0, 120)
    ok = log_evidence(synthetic_logs(T0 + pd.Timedelta("1h"), 200, seed=1), None, ref, None)
    assert (ok["p_rule"] > 0.01).all()
    miss = log_evidence(synthetic_logs(T0 + pd.Timedelta("1h"), 200, drop_line=True), None, ref, None)
    m = miss.set_index(["component", "rule"])
    assert m.loc[("back", "log_missing"), "p_rule"] < 1e-6 and "#20" in m.loc[("back", "log_missing"), "top_signal"]
    assert m.loc[("front", "log_missing"), "p_rule"] > 0.01
    err = log_evidence(synthetic_logs(T0 + pd.Timedelta("1h"), 200, errors=30), None, ref, None)
    e = err.set_index(["component", "rule"])
    assert e.loc[("back", "log_errors"), "p_rule"] < 1e-6 and e.loc[("front", "log_errors"), "p_rule"] > 0.01


def test_detect_with_logs_and_reference_ranks_the_code_level_fault_first():
    topo = Topology.from_dict(
        {"name": "tiny", "components": [{"name": "front", "kind": "service", "calls": ["back"]}, {"name": "back", "kind": "service"}]}
    )  # fmt: skip
    from diagnosis.telemetry.detect import Reference
    from diagnosis.telemetry.logs import LogSet
    from diagnosis.telemetry.quality import ReadReport

    ref = synthetic_logs(T0, 120)
    win = synthetic_logs(T0 + pd.Timedelta("2h"), 240, drop_line=True, errors=20)
    w, _ = make_windows([{"id": "w", "start": (T0 + pd.Timedelta("2h")).isoformat(), "component": "back",
                          "fault_mode": "bad_deploy"}], duration="5min")  # fmt: skip
    reference = Reference(logs=LogSet(ref, ReadReport()))
    frame, rejects, rep = detect(topo, None, w, logs=win, reference=reference)
    assert rejects == [] and len(frame) == 1
    ev = rep.evidence.set_index("symptom")
    assert ev.loc["back.log_missing", "p_value"] < 1e-6 and ev.loc["back.log_errors", "p_value"] < 1e-6
    assert ev.loc["front.log_missing", "p_value"] > 0.01
    from diagnosis import build_network, make_engine
    from diagnosis.logs.scoring import score_frame

    net = build_network(topo)
    rows, _, _ = score_frame(net, make_engine(net), frame)
    assert rows["rank_component"].tolist() == [1.0]


def chain(start: pd.Timestamp, n: int, *, back_errors=(), back_skips=(), back_failed=(), mid_errors=(), mid_lines=1):
    """Traces front -> mid -> back, one INFO line per span; in some traces back writes a new ERROR, skips its
    line (an exception thrown before it) or fails, and mid writes ``mid_lines`` ERROR lines."""
    rows, spans = [], []
    pods = {"front": "front-5f6585d649-x2k4z", "mid": "mid-6c9d7f8b5d-q8w2x", "back": POD}
    for i in range(n):
        t = start + pd.Timedelta(seconds=i)
        ids = {c: f"{start.value}-{i}-{c}" for c in pods}
        for c, parent in (("front", "root"), ("mid", ids["front"]), ("back", ids["mid"])):
            spans.append((f"t{start.value}-{i}", ids[c], parent, pods[c], "op", t, t + pd.Timedelta("10ms"),
                          "ERROR" if c == "back" and i in back_failed else "OK"))  # fmt: skip
            if not (c == "back" and i in back_skips):
                rows.append((t, pods[c], ids[c], "INFO", f"{c}.Ctl#5"))
        if i in back_errors:
            rows.append((t, pods["back"], ids["back"], "ERROR", "back.Impl#40"))
        if i in mid_errors:
            rows.extend([(t, pods["mid"], ids["mid"], "ERROR", "mid.Client#9")] * mid_lines)
    df = pd.DataFrame(rows, columns=["time", "entity", "span_id", "level", "template"])
    sp = pd.DataFrame(spans, columns=["trace_id", "span_id", "parent_id", "pod", "operation", "start", "end", "status"])
    return logs_from_frame(df.assign(message=df["template"])).lines, spans_from_frame(sp).spans


def test_a_caller_error_about_a_failed_call_is_blamed_on_the_callee():
    ref_logs, ref_spans = chain(T0, 120)
    start = T0 + pd.Timedelta("1h")
    hit = range(0, 200, 5)  # 40 of 200 traces

    def p(ev, comp, rule="log_errors"):
        e = ev[(ev["component"] == comp) & (ev["rule"] == rule)]
        return float(e["p_rule"].min()) if len(e) else 1.0

    logs, spans = chain(start, 200, back_errors=hit, mid_errors=hit)
    echoed = log_evidence(logs, spans, ref_logs, ref_spans)
    assert p(echoed, "back") < 1e-6 and p(echoed, "mid") > 0.01
    # without the traces the lines cannot be joined: the writer is blamed, as before
    assert p(log_evidence(logs, None, ref_logs, None), "mid") < 1e-6
    # mid's own errors (nothing wrong below it in those traces) stay mid's
    logs, spans = chain(start, 200, back_errors=range(1, 200, 5), mid_errors=hit)
    own = log_evidence(logs, spans, ref_logs, ref_spans)
    assert p(own, "mid") < 1e-6 and p(own, "back") < 1e-6
    # back silent but for a line it no longer writes (a log invariant of its operation), or failed: an echo too
    for kw in ({"back_skips": hit}, {"back_failed": hit}):
        logs, spans = chain(start, 200, mid_errors=hit, **kw)
        ev = log_evidence(logs, spans, ref_logs, ref_spans)
        assert p(ev, "mid") > 0.01 and p(ev, "front") > 0.01 and p(ev, "mid", "log_missing") > 0.01
    assert p(ev, "back", "log_missing") > 0.01  # a failed span that still logs as usual: no log symptom on back
    logs, spans = chain(start, 200, mid_errors=hit, back_skips=hit)
    ev = log_evidence(logs, spans, ref_logs, ref_spans)
    assert p(ev, "back", "log_missing") < 0.01
    # the silent callee gets its caller's error lines as its own log_errors, named after the writer
    top = ev.set_index(["component", "rule"]).loc[("back", "log_errors")]
    assert top["p_rule"] < 1e-6 and "mid: mid.Client#9" in top["top_signal"]
    # fault-free traffic with routine mid errors and back skips, in the reference too: no log symptom anywhere
    ref_logs, ref_spans = chain(T0, 240, mid_errors=range(3, 240, 30), back_skips=range(3, 240, 60))
    logs, spans = chain(start, 200, mid_errors=range(5, 200, 30), back_skips=range(5, 200, 60))
    assert (log_evidence(logs, spans, ref_logs, ref_spans)["p_rule"] > 0.01).all()


def test_detect_ranks_the_callee_first_when_its_caller_echoes_its_error():
    from diagnosis import build_network, make_engine
    from diagnosis.logs.scoring import score_frame
    from diagnosis.telemetry.detect import Reference
    from diagnosis.telemetry.logs import LogSet
    from diagnosis.telemetry.quality import ReadReport
    from diagnosis.telemetry.traces import SpanSet

    topo = Topology.from_dict(
        {"name": "chain", "components": [{"name": "front", "kind": "service", "calls": ["mid"]},
                                         {"name": "mid", "kind": "service", "calls": ["back"]},
                                         {"name": "back", "kind": "service"}]}
    )  # fmt: skip
    ref_logs, ref_spans = chain(T0, 120)
    start = T0 + pd.Timedelta("2h")
    hit = range(0, 240, 6)
    # back throws before its line (no ERROR of its own); mid logs the failed call, then its failed request
    logs, spans = chain(start, 240, back_skips=hit, mid_errors=hit, mid_lines=2)
    w, _ = make_windows([{"id": "w", "start": start.isoformat(), "component": "back", "fault_mode": "bad_deploy"}],
                        duration="5min")  # fmt: skip
    net = build_network(topo)
    eng = make_engine(net)
    ranks = {}
    for name, sp, rs in (("with traces", spans, ref_spans), ("without", None, None)):
        ref = Reference(logs=LogSet(ref_logs, ReadReport()), traces=None if rs is None else SpanSet(rs, ReadReport()))
        frame, rejects, _ = detect(topo, None, w, logs=logs, traces=sp, reference=ref, presence=False)
        assert rejects == []
        rows, _, _ = score_frame(net, eng, frame)
        ranks[name] = rows["top_component"].iloc[0]
    # without the trace join the caller's loud new ERROR wins; with it the failure is blamed where it started
    assert ranks == {"with traces": "back", "without": "mid"}
