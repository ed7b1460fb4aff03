"""The :class:`PriorFitter` estimator and :func:`fit_topology`, the library call behind ``diagnosis fit``."""

from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.stats import beta as _beta
from scipy.stats import gamma as _gamma

from diagnosis._files import atomic_write_text
from diagnosis._time import parse_duration
from diagnosis.exceptions import (
    ApproximationWarning,
    ConvergenceWarning,
    DiagnosisError,
    IncidentLogError,
    ModelError,
    NotFittedError,
    ParameterError,
)
from diagnosis.learning._em import check_exact, e_step, m_step
from diagnosis.learning._history import History
from diagnosis.learning._model import SECTIONS, Layout
from diagnosis.learning._report import FitReport, FittedParameter, PoolingGroup, Rate
from diagnosis.logs.schema import IncidentFrame, validate_frame
from diagnosis.model.topology import Topology, load_topology

__all__ = ["PriorFitter", "fit_topology", "provenance_path", "topology_parameters"]

_SELECTIONS = ("observed", "none")
_ENGINES = ("auto", "exact", "approximate")
_DEFAULT_SECTIONS = ("fault_modes", "detectors", "dependencies", "actions")


def topology_parameters(topology: Topology) -> dict[str, float]:
    """Every parameter :class:`PriorFitter` fits, by key, with the topology's value.

    The keys are those of :attr:`FittedParameter.key`, so two topologies of
    the same structure (a truth and a fit, say) can be compared entry by entry.

    Examples
    --------
    >>> from diagnosis import bundled_topology, load_topology
    >>> values = topology_parameters(load_topology(bundled_topology("webshop")))
    >>> values["prior backend:bad_deploy"], values["strength backend->db"]
    (0.012, 0.85)
    """
    layout = Layout.from_topology(topology)
    return {_key(layout, i): float(layout.theta0[i]) for i in range(layout.n_parameters)}


