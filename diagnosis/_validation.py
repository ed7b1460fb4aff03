"""Parameter validation: one constraint language, one message template.

In the style of scikit-learn's ``_param_validation``: a public function (or an
estimator's ``fit``) declares what each parameter accepts, and
:func:`validate_params` checks them all and raises
:class:`~diagnosis.exceptions.ParameterError` with one message template::

    The 'top_k' parameter of score_log must be an int in the range [1, inf). Got -3 instead.

A constraint is one of:

- a type (``int``, ``float``, ``str``, ``bool``, a class): an instance of it
  (``bool`` is not accepted where ``int`` or ``float`` is asked for);
- ``None``: the value ``None``;
- :class:`Interval`: a real number in a range (``Interval(int, 1, None, closed="left")``);
- :class:`Options`: one of a fixed set of values;
- ``"callable"``: anything callable.

A parameter accepts a value when any of its constraints does.

>>> validate_params({"k": 3}, {"k": [Interval(int, 1, None, closed="left")]}, caller="demo")
>>> validate_params({"k": 0}, {"k": [Interval(int, 1, None, closed="left")]}, caller="demo")
Traceback (most recent call last):
...
diagnosis.exceptions.ParameterError: The 'k' parameter of demo must be an int in the range [1, inf). Got 0 instead.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from diagnosis.exceptions import ParameterError

__all__ = ["Interval", "Options", "check_param", "short_repr", "validate_params", "yaml_error_text"]


def short_repr(value: Any, n: int = 200) -> str:
    """``repr(value)``, cut to ``n`` characters with ``...`` (for messages and rejects).

    >>> short_repr("x" * 10, n=8)
    "'xxxx..."
    """
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def yaml_error_text(exc: Exception) -> str:
    r"""A YAML parse error on one line: ``line L, column C: problem (context)``.

    PyYAML's own text spans three lines and names ``"<unicode string>"``
    instead of the file; messages name the file themselves.

    >>> import yaml
    >>> try:
    ...     yaml.safe_load("a: [1,\n")
    ... except yaml.YAMLError as exc:
    ...     print(yaml_error_text(exc))
    line 2, column 1: expected the node content, but found '<stream end>' (while parsing a flow node)
    """
    problem = getattr(exc, "problem", None)
    if not problem:
        return " ".join(str(exc).split())
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(exc, "context", None)
    return f"{where}{problem}" + (f" ({context})" if context else "")


@dataclass(frozen=True, slots=True)
class Interval:
    """A real number (``int`` or ``float``) in a range; ``None`` bounds are infinite.

    Parameters
    ----------
    type : {int, float}
        ``float`` accepts ints too; ``int`` accepts integral numbers only.
    left, right : float or None
    closed : {"left", "right", "both", "neither"}
    """

    type: type
    left: float | None
    right: float | None
    closed: str = "both"

    def __post_init__(self):
        if self.type not in (int, float):
            raise TypeError(f"Interval type must be int or float, got {self.type!r}")
        if self.closed not in ("left", "right", "both", "neither"):
            raise ValueError(f"Interval closed must be 'left', 'right', 'both' or 'neither', got {self.closed!r}")

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.type is int and not isinstance(value, numbers.Integral):
            return False
        v = float(value)
        if math.isnan(v):
            return False
        lo_ok = self.left is None or (v >= self.left if self.closed in ("left", "both") else v > self.left)
        hi_ok = self.right is None or (v <= self.right if self.closed in ("right", "both") else v < self.right)
        return lo_ok and hi_ok

    def __str__(self) -> str:
        lo = "-inf" if self.left is None else _num(self.left)
        hi = "inf" if self.right is None else _num(self.right)
        lb = "[" if self.closed in ("left", "both") and self.left is not None else "("
        rb = "]" if self.closed in ("right", "both") and self.right is not None else ")"
        article = "an" if self.type is int else "a"
        return f"{article} {self.type.__name__} in the range {lb}{lo}, {hi}{rb}"


@dataclass(frozen=True, slots=True)
class Options:
    """One of a fixed set of values."""

    values: tuple

    def __init__(self, values: Iterable):
        object.__setattr__(self, "values", tuple(values))

    def accepts(self, value: Any) -> bool:
        try:
            return value in self.values
        except TypeError:  # unhashable or incomparable
            return False

    def __str__(self) -> str:
        return "one of " + "{" + ", ".join(repr(v) for v in self.values) + "}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _accepts(constraint: Any, value: Any) -> bool:
    if constraint is None:
        return value is None
    if constraint == "callable":
        return callable(value)
    if isinstance(constraint, (Interval, Options)):
        return constraint.accepts(value)
    if isinstance(constraint, type):
        if constraint in (int, float) and isinstance(value, bool):
            return False
        if constraint is float:
            return isinstance(value, numbers.Real)
        if constraint is int:
            return isinstance(value, numbers.Integral)
        return isinstance(value, constraint)
    raise TypeError(f"unknown constraint {constraint!r}")


def _describe(constraint: Any) -> str:
    if constraint is None:
        return "None"
    if constraint == "callable":
        return "a callable"
    if isinstance(constraint, type):
        name = constraint.__name__
        return f"an {name}" if name[0] in "aeiouAEIOU" else f"a {name}"
    return str(constraint)


def check_param(name: str, value: Any, constraints: Sequence[Any], *, caller: str) -> Any:
    """Return ``value`` if any of ``constraints`` accepts it, else raise :class:`ParameterError`.

    Parameters
    ----------
    name : str
        The parameter's name as the user wrote it.
    value : object
    constraints : sequence
        See the module docstring.
    caller : str
        The function or class the parameter belongs to.
    """
    if any(_accepts(c, value) for c in constraints):
        return value
    allowed = [_describe(c) for c in constraints]
    text = allowed[0] if len(allowed) == 1 else ", ".join(allowed[:-1]) + " or " + allowed[-1]
    raise ParameterError(f"The {name!r} parameter of {caller} must be {text}. Got {short_repr(value, 80)} instead.")


def validate_params(params: Mapping[str, Any], constraints: Mapping[str, Sequence[Any]], *, caller: str) -> None:
    """Check every parameter in ``constraints`` against its value in ``params``.

    Parameters absent from ``constraints`` are not checked.

    Raises
    ------
    ParameterError
        For the first parameter no constraint accepts.
    """
    for name, allowed in constraints.items():
        if name in params:
            check_param(name, params[name], allowed, caller=caller)
