"""Incident-log file formats: JSON Lines, Parquet and CSV, read in chunks and written atomically.

* **JSON Lines** (``.jsonl``, ``.jsonl.gz``): one incident object per line
  (``docs/incidents.md``).
* **Parquet** (``.parquet`` file, or a folder of ``*.parquet`` parts read in
  name order): one row per incident; ``observations`` and ``actions`` are
  lists of structs; times are UTC timestamps.
* **CSV**: a folder holding ``incidents.csv``, ``observations.csv`` and
  ``actions.csv`` joined on ``incident_id`` (or ``NAME.csv`` with
  ``NAME.observations.csv`` and ``NAME.actions.csv`` beside it). The two long
  tables are read whole (grouped by incident); the incidents table streams.
  For logs of many millions of incidents use Parquet or JSON Lines.

Readers yield ``(IncidentFrame, rejects)`` per chunk; a bad record (a
truncated line, a bad timestamp, a wrong type) is a :class:`Reject` and the
rest goes on. Writers write to a temporary file beside the target and rename
it into place.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diagnosis._files import atomic_write, atomic_write_text, temporary_beside
from diagnosis._validation import short_repr
from diagnosis.exceptions import IncidentLogError
from diagnosis.logs.schema import (
    ACTION_COLUMNS,
    INCIDENT_COLUMNS,
    NO_FAULT,
    OBSERVATION_COLUMNS,
    RAW_ACTION_COLUMNS,
    RAW_INCIDENT_COLUMNS,
    RAW_OBSERVATION_COLUMNS,
    IncidentFrame,
    Reject,
    frame_from_raw,
)

__all__ = ["FORMATS", "detect_format", "iter_incident_frames", "read_incidents", "write_incidents", "write_rejects"]

FORMATS = ("jsonl", "parquet", "csv")
_RECORD_FIELDS = {
    "id",
    "opened",
    "resolved",
    "topology",
    "observations",
    "root_cause",
    "faults",
    "actions",
    "title",
    "notes",
}


def detect_format(path: str | os.PathLike) -> str:
    """``"jsonl"``, ``"parquet"`` or ``"csv"`` from a path.

    Raises
    ------
    IncidentLogError
        When the path says nothing about the format.
    """
    p = Path(path)
    name = p.name.lower()
    if name.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")) or (p.is_dir() and any(p.glob("*.parquet"))):
        return "parquet"
    if name.endswith(".csv") or (p.is_dir() and (p / "incidents.csv").exists()) or name.endswith(".csvdir"):
        return "csv"
    raise IncidentLogError(
        f"{path}: cannot tell the format; allowed: a .jsonl file, a .parquet file or folder of parts, "
        "or a folder (or NAME.csv) with incidents.csv, observations.csv and actions.csv"
    )


def iter_incident_frames(
    path: str | os.PathLike, *, chunk_size: int = 10_000, skip: int = 0
) -> Iterator[tuple[IncidentFrame, list[Reject]]]:
    """Read an incident log in chunks of ``chunk_size`` records.

    Parameters
    ----------
    path : path-like
    chunk_size : int
        Records per chunk (good and bad together), so chunk ``k`` always holds
        records ``k * chunk_size`` to ``(k + 1) * chunk_size - 1``.
    skip : int
        Records to skip first (a multiple of ``chunk_size`` to resume at a chunk).

    Yields
    ------
    (IncidentFrame, list of Reject)
        The records that passed the type and shape checks, and those set aside.
        References to a topology are checked by :func:`diagnosis.logs.schema.validate_frame`.
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise IncidentLogError(f"chunk_size must be an int >= 1. Got {chunk_size!r} instead.")
    path = Path(path)
    if not path.exists():
        raise IncidentLogError(f"{path}: file not found")
    fmt = detect_format(path)
    reader = {"jsonl": _iter_jsonl, "parquet": _iter_parquet, "csv": _iter_csv}[fmt]
    yield from reader(path, chunk_size, skip)


def read_incidents(path: str | os.PathLike) -> tuple[IncidentFrame, list[Reject]]:
    """Read a whole incident log: ``(frame, rejects)``.

    An incident id already held by an earlier record (in any chunk) is set
    aside as a duplicate, as within a chunk.
    """
    frames, rejects = [], []
    seen: dict[str, str] = {}
    for f, r in iter_incident_frames(path, chunk_size=100_000):
        ids = f.incidents["id"].to_numpy(dtype=object)
        dup = np.fromiter((i in seen for i in ids), dtype=bool, count=len(ids))
        if dup.any():
            for iid in ids[dup]:
                r.append(
                    Reject(
                        str(path),
                        f.location.get(iid, f"incident {iid}"),
                        iid,
                        "id",
                        short_repr(iid),
                        f"duplicate incident id (first at {seen[iid]})",
                    )
                )
            f = f.select(ids[~dup])
        for rej in r:
            if rej.incident_id:
                seen.setdefault(rej.incident_id, rej.location)
        for iid, loc in f.location.items():
            seen.setdefault(iid, loc)
        frames.append(f)
        rejects.extend(r)
    return IncidentFrame.concat(frames), rejects


