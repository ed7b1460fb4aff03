"""Evidence: fired / passed / absent / soft, and its errors."""

import pytest

from diagnosis import Evidence, EvidenceError, Observation, build_network, read_evidence


def test_parse_kinds():
    assert Observation.parse("fired") == Observation("fired")
    assert Observation.parse(" passed ") == Observation("passed")
    assert Observation.parse("absent").kind == "absent"
    assert Observation.parse("fired:0.8,passed:0.2") == Observation("soft", (0.2, 0.8))
    assert Observation.parse({"fired": 1, "passed": 3}).likelihood == (3.0, 1.0)
    assert Observation.parse({"likelihood": [0.5, 0.25]}).likelihood == (0.5, 0.25)
    assert str(Observation("soft", (0.2, 0.8))) == "fired:0.8,passed:0.2"


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("fird", r"unknown observation 'fird'.*did you mean 'fired'"),
        ("fired:x,passed:1", r"cannot read likelihood 'fired:x'"),
        ("fired:0.5", r"exactly the keys 'fired' and 'passed'"),
        ({"fired": -1, "passed": 1}, r"two finite numbers >= 0"),
        ({"fired": 0, "passed": 0}, r"not both 0"),
        (3, r"cannot read observation 3"),
    ],
)
def test_parse_errors(value, match):
    with pytest.raises(EvidenceError, match=match):
        Observation.parse(value)


def test_observation_checks():
    with pytest.raises(EvidenceError, match="observation kind must be one of"):
        Observation("maybe")
    with pytest.raises(EvidenceError, match="only soft observations take a likelihood"):
        Observation("fired", (0.1, 0.2))


def test_evidence_errors():
    with pytest.raises(EvidenceError, match="must be a mapping"):
        Evidence(["a=fired"])
    with pytest.raises(EvidenceError, match="symptom names must be strings"):
        Evidence({3: "fired"})
    with pytest.raises(EvidenceError, match=r"symptom 'a\.b': unknown observation"):
        Evidence({"a.b": "nope"})
    with pytest.raises(EvidenceError, match="observed twice"):
        Evidence.from_strings(["a.b=fired", "a.b=passed"])
    with pytest.raises(EvidenceError, match="expected SYMPTOM="):
        Evidence.from_strings(["=fired"])


def test_resolve(webshop):
    net = build_network(webshop)
    ev = Evidence(
        {
            "db.latency": "fired",
            "db.health_check": "passed",
            "frontend.cpu": "absent",
            "backend.latency": "fired:0.7,passed:0.1",
        }
    )
    r = ev.resolve(net)
    assert dict(r.hard) == {"symptom__db__latency": "fired", "symptom__db__health_check": "passed"}
    assert dict(r.soft) == {"symptom__backend__latency": (0.1, 0.7)}  # (passed, fired): the variable's state order
    with pytest.raises(
        EvidenceError, match=r"unknown symptom 'db\.latancy'; did you mean 'db\.latency'.*known for component 'db'"
    ):
        Evidence({"db.latancy": "fired"}).resolve(net)
    with pytest.raises(EvidenceError, match=r"unknown symptom 'zzz\.q'$"):
        Evidence({"zzz.q": "fired"}).resolve(net)


def test_read_evidence(tmp_path):
    p = tmp_path / "i.yaml"
    p.write_text("id: x1\nobservations:\n  a.b: fired\n")
    ident, ev = read_evidence(p)
    assert ident == "x1" and ev.observations["a.b"].kind == "fired"
    p.write_text("observations:\n  a.b: maybe\n")
    with pytest.raises(EvidenceError, match=r"i\.yaml: observations: symptom 'a\.b': unknown observation 'maybe'"):
        read_evidence(p)
    p.write_text("observations: [\n")
    with pytest.raises(EvidenceError, match=r"i\.yaml: cannot read incident: line 2, column 1: [^\n]*flow node\)$"):
        read_evidence(p)
    with pytest.raises(EvidenceError, match="file not found"):
        read_evidence(tmp_path / "missing.yaml")