def provenance_path(out_path: str | os.PathLike) -> Path:
    """The provenance sidecar written beside a fitted topology: ``FITTED.yaml.provenance.json``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".provenance.json")


class PriorFitter:
    """Fit a topology's probabilities to an incident history, with credible intervals.

    Fits, as Beta posteriors whose prior means are the starting
    topology's values: the fault-mode priors of every component (pooled across
    components of the same kind), each detector's sensitivities and false-alarm
    rate, each dependency's strength, and each recovery action's P(R | fault
    mode). Incidents without a confirmed cause, and checks that did not run,
    are used through exact EM (the expected counts come from the compiled
    engine, one batched propagation per pass; loopy BP where exact does not
    fit, see ``engine``); ``docs/learning.md`` gives the method, its measured
    accuracy and its cost.

    Parameters
    ----------
    prior_weight : float or mapping, default 10
        Weight of the starting topology's values, in pseudo-observations: a
        detector's sensitivity counts as this many observed incidents with its
        trigger active; a component's fault distribution as this many
        incidents. A mapping gives it per section (``fault_modes``,
        ``detectors``, ``dependencies``, ``actions``; missing sections get 10).
    pooling : bool, default True
        Pool the fault-mode priors of components of the same kind
        (hierarchically: each component's prior for a mode adds the rate of
        that mode among its peers, with a concentration per kind and mode
        fitted by marginal likelihood).
    half_life : float, str, timedelta or None, default None
        Down-weight old incidents: an incident ``half_life`` older than the
        newest counts half. A duration (``"90d"``, a timedelta; a bare number
        is seconds, and less than an hour is refused as a likely slip for days,
        see :mod:`diagnosis._time`). None: every incident counts fully.
    selection : {"observed", "none"}, default "observed"
        ``"observed"``: incidents are opened when one of the checks run in them
        fires (as :func:`diagnosis.logs.simulate.simulate` does), so the log is
        conditioned on that and the fit corrects for it. ``"none"``: treat
        every logged incident as an unselected draw of the model.
    sections : sequence of str, default all
        Which of ``fault_modes``, ``detectors``, ``dependencies``, ``actions``
        to fit; the others keep their starting values.
    interval : float, default 0.9
        Mass of the equal-tailed credible intervals.
    max_iter : int, default 200
        Most EM iterations (E-step plus M-step).
    tol : float, default 1e-5
        Stop when no parameter moves more than this in one iteration.
    accelerate : bool, default True
        Extrapolate the EM steps (SQUAREM, Varadhan & Roland 2008): the same
        fixed point in about a third of the iterations.
    window_days : float, default 30
        The time window of the reported incident rates.
    max_incidents : int or None, default None
        Fit on a random sample of at most this many incidents (drawn with ``rng``).
    memory_budget_bytes : int or None
        Memory budget of the inference engine (default 2 GiB).
    engine : {"auto", "exact", "approximate"}, default "auto"
        How the E-step gets its posteriors. ``"exact"``: the compiled
        junction-tree engine, one batched propagation per pass over the
        distinct evidence rows. ``"approximate"``: loopy belief propagation,
        with log P(every check run passed) of the selection correction from the
        families' marginals (see ``docs/learning.md``); the log-likelihoods are
        then not computed (NaN). ``"auto"``: exact unless the expanded network
        does not fit the memory budget, then approximate with an
        :class:`~diagnosis.exceptions.ApproximationWarning`.
    max_selection_masks : int or None, default None
        With ``selection="observed"``, run the correction's pass (P(every check
        run passed) and the counts of the unseen draws, for each distinct set
        of checks run) on a fixed random sample of at most this many sets,
        weighted up to stand for all: unbiased counts, an approximation
        (:class:`~diagnosis.exceptions.ApproximationWarning` when it samples).
        Halves the E-step where every incident runs its own set of checks
        (Train Ticket). None: every set (exact).
    rng : int, Generator or None
        Seed for the sample of ``max_incidents``; the fit is otherwise deterministic.

    Attributes
    ----------
    topology_ : Topology
        The starting topology.
    fitted_topology_ : Topology
        The starting topology with every fitted value (posterior means,
        rounded to 6 significant digits).
    parameters_ : tuple of FittedParameter
        Every parameter: prior, fitted value, interval, data behind it.
    intervals_ : dict of str to (float, float)
        ``parameter key -> (lower, upper)``.
    pooling_ : tuple of PoolingGroup
        How much the fault-mode priors were pooled, per kind and fault mode.
    rates_ : tuple of Rate
        Incidents per ``window_days``: all, then per fault mode.
    n_iter_ : int
    converged_ : bool
    log_likelihood_ : float
    report_ : FitReport
        All of the above with the provenance (counts, date range, settings).

    Examples
    --------
    >>> from diagnosis import bundled_topology, load_topology, simulate
    >>> topo = load_topology(bundled_topology("webshop"))
    >>> log = simulate(topo, 300, rng=1)
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     fitter = PriorFitter(max_iter=5).fit(log, topo)  # five EM steps: a quick, unconverged fit
    >>> fitter.converged_, [type(w.message).__name__ for w in caught]
    (False, ['ConvergenceWarning'])
    >>> fitter.report_.counts["n_incidents"]
    300
    >>> p = fitter.report_.parameter("false_alarm frontend.latency")
    >>> p.lower <= p.value <= p.upper
    True
    """

    def __init__(
        self,
        *,
        prior_weight: float | Mapping[str, float] = 10.0,
        pooling: bool = True,
        half_life: float | str | _dt.timedelta | None = None,
        selection: str = "observed",
        sections: Sequence[str] = _DEFAULT_SECTIONS,
        interval: float = 0.9,
        max_iter: int = 200,
        tol: float = 1e-5,
        accelerate: bool = True,
        window_days: float = 30.0,
        max_incidents: int | None = None,
        memory_budget_bytes: int | None = None,
        engine: str = "auto",
        max_selection_masks: int | None = None,
        rng: int | np.random.Generator | None = None,
    ):
        self.prior_weight = prior_weight
        self.pooling = pooling
        self.half_life = half_life
        self.selection = selection
        self.sections = sections
        self.interval = interval
        self.max_iter = max_iter
        self.tol = tol
        self.accelerate = accelerate
        self.window_days = window_days
        self.max_incidents = max_incidents
        self.memory_budget_bytes = memory_budget_bytes
        self.engine = engine
        self.max_selection_masks = max_selection_masks
        self.rng = rng

    # ---------------------------------------------------------------- settings
    @classmethod
    def _param_names(cls) -> tuple[str, ...]:
        """The settings' names, from ``__init__``'s signature (as scikit-learn does)."""
        return tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self")

    def get_params(self) -> dict[str, Any]:
        """The settings, as given to ``__init__``."""
        return {k: getattr(self, k) for k in self._param_names()}

    def __repr__(self) -> str:
        defaults = {k: p.default for k, p in inspect.signature(type(self).__init__).parameters.items() if k != "self"}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if not _same(v, defaults[k])]
        return f"PriorFitter({', '.join(changed)})"

    def __getattr__(self, name: str):
        if name.endswith("_") and not name.startswith("__"):
            raise NotFittedError(
                f"This PriorFitter instance is not fitted yet: {name!r} is set by fit(incidents, topology); call it first."
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _fail(self, name: str, allowed: str) -> ParameterError:
        return ParameterError(
            f"The {name!r} parameter of PriorFitter must be {allowed}. Got {getattr(self, name)!r} instead."
        )

    def _validated(self) -> dict[str, Any]:
        """Check the settings; return them in normalised form (and as written to the provenance)."""
        out: dict[str, Any] = {}
        pw = self.prior_weight
        if isinstance(pw, Mapping):
            unknown = [k for k in pw if k not in SECTIONS]
            if unknown:
                from diagnosis.exceptions import suggest

                raise ParameterError(
                    f"The 'prior_weight' parameter of PriorFitter names unknown section {unknown[0]!r}"
                    f"{suggest(str(unknown[0]), SECTIONS)}; allowed: {list(SECTIONS)}"
                )
            weights = {s: pw.get(s, 10.0) for s in SECTIONS}
        else:
            weights = dict.fromkeys(SECTIONS, pw)
        for v in weights.values():
            if not _positive(v):
                raise self._fail("prior_weight", "a number > 0 or a mapping section -> number > 0")
        out["prior_weight"] = {k: float(v) for k, v in weights.items()}
        if not isinstance(self.pooling, (bool, np.bool_)):
            raise self._fail("pooling", "True or False")
        out["pooling"] = bool(self.pooling)
        out["half_life_days"] = _half_life_days(self.half_life, self._fail)
        if self.selection not in _SELECTIONS:
            raise self._fail("selection", f"one of {list(_SELECTIONS)}")
        out["selection"] = self.selection
        sections = self.sections
        if (
            isinstance(sections, str)
            or not isinstance(sections, Sequence)
            or not sections
            or any(s not in SECTIONS for s in sections)
        ):
            raise self._fail("sections", f"a non-empty list of {list(SECTIONS)}")
        out["sections"] = [s for s in SECTIONS if s in sections]
        if not (_number(self.interval) and 0.0 < self.interval < 1.0):
            raise self._fail("interval", "a number in (0, 1)")
        out["interval"] = float(self.interval)
        if not (
            isinstance(self.max_iter, (int, np.integer)) and not isinstance(self.max_iter, bool) and self.max_iter >= 1
        ):
            raise self._fail("max_iter", "an int >= 1")
        out["max_iter"] = int(self.max_iter)
        if not _positive(self.tol):
            raise self._fail("tol", "a number > 0")
        out["tol"] = float(self.tol)
        if not isinstance(self.accelerate, (bool, np.bool_)):
            raise self._fail("accelerate", "True or False")
        out["accelerate"] = bool(self.accelerate)
        if not _positive(self.window_days):
            raise self._fail("window_days", "a number > 0")
        out["window_days"] = float(self.window_days)
        mi = self.max_incidents
        if mi is not None and not (isinstance(mi, (int, np.integer)) and not isinstance(mi, bool) and mi >= 1):
            raise self._fail("max_incidents", "None or an int >= 1")
        out["max_incidents"] = None if mi is None else int(mi)
        mb = self.memory_budget_bytes
        if mb is not None and not (isinstance(mb, (int, np.integer)) and not isinstance(mb, bool) and mb > 0):
            raise self._fail("memory_budget_bytes", "None or an int > 0")
        out["memory_budget_bytes"] = None if mb is None else int(mb)
        if self.engine not in _ENGINES:
            raise self._fail("engine", f"one of {list(_ENGINES)}")
        out["engine"] = self.engine
        ms = self.max_selection_masks
        if ms is not None and not (isinstance(ms, (int, np.integer)) and not isinstance(ms, bool) and ms >= 1):
            raise self._fail("max_selection_masks", "None or an int >= 1")
        out["max_selection_masks"] = None if ms is None else int(ms)
        rng = self.rng
        if rng is not None and not isinstance(rng, (int, np.integer, np.random.Generator)) or isinstance(rng, bool):
            raise self._fail("rng", "None, an int seed or a numpy Generator")
        out["rng"] = int(rng) if isinstance(rng, (int, np.integer)) else (None if rng is None else "Generator")
        return out

    # ---------------------------------------------------------------- fit
    def fit(self, incidents: IncidentFrame | str | os.PathLike, topology: Topology | str | os.PathLike) -> PriorFitter:
        """Fit the topology's probabilities to an incident log.

        Parameters
        ----------
        incidents : IncidentFrame or path-like
            The log (any format of ``docs/incidents.md``). Records that fail
            validation against ``topology`` are set aside and counted.
        topology : Topology or path-like
            The starting topology: its structure is kept, its values are the priors.

        Returns
        -------
        self

        Raises
        ------
        IncidentLogError
            If the log cannot be read or no incident is left after validation
            (``rows`` holds the first rejects).
        DiagnosisError
            For an invalid setting (the message names it and what is allowed).
        ModelError
            If the topology is too large for exact inference within the memory budget.
        """
        settings = self._validated()
        if not isinstance(topology, Topology):
            topology = load_topology(topology)
        frame, n_rejected, rejects, source, sha = _read(incidents, topology)
        if len(frame) == 0:
            rows = [r.to_dict() for r in rejects[:20]]
            raise IncidentLogError(
                f"no incident of {source or 'the frame'} can be fitted on: {n_rejected} rejected for topology "
                f"{topology.name!r}"
                + (f" (first: {rows[0]['field']} {rows[0]['value']}: {rows[0]['reason']})" if rows else ""),
                rows=rows,
            )
        if settings["max_incidents"] is not None and len(frame) > settings["max_incidents"]:
            gen = np.random.default_rng(self.rng)
            keep = np.sort(gen.choice(len(frame), size=settings["max_incidents"], replace=False))
            frame = frame.select(frame.incidents["id"].to_numpy()[keep])
        hist = History.from_frame(frame, topology, half_life_days=settings["half_life_days"])
        layout = Layout.from_topology(topology)

        weight = np.zeros(layout.n_parameters)
        fitted = np.zeros(layout.n_parameters, dtype=bool)
        for section, kinds in SECTIONS.items():
            m = layout.mask(kinds)
            weight[m] = settings["prior_weight"][section]
            fitted[m] = section in settings["sections"]
        selection = settings["selection"] == "observed"
        budget = settings["memory_budget_bytes"]
        approximate = _approximate(layout, settings["engine"], budget)
        settings["engine_used"] = "approximate" if approximate else "exact"
        max_masks = settings["max_selection_masks"] if selection else None
        if max_masks is not None:
            opened = (hist.observed == 1).any(axis=1)
            n_masks = len(np.unique(hist.observed[opened] >= 0, axis=0))
            if n_masks > max_masks:
                warnings.warn(
                    f"the selection correction runs on {max_masks} of the {n_masks} distinct sets of checks run "
                    "(a random sample weighted up, max_selection_masks): its counts are estimates",
                    ApproximationWarning,
                    stacklevel=2,
                )

        def em_map(th):
            stats = e_step(
                layout,
                th,
                hist,
                selection=selection,
                memory_budget_bytes=budget,
                approximate=approximate,
                max_selection_masks=max_masks,
            )
            return m_step(layout, th, stats, prior_weight=weight, fitted=fitted, pooling=settings["pooling"]).theta

        theta, n_iter, converged = _iterate(
            em_map,
            layout,
            layout.theta0.copy(),
            max_iter=settings["max_iter"],
            tol=settings["tol"],
            accelerate=settings["accelerate"],
        )
        if not converged:
            warnings.warn(
                f"EM stopped at max_iter={settings['max_iter']} before converging (no parameter moved by less than "
                f"tol={settings['tol']:g}); the fit is usable but not a fixed point: raise max_iter or tol",
                ConvergenceWarning,
                stacklevel=2,
            )
        if approximate:  # no log-likelihood to report: spare the E-step at the start
            start = None
        else:
            start = e_step(
                layout,
                layout.theta0,
                hist,
                selection=selection,
                with_likelihood=True,
                memory_budget_bytes=budget,
                max_selection_masks=max_masks,
            )
        final = e_step(
            layout,
            theta,
            hist,
            selection=selection,
            with_likelihood=True,
            with_information=True,
            memory_budget_bytes=budget,
            approximate=approximate,
            max_selection_masks=max_masks,
        )
        post = m_step(layout, theta, final, prior_weight=weight, fitted=fitted, pooling=settings["pooling"])

        values = _rounded(layout, np.where(fitted, post.theta, layout.theta0))
        params = _parameters(layout, post, values, fitted, settings["interval"])
        pooling = _pooling(layout, post, fitted)
        rates, exposure = _rates(layout, hist, final, settings)
        counts = _counts(hist, n_rejected, final)
        first, last = (
            pd.Timestamp(int(x), tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
            for x in (hist.opened_ns.min(), hist.opened_ns.max())
        )

        self.topology_ = topology
        self.fitted_topology_ = replace(layout.to_topology(values), source=None)
        self.parameters_ = params
        self.intervals_ = {p.key: (p.lower, p.upper) for p in params}
        self.pooling_ = pooling
        self.rates_ = rates
        self.n_iter_ = n_iter
        self.converged_ = converged
        self.log_likelihood_ = final.log_likelihood
        self.report_ = FitReport(
            topology=topology.name,
            topology_source=topology.source,
            incidents_source=source,
            incidents_sha256=sha,
            counts=counts,
            first_opened=first,
            last_opened=last,
            settings=settings,
            n_iter=n_iter,
            converged=converged,
            log_likelihood_start=math.nan if start is None else start.log_likelihood,
            log_likelihood=final.log_likelihood,
            parameters=params,
            pooling=pooling,
            rates=rates,
            exposure_days=exposure,
            window_days=settings["window_days"],
            version=_version(),
        )
        return self

    def write(self, path: str | os.PathLike) -> Path:
        """Write the fitted topology as YAML, and its provenance beside it.

        The YAML (readable by :func:`~diagnosis.model.topology.load_topology`) starts
        with a comment header saying what it was fitted on;
        ``PATH.provenance.json`` holds :meth:`FitReport.to_dict` (every
        parameter with its interval, the counts, the date range, the
        settings). Both are written to a temporary file and renamed into place.

        Returns
        -------
        pathlib.Path
            The YAML file.
        """
        report = self.report_
        path = Path(path)
        if not path.parent.is_dir():
            raise DiagnosisError(
                f"cannot write the fitted topology to {str(path)!r}: folder {str(path.parent)!r} does not exist"
            )
        sidecar = provenance_path(path)
        _atomic_write(sidecar, json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n")
        _atomic_write(
            path,
            _header(report, sidecar.name) + yaml.safe_dump(self.fitted_topology_.to_dict(), sort_keys=False, width=120),
        )
        return path


def fit_topology(
    topology: Topology | str | os.PathLike,
    incidents_path: str | os.PathLike | IncidentFrame,
    out_path: str | os.PathLike,
    **settings: Any,
) -> FitReport:
    """Fit a topology to an incident log and write the fitted topology: ``diagnosis fit``.

    Parameters
    ----------
    topology : Topology or path-like
        The starting topology.
    incidents_path : path-like or IncidentFrame
        The incident log.
    out_path : path-like
        Where to write the fitted topology (YAML); ``OUT.provenance.json`` is written beside it.
    **settings
        :class:`PriorFitter` settings (``prior_weight``, ``pooling``, ``half_life``, ...).

    Returns
    -------
    FitReport
        ``report.summary()`` is the text to print.
    """
    fitter = PriorFitter(**settings).fit(incidents_path, topology)
    fitter.write(out_path)
    return fitter.report_


# -------------------------------------------------------------------- helpers
def _valid(layout: Layout, theta: np.ndarray) -> bool:
    return all(math.fsum(theta[sl]) < 1.0 for sl in layout.prior_slices)


def _iterate(em_map, layout: Layout, theta: np.ndarray, *, max_iter: int, tol: float, accelerate: bool):
    """Run EM from ``theta`` to a fixed point of ``em_map``; return (theta, EM steps, converged).

    With ``accelerate``, SQUAREM (scheme S3 of Varadhan & Roland, Scand. J.
    Stat. 2008): two EM steps give ``r`` and ``v``, the extrapolated point
    ``theta - 2 a r + a^2 v`` (``a = -|r| / |v|``, at most -1, at least
    ``-step_max``), clipped to [0, 1], is taken when each component's priors
    still sum to less than 1 (else the second step), and one more EM step
    from it stabilises. Convergence is
    judged on the change made by a plain EM step.
    """
    n = 0
    step_max = 1.0
    while n < max_iter:
        t1 = em_map(theta)
        n += 1
        if np.max(np.abs(t1 - theta), initial=0.0) <= tol:
            return t1, n, True
        if not accelerate or n + 2 > max_iter:
            theta = t1
            continue
        t2 = em_map(t1)
        n += 1
        if np.max(np.abs(t2 - t1), initial=0.0) <= tol:
            return t2, n, True
        r = t1 - theta
        v = t2 - t1 - r
        norm_v = float(np.linalg.norm(v))
        if norm_v == 0.0:
            theta = t2
            continue
        a = min(-float(np.linalg.norm(r)) / norm_v, -1.0)
        if a <= -step_max:
            a = -step_max
            step_max *= 4.0
        extrapolated = np.clip(theta - 2.0 * a * r + a * a * v, 0.0, 1.0)
        if not _valid(layout, extrapolated):
            extrapolated = t2
        theta_next = em_map(extrapolated)
        n += 1
        if np.max(np.abs(theta_next - extrapolated), initial=0.0) <= tol:
            return theta_next, n, True
        theta = theta_next
    return theta, n, False


def _approximate(layout: Layout, engine: str, budget: int | None) -> bool:
    """Whether the E-steps run on loopy BP: asked for, or ``"auto"`` and the exact engine does not fit the budget."""
    if engine != "auto":
        return engine == "approximate"
    try:
        check_exact(layout, budget)
    except ModelError as exc:
        warnings.warn(
            f"{exc}; fitting with loopy belief propagation instead, an approximation: its family marginals, and "
            "the selection correction's P(no check fires) from their product, bias the expected counts "
            "(docs/learning.md gives the measured error)",
            ApproximationWarning,
            stacklevel=3,
        )
        return True
    return False


def _number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(float(x))


def _positive(x) -> bool:
    return _number(x) and float(x) > 0.0


def _same(a, b) -> bool:
    try:
        return bool(a == b) if not isinstance(a, np.ndarray) else False
    except (TypeError, ValueError):
        return False


def _half_life_days(h, fail) -> float | None:
    """The half-life in days, from a duration (:func:`diagnosis._time.parse_duration`: a bare number is seconds)."""
    if h is None:
        return None
    td = parse_duration(h, name="half_life", caller="PriorFitter", allow_zero=False, minimum=pd.Timedelta(hours=1))
    return float(td / pd.Timedelta(days=1))


def _read(incidents, topology: Topology):
    """The validated frame, the number of rejects, the first rejects, the source and its hash."""
    rejects = []
    n_rejected = 0
    if isinstance(incidents, IncidentFrame):
        frame, rej = validate_frame(incidents, topology)
        return frame, len(rej), rej, None, None
    if not isinstance(incidents, (str, os.PathLike)):
        raise IncidentLogError(
            f"incidents must be an IncidentFrame or the path of an incident log. Got {type(incidents).__name__} instead."
        )
    from diagnosis.logs.formats import iter_incident_frames

    path = Path(incidents)
    frames = []
    for chunk, rej in iter_incident_frames(path, chunk_size=50_000):
        good, bad = validate_frame(chunk, topology, source=str(path))
        frames.append(good)
        for r in (*rej, *bad):
            n_rejected += 1
            if len(rejects) < 20:
                rejects.append(r)
    return IncidentFrame.concat(frames), n_rejected, rejects, str(path), _sha256(path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _key(layout: Layout, i: int) -> str:
    k, c, n, d = layout.kind[i], layout.component[i], layout.name[i], layout.detail[i]
    return {
        "prior": f"prior {c}:{n}",
        "strength": f"strength {c}->{n}",
        "false_alarm": f"false_alarm {c}.{n}",
        "sensitivity": f"sensitivity {c}.{n}|{d}",
        "success": f"success {c}.{n}|{d}",
    }[k]


def _rounded(layout: Layout, theta: np.ndarray) -> np.ndarray:
    """Values to 6 significant digits (readable YAML), keeping each component's priors summing to at most 1."""
    out = np.array([float(f"{x:.6g}") for x in theta])
    for sl in layout.prior_slices:
        if math.fsum(out[sl]) > 1.0:
            out[sl] = theta[sl]
    return out


