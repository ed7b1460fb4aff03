"""What was observed in an incident: fired, passed, not run, or a soft score.

An :class:`Evidence` maps symptom names (``component.detector``) to an
:class:`Observation`:

* ``fired``: the detector alerted (hard evidence ``symptom = fired``);
* ``passed``: the check ran and was fine (hard evidence ``symptom = passed``),
  an explicit negative;
* ``absent``: not observed; contributes nothing (the same as leaving it out);
* soft: a likelihood pair ``(P(score | passed), P(score | fired))`` for a
  detector that reports a score; only its ratio matters.

:meth:`Evidence.resolve` checks the names against a network and returns the
variable -> state pairs actually applied.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from diagnosis._validation import yaml_error_text
from diagnosis.exceptions import EvidenceError, suggest
from diagnosis.model.network import SYMPTOM_STATES, Network

__all__ = ["ABSENT", "FIRED", "PASSED", "Evidence", "Observation", "ResolvedEvidence", "read_evidence"]

FIRED = "fired"
PASSED = "passed"
ABSENT = "absent"
_KINDS = (FIRED, PASSED, ABSENT, "soft")


@dataclass(frozen=True, slots=True)
class Observation:
    """One symptom's observation.

    Parameters
    ----------
    kind : {"fired", "passed", "absent", "soft"}
    likelihood : tuple of float, optional
        For ``soft``: ``(P(score | passed), P(score | fired))``, non-negative,
        not both zero.
    """

    kind: str
    likelihood: tuple[float, float] | None = None

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise EvidenceError(f"observation kind must be one of {list(_KINDS)}. Got {self.kind!r} instead.")
        if self.kind == "soft":
            lik = self.likelihood
            if (
                lik is None
                or len(lik) != 2
                or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0 for x in lik
                )
                or (lik[0] == 0 and lik[1] == 0)
            ):
                raise EvidenceError(
                    "a soft observation needs a likelihood (P(score | passed), P(score | fired)) of two finite "
                    f"numbers >= 0, not both 0. Got {lik!r} instead."
                )
            object.__setattr__(self, "likelihood", (float(lik[0]), float(lik[1])))
        elif self.likelihood is not None:
            raise EvidenceError(f"only soft observations take a likelihood; {self.kind!r} got {self.likelihood!r}")

    @classmethod
    def parse(cls, value: Any) -> Observation:
        """Read an observation from ``"fired"``, ``"passed"``, ``"absent"``,
        ``"fired:0.8,passed:0.1"``, a mapping ``{"fired": 0.8, "passed": 0.1}``
        or a ``{"likelihood": [p_passed, p_fired]}`` mapping.

        Examples
        --------
        >>> Observation.parse("fired")
        Observation(kind='fired', likelihood=None)
        >>> Observation.parse("fired:0.8,passed:0.2").likelihood
        (0.2, 0.8)
        """
        if isinstance(value, Observation):
            return value
        if isinstance(value, str):
            text = value.strip()
            if text in (FIRED, PASSED, ABSENT):
                return cls(text)
            if ":" in text:
                parts = {}
                for chunk in text.split(","):
                    key, _, num = chunk.partition(":")
                    try:
                        parts[key.strip()] = float(num)
                    except ValueError:
                        raise EvidenceError(
                            f"cannot read likelihood {chunk!r} in {value!r}; expected 'fired:P,passed:Q'"
                        ) from None
                return cls._from_mapping(parts, value)
            raise EvidenceError(
                f"unknown observation {value!r}; allowed: 'fired', 'passed', 'absent' or a likelihood 'fired:P,passed:Q'"
                + suggest(text, (FIRED, PASSED, ABSENT))
            )
        if isinstance(value, Mapping):
            if "likelihood" in value:
                return cls("soft", tuple(value["likelihood"]))
            return cls._from_mapping(value, value)
        raise EvidenceError(f"cannot read observation {value!r}; allowed: 'fired', 'passed', 'absent' or a likelihood")

    @classmethod
    def _from_mapping(cls, parts: Mapping, original: Any) -> Observation:
        if set(parts) != {FIRED, PASSED}:
            raise EvidenceError(f"a likelihood needs exactly the keys 'fired' and 'passed'. Got {original!r} instead.")
        return cls("soft", (parts[PASSED], parts[FIRED]))

    def __str__(self) -> str:
        if self.kind == "soft":
            return f"fired:{self.likelihood[1]!r},passed:{self.likelihood[0]!r}"
        return self.kind


@dataclass(frozen=True, slots=True)
class ResolvedEvidence:
    """Evidence checked against a network, in network terms.

    Attributes
    ----------
    hard : Mapping[str, str]
        Network variable -> observed state.
    soft : Mapping[str, tuple[float, ...]]
        Network variable -> likelihood vector in the variable's state order.
    """

    hard: Mapping[str, str]
    soft: Mapping[str, tuple[float, ...]]


@dataclass(frozen=True, slots=True)
class Evidence:
    """The observations of one incident, by symptom name.

    Parameters
    ----------
    observations : Mapping[str, Observation or str]
        Symptom -> observation. Strings are parsed with :meth:`Observation.parse`.

    Examples
    --------
    >>> ev = Evidence({"frontend.latency": "fired", "backend.health_check": "passed"})
    >>> sorted(ev.observations)
    ['backend.health_check', 'frontend.latency']
    """

    observations: Mapping[str, Observation]

    def __post_init__(self):
        if not isinstance(self.observations, Mapping):
            raise EvidenceError(
                f"evidence must be a mapping symptom -> observation. Got {self.observations!r} instead."
            )
        parsed = {}
        for symptom, obs in self.observations.items():
            if not isinstance(symptom, str):
                raise EvidenceError(f"symptom names must be strings. Got {symptom!r} instead.")
            try:
                parsed[symptom] = Observation.parse(obs)
            except EvidenceError as exc:
                raise EvidenceError(f"symptom {symptom!r}: {exc}") from None
        object.__setattr__(self, "observations", MappingProxyType(dict(sorted(parsed.items()))))

    @classmethod
    def from_strings(cls, items: Iterable[str]) -> Evidence:
        """Parse ``SYMPTOM=OBSERVATION`` strings, as the CLI's ``--observe`` takes them.

        Examples
        --------
        >>> Evidence.from_strings(["frontend.latency=fired"]).observations["frontend.latency"].kind
        'fired'
        """
        obs: dict[str, str] = {}
        for item in items:
            symptom, sep, value = item.partition("=")
            if not sep or not symptom.strip():
                raise EvidenceError(f"cannot read {item!r}; expected SYMPTOM=fired|passed|absent|fired:P,passed:Q")
            symptom = symptom.strip()
            if symptom in obs:
                raise EvidenceError(f"symptom {symptom!r} is observed twice ({obs[symptom]!r} and {value!r})")
            obs[symptom] = value
        return cls(obs)

    def resolve(self, network: Network) -> ResolvedEvidence:
        """Check every symptom against ``network`` and translate to variables.

        Raises
        ------
        EvidenceError
            For an unknown symptom, naming it and the closest known ones.
        """
        known = network.symptom_variable
        hard, soft = {}, {}
        for symptom, obs in self.observations.items():
            if symptom not in known:
                close = suggest(symptom, known)
                comp = symptom.partition(".")[0]
                same = sorted(s for s in known if s.partition(".")[0] == comp)
                hint = f"; known for component {comp!r}: {same}" if same else ""
                raise EvidenceError(f"unknown symptom {symptom!r}{close}{hint}")
            var = known[symptom]
            if obs.kind in (FIRED, PASSED):
                hard[var] = obs.kind
            elif obs.kind == "soft":
                lik = dict(zip((PASSED, FIRED), obs.likelihood))
                soft[var] = tuple(lik[s] for s in SYMPTOM_STATES)
        return ResolvedEvidence(MappingProxyType(hard), MappingProxyType(soft))


def read_evidence(path: str | Path) -> tuple[str, Evidence]:
    """Read one incident's observations from a YAML or JSON file.

    The file is a mapping with an optional ``id`` and an ``observations``
    mapping symptom -> ``fired`` | ``passed`` | ``absent`` | ``{fired: P, passed: Q}``.

    Returns
    -------
    (str, Evidence)
        The incident id (the file stem when absent) and its evidence.

    Raises
    ------
    EvidenceError
        Naming the file for a missing file, bad YAML or a bad observation.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise EvidenceError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        if "nesting depth" in str(exc):  # libyaml's own bound on nesting
            raise EvidenceError(f"{path}: cannot read incident: nested too deeply") from None
        raise EvidenceError(
            f"{path}: cannot read incident: {yaml_error_text(exc) if isinstance(exc, yaml.YAMLError) else exc}"
        ) from None
    except RecursionError:
        raise EvidenceError(f"{path}: cannot read incident: nested too deeply") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("observations"), Mapping):
        raise EvidenceError(
            f"{path}: expected a mapping with an 'observations' mapping (symptom -> fired|passed|absent)"
        )
    try:
        evidence = Evidence(data["observations"])
    except EvidenceError as exc:
        raise EvidenceError(f"{path}: observations: {exc}") from None
    return str(data.get("id", path.stem)), evidence
