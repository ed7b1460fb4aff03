"""Post-mortem plots run with the Agg backend and return their Axes."""

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from diagnosis import diagnose  # noqa: E402
from diagnosis.logs.schema import ActionAttempt, Incident, ObservationRecord  # noqa: E402
from diagnosis.plotting import (  # noqa: E402
    plot_contributions,
    plot_policy_costs,
    plot_policy_savings,
    plot_timeline,
    plot_topology,
    to_png,
)
from diagnosis.postmortem.explain import explain  # noqa: E402
from diagnosis.postmortem.planning import compare_policies  # noqa: E402
from diagnosis.postmortem.timeline import belief_timeline  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def test_plot_topology(webshop):
    d = diagnose(webshop, {"db.latency": "fired", "frontend.latency": "fired"})
    ax = plot_topology(webshop, d, highlight="db")
    labels = [t.get_text() for t in ax.texts]
    assert len(labels) == len(webshop.components)
    assert any(label.startswith("db\n") for label in labels)
    assert len(ax.patches) == len(webshop.dependencies)  # one arrow per dependency
    assert "outlined: db" in ax.get_title()
    # Without a posterior: the priors.
    ax = plot_topology(webshop)
    shown = {t.get_text().split("\n")[0]: float(t.get_text().split("\n")[1]) for t in ax.texts}
    assert shown == {c.name: pytest.approx(1 - c.p_ok, abs=0.005) for c in webshop.components}


def test_plot_timeline(webshop):
    t0 = pd.Timestamp("2026-01-01T00:00:00Z")
    inc = Incident(
        id="a$b", opened=t0, topology="webshop",
        observations=(ObservationRecord("frontend.latency", "fired", time=t0),
                      ObservationRecord("db.latency", "fired", time=t0 + pd.Timedelta(minutes=3))),
        actions=(ActionAttempt("restart", "backend", "failure", t0 + pd.Timedelta(minutes=6)),),
        cause_component="db", cause_fault_mode="slow_queries",
    )  # fmt: skip
    tl = belief_timeline(webshop, inc)
    ax = plot_timeline(tl, k=3)
    assert ax.get_xlabel() == "minutes since the incident opened"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "db: slow_queries (true cause)" in labels
    assert "a\\$b" in ax.get_title()  # a dollar sign is text, not mathtext


def test_plot_contributions_and_policy_costs(webshop):
    ex = explain(webshop, {"db.latency": "fired", "frontend.latency": "fired", "db.health_check": "passed"})
    ax = plot_contributions(ex.hypotheses[0])
    assert len(ax.patches) == 3
    cmp = compare_policies(webshop, 40, rng=1, policies=["plan", "naive"])
    ax = plot_policy_costs(cmp)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["plan", "naive"]
    ax = plot_policy_savings(cmp)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["plan"]
    assert ax.patches[0].get_height() == pytest.approx(cmp.saving("plan", "naive")["saving"])


def test_to_png(webshop):
    png = to_png(plot_topology, webshop, figsize=(6, 3), dpi=50)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
