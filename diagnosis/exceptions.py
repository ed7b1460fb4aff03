"""The exceptions raised by :mod:`diagnosis`.

Every error the package raises on purpose derives from :class:`DiagnosisError`,
so callers (and the CLI) can catch one type::

    DiagnosisError
     ├── TopologyError      (also ValueError)  unknown component, cycle, bad probability
     ├── EvidenceError      (also ValueError)  unknown symptom or state
     ├── IncidentLogError   (also ValueError)  a malformed incident record
     ├── ModelError         (also ValueError)  a table does not normalise, a parent is missing
     │    ├── ModelTooLargeError                exact inference does not fit the memory budget
     │    └── ModelFileError                    a BIF/XMLBIF file is missing or invalid
     ├── TelemetryError     (also ValueError)  metrics, traces, logs or windows that cannot be read
     ├── OutputError        (also OSError)     an output that is an input, is in use by another run, or cannot be written
     ├── ParameterError     (also ValueError, TypeError)  a bad argument to a public function
     └── NotFittedError     (also AttributeError)

And the warnings, each a :class:`DiagnosisWarning` (a ``UserWarning``)::

    DiagnosisWarning
     ├── ApproximationWarning   an approximate engine answered where exact was asked for or refused
     └── ConvergenceWarning     an iterative fit stopped before it converged
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ApproximationWarning",
    "ConvergenceWarning",
    "DiagnosisError",
    "DiagnosisWarning",
    "EvidenceError",
    "IncidentLogError",
    "ModelError",
    "ModelFileError",
    "ModelTooLargeError",
    "NotFittedError",
    "OutputError",
    "ParameterError",
    "TelemetryError",
    "TopologyError",
    "suggest",
]


class DiagnosisError(Exception):
    """Base class of every error raised on purpose by :mod:`diagnosis`."""


class TopologyError(DiagnosisError, ValueError):
    """A topology file or object is invalid.

    Parameters
    ----------
    message : str
        What is wrong, with the bad value and what is allowed.
    source : str, optional
        The file the topology came from.
    path : str, optional
        Where inside the file, as a dotted path (``components[3].calls[0]``).
    """

    def __init__(self, message: str, *, source: str | None = None, path: str | None = None):
        self.source = source
        self.path = path
        where = ", ".join(p for p in (source, path) if p)
        super().__init__(f"{where}: {message}" if where else message)


class EvidenceError(DiagnosisError, ValueError):
    """Evidence names an unknown symptom or state, or is malformed."""


class IncidentLogError(DiagnosisError, ValueError):
    """An incident record is malformed.

    Parameters
    ----------
    message : str
        What is wrong.
    rows : list of dict, optional
        The failing rows, each with its location and reason.
    """

    def __init__(self, message: str, *, rows: list[dict] | None = None):
        self.rows = list(rows or [])
        super().__init__(message)


class ModelError(DiagnosisError, ValueError):
    """A probability table does not normalise, or a model cannot be built or compiled."""


class ModelTooLargeError(ModelError):
    """Exact inference would need more memory than the budget allows.

    Attributes
    ----------
    needed_bytes : int
        Memory one case would need (a lower bound if triangulation was abandoned).
    budget_bytes : int
    treewidth : int
        Treewidth reached (a lower bound if triangulation was abandoned).
    """

    def __init__(self, message: str, *, needed_bytes: int, budget_bytes: int, treewidth: int):
        self.needed_bytes = int(needed_bytes)
        self.budget_bytes = int(budget_bytes)
        self.treewidth = int(treewidth)
        super().__init__(message)


class ModelFileError(ModelError):
    """A model file is missing, unreadable, or not a valid network.

    Attributes
    ----------
    path : str
        The file.
    """

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class TelemetryError(DiagnosisError, ValueError):
    """Telemetry (metrics, traces, logs, windows, fault lists) cannot be read or used."""


class OutputError(DiagnosisError, OSError):
    """An output path is an input (same file, hard link or symlink), is held by another run, or cannot be written.

    The message names the path and the cause.
    """

    def __str__(self) -> str:  # OSError's own __str__ would show the args tuple
        return str(self.args[0]) if self.args else ""


class ParameterError(DiagnosisError, ValueError, TypeError):
    """A public function was given a bad argument.

    The message follows one template (see :mod:`diagnosis._validation`):
    ``The 'top_k' parameter of score_log must be an int in the range [1, inf). Got -3 instead.``
    """


class NotFittedError(DiagnosisError, AttributeError):
    """An estimator was used before :meth:`fit`."""


class DiagnosisWarning(UserWarning):
    """Base class of every warning :mod:`diagnosis` emits."""


class ApproximationWarning(DiagnosisWarning):
    """An approximate engine answered because exact inference did not fit."""


class ConvergenceWarning(DiagnosisWarning):
    """An iterative fit (EM) stopped at its iteration limit before converging."""


def suggest(name: str, known: Iterable[str], *, n: int = 3) -> str:
    """Return a ``"; did you mean ...?"`` clause for the closest known names, or ``""``.

    Parameters
    ----------
    name : str
        The unknown name.
    known : iterable of str
        The allowed names.
    n : int, default 3
        At most this many suggestions.

    Examples
    --------
    >>> suggest("frontnd", ["frontend", "backend"])
    "; did you mean 'frontend'?"
    >>> suggest("zzz", ["frontend"])
    ''
    """
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=n, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
