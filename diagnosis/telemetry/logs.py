"""Application logs as evidence: readers, a template per log statement, and the log detectors.

A log table has one row per line:

=============  ===================  ==================================================
column         dtype                meaning
=============  ===================  ==================================================
``time``       datetime64[ns, UTC]
``entity``     str                  the writing pod or service
``component``  str or None          its topology component
``trace_id``   str or None
``span_id``    str or None          joins the line to the span it was written in
``level``      str                  ``ERROR``, ``WARN``, ``INFO``, ``DEBUG`` (upper case; ``UNKNOWN``)
``template``   str                  a stable key of the log statement
=============  ===================  ==================================================

Input formats (a file or a folder, gzipped or not):

* **Nezha log CSV** (``Timestamp, TimeUnixNano, Node, PodName, Container,
  TraceID, SpanID, Log``): ``Log`` is the container runtime's JSON envelope
  whose ``log`` field holds the application line
  ``HH:MM:SS.mmm LEVEL logger.Class#line ...``. The time is ``TimeUnixNano``
  (the time inside the text is on another clock).
* **OpenTelemetry logs**, OTLP JSON: ``resourceLogs[].scopeLogs[].logRecords[]``
  with ``timeUnixNano``, ``severityText``/``severityNumber``, ``body``,
  ``traceId``, ``spanId``; the entity is the resource's ``k8s.pod.name``,
  else ``service.name``.
* **Elastic Common Schema JSON Lines**: ``@timestamp``, ``log.level``,
  ``message``, ``trace.id``, ``span.id``, ``service.name`` (dotted keys or
  nested objects), optionally ``log.logger`` and ``log.origin.file.line``.

**Templates.** Where the line names its statement (``logger.Class#line``
in the text, or ECS ``log.logger`` with ``log.origin.file.line``) that is the
key; otherwise the message is mined with Drain (the ``drain3`` package) and
the key is the cluster's template text. Malformed rows (not JSON, no time, no
entity) are counted and set aside; repeated lines (overlapping minute files:
same entity, time, span and text) are dropped and counted.

**Detectors** (:func:`log_evidence`). For every (component, operation) --
the operation is that of the span the line was written in, when spans are
given -- the count of each template in the incident window is compared
with the reference (a fault-free reference, else the window's baseline),
scaled by the number of spans (or of log-writing spans) in each:

* ``log_errors``: an ERROR/WARN (or FATAL) template that appears or rises;
* ``log_missing``: a template the reference writes regularly that stops
  appearing (the code path it sits on is no longer taken).

**Errors are blamed where they start** (when spans are given). A span is
*abnormal* when it failed, wrote an ERROR/WARN template its operation never
wrote in the reference, or lacks a *log invariant* of its operation (a
template that at least 90 % of at least ten reference spans of the
operation wrote). A span of another component above an abnormal span, at
any depth, is an *echo*: it reports a failure that started below it (the
caller's catch block, its failed request). Its ERROR/WARN lines are counted
on its deepest abnormal span, as the template ``<writer>: <template>`` of
that span's (component, operation); its other lines and the span itself are
set aside. The reference is treated the same way against its own
patterns, so what fault-free traffic echoes is expected. A faulty callee
that writes nothing but skips its usual lines thus gets its callers' error
lines as its own ``log_errors``; the callers keep only what they write
about calls that went well.

The expected count is ``e = n_W * (c_R + 0.5) / (n_R + 1)``; the deviation
``(c_W - e) / sqrt(phi * e)`` is a quasi-Poisson z-score whose dispersion
``phi`` is estimated from all the templates of the same window (the median
Pearson residual, so ordinary traffic shifts do not look like faults; 1 when
the window has fewer than ten templates), and
its one-sided normal p-value, Šidák-corrected for the templates tested on
the component, is the symptom's p-value.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from diagnosis._time import parse_times
from diagnosis.exceptions import TelemetryError
from diagnosis.telemetry._io import as_paths, objects, open_text, read_csv_rows, to_timedelta
from diagnosis.telemetry.entities import EntityMap
from diagnosis.telemetry.quality import ReadReport, _Tally

__all__ = ["LOG_COLUMNS", "LOG_RULES", "LogReference", "LogSet", "log_evidence", "logs_from_frame", "read_logs"]

LOG_COLUMNS = ("time", "entity", "component", "trace_id", "span_id", "level", "template")
#: The log detectors: rule name -> the ``watches`` of the topology detector it feeds.
LOG_RULES = {"log_errors": "log_errors", "log_missing": "log_missing"}
_PATTERNS = ("*.csv", "*.csv.gz", "*.json", "*.json.gz", "*.jsonl", "*.jsonl.gz", "*.ndjson", "*.ndjson.gz", "*.log")
_LEVELS = {
    "WARNING": "WARN",
    "WARN": "WARN",
    "ERROR": "ERROR",
    "ERR": "ERROR",
    "FATAL": "ERROR",
    "CRITICAL": "ERROR",
    "SEVERE": "ERROR",
    "INFO": "INFO",
    "DEBUG": "DEBUG",
    "TRACE": "DEBUG",
}
#: Templates a window needs before its over-dispersion is estimated (else Poisson, phi = 1).
MIN_TEMPLATES = 10
#: A log invariant: a template written by at least this share of at least MIN_INVARIANT_SPANS reference
#: spans of an operation (a tolerance for lines lost or joined to another span); a span without it is abnormal.
INVARIANT_SHARE = 0.9
MIN_INVARIANT_SPANS = 10
_LINE = re.compile(r"^\s*\S+\s+(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL)\s+(\S+#\d+)\b")
_LEVEL_WORD = re.compile(r"\b(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL|CRITICAL)\b")


@dataclass(frozen=True)
class LogSet:
    """Log lines (columns :data:`LOG_COLUMNS`) and the reader's report."""

    lines: pd.DataFrame
    report: ReadReport

    def __len__(self) -> int:
        return len(self.lines)


