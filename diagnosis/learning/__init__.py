"""Fitting a topology's probabilities to incident history: ``diagnosis fit``.

:class:`PriorFitter` is an estimator (settings in ``__init__``,
``fit(incidents, topology)`` returns ``self``, learned attributes end in
``_``). It fits fault-mode priors (Dirichlet, pooled across components of the
same kind), detector sensitivities and false-alarm rates, dependency strengths
and recovery success probabilities, each as a posterior whose prior mean is
the starting topology's value, with a credible interval. Incidents whose root
cause was never confirmed and checks that were not run are used through exact
EM: the expected counts are posterior marginals of an expanded network
(explicit noisy-OR activations) computed by the compiled engine in batch.
Incidents are opened only when a check fires; the fit corrects for that
selection. :func:`fit_topology` reads a log, fits and writes the fitted
topology (YAML) with a provenance sidecar. :class:`LikelihoodFitter`
(:mod:`diagnosis.learning.likelihood`) fits the soft-evidence likelihood ratio
of detector p-values per detector kind from labelled windows
(``diagnosis fit --evidence``). ``docs/learning.md`` has the method and the
measured figures.
"""

from diagnosis.learning._report import FitReport, FittedParameter, PoolingGroup, Rate
from diagnosis.learning.fitter import (
    PriorFitter,
    fit_topology,
    provenance_path,
    topology_parameters,
)
from diagnosis.learning.likelihood import LikelihoodFitter, fit_likelihoods

__all__ = [
    "FitReport",
    "FittedParameter",
    "LikelihoodFitter",
    "PoolingGroup",
    "PriorFitter",
    "Rate",
    "fit_likelihoods",
    "fit_topology",
    "provenance_path",
    "topology_parameters",
]
