"""LikelihoodFitter: fitted soft-evidence ratios recover known densities, stay monotone and bounded, and round-trip
through the topology's ``likelihoods:`` section."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import brute_force_marginals, random_topology

from diagnosis import Topology, build_network
from diagnosis.exceptions import DiagnosisError, NotFittedError, ParameterError, TopologyError
from diagnosis.learning.likelihood import (
    LikelihoodFitter,
    expressible_ratios,
    fit_likelihoods,
    labelled_p_values,
    read_evidence,
    symptom_rates,
    virtual_ratio,
)
from diagnosis.logs.schema import IncidentFrame
from diagnosis.model.topology import LikelihoodCurve
from diagnosis.telemetry.detectors import EvidenceModel

GRID = np.logspace(-5, 0, 41)


def mixture(rng, n_ok, n_fault, a):
    """p-values: uniform when not faulty, Beta(a, 1) (density a p**(a-1)) when faulty."""
    p = np.concatenate([rng.uniform(size=n_ok), rng.beta(a, 1.0, size=n_fault)])
    return p, np.r_[np.zeros(n_ok, bool), np.ones(n_fault, bool)]


@pytest.mark.parametrize("a", [0.25, 0.5])
def test_recovers_the_ratio_of_a_known_beta_uniform_mixture(a):
    rng = np.random.default_rng(11)
    p, y = mixture(rng, 20_000, 5_000, a)
    f = LikelihoodFitter().fit(p, y, ["latency"] * len(p))
    pts = np.logspace(-3, 0, 13)
    true = a * pts ** (a - 1.0)  # the density ratio of Beta(a, 1) to Uniform(0, 1)
    fitted = f.ratio(pts, ["latency"] * len(pts))
    assert np.all(np.abs(np.log10(fitted / true)) < np.log10(1.6)), np.round(fitted / true, 2)
    assert f.counts_ == {"latency": (5000, 20000)}


def test_moves_away_from_the_prior_towards_the_data():
    rng = np.random.default_rng(3)
    p, y = mixture(rng, 20_000, 5_000, 0.6)
    f = LikelihoodFitter(prior_shape=0.25).fit(p, y)
    default = EvidenceModel(shape=0.25).ratio(np.array([0.5, 0.01]))
    true = 0.6 * np.array([0.5, 0.01]) ** -0.4
    got = f.ratio([0.5, 0.01])
    assert np.all(np.abs(np.log(got / true)) < np.abs(np.log(default / true)))


def test_with_no_data_the_curve_is_the_default_beta_uniform_ratio():
    for shape in (0.25, 0.4):
        f = LikelihoodFitter(prior_shape=shape).fit(np.zeros(0), np.zeros(0, bool), [])
        inside = GRID[(GRID >= 10 ** -f.pooled_.knots[-1]) & (GRID <= 10 ** -f.pooled_.knots[0])]
        np.testing.assert_allclose(f.ratio(inside), shape * inside ** (shape - 1.0), rtol=1e-4)
        assert f.curves_ == ()


def test_scarce_data_stays_near_the_prior_and_kinds_are_pooled():
    rng = np.random.default_rng(5)
    p, y = mixture(rng, 5000, 1500, 0.6)
    kinds = np.array(["latency"] * len(p), dtype=object)
    kinds[:20] = "cpu"  # twenty healthy cpu p-values and no faulty one
    f = LikelihoodFitter().fit(p, y, kinds)
    lone = LikelihoodFitter(pooling=False).fit(p, y, kinds)
    pts = np.array([0.5, 0.05, 0.005])
    np.testing.assert_allclose(np.log10(f.ratio(pts, ["cpu"] * 3)), np.log10(f.pooled_.ratio(pts)), atol=0.1)
    default = EvidenceModel().ratio(pts)
    np.testing.assert_allclose(np.log10(lone.ratio(pts, ["cpu"] * 3)), np.log10(default), atol=0.15)
    assert f.counts_["cpu"] == (0, 20)
    # a kind never seen gets the pooled curve
    np.testing.assert_array_equal(f.ratio(pts, ["memory"] * 3), f.pooled_.ratio(pts))


@pytest.mark.parametrize("seed", range(4))
def test_monotone_and_bounded_whatever_the_data(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    p = np.where(rng.uniform(size=n) < 0.2, 0.0, rng.uniform(size=n) ** rng.uniform(0.1, 8))
    y = rng.uniform(size=n) < rng.uniform(0.05, 0.95)
    f = LikelihoodFitter(max_log10_ratio=3.0, prior_sd=float(rng.uniform(0.1, 5))).fit(p, y)
    grid = np.r_[0.0, GRID, 1e-300]
    lr = f.ratio(grid)
    assert np.all(np.isfinite(lr)) and np.all(lr > 0)
    assert np.all(np.abs(np.log10(lr)) <= 3.0 + 1e-9)
    order = np.argsort(grid)
    assert np.all(np.diff(lr[order]) <= 1e-12 * lr[order][:-1])  # never weaker evidence for a smaller p


def test_bad_settings_and_inputs():
    with pytest.raises(NotFittedError, match="fit"):
        _ = LikelihoodFitter().curves_
    with pytest.raises(ParameterError, match="prior_shape"):
        LikelihoodFitter(prior_shape=1.0).fit([0.5], [True])
    with pytest.raises(ParameterError, match="max_log10_ratio"):
        LikelihoodFitter(max_log10_ratio=40).fit([0.5], [True])
    with pytest.raises(ParameterError, match="edges"):
        LikelihoodFitter(edges=(0.5, 1.0)).fit([0.5], [True])
    with pytest.raises(DiagnosisError, match=r"p-values must be in \[0, 1\]"):
        LikelihoodFitter().fit([0.5, 1.5], [True, False])
    with pytest.raises(DiagnosisError, match="one entry per p-value"):
        LikelihoodFitter().fit([0.5, 0.1], [True])
    with pytest.raises(DiagnosisError, match="booleans"):
        LikelihoodFitter().fit([0.5], [2])


def topo_dict():
    return {
        "name": "tiny",
        "components": [
            {"name": "front", "kind": "service", "calls": ["back"]},
            {"name": "back", "kind": "service"},
        ],
    }


def test_round_trip_through_the_topology_yaml():
    rng = np.random.default_rng(2)
    p, y = mixture(rng, 3000, 600, 0.4)
    kinds = rng.choice(["latency", "cpu"], size=len(p))
    f = LikelihoodFitter().fit(p, y, kinds)
    topo = Topology.from_dict(topo_dict())
    fitted = Topology.from_dict({**topo_dict(), "likelihoods": {c.watches: c.to_dict() for c in f.curves_}})
    text = yaml.safe_dump(fitted.to_dict(), sort_keys=False)
    again = Topology.from_dict(yaml.safe_load(text))
    assert again == fitted and again.likelihoods == f.curves_
    assert topo.likelihoods == () and "likelihoods" not in topo.to_dict()
    np.testing.assert_array_equal(again.likelihood("cpu").ratio(GRID), f.ratio(GRID, ["cpu"] * len(GRID)))
    assert again.likelihood("memory") is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"nosuch": {"neg_log10_p": [0, 1], "log10_ratio": [0, 1]}}, "likelihoods.nosuch: must be what some detector"),
        ({"latency": {"neg_log10_p": [0, 1], "log10_ratio": [1, 0]}}, "must be non-decreasing"),
        ({"latency": {"neg_log10_p": [1, 0], "log10_ratio": [0, 1]}}, "strictly increasing"),
        ({"latency": {"neg_log10_p": [0, 1], "log10_ratio": [0]}}, "as many log10_ratio"),
        ({"latency": {"neg_log10_p": [0, 1], "log10_ratio": [0, float("inf")]}}, "finite number"),
        ({"latency": {"neg_log10_p": [0, 1], "log10_ratio": [0, 13]}}, "never 0 or infinite"),
        ({"latency": {"neg_log10_p": "0 1", "log10_ratio": [0, 1]}}, "likelihoods.latency.neg_log10_p: must be a list"),
        ({"latency": {"neg_log10_p": [0], "log10_ratio": [0], "alpha": 1}}, "unknown field 'alpha'"),
        ({"latency": [0, 1]}, "likelihoods.latency: expected a mapping"),
    ],
)
def test_bad_likelihood_sections_name_the_field(section, message):
    with pytest.raises(TopologyError, match=message):
        Topology.from_dict({**topo_dict(), "likelihoods": section})


def test_a_curve_built_by_hand_is_validated_and_interpolated():
    c = LikelihoodCurve("latency", (0.0, 1.0, 3.0), (-1.0, 0.0, 2.0))
    # log10 LR linear in -log10 p between knots, constant outside
    np.testing.assert_allclose(np.log10(c.ratio([1.0, 10**-0.5, 1e-2, 1e-9])), [-1.0, -0.5, 1.0, 2.0])
    with pytest.raises(TopologyError, match="non-decreasing"):
        LikelihoodCurve("latency", (0.0, 1.0), (1.0, 0.0))
    with pytest.raises(DiagnosisError, match="LikelihoodCurve"):
        EvidenceModel(curves=({"latency": 1},))


def test_evidence_model_uses_the_curve_of_each_kind_only():
    c = LikelihoodCurve("latency", (0.0, 2.0), (0.0, 2.0))
    m = EvidenceModel(curves=(c,))
    p = np.array([1e-2, 1e-2, 1e-2])
    lr = m.ratio(p, ["latency", "cpu", None])
    np.testing.assert_allclose(lr, [100.0, 0.25 * 1e-2**-0.75, 0.25 * 1e-2**-0.75])
    pf, pp = m.likelihoods(p, ["latency", "cpu", None])
    np.testing.assert_allclose(pf / pp, lr)
    np.testing.assert_allclose(m.ratio(p), EvidenceModel().ratio(p))  # no kinds: the default


def test_labelled_p_values_and_the_evidence_file(tmp_path):
    topo = Topology.from_dict(topo_dict())
    inc = pd.DataFrame(
        {
            "id": ["i1", "i2", "i3"],
            "opened": pd.to_datetime(["2024-01-01T00:00Z"] * 3),
            "resolved": pd.to_datetime(["2024-01-01T00:05Z"] * 3),
            "topology": ["tiny"] * 3,
            "cause_component": ["back", None, None],
            "cause_fault_mode": ["crash", None, None],
            "faults": [None, "front:crash", None],
        }
    )
    frame = IncidentFrame(inc, pd.DataFrame(), pd.DataFrame())
    ev = pd.DataFrame(
        {
            "window_id": ["i1", "i1", "i2", "i2", "i3", "i1"],
            "symptom": ["back.latency", "front.latency", "back.latency", "front.latency", "front.latency", "x.y"],
            "p_value": [0.001, 0.2, 0.5, 0.01, 0.3, 0.1],
        }
    )
    ev.to_csv(tmp_path / "ev.csv", index=False)
    got = labelled_p_values(read_evidence(tmp_path / "ev.csv"), frame, topo)
    # i3 has no known cause and x.y is no symptom of the topology: left out
    assert got[["incident_id", "symptom", "faulty"]].values.tolist() == [
        ["i1", "back.latency", True],
        ["i1", "front.latency", False],
        ["i2", "back.latency", False],
        ["i2", "front.latency", True],
    ]
    assert set(got["watches"]) == {"latency"}
    (tmp_path / "bad.csv").write_text("window_id,symptom,p_value\ni1,back.latency,1.5\n")
    with pytest.raises(DiagnosisError, match=r"row 2: p_value must be a number in \[0, 1\]"):
        read_evidence(tmp_path / "bad.csv")
    (tmp_path / "cols.csv").write_text("window_id,p_value\ni1,0.5\n")
    with pytest.raises(DiagnosisError, match=r"missing \['symptom'\]"):
        read_evidence(tmp_path / "cols.csv")


def prior_mixture(network, component):
    """P(symptom fired | component faulty) and P(fired | ok) by enumeration, faulty weighted by the mode priors."""
    comp = network.topology.component(component)
    fv = network.fault_variable[component]
    out = {}
    for d in comp.detectors:
        sv = network.symptom_variable[d.symptom]
        fired = network.variable(sv).states.index("fired")
        num = den = 0.0
        for m in comp.fault_modes:
            num += m.prior * brute_force_marginals(network, {fv: m.name})[sv][fired]
            den += m.prior
        out[d.symptom] = (num / den, brute_force_marginals(network, {fv: "ok"})[sv][fired])
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_symptom_rates_match_enumeration(seed):
    topo = random_topology(seed, n_components=3, max_modes=2, max_detectors=2)
    net = build_network(topo)
    rates = symptom_rates(topo)
    for c in topo.components:
        for symptom, (s, f) in prior_mixture(net, c.name).items():
            assert rates[symptom] == pytest.approx((s, f), abs=1e-9)


def _one_symptom(seed):
    """A small random network, its first component's fault variable and first symptom: indices and (s, f)."""
    topo = random_topology(seed, n_components=3, max_modes=2, max_detectors=1)
    net = build_network(topo)
    c = topo.components[0]
    d = c.detectors[0]
    fv, sv = net.fault_variable[c.name], net.symptom_variable[d.symptom]
    ok = net.variable(fv).states.index("ok")
    fired = net.variable(sv).states.index("fired")
    s, f = symptom_rates(topo)[d.symptom]
    return net, fv, sv, ok, fired, s, f