def _level(text) -> str:
    if text is None:
        return "UNKNOWN"
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        n = int(text)  # OTLP severityNumber: 1-4 trace, 5-8 debug, 9-12 info, 13-16 warn, 17-24 error/fatal
        return "ERROR" if n >= 17 else "WARN" if n >= 13 else "INFO" if n >= 9 else "DEBUG" if n >= 1 else "UNKNOWN"
    return _LEVELS.get(str(text).strip().upper(), "UNKNOWN")


def _get(obj: dict, dotted: str):
    """ECS field by dotted key or nested objects."""
    if dotted in obj:
        return obj[dotted]
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _attr(attrs, key: str):
    for a in attrs or ():
        if isinstance(a, dict) and a.get("key") == key:
            v = a.get("value") or {}
            return next((str(x) for x in v.values() if x is not None), None) if isinstance(v, dict) else str(v)
    return None


def _body(b) -> str:
    if isinstance(b, dict):
        return str(next((x for x in b.values() if x is not None), ""))
    return "" if b is None else str(b)


def _nezha_rows(path, header, good, bad, numbers, tally, rows):
    col = {h.lower(): i for i, h in enumerate(header)}
    need = ("podname", "log")
    if any(c not in col for c in need) or ("timeunixnano" not in col and "timestamp" not in col):
        raise TelemetryError(
            f"{path}: a log CSV needs PodName, Log and TimeUnixNano or Timestamp columns; got {header}"
        )
    for row_no, row in bad:
        tally.reject(
            str(path), f"row {row_no}", "(row)", ",".join(row), f"has {len(row)} fields; the header has {len(header)}"
        )
    tcol = col.get("timeunixnano", col.get("timestamp"))
    for r, no in zip(good, numbers):
        raw = r[col["log"]]
        try:
            env = json.loads(raw)
            text = env.get("log") if isinstance(env, dict) else None
        except ValueError:
            text = None
        if not isinstance(text, str):
            if raw.strip() and not raw.lstrip().startswith("{"):
                text = raw  # a plain line with no envelope
            else:
                tally.reject(str(path), f"row {no}", "Log", raw, "is not the container runtime's JSON envelope")
                continue
        rows.append(
            (r[tcol], r[col["podname"]], r[col["traceid"]] if "traceid" in col else None,
             r[col["spanid"]] if "spanid" in col else None, None, text.rstrip("\n"), None, str(path), f"row {no}")
        )  # fmt: skip


