"""Read models and cases from files; write posteriors.

* :func:`read_model` -- a discrete Bayesian network from ``.bif``, ``.bif.gz``,
  ``.xmlbif`` or ``.xml`` (XMLBIF), as a pgmpy ``DiscreteBayesianNetwork``.
* :func:`read_tables` -- the same file as :class:`ModelTables` through our own
  BIF/XMLBIF parsers (no pgmpy; what ``diagnosis query`` uses).
* :func:`read_cases` -- a CSV of cases (one row per case, one column per observed
  variable, state names as values, blank = unobserved) as the batched evidence
  arrays the engines take.
* :func:`write_posteriors` -- posteriors as CSV or Parquet, one row per case and
  one ``VAR=STATE`` column per state, written atomically.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from diagnosis._files import atomic_write
from diagnosis.exceptions import EvidenceError, ModelError, ModelFileError, ParameterError, suggest
from diagnosis.inference.tables import ModelTables

__all__ = ["ModelFileError", "read_cases", "read_model", "read_tables", "write_posteriors"]

_MODEL_SUFFIXES = (".bif", ".bif.gz", ".xmlbif", ".xml", ".xmlbif.gz", ".xml.gz")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in sorted(_MODEL_SUFFIXES, key=len, reverse=True):
        if name.endswith(s):
            return s
    return path.suffix.lower()


def _model_text(path) -> tuple[Path, str, str]:
    """The file's path, suffix kind and decoded text; ModelFileError for what cannot be read."""
    p = Path(path)
    kind = _suffix(p)
    if kind not in _MODEL_SUFFIXES:
        raise ModelFileError(p, f"unsupported model file type {kind!r}; use one of {', '.join(_MODEL_SUFFIXES)}")
    if not p.exists():
        raise ModelFileError(p, "no such file")
    if p.is_dir():
        raise ModelFileError(p, "is a directory, not a model file")
    try:
        raw = p.read_bytes()
        if kind.endswith(".gz"):
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ModelFileError(p, f"cannot read: {exc}") from None
    if not text.strip():
        raise ModelFileError(p, "file is empty")
    return p, kind, text


def read_model(path: str | os.PathLike):
    """Read a discrete Bayesian network from a BIF or XMLBIF file.

    Parameters
    ----------
    path : str or path-like
        ``.bif``, ``.bif.gz``, ``.xmlbif``/``.xml`` (optionally ``.gz``).

    Returns
    -------
    pgmpy.models.DiscreteBayesianNetwork

    Raises
    ------
    ModelFileError
        The file does not exist, cannot be read or decompressed, has an
        unsupported extension, does not parse, or its tables are invalid (the
        message names the file).

    See Also
    --------
    read_tables : the same file as the engines' tables, without pgmpy (much faster).
    """
    p, kind, text = _model_text(path)
    _check_model_text(p, kind, text)
    try:
        from diagnosis.model.pgmpy_interop import BIFReader, XMLBIFReader  # quiet pgmpy import boundary

        reader = BIFReader if kind.startswith(".bif") else XMLBIFReader
        model = reader(string=text).get_model()
    except Exception as exc:  # the parsers raise many unrelated types on bad input
        fmt = kind.lstrip(".").split(".")[0].upper()
        raise ModelFileError(p, f"not a valid {fmt} network: {type(exc).__name__}: {exc}") from None
    fmt = kind.lstrip(".").split(".")[0].upper()
    if not list(model.nodes()):
        raise ModelFileError(p, f"not a valid {fmt} network: no variables found")
    try:
        ModelTables.from_pgmpy(model)
    except ModelError as exc:
        raise ModelFileError(p, str(exc)) from None
    return model


