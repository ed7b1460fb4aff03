"""Map telemetry entities (pods, containers, instances) to topology components.

Metrics and spans name what emitted them: a pod (``frontend-579b9bff58-t2dbm``),
a container, an instance, a service. The topology names components
(``frontend``). An :class:`EntityMap` turns one into the other:

1. an exact ``aliases`` entry (``{"Frontend": "frontend"}``) wins;
2. otherwise the first ``rules`` entry whose regular expression fully
   matches the entity gives the component, its ``component`` template
   filled from the named groups (``"{service}"``);
3. otherwise, with ``identity`` (the default), the entity is its own
   component name; without it the entity is unmapped (None).

The default map has one rule, the Kubernetes pod naming rule used by the
Nezha data: strip the two trailing ``-<hash>`` parts (the ReplicaSet's
pod-template hash and the pod's random suffix). The suffix is matched in
the alphabet Kubernetes draws it from (no vowels), so a name such as
``redis-cache`` is not mistaken for a pod.

An edge entity is written ``caller->callee``; :meth:`EntityMap.edge` maps
both sides.

Examples
--------
>>> m = EntityMap.default()
>>> m.component("frontend-579b9bff58-t2dbm")
'frontend'
>>> m.component("ts-ui-dashboard-5477b965f-2chkr")
'ts-ui-dashboard'
>>> m.component("redis-cache")
'redis-cache'
>>> m.edge("frontend-579b9bff58-t2dbm->cartservice")
('frontend', 'cartservice')
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pandas as pd
import yaml

from diagnosis._validation import yaml_error_text
from diagnosis.exceptions import DiagnosisError

__all__ = [
    "EDGE_SEPARATOR", "NEZHA_POD_RULE", "EntityMap", "EntityRule", "instance_of", "load_entity_map", "to_topology",
]  # fmt: skip

#: Separator between caller and callee in an edge entity (``frontend->cartservice``).
EDGE_SEPARATOR = "->"
# Kubernetes: <deployment>-<pod-template-hash (1-10)>-<suffix (5, from "bcdfghjklmnpqrstvwxz2456789")>.
# An instance of a component, when its name is not itself a component: a StatefulSet's ordinal
# (carts-db-0), a DaemonSet's or bare pod's suffix (node-exporter-x7k2p), an instance number (webservice1).
_INSTANCE = (re.compile(r"(.+)-\d+"), re.compile(r"(.+)-[bcdfghjklmnpqrstvwxz2456789]{5}"), re.compile(r"(.+?)\d+"))
_POD = r"(?P<component>.+)-[a-z0-9]{1,10}-[bcdfghjklmnpqrstvwxz2456789]{5}"


@dataclass(frozen=True, slots=True)
class EntityRule:
    """Entities fully matching ``pattern`` belong to the component ``component``.

    Parameters
    ----------
    pattern : str
        A regular expression, matched against the whole entity name.
    component : str, default ``"{component}"``
        A template filled from the pattern's named groups.
    """

    pattern: str
    component: str = "{component}"

    def __post_init__(self):
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise DiagnosisError(
                f"entity rule pattern {self.pattern!r} is not a valid regular expression: {exc}"
            ) from None
        names = set(re.findall(r"{(\w+)}", self.component))
        missing = names - set(compiled.groupindex)
        if missing:
            raise DiagnosisError(
                f"entity rule component template {self.component!r} uses {sorted(missing)}, "
                f"which pattern {self.pattern!r} does not define; its named groups: {sorted(compiled.groupindex)}"
            )

    def apply(self, entity: str) -> str | None:
        """The component of ``entity``, or None when the rule does not match."""
        m = re.fullmatch(self.pattern, entity)
        if m is None:
            return None
        return self.component.format_map(m.groupdict())


#: The Nezha / Kubernetes rule: ``frontend-579b9bff58-t2dbm`` -> ``frontend``.
NEZHA_POD_RULE = EntityRule(_POD, "{component}")


@dataclass(frozen=True, slots=True)
class EntityMap:
    """How entity names map to component names (see the module docstring).

    Parameters
    ----------
    rules : tuple of EntityRule
        Tried in order; the first match wins.
    aliases : Mapping[str, str]
        Exact entity -> component, tried first.
    identity : bool, default True
        An entity no alias or rule maps is its own component.
    """

    rules: tuple[EntityRule, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    identity: bool = True

    def __post_init__(self):
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "aliases", MappingProxyType(dict(self.aliases)))

    @classmethod
    def default(cls) -> EntityMap:
        """The Nezha pod rule, then identity."""
        return cls(rules=(NEZHA_POD_RULE,))

    def component(self, entity: str) -> str | None:
        """The component of one entity, or None when unmapped."""
        if entity in self.aliases:
            return self.aliases[entity]
        for rule in self.rules:
            c = rule.apply(entity)
            if c is not None:
                return c
        return entity if self.identity else None

    def edge(self, entity: str) -> tuple[str | None, str | None]:
        """``(caller, callee)`` components of an edge entity ``caller->callee``."""
        caller, sep, callee = entity.partition(EDGE_SEPARATOR)
        if not sep:
            return None, self.component(entity)
        return self.component(caller), self.component(callee)

    def map(self, entities: Iterable[str] | pd.Series) -> pd.Series:
        """Components of many entities (each distinct name is resolved once); None when unmapped.

        Edge entities map to ``caller->callee`` of components (None when either side is unmapped).
        """
        s = pd.Series(entities, dtype=object) if not isinstance(entities, pd.Series) else entities.astype(object)
        lookup: dict[Any, str | None] = {}
        for e in pd.unique(s):
            if not isinstance(e, str):
                lookup[e] = None
            elif EDGE_SEPARATOR in e:
                a, b = self.edge(e)
                lookup[e] = None if a is None or b is None else f"{a}{EDGE_SEPARATOR}{b}"
            else:
                lookup[e] = self.component(e)
        out = pd.Series([lookup[e] for e in s], index=s.index, dtype=object)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A mapping :func:`load_entity_map` reads back."""
        return {
            "rules": [{"match": r.pattern, "component": r.component} for r in self.rules],
            "aliases": dict(self.aliases),
            "identity": self.identity,
        }


