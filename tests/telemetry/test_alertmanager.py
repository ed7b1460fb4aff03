"""Alertmanager webhook import: detection, dedup, mapping, grouping, rejects and round trip."""

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from diagnosis import IncidentLogError, Topology
from diagnosis.logs.formats import read_incidents, write_incidents
from diagnosis.telemetry.alertmanager import ImportSummary, import_alertmanager

DATA = Path(__file__).resolve().parents[1] / "data" / "alertmanager"
NOTIFICATIONS = DATA / "notifications.jsonl"  # 14 notifications of 8 alerts, 10:00-15:00 on 2024-05-01
MALFORMED = DATA / "malformed.jsonl"
ZERO = "0001-01-01T00:00:00Z"


def ts(text):
    return pd.Timestamp(text).tz_convert("UTC")


@pytest.fixture(scope="module")
def shop() -> Topology:
    return Topology.from_dict(
        {
            "name": "shop",
            "components": [{"name": "frontend", "calls": ["checkout"]}, {"name": "checkout"}],
            "alerts": [
                {"match": {"alertname": "HighLatency"}, "symptom": "{service}.latency"},
                {"match": {"alertname": "HighErrorRate"}, "symptom": "{service}.error_rate"},
                {"match_re": {"alertname": "KubePod(CrashLooping|NotReady)"}, "symptom": "{service}.health_check"},
            ],
        }
    )


@pytest.fixture(scope="module")
def imported(shop):
    return import_alertmanager(NOTIFICATIONS, shop)


def alert(
    name="HighLatency", service="checkout", starts="2024-05-01T10:00:00Z", ends=ZERO, status="firing", fingerprint=None
):
    a = {
        "status": status,
        "labels": {"alertname": name, "service": service},
        "annotations": {},
        "startsAt": starts,
        "endsAt": ends,
    }
    if fingerprint is not None:
        a["fingerprint"] = fingerprint
    return a


def payload(*alerts):
    return {
        "version": "4",
        "status": "firing",
        "receiver": "r",
        "groupLabels": {},
        "commonLabels": {},
        "alerts": list(alerts),
    }


def write_jsonl(path, payloads):
    path.write_text("".join(json.dumps(p) + "\n" for p in payloads))
    return path


def test_fixture_groups_into_two_incidents(imported):
    frame, _, _ = imported
    inc = frame.incidents
    assert inc["id"].tolist() == ["am-20240501T100012Z-1", "am-20240501T140130Z-1"]
    assert inc["opened"].tolist() == [ts("2024-05-01T10:00:12.345Z"), ts("2024-05-01T14:01:30Z")]
    assert (inc["topology"] == "shop").all()
    assert inc[["cause_component", "cause_fault_mode", "faults"]].isna().all().all()
    assert frame.actions.empty
    obs = frame.observations
    assert (obs["value"] == "fired").all()
    first = obs[obs["incident_id"] == "am-20240501T100012Z-1"]
    assert first["symptom"].tolist() == ["checkout.latency", "checkout.error_rate", "checkout.health_check"]
    assert first["time"].tolist() == [
        ts("2024-05-01T10:00:12.345Z"),
        ts("2024-05-01T10:03:20Z"),
        ts("2024-05-01T10:05:10Z"),
    ]
    # 14:01:30, 14:12:00, 14:25:00: each within 15 min of the previous one (single linkage), 23.5 min in all
    second = obs[obs["incident_id"] == "am-20240501T140130Z-1"]
    assert second["symptom"].tolist() == ["frontend.latency", "checkout.health_check", "frontend.error_rate"]
    assert frame.location["am-20240501T100012Z-1"] == "line 1, alerts[0]"


def test_resolved_only_when_every_alert_is_resolved(imported):
    inc = imported[0].incidents.set_index("id")
    assert inc.loc["am-20240501T100012Z-1", "resolved"] == ts("2024-05-01T10:40:10Z")  # latest endsAt of the three
    assert pd.isna(
        inc.loc["am-20240501T140130Z-1", "resolved"]
    )  # frontend.latency resolved, the other two still firing


