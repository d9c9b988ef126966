"""The ``tokenwarden`` command line (contract: docs/specs/cli.md)."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

import tokenwarden.cli.bulk_cmds  # noqa: F401  (registers `revoke users`)
from tokenwarden import __version__
from tokenwarden.bootstrap import build
from tokenwarden.cli import (
    admin_cmds,
    alert_cmds,  # issue 14: alerts
    audit_chain_cmds,  # noqa: F401  issue 14: audit verify|export|checkpoint|keys|rotate-key
    jobs_cmds,  # issue 12: jobs run|status, notify, webhook
    keys_cmds,
    lifecycle_cmds,
    offboard_cmds,  # issue 17: user offboard
    report_cmds,  # issue 12: report weekly
    revoke_cmds,
    rotation_cmds,  # issue 13: managed, rotate, secrets
    rule_cmds,
    scan_cmds,  # issue 14: scan
    scim_cmds,  # issue 17: scim token, scim config
    session_cmds,  # issue 11: user passwd, sessions list|revoke
    signin_cmds,  # issue 14: signins list
    usage_cmds,  # issue 14: usage show
)
from tokenwarden.cli.client_cmds import register as register_client_cmds  # issue 11 (part 2)
from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt, OrgOpt
from tokenwarden.cli.output import emit_json, err, fail, out, table
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.errors import DomainError
from tokenwarden.domain.principals import IdentitySource, Role, UserStatus
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.effective import cause_of
from tokenwarden.services.pats import PatFilter
from tokenwarden.settings import Settings

app = typer.Typer(
    name="tokenwarden",
    help="Self-hosted token authority: issue, govern, validate and revoke tokens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
org_app = typer.Typer(help="Organizations (operator mode, local database).", no_args_is_help=True)
user_app = typer.Typer(help="Users and memberships (operator mode, local database).", no_args_is_help=True)
pat_app = typer.Typer(help="Personal access tokens (operator mode, local database).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(org_app, name="org")
app.add_typer(user_app, name="user")
app.add_typer(pat_app, name="pat")
admin_cmds.register(app)
revoke_cmds.register(app)
rule_cmds.register(app)
keys_cmds.register(app)
register_client_cmds(app)  # issue 11 (part 2): `tokenwarden client ...`
session_cmds.register(app, user_app)  # issue 11
report_cmds.register(app)  # issue 12
jobs_cmds.register(app)  # issue 12
rotation_cmds.register(app)  # issue 13
usage_cmds.register(app)  # issue 14
signin_cmds.register(app)  # issue 14
alert_cmds.register(app)  # issue 14
scan_cmds.register(app)  # issue 14

InitOrgOpt = Annotated[str, typer.Option("--org", help="Name of the organization to create.")]


def pat_dict(record: TokenRecord, now: Any, secret: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "authorizationId": record.authorization_id,
        "displayName": record.display_name,
        "scope": record.scope_string,
        "validFrom": iso_z(record.valid_from),
        "validTo": iso_z(record.valid_to),
        "state": record.state(now).value,
        "targetAccounts": None if record.target_orgs is None else list(record.target_orgs),
        "lastUsedAt": iso_z(record.last_used_at),
        "lastUsedIp": record.last_used_ip,
        "revokedAt": iso_z(record.revoked_at),
        "revokeReason": record.revoke_reason,
        "revokedCause": cause_of(record),
    }
    if secret is not None:
        data["token"] = secret
    return data


@app.callback(invoke_without_command=True)
def main_callback(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        out.print(__version__)
        raise typer.Exit(0)


# ---------------------------------------------------------------------- init / serve / db
@app.command()
@domain_errors
def init(
    org: InitOrgOpt,
    admin: Annotated[str, typer.Option("--admin", help="UPN of the organization's first administrator.")],
    name: Annotated[str | None, typer.Option("--name", help="Display name of the administrator.")] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite under ./data).")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="Where the admin's token is written (0600) when stdout is not a terminal "
            "(default: DATA_DIR/initial-admin-token).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create the database, the organization and its admin; print the admin's first PAT once
    (to a terminal; when stdout is piped into a log, into a 0600 file whose path is printed)."""
    if database_url:
        os.environ["TOKENWARDEN_DATABASE_URL"] = database_url
    c = open_container(create_pepper=True)
    try:
        result = c.directory.initialize(org, admin, name)
    finally:
        c.database.dispose()
    token = result.token
    if json_out:
        emit_json({"org": result.org.name, "admin": result.admin.upn, "token": token.secret})
        return
    out.print(f"Initialized [bold]{result.org.name}[/] with administrator [bold]{result.admin.upn}[/].")
    out.print(f"Database: {c.database.url_for_display}")
    if token_file is not None or not sys.stdout.isatty():  # a log must never hold the secret
        path = write_private(token_file or Settings().data_dir / "initial-admin-token", token.secret + "\n")
        out.print(f"The administrator's full-scope token is in {path} (mode 0600): store it, then delete it.")
        out.print(f"authorizationId {token.record.authorization_id}, valid to {iso_z(token.record.valid_to)}")
        return
    out.print("\nThe administrator's full-scope token (shown only this once; store it now):\n")
    out.print(token.secret, highlight=False)
    out.print(f"\nauthorizationId {token.record.authorization_id}, valid to {iso_z(token.record.valid_to)}")


