"""Incident logs: the record schema, its three formats, simulation with ground truth, batch scoring.

- :mod:`~diagnosis.logs.schema`: the incident record and its long-form frames, validation and rejects.
- :mod:`~diagnosis.logs.formats`: JSON Lines, Parquet and CSV readers and writers.
- :mod:`~diagnosis.logs.simulate`: incidents sampled from a topology's own model.
- :mod:`~diagnosis.logs.scoring`: every incident of a log diagnosed; accuracy and calibration.
"""

from diagnosis.logs.formats import (
    FORMATS,
    detect_format,
    iter_incident_frames,
    read_incidents,
    write_incidents,
    write_rejects,
)
from diagnosis.logs.schema import Incident, IncidentFrame, Reject, validate_frame
from diagnosis.logs.scoring import ScoreSummary, score_frame, score_log
from diagnosis.logs.simulate import iter_simulate, simulate

__all__ = [
    "FORMATS",
    "Incident",
    "IncidentFrame",
    "Reject",
    "ScoreSummary",
    "detect_format",
    "iter_incident_frames",
    "iter_simulate",
    "read_incidents",
    "score_frame",
    "score_log",
    "simulate",
    "validate_frame",
    "write_incidents",
    "write_rejects",
]
