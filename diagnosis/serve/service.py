"""The online loop behind ``diagnosis serve``: alerts in, live diagnoses, recovery under a policy, incidents out.

:class:`Service` holds the topology's network and engine, the SQLite
:class:`~diagnosis.serve.state.Store` and the :class:`~diagnosis.serve.hooks.Policy`.
It does not speak HTTP (:mod:`diagnosis.serve.app` does); every method is
safe to call from several threads.

* **Alerts.** Each alert of an Alertmanager notification is read and mapped
  to a symptom by :func:`diagnosis.telemetry.alertmanager.read_alert` and
  :func:`~diagnosis.telemetry.alertmanager.map_alert`, the functions
  ``diagnosis import alertmanager`` uses. An alert is deduplicated on
  ``[groupKey, fingerprint, startsAt, status]`` (the status too, so that the
  resolved notification of a firing alert is not a duplicate). A new mapped
  alert joins the open incident whose alerts' ``startsAt`` span it falls
  within ``window`` of (:func:`~diagnosis.telemetry.alertmanager.joins_incident`,
  the import's single-linkage rule), else it opens an incident. A firing
  alert is the observation ``fired`` of its symptom at its ``startsAt``.
* **Diagnosis.** After every change, in the same transaction: the posterior
  from the incident's latest observation of each symptom and its action
  outcomes in order (:func:`diagnosis.postmortem.session.findings_from` and
  ``state_of``, as ``explain --tried``), the ranked locations, the recommended
  action (highest ``P(R | D, a)`` among the untried, ties to the lower cost)
  and the belief timeline (:func:`diagnosis.postmortem.timeline.belief_timeline`);
  the next best check (:func:`diagnosis.postmortem.planning.rank_checks`, the
  costliest part) on the first read of the incident after the change.
* **Closing.** By request with the confirmed root cause, or when every alert
  of the incident is resolved and ``quiet`` seconds passed without news. The
  closed incident is appended to the incident log (JSON Lines, the format of
  ``docs/incidents.md``) atomically, once: the state marks it logged after the
  append, and at start-up an incident closed but not marked is appended only
  when its id is not in the log yet.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from diagnosis._files import atomic_write
from diagnosis._validation import Interval, validate_params
from diagnosis.exceptions import DiagnosisError, EvidenceError, IncidentLogError, ParameterError, suggest
from diagnosis.logs.schema import ActionAttempt, Incident, ObservationRecord
from diagnosis.model.network import Network, build_network
from diagnosis.model.topology import Topology
from diagnosis.postmortem.planning import rank_checks
from diagnosis.postmortem.session import Context, diagnosis_from, findings_from, state_of
from diagnosis.postmortem.timeline import belief_timeline
from diagnosis.serve.hooks import HookResult, Policy, run_hook
from diagnosis.serve.state import Store
from diagnosis.telemetry.alertmanager import joins_incident, map_alert, read_alert

__all__ = ["RequestError", "Service"]

#: The next best check of a view not computed yet (it is computed on the first read after an update).
_PENDING = object()


class RequestError(DiagnosisError):
    """A request the state cannot take: ``status`` is the HTTP status, ``loc`` the field (as pydantic names it)."""

    def __init__(self, status: int, message: str, *, loc: Sequence[Any] = (), value: Any = None):
        self.status = int(status)
        self.loc = tuple(loc)
        self.value = value
        super().__init__(message)

    def detail(self) -> list[dict[str, Any]] | str:
        if self.status == 422:
            return [{"type": "value_error", "loc": list(self.loc), "msg": str(self), "input": self.value}]
        return str(self)


def _iso(t: pd.Timestamp | None) -> str | None:
    if t is None or pd.isna(t):
        return None
    t = pd.Timestamp(t)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _ts(text: str | None) -> pd.Timestamp | None:
    if text is None:
        return None
    t = pd.Timestamp(text)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _now_iso(clock: Callable[[], float]) -> str:
    return _iso(pd.Timestamp(clock(), unit="s", tz="UTC"))


class Service:
    """The state and the loop of one ``diagnosis serve`` (see the module docstring).

    Parameters
    ----------
    topology : Topology
        Its alert rules map alerts to symptoms; its actions' hooks are what
        ``--execute`` may run.
    state : path-like
        The SQLite state file.
    log : path-like
        The incident log closed incidents are appended to (JSON Lines).
    window : str or Timedelta, default "15min"
        Alerts starting within this of an open incident's alerts join it.
    quiet : float, default 300
        Seconds without news after every alert of an incident is resolved before it closes itself.
    policy : Policy, optional
        Default: hooks never run.
    engine : str or engine, default "auto"
    checks : bool, default True
        Compute the next best check (on the first read after an update). On a
        large platform it takes long (train-ticket: over a minute per state on
        two cores); False leaves it out.
    clock : callable, default time.time
    """

    def __init__(
        self,
        topology: Topology,
        state: str | os.PathLike,
        log: str | os.PathLike,
        *,
        window: str | pd.Timedelta = "15min",
        quiet: float = 300.0,
        policy: Policy | None = None,
        engine: Any = "auto",
        checks: bool = True,
        clock: Callable[[], float] = time.time,
    ):
        from diagnosis.inference import make_engine

        validate_params(
            {"topology": topology, "quiet": quiet, "policy": policy, "checks": checks},
            {
                "topology": [Topology],
                "quiet": [Interval(float, 0.0, None, closed="left")],
                "policy": [Policy, None],
                "checks": [bool],
            },
            caller="Service",
        )
        try:
            self.window = pd.Timedelta(window)
        except (TypeError, ValueError):
            self.window = pd.NaT
        if pd.isna(self.window) or self.window < pd.Timedelta(0):
            raise ParameterError(
                f"The 'window' parameter of Service must be a duration >= 0 such as '15min'. Got {window!r} instead."
            )
        if not math.isfinite(quiet):
            raise ParameterError(
                f"The 'quiet' parameter of Service must be a finite number of seconds. Got {quiet!r} instead."
            )
        self.topology = topology
        self.quiet = float(quiet)
        self.policy = policy or Policy()
        self.clock = clock
        self.checks = bool(checks)
        self.network: Network = build_network(topology)
        self.engine = make_engine(self.network, engine) if isinstance(engine, str) else engine
        self.ctx = Context(self.network, self.engine)
        self.log_path = Path(log)
        if not self.log_path.parent.is_dir():
            raise DiagnosisError(f"incident log {str(log)!r}: folder {str(self.log_path.parent)!r} does not exist")
        self.store = Store(state, topology.name)
        self._symptoms = frozenset(topology.symptoms)
        self._hooks = {(a.name, a.component): a.hook for a in topology.actions if a.hook is not None}
        self._cost = {(a.name, a.component): a.cost for a in topology.actions}
        self._views: dict[str, dict[str, Any]] = {}
        self._threads: list[threading.Thread] = []
        self._log_lock = threading.Lock()
        from diagnosis.serve.metrics import Metrics

        self.metrics = Metrics()
        self._recover()

    # ================================================================== start-up
    def _recover(self) -> None:
        """Finish what a crash interrupted: hooks that were running, incidents closed but not logged."""
        now = _now_iso(self.clock)
        start: list[int] = []
        with self.store.transaction() as c:
            for h in Store.rows(c, "SELECT * FROM hooks WHERE state = 'running'"):
                result = HookResult("unknown", self._hook_kind(h), None, None, 0.0,
                                    "interrupted: the server stopped while the hook ran", "")  # fmt: skip
                start += self._finish_hook(c, h, result, now)
            for row in Store.rows(c, "SELECT id FROM incidents WHERE status = 'open'"):
                if row["id"] not in self._views:
                    start += self._update(c, row["id"])
        self._start_hooks(start)
        for row in self._closed_unlogged():
            self._write_log(row)
        self.metrics.open.set(self.count_open())

    def _hook_kind(self, h: Mapping[str, Any]) -> str:
        hook = self._hooks.get((h["action"], h["target"]))
        return hook.kind if hook is not None else "argv"

    def _closed_unlogged(self) -> list[str]:
        with self.store.reading() as c:
            return [r["id"] for r in Store.rows(c, "SELECT id FROM incidents WHERE status = 'closed' AND logged = 0")]

    # ================================================================== alerts
    def receive_alertmanager(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Take one Alertmanager webhook payload (already shape-checked); return what it changed."""
        t0 = time.perf_counter()
        status = payload.get("status")
        group_key = str(payload.get("groupKey", ""))
        notes = []
        for i, alert in enumerate(payload.get("alerts") or []):
            try:
                notes.append(read_alert(alert, status))
            except IncidentLogError as exc:
                row = exc.rows[0] if exc.rows else {"field": "(alert)", "reason": str(exc), "value": None}
                self.metrics.rejected.inc()
                raise RequestError(
                    422, row["reason"], loc=("body", "alerts", i, row["field"]), value=row["value"]
                ) from None
        self.metrics.received.inc(len(notes))
        received = _now_iso(self.clock)
        wall = self.clock()
        touched: list[str] = []
        new, duplicates, unmatched = 0, 0, []
        with self.store.transaction() as c:
            seq = None
            for note in notes:
                identity = note.fingerprint or "labels:" + Store.dumps(sorted(note.labels.items()))
                starts = _iso(note.starts)
                status_text = "resolved" if note.resolved else "firing"
                key = Store.dumps([group_key, identity, starts, status_text])
                if c.execute("SELECT 1 FROM alerts WHERE dedup_key = ?", (key,)).fetchone():
                    duplicates += 1
                    continue
                new += 1
                if seq is None:
                    cur = c.execute(
                        "INSERT INTO notifications (received, group_key, status, payload) VALUES (?, ?, ?, ?)",
                        (received, group_key, str(status), Store.dumps(payload)),
                    )
                    seq = cur.lastrowid
                symptom, reason = map_alert(note.labels, self.topology)
                incident = None
                if symptom is None:
                    unmatched.append({"alertname": note.labels.get("alertname"), "reason": reason})
                    self.metrics.rejected.inc()
                else:
                    incident, first_seen = self._incident_for(c, identity, starts, note.starts, wall)
                    if incident not in touched:
                        touched.append(incident)
                    if first_seen and self._is_open(c, incident):
                        c.execute(
                            "INSERT INTO findings (incident_id, kind, name, value, time, source) "
                            "VALUES (?, 'symptom', ?, 'fired', ?, ?)",
                            (incident, symptom, starts, f"alertmanager {note.labels.get('alertname', '')}".strip()),
                        )
                c.execute(
                    "INSERT INTO alerts (dedup_key, notification, identity, incident_id, group_key, fingerprint, "
                    "alertname, status, starts_at, ends_at, symptom, reason, received) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, seq, identity, incident, group_key, note.fingerprint, note.labels.get("alertname"),
                     status_text, starts, _iso(note.ends), symptom, reason, received),
                )  # fmt: skip
            starts_hooks = []
            for incident in touched:
                if self._is_open(c, incident):
                    c.execute("UPDATE incidents SET last_activity = ? WHERE id = ?", (wall, incident))
                    starts_hooks += self._update(c, incident)
        self.metrics.notifications.labels(result="accepted" if new else "duplicate").inc()
        self._start_hooks(starts_hooks)
        self.metrics.open.set(self.count_open())
        if touched:
            self.metrics.latency.observe(time.perf_counter() - t0)
        return {"accepted": new, "duplicates": duplicates, "unmatched": unmatched, "incidents": touched}

    def _is_open(self, c, incident: str) -> bool:
        row = c.execute("SELECT status FROM incidents WHERE id = ?", (incident,)).fetchone()
        return row is not None and row[0] == "open"

    def _incident_for(self, c, identity: str, starts_text: str, starts: pd.Timestamp, wall: float) -> tuple[str, bool]:
        """The incident an alert belongs to -- its earlier notification's, an open one it joins, or a new one --
        and whether this is the alert's first notification."""
        row = c.execute(
            "SELECT incident_id FROM alerts WHERE identity = ? AND starts_at = ? AND incident_id IS NOT NULL",
            (identity, starts_text),
        ).fetchone()
        if row is not None:
            return row[0], False
        for inc in Store.rows(c, "SELECT * FROM incidents WHERE status = 'open' ORDER BY seq DESC"):
            first, last = _ts(inc["first_start"]), _ts(inc["last_start"])
            if joins_incident(first, last, starts, self.window):
                c.execute(
                    "UPDATE incidents SET first_start = ?, last_start = ? WHERE id = ?",
                    (_iso(min(first, starts)), _iso(max(last, starts)), inc["id"]),
                )
                return inc["id"], True
        return self._open_incident(c, starts, wall), True

    def _open_incident(self, c, opened: pd.Timestamp, wall: float) -> str:
        n = c.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM incidents").fetchone()[0]
        iid = f"inc-{opened.strftime('%Y%m%dT%H%M%SZ')}-{n}"
        c.execute(
            "INSERT INTO incidents (id, seq, opened, status, last_activity, first_start, last_start) "
            "VALUES (?, ?, ?, 'open', ?, ?, ?)",
            (iid, n, _iso(opened), wall, _iso(opened), _iso(opened)),
        )
        return iid

    # ================================================================== observations and actions
    def observe(self, incident: str | None, observations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Add check results (``fired``, ``passed``, ``soft``) to an incident (default: the latest open one)."""
        t0 = time.perf_counter()
        now = _now_iso(self.clock)
        for i, o in enumerate(observations):
            if o["symptom"] not in self._symptoms:
                raise RequestError(422, f"unknown symptom{suggest(o['symptom'], self._symptoms)}",
                                   loc=("body", "observations", i, "symptom"), value=o["symptom"])  # fmt: skip
        wall = self.clock()
        with self.store.transaction() as c:
            if incident is not None:
                self._open_or_fail(c, incident)
            else:
                row = c.execute(
                    "SELECT id FROM incidents WHERE status = 'open' ORDER BY last_activity DESC, seq DESC"
                ).fetchone()
                if row is not None:
                    incident = row[0]
                elif any(o["value"] != "passed" for o in observations):
                    times = [_ts(o.get("time") or now) for o in observations]
                    incident = self._open_incident(c, min(times), wall)
                else:
                    raise RequestError(409, "no open incident: name one with 'incident', or send a fired observation")
            for o in observations:
                c.execute(
                    "INSERT INTO findings (incident_id, kind, name, value, p_fired, p_passed, time, source) "
                    "VALUES (?, 'symptom', ?, ?, ?, ?, ?, 'observations')",
                    (incident, o["symptom"], o["value"], o.get("p_fired") if o["value"] == "soft" else None,
                     o.get("p_passed") if o["value"] == "soft" else None, _iso(_ts(o.get("time") or now))),
                )  # fmt: skip
            c.execute("UPDATE incidents SET last_activity = ? WHERE id = ?", (wall, incident))
            hooks = self._update(c, incident)
        self._start_hooks(hooks)
        self.metrics.open.set(self.count_open())
        self.metrics.latency.observe(time.perf_counter() - t0)
        return {"incident": incident, "accepted": len(observations)}

    def record_action(
        self, incident: str, action: str, target: str, outcome: str, *, time_text: str | None = None, note: str = ""
    ) -> dict[str, Any]:
        """A recovery action a person took and its outcome: evidence, exactly as ``explain --tried``."""
        t0 = time.perf_counter()
        if (action, target) not in self._cost:
            try:
                self.ctx.acts.index(action, target)
            except EvidenceError as exc:
                field = "target" if target not in self.topology.component_names else "action"
                raise RequestError(
                    422, str(exc), loc=("body", field), value=target if field == "target" else action
                ) from None
        when = _iso(_ts(time_text)) if time_text else _now_iso(self.clock)
        with self.store.transaction() as c:
            self._open_or_fail(c, incident)
            detail = {"by": "person", **({"note": note} if note else {})}
            c.execute(
                "INSERT INTO findings (incident_id, kind, name, target, value, time, source, detail) "
                "VALUES (?, 'action', ?, ?, ?, ?, 'person', ?)",
                (incident, action, target, outcome, when, Store.dumps(detail)),
            )
            c.execute("UPDATE incidents SET last_activity = ? WHERE id = ?", (self.clock(), incident))
            hooks = self._update(c, incident)
        self._start_hooks(hooks)
        self.metrics.latency.observe(time.perf_counter() - t0)
        return self.incident(incident, checks=False)

    def _open_or_fail(self, c, incident: str) -> dict[str, Any]:
        row = Store.one(c, "SELECT * FROM incidents WHERE id = ?", (incident,))
        if row is None:
            raise RequestError(404, f"no incident {incident!r}")
        if row["status"] != "open":
            raise RequestError(409, f"incident {incident!r} is closed")
        return row

    # ================================================================== closing
    def close(
        self, incident: str, root_cause: Mapping[str, Any] | None = None, *, by: str = "request", note: str = ""
    ) -> dict[str, Any]:
        """Close an incident with its confirmed root cause (or none) and append it to the incident log."""
        comp = mode = None
        if root_cause is not None:
            comp, mode = root_cause.get("component"), root_cause.get("fault_mode")
            if comp not in self.topology.component_names:
                raise RequestError(422, f"unknown component{suggest(str(comp), self.topology.component_names)}",
                                   loc=("body", "root_cause", "component"), value=comp)  # fmt: skip
            modes = [m.name for m in self.topology.component(comp).fault_modes]
            if mode is not None and mode not in modes:
                raise RequestError(422, f"unknown fault mode of {comp!r}; allowed: {modes}",
                                   loc=("body", "root_cause", "fault_mode"), value=mode)  # fmt: skip
        with self.store.transaction() as c:
            self._open_or_fail(c, incident)
            if c.execute("SELECT 1 FROM hooks WHERE incident_id = ? AND state = 'running'", (incident,)).fetchone():
                raise RequestError(409, f"incident {incident!r} has a hook running; close it when the hook is done")
            self._close(c, incident, comp, mode, by)
        self._write_log(incident)
        self.metrics.open.set(self.count_open())
        return self.incident(incident, checks=False)

    def _close(self, c, incident: str, comp, mode, by: str) -> None:
        now = _now_iso(self.clock)
        ends = [
            r[0]
            for r in c.execute(
                "SELECT ends_at FROM alerts WHERE incident_id = ? AND status = 'resolved'", (incident,)
            ).fetchall()
        ]
        resolved = now if by != "quiet" or not ends or None in ends else max(ends)
        opened = c.execute("SELECT opened FROM incidents WHERE id = ?", (incident,)).fetchone()[0]
        resolved = max(resolved, opened, key=lambda t: _ts(t))
        c.execute("UPDATE hooks SET state = 'cancelled', finished = ? WHERE incident_id = ? AND state = 'pending_approval'",
                  (now, incident))  # fmt: skip
        c.execute(
            "UPDATE incidents SET status = 'closed', resolved = ?, closed_by = ?, cause_component = ?, "
            "cause_fault_mode = ? WHERE id = ?",
            (resolved, by, comp, mode, incident),
        )
        self._views.pop(incident, None)

    def tick(self) -> list[str]:
        """Close the incidents whose alerts are all resolved and quiet for ``quiet`` seconds; return their ids."""
        wall = self.clock()
        closed = []
        with self.store.transaction() as c:
            for inc in Store.rows(c, "SELECT id, last_activity FROM incidents WHERE status = 'open'"):
                if wall - inc["last_activity"] < self.quiet:
                    continue
                firing = c.execute(
                    "SELECT COUNT(*) FROM (SELECT identity, starts_at, MAX(status = 'resolved') AS r FROM alerts "
                    "WHERE incident_id = ? GROUP BY identity, starts_at) WHERE r = 0",
                    (inc["id"],),
                ).fetchone()[0]
                busy = c.execute(
                    "SELECT 1 FROM hooks WHERE incident_id = ? AND state = 'running'", (inc["id"],)
                ).fetchone()
                if firing == 0 and not busy:
                    self._close(c, inc["id"], None, None, "quiet")
                    closed.append(inc["id"])
        for iid in closed:
            self._write_log(iid)
        if closed:
            self.metrics.open.set(self.count_open())
        return closed

    # ================================================================== the incident log
    def record(self, incident: str) -> dict[str, Any]:
        """The incident as one incident-log record (``docs/incidents.md``); actions carry ``by`` and ``hook``."""
        with self.store.reading() as c:
            inc = Store.one(c, "SELECT * FROM incidents WHERE id = ?", (incident,))
            if inc is None:
                raise RequestError(404, f"no incident {incident!r}")
            findings = Store.rows(c, "SELECT * FROM findings WHERE incident_id = ? ORDER BY seq", (incident,))
        latest = _latest_observations(findings)
        observations = []
        for f in latest.values():
            o: dict[str, Any] = {"symptom": f["name"], "value": f["value"]}
            if f["value"] == "soft":
                o["p_fired"], o["p_passed"] = f["p_fired"], f["p_passed"]
            o["time"] = f["time"]
            observations.append(o)
        actions = []
        for f in findings:
            if f["kind"] == "action":
                a = {"action": f["name"], "target": f["target"], "time": f["time"], "outcome": f["value"]}
                a.update(json.loads(f["detail"] or "{}"))
                actions.append(a)
        cause = None
        if inc["cause_component"] is not None:
            cause = {"component": inc["cause_component"], "fault_mode": inc["cause_fault_mode"]}
        return {
            "id": inc["id"],
            "opened": inc["opened"],
            "resolved": inc["resolved"],
            "topology": self.topology.name,
            "root_cause": cause,
            "observations": observations,
            "actions": actions,
        }

    def _write_log(self, incident: str) -> bool:
        """Append a closed incident to the log unless it is there already; mark it logged. True when appended."""
        record = self.record(incident)
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        with self._log_lock:
            existing = self.log_path.read_bytes() if self.log_path.exists() else b""
            appended = not _log_has(existing, incident)
            if appended:
                if existing and not existing.endswith(b"\n"):
                    existing += b"\n"

                def write(tmp: str) -> None:
                    with open(tmp, "wb") as fh:
                        fh.write(existing)
                        fh.write(line)
                        fh.flush()
                        os.fsync(fh.fileno())

                atomic_write(self.log_path, write)
                _fsync_dir(self.log_path.parent)
            with self.store.transaction() as c:
                c.execute("UPDATE incidents SET logged = 1 WHERE id = ?", (incident,))
        return appended

    # ================================================================== the diagnosis
    def _incident_record(self, c, incident: str) -> tuple[Incident, list[dict], list[dict]]:
        inc = Store.one(c, "SELECT * FROM incidents WHERE id = ?", (incident,))
        findings = Store.rows(c, "SELECT * FROM findings WHERE incident_id = ? ORDER BY seq", (incident,))
        latest = _latest_observations(findings)
        obs = tuple(
            ObservationRecord(f["name"], f["value"], f["p_fired"], f["p_passed"], _ts(f["time"]))
            for f in latest.values()
        )
        acts = [f for f in findings if f["kind"] == "action"]
        attempts = tuple(ActionAttempt(f["name"], f["target"], f["value"], _ts(f["time"])) for f in acts)
        record = Incident(
            id=incident,
            opened=_ts(inc["opened"]),
            topology=self.topology.name,
            observations=obs,
            actions=attempts,
            resolved=_ts(inc["resolved"]),
            cause_component=inc["cause_component"],
            cause_fault_mode=inc["cause_fault_mode"],
        )
        return record, list(latest.values()), acts

    def incident_record(self, incident: str) -> Incident:
        """The incident as an :class:`~diagnosis.logs.schema.Incident` (what ``report`` and ``timeline`` take)."""
        with self.store.reading() as c:
            if c.execute("SELECT 1 FROM incidents WHERE id = ?", (incident,)).fetchone() is None:
                raise RequestError(404, f"no incident {incident!r}")
            return self._incident_record(c, incident)[0]

    def _compute(self, c, incident: str) -> dict[str, Any]:
        record, obs_rows, act_rows = self._incident_record(c, incident)
        evidence = record.observation_mapping()
        findings = findings_from(evidence, record.actions)
        state = state_of(self.ctx, findings)
        marg = self.ctx.query([state])
        diag = diagnosis_from(self.ctx, state, marg, 0)
        p = self.ctx.acts.expected_success(marg)[0]
        tried = {(a.action, a.target) for a in record.actions}
        order = sorted(range(len(self.ctx.acts.actions)), key=lambda i: (-p[i], self.ctx.acts.cost[i], i))
        actions = []
        for i in order:
            a = self.ctx.acts.actions[i]
            actions.append({
                "action": a.name, "target": a.component, "expected_success": float(p[i]), "cost": a.cost,
                "tried": (a.name, a.component) in tried, "hook": a.hook.kind if a.hook is not None else None,
            })  # fmt: skip
        recommended = next((a for a in actions if not a["tried"]), None)
        tl = belief_timeline(self.ctx, record)
        frame = tl.to_frame()
        timeline = [
            {"step": int(r.step), "time": _iso(r.time), "kind": r.kind, "finding": r.finding,
             "observation": r.observation, "top_component": r.top_component, "top_fault_mode": r.top_fault_mode,
             "p_top": float(r.p_top)}
            for r in frame.itertuples(index=False)
        ]  # fmt: skip
        return {
            "locations": [
                {"component": loc.component, "fault_mode": loc.fault_mode, "probability": loc.probability}
                for loc in diag.locations
            ],
            "posterior": {comp: dict(ps) for comp, ps in diag.posteriors.items()},
            "recommended_action": recommended,
            "actions": actions,
            "next_check": _PENDING,
            "timeline": timeline,
            "engine": diag.engine,
        }

    def _next_check(self, c, incident: str) -> dict[str, Any] | None:
        """The next best check (information gain per cost), or None when every check has run."""
        record = self._incident_record(c, incident)[0]
        checks = rank_checks(self.network, record.observation_mapping(), actions=record.actions, engine=self.engine)
        if not checks:
            return None
        ch = checks[0]
        return {"symptom": ch.symptom, "cost": ch.cost, "p_fired": ch.p_fired,
                "information_gain": ch.information_gain, "success_gain": ch.success_gain}  # fmt: skip

    def _update(self, c, incident: str) -> list[int]:
        """Recompute an open incident's diagnosis, store its belief, apply the policy; the hook runs to start."""
        view = self._compute(c, incident)
        top = view["locations"][0] if view["locations"] else None
        rec = view["recommended_action"]
        c.execute(
            "INSERT INTO beliefs (incident_id, time, top_component, top_fault_mode, p_top, recommended, expected_success) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (incident, _now_iso(self.clock), top and top["component"], top and top["fault_mode"],
             top and top["probability"], rec and f"{rec['action']} {rec['target']}", rec and rec["expected_success"]),
        )  # fmt: skip
        decision, start = self._consider(c, incident, view)
        view["policy_decision"] = decision
        self._views[incident] = view
        return start

    # ================================================================== hooks
    def _consider(self, c, incident: str, view: Mapping[str, Any]) -> tuple[str, list[int]]:
        """Apply the policy to the recommended action: ``(what was decided, hook runs to start now)``."""
        pol = self.policy
        rec = view["recommended_action"]
        if not pol.execute:
            return "hooks off (start with --execute to run them)", []
        if rec is None:
            return "no untried action", []
        key = (rec["action"], rec["target"])
        label = f"{rec['action']} {rec['target']}"
        if c.execute("SELECT 1 FROM findings WHERE incident_id = ? AND kind = 'action' AND value = 'success'",
                     (incident,)).fetchone():  # fmt: skip
            return "an action already succeeded in this incident", []
        if c.execute("SELECT 1 FROM hooks WHERE incident_id = ? AND state IN ('pending_approval', 'running')",
                     (incident,)).fetchone():  # fmt: skip
            return "a hook is already pending or running for this incident", []
        if key not in self._hooks:
            return f"{label}: no hook; a person acts", []
        if rec["expected_success"] < pol.min_success:
            return f"{label}: expected success {rec['expected_success']:.3f} below {pol.min_success:g}", []
        spent = sum(self._cost[(f["name"], f["target"])] for f in Store.rows(
            c, "SELECT name, target FROM findings WHERE incident_id = ? AND kind = 'action'", (incident,)))  # fmt: skip
        if spent + rec["cost"] > pol.budget:
            return f"{label}: cost {spent:g} + {rec['cost']:g} over the budget {pol.budget:g}", []
        if c.execute("SELECT 1 FROM hooks WHERE target = ? AND state IN ('pending_approval', 'running')",
                     (rec["target"],)).fetchone():  # fmt: skip
            return f"{label}: another action on {rec['target']} is pending or running", []
        since = self.clock() - pol.rate_window
        n = c.execute(
            "SELECT COUNT(*) FROM hooks WHERE target = ? AND started_wall >= ?", (rec["target"], since)
        ).fetchone()[0]
        if n >= pol.rate_limit:
            return f"{label}: rate limit ({pol.rate_limit} per {pol.rate_window:g} s on {rec['target']})", []
        now = _now_iso(self.clock)
        state = "pending_approval" if pol.approval else "running"
        cur = c.execute(
            "INSERT INTO hooks (incident_id, action, target, state, expected_success, cost, requested, started, "
            "started_wall) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (incident, rec["action"], rec["target"], state, rec["expected_success"], rec["cost"], now,
             None if pol.approval else now, None if pol.approval else self.clock()),
        )  # fmt: skip
        if pol.approval:
            return f"{label}: waiting for approval", []
        return f"{label}: running its hook", [cur.lastrowid]

    def approve(self, incident: str, action: str, target: str | None = None) -> dict[str, Any]:
        """Approve the pending hook run of ``action`` in ``incident``; it starts now."""
        with self.store.transaction() as c:
            self._open_or_fail(c, incident)
            args: tuple = (incident, action) + ((target,) if target else ())
            h = Store.one(c, "SELECT * FROM hooks WHERE incident_id = ? AND action = ? "
                             + ("AND target = ? " if target else "") + "AND state = 'pending_approval'", args)  # fmt: skip
            if h is None:
                raise RequestError(404, f"no hook run of {action!r} waits for approval in incident {incident!r}")
            c.execute("UPDATE hooks SET state = 'running', started = ?, started_wall = ? WHERE id = ?",
                      (_now_iso(self.clock), self.clock(), h["id"]))  # fmt: skip
            view = self._views.get(incident)
            if view is not None:
                view["policy_decision"] = f"{action} {h['target']}: approved, running its hook"
        self._start_hooks([h["id"]])
        return self.incident(incident, checks=False)

    def _start_hooks(self, ids: Sequence[int]) -> None:
        for hid in ids:
            t = threading.Thread(target=self._run_hook, args=(hid,), name=f"hook-{hid}", daemon=True)
            self._threads.append(t)
            t.start()
        self._threads = [t for t in self._threads if t.is_alive()]

    def wait_hooks(self, timeout: float = 30.0) -> None:
        """Wait for the hook runs started so far (tests, shutdown)."""
        end = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(max(0.0, end - time.monotonic()))

    def _run_hook(self, hid: int) -> None:
        with self.store.reading() as c:
            h = Store.one(c, "SELECT * FROM hooks WHERE id = ?", (hid,))
        hook = self._hooks[(h["action"], h["target"])]
        self.metrics.hooks.labels(kind=hook.kind).inc()
        result = run_hook(hook, incident=h["incident_id"], action=h["action"], target=h["target"],
                          expected_success=h["expected_success"])  # fmt: skip
        if result.outcome != "success":
            self.metrics.hook_failures.labels(kind=hook.kind).inc()
        with self.store.transaction() as c:
            start = self._finish_hook(c, h, result, _now_iso(self.clock))
        self._start_hooks(start)

    def _finish_hook(self, c, h: Mapping[str, Any], result: HookResult, now: str) -> list[int]:
        hook = self._hooks.get((h["action"], h["target"]))
        detail = {"by": "hook", "hook": {**result.to_dict(), "run": h["id"], "requested": h["requested"],
                                          "started": h["started"], "finished": now,
                                          **({"argv": list(hook.argv)} if hook is not None and hook.argv else {}),
                                          **({"url": hook.url} if hook is not None and hook.url else {})}}  # fmt: skip
        c.execute("UPDATE hooks SET state = 'done', finished = ?, outcome = ?, detail = ? WHERE id = ?",
                  (now, result.outcome, Store.dumps(detail["hook"]), h["id"]))  # fmt: skip
        c.execute(
            "INSERT INTO findings (incident_id, kind, name, target, value, time, source, detail) "
            "VALUES (?, 'action', ?, ?, ?, ?, 'hook', ?)",
            (h["incident_id"], h["action"], h["target"], result.outcome, h["started"] or now, Store.dumps(detail)),
        )
        if not self._is_open(c, h["incident_id"]):
            return []
        c.execute("UPDATE incidents SET last_activity = ? WHERE id = ?", (self.clock(), h["incident_id"]))
        return self._update(c, h["incident_id"])

    # ================================================================== reading
    def count_open(self) -> int:
        with self.store.reading() as c:
            return c.execute("SELECT COUNT(*) FROM incidents WHERE status = 'open'").fetchone()[0]

    def incident(self, incident: str, *, checks: bool = True) -> dict[str, Any]:
        """The incident as JSON: state, alerts, observations, actions, hooks and the live diagnosis.

        ``checks=False`` leaves the next best check out (``next_check`` None and
        ``next_check_computed`` False) unless it is computed already; so does a
        service made with ``checks=False``.
        """
        with self.store.reading() as c:
            inc = Store.one(c, "SELECT * FROM incidents WHERE id = ?", (incident,))
            if inc is None:
                raise RequestError(404, f"no incident {incident!r}")
            alerts = Store.rows(c, "SELECT alertname, fingerprint, symptom, status, starts_at, ends_at FROM alerts "
                                   "WHERE incident_id = ? ORDER BY rowid", (incident,))  # fmt: skip
            hooks = Store.rows(c, "SELECT id, action, target, state, expected_success, cost, requested, started, "
                                  "finished, outcome, detail FROM hooks WHERE incident_id = ? ORDER BY id", (incident,))  # fmt: skip
            history = Store.rows(c, "SELECT time, top_component, top_fault_mode, p_top, recommended, expected_success "
                                    "FROM beliefs WHERE incident_id = ? ORDER BY seq", (incident,))  # fmt: skip
            view = self._views.get(incident)
            if view is None:
                view = self._compute(c, incident)
                view["policy_decision"] = None if inc["status"] == "open" else "closed"
                if inc["status"] == "open":
                    self._views[incident] = view
            if view["next_check"] is _PENDING and checks and self.checks:
                view["next_check"] = self._next_check(c, incident)  # computed on the first read after an update
            view = dict(view)
            view["next_check_computed"] = view["next_check"] is not _PENDING
            if view["next_check"] is _PENDING:
                view["next_check"] = None
        for h in hooks:
            h["detail"] = json.loads(h["detail"]) if h["detail"] else None
        record = self.record(incident)
        return {
            "id": incident,
            "status": inc["status"],
            "opened": inc["opened"],
            "resolved": inc["resolved"],
            "closed_by": inc["closed_by"],
            "logged": bool(inc["logged"]),
            "topology": self.topology.name,
            "root_cause": record["root_cause"],
            "alerts": alerts,
            "observations": record["observations"],
            "actions_taken": record["actions"],
            "hooks": hooks,
            **view,
            "belief_history": history,
        }

    def incidents(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every incident (newest first) with its top location and recommendation."""
        with self.store.reading() as c:
            rows = Store.rows(
                c,
                "SELECT i.id, i.status, i.opened, i.resolved, b.top_component, b.top_fault_mode, b.p_top, "
                "b.recommended, b.expected_success FROM incidents i LEFT JOIN beliefs b ON b.seq = "
                "(SELECT MAX(seq) FROM beliefs WHERE incident_id = i.id)"
                + (" WHERE i.status = ?" if status else "") + " ORDER BY i.seq DESC",
                (status,) if status else (),
            )  # fmt: skip
        return rows

    def counts(self) -> dict[str, int]:
        """Row counts of the state (for the benchmark and tests)."""
        with self.store.reading() as c:
            return {t: c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                    for t in ("notifications", "alerts", "incidents", "findings", "beliefs", "hooks")}  # fmt: skip

    def close_store(self) -> None:
        self.wait_hooks(timeout=5.0)
        self.store.close()


def _latest_observations(findings: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Symptom -> its latest observation, in the order they were made.

    The same result again (an alert firing again, a check repeated) keeps the
    first observation of it, with its time (as the import keeps the earliest
    ``startsAt``); a different result replaces it.
    """
    latest: dict[str, Mapping[str, Any]] = {}
    for f in findings:
        if f["kind"] != "symptom":
            continue
        old = latest.get(f["name"])
        same = old is not None and (old["value"], old["p_fired"], old["p_passed"]) == (
            f["value"],
            f["p_fired"],
            f["p_passed"],
        )
        if not same:
            latest.pop(f["name"], None)
            latest[f["name"]] = f
    return latest


def _log_has(data: bytes, incident: str) -> bool:
    needle = json.dumps(incident).encode("utf-8")
    if needle not in data:
        return False
    for line in data.splitlines():
        if needle in line:
            try:
                if json.loads(line).get("id") == incident:
                    return True
            except (ValueError, AttributeError):
                continue
    return False


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
