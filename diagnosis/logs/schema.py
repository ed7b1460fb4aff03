"""Incident logs: the record schema and its validation.

The format is documented in ``docs/incidents.md``; reading and writing the
file formats is :mod:`diagnosis.logs.formats`. In memory a chunk of
incidents is an :class:`IncidentFrame`: three pandas DataFrames in *long
form* (incidents, observations, actions) joined on the incident id, with the
column contracts below. This is the batch boundary: readers yield frames,
the simulator builds them, scoring consumes them. :class:`Incident` is the
single-record value for library users.

Column contracts
----------------
incidents
    ``id`` (str, unique), ``opened`` (datetime64[ns, UTC]), ``resolved``
    (datetime64[ns, UTC], NaT when open), ``topology`` (str),
    ``cause_component`` and ``cause_fault_mode`` (str or None: the confirmed
    root cause, None when unknown), ``faults`` (str or None: every true
    fault as ``component:mode`` joined by ``|`` when known, e.g. from the
    simulator; ``"none"`` when it is known that nothing was faulty; None
    when unknown).
observations
    ``incident_id``, ``symptom`` (``component.detector``), ``value``
    (``fired`` | ``passed`` | ``soft``), ``p_fired`` and ``p_passed``
    (float, the likelihood of a soft observation, NaN otherwise), ``time``
    (datetime64[ns, UTC] or NaT).
actions
    ``incident_id``, ``seq`` (int, 0-based order), ``action``, ``target``,
    ``time`` (datetime64[ns, UTC] or NaT), ``outcome`` (``success`` |
    ``failure`` | ``unknown``).

Validation is vectorised over a chunk (:func:`frame_from_raw` for types and
shapes, :func:`validate_frame` for references to a topology). Bad records
never stop a run: they come back as :class:`Reject` values naming the file,
line or row, field, value and reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from diagnosis._time import parse_times
from diagnosis._validation import short_repr
from diagnosis.model.topology import Topology

__all__ = [
    "ACTION_COLUMNS",
    "INCIDENT_COLUMNS",
    "NO_FAULT",
    "OBSERVATION_COLUMNS",
    "ActionAttempt",
    "Incident",
    "IncidentFrame",
    "ObservationRecord",
    "Reject",
    "frame_from_raw",
    "parse_faults",
    "validate_frame",
]

INCIDENT_COLUMNS = ("id", "opened", "resolved", "topology", "cause_component", "cause_fault_mode", "faults")
OBSERVATION_COLUMNS = ("incident_id", "symptom", "value", "p_fired", "p_passed", "time")
ACTION_COLUMNS = ("incident_id", "seq", "action", "target", "time", "outcome")
VALUES = ("fired", "passed", "soft")
OUTCOMES = ("success", "failure", "unknown")
NO_FAULT = "none"


# --------------------------------------------------------------------------- values
@dataclass(frozen=True, slots=True)
class ObservationRecord:
    """One observation: a symptom fired, passed, or a soft likelihood, with its time."""

    symptom: str
    value: str
    p_fired: float | None = None
    p_passed: float | None = None
    time: pd.Timestamp | None = None


@dataclass(frozen=True, slots=True)
class ActionAttempt:
    """A recovery action tried during an incident, and its outcome."""

    action: str
    target: str
    outcome: str = "unknown"
    time: pd.Timestamp | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident record (see the module docstring for the fields)."""

    id: str
    opened: pd.Timestamp
    topology: str
    observations: tuple[ObservationRecord, ...] = ()
    actions: tuple[ActionAttempt, ...] = ()
    resolved: pd.Timestamp | None = None
    cause_component: str | None = None
    cause_fault_mode: str | None = None
    faults: tuple[tuple[str, str], ...] = ()

    def observation_mapping(self) -> dict[str, Any]:
        """Symptom -> observation, as :class:`~diagnosis.model.evidence.Evidence` takes it."""
        out: dict[str, Any] = {}
        for o in self.observations:
            out[o.symptom] = {"fired": o.p_fired, "passed": o.p_passed} if o.value == "soft" else o.value
        return out


