"""Per-group accuracy and calibration of scored incidents, and component alias maps.

``diagnosis score --group-by fault_type|component`` and ``--aliases FILE``
read the per-incident results :func:`~diagnosis.logs.scoring.score_log`
writes (``posterior``: ``"component:mode" -> p``, ``true_component``,
``true_fault_mode``) and recompute, per group, the component-level figures:
AC@1/3/5, MRR and the top-1 expected calibration error.

An **alias map** is a YAML mapping ``component: unit`` (``carts-db: carts``):
the posterior of every component that maps to a unit is summed into the unit
(capped at 1, as the component level sums a component's fault modes), the
true component is mapped the same way, and ranks are taken over units. Use it
to score at service level when the topology splits a service into parts
(a service and its database, a pod and its sidecar). Components not in the
map are their own unit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from diagnosis._validation import yaml_error_text
from diagnosis.exceptions import DiagnosisError, suggest
from diagnosis.logs.scoring import N_BINS

__all__ = ["GROUP_BY", "group_metrics", "load_aliases", "read_scored"]

#: What ``--group-by`` accepts.
GROUP_BY = ("fault_type", "component")


def load_aliases(path: str | Path, components: Iterable[str] | None = None) -> dict[str, str]:
    """Read a component alias map: a YAML mapping ``component: unit``.

    Parameters
    ----------
    path : path-like
    components : iterable of str, optional
        The topology's components: every key must be one (a typo would
        silently alias nothing).

    Raises
    ------
    DiagnosisError
        The file is missing, is not YAML, is not a mapping of names to names,
        or names a component the topology does not have (naming the file and
        the bad entry).
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DiagnosisError(f"{path}: cannot read the alias map: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise DiagnosisError(f"{path}: the alias map is not valid YAML: {yaml_error_text(exc)}") from None
    if not isinstance(doc, Mapping) or not doc:
        raise DiagnosisError(
            f"{path}: the alias map must be a mapping of component to unit (carts-db: carts). Got {doc!r} instead."
        )
    known = None if components is None else set(components)
    out = {}
    for k, v in doc.items():
        if not isinstance(k, str) or not k or not isinstance(v, str) or not v:
            raise DiagnosisError(f"{path}: entry {k!r}: {v!r}: both sides must be non-empty component names")
        if known is not None and k not in known:
            raise DiagnosisError(
                f"{path}: entry {k!r}: unknown component{suggest(k, known)}; allowed: the topology's components "
                f"{sorted(known)}"
            )
        out[k] = v
    return out


def read_scored(path: str | Path) -> pd.DataFrame:
    """The per-incident results of ``diagnosis score`` (``.jsonl``, ``.parquet`` or ``.csv``)."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    return pd.read_json(path, lines=True, dtype=False)


def _unit_probabilities(posterior: str | Mapping, aliases: Mapping[str, str]) -> dict[str, float]:
    post = json.loads(posterior) if isinstance(posterior, str) else dict(posterior)
    out: dict[str, float] = {}
    for loc, p in post.items():
        comp = str(loc).split(":", 1)[0]
        unit = aliases.get(comp, comp)
        out[unit] = out.get(unit, 0.0) + float(p)
    return {u: min(p, 1.0) for u, p in out.items()}


def group_metrics(
    scored: pd.DataFrame,
    *,
    by: str | None = None,
    aliases: Mapping[str, str] | None = None,
    fault_types: Mapping[str, str] | None = None,
) -> dict[str, dict[str, float]]:
    """Component-level AC@1/3/5, MRR and top-1 ECE per group of incidents.

    Parameters
    ----------
    scored : DataFrame
        Per-incident results of ``diagnosis score`` (:func:`read_scored`).
    by : {"fault_type", "component"} or None
        Group by the incident's fault type, or by its true component (after
        ``aliases``); None: one group, ``all``.
    aliases : mapping, optional
        Component -> unit (:func:`load_aliases`); ranks are over units.
    fault_types : mapping, optional
        Incident id -> fault type (a windows file's ``fault_type``); without
        it, or for an incident it lacks, the true fault mode is the type.

    Returns
    -------
    dict
        Group -> ``{"n", "AC@1", "AC@3", "AC@5", "MRR", "ece_top1"}``, groups
        sorted by name, plus ``all`` for every incident with a known root cause.
        Incidents without a true component are left out; a true unit that the
        posterior does not hold counts as a miss (rank infinite).

    Examples
    --------
    >>> rows = pd.DataFrame({"incident_id": ["a", "b"], "true_component": ["carts-db", "web"],
    ...     "true_fault_mode": ["down", "crash"],
    ...     "posterior": ['{"carts:crash": 0.3, "carts-db:down": 0.2, "web:crash": 0.4}',
    ...                   '{"carts:crash": 0.1, "web:crash": 0.8}']})
    >>> group_metrics(rows)["all"]["AC@1"]
    0.5
    >>> group_metrics(rows, aliases={"carts-db": "carts"})["all"]["AC@1"]
    1.0
    """
    if by is not None and by not in GROUP_BY:
        raise DiagnosisError(f"group_by must be one of {list(GROUP_BY)} or None. Got {by!r} instead.")
    aliases = dict(aliases or {})
    fault_types = dict(fault_types or {})
    for col in ("posterior", "true_component"):
        if col not in scored.columns:
            raise DiagnosisError(f"the scored results have no {col!r} column (columns: {list(scored.columns)})")
    groups: dict[str, list[tuple[float, float]]] = {}
    for row in scored.itertuples(index=False):
        true = row.true_component
        if not isinstance(true, str) or not true:
            continue
        true = aliases.get(true, true)
        units = _unit_probabilities(row.posterior, aliases)
        p_true = units.get(true)
        rank = math.inf if p_true is None else 1 + sum(p > p_true for p in units.values())
        p_top = max(units.values()) if units else 0.0
        if by == "component":
            key = true
        elif by == "fault_type":
            mode = getattr(row, "true_fault_mode", None)
            key = fault_types.get(str(getattr(row, "incident_id", ""))) or (mode if isinstance(mode, str) else None)
            key = key or "(unknown)"
        else:
            key = "all"
        record = (rank, p_top)
        groups.setdefault(key, []).append(record)
        if key != "all":
            groups.setdefault("\0all", []).append(record)
    out = {k: _metrics(v) for k, v in sorted(groups.items()) if k != "\0all"}
    if "\0all" in groups:
        out["all"] = _metrics(groups["\0all"])
    return out


def _metrics(records: list[tuple[float, float]]) -> dict[str, float]:
    rank = np.array([r for r, _ in records], dtype=float)
    p_top = np.array([p for _, p in records], dtype=float)
    hit = (rank == 1).astype(float)
    b = np.minimum((p_top * N_BINS).astype(np.int64), N_BINS - 1)
    gap = np.abs(np.bincount(b, weights=p_top, minlength=N_BINS) - np.bincount(b, weights=hit, minlength=N_BINS))
    return {
        "n": len(records),
        **{f"AC@{k}": float(np.mean(rank <= k)) for k in (1, 3, 5)},
        "MRR": float(np.mean(1.0 / rank)),
        "ece_top1": float(gap.sum() / len(records)),
    }
