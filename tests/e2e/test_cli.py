"""The command line, run as a real process against a real SQLite file (docs/specs/cli.md)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import LiveServer, run_cli


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {**os.environ, "TOKENWARDEN_DATA_DIR": str(tmp_path / "data")}
    e.pop("TOKENWARDEN_DATABASE_URL", None)
    return e


def cli_json(args: list[str], env: dict[str, str], cwd: Path) -> object:
    r = run_cli([*args, "--json"], env, cwd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # exactly one JSON document on stdout


def test_init_prints_token_once_and_refuses_twice(env: dict[str, str], tmp_path: Path) -> None:
    data = cli_json(["init", "--org", "Acme", "--admin", "root@acme.test"], env, tmp_path)
    assert isinstance(data, dict)
    assert data["org"] == "Acme" and data["admin"] == "root@acme.test" and data["token"].startswith("twp_")
    again = run_cli(["init", "--org", "Other", "--admin", "x@acme.test"], env, tmp_path)
    assert again.returncode == 1 and "already initialized" in again.stderr
    status = run_cli(["db", "status", "--json"], env, tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout)["initialized"] is True
    # the secret is stored nowhere in plain text
    db_bytes = (tmp_path / "data" / "tokenwarden.db").read_bytes()
    assert data["token"].encode() not in db_bytes
    assert (tmp_path / "data" / "pepper.key").stat().st_mode & 0o077 == 0


def test_db_status_on_an_empty_directory(env: dict[str, str], tmp_path: Path) -> None:
    r = run_cli(["db", "status", "--quiet"], env, tmp_path)
    assert r.returncode == 1 and r.stdout == ""


def test_users_pats_policy_audit(env: dict[str, str], tmp_path: Path) -> None:
    cli_json(["init", "--org", "Acme", "--admin", "root@acme.test"], env, tmp_path)
    user = cli_json(["user", "add", "alice@acme.test", "--org", "Acme", "--name", "Alice"], env, tmp_path)
    assert isinstance(user, dict) and user["role"] == "member"
    users = cli_json(["user", "list", "--org", "acme"], env, tmp_path)
    assert {u["upn"] for u in users} == {"root@acme.test", "alice@acme.test"}  # type: ignore[union-attr]
    pat = cli_json(
        [
            "pat",
            "create",
            "--user",
            "alice@acme.test",
            "--org",
            "Acme",
            "--name",
            "ci",
            "--scope",
            "vso.code vso.pats_manage",
            "--days",
            "30",
        ],
        env,
        tmp_path,
    )
    assert isinstance(pat, dict)
    assert {"authorizationId", "token", "displayName", "scope", "validFrom", "validTo"} <= set(pat)
    listed = cli_json(["pat", "list", "--user", "alice@acme.test", "--org", "Acme"], env, tmp_path)
    assert [p["authorizationId"] for p in listed] == [pat["authorizationId"]]  # type: ignore[union-attr]
    assert "token" not in listed[0]  # type: ignore[index]
    revoked = cli_json(["pat", "revoke", pat["authorizationId"]], env, tmp_path)
    assert isinstance(revoked, dict) and revoked["state"] == "revoked"
    policy = cli_json(
        ["policy", "set", "--org", "Acme", "--max-lifetime-days", "10", "--restrict-full-scope"],
        env,
        tmp_path,
    )
    assert policy == {**policy, "maxLifetimeDays": 10, "restrictFullScope": True}  # type: ignore[dict-item]
    too_long = run_cli(
        [
            "pat",
            "create",
            "--user",
            "alice@acme.test",
            "--org",
            "Acme",
            "--name",
            "x",
            "--scope",
            "vso.code",
            "--days",
            "11",
        ],
        env,
        tmp_path,
    )
    assert too_long.returncode == 1 and "patLifespanPolicyViolation" in too_long.stderr
    disabled = cli_json(["user", "disable", "alice@acme.test", "--org", "Acme"], env, tmp_path)
    assert isinstance(disabled, dict) and disabled["status"] == "disabled"
    audit = cli_json(
        ["audit", "query", "--org", "Acme", "--event-type", "Token.PatRevokeEvent"], env, tmp_path
    )
    assert [e["targetId"] for e in audit] == [pat["authorizationId"]]  # type: ignore[union-attr]
    csv_out = run_cli(["audit", "query", "--org", "Acme", "--csv"], env, tmp_path)
    assert csv_out.returncode == 0 and csv_out.stdout.startswith("id,at,eventType")
    assert pat["token"] not in csv_out.stdout


def test_org_create_gives_the_new_admin_a_token(env: dict[str, str], tmp_path: Path) -> None:
    cli_json(["init", "--org", "Acme", "--admin", "root@acme.test"], env, tmp_path)
    data = cli_json(["org", "create", "Beta", "--admin", "root@acme.test"], env, tmp_path)
    assert isinstance(data, dict) and data["org"] == "Beta" and data["token"].startswith("twp_")
    orgs = cli_json(["org", "list"], env, tmp_path)
    assert sorted(o["name"] for o in orgs) == ["Acme", "Beta"]  # type: ignore[union-attr]
    again = run_cli(["org", "create", "beta", "--admin", "x@acme.test", "--json"], env, tmp_path)
    assert again.returncode == 1 and json.loads(again.stdout)["error"]["code"] == "organizationExists"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["pat", "create", "--org", "Acme"], 2),  # missing options
        (
            [
                "pat",
                "create",
                "--user",
                "root@acme.test",
                "--org",
                "Acme",
                "--name",
                "x",
                "--scope",
                "vso.code",
                "--days",
                "0",
            ],
            2,
        ),
        (
            [
                "pat",
                "create",
                "--user",
                "root@acme.test",
                "--org",
                "Acme",
                "--name",
                "x",
                "--scope",
                "vso.no",
            ],
            1,
        ),
        (["pat", "revoke", "not-a-uuid"], 1),
        (["user", "add", "bad upn", "--org", "Acme"], 1),
        (["user", "list", "--org", "Nowhere"], 1),
        (["policy", "set", "--org", "Acme"], 2),
        (["no-such-command"], 2),
    ],
)
def test_exit_codes(env: dict[str, str], tmp_path: Path, args: list[str], code: int) -> None:
    cli_json(["init", "--org", "Acme", "--admin", "root@acme.test"], env, tmp_path)
    r = run_cli(args, env, tmp_path)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_cli_revocation_reaches_a_running_server(live_server: LiveServer, tmp_path: Path) -> None:
    """A write by another process (the CLI) invalidates the server's cache within its sync period."""
    base, h = live_server.base_url, {"Authorization": f"Bearer {live_server.admin_token}"}
    r = httpx.post(
        f"{base}/api/v1/orgs/Acme/pats",
        json={"displayName": "victim", "scope": "vso.pats"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    victim = r.json()
    assert httpx.get(f"{base}/api/v1/me", auth=("", victim["token"])).status_code == 200  # now cached
    done = run_cli(["pat", "revoke", victim["authorizationId"]], live_server.env, tmp_path)
    assert done.returncode == 0, done.stderr
    t0 = time.monotonic()
    while httpx.get(f"{base}/api/v1/me", auth=("", victim["token"])).status_code == 200:
        assert time.monotonic() - t0 < 2.0, "revocation by another process not seen within 2 s"
        time.sleep(0.01)
    # the admin's own token is unaffected
    assert httpx.get(f"{base}/api/v1/me", headers=h).status_code == 200


def test_revoke_commands(env: dict[str, str], tmp_path: Path) -> None:
    """Every revocation mode the CLI offers, against one SQLite file."""
    admin = cli_json(["init", "--org", "Acme", "--admin", "root@acme.test"], env, tmp_path)
    assert isinstance(admin, dict)
    cli_json(["user", "add", "dan@acme.test", "--org", "Acme"], env, tmp_path)
    pat = cli_json(
        ["pat", "create", "--user", "dan@acme.test", "--org", "Acme", "--name", "x", "--scope", "vso.code"],
        env,
        tmp_path,
    )
    assert isinstance(pat, dict)
    # by value, from stdin (never an argument)
    looked = run_cli(
        ["revoke", "token", "--org", "Acme", "--lookup", "--json"], env, tmp_path, input=pat["token"]
    )
    assert looked.returncode == 0, looked.stderr
    assert json.loads(looked.stdout)["owner"] == "dan@acme.test"
    assert json.loads(looked.stdout)["revokedAt"] is None
    sessions = cli_json(["revoke", "sessions", "dan@acme.test", "--org", "Acme"], env, tmp_path)
    assert isinstance(sessions, dict) and sessions["signInSessionsValidFromDateTime"].endswith("Z")
    user = cli_json(["revoke", "user", "dan@acme.test", "--org", "Acme", "--kinds", "pat"], env, tmp_path)
    assert user == {**user, "total": 1, "revoked": {"pat": 1}}  # type: ignore[dict-item]
    risky = cli_json(["revoke", "risky", "--org", "Acme", "--min-level", "high"], env, tmp_path)
    assert isinstance(risky, dict) and risky["users"] == 0
    preview = cli_json(["revoke", "org", "--org", "Acme"], env, tmp_path)
    # live counts: dan's PAT, dead by his watermark, is not counted; root's token is
    assert isinstance(preview, dict) and preview["tokensByKind"]["pat"] == 1
    creds = tmp_path / "root.token"
    creds.write_text(admin["token"] + "\n")
    wrong = run_cli(
        ["revoke", "org", "--org", "Acme", "--confirm", "acme", "--credential-file", str(creds), "--json"],
        env,
        tmp_path,
    )
    assert wrong.returncode == 1 and json.loads(wrong.stdout)["error"]["code"] == "confirmationMismatch"
    done = cli_json(
        ["revoke", "org", "--org", "Acme", "--confirm", "Acme", "--credential-file", str(creds)],
        env,
        tmp_path,
    )
    assert isinstance(done, dict) and done["status"] == "executed" and done["revoked"] == {"pat": 1}
    no_input = run_cli(["revoke", "token", "--org", "Acme"], env, tmp_path, input="")
    assert no_input.returncode == 1


def _audit(env: dict[str, str], tmp_path: Path, org: str) -> list[dict[str, object]]:
    entries = cli_json(["audit", "query", "--org", org, "--limit", "100"], env, tmp_path)
    assert isinstance(entries, list)
    return [e for e in entries if "BreakGlass" in str(e.get("eventType", e))]


def test_break_glass_two_person_rule_on_the_cli(env: dict[str, str], tmp_path: Path) -> None:
    """Issue 10: requester and approver each use their own credential; they must differ."""
    root = cli_json(["init", "--org", "Acme", "--admin", "root@acme.test"], env, tmp_path)
    assert isinstance(root, dict)
    cli_json(["user", "add", "second@acme.test", "--org", "Acme", "--role", "admin"], env, tmp_path)
    cli_json(["user", "add", "member@acme.test", "--org", "Acme"], env, tmp_path)
    tokens = {}
    for upn in ("second@acme.test", "member@acme.test"):
        pat = cli_json(
            [
                "pat",
                "create",
                "--user",
                upn,
                "--org",
                "Acme",
                "--name",
                "bg",
                "--scope",
                "vso.tokenadministration",
            ],
            env,
            tmp_path,
        )
        assert isinstance(pat, dict)
        tokens[upn] = pat["token"]
    cli_json(["policy", "set", "--org", "Acme", "--break-glass-two-person"], env, tmp_path)
    root_file = tmp_path / "root.token"
    root_file.write_text(root["token"])
    base = ["revoke", "org", "--org", "Acme", "--confirm", "Acme"]

    # no credential at all: a usage error naming where the credential comes from; nothing applied
    bare = run_cli([*base, "--json"], env, tmp_path)
    assert (
        bare.returncode == 2
        and "--credential-file" in bare.stderr
        and "TOKENWARDEN_CREDENTIAL" in bare.stderr
    )
    no_reason = run_cli([*base, "--operator-override"], env, tmp_path)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    # a member is not an admin
    member = run_cli(
        [*base, "--json"], {**env, "TOKENWARDEN_CREDENTIAL": tokens["member@acme.test"]}, tmp_path
    )
    assert member.returncode == 1 and json.loads(member.stdout)["error"]["code"] == "accessDenied"

    pending = cli_json([*base, "--credential-file", str(root_file), "--reason", "leak"], env, tmp_path)
    assert isinstance(pending, dict) and pending["status"] == "pending"
    rid = str(pending["requestId"])
    approve = [*base, "--approve", rid, "--json"]
    same = run_cli([*approve, "--credential-file", str(root_file)], env, tmp_path)
    assert same.returncode == 1 and json.loads(same.stdout)["error"]["code"] == "sameApprover"
    as_operator = run_cli(approve, env, tmp_path)
    assert as_operator.returncode == 2
    override_approve = run_cli([*approve, "--operator-override", "--reason", "x"], env, tmp_path)
    assert override_approve.returncode == 2
    by_member = run_cli([*approve, "--credential-file", "-"], env, tmp_path, input=tokens["member@acme.test"])
    assert by_member.returncode == 1 and json.loads(by_member.stdout)["error"]["code"] == "accessDenied"
    done = run_cli([*approve, "--credential-file", "-"], env, tmp_path, input=tokens["second@acme.test"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "executed" and result["requestedBy"] and result["approvedBy"]
    assert result["requestedBy"] != result["approvedBy"]
    # live counts: root's init token and the two PATs
    assert result["revoked"] == {"pat": 3}
    assert tokens["second@acme.test"] not in done.stderr

    entries = _audit(env, tmp_path, "Acme")
    by_type = {str(e["eventType"]): e for e in entries}
    request = by_type["Token.BreakGlassRequestEvent"]
    execute = by_type["Token.BreakGlassExecuteEvent"]
    assert request["actorUpn"] == "root@acme.test" and request["actorId"]
    assert execute["actorUpn"] == "second@acme.test" and execute["actorId"]
    details = execute["details"]
    assert isinstance(details, dict)
    assert details["requestedByUpn"] == "root@acme.test" and details["approvedByUpn"] == "second@acme.test"
    assert details["operatorOverride"] is False


def test_break_glass_operator_override_is_explicit_and_audited(env: dict[str, str], tmp_path: Path) -> None:
    cli_json(["init", "--org", "Acme", "--admin", "root@acme.test"], env, tmp_path)
    cli_json(["policy", "set", "--org", "Acme", "--break-glass-two-person"], env, tmp_path)
    done = cli_json(
        [
            "revoke",
            "org",
            "--org",
            "Acme",
            "--confirm",
            "Acme",
            "--operator-override",
            "--reason",
            "all admins lost",
        ],
        env,
        tmp_path,
    )
    assert isinstance(done, dict) and done["status"] == "executed" and done["operatorOverride"] is True
    assert done["revoked"] == {"pat": 1}
    execute = next(
        e for e in _audit(env, tmp_path, "Acme") if e["eventType"] == "Token.BreakGlassExecuteEvent"
    )
    details = execute["details"]
    assert isinstance(details, dict)
    assert details["operatorOverride"] is True and details["reason"] == "all admins lost"
    assert execute["actorUpn"] == "operator@localhost"
