"""The RCAEval importer on a synthetic tree laid out like the benchmark: windows, set-aside cases, one detect over all.

Sock Shop cases of RE1 (``data.csv``), RE2 (``simple_metrics.csv`` and ``metrics.csv``) and
RE3 (``metrics.csv``), each its own 30-minute run two hours from the next, seeded noise in a
wide CSV with an epoch-seconds ``time`` column, and the fault injected from the inject time on.
"""

import pandas as pd
import pytest
from rcaeval_synth import CASES, inject_at, make_tree, write_case

from diagnosis import build_network, bundled_topology, load_topology, make_engine
from diagnosis.exceptions import TelemetryError
from diagnosis.logs.scoring import score_frame
from diagnosis.telemetry import (
    RCAEVAL_FAULT_MODES,
    detect,
    import_rcaeval,
    read_rcaeval_metrics,
    write_windows,
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("rcaeval"))


def test_import_rcaeval_windows(tree):
    w, rep = import_rcaeval(tree, duration="4min", baseline="8min")
    assert w["id"].tolist() == sorted(c[0] for c in CASES)
    by_id = w.set_index("id")
    assert by_id.loc["RE1-SS/carts_cpu/1", ["component", "entity", "fault_type", "fault_mode"]].tolist() == [
        "carts",
        "carts",
        "cpu",
        "cpu_saturation",
    ]
    assert by_id.loc["RE1-SS/user_mem/1", "fault_mode"] == "memory_leak"
    assert by_id.loc["RE2-SS/orders_delay/1", "fault_mode"] == "network_latency"
    assert by_id.loc["RE3-SS/catalogue_f1/1", "fault_mode"] == "bad_deploy"
    # disk: no default mode; the component is kept, as Nezha's importer does for unknown types
    assert by_id.loc["RE2-SS/payment_disk/2", "component"] == "payment"
    assert by_id.loc["RE2-SS/payment_disk/2", "fault_mode"] is None
    assert by_id.loc["RE1-SS/carts_cpu/1", "start"] == pd.Timestamp(inject_at(0), unit="s", tz="UTC")
    assert by_id.loc["RE1-SS/carts_cpu/1", "end"] - by_id.loc["RE1-SS/carts_cpu/1", "start"] == pd.Timedelta("4min")
    assert by_id.loc["RE1-SS/carts_cpu/1", "start"] - by_id.loc["RE1-SS/carts_cpu/1", "baseline_start"] == (
        pd.Timedelta("8min")
    )
    assert rep.metrics_files["RE2-SS/orders_delay/1"].endswith("simple_metrics.csv")
    assert rep.metrics_files["RE1-SS/carts_cpu/1"].endswith("data.csv")
    assert rep.metrics_files["RE3-SS/catalogue_f1/1"].endswith("metrics.csv")
    assert (rep.cases, rep.windows) == (9, 5)
    assert dict(rep.unmapped_types) == {"disk": 1}
    assert dict(rep.by_type) == {"cpu": 1, "delay": 1, "disk": 1, "f1": 1, "mem": 1}


def test_bad_cases_are_set_aside_and_counted(tree):
    _, rep = import_rcaeval(tree)
    why = {r.incident_id: (r.field, r.reason, r.value) for r in rep.rejects}
    assert set(why) == {"RE1-SS/carts_mem/2", "RE1-SS/front-end_cpu/1", "RE2-SS/orders/1", "RE2-SS/shipping_cpu/1"}
    assert why["RE1-SS/carts_mem/2"][:2] == ("inject time", "is not a number (a Unix time in seconds, e.g. 1692569339)")
    assert why["RE1-SS/carts_mem/2"][2] == "'soon'"
    assert "milliseconds" in why["RE1-SS/front-end_cpu/1"][1]
    assert why["RE2-SS/orders/1"][:2] == (
        "folder name",
        "is not <service>_<fault> (e.g. carts_cpu, ts-auth-service_delay, adservice_f1)",
    )
    assert why["RE2-SS/shipping_cpu/1"][0] == "metrics file" and "data.csv" in why["RE2-SS/shipping_cpu/1"][1]
    sources = {r.incident_id: r.source for r in rep.rejects}
    assert sources["RE1-SS/carts_mem/2"].endswith("carts_mem/2/inject_time.txt")
    text = "\n".join(rep.lines())
    assert "9 cases -> 5 windows" in text and "4 set aside" in text
    assert "no fault mode for the fault types disk 1" in text
    assert "1 set aside: folder name is not <service>_<fault>" in text


