"""`diagnosis detect --logs --reference --null/--save-null` and the exit code when every window is set aside."""

from __future__ import annotations

import io
import json

import pandas as pd
import telemetry_synth as synth

from diagnosis.cli import main
from diagnosis.telemetry import NullModel, fit_null, long_samples, make_windows


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(map(str, argv)), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def ecs_lines(start: pd.Timestamp, n: int, *, drop: bool = False) -> str:
    rows = []
    for i in range(n):
        t = (start + pd.Timedelta(seconds=i)).isoformat()
        base = {"@timestamp": t, "service.name": "back", "span.id": f"{start.value}-{i}", "log.logger": "BackImpl"}
        rows.append({**base, "log.level": "info", "message": "got order", "log.origin.file.line": 12})
        if not drop:
            rows.append({**base, "log.level": "info", "message": "priced order", "log.origin.file.line": 20})
    return "\n".join(json.dumps(r) for r in rows) + "\n"


def test_detect_reads_logs_and_a_reference_folder(tmp_path):
    topo = _tiny_topology(tmp_path)
    start = synth.T0 + pd.Timedelta("2h")
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "a.jsonl").write_text(ecs_lines(start, 200, drop=True) + "{broken\n")
    (tmp_path / "ref" / "log").mkdir(parents=True)
    (tmp_path / "ref" / "log" / "r.jsonl").write_text(ecs_lines(synth.T0, 120))
    (tmp_path / "w.csv").write_text(f"id,start,component,fault_mode\nw1,{start.isoformat()},back,bad_deploy\n")
    out_path = tmp_path / "inc.jsonl"
    code, out, err = run("detect", "-t", topo, "--logs", tmp_path / "log", "--reference", tmp_path / "ref",
                         "--windows", tmp_path / "w.csv", "--out", out_path)  # fmt: skip
    assert code == 0, err
    assert "1 malformed rows set aside" in out
    rec = json.loads(out_path.read_text().splitlines()[0])
    obs = {o["symptom"]: o for o in rec["observations"]}
    assert obs["back.log_missing"]["p_fired"] > 0.99


def test_detect_exits_non_zero_when_every_window_is_rejected(tmp_path):
    df = synth.metrics(minutes=60)
    (tmp_path / "m.csv").write_text(df.to_csv(index=False))
    topo = tmp_path / "t.yaml"
    topo.write_text("name: tiny\ncomponents:\n- {name: front, kind: service}\n")
    (tmp_path / "w.csv").write_text(f"id,start,component\nw1,{(synth.T0 + pd.Timedelta('30min')).isoformat()},nosuch\n")
    code, out, err = run("detect", "-t", topo, "--metrics", tmp_path / "m.csv", "--windows", tmp_path / "w.csv",
                         "--out", tmp_path / "inc.jsonl")  # fmt: skip
    assert code == 1 and err.startswith("error: every one of the 1 windows was set aside") and "Traceback" not in err
    assert not (tmp_path / "inc.jsonl").exists()


def test_a_saved_null_model_is_used_one_window_at_a_time(tmp_path):
    df = synth.metrics(minutes=400, shifts=[("back", "CpuUsageRate(%)", 300, 304, 40.0)])
    rows = synth.windows([100, 300], truth={300: ("back", "cpu_saturation")})
    w, _ = make_windows(rows, baseline="20min")
    model = fit_null(synth.topology(), long_samples(df), w)
    assert model.kind("cpu") == "empirical"
    model.save(tmp_path / "null.json")
    again = NullModel.load(tmp_path / "null.json")
    assert again.quiet["cpu"].tolist() == model.quiet["cpu"].tolist()
    (tmp_path / "bad.json").write_text('{"quiet": {"cpu": ["x"]}}')
    code, _, err = run("detect", "-t", tmp_path / "nope.yaml", "--windows", "x", "--out", "y")
    assert code == 1
    import pytest

    from diagnosis.exceptions import TelemetryError

    with pytest.raises(TelemetryError, match="quiet.cpu must be a list of numbers"):
        NullModel.load(tmp_path / "bad.json")
    from diagnosis.telemetry import detect

    own = long_samples(df[(df["timestamp"] >= synth.T0 + pd.Timedelta("280min"))])
    frame, _, rep = detect(synth.topology(), own, w.iloc[[1]].reset_index(drop=True), null=again)
    assert rep.null["cpu"] == "empirical"
    o = frame.observations.set_index("symptom")
    assert o.loc["back.cpu", "p_fired"] > 0.9 and o.loc["front.cpu", "p_fired"] < 0.5


def test_score_assume_fault_flag(tmp_path):
    df = synth.metrics(minutes=300, shifts=[("back", "CpuUsageRate(%)", 200, 204, 40.0)])
    (tmp_path / "m.csv").write_text(df.to_csv(index=False))
    topo = tmp_path / "t.yaml"
    topo.write_text(
        "name: tiny\ncomponents:\n- {name: front, kind: service, calls: [back]}\n- {name: back, kind: service, calls: [store]}\n"
        "- {name: store, kind: service}\n"
    )
    start = (synth.T0 + pd.Timedelta("200min")).isoformat()
    (tmp_path / "w.csv").write_text(f"id,start,component,fault_mode\nw1,{start},back,cpu_saturation\n")
    code, _, err = run("detect", "-t", topo, "--metrics", tmp_path / "m.csv", "--windows", tmp_path / "w.csv",
                       "--out", tmp_path / "inc.jsonl")  # fmt: skip
    assert code == 0, err
    p = {}
    for flag in ((), ("--assume-fault",)):
        out = tmp_path / f"s{len(flag)}.csv"
        code, _, err = run("score", "-t", topo, tmp_path / "inc.jsonl", "--out", out, *flag)
        assert code == 0, err
        p[len(flag)] = pd.read_csv(out)["p_top_component"].iloc[0]
    assert p[1] >= p[0]


def test_detect_takes_metric_baselines_from_a_reference_folder(tmp_path):
    df = synth.metrics(minutes=60, shifts=[("back", "CpuUsageRate(%)", 40, 44, 40.0)])
    (tmp_path / "m.csv").write_text(df.to_csv(index=False))
    ref = synth.metrics(minutes=30, seed=3)
    ref["timestamp"] -= pd.Timedelta("1D")
    (tmp_path / "ref" / "metric").mkdir(parents=True)
    (tmp_path / "ref" / "metric" / "r.csv").write_text(ref.to_csv(index=False))
    start = synth.T0 + pd.Timedelta(minutes=40)
    (tmp_path / "w.csv").write_text(f"id,start,component,fault_mode\nw1,{start.isoformat()},back,cpu_saturation\n")
    out_path = tmp_path / "inc.jsonl"
    code, out, err = run("detect", "-t", _tiny_topology(tmp_path), "--metrics", tmp_path / "m.csv", "--reference",
                         tmp_path / "ref", "--windows", tmp_path / "w.csv", "--out", out_path)  # fmt: skip
    assert code == 0, err
    assert "9 series scores used the reference as their baseline" in out
    rec = json.loads(out_path.read_text().splitlines()[0])
    obs = {o["symptom"]: o for o in rec["observations"]}
    assert obs["back.cpu"]["p_fired"] > 0.9 > obs["store.cpu"]["p_fired"]


def _tiny_topology(tmp_path):
    topo = tmp_path / "t.yaml"
    topo.write_text(
        "name: tiny\ncomponents:\n- {name: front, kind: service, calls: [back]}\n- {name: back, kind: service, calls: [store]}\n"
        "- {name: store, kind: service}\n"
    )
    return topo