# --------------------------------------------------------------------------- JSON Lines
class _Raw:
    """Accumulates raw long-form rows for one chunk."""

    def __init__(self):
        self.inc = {c: [] for c in RAW_INCIDENT_COLUMNS}
        self.obs = {c: [] for c in RAW_OBSERVATION_COLUMNS}
        self.acts = {c: [] for c in RAW_ACTION_COLUMNS}
        self.n = 0

    def frames(self):
        return pd.DataFrame(self.inc), pd.DataFrame(self.obs), pd.DataFrame(self.acts)


class _Bad(Exception):
    def __init__(self, field: str, value: Any, reason: str):
        super().__init__(reason)
        self.field, self.value, self.reason = field, value, reason


def _add_record(raw: _Raw, rec: Any, loc: str) -> None:
    """Append one parsed JSON record's rows; raise _Bad for a wrong shape (types are checked later)."""
    if not isinstance(rec, Mapping):
        raise _Bad("(record)", rec, "must be a JSON object")
    extra = [k for k in rec if k not in _RECORD_FIELDS]
    if extra:
        raise _Bad(extra[0], rec[extra[0]], f"unknown field; allowed: {sorted(_RECORD_FIELDS)}")
    cause = rec.get("root_cause")
    if cause is not None and not isinstance(cause, Mapping):
        raise _Bad("root_cause", cause, "must be an object {component, fault_mode} or null")
    faults = rec.get("faults")
    if faults is not None:
        if not isinstance(faults, list) or not all(
            isinstance(f, Mapping) and isinstance(f.get("component"), str) and isinstance(f.get("fault_mode"), str)
            for f in faults
        ):
            raise _Bad("faults", faults, "must be a list of {component, fault_mode} with string values")
        faults = "|".join(f"{f['component']}:{f['fault_mode']}" for f in faults) or NO_FAULT
    observations = rec.get("observations", [])
    actions = rec.get("actions", [])
    if not isinstance(observations, list) or not all(isinstance(o, Mapping) for o in observations):
        raise _Bad("observations", observations, "must be a list of objects {symptom, value, time}")
    if not isinstance(actions, list) or not all(isinstance(a, Mapping) for a in actions):
        raise _Bad("actions", actions, "must be a list of objects {action, target, time, outcome}")
    i = raw.n
    for key, value in (
        ("id", rec.get("id")),
        ("opened", rec.get("opened")),
        ("resolved", rec.get("resolved")),
        ("topology", rec.get("topology")),
        ("cause_component", None if cause is None else cause.get("component")),
        ("cause_fault_mode", None if cause is None else cause.get("fault_mode")),
        ("faults", faults),
        ("_loc", loc),
    ):
        raw.inc[key].append(value)
    for o in observations:
        value = o.get("value")
        pf, pp = o.get("p_fired"), o.get("p_passed")
        if isinstance(value, Mapping):  # the {fired: P, passed: Q} shorthand
            value, pf, pp = "soft", value.get("fired"), value.get("passed")
        raw.obs["_i"].append(i)
        raw.obs["symptom"].append(o.get("symptom"))
        raw.obs["value"].append(value)
        raw.obs["p_fired"].append(
            pf if isinstance(pf, (int, float)) and not isinstance(pf, bool) else (math.nan if pf is None else str(pf))
        )
        raw.obs["p_passed"].append(
            pp if isinstance(pp, (int, float)) and not isinstance(pp, bool) else (math.nan if pp is None else str(pp))
        )
        raw.obs["time"].append(o.get("time"))
    for a in actions:
        raw.acts["_i"].append(i)
        for key in ("action", "target", "time", "outcome"):
            raw.acts[key].append(a.get(key))
    raw.n += 1


