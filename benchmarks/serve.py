"""Bounded loopback load test of ``diagnosis serve``, then ``kill -9`` during the load.

Usage: .venv/bin/python benchmarks/serve.py [--topology online-boutique train-ticket] [-n 300]
       [--per-incident 3] [--kill-n 150] [--json FILE]

For each topology (bundled, with one alert rule ``{component}.{detector}``
added), a server runs in a subprocess (``python -m diagnosis serve`` on
127.0.0.1, an ephemeral port, a fresh state file and log, a bearer token).
Nothing but loopback is contacted; every loop is bounded by a request count.

1. **Load.** ``-n`` notifications, sent one after another as Alertmanager
   does (one alert each, on a random detector, seed 0); every
   ``--per-incident`` notifications make one incident (alerts a minute apart,
   incidents an hour apart), closed by ``POST .../close`` after its last
   alert (so the incident log grows as it would). Reported: notifications per
   second sustained, and the p50 / p99 time from sending a notification to the
   2xx, which the server sends only after the notification is committed and
   the incident's diagnosis (posterior, ranked locations, recommendation,
   timeline) is recomputed and committed; and, on up to 60 more
   notifications, the time to the 2xx plus a ``GET`` of the whole incident
   JSON, whose next best check is computed on that first read.
2. **kill -9.** ``--kill-n`` notifications with closes, the same way; after a
   third of them the server is killed with SIGKILL and restarted on the same
   state file. The client retries a request until it gets a 2xx (as
   Alertmanager retries), so a notification committed just before the kill is
   delivered again. Then the state and the log are counted: notifications
   acknowledged but missing (lost), alerts or findings stored twice
   (duplicated), closed incidents missing from the log or in it twice.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diagnosis import Topology, bundled_topology, load_topology  # noqa: E402

TOKEN = "benchmark-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
ZERO = "0001-01-01T00:00:00Z"
BASE = np.datetime64("2026-03-01T00:00:00")


class Client:
    """A kept-alive HTTP/1.1 connection (the standard library's: it sends headers and body in one write, as
    Alertmanager's Go client does; httpx's separate writes meet delayed ACKs and add ~40 ms per request here)."""

    def __init__(self):
        self.conn = None
        self.url = None

    def request(self, method: str, url: str, body=None) -> tuple[int, dict]:
        parts = urlsplit(url)
        base = f"{parts.hostname}:{parts.port}"
        if self.conn is None or self.url != base:
            if self.conn is not None:
                self.conn.close()
            self.conn, self.url = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60), base
        data = None if body is None else json.dumps(body).encode()
        headers = {**HEADERS, "Content-Type": "application/json"}
        try:
            self.conn.request(
                method, parts.path + (f"?{parts.query}" if parts.query else ""), body=data, headers=headers
            )
            resp = self.conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise
        return resp.status, json.loads(payload) if payload else {}


CLIENT = Client()


def serve_topology(name: str, folder: Path) -> tuple[Path, Topology]:
    topo = load_topology(bundled_topology(name))
    spec = topo.to_dict()
    spec["alerts"] = [{"match_re": {"alertname": ".+"}, "symptom": "{component}.{detector}"}]
    topo = Topology.from_dict(spec)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path, topo


class Server:
    """``python -m diagnosis serve`` in a subprocess on 127.0.0.1:<ephemeral>."""

    def __init__(self, topology: Path, folder: Path, checks: bool = True):
        self.args = ["--topology", str(topology), "--state", str(folder / "state.sqlite"),
                     "--log", str(folder / "incidents.jsonl"), "--quiet", "3600"]  # fmt: skip
        if not checks:
            self.args.append("--no-checks")
        self.proc = None
        self.url = None

    def start(self) -> None:
        env = {**os.environ, "DIAGNOSIS_SERVE_TOKEN": TOKEN}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "diagnosis", "serve", *self.args, "--port", "0"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline()
        if "listening on " not in line:
            raise RuntimeError(f"server did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1].split()[0]

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.proc.stdout.close()


def workload(topo: Topology, n: int, per_incident: int, seed: int):
    """``n`` notifications: ``(notification, incident number, last of its incident)``."""
    rng = np.random.default_rng(seed)
    dets = topo.detectors
    out = []
    for i in range(n):
        inc, k = divmod(i, per_incident)
        d = dets[int(rng.integers(len(dets)))]
        starts = BASE + np.timedelta64(inc, "h") + np.timedelta64(k, "m")
        a = {
            "status": "firing",
            "labels": {"alertname": f"{d.name}-alert", "component": d.component, "detector": d.name, "n": str(i)},
            "annotations": {},
            "startsAt": f"{starts}Z",
            "endsAt": ZERO,
            "generatorURL": "",
            "fingerprint": f"fp-{i:06d}",
        }
        note = {"version": "4", "groupKey": f"{{}}:{{inc=\"{inc}\"}}", "truncatedAlerts": 0, "status": "firing",
                "receiver": "diagnosis", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
                "externalURL": "", "alerts": [a]}  # fmt: skip
        out.append((note, inc, k == per_incident - 1 or i == n - 1))
    return out


def post_until_ok(server: Server, path: str, body) -> tuple[dict, float, int]:
    """POST until a 2xx (retrying like Alertmanager); return the answer, the last try's seconds, the tries."""
    tries = 0
    while True:
        tries += 1
        if tries > 200:
            raise RuntimeError(f"no 2xx for {path} after 200 tries")
        try:
            t0 = time.perf_counter()
            status, answer = CLIENT.request("POST", server.url + path, body)
            dt = time.perf_counter() - t0
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)
            continue
        if status < 300 or (status == 409 and path.endswith("/close")):  # 409: closed before a kill
            return answer, dt, tries
        raise RuntimeError(f"{path}: {status} {str(answer)[:300]}")


