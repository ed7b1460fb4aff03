"""The one engine contract, what the engines share, and the one way to choose an engine.

- :class:`Engine`: the protocol every engine implements (``query`` over a
  batch of cases, ``name``, ``kind``, ``variables``, ``states``).
- :class:`TableEngine`: the base of the engines that run on our own
  :class:`~diagnosis.inference.tables.ModelTables` (the compiled exact engine
  and loopy BP): pickling of tables and settings only, and a bounded cache of
  compiled plans keyed by evidence signature.
- :func:`make_engine`: an engine by name for a network, a pgmpy model or
  tables -- exact when it fits the memory budget.
- :func:`engine_label`: how an engine is named in outputs.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from diagnosis._validation import Options, check_param
from diagnosis.exceptions import ApproximationWarning, ModelTooLargeError, ParameterError
from diagnosis.inference import ENGINES
from diagnosis.inference.tables import ModelTables

__all__ = ["DEFAULT_MEMORY_BUDGET", "ENGINES", "Engine", "TableEngine", "engine_label", "make_engine"]

#: Memory an exact engine may use for its tables and one batch chunk (2 GiB).
DEFAULT_MEMORY_BUDGET = 2**31
#: Compiled evidence signatures kept per engine.
PLAN_CACHE_SIZE = 8


@runtime_checkable
class Engine(Protocol):
    """What every inference engine provides.

    Attributes
    ----------
    name : str
        A short name (``"compiled-jtree"``, ``"loopy-bp"``, ``"pgmpy-ve"``).
    kind : str
        ``"exact"`` or ``"approximate"``.
    variables : tuple of str
        Every variable of the network.
    states : Mapping[str, tuple of str]
        State names per variable.
    """

    name: str
    kind: str
    variables: tuple[str, ...]
    states: Mapping[str, tuple[str, ...]]

    def query(
        self,
        targets: Sequence[str],
        evidence: Mapping[str, np.ndarray] | None = None,
        soft_evidence: Mapping[str, np.ndarray] | None = None,
        *,
        n_cases: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Posterior marginals of ``targets`` for a batch of ``B`` cases.

        Parameters
        ----------
        targets : sequence of str
            Variables whose marginals to return.
        evidence : mapping str -> int array of shape (B,), optional
            Hard evidence: the state index per case; -1 means unobserved in that case.
        soft_evidence : mapping str -> float array of shape (B, card), optional
            Likelihood vectors per case (virtual evidence); rows need not sum to 1.
        n_cases : int, optional
            ``B``, required when there is no evidence to infer it from.

        Returns
        -------
        dict of str to ndarray
            ``{target: array (B, card)}``, each row summing to 1.

        Raises
        ------
        EvidenceError
            Unknown variable or state, or evidence of probability zero, naming the cases.
        """
        ...


class TableEngine:
    """Shared machinery of the engines that run on :class:`ModelTables`.

    Subclasses set ``name`` and ``kind``, call ``super().__init__(tables)`` and
    get ``variables``, ``states``, pickling of the tables and settings (compiled
    plans are rebuilt on first use) and :meth:`_cached_plan`.
    """

    name = "table-engine"
    kind = "exact"

    def __init__(self, tables: ModelTables):
        self._tables = tables
        self.variables: tuple[str, ...] = tables.names
        self.states: Mapping[str, tuple[str, ...]] = self._states_of(tables)
        self._plans: OrderedDict = OrderedDict()

    @staticmethod
    def _states_of(tables: ModelTables) -> Mapping[str, tuple[str, ...]]:
        return MappingProxyType({n: tables.states[i] for i, n in enumerate(tables.names)})

    @property
    def tables(self) -> ModelTables:
        """The network the engine answers for."""
        return self._tables

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("states", None)
        state["_plans"] = OrderedDict()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.states = self._states_of(self._tables)

    def _cached_plan(self, key: Any, build: Callable[[], Any]) -> Any:
        """The plan for ``key`` from the cache, else ``build()`` (kept, least recently used dropped)."""
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        plan = build()
        self._plans[key] = plan
        while len(self._plans) > PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return plan


