"""Recovery hooks under the policy: never without --execute, threshold, approval, outcome as evidence, in the log."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from conftest import TOKEN, alert, auth, notification, thread_server

from diagnosis import Topology, explain
from diagnosis.logs.formats import read_incidents
from diagnosis.serve import Policy, Service, create_app

CRASH = [
    alert("HighErrorRate", "frontend", "2026-03-01T10:00:00Z"),
    alert("HighErrorRate", "checkoutservice", "2026-03-01T10:01:30Z"),
    alert("KubePodCrashLooping", "checkoutservice", "2026-03-01T10:03:00Z"),
]
SYMPTOMS = ["frontend.error_rate", "checkoutservice.error_rate", "checkoutservice.health_check"]


def with_hooks(topology: Topology, hooks: dict) -> Topology:
    """``topology`` with ``hooks[(action, target)]`` set (None removes every other hook)."""
    spec = topology.to_dict()
    for comp in spec["components"]:
        for name, action in comp["actions"].items():
            action.pop("hook", None)
            if (name, comp["name"]) in hooks:
                action["hook"] = hooks[(name, comp["name"])]
    return Topology.from_dict(spec)


def recorder(tmp_path, name: str, exit_code: int) -> list[str]:
    """A hook command that writes its environment to ``name``.json and exits with ``exit_code``."""
    out = tmp_path / f"{name}.json"
    code = (
        "import json, os, sys; "
        f"json.dump({{k: v for k, v in os.environ.items() if k.startswith('DIAGNOSIS_') or k == 'PATH'}}, open({str(out)!r}, 'w')); "
        f"print('ran {name}'); sys.exit({exit_code})"
    )
    return [sys.executable, "-c", code]


def run(tmp_path, topology, policy, steps):
    service = Service(topology, tmp_path / "s.sqlite", tmp_path / "log.jsonl", policy=policy, quiet=3600)
    with thread_server(create_app(service, token=TOKEN)) as url:
        with httpx.Client(base_url=url, headers=auth(), timeout=60) as client:
            for a in CRASH:
                assert client.post("/api/v1/alertmanager", json=notification(a)).status_code == 200
            service.wait_hooks()
            iid = client.get("/api/v1/incidents").json()["incidents"][0]["id"]
            result = steps(service, client, iid)
    service.close_store()
    return result


def view(client, iid):
    return client.get(f"/api/v1/incidents/{iid}").json()


def test_hooks_never_run_without_execute(tmp_path, boutique):
    topo = with_hooks(boutique, {("restart", "checkoutservice"): recorder(tmp_path, "restart", 0)})
    v = run(tmp_path, topo, Policy(min_success=0.0), lambda s, c, iid: view(c, iid))
    assert v["recommended_action"]["action"] == "restart" and v["recommended_action"]["hook"] == "argv"
    assert v["hooks"] == [] and "hooks off" in v["policy_decision"]
    assert not (tmp_path / "restart.json").exists()


@pytest.mark.parametrize(
    "policy, hooked, why",
    [
        (Policy(execute=True, min_success=0.99), True, "below 0.99"),
        (Policy(execute=True, min_success=0.5, budget=0.5), True, "over the budget"),
        (Policy(execute=True, min_success=0.0), False, "no hook; a person acts"),
    ],
)
def test_threshold_budget_and_missing_hook_keep_hooks_from_running(tmp_path, boutique, policy, hooked, why):
    hooks = {("restart", "checkoutservice"): recorder(tmp_path, "restart", 0)} if hooked else {}
    v = run(tmp_path, with_hooks(boutique, hooks), policy, lambda s, c, iid: view(c, iid))
    assert v["hooks"] == [] and why in v["policy_decision"]
    assert not (tmp_path / "restart.json").exists()


def test_a_failing_hook_is_evidence_and_changes_the_recommendation(tmp_path, boutique):
    topo = with_hooks(
        boutique,
        {
            ("restart", "checkoutservice"): {"argv": recorder(tmp_path, "restart", 3), "timeout": 20},
            ("rollback", "checkoutservice"): recorder(tmp_path, "rollback", 0),
        },
    )

    def steps(service, client, iid):
        v = view(client, iid)
        return v, client.post(f"/api/v1/incidents/{iid}/close", json={}).json()

    v, closed = run(tmp_path, topo, Policy(execute=True, min_success=0.5, rate_limit=1), steps)
    # the restart hook ran once, with the incident, target and action in its environment, and failed
    env = json.loads((tmp_path / "restart.json").read_text())
    assert env["DIAGNOSIS_INCIDENT"] == v["id"] and env["DIAGNOSIS_TARGET"] == "checkoutservice"
    assert env["DIAGNOSIS_ACTION"] == "restart" and float(env["DIAGNOSIS_EXPECTED_SUCCESS"]) > 0.5
    assert "DIAGNOSIS_SERVE_TOKEN" not in env
    [hook] = v["hooks"]
    assert (hook["action"], hook["state"], hook["outcome"]) == ("restart", "done", "failure")
    assert hook["detail"]["exit_code"] == 3 and "ran restart" in hook["detail"]["output"]
    # its outcome is evidence, exactly as explain --tried
    expected = explain(boutique, dict.fromkeys(SYMPTOMS, "fired"), actions=[("restart", "checkoutservice", "failure")])
    for comp, post in expected.diagnosis.posteriors.items():
        for state, p in post.items():
            assert v["posterior"][comp][state] == pytest.approx(p, abs=1e-12)
    assert (v["recommended_action"]["action"], v["recommended_action"]["target"]) != ("restart", "checkoutservice")
    assert [(a["action"], a["outcome"], a["by"]) for a in v["actions_taken"]] == [("restart", "failure", "hook")]
    # rollback on the same target waits for the per-target rate limit (1 run per 300 s)
    assert not (tmp_path / "rollback.json").exists()
    # everything the hook did is in the incident log
    record = json.loads((tmp_path / "log.jsonl").read_text())
    [action] = record["actions"]
    assert action["by"] == "hook" and action["hook"]["exit_code"] == 3 and action["hook"]["argv"][0] == sys.executable
    frame, rejects = read_incidents(tmp_path / "log.jsonl")
    assert rejects == [] and [(a.action, a.outcome) for a in next(frame.records()).actions] == [("restart", "failure")]
    assert closed["status"] == "closed"


def test_approval_mode_waits_for_the_approve_endpoint(tmp_path, boutique):
    topo = with_hooks(boutique, {("restart", "checkoutservice"): recorder(tmp_path, "restart", 0)})

    def steps(service, client, iid):
        pending = view(client, iid)
        time.sleep(0.2)
        assert not (tmp_path / "restart.json").exists()
        wrong = client.post(f"/api/v1/incidents/{iid}/actions/rollback/approve")
        approved = client.post(f"/api/v1/incidents/{iid}/actions/restart/approve")
        service.wait_hooks()
        return pending, wrong, approved, view(client, iid)

    pending, wrong, approved, done = run(tmp_path, topo, Policy(execute=True, approval=True), steps)
    assert [h["state"] for h in pending["hooks"]] == ["pending_approval"]
    assert "waiting for approval" in pending["policy_decision"]
    assert wrong.status_code == 404 and approved.status_code == 200
    assert (tmp_path / "restart.json").exists()
    assert [(h["state"], h["outcome"]) for h in done["hooks"]] == [("done", "success")]
    assert [(a["action"], a["outcome"]) for a in done["actions_taken"]] == [("restart", "success")]
    assert "already succeeded" in done["policy_decision"]  # no more hooks after a success


class _Hook(BaseHTTPRequestHandler):
    received: list = []
    status = 200

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status, outcome", [(200, "success"), (503, "failure")])
def test_http_webhook_hook(tmp_path, boutique, status, outcome):
    _Hook.received, _Hook.status = [], status
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/restart"
        topo = with_hooks(boutique, {("restart", "checkoutservice"): {"url": url, "timeout": 5}})
        v = run(tmp_path, topo, Policy(execute=True), lambda s, c, iid: view(c, iid))
    finally:
        server.shutdown()
        server.server_close()
    [body] = _Hook.received
    assert body["incident"] == v["id"] and (body["action"], body["target"]) == ("restart", "checkoutservice")
    [hook] = v["hooks"]
    assert hook["outcome"] == outcome and hook["detail"]["http_status"] == status and hook["detail"]["url"] == url


def test_a_hook_that_times_out_is_unknown_and_adds_no_evidence(tmp_path, boutique):
    slow = [sys.executable, "-c", "import time; time.sleep(30)"]
    topo = with_hooks(boutique, {("restart", "checkoutservice"): {"argv": slow, "timeout": 0.5}})
    v = run(tmp_path, topo, Policy(execute=True), lambda s, c, iid: view(c, iid))
    [hook] = v["hooks"]
    assert hook["outcome"] == "unknown" and "timed out" in hook["detail"]["error"]
    expected = explain(boutique, dict.fromkeys(SYMPTOMS, "fired"))
    assert v["posterior"]["checkoutservice"]["crash"] == pytest.approx(
        expected.diagnosis.posteriors["checkoutservice"]["crash"], abs=1e-12
    )


@pytest.mark.parametrize("rate_limit", [1, 2])
def test_per_target_rate_limit(tmp_path, boutique, rate_limit):
    topo = with_hooks(
        boutique,
        {
            ("restart", "checkoutservice"): recorder(tmp_path, "restart", 1),
            ("rollback", "checkoutservice"): recorder(tmp_path, "rollback", 0),
        },
    )

    def steps(service, client, iid):
        service.wait_hooks()
        return view(client, iid)

    v = run(tmp_path, topo, Policy(execute=True, min_success=0.2, rate_limit=rate_limit), steps)
    # after the failed restart, rollback checkoutservice is recommended with P(success) ~0.21 >= 0.2
    if rate_limit == 1:
        assert (v["recommended_action"]["action"], v["recommended_action"]["target"]) == ("rollback", "checkoutservice")
        assert "rate limit (1 per 300 s on checkoutservice)" in v["policy_decision"]
        assert [h["action"] for h in v["hooks"]] == ["restart"] and not (tmp_path / "rollback.json").exists()
    else:
        assert [(h["action"], h["outcome"]) for h in v["hooks"]] == [("restart", "failure"), ("rollback", "success")]


def test_one_hook_per_target_at_a_time(tmp_path, boutique):
    slow = [sys.executable, "-c", "import time; time.sleep(1.5)"]
    topo = with_hooks(boutique, {("restart", "checkoutservice"): slow})
    service = Service(topo, tmp_path / "s.sqlite", tmp_path / "log.jsonl", policy=Policy(execute=True, rate_limit=5))
    with thread_server(create_app(service, token=TOKEN)) as url:
        with httpx.Client(base_url=url, headers=auth(), timeout=60) as client:
            for a in CRASH:
                client.post("/api/v1/alertmanager", json=notification(a))
            later = [{**a, "startsAt": a["startsAt"].replace("T10:", "T14:"), "fingerprint": a["fingerprint"] + "-2"}
                     for a in CRASH]  # fmt: skip
            for a in later:  # a second incident, four hours later, on the same target
                client.post("/api/v1/alertmanager", json=notification(a))
            first, second = sorted(x["id"] for x in client.get("/api/v1/incidents").json()["incidents"])
            busy = view(client, second)
            service.wait_hooks()
    service.close_store()
    assert busy["recommended_action"]["target"] == "checkoutservice" and busy["hooks"] == []
    assert "another action on checkoutservice is pending or running" in busy["policy_decision"]


def test_a_hook_interrupted_by_a_crash_is_unknown_after_the_restart(tmp_path, boutique):
    import sqlite3

    topo = with_hooks(boutique, {("restart", "checkoutservice"): recorder(tmp_path, "restart", 0)})
    service = Service(topo, tmp_path / "s.sqlite", tmp_path / "log.jsonl", policy=Policy(execute=True, approval=True))
    for a in CRASH:
        service.receive_alertmanager(notification(a))
    [iid] = [x["id"] for x in service.incidents()]
    service.close_store()
    # the server died while the approved hook ran: the row says running, no outcome
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        db.execute("UPDATE hooks SET state = 'running', started = '2026-03-01T10:05:00.000Z', started_wall = 0")
    again = Service(topo, tmp_path / "s.sqlite", tmp_path / "log.jsonl", policy=Policy(execute=True, approval=True))
    v = again.incident(iid)
    again.close_store()
    [hook] = v["hooks"]
    assert (hook["state"], hook["outcome"]) == ("done", "unknown") and "interrupted" in hook["detail"]["error"]
    assert [(a["action"], a["outcome"]) for a in v["actions_taken"]] == [("restart", "unknown")]
    assert not (tmp_path / "restart.json").exists()  # not run again
