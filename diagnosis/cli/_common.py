"""Formatting helpers shared by the verb modules."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from diagnosis._files import check_outputs, output_lock, remove_stale_temporaries

__all__ = ["evidence_of", "guarded_outputs", "load_topology", "log_outputs", "table", "time_offset"]


def _flat(paths) -> list[str]:
    out = []
    for p in paths:
        if p is None:
            continue
        if isinstance(p, (list, tuple)):
            out.extend(_flat(p))
        else:
            out.append(str(p))
    return out


@contextlib.contextmanager
def guarded_outputs(
    outputs: Iterable,
    inputs: Iterable,
    *,
    folders: Iterable = (),
    lock: str | Path | None = None,
    not_inside_inputs: bool = False,
) -> Iterator[None]:
    """Check a verb's outputs against its inputs before any work, and hold the output's lock for the run.

    ``lock`` is the main output (``None``: no lock, e.g. when the library
    function takes it itself). Stale temporaries a killed run left beside the
    outputs are removed once the lock is held.
    """
    outs = _flat(outputs)
    check_outputs(outs, _flat(inputs), folders=_flat(folders), not_inside_inputs=not_inside_inputs)
    if lock is None:
        yield
        return
    with output_lock(lock):
        for o in outs:
            remove_stale_temporaries(o)
        yield


def log_outputs(path: str, fmt: str | None) -> tuple[list[str], list[str]]:
    """The files and folders writing an incident log to ``path`` creates (a CSV log is a folder of three tables)."""
    from diagnosis.logs.formats import detect_format

    p = Path(path)
    fmt = fmt or detect_format(p)
    if fmt != "csv":
        return [path], []
    if p.suffix.lower() == ".csv":
        stem = str(p)[: -len(".csv")]
        return [path, f"{stem}.observations.csv", f"{stem}.actions.csv"], []
    return [str(p / f"{t}.csv") for t in ("incidents", "observations", "actions")], [path]


def table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)), file=out)
    for row in rows:
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths)), file=out)


def load_topology(path):
    """:func:`diagnosis.model.topology.load_topology`, imported when a verb runs (not at start-up)."""
    from diagnosis.model.topology import load_topology as load

    return load(path)


def time_offset(text: str | None):
    if text is None:
        return None
    from diagnosis._time import parse_duration

    return parse_duration(text, name="--metrics-offset/--traces-offset", caller="diagnosis detect", allow_negative=True)


def evidence_of(args):
    """The evidence of ``--incident FILE`` and ``--observe SYMPTOM=OBS ...`` together; a symptom given by both is an error."""
    from diagnosis.exceptions import EvidenceError
    from diagnosis.model.evidence import Evidence, read_evidence

    observations = {}
    if args.incident:
        _, ev = read_evidence(args.incident)
        observations.update(ev.observations)
    extra = Evidence.from_strings(args.observe).observations
    for symptom in extra:
        if symptom in observations:
            raise EvidenceError(f"symptom {symptom!r} is given both in {args.incident} and by --observe")
    observations.update(extra)
    return Evidence(observations)