def test_summary_counts_duplicates_and_unmatched(imported):
    _, rejects, summary = imported
    assert summary == ImportSummary(
        files=1, payloads=14, alerts=16, duplicates=8, mapped=6,
        unmatched={"HighLatency": 1, "NodeFilesystemAlmostFull": 1}, incidents=2, rejects=2,
    )  # fmt: skip
    assert summary.to_dict()["unmatched"] == {"HighLatency": 1, "NodeFilesystemAlmostFull": 1}
    by_loc = {r.location: r for r in rejects}
    assert set(by_loc) == {"line 4, alerts[1]", "line 5, alerts[0]"}
    pay = by_loc["line 4, alerts[1]"]
    assert pay.source == str(NOTIFICATIONS) and pay.field == "labels" and "'payments'" in pay.value
    assert "unknown symptom 'payments.latency'" in pay.reason and "alerts[0]" in pay.reason
    assert "no alert rule matches alertname 'NodeFilesystemAlmostFull'" in by_loc["line 5, alerts[0]"].reason


def test_json_array_and_single_payload_files_import_the_same(tmp_path, shop, imported):
    payloads = [json.loads(line) for line in NOTIFICATIONS.read_text().splitlines()]
    (tmp_path / "all.json").write_text(json.dumps(payloads, indent=2))
    frame, rejects, summary = import_alertmanager(tmp_path / "all.json", shop)
    pd.testing.assert_frame_equal(frame.incidents, imported[0].incidents)
    pd.testing.assert_frame_equal(frame.observations, imported[0].observations)
    assert {r.location for r in rejects} == {"payload[3], alerts[1]", "payload[4], alerts[0]"}
    singles = []
    for i, p in enumerate(payloads):
        singles.append(tmp_path / f"n{i:02d}.json")
        singles[-1].write_text(json.dumps(p, indent=2))
    frame, _, summary = import_alertmanager(singles, shop)
    pd.testing.assert_frame_equal(frame.incidents, imported[0].incidents)
    assert summary.files == 14 and summary.duplicates == 8
    assert frame.location["am-20240501T100012Z-1"] == f"{singles[0]}: payload, alerts[0]"


def test_dedup_keeps_earliest_start_and_refiring_is_a_new_alert(tmp_path, shop):
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            payload(
                alert(starts="2024-05-01T10:02:00Z", fingerprint="f1")
            ),  # the same alert restarted later (Prometheus restart)
            payload(alert(starts="2024-05-01T10:00:00Z", fingerprint="f1")),
            payload(
                alert(starts="2024-05-01T10:00:00Z", ends="2024-05-01T10:20:00Z", status="resolved", fingerprint="f1")
            ),
            payload(alert(starts="2024-05-01T18:00:00Z", fingerprint="f1")),  # fires again after its resolution
            payload(
                alert("HighErrorRate", starts="2024-05-01T10:01:00Z"),
                alert("HighErrorRate", starts="2024-05-01T10:01:00Z"),
            ),  # no fingerprint: labels
        ],
    )
    frame, rejects, summary = import_alertmanager(path, shop)
    assert rejects == [] and summary.duplicates == 3 and summary.mapped == 3
    assert frame.incidents["id"].tolist() == ["am-20240501T100000Z-1", "am-20240501T180000Z-1"]
    obs = frame.observations
    assert obs["time"].tolist() == [ts("2024-05-01T10:00:00Z"), ts("2024-05-01T10:01:00Z"), ts("2024-05-01T18:00:00Z")]
    # the error-rate alert was never resolved, the re-fired latency alert neither
    assert frame.incidents["resolved"].isna().all()


def test_window_splits_and_same_symptom_is_observed_once(tmp_path, shop):
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [payload(alert(starts="2024-05-01T10:00:00Z", fingerprint="a"), alert(starts="2024-05-01T10:04:00Z", fingerprint="b", service="checkout"),
                 alert(starts="2024-05-01T10:10:00Z", fingerprint="c", status="resolved", ends="2024-05-01T10:11:00Z"))],
    )  # fmt: skip
    frame, _, _ = import_alertmanager(path, shop, window="5min")
    assert frame.incidents["id"].tolist() == ["am-20240501T100000Z-1", "am-20240501T101000Z-1"]
    assert frame.incidents["resolved"].isna().tolist() == [True, False]
    assert frame.observations["time"].tolist() == [ts("2024-05-01T10:00:00Z"), ts("2024-05-01T10:10:00Z")]
    frame, _, _ = import_alertmanager(path, shop, window=pd.Timedelta("6min"), topology_name="shop-prod")
    assert len(frame) == 1 and frame.incidents["topology"].tolist() == ["shop-prod"]
    with pytest.raises(
        IncidentLogError, match=r"'window' parameter of import_alertmanager must be a duration >= 0.*Got '-5min'"
    ):
        import_alertmanager(path, shop, window="-5min")
    with pytest.raises(IncidentLogError, match=r"window.*Got 'soon'"):
        import_alertmanager(path, shop, window="soon")


