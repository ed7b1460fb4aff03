"""diagnosis: probabilistic fault diagnosis for service platforms.

Describe a platform as a topology, build its Bayesian network, and turn the
symptoms of an incident into ranked fault locations and a recovery action::

    >>> from diagnosis import bundled_topology, load_topology, diagnose
    >>> topo = load_topology(bundled_topology("webshop"))
    >>> d = diagnose(topo, {"frontend.latency": "fired"})
    >>> d.locations[0].component in topo.component_names
    True
"""

from diagnosis._lazy import attach as _attach
from diagnosis.exceptions import (
    DiagnosisError,
    EvidenceError,
    IncidentLogError,
    ModelError,
    NotFittedError,
    TopologyError,
)

# The public API is imported on first use (PEP 562): ``diagnosis --version``
# and ``import diagnosis`` stay cheap, and a caller of ``diagnose`` does not
# pay for pandas, scipy or pgmpy. Each name maps to the module defining it.
_LAZY = {
    "Action": "diagnosis.model.topology",
    "ActionScore": "diagnosis.recovery",
    "AlertRule": "diagnosis.model.topology",
    "CheckValue": "diagnosis.postmortem.planning",
    "Component": "diagnosis.model.topology",
    "Dependency": "diagnosis.model.topology",
    "Detector": "diagnosis.model.topology",
    "Diagnosis": "diagnosis.localization",
    "Evidence": "diagnosis.model.evidence",
    "Explanation": "diagnosis.postmortem.explain",
    "FaultMode": "diagnosis.model.topology",
    "FitReport": "diagnosis.learning",
    "ImportSummary": "diagnosis.telemetry.alertmanager",
    "Incident": "diagnosis.logs.schema",
    "IncidentFrame": "diagnosis.logs.schema",
    "Location": "diagnosis.localization",
    "Network": "diagnosis.model.network",
    "Observation": "diagnosis.model.evidence",
    "Plan": "diagnosis.postmortem.planning",
    "PriorFitter": "diagnosis.learning",
    "Reject": "diagnosis.logs.schema",
    "ResolvedEvidence": "diagnosis.model.evidence",
    "ScoreSummary": "diagnosis.logs.scoring",
    "Timeline": "diagnosis.postmortem.timeline",
    "Topology": "diagnosis.model.topology",
    "Variable": "diagnosis.model.network",
    "belief_timeline": "diagnosis.postmortem.timeline",
    "build_network": "diagnosis.model.network",
    "bundled_incident": "diagnosis.model.datasets",
    "bundled_topology": "diagnosis.model.datasets",
    "choose_action": "diagnosis.recovery",
    "compare_policies": "diagnosis.postmortem.planning",
    "diagnose": "diagnosis.localization",
    "explain": "diagnosis.postmortem.explain",
    "export_network": "diagnosis.model.network",
    "fit_topology": "diagnosis.learning",
    "import_alertmanager": "diagnosis.telemetry.alertmanager",
    "iter_incident_frames": "diagnosis.logs.formats",
    "iter_simulate": "diagnosis.logs.simulate",
    "list_bundled": "diagnosis.model.datasets",
    "load_topology": "diagnosis.model.topology",
    "make_engine": "diagnosis.inference.base",
    "next_step": "diagnosis.postmortem.planning",
    "plan_recovery": "diagnosis.postmortem.planning",
    "rank_checks": "diagnosis.postmortem.planning",
    "read_evidence": "diagnosis.model.evidence",
    "read_incidents": "diagnosis.logs.formats",
    "score_actions": "diagnosis.recovery",
    "score_frame": "diagnosis.logs.scoring",
    "score_log": "diagnosis.logs.scoring",
    "simulate": "diagnosis.logs.simulate",
    "validate_frame": "diagnosis.logs.schema",
    "write_incidents": "diagnosis.logs.formats",
    "write_rejects": "diagnosis.logs.formats",
    "write_report": "diagnosis.postmortem.report",
}
#: Sub-modules ``import diagnosis`` exposed as attributes before the API went lazy.
_SUBMODULES = (
    "_files",
    "_validation",
    "exceptions",
    "inference",
    "learning",
    "localization",
    "logs",
    "model",
    "postmortem",
    "recovery",
    "telemetry",
)


_getattr, __dir__ = _attach(__name__, _LAZY, submodules=_SUBMODULES)


def __getattr__(name: str):
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("diagnosis")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
            value = "0.0.0"
        globals()["__version__"] = value
        return value
    return _getattr(name)


__all__ = [
    "Action",
    "ActionScore",
    "AlertRule",
    "CheckValue",
    "Component",
    "Dependency",
    "Detector",
    "Diagnosis",
    "DiagnosisError",
    "Evidence",
    "EvidenceError",
    "Explanation",
    "FaultMode",
    "FitReport",
    "ImportSummary",
    "Incident",
    "IncidentFrame",
    "IncidentLogError",
    "Location",
    "ModelError",
    "Network",
    "NotFittedError",
    "Observation",
    "Plan",
    "PriorFitter",
    "Reject",
    "ResolvedEvidence",
    "ScoreSummary",
    "Timeline",
    "Topology",
    "TopologyError",
    "Variable",
    "belief_timeline",
    "build_network",
    "bundled_incident",
    "bundled_topology",
    "choose_action",
    "compare_policies",
    "diagnose",
    "explain",
    "export_network",
    "fit_topology",
    "import_alertmanager",
    "iter_incident_frames",
    "iter_simulate",
    "list_bundled",
    "load_topology",
    "make_engine",
    "next_step",
    "plan_recovery",
    "rank_checks",
    "read_evidence",
    "read_incidents",
    "score_actions",
    "score_frame",
    "score_log",
    "simulate",
    "validate_frame",
    "write_incidents",
    "write_rejects",
    "write_report",
]
