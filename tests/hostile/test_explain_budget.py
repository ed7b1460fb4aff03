"""`explain` shows progress on a terminal and stops at its time budget with a clear message."""

from __future__ import annotations

import io
import time

import yaml
from hostile_helpers import WEBSHOP, refused

from diagnosis import Topology
from diagnosis.cli import main


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal():
    out, err = io.StringIO(), _Terminal()
    code = main(["explain", "-t", str(WEBSHOP), "-o", "db.latency=fired"], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    lines = err.getvalue().splitlines()
    assert [ln.split("...")[0] for ln in lines if "..." in ln] == [
        "explain: building the network and its inference engine",
        "explain: explaining the evidence",
        "explain: ranking the next checks",
        "explain: planning the checks and actions",
    ]
    assert lines[-1].startswith("explain: done (")


def test_no_progress_when_not_a_terminal():
    out, err = io.StringIO(), io.StringIO()
    assert main(["explain", "-t", str(WEBSHOP), "-o", "db.latency=fired"], stdout=out, stderr=err) == 0
    assert "explain:" not in err.getvalue()


def test_a_large_mesh_stops_at_the_budget(tmp_path):
    n = 12  # 60 fault states: planned exactly (one case per check outcome), which takes minutes on this engine
    comps = [{"name": f"s{i}", "kind": "service", "calls": [f"s{j}" for j in range(i + 1, n)]} for i in range(n)]
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(Topology.from_dict({"name": "mesh", "components": comps}).to_dict()))
    start = time.monotonic()
    refused(
        # --no-checks: the plan is what runs past the budget here (a mesh past 64 fault states is planned
        # approximately, in seconds, and may finish within the budget)
        ["explain", "-t", path, "-o", "s0.latency=fired", "--engine", "approximate", "--no-checks", "--budget", "3"],
        "did not finish within the time budget of 3 s",
        "--budget",
    )
    assert time.monotonic() - start < 10


def test_a_negative_budget_is_refused():
    refused(["explain", "-t", WEBSHOP, "--budget", "-1"], "--budget must be a number of seconds >= 0")
