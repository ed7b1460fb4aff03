"""Names a package exports, imported from their modules on first use (PEP 562).

A package's ``__init__`` maps each public name to the module that defines it
and calls :func:`attach`; ``import diagnosis`` (and ``diagnosis --version``)
then imports none of numpy, pandas, scipy or pgmpy, and the first use of a
name imports only its own module.

>>> getattr_, dir_ = attach("json", {"dumps": "json"})
>>> getattr_("dumps")([1])
'[1]'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["attach"]


def attach(
    package: str, names: Mapping[str, str], *, submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : mapping
        Public name -> the module defining it.
    submodules : iterable of str
        Sub-modules reachable as attributes (``package.logs``), imported on first use.
    """
    subs = frozenset(submodules)

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
        elif name in subs:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names) | subs)

    return __getattr__, __dir__
