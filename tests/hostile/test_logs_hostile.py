"""Hostile incident logs in all three formats: a bad record is a reject, an unreadable file one clear error."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import hostile_helpers
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hostile_helpers import WEBSHOP, files_in, read_jsonl, refused, run

small_log_fixture = hostile_helpers.small_log_fixture  # the shared fixture "small_log"


def _score(log, out):
    return run("score", "-t", WEBSHOP, log, "--out", out, "--chunk-size", 40)


def _lines(small_log: Path) -> list[str]:
    return small_log.read_text().splitlines()


@pytest.mark.parametrize(
    ("edit", "location", "field", "reason"),
    [
        (lambda r: r.pop("opened"), "line 1", "opened", "is required"),
        (lambda r: r.pop("id"), "line 1", "id", "is required"),
        (lambda r: r.__setitem__("id", ""), "line 1", "id", "must be a non-empty string"),
        (lambda r: r.__setitem__("opened", 12), "line 1", "opened", "is not an ISO 8601 time"),
        (lambda r: r.__setitem__("observations", "db.latency=fired"), "line 1", "observations", "must be a list"),
    ],
    ids=["no-opened", "no-id", "empty-id", "opened-number", "observations-string"],
)
def test_one_bad_jsonl_record_is_a_reject(small_log, tmp_path, edit, location, field, reason):
    lines = _lines(small_log)
    rec = json.loads(lines[0])
    edit(rec)
    lines[0] = json.dumps(rec)
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(lines) + "\n")
    code, out, err = _score(log, tmp_path / "s.jsonl")
    assert code == 0, err
    (rej,) = read_jsonl(tmp_path / "s.jsonl.rejects.jsonl")
    assert (rej["location"], rej["field"]) == (location, field) and reason in rej["reason"]
    assert len(read_jsonl(tmp_path / "s.jsonl")) == 119


def test_invalid_utf8_in_an_id_is_a_reject_not_a_changed_id(small_log, tmp_path):
    raw = small_log.read_bytes().split(b"\n")
    raw[2] = raw[2].replace(b'"id":"sim-', b'"id":"s\xffim-', 1)
    log = tmp_path / "log.jsonl"
    log.write_bytes(b"\n".join(raw))
    code, _, err = _score(log, tmp_path / "s.jsonl")
    assert code == 0, err
    (rej,) = read_jsonl(tmp_path / "s.jsonl.rejects.jsonl")
    assert rej["location"] == "line 3" and rej["field"] == "id" and "not valid UTF-8" in rej["reason"]
    assert not any("\ufffd" in r["incident_id"] for r in read_jsonl(tmp_path / "s.jsonl"))


def test_truncated_jsonl_gz_scores_what_it_can_and_says_where_it_ends(small_log, tmp_path):
    data = gzip.compress(small_log.read_bytes())
    log = tmp_path / "log.jsonl.gz"
    log.write_bytes(data[: len(data) // 2])
    code, _, err = _score(log, tmp_path / "s.jsonl")
    assert code == 0, err
    rej = read_jsonl(tmp_path / "s.jsonl.rejects.jsonl")[-1]
    assert rej["field"] == "(file)" and "truncated" in rej["reason"]
    assert not (tmp_path / "s.jsonl.parts").exists()


def test_a_gz_that_is_not_gzip_is_one_clear_error(tmp_path):
    log = tmp_path / "log.jsonl.gz"
    log.write_bytes(b"plain text, not gzip\n")
    refused(["score", "-t", WEBSHOP, log, "--out", tmp_path / "s.jsonl"], str(log), "cannot open")
    assert files_in(tmp_path) == {"log.jsonl.gz"}


@pytest.mark.parametrize(
    ("table", "needles"),
    [
        (lambda: pa.table({"incident_id": ["a"], "x": [1]}), ["no column 'id'", "columns: ['incident_id', 'x']"]),
        (
            lambda: pa.table({"id": ["a"], "opened": ["2024-01-01T00:00:00Z"], "observations": ["db.latency"]}),
            ["column 'observations' has type string", "list of structs"],
        ),
        (lambda: pa.table({"id": [1], "opened": ["2024-01-01T00:00:00Z"]}), ["column 'id' has type int64"]),
    ],
    ids=["wrong-schema", "observations-string", "id-int"],
)
def test_wrong_schema_parquet_is_one_clear_error_before_any_work(tmp_path, table, needles):
    log = tmp_path / "log.parquet"
    pq.write_table(table(), log)
    refused(["score", "-t", WEBSHOP, log, "--out", tmp_path / "s.jsonl"], str(log), *needles)
    refused(["convert", log, "--out", tmp_path / "c.jsonl"], str(log), *needles)
    assert files_in(tmp_path) == {"log.parquet"}


def test_garbage_named_parquet_is_one_clear_error(tmp_path):
    log = tmp_path / "log.parquet"
    log.write_bytes(b"not parquet" * 20)
    refused(["score", "-t", WEBSHOP, log, "--out", tmp_path / "s.jsonl"], str(log), "cannot read Parquet")
    assert files_in(tmp_path) == {"log.parquet"}


def test_parquet_record_without_opened_is_a_reject(small_log, tmp_path):
    pq_log = tmp_path / "log.parquet"
    assert run("convert", small_log, "--out", pq_log)[0] == 0
    t = pq.read_table(pq_log)
    opened = t.column("opened").to_pylist()
    opened[5] = None
    t = t.set_column(t.schema.get_field_index("opened"), "opened", pa.array(opened, t.schema.field("opened").type))
    pq.write_table(t, pq_log)
    code, _, err = _score(pq_log, tmp_path / "s.csv")
    assert code == 0, err
    (rej,) = read_jsonl(tmp_path / "s.csv.rejects.jsonl")
    assert (rej["location"], rej["field"], rej["reason"]) == ("row 6", "opened", "is required")


def test_duplicate_ids_across_parquet_chunks_are_set_aside(small_log, tmp_path):
    lines = _lines(small_log)
    lines.insert(100, lines[2])
    jl = tmp_path / "dup.jsonl"
    jl.write_text("\n".join(lines) + "\n")
    pq_log = tmp_path / "dup.parquet"
    code, _, err = run("convert", jl, "--out", pq_log)
    assert code == 0, err  # convert reads the whole log in one chunk: the duplicate is set aside there
    (rej,) = read_jsonl(tmp_path / "dup.parquet.rejects.jsonl")
    assert rej["reason"].startswith("duplicate incident id")
    # Write the duplicate into the Parquet file ourselves, in a later row group.
    t = pq.read_table(pq_log)
    t = pa.concat_tables([t, t.slice(2, 1)])
    pq.write_table(t, pq_log, row_group_size=40)
    code, out, err = run("score", "-t", WEBSHOP, pq_log, "--out", tmp_path / "s.parquet", "--chunk-size", 40)
    assert code == 0, err
    (rej,) = read_jsonl(tmp_path / "s.parquet.rejects.jsonl")
    assert rej["location"] == "row 121" and "duplicate incident id (first at row 3" in rej["reason"]
    assert pd.read_parquet(tmp_path / "s.parquet")["incident_id"].is_unique


def _csv_log(small_log: Path, folder: Path) -> Path:
    csv_dir = folder / "csvlog"
    code, _, err = run("convert", small_log, "--out", csv_dir, "--format", "csv")
    assert code == 0, err
    return csv_dir


def test_csv_observation_row_of_an_unknown_incident_is_a_reject(small_log, tmp_path):
    csv_dir = _csv_log(small_log, tmp_path)
    obs = pd.read_csv(csv_dir / "observations.csv", dtype=str, keep_default_na=False)
    extra = obs.iloc[[0]].assign(incident_id="ghost-1")
    pd.concat([obs, extra]).to_csv(csv_dir / "observations.csv", index=False)
    code, _, err = run("score", "-t", WEBSHOP, csv_dir, "--out", tmp_path / "s.jsonl", "--chunk-size", 50)
    assert code == 0, err
    (rej,) = read_jsonl(tmp_path / "s.jsonl.rejects.jsonl")
    assert rej["source"].endswith("observations.csv") and rej["location"] == f"row {len(obs) + 1}"
    assert rej["incident_id"] == "ghost-1" and "no incident with this id" in rej["reason"]


def test_csv_duplicate_ids_across_chunks_are_set_aside(small_log, tmp_path):
    csv_dir = _csv_log(small_log, tmp_path)
    inc = pd.read_csv(csv_dir / "incidents.csv", dtype=str, keep_default_na=False)
    pd.concat([inc, inc.iloc[[0]]]).to_csv(csv_dir / "incidents.csv", index=False)
    code, out, err = run("score", "-t", WEBSHOP, csv_dir, "--out", tmp_path / "s.jsonl", "--chunk-size", 50)
    assert code == 0, err
    rejects = read_jsonl(tmp_path / "s.jsonl.rejects.jsonl")
    assert [r["location"] for r in rejects] == ["row 121"] and "first at row 1" in rejects[0]["reason"]
    assert len(read_jsonl(tmp_path / "s.jsonl")) == 120


def test_zero_scored_rows_csv_still_has_a_header(small_log, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("{bad\n{worse\n")
    code, _, err = _score(log, tmp_path / "s.csv")
    assert code == 0, err
    df = pd.read_csv(tmp_path / "s.csv")
    assert len(df) == 0 and df.columns[0] == "incident_id" and "posterior" in df.columns


def test_read_incidents_sets_aside_duplicates_across_chunks(small_log, tmp_path, monkeypatch):
    import diagnosis.logs.formats as formats

    lines = _lines(small_log)
    lines.append(lines[0])
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(lines) + "\n")
    real = formats.iter_incident_frames
    monkeypatch.setattr(formats, "iter_incident_frames", lambda p, chunk_size: real(p, chunk_size=50))
    frame, rejects = formats.read_incidents(log)
    assert len(frame) == 120 and frame.incidents["id"].is_unique
    (rej,) = rejects
    assert rej.location == "line 121" and rej.reason == "duplicate incident id (first at line 1)"
