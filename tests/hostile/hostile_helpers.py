"""Helpers of the hostile-input and fault suites: run the CLI and check how it failed."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from diagnosis import bundled_topology
from diagnosis.cli import main

WEBSHOP = bundled_topology("webshop")


def run(*argv) -> tuple[int, str, str]:
    """Run the CLI in-process; an exception escaping ``main`` (a traceback) fails the test."""
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def refused(argv, *needles, code: int = 1) -> str:
    """Assert the CLI refuses with ``code``, one ``error:`` line naming every needle, and no traceback."""
    got, out, err = run(*argv)
    assert got == code, (got, out, err)
    assert "Traceback" not in err
    if code == 1:
        assert err.startswith("error: "), err
        assert len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert str(n) in err, (n, err)
    return err


def files_in(folder: Path) -> set[str]:
    return {p.name for p in Path(folder).iterdir()}


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="session", name="small_log")
def small_log_fixture(tmp_path_factory) -> Path:
    """120 simulated incidents of the webshop, as JSON Lines."""
    folder = tmp_path_factory.mktemp("log")
    path = folder / "log.jsonl"
    code, _, err = run("simulate", "-t", WEBSHOP, "-n", 120, "--seed", 7, "--out", path)
    assert code == 0, err
    return path
