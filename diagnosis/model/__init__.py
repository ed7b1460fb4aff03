"""The model: the topology spec and its parser, topology -> Bayesian network, evidence, bundled data.

- :mod:`~diagnosis.model.topology`: the YAML topology (components, calls,
  placement, fault modes, detectors, actions, alert rules) and its validation.
- :mod:`~diagnosis.model.network`: the Bayesian network built from it.
- :mod:`~diagnosis.model.evidence`: what was observed, resolved against a network.
- :mod:`~diagnosis.model.datasets`: the topologies and incidents shipped with the package.
- :mod:`~diagnosis.model.pgmpy_interop`: the one place pgmpy is imported.
"""

from diagnosis._lazy import attach as _attach

# Names are imported from their modules on first use (PEP 562), so importing
# one module of this package does not import all of them.
_LAZY = {
    "Action": "diagnosis.model.topology",
    "AlertRule": "diagnosis.model.topology",
    "Component": "diagnosis.model.topology",
    "Dependency": "diagnosis.model.topology",
    "Detector": "diagnosis.model.topology",
    "Evidence": "diagnosis.model.evidence",
    "FAULT_OK": "diagnosis.model.network",
    "FaultMode": "diagnosis.model.topology",
    "IMPAIRED": "diagnosis.model.topology",
    "Network": "diagnosis.model.network",
    "Observation": "diagnosis.model.evidence",
    "ResolvedEvidence": "diagnosis.model.evidence",
    "SYMPTOM_STATES": "diagnosis.model.network",
    "Topology": "diagnosis.model.topology",
    "Variable": "diagnosis.model.network",
    "build_network": "diagnosis.model.network",
    "bundled_incident": "diagnosis.model.datasets",
    "bundled_topology": "diagnosis.model.datasets",
    "export_network": "diagnosis.model.network",
    "list_bundled": "diagnosis.model.datasets",
    "load_topology": "diagnosis.model.topology",
    "read_evidence": "diagnosis.model.evidence",
}


__getattr__, __dir__ = _attach(__name__, _LAZY)

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
