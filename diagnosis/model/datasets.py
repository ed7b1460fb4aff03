"""Bundled topologies and example incidents, found through ``importlib.resources``.

The files live in the repository's ``data/`` folder (credited in
``data/README.md``) and ship inside the package as ``diagnosis/data``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from diagnosis.exceptions import ParameterError, suggest

__all__ = ["bundled_incident", "bundled_topology", "list_bundled"]


_SINGULAR = {"topologies": "topology", "incidents": "incident"}


def _folder(kind: str) -> Path:
    return Path(str(resources.files("diagnosis").joinpath("data", kind)))


def list_bundled(kind: str = "topologies") -> tuple[str, ...]:
    """Names of the bundled files of ``kind`` (``"topologies"`` or ``"incidents"``).

    Examples
    --------
    >>> "webshop" in list_bundled("topologies")
    True
    """
    if kind not in ("topologies", "incidents"):
        raise ParameterError(
            f"The 'kind' parameter of list_bundled must be one of {{'topologies', 'incidents'}}. Got {kind!r} instead."
        )
    return tuple(sorted(p.stem for p in _folder(kind).glob("*.yaml")))


def _find(kind: str, name: str) -> Path:
    path = _folder(kind) / f"{name}.yaml"
    if not path.is_file():
        known = list_bundled(kind)
        raise ParameterError(f"no bundled {_SINGULAR[kind]} {name!r}{suggest(name, known)}; bundled: {list(known)}")
    return path


def bundled_topology(name: str) -> Path:
    """Path of a bundled topology (``webshop``, ``online-boutique``, ``train-ticket``, ...: :func:`list_bundled`)."""
    return _find("topologies", name)


def bundled_incident(name: str) -> Path:
    """Path of a bundled example incident."""
    return _find("incidents", name)
