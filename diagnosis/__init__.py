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

from diagnosis.datasets import bundled_incident, bundled_topology, list_bundled
from diagnosis.evidence import Evidence, Observation, ResolvedEvidence, read_evidence
from diagnosis.exceptions import (
    DiagnosisError,
    EvidenceError,
    IncidentLogError,
    ModelError,
    NotFittedError,
    TopologyError,
)
from diagnosis.localization import Diagnosis, Location, diagnose, make_engine
from diagnosis.network import Network, Variable, build_network, export_network
from diagnosis.recovery import ActionScore, choose_action, score_actions
from diagnosis.topology import Action, Component, Dependency, Detector, FaultMode, Topology, load_topology

try:
    __version__ = _version("diagnosis")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "Action",
    "ActionScore",
    "Component",
    "Dependency",
    "Detector",
    "Diagnosis",
    "DiagnosisError",
    "Evidence",
    "EvidenceError",
    "FaultMode",
    "IncidentLogError",
    "Location",
    "ModelError",
    "Network",
    "NotFittedError",
    "Observation",
    "ResolvedEvidence",
    "Topology",
    "TopologyError",
    "Variable",
    "build_network",
    "bundled_incident",
    "bundled_topology",
    "choose_action",
    "diagnose",
    "export_network",
    "list_bundled",
    "load_topology",
    "make_engine",
    "read_evidence",
    "score_actions",
]
