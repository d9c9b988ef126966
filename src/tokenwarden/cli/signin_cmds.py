"""``tokenwarden signins list``: the sign-in log of an organization (issue 14)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt, OrgOpt
from tokenwarden.cli.output import emit_json, out, table
from tokenwarden.domain.clock import ensure_utc
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.signin_log import MAX_TOP, SignInFilter, SignInLog, sign_in_json

signins_app = typer.Typer(help="The sign-in log: sign-ins and failed sign-ins.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(signins_app, name="signins")


@signins_app.command("list")
@domain_errors
def signins_list(
    org: OrgOpt = "",
    user: Annotated[str | None, typer.Option("--user", help="Only this UPN (as typed at sign-in).")] = None,
    since: Annotated[
        datetime | None, typer.Option("--since", help="From this time (UTC if no offset).")
    ] = None,
    until: Annotated[datetime | None, typer.Option("--until", help="Before this time.")] = None,
    failures: Annotated[bool, typer.Option("--failures", help="Failed and throttled sign-ins only.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_TOP, help="At most this many.")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Newest first: time, UPN, IP, browser, result and the failure reason (Graph's shape with --json)."""
    c = open_container()
    try:
        wanted = SignInFilter(
            since=ensure_utc(since) if since else None,
            until=ensure_utc(until) if until else None,
            upn=user,
            result="failure" if failures else None,
            top=limit,
        )
        rows = [sign_in_json(e) for e in SignInLog(c.audit).list(OPERATOR, org, wanted)]
    finally:
        c.database.dispose()
    if json_out:
        emit_json(rows)
        return
    if not rows:
        out.print("no sign-ins recorded")
        return
    table(
        "Sign-ins",
        ["time", "user", "ip", "browser", "os", "result", "reason"],
        [
            [
                r["createdDateTime"],
                r["userPrincipalName"],
                r["ipAddress"],
                r["deviceDetail"]["browser"],
                r["deviceDetail"]["operatingSystem"],
                "success" if r["status"]["errorCode"] == 0 else f"failure {r['status']['errorCode']}",
                r["status"]["additionalDetails"] or "",
            ]
            for r in rows
        ],
    )
