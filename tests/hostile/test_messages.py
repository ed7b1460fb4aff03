"""Weak messages mended: each names the file, the place and the bad value, and says what is allowed."""

from __future__ import annotations

import hostile_helpers
import pytest
from hostile_helpers import WEBSHOP, refused

small_log_fixture = hostile_helpers.small_log_fixture  # the shared fixture "small_log"

GOOD_BIF = """network unknown {
}
variable A {
  type discrete [ 2 ] { yes, no };
}
variable B {
  type discrete [ 2 ] { yes, no };
}
probability ( A ) {
  table 0.3, 0.7;
}
probability ( B | A ) {
  (yes) 0.9, 0.1;
  (no) 0.2, 0.8;
}
"""


@pytest.mark.parametrize(
    ("old", "new", "needles"),
    [
        ("table 0.3, 0.7;", "table -0.3, 1.3;", ["line 10", "'A'", "'-0.3'", ">= 0"]),
        ("table 0.3, 0.7;", "table nan, 0.7;", ["line 10", "'A'", "'nan'", "finite"]),
        ("(no) 0.2, 0.8;", "(no) 0.2, inf;", ["line 14", "'B'", "'inf'", "finite"]),
        ("probability ( B | A ) {", "probability ( B | C ) {", ["line 12", "undeclared variable 'C'"]),
        ("variable A {", "variabel A {", ["line 3", "unexpected 'variabel'"]),
    ],
    ids=["negative", "nan", "inf", "undeclared", "malformed"],
)
def test_bad_bif_names_line_variable_and_value(tmp_path, old, new, needles):
    path = tmp_path / "m.bif"
    text = GOOD_BIF.replace(old, new)
    if new.startswith("variabel"):
        text = text.replace("variable B", "variabel B")
    path.write_text(text)
    refused(["query", "--model", path, "--target", "A"], str(path), *needles)


GOOD_XMLBIF = """<?xml version='1.0' encoding='utf-8'?>
<BIF VERSION="0.3"><NETWORK><NAME>unknown</NAME>
<VARIABLE TYPE="nature"><NAME>A</NAME><OUTCOME>yes</OUTCOME><OUTCOME>no</OUTCOME></VARIABLE>
<VARIABLE TYPE="nature"><NAME>B</NAME><OUTCOME>yes</OUTCOME><OUTCOME>no</OUTCOME></VARIABLE>
<DEFINITION><FOR>A</FOR><TABLE>0.3 0.7 </TABLE></DEFINITION>
<DEFINITION><FOR>B</FOR><GIVEN>A</GIVEN><TABLE>0.9 0.1 0.2 0.8 </TABLE></DEFINITION>
</NETWORK></BIF>
"""


@pytest.mark.parametrize(
    ("old", "new", "needles"),
    [
        ("0.3 0.7 ", "-0.3 1.3 ", ["TABLE of 'A'", "'-0.3'", ">= 0"]),
        ("0.3 0.7 ", "nan 0.7 ", ["TABLE of 'A'", "'nan'", "finite"]),
        ("0.9 0.1 ", "0.9 x ", ["TABLE of 'B'", "'x'", "not a number"]),
        ("<GIVEN>A</GIVEN>", "<GIVEN>C</GIVEN>", ["DEFINITION of 'B'", "undeclared variable 'C'"]),
        ("</NETWORK></BIF>", "</NETWORK>", ["not well-formed XML"]),
    ],
    ids=["negative", "nan", "not-a-number", "undeclared", "truncated"],
)
def test_bad_xmlbif_names_variable_and_value(tmp_path, old, new, needles):
    path = tmp_path / "m.xmlbif"
    path.write_text(GOOD_XMLBIF.replace(old, new))
    refused(["query", "--model", path, "--target", "A"], str(path), *needles)


def test_good_bif_still_reads(tmp_path):
    from hostile_helpers import run

    for name, text in (("m.bif", GOOD_BIF), ("m.xmlbif", GOOD_XMLBIF)):
        path = tmp_path / name
        path.write_text(text)
        code, out, err = run("query", "--model", path, "--target", "A")
        assert code == 0, err
        assert "A: yes=0.3, no=0.7" in out


@pytest.mark.parametrize("value", ['"high"', "true", "[0.1]"])
def test_a_prior_that_is_not_a_number_says_a_number_is_allowed(tmp_path, value):
    path = tmp_path / "t.yaml"
    path.write_text(f"name: t\ncomponents:\n  - name: a\n    kind: service\n    fault_modes:\n      crash: {value}\n")
    refused(["topology", "check", path], str(path), "components[0].fault_modes.crash", "a prior probability (a number")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["diagnose", "-t", WEBSHOP, "--top", "-1"], "--top must be an int >= 1. Got -1 instead."),
        (["score", "-t", WEBSHOP, "x.jsonl", "--out", "o.jsonl", "--top-k", "-3"], "--top-k must be an int >= 1"),
        (["score", "-t", WEBSHOP, "x.jsonl", "--out", "o.jsonl", "--chunk-size", "0"], "--chunk-size must be"),
    ],
    ids=["top", "top-k", "chunk-size"],
)
def test_numbers_that_make_no_sense_are_refused(argv, needle):
    refused(argv, needle)


def test_a_misspelt_flag_is_reported_as_misspelt(tmp_path, capsys):
    from hostile_helpers import run

    code, _, _ = run("score", "--topolgy", WEBSHOP, "x.jsonl", "--out", tmp_path / "o.jsonl")
    err = capsys.readouterr().err  # argparse writes usage errors to the process's stderr
    assert code == 2
    assert "unrecognized argument '--topolgy'" in err and "did you mean '--topology'" in err
    assert "required" not in err and "Traceback" not in err


def test_score_library_refuses_bad_top_k(small_log, tmp_path):
    from diagnosis import load_topology, score_log
    from diagnosis.exceptions import ParameterError

    with pytest.raises(ParameterError, match=r"The 'top_k' parameter of score_log must be .* Got -3 instead"):
        score_log(load_topology(WEBSHOP), small_log, tmp_path / "o.jsonl", top_k=-3)
    assert list(tmp_path.iterdir()) == []
