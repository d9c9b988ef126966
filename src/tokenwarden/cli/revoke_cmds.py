"""`tokenwarden revoke ...`: every revocation mode from the command line (operator mode)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tokenwarden.bootstrap import Container
from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt, OrgOpt
from tokenwarden.cli.output import emit_json, err, fail, out, table
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.principals import RiskLevel
from tokenwarden.domain.watermarks import parse_kinds
from tokenwarden.services.common import OPERATOR, Actor

revoke_app = typer.Typer(
    help="Revoke tokens: one, a user's, risky users', or a whole organization's.", no_args_is_help=True
)
KindsOpt = Annotated[
    str | None,
    typer.Option("--kinds", help="Comma-separated: pat,access,refresh,session,service (default all)."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(revoke_app, name="revoke")


def read_secret(token_file: Path | None) -> str:
    """A token value from a file or stdin — never from an argument (``ps`` would show it)."""
    if token_file is not None:
        try:
            return token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            fail(f"cannot read {token_file}: {exc.strerror}", code=2)
    if sys.stdin.isatty():
        fail("pass the token on stdin (... revoke token --org ORG < leaked.txt) or with --token-file", code=2)
    return sys.stdin.readline().strip()


@revoke_app.command("token")
@domain_errors
def revoke_token(
    org: OrgOpt = "",
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="File holding the leaked token (default: stdin).")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Recorded in the audit log.")] = None,
    lookup_only: Annotated[bool, typer.Option("--lookup", help="Only show whose token it is.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Look up a leaked token by its value and revoke it (value on stdin or in a file)."""
    secret = read_secret(token_file)
    c = open_container()
    found = (
        c.revocation.lookup(OPERATOR, org, secret)
        if lookup_only
        else c.revocation.revoke_by_value(OPERATOR, org, secret, reason)
    )
    r = found.record
    data: dict[str, Any] = {
        "authorizationId": r.authorization_id,
        "kind": r.kind.value,
        "displayName": r.display_name,
        "owner": found.owner.upn,
        "scope": r.scope_string,
        "validTo": iso_z(r.valid_to),
        "lastUsedAt": iso_z(r.last_used_at),
        "lastUsedIp": r.last_used_ip,
        "revokedAt": iso_z(r.revoked_at),
    }
    if json_out:
        emit_json(data)
    else:
        table(None, ["field", "value"], list(data.items()))


