"""The Typer app with every command registered on it."""

from api.cli import ingest, library, find, clip, keys, service, reembed  # noqa: F401,I001  (they register commands, in help order)
from api.cli.common import app

__all__ = ["app"]
