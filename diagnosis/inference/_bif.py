"""BIF and XMLBIF parsers straight to :class:`ModelTables` (private helper of :mod:`.modelfile`).

pgmpy's readers build a pyparsing grammar, a pandas frame per table and a
pgmpy model; on win95pts that is seconds, most of ``diagnosis query``'s time.
These read the same files into numpy tables directly:

* BIF (the interchange format of Cozman/Hulten-Domingos, as written by
  bnlearn, pgmpy, GeNIe): ``network``, ``variable`` blocks with
  ``type discrete [ k ] { s1, ..., sk };`` and ``probability ( X | P1, P2 )``
  blocks of rows ``(p1, p2) v1, ..., vk;``, a ``table`` (the child's state
  slowest, as pgmpy reads it) or a ``default`` row for parent configurations
  not listed. ``property`` statements and C/C++ comments are ignored; quotes
  around names are dropped and names are matched case-insensitively, as pgmpy
  does.
* XMLBIF 0.3: ``VARIABLE`` (``NAME``, ``OUTCOME``) and ``DEFINITION`` (``FOR``,
  ``GIVEN``, ``TABLE``, the child's state fastest).

Every table is checked (shape, finite, non-negative, columns summing to 1) by
:meth:`ModelTables.from_cpts`; a problem is a :class:`BIFError` naming the line.
"""

from __future__ import annotations

import re
from itertools import chain

import numpy as np

from diagnosis.inference.tables import ModelTables

__all__ = ["BIFError", "BIFSyntaxError", "parse_bif", "parse_xmlbif"]


class BIFError(ValueError):
    """The text is not a valid network; the message says where and why."""


class BIFSyntaxError(BIFError):
    """The text is not BIF (or not well-formed XML): the parser's own message is the precise one."""


_COMMENTS = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")|(/\*.*?\*/|//[^\n]*)', re.DOTALL)
_WORD = re.compile(r"\s*([A-Za-z_]+)")
_STATES = re.compile(r"type\s+discrete\s*\[\s*(\d+)\s*\]\s*\{([^}]*)\}\s*;", re.DOTALL)
_SEP = re.compile(r"[\s,]+")
_BRACES = re.compile(r"[{}]")


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _split_names(raw: str) -> list[str]:
    """Names in a list: comma-separated (names may hold spaces), else whitespace-separated."""
    if "," in raw:
        return [s.strip() for s in raw.split(",") if s.strip()]
    return raw.split()


def _numbers(raw: str, text: str, pos: int) -> np.ndarray:
    parts = [p for p in _SEP.split(raw.strip()) if p]
    try:
        return np.array(parts, dtype=np.float64)
    except ValueError:
        bad = next(p for p in parts if not _is_float(p))
        raise BIFError(f"line {_line(text, pos)}: {bad!r} is not a number") from None


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _block_end(text: str, open_pos: int) -> int:
    """Index just past the ``}`` matching the ``{`` at ``open_pos``."""
    depth = 0
    for m in _BRACES.finditer(text, open_pos):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return m.end()
    raise BIFError(f"line {_line(text, open_pos)}: '{{' is never closed")