@revoke_app.command("user")
@domain_errors
def revoke_user(
    upn: Annotated[str, typer.Argument(help="User principal name.")],
    org: OrgOpt = "",
    kinds: KindsOpt = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Recorded in the audit log.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Revoke every token of a user (one watermark per kind, not a loop)."""
    c = open_container()
    result = c.revocation.revoke_user(OPERATOR, org, upn, parse_kinds(kinds), reason)
    data = {
        "upn": upn,
        "kinds": [k.value for k in result.kinds],
        "revoked": result.revoked,
        "total": result.total,
        "at": iso_z(result.at),
    }
    if json_out:
        emit_json(data)
    else:
        out.print(
            f"revoked {result.total} live token(s) of {upn} ({', '.join(k.value for k in result.kinds)})"
        )


@revoke_app.command("sessions")
@domain_errors
def revoke_sessions(
    upn: Annotated[str, typer.Argument(help="User principal name or id.")],
    org: OrgOpt,
    refresh_only: Annotated[
        bool,
        typer.Option("--refresh-only", help="Only refresh tokens and sessions (invalidateAllRefreshTokens)."),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Entra-style: sign-in sessions, refresh and access tokens issued until now stop working."""
    c = open_container()
    if refresh_only:
        user = c.revocation.invalidate_refresh_tokens(OPERATOR, org, upn)
    else:
        user = c.revocation.revoke_sign_in_sessions(OPERATOR, org, upn)
    _, marks = c.revocation.user_marks(OPERATOR, org, user.id)
    data = {
        "id": user.id,
        "upn": user.upn,
        "signInSessionsValidFromDateTime": iso_z(marks.get("signInSessions", user.created_at)),
        "refreshTokensValidFromDateTime": iso_z(
            max(marks.get("refreshTokens", user.created_at), marks.get("signInSessions", user.created_at))
        ),
    }
    if json_out:
        emit_json(data)
    else:
        table(None, ["field", "value"], list(data.items()))


@revoke_app.command("risky")
@domain_errors
def revoke_risky(
    org: OrgOpt = "",
    min_level: Annotated[
        RiskLevel, typer.Option("--min-level", help="low, medium or high.")
    ] = RiskLevel.HIGH,
    kinds: KindsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Revoke every token of every member at or above a risk level."""
    c = open_container()
    result = c.revocation.revoke_risky(OPERATOR, org, min_level, parse_kinds(kinds))
    data = {
        "minRiskLevel": min_level.value,
        "users": len(result.user_ids),
        "revoked": result.revoked,
        "total": result.total,
        "at": iso_z(result.at),
    }
    if json_out:
        emit_json(data)
    else:
        users = len(result.user_ids)
        out.print(f"revoked {result.total} live token(s) of {users} user(s) at risk ≥ {min_level.value}")


CREDENTIAL_ENV = "TOKENWARDEN_CREDENTIAL"
ADMIN_SCOPE = "vso.tokenadministration"


def read_credential(credential_file: Path | None) -> str | None:
    """An administrator's own tokenwarden token: ``--credential-file F`` (``-`` = stdin), else
    ``$TOKENWARDEN_CREDENTIAL``; never an argument (``ps`` would show it)."""
    if credential_file is not None:
        if str(credential_file) == "-":
            if sys.stdin.isatty():
                fail("--credential-file -: pipe the token on stdin", code=2)
            return sys.stdin.readline().strip() or None
        try:
            return credential_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            fail(f"cannot read {credential_file}: {exc.strerror}", code=2)
    return os.environ.get(CREDENTIAL_ENV, "").strip() or None


def admin_actor(c: Container, org: str, secret: str) -> Actor:
    """Authenticate an administrator's credential for ``org`` (needs vso.tokenadministration)."""
    the_org = c.directory.find_org(org)
    caller = c.validator.validate(secret, ADMIN_SCOPE, the_org.id)
    return caller.actor()


@revoke_app.command("org")
@domain_errors
def revoke_org(
    org: OrgOpt = "",
    confirm: Annotated[
        str | None, typer.Option("--confirm", help="The organization's name, typed again, to execute.")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Recorded in the audit log.")] = None,
    approve: Annotated[
        str | None, typer.Option("--approve", help="Approve (and execute) a pending request by id.")
    ] = None,
    credential_file: Annotated[
        Path | None,
        typer.Option(
            "--credential-file",
            help=f"File holding YOUR admin token ('-' = stdin; default ${CREDENTIAL_ENV}).",
        ),
    ] = None,
    operator_override: Annotated[
        bool,
        typer.Option(
            "--operator-override",
            help="Execute as the operator without an admin credential or a second person (needs --reason).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Break-glass: preview, or (with --confirm ORG) revoke every token of every kind in the org.

    Requesting and approving need each administrator's own token (--credential-file or
    $TOKENWARDEN_CREDENTIAL); the two must be different admins of the org when the two-person
    rule is on. --operator-override --reason R executes as the operator, audited as an override."""
    if confirm is None and approve is None:
        if operator_override:
            fail("--operator-override needs --confirm ORG", code=2)
        c = open_container()
        preview = c.break_glass.preview(OPERATOR, org)
        if json_out:
            emit_json(preview)
            return
        table(
            f"break-glass preview for {org}", ["kind", "live tokens"], list(preview["tokensByKind"].items())
        )
        table("top owners", ["upn", "tokens"], [[o["upn"], o["tokens"]] for o in preview["topOwners"]])
        err.print(
            f"to execute: tokenwarden revoke org --org {org} --confirm {preview['confirmWith']} "
            f"--credential-file YOUR_TOKEN_FILE"
        )
        return
    actor: Actor = OPERATOR
    secret: str | None = None
    if operator_override:
        if approve is not None:
            fail("--operator-override executes at once: it does not combine with --approve", code=2)
        if not (reason or "").strip():
            fail("--operator-override needs --reason (recorded in the audit log)", code=2)
    else:
        secret = read_credential(credential_file)
        if secret is None:
            who = "approving" if approve is not None else "requesting"
            fail(
                f"break-glass needs the {who} administrator's own token: --credential-file FILE "
                f"(or - for stdin) or ${CREDENTIAL_ENV}; the operator may use --operator-override --reason R",
                code=2,
            )
    c = open_container()
    if secret is not None:
        actor = admin_actor(c, org, secret)
    if approve is not None:
        outcome = c.break_glass.approve(actor, org, approve, confirm)
    else:
        outcome = c.break_glass.start(actor, org, confirm, reason, operator_override=operator_override)
    data: dict[str, Any] = {
        "status": outcome.status,
        "requestId": outcome.request.id,
        "requestedBy": outcome.request.requested_by,
        "approvedBy": outcome.request.approved_by,
        "operatorOverride": operator_override,
        "revoked": outcome.revoked,
        "executedAt": iso_z(outcome.request.executed_at),
    }
    if outcome.recovery is not None:
        data["recoveryToken"] = outcome.recovery.secret
    if json_out:
        emit_json(data)
    elif outcome.status == "pending":
        out.print(
            f"break-glass request {outcome.request.id} awaits a second administrator's approval:\n"
            f"  tokenwarden revoke org --org {org} --confirm {org} --approve {outcome.request.id} "
            f"--credential-file THEIR_TOKEN_FILE"
        )
    else:
        revoked = outcome.revoked or {}  # the CLI waits for the count (count_within=None)
        out.print(f"break-glass executed: {sum(revoked.values())} live token(s) revoked in {org}")
        if outcome.recovery is not None:
            out.print(f"recovery token (24 h, shown once): {outcome.recovery.secret}")
