"""``tokenwarden scan PATH [--git] [--revoke]``: leaked tokenwarden tokens in files or history.

Exit codes: 0 nothing found; 1 tokens found (reported, or revoked with --revoke); 2 an error.
Tokens are never printed: a finding shows the kind, where, a redacted form and the SHA-256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tokenwarden.cli.context import open_container
from tokenwarden.cli.options import JsonOpt
from tokenwarden.cli.output import emit_json, fail, out, table
from tokenwarden.domain.errors import DomainError, NotFound
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.token_scan import Hit, scan_files, scan_git

REASON = "compromised: found by tokenwarden scan"


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)


def scan(
    path: Annotated[Path, typer.Argument(help="A file, a directory, or (with --git) a repository.")],
    git: Annotated[
        bool, typer.Option("--git", help="Scan every commit of the repository's history.")
    ] = False,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Revoke every token found (needs this installation's database).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Find tokenwarden tokens by prefix and checksum (no false positives), offline."""
    try:
        hits = list(scan_git(path) if git else scan_files(path))
    except DomainError as exc:
        fail(f"{exc.message} ({exc.code})", code=2)
        return
    rows: list[dict[str, Any]] = [h.json() for h in hits]
    if revoke and hits:
        _revoke(hits, rows)
    if json_out:
        emit_json({"found": len(rows), "findings": rows})
    elif rows:
        columns = ["kind", "where", "commit", "token", "sha256"] + (["revoked"] if revoke else [])
        table(
            f"{len(rows)} tokenwarden token(s) found",
            columns,
            [
                [
                    r["kind"],
                    f"{r['path']}:{r['line']}",
                    (r["commit"] or "")[:12],
                    r["redacted"],
                    r["sha256"][:16],
                    *([r["result"]] if revoke else []),
                ]
                for r in rows
            ],
        )
    else:
        out.print("no tokenwarden token found")
    raise typer.Exit(1 if rows else 0)


def _revoke(hits: list[Hit], rows: list[dict[str, Any]]) -> None:
    c = open_container()
    try:
        for hit, row in zip(hits, rows, strict=True):
            try:
                found = c.revocation.revoke_by_value(OPERATOR, None, hit.found.token, reason=REASON)
                row["result"] = "revoked"
                row["authorizationId"] = found.record.authorization_id
            except NotFound:
                row["result"] = "not a token of this installation"
            except DomainError as exc:
                row["result"] = f"error: {exc.message}"
    finally:
        c.database.dispose()