def _iter_jsonl(path: Path, chunk_size: int, skip: int):
    opener = gzip.open if path.name.endswith(".gz") else open
    source = str(path)
    chunk: list[tuple[list[int], bytes]] = []  # the chunk's records as blocks of (line numbers, UTF-8 lines)
    linenos: list[int] = []
    lines: list[str] = []
    block_chars, in_chunk, n_records = 0, 0, 0
    try:
        fh = opener(path, "rt", encoding="utf-8", errors="surrogateescape")
        if opener is gzip.open:
            fh.read(1)  # a file that is not gzip at all fails here, before any work
            fh.seek(0)
    except (OSError, EOFError) as exc:
        raise IncidentLogError(f"{path}: cannot open: {exc}") from None
    tail: list[Reject] = []  # the reject for a truncated compressed file, if any

    def block() -> tuple[list[int], bytes, bool]:
        # every line ends with exactly one "\n" (text mode splits there), so the block splits back exactly;
        # invalid UTF-8 bytes travel as themselves (surrogateescape) and send the block to the per-line reader
        if not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        text = "".join(lines)
        return linenos, text.encode("utf-8", "surrogateescape"), _SURROGATE.search(text) is not None

    with fh:
        for lineno, line in _lines(fh, path, tail):
            if not line.strip():
                continue
            n_records += 1
            if n_records <= skip:
                continue
            in_chunk += 1
            linenos.append(lineno)
            lines.append(line)
            block_chars += len(line)
            if block_chars >= _JSONL_BLOCK_CHARS:
                chunk.append(block())
                linenos, lines, block_chars = [], [], 0
            if in_chunk == chunk_size:
                if lines:
                    chunk.append(block())
                yield _jsonl_read_chunk(chunk, source)
                chunk, linenos, lines, block_chars, in_chunk = [], [], [], 0, 0
    if in_chunk or tail:
        if lines:
            chunk.append(block())
        frame, rejects = _jsonl_read_chunk(chunk, source)
        yield frame, rejects + tail


#: Text parsed by pyarrow at a time (a chunk of records is parsed in blocks of about this size).
_JSONL_BLOCK_CHARS = 1 << 25


def _jsonl_read_chunk(blocks: list[tuple[list[int], bytes, bool]], source: str):
    """One chunk of records: each block through pyarrow's JSON reader, or line by line if that fails."""
    incs, obss, actss, rejects, offset = [], [], [], [], 0
    for linenos, data, bad_bytes in blocks:
        parts = None if bad_bytes else _jsonl_block_arrow(linenos, data)
        if parts is None:  # anything unusual: the per-line reader, which words every reject
            lines = data.decode("utf-8", "surrogateescape").split("\n")[:-1]
            parts, more = _jsonl_block_lines(list(zip(linenos, lines)), source)
            rejects.extend(more)
        inc, obs, acts = parts
        if offset:
            obs = obs.assign(_i=obs["_i"] + offset)
            acts = acts.assign(_i=acts["_i"] + offset)
        incs.append(inc)
        obss.append(obs)
        actss.append(acts)
        offset += len(inc)
    if len(incs) == 1:
        inc, obs, acts = incs[0], obss[0], actss[0]
    else:
        inc = pd.concat(incs, ignore_index=True)
        obs = pd.concat(obss, ignore_index=True)
        acts = pd.concat(actss, ignore_index=True)
    frame, more = frame_from_raw(inc, obs, acts, source=source)
    return frame, rejects + more


def _jsonl_block_lines(block: list[tuple[int, str]], source: str):
    """Parse records line by line (``json`` + :func:`_add_record`): raw frames and parse rejects."""
    raw, rejects = _Raw(), []
    for lineno, line in block:
        rec = None
        try:
            rec = json.loads(line)
            if _SURROGATE.search(line):
                raise _Bad(*_bad_utf8(rec, line))
            _add_record(raw, rec, f"line {lineno}")
        except json.JSONDecodeError as exc:
            rejects.append(
                Reject(
                    source,
                    f"line {lineno}",
                    None,
                    "(line)",
                    short_repr(line.strip(), 120),
                    # json's "Unterminated string starting at" already ends in "at"
                    f"not valid JSON (truncated or corrupt): {exc.msg.removesuffix(' at')} at character {exc.pos}",
                )
            )
        except RecursionError:
            rejects.append(
                Reject(
                    source,
                    f"line {lineno}",
                    None,
                    "(line)",
                    short_repr(line.strip(), 120),
                    "JSON nested too deeply to read",
                )
            )
        except _Bad as exc:
            iid = rec.get("id") if isinstance(rec, Mapping) and isinstance(rec.get("id"), str) else None
            iid = None if iid is not None and _SURROGATE.search(iid) else iid
            rejects.append(Reject(source, f"line {lineno}", iid, exc.field, short_repr(exc.value), exc.reason))
    return raw.frames(), rejects


def _jsonl_schema():
    import pyarrow as pa

    s = pa.string()
    pair = pa.struct([("component", s), ("fault_mode", s)])
    obs = pa.struct([("symptom", s), ("value", s), ("p_fired", pa.float64()), ("p_passed", pa.float64()), ("time", s)])
    act = pa.struct([("action", s), ("target", s), ("time", s), ("outcome", s)])
    return pa.schema(
        [
            ("id", s),
            ("opened", s),
            ("resolved", s),
            ("topology", s),
            ("root_cause", pair),
            ("faults", pa.list_(pair)),
            ("observations", pa.list_(obs)),
            ("actions", pa.list_(act)),
            ("title", s),
            ("notes", s),
        ]
    )