@pytest.mark.parametrize("seed", [3, 4])
def test_the_virtual_evidence_gives_the_component_the_fitted_ratio(seed):
    """With L = virtual_ratio(R, s, f) on one symptom, the posterior odds of its component being faulty are
    R times the prior odds: the network sees the fitted density ratio, not the raw one."""
    net, fv, sv, ok, fired, s, f = _one_symptom(seed)
    prior_ok = brute_force_marginals(net, {})[fv][ok]
    for r in np.r_[np.geomspace((1 - s) / (1 - f) * 1.01, s / f * 0.99, 5)]:
        lv = float(virtual_ratio([r], s, f)[0])
        lik = np.ones(2)
        lik[fired] = lv
        post_ok = brute_force_marginals(net, {}, {sv: lik})[fv][ok]
        implied = ((1 - post_ok) / post_ok) / ((1 - prior_ok) / prior_ok)
        assert implied == pytest.approx(r, rel=1e-6)
    # beyond what the table can express: the strongest evidence allowed, finite
    assert virtual_ratio([s / f * 10], s, f)[0] == 1e6
    assert virtual_ratio([(1 - s) / (1 - f) / 10], s, f)[0] == 1e-6
    # a symptom that does not tell faulty from healthy: the ratio itself
    np.testing.assert_array_equal(virtual_ratio([3.0, 0.5], 0.2, 0.2), [3.0, 0.5])


