"""Batch scoring: metrics by hand, calibration sanity, resuming, and Dask equal to local."""

import json

import numpy as np
import pandas as pd
import pytest

from diagnosis import IncidentLogError, build_network, diagnose, make_engine
from diagnosis.logs.formats import read_incidents, write_incidents
from diagnosis.logs.scoring import calibrated_ece_top1, ece_top1, score_frame, score_log
from diagnosis.logs.simulate import simulate


def test_score_frame_agrees_with_diagnose(webshop):
    frame = simulate(webshop, 60, rng=8)
    net = build_network(webshop)
    rows, stats, rejects = score_frame(net, make_engine(net), frame)
    assert not rejects and len(rows) == 60 and stats.n_scored == 60
    for rec, row in zip(list(frame.records())[:10], rows.itertuples()):
        d = diagnose(net, rec.observation_mapping(), engine="reference")
        top = json.loads(row.top_locations)
        assert [top[0][0], top[0][1]] == [d.locations[0].component, d.locations[0].fault_mode]
        assert top[0][2] == pytest.approx(d.locations[0].probability, abs=1e-9)
        assert row.recommended_action == d.recommended.action and row.recommended_target == d.recommended.target
        assert row.expected_success == pytest.approx(d.recommended.expected_success, abs=1e-9)
        if rec.cause_component:
            true_p = d.posteriors[rec.cause_component][rec.cause_fault_mode]
            assert row.p_true_location == pytest.approx(true_p, abs=1e-9)
            assert row.rank_location == 1 + sum(loc.probability > true_p for loc in d.locations)


def test_metrics_by_hand(webshop):
    # Rebuild AC@k, MRR and Brier from the per-incident rows and compare with the summary.
    frame = simulate(webshop, 400, rng=9)
    net = build_network(webshop)
    rows, stats, _ = score_frame(net, make_engine(net), frame)
    m = {lvl: s.metrics() for lvl, s in stats.levels.items()}
    r = rows["rank_location"].dropna().to_numpy()
    assert m["location"]["n_ranked"] == len(r)
    for k in (1, 3, 5):
        assert m["location"][f"AC@{k}"] == pytest.approx(np.mean(r <= k))
    assert m["location"]["Avg@5"] == pytest.approx(np.mean([np.mean(r <= k) for k in range(1, 6)]))
    assert m["location"]["MRR"] == pytest.approx(np.mean(1 / r))
    # Brier over every (incident, location) pair, against the full fault list.
    sq, n = 0.0, 0
    for post, faults in zip(rows["posterior"], frame.incidents["faults"]):
        truth = set(faults.split("|")) if faults != "none" else set()
        p = json.loads(post)
        sq += sum((v - (k in truth)) ** 2 for k, v in p.items())
        n += len(p)
    assert m["location"]["brier"] == pytest.approx(sq / n)
    assert m["location"]["ece"] >= 0 and len(m["location"]["reliability"]) == 15


def test_calibration_sanity(boutique):
    # Simulated from the same model: well calibrated. Priors 10x too high: visibly not.
    frame = simulate(boutique, 3000, rng=21)
    net = build_network(boutique)
    _, good, _ = score_frame(net, make_engine(net), frame)
    wrong = build_network(boutique.with_scaled_priors(10.0))
    _, bad, _ = score_frame(wrong, make_engine(wrong), frame)
    g, b = good.levels["location"].metrics(), bad.levels["location"].metrics()
    assert g["ece_top1"] < 0.03
    assert b["ece_top1"] > 3 * g["ece_top1"] and b["ece_top1"] > 0.1
    assert b["log_loss"] > g["log_loss"]


