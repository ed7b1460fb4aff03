"""The RCAEval benchmark (phamquiluan/RCAEval, Zenodo 10.5281/zenodo.13294048): case folders -> windows and metrics.

**Layout.** A case is a folder holding ``inject_time.txt`` and the case's
metrics as one wide CSV; its label is in the folder names::

    <root>/RE1-OB/adservice_cpu/1/{inject_time.txt, data.csv}
    <root>/RE2-TT/ts-auth-service_delay/2/{inject_time.txt, metrics.csv, simple_metrics.csv, logs.csv, traces.csv}
    <root>/RE3-SS/carts_f1/1/{inject_time.txt, metrics.csv, ...}

``<service>_<fault>`` names the folder above the run number ``<n>`` (or the
case folder itself when its name is not a number); the fault is the part after
the last underscore. ``inject_time.txt`` holds one Unix time in seconds (its
first line), on the clock of the metrics' ``time`` column.

**Metrics file.** The first of ``data.csv`` (RE1), ``simple_metrics.csv`` and
``metrics.csv`` (RE2, RE3) found in the case folder: RCAEval's own evaluation
reads ``data.csv`` and falls back to ``simple_metrics.csv``; ``metrics.csv`` is
the full set. Each is a wide table, a ``time`` column (epoch seconds) then one
``<service>_<metric>`` column per series (``carts_cpu``, ``carts_mem``,
``carts_latency-90``), read by :func:`~diagnosis.telemetry.metrics.read_metrics`.

**Faults** (:data:`RCAEVAL_FAULT_MODES`): ``cpu``, ``mem``, ``disk``,
``socket``, ``delay`` and ``loss`` (RE1, RE2) and the code-level ``f1`` ..
``f5`` (RE3). ``disk`` and ``socket`` have no counterpart among the default
service kind's fault modes: their windows keep the component and get no fault
mode, as :func:`~diagnosis.telemetry.nezha.import_nezha` does for a type it
does not know.

**Separate runs.** Every case is its own run with its own metrics file. Read
them together with :func:`read_rcaeval_metrics`, which refuses files whose
times overlap and windows whose baseline or incident period reaches into
another case's data, so that no case is scored on another's telemetry.

What was checked, and where (not copied):

* ``phamquiluan/RCAEval``, ``main.py``: the case files are found with the globs
  ``**/data.csv`` and, failing that, ``**/simple_metrics.csv``; the service and
  the fault come from the name of the folder two levels above the file
  (``<service>_<fault>``) and the run from the folder above it;
  ``inject_time.txt`` is read as an integer from its first line and compared
  with the ``time`` column; the metric columns are ``<service>_<metric>`` with
  ``_latency-50`` and ``_latency-90``; the faults evaluated are ``cpu``,
  ``mem``, ``disk``, ``socket``, ``delay`` and ``loss``; the RE2 and RE3 data
  folders are ``data/RE2/RE2-OB`` .. ``data/RE3/RE3-TT``, the RE1 ones
  ``data/online-boutique``, ``data/sock-shop-2``, ``data/train-ticket``.
* ``phamquiluan/RCAEval``, ``README.md``: the ``time`` column and the
  ``<service>_<metric>`` column names (``cart_cpu``).
* ``phamquiluan/RCAEval``, ``RCAEval/utility/__init__.py``: one zip per
  system on Zenodo record 14590730 (``RE1-OB.zip`` .. ``RE3-TT.zip``, unpacked
  into ``data/RE1``, ``data/RE2``, ``data/RE3``); ``inject_time.txt`` written as
  ``str(int(epoch seconds))`` and a newline; and ``read_data`` dropping a
  ``time.1`` column (a second copy of ``time`` that some files carry, which the
  wide reader ignores too).
* Not in RCAEval's own code but in the folder names third parties use:
  ``RE3-OB/cartservice_f1/1/{metrics.csv, logs.csv, traces.csv}``,
  ``RE3-SS/carts_f4/2``; and that RE2-TT's ``metrics.csv`` has about 1,440
  rows at 1 s with the injection in the middle.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from diagnosis._validation import short_repr
from diagnosis.exceptions import TelemetryError
from diagnosis.logs.schema import Reject
from diagnosis.telemetry.entities import EntityMap
from diagnosis.telemetry.metrics import MetricSamples, read_metrics
from diagnosis.telemetry.quality import ReadReport
from diagnosis.telemetry.windows import DEFAULT_BASELINE, DEFAULT_DURATION, make_windows

__all__ = ["RCAEVAL_FAULT_MODES", "RCAEVAL_METRIC_FILES", "RcaevalImport", "import_rcaeval", "read_rcaeval_metrics"]

#: RCAEval fault type -> fault mode of the default ``service`` kind (``diagnosis/data/defaults.yaml``).
#: ``delay`` and ``loss`` are network faults (``network_latency``); ``f1`` .. ``f5`` are RE3's
#: code-level faults, whose nearest default mode is ``bad_deploy``. ``disk`` and ``socket`` are
#: not listed: no default mode fits them.
RCAEVAL_FAULT_MODES: Mapping[str, str] = MappingProxyType(
    {
        "cpu": "cpu_saturation",
        "mem": "memory_leak",
        "delay": "network_latency",
        "loss": "network_latency",
        **{f"f{i}": "bad_deploy" for i in range(1, 6)},
    }
)
#: A case's metrics file: the first of these found in its folder.
RCAEVAL_METRIC_FILES = ("data.csv", "simple_metrics.csv", "metrics.csv")
_INJECT = "inject_time.txt"
_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]+")
# Unix seconds from 2001 to 2286: a larger number is milliseconds or worse, a smaller one is no date.
_SECONDS = (1e9, 1e10)


@dataclass(frozen=True, slots=True)
class RcaevalImport:
    """What :func:`import_rcaeval` read.

    Attributes
    ----------
    source : str
        The root folder.
    cases : int
        Case folders found (folders holding ``inject_time.txt``), set-aside ones included.
    windows : int
        Windows made.
    by_type : Mapping[str, int]
        Windows per fault type.
    unmapped_types : Mapping[str, int]
        Windows whose fault type has no fault mode (``disk``, ``socket``): they keep their component.
    metrics_files : Mapping[str, str]
        Window id -> the case's metrics file (see :data:`RCAEVAL_METRIC_FILES`), for
        :func:`read_rcaeval_metrics`; not a window field, since every case has its own file.
    rejects : tuple of Reject
        Cases set aside: an inject time that cannot be read or is not a number of
        seconds, a folder name with no ``_<fault>``, no metrics file.
    """

    source: str
    cases: int
    windows: int
    by_type: Mapping[str, int] = field(default_factory=dict)
    unmapped_types: Mapping[str, int] = field(default_factory=dict)
    metrics_files: Mapping[str, str] = field(default_factory=dict)
    rejects: tuple[Reject, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "by_type", MappingProxyType(dict(sorted(self.by_type.items()))))
        object.__setattr__(self, "unmapped_types", MappingProxyType(dict(sorted(self.unmapped_types.items()))))
        object.__setattr__(self, "metrics_files", MappingProxyType(dict(self.metrics_files)))

    def lines(self) -> list[str]:
        """A short human-readable summary: the counts, then why cases were set aside."""
        types = ", ".join(f"{k} {v}" for k, v in self.by_type.items())
        out = [f"{self.source}: {self.cases} cases -> {self.windows} windows ({types}); {len(self.rejects)} set aside"]
        if self.unmapped_types:
            parts = ", ".join(f"{k} {v}" for k, v in self.unmapped_types.items())
            out.append(f"  no fault mode for the fault types {parts} (their windows keep the component)")
        reasons = Counter(r.reason for r in self.rejects)
        for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            first = next(r for r in self.rejects if r.reason == reason)
            out.append(f"  {n} set aside: {first.field} {reason} (first: {first.source}, value {first.value})")
        return out


def import_rcaeval(
    root: str | os.PathLike,
    *,
    duration: str | pd.Timedelta = DEFAULT_DURATION,
    baseline: str | pd.Timedelta = DEFAULT_BASELINE,
    fault_modes: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, RcaevalImport]:
    """Turn the RCAEval case folders under ``root`` into incident windows, one per case.

    Parameters
    ----------
    root : path
        A folder holding case folders at any depth (a whole download, one
        dataset such as ``RE2``, one system such as ``RE2-TT``, or one case).
    duration : duration, default ``"5min"``
        The fault period after the inject time.
    baseline : duration, default ``"10min"``
        The baseline period before it.
    fault_modes : mapping, optional
        Fault type -> fault mode; default :data:`RCAEVAL_FAULT_MODES`. A type not
        listed keeps its component and has no fault mode.

    Returns
    -------
    (DataFrame, RcaevalImport)
        The windows (:data:`~diagnosis.telemetry.windows.WINDOW_COLUMNS`, in the
        order of the case paths; ids are the case folders relative to ``root``,
        ``RE1-OB/adservice_cpu/1``; ``component`` and ``entity`` the service,
        ``fault_type`` the fault) and the import report, whose ``metrics_files``
        gives each window's metrics file.

    Raises
    ------
    TelemetryError
        When ``root`` is not a folder or holds no case folder.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> case = pathlib.Path(tempfile.mkdtemp(prefix="rcaeval-")) / "RE1-SS" / "carts_cpu" / "1"
    >>> case.mkdir(parents=True)
    >>> _ = (case / "inject_time.txt").write_text("1692569339\\n")
    >>> _ = (case / "data.csv").write_text("time,carts_cpu\\n1692569339,0.5\\n")
    >>> w, rep = import_rcaeval(case.parents[2])
    >>> w.loc[0, ["id", "component", "fault_mode"]].tolist(), str(w.loc[0, "start"])
    (['RE1-SS/carts_cpu/1', 'carts', 'cpu_saturation'], '2023-08-20 22:08:59+00:00')
    """
    base = Path(root)
    if not base.is_dir():
        raise TelemetryError(f"{base}: no such folder (expected RCAEval case folders <service>_<fault>/<n>/ inside)")
    source = str(base)
    found = sorted(p.parent for p in base.rglob(_INJECT) if p.is_file())
    if not found:
        raise TelemetryError(
            f"{base}: holds no RCAEval case: no {_INJECT} in it or any folder below it "
            f"(expected <system>/<service>_<fault>/<n>/{_INJECT} next to {' or '.join(RCAEVAL_METRIC_FILES)})"
        )
    modes = RCAEVAL_FAULT_MODES if fault_modes is None else fault_modes
    rejects: list[Reject] = []
    rows: list[dict[str, Any]] = []
    locs: list[str] = []
    files: list[str] = []
    for case in found:
        full = case.resolve()
        label = full.parent.name if full.name.isdigit() else full.name
        if case != base:
            rel = case.relative_to(base).as_posix()
        else:  # root is the case folder itself
            rel = f"{label}/{full.name}" if full.name.isdigit() else full.name
        cid = _UNSAFE.sub("_", rel) or "case"
        inject = case / _INJECT
        start, why, value = _inject_time(inject)
        if why is not None:
            rejects.append(Reject(str(inject), "line 1", cid, "inject time", value, why))
            continue
        service, sep, fault = label.rpartition("_")
        if not sep or not service.strip() or not fault.strip():
            rejects.append(
                Reject(
                    str(case),
                    "(folder name)",
                    cid,
                    "folder name",
                    short_repr(label),
                    "is not <service>_<fault> (e.g. carts_cpu, ts-auth-service_delay, adservice_f1)",
                )
            )
            continue
        metrics = next((case / n for n in RCAEVAL_METRIC_FILES if (case / n).is_file()), None)
        if metrics is None:
            rejects.append(
                Reject(
                    str(case),
                    "(folder)",
                    cid,
                    "metrics file",
                    short_repr(sorted(p.name for p in case.iterdir())[:6]),
                    f"is missing: the folder holds none of {', '.join(RCAEVAL_METRIC_FILES)}",
                )
            )
            continue
        service, fault = service.strip(), fault.strip()
        rows.append(
            {
                "id": cid,
                "start": start,
                "component": service,
                "fault_mode": modes.get(fault),
                "fault_type": fault,
                "entity": service,
            }
        )
        locs.append(rel)
        files.append(str(metrics))
    raw = pd.DataFrame(rows, columns=["id", "start", "component", "fault_mode", "fault_type", "entity"])
    windows, more = make_windows(raw, duration=duration, baseline=baseline, source=source, locations=locs)
    rejects += more
    kept = set(windows["id"])
    report = RcaevalImport(
        source=source,
        cases=len(found),
        windows=len(windows),
        by_type=windows["fault_type"].value_counts().to_dict(),
        unmapped_types=windows.loc[windows["fault_mode"].isna(), "fault_type"].value_counts().to_dict(),
        metrics_files={r["id"]: f for r, f in zip(rows, files) if r["id"] in kept},
        rejects=tuple(rejects),
    )
    return windows, report


def _inject_time(path: Path) -> tuple[pd.Timestamp | None, str | None, str]:
    """The inject time of ``inject_time.txt``, or why it cannot be used, and the value read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror}", ""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    try:
        seconds = float(first)
    except ValueError:
        return None, "is not a number (a Unix time in seconds, e.g. 1692569339)", short_repr(first)
    if not np.isfinite(seconds) or not _SECONDS[0] <= seconds < _SECONDS[1]:
        hint = " (milliseconds?)" if np.isfinite(seconds) and seconds >= _SECONDS[1] else ""
        return None, f"is not a Unix time in seconds between 2001 and 2286{hint}", short_repr(first)
    return pd.Timestamp(seconds, unit="s", tz="UTC"), None, first


