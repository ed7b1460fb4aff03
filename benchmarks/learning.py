"""Fitting priors from incident history (`diagnosis fit`): what it recovers, and what it is worth.

Usage: .venv/bin/python benchmarks/learning.py [--n-fit 5000] [--n-test 5000] [--seed 1] [--quick]
       [--only heldout discard selection missing recovery scale] [--engine auto] [--max-selection-masks M] [--exact-sample 64]

Sections (each prints a table; docs/learning.md quotes them):

heldout    Online Boutique. A "true" model and starting topologies whose fault
           priors are 10x too high / too low; fit each on a history simulated
           from the truth, then score a held-out simulated log with the
           starting, the fitted and the true model (AC@1, log loss, ECE).
discard    Online Boutique, every section of the start wrong (priors x10, false
           alarms x3, sensitivities, strengths and successes halfway to 0.5).
           30% of root causes hidden, at random (MCAR) or more often when
           few symptoms fired (MAR); EM on every incident against discarding
           the unlabelled ones. Mean absolute error per parameter kind.
selection  Webshop. The correction for "an incident opens only when a check
           fires" on and off.
missing    Checks not run. How many rows pgmpy's EM keeps (it drops rows with
           any missing value); our EM reading not-run checks as missing
           against reading them as "passed"; pgmpy's EM on a fully observed log.
recovery   Webshop, wrong start, prior weight 1, several seeds: the share of
           parameters within 5/sqrt(n) of the truth (n = the observations behind
           each) and the coverage of the 90% credible intervals.
scale      Train Ticket (not run by default: about half an hour): `score` and `fit`
           on the same simulated history in one run, their ratio, the EM
           iterations, the fitted parameters' mean absolute error against the
           truth; one E-step's propagations on --exact-sample incidents as they
           were (a plan per evidence pattern), as they are, and on loopy BP.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np

from diagnosis import (
    IncidentFrame,
    Topology,
    build_network,
    bundled_topology,
    load_topology,
    make_engine,
)
from diagnosis.learning import PriorFitter, topology_parameters
from diagnosis.logs.scoring import ScoreSummary, score_frame
from diagnosis.logs.simulate import P_OBSERVED, P_OBSERVED_OTHER, simulate

KINDS = ("prior", "false_alarm", "sensitivity", "strength", "success")


# --------------------------------------------------------------------------- models


def perturbed(topo: Topology) -> Topology:
    """Every section wrong: priors x10, false alarms x3, other probabilities halfway to 0.5."""

    def half(p):
        return 0.5 + (p - 0.5) / 2

    d = topo.to_dict()
    for c in d["components"]:
        for spec in c["fault_modes"].values():
            spec["prior"] *= 10
        for det in c["detectors"].values():
            det["false_alarm"] = min(3 * det["false_alarm"], 0.5)
            det["raised_by"] = {t: half(p) for t, p in det["raised_by"].items()}
        for act in c["actions"].values():
            act["success"] = {m: half(p) for m, p in act["success"].items()}
        for key in ("calls", "uses"):
            for e in c.get(key, []):
                e["strength"] = half(e["strength"])
        if "host_strength" in c:
            c["host_strength"] = half(c["host_strength"])
    return Topology.from_dict(d)


def hide_causes(log: IncidentFrame, share: float, mode: str, rng: int) -> tuple[IncidentFrame, np.ndarray]:
    """Forget the root cause (and fault list) of about ``share`` of the incidents."""
    inc = log.incidents.copy()
    gen = np.random.default_rng(rng)
    if mode == "MCAR":
        p = np.full(len(inc), share)
    elif mode == "MNAR":  # false alarms are never labelled, and `share` of the real causes go unconfirmed
        p = np.where(inc["faults"].to_numpy() == "none", 1.0, share)
    else:  # MAR: incidents with at most one fired symptom are confirmed far less often
        fired = log.observations[log.observations["value"] == "fired"].groupby("incident_id").size()
        n_fired = fired.reindex(inc["id"]).fillna(0).to_numpy()
        p = np.where(n_fired <= 1, 0.6, 0.1)
        p = np.clip(p * share / p.mean(), 0, 1)
    hidden = gen.random(len(inc)) < p
    inc.loc[hidden, ["cause_component", "cause_fault_mode", "faults"]] = None
    return IncidentFrame(inc, log.observations, log.actions), hidden


def errors(fitter: PriorFitter, truth: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Per kind: mean absolute error, and mean |log(fitted / true)|."""
    out: dict[str, list] = {}
    for p in fitter.parameters_:
        t = truth[p.key]
        out.setdefault(p.kind, []).append((abs(p.value - t), abs(np.log(p.value / t))))
    return {k: tuple(np.mean(np.array(v), axis=0)) for k, v in out.items()}


