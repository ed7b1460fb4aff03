"""The layout rules of the house, checked: rooms along the data flow, no private back doors."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "diagnosis"
#: Private top-level modules that exist to be shared by every sub-package.
SHARED_PRIVATE = {"diagnosis._files", "diagnosis._validation", "diagnosis._time", "diagnosis._lazy"}


def _room(module: str) -> str:
    """The sub-package a module belongs to (``diagnosis`` for top-level modules)."""
    parts = module.split(".")
    if len(parts) >= 2 and (PACKAGE / parts[1]).is_dir():
        return ".".join(parts[:2])
    return "diagnosis"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def private_imports() -> list[str]:
    """Every import of a ``_private`` name or module from outside the importer's own sub-package."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _room(_module_name(path))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "diagnosis":
                there = _room(node.module)
                private_module = any(p.startswith("_") for p in node.module.split(".")[1:])
                for alias in node.names:
                    name = alias.name
                    if name.startswith("__") or there == here:
                        continue
                    # a _private name is never imported across rooms (`from diagnosis import _files` included);
                    # the public names of the shared private modules may be
                    if name.startswith("_") or (private_module and node.module not in SHARED_PRIVATE):
                        bad.append(
                            f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: from {node.module} import {name}"
                        )
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] == "diagnosis" and any(p.startswith("_") for p in parts[1:]):
                        if alias.name not in SHARED_PRIVATE and _room(alias.name) != here:
                            bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: import {alias.name}")
    return bad


def test_no_private_back_doors():
    assert private_imports() == []


def test_at_most_ten_top_level_modules():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 10, modules


def test_only_plotting_imports_matplotlib():
    users = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] == "matplotlib" for n in names):
                users.append(path.name)
    assert set(users) <= {"plotting.py"}, users


def test_one_make_engine():
    defs = [
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name == "make_engine"
    ]
    assert defs == ["diagnosis/inference/base.py"]


def test_every_engine_implements_the_protocol(tmp_path):
    from diagnosis import build_network, bundled_topology, load_topology
    from diagnosis.inference import Engine, make_engine

    net = build_network(load_topology(bundled_topology("webshop")))
    for name in ("exact", "approximate", "reference"):
        engine = make_engine(net, name)
        assert isinstance(engine, Engine), name
        out = engine.query([net.fault_variable["db"]], n_cases=1)
        assert abs(out[net.fault_variable["db"]].sum() - 1.0) < 1e-12