_BIF_VARIABLE = re.compile(r"^\s*variable\s+([^\s{]+)", re.M)
_BIF_PROBABILITY = re.compile(r"^\s*probability\s*\(\s*([^)|]+?)\s*(?:\|\s*([^)]*))?\)\s*\{", re.M)
_BIF_NUMBER = re.compile(
    r"(?<![\w.])([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?))(?![\w.])", re.I
)
_BIF_KEYWORDS = (
    "network",
    "variable",
    "probability",
    "property",
    "type",
    "table",
    "default",
    "}",
    "//",
    "/*",
    "*",
    "(",
)


def _check_bif_text(p: Path, text: str) -> None:
    """Check what the BIF parser reports badly: stray blocks, undeclared variables, bad numbers -- with a line."""
    lines = text.splitlines()
    # names may be quoted and match case-insensitively (as pgmpy's reader and ours read them)
    declared = {m.group(1).strip('"').lower(): m.group(1).strip('"') for m in _BIF_VARIABLE.finditer(text)}
    if not declared:
        bad = next(
            (
                (i, ln)
                for i, ln in enumerate(lines, start=1)
                if ln.strip() and not ln.strip().lower().startswith(_BIF_KEYWORDS)
            ),
            None,
        )
        where = (
            f"; line {bad[0]} ({bad[1].strip()[:60]!r}) is not a 'network', 'variable' or 'probability' block"
            if bad
            else ""
        )
        raise ModelFileError(p, f"not a valid BIF network: no 'variable' declaration found{where}")
    blocks = list(_BIF_PROBABILITY.finditer(text))
    for k, m in enumerate(blocks):
        line = text.count("\n", 0, m.start()) + 1
        child = m.group(1).strip()
        parents = [x.strip() for x in (m.group(2) or "").split(",") if x.strip()]
        for name in (child, *parents):
            if name.strip('"').lower() not in declared:
                raise ModelFileError(
                    p,
                    f"line {line}: the table 'probability ( {child}{' | ' + ', '.join(parents) if parents else ''} )' "
                    f"names the undeclared variable {name!r}{suggest(name, declared.values())}",
                )
        end = blocks[k + 1].start() if k + 1 < len(blocks) else len(text)
        body = text[m.end() : end]
        body = re.sub(r"\([^)]*\)", " ", body)  # parent state names: (yes, no)
        for num in _BIF_NUMBER.finditer(body):
            value = float(num.group(1))
            if not (value >= 0.0) or math.isinf(value):
                at = line + body.count("\n", 0, num.start())
                raise ModelFileError(
                    p,
                    f"line {at}: the table of {child!r} holds {num.group(1)!r}; "
                    "probabilities must be finite numbers >= 0",
                )


