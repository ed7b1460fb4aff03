"""PriorFitter: the expanded network, the estimator contract, provenance, settings and error branches.

The statistical properties (recovery of known parameters, EM against
discarding, held-out scoring) are in test_learning_statistics.py.
"""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from diagnosis import (
    DiagnosisError,
    IncidentFrame,
    IncidentLogError,
    ModelError,
    NotFittedError,
    Topology,
    build_network,
    load_topology,
    simulate,
)
from diagnosis.exceptions import ApproximationWarning, ConvergenceWarning, ParameterError
from diagnosis.inference.compiled import CompiledEngine
from diagnosis.inference.tables import ModelTables
from diagnosis.learning import (
    FitReport,
    PriorFitter,
    fit_topology,
    provenance_path,
    topology_parameters,
)
from diagnosis.learning._history import History
from diagnosis.learning._model import Layout, expanded_tables
from diagnosis.logs.formats import write_incidents
from diagnosis.logs.scoring import _evidence_arrays


@pytest.fixture(scope="module")
def log(webshop) -> IncidentFrame:
    return simulate(webshop, 600, rng=11)


@pytest.fixture(scope="module")
def fitted(webshop, log) -> PriorFitter:
    return PriorFitter().fit(log, webshop)


def _frame(records: list[dict], topology: str = "webshop") -> IncidentFrame:
    """A small frame from dicts: id, opened, cause, faults, observations [(symptom, value, pf, pp)], actions [(a, t, outcome)]."""
    inc, obs, acts = [], [], []
    for r in records:
        inc.append(
            {
                "id": r["id"],
                "opened": pd.Timestamp(r.get("opened", "2026-01-01"), tz="UTC"),
                "resolved": pd.NaT,
                "topology": topology,
                "cause_component": r.get("cause", (None, None))[0],
                "cause_fault_mode": r.get("cause", (None, None))[1],
                "faults": r.get("faults"),
            }
        )
        for s, v, *lik in r.get("observations", []):
            obs.append(
                {
                    "incident_id": r["id"],
                    "symptom": s,
                    "value": v,
                    "p_fired": lik[0] if lik else np.nan,
                    "p_passed": lik[1] if lik else np.nan,
                    "time": pd.NaT,
                }
            )
        for k, (a, t, o) in enumerate(r.get("actions", [])):
            acts.append({"incident_id": r["id"], "seq": k, "action": a, "target": t, "time": pd.NaT, "outcome": o})
    from diagnosis.logs.schema import (
        ACTION_COLUMNS,
        INCIDENT_COLUMNS,
        OBSERVATION_COLUMNS,
        _normalise,
    )

    return IncidentFrame(
        _normalise(pd.DataFrame(inc), INCIDENT_COLUMNS),
        _normalise(pd.DataFrame(obs, columns=list(OBSERVATION_COLUMNS)), OBSERVATION_COLUMNS),
        _normalise(pd.DataFrame(acts, columns=list(ACTION_COLUMNS)), ACTION_COLUMNS),
    )


# ------------------------------------------------------------------ the expanded network
@pytest.mark.parametrize("name", ["webshop", "boutique"])
def test_expanded_network_is_the_same_model(name, request):
    """Summing the activations out gives the noisy-OR network: same log P(evidence), same fault posteriors."""
    topo = request.getfixturevalue(name)
    layout = Layout.from_topology(topo)
    net = build_network(topo)
    plain = CompiledEngine(ModelTables.from_pgmpy(net.to_pgmpy()))
    expanded = CompiledEngine(expanded_tables(layout, layout.theta0))
    frame = simulate(topo, 300, rng=3)
    hard, soft = _evidence_arrays(net, frame)
    np.testing.assert_allclose(
        expanded.log_evidence(hard, soft, n_cases=300), plain.log_evidence(hard, soft, n_cases=300), rtol=0, atol=1e-10
    )
    c = topo.components[0]
    fv = net.fault_variable[c.name]
    fam = expanded.query([f"family__{fv[len('fault__') :]}"], hard, soft, n_cases=300)
    joint = next(iter(fam.values())).reshape(300, -1, 2)
    np.testing.assert_allclose(joint.sum(axis=2), plain.query([fv], hard, soft, n_cases=300)[fv], atol=1e-10)


