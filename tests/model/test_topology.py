"""Topology loading and validation: every error branch names the file, the path and the value."""

import textwrap

import pytest

from diagnosis import Topology, TopologyError, bundled_topology, list_bundled, load_topology
from diagnosis.model.topology import Action, Component, Detector, FaultMode


def base(**extra):
    doc = {
        "name": "t",
        "components": [
            {"name": "web", "kind": "service", "calls": ["api"]},
            {"name": "api", "kind": "service", "uses": ["db"], "host": "h1"},
            {"name": "db", "kind": "database"},
            {"name": "h1", "kind": "host"},
        ],
    }
    doc.update(extra)
    return doc


def test_bundled_topologies_load():
    assert set(list_bundled()) >= {"webshop", "online-boutique", "train-ticket"}
    for name in list_bundled():
        topo = load_topology(bundled_topology(name))
        assert topo.components and topo.symptoms and topo.actions


def test_defaults_by_kind_and_overrides():
    doc = base()
    doc["components"][0]["fault_modes"] = {
        "crash": 0.05,
        "memory_leak": None,
        "gc_pause": {"prior": 0.01, "impact": 0.5},
    }
    topo = Topology.from_dict(doc)
    web = topo.component("web")
    names = [m.name for m in web.fault_modes]
    assert "memory_leak" not in names and "gc_pause" in names
    assert (
        web.fault_mode("crash").prior == 0.05 and web.fault_mode("crash").impact == 1.0
    )  # impact kept from the default
    assert [m.name for m in topo.component("db").fault_modes] == ["down", "slow_queries", "disk_full", "inconsistency"]
    assert {d.name for d in topo.component("h1").detectors} >= {"fs_integrity", "ping"}
    # Edge strengths default by type.
    types = {(d.source, d.target): (d.type, d.strength) for d in topo.dependencies}
    assert types == {("web", "api"): ("call", 0.7), ("api", "db"): ("datastore", 0.8), ("api", "h1"): ("host", 0.9)}


def test_global_default_overrides():
    doc = base(
        defaults={"edge_strength": {"call": 0.5}, "leak": 0.01, "kinds": {"service": {"fault_modes": {"crash": 0.2}}}}
    )
    topo = Topology.from_dict(doc)
    assert topo.leak == 0.01
    assert [d.strength for d in topo.dependencies if d.type == "call"] == [0.5]
    assert topo.component("api").fault_mode("crash").prior == 0.2


