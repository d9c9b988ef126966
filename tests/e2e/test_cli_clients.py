"""`tokenwarden client ...` as scripts call it (issue 11): a real process on a real SQLite file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {**os.environ, "TOKENWARDEN_DATA_DIR": str(tmp_path / "data")}
    e.pop("TOKENWARDEN_DATABASE_URL", None)
    e.pop("TOKENWARDEN_ORG", None)
    init = run_cli(["init", "--org", "Acme", "--admin", "root@acme.test", "--json"], e, tmp_path)
    assert init.returncode == 0, init.stderr
    return e


def cli_json(args: list[str], env: dict[str, str], cwd: Path) -> object:
    r = run_cli([*args, "--json"], env, cwd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # exactly one JSON document on stdout


def test_client_add_json_shape_list_rotate_remove(env: dict[str, str], tmp_path: Path) -> None:
    add = [
        "client",
        "add",
        "Dashboard",
        "--org",
        "Acme",
        "--redirect-uri",
        "https://app.example/cb",
        "--redirect-uri",
        "http://127.0.0.1:8765/cb",
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
        "--grant",
        "client_credentials",
        "--scope",
        "vso.code vso.build",
    ]
    created = cli_json(add, env, tmp_path)
    assert isinstance(created, dict)
    assert list(created)[:2] == ["client_id", "client_secret"]
    cid, secret = created["client_id"], created["client_secret"]
    assert cid.startswith("c_") and secret.startswith("twcs_")
    assert created["redirectUris"] == ["https://app.example/cb", "http://127.0.0.1:8765/cb"]
    assert created["grantTypes"] == ["authorization_code", "refresh_token", "client_credentials"]
    assert created["scope"] == "vso.code vso.build" and created["serviceUserId"]
    public = cli_json(
        ["client", "add", "SPA", "--redirect-uri", "https://spa.example/cb", "--public"], env, tmp_path
    )
    assert isinstance(public, dict) and "client_secret" not in public and public["public"] is True
    # listed (never with a secret); --org defaults to the only organization
    listed = cli_json(["client", "list"], env, tmp_path)
    assert isinstance(listed, list) and [x["client_id"] for x in listed] == [cid, public["client_id"]]
    assert all("client_secret" not in x for x in listed)
    human = run_cli(["client", "list"], env, tmp_path)
    assert human.returncode == 0 and cid in human.stdout and secret not in human.stdout
    # the secret is stored nowhere in plain text
    data = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("tokenwarden.db*"))
    assert cid.encode() in data and secret.encode() not in data
    rotated = cli_json(["client", "rotate-secret", cid], env, tmp_path)
    assert isinstance(rotated, dict) and rotated["client_id"] == cid
    assert rotated["client_secret"].startswith("twcs_") and rotated["client_secret"] != secret
    disabled = cli_json(["client", "disable", cid], env, tmp_path)
    assert isinstance(disabled, dict) and disabled["status"] == "disabled"
    removed = cli_json(["client", "remove", cid, "--org", "Acme"], env, tmp_path)
    assert isinstance(removed, dict) and removed["client_id"] == cid and removed["removed"] is True
    listed = cli_json(["client", "list", "--org", "Acme"], env, tmp_path)
    assert [x["client_id"] for x in listed] == [public["client_id"]]  # type: ignore[union-attr]
    again = run_cli(["client", "remove", cid, "--json"], env, tmp_path)
    assert again.returncode == 1 and json.loads(again.stdout)["error"]["code"] == "clientNotFound"
    audit = cli_json(["audit", "query", "--org", "Acme"], env, tmp_path)
    assert secret not in json.dumps(audit) and rotated["client_secret"] not in json.dumps(audit)


def test_client_add_refuses_bad_input(env: dict[str, str], tmp_path: Path) -> None:
    bad = run_cli(["client", "add", "X", "--redirect-uri", "http://evil.example/cb", "--json"], env, tmp_path)
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["error"]["code"] == "invalidRedirectUri" and "https" in bad.stderr
    grant = run_cli(
        ["client", "add", "X", "--redirect-uri", "https://a.example/cb", "--grant", "password"], env, tmp_path
    )
    assert grant.returncode == 2 and "password" in grant.stderr  # a usage error, nothing applied
    public = run_cli(["client", "add", "X", "--public", "--grant", "client_credentials"], env, tmp_path)
    assert public.returncode == 1 and "public client cannot use client_credentials" in public.stderr
    assert cli_json(["client", "list"], env, tmp_path) == []