def test_expanded_network_chains_long_or_lists():
    """A component with more dependencies than max_parents gets an OR chain, still the same model."""
    topo = Topology.from_dict({
        "name": "wide", "components": [
            {"name": "gw", "kind": "service", "calls": [f"s{i}" for i in range(8)]},
            *({"name": f"s{i}", "kind": "service"} for i in range(8)),
        ]})  # fmt: skip
    layout = Layout.from_topology(topo)
    tables = expanded_tables(layout, layout.theta0)
    assert any(n.startswith("or__gw__") for n in tables.names)
    assert max(len(p) for p in tables.parents) <= 6
    net = build_network(topo)
    frame = simulate(topo, 200, rng=4)
    hard, soft = _evidence_arrays(net, frame)
    plain = CompiledEngine(ModelTables.from_pgmpy(net.to_pgmpy()))
    np.testing.assert_allclose(
        CompiledEngine(tables).log_evidence(hard, soft, n_cases=200),
        plain.log_evidence(hard, soft, n_cases=200),
        atol=1e-10,
    )


def test_layout_round_trips_the_topology(webshop):
    layout = Layout.from_topology(webshop)
    assert layout.to_topology(layout.theta0).to_dict() == webshop.to_dict()
    values = topology_parameters(webshop)
    assert len(values) == layout.n_parameters
    assert values["sensitivity frontend.latency|impaired"] == 0.8
    assert values["success backend.rollback|bad_deploy"] == 0.95


# ------------------------------------------------------------------ incident arrays
def test_history_reads_labels_missing_checks_and_outcomes(webshop):
    frame = _frame([
        {"id": "a", "faults": "backend:crash", "observations": [("frontend.latency", "fired"), ("backend.cpu", "passed")]},
        {"id": "b", "cause": ("db", "down"), "actions": [("restart", "db", "success"), ("failover", "db", "unknown")]},
        {"id": "c", "cause": ("db", None), "observations": [("db.latency", "soft", 0.7, 0.2)]},
        {"id": "d", "faults": "none"},
        {"id": "e"},
    ])  # fmt: skip
    h = History.from_frame(frame, webshop)
    det = [d.symptom for d in webshop.detectors]
    assert h.observed[0, det.index("frontend.latency")] == 1
    assert h.observed[0, det.index("backend.cpu")] == 0
    assert h.observed[0, det.index("db.latency")] == -1  # not run: missing, not "passed"
    assert list(h.label_kind) == [2, 1, 1, 2, 0]
    names = webshop.component_names
    backend, db = h.labels[names.index("backend")], h.labels[names.index("db")]
    assert backend[0].tolist() == [0, 1, 0, 0, 0, 0]  # crash, and nothing else
    assert db[0].tolist() == [1, 0, 0, 0, 0]  # a full fault list says db was fine
    assert db[1].tolist() == [0, 1, 0, 0, 0]  # root cause db:down
    assert db[2].tolist() == [0, 1, 1, 1, 1]  # component known, mode unknown
    assert db[4].tolist() == [1, 1, 1, 1, 1]  # nothing known
    assert h.soft[det.index("db.latency")][2].tolist() == [0.2, 0.7]
    assert h.attempt_case.tolist() == [1] and h.attempt_success.tolist() == [True]
    assert h.n_unknown_outcomes == 1


def test_half_life_weights(webshop):
    frame = _frame([{"id": "old", "opened": "2026-01-01"}, {"id": "new", "opened": "2026-01-31"}])
    h = History.from_frame(frame, webshop, half_life_days=30)
    assert h.weight.tolist() == [0.5, 1.0]


# ------------------------------------------------------------------ the estimator contract
def test_init_only_stores_settings():
    f = PriorFitter(prior_weight=-3, selection="nonsense")  # checked in fit, not here
    assert f.get_params()["prior_weight"] == -3
    assert repr(f) == "PriorFitter(prior_weight=-3, selection='nonsense')"
    assert repr(PriorFitter()) == "PriorFitter()"


def test_fit_returns_self_with_learned_attributes(fitted, webshop):
    assert isinstance(fitted, PriorFitter)
    for name in (
        "topology_",
        "fitted_topology_",
        "parameters_",
        "intervals_",
        "pooling_",
        "rates_",
        "n_iter_",
        "converged_",
        "log_likelihood_",
        "report_",
    ):
        assert hasattr(fitted, name)
    assert fitted.converged_
    assert fitted.topology_ is webshop
    assert isinstance(fitted.report_, FitReport)
    assert len(fitted.parameters_) == len(topology_parameters(webshop))