@dataclass(frozen=True, slots=True)
class Reject:
    """A record set aside, with where it was and why.

    Attributes
    ----------
    source : str
        The file.
    location : str
        ``line N`` (JSON Lines), ``row N`` (Parquet, CSV; 1-based data rows) or
        ``incident ID``.
    incident_id : str or None
    field : str
        The offending field.
    value : str
        ``repr`` of the bad value (truncated).
    reason : str
    """

    source: str
    location: str
    incident_id: str | None
    field: str
    value: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "location": self.location,
            "incident_id": self.incident_id,
            "field": self.field,
            "value": self.value,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class IncidentFrame:
    """A chunk of incidents in long form (three DataFrames; see the column contracts).

    ``location`` maps each incident id to where it came from (``line 12``),
    for error messages.
    """

    incidents: pd.DataFrame
    observations: pd.DataFrame
    actions: pd.DataFrame
    location: Mapping[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.incidents)

    @classmethod
    def empty(cls) -> IncidentFrame:
        return cls(_empty(INCIDENT_COLUMNS), _empty(OBSERVATION_COLUMNS), _empty(ACTION_COLUMNS))

    @classmethod
    def concat(cls, frames: Sequence[IncidentFrame]) -> IncidentFrame:
        frames = [f for f in frames if len(f)]
        if not frames:
            return cls.empty()
        loc: dict[str, str] = {}
        for f in frames:
            loc.update(f.location)
        return cls(
            _normalise(pd.concat([f.incidents for f in frames], ignore_index=True), INCIDENT_COLUMNS),
            _normalise(pd.concat([f.observations for f in frames], ignore_index=True), OBSERVATION_COLUMNS),
            _normalise(pd.concat([f.actions for f in frames], ignore_index=True), ACTION_COLUMNS),
            loc,
        )

    def select(self, ids: Sequence[str] | pd.Index) -> IncidentFrame:
        """The sub-frame of the given incident ids (in this frame's order)."""
        keep = set(ids)
        return IncidentFrame(
            self.incidents[self.incidents["id"].isin(keep)].reset_index(drop=True),
            self.observations[self.observations["incident_id"].isin(keep)].reset_index(drop=True),
            self.actions[self.actions["incident_id"].isin(keep)].reset_index(drop=True),
            {k: v for k, v in self.location.items() if k in keep},
        )

    def records(self) -> Iterator[Incident]:
        """The incidents as :class:`Incident` values, in order."""
        obs = {k: g for k, g in self.observations.groupby("incident_id", sort=False)}
        acts = {k: g.sort_values("seq") for k, g in self.actions.groupby("incident_id", sort=False)}
        for row in self.incidents.itertuples(index=False):
            o = obs.get(row.id)
            a = acts.get(row.id)
            yield Incident(
                id=row.id,
                opened=row.opened,
                topology=row.topology,
                resolved=None if pd.isna(row.resolved) else row.resolved,
                cause_component=_none(row.cause_component),
                cause_fault_mode=_none(row.cause_fault_mode),
                faults=parse_faults(row.faults),
                observations=()
                if o is None
                else tuple(
                    ObservationRecord(
                        r.symptom,
                        r.value,
                        _nan_none(r.p_fired),
                        _nan_none(r.p_passed),
                        None if pd.isna(r.time) else r.time,
                    )
                    for r in o.itertuples(index=False)
                ),
                actions=()
                if a is None
                else tuple(
                    ActionAttempt(r.action, r.target, r.outcome, None if pd.isna(r.time) else r.time)
                    for r in a.itertuples(index=False)
                ),
            )


def _none(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA else x


def _nan_none(x):
    return None if x is None or pd.isna(x) else float(x)


def parse_faults(text) -> tuple[tuple[str, str], ...]:
    text = _none(text)
    if not text or text == NO_FAULT:
        return ()
    return tuple(tuple(item.split(":", 1)) for item in str(text).split("|"))  # type: ignore[misc]


_DTYPES = {
    "opened": "datetime64[ns, UTC]",
    "resolved": "datetime64[ns, UTC]",
    "time": "datetime64[ns, UTC]",
    "p_fired": "float64",
    "p_passed": "float64",
    "seq": "int64",
}


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_DTYPES.get(c, "object")) for c in columns})


