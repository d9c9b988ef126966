"""`tokenwarden jobs run|status`, `tokenwarden notify ...` and `tokenwarden webhook ...`.

``jobs run NAME`` runs the job to completion in this process, delivery of what it enqueued
included — no server needed — and exits 0 when the run completed, even if some deliveries
failed and wait for a retry (it says so). Exit codes: 1 the run failed, 75 (EX_TEMPFAIL) the job
is running elsewhere right now.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt, OrgOpt
from tokenwarden.cli.output import emit_json, err, fail, out, table
from tokenwarden.services.common import OPERATOR, get_org, reading
from tokenwarden.services.job_runner import JobBusy, run_dict
from tokenwarden.services.notifications import message_dict
from tokenwarden.services.webhooks import webhook_dict

jobs_app = typer.Typer(help="Scheduled lifecycle jobs: run one now, see their history.", no_args_is_help=True)
notify_app = typer.Typer(help="The notification outbox: deliver, dead letters, replay.", no_args_is_help=True)
webhook_app = typer.Typer(
    help="An organization's webhooks (Standard Webhooks signatures).", no_args_is_help=True
)
EX_TEMPFAIL = 75


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(notify_app, name="notify")
    app.add_typer(webhook_app, name="webhook")


@jobs_app.command("run")
@domain_errors
def jobs_run(
    name: Annotated[
        str, typer.Argument(help="expiry-notifications, dormant-tokens, policy-enforcement, ...")
    ],
    org: Annotated[str | None, typer.Option("--org", help="Only this organization.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a job now, to completion, delivering what it enqueued."""
    c = open_container()
    c.jobs.spec(name)  # unknown names fail before anything starts
    org_id = None
    if org:
        with reading(c.uow) as uow:
            org_id = get_org(uow, org).id
    if not json_out:
        err.print(f"running {name}{f' for {org}' if org else ''} …")
    try:
        run = c.jobs.run(name, trigger="manual", org_id=org_id)
    except JobBusy as exc:
        if json_out:
            emit_json({"error": {"code": exc.code, "message": exc.message}})
        fail(exc.message, code=EX_TEMPFAIL)
        return
    assert run is not None  # noqa: S101 - a manual run is never skipped for its slot
    data = run_dict(run)
    if json_out:
        emit_json(data)
    else:
        _print_run(data)
    if run.status != "completed":
        raise typer.Exit(1)


def _print_run(data: dict[str, Any]) -> None:
    counts = dict(data["counts"])
    messages = counts.pop("messages", {}) or {}
    errors = counts.pop("deliveryErrors", []) or []
    waiting_all = int(counts.pop("outboxWaiting", 0) or 0)
    dead_all = int(counts.pop("outboxDead", 0) or 0)
    table(
        f"{data['job']} — {data['status']}",
        ["count", "value"],
        [*counts.items(), *((f"messages {k}", v) for k, v in sorted(messages.items()))],
    )
    waiting = int(messages.get("pending", 0)) + int(messages.get("sending", 0))
    if waiting:
        out.print(
            f"[yellow]{waiting} message(s) of this run could not be delivered yet: they wait for a retry[/]"
        )
    if waiting_all > waiting:
        out.print(
            f"[yellow]{waiting_all} message(s) in the outbox in all wait for a retry (notify outbox)[/]"
        )
    if dead_all:
        out.print(f"[red]{dead_all} message(s) were given up: see `tokenwarden notify dead-letters`[/]")
    for e in errors:
        out.print(f"  delivery error: {e}")
    if data["error"]:
        out.print(f"[red]error:[/] {data['error']}")


@jobs_app.command("status")
@domain_errors
def jobs_status(
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="Runs shown per job.")] = 5,
    json_out: JsonOpt = False,
) -> None:
    """Each job's schedule, next run, holder and recent runs."""
    rows = open_container().jobs.status(limit=limit)
    if json_out:
        emit_json(rows)
        return
    for job in rows:
        running = f" — running on {job['runningOn']}" if job["running"] else ""
        table(
            f"{job['name']} ({job['schedule']}, next {job['nextRun']}){running}",
            ["started", "finished", "trigger", "status", "counts / error"],
            [
                (
                    r["startedAt"],
                    r["finishedAt"] or "-",
                    r["trigger"],
                    r["status"],
                    r["error"]
                    or ", ".join(f"{k}={v}" for k, v in r["counts"].items() if k != "deliveryErrors"),
                )
                for r in job["runs"]
            ]
            or [("never run", "", "", "", "")],
        )


