"""A synthetic tree laid out like the RCAEval benchmark, for the importer's and the CLI's tests.

Sock Shop cases of RE1 (``data.csv``), RE2 (``simple_metrics.csv`` and ``metrics.csv``) and
RE3 (``metrics.csv``), each its own 30-minute run two hours from the next, seeded noise in a
wide CSV with an epoch-seconds ``time`` column, and the fault injected from the inject time on;
and four cases to set aside (an inject time that is not a number, one in milliseconds, a folder
name without ``_<fault>``, no metrics file).
"""

import numpy as np
import pandas as pd

CONTAINERS = ("carts", "carts-db", "catalogue", "catalogue-db", "front-end", "orders", "orders-db", "payment",
              "queue-master", "rabbitmq", "shipping", "user", "user-db")  # fmt: skip
SERVICES = {"carts", "catalogue", "front-end", "orders", "payment", "shipping", "user", "queue-master"}
T0 = int(pd.Timestamp("2024-05-01T00:00:00Z").timestamp())
# case folder, metrics file, the column the fault shows on and its factor; each run starts 2 h after the last
CASES = [
    ("RE1-SS/carts_cpu/1", "data.csv", "carts_cpu", 4.0),
    ("RE1-SS/user_mem/1", "data.csv", "user_mem", 1.2),
    ("RE2-SS/orders_delay/1", "simple_metrics.csv", "orders_latency-90", 3.0),
    ("RE2-SS/payment_disk/2", "metrics.csv", "payment_cpu", 4.0),
    ("RE3-SS/catalogue_f1/1", "metrics.csv", "catalogue_latency-90", 3.0),
]


def inject_at(k):
    return T0 + k * 7200 + 15 * 60


def write_case(folder, name, inject, column, factor, seed, time_copy=False):
    """30 minutes every 10 s around ``inject`` (15 min before it), ``column`` x ``factor`` from ``inject`` on."""
    rng = np.random.default_rng(seed)
    secs = inject - 15 * 60 + np.arange(180) * 10
    cols = {"time": secs}
    for c in CONTAINERS:
        cols[f"{c}_cpu"] = rng.gamma(20, 0.01, len(secs))
        cols[f"{c}_mem"] = 200 + rng.normal(0, 2, len(secs))
        if c in SERVICES:
            cols[f"{c}_latency-50"] = rng.gamma(30, 0.001, len(secs))
            cols[f"{c}_latency-90"] = rng.gamma(30, 0.002, len(secs))
    if time_copy:
        cols["time.1"] = secs
    df = pd.DataFrame(cols)
    if column is not None:
        df.loc[secs >= inject, column] *= factor
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / name, index=False)
    (folder / "inject_time.txt").write_text(f"{inject}\n")


def make_tree(root):
    for k, (case, name, column, factor) in enumerate(CASES):
        write_case(root / case, name, inject_at(k), column, factor, seed=k, time_copy=(k == 0))
        if name == "simple_metrics.csv":  # RE2 has both; the simple one is read
            write_case(root / case, "metrics.csv", inject_at(k), None, 1.0, seed=99)
            (root / case / "logs.csv").write_text("time,container_name,message\n")
    # cases to set aside
    bad = root / "RE1-SS" / "carts_mem" / "2"
    write_case(bad, "data.csv", inject_at(6), None, 1.0, seed=6)
    (bad / "inject_time.txt").write_text("soon\n")
    ms = root / "RE1-SS" / "front-end_cpu" / "1"
    write_case(ms, "data.csv", inject_at(7), None, 1.0, seed=7)
    (ms / "inject_time.txt").write_text(f"{inject_at(7) * 1000}\n")
    write_case(root / "RE2-SS" / "orders" / "1", "metrics.csv", inject_at(8), None, 1.0, seed=8)
    nometrics = root / "RE2-SS" / "shipping_cpu" / "1"
    nometrics.mkdir(parents=True)
    (nometrics / "inject_time.txt").write_text(f"{inject_at(9)}\n")
    (nometrics / "logs.csv").write_text("time,container_name,message\n")
    return root
