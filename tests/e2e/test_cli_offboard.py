"""`tokenwarden user offboard` as a process against a running server on the same SQLite database:
the leaver's tokens are refused by the server, their managed credential (built-in store) passes to
the successor and the store serves a token minted for the successor (docs/offboarding.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import LiveServer, run_cli


def _me(base: str, secret: str) -> int:
    return httpx.get(f"{base}/api/v1/me", auth=("", secret), timeout=5).status_code


def _until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def _json(args: list[str], env: dict[str, str], cwd: Path) -> Any:
    r = run_cli([*args, "--json"], env, cwd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_offboard_cuts_the_leavers_tokens_and_hands_over_a_rotated_credential(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env, base = live_server.env, live_server.base_url
    _json(["user", "add", "leaver@acme.test"], env, tmp_path)
    heir = _json(["user", "add", "heir@acme.test"], env, tmp_path)
    _json(["user", "add", "idle@acme.test"], env, tmp_path)
    _json(["user", "disable", "idle@acme.test"], env, tmp_path)
    laptop = _json(
        ["pat", "create", "--user", "leaver@acme.test", "--name", "laptop", "--scope", "vso.code"],
        env,
        tmp_path,
    )
    deploy = _json(
        ["pat", "create", "--user", "leaver@acme.test", "--name", "ci deploy", "--scope", "vso.code"],
        env,
        tmp_path,
    )
    added = _json(
        [
            "managed",
            "add",
            "ci-deploy",
            "--authorization-id",
            deploy["authorizationId"],
            "--store",
            "builtin",
            "--contact",
            "leaver@acme.test",
            "--contact",
            "ops@acme.test",
        ],
        env,
        tmp_path,
    )
    assert added["firstRotation"]["result"] == "rotated"
    first = _json(["secrets", "get", "ci-deploy"], env, tmp_path)["value"]
    assert _me(base, laptop["token"]) == 200 and _me(base, first) == 200

    # bad input: a clear message, exit code 1, nothing done
    bad = {
        ("ghost@acme.test",): "is not a member of this organization",
        ("leaver@acme.test", "--successor", "ghost@acme.test"): "is not a member of Acme (invalidSuccessor)",
        ("leaver@acme.test", "--successor", "idle@acme.test"): "idle@acme.test is disabled in Acme",
        ("leaver@acme.test", "--successor", "leaver@acme.test"): "the successor cannot be the leaver",
    }
    for args, message in bad.items():
        r = run_cli(["user", "offboard", *args, "--org", "Acme"], env, tmp_path)
        assert r.returncode == 1 and message in r.stderr, r.stderr
    as_json = run_cli(
        ["user", "offboard", "leaver@acme.test", "--successor", "ghost@acme.test", "--json"], env, tmp_path
    )
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["error"]["code"] == "invalidSuccessor"
    assert _me(base, laptop["token"]) == 200

    report = _json(
        ["user", "offboard", "leaver@acme.test", "--org", "Acme", "--successor", "heir@acme.test"],
        env,
        tmp_path,
    )
    assert report["upn"] == "leaver@acme.test" and report["org"] == "Acme"
    assert report["membershipStatus"] == "disabled" and report["tokensRevokedCount"] == 2
    assert report["successor"] == "heir@acme.test" and report["successorChosenBy"] == "given"
    [handed] = report["credentialsHandedOver"]
    assert (
        handed["name"] == "ci-deploy" and handed["rotated"] is True and handed["rotationResult"] == "rotated"
    )
    assert report["warnings"] == []

    # the server refuses every token of the leaver (within its staleness bound); the store serves
    # a new token, minted for the successor, that works
    _until(lambda: _me(base, laptop["token"]) == 401)
    _until(lambda: _me(base, first) == 401)
    second = _json(["secrets", "get", "ci-deploy"], env, tmp_path)["value"]
    assert second != first and _me(base, second) == 200
    shown = _json(["managed", "show", "ci-deploy"], env, tmp_path)
    assert shown["userId"] == heir["id"] and shown["authorizationId"] != added["authorizationId"]
    assert shown["contacts"] == ["heir@acme.test", "ops@acme.test"]
    audit = _json(["audit", "query", "--org", "Acme", "--event-type", "User.Offboard"], env, tmp_path)
    assert [e["details"]["successor"] for e in audit] == ["heir@acme.test"]

    # running it again is harmless and says what it did, for people
    again = run_cli(["user", "offboard", "leaver@acme.test", "--org", "Acme"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "offboarded leaver@acme.test from Acme: membership disabled, 0 live token(s) cut" in again.stdout
    assert _me(base, second) == 200


def test_offboard_without_a_successor_warns_and_leaves_the_credential(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.env
    leaver = _json(["user", "add", "leaver@acme.test"], env, tmp_path)
    deploy = _json(
        ["pat", "create", "--user", "leaver@acme.test", "--name", "ci deploy", "--scope", "vso.code"],
        env,
        tmp_path,
    )
    _json(
        [
            "managed",
            "add",
            "ci-deploy",
            "--authorization-id",
            deploy["authorizationId"],
            "--store",
            "builtin",
            "--no-rotate",
        ],
        env,
        tmp_path,
    )
    r = run_cli(["user", "offboard", "leaver@acme.test", "--org", "Acme"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "successor: nobody (none)" in r.stdout
    assert "no successor: managed credentials ci-deploy still name the leaver" in r.stderr
    assert "tokenwarden user offboard leaver@acme.test --org Acme --successor UPN" in r.stderr
    shown = _json(["managed", "show", "ci-deploy"], env, tmp_path)
    assert shown["userId"] == leaver["id"] and shown["authorizationId"] == deploy["authorizationId"]
