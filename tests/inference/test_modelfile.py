"""Reading models and cases from files, writing posteriors."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pandas as pd
import pytest

from diagnosis.exceptions import DiagnosisError, EvidenceError, ModelError, ModelFileError
from diagnosis.inference.compiled import CompiledEngine
from diagnosis.inference.modelfile import read_cases, read_model, write_posteriors


@pytest.fixture(scope="module")
def asia_files(tmp_path_factory, netlib):
    import pgmpy
    from pgmpy.readwrite import XMLBIFWriter

    folder = tmp_path_factory.mktemp("models")
    src = os.path.join(os.path.dirname(pgmpy.__file__), "utils", "example_models", "asia.bif.gz")
    gz = folder / "asia.bif.gz"
    with open(src, "rb") as fh:
        gz.write_bytes(fh.read())
    (folder / "asia.bif").write_bytes(gzip.decompress(gz.read_bytes()))
    (folder / "asia.xmlbif").write_text(str(XMLBIFWriter(netlib.classic("asia"))))
    return folder


@pytest.mark.parametrize("name", ["asia.bif.gz", "asia.bif", "asia.xmlbif"])
def test_read_model_formats_give_the_same_network(asia_files, asia, name):
    model = read_model(asia_files / name)
    a, b = CompiledEngine.from_pgmpy(model), CompiledEngine.from_pgmpy(asia)
    assert set(a.variables) == set(b.variables)
    assert dict(a.states) == {v: b.states[v] for v in a.variables}
    ev = {"xray": np.array([0, 1]), "dysp": np.array([1, -1])}
    ra, rb = a.query(["lung", "tub", "bronc"], ev), b.query(["lung", "tub", "bronc"], ev)
    for t in ra:
        np.testing.assert_allclose(ra[t], rb[t], atol=1e-12)


def test_read_model_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.bif"
    with pytest.raises(ModelFileError, match=r"nope\.bif: no such file") as info:
        read_model(missing)
    assert isinstance(info.value, ModelError) and isinstance(info.value, DiagnosisError)
    assert info.value.path == str(missing)
    bad = tmp_path / "broken.bif"
    bad.write_text("network broken { this is not BIF")
    with pytest.raises(ModelFileError, match=r"broken\.bif: not a valid BIF network"):
        read_model(bad)
    badgz = tmp_path / "broken.bif.gz"
    badgz.write_bytes(b"not gzip at all")
    with pytest.raises(ModelFileError, match=r"broken\.bif\.gz: cannot read"):
        read_model(badgz)
    with pytest.raises(ModelFileError, match=r"unsupported model file type '\.json'"):
        read_model(tmp_path / "model.json")
    empty = tmp_path / "empty.xml"
    empty.write_text("")
    with pytest.raises(ModelFileError, match=r"empty\.xml: file is empty"):
        read_model(empty)


def test_read_cases(tmp_path, asia):
    path = tmp_path / "cases.csv"
    path.write_text("xray,dysp\nyes,no\n,yes\nno,\n")
    ev, n = read_cases(path, asia)
    assert n == 3
    states = CompiledEngine.from_pgmpy(asia).states
    assert ev["xray"].tolist() == [states["xray"].index("yes"), -1, states["xray"].index("no")]
    assert ev["dysp"].tolist() == [states["dysp"].index("no"), states["dysp"].index("yes"), -1]


def test_read_cases_errors(tmp_path, asia):
    path = tmp_path / "cases.csv"
    path.write_text("xray,dyspnoea\nyes,no\n")
    with pytest.raises(EvidenceError, match=r"unknown column \(variable\) 'dyspnoea'.*did you mean 'dysp'"):
        read_cases(path, asia)
    path.write_text("xray,dysp\nyes,no\nyes,nope\n")
    with pytest.raises(EvidenceError, match=r"row 2, column 'dysp': unknown state 'nope'; allowed: yes, no"):
        read_cases(path, asia)
    path.write_text("xray,dysp\nyes,no\nYes,no\n")
    with pytest.raises(EvidenceError, match=r"row 2, column 'xray'.*did you mean 'yes'"):
        read_cases(path, asia)
    path.write_text("xray,dysp\nyes\n")
    with pytest.raises(EvidenceError, match=r"row 1: 1 cells, expected 2"):
        read_cases(path, asia)
    with pytest.raises(EvidenceError, match="no such cases file"):
        read_cases(tmp_path / "missing.csv", asia)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_posteriors_roundtrip_and_atomic(tmp_path, asia, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    engine = CompiledEngine.from_pgmpy(asia)
    res = engine.query(["lung", "either"], {"xray": np.array([0, 1, -1])})
    out = write_posteriors(tmp_path / f"post{suffix}", res, engine)
    df = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    expected_cols = [f"lung={s}" for s in engine.states["lung"]] + [f"either={s}" for s in engine.states["either"]]
    assert list(df.columns) == expected_cols
    np.testing.assert_array_equal(df.to_numpy(), np.hstack([res["lung"], res["either"]]))
    assert [p.name for p in tmp_path.iterdir()] == [f"post{suffix}"]  # no temporary files left
    # overwrite in place; the model itself also gives the state names
    write_posteriors(out, {"lung": res["lung"][:1]}, asia)
    df = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert df.shape == (1, 2)


def test_write_posteriors_errors(tmp_path, asia):
    engine = CompiledEngine.from_pgmpy(asia)
    with pytest.raises(ModelError, match="unsupported output type"):
        write_posteriors(tmp_path / "p.txt", {}, engine)
    with pytest.raises(EvidenceError, match="unknown variable 'lungs'"):
        write_posteriors(tmp_path / "p.csv", {"lungs": np.ones((1, 2))}, engine)
    with pytest.raises(EvidenceError, match=r"shape \(n_cases, 2\)"):
        write_posteriors(tmp_path / "p.csv", {"lung": np.ones((1, 3))}, engine)
    assert list(tmp_path.iterdir()) == []