def incident_of(answer: dict) -> str:
    ids = answer["incidents"]
    return ids[0] if ids else None


def load_phase(name: str, topo_path: Path, topo: Topology, n: int, per: int, folder: Path, checks: bool) -> dict:
    server = Server(topo_path, folder, checks)
    server.start()
    lat, full = [], []
    ids: dict[int, str] = {}
    try:
        t0 = time.perf_counter()
        for note, inc, last in workload(topo, n, per, seed=0):
            answer, dt, _ = post_until_ok(server, "/api/v1/alertmanager", note)
            lat.append(dt)
            ids.setdefault(inc, incident_of(answer))
            if last:
                post_until_ok(server, f"/api/v1/incidents/{ids[inc]}/close", {})
        wall = time.perf_counter() - t0
        # notification -> the whole incident JSON (posterior, recommendation, next best check, timeline)
        for note, _inc, last in workload(topo, min(n, 60), per, seed=2):
            note["groupKey"] += ":full"
            for a in note["alerts"]:
                a["fingerprint"] += "-full"
                a["startsAt"] = a["startsAt"].replace("2026-03-01", "2026-06-01")
            t1 = time.perf_counter()
            _, answer = CLIENT.request("POST", server.url + "/api/v1/alertmanager", note)
            iid = incident_of(answer)
            status, view = CLIENT.request("GET", server.url + f"/api/v1/incidents/{iid}")
            full.append(time.perf_counter() - t1)
            assert status == 200 and "next_check" in view
            if last:
                CLIENT.request("POST", server.url + f"/api/v1/incidents/{iid}/close", {})
    finally:
        server.stop()
    lat_ms = np.array(lat) * 1000
    full_ms = np.array(full) * 1000
    return {
        "topology": name,
        "next_check": checks,
        "components": len(topo.components),
        "symptoms": len(topo.symptoms),
        "notifications": n,
        "incidents": len(ids),
        "seconds": wall,
        "notifications_per_s": n / wall,
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "max_ms": float(lat_ms.max()),
        "full_view_n": len(full),
        "full_view_p50_ms": float(np.percentile(full_ms, 50)),
        "full_view_p99_ms": float(np.percentile(full_ms, 99)),
    }