def _jsonl_block_arrow(linenos: list[int], data: bytes):
    """Raw frames of a block of records through ``pyarrow.json`` with the record schema; ``None``
    when the block holds anything the schema cannot say exactly as the per-line reader would (a
    syntax error, an unknown field, a value of another type, a null list, a soft-evidence mapping...)."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.json as pjson
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        return None
    try:
        table = pjson.read_json(
            pa.py_buffer(data),
            # 4 MiB pyarrow blocks: parsed on both cores
            read_options=pjson.ReadOptions(block_size=1 << 22),
            parse_options=pjson.ParseOptions(explicit_schema=_jsonl_schema(), unexpected_field_behavior="error"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    n = table.num_rows
    if n != len(linenos):
        return None
    cols = {name: table.column(name).combine_chunks() for name in table.column_names}
    lists = {}
    for name in ("observations", "actions", "faults"):
        col = cols[name]
        items = col.flatten()
        # missing and null lists look alike here but not to the per-line reader; so do null items
        if (name != "faults" and col.null_count) or items.null_count:
            return None
        lists[name] = (col, items)
    col, items = lists["faults"]
    comp, mode = items.field("component"), items.field("fault_mode")
    if comp.null_count or mode.null_count:
        return None
    joined = pc.binary_join(
        pa.ListArray.from_arrays(col.offsets, pc.binary_join_element_wise(comp, mode, ":"), mask=col.is_null()), "|"
    )
    faults = joined.to_pandas()
    faults = faults.where(faults != "", NO_FAULT)
    inc = pd.DataFrame({c: cols[c].to_pandas() for c in ("id", "opened", "resolved", "topology")})
    rc = cols["root_cause"]
    valid = np.asarray(rc.is_valid())
    for key, field in (("cause_component", "component"), ("cause_fault_mode", "fault_mode")):
        values = rc.field(field).to_pandas().astype(object)
        inc[key] = values.where(valid & values.notna().to_numpy(), None)
    inc["faults"] = faults.astype(object).where(faults.notna(), None)
    inc["_loc"] = [f"line {lineno}" for lineno in linenos]
    obs = _flatten(lists["observations"][0], n, 0, ("symptom", "value", "p_fired", "p_passed", "time"))
    acts = _flatten(lists["actions"][0], n, 0, ("action", "target", "time", "outcome"))
    return inc[list(RAW_INCIDENT_COLUMNS)], obs, acts


_SURROGATE = re.compile("[\udc80-\udcff]")  # an invalid UTF-8 byte, kept by errors="surrogateescape"


def _bad_utf8(rec: Any, line: str) -> tuple[str, str, str]:
    """(field, value, reason) of a record holding bytes that are not UTF-8: set aside, never scored with a changed id."""
    field = "(line)"
    if isinstance(rec, Mapping):
        field = next((k for k, v in rec.items() if _SURROGATE.search(json.dumps(v, ensure_ascii=False))), field)
    value = line.strip().encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    where = _SURROGATE.search(line).start()
    return field, value, f"holds bytes that are not valid UTF-8 (first at character {where})"


def _lines(fh, path: Path, rejects: list[Reject]):
    """Number the lines; a compressed file that ends early becomes a reject, not a crash.

    Invalid UTF-8 bytes are kept as lone surrogates (``surrogateescape``) so
    that validation sets the record aside instead of scoring a changed id.
    """
    import zlib

    lineno = 0
    try:
        for lineno, line in enumerate(fh, start=1):  # noqa: B007 (used after the loop)
            yield lineno, line
    except (EOFError, zlib.error, OSError) as exc:
        rejects.append(
            Reject(
                str(path),
                f"line {lineno + 1}",
                None,
                "(file)",
                "",
                f"the compressed file is truncated or corrupt after line {lineno} ({exc}); nothing after it can be read",
            )
        )


def _finish(raw: _Raw, rejects: list[Reject], source: str):
    frame, more = frame_from_raw(*raw.frames(), source=source)
    return frame, rejects + more


# --------------------------------------------------------------------------- Parquet
def _parquet_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.parquet")) if path.is_dir() else [path]


_PARQUET_KINDS = {
    "id": ("string",),
    "topology": ("string",),
    "faults": ("string",),
    "opened": ("timestamp", "string"),
    "resolved": ("timestamp", "string"),
    "root_cause": ("struct",),
    "observations": ("list",),
    "actions": ("list",),
}
_PARQUET_EXPECTED = {
    "string": "a string",
    "timestamp": "a timestamp (or an ISO 8601 string)",
    "struct": "a struct {component, fault_mode}",
    "list": "a list of structs",
}


def _kind(typ) -> str:
    import pyarrow as pa

    if pa.types.is_null(typ):
        return "null"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "string"
    if pa.types.is_timestamp(typ):
        return "timestamp"
    if pa.types.is_struct(typ):
        return "struct"
    if (pa.types.is_list(typ) or pa.types.is_large_list(typ)) and pa.types.is_struct(typ.value_type):
        return "list"
    return str(typ)


def _open_parquet(file: Path):
    """Open a Parquet part and check its schema; a file that cannot be an incident log is one clear error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(file)
        schema = pf.schema_arrow
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise IncidentLogError(f"{file}: cannot read Parquet: {exc}") from None
    missing = [c for c in ("id", "opened") if c not in schema.names]
    if missing:
        raise IncidentLogError(
            f"{file}: not an incident log: no column {missing[0]!r} (columns: {schema.names}); "
            "see docs/incidents.md for the Parquet layout"
        )
    for name, allowed in _PARQUET_KINDS.items():
        if name in schema.names:
            kind = _kind(schema.field(name).type)
            if kind != "null" and kind not in allowed:
                raise IncidentLogError(
                    f"{file}: column {name!r} has type {schema.field(name).type}; "
                    f"expected {' or '.join(_PARQUET_EXPECTED[a] for a in allowed)}"
                )
    return pf


