"""Reports: ``tokenwarden report weekly`` (operator mode, local database)."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, Any

import typer

from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt, OrgOpt
from tokenwarden.cli.output import emit_json, fail, out, table
from tokenwarden.domain.clock import ensure_utc
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.weekly_report import report_csv

report_app = typer.Typer(help="Reports on an organization's tokens.", no_args_is_help=True)

_LIST_COLUMNS = ["id", "kind", "displayName", "owner", "validTo"]


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report")


def _parse_end(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return ensure_utc(datetime.fromisoformat(value.strip()))
    except ValueError:
        fail(f"--end is not an ISO-8601 timestamp: {value[:60]!r}", code=2)
        raise  # unreachable: fail() exits


@report_app.command("weekly")
@domain_errors
def weekly(
    org: OrgOpt = "",
    json_out: JsonOpt = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="The token lists as one CSV on stdout.")] = False,
    end: Annotated[
        str | None,
        typer.Option("--end", help="The week ends here (ISO-8601, UTC if no offset; default now)."),
    ] = None,
) -> None:
    """The weekly report: activity of the last 7 days, live tokens, expiring, full-scope,
    long-lived and dormant tokens, policy violations, top users, expiries per week ahead."""
    if json_out and csv_out:
        fail("--json and --csv exclude each other", code=2)
    until = _parse_end(end)
    c = open_container()
    try:
        report = c.weekly_report.build(OPERATOR, org, end=until)
    finally:
        c.database.dispose()
    if json_out:
        emit_json(report)
    elif csv_out:
        sys.stdout.write(report_csv(report))
    else:
        _print(report)


def _print(report: dict[str, Any]) -> None:
    period = report["period"]
    out.print(f"[bold]{report['org']['name']}[/]: week {period['start']} to {period['end']}")
    table("counts", ["measure", "tokens"], list(report["counts"].items()))
    limit = report["listLimit"]
    for name, extra in (
        ("expiringSoon", "daysLeft"),
        ("fullScope", "scope"),
        ("longLived", "validFrom"),
        ("dormant", "idleDays"),
    ):
        rows = report[name]
        if rows:
            table(
                f"{name} (first {limit})" if len(rows) >= limit else name,
                [*_LIST_COLUMNS, extra],
                [[r[c] for c in [*_LIST_COLUMNS, extra]] for r in rows],
            )
    if report["violations"]:
        table(
            "violations",
            ["authorizationId", "displayName", "owner", "violation", "fix"],
            [
                [t["authorizationId"], t["displayName"], t["owner"], v["message"], v["fix"]]
                for t in report["violations"]
                for v in t["violations"]
            ],
        )
    table("top users", ["upn", "tokens"], [[u["upn"], u["tokens"]] for u in report["topUsers"]])
    table(
        "expiring per week",
        ["weekStart", "count"],
        [[w["weekStart"], w["count"]] for w in report["expiringPerWeek"]],
    )