def _json_rows(path, tally, rows) -> int:
    n = 0
    try:
        with open_text(path) as fh:
            text = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise TelemetryError(f"{path}: cannot read the file: {exc}") from None
    stripped = text.lstrip()
    docs = []
    if stripped.startswith("{") and '"resourceLogs"' in stripped[:2000]:
        try:
            docs = [(1, json.loads(text))]
        except ValueError:
            docs = None
    if not docs:
        docs = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                docs.append((i, json.loads(line)))
            except ValueError:
                n += 1
                tally.reject(str(path), f"line {i}", "(line)", line, "is not JSON")
    for i, doc in docs:
        if not isinstance(doc, dict):
            n += 1
            tally.reject(str(path), f"line {i}", "(line)", doc, "is not a JSON object")
            continue
        if "resourceLogs" in doc:
            for rl in doc.get("resourceLogs") or ():
                attrs = (rl.get("resource") or {}).get("attributes") if isinstance(rl, dict) else None
                ent = _attr(attrs, "k8s.pod.name") or _attr(attrs, "service.name")
                for sl in (rl.get("scopeLogs") or ()) if isinstance(rl, dict) else ():
                    for k, rec in enumerate((sl.get("logRecords") or ()) if isinstance(sl, dict) else ()):
                        n += 1
                        if not isinstance(rec, dict):
                            tally.reject(str(path), f"line {i} record {k + 1}", "(record)", rec, "is not a JSON object")
                            continue
                        lvl = rec.get("severityText") or rec.get("severityNumber")
                        rows.append(
                            (rec.get("timeUnixNano") or rec.get("observedTimeUnixNano"), ent, rec.get("traceId"),
                             rec.get("spanId"), lvl, _body(rec.get("body")), None, str(path), f"line {i} record {k + 1}")
                        )  # fmt: skip
            continue
        n += 1
        logger, line_no = _get(doc, "log.logger"), _get(doc, "log.origin.file.line")
        key = f"{logger}#{line_no}" if logger and line_no is not None else None
        ent = _get(doc, "kubernetes.pod.name") or _get(doc, "service.name") or _get(doc, "host.name")
        rows.append(
            (_get(doc, "@timestamp"), ent, _get(doc, "trace.id"), _get(doc, "span.id"), _get(doc, "log.level"),
             str(_get(doc, "message") or ""), key, str(path), f"line {i}")
        )  # fmt: skip
    return n


def read_logs(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    entity_map: EntityMap | None = None,
    time_offset: str | pd.Timedelta | None = None,
    max_examples: int = 100,
) -> LogSet:
    """Read log files (Nezha CSV, OTLP JSON, ECS JSON Lines) into one log table.

    Parameters
    ----------
    paths : path, folder, or list of them
        A folder is read whole (``*.csv``, ``*.json``, ``*.jsonl``, ``*.ndjson``, ``*.log``
        and their ``.gz``), in name order.
    entity_map : EntityMap, optional
        Entity -> component; default the Kubernetes pod rule.
    time_offset : duration, optional
        Added to every time.

    Returns
    -------
    LogSet

    Raises
    ------
    TelemetryError
        A path that does not exist, an unreadable file, a CSV without the log columns.
    """
    try:
        files = as_paths(paths, patterns=_PATTERNS)
    except TelemetryError:
        raise
    except Exception as exc:  # as_paths raises DiagnosisError
        raise TelemetryError(str(exc)) from None
    tally = _Tally(max_examples)
    rows: list[tuple] = []
    read, skipped = [], {}
    n_rows = 0
    for path in files:
        name = path.name.lower().removesuffix(".gz")
        if name.endswith((".json", ".jsonl", ".ndjson", ".log")):
            n_rows += _json_rows(path, tally, rows)
        else:
            try:
                header, good, bad, numbers = read_csv_rows(path)
            except TelemetryError:
                raise
            except Exception as exc:
                raise TelemetryError(str(exc)) from None
            if not header:
                skipped[str(path)] = "empty file"
                continue
            _nezha_rows(path, header, good, bad, numbers, tally, rows)
            n_rows += len(good) + len(bad)
        read.append(str(path))
    return _finish(rows, read, n_rows, tally, skipped, entity_map, time_offset)


