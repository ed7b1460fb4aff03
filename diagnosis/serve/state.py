"""The server's state: one SQLite file in WAL mode (the standard library's ``sqlite3``).

Tables: ``notifications`` (every accepted webhook payload, verbatim),
``alerts`` (one row per distinct alert notification, keyed by the
deduplication key ``[groupKey, fingerprint, startsAt, status]``),
``incidents``, ``findings`` (observations and action outcomes, in arrival
order), ``beliefs`` (the top location and recommendation after every update)
and ``hooks`` (every hook run: pending approval, running, done).

Every change is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``) with
``synchronous=FULL``: when the server answers 2xx the change is on disk, and a
restart -- even after ``kill -9`` -- finds every committed notification and
resumes every open incident.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from diagnosis.exceptions import DiagnosisError

__all__ = ["SCHEMA_VERSION", "Store"]

#: Bumped when the tables change; a state file of another version is refused.
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    received TEXT NOT NULL,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    dedup_key TEXT PRIMARY KEY,
    notification INTEGER NOT NULL,
    identity TEXT NOT NULL,
    incident_id TEXT,
    group_key TEXT NOT NULL,
    fingerprint TEXT,
    alertname TEXT,
    status TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT,
    symptom TEXT,
    reason TEXT,
    received TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_identity ON alerts (identity);
CREATE INDEX IF NOT EXISTS alerts_incident ON alerts (incident_id);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    opened TEXT NOT NULL,
    status TEXT NOT NULL,
    last_activity REAL NOT NULL,
    first_start TEXT NOT NULL,
    last_start TEXT NOT NULL,
    resolved TEXT,
    closed_by TEXT,
    cause_component TEXT,
    cause_fault_mode TEXT,
    logged INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS incidents_status ON incidents (status);
CREATE TABLE IF NOT EXISTS findings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    target TEXT,
    value TEXT NOT NULL,
    p_fired REAL,
    p_passed REAL,
    time TEXT NOT NULL,
    source TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS findings_incident ON findings (incident_id);
CREATE TABLE IF NOT EXISTS beliefs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL,
    time TEXT NOT NULL,
    top_component TEXT,
    top_fault_mode TEXT,
    p_top REAL,
    recommended TEXT,
    expected_success REAL
);
CREATE INDEX IF NOT EXISTS beliefs_incident ON beliefs (incident_id);
CREATE TABLE IF NOT EXISTS hooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    expected_success REAL NOT NULL,
    cost REAL NOT NULL,
    requested TEXT NOT NULL,
    started TEXT,
    started_wall REAL,
    finished TEXT,
    outcome TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS hooks_incident ON hooks (incident_id);
CREATE INDEX IF NOT EXISTS hooks_target ON hooks (target);
"""


class Store:
    """The SQLite state file.

    Parameters
    ----------
    path : path-like
        The state file, created when missing (its folder must exist).
    topology : str
        The topology's name: a state file made for another topology is refused.

    Raises
    ------
    DiagnosisError
        The file is not a state file of this version and topology.
    """

    def __init__(self, path: str | os.PathLike, topology: str):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise DiagnosisError(f"state file {str(path)!r}: folder {str(self.path.parent)!r} does not exist")
        # One server per state file: an advisory lock beside it, released when the process ends (kill -9 too).
        self._lockfile = open(self.path.with_name(self.path.name + ".lock"), "a+")  # held open
        try:
            fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise DiagnosisError(f"state file {str(path)!r} is in use by another diagnosis serve") from None
        try:
            self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
            self.conn.row_factory = sqlite3.Row
            mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._lockfile.close()
            raise DiagnosisError(f"state file {str(path)!r} cannot be opened as SQLite: {exc}") from None
        if str(mode).lower() != "wal":
            raise DiagnosisError(f"state file {str(path)!r}: WAL mode unavailable (journal mode {mode!r})")
        self._lock = threading.RLock()
        try:
            self._check_meta(topology)
        except BaseException:
            self.close()
            raise

    def _check_meta(self, topology: str) -> None:
        path = self.path
        with self.transaction() as c:
            meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                c.execute("INSERT INTO meta VALUES ('schema', ?), ('topology', ?)", (SCHEMA_VERSION, topology))
            elif meta.get("schema") != SCHEMA_VERSION:
                raise DiagnosisError(
                    f"state file {str(path)!r} has schema {meta.get('schema')!r}; this server writes {SCHEMA_VERSION!r}"
                )
            elif meta.get("topology") != topology:
                raise DiagnosisError(
                    f"state file {str(path)!r} belongs to topology {meta.get('topology')!r}, not {topology!r}"
                )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (serialised across threads); committed when the block ends without an error."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads (serialised with the writes)."""
        with self._lock:
            yield self.conn

    def close(self) -> None:
        with self._lock:
            self.conn.close()
            self._lockfile.close()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def rows(c: sqlite3.Connection, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in c.execute(sql, args).fetchall()]

    @staticmethod
    def one(c: sqlite3.Connection, sql: str, args: tuple = ()) -> dict[str, Any] | None:
        r = c.execute(sql, args).fetchone()
        return None if r is None else dict(r)

    @staticmethod
    def dumps(x: Any) -> str:
        return json.dumps(x, separators=(",", ":"), sort_keys=True)
