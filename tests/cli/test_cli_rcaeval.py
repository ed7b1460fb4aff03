"""`diagnosis import rcaeval` and `detect --rcaeval`, as a new user's first run on the benchmark: import, detect, score."""

import io
import json

from rcaeval_synth import CASES, inject_at, make_tree, write_case

from diagnosis import bundled_topology
from diagnosis.cli import main


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(map(str, argv)), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_import_detect_score(tmp_path):
    root = make_tree(tmp_path / "data")
    code, out, err = run("import", "rcaeval", root, "--out", tmp_path / "w.csv")
    assert code == 0, err
    assert out.splitlines()[0] == f"wrote 5 windows to {tmp_path / 'w.csv'}"
    assert f"{root}: 9 cases -> 5 windows (cpu 1, delay 1, disk 1, f1 1, mem 1); 4 set aside" in out
    assert "1 set aside: metrics file is missing" in out and "shipping_cpu" in out
    assert "2 set aside: inject time" not in out  # the two bad inject times have different reasons
    ss = bundled_topology("sock-shop")
    code, out, err = run("detect", "-t", ss, "--rcaeval", root, "--windows", tmp_path / "w.csv",
                         "--out", tmp_path / "inc.jsonl")  # fmt: skip
    assert code == 0, err
    assert "wrote 5 incidents" in out and "read " in out
    code, out, err = run("score", "-t", ss, tmp_path / "inc.jsonl", "--out", tmp_path / "s.csv", "--format", "json")
    assert code == 0, err
    comp = json.loads(out)["metrics"]["component"]
    assert comp["n_ranked"] == len(CASES) and comp["AC@1"] == 1.0


def test_import_errors_name_the_path(tmp_path):
    code, out, err = run("import", "rcaeval", tmp_path / "none", "--out", tmp_path / "w.csv")
    assert code != 0 and f"{tmp_path / 'none'}: no such folder" in err and "Traceback" not in err
    (tmp_path / "empty" / "carts_cpu" / "1").mkdir(parents=True)
    code, out, err = run("import", "rcaeval", tmp_path / "empty", "--out", tmp_path / "w.csv")
    assert code != 0 and f"{tmp_path / 'empty'}: holds no RCAEval case" in err and "Traceback" not in err
    bad = tmp_path / "bad" / "carts_cpu" / "1"
    bad.mkdir(parents=True)
    (bad / "inject_time.txt").write_text("yesterday")
    code, out, err = run("import", "rcaeval", tmp_path / "bad", "--out", tmp_path / "w.csv")
    assert code != 0 and "every one of the 1 cases" in err and "inject time is not a number" in err
    assert not (tmp_path / "w.csv").exists()


def test_detect_refuses_overlapping_cases_and_both_metric_flags(tmp_path):
    root = tmp_path / "data"  # the outputs sit outside it: an output inside an input folder is refused
    write_case(root / "RE1-SS" / "carts_cpu" / "1", "data.csv", inject_at(0), "carts_cpu", 4.0, seed=0)
    write_case(root / "RE2-SS" / "carts_cpu" / "1", "metrics.csv", inject_at(0) + 300, None, 1.0, seed=1)
    assert run("import", "rcaeval", root, "--out", tmp_path / "w.csv")[0] == 0
    ss = bundled_topology("sock-shop")
    code, _, err = run("detect", "-t", ss, "--rcaeval", root, "--windows", tmp_path / "w.csv",
                       "--out", tmp_path / "inc.jsonl")  # fmt: skip
    assert code != 0 and "overlap in time" in err and "data.csv" in err and "Traceback" not in err
    code, _, err = run("detect", "-t", ss, "--rcaeval", root, "--metrics", root, "--windows",
                       tmp_path / "w.csv", "--out", tmp_path / "inc.jsonl")  # fmt: skip
    assert code != 0 and "not both" in err
    assert not (tmp_path / "inc.jsonl").exists()


def test_detect_refuses_an_output_inside_the_rcaeval_folder(tmp_path):
    root = make_tree(tmp_path / "data")
    assert run("import", "rcaeval", root, "--out", tmp_path / "w.csv")[0] == 0
    code, _, err = run("detect", "-t", bundled_topology("sock-shop"), "--rcaeval", root, "--windows",
                       tmp_path / "w.csv", "--out", root / "inc.jsonl")  # fmt: skip
    assert code != 0 and "inside the input folder" in err and not (root / "inc.jsonl").exists()


def test_detect_writes_a_csv_log_as_three_tables(tmp_path):
    # detect --out NAME.csv: the incidents, and NAME.observations.csv and NAME.actions.csv beside them
    from diagnosis.logs.formats import read_incidents

    root = make_tree(tmp_path / "data")
    assert run("import", "rcaeval", root, "--out", tmp_path / "w.csv")[0] == 0
    ss = bundled_topology("sock-shop")
    for out in ("inc.jsonl", "inc.csv"):
        code, _, err = run("detect", "-t", ss, "--rcaeval", root, "--windows", tmp_path / "w.csv",
                           "--out", tmp_path / out)  # fmt: skip
        assert code == 0, err
    assert (tmp_path / "inc.observations.csv").is_file() and (tmp_path / "inc.actions.csv").is_file()
    a, _ = read_incidents(tmp_path / "inc.jsonl")
    b, _ = read_incidents(tmp_path / "inc.csv")
    assert len(b) == len(a) == 5 and len(b.observations) == len(a.observations) > 0