def _iter_parquet(path: Path, chunk_size: int, skip: int):
    files = [(file, _open_parquet(file)) for file in _parquet_files(path)]  # every file checked before any work
    seen = 0
    pending: list = []
    pending_rows = 0
    for file, pf in files:
        rows = pf.metadata.num_rows
        if seen + rows <= skip:
            seen += rows
            continue
        for batch in pf.iter_batches(batch_size=chunk_size):
            start = seen
            seen += batch.num_rows
            if seen <= skip:
                continue
            if start < skip:
                batch = batch.slice(skip - start)
                start = skip
            pending.append((str(file), start, batch))
            pending_rows += batch.num_rows
            while pending_rows >= chunk_size:
                chunk, pending, pending_rows = _take(pending, chunk_size)
                yield _parquet_chunk(chunk)
    if pending_rows:
        yield _parquet_chunk(pending)


def _take(pending, k):
    out, rest, need = [], [], k
    for src, start, batch in pending:
        if need == 0:
            rest.append((src, start, batch))
        elif batch.num_rows <= need:
            out.append((src, start, batch))
            need -= batch.num_rows
        else:
            out.append((src, start, batch.slice(0, need)))
            rest.append((src, start + need, batch.slice(need)))
            need = 0
    return out, rest, sum(b.num_rows for _, _, b in rest)


def _parquet_chunk(parts):
    incs, obss, actss, offset = [], [], [], 0
    source = parts[0][0]
    for src, start, batch in parts:
        n = batch.num_rows
        cols = {name: batch.column(name) for name in batch.schema.names}
        inc = pd.DataFrame({c: _col(cols, c, n) for c in ("id", "opened", "resolved", "topology", "faults")})
        rc = cols.get("root_cause")
        if rc is not None:
            inc["cause_component"] = rc.field("component").to_pandas(types_mapper=None) if rc.null_count < n else None
            inc["cause_fault_mode"] = rc.field("fault_mode").to_pandas() if rc.null_count < n else None
            valid = np.asarray(rc.is_valid())
            inc.loc[~valid, ["cause_component", "cause_fault_mode"]] = None
        else:
            inc["cause_component"] = None
            inc["cause_fault_mode"] = None
        inc["_loc"] = [f"row {start + k + 1}" for k in range(n)]
        incs.append(inc)
        obss.append(_flatten(cols.get("observations"), n, offset, ("symptom", "value", "p_fired", "p_passed", "time")))
        actss.append(_flatten(cols.get("actions"), n, offset, ("action", "target", "time", "outcome")))
        offset += n
        source = src
    inc = pd.concat(incs, ignore_index=True)[list(RAW_INCIDENT_COLUMNS)]
    obs = pd.concat(obss, ignore_index=True)
    acts = pd.concat(actss, ignore_index=True)
    return frame_from_raw(inc, obs, acts, source=source)


def _col(cols, name, n):
    if name not in cols:
        return pd.Series([None] * n, dtype=object)
    return cols[name].to_pandas()


