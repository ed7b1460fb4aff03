"""diagnosis serve over real HTTP on 127.0.0.1: auth, validation, idempotence, equality with diagnose, the log."""

from __future__ import annotations

import json
import os
import signal
import sqlite3

import httpx
import pytest
from conftest import TOKEN, TOPOLOGY, alert, auth, notification, process_server, thread_server

from diagnosis import Topology, diagnose, explain
from diagnosis.logs.formats import read_incidents
from diagnosis.postmortem.planning import rank_checks
from diagnosis.serve import Service, create_app

T0 = "2026-03-01T10:00:00Z"
CRASH = [
    alert("HighErrorRate", "frontend", "2026-03-01T10:00:00Z"),
    alert("HighErrorRate", "checkoutservice", "2026-03-01T10:01:30Z"),
    alert("KubePodCrashLooping", "checkoutservice", "2026-03-01T10:03:00Z", pod="checkoutservice-7d9f-x2k4q"),
]
SYMPTOMS = ["frontend.error_rate", "checkoutservice.error_rate", "checkoutservice.health_check"]


@pytest.fixture
def served(tmp_path, boutique):
    service = Service(boutique, tmp_path / "state.sqlite", tmp_path / "incidents.jsonl", quiet=3600)
    with thread_server(create_app(service, token=TOKEN, max_body=64 * 1024)) as url:
        with httpx.Client(base_url=url, headers=auth(), timeout=60) as client:
            yield service, client, url
    service.close_store()


def only_incident(client) -> str:
    items = client.get("/api/v1/incidents").json()["incidents"]
    assert len(items) == 1
    return items[0]["id"]


