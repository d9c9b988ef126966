"""Local passwords and browser sessions (operator mode): ``user passwd``, ``sessions list|revoke``."""

from __future__ import annotations

import getpass
import sys
from datetime import datetime
from typing import Annotated, Any, Final

import typer

from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt
from tokenwarden.cli.output import emit_json, fail, out, table
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.passwords import MAX_PASSWORD_LENGTH
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.effective import cause_of
from tokenwarden.services.sessions import SessionService

sessions_app = typer.Typer(help="Browser sessions (operator mode, local database).", no_args_is_help=True)
UserOpt = Annotated[str, typer.Option("--user", help="The user's UPN.")]
STDIN_HINT: Final = "printf '%s' \"$NEW_PASSWORD\" | tokenwarden user passwd UPN"


def register(app: typer.Typer, user_app: typer.Typer) -> None:
    app.add_typer(sessions_app, name="sessions")
    user_app.command("passwd")(user_passwd)
    user_app.command("mfa-reset")(user_mfa_reset)


def read_new_password() -> str:
    """The new password: from a terminal, asked twice without echo; otherwise read from standard
    input (one line; its line end is dropped), never prompted for."""
    if sys.stdin.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Repeat the new password: ") != first:
            fail("the two passwords differ: nothing changed")
        return first
    data = sys.stdin.read(MAX_PASSWORD_LENGTH * 4 + 3)
    if data.endswith("\r\n"):
        data = data[:-2]
    elif data.endswith("\n"):
        data = data[:-1]
    if not data:
        fail(f"no password on standard input: pipe it in, e.g. {STDIN_HINT}", code=2)
    if "\n" in data or "\r" in data:
        fail("standard input holds more than one line: send the password alone", code=2)
    return data


@domain_errors
def user_passwd(
    upn: Annotated[str, typer.Argument(help="User principal name of a local account.")],
    json_out: JsonOpt = False,
) -> None:
    """Set a local account's password, read from standard input (never an argument; asked
    twice without echo on a terminal). Signs the user out of every browser session."""
    password = read_new_password()
    c = open_container()
    try:
        result = c.accounts.set_password(OPERATOR, upn, password)
    finally:
        c.database.dispose()
    data = {
        "id": result.user.id,
        "upn": result.user.upn,
        "passwordChangedAt": iso_z(result.at),
        "revokedSessions": result.revoked_sessions,
    }
    if json_out:
        emit_json(data)
    else:
        count = result.revoked_sessions
        message = f"password of {result.user.upn} set; {count} browser session(s) signed out"
        out.print(message, highlight=False)


@domain_errors
def user_mfa_reset(
    upn: Annotated[str, typer.Argument(help="User principal name.")],
    json_out: JsonOpt = False,
) -> None:
    """Remove a user's second factor (a lost device, in every organization they belong to):
    they sign in with the password alone and set up a new one where it is required."""
    c = open_container()
    try:
        user, had = c.mfa.operator_reset(upn)
    finally:
        c.database.dispose()
    if json_out:
        emit_json({"upn": user, "reset": had})
    elif had:
        out.print(f"second factor of {user} removed: they set up a new one at /account/mfa", highlight=False)
    else:
        out.print(f"{user} had no second factor: nothing changed", highlight=False)


def session_dict(sessions: SessionService, record: TokenRecord, now: datetime) -> dict[str, Any]:
    return {
        "sessionId": record.authorization_id,
        "device": record.display_name,
        "userAgent": record.user_agent,
        "ip": record.last_used_ip,
        "createdAt": iso_z(record.created_at),
        "lastUsedAt": iso_z(record.last_used_at),
        "expiresAt": iso_z(record.valid_to),
        "absoluteExpiresAt": iso_z(sessions.absolute_end(record)),
        "state": record.state(now).value,
        "orgId": record.org_id,
        "revokedAt": iso_z(record.revoked_at),
        "revokedCause": cause_of(record),
    }


@sessions_app.command("list")
@domain_errors
def sessions_list(
    user: UserOpt,
    include_ended: Annotated[
        bool, typer.Option("--include-ended", help="Also revoked and expired sessions.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """List a user's browser sessions, newest first (never their secrets)."""
    c = open_container()
    owner, records = c.sessions.for_operator(user, include_ended=include_ended)
    now = c.clock.now()
    rows = [session_dict(c.sessions, r, now) for r in records]
    if json_out:
        emit_json(rows)
        return
    columns = ["sessionId", "device", "ip", "createdAt", "lastUsedAt", "expiresAt", "state"]
    table(f"browser sessions of {owner.upn}", columns, [[r[k] for k in columns] for r in rows])


@sessions_app.command("revoke")
@domain_errors
def sessions_revoke(
    user: UserOpt,
    session_id: Annotated[str | None, typer.Option("--id", help="The session to revoke.")] = None,
    all_sessions: Annotated[bool, typer.Option("--all", help="Every live session of the user.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Revoke one session (--id) or all of a user's sessions (--all): dead on every node at once."""
    if (session_id is None) == (not all_sessions):
        raise typer.BadParameter("give exactly one of --id ID and --all", param_hint="'--id' / '--all'")
    c = open_container()
    revoked = c.sessions.operator_revoke(user, None if all_sessions else session_id)
    data = {"user": user, "revoked": len(revoked), "sessionIds": [r.authorization_id for r in revoked]}
    if json_out:
        emit_json(data)
    else:
        out.print(f"revoked {len(revoked)} session(s) of {user}")