def logs_from_frame(df: pd.DataFrame, *, entity_map: EntityMap | None = None) -> LogSet:
    """An in-memory log table (``time``, ``entity``, ``message``; optional ``level``, ``trace_id``,
    ``span_id``, ``template``) normalised like :func:`read_logs`."""
    for c in ("time", "entity", "message"):
        if c not in df:
            raise TelemetryError(f"a log table needs the columns time, entity, message; missing {c!r}")

    def col(c):
        return df[c].tolist() if c in df else [None] * len(df)

    rows = list(
        zip(col("time"), col("entity"), col("trace_id"), col("span_id"), col("level"), col("message"),
            col("template"), ["(frame)"] * len(df), [f"row {i + 1}" for i in range(len(df))])
    )  # fmt: skip
    return _finish(rows, ["(frame)"], len(df), _Tally(), {}, entity_map, None)


def _finish(rows, files, n_rows, tally, skipped, entity_map, time_offset) -> LogSet:
    entity_map = entity_map or EntityMap.default()
    raw = pd.DataFrame(rows, columns=["time", "entity", "trace_id", "span_id", "level", "text", "key", "_src", "_loc"])
    t, bad_t = parse_times(raw["time"])
    bad_t = bad_t | t.isna().to_numpy()
    ent_ok = np.array([isinstance(e, str) and e.strip() != "" for e in raw["entity"]], dtype=bool)
    for i in np.flatnonzero(bad_t):
        tally.reject(
            raw["_src"].iat[i], raw["_loc"].iat[i], "time", raw["time"].iat[i], "is not a time (epoch or ISO 8601)"
        )
    for i in np.flatnonzero(~ent_ok & ~bad_t):
        tally.reject(
            raw["_src"].iat[i], raw["_loc"].iat[i], "entity", raw["entity"].iat[i], "is required (pod or service name)"
        )
    keep = ~bad_t & ent_ok
    raw = raw[keep].reset_index(drop=True)
    raw["time"] = t[keep].reset_index(drop=True)
    if time_offset is not None:
        raw["time"] = raw["time"] + to_timedelta(time_offset, "time_offset")
    text = raw["text"].astype(str).to_numpy(dtype=object)
    level = np.array([_level(v) for v in raw["level"]], dtype=object)
    key = raw["key"].to_numpy(dtype=object).copy()
    need_mine = []
    for i, s in enumerate(text):
        if key[i] is None or (isinstance(key[i], float) and np.isnan(key[i])):
            m = _LINE.match(s)
            if m:
                key[i] = m.group(2)
                if level[i] == "UNKNOWN":
                    level[i] = _level(m.group(1))
            else:
                key[i] = None
                need_mine.append(i)
        if level[i] == "UNKNOWN":
            m = _LEVEL_WORD.search(s[:80])
            if m:
                level[i] = _level(m.group(1))
    if need_mine:
        key[need_mine] = _mine([text[i] for i in need_mine])
    out = pd.DataFrame(
        {
            "time": raw["time"].astype("datetime64[ns, UTC]"),
            "entity": objects(raw["entity"].astype(str).str.strip()),
            "trace_id": objects(raw["trace_id"].map(lambda x: x if isinstance(x, str) and x else None)),
            "span_id": objects(raw["span_id"].map(lambda x: x if isinstance(x, str) and x else None)),
            "level": objects(level),
            "template": objects(key),
            "_text": text,
        }
    )
    dup = out.duplicated(["entity", "time", "span_id", "_text"], keep="first").to_numpy()
    out = out[~dup].drop(columns="_text").sort_values("time", kind="stable").reset_index(drop=True)
    out.insert(2, "component", objects(entity_map.map(out["entity"])))
    report = ReadReport(
        files=tuple(files),
        rows=n_rows,
        malformed=tally.malformed,
        bad_values=tally.bad_values,
        duplicates=int(dup.sum()),
        by_reason=Counter(tally.reasons),
        examples=tuple(tally.examples),
        skipped_files=skipped,
        unmapped_entities=tuple(sorted(out.loc[out["component"].isna(), "entity"].unique())),
        notes=(f"{len(need_mine)} lines with no statement key: templates mined with Drain",) if need_mine else (),
    )
    return LogSet(out[list(LOG_COLUMNS)], report)


