"""The vectorised JSON Lines reader (pyarrow) gives exactly what the per-line reader gives."""

import json

import pandas as pd
import pytest

from diagnosis.logs import formats
from diagnosis.logs.formats import iter_incident_frames, write_incidents
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
    "faults": [{"component": "db", "fault_mode": "slow_queries"}],
    "actions": [{"action": "failover", "target": "db", "time": "2026-01-01T10:30:00Z", "outcome": "success"}],
}

VARIANTS = [
    {},
    {"opened": "2026-13-45T99:00:00Z"},  # bad timestamp (type-valid: the fast path sees it)
    {"resolved": "2025-01-01T00:00:00Z"},  # before opened
    {"id": ""},  # empty id
    {"id": "a1"},  # duplicate id
    {"root_cause": None, "faults": []},  # no fault
    {"faults": None},
    {"observations": [{"symptom": "db.latency", "value": "fired"}], "actions": []},
    {"topology": "w\u00e9bshop \u2603"},  # unicode
    {"title": "t", "notes": "n"},
    # what the schema cannot hold: the whole block goes line by line
    {"observations": [{"symptom": "db.latency", "value": {"fired": 0.7, "passed": 0.2}}]},
    {"observations": [{"symptom": "db.latency", "value": 1}]},
    {"id": 6},
    {"observations": None},
    {"extra": 1},
    {"faults": [{"component": "db"}]},
    {"observations": [{"symptom": "db.latency", "value": "fired", "p_fired": "high"}]},
]


def _records(k_bad):
    out = []
    for i in range(40):
        v = VARIANTS[i % len(VARIANTS)] if k_bad else {}
        rec = {**GOOD, "id": f"r{i}", **v}
        if v.get("id") == "a1":
            rec["id"] = "r0"
        out.append(json.dumps(rec))
    return out


def _read_both(path, monkeypatch, chunk_size):
    fast = list(iter_incident_frames(path, chunk_size=chunk_size))
    with monkeypatch.context() as m:
        m.setattr(formats, "_jsonl_block_arrow", lambda linenos, data: None)
        slow = list(iter_incident_frames(path, chunk_size=chunk_size))
    return fast, slow


def _assert_same(fast, slow):
    assert len(fast) == len(slow)
    for (f, rf), (s, rs) in zip(fast, slow):
        for a, b in ((f.incidents, s.incidents), (f.observations, s.observations), (f.actions, s.actions)):
            pd.testing.assert_frame_equal(a, b)
        assert [r.to_dict() for r in rf] == [r.to_dict() for r in rs]


@pytest.mark.parametrize("bad", [False, True])
@pytest.mark.parametrize("block_chars", [1 << 25, 3000])
def test_fast_reader_equals_line_reader(tmp_path, monkeypatch, bad, block_chars):
    lines = _records(bad)
    lines.insert(5, "")  # blank lines are skipped but counted in line numbers
    lines.insert(9, "   ")
    lines.insert(12, lines[3][:50])  # truncated
    lines.insert(14, "[1, 2]")  # not an object
    lines.insert(16, '{"id": "n1", "opened": "2026-01-01T10:00:00Z", "topology": "webshop", "p": NaN}')
    path = tmp_path / "log.jsonl"
    path.write_bytes(("\r\n".join(lines) + "\n").encode())
    monkeypatch.setattr(formats, "_JSONL_BLOCK_CHARS", block_chars)
    fast, slow = _read_both(path, monkeypatch, chunk_size=7)
    _assert_same(fast, slow)
    assert sum(len(f) for f, _ in fast) > 0


def test_fast_reader_runs_on_a_simulated_log(tmp_path, monkeypatch, boutique):
    frame = simulate(boutique, 300, rng=3)
    path = write_incidents(frame, tmp_path / "sim.jsonl")
    calls = []
    real = formats._jsonl_block_arrow
    monkeypatch.setattr(formats, "_jsonl_block_arrow", lambda *a: calls.append(real(*a)) or calls[-1])
    fast = list(iter_incident_frames(path, chunk_size=128))
    assert calls and all(c is not None for c in calls)  # every block went through pyarrow
    monkeypatch.undo()
    _, slow = _read_both(path, monkeypatch, chunk_size=128)
    _assert_same(fast, slow)
