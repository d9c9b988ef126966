"""Issue 10, operator ergonomics: --org defaults, re-runs of a CSV, rules, audit order, files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {**os.environ, "TOKENWARDEN_DATA_DIR": str(tmp_path / "data")}
    e.pop("TOKENWARDEN_DATABASE_URL", None)
    e.pop("TOKENWARDEN_ORG", None)
    return e


def cli_json(args: list[str], env: dict[str, str], cwd: Path, input: str | None = None) -> object:
    r = run_cli([*args, "--json"], env, cwd, input=input)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def upns(rows: object) -> set[str]:
    assert isinstance(rows, list)
    return {str(r["upn"]) for r in rows}


def test_org_defaults_to_the_env_var_else_the_only_organization(env: dict[str, str], tmp_path: Path) -> None:
    none_yet = run_cli(["user", "list"], env, tmp_path)
    assert none_yet.returncode == 2 and "tokenwarden init" in none_yet.stderr
    cli_json(["init", "--org", "Acme", "--admin", "root@acme.test"], env, tmp_path)
    assert upns(cli_json(["user", "list"], env, tmp_path)) == {"root@acme.test"}  # the only one
    cli_json(["org", "create", "Beta", "--admin", "boss@beta.test"], env, tmp_path)
    several = run_cli(["user", "list"], env, tmp_path)
    assert several.returncode == 2 and "Acme" in several.stderr and "Beta" in several.stderr
    assert "TOKENWARDEN_ORG" in several.stderr
    beta = {**env, "TOKENWARDEN_ORG": "Beta"}
    assert upns(cli_json(["user", "list"], beta, tmp_path)) == {"boss@beta.test"}
    assert upns(cli_json(["user", "list", "--org", "Acme"], env, tmp_path)) == {"root@acme.test"}
    # the same shared option everywhere: policy, audit, revoke, revoke users
    e = {**env, "TOKENWARDEN_ORG": "Acme"}
    assert isinstance(cli_json(["policy", "show"], e, tmp_path), dict)
    assert isinstance(cli_json(["audit", "query"], e, tmp_path), list)
    (tmp_path / "in.csv").write_text("UserPrincipalName\nroot@acme.test\n")
    done = cli_json(["revoke", "users", "--csv", "in.csv", "--dry-run"], e, tmp_path)
    assert isinstance(done, dict) and done["org"] == "Acme"


def pat(env: dict[str, str], cwd: Path, upn: str, name: str) -> str:
    made = cli_json(["pat", "create", "--user", upn, "--name", name, "--scope", "vso.code"], env, cwd)
    assert isinstance(made, dict)
    return str(made["authorizationId"])


def test_rerun_of_a_completed_csv_is_a_new_job_and_counts_live_tokens_only(
    env: dict[str, str], tmp_path: Path
) -> None:
    cli_json(["init", "--org", "Acme", "--admin", "root@acme.test"], env, tmp_path)
    cli_json(["user", "add", "alice@acme.test"], env, tmp_path)
    pat(env, tmp_path, "alice@acme.test", "first")
    (tmp_path / "in.csv").write_text("UserPrincipalName\nalice@acme.test\n")
    args = ["revoke", "users", "--csv", "in.csv", "--out", "out.csv"]
    first = cli_json(args, env, tmp_path)
    assert isinstance(first, dict)
    assert first["job"] == "new" and first["resumed"] is False and first["revokedCount"] == 1

    pat(env, tmp_path, "alice@acme.test", "created since")
    dry = cli_json([*args[:4], "--dry-run"], env, tmp_path)
    assert isinstance(dry, dict) and dry["revokedCount"] == 1  # the revoked one is not "live"

    second = run_cli(args, env, tmp_path)  # human output
    assert second.returncode == 0, second.stderr
    assert f"new job {first['jobId']}" not in second.stderr and "resumed job" not in second.stderr
    assert "new job" in second.stderr and first["jobId"] in second.stderr  # names the earlier run
    third = cli_json(args, env, tmp_path)
    assert isinstance(third, dict) and third["job"] == "new" and third["jobId"] != first["jobId"]
    assert third["revokedCount"] == 0  # the second run already cut the token created since
    listed = cli_json(["pat", "list", "--user", "alice@acme.test", "--filter", "active"], env, tmp_path)
    assert listed == []


def test_rule_add_dry_run_list_and_delete_with_yes(env: dict[str, str], tmp_path: Path) -> None:
    from datetime import UTC, datetime

    cli_json(["init", "--org", "Acme", "--admin", "root@acme.test"], env, tmp_path)
    cli_json(["user", "add", "bob@acme.test"], env, tmp_path)
    pat(env, tmp_path, "bob@acme.test", "old")
    # --before has whole seconds: wait into the next second so the PAT is issued before it.
    time.sleep(1.05 - datetime.now(UTC).microsecond / 1e6)
    before = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    args = ["rule", "add", "--before", before, "--user", "bob@acme.test", "--kind", "pat"]
    dry = cli_json([*args, "--dry-run"], env, tmp_path)
    assert isinstance(dry, dict) and dry["dryRun"] is True and dry["liveTokens"] == 1
    assert cli_json(["rule", "list"], env, tmp_path) == []
    added = cli_json(args, env, tmp_path)
    assert isinstance(added, dict) and added["scopes"] is None and added["kinds"] == ["pat"]
    active = ["pat", "list", "--user", "bob@acme.test", "--filter", "active"]
    assert cli_json(active, env, tmp_path) == []
    listed = cli_json(["rule", "list"], env, tmp_path)
    assert isinstance(listed, list) and [r["id"] for r in listed] == [added["id"]]

    refused = run_cli(["rule", "delete", added["id"]], env, tmp_path)
    assert refused.returncode == 2 and "--yes" in refused.stderr and "1 revoked token" in refused.stderr
    assert len(cli_json(["rule", "list"], env, tmp_path)) == 1  # type: ignore[arg-type]
    deleted = run_cli(["rule", "delete", added["id"], "--yes"], env, tmp_path)
    assert deleted.returncode == 0 and "valid again" in deleted.stderr
    assert cli_json(["rule", "list"], env, tmp_path) == []
    assert len(cli_json(active, env, tmp_path)) == 1  # type: ignore[arg-type]
    entries = cli_json(["audit", "query", "--event-type", "Token.RevocationRuleDeleteEvent"], env, tmp_path)
    assert isinstance(entries, list) and entries[0]["details"]["restoredTokens"] == 1


def test_audit_is_newest_first_pages_and_rejects_unknown_filters(env: dict[str, str], tmp_path: Path) -> None:
    cli_json(["init", "--org", "Acme", "--admin", "root@acme.test"], env, tmp_path)
    for i in range(3):
        cli_json(["user", "add", f"u{i}@acme.test"], env, tmp_path)
    entries = cli_json(["audit", "query"], env, tmp_path)
    assert isinstance(entries, list)
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 4
    page1 = cli_json(["audit", "query", "--limit", "2"], env, tmp_path)
    assert isinstance(page1, list) and [e["id"] for e in page1] == ids[:2]
    page2 = cli_json(["audit", "query", "--limit", "2", "--before-id", str(ids[1])], env, tmp_path)
    assert isinstance(page2, list) and [e["id"] for e in page2] == ids[2:4]
    bad = run_cli(["audit", "query", "--event-type", "Nope.Event"], env, tmp_path)
    assert bad.returncode == 2 and "Token.PatCreateEvent" in bad.stderr and "Nope.Event" in bad.stderr


def test_database_files_are_private_and_init_keeps_the_token_out_of_logs(
    env: dict[str, str], tmp_path: Path
) -> None:
    r = run_cli(["init", "--org", "Acme", "--admin", "root@acme.test"], env, tmp_path)  # stdout: a pipe
    assert r.returncode == 0, r.stderr
    assert "twp_" not in r.stdout + r.stderr
    token_file = tmp_path / "data" / "initial-admin-token"
    assert str(token_file) in r.stdout.replace("\n", "")
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.read_text().strip().startswith("twp_")
    data = tmp_path / "data"
    assert data.stat().st_mode & 0o777 == 0o700
    cli_json(["user", "add", "a@acme.test"], env, tmp_path)  # opens the database again (WAL)
    for name in ("tokenwarden.db", "tokenwarden.db-wal", "tokenwarden.db-shm"):
        if (data / name).exists():
            assert (data / name).stat().st_mode & 0o077 == 0, name
    assert (data / "tokenwarden.db").exists()