def test_malformed_line_and_bad_starts_at_are_rejects(shop):
    frame, rejects, summary = import_alertmanager(MALFORMED, shop)
    assert [(r.location, r.field) for r in rejects] == [("line 2", "(line)"), ("line 4, alerts[1]", "startsAt")]
    assert rejects[0].source == str(MALFORMED) and "not valid JSON" in rejects[0].reason
    assert "Unterminated string starting at character" in rejects[0].reason  # not "at at"
    assert rejects[1].value == "'yesterday 10:04'" and "RFC 3339" in rejects[1].reason
    assert summary.payloads == 2 and summary.alerts == 3 and summary.rejects == 2
    assert frame.observations["symptom"].tolist() == ["checkout.latency", "checkout.error_rate"]


@pytest.mark.parametrize(
    ("bad_alert", "field", "reason"),
    [
        ({**alert(), "status": "pending"}, "status", "must be one of ['firing', 'resolved']"),
        ({**alert(), "labels": {"alertname": "HighLatency", "service": 3}}, "labels.service", "must be a string"),
        ({**alert(), "startsAt": ZERO}, "startsAt", "zero time"),
        (alert(starts="2024-05-01T10:00:00", fingerprint="x"), "startsAt", "RFC 3339"),
        (alert(ends="2024-05-01T09:00:00Z", status="resolved"), "endsAt", "is before startsAt"),
        ("HighLatency", "(alert)", "must be an alert object"),
    ],
)
def test_bad_alert_fields(tmp_path, shop, bad_alert, field, reason):
    path = write_jsonl(tmp_path / "a.jsonl", [payload(bad_alert, alert("HighErrorRate"))])
    frame, rejects, _ = import_alertmanager(path, shop)
    assert [(r.location, r.field) for r in rejects] == [("line 1, alerts[0]", field)]
    assert reason in rejects[0].reason
    assert frame.observations["symptom"].tolist() == ["checkout.error_rate"]


def test_bad_payloads_are_rejects(tmp_path, shop):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([payload(alert()), {"status": "firing"}, [1], {"alerts": {}}]))
    frame, rejects, summary = import_alertmanager(path, shop)
    assert [(r.location, r.field) for r in rejects] == [
        ("payload[1]", "alerts"),
        ("payload[2]", "(payload)"),
        ("payload[3]", "alerts"),
    ]
    assert len(frame) == 1 and summary.payloads == 1


def test_unreadable_file_raises_with_its_name(tmp_path, shop):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(IncidentLogError, match=r"nope\.jsonl: file not found"):
        import_alertmanager([NOTIFICATIONS, missing], shop)
    with pytest.raises(IncidentLogError, match=rf"{tmp_path.name}: cannot read"):
        import_alertmanager(tmp_path, shop)
    garbage = tmp_path / "dump.json"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    with pytest.raises(IncidentLogError, match=r"dump\.json: not a webhook payload"):
        import_alertmanager(garbage, shop)
    scalar = tmp_path / "n.json"
    scalar.write_text("42")
    with pytest.raises(IncidentLogError, match=r"n\.json: expected a webhook payload object"):
        import_alertmanager(scalar, shop)
    with pytest.raises(IncidentLogError, match="paths is empty"):
        import_alertmanager([], shop)


def test_gzip_and_empty_files(tmp_path, shop):
    gz = tmp_path / "a.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(NOTIFICATIONS.read_text())
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    frame, _, summary = import_alertmanager([gz, empty], shop)
    assert len(frame) == 2 and summary.files == 2 and summary.payloads == 14


def test_no_alert_rules_counts_everything_unmatched(tmp_path):
    topo = Topology.from_dict({"name": "bare", "components": [{"name": "checkout"}]})
    frame, rejects, summary = import_alertmanager(NOTIFICATIONS, topo)
    assert len(frame) == 0 and summary.mapped == 0 and sum(summary.unmatched.values()) == 8
    assert "no alert rules" in rejects[0].reason


def test_written_jsonl_round_trips(tmp_path, imported):
    frame = imported[0]
    path = write_incidents(frame, tmp_path / "incidents.jsonl")
    back, rejects = read_incidents(path)
    assert rejects == []
    pd.testing.assert_frame_equal(back.incidents, frame.incidents)
    pd.testing.assert_frame_equal(back.observations, frame.observations)
    pd.testing.assert_frame_equal(back.actions, frame.actions)