def test_to_dict_round_trips(webshop):
    again = Topology.from_dict(webshop.to_dict())
    assert again.components == webshop.components
    assert again.dependencies == webshop.dependencies


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda d: d["components"][0].update(calls=["apx"]),
            r"components\[0\]\.calls\[0\]: unknown component 'apx'; did you mean 'api'",
        ),
        (lambda d: d["components"].append({"name": "web"}), r"components\[4\]\.name: duplicate component 'web'"),
        (
            lambda d: d["components"][0].update(kind="servce"),
            r"components\[0\]\.kind: unknown kind 'servce'.*did you mean 'service'",
        ),
        (
            lambda d: d["components"][0].update(fault_modes={"crash": 1.5}),
            r"fault_modes\.crash\.prior: must be a probability in \[0, 1\]\. Got 1\.5",
        ),
        (lambda d: d["components"][0].update(fault_modes={"crash": -0.1}), r"Got -0\.1 instead"),
        (
            lambda d: d["components"][0].update(fault_modes={"crash": 0.6, "bad_deploy": 0.6}),
            r"priors of component 'web' sum to",
        ),
        (
            lambda d: d["components"][0].update(calls=[{"to": "api", "strength": 2}]),
            r"calls\[0\]\.strength: must be a probability",
        ),
        (lambda d: d["components"][0].update(calls=["api", "api"]), r"duplicate dependency 'web' -> 'api'"),
        (lambda d: d["components"][0].update(calls=["web"]), r"cannot depend on itself"),
        (lambda d: d["components"][2].update(calls=["web"]), r"dependency cycle web -> api -> db -> web|call target"),
        (
            lambda d: d["components"][0].update(calls=["db"]),
            r"call target 'db' is a database; list datastores under 'uses'",
        ),
        (lambda d: d["components"][0].update(calls=["h1"]), r"call target 'h1' is a host"),
        (lambda d: d["components"][1].update(uses=["web"]), r"'uses' target 'web' has kind 'service'"),
        (lambda d: d["components"][0].update(host="db"), r"host 'db' has kind 'database'"),
        (lambda d: d["components"][0].update(host_strength=0.5), r"host_strength: given without a host"),
        (lambda d: d["components"][0].update(colour="red"), r"components\[0\]\.colour: unknown field 'colour'"),
        (lambda d: d["components"][0].update(name="9lives"), r"must be a name matching"),
        (
            lambda d: d["components"][0].update(detectors={"latency": {"raised_by": {"impared": 0.9}}}),
            r"unknown trigger 'impared'.*did you mean 'impaired'",
        ),
        (
            lambda d: d["components"][0].update(detectors={"lat": {"raised_by": ["impaired"], "false_alarm": 0.1}}),
            r"sensitivity: is required when raised_by is a list",
        ),
        (
            lambda d: d["components"][0].update(detectors={"lat": {"raised_by": {"impaired": 0.9}}}),
            r"detectors\.lat\.false_alarm: is required",
        ),
        (
            lambda d: d["components"][0].update(
                detectors={"lat": {"raised_by": {"impaired": 0.9}, "sensitivity": 0.9, "false_alarm": 0}}
            ),
            r"not both",
        ),
        (
            lambda d: d["components"][0].update(detectors={"lat": {"raised_by": 3, "false_alarm": 0.1}}),
            r"raised_by: must be a list",
        ),
        (
            lambda d: d["components"][0].update(detectors={"lat": {"raised_by": {}, "false_alarm": 0.1}}),
            r"must name at least one trigger",
        ),
        (
            lambda d: d["components"][0].update(detectors={"latency": {"false_alarm": 1.2}}),
            r"detectors\.latency\.false_alarm: must be a probability",
        ),
        (lambda d: d["components"][0].update(detectors={"latency": {"watches": 5}}), r"watches: must be a string"),
        (
            lambda d: d["components"][0].update(
                detectors={"Bad-Name": {"raised_by": ["crash"], "sensitivity": 1, "false_alarm": 0}}
            ),
            r"a detector name must match",
        ),
        (
            lambda d: d["components"][0].update(actions={"restart": {"success": {"crsh": 0.9}}}),
            r"unknown fault mode 'crsh'.*did you mean 'crash'",
        ),
        (
            lambda d: d["components"][0].update(actions={"restart": {"cost": -1}}),
            r"actions\.restart\.cost: must be a number >= 0\. Got -1",
        ),
        (
            lambda d: d["components"][0].update(actions={"restart": {"success": {"crash": 7}}}),
            r"success\.crash: must be a probability",
        ),
        (lambda d: d["components"][0].update(fault_modes={"ok": 0.1}), r"'ok' is reserved"),
        (
            lambda d: d["components"][0].update(fault_modes={"crash": {"impact": 0.5, "prior": None}}),
            r"prior: must be a probability",
        ),
        (
            lambda d: d["components"][0].update(fault_modes={"newmode": {"impact": 0.5}}),
            r"fault_modes\.newmode\.prior: is required",
        ),
        (
            lambda d: d["components"][0].update(fault_modes={"nonexistent": None}),
            r"cannot remove 'nonexistent': no such default",
        ),
        (lambda d: d["components"][0].update(replace_defaults="yes"), r"replace_defaults: must be true or false"),
        (lambda d: d["components"][0].update(calls="api"), r"calls: must be a list"),
        (lambda d: d.update(leak=3), r"leak: must be a probability"),
        (lambda d: d.update(cycles="ignore"), r"cycles: must be one of \['reject', 'break'\]"),
        (lambda d: d.update(name=""), r"name: must be a non-empty string"),
        (lambda d: d.update(components=[]), r"components: must be a non-empty list"),
        (lambda d: d.update(extra=1), r"unknown field 'extra'"),
        (
            lambda d: d.update(defaults={"edge_strength": {"cal": 0.5}}),
            r"unknown dependency type 'cal'.*did you mean 'call'",
        ),
        (lambda d: d.update(defaults={"kinds": {"databse": {}}}), r"unknown kind 'databse'.*did you mean 'database'"),
        (
            lambda d: d.update(defaults={"kinds": {"host": {"colour": 1}}}),
            r"defaults\.kinds\.host\.colour: unknown field",
        ),
        (lambda d: d["components"].__setitem__(0, "web"), r"components\[0\]: expected a mapping"),
    ],
)
def test_errors(mutate, match):
    doc = base()
    mutate(doc)
    with pytest.raises(TopologyError, match=match):
        Topology.from_dict(doc, source="t.yaml")


