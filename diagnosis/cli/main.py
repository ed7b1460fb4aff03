"""The ``diagnosis`` command line: argument parsing and formatting only.

Every verb calls the public API; each group of verbs lives in its own module
(:mod:`~diagnosis.cli.model`, :mod:`~diagnosis.cli.logs`, ...) and registers
its parsers with ``set_defaults(func=...)``. Exit codes: 0 ok, 1 a
:class:`~diagnosis.exceptions.DiagnosisError` (message on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

from diagnosis.cli import inference as inference_cli
from diagnosis.cli import learning as learning_cli
from diagnosis.cli import logs as logs_cli
from diagnosis.cli import model as model_cli
from diagnosis.cli import postmortem as postmortem_cli
from diagnosis.cli import serve as serve_cli
from diagnosis.cli import telemetry as telemetry_cli
from diagnosis.exceptions import DiagnosisError, suggest

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """An argument parser that reports a misspelt option first, not the required option it hides.

    ``--topolgy T`` would otherwise be reported as "the following arguments
    are required: --topology".
    """

    def parse_known_args(self, args=None, namespace=None):
        if self._subparsers is None and args is not None:
            known = [s for s in self._option_string_actions if s.startswith("--")]
            for token in args:
                if token == "--":
                    break
                if not token.startswith("--"):
                    continue
                name = token.split("=", 1)[0]
                if name in self._option_string_actions or any(k.startswith(name) for k in known):
                    continue
                self.error(f"unrecognized argument {name!r}{suggest(name, known)}")
        return super().parse_known_args(args, namespace)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="diagnosis",
        description="Probabilistic fault diagnosis for service platforms.",
    )
    parser.add_argument("--version", action=_Version, help="show program's version number and exit")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    for group in (model_cli, logs_cli, learning_cli, telemetry_cli, inference_cli, postmortem_cli, serve_cli):
        group.register(verbs)
    return parser


class _Version(argparse.Action):
    """``--version``; the version is looked up (importlib.metadata, ~0.05 s) only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from diagnosis import __version__

        parser._print_message(f"diagnosis {__version__}\n", sys.stdout)
        parser.exit()


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the CLI; return the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).
    stdout, stderr : text streams, optional
        Where to write (default: the process's streams).
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return int(exc.code or 0)
    try:
        with warnings.catch_warnings():
            # A warning (an approximation, an unconverged fit) is one line for people, not a source excerpt.
            warnings.showwarning = lambda message, category, *_a, **_k: print(
                f"warning: {message} [{category.__name__}]", file=stderr
            )
            # our warnings are messages for the person running the command, shown once, never raised
            from diagnosis.exceptions import DiagnosisWarning

            warnings.simplefilter("default", DiagnosisWarning)
            args.func(args, stdout, stderr)
    except DiagnosisError as exc:
        print(f"error: {exc}", file=stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`diagnosis ... | head`): stop quietly, as the
        # Python docs recommend, without a traceback at interpreter exit.
        if stdout is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except RecursionError:  # a hostile file nested deeper than any reader handles
        print("error: an input is nested too deeply to read (deeply nested JSON or YAML)", file=stderr)
        return 1
    except OSError as exc:  # an operating-system error the verb did not name itself: one line, no traceback
        from diagnosis._files import os_error_message

        print(f"error: {os_error_message(exc.filename or '(unknown file)', exc, 'cannot access')}", file=stderr)
        return 1
    return 0