@pytest.mark.parametrize("seed", [3, 4])
def test_expressible_ratios_are_the_limits_of_the_virtual_evidence(seed):
    """The ends of expressible_ratios are the component ratios of 'surely passed' and 'surely fired' on the
    symptom, by enumeration; virtual_ratio clips to them."""
    net, fv, sv, ok, fired, s, f = _one_symptom(seed)
    prior_ok = brute_force_marginals(net, {})[fv][ok]
    lo, hi = expressible_ratios([s], [f])
    for state, end in (("fired", hi[0]), ("passed", lo[0])):
        post_ok = brute_force_marginals(net, {sv: state})[fv][ok]
        assert ((1 - post_ok) / post_ok) / ((1 - prior_ok) / prior_ok) == pytest.approx(end, rel=1e-9)
    # a ratio beyond either end gets the component exactly that end (up to the 1e6 bound on L)
    for r, end in ((hi[0] * 3, hi[0]), (lo[0] / 3, lo[0])):
        lik = np.ones(2)
        lik[fired] = float(virtual_ratio([r], s, f)[0])
        post_ok = brute_force_marginals(net, {}, {sv: lik})[fv][ok]
        assert ((1 - post_ok) / post_ok) / ((1 - prior_ok) / prior_ok) == pytest.approx(end, rel=1e-4)
    lo, hi = expressible_ratios([0.2, 0.5, 0.3], [0.2, 0.0, np.nan])
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and np.isnan(lo[2]) and np.isnan(hi[2])
    assert lo[1] == pytest.approx(0.5) and hi[1] == np.inf