def parse_bif(text: str) -> ModelTables:
    """Parse BIF text into model tables (variables in declaration order).

    Raises
    ------
    BIFError
        Syntax errors, unknown variables or states, rows of the wrong length,
        missing rows or tables, cycles, or tables that do not normalise.
    """
    if "/*" in text or "//" in text:
        text = _COMMENTS.sub(lambda m: m.group(1) or "", text)
    text = text.replace('"', " ")
    variables: dict[str, list[str]] = {}
    lines: dict[str, int] = {}
    blocks: list[tuple[str, list[str], str, int]] = []  # (variable, parents, body, position of body)
    pos, n = 0, len(text)
    while True:
        m = _WORD.match(text, pos)
        if m is None:
            if text[pos:].strip():
                raise BIFError(f"line {_line(text, pos)}: expected 'network', 'variable' or 'probability'")
            break
        word, start = m.group(1), m.start(1)
        if word == "network":
            brace = text.find("{", m.end())
            if brace < 0:
                raise BIFError(f"line {_line(text, start)}: 'network' without a '{{' block")
            pos = _block_end(text, brace)
        elif word == "variable":
            brace = text.find("{", m.end())
            if brace < 0:
                raise BIFError(f"line {_line(text, start)}: 'variable' without a '{{' block")
            name = text[m.end() : brace].strip()
            end = _block_end(text, brace)
            if not name:
                raise BIFError(f"line {_line(text, start)}: a variable without a name")
            body = text[brace + 1 : end - 1]
            sm = _STATES.search(body)
            if sm is None:
                raise BIFError(
                    f"line {_line(text, start)}: variable {name!r} has no 'type discrete [ k ] {{ ... }};' declaration"
                )
            states = _split_names(sm.group(2))
            if len(states) != int(sm.group(1)):
                raise BIFError(
                    f"line {_line(text, start)}: variable {name!r} declares {sm.group(1)} states but lists {len(states)}"
                )
            if len(set(states)) != len(states):
                raise BIFError(f"line {_line(text, start)}: variable {name!r} lists a state twice")
            if name in variables:
                raise BIFError(f"line {_line(text, start)}: variable {name!r} is declared twice")
            variables[name] = states
            lines[name] = start
            pos = end
        elif word == "probability":
            open_ = text.find("(", m.end())
            close = text.find(")", open_ + 1)
            brace = text.find("{", close + 1)
            if open_ < 0 or close < 0 or brace < 0 or text[m.end() : open_].strip() or text[close + 1 : brace].strip():
                raise BIFError(f"line {_line(text, start)}: expected 'probability ( X | parents ) {{'")
            head = text[open_ + 1 : close]
            child, bar, rest = head.partition("|")
            if bar:
                child = child.strip()
                parents = [p.strip() for p in rest.split(",")]
            else:  # old style: the first word is the variable, the rest are its parents
                words = head.replace(",", " ").split()
                child, parents = (words[0], words[1:]) if words else ("", [])
            if not child or any(not p for p in parents):
                raise BIFError(f"line {_line(text, start)}: cannot read the header 'probability ({head.strip()})'")
            end = text.find("}", brace)
            if end < 0:
                raise BIFError(f"line {_line(text, brace)}: '{{' is never closed")
            blocks.append((child, parents, text[brace + 1 : end], brace + 1))
            pos = end + 1
        else:
            raise BIFSyntaxError(f"line {_line(text, start)}: unexpected {word!r}")
        if pos >= n:
            break
    if not variables:
        raise BIFError("no variables found")
    lower = {k.lower(): k for k in variables}

    def resolve(name: str, where: int) -> str:
        if name in variables:
            return name
        if name.lower() in lower:
            return lower[name.lower()]
        raise BIFError(f"line {_line(text, where)}: unknown variable {name!r}")

    cpts: dict[str, tuple[list[str], np.ndarray]] = {}
    for child, parents, body, at in blocks:
        child = resolve(child, at)
        parents = [resolve(p, at) for p in parents]
        if child in cpts:
            raise BIFError(f"line {_line(text, at)}: a second probability block for {child!r}")
        if len(set(parents)) != len(parents) or child in parents:
            raise BIFError(f"line {_line(text, at)}: {child!r} lists a parent twice or itself")
        cpts[child] = (parents, _table(child, parents, body, at, variables, text))
    missing = [v for v in variables if v not in cpts]
    if missing:
        raise BIFError(f"line {_line(text, lines[missing[0]])}: variable {missing[0]!r} has no probability block")
    return _tables(variables, cpts)


def _table(child, parents, body, at, variables, text) -> np.ndarray:
    """The CPT of ``child`` as an array ``(card, *parent cards)`` from a probability block's body."""
    card = len(variables[child])
    pcards = [len(variables[p]) for p in parents]
    ncols = int(np.prod(pcards)) if pcards else 1
    values = np.full((card, ncols), np.nan)
    strides = np.cumprod([1, *pcards[::-1]])[:-1][::-1] if pcards else np.zeros(0, dtype=np.int64)
    lookups = [{s: i for i, s in enumerate(variables[p])} for p in parents]
    default = None
    offset = 0
    row_cols: list[int] = []
    row_text: list[str] = []
    row_where: list[int] = []
    for stmt in body.split(";"):
        where = at + offset + len(stmt) - len(stmt.lstrip())
        offset += len(stmt) + 1
        s = stmt.strip()
        if not s or s.startswith("property"):
            continue
        if s.startswith("("):
            close = s.find(")")
            if close < 0:
                raise BIFError(f"line {_line(text, where)}: a row of {child!r} without ')'")
            states = [x.strip() for x in s[1:close].split(",")] if "," in s[1:close] else s[1:close].split()
            if len(states) != len(parents):
                raise BIFError(
                    f"line {_line(text, where)}: a row of {child!r} names {len(states)} parent states, "
                    f"expected {len(parents)}"
                )
            col = 0
            for p, st, lk, stride in zip(parents, states, lookups, strides):
                i = lk.get(st)
                if i is None:
                    raise BIFError(f"line {_line(text, where)}: unknown state {st!r} of {p!r} in a row of {child!r}")
                col += i * int(stride)
            row_cols.append(col)
            row_text.append(s[close + 1 :])
            row_where.append(where)
            continue
        keyword = s.split(None, 1)[0]
        if keyword in ("table", "default"):
            nums = _numbers(s[len(keyword) :], text, where)
            if keyword == "default":
                if nums.size != card:
                    raise BIFError(
                        f"line {_line(text, where)}: the default row of {child!r} has {nums.size} values, "
                        f"expected {card}"
                    )
                default = nums
                continue
            if nums.size != card * ncols:
                raise BIFError(
                    f"line {_line(text, where)}: the table of {child!r} has {nums.size} values, expected {card * ncols}"
                )
            values[...] = nums.reshape(card, ncols)
            continue
        raise BIFError(f"line {_line(text, where)}: cannot read {s[:40]!r} in the probability block of {child!r}")
    if row_cols:  # all rows' numbers parsed at once (pathfinder has 20,000 rows)
        parts = [t.replace(",", " ").split() for t in row_text]
        for p, w in zip(parts, row_where):
            if len(p) != card:
                raise BIFError(f"line {_line(text, w)}: a row of {child!r} has {len(p)} values, expected {card}")
        try:
            nums = np.array(list(chain.from_iterable(parts)), dtype=np.float64).reshape(len(row_cols), card)
        except ValueError:
            for t, w in zip(row_text, row_where):
                _numbers(t, text, w)  # raises, naming the line
            raise
        values[:, row_cols] = nums.T
    if default is not None:
        unset = np.isnan(values[0])
        values[:, unset] = default[:, None]
    if np.isnan(values).any():
        col = int(np.flatnonzero(np.isnan(values).any(axis=0))[0])
        idx = np.unravel_index(col, pcards) if pcards else ()
        which = ", ".join(variables[p][int(i)] for p, i in zip(parents, idx))
        raise BIFError(f"line {_line(text, at)}: no probabilities for {child!r} given ({which})")
    return values.reshape((card, *pcards))


