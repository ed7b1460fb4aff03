"""Helpers for the server tests: a real server on 127.0.0.1 (ephemeral port), in a thread or a subprocess."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "tests" / "data" / "serve" / "online-boutique.yaml"
TOKEN = "s3cret-test-token"
ZERO = "0001-01-01T00:00:00Z"


@pytest.fixture(scope="session")
def boutique():
    from diagnosis import load_topology

    return load_topology(TOPOLOGY)


@contextlib.contextmanager
def thread_server(app):
    """Serve ``app`` with uvicorn in a thread on 127.0.0.1:<ephemeral>; yield the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not t.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def process_server(*args: str, token: str | None = TOKEN, env: dict | None = None):
    """``python -m diagnosis serve ARGS --port 0`` in a subprocess; yield ``(process, base URL)``."""
    full_env = {**os.environ, **(env or {})}
    if token is not None:
        full_env["DIAGNOSIS_SERVE_TOKEN"] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", "diagnosis", "serve", *args, "--port", "0"],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if "listening on " not in line:
            proc.kill()
            raise RuntimeError(f"the server did not start: {line!r} {proc.stderr.read()!r}")
        url = line.split("listening on ", 1)[1].split()[0]
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def alert(name, service, starts, *, status="firing", ends=ZERO, fingerprint=None, **labels):
    return {
        "status": status,
        "labels": {"alertname": name, "service": service, "namespace": "shop", **labels},
        "annotations": {"summary": f"{name} on {service}"},
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus.example:9090/graph",
        "fingerprint": fingerprint or f"{name}-{service}",
    }


def notification(*alerts, group_key='{}:{alertname="x"}', status=None):
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status or ("resolved" if all(a["status"] == "resolved" for a in alerts) else "firing"),
        "receiver": "diagnosis",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": list(alerts),
    }


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}
