"""`tokenwarden revoke users --csv`: revoke the tokens of a list of users as a resumable job."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tokenwarden.bootstrap import Container
from tokenwarden.cli.context import domain_errors, open_container
from tokenwarden.cli.options import JsonOpt, OrgOpt
from tokenwarden.cli.output import emit_json, err, fail, out, table
from tokenwarden.cli.revoke_cmds import KindsOpt, revoke_app
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.csv_users import MAX_CSV_BYTES, size_error
from tokenwarden.domain.errors import DomainError, InvalidInput
from tokenwarden.domain.watermarks import parse_kinds
from tokenwarden.ports.repositories import BulkJobItem
from tokenwarden.services.bulk_revoke import (
    CHUNK_SIZE,
    COMPLETED,
    CREATING,
    FAILED,
    SKIPPED,
    SUCCESS,
    JobStatus,
    Submission,
    results_csv,
)
from tokenwarden.services.common import OPERATOR


def usage_error(message: str, json_out: bool, code: str = "invalidInput") -> None:
    """Exit 2: the input or an option is wrong and nothing was applied."""
    if json_out:
        emit_json({"error": {"code": code, "message": message}})
    fail(f"{message} (nothing applied)", code=2)


def read_input(source: str) -> bytes:
    """The CSV bytes from a path or stdin ('-'), refusing more than the size limit early."""
    try:
        if source == "-":
            if sys.stdin.isatty():
                raise InvalidInput("--csv - reads the CSV from stdin, but stdin is a terminal")
            data = sys.stdin.buffer.read(MAX_CSV_BYTES + 1)
        else:
            path = Path(source)
            size = path.stat().st_size
            if size > MAX_CSV_BYTES:
                raise size_error(size)
            with path.open("rb") as fh:
                data = fh.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {source}: {exc.strerror}", code="fileNotReadable") from exc
    if len(data) > MAX_CSV_BYTES:
        raise size_error(len(data))
    return data


def write_results(path: Path, rows: Sequence[BulkJobItem]) -> None:
    """Write the results CSV atomically: a temporary file next to it, then rename."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(results_csv(rows))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def summary(
    status: JobStatus, rows: Sequence[BulkJobItem], submission: Submission, out_path: Path | None
) -> dict[str, Any]:
    counts = status.counts
    return {
        "jobId": status.job.id,
        "job": "resumed" if submission.resumed else "new",
        "previousJobId": submission.previous.id if submission.previous is not None else None,
        "state": status.state,
        "org": status.org_name,
        "total": status.total,
        "success": counts.get(SUCCESS, 0),
        "failed": counts.get(FAILED, 0),
        "skipped": counts.get(SKIPPED, 0),
        "revokedCount": sum(r.revoked_count for r in rows if r.status == SUCCESS),
        "kinds": list(status.job.kinds),
        "dryRun": status.job.dry_run,
        "resumed": submission.resumed,
        "out": str(out_path) if out_path is not None else None,
    }