def parse_xmlbif(text: str) -> ModelTables:
    """Parse XMLBIF 0.3 text into model tables (variables in declaration order).

    Raises
    ------
    BIFError
        Malformed XML, missing elements, unknown variables, tables of the wrong
        size, cycles, or tables that do not normalise.
    """
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise BIFSyntaxError(f"not well-formed XML: {exc}") from None
    net = root if root.tag == "NETWORK" else root.find("NETWORK")
    if net is None:
        raise BIFError("no NETWORK element")
    variables: dict[str, list[str]] = {}
    for var in net.findall("VARIABLE"):
        name_el = var.find("NAME")
        if name_el is None or not (name_el.text or "").strip():
            raise BIFError("a VARIABLE without a NAME")
        name = name_el.text.strip()
        states = [(o.text or "").strip() for o in var.findall("OUTCOME")]
        if not states:
            raise BIFError(f"variable {name!r} has no OUTCOME")
        if len(set(states)) != len(states):
            raise BIFError(f"variable {name!r} lists an outcome twice")
        if name in variables:
            raise BIFError(f"variable {name!r} is declared twice")
        variables[name] = states
    if not variables:
        raise BIFError("no variables found")
    cpts: dict[str, tuple[list[str], np.ndarray]] = {}
    for d in net.findall("DEFINITION"):
        for_el = d.find("FOR")
        child = (for_el.text or "").strip() if for_el is not None else ""
        if child not in variables:
            raise BIFError(f"a DEFINITION for unknown variable {child!r}")
        parents = [(g.text or "").strip() for g in d.findall("GIVEN")]
        for p in parents:
            if p not in variables:
                raise BIFError(f"the DEFINITION of {child!r} names unknown parent {p!r}")
        if child in cpts:
            raise BIFError(f"a second DEFINITION for {child!r}")
        if len(set(parents)) != len(parents) or child in parents:
            raise BIFError(f"{child!r} lists a parent twice or itself")
        table_el = d.find("TABLE")
        if table_el is None:
            raise BIFError(f"the DEFINITION of {child!r} has no TABLE")
        parts = (table_el.text or "").split()
        try:
            nums = np.array(parts, dtype=np.float64)
        except ValueError:
            raise BIFError(f"the TABLE of {child!r} holds something that is not a number") from None
        card = len(variables[child])
        pcards = [len(variables[p]) for p in parents]
        need = card * int(np.prod(pcards)) if pcards else card
        if nums.size != need:
            raise BIFError(f"the TABLE of {child!r} has {nums.size} values, expected {need}")
        # parent configurations in row-major order (last GIVEN fastest), the child's state fastest
        cpts[child] = (parents, np.moveaxis(nums.reshape((*pcards, card)), -1, 0))
    missing = [v for v in variables if v not in cpts]
    if missing:
        raise BIFError(f"variable {missing[0]!r} has no DEFINITION")
    return _tables(variables, cpts)


def _tables(variables: dict, cpts: dict) -> ModelTables:
    """The network in declaration order: states from ``variables``, (parents, table) from ``cpts``."""
    names = list(variables)
    return ModelTables.from_cpts(
        names,
        [variables[v] for v in names],
        [cpts[v][0] for v in names],
        [cpts[v][1] for v in names],
        error=BIFError,
    )
