"""Regenerate data/topologies/train-ticket-nezha.yaml: Train Ticket as deployed in the Nezha data
(a development tool; the product never reads ../shared).

Usage: python data/build_nezha_topology.py [SHARED_REFERENCE_DIR]

The call graph is the one observed in that deployment's traces
(shared/reference/topologies/train-ticket-nezha-observed.yaml, collected from
IntelligentDDS/Nezha); calls are listed per caller in decreasing order of
observed calls. The deployment also ran services that its load generator
never exercised: they have metrics (a pod each in rca_data/2023-01-29/metric)
but no traces, and are added without calls, so they are candidates like the
others. `ts-ui-dashboard` (nginx) is a load balancer, as in
data/topologies/train-ticket.yaml. Datastores are not visible in the traces
or the metrics and are left out. Fault modes, detectors and actions are the
defaults by kind (diagnosis/data/defaults.yaml). Same style as
build_reference_topologies.py.
"""

import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REF = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent.parent / "shared" / "reference" / "topologies"
NAME = "train-ticket-nezha"
KINDS = {"ts-ui-dashboard": "load_balancer"}
# Services with a pod (and metrics) in the Nezha Train Ticket deployment of 2023-01-29 that never
# appear in its traces: IntelligentDDS/Nezha rca_data/2023-01-29/metric/<pod>_metric.csv.
UNEXERCISED = [
    "ts-admin-basic-info-service", "ts-admin-order-service", "ts-admin-route-service", "ts-admin-travel-service",
    "ts-admin-user-service", "ts-avatar-service", "ts-consign-price-service", "ts-consign-service",
    "ts-food-delivery-service", "ts-news-service", "ts-notification-service", "ts-rebook-service",
    "ts-route-plan-service", "ts-ticket-office-service", "ts-travel-plan-service", "ts-ui-dashboard",
    "ts-voucher-service", "ts-wait-order-service",
]  # fmt: skip


def convert() -> str:
    ref = yaml.safe_load((REF / "train-ticket-nezha-observed.yaml").read_text())
    counts = {}
    for key, n in (ref.get("call_counts") or {}).items():
        a, b = (s.strip() for s in key.split("->"))
        counts[(a, b)] = int(n)
    calls: dict[str, list[str]] = {}
    for src, dst, *_ in ref["calls"]:
        calls.setdefault(src, []).append(dst)
    for src, dsts in calls.items():
        dsts.sort(key=lambda dst, src=src: -counts.get((src, dst), 0))
    services = list(ref["services"])
    comps = []
    for s in services + [u for u in UNEXERCISED if u not in services]:
        c = {"name": s, "kind": KINDS.get(s, "service")}
        if s in calls:
            c["calls"] = calls[s]
        comps.append(c)
    doc = {
        "name": NAME,
        "description": f"Train Ticket as deployed in the Nezha data: call graph observed in traces ({ref['source']['repo']})",
        "cycles": "break",
        "components": comps,
    }
    src = ref["source"]
    header = (
        f"# {NAME}: Train Ticket as deployed for the Nezha fault injections (v1.0 line, with ts-gateway-service).\n"
        f"# Call graph OBSERVED in traces: {src['repo']} @ {src['commit']}\n"
        "# (as collected in shared/reference/topologies/train-ticket-nezha-observed.yaml; calls per caller by decreasing count).\n"
        f"# {len(UNEXERCISED)} deployed services seen only in the metrics (never in traces) are listed without calls.\n"
        "# Datastores are not visible in these traces and are left out.\n"
        "# Fault modes, detectors and actions are the defaults by kind (diagnosis/data/defaults.yaml).\n"
        "# Regenerate with: python data/build_nezha_topology.py\n"
    )
    text = header + yaml.safe_dump(doc, sort_keys=False, width=120)
    assert re.search(r"^name: ", text, re.MULTILINE)
    return text


if __name__ == "__main__":
    out = HERE / "topologies" / f"{NAME}.yaml"
    out.write_text(convert())
    print("wrote", out)
