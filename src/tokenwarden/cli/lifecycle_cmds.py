"""Owner self-service on the command line (issue 12, operator mode): ``pat extend``,
``pat regenerate``, ``pat watch|unwatch|watchers`` and ``user set-email``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt
from tokenwarden.cli.output import emit_json, out
from tokenwarden.domain.errors import NotFound
from tokenwarden.domain.policies import HARD_MAX_LIFETIME_DAYS
from tokenwarden.services.common import OPERATOR

IdArg = Annotated[str, typer.Argument(help="The PAT's authorizationId.")]
AddressArg = Annotated[str, typer.Argument(help="An email address.")]


def register(pat_app: typer.Typer, user_app: typer.Typer, pat_dict: Callable[..., dict[str, Any]]) -> None:
    @pat_app.command("extend")
    @domain_errors
    def pat_extend(
        authorization_id: IdArg,
        days: Annotated[
            int,
            typer.Option(
                "--days", min=1, max=HARD_MAX_LIFETIME_DAYS, help="validTo = now + DAYS (policy caps apply)."
            ),
        ],
        json_out: JsonOpt = False,
    ) -> None:
        """Move a still-valid PAT's validTo to now + DAYS (an expired PAT cannot be extended)."""
        c = open_container()
        record = c.token_care.extend(OPERATOR, authorization_id, days)
        data = pat_dict(record, c.clock.now())
        if json_out:
            emit_json(data)
        else:
            out.print(f"extended {record.authorization_id} ({record.display_name}) to {data['validTo']}")

    @pat_app.command("regenerate")
    @domain_errors
    def pat_regenerate(authorization_id: IdArg, json_out: JsonOpt = False) -> None:
        """New secret for the same PAT; the old one stops working at once. The new secret is
        printed this once, on stdout."""
        c = open_container()
        issued = c.pats.regenerate(OPERATOR, authorization_id)
        if json_out:
            emit_json(pat_dict(issued.record, c.clock.now(), issued.secret))
            return
        out.print(f"regenerated {issued.record.authorization_id} ({issued.record.display_name});")
        out.print("the previous secret is revoked. New secret (shown only this once):")
        out.print(issued.secret, highlight=False)

    @pat_app.command("watch")
    @domain_errors
    def pat_watch(authorization_id: IdArg, address: AddressArg, json_out: JsonOpt = False) -> None:
        """Let ADDRESS hear this PAT's notices too (at most 20 watchers)."""
        c = open_container()
        found = c.token_care.add_watcher(OPERATOR, authorization_id, address)
        if json_out:
            emit_json({"authorizationId": authorization_id, "watchers": found})
        else:
            out.print(f"{address} watches {authorization_id} ({len(found)} watcher(s))")

    @pat_app.command("unwatch")
    @domain_errors
    def pat_unwatch(authorization_id: IdArg, address: AddressArg, json_out: JsonOpt = False) -> None:
        """Stop sending this PAT's notices to ADDRESS."""
        c = open_container()
        if not c.token_care.remove_watcher(OPERATOR, authorization_id, address):
            raise NotFound(f"{address} does not watch {authorization_id}", code="watcherNotFound")
        found = c.token_care.watchers(OPERATOR, authorization_id)
        if json_out:
            emit_json({"authorizationId": authorization_id, "watchers": found})
        else:
            out.print(f"{address} no longer watches {authorization_id}")

    @pat_app.command("watchers")
    @domain_errors
    def pat_watchers(authorization_id: IdArg, json_out: JsonOpt = False) -> None:
        """The addresses that also hear this PAT's notices."""
        c = open_container()
        found = c.token_care.watchers(OPERATOR, authorization_id)
        if json_out:
            emit_json({"authorizationId": authorization_id, "watchers": found})
        elif not found:
            out.print(f"nobody else watches {authorization_id}")
        else:
            for address in found:
                out.print(address, highlight=False)

    @user_app.command("set-email")
    @domain_errors
    def user_set_email(
        upn: Annotated[str, typer.Argument(help="User principal name.")],
        email: Annotated[str, typer.Argument(help='Where their notices go ("" = the UPN).')],
        digest: Annotated[
            bool | None,
            typer.Option("--digest/--no-digest", help="One message per job run instead of one per token."),
        ] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Set the address a user's notices go to, and whether they come as a digest."""
        c = open_container()
        user = c.token_care.set_contact(OPERATOR, upn, email, digest)
        data = {
            "upn": user.upn,
            "email": user.email,
            "address": user.notify_address,
            "digest": user.notify_digest,
        }
        if json_out:
            emit_json(data)
        else:
            mode = "a digest per run" if user.notify_digest else "one message per token"
            out.print(f"notices of {user.upn} go to {user.notify_address} ({mode})")
