"""End to end: `detect --save-evidence` -> `fit --evidence` -> `detect` with the fitted `likelihoods:` section."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import telemetry_synth as synth
import yaml

from diagnosis import load_topology
from diagnosis.cli import main
from diagnosis.learning.likelihood import symptom_rates

FAULTS = {
    60: ("back", "cpu_saturation", "CpuUsageRate(%)", 40.0),
    120: ("front", "cpu_saturation", "CpuUsageRate(%)", 40.0),
    180: ("store", "cpu_saturation", "PodServerLatencyP90(s)", 0.2),
    240: ("back", "cpu_saturation", "PodServerLatencyP90(s)", 0.2),
    300: ("store", "cpu_saturation", "CpuUsageRate(%)", 40.0),
}


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(map(str, argv)), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def soft_ratios(path):
    """(incident, symptom) -> p_fired / p_passed of every soft observation of a JSON Lines log."""
    out = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        for o in rec["observations"]:
            if o["value"] == "soft":
                out[(rec["id"], o["symptom"])] = o["p_fired"] / o["p_passed"]
    return out


def test_fit_likelihoods_from_a_detected_log_and_detect_with_them(tmp_path):
    shifts = [(c, metric, m, m + 4, d) for m, (c, _, metric, d) in FAULTS.items()]
    (tmp_path / "m.csv").write_text(synth.metrics(minutes=360, shifts=shifts).to_csv(index=False))
    rows = synth.windows(list(FAULTS), truth={m: (c, f) for m, (c, f, _, _) in FAULTS.items()})
    pd.DataFrame(rows).to_csv(tmp_path / "w.csv", index=False)
    topo = tmp_path / "t.yaml"
    topo.write_text(yaml.safe_dump(synth.topology().to_dict()))
    common = ("--metrics", tmp_path / "m.csv", "--windows", tmp_path / "w.csv")
    code, out, err = run("detect", "-t", topo, *common, "--out", tmp_path / "inc.jsonl",
                         "--save-evidence", tmp_path / "ev.csv")  # fmt: skip
    assert code == 0, err
    ev = pd.read_csv(tmp_path / "ev.csv")
    assert f"wrote {len(ev)} symptom p-values" in out
    # the default evidence: LR = a * p**(a - 1), a = 0.25
    before = soft_ratios(tmp_path / "inc.jsonl")
    key = list(zip(ev["window_id"], ev["symptom"]))
    np.testing.assert_allclose([before[k] for k in key], 0.25 * np.clip(ev["p_value"], 1e-12, 1) ** -0.75, rtol=1e-9)

    code, out, err = run("fit", "-t", topo, tmp_path / "inc.jsonl", "--evidence", tmp_path / "ev.csv",
                         "--out", tmp_path / "fitted.yaml", "--max-iter", "20")  # fmt: skip
    assert code == 0, err
    assert "soft-evidence likelihood ratios LR(p) fitted per detector kind" in out
    doc = yaml.safe_load((tmp_path / "fitted.yaml").read_text())
    assert set(doc["likelihoods"]) == {"cpu", "memory", "latency"}
    assert "cpu  " in out and "5/10" in out  # five faulty cpu p-values, ten healthy ones
    prov = json.loads((tmp_path / "fitted.yaml.provenance.json").read_text())
    assert prov["likelihoods"]["kinds"]["cpu"]["n_faulty"] == 5 and prov["likelihoods"]["kinds"]["cpu"]["n_ok"] == 10
    assert prov["likelihoods"]["kinds"]["cpu"]["log10_ratio"] == doc["likelihoods"]["cpu"]["log10_ratio"]
    assert prov["likelihoods"]["evidence"] == str(tmp_path / "ev.csv") and "counts" in prov

    # another system's labelled log pooled in (here the same log again: every count doubles)
    code, out, err = run("fit", "-t", topo, tmp_path / "inc.jsonl", "--evidence", tmp_path / "ev.csv",
                         "--history", topo, tmp_path / "inc.jsonl", tmp_path / "ev.csv",
                         "--out", tmp_path / "pooled.yaml", "--max-iter", "2")  # fmt: skip
    assert code == 0, err
    prov2 = json.loads((tmp_path / "pooled.yaml.provenance.json").read_text())["likelihoods"]
    assert prov2["kinds"]["cpu"]["n_faulty"] == 10 and prov2["kinds"]["cpu"]["n_ok"] == 20
    assert prov2["history"] == [{"topology": str(topo), "incidents": str(tmp_path / "inc.jsonl"),
                                 "evidence": str(tmp_path / "ev.csv")}]  # fmt: skip
    assert prov["likelihoods"]["history"] == []
    code, _, err = run("fit", "-t", topo, tmp_path / "inc.jsonl", "--history", topo, tmp_path / "inc.jsonl",
                       tmp_path / "ev.csv", "--out", tmp_path / "no.yaml")  # fmt: skip
    assert code != 0 and "--history needs --evidence" in err and "Traceback" not in err

    code, _, err = run("detect", "-t", tmp_path / "fitted.yaml", *common, "--out", tmp_path / "again.jsonl")
    assert code == 0, err
    after = soft_ratios(tmp_path / "again.jsonl")
    watches = {s: s.split(".")[1] for s in ev["symptom"]}
    rates = symptom_rates(load_topology(tmp_path / "fitted.yaml"))  # checked against brute force elsewhere
    expected = []
    for (_, symptom), p in zip(key, ev["p_value"]):
        c = doc["likelihoods"][watches[symptom]]
        r = 10 ** np.interp(-np.log10(max(p, 1e-12)), c["neg_log10_p"], c["log10_ratio"])
        s, f = rates[symptom]
        r = min(max(r, (1 - s) / (1 - f)), s / f)  # what one symptom can express under its table
        lv = (r * (1 - f) - (1 - s)) / (s - r * f) if s - r * f > 0 else 1e6
        expected.append(min(max(lv, 1e-6), 1e6))
    np.testing.assert_allclose([after[k] for k in key], expected, rtol=1e-7)
    assert not np.allclose([after[k] for k in key], [before[k] for k in key])


def test_fit_evidence_errors(tmp_path):
    df = synth.metrics(minutes=120)
    (tmp_path / "m.csv").write_text(df.to_csv(index=False))
    pd.DataFrame(synth.windows([60])).to_csv(tmp_path / "w.csv", index=False)  # no known root cause
    topo = tmp_path / "t.yaml"
    topo.write_text(yaml.safe_dump(synth.topology().to_dict()))
    code, _, err = run("detect", "-t", topo, "--metrics", tmp_path / "m.csv", "--windows", tmp_path / "w.csv",
                       "--out", tmp_path / "inc.jsonl", "--save-evidence", tmp_path / "ev.csv")  # fmt: skip
    assert code == 0, err
    code, _, err = run("fit", "-t", topo, tmp_path / "inc.jsonl", "--evidence", tmp_path / "ev.csv",
                       "--out", tmp_path / "f.yaml")  # fmt: skip
    assert code == 1 and "the likelihoods need labelled incidents" in err and "Traceback" not in err
    assert not (tmp_path / "f.yaml").exists()
    (tmp_path / "bad.csv").write_text("window_id,p_value\nw60,0.5\n")
    code, _, err = run("fit", "-t", topo, tmp_path / "inc.jsonl", "--evidence", tmp_path / "bad.csv",
                       "--out", tmp_path / "f.yaml")  # fmt: skip
    assert code == 1 and "missing ['symptom']" in err
    code, _, err = run("fit", "-t", topo, tmp_path / "inc.jsonl", "--evidence", tmp_path / "inc.jsonl",
                       "--out", tmp_path / "inc.jsonl")  # fmt: skip
    assert code != 0 and "Traceback" not in err
