"""What a fit found and what it was fitted on: values of :mod:`diagnosis.learning` (the report, its text and JSON)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["FitReport", "FittedParameter", "PoolingGroup", "Rate"]

#: A parameter whose prior carries at least this share of its posterior weight is "dominated by the prior".
PRIOR_DOMINATED = 0.5


def _finite(x: float) -> float | None:
    """``x``, or None (JSON null) when it is NaN: a log-likelihood the approximate E-step does not give."""
    return x if math.isfinite(x) else None


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    return math.log(p / (1.0 - p))


@dataclass(frozen=True, slots=True)
class FittedParameter:
    """One fitted number with its credible interval and how much data stands behind it.

    Attributes
    ----------
    key : str
        ``prior C:MODE``, ``strength C->T``, ``false_alarm C.DETECTOR``,
        ``sensitivity C.DETECTOR|TRIGGER`` or ``success C.ACTION|MODE``.
    kind : {"prior", "strength", "false_alarm", "sensitivity", "success"}
    component : str
        The component it belongs to (the dependent, for a strength).
    name : str
        The fault mode, dependency target, detector or action.
    detail : str
        The edge type, the trigger, or the fault mode an action repairs; "" otherwise.
    prior : float
        The starting topology's value (the prior mean).
    value : float
        The fitted value: the posterior mean.
    lower, upper : float
        The equal-tailed credible interval (``PriorFitter(interval=...)``).
    sd : float
        The posterior standard deviation.
    n_trials : float
        Expected observations behind it: incidents (and unseen draws) for a
        prior, incidents with the dependency impaired for a strength,
        incidents where the detector ran with its trigger active (or none, for
        a false alarm), attempts on the target in that mode for a success.
    n_events : float
        Expected events among them: faults, propagations, firings, successes.
    n_effective : float
        The observations the interval counts: ``n_trials`` times the share of
        their information the data carry (less when the causes behind them
        are uncertain; Louis' missing information).
    prior_share : float
        Share of the posterior weight from the topology's value: the prior
        weight over the prior weight, the peers' weight and ``n_effective``.
    peer_share : float
        Share from the pooled mean of the components of the same kind (fault-mode priors only).
    fitted : bool
        False when its section was held at the starting value.
    """

    key: str
    kind: str
    component: str
    name: str
    detail: str
    prior: float
    value: float
    lower: float
    upper: float
    sd: float
    n_trials: float
    n_events: float
    n_effective: float
    prior_share: float
    peer_share: float = 0.0
    fitted: bool = True

    @property
    def shift(self) -> float:
        """How far it moved from the prior, in posterior standard deviations: ``|value - prior| / sd``.

        Large when the data contradict the starting value, whatever its scale;
        small for a parameter with few observations, however far it wandered.
        """
        return abs(self.value - self.prior) / self.sd if self.sd > 0 else 0.0

    @property
    def log_odds_shift(self) -> float:
        """``logit(value) - logit(prior)``: the size and direction of the change."""
        return _logit(self.value) - _logit(self.prior)

    @property
    def prior_dominated(self) -> bool:
        """True when the prior carries at least half of the posterior weight (too little data)."""
        return self.fitted and self.prior_share >= PRIOR_DOMINATED


@dataclass(frozen=True, slots=True)
class PoolingGroup:
    """How much the components of one kind borrowed from each other for one fault mode's prior.

    Attributes
    ----------
    kind : str
    fault_mode : str
    components : tuple of str
        The components of that kind with that fault mode.
    concentration : float
        Pseudo-incidents of the peers' pooled rate in each member's prior,
        fitted by marginal likelihood (0: no pooling, the members' rates look
        different; large: they look alike). A member never gets more than its
        peers actually saw.
    peer_share : Mapping[str, float]
        Per component, the share of its posterior weight from its peers.
    """

    kind: str
    fault_mode: str
    components: tuple[str, ...]
    concentration: float
    peer_share: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "peer_share", MappingProxyType(dict(self.peer_share)))


@dataclass(frozen=True, slots=True)
class Rate:
    """Incidents per time window in which a component was in a fault mode (``fault_mode`` "" : any incident).

    Attributes
    ----------
    component, fault_mode : str
        ``""`` for the rate of all incidents.
    n_incidents : float
        Expected number of logged incidents with that fault (decay-weighted).
    per_window : float
        Incidents per ``window_days``.
    lower, upper : float
        Credible interval (Gamma posterior, Jeffreys prior).
    """

    component: str
    fault_mode: str
    n_incidents: float
    per_window: float
    lower: float
    upper: float


@dataclass(frozen=True)
class FitReport:
    """A fit's results and provenance: what it was fitted on, how, and what moved.

    Attributes
    ----------
    topology : str
        Name of the starting topology; ``topology_source`` its file, if any.
    incidents_source : str or None
        The incident log (None when a frame was passed).
    incidents_sha256 : str or None
        Hash of the log file(s), in name order.
    counts : Mapping[str, int or float]
        ``n_incidents`` (fitted on), ``n_rejected``, ``n_fault_list`` (every
        fault known), ``n_no_fault`` (of those, known to have no fault),
        ``n_root_cause`` (root cause only), ``n_unknown_cause``,
        ``n_observations``, ``share_not_run`` (detector checks missing),
        ``n_attempts``, ``n_unknown_outcomes``, ``n_opened_by_firing``,
        ``n_unseen`` (expected draws that opened no incident, when correcting for selection).
    first_opened, last_opened : str
        The date range (ISO 8601 UTC).
    settings : Mapping[str, Any]
        The fitter's settings.
    n_iter : int
    converged : bool
    log_likelihood_start, log_likelihood : float
        Log-likelihood of the log (given selection) under the starting and fitted parameters.
    parameters : tuple of FittedParameter
    pooling : tuple of PoolingGroup
        One per (kind, fault mode) shared by two or more components.
    rates : tuple of Rate
        The all-incidents rate first, then each fault mode.
    exposure_days, window_days : float
    version : str
        The diagnosis version that fitted.
    """

    topology: str
    topology_source: str | None
    incidents_source: str | None
    incidents_sha256: str | None
    counts: Mapping[str, Any]
    first_opened: str
    last_opened: str
    settings: Mapping[str, Any]
    n_iter: int
    converged: bool
    log_likelihood_start: float
    log_likelihood: float
    parameters: tuple[FittedParameter, ...]
    pooling: tuple[PoolingGroup, ...]
    rates: tuple[Rate, ...]
    exposure_days: float
    window_days: float
    version: str = ""

    def parameter(self, key: str) -> FittedParameter:
        """The parameter called ``key``.

        Raises
        ------
        ParameterError
            No parameter of that name (with close matches).
        """
        for p in self.parameters:
            if p.key == key:
                return p
        from diagnosis.exceptions import ParameterError, suggest

        raise ParameterError(f"no fitted parameter {key!r}{suggest(key, [p.key for p in self.parameters])}")

    def moved_most(self, k: int = 10) -> tuple[FittedParameter, ...]:
        """The ``k`` fitted parameters that moved furthest from their priors, in posterior standard deviations."""
        fitted = [p for p in self.parameters if p.fitted]
        return tuple(sorted(fitted, key=lambda p: -p.shift)[:k])

    def prior_dominated(self, k: int | None = None) -> tuple[FittedParameter, ...]:
        """Fitted parameters still dominated by the prior for lack of data, fewest observations first."""
        dom = sorted((p for p in self.parameters if p.prior_dominated), key=lambda p: p.n_trials)
        return tuple(dom if k is None else dom[:k])

    def summary(self, k: int = 10) -> str:
        """The text ``diagnosis fit`` prints: data, convergence, pooling, the biggest moves, the prior-dominated."""
        c = self.counts
        level = float(self.settings.get("interval", 0.9))
        lines = [
            (
                f"fitted topology {self.topology!r} on {c['n_incidents']} incidents opened {self.first_opened} .. {self.last_opened}"
                f" ({c['n_rejected']} rejected)"
            ),
            (
                f"  labels: {c['n_fault_list']} with every fault known ({c['n_no_fault']} of them no fault), "
                f"{c['n_root_cause']} with the root cause only, {c['n_unknown_cause']} unknown (used through EM)"
            ),
        ]
        if c["n_unknown_cause"] and c["n_no_fault"] == 0 and (c["n_root_cause"] or c["n_fault_list"]):
            lines.append(
                "  caution: no incident is labelled as having no fault (faults: none). If the unknown ones are "
                "mostly false alarms, the fitted priors are too high: label confirmed false alarms"
            )
        lines += [
            (
                f"  observations: {c['n_observations']}; {100 * c['share_not_run']:.0f}% of checks not run (missing, not negatives); "
                f"recovery attempts: {c['n_attempts']} ({c['n_unknown_outcomes']} with unknown outcome)"
            ),
            (
                f"  EM: {self.n_iter} iterations, {'converged' if self.converged else 'NOT converged (raise max_iter)'}; "
                + (
                    f"log-likelihood {self.log_likelihood_start:.1f} -> {self.log_likelihood:.1f}"
                    if math.isfinite(self.log_likelihood)
                    else "log-likelihood not computed (approximate E-step)"
                )
            ),
        ]
        if c.get("n_unseen"):
            lines.append(
                f"  selection: the {c['n_opened_by_firing']} incidents opened by a firing stand for "
                f"{c['n_unseen']:.0f} more draws that opened none"
            )
        if self.rates:
            r = self.rates[0]
            lines.append(
                f"  incident rate: {r.per_window:.3g} per {self.window_days:g} days "
                f"[{r.lower:.3g}, {r.upper:.3g}] over {self.exposure_days:.0f} days"
            )
        kinds: dict[str, list[PoolingGroup]] = {}
        for g in self.pooling:
            kinds.setdefault(g.kind, []).append(g)
        for kind, groups in kinds.items():
            shares = [s for g in groups for s in g.peer_share.values()]
            conc = ", ".join(f"{g.fault_mode} {g.concentration:.3g}" for g in groups)
            lines.append(
                f"  pooling {kind} ({len(groups[0].components)} components), concentration by fault mode: {conc}; "
                f"peers' share of a prior {min(shares):.2f}..{max(shares):.2f}"
            )
        moved = self.moved_most(k)
        dom = self.prior_dominated()
        width = max([len(p.key) for p in (*moved, *dom[:k])] + [9])
        head = f"    {'parameter':<{width}} {'prior':>9} {'fitted':>9}  {f'{100 * level:g}% interval':<22} {'n':>8} {'sds':>6}"

        def row(p: FittedParameter) -> str:
            interval = f"[{p.lower:.4g}, {p.upper:.4g}]"
            return f"    {p.key:<{width}} {p.prior:>9.4g} {p.value:>9.4g}  {interval:<22} {p.n_trials:>8.1f} {p.shift:>6.1f}"

        lines.append("moved most from their priors (in posterior standard deviations, 'sds'):")
        lines.append(head)
        lines.extend(row(p) for p in moved)
        lines.append(f"still dominated by the prior (fewer effective observations than the prior weight): {len(dom)}")
        if dom:
            lines.append(head)
            lines.extend(row(p) for p in dom[:k])
            if len(dom) > k:
                lines.append(f"    ... and {len(dom) - k} more")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-ready mapping of everything (the provenance sidecar ``diagnosis fit`` writes)."""
        out = {
            "topology": self.topology,
            "topology_source": self.topology_source,
            "incidents_source": self.incidents_source,
            "incidents_sha256": self.incidents_sha256,
            "diagnosis_version": self.version,
            "counts": dict(self.counts),
            "first_opened": self.first_opened,
            "last_opened": self.last_opened,
            "settings": dict(self.settings),
            "n_iter": self.n_iter,
            "converged": self.converged,
            "log_likelihood_start": _finite(self.log_likelihood_start),
            "log_likelihood": _finite(self.log_likelihood),
            "exposure_days": self.exposure_days,
            "window_days": self.window_days,
            "pooling": [
                {
                    "kind": g.kind,
                    "fault_mode": g.fault_mode,
                    "components": list(g.components),
                    "concentration": g.concentration,
                    "peer_share": dict(g.peer_share),
                }
                for g in self.pooling
            ],
            "rates": [asdict(r) for r in self.rates],
            "parameters": [
                {**asdict(p), "shift_sd": p.shift, "prior_dominated": p.prior_dominated} for p in self.parameters
            ],
        }
        return out
