"""Inference engines behind one protocol.

Every engine implements :class:`Engine`: ``query(targets, evidence,
soft_evidence, n_cases=B)`` for a batch of cases, with ``name``, ``kind``
(``"exact"`` or ``"approximate"``), ``variables`` and ``states``. Engines take
our own :class:`ModelTables` (built from a :class:`~diagnosis.model.network.Network`
without pgmpy), or a pgmpy ``DiscreteBayesianNetwork`` read from a model file,
and return numpy arrays.

- :class:`CompiledEngine`: exact, a junction tree compiled per evidence
  pattern, batched; the default.
- :class:`LoopyBPEngine`: loopy belief propagation, for models whose exact
  tables exceed the memory budget; its ``assumption`` says what it rests on.
- :class:`ReferenceEngine`: pgmpy's ``VariableElimination``, the slow,
  independent reference used by the tests.
- :func:`make_engine`: the one way to choose: exact when it fits the budget,
  else refuse or approximate (with an :class:`~diagnosis.exceptions.ApproximationWarning`).
- :mod:`~diagnosis.inference.modelfile`: BIF/XMLBIF models and case files.
"""

from diagnosis.inference.approximate import LoopyBPEngine
from diagnosis.inference.base import DEFAULT_MEMORY_BUDGET, ENGINES, Engine, TableEngine, engine_label, make_engine
from diagnosis.inference.compiled import CompiledEngine, CompiledStats
from diagnosis.inference.modelfile import read_cases, read_model, write_posteriors
from diagnosis.inference.reference import ReferenceEngine
from diagnosis.inference.tables import ModelTables

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "ENGINES",
    "CompiledEngine",
    "CompiledStats",
    "Engine",
    "LoopyBPEngine",
    "ModelTables",
    "ReferenceEngine",
    "TableEngine",
    "engine_label",
    "make_engine",
    "read_cases",
    "read_model",
    "write_posteriors",
]
