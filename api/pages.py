"""Cursor pagination for every list: `limit` and `page_token` in, `next_page_token` out
(null on the last page).

A token is opaque to clients: base64url JSON of the position, and an HMAC (the server
secret that signs media URLs) over the list's name, its scope and that position. The scope
is what the list is of: the tenant, the video for segments, every parameter of a search. A
token that was edited, is garbage, or belongs to another list, tenant or query is refused
with 400 `invalid_page_token`.

Positions are keys, not offsets: videos continue after (created_at, id), segments after
(start_ms, end_ms, kind, id), so rows added or deleted meanwhile never shift a page. A
search is the exception: its result is a bounded ranked list (the `k` best moments,
recomputed from the same parameters for each page), and its token carries the offset into
that list.
"""

import base64
import binascii
import hashlib
import hmac
import json
from typing import Annotated

from fastapi import Query, Request

from api.errors import ApiError
from api.media_tokens import server_secret
from core.types import MAX_RESULTS

DEFAULT_LIMIT = 100
MAC_BYTES = 16

Limit = Annotated[int, Query(ge=1, le=MAX_RESULTS, description="most items in this page")]
PageToken = Annotated[str | None, Query(min_length=1, max_length=512,
                                        pattern=r"^[A-Za-z0-9_.=-]+$",
                                        description="next_page_token of the previous page")]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, name: str, scope: str, payload: str) -> bytes:
    message = json.dumps([name, scope, payload]).encode()
    return hmac.new(secret, message, hashlib.sha256).digest()[:MAC_BYTES]


def _secret(request: Request) -> bytes:
    return server_secret(request.app.state.settings, request.app.state.api_settings)


def make_token(request: Request, name: str, scope: str, position: list) -> str:
    payload = _b64(json.dumps(position, separators=(",", ":")).encode())
    return f"{payload}.{_b64(_mac(_secret(request), name, scope, payload))}"


def read_token(request: Request, name: str, scope: str, token: str | None) -> list | None:
    """The position a token holds (None: no token, the first page), or 400."""
    if token is None:
        return None
    payload, _, mac = token.partition(".")
    try:
        ok = hmac.compare_digest(_unb64(mac), _mac(_secret(request), name, scope, payload))
        position = json.loads(_unb64(payload)) if ok else None
    except (binascii.Error, ValueError):
        position = None
    if not isinstance(position, list):
        raise ApiError(400, "invalid_page_token", "page_token is not a next_page_token of "
                       "this list (edited, or from another list or query): start again "
                       "without it")
    return position


def scope_of(*parts) -> str:
    """A search's scope: every parameter that shapes its result list."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def page_of(request: Request, name: str, scope: str, rows: list, limit: int, key
            ) -> tuple[list, str | None]:
    """Rows fetched with limit + 1: this page, and the token after its last row when
    there is more."""
    if len(rows) <= limit:
        return list(rows), None
    rows = list(rows[:limit])
    return rows, make_token(request, name, scope, key(rows[-1]))
