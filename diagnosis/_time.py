"""Durations, parsed one way everywhere.

**The rule for a bare number: it is a number of seconds**, in Python and on
the command line alike (``300`` = ``"300s"`` = ``"5min"`` = ``"PT5M"``).
Strings take pandas' units (``"90s"``, ``"15min"``, ``"8h"``, ``"90d"``,
``"90D"``) or ISO 8601 (``"PT5M"``, ``"P90D"``); ``datetime.timedelta`` and
``pandas.Timedelta`` pass through.

Where a parameter is measured in days or hours in practice (a half-life), a
bare number that would mean less than ``minimum`` is refused with a hint
(``"365 is 365 seconds; did you mean '365d'?"``) rather than read silently.

>>> parse_duration("5min", name="window", caller="demo")
Timedelta('0 days 00:05:00')
>>> parse_duration(90, name="window", caller="demo")
Timedelta('0 days 00:01:30')
>>> parse_duration("90", name="window", caller="demo")
Timedelta('0 days 00:01:30')
>>> parse_duration("90d", name="half_life", caller="demo")
Timedelta('90 days 00:00:00')
"""

from __future__ import annotations

import datetime as _dt
import numbers
import re

import pandas as pd

from diagnosis._validation import short_repr
from diagnosis.exceptions import ParameterError

__all__ = ["parse_duration"]

_DAY = re.compile(r"(?<=\d)\s*d(?![a-z])")
_EXAMPLES = "a duration such as '300s', '5min', '8h', '90d' or 'PT5M' (a bare number is seconds)"


def parse_duration(
    value,
    *,
    name: str,
    caller: str,
    allow_negative: bool = False,
    allow_zero: bool = True,
    minimum: pd.Timedelta | None = None,
    error: type[Exception] = ParameterError,
) -> pd.Timedelta:
    """A duration from a number of seconds, a string with a unit, or a timedelta.

    Parameters
    ----------
    value : float, int, str, datetime.timedelta or pandas.Timedelta
    name, caller : str
        The parameter and the function it belongs to, for the message.
    allow_negative, allow_zero : bool
        Whether ``-90s`` (a time offset) and ``0s`` are accepted.
    minimum : pandas.Timedelta, optional
        A bare number below this is refused with a hint to give a unit.
    error : exception class, default ParameterError
        What to raise (for instance a file-level error class when the value
        came from a file).

    Returns
    -------
    pandas.Timedelta

    Raises
    ------
    ParameterError
        Not a duration, or out of range, in the house template.
    """
    bare = isinstance(value, numbers.Real) and not isinstance(value, bool)
    try:
        if isinstance(value, pd.Timedelta):
            td = value
        elif isinstance(value, _dt.timedelta):
            td = pd.Timedelta(value)
        elif bare:
            td = pd.Timedelta(seconds=float(value))
        elif isinstance(value, str) and value.strip():
            text = value.strip()
            try:  # "300" on a command line is a bare number too (pandas would read it as nanoseconds)
                seconds = float(text)
            except ValueError:
                # pandas deprecates the lowercase day unit people type ("90d"); read it as "90D".
                td = pd.Timedelta(_DAY.sub("D", text))
            else:
                bare = True
                td = pd.Timedelta(seconds=seconds)
        else:
            raise TypeError
    except (ValueError, TypeError, OverflowError):
        raise error(
            f"The {name!r} parameter of {caller} must be {_EXAMPLES}. Got {short_repr(value, 80)} instead."
        ) from None
    if pd.isna(td):
        raise error(f"The {name!r} parameter of {caller} must be {_EXAMPLES}. Got {short_repr(value, 80)} instead.")
    bound = ">= 0" if allow_zero else "> 0"
    if (td < pd.Timedelta(0) and not allow_negative) or (td == pd.Timedelta(0) and not allow_zero):
        raise error(
            f"The {name!r} parameter of {caller} must be a duration {bound}. Got {short_repr(value, 80)} instead."
        )
    if bare and minimum is not None and td < minimum:
        raise error(
            f"The {name!r} parameter of {caller} must be at least {minimum.total_seconds():g} seconds "
            f"(a bare number is seconds). Got {short_repr(value, 80)} instead; did you mean '{value}d'?"
        )
    return td
