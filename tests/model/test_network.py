"""The network's tables follow docs/model.md, and exports read back unchanged in pgmpy and pyAgrum."""

import math

import numpy as np
import pytest

from diagnosis import ModelError, Topology, TopologyError, build_network, export_network
from diagnosis.model.network import Variable


def test_fault_prior_table(webshop):
    net = build_network(webshop)
    v = net.variable("fault__backend")
    comp = webshop.component("backend")
    assert v.states == ("ok", *(m.name for m in comp.fault_modes))
    assert v.parents == ()
    np.testing.assert_allclose(v.table, [comp.p_ok, *(m.prior for m in comp.fault_modes)], atol=1e-15)
    assert v.table.sum() == pytest.approx(1.0, abs=1e-15)


def test_impairment_is_noisy_or_with_leak(webshop):
    net = build_network(webshop)
    v = net.variable("impaired__backend")
    assert v.parents == ("fault__backend", "impaired__db")
    comp = webshop.component("backend")
    strength = next(d.strength for d in webshop.dependencies_of("backend"))
    leak = webshop.leak
    impacts = [0.0] + [m.impact for m in comp.fault_modes]
    for f, impact in enumerate(impacts):
        for x in (0, 1):
            p_ok = (1 - leak) * (1 - impact) * (1 - strength) ** x
            assert v.table[f, x, 0] == pytest.approx(p_ok, abs=1e-15)
            assert v.table[f, x, 1] == pytest.approx(1 - p_ok, abs=1e-15)


def test_symptom_table_sensitivity_and_false_alarm(webshop):
    net = build_network(webshop)
    v = net.variable("symptom__frontend__error_rate")
    det = {d.name: d for d in webshop.component("frontend").detectors}["error_rate"]
    assert v.states == ("passed", "fired")
    assert v.parents == ("impaired__frontend", "fault__frontend")
    states = net.variable("fault__frontend").states
    for i, imp in enumerate(("ok", "impaired")):
        for f, mode in enumerate(states):
            active = ([det.sensitivity["impaired"]] if imp == "impaired" else []) + (
                [det.sensitivity[mode]] if mode in det.sensitivity else []
            )
            expected = det.false_alarm if not active else 1 - math.prod(1 - s for s in active)
            assert v.table[i, f, 1] == pytest.approx(expected, abs=1e-15)


def test_variable_checks_its_table():
    with pytest.raises(ModelError, match="does not normalise"):
        Variable("x", ("a", "b"), (), np.array([0.5, 0.6]), "fault", "c")
    with pytest.raises(ModelError, match="outside"):
        Variable("x", ("a", "b"), (), np.array([1.5, -0.5]), "fault", "c")
    with pytest.raises(ModelError, match="shape"):
        Variable("x", ("a", "b"), ("p",), np.array([0.5, 0.5]), "fault", "c")


def test_network_name_collision_is_a_topology_error():
    doc = {"name": "n", "components": [{"name": "a-b"}, {"name": "a_b"}]}
    with pytest.raises(TopologyError, match=r"components 'a-b' and 'a_b' both map to network name 'fault__a_b'"):
        build_network(Topology.from_dict(doc))


def test_bad_max_parents(webshop):
    with pytest.raises(ModelError, match="max_parents must be an int >= 3"):
        build_network(webshop, max_parents=2)


def test_unknown_variable(webshop):
    with pytest.raises(ModelError, match=r"unknown variable 'fault__frontnd'; did you mean 'fault__frontend'"):
        build_network(webshop).variable("fault__frontnd")


def _tables_from_pgmpy(model):
    out = {}
    for cpd in model.get_cpds():
        var = cpd.variable
        out[var] = (
            tuple(cpd.state_names[var]),
            tuple(cpd.variables[1:]),
            {k: tuple(v) for k, v in cpd.state_names.items()},
            cpd.get_values(),
        )
    return out


@pytest.mark.parametrize("suffix", [".bif", ".xmlbif"])
def test_export_reads_back_unchanged_in_pgmpy(webshop, tmp_path, suffix):
    from pgmpy.readwrite import BIFReader, XMLBIFReader

    net = build_network(webshop)
    path = export_network(net, tmp_path / f"web{suffix}")
    model = (BIFReader if suffix == ".bif" else XMLBIFReader)(str(path)).get_model()
    got = _tables_from_pgmpy(model)
    assert set(got) == set(net.variable_names)
    for v in net.variables:
        states, parents, names, values = got[v.name]
        assert states == v.states and parents == v.parents
        np.testing.assert_array_equal(values, v.table.reshape(-1, v.card).T)
        for p in v.parents:
            assert names[p] == net.variable(p).states


@pytest.mark.parametrize("suffix", [".bif", ".xmlbif"])
def test_export_reads_back_unchanged_in_pyagrum(webshop, tmp_path, suffix):
    gum = pytest.importorskip("pyagrum")  # a test extra; installed by `make test`
    net = build_network(webshop)
    path = export_network(net, tmp_path / f"web{suffix}")
    if suffix == ".xmlbif":  # pyAgrum names the same format .bifxml
        path = path.rename(path.with_suffix(".bifxml"))
    bn = gum.loadBN(str(path))
    assert set(bn.names()) == set(net.variable_names)
    for v in net.variables:
        var = bn.variable(v.name)
        assert tuple(var.labels()) == v.states
        cpt = bn.cpt(v.name)
        assert set(cpt.names) == {v.name, *v.parents}
        axes = list(reversed(cpt.names))  # toarray() axes run in the reverse of cpt.names
        arr = np.asarray(cpt.toarray()).transpose([axes.index(n) for n in (*v.parents, v.name)])
        for p in v.parents:
            assert tuple(bn.variable(p).labels()) == net.variable(p).states
        if suffix == ".bif":
            # pyAgrum's BIF parser reads numbers in single precision (0.9 -> float32(0.9));
            # the file holds every value at full precision (pgmpy reads it back exactly).
            np.testing.assert_array_equal(arr, v.table.astype(np.float32).astype(np.float64))
        else:
            np.testing.assert_array_equal(arr, v.table)


def test_export_is_atomic_and_checks_the_path(webshop, tmp_path):
    net = build_network(webshop)
    with pytest.raises(ModelError, match=r"unknown format '\.txt'; allowed suffixes"):
        export_network(net, tmp_path / "x.txt")
    with pytest.raises(ModelError, match="does not exist"):
        export_network(net, tmp_path / "missing" / "x.bif")
    export_network(net, tmp_path / "x.bif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bif"]  # no temporary left behind


def test_to_pgmpy_is_valid(boutique):
    model = build_network(boutique).to_pgmpy()
    assert model.check_model()
