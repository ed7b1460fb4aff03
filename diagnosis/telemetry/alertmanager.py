"""Import Prometheus Alertmanager webhook payloads as incidents.

Alertmanager POSTs a JSON payload to a webhook receiver for every
notification: top-level ``version``, ``groupKey``, ``status``,
``receiver``, ``groupLabels``, ``commonLabels``, ``commonAnnotations``,
``externalURL`` and ``alerts``, each alert with ``status`` (``firing`` |
``resolved``), ``labels``, ``annotations``, ``startsAt``, ``endsAt`` (RFC
3339; ``0001-01-01T00:00:00Z`` when the end is unknown), ``generatorURL``
and ``fingerprint``. :func:`import_alertmanager` reads archived payloads and
turns them into an :class:`~diagnosis.logs.schema.IncidentFrame`:

1. **Read.** Each file holds one payload, a JSON array of payloads, or JSON
   Lines with one payload per line (detected from the content). A file that
   cannot be read or parsed at all raises :class:`IncidentLogError`; a
   malformed line, payload or alert is a :class:`~diagnosis.logs.schema.Reject`
   (``line 3``, ``line 3, alerts[2]``) and the rest goes on.
2. **Deduplicate.** The same alert (same ``fingerprint``; same labels when it
   has none) arrives many times: repeat notifications, firing then resolved.
   Its notifications are merged into one alert whose time is the earliest
   ``startsAt``. A notification that starts after the alert's known
   resolution (``endsAt`` of a resolved notification) is the alert firing
   again: a new alert.
3. **Map.** Each alert becomes a symptom by the topology's alert rules
   (:attr:`Topology.alert_rules <diagnosis.model.topology.Topology.alert_rules>`,
   the first matching rule wins). Alerts no rule matches, or that map to a
   symptom the topology does not have, are counted per ``alertname`` in the
   :class:`ImportSummary` and listed as rejects.
4. **Group.** Mapped alerts sorted by ``startsAt`` are grouped by
   single-linkage on time: an alert starting within ``window`` of the
   previous alert of the current group joins it, otherwise it opens a new
   incident. The incident is ``opened`` at its first ``startsAt`` and
   ``resolved`` at the latest ``endsAt`` of its alerts when every one of them
   is resolved with a known ``endsAt`` (NaT otherwise). Its observations are
   one ``fired`` per symptom, at the earliest ``startsAt`` of the alerts
   mapped to it. The root cause and faults are unknown; there are no actions.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pandas as pd

from diagnosis._time import parse_duration, parse_time
from diagnosis._validation import short_repr
from diagnosis.exceptions import IncidentLogError, suggest
from diagnosis.logs.schema import (
    RAW_ACTION_COLUMNS,
    RAW_INCIDENT_COLUMNS,
    RAW_OBSERVATION_COLUMNS,
    IncidentFrame,
    Reject,
    frame_from_raw,
    validate_frame,
)
from diagnosis.model.topology import Topology

__all__ = [
    "NO_ALERTNAME",
    "STATUSES",
    "AlertNotice",
    "ImportSummary",
    "import_alertmanager",
    "joins_incident",
    "map_alert",
    "read_alert",
]

STATUSES = ("firing", "resolved")
#: The label an alert is counted under in :attr:`ImportSummary.unmatched` when it has no ``alertname``.
NO_ALERTNAME = "(no alertname)"
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What :func:`import_alertmanager` read and made.

    Attributes
    ----------
    files : int
        Files read.
    payloads : int
        Webhook payloads (notifications) read; malformed ones are rejects.
    alerts : int
        Alert entries in those payloads, every notification of every alert,
        including rejected entries.
    duplicates : int
        Alert entries merged into an alert already seen (repeat
        notifications, the resolved notification of a firing alert).
    mapped : int
        Distinct alerts mapped to a symptom of the topology.
    unmatched : Mapping[str, int]
        ``alertname`` -> distinct alerts that no rule matches or that map to
        an unknown symptom (:data:`NO_ALERTNAME` when the label is missing).
    incidents : int
        Incidents made.
    rejects : int
        Records set aside, the unmatched alerts included.
    """

    files: int
    payloads: int
    alerts: int
    duplicates: int
    mapped: int
    unmatched: Mapping[str, int]
    incidents: int
    rejects: int

    def __post_init__(self):
        object.__setattr__(self, "unmatched", MappingProxyType(dict(sorted(self.unmatched.items()))))

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready mapping of the counts."""
        return {
            "files": self.files,
            "payloads": self.payloads,
            "alerts": self.alerts,
            "duplicates": self.duplicates,
            "mapped": self.mapped,
            "unmatched": dict(self.unmatched),
            "incidents": self.incidents,
            "rejects": self.rejects,
        }


@dataclass(frozen=True, slots=True)
class _Notification:
    """One well-formed alert entry of one payload."""

    key: tuple
    labels: Mapping[str, str]
    resolved: bool
    starts: pd.Timestamp
    ends: pd.Timestamp | None
    source: str
    location: str
    order: int


@dataclass(slots=True)
class _Alert:
    """The notifications of one alert merged (see the module docstring, step 2)."""

    first: _Notification
    resolved: bool = False
    ends: pd.Timestamp | None = None
    symptom: str | None = None
    sort_key: tuple = field(default=())

    @property
    def starts(self) -> pd.Timestamp:
        return self.first.starts

    def add(self, n: _Notification) -> None:
        if n.resolved:
            self.resolved = True
            if n.ends is not None and (self.ends is None or n.ends > self.ends):
                self.ends = n.ends


def import_alertmanager(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    topology: Topology,
    *,
    window: str | pd.Timedelta = "15min",
    topology_name: str | None = None,
) -> tuple[IncidentFrame, list[Reject], ImportSummary]:
    """Read Alertmanager webhook payloads and group their alerts into incidents.

    Parameters
    ----------
    paths : path-like or iterable of path-like
        Files of webhook payloads: one JSON payload, a JSON array of payloads,
        or JSON Lines with one payload per line (detected; ``.gz`` is
        decompressed).
    topology : Topology
        Its alert rules map alerts to symptoms; the incidents are validated
        against it.
    window : str or Timedelta, default "15min"
        An alert starting at most this long after the previous alert of the
        current incident joins it (single-linkage on ``startsAt``).
    topology_name : str, optional
        The topology name recorded in the incidents; default
        ``topology.name``.

    Returns
    -------
    (IncidentFrame, list of Reject, ImportSummary)
        The incidents (ids ``am-<first startsAt as YYYYmmddTHHMMSSZ>-<n>``,
        ``n`` counting incidents opened in the same second), the records set
        aside, and the counts.

    Raises
    ------
    IncidentLogError
        When a file cannot be read or holds no JSON payloads at all, or
        ``window`` or ``topology_name`` is invalid.

    Examples
    --------
    >>> import json, pathlib, tempfile
    >>> topo = Topology.from_dict({"name": "shop", "components": [{"name": "checkout"}],
    ...     "alerts": [{"match": {"alertname": "HighLatency"}, "symptom": "{service}.latency"}]})
    >>> alert = {"status": "firing", "labels": {"alertname": "HighLatency", "service": "checkout"},
    ...          "startsAt": "2024-05-01T10:15:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "a1"}
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = pathlib.Path(d, "webhook.json")
    ...     _ = path.write_text(json.dumps({"version": "4", "status": "firing", "alerts": [alert]}))
    ...     frame, rejects, summary = import_alertmanager(path, topo)
    >>> frame.incidents["id"].tolist()
    ['am-20240501T101500Z-1']
    >>> frame.observations[["symptom", "value"]].values.tolist()
    [['checkout.latency', 'fired']]
    >>> summary.incidents, rejects
    (1, [])
    """
    files = _as_paths(paths)
    gap = _window(window)
    name = topology.name if topology_name is None else topology_name
    if not isinstance(name, str) or not name:
        raise IncidentLogError(f"topology_name must be a non-empty string. Got {name!r} instead.")
    rejects: list[Reject] = []
    notes: list[_Notification] = []
    n_payloads = n_alerts = 0
    for path in files:
        source = str(path)
        for loc, payload in _payloads(path, rejects):
            alerts = _alerts_of(payload, source, loc, rejects)
            if alerts is None:
                continue
            n_payloads += 1
            status = payload.get("status")
            for j, alert in enumerate(alerts):
                n_alerts += 1
                note = _notification(alert, status, source, f"{loc}, alerts[{j}]", len(notes), rejects)
                if note is not None:
                    notes.append(note)
    merged, duplicates = _deduplicate(notes)
    mapped, unmatched = _map(merged, topology, rejects)
    source = ", ".join(str(p) for p in files)
    frame, more = _build(_group(mapped, gap), name, source, several=len(files) > 1)
    rejects.extend(more)
    frame, more = validate_frame(
        frame, topology if name == topology.name else replace(topology, name=name), source=source
    )
    rejects.extend(more)
    summary = ImportSummary(
        files=len(files),
        payloads=n_payloads,
        alerts=n_alerts,
        duplicates=duplicates,
        mapped=len(mapped),
        unmatched=unmatched,
        incidents=len(frame),
        rejects=len(rejects),
    )
    return frame, rejects, summary


# --------------------------------------------------------------------------- arguments
def _as_paths(paths) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    try:
        out = [Path(p) for p in paths]
    except TypeError:
        raise IncidentLogError(f"paths must be a file or an iterable of files. Got {paths!r} instead.") from None
    if not out:
        raise IncidentLogError("paths is empty; give at least one file of Alertmanager webhook payloads")
    return out


def _window(window) -> pd.Timedelta:
    return parse_duration(window, name="window", caller="import_alertmanager", error=IncidentLogError)


# --------------------------------------------------------------------------- reading
def _read_text(path: Path) -> str:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
                return fh.read()
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise IncidentLogError(f"{path}: file not found") from None
    except (OSError, EOFError) as exc:
        raise IncidentLogError(f"{path}: cannot read: {exc}") from None


def _payloads(path: Path, rejects: list[Reject]) -> Iterator[tuple[str, Any]]:
    """Yield ``(location, parsed payload)``; a bad JSON line is a reject."""
    source = str(path)
    text = _read_text(path)
    if not text.strip():
        return
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        whole = exc
    except RecursionError:
        raise IncidentLogError(f"{path}: the JSON is nested too deeply to be a webhook payload") from None
    else:
        if isinstance(doc, Mapping):  # one payload; a one-line file is also one line of JSON Lines
            lines = [n for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
            yield f"line {lines[0]}" if len(lines) == 1 else "payload", doc
        elif isinstance(doc, list):
            for i, item in enumerate(doc):
                yield f"payload[{i}]", item
        else:
            raise IncidentLogError(
                f"{path}: expected a webhook payload object, a JSON array of payloads or JSON Lines; "
                f"got a JSON {type(doc).__name__} ({short_repr(doc, 60)})"
            )
        return
    # Not one JSON document: JSON Lines, if any line is a JSON object on its own.
    parsed: list[tuple[int, Any, json.JSONDecodeError | None, str]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            parsed.append((lineno, json.loads(line), None, line))
        except json.JSONDecodeError as exc:
            parsed.append((lineno, None, exc, line))
    if not any(err is None and isinstance(obj, Mapping) for _, obj, err, _ in parsed):
        raise IncidentLogError(
            f"{path}: not a webhook payload, a JSON array of payloads or JSON Lines of payloads: "
            f"{whole.msg.removesuffix(' at')} at line {whole.lineno} column {whole.colno}"
        )
    for lineno, obj, err, line in parsed:
        if err is not None:
            rejects.append(
                Reject(source, f"line {lineno}", None, "(line)", short_repr(line.strip(), 120),
                       f"not valid JSON (truncated or corrupt): {err.msg.removesuffix(' at')} at character {err.pos}")
            )  # fmt: skip
        else:
            yield f"line {lineno}", obj


def _alerts_of(payload: Any, source: str, loc: str, rejects: list[Reject]) -> list | None:
    if not isinstance(payload, Mapping):
        rejects.append(
            Reject(
                source,
                loc,
                None,
                "(payload)",
                short_repr(payload),
                "must be a webhook payload object with an 'alerts' list",
            )
        )
        return None
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        reason = (
            "is required: a webhook payload has an 'alerts' list"
            if "alerts" not in payload
            else "must be a list of alert objects"
        )
        rejects.append(Reject(source, loc, None, "alerts", short_repr(alerts), reason))
        return None
    return alerts


def _parse_time(value: Any) -> tuple[pd.Timestamp | None, str | None]:
    """``(time, None)``; ``(None, None)`` for Alertmanager's zero time; ``(None, reason)`` when bad."""
    if value is None:
        return None, "is required"
    if not isinstance(value, str):
        return None, "is not an RFC 3339 time such as '2024-05-01T10:15:00Z'"
    return _parse_time_text(value)


@lru_cache(maxsize=1 << 16)
def _parse_time_text(value: str) -> tuple[pd.Timestamp | None, str | None]:
    # cached: repeat notifications carry the same startsAt text
    if not _RFC3339.fullmatch(value):
        return None, "is not an RFC 3339 time such as '2024-05-01T10:15:00Z'"
    if value.startswith("0001-"):
        return None, None
    t = parse_time(value)
    if t is None:
        return None, "is not a valid RFC 3339 time in the years 1677-2262"
    return t, None


def _notification(
    alert: Any, payload_status: Any, source: str, loc: str, order: int, rejects: list[Reject]
) -> _Notification | None:
    def bad(fld: str, value: Any, reason: str) -> None:
        rejects.append(Reject(source, loc, None, fld, short_repr(value), reason))

    if not isinstance(alert, Mapping):
        return bad("(alert)", alert, "must be an alert object with status, labels, startsAt and endsAt")
    labels = alert.get("labels")
    if not isinstance(labels, Mapping):
        return bad("labels", labels, "must be an object of label name -> string value")
    for k, v in labels.items():
        if not isinstance(v, str):
            return bad(f"labels.{k}", v, "must be a string (Alertmanager label values are strings)")
    status = alert.get("status", payload_status)
    if status not in STATUSES:
        return bad("status", alert.get("status"), f"must be one of {list(STATUSES)}")
    starts, why = _parse_time(alert.get("startsAt"))
    if starts is None:
        return bad(
            "startsAt",
            alert.get("startsAt"),
            why or "is Alertmanager's zero time (unknown); an alert needs its start time",
        )
    raw_end = alert.get("endsAt")
    ends, why = (None, None) if raw_end is None else _parse_time(raw_end)
    if why:
        return bad("endsAt", raw_end, why)
    if ends is not None and ends < starts:
        return bad("endsAt", raw_end, f"is before startsAt {alert.get('startsAt')!r}")
    fingerprint = alert.get("fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        return bad("fingerprint", fingerprint, "must be a string")
    key = ("fingerprint", fingerprint) if fingerprint else ("labels", tuple(sorted(labels.items())))
    return _Notification(key, dict(labels), status == "resolved", starts, ends, source, loc, order)


# --------------------------------------------------------------------------- dedup, mapping, grouping
def _deduplicate(notes: list[_Notification]) -> tuple[list[_Alert], int]:
    by_key: dict[tuple, list[_Notification]] = {}
    for n in notes:
        by_key.setdefault(n.key, []).append(n)
    alerts: list[_Alert] = []
    duplicates = 0
    for ns in by_key.values():
        ns.sort(key=lambda n: (n.starts, n.order))
        current: _Alert | None = None
        for n in ns:
            if current is not None and not (current.ends is not None and n.starts > current.ends):
                duplicates += 1
            else:  # the first notification, or the alert firing again after it was resolved
                current = _Alert(n)
                alerts.append(current)
            current.add(n)
    return alerts, duplicates


def _map(alerts: list[_Alert], topology: Topology, rejects: list[Reject]) -> tuple[list[_Alert], Counter]:
    known = set(topology.symptoms)
    rules = topology.alert_rules
    mapped: list[_Alert] = []
    unmatched: Counter = Counter()
    for a in sorted(alerts, key=lambda a: (a.starts, a.first.order)):
        labels = a.first.labels
        symptom, reason = _map_labels(labels, rules, known)
        if symptom is not None:
            a.symptom = symptom
            a.sort_key = (a.starts, symptom, a.first.key)
            mapped.append(a)
            continue
        unmatched[labels.get("alertname", NO_ALERTNAME)] += 1
        rejects.append(Reject(a.first.source, a.first.location, None, "labels", short_repr(dict(labels)), reason))
    return mapped, unmatched


def _map_labels(labels: Mapping[str, str], rules, known) -> tuple[str | None, str | None]:
    """``(symptom, None)`` by the first matching rule, or ``(None, why not)``."""
    symptom, rule_at = None, None
    for i, rule in enumerate(rules):
        symptom = rule.symptom_for(labels)
        if symptom is not None:
            rule_at = i
            break
    if symptom is not None and symptom in known:
        return symptom, None
    name = labels.get("alertname", NO_ALERTNAME)
    if not rules:
        return None, "the topology has no alert rules; add an 'alerts:' section mapping alerts to symptoms"
    if symptom is None:
        return None, (
            f"no alert rule matches alertname {name!r} (a rule whose symptom template names a label "
            "the alert lacks does not match either)"
        )
    return None, (
        f"rule alerts[{rule_at}] ({rules[rule_at].symptom!r}) maps it to unknown symptom {symptom!r}"
        f"{suggest(symptom, known)}"
    )


def _group(alerts: list[_Alert], gap: pd.Timedelta) -> list[list[_Alert]]:
    groups: list[list[_Alert]] = []
    for a in sorted(alerts, key=lambda a: a.sort_key):
        if groups and joins_incident(groups[-1][0].starts, groups[-1][-1].starts, a.starts, gap):
            groups[-1].append(a)
        else:
            groups.append([a])
    return groups


def _build(
    groups: list[list[_Alert]], topology_name: str, source: str, *, several: bool
) -> tuple[IncidentFrame, list[Reject]]:
    inc: dict[str, list] = {c: [] for c in RAW_INCIDENT_COLUMNS}
    obs: dict[str, list] = {c: [] for c in RAW_OBSERVATION_COLUMNS}
    per_second: Counter = Counter()
    for i, group in enumerate(groups):
        first = group[0]
        stamp = first.starts.strftime("%Y%m%dT%H%M%SZ")
        per_second[stamp] += 1
        done = all(a.resolved and a.ends is not None for a in group)
        row = {
            "id": f"am-{stamp}-{per_second[stamp]}",
            "opened": first.starts,
            "resolved": max(a.ends for a in group) if done else None,
            "topology": topology_name,
            "cause_component": None,
            "cause_fault_mode": None,
            "faults": None,
            "_loc": f"{first.first.source}: {first.first.location}" if several else first.first.location,
        }
        for c in RAW_INCIDENT_COLUMNS:
            inc[c].append(row[c])
        seen: set[str] = set()
        for a in group:  # in startsAt order: the first alert of each symptom is the earliest
            if a.symptom in seen:
                continue
            seen.add(a.symptom)
            for c, v in (
                ("_i", i),
                ("symptom", a.symptom),
                ("value", "fired"),
                ("p_fired", math.nan),
                ("p_passed", math.nan),
                ("time", a.starts),
            ):
                obs[c].append(v)
    acts = pd.DataFrame({c: [] for c in RAW_ACTION_COLUMNS})
    return frame_from_raw(pd.DataFrame(inc), pd.DataFrame(obs), acts, source=source)


# --------------------------------------------------------------------------- one alert at a time (diagnosis serve)
@dataclass(frozen=True, slots=True)
class AlertNotice:
    """One well-formed alert entry of one webhook notification (see :func:`read_alert`).

    Attributes
    ----------
    fingerprint : str or None
        Alertmanager's identity of the alert (None when the entry has none).
    labels : Mapping[str, str]
    resolved : bool
        The entry's ``status`` is ``resolved``.
    starts : pandas.Timestamp
        ``startsAt``, UTC.
    ends : pandas.Timestamp or None
        ``endsAt``, UTC; None for Alertmanager's zero time (unknown).
    """

    fingerprint: str | None
    labels: Mapping[str, str]
    resolved: bool
    starts: pd.Timestamp
    ends: pd.Timestamp | None


def read_alert(alert: Any, payload_status: Any = None) -> AlertNotice:
    """Check and read one alert entry of a webhook payload, as :func:`import_alertmanager` does.

    Parameters
    ----------
    alert : mapping
        The entry: ``status``, ``labels``, ``startsAt``, ``endsAt``, ``fingerprint``.
    payload_status : {"firing", "resolved"}, optional
        The payload's ``status``, used when the entry has none.

    Returns
    -------
    AlertNotice

    Raises
    ------
    IncidentLogError
        When the entry is malformed; ``rows`` holds the one reject (its
        ``field`` names the bad field).

    Examples
    --------
    >>> n = read_alert({"status": "firing", "labels": {"alertname": "HighLatency"},
    ...                 "startsAt": "2024-05-01T10:15:00Z", "endsAt": "0001-01-01T00:00:00Z"})
    >>> n.starts, n.ends, n.resolved
    (Timestamp('2024-05-01 10:15:00+0000', tz='UTC'), None, False)
    """
    rejects: list[Reject] = []
    note = _notification(alert, payload_status, "", "alert", 0, rejects)
    if note is None:
        r = rejects[0]
        raise IncidentLogError(f"{r.field}: {r.value} {r.reason}", rows=[r.to_dict()])
    fingerprint = note.key[1] if note.key[0] == "fingerprint" else None
    return AlertNotice(fingerprint, MappingProxyType(dict(note.labels)), note.resolved, note.starts, note.ends)


def map_alert(labels: Mapping[str, str], topology: Topology) -> tuple[str | None, str | None]:
    """The symptom an alert maps to by the topology's alert rules (the first matching rule wins).

    Returns
    -------
    (str, None) or (None, str)
        The symptom, or None and the reason no symptom of the topology matches.

    Examples
    --------
    >>> topo = Topology.from_dict({"name": "shop", "components": [{"name": "checkout"}],
    ...     "alerts": [{"match": {"alertname": "HighLatency"}, "symptom": "{service}.latency"}]})
    >>> map_alert({"alertname": "HighLatency", "service": "checkout"}, topo)
    ('checkout.latency', None)
    >>> map_alert({"alertname": "Other"}, topo)[0] is None
    True
    """
    return _map_labels(labels, topology.alert_rules, frozenset(topology.symptoms))


def joins_incident(first: pd.Timestamp, last: pd.Timestamp, starts: pd.Timestamp, window: pd.Timedelta) -> bool:
    """Whether an alert starting at ``starts`` joins an incident whose alerts start from ``first`` to ``last``.

    Single linkage on ``startsAt``: within ``window`` of the incident's span
    (for alerts in time order, within ``window`` of the latest one).
    """
    return first - window <= starts <= last + window