def metrics(topo: Topology, log: IncidentFrame) -> dict:
    net = build_network(topo)
    _, stats, _ = score_frame(net, make_engine(net), log)
    return ScoreSummary.from_stats(stats).metrics


# --------------------------------------------------------------------------- sections
def heldout(args) -> None:
    truth = load_topology(bundled_topology("online-boutique"))
    history = simulate(truth, args.n_fit, rng=args.seed)
    test = simulate(truth, args.n_test, rng=args.seed + 1000)
    print(
        f"\n## Held-out scoring: Online Boutique, fit on {len(history)} simulated incidents, score {len(test)} others"
    )
    print(f"{'model':<26} {'level':<10} {'AC@1':>6} {'AC@3':>6} {'log loss':>9} {'ECE':>8} {'ECE top-1':>10}")
    rows = [("true model", truth)]
    for label, factor in (("priors x10", 10.0), ("priors /10", 0.1)):
        start = truth.with_scaled_priors(factor)
        t = time.perf_counter()
        fitter = PriorFitter(rng=args.seed).fit(history, start)
        took = time.perf_counter() - t
        rows += [(f"{label}: start", start), (f"{label}: fitted", fitter.fitted_topology_)]
        print(f"  ({label}: fit in {took:.1f} s, {fitter.n_iter_} EM steps, converged={fitter.converged_})")
    for name, topo in rows:
        m = metrics(topo, test)
        for level in ("location", "component"):
            x = m[level]
            print(
                f"{name:<26} {level:<10} {x['AC@1']:>6.3f} {x['AC@3']:>6.3f} {x['log_loss']:>9.4f} "
                f"{x['ece']:>8.5f} {x['ece_top1']:>10.4f}"
            )


def discard(args) -> None:
    truth = load_topology(bundled_topology("online-boutique"))
    start = perturbed(truth)
    true = topology_parameters(truth)
    log = simulate(truth, args.n_fit, rng=args.seed)
    print(
        f"\n## EM against discarding unlabelled incidents: Online Boutique, {len(log)} incidents, "
        f"start wrong in every section, 30% of root causes hidden"
    )
    print(
        f"{'hidden':<6} {'method':<30} {'time':>6} " + " ".join(f"{k:>12}" for k in KINDS) + f" {'prior |log r|':>14}"
    )
    for mode in ("MCAR", "MAR", "MNAR"):
        hidden_log, hidden = hide_causes(log, 0.3, mode, args.seed)
        kept = hidden_log.select(hidden_log.incidents["id"][~hidden])
        for label, data in ((f"EM, all {len(hidden_log)}", hidden_log), (f"discard, {len(kept)} labelled", kept)):
            t = time.perf_counter()
            f = PriorFitter(prior_weight=1.0).fit(data, start)
            took = time.perf_counter() - t
            e = errors(f, true)
            print(
                f"{mode:<6} {label:<30} {took:>5.1f}s "
                + " ".join(f"{e[k][0]:>12.5f}" for k in KINDS)
                + f" {e['prior'][1]:>14.3f}"
            )
    print(
        "(mean absolute error per parameter kind; last column: mean |log(fitted/true)| of the fault priors.\n"
        " MCAR: hidden at random; MAR: hidden more often when at most one symptom fired; MNAR: false alarms never\n"
        " labelled (faults: none missing) and 30% of real causes hidden, so 'unknown' means 'probably no fault')"
    )


