"""Issue 13 end to end: two tokenwarden installations on loopback. Server A plays the external
Azure DevOps server; installation B (CLI processes on their own SQLite database) rotates a PAT
that lives on A through A's PAT Lifecycle API into each store — built-in, file, OpenBao (a real
``bao server -dev``) and AWS Secrets Manager (moto's server). Fault proxies in front of A and of
OpenBao inject every failure the issue lists — a store write that fails, a read-back that does
not match, a revoke that fails, a 429 then 200, kill -9 between create and store and between
store and revoke — and after each the invariant is checked: exactly one working stored secret,
no orphan live token, every failure alerted and audited."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import hvac
import pytest

from tests.e2e.conftest import run_cli, serve_process
from tests.support.fault_proxy import FaultProxy, Rule, fault_proxy
from tests.support.servers import BAO_ROOT_TOKEN, bao_server, moto_server

API = "api-version=7.1-preview.1"
EXE = Path(sys.executable).parent / "tokenwarden"


@dataclass
class Rig:
    a_url: str  # server A, direct
    a_env: dict[str, str]
    b_env: dict[str, str]
    ado: FaultProxy  # in front of A: B's --ado-url
    vault: FaultProxy  # in front of OpenBao: B's VAULT_ADDR
    bao_url: str
    moto_url: str
    credential: str  # ci-bot's full-scope PAT on A: B's admin credential for A's PAT API
    credential_file: Path
    work: Path

    # ---------------------------------------------------------------- A side
    def pat_on_a(self, name: str) -> tuple[str, str]:
        r = run_cli(
            [
                "pat",
                "create",
                "--user",
                "ci-bot@acme.test",
                "--name",
                name,
                "--scope",
                "vso.code",
                "--days",
                "3",
                "--json",
            ],
            self.a_env,
            self.work,
        )
        assert r.returncode == 0, r.stderr
        made = json.loads(r.stdout)
        return made["authorizationId"], made["token"]

    def works(self, secret: str) -> bool:
        return httpx.get(f"{self.a_url}/api/v1/me", auth=("", secret), timeout=10).status_code == 200

    def live_on_a(self, display_base: str) -> list[str]:
        r = httpx.get(
            f"{self.a_url}/Acme/_apis/tokens/pats?{API}&displayFilterOption=active",
            headers={"Authorization": f"Bearer {self.credential}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        now = datetime.now(UTC)
        return sorted(
            t["authorizationId"]
            for t in r.json()["patTokens"]
            if t["displayName"].startswith(display_base) and datetime.fromisoformat(t["validTo"]) > now
        )

    # ---------------------------------------------------------------- B side
    def b(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), self.b_env, self.work)

    def b_json(self, *args: str) -> Any:
        r = self.b(*args, "--json")
        assert r.stdout, r.stderr
        return json.loads(r.stdout)

    def manage(self, name: str, store: str, authorization_id: str, *, rotate: bool) -> dict[str, Any]:
        r = self.b(
            "managed",
            "add",
            name,
            "--source",
            "ado",
            "--ado-url",
            self.ado.url,
            "--ado-org",
            "Acme",
            "--ado-credential-file",
            str(self.credential_file),
            "--authorization-id",
            authorization_id,
            "--store",
            store,
            "--contact",
            "ops@ops.test",
            "--rotate" if rotate else "--no-rotate",
            "--json",
        )
        assert r.returncode == 0, (r.stdout, r.stderr)
        data: dict[str, Any] = json.loads(r.stdout)
        return data

    def stored(self, name: str) -> str | None:
        shown = self.b_json("managed", "show", name)
        store, secret_name = shown["store"], shown["secretName"]
        if store in ("builtin", "file"):
            r = self.b("secrets", "get", name, "--json")
            return json.loads(r.stdout)["value"] if r.returncode == 0 else None
        if store == "vault":
            client = hvac.Client(url=self.bao_url, token=BAO_ROOT_TOKEN)
            try:
                got = client.secrets.kv.v2.read_secret_version(
                    path=secret_name, mount_point="secret", raise_on_deleted_version=True
                )
            except hvac.exceptions.InvalidPath:
                return None
            data = (got.get("data") or {}).get("data")
            return None if data is None else str(data["token"])
        if store == "aws":
            client = boto3.client(
                "secretsmanager",
                region_name="us-east-1",
                endpoint_url=self.moto_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            try:
                value = client.get_secret_value(SecretId=secret_name)["SecretString"]
            except client.exceptions.ResourceNotFoundException:
                return None
            return str(json.loads(value)["token"])
        raise AssertionError(store)

    def b_rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with sqlite3.connect(Path(self.b_env["TOKENWARDEN_DATA_DIR"]) / "tokenwarden.db") as conn:
            return list(conn.execute(sql, params))

    def check_invariant(self, name: str, display_base: str) -> dict[str, Any]:
        """Exactly one working stored secret, the credential's token in service; no other live
        token of the credential on A."""
        shown: dict[str, Any] = self.b_json("managed", "show", name)
        live = self.live_on_a(display_base)
        assert live == [shown["authorizationId"]], f"live on A: {live}, managed: {shown['authorizationId']}"
        value = self.stored(name)
        if value is not None:
            assert self.works(value), "the store serves a secret that does not work"
        return shown

    def check_alerted_and_audited(self, name: str, cred_id: str) -> None:
        audited = self.b_rows(
            "SELECT count(*) FROM audit_log "
            "WHERE target_id = ? AND event_type = 'Rotation.RotateFailedEvent'",
            cred_id,
        )
        assert audited[0][0] >= 1, "the failure was not audited"
        alerts = self.b_rows(
            "SELECT destination FROM notification_outbox "
            "WHERE template = 'rotation-failed' AND payload LIKE ?",
            f'%"name": "{name}"%',
        )
        assert ("ops@ops.test",) in alerts, "the failure was not alerted"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp("rotation-e2e")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENWARDEN_", "VAULT_", "AWS_"))}
    a_env = {**base_env, "TOKENWARDEN_DATA_DIR": str(work / "a")}
    assert (
        run_cli(["init", "--org", "Acme", "--admin", "admin@acme.test", "--json"], a_env, work).returncode
        == 0
    )
    assert run_cli(["user", "add", "ci-bot@acme.test"], a_env, work).returncode == 0
    r = run_cli(
        [
            "pat",
            "create",
            "--user",
            "ci-bot@acme.test",
            "--name",
            "rotation admin",
            "--scope",
            "app_token",
            "--json",
        ],
        a_env,
        work,
    )
    assert r.returncode == 0, r.stderr
    credential = json.loads(r.stdout)["token"]
    credential_file = work / "ado-credential"
    credential_file.write_text(credential + "\n")
    credential_file.chmod(0o600)
    a_proc, a_url = serve_process(a_env, work)
    try:
        with (
            bao_server(work) as bao_url,
            moto_server() as moto_url,
            fault_proxy(a_url) as ado,
            fault_proxy(bao_url) as vault,
        ):
            b_env = {
                **base_env,
                "TOKENWARDEN_DATA_DIR": str(work / "b"),
                "VAULT_ADDR": vault.url,
                "VAULT_TOKEN": BAO_ROOT_TOKEN,
                "TOKENWARDEN_AWS_ENDPOINT_URL": moto_url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "TOKENWARDEN_ROTATION_RETRY_ATTEMPTS": "3",
                "TOKENWARDEN_ROTATION_RETRY_MAX_SECONDS": "2",
                "TOKENWARDEN_ROTATION_LEASE_SECONDS": "2",
                "TOKENWARDEN_ROTATION_BATCH_PAUSE_SECONDS": "0",
                "TOKENWARDEN_ADO_ALLOW": "127.0.0.1",  # server A is on loopback
            }
            init = run_cli(["init", "--org", "Ops", "--admin", "ops@ops.test", "--json"], b_env, work)
            assert init.returncode == 0, init.stderr
            yield Rig(a_url, a_env, b_env, ado, vault, bao_url, moto_url, credential, credential_file, work)
    finally:
        a_proc.terminate()
        try:
            a_proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            a_proc.kill()


@pytest.fixture(autouse=True)
def _clean_proxies(rig: Rig) -> Iterator[None]:
    rig.ado.clear()
    rig.vault.clear()
    yield
    rig.ado.clear()
    rig.vault.clear()


@pytest.mark.parametrize("store", ["builtin", "file", "vault", "aws"])
def test_a_pat_on_the_external_server_is_rotated_into_each_store(rig: Rig, store: str) -> None:
    name = f"happy-{store}"
    original, secret = rig.pat_on_a(f"{name} token")
    data = rig.manage(name, store, original, rotate=True)
    assert data["firstRotation"]["result"] == "rotated", data
    assert re.search(rf"{name}-[0-9a-f]{{8}}$", data["secretName"]), data["secretName"]
    value = rig.stored(name)
    assert value is not None and value != secret and rig.works(value)
    assert not rig.works(secret)  # A refuses the predecessor at once (it revoked it itself)
    rig.check_invariant(name, f"{name} token")


def test_store_write_fails_then_read_back_mismatch(rig: Rig) -> None:
    name = "faults-store"
    original, secret = rig.pat_on_a(f"{name} token")
    cred = rig.manage(name, "vault", original, rotate=False)
    rig.vault.add(Rule("POST", r"/v1/secret/data/Ops/faults-store", status=500, times=None))
    r = rig.b("rotate", "now", name, "--planned")
    assert r.returncode == 1, r.stdout
    assert "refused the write" in r.stdout
    assert rig.live_on_a(f"{name} token") == [original]  # the successor was revoked at once
    assert rig.works(secret)
    rig.check_alerted_and_audited(name, cred["id"])
    rig.vault.clear()

    # the write lands but reads back as something else: discarded, successor revoked
    def tamper(body: bytes) -> bytes:
        doc = json.loads(body)
        doc["data"]["data"]["token"] = "tampered"
        return json.dumps(doc).encode()

    rig.vault.add(Rule("GET", r"/v1/secret/data/Ops/faults-store[^?]*\?version=", rewrite=tamper, times=None))
    r = rig.b("rotate", "now", name, "--planned")
    assert r.returncode == 1 and "does not match" in r.stdout, r.stdout
    rig.vault.clear()
    assert rig.live_on_a(f"{name} token") == [original]
    assert rig.stored(name) is None  # the bad write was undone (no earlier version to restore)
    rig.check_invariant(name, f"{name} token")
    # and with the faults gone the next attempt succeeds
    assert rig.b("rotate", "now", name, "--planned").returncode == 0
    rig.check_invariant(name, f"{name} token")
    assert not rig.works(secret)


def test_revoke_fails_then_the_next_run_finishes(rig: Rig) -> None:
    name = "faults-revoke"
    original, secret = rig.pat_on_a(f"{name} token")
    cred = rig.manage(name, "builtin", original, rotate=False)
    rig.ado.add(Rule("DELETE", r"/_apis/tokens/pats", status=403, body=b'{"message":"nope"}', times=None))
    r = rig.b("rotate", "now", name, "--planned")
    assert r.returncode == 1 and "still live" in r.stdout, r.stdout
    assert rig.works(secret)  # the predecessor could not be revoked...
    value = rig.stored(name)
    assert value is not None and rig.works(value)  # ...but the successor is stored and works
    rig.check_alerted_and_audited(name, cred["id"])
    rig.ado.clear()
    run = rig.b_json("rotate", "run")
    assert run["rotated"] == 1, run
    assert not rig.works(secret)
    rig.check_invariant(name, f"{name} token")


def test_rate_limited_create_is_retried_after_retry_after(rig: Rig) -> None:
    name = "faults-429"
    original, _ = rig.pat_on_a(f"{name} token")
    rig.manage(name, "builtin", original, rotate=False)
    limit = rig.ado.add(
        Rule("POST", r"/_apis/tokens/pats", status=429, headers={"Retry-After": "1"}, body=b"{}", times=1)
    )
    started = time.monotonic()
    r = rig.b("rotate", "now", name, "--planned", "--json")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert json.loads(r.stdout)["result"] == "rotated"
    assert limit.times == 0 and time.monotonic() - started >= 1.0
    assert [s for m, p, s in rig.ado.seen if m == "POST"][:2] == [429, 200]
    rig.check_invariant(name, f"{name} token")


def _kill_when(rig: Rig, proxy: FaultProxy, method: str, path: str, name: str) -> None:
    """Run `rotate now NAME` as a process and kill -9 it the moment ``method path`` reaches
    ``proxy``; then recover with `rotate run` once its lease has run out."""
    proc = subprocess.Popen(
        [str(EXE), "rotate", "now", name, "--planned"],
        env=rig.b_env,
        cwd=rig.work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proxy.add(Rule(method, path, hook=lambda: os.kill(proc.pid, signal.SIGKILL), status=502, times=1))
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    time.sleep(2.5)  # the killed process's lease (2 s here) runs out


def test_kill_between_create_and_store(rig: Rig) -> None:
    name = "kill-create"
    original, secret = rig.pat_on_a(f"{name} token")
    cred = rig.manage(name, "vault", original, rotate=False)
    _kill_when(rig, rig.vault, "POST", r"/v1/secret/data/Ops/kill-create", name)
    # killed after the successor was created on A and before it was stored: a live orphan
    # whose secret nobody has
    live = rig.live_on_a(f"{name} token")
    assert len(live) == 2 and original in live
    orphan = next(a for a in live if a != original)
    assert rig.stored(name) is None
    run = rig.b_json("rotate", "run")
    assert run["rotated"] == 1, run  # the interrupted rotation rolled back, a new one done
    now_live = rig.live_on_a(f"{name} token")
    assert orphan not in now_live and original not in now_live
    assert not rig.works(secret)
    shown = rig.check_invariant(name, f"{name} token")
    assert [r["step"] for r in shown["rotations"]] == ["done", "rolled_back"]
    assert "secret is lost" in shown["rotations"][1]["error"]
    rig.check_alerted_and_audited(name, cred["id"])  # the interruption is reported as a failure


def test_kill_between_store_and_revoke(rig: Rig) -> None:
    name = "kill-revoke"
    original, secret = rig.pat_on_a(f"{name} token")
    rig.manage(name, "vault", original, rotate=False)
    _kill_when(rig, rig.ado, "DELETE", r"/_apis/tokens/pats", name)
    value = rig.stored(name)
    assert value is not None and rig.works(value) and rig.works(secret)  # both live for now
    run = rig.b_json("rotate", "run")
    assert run["rotated"] == 1, run  # the journal said promoted: revoke the predecessor, done
    assert not rig.works(secret)
    assert rig.works(value)
    rig.check_invariant(name, f"{name} token")
