"""``tokenwarden audit verify | export | checkpoint | keys | rotate-key``: the tamper-evident chain."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from tokenwarden.cli.admin_cmds import audit_app
from tokenwarden.cli.context import open_container
from tokenwarden.cli.options import JsonOpt
from tokenwarden.cli.output import emit_json, err, fail, out, table
from tokenwarden.domain.audit_chain import ChainReport
from tokenwarden.domain.clock import ensure_utc
from tokenwarden.domain.errors import DomainError
from tokenwarden.services.audit_chain import EXPORT_FORMATS, verify_export
from tokenwarden.services.common import OPERATOR


def _print_reports(reports: list[ChainReport], names: dict[str, str]) -> None:
    for report in reports:
        name = names.get(report.chain, report.chain or "installation")
        if report.ok:
            tail = (
                f"; {report.unsigned_tail} newest entries not yet in a checkpoint"
                if report.unsigned_tail
                else ""
            )
            out.print(
                f"[green]ok[/green] {name}: {report.entries} entries, seq {report.first_seq or 0}.."
                f"{report.last_seq or 0}, {report.checkpoints} signed checkpoint(s) through seq "
                f"{report.signed_through}{tail}"
            )
            continue
        out.print(
            f"[red]TAMPERED[/red] {name}: {len(report.findings)} finding(s) in {report.entries} entries"
        )
        for f in report.findings:
            where = f"row {f.row_id}" if f.row_id is not None else f"seq {f.seq}"
            out.print(f"  {f.kind:<20} {where:<14} {f.message}", markup=False, highlight=False)


@audit_app.command("verify")
def audit_verify(
    org: Annotated[
        str | None, typer.Option("--org", help="One organization (default: every chain, as operator).")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="Verify an export offline instead of the database.", exists=True, dir_okay=False
        ),
    ] = None,
    trust_kid: Annotated[
        list[str] | None,
        typer.Option(
            "--trust-kid", help="With --file: accept checkpoints only from these key ids (repeatable)."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check the audit chain: every modified, deleted, inserted or reordered row is named.
    Exit 0 when intact, 1 when tampered with, 2 on error."""
    if file is not None:
        try:
            with file.open(encoding="utf-8") as fh:
                report, used = verify_export(fh, trusted_kids=set(trust_kid) if trust_kid else None)
        except (DomainError, UnicodeDecodeError) as exc:
            fail(getattr(exc, "message", str(exc)), code=2)
            return
        if json_out:
            emit_json({"ok": report.ok, "chains": [report.as_dict()], "keysUsed": used})
        else:
            _print_reports([report], {})
            if not trust_kid:
                err.print(
                    "checkpoints were checked against the keys inside the file "
                    f"({', '.join(used) or 'none'}): compare them with `tokenwarden audit keys` "
                    "or pass --trust-kid"
                )
        raise typer.Exit(0 if report.ok else 1)
    c = open_container()
    try:
        reports = c.audit_chain.verify(OPERATOR, org)
        names = {o.id: o.name for o, _ in c.directory.orgs_of(OPERATOR)}
    except DomainError as exc:
        fail(f"{exc.message} ({exc.code})", code=2)
        return
    ok = all(r.ok for r in reports)
    if json_out:
        emit_json({"ok": ok, "chains": [{**r.as_dict(), "org": names.get(r.chain)} for r in reports]})
    elif not reports:
        out.print("the audit log is empty: nothing to verify")
    else:
        _print_reports(reports, names)
    raise typer.Exit(0 if ok else 1)


@audit_app.command("export")
def audit_export(
    org: Annotated[
        str | None, typer.Option("--org", help="Organization (default: the installation's own entries).")
    ] = None,
    since: Annotated[
        datetime | None, typer.Option("--from", help="From this time (UTC if no offset).")
    ] = None,
    until: Annotated[datetime | None, typer.Option("--to", help="Before this time.")] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"One of {', '.join(EXPORT_FORMATS)}.")] = "ndjson",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
) -> None:
    """Export entries with the checkpoints and public keys that verify them offline
    (`tokenwarden audit verify --file`)."""
    c = open_container()
    try:
        chunks = c.audit_chain.export(
            OPERATOR,
            org,
            since=ensure_utc(since) if since else None,
            until=ensure_utc(until) if until else None,
            fmt=fmt,
        )
        if output is None:
            for chunk in chunks:
                sys.stdout.write(chunk)
            return
        tmp = output.with_name(output.name + ".partial")
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            for chunk in chunks:
                fh.write(chunk)
        tmp.replace(output)
    except DomainError as exc:
        fail(f"{exc.message} ({exc.code})", code=2)
        return
    err.print(f"wrote {output}")


@audit_app.command("checkpoint")
def audit_checkpoint(json_out: JsonOpt = False) -> None:
    """Sign the head of every chain that grew since its last checkpoint, now."""
    made = open_container().audit_chain.checkpoint(force=True)
    rows: list[dict[str, Any]] = [
        {"chain": cp.chain or None, "seq": cp.seq, "hash": cp.hash, "kid": cp.kid} for cp in made
    ]
    if json_out:
        emit_json({"checkpoints": rows})
    elif not rows:
        out.print("every chain is already signed through its newest entry")
    else:
        table(
            "checkpoints signed",
            ["chain", "seq", "kid"],
            [[r["chain"] or "installation", r["seq"], r["kid"]] for r in rows],
        )


@audit_app.command("keys")
def audit_keys(json_out: JsonOpt = False) -> None:
    """The public keys that sign checkpoints (pin their ids for offline verification)."""
    keys = open_container().audit_chain.public_keys()
    if json_out:
        emit_json({"keys": keys})
    else:
        table(
            "audit checkpoint keys",
            ["kid", "kty", "crv"],
            [[k.get("kid"), k.get("kty"), k.get("crv")] for k in keys],
        )


@audit_app.command("rotate-key")
def audit_rotate_key(json_out: JsonOpt = False) -> None:
    """A new checkpoint signing key; the old ones keep verifying what they signed."""
    kid, retired = open_container().audit_chain.rotate_key()
    if json_out:
        emit_json({"kid": kid, "retired": retired})
    else:
        out.print(f"checkpoint key {kid} now signs; retired: {', '.join(retired) or 'none'}")