def _check_xmlbif_text(p: Path, text: str) -> None:
    """The XMLBIF twin of :func:`_check_bif_text`: undeclared variables and bad numbers, named with the variable."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ModelFileError(p, f"not valid XML: {exc}") from None
    except RecursionError:
        raise ModelFileError(p, "not valid XML: nested too deeply") from None
    declared = {(v.findtext("NAME") or "").strip() for v in root.iter("VARIABLE")}
    for d in root.iter("DEFINITION"):
        child = (d.findtext("FOR") or "").strip()
        for name in (child, *((g.text or "").strip() for g in d.findall("GIVEN"))):
            if name not in declared:
                raise ModelFileError(
                    p, f"the DEFINITION of {child!r} names the undeclared variable {name!r}{suggest(name, declared)}"
                )
        for cell in (d.findtext("TABLE") or "").split():
            try:
                value = float(cell)
            except ValueError:
                raise ModelFileError(p, f"the TABLE of {child!r} holds {cell!r}, which is not a number") from None
            if not (value >= 0.0) or math.isinf(value):
                raise ModelFileError(
                    p, f"the TABLE of {child!r} holds {cell!r}; probabilities must be finite numbers >= 0"
                )


def _check_model_text(p: Path, kind: str, text: str) -> None:
    """What a parser reports badly, checked first with a line (BIF) or the variable (XMLBIF)."""
    if kind.startswith(".bif"):
        _check_bif_text(p, text)
    else:
        _check_xmlbif_text(p, text)


def read_tables(path: str | os.PathLike) -> ModelTables:
    """Read a BIF or XMLBIF file straight into the engines' tables (no pgmpy).

    The same network as :func:`read_model` (variables in declaration order,
    states, parents and tables identical, except that a table column whose
    printed decimals sum to 1 only within 1e-5 is divided by its sum), parsed
    by our own readers: tens to hundreds of times faster, and without importing
    pgmpy. Pass the result to :func:`~diagnosis.inference.make_engine`.

    Parameters
    ----------
    path : str or path-like
        ``.bif``, ``.bif.gz``, ``.xmlbif``/``.xml`` (optionally ``.gz``).

    Returns
    -------
    ModelTables

    Raises
    ------
    ModelFileError
        As :func:`read_model`; a parse error names the line (BIF).
    """
    from diagnosis.inference._bif import BIFError, BIFSyntaxError, parse_bif, parse_xmlbif

    p, kind, text = _model_text(path)
    fmt = kind.lstrip(".").split(".")[0].upper()
    try:
        return parse_bif(text) if kind.startswith(".bif") else parse_xmlbif(text)
    except (BIFError, ModelError) as exc:
        if not isinstance(exc, BIFSyntaxError):  # a well-formed file with a bad number or name:
            _check_model_text(p, kind, text)  # name its line, variable and value
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(p, f"not a valid {fmt} network: {exc}") from None


def _states_of(model) -> Mapping[str, tuple[str, ...]]:
    """State names per variable of a pgmpy model, an engine, or a mapping."""
    if isinstance(model, ModelTables):
        return {n: model.states[i] for i, n in enumerate(model.names)}
    if hasattr(model, "get_cpds"):  # a pgmpy network
        t = ModelTables.from_pgmpy(model)
        return {n: t.states[i] for i, n in enumerate(t.names)}
    if isinstance(model, Mapping):
        return {str(k): tuple(str(s) for s in v) for k, v in model.items()}
    states = getattr(model, "states", None)
    if isinstance(states, Mapping):
        return states
    raise ParameterError(
        f"The 'model' parameter must be a pgmpy network, an engine or a mapping of states. Got {type(model).__name__} instead."
    )


def read_cases(path: str | os.PathLike, model, *, with_ids: bool = False):
    """Read a CSV of cases into batched hard evidence.

    The first line names the observed variables; each further line is a case,
    with a state name per column or a blank cell when the variable is
    unobserved in that case. Every line is a case, including one whose cells
    are all blank (nothing observed: the prior); only blank lines at the end
    of the file are ignored. A column named ``id`` that is not a variable of
    the model labels the cases.

    Parameters
    ----------
    path : str or path-like
    model : pgmpy.models.DiscreteBayesianNetwork, engine, or mapping
        Anything giving the state names per variable (an engine's ``states``).
    with_ids : bool, default False
        Also return the case labels.

    Returns
    -------
    evidence : dict of str to ndarray of int
        State index per case, ``-1`` where blank; one entry per column.
    n_cases : int
    ids : (str, list), only with ``with_ids``
        ``("id", values of the id column)`` when the file has one, else
        ``("row", [1, 2, ...])`` (the data row numbers).

    Raises
    ------
    EvidenceError
        Missing file, an unknown column (variable) or state -- naming the data
        row (1 = the first line after the header), the column and the allowed
        values -- duplicate columns, or rows with the wrong number of cells.
    """
    p = Path(path)
    states = _states_of(model)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise EvidenceError(f"{p}: no such cases file") from None
    except OSError as exc:
        raise EvidenceError(f"{p}: cannot read cases file: {exc}") from None
    fast = _read_cases_arrow(p, data, states, with_ids)
    if fast is not None:
        return fast
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EvidenceError(f"{p}: cannot read cases file: {exc}") from None
    rows = list(csv.reader(io.StringIO(text)))
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()  # blank lines at the end of the file
    while rows and not any(c.strip() for c in rows[0]):
        rows.pop(0)  # and before the header
    if not rows:
        raise EvidenceError(f"{p}: no header line (expected one column per observed variable)")
    header = [h.strip() for h in rows[0]]
    id_col = header.index("id") if "id" in header and "id" not in states else None
    seen = set()
    for h in header:
        if h == "id" and id_col is not None:
            continue
        if h not in states:
            raise EvidenceError(f"{p}: header: unknown column (variable) {h!r}{suggest(h, states)}")
        if h in seen:
            raise EvidenceError(f"{p}: header: column {h!r} appears twice")
        seen.add(h)
    data = rows[1:]
    n = len(data)
    if n == 0:
        raise EvidenceError(f"{p}: no cases after the header")
    variables = [h for j, h in enumerate(header) if j != id_col]
    lookups = {h: {s: i for i, s in enumerate(states[h])} for h in variables}
    out = {h: np.full(n, -1, dtype=np.int64) for h in variables}
    ids: list = []
    for k, row in enumerate(data, start=1):
        if not row:  # an empty line: a case with nothing observed
            row = [""] * len(header)
        if len(row) != len(header):
            raise EvidenceError(f"{p}: row {k}: {len(row)} cells, expected {len(header)} (one per column)")
        if id_col is not None:
            ids.append(row[id_col].strip())
        for j, (h, cell) in enumerate(zip(header, row)):
            cell = cell.strip()
            if not cell or j == id_col:
                continue
            i = lookups[h].get(cell)
            if i is None:
                raise _unknown_state(p, k, h, cell, states)
            out[h][k - 1] = i
    if with_ids:
        return out, n, ("id", ids) if id_col is not None else ("row", list(range(1, n + 1)))
    return out, n


def _unknown_state(p: Path, k: int, h: str, cell: str, states) -> EvidenceError:
    allowed = ", ".join(states[h])
    return EvidenceError(
        f"{p}: row {k}, column {h!r}: unknown state {cell!r}; allowed: {allowed}{suggest(cell, states[h])}"
    )


def _read_cases_arrow(p: Path, data: bytes, states, with_ids: bool = False):
    """:func:`read_cases` through pyarrow's CSV reader, vectorised per column.

    Each column is read dictionary-encoded (two threads), so only its few
    distinct words are stripped and looked up. Returns ``None`` -- the caller
    then reads the file with the ``csv`` module, which words every error --
    when pyarrow is missing, the file is not a plain rectangular CSV whose
    first line is the header, or anything in it is wrong.
    """
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        return None
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    body = body.rstrip(b"\r\n\t ")  # blank lines at the end of the file are not cases
    first = body.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        header = [h.strip() for h in next(csv.reader([first.decode("utf-8")]), [])]
    except UnicodeDecodeError:
        return None
    if not header or len(set(header)) != len(header) or any(h not in states for h in header):
        return None  # includes an ``id`` column that is not a variable: the csv path labels the cases
    ncols = len(header)
    dict_type = pa.dictionary(pa.int32(), pa.string())
    try:
        table = pcsv.read_csv(
            pa.py_buffer(body),
            read_options=pcsv.ReadOptions(skip_rows=1, column_names=[f"c{i}" for i in range(ncols)]),
            # an empty line is a case with nothing observed, as in the csv path
            parse_options=pcsv.ParseOptions(ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(
                column_types={f"c{i}": dict_type for i in range(ncols)},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if table.num_columns != ncols or table.num_rows == 0:
        return None
    mats = []
    for h, column in zip(header, table.columns):
        lookup = {s: i for i, s in enumerate(states[h])}
        parts = []
        for chunk in column.chunks:
            words = [w.strip() for w in chunk.dictionary.to_pylist()]
            code = np.array([-1 if w == "" else lookup.get(w, -2) for w in words], dtype=np.int64)
            ind = chunk.indices
            idx = np.frombuffer(ind.buffers()[1], dtype=np.int32, count=len(ind), offset=ind.offset * 4)
            parts.append(code[idx] if code.size else np.full(len(ind), -1, dtype=np.int64))
        vals = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if (vals == -2).any():
            return None  # an unknown state: the csv path names row and column
        mats.append(vals)
    n = table.num_rows  # every row is a case, all-blank ones too (nothing observed: the prior)
    if with_ids:
        return dict(zip(header, mats)), n, ("row", list(range(1, n + 1)))
    return dict(zip(header, mats)), n


def write_posteriors(
    path: str | os.PathLike, posteriors: Mapping[str, np.ndarray], model, *, case_ids: tuple[str, list] | None = None
) -> Path:
    """Write posteriors, one row per case and one ``VAR=STATE`` column per state.

    The file is written to a temporary file in the same folder and moved into
    place with :func:`os.replace`, so readers never see a partial file.

    Parameters
    ----------
    path : str or path-like
        ``.csv`` or ``.parquet`` (Parquet needs ``pyarrow``).
    posteriors : mapping of str to ndarray
        ``{variable: array (n_cases, card)}`` as returned by ``engine.query``;
        columns follow its order.
    model : pgmpy.models.DiscreteBayesianNetwork, engine, or mapping
        Gives the state names per variable.
    case_ids : (str, list), optional
        A first column naming each case: ``(column name, one label per case)``,
        as :func:`read_cases` returns with ``with_ids=True``.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    EvidenceError
        A variable unknown to ``model``, or arrays of inconsistent shape.
    ModelError
        An unsupported file type, or pyarrow missing for Parquet.
    """
    p = Path(path)
    fmt = p.suffix.lower()
    if fmt not in (".csv", ".parquet"):
        raise ModelError(f"{p}: unsupported output type {fmt!r}; use .csv or .parquet")
    states = _states_of(model)
    columns: list[str] = []
    arrays: list[np.ndarray] = []
    n = None
    for var, arr in posteriors.items():
        if var not in states:
            raise EvidenceError(f"unknown variable {var!r}{suggest(str(var), states)}")
        a = np.asarray(arr, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != len(states[var]):
            raise EvidenceError(f"posterior of {var!r} must have shape (n_cases, {len(states[var])}), got {a.shape}")
        if n is not None and a.shape[0] != n:
            raise EvidenceError(f"posterior of {var!r} has {a.shape[0]} cases, others have {n}")
        n = a.shape[0]
        for j, s in enumerate(states[var]):
            columns.append(f"{var}={s}")
            arrays.append(a[:, j])
    if case_ids is not None:
        name, labels = case_ids
        if n is not None and len(labels) != n:
            raise EvidenceError(f"{len(labels)} case labels for {n} cases")
    if fmt == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ModelError(f"{p}: writing Parquet needs the 'pyarrow' package") from None

    def write(tmp: str) -> None:
        if fmt == ".csv":
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(columns if case_ids is None else [case_ids[0], *columns])
                if arrays:
                    for k, row in enumerate(np.column_stack(arrays)):
                        cells = [repr(float(x)) for x in row]
                        w.writerow(cells if case_ids is None else [case_ids[1][k], *cells])
        else:
            # from the numpy buffers: pa.array() would import pandas (half a second) to rule out its types
            cols = [np.ascontiguousarray(a, dtype=np.float64) for a in arrays]
            table = {} if case_ids is None else {case_ids[0]: pa.array(case_ids[1])}
            table.update(
                {c: pa.Array.from_buffers(pa.float64(), len(a), [None, pa.py_buffer(a)]) for c, a in zip(columns, cols)}
            )
            pq.write_table(pa.table(table), tmp)

    atomic_write(p, write)
    return p