@notify_app.command("deliver")
@domain_errors
def notify_deliver(json_out: JsonOpt = False) -> None:
    """Deliver every message that is due now (what a server does every few seconds)."""
    report = open_container().delivery.deliver_due().as_dict()
    if json_out:
        emit_json(report)
        return
    out.print(
        f"sent {report['sent']}, waiting for retry {report['retrying']}, dead {report['dead']}, "
        f"waiting for a channel {report['waitingForChannel']}"
    )
    for e in report["errors"]:  # type: ignore[attr-defined]
        out.print(f"  error: {e}")


@notify_app.command("outbox")
@domain_errors
def notify_outbox(
    org: Annotated[str | None, typer.Option("--org", help="Only this organization.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="pending | sending | sent | dead")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Messages in the outbox, newest first."""
    messages = open_container().notifications.messages(OPERATOR, org, status=status, limit=limit)
    _show_outbox([message_dict(m) for m in messages], json_out, "outbox")


@notify_app.command("dead-letters")
@domain_errors
def notify_dead(
    org: Annotated[str | None, typer.Option("--org", help="Only this organization.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Messages given up on (refused for good, or failing past the retry window)."""
    messages = open_container().notifications.messages(OPERATOR, org, status="dead", limit=limit)
    _show_outbox([message_dict(m) for m in messages], json_out, "dead letters")


def _brief(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in counts.items() if k != "deliveryErrors")


def _show_outbox(rows: list[dict[str, Any]], json_out: bool, title: str) -> None:
    if json_out:
        emit_json(rows)
        return
    table(
        title,
        ["id", "channel", "to", "template", "status", "attempts", "last error"],
        [
            (r["id"], r["channel"], r["to"], r["template"], r["status"], r["attempts"], r["lastError"] or "")
            for r in rows
        ],
    )


@notify_app.command("replay")
@domain_errors
def notify_replay(
    ids: Annotated[list[int], typer.Argument(help="Dead-letter ids (see `notify dead-letters`).")],
    json_out: JsonOpt = False,
) -> None:
    """Put dead letters back in the queue; they go out with the next delivery."""
    c = open_container()
    replayed = c.notifications.replay(OPERATOR, None, ids)
    if json_out:
        emit_json({"replayed": replayed})
        return
    out.print(f"replayed {len(replayed)} of {len(ids)}: {', '.join(map(str, replayed)) or '-'}")
    if len(replayed) < len(ids):
        sys.exit(1)


@webhook_app.command("add")
@domain_errors
def webhook_add(
    url: Annotated[str, typer.Argument(help="https://… (http only for allow-listed hosts)")],
    org: OrgOpt = "",
    event: Annotated[
        list[str] | None, typer.Option("--event", help="Event type to send (repeatable; default all).")
    ] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a webhook; its signing secret is printed once."""
    made = open_container().webhooks.add(OPERATOR, org, url, events=event or (), description=description)
    data = {**webhook_dict(made.hook), "secret": made.secret}
    if json_out:
        emit_json(data)
        return
    out.print(f"webhook {made.hook.id} → {made.hook.url}")
    out.print("signing secret (shown once; receivers verify webhook-signature with it):")
    out.print(made.secret, markup=False, highlight=False)


@webhook_app.command("list")
@domain_errors
def webhook_list(org: OrgOpt = "", json_out: JsonOpt = False) -> None:
    """The organization's webhooks (never their secrets)."""
    rows = [webhook_dict(h) for h in open_container().webhooks.list(OPERATOR, org)]
    if json_out:
        emit_json(rows)
        return
    table(
        f"webhooks of {org}",
        ["id", "url", "events", "enabled"],
        [(r["id"], r["url"], ", ".join(r["events"]) or "all", r["enabled"]) for r in rows],
    )


@webhook_app.command("remove")
@domain_errors
def webhook_remove(
    hook_id: Annotated[str, typer.Argument(help="Webhook id.")], org: OrgOpt = "", json_out: JsonOpt = False
) -> None:
    """Remove a webhook; messages still queued for it go to the dead letters."""
    open_container().webhooks.remove(OPERATOR, org, hook_id)
    if json_out:
        emit_json({"removed": hook_id})
    else:
        out.print(f"removed webhook {hook_id}")
