"""The CLI, in-process and through `python -m diagnosis`, and the independent check against pyAgrum."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from diagnosis import bundled_incident, bundled_topology
from diagnosis.cli import main


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(map(str, argv)), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_diagnose_table():
    code, out, err = run(
        "diagnose", "--topology", bundled_topology("webshop"), "--incident", bundled_incident("webshop-slow-db")
    )
    assert code == 0, err
    assert "Most probable fault locations" in out and "Recommended:" in out
    first = out.split("Most probable fault locations")[1].splitlines()[2].split()
    assert first[:3] == ["1", "db", "slow_queries"]


def test_diagnose_json_contract():
    code, out, err = run(
        "diagnose", "-t", bundled_topology("online-boutique"),
        "--observe", "frontend.latency=fired", "--observe", "paymentservice.health_check=passed",
        "--observe", "checkoutservice.error_rate=fired:0.9,passed:0.1", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["evidence"] == {"symptom__frontend__latency": "fired", "symptom__paymentservice__health_check": "passed"}
    assert doc["soft_evidence"] == {"symptom__checkoutservice__error_rate": [0.1, 0.9]}
    assert {"component", "fault_mode", "probability", "variable", "state"} == set(doc["locations"][0])
    assert {"action", "target", "expected_success", "cost"} <= set(doc["actions"][0])


def test_observe_and_incident_cannot_give_the_same_symptom():
    code, _, err = run(
        "diagnose",
        "-t",
        bundled_topology("webshop"),
        "--incident",
        bundled_incident("webshop-slow-db"),
        "-o",
        "db.latency=passed",
    )
    assert code == 1 and "given both" in err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (
            ["diagnose", "-t", "{webshop}", "-o", "frontend.latncy=fired"],
            "error: unknown symptom 'frontend.latncy'; did you mean 'frontend.latency'",
        ),
        (
            ["diagnose", "-t", "{webshop}", "-o", "frontend.latency=fird"],
            "unknown observation 'fird'.*did you mean 'fired'",
        ),
        (["diagnose", "-t", "{webshop}", "-o", "frontend.latency"], "expected SYMPTOM=fired"),
        (
            ["diagnose", "-t", "{webshop}", "-o", "frontend.latency=fired", "-o", "frontend.latency=passed"],
            "observed twice",
        ),
        (["diagnose", "-t", "nope.yaml"], "error: nope.yaml: file not found"),
        (["diagnose", "-t", "{webshop}", "--incident", "nope.yaml"], "error: nope.yaml: file not found"),
        (["topology", "check", "nope.yaml"], "file not found"),
        (["export", "{webshop}", "--to", "x.png"], "unknown format '.png'"),
    ],
)
def test_errors_exit_1_with_a_message(argv, match):
    argv = [a.format(webshop=bundled_topology("webshop")) for a in argv]
    code, out, err = run(*argv)
    assert code == 1
    assert err.startswith("error: ")
    assert __import__("re").search(match, err), err


def test_usage_error_exits_2(capsys):
    assert run("diagnose")[0] == 2
    assert run("frobnicate")[0] == 2


def test_bad_incident_file(tmp_path):
    bad = tmp_path / "inc.yaml"
    bad.write_text("observations: [1, 2]\n")
    code, _, err = run("diagnose", "-t", bundled_topology("webshop"), "--incident", bad)
    assert code == 1 and "expected a mapping with an 'observations' mapping" in err


def test_topology_check_and_show():
    code, out, _ = run("topology", "check", bundled_topology("train-ticket"))
    assert code == 0 and out.startswith("ok: ") and "dropped to break a cycle" in out
    code, out, _ = run("topology", "show", bundled_topology("webshop"))
    assert code == 0 and "db.consistency_check" in out and "db-host.fs_integrity" in out
    code, out, _ = run("topology", "show", bundled_topology("webshop"), "--format", "json")
    doc = json.loads(out)
    assert code == 0
    assert [c["name"] for c in doc["components"]] == ["frontend", "backend", "db", "db-host"]
    assert "frontend.latency" in [s["symptom"] for s in doc["symptoms"]]
    assert {"action", "target", "success", "cost"} <= set(doc["actions"][0])


def test_export(tmp_path):
    code, out, _ = run("export", bundled_topology("webshop"), "--to", tmp_path / "w.xmlbif")
    assert code == 0 and (tmp_path / "w.xmlbif").is_file()


def test_python_dash_m_exit_codes(tmp_path):
    topo = str(bundled_topology("webshop"))
    ok = subprocess.run(
        [sys.executable, "-m", "diagnosis", "diagnose", "-t", topo, "-o", "db.latency=fired"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "Recommended:" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "diagnosis", "diagnose", "-t", topo, "-o", "db.latncy=fired"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    usage = subprocess.run([sys.executable, "-m", "diagnosis", "diagnose"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage:" in usage.stderr


# The independent check: our JSON posteriors against pyAgrum's LazyPropagation on the
# exported network. pyAgrum reads XMLBIF at full precision; its BIF reader rounds to
# float32 (see test_network.py), so BIF agreement is checked at that precision.
CASES = [
    ("webshop", "webshop-slow-db"),
    ("online-boutique", "online-boutique-checkout"),
    ("train-ticket", "train-ticket-orders"),
]


@pytest.mark.parametrize(("topology", "incident"), CASES)
@pytest.mark.parametrize(("suffix", "atol"), [(".xmlbif", 1e-9), (".bif", 1e-6)])
def test_json_posteriors_match_pyagrum(tmp_path, topology, incident, suffix, atol):
    gum = pytest.importorskip("pyagrum")
    code, out, err = run(
        "diagnose", "-t", bundled_topology(topology), "--incident", bundled_incident(incident), "--format", "json"
    )
    assert code == 0, err
    doc = json.loads(out)
    path = tmp_path / f"net{suffix}"
    assert run("export", bundled_topology(topology), "--to", path)[0] == 0
    if suffix == ".xmlbif":
        path = path.rename(path.with_suffix(".bifxml"))
    bn = gum.loadBN(str(path))
    ie = gum.LazyPropagation(bn)
    ie.setEvidence(doc["evidence"])
    ie.makeInference()
    worst = 0.0
    for loc in doc["locations"]:
        post = ie.posterior(loc["variable"])
        labels = list(bn.variable(loc["variable"]).labels())
        worst = max(worst, abs(post.toarray()[labels.index(loc["state"])] - loc["probability"]))
    assert worst <= atol


def test_simulate_score_convert(tmp_path):
    topo = bundled_topology("webshop")
    code, out, err = run("simulate", "-t", topo, "-n", 120, "--seed", 4, "--out", tmp_path / "log.jsonl")
    assert code == 0, err
    assert out.startswith("wrote 120 incidents")
    again = tmp_path / "again.jsonl"
    run("simulate", "-t", topo, "-n", 120, "--seed", 4, "--out", again)
    assert again.read_bytes() == (tmp_path / "log.jsonl").read_bytes()  # same seed, same file
    code, out, err = run("convert", tmp_path / "log.jsonl", "--out", tmp_path / "log.parquet")
    assert code == 0 and "wrote 120 incidents" in out, err
    code, out, err = run(
        "score", "-t", topo, tmp_path / "log.parquet", "--out", tmp_path / "scored.jsonl", "--chunk-size", 50
    )
    assert code == 0, err
    assert "scored 120 incidents" in out and "AC@1" in out and "location" in out
    code, out, _ = run("score", "-t", topo, tmp_path / "log.jsonl", "--out", tmp_path / "s2.csv", "--format", "json")
    assert code == 0 and json.loads(out)["n_scored"] == 120
    code, _, err = run("score", "-t", topo, tmp_path / "missing.jsonl", "--out", tmp_path / "s3.csv")
    assert code == 1 and "file not found" in err
    code, _, err = run(
        "score", "-t", topo, tmp_path / "log.jsonl", "--out", tmp_path / "s4.csv", "--scheduler", "tcp://127.0.0.1:1"
    )
    assert code == 1 and "needs a Parquet log" in err


def test_import_alertmanager(tmp_path):
    topo = tmp_path / "shop.yaml"
    topo.write_text(
        "name: shop\n"
        "components: [{name: frontend, calls: [checkout]}, {name: checkout}]\n"
        "alerts:\n"
        "  - {match: {alertname: HighLatency}, symptom: '{service}.latency'}\n"
        "  - {match: {alertname: HighErrorRate}, symptom: '{service}.error_rate'}\n"
        "  - {match_re: {alertname: 'KubePod(CrashLooping|NotReady)'}, symptom: '{service}.health_check'}\n"
    )
    payloads = (
        __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "alertmanager" / "notifications.jsonl"
    )
    code, out, err = run("import", "alertmanager", payloads, "-t", topo, "--out", tmp_path / "inc.jsonl")
    assert code == 0, err
    assert "wrote 2 incidents" in out
    frame_lines = (tmp_path / "inc.jsonl").read_text().splitlines()
    assert len(frame_lines) == 2 and json.loads(frame_lines[0])["topology"] == "shop"


def test_query_matches_diagnose(tmp_path):
    net_file = tmp_path / "w.bif"
    assert run("export", bundled_topology("webshop"), "--to", net_file)[0] == 0
    (tmp_path / "cases.csv").write_text("symptom__db__latency,symptom__db__health_check\nfired,passed\n,fired\n")
    code, out, err = run(
        "query",
        "--model",
        net_file,
        "--evidence",
        tmp_path / "cases.csv",
        "--target",
        "fault__db",
        "--out",
        tmp_path / "p.csv",
    )
    assert code == 0, err
    post = __import__("pandas").read_csv(tmp_path / "p.csv")
    assert list(post.columns)[:3] == ["row", "fault__db=ok", "fault__db=down"] and len(post) == 2
    assert post["row"].tolist() == [1, 2]
    from diagnosis import diagnose, load_topology

    d = diagnose(
        load_topology(bundled_topology("webshop")),
        {"db.latency": "fired", "db.health_check": "passed"},
        engine="reference",
    )
    assert post.loc[0, "fault__db=slow_queries"] == pytest.approx(d.posteriors["db"]["slow_queries"], abs=1e-9)
    code, out, err = run(
        "query", "--model", net_file, "--observe", "symptom__db__latency=fired", "--target", "fault__db"
    )
    assert code == 0 and out.startswith("fault__db: ok=")
    (tmp_path / "bad.csv").write_text("symptom__db__latency\nfird\n")
    code, _, err = run("query", "--model", net_file, "--evidence", tmp_path / "bad.csv", "--target", "fault__db")
    assert code == 1 and "row 1, column 'symptom__db__latency': unknown state 'fird'" in err
    code, _, err = run(
        "query", "--model", net_file, "--observe", "symptom__db__latency=fired", "--target", "fault__dbx"
    )
    assert code == 1 and "unknown target variable 'fault__dbx'" in err


def test_post_mortem_verbs(tmp_path):
    topo = bundled_topology("webshop")
    code, out, err = run(
        "explain", "-t", topo, "--incident", bundled_incident("webshop-slow-db"), "--tried", "failover@db=failure"
    )
    assert code == 0, err
    assert "log LR vs alternatives" in out and "Next best checks" in out and "Check-or-act plan" in out
    code, out, err = run("explain", "-t", topo, "-o", "db.latency=fired", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["next_checks"] and doc["plan"]["steps"]
    code, out, err = run("explain", "-t", topo, "-o", "db.latency=fired", "--no-checks", "--no-plan")
    assert code == 0 and "log LR" in out and "Next best checks" not in out and "Check-or-act plan" not in out
    code, _, err = run("explain", "-t", topo, "-o", "db.latency=fired", "--tried", "failover-db")
    assert code == 1 and "expected ACTION@TARGET=success|failure" in err
    from importlib import resources

    pm = Path(str(resources.files("diagnosis").joinpath("data", "incidents", "online-boutique-postmortem.jsonl")))
    ob = bundled_topology("online-boutique")
    code, out, err = run("timeline", "-t", ob, pm, "--incident", "ob-2026-03-14-cart")
    assert code == 0, err
    assert "Turning points" in out and "redis-cart" in out
    assert "When the model knew: step 13, 2026-03-14 10:31:00+00:00, after redis-cart.memory fired" in out
    code, _, err = run("timeline", "-t", ob, pm)
    assert code == 1 and "name one with --incident" in err
    # a trailing slash, as in docs/post_mortem.md: the folder is created, its lock is "pm.lock" beside it
    code, out, err = run("report", "-t", ob, pm, "--incident", "ob-2026-03-14-cart", "--out", f"{tmp_path / 'pm'}/")
    assert code == 0, err
    assert not (tmp_path / "pm.lock").exists() and not (tmp_path / "pm" / ".lock").exists()
    html = (tmp_path / "pm" / "post_mortem.html").read_text()
    assert "redis-cart" in html and "<script" not in html
    assert (tmp_path / "pm" / "post_mortem.md").exists()


def test_fit(tmp_path):
    topo = bundled_topology("webshop")
    assert run("simulate", "-t", topo, "-n", 600, "--seed", 2, "--out", tmp_path / "log.jsonl")[0] == 0
    code, out, err = run("fit", "-t", topo, tmp_path / "log.jsonl", "--out", tmp_path / "fitted.yaml", "--max-iter", 30)
    assert code == 0, err
    assert "moved most from their priors" in out and "90% interval" in out
    assert run("topology", "check", tmp_path / "fitted.yaml")[0] == 0
    assert json.loads((tmp_path / "fitted.yaml.provenance.json").read_text())
    code, _, err = run("fit", "-t", topo, tmp_path / "missing.jsonl", "--out", tmp_path / "f2.yaml")
    assert code == 1 and "missing.jsonl" in err
    # the E-step's engine from the command line: exact gives the same fit as auto (which is exact here)
    code, _, err = run("fit", "-t", topo, tmp_path / "log.jsonl", "--out", tmp_path / "f3.yaml", "--max-iter", 30,
                       "--engine", "exact")  # fmt: skip
    assert code == 0, err

    def body(name):  # the header names its own provenance file
        return [line for line in (tmp_path / name).read_text().splitlines() if "provenance" not in line]

    assert body("f3.yaml") == body("fitted.yaml")
    code, _, err = run("fit", "-t", topo, tmp_path / "log.jsonl", "--out", tmp_path / "f4.yaml",
                       "--max-selection-masks", 0)  # fmt: skip
    assert code == 1 and "max_selection_masks" in err and "Traceback" not in err


def test_telemetry_verbs(tmp_path):
    root = Path(__file__).resolve().parents[2] / "data" / "telemetry"
    ob = bundled_topology("online-boutique")
    code, out, err = run("import", "nezha", root / "online-boutique" / "fault_list.json", "--out", tmp_path / "w.csv")
    assert code == 0 and "windows" in out, err
    code, out, err = run("detect", "-t", ob, "--metrics", root / "online-boutique" / "metric", "--windows", tmp_path / "w.csv",
                         "--lead", "60s", "--out", tmp_path / "inc.jsonl")  # fmt: skip
    assert code == 0, err
    assert "malformed rows set aside" in out
    code, out, err = run("score", "-t", ob, tmp_path / "inc.jsonl", "--out", tmp_path / "s.csv", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["metrics"]["component"]["n_ranked"] == 12
    code, out, err = run("topology", "from-traces", root / "train-ticket" / "trace", "--out", tmp_path / "tt.yaml",
                         "--declared", bundled_topology("train-ticket-nezha"))  # fmt: skip
    assert code == 0, err
    assert "0 observed calls not declared" in out
    assert run("topology", "check", tmp_path / "tt.yaml")[0] == 0
    code, _, err = run(
        "detect",
        "-t",
        ob,
        "--metrics",
        root / "online-boutique" / "metric",
        "--windows",
        tmp_path / "w.csv",
        "--out",
        tmp_path / "x.jsonl",
        "--metrics-offset",
        "soon",
    )
    assert (
        code == 1
        and "'--metrics-offset/--traces-offset' parameter of diagnosis detect must be a duration" in err
        and "'soon'" in err
    )


def test_version(capsys):
    assert run("--version")[0] == 0
    assert capsys.readouterr().out.startswith("diagnosis ")


def test_score_on_a_dask_scheduler_address(tmp_path):
    distributed = pytest.importorskip("distributed")
    topo = bundled_topology("webshop")
    assert run("simulate", "-t", topo, "-n", 300, "--seed", 5, "--out", tmp_path / "log.parquet")[0] == 0
    local = run("score", "-t", topo, tmp_path / "log.parquet", "--out", tmp_path / "local.parquet", "--format", "json")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        code, out, err = run("score", "-t", topo, tmp_path / "log.parquet", "--out", tmp_path / "dask.parquet",
                             "--scheduler", cluster.scheduler_address, "--format", "json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["metrics"] == json.loads(local[1])["metrics"]


def test_warnings_are_one_line_messages_never_errors(tmp_path):
    """A DiagnosisWarning (here: loopy BP instead of exact) prints as one 'warning:' line, even under -W error."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-m",
            "diagnosis",
            "query",
            "--model",
            str(tmp_path / "m.bif"),
            "--target",
            "A",
        ],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr  # a missing model file: the plain error path
    import io
    import warnings

    from diagnosis.cli import main as cli_main
    from diagnosis.exceptions import ApproximationWarning

    out, err = io.StringIO(), io.StringIO()

    def noisy(args, o, e):
        warnings.warn("an approximation was used", ApproximationWarning, stacklevel=1)
        print("done", file=o)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parser_args = ["topology", "check", str(root / "data" / "topologies" / "webshop.yaml")]
        import diagnosis.cli.model as model_cli

        real = model_cli._check_cmd
        model_cli._check_cmd = noisy
        try:
            code = cli_main(parser_args, stdout=out, stderr=err)
        finally:
            model_cli._check_cmd = real
    assert code == 0 and out.getvalue() == "done\n"
    assert err.getvalue() == "warning: an approximation was used [ApproximationWarning]\n"
