"""`tokenwarden managed ...`, `tokenwarden rotate ...` and `tokenwarden secrets ...` (issue 13).

Exit codes: 0 done; 1 a rotation failed (the predecessor is kept and still served — the message
says what happened) or a domain error; 75 (EX_TEMPFAIL) the rotation job runs elsewhere now.
The external source's credential is read from a file (or stdin with ``-``), never an argument.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt, OrgOpt
from tokenwarden.cli.output import emit_json, err, fail, out, table
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.services.common import OPERATOR, get_org, reading
from tokenwarden.services.job_runner import JobBusy, run_dict
from tokenwarden.services.lifecycle_jobs import ROTATION_JOB
from tokenwarden.services.managed import NewCredential, credential_dict, rotation_dict
from tokenwarden.services.rotation import RotationResult

managed_app = typer.Typer(help="Credentials under rotation: add, list, show, remove.", no_args_is_help=True)
rotate_app = typer.Typer(
    help="Rotate managed credentials: run the job, see status, rotate one now.", no_args_is_help=True
)
secrets_app = typer.Typer(
    help="The built-in secret store: read a secret, re-seal under a new key.", no_args_is_help=True
)
EX_TEMPFAIL = 75
MAX_CREDENTIAL_FILE = 16 * 1024

NameArg = Annotated[str, typer.Argument(help="The managed credential's name.")]


def register(app: typer.Typer) -> None:
    app.add_typer(managed_app, name="managed")
    app.add_typer(rotate_app, name="rotate")
    app.add_typer(secrets_app, name="secrets")


def _read_credential(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        if str(path) == "-":
            text = sys.stdin.read(MAX_CREDENTIAL_FILE + 1)
        else:
            with path.open(encoding="utf-8") as fh:
                text = fh.read(MAX_CREDENTIAL_FILE + 1)
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read the Azure DevOps credential from {path}: {exc}", code=2)
        return None
    if len(text) > MAX_CREDENTIAL_FILE:
        fail(f"{path} is larger than {MAX_CREDENTIAL_FILE} bytes: that is not a token", code=2)
    return text.strip()


@managed_app.command("add")
@domain_errors
def managed_add(
    name: NameArg,
    authorization_id: Annotated[
        str, typer.Option("--authorization-id", help="The token in service now (its authorizationId).")
    ],
    store: Annotated[str, typer.Option("--store", help="builtin, vault, aws, azure-keyvault or file.")],
    org: OrgOpt = "",
    user: Annotated[str | None, typer.Option("--user", help="The token's owner (UPN); checked.")] = None,
    secret_name: Annotated[
        str | None, typer.Option("--secret-name", help="Name in the store (default: NAME), sanitised.")
    ] = None,
    threshold_days: Annotated[
        int, typer.Option("--threshold-days", help="Rotate this many days before expiry.")
    ] = 7,
    valid_days: Annotated[int, typer.Option("--valid-days", help="Validity of each new token.")] = 30,
    overlap_minutes: Annotated[
        int,
        typer.Option("--overlap-minutes", help="How long the previous token keeps working after a rotation."),
    ] = 0,
    contact: Annotated[
        list[str] | None, typer.Option("--contact", help="Alert contact (repeatable).")
    ] = None,
    source: Annotated[str, typer.Option("--source", help="local (a tokenwarden PAT) or ado.")] = "local",
    ado_url: Annotated[
        str | None, typer.Option("--ado-url", help="Base URL of the Azure DevOps-compatible server.")
    ] = None,
    ado_org: Annotated[str | None, typer.Option("--ado-org", help="Organization on that server.")] = None,
    ado_credential_file: Annotated[
        Path | None,
        typer.Option(
            "--ado-credential-file", help="File holding the admin credential for that server ('-': stdin)."
        ),
    ] = None,
    rotate: Annotated[
        bool,
        typer.Option(
            "--rotate/--no-rotate",
            help="Rotate at once so the store holds a working secret now (the given token is then "
            "revoked after the overlap window); --no-rotate waits until it is due.",
        ),
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Put a credential under rotation, into a secret store."""
    c = open_container()
    cred = c.managed.add(
        OPERATOR,
        org,
        NewCredential(
            name=name,
            authorization_id=authorization_id,
            store=store,
            source=source,
            user=user,
            secret_name=secret_name,
            threshold_days=threshold_days,
            valid_days=valid_days,
            overlap_minutes=overlap_minutes,
            contacts=contact or [],
            ado_url=ado_url,
            ado_org=ado_org,
            ado_credential=_read_credential(ado_credential_file),
        ),
    )
    outcome = None
    if rotate:
        if not json_out:
            err.print(f"rotating {cred.name} into the {cred.store.value} store …")
        outcome = c.rotation.rotate_now(OPERATOR, cred, compromised=False)
    cred, last = c.managed.get(OPERATOR, org, cred.name)
    data = credential_dict(cred, last)
    if outcome is not None:
        data["firstRotation"] = outcome.as_dict()
    if json_out:
        emit_json(data)
    else:
        out.print(
            f"[bold]{cred.name}[/] is managed: rotated {cred.rotation.threshold_days} days before expiry "
            f"into the {cred.store.value} store as [bold]{cred.store_secret_name}[/]",
            highlight=False,
        )
        if outcome is not None:
            out.print(f"first rotation: {outcome.result} — {outcome.detail}", highlight=False)
    if outcome is not None and outcome.result == RotationResult.FAILED:
        raise typer.Exit(1)


