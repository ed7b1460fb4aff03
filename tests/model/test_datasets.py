import pytest

from diagnosis import DiagnosisError, bundled_incident, bundled_topology, list_bundled, load_topology, read_evidence
from diagnosis.exceptions import ParameterError


def test_every_bundled_incident_fits_its_topology():
    for name in list_bundled("incidents"):
        ident, ev = read_evidence(bundled_incident(name))
        topo_name = __import__("yaml").safe_load(bundled_incident(name).read_text())["topology"]
        topo = load_topology(bundled_topology(topo_name))
        assert set(ev.observations) <= set(topo.symptoms), ident


def test_unknown_bundled_names():
    with pytest.raises(DiagnosisError, match=r"no bundled topology 'webshp'; did you mean 'webshop'"):
        bundled_topology("webshp")
    with pytest.raises(ParameterError, match="The 'kind' parameter of list_bundled must be one of"):
        list_bundled("models")
