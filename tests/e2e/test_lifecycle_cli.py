"""Lifecycle commands run as real processes against a real SQLite file (issue 12)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tests.e2e.conftest import run_cli
from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.unit_of_work import SqlDatabase


def cli_json(args: list[str], env: dict[str, str], cwd: Path) -> Any:
    r = run_cli([*args, "--json"], env, cwd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_pat_lifecycle_commands(cli_env: tuple[dict[str, str], SqlDatabase, str], tmp_path: Path) -> None:
    env, database, _ = cli_env
    cli_json(["user", "add", "bob@acme.test"], env, tmp_path)
    pat = cli_json(
        ["pat", "create", "--user", "bob@acme.test", "--name", "ci", "--scope", "vso.code", "--days", "17"],
        env,
        tmp_path,
    )
    # validTo = now + N days exactly (to the microsecond, let alone the second)
    assert when(pat["validTo"]) - when(pat["validFrom"]) == timedelta(days=17)
    assert abs(when(pat["validFrom"]) - datetime.now(UTC)) < timedelta(seconds=30)
    auth_id = pat["authorizationId"]

    before = datetime.now(UTC)
    extended = cli_json(["pat", "extend", auth_id, "--days", "40"], env, tmp_path)
    after = datetime.now(UTC)
    assert before + timedelta(days=40) <= when(extended["validTo"]) <= after + timedelta(days=40)
    assert "token" not in extended

    regenerated = run_cli(["pat", "regenerate", auth_id, "--json"], env, tmp_path)
    assert regenerated.returncode == 0, regenerated.stderr
    secret = json.loads(regenerated.stdout)["token"]
    assert secret.startswith("twp_") and secret != pat["token"]
    assert secret not in regenerated.stderr
    human = run_cli(["pat", "regenerate", auth_id], env, tmp_path)
    assert human.returncode == 0 and human.stdout.count("twp_") == 1 and "twp_" not in human.stderr

    assert cli_json(["pat", "watch", auth_id, "team@example.org"], env, tmp_path)["watchers"] == [
        "team@example.org"
    ]
    bad = run_cli(["pat", "watch", auth_id, "not-an-email"], env, tmp_path)
    assert bad.returncode == 1 and "invalidEmail" in bad.stderr
    assert cli_json(["pat", "watchers", auth_id], env, tmp_path)["watchers"] == ["team@example.org"]
    assert cli_json(["pat", "unwatch", auth_id, "team@example.org"], env, tmp_path)["watchers"] == []
    again = run_cli(["pat", "unwatch", auth_id, "team@example.org", "--json"], env, tmp_path)
    assert again.returncode == 1 and json.loads(again.stdout)["error"]["code"] == "watcherNotFound"

    contact = cli_json(["user", "set-email", "bob@acme.test", "bob@example.org", "--digest"], env, tmp_path)
    assert contact == {
        "upn": "bob@acme.test",
        "email": "bob@example.org",
        "address": "bob@example.org",
        "digest": True,
    }
    with database.engine.connect() as conn:
        row = conn.execute(
            select(t.users.c.email, t.users.c.notify_digest).where(t.users.c.upn == "bob@acme.test")
        ).one()
    assert row.email == "bob@example.org" and row.notify_digest


def test_policy_enforce_command(cli_env: tuple[dict[str, str], SqlDatabase, str], tmp_path: Path) -> None:
    env, database, org_id = cli_env
    cli_json(["user", "add", "bob@acme.test"], env, tmp_path)
    long = cli_json(
        [
            "pat",
            "create",
            "--user",
            "bob@acme.test",
            "--name",
            "long",
            "--scope",
            "vso.code",
            "--days",
            "200",
        ],
        env,
        tmp_path,
    )
    for bad in ("-1", "1000"):
        r = run_cli(["policy", "enforce", "--grace", bad, "--json"], env, tmp_path)
        assert r.returncode == 1 and json.loads(r.stdout)["error"]["code"] == "invalidGrace"
    cli_json(["policy", "set", "--max-lifetime-days", "90"], env, tmp_path)
    pending = cli_json(["policy", "enforce", "--grace", "10"], env, tmp_path)
    assert pending["status"] == "pending" and pending["counts"] == {"tokens": 1}
    with database.engine.connect() as conn:
        rows = conn.execute(
            select(t.notification_outbox.c.template, t.notification_outbox.c.destination).where(
                t.notification_outbox.c.org_id == org_id
            )
        ).all()
    assert ("policy-violation", "bob@acme.test") in [tuple(r) for r in rows]
    applied = cli_json(["policy", "enforce", "--grace", "0"], env, tmp_path)
    assert applied["status"] == "applied" and applied["counts"]["shortened"] == 1
    listed = cli_json(["pat", "list", "--user", "bob@acme.test"], env, tmp_path)
    [shortened] = [p for p in listed if p["authorizationId"] == long["authorizationId"]]
    assert when(shortened["validTo"]) == when(long["validFrom"]) + timedelta(days=90)
    human = run_cli(["policy", "enforce", "--grace", "5"], env, tmp_path)
    assert human.returncode == 0 and "token(s) told" in human.stdout
