"""The public API is exactly what __all__ says, sorted."""

import diagnosis


def test_all_is_sorted_and_complete():
    assert diagnosis.__all__ == sorted(diagnosis.__all__)
    public = {name for name in dir(diagnosis) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(diagnosis, name)).__name__ == "module"}
    assert public - modules == set(diagnosis.__all__)


def test_every_error_is_a_diagnosis_error():
    for name in ("TopologyError", "EvidenceError", "IncidentLogError", "ModelError", "NotFittedError"):
        cls = getattr(diagnosis, name)
        assert issubclass(cls, diagnosis.DiagnosisError)
    assert issubclass(diagnosis.TopologyError, ValueError)
    assert issubclass(diagnosis.NotFittedError, AttributeError)


def test_version():
    assert diagnosis.__version__.count(".") >= 2
