"""Durations and times, each parsed one way everywhere.

Durations
---------

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

Times
-----
**A time is ISO 8601 / RFC 3339 text, and a time without a zone is UTC**
(``2024-05-01T10:15:00Z``, ``2024-05-01 10:15:00+02:00``,
``2024-05-01T10:15:00``). Go's ``time.String()`` form
(``2022-08-22 03:51:19.79 +0000 UTC m=+0.30``) is read too. **A bare number
is a Unix epoch time**, in seconds, milliseconds, microseconds or
nanoseconds, told apart by magnitude (telemetry exports all four), where the
format allows numbers: the incident log does not (``numbers=False``), so a
number there is refused rather than guessed. ``datetime``/``Timestamp``
values pass through, converted to UTC. Missing values (None, NaN, empty or
``NA`` text) are NaT and not errors; each caller decides whether a missing
time is allowed.

>>> t, bad = parse_times(["2024-05-01T10:15:00Z", "1714558500", "2024-05-01 12:15:00+02:00", "soon", None])
>>> t.dt.strftime("%H:%M").tolist()[:3], bad.tolist()
(['10:15', '10:15', '10:15'], [False, False, False, True, False])
>>> parse_time("2024-05-01T10:15:00")
Timestamp('2024-05-01 10:15:00+0000', tz='UTC')
"""

from __future__ import annotations

import datetime as _dt
import numbers
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from diagnosis._validation import short_repr
from diagnosis.exceptions import ParameterError

__all__ = ["NAN_TEXT", "parse_duration", "parse_time", "parse_times"]

_DAY = re.compile(r"(?<=\d)\s*d(?![a-z])")
_GO_MONOTONIC = re.compile(r"\s+m=[+-][0-9.]+$")
_GO_ZONE_NAME = re.compile(r"(\s[+-]\d{4})\s+[A-Z]{2,5}$")
#: Text read as a missing value.
NAN_TEXT = frozenset({"", "nan", "NaN", "NAN", "null", "NULL", "None", "NA", "N/A"})
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


def parse_times(values: pd.Series | Iterable, *, numbers: bool = True) -> tuple[pd.Series, np.ndarray]:
    """Times by the rule in the module docstring, and which values were not times.

    Parameters
    ----------
    values : Series or iterable
        Text, numbers, ``datetime``/``Timestamp`` objects or missing values.
    numbers : bool, default True
        Whether a bare number (or a string of digits) is a Unix epoch time.
        When False it is flagged as not a time.

    Returns
    -------
    times : Series of datetime64[ns, UTC]
        NaT where missing or bad.
    bad : ndarray of bool
        Values given that are not times (missing values are not flagged).
    """
    s = pd.Series(values).reset_index(drop=True)
    n = len(s)
    out = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]")
    if n == 0:
        return out, np.zeros(0, dtype=bool)
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(s):
        t = pd.to_datetime(s, utc=True).astype("datetime64[ns, UTC]")
        return t, np.zeros(n, dtype=bool)
    if s.dtype.kind in "iufb":
        if not numbers or s.dtype.kind == "b":
            return out, s.notna().to_numpy()
        return _epoch(s.tolist()).astype("datetime64[ns, UTC]"), np.zeros(n, dtype=bool)
    if numbers and s.notna().all():
        arr = np.asarray(s.astype(str).to_numpy(), dtype=str)
        if np.char.isdigit(arr).all():
            t = _epoch(arr)
            return t.astype("datetime64[ns, UTC]"), t.isna().to_numpy()
    text = s.astype(object).where(s.notna(), None)
    # bools are not numbers here, and a Timestamp is no number either
    is_num = pd.to_numeric(text.where([not isinstance(x, (bool, np.bool_)) for x in text], None), errors="coerce")
    numeric = is_num.notna().to_numpy()
    empty = np.array([x is None or (isinstance(x, str) and x.strip() in NAN_TEXT) for x in text], dtype=bool)
    if numeric.any() and numbers:
        out[numeric] = _epoch(text[numeric].tolist()).to_numpy()
    strings = ~numeric & ~empty
    if strings.any():
        st = pd.Series([str(x).strip() for x in text[strings]], dtype=object)
        st = st.str.replace(_GO_MONOTONIC, "", regex=True).str.replace(_GO_ZONE_NAME, r"\1", regex=True)
        parsed = pd.to_datetime(st, format="ISO8601", utc=True, errors="coerce")
        if parsed.isna().any():  # mixed layouts: parse the rest one by one
            rest = parsed.isna().to_numpy()
            parsed[rest] = pd.to_datetime(st[rest], utc=True, errors="coerce", format="mixed")
        out[strings] = parsed.astype("datetime64[ns, UTC]").to_numpy()
    bad = strings & out.isna().to_numpy()
    bad |= numeric & out.isna().to_numpy()
    return out.astype("datetime64[ns, UTC]"), bad


def parse_time(text: str) -> pd.Timestamp | None:
    """One time of text by the same rule as :func:`parse_times` (no numbers); None when it is not a time.

    The per-value form, for readers that take one record at a time
    (Alertmanager notifications).
    """
    text = _GO_ZONE_NAME.sub(r"\1", _GO_MONOTONIC.sub("", text.strip()))
    try:
        t = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):  # OutOfBoundsDatetime is a ValueError
        return None
    if pd.isna(t):
        return None
    try:
        return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).as_unit("ns")
    except (ValueError, OverflowError):
        return None


def _scale(magnitude: np.ndarray) -> np.ndarray:
    """Nanoseconds per unit of an epoch number, told apart by its magnitude: s, ms, us or ns."""
    return np.select([magnitude < 1e11, magnitude < 1e14, magnitude < 1e17], [10**9, 10**6, 10**3], default=1).astype(
        np.int64
    )


def _epoch(values: list) -> pd.Series:
    """Unix epoch numbers (each one's unit told apart by its magnitude) as UTC times.

    Integers keep nanosecond precision; out-of-range values are NaT.
    """
    try:  # fast path: every value an integer (or a string of one)
        fast = np.asarray(values)
        if fast.dtype.kind in "iu" or (fast.dtype.kind == "U" and np.char.isdigit(np.char.lstrip(fast, "+-")).all()):
            fast = fast.astype(np.int64)
            scale = _scale(np.abs(fast.astype(np.float64)))
            ok = np.abs(fast) < np.iinfo(np.int64).max // scale
            t = pd.Series(pd.to_datetime(np.where(ok, fast * np.where(ok, scale, 1), 0), unit="ns", utc=True))
            return t.astype("datetime64[ns, UTC]").where(ok)
    except (ValueError, OverflowError, TypeError):
        pass
    ns: list[int | None] = []
    for x in values:
        try:
            if isinstance(x, str):
                x = x.strip()
                x = int(x) if x.lstrip("+-").isdigit() else float(x)
            if not isinstance(x, (int, np.integer)):
                x = float(x)
                if not np.isfinite(x):
                    ns.append(None)
                    continue
                if x.is_integer():
                    x = int(x)
            unit = int(_scale(np.array([abs(float(x))]))[0])
            v = int(x) * unit if isinstance(x, (int, np.integer)) else round(x * unit)
        except (ValueError, OverflowError, TypeError):
            ns.append(None)
            continue
        ns.append(v if abs(v) < 9.2e18 else None)
    ok = np.array([v is not None for v in ns], dtype=bool)
    arr = np.array([v if v is not None else 0 for v in ns], dtype=np.int64)
    t = pd.Series(pd.to_datetime(arr, unit="ns", utc=True)).astype("datetime64[ns, UTC]")
    return t.where(ok)
