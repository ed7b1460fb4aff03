"""What a telemetry reader found wrong with its input: :class:`ReadReport`.

Real telemetry has malformed rows (a truncated line, a value that is not a
number, a time that does not parse), duplicates (overlapping exports),
entities with no data, and clocks that disagree. The readers never stop on
such rows: they set them aside, count them by reason, keep the first few as
:class:`~diagnosis.logs.schema.Reject` values (file, ``row N``, field, value,
reason), and go on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from diagnosis._validation import short_repr
from diagnosis.logs.schema import Reject

__all__ = ["ReadReport"]


@dataclass(frozen=True, slots=True)
class ReadReport:
    """Counts of what was read and what was set aside.

    Attributes
    ----------
    files : tuple of str
        Files read.
    rows : int
        Data rows read (malformed ones included).
    malformed : int
        Rows set aside whole (wrong number of fields, a time or id that does
        not parse, an end before its start).
    bad_values : int
        Single cells that are not numbers (the rest of the row is kept).
    missing_values : int
        Empty or NaN cells: not errors, but no data.
    duplicates : int
        Rows dropped as repeats of an earlier row (same entity, metric and
        time; same trace and span id).
    by_reason : Mapping[str, int]
        Malformed rows and bad cells counted by reason.
    examples : tuple of Reject
        The first few rows set aside, with file, location, field, value and reason.
    skipped_files : Mapping[str, str]
        Files not read, and why.
    unmapped_entities : tuple of str
        Entities the entity map gives no component.
    notes : tuple of str
        Other findings, e.g. two clocks in one file that disagree.
    """

    files: tuple[str, ...] = ()
    rows: int = 0
    malformed: int = 0
    bad_values: int = 0
    missing_values: int = 0
    duplicates: int = 0
    by_reason: Mapping[str, int] = field(default_factory=dict)
    examples: tuple[Reject, ...] = ()
    skipped_files: Mapping[str, str] = field(default_factory=dict)
    unmapped_entities: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "by_reason", MappingProxyType(dict(sorted(self.by_reason.items()))))
        object.__setattr__(self, "skipped_files", MappingProxyType(dict(self.skipped_files)))

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready mapping."""
        return {
            "files": list(self.files),
            "rows": self.rows,
            "malformed": self.malformed,
            "bad_values": self.bad_values,
            "missing_values": self.missing_values,
            "duplicates": self.duplicates,
            "by_reason": dict(self.by_reason),
            "examples": [r.to_dict() for r in self.examples],
            "skipped_files": dict(self.skipped_files),
            "unmapped_entities": list(self.unmapped_entities),
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """A short human-readable summary, one finding per line."""
        out = [
            (
                f"read {self.rows} rows from {len(self.files)} files: {self.malformed} malformed rows set aside, "
                f"{self.bad_values} cells not numbers, {self.missing_values} empty cells, {self.duplicates} duplicates dropped"
            )
        ]
        first = {}
        for r in self.examples:
            first.setdefault(r.reason, r)
        for reason, n in self.by_reason.items():
            ex = first.get(reason)
            where = f" (first: {ex.source}, {ex.location}, {ex.field} {ex.value})" if ex is not None else ""
            out.append(f"  {n} x {reason}{where}")
        out += [f"  skipped {f}: {why}" for f, why in self.skipped_files.items()]
        if self.unmapped_entities:
            out.append(
                f"  entities mapped to no component: {', '.join(self.unmapped_entities[:10])}"
                + (" ..." if len(self.unmapped_entities) > 10 else "")
            )
        out += [f"  {n}" for n in self.notes]
        return out


class _Tally:
    """Collects rejects while a reader runs (keeps the first ``max_examples``)."""

    def __init__(self, max_examples: int = 100):
        self.max_examples = max_examples
        self.examples: list[Reject] = []
        self.reasons: Counter = Counter()
        self.malformed = 0
        self.bad_values = 0
        self.missing = 0

    def reject(
        self, source: str, location: str, fld: str, value: Any, reason: str, *, whole_row: bool = True, count: int = 1
    ) -> None:
        if whole_row:
            self.malformed += count
        else:
            self.bad_values += count
        self.reasons[reason] += count
        if len(self.examples) < self.max_examples:
            self.examples.append(Reject(source, location, None, fld, short_repr(value), reason))
