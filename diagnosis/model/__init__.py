"""The model: the topology spec and its parser, topology -> Bayesian network, evidence, bundled data.

- :mod:`~diagnosis.model.topology`: the YAML topology (components, calls,
  placement, fault modes, detectors, actions, alert rules) and its validation.
- :mod:`~diagnosis.model.network`: the Bayesian network built from it.
- :mod:`~diagnosis.model.evidence`: what was observed, resolved against a network.
- :mod:`~diagnosis.model.datasets`: the topologies and incidents shipped with the package.
- :mod:`~diagnosis.model.pgmpy_interop`: the one place pgmpy is imported.
"""

from diagnosis.model.datasets import bundled_incident, bundled_topology, list_bundled
from diagnosis.model.evidence import Evidence, Observation, ResolvedEvidence, read_evidence
from diagnosis.model.network import FAULT_OK, SYMPTOM_STATES, Network, Variable, build_network, export_network
from diagnosis.model.topology import (
    IMPAIRED,
    Action,
    AlertRule,
    Component,
    Dependency,
    Detector,
    FaultMode,
    Topology,
    load_topology,
)

__all__ = [
    "FAULT_OK",
    "IMPAIRED",
    "SYMPTOM_STATES",
    "Action",
    "AlertRule",
    "Component",
    "Dependency",
    "Detector",
    "Evidence",
    "FaultMode",
    "Network",
    "Observation",
    "ResolvedEvidence",
    "Topology",
    "Variable",
    "build_network",
    "bundled_incident",
    "bundled_topology",
    "export_network",
    "list_bundled",
    "load_topology",
    "read_evidence",
]
