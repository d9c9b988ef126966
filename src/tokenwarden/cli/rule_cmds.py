"""`tokenwarden rule add|list|delete`: native revocation rules (operator mode)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt, OrgOpt
from tokenwarden.cli.output import emit_json, err, fail, out, table
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.watermarks import parse_kinds
from tokenwarden.services.common import OPERATOR

rule_app = typer.Typer(
    help="Revocation rules: every token issued before a date dies (optionally by kind, scope, user).",
    no_args_is_help=True,
)
DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]


def register(app: typer.Typer) -> None:
    app.add_typer(rule_app, name="rule")


def rule_dict(rule: RevocationRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "scopes": " ".join(rule.scopes) or None,
        "createdBefore": iso_z(rule.created_before),
        "createdAfter": iso_z(rule.created_after),
        "kinds": [k.value for k in rule.kinds] if rule.kinds else None,
        "userIds": list(rule.user_ids) if rule.user_ids else None,
        "matchImplied": rule.match_implied,
        "createdAt": iso_z(rule.created_at),
        "createdBy": rule.created_by,
    }


def describe(rule: RevocationRule) -> str:
    scopes = f"scopes {' '.join(rule.scopes)}" if rule.scopes else "every scope"
    kinds = ", ".join(k.value for k in rule.kinds) if rule.kinds else "every kind"
    span = f"issued before {iso_z(rule.created_before)}"
    if rule.created_after is not None:
        span = f"issued from {iso_z(rule.created_after)} until {iso_z(rule.created_before)}"
    users = f", {len(rule.user_ids)} user(s)" if rule.user_ids else ""
    return f"tokens {span} ({scopes}; {kinds}{users})"


@rule_app.command("add")
@domain_errors
def rule_add(
    before: Annotated[
        datetime,
        typer.Option(
            "--before", formats=DATE_FORMATS, help="Cut tokens issued before this (UTC if no offset)."
        ),
    ],
    after: Annotated[
        datetime | None,
        typer.Option("--after", formats=DATE_FORMATS, help="Only tokens issued at or after this."),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", help="pat, access, refresh, session or service (repeatable; default all)."),
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="Only tokens carrying this scope literally (repeatable; default all)."),
    ] = None,
    user: Annotated[
        list[str] | None, typer.Option("--user", help="Only this member's tokens (UPN or id; repeatable).")
    ] = None,
    match_implied: Annotated[
        bool, typer.Option("--match-implied", help="--scope also matches scopes that imply it.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count the live tokens it would cut; store nothing.")
    ] = False,
    org: OrgOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Add a rule: every token issued before --before (and matching the filters) stops working."""
    c = open_container()
    args: dict[str, Any] = {
        "created_after": after,
        "kinds": parse_kinds(kind) if kind else None,
        "users": user,
        "match_implied": match_implied,
    }
    scopes = " ".join(scope) if scope else None
    if dry_run:
        found = c.rules.preview(OPERATOR, org, scopes, before, **args)
        data = {
            "dryRun": True,
            "liveTokens": found.live_tokens,
            "byKind": found.by_kind,
            "rule": rule_dict(found.rule),
        }
        if json_out:
            emit_json(data)
            return
        out.print(f"dry run: the rule would cut {found.live_tokens} live token(s) in {org}", highlight=False)
        out.print(f"  {describe(found.rule)}", highlight=False)
        if found.by_kind:
            table(None, ["kind", "live tokens"], sorted(found.by_kind.items()))
        err.print("nothing stored: run again without --dry-run to add the rule")
        return
    rule = c.rules.create(OPERATOR, org, scopes, before, **args)
    if json_out:
        emit_json(rule_dict(rule))
    else:
        out.print(f"added rule {rule.id} in {org}: {describe(rule)} are revoked", highlight=False)


@rule_app.command("list")
@domain_errors
def rule_list(org: OrgOpt = "", json_out: JsonOpt = False) -> None:
    """List an organization's revocation rules."""
    rows = [rule_dict(r) for r in open_container().rules.find(OPERATOR, org)]
    if json_out:
        emit_json(rows)
        return
    table(
        f"revocation rules of {org}",
        ["id", "createdBefore", "createdAfter", "scopes", "kinds", "users", "createdAt"],
        [
            [
                r["id"],
                r["createdBefore"],
                r["createdAfter"],
                r["scopes"] or "(every scope)",
                ",".join(r["kinds"]) if r["kinds"] else "(every kind)",
                len(r["userIds"]) if r["userIds"] else "(everyone)",
                r["createdAt"],
            ]
            for r in rows
        ],
    )


@rule_app.command("delete")
@domain_errors
def rule_delete(
    rule_id: Annotated[str, typer.Argument(help="The rule's id (see `tokenwarden rule list`).")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: the tokens the rule cut become valid again.")
    ] = False,
    org: OrgOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Delete a rule. The tokens it revoked (and nothing else revokes) work again: needs --yes."""
    c = open_container()
    done = c.rules.delete(OPERATOR, org, rule_id, dry_run=not yes)
    data = {
        "dryRun": not yes,
        "deleted": yes,
        "restoredTokens": done.restored_tokens,
        "byKind": done.by_kind,
        "rule": rule_dict(done.rule),
    }
    if not yes:
        message = (
            f"deleting rule {rule_id} makes {done.restored_tokens} revoked token(s) valid again; "
            "nothing deleted: run again with --yes to delete it"
        )
        if json_out:
            emit_json({"error": {"code": "confirmationRequired", "message": message}, **data})
        fail(message, code=2)
    if json_out:
        emit_json(data)
        return
    err.print(
        f"[bold yellow]warning:[/] rule {rule_id} deleted: {done.restored_tokens} token(s) it had "
        "revoked are valid again (audited as Token.RevocationRuleDeleteEvent)",
        highlight=False,
    )
    out.print(f"deleted rule {rule_id} ({describe(done.rule)})", highlight=False)
