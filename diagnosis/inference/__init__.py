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

from diagnosis._lazy import attach as _attach

# Names are imported from their modules on first use (PEP 562), so importing
# one module of this package does not import all of them.
#: Engine names :func:`make_engine` accepts (here, so the CLI can offer them without importing numpy).
ENGINES = ("auto", "exact", "approximate", "reference")
_LAZY = {
    "CompiledEngine": "diagnosis.inference.compiled",
    "CompiledStats": "diagnosis.inference.compiled",
    "DEFAULT_MEMORY_BUDGET": "diagnosis.inference.base",
    "Engine": "diagnosis.inference.base",
    "LoopyBPEngine": "diagnosis.inference.approximate",
    "ModelTables": "diagnosis.inference.tables",
    "ReferenceEngine": "diagnosis.inference.reference",
    "TableEngine": "diagnosis.inference.base",
    "engine_label": "diagnosis.inference.base",
    "make_engine": "diagnosis.inference.base",
    "read_cases": "diagnosis.inference.modelfile",
    "read_model": "diagnosis.inference.modelfile",
    "read_tables": "diagnosis.inference.modelfile",
    "write_posteriors": "diagnosis.inference.modelfile",
}


__getattr__, __dir__ = _attach(__name__, _LAZY)

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
    "read_tables",
    "write_posteriors",
]
