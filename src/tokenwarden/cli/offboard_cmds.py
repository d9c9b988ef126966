"""``tokenwarden user offboard`` (issue 17, operator mode): a leaver's every token dead in one
step, their managed credentials and token watches handed to a successor (docs/offboarding.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt, OrgOpt
from tokenwarden.cli.output import emit_json, err, out, table
from tokenwarden.services.common import OPERATOR


def register(user_app: typer.Typer) -> None:
    """Add ``offboard`` to the ``user`` command group."""

    @user_app.command("offboard")
    @domain_errors
    def user_offboard(
        upn: Annotated[str, typer.Argument(help="The leaver's user principal name.")],
        org: OrgOpt = "",
        successor: Annotated[
            str | None,
            typer.Option(
                "--successor",
                help="Active member who takes over the leaver's managed credentials and token watches "
                "(default: the organization's security contact, if it names an active member).",
            ),
        ] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Offboard a member: disable them in the organization, cut every token of theirs there
        (PATs, OAuth tokens, sessions), hand their managed credentials (rotated at once) and token
        watches to the successor. Safe to run again: a retry finishes an interrupted offboarding."""
        c = open_container()
        report = c.offboarding.offboard(OPERATOR, org, upn, successor)
        c.delivery.deliver_due()  # the rotation alerts go out now, not at the next job run
        data = report.as_dict()
        if json_out:
            emit_json(data)
        else:
            out.print(
                f"offboarded {data['upn']} from {data['org']}: membership {data['membershipStatus']}, "
                f"{data['tokensRevokedCount']} live token(s) cut ({', '.join(data['revokedKinds'])})",
                highlight=False,
            )
            chosen = data["successor"] or "nobody"
            out.print(f"successor: {chosen} ({data['successorChosenBy']})", highlight=False)
            if report.credentials:
                table(
                    "managed credentials handed over",
                    ["name", "id", "rotated", "result", "detail"],
                    [
                        [h.name, h.id, "yes" if h.rotated else "NO", h.rotation_result, h.detail]
                        for h in report.credentials
                    ],
                )
            out.print(
                f"token watches handed over: {data['watchersHandedOver']}; "
                f"credential contacts replaced: {data['contactsReplaced']}",
                highlight=False,
            )
            for warning in report.warnings:
                err.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
        if not report.ok:
            raise typer.Exit(1)
