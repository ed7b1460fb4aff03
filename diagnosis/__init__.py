"""diagnosis: probabilistic fault diagnosis for service platforms.

Describe a platform as a topology, build its Bayesian network, and turn the
symptoms of an incident into ranked fault locations and a recovery action::

    >>> from diagnosis import bundled_topology, load_topology, diagnose
    >>> topo = load_topology(bundled_topology("webshop"))
    >>> d = diagnose(topo, {"frontend.latency": "fired"})
    >>> d.locations[0].component in topo.component_names
    True
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from diagnosis.exceptions import (
    DiagnosisError,
    EvidenceError,
    IncidentLogError,
    ModelError,
    NotFittedError,
    TopologyError,
)
from diagnosis.inference import make_engine
from diagnosis.learning import FitReport, PriorFitter, fit_topology
from diagnosis.localization import Diagnosis, Location, diagnose
from diagnosis.logs.formats import iter_incident_frames, read_incidents, write_incidents, write_rejects
from diagnosis.logs.schema import Incident, IncidentFrame, Reject, validate_frame
from diagnosis.logs.scoring import ScoreSummary, score_frame, score_log
from diagnosis.logs.simulate import iter_simulate, simulate
from diagnosis.model.datasets import bundled_incident, bundled_topology, list_bundled
from diagnosis.model.evidence import Evidence, Observation, ResolvedEvidence, read_evidence
from diagnosis.model.network import Network, Variable, build_network, export_network
from diagnosis.model.topology import (
    Action,
    AlertRule,
    Component,
    Dependency,
    Detector,
    FaultMode,
    Topology,
    load_topology,
)
from diagnosis.postmortem.explain import Explanation, explain
from diagnosis.postmortem.planning import CheckValue, Plan, compare_policies, next_step, plan_recovery, rank_checks
from diagnosis.postmortem.report import write_report
from diagnosis.postmortem.timeline import Timeline, belief_timeline
from diagnosis.recovery import ActionScore, choose_action, score_actions
from diagnosis.telemetry.alertmanager import ImportSummary, import_alertmanager

try:
    __version__ = _version("diagnosis")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

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
