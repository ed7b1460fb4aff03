"""The Nezha fault-list importer on a tiny fixture: windows, truth, the 8-hour clock offset, bad entries."""

import json

import pandas as pd
import pytest

from diagnosis import DiagnosisError
from diagnosis.telemetry import NEZHA_FAULT_MODES, import_nezha

FAULTS = {
    "08": [
        # inject_timestamp 8 h behind inject_time (as in the Train Ticket labels), jittered by a minute
        {"inject_time": "2023-01-29 08:43:04", "inject_timestamp": "1674953044", "inject_pod": "ts-contacts-service-866bd68c97-xcqfx", "inject_type": "return"},
        {"inject_time": "2023-01-29 08:52:06", "inject_timestamp": "1674953526", "inject_pod": "ts-contacts-service-866bd68c97-xcqfx", "inject_type": "exception"},
    ],
    "09": [
        {"inject_time": "2023-01-29 09:03:53", "inject_timestamp": "1674953526", "inject_pod": "ts-basic-service-5dc8d4f9fd-46997", "inject_type": "network_delay"},
        {"inject_time": "2023-01-29 09:12:56", "inject_timestamp": "1674983576", "inject_pod": "ts-basic-service-5dc8d4f9fd-46997", "inject_type": "disk_fill"},
        {"inject_timestamp": "1674955299", "inject_pod": "ts-basic-service-5dc8d4f9fd-46997", "inject_type": "return"},
        {"inject_time": "not a time", "inject_pod": "ts-basic-service-5dc8d4f9fd-46997", "inject_type": "return"},
        "nonsense",
    ],
}  # fmt: skip


def test_import_nezha_fault_list(tmp_path):
    path = tmp_path / "fault_list.json"
    path.write_text(json.dumps(FAULTS))
    w, rep = import_nezha(path, duration="4min", baseline="8min")
    assert w["id"].tolist() == [
        "nezha-20230129-084304",
        "nezha-20230129-085206",
        "nezha-20230129-090353",
        "nezha-20230129-091256",
    ]
    assert w["component"].tolist() == ["ts-contacts-service"] * 2 + ["ts-basic-service"] * 2
    assert w["fault_mode"].tolist() == ["bad_deploy", "bad_deploy", "network_latency", None]  # disk_fill: no mapping
    assert w["fault_type"].tolist() == ["return", "exception", "network_delay", "disk_fill"]
    assert w.loc[0, "start"] == pd.Timestamp("2023-01-29T08:43:04Z")  # inject_time, read as UTC (the metrics' clock)
    assert w.loc[0, "end"] - w.loc[0, "start"] == pd.Timedelta("4min")
    assert w.loc[0, "start"] - w.loc[0, "baseline_start"] == pd.Timedelta("8min")
    assert (rep.faults, rep.windows, len(rep.rejects)) == (7, 4, 3)
    assert [r.location for r in rep.rejects] == ["['09'][2]", "['09'][4]", "['09'][3]"]
    assert dict(rep.clock_offsets) == {"+8h": 3, "+0h": 1}
    assert rep.clock_jitter == 2 and rep.repeated_timestamps == 1
    text = "\n".join(rep.lines())
    assert "3 at +8h" in text and "windows use inject_time" in text
    assert dict(rep.by_type) == {"disk_fill": 1, "exception": 1, "network_delay": 1, "return": 1}


def test_fault_modes_cover_every_nezha_type():
    assert set(NEZHA_FAULT_MODES) == {"cpu_contention", "cpu_consumed", "network_delay", "return", "exception"}


def test_import_errors(tmp_path):
    with pytest.raises(DiagnosisError, match="cannot read the fault list"):
        import_nezha(tmp_path / "none.json")
    (tmp_path / "a.json").write_text("[1, 2]")
    with pytest.raises(DiagnosisError, match="maps hours to lists of injections"):
        import_nezha(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("{")
    with pytest.raises(DiagnosisError, match="not valid JSON"):
        import_nezha(tmp_path / "b.json")
