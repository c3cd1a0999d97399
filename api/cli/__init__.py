"""The `chronoscope` command line, one module per group of commands, assembled in
api/cli/commands.py. Its entry point is api/cli/lane.py: a search through a server is sent
from there without loading Typer. Each command imports what it needs (a search must not pay
for torch or for the models of indexing: tests/test_cli_fast.py)."""
