"""Incident windows: CSV and JSON Lines, defaults, bad rows set aside, round trip, quiet windows."""

import pandas as pd
import pytest

from diagnosis import DiagnosisError
from diagnosis.telemetry import make_windows, quiet_windows, read_windows, write_windows
from diagnosis.telemetry.windows import WINDOW_COLUMNS


def test_csv_windows_with_defaults_and_bad_rows(tmp_path):
    path = tmp_path / "windows.csv"
    path.write_text(
        "id,start,end,baseline,component,fault_mode,extra\n"
        "a,2024-03-01T10:00:00Z,,,cart,crash,x\n"
        "b,2024-03-01 11:00:00,2024-03-01T11:02:00Z,30min,,,x\n"  # no zone: UTC; explicit end and baseline
        "a,2024-03-01T12:00:00Z,,,,,x\n"  # duplicate id
        "c,yesterday,,,,,x\n"  # bad time
        "d,2024-03-01T12:00:00Z,2024-03-01T11:00:00Z,,,,x\n"  # end before start
        "e,2024-03-01T12:00:00Z,,soon,,,x\n"  # bad baseline
        "f,2024-03-01T12:00:00Z,,,,crash,x\n"  # fault mode without component
        "g,2024-03-01T12:00:00Z\n"  # too few fields
    )
    w, rejects = read_windows(path, duration="4min", baseline="10min")
    assert w["id"].tolist() == ["a", "b"]
    assert list(w.columns) == list(WINDOW_COLUMNS)
    assert w.loc[0, "end"] == pd.Timestamp("2024-03-01T10:04:00Z")
    assert w.loc[0, "baseline_start"] == pd.Timestamp("2024-03-01T09:50:00Z")
    assert w.loc[1, "baseline_start"] == pd.Timestamp("2024-03-01T10:30:00Z")
    assert w.loc[1, "component"] is None
    by_loc = {r.location: (r.field, r.reason) for r in rejects}
    assert by_loc == {
        "row 3": ("id", "duplicate window id"),
        "row 4": ("start", "is not a time (ISO 8601 or epoch)"),
        "row 5": ("end", "must be after start"),
        "row 6": ("baseline", "is not a duration (e.g. '10min', '600s', 'PT10M')"),
        "row 7": ("component", "is required when fault_mode is given"),
        "row 8": ("(row)", "has 2 fields; the header has 7"),
    }


@pytest.mark.parametrize("name", ["w.csv", "w.jsonl"])
def test_round_trip(tmp_path, name):
    w, _ = make_windows(
        [
            {
                "id": "x",
                "start": "2024-03-01T10:00:00.250Z",
                "component": "cart",
                "fault_mode": "crash",
                "fault_type": "kill",
                "entity": "cart-1",
            },
            {
                "id": "y",
                "start": "2024-03-01T11:00:00Z",
                "baseline_start": "2024-03-01T10:40:00Z",
                "baseline_end": "2024-03-01T10:50:00Z",
            },
        ]
    )
    back, rejects = read_windows(write_windows(w, tmp_path / name))
    assert rejects == []
    pd.testing.assert_frame_equal(back, w)


def test_jsonl_bad_lines(tmp_path):
    path = tmp_path / "w.jsonl"
    path.write_text('{"id": "a", "start": "2024-03-01T10:00:00Z"}\n{"id": \n[1]\n')
    w, rejects = read_windows(path)
    assert w["id"].tolist() == ["a"]
    assert [r.location for r in rejects] == ["line 2", "line 3"]


def test_errors(tmp_path):
    with pytest.raises(DiagnosisError, match="no such windows file"):
        read_windows(tmp_path / "none.csv")
    (tmp_path / "w.csv").write_text("name,when\nx,y\n")
    with pytest.raises(DiagnosisError, match="missing \\['id', 'start'\\]"):
        read_windows(tmp_path / "w.csv")
    with pytest.raises(DiagnosisError, match="'duration' parameter of .* must be a duration"):
        make_windows([], duration="soon")
    with pytest.raises(DiagnosisError, match="baseline must be positive"):
        make_windows([], baseline="-5min")


def test_quiet_windows_avoid_every_incident():
    w, _ = make_windows([{"id": "a", "start": "2024-03-01T01:00:00Z"}, {"id": "b", "start": "2024-03-01T01:30:00Z"}])
    q = quiet_windows(w, span=(pd.Timestamp("2024-03-01T00:00Z"), pd.Timestamp("2024-03-01T03:00Z")), guard="1min")
    assert len(q) > 10
    for x in q.itertuples():
        for y in w.itertuples():
            assert x.end <= y.start - pd.Timedelta("1min") or x.baseline_start >= y.end + pd.Timedelta("1min")
    assert q["component"].isna().all()