@managed_app.command("list")
@domain_errors
def managed_list(org: OrgOpt = "", json_out: JsonOpt = False) -> None:
    """The organization's managed credentials."""
    c = open_container()
    items = c.managed.all(OPERATOR, org)
    if json_out:
        emit_json({"value": [credential_dict(cred, last) for cred, last in items], "count": len(items)})
        return
    table(
        f"managed credentials in {org}",
        ["name", "store", "secret", "version", "valid to", "status", "last rotation"],
        [
            (
                cred.name,
                cred.store.value,
                cred.store_secret_name,
                cred.version,
                cred.valid_to.strftime("%Y-%m-%d %H:%M") if cred.valid_to else "",
                cred.status.value + (f" ({cred.last_error})" if cred.last_error else ""),
                f"{last.step.value} {last.started_at:%Y-%m-%d %H:%M}" if last else "never",
            )
            for cred, last in items
        ],
    )


@managed_app.command("show")
@domain_errors
def managed_show(name: NameArg, org: OrgOpt = "", json_out: JsonOpt = False) -> None:
    """One managed credential with its last rotations."""
    c = open_container()
    cred, last = c.managed.get(OPERATOR, org, name)
    data = credential_dict(cred, last)
    data["rotations"] = [rotation_dict(r) for r in c.managed.history(OPERATOR, org, name, limit=10)]
    if json_out:
        emit_json(data)
        return
    rows = [(k, v) for k, v in data.items() if k not in ("rotations", "lastRotation")]
    table(cred.name, ["field", "value"], rows)
    table(
        "rotations",
        ["started", "trigger", "reason", "step", "error"],
        [(r["startedAt"], r["trigger"], r["reason"], r["step"], r["error"]) for r in data["rotations"]],
    )


