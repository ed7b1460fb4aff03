"""The parameter-validation layer: one constraint language, one message template."""

import numpy as np
import pytest

from diagnosis._validation import Interval, Options, check_param, short_repr, validate_params
from diagnosis.exceptions import DiagnosisError, ParameterError


def test_interval_bounds_and_types():
    pos = Interval(int, 1, None, closed="left")
    assert pos.accepts(1) and pos.accepts(np.int64(7)) and not pos.accepts(0)
    assert not pos.accepts(1.5) and not pos.accepts(True) and not pos.accepts("3")
    unit = Interval(float, 0, 1, closed="neither")
    assert unit.accepts(0.5) and unit.accepts(1 / 3) and not unit.accepts(0) and not unit.accepts(1.0)
    assert not unit.accepts(float("nan"))
    assert str(pos) == "an int in the range [1, inf)"
    assert str(unit) == "a float in the range (0, 1)"
    assert str(Interval(float, None, 0, closed="right")) == "a float in the range (-inf, 0]"


def test_message_template():
    with pytest.raises(
        ParameterError,
        match=r"^The 'top_k' parameter of score_log must be an int in the range \[1, inf\)\. Got -3 instead\.$",
    ):
        check_param("top_k", -3, [Interval(int, 1, None, closed="left")], caller="score_log")
    with pytest.raises(ParameterError, match=r"must be one of \{'a', 'b'\} or None\. Got 'c' instead"):
        check_param("mode", "c", [Options(("a", "b")), None], caller="f")
    with pytest.raises(ParameterError, match=r"must be a str or a callable\. Got 3 instead"):
        check_param("x", 3, [str, "callable"], caller="f")


def test_parameter_error_is_a_value_and_type_error():
    with pytest.raises(ValueError):
        check_param("x", "no", [int], caller="f")
    with pytest.raises(TypeError):
        check_param("x", "no", [int], caller="f")
    with pytest.raises(DiagnosisError):
        check_param("x", "no", [int], caller="f")


def test_validate_params_checks_only_what_is_declared():
    validate_params({"k": 3, "other": object()}, {"k": [int]}, caller="f")
    with pytest.raises(ParameterError, match="'k' parameter of f"):
        validate_params({"k": "3"}, {"k": [int]}, caller="f")


def test_options_with_unhashable_values_and_short_repr():
    assert not Options(("a",)).accepts([1])
    assert short_repr("x" * 300).endswith("...") and len(short_repr("x" * 300)) == 200
    with pytest.raises(TypeError):
        Interval(str, 0, 1)
