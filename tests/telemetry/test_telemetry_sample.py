"""The shipped demo sample (data/telemetry/, derived from the Nezha data): size, and the pipeline end to end."""

from pathlib import Path

import pytest

from diagnosis import build_network, load_topology, make_engine
from diagnosis.logs.scoring import score_frame
from diagnosis.telemetry import (
    derive_topology,
    detect,
    import_nezha,
    read_metrics,
    read_spans,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "telemetry"


def test_sample_is_small_and_credited():
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total <= 2_000_000
    assert "MIT License" in (SAMPLE / "LICENSE-nezha").read_text()
    assert "IntelligentDDS/Nezha" in (ROOT / "data" / "README.md").read_text()


@pytest.fixture(scope="module")
def boutique_run():
    ob = SAMPLE / "online-boutique"
    windows, imp = import_nezha(ob / "fault_list.json")
    metrics = read_metrics(ob / "metric")
    topo = load_topology(ROOT / "data" / "topologies" / "online-boutique.yaml")
    frame, rejects, report = detect(topo, metrics, windows, lead="60s")
    return windows, imp, metrics, topo, frame, rejects, report


def test_sample_pipeline(boutique_run):
    windows, imp, metrics, topo, frame, rejects, report = boutique_run
    assert len(windows) == 12 and imp.rejects == ()
    assert any("TimeStamp disagrees with Time" in n for n in metrics.report.notes)  # adservice's second clock
    assert rejects == [] and len(frame) == 12
    assert report.null["cpu"] == "empirical"
    net = build_network(topo)
    _, stats, _ = score_frame(net, make_engine(net), frame)
    # A loose floor, far below what the full benchmark measures: the sample must show the pipeline working.
    assert stats.levels["component"].metrics()["AC@3"] >= 0.5


def test_sample_traces_give_the_observed_call_graph():
    spans = read_spans(SAMPLE / "train-ticket" / "trace")
    declared = load_topology(ROOT / "data" / "topologies" / "train-ticket-nezha.yaml")
    _, diff = derive_topology(spans, declared=declared)
    assert diff.only_observed == () and len(diff.observed) > 40
    assert spans.report.malformed == 0 and spans.report.rows == len(spans) + spans.report.duplicates


def test_train_ticket_code_level_fault_from_the_bundled_logs():
    """The bundled Train Ticket sample: a `return` fault in ts-basic-service, found from its logs alone."""
    from diagnosis import build_network, load_topology, make_engine
    from diagnosis.logs.scoring import score_frame
    from diagnosis.telemetry import detect, import_nezha, read_logs, read_reference, read_spans

    root = Path(__file__).resolve().parents[2] / "data"
    tt = root / "telemetry" / "train-ticket"
    windows, _ = import_nezha(tt / "fault_list.json")
    topo = load_topology(root / "topologies" / "train-ticket-nezha.yaml")
    logs = read_logs(tt / "log")
    assert logs.report.rows > 6000 and logs.report.malformed == 0
    frame, rejects, rep = detect(
        topo, None, windows, traces=read_spans(tt / "trace"), logs=logs, reference=read_reference(tt / "fault-free"),
        lead="60s",
    )  # fmt: skip
    assert rejects == [] and len(frame) == 1
    ev = rep.evidence.set_index("symptom")
    assert ev.loc["ts-basic-service.log_errors", "p_value"] < 1e-6
    net = build_network(topo)
    rows, _, _ = score_frame(net, make_engine(net), frame)
    assert rows["top_component"].tolist() == ["ts-basic-service"]
