"""Atomic file writes: write to a temporary file beside the target, then rename it into place.

A reader never sees a half-written file, and an interrupted write leaves the
old file (or nothing) behind. Files get the usual permissions (0o666 less the
umask), not the 0o600 of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "temporary_beside"]


def _mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def temporary_beside(path: Path) -> str:
    """Create an empty temporary file in ``path``'s folder and return its name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _mode())
    return tmp


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_name)`` to fill a temporary file, then rename it to ``path``.

    Parameters
    ----------
    path : path-like
        The target. Its folder must exist.
    write : callable
        Writes the content to the file name it is given.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, chunks: Iterable[str] | str) -> Path:
    """Write text (a string or an iterable of strings, streamed) atomically, UTF-8."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            if isinstance(chunks, str):
                fh.write(chunks)
            else:
                for chunk in chunks:
                    fh.write(chunk)

    return atomic_write(path, write)
