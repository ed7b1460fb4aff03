"""Hostile telemetry: non-finite metrics, bad times, ragged rows, bad spans, unmapped alerts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hostile_helpers import read_jsonl, refused, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "telemetry"))
import telemetry_synth as synth  # noqa: E402


@pytest.fixture(scope="module")
def tel(tmp_path_factory):
    d = tmp_path_factory.mktemp("tel")
    (d / "tiny.yaml").write_text(yaml.safe_dump(synth.topology().to_dict()))
    synth.metrics().to_csv(d / "metrics.csv", index=False)
    pd.DataFrame(synth.windows([200])).to_csv(d / "windows.csv", index=False)
    return d


def _detect(tel, metrics: Path, out: Path):
    return run("detect", "-t", tel / "tiny.yaml", "--metrics", metrics, "--windows", tel / "windows.csv", "--out", out)


def test_inf_in_metrics_is_set_aside_not_fatal(tel, tmp_path):
    df = pd.read_csv(tel / "metrics.csv")
    df.loc[5, "value"] = float("inf")
    df.loc[7, "value"] = float("-inf")
    df.to_csv(tmp_path / "inf.csv", index=False)
    code, out, err = _detect(tel, tmp_path / "inf.csv", tmp_path / "i.jsonl")
    assert code == 0, err
    assert "2 x is not a finite number" in out and f"{tmp_path / 'inf.csv'}, row 6" in out
    assert len(read_jsonl(tmp_path / "i.jsonl")) == 1


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (
            lambda lines: lines.__setitem__(3, "not-a-time" + lines[3][lines[3].index(",") :]),
            "row 3, time 'not-a-time'",
        ),
        (lambda lines: lines.__setitem__(4, lines[4] + ",extra,cells"), "has 6 fields; the header has 4 (first: "),
    ],
    ids=["bad-time", "ragged-row"],
)
def test_bad_metric_rows_are_reported_with_file_and_row(tel, tmp_path, edit, needle):
    lines = (tel / "metrics.csv").read_text().splitlines()
    edit(lines)
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = _detect(tel, path, tmp_path / "i.jsonl")
    assert code == 0, err
    assert needle in out and str(path) in out


def test_from_traces_counts_the_spans_it_drops(tmp_path):
    sp = synth.spans().astype(object)
    sp.loc[0, "EndTimeUnixNano"] = sp.loc[0, "StartTimeUnixNano"] - 5
    sp.loc[3, "SpanID"] = ""
    sp.loc[5, "StartTimeUnixNano"] = "xx"
    sp = pd.concat([sp, sp.iloc[[10]]])
    sp.to_csv(tmp_path / "spans.csv", index=False)
    code, out, err = run("topology", "from-traces", tmp_path / "spans.csv", "--out", tmp_path / "t.yaml")
    assert code == 0, err
    assert "3 malformed rows set aside" in out and "1 duplicates dropped" in out
    for needle in ("is before the span's start", "is not a time", "is required (a non-empty string)"):
        assert needle in out


def test_an_alert_mapped_to_an_unknown_symptom_says_so(tmp_path):
    topo = tmp_path / "shop.yaml"
    topo.write_text(
        yaml.safe_dump(
            {
                "name": "shop",
                "components": [{"name": "checkout"}],
                "alerts": [{"match": {"alertname": "HighLatency"}, "symptom": "{service}.latencyy"}],
            }
        )
    )
    alert = {
        "status": "firing",
        "labels": {"alertname": "HighLatency", "service": "checkout"},
        "startsAt": "2024-05-01T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
    }
    payloads = tmp_path / "p.json"
    payloads.write_text(json.dumps({"status": "firing", "alerts": [alert]}))
    code, out, err = run("import", "alertmanager", payloads, "-t", topo, "--out", tmp_path / "i.jsonl")
    assert code == 0, err
    assert "no rule maps" not in out
    assert "maps it to unknown symptom 'checkout.latencyy'" in out and "did you mean 'checkout.latency'" in out


def test_garbage_metrics_file_is_one_clear_error(tel, tmp_path):
    path = tmp_path / "m.parquet"
    path.write_bytes(b"\x00garbage" * 50)
    err = refused(["detect", "-t", tel / "tiny.yaml", "--metrics", path, "--windows", tel / "windows.csv",
                   "--out", tmp_path / "i.jsonl"], str(path))  # fmt: skip
    assert not (tmp_path / "i.jsonl").exists(), err
