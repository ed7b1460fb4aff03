"""One duration parser: a bare number is seconds everywhere."""

import datetime as dt

import pandas as pd
import pytest

from diagnosis._time import parse_duration
from diagnosis.exceptions import IncidentLogError, ParameterError


@pytest.mark.parametrize(
    "value, seconds",
    [
        (300, 300),
        (1.5, 1.5),
        ("300", 300),
        ("300s", 300),
        ("5min", 300),
        ("PT5M", 300),
        ("8h", 8 * 3600),
        ("2d", 2 * 86400),
        ("2D", 2 * 86400),
        ("90 days", 90 * 86400),
        (dt.timedelta(minutes=5), 300),
        (pd.Timedelta("5min"), 300),
    ],
)
def test_durations(value, seconds):
    assert parse_duration(value, name="x", caller="f").total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["soon", "", None, True, [5], float("nan")])
def test_not_a_duration(value):
    with pytest.raises(
        ParameterError, match=r"The 'x' parameter of f must be a duration such as .*bare number is seconds"
    ):
        parse_duration(value, name="x", caller="f")


def test_sign_and_zero():
    with pytest.raises(ParameterError, match=r"must be a duration >= 0\. Got '-5min' instead"):
        parse_duration("-5min", name="x", caller="f")
    assert parse_duration("-90s", name="x", caller="f", allow_negative=True) == pd.Timedelta(seconds=-90)
    with pytest.raises(ParameterError, match=r"must be a duration > 0\. Got 0 instead"):
        parse_duration(0, name="x", caller="f", allow_zero=False)


def test_a_bare_number_below_the_minimum_is_refused_with_a_hint():
    with pytest.raises(ParameterError, match=r"at least 3600 seconds .* Got 90 instead; did you mean '90d'\?"):
        parse_duration(90, name="half_life", caller="f", minimum=pd.Timedelta(hours=1))
    # with a unit it is what it says
    assert parse_duration("90min", name="half_life", caller="f", minimum=pd.Timedelta(minutes=1)) == pd.Timedelta(
        "90min"
    )


def test_error_class_can_be_the_callers():
    with pytest.raises(IncidentLogError):
        parse_duration("soon", name="window", caller="import_alertmanager", error=IncidentLogError)


# ---------------------------------------------------------------- times: one parser, one rule


def test_times_rule():
    from diagnosis._time import parse_times

    values = [
        "2024-05-01T10:15:00Z",
        "2024-05-01T10:15:00",  # no zone: UTC
        "2024-05-01 12:15:00+02:00",
        "2024-05-01 10:15:00 +0000 UTC m=+0.30",  # Go's time.String()
        1714558500,  # epoch seconds
        1714558500000,  # milliseconds
        "1714558500000000",  # microseconds, as text
        pd.Timestamp("2024-05-01 12:15", tz="Europe/Berlin"),
    ]
    t, bad = parse_times(pd.Series(values, dtype=object))
    assert not bad.any()
    assert (t == pd.Timestamp("2024-05-01 10:15", tz="UTC")).all()


def test_times_missing_and_bad():
    from diagnosis._time import parse_times

    t, bad = parse_times(pd.Series(["soon", None, "", "NA", float("nan"), True, "2024-13-45T00:00:00Z"], dtype=object))
    assert bad.tolist() == [True, False, False, False, False, True, True]
    assert t.isna().all()


def test_times_without_numbers():
    """The incident log takes no epoch numbers: a number there is refused, not guessed."""
    from diagnosis._time import parse_times

    t, bad = parse_times(pd.Series([1714558500, "1714558500", "2024-05-01T10:15:00Z"], dtype=object), numbers=False)
    assert bad.tolist() == [True, True, False]
    _, bad = parse_times(pd.Series([1714558500, 2]), numbers=False)
    assert bad.all()


def test_one_time():
    from diagnosis._time import parse_time, parse_times

    for text in ["2024-05-01T10:15:00Z", "2024-05-01 12:15:00+02:00", "2024-05-01T10:15:00"]:
        assert parse_time(text) == parse_times([text])[0][0]
    assert parse_time("9999-01-01T00:00:00Z") is None
    assert parse_time("soon") is None