def instance_of(name: str, known) -> str | None:
    """The component ``name`` is, or is an instance of, among ``known`` component names; None if neither.

    A name that is a component is itself. Otherwise the endings replicas carry
    are tried in turn, and the first that leaves a known component wins: a
    StatefulSet's ordinal (``carts-db-0``), a DaemonSet's or bare pod's
    five-letter suffix (``node-exporter-x7k2p``), an instance number
    (``webservice1``, GAIA MicroSS). Only known names are accepted, so
    ``ts-travel2-service`` stays itself.

    Examples
    --------
    >>> known = {"carts-db", "webservice", "ts-travel2-service"}
    >>> [instance_of(n, known) for n in ("carts-db-0", "webservice2", "ts-travel2-service", "orders-1")]
    ['carts-db', 'webservice', 'ts-travel2-service', None]
    """
    if name in known:
        return name
    for pattern in _INSTANCE:
        m = pattern.fullmatch(name)
        if m and m.group(1) in known:
            return m.group(1)
    return None


def to_topology(components: pd.Series, known) -> tuple[pd.Series, dict[str, str]]:
    """Components (``caller->callee`` for edges) with each instance name replaced by its component.

    Names that are neither a known component nor an instance of one
    (:func:`instance_of`) are kept as they are. Returns the series and the
    replacements made (instance name -> component).
    """
    known = set(known)
    swap: dict[str, str] = {}

    def one(c):
        if not isinstance(c, str) or c in known:
            return c
        if EDGE_SEPARATOR in c:
            a, _, b = c.partition(EDGE_SEPARATOR)
            return f"{one(a)}{EDGE_SEPARATOR}{one(b)}"
        t = instance_of(c, known)
        if t is None:
            return c
        swap[c] = t
        return t

    values = components.to_numpy(dtype=object)
    lookup = {c: one(c) for c in pd.unique(values) if isinstance(c, str)}
    out = [lookup[c] if isinstance(c, str) else c for c in values]
    return pd.Series(out, index=components.index, dtype=object), swap


def load_entity_map(source: str | Path | Mapping | None) -> EntityMap:
    """Read an entity map from a YAML file or a mapping; None gives :meth:`EntityMap.default`.

    The document::

        rules:                       # tried in order; the first full match wins
          - match: '(?P<component>.+)-[a-z0-9]{1,10}-[a-z0-9]{5}'
            component: '{component}'
        aliases:                     # exact entity -> component, tried first
          Frontend: frontend
        identity: true               # unmapped entities are their own component (default true)

    Raises
    ------
    DiagnosisError
        Naming the file, the field and the bad value.
    """
    if source is None:
        return EntityMap.default()
    name = "entity map"
    if isinstance(source, Mapping):
        doc: Any = source
    elif not isinstance(source, (str, Path)):
        raise DiagnosisError(
            f"{name}: must be a mapping with 'rules', 'aliases' and 'identity', or a YAML file. Got {type(source).__name__} instead."
        )
    else:
        name = str(source)
        try:
            doc = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
        except OSError as exc:
            raise DiagnosisError(f"{name}: cannot read the entity map: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise DiagnosisError(f"{name}: not valid YAML: {yaml_error_text(exc)}") from None
    if not isinstance(doc, Mapping):
        raise DiagnosisError(
            f"{name}: must be a mapping with 'rules', 'aliases' and 'identity'. Got {type(doc).__name__} instead."
        )
    unknown = set(doc) - {"rules", "aliases", "identity"}
    if unknown:
        raise DiagnosisError(f"{name}: unknown key {min(unknown)!r}; allowed: ['aliases', 'identity', 'rules']")
    rules = []
    for i, r in enumerate(doc.get("rules") or []):
        if not isinstance(r, Mapping) or not isinstance(r.get("match"), str):
            raise DiagnosisError(f"{name}: rules[{i}] must be a mapping with a string 'match'. Got {r!r} instead.")
        comp = r.get("component", "{component}")
        if not isinstance(comp, str):
            raise DiagnosisError(f"{name}: rules[{i}].component must be a string template. Got {comp!r} instead.")
        try:
            rules.append(EntityRule(r["match"], comp))
        except DiagnosisError as exc:
            raise DiagnosisError(f"{name}: rules[{i}]: {exc}") from None
    aliases = doc.get("aliases") or {}
    if not isinstance(aliases, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
    ):
        raise DiagnosisError(
            f"{name}: aliases must map entity names to component names (strings). Got {aliases!r} instead."
        )
    identity = doc.get("identity", True)
    if not isinstance(identity, bool):
        raise DiagnosisError(f"{name}: identity must be true or false. Got {identity!r} instead.")
    return EntityMap(tuple(rules), dict(aliases), identity)