def test_error_names_the_file():
    doc = base()
    doc["components"][0]["calls"] = ["nope"]
    with pytest.raises(TopologyError) as info:
        Topology.from_dict(doc, source="plat.yaml")
    assert str(info.value).startswith("plat.yaml, components[0].calls[0]: unknown component 'nope'")
    assert info.value.source == "plat.yaml" and info.value.path == "components[0].calls[0]"


def test_cycle_rejected_by_default_and_named():
    doc = {
        "name": "c",
        "components": [{"name": "a", "calls": ["b"]}, {"name": "b", "calls": ["c"]}, {"name": "c", "calls": ["a"]}],
    }
    with pytest.raises(TopologyError, match=r"components\[2\]\.calls\[0\]: dependency cycle a -> b -> c -> a"):
        Topology.from_dict(doc)


def test_cycle_break_drops_the_closing_edge():
    doc = {
        "name": "c",
        "cycles": "break",
        "components": [
            {"name": "a", "calls": ["b"]},
            {"name": "b", "calls": ["c", "a"]},
            {"name": "c", "calls": ["a"]},
        ],
    }
    topo = Topology.from_dict(doc)
    assert {(d.source, d.target) for d in topo.dropped_dependencies} == {("c", "a"), ("b", "a")}
    assert {(d.source, d.target) for d in topo.dependencies} == {("a", "b"), ("b", "c")}


def test_train_ticket_breaks_its_two_cycles():
    topo = load_topology(bundled_topology("train-ticket"))
    assert {(d.source, d.target) for d in topo.dropped_dependencies} == {
        ("ts-seat-service", "ts-travel-service"),
        ("ts-travel2-service", "ts-seat-service"),
    }


def write(tmp_path, text):
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_file_errors(tmp_path):
    with pytest.raises(TopologyError, match=r"missing\.yaml: file not found"):
        load_topology(tmp_path / "missing.yaml")
    with pytest.raises(
        TopologyError, match=r"t\.yaml: not valid YAML: line 2, column 1: [^\n]*\(while parsing a flow sequence\)$"
    ):
        load_topology(write(tmp_path, "name: [unclosed\n"))  # one line, no "<unicode string>"
    with pytest.raises(TopologyError, match=r"the file is empty"):
        load_topology(write(tmp_path, ""))
    with pytest.raises(TopologyError, match=r"\(top level\): expected a mapping"):
        load_topology(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(TopologyError, match=r"cannot read file"):
        load_topology(tmp_path)


def test_duplicate_yaml_keys_are_reported_with_lines(tmp_path):
    text = """\
    name: t
    components:
      - name: web
        fault_modes:
          crash: 0.1
          crash: 0.2
    """
    with pytest.raises(
        TopologyError, match=r"components\[0\]\.fault_modes: duplicate key 'crash' \(line 6; first at line 5\)"
    ):
        load_topology(write(tmp_path, text))


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "name: !!python/object/apply:os.system ['echo hi']\ncomponents: []\n")
    with pytest.raises(TopologyError, match="not valid YAML"):
        load_topology(path)


def test_unknown_component_lookup(webshop):
    with pytest.raises(TopologyError, match=r"unknown component 'frontnd'; did you mean 'frontend'"):
        webshop.component("frontnd")


