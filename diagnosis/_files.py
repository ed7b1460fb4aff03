"""Safe outputs: atomic writes, outputs that cannot be inputs, one run per output.

* :func:`atomic_write` writes to a temporary file beside the target, then
  renames it into place: a reader never sees a half-written file, and an
  interrupted write leaves the old file (or nothing) behind. Files get the
  usual permissions (0o666 less the umask), not the 0o600 of
  :func:`tempfile.mkstemp`. An operating-system error (read-only folder, full
  disk) becomes one :class:`~diagnosis.exceptions.OutputError` naming the
  target and the cause.
* :func:`check_outputs` refuses, before any work, an output that resolves to
  an input (same path, symlink or hard link: compared by resolved path and by
  ``st_dev``/``st_ino``), an output that is an existing folder, or one whose
  folder is missing.
* :func:`output_lock` holds an exclusive ``fcntl`` lock on ``OUT.lock`` (which
  names the holder's pid) for the run, so a second run on the same output
  refuses instead of mixing its results in.
* :func:`remove_stale_temporaries` deletes the hidden temporaries an earlier,
  killed run left beside an output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from diagnosis.exceptions import OutputError

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "check_outputs",
    "os_error_message",
    "output_lock",
    "remove_stale_temporaries",
    "temporary_beside",
]


def os_error_message(path: str | os.PathLike, exc: OSError, action: str = "cannot write") -> str:
    """``"PATH: cannot write: No space left on device"`` for an operating-system error."""
    cause = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        cause = "no space left on device (the disk is full)"
    elif exc.errno == errno.EROFS:
        cause = "read-only file system"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        cause = "permission denied"
    elif exc.errno == errno.EISDIR:
        cause = "is a folder, not a file"
    elif exc.errno == errno.ENOTDIR:
        cause = "a part of the path is a file, not a folder"
    return f"{path}: {action}: {cause}"


def _identity(path: Path) -> tuple[str, tuple[int, int] | None]:
    real = os.path.realpath(path)
    try:
        st = os.stat(path)
    except OSError:
        return real, None
    return real, (st.st_dev, st.st_ino)


def _input_files(path: Path, limit: int = 10_000) -> list[Path]:
    """The path itself, and for a folder the files in it (an input folder's parts)."""
    out = [path]
    if path.is_dir():
        for k, f in enumerate(path.rglob("*")):
            if k >= limit:
                break
            out.append(f)
    return out


def check_outputs(
    outputs: Iterable[str | os.PathLike],
    inputs: Iterable[str | os.PathLike | None],
    *,
    folders: Iterable[str | os.PathLike] = (),
    not_inside_inputs: bool = False,
) -> None:
    """Refuse outputs that would destroy an input or cannot be written; call before any work.

    Parameters
    ----------
    outputs : iterable of path-like
        Files the run will write (including side files such as ``OUT.rejects.jsonl``).
    inputs : iterable of path-like or None
        Files or folders the run reads (None entries are ignored).
    folders : iterable of path-like
        Outputs that are folders (a CSV log, a report folder): they may exist
        as folders, and no input may be inside them.
    not_inside_inputs : bool, default False
        Also refuse an output inside an input folder (an incident log that is
        a folder of parts: the output would be read as a part next time).

    Raises
    ------
    OutputError
        An output is an input (same file, symlink or hard link) or inside an
        output folder, an output file is an existing folder, or its folder
        does not exist or is a file.
    """
    known: dict[object, str] = {}
    input_folders: list[tuple[str, str]] = []
    for inp in inputs:
        if inp is None:
            continue
        if not_inside_inputs and Path(inp).is_dir():
            input_folders.append((os.path.realpath(inp), str(inp)))
        for f in _input_files(Path(inp)):
            real, ident = _identity(f)
            known[real] = str(inp)
            if ident is not None:
                known[ident] = str(inp)
    folder_list = [Path(f) for f in folders]
    for folder in folder_list:
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"{folder}: the output folder is a file; choose another output")
        real = os.path.realpath(folder)
        for key, name in known.items():
            if isinstance(key, str) and (key == real or key.startswith(real + os.sep)):
                raise OutputError(
                    f"{folder}: the output folder holds the input {name!r}; writing there would overwrite it. "
                    "Choose another output"
                )
    for out in outputs:
        out = Path(out)
        real, ident = _identity(out)
        hit = known.get(real) or (known.get(ident) if ident is not None else None)
        if hit is not None:
            how = "is" if os.path.realpath(hit) == real else "is the same file as (a link to)"
            raise OutputError(
                f"{out}: the output {how} the input {hit!r}; writing it would destroy the input. Choose another output"
            )
        for folder_real, name in input_folders:
            if real.startswith(folder_real + os.sep):
                raise OutputError(
                    f"{out}: the output is inside the input folder {name!r}; it would be read as input by the "
                    "next run. Choose another output"
                )
        if out.is_dir() and out not in folder_list:
            raise OutputError(f"{out}: the output is an existing folder; give a file name")
        parent = out.parent
        if any(parent == f or f in parent.parents for f in folder_list):
            continue  # created with its output folder
        if not parent.exists():
            raise OutputError(f"{out}: the output folder {str(parent)!r} does not exist")
        if not parent.is_dir():
            raise OutputError(f"{out}: {str(parent)!r} is a file, not a folder")


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``PATH.lock`` for the duration; refuse if another process holds it.

    The lock file holds the holder's pid. A process killed while holding it
    releases the lock (the kernel drops it); the stale file is reused.

    Raises
    ------
    OutputError
        Another process holds the lock (the message names its pid), or the
        lock file cannot be created.
    """
    import fcntl

    lock = Path(f"{os.path.normpath(path)}.lock")  # "pm/" (a folder to create) locks "pm.lock", beside it
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, _mode())
        except OSError as exc:
            raise OutputError(os_error_message(lock, exc, "cannot create the lock file")) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise OutputError(
                f"{path}: another run (pid {holder}) is writing this output (lock {lock}); "
                "wait for it to finish, or choose another output"
            ) from None
        # The holder before us may have removed the file between our open and our lock: retry on the new one.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def remove_stale_temporaries(path: str | os.PathLike) -> int:
    """Delete ``.NAME.*.tmp`` files beside ``path`` (left by a killed run); return how many. Hold the lock."""
    path = Path(path)
    n = 0
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if tmp.is_dir():
                import shutil

                shutil.rmtree(tmp)
            else:
                tmp.unlink()
            n += 1
    return n


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
    try:
        tmp = temporary_beside(path)
    except OSError as exc:
        raise OutputError(os_error_message(path, exc)) from None
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OutputError):
            raise
        raise OutputError(os_error_message(path, exc)) from None
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