def test_not_fitted_error():
    f = PriorFitter()
    with pytest.raises(NotFittedError, match="not fitted yet: 'fitted_topology_'"):
        f.fitted_topology_  # noqa: B018
    with pytest.raises(NotFittedError, match="call it first"):
        f.write("x.yaml")
    assert not hasattr(f, "report_")  # NotFittedError is an AttributeError
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        f.nonsense  # noqa: B018


def test_fitted_values_are_probabilities_with_intervals(fitted):
    for p in fitted.parameters_:
        assert 0.0 < p.value < 1.0, p
        assert p.lower <= p.value <= p.upper, p
        assert fitted.intervals_[p.key] == (p.lower, p.upper)
        assert 0.0 <= p.n_effective <= p.n_trials + 1e-9
        assert 0.0 <= p.prior_share <= 1.0 and 0.0 <= p.peer_share <= 1.0
    for c in fitted.fitted_topology_.components:
        assert math.fsum(m.prior for m in c.fault_modes) <= 1.0


def test_log_likelihood_improves(fitted):
    assert fitted.log_likelihood_ > fitted.report_.log_likelihood_start


def test_more_data_narrower_intervals(webshop, log, fitted):
    small = PriorFitter().fit(log.select(log.incidents["id"][:150]), webshop)
    key = "false_alarm frontend.latency"

    def width(f):
        return np.subtract(*reversed(f.intervals_[key]))

    assert width(fitted) < width(small)


def test_sections_not_fitted_keep_their_values(webshop, log):
    f = PriorFitter(sections=["fault_modes"], max_iter=20).fit(log, webshop)
    start = topology_parameters(webshop)
    for p in f.parameters_:
        if p.kind != "prior":
            assert p.value == start[p.key] and not p.fitted and (p.lower, p.upper) == (p.value, p.value)
            assert not p.prior_dominated
    assert any(p.value != start[p.key] for p in f.parameters_ if p.kind == "prior")


def test_acceleration_reaches_the_same_fit(webshop, log, fitted):
    plain = PriorFitter(accelerate=False, max_iter=1000, tol=1e-7).fit(log, webshop)
    fast = PriorFitter(max_iter=1000, tol=1e-7).fit(log, webshop)
    assert plain.converged_ and fast.converged_ and fast.n_iter_ < plain.n_iter_
    a = np.array([p.value for p in plain.parameters_])
    b = np.array([p.value for p in fast.parameters_])
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_uninformative_soft_evidence_and_unknown_outcomes_change_nothing(webshop):
    base = [
        {"id": f"i{k}", "faults": "backend:crash" if k % 3 == 0 else "none",
         "observations": [("frontend.latency", "fired" if k % 3 == 0 else "passed"), ("backend.health_check", "fired")],
         "actions": [("restart", "backend", "success" if k % 2 else "failure")]}
        for k in range(30)
    ]  # fmt: skip
    noisy = [
        {**r, "observations": r["observations"] + [("db.latency", "soft", 0.4, 0.4)],
         "actions": r["actions"] + [("rollback", "frontend", "unknown")]}
        for r in base
    ]  # fmt: skip
    a = PriorFitter(max_iter=30).fit(_frame(base), webshop)
    b = PriorFitter(max_iter=30).fit(_frame(noisy), webshop)
    np.testing.assert_allclose([p.value for p in a.parameters_], [p.value for p in b.parameters_], atol=1e-9)
    assert b.report_.counts["n_unknown_outcomes"] == 30


def test_root_cause_only_and_soft_labels_fit(webshop):
    frame = _frame([
        {"id": "a", "cause": ("db", "slow_queries"), "observations": [("db.latency", "fired"), ("frontend.latency", "fired")]},
        {"id": "b", "cause": ("backend", None), "observations": [("backend.error_rate", "soft", 0.9, 0.1)]},
        {"id": "c", "observations": [("frontend.error_rate", "fired")], "actions": [("restart", "frontend", "success")]},
    ])  # fmt: skip
    with pytest.warns(ConvergenceWarning, match="before converging"):
        f = PriorFitter(max_iter=10).fit(frame, webshop)
    c = f.report_.counts
    assert (c["n_fault_list"], c["n_root_cause"], c["n_unknown_cause"]) == (0, 2, 1)
    assert c["n_opened_by_firing"] == 2  # b has only a soft observation
    assert f.report_.parameter("prior db:slow_queries").value > topology_parameters(webshop)["prior db:slow_queries"]


