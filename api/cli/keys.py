"""API keys: create one for a tenant, list them (never a secret), revoke one."""

from typing import Annotated

import typer

from api.cli.common import JsonOpt, TenantOpt, emit, local_only, tenant_of, user_errors, app
from core.config import get_settings

keys = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke.")
app.add_typer(keys, name="keys")


@keys.callback()
def on_this_machine() -> None:
    local_only("keys")      # keys are made where the database is, never over HTTP


@keys.command("create")
def create(tenant: Annotated[str, typer.Argument(help="tenant name: a-z, 0-9, '_', '-'")],
           as_json: JsonOpt = False) -> None:
    """Create an API key for a tenant (the tenant too, if new). The key is shown only once."""
    from store.db import session_scope
    from store.keys import create_key
    with user_errors(), session_scope(get_settings()) as s:
        key, row = create_key(s, tenant=tenant)
        secret = row.webhook_secret
    emit({"tenant": tenant, "key": key, "webhook_secret": secret}, as_json,
         f"tenant:         {tenant}\napi key:        {key}\n"
         f"webhook secret: {secret}\n(the key is not stored; keep it now)")


@keys.command("list")
def list_keys(tenant: TenantOpt = None,
              every: Annotated[bool, typer.Option("--all", help="every tenant's keys")] = False,
              as_json: JsonOpt = False) -> None:
    """The tenant's keys (--all: every tenant's): id, prefix, created, last used, revoked."""
    from store import keys as key_rows
    from store.db import session_scope
    with session_scope(get_settings()) as s:
        rows = [key_rows.key_json(k) for k in key_rows.list_keys(
            s, tenant=None if every else tenant_of(tenant))]
    human = "\n".join(
        f"{k['id'][:12]}  {k['tenant']:<12} {k['prefix']}...  created {k['created_at'][:19]}"
        f"  used {(k['last_used_at'] or 'never')[:19]}"
        f"{'  REVOKED ' + k['revoked_at'][:19] if k['revoked_at'] else ''}"
        for k in rows) or "no keys"
    emit(rows, as_json, human)


@keys.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="the key's id (or a unique prefix, "
                                                     "as `keys list` shows it)")]) -> None:
    """Revoke a key: requests that carry it get 401 from now on."""
    from store import keys as key_rows
    from store.db import session_scope
    with user_errors(), session_scope(get_settings()) as s:
        key = key_rows.revoke_key(s, ref=key_id)
        shown = f"revoked {key.id} ({key.prefix}..., tenant {key.tenant})"
    typer.echo(shown)