def _parameters(
    layout: Layout, post, values: np.ndarray, fitted: np.ndarray, interval: float
) -> tuple[FittedParameter, ...]:
    """Every parameter with its equal-tailed interval from ``Beta(value * c, (1 - value) * c)``."""
    lo_q, hi_q = (1.0 - interval) / 2.0, (1.0 + interval) / 2.0
    inner = np.clip(values, 1e-12, 1.0 - 1e-12)
    a, b = inner * post.concentration, (1.0 - inner) * post.concentration
    lower = np.where(fitted, np.minimum(_beta.ppf(lo_q, a, b), values), layout.theta0)
    upper = np.where(fitted, np.maximum(_beta.ppf(hi_q, a, b), values), layout.theta0)
    sd = np.where(fitted, np.sqrt(values * (1.0 - values) / (post.concentration + 1.0)), 0.0)
    return tuple(
        FittedParameter(
            key=_key(layout, i),
            kind=layout.kind[i],
            component=layout.component[i],
            name=layout.name[i],
            detail=layout.detail[i],
            prior=float(layout.theta0[i]),
            value=float(values[i]),
            lower=float(lower[i]),
            upper=float(upper[i]),
            sd=float(sd[i]),
            n_trials=float(post.n_trials[i]),
            n_events=float(post.n_events[i]),
            n_effective=float(post.n_effective[i]),
            prior_share=float(post.prior_share[i]) if fitted[i] else 1.0,
            peer_share=float(post.peer_share[i]) if fitted[i] else 0.0,
            fitted=bool(fitted[i]),
        )
        for i in range(layout.n_parameters)
    )


