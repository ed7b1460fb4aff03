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
