"""The `chronoscope` command line, one module per group of commands. Each command imports
what it needs (a search must not pay for torch or for the models of indexing:
tests/test_cli_fast.py)."""

from api.cli import ingest, library, find, clip, keys, service, reembed  # noqa: F401,I001  (they register commands, in help order)
from api.cli.common import app

__all__ = ["app"]
