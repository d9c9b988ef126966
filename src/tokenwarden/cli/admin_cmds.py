"""Administration commands: org policies and the audit log."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, Any

import typer

from tokenwarden.cli.context import open_container
from tokenwarden.cli.options import JsonOpt, OrgOpt
from tokenwarden.cli.output import emit_json, fail, out, table
from tokenwarden.domain.errors import DomainError
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.audit_log import audit_csv, audit_row, check_event_types
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.policies import policy_as_dict
from tokenwarden.services.policy_check import violation_json

policy_app = typer.Typer(help="Organization PAT policies.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
    app.add_typer(audit_app, name="audit")


def _container() -> Any:
    return open_container()


@policy_app.command("show")
def policy_show(org: OrgOpt = "", json_out: JsonOpt = False) -> None:
    """Show an organization's PAT policy."""
    try:
        data = policy_as_dict(_container().policies.get(OPERATOR, org))
    except DomainError as exc:
        fail(f"{exc.message} ({exc.code})")
        return
    if json_out:
        emit_json(data)
    else:
        table(f"policy of {org}", ["setting", "value"], sorted(data.items()))


@policy_app.command("set")
def policy_set(
    org: OrgOpt = "",
    max_lifetime_days: Annotated[int | None, typer.Option("--max-lifetime-days", min=1, max=365)] = None,
    restrict_full_scope: Annotated[
        bool | None, typer.Option("--restrict-full-scope/--allow-full-scope", help="Forbid app_token PATs.")
    ] = None,
    restrict_creation: Annotated[
        bool | None, typer.Option("--restrict-creation/--unrestrict-creation", help="Allowlist only.")
    ] = None,
    allow: Annotated[
        list[str] | None, typer.Option("--allow", help="UPN allowed to create PATs (repeatable; replaces).")
    ] = None,
    require_external: Annotated[
        bool | None, typer.Option("--require-external/--allow-local", help="Only externally backed users.")
    ] = None,
    disable_creation: Annotated[
        bool | None, typer.Option("--disable-creation/--enable-creation", help="No new PATs at all.")
    ] = None,
    two_person: Annotated[
        bool | None,
        typer.Option(
            "--break-glass-two-person/--break-glass-one-person",
            help="Break-glass needs a second administrator's approval.",
        ),
    ] = None,
    approval_minutes: Annotated[
        int | None,
        typer.Option("--break-glass-approval-minutes", min=1, help="How long a break-glass request waits."),
    ] = None,
    warning_days: Annotated[
        str | None,
        typer.Option("--expiry-warning-days", help="Warn this many days before expiry, e.g. 30,14,7,1."),
    ] = None,
    dormant_days: Annotated[
        int | None,
        typer.Option("--dormant-revoke-days", min=0, help="Revoke PATs unused this many days (0: off)."),
    ] = None,
    security_contact: Annotated[
        str | None,
        typer.Option("--security-contact", help='Address that also hears every expiry warning ("" clears).'),
    ] = None,
    admins_mfa: Annotated[
        bool | None,
        typer.Option(
            "--admins-require-mfa/--admins-mfa-optional",
            help="Administrators must use a second factor (and step up before break-glass).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Change an organization's PAT policy (options left out keep their value)."""
    thresholds: tuple[int, ...] | None = None
    if warning_days is not None:
        try:
            thresholds = tuple(int(d) for d in warning_days.replace(" ", "").split(",") if d)
        except ValueError:
            fail(f"--expiry-warning-days takes whole days separated by commas, not {warning_days!r}", code=2)
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "max_lifetime_days": max_lifetime_days,
            "restrict_full_scope": restrict_full_scope,
            "restrict_creation": restrict_creation,
            "creation_allowlist": allow,
            "require_external_identity": require_external,
            "disable_pat_creation": disable_creation,
            "break_glass_two_person": two_person,
            "break_glass_approval_minutes": approval_minutes,
            "expiry_warning_days": thresholds,
            "dormant_revoke_days": dormant_days,
            "security_contact": security_contact,
            "admins_require_mfa": admins_mfa,
        }.items()
        if v is not None
    }
    if not changes:
        fail("nothing to change: give at least one policy option (see --help)", code=2)
    try:
        data = policy_as_dict(_container().policies.update(OPERATOR, org, **changes))
    except DomainError as exc:
        fail(f"{exc.message} ({exc.code})")
        return
    if json_out:
        emit_json(data)
    else:
        table(f"policy of {org}", ["setting", "value"], sorted(data.items()))


@policy_app.command("check")
def policy_check(org: OrgOpt = "", json_out: JsonOpt = False) -> None:
    """List the live PATs that break the organization's current policy and what enforcement
    would do to each (read-only; exit 0 whether or not there are violations)."""
    try:
        found = [violation_json(v) for v in _container().policy_check.violations(OPERATOR, org)]
    except DomainError as exc:
        fail(f"{exc.message} ({exc.code})")
        return
    if json_out:
        emit_json({"count": len(found), "value": found})
        return
    table(
        f"policy violations in {org}: {len(found)} token(s)",
        ["authorizationId", "displayName", "owner", "validTo", "violation", "fix"],
        [
            [t["authorizationId"], t["displayName"], t["owner"], t["validTo"], v["message"], v["fix"]]
            for t in found
            for v in t["violations"]
        ],
    )


@audit_app.command("query")
def audit_query(
    org: OrgOpt = "",
    since: Annotated[
        datetime | None, typer.Option("--since", help="From this time (UTC if no offset).")
    ] = None,
    until: Annotated[datetime | None, typer.Option("--until", help="Before this time.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Actor UPN or id.")] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Target id (authorizationId, user id).")
    ] = None,
    event_type: Annotated[list[str] | None, typer.Option("--event-type", help="Repeatable.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="At most this many entries.")
    ] = 1000,
    before_id: Annotated[
        int | None,
        typer.Option("--before-id", min=1, help="Only entries older than this id (the next page)."),
    ] = None,
    json_out: JsonOpt = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
) -> None:
    """Query the audit log of an organization, newest first (page on with --before-id)."""
    from tokenwarden.domain.clock import ensure_utc

    try:
        check_event_types(tuple(event_type or ()))
    except DomainError as exc:
        fail(exc.message, code=2)
    query = AuditQuery(
        since=ensure_utc(since) if since else None,
        until=ensure_utc(until) if until else None,
        actor_id=actor,
        target_id=target,
        event_types=tuple(event_type or ()),
        before_id=before_id,
        limit=limit,
    )
    try:
        entries = _container().audit.query(OPERATOR, org, query)
    except DomainError as exc:
        fail(f"{exc.message} ({exc.code})")
        return
    rows = [audit_row(e) for e in entries]
    if json_out:
        emit_json(rows)
    elif csv_out:
        sys.stdout.write(audit_csv(rows))
    else:
        table(
            f"audit log of {org}",
            ["id", "at", "eventType", "actorUpn", "targetType", "targetId"],
            [[r["id"], r["at"], r["eventType"], r["actorUpn"], r["targetType"], r["targetId"]] for r in rows],
        )
        more = f"; older: --before-id {rows[-1]['id']}" if rows and len(rows) == limit else ""
        out.print(f"{len(rows)} entries, newest first{more}")


# ---------------------------------------------------------------------- issue 12: enforcement
@policy_app.command("enforce")
def policy_enforce(
    grace: Annotated[
        int, typer.Option("--grace", help="Days owners get before their tokens change (0..90; 0: at once).")
    ],
    org: OrgOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Apply today's policy to existing PATs: owners of violating ones are told now; when the
    grace ends, too-long lifetimes are shortened and full-scope tokens revoked."""
    from tokenwarden.services.policy_enforcement import enforcement_json

    try:
        data = enforcement_json(_container().enforcement.enforce(OPERATOR, org, grace))
    except DomainError as exc:
        if json_out:
            emit_json({"error": {"code": exc.code, "message": exc.message}})
        fail(f"{exc.message} ({exc.code})")
        return
    if json_out:
        emit_json(data)
        return
    told = data["counts"].get("tokens", 0)
    if data["status"] == "applied":
        c = data["counts"]
        out.print(
            f"enforced at once: {told} token(s) told, {c.get('shortened', 0)} shortened, "
            f"{c.get('revoked', 0)} revoked"
        )
    else:
        out.print(f"enforcement {data['id']}: {told} token(s) told; they change after {data['graceUntil']}")
