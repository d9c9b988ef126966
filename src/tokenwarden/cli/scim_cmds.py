"""`tokenwarden scim token create|list|revoke` and `scim config`: an organization's SCIM 2.0
provisioning (operator mode, local database; docs/scim.md).

``scim token create --json`` prints ``{"token": ...}`` once: paste it into the identity
provider's provisioning settings (Entra: "Secret Token"; Okta: "API Token", HTTP Header auth)
with the tenant URL ``https://<host>/scim/v2/<org>``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt, OrgOpt
from tokenwarden.cli.output import emit_json, out, table
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.scim.service import DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS

scim_app = typer.Typer(
    help="SCIM 2.0 provisioning from Entra ID or Okta (operator mode, local database).",
    no_args_is_help=True,
)
token_app = typer.Typer(help="Provisioning tokens (the only credential SCIM accepts).", no_args_is_help=True)
scim_app.add_typer(token_app, name="token")


def register(app: typer.Typer) -> None:
    app.add_typer(scim_app, name="scim")


def token_dict(record: TokenRecord, org: str) -> dict[str, Any]:
    return {
        "id": record.authorization_id,
        "org": org,
        "scope": " ".join(record.scopes),
        "createdAt": iso_z(record.created_at),
        "validTo": iso_z(record.valid_to),
        "revokedAt": iso_z(record.revoked_at),
        "status": "revoked" if record.revoked_at is not None else "active",
    }


@token_app.command("create")
@domain_errors
def token_create(
    org: OrgOpt = "",
    days: Annotated[
        int, typer.Option(help=f"Lifetime in days (1-{MAX_TOKEN_DAYS}).", min=1, max=MAX_TOKEN_DAYS)
    ] = DEFAULT_TOKEN_DAYS,
    as_json: JsonOpt = False,
) -> None:
    """Issue a provisioning token for ORG; the secret is printed once."""
    c = open_container()
    name = c.directory.find_org(org).name
    issued = c.scim.create_token(OPERATOR, name, days)
    if as_json:
        emit_json({"token": issued.secret, **token_dict(issued.record, name)})
        return
    out.print(f"SCIM base URL: <server>/scim/v2/{name}")
    out.print("provisioning token (shown only this once; paste it into the identity provider now):")
    out.print(issued.secret, highlight=False)


@token_app.command("list")
@domain_errors
def token_list(org: OrgOpt = "", as_json: JsonOpt = False) -> None:
    """The organization's provisioning tokens (never their secrets)."""
    c = open_container()
    name = c.directory.find_org(org).name
    rows = [token_dict(r, name) for r in c.scim.tokens(OPERATOR, name)]
    if as_json:
        emit_json(rows)
        return
    table(
        f"SCIM provisioning tokens of {name}",
        ["id", "status", "created", "valid to"],
        [[r["id"], r["status"], r["createdAt"], r["validTo"]] for r in rows],
    )


@token_app.command("revoke")
@domain_errors
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `tokenwarden scim token list`).")],
    org: OrgOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Revoke a provisioning token at once (every node)."""
    c = open_container()
    name = c.directory.find_org(org).name
    record = c.scim.revoke_token(OPERATOR, name, token_id)
    if as_json:
        emit_json(token_dict(record, name))
        return
    out.print(f"revoked provisioning token {record.authorization_id}")


@scim_app.command("config")
@domain_errors
def config(
    org: OrgOpt = "",
    admin_group: Annotated[
        str | None,
        typer.Option(
            "--admin-group",
            help="The group (display name or externalId) whose members are org admins; '' clears it.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the organization's SCIM settings, or set the admin group (roles follow at once)."""
    c = open_container()
    name = c.directory.find_org(org).name
    settings = (
        c.scim.configure(OPERATOR, name, admin_group)
        if admin_group is not None
        else c.scim.config(OPERATOR, name)
    )
    data = {"org": name, "adminGroup": settings.admin_group, "principalId": settings.principal_id}
    if as_json:
        emit_json(data)
        return
    out.print(f"admin group: {settings.admin_group or '(none)'}")
    out.print(f"SCIM principal: {settings.principal_id or '(no token issued yet)'}")
