"""Expiry notices by webhook end to end: registered with the CLI, sent by `jobs run`, verified by
the receiver with the `standardwebhooks` package; a failing receiver is retried; a receiver that
refuses for good lands in the dead letters, and replay sends it again once fixed."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from tests.e2e.conftest import run_cli
from tests.integration.test_webhook_channel import RESPONSES, Receiver
from tokenwarden.bootstrap import build
from tokenwarden.services.common import OPERATOR
from tokenwarden.settings import Settings

OWNER = "admin@acme.test"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    import threading

    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {**os.environ, "TOKENWARDEN_DATA_DIR": str(tmp_path / "data")}
    e.pop("TOKENWARDEN_DATABASE_URL", None)
    e.pop("TOKENWARDEN_SMTP_HOST", None)
    e.update({"TOKENWARDEN_WEBHOOK_ALLOW": "127.0.0.1", "TOKENWARDEN_NOTIFY_RETRY_SECONDS": "0.01"})
    r = run_cli(["init", "--org", "Acme", "--admin", OWNER], e, tmp_path)
    assert r.returncode == 0, r.stderr
    return e


def expiring_pats(env: dict[str, str], days: list[int]) -> dict[str, str]:
    c = build(Settings(data_dir=Path(env["TOKENWARDEN_DATA_DIR"])))
    ids = {}
    try:
        for d in days:
            record = c.pats.create(
                OPERATOR, org="Acme", user=OWNER, display_name=f"t{d}", scope="vso.code"
            ).record
            with c.uow() as uow:
                uow.tokens.update(
                    record.with_changes(valid_to=datetime.now(UTC) + timedelta(days=d, minutes=-1))
                )
                uow.commit()
            ids[record.authorization_id] = f"t{d}"
    finally:
        c.close()
    return ids


def add_hook(env: dict[str, str], cwd: Path, url: str, *events: str) -> dict[str, str]:
    args = ["webhook", "add", url, "--org", "Acme", "--json"]
    for e in events:
        args += ["--event", e]
    r = run_cli(args, env, cwd)
    assert r.returncode == 0, r.stderr
    hook = json.loads(r.stdout)
    assert hook["secret"].startswith("whsec_")
    return hook  # type: ignore[no-any-return]


def test_signed_webhooks_verified_by_standardwebhooks(
    env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    ids = expiring_pats(env, [30, 7])
    hook = add_hook(env, tmp_path, receiver.url("/ok"))
    listed = json.loads(run_cli(["webhook", "list", "--org", "Acme", "--json"], env, tmp_path).stdout)
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    r = run_cli(["jobs", "run", "expiry-notifications", "--json"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)
    # email is not configured: those messages wait; the webhooks went
    assert run["counts"]["messages"] == {"pending": 2, "sent": 2}
    assert any("email is not configured" in e for e in run["counts"]["deliveryErrors"])
    verifier = Webhook(hook["secret"])
    seen = {}
    for got in receiver.received:
        payload = verifier.verify(got.body, got.headers)  # raises on a bad signature
        assert payload["type"] == "token.expiring" and got.headers["webhook-id"] == payload["id"]
        [token] = payload["data"]["tokens"]
        seen[ids[token["id"]]] = token["threshold"]
        assert "twp_" not in got.body.decode()
    assert seen == {"t30": 30, "t7": 7}
    # a tampered body fails the receiver's check
    with pytest.raises(Exception, match=r"(?i)signature"):
        verifier.verify(receiver.received[0].body + b" ", receiver.received[0].headers)


def test_failures_retry_then_dead_letter_and_replay(
    env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    expiring_pats(env, [3])
    add_hook(env, tmp_path, receiver.url("/gone"), "token.expiring")
    r = run_cli(["jobs", "run", "expiry-notifications", "--json"], env, tmp_path)
    assert r.returncode == 0, r.stderr  # a refused delivery does not fail the run
    assert json.loads(r.stdout)["counts"]["messages"].get("dead") == 1
    dead = json.loads(run_cli(["notify", "dead-letters", "--org", "Acme", "--json"], env, tmp_path).stdout)
    assert [d["channel"] for d in dead] == ["webhook"] and "410" in dead[0]["lastError"]
    # the receiver is fixed (same URL now answers 204); replay sends it once more
    RESPONSES["/gone"], saved = (204, {}, b""), RESPONSES["/gone"]
    try:
        replay = run_cli(["notify", "replay", str(dead[0]["id"]), "--json"], env, tmp_path)
        assert json.loads(replay.stdout) == {"replayed": [dead[0]["id"]]}
        delivered = json.loads(run_cli(["notify", "deliver", "--json"], env, tmp_path).stdout)
        assert delivered["sent"] == 1
    finally:
        RESPONSES["/gone"] = saved
    assert [g.path for g in receiver.received] == ["/gone", "/gone"]
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]
    assert (
        json.loads(run_cli(["notify", "dead-letters", "--org", "Acme", "--json"], env, tmp_path).stdout) == []
    )


def test_a_failing_receiver_is_retried(env: dict[str, str], tmp_path: Path, receiver: Receiver) -> None:
    expiring_pats(env, [3])
    add_hook(env, tmp_path, receiver.url("/fail"))
    r = run_cli(["jobs", "run", "expiry-notifications", "--json"], env, tmp_path)
    assert json.loads(r.stdout)["counts"]["messages"] == {"pending": 2}  # webhook retrying, email waiting
    time.sleep(0.1)
    again = json.loads(run_cli(["notify", "deliver", "--json"], env, tmp_path).stdout)
    assert again["retrying"] == 1 and again["sent"] == 0
    assert len(receiver.received) == 2  # tried again, not given up


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/hook", "http"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://10.0.0.5/hook", "private"),
        ("https://user:pw@example.com/hook", "user"),
        ("http://[fe80::1]/hook", "link-local"),
    ],
)
def test_bad_webhook_urls_are_refused(env: dict[str, str], tmp_path: Path, url: str, message: str) -> None:
    r = run_cli(["webhook", "add", url, "--org", "Acme", "--json"], env, tmp_path)
    assert r.returncode == 1
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "invalidWebhookUrl" and message in error["message"].lower()
