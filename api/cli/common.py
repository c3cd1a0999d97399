"""What every command shares: the Typer app, the error and output conventions, argument
checks. With --json a command prints only JSON on stdout; errors go to stderr as one line
and the exit code is non-zero, never a traceback."""

import json
import logging
import os
from contextlib import contextmanager
from typing import Annotated

import typer

from core.config import get_settings
from core.errors import BadInput, BadQuery, NotFound
from api.cli.output import USER_ERRORS
from core.times import check_range, to_ms


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make hours-long video searchable to the second.")

JsonOpt = Annotated[bool, typer.Option("--json", help="print only JSON")]


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("faster_whisper", "alembic", "sentence_transformers", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)


def die(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def emit(obj, as_json: bool, human: str) -> None:
    typer.echo(json.dumps(obj, indent=2) if as_json else human)


def _tenant_here(value: str | None) -> str | None:
    if value and target["server"]:      # the main callback ran before this option's
        die("--tenant works on this machine only: with --server the API key decides the "
            "tenant", 2)
    return value


TenantOpt = Annotated[str | None, typer.Option(
    "--tenant", callback=_tenant_here,
    help="the library to use (default: CHRONOSCOPE_TENANT, else 'default')")]


def tenant_of(option: str | None) -> str:
    """The tenant a command works in: --tenant, else the setting (CHRONOSCOPE_TENANT)."""
    from store.keys import TENANT_NAME
    tenant = option or get_settings().tenant
    if not TENANT_NAME.fullmatch(tenant):
        die(f"bad tenant name {tenant!r}: use 1-64 of a-z, 0-9, '_' and '-', starting with "
            "a letter or digit", 2)
    return tenant


@contextmanager
def user_errors():
    """No such video: exit 1; input that cannot be used (an ambiguous id prefix, a bad
    range): exit 2; one line on stderr either way."""
    try:
        yield
    except NotFound as e:
        die(str(e))
    except BadInput as e:
        die(str(e), 2)


def load_video(ref: str, tenant: str) -> dict:
    """The tenant's video by its id or a unique prefix of it, as JSON."""
    from store import queries
    from store.db import session_scope
    from store.serialize import video_json
    with session_scope(get_settings()) as s:
        return video_json(queries.resolve_video(s, ref, tenant=tenant))


# The server that --server (or CHRONOSCOPE_SERVER) names; empty: work on this machine.
target = {"server": ""}


@app.callback()
def main(server: Annotated[str | None, typer.Option(
        "--server", metavar="URL", help="work on this chronoscope server over HTTP (default: "
        "CHRONOSCOPE_SERVER; the key comes from CHRONOSCOPE_API_KEY)")] = None) -> None:
    _quiet_libraries()
    target["server"] = server or get_settings().server


def remote():
    """The SDK client of the --server target, or None to work on this machine."""
    if not target["server"]:
        return None
    from client import Client
    key = get_settings().api_key
    if not key:
        die("--server needs an API key: set CHRONOSCOPE_API_KEY (create one on the server "
            "with `chronoscope keys create TENANT`)", 2)
    from httpx import InvalidURL
    try:
        return Client(target["server"], key, timeout=300)
    except InvalidURL as e:
        die(f"--server {target['server']!r} is not a URL a client can use: {e}", 2)


def fetch(local, over_http):
    """What `local()` reads from this machine, or, with --server, what `over_http(client)`
    gets from the server; the server's errors end the command like local ones."""
    client = remote()
    if client is None:
        return local()
    import httpx

    from client import ApiError
    try:
        with client:
            return over_http(client)
    except ApiError as e:
        die(e.message, 2 if e.status in USER_ERRORS else 1)
    except httpx.HTTPError as e:
        die(f"cannot reach {target['server']}: {e}")


def local_only(command: str) -> None:
    if target["server"]:
        die(f"`{command}` works on this machine only: drop --server (and unset "
            "CHRONOSCOPE_SERVER)", 2)


def check_window(start: float | None, end: float | None) -> None:
    try:
        check_range(to_ms(start), to_ms(end))
    except BadQuery as e:
        die(str(e), 2)


KindOpt = Annotated[list[str] | None, typer.Option("--kind", help="speech, screen_text, visual")]


def check_kinds(kinds: list[str] | None) -> None:
    from core.types import KINDS
    for k in kinds or []:
        if k not in KINDS:
            die(f"unknown kind {k!r}: use one of {', '.join(KINDS)}", 2)
