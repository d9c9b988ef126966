"""Options every command shares, defined once: ``--org`` (with its defaults) and ``--json``."""

from __future__ import annotations

from typing import Annotated

import typer

from tokenwarden.bootstrap import database_for
from tokenwarden.cli.context import open_container
from tokenwarden.domain.errors import DomainError
from tokenwarden.services.common import OPERATOR
from tokenwarden.settings import Settings

ORG_ENV = "TOKENWARDEN_ORG"


def organization_names() -> list[str]:
    """The organizations of the configured database (operator mode), by name."""
    db = database_for(Settings())
    try:
        if not db.is_initialized():
            return []
    finally:
        db.dispose()
    c = open_container()
    try:
        return sorted(o.name for o, _ in c.directory.orgs_of(OPERATOR))
    finally:
        c.database.dispose()


def default_org(names: list[str]) -> str:
    """The only organization, or a usage error naming the ones to choose from."""
    if len(names) == 1:
        return names[0]
    if not names:
        raise typer.BadParameter(
            "the database holds no organization yet: run `tokenwarden init` first", param_hint="'--org'"
        )
    raise typer.BadParameter(
        f"the database holds {len(names)} organizations, choose one with --org or {ORG_ENV}: "
        + ", ".join(names),
        param_hint="'--org'",
    )


def resolve_org(ctx: typer.Context, value: str | None) -> str:
    """``--org``, else ``$TOKENWARDEN_ORG`` (click reads it), else the only organization."""
    if ctx.resilient_parsing or (value is not None and value.strip()):
        return (value or "").strip()
    try:
        names = organization_names()
    except DomainError as exc:
        raise typer.BadParameter(f"{exc.message} ({exc.code})", param_hint="'--org'") from exc
    return default_org(names)


OrgOpt = Annotated[
    str,
    typer.Option(
        "--org",
        envvar=ORG_ENV,
        callback=resolve_org,
        show_default=False,
        help=f"Organization name (default: ${ORG_ENV}, else the only organization).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
