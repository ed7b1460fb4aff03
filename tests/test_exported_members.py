"""The public API is exactly what __all__ says, sorted, in the package and every sub-package."""

import importlib
import pkgutil
import warnings

import pytest

import diagnosis
from diagnosis import exceptions


def _modules():
    names = ["diagnosis"]
    for info in pkgutil.walk_packages(diagnosis.__path__, "diagnosis."):
        if not info.name.rsplit(".", 1)[-1].startswith("_") or info.name.endswith("__main__"):
            names.append(info.name)
    return sorted(n for n in names if not n.endswith("__main__"))


MODULES = _modules()


def _isort_key(name: str):
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions; alphabetical within each."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_complete():
    assert diagnosis.__all__ == sorted(diagnosis.__all__, key=_isort_key)
    public = {name for name in dir(diagnosis) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(diagnosis, name)).__name__ == "module"}
    assert public - modules == set(diagnosis.__all__)


def test_sub_packages_are_covered():
    for pkg in ("model", "inference", "logs", "postmortem", "learning", "telemetry", "cli"):
        assert f"diagnosis.{pkg}" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_every_public_module_has_a_sorted_importable_all(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pgmpy's own import-time notice
        module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    assert list(module.__all__) == sorted(module.__all__, key=_isort_key), f"{name}.__all__ is not sorted"
    assert len(set(module.__all__)) == len(module.__all__), f"{name}.__all__ has duplicates"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"


def test_package_all_is_public_in_sub_packages():
    """What a sub-package's __init__ exports is public (no leading underscore)."""
    for name in MODULES:
        module = importlib.import_module(name)
        assert not [n for n in module.__all__ if n.startswith("_")], name


def test_every_error_is_a_diagnosis_error():
    for name in (
        "TopologyError",
        "EvidenceError",
        "IncidentLogError",
        "ModelError",
        "ModelTooLargeError",
        "ModelFileError",
        "TelemetryError",
        "ParameterError",
        "NotFittedError",
    ):
        cls = getattr(exceptions, name)
        assert issubclass(cls, diagnosis.DiagnosisError)
    assert issubclass(diagnosis.TopologyError, ValueError)
    assert issubclass(diagnosis.NotFittedError, AttributeError)
    assert issubclass(exceptions.ParameterError, ValueError) and issubclass(exceptions.ParameterError, TypeError)
    assert issubclass(exceptions.ModelTooLargeError, exceptions.ModelError)
    for w in ("ApproximationWarning", "ConvergenceWarning"):
        assert issubclass(getattr(exceptions, w), exceptions.DiagnosisWarning)
        assert issubclass(getattr(exceptions, w), UserWarning)


def test_version():
    assert diagnosis.__version__.count(".") >= 2
