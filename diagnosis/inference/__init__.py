"""Inference engines behind one interface.

Every engine answers ``query(targets, evidence, soft_evidence, n_cases=B)``
for a batch of cases and has ``name`` and ``kind`` (``"exact"`` or
``"approximate"``). Engines take a pgmpy ``DiscreteBayesianNetwork`` (the
boundary: pgmpy objects stay inside :mod:`diagnosis.network` and this
package) and return numpy arrays.

- :class:`CompiledEngine`: exact, a junction tree compiled per evidence
  pattern, batched; the default.
- :class:`LoopyBPEngine`: loopy belief propagation, for models whose exact
  tables exceed the memory budget; its ``assumption`` says what it rests on.
- :class:`ReferenceEngine`: pgmpy's ``VariableElimination``, the slow,
  independent reference used by the tests.
- :func:`make_engine`: exact when it fits the budget, else refuse or approximate.
"""

from diagnosis.inference.approximate import LoopyBPEngine
from diagnosis.inference.compiled import DEFAULT_MEMORY_BUDGET, CompiledEngine, CompiledStats, ModelTooLargeError
from diagnosis.inference.modelfile import read_cases, read_model, write_posteriors
from diagnosis.inference.reference import ReferenceEngine
from diagnosis.inference.select import make_engine

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "CompiledEngine",
    "CompiledStats",
    "LoopyBPEngine",
    "ModelTooLargeError",
    "ReferenceEngine",
    "make_engine",
    "read_cases",
    "read_model",
    "write_posteriors",
]
