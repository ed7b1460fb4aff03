"""Request bodies of ``diagnosis serve``, validated by pydantic.

A body that does not fit gets a 422 whose ``detail`` names the field (``loc``,
e.g. ``["body", "alerts", 0, "startsAt"]``), the message and the value
(``input``); nothing malformed reaches the state.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "ActionRequest",
    "AlertmanagerAlert",
    "AlertmanagerPayload",
    "ApproveRequest",
    "CloseRequest",
    "ObservationItem",
    "ObservationsRequest",
    "RootCause",
]

_SHORT = 512  # longest label value, fingerprint or name accepted
_LONG = 8192  # longest URL or annotation


def _check_time(value: str | None) -> str | None:
    """RFC 3339, read by the same code as ``diagnosis import alertmanager``."""
    from diagnosis.telemetry.alertmanager import read_alert

    if value is None:
        return None
    try:
        read_alert({"status": "firing", "labels": {}, "startsAt": value})
    except Exception as exc:  # IncidentLogError: the reason is the message
        rows = getattr(exc, "rows", None) or [{"reason": str(exc)}]
        raise ValueError(rows[0]["reason"]) from None
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=_LONG)


class AlertmanagerAlert(_Body):
    """One alert of an Alertmanager webhook notification (version 4)."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(max_length=64)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=64)
    startsAt: str = Field(max_length=64)  # RFC 3339, checked by read_alert (diagnosis.telemetry.alertmanager)
    endsAt: str = Field(default="0001-01-01T00:00:00Z", max_length=64)
    generatorURL: str = ""
    fingerprint: str = Field(default="", max_length=_SHORT)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k, x in v.items():
            if len(k) > _SHORT or len(x) > _SHORT:
                raise ValueError(f"label {k[:40]!r}: names and values are at most {_SHORT} characters")
        return v


class AlertmanagerPayload(_Body):
    """The Alertmanager webhook payload, version 4."""

    version: Literal["4"]
    groupKey: str = Field(max_length=_LONG)
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AlertmanagerAlert] = Field(max_length=1000)


class ObservationItem(_Body):
    """A check's result: ``fired``, ``passed``, or ``soft`` with the likelihoods of its score."""

    symptom: str = Field(min_length=1, max_length=_SHORT)
    value: Literal["fired", "passed", "soft"]
    p_fired: float | None = Field(default=None, ge=0.0, le=1.0)
    p_passed: float | None = Field(default=None, ge=0.0, le=1.0)
    time: str | None = Field(default=None, max_length=64)

    @field_validator("time")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        return _check_time(v)

    @model_validator(mode="after")
    def _soft(self) -> ObservationItem:
        if self.value == "soft":
            if self.p_fired is None or self.p_passed is None:
                raise ValueError("a soft observation needs p_fired and p_passed")
            if self.p_fired == 0 and self.p_passed == 0:
                raise ValueError("p_fired and p_passed cannot both be 0")
        return self


class ObservationsRequest(_Body):
    """Observations of checks that are not alerts, for one incident (default: the open one)."""

    incident: str | None = Field(default=None, max_length=_SHORT)
    observations: list[ObservationItem] = Field(min_length=1, max_length=1000)


class ActionRequest(_Body):
    """A recovery action a person took, and its outcome (a failure is evidence)."""

    action: str = Field(min_length=1, max_length=_SHORT)
    target: str = Field(min_length=1, max_length=_SHORT)
    outcome: Literal["success", "failure", "unknown"]
    time: str | None = Field(default=None, max_length=64)
    note: str = Field(default="", max_length=2000)

    @field_validator("time")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        return _check_time(v)


class ApproveRequest(_Body):
    """Approval of a pending hook run (the body is optional)."""

    target: str | None = Field(default=None, max_length=_SHORT)
    note: str = Field(default="", max_length=2000)


class RootCause(_Body):
    component: str = Field(min_length=1, max_length=_SHORT)
    fault_mode: str | None = Field(default=None, max_length=_SHORT)


class CloseRequest(_Body):
    """Close an incident, with the confirmed root cause when known."""

    root_cause: RootCause | None = None
    note: str = Field(default="", max_length=2000)
