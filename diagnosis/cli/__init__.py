"""The command line: ``diagnosis <verb>``, a thin layer over the public API."""

from diagnosis.cli.main import main

__all__ = ["main"]
