"""`tokenwarden client add|list|rotate-secret|disable|enable|remove`: the OAuth client registry
(operator mode, local database).

``client add --json`` prints ``{"client_id", "client_secret", ...}`` — the OAuth names, as
scripts that feed them to an OAuth library expect — and no ``client_secret`` for a public client.
A secret is printed once (here, or by ``rotate-secret``) and never logged.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tokenwarden.bootstrap import Container
from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt, OrgOpt
from tokenwarden.cli.output import emit_json, out, table
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.oauth import GrantType, OAuthClient
from tokenwarden.services.common import OPERATOR

client_app = typer.Typer(
    help="OAuth clients (applications) of an organization (operator mode, local database).",
    no_args_is_help=True,
)
ClientIdArg = Annotated[str, typer.Argument(help="The client's client_id (see `tokenwarden client list`).")]


def register(app: typer.Typer) -> None:
    app.add_typer(client_app, name="client")


def client_dict(client: OAuthClient, org: str, secret: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"client_id": client.client_id}
    if secret is not None:
        data["client_secret"] = secret
    data.update(
        {
            "name": client.name,
            "org": org,
            "public": client.public,
            "redirectUris": list(client.redirect_uris),
            "grantTypes": [g.value for g in client.grant_types],
            "scope": " ".join(client.scopes),
            "status": "disabled" if client.disabled_at is not None else "active",
            "serviceUserId": client.service_user_id,
            "createdAt": iso_z(client.created_at),
            "disabledAt": iso_z(client.disabled_at),
        }
    )
    return data


def _org_name(c: Container, org: str) -> str:
    return c.directory.find_org(org).name


def _print_secret(client: OAuthClient, secret: str | None) -> None:
    if secret is None:
        out.print("public client: no secret (it must use PKCE)")
        return
    out.print("client secret (shown only this once; store it now):")
    out.print(secret, highlight=False)


@client_app.command("add")
@domain_errors
def client_add(
    name: Annotated[str, typer.Argument(help="The application's name (shown on the consent page).")],
    redirect_uri: Annotated[
        list[str] | None,
        typer.Option(
            "--redirect-uri",
            help="An exact redirect URI (repeatable, at most 20; https, or http on 127.0.0.1/::1/localhost). "
            "Required with authorization_code.",
        ),
    ] = None,
    grant: Annotated[
        list[GrantType] | None,
        typer.Option(
            "--grant", help="An allowed grant (repeatable; default authorization_code + refresh_token)."
        ),
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help='Allowed scopes, space-separated (repeatable; default "vso.profile").'),
    ] = None,
    public: Annotated[
        bool, typer.Option("--public", help="A public client (browser or native app): no secret, PKCE.")
    ] = False,
    org: OrgOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Register an OAuth client; a confidential client's secret is printed this once."""
    c = open_container()
    try:
        registered = c.clients.register(
            OPERATOR,
            org,
            name=name,
            redirect_uris=redirect_uri or [],
            grants=[g.value for g in grant] if grant else None,
            scope=" ".join(scope) if scope else None,
            public=public,
        )
        data = client_dict(registered.client, _org_name(c, org), registered.secret)
    finally:
        c.database.dispose()
    if json_out:
        emit_json(data)
        return
    client = registered.client
    kind = "public" if client.public else "confidential"
    out.print(f"registered {kind} client [bold]{client.name}[/] in {data['org']}", highlight=False)
    out.print(f"client_id {client.client_id}", highlight=False)
    out.print(f"grants {', '.join(data['grantTypes'])}; scope {data['scope']}", highlight=False)
    _print_secret(client, registered.secret)


@client_app.command("list")
@domain_errors
def client_list(org: OrgOpt = "", json_out: JsonOpt = False) -> None:
    """List an organization's OAuth clients (never their secrets)."""
    c = open_container()
    try:
        name = _org_name(c, org)
        rows = [client_dict(x, name) for x in c.clients.list_clients(OPERATOR, org)]
    finally:
        c.database.dispose()
    if json_out:
        emit_json(rows)
        return
    table(
        f"OAuth clients of {name}",
        ["client_id", "name", "type", "grants", "redirectUris", "scope", "status"],
        [
            [
                r["client_id"],
                r["name"],
                "public" if r["public"] else "confidential",
                ", ".join(r["grantTypes"]),
                "\n".join(r["redirectUris"]),
                r["scope"],
                r["status"],
            ]
            for r in rows
        ],
    )


@client_app.command("rotate-secret")
@domain_errors
def client_rotate_secret(client_id: ClientIdArg, org: OrgOpt = "", json_out: JsonOpt = False) -> None:
    """A new secret, printed this once; the old one stops working at once.

    So do the access tokens the old one obtained (client_credentials)."""
    c = open_container()
    try:
        rotated = c.clients.rotate_secret(OPERATOR, org, client_id)
        data = client_dict(rotated.client, _org_name(c, org), rotated.secret)
    finally:
        c.database.dispose()
    if json_out:
        emit_json(data)
        return
    out.print(f"new secret for {rotated.client.client_id} ({rotated.client.name})", highlight=False)
    _print_secret(rotated.client, rotated.secret)


@client_app.command("disable")
@domain_errors
def client_disable(client_id: ClientIdArg, org: OrgOpt = "", json_out: JsonOpt = False) -> None:
    """Disable a client: it cannot authenticate and every token issued to it dies at once."""
    _set_enabled(client_id, org, json_out, enabled=False)


@client_app.command("enable")
@domain_errors
def client_enable(client_id: ClientIdArg, org: OrgOpt = "", json_out: JsonOpt = False) -> None:
    """Enable a disabled client again (tokens cut while it was disabled stay dead)."""
    _set_enabled(client_id, org, json_out, enabled=True)


def _set_enabled(client_id: str, org: str, json_out: bool, *, enabled: bool) -> None:
    c = open_container()
    try:
        change = c.clients.enable if enabled else c.clients.disable
        data = client_dict(change(OPERATOR, org, client_id), _org_name(c, org))
    finally:
        c.database.dispose()
    if json_out:
        emit_json(data)
    else:
        out.print(f"client {client_id} is {data['status']}", highlight=False)


@client_app.command("remove")
@domain_errors
def client_remove(client_id: ClientIdArg, org: OrgOpt = "", json_out: JsonOpt = False) -> None:
    """Remove a client: every token ever issued to it stops working on every node at once."""
    c = open_container()
    try:
        removed = c.clients.remove(OPERATOR, org, client_id)
        data = {**client_dict(removed, _org_name(c, org)), "removed": True}
    finally:
        c.database.dispose()
    if json_out:
        emit_json(data)
    else:
        out.print(
            f"removed client {removed.client_id} ({removed.name}): its tokens are dead", highlight=False
        )