def _normalise(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Columns in contract order with contract dtypes (values already validated)."""
    out = {}
    for c in columns:
        s = df[c] if c in df else pd.Series([None] * len(df), index=df.index, dtype="object")
        dtype = _DTYPES.get(c, "object")
        if dtype.startswith("datetime"):
            s = pd.to_datetime(s, utc=True).astype("datetime64[ns, UTC]")
        elif dtype == "float64":
            s = pd.to_numeric(s, errors="coerce").astype("float64")
        elif dtype == "int64":
            s = s.astype("int64")
        else:
            s = s.astype("object").where(s.notna(), None)
        out[c] = s.reset_index(drop=True)
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- validation
RAW_INCIDENT_COLUMNS = ("id", "opened", "resolved", "topology", "cause_component", "cause_fault_mode", "faults", "_loc")
RAW_OBSERVATION_COLUMNS = ("_i", "symptom", "value", "p_fired", "p_passed", "time")
RAW_ACTION_COLUMNS = ("_i", "action", "target", "time", "outcome")


class _Flags:
    """The first problem found for each incident of a chunk."""

    def __init__(self, n: int):
        self.field = np.full(n, None, dtype=object)
        self.value = np.full(n, None, dtype=object)
        self.reason = np.full(n, None, dtype=object)

    def set(self, rows: np.ndarray, field: str | np.ndarray, values, reason: str | np.ndarray) -> None:
        """Flag incident positions ``rows`` (the first flag per incident wins)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return
        values = (
            np.full(len(rows), values, dtype=object)
            if values is None or np.isscalar(values)
            else np.asarray(values, dtype=object)
        )
        fields = (
            np.asarray(field, dtype=object) if not isinstance(field, str) else np.full(len(rows), field, dtype=object)
        )
        reasons = (
            np.asarray(reason, dtype=object)
            if not isinstance(reason, str)
            else np.full(len(rows), reason, dtype=object)
        )
        _, first = np.unique(rows, return_index=True)
        rows, values, fields, reasons = rows[first], values[first], fields[first], reasons[first]
        free = self.reason[rows] == None  # noqa: E711 (elementwise)
        rows = rows[free]
        self.field[rows], self.value[rows], self.reason[rows] = fields[free], values[free], reasons[free]

    @property
    def bad(self) -> np.ndarray:
        return self.reason != None  # noqa: E711


def _pick(s: pd.Series, mask: np.ndarray) -> np.ndarray:
    """``s[mask]`` as an object array, without converting the whole column."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.empty(0, dtype=object)
    return s[mask].astype(object).to_numpy()


def _nonempty_str(s: pd.Series) -> np.ndarray:
    if pd.api.types.is_string_dtype(s) and s.dtype != object:
        return (s.notna() & (s != "")).to_numpy()
    return np.fromiter((isinstance(x, str) and x != "" for x in s), dtype=bool, count=len(s))


def _is_null(s: pd.Series) -> np.ndarray:
    return s.isna().to_numpy()


def _times(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """A column of times by :func:`diagnosis._time.parse_times`, without epoch numbers; (times, bad mask).

    Null stays NaT; any other value that is not a time (a number, empty text) is bad.
    """
    t, _ = parse_times(s, numbers=False)
    return t, ~_is_null(s) & t.isna().to_numpy()


def _str_or_none(s: pd.Series) -> pd.Series:
    return s.astype(object).where(s.notna(), None)


def frame_from_raw(
    inc: pd.DataFrame, obs: pd.DataFrame, acts: pd.DataFrame, *, source: str
) -> tuple[IncidentFrame, list[Reject]]:
    """Check the types and shapes of raw long-form rows; build an IncidentFrame.

    Parameters
    ----------
    inc : DataFrame
        :data:`RAW_INCIDENT_COLUMNS`; ``_loc`` says where each record was
        (``line 12``). Values may be any Python objects.
    obs, acts : DataFrame
        :data:`RAW_OBSERVATION_COLUMNS` / :data:`RAW_ACTION_COLUMNS`; ``_i``
        is the position of the incident in ``inc``. Actions are in the order tried.
    source : str
        The file, for the rejects.

    Returns
    -------
    (IncidentFrame, list of Reject)
        A record with any bad field is set aside whole.
    """
    n = len(inc)
    flags = _Flags(n)
    pos = np.arange(n)
    ids_ok = _nonempty_str(inc["id"])
    no_id = _is_null(inc["id"])
    flags.set(pos[no_id], "id", None, "is required")
    flags.set(pos[~ids_ok], "id", _pick(inc["id"], ~ids_ok), "must be a non-empty string")
    dup = inc["id"].duplicated(keep="first").to_numpy() & ids_ok
    if dup.any():
        first_loc = dict(zip(inc["id"][~inc["id"].duplicated(keep="first")], inc["_loc"]))
        flags.set(
            pos[dup],
            "id",
            _pick(inc["id"], dup),
            np.array([f"duplicate incident id (first at {first_loc[i]})" for i in inc["id"][dup]], dtype=object),
        )
    opened, bad = _times(inc["opened"])
    missing = _is_null(inc["opened"])
    flags.set(pos[missing], "opened", None, "is required")
    flags.set(pos[bad], "opened", _pick(inc["opened"], bad), "is not an ISO 8601 time")
    resolved, bad = _times(inc["resolved"])
    flags.set(pos[bad], "resolved", _pick(inc["resolved"], bad), "is not an ISO 8601 time")
    before = (resolved < opened).to_numpy()
    flags.set(pos[before], "resolved", _pick(inc["resolved"], before), "is before 'opened'")
    topo_ok = _nonempty_str(inc["topology"])
    flags.set(pos[~topo_ok], "topology", _pick(inc["topology"], ~topo_ok), "must be a non-empty string")
    for col, label in (
        ("cause_component", "root_cause.component"),
        ("cause_fault_mode", "root_cause.fault_mode"),
        ("faults", "faults"),
    ):
        s = inc[col]
        bad = ~_is_null(s) & ~_nonempty_str(s)
        flags.set(pos[bad], label, _pick(s, bad), "must be a non-empty string")
    orphan = _is_null(inc["cause_component"]) & ~_is_null(inc["cause_fault_mode"])
    flags.set(pos[orphan], "root_cause.component", None, "is required when root_cause.fault_mode is given")

    oi = obs["_i"].to_numpy(dtype=np.int64)
    sym_ok = _nonempty_str(obs["symptom"])
    flags.set(oi[~sym_ok], "observations.symptom", _pick(obs["symptom"], ~sym_ok), "must be a non-empty string")
    value = obs["value"].astype(object)
    val_ok = value.isin(VALUES).to_numpy()
    flags.set(oi[~val_ok], "observations.value", _pick(value, ~val_ok), f"must be one of {list(VALUES)}")
    p_f = pd.to_numeric(obs["p_fired"], errors="coerce").astype("float64")
    p_p = pd.to_numeric(obs["p_passed"], errors="coerce").astype("float64")
    soft = (value == "soft").to_numpy()
    pf, pp = p_f.to_numpy(), p_p.to_numpy()
    with np.errstate(invalid="ignore"):
        lik_ok = np.isfinite(pf) & np.isfinite(pp) & (pf >= 0) & (pp >= 0) & (pf + pp > 0)
    bad = soft & ~lik_ok
    flags.set(
        oi[bad],
        "observations.p_fired",
        [f"p_fired={a!r}, p_passed={b!r}" for a, b in zip(_pick(obs["p_fired"], bad), _pick(obs["p_passed"], bad))],
        "a soft observation needs likelihoods p_fired and p_passed: finite, >= 0, not both 0",
    )
    o_time, bad = _times(obs["time"])
    flags.set(oi[bad], "observations.time", _pick(obs["time"], bad), "is not an ISO 8601 time")

    ai = acts["_i"].to_numpy(dtype=np.int64)
    for col in ("action", "target"):
        ok = _nonempty_str(acts[col])
        flags.set(ai[~ok], f"actions.{col}", acts[col].to_numpy()[~ok], "must be a non-empty string")
    outcome = acts["outcome"].astype(object).where(acts["outcome"].notna(), "unknown")
    ok = outcome.isin(OUTCOMES).to_numpy()
    flags.set(ai[~ok], "actions.outcome", _pick(outcome, ~ok), f"must be one of {list(OUTCOMES)}")
    a_time, bad = _times(acts["time"])
    flags.set(ai[bad], "actions.time", _pick(acts["time"], bad), "is not an ISO 8601 time")

    rejects = [
        Reject(source, loc, iid if isinstance(iid, str) else None, fld, short_repr(val), why)
        for loc, iid, fld, val, why in zip(
            inc["_loc"].to_numpy()[flags.bad],
            inc["id"].to_numpy()[flags.bad],
            flags.field[flags.bad],
            flags.value[flags.bad],
            flags.reason[flags.bad],
        )
    ]
    good = ~flags.bad
    ids = inc["id"].to_numpy(dtype=object)
    keep_o, keep_a = good[oi], good[ai]
    incidents = pd.DataFrame(
        {
            "id": ids[good],
            "opened": opened[good].reset_index(drop=True),
            "resolved": resolved[good].reset_index(drop=True),
            "topology": inc["topology"].to_numpy(dtype=object)[good],
            "cause_component": _str_or_none(inc["cause_component"]).to_numpy()[good],
            "cause_fault_mode": _str_or_none(inc["cause_fault_mode"]).to_numpy()[good],
            "faults": _str_or_none(inc["faults"]).to_numpy()[good],
        }
    )
    observations = pd.DataFrame(
        {
            "incident_id": ids[oi[keep_o]],
            "symptom": obs["symptom"].to_numpy(dtype=object)[keep_o],
            "value": _pick(value, keep_o),
            "p_fired": np.where(soft, pf, np.nan)[keep_o],
            "p_passed": np.where(soft, pp, np.nan)[keep_o],
            "time": o_time[keep_o].reset_index(drop=True),
        }
    )
    seq = pd.Series(ai).groupby(ai).cumcount().to_numpy()
    actions = pd.DataFrame(
        {
            "incident_id": ids[ai[keep_a]],
            "seq": seq[keep_a].astype(np.int64),
            "action": acts["action"].to_numpy(dtype=object)[keep_a],
            "target": acts["target"].to_numpy(dtype=object)[keep_a],
            "time": a_time[keep_a].reset_index(drop=True),
            "outcome": _pick(outcome, keep_a),
        }
    )
    location = dict(zip(ids[good], _pick(inc["_loc"], good)))
    frame = IncidentFrame(
        _normalise(incidents, INCIDENT_COLUMNS),
        _normalise(observations, OBSERVATION_COLUMNS),
        _normalise(actions, ACTION_COLUMNS),
        location,
    )
    return frame, rejects


def validate_frame(frame: IncidentFrame, topology: Topology, *, source: str = "") -> tuple[IncidentFrame, list[Reject]]:
    """Check a frame's references against a topology; set aside bad incidents.

    Checks the incident's topology name, the root cause and the listed
    faults (component and fault mode), every observed symptom (and that none
    is observed twice), and every action and its target. An incident with
    any bad reference is rejected whole: its evidence would otherwise be
    silently incomplete.

    Returns
    -------
    (IncidentFrame, list of Reject)
        The good incidents, and the rejects.
    """
    from diagnosis.exceptions import suggest

    inc = frame.incidents
    n = len(inc)
    flags = _Flags(n)
    pos = np.arange(n)
    index = pd.Index(inc["id"])
    wrong = (inc["topology"] != topology.name).to_numpy()
    flags.set(
        pos[wrong], "topology", _pick(inc["topology"], wrong), f"this log is scored against topology {topology.name!r}"
    )
    modes = {c.name: {m.name for m in c.fault_modes} for c in topology.components}
    cc, cm = inc["cause_component"].to_numpy(dtype=object), inc["cause_fault_mode"].to_numpy(dtype=object)
    for i in pos[inc["cause_component"].notna().to_numpy()]:
        c, m = cc[i], cm[i]
        if c not in modes:
            flags.set([i], "root_cause.component", c, f"unknown component{suggest(c, modes)}")
        elif m is not None and m not in modes[c]:
            flags.set([i], "root_cause.fault_mode", m, f"unknown fault mode of {c!r}; allowed: {sorted(modes[c])}")
    faults = inc["faults"].to_numpy(dtype=object)
    for i in pos[inc["faults"].notna().to_numpy()]:
        for c, m in parse_faults(faults[i]):
            if c not in modes or m not in modes[c]:
                flags.set([i], "faults", f"{c}:{m}", "unknown component or fault mode")
                break
    obs = frame.observations
    oi = index.get_indexer(obs["incident_id"])
    known = pd.Index(topology.symptoms)
    unknown = ~obs["symptom"].isin(known).to_numpy()
    if unknown.any():
        names = _pick(obs["symptom"], unknown)
        flags.set(
            oi[unknown],
            "observations.symptom",
            names,
            np.array([f"unknown symptom{suggest(s, known)}" for s in names], dtype=object),
        )
    twice = obs.duplicated(["incident_id", "symptom"]).to_numpy()
    flags.set(oi[twice], "observations.symptom", _pick(obs["symptom"], twice), "observed twice in one incident")
    acts = frame.actions
    if len(acts):
        ai = index.get_indexer(acts["incident_id"])
        valid = pd.MultiIndex.from_tuples([(a.name, a.component) for a in topology.actions])
        ok = pd.MultiIndex.from_arrays([acts["action"], acts["target"]]).isin(valid)
        for k in np.flatnonzero(~ok):
            a, t = acts["action"].iat[k], acts["target"].iat[k]
            if t not in modes:
                reason = f"unknown target{suggest(t, modes)}"
            else:
                reason = (
                    f"unknown action for target {t!r}; allowed: {sorted(x.name for x in topology.component(t).actions)}"
                )
            flags.set([ai[k]], "actions", f"{a} on {t}", reason)
    rejects = [
        Reject(source, frame.location.get(iid, f"incident {iid}"), iid, fld, short_repr(val), why)
        for iid, fld, val, why in zip(
            inc["id"].to_numpy()[flags.bad], flags.field[flags.bad], flags.value[flags.bad], flags.reason[flags.bad]
        )
    ]
    return frame.select(inc["id"][~flags.bad]), rejects
