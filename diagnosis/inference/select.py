"""Choose between exact and approximate inference for a model.

:func:`make_engine` compiles the exact engine when its junction tree fits the
memory budget.  Otherwise it refuses the model with a
:class:`~diagnosis.inference.compiled.ModelTooLargeError` (a
:class:`~diagnosis.exceptions.ModelError`), or -- when the caller allows it --
returns the loopy-BP engine, whose ``assumption`` says what its answers rest on.
Either way the engine's ``kind`` says which one was chosen.
"""

from __future__ import annotations

from diagnosis.inference._tables import ModelTables
from diagnosis.inference.approximate import LoopyBPEngine
from diagnosis.inference.compiled import DEFAULT_MEMORY_BUDGET, CompiledEngine, ModelTooLargeError

__all__ = ["make_engine"]


def make_engine(
    model,
    *,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    allow_approximate: bool = False,
    **approximate_options,
) -> CompiledEngine | LoopyBPEngine:
    """Return the exact engine if it fits ``memory_budget_bytes``, else refuse or approximate.

    Parameters
    ----------
    model : pgmpy.models.DiscreteBayesianNetwork or ModelTables
    memory_budget_bytes : int, default 2 GiB
        Memory the engine may use for its tables and one batch chunk.
    allow_approximate : bool, default False
        Fall back to :class:`~diagnosis.inference.approximate.LoopyBPEngine`
        instead of raising when exact inference does not fit.
    **approximate_options
        Passed to :class:`~diagnosis.inference.approximate.LoopyBPEngine`
        (``max_iterations``, ``tolerance``, ``damping``).

    Returns
    -------
    CompiledEngine or LoopyBPEngine
        ``engine.kind`` is ``"exact"`` or ``"approximate"``; an approximate engine
        chosen here has ``fallback_reason`` set to why exact was refused.

    Raises
    ------
    ModelError
        Invalid tables; or (as :class:`~diagnosis.inference.compiled.ModelTooLargeError`)
        a model too large for exact inference when ``allow_approximate`` is False.

    Examples
    --------
    >>> from diagnosis import build_network, bundled_topology, load_topology
    >>> model = build_network(load_topology(bundled_topology("webshop"))).to_pgmpy()
    >>> engine = make_engine(model, allow_approximate=True)
    >>> engine.kind, engine.name
    ('exact', 'compiled-jtree')
    >>> make_engine(model, memory_budget_bytes=1_000, allow_approximate=True).kind
    'approximate'
    """
    tables = model if isinstance(model, ModelTables) else ModelTables.from_pgmpy(model)
    try:
        return CompiledEngine(tables, memory_budget_bytes=memory_budget_bytes)
    except ModelTooLargeError as exc:
        if not allow_approximate:
            raise ModelTooLargeError(
                f"{exc}; pass allow_approximate=True to use loopy belief propagation instead",
                needed_bytes=exc.needed_bytes, budget_bytes=exc.budget_bytes, treewidth=exc.treewidth,
            ) from None
        engine = LoopyBPEngine(tables, memory_budget_bytes=memory_budget_bytes, **approximate_options)
        engine.fallback_reason = str(exc)
        return engine