@revoke_app.command("users")
@domain_errors
def revoke_users(
    csv_source: Annotated[
        str,
        typer.Option(
            "--csv",
            help="CSV with a UserPrincipalName column, or one UPN per line; '-' reads stdin.",
        ),
    ],
    org: OrgOpt = "",
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Results CSV: UserPrincipalName,Status,Error,RevokedCount, one row per input row."
        ),
    ] = None,
    kinds: KindsOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be revoked; change nothing.")
    ] = False,
    json_out: JsonOpt = False,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, max=10_000, hidden=True, help="Rows per transaction.")
    ] = CHUNK_SIZE,
) -> None:
    """Revoke every token of every user in a CSV; re-run the same command to resume after a crash."""
    started = time.monotonic()
    try:
        data = read_input(csv_source)
        kind_list = parse_kinds(kinds)
    except InvalidInput as exc:
        usage_error(exc.message, json_out, exc.code)
        return
    c = open_container()
    name = "stdin" if csv_source == "-" else Path(csv_source).name
    try:
        submission = c.bulk_revoke.submit(OPERATOR, org, data, kind_list, dry_run, name)
    except InvalidInput as exc:
        usage_error(exc.message, json_out, exc.code)
        return
    job = submission.job
    before = c.bulk_revoke.status(OPERATOR, job.id)
    if submission.resumed and before.state == CREATING:
        err.print(
            f"resumed job {job.id}: it was interrupted while its rows were stored "
            f"({before.stored} of {before.total}); nothing was revoked yet",
            highlight=False,
        )
    elif submission.resumed:
        err.print(f"resumed job {job.id}: {before.done} of {before.total} row(s) already done")
    else:
        err.print(f"new job {job.id}: {before.total} row(s)", highlight=False)
    if submission.previous is not None and not submission.resumed:
        err.print(
            f"this input was processed before as job {submission.previous.id} "
            f"({iso_z(submission.previous.updated_at)}): this new run also revokes the tokens "
            "those users created since",
            highlight=False,
        )
    try:
        status = before if before.state == COMPLETED else run_with_progress(c, submission, before, chunk_size)
        rows = c.bulk_revoke.results(OPERATOR, job.id)
    except (Exception, KeyboardInterrupt) as exc:
        interrupted(c, job.id, exc, json_out)
        return
    if out_path is not None:
        try:
            write_results(out_path, rows)
        except OSError as exc:
            message = (
                f"cannot write {out_path}: {exc.strerror}; job {job.id} is complete: "
                "run the same command with a writable --out to get its results"
            )
            if json_out:
                emit_json({"error": {"code": "outputNotWritable", "message": message}, "jobId": job.id})
            fail(message)
    data_out = summary(status, rows, submission, out_path)
    data_out["elapsedSeconds"] = round(time.monotonic() - started, 3)
    counts = f"{data_out['success']} Success, {data_out['failed']} Failed, {data_out['skipped']} Skipped"
    verb = "would revoke" if dry_run else "revoked"
    err.print(
        f"{data_out['job']} job {job.id}: {data_out['total']} row(s): {counts}; "
        f"{verb} {data_out['revokedCount']} live token(s)"
        + (f"; results in {out_path}" if out_path is not None else ""),
        highlight=False,
    )
    if json_out:
        emit_json(data_out)
    elif out_path is None:
        problems = [r for r in rows if r.status != SUCCESS]
        if problems:
            table(
                "rows not revoked",
                ["line", "UserPrincipalName", "Status", "Error"],
                [[r.line_no, r.upn, r.status, r.error] for r in problems],
            )
        out.print(f"{data_out['job']} job {job.id}: {counts}", highlight=False)


def run_with_progress(c: Container, submission: Submission, before: JobStatus, chunk_size: int) -> JobStatus:
    """Store the rows a new (or interrupted) job still lacks, then run it, with a rich progress
    bar on stderr (one step per committed chunk).

    Ctrl-C does not raise wherever Python happens to be (inside a database call, or while the
    progress bar's refresh thread holds the console lock — a deadlock seen in testing): it sets a
    flag, and the run stops at the next chunk boundary, after that chunk has committed.
    """
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
        ) as progress:

            def stepper(task: TaskID) -> Callable[[int, int], None]:
                def step(done: int, total: int) -> None:
                    if stop.is_set():
                        raise KeyboardInterrupt
                    progress.update(task, completed=done, total=total)

                return step

            job_id = submission.job.id
            if before.state == CREATING:
                storing = progress.add_task("storing rows", total=before.total, completed=before.stored)
                c.bulk_revoke.store_rows(OPERATOR, submission, stepper(storing))
                before = c.bulk_revoke.status(OPERATOR, job_id)
            label = "dry run" if before.job.dry_run else "revoking"
            task = progress.add_task(label, total=before.total, completed=before.done)
            return c.bulk_revoke.run(OPERATOR, job_id, stepper(task), chunk_size=chunk_size)
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupted(c: Container, job_id: str, exc: BaseException, json_out: bool) -> None:
    """Exit 1 with the resumable state: what is done, and the command that resumes."""
    reason = (
        exc.message
        if isinstance(exc, DomainError)
        else (type(exc).__name__ + (f": {exc}" if str(exc) else ""))
    )
    done = total = stored = None
    state = None
    try:
        st = c.bulk_revoke.status(OPERATOR, job_id)
        done, total, stored, state = st.done, st.total, st.stored, st.state
    except Exception:  # noqa: S110 - the database may be what failed; report without it
        pass
    resume = shlex.join(["tokenwarden", *sys.argv[1:]])
    if json_out:
        emit_json(
            {
                "error": {"code": "jobInterrupted", "message": reason},
                "jobId": job_id,
                "state": state,
                "stored": stored,
                "done": done,
                "total": total,
                "resume": resume,
            }
        )
    if state == CREATING:
        progress = (
            f"{stored} of {total} row(s) stored, nothing revoked yet "
            "(a job runs only once every row is stored)"
        )
    else:
        progress = f"{done} of {total} row(s) done" if done is not None else "progress unknown"
    err.print(f"[bold red]error:[/] job {job_id} interrupted ({reason}); {progress}", highlight=False)
    err.print(f"every finished chunk is applied exactly once; to resume, run the same command:\n  {resume}")
    raise SystemExit(1)
