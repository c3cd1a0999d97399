"""Tenants and their API keys. A key is shown once and only its hash is stored."""

import hashlib
import re
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import BadInput
from store.schema import ApiKey, Tenant

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
    """The tenant of a live (not revoked) key, or None."""
    return session.scalar(select(ApiKey.tenant).where(ApiKey.key_hash == hash_key(key),
                                                      ApiKey.revoked_at.is_(None)))
