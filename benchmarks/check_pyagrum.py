"""Independent check: `diagnosis diagnose --format json` against pyAgrum on the exported network.

Usage: .venv/bin/python benchmarks/check_pyagrum.py

For each bundled topology and its example incident: run the CLI, export the
network as XMLBIF and BIF, load each in pyAgrum, run LazyPropagation with the
JSON's evidence, and print the largest absolute difference over all locations.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pyagrum as gum

from diagnosis import bundled_incident, bundled_topology
from diagnosis.cli import main

CASES = [
    ("webshop", "webshop-slow-db"),
    ("online-boutique", "online-boutique-checkout"),
    ("train-ticket", "train-ticket-orders"),
]


def cli(*argv) -> str:
    out, err = io.StringIO(), io.StringIO()
    if main([str(a) for a in argv], stdout=out, stderr=err):
        raise SystemExit(err.getvalue())
    return out.getvalue()


def worst(doc: dict, path: Path) -> float:
    bn = gum.loadBN(str(path))
    ie = gum.LazyPropagation(bn)
    ie.setEvidence(doc["evidence"])
    ie.makeInference()
    diff = 0.0
    for loc in doc["locations"]:
        labels = list(bn.variable(loc["variable"]).labels())
        diff = max(diff, abs(ie.posterior(loc["variable"]).toarray()[labels.index(loc["state"])] - loc["probability"]))
    return diff


def main_() -> None:
    tmp = Path(tempfile.mkdtemp())
    print(f"{'topology':<16} {'locations':>9} {'engine':<24} {'max |diff| XMLBIF':>18} {'max |diff| BIF':>15}")
    for topo, inc in CASES:
        doc = json.loads(
            cli("diagnose", "-t", bundled_topology(topo), "--incident", bundled_incident(inc), "--format", "json")
        )
        cli("export", bundled_topology(topo), "--to", tmp / f"{topo}.xmlbif")
        (tmp / f"{topo}.xmlbif").rename(tmp / f"{topo}.bifxml")
        cli("export", bundled_topology(topo), "--to", tmp / f"{topo}.bif")
        print(
            f"{topo:<16} {len(doc['locations']):>9} {doc['engine']:<24} {worst(doc, tmp / f'{topo}.bifxml'):>18.2e} {worst(doc, tmp / f'{topo}.bif'):>15.2e}"
        )
    print("(pyAgrum reads BIF numbers in single precision; XMLBIF at full precision)")


if __name__ == "__main__":
    main_()