def selection(args) -> None:
    truth = load_topology(bundled_topology("webshop"))
    start = perturbed(truth)
    true = topology_parameters(truth)
    log = simulate(truth, args.n_fit, rng=args.seed)
    test = simulate(truth, args.n_test, rng=args.seed + 1000)
    print(f"\n## Selection correction: webshop, {len(log)} incidents (each opened because a check fired)")
    print(
        f"{'selection':<10} " + " ".join(f"{k:>12}" for k in KINDS) + f" {'prior |log r|':>14} {'FA |log r|':>11}"
        f" {'held-out log loss':>18} {'ECE top-1':>10}"
    )
    for sel in ("observed", "none"):
        f = PriorFitter(prior_weight=1.0, selection=sel).fit(log, start)
        e = errors(f, true)
        m = metrics(f.fitted_topology_, test)["location"]
        print(
            f"{sel:<10} "
            + " ".join(f"{e[k][0]:>12.5f}" for k in KINDS)
            + f" {e['prior'][1]:>14.3f} {e['false_alarm'][1]:>11.3f} {m['log_loss']:>18.4f} {m['ece_top1']:>10.4f}"
        )
    m = metrics(truth, test)["location"]
    print(
        f"{'(truth)':<10} "
        + " " * (13 * len(KINDS))
        + f" {'':>14} {'':>11} {m['log_loss']:>18.4f} {m['ece_top1']:>10.4f}"
    )


def _pgmpy_frame(topo: Topology, log: IncidentFrame):
    """The log as pgmpy's EM wants it: one column per fault and symptom variable, NaN where unknown."""
    import pandas as pd

    net = build_network(topo)
    inc = log.incidents
    cols = {}
    for c in topo.components:
        col = np.full(len(inc), np.nan, dtype=object)
        for i, f in enumerate(inc["faults"].to_numpy(dtype=object)):
            if f is None:
                continue
            col[i] = "ok"
            for item in [] if f == "none" else f.split("|"):
                comp, mode = item.split(":")
                if comp == c.name:
                    col[i] = mode
        cols[net.fault_variable[c.name]] = col
    obs = log.observations.pivot(index="incident_id", columns="symptom", values="value").reindex(inc["id"])
    for d in topo.detectors:
        values = obs[d.symptom].to_numpy(dtype=object) if d.symptom in obs else np.full(len(inc), np.nan, dtype=object)
        cols[net.symptom_variable[d.symptom]] = np.where(pd.isna(values), np.nan, values)
    return pd.DataFrame(cols), net