def _mine(messages: list[str]) -> list[str]:
    """Drain templates (``drain3``) of messages that carry no statement key."""
    try:
        from drain3 import TemplateMiner
        from drain3.template_miner_config import TemplateMinerConfig
    except ImportError as exc:  # pragma: no cover - drain3 is a dependency
        raise TelemetryError(f"mining log templates needs the drain3 package: {exc}") from None
    cfg = TemplateMinerConfig()
    cfg.profiling_enabled = False
    miner = TemplateMiner(config=cfg)
    ids = [miner.add_log_message(m)["cluster_id"] for m in messages]
    templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    return [f"drain:{templates.get(i, i)}" for i in ids]


def _own_lines(logs: pd.DataFrame, spans: pd.DataFrame) -> pd.DataFrame:
    """Lines joined to a span of their own component: ``span_id``, ``component``, ``operation``, ``template``, ``level``."""
    sp = spans.drop_duplicates("span_id").set_index("span_id")
    lg = logs[logs["span_id"].isin(sp.index) & logs["component"].notna()]
    lg = lg.assign(operation=lg["span_id"].map(sp["operation"]).fillna("(none)"), _c=lg["span_id"].map(sp["component"]))
    return lg[lg["_c"] == lg["component"]]


def _inside(spans: pd.DataFrame, logs: pd.DataFrame) -> pd.DataFrame:
    """The spans that lie wholly within the time the log lines cover (all their lines can be there)."""
    if not len(logs) or "start" not in spans or "end" not in spans:
        return spans.iloc[:0]
    lo, hi = logs["time"].min(), logs["time"].max()
    return spans[(spans["start"] >= lo) & (spans["end"] <= hi)]


def _abnormal_spans(logs, spans, ref_logs, ref_spans) -> set:
    """Spans whose own logs break the reference's pattern of their (component, operation), or that failed.

    A span is abnormal when it failed (``error`` 1), wrote an ERROR/WARN template its operation
    never wrote in the reference, or lacks a log invariant of its operation: a template
    that at least :data:`INVARIANT_SHARE` of the (at least :data:`MIN_INVARIANT_SPANS`)
    reference spans of the operation wrote.
    Only spans wholly inside the time the lines cover are held to the invariants, in the
    reference and in the window (a span cut by the edge of the recording has lost lines).
    """
    out: set = set()
    if "error" in spans:
        out |= set(spans.loc[spans["error"].to_numpy(dtype=np.float64) == 1.0, "span_id"])
    if ref_spans is None or not len(ref_spans) or ref_logs is None or not len(ref_logs):
        return out
    own, ref = _own_lines(logs, spans), _own_lines(ref_logs, ref_spans)
    seen = set(zip(ref["component"], ref["operation"], ref["template"]))
    bad = own[own["level"].isin(["ERROR", "WARN"])]
    new = [k not in seen for k in zip(bad["component"], bad["operation"], bad["template"])]
    out |= set(bad.loc[np.asarray(new, dtype=bool), "span_id"])
    rs = _inside(ref_spans[ref_spans["component"].notna()].drop_duplicates("span_id"), ref_logs)
    n_ref = rs.groupby(["component", rs["operation"].fillna("(none)")]).size()
    per = ref.drop_duplicates(["span_id", "template"]).groupby(["component", "operation", "template"]).size()
    total = n_ref.reindex(pd.MultiIndex.from_arrays([per.index.get_level_values(0), per.index.get_level_values(1)]))
    inv = per[(per.to_numpy() >= INVARIANT_SHARE * total.to_numpy()) & (total.to_numpy() >= MIN_INVARIANT_SPANS)]
    if len(inv):
        need: dict = {}
        for comp, op, tpl in inv.index:
            need.setdefault((comp, op), set()).add(tpl)
        has = own.groupby("span_id")["template"].agg(set)
        ws = _inside(spans[spans["component"].notna()].drop_duplicates("span_id"), logs)
        for sid, comp, op in zip(ws["span_id"], ws["component"], ws["operation"].fillna("(none)")):
            req = need.get((comp, op))
            if req and not req <= has.get(sid, set()):
                out.add(sid)
    return out