def write_private(path: Path, text: str) -> Path:
    """Write a secret to a new file only its owner can read (an old one is replaced)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path.resolve()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, help="Port (default 8080).")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, max=64, help="Worker processes (default 1).")
    ] = None,
    server: Annotated[
        str | None,
        typer.Option("--server", help="HTTP server: uvicorn (default) or granian (TOKENWARDEN_SERVER)."),
    ] = None,
) -> None:
    """Serve the HTTP API (upgrades the database schema first)."""
    from tokenwarden.cli.serving import SERVERS, serve_asgi

    settings = Settings()
    chosen = server or settings.server
    if chosen not in SERVERS:
        fail(f"unknown server {chosen!r}: choose one of {', '.join(SERVERS)}")
        return
    try:
        c = build(settings, create_pepper=True)
        c.database.upgrade()
        initialized = c.database.is_initialized()
        url = c.database.url_for_display
        c.database.dispose()
    except DomainError as exc:
        fail(f"{exc.message} ({exc.code})")
        return
    if not initialized:
        err.print("[yellow]warning:[/] the database has no organization yet: run `tokenwarden init` first")
    bind_host = host or settings.host
    bind_port = port or settings.port
    err.print(f"tokenwarden {__version__} on http://{bind_host}:{bind_port} ({chosen}, database {url})")
    serve_asgi(
        chosen,  # checked against SERVERS above
        "tokenwarden.http.app:app_from_env",
        factory=True,
        host=bind_host,
        port=bind_port,
        workers=workers or settings.workers,
        log_level=settings.log_level,
    )


@db_app.command("upgrade")
@domain_errors
def db_upgrade() -> None:
    """Migrate the schema to the newest version."""
    c = open_container()
    out.print(f"database {c.database.url_for_display} is up to date")
    c.database.dispose()


@db_app.command("status")
def db_status(
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No output; exit 0 only if initialized.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Is the database reachable and initialized? Exit 1 when not initialized."""
    from tokenwarden.bootstrap import database_for

    db = database_for(Settings())
    data = {"database": db.url_for_display, "reachable": db.ping(), "initialized": db.is_initialized()}
    db.dispose()
    if json_out:
        emit_json(data)
    elif not quiet:
        table(None, ["database", "reachable", "initialized"], [list(data.values())])
    raise typer.Exit(0 if data["initialized"] else 1)