# ------------------------------------------------------------------ pooling, decay, rates
def test_pooling_reports_how_much(fitted):
    groups = {(g.kind, g.fault_mode): g for g in fitted.pooling_}
    assert set(groups) == {
        ("service", m) for m in ("crash", "cpu_saturation", "memory_leak", "bad_deploy", "network_latency")
    }
    for g in groups.values():
        assert g.components == ("frontend", "backend") and g.concentration >= 0
        assert all(0 <= s < 1 for s in g.peer_share.values())
    g = groups[("service", "crash")]
    p = fitted.report_.parameter("prior frontend:crash")
    assert p.peer_share == pytest.approx(g.peer_share["frontend"]) and p.peer_share > 0
    assert "pooling service (2 components), concentration by fault mode: crash" in fitted.report_.summary()


def test_pooling_follows_the_data():
    """A mode that differs between peers is pooled less than one they share; a peer lends no more than it saw."""
    truth = Topology.from_dict({
        "name": "pair", "components": [
            {"name": "a", "kind": "service", "calls": ["b"], "fault_modes": {"bad_deploy": 0.002}},
            {"name": "b", "kind": "service", "fault_modes": {"bad_deploy": 0.05}},
        ]})  # fmt: skip
    start = Topology.from_dict(
        {
            "name": "pair",
            "components": [{"name": "a", "kind": "service", "calls": ["b"]}, {"name": "b", "kind": "service"}],
        }
    )
    f = PriorFitter(sections=["fault_modes"]).fit(simulate(truth, 1500, rng=21), start)
    kappa = {g.fault_mode: g.concentration for g in f.pooling_}
    assert kappa["bad_deploy"] < 0.01 * kappa["crash"]
    w = 10.0  # the default prior weight
    for p in f.parameters_:
        if (
            p.kind == "prior"
        ):  # the peer lends at most what it saw: its incidents (as many as ours) plus its prior weight
            assert p.peer_share <= (p.n_trials + w) / (w + (p.n_trials + w) + p.n_effective) + 1e-9
    bd = f.report_.parameter("prior b:bad_deploy")
    assert bd.lower < 0.05 < bd.upper


def test_no_pooling(webshop, log):
    f = PriorFitter(pooling=False, max_iter=30).fit(log, webshop)
    assert f.pooling_ and all(g.concentration == 0 for g in f.pooling_)
    assert all(p.peer_share == 0 for p in f.parameters_)


def test_rates_have_exposure(webshop):
    frame = simulate(webshop, 400, rng=2, mean_gap_hours=12.0)
    f = PriorFitter(max_iter=20, window_days=30).fit(frame, webshop)
    overall = f.rates_[0]
    assert (overall.component, overall.fault_mode) == ("", "")
    assert overall.lower < overall.per_window < overall.upper
    assert overall.per_window == pytest.approx(60.0, rel=0.15)  # two incidents a day
    assert f.report_.exposure_days == pytest.approx(400 * 0.5, rel=0.15)
    per_mode = sum(r.n_incidents for r in f.rates_[1:])
    assert per_mode <= 2 * 400  # expected faults among the logged incidents


def test_half_life_follows_recent_history(webshop):
    """Priors changed half-way through the log: with a short half-life the fit follows the recent half."""
    d = webshop.to_dict()
    d["components"][2]["fault_modes"]["slow_queries"]["prior"] = 0.08
    changed = Topology.from_dict(d)
    old = simulate(webshop, 500, rng=5, start="2026-01-01T00:00:00Z", mean_gap_hours=4, id_prefix="old")
    new = simulate(changed, 500, rng=6, start="2026-03-30T00:00:00Z", mean_gap_hours=4, id_prefix="new")
    both = IncidentFrame.concat([old, new])
    key = "prior db:slow_queries"
    flat = PriorFitter(pooling=False).fit(both, webshop).report_.parameter(key)
    decayed = PriorFitter(pooling=False, half_life="10D").fit(both, webshop).report_.parameter(key)
    assert abs(decayed.value - 0.08) < abs(flat.value - 0.08)
    assert decayed.n_trials < flat.n_trials / 2