def _flatten(col, n: int, offset: int, fields: Sequence[str]) -> pd.DataFrame:
    if col is None or not hasattr(col, "offsets"):  # absent, or an all-null column
        return pd.DataFrame({"_i": pd.Series(dtype=np.int64), **{f: pd.Series(dtype=object) for f in fields}})
    offsets = np.asarray(col.offsets)
    counts = np.diff(offsets)
    values = col.flatten()
    out = {"_i": np.repeat(np.arange(n), counts) + offset}
    for f in fields:
        try:
            out[f] = values.field(f).to_pandas()
        except KeyError:
            out[f] = pd.Series([None] * len(values), dtype=object)
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- CSV
def _csv_paths(path: Path) -> dict[str, Path]:
    if path.is_dir() or not path.name.lower().endswith(".csv"):
        return {t: path / f"{t}.csv" for t in ("incidents", "observations", "actions")}
    stem = path.name[: -len(".csv")]
    return {
        "incidents": path,
        "observations": path.parent / f"{stem}.observations.csv",
        "actions": path.parent / f"{stem}.actions.csv",
    }


def _read_csv(p: Path, **kw):
    try:
        return pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""], **kw)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise IncidentLogError(f"{p}: cannot read CSV: {exc}") from None


def _iter_csv(path: Path, chunk_size: int, skip: int):
    paths = _csv_paths(path)
    if not paths["incidents"].exists():
        raise IncidentLogError(f"{paths['incidents']}: file not found")
    long = {}
    for kind in ("observations", "actions"):
        p = paths[kind]
        df = _read_csv(p) if p.exists() else pd.DataFrame({"incident_id": pd.Series(dtype=object)})
        if "incident_id" not in df:
            raise IncidentLogError(f"{p}: missing column 'incident_id'; columns: {list(df.columns)}")
        df["_row"] = np.arange(2, len(df) + 2)
        long[kind] = df
    orphans = _orphans(paths, long)
    reader = _read_csv(paths["incidents"], chunksize=chunk_size, skiprows=range(1, skip + 1))
    start = skip
    if skip and orphans:
        orphans = []  # already set aside with the first chunk
    for chunk in reader:
        chunk = chunk.reset_index(drop=True)
        if "id" not in chunk:
            raise IncidentLogError(f"{paths['incidents']}: missing column 'id'; columns: {list(chunk.columns)}")
        n = len(chunk)
        inc = pd.DataFrame(
            {
                c: chunk[c] if c in chunk else pd.Series([None] * n, dtype=object)
                for c in RAW_INCIDENT_COLUMNS
                if c != "_loc"
            }
        )
        inc["_loc"] = [f"row {start + k + 1}" for k in range(n)]
        first = ~chunk["id"].duplicated()
        pos = pd.Series(np.flatnonzero(first.to_numpy()), index=chunk["id"][first])
        obs = long["observations"]
        obs = obs[obs["incident_id"].isin(pos.index)]
        o = pd.DataFrame({"_i": pos.reindex(obs["incident_id"]).to_numpy()})
        for c in ("symptom", "value", "p_fired", "p_passed", "time"):
            o[c] = obs[c].to_numpy() if c in obs else None
        acts = long["actions"]
        acts = acts[acts["incident_id"].isin(pos.index)]
        if "seq" in acts:
            acts = acts.assign(_s=pd.to_numeric(acts["seq"], errors="coerce")).sort_values(
                ["incident_id", "_s"], kind="stable"
            )
        a = pd.DataFrame({"_i": pos.reindex(acts["incident_id"]).to_numpy()})
        for c in ("action", "target", "time", "outcome"):
            a[c] = acts[c].to_numpy() if c in acts else None
        start += n
        frame, rejects = frame_from_raw(
            inc, o, a.sort_values("_i", kind="stable").reset_index(drop=True), source=str(paths["incidents"])
        )
        yield frame, orphans + rejects
        orphans = []
    if orphans:  # an incidents table without rows: the orphans still count
        yield IncidentFrame.empty(), orphans


def _orphans(paths: dict[str, Path], long: dict[str, pd.DataFrame]) -> list[Reject]:
    """Observation and action rows whose incident id is not in the incidents table: rejects, never a silent drop."""
    ids = _read_csv(paths["incidents"], usecols=lambda c: c == "id")
    known = pd.Index(ids["id"].dropna().unique()) if "id" in ids else pd.Index([])
    out = []
    for kind in ("observations", "actions"):
        df = long[kind]
        bad = ~df["incident_id"].isin(known).to_numpy()
        for iid, row in zip(df["incident_id"].to_numpy()[bad], df["_row"].to_numpy()[bad]):
            out.append(
                Reject(
                    str(paths[kind]),
                    f"row {int(row) - 1}",
                    iid if isinstance(iid, str) else None,
                    "incident_id",
                    short_repr(iid),
                    f"no incident with this id in {paths['incidents'].name}; the {kind[:-1]} row is set aside",
                )
            )
    return out


