"""Incident logs: JSON Lines, Parquet and CSV round trips; bad records are set aside with reasons."""

import json

import pandas as pd
import pytest

from diagnosis import IncidentLogError
from diagnosis.logs.formats import detect_format, iter_incident_frames, read_incidents, write_incidents, write_rejects
from diagnosis.logs.schema import validate_frame
from diagnosis.logs.simulate import simulate

GOOD = {
    "id": "a1",
    "opened": "2026-01-01T10:00:00Z",
    "resolved": "2026-01-01T11:00:00Z",
    "topology": "webshop",
    "observations": [
        {"symptom": "db.latency", "value": "fired", "time": "2026-01-01T10:01:00Z"},
        {"symptom": "frontend.latency", "value": "soft", "p_fired": 0.8, "p_passed": 0.1},
        {"symptom": "db.health_check", "value": "passed"},
    ],
    "root_cause": {"component": "db", "fault_mode": "slow_queries"},
    "actions": [{"action": "failover", "target": "db", "time": "2026-01-01T10:30:00Z", "outcome": "success"}],
}


def corrupted_log(tmp_path):
    lines = [json.dumps(GOOD)]
    lines.append(json.dumps({**GOOD, "id": "a2", "opened": "2026-13-45T99:00:00Z"}))  # bad timestamp
    lines.append(
        json.dumps({**GOOD, "id": "a3", "root_cause": {"component": "dbx", "fault_mode": "down"}})
    )  # unknown component
    lines.append(
        json.dumps({**GOOD, "id": "a4", "observations": [{"symptom": "db.latency", "value": 1}]})
    )  # wrong type
    lines.append(json.dumps({**GOOD, "id": "a5"})[:70])  # truncated line
    lines.append(json.dumps({**GOOD, "id": 6}))  # wrong type for id
    lines.append(
        json.dumps({**GOOD, "id": "a7", "observations": [{"symptom": "db.latncy", "value": "fired"}]})
    )  # unknown symptom
    lines.append(json.dumps({**GOOD, "id": "a8"}))
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_corrupted_log_is_read_apart_from_its_bad_records(tmp_path, webshop):
    frame, rejects = read_incidents(corrupted_log(tmp_path))
    good, more = validate_frame(frame, webshop, source="log.jsonl")
    rejects += more
    assert list(good.incidents["id"]) == ["a1", "a8"]
    by_loc = {r.location: r for r in rejects}
    assert set(by_loc) == {"line 2", "line 3", "line 4", "line 5", "line 6", "line 7"}
    assert by_loc["line 2"].field == "opened" and "ISO 8601" in by_loc["line 2"].reason
    assert by_loc["line 3"].field == "root_cause.component" and "did you mean 'db'" in by_loc["line 3"].reason
    assert by_loc["line 4"].field == "observations.value" and by_loc["line 4"].value == "1"
    assert by_loc["line 5"].field == "(line)" and "not valid JSON" in by_loc["line 5"].reason
    assert "Unterminated string starting at character" in by_loc["line 5"].reason  # not "at at"
    assert by_loc["line 6"].field == "id"
    assert by_loc["line 7"].field == "observations.symptom" and "did you mean 'db.latency'" in by_loc["line 7"].reason
    out = write_rejects(rejects, tmp_path / "rejects.jsonl")
    assert len(out.read_text().splitlines()) == 6


@pytest.mark.parametrize(
    "fmt,name", [("jsonl", "x.jsonl"), ("parquet", "x.parquet"), ("csv", "xcsv"), ("csv", "x.csv")]
)
def test_round_trip(tmp_path, webshop, fmt, name):
    frame = simulate(webshop, 300, rng=5)
    path = write_incidents(frame, tmp_path / name, format=fmt)
    again, rejects = read_incidents(path)
    assert rejects == []
    # Text formats keep times to the millisecond; Parquet keeps nanoseconds.
    for a, b in (
        (frame.incidents, again.incidents),
        (frame.observations, again.observations),
        (frame.actions, again.actions),
    ):
        if fmt != "parquet":
            a = a.assign(**{c: a[c].dt.floor("ms") for c in a.columns if str(a[c].dtype).startswith("datetime")})
        pd.testing.assert_frame_equal(a, b)


def test_chunks_and_skip_are_stable(tmp_path, webshop):
    frame = simulate(webshop, 95, rng=1)
    path = write_incidents(frame, tmp_path / "x.jsonl")
    chunks = [len(f) for f, _ in iter_incident_frames(path, chunk_size=20)]
    assert chunks == [20, 20, 20, 20, 15]
    resumed = [f.incidents["id"].iloc[0] for f, _ in iter_incident_frames(path, chunk_size=20, skip=40)]
    assert resumed == list(frame.incidents["id"].iloc[[40, 60, 80]])


def test_soft_shorthand_and_detect_format(tmp_path):
    rec = {**GOOD, "observations": [{"symptom": "db.latency", "value": {"fired": 0.7, "passed": 0.2}}]}
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps(rec) + "\n")
    frame, rejects = read_incidents(p)
    assert not rejects
    row = frame.observations.iloc[0]
    assert (row["value"], row["p_fired"], row["p_passed"]) == ("soft", 0.7, 0.2)
    with pytest.raises(IncidentLogError, match="cannot tell the format"):
        detect_format(tmp_path / "x.txt")
    with pytest.raises(IncidentLogError, match="file not found"):
        next(iter_incident_frames(tmp_path / "missing.jsonl"))
    with pytest.raises(IncidentLogError, match="chunk_size must be"):
        next(iter_incident_frames(p, chunk_size=0))


def test_writes_are_atomic(tmp_path, webshop):
    frame = simulate(webshop, 10, rng=2)
    write_incidents(frame, tmp_path / "x.parquet")
    write_incidents(frame, tmp_path / "x.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jsonl", "x.parquet"]


def test_csv_errors_name_rows(tmp_path, webshop):
    frame = simulate(webshop, 5, rng=3)
    folder = write_incidents(frame, tmp_path / "log", format="csv")
    inc = pd.read_csv(folder / "incidents.csv", dtype=str)
    inc.loc[2, "opened"] = "not a time"
    inc.to_csv(folder / "incidents.csv", index=False)
    good, rejects = read_incidents(folder)
    assert len(good) == 4
    assert [(r.location, r.field) for r in rejects] == [("row 3", "opened")]