def test_every_endpoint_but_healthz_needs_the_token(served):
    service, client, url = served
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
    for method, path, body in [
        ("GET", "/api/v1/incidents", None),
        ("GET", "/metrics", None),
        ("GET", "/api/v1/incidents/x", None),
        ("GET", "/incidents/x", None),
        ("POST", "/api/v1/alertmanager", notification(CRASH[0])),
        ("POST", "/api/v1/observations", {"observations": [{"symptom": "frontend.latency", "value": "fired"}]}),
    ]:
        for headers in ({}, auth("wrong-token"), {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
            r = httpx.request(method, url + path, json=body, headers=headers)
            assert r.status_code == 401, (path, headers)
            assert r.headers["www-authenticate"].startswith("Bearer")
    assert service.counts()["notifications"] == 0 and service.counts()["findings"] == 0
    assert client.get("/api/v1/incidents").json() == {"incidents": []}


def test_malformed_payloads_get_422_naming_the_field(served):
    service, client, _ = served

    def loc_of(body, path="/api/v1/alertmanager"):
        r = client.post(path, json=body)
        assert r.status_code == 422, r.text
        return [tuple(d["loc"]) for d in r.json()["detail"]], r.json()["detail"]

    good = notification(CRASH[0])
    locs, _ = loc_of({k: v for k, v in good.items() if k != "groupKey"})
    assert ("body", "groupKey") in locs
    locs, detail = loc_of({**good, "version": "3"})
    assert ("body", "version") in locs and detail[0]["input"] == "3"
    locs, _ = loc_of({**good, "alerts": [{**CRASH[0], "status": "burning"}]})
    assert ("body", "alerts", 0, "status") in locs
    locs, _ = loc_of({**good, "alerts": [{**CRASH[0], "labels": {"alertname": 5}}]})
    assert ("body", "alerts", 0, "labels", "alertname") in locs
    locs, detail = loc_of({**good, "alerts": [CRASH[1], {**CRASH[0], "startsAt": "yesterday"}]})
    assert locs == [("body", "alerts", 1, "startsAt")] and "RFC 3339" in detail[0]["msg"]
    assert "yesterday" in detail[0]["input"]
    locs, _ = loc_of({**good, "alerts": [{**CRASH[0], "endsAt": "2026-03-01T09:00:00Z"}]})
    assert locs == [("body", "alerts", 0, "endsAt")]
    locs, _ = loc_of({"observations": [{"symptom": "frontend.latncy", "value": "fired"}]}, "/api/v1/observations")
    assert locs == [("body", "observations", 0, "symptom")]
    locs, _ = loc_of({"observations": [{"symptom": "frontend.latency", "value": "soft"}]}, "/api/v1/observations")
    assert locs == [("body", "observations", 0)]
    r = client.post("/api/v1/alertmanager", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    big = {**good, "commonAnnotations": {"x": "y" * 70_000}}
    assert client.post("/api/v1/alertmanager", json=big).status_code == 413
    # nothing malformed reached the state
    assert service.counts()["notifications"] == 0 and service.counts()["alerts"] == 0
    # an action or a root cause the topology does not have
    assert client.post("/api/v1/alertmanager", json=notification(CRASH[0])).status_code == 200
    iid = only_incident(client)
    r = client.post(
        f"/api/v1/incidents/{iid}/actions", json={"action": "reboot", "target": "frontend", "outcome": "failure"}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "action"]
    r = client.post(
        f"/api/v1/incidents/{iid}/actions", json={"action": "restart", "target": "frontnd", "outcome": "failure"}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "target"]
    r = client.post(
        f"/api/v1/incidents/{iid}/actions", json={"action": "restart", "target": "frontend", "outcome": "ok"}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "outcome"]
    r = client.post(f"/api/v1/incidents/{iid}/close", json={"root_cause": {"component": "frontend", "fault_mode": "x"}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "root_cause", "fault_mode"]
    assert client.get("/api/v1/incidents/nope").status_code == 404


def test_duplicates_change_nothing(served):
    service, client, _ = served
    first = client.post("/api/v1/alertmanager", json=notification(*CRASH[:2]))
    assert first.json()["accepted"] == 2
    iid = only_incident(client)
    before = client.get(f"/api/v1/incidents/{iid}").json()
    counts = service.counts()
    for _ in range(3):  # Alertmanager retries and repeats
        again = client.post("/api/v1/alertmanager", json=notification(*CRASH[:2]))
        assert again.status_code == 200 and again.json()["accepted"] == 0 and again.json()["duplicates"] == 2
    assert service.counts() == counts
    after = client.get(f"/api/v1/incidents/{iid}").json()
    assert after["posterior"] == before["posterior"] and after["alerts"] == before["alerts"]
    # the resolved notification of the same alert is news, not a duplicate
    resolved = {**CRASH[0], "status": "resolved", "endsAt": "2026-03-01T10:20:00Z"}
    r = client.post("/api/v1/alertmanager", json=notification(resolved))
    assert r.json()["accepted"] == 1 and r.json()["incidents"] == [iid]
    view = client.get(f"/api/v1/incidents/{iid}").json()
    assert view["posterior"] == before["posterior"]  # a resolved alert did fire: the evidence stays
    assert [a["status"] for a in view["alerts"]].count("resolved") == 1


def test_diagnosis_after_each_notification_equals_diagnose(served, boutique):
    _, client, _ = served
    for k, a in enumerate(CRASH, start=1):
        assert client.post("/api/v1/alertmanager", json=notification(a)).status_code == 200
        iid = only_incident(client)  # all three start within the window: one incident
        view = client.get(f"/api/v1/incidents/{iid}").json()
        evidence = dict.fromkeys(SYMPTOMS[:k], "fired")
        expected = diagnose(boutique, evidence)
        for comp, post in expected.posteriors.items():
            for state, p in post.items():
                assert view["posterior"][comp][state] == pytest.approx(p, abs=1e-12)
        assert [(x["component"], x["fault_mode"]) for x in view["locations"][:5]] == [
            (x.component, x.fault_mode) for x in expected.locations[:5]
        ]
        rec = expected.recommended
        assert (view["recommended_action"]["action"], view["recommended_action"]["target"]) == (rec.action, rec.target)
        assert view["recommended_action"]["expected_success"] == pytest.approx(rec.expected_success, abs=1e-12)
        assert view["next_check"]["symptom"] == rank_checks(boutique, evidence)[0].symptom
        assert [e["finding"] for e in view["timeline"]] == ["opened", *SYMPTOMS[:k]]
        assert len(view["belief_history"]) == k
    # a person's failed action is evidence exactly as explain --tried
    r = client.post(
        f"/api/v1/incidents/{iid}/actions",
        json={"action": "restart", "target": "checkoutservice", "outcome": "failure"},
    )
    assert r.status_code == 200
    view = r.json()
    tried = explain(boutique, dict.fromkeys(SYMPTOMS, "fired"), actions=[("restart", "checkoutservice", "failure")])
    for comp, post in tried.diagnosis.posteriors.items():
        for state, p in post.items():
            assert view["posterior"][comp][state] == pytest.approx(p, abs=1e-12)
    assert (
        view["recommended_action"]["action"] != "restart" or view["recommended_action"]["target"] != "checkoutservice"
    )
    assert view["timeline"][-1]["kind"] == "action"


def test_alerts_far_apart_open_separate_incidents_and_unmatched_are_counted(served):
    service, client, _ = served
    client.post("/api/v1/alertmanager", json=notification(CRASH[0]))
    later = alert("HighLatency", "cartservice", "2026-03-01T12:00:00Z")
    r = client.post("/api/v1/alertmanager", json=notification(later, alert("DiskFull", "nowhere", T0)))
    assert r.json()["accepted"] == 2 and r.json()["unmatched"][0]["alertname"] == "DiskFull"
    assert len(client.get("/api/v1/incidents").json()["incidents"]) == 2
    text = client.get("/metrics").text
    assert "diagnosis_alerts_received_total 3.0" in text and "diagnosis_alerts_rejected_total 1.0" in text
    assert "diagnosis_incidents_open 2.0" in text and "diagnosis_update_seconds_count" in text


def test_close_appends_the_incident_to_the_log_once(served, tmp_path, boutique):
    service, client, _ = served
    client.post("/api/v1/alertmanager", json=notification(*CRASH))
    iid = only_incident(client)
    client.post(
        f"/api/v1/incidents/{iid}/actions",
        json={"action": "restart", "target": "checkoutservice", "outcome": "success"},
    )
    r = client.post(
        f"/api/v1/incidents/{iid}/close", json={"root_cause": {"component": "checkoutservice", "fault_mode": "crash"}}
    )
    assert r.status_code == 200 and r.json()["status"] == "closed" and r.json()["logged"]
    assert client.post(f"/api/v1/incidents/{iid}/close", json={}).status_code == 409
    assert client.post("/api/v1/observations", json={"incident": iid, "observations": [
        {"symptom": "frontend.latency", "value": "passed"}]}).status_code == 409  # fmt: skip
    log = tmp_path / "incidents.jsonl"
    frame, rejects = read_incidents(log)
    assert rejects == [] and list(frame.incidents["id"]) == [iid]
    inc = next(frame.records())
    assert (inc.cause_component, inc.cause_fault_mode) == ("checkoutservice", "crash")
    assert sorted(o.symptom for o in inc.observations) == sorted(SYMPTOMS)
    assert [(a.action, a.target, a.outcome) for a in inc.actions] == [("restart", "checkoutservice", "success")]
    assert json.loads(log.read_text())["actions"][0]["by"] == "person"
    # a crash after the append but before the state marked it: the restart does not append it twice
    with sqlite3.connect(tmp_path / "state.sqlite") as db:
        db.execute("UPDATE incidents SET logged = 0")
    service.close_store()  # one server per state file
    again = Service(boutique, tmp_path / "state.sqlite", log, quiet=3600)
    assert again.incident(iid)["logged"] and len(log.read_text().splitlines()) == 1
    again.close_store()


def test_quiet_period_closes_a_resolved_incident(tmp_path, boutique):
    service = Service(boutique, tmp_path / "s.sqlite", tmp_path / "log.jsonl", quiet=0.2)
    with thread_server(create_app(service, token=TOKEN, tick_seconds=0.05)) as url:
        with httpx.Client(base_url=url, headers=auth(), timeout=60) as client:
            client.post("/api/v1/alertmanager", json=notification(CRASH[0]))
            iid = only_incident(client)
            import time

            time.sleep(0.5)
            assert client.get(f"/api/v1/incidents/{iid}").json()["status"] == "open"  # still firing
            resolved = {**CRASH[0], "status": "resolved", "endsAt": "2026-03-01T10:30:00Z"}
            client.post("/api/v1/alertmanager", json=notification(resolved))
            for _ in range(100):
                view = client.get(f"/api/v1/incidents/{iid}").json()
                if view["logged"]:  # closed, then appended to the log
                    break
                time.sleep(0.05)
            assert view["status"] == "closed" and view["closed_by"] == "quiet" and view["logged"]
            assert view["resolved"] == "2026-03-01T10:30:00.000Z"
    service.close_store()
    frame, rejects = read_incidents(tmp_path / "log.jsonl")
    assert rejects == [] and list(frame.incidents["id"]) == [iid]


def test_html_page_escapes_everything(tmp_path):
    topo = Topology.from_dict({
        "name": "shop", "components": [{"name": "frontend", "calls": ["checkout"]}, {"name": "checkout"}],
        "alerts": [{"match_re": {"alertname": ".+"}, "symptom": "{service}.latency"}],
    })  # fmt: skip
    service = Service(topo, tmp_path / "s.sqlite", tmp_path / "log.jsonl")
    evil = "<script>alert(1)</script>"
    with thread_server(create_app(service, token=TOKEN)) as url:
        with httpx.Client(base_url=url, headers=auth(), timeout=60) as client:
            client.post("/api/v1/alertmanager", json=notification(alert(evil, "checkout", T0)))
            iid = only_incident(client)
            page = client.get(f"/incidents/{iid}")
    service.close_store()
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert evil not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "Why the model believes it" in page.text and "Recommended action" in page.text


def test_restart_after_kill_9_loses_nothing(tmp_path):
    state, log = tmp_path / "state.sqlite", tmp_path / "incidents.jsonl"
    args = ("--topology", str(TOPOLOGY), "--state", str(state), "--log", str(log))
    with process_server(*args) as (proc, url):
        with httpx.Client(base_url=url, headers=auth(), timeout=60) as client:
            for a in CRASH:
                assert client.post("/api/v1/alertmanager", json=notification(a)).status_code == 200
            iid = only_incident(client)
            client.post(
                f"/api/v1/incidents/{iid}/actions",
                json={"action": "restart", "target": "checkoutservice", "outcome": "failure"},
            )
            before = client.get(f"/api/v1/incidents/{iid}").json()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with process_server(*args) as (proc, url):
        with httpx.Client(base_url=url, headers=auth(), timeout=60) as client:
            after = client.get(f"/api/v1/incidents/{iid}").json()
            for key in (
                "status",
                "alerts",
                "observations",
                "actions_taken",
                "posterior",
                "recommended_action",
                "next_check",
            ):
                assert after[key] == before[key], key
            r = client.post("/api/v1/alertmanager", json=notification(*CRASH))
            assert r.json() == {"accepted": 0, "duplicates": 3, "unmatched": [], "incidents": []}
            client.post(f"/api/v1/incidents/{iid}/close", json={"root_cause": {"component": "checkoutservice"}})
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with process_server(*args) as (proc, url):
        with httpx.Client(base_url=url, headers=auth(), timeout=60) as client:
            assert client.get(f"/api/v1/incidents/{iid}").json()["status"] == "closed"
    assert [json.loads(x)["id"] for x in log.read_text().splitlines()] == [iid]


def test_cli_refuses_a_public_address_without_a_token(tmp_path, capsys):
    from diagnosis.cli import main

    env = {k: v for k, v in os.environ.items() if k != "DIAGNOSIS_SERVE_TOKEN"}
    args = ["serve", "--topology", str(TOPOLOGY), "--state", str(tmp_path / "s"), "--log", str(tmp_path / "l.jsonl")]
    old = os.environ.pop("DIAGNOSIS_SERVE_TOKEN", None)
    try:
        assert main([*args, "--host", "0.0.0.0"]) == 1
        assert "refusing to listen on '0.0.0.0' without a token" in capsys.readouterr().err
        empty = tmp_path / "token"
        empty.write_text("\n")
        assert main([*args, "--host", "0.0.0.0", "--token-file", str(empty)]) == 1
        assert "is empty" in capsys.readouterr().err
    finally:
        if old is not None:
            os.environ["DIAGNOSIS_SERVE_TOKEN"] = old
    assert env is not None


def test_observations_of_checks_that_are_not_alerts(served, boutique):
    _, client, _ = served
    client.post("/api/v1/alertmanager", json=notification(*CRASH[:2]))
    iid = only_incident(client)
    checks = [
        {"symptom": "checkoutservice.health_check", "value": "passed"},
        {"symptom": "checkoutservice.latency", "value": "soft", "p_fired": 0.7, "p_passed": 0.2},
        {"symptom": "frontend.error_rate", "value": "passed"},  # a later check overrides the alert's 'fired'
    ]
    r = client.post("/api/v1/observations", json={"observations": checks})  # the open incident
    assert r.status_code == 200 and r.json() == {"incident": iid, "accepted": 3}
    view = client.get(f"/api/v1/incidents/{iid}").json()
    expected = diagnose(boutique, {
        "checkoutservice.error_rate": "fired", "checkoutservice.health_check": "passed",
        "checkoutservice.latency": {"fired": 0.7, "passed": 0.2}, "frontend.error_rate": "passed",
    })  # fmt: skip
    for comp, post in expected.posteriors.items():
        for state, p in post.items():
            assert view["posterior"][comp][state] == pytest.approx(p, abs=1e-12)
    assert {o["symptom"]: o["value"] for o in view["observations"]}["frontend.error_rate"] == "passed"
    assert view["next_check"]["symptom"] not in {o["symptom"] for o in view["observations"]}


def test_next_check_can_be_left_out(tmp_path, boutique):
    service = Service(boutique, tmp_path / "s.sqlite", tmp_path / "log.jsonl", checks=False)
    with thread_server(create_app(service, token=TOKEN)) as url:
        with httpx.Client(base_url=url, headers=auth(), timeout=60) as client:
            client.post("/api/v1/alertmanager", json=notification(CRASH[0]))
            iid = only_incident(client)
            v = client.get(f"/api/v1/incidents/{iid}").json()
    service.close_store()
    assert v["next_check"] is None and v["next_check_computed"] is False and v["locations"]


def test_next_check_is_computed_on_read_unless_asked_not_to(served):
    _, client, _ = served
    client.post("/api/v1/alertmanager", json=notification(CRASH[0]))
    iid = only_incident(client)
    skipped = client.get(f"/api/v1/incidents/{iid}", params={"checks": "false"}).json()
    assert skipped["next_check"] is None and not skipped["next_check_computed"]
    full = client.get(f"/api/v1/incidents/{iid}").json()
    assert full["next_check_computed"] and full["next_check"]["symptom"]


def test_an_alert_firing_again_keeps_the_first_time_of_its_symptom(served):
    _, client, _ = served
    client.post("/api/v1/alertmanager", json=notification(CRASH[0]))
    again = {**CRASH[0], "startsAt": "2026-03-01T10:05:00Z"}  # the same alert fired again later (new startsAt)
    r = client.post("/api/v1/alertmanager", json=notification(again))
    assert r.json()["accepted"] == 1
    view = client.get(f"/api/v1/incidents/{only_incident(client)}").json()
    assert view["observations"] == [
        {"symptom": "frontend.error_rate", "value": "fired", "time": "2026-03-01T10:00:00.000Z"}
    ]
    assert len(view["alerts"]) == 2 and len(view["timeline"]) == 2


def test_concurrent_redeliveries_are_stored_once(served):
    from concurrent.futures import ThreadPoolExecutor

    service, _, url = served
    notes = [notification(alert("HighLatency", s, f"2026-03-01T10:0{i}:00Z")) for i, s in enumerate(
        ["frontend", "cartservice", "checkoutservice", "currencyservice", "adservice", "redis-cart"])]  # fmt: skip

    def deliver(k):
        with httpx.Client(base_url=url, headers=auth(), timeout=60) as c:
            return [c.post("/api/v1/alertmanager", json=n).json() for n in (notes if k % 2 else notes[::-1])]

    with ThreadPoolExecutor(4) as pool:
        answers = [a for batch in pool.map(deliver, range(4)) for a in batch]
    assert sum(a["accepted"] for a in answers) == 6 and sum(a["duplicates"] for a in answers) == 18
    counts = service.counts()
    assert counts["alerts"] == 6 and counts["notifications"] == 6 and counts["findings"] == 6
    assert len(service.incidents()) == 1


@pytest.mark.parametrize(
    "kwargs, name",
    [({"quiet": -1}, "quiet"), ({"quiet": float("inf")}, "quiet"), ({"window": "soon"}, "window"),
     ({"window": "-5min"}, "window"), ({"policy": "yes"}, "policy"), ({"checks": 1}, "checks")],
)  # fmt: skip
def test_bad_service_arguments_are_parameter_errors(tmp_path, boutique, kwargs, name):
    from diagnosis.exceptions import ParameterError

    with pytest.raises(ParameterError, match=f"The '{name}' parameter of Service must be"):
        Service(boutique, tmp_path / "s.sqlite", tmp_path / "l.jsonl", **kwargs)


def test_bad_policy_arguments_are_parameter_errors():
    from diagnosis.exceptions import ParameterError
    from diagnosis.serve import Policy

    for kwargs in ({"min_success": 1.5}, {"budget": -1}, {"rate_limit": 0}, {"rate_window": -1.0}):
        with pytest.raises(ParameterError, match=f"The '{next(iter(kwargs))}' parameter of Policy must be"):
            Policy(**kwargs)


def test_one_server_per_state_file(tmp_path, boutique):
    from diagnosis import DiagnosisError, Topology

    first = Service(boutique, tmp_path / "s.sqlite", tmp_path / "l.jsonl")
    with pytest.raises(DiagnosisError, match="in use by another diagnosis serve"):
        Service(boutique, tmp_path / "s.sqlite", tmp_path / "l.jsonl")
    first.close_store()
    other = Topology.from_dict({"name": "other", "components": [{"name": "a"}]})
    with pytest.raises(DiagnosisError, match="belongs to topology 'online-boutique'"):
        Service(other, tmp_path / "s.sqlite", tmp_path / "l.jsonl")
    Service(boutique, tmp_path / "s.sqlite", tmp_path / "l.jsonl").close_store()  # the refusals left no lock behind
