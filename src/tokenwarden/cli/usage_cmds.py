"""``tokenwarden usage show ID``: a token's usage records (issue 14)."""

from __future__ import annotations

from typing import Annotated

import typer

from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt, OrgOpt
from tokenwarden.cli.output import emit_json, out, table
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.usage import totals_json

usage_app = typer.Typer(help="Usage records: who used a token, from where, how often.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(usage_app, name="usage")


@usage_app.command("show")
@domain_errors
def usage_show(
    token_id: Annotated[str, typer.Argument(help="The token's id (authorizationId).")],
    org: OrgOpt = "",
    days: Annotated[int, typer.Option("--days", min=1, max=3660, help="Days of the per-day table.")] = 14,
    json_out: JsonOpt = False,
) -> None:
    """First and last use, networks, requests per day, user agents and recent 401/403s."""
    c = open_container()
    try:
        totals, about = c.usage.totals(OPERATOR, org, token_id)
        body = totals_json(totals, about, c.usage.retention_days)
    finally:
        c.database.dispose()
    if json_out:
        emit_json(body)
        return
    recent = body["recent"]
    out.print(
        f"{body['kind']} {body['tokenId']} ({body['displayName']}) of {body['owner']}\n"
        f"  requests in the last {body['retentionDays']} days: {body['requests']}\n"
        f"  first use: {body['firstUsedAt'] or 'never'}   last use: {body['lastRecordedAt'] or 'never'}\n"
        f"  distinct networks: {body['distinctNetworks']}\n"
        f"  last 24 h: 401 responses {recent['status401']}, 403 responses {recent['status403']}",
        markup=False,
        highlight=False,
    )
    if body["networks"]:
        table(
            "Networks",
            ["network", "requests", "first seen", "last seen"],
            [
                [n["network"] or "(unknown)", n["requests"], n["firstSeen"], n["lastSeen"]]
                for n in body["networks"]
            ],
        )
    if body["perDay"]:
        table(
            "Requests per day",
            ["day", "requests"],
            [[d["day"], d["requests"]] for d in body["perDay"][-days:]],
        )
    if body["userAgents"]:
        table(
            "User agents",
            ["user agent", "requests"],
            [[a["userAgent"] or "(none)", a["requests"]] for a in body["userAgents"]],
        )