# --------------------------------------------------------------------------- writing
def _iso(values) -> np.ndarray:
    """ISO 8601 UTC strings (``...Z``) for a datetime column; None for NaT."""
    arr = (
        pd.to_datetime(values, utc=True).to_numpy(dtype="datetime64[ns]")
        if len(values)
        else np.array([], dtype="datetime64[ns]")
    )
    text = np.datetime_as_string(arr, unit="ms", timezone="UTC").astype(object)
    text[np.isnat(arr)] = None
    return text


def _json_str(values) -> np.ndarray:
    """JSON-encode each value (strings escaped once per distinct value)."""
    s = pd.Series(values, dtype=object)
    uniq = pd.unique(s)
    enc = {u: json.dumps(u) if u is not None and u == u else "null" for u in uniq}
    return s.map(enc).to_numpy(dtype=object)


def _group_join(ids_of_rows: np.ndarray, parts: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per incident, the rows' JSON fragments joined with commas (incident order kept)."""
    out = np.full(len(ids), "", dtype=object)
    if len(parts):
        joined = pd.Series(parts).groupby(ids_of_rows, sort=False).agg(",".join)
        where = pd.Index(ids).get_indexer(joined.index)
        out[where] = joined.to_numpy()
    return out


def _jsonl_lines(frame: IncidentFrame) -> np.ndarray:
    inc, obs, acts = frame.incidents, frame.observations, frame.actions
    ids = inc["id"].to_numpy(dtype=object)
    # observations
    t = _iso(obs["time"])
    soft = (obs["value"] == "soft").to_numpy()
    o = '{"symptom":' + _json_str(obs["symptom"]) + ',"value":' + _json_str(obs["value"])
    if soft.any():
        lik = np.full(len(obs), "", dtype=object)
        lik[soft] = [
            f',"p_fired":{json.dumps(float(a))},"p_passed":{json.dumps(float(b))}'
            for a, b in zip(obs["p_fired"].to_numpy()[soft], obs["p_passed"].to_numpy()[soft])
        ]
        o = o + lik
    o = o + np.where(pd.isna(t), "", ',"time":"' + t.astype(str) + '"').astype(object) + "}"
    obs_json = _group_join(obs["incident_id"].to_numpy(dtype=object), np.asarray(o, dtype=object), ids)
    # actions
    if len(acts):
        ta = _iso(acts["time"])
        a = (
            '{"action":'
            + _json_str(acts["action"])
            + ',"target":'
            + _json_str(acts["target"])
            + ',"outcome":'
            + _json_str(acts["outcome"])
        )
        a = a + np.where(pd.isna(ta), "", ',"time":"' + ta.astype(str) + '"').astype(object) + "}"
        act_json = _group_join(acts["incident_id"].to_numpy(dtype=object), np.asarray(a, dtype=object), ids)
    else:
        act_json = np.full(len(ids), "", dtype=object)
    opened, resolved = _iso(inc["opened"]), _iso(inc["resolved"])
    cc, cm = inc["cause_component"].to_numpy(dtype=object), inc["cause_fault_mode"].to_numpy(dtype=object)
    cause = np.where(
        pd.isna(cc), "null", '{"component":' + _json_str(cc) + ',"fault_mode":' + _json_str(cm) + "}"
    ).astype(object)
    faults = inc["faults"].to_numpy(dtype=object)
    fault_json = np.array(
        [
            ""
            if f is None
            else ',"faults":['
            + ",".join(f'{{"component":{json.dumps(c)},"fault_mode":{json.dumps(m)}}}' for c, m in _split_faults(f))
            + "]"
            for f in faults
        ],
        dtype=object,
    )
    return (
        '{"id":' + _json_str(ids) + ',"opened":' + _json_str(opened) + ',"resolved":' + _json_str(resolved)
        + ',"topology":' + _json_str(inc["topology"]) + ',"root_cause":' + cause + fault_json
        + ',"observations":[' + obs_json + '],"actions":[' + act_json + "]}\n"
    )  # fmt: skip


def _split_faults(text: str):
    if text == NO_FAULT or not text:
        return []
    return [tuple(x.split(":", 1)) for x in text.split("|")]


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def _write_text(path: Path, chunks) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, chunks)


