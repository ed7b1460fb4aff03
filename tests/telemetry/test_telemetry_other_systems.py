"""Another system, as a new user meets it: the bundled Sock Shop topology and an RCD-style wide metrics CSV.

RCD and RCAEval publish one column per ``<container>_<metric>`` (``carts-db_cpu``,
``orders_latency-90``) with an epoch-seconds ``time`` column. Synthetic faults are
injected into seeded noise for the 13 containers RCD monitors; each must be found
on its own container (the datastore included), one window at a time, with the
library's defaults, and clean data must raise no symptom at p < 0.01.
"""

import numpy as np
import pandas as pd
import pytest

from diagnosis import build_network, bundled_topology, load_topology, make_engine
from diagnosis.logs.scoring import score_frame
from diagnosis.telemetry import detect, make_windows, read_metrics

RCD = ("carts", "carts-db", "catalogue", "catalogue-db", "front-end", "orders", "orders-db", "payment",
       "queue-master", "rabbitmq", "shipping", "user", "user-db")  # fmt: skip
SERVICES = {"carts", "catalogue", "front-end", "orders", "payment", "shipping", "user", "queue-master"}
T0 = pd.Timestamp("2024-05-01T10:00:00Z")
START = T0 + pd.Timedelta("35min")


def write_wide(path, inject=None, seed=0, names=None):
    """40 minutes every 15 s; ``inject`` = (column, factor) from START on; ``names``: container -> its telemetry name."""
    rng = np.random.default_rng(seed)
    secs = int(T0.timestamp()) + np.arange(160) * 15
    cols = {"time": secs}
    for c in RCD:
        n = (names or {}).get(c, c)
        cols[f"{n}_cpu"] = rng.gamma(20, 0.01, len(secs))
        cols[f"{n}_mem"] = 200 + rng.normal(0, 2, len(secs))
        if c in SERVICES:
            cols[f"{n}_latency-50"] = rng.gamma(30, 0.001, len(secs))
            cols[f"{n}_latency-90"] = rng.gamma(30, 0.002, len(secs))
    df = pd.DataFrame(cols)
    if inject is not None:
        col, factor = inject
        df.loc[secs >= int(START.timestamp()), col] *= factor
    df.to_csv(path, index=False)


@pytest.fixture(scope="module")
def sock_shop():
    topo = load_topology(bundled_topology("sock-shop"))
    net = build_network(topo)
    return topo, net, make_engine(net)


def _detect(topo, path, truth):
    w, _ = make_windows(
        [{"id": "w", "start": START.isoformat(), "component": truth}], duration="5min", baseline="30min"
    )
    return detect(topo, read_metrics(path), w)


@pytest.mark.parametrize(
    "column, factor, truth, symptom",
    [
        ("carts-db_cpu", 4.0, "carts-db", "carts-db.cpu"),
        ("orders_latency-90", 3.0, "orders", "orders.latency"),
        ("user_cpu", 4.0, "user", "user.cpu"),
        ("catalogue_mem", 1.2, "catalogue", "catalogue.memory"),
    ],
)
def test_a_fault_in_wide_rcd_metrics_is_found_on_its_container(tmp_path, sock_shop, column, factor, truth, symptom):
    topo, net, eng = sock_shop
    write_wide(tmp_path / "metrics.csv", (column, factor))
    frame, rejects, rep = _detect(topo, tmp_path / "metrics.csv", truth)
    assert rejects == [] and len(frame) == 1
    ev = rep.evidence.set_index("symptom")["p_value"]
    assert ev[symptom] < 0.01 and ev.drop(symptom).min() > 0.01
    rows, _, _ = score_frame(net, eng, frame)
    assert rows["top_component"].iloc[0] == truth and rows["rank_component"].iloc[0] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_wide_metrics_raise_no_symptom(tmp_path, sock_shop, seed):
    topo, _, _ = sock_shop
    write_wide(tmp_path / "metrics.csv", seed=seed)
    _, _, rep = _detect(topo, tmp_path / "metrics.csv", "carts")
    assert len(rep.evidence) > 20 and rep.evidence["p_value"].min() > 0.01


def test_replicas_are_counted_on_their_component(tmp_path, sock_shop):
    # StatefulSet pods (carts-db-0, rabbitmq-0) and numbered instances (payment1) are not components;
    # each is counted on the component it is a replica of, and the report says so.
    topo, net, eng = sock_shop
    names = {"carts-db": "carts-db-0", "rabbitmq": "rabbitmq-0", "payment": "payment1"}
    write_wide(tmp_path / "metrics.csv", ("carts-db-0_cpu", 4.0), names=names)
    frame, _, rep = _detect(topo, tmp_path / "metrics.csv", "carts-db")
    assert dict(rep.instances) == {"carts-db-0": "carts-db", "rabbitmq-0": "rabbitmq", "payment1": "payment"}
    assert rep.unknown_components == () and "rabbitmq" not in rep.silent_components
    assert any("carts-db-0 -> carts-db" in line for line in rep.lines())
    rows, _, _ = score_frame(net, eng, frame)
    assert rows["top_component"].iloc[0] == "carts-db"