# ---------------------------------------------------------------------- organizations
@org_app.command("create")
@domain_errors
def org_create(
    name: Annotated[str, typer.Argument(help="Organization name (letters, digits, '.', '_', '-').")],
    admin: Annotated[str, typer.Option("--admin", help="UPN of its administrator (new or existing user).")],
    admin_name: Annotated[str | None, typer.Option("--name", help="Display name if the user is new.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create another organization; prints its administrator's first PAT once."""
    c = open_container()
    result = c.directory.add_org(name, admin, admin_name)
    if json_out:
        emit_json({"org": result.org.name, "admin": result.admin.upn, "token": result.token.secret})
        return
    out.print(f"created [bold]{result.org.name}[/] with administrator [bold]{result.admin.upn}[/]")
    out.print("the administrator's full-scope token for it (shown only this once):")
    out.print(result.token.secret, highlight=False)


@org_app.command("list")
@domain_errors
def org_list(json_out: JsonOpt = False) -> None:
    """List organizations."""
    c = open_container()
    rows = [
        {"id": o.id, "name": o.name, "createdAt": iso_z(o.created_at)}
        for o, _ in c.directory.orgs_of(OPERATOR)
    ]
    if json_out:
        emit_json(rows)
    else:
        table(
            "organizations", ["name", "id", "createdAt"], [[r["name"], r["id"], r["createdAt"]] for r in rows]
        )


# ---------------------------------------------------------------------- users
@user_app.command("add")
@domain_errors
def user_add(
    upn: Annotated[str, typer.Argument(help="User principal name, e.g. alice@example.com.")],
    org: OrgOpt = "",
    role: Annotated[Role, typer.Option("--role", help="member or admin.")] = Role.MEMBER,
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    external: Annotated[bool, typer.Option("--external", help="Identity backed by an external IdP.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Add a user to an organization (creating the user if new)."""
    c = open_container()
    source = IdentitySource.EXTERNAL if external else IdentitySource.LOCAL
    result = c.directory.add_user(OPERATOR, org, upn, display_name=name, role=role, identity_source=source)
    user, m = result.user, result.membership
    assert m is not None  # noqa: S101 - the operator enrols directly, never by invitation
    data = {
        "id": user.id,
        "upn": user.upn,
        "displayName": user.display_name,
        "role": m.role.value,
        "status": m.status.value,
        "identitySource": user.identity_source.value,
    }
    if json_out:
        emit_json(data)
    else:
        out.print(f"added {user.upn} to {org} as {m.role.value}")


@user_app.command("list")
@domain_errors
def user_list(org: OrgOpt = "", json_out: JsonOpt = False) -> None:
    """List the members of an organization."""
    c = open_container()
    rows = [
        {
            "id": u.id,
            "upn": u.upn,
            "displayName": u.display_name,
            "role": m.role.value,
            "status": m.status.value,
            "riskLevel": m.risk_level.value,
            "identitySource": u.identity_source.value,
        }
        for u, m in c.directory.list_users(OPERATOR, org)
    ]
    if json_out:
        emit_json(rows)
    else:
        table(
            f"members of {org}",
            ["upn", "displayName", "role", "status", "identitySource"],
            [[r["upn"], r["displayName"], r["role"], r["status"], r["identitySource"]] for r in rows],
        )


@user_app.command("disable")
@domain_errors
def user_disable(
    upn: Annotated[str, typer.Argument(help="User principal name.")],
    org: OrgOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Disable a member in one organization: every token of theirs stops working there at once."""
    c = open_container()
    m = c.directory.set_status(OPERATOR, org, upn, UserStatus.DISABLED)
    if json_out:
        emit_json({"id": m.user_id, "upn": upn, "org": org, "status": m.status.value})
    else:
        out.print(f"disabled {upn} in {org}: all of their tokens are rejected there from now on")


# ---------------------------------------------------------------------- PATs
@pat_app.command("create")
@domain_errors
def pat_create(
    user: Annotated[str, typer.Option("--user", help="Owner's UPN.")],
    name: Annotated[str, typer.Option("--name", help="Display name of the token.")],
    scope: Annotated[str, typer.Option("--scope", help='Space-separated scopes, e.g. "vso.code vso.pats".')],
    org: OrgOpt = "",
    days: Annotated[int, typer.Option("--days", min=1, help="Lifetime in days (policy caps apply).")] = 30,
    all_orgs: Annotated[
        bool, typer.Option("--all-orgs", help="Valid in all of the owner's organizations.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Issue a PAT (operator mode); the secret is printed this once."""
    c = open_container()
    issued = c.pats.create(
        OPERATOR,
        org=org,
        user=user,
        display_name=name,
        scope=scope,
        lifetime=timedelta(days=days),
        all_orgs=all_orgs,
    )
    data = pat_dict(issued.record, c.clock.now(), issued.secret)
    if json_out:
        emit_json(data)
        return
    out.print(f"created PAT [bold]{issued.record.display_name}[/] ({issued.record.authorization_id})")
    out.print(f"valid to {data['validTo']}, scope {data['scope']}")
    out.print("secret (shown only this once):")
    out.print(issued.secret, highlight=False)


@pat_app.command("list")
@domain_errors
def pat_list(
    user: Annotated[str, typer.Option("--user", help="Owner's UPN.")],
    org: OrgOpt = "",
    state: Annotated[
        PatFilter, typer.Option("--filter", help="active, revoked, expired or all.")
    ] = PatFilter.ALL,
    json_out: JsonOpt = False,
) -> None:
    """List a user's PATs (never their secrets)."""
    c = open_container()
    _, records = c.pats.list_for_admin(OPERATOR, org, user)
    now = c.clock.now()
    uses = c.usage.requests_since([r.authorization_id for r in records], days=30)
    rows = [{**pat_dict(r, now), "requests30d": uses.get(r.authorization_id, 0)} for r in records]
    if state is not PatFilter.ALL:
        rows = [
            r
            for r in rows
            if r["state"] == state.value or (state is PatFilter.ACTIVE and r["state"] == "notYetValid")
        ]
    if json_out:
        emit_json(rows)
    else:
        table(
            f"PATs of {user}",
            ["authorizationId", "displayName", "scope", "validTo", "state", "lastUsedAt", "uses 30d"],
            [
                [
                    r["authorizationId"],
                    r["displayName"],
                    r["scope"],
                    r["validTo"],
                    f"{r['state']} ({r['revokedCause']})" if r["revokedCause"] else r["state"],
                    r["lastUsedAt"],
                    r["requests30d"],
                ]
                for r in rows
            ],
        )


@pat_app.command("revoke")
@domain_errors
def pat_revoke(
    authorization_id: Annotated[str, typer.Argument(help="The PAT's authorizationId.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Recorded in the audit log.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Revoke one PAT; every node rejects it within its staleness bound."""
    c = open_container()
    record = c.pats.revoke(OPERATOR, authorization_id, reason or "revoked by operator")
    if json_out:
        emit_json(pat_dict(record, c.clock.now()))
    else:
        out.print(f"revoked {record.authorization_id} ({record.display_name})")


lifecycle_cmds.register(pat_app, user_app, pat_dict)  # issue 12: extend, regenerate, watchers, email
offboard_cmds.register(user_app)  # issue 17: user offboard
scim_cmds.register(app)  # issue 17: SCIM provisioning


def main() -> None:
    """Console-script entry point."""
    app()
