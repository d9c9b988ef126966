"""Issue 11 benchmarks found the token endpoint stalling under concurrent requests on SQLite:
a request held its pooled connection (and SQLite's write lock) while authlib's client lookup
took a second one, and the requests queued for the write lock in ``BEGIN IMMEDIATE`` held
every other pooled connection — the pool ran dry, the holder waited for the pool, the others
for the lock, until the 30 s timeouts. Now a token request reads through its own transaction
and writers queue on a per-process lock before taking a connection."""

from __future__ import annotations

import base64
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tokenwarden.adapters.sql.unit_of_work import SqlDatabase
from tokenwarden.bootstrap import Container, build
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.oauth.requests import HttpRequest
from tokenwarden.services.signing import ES256
from tokenwarden.settings import Settings

ISSUER = "http://127.0.0.1:8080"


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Container]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'data' / 'tw.db'}",
        peppers="p1:" + "ab" * 32,
    )
    container = build(settings)
    container.database.upgrade()
    container.directory.initialize("acme", "admin@acme.test")
    yield container
    container.close()


def form_request(
    client_id: str, secret: str, form: dict[str, str], path: str = "/oauth2/token"
) -> HttpRequest:
    auth = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    headers = {"content-type": "application/x-www-form-urlencoded", "authorization": auth}
    return HttpRequest("POST", ISSUER + path, headers, form={k: [v] for k, v in form.items()})


def cc_client(c: Container) -> tuple[str, str]:
    reg = c.clients.register(OPERATOR, "acme", name="ci", grants=["client_credentials"], scope="vso.code")
    assert reg.secret is not None
    return reg.client.client_id, reg.secret


class Checkouts:
    """Records where a thread takes a second pooled connection while holding one."""

    def __init__(self, database: Any) -> None:
        self.depth = threading.local()
        self.nested: list[str] = []
        event.listen(database.engine, "checkout", self._out)
        event.listen(database.engine, "checkin", self._in)

    def _out(self, *_: Any) -> None:
        self.depth.n = getattr(self.depth, "n", 0) + 1
        if self.depth.n > 1:
            self.nested.append("".join(traceback.format_stack(limit=8)))

    def _in(self, *_: Any) -> None:
        self.depth.n = getattr(self.depth, "n", 1) - 1


def test_token_and_revocation_requests_read_the_client_through_their_own_transaction(c: Container) -> None:
    client_id, secret = cc_client(c)
    seen = Checkouts(c.database)
    status, body, _ = c.oauth.token(
        form_request(client_id, secret, {"grant_type": "client_credentials"}), ISSUER
    )
    assert status == 200, body
    status, _, _ = c.oauth.revoke(
        form_request(client_id, secret, {"token": body["access_token"]}, "/oauth2/revoke"), ISSUER
    )
    assert status == 200
    assert seen.nested == []


def test_concurrent_token_requests_on_sqlite_do_not_stall(c: Container) -> None:
    """More concurrent requests than pooled connections (5 + 10 overflow), as a busy server's
    worker threads (40) make them: every one is answered, promptly."""
    client_id, secret = cc_client(c)
    c.oauth.token(form_request(client_id, secret, {"grant_type": "client_credentials"}), ISSUER)  # key made

    def one(_: int) -> int:
        status, _, _ = c.oauth.token(
            form_request(client_id, secret, {"grant_type": "client_credentials"}), ISSUER
        )
        return int(status)

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(one, range(120)))
    elapsed = time.monotonic() - t0
    assert statuses == [200] * 120
    assert elapsed < 20, f"{elapsed:.1f} s (the stall lasted the 30 s timeouts)"


def test_a_waiting_writer_holds_no_connection_and_a_failed_one_releases_the_lock(tmp_path: Path) -> None:
    db = SqlDatabase(f"sqlite:///{tmp_path / 'w.db'}")
    db.upgrade()
    pool: Any = db.engine.pool
    holding, release = threading.Event(), threading.Event()
    entered: list[float] = []

    def first() -> None:
        with db():
            holding.set()
            release.wait(10)

    def second() -> None:
        with db():
            entered.append(time.monotonic())

    a = threading.Thread(target=first)
    a.start()
    assert holding.wait(10)
    b = threading.Thread(target=second)
    b.start()
    time.sleep(0.2)
    assert entered == [] and pool.checkedout() == 1  # b queues on the lock, not in the pool
    with db.reader() as uow:  # readers never queue
        assert uow.events.latest_seq() >= 0
    release.set()
    a.join(10)
    b.join(10)
    assert len(entered) == 1

    with pytest.raises(ValueError, match="work failed"), db():
        raise ValueError("work failed")
    done = threading.Event()

    def third() -> None:
        with db():
            done.set()

    t = threading.Thread(target=third)
    t.start()
    assert done.wait(5)  # the failed unit of work let go of the lock
    t.join(5)
    db.dispose()


def test_the_periodic_signing_key_re_read_takes_no_write_lock(
    c: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = c.keys
    kid, _ = keys.active(ES256)  # created (a write)
    writers: list[str] = []
    real = keys._uow

    def counting() -> Any:
        writers.append("uow")
        return real()

    monkeypatch.setattr(keys, "_uow", counting)
    keys._active.clear()  # as when ACTIVE_TTL_SECONDS has passed
    assert keys.active(ES256)[0] == kid
    assert writers == []