def make_engine(
    model: Any,
    engine: str = "auto",
    *,
    memory_budget_bytes: int | None = None,
    **approximate_options: Any,
) -> Engine:
    """Build an inference engine for ``model``.

    Parameters
    ----------
    model : Network, ModelTables or pgmpy.models.DiscreteBayesianNetwork
        The network. Our own :class:`~diagnosis.model.network.Network` goes
        straight to the engines' tables (no pgmpy import on that path).
    engine : {"auto", "exact", "approximate", "reference"}, default "auto"
        ``"exact"``: the compiled junction-tree engine, refused with
        :class:`~diagnosis.exceptions.ModelTooLargeError` when its tables exceed
        the memory budget. ``"auto"``: exact when it fits, otherwise loopy belief
        propagation with an :class:`~diagnosis.exceptions.ApproximationWarning`
        (the engine's ``kind`` and ``fallback_reason`` say so). ``"approximate"``:
        loopy belief propagation. ``"reference"``: pgmpy's exact
        ``VariableElimination``, slow, kept as the independent check.
    memory_budget_bytes : int, optional
        Budget for the exact engine (default 2 GiB).
    **approximate_options
        Passed to :class:`~diagnosis.inference.approximate.LoopyBPEngine`
        (``max_iterations``, ``tolerance``, ``damping``).

    Returns
    -------
    Engine

    Raises
    ------
    ParameterError
        An unknown engine name, or a bad budget.
    ModelError
        Invalid tables; a model too large for ``"exact"``.

    Examples
    --------
    >>> from diagnosis import build_network, bundled_topology, load_topology
    >>> net = build_network(load_topology(bundled_topology("webshop")))
    >>> engine = make_engine(net)
    >>> engine.kind, engine.name
    ('exact', 'compiled-jtree')
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     make_engine(net, memory_budget_bytes=1_000).kind
    'approximate'
    """
    from diagnosis.inference.compiled import CompiledEngine

    check_param("engine", engine, [Options(ENGINES)], caller="make_engine")
    budget = DEFAULT_MEMORY_BUDGET if memory_budget_bytes is None else memory_budget_bytes
    check_param("memory_budget_bytes", budget, [int], caller="make_engine")
    if engine == "reference":
        from diagnosis.inference.reference import ReferenceEngine

        return ReferenceEngine(_pgmpy_model(model))
    tables = _tables_of(model)
    if engine == "approximate":
        from diagnosis.inference.approximate import LoopyBPEngine

        return LoopyBPEngine(tables, memory_budget_bytes=budget, **approximate_options)
    try:
        return CompiledEngine(tables, memory_budget_bytes=budget)
    except ModelTooLargeError as exc:
        if engine == "exact":
            raise ModelTooLargeError(
                f"{exc}; use engine='auto' (or 'approximate') for loopy belief propagation instead",
                needed_bytes=exc.needed_bytes,
                budget_bytes=exc.budget_bytes,
                treewidth=exc.treewidth,
            ) from None
        from diagnosis.inference.approximate import LoopyBPEngine

        approx = LoopyBPEngine(tables, memory_budget_bytes=budget, **approximate_options)
        approx.fallback_reason = str(exc)
        warnings.warn(
            f"exact inference does not fit ({exc}); answering with loopy belief propagation, "
            f"an approximation: {approx.assumption}",
            ApproximationWarning,
            stacklevel=2,
        )
        return approx


def engine_label(engine: Any) -> str:
    """How outputs name an engine: its ``name``, with its ``kind`` when the name does not say it.

    >>> class E:
    ...     name, kind = "loopy-bp", "approximate"
    >>> engine_label(E())
    'loopy-bp (approximate)'
    """
    name = getattr(engine, "name", type(engine).__name__)
    kind = getattr(engine, "kind", None)
    return f"{name} ({kind})" if kind and kind not in name else name


def _tables_of(model: Any) -> ModelTables:
    if isinstance(model, ModelTables):
        return model
    if hasattr(model, "fault_variable") and hasattr(model, "variables"):  # our Network
        return ModelTables.from_variables(model.variables)
    if hasattr(model, "get_cpds"):
        return ModelTables.from_pgmpy(model)
    raise ParameterError(
        f"The 'model' parameter of make_engine must be a Network, ModelTables or a pgmpy "
        f"DiscreteBayesianNetwork. Got {type(model).__name__} instead."
    )


def _pgmpy_model(model: Any):
    if hasattr(model, "to_pgmpy"):
        return model.to_pgmpy()
    if hasattr(model, "get_cpds"):
        return model
    raise ParameterError(
        "The 'model' parameter of make_engine must be a Network or a pgmpy DiscreteBayesianNetwork "
        f"for engine='reference'. Got {type(model).__name__} instead."
    )
