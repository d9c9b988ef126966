"""`tokenwarden managed|rotate|secrets` as processes against a running server on the same SQLite
database: what the CLI rotates, the server accepts at once and refuses the predecessor of."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import LiveServer, run_cli


def _me(base: str, secret: str) -> int:
    return httpx.get(f"{base}/api/v1/me", auth=("", secret), timeout=5).status_code


def _until(predicate: object, seconds: float = 5.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_an_operator_puts_a_token_under_rotation_with_one_command(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env, base = live_server.env, live_server.base_url
    assert run_cli(["user", "add", "ci-bot@acme.test"], env, tmp_path).returncode == 0
    made = run_cli(
        [
            "pat",
            "create",
            "--user",
            "ci-bot@acme.test",
            "--name",
            "ci deploy",
            "--scope",
            "vso.code",
            "--json",
        ],
        env,
        tmp_path,
    )
    assert made.returncode == 0, made.stderr
    original = json.loads(made.stdout)
    assert _me(base, original["token"]) == 200

    added = run_cli(
        [
            "managed",
            "add",
            "ci-deploy",
            "--authorization-id",
            original["authorizationId"],
            "--store",
            "builtin",
            "--contact",
            "ops@acme.test",
            "--json",
        ],
        env,
        tmp_path,
    )
    assert added.returncode == 0, added.stderr
    data = json.loads(added.stdout)
    assert re.fullmatch(r"Acme/ci-deploy-[0-9a-f]{8}", data["secretName"]), data["secretName"]
    assert data["firstRotation"]["result"] == "rotated"
    assert data["version"] == 1 and data["authorizationId"] != original["authorizationId"]
    assert original["token"] not in added.stdout + added.stderr  # no secret in the answer

    got = run_cli(["secrets", "get", "ci-deploy", "--json"], env, tmp_path)
    assert got.returncode == 0, got.stderr
    first = json.loads(got.stdout)
    assert first["version"] == "1" and first["contentType"] == "application/x-pat-token"
    assert first["value"] not in added.stdout + added.stderr  # the successor's secret was never printed
    # the server accepts the stored secret and (within the 1 s staleness bound) refuses the original
    assert _me(base, first["value"]) == 200
    assert _until(lambda: _me(base, original["token"]) == 401, 3.0) < 3.0

    # emergency rotation: the stored value changes, the leaked one dies
    now = run_cli(["rotate", "now", "ci-deploy", "--json"], env, tmp_path)
    assert now.returncode == 0, now.stderr
    assert json.loads(now.stdout)["result"] == "rotated"
    plain = run_cli(["secrets", "get", "ci-deploy"], env, tmp_path)
    second = plain.stdout.strip()
    assert second and second != first["value"]
    assert _me(base, second) == 200
    _until(lambda: _me(base, first["value"]) == 401, 3.0)

    status = run_cli(["rotate", "status", "--json"], env, tmp_path)
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["count"] == 1 and state["failing"] == 0
    assert state["credentials"][0]["lastRotation"]["reason"] == "compromised"

    run = run_cli(["rotate", "run", "--json"], env, tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["status"] == "completed" and report["skipped"] == 1 and report["rotated"] == 0
    status = json.loads(run_cli(["rotate", "status", "--json"], env, tmp_path).stdout)
    assert status["lastRun"]["id"] == report["id"]

    listed = json.loads(run_cli(["managed", "list", "--json"], env, tmp_path).stdout)
    assert [c["name"] for c in listed["value"]] == ["ci-deploy"]
    removed = run_cli(["managed", "remove", "ci-deploy", "--delete-secret", "--json"], env, tmp_path)
    assert removed.returncode == 0, removed.stderr
    gone = run_cli(["secrets", "get", "ci-deploy", "--json"], env, tmp_path)
    assert gone.returncode == 1
    assert json.loads(gone.stdout)["error"]["code"] == "credentialNotFound"
    assert _me(base, second) == 200  # no longer managed, not revoked


def test_bad_input_gets_clear_errors_and_no_traceback(live_server: LiveServer, tmp_path: Path) -> None:
    env = live_server.env
    cases = [
        (["managed", "add", "a/b", "--authorization-id", "x", "--store", "builtin"], "invalidName"),
        (["managed", "add", "ok", "--authorization-id", "x", "--store", "nosuch"], "invalidStore"),
        (["managed", "add", "ok", "--authorization-id", "x", "--store", "vault"], "storeNotConfigured"),
        (["managed", "add", "ok", "--authorization-id", "x", "--store", "builtin"], "authorizationNotFound"),
        (
            [
                "managed",
                "add",
                "ok",
                "--authorization-id",
                "x",
                "--store",
                "builtin",
                "--threshold-days",
                "40",
            ],
            "invalidRotationSettings",
        ),
        (
            ["managed", "add", "ok", "--authorization-id", "x", "--store", "builtin", "--source", "ado"],
            "invalidSource",
        ),
        (["rotate", "now", "nosuch"], "credentialNotFound"),
        (["secrets", "get", "nosuch"], "credentialNotFound"),
    ]
    for args, code in cases:
        r = run_cli([*args, "--json"], env, tmp_path)
        assert r.returncode == 1, (args, r.stderr)
        assert json.loads(r.stdout)["error"]["code"] == code, (args, r.stdout)
        assert "Traceback" not in r.stderr
    missing = run_cli(
        [
            "managed",
            "add",
            "ok",
            "--authorization-id",
            "x",
            "--store",
            "builtin",
            "--source",
            "ado",
            "--ado-url",
            "https://ado.example",
            "--ado-org",
            "o",
            "--ado-credential-file",
            str(tmp_path / "nope.txt"),
        ],
        env,
        tmp_path,
    )
    assert missing.returncode == 2 and "cannot read the Azure DevOps credential" in missing.stderr