def _pooling(layout: Layout, post, fitted) -> tuple[PoolingGroup, ...]:
    members: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for j, c in enumerate(layout.topology.components):
        for k, m in enumerate(c.fault_modes):
            members.setdefault((c.kind, m.name), []).append((c.name, layout.prior_slices[j].start + k))
    out = []
    for (kind, mode), kappa in post.kappa.items():
        group = members[(kind, mode)]
        shares = {name: float(post.peer_share[i]) if fitted[i] else 0.0 for name, i in group}
        out.append(PoolingGroup(kind, mode, tuple(name for name, _ in group), float(kappa), shares))
    return tuple(out)


def _rates(layout: Layout, hist: History, stats, settings) -> tuple[tuple[Rate, ...], float]:
    """Incidents per window, from the logged incidents' expected fault counts over the exposure."""
    window = settings["window_days"]
    span = (hist.opened_ns.max() - hist.opened_ns.min()) / 86_400e9
    if hist.n < 2 or span <= 0:
        return (), 0.0
    span = span * hist.n / (hist.n - 1)  # first to last opening, plus one mean gap
    h = settings["half_life_days"]
    exposure = span if h is None else h / math.log(2) * (1.0 - 2.0 ** (-span / h))
    lo_q, hi_q = (1.0 - settings["interval"]) / 2.0, (1.0 + settings["interval"]) / 2.0

    def rate(component, mode, n):
        a = n + 0.5
        return Rate(
            component,
            mode,
            float(n),
            float(n / exposure * window),
            float(_gamma.ppf(lo_q, a, scale=window / exposure)),
            float(_gamma.ppf(hi_q, a, scale=window / exposure)),
        )

    out = [rate("", "", float(hist.weight.sum()))]
    for j, c in enumerate(layout.topology.components):
        for k, m in enumerate(c.fault_modes, start=1):
            out.append(rate(c.name, m.name, float(stats.prior_real[j][k])))
    return tuple(out), float(exposure)