def _arrow_table(frame: IncidentFrame):
    import pyarrow as pa

    inc, obs, acts = frame.incidents, frame.observations, frame.actions
    n = len(inc)
    index = pd.Index(inc["id"])
    ts = pa.timestamp("ns", tz="UTC")

    def lists(df, fields):
        pos = index.get_indexer(df["incident_id"])
        order = np.argsort(pos, kind="stable")
        counts = np.bincount(pos, minlength=n)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        arrays = []
        for name, typ in fields:
            col = df[name].iloc[order]
            arrays.append(pa.array(col.to_numpy() if typ != ts else col, type=typ, from_pandas=True))
        struct = pa.StructArray.from_arrays(arrays, names=[f for f, _ in fields])
        return pa.ListArray.from_arrays(pa.array(offsets), struct)

    cause_valid = inc["cause_component"].notna().to_numpy()
    root = pa.StructArray.from_arrays(
        [
            pa.array(inc["cause_component"].to_numpy(), type=pa.string(), from_pandas=True),
            pa.array(inc["cause_fault_mode"].to_numpy(), type=pa.string(), from_pandas=True),
        ],
        names=["component", "fault_mode"],
        mask=pa.array(~cause_valid),
    )
    return pa.table(
        {
            "id": pa.array(inc["id"].to_numpy(), type=pa.string()),
            "opened": pa.array(inc["opened"], type=ts),
            "resolved": pa.array(inc["resolved"], type=ts, from_pandas=True),
            "topology": pa.array(inc["topology"].to_numpy(), type=pa.string()),
            "root_cause": root,
            "faults": pa.array(inc["faults"].to_numpy(), type=pa.string(), from_pandas=True),
            "observations": lists(
                obs,
                [
                    ("symptom", pa.string()),
                    ("value", pa.string()),
                    ("p_fired", pa.float64()),
                    ("p_passed", pa.float64()),
                    ("time", ts),
                ],
            ),
            "actions": lists(
                acts, [("action", pa.string()), ("target", pa.string()), ("outcome", pa.string()), ("time", ts)]
            ),
        }
    )


def write_incidents(
    frames: IncidentFrame | Iterable[IncidentFrame],
    path: str | os.PathLike,
    *,
    format: str | None = None,
    row_group_size: int = 10_000,
) -> Path:
    """Write incidents as JSON Lines, Parquet or CSV (three tables), atomically.

    Parameters
    ----------
    frames : IncidentFrame or iterable of IncidentFrame
        One frame, or a stream of frames written one after another (memory
        stays flat, e.g. ``iter_simulate(...)``).
    path : path-like
        ``*.jsonl``, ``*.parquet``, or for CSV a folder (or ``NAME.csv``).
    format : {"jsonl", "parquet", "csv"}, optional
        Overrides the suffix (needed for a new CSV folder).
    row_group_size : int, default 10000
        Parquet row-group size: the unit of work when the log is scored.
    """
    path = Path(path)
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise IncidentLogError(f"format must be one of {list(FORMATS)}. Got {fmt!r} instead.")
    stream = [frames] if isinstance(frames, IncidentFrame) else frames
    if fmt == "jsonl":
        _write_text(path, (_jsonl_chunk(f) for f in stream))
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        def write(tmp):
            writer = None
            for f in stream:
                table = _arrow_table(f)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table, row_group_size=row_group_size)
            if writer is None:
                pq.write_table(_arrow_table(IncidentFrame.empty()), tmp)
            else:
                writer.close()

        _atomic(path, write)
    else:
        paths = _csv_paths(path)
        if path.suffix.lower() != ".csv":
            path.mkdir(parents=True, exist_ok=True)
        tmps = {}
        try:
            for kind, p in paths.items():
                tmps[kind] = temporary_beside(p)
            handles = {k: open(t, "w", encoding="utf-8") for k, t in tmps.items()}
            try:
                first = True
                for f in stream:
                    for kind, df in (
                        ("incidents", f.incidents),
                        ("observations", f.observations),
                        ("actions", f.actions),
                    ):
                        df = df.copy()
                        for c in df.columns:
                            if isinstance(df[c].dtype, pd.DatetimeTZDtype):
                                df[c] = _iso(df[c])
                        handles[kind].write(df.to_csv(index=False, header=first))
                    first = False
                if first:
                    for kind, cols in (
                        ("incidents", INCIDENT_COLUMNS),
                        ("observations", OBSERVATION_COLUMNS),
                        ("actions", ACTION_COLUMNS),
                    ):
                        handles[kind].write(",".join(cols) + "\n")
            finally:
                for h in handles.values():
                    h.close()
            for kind, p in paths.items():
                os.replace(tmps.pop(kind), p)
        finally:
            for t in tmps.values():
                Path(t).unlink(missing_ok=True)
    return path


def _jsonl_chunk(frame: IncidentFrame) -> str:
    return "".join(_jsonl_lines(frame)) if len(frame) else ""


def write_rejects(rejects: Sequence[Reject], path: str | os.PathLike) -> Path:
    """Write rejects as JSON Lines (source, location, incident_id, field, value, reason), atomically."""
    path = Path(path)
    _write_text(path, (json.dumps(r.to_dict()) + "\n" for r in rejects))
    return path
