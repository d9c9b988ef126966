"""`tokenwarden keys list|rotate`: the signing keys of access tokens (ES256) and Security Event
Tokens (RS256). A rotated key stops signing at once and stays published in the JWKS until
every token it signed has expired."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt
from tokenwarden.cli.output import emit_json, out, table
from tokenwarden.domain.clock import iso_z
from tokenwarden.services.signing import ES256, RS256

keys_app = typer.Typer(help="Signing keys (JWKS): list and rotate.", no_args_is_help=True)
SET_KEY_OVERLAP = timedelta(days=1)  # receivers cache the JWKS; SETs may sit in a poll queue


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


@keys_app.command("list")
@domain_errors
def keys_list(json_out: JsonOpt = False) -> None:
    """Every published key: the active one per algorithm and the retiring ones."""
    rows = [
        {
            "kid": k.kid,
            "alg": k.alg,
            "status": k.status,
            "createdAt": iso_z(k.created_at),
            "publishedUntil": iso_z(k.retire_after),
        }
        for k in open_container().keys.published()
    ]
    if json_out:
        emit_json(rows)
        return
    table(
        "signing keys",
        ["kid", "alg", "status", "created", "published until"],
        [(r["kid"], r["alg"], r["status"], r["createdAt"], r["publishedUntil"] or "-") for r in rows],
    )


@keys_app.command("rotate")
@domain_errors
def keys_rotate(
    alg: Annotated[
        str, typer.Option("--alg", help="ES256 (access tokens) or RS256 (Security Event Tokens).")
    ] = ES256,
    json_out: JsonOpt = False,
) -> None:
    """Make a new active key; the old one keeps verifying what it signed until that expires."""
    c = open_container()
    if alg not in (ES256, RS256):
        raise typer.BadParameter("--alg must be ES256 or RS256")
    overlap = timedelta(minutes=c.settings.access_token_minutes + 5) if alg == ES256 else SET_KEY_OVERLAP
    kid, retired = c.keys.rotate(alg, overlap)
    result = {"kid": kid, "alg": alg, "retired": retired, "retiredPublishedFor": int(overlap.total_seconds())}
    if json_out:
        emit_json(result)
        return
    out.print(f"new {alg} key {kid} is active")
    for old in retired:
        out.print(f"retired {old}: still published for {overlap} so the tokens it signed keep verifying")
