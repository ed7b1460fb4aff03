"""Hostile files are answered fast with a clear error: alias bombs, deep nesting, deep JSON."""

from __future__ import annotations

import time

import hostile_helpers
import pytest
from hostile_helpers import WEBSHOP, refused

small_log_fixture = hostile_helpers.small_log_fixture  # the shared fixture "small_log"


def _bomb(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for name in "bcdefghijk"[: levels - 1]:
        text += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    return text


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (_bomb(), "alias bomb"),
        ("[" * 50_000 + "]" * 50_000, "nested too deeply"),
        ("a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 120)) + "  " * 120 + "x: 1\n", "more than 64 levels"),
        ("a: &a [1, *a]\n", "refers to the value that contains it"),
    ],
    ids=["billion-laughs", "deep-lists", "deep-mappings", "self-alias"],
)
def test_topology_check_bounds_yaml(tmp_path, text, needle):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    assert len(_bomb()) < 700
    start = time.monotonic()
    refused(["topology", "check", path], str(path), needle)
    assert time.monotonic() - start < 10


def test_deep_json_incident_is_a_clear_error(tmp_path):
    path = tmp_path / "incident.json"
    path.write_text('{"observations": ' + "[" * 100_000 + "]" * 100_000 + "}")
    refused(["diagnose", "-t", WEBSHOP, "--incident", path], str(path), "nested too deeply")


def test_deep_json_line_in_a_log_is_a_reject(small_log, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(small_log.read_text() + '{"id": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    from hostile_helpers import read_jsonl, run

    code, _, err = run("score", "-t", WEBSHOP, log, "--out", tmp_path / "s.jsonl")
    assert code == 0, err
    (rej,) = read_jsonl(tmp_path / "s.jsonl.rejects.jsonl")
    assert rej["location"] == "line 121" and "nested too deeply" in rej["reason"]


def test_deep_json_alertmanager_payload_is_a_clear_error(tmp_path):
    path = tmp_path / "alerts.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    refused(
        ["import", "alertmanager", path, "-t", WEBSHOP, "--out", tmp_path / "i.jsonl"], str(path), "nested too deeply"
    )
    assert not (tmp_path / "i.jsonl").exists()