def _attribute(logs: pd.DataFrame, spans: pd.DataFrame, origins: set) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Blame a failure where it started: the logs of spans above an abnormal span of another component.

    Each span above an abnormal span (``origins``) of another component, at any depth, is an
    *echo* span: it reports a failure that started below it. It is claimed by its deepest such
    origin (the deepest abnormal span of the trace). Its ERROR/WARN lines are counted on the
    origin's span, as the template ``<writer>: <template>`` (so an echo is a template of the origin's
    operation); its other lines, and the span itself, are set aside.
    """
    if not origins:
        return logs, spans
    sp = spans.drop_duplicates("span_id")
    parent = dict(zip(sp["span_id"], sp["parent_id"]))
    comp = dict(zip(sp["span_id"], sp["component"]))

    def chain(span):
        seen, up = {span}, parent.get(span)
        while up in parent and up not in seen:  # up the trace to its root (a cycle of ids ends the walk)
            seen.add(up)
            yield up
            up = parent.get(up)

    depth = {o: sum(1 for _ in chain(o)) for o in origins if o in parent}
    claim: dict = {}
    for o in sorted(depth, key=lambda x: (-depth[x], str(x))):
        owner = comp.get(o)
        for up in chain(o):
            if comp.get(up) != owner and up not in claim:
                claim[up] = o
    if not claim:
        return logs, spans
    by = logs["span_id"].map(claim)
    echo = by.notna().to_numpy()
    moved = logs[echo & logs["level"].isin(["ERROR", "WARN"]).to_numpy()]
    o = by[moved.index]
    moved = moved.assign(
        template=(moved["component"].astype(str) + ": " + moved["template"].astype(str)).astype(object),
        component=o.map(comp).astype(object),
        span_id=o.astype(object),
    )
    out = pd.concat([logs[~echo], moved]).sort_values("time", kind="stable")
    return out, spans[~spans["span_id"].isin(claim.keys())]


def _counts(logs: pd.DataFrame, spans: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.Series]:
    """Per (component, operation, template): count, level; per (component, operation): spans."""
    lg = logs[logs["component"].notna()]
    if spans is not None and len(spans):
        op = spans.drop_duplicates("span_id").set_index("span_id")["operation"]
        lg = lg.assign(operation=lg["span_id"].map(op).fillna("(no span)").astype(object))
        sp = spans[spans["component"].notna()]
        n_sp = sp.groupby(["component", sp["operation"].fillna("(none)")]).size()
        n_sp.index = n_sp.index.set_names(["component", "operation"])
        # components whose spans do not carry their logs' span ids: count log-writing spans instead
        nologs = lg.groupby(["component", "operation"])["span_id"].nunique()
        n_sp = n_sp.combine(nologs, max, fill_value=0)
    else:
        lg = lg.assign(operation="(any)")
        n_sp = lg.groupby(["component", "operation"])["span_id"].nunique()
        n_sp = n_sp.where(n_sp > 0, lg.groupby(["component", "operation"]).size())
    c = lg.groupby(["component", "operation", "template"]).agg(count=("time", "size"), level=("level", "first"))
    return c, n_sp


def _table(logs, spans, ref_logs, ref_spans) -> pd.DataFrame | None:
    """Per (component, operation, template): window and reference counts, level, spans; None if nothing to compare."""
    cw, nw = _counts(logs, spans)
    cr, nr = _counts(ref_logs, ref_spans)
    if len(nw.index.intersection(nr.index)) == 0:
        return None
    idx = cw.index.union(cr.index)
    t = pd.DataFrame(index=idx)
    t["c_w"] = cw["count"].reindex(idx).fillna(0.0)
    t["c_r"] = cr["count"].reindex(idx).fillna(0.0)
    t["level"] = cw["level"].reindex(idx).fillna(cr["level"].reindex(idx)).astype(object)
    co = pd.MultiIndex.from_arrays([idx.get_level_values(0), idx.get_level_values(1)])
    t["n_w"] = nw.reindex(co).to_numpy(dtype=np.float64)
    t["n_r"] = nr.reindex(co).to_numpy(dtype=np.float64)
    t = t[(t["n_w"] > 0) & (t["n_r"] > 0)]
    return None if t.empty else t


def _dispersion(t: pd.DataFrame) -> float:
    """Over-dispersion from the window's templates (median of chi2(1) is 0.455); too few to estimate it: Poisson."""
    if len(t) < MIN_TEMPLATES:
        return 1.0
    e = t["n_w"] * (t["c_r"] + 0.5) / (t["n_r"] + 1.0)
    return max(1.0, float(np.median((t["c_w"] - e) ** 2 / e)) / 0.455)


