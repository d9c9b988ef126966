"""``tokenwarden alerts list | ack | close | policy``: security alerts (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt, OrgOpt
from tokenwarden.cli.output import emit_json, fail, out, table
from tokenwarden.ports.alerts import ACKNOWLEDGED, CLOSED, OPEN
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.detection import alert_json

alerts_app = typer.Typer(
    help="Security alerts: list, acknowledge, close; the detection policy.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")


@alerts_app.command("list")
@domain_errors
def alerts_list(
    org: OrgOpt = "",
    status: Annotated[
        list[str] | None, typer.Option("--status", help="open, acknowledged, closed (repeatable).")
    ] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Only this rule.")] = None,
    level: Annotated[str | None, typer.Option("--level", help="high, medium or low.")] = None,
    token: Annotated[str | None, typer.Option("--token", help="Only this token id.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Alerts, newest first (default: open and acknowledged)."""
    c = open_container()
    try:
        statuses = tuple(status or (OPEN, ACKNOWLEDGED))
        found = c.detection.find(
            OPERATOR, org, statuses=statuses, token_id=token, rule=rule, level=level, limit=limit
        )
    finally:
        c.database.dispose()
    rows = [alert_json(a) for a in found]
    if json_out:
        emit_json(rows)
        return
    if not rows:
        out.print(f"no {' or '.join(statuses)} alerts")
        return
    table(
        "Alerts",
        ["id", "raised", "level", "rule", "token", "status", "done", "message"],
        [
            [
                r["id"],
                r["createdAt"],
                r["level"],
                r["rule"],
                r["tokenId"],
                r["status"] + (f" (seen {r['occurrences']} times)" if r["occurrences"] > 1 else ""),
                ", ".join(r["responses"]) or "notify",
                r["message"],
            ]
            for r in rows
        ],
    )


def _set(org: str, alert_id: str, status: str, note: str | None, json_out: bool) -> None:
    c = open_container()
    try:
        alert = c.detection.set_status(OPERATOR, org, alert_id, status, note)
    finally:
        c.database.dispose()
    if json_out:
        emit_json(alert_json(alert))
    else:
        out.print(f"alert {alert.id} is {alert.status}", markup=False, highlight=False)


@alerts_app.command("ack")
@domain_errors
def alerts_ack(
    alert_id: Annotated[str, typer.Argument(help="The alert's id.")],
    org: OrgOpt = "",
    note: Annotated[
        str | None, typer.Option("--note", help="Recorded with the alert and in the audit log.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Acknowledge an alert (it stays the token's open alert for its rule)."""
    _set(org, alert_id, ACKNOWLEDGED, note, json_out)


@alerts_app.command("close")
@domain_errors
def alerts_close(
    alert_id: Annotated[str, typer.Argument(help="The alert's id.")],
    org: OrgOpt = "",
    note: Annotated[
        str | None, typer.Option("--note", help="Recorded with the alert and in the audit log.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Close an alert (the rule may raise a new one for the token afterwards)."""
    _set(org, alert_id, CLOSED, note, json_out)


@alerts_app.command("policy")
@domain_errors
def alerts_policy(
    org: OrgOpt = "",
    set_file: Annotated[
        Path | None, typer.Option("--set", help="A JSON file of settings to change ('-' for stdin).")
    ] = None,
) -> None:
    """Print the organization's detection policy (JSON); with --set, change it first."""
    c = open_container()
    try:
        if set_file is not None:
            text = typer.get_text_stream("stdin").read() if str(set_file) == "-" else _read(set_file)
            try:
                changes = json.loads(text)
            except ValueError as exc:
                fail(f"{set_file}: not valid JSON ({exc})")
                return
            policy = c.detection.set_policy(OPERATOR, org, changes)
        else:
            policy = c.detection.get_policy(OPERATOR, org)
    finally:
        c.database.dispose()
    emit_json(policy.to_json())


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
        raise typer.Exit(2) from exc