def _counts(hist: History, n_rejected: int, stats) -> dict[str, Any]:
    n_obs = int((hist.observed >= 0).sum()) + sum(int((lik != 1.0).any(axis=1).sum()) for lik in hist.soft.values())
    cells = hist.observed.size
    return {
        "n_incidents": int(hist.n),
        "n_rejected": int(n_rejected),
        "n_fault_list": int((hist.label_kind == 2).sum()),
        "n_no_fault": int(hist.n_no_fault),
        "n_root_cause": int((hist.label_kind == 1).sum()),
        "n_unknown_cause": int((hist.label_kind == 0).sum()),
        "n_observations": n_obs,
        "share_not_run": float(1.0 - n_obs / cells) if cells else 0.0,
        "n_attempts": len(hist.attempt_case) + int(hist.n_unknown_outcomes),
        "n_unknown_outcomes": int(hist.n_unknown_outcomes),
        "n_opened_by_firing": int((hist.observed == 1).any(axis=1).sum()),
        "n_unseen": float(stats.n_unseen),
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("diagnosis")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0.0.0"


def _header(report: FitReport, sidecar: str) -> str:
    c = report.counts
    s = report.settings
    lines = [
        f"Fitted by diagnosis {report.version} (diagnosis fit) from topology {report.topology!r}"
        + (f" ({report.topology_source})" if report.topology_source else ""),
        f"incidents: {report.incidents_source or '(in memory)'}"
        + (f" sha256 {report.incidents_sha256}" if report.incidents_sha256 else ""),
        f"{c['n_incidents']} incidents ({c['n_rejected']} rejected) opened {report.first_opened} .. {report.last_opened}",
        f"causes: {c['n_fault_list']} every fault known, {c['n_root_cause']} root cause only, {c['n_unknown_cause']} unknown",
        (
            f"settings: prior_weight={s['prior_weight']} pooling={s['pooling']} half_life_days={s['half_life_days']} "
            f"selection={s['selection']!r} sections={s['sections']} interval={s['interval']}"
        ),
        (
            f"EM: {report.n_iter} iterations, {'converged' if report.converged else 'not converged'}; "
            + (
                f"log-likelihood {report.log_likelihood_start:.2f} -> {report.log_likelihood:.2f}"
                if math.isfinite(report.log_likelihood)
                else "approximate E-step (loopy BP), log-likelihood not computed"
            )
        ),
        f"credible intervals and provenance: {sidecar}",
    ]
    return "".join(f"# {line}\n" for line in lines)


def _atomic_write(path: Path, text: str) -> None:
    atomic_write_text(path, text)
