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


def test_reference_topologies_of_other_systems_are_bundled_and_exact_against_pgmpy():
    # Sock Shop, DeathStarBench (hotel, media, social) and GAIA MicroSS ship ready to use: each
    # builds, and its exact posterior after the entry service's latency fired equals pgmpy's.
    from diagnosis import diagnose

    others = ["dsb-hotel-reservation", "dsb-media-microservices", "dsb-social-network", "gaia-micross", "sock-shop"]
    assert set(others) <= set(list_bundled())
    for name in others:
        topo = load_topology(bundled_topology(name))
        entry = topo.components[0].name
        obs = {f"{entry}.latency": "fired"}
        ours, ref = diagnose(topo, obs), diagnose(topo, obs, engine="reference")
        for c, modes in ours.posteriors.items():
            for m, p in modes.items():
                assert p == pytest.approx(ref.posteriors[c][m], abs=1e-12), (name, c, m)
        top = ours.locations[0]  # the evidence raised the most probable location above its prior
        assert top.probability > topo.component(top.component).fault_mode(top.fault_mode).prior
