"""Tenants and their API keys. A key is shown once and only its hash is stored."""

import hashlib
import re
import secrets
import uuid
from collections.abc import Sequence
from datetime import timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import BadInput, NotFound
from store.schema import ApiKey, Tenant, utcnow

LAST_USED_EVERY = timedelta(minutes=1)

# Tenant names become directory names under media/, so they stay path-safe.
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def hash_key(key: str) -> str:
    # Keys are 256 random bits, so a plain SHA-256 is enough: no salt or slow hash needed.
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, *, tenant: str) -> tuple[str, Tenant]:
    """A new API key for the tenant (created if new). The key is returned once, never stored."""
    if not TENANT_NAME.fullmatch(tenant):
        raise BadInput(f"bad tenant name {tenant!r}: use 1-64 of a-z, 0-9, '_' and '-', "
                       "starting with a letter or digit")
    row = session.get(Tenant, tenant)
    if row is None:
        row = Tenant(name=tenant, webhook_secret=secrets.token_hex(32))
        session.add(row)
        session.flush()
    key = "cs_" + secrets.token_urlsafe(32)
    session.add(ApiKey(id=uuid.uuid4().hex, tenant=tenant, key_hash=hash_key(key),
                       prefix=key[:10]))
    return key, row


def tenant_for_key(session: Session, *, key: str) -> str | None:
    """The tenant of a live (not revoked) key, or None. Its last use is written at most once
    a minute, so a busy key does not make every request a write."""
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key),
                                              ApiKey.revoked_at.is_(None)))
    if row is None:
        return None
    now = utcnow()
    used = row.last_used_at
    if used is None or now - (used if used.tzinfo else used.replace(tzinfo=timezone.utc)) \
            > LAST_USED_EVERY:
        row.last_used_at = now
    return row.tenant


def list_keys(session: Session, *, tenant: str | None = None) -> Sequence[ApiKey]:
    """Keys (live and revoked), oldest first; only their ids and prefixes, never a secret."""
    stmt = select(ApiKey).order_by(ApiKey.created_at)
    if tenant is not None:
        stmt = stmt.where(ApiKey.tenant == tenant)
    return session.scalars(stmt).all()


def revoke_key(session: Session, *, ref: str) -> ApiKey:
    """Revoke the key whose id is `ref` or starts with it (at least 4 characters); requests
    with it get 401 from now on. NotFound, or BadInput naming the keys a prefix matches."""
    found = session.scalars(select(ApiKey).where(
        func.substr(ApiKey.id, 1, len(ref)) == ref)).all() if len(ref) >= 4 else []
    if not found:
        raise NotFound(f"no API key with id {ref} (give at least 4 characters of the id "
                       "that `chronoscope keys list` shows)")
    if len(found) > 1:
        raise BadInput(f"key id prefix {ref} matches {', '.join(k.id for k in found)}; "
                       "give more characters")
    key = found[0]
    key.revoked_at = key.revoked_at or utcnow()
    return key


def key_json(key: ApiKey) -> dict:
    def when(t):
        return t.isoformat() if t else None
    return {"id": key.id, "tenant": key.tenant, "prefix": key.prefix,
            "created_at": when(key.created_at), "last_used_at": when(key.last_used_at),
            "revoked_at": when(key.revoked_at)}
