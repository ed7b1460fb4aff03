"""Entity -> component mapping: the Nezha pod rule, aliases, identity, edges, and the YAML form."""

import pytest

from diagnosis import DiagnosisError
from diagnosis.telemetry import EntityMap, EntityRule, load_entity_map


@pytest.mark.parametrize(
    ("entity", "component"),
    [
        ("frontend-579b9bff58-t2dbm", "frontend"),
        ("ts-consign-price-service-df498d7fb-725nt", "ts-consign-price-service"),
        ("ts-ui-dashboard-5477b965f-2chkr", "ts-ui-dashboard"),
        ("frontend", "frontend"),  # a bare service name is its own component
        ("redis-cache", "redis-cache"),  # 'cache' has vowels: not a pod suffix
        ("ts-travel-service", "ts-travel-service"),
    ],
)
def test_default_rule_strips_the_two_trailing_hash_parts(entity, component):
    assert EntityMap.default().component(entity) == component


def test_aliases_win_and_identity_can_be_turned_off():
    m = EntityMap(rules=(EntityRule(r"(?P<svc>.+)-v\d+", "{svc}"),), aliases={"Frontend": "frontend"}, identity=False)
    assert m.component("Frontend") == "frontend"
    assert m.component("cart-v2") == "cart"
    assert m.component("unknown") is None
    assert m.edge("Frontend->cart-v3") == ("frontend", "cart")
    assert m.map(["cart-v1", "nope", "Frontend->cart-v1"]).tolist() == ["cart", None, "frontend->cart"]


def test_round_trip_through_a_mapping(tmp_path):
    m = EntityMap(rules=(EntityRule(r"(?P<component>[a-z]+)-\d+"),), aliases={"A": "a"}, identity=False)
    path = tmp_path / "entities.yaml"
    import yaml

    path.write_text(yaml.safe_dump(m.to_dict()))
    assert load_entity_map(path) == m
    assert load_entity_map(None) == EntityMap.default()


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"rules": [{"match": "("}]}, "not a valid regular expression"),
        ({"rules": [{"match": "(?P<x>.+)", "component": "{service}"}]}, r"uses \['service'\], which pattern"),
        ({"rulez": []}, "unknown key 'rulez'"),
        ({"rules": ["x"]}, r"rules\[0\] must be a mapping"),
        ({"aliases": {"a": 1}}, "aliases must map entity names"),
        ({"identity": "yes"}, "identity must be true or false"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_entity_map_errors_name_the_problem(doc, match):
    with pytest.raises(DiagnosisError, match=match):
        load_entity_map(doc)


def test_entity_map_file_errors(tmp_path):
    with pytest.raises(DiagnosisError, match="cannot read the entity map"):
        load_entity_map(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(DiagnosisError, match="not valid YAML"):
        load_entity_map(bad)
