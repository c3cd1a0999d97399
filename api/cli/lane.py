"""The `chronoscope` command, where a search sent to a server takes a quick lane of its own.

A server answers a search in about 0.03 s, but starting the whole command line (Typer, the
settings, httpx) took 0.45 s of each one, and searching is what a person does many times in
a row. So `chronoscope [--server URL] search WORDS [-k N] [--video ID]... [--start S]
[--end S] [--kind K]... [--json]`, with a server and an API key set, is read and sent here
with the standard library alone, and printed as the whole command line prints it.
Everything else (other commands, --image, --like, --ground, --tenant, --help, a proxy in the
environment, input the command line would refuse) goes to the whole command line, which owns
every usage message."""

import json
import os
import sys
from urllib.parse import urlencode, urlsplit

from api.cli.output import USER_ERRORS, moment_lines
from core.errors import BadQuery
from core.times import check_range, to_ms
from core.types import KINDS, MAX_RESULTS

TIMEOUT_S = 300                      # as the whole command line's client
VALUED = {"-k": "k", "--video": "video", "--start": "start", "--end": "end", "--kind": "kind"}
# httpx, which the whole command line uses, honours these; this lane does not route proxies.
PROXIES = ("http_proxy", "https_proxy", "all_proxy")


def main() -> None:
    quick = quick_search(sys.argv[1:], os.environ)
    if quick is not None:
        sys.exit(send(*quick))
    from api.cli.commands import app
    app()


def quick_search(args: list[str], environ) -> tuple[str, str, dict, bool] | None:
    """(server, key, query parameters, --json) when `args` are a plain search that a server
    should answer; None for everything else."""
    env = {k.upper(): v for k, v in environ.items()}
    if any(env.get(p.upper()) for p in PROXIES):
        return None
    server = env.get("CHRONOSCOPE_SERVER", "")
    if args[:1] == ["--server"] and len(args) > 1:
        server, args = args[1] or server, args[2:]
    elif args[:1] and args[0].startswith("--server="):
        server, args = args[0].split("=", 1)[1] or server, args[1:]
    key = env.get("CHRONOSCOPE_API_KEY", "")
    try:
        url = urlsplit(server)
        url.port                # a port that is no number: the whole command line says so
    except ValueError:
        return None
    if (args[:1] != ["search"] or not key or url.scheme not in ("http", "https")
            or not url.hostname or url.query or url.fragment):
        return None
    parsed = _search_args(args[1:])
    return None if parsed is None else (server, key, *parsed)


def _search_args(args: list[str]) -> tuple[dict, bool] | None:
    """The query parameters of a search's arguments, as Click would read them; None where
    the whole command line should answer."""
    query, as_json, opts = None, False, {}
    args = list(args)
    while args:
        arg = args.pop(0)
        if arg == "--json":
            as_json = True
            continue
        if arg.startswith("-k") and arg[2:].isdigit():
            name, value = "-k", arg[2:]
        elif arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
        elif arg in VALUED and args:
            name, value = arg, args.pop(0)
        elif not arg.startswith("-") and query is None:
            query = arg
            continue
        else:
            return None
        if name not in VALUED:
            return None
        opts.setdefault(VALUED[name], []).append(value)
    try:
        k = int(opts.get("k", ["10"])[-1])
        start, end = (float(opts[n][-1]) if n in opts else None for n in ("start", "end"))
        check_range(to_ms(start), to_ms(end))
    except (ValueError, BadQuery):
        return None
    kinds = opts.get("kind", [])
    if not (query or "").strip() or not 1 <= k <= MAX_RESULTS or set(kinds) - set(KINDS):
        return None
    params = {"video": opts.get("video", []), "start": start, "end": end, "kind": kinds,
              "k": k, "limit": MAX_RESULTS, "q": query}
    return {n: v for n, v in params.items() if v is not None and v != []}, as_json


def send(server: str, key: str, params: dict, as_json: bool) -> int:
    """Every page of the search, printed; the exit code."""
    rows, token = [], None
    while True:
        page = _get(server, key, {**params, "page_token": token} if token else params)
        if isinstance(page, int):
            return page
        rows += page["moments"]
        token = page.get("next_page_token")
        if not token:
            break
    print(json.dumps(rows, indent=2) if as_json else moment_lines(rows))
    return 0


def _get(server: str, key: str, params: dict) -> dict | int:
    """The answer to GET /v1/search, or the exit code after saying why there is none."""
    import http.client
    url = urlsplit(server)
    if url.scheme == "https":
        conn = http.client.HTTPSConnection(url.hostname, url.port, timeout=TIMEOUT_S,
                                           context=_tls())
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=TIMEOUT_S)
    try:
        conn.request("GET", f"{url.path.rstrip('/')}/v1/search?{urlencode(params, doseq=True)}",
                     headers={"Authorization": f"Bearer {key}", "Accept": "application/json"})
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as e:
        return _fail(f"cannot reach {server}: {e}", 1)
    finally:
        conn.close()
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if response.status != 200:
        return _fail(_message(answer, body, response.reason),
                     2 if response.status in USER_ERRORS else 1)
    if not isinstance(answer, dict) or not isinstance(answer.get("moments"), list):
        return _fail(f"{server} did not answer as a chronoscope server", 1)
    return answer


def _message(answer, body: bytes, reason: str) -> str:
    """The API's error message, as the SDK reads it (client.client._error)."""
    try:
        return str(answer["error"]["message"])
    except (KeyError, TypeError):
        return body.decode(errors="replace")[:500] or reason


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _tls():
    """The certificates httpx would trust: SSL_CERT_FILE, SSL_CERT_DIR, else certifi's."""
    import ssl
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi
    return ssl.create_default_context(cafile=certifi.where())