def kill_phase(
    name: str, topo_path: Path, topo: Topology, n: int, per: int, folder: Path, delay: float, checks: bool
) -> dict:
    server = Server(topo_path, folder, checks)
    server.start()
    acked, closes, redelivered = [], [], 0
    ids: dict[int, str] = {}
    kill_at = max(1, n // 3)
    try:
        go = threading.Event()

        def killer():
            # kill -9 while a request is in flight (the request takes milliseconds), then restart
            go.wait()
            time.sleep(delay)
            server.kill9()
            server.start()

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        for i, (note, inc, last) in enumerate(workload(topo, n, per, seed=1)):
            if i == kill_at:
                go.set()
            body, _, tries = post_until_ok(server, "/api/v1/alertmanager", note)
            redelivered += body["duplicates"]
            acked.append(note["alerts"][0]["fingerprint"])
            ids.setdefault(inc, incident_of(body))
            if last:
                post_until_ok(server, f"/api/v1/incidents/{ids[inc]}/close", {})
                closes.append(ids[inc])
        t.join()
        # a second kill right after the last close, then a clean restart (recovery runs at start-up)
        server.kill9()
        server.start()
        recovery = CLIENT.request("GET", server.url + "/healthz")[0]
    finally:
        server.stop()
    db = sqlite3.connect(folder / "state.sqlite")
    fps = Counter(r[0] for r in db.execute("SELECT fingerprint FROM alerts"))
    findings = Counter(
        (r[0], r[1]) for r in db.execute("SELECT incident_id, name || '@' || time FROM findings WHERE kind = 'symptom'")
    )
    closed_db = {r[0] for r in db.execute("SELECT id FROM incidents WHERE status = 'closed'")}
    db.close()
    log_ids = Counter(json.loads(x)["id"] for x in (folder / "incidents.jsonl").read_text().splitlines() if x.strip())
    return {
        "topology": name,
        "notifications": n,
        "killed_after": kill_at,
        "restart_healthz": recovery,
        "redelivered_duplicates_absorbed": redelivered,
        "lost_notifications": sum(1 for fp in acked if fps[fp] == 0),
        "duplicated_notifications": sum(c - 1 for c in fps.values() if c > 1),
        "duplicated_findings": sum(c - 1 for c in findings.values() if c > 1),
        "closed_acknowledged": len(closes),
        "lost_log_records": sum(1 for i in set(closes) if log_ids[i] == 0) + len(closed_db - set(log_ids)),
        "duplicated_log_records": sum(c - 1 for c in log_ids.values() if c > 1),
        "log_records": sum(log_ids.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topology", nargs="+", default=["online-boutique", "train-ticket"], help="bundled topologies")
    ap.add_argument("-n", type=int, default=300, help="notifications in the load phase (default 300)")
    ap.add_argument("--per-incident", type=int, default=3, help="notifications per incident (default 3)")
    ap.add_argument("--kill-n", type=int, default=150, help="notifications in the kill -9 phase (default 150)")
    ap.add_argument("--no-checks", nargs="*", default=["train-ticket"], metavar="TOPOLOGY",
                    help="serve these with --no-checks (default train-ticket: a next best check takes minutes there)")  # fmt: skip
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    results = {"load": [], "kill9": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.topology:
            folder = Path(tmp, name)
            folder.mkdir()
            topo_path, topo = serve_topology(name, folder)
            (folder / "load").mkdir()
            checks = name not in args.no_checks
            res = load_phase(name, topo_path, topo, args.n, args.per_incident, folder / "load", checks)
            results["load"].append(res)
            print(f"{name}: {res['components']} components, {res['notifications']} notifications in "
                  f"{res['seconds']:.1f} s = {res['notifications_per_s']:.1f}/s; notification -> updated diagnosis "
                  f"p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms (max {res['max_ms']:.1f}); "
                  f"notification + GET of the whole incident ({'next best check included' if checks else 'served with --no-checks'}): "
                  f"p50 {res['full_view_p50_ms']:.1f} ms, p99 {res['full_view_p99_ms']:.1f} ms", flush=True)  # fmt: skip
            (folder / "kill").mkdir()
            # the kill lands half a median request after the request's start
            k = kill_phase(
                name, topo_path, topo, args.kill_n, args.per_incident, folder / "kill", res["p50_ms"] / 2000, checks
            )
            results["kill9"].append(k)
            print(f"{name}: kill -9 after {k['killed_after']} of {k['notifications']} notifications and after the "
                  f"last close: lost {k['lost_notifications']}, duplicated {k['duplicated_notifications']} "
                  f"(findings {k['duplicated_findings']}); redeliveries absorbed {k['redelivered_duplicates_absorbed']}; "
                  f"log records {k['log_records']} for {k['closed_acknowledged']} closes: lost {k['lost_log_records']}, "
                  f"duplicated {k['duplicated_log_records']}", flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    bad = [k for k in results["kill9"] if k["lost_notifications"] or k["duplicated_notifications"]
           or k["lost_log_records"] or k["duplicated_log_records"] or k["duplicated_findings"]]  # fmt: skip
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