def missing(args) -> None:
    print("\n## Checks not run: pgmpy's EM drops the rows, ours sums the missing checks out")
    for name in ("webshop", "online-boutique"):
        topo = load_topology(bundled_topology(name))
        log = simulate(topo, args.n_fit, rng=args.seed)
        df, _ = _pgmpy_frame(topo, log)
        p_all = np.prod([P_OBSERVED.get(d.watches, P_OBSERVED_OTHER) for d in topo.detectors])
        print(
            f"{name}: {len(df)} incidents, {100 * df.isna().to_numpy().mean():.0f}% of cells missing; rows pgmpy's "
            f"EM keeps: {len(df.dropna())} (P(every one of {len(topo.detectors)} checks ran) = {p_all:.2g})"
        )

    truth = load_topology(bundled_topology("webshop"))
    start = perturbed(truth)
    true = topology_parameters(truth)
    log = simulate(truth, args.n_fit, rng=args.seed)
    # The tempting fix for pgmpy: read a check that did not run as "passed".
    obs = log.observations
    ids = log.incidents["id"].to_numpy()
    have = set(zip(obs["incident_id"], obs["symptom"]))
    extra = [(i, d.symptom) for i in ids for d in truth.detectors if (i, d.symptom) not in have]
    import pandas as pd

    filled = pd.concat(
        [
            obs,
            pd.DataFrame(
                {
                    "incident_id": [i for i, _ in extra],
                    "symptom": [s for _, s in extra],
                    "value": "passed",
                    "p_fired": np.nan,
                    "p_passed": np.nan,
                    "time": pd.NaT,
                }
            ),
        ],
        ignore_index=True,
    )
    filled["time"] = pd.to_datetime(filled["time"], utc=True)
    as_passed = IncidentFrame(log.incidents, filled, log.actions)
    print(f"\nwebshop, {len(log)} incidents, start wrong in every section: mean absolute error")
    print(f"{'not-run checks read as':<24} " + " ".join(f"{k:>12}" for k in KINDS))
    for label, data in (("missing (ours)", log), ("passed", as_passed)):
        e = errors(PriorFitter(prior_weight=1.0).fit(data, start), true)
        print(f"{label:<24} " + " ".join(f"{e[k][0]:>12.5f}" for k in KINDS))

    # pgmpy's EM on a log where every check ran (its best case), for time and the fault priors.
    everything = {**{k: 1.0 for k in P_OBSERVED}, **{d.watches: 1.0 for d in truth.detectors}}
    full = simulate(truth, 500, rng=args.seed, p_observed=everything)
    df, net = _pgmpy_frame(truth, full)
    model = net.to_pgmpy()
    model.latents = set(net.impairment_variable.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("pgmpy").setLevel(logging.ERROR)
        from pgmpy.parameter_estimator import DiscreteEM

        em = DiscreteEM(
            show_progress=False,
            max_iter=3,
            seed=args.seed,
            state_names={v.name: list(v.states) for v in net.variables if v.role != "impairment"},
        )
        t = time.perf_counter()
        em.fit(model, df)
        took = time.perf_counter() - t
    pg_priors = {}
    for cpd in em.parameters_:
        if cpd.variable.startswith("fault__"):
            comp = next(c for c in truth.components if net.fault_variable[c.name] == cpd.variable)
            states = cpd.state_names[cpd.variable]
            for m in comp.fault_modes:
                pg_priors[f"prior {comp.name}:{m.name}"] = float(cpd.values[states.index(m.name)])
    t = time.perf_counter()
    ours = PriorFitter(prior_weight=1.0).fit(full, start)
    took_ours = time.perf_counter() - t
    mine = {p.key: p.value for p in ours.parameters_ if p.kind == "prior"}
    err_pg = np.mean([abs(v - true[k]) for k, v in pg_priors.items()])
    err_ours = np.mean([abs(v - true[k]) for k, v in mine.items()])
    ratio_pg = np.mean([v / true[k] for k, v in pg_priors.items()])
    print(
        f"\npgmpy DiscreteEM on a fully observed webshop log of {len(full)} incidents (every check ran): "
        f"{took / 3:.1f} s per EM iteration;\n  its fault priors are the labelled frequencies among opened "
        f"incidents: mean |error| {err_pg:.4f}, {ratio_pg:.1f}x the truth on average; "
        f"ours {err_ours:.4f} ({took_ours:.1f} s for the whole fit, {ours.n_iter_} EM steps)"
    )


def recovery(args) -> None:
    truth = load_topology(bundled_topology("webshop"))
    start = perturbed(truth)
    true = topology_parameters(truth)
    n = args.n_fit
    seeds = [args.seed + k for k in range(3 if args.quick else 5)]
    within, within_n, cover, cover_unpooled = {}, {}, {}, []
    print(
        f"\n## Recovery of known parameters: webshop, {n} incidents per seed, seeds {seeds}, start wrong in every section"
    )
    for seed in seeds:
        f = PriorFitter(prior_weight=1.0).fit(simulate(truth, n, rng=seed), start)
        for p in f.parameters_:
            err = abs(p.value - true[p.key])
            within.setdefault(p.kind, []).append(err <= 5 / np.sqrt(max(p.n_trials, 1.0)))
            within_n.setdefault(p.kind, []).append(err <= 5 / np.sqrt(n))
            if p.n_trials >= 20:
                cover.setdefault(p.kind, []).append(p.lower <= true[p.key] <= p.upper)
        unpooled = PriorFitter(prior_weight=1.0, pooling=False).fit(simulate(truth, n, rng=seed), start)
        cover_unpooled += [p.lower <= true[p.key] <= p.upper for p in unpooled.parameters_ if p.kind == "prior"]
    print(
        f"{'kind':<12} {'params':>7} {'|err| <= 5/sqrt(n_i)':>21} {'|err| <= 5/sqrt(N)':>19} {'90% interval covers (n_i >= 20)':>32}"
    )
    for k in KINDS:
        c = cover.get(k, [])
        print(
            f"{k:<12} {len(within[k]):>7} {np.mean(within[k]):>21.3f} {np.mean(within_n[k]):>19.3f} "
            f"{(np.mean(c) if c else float('nan')):>25.3f} of {len(c)}"
        )
    print(f"{'prior, no pooling':<20} {'':>56} {np.mean(cover_unpooled):>18.3f} of {len(cover_unpooled)}")


def scale(args) -> None:
    """Train Ticket: fit time against score time on the same simulated history, and the error against the truth."""
    from diagnosis.exceptions import ApproximationWarning

    truth = load_topology(bundled_topology("train-ticket"))
    start = perturbed(truth)
    true = topology_parameters(truth)
    n = args.n_fit
    t = time.perf_counter()
    log = simulate(truth, n, rng=args.seed)
    took_sim = time.perf_counter() - t
    print(
        f"\n## Scale: Train Ticket ({len(truth.components)} components, {len(truth.detectors)} detectors), "
        f"{len(log)} simulated incidents (simulated in {took_sim:.0f} s), start wrong in every section"
    )
    net = build_network(truth)
    t = time.perf_counter()
    score_frame(net, make_engine(net), log)
    took_score = time.perf_counter() - t
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ApproximationWarning)
        f = PriorFitter(
            prior_weight=1.0, engine=args.engine, max_selection_masks=args.max_selection_masks, rng=args.seed
        ).fit(log, start)
    took_fit = time.perf_counter() - t
    approx = [w for w in caught if issubclass(w.category, ApproximationWarning)]
    e = errors(f, true)
    e0 = {
        k: np.mean(
            [abs(start_v - true[key]) for key, start_v in topology_parameters(start).items() if key.split(" ")[0] == k]
        )
        for k in KINDS
    }
    all_err = np.mean([abs(p.value - true[p.key]) for p in f.parameters_])
    all_err0 = np.mean([abs(v - true[k]) for k, v in topology_parameters(start).items()])
    print(f"score: {took_score:.1f} s ({n / took_score:.1f} incidents/s)")
    print(
        f"fit:   {took_fit:.1f} s, {f.n_iter_} EM iterations, converged={f.converged_}, "
        f"E-step engine: {f.report_.settings['engine_used']}, max_selection_masks={args.max_selection_masks}"
        + (f" ({len(approx)} ApproximationWarning)" if approx else "")
    )
    n_steps = f.n_iter_ + (1 if f.report_.settings["engine_used"] == "approximate" else 2)
    print(f"       {took_fit / n_steps:.1f} s per E-step ({n_steps} E-steps: the iterations, the final one with the")
    print("       information, and one at the start for the log-likelihood when exact)")
    print(f"fit / score = {took_fit / took_score:.2f}  (wanted: <= 20)")
    print(f"{'mean |error| vs truth':<22} {'all':>9} " + " ".join(f"{k:>12}" for k in KINDS))
    print(f"{'start':<22} {all_err0:>9.5f} " + " ".join(f"{e0[k]:>12.5f}" for k in KINDS))
    print(f"{'fitted':<22} {all_err:>9.5f} " + " ".join(f"{e[k][0]:>12.5f}" for k in KINDS))
    k = args.exact_sample
    if k:
        _e_step_before_after(truth, log.select(log.incidents["id"].to_numpy()[:k]), n)