@dataclass(frozen=True)
class LogReference:
    """A log reference prepared once for many windows: its lines and spans, and the same after its own attribution.

    The attribution of the reference (its echoes counted on their origins,
    so that what fault-free traffic normally echoes is expected) depends on
    the reference alone; :func:`log_evidence` against one fixed reference
    (``detect --reference``) prepares it once for every window.
    """

    logs: pd.DataFrame
    spans: pd.DataFrame | None
    echoed_logs: pd.DataFrame
    echoed_spans: pd.DataFrame | None

    @classmethod
    def of(cls, logs: pd.DataFrame, spans: pd.DataFrame | None) -> LogReference:
        if spans is None or not len(spans):
            return cls(logs, spans, logs, spans)
        echoed_logs, echoed_spans = _attribute(logs, spans, _abnormal_spans(logs, spans, logs, spans))
        return cls(logs, spans, echoed_logs, echoed_spans)


def log_evidence(
    logs: pd.DataFrame, spans: pd.DataFrame | None, ref_logs: pd.DataFrame | LogReference,
    ref_spans: pd.DataFrame | None = None, *, min_expected: float = 3.0,
) -> pd.DataFrame:  # fmt: skip
    """Log symptoms of one window against its reference (see the module docstring).

    Parameters
    ----------
    logs, spans : DataFrame
        The window's log lines (:data:`LOG_COLUMNS`) and spans (or None).
    ref_logs, ref_spans : DataFrame
        The reference's (fault-free telemetry, or the baseline); ``ref_logs``
        may be a :class:`LogReference` instead (``ref_spans`` is then unused),
        prepared once for windows that share it.
    min_expected : float, default 3.0
        A template is tested for disappearance only when at least this many
        lines were expected in the window.

    Returns
    -------
    DataFrame
        ``component``, ``rule`` (``log_errors``/``log_missing``), ``score``
        (the z-score), ``p_rule`` (Šidák-corrected over the templates tested
        on the component), ``n_tests``, ``top_signal`` (the template and operation).
    """
    cols = ["component", "rule", "score", "p_rule", "n_tests", "top_signal"]
    ref = ref_logs if isinstance(ref_logs, LogReference) else None
    if logs.empty or (ref.logs if ref is not None else ref_logs).empty:
        return pd.DataFrame({c: [] for c in cols})
    phi = None
    if spans is not None and len(spans):  # echoes of a failure further down the trace are not the caller's symptoms
        # the reference against its own patterns, so that what its own traffic echoes is expected
        ref = ref if ref is not None else LogReference.of(ref_logs, ref_spans)
        raw = _table(logs, spans, ref.logs, ref.spans)
        phi = _dispersion(raw) if raw is not None else None  # a property of the traffic, before any attribution
        origins = _abnormal_spans(logs, spans, ref.logs, ref.spans)
        ref_logs, ref_spans = ref.echoed_logs, ref.echoed_spans
        logs, spans = _attribute(logs, spans, origins)
    elif ref is not None:
        ref_logs, ref_spans = ref.logs, ref.spans
    t = _table(logs, spans, ref_logs, ref_spans)
    if t is None:
        return pd.DataFrame({c: [] for c in cols})
    phi = _dispersion(t) if phi is None else phi
    e = t["n_w"] * (t["c_r"] + 0.5) / (t["n_r"] + 1.0)
    t = t.assign(e=e, z=(t["c_w"] - e) / np.sqrt(phi * e))
    out = []
    err = t[t["level"].isin(["ERROR", "WARN"])]
    miss = t[e >= min_expected]
    for rule, sub, sign in (("log_errors", err, 1.0), ("log_missing", miss, -1.0)):
        if sub.empty:
            continue
        zz = sign * sub["z"]
        for comp, g in zz.groupby(level=0):
            k = len(g)
            i = g.idxmax()
            p1 = float(norm.sf(g.loc[i]))
            p = -np.expm1(k * np.log1p(-min(p1, 1.0 - 1e-16)))
            out.append((comp, rule, float(g.loc[i]), max(p, 1e-300), k, f"{comp} {i[1]} {i[2]} ({rule})"))
    return pd.DataFrame(out, columns=cols)