# ------------------------------------------------------------------ the report and the files
def test_summary_names_the_biggest_moves_and_the_prior_dominated(fitted):
    text = fitted.report_.summary(k=5)
    assert "600 incidents" in text and "moved most from their priors" in text
    assert "still dominated by the prior" in text
    moved = fitted.report_.moved_most(5)
    assert [p.shift for p in moved] == sorted((p.shift for p in moved), reverse=True)
    assert moved[0].key in text
    dom = fitted.report_.prior_dominated()
    assert dom and all(p.prior_share >= 0.5 for p in dom)
    assert [p.n_trials for p in dom] == sorted(p.n_trials for p in dom)


def test_report_parameter_lookup_suggests(fitted):
    with pytest.raises(ParameterError, match="did you mean 'prior frontend:crash'"):
        fitted.report_.parameter("prior frontend:crsh")


def test_fit_topology_writes_yaml_and_provenance(tmp_path, webshop, log):
    src = write_incidents(log, tmp_path / "log.jsonl")
    out = tmp_path / "fitted.yaml"
    report = fit_topology(webshop, src, out, prior_weight={"actions": 5.0}, half_life="365d")
    text = out.read_text()
    assert text.startswith("# Fitted by diagnosis")
    assert "600 incidents (0 rejected)" in text and "sha256" in text
    back = load_topology(out)
    assert back.name == "webshop"
    values = topology_parameters(back)
    for p in report.parameters:
        assert values[p.key] == p.value
    side = json.loads(provenance_path(out).read_text())
    assert side["counts"]["n_incidents"] == 600 and side["incidents_source"] == str(src)
    assert side["first_opened"] < side["last_opened"]
    assert side["settings"]["prior_weight"]["actions"] == 5.0 and side["settings"]["half_life_days"] == 365.0
    assert {"key", "prior", "value", "lower", "upper", "n_trials", "prior_dominated"} <= set(side["parameters"][0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fitted.yaml", "fitted.yaml.provenance.json", "log.jsonl"]


def test_rejected_records_are_counted(tmp_path, webshop, log):
    frame = log.select(log.incidents["id"][:50])
    inc = frame.incidents.copy()
    inc.loc[0, "cause_component"] = "nonexistent"
    bad = IncidentFrame(inc, frame.observations, frame.actions)
    with pytest.warns(ConvergenceWarning, match="before converging"):
        f = PriorFitter(max_iter=5).fit(bad, webshop)
    assert f.report_.counts["n_rejected"] == 1 and f.report_.counts["n_incidents"] == 49


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "setting, value, allowed",
    [
        ("prior_weight", -1, "a number > 0 or a mapping"),
        ("prior_weight", {"detectors": 0}, "a number > 0 or a mapping"),
        ("pooling", "yes", "True or False"),
        ("half_life", "soon", "a duration such as '300s', '5min', '8h', '90d' or 'PT5M'"),
        ("half_life", -3, "a duration > 0"),
        ("half_life", 365, r"at least 3600 seconds \(a bare number is seconds\)"),
        ("selection", "fired", r"one of \['observed', 'none'\]"),
        ("sections", ["priors"], "a non-empty list of"),
        ("sections", "detectors", "a non-empty list of"),
        ("sections", [], "a non-empty list of"),
        ("interval", 1.5, r"a number in \(0, 1\)"),
        ("max_iter", 0, "an int >= 1"),
        ("tol", 0.0, "a number > 0"),
        ("accelerate", 1, "True or False"),
        ("window_days", -1, "a number > 0"),
        ("max_incidents", 0, "None or an int >= 1"),
        ("memory_budget_bytes", -5, "None or an int > 0"),
        ("engine", "loopy", r"one of \['auto', 'exact', 'approximate'\]"),
        ("max_selection_masks", 0, "None or an int >= 1"),
        ("rng", "seed", "None, an int seed or a numpy Generator"),
    ],
)
def test_bad_settings(setting, value, allowed, webshop, log):
    with pytest.raises(
        DiagnosisError,
        match=rf"The '{setting}' parameter of PriorFitter must be {allowed}.*Got {re.escape(repr(value))} instead",
    ):
        PriorFitter(**{setting: value}).fit(log, webshop)


def test_unknown_prior_weight_section(webshop, log):
    with pytest.raises(DiagnosisError, match=r"unknown section 'detector'; did you mean 'detectors'\?"):
        PriorFitter(prior_weight={"detector": 3}).fit(log, webshop)


def test_bad_incidents(webshop, boutique, log, tmp_path):
    with pytest.raises(IncidentLogError, match="must be an IncidentFrame or the path of an incident log. Got int"):
        PriorFitter().fit(42, webshop)
    with pytest.raises(IncidentLogError, match="file not found"):
        PriorFitter().fit(tmp_path / "missing.jsonl", webshop)
    with pytest.raises(
        IncidentLogError, match="no incident of the frame can be fitted on: 600 rejected for topology 'online-boutique'"
    ) as err:
        PriorFitter().fit(log, boutique)
    assert err.value.rows and err.value.rows[0]["field"] == "topology"


def test_write_needs_an_existing_folder(fitted, tmp_path):
    with pytest.raises(DiagnosisError, match="folder .* does not exist"):
        fitted.write(tmp_path / "nope" / "fitted.yaml")


def test_model_too_large_for_the_budget(webshop, log):
    with pytest.raises(ModelError, match="too large for exact EM"):
        PriorFitter(memory_budget_bytes=1000, engine="exact").fit(log, webshop)


# ------------------------------------------------------------------ the batched E-step
class _CaseByCase:
    """The E-step's engine, answering one case at a time through plain ``query`` and ``log_evidence``
    (each case its own plan, its evidence instantiated): the reference for the batched, deduplicated pass."""

    def __init__(self, tables):
        self.engine = CompiledEngine(tables)
        self.calls = 0

    def query_with_log_evidence(self, targets, evidence=None, soft_evidence=None, *, n_cases=None):
        evidence, soft_evidence = evidence or {}, soft_evidence or {}
        out, logz = {t: [] for t in targets}, []
        for i in range(n_cases):
            hard = {k: v[i : i + 1] for k, v in evidence.items()}
            soft = {k: v[i : i + 1] for k, v in soft_evidence.items()}
            q = self.engine.query(targets, hard, soft, n_cases=1)
            for t in targets:
                out[t].append(q[t][0])
            logz.append(self.engine.log_evidence(hard, soft, n_cases=1)[0])
        self.calls += n_cases
        return {t: np.array(v) for t, v in out.items()}, np.array(logz)


def _every_row(engine, targets, hard, soft, n):
    """The E-step's pass without the deduplication: every incident's row goes to the engine."""
    return engine.query_with_log_evidence(targets, hard, soft, n_cases=n)


def _repeated_log(webshop):
    """A webshop log in which many incidents repeat another's evidence (few checks run, labels known)."""
    few = {d.watches: 0.3 for d in webshop.detectors}
    log = simulate(webshop, 120, rng=21, p_observed=few)
    again = log.incidents.copy()
    again["id"] = again["id"] + "-again"
    obs = log.observations.copy()
    obs["incident_id"] = obs["incident_id"] + "-again"
    acts = log.actions.copy()
    acts["incident_id"] = acts["incident_id"] + "-again"
    import pandas as pd

    return IncidentFrame(
        pd.concat([log.incidents, again], ignore_index=True),
        pd.concat([log.observations, obs], ignore_index=True),
        pd.concat([log.actions, acts], ignore_index=True),
    )


@pytest.mark.parametrize("selection", [True, False])
def test_batched_e_step_matches_case_by_case(webshop, monkeypatch, selection):
    """One propagation over the distinct evidence rows gives every expected count, the information and the
    log-likelihood that single-case queries give, to 1e-9 (and propagates fewer rows than incidents)."""
    from diagnosis.learning import _em

    log = _repeated_log(webshop)
    layout = Layout.from_topology(webshop)
    hist = History.from_frame(log, webshop, half_life_days=200.0)
    theta = np.clip(layout.theta0 * 1.3, 0, 0.9)
    fast = _em.e_step(layout, theta, hist, selection=selection, with_likelihood=True, with_information=True)

    seen = []

    def reference(lay, th, budget, approximate=False):
        seen.append(_CaseByCase(expanded_tables(lay, th)))
        return seen[-1]

    monkeypatch.setattr(_em, "_engine", reference)
    monkeypatch.setattr(_em, "_query_distinct", _every_row)
    slow = _em.e_step(layout, theta, hist, selection=selection, with_likelihood=True, with_information=True)
    assert seen[0].calls >= hist.n  # the reference answered every incident itself
    for name in ("prior", "prior_real", "det_total", "det_fired", "act_trials", "act_success"):
        for a, b in zip(getattr(fast, name), getattr(slow, name)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=name)
    for name in ("impaired", "edge", "info_complete", "info_missing"):
        np.testing.assert_allclose(getattr(fast, name), getattr(slow, name), rtol=1e-9, atol=1e-9, err_msg=name)
    assert fast.n_unseen == pytest.approx(slow.n_unseen, rel=1e-9, abs=1e-12)
    assert (fast.n_unseen > 0) == selection
    assert fast.log_likelihood == pytest.approx(slow.log_likelihood, rel=1e-11)
    # the deduplication had something to do: the batched engine saw at most half as many rows as incidents
    monkeypatch.undo()
    sizes = []
    real = _em._engine

    def recording(lay, th, budget, approximate=False):
        engine = real(lay, th, budget, approximate)
        inner = engine.query_with_log_evidence

        def query_with_log_evidence(*args, n_cases=None, **kw):
            sizes.append(n_cases)
            return inner(*args, n_cases=n_cases, **kw)

        engine.query_with_log_evidence = query_with_log_evidence
        return engine

    monkeypatch.setattr(_em, "_engine", recording)
    _em.e_step(layout, theta, hist, selection=False)
    assert len(sizes) == 1 and sizes[0] <= hist.n // 2


def test_batched_fit_matches_case_by_case(webshop, monkeypatch):
    """Three EM iterations with the batched E-step land on the parameters the single-case E-step gives."""
    from diagnosis.learning import _em

    log = _repeated_log(webshop)
    with pytest.warns(ConvergenceWarning):
        fast = PriorFitter(max_iter=3, engine="exact").fit(log, webshop)
    monkeypatch.setattr(
        _em, "_engine", lambda lay, th, budget, approximate=False: _CaseByCase(expanded_tables(lay, th))
    )
    monkeypatch.setattr(_em, "_query_distinct", _every_row)
    with pytest.warns(ConvergenceWarning):
        slow = PriorFitter(max_iter=3, engine="exact").fit(log, webshop)
    a = np.array([p.value for p in fast.parameters_])
    b = np.array([p.value for p in slow.parameters_])
    assert np.abs(a - b).max() <= 1e-9
    assert np.abs(a - np.array([p.prior for p in fast.parameters_])).max() > 1e-3  # EM did move them
    assert fast.log_likelihood_ == pytest.approx(slow.log_likelihood_, rel=1e-11)


def test_approximate_e_step_warns_and_stays_close(webshop, log, monkeypatch):
    """engine="auto" when the exact engine does not fit, and engine="approximate", fit with loopy BP and
    say so; the fitted values stay near the exact fit's, and the log-likelihood is reported as not computed."""
    from diagnosis.learning import fitter as fitter_module

    exact = PriorFitter(engine="exact").fit(log, webshop)
    assert PriorFitter().fit(log, webshop).report_.settings["engine_used"] == "exact"

    def too_large(layout, budget):
        raise ModelError("topology 'webshop' is too large for exact EM: (pretend)")

    monkeypatch.setattr(fitter_module, "check_exact", too_large)
    with pytest.warns(ApproximationWarning, match="too large for exact EM.*loopy belief propagation"):
        auto = PriorFitter().fit(log, webshop)
    approx = PriorFitter(engine="approximate").fit(log, webshop)
    for f in (auto, approx):
        assert f.report_.settings["engine_used"] == "approximate"
        assert math.isnan(f.log_likelihood_)
        assert f.report_.to_dict()["log_likelihood"] is None
        assert "not computed" in f.report_.summary()
    a = np.array([p.value for p in approx.parameters_])
    e = np.array([p.value for p in exact.parameters_])
    np.testing.assert_allclose(np.array([p.value for p in auto.parameters_]), a, atol=1e-9)
    assert np.abs(a - e).max() < 0.005  # measured 0.0005
    assert exact.report_.settings["engine_used"] == "exact"


def test_approximate_selection_weight_against_exact(boutique):
    """The approximate P(every check run passed) per set of checks, against the exact engine's."""
    from diagnosis.learning import _em

    layout = Layout.from_topology(boutique)
    hist = History.from_frame(simulate(boutique, 200, rng=5), boutique)
    masks = np.unique(hist.observed >= 0, axis=0)
    net = layout.network
    ev = {
        net.symptom_variable[d.symptom]: np.where(masks[:, k], 0, -1).astype(np.int64)
        for k, d in enumerate(boutique.detectors)
    }
    exact = CompiledEngine(expanded_tables(layout, layout.theta0)).log_evidence(ev, n_cases=len(masks))
    fam, _ = _em._names(layout)
    _, approx = _em._engine(layout, layout.theta0, None, True).query_with_log_evidence(fam, ev, n_cases=len(masks))
    p_exact, p_approx = np.exp(exact), np.exp(approx)
    assert np.all(p_approx < 1.0)
    assert np.abs(p_approx - p_exact).max() < 0.01  # measured 0.0037 (docs/learning.md)


def test_topology_from_a_path(tmp_path, webshop, log):
    from diagnosis import bundled_topology

    with pytest.warns(ConvergenceWarning, match="before converging"):
        f = PriorFitter(max_iter=3).fit(log, bundled_topology("webshop"))
    assert f.report_.topology_source.endswith("webshop.yaml")


def test_boundary_values_stay_probabilities():
    """Starting values of exactly 0 or 1 (allowed in a topology) neither break EM nor leave [0, 1]."""
    topo = Topology.from_dict({"name": "edge", "leak": 0.0, "components": [
        {"name": "a", "kind": "service", "calls": [{"to": "b", "strength": 1.0}],
         "detectors": {"latency": {"false_alarm": 0.0}, "health_check": {"raised_by": {"crash": 1.0}}}},
        {"name": "b", "kind": "service", "fault_modes": {"crash": 0.0}},
    ]})  # fmt: skip
    f = PriorFitter().fit(simulate(topo, 300, rng=1), topo)
    assert f.converged_
    for key in ("prior b:crash", "strength a->b", "false_alarm a.latency", "sensitivity a.health_check|crash"):
        p = f.report_.parameter(key)
        assert p.value == p.prior and p.lower <= p.value <= p.upper
    assert all(0.0 <= p.lower <= p.value <= p.upper <= 1.0 for p in f.parameters_)


def test_sampled_selection_masks(webshop, log):
    """max_selection_masks: no sample (and the exact fit) when it covers every set of checks run; below that,
    a warned, reweighted sample whose fit stays near the exact one and whose unseen draws keep their total."""
    exact = PriorFitter(engine="exact").fit(log, webshop)
    hist = History.from_frame(log, webshop)
    opened = (hist.observed == 1).any(axis=1)
    n_masks = len(np.unique(hist.observed[opened] >= 0, axis=0))
    assert n_masks > 40
    same = PriorFitter(engine="exact", max_selection_masks=n_masks).fit(log, webshop)
    a, e = (np.array([p.value for p in f.parameters_]) for f in (same, exact))
    np.testing.assert_array_equal(a, e)
    with pytest.warns(ApproximationWarning, match=f"runs on 40 of the {n_masks} distinct sets"):
        sampled = PriorFitter(engine="exact", max_selection_masks=40).fit(log, webshop)
    s = np.array([p.value for p in sampled.parameters_])
    assert 0 < np.abs(s - e).max() < 0.02
    n_unseen = exact.report_.counts["n_unseen"]
    assert sampled.report_.counts["n_unseen"] == pytest.approx(n_unseen, rel=0.2)


def test_approximate_e_step_says_when_bp_did_not_converge(webshop):
    """An E-step whose loopy BP stops before its messages settle warns that its counts are unreliable."""
    from diagnosis.inference.approximate import LoopyBPEngine
    from diagnosis.learning import _em

    layout = Layout.from_topology(webshop)
    hist = History.from_frame(simulate(webshop, 50, rng=2), webshop)
    net = layout.network
    ev = {
        net.symptom_variable[d.symptom]: hist.observed[:, k].astype(np.int64) for k, d in enumerate(webshop.detectors)
    }
    fam, _ = _em._names(layout)
    tables = expanded_tables(layout, layout.theta0)
    bp = _em._BPWithEvidence(LoopyBPEngine(tables))
    bp.query_with_log_evidence(fam, n_cases=3)  # no evidence: converges, no warning (warnings are errors here)
    assert bp.engine.last_run.converged
    with pytest.warns(ApproximationWarning, match="did not converge for some incidents"):
        bp.query_with_log_evidence(fam, ev, n_cases=hist.n)  # measured: oscillates for some of these incidents
    assert not bp.engine.last_run.converged