def read_rcaeval_metrics(
    cases: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    windows: pd.DataFrame | None = None,
    entity_map: EntityMap | None = None,
    time_offset: str | pd.Timedelta | None = None,
    max_examples: int = 100,
) -> MetricSamples:
    """Read the metrics of many RCAEval cases into one sample table, refusing to mix two cases' telemetry.

    Each case is a separate run with its own file; read together, one table
    holds them all and :func:`~diagnosis.telemetry.detect.detect` scores every
    case's window in one call. The windows' own baselines come from their own
    files, and the quiet windows of the ``auto`` null from the stretches of each
    file away from its injection (the gaps between the files hold no samples and
    so give none).

    Parameters
    ----------
    cases : path or list of paths
        A folder (every case below it, found as :func:`import_rcaeval` finds
        them; cases it sets aside are skipped) or the cases' metrics files
        (``report.metrics_files.values()``).
    windows : DataFrame, optional
        The windows to be scored: each one's baseline and incident period must
        not reach into the data of another case.
    entity_map, time_offset, max_examples
        As in :func:`~diagnosis.telemetry.metrics.read_metrics`, for every file.

    Returns
    -------
    MetricSamples
        The samples of every file and one report over them.

    Raises
    ------
    TelemetryError
        When two files' times overlap, when a window spans the data of two
        cases, or when a file holds no metrics.
    """
    if isinstance(cases, (str, os.PathLike)) and Path(cases).is_dir():
        _, rep = import_rcaeval(cases)
        files = [Path(f) for f in rep.metrics_files.values()]
        if not files:
            raise TelemetryError(f"{cases}: every case was set aside; no metrics to read")
    else:
        files = [Path(f) for f in ([cases] if isinstance(cases, (str, os.PathLike)) else cases)]
    if not files:
        raise TelemetryError("no RCAEval metrics files given")
    parts = [read_metrics(f, entity_map=entity_map, time_offset=time_offset, max_examples=max_examples) for f in files]
    spans = []
    for f, part in zip(files, parts):
        if len(part.samples):
            spans.append((part.samples["time"].min(), part.samples["time"].max(), str(f)))
    spans.sort()
    for (a0, a1, fa), (b0, b1, fb) in zip(spans, spans[1:]):
        if b0 <= a1:
            raise TelemetryError(
                f"{fa} ({a0:%Y-%m-%d %H:%M:%S} .. {a1:%H:%M:%S} UTC) and {fb} ({b0:%Y-%m-%d %H:%M:%S} .. "
                f"{b1:%H:%M:%S} UTC) overlap in time: RCAEval cases are separate runs and their telemetry must "
                "not be mixed. Read and score them in separate calls (one system folder, or one case, at a time)."
            )
    if windows is not None and len(windows) and spans:
        lo = np.array([s[0].value for s in spans], dtype=np.int64)  # ns since the epoch, UTC
        hi = np.array([s[1].value for s in spans], dtype=np.int64)
        for w in windows.itertuples(index=False):
            w0, w1 = pd.Timestamp(w.baseline_start).value, pd.Timestamp(w.end).value
            hit = np.flatnonzero((lo < w1) & (hi >= w0))
            if len(hit) > 1:
                names = ", ".join(spans[i][2] for i in hit[:3])
                raise TelemetryError(
                    f"window {w.id}: its baseline and incident period ({w.baseline_start:%Y-%m-%d %H:%M:%S} .. "
                    f"{w.end:%H:%M:%S} UTC) reach into the data of {len(hit)} cases ({names}): it would be scored "
                    "on another run's telemetry. Use a shorter --baseline or --duration, or score the cases apart."
                )
    samples = pd.concat([p.samples for p in parts], ignore_index=True)
    samples = samples.sort_values(["time", "entity", "metric"], kind="stable").reset_index(drop=True)
    return MetricSamples(samples, _merge([p.report for p in parts], max_examples))


def _merge(reports: list[ReadReport], max_examples: int) -> ReadReport:
    """One report over the reports of separately read files."""
    by_reason: Counter = Counter()
    for r in reports:
        by_reason.update(r.by_reason)
    return ReadReport(
        files=tuple(f for r in reports for f in r.files),
        rows=sum(r.rows for r in reports),
        malformed=sum(r.malformed for r in reports),
        bad_values=sum(r.bad_values for r in reports),
        missing_values=sum(r.missing_values for r in reports),
        duplicates=sum(r.duplicates for r in reports),
        by_reason=by_reason,
        examples=tuple(e for r in reports for e in r.examples)[:max_examples],
        skipped_files={k: v for r in reports for k, v in r.skipped_files.items()},
        unmapped_entities=tuple(sorted({e for r in reports for e in r.unmapped_entities})),
        notes=tuple(n for r in reports for n in r.notes),
    )