@managed_app.command("remove")
@domain_errors
def managed_remove(
    name: NameArg,
    org: OrgOpt = "",
    delete_secret: Annotated[
        bool, typer.Option("--delete-secret", help="Also delete the secret from its store.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Stop managing a credential (its token lives on until it expires or is revoked)."""
    c = open_container()
    cred = c.managed.remove(OPERATOR, org, name, delete_secret=delete_secret)
    if json_out:
        emit_json({"removed": cred.name, "id": cred.id, "secretDeleted": delete_secret})
    else:
        out.print(
            f"{cred.name} is no longer managed"
            + (
                "; its secret was deleted"
                if delete_secret
                else f"; {cred.store_secret_name} stays in the store"
            ),
            highlight=False,
        )


# ---------------------------------------------------------------- rotate
@rotate_app.command("run")
@domain_errors
def rotate_run(
    org: Annotated[str | None, typer.Option("--org", help="Only this organization (default: all).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would rotate; change nothing.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Rotate every credential that is due, and finish unfinished rotations (the `rotation` job)."""
    c = open_container()
    org_id = None
    if org:
        with reading(c.uow) as uow:
            org_id = get_org(uow, org).id
    if dry_run:
        report = c.rotation.run(org_id=org_id, dry_run=True)
        data = report.as_dict()
        if json_out:
            emit_json(data)
        else:
            _print_outcomes("dry run", data)
        return
    try:
        run = c.jobs.run(ROTATION_JOB, trigger="manual", org_id=org_id)
    except JobBusy as exc:
        if json_out:
            emit_json({"error": {"code": exc.code, "message": exc.message}})
        fail(exc.message, code=EX_TEMPFAIL)
        return
    assert run is not None  # noqa: S101 - a manual run is never skipped for its slot
    data = {**run_dict(run), **{k: v for k, v in run.counts.items() if k != "messages"}}
    if json_out:
        emit_json(data)
    else:
        _print_outcomes(f"rotation — {run.status}", data)
    if run.status != "completed" or int(run.counts.get("failed", 0) or 0):
        raise typer.Exit(1)


def _print_outcomes(title: str, data: dict[str, Any]) -> None:
    counts = ", ".join(
        f"{k} {data.get(k, 0)}" for k in ("rotated", "pending", "failed", "skipped", "busy", "wouldRotate")
    )
    out.print(f"[bold]{title}[/]: {counts}", highlight=False)
    rows = [
        (o["credential"], o["result"], o.get("step") or "", o["detail"]) for o in data.get("credentials", [])
    ]
    if rows:
        table(None, ["credential", "result", "step", "detail"], rows)
    for line in data.get("errors") or []:
        err.print(f"[red]error:[/] {line}", highlight=False)


@rotate_app.command("status")
@domain_errors
def rotate_status(
    org: Annotated[str | None, typer.Option("--org", help="Only this organization (default: all).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Every managed credential's state and the last run of the rotation job."""
    c = open_container()
    with reading(c.uow) as uow:
        orgs = [get_org(uow, org)] if org else sorted(uow.orgs.all(), key=lambda o: o.name)
        runs = uow.jobs.runs(ROTATION_JOB, limit=1)
    credentials: list[dict[str, Any]] = []
    for o in orgs:
        credentials += [
            {**credential_dict(cred, last), "org": o.name} for cred, last in c.managed.all(OPERATOR, o.name)
        ]
    failing = [x for x in credentials if x["status"] == "failing"]
    data: dict[str, Any] = {
        "lastRun": run_dict(runs[0]) if runs else None,
        "credentials": credentials,
        "count": len(credentials),
        "failing": len(failing),
    }
    if json_out:
        emit_json(data)
        return
    if runs:
        counts = runs[0].counts
        out.print(
            f"last run: {runs[0].status} at {runs[0].started_at:%Y-%m-%d %H:%M} UTC — rotated "
            f"{counts.get('rotated', 0)}, failed {counts.get('failed', 0)}, "
            f"skipped {counts.get('skipped', 0)}",
            highlight=False,
        )
    else:
        out.print("last run: never", highlight=False)
    table(
        None,
        ["org", "name", "store", "version", "valid to", "status", "last step", "next attempt"],
        [
            (
                x["org"],
                x["name"],
                x["store"],
                x["version"],
                x["validTo"],
                x["status"],
                (x["lastRotation"] or {}).get("step", "never"),
                x["nextAttemptAt"],
            )
            for x in credentials
        ],
    )
    if failing:
        raise typer.Exit(1)


@rotate_app.command("now")
@domain_errors
def rotate_now(
    name: NameArg,
    org: OrgOpt = "",
    planned: Annotated[
        bool,
        typer.Option(
            "--planned",
            help="A planned rotation: keep the overlap window (default: an emergency for a suspected "
            "leak — the old token is revoked at once with reason compromised and contacts alerted).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Rotate one credential now (emergency rotation of a suspected leak by default)."""
    c = open_container()
    cred = c.managed.find(OPERATOR, org, name)
    outcome = c.rotation.rotate_now(OPERATOR, cred, compromised=not planned)
    c.delivery.deliver_due()  # the alerts go out now, not at the next job run
    data = outcome.as_dict()
    if json_out:
        emit_json(data)
    else:
        out.print(f"{outcome.credential}: {outcome.result} — {outcome.detail}", highlight=False)
    if outcome.result in (RotationResult.FAILED, RotationResult.BUSY):
        raise typer.Exit(1)


# ---------------------------------------------------------------- secrets
@secrets_app.command("get")
@domain_errors
def secrets_get(
    name: NameArg,
    org: OrgOpt = "",
    version: Annotated[
        str | None, typer.Option("--version", help="A given version (default: current).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Print the current value of a managed credential's built-in-store secret (audited)."""
    c = open_container()
    cred, stored = c.managed.read_secret(OPERATOR, org, name, version=version)
    if json_out:
        emit_json(
            {
                "name": cred.name,
                "secretName": stored.name,
                "value": stored.value,
                "version": stored.version,
                "current": stored.current,
                "expiresAt": stored.expires_at.isoformat() if stored.expires_at else None,
                "contentType": stored.content_type,
            }
        )
    else:
        sys.stdout.write(stored.value + "\n")


@secrets_app.command("rekey")
@domain_errors
def secrets_rekey(json_out: JsonOpt = False) -> None:
    """Re-seal every built-in-store version under the current key (after adding a new key first
    in TOKENWARDEN_SECRET_STORE_KEYS or the key file; keep the old key until this is done)."""
    c = open_container()
    try:
        changed = c.stores.rekey_builtin()
    except InvalidInput as exc:
        fail(f"{exc.message} ({exc.code})")
        return
    if json_out:
        emit_json({"resealed": changed})
    else:
        out.print(f"re-sealed {changed} version(s) under the current key", highlight=False)
