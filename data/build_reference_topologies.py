"""Regenerate data/topologies/<system>.yaml (SETTINGS) from the call graphs
in ../shared/reference/topologies/ (a development tool; the product never reads ../shared).

Usage: python data/build_reference_topologies.py [SHARED_REFERENCE_DIR]

Components keep the reference's names; datastores become `database` (MongoDB,
MySQL) or `cache` (Redis); fault modes, detectors and actions come from the
defaults by kind (diagnosis/data/defaults.yaml). The header of each output
names the source repository and commit.
"""

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REF = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent.parent / "shared" / "reference" / "topologies"
STORE_KIND = {
    "redis": "cache",
    "mongodb": "database",
    "mysql": "database",
    "memcached": "cache",
    "postgres": "database",
    "message-queue": "queue",
    "service-registry": "service",  # consul, zookeeper: every service that registers depends on it
}
SETTINGS = {
    "online-boutique": {"drop": {"loadgenerator"}, "kinds": {}, "cycles": None},
    "train-ticket": {"drop": set(), "kinds": {"ts-ui-dashboard": "load_balancer"}, "cycles": "break"},
    "sock-shop": {"drop": {"user-sim"}, "kinds": {"edge-router": "load_balancer"}, "cycles": None},
    "dsb-hotel-reservation": {"drop": set(), "kinds": {}, "cycles": None},
    "dsb-media-microservices": {"drop": set(), "kinds": {"nginx-web-server": "load_balancer"}, "cycles": None},
    "dsb-social-network": {"drop": set(), "kinds": {"nginx-thrift": "load_balancer"}, "cycles": None},
    "gaia-micross": {"drop": set(), "kinds": {}, "cycles": None},
}


def convert(name: str) -> str:
    ref = yaml.safe_load((REF / f"{name}.yaml").read_text())
    cfg = SETTINGS[name]
    services = [s for s in ref["services"] if s not in cfg["drop"]]
    stores = ref.get("datastores") or {}
    calls, uses = {}, {}
    for src, dst, *_ in ref.get("calls") or []:
        if src in cfg["drop"] or dst in cfg["drop"]:
            continue
        calls.setdefault(src, []).append(dst)
    for src, dst, *_ in ref.get("uses") or []:
        # a service registry is a service its clients call (uses: only datastores, caches and queues)
        (calls if STORE_KIND.get(stores.get(dst)) == "service" else uses).setdefault(src, []).append(dst)
    comps = []
    for s in services:
        c = {"name": s, "kind": cfg["kinds"].get(s, "service")}
        if s in calls:
            c["calls"] = calls[s]
        if s in uses:
            c["uses"] = uses[s]
        comps.append(c)
    for store, tech in stores.items():
        comps.append({"name": store, "kind": STORE_KIND[tech], "description": tech})
    doc = {"name": ref["system"], "description": f"{ref['system']} call graph from {ref['source']['repo']}"}
    if cfg["cycles"]:
        doc["cycles"] = cfg["cycles"]
    doc["components"] = comps
    src = ref["source"]
    header = (
        f"# {ref['system']}: service topology for diagnosis.\n"
        f"# Call graph from {src['repo']} @ {src['commit']}\n"
        f"# (files: {', '.join(src['files'])}), as collected in shared/reference/topologies/{name}.yaml.\n"
        "# Fault modes, detectors and actions are the defaults by kind (diagnosis/data/defaults.yaml).\n"
        "# Regenerate with: python data/build_reference_topologies.py\n"
    )
    for note in ref.get("notes") or []:  # the collector's remarks (facts about the deployment)
        header += "# Note: " + " ".join(str(note).split()) + "\n"
    if cfg["drop"]:
        header += f"# Left out: {', '.join(sorted(cfg['drop']))} (the load generator is a client, not part of the platform).\n"
    if cfg["cycles"]:
        header += "# The call graph has cycles (seat <-> travel, seat <-> travel2): 'cycles: break' drops the edge that closes each (docs/topology.md).\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=120)


if __name__ == "__main__":
    for name in SETTINGS:
        out = HERE / "topologies" / f"{name}.yaml"
        out.write_text(convert(name))
        print("wrote", out)