def test_score_log_outputs(tmp_path, webshop):
    frame = simulate(webshop, 250, rng=2)
    log = write_incidents(frame, tmp_path / "log.jsonl")
    summary = score_log(webshop, log, tmp_path / "scored.csv", chunk_size=100)
    assert summary.n_scored == 250 and summary.n_chunks == 3
    rows = pd.read_csv(tmp_path / "scored.csv")
    assert list(rows["incident_id"]) == list(frame.incidents["id"])
    doc = json.loads((tmp_path / "scored.csv.summary.json").read_text())
    assert doc["n_scored"] == 250 and "AC@1" in doc["metrics"]["component"]
    assert (tmp_path / "scored.csv.rejects.jsonl").read_text() == ""
    assert not (tmp_path / "scored.csv.parts").exists()
    with pytest.raises(IncidentLogError, match="must end in .parquet, .jsonl or .csv"):
        score_log(webshop, log, tmp_path / "scored.txt")


def test_resume_does_not_redo_chunks(tmp_path, webshop, monkeypatch):
    import diagnosis.logs.scoring as scoring

    frame = simulate(webshop, 500, rng=3)
    log = write_incidents(frame, tmp_path / "log.jsonl")
    full = score_log(webshop, log, tmp_path / "full.parquet", chunk_size=100)

    calls = []
    real = scoring._score_chunk

    def flaky(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the run is interrupted during chunk 3
        return real(*args, **kw)

    monkeypatch.setattr(scoring, "_score_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        score_log(webshop, log, tmp_path / "resumed.parquet", chunk_size=100)
    assert len(list((tmp_path / "resumed.parquet.parts").glob("*.stats.json"))) == 2
    calls.clear()
    monkeypatch.setattr(scoring, "_score_chunk", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    resumed = score_log(webshop, log, tmp_path / "resumed.parquet", chunk_size=100)
    assert len(calls) == 3 and resumed.n_chunks_resumed == 2
    a, b = pd.read_parquet(tmp_path / "full.parquet"), pd.read_parquet(tmp_path / "resumed.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert b["incident_id"].is_unique
    assert resumed.metrics == full.metrics


def test_resume_refuses_different_arguments(tmp_path, webshop):
    log = write_incidents(simulate(webshop, 50, rng=1), tmp_path / "log.jsonl")
    parts = tmp_path / "out.parquet.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"fingerprint": "something else"}))
    with pytest.raises(IncidentLogError, match="different arguments"):
        score_log(webshop, log, tmp_path / "out.parquet", chunk_size=10)


def test_bad_records_are_scored_apart(tmp_path, webshop):
    frame = simulate(webshop, 40, rng=6)
    path = write_incidents(frame, tmp_path / "log.jsonl")
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:50]  # truncated
    lines[7] = lines[7].replace('"opened":"', '"opened":"x')  # bad timestamp
    lines[9] = lines[9].replace('"symptom":"db.', '"symptom":"dbx.', 1)  # unknown component's symptom
    path.write_text("\n".join(lines) + "\n")
    summary = score_log(webshop, path, tmp_path / "s.parquet", chunk_size=16)
    assert summary.n_scored == 37 and summary.n_rejected == 3
    rej = [json.loads(x) for x in (tmp_path / "s.parquet.rejects.jsonl").read_text().splitlines()]
    assert sorted(r["location"] for r in rej) == ["line 10", "line 4", "line 8"]


def test_dask_equals_local(tmp_path, webshop):
    distributed = pytest.importorskip("distributed")
    frame = simulate(webshop, 600, rng=7)
    folder = tmp_path / "log"
    folder.mkdir()
    for k in range(3):  # three Parquet partitions
        ids = frame.incidents["id"].iloc[k * 200 : (k + 1) * 200]
        write_incidents(frame.select(ids), folder / f"part-{k}.parquet")
    local = score_log(webshop, folder, tmp_path / "local.parquet", chunk_size=150)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            remote = score_log(webshop, folder, tmp_path / "dask.parquet", chunk_size=150, scheduler=client)
    assert remote.n_chunks == local.n_chunks == 6
    assert remote.metrics == local.metrics
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "dask.parquet")
    )
    assert len(read_incidents(folder)[0]) == 600


def test_ties_share_their_mid_rank_and_are_not_hits(tmp_path):
    # Two identical services and no evidence: they tie exactly. The tie is not a hit at AC@1;
    # the mid-rank and the top-1 hit rate are what scipy's "average" ranking and a random tie-break give.
    from scipy.stats import rankdata

    from diagnosis import Topology

    topo = Topology.from_dict(
        {"name": "twins", "components": [{"name": "a", "kind": "service"}, {"name": "b", "kind": "service"}]}
    )
    net = build_network(topo)
    path = tmp_path / "inc.jsonl"
    path.write_text(
        json.dumps(
            {
                "id": "i1",
                "topology": "twins",
                "opened": "2026-01-01T00:00:00Z",
                "observations": [],
                "root_cause": {"component": "a", "fault_mode": "crash"},
            }
        )
        + "\n"
    )
    frame, bad = read_incidents(path)
    rows, stats, _ = score_frame(net, make_engine(net), frame)
    assert bad == [] and len(rows) == 1
    post = json.loads(rows["posterior"].iloc[0])
    comp = {c: sum(v for k, v in post.items() if k.startswith(c + ":")) for c in ("a", "b")}
    assert comp["a"] == pytest.approx(comp["b"], rel=1e-12)
    assert rows["rank_component"].iloc[0] == 1.5
    # the location rank against an independent mid-rank of the same posterior
    names = list(post)
    expected = len(names) + 1 - rankdata([post[k] for k in names], method="average")[names.index("a:crash")]
    assert rows["rank_location"].iloc[0] == pytest.approx(expected)
    m = stats.levels["component"].metrics()
    assert m["AC@1"] == 0.0 and m["AC@2"] == 1.0 and m["MRR"] == pytest.approx(1 / 1.5)
    top = [b for b in m["reliability_top1"] if b["n"]]
    assert len(top) == 1 and top[0]["observed"] == pytest.approx(0.5)


def test_ece_top1_is_the_statistic_score_frame_reports(webshop):
    frame = simulate(webshop, 200, rng=4)
    net = build_network(webshop)
    rows, stats, _ = score_frame(net, make_engine(net), frame)
    from diagnosis.logs.schema import parse_faults

    inc = frame.incidents.set_index("id").loc[rows["incident_id"]]
    # the simulator writes every incident's fault list ("none" when healthy): the truth of every top answer
    assert inc["faults"].map(lambda f: isinstance(f, str)).all()
    faulty = [{c for c, _ in parse_faults(f)} for f in inc["faults"]]
    hit = [top in s for top, s in zip(rows["top_component"], faulty)]
    assert 0 < sum(hit) < len(hit)
    assert ece_top1(rows["p_top_component"], hit) == pytest.approx(
        stats.levels["component"].metrics()["ece_top1"], abs=1e-12
    )
    assert np.isnan(ece_top1([], []))
    with pytest.raises(ValueError, match="one entry per incident"):
        ece_top1([0.5], [1, 0])


def test_calibrated_ece_top1_is_the_expected_ece_of_outcomes_drawn_from_the_probabilities():
    """Against the exact expectation, by enumerating every outcome of ten incidents."""
    import itertools

    p = np.array([0.05, 0.2, 0.35, 0.5, 0.5, 0.62, 0.7, 0.81, 0.9, 0.97])
    exact = 0.0
    for ys in itertools.product((0, 1), repeat=len(p)):
        y = np.array(ys)
        exact += np.prod(np.where(y == 1, p, 1 - p)) * ece_top1(p, y)
    got = calibrated_ece_top1(p, n_draws=40_000, seed=1)
    assert got["mean"] == pytest.approx(exact, abs=0.004)
    assert got["q05"] <= got["q50"] <= got["q95"]
    # certain answers have no noise; a calibrated 50 % answer on 28 incidents is off by 0.075 on average
    assert calibrated_ece_top1([1.0, 0.0, 1.0])["mean"] == 0.0
    assert calibrated_ece_top1([0.5] * 28)["mean"] == pytest.approx(0.075, abs=0.005)