def test_value_classes_check_invariants():
    with pytest.raises(TopologyError, match="prior must be a probability"):
        FaultMode("crash", 1.2)
    with pytest.raises(TopologyError, match="false_alarm must be a probability"):
        Detector("d", "c", "latency", {"impaired": 0.5}, 2.0)
    with pytest.raises(TopologyError, match="raised by nothing"):
        Detector("d", "c", "latency", {}, 0.1)
    with pytest.raises(TopologyError, match="cost must be a number >= 0"):
        Action("a", "c", {}, cost=-2)
    with pytest.raises(TopologyError, match="sum to"):
        Component("c", "service", fault_modes=(FaultMode("a", 0.7), FaultMode("b", 0.7)))
    d = Detector("d", "c", "latency", {"impaired": 0.5}, 0.1)
    with pytest.raises(TypeError):
        d.sensitivity["impaired"] = 0.9  # read-only mapping


def test_removing_a_fault_mode_prunes_default_detectors_and_actions():
    doc = base()
    doc["components"][0]["fault_modes"] = {"memory_leak": None, "cpu_saturation": None}
    web = Topology.from_dict(doc).component("web")
    dets = {d.name: d for d in web.detectors}
    assert "memory" not in dets and "cpu" not in dets  # watched only removed modes
    assert "memory_leak" not in web.actions[0].success
    assert dict({a.name: a for a in web.actions}["scale_out"].success) == {"network_latency": 0.3}
    # A user-written detector that names a removed mode is still an error.
    doc["components"][0]["detectors"] = {"mine": {"raised_by": {"memory_leak": 0.9}, "false_alarm": 0.1}}
    with pytest.raises(TopologyError, match="unknown trigger 'memory_leak'"):
        Topology.from_dict(doc)


@pytest.mark.parametrize(
    ("rules", "match"),
    [
        ([{"symptom": "{service}.latency"}], r"alerts\[0\]: a rule needs 'match' or 'match_re'"),
        (
            [{"match": {"alertname": "X"}, "symptom": "web.latncy"}],
            r"alerts\[0\]\.symptom: unknown symptom 'web\.latncy'; did you mean 'web\.latency'",
        ),
        (
            [{"match_re": {"alertname": "("}, "symptom": "{service}.latency"}],
            r"alerts\[0\]\.match_re\.alertname: bad regular expression",
        ),
        ([{"match": {"alertname": 3}, "symptom": "{service}.latency"}], r"label values must be strings"),
        ([{"match": {"a": "b"}, "symptom": "{0}.latency"}], r"template fields must be label names"),
        ([{"match": {"a": "b"}, "symptom": "{service.latency"}], r"bad template"),
        ({"match": {"a": "b"}}, r"alerts: must be a list of rules"),
        ([{"match": {"a": "b"}, "symptom": "web.latency", "colour": 1}], r"alerts\[0\]\.colour: unknown field"),
    ],
)
def test_alert_rule_errors(rules, match):
    doc = base(alerts=rules)
    with pytest.raises(TopologyError, match=match):
        Topology.from_dict(doc)


def test_alert_rules_map_labels():
    topo = Topology.from_dict(base(alerts=[
        {"match": {"alertname": "HighLatency"}, "symptom": "{service}.latency"},
        {"match_re": {"alertname": "KubePod(CrashLooping|NotReady)"}, "symptom": "{service}.health_check"},
    ]))  # fmt: skip
    latency, health = topo.alert_rules
    assert latency.symptom_for({"alertname": "HighLatency", "service": "web"}) == "web.latency"
    assert latency.symptom_for({"alertname": "HighErrorRate", "service": "web"}) is None
    assert latency.symptom_for({"alertname": "HighLatency"}) is None  # the template's label is missing
    assert health.symptom_for({"alertname": "KubePodNotReady", "service": "api"}) == "api.health_check"
    assert health.symptom_for({"alertname": "KubePodNotReadyish", "service": "api"}) is None  # full match only
    assert Topology.from_dict(topo.to_dict()).alert_rules == topo.alert_rules


def test_unknown_fault_mode_is_a_topology_error_with_a_suggestion(webshop):
    from diagnosis.exceptions import TopologyError

    db = webshop.component("db")
    with pytest.raises(
        TopologyError, match=r"component 'db' has no fault mode 'slow_query'; did you mean 'slow_queries'\?"
    ):
        db.fault_mode("slow_query")