def test_other_systems_and_a_case_folder_as_root(tmp_path):
    write_case(tmp_path / "RE1-OB" / "adservice_cpu" / "1", "data.csv", inject_at(0), None, 1.0, seed=0)
    write_case(tmp_path / "RE2-TT" / "ts-auth-service_loss" / "3", "metrics.csv", inject_at(1), None, 1.0, seed=1)
    w, rep = import_rcaeval(tmp_path)
    assert w["id"].tolist() == ["RE1-OB/adservice_cpu/1", "RE2-TT/ts-auth-service_loss/3"]
    assert w["component"].tolist() == ["adservice", "ts-auth-service"]
    assert w["fault_mode"].tolist() == ["cpu_saturation", "network_latency"]
    one, _ = import_rcaeval(tmp_path / "RE2-TT" / "ts-auth-service_loss" / "3")
    assert one["id"].tolist() == ["ts-auth-service_loss/3"] and one["component"].tolist() == ["ts-auth-service"]


def test_fault_modes_cover_the_rcaeval_types():
    assert set(RCAEVAL_FAULT_MODES) == {"cpu", "mem", "delay", "loss", "f1", "f2", "f3", "f4", "f5"}
    assert not {"disk", "socket"} & set(RCAEVAL_FAULT_MODES)


def test_import_errors(tmp_path):
    with pytest.raises(TelemetryError, match="no such folder"):
        import_rcaeval(tmp_path / "none")
    (tmp_path / "empty" / "carts_cpu").mkdir(parents=True)
    with pytest.raises(TelemetryError, match=r"empty: holds no RCAEval case: no inject_time.txt"):
        import_rcaeval(tmp_path / "empty")


def test_one_detect_over_every_case_ranks_the_injected_service_first(tree, tmp_path):
    topo = load_topology(bundled_topology("sock-shop"))
    net = build_network(topo)
    w, rep = import_rcaeval(tree)
    metrics = read_rcaeval_metrics(tree, windows=w)
    assert len(metrics.report.files) == 5 and metrics.report.malformed == 0
    assert "time.1" not in set(metrics.samples["metric"])  # the copy of the time column is not a series
    frame, rejects, report = detect(topo, metrics, w)
    assert rejects == [] and len(frame) == 5
    rows, _, _ = score_frame(net, make_engine(net), frame)
    ranks = rows.set_index("incident_id")["rank_component"].to_dict()
    assert ranks == {c[0]: 1.0 for c in CASES}
    # the same from the files the report lists, and the windows written for the CLI
    again = read_rcaeval_metrics(rep.metrics_files.values())
    assert again.samples.equals(metrics.samples)
    assert write_windows(w, tmp_path / "w.csv").read_text().splitlines()[0].startswith("id,start,end")


def test_overlapping_cases_are_refused(tmp_path):
    write_case(tmp_path / "RE1-SS" / "carts_cpu" / "1", "data.csv", inject_at(0), None, 1.0, seed=0)
    write_case(tmp_path / "RE2-SS" / "carts_cpu" / "1", "metrics.csv", inject_at(0) + 600, None, 1.0, seed=1)
    with pytest.raises(TelemetryError, match=r"RE1-SS/carts_cpu/1/data.csv .* overlap in time"):
        read_rcaeval_metrics(tmp_path)


def test_a_window_reaching_into_another_case_is_refused(tmp_path):
    # two runs back to back: a 40-minute baseline of the second reaches into the first
    write_case(tmp_path / "RE1-SS" / "carts_cpu" / "1", "data.csv", inject_at(0), None, 1.0, seed=0)
    write_case(tmp_path / "RE1-SS" / "user_cpu" / "1", "data.csv", inject_at(0) + 1810, None, 1.0, seed=1)
    w, _ = import_rcaeval(tmp_path, baseline="40min")
    with pytest.raises(TelemetryError, match=r"window RE1-SS/user_cpu/1: .* reach into the data of 2 cases"):
        read_rcaeval_metrics(tmp_path, windows=w)
    w, _ = import_rcaeval(tmp_path)  # the default 10-minute baseline stays in its own run
    assert len(read_rcaeval_metrics(tmp_path, windows=w).report.files) == 2
