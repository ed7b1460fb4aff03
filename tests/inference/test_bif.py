"""Our BIF/XMLBIF readers give exactly pgmpy's network; the pyarrow case reader equals the csv one."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from diagnosis.exceptions import EvidenceError, ModelFileError
from diagnosis.inference import make_engine, read_cases, read_tables
from diagnosis.inference import modelfile as mf
from diagnosis.inference.tables import ModelTables


def _bundled(name: str) -> str:
    import pgmpy

    path = os.path.join(os.path.dirname(pgmpy.__file__), "utils", "example_models", f"{name}.bif.gz")
    with open(path, "rb") as fh:
        return gzip.decompress(fh.read()).decode()


def _same(a: ModelTables, b: ModelTables) -> None:
    assert a.names == b.names
    assert a.states == b.states
    assert a.parents == b.parents
    for x, y in zip(a.cpts, b.cpts):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", ["asia", "alarm", "child", "hailfinder", "hepar2"])
def test_bif_tables_equal_pgmpys(tmp_path, name):
    from pgmpy.readwrite import BIFReader

    text = _bundled(name)
    (tmp_path / f"{name}.bif").write_text(text)
    ours = read_tables(tmp_path / f"{name}.bif")
    ref = ModelTables.from_pgmpy(BIFReader(string=text).get_model())
    assert (ours.names, ours.states, ours.parents) == (ref.names, ref.states, ref.parents)
    rounded = 0
    for x, y in zip(ours.cpts, ref.cpts):
        sums = y.sum(axis=0)
        if np.all(np.abs(sums - 1.0) <= 1e-12):
            np.testing.assert_array_equal(x, y)  # exactly pgmpy's numbers
        else:  # printed decimals (0.3333333, hepar2's columns at 1 +- 1e-7): divided by their sums
            rounded += 1
            np.testing.assert_allclose(x, y / sums, rtol=0, atol=1e-15)
            np.testing.assert_allclose(x.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    if name == "hepar2":
        assert rounded > 0


@pytest.mark.parametrize("name", ["asia", "alarm"])
def test_xmlbif_tables_equal_pgmpys(tmp_path, netlib, name):
    from pgmpy.readwrite import XMLBIFWriter

    model = netlib.classic(name)
    (tmp_path / f"{name}.xmlbif").write_text(str(XMLBIFWriter(model)))
    ours = read_tables(tmp_path / f"{name}.xmlbif")
    ref = ModelTables.from_pgmpy(model)
    # XMLBIF lists variables in pgmpy's node order too; tables axis for axis
    assert set(ours.names) == set(ref.names)
    for v, i in ref.index.items():
        j = ours.index[v]
        assert ours.states[j] == ref.states[i]
        assert [ours.names[p] for p in ours.parents[j]] == [ref.names[p] for p in ref.parents[i]]
        y = ref.cpts[i]
        sums = y.sum(axis=0)
        np.testing.assert_allclose(
            ours.cpts[j], y if np.all(np.abs(sums - 1) <= 1e-12) else y / sums, rtol=0, atol=1e-15
        )


BIF = """// a comment
network tiny {
  property version 1;
}
variable "A" {
  type discrete [ 2 ] { yes, no };
  property position = (1, 2);
}
variable B {
  type discrete [ 3 ] { lo, mid, hi };
}
variable C {
  type discrete [ 2 ] { on, off };
}
probability ( A ) {
  table 0.3, 0.7;
}
probability ( B | A ) {
  (yes) 0.1, 0.2, 0.7;
  default 0.5 0.25 0.25;
}
probability ( c | a, B ) { /* names match case-insensitively, as in pgmpy */
  table 0.9 0.8 0.7 0.6 0.5 0.4 0.1 0.2 0.3 0.4 0.5 0.6;
}
"""


def test_bif_syntax_default_rows_table_and_posterior(tmp_path):
    path = tmp_path / "tiny.bif"
    path.write_text(BIF)
    t = read_tables(path)
    assert t.names == ("A", "B", "C")
    np.testing.assert_array_equal(t.cpts[1], [[0.1, 0.5], [0.2, 0.25], [0.7, 0.25]])
    # `table` with parents: the child's state slowest, parent configurations in row-major order
    np.testing.assert_array_equal(t.cpts[2][:, 1, 2], [0.4, 0.6])
    # a posterior against brute force
    engine = make_engine(t, "exact")
    post = engine.query(["A"], {"C": np.array([0])})["A"][0]
    joint = t.cpts[0][:, None, None] * np.moveaxis(t.cpts[1], 0, 1)[:, :, None] * np.moveaxis(t.cpts[2], 0, -1)
    want = joint[:, :, 0].sum(axis=1)
    np.testing.assert_allclose(post, want / want.sum(), atol=1e-12)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("(yes) 0.1, 0.2, 0.7;", "(yes) 0.1, 0.2;"), r"line 19: a row of 'B' has 2 values, expected 3"),
        (("(yes) 0.1, 0.2, 0.7;", "(maybe) 0.1, 0.2, 0.7;"), r"unknown state 'maybe' of 'A'"),
        (("  default 0.5 0.25 0.25;\n", ""), r"no probabilities for 'B' given \(no\)"),
        (("table 0.3, 0.7;", "table 0.3, 0.6;"), r"CPD of 'A' does not normalise"),
        (("probability ( A ) {\n  table 0.3, 0.7;", "probability ( A | C ) {\n  table 0.3, 0.7, 0.7, 0.3;"), r"cycle"),
        (("table 0.3, 0.7;", "table 0.3, x;"), r"'x' is not a number"),
        (("variable B {", "varable B {"), r"line 9: unexpected 'varable'"),
        (("[ 3 ] { lo, mid, hi }", "[ 4 ] { lo, mid, hi }"), r"declares 4 states but lists 3"),
        (("probability ( A ) {\n  table 0.3, 0.7;\n}\n", ""), r"line 5: variable 'A' has no probability block"),
    ],
)
def test_bif_errors_name_the_line(tmp_path, edit, message):
    path = tmp_path / "bad.bif"
    old, new = edit
    assert old in BIF
    path.write_text(BIF.replace(old, new))
    with pytest.raises(ModelFileError, match=r"bad\.bif: not a valid BIF network: .*" + message):
        read_tables(path)


def test_xmlbif_errors(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<BIF><NETWORK><NAME>n</NAME><VARIABLE><NAME>A</NAME><OUTCOME>a</OUTCOME></VARIABLE>")
    with pytest.raises(ModelFileError, match="not well-formed XML"):
        read_tables(path)
    path.write_text(
        "<BIF><NETWORK><VARIABLE><NAME>A</NAME><OUTCOME>a</OUTCOME><OUTCOME>b</OUTCOME></VARIABLE>"
        "<DEFINITION><FOR>A</FOR><TABLE>0.5 0.4 0.1</TABLE></DEFINITION></NETWORK></BIF>"
    )
    with pytest.raises(ModelFileError, match=r"the TABLE of 'A' has 3 values, expected 2"):
        read_tables(path)


CASES = '\ufeffxray, dysp\nyes,no\n , \n\n,yes\n  no ,\n"yes","no"\n'


def test_pyarrow_cases_equal_the_csv_reader(tmp_path, asia, monkeypatch):
    path = tmp_path / "cases.csv"
    path.write_text(CASES, encoding="utf-8")
    fast = read_cases(path, asia)
    assert mf._read_cases_arrow(path, path.read_bytes(), mf._states_of(asia)) is not None  # the fast path ran
    monkeypatch.setattr(mf, "_read_cases_arrow", lambda *a, **k: None)
    slow = read_cases(path, asia)
    assert fast[1] == slow[1] == 6  # every line after the header is a case, the blank ones too
    assert fast[0].keys() == slow[0].keys()
    for k in slow[0]:
        np.testing.assert_array_equal(fast[0][k], slow[0][k])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("xray,dysp\nyes,no\nyes,nope\n", r"row 2, column 'dysp': unknown state 'nope'"),
        # every line after the header is a case, blank ones too (nothing observed)
        ("xray,dysp\n,\n\nyes,no\nYes,no\n", r"row 4, column 'xray'.*did you mean 'yes'"),
        ("xray,dysp\nyes,no,no\n", r"row 1: 3 cells, expected 2"),
        ("xray,dysp\n", r"no cases after the header"),
        ("xray,xray\nyes,no\n", r"column 'xray' appears twice"),
    ],
)
def test_pyarrow_path_errors_are_the_csv_readers(tmp_path, asia, text, message):
    path = tmp_path / "cases.csv"
    path.write_text(text)
    with pytest.raises(EvidenceError, match=message):
        read_cases(path, asia)
