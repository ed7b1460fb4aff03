"""Belief timeline: replay order, agreement with diagnose, failed actions as evidence, when it knew, turning points."""

import numpy as np
import pandas as pd
import pytest
from helpers import SEEDS, brute_force_marginals, random_topology

from diagnosis import IncidentLogError, build_network, diagnose, read_incidents
from diagnosis.logs.schema import ActionAttempt, Incident, ObservationRecord
from diagnosis.postmortem.timeline import belief_timeline

POSTMORTEM_LOG = "data/incidents/online-boutique-postmortem.jsonl"


@pytest.fixture(scope="module")
def cart_incident():
    from pathlib import Path

    frame, rejects = read_incidents(Path(__file__).resolve().parents[2] / POSTMORTEM_LOG)
    assert not rejects
    return {inc.id: inc for inc in frame.records()}


def test_bundled_incident_story(boutique, cart_incident):
    tl = belief_timeline(boutique, cart_incident["ob-2026-03-14-cart"])
    assert tl.n_steps == 1 + 11 + 3
    assert tl.events[0].kind == "opened" and tl.events[0].time == pd.Timestamp("2026-03-14T10:00:00Z")
    assert list(tl.minutes) == sorted(tl.minutes)
    # The memory alert of the Redis cache made the root cause top-1 for good.
    assert tl.knew_at == pd.Timestamp("2026-03-14T10:31:00Z")
    assert tl.events[tl.knew_at_step].finding == "redis-cart.memory"
    last = tl.turning_points[-1]
    assert last.finding == "redis-cart.memory" and last.after == ("redis-cart", "memory_pressure")
    ranks = tl.rank_of_truth()
    assert ranks[-1] == 1 and ranks[0] > 1
    # Each action taken against the recommendation of the moment.
    assert [(r.action, r.target, r.outcome) for r in tl.actions] == [
        ("rollback", "checkoutservice", "failure"),
        ("restart", "cartservice", "failure"),
        ("scale_out", "redis-cart", "success"),
    ]
    assert tl.actions[-1].followed and tl.actions[-1].rank == 1
    assert not tl.actions[1].followed and tl.actions[1].rank > 1
    assert all(r.plan_step for r in tl.actions)
    frame = tl.to_frame()
    assert list(frame.columns) == ["step", "time", "minutes", "kind", "finding", "observation", "top_component",
                                   "top_fault_mode", "p_top", "rank_of_truth"]  # fmt: skip
    assert frame["rank_of_truth"].iloc[-1] == 1


def test_observation_steps_agree_with_diagnose(boutique, cart_incident):
    inc = cart_incident["ob-2026-03-14-cart"]
    tl = belief_timeline(boutique, inc)
    index = {loc: i for i, loc in enumerate(tl.locations)}
    seen = {}
    for e in tl.events[1:]:
        if e.kind == "action":
            break
        obs = next(o for o in inc.observations if o.symptom == e.finding)
        seen[e.finding] = {"fired": obs.p_fired, "passed": obs.p_passed} if obs.value == "soft" else obs.value
        d = diagnose(boutique, seen)
        for loc in d.locations:
            assert tl.posterior[e.step, index[(loc.component, loc.fault_mode)]] == pytest.approx(
                loc.probability, abs=1e-10
            )


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_action_outcomes_are_virtual_evidence_by_enumeration(seed):
    topo = random_topology(seed, n_components=3)
    net = build_network(topo)
    t0 = pd.Timestamp("2026-01-01T00:00:00Z")
    symptom = topo.symptoms[0]
    incident = Incident(
        id="x", opened=t0, topology=topo.name,
        observations=(ObservationRecord(symptom, "fired", time=t0 + pd.Timedelta(minutes=1)),),
        actions=(ActionAttempt("fix", "c0", "failure", t0 + pd.Timedelta(minutes=2)),
                 ActionAttempt("fix", "c1", "success", t0 + pd.Timedelta(minutes=3))),
    )  # fmt: skip
    tl = belief_timeline(topo, incident)
    hard = {net.symptom_variable[symptom]: "fired"}
    soft = {}
    for target, outcome in (("c0", "failure"), ("c1", "success")):
        action = next(a for a in topo.actions if a.component == target)
        fv = net.fault_variable[target]
        succ = np.array([0.0 if s == "ok" else action.success.get(s, 0.0) for s in net.variable(fv).states])
        soft[fv] = np.maximum(1 - succ if outcome == "failure" else succ, 1e-12)
        expected = brute_force_marginals(net, hard, soft)
        step = 2 if target == "c0" else 3
        for j, (comp, mode) in enumerate(tl.locations):
            fvar = net.fault_variable[comp]
            k = net.variable(fvar).states.index(mode)
            assert tl.posterior[step, j] == pytest.approx(expected[fvar][k], abs=1e-10)


def test_untimed_findings_come_first_in_record_order(webshop):
    t0 = pd.Timestamp("2026-01-01T00:00:00Z")
    incident = Incident(
        id="y", opened=t0, topology="webshop",
        observations=(ObservationRecord("db.latency", "fired", time=t0 + pd.Timedelta(minutes=5)),
                      ObservationRecord("frontend.latency", "fired"),
                      ObservationRecord("backend.latency", "soft", p_fired=0.8, p_passed=0.1)),
        actions=(ActionAttempt("restart", "db", "unknown"),),
        cause_component="db", cause_fault_mode=None,
    )  # fmt: skip
    tl = belief_timeline(webshop, incident)
    assert [e.finding for e in tl.events] == [
        "opened",
        "frontend.latency",
        "backend.latency",
        "restart db",
        "db.latency",
    ]
    assert tl.events[2].observation == "fired:0.8,passed:0.1"
    # An unknown outcome adds nothing.
    np.testing.assert_allclose(tl.posterior[3], tl.posterior[2], atol=1e-12)
    # Only the component is known: ranked by P(any fault).
    assert tl.rank_of_truth()[-1] == 1 + int(
        (tl.p_faulty[-1] > tl.p_faulty[-1][tl.components.index("db")] * (1 + 1e-9)).sum()
    )


def test_no_known_cause(webshop):
    from diagnosis import simulate

    log = simulate(webshop, 30, rng=2)
    inc = next(i for i in log.records() if i.cause_component is None)
    tl = belief_timeline(webshop, inc)
    assert tl.rank_of_truth() is None and tl.knew_at is None and tl.knew_at_step is None
    assert tl.to_frame()["rank_of_truth"].isna().all()


def test_wrong_topology(webshop, boutique, cart_incident):
    with pytest.raises(
        IncidentLogError, match="incident 'ob-2026-03-14-cart' is on topology 'online-boutique', not 'webshop'"
    ):
        belief_timeline(webshop, cart_incident["ob-2026-03-14-cart"])
