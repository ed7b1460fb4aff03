"""`diagnosis query` keeps every input row, with its row number (or the input's id column)."""

from __future__ import annotations

import pandas as pd
import pytest
from hostile_helpers import WEBSHOP, refused, run


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    path = tmp_path_factory.mktemp("net") / "w.bif"
    assert run("export", WEBSHOP, "--to", path)[0] == 0
    return path


def test_all_blank_rows_are_kept_and_aligned(net, tmp_path):
    cases = tmp_path / "cases.csv"
    cases.write_text("symptom__db__latency,symptom__db__health_check\nfired,passed\n,\n\n,fired\nfired,\n\n\n")
    out = tmp_path / "p.csv"
    code, stdout, err = run("query", "--model", net, "--evidence", cases, "--target", "fault__db", "--out", out)
    assert code == 0, err
    post = pd.read_csv(out)
    assert post["row"].tolist() == [1, 2, 3, 4, 5]  # the two blank rows (2: ",", 3: empty line) are cases
    assert "for 5 cases" in stdout
    prior = post.iloc[1, 1:].to_numpy()
    assert post.iloc[2, 1:].to_numpy() == pytest.approx(prior)  # both blank rows are the prior
    assert post.iloc[3, 1:].to_numpy() != pytest.approx(prior)  # row 4 observed something


def test_the_id_column_labels_the_output(net, tmp_path):
    cases = tmp_path / "cases.csv"
    cases.write_text("id,symptom__db__latency\ncase-a,fired\ncase-b,\ncase-c,passed\n")
    out = tmp_path / "p.parquet"
    code, _, err = run("query", "--model", net, "--evidence", cases, "--target", "fault__db", "--out", out)
    assert code == 0, err
    assert pd.read_parquet(out)["id"].tolist() == ["case-a", "case-b", "case-c"]


def test_an_unknown_state_names_file_row_column_and_value(net, tmp_path):
    cases = tmp_path / "cases.csv"
    cases.write_text("symptom__db__latency\nfired\nfird\n")
    refused(
        ["query", "--model", net, "--evidence", cases, "--target", "fault__db", "--out", tmp_path / "p.csv"],
        str(cases),
        "row 2",
        "'symptom__db__latency'",
        "'fird'",
    )
    assert not (tmp_path / "p.csv").exists()