def _e_step_before_after(truth: Topology, log: IncidentFrame, n: int) -> None:
    """One E-step's engine work on a sample: as it was (a plan per evidence pattern; the selection pass's
    log P(e) and marginals from two propagations), as it is (one structure, one propagation per pass), and
    on loopy BP."""
    from diagnosis.inference.compiled import CompiledEngine
    from diagnosis.learning import _em
    from diagnosis.learning._history import History
    from diagnosis.learning._model import Layout, expanded_tables

    layout = Layout.from_topology(truth)
    hist = History.from_frame(log, truth)
    theta, net, k = layout.theta0, layout.network, hist.n
    sym = [net.symptom_variable[d.symptom] for d in truth.detectors]
    fam, act = _em._names(layout)
    targets = fam + act
    hard = {sym[d]: hist.observed[:, d].astype(np.int64) for d in range(len(sym)) if (hist.observed[:, d] >= 0).any()}
    soft = {sym[d]: lik for d, lik in hist.soft.items()}
    soft.update(_em._fault_evidence(layout, theta, hist))
    quiet = {sym[d]: np.where(hist.observed[:, d] >= 0, 0, -1).astype(np.int64) for d in range(len(sym))}
    tables = expanded_tables(layout, theta)
    old = CompiledEngine(tables)
    t = time.perf_counter()
    q_old = old.query(targets, hard, soft, n_cases=k)
    z_old = old.log_evidence(quiet, n_cases=k)
    old.query(targets, quiet, n_cases=k)
    took_old = time.perf_counter() - t
    new = CompiledEngine(tables, group_patterns=False)
    t = time.perf_counter()
    q_new, _ = new.query_with_log_evidence(targets, hard, soft, n_cases=k)
    _, z_new = new.query_with_log_evidence(targets, quiet, n_cases=k)
    took_new = time.perf_counter() - t
    diff = max(max(np.abs(q_new[v] - q_old[v]).max() for v in targets), np.abs(z_new - z_old).max())
    bp = _em._engine(layout, theta, None, True)
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bp.query_with_log_evidence(targets, hard, soft, n_cases=k)
        bp.query_with_log_evidence(targets, quiet, n_cases=k)
    took_bp = time.perf_counter() - t
    print(
        f"one E-step's propagations on {k} incidents: before {1000 * took_old / k:.0f} ms per incident, now "
        f"{1000 * took_new / k:.0f} ms ({took_old / took_new:.1f}x faster; largest difference {diff:.1e}; "
        f"{n * took_new / k:.0f} s for {n}); loopy BP {1000 * took_bp / k:.0f} ms"
        + (" (did not converge for some incidents)" if caught else "")
    )


SECTIONS = {
    "heldout": heldout,
    "discard": discard,
    "selection": selection,
    "missing": missing,
    "recovery": recovery,
    "scale": scale,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-fit", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="1500 incidents and fewer seeds")
    ap.add_argument("--engine", default="auto", choices=["auto", "exact", "approximate"], help="scale: E-step engine")
    ap.add_argument("--max-selection-masks", type=int, default=None, help="scale: PriorFitter(max_selection_masks=...)")
    ap.add_argument(
        "--exact-sample", type=int, default=64, help="scale: one E-step before/now/BP on this many incidents (0: skip)"
    )
    ap.add_argument("--only", nargs="*", choices=sorted(SECTIONS), default=[s for s in SECTIONS if s != "scale"])
    args = ap.parse_args()
    if args.quick:
        args.n_fit, args.n_test = 1500, 1500
    t = time.perf_counter()
    for name in args.only:
        SECTIONS[name](args)
    print(f"\n(total {time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