def synthetic_log(topo, seed, n=40):
    """Incidents with one random root cause each, and p-values: Beta(0.3, 1) at the root cause, uniform elsewhere."""
    rng = np.random.default_rng(seed)
    comps = [c for c in topo.components if c.detectors]
    ids = [f"{topo.name}-{i}" for i in range(n)]
    roots = [comps[int(rng.integers(len(comps)))] for _ in ids]
    inc = pd.DataFrame(
        {
            "id": ids,
            "opened": pd.to_datetime(["2024-01-01T00:00Z"] * n),
            "resolved": pd.to_datetime(["2024-01-01T00:05Z"] * n),
            "topology": [topo.name] * n,
            "cause_component": [c.name for c in roots],
            "cause_fault_mode": [c.fault_modes[0].name for c in roots],
            "faults": [None] * n,
        }
    )
    rows = []
    for i, root in zip(ids, roots):
        for c in comps:
            for d in c.detectors:
                p = rng.beta(0.3, 1.0) if c.name == root.name else rng.uniform()
                rows.append((i, d.symptom, float(p)))
    ev = pd.DataFrame(rows, columns=["window_id", "symptom", "p_value"])
    return IncidentFrame(inc, pd.DataFrame(), pd.DataFrame()), ev


def test_fit_likelihoods_pools_the_history_of_other_systems(tmp_path):
    here = Topology.from_dict(topo_dict())
    other = Topology.from_dict(
        {
            "name": "other",
            "components": [
                {"name": "api", "kind": "service", "uses": ["db"]},
                {"name": "db", "kind": "database"},
            ],
        }
    )
    log_a, ev_a = synthetic_log(here, 1)
    log_b, ev_b = synthetic_log(other, 2)
    ev_b.to_csv(tmp_path / "b.csv", index=False)
    fitted, fitter = fit_likelihoods(here, log_a, ev_a, history=[(other, log_b, tmp_path / "b.csv")])
    both = pd.concat([labelled_p_values(ev_a, log_a, here), labelled_p_values(ev_b, log_b, other)])
    ref = LikelihoodFitter().fit(both["p_value"], both["faulty"], both["watches"])
    assert fitter.curves_ == ref.curves_ and fitter.pooled_ == ref.pooled_
    # the database's kinds were fitted but 'here' does not watch them: not in its likelihoods section
    assert {"disk_usage", "consistency_check"} <= set(fitter.counts_)
    watched = {d.watches for d in here.detectors}
    assert {c.watches for c in fitted.likelihoods} == watched & set(fitter.counts_)
    alone, _ = fit_likelihoods(here, log_a, ev_a)
    assert alone.likelihood("latency") != fitted.likelihood("latency")  # the other system's p-values moved it
    assert fitter.counts_["latency"][0] == sum(
        1 for _, r in both.iterrows() if r["watches"] == "latency" and r["faulty"]
    )
    with pytest.raises(DiagnosisError, match=r"each history entry must be \(topology, incidents, evidence\)"):
        fit_likelihoods(here, log_a, ev_a, history=[(log_b, ev_b)])
    unlabelled = IncidentFrame(
        log_b.incidents.assign(cause_component=None, cause_fault_mode=None), pd.DataFrame(), pd.DataFrame()
    )
    with pytest.raises(DiagnosisError, match="no p-value of the evidence table"):
        fit_likelihoods(other, unlabelled, ev_b, history=[(other, unlabelled, ev_b)])
