"""Leaked-token intake: GitHub's signed secret-scanning reports, and ``tokenwarden scan``."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from tests.e2e.conftest import Server, make_settings, run_cli
from tokenwarden.bootstrap import build
from tokenwarden.domain.token_scan import token_sha256
from tokenwarden.http.app import create_app
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.common import OPERATOR

KEY_ID = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"
URL = "/api/v1/secret-scanning/github"


@pytest.fixture
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def intake(tmp_path: Path, signing_key: ec.EllipticCurvePrivateKey) -> Iterator[Server]:
    pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    keys = tmp_path / "github-keys.json"
    keys.write_text(
        json.dumps({"public_keys": [{"key_identifier": KEY_ID, "key": pem.decode(), "is_current": True}]})
    )
    settings = make_settings(tmp_path).model_copy(update={"github_scanning_keys_file": keys})
    container = build(settings, create_pepper=True)
    container.database.upgrade()
    result = container.directory.initialize("Acme", "admin@acme.test")
    container.policies.update(OPERATOR, "Acme", security_contact="soc@acme.test")
    with TestClient(create_app(container)) as client:
        yield Server(client, container, "Acme", result.org.id, "admin@acme.test", result.token.secret)


def signed(body: bytes, key: ec.EllipticCurvePrivateKey, key_id: str = KEY_ID) -> dict[str, str]:
    signature = base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
    return {
        "Github-Public-Key-Identifier": key_id,
        "Github-Public-Key-Signature": signature,
        "Content-Type": "application/json",
    }


def test_a_signed_report_revokes_true_positives_at_once(
    intake: Server, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    tid, secret = intake.pat_for("admin@acme.test", scope="vso.pats", name="leaky")
    fake = "twp_" + "A" * 49  # the right shape, a wrong checksum
    body = json.dumps(
        [
            {
                "token": secret,
                "type": "tokenwarden_pat",
                "url": "https://github.com/x/y/blob/main/ci.yml",
                "source": "content",
            },
            {"token": fake, "type": "tokenwarden_pat", "url": "https://github.com/x/y", "source": "content"},
        ]
    ).encode()
    r = intake.client.post(URL, content=body, headers=signed(body, signing_key))
    assert r.status_code == 200, r.text
    assert r.json() == [
        {"token_hash": token_sha256(secret), "token_type": "tokenwarden_pat", "label": "true_positive"},
        {"token_hash": token_sha256(fake), "token_type": "tokenwarden_pat", "label": "false_positive"},
    ]
    assert secret not in r.text
    intake.container.validator.sync()
    assert intake.client.get("/api/v1/validate", headers=intake.auth(secret)).status_code == 401
    [alert] = intake.container.detection.find(OPERATOR, "Acme")
    assert (alert.rule, alert.token_id, alert.responses) == ("leakedToken", tid, ("revoke",))
    with intake.container.uow() as uow:
        assert uow.tokens.get(tid).revoke_reason == "compromised"  # type: ignore[union-attr]
        mails = {
            m.destination for m in uow.outbox.find(org_id=intake.org_id) if m.template == "security-alert"
        }
        events = [e.event_type for e in uow.audit.query(AuditQuery(org_id=intake.org_id))]
    assert mails == {"soc@acme.test", "admin@acme.test"}  # the security contact and the owner
    assert "Token.PatSystemRevokeEvent" in events
    # reported again: still a true positive, no second alert
    r = intake.client.post(URL, content=body, headers=signed(body, signing_key))
    assert r.json()[0]["label"] == "true_positive"


def test_a_bad_signature_is_401_and_changes_nothing(
    intake: Server, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    _, secret = intake.pat_for("admin@acme.test", scope="vso.pats")
    body = json.dumps([{"token": secret, "type": "t", "url": "u", "source": "content"}]).encode()
    other = ec.generate_private_key(ec.SECP256R1())
    for headers in (
        signed(body, other),  # signed by someone else
        signed(body + b" ", signing_key),  # over another body
        signed(body, signing_key, key_id="unknown"),
        {"Content-Type": "application/json"},
        {"Github-Public-Key-Identifier": KEY_ID, "Github-Public-Key-Signature": "not base64!"},
    ):
        r = intake.client.post(URL, content=body, headers=headers)
        assert r.status_code == 401, (headers, r.text)
    intake.container.validator.sync()
    assert intake.client.get("/api/v1/validate", headers=intake.auth(secret)).status_code == 200
    for bad in (b"[]", b"{}", b'[{"type": "x"}]', b"not json"):
        r = intake.client.post(URL, content=bad, headers=signed(bad, signing_key))
        assert r.status_code == 400, (bad, r.text)


def test_intake_is_off_unless_configured(server: Server) -> None:
    r = server.client.post(URL, content=b"[]", headers={"Github-Public-Key-Identifier": "x"})
    assert r.status_code == 404


def test_scan_finds_tokens_in_files_and_history_and_revokes_them(
    cli_env: tuple[dict[str, str], object, str], tmp_path: Path
) -> None:
    env, _, _ = cli_env
    made = run_cli(
        ["pat", "create", "--user", "admin@acme.test", "--name", "ci", "--scope", "vso.code", "--json"],
        env,
        tmp_path,
    )
    assert made.returncode == 0, made.stderr
    secret = json.loads(made.stdout)["token"]
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "ci.yml").write_text(f"env:\n  TOKEN: {secret}\n")
    (repo / "README").write_text("twp_" + "B" * 49 + " is not a token (bad checksum)\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "oops"], check=True)
    (repo / "ci.yml").write_text("env:\n  TOKEN: ${{ secrets.TOKEN }}\n")
    subprocess.run([*git, "commit", "-qam", "fix"], check=True)
    # the working tree is clean now: only the history holds it
    r = run_cli(["scan", str(repo)], env, tmp_path)
    assert r.returncode == 0 and "no tokenwarden token" in r.stdout
    r = run_cli(["scan", str(repo), "--git", "--json"], env, tmp_path)
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert report["found"] == 1 and secret not in r.stdout
    [hit] = report["findings"]
    assert hit["path"] == "ci.yml" and hit["line"] == 1 and len(hit["commit"]) == 40 and hit["kind"] == "pat"
    assert hit["sha256"] == token_sha256(secret)
    r = run_cli(["scan", str(repo), "--git", "--revoke", "--json"], env, tmp_path)
    assert r.returncode == 1 and json.loads(r.stdout)["findings"][0]["result"] == "revoked"
    listed = run_cli(
        ["pat", "list", "--user", "admin@acme.test", "--filter", "revoked", "--json"], env, tmp_path
    )
    assert any(p["revokeReason"].startswith("compromised") for p in json.loads(listed.stdout))
    r = run_cli(["scan", str(tmp_path / "nowhere")], env, tmp_path)
    assert r.returncode == 2
