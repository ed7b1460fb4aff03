"""Fixtures of the hostile-input and fault suites."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_helpers import WEBSHOP, run


@pytest.fixture(scope="session")
def small_log(tmp_path_factory) -> Path:
    """120 simulated incidents of the webshop, as JSON Lines."""
    folder = tmp_path_factory.mktemp("log")
    path = folder / "log.jsonl"
    code, _, err = run("simulate", "-t", WEBSHOP, "-n", 120, "--seed", 7, "--out", path)
    assert code == 0, err
    return path
